//! The durable queue of deferred executions (see migration 0011). Every change to a job row
//! happens in one transaction with the change to its execution, so what a client reads of
//! an execution is what the queue will do with it:
//!
//! - enqueue: the execution (`queued`) and the job, before the 202;
//! - claim: the job leased to a server, the execution `running`;
//! - finish (a recorder write, `Write::FinishExecution` with its job): the execution's end,
//!   the job deleted;
//! - lease run out: the execution closed as interrupted, and either a new attempt queued (a
//!   new execution, `retry_of` the first) or, with no attempts left, the job deleted.
//!
//! A workflow run's job (`target` = `workflow`, migration 0014) also has its `workflow_runs`
//! row from the start (status `queued`); the worker that claims it hands the run over to
//! that row's lease (`hand_over_workflow_job`) and the job goes. Until then nothing of the
//! run has happened, so a job whose server died goes back to the queue as it is.

use sqlx::Row;

use super::{now_ms, Backend, Store, StoreResult, Tenant};

/// A job as a worker needs it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    /// The current attempt's execution.
    pub execution_id: String,
    pub first_execution_id: String,
    pub function_name: String,
    /// `function`, or `workflow` (a workflow run, `function_name` being the workflow's).
    pub target: String,
    pub trigger: String,
    pub trigger_id: Option<String>,
    pub envelope: bool,
    pub attempt: i64,
    pub max_attempts: i64,
    pub lease_until: Option<i64>,
    /// The input (JSON text), read from its execution when the job is claimed.
    pub input: String,
    /// Its execution's `attempt` (a queue re-run's, or a schedule retry's), read likewise.
    pub run_attempt: i64,
}

/// A job to queue, with the execution it starts as.
pub struct NewJob<'a> {
    pub function_name: &'a str,
    pub function_version: i64,
    pub input: &'a str,
    pub trigger: &'a str,
    pub trigger_id: Option<&'a str>,
    pub envelope: bool,
    /// Lower runs first among jobs of the same rank.
    pub priority: i64,
    /// The execution's attempt and first attempt (a schedule's retry), as users see them.
    pub attempt: i64,
    pub retry_of: Option<&'a str>,
    /// The schedule run this job is, linked to its execution in the same transaction.
    pub schedule_run: Option<&'a str>,
    /// How many times the queue may start it (re-runs after a server died included).
    pub max_attempts: i64,
    /// A workflow run rather than a function's: the workflow's id and the run's config
    /// (`function_name` and `function_version` being the workflow's name and version).
    pub workflow: Option<(&'a str, &'a serde_json::Value)>,
}

/// What became of a claimed workflow job handed over to its run's lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Handover {
    /// The run is this drive's now; its execution runs.
    Started,
    /// It was asked to stop meanwhile: it ended cancelled.
    Cancelled,
    /// The job is no longer this server's (its lease ran out and it was taken back).
    Lost,
}

/// A server of the cluster as its heartbeats show it.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Queued jobs it runs now.
    pub jobs: i64,
    /// Their executions, at most [`NODE_JOBS_LISTED`].
    pub executions: Vec<String>,
}

/// How many of a server's jobs `nodes` lists by execution id.
pub const NODE_JOBS_LISTED: usize = 50;

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The tenant already has this many jobs waiting.
    Full(i64),
}

const COLS: &str = "id, tenant, execution_id, first_execution_id, function_name, target, trigger, trigger_id, \
                    envelope, attempt, max_attempts, lease_until";

fn job_from(r: &sqlx::any::AnyRow) -> Result<Job, sqlx::Error> {
    Ok(Job {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        execution_id: r.try_get("execution_id")?,
        first_execution_id: r.try_get("first_execution_id")?,
        function_name: r.try_get("function_name")?,
        target: r.try_get("target")?,
        trigger: r.try_get("trigger")?,
        trigger_id: r.try_get("trigger_id")?,
        envelope: r.try_get::<i64, _>("envelope")? != 0,
        attempt: r.try_get("attempt")?,
        max_attempts: r.try_get("max_attempts")?,
        lease_until: r.try_get("lease_until")?,
        input: String::new(),
        run_attempt: 1,
    })
}

impl Tenant<'_> {
    /// Queue a job and its execution (`queued`) in one transaction; answers the execution id,
    /// or why it was refused. `max_depth` bounds the tenant's waiting jobs.
    pub async fn enqueue(&self, job: &NewJob<'_>, max_depth: i64) -> StoreResult<Result<String, Refused>> {
        let now = now_ms();
        let execution_id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.store.begin().await?;
        // A write first: SQLite then takes its write lock at once, instead of upgrading a
        // read lock later (which fails under concurrent enqueues rather than waiting).
        sqlx::query(
            "insert into executions (id, tenant, function_name, function_version, trigger, trigger_id, attempt, \
             retry_of, input, started_at, deadline_at, status) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 'queued')",
        )
        .bind(&execution_id)
        .bind(self.id)
        .bind(job.function_name)
        .bind(job.function_version)
        .bind(job.trigger)
        .bind(job.trigger_id)
        .bind(job.attempt)
        .bind(job.retry_of)
        .bind(job.input)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if self.store.backend == Backend::Postgres {
            // One enqueue of a tenant at a time between count and insert, so concurrent ones
            // cannot go past the cap together (SQLite's writer is already alone).
            sqlx::query("select pg_advisory_xact_lock(hashtext($1))")
                .bind(self.id)
                .execute(&mut *tx)
                .await?;
        }
        let waiting: i64 = sqlx::query("select count(*) as n from jobs where tenant = $1 and status = 'queued'")
            .bind(self.id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if waiting >= max_depth {
            return Ok(Err(Refused::Full(waiting))); // rolled back: nothing recorded
        }
        // Fair turns: after this tenant's last job, and not before the lowest one waiting (a
        // tenant that was idle starts at the front, not behind a flood queued earlier).
        let rank: Option<i64> = sqlx::query(
            "select max(r) as r from (select max(rank) + 1 as r from jobs where tenant = $1 \
             union all select min(rank) as r from jobs where status = 'queued') t",
        )
        .bind(self.id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("r")?;
        sqlx::query(
            "insert into jobs (id, tenant, execution_id, first_execution_id, function_name, target, trigger, \
             trigger_id, envelope, priority, rank, status, attempt, max_attempts, run_at, created_at) \
             values ($1, $2, $1, $1, $3, $11, $4, $5, $6, $7, $8, 'queued', 1, $9, $10, $10)",
        )
        .bind(&execution_id)
        .bind(self.id)
        .bind(job.function_name)
        .bind(job.trigger)
        .bind(job.trigger_id)
        .bind(job.envelope as i64)
        .bind(job.priority)
        .bind(rank.unwrap_or(0))
        .bind(job.max_attempts)
        .bind(now)
        .bind(if job.workflow.is_some() { "workflow" } else { "function" })
        .execute(&mut *tx)
        .await?;
        if let Some((workflow_id, config)) = job.workflow {
            sqlx::query(
                "insert into workflow_runs (execution_id, tenant, workflow_id, version, config, trigger, trigger_id, \
                 status, resumes, created_at) values ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8)",
            )
            .bind(&execution_id)
            .bind(self.id)
            .bind(workflow_id)
            .bind(job.function_version)
            .bind(config.to_string())
            .bind(job.trigger)
            .bind(job.trigger_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(run) = job.schedule_run {
            // Only a run still waiting for its execution: one settled meanwhile (taken for
            // lost by another server) must not get a job too.
            let linked = sqlx::query(
                "update schedule_runs set execution_id = $1 where id = $2 and status = 'running' \
                 and execution_id is null",
            )
            .bind(&execution_id)
            .bind(run)
            .execute(&mut *tx)
            .await?;
            if linked.rows_affected() == 0 {
                return Err(super::StoreError::Conflict(format!(
                    "schedule run {run} ended before its job was queued"
                )));
            }
        }
        tx.commit().await?;
        Ok(Ok(execution_id))
    }
}

impl Store {
    /// Lease the next job due to `owner` until `lease_until` and mark its execution running.
    /// Replicas never take the same row: PostgreSQL skips rows another claim has locked,
    /// SQLite has one writer. Jobs of the tenants in `skip` are passed over.
    pub async fn claim_job(&self, owner: &str, lease_until: i64, skip: &[String]) -> StoreResult<Option<Job>> {
        let now = now_ms();
        let lock = match self.backend {
            Backend::Postgres => "for update skip locked",
            Backend::Sqlite => "",
        };
        let skipped: String = (0..skip.len()).map(|i| format!(" and tenant <> ${}", i + 4)).collect();
        let sql = format!(
            "update jobs set status = 'running', owner = $1, lease_until = $2 where id = \
             (select id from jobs where status = 'queued' and run_at <= $3{skipped} \
              order by rank, priority, created_at limit 1 {lock}) returning {COLS}"
        );
        let mut tx = self.begin().await?;
        let mut claim = sqlx::query(&sql).bind(owner).bind(lease_until).bind(now);
        for tenant in skip {
            claim = claim.bind(tenant);
        }
        let Some(row) = claim.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let mut job = job_from(&row)?;
        // Until the run sets its real deadline, the lease's end stands in for it (the stale
        // sweeper leaves a job's execution alone anyway: the lease decides).
        let started = sqlx::query(
            "update executions set status = 'running', started_at = $2, deadline_at = $3 \
             where id = $1 and status = 'queued' returning input, attempt",
        )
        .bind(&job.execution_id)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(started) = started else {
            // Its execution is gone or no longer queued (its tenant was deleted): nothing to
            // run, and the job must not come back.
            sqlx::query("delete from jobs where id = $1")
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::warn!(job = %job.id, "dropped a job whose execution is not queued");
            return Ok(None);
        };
        job.input = started.try_get("input")?;
        job.run_attempt = started.try_get::<Option<i64>, _>("attempt")?.unwrap_or(1);
        tx.commit().await?;
        Ok(Some(job))
    }

    /// How many jobs each tenant has running now, on every server: queued jobs and workflow
    /// runs (a workflow job leaves the queue when its run starts).
    pub async fn running_jobs_by_tenant(&self) -> StoreResult<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "select tenant, count(*) as n from (select tenant from jobs where status = 'running' \
             union all select tenant from workflow_runs where status = 'running') r group by tenant",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant")?, r.try_get::<i64, _>("n")?.max(0) as u32)))
            .collect()
    }

    /// Extend the leases of the jobs whose current attempts are `execution_ids` and that
    /// `owner` still holds (not those it let go: `drop_leases`); answers how many it renewed.
    pub async fn renew_jobs(&self, owner: &str, execution_ids: &[String], lease_until: i64) -> StoreResult<u64> {
        let ids = execution_ids;
        if ids.is_empty() {
            return Ok(0);
        }
        let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "update jobs set lease_until = $2 where owner = $1 and status = 'running' and lease_until > 0 \
             and execution_id in ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(owner).bind(lease_until);
        for id in ids {
            q = q.bind(id);
        }
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// Give a claimed job back (it could not start yet: its tenant is over a quota, or this
    /// server is stopping): queued again from `run_at`, same attempt and rank.
    pub async fn unclaim_job(&self, job: &Job, owner: &str, run_at: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "update jobs set status = 'queued', owner = null, lease_until = null, run_at = $3 \
             where id = $1 and owner = $2 and status = 'running'",
        )
        .bind(&job.id)
        .bind(owner)
        .bind(run_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            if super::cancels::cancel_requested(&mut tx, &job.execution_id).await? {
                super::cancels::close_cancelled(&mut tx, &job.id, &job.execution_id).await?;
            } else {
                sqlx::query("update executions set status = 'queued' where id = $1 and status = 'running'")
                    .bind(&job.execution_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// End a job `owner` claimed whose execution could not start (its function is gone, its
    /// input no longer fits the schema): the execution fails with `error` (JSON) and the job
    /// goes; unless it is no longer `owner`'s (a workflow job taken back keeps its execution).
    pub async fn fail_job(&self, job: &Job, owner: &str, error: &str) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        // The job's row first, as in every queue transaction (no lock-order deadlock).
        if !lock_held(&mut tx, job, owner).await? {
            return Ok(()); // taken back meanwhile: its new attempt decides
        }
        sqlx::query(
            "update executions set status = 'failed', error = $2, finished_at = $3, duration_ms = 0 \
             where id = $1 and status in ('queued', 'running')",
        )
        .bind(&job.execution_id)
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        end_queued_workflow_run(&mut tx, &job.execution_id, "failed").await?;
        sqlx::query("delete from jobs where id = $1 and execution_id = $2")
            .bind(&job.id)
            .bind(&job.execution_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Jobs running under a lease that ran out before `now`: their server stopped.
    pub async fn expired_jobs(&self, now: i64, limit: i64) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "select {COLS} from jobs where status = 'running' and lease_until < $1 order by lease_until limit $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(job_from).collect::<Result<_, _>>()?)
    }

    /// Take back a job whose lease ran out (compare-and-set on the lease seen, so one server
    /// does it): close its execution as interrupted with `reason`, then queue a new attempt
    /// as a new execution, or delete the job when it has used its attempts. (An execution
    /// that ended lost its job in the same transaction, so a job found here never ran to its
    /// end; its execution may already say interrupted if its server shut down.) Answers the
    /// new attempt's execution id, if one was queued.
    pub async fn recover_job(&self, job: &Job, reason: &str) -> StoreResult<Option<String>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let taken = sqlx::query(
            "update jobs set owner = null, lease_until = null where id = $1 and status = 'running' and lease_until = $2",
        )
        .bind(&job.id)
        .bind(job.lease_until)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            return Ok(None); // another server took it, or it ended meanwhile
        }
        if super::cancels::cancel_requested(&mut tx, &job.execution_id).await? {
            // Asked to stop before its server died: it ends cancelled, with no new attempt.
            super::cancels::close_cancelled(&mut tx, &job.id, &job.execution_id).await?;
            tx.commit().await?;
            return Ok(None);
        }
        if job.target == "workflow" {
            let next = requeue_workflow_job(&mut tx, job, reason, now).await?;
            tx.commit().await?;
            return Ok(next);
        }
        super::executions::close_interrupted(&mut tx, &job.execution_id, reason).await?;
        let next = if job.attempt < job.max_attempts {
            let id = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "insert into executions (id, tenant, function_name, function_version, trigger, trigger_id, attempt, \
                 retry_of, input, started_at, deadline_at, status) \
                 select $1, tenant, function_name, function_version, trigger, trigger_id, $2, $3, input, $4, $4, 'queued' \
                 from executions where id = $5",
            )
            .bind(&id)
            .bind(job.attempt + 1)
            .bind(&job.first_execution_id)
            .bind(now)
            .bind(&job.execution_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "update jobs set status = 'queued', execution_id = $2, attempt = attempt + 1, run_at = $3 where id = $1",
            )
            .bind(&job.id)
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Some(id)
        } else {
            sqlx::query("delete from jobs where id = $1")
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
            None
        };
        tx.commit().await?;
        Ok(next)
    }

    /// Hand a claimed workflow job over to its run: in one transaction the job goes, the
    /// run's `workflow_runs` row is leased to `drive` until `lease_until`, and its execution
    /// runs from `started_at` until `deadline_at`; or, if a cancel was asked meanwhile, the
    /// job and its run end cancelled.
    pub async fn hand_over_workflow_job(
        &self,
        job: &Job,
        owner: &str,
        drive: &str,
        (lease_until, started_at, deadline_at): (i64, i64, i64),
    ) -> StoreResult<Handover> {
        let mut tx = self.begin().await?;
        if !lock_held(&mut tx, job, owner).await? {
            return Ok(Handover::Lost);
        }
        if super::cancels::cancel_requested(&mut tx, &job.execution_id).await? {
            super::cancels::close_cancelled(&mut tx, &job.id, &job.execution_id).await?;
            tx.commit().await?;
            return Ok(Handover::Cancelled);
        }
        sqlx::query("delete from jobs where id = $1")
            .bind(&job.id)
            .execute(&mut *tx)
            .await?;
        let leased = sqlx::query(
            "update workflow_runs set status = 'running', owner = $2, lease_until = $3 \
             where execution_id = $1 and status = 'queued'",
        )
        .bind(&job.execution_id)
        .bind(drive)
        .bind(lease_until)
        .execute(&mut *tx)
        .await?;
        if leased.rows_affected() != 1 {
            // Rolled back: the job stays, and its worker fails it (a run with no record
            // could never be driven under a lease).
            return Err(super::StoreError::NotFound(format!(
                "the queued run {} has no record to hand over to",
                job.execution_id
            )));
        }
        sqlx::query("update executions set started_at = $2, deadline_at = $3 where id = $1 and status = 'running'")
            .bind(&job.execution_id)
            .bind(started_at)
            .bind(deadline_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Handover::Started)
    }

    /// Record that server `node` (up since `started_at`) is alive now; forget servers silent
    /// for a day.
    pub async fn beat(&self, node: &str, started_at: i64) -> StoreResult<()> {
        let now = now_ms();
        sqlx::query(
            "insert into nodes (id, started_at, heartbeat_at) values ($1, $2, $3) \
             on conflict (id) do update set heartbeat_at = excluded.heartbeat_at",
        )
        .bind(node)
        .bind(started_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query("delete from nodes where heartbeat_at < $1")
            .bind(now - 86_400_000)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Servers heard from since `since`, with the number of jobs each runs now.
    pub async fn nodes(&self, since: i64) -> StoreResult<Vec<Node>> {
        let rows = sqlx::query(
            "select n.id, n.started_at, n.heartbeat_at, \
             (select count(*) from jobs j where j.owner = n.id and j.status = 'running') as jobs \
             from nodes n where n.heartbeat_at >= $1 order by n.id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut nodes: Vec<Node> = rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(Node {
                    id: r.try_get("id")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                    jobs: r.try_get("jobs")?,
                    executions: Vec::new(),
                })
            })
            .collect::<Result<_, _>>()?;
        let held = sqlx::query(
            "select owner, execution_id from jobs where status = 'running' and owner is not null \
             order by lease_until limit 5000",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &held {
            let owner: String = r.try_get("owner")?;
            if let Some(n) = nodes.iter_mut().find(|n| n.id == owner) {
                if n.executions.len() < NODE_JOBS_LISTED {
                    n.executions.push(r.try_get("execution_id")?);
                }
            }
        }
        Ok(nodes)
    }

    /// Waiting jobs by tenant, the largest backlogs first (at most `limit` tenants, the rest
    /// summed under `None`), and the age in ms of the oldest waiting job.
    pub async fn queue_depths(&self, limit: usize) -> StoreResult<(Vec<(Option<String>, i64)>, Option<i64>)> {
        let rows = sqlx::query(
            "select tenant, count(*) as n, min(created_at) as oldest from jobs where status = 'queued' \
             group by tenant order by n desc",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut depths: Vec<(Option<String>, i64)> = vec![];
        let mut oldest: Option<i64> = None;
        let mut rest = 0;
        for (i, r) in rows.iter().enumerate() {
            let n: i64 = r.try_get("n")?;
            let at: i64 = r.try_get("oldest")?;
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
            if i < limit {
                depths.push((Some(r.try_get("tenant")?), n));
            } else {
                rest += n;
            }
        }
        if rows.len() > limit {
            depths.push((None, rest));
        }
        Ok((depths, oldest.map(|at| (now_ms() - at).max(0))))
    }

    /// Let every job `owner` runs be recovered at once (it is shutting down and has recorded
    /// them as interrupted): their leases end now instead of running out.
    pub async fn drop_leases(&self, owner: &str) -> StoreResult<u64> {
        let done = sqlx::query("update jobs set lease_until = 0 where owner = $1 and status = 'running'")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Take back a workflow job whose server died between its claim and its hand-over: nothing
/// of the run happened, so it waits in the queue again as it is (its execution `queued`),
/// or, out of attempts, ends failed with `reason`. Answers the execution if it was queued.
async fn requeue_workflow_job(
    conn: &mut sqlx::AnyConnection,
    job: &Job,
    reason: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    if job.attempt >= job.max_attempts {
        super::executions::close_interrupted(&mut *conn, &job.execution_id, reason).await?;
        end_queued_workflow_run(&mut *conn, &job.execution_id, "failed").await?;
        sqlx::query("delete from jobs where id = $1")
            .bind(&job.id)
            .execute(&mut *conn)
            .await?;
        return Ok(None);
    }
    sqlx::query("update jobs set status = 'queued', attempt = attempt + 1, run_at = $2 where id = $1")
        .bind(&job.id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("update executions set status = 'queued' where id = $1 and status = 'running'")
        .bind(&job.execution_id)
        .execute(conn)
        .await?;
    Ok(Some(job.execution_id.clone()))
}

/// A workflow run that ended before it was handed over (failed, cancelled): its run row
/// says so too. Nothing happens for a function's execution (it has no such row).
pub(super) async fn end_queued_workflow_run(
    conn: &mut sqlx::AnyConnection,
    execution_id: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update workflow_runs set status = $2 where execution_id = $1 and status = 'queued'")
        .bind(execution_id)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

/// Lock job `job`'s row (first, as every queue transaction does: no lock-order deadlock) if
/// `owner` still holds its current attempt; false when it was taken back meanwhile.
async fn lock_held(conn: &mut sqlx::AnyConnection, job: &Job, owner: &str) -> Result<bool, sqlx::Error> {
    let ours = sqlx::query(
        "update jobs set run_at = run_at where id = $1 and execution_id = $2 and owner = $3 and status = 'running'",
    )
    .bind(&job.id)
    .bind(&job.execution_id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(ours.rows_affected() == 1)
}
