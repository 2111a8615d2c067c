//! What a running function may ask the host for besides calling other functions: outbound
//! HTTP (under the tenant's egress policy), its tenant's secrets, structured log lines and
//! its own context. Each use is recorded on the calling step's `activity` (requests by
//! method, URL without query, status, size and time; secrets by name only; never headers,
//! bodies or secret values).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};

use super::tree::CallTree;
use crate::egress;

/// Entries kept per step, and their total size; later ones are counted, not kept.
const MAX_ACTIVITY: usize = 1000;
const MAX_ACTIVITY_BYTES: usize = 1 << 20;
/// Largest single entry (a log line with its fields).
const MAX_ENTRY_BYTES: usize = 16 * 1024;

#[derive(Default)]
struct Log {
    entries: Vec<Value>,
    bytes: usize,
    dropped: usize,
    /// Secret values this call read (memory only), to mask in what it prints.
    secrets: Vec<(String, String)>,
    /// What the call printed, as live `log` events.
    live: super::live_log::LiveLog,
}

/// A step's activity log, shared between the call tree and whoever records the step.
#[derive(Clone, Default)]
pub struct Activity(Arc<Mutex<Log>>);

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The step ended: publish the rest of its output as `log` events (see `live_log`).
    pub fn live_end(&self, stdout: &str, stderr: &str, to: &super::live_log::Target<'_>) {
        self.lock().live.end([stdout, stderr], to);
    }

    /// Keep `entry` if the step's activity has room; whether it was kept.
    pub fn push(&self, entry: Value) -> bool {
        let size = entry.to_string().len();
        let mut g = self.lock();
        if g.entries.len() < MAX_ACTIVITY && g.bytes + size <= MAX_ACTIVITY_BYTES {
            g.bytes += size;
            g.entries.push(entry);
            true
        } else {
            g.dropped += 1;
            false
        }
    }

    /// `text` with the values of the secrets this call read replaced by `[secret NAME]`
    /// (as they are, and as they appear inside a JSON string).
    fn mask(&self, text: &str) -> String {
        let g = self.lock();
        let mut out = text.to_string();
        for (name, value) in &g.secrets {
            let escaped = serde_json::to_string(value).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            for v in [value.as_str(), escaped] {
                if !v.is_empty() && out.contains(v) {
                    out = out.replace(v, &format!("[secret {name}]"));
                }
            }
        }
        out
    }

    /// A JSON value with secret values masked.
    fn mask_json(&self, v: &Value) -> Value {
        serde_json::from_str(&self.mask(&v.to_string())).unwrap_or(Value::Null)
    }

    fn read_secret(&self, name: &str, value: &str) {
        let mut g = self.lock();
        if value.len() >= 4 && !g.secrets.iter().any(|(n, _)| n == name) {
            g.secrets.push((name.to_string(), value.to_string()));
        }
    }

    /// The JSON to store, or None when nothing happened.
    pub fn to_json(&self) -> Option<String> {
        let g = self.lock();
        if g.entries.is_empty() {
            return None;
        }
        let mut list = g.entries.clone();
        if g.dropped > 0 {
            list.push(json!({"type": "dropped", "count": g.dropped}));
        }
        drop(g);
        Some(self.mask(&Value::Array(list).to_string()))
    }

    /// Mask the values of secrets the call read in what it printed and in its error, so a
    /// stray `print(token)` or `raise ValueError(token)` does not put a secret in the
    /// records. (Its return value is its own business and is kept as returned.)
    pub fn redact(&self, outcome: &mut crate::sandbox::Outcome) {
        let g = self.lock();
        if g.secrets.is_empty() {
            return;
        }
        let mask = |text: &mut String| {
            for (name, value) in &g.secrets {
                if text.contains(value.as_str()) {
                    *text = text.replace(value.as_str(), &format!("[secret {name}]"));
                }
            }
        };
        mask(&mut outcome.stdout);
        mask(&mut outcome.stderr);
        if let Err(e) = &mut outcome.result {
            mask(&mut e.message);
            if let Some(tb) = &mut e.traceback {
                mask(tb);
            }
        }
    }
}

/// What the whole execution shares: who started it, and the outbound request count.
pub struct Shared {
    pub trigger: &'static str,
    pub attempt: Option<i64>,
    pub requests: AtomicU32,
    /// Threads running gathered calls now.
    pub threads: AtomicU32,
    /// Database look-ups the guest has caused (name resolutions, secret reads).
    lookups: AtomicU32,
    /// Names already resolved in this execution, and whether they are functions.
    names: Mutex<std::collections::HashMap<String, bool>>,
    /// Secrets already read in this execution: the value, or why there is none.
    secrets: Mutex<std::collections::HashMap<String, SecretRead>>,
    /// Where the root call's output goes as it is printed (`?stream=true`).
    pub stream: Option<OutputStream>,
}

/// A streamed run's output: chunks of `stdout`/`stderr` as the root call prints them, at
/// most `cap` bytes in all (what the capture keeps), secrets masked.
pub struct OutputStream {
    pub tx: tokio::sync::mpsc::UnboundedSender<(&'static str, String)>,
    pub cap: usize,
    pub sent: std::sync::atomic::AtomicUsize,
}

/// Longest chunk one `out` frame may carry.
const MAX_CHUNK_BYTES: usize = 64 << 10;

/// A secret's value, or the error kind and message saying why there is none.
type SecretRead = Result<String, (String, String)>;

/// Most database look-ups (names resolved, secrets read) one execution may cause. Without a
/// fuel budget a guest could otherwise loop on `_host.call` and keep the database busy until
/// its deadline.
pub const MAX_LOOKUPS: u32 = 1000;

impl Shared {
    pub fn new(trigger: &'static str, attempt: Option<i64>) -> Shared {
        Shared {
            trigger,
            attempt,
            requests: AtomicU32::new(0),
            threads: AtomicU32::new(0),
            lookups: AtomicU32::new(0),
            names: Mutex::new(Default::default()),
            secrets: Mutex::new(Default::default()),
            stream: None,
        }
    }

    /// Count one database look-up; false once the execution has used [`MAX_LOOKUPS`].
    pub fn lookup(&self) -> bool {
        self.lookups.fetch_add(1, Ordering::Relaxed) < MAX_LOOKUPS
    }

    /// Whether `name` is a function, from this execution's memory or from `ask` (counted).
    pub fn resolve_name(&self, name: &str, ask: impl FnOnce() -> bool) -> bool {
        let names = || self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = names().get(name) {
            return *found;
        }
        if !self.lookup() {
            return false;
        }
        let found = ask();
        let mut names = names();
        if names.len() < MAX_LOOKUPS as usize {
            names.insert(name.to_string(), found);
        }
        found
    }

    /// Take up to `want` of the execution's gather threads; answers how many were taken.
    pub fn reserve_threads(&self, want: usize) -> usize {
        let cap = super::tree::GATHER_PARALLEL as u32;
        let mut taken = 0;
        let _ = self.threads.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            taken = (cap.saturating_sub(used)).min(want as u32);
            Some(used + taken)
        });
        taken as usize
    }

    pub fn release_threads(&self, n: usize) {
        self.threads.fetch_sub(n as u32, Ordering::AcqRel);
    }
}

fn fail(kind: &str, message: impl Into<String>) -> Value {
    json!({"ok": false, "error": {"kind": kind, "message": message.into()}})
}

impl CallTree {
    pub(super) fn use_capability(&mut self, op: &str, frame: &Value, deadline: Instant) -> Value {
        match op {
            "context" => json!({"ok": true, "context": {
                "execution_id": self.execution_id, "step_id": self.step_id, "tenant": self.tenant,
                "function": self.function, "version": self.version, "depth": self.depth,
                "trigger": self.shared.trigger, "attempt": self.shared.attempt,
            }}),
            "secret" => self.secret(frame["name"].as_str().unwrap_or("")),
            "log" => self.log(frame),
            "out" => self.out(frame),
            "http" => self.http(frame, deadline),
            other => fail("crash", format!("unknown capability {other:?}")),
        }
    }

    /// A chunk of the call's printed output: published masked as live `log` events of its
    /// step, and, for the root call of a streamed run, passed on within the caps (a guest
    /// may send these frames whenever it likes; the step's record keeps what it captured).
    fn out(&mut self, frame: &Value) -> Value {
        let kind = match frame["stream"].as_str() {
            Some("stderr") => "stderr",
            _ => "stdout",
        };
        let text = frame["text"].as_str().unwrap_or("");
        let text = &text[..floor_boundary(text, MAX_CHUNK_BYTES)];
        let to = super::live_log::Target {
            events: &self.inner.events,
            tenant: &self.tenant,
            execution_id: &self.execution_id,
            step_id: &self.step_id,
        };
        let masked = self.activity.mask(text);
        self.activity.lock().live.chunk(kind, &masked, &to);
        let (Some(stream), 0) = (self.shared.stream.as_ref(), self.depth) else {
            return json!({"ok": true});
        };
        let room = stream
            .cap
            .saturating_sub(stream.sent.load(std::sync::atomic::Ordering::Relaxed));
        let end = floor_boundary(text, room);
        if end > 0 {
            stream.sent.fetch_add(end, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.tx.send((kind, self.activity.mask(&text[..end])));
        }
        json!({"ok": true})
    }

    fn secret(&mut self, name: &str) -> Value {
        if !crate::secrets::valid_name(name) {
            return fail(
                "invalid_request",
                format!("{name:?} is not a secret name (letters, digits, _)"),
            );
        }
        let read = match self.read_secret(name) {
            Some(read) => read,
            None => {
                return fail(
                    "lookup_limit",
                    format!("this execution already made {MAX_LOOKUPS} look-ups (secrets read, names resolved)"),
                )
            }
        };
        self.activity
            .push(json!({"type": "secret", "name": name, "found": read.is_ok()}));
        match read {
            Ok(value) => {
                self.activity.read_secret(name, &value);
                json!({"ok": true, "value": value})
            }
            Err((kind, message)) => fail(&kind, message),
        }
    }

    /// A secret's value (or why there is none), read once per execution; None once the
    /// execution has used its look-ups.
    fn read_secret(&mut self, name: &str) -> Option<SecretRead> {
        let cache = |s: &Shared| s.secrets.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        if let Some(read) = cache(&self.shared) {
            return Some(read);
        }
        if !self.shared.lookup() {
            return None;
        }
        let inner = self.inner.clone();
        let read = match self.block_on(inner.store.tenant(&self.tenant).sealed_secret(name)) {
            Ok(Some((nonce, ct))) => inner
                .vault
                .open(&self.tenant, name, &nonce, &ct)
                .map_err(|e| ("secret_unreadable".to_string(), e.to_string())),
            Ok(None) => Err(("secret_not_found".to_string(), format!("no secret named {name}"))),
            Err(e) => return Some(Err(("crash".to_string(), format!("reading secret {name}: {e}")))),
        };
        let mut secrets = self.shared.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if secrets.len() < MAX_LOOKUPS as usize {
            secrets.insert(name.to_string(), read.clone());
        }
        Some(read)
    }

    fn log(&mut self, frame: &Value) -> Value {
        let level = frame["level"].as_str().unwrap_or("info");
        let level = if matches!(level, "debug" | "info" | "warning" | "error") {
            level
        } else {
            "info"
        };
        let message: String = frame["message"].as_str().unwrap_or("").chars().take(8192).collect();
        let fields = match &frame["fields"] {
            Value::Object(m) if m.len() <= 64 => Value::Object(m.clone()),
            _ => json!({}),
        };
        let mut entry = json!({"type": "log", "level": level, "message": message, "fields": fields,
                           "at": crate::store::now_ms()});
        if entry.to_string().len() > MAX_ENTRY_BYTES {
            let short: String = entry["message"].as_str().unwrap_or("").chars().take(2048).collect();
            entry["message"] = json!(short);
            entry["fields"] = json!({"truncated": true});
        }
        let entry = self.activity.mask_json(&entry);
        // What the step cannot keep is not streamed either: a guest logging in a loop gets
        // a bounded number of events, counted as dropped past that.
        if !self.activity.push(entry.clone()) {
            return json!({"ok": true, "dropped": true});
        }
        let mut event = entry;
        event["step_id"] = json!(self.step_id);
        event["function"] = json!(self.function);
        self.inner
            .events
            .publish(&self.tenant, &self.execution_id, "log.structured", event);
        json!({"ok": true})
    }

    fn http(&mut self, frame: &Value, deadline: Instant) -> Value {
        let inner = self.inner.clone();
        let policy = match self.block_on(inner.egress.policy(&self.tenant)) {
            Ok(p) => p,
            Err(e) => return fail("crash", format!("reading the egress policy: {e}")),
        };
        let url = frame["url"].as_str().unwrap_or("").to_string();
        let method = frame["method"].as_str().unwrap_or("GET").to_string();
        let shown = shown_url(&url);
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n > policy.max_requests_per_execution {
            let message = format!(
                "this execution already made {} requests; that is the limit",
                policy.max_requests_per_execution
            );
            self.activity
                .push(json!({"type": "http", "method": method, "url": shown, "error": "request_limit"}));
            return fail("request_limit", message);
        }
        let headers = match &frame["headers"] {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let body = match frame["body_b64"].as_str() {
            Some(b) => match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => Some(bytes),
                Err(_) => return fail("invalid_request", "the body is not valid base64"),
            },
            None => None,
        };
        let req = egress::Request {
            method: method.clone(),
            url,
            headers,
            body,
            timeout: frame["timeout"].as_f64(),
        };
        let started = Instant::now();
        let result = self.block_on(inner.egress.send(&policy, req, deadline));
        let ms = (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
        match result {
            Ok(r) => {
                self.activity.push(
                    json!({"type": "http", "method": method.to_ascii_uppercase(), "url": shown,
                    "status": r.status, "bytes": r.body.len(), "duration_ms": ms}),
                );
                json!({"ok": true, "status": r.status, "headers": r.headers, "url": r.url,
                       "body_b64": base64::engine::general_purpose::STANDARD.encode(&r.body)})
            }
            Err(e) => {
                self.activity.push(
                    json!({"type": "http", "method": method.to_ascii_uppercase(), "url": shown,
                    "error": e.kind, "message": e.message, "duration_ms": ms}),
                );
                fail(e.kind, e.message)
            }
        }
    }
}

/// The URL as recorded: scheme, host, port and path; no user info, query or fragment (where
/// tokens tend to travel).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}{}", u.scheme(), u.host_str().unwrap_or(""), u.path())
        }
        Err(_) => url.chars().take(200).collect(),
    }
}

/// The largest index at most `max` that is a character boundary of `text`.
fn floor_boundary(text: &str, max: usize) -> usize {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}
