//! The HTTP layer's error type. Client mistakes become 4xx with a machine-readable `code`;
//! anything internal becomes a 500 whose details are logged, never sent. Every lower layer
//! has its own error; each converts here by one `From`, so a status is chosen in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::AuthError;
use crate::domain::{Fault, ParseError};
use crate::engine::Error as EngineError;
use crate::packages::Failure;
use crate::service::Error as ServiceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Validation { message: String, details: Value },
    /// A 400 naming the fields at fault.
    #[error("{message}")]
    Invalid { message: String, details: Value },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// The database cannot be reached: 503 with `Retry-After`, never a 500 or a hang.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable(String),
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    #[error("{0}")]
    TooManyRequests(String),
    /// An execution ran and failed; the answer names it so its owner can look it up.
    /// `details` (the error record) is only set for callers allowed to see it.
    #[error("{message}")]
    Execution {
        status: StatusCode,
        code: &'static str,
        message: String,
        execution_id: String,
        details: Option<Value>,
    },
    /// An error with its own code (packages: `not_pure`, `builtin_package`, ...).
    #[error("{message}")]
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn validation(message: impl Into<String>, details: Value) -> Self {
        ApiError::Validation {
            message: message.into(),
            details,
        }
    }

    /// A 400 about one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Invalid {
            message: format!("invalid `{field}`: {message}"),
            details: json!([{"field": field, "message": message}]),
        }
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::DatabaseUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Execution { status, code, .. } | ApiError::Coded { status, code, .. } => (*status, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl ApiError {
    /// A 400 from a malformed value (`invalid_request`, naming the field).
    pub fn malformed(e: ParseError) -> Self {
        ApiError::Invalid {
            details: e.problems(),
            message: e.summary,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid { field, message } => {
                let details = json!([{"field": field, "message": message}]);
                let message = format!("invalid `{field}`: {message}");
                ApiError::Validation { message, details }
            }
            StoreError::Corrupt(m) => ApiError::Coded {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "corrupt_data",
                message: format!("stored data could not be read: {m}"),
            },
            StoreError::Unavailable(m) => ApiError::DatabaseUnavailable(m),
            e @ StoreError::Db(_) => ApiError::Internal(e.into()),
        }
    }
}

/// A value refused by a domain rule: 422 with the problems.
impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        ApiError::Validation {
            details: e.problems(),
            message: e.summary,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::NotFound(m),
            EngineError::Malformed(p) => ApiError::malformed(p),
            EngineError::InputInvalid(p) => p.into(),
            EngineError::Conflict(m) => ApiError::Conflict(m),
            EngineError::Gone(message) => ApiError::Coded {
                status: StatusCode::GONE,
                code: "session_ended",
                message,
            },
            EngineError::Elsewhere { message, .. } => ApiError::Coded {
                status: StatusCode::CONFLICT,
                code: "session_elsewhere",
                message,
            },
            EngineError::TooLarge(m) => ApiError::TooLarge(m),
            EngineError::Quota { message, .. } => ApiError::TooManyRequests(message),
            EngineError::Packages(f) => f.into(),
            EngineError::Store(e) => e.into(),
            EngineError::ShuttingDown => ApiError::Unavailable("the server is shutting down; try again".into()),
            EngineError::NotRecorded(execution_id) => ApiError::Execution {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "not_recorded",
                message: "the run ended but its record could not be written yet (the database is unavailable); \
                          check the execution later"
                    .into(),
                execution_id,
                details: None,
            },
            EngineError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(p) => p.into(),
            ServiceError::Malformed(p) => ApiError::malformed(p),
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Forbidden(m) => ApiError::Forbidden(m),
            ServiceError::TooLarge(m) => ApiError::TooLarge(m),
            ServiceError::Engine(e) => e.into(),
            ServiceError::Store(e) => e.into(),
            ServiceError::Packages(f) => f.into(),
            ServiceError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(m) => ApiError::Unauthorized(m),
            AuthError::Forbidden(m) => ApiError::Forbidden(m),
            AuthError::Malformed(m) => ApiError::BadRequest(m),
            AuthError::NotFound(m) => ApiError::NotFound(m),
            AuthError::Store(e) => e.into(),
        }
    }
}

/// A coded package error keeps its code; its kind picks the status.
impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        if f.fault == Fault::Internal {
            return ApiError::Internal(anyhow::anyhow!(f.message));
        }
        ApiError::Coded {
            status: StatusCode::from_u16(f.fault.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: f.code,
            message: f.message,
        }
    }
}

/// What went wrong behind a 5xx, for the log (never sent to the client).
#[derive(Clone)]
pub struct ServerError(pub String);

/// Log each 5xx answer once, with its method and path, from what the error left in the
/// response; `into_response` has no side effects.
pub async fn log_server_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    if let Some(ServerError(detail)) = response.extensions().get::<ServerError>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), error = %detail, "request failed");
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        match &self {
            ApiError::Validation { details, .. } | ApiError::Invalid { details, .. } if !details.is_null() => {
                body["error"]["details"] = details.clone();
            }
            ApiError::Execution {
                execution_id, details, ..
            } => {
                body["error"]["execution_id"] = json!(execution_id);
                if let Some(d) = details {
                    body["error"]["details"] = d.clone();
                }
            }
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status.is_server_error() {
            // Logged once, by `log_server_errors`, with the request it answered.
            let detail = match &self {
                ApiError::Internal(e) => format!("{e:?}"),
                ApiError::DatabaseUnavailable(m) => m.clone(),
                other => other.to_string(),
            };
            response.extensions_mut().insert(ServerError(detail));
        }
        let extra = match &self {
            ApiError::MethodNotAllowed { allow, .. } => Some((header::ALLOW, allow.as_str())),
            ApiError::TooManyRequests(_) => Some((header::RETRY_AFTER, "1")),
            ApiError::Unavailable(_) => Some((header::RETRY_AFTER, "5")),
            ApiError::DatabaseUnavailable(_) => Some((header::RETRY_AFTER, "2")),
            _ => None,
        };
        if let Some((name, value)) = extra {
            if let Ok(v) = HeaderValue::from_str(value) {
                response.headers_mut().insert(name, v);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key(header::RETRY_AFTER) {
            // Every 503 says when to come back (a coded one from a lower layer too).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}
