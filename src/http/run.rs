//! `POST /api/v1/run`: code sent to run once, answered in the shape notebook kernels use
//! (stdout, stderr, rich results, an error with its traceback).

use std::convert::Infallible;
use std::future::Future;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{parse_json, views, ApiQuery, AppState};
use crate::auth::Caller;
use crate::domain::{FunctionSettings, Isolation};
use crate::engine::{InvokeResult, Output};
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
    /// Files put in the run's working directory first: path -> base64 content (at most
    /// SESSION_FILES_MAX_BYTES together). The code opens them by their relative path.
    #[schema(value_type = Option<Object>)]
    files: Option<serde_json::Map<String, Value>>,
    /// Answer the files the code wrote under `out/` (`files` in the answer, path -> base64).
    #[serde(default)]
    return_files: bool,
}

/// `?stream=true`: answer Server-Sent Events as the code runs.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamQuery {
    /// Answer `text/event-stream`: `start` ({execution_id}), `stdout` and `stderr` chunks
    /// ({text}) as the code prints, one `result` per result, then `end` with the whole
    /// answer (or `error` with an error body). A client that disconnects stops nothing.
    #[serde(default)]
    pub stream: bool,
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StreamQuery>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let runs = &state.services.runs;
    runs.check_allowed(&caller).await?;
    // The code, input and files together, with room for the code's escaping in JSON and the
    // files' base64 (each part is checked against its own limit after parsing).
    let files = state.settings.session_files_max_bytes as usize;
    let limit = state.settings.max_input_bytes + 6 * state.settings.max_code_bytes + files * 4 / 3 + 64 * 1024;
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
        files: body.files,
        return_files: body.return_files,
        stream: None,
    };
    let (tx, rx) = output(query.stream);
    // The run goes on (and is recorded) if the client hangs up: the worker owns it.
    let started = runs.start(&caller, RunRequest { stream: tx, ..req }).await?;
    let start = json!({"execution_id": started.execution_id});
    Ok(reply(rx, start, async move {
        let (result, (stdout, stderr)) = started.wait_printed().await?;
        Ok(answer(result, stdout, stderr))
    })
    .await)
}

/// Chunks of printed output: (`stdout` | `stderr`, text).
pub(super) type Chunks = UnboundedReceiver<(&'static str, String)>;

/// A channel for the printed output, when the client asked for a stream.
pub(super) fn output(stream: bool) -> (Option<Output>, Option<Chunks>) {
    match stream {
        true => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        false => (None, None),
    }
}

/// The answer of a run or cell: the JSON answer once it ends, or (with `rx`) a stream of
/// events as it runs. The run ends and is recorded whether or not the client stays.
pub(super) async fn reply(
    rx: Option<Chunks>,
    start: Value,
    done: impl Future<Output = ApiResult<views::RunAnswer>> + Send + 'static,
) -> Response {
    let Some(mut rx) = rx else {
        return match done.await {
            Ok(a) => Json(a).into_response(),
            Err(e) => e.into_response(),
        };
    };
    let (events, out) = tokio::sync::mpsc::channel::<SseEvent>(256);
    let event = |kind: &str, data: &Value| SseEvent::default().event(kind).data(data.to_string());
    tokio::spawn(async move {
        // Sends fail once the client is gone; the run is waited for all the same.
        let _ = events.send(event("start", &start)).await;
        let mut done = std::pin::pin!(done);
        let answer = loop {
            tokio::select! {
                biased;
                Some((kind, text)) = rx.recv() => {
                    let _ = events.send(event(kind, &json!({ "text": text }))).await;
                }
                answer = &mut done => break answer,
            }
        };
        while let Ok((kind, text)) = rx.try_recv() {
            let _ = events.send(event(kind, &json!({ "text": text }))).await;
        }
        match answer {
            Ok(a) => {
                for r in &a.results {
                    let _ = events.send(event("result", r)).await;
                }
                let _ = events.send(event("end", &json!(a))).await;
            }
            Err(e) => {
                let (_, code) = e.parts();
                let body = json!({"error": {"code": code, "message": e.to_string()}});
                let _ = events.send(event("error", &body)).await;
            }
        }
    });
    let stream = futures_util::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok::<_, Infallible>(e), out))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// A finished run (or session cell) as the API answers it.
pub(super) fn answer(r: InvokeResult, stdout: String, stderr: String) -> views::RunAnswer {
    let (results, files) = match r.output {
        Some(Value::Object(mut o)) => {
            let results = match o.remove("results") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let files = match o.remove("files") {
                Some(Value::Object(f)) => Some(f),
                _ => None,
            };
            (results, files)
        }
        _ => (Vec::new(), None),
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
        files,
        execution_count: None,
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
    .query::<StreamQuery>()
    .body::<RunBody>()
    .reply::<views::RunAnswer>(200, "the run ended (see `status`; a failed run has `error`)")
    .media(
        200,
        "text/event-stream",
        "with `?stream=true`: the run's events as it runs",
    )
    .add();
}
