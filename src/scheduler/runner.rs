//! The loop in every `maestro serve` that fires due schedules.
//!
//! Replicas share nothing but the database. A tick is claimed by moving the schedule's
//! `next_run_at` forward with a compare-and-set (only one replica's update matches the old
//! value), and each run is a row unique on (schedule, tick, attempt), so a tick fires once
//! however many replicas poll. Retries are rows too (`pending` until `due_at`), claimed the
//! same way, so they survive restarts.
//!
//! A run is a job of the durable queue (`Engine::enqueue_target`): any replica runs it, and
//! the next poll of any scheduler settles the run from its execution's end (and queues its
//! retry). The queue does not re-run a function's scheduled job whose server died (its
//! `on_interrupt` is `fail`): the schedule's own retries decide, as for any failure. A
//! workflow's run, once started, keeps its own lease and resumes on another server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::Timing;
use crate::config::Settings;
use crate::domain::{CallStatus, OnInterrupt, Overlap, RunStatus};
use crate::engine::{Engine, Error, Trigger};

use crate::store::{now_ms, Audit, NewRun, Schedule, ScheduleRun, Store};

/// How long after it was recorded a run with no execution is taken to be orphaned by a
/// server that died before starting it.
const ORPHAN_AFTER_MS: i64 = 30_000;
/// How long a run held back by its tenant's quota waits before it is tried again.
const QUOTA_BACKOFF_MS: i64 = 1_000;
/// Most missed ticks counted after downtime (the count is informative only).
const MAX_COUNTED_MISSES: i64 = 1_000;

/// What `/scheduler/status` reports about this node.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NodeStats {
    pub ticks_fired: u64,
    pub ticks_skipped: u64,
    pub retries_started: u64,
    #[serde(serialize_with = "crate::domain::time::iso_ms_opt")]
    pub last_poll_at: Option<i64>,
}

pub struct Scheduler {
    store: Store,
    engine: Engine,
    pub node_id: String,
    pub poll: Duration,
    pub enabled: bool,
    stats: Mutex<NodeStats>,
}

/// The parts of a run needed to finish it.
struct RunRef {
    id: String,
    tenant: String,
    schedule_id: String,
    fire_at: i64,
    attempt: i64,
    retry_of: Option<String>,
}

impl From<&ScheduleRun> for RunRef {
    fn from(r: &ScheduleRun) -> RunRef {
        RunRef {
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            schedule_id: r.schedule_id.clone(),
            fire_at: r.fire_at,
            attempt: r.attempt,
            retry_of: r.retry_of.clone(),
        }
    }
}

impl Scheduler {
    pub fn new(store: Store, engine: Engine, settings: &Settings) -> Arc<Scheduler> {
        let node_id = engine.node_id().to_string();
        Arc::new(Scheduler {
            store,
            engine,
            node_id,
            poll: Duration::from_millis(settings.scheduler_poll_ms.max(10)),
            enabled: settings.scheduler_enabled,
            stats: Mutex::new(NodeStats::default()),
        })
    }

    pub fn stats(&self) -> NodeStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn count(&self, f: impl FnOnce(&mut NodeStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Poll until `stop` turns true; a poll under way finishes first, so no tick is left
    /// claimed but not started. A server whose scheduler is disabled fires nothing but still
    /// settles ended runs (a manual run's job may end anywhere).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.enabled {
            tracing::info!(node = %self.node_id, poll_ms = self.poll.as_millis() as u64, "scheduler running");
        }
        while !*stop.borrow() {
            let polled = match self.enabled {
                true => self.poll_once(now_ms()).await,
                false => self.settle_runs().await,
            };
            if let Err(e) = polled {
                tracing::warn!(error = %e, "scheduler poll failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!(node = %self.node_id, "scheduler stopped");
    }

    /// Fire what is due at `now`: ticks, then retries, then close orphaned runs.
    pub async fn poll_once(self: &Arc<Self>, now: i64) -> anyhow::Result<()> {
        for s in self.store.due_schedules(now, 100).await? {
            if let Err(e) = self.fire_due(&s, now).await {
                tracing::warn!(schedule = %s.id, error = %e, "could not fire schedule");
            }
        }
        for r in self.store.due_retries(now, 100).await? {
            if !self
                .store
                .move_run(&r.id, RunStatus::Pending, RunStatus::Running, None)
                .await?
            {
                continue; // another replica took it
            }
            let run = RunRef::from(&r);
            match self.store.tenant(&run.tenant).get_schedule(&run.schedule_id).await {
                Ok(s) if s.fields.enabled => {
                    self.count(|st| st.retries_started += 1);
                    self.launch(&s, run).await;
                }
                Ok(_) => self.finish(&run, RunStatus::Skipped, None, Some("paused")).await,
                Err(e) => self.finish(&run, RunStatus::Failed, None, Some(&e.to_string())).await,
            }
        }
        self.settle_runs().await?;
        self.count(|s| s.last_poll_at = Some(now));
        Ok(())
    }

    /// Finish the runs whose execution ended (queueing their retries), and those orphaned
    /// before they got one.
    async fn settle_runs(self: &Arc<Self>) -> anyhow::Result<()> {
        // Orphans are judged by the real clock: their timestamps are real.
        for (r, status) in self.store.runs_to_settle(now_ms() - ORPHAN_AFTER_MS).await? {
            let run = RunRef::from(&r);
            match status {
                Some(CallStatus::Succeeded) => {
                    self.finish(&run, RunStatus::Succeeded, r.execution_id.as_deref(), None)
                        .await
                }
                Some(CallStatus::Cancelled) => {
                    self.finish(&run, RunStatus::Cancelled, r.execution_id.as_deref(), None)
                        .await
                }
                Some(_) => {
                    self.finish(&run, RunStatus::Failed, r.execution_id.as_deref(), None)
                        .await
                }
                None => {
                    self.finish(
                        &run,
                        RunStatus::Failed,
                        None,
                        Some("lost: its server stopped before it started"),
                    )
                    .await
                }
            }
        }
        Ok(())
    }

    /// Claim a schedule's due tick and run it, or record why it was skipped.
    async fn fire_due(self: &Arc<Self>, s: &Schedule, now: i64) -> anyhow::Result<()> {
        let Some(due) = s.next_run_at else { return Ok(()) };
        let timing = match Timing::parse(&s.fields.cron_expression, &s.fields.timezone) {
            Ok(t) => t,
            Err(e) => {
                // Stored before a rule changed: park it rather than fail every poll.
                tracing::warn!(schedule = %s.id, error = %e, "schedule has an invalid expression; pausing it");
                self.store.claim_tick(&s.id, due, None).await?;
                return Ok(());
            }
        };
        // A tick is on time within a couple of polls; after downtime only the latest missed
        // tick within the catch-up window runs, once.
        let on_time = 2 * self.poll.as_millis() as i64 + 1000;
        let window = ((s.fields.catchup_window_seconds * 1000.0) as i64).max(on_time);
        let latest = latest_tick(&timing, due, now, now - window);
        let missed = count_ticks(&timing, due, latest.unwrap_or(now));
        let next = timing.next_ms(now);
        let mut run = NewRun {
            tenant: &s.tenant,
            schedule_id: &s.id,
            fire_at: latest.unwrap_or(due),
            attempt: 1,
            status: RunStatus::Skipped,
            reason: Some("misfire"),
            due_at: latest.unwrap_or(due),
            retry_of: None,
            missed,
        };
        if latest.is_some() {
            let busy = s.fields.overlap_policy == Overlap::Skip
                && self.store.schedule_busy(&s.id, now_ms() - ORPHAN_AFTER_MS).await?;
            if busy {
                run.reason = Some("overlap");
            } else {
                run.status = RunStatus::Running;
                run.reason = None;
            }
        }
        let Some(id) = self.store.claim_tick_with_run(due, next, &run).await? else {
            return Ok(()); // another replica has it
        };
        if run.status == RunStatus::Skipped {
            self.count(|st| st.ticks_skipped += 1);
            return Ok(());
        }
        self.count(|st| st.ticks_fired += 1);
        let fire_at = run.fire_at;
        let lag = (now_ms() - fire_at).max(0) as f64 / 1000.0;
        let help = "How late scheduled ticks start.";
        self.engine
            .metrics()
            .observe("maestro_schedule_lag_seconds", help, vec![], lag);
        let run = RunRef {
            id,
            tenant: s.tenant.clone(),
            schedule_id: s.id.clone(),
            fire_at,
            attempt: 1,
            retry_of: None,
        };
        self.launch(s, run).await;
        Ok(())
    }

    /// `POST /schedules/{id}/run`: run it now, outside its timetable (retries still apply).
    /// The work runs in its own task, so a client hanging up cannot leave it half done.
    /// `audit` (given the run's id) is recorded with the run.
    pub async fn run_now(
        self: &Arc<Self>,
        s: &Schedule,
        audit: impl FnOnce(&str) -> Audit + Send + 'static,
    ) -> Result<(String, Option<String>), Error> {
        let me = self.clone();
        let s = s.clone();
        tokio::spawn(async move {
            let now = now_ms();
            let row = NewRun {
                tenant: &s.tenant,
                schedule_id: &s.id,
                fire_at: now,
                attempt: 1,
                status: RunStatus::Running,
                reason: Some("manual"),
                due_at: now,
                retry_of: None,
                missed: 0,
            };
            let id = me
                .store
                .insert_manual_run(&row, audit)
                .await?
                .ok_or_else(|| Error::Conflict("a run of this schedule started at the same instant".into()))?;
            let run = RunRef {
                id: id.clone(),
                tenant: s.tenant.clone(),
                schedule_id: s.id.clone(),
                fire_at: now,
                attempt: 1,
                retry_of: None,
            };
            let execution = me.launch(&s, run).await;
            Ok((id, execution))
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("manual run task failed: {e}")))?
    }

    /// Queue the run's job (a function's or a workflow's run), linked to the run in the
    /// job's own transaction; answers its execution. The next poll after it ends settles it.
    async fn launch(self: &Arc<Self>, s: &Schedule, run: RunRef) -> Option<String> {
        let trigger = Trigger::Schedule {
            id: s.id.clone(),
            attempt: run.attempt,
            retry_of: run.retry_of.clone(),
            run_id: run.id.clone(),
        };
        let input = s.fields.input_data.clone();
        // The queue does not re-run a function's job whose server died: the schedule's
        // retries decide (a workflow run resumes where it stopped instead).
        let fail = Some(OnInterrupt::Fail);
        match self
            .engine
            .enqueue_target(&s.tenant, &s.fields.target, input, &trigger, fail)
            .await
        {
            Ok(execution_id) => Some(execution_id),
            Err(Error::Quota { message: why, .. }) => {
                // The tenant's queue is full: try again shortly, without spending an attempt.
                let again = now_ms() + QUOTA_BACKOFF_MS;
                if let Err(e) = self.store.requeue_run(&run.id, again, &why).await {
                    tracing::warn!(run = %run.id, error = %e, "could not requeue a run held back by quota");
                }
                None
            }
            Err(e) => {
                self.finish(&run, RunStatus::Failed, None, Some(&e.public())).await;
                None
            }
        }
    }

    /// Record a run's end and queue its retry when it failed and attempts remain.
    async fn finish(&self, run: &RunRef, status: RunStatus, execution_id: Option<&str>, reason: Option<&str>) {
        if let Err(e) = self.try_finish(run, status, execution_id, reason).await {
            tracing::warn!(run = %run.id, error = %e, "could not record the end of a scheduled run");
        }
    }

    async fn try_finish(
        &self,
        run: &RunRef,
        status: RunStatus,
        execution_id: Option<&str>,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut retry = None;
        if status == RunStatus::Failed {
            if let Ok(s) = self.store.tenant(&run.tenant).get_schedule(&run.schedule_id).await {
                if run.attempt <= s.fields.max_retries {
                    let due = now_ms() + (retry_delay(&s, run.attempt) * 1000.0) as i64;
                    retry = Some(NewRun {
                        tenant: &run.tenant,
                        schedule_id: &run.schedule_id,
                        fire_at: run.fire_at,
                        attempt: run.attempt + 1,
                        status: RunStatus::Pending,
                        reason: None,
                        due_at: due,
                        retry_of: run.retry_of.as_deref().or(execution_id),
                        missed: 0,
                    });
                }
            }
        }
        self.store
            .finish_run(&run.id, status, reason, execution_id, retry.as_ref())
            .await?;
        Ok(())
    }
}

/// The latest tick in `[due, now]` no older than `oldest`, if any. The search widens from
/// one second back, so a frequent schedule costs a few evaluations however long the outage.
fn latest_tick(timing: &Timing, due: i64, now: i64, oldest: i64) -> Option<i64> {
    let floor = due.max(oldest) - 1;
    let mut back = 1_000i64;
    loop {
        let start = (now - back).max(floor);
        if let Some(first) = timing.next_ms(start).filter(|t| *t <= now) {
            let mut latest = first;
            while let Some(t) = timing.next_ms(latest).filter(|t| *t <= now) {
                latest = t;
            }
            return Some(latest);
        }
        if start == floor {
            return None;
        }
        back = back.saturating_mul(2);
    }
}

/// Ticks in `(due, until]`: those a catch-up run stands for (at most `MAX_COUNTED_MISSES`).
fn count_ticks(timing: &Timing, due: i64, until: i64) -> i64 {
    let (mut n, mut t) = (0, due);
    while let Some(next) = timing.next_ms(t).filter(|x| *x <= until) {
        n += 1;
        t = next;
        if n >= MAX_COUNTED_MISSES {
            break;
        }
    }
    n
}

/// Seconds before retry number `n` (1 = the first retry):
/// `retry_delay_seconds * backoff_factor^(n-1)`, capped at `max_retry_delay_seconds`.
pub fn retry_delay(s: &Schedule, n: i64) -> f64 {
    s.fields.retry().delay(n)
}
