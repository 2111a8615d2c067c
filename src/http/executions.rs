//! `/api/v1/executions`: history with filters, one execution, its steps, its logs.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiQuery, AppState};
use crate::auth::Caller;
use crate::http::error::ApiResult;
use crate::store::{ExecutionFilter, ExecutionRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/executions", get(list))
        .route("/executions/{id}", get(show))
        .route("/executions/{id}/steps", get(steps))
        .route("/executions/{id}/logs", get(logs))
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
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = super::Page::of(q.limit, q.offset);
    let filter = ExecutionFilter {
        function: q.function,
        status: q.status,
        trigger: q.trigger,
        trigger_id: q.trigger_id,
        limit,
        offset,
    };
    let (executions, total) = state.store.list_executions(&caller.tenant, &filter).await?;
    Ok(Json(
        json!({"executions": executions, "total": total, "limit": filter.limit, "offset": filter.offset}),
    ))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionRecord>> {
    Ok(Json(state.store.get_execution(&caller.tenant, &id).await?))
}

async fn steps(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let steps = state.store.list_steps(&caller.tenant, &id).await?;
    Ok(Json(json!({"execution_id": id, "steps": steps})))
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
        state.store.get_execution(&caller.tenant, &id).await?;
        return Ok(super::events::follow(state, caller.tenant, id));
    }
    let steps = state.store.list_steps(&caller.tenant, &id).await?;
    let mut logs = vec![];
    for s in &steps {
        for (stream, text) in [("stdout", &s.call.stdout), ("stderr", &s.call.stderr)] {
            if !text.is_empty() {
                logs.push(json!({
                    "step_id": s.id, "seq": s.seq, "depth": s.depth, "function_name": s.call.function_name,
                    "stream": stream, "text": text,
                }));
            }
        }
    }
    Ok(Json(json!({"execution_id": id, "logs": logs})).into_response())
}

/// `GET /api/v1/events`: the tenant's live feed as Server-Sent Events.
async fn events(State(state): State<AppState>, caller: Caller) -> Response {
    super::events::feed(state, caller.tenant)
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
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
    .reply::<views::Steps>(200, "the steps in call order")
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
    doc.op("get", "/api/v1/events", tag, "The tenant's live events (SSE)")
        .media(200, "text/event-stream", "events as they happen")
        .add();
}
