// The console's only way to the server: the public API with the signed-in token.

const KEY = "maestro.token";

export function token() {
  return localStorage.getItem(KEY) || sessionStorage.getItem(KEY);
}

export function signIn(t, remember) {
  signOut();
  (remember ? localStorage : sessionStorage).setItem(KEY, t);
}

export function signOut() {
  localStorage.removeItem(KEY);
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(SUB);
}

const SUB = "maestro.subtenant";

/** The subtenant the console acts in (the `x-subtenant` header), or null for the token's own. */
export function subtenant() {
  return sessionStorage.getItem(SUB);
}

export function actIn(id) {
  if (id) sessionStorage.setItem(SUB, id);
  else sessionStorage.removeItem(SUB);
}

function headers(extra = {}, within = subtenant()) {
  const out = { authorization: `Bearer ${token()}`, ...extra };
  if (within) out["x-subtenant"] = within;
  return out;
}

/** A refused token: the shell hears of it from any call, a background one included. */
function refused(status) {
  if (status === 401) window.dispatchEvent(new CustomEvent("maestro:unauthorized"));
}

/** An API refusal: the server's `{error: {code, message, details}}` and the status. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the server answered ${status}`);
    this.status = status;
    this.code = e.code || `http_${status}`;
    this.details = e.details || [];
  }
}

/**
 * Call `/api/v1${path}` (or `path` itself with `root`) in the subtenant acted in (or
 * `within`); answers the JSON body (the text with `text`), throws ApiError unless 2xx.
 */
export async function api(path, { method = "GET", body, root = false, text: asText = false, within, quiet = false } = {}) {
  const extra = body === undefined ? {} : { "content-type": "application/json" };
  const resp = await fetch(root ? path : `/api/v1${path}`, {
    method, headers: headers(extra, within ?? subtenant()), body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!resp.ok) {
    // `quiet`: a 401 that says nothing of the token (/metrics behind METRICS_TOKEN).
    if (!quiet) refused(resp.status);
    throw new ApiError(resp.status, json);
  }
  return asText ? text : json;
}

/** A path segment (names and ids, escaped). */
export const seg = encodeURIComponent;

/** Every call of an execution in call order, following `next_cursor` page by page. */
export async function steps(id) {
  const out = [];
  for (let cursor = null; ;) {
    const v = await api(`/executions/${seg(id)}/steps${cursor ? `?cursor=${seg(cursor)}` : ""}`);
    out.push(...v.steps);
    if (!v.next_cursor) return out;
    cursor = v.next_cursor;
  }
}

/**
 * Follow the Server-Sent Events at `/api/v1${path}`, calling `onEvent(type, data)` for each,
 * until `signal` aborts or the stream ends (answers then). EventSource cannot send the
 * token, so this reads the stream with fetch.
 */
export async function follow(path, onEvent, signal, onOpen = null) {
  const resp = await fetch(`/api/v1${path}`, { headers: headers({ accept: "text/event-stream" }), signal });
  if (!resp.ok) {
    refused(resp.status);
    throw new ApiError(resp.status, null);
  }
  if (onOpen) onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let type = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
        }
        if (!data) continue;
        let parsed = data;
        try { parsed = JSON.parse(data); } catch { /* not JSON: pass the text */ }
        onEvent(type, parsed);
      }
    }
  } catch (e) {
    if (signal && signal.aborted) return;
    throw e;
  }
}
