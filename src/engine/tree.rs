//! The host side of one call in an execution's tree: resolves bare names, runs nested calls
//! (same tenant only, schemas enforced, depth limited, fuel and deadline inherited) and
//! records each as a step. Runs on a sandbox worker thread, so database work blocks on the
//! runtime handle.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::capabilities::{Activity, Shared};
use super::{cancel, check_output, finish_record, Inner};
use crate::domain::{self, FunctionName};
use crate::sandbox::{Budget, CallSpec, ErrorKind, ErrorRecord, Host, Limits, Nested, PackageMount};
use crate::store::{NewStep, StoreError, Write};

/// Cloned for each branch of a `gather`: branches share the step they run under, the
/// execution's counters and the activity log.
#[derive(Clone)]
pub(super) struct CallTree {
    pub(super) inner: Arc<Inner>,
    pub tenant: String,
    pub(super) execution_id: String,
    /// The step of the function running at this level.
    pub(super) step_id: String,
    pub(super) depth: u32,
    /// The function running at this level.
    pub(super) function: String,
    pub(super) version: i64,
    pub(super) shared: Arc<Shared>,
    /// What this level did (requests, secret reads, log lines), recorded on its step.
    pub(super) activity: Activity,
    /// Step order within the execution, shared by the whole tree.
    pub(super) seq: Arc<AtomicI64>,
    /// The tenant's packages, fixed for the whole execution.
    packages: Option<Arc<PackageMount>>,
}

impl CallTree {
    /// The root of an execution: `function` at `version`, started by `shared.trigger`.
    pub fn root(
        inner: Arc<Inner>,
        tenant: &str,
        execution_id: &str,
        (function, version): (&str, i64),
        shared: Shared,
        packages: Option<Arc<PackageMount>>,
    ) -> CallTree {
        CallTree {
            inner,
            tenant: tenant.to_string(),
            execution_id: execution_id.to_string(),
            step_id: execution_id.to_string(),
            depth: 0,
            function: function.to_string(),
            version,
            shared: Arc::new(shared),
            activity: Activity::default(),
            seq: Arc::new(AtomicI64::new(1)),
            packages,
        }
    }

    pub(super) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }

    fn fail(&self, kind: ErrorKind, message: String) -> Nested {
        Nested {
            result: Err(ErrorRecord::new(kind, message)),
            fuel_used: 0,
        }
    }
}

/// Gathered calls of one execution running on threads of their own at once.
pub(super) const GATHER_PARALLEL: usize = 8;

impl Host for CallTree {
    /// Each call on a thread of its own (at most [`GATHER_PARALLEL`] at once), with a stack
    /// for the levels of nesting still allowed below this one.
    fn gather(&mut self, calls: Vec<(String, Value)>, budget: Budget) -> Vec<Nested> {
        let share = Budget {
            fuel: budget.fuel / calls.len().max(1) as u64,
            ..budget
        };
        let levels = (self.inner.settings.max_call_depth.saturating_sub(self.depth) + 2) as usize;
        let stack = levels * (crate::sandbox::WASM_STACK + (1 << 20)) + (8 << 20);
        let span = tracing::Span::current();
        let mut out = Vec::with_capacity(calls.len());
        let mut rest = calls.as_slice();
        while !rest.is_empty() {
            // Threads are shared by the whole execution (gathers inside gathers included);
            // with none free, the next call runs here, on this thread.
            let slots = self.shared.reserve_threads(rest.len().min(GATHER_PARALLEL));
            if slots == 0 {
                let (name, input) = &rest[0];
                out.push(self.call(name, input.clone(), share));
                rest = &rest[1..];
                continue;
            }
            let (chunk, tail) = rest.split_at(slots);
            rest = tail;
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(name, input)| {
                        let (mut branch, span) = (self.clone(), span.clone());
                        std::thread::Builder::new()
                            .name("maestro-gather".into())
                            .stack_size(stack)
                            .spawn_scoped(scope, move || {
                                let _span = span.enter();
                                branch.call(name, input.clone(), share)
                            })
                    })
                    .collect();
                for h in handles {
                    out.push(match h.map(|h| h.join()) {
                        Ok(Ok(n)) => n,
                        _ => self.fail(ErrorKind::Crash, "a gathered call could not run".into()),
                    });
                }
            });
            self.shared.release_threads(slots);
        }
        out
    }

    fn capability(&mut self, op: &str, frame: &Value, deadline: Instant) -> Value {
        self.use_capability(op, frame, deadline)
    }

    fn resolve(&mut self, name: &str) -> bool {
        if FunctionName::parse(name).is_err() {
            return false;
        }
        let shared = self.shared.clone();
        shared.resolve_name(name, || {
            self.block_on(self.inner.store.tenant(&self.tenant).function_exists(name))
                .unwrap_or(false)
        })
    }

    fn call(&mut self, name: &str, input: Value, budget: Budget) -> Nested {
        let inner = self.inner.clone();
        if budget.cancel.is_cancelled() {
            return self.fail(ErrorKind::Cancelled, "the execution was cancelled".into());
        }
        if FunctionName::parse(name).is_err() {
            return self.fail(ErrorKind::NotFound, format!("no function named {name:?}"));
        }
        let size = input.to_string().len();
        if size > inner.settings.max_input_bytes {
            let limit = inner.settings.max_input_bytes;
            return self.fail(
                ErrorKind::InputValidation,
                format!("the input to {name} is {size} bytes; the limit is {limit}"),
            );
        }
        let calls = self.seq.load(Ordering::Relaxed);
        let max_calls = inner.settings.max_calls_per_execution as i64;
        if calls > max_calls {
            return self.fail(
                ErrorKind::CallLimit,
                format!("this execution already made {max_calls} calls; that is the limit"),
            );
        }
        let max = inner.settings.max_call_depth;
        if self.depth + 1 > max {
            return self.fail(
                ErrorKind::DepthLimit,
                format!(
                    "calling {name} would nest {} calls deep; the limit is {max}",
                    self.depth + 1
                ),
            );
        }
        // Known names come from this execution's memory; unknown ones count as look-ups, so a
        // guest calling made-up names in a loop cannot keep the database busy.
        if !self.resolve(name) {
            return self.fail(ErrorKind::NotFound, format!("no function named {name}"));
        }
        let function = match self.block_on(inner.store.tenant(&self.tenant).get_function_cached(name)) {
            Ok(f) => f,
            Err(StoreError::NotFound(_)) => return self.fail(ErrorKind::NotFound, format!("no function named {name}")),
            Err(e) => return self.fail(ErrorKind::Crash, format!("looking up {name}: {e}")),
        };
        let step = NewStep {
            id: uuid::Uuid::now_v7().to_string(),
            execution_id: self.execution_id.clone(),
            parent_id: Some(self.step_id.clone()),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            depth: i64::from(self.depth + 1),
            function_name: name.to_string(),
            function_version: Some(function.current.version),
            input: input.to_string(),
            started_at: crate::store::now_ms(),
        };
        inner.recorder.send(Write::StartStep {
            tenant: self.tenant.clone(),
            step: step.clone(),
            finish: None,
        });
        let started_event = json!({"step_id": step.id, "parent_id": self.step_id, "function": name,
                                   "version": function.current.version, "depth": step.depth});
        inner
            .events
            .publish(&self.tenant, &self.execution_id, "step.started", started_event);
        let span = tracing::info_span!("step", id = %step.id, function = %name, depth = step.depth);
        let _span = span.enter();
        let started = Instant::now();
        let child_activity = Activity::default();
        let outcome = match inner.schemas_for(&function) {
            Err(e) => super::crashed(&format!("the schemas of {name} do not compile: {e}")),
            Ok(schemas) => {
                let errors = schemas
                    .input
                    .as_ref()
                    .map(|v| domain::violations(v, &input))
                    .unwrap_or_default();
                if !errors.is_empty() {
                    let e = ErrorRecord::new(
                        ErrorKind::InputValidation,
                        format!("the input does not match the input schema of {name}"),
                    )
                    .with("errors", json!(errors));
                    super::Outcome {
                        result: Err(e),
                        stdout: String::new(),
                        stderr: String::new(),
                        fuel_used: 0,
                        reused: false,
                    }
                } else {
                    // The callee gets the tighter of its own limits and what the caller has left.
                    let (isolation, timeout, fuel, memory) = inner.limits(&function.current.content.settings);
                    let own_deadline = started + timeout.min(Duration::from_secs(86_400));
                    let budget = Budget {
                        fuel: fuel.min(budget.fuel),
                        deadline: own_deadline.min(budget.deadline),
                        cancel: budget.cancel,
                    };
                    let child = CallTree {
                        inner: inner.clone(),
                        tenant: self.tenant.clone(),
                        execution_id: self.execution_id.clone(),
                        step_id: step.id.clone(),
                        depth: self.depth + 1,
                        seq: self.seq.clone(),
                        packages: self.packages.clone(),
                        function: name.to_string(),
                        version: function.current.version,
                        shared: self.shared.clone(),
                        activity: child_activity.clone(),
                    };
                    let v = &function.current.content;
                    let spec = CallSpec {
                        tenant: &self.tenant,
                        function: name,
                        version: function.current.version,
                        code: &v.code,
                        code_key: &format!("{}:{}", function.id, v.code_sha256),
                        input: &input,
                        isolation,
                        webhook: false,
                        packages: self.packages.as_deref(),
                        script: false,
                        extras: None,
                        limits: Limits {
                            budget,
                            memory_bytes: memory,
                        },
                    };
                    check_output(inner.sandbox.run(&spec, Box::new(child)), &schemas)
                }
            }
        };
        let mut outcome = outcome;
        cancel::settle(&mut outcome.result, budget.cancel);
        child_activity.redact(&mut outcome);
        let mut finish = finish_record(&outcome, started.elapsed().as_secs_f64() * 1000.0);
        finish.activity = child_activity.to_json();
        tracing::debug!(
            status = %finish.status,
            duration_ms = finish.duration_ms,
            "step finished"
        );
        let to = super::live_log::Target {
            events: &inner.events,
            tenant: &self.tenant,
            execution_id: &self.execution_id,
            step_id: &step.id,
        };
        child_activity.live_end(&outcome.stdout, &outcome.stderr, &to);
        let finished_event = super::finished_event(&step.id, name, step.depth, &outcome, &finish);
        inner
            .events
            .publish(&self.tenant, &self.execution_id, "step.finished", finished_event);
        let labels = vec![("status", finish.status.to_string())];
        inner.events.metrics.add(
            "maestro_nested_calls_total",
            "Calls between functions by status.",
            labels,
            1.0,
        );
        inner.recorder.send(Write::FinishStep {
            tenant: self.tenant.clone(),
            execution_id: self.execution_id.clone(),
            id: step.id.clone(),
            finish,
        });
        Nested {
            result: outcome.result,
            fuel_used: outcome.fuel_used,
        }
    }
}
