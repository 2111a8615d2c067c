//! HTTP surface: one router per resource, merged here. Handlers stay thin: parse the request,
//! call a service (or the engine, to run something), answer a view type from `views`.

mod caller;
mod capabilities;
mod console;
pub mod console_oidc;
pub mod error;
mod events;
mod executions;
mod functions;
mod health;
pub mod hooks;
pub mod openapi;
mod packages;
mod paging;
mod run;
mod schedules;
mod sessions;
mod tenancy;
mod views;
mod webhooks;
mod workflows;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Auth;
use crate::config::Settings;
use crate::engine::Engine;
use crate::store::Store;
use error::ApiError;

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState {
    pub services: crate::service::Services,
    pub engine: Engine,
    pub store: Store,
    pub auth: Arc<Auth>,
    pub settings: Arc<Settings>,
    pub redis: Option<redis::Client>,
    /// Per-webhook concurrency caps.
    pub gates: Arc<hooks::Gates>,
    pub scheduler: Arc<crate::scheduler::Scheduler>,
    pub events: Arc<crate::logs::Bus>,
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(s: &AppState) -> Arc<Auth> {
        s.auth.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_input_bytes + state.settings.max_code_bytes + 64 * 1024;
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .merge(functions::routes())
        .merge(executions::routes())
        .merge(webhooks::routes())
        .merge(schedules::routes())
        .merge(tenancy::routes())
        .merge(packages::routes())
        .merge(capabilities::routes())
        .merge(workflows::routes())
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimits {
                any: limit,
                input: state.settings.max_input_bytes,
            },
            declared_size,
        ));
    // Webhooks read their body themselves, under their own limit; wheels have theirs.
    let upload_limit = state.settings.package_max_bytes as usize + 64 * 1024;
    let api = api
        .merge(hooks::routes())
        .merge(packages::upload_routes(upload_limit))
        // Code runs and session files read their bodies themselves, under limits of their own.
        .merge(run::routes())
        .merge(sessions::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), health::track));
    Router::new()
        .nest("/api/v1", api)
        .merge(health::routes())
        .merge(schedules::status_routes())
        .merge(openapi::routes())
        .merge(console::routes(&state.settings))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn(refuse_nul))
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// The largest request body of any API route, and of an invoke (whose body is the input).
#[derive(Clone, Copy)]
struct BodyLimits {
    any: usize,
    input: usize,
}

/// A body whose declared length is over the route's limit gets our 413 at once, before any of
/// it is read, naming the limit that applies (an invoke's is `MAX_INPUT_BYTES`).
async fn declared_size(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let invoke = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|p| p.as_str().ends_with("/functions/{name}/invoke"));
    let error = match invoke {
        true => declared
            .filter(|n| *n > limits.input as u64)
            .map(|n| input_too_large(Some(n), limits.input)),
        false => declared
            .filter(|n| *n > limits.any as u64)
            .map(|n| ApiError::TooLarge(format!("the request body is {n} bytes; the limit is {}", limits.any))),
    };
    match error {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    }
}

/// A request body that is an input: read up to `limit` bytes whatever its framing (a
/// chunked body declares no length); past that a 413 naming the limit, and a body that
/// could not be read a 400.
pub async fn read_input(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the request body could not be read: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(input_too_large(None, limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// An input over `MAX_INPUT_BYTES` (`size` when it is known).
pub fn input_too_large(size: Option<u64>, limit: usize) -> ApiError {
    let size = size.map_or_else(|| "larger than that".to_string(), |n| format!("{n} bytes"));
    ApiError::TooLarge(format!("the input is {size}; the limit is {limit} (MAX_INPUT_BYTES)"))
}

/// A route that exists but not for this method: axum answers 405 with no body; give it our
/// JSON error body (the handlers' own 405s already have one). This runs inside the route, so
/// axum adds the `Allow` header (the methods the route takes) after it.
async fn method_not_allowed(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(axum::http::header::CONTENT_TYPE)
    {
        return response;
    }
    let message = format!("{method} is not allowed on this route; the Allow header lists what is");
    let mut response = ApiError::MethodNotAllowed {
        message,
        allow: String::new(),
    }
    .into_response();
    // Left to axum, which sets it from the route's methods once this returns.
    response.headers_mut().remove(axum::http::header::ALLOW);
    response
}

/// One span per request, carrying the request id so every log line inside names it.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

/// Refuse NUL bytes anywhere in the URL: no name or id can contain one, and PostgreSQL
/// rejects them in text, which would otherwise surface as a 500.
async fn refuse_nul(req: Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri().to_string();
    if uri.contains('\0') || uri.to_ascii_lowercase().contains("%00") {
        return ApiError::BadRequest("the URL contains a NUL byte".into()).into_response();
    }
    next.run(req).await
}

/// A JSON body read regardless of Content-Type (so `curl -d` works), with our error format:
/// malformed JSON is a 400, well-formed JSON of the wrong shape a 422, too large a 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge("the request body is too large".into())
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        use serde_json::error::Category;
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data if path != "." => ApiError::validation(
                format!("invalid request body at `{path}`: {inner}"),
                serde_json::json!([{"field": path, "message": inner.to_string()}]),
            ),
            Category::Data => ApiError::validation(format!("invalid request body: {inner}"), serde_json::Value::Null),
            _ => ApiError::BadRequest(format!("malformed JSON: {inner}")),
        }
    })
}

/// `?limit=&offset=` with sane bounds.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many items (1 to 500; default 50).
    #[serde(default = "default_limit")]
    pub limit: i64,
    /// How many items to skip.
    #[serde(default)]
    pub offset: i64,
}

fn default_limit() -> i64 {
    50
}

impl Page {
    pub fn clamp(&self) -> (i64, i64) {
        (self.limit.clamp(1, 500), self.offset.max(0))
    }

    /// Bounds for `limit`/`offset` read as part of a larger query.
    pub fn of(limit: Option<i64>, offset: Option<i64>) -> (i64, i64) {
        Page {
            limit: limit.unwrap_or_else(default_limit),
            offset: offset.unwrap_or(0),
        }
        .clamp()
    }
}

/// Query strings parsed with our error format.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
    }
}

/// Serialise unix milliseconds as RFC 3339.
pub use crate::domain::time::{iso, iso_ms, iso_ms_opt};

/// Wait until a started execution's record is committed, so that a 202 naming it is never
/// followed by a 404 (from this server or any other on the same database).
pub async fn recorded(state: &AppState, execution_id: &str) -> Result<(), ApiError> {
    if state.engine.flush(execution_id).await {
        return Ok(());
    }
    Err(ApiError::Execution {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "not_recorded",
        message: "the run started but its record could not be written; check the execution later".into(),
        execution_id: execution_id.to_string(),
        details: None,
    })
}

/// 202 for a run that goes on after the answer: where to find it (`status` is `queued` or
/// `running`).
pub fn accepted(execution_id: &str, status: &str) -> Response {
    let location = format!("/api/v1/executions/{execution_id}");
    let body = views::Accepted {
        execution_id: execution_id.to_string(),
        status: status.to_string(),
        status_url: location.clone(),
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
        response.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(execution_id) {
        response.headers_mut().insert("x-maestro-execution-id", v);
    }
    response
}

/// 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// For `#[serde(default, deserialize_with = "nullable")]`: tells an absent field (`None`,
/// keep) from an explicit `null` (`Some(None)`, back to the default) on updates.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}
