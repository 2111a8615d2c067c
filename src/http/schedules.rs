//! `/api/v1/schedules` (create, list, show, update, delete, run now, pause, resume, runs,
//! preview) and `/scheduler/status`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{no_content, ApiJson, ApiQuery, AppState, Page};
use crate::auth::Caller;
use crate::domain::Timing;
use crate::domain::{Overlap, RetryPolicy, Target, DEFAULT_TIMEZONE};
use crate::engine::workflow::merge_config;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{now_ms, Audit, Schedule, ScheduleFields, StoreError, MANAGED_PREFIX};

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

/// `value` within `lo..=hi` (and finite), or a 400 naming `field`.
fn within(field: &str, value: f64, lo: f64, hi: f64) -> ApiResult<f64> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(value)
    } else {
        Err(ApiError::invalid(field, format!("must be between {lo} and {hi}")))
    }
}

/// Merge `body` over `base` (or the defaults), check every field and the timetable.
fn fields_from(
    state: &AppState,
    body: ScheduleBody,
    base: Option<&ScheduleFields>,
) -> ApiResult<(ScheduleFields, Timing)> {
    let required = |field: &str| ApiError::invalid(field, "required");
    let name = body
        .name
        .or_else(|| base.map(|b| b.name.clone()))
        .ok_or_else(|| required("name"))?;
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "1 to 128 characters, no control characters"));
    }
    if name.starts_with(MANAGED_PREFIX) {
        return Err(ApiError::invalid(
            "name",
            format!("names starting with {MANAGED_PREFIX} are kept for workflows' own schedules"),
        ));
    }
    let target = Target::from_body(
        body.function_name.as_deref(),
        body.workflow_name.as_deref(),
        base.map(|b| &b.target),
    )
    .map_err(|(field, m)| ApiError::invalid(field, m))?;
    let cron_expression = body
        .cron_expression
        .or_else(|| base.map(|b| b.cron_expression.clone()))
        .ok_or_else(|| required("cron_expression"))?;
    let timezone = body
        .timezone
        .or_else(|| base.map(|b| b.timezone.clone()))
        .unwrap_or_else(|| DEFAULT_TIMEZONE.into());
    let timing = Timing::parse(&cron_expression, &timezone).map_err(|e| ApiError::invalid(e.field, e.message))?;
    let input_data = body
        .input_data
        .or_else(|| base.map(|b| b.input_data.clone()))
        .unwrap_or_else(|| json!({}));
    if input_data.to_string().len() > state.settings.max_input_bytes {
        return Err(ApiError::invalid("input_data", "larger than MAX_INPUT_BYTES"));
    }
    let defaults = RetryPolicy::default();
    let max_retries = body
        .max_retries
        .or(base.map(|b| b.max_retries))
        .unwrap_or(defaults.max_retries);
    if !(0..=100).contains(&max_retries) {
        return Err(ApiError::invalid("max_retries", "must be between 0 and 100"));
    }
    let num = |v: Option<f64>, old: Option<f64>, default: f64| v.or(old).unwrap_or(default);
    let retry_delay_seconds = within(
        "retry_delay_seconds",
        num(
            body.retry_delay_seconds,
            base.map(|b| b.retry_delay_seconds),
            defaults.delay_seconds,
        ),
        0.0,
        86_400.0,
    )?;
    let backoff_factor = within(
        "backoff_factor",
        num(
            body.backoff_factor,
            base.map(|b| b.backoff_factor),
            defaults.backoff_factor,
        ),
        1.0,
        100.0,
    )?;
    let max_retry_delay_seconds = within(
        "max_retry_delay_seconds",
        num(
            body.max_retry_delay_seconds,
            base.map(|b| b.max_retry_delay_seconds),
            defaults.max_delay_seconds,
        ),
        retry_delay_seconds,
        7.0 * 86_400.0,
    )?;
    let catchup_window_seconds = within(
        "catchup_window_seconds",
        num(
            body.catchup_window_seconds,
            base.map(|b| b.catchup_window_seconds),
            state.settings.scheduler_catchup_seconds,
        ),
        0.0,
        30.0 * 86_400.0,
    )?;
    let overlap_policy = match body.overlap_policy {
        Some(p) => p
            .parse::<Overlap>()
            .map_err(|_| ApiError::invalid("overlap_policy", "must be `skip` or `allow`"))?,
        None => base.map_or(Overlap::Skip, |b| b.overlap_policy),
    };
    let fields = ScheduleFields {
        name,
        target,
        cron_expression,
        timezone,
        input_data,
        enabled: body.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        max_retries,
        retry_delay_seconds,
        backoff_factor,
        max_retry_delay_seconds,
        overlap_policy,
        catchup_window_seconds,
    };
    Ok((fields, timing))
}

/// The target exists in the caller's tenant and accepts the stored input (a workflow's is
/// its run config: an object).
async fn check_target(state: &AppState, tenant: &str, f: &ScheduleFields) -> ApiResult<()> {
    use crate::engine::Error;
    let checked = match &f.target {
        Target::Function(name) => state.engine.check_input(tenant, name, &f.input_data).await,
        Target::Workflow(name) => match state.store.get_workflow(tenant, name).await {
            Ok(w) => merge_config(&w.definition.config, Some(&f.input_data))
                .map(|_| ())
                .map_err(Error::Malformed),
            Err(e) => Err(e.into()),
        },
    };
    let field = match &f.target {
        Target::Function(_) => "function_name",
        Target::Workflow(_) => "workflow_name",
    };
    match checked {
        Ok(()) => Ok(()),
        Err(Error::NotFound(_) | Error::Store(StoreError::NotFound(_))) => Err(ApiError::invalid(
            field,
            format!(
                "there is no {} named {}",
                field.trim_end_matches("_name"),
                f.target.name()
            ),
        )),
        Err(Error::InputInvalid(p)) => Err(ApiError::Invalid {
            message: format!("invalid `input_data`: {}", p.summary),
            details: p.problems(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The first tick after now; a timetable that never fires again is refused.
fn next_tick(timing: &Timing) -> ApiResult<i64> {
    timing
        .next_ms(now_ms())
        .ok_or_else(|| ApiError::invalid("cron_expression", "never fires in the coming years"))
}

/// A schedule as the API shows it, with its next few fire times in its own zone.
fn view(s: &Schedule) -> Value {
    let mut v = json!(s);
    if let (Ok(t), Some(next)) = (
        Timing::parse(&s.fields.cron_expression, &s.fields.timezone),
        s.next_run_at.and_then(DateTime::from_timestamp_millis),
    ) {
        let mut upcoming = vec![next];
        upcoming.extend(t.upcoming(next, 2));
        let tz = t.tz();
        v["upcoming"] = json!(upcoming
            .iter()
            .map(|u| u.with_timezone(&tz).to_rfc3339())
            .collect::<Vec<_>>());
    }
    v
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> ApiResult<Response> {
    let (fields, timing) = fields_from(&state, body, None)?;
    check_target(&state, &caller.tenant, &fields).await?;
    let next = fields.enabled.then(|| next_tick(&timing)).transpose()?;
    let audit =
        |s: &Schedule| Audit::new(&caller.email, "schedule.create", format!("schedule:{}", s.id)).detail(json!(s));
    let s = state
        .store
        .create_schedule(&caller.tenant, &fields, next, &caller.email, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&s))).into_response())
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
) -> ApiResult<Json<Value>> {
    let (limit, offset) = Page::of(q.limit, q.offset);
    let (list, total) = state
        .store
        .list_schedules(&caller.tenant, q.function.as_deref(), limit, offset)
        .await?;
    let schedules: Vec<Value> = list.iter().map(view).collect();
    Ok(Json(
        json!({"schedules": schedules, "total": total, "limit": limit, "offset": offset}),
    ))
}

async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(view(&state.store.get_schedule(&caller.tenant, &id).await?)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> ApiResult<Json<Value>> {
    let current = state.store.get_schedule(&caller.tenant, &id).await?;
    not_managed(&current)?;
    let (fields, timing) = fields_from(&state, body, Some(&current.fields))?;
    check_target(&state, &caller.tenant, &fields).await?;
    let old = &current.fields;
    let same_timetable = old.cron_expression == fields.cron_expression && old.timezone == fields.timezone;
    let next = match (fields.enabled, old.enabled && same_timetable) {
        (false, _) => None,
        (true, true) => current.next_run_at,
        (true, false) => Some(next_tick(&timing)?),
    };
    let audit = |s: &Schedule| Audit::new(&caller.email, "schedule.update", format!("schedule:{id}")).detail(json!(s));
    let s = state
        .store
        .update_schedule(&caller.tenant, &id, &fields, next, audit)
        .await?;
    Ok(Json(view(&s)))
}

/// A workflow's own schedule changes with the workflow (pausing and running it work).
fn not_managed(s: &Schedule) -> ApiResult<()> {
    match s.fields.name.strip_prefix(MANAGED_PREFIX) {
        Some(workflow) => Err(ApiError::Conflict(format!(
            "this is workflow {workflow}'s own schedule: change or remove the workflow's `schedule` instead"
        ))),
        None => Ok(()),
    }
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    not_managed(&state.store.get_schedule(&caller.tenant, &id).await?)?;
    let audit = Audit::new(&caller.email, "schedule.delete", format!("schedule:{id}"));
    state.store.delete_schedule(&caller.tenant, &id, audit).await?;
    Ok(no_content())
}

async fn pause(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let s = state
        .store
        .set_schedule_enabled(
            &caller.tenant,
            &id,
            false,
            None,
            Audit::new(&caller.email, "schedule.pause", format!("schedule:{id}")),
        )
        .await?;
    Ok(Json(view(&s)))
}

/// Resume from now: ticks missed while paused are not run.
async fn resume(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let s = state.store.get_schedule(&caller.tenant, &id).await?;
    let timing = Timing::parse(&s.fields.cron_expression, &s.fields.timezone)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let next = Some(next_tick(&timing)?);
    let s = state
        .store
        .set_schedule_enabled(
            &caller.tenant,
            &id,
            true,
            next,
            Audit::new(&caller.email, "schedule.resume", format!("schedule:{id}")),
        )
        .await?;
    Ok(Json(view(&s)))
}

/// `POST /schedules/{id}/run`: one run now, answered at once with where to follow it.
async fn run_now(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let s = state.store.get_schedule(&caller.tenant, &id).await?;
    let (email, target) = (caller.email.clone(), format!("schedule:{id}"));
    let audit = move |run: &str| Audit::new(&email, "schedule.run", target).detail(json!({"run_id": run}));
    let (run_id, execution_id) = state.scheduler.run_now(&s, audit).await?;
    if let Some(e) = &execution_id {
        super::recorded(&state, e).await?;
    }
    let body = match &execution_id {
        Some(e) => json!({"run_id": run_id, "execution_id": e, "status": "running",
                          "status_url": format!("/api/v1/executions/{e}")}),
        None => json!({"run_id": run_id, "execution_id": null, "status": "failed",
                       "message": "the run could not start now: GET /api/v1/schedules/{id}/runs shows it pending (held back by a quota, retried shortly) or failed"}),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    limit: Option<i64>,
}

async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, _) = Page::of(q.limit, None);
    let runs = state.store.list_runs(&caller.tenant, &id, limit).await?;
    Ok(Json(json!({"schedule_id": id, "runs": runs})))
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
    let (active, next) = state.store.upcoming_schedules(&caller.tenant, 5).await?;
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
        "active_schedules": active,
        "next_due": next_due,
    })))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
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
        .reply::<views::ManualRun>(202, "the run started (or could not start: see `status`)")
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
