//! The two host functions the guest reaches us through.
//!
//! `host.call(req_ptr, req_len, out_ptr_ptr, out_len_ptr) -> i32` carries small JSON frames:
//! `{"op": "prelude"}` (the precompiled prelude, as marshal bytes), `{"op": "begin"}` (the call's input and, the first time, the code), `{"op": "end", ...}`
//! (the result), `{"op": "resolve", "function"}` (is that name callable?) and
//! `{"op": "call", "function", "input"}` (run another function), `{"op": "gather", "input":
//! [[name, input], ...]}` (run several at once), and the capabilities
//! `http`, `secret`, `log` and `context` (answered by the [`super::Host`]). Every frame is untrusted:
//! user code can call `_host.call` directly with anything.
//!
//! `poll_oneoff` replaces WASI's so that `time.sleep()` cannot outlive the call's deadline:
//! a sleep blocks the host thread, where epoch interruption cannot reach it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use wasmtime::{Caller, Extern, Linker};

use super::cancel::{Cancel, Cancelled};
use super::instance::HostState;
use super::{Budget, ErrorKind, ErrorRecord, Host, Nested};

/// A guest frame larger than this is refused (inputs are capped far below it).
const MAX_FRAME: usize = 64 << 20;
/// Fuel charged per host call and per frame byte: host work is not free, so a guest cannot
/// loop on `_host.call` at no cost.
const FUEL_PER_CALL: u64 = 10_000;
const FUEL_PER_BYTE: u64 = 4;

/// The guest's monotonic clock: nanoseconds since a process-wide epoch, so `poll_oneoff`
/// can turn an absolute monotonic deadline (CPython's `time.sleep`) into a wait.
pub struct Monotonic;

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl wasmtime_wasi::HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        epoch().elapsed().as_nanos() as u64
    }
}

/// Raised (as a trap) when a call reaches its deadline (asleep, or at an epoch check).
#[derive(Debug)]
pub struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded while sleeping")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A frame as first read: the operation and name, and the input left as raw text. Other
/// fields are skipped without being built, so a large frame costs its bytes, not the many
/// times more memory its parsed JSON would take; each operation then parses what it needs
/// under its own size limit.
#[derive(Deserialize)]
struct Frame {
    op: String,
    #[serde(default)]
    function: String,
    #[serde(default)]
    input: Option<Box<RawValue>>,
}

/// How large the guest's frames may be, by what they carry.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// A nested call's input (the server's `MAX_INPUT_BYTES`).
    pub input: usize,
    /// The `end` report: a larger one is not kept (no real report is that large).
    pub report: usize,
}

/// Largest capability frame (`http` with its base64 body, `log`, ...): a request body of
/// up to 12 MiB.
const MAX_CAPABILITY_FRAME: usize = 16 << 20;
/// Largest total input of one `gather`.
const MAX_GATHER_BYTES: usize = 16 << 20;

pub(super) fn link(linker: &mut wasmtime::Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("host", "call", host_call)?;
    link_poll(linker)
}

fn host_call(
    mut caller: Caller<'_, HostState>,
    req_ptr: i32,
    req_len: i32,
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(-2);
    };
    let (start, len) = (req_ptr as u32 as usize, req_len as u32 as usize);
    if len > MAX_FRAME {
        return Ok(-2);
    }
    let Some(bytes) = memory.data(&caller).get(start..start + len).map(<[u8]>::to_vec) else {
        return Ok(-2);
    };
    let cost = FUEL_PER_CALL + FUEL_PER_BYTE * len as u64;
    let left = caller.get_fuel().unwrap_or(0);
    if left < cost {
        return Err(wasmtime::Trap::OutOfFuel.into());
    }
    let _ = caller.set_fuel(left - cost);
    let reply = match serde_json::from_slice::<Frame>(&bytes) {
        Ok(frame) => handle(&mut caller, frame, bytes),
        Err(e) => json!({"ok": false, "error": {"kind": "crash", "message": format!("malformed frame: {e}")}})
            .to_string()
            .into_bytes(),
    };
    write_reply(&mut caller, memory, &reply, out_ptr, out_len)
}

fn handle(caller: &mut Caller<'_, HostState>, frame: Frame, raw: Vec<u8>) -> Vec<u8> {
    if frame.op == "prelude" {
        return caller.data().prelude.to_vec();
    }
    let Some(call) = caller.data_mut().call.as_mut() else {
        return b"{}".to_vec();
    };
    if matches!(frame.op.as_str(), "call" | "gather" | "http" | "secret" | "context") {
        call.asked_host = true;
    }
    match frame.op.as_str() {
        "begin" => call.begin.clone(),
        "end" => {
            // An oversized report is dropped here; the call then ends without one.
            call.oversized_end = raw.len() > call.limits.report;
            call.end = (!call.oversized_end).then_some(raw);
            b"{}".to_vec()
        }
        "resolve" => {
            let found = call.host.as_mut().is_some_and(|h| h.resolve(&frame.function));
            json!({ "found": found }).to_string().into_bytes()
        }
        "call" => {
            let limit = call.limits.input;
            match parse_input(frame.input.as_deref(), limit) {
                Ok(input) => nested(caller, &frame.function, input),
                Err(e) => failed(e),
            }
        }
        "gather" => gather(caller, frame.input.as_deref()),
        "http" | "secret" | "log" | "context" | "out" => {
            if raw.len() > MAX_CAPABILITY_FRAME {
                let message = format!(
                    "the request is {} bytes; the limit is {MAX_CAPABILITY_FRAME}",
                    raw.len()
                );
                return failed(ErrorRecord::new(ErrorKind::InputValidation, message));
            }
            let deadline = call.deadline;
            let Some(host) = call.host.as_mut() else {
                return json!({"ok": false, "error": {"kind": "crash", "message": "re-entrant call"}})
                    .to_string()
                    .into_bytes();
            };
            let value: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            host.capability(&frame.op, &value, deadline).to_string().into_bytes()
        }
        other => json!({"ok": false, "error": {"kind": "crash", "message": format!("unknown frame op {other:?}")}})
            .to_string()
            .into_bytes(),
    }
}

fn failed(e: ErrorRecord) -> Vec<u8> {
    json!({"ok": false, "error": e}).to_string().into_bytes()
}

/// A nested call's input, parsed only when it is within `limit` bytes.
fn parse_input(raw: Option<&RawValue>, limit: usize) -> Result<Value, ErrorRecord> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    if raw.get().len() > limit {
        let message = format!("the input is {} bytes; the limit is {limit}", raw.get().len());
        return Err(ErrorRecord::new(ErrorKind::InputValidation, message));
    }
    serde_json::from_str(raw.get()).map_err(|e| ErrorRecord::new(ErrorKind::InputValidation, e.to_string()))
}

/// A call's result as the guest reads it.
fn reply_of(n: Nested) -> Value {
    match n.result {
        Ok(output) => json!({"ok": true, "output": output}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// Lend the host to `run` with this call's remaining fuel and deadline as the budget, then
/// charge the fuel `run` reports it used.
fn with_host<T>(
    caller: &mut Caller<'_, HostState>,
    run: impl FnOnce(&mut dyn Host, Budget) -> (T, u64),
) -> Result<T, Vec<u8>> {
    let remaining = caller.get_fuel().unwrap_or(0);
    let Some(call) = caller.data_mut().call.as_mut() else {
        return Err(b"{}".to_vec());
    };
    let budget = Budget {
        fuel: remaining,
        deadline: call.deadline,
        cancel: call.cancel,
    };
    let Some(mut host) = call.host.take() else {
        return Err(failed(ErrorRecord::new(ErrorKind::Crash, "re-entrant call")));
    };
    let (out, used) = run(host.as_mut(), budget);
    if let Some(call) = caller.data_mut().call.as_mut() {
        call.host = Some(host);
    }
    let _ = caller.set_fuel(remaining.saturating_sub(used));
    Ok(out)
}

/// Run another function with this call's remaining fuel and deadline; charge what it used.
fn nested(caller: &mut Caller<'_, HostState>, name: &str, input: Value) -> Vec<u8> {
    with_host(caller, |host, budget| {
        let n = host.call(name, input, budget);
        let used = n.fuel_used;
        (reply_of(n), used)
    })
    .map_or_else(|e| e, |v| v.to_string().into_bytes())
}

/// Most calls one `gather` may ask for.
const MAX_GATHER: usize = 64;

/// Run several functions at once (`input` is `[[name, input], ...]`), each with an equal
/// share of this call's remaining fuel and its deadline; charge what they used in all.
fn gather(caller: &mut Caller<'_, HostState>, input: Option<&RawValue>) -> Vec<u8> {
    let raw = input.map_or("null", RawValue::get);
    if raw.len() > MAX_GATHER_BYTES {
        let message = format!(
            "a gather's inputs are {} bytes; the limit is {MAX_GATHER_BYTES}",
            raw.len()
        );
        return failed(ErrorRecord::new(ErrorKind::InputValidation, message));
    }
    let listed: Vec<(String, Box<RawValue>)> = match serde_json::from_str(raw) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("gather takes [(name, input), ...]: {e}");
            return failed(ErrorRecord::new(ErrorKind::InputValidation, message));
        }
    };
    if listed.len() > MAX_GATHER {
        let message = format!("at most {MAX_GATHER} calls per gather");
        return failed(ErrorRecord::new(ErrorKind::CallLimit, message));
    }
    let limit = caller.data().call.as_ref().map_or(0, |c| c.limits.input);
    let mut calls = Vec::with_capacity(listed.len());
    for (name, raw) in listed {
        match parse_input(Some(&raw), limit) {
            Ok(input) => calls.push((name, input)),
            Err(e) => return failed(e),
        }
    }
    with_host(caller, |host, budget| {
        let results = host.gather(calls, budget);
        let used = results.iter().map(|n| n.fuel_used).sum();
        (results.into_iter().map(reply_of).collect::<Vec<_>>(), used)
    })
    .map_or_else(|e| e, |r| json!({"ok": true, "results": r}).to_string().into_bytes())
}

/// Allocate the reply in the guest, copy it in, and store its pointer and length.
fn write_reply(
    caller: &mut Caller<'_, HostState>,
    memory: wasmtime::Memory,
    reply: &[u8],
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Func(alloc)) = caller.get_export("host_alloc") else {
        return Ok(-2);
    };
    let alloc = alloc.typed::<i32, i32>(&*caller)?;
    let len = i32::try_from(reply.len()).map_err(|_| wasmtime::Error::msg("reply too large"))?;
    let ptr = alloc.call(&mut *caller, len.max(1))?;
    if ptr == 0 {
        return Ok(-2);
    }
    let data = memory.data_mut(&mut *caller);
    let (p, op, ol) = (ptr as u32 as usize, out_ptr as u32 as usize, out_len as u32 as usize);
    let fits = |at: usize, n: usize| at.checked_add(n).is_some_and(|end| end <= data.len());
    if !fits(p, reply.len()) || !fits(op, 4) || !fits(ol, 4) {
        return Ok(-2);
    }
    data[p..p + reply.len()].copy_from_slice(reply);
    data[op..op + 4].copy_from_slice(&(ptr as u32).to_le_bytes());
    data[ol..ol + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(0)
}

// WASI preview1 layouts: subscription = 48 bytes, event = 32 bytes.
const SUB_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EBADF: u16 = 8;
const EINVAL: i32 = 28;
/// How often a sleeping call looks whether it was cancelled.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

fn link_poll(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("wasi_snapshot_preview1", "poll_oneoff", poll_oneoff)?;
    Ok(())
}

/// Clock subscriptions sleep (never past the deadline); fd subscriptions fail at once with
/// EBADF, since the guest has no pollable descriptors.
fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(EINVAL);
    };
    let n = nsubs as u32 as usize;
    if n == 0 || n > 64 {
        return Ok(EINVAL);
    }
    let (sp, ep, np) = (subs as u32 as usize, events as u32 as usize, nevents as u32 as usize);
    let data = memory.data(&caller);
    let Some(raw) = data.get(sp..sp + n * SUB_SIZE).map(<[u8]>::to_vec) else {
        return Ok(EINVAL);
    };
    if data.len() < ep + n * EVENT_SIZE || data.len() < np + 4 {
        return Ok(EINVAL);
    }
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut out: Vec<[u8; EVENT_SIZE]> = Vec::new();
    let mut sleep: Option<(Duration, u64)> = None;
    for sub in raw.chunks_exact(SUB_SIZE) {
        let userdata = u64_at(sub, 0);
        let tag = sub[8];
        if tag == 0 {
            let clock_id = u32::from_le_bytes(sub[16..20].try_into().unwrap_or([0; 4]));
            let timeout = u64_at(sub, 24);
            let abstime = sub[40] & 1 == 1;
            let wait = if !abstime {
                Duration::from_nanos(timeout)
            } else if clock_id == 0 {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Duration::from_nanos(timeout).saturating_sub(now)
            } else {
                Duration::from_nanos(timeout).saturating_sub(epoch().elapsed())
            };
            if sleep.is_none_or(|(w, _)| wait < w) {
                sleep = Some((wait, userdata));
            }
        } else {
            out.push(event(userdata, EBADF, tag));
        }
    }
    if out.is_empty() {
        if let Some((wait, userdata)) = sleep {
            let call = caller.data().call.as_ref();
            let (deadline, cancel) = (call.map(|c| c.deadline), call.map_or(Cancel::NEVER, |c| c.cancel));
            sleep_until(Instant::now() + wait, deadline, cancel)?;
            out.push(event(userdata, 0, 0));
        }
    }
    let data = memory.data_mut(&mut caller);
    for (i, ev) in out.iter().enumerate() {
        data[ep + i * EVENT_SIZE..ep + (i + 1) * EVENT_SIZE].copy_from_slice(ev);
    }
    data[np..np + 4].copy_from_slice(&(out.len() as u32).to_le_bytes());
    Ok(0)
}

/// Sleep until `until`, or trap at the call's deadline, or as soon as the call is cancelled
/// (checked every [`SLEEP_SLICE`]).
fn sleep_until(until: Instant, deadline: Option<Instant>, cancel: Cancel) -> wasmtime::Result<()> {
    let end = deadline.map_or(until, |d| d.min(until));
    loop {
        if cancel.is_cancelled() {
            return Err(wasmtime::Error::new(Cancelled));
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(SLEEP_SLICE));
    }
    match deadline {
        Some(d) if d < until => Err(wasmtime::Error::new(DeadlineExceeded)),
        _ => Ok(()),
    }
}

fn event(userdata: u64, error: u16, kind: u8) -> [u8; EVENT_SIZE] {
    let mut ev = [0u8; EVENT_SIZE];
    ev[0..8].copy_from_slice(&userdata.to_le_bytes());
    ev[8..10].copy_from_slice(&error.to_le_bytes());
    ev[10] = kind;
    ev
}
