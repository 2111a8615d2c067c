//! One sandbox instance: a wasmtime store holding a CPython instance, its WASI context and
//! limits, and the state of the call running in it.

use std::time::Instant;

use wasmtime::{
    Engine, InstancePre, Linker, Memory, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::cancel::{Cancel, Cancelled};
use super::hostcall::{self, DeadlineExceeded, FrameLimits};
use super::{Budget, ErrorKind, ErrorRecord, Host, RuntimePaths, TICK};

/// Ticks between the checks a running call makes of its deadline and its cancel handle.
const CHECK_TICKS: u64 = 10;

/// Store data: WASI, limits, and the call in progress.
pub struct HostState {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limits: StoreLimits,
    pub(super) call: Option<ActiveCall>,
    /// The marshalled prelude, handed to the guest on `{"op": "prelude"}`.
    pub(super) prelude: std::sync::Arc<[u8]>,
    /// How large the guest's frames may be.
    pub(super) frames: FrameLimits,
}

/// The call currently running in a store: what `begin` hands the guest, what `end` returned.
pub(super) struct ActiveCall {
    pub begin: Vec<u8>,
    pub end: Option<Vec<u8>>,
    /// The guest sent an `end` frame larger than any real report (and it was not kept).
    pub oversized_end: bool,
    pub host: Option<Box<dyn Host>>,
    pub deadline: Instant,
    pub cancel: Cancel,
    pub limits: FrameLimits,
    /// The code asked the host for something that depends on the call (another function, a
    /// secret, HTTP, the call's context): module code that did must not be snapshot.
    pub asked_host: bool,
}

/// What one `turn` left behind.
pub(super) struct TurnEnd {
    /// The guest's `end` frame, if it sent one.
    pub frame: Option<Vec<u8>>,
    /// Its last `end` frame was too large to be a real report, and was dropped.
    pub oversized: bool,
    /// A trap turned into an error record (timeout, fuel, crash).
    pub trap: Option<ErrorRecord>,
    /// `turn`'s return value: low byte exit status, >= 256 when the code called exit().
    pub status: i32,
    pub fuel_used: u64,
    /// The host the call was given, back for the next turn of the same call.
    pub host: Option<Box<dyn Host>>,
    /// See [`ActiveCall::asked_host`].
    pub asked_host: bool,
}

pub(super) struct Instance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    turn: TypedFunc<(i32, i32), i32>,
    pub prelude_loaded: bool,
    pub loaded: bool,
    /// Started from a snapshot that other instances also start from (its first call reseeds
    /// the random generators).
    pub restored: bool,
    /// A ready instance: the pages a call wrote were copied into it ahead (so what it holds
    /// privately says nothing about what its own call wrote).
    pub prefaulted: bool,
    pub uses: u32,
}

/// WASI plus our two host functions (`host.call` and a deadline-aware `poll_oneoff`).
pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut HostState| &mut s.wasi)?;
    linker.allow_shadowing(true);
    hostcall::link(linker)
}

fn crash(msg: impl std::fmt::Display) -> ErrorRecord {
    ErrorRecord::new(ErrorKind::Crash, format!("could not start the sandbox: {msg}"))
}

impl Instance {
    pub fn new(
        engine: &Engine,
        pre: &InstancePre<HostState>,
        paths: &RuntimePaths,
        memory_bytes: usize,
        prelude: std::sync::Arc<[u8]>,
        packages: Option<&std::path::Path>,
        frames: FrameLimits,
    ) -> Result<Instance, ErrorRecord> {
        // Only what the interpreter needs: its stdlib zip and an empty read-only root. No
        // host env, no network, no writable directory; stdio goes nowhere (the prelude
        // captures print() itself).
        let mut b = WasiCtxBuilder::new();
        b.args(&["/usr/local/bin/python.wasm"])
            .env("TMPDIR", "/tmp")
            .env("PYTHONTZPATH", "")
            .env("HOME", "/tmp")
            .env("MPLCONFIGDIR", super::runtime::MPL_CONFIG_GUEST_DIR)
            .env("MPLBACKEND", "Agg")
            .monotonic_clock(hostcall::Monotonic)
            .allow_blocking_current_thread(true);
        b.preopened_dir(&paths.lib, "/usr/local/lib", FsPerms::ReadOnly)
            .map_err(crash)?;
        b.preopened_dir(&paths.root, "/", FsPerms::ReadOnly).map_err(crash)?;
        if paths.mpl_data.is_dir() {
            b.preopened_dir(&paths.mpl_data, super::runtime::MPL_DATA_GUEST_DIR, FsPerms::ReadOnly)
                .map_err(crash)?;
        }
        // The tenant's own packages, read-only; nothing else of the host is visible.
        if let Some(dir) = packages {
            b.preopened_dir(dir, super::PACKAGES_GUEST_DIR, FsPerms::ReadOnly)
                .map_err(crash)?;
        }
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).instances(1).build();
        let state = HostState {
            wasi: b.build_p1(),
            limits,
            call: None,
            prelude,
            frames,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(u64::MAX / 4).map_err(crash)?;
        store.set_epoch_deadline(1000);
        store.epoch_deadline_callback(check_call);
        let instance = pre.instantiate(&mut store).map_err(|e| {
            if e.to_string().contains("memory") {
                ErrorRecord::new(
                    ErrorKind::MemoryLimit,
                    format!(
                        "the memory cap ({} MiB) is below what the interpreter needs: {e}",
                        memory_bytes >> 20
                    ),
                )
            } else {
                crash(e)
            }
        })?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).map_err(crash)?;
        }
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| crash("no memory export"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "host_alloc")
            .map_err(crash)?;
        let turn = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "turn")
            .map_err(crash)?;
        Ok(Instance {
            store,
            memory,
            alloc,
            turn,
            prelude_loaded: false,
            loaded: false,
            restored: false,
            prefaulted: false,
            uses: 0,
        })
    }

    /// Change the memory cap (a spare is booted under a generic cap, then given the call's).
    pub fn set_memory_cap(&mut self, bytes: usize) {
        self.store.data_mut().limits = StoreLimitsBuilder::new().memory_size(bytes).instances(1).build();
    }

    pub fn memory_size(&self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    /// The guest's linear memory, read (a snapshot is taken from it).
    pub fn memory_data(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    /// The guest's linear memory, writable (a ready instance's pages are faulted in).
    pub fn memory_data_mut(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }

    /// Grow the linear memory to `bytes` (a snapshot's size) and return where it is and how
    /// large it is now, for the snapshot to be written into.
    pub fn grow_memory_to(&mut self, bytes: usize) -> anyhow::Result<(*mut u8, usize)> {
        let have = self.memory.data_size(&self.store);
        if bytes > have {
            let pages = ((bytes - have) as u64).div_ceil(65536);
            self.memory
                .grow(&mut self.store, pages)
                .map_err(|e| anyhow::anyhow!("growing memory to {bytes} bytes: {e}"))?;
        }
        Ok((self.memory.data_ptr(&self.store), self.memory.data_size(&self.store)))
    }

    /// The bytes of its memory held in pages of its own (the ones it wrote): what keeping it
    /// idle costs the machine. A CPython's linear memory is ~40 MiB, most of it pages of the
    /// interpreter's image or a snapshot, shared by every instance. The linear size where
    /// pages cannot be read (not Linux).
    pub fn resident_size(&self) -> u64 {
        let memory = self.memory.data(&self.store);
        #[cfg(target_os = "linux")]
        if let Some(bytes) = super::pages::private_bytes(memory) {
            return bytes;
        }
        memory.len() as u64
    }

    /// Run `source` in the guest's persistent `__main__`, with `begin` as the reply to the
    /// guest's `begin` frame, within `budget`.
    pub fn turn(&mut self, source: &str, begin: Vec<u8>, budget: Budget, host: Box<dyn Host>) -> TurnEnd {
        let fuel = budget.fuel;
        let now = Instant::now();
        let remaining = budget.deadline.saturating_duration_since(now);
        let _ = self.store.set_fuel(fuel);
        self.store.set_epoch_deadline(ticks(remaining).clamp(1, CHECK_TICKS));
        let limits = self.store.data().frames;
        self.store.data_mut().call = Some(ActiveCall {
            begin,
            end: None,
            oversized_end: false,
            host: Some(host),
            deadline: budget.deadline,
            cancel: budget.cancel,
            limits,
            asked_host: false,
        });
        let result = self.write_and_turn(source);
        let left = self.store.get_fuel().unwrap_or(0);
        let call = self.store.data_mut().call.take();
        let oversized = call.as_ref().is_some_and(|c| c.oversized_end);
        let asked_host = call.as_ref().is_some_and(|c| c.asked_host);
        let (frame, host) = call.map_or((None, None), |c| (c.end, c.host));
        let fuel_used = fuel.saturating_sub(left);
        match result {
            Ok(status) => TurnEnd {
                frame,
                oversized,
                trap: None,
                status,
                fuel_used,
                host,
                asked_host,
            },
            Err(e) => TurnEnd {
                frame,
                oversized,
                trap: Some(classify(&e, remaining)),
                status: -1,
                fuel_used,
                host,
                asked_host,
            },
        }
    }

    fn write_and_turn(&mut self, source: &str) -> wasmtime::Result<i32> {
        let len = i32::try_from(source.len()).map_err(|_| wasmtime::Error::msg("source too large"))?;
        let ptr = self.alloc.call(&mut self.store, len)?;
        if ptr == 0 {
            return Err(wasmtime::Error::msg("host_alloc failed: out of memory"));
        }
        self.memory
            .write(&mut self.store, ptr as u32 as usize, source.as_bytes())?;
        self.turn.call(&mut self.store, (ptr, len))
    }
}

fn ticks(d: std::time::Duration) -> u64 {
    d.as_nanos().div_ceil(TICK.as_nanos()) as u64
}

/// Called each time a store reaches its epoch deadline: stop a cancelled call, or one past
/// its deadline (a store between calls, booting, gets a fixed allowance), else look again a
/// few ticks later.
fn check_call(ctx: wasmtime::StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let Some(call) = ctx.data().call.as_ref() else {
        return Err(Trap::Interrupt.into());
    };
    if call.cancel.is_cancelled() {
        return Err(wasmtime::Error::new(Cancelled));
    }
    let left = call.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(wasmtime::Error::new(DeadlineExceeded));
    }
    Ok(UpdateDeadline::Continue(ticks(left).clamp(1, CHECK_TICKS)))
}

/// Map a trap to the error a user sees.
fn classify(e: &wasmtime::Error, allowed: std::time::Duration) -> ErrorRecord {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => ErrorRecord::new(ErrorKind::OutOfFuel, "the call used up its fuel (instruction budget)"),
            Trap::Interrupt => timeout(allowed),
            Trap::StackOverflow => ErrorRecord::new(
                ErrorKind::Crash,
                "stack overflow in the interpreter (recursion too deep)",
            ),
            other => ErrorRecord::new(ErrorKind::Crash, format!("the interpreter trapped: {other}")),
        };
    }
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return timeout(allowed);
    }
    if e.downcast_ref::<Cancelled>().is_some() {
        return ErrorRecord::new(ErrorKind::Cancelled, "the execution was cancelled");
    }
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return ErrorRecord::new(
            ErrorKind::Crash,
            format!("the code ended the interpreter (exit status {})", exit.0),
        );
    }
    ErrorRecord::new(ErrorKind::Crash, format!("the interpreter failed: {e}"))
}

fn timeout(allowed: std::time::Duration) -> ErrorRecord {
    ErrorRecord::new(
        ErrorKind::Timeout,
        format!("the call ran past its deadline ({:.1} s)", allowed.as_secs_f64()),
    )
}
