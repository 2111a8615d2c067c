//! Starting and resuming workflow runs. A run is one execution (trigger `workflow`,
//! `schedule` or `webhook`) whose node attempts are its depth-1 steps; `workflow_runs` keeps
//! what it runs and which server drives it under a lease (see `orchestrator`). A run whose
//! server stopped is taken over once its lease runs out: steps left running are closed as
//! interrupted, finished nodes keep their stored outputs, and the rest run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::capabilities::Shared;
use super::orchestrator::{new_drive, Orchestrator, Prior, State};
use super::quotas::{Admission, AtCap};
use super::tree::CallTree;
use super::Result;
use super::{Engine, Error, Inner, InvokeResult, Trigger};
use crate::domain::workflow::Definition;
use crate::domain::CallStatus;
use crate::domain::ParseError;
use crate::sandbox::Cancel;
use crate::sandbox::PackageMount;
use crate::sandbox::{ErrorKind, ErrorRecord};
use crate::store::{
    now_ms, Handover, Job, NewStep, StepFinish, StepRecord, StoreError, Workflow, WorkflowRunRow, Write,
};

/// The longest a workflow run may take in all (the sweeper's deadline for it).
const RUN_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// A run taken over this many times is failed rather than resumed again: something about it
/// keeps stopping its servers.
const MAX_RESUMES: i64 = 5;

/// A started run; `wait` answers its end once recorded.
pub struct WorkflowRun {
    pub execution_id: String,
    tenant: String,
    done: oneshot::Receiver<InvokeResult>,
    inner: Arc<Inner>,
}

impl WorkflowRun {
    /// The run's end. If another server took the run over (this one lost its lease), the
    /// end is read from the execution's record once that server has written it, so whoever
    /// waits (a webhook's caller, `?wait`) sees the run's real outcome.
    pub async fn wait(self) -> Result<InvokeResult> {
        if let Ok(result) = self.done.await {
            return Ok(result);
        }
        loop {
            let e = self
                .inner
                .store
                .tenant(&self.tenant)
                .get_execution(&self.execution_id)
                .await?;
            if e.call.status.is_finished() {
                let error = e.call.error.and_then(|v| serde_json::from_value(v).ok());
                return Ok(InvokeResult {
                    execution_id: e.id,
                    status: match e.call.status {
                        CallStatus::Succeeded => CallStatus::Succeeded,
                        _ => CallStatus::Failed,
                    },
                    output: e.call.output,
                    error,
                    duration_ms: e.call.duration_ms.unwrap_or(0.0),
                    fuel_used: e.call.fuel_used.max(0) as u64,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The end, if it comes within `wait`.
    pub async fn wait_for(self, wait: Duration) -> Option<InvokeResult> {
        tokio::time::timeout(wait, self.wait()).await.ok()?.ok()
    }
}

/// The run's config: the workflow's default with the run's own keys over it.
pub fn merge_config(base: &Value, run: Option<&Value>) -> Result<Value, ParseError> {
    let mut out = base.as_object().cloned().unwrap_or_default();
    match run {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => out.extend(m.clone()),
        Some(_) => {
            return Err(ParseError::new(
                "config",
                "a workflow's run config (a webhook's body or a schedule's input) must be a JSON object",
            ))
        }
    }
    Ok(Value::Object(out))
}

impl Engine {
    /// Start a run of the workflow's current version with `config` here, now (a caller
    /// waits for it; runs nobody waits for are queued: `enqueue_workflow`).
    pub async fn run_workflow(
        &self,
        tenant: &str,
        wf: &Workflow,
        config: Value,
        trigger: Trigger,
    ) -> Result<WorkflowRun> {
        let inner = &self.inner;
        let packages = inner.packages.mount(tenant).await?;
        inner.check_open()?;
        let (admission, _) = inner.limiter.admit(tenant, AtCap::Wait).await?;
        let execution_id = uuid::Uuid::now_v7().to_string();
        let started_at = now_ms();
        let lease = inner.settings.workflow_lease_ms as i64;
        let row = WorkflowRunRow {
            execution_id: execution_id.clone(),
            tenant: tenant.to_string(),
            workflow_id: wf.id.clone(),
            version: wf.version,
            config: config.clone(),
            trigger: trigger.as_str().to_string(),
            trigger_id: trigger.id().map(str::to_string),
            lease_until: Some(started_at + lease),
            resumes: 0,
        };
        let drive = new_drive(&inner.node_id);
        inner.store.insert_workflow_run(&row, &drive).await?;
        let root = NewStep {
            id: execution_id.clone(),
            execution_id: execution_id.clone(),
            parent_id: None,
            seq: 0,
            depth: 0,
            function_name: wf.name.clone(),
            function_version: Some(wf.version),
            input: json!({ "config": config }).to_string(),
            started_at,
        };
        inner.recorder.send(Write::StartExecution {
            tenant: tenant.to_string(),
            trigger: trigger.as_str(),
            trigger_id: trigger.id().map(str::to_string),
            attempt: trigger.attempt(),
            root: root.clone(),
            deadline_at: started_at + RUN_LIMIT.as_millis() as i64,
            finish: None,
        });
        let done = self.drive(
            Launch {
                row: &row,
                name: &wf.name,
                def: wf.definition.clone(),
                started_at,
                drive,
                packages,
            },
            admission,
        );
        Ok(WorkflowRun {
            execution_id,
            tenant: tenant.to_string(),
            done,
            inner: inner.clone(),
        })
    }

    /// Start the run of a claimed workflow job here: hand the job over to the run's own
    /// lease (the job goes in that transaction) and drive it. An error leaves the job
    /// claimed, for the queue to give back or fail.
    pub(super) async fn start_queued_workflow(&self, job: &Job) -> Result<()> {
        let inner = &self.inner;
        let tenant = &job.tenant;
        let row = inner.store.tenant(tenant).workflow_run(&job.execution_id).await?;
        let row = row.ok_or_else(|| Error::NotFound(format!("the run {} has no record", job.execution_id)))?;
        let (name, def) = inner
            .store
            .tenant(tenant)
            .workflow_version_by_id(&row.workflow_id, row.version)
            .await?;
        let packages = inner.packages.mount(tenant).await?;
        inner.check_open()?;
        // A queued run at the cap goes back to the queue.
        let (admission, _) = inner.limiter.admit(tenant, AtCap::Refuse).await?;
        let drive = new_drive(&inner.node_id);
        let started_at = now_ms();
        let times = (
            started_at + inner.settings.workflow_lease_ms as i64,
            started_at,
            started_at + RUN_LIMIT.as_millis() as i64,
        );
        match inner
            .store
            .hand_over_workflow_job(job, &inner.node_id, &drive, times)
            .await?
        {
            Handover::Started => {}
            Handover::Cancelled => {
                let event = json!({"step_id": job.execution_id, "status": "cancelled", "depth": 0});
                inner
                    .events
                    .publish(tenant, &job.execution_id, "execution.finished", event);
                return Ok(());
            }
            Handover::Lost => return Ok(()),
        }
        let launch = Launch {
            row: &row,
            name: &name,
            def,
            started_at,
            drive,
            packages,
        };
        drop(self.drive(launch, admission));
        Ok(())
    }

    /// Announce a run whose records are written, track it for cancels and drive it in a task
    /// of its own holding `admission`; the receiver answers its end.
    fn drive(&self, l: Launch<'_>, admission: Admission) -> oneshot::Receiver<InvokeResult> {
        let inner = &self.inner;
        let (tenant, id) = (&l.row.tenant, &l.row.execution_id);
        let trigger = trigger_kind(&l.row.trigger);
        let event = json!({"step_id": id, "workflow": l.name, "version": l.row.version, "depth": 0,
                           "trigger": trigger, "trigger_id": l.row.trigger_id});
        inner.events.publish(tenant, id, "execution.started", event);
        let template = CallTree::root(
            inner.clone(),
            tenant,
            id,
            (l.name, l.row.version),
            Shared::new(trigger, None),
            l.packages,
        );
        let cancel = inner.track(id, true);
        let run = Orchestrator {
            inner: inner.clone(),
            template,
            def: l.def,
            config: l.row.config.clone(),
            started_at: l.started_at,
            drive: l.drive,
            cancel,
        };
        let (tx, done) = oneshot::channel();
        let (tracker, id) = (inner.clone(), id.clone());
        tokio::spawn(async move {
            let _admission = admission;
            if let Some(result) = run.run(Prior::default()).await {
                let _ = tx.send(result);
            }
            tracker.untrack(&id, cancel);
        });
        done
    }

    /// Look for runs whose server stopped (lease run out) every so often, and take them
    /// over. Runs beside the scheduler (servers with SCHEDULER_ENABLED=false leave both).
    pub async fn resume_loop(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let lease = self.inner.settings.workflow_lease_ms;
        let every = Duration::from_millis((lease / 4).clamp(100, 5_000));
        while !*stop.borrow() {
            if let Err(e) = self.resume_stranded().await {
                tracing::warn!(error = %e, "looking for stranded workflow runs failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Take over every stranded run this server can; answers how many it resumed.
    pub async fn resume_stranded(&self) -> anyhow::Result<usize> {
        let inner = &self.inner;
        let mut resumed = 0;
        for row in inner.store.stranded_workflow_runs(now_ms(), 100).await? {
            let started_at = match inner.store.tenant(&row.tenant).get_execution(&row.execution_id).await {
                Ok(e) if e.call.status == CallStatus::Running => e.call.started_at,
                Ok(e) => {
                    // It ended but its server stopped before saying so here.
                    let status = e.call.status;
                    inner
                        .store
                        .finish_workflow_run(&row.execution_id, status.as_str(), None)
                        .await?;
                    continue;
                }
                Err(StoreError::NotFound(_)) => {
                    // Its start was never committed: nothing ran.
                    inner.store.finish_workflow_run(&row.execution_id, "lost", None).await?;
                    continue;
                }
                Err(e) => return Err(e.into()), // the database is unwell: look again later
            };
            // Held against the tenant's concurrency like any run; at the cap it waits.
            let Ok((admission, _)) = inner.limiter.admit(&row.tenant, AtCap::Refuse).await else {
                continue;
            };
            let until = now_ms() + inner.settings.workflow_lease_ms as i64;
            let drive = new_drive(&inner.node_id);
            if !inner.store.take_workflow_run(&row, &drive, until).await? {
                continue; // another server took it
            }
            let cancel = inner.track(&row.execution_id, true);
            // Asked to stop while its server was away: it stops here at once.
            if inner
                .store
                .cancel_requested_for(&row.execution_id)
                .await
                .unwrap_or(false)
            {
                cancel.cancel();
            }
            let resumed_run = self.resume(&row, started_at, drive.clone(), cancel).await;
            if resumed_run.is_err() {
                inner.untrack(&row.execution_id, cancel);
            }
            match resumed_run {
                Ok(run) => {
                    resumed += 1;
                    let (tracker, id) = (inner.clone(), row.execution_id.clone());
                    tokio::spawn(async move {
                        let _admission = admission;
                        run.await;
                        tracker.untrack(&id, cancel);
                    });
                }
                Err(Resume::Impossible(why)) => self.abandon(&row, started_at, &why, &drive).await,
                Err(Resume::NotNow(why)) => {
                    // Its lease runs out again and a later look retries (a resume counted).
                    tracing::warn!(execution = %row.execution_id, why, "could not resume a workflow run yet");
                }
            }
        }
        Ok(resumed)
    }

    /// Rebuild a run's state from its steps and hand back its driver.
    async fn resume(
        &self,
        row: &WorkflowRunRow,
        started_at: i64,
        drive: String,
        cancel: Cancel,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, Resume> {
        let inner = &self.inner;
        if row.resumes >= MAX_RESUMES {
            return Err(Resume::Impossible(format!(
                "its servers stopped {} times while running it",
                row.resumes + 1
            )));
        }
        let (tenant, id) = (&row.tenant, &row.execution_id);
        let not_now = |e: &dyn std::fmt::Display| Resume::NotNow(e.to_string());
        let found = inner
            .store
            .tenant(tenant)
            .workflow_version_by_id(&row.workflow_id, row.version)
            .await;
        let (name, def) = match found {
            Ok(found) => found,
            Err(StoreError::NotFound(m)) => return Err(Resume::Impossible(m)),
            Err(e) => return Err(not_now(&e)),
        };
        let packages = inner.packages.mount(tenant).await.map_err(|e| not_now(&e))?;
        let closed = inner
            .store
            .tenant(tenant)
            .interrupt_open_steps(id)
            .await
            .map_err(|e| not_now(&e))?;
        let steps = inner
            .store
            .tenant(tenant)
            .list_steps(id)
            .await
            .map_err(|e| not_now(&e))?;
        let prior = prior_of(&def, &steps);
        tracing::info!(execution = %id, workflow = %name, interrupted = closed, "resuming a workflow run");
        let event = json!({"step_id": id, "workflow": name, "interrupted_steps": closed, "resumes": row.resumes + 1});
        inner.events.publish(tenant, id, "execution.resumed", event);
        let trigger = trigger_kind(&row.trigger);
        let template = CallTree::root(
            inner.clone(),
            tenant,
            id,
            (&name, row.version),
            Shared::new(trigger, None),
            packages,
        );
        let next_seq = steps.iter().map(|s| s.seq).max().unwrap_or(0) + 1;
        template.seq.store(next_seq, Ordering::Relaxed);
        let run = Orchestrator {
            inner: inner.clone(),
            template,
            def,
            config: row.config.clone(),
            started_at,
            drive,
            cancel,
        };
        Ok(async move {
            run.run(prior).await;
        })
    }

    /// End a run that cannot be resumed as failed, saying why.
    async fn abandon(&self, row: &WorkflowRunRow, started_at: i64, why: &str, drive: &str) {
        let inner = &self.inner;
        tracing::warn!(execution = %row.execution_id, why, "cannot resume a workflow run");
        let _ = inner
            .store
            .tenant(&row.tenant)
            .interrupt_open_steps(&row.execution_id)
            .await;
        let error = ErrorRecord::new(ErrorKind::Interrupted, format!("the run could not be resumed: {why}"));
        let finished_at = now_ms();
        inner.recorder.send(Write::FinishExecution {
            tenant: row.tenant.clone(),
            id: row.execution_id.clone(),
            finish: StepFinish {
                status: CallStatus::Failed,
                output: None,
                error: Some(json!(error).to_string()),
                stdout: String::new(),
                stderr: String::new(),
                fuel_used: 0,
                duration_ms: (finished_at - started_at).max(0) as f64,
                finished_at,
                activity: None,
            },
            job: None,
        });
        if inner.recorder.flush(&row.execution_id).await {
            let _ = inner
                .store
                .finish_workflow_run(&row.execution_id, "failed", Some(drive))
                .await;
        }
    }
}

/// What the stored node steps say: succeeded and skipped nodes, failed attempts (a node out
/// of attempts is failed), fuel spent so far.
fn prior_of(def: &Definition, steps: &[StepRecord]) -> Prior {
    let mut prior = Prior::default();
    for s in steps.iter().filter(|s| s.depth == 1) {
        let name = &s.call.function_name;
        prior.fuel += s.call.fuel_used.max(0) as u64;
        match s.call.status {
            CallStatus::Succeeded => {
                let output = s.call.output.clone().unwrap_or(Value::Null);
                prior.state.insert(name.clone(), State::Succeeded(output));
            }
            CallStatus::Skipped => {
                prior.state.insert(name.clone(), State::Skipped);
            }
            _ => {
                let interrupted = s.call.error_kind() == Some("interrupted");
                if !interrupted {
                    *prior.failed.entry(name.clone()).or_default() += 1;
                }
            }
        }
    }
    let retries: BTreeMap<&str, u32> = def.nodes.iter().map(|n| (n.function.as_str(), n.retries)).collect();
    for (name, failed) in &prior.failed {
        let out_of_attempts = retries.get(name.as_str()).is_some_and(|r| *failed > *r);
        if out_of_attempts && !prior.state.contains_key(name) {
            prior.state.insert(name.clone(), State::Failed);
        }
    }
    // A node recorded as skipped stays so only below a failed node: an ancestor whose failure
    // left no step (a call refused before it started) is pending again, and so is all below.
    let parents = def.parents();
    let skipped: Vec<String> = prior
        .state
        .iter()
        .filter(|(_, s)| **s == State::Skipped)
        .map(|(n, _)| n.clone())
        .collect();
    for n in skipped {
        let mut stack: Vec<&str> = parents.get(n.as_str()).cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        let mut below_failure = false;
        while let Some(p) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            if prior.state.get(p) == Some(&State::Failed) {
                below_failure = true;
                break;
            }
            stack.extend(parents.get(p).cloned().unwrap_or_default());
        }
        if !below_failure {
            prior.state.remove(&n);
        }
    }
    prior
}

/// A new run's parts for `Engine::drive`.
struct Launch<'a> {
    row: &'a WorkflowRunRow,
    name: &'a str,
    def: Definition,
    started_at: i64,
    drive: String,
    packages: Option<Arc<PackageMount>>,
}

/// A run's trigger as its nodes see it (`maestro.context.trigger`).
fn trigger_kind(stored: &str) -> &'static str {
    match stored {
        "schedule" => "schedule",
        "webhook" => "webhook",
        _ => "workflow",
    }
}

/// Why a stranded run was not resumed: for good, or only this time.
enum Resume {
    Impossible(String),
    NotNow(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workflow::DefinitionIn;
    use crate::store::CallRecord;

    fn step(seq: i64, function: &str, status: &str, error_kind: Option<&str>) -> StepRecord {
        StepRecord {
            id: format!("s{seq}"),
            execution_id: "e".into(),
            parent_id: Some("e".into()),
            seq,
            depth: 1,
            call: CallRecord {
                function_name: function.into(),
                function_version: Some(1),
                status: status.parse().expect("a test status"),
                input: Value::Null,
                output: (status == "succeeded").then(|| json!(seq)),
                error: error_kind.map(|k| json!({"kind": k})),
                stdout: String::new(),
                stderr: String::new(),
                fuel_used: 10,
                duration_ms: Some(1.0),
                activity: None,
                started_at: 0,
                finished_at: Some(1),
            },
        }
    }

    #[test]
    fn state_rebuilt_from_steps() {
        let def: DefinitionIn = serde_json::from_value(json!({
            "nodes": ["a", {"function": "b", "retries": 1}, "c", "d", "e"],
            "edges": [["a", "b"], ["b", "c"], ["a", "d"], ["d", "e"]]
        }))
        .expect("shape");
        let def = def.check().expect("valid");
        let steps = vec![
            step(1, "a", "succeeded", None),
            // b: one real failure (a retry left) and one interruption (not counted).
            step(2, "b", "failed", Some("error")),
            step(3, "b", "failed", Some("interrupted")),
            // d failed for good; e below it stays skipped.
            step(4, "d", "failed", Some("error")),
            step(5, "e", "skipped", Some("skipped")),
            // c was recorded skipped though b has not failed for good: pending again.
            step(6, "c", "skipped", Some("skipped")),
        ];
        let prior = prior_of(&def, &steps);
        assert_eq!(prior.state.get("a"), Some(&State::Succeeded(json!(1))));
        assert_eq!(prior.failed.get("b"), Some(&1));
        assert_eq!(prior.state.get("b"), None, "b has a retry left");
        assert_eq!(prior.state.get("d"), Some(&State::Failed));
        assert_eq!(prior.state.get("e"), Some(&State::Skipped));
        assert_eq!(prior.state.get("c"), None, "c runs once b succeeds");
        assert_eq!(prior.fuel, 60);
    }
}
