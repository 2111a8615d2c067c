//! Schedules and their runs. The scheduler's queries (`due_schedules`, `claim_tick`,
//! `due_retries`, ...) work across tenants: they are how a tick finds its tenant.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::page::{Keyset, PageQuery, Paged};
use super::webhooks::check_target;
use super::{conflict_on_unique, json_col, now_ms, text_col, Audit, Row, Store, StoreError, StoreResult, Tenant};
use crate::domain::Target;
use crate::domain::{CallStatus, Overlap, RetryPolicy, RunStatus};

/// A schedule's settings, as created or replaced.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleFields {
    pub name: String,
    #[serde(flatten)]
    pub target: Target,
    pub cron_expression: String,
    pub timezone: String,
    pub input_data: Value,
    pub enabled: bool,
    pub max_retries: i64,
    pub retry_delay_seconds: f64,
    pub backoff_factor: f64,
    pub max_retry_delay_seconds: f64,
    pub overlap_policy: Overlap,
    pub catchup_window_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub id: String,
    #[serde(skip)]
    pub tenant: String,
    #[serde(flatten)]
    pub fields: ScheduleFields,
    #[serde(serialize_with = "crate::domain::time::iso_ms_opt")]
    pub next_run_at: Option<i64>,
    #[serde(serialize_with = "crate::domain::time::iso_ms_opt")]
    pub last_run_at: Option<i64>,
    pub last_status: Option<String>,
    pub last_execution_id: Option<String>,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub updated_at: i64,
}

/// One tick or attempt of a schedule.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRun {
    pub id: String,
    #[serde(skip)]
    pub tenant: String,
    pub schedule_id: String,
    /// The tick this run belongs to (retries keep their first attempt's tick).
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub fire_at: i64,
    pub attempt: i64,
    /// `pending` is a retry waiting for `due_at`.
    pub status: RunStatus,
    /// Why it was skipped or could not start, or `manual`.
    pub reason: Option<String>,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub due_at: i64,
    pub execution_id: Option<String>,
    pub retry_of: Option<String>,
    /// Ticks missed during downtime that this one stands for.
    pub missed: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms_opt")]
    pub finished_at: Option<i64>,
}

const COLS: &str =
    "id, tenant, name, function_name, workflow_name, cron_expression, timezone, input_data, enabled, max_retries, \
                    retry_delay_seconds, backoff_factor, max_retry_delay_seconds, overlap_policy, \
                    catchup_window_seconds, next_run_at, last_run_at, last_status, last_execution_id, created_by, \
                    created_at, updated_at";
const RUN_COLS: &str = "id, tenant, schedule_id, fire_at, attempt, status, reason, due_at, execution_id, retry_of, \
                        missed, created_at, finished_at";

fn schedule_from(r: &Row) -> Result<Schedule, sqlx::Error> {
    Ok(Schedule {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        fields: ScheduleFields {
            name: r.try_get("name")?,
            target: Target::from_columns(r.try_get("function_name")?, r.try_get("workflow_name")?),
            cron_expression: r.try_get("cron_expression")?,
            timezone: r.try_get("timezone")?,
            input_data: json_col(r, "input_data")?.unwrap_or(Value::Null),
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            max_retries: r.try_get("max_retries")?,
            retry_delay_seconds: r.try_get("retry_delay_seconds")?,
            backoff_factor: r.try_get("backoff_factor")?,
            max_retry_delay_seconds: r.try_get("max_retry_delay_seconds")?,
            overlap_policy: text_col(r, "overlap_policy")?,
            catchup_window_seconds: r.try_get("catchup_window_seconds")?,
        },
        next_run_at: r.try_get("next_run_at")?,
        last_run_at: r.try_get("last_run_at")?,
        last_status: r.try_get("last_status")?,
        last_execution_id: r.try_get("last_execution_id")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn run_from(r: &Row) -> Result<ScheduleRun, sqlx::Error> {
    Ok(ScheduleRun {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        schedule_id: r.try_get("schedule_id")?,
        fire_at: r.try_get("fire_at")?,
        attempt: r.try_get("attempt")?,
        status: text_col(r, "status")?,
        reason: r.try_get("reason")?,
        due_at: r.try_get("due_at")?,
        execution_id: r.try_get("execution_id")?,
        retry_of: r.try_get("retry_of")?,
        missed: r.try_get("missed")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("schedule {id} not found"))
}

fn name_taken(name: &str) -> String {
    format!("a schedule named {name:?} already exists")
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind the settings in the order the statements here list them.
fn bind_fields<'q>(q: AnyQuery<'q>, f: &'q ScheduleFields) -> AnyQuery<'q> {
    q.bind(&f.name)
        .bind(f.target.columns().0)
        .bind(&f.cron_expression)
        .bind(&f.timezone)
        .bind(f.input_data.to_string())
        .bind(f.enabled as i64)
        .bind(f.max_retries)
        .bind(f.retry_delay_seconds)
        .bind(f.backoff_factor)
        .bind(f.max_retry_delay_seconds)
        .bind(f.overlap_policy.as_str())
        .bind(f.catchup_window_seconds)
        .bind(f.target.columns().1)
}

impl ScheduleFields {
    /// The retry policy these settings hold.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            delay_seconds: self.retry_delay_seconds,
            backoff_factor: self.backoff_factor,
            max_delay_seconds: self.max_retry_delay_seconds,
        }
    }
}

/// A run about to be recorded.
pub struct NewRun<'a> {
    pub tenant: &'a str,
    pub schedule_id: &'a str,
    pub fire_at: i64,
    pub attempt: i64,
    pub status: RunStatus,
    pub reason: Option<&'a str>,
    pub due_at: i64,
    pub retry_of: Option<&'a str>,
    pub missed: i64,
}

async fn fetch(conn: &mut sqlx::AnyConnection, tenant: &str, id: &str) -> StoreResult<Schedule> {
    let sql = format!("select {COLS} from schedules where tenant = $1 and id = $2");
    let row = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    Ok(schedule_from(&row.ok_or_else(|| not_found(id))?)?)
}

/// Read the schedule as written, record `audit` of it, and commit.
async fn audited(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    id: &str,
    audit: impl FnOnce(&Schedule) -> Audit,
) -> StoreResult<Schedule> {
    let s = fetch(&mut tx, tenant, id).await?;
    audit(&s).write(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(s)
}

impl Store {
    /// Enabled schedules whose tick is due, every tenant's, soonest first.
    pub async fn due_schedules(&self, now: i64, limit: i64) -> StoreResult<Vec<Schedule>> {
        let sql = format!(
            "select {COLS} from schedules where enabled = 1 and next_run_at is not null and next_run_at <= $1
             order by next_run_at limit $2"
        );
        let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(schedule_from).collect::<Result<_, _>>()?)
    }

    /// Take the tick at `expected` by moving `next_run_at` to `next`; false if another replica
    /// (or an update) moved it first.
    pub async fn claim_tick(&self, id: &str, expected: i64, next: Option<i64>) -> StoreResult<bool> {
        let done = sqlx::query("update schedules set next_run_at = $3 where id = $1 and next_run_at = $2")
            .bind(id)
            .bind(expected)
            .bind(next)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Take the tick at `expected` (moving `next_run_at` to `next`) and record its run, in
    /// one transaction: either both happen or neither, so a tick is never claimed without a
    /// trace. `None` if another replica (or an update) moved the tick first.
    pub async fn claim_tick_with_run(
        &self,
        expected: i64,
        next: Option<i64>,
        r: &NewRun<'_>,
    ) -> StoreResult<Option<String>> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("update schedules set next_run_at = $3 where id = $1 and next_run_at = $2")
            .bind(r.schedule_id)
            .bind(expected)
            .bind(next)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let id = insert_run(&mut tx, r).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Record a run; `None` if that (tick, attempt) is already recorded.
    pub async fn insert_run(&self, r: &NewRun<'_>) -> StoreResult<Option<String>> {
        let mut conn = self.pool.acquire().await?;
        insert_run(&mut conn, r).await
    }

    /// A run started by hand, recorded with its audit row (given the run's id).
    pub async fn insert_manual_run(
        &self,
        r: &NewRun<'_>,
        audit: impl FnOnce(&str) -> Audit,
    ) -> StoreResult<Option<String>> {
        let mut tx = self.begin().await?;
        let id = insert_run(&mut tx, r).await?;
        if let Some(id) = &id {
            audit(id).write(&mut tx, r.tenant).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Move a run from `from` to `to`; false if it was not in `from` (someone else moved it).
    pub async fn move_run(
        &self,
        run_id: &str,
        from: RunStatus,
        to: RunStatus,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let finished = to.is_finished().then(now_ms);
        let done = sqlx::query(
            "update schedule_runs set status = $3, reason = coalesce($4, reason), finished_at = $5
             where id = $1 and status = $2",
        )
        .bind(run_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(finished)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// End a running run and, in the same transaction, note the schedule's latest result and
    /// queue its retry: a crash can never leave a failed run whose retry was lost. False if
    /// the run was not running (someone else ended it).
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        reason: Option<&str>,
        execution_id: Option<&str>,
        retry: Option<&NewRun<'_>>,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "update schedule_runs set status = $2, reason = coalesce($3, reason), finished_at = $4,
             execution_id = coalesce(execution_id, $5) where id = $1 and status = 'running'
             returning schedule_id",
        )
        .bind(run_id)
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(execution_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = done else {
            return Ok(false);
        };
        let schedule_id: String = row.try_get("schedule_id")?;
        sqlx::query(
            "update schedules set last_run_at = $2, last_status = $3,
             last_execution_id = coalesce($4, last_execution_id) where id = $1",
        )
        .bind(&schedule_id)
        .bind(now)
        .bind(status.as_str())
        .bind(execution_id)
        .execute(&mut *tx)
        .await?;
        if let Some(r) = retry {
            insert_run(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Put a running run back to `pending` until `due_at` (its start was held back), noting why.
    pub async fn requeue_run(&self, run_id: &str, due_at: i64, why: &str) -> StoreResult<()> {
        sqlx::query("update schedule_runs set status = 'pending', due_at = $2, reason = $3 where id = $1 and status = 'running'")
            .bind(run_id)
            .bind(due_at)
            .bind(why)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Retries whose time has come, every tenant's.
    pub async fn due_retries(&self, now: i64, limit: i64) -> StoreResult<Vec<ScheduleRun>> {
        let sql = format!(
            "select {RUN_COLS} from schedule_runs where status = 'pending' and due_at <= $1 order by due_at limit $2"
        );
        let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(run_from).collect::<Result<_, _>>()?)
    }

    /// Whether a run of this schedule is still going: its execution has not ended, or it is
    /// starting (no execution yet, begun after `starting_since`).
    pub async fn schedule_busy(&self, schedule_id: &str, starting_since: i64) -> StoreResult<bool> {
        let row = sqlx::query(
            "select 1 as one from schedule_runs r left join executions e on e.id = r.execution_id
             where r.schedule_id = $1 and r.status = 'running'
               and (e.status in ('queued', 'running') or (e.id is null and r.created_at > $2)) limit 1",
        )
        .bind(schedule_id)
        .bind(starting_since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Runs still marked running whose execution has ended (a queued job ends on whichever
    /// server ran it, so any scheduler settles its run), or that never got an execution and
    /// started before `cutoff` (their server died first; a retry or a run given back by a
    /// quota starts at its `due_at`, later than its row was made). With the execution's
    /// status (`None`: it never started).
    pub async fn runs_to_settle(&self, cutoff: i64) -> StoreResult<Vec<(ScheduleRun, Option<CallStatus>)>> {
        let cols = RUN_COLS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select {cols}, e.status as execution_status from schedule_runs r
             left join executions e on e.id = r.execution_id
             where r.status = 'running'
               and ((e.id is not null and e.status not in ('queued', 'running'))
                    or (e.id is null and r.created_at < $1 and r.due_at < $1))
             limit 100"
        );
        let rows = sqlx::query(&sql).bind(cutoff).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let status: Option<String> = r.try_get("execution_status")?;
                let status = status.map(|s| s.parse::<CallStatus>()).transpose();
                Ok((run_from(r)?, status.map_err(|e| sqlx::Error::Decode(e.into()))?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

impl Tenant<'_> {
    pub async fn create_schedule(
        &self,
        f: &ScheduleFields,
        next_run_at: Option<i64>,
        by: &str,
        audit: impl FnOnce(&Schedule) -> Audit,
    ) -> StoreResult<Schedule> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let id = insert_schedule(&mut tx, tenant, f, next_run_at, by).await?;
        audited(tx, tenant, &id, audit).await
    }

    /// Replace a schedule's settings and its next tick.
    pub async fn update_schedule(
        &self,
        id: &str,
        f: &ScheduleFields,
        next_run_at: Option<i64>,
        audit: impl FnOnce(&Schedule) -> Audit,
    ) -> StoreResult<Schedule> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        update_schedule_row(&mut tx, tenant, id, f, next_run_at).await?;
        audited(tx, tenant, id, audit).await
    }

    pub async fn get_schedule(&self, id: &str) -> StoreResult<Schedule> {
        let tenant = self.id;
        fetch(&mut *self.store.pool.acquire().await?, tenant, id).await
    }

    pub async fn list_schedules(
        &self,
        function: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<Schedule>, i64)> {
        let tenant = self.id;
        let query = ("schedules", COLS, "name");
        super::list_for_function(
            &self.store.pool,
            query,
            (tenant, function),
            (limit, offset),
            schedule_from,
        )
        .await
    }

    pub async fn delete_schedule(&self, id: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        delete_schedule_row(&mut tx, tenant, id).await?;
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pause (`next_run_at` = null) or resume (with its next tick).
    pub async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        next_run_at: Option<i64>,
        audit: Audit,
    ) -> StoreResult<Schedule> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let done = sqlx::query(
            "update schedules set enabled = $3, next_run_at = $4, updated_at = $5 where tenant = $1 and id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(enabled as i64)
        .bind(next_run_at)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        audited(tx, tenant, id, |_| audit).await
    }

    pub async fn list_runs(&self, schedule_id: &str, page: &PageQuery) -> StoreResult<Paged<ScheduleRun>> {
        let tenant = self.id;
        self.get_schedule(schedule_id).await?;
        let after = if page.after.is_some() {
            " and (created_at, id) < ($5, $6)"
        } else {
            ""
        };
        let sql = format!(
            "select {RUN_COLS} from schedule_runs where tenant = $1 and schedule_id = $2{after}
             order by created_at desc, id desc limit $3 offset $4"
        );
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(schedule_id)
            .bind(page.fetch())
            .bind(page.offset);
        let rows = match page.after_binds() {
            (Some(at), Some(id)) => query.bind(at).bind(id),
            _ => query,
        }
        .fetch_all(&self.store.pool)
        .await?;
        let total = if page.count {
            let n: i64 = sqlx::query("select count(*) as n from schedule_runs where tenant = $1 and schedule_id = $2")
                .bind(tenant)
                .bind(schedule_id)
                .fetch_one(&self.store.pool)
                .await?
                .try_get("n")?;
            Some(n)
        } else {
            None
        };
        let items = rows.iter().map(run_from).collect::<Result<_, _>>()?;
        let key = |r: &ScheduleRun| Keyset {
            at: r.created_at,
            id: r.id.clone(),
        };
        Ok(page.finish(items, key, total))
    }

    /// The tenant's enabled schedules: how many, and the soonest `limit`.
    pub async fn upcoming_schedules(&self, limit: i64) -> StoreResult<(i64, Vec<Schedule>)> {
        let tenant = self.id;
        let active: i64 = sqlx::query(
            "select count(*) as n from schedules where tenant = $1 and enabled = 1 and next_run_at is not null",
        )
        .bind(tenant)
        .fetch_one(&self.store.pool)
        .await?
        .try_get("n")?;
        let sql = format!(
            "select {COLS} from schedules where tenant = $1 and enabled = 1 and next_run_at is not null
             order by next_run_at limit $2"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(limit)
            .fetch_all(&self.store.pool)
            .await?;
        Ok((active, rows.iter().map(schedule_from).collect::<Result<_, _>>()?))
    }
}

/// Insert a run unless its (schedule, tick, attempt) is already recorded.
async fn insert_run(conn: &mut sqlx::AnyConnection, r: &NewRun<'_>) -> StoreResult<Option<String>> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let finished = r.status.is_finished().then_some(now);
    let done = sqlx::query(
        r#"insert into schedule_runs (id, tenant, schedule_id, fire_at, attempt, status, reason, due_at, retry_of,
           missed, created_at, finished_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           on conflict (schedule_id, fire_at, attempt) do nothing"#,
    )
    .bind(&id)
    .bind(r.tenant)
    .bind(r.schedule_id)
    .bind(r.fire_at)
    .bind(r.attempt)
    .bind(r.status.as_str())
    .bind(r.reason)
    .bind(r.due_at)
    .bind(r.retry_of)
    .bind(r.missed)
    .bind(now)
    .bind(finished)
    .execute(conn)
    .await?;
    Ok((done.rows_affected() == 1).then_some(id))
}

/// Names of the tenant's schedules that run `function` (a function in use is not deleted).
pub(super) async fn names_for_function(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    function: &str,
) -> StoreResult<Vec<String>> {
    let rows = sqlx::query("select name from schedules where tenant = $1 and function_name = $2 order by name")
        .bind(tenant)
        .bind(function)
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(|r| r.try_get("name")).collect::<Result<_, _>>()?)
}

/// Insert a schedule in the caller's transaction; answers its id.
pub(super) async fn insert_schedule(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    f: &ScheduleFields,
    next_run_at: Option<i64>,
    by: &str,
) -> StoreResult<String> {
    let id = uuid::Uuid::now_v7().to_string();
    check_target(&mut *conn, tenant, &f.target).await?;
    let q = sqlx::query(
        r#"insert into schedules (id, tenant, name, function_name, cron_expression, timezone, input_data, enabled,
           max_retries, retry_delay_seconds, backoff_factor, max_retry_delay_seconds, overlap_policy,
           catchup_window_seconds, workflow_name, next_run_at, created_by, created_at, updated_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18)"#,
    )
    .bind(&id)
    .bind(tenant);
    bind_fields(q, f)
        .bind(next_run_at)
        .bind(by)
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_on_unique(e, || name_taken(&f.name)))?;
    Ok(id)
}

/// Replace a schedule's settings in the caller's transaction.
pub(super) async fn update_schedule_row(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    id: &str,
    f: &ScheduleFields,
    next_run_at: Option<i64>,
) -> StoreResult<()> {
    check_target(&mut *conn, tenant, &f.target).await?;
    let q = sqlx::query(
        r#"update schedules set name = $3, function_name = $4, cron_expression = $5, timezone = $6,
           input_data = $7, enabled = $8, max_retries = $9, retry_delay_seconds = $10, backoff_factor = $11,
           max_retry_delay_seconds = $12, overlap_policy = $13, catchup_window_seconds = $14,
           workflow_name = $15, next_run_at = $16, updated_at = $17 where tenant = $1 and id = $2"#,
    )
    .bind(tenant)
    .bind(id);
    let done = bind_fields(q, f)
        .bind(next_run_at)
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_on_unique(e, || name_taken(&f.name)))?;
    if done.rows_affected() == 0 {
        return Err(not_found(id));
    }
    Ok(())
}

/// Delete a schedule and its runs in the caller's transaction.
pub(super) async fn delete_schedule_row(conn: &mut sqlx::AnyConnection, tenant: &str, id: &str) -> StoreResult<()> {
    sqlx::query("delete from schedule_runs where tenant = $1 and schedule_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("delete from schedules where tenant = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(not_found(id));
    }
    Ok(())
}

/// The name of the schedule a workflow's own `schedule` keeps (a prefix users cannot take).
pub fn managed_name(workflow: &str) -> String {
    format!("{MANAGED_PREFIX}{workflow}")
}

pub const MANAGED_PREFIX: &str = "workflow:";

/// Names of the tenant's schedules and webhook paths that run `workflow`, apart from the
/// workflow's own schedule (a workflow in use is not deleted).
pub(super) async fn users_of_workflow(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    workflow: &str,
) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(
        "select 'schedule ' || name as what from schedules where tenant = $1 and workflow_name = $2 and name <> $3 \
         union all select 'webhook /api/v1/h/' || path as what from webhooks where tenant = $1 and workflow_name = $2",
    )
    .bind(tenant)
    .bind(workflow)
    .bind(managed_name(workflow))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| r.try_get("what")).collect::<Result<_, _>>()?)
}

/// Make the workflow's own schedule match `want` (create, replace or delete it), in the
/// transaction that writes the workflow.
pub(super) async fn sync_managed(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    workflow: &str,
    want: Option<(&ScheduleFields, Option<i64>)>,
    by: &str,
) -> StoreResult<()> {
    // Matched on the target too: a schedule a user named so before the prefix was kept for
    // workflows is never taken for one.
    let existing: Option<String> =
        sqlx::query("select id from schedules where tenant = $1 and name = $2 and workflow_name = $3")
            .bind(tenant)
            .bind(managed_name(workflow))
            .bind(workflow)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
    match (existing, want) {
        (Some(id), Some((f, next))) => update_schedule_row(conn, tenant, &id, f, next).await,
        (None, Some((f, next))) => insert_schedule(conn, tenant, f, next, by).await.map(|_| ()),
        (Some(id), None) => delete_schedule_row(conn, tenant, &id).await,
        (None, None) => Ok(()),
    }
}
