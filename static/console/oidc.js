// Signing in through the configured identity provider: OAuth 2 authorization code with PKCE,
// the console being a public client (no secret in the page). The verifier and state stay in
// this tab's session storage between the two legs; the provider's token is then used as a
// pasted one would be, so the server checks it as it checks every external token.

const KEY = "maestro.oidc";

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const redirectUri = () => `${location.origin}/ui/oidc`;

/** What the server offers: `{authorize_url, token_url, client_id, scope}` or null. */
export async function config() {
  const resp = await fetch("/ui/config.json");
  return resp.ok ? (await resp.json()).oidc : null;
}

/** Leave for the provider's sign-in page; it sends the browser back to /ui/oidc. */
export async function begin(cfg, back) {
  if (!window.crypto || !crypto.subtle) {
    throw { code: "insecure_context", message: "signing in through the identity provider needs https (or localhost): paste a token instead" };
  }
  const verifier = random(32);
  const state = random(16);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem(KEY, JSON.stringify({ verifier, state, back }));
  const url = new URL(cfg.authorize_url);
  const params = { response_type: "code", client_id: cfg.client_id, redirect_uri: redirectUri(), scope: cfg.scope,
    state, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256" };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.toString());
}

/** The payload of a JWT, or null. */
function claims(t) {
  if (typeof t !== "string" || t.split(".").length !== 3) return null;
  try {
    return JSON.parse(atob(t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch { return null; }
}

/**
 * Back from the provider: the code exchanged for a token; answers `{token, back}`. Nothing
 * in the address is acted on unless its `state` is the one this tab sent: a link to
 * /ui/oidc made elsewhere is refused with `bad_state` (and its text never shown).
 */
export async function finish(cfg) {
  const q = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
  sessionStorage.removeItem(KEY);
  if (!cfg || !saved || !q.get("state") || q.get("state") !== saved.state) {
    throw { code: "bad_state", message: "this sign-in was not started in this tab (or was used already): start again" };
  }
  if (q.get("error")) {
    throw { code: q.get("error"), message: q.get("error_description") || "the identity provider did not sign you in" };
  }
  const resp = await fetch(cfg.token_url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: q.get("code") || "", redirect_uri: redirectUri(),
      client_id: cfg.client_id, code_verifier: saved.verifier }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw { code: body.error || `http_${resp.status}`, message: body.error_description || "the identity provider refused the code" };
  }
  // The token for this server is the one whose audience is this server's (AUTH_AUDIENCE):
  // usually the access token; an ID token's audience is the console's client id.
  const candidates = [body.access_token, body.id_token].filter((t) => claims(t));
  const fits = (t) => {
    const aud = claims(t).aud;
    return !cfg.audience || (Array.isArray(aud) ? aud.includes(cfg.audience) : aud === cfg.audience);
  };
  const token = candidates.find(fits);
  if (!token) {
    throw { code: "no_token", message: `the identity provider answered no token for this server (audience ${cfg.audience || "any"}): ask for it in CONSOLE_OIDC_SCOPE` };
  }
  return { token, back: saved.back };
}
