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

/** Call `/api/v1${path}`; answers the JSON body, throws ApiError unless 2xx. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return json;
}

/** A path segment (names and ids, escaped). */
export const seg = encodeURIComponent;

/**
 * Follow the Server-Sent Events at `/api/v1${path}`, calling `onEvent(type, data)` for each,
 * until `signal` aborts or the stream ends (answers then). EventSource cannot send the
 * token, so this reads the stream with fetch.
 */
export async function follow(path, onEvent, signal) {
  const resp = await fetch(`/api/v1${path}`, {
    headers: { authorization: `Bearer ${token()}`, accept: "text/event-stream" }, signal,
  });
  if (!resp.ok) throw new ApiError(resp.status, null);
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
