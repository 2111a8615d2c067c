//! Executions and their steps. Rows are written when a call starts (status `running`) and
//! updated when it ends, so a crash mid-run leaves a truthful record; runs whose deadline
//! passed long ago while still `running` are marked `interrupted`.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::page::{Keyset, PageQuery, Paged};
use super::{json_col, now_ms, text_col, Row, Store, StoreError, StoreResult, Tenant};
use crate::domain::CallStatus;

/// What every call record has, the execution's root call and nested steps alike.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub function_name: String,
    pub function_version: Option<i64>,
    pub status: CallStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub stdout: String,
    pub stderr: String,
    pub fuel_used: i64,
    pub duration_ms: Option<f64>,
    /// Outbound requests, secret reads and structured log lines of this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Value>,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub started_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms_opt")]
    pub finished_at: Option<i64>,
}

impl CallRecord {
    /// `error.kind`, when the call failed.
    pub fn error_kind(&self) -> Option<&str> {
        self.error.as_ref()?.get("kind")?.as_str()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRecord {
    pub id: String,
    pub trigger: String,
    /// The webhook (or schedule) that started it.
    pub trigger_id: Option<String>,
    /// For scheduled runs: the attempt (1 = the tick itself) and the first attempt's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    #[serde(flatten)]
    pub call: CallRecord,
}

impl ExecutionRecord {
    /// Its place in the executions listing (newest first).
    fn keyset(&self) -> Keyset {
        Keyset {
            at: self.call.started_at,
            id: self.id.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub id: String,
    pub execution_id: String,
    pub parent_id: Option<String>,
    pub seq: i64,
    pub depth: i64,
    #[serde(flatten)]
    pub call: CallRecord,
}

/// A step as it starts.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub id: String,
    pub execution_id: String,
    pub parent_id: Option<String>,
    pub seq: i64,
    pub depth: i64,
    pub function_name: String,
    pub function_version: Option<i64>,
    pub input: String,
    pub started_at: i64,
}

/// How a step (or an execution) ended.
#[derive(Debug, Clone)]
pub struct StepFinish {
    pub status: CallStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub fuel_used: i64,
    pub duration_ms: f64,
    pub finished_at: i64,
    /// JSON array, when the call did anything worth recording.
    pub activity: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct ExecutionFilter {
    pub function: Option<String>,
    pub status: Option<String>,
    pub trigger: Option<String>,
    pub trigger_id: Option<String>,
    /// Started at or after (Unix ms).
    pub since: Option<i64>,
    /// Started before (Unix ms).
    pub until: Option<i64>,
}

pub(super) const EXEC_COLS: &str =
    "id, function_name, function_version, trigger, trigger_id, attempt, retry_of, status, input, output, error, \
                         fuel_used, \
                         duration_ms, started_at, finished_at, stdout, stderr, activity";
const STEP_COLS: &str = "id, execution_id, parent_id, seq, depth, function_name, function_version, status, input, \
                         output, error, stdout, stderr, fuel_used, duration_ms, started_at, finished_at, activity";

fn call_from(r: &Row) -> Result<CallRecord, sqlx::Error> {
    Ok(CallRecord {
        function_name: r.try_get("function_name")?,
        function_version: r.try_get("function_version")?,
        status: text_col(r, "status")?,
        input: json_col(r, "input")?.unwrap_or(Value::Null),
        output: json_col(r, "output")?,
        error: json_col(r, "error")?,
        stdout: r.try_get("stdout")?,
        stderr: r.try_get("stderr")?,
        fuel_used: r.try_get("fuel_used")?,
        duration_ms: r.try_get("duration_ms")?,
        activity: json_col(r, "activity")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

pub(super) fn execution_from(r: &Row) -> Result<ExecutionRecord, sqlx::Error> {
    Ok(ExecutionRecord {
        id: r.try_get("id")?,
        trigger: r.try_get("trigger")?,
        trigger_id: r.try_get("trigger_id")?,
        attempt: r.try_get("attempt")?,
        retry_of: r.try_get("retry_of")?,
        call: call_from(r)?,
    })
}

fn step_from(r: &Row) -> Result<StepRecord, sqlx::Error> {
    // `integer` decodes as i32 on PostgreSQL and i64 on SQLite.
    let depth: i64 = r
        .try_get::<i32, _>("depth")
        .map(i64::from)
        .or_else(|_| r.try_get("depth"))?;
    Ok(StepRecord {
        id: r.try_get("id")?,
        execution_id: r.try_get("execution_id")?,
        parent_id: r.try_get("parent_id")?,
        seq: r.try_get("seq")?,
        depth,
        call: call_from(r)?,
    })
}

/// Insert a step: running, or already finished when `finish` is given (a short call whose
/// start and end the recorder merged into one write). Two statements rather than binding
/// nulls: sqlx's `Any` driver sends a null `f64` in a form PostgreSQL rejects.
async fn insert_step(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    s: &NewStep,
    finish: Option<&StepFinish>,
) -> Result<(), sqlx::Error> {
    let q = match finish {
        None => sqlx::query(
            r#"insert into steps (id, tenant, execution_id, parent_id, seq, depth, function_name, function_version,
               status, input, started_at) values ($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, $10)"#,
        ),
        Some(_) => sqlx::query(
            r#"insert into steps (id, tenant, execution_id, parent_id, seq, depth, function_name, function_version,
               input, started_at, status, output, error, stdout, stderr, fuel_used, duration_ms, finished_at, activity)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"#,
        ),
    };
    let q = q
        .bind(&s.id)
        .bind(tenant)
        .bind(&s.execution_id)
        .bind(&s.parent_id)
        .bind(s.seq)
        .bind(s.depth as i32)
        .bind(&s.function_name)
        .bind(s.function_version)
        .bind(&s.input)
        .bind(s.started_at);
    match finish {
        None => q.execute(conn).await?,
        Some(f) => bind_finish(q, f).execute(conn).await?,
    };
    Ok(())
}

/// Close a running execution and its open calls as failed with error kind `interrupted` and
/// `reason`; answers 1 if the execution was still running, else 0.
pub(super) async fn close_interrupted(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let error = serde_json::json!({"kind": "interrupted", "message": reason}).to_string();
    close_open(conn, id, "failed", &error).await
}

/// End a queued or running execution and its open calls with `status` and `error` (JSON);
/// answers 1 if the execution had not ended, else 0.
pub(super) async fn close_open(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    status: &str,
    error: &str,
) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "update steps set status = $4, error = $1, finished_at = $2 where execution_id = $3 and status = 'running'",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(status)
    .execute(&mut *conn)
    .await?;
    let closed = sqlx::query(
        "update executions set status = $4, error = $1, finished_at = $2 where id = $3 and status in ('queued', 'running')",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(closed.rows_affected())
}

/// What started an execution.
struct Source<'a> {
    trigger: &'a str,
    trigger_id: Option<&'a str>,
    attempt: Option<i64>,
    retry_of: Option<&'a str>,
}

/// Insert an execution: running, or already finished (see `insert_step`).
async fn insert_execution(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    src: Source<'_>,
    root: &NewStep,
    deadline_at: i64,
    finish: Option<&StepFinish>,
) -> Result<(), sqlx::Error> {
    let q = match finish {
        None => sqlx::query(
            r#"insert into executions (id, tenant, function_name, function_version, trigger, trigger_id, attempt,
               retry_of, input, started_at, deadline_at, status)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'running')"#,
        ),
        Some(_) => sqlx::query(
            r#"insert into executions (id, tenant, function_name, function_version, trigger, trigger_id, attempt,
               retry_of, input, started_at, deadline_at, status, output, error, stdout, stderr, fuel_used,
               duration_ms, finished_at, activity)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"#,
        ),
    };
    let q = q
        .bind(&root.execution_id)
        .bind(tenant)
        .bind(&root.function_name)
        .bind(root.function_version.unwrap_or(0))
        .bind(src.trigger)
        .bind(src.trigger_id)
        .bind(src.attempt)
        .bind(src.retry_of)
        .bind(&root.input)
        .bind(root.started_at)
        .bind(deadline_at);
    match finish {
        None => q.execute(conn).await?,
        Some(f) => bind_finish(q, f).execute(conn).await?,
    };
    Ok(())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind how a call ended, in the column order the statements here use.
fn bind_finish<'q>(q: AnyQuery<'q>, f: &'q StepFinish) -> AnyQuery<'q> {
    q.bind(f.status.as_str())
        .bind(&f.output)
        .bind(&f.error)
        .bind(&f.stdout)
        .bind(&f.stderr)
        .bind(f.fuel_used)
        .bind(f.duration_ms)
        .bind(f.finished_at)
        .bind(&f.activity)
}

/// Close a call that was recorded as running: a nested step, or (with `execution`) the
/// execution row itself.
async fn finish_call(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    id: &str,
    f: &StepFinish,
    execution: bool,
) -> Result<(), sqlx::Error> {
    let table = if execution { "executions" } else { "steps" };
    let sql = format!(
        "update {table} set status = $3, output = $4, error = $5, stdout = $6, stderr = $7, fuel_used = $8, \
         duration_ms = $9, finished_at = $10, activity = $11 where tenant = $1 and id = $2"
    );
    let done = bind_finish(sqlx::query(&sql).bind(tenant).bind(id), f)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        // Its start was never recorded: report it rather than claim the call was tracked.
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

/// One tracking write, applied in order with others in a batch. A start may carry its finish
/// when the call ended before the start was written.
#[derive(Debug, Clone)]
pub enum Write {
    StartExecution {
        tenant: String,
        trigger: &'static str,
        trigger_id: Option<String>,
        /// Attempt number and first execution of a scheduled run.
        attempt: (Option<i64>, Option<String>),
        root: NewStep,
        deadline_at: i64,
        finish: Option<StepFinish>,
    },
    StartStep {
        tenant: String,
        step: NewStep,
        finish: Option<StepFinish>,
    },
    FinishStep {
        tenant: String,
        execution_id: String,
        id: String,
        finish: StepFinish,
    },
    /// A queued execution a worker claimed (its row says `running` since the claim) now
    /// runs this version until this deadline. Nothing happens if the row is no longer
    /// running (its lease ran out and it was closed as interrupted).
    RunQueued {
        tenant: String,
        id: String,
        function_version: i64,
        deadline_at: i64,
    },
    FinishExecution {
        tenant: String,
        id: String,
        finish: StepFinish,
        /// The queued job that ran it: deleted in the same transaction as the end is
        /// recorded, and the end is recorded only if the execution is still this job's.
        job: Option<String>,
    },
}

impl Write {
    /// The execution this write belongs to.
    pub fn execution_id(&self) -> &str {
        match self {
            Write::StartExecution { root, .. } => &root.execution_id,
            Write::StartStep { step, .. } => &step.execution_id,
            Write::FinishStep { execution_id, .. } => execution_id,
            Write::RunQueued { id, .. } | Write::FinishExecution { id, .. } => id,
        }
    }

    /// Roughly how many bytes it holds (what parking it in memory costs).
    pub fn size(&self) -> usize {
        let finish = |f: &StepFinish| {
            f.output.as_ref().map_or(0, String::len)
                + f.error.as_ref().map_or(0, String::len)
                + f.stdout.len()
                + f.stderr.len()
        };
        256 + match self {
            Write::StartExecution { root, finish: f, .. } => root.input.len() + f.as_ref().map_or(0, finish),
            Write::StartStep { step, finish: f, .. } => step.input.len() + f.as_ref().map_or(0, finish),
            Write::FinishStep { finish: f, .. } | Write::FinishExecution { finish: f, .. } => finish(f),
            Write::RunQueued { .. } => 0,
        }
    }

    /// Whether applying it takes more than one statement (so it needs a transaction).
    fn is_compound(&self) -> bool {
        matches!(self, Write::FinishExecution { job: Some(_), .. })
    }
}

async fn apply(conn: &mut sqlx::AnyConnection, w: &Write) -> Result<(), sqlx::Error> {
    match w {
        Write::StartExecution {
            tenant,
            trigger,
            trigger_id,
            attempt,
            root,
            deadline_at,
            finish,
        } => {
            let trigger = Source {
                trigger,
                trigger_id: trigger_id.as_deref(),
                attempt: attempt.0,
                retry_of: attempt.1.as_deref(),
            };
            insert_execution(conn, tenant, trigger, root, *deadline_at, finish.as_ref()).await
        }
        Write::StartStep { tenant, step, finish } => insert_step(conn, tenant, step, finish.as_ref()).await,
        Write::FinishStep { tenant, id, finish, .. } => finish_call(conn, tenant, id, finish, false).await,
        Write::FinishExecution {
            tenant,
            id,
            finish,
            job: None,
        } => finish_call(conn, tenant, id, finish, true).await,
        Write::FinishExecution {
            tenant,
            id,
            finish,
            job: Some(job),
        } => finish_job(conn, tenant, id, finish, job).await,
        Write::RunQueued {
            tenant,
            id,
            function_version,
            deadline_at,
        } => {
            sqlx::query(
                "update executions set function_version = $3, deadline_at = $4 \
                 where tenant = $1 and id = $2 and status = 'running'",
            )
            .bind(tenant)
            .bind(id)
            .bind(function_version)
            .bind(deadline_at)
            .execute(conn)
            .await?;
            Ok(())
        }
    }
}

/// Record the end of a queued job's execution and delete the job: both, or (when the
/// execution was already closed as interrupted: its lease ran out, or its server shut down)
/// neither, and the job is taken back as a new attempt.
async fn finish_job(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    id: &str,
    f: &StepFinish,
    job: &str,
) -> Result<(), sqlx::Error> {
    // The job's row first, as in every queue transaction (no lock-order deadlock with a
    // server taking the job back).
    let ours = sqlx::query("update jobs set run_at = run_at where id = $1 and execution_id = $2")
        .bind(job)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if ours.rows_affected() == 0 {
        return Ok(()); // taken back: the execution was closed as interrupted
    }
    let sql = "update executions set status = $3, output = $4, error = $5, stdout = $6, stderr = $7, fuel_used = $8, \
               duration_ms = $9, finished_at = $10, activity = $11 where tenant = $1 and id = $2 and status = 'running'";
    let recorded = bind_finish(sqlx::query(sql).bind(tenant).bind(id), f)
        .execute(&mut *conn)
        .await?;
    if recorded.rows_affected() == 1 {
        sqlx::query("delete from jobs where id = $1 and execution_id = $2")
            .bind(job)
            .bind(id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Apply tracking writes in order, in one transaction.
    pub async fn apply_writes(&self, writes: &[Write]) -> StoreResult<()> {
        if let [one] = writes {
            if !one.is_compound() {
                // One statement commits on its own: no BEGIN/COMMIT round trips.
                let mut conn = self.pool.acquire().await?;
                apply(&mut conn, one).await?;
                return Ok(());
            }
        }
        let mut tx = self.begin().await?;
        for w in writes {
            apply(&mut tx, w).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Delete up to `batch` finished executions that ended before `cutoff` (unix ms), with
    /// their steps, in one transaction; returns how many went. Running ones are never touched.
    /// `tenant` narrows it to one tenant.
    pub async fn purge_finished_before(&self, cutoff: i64, batch: i64, tenant: Option<&str>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "select id from executions where status <> 'running' and finished_at < $1 and ($3 is null or tenant = $3)
             order by finished_at limit $2",
        )
        .bind(cutoff)
        .bind(batch)
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
        for id in &ids {
            sqlx::query("delete from steps where execution_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("delete from workflow_runs where execution_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("delete from executions where id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "delete from schedule_runs where status not in ('running', 'pending') and created_at < $1
             and ($2 is null or tenant = $2)",
        )
        .bind(cutoff)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    /// Record executions this server gave up on (it is shutting down) as interrupted with
    /// `reason`, with their calls still open; those already finished are left alone.
    pub async fn interrupt(&self, ids: &[String], reason: &str) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut done = 0;
        for id in ids {
            done += close_interrupted(&mut tx, id, reason).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Mark runs still `running` long after their deadline (their server died) as interrupted.
    /// Queued jobs' executions are left to the queue, whose leases say whether they still run.
    pub async fn interrupt_stale(&self, grace_ms: i64) -> StoreResult<u64> {
        let cutoff = now_ms() - grace_ms;
        let error =
            r#"{"kind":"interrupted","message":"the server running this execution stopped before it finished"}"#;
        let mut tx = self.begin().await?;
        sqlx::query(
            r#"update steps set status = 'failed', error = $1, finished_at = $2 where status = 'running'
               and execution_id in (select id from executions where status = 'running' and deadline_at < $3
               and id not in (select execution_id from jobs))"#,
        )
        .bind(error)
        .bind(now_ms())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "update executions set status = 'failed', error = $1, finished_at = $2 where status = 'running' \
             and deadline_at < $3 and id not in (select execution_id from jobs)",
        )
        .bind(error)
        .bind(now_ms())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

impl Tenant<'_> {
    /// `maestro bench --listing`: `n` finished executions of `function`, started 1 ms apart
    /// and before `before` (Unix ms), written in one statement so that a history of millions
    /// takes seconds rather than the hours its invokes would.
    pub async fn seed_history(&self, function: &str, n: i64, before: i64) -> StoreResult<u64> {
        let series = match self.store.backend {
            super::Backend::Postgres => "select i from generate_series(1, $4::bigint) as s(i)",
            super::Backend::Sqlite => {
                "select i from (with recursive c(i) as (select 1 union all select i + 1 from c where i < $4) \
                 select i from c)"
            }
        };
        let sql = format!(
            "insert into executions (id, tenant, function_name, function_version, trigger, status, input, output, \
             fuel_used, duration_ms, started_at, finished_at, deadline_at) \
             select 'seed-' || $1 || '-' || i, $1, $2, 1, 'manual', 'succeeded', '{{}}', '{{}}', 1000, 0.5, \
             $3 - i, $3 - i, $3 - i from ({series}) as g"
        );
        let done = sqlx::query(&sql)
            .bind(self.id)
            .bind(function)
            .bind(before)
            .bind(n)
            .execute(&self.store.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// A page of the tenant's executions, newest first.
    pub async fn list_executions(&self, f: &ExecutionFilter, page: &PageQuery) -> StoreResult<Paged<ExecutionRecord>> {
        let tenant = self.id;
        // Optional filters as `($n is null or col = $n)` keep one statement for every combination;
        // the cursor is a separate clause so that it bounds the index scan.
        let filter = "tenant = $1 and ($2 is null or function_name = $2) and ($3 is null or status = $3) \
                      and ($4 is null or trigger = $4) and ($5 is null or trigger_id = $5) \
                      and ($6 is null or started_at >= $6) and ($7 is null or started_at < $7)";
        let after = if page.after.is_some() {
            " and (started_at, id) < ($10, $11)"
        } else {
            ""
        };
        let sql = format!(
            "select {EXEC_COLS} from executions where {filter}{after} order by started_at desc, id desc limit $8 offset $9"
        );
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(&f.function)
            .bind(&f.status)
            .bind(&f.trigger)
            .bind(&f.trigger_id)
            .bind(f.since)
            .bind(f.until)
            .bind(page.fetch())
            .bind(page.offset);
        let rows = match page.after_binds() {
            (Some(at), Some(id)) => query.bind(at).bind(id),
            _ => query,
        }
        .fetch_all(&self.store.pool)
        .await?;
        let total = if page.count {
            let n: i64 = sqlx::query(&format!("select count(*) as n from executions where {filter}"))
                .bind(tenant)
                .bind(&f.function)
                .bind(&f.status)
                .bind(&f.trigger)
                .bind(&f.trigger_id)
                .bind(f.since)
                .bind(f.until)
                .fetch_one(&self.store.pool)
                .await?
                .try_get("n")?;
            Some(n)
        } else {
            None
        };
        let items = rows.iter().map(execution_from).collect::<Result<_, _>>()?;
        Ok(page.finish(items, ExecutionRecord::keyset, total))
    }

    pub async fn get_execution(&self, id: &str) -> StoreResult<ExecutionRecord> {
        let tenant = self.id;
        let sql = format!("select {EXEC_COLS} from executions where tenant = $1 and id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.store.pool)
            .await?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("execution {id} not found")))?;
        Ok(execution_from(&row)?)
    }

    /// Every call of an execution in order: the root (the execution itself, whose id is the
    /// root step's id) followed by the nested calls.
    pub async fn list_steps(&self, execution_id: &str) -> StoreResult<Vec<StepRecord>> {
        let page = PageQuery {
            limit: i64::MAX - 1,
            ..Default::default()
        };
        Ok(self.list_steps_page(execution_id, &page).await?.items)
    }

    /// A page of an execution's calls in call order; the first page starts with the root.
    pub async fn list_steps_page(&self, execution_id: &str, page: &PageQuery) -> StoreResult<Paged<StepRecord>> {
        let tenant = self.id;
        let e = self.get_execution(execution_id).await?;
        let mut steps = vec![];
        if page.after.is_none() {
            steps.push(StepRecord {
                id: e.id.clone(),
                execution_id: e.id,
                parent_id: None,
                seq: 0,
                depth: 0,
                call: e.call,
            });
        }
        let (seq, id) = page.after_binds();
        let sql = format!(
            "select {STEP_COLS} from steps where tenant = $1 and execution_id = $2 \
             and ($3 is null or seq > $3 or (seq = $3 and id > $4)) order by seq, id limit $5"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(execution_id)
            .bind(seq)
            .bind(id)
            .bind(page.fetch().saturating_sub(steps.len() as i64))
            .fetch_all(&self.store.pool)
            .await?;
        for r in &rows {
            steps.push(step_from(r)?);
        }
        let key = |s: &StepRecord| Keyset {
            at: s.seq,
            id: s.id.clone(),
        };
        Ok(page.finish(steps, key, None))
    }
}
