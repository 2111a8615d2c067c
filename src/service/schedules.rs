//! Schedules: one parser and one set of defaults for every schedule (a user's, and the one a
//! workflow's `schedule` field asks for), the target and input checked in the tenant, the
//! first tick computed, and the writes with their audit rows.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Error, Result};
use crate::auth::Caller;
use crate::config::Settings;
use crate::domain::workflow::Definition;
use crate::domain::{Overlap, RetryPolicy, Target, Timing, DEFAULT_TIMEZONE};
use crate::engine::workflow::merge_config;
use crate::engine::Engine;
use crate::scheduler::Scheduler;
use crate::store::{
    managed_name, now_ms, Audit, PageQuery, Paged, Schedule, ScheduleFields, ScheduleRun, Store, StoreError,
    MANAGED_PREFIX,
};

/// A schedule as the caller wrote it; on update, unset fields keep their value.
#[derive(Debug, Default)]
pub struct Draft {
    pub name: Option<String>,
    pub function_name: Option<String>,
    pub workflow_name: Option<String>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    pub input_data: Option<Value>,
    pub enabled: Option<bool>,
    pub max_retries: Option<i64>,
    pub retry_delay_seconds: Option<f64>,
    pub backoff_factor: Option<f64>,
    pub max_retry_delay_seconds: Option<f64>,
    pub overlap_policy: Option<String>,
    pub catchup_window_seconds: Option<f64>,
}

#[derive(Clone)]
pub struct Schedules {
    store: Store,
    engine: Engine,
    scheduler: Arc<Scheduler>,
    settings: Arc<Settings>,
}

impl Schedules {
    pub fn new(store: Store, engine: Engine, scheduler: Arc<Scheduler>, settings: Arc<Settings>) -> Schedules {
        Schedules {
            store,
            engine,
            scheduler,
            settings,
        }
    }

    pub async fn create(&self, caller: &Caller, draft: Draft) -> Result<Schedule> {
        let (fields, timing) = parse(&self.settings, draft, None, false)?;
        self.check_target(&caller.tenant, &fields).await?;
        let next = fields.enabled.then(|| next_tick(&timing)).transpose()?;
        let audit =
            |s: &Schedule| Audit::new(&caller.email, "schedule.create", format!("schedule:{}", s.id)).detail(json!(s));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .create_schedule(&fields, next, &caller.email, audit)
            .await?)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        function: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Schedule>, i64)> {
        Ok(self
            .store
            .tenant(&caller.tenant)
            .list_schedules(function, limit, offset)
            .await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Schedule> {
        Ok(self.store.tenant(&caller.tenant).get_schedule(id).await?)
    }

    /// `draft` over the current settings. The next tick is kept when the timetable did not
    /// change and the schedule stays enabled.
    pub async fn update(&self, caller: &Caller, id: &str, draft: Draft) -> Result<Schedule> {
        let current = self.store.tenant(&caller.tenant).get_schedule(id).await?;
        not_managed(&current)?;
        let (fields, timing) = parse(&self.settings, draft, Some(&current.fields), false)?;
        self.check_target(&caller.tenant, &fields).await?;
        let old = &current.fields;
        let same_timetable = old.cron_expression == fields.cron_expression && old.timezone == fields.timezone;
        let next = match (fields.enabled, old.enabled && same_timetable) {
            (false, _) => None,
            (true, true) => current.next_run_at,
            (true, false) => Some(next_tick(&timing)?),
        };
        let audit =
            |s: &Schedule| Audit::new(&caller.email, "schedule.update", format!("schedule:{id}")).detail(json!(s));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .update_schedule(id, &fields, next, audit)
            .await?)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        not_managed(&self.store.tenant(&caller.tenant).get_schedule(id).await?)?;
        let audit = Audit::new(&caller.email, "schedule.delete", format!("schedule:{id}"));
        Ok(self.store.tenant(&caller.tenant).delete_schedule(id, audit).await?)
    }

    pub async fn pause(&self, caller: &Caller, id: &str) -> Result<Schedule> {
        let audit = Audit::new(&caller.email, "schedule.pause", format!("schedule:{id}"));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .set_schedule_enabled(id, false, None, audit)
            .await?)
    }

    /// Resume from now: ticks missed while paused are not run.
    pub async fn resume(&self, caller: &Caller, id: &str) -> Result<Schedule> {
        let s = self.store.tenant(&caller.tenant).get_schedule(id).await?;
        let timing = Timing::parse(&s.fields.cron_expression, &s.fields.timezone)
            .map_err(|e| Error::Malformed(crate::domain::ParseError::new(e.field, e.message)))?;
        let next = Some(next_tick(&timing)?);
        let audit = Audit::new(&caller.email, "schedule.resume", format!("schedule:{id}"));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .set_schedule_enabled(id, true, next, audit)
            .await?)
    }

    /// One run now: its id, and its execution when it could start.
    pub async fn run_now(&self, caller: &Caller, id: &str) -> Result<(String, Option<String>)> {
        let s = self.store.tenant(&caller.tenant).get_schedule(id).await?;
        let (email, target) = (caller.email.clone(), format!("schedule:{id}"));
        let audit = move |run: &str| Audit::new(&email, "schedule.run", target).detail(json!({"run_id": run}));
        Ok(self.scheduler.run_now(&s, audit).await?)
    }

    pub async fn runs(&self, caller: &Caller, id: &str, page: &PageQuery) -> Result<Paged<ScheduleRun>> {
        Ok(self.store.tenant(&caller.tenant).list_runs(id, page).await?)
    }

    /// How many of the caller's schedules are enabled, and the next few due.
    pub async fn upcoming(&self, caller: &Caller, limit: i64) -> Result<(i64, Vec<Schedule>)> {
        Ok(self.store.tenant(&caller.tenant).upcoming_schedules(limit).await?)
    }

    /// The target exists in the caller's tenant and accepts the stored input (a workflow's
    /// is its run config: an object).
    async fn check_target(&self, tenant: &str, f: &ScheduleFields) -> Result<()> {
        use crate::engine::Error as E;
        let checked = match &f.target {
            Target::Function(name) => self.engine.check_input(tenant, name, &f.input_data).await,
            Target::Workflow(name) => match self.store.tenant(tenant).get_workflow(name).await {
                Ok(w) => merge_config(&w.definition.config, Some(&f.input_data))
                    .map(|_| ())
                    .map_err(E::Malformed),
                Err(e) => Err(e.into()),
            },
        };
        let field = match &f.target {
            Target::Function(_) => "function_name",
            Target::Workflow(_) => "workflow_name",
        };
        match checked {
            Ok(()) => Ok(()),
            Err(E::NotFound(_) | E::Store(StoreError::NotFound(_))) => Err(Error::malformed(
                field,
                format!(
                    "there is no {} named {}",
                    field.trim_end_matches("_name"),
                    f.target.name()
                ),
            )),
            Err(E::InputInvalid(p)) => Err(Error::Malformed(
                crate::domain::ParseError::new("input_data", p.summary.clone()).with_details(p.problems()),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// The schedule a workflow's `schedule` field asks for, with its first tick (none while
/// disabled): the same parser and defaults as a user's schedule, running the workflow with
/// its default config.
pub fn owned_by_workflow(
    settings: &Settings,
    workflow: &str,
    def: &Definition,
) -> Result<Option<(ScheduleFields, Option<i64>)>> {
    let Some(s) = &def.schedule else { return Ok(None) };
    let draft = Draft {
        name: Some(managed_name(workflow)),
        workflow_name: Some(workflow.to_string()),
        cron_expression: Some(s.cron_expression.clone()),
        timezone: Some(s.timezone.clone()),
        enabled: Some(s.enabled),
        ..Draft::default()
    };
    let as_schedule_field = |e: Error| match e {
        Error::Malformed(p) | Error::Invalid(p) => Error::malformed("schedule", p.summary),
        other => other,
    };
    let (fields, timing) = parse(settings, draft, None, true).map_err(as_schedule_field)?;
    let next = match fields.enabled {
        true => Some(next_tick(&timing).map_err(|_| Error::malformed("schedule", "never fires in the coming years"))?),
        false => None,
    };
    Ok(Some((fields, next)))
}

/// A user's schedule may not use the name a workflow's own one carries.
fn not_managed(s: &Schedule) -> Result<()> {
    match s.fields.name.strip_prefix(MANAGED_PREFIX) {
        Some(workflow) => Err(Error::Conflict(format!(
            "this is workflow {workflow}'s own schedule: change or remove the workflow's `schedule` instead"
        ))),
        None => Ok(()),
    }
}

/// The first tick after now; a timetable that never fires again is refused.
fn next_tick(timing: &Timing) -> Result<i64> {
    timing
        .next_ms(now_ms())
        .ok_or_else(|| Error::malformed("cron_expression", "never fires in the coming years"))
}

/// `value` within `lo..=hi` (and finite), or an error naming `field`.
fn within(field: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(value)
    } else {
        Err(Error::malformed(field, format!("must be between {lo} and {hi}")))
    }
}

/// Merge `draft` over `base` (or the defaults), check every field and the timetable.
/// `managed` is true for a workflow's own schedule, whose name carries the reserved prefix.
fn parse(
    settings: &Settings,
    draft: Draft,
    base: Option<&ScheduleFields>,
    managed: bool,
) -> Result<(ScheduleFields, Timing)> {
    let required = |field: &str| Error::malformed(field, "required");
    let name = draft
        .name
        .or_else(|| base.map(|b| b.name.clone()))
        .ok_or_else(|| required("name"))?;
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::malformed("name", "1 to 128 characters, no control characters"));
    }
    if name.starts_with(MANAGED_PREFIX) && !managed {
        return Err(Error::malformed(
            "name",
            format!("names starting with {MANAGED_PREFIX} are kept for workflows' own schedules"),
        ));
    }
    let target = Target::from_body(
        draft.function_name.as_deref(),
        draft.workflow_name.as_deref(),
        base.map(|b| &b.target),
    )
    .map_err(|(field, m)| Error::malformed(field, m))?;
    let cron_expression = draft
        .cron_expression
        .or_else(|| base.map(|b| b.cron_expression.clone()))
        .ok_or_else(|| required("cron_expression"))?;
    let timezone = draft
        .timezone
        .or_else(|| base.map(|b| b.timezone.clone()))
        .unwrap_or_else(|| DEFAULT_TIMEZONE.into());
    let timing = Timing::parse(&cron_expression, &timezone).map_err(|e| Error::malformed(e.field, e.message))?;
    let input_data = draft
        .input_data
        .or_else(|| base.map(|b| b.input_data.clone()))
        .unwrap_or_else(|| json!({}));
    if input_data.to_string().len() > settings.max_input_bytes {
        return Err(Error::malformed("input_data", "larger than MAX_INPUT_BYTES"));
    }
    let defaults = RetryPolicy::default();
    let max_retries = draft
        .max_retries
        .or(base.map(|b| b.max_retries))
        .unwrap_or(defaults.max_retries);
    if !(0..=100).contains(&max_retries) {
        return Err(Error::malformed("max_retries", "must be between 0 and 100"));
    }
    let num = |v: Option<f64>, old: Option<f64>, default: f64| v.or(old).unwrap_or(default);
    let retry_delay_seconds = within(
        "retry_delay_seconds",
        num(
            draft.retry_delay_seconds,
            base.map(|b| b.retry_delay_seconds),
            defaults.delay_seconds,
        ),
        0.0,
        86_400.0,
    )?;
    let backoff_factor = within(
        "backoff_factor",
        num(
            draft.backoff_factor,
            base.map(|b| b.backoff_factor),
            defaults.backoff_factor,
        ),
        1.0,
        100.0,
    )?;
    let max_retry_delay_seconds = within(
        "max_retry_delay_seconds",
        num(
            draft.max_retry_delay_seconds,
            base.map(|b| b.max_retry_delay_seconds),
            defaults.max_delay_seconds,
        ),
        retry_delay_seconds,
        7.0 * 86_400.0,
    )?;
    let catchup_window_seconds = within(
        "catchup_window_seconds",
        num(
            draft.catchup_window_seconds,
            base.map(|b| b.catchup_window_seconds),
            settings.scheduler_catchup_seconds,
        ),
        0.0,
        30.0 * 86_400.0,
    )?;
    let overlap_policy = match draft.overlap_policy {
        Some(p) => p
            .parse::<Overlap>()
            .map_err(|_| Error::malformed("overlap_policy", "must be `skip` or `allow`"))?,
        None => base.map_or(Overlap::Skip, |b| b.overlap_policy),
    };
    let fields = ScheduleFields {
        name,
        target,
        cron_expression,
        timezone,
        input_data,
        enabled: draft.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        max_retries,
        retry_delay_seconds,
        backoff_factor,
        max_retry_delay_seconds,
        overlap_policy,
        catchup_window_seconds,
    };
    Ok((fields, timing))
}
