//! `/api/v1/workflows`: DAGs of functions (create, list, show, update = new version,
//! delete, versions), manual runs, and their runs with each node's status.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{no_content, ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::domain::workflow::{Definition, DefinitionIn};
use crate::domain::Timing;
use crate::domain::{CallStatus, FunctionName, Overlap, RetryPolicy, Target};
use crate::engine::workflow::merge_config;
use crate::engine::Trigger;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{managed_name, now_ms, Audit, ScheduleFields, Workflow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workflows", post(create).get(list))
        .route("/workflows/{name}", get(show).put(update).delete(remove))
        .route("/workflows/{name}/versions", get(versions))
        .route("/workflows/{name}/run", post(run))
        .route("/workflows/{name}/runs", get(runs))
        .route("/workflows/{name}/runs/{id}", get(run_view))
}

/// Check a body: its shape, then that every node is a function of the tenant.
async fn definition(state: &AppState, tenant: &str, body: Value) -> ApiResult<Definition> {
    let parsed: DefinitionIn = serde_json::from_value(body).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let def = parsed.check().map_err(|e| ApiError::invalid(e.field, e.message))?;
    let mut unknown = Vec::new();
    for n in &def.nodes {
        if !state.store.function_exists(tenant, &n.function).await? {
            unknown.push(n.function.as_str());
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::invalid(
            "nodes",
            format!("no function named {} in this tenant", unknown.join(", ")),
        ));
    }
    Ok(def)
}

/// The schedule a workflow's `schedule` field asks for, with its first tick (none while
/// disabled). It runs with the default config and fails like any run (node retries apply).
fn own_schedule(state: &AppState, name: &str, def: &Definition) -> ApiResult<Option<(ScheduleFields, Option<i64>)>> {
    let Some(s) = &def.schedule else { return Ok(None) };
    let timing =
        Timing::parse(&s.cron_expression, &s.timezone).map_err(|e| ApiError::invalid("schedule", e.to_string()))?;
    let next = match s.enabled {
        true => Some(
            timing
                .next_ms(now_ms())
                .ok_or_else(|| ApiError::invalid("schedule", "never fires in the coming years"))?,
        ),
        false => None,
    };
    let retry = RetryPolicy::default();
    let fields = ScheduleFields {
        name: managed_name(name),
        target: Target::Workflow(name.to_string()),
        cron_expression: s.cron_expression.clone(),
        timezone: s.timezone.clone(),
        input_data: json!({}),
        enabled: s.enabled,
        // The same defaults as a schedule made through /schedules.
        max_retries: retry.max_retries,
        retry_delay_seconds: retry.delay_seconds,
        backoff_factor: retry.backoff_factor,
        max_retry_delay_seconds: retry.max_delay_seconds,
        overlap_policy: Overlap::Skip,
        catchup_window_seconds: state.settings.scheduler_catchup_seconds,
    };
    Ok(Some((fields, next)))
}

fn view(w: &Workflow) -> Value {
    let mut v = json!(w);
    v["isolated"] = json!(w.definition.isolated());
    if w.definition.schedule.is_some() {
        v["schedule"]["schedule_name"] = json!(managed_name(&w.name));
    }
    v
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
) -> ApiResult<Response> {
    FunctionName::parse(&body.name)?;
    let def = definition(&state, &caller.tenant, Value::Object(body.rest)).await?;
    let own = own_schedule(&state, &body.name, &def)?;
    let own = own.as_ref().map(|(f, next)| (f, *next));
    let audit = Audit::new(&caller.email, "workflow.create", format!("workflow:{}", body.name));
    let w = state
        .store
        .create_workflow(&caller.tenant, &body.name, (&def, own), &caller.email, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&w))).into_response())
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = state
        .store
        .list_workflows(&caller.tenant)
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(Json(json!({ "workflows": list })))
}

async fn show(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view(&state.store.get_workflow(&caller.tenant, &name).await?)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let mut body = body;
    if body.remove("name").is_some_and(|n| n != json!(name)) {
        return Err(ApiError::invalid("name", "a workflow cannot be renamed"));
    }
    let def = definition(&state, &caller.tenant, Value::Object(body)).await?;
    let own = own_schedule(&state, &name, &def)?;
    let own = own.as_ref().map(|(f, next)| (f, *next));
    let audit = Audit::new(&caller.email, "workflow.update", format!("workflow:{name}"));
    let w = state
        .store
        .update_workflow(&caller.tenant, &name, (&def, own), &caller.email, audit)
        .await?;
    Ok(Json(view(&w)))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    let audit = Audit::new(&caller.email, "workflow.delete", format!("workflow:{name}"));
    state.store.delete_workflow(&caller.tenant, &name, audit).await?;
    Ok(no_content())
}

async fn versions(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let v = state.store.workflow_versions(&caller.tenant, &name).await?;
    Ok(Json(json!({ "versions": v })))
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
    let w = state.store.get_workflow(&caller.tenant, &name).await?;
    let config = merge_config(&w.definition.config, body.config.as_ref()).map_err(ApiError::malformed)?;
    let wait = q.wait.unwrap_or(0.0);
    if !(0.0..=300.0).contains(&wait) {
        return Err(ApiError::invalid("wait", "seconds between 0 and 300"));
    }
    let trigger = Trigger::Workflow { id: w.id.clone() };
    let started = state.engine.run_workflow(&caller.tenant, &w, config, trigger).await?;
    let id = started.execution_id.clone();
    let location = format!("/api/v1/executions/{id}");
    if wait > 0.0 {
        // The end is committed before it is reported, like an invoke's.
        if let Some(r) = started.wait_for(std::time::Duration::from_secs_f64(wait)).await {
            return Ok(Json(json!(r)).into_response());
        }
    }
    super::recorded(&state, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        Json(json!({"execution_id": id, "status": "running", "status_url": location})),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Value>> {
    let w = state.store.get_workflow(&caller.tenant, &name).await?;
    let page = (q.limit.unwrap_or(50).clamp(1, 500), q.offset.unwrap_or(0).max(0));
    let (runs, total) = state
        .store
        .list_workflow_runs(&caller.tenant, &w.id, q.status.as_deref(), page)
        .await?;
    Ok(Json(json!({"runs": runs, "total": total})))
}

/// A run as its DAG: each node's status, attempts and timings, from its steps.
async fn run_view(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let w = state.store.get_workflow(&caller.tenant, &name).await?;
    let run = state.store.workflow_run(&caller.tenant, &id).await?;
    let Some(run) = run.filter(|r| r.workflow_id == w.id) else {
        return Err(ApiError::NotFound(format!("{name} has no run {id}")));
    };
    let execution = state.store.get_execution(&caller.tenant, &id).await?;
    let (_, def) = state
        .store
        .workflow_version_by_id(&caller.tenant, &w.id, run.version)
        .await?;
    let def = &def;
    let steps = state.store.list_steps(&caller.tenant, &id).await?;
    let mut nodes: BTreeMap<&str, Value> = BTreeMap::new();
    for n in &def.nodes {
        let mine: Vec<_> = steps
            .iter()
            .filter(|s| s.depth == 1 && s.call.function_name == n.function)
            .collect();
        let last = mine.last();
        nodes.insert(
            n.function.as_str(),
            json!({
                "status": last.map_or("pending", |s| s.call.status.as_str()),
                // Attempts the node used up: an interruption (its server stopped) is none.
                "attempts": mine.iter().filter(|s| s.call.status != CallStatus::Skipped && !interrupted(s)).count(),
                "interrupted": mine.iter().filter(|s| interrupted(s)).count(),
                "started_at": mine.first().map(|s| crate::http::iso(s.call.started_at)),
                "finished_at": last.and_then(|s| s.call.finished_at.map(crate::http::iso)),
                "duration_ms": last.and_then(|s| s.call.duration_ms),
                "output": last.and_then(|s| s.call.output.clone()),
                "error": last.and_then(|s| s.call.error.clone()),
                "steps": mine.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            }),
        );
    }
    Ok(Json(json!({
        "execution_id": id, "workflow": name, "version": run.version, "trigger": execution.trigger,
        "resumes": run.resumes, "status": execution.call.status, "nodes": nodes, "edges": def.edges,
        "started_at": crate::http::iso(execution.call.started_at),
        "finished_at": execution.call.finished_at.map(crate::http::iso),
    })))
}

fn interrupted(s: &crate::store::StepRecord) -> bool {
    s.call.error_kind() == Some("interrupted")
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
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
        "Run it now (202; ?wait=seconds answers the result)",
    )
    .query::<RunQuery>()
    .body::<RunBody>()
    .reply::<views::InvokeResult>(200, "the run ended within `wait`")
    .reply::<views::Accepted>(202, "the run started")
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
