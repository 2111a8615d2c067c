//! `POST /api/v1/run`: code sent to run once, answered in the shape notebook kernels use
//! (stdout, stderr, rich results, an error with its traceback).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{parse_json, views, AppState};
use crate::auth::Caller;
use crate::domain::{FunctionSettings, Isolation};
use crate::engine::InvokeResult;
use crate::http::error::ApiResult;
use crate::sandbox::ErrorRecord;
use crate::service::runs::RunRequest;

pub fn routes() -> Router<AppState> {
    Router::new().route("/run", post(run))
}

/// Body of `POST /run`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// Python run as a notebook cell: statements, then the value of a last expression.
    code: String,
    /// The script's global `input` (absent: `None`).
    input: Option<Value>,
    timeout_seconds: Option<f64>,
    memory_mb: Option<u64>,
    fuel: Option<u64>,
    /// Only `fresh` (a new interpreter every run; `warm` is refused).
    #[schema(value_type = Option<String>)]
    isolation: Option<Isolation>,
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Body,
) -> ApiResult<Json<views::RunAnswer>> {
    let runs = &state.services.runs;
    runs.check_allowed(&caller).await?;
    // The code and input together, with room for the code's escaping in JSON (each part is
    // checked against its own limit after parsing).
    let limit = state.settings.max_input_bytes + 6 * state.settings.max_code_bytes + 4096;
    let body: RunBody = parse_json(&super::read_input(body, limit).await?)?;
    let req = RunRequest {
        code: body.code,
        input: body.input,
        limits: FunctionSettings {
            isolation: body.isolation,
            timeout_seconds: body.timeout_seconds,
            fuel: body.fuel,
            memory_mb: body.memory_mb,
            on_interrupt: None,
        },
    };
    // The run goes on (and is recorded) if the client hangs up: the worker owns it.
    let started = runs.start(&caller, req).await?;
    let (result, (stdout, stderr)) = started.wait_printed().await?;
    Ok(Json(answer(result, stdout, stderr)))
}

/// A finished run as the API answers it.
fn answer(r: InvokeResult, stdout: String, stderr: String) -> views::RunAnswer {
    let results = match r.output {
        Some(Value::Object(mut o)) => match o.remove("results") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    views::RunAnswer {
        execution_id: r.execution_id,
        status: r.status.to_string(),
        stdout,
        stderr,
        results,
        error: r.error.map(run_error),
        duration_ms: r.duration_ms,
        fuel_used: r.fuel_used,
    }
}

/// An error as notebook clients show it: the exception's type and text and its traceback
/// (`kind` says what stopped the run when it was not a Python exception: a timeout, memory).
fn run_error(e: ErrorRecord) -> views::RunError {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    views::RunError {
        name: e.exc_type.unwrap_or_else(|| kind.clone()),
        value: e.message,
        traceback: e.traceback.unwrap_or_default(),
        kind,
    }
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    doc.op(
        "post",
        "/api/v1/run",
        "run",
        "Run code once in a fresh sandbox of the tenant (a notebook cell's answer)",
    )
    .body::<RunBody>()
    .reply::<views::RunAnswer>(200, "the run ended (see `status`; a failed run has `error`)")
    .add();
}
