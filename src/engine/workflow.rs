//! Running a workflow: one execution (trigger `workflow`), each node attempt a step under
//! it. Nodes whose parents all succeeded run, up to the workflow's concurrency at once, on
//! the sandbox workers; a failed node is retried per its policy (each attempt its own step,
//! with `maestro.context.attempt`), then fails the run and its descendants are recorded as
//! `skipped`. Independent branches still finish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::capabilities::Shared;
use super::tree::CallTree;
use super::{Engine, Inner};
use crate::error::ApiError;
use crate::sandbox::{Budget, ErrorKind, ErrorRecord, Nested};
use crate::store::{NewStep, StepFinish, Workflow, Write};
use crate::workflows::Definition;

/// The longest a workflow run may take in all (the sweeper's deadline for it).
const RUN_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// A started run; `done` carries its final status and output.
pub struct WorkflowRun {
    pub execution_id: String,
    pub done: oneshot::Receiver<(&'static str, Value, Option<ErrorRecord>)>,
}

/// The run's config: the workflow's default with the run's own keys over it.
pub fn merge_config(base: &Value, run: Option<&Value>) -> Result<Value, ApiError> {
    let mut out = base.as_object().cloned().unwrap_or_default();
    match run {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => out.extend(m.clone()),
        Some(_) => return Err(ApiError::invalid("config", "config must be a JSON object")),
    }
    Ok(Value::Object(out))
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Pending,
    Running,
    Succeeded(Value),
    Failed,
    Skipped,
}

impl Engine {
    pub async fn run_workflow(&self, tenant: &str, wf: &Workflow, config: Value) -> Result<WorkflowRun, ApiError> {
        let inner = &self.inner;
        let packages = inner.packages.mount(tenant).await?;
        let (admission, _) = inner.limiter.admit(tenant).await?;
        let execution_id = uuid::Uuid::now_v7().to_string();
        let root = NewStep {
            id: execution_id.clone(),
            execution_id: execution_id.clone(),
            parent_id: None,
            seq: 0,
            depth: 0,
            function_name: wf.name.clone(),
            function_version: Some(wf.version),
            input: json!({ "config": config }).to_string(),
            started_at: crate::store::now_ms(),
        };
        inner.recorder.send(Write::StartExecution {
            tenant: tenant.to_string(),
            trigger: "workflow",
            trigger_id: Some(wf.id.clone()),
            attempt: (None, None),
            root: root.clone(),
            deadline_at: root.started_at + RUN_LIMIT.as_millis() as i64,
            finish: None,
        });
        let started = json!({"step_id": execution_id, "workflow": wf.name, "version": wf.version, "depth": 0,
                             "trigger": "workflow", "trigger_id": wf.id});
        inner
            .events
            .publish(tenant, &execution_id, "execution.started", started);
        let template = CallTree::root(
            inner.clone(),
            tenant,
            &execution_id,
            (&wf.name, wf.version),
            Shared::new("workflow", None),
            packages,
        );
        let (tx, done) = oneshot::channel();
        let run = Orchestrator {
            inner: inner.clone(),
            template,
            def: wf.definition.clone(),
            config,
            started: Instant::now(),
        };
        tokio::spawn(async move {
            let _admission = admission;
            let _ = tx.send(run.run().await);
        });
        Ok(WorkflowRun { execution_id, done })
    }
}

struct Orchestrator {
    inner: Arc<Inner>,
    template: CallTree,
    def: Definition,
    config: Value,
    started: Instant,
}

type Attempt = (String, u32, Option<Nested>);

impl Orchestrator {
    async fn run(self) -> (&'static str, Value, Option<ErrorRecord>) {
        let parents = self.def.parents();
        let children = self.def.children();
        let mut state: BTreeMap<String, State> = self
            .def
            .nodes
            .iter()
            .map(|n| (n.function.clone(), State::Pending))
            .collect();
        let mut running = tokio::task::JoinSet::new();
        let mut fuel = 0u64;
        let mut failures: Vec<String> = Vec::new();
        loop {
            for node in &self.def.nodes {
                if running.len() >= self.def.concurrency as usize {
                    break;
                }
                let name = node.function.as_str();
                let ready = state[name] == State::Pending
                    && parents[name].iter().all(|p| matches!(state[*p], State::Succeeded(_)));
                if ready {
                    let input = self.input_of(name, &parents[name], &state);
                    state.insert(name.to_string(), State::Running);
                    running.spawn(self.attempt(name, 1, input, Duration::ZERO));
                }
            }
            let Some(joined) = running.join_next().await else { break };
            let Ok((name, attempt, nested)) = joined else { continue };
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
                (Err(_), Some(node)) if attempt <= node.retries => {
                    let delay = node.retry_delay_seconds * node.backoff_factor.powi(attempt as i32 - 1);
                    let input = self.input_of(&name, &parents[name.as_str()], &state);
                    running.spawn(self.attempt(&name, attempt + 1, input, Duration::from_secs_f64(delay.min(3600.0))));
                }
                (Err(e), _) => {
                    failures.push(format!("{name}: {}", e.message));
                    state.insert(name.clone(), State::Failed);
                    self.skip_below(&name, &children, &mut state);
                }
            }
        }
        self.finish(&state, failures, fuel)
    }

    /// A node's input: `{"config": ...}` for a root, else each parent's output by name.
    fn input_of(&self, _name: &str, parents: &[&str], state: &BTreeMap<String, State>) -> Value {
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
        tree.shared = Arc::new(Shared::new("workflow", Some(attempt as i64)));
        let timeout = self
            .def
            .nodes
            .iter()
            .find(|n| n.function == name)
            .and_then(|n| n.timeout_seconds)
            .map_or(Duration::from_secs(86_400), Duration::from_secs_f64);
        let (inner, name) = (self.inner.clone(), name.to_string());
        async move {
            tokio::time::sleep(delay).await;
            let budget = Budget {
                fuel: u64::MAX / 4,
                deadline: Instant::now() + timeout,
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

    /// Record every descendant of a failed node as skipped.
    fn skip_below(&self, failed: &str, children: &BTreeMap<&str, Vec<&str>>, state: &mut BTreeMap<String, State>) {
        let mut stack: Vec<&str> = children.get(failed).cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) || state.get(n) != Some(&State::Pending) {
                continue;
            }
            state.insert(n.to_string(), State::Skipped);
            let t = &self.template;
            let now = crate::store::now_ms();
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
                    status: "skipped",
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

    fn finish(
        &self,
        state: &BTreeMap<String, State>,
        failures: Vec<String>,
        fuel: u64,
    ) -> (&'static str, Value, Option<ErrorRecord>) {
        let t = &self.template;
        let outputs: Map<String, Value> = state
            .iter()
            .filter_map(|(k, s)| match s {
                State::Succeeded(v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect();
        let (status, error) = match failures.is_empty() {
            true => ("succeeded", None),
            false => {
                let skipped: Vec<&String> = state
                    .iter()
                    .filter(|(_, s)| **s == State::Skipped)
                    .map(|(k, _)| k)
                    .collect();
                let e = ErrorRecord::new(
                    ErrorKind::NodeFailed,
                    format!("workflow failed: {}", failures.join("; ")),
                )
                .with("skipped", json!(skipped));
                ("failed", Some(e))
            }
        };
        let output = Value::Object(outputs);
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let finish = StepFinish {
            status,
            output: (status == "succeeded").then(|| output.to_string()),
            error: error.as_ref().map(|e| json!(e).to_string()),
            stdout: String::new(),
            stderr: String::new(),
            fuel_used: fuel.min(i64::MAX as u64) as i64,
            duration_ms,
            finished_at: crate::store::now_ms(),
            activity: None,
        };
        let event = json!({"step_id": t.execution_id, "status": status, "duration_ms": duration_ms});
        self.inner
            .events
            .publish(&t.tenant, &t.execution_id, "execution.finished", event);
        self.inner.recorder.send(Write::FinishExecution {
            tenant: t.tenant.clone(),
            id: t.execution_id.clone(),
            finish,
        });
        (status, output, error)
    }
}
