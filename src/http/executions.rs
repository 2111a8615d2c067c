//! `/api/v1/executions`: history with filters, one execution, its steps, its logs.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::paging::{self, Asked, Listing};
use super::{iso, views, ApiQuery, AppState};
use crate::auth::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{CallRecord, ExecutionFilter, ExecutionRecord, StepRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/executions", get(list))
        .route("/executions/{id}", get(show))
        .route("/executions/{id}/steps", get(steps))
        .route("/executions/{id}/logs", get(logs))
        .route("/executions/{id}/cancel", post(cancel))
        .route("/events", get(events))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    function: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    trigger_id: Option<String>,
    /// Only executions started at or after this time (RFC 3339, e.g. `2026-12-01T00:00:00Z`).
    since: Option<String>,
    /// Only executions started before this time (RFC 3339).
    until: Option<String>,
    /// How many (1 to 500; default 50).
    limit: Option<i64>,
    /// Rows to skip; `cursor` is the way to page (it costs the same on any page).
    offset: Option<i64>,
    /// The previous page's `next_cursor`: this page starts just after it.
    cursor: Option<String>,
    /// Also count every match (`total`); it costs a scan of the matches.
    total: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StepsQuery {
    /// How many (1 to 1001; default 1001: the root and the default cap of nested calls).
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// An RFC 3339 query time as Unix milliseconds, or a 400 naming the parameter.
fn instant(name: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    v.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis())
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "{name} is not an RFC 3339 time ({e}); e.g. 2026-12-01T00:00:00Z"
                ))
            })
    })
    .transpose()
}

impl From<CallRecord> for views::Call {
    fn from(c: CallRecord) -> Self {
        views::Call {
            function_name: c.function_name,
            function_version: c.function_version,
            status: c.status.as_str().to_string(),
            input: c.input,
            output: c.output,
            error: c.error,
            stdout: c.stdout,
            stderr: c.stderr,
            fuel_used: c.fuel_used,
            duration_ms: c.duration_ms,
            activity: c.activity,
            started_at: iso(c.started_at),
            finished_at: c.finished_at.map(iso),
        }
    }
}

impl From<ExecutionRecord> for views::Execution {
    fn from(e: ExecutionRecord) -> Self {
        views::Execution {
            id: e.id,
            trigger: e.trigger,
            trigger_id: e.trigger_id,
            attempt: e.attempt,
            retry_of: e.retry_of,
            call: e.call.into(),
        }
    }
}

impl From<StepRecord> for views::Step {
    fn from(s: StepRecord) -> Self {
        views::Step {
            id: s.id,
            execution_id: s.execution_id,
            parent_id: s.parent_id,
            seq: s.seq,
            depth: s.depth,
            call: s.call.into(),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<views::ExecutionPage>> {
    let asked = Asked {
        limit: q.limit,
        offset: q.offset,
        cursor: q.cursor.as_deref(),
        total: q.total,
    };
    let page = paging::page(Listing::Executions, asked)?;
    let filter = ExecutionFilter {
        function: q.function,
        status: q.status,
        trigger: q.trigger,
        trigger_id: q.trigger_id,
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
    };
    let found = state.services.executions.list(&caller, &filter, &page).await?;
    Ok(Json(views::ExecutionPage {
        executions: found.items.into_iter().map(Into::into).collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
        next_cursor: paging::encode(Listing::Executions, found.next.as_ref()),
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Execution>> {
    Ok(Json(state.services.executions.get(&caller, &id).await?.into()))
}

async fn steps(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StepsQuery>,
) -> ApiResult<Json<views::Steps>> {
    let asked = Asked {
        limit: q.limit,
        cursor: q.cursor.as_deref(),
        ..Default::default()
    };
    let page = paging::page(Listing::Steps, asked)?;
    let found = state.services.executions.steps_page(&caller, &id, &page).await?;
    Ok(Json(views::Steps {
        execution_id: id,
        steps: found.items.into_iter().map(Into::into).collect(),
        next_cursor: paging::encode(Listing::Steps, found.next.as_ref()),
    }))
}

/// Take a queued execution off the queue (200, the execution now `cancelled`), or stop a
/// running one on whichever server runs it (202 `cancelling`; it ends `cancelled` within
/// moments unless it ends first). Naming an earlier attempt of a queued job cancels its
/// current one (the answer names it). One that already ended is a 409.
async fn cancel(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    use crate::service::executions::Cancelled;
    Ok(match state.services.executions.cancel(&caller, &id).await? {
        Cancelled::Now(e) => Json(views::Execution::from(*e)).into_response(),
        Cancelled::Requested(current) => super::accepted(&current, "cancelling"),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// Captured stdout/stderr, one entry per step and stream, in call order; with
/// `?follow=true`, the run's live events as Server-Sent Events instead.
async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    if q.follow {
        state.services.executions.get(&caller, &id).await?;
        return Ok(super::events::follow(state, caller.tenant.to_string(), id));
    }
    let steps = state.services.executions.steps(&caller, &id).await?;
    let mut logs = vec![];
    for s in steps {
        for (stream, text) in [("stdout", s.call.stdout), ("stderr", s.call.stderr)] {
            if !text.is_empty() {
                logs.push(views::LogEntry {
                    step_id: s.id.clone(),
                    seq: s.seq,
                    depth: s.depth,
                    function_name: s.call.function_name.clone(),
                    stream: stream.into(),
                    text,
                });
            }
        }
    }
    Ok(Json(views::Logs { execution_id: id, logs }).into_response())
}

/// `GET /api/v1/events`: the tenant's live feed as Server-Sent Events.
async fn events(State(state): State<AppState>, caller: Caller) -> Response {
    super::events::feed(state, caller.tenant.to_string())
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "executions";
    doc.op("get", "/api/v1/executions", tag, "Execution history")
        .query::<ListQuery>()
        .reply::<views::ExecutionPage>(200, "a page, newest first")
        .add();
    doc.op("get", "/api/v1/executions/{id}", tag, "One execution")
        .reply::<views::Execution>(200, "the execution")
        .add();
    doc.op(
        "get",
        "/api/v1/executions/{id}/steps",
        tag,
        "Every call of an execution",
    )
    .query::<StepsQuery>()
    .reply::<views::Steps>(200, "the steps in call order, a page at a time")
    .add();
    doc.op(
        "get",
        "/api/v1/executions/{id}/logs",
        tag,
        "Captured output; ?follow=true streams live events (SSE)",
    )
    .query::<LogsQuery>()
    .reply::<views::Logs>(200, "the output of each step")
    .add();
    doc.op(
        "post",
        "/api/v1/executions/{id}/cancel",
        tag,
        "Cancel a queued or running execution",
    )
    .reply::<views::Execution>(200, "it was queued: taken off the queue, now `cancelled`")
    .reply::<views::Accepted>(
        202,
        "it runs: `cancelling`, it ends `cancelled` on whichever server runs it",
    )
    .add();
    doc.op("get", "/api/v1/events", tag, "The tenant's live events (SSE)")
        .media(200, "text/event-stream", "events as they happen")
        .add();
}
