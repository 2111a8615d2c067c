//! `/api/v1/schedules` (create, list, show, update, delete, run now, pause, resume, runs,
//! preview) and `/scheduler/status`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::paging::{self, Asked, Listing};
use super::{iso, no_content, views, ApiJson, ApiQuery, AppState, Page};
use crate::auth::Caller;
use crate::domain::{Target, Timing, DEFAULT_TIMEZONE};
use crate::http::error::{ApiError, ApiResult};
use crate::service::schedules::Draft;
use crate::store::{Schedule, ScheduleRun};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/schedules", post(create).get(list))
        .route("/schedules/preview", post(preview))
        .route("/schedules/{id}", get(show).put(update).delete(remove))
        .route("/schedules/{id}/run", post(run_now))
        .route("/schedules/{id}/pause", post(pause))
        .route("/schedules/{id}/resume", post(resume))
        .route("/schedules/{id}/runs", get(runs))
}

/// `/scheduler/status`, outside `/api/v1` as in the seed.
pub fn status_routes() -> Router<AppState> {
    Router::new().route("/scheduler/status", get(status))
}

/// Body of `POST /schedules` and `PUT /schedules/{id}` (on PUT every field is optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    name: Option<String>,
    function_name: Option<String>,
    workflow_name: Option<String>,
    cron_expression: Option<String>,
    timezone: Option<String>,
    input_data: Option<Value>,
    enabled: Option<bool>,
    max_retries: Option<i64>,
    retry_delay_seconds: Option<f64>,
    backoff_factor: Option<f64>,
    max_retry_delay_seconds: Option<f64>,
    overlap_policy: Option<String>,
    catchup_window_seconds: Option<f64>,
}

impl From<ScheduleBody> for Draft {
    fn from(b: ScheduleBody) -> Draft {
        Draft {
            name: b.name,
            function_name: b.function_name,
            workflow_name: b.workflow_name,
            cron_expression: b.cron_expression,
            timezone: b.timezone,
            input_data: b.input_data,
            enabled: b.enabled,
            max_retries: b.max_retries,
            retry_delay_seconds: b.retry_delay_seconds,
            backoff_factor: b.backoff_factor,
            max_retry_delay_seconds: b.max_retry_delay_seconds,
            overlap_policy: b.overlap_policy,
            catchup_window_seconds: b.catchup_window_seconds,
        }
    }
}

/// A schedule as the API shows it, with its next few fire times in its own zone.
fn view(s: Schedule) -> views::Schedule {
    let upcoming = match (
        Timing::parse(&s.fields.cron_expression, &s.fields.timezone),
        s.next_run_at.and_then(DateTime::from_timestamp_millis),
    ) {
        (Ok(t), Some(next)) => {
            let mut upcoming = vec![next];
            upcoming.extend(t.upcoming(next, 2));
            let tz = t.tz();
            Some(upcoming.iter().map(|u| u.with_timezone(&tz).to_rfc3339()).collect())
        }
        _ => None,
    };
    let f = s.fields;
    let (function_name, workflow_name) = f.target.into_names();
    views::Schedule {
        id: s.id,
        name: f.name,
        function_name,
        workflow_name,
        cron_expression: f.cron_expression,
        timezone: f.timezone,
        input_data: f.input_data,
        enabled: f.enabled,
        max_retries: f.max_retries,
        retry_delay_seconds: f.retry_delay_seconds,
        backoff_factor: f.backoff_factor,
        max_retry_delay_seconds: f.max_retry_delay_seconds,
        overlap_policy: f.overlap_policy.as_str().to_string(),
        catchup_window_seconds: f.catchup_window_seconds,
        next_run_at: s.next_run_at.map(iso),
        last_run_at: s.last_run_at.map(iso),
        last_status: s.last_status,
        last_execution_id: s.last_execution_id,
        upcoming,
        created_by: s.created_by,
        created_at: iso(s.created_at),
        updated_at: iso(s.updated_at),
    }
}

fn run_view(r: ScheduleRun) -> views::ScheduleRun {
    views::ScheduleRun {
        id: r.id,
        schedule_id: r.schedule_id,
        fire_at: iso(r.fire_at),
        attempt: r.attempt,
        status: r.status.as_str().to_string(),
        reason: r.reason,
        due_at: iso(r.due_at),
        execution_id: r.execution_id,
        retry_of: r.retry_of,
        missed: r.missed,
        created_at: iso(r.created_at),
        finished_at: r.finished_at.map(iso),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> ApiResult<(StatusCode, Json<views::Schedule>)> {
    let s = state.services.schedules.create(&caller, body.into()).await?;
    Ok((StatusCode::CREATED, Json(view(s))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    function: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<views::SchedulePage>> {
    let (limit, offset) = Page::of(q.limit, q.offset);
    let (list, total) = state
        .services
        .schedules
        .list(&caller, q.function.as_deref(), limit, offset)
        .await?;
    Ok(Json(views::SchedulePage {
        schedules: list.into_iter().map(view).collect(),
        total,
        limit,
        offset,
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Schedule>> {
    Ok(Json(view(state.services.schedules.get(&caller, &id).await?)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> ApiResult<Json<views::Schedule>> {
    Ok(Json(view(
        state.services.schedules.update(&caller, &id, body.into()).await?,
    )))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    state.services.schedules.delete(&caller, &id).await?;
    Ok(no_content())
}

async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Schedule>> {
    Ok(Json(view(state.services.schedules.pause(&caller, &id).await?)))
}

/// Resume from now: ticks missed while paused are not run.
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Schedule>> {
    Ok(Json(view(state.services.schedules.resume(&caller, &id).await?)))
}

/// `POST /schedules/{id}/run`: one run now, answered at once with where to follow it.
async fn run_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<views::ManualRun>)> {
    // A run's job is committed before this answers: it will run.
    let (run_id, queued) = state.services.schedules.run_now(&caller, &id).await?;
    let body = match queued {
        Some(execution_id) => views::ManualRun {
            run_id,
            status: "queued".into(),
            status_url: Some(format!("/api/v1/executions/{execution_id}")),
            execution_id: Some(execution_id),
            message: None,
        },
        None => views::ManualRun {
            run_id,
            execution_id: None,
            status: "failed".into(),
            status_url: None,
            message: Some("the run could not start now: GET /api/v1/schedules/{id}/runs shows it pending (held back by a quota, retried shortly) or failed".into()),
        },
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// How many (1 to 500; default 50).
    limit: Option<i64>,
    /// Rows to skip; `cursor` is the way to page.
    offset: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// Also count every run (`total`).
    total: Option<bool>,
}

async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<views::ScheduleRuns>> {
    let asked = Asked {
        limit: q.limit,
        offset: q.offset,
        cursor: q.cursor.as_deref(),
        total: q.total,
    };
    let page = paging::page(Listing::ScheduleRuns, asked)?;
    let found = state.services.schedules.runs(&caller, &id, &page).await?;
    Ok(Json(views::ScheduleRuns {
        schedule_id: id,
        runs: found.items.into_iter().map(run_view).collect(),
        total: found.total,
        next_cursor: paging::encode(Listing::ScheduleRuns, found.next.as_ref()),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    cron_expression: String,
    timezone: Option<String>,
    after: Option<String>,
    count: Option<usize>,
}

/// `POST /schedules/preview`: the next fire times of an expression, creating nothing.
async fn preview(_caller: Caller, ApiJson(body): ApiJson<PreviewBody>) -> ApiResult<Json<Value>> {
    let timezone = body.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.into());
    let timing = Timing::parse(&body.cron_expression, &timezone).map_err(|e| ApiError::invalid(e.field, e.message))?;
    let after = match &body.after {
        Some(a) => DateTime::parse_from_rfc3339(a)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| ApiError::invalid("after", format!("not an RFC 3339 time: {e}")))?,
        None => Utc::now(),
    };
    let count = body.count.unwrap_or(5);
    if !(1..=100).contains(&count) {
        return Err(ApiError::invalid("count", "must be between 1 and 100"));
    }
    let tz = timing.tz();
    let next: Vec<String> = timing
        .upcoming(after, count)
        .iter()
        .map(|t| t.with_timezone(&tz).to_rfc3339())
        .collect();
    Ok(Json(json!({
        "cron_expression": body.cron_expression,
        "timezone": timezone,
        "after": after.to_rfc3339(),
        "next": next,
    })))
}

/// `GET /scheduler/status`: this node's scheduler and the caller's schedules.
async fn status(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let (active, next) = state.services.schedules.upcoming(&caller, 5).await?;
    let sch = &state.scheduler;
    let next_due: Vec<Value> = next
        .iter()
        .map(|s| {
            let mut v = json!({"id": s.id, "name": s.fields.name,
                               "next_run_at": s.next_run_at.and_then(DateTime::from_timestamp_millis)});
            v[if matches!(s.fields.target, Target::Workflow(_)) {
                "workflow_name"
            } else {
                "function_name"
            }] = json!(s.fields.target.name());
            v
        })
        .collect();
    Ok(Json(json!({
        "running": sch.enabled,
        "node_id": sch.node_id,
        "poll_interval_ms": sch.poll.as_millis() as u64,
        "node": sch.stats(),
        "queue": state.engine.queue_stats(),
        "active_schedules": active,
        "next_due": next_due,
    })))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "schedules";
    doc.op("post", "/api/v1/schedules", tag, "Create a schedule")
        .body::<ScheduleBody>()
        .reply::<views::Schedule>(201, "created")
        .add();
    doc.op("get", "/api/v1/schedules", tag, "List schedules")
        .query::<ListQuery>()
        .reply::<views::SchedulePage>(200, "a page")
        .add();
    doc.op(
        "post",
        "/api/v1/schedules/preview",
        tag,
        "Next fire times of an expression",
    )
    .body::<PreviewBody>()
    .reply::<views::SchedulePreview>(200, "the next fire times, in the zone")
    .add();
    doc.op("get", "/api/v1/schedules/{id}", tag, "Show a schedule")
        .reply::<views::Schedule>(200, "the schedule")
        .add();
    doc.op("put", "/api/v1/schedules/{id}", tag, "Update a schedule")
        .body::<ScheduleBody>()
        .reply::<views::Schedule>(200, "the schedule")
        .add();
    doc.op("delete", "/api/v1/schedules/{id}", tag, "Delete a schedule")
        .empty(204, "deleted")
        .add();
    doc.op("post", "/api/v1/schedules/{id}/run", tag, "Run once now")
        .reply::<views::ManualRun>(202, "the run is queued (or could not be: see `status`)")
        .add();
    doc.op("post", "/api/v1/schedules/{id}/pause", tag, "Pause")
        .reply::<views::Schedule>(200, "the schedule")
        .add();
    doc.op("post", "/api/v1/schedules/{id}/resume", tag, "Resume")
        .reply::<views::Schedule>(200, "the schedule")
        .add();
    doc.op("get", "/api/v1/schedules/{id}/runs", tag, "Ticks and attempts")
        .query::<RunsQuery>()
        .reply::<views::ScheduleRuns>(200, "runs, newest first")
        .add();
    doc.op("get", "/scheduler/status", tag, "Scheduler status")
        .reply::<views::SchedulerStatus>(200, "this server's scheduler")
        .add();
}
