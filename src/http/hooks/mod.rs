//! `ANY /api/v1/h/{path}`: run a webhook's function with the request as its input (or its
//! workflow with the request as its run config).
//!
//! Order of checks: the path (400 if malformed, 404 if no enabled webhook has it), the method
//! (405), the body size (413), authentication when required (401/403), the body's syntax
//! (400), the webhook's concurrency cap (429). Only then does an execution start.

mod envelope;
pub mod reply;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::AppState;
use crate::domain::webhook_path;
use crate::engine::{Error as EngineError, InvokeResult, Trigger};
use crate::http::error::{ApiError, ApiResult};
use crate::sandbox::ErrorKind;
use crate::store::{StoreError, Webhook};

pub const SIGNATURE_HEADER: &str = "x-maestro-signature";
pub const TIMESTAMP_HEADER: &str = "x-maestro-timestamp";
/// How far a signed request's timestamp may be from now, in seconds.
const SIGNATURE_WINDOW: i64 = 300;

pub fn routes() -> Router<AppState> {
    Router::new().route("/h/{*path}", any(handle))
}

/// Requests in flight per webhook on this server. A counter checked against the webhook's
/// current cap, so changing the cap never lets earlier runs go uncounted.
#[derive(Default)]
pub struct Gates {
    map: Mutex<HashMap<String, Arc<AtomicU32>>>,
}

/// One admitted request; leaving frees its slot.
pub struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gates {
    fn enter(&self, id: &str, limit: u32) -> Option<Slot> {
        let counter = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id.to_string()).or_default().clone()
        };
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| Slot(counter))
    }
}

/// How the caller proved who they are.
#[derive(PartialEq)]
enum Proof {
    None,
    /// A token of the owning tenant: the caller may see error details.
    Owner,
    Signature,
}

/// The most time a client gets to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

async fn handle(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let response = run_hook(state.clone(), req).await.into_response();
    let labels = vec![("status", response.status().as_u16().to_string())];
    let help = "Webhook answers by HTTP status.";
    state
        .events
        .metrics
        .add("maestro_webhook_responses_total", help, labels, 1.0);
    response
}

async fn run_hook(state: AppState, req: axum::extract::Request) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let Path(raw) = Path::<String>::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e| ApiError::BadRequest(format!("invalid webhook path: {}", e.body_text())))?;
    let path = webhook_path(&raw).map_err(|m| ApiError::BadRequest(format!("invalid webhook path: {m}")))?;
    let not_found = || ApiError::NotFound(format!("no webhook at /api/v1/h/{path}"));
    let hook = state.store.webhook_by_path(&path).await?.ok_or_else(not_found)?;
    if !hook.fields.enabled {
        return Err(not_found());
    }
    let method = parts.method.clone();
    let accepted_method = hook.fields.http_method.as_str();
    if method == Method::OPTIONS && accepted_method != "OPTIONS" {
        // A preflight or probe: say what is allowed, run nothing.
        return Ok(options(accepted_method));
    }
    let allowed = accepted_method == "ANY"
        || method.as_str() == accepted_method
        || (method == Method::HEAD && accepted_method == "GET");
    if !allowed {
        return Err(ApiError::MethodNotAllowed {
            message: format!("this webhook accepts {accepted_method} requests, not {method}"),
            allow: accepted_method.to_string(),
        });
    }
    // Take a slot before reading or parsing anything, so a flood costs little.
    let limit = super::webhooks::limit_of(&state, &hook);
    let slot = state.gates.enter(&hook.id, limit).ok_or_else(|| {
        ApiError::TooManyRequests(format!(
            "webhook /api/v1/h/{path} is already running {limit} requests (its concurrency cap); retry shortly"
        ))
    })?;
    let cap = state.settings.webhook_max_body_bytes;
    let bytes = tokio::time::timeout(BODY_TIMEOUT, read_body(body, &parts.headers, cap))
        .await
        .map_err(|_| ApiError::BadRequest("the request body did not arrive in time".into()))??;
    let proof = authenticate(&state, &hook, &mut parts, &bytes).await?;

    let run_async = match envelope_async_flag(parts.uri.query())? {
        Some(flag) => flag,
        None => hook.fields.async_mode,
    };
    let body = envelope::body_value(&parts.headers, &bytes)?;
    let envelope_mode = hook.fields.input_mode != "body";
    let input = if !envelope_mode {
        if body.0.is_null() {
            json!({})
        } else {
            body.0
        }
    } else {
        let query = envelope::query_dict(parts.uri.query());
        let headers = envelope::header_dict(&parts.headers);
        envelope::envelope(&method, &path, query, headers, body)
    };
    // Escaping and base64 make the input larger than the body; bound what gets stored.
    let input_cap = state.settings.max_input_bytes.max(cap * 2 + (64 << 10));
    let size = input.to_string().len();
    if size > input_cap {
        return Err(ApiError::TooLarge(format!(
            "the request makes an input of {size} bytes; the limit is {input_cap}"
        )));
    }
    let trigger = Trigger::Webhook {
        id: hook.id.clone(),
        envelope: envelope_mode,
    };
    if run_async {
        // Committed to the queue before the 202: any server runs it, even if this one dies.
        let queued = state
            .engine
            .enqueue_target(&hook.tenant, &hook.fields.target, input, &trigger, None)
            .await;
        let execution_id = match queued {
            Err(EngineError::NotFound(m) | EngineError::Store(StoreError::NotFound(m))) => {
                tracing::warn!(webhook = %hook.id, "webhook target missing: {m}");
                return Err(not_found());
            }
            other => other?,
        };
        drop(slot);
        return Ok(super::accepted(&execution_id, "queued"));
    }
    let started = match state
        .engine
        .start_target(&hook.tenant, &hook.fields.target, input, trigger)
        .await
    {
        Err(EngineError::NotFound(m) | EngineError::Store(StoreError::NotFound(m))) => {
            // The target went away under the webhook: the caller needs no internal names.
            tracing::warn!(webhook = %hook.id, "webhook target missing: {m}");
            return Err(not_found());
        }
        other => other?,
    };
    // The run and its slot live in their own task: a client that hangs up neither stops the
    // run nor frees its slot early.
    let run = tokio::spawn(async move {
        let result = started.wait().await;
        drop(slot);
        result
    });
    let result = run
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("webhook run task failed: {e}")))??;
    Ok(answer(result, proof == Proof::Owner))
}

/// 204 for OPTIONS: the methods this webhook takes.
fn options(accepted: &str) -> Response {
    let allow = if accepted == "ANY" {
        "GET, HEAD, POST, PUT, PATCH, DELETE".to_string()
    } else if accepted == "GET" {
        "GET, HEAD".to_string()
    } else {
        accepted.to_string()
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
}

/// `?async=true|false` overrides the webhook's own setting.
fn envelope_async_flag(query: Option<&str>) -> ApiResult<Option<bool>> {
    let value = form_urlencoded::parse(query.unwrap_or("").as_bytes()).find(|(k, _)| k == "async");
    match value.as_ref().map(|(_, v)| v.as_ref()) {
        None => Ok(None),
        Some(v) if v.is_empty() || v == "1" || v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v == "0" || v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "async must be true or false, not {other:?}"
        ))),
    }
}

/// Read at most `limit` bytes; a declared or actual larger body is a 413.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> ApiResult<axum::body::Bytes> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "the request body is larger than the webhook limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// Who the caller is. A Maestro token is recognised on every webhook and then removed from
/// the headers, whatever its tenant, so no function ever receives a caller's token; a token
/// that may act in the webhook's tenant makes the caller the owner (who sees error details).
/// On a `requires_auth` webhook the caller must be the owner or sign the body with the
/// secret; another tenant's token gets the same 404 as a missing webhook.
async fn authenticate(
    state: &AppState,
    hook: &Webhook,
    parts: &mut axum::http::request::Parts,
    body: &[u8],
) -> ApiResult<Proof> {
    let identity = match crate::auth::bearer(parts) {
        Ok(Some(token)) => Some(state.auth.identify(token).await),
        _ => None,
    };
    let mut owner = false;
    if let Some(Ok(id)) = &identity {
        parts.headers.remove(header::AUTHORIZATION);
        // Viewers read; running a webhook as its owner is a write.
        owner = matches!(state.auth.resolve(id, Some(&hook.tenant)).await, Ok((_, role)) if role.writes());
    }
    if owner {
        return Ok(Proof::Owner);
    }
    if !hook.fields.requires_auth {
        return Ok(Proof::None);
    }
    // A signature is checked first: an unrelated Authorization header must not hide it.
    if let Some(signature) = parts.headers.get(SIGNATURE_HEADER) {
        let timestamp = parts.headers.get(TIMESTAMP_HEADER).map(HeaderValue::as_bytes);
        if hook.fields.require_timestamp && timestamp.is_none() {
            return Err(ApiError::Unauthorized(format!(
                "this webhook requires a signed {TIMESTAMP_HEADER} header"
            )));
        }
        let timestamp = timestamp.filter(|_| hook.fields.require_timestamp);
        let now = chrono::Utc::now().timestamp();
        verify_signature(&hook.secret, signature.as_bytes(), timestamp, body, now)?;
        return Ok(Proof::Signature);
    }
    match identity {
        Some(Ok(_)) => Err(ApiError::NotFound(format!(
            "no webhook at /api/v1/h/{}",
            hook.fields.path
        ))),
        Some(Err(e)) => Err(e.into()),
        None => Err(ApiError::Unauthorized(format!(
            "this webhook requires a Bearer token of its tenant or an {SIGNATURE_HEADER} header"
        ))),
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), GitHub's convention. On a webhook with
/// `require_timestamp` the signed message is `<timestamp>.<body>` instead and the timestamp
/// must be within five minutes, so a captured request cannot be replayed later. A webhook
/// takes exactly one of the two forms, so a signature of one cannot pass as the other.
/// Compared in constant time.
pub fn verify_signature(
    secret: &str,
    signature: &[u8],
    timestamp: Option<&[u8]>,
    body: &[u8],
    now: i64,
) -> ApiResult<()> {
    let bad = |m: &str| ApiError::Unauthorized(m.to_string());
    let hex_sig = signature
        .strip_prefix(b"sha256=")
        .ok_or_else(|| bad("the signature must look like sha256=<hex>"))?;
    let expected = hex::decode(hex_sig).map_err(|_| bad("the signature must look like sha256=<hex>"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| bad("the webhook has no usable secret"))?;
    if let Some(ts) = timestamp {
        let at: i64 = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| bad("the timestamp must be unix seconds"))?;
        if (now - at).abs() > SIGNATURE_WINDOW {
            return Err(bad(
                "the signed timestamp is too old or in the future (replayed request?)",
            ));
        }
        mac.update(ts);
        mac.update(b".");
    }
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| bad("the signature does not match the body"))
}

/// The finished run as the HTTP answer: the function's value, or an error naming the
/// execution. Error details only go to a caller holding a token of the tenant.
fn answer(result: InvokeResult, owner: bool) -> Response {
    let id = result.execution_id.clone();
    let response = match (result.output, result.error) {
        (Some(output), _) => reply::response(&output).unwrap_or_else(|why| {
            ApiError::Execution {
                status: StatusCode::BAD_GATEWAY,
                code: "invalid_response",
                message: format!("the function's shaped response is invalid: {why}"),
                execution_id: id.clone(),
                details: None,
            }
            .into_response()
        }),
        (None, error) => {
            let kind = error.as_ref().map_or(ErrorKind::Crash, |e| e.kind);
            let (status, code) = match kind {
                ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "function_timeout"),
                // Stopped on purpose by the tenant (`POST /executions/{id}/cancel`).
                ErrorKind::Cancelled => (StatusCode::CONFLICT, "function_cancelled"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "function_failed"),
            };
            let kind_text = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            let message = match (&error, owner) {
                (Some(e), true) => e.message.clone(),
                _ => format!(
                    "the function failed ({}); see execution {id}",
                    kind_text.unwrap_or_else(|| "error".into())
                ),
            };
            let details = if owner {
                error.and_then(|e| serde_json::to_value(e).ok())
            } else {
                None
            };
            ApiError::Execution {
                status,
                code,
                message,
                execution_id: id.clone(),
                details,
            }
            .into_response()
        }
    };
    with_execution_id(response, &id)
}

fn with_execution_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-maestro-execution-id", v);
    }
    response
}

/// The webhook handler's operations in `/openapi.json` (one per method it takes).
pub(in crate::http) fn document(doc: &mut super::openapi::Doc) {
    for method in ["get", "post", "put", "patch", "delete"] {
        let op = doc.op(method, "/api/v1/h/{path}", "webhooks", "Webhook handler (any method)");
        let op = if method == "get" || method == "delete" {
            op
        } else {
            op.any_body()
        };
        op.media(
            200,
            "application/json",
            "what the function returned (JSON, or the response it built)",
        )
        .reply::<super::views::Accepted>(
            202,
            "an async webhook: the run (a function's or a workflow's) is queued",
        )
        .any_of("2XX", "another success status the function chose, with its body")
        .any_of("3XX", "a redirect the function chose")
        .add();
    }
    doc.op(
        "options",
        "/api/v1/h/{path}",
        "webhooks",
        "The methods this webhook takes",
    )
    .empty(204, "the `Allow` header lists them")
    .add();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, msg: &[u8]) -> Result<String, hmac::digest::InvalidLength> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
        mac.update(msg);
        Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
    }

    #[test]
    fn signatures() -> Result<(), Box<dyn std::error::Error>> {
        let body = br#"{"a":1}"#;
        let good = sign("s3cret-s3cret-s3cret", body)?;
        assert!(verify_signature("s3cret-s3cret-s3cret", good.as_bytes(), None, body, 0).is_ok());
        assert!(verify_signature("other-secret-xxxxx", good.as_bytes(), None, body, 0).is_err());
        assert!(verify_signature("s3cret-s3cret-s3cret", good.as_bytes(), None, b"{}", 0).is_err());
        assert!(verify_signature("s3cret-s3cret-s3cret", b"md5=00", None, body, 0).is_err());
        let signed = sign("k-k-k-k-k-k-k-k-k", b"1000.{\"a\":1}")?;
        assert!(verify_signature("k-k-k-k-k-k-k-k-k", signed.as_bytes(), Some(b"1000"), body, 1100).is_ok());
        assert!(verify_signature("k-k-k-k-k-k-k-k-k", signed.as_bytes(), Some(b"1000"), body, 2000).is_err());
        Ok(())
    }
}
