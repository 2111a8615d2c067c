//! Executions: run a call tree in the sandbox, enforce schemas, depth, fuel and deadline,
//! and record the execution and one step per function call.

mod cancel;
mod capabilities;
pub mod code;
mod error;
mod live_log;
mod orchestrator;
mod queue;
mod quotas;
mod rate;
mod recorder;
pub mod session;
mod tree;
mod workers;
pub mod workflow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::config::Settings;
pub use crate::domain::OnInterrupt;
use crate::domain::{self, CallStatus, FunctionSettings, Target};
use crate::sandbox::{
    Budget, CallSpec, Cancel, ErrorKind, ErrorRecord, Isolation, Limits, Outcome, Sandbox, MAX_OUTPUT_BYTES, WASM_STACK,
};
use crate::store::{Function, NewStep, StepFinish, Store, Write};
pub use error::{Error, Result};
use queue::Claimed;
pub use queue::QueueStats;
use quotas::Limiter;
pub use quotas::{AtCap, Quotas};
use recorder::Recorder;
use tree::CallTree;
use workers::Workers;

/// How an execution was started, and by what (the webhook or schedule id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    /// `envelope`: the input is the whole request, whose headers the guest makes
    /// case-insensitive.
    Webhook {
        id: String,
        envelope: bool,
    },
    /// A schedule's run (`run_id`, its row): `attempt` 1 is the tick itself, later ones
    /// retries of `retry_of`.
    Schedule {
        id: String,
        attempt: i64,
        retry_of: Option<String>,
        run_id: String,
    },
    /// A workflow's manual run (`POST /workflows/{name}/run`); `id` is the workflow's.
    Workflow {
        id: String,
    },
    /// Code sent to run once (`POST /run`).
    Run,
    /// A cell run in session `id` (`POST /sessions/{id}/run`).
    Session {
        id: String,
    },
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Webhook { .. } => "webhook",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Workflow { .. } => "workflow",
            Trigger::Run => "run",
            Trigger::Session { .. } => "session",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Trigger::Manual | Trigger::Run => None,
            Trigger::Webhook { id, .. }
            | Trigger::Schedule { id, .. }
            | Trigger::Workflow { id }
            | Trigger::Session { id } => Some(id),
        }
    }

    /// Attempt number and first execution, for scheduled runs.
    pub fn attempt(&self) -> (Option<i64>, Option<String>) {
        match self {
            Trigger::Schedule { attempt, retry_of, .. } => (Some(*attempt), retry_of.clone()),
            _ => (None, None),
        }
    }
}

/// A started run of a function or a workflow (what webhooks and schedules start).
pub enum Launched {
    Function(Started),
    Workflow(workflow::WorkflowRun),
}

impl Launched {
    pub fn execution_id(&self) -> &str {
        match self {
            Launched::Function(s) => &s.execution_id,
            Launched::Workflow(w) => &w.execution_id,
        }
    }

    /// Wait for the run to end and its record to be committed.
    pub async fn wait(self) -> Result<InvokeResult> {
        match self {
            Launched::Function(s) => s.wait().await,
            Launched::Workflow(w) => w.wait().await,
        }
    }
}

/// What `invoke` answers.
#[derive(Debug, Serialize)]
pub struct InvokeResult {
    pub execution_id: String,
    pub status: CallStatus,
    pub output: Option<Value>,
    pub error: Option<ErrorRecord>,
    pub duration_ms: f64,
    pub fuel_used: u64,
}

/// A function version's compiled schemas.
#[derive(Default)]
struct Schemas {
    input: Option<jsonschema::Validator>,
    output: Option<jsonschema::Validator>,
}

/// What an execution runs: a stored function's current version, or code sent to run
/// (`script`, see `code`), with the schemas its input and output are checked against.
struct Unit {
    function: Function,
    schemas: Arc<Schemas>,
    script: bool,
    /// The input as the execution records it.
    recorded_input: String,
    /// Fields for a script's `begin` frame (files sent with a run).
    extras: Option<serde_json::Map<String, Value>>,
    /// The session whose interpreter runs this cell (held for the cell's whole run).
    session: Option<session::Cell>,
    /// Where the printed output goes as it is printed (`?stream=true`).
    stream: Option<Output>,
}

/// The receiving end of a streamed run's output: (`stdout` | `stderr`, text) chunks.
pub type Output = tokio::sync::mpsc::UnboundedSender<(&'static str, String)>;

/// An execution running here.
struct Flight {
    /// A workflow run (its nodes are executions of their own).
    workflow: bool,
    cancel: Cancel,
}

pub(crate) struct Inner {
    store: Store,
    recorder: Recorder,
    sandbox: Arc<Sandbox>,
    settings: Arc<Settings>,
    workers: Workers,
    rt: tokio::runtime::Handle,
    schemas: Mutex<HashMap<(String, i64), Arc<Schemas>>>,
    limiter: Limiter,
    events: Arc<crate::logs::Bus>,
    packages: Arc<crate::packages::Packages>,
    egress: Arc<crate::egress::Egress>,
    vault: Arc<crate::secrets::Vault>,
    /// This server's name in leases (workflow runs) and the scheduler's status.
    node_id: String,
    /// Executions running here, for a graceful shutdown to wait on and a cancel to stop.
    in_flight: Mutex<HashMap<String, Flight>>,
    /// Set when the server shuts down: no new execution starts.
    closing: std::sync::atomic::AtomicBool,
    queue: queue::QueueState,
    /// Sessions whose interpreter this server holds.
    sessions: session::Registry,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(
        store: Store,
        sandbox: Arc<Sandbox>,
        settings: Arc<Settings>,
        events: Arc<crate::logs::Bus>,
        packages: Arc<crate::packages::Packages>,
        (egress, vault): (Arc<crate::egress::Egress>, Arc<crate::secrets::Vault>),
        redis: Option<redis::Client>,
    ) -> anyhow::Result<Engine> {
        // Each level of nesting may use a full wasm stack on the worker's native stack.
        let depth = settings.max_call_depth as usize + 2;
        let stack = depth * (WASM_STACK + (1 << 20)) + (32 << 20);
        let workers = Workers::new(settings.sandbox_workers, stack)?;
        let rt = tokio::runtime::Handle::current();
        let recorder = Recorder::spawn(store.clone());
        let limiter = Limiter::new(store.clone(), settings.clone(), redis);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "maestro".into());
        let node_id = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let inner = Inner {
            node_id,
            events,
            packages,
            egress,
            vault,
            limiter,
            store,
            recorder,
            sandbox,
            settings,
            workers,
            rt,
            schemas: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
            queue: Default::default(),
            sessions: Default::default(),
        };
        Ok(Engine { inner: Arc::new(inner) })
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.inner.sandbox
    }

    pub fn metrics(&self) -> &crate::logs::metrics::Metrics {
        &self.inner.events.metrics
    }

    /// Check that `code` compiles and defines `def <name>(input)`; a 422 says what is wrong.
    pub async fn check_code(&self, name: &str, code: &str) -> Result<()> {
        let (sandbox, name2, code) = (self.inner.sandbox.clone(), name.to_string(), code.to_string());
        let result = self.inner.workers.run(move || sandbox.check(&name2, &code)).await;
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) if matches!(e.kind, ErrorKind::SyntaxError | ErrorKind::InvalidCode) => {
                let mut detail = serde_json::to_value(&e).unwrap_or(Value::Null);
                detail["field"] = json!("code");
                Err(Error::input(
                    "code",
                    format!("code for {name} is not valid: {}", e.message),
                    json!([detail]),
                ))
            }
            Some(Err(e)) => Err(Error::input(
                "code",
                format!("code for {name} could not be checked: {}", e.message),
                json!([{"field": "code", "kind": e.kind, "message": e.message}]),
            )),
            None => Err(Error::Internal(anyhow::anyhow!("code check panicked"))),
        }
    }

    /// Run a function as a new execution and wait for it to finish.
    pub async fn invoke(&self, tenant: &str, name: &str, input: Value, trigger: Trigger) -> Result<InvokeResult> {
        self.start(tenant, name, input, trigger).await?.wait().await
    }

    /// Start a function as a new execution: check its input, record the start and hand the
    /// run to a sandbox worker. The run goes on (and records its end) even if the returned
    /// handle is dropped, so a client that disconnects loses nothing.
    pub async fn start(&self, tenant: &str, name: &str, input: Value, trigger: Trigger) -> Result<Started> {
        self.launch(tenant, name, input, trigger, None).await
    }

    /// `start`, or with `claimed` the run of a queued job whose execution row exists (the
    /// claim marked it running): it is updated rather than inserted, and its end is recorded
    /// with the job's release.
    async fn launch(
        &self,
        tenant: &str,
        name: &str,
        input: Value,
        trigger: Trigger,
        claimed: Option<&Claimed>,
    ) -> Result<Started> {
        let inner = &self.inner;
        inner.check_open()?;
        let function = inner.store.tenant(tenant).get_function_cached(name).await?;
        let schemas = inner.schemas_for(&function)?;
        check_input(&schemas, name, &input)?;
        let unit = Unit {
            recorded_input: input.to_string(),
            function,
            schemas,
            script: false,
            extras: None,
            session: None,
            stream: None,
        };
        self.launch_unit(tenant, unit, input, trigger, claimed).await
    }

    /// Record the start of `unit`'s execution and hand it to a sandbox worker.
    async fn launch_unit(
        &self,
        tenant: &str,
        unit: Unit,
        input: Value,
        trigger: Trigger,
        claimed: Option<&Claimed>,
    ) -> Result<Started> {
        let inner = &self.inner;
        let Unit {
            function,
            schemas,
            script,
            recorded_input,
            mut extras,
            session,
            stream,
        } = unit;
        let name = function.name.as_str();
        let packages = inner.packages.mount(tenant).await?;
        // A claimed job at the cap goes back to the queue rather than hold a worker waiting.
        let at_cap = if claimed.is_some() { AtCap::Refuse } else { AtCap::Wait };
        let (admission, quotas) = inner.limiter.admit(tenant, at_cap).await?;
        let (isolation, timeout, fuel, memory) = inner.limits(&function.current.content.settings);
        let fuel = quotas.max_fuel_per_execution.map_or(fuel, |cap| fuel.min(cap));
        let started = Instant::now();
        let deadline = started + timeout;
        let execution_id = claimed.map_or_else(|| uuid::Uuid::now_v7().to_string(), |c| c.execution_id.clone());
        let job = claimed.map(|c| c.job_id.clone());
        // The root call is the execution itself: its step id is the execution id.
        let root = NewStep {
            id: execution_id.clone(),
            execution_id: execution_id.clone(),
            parent_id: None,
            seq: 0,
            depth: 0,
            function_name: name.to_string(),
            function_version: Some(function.current.version),
            input: recorded_input,
            started_at: crate::store::now_ms(),
        };
        let deadline_ms = root.started_at + timeout.as_millis() as i64;
        let cancel = inner.track(&execution_id, false);
        inner.recorder.send(match claimed {
            None => Write::StartExecution {
                tenant: tenant.to_string(),
                trigger: trigger.as_str(),
                trigger_id: trigger.id().map(str::to_string),
                attempt: trigger.attempt(),
                root: root.clone(),
                deadline_at: deadline_ms,
                finish: None,
            },
            Some(_) => Write::RunQueued {
                tenant: tenant.to_string(),
                id: execution_id.clone(),
                function_version: function.current.version,
                deadline_at: deadline_ms,
            },
        });
        let started_event = json!({"step_id": execution_id, "function": name, "version": function.current.version,
            "depth": 0, "trigger": trigger.as_str(), "trigger_id": trigger.id()});
        inner
            .events
            .publish(tenant, &execution_id, "execution.started", started_event);

        let attempt = claimed.map(|c| c.attempt).or(trigger.attempt().0);
        let mut shared = capabilities::Shared::new(trigger.as_str(), attempt);
        if let Some(tx) = stream {
            shared.stream = Some(capabilities::OutputStream {
                tx,
                cap: inner.settings.max_log_bytes,
                sent: Default::default(),
            });
            extras
                .get_or_insert_with(Default::default)
                .insert("stream".into(), Value::Bool(true));
        }
        let tree = CallTree::root(
            self.inner.clone(),
            tenant,
            &execution_id,
            (name, function.current.version),
            shared,
            packages.clone(),
        );
        let root_activity = tree.activity.clone();
        let job_inner = self.inner.clone();
        let job_tenant = tenant.to_string();
        let webhook = matches!(trigger, Trigger::Webhook { envelope: true, .. });
        let trigger_kind = trigger.as_str();
        let limits = Limits {
            budget: Budget { fuel, deadline, cancel },
            memory_bytes: memory,
        };
        // The job records the end itself, so nobody has to wait for it.
        let recorder = inner.recorder.clone();
        let (record_tenant, record_id, record_job) = (tenant.to_string(), execution_id.clone(), job.clone());
        // The execution's span follows it onto the worker thread (and its nested calls).
        let span = tracing::info_span!(parent: tracing::Span::current(), "execution",
            id = %execution_id, tenant = %tenant, function = %name, trigger = trigger_kind);
        let done = inner.workers.submit(move || {
            let _span = span.enter();
            // Counted against the tenant's concurrency until the run ends (released below,
            // before its end is recorded: whoever sees it finished may start another).
            let admission = admission;
            let v = &function.current.content;
            let spec = CallSpec {
                tenant: &job_tenant,
                function: &function.name,
                version: function.current.version,
                code: &v.code,
                code_key: &format!("{}:{}", function.id, v.code_sha256),
                input: &input,
                isolation,
                limits,
                webhook,
                packages: packages.as_deref(),
                script,
                extras: extras.as_ref(),
            };
            let outcome = match session {
                Some(cell) => cell.run(&job_inner, &spec, Box::new(tree)),
                None => job_inner.sandbox.run(&spec, Box::new(tree)),
            };
            let mut outcome = check_output(outcome, &schemas);
            cancel::settle(&mut outcome.result, cancel);
            root_activity.redact(&mut outcome);
            let mut finish = finish_record(&outcome, started.elapsed().as_secs_f64() * 1000.0);
            finish.activity = root_activity.to_json();
            let (status, duration_ms) = (finish.status, finish.duration_ms);
            tracing::debug!(status = %status, duration_ms, fuel = outcome.fuel_used, "execution finished");
            let events = &job_inner.events;
            let to = live_log::Target {
                events,
                tenant: &record_tenant,
                execution_id: &record_id,
                step_id: &record_id,
            };
            root_activity.live_end(&outcome.stdout, &outcome.stderr, &to);
            let done = finished_event(&record_id, &function.name, 0, &outcome, &finish);
            events.publish(&record_tenant, &record_id, "execution.finished", done);
            let m = &events.metrics;
            let labels = vec![
                ("function", function.name.clone()),
                ("trigger", trigger_kind.to_string()),
                ("status", status.to_string()),
            ];
            m.add(
                "maestro_invocations_total",
                "Executions by function, trigger and status.",
                labels,
                1.0,
            );
            let by_trigger = vec![("trigger", trigger_kind.to_string())];
            m.observe(
                "maestro_execution_duration_seconds",
                "Execution wall time.",
                by_trigger.clone(),
                duration_ms / 1000.0,
            );
            m.add(
                "maestro_fuel_used_total",
                "Fuel (wasm instructions) used by executions.",
                by_trigger,
                outcome.fuel_used as f64,
            );
            drop(admission);
            recorder.send(Write::FinishExecution {
                tenant: record_tenant,
                id: record_id.clone(),
                finish,
                job: record_job,
            });
            // After the finish is queued: a shutdown that sees it gone flushes it too.
            job_inner.untrack(&record_id, cancel);
            (outcome, status, duration_ms)
        });
        Ok(Started {
            execution_id,
            job,
            tenant: tenant.to_string(),
            started,
            done,
            inner: self.inner.clone(),
        })
    }

    /// Start what a webhook or schedule targets. A workflow takes the input as its run
    /// config (merged over its default), so the input must be an object.
    pub async fn start_target(
        &self,
        tenant: &str,
        target: &Target,
        input: Value,
        trigger: Trigger,
    ) -> Result<Launched> {
        match target {
            Target::Function(name) => Ok(Launched::Function(self.start(tenant, name, input, trigger).await?)),
            Target::Workflow(name) => {
                let wf = self.inner.store.tenant(tenant).get_workflow(name).await?;
                let config = workflow::merge_config(&wf.definition.config, Some(&input)).map_err(Error::Malformed)?;
                Ok(Launched::Workflow(
                    self.run_workflow(tenant, &wf, config, trigger).await?,
                ))
            }
        }
    }

    /// Check `input` against the input schema of `name`'s current version (a schedule's
    /// stored input is checked when it is saved, not first when it fires).
    pub async fn check_input(&self, tenant: &str, name: &str, input: &Value) -> Result<()> {
        let function = self.inner.store.tenant(tenant).get_function(name).await?;
        check_input(&*self.inner.schemas_for(&function)?, name, input)
    }

    /// A tenant's quotas in force.
    pub async fn quotas_of(&self, tenant: &str) -> Result<Quotas> {
        self.inner.limiter.quotas(tenant).await
    }

    /// How many of the tenant's executions run on this server now (its concurrency in use).
    pub fn running(&self, tenant: &str) -> u32 {
        self.inner.limiter.running(tenant)
    }

    /// Read a tenant's quotas again on next use (an admin changed them).
    pub fn forget_quotas(&self, tenant: &str) {
        self.inner.limiter.forget(tenant);
    }

    /// How many executions run on this server now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Shutting down: refuse new executions, let running ones finish for up to `grace`,
    /// commit everything recorded, then record the functions still running as interrupted
    /// with `reason` (workflow runs still going keep their lease: another server's resumer
    /// takes them over when it lapses). Answers (finished meanwhile, interrupted).
    pub async fn drain(&self, grace: Duration, reason: &str) -> (usize, usize) {
        self.inner.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        let before = self.in_flight();
        let until = Instant::now() + grace;
        // Claimed jobs that had not started yet give themselves back (they see the server
        // closing) before their leases are dropped below.
        while (self.in_flight() > 0 || self.jobs_held() > 0) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<String> = {
            let mut map = self.inner.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.drain()
                // Handles stay set: a run past the grace may still be stopped by a cancel
                // already delivered (the process ends soon; the set goes with it).
                .filter(|(_, f)| !f.workflow)
                .map(|(id, _)| id)
                .collect()
        };
        // Their starts (and every finish sent so far) must be in the database first.
        self.inner.recorder.flush("").await;
        if !left.is_empty() {
            if let Err(e) = self.inner.store.interrupt(&left, reason).await {
                tracing::error!(error = %e, count = left.len(), "could not record interrupted executions");
            }
        }
        self.stop_sessions().await;
        // Queued jobs still running here are taken back now rather than when the lease runs out.
        if let Err(e) = self.inner.store.drop_leases(&self.inner.node_id).await {
            tracing::error!(error = %e, "could not release this server's queued jobs");
        }
        (before.saturating_sub(left.len()), left.len())
    }

    /// Wait until everything recorded so far about `execution_id` is committed.
    pub async fn flush(&self, execution_id: &str) -> bool {
        self.inner.recorder.flush(execution_id).await
    }
}

/// An execution handed to a worker.
pub struct Started {
    pub execution_id: String,
    /// The queued job it runs, if any.
    job: Option<String>,
    tenant: String,
    started: Instant,
    done: oneshot::Receiver<(Outcome, CallStatus, f64)>,
    inner: Arc<Inner>,
}

impl Started {
    /// Wait for the run to end and its record to be committed.
    pub async fn wait(self) -> Result<InvokeResult> {
        Ok(self.wait_printed().await?.0)
    }

    /// `wait`, with what the run printed (stdout, stderr) as captured.
    pub async fn wait_printed(self) -> Result<(InvokeResult, (String, String))> {
        let Started {
            execution_id,
            job,
            tenant,
            started,
            done,
            inner,
        } = self;
        let (outcome, status, duration_ms) = match done.await {
            Ok(done) => done,
            Err(_) => {
                let outcome = crashed("the sandbox worker panicked");
                let finish = finish_record(&outcome, started.elapsed().as_secs_f64() * 1000.0);
                let duration_ms = finish.duration_ms;
                let done = finished_event(&execution_id, "", 0, &outcome, &finish);
                inner.events.publish(&tenant, &execution_id, "execution.finished", done);
                inner.recorder.send(Write::FinishExecution {
                    tenant,
                    id: execution_id.clone(),
                    finish,
                    job,
                });
                inner.untrack(&execution_id, Cancel::NEVER);
                (outcome, CallStatus::Failed, duration_ms)
            }
        };
        if !inner.recorder.flush(&execution_id).await {
            return Err(Error::NotRecorded(execution_id));
        }
        let (output, error) = match outcome.result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let result = InvokeResult {
            execution_id,
            status,
            output,
            error,
            duration_ms,
            fuel_used: outcome.fuel_used,
        };
        Ok((result, (outcome.stdout, outcome.stderr)))
    }
}

impl Inner {
    /// Refuse to start anything once the server shuts down.
    fn check_open(&self) -> Result<()> {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// Note an execution as running here (a workflow run or not), answering the handle that
    /// cancels its calls.
    fn track(&self, execution_id: &str, workflow: bool) -> Cancel {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let cancel = Cancel::new();
        if let Some(old) = map.insert(execution_id.to_string(), Flight { workflow, cancel }) {
            old.cancel.release();
        }
        cancel
    }

    /// Note an execution as ended here, if `cancel` is still its handle (a workflow run taken
    /// over by this server's own resumer has a newer one, which the old drive must not
    /// remove); `Cancel::NEVER` removes whatever is there.
    fn untrack(&self, execution_id: &str, cancel: Cancel) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(execution_id)
            .is_some_and(|f| cancel == Cancel::NEVER || f.cancel == cancel)
        {
            if let Some(f) = map.remove(execution_id) {
                f.cancel.release();
            }
        }
    }

    /// Stop the executions among `ids` that run here; answers how many there were.
    fn cancel_local(&self, ids: &[String]) -> usize {
        let map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for id in ids {
            if let Some(f) = map.get(id) {
                f.cancel.cancel();
                n += 1;
            }
        }
        n
    }

    /// Compiled schemas of a function version, cached (versions are immutable).
    fn schemas_for(&self, f: &Function) -> Result<Arc<Schemas>> {
        let key = (f.id.clone(), f.current.version);
        if let Some(s) = self.schemas.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(s.clone());
        }
        let compile = |field: &str, s: &Option<Value>| {
            s.as_ref()
                .map(|s| domain::compile_schema(field, s))
                .transpose()
                .map_err(Error::InputInvalid)
        };
        let schemas = Arc::new(Schemas {
            input: compile("input_schema", &f.current.content.input_schema)?,
            output: compile("output_schema", &f.current.content.output_schema)?,
        });
        let mut cache = self.schemas.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, schemas.clone());
        Ok(schemas)
    }

    /// A function's isolation, timeout, fuel and memory: its own settings or the defaults.
    fn limits(&self, s: &FunctionSettings) -> (Isolation, Duration, u64, usize) {
        let cfg = &self.settings;
        let timeout = s.timeout_seconds.unwrap_or(cfg.function_timeout);
        (
            s.isolation.unwrap_or(cfg.default_isolation),
            Duration::from_secs_f64(timeout.max(0.001)),
            s.fuel
                .or((cfg.function_fuel > 0).then_some(cfg.function_fuel))
                .unwrap_or(crate::sandbox::UNMETERED_FUEL),
            (s.memory_mb.unwrap_or(cfg.function_memory_mb) << 20) as usize,
        )
    }
}

fn check_input(schemas: &Schemas, name: &str, input: &Value) -> Result<()> {
    if let Some(v) = &schemas.input {
        let errors = domain::violations(v, input);
        if !errors.is_empty() {
            return Err(Error::input(
                "input",
                format!("input does not match the input schema of {name}"),
                json!(errors),
            ));
        }
    }
    Ok(())
}

/// The fields of a `step.finished` / `execution.finished` event.
fn finished_event(step_id: &str, function: &str, depth: i64, outcome: &Outcome, finish: &StepFinish) -> Value {
    let mut v = json!({"step_id": step_id, "function": function, "depth": depth, "status": finish.status,
                       "duration_ms": finish.duration_ms, "fuel_used": outcome.fuel_used});
    if let Err(e) = &outcome.result {
        v["error"] = json!({"kind": e.kind, "message": e.message, "type": e.exc_type});
    }
    v
}

fn crashed(message: &str) -> Outcome {
    Outcome {
        result: Err(ErrorRecord::new(ErrorKind::Crash, message)),
        stdout: String::new(),
        stderr: String::new(),
        fuel_used: 0,
        reused: false,
    }
}

/// Enforce the output schema and size on a successful outcome.
fn check_output(mut outcome: Outcome, schemas: &Schemas) -> Outcome {
    if let Ok(output) = &outcome.result {
        let size = output.to_string().len();
        if size > MAX_OUTPUT_BYTES {
            outcome.result = Err(ErrorRecord::new(
                ErrorKind::InvalidOutput,
                format!("the output is {size} bytes; the limit is {MAX_OUTPUT_BYTES}"),
            ));
        } else if let Some(v) = &schemas.output {
            let errors = domain::violations(v, output);
            if !errors.is_empty() {
                outcome.result = Err(ErrorRecord::new(
                    ErrorKind::OutputValidation,
                    "the output does not match the output schema",
                )
                .with("errors", errors)
                .with("output", output.clone()));
            }
        }
    }
    outcome
}

/// An error record as stored: at most ~256 KiB whatever the guest sent (message and
/// traceback are cut, anything extra dropped).
fn error_text(e: &ErrorRecord) -> String {
    const LIMIT: usize = 256 << 10;
    let text = serde_json::to_string(e).unwrap_or_default();
    if text.len() <= LIMIT {
        return text;
    }
    let cut = |s: &str| clean_text(&s[..floor_char(s, 64 << 10)]);
    let small = ErrorRecord {
        kind: e.kind,
        message: cut(&e.message),
        exc_type: e.exc_type.as_deref().map(cut),
        traceback: e.traceback.as_deref().map(cut),
        extra: Default::default(),
    };
    serde_json::to_string(&small).unwrap_or_default()
}

/// The largest char boundary at or below `max`.
fn floor_char(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Captured output as storable text: NUL bytes (which PostgreSQL refuses in text) become
/// U+FFFD, and at most `MAX_LOG_TEXT` bytes are kept whatever the guest claims.
fn clean_text(s: &str) -> String {
    const MAX_LOG_TEXT: usize = 4 << 20;
    s[..floor_char(s, MAX_LOG_TEXT)].replace('\0', "\u{FFFD}")
}

fn finish_record(outcome: &Outcome, duration_ms: f64) -> StepFinish {
    let (status, output, error) = match &outcome.result {
        Ok(v) => (CallStatus::Succeeded, Some(v.to_string()), None),
        Err(e) if e.kind == ErrorKind::Cancelled => (CallStatus::Cancelled, None, Some(error_text(e))),
        Err(e) => (CallStatus::Failed, None, Some(error_text(e))),
    };
    StepFinish {
        status,
        output,
        error,
        stdout: clean_text(&outcome.stdout),
        stderr: clean_text(&outcome.stderr),
        fuel_used: outcome.fuel_used as i64,
        duration_ms,
        finished_at: crate::store::now_ms(),
        activity: None,
    }
}
