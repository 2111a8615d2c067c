//! `/api/v1/workflows`: DAGs of functions (create, list, show, update = new version,
//! delete, versions), manual runs, and their runs with each node's status.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::paging::{self, Asked, Listing};
use super::{iso, no_content, views, ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::domain::CallStatus;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{managed_name, Workflow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workflows", post(create).get(list))
        .route("/workflows/{name}", get(show).put(update).delete(remove))
        .route("/workflows/{name}/versions", get(versions))
        .route("/workflows/{name}/run", post(run))
        .route("/workflows/{name}/runs", get(runs))
        .route("/workflows/{name}/runs/{id}", get(run_view))
}

fn view(w: Workflow) -> views::Workflow {
    let isolated = w.definition.isolated().into_iter().map(String::from).collect();
    let d = w.definition;
    let schedule = d.schedule.map(|s| {
        let mut v = json!(s);
        v["schedule_name"] = json!(managed_name(&w.name));
        v
    });
    views::Workflow {
        id: w.id,
        name: w.name,
        version: w.version,
        nodes: d.nodes.iter().map(|n| json!(n)).collect(),
        edges: d.edges.into_iter().map(|(a, b)| vec![a, b]).collect(),
        config: d.config,
        concurrency: d.concurrency,
        description: d.description,
        schedule,
        isolated,
        created_by: w.created_by,
        created_at: iso(w.created_at),
        updated_at: iso(w.updated_at),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<views::Workflow>)> {
    let w = state.services.workflows.create(&caller, &body.name, body.rest).await?;
    Ok((StatusCode::CREATED, Json(view(w))))
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<views::Workflows>> {
    let list = state.services.workflows.list(&caller).await?;
    Ok(Json(views::Workflows {
        workflows: list.into_iter().map(view).collect(),
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<views::Workflow>> {
    Ok(Json(view(state.services.workflows.get(&caller, &name).await?)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, Value>>,
) -> ApiResult<Json<views::Workflow>> {
    Ok(Json(view(state.services.workflows.update(&caller, &name, body).await?)))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    state.services.workflows.delete(&caller, &name).await?;
    Ok(no_content())
}

async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<views::WorkflowVersions>> {
    let versions = state.services.workflows.versions(&caller, &name).await?;
    let versions = versions
        .into_iter()
        .map(|v| {
            let mut out = json!(v.definition);
            out["version"] = json!(v.version);
            out["created_by"] = json!(v.created_by);
            out["created_at"] = json!(iso(v.created_at));
            out
        })
        .collect();
    Ok(Json(views::WorkflowVersions { versions }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    config: Option<Value>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunQuery {
    /// Wait for the run to end (at most this many seconds) and answer its result.
    wait: Option<f64>,
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<RunQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: RunBody = match body.iter().all(u8::is_ascii_whitespace) {
        true => RunBody::default(),
        false => super::parse_json(&body)?,
    };
    let wait = q.wait.unwrap_or(0.0);
    if !(0.0..=300.0).contains(&wait) {
        return Err(ApiError::invalid("wait", "seconds between 0 and 300"));
    }
    let workflows = &state.services.workflows;
    if wait == 0.0 {
        // Nobody waits: committed to the queue before the 202, run by any server.
        let id = workflows.queue(&caller, &name, body.config.as_ref()).await?;
        return Ok(super::accepted(&id, "queued"));
    }
    // A caller who waits gets the run started here, at once (as a sync invoke is).
    let started = workflows.run(&caller, &name, body.config.as_ref()).await?;
    let id = started.execution_id.clone();
    // The end is committed before it is reported, like an invoke's.
    if let Some(r) = started.wait_for(std::time::Duration::from_secs_f64(wait)).await {
        return Ok(Json(r).into_response());
    }
    super::recorded(&state, &id).await?;
    Ok(super::accepted(&id, "running"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    status: Option<String>,
    /// How many (1 to 500; default 50).
    limit: Option<i64>,
    /// Rows to skip; `cursor` is the way to page.
    offset: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// Also count every match (`total`).
    total: Option<bool>,
}

async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<views::WorkflowRuns>> {
    let asked = Asked {
        limit: q.limit,
        offset: q.offset,
        cursor: q.cursor.as_deref(),
        total: q.total,
    };
    let page = paging::page(Listing::WorkflowRuns, asked)?;
    let found = state
        .services
        .workflows
        .runs(&caller, &name, q.status.as_deref(), &page)
        .await?;
    Ok(Json(views::WorkflowRuns {
        runs: found.items.into_iter().map(Into::into).collect(),
        total: found.total,
        next_cursor: paging::encode(Listing::WorkflowRuns, found.next.as_ref()),
    }))
}

/// A run as its DAG: each node's status, attempts and timings, from its steps.
async fn run_view(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<views::WorkflowRun>> {
    let d = state.services.workflows.run_detail(&caller, &name, &id).await?;
    let mut nodes = BTreeMap::new();
    for n in &d.definition.nodes {
        let mine: Vec<_> = d
            .steps
            .iter()
            .filter(|s| s.depth == 1 && s.call.function_name == n.function)
            .collect();
        let last = mine.last();
        let node = views::NodeRun {
            status: last.map_or("pending", |s| s.call.status.as_str()).to_string(),
            // Attempts the node used up: an interruption (its server stopped) is none.
            attempts: mine
                .iter()
                .filter(|s| s.call.status != CallStatus::Skipped && !interrupted(s))
                .count() as i64,
            interrupted: mine.iter().filter(|s| interrupted(s)).count() as i64,
            started_at: mine.first().map(|s| iso(s.call.started_at)),
            finished_at: last.and_then(|s| s.call.finished_at.map(iso)),
            duration_ms: last.and_then(|s| s.call.duration_ms),
            output: last.and_then(|s| s.call.output.clone()),
            error: last.and_then(|s| s.call.error.clone()),
            steps: mine.iter().map(|s| s.id.clone()).collect(),
        };
        nodes.insert(n.function.clone(), node);
    }
    let call = d.execution.call;
    Ok(Json(views::WorkflowRun {
        execution_id: id,
        workflow: name,
        version: d.run.version,
        trigger: d.execution.trigger,
        resumes: d.run.resumes,
        status: call.status.as_str().to_string(),
        nodes,
        edges: d.definition.edges.into_iter().map(|(a, b)| vec![a, b]).collect(),
        started_at: iso(call.started_at),
        finished_at: call.finished_at.map(iso),
    }))
}

fn interrupted(s: &crate::store::StepRecord) -> bool {
    s.call.error_kind() == Some("interrupted")
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "workflows";
    doc.op(
        "post",
        "/api/v1/workflows",
        tag,
        "Create a workflow (a DAG of functions)",
    )
    .body::<views::WorkflowBody>()
    .reply::<views::Workflow>(201, "created")
    .add();
    doc.op("get", "/api/v1/workflows", tag, "The tenant's workflows")
        .reply::<views::Workflows>(200, "every workflow")
        .add();
    doc.op("get", "/api/v1/workflows/{name}", tag, "One workflow (current version)")
        .reply::<views::Workflow>(200, "the workflow")
        .add();
    doc.op(
        "put",
        "/api/v1/workflows/{name}",
        tag,
        "Replace the definition (appends a version)",
    )
    .body::<views::WorkflowBody>()
    .reply::<views::Workflow>(200, "the workflow")
    .add();
    doc.op("delete", "/api/v1/workflows/{name}", tag, "Delete a workflow")
        .empty(204, "deleted")
        .add();
    doc.op(
        "get",
        "/api/v1/workflows/{name}/versions",
        tag,
        "Version history, newest first",
    )
    .reply::<views::WorkflowVersions>(200, "every version")
    .add();
    doc.op(
        "post",
        "/api/v1/workflows/{name}/run",
        tag,
        "Run it (queued: 202; ?wait=seconds starts it here and answers the result)",
    )
    .query::<RunQuery>()
    .body::<RunBody>()
    .reply::<views::InvokeResult>(200, "the run ended within `wait`")
    .reply::<views::Accepted>(
        202,
        "the run was queued (`queued`), or is still going after `wait` (`running`)",
    )
    .add();
    doc.op(
        "get",
        "/api/v1/workflows/{name}/runs",
        tag,
        "Its runs (manual, scheduled or from a webhook)",
    )
    .query::<RunsQuery>()
    .reply::<views::WorkflowRuns>(200, "a page of runs")
    .add();
    doc.op(
        "get",
        "/api/v1/workflows/{name}/runs/{id}",
        tag,
        "One run as its DAG: each node's status, attempts, timings",
    )
    .reply::<views::WorkflowRun>(200, "the run")
    .add();
}
