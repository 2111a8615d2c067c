//! Runs Python functions in CPython compiled to WASI, on wasmtime.
//!
//! This module knows nothing of HTTP or SQL. It takes a function's code, an input and limits,
//! runs the call in its own store (fresh from the snapshot, or a warm instance of the same
//! tenant + function version), and returns the output or a typed error. Calls the guest makes
//! to other functions come back out through the [`Host`] trait, which the engine implements.

mod cancel;
mod fonts;
mod hostcall;
mod instance;
#[cfg(target_os = "linux")]
mod pages;
mod pool;
mod ready;
pub mod runtime;
mod session;
#[cfg(target_os = "linux")]
mod snapshot;
#[cfg(not(target_os = "linux"))]
#[path = "snapshot_off.rs"]
mod snapshot;
mod spares;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmtime::{Config, Engine, InstancePre, Linker};

pub use cancel::Cancel;
pub use instance::HostState;
use instance::{Instance, TurnEnd};
pub use pool::PoolLimits;
use pool::{PoolKey, WarmPool};
use ready::{Ask, Ready};
pub use runtime::RuntimePaths;
pub use session::{FileAnswer, FileOp, Kept};
use snapshot::Snapshots;
use spares::Spares;

/// How long one epoch tick lasts; deadlines are rounded up to whole ticks.
pub const TICK: Duration = Duration::from_millis(10);
/// Native stack a wasm call may use; CPython recurses deeply in C.
pub const WASM_STACK: usize = 8 << 20;

/// Whether a call gets a brand-new instance or may reuse one kept warm for that function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A new instance from the snapshot for every call: nothing survives between calls.
    Fresh,
    /// A pooled instance of the same tenant + function version; module state may persist.
    #[default]
    Warm,
}

/// What a failed call reports. `kind` is machine-readable; the rest is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    PythonException,
    Timeout,
    OutOfFuel,
    MemoryLimit,
    InvalidOutput,
    Crash,
    InputValidation,
    OutputValidation,
    NotFound,
    DepthLimit,
    CallLimit,
    SyntaxError,
    InvalidCode,
    Interrupted,
    /// Stopped on request (`POST /executions/{id}/cancel`).
    Cancelled,
    /// A workflow node failed (after its retries).
    NodeFailed,
}

/// An error as stored on steps and executions and shown by the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorRecord {
    pub kind: ErrorKind,
    pub message: String,
    /// The Python exception type, for `python_exception`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub exc_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// Anything else the error carries (`line`, `offset`, `cause`, `errors`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl ErrorRecord {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorRecord {
            kind,
            message: message.into(),
            exc_type: None,
            traceback: None,
            extra: Default::default(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The record cut to sizes the host is willing to store and show: a guest builds its own
    /// error records and may send anything in them.
    fn capped(mut self) -> Self {
        self.message = cap_text(self.message, MAX_ERROR_TEXT);
        self.exc_type = self.exc_type.map(|t| cap_text(t, 256));
        self.traceback = self.traceback.map(|t| cap_text(t, MAX_TRACEBACK));
        // Extra fields (a nested call's `cause` with its own traceback, validation `errors`):
        // long texts in them are cut first; only if that is not enough do they all go.
        let mut extra = Value::Object(std::mem::take(&mut self.extra));
        cap_strings(&mut extra, MAX_EXTRA_TEXT, 0);
        self.extra = match extra {
            Value::Object(m) if Value::Object(m.clone()).to_string().len() <= MAX_ERROR_EXTRA => m,
            _ => serde_json::Map::from_iter([("truncated".to_string(), Value::Bool(true))]),
        };
        self
    }
}

/// The largest output a call may return (its JSON text).
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// Room past the capture cap for the prelude's own "[maestro: N more bytes dropped]" line.
const MARKER_ROOM: usize = 128;
/// Longest error message kept from a guest.
const MAX_ERROR_TEXT: usize = 16 << 10;
/// The most an error record's extra fields may take, and the longest text in them.
const MAX_ERROR_EXTRA: usize = 128 << 10;
const MAX_EXTRA_TEXT: usize = 8 << 10;

/// Cut every string in `v` (down to a bounded depth) to `cap` bytes.
fn cap_strings(v: &mut Value, cap: usize, depth: usize) {
    match v {
        Value::String(s) if s.len() > cap => *s = cap_text(std::mem::take(s), cap),
        Value::Array(items) if depth < 64 => items.iter_mut().for_each(|i| cap_strings(i, cap, depth + 1)),
        Value::Object(map) if depth < 64 => map.values_mut().for_each(|i| cap_strings(i, cap, depth + 1)),
        _ => {}
    }
}
/// Longest traceback kept from a guest.
const MAX_TRACEBACK: usize = 64 << 10;

/// `text` cut to at most `cap` bytes (at a character boundary), saying how much was dropped.
fn cap_text(mut text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("\n[maestro: {dropped} more bytes dropped]\n"));
    text
}

/// The fuel of a call that has no fuel budget: more than any call can burn before its
/// deadline (a tight loop burns about 10^10 a second), and far from overflow when the host
/// charges and refunds it.
pub const UNMETERED_FUEL: u64 = u64::MAX / 4;

/// The fuel and wall-clock time a call may use; shared down a call tree.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub fuel: u64,
    pub deadline: Instant,
    /// Stops every call of the tree when cancelled (`POST /executions/{id}/cancel`).
    pub cancel: Cancel,
}

/// Limits of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub budget: Budget,
    pub memory_bytes: usize,
}

/// A tenant's unpacked packages: mounted read-only at `/packages` and put on `sys.path`.
/// `digest` names the exact set; warm instances are only reused for the same one.
#[derive(Debug)]
pub struct PackageMount {
    pub dir: PathBuf,
    pub digest: String,
}

/// One call to run.
pub struct CallSpec<'a> {
    pub tenant: &'a str,
    pub function: &'a str,
    pub version: i64,
    pub code: &'a str,
    /// Identifies this exact code for the warm pool (function id + code hash): a deleted and
    /// recreated function reuses version numbers, never instances.
    pub code_key: &'a str,
    pub input: &'a Value,
    pub isolation: Isolation,
    pub limits: Limits,
    /// The input is a webhook request: the guest makes `input["headers"]` case-insensitive.
    pub webhook: bool,
    /// The tenant's packages, if it has any.
    pub packages: Option<&'a PackageMount>,
    /// `code` is a script run as a notebook cell (`POST /run`), not a module defining
    /// `function`: the output is `{"results": [...]}` (see runtime/guest/cells.py).
    pub script: bool,
    /// Fields added to a script's `begin` frame: the files sent with it (`files`,
    /// `return_files`, `files_cap`).
    pub extras: Option<&'a serde_json::Map<String, Value>>,
}

/// A nested call's result as the caller sees it.
pub struct Nested {
    pub result: Result<Value, ErrorRecord>,
    pub fuel_used: u64,
}

/// What the sandbox needs from the world while a call runs: calls to other functions.
/// Implemented by the engine, which checks tenancy, schemas and depth and records steps.
pub trait Host: Send {
    /// Whether `name` is a function the running code may call by its bare name.
    fn resolve(&mut self, name: &str) -> bool;
    /// Run `name` with `input` within `budget` (the caller's remaining fuel and deadline).
    fn call(&mut self, name: &str, input: Value, budget: Budget) -> Nested;
    /// Run several calls, each within its share of `budget`; results in the order asked.
    /// The default runs them one after another.
    fn gather(&mut self, calls: Vec<(String, Value)>, budget: Budget) -> Vec<Nested> {
        let share = Budget {
            fuel: budget.fuel / calls.len().max(1) as u64,
            ..budget
        };
        calls
            .into_iter()
            .map(|(name, input)| self.call(&name, input, share))
            .collect()
    }
    /// A capability frame (`http`, `secret`, `log`, `context`); answers the JSON reply.
    fn capability(&mut self, op: &str, frame: &Value, deadline: Instant) -> Value {
        let _ = (frame, deadline);
        serde_json::json!({"ok": false, "error": {"kind": "unavailable", "message": format!("{op} is not available here")}})
    }
}

/// The result of one call.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Value, ErrorRecord>,
    pub stdout: String,
    pub stderr: String,
    pub fuel_used: u64,
    /// Whether the call reused a warm instance.
    pub reused: bool,
}

/// The per-function snapshots kept, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SnapshotStats {
    /// Snapshots kept now, and the disk they take.
    pub kept: usize,
    pub bytes: u64,
    /// Snapshots taken, instances started from one, and snapshots dropped for the disk budget,
    /// since start.
    pub built: u64,
    pub restored: u64,
    pub evicted: u64,
}

/// Settings for the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub runtime_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// Bounds of the warm pool.
    pub warm: PoolLimits,
    /// Calls after which a warm instance is retired.
    pub warm_max_uses: u32,
    /// Bytes of stdout and of stderr kept per call.
    pub capture_bytes: usize,
    /// Booted, never-used instances kept ready for fresh calls and warm-pool misses.
    pub spares: usize,
    /// Largest input of a nested call (the server's `MAX_INPUT_BYTES`).
    pub max_input_bytes: usize,
    /// Disk the per-function snapshots may take, in bytes (0: no snapshots).
    pub snapshot_bytes: u64,
}

/// Counters for health and metrics.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub instances_created: u64,
    pub warm_hits: u64,
    /// Calls run (root and nested).
    pub runs: u64,
    pub warm_idle: usize,
    /// Bytes of memory the idle warm instances hold.
    pub warm_bytes: u64,
    /// Instances the warm pool let go (or never kept), by reason.
    pub warm_dropped: std::collections::BTreeMap<&'static str, u64>,
    pub spares_ready: usize,
    /// Instances of fresh functions started from their snapshot ahead of their next call.
    pub fresh_ready: usize,
    pub snapshots: SnapshotStats,
}

/// The compiled interpreter plus everything needed to start instances of it.
pub struct Sandbox {
    engine: Engine,
    pre: InstancePre<HostState>,
    paths: RuntimePaths,
    pool: WarmPool,
    cfg: SandboxConfig,
    created: AtomicU64,
    hits: AtomicU64,
    runs: AtomicU64,
    initial_memory: u64,
    /// The prelude compiled once by the guest's own interpreter (`marshal` format): a fresh
    /// instance loads it instead of compiling ~200 lines of source (≈50 M fuel) every call.
    prelude: Arc<[u8]>,
    spares: Spares,
    snapshots: Snapshots,
    ready: Ready,
}

impl Sandbox {
    /// Fetch the runtime if missing, load (or compile) the module, start the epoch ticker.
    pub fn open(cfg: SandboxConfig) -> anyhow::Result<Arc<Sandbox>> {
        let paths = RuntimePaths::new(&cfg.runtime_dir);
        paths.ensure()?;
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .wasm_exceptions(true)
            .max_wasm_stack(WASM_STACK)
            .async_stack_size(WASM_STACK + (1 << 20));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
        let key = format!("fuel;epoch;exceptions;stack={WASM_STACK}");
        let module = runtime::load_module(&engine, &paths, &cfg.cache_dir, &key)?;
        let initial_memory = module
            .exports()
            .find_map(|e| e.ty().memory().map(|m| m.minimum()))
            .unwrap_or(0)
            * 65536;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        instance::link(&mut linker).map_err(|e| anyhow::anyhow!("linking the runtime: {e}"))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| anyhow::anyhow!("instantiate_pre: {e}"))?;
        spawn_epoch_ticker(&engine);
        let pool = WarmPool::new(cfg.warm);
        let mut sandbox = Sandbox {
            engine,
            pre,
            paths,
            pool,
            cfg,
            created: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            initial_memory,
            prelude: Arc::from(Vec::new()),
            spares: Spares::new(0),
            snapshots: Snapshots::off(),
            ready: Ready::new(0),
        };
        sandbox.prelude = sandbox.compile_prelude()?;
        sandbox.ensure_font_cache();
        if sandbox.cfg.snapshot_bytes > 0 {
            let booted = sandbox
                .boot_instance()
                .map_err(|e| anyhow::anyhow!("booting the snapshot base: {}", e.message))?;
            let dir = sandbox.cfg.cache_dir.join("snapshots");
            match Snapshots::new(&dir, sandbox.cfg.snapshot_bytes, &booted) {
                Ok(snapshots) => sandbox.snapshots = snapshots,
                // A read-only cache directory costs speed, not service.
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "function snapshots are off"),
            }
        }
        sandbox.spares = Spares::new(sandbox.cfg.spares);
        // One ready instance for each of the fresh functions called most recently.
        sandbox.ready = Ready::new(if sandbox.snapshots.enabled() {
            4 * sandbox.cfg.spares
        } else {
            0
        });
        let sandbox = Arc::new(sandbox);
        spares::spawn_upkeep(&sandbox);
        Ok(sandbox)
    }

    /// Compile the prelude inside the guest and return its marshalled code object.
    fn compile_prelude(&self) -> anyhow::Result<Arc<[u8]>> {
        let mut inst = self
            .new_instance(256 << 20)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let begin = serde_json::json!({ "code": PRELUDE }).to_string().into_bytes();
        let budget = Budget {
            fuel: u64::MAX / 4,
            deadline: Instant::now() + Duration::from_secs(60),
            cancel: Cancel::NEVER,
        };
        let end = inst.turn(COMPILE_PRELUDE, begin, budget, Box::new(NoHost));
        let frame: Value = end
            .frame
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or_else(|| anyhow::anyhow!("the guest did not compile the prelude (status {})", end.status))?;
        let hex_code = frame["output"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("prelude compile failed: {frame}"))?;
        Ok(Arc::from(hex::decode(hex_code)?))
    }

    /// How large the guest's frames may be: a nested call's input as the server allows, and
    /// the largest report the prelude can make (the biggest output in JSON with room for
    /// spacing, stdout and stderr at their cap with every character escaped, as `\u0001` is
    /// six bytes, and room for errors).
    fn frame_limits(&self) -> hostcall::FrameLimits {
        let captured = self.cfg.capture_bytes.saturating_add(MARKER_ROOM).saturating_mul(12);
        hostcall::FrameLimits {
            input: self.cfg.max_input_bytes,
            report: (2 * MAX_OUTPUT_BYTES).saturating_add(captured).saturating_add(1 << 20),
        }
    }

    /// Memory the interpreter starts with; a memory cap must be above it.
    pub fn initial_memory(&self) -> u64 {
        self.initial_memory
    }

    pub fn stats(&self) -> Stats {
        let (warm_idle, warm_bytes) = self.pool.usage();
        Stats {
            instances_created: self.created.load(Ordering::Relaxed),
            warm_hits: self.hits.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            warm_idle,
            warm_bytes,
            warm_dropped: self.pool.dropped(),
            spares_ready: self.spares.ready(),
            fresh_ready: self.ready.len(),
            snapshots: self.snapshots.stats(),
        }
    }

    /// Drop every warm instance of a tenant (after its packages change).
    pub fn recycle_tenant(&self, tenant: &str) {
        self.retire_all(self.pool.drain_tenant(tenant));
        self.snapshots.forget(|k| k.tenant() == tenant);
        self.retire_all(self.ready.forget(|k| k.tenant() == tenant));
    }

    /// Drop every warm instance of a function (after it changes or is deleted).
    pub fn recycle_function(&self, tenant: &str, function: &str) {
        self.retire_all(self.pool.drain_function(tenant, function));
        let of_function = |k: &PoolKey| k.tenant() == tenant && k.function() == function;
        self.snapshots.forget(of_function);
        self.retire_all(self.ready.forget(of_function));
    }

    fn retire_all(&self, instances: Vec<Instance>) {
        for inst in instances {
            self.spares.retire(inst);
        }
    }

    fn new_instance(&self, memory_bytes: usize) -> Result<Instance, ErrorRecord> {
        self.new_instance_with(memory_bytes, None)
    }

    fn new_instance_with(
        &self,
        memory_bytes: usize,
        packages: Option<&std::path::Path>,
    ) -> Result<Instance, ErrorRecord> {
        self.created.fetch_add(1, Ordering::Relaxed);
        Instance::new(
            &self.engine,
            &self.pre,
            &self.paths,
            memory_bytes,
            self.prelude.clone(),
            packages,
            self.frame_limits(),
        )
    }

    /// A new instance with the prelude already loaded (for the spare stock).
    fn boot_instance(&self) -> Result<Instance, ErrorRecord> {
        let mut inst = self.new_instance(self.initial_memory as usize + (64 << 20))?;
        let budget = Budget {
            fuel: 1_000_000_000,
            deadline: Instant::now() + Duration::from_secs(30),
            cancel: Cancel::NEVER,
        };
        let end = inst.turn(BOOT, Vec::new(), budget, Box::new(NoHost));
        if end.trap.is_some() || end.status != 0 {
            return Err(ErrorRecord::new(
                ErrorKind::Crash,
                format!("booting the prelude failed (status {})", end.status),
            ));
        }
        inst.prelude_loaded = true;
        Ok(inst)
    }

    /// A spare if one is ready (capped to `memory_bytes`), else a new instance.
    fn unused_instance(&self, memory_bytes: usize) -> Result<Instance, ErrorRecord> {
        match self.spares.take() {
            Some(mut inst) => {
                inst.set_memory_cap(memory_bytes);
                Ok(inst)
            }
            None => self.new_instance(memory_bytes),
        }
    }

    /// Run one call on the current thread. Nested calls recurse through `host` on the same
    /// thread, so the thread needs a stack of about `WASM_STACK` per level of depth.
    pub fn run(&self, spec: &CallSpec<'_>, host: Box<dyn Host>) -> Outcome {
        let key = PoolKey::new(
            spec.tenant,
            spec.function,
            spec.version,
            spec.code_key,
            spec.limits.memory_bytes,
            spec.packages.map_or("", |p| p.digest.as_str()),
        );
        let pooled = match spec.isolation {
            Isolation::Warm => self.pool.take(&key),
            Isolation::Fresh => None,
        };
        let reused = pooled.is_some();
        if reused {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        let started = match pooled {
            Some(inst) => Ok(Started {
                inst,
                host,
                fuel_used: 0,
            }),
            None => self.start(&key, spec, host),
        };
        let Started {
            mut inst,
            host,
            fuel_used,
        } = match started {
            Ok(s) => s,
            Err(outcome) => {
                self.runs.fetch_add(1, Ordering::Relaxed);
                return *outcome;
            }
        };
        // Module code run to build a snapshot was paid from this call's fuel.
        let budget = Budget {
            fuel: spec.limits.budget.fuel.saturating_sub(fuel_used),
            ..spec.limits.budget
        };
        let spec = &CallSpec {
            limits: Limits { budget, ..spec.limits },
            ..*spec
        };
        let mut outcome = self.run_on(&mut inst, spec, None, host);
        outcome.fuel_used = outcome.fuel_used.saturating_add(fuel_used);
        let healthy = outcome.result.is_ok();
        // Tearing down a store unmaps its memory: whatever is not kept is dropped off the
        // request path.
        // A script's instance is never pooled: every script is new code, and would only push
        // other functions' instances out.
        let poolable = spec.isolation == Isolation::Warm && !spec.script;
        if poolable && healthy && inst.uses < self.cfg.warm_max_uses {
            self.retire_all(self.pool.put(key, inst));
        } else if spec.isolation == Isolation::Fresh && !spec.script {
            self.make_ready(key, spec, inst);
        } else {
            self.spares.retire(inst);
        }
        Outcome { reused, ..outcome }
    }

    /// After a fresh call: have the upkeep thread start the function's next instance from its
    /// snapshot, faulting in the pages `used` touched (see `ready.rs`); `used` is dropped there.
    fn make_ready(&self, key: PoolKey, spec: &CallSpec<'_>, used: Instance) {
        let Some(snap) = self.snapshots.get(&key) else {
            return self.spares.retire(used);
        };
        let ask = Ask {
            key,
            snap,
            memory: spec.limits.memory_bytes,
            packages: spec.packages.map(|p| p.dir.clone()),
            used,
        };
        match self.ready.ask(ask) {
            Ok(()) => self.spares.wake(),
            Err(ask) => self.spares.retire(ask.used),
        }
    }

    /// Whether ready instances were asked for and not made yet.
    fn ready_pending(&self) -> bool {
        self.ready.pending()
    }

    /// Ready instances unused for the warm pool's idle time, taken out.
    fn ready_expire(&self) -> Vec<Instance> {
        self.ready.expire(self.cfg.warm.idle)
    }

    /// Make the ready instances asked for (on the upkeep thread).
    fn stock_ready(&self) {
        for ask in self.ready.asked() {
            // Only an instance restored on the request path shows what a call writes: the one
            // that built the snapshot also wrote the boot and the module code, and a ready one
            // holds the pages copied into it.
            if ask.used.restored && !ask.used.prefaulted {
                self.snapshots.learn(&ask.snap, &ask.used);
            }
            let made = self
                .new_instance_with(ask.memory, ask.packages.as_deref())
                .map_err(|e| anyhow::anyhow!(e.message))
                .and_then(|mut inst| {
                    self.snapshots.restore(&ask.snap, &mut inst)?;
                    inst.prelude_loaded = true;
                    inst.loaded = true;
                    inst.restored = true;
                    // Until a call has been learnt from, nothing is copied, and this instance
                    // is as good to learn from as one restored on the request path.
                    inst.prefaulted = self.snapshots.prefault(&ask.snap, &mut inst) > 0;
                    Ok(inst)
                });
            match made {
                Ok(inst) => {
                    drop(self.ready.stock_up(ask.key.clone(), inst));
                    // The function changed meanwhile (`recycle_function` forgets its snapshot
                    // before its ready instances): take this one out again.
                    if !self.snapshots.contains(&ask.key) {
                        drop(self.ready.forget(|k| *k == ask.key));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not make a ready instance"),
            }
            // Unmapping the used one last: the next call may already be waiting for this one.
            drop(ask.used);
        }
    }

    /// An instance for a call that found none idle: started from the function's snapshot
    /// when one is kept; else a new one in which the module code runs first and is snapshot
    /// (when snapshots are on; a script's code is never snapshot, it is new every time).
    fn start(&self, key: &PoolKey, spec: &CallSpec<'_>, host: Box<dyn Host>) -> Result<Started, Box<Outcome>> {
        let memory = spec.limits.memory_bytes;
        if spec.script || !self.snapshots.enabled() {
            let inst = self
                .instance_for(memory, spec.packages)
                .map_err(|e| Box::new(failed(e)))?;
            return Ok(Started {
                inst,
                host,
                fuel_used: 0,
            });
        }
        if let Some(inst) = self.ready.take(key) {
            return Ok(Started {
                inst,
                host,
                fuel_used: 0,
            });
        }
        if let Some(snap) = self.snapshots.get(key) {
            let mut inst = self
                .new_instance_with(memory, spec.packages.map(|p| p.dir.as_path()))
                .map_err(|e| Box::new(failed(e)))?;
            match self.snapshots.restore(&snap, &mut inst) {
                Ok(()) => {
                    inst.prelude_loaded = true;
                    inst.loaded = true;
                    inst.restored = true;
                    return Ok(Started {
                        inst,
                        host,
                        fuel_used: 0,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not start from a snapshot; booting instead");
                    self.spares.retire(inst);
                }
            }
        }
        let mut inst = self
            .instance_for(memory, spec.packages)
            .map_err(|e| Box::new(failed(e)))?;
        let mut begin = serde_json::json!({ "function": spec.function, "code": spec.code });
        if spec.packages.is_some() {
            begin["paths"] = serde_json::json!([PACKAGES_GUEST_DIR]);
        }
        let source = if inst.prelude_loaded {
            PREPARE.to_string()
        } else {
            format!("{BOOT}{PREPARE}\n")
        };
        let mut end = inst.turn(&source, begin.to_string().into_bytes(), spec.limits.budget, host);
        let host = end.host.take();
        let fuel_used = end.fuel_used;
        let asked_host = end.asked_host;
        inst.prelude_loaded = true;
        let prepared = finish(end, &inst, memory, self.cfg.capture_bytes);
        // The module code failed: that is the call's answer.
        if prepared.result.is_err() {
            self.spares.retire(inst);
            return Err(Box::new(prepared));
        }
        let Some(host) = host else {
            self.spares.retire(inst);
            let lost = ErrorRecord::new(ErrorKind::Crash, "the sandbox lost the call's host");
            return Err(Box::new(failed(lost)));
        };
        inst.loaded = true;
        // What the module code got from the host (a secret, the first caller's context, a
        // nested call's answer) belongs to this call: such a module is not snapshot, and runs
        // again in each new instance as it did before snapshots.
        let snapshot = prepared.result.as_ref().is_ok_and(|v| v["snapshot"] != false);
        if !asked_host && snapshot {
            self.snapshots.capture(key.clone(), &inst);
        }
        Ok(Started { inst, host, fuel_used })
    }

    /// A new instance for a call: a spare when the tenant has no packages (spares have no
    /// package mount, which is fixed when an instance is made), else a new one.
    fn instance_for(&self, memory_bytes: usize, packages: Option<&PackageMount>) -> Result<Instance, ErrorRecord> {
        match packages {
            None => self.unused_instance(memory_bytes),
            Some(p) => self.new_instance_with(memory_bytes, Some(&p.dir)),
        }
    }

    /// Run `spec` in `inst` (`session`: the cell of a session, run in its lasting globals).
    fn run_on(
        &self,
        inst: &mut Instance,
        spec: &CallSpec<'_>,
        session: Option<&Value>,
        host: Box<dyn Host>,
    ) -> Outcome {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let mut begin = serde_json::json!({
            "function": spec.function,
            "input": spec.input,
            "capture": self.cfg.capture_bytes,
        });
        if let Some(session) = session {
            begin["session"] = session.clone();
        } else if spec.script {
            // A script runs anew each time, in globals of its own.
            begin["script"] = Value::Bool(true);
        }
        if spec.script || !inst.loaded {
            begin["code"] = Value::from(spec.code);
        }
        if !inst.loaded && spec.packages.is_some() {
            begin["paths"] = serde_json::json!([PACKAGES_GUEST_DIR]);
        }
        if spec.webhook {
            begin["webhook"] = Value::Bool(true);
        }
        if inst.restored && inst.uses == 0 {
            begin["reseed"] = Value::Bool(true);
        }
        for (k, v) in spec.extras.into_iter().flatten() {
            begin[k] = v.clone();
        }
        let source = if inst.prelude_loaded {
            RUN.to_string()
        } else {
            format!("{BOOT}{RUN}\n")
        };
        let end = inst.turn(&source, begin.to_string().into_bytes(), spec.limits.budget, host);
        let outcome = finish(end, inst, spec.limits.memory_bytes, self.cfg.capture_bytes);
        inst.prelude_loaded = true;
        inst.loaded = true;
        inst.uses += 1;
        outcome
    }

    /// Check code at create/update time: it compiles and defines `def <name>(input)`.
    pub fn check(&self, name: &str, code: &str) -> Result<(), ErrorRecord> {
        let mut inst = self.unused_instance(256 << 20)?;
        let begin = serde_json::json!({ "function": name, "code": code }).to_string();
        let budget = Budget {
            fuel: 2_000_000_000,
            deadline: Instant::now() + Duration::from_secs(10),
            cancel: Cancel::NEVER,
        };
        let end = inst.turn(
            &if inst.prelude_loaded {
                "_mx_check()".to_string()
            } else {
                format!("{BOOT}_mx_check()\n")
            },
            begin.into_bytes(),
            budget,
            Box::new(NoHost),
        );
        finish(end, &inst, 256 << 20, 64 << 10).result.map(|_| ())
    }
}

/// Where a tenant's packages appear inside the sandbox.
pub const PACKAGES_GUEST_DIR: &str = "/packages";
const PRELUDE: &str = concat!(
    include_str!("../../runtime/guest/prelude.py"),
    include_str!("../../runtime/guest/files.py"),
    include_str!("../../runtime/guest/cells.py")
);
const RUN: &str = "_mx_run()";
/// Runs a function's module code only (see `Sandbox::start`).
const PREPARE: &str = "_mx_prepare()";
/// Loads the precompiled prelude into `__main__` of a new instance.
const BOOT: &str = "import marshal, _host\nexec(marshal.loads(_host.call(b'{\"op\":\"prelude\"}')))\n";
/// Compiles the prelude (handed over as the `begin` frame's `code`) and returns it marshalled.
const COMPILE_PRELUDE: &str = "import json, marshal, _host\n\
_src = json.loads(_host.call(b'{\"op\":\"begin\"}'))['code']\n\
_code = marshal.dumps(compile(_src, '<maestro>', 'exec'))\n\
_host.call(json.dumps({'op': 'end', 'ok': True, 'output': _code.hex()}).encode())\n";

/// An instance ready for a call, the call's host, and the fuel its start used.
struct Started {
    inst: Instance,
    host: Box<dyn Host>,
    fuel_used: u64,
}

fn failed(e: ErrorRecord) -> Outcome {
    Outcome {
        result: Err(e),
        stdout: String::new(),
        stderr: String::new(),
        fuel_used: 0,
        reused: false,
    }
}

/// The guest's "end" frame as sent by the prelude. The output stays raw text until its
/// size is checked.
#[derive(Deserialize)]
struct EndFrame {
    ok: bool,
    #[serde(default)]
    output: Option<Box<serde_json::value::RawValue>>,
    error: Option<ErrorRecord>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
}

/// Turn what a `turn` produced into an outcome: the guest's own report when it sent one,
/// otherwise what the trap or exit status says. The report is the guest's word, so every
/// field of it is capped here before anything else reads it: stdout and stderr to `capture`
/// bytes each (what the prelude keeps, plus room for its note), error texts to fixed sizes.
fn finish(end: TurnEnd, inst: &Instance, memory_cap: usize, capture: usize) -> Outcome {
    let fuel_used = end.fuel_used;
    let oversized = end.oversized;
    let frame = end
        .frame
        .as_deref()
        .and_then(|b| serde_json::from_slice::<EndFrame>(b).ok())
        .map(|f| EndFrame {
            stdout: cap_text(f.stdout, capture + MARKER_ROOM),
            stderr: cap_text(f.stderr, capture + MARKER_ROOM),
            error: f.error.map(ErrorRecord::capped),
            ..f
        });
    let (result, stdout, stderr) = match (end.trap, frame) {
        (Some(e), f) => {
            let (out, err) = f.map(|f| (f.stdout, f.stderr)).unwrap_or_default();
            (Err(e), out, err)
        }
        (None, Some(f)) if f.ok => (output_of(f.output), f.stdout, f.stderr),
        (None, Some(f)) => {
            let e = f
                .error
                .unwrap_or_else(|| ErrorRecord::new(ErrorKind::Crash, "the function failed without an error record"));
            (Err(e), f.stdout, f.stderr)
        }
        (None, None) => {
            let near_cap = inst.memory_size() + (1 << 20) >= memory_cap as u64;
            let e = if oversized {
                ErrorRecord::new(
                    ErrorKind::InvalidOutput,
                    "the function's report was larger than any result may be",
                )
            } else if near_cap {
                ErrorRecord::new(
                    ErrorKind::MemoryLimit,
                    format!("the interpreter ran out of memory (cap {} MiB)", memory_cap >> 20),
                )
            } else if end.status >= 256 {
                ErrorRecord::new(
                    ErrorKind::Crash,
                    format!("the interpreter exited with status {}", end.status >> 8),
                )
            } else {
                ErrorRecord::new(
                    ErrorKind::Crash,
                    format!("the interpreter stopped without a result (status {})", end.status),
                )
            };
            (Err(e), String::new(), String::new())
        }
    };
    Outcome {
        result,
        stdout,
        stderr,
        fuel_used,
        reused: false,
    }
}

/// A reported output, parsed only when it is within [`MAX_OUTPUT_BYTES`].
fn output_of(raw: Option<Box<serde_json::value::RawValue>>) -> Result<Value, ErrorRecord> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let size = raw.get().len();
    if size > MAX_OUTPUT_BYTES {
        return Err(ErrorRecord::new(
            ErrorKind::InvalidOutput,
            format!("the output is {size} bytes; the limit is {MAX_OUTPUT_BYTES}"),
        ));
    }
    serde_json::from_str(raw.get()).map_err(|e| ErrorRecord::new(ErrorKind::InvalidOutput, e.to_string()))
}

/// A host for code checks: no calls out.
struct NoHost;

impl Host for NoHost {
    fn resolve(&mut self, _: &str) -> bool {
        false
    }
    fn call(&mut self, name: &str, _: Value, _: Budget) -> Nested {
        Nested {
            result: Err(ErrorRecord::new(ErrorKind::NotFound, format!("no function {name}"))),
            fuel_used: 0,
        }
    }
}

/// Advance the engine's epoch every tick, for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("maestro-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .ok();
}
