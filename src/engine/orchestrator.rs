//! Driving one workflow run: nodes whose parents all succeeded run, up to the workflow's
//! concurrency at once, on the sandbox workers; a failed node is retried per its policy
//! (each attempt its own step, with `maestro.context.attempt`), then fails the run and its
//! descendants are recorded as `skipped` while independent branches still finish. The
//! driving server renews its lease on the run as it goes, under a token of this drive (not
//! just of the server: a server may take over a run it once drove itself); if the run was
//! taken over, this drive stops and records nothing more about the run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::capabilities::Shared;
use super::tree::CallTree;
use super::{Inner, InvokeResult};
use crate::domain::workflow::Definition;
use crate::domain::CallStatus;
use crate::sandbox::{Budget, Cancel, ErrorKind, ErrorRecord, Nested};
use crate::store::{now_ms, NewStep, StepFinish, Write};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum State {
    Pending,
    Running,
    Succeeded(Value),
    Failed,
    Skipped,
}

/// Where a run stands before this server drives it: nothing for a new run, what the stored
/// steps say for a resumed one.
#[derive(Default)]
pub(super) struct Prior {
    pub state: BTreeMap<String, State>,
    /// Failed attempts per node (interrupted ones not counted: not the function's fault).
    pub failed: BTreeMap<String, u32>,
    pub fuel: u64,
}

pub(super) struct Orchestrator {
    pub inner: Arc<Inner>,
    pub template: CallTree,
    pub def: Definition,
    pub config: Value,
    /// When the run started (unix ms): a resumed run's duration counts from there.
    pub started_at: i64,
    /// This drive's lease token (`workflow_runs.owner`).
    pub drive: String,
    /// Set by a cancel of the run: no node starts or retries, running ones stop.
    pub cancel: Cancel,
}

/// A new lease token for a drive of a run by this server.
pub(super) fn new_drive(node_id: &str) -> String {
    format!("{node_id}/{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

type Attempt = (String, u32, Option<Nested>);

impl Orchestrator {
    /// Drive the run to its end; `None` when another server took it over meanwhile.
    pub async fn run(self, prior: Prior) -> Option<InvokeResult> {
        let parents = self.def.parents();
        let children = self.def.children();
        let mut state: BTreeMap<String, State> = self
            .def
            .nodes
            .iter()
            .map(|n| {
                let s = prior.state.get(&n.function).cloned().unwrap_or(State::Pending);
                (n.function.clone(), s)
            })
            .collect();
        let mut fuel = prior.fuel;
        let mut failures: Vec<String> = Vec::new();
        for n in &self.def.nodes {
            if state[&n.function] == State::Failed {
                failures.push(format!("{}: failed before the run was resumed", n.function));
                self.skip_below(&n.function, &children, &mut state);
            }
        }
        let lease = Duration::from_millis(self.inner.settings.workflow_lease_ms);
        // The lease was just set (start or take-over): the first renewal is a third of it away.
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = tokio::task::JoinSet::new();
        loop {
            for node in &self.def.nodes {
                if running.len() >= self.def.concurrency as usize {
                    break;
                }
                let name = node.function.as_str();
                let ready = !self.cancel.is_cancelled()
                    && state[name] == State::Pending
                    && parents[name].iter().all(|p| matches!(state[*p], State::Succeeded(_)));
                if ready {
                    let input = self.input_of(&parents[name], &state);
                    state.insert(name.to_string(), State::Running);
                    let attempt = prior.failed.get(name).copied().unwrap_or(0) + 1;
                    running.spawn(self.attempt(name, attempt, input, Duration::ZERO));
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                _ = renew.tick() => {
                    if !self.renew(lease).await {
                        tracing::warn!(execution = %self.template.execution_id,
                            "another server took this workflow run over; leaving it");
                        return None;
                    }
                    continue;
                }
            };
            let Some(Ok((name, attempt, nested))) = joined else {
                continue;
            };
            let nested = nested.unwrap_or_else(|| Nested {
                result: Err(ErrorRecord::new(ErrorKind::Crash, "the sandbox worker panicked")),
                fuel_used: 0,
            });
            fuel += nested.fuel_used;
            let node = self.def.nodes.iter().find(|n| n.function == name).cloned();
            match (nested.result, node) {
                (Ok(output), _) => {
                    state.insert(name, State::Succeeded(output));
                }
                (Err(_), Some(node)) if attempt <= node.retries && !self.cancel.is_cancelled() => {
                    let delay = node.retry_delay_seconds * node.backoff_factor.powi(attempt as i32 - 1);
                    let input = self.input_of(&parents[name.as_str()], &state);
                    let delay = Duration::from_secs_f64(delay.clamp(0.0, 3600.0));
                    running.spawn(self.attempt(&name, attempt + 1, input, delay));
                }
                (Err(e), _) => {
                    failures.push(format!("{name}: {}", e.message));
                    state.insert(name.clone(), State::Failed);
                    self.skip_below(&name, &children, &mut state);
                }
            }
        }
        // A node still marked running here lost its task (a bug, not the function): the run
        // must not pass for succeeded.
        for (n, s) in &state {
            if *s == State::Running {
                failures.push(format!("{n}: its attempt stopped without an outcome"));
            }
        }
        if !self.renew(lease).await {
            return None; // taken over at the last moment: the new driver records the end
        }

        Some(self.finish(&state, failures, fuel).await)
    }

    /// Extend this server's lease; false when the run is no longer ours. A database hiccup
    /// keeps the run going (the lease is renewed well before it runs out).
    async fn renew(&self, lease: Duration) -> bool {
        let (store, id) = (&self.inner.store, &self.template.execution_id);
        let until = now_ms() + lease.as_millis() as i64;
        match store.renew_workflow_lease(id, &self.drive, until).await {
            Ok(mine) => mine,
            Err(e) => {
                tracing::warn!(execution = %id, error = %e, "could not renew a workflow lease");
                true
            }
        }
    }

    /// A node's input: `{"config": ...}` for a root, else each parent's output by name.
    fn input_of(&self, parents: &[&str], state: &BTreeMap<String, State>) -> Value {
        if parents.is_empty() {
            return json!({ "config": self.config });
        }
        let mut m = Map::new();
        for p in parents {
            if let Some(State::Succeeded(v)) = state.get(*p) {
                m.insert(p.to_string(), v.clone());
            }
        }
        Value::Object(m)
    }

    /// One attempt of a node on a sandbox worker, after `delay`.
    fn attempt(
        &self,
        name: &str,
        attempt: u32,
        input: Value,
        delay: Duration,
    ) -> impl std::future::Future<Output = Attempt> + Send + 'static {
        let mut tree = self.template.clone();
        let trigger = self.template.shared.trigger;
        tree.shared = Arc::new(Shared::new(trigger, Some(attempt as i64)));
        let timeout = self
            .def
            .nodes
            .iter()
            .find(|n| n.function == name)
            .and_then(|n| n.timeout_seconds)
            .map_or(Duration::from_secs(86_400), Duration::from_secs_f64);
        let (inner, name, cancel) = (self.inner.clone(), name.to_string(), self.cancel);
        async move {
            // A retry's wait ends early when the run is cancelled (the call then refuses to
            // start: its budget's handle is cancelled).
            let until = tokio::time::Instant::now() + delay;
            while tokio::time::Instant::now() < until && !cancel.is_cancelled() {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(left.min(Duration::from_millis(100))).await;
            }
            let budget = Budget {
                fuel: u64::MAX / 4,
                deadline: Instant::now() + timeout,
                cancel,
            };
            let function = name.clone();
            let nested = inner
                .workers
                .run(move || {
                    use crate::sandbox::Host as _;
                    tree.call(&function, input, budget)
                })
                .await;
            (name, attempt, nested)
        }
    }

    /// Record every pending descendant of a failed node as skipped (looking through ones
    /// already skipped: a resumed run may have lost some of their records).
    fn skip_below(&self, failed: &str, children: &BTreeMap<&str, Vec<&str>>, state: &mut BTreeMap<String, State>) {
        let mut stack: Vec<&str> = children.get(failed).cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            match state.get(n) {
                Some(State::Skipped) => {
                    stack.extend(children.get(n).cloned().unwrap_or_default());
                    continue;
                }
                Some(State::Pending) => {}
                _ => continue,
            }
            state.insert(n.to_string(), State::Skipped);
            let t = &self.template;
            let now = now_ms();
            let error = json!({"kind": "skipped", "message": format!("not run: its ancestor {failed} failed")});
            self.inner.recorder.send(Write::StartStep {
                tenant: t.tenant.clone(),
                step: NewStep {
                    id: uuid::Uuid::now_v7().to_string(),
                    execution_id: t.execution_id.clone(),
                    parent_id: Some(t.execution_id.clone()),
                    seq: t.seq.fetch_add(1, Ordering::Relaxed),
                    depth: 1,
                    function_name: n.to_string(),
                    function_version: None,
                    input: "null".into(),
                    started_at: now,
                },
                finish: Some(StepFinish {
                    status: CallStatus::Skipped,
                    output: None,
                    error: Some(error.to_string()),
                    stdout: String::new(),
                    stderr: String::new(),
                    fuel_used: 0,
                    duration_ms: 0.0,
                    finished_at: now,
                    activity: None,
                }),
            });
            stack.extend(children.get(n).cloned().unwrap_or_default());
        }
    }

    /// Record the run's end (committed before anyone is told) and release it.
    async fn finish(&self, state: &BTreeMap<String, State>, failures: Vec<String>, fuel: u64) -> InvokeResult {
        let t = &self.template;
        let outputs: Map<String, Value> = state
            .iter()
            .filter_map(|(k, s)| match s {
                State::Succeeded(v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect();
        let error = (!failures.is_empty()).then(|| {
            let skipped: Vec<&String> = state
                .iter()
                .filter(|(_, s)| **s == State::Skipped)
                .map(|(k, _)| k)
                .collect();
            ErrorRecord::new(
                ErrorKind::NodeFailed,
                format!("workflow failed: {}", failures.join("; ")),
            )
            .with("skipped", json!(skipped))
            .with("outputs", Value::Object(outputs.clone()))
        });
        // Cancelled before it could end: whatever its nodes did, the run says so.
        let cancelled = self.cancel.is_cancelled() && (error.is_some() || state.values().any(|s| *s == State::Pending));
        let error = match cancelled {
            true => Some(
                ErrorRecord::new(ErrorKind::Cancelled, "the workflow run was cancelled")
                    .with("outputs", Value::Object(outputs.clone())),
            ),
            false => error,
        };
        let status = match (cancelled, &error) {
            (true, _) => CallStatus::Cancelled,
            (false, None) => CallStatus::Succeeded,
            (false, Some(_)) => CallStatus::Failed,
        };
        let output = error.is_none().then_some(Value::Object(outputs));
        let finished_at = now_ms();
        let duration_ms = (finished_at - self.started_at).max(0) as f64;
        let finish = StepFinish {
            status,
            output: output.as_ref().map(Value::to_string),
            error: error.as_ref().map(|e| json!(e).to_string()),
            stdout: String::new(),
            stderr: String::new(),
            fuel_used: fuel.min(i64::MAX as u64) as i64,
            duration_ms,
            finished_at,
            activity: None,
        };
        let inner = &self.inner;
        inner.recorder.send(Write::FinishExecution {
            tenant: t.tenant.clone(),
            id: t.execution_id.clone(),
            finish,
            job: None,
        });
        if inner.recorder.flush(&t.execution_id).await {
            let closed = inner
                .store
                .finish_workflow_run(&t.execution_id, status.as_str(), Some(&self.drive))
                .await;
            if let Err(e) = closed {
                // The next server to look finds the execution ended and closes the run then.
                tracing::warn!(execution = %t.execution_id, error = %e, "could not close a workflow run");
            }
        }
        let event = json!({"step_id": t.execution_id, "status": status, "duration_ms": duration_ms});
        inner
            .events
            .publish(&t.tenant, &t.execution_id, "execution.finished", event);
        InvokeResult {
            execution_id: t.execution_id.clone(),
            status,
            output,
            error,
            duration_ms,
            fuel_used: fuel,
        }
    }
}
