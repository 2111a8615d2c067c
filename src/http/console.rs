//! The web console: plain ES modules and vendored CodeMirror, compiled into the binary and
//! served under `/ui/` (no Node build step, nothing fetched at run time). It is a client of
//! the public API with the token the user signs in with, so it can do no more than that token.
//!
//! Every page is the same shell; the module `app.js` routes on the path. The shell and the
//! assets go out with a Content-Security-Policy that allows only this origin's scripts and
//! styles (no inline script at all): output, logs and names are put in the page as text,
//! and a function that prints `<script>` could not run it even if one slipped through.

use std::hash::{Hash, Hasher};

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::AppState;

/// The policy of every console response; `{connect}` is `'self'`, plus the identity
/// provider's token endpoint when sign-in through one is set up.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src {connect}; font-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// What every console response needs, worked out once when the router is built.
struct Console {
    policy: HeaderValue,
    /// `{"oidc": …}` for the sign-in page.
    config: serde_json::Value,
}

impl Console {
    fn new(settings: &crate::config::Settings) -> Console {
        // A bad sign-in setting stopped the server at start; here it can only be absent.
        let oidc = super::console_oidc::oidc(settings).ok().flatten();
        let connect = match &oidc {
            Some(o) => format!("'self' {}", o.token_origin),
            None => "'self'".to_string(),
        };
        let strict = HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        );
        Console {
            // Never no policy: the strict one when the origin could not be a header.
            policy: HeaderValue::from_str(&CSP.replace("{connect}", &connect)).unwrap_or(strict),
            config: serde_json::json!({ "oidc": oidc }),
        }
    }
}

const SHELL: &str = include_str!("../../static/console/index.html");

/// The assets by name: (content type, body).
fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    Some(match name {
        "app.js" => (JS, include_str!("../../static/console/app.js")),
        "api.js" => (JS, include_str!("../../static/console/api.js")),
        "dom.js" => (JS, include_str!("../../static/console/dom.js")),
        "schema.js" => (JS, include_str!("../../static/console/schema.js")),
        "executions.js" => (JS, include_str!("../../static/console/executions.js")),
        "execution.js" => (JS, include_str!("../../static/console/execution.js")),
        "functions.js" => (JS, include_str!("../../static/console/functions.js")),
        "schedules.js" => (JS, include_str!("../../static/console/schedules.js")),
        "webhooks.js" => (JS, include_str!("../../static/console/webhooks.js")),
        "workflows.js" => (JS, include_str!("../../static/console/workflows.js")),
        "graph.js" => (JS, include_str!("../../static/console/graph.js")),
        "operator.js" => (JS, include_str!("../../static/console/operator.js")),
        "diff.js" => (JS, include_str!("../../static/console/diff.js")),
        "oidc.js" => (JS, include_str!("../../static/console/oidc.js")),
        "console.css" => (CSS, include_str!("../../static/console/console.css")),
        "codemirror.js" => (JS, include_str!("../../static/console/vendor/codemirror.js")),
        "codemirror.css" => (CSS, include_str!("../../static/console/vendor/codemirror.css")),
        "python.js" => (JS, include_str!("../../static/console/vendor/python.js")),
        "javascript.js" => (JS, include_str!("../../static/console/vendor/javascript.js")),
        _ => return None,
    })
}

pub fn routes(settings: &crate::config::Settings) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(shell))
        .route("/ui/assets/{name}", get(serve_asset))
        .route("/ui/config.json", get(config))
        .route("/ui/{*page}", get(shell))
        .layer(Extension(Arc::new(Console::new(settings))))
}

fn secured(console: &Console, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, console.policy.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// What the sign-in page offers besides a pasted token.
async fn config(Extension(console): Extension<Arc<Console>>) -> Response {
    secured(&console, axum::Json(console.config.clone()).into_response())
}

/// Any console page: the shell, which loads the app (it reads the path itself).
async fn shell(Extension(console): Extension<Arc<Console>>) -> Response {
    let resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SHELL,
    );
    secured(&console, resp.into_response())
}

/// An asset, revalidated on each load by its ETag (a hash of its content): a new binary's
/// assets are never mixed with an old one's, and an unchanged asset costs a 304.
async fn serve_asset(
    Extension(console): Extension<Arc<Console>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((kind, body)) = asset(&name) else {
        return super::error::ApiError::NotFound(format!("no console asset `{name}`")).into_response();
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return secured(
            &console,
            (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response(),
        );
    }
    let resp = (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::ETAG, etag),
        ],
        body,
    );
    secured(&console, resp.into_response())
}

#[cfg(test)]
mod tests {
    use super::{asset, SHELL};

    /// The modules `body` imports (`from "./x.js"`).
    fn imports(body: &str) -> Vec<&str> {
        body.split("from \"./")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    /// Every module the app reaches is compiled in and named in the shell's
    /// `modulepreload` links, so the browser asks for all of them at once: first paint waits
    /// for one round of requests, never a chain of imports found one after another.
    #[test]
    fn every_module_is_served_and_preloaded() {
        let mut seen = vec!["app.js"];
        let mut i = 0;
        while i < seen.len() {
            let (_, body) = asset(seen[i]).unwrap_or_else(|| panic!("{} is not served", seen[i]));
            for m in imports(body) {
                if !seen.contains(&m) {
                    seen.push(m);
                }
            }
            i += 1;
        }
        assert!(seen.len() > 10, "{seen:?}");
        for m in &seen[1..] {
            let link = format!("<link rel=\"modulepreload\" href=\"/ui/assets/{m}\">");
            assert!(SHELL.contains(&link), "index.html does not preload {m}");
        }
    }
}
