//! The engine's side of the durable queue (the rows are `store::jobs`): `enqueue` checks a
//! call and commits it with its `queued` execution before anyone answers 202; `queue_loop`,
//! in every server, claims due jobs and runs them; `keep_leases` renews this server's leases
//! and takes back the jobs of servers that died.
//!
//! A job's end is recorded with its release in one transaction (the recorder's
//! `FinishExecution` carries the job), so a job is either still owed or done, never both.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{watch, Notify, Semaphore};

use super::{check_input, workflow, Engine, Error, Result, Trigger};
use crate::domain::{OnInterrupt, Target};
use crate::sandbox::{ErrorKind, ErrorRecord};
use crate::store::{now_ms, Job, NewJob, Refused, StoreError, Workflow};

/// How long a job held back by its tenant's quota waits before it may be claimed again.
const QUOTA_BACKOFF_MS: i64 = 500;
/// Most expired leases taken back in one pass.
const RECOVER_BATCH: i64 = 100;

/// A claimed job's execution: its row exists and says `running`.
pub(super) struct Claimed {
    pub execution_id: String,
    pub job_id: String,
    pub attempt: i64,
}

/// What this server's queue did since it started (for `/scheduler/status` and `/metrics`).
#[derive(Debug, Default, Serialize)]
pub struct QueueStats {
    pub claimed: AtomicU64,
    pub finished: AtomicU64,
    /// Jobs of dead servers this server took back.
    pub lease_expiries: AtomicU64,
    /// New attempts queued for them.
    pub reruns: AtomicU64,
    /// Jobs given back because their tenant was at a quota here.
    pub deferred: AtomicU64,
}

/// The queue's state in a server: its wake-up bell and its counters.
#[derive(Default)]
pub(super) struct QueueState {
    pub wake: Notify,
    pub stats: QueueStats,
    /// Queued jobs running here, by tenant (so a claim skips tenants at their concurrency).
    running: Mutex<HashMap<String, u32>>,
    /// The jobs this server holds, by their current attempt's execution id (a job id is
    /// shared by its attempts): only these leases are renewed, so a job whose worker is gone
    /// (a bug, a panic) runs out of lease and is taken back.
    held: Mutex<HashSet<String>>,
}

/// What to do with a claimed job that did not run.
enum Settle {
    /// Give it back to the queue (quota, shutdown, database unavailable).
    GiveBack,
    /// End it as failed with this error record (JSON).
    Fail(String),
}

/// Whether a run that could not start may start later as it is (the job goes back to the
/// queue): the tenant is at a quota, this server is stopping, or the database is away.
fn transient(e: &Error) -> bool {
    match e {
        Error::Quota { .. } | Error::ShuttingDown | Error::Store(StoreError::Unavailable(_)) => true,
        Error::Packages(f) => f.code == "database_unavailable",
        _ => false,
    }
}

/// Job priority by trigger: lower runs first among jobs of the same turn.
fn priority(trigger: &Trigger) -> i64 {
    match trigger {
        Trigger::Manual | Trigger::Run | Trigger::Session { .. } => 0,
        Trigger::Webhook { .. } | Trigger::Workflow { .. } => 1,
        Trigger::Schedule { .. } => 2,
    }
}

impl Engine {
    /// Queue a run of function `name`: its input is checked now (a bad one is refused at
    /// once), and the job is committed with its execution (`queued`) before this returns the
    /// execution id. `on_interrupt` overrides the function's own setting.
    pub async fn enqueue(
        &self,
        tenant: &str,
        name: &str,
        input: Value,
        trigger: &Trigger,
        on_interrupt: Option<OnInterrupt>,
    ) -> Result<String> {
        let inner = &self.inner;
        let function = inner.store.tenant(tenant).get_function_cached(name).await?;
        check_input(&*inner.schemas_for(&function)?, name, &input)?;
        let policy = on_interrupt
            .or(function.current.content.settings.on_interrupt)
            .unwrap_or_default();
        let max_attempts = match policy {
            OnInterrupt::Retry => inner.settings.queue_max_attempts,
            OnInterrupt::Fail => 1,
        };
        let input = input.to_string();
        self.commit_job(
            tenant,
            (name, function.current.version),
            &input,
            trigger,
            max_attempts,
            None,
        )
        .await
    }

    /// Queue a run of workflow `wf` with `config` (merged already): its `workflow_runs` row
    /// is committed with the job, so it is listed among the workflow's runs at once. A
    /// queued run is handed over to its own lease when a worker claims it; until then a
    /// server that dies loses nothing of it, so it is always taken back.
    pub async fn enqueue_workflow(
        &self,
        tenant: &str,
        wf: &Workflow,
        config: &Value,
        trigger: &Trigger,
    ) -> Result<String> {
        let input = serde_json::json!({ "config": config }).to_string();
        let attempts = self.inner.settings.queue_max_attempts;
        let workflow = Some((wf.id.as_str(), config));
        self.commit_job(tenant, (&wf.name, wf.version), &input, trigger, attempts, workflow)
            .await
    }

    /// Queue what a webhook or schedule targets (see `start_target` for the sync path).
    pub async fn enqueue_target(
        &self,
        tenant: &str,
        target: &Target,
        input: Value,
        trigger: &Trigger,
        on_interrupt: Option<OnInterrupt>,
    ) -> Result<String> {
        match target {
            Target::Function(name) => self.enqueue(tenant, name, input, trigger, on_interrupt).await,
            Target::Workflow(name) => {
                let wf = self.inner.store.tenant(tenant).get_workflow(name).await?;
                let config = workflow::merge_config(&wf.definition.config, Some(&input)).map_err(Error::Malformed)?;
                self.enqueue_workflow(tenant, &wf, &config, trigger).await
            }
        }
    }

    /// Commit a job of `name` (a function, or with `workflow` a workflow) at `version`.
    async fn commit_job(
        &self,
        tenant: &str,
        (name, version): (&str, i64),
        input: &str,
        trigger: &Trigger,
        max_attempts: i64,
        workflow: Option<(&str, &Value)>,
    ) -> Result<String> {
        let inner = &self.inner;
        let (trigger_id, envelope) = match trigger {
            Trigger::Webhook { id, envelope } => (Some(id.as_str()), *envelope),
            other => (other.id(), false),
        };
        let (attempt, retry_of) = trigger.attempt();
        let schedule_run = match trigger {
            Trigger::Schedule { run_id, .. } => Some(run_id.as_str()),
            _ => None,
        };
        let job = NewJob {
            function_name: name,
            function_version: version,
            input,
            trigger: trigger.as_str(),
            trigger_id,
            envelope,
            priority: priority(trigger),
            attempt: attempt.unwrap_or(1),
            retry_of: retry_of.as_deref(),
            schedule_run,
            max_attempts,
            workflow,
        };
        let cap = inner.settings.queue_max_per_tenant;
        match inner.store.tenant(tenant).enqueue(&job, cap).await? {
            Ok(id) => {
                inner.queue.wake.notify_one();
                Ok(id)
            }
            Err(Refused::Full(waiting)) => Err(Error::Quota {
                message: format!(
                    "tenant {tenant} already has {waiting} queued jobs (QUEUE_MAX_PER_TENANT); retry later"
                ),
                retry_after_seconds: 5,
            }),
        }
    }

    pub fn queue_stats(&self) -> &QueueStats {
        &self.inner.queue.stats
    }

    /// Queued jobs this server holds now (claimed, running or being settled).
    pub fn jobs_held(&self) -> usize {
        self.inner.queue.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Claim and run queued jobs until `stop` turns true (running ones go on; the drain waits
    /// for them). At most QUEUE_WORKERS run here at once.
    pub async fn queue_loop(self, mut stop: watch::Receiver<bool>) {
        let settings = self.inner.settings.clone();
        let workers = match settings.queue_workers {
            0 => settings.sandbox_workers.max(1),
            n => n,
        };
        let permits = Arc::new(Semaphore::new(workers));
        let poll = Duration::from_millis(settings.queue_poll_ms);
        let lease = settings.queue_lease_ms as i64;
        tracing::info!(node = %self.inner.node_id, workers, lease_ms = lease, "queue running");
        while !*stop.borrow() {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = stop.changed() => break,
            };
            let skip = self.saturated_tenants().await;
            match self
                .inner
                .store
                .claim_job(&self.inner.node_id, now_ms() + lease, &skip)
                .await
            {
                Ok(Some(job)) if self.over_cap(&job.tenant).await => {
                    // Another server claimed one of the tenant's jobs at the same instant
                    // and took its last slot: give this one back before it starts.
                    self.settle(&job, Settle::GiveBack).await;
                    drop(permit);
                }
                Ok(Some(job)) => {
                    self.inner.queue.stats.claimed.fetch_add(1, Ordering::Relaxed);
                    self.hold(&job.execution_id, true);
                    let engine = self.clone();
                    tokio::spawn(async move {
                        engine.run_job(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = self.inner.queue.wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "could not claim a queued job");
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        tracing::info!(node = %self.inner.node_id, "queue stopped claiming");
    }

    /// Renew this server's leases and take back the jobs whose server died, every third of
    /// a lease (or poll interval, if shorter), for as long as the server runs: leases must
    /// outlive the shutdown's drain, which waits on running jobs.
    pub async fn keep_leases(self) {
        let settings = self.inner.settings.clone();
        let lease = settings.queue_lease_ms as i64;
        let every = Duration::from_millis((settings.queue_lease_ms / 3).min(settings.queue_poll_ms).max(10));
        let started_at = now_ms();
        let mut renew_failed_at: Option<Instant> = None;
        let mut last_forget = 0;
        loop {
            let store = &self.inner.store;
            if let Err(e) = store.beat(&self.inner.node_id, started_at).await {
                tracing::warn!(error = %e, "could not record this server's heartbeat");
            }
            let held: Vec<String> = {
                let held = self.inner.queue.held.lock().unwrap_or_else(|e| e.into_inner());
                held.iter().cloned().collect()
            };
            if let Err(e) = self.apply_cancel_requests(&mut last_forget).await {
                tracing::warn!(error = %e, "could not read cancel requests");
            }
            match store.renew_jobs(&self.inner.node_id, &held, now_ms() + lease).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew job leases");
                    renew_failed_at = Some(Instant::now());
                }
            }
            // After this server could not renew (the database was away), every server's
            // leases may have run out meanwhile, though their jobs still run and their ends
            // wait to be written: take nothing back until a whole lease has passed since.
            let settled = renew_failed_at.is_none_or(|at| at.elapsed() > Duration::from_millis(lease as u64));
            if settled {
                if let Err(e) = self.recover_expired().await {
                    tracing::warn!(error = %e, "could not take back expired jobs");
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Take back every job whose lease ran out: a new attempt, or failed / interrupted.
    async fn recover_expired(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let reason = "the server running this execution stopped before it finished (its queue lease ran out)";
        for job in inner.store.expired_jobs(now_ms(), RECOVER_BATCH).await? {
            let owner_gone = inner.store.recover_job(&job, reason).await?;
            let stats = &inner.queue.stats;
            stats.lease_expiries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(job = %job.id, execution = %job.execution_id, attempt = job.attempt,
                rerun = owner_gone.is_some(), "a queued job's server stopped; took it back");
            if owner_gone.is_some() {
                stats.reruns.fetch_add(1, Ordering::Relaxed);
                inner.queue.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Tenants with as many queued jobs running here as their concurrency allows: a claim
    /// passes over their jobs instead of taking one it would have to give back.
    ///
    /// Queued jobs count against a tenant's `max_concurrent_executions` across the cluster:
    /// the running ones are read from the database (every replica's), so two replicas do not
    /// each allow the full quota. Two claims at the same instant may each see room for one
    /// more: `over_cap` then gives the extra back. If the database cannot be read, this
    /// server's own count stands in.
    async fn saturated_tenants(&self) -> Vec<String> {
        let local: Vec<(String, u32)> = {
            let map = self.inner.queue.running.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(t, n)| (t.clone(), *n)).collect()
        };
        let running = match self.inner.store.running_jobs_by_tenant().await {
            Ok(all) => all,
            Err(_) => local,
        };
        let mut full = Vec::new();
        for (tenant, n) in running {
            if let Ok(q) = self.inner.limiter.quotas(&tenant).await {
                if n >= q.max_concurrent_executions {
                    full.push(tenant);
                }
            }
        }
        full
    }

    /// Whether `tenant` now runs more queued jobs than it may, counting the one just
    /// claimed: every claim is committed before this check, so of claims racing across
    /// servers the last to look sees them all, and the cap holds exactly (a claim given back
    /// here waits QUOTA_BACKOFF_MS). If the database cannot be read, the claim stands.
    async fn over_cap(&self, tenant: &str) -> bool {
        let Ok(running) = self.inner.store.running_jobs_by_tenant().await else {
            return false;
        };
        let n = running.iter().find(|(t, _)| t == tenant).map_or(0, |(_, n)| *n);
        match self.inner.limiter.quotas(tenant).await {
            Ok(q) => n > q.max_concurrent_executions,
            Err(_) => false,
        }
    }

    fn count_running(&self, tenant: &str, delta: i32) {
        let mut map = self.inner.queue.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(tenant.to_string()).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            map.remove(tenant);
        }
    }

    /// Run one claimed job to its end (recorded with the job's release), or give it back
    /// (quota, shutdown), or fail it (it cannot start: its function is gone, say).
    async fn run_job(&self, job: Job) {
        let inner = &self.inner;
        let claimed = Claimed {
            execution_id: job.execution_id.clone(),
            job_id: job.id.clone(),
            attempt: job.run_attempt,
        };
        let trigger = match (job.trigger.as_str(), &job.trigger_id) {
            ("webhook", Some(id)) => Trigger::Webhook {
                id: id.clone(),
                envelope: job.envelope,
            },
            // Only its kind and id matter now: the execution row holds its attempt.
            ("schedule", Some(id)) => Trigger::Schedule {
                id: id.clone(),
                attempt: job.run_attempt,
                retry_of: None,
                run_id: String::new(),
            },
            _ => Trigger::Manual,
        };
        self.count_running(&job.tenant, 1);
        let started = match job.target.as_str() {
            // Handed over to its run's own lease; it goes on after this job is gone.
            "workflow" => self.start_queued_workflow(&job).await.map(|()| None),
            _ => {
                let input = serde_json::from_str(&job.input).unwrap_or(Value::Null);
                self.launch(&job.tenant, &job.function_name, input, trigger, Some(&claimed))
                    .await
                    .map(Some)
            }
        };
        let settle = match started {
            Ok(None) => None,
            Ok(Some(run)) => {
                let id = run.execution_id.clone();
                if let Err(Error::NotRecorded(_)) = run.wait().await {
                    // The end waits in memory for the database: keep the lease until it is
                    // committed (with the job's release), or another server would run it again.
                    while !inner.recorder.flush(&id).await && !inner.closing.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                inner.queue.stats.finished.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) if transient(&e) => {
                inner.queue.stats.deferred.fetch_add(1, Ordering::Relaxed);
                Some(Settle::GiveBack)
            }
            Err(e) => {
                let kind = match &e {
                    Error::NotFound(_) | Error::Store(StoreError::NotFound(_)) => ErrorKind::NotFound,
                    Error::InputInvalid(_) | Error::Malformed(_) => ErrorKind::InputValidation,
                    _ => ErrorKind::Crash,
                };
                let record = ErrorRecord::new(kind, format!("the queued run could not start: {}", e.public()));
                Some(Settle::Fail(serde_json::to_string(&record).unwrap_or_default()))
            }
        };
        if let Some(settle) = settle {
            self.settle(&job, settle).await;
        }
        self.count_running(&job.tenant, -1);
        self.hold(&job.execution_id, false);
    }

    /// Give back or fail a job that did not run, trying again while the database is
    /// unavailable (the lease is renewed meanwhile) unless the server is stopping (then the
    /// lease is dropped and another server takes the job).
    async fn settle(&self, job: &Job, settle: Settle) {
        let inner = &self.inner;
        let mut wait = Duration::from_millis(200);
        loop {
            let done = match &settle {
                Settle::GiveBack => {
                    let again = now_ms() + QUOTA_BACKOFF_MS;
                    inner.store.unclaim_job(job, &inner.node_id, again).await
                }
                Settle::Fail(error) => inner.store.fail_job(job, &inner.node_id, error).await,
            };
            match done {
                Ok(()) => return,
                Err(StoreError::Unavailable(_)) if !inner.closing.load(Ordering::SeqCst) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    // Its lease is no longer renewed: it runs out and the job is taken back.
                    tracing::warn!(job = %job.id, error = %e, "could not settle a queued job");
                    return;
                }
            }
        }
    }

    fn hold(&self, execution_id: &str, held: bool) {
        let mut set = self.inner.queue.held.lock().unwrap_or_else(|e| e.into_inner());
        if held {
            set.insert(execution_id.to_string());
        } else {
            set.remove(execution_id);
        }
    }
}
