//! Sessions: an interpreter kept between cells, like a notebook kernel. Globals, imports and
//! loaded data persist; each cell is its own execution (trigger `session`, function
//! [`SESSION_FUNCTION`]) with its own deadline and fuel. The interpreter lives in this
//! server's memory; the `sessions` row names the server, so another replica answers 409
//! naming it (or 410 once the session ended or its server is gone). Cells of one session
//! run one at a time, in the order they arrive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::OwnedMutexGuard;

use super::code::script_function;
use super::{Engine, Error, Inner, Result, Schemas, Started, Trigger, Unit};
use crate::domain::FunctionSettings;
use crate::sandbox::{Budget, CallSpec, Cancel, ErrorRecord, FileAnswer, FileOp, Host, Kept, Outcome, Sandbox};
use crate::store::{now_ms, SessionRow, SessionUsage};

/// The function name a session cell's execution carries (reserved, like `__run__`).
pub const SESSION_FUNCTION: &str = "__session__";
/// How long ended sessions stay listed.
const LISTED_AFTER_END_MS: i64 = 86_400_000;

/// What a new session asks for (checked by the service against the server's maxima).
pub struct SessionOptions {
    /// Each cell's timeout and fuel, and the interpreter's memory cap.
    pub settings: FunctionSettings,
    pub idle_ttl: Duration,
}

/// A session held here.
pub(super) struct Live {
    row: Mutex<SessionRow>,
    kept: Arc<tokio::sync::Mutex<Kept>>,
}

impl Live {
    fn row(&self) -> SessionRow {
        self.row.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn edit<R>(&self, f: impl FnOnce(&mut SessionRow) -> R) -> R {
        f(&mut self.row.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The sessions this server holds, by id.
#[derive(Default)]
pub(super) struct Registry {
    live: Mutex<HashMap<String, Arc<Live>>>,
}

impl Registry {
    fn get(&self, tenant: &str, id: &str) -> Option<Arc<Live>> {
        let map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|l| l.row().tenant == tenant).cloned()
    }

    fn all(&self) -> Vec<Arc<Live>> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Forget sessions that ended before `before` (kept until then so that their own server
    /// answers why they ended, even before the row says so).
    fn forget_ended(&self, before: i64) {
        let mut map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| l.row().ended_at.is_none_or(|at| at >= before));
    }
}

/// A cell's hold on its session's interpreter, for the cell's whole run.
pub(super) struct Cell {
    kept: OwnedMutexGuard<Kept>,
    live: Arc<Live>,
    sandbox: Arc<Sandbox>,
}

impl Drop for Cell {
    /// The session was deleted while the cell ran (or the cell never started): its
    /// interpreter goes now, as nobody else could take it meanwhile.
    fn drop(&mut self) {
        if self.live.row().status != "active" {
            self.sandbox.release(&mut self.kept);
        }
    }
}

impl Cell {
    /// Run the cell; a cell that crashed the interpreter ends the session.
    pub(super) fn run(mut self, inner: &Arc<Inner>, spec: &CallSpec<'_>, host: Box<dyn Host>) -> Outcome {
        let outcome = inner.sandbox.run_cell(&mut self.kept, spec, host);
        let now = now_ms();
        self.live.edit(|r| {
            r.last_used_at = now;
            r.expires_at = now + r.idle_ttl_seconds * 1000;
        });
        if !self.kept.alive() {
            let error = self.kept.lost.clone();
            inner.end_session(&self.live, "crashed", error.as_ref());
        }
        outcome
    }
}

impl Inner {
    /// Mark a session held here ended (once), and record why (the row's write is sent off;
    /// callers that answer on it await their own). The interpreter is released by whoever
    /// holds its lock: the caller, or the cell running now when it ends.
    fn end_session(&self, live: &Live, reason: &str, error: Option<&ErrorRecord>) {
        let now = now_ms();
        let first = live.edit(|r| {
            let first = r.status == "active";
            if first {
                r.status = "ended".into();
                r.end_reason = Some(reason.to_string());
                r.error = error.map(|e| json!(e).to_string());
                r.ended_at = Some(now);
            }
            first
        });
        let row = live.row();
        if first {
            let store = self.store.clone();
            let reason = reason.to_string();
            self.rt.spawn(async move {
                if let Err(e) = store.end_session(&row.id, &reason, row.error.as_deref(), now).await {
                    tracing::warn!(error = %e, session = %row.id, "could not record the end of a session");
                }
            });
        }
    }
}

/// The 429 that refuses a new session of `memory_mb` when the tenant's open ones already
/// use `usage`.
fn over_caps(tenant: &str, usage: SessionUsage, memory_mb: i64, max_count: i64, max_mb: i64) -> Result<()> {
    let message = if usage.count >= max_count {
        format!(
            "tenant {tenant} has {} open sessions; the limit is {max_count} (SESSIONS_MAX_PER_TENANT): \
             delete one or let it expire",
            usage.count
        )
    } else if usage.memory_mb + memory_mb > max_mb {
        format!(
            "tenant {tenant}'s open sessions hold {} MiB; another {memory_mb} MiB would pass the limit of \
             {max_mb} MiB (SESSIONS_MEMORY_MAX_MB)",
            usage.memory_mb
        )
    } else {
        return Ok(());
    };
    Err(Error::Quota {
        message,
        retry_after_seconds: 5,
    })
}

impl Inner {
    /// A request that waited for the session's interpreter (behind a cell) may find the
    /// session ended meanwhile (deleted, expired, crashed): then the interpreter goes now, as
    /// the one who ended it could not take it, and the answer is the 410.
    fn check_still_active(&self, live: &Live, kept: &mut Kept) -> Result<()> {
        if live.row().status == "active" && !kept.alive() {
            let error = kept.lost.clone();
            self.end_session(live, "crashed", error.as_ref());
        }
        if live.row().status != "active" {
            self.sandbox.release(kept);
            return Err(gone(&live.row()));
        }
        Ok(())
    }

    /// The session is used now (a cell, a file): its idle time starts again, here and in its
    /// row. A row another server ended meanwhile (it took this one for dead) ends it here too.
    fn touch(self: &Arc<Self>, live: &Arc<Live>, cell: bool) -> SessionRow {
        let now = now_ms();
        let row = live.edit(|r| {
            r.execution_count += i64::from(cell);
            r.last_used_at = now;
            r.expires_at = now + r.idle_ttl_seconds * 1000;
            r.clone()
        });
        // The row's expiry leaves a cell its whole timeout, so the caps still count the
        // session while it runs.
        let timeout_ms = (row.timeout_seconds.unwrap_or(self.settings.function_timeout) * 1000.0) as i64;
        let (inner, live, id) = (self.clone(), live.clone(), row.id.clone());
        let (count, expires) = (row.execution_count, row.expires_at + timeout_ms);
        self.rt.spawn(async move {
            match inner.store.touch_session(&id, count, now, expires).await {
                Ok(false) => inner.end_session(&live, "server_stopped", None),
                Ok(true) => {}
                Err(e) => tracing::warn!(error = %e, session = %id, "could not record a session's use"),
            }
        });
        row
    }
}

/// The limits a session's cells (and file requests) run under.
fn settings_of(row: &SessionRow) -> FunctionSettings {
    FunctionSettings {
        timeout_seconds: row.timeout_seconds,
        memory_mb: Some(row.memory_mb as u64),
        fuel: row.fuel.map(|f| f as u64),
        isolation: None,
        on_interrupt: None,
    }
}

/// Why an ended session cannot run, as a 410 says it.
fn gone(row: &SessionRow) -> Error {
    let why = match row.end_reason.as_deref() {
        Some("deleted") => "it was deleted".to_string(),
        Some("expired") => format!("it was idle for more than {} s", row.idle_ttl_seconds),
        Some("crashed") => {
            let e: Option<ErrorRecord> = row.error.as_deref().and_then(|e| serde_json::from_str(e).ok());
            match e {
                Some(e) => format!("a cell crashed its interpreter: {}", e.message),
                None => "a cell crashed its interpreter".into(),
            }
        }
        Some("server_stopped") => format!("its server ({}) stopped", row.node_id),
        _ => "it ended".into(),
    };
    Error::Gone(format!("session {} has ended: {why}", row.id))
}

impl Engine {
    /// Open a session for `tenant`, if its caps allow another.
    pub async fn open_session(&self, tenant: &str, opts: SessionOptions) -> Result<SessionRow> {
        let inner = &self.inner;
        inner.check_open()?;
        let cfg = &inner.settings;
        let (_, _, _, memory) = inner.limits(&opts.settings);
        let memory_mb = (memory >> 20) as i64;
        let now = now_ms();
        let (max_count, max_mb) = (cfg.sessions_max_per_tenant as i64, cfg.sessions_memory_max_mb as i64);
        // Checked before an interpreter starts, and again with the insert (see below).
        let usage = inner.store.tenant(tenant).session_usage(now).await?;
        over_caps(tenant, usage, memory_mb, max_count, max_mb)?;
        let packages = inner.packages.mount(tenant).await?;
        let sandbox = inner.sandbox.clone();
        let files_cap = cfg.session_files_max_bytes as usize;
        let kept = inner
            .workers
            .run(move || sandbox.keep(memory, files_cap, packages.as_deref()))
            .await
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the sandbox worker panicked")))?
            .map_err(|e| Error::Internal(anyhow::anyhow!("could not start an interpreter: {}", e.message)))?;
        let ttl = opts.idle_ttl.as_secs() as i64;
        let row = SessionRow {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_string(),
            node_id: inner.node_id.clone(),
            status: "active".into(),
            end_reason: None,
            error: None,
            timeout_seconds: opts.settings.timeout_seconds,
            memory_mb,
            fuel: opts.settings.fuel.map(|f| f as i64),
            idle_ttl_seconds: ttl,
            execution_count: 0,
            created_at: now,
            last_used_at: now,
            expires_at: now + ttl * 1000,
            ended_at: None,
        };
        let mut kept = kept;
        // The caps are checked again in the insert's transaction, as concurrent opens of
        // the tenant (on any server) may have taken the room meanwhile.
        let refused = match inner.store.tenant(tenant).open_session(&row, max_count, max_mb).await {
            Ok(Ok(())) => None,
            Ok(Err(usage)) => over_caps(tenant, usage, memory_mb, max_count, max_mb).err(),
            Err(e) => Some(e.into()),
        };
        if let Some(e) = refused {
            inner.sandbox.release(&mut kept);
            return Err(e);
        }
        let live = Arc::new(Live {
            row: Mutex::new(row.clone()),
            kept: Arc::new(tokio::sync::Mutex::new(kept)),
        });
        inner
            .sessions
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.id.clone(), live);
        Ok(row)
    }

    /// Session `id` of `tenant`, held here or elsewhere.
    pub async fn session(&self, tenant: &str, id: &str) -> Result<SessionRow> {
        match self.inner.sessions.get(tenant, id) {
            Some(live) => Ok(live.row()),
            None => self.stored_session(tenant, id).await,
        }
    }

    /// The tenant's open sessions and those ended in the last day, newest first.
    pub async fn sessions(&self, tenant: &str) -> Result<Vec<SessionRow>> {
        let mut rows = self
            .inner
            .store
            .tenant(tenant)
            .sessions(now_ms() - LISTED_AFTER_END_MS, 500)
            .await?;
        for row in rows.iter_mut() {
            if let Some(live) = self.inner.sessions.get(tenant, &row.id) {
                *row = live.row();
            }
        }
        Ok(rows)
    }

    /// The stored row of a session this server does not hold: one whose server is gone is
    /// ended now.
    async fn stored_session(&self, tenant: &str, id: &str) -> Result<SessionRow> {
        let store = &self.inner.store;
        let mut row = store
            .tenant(tenant)
            .session(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        if row.status == "active" {
            // Three leases, as `GET /cluster` counts servers: a server that missed one
            // heartbeat (a slow database) still holds its sessions.
            let since = now_ms() - 3 * self.inner.settings.queue_lease_ms as i64;
            let owner_alive = row.node_id != self.inner.node_id && store.node_alive(&row.node_id, since).await?;
            if !owner_alive {
                let now = now_ms();
                store.end_session(id, "server_stopped", None, now).await?;
                row.status = "ended".into();
                row.end_reason = Some("server_stopped".into());
                row.ended_at = Some(now);
            }
        }
        Ok(row)
    }

    /// The session held here, or the error that says where it is (409) or that it ended
    /// (410).
    async fn live_session(&self, tenant: &str, id: &str) -> Result<Arc<Live>> {
        if let Some(live) = self.inner.sessions.get(tenant, id) {
            let row = live.row();
            return match row.status.as_str() {
                "active" => Ok(live),
                _ => Err(gone(&row)),
            };
        }
        let row = self.stored_session(tenant, id).await?;
        if row.status != "active" {
            return Err(gone(&row));
        }
        Err(Error::Elsewhere {
            server: row.node_id.clone(),
            message: format!(
                "session {id} is held by server {}, not this one ({}): send its requests there",
                row.node_id, self.inner.node_id
            ),
        })
    }

    /// Run `code` as the next cell of session `id`; answers the cell's execution and its
    /// `execution_count`.
    pub async fn run_cell(
        &self,
        tenant: &str,
        id: &str,
        code: String,
        stream: Option<super::Output>,
    ) -> Result<(Started, i64)> {
        self.inner.check_open()?;
        let live = self.live_session(tenant, id).await?;
        let mut kept = live.kept.clone().lock_owned().await;
        self.inner.check_still_active(&live, &mut kept)?;
        let row = self.inner.touch(&live, true);
        let count = row.execution_count;
        let (function, mut recorded) = script_function(SESSION_FUNCTION, code, settings_of(&row));
        recorded["session"] = json!(id);
        recorded["execution_count"] = json!(count);
        let unit = Unit {
            function,
            schemas: Arc::new(Schemas::default()),
            script: true,
            recorded_input: recorded.to_string(),
            extras: None,
            session: Some(Cell {
                kept,
                live,
                sandbox: self.inner.sandbox.clone(),
            }),
            stream,
        };
        let trigger = Trigger::Session { id: id.to_string() };
        let started = self.launch_unit(tenant, unit, Value::Null, trigger, None).await?;
        Ok((started, count))
    }

    /// End session `id` (deleted). Ending one already ended does nothing.
    pub async fn close_session(&self, tenant: &str, id: &str) -> Result<()> {
        match self.live_session(tenant, id).await {
            Ok(live) => {
                // Marked first, so no new cell starts; the interpreter goes now, or when the
                // cell running now is over.
                self.inner.end_session(&live, "deleted", None);
                if let Ok(mut kept) = live.kept.clone().try_lock_owned() {
                    self.inner.sandbox.release(&mut kept);
                }
                // Recorded before the answer, so the caps count it gone at once (the write
                // `end_session` sent changes nothing after this one).
                let row = live.row();
                let reason = row.end_reason.as_deref().unwrap_or("deleted");
                let at = row.ended_at.unwrap_or_else(now_ms);
                self.inner
                    .store
                    .end_session(id, reason, row.error.as_deref(), at)
                    .await?;
                Ok(())
            }
            Err(Error::Gone(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Move files in or out of session `id`'s working directory. The guest's code answers
    /// (it may have replaced the prelude's), so a request counts like a cell: a slot of the
    /// tenant's concurrency and the session's deadline and fuel.
    pub async fn session_files(&self, tenant: &str, id: &str, op: FileOp) -> Result<FileAnswer> {
        let inner = &self.inner;
        inner.check_open()?;
        let live = self.live_session(tenant, id).await?;
        // The interpreter first, then a slot: the order a cell takes them in (a cell waits
        // for its slot holding the interpreter), so neither waits on the other.
        let mut kept = live.kept.clone().lock_owned().await;
        let (_admission, quotas) = inner.limiter.admit(tenant, super::AtCap::Wait).await?;
        inner.check_still_active(&live, &mut kept)?;
        let row = inner.touch(&live, false);
        let (_, timeout, fuel, _) = inner.limits(&settings_of(&row));
        let budget = Budget {
            fuel: quotas.max_fuel_per_execution.map_or(fuel, |cap| fuel.min(cap)),
            deadline: Instant::now() + timeout,
            cancel: Cancel::NEVER,
        };
        let sandbox = inner.sandbox.clone();
        let (result, mut kept) = inner
            .workers
            .run(move || {
                let r = sandbox.session_files(&mut kept, op, budget);
                (r, kept)
            })
            .await
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the sandbox worker panicked")))?;
        if !kept.alive() {
            let error = kept.lost.clone();
            inner.end_session(&live, "crashed", error.as_ref());
            return Err(gone(&live.row()));
        }
        // Deleted meanwhile: the interpreter goes now.
        if live.row().status != "active" {
            inner.sandbox.release(&mut kept);
        }
        result.map_err(file_error)
    }

    /// End the sessions held here that were idle past their time, every second, for as long
    /// as the server runs.
    pub async fn expire_sessions(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = now_ms();
            for live in self.inner.sessions.all() {
                let row = live.row();
                if row.status != "active" || row.expires_at > now {
                    continue;
                }
                // A session running a cell is not idle.
                if let Ok(mut kept) = live.kept.clone().try_lock_owned() {
                    self.inner.end_session(&live, "expired", None);
                    self.inner.sandbox.release(&mut kept);
                }
            }
            self.inner.sessions.forget_ended(now - 600_000);
        }
    }

    /// End every session held here (the server stops), and wait for the rows to say so.
    pub(super) async fn stop_sessions(&self) {
        let now = now_ms();
        for live in self.inner.sessions.all() {
            self.inner.end_session(&live, "server_stopped", None);
            let row = live.row();
            if row.end_reason.as_deref() == Some("server_stopped") {
                let _ = self.inner.store.end_session(&row.id, "server_stopped", None, now).await;
            }
        }
    }
}

/// A file operation's failure as the API says it (the interpreter is alive: a crash is a
/// 410 before this).
fn file_error(e: ErrorRecord) -> Error {
    let errno = e.extra.get("errno").and_then(Value::as_i64);
    match (e.exc_type.as_deref(), errno) {
        (Some("FileNotFoundError"), _) => Error::NotFound(e.message),
        (Some("MemoryError"), _) | (_, Some(28)) => Error::TooLarge(e.message),
        _ => Error::Conflict(format!("the file request failed: {}", e.message)),
    }
}
