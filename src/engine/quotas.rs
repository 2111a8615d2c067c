//! Per-tenant quotas and fairness: server-wide defaults, overridden per subtenant by an admin.
//!
//! Concurrency of direct calls is counted by each server for itself (a tenant's share of one
//! server's sandbox workers is what fairness is about; queued jobs are also counted across
//! the cluster, see `queue`); the rate is counted in Redis across every replica when Redis
//! is configured (see `rate`), else by each server; the function count is the database's.
//! The default concurrency cap is half the sandbox workers, so one tenant's flood always
//! leaves room for others.
//!
//! A direct call that finds its tenant at the cap waits its turn (first come, first served)
//! for up to TENANT_QUEUE_WAIT_MS, in a line of at most TENANT_QUEUE_DEPTH calls, before it
//! is refused: a burst is smoothed, not bounced. Work that can be retried later (queued
//! jobs, a stranded workflow run) is refused at once instead of holding a worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rate::SharedRate;
use super::Error;
use crate::config::Settings;
use crate::domain::ParseError;
use crate::store::Store;

/// How long a server uses a tenant's quotas before reading them again.
const QUOTA_TTL: Duration = Duration::from_secs(1);

/// What an admin may override for a subtenant (unset fields keep the server default).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_functions: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_executions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocations_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_fuel_per_execution: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_execution: Option<bool>,
}

/// A tenant's limits in force.
#[derive(Debug, Clone, Serialize)]
pub struct Quotas {
    pub max_functions: i64,
    pub max_concurrent_executions: u32,
    /// 0 = unlimited.
    pub invocations_per_second: f64,
    pub burst: f64,
    /// None: no fuel cap (the timeout bounds CPU time).
    pub max_fuel_per_execution: Option<u64>,
    /// Whether the tenant may send code to run (`POST /run`); never more than the server
    /// allows (`ALLOW_CODE_EXECUTION`).
    pub code_execution: bool,
}

impl Quotas {
    /// Check an admin's overrides; returns them as stored.
    pub fn parse(v: Option<&Value>) -> Result<Value, ParseError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(serde_json::json!({}));
        };
        let o: Overrides = serde_json::from_value(v.clone())
            .map_err(|e| ParseError::new("quotas", format!("{e} (known: max_functions, max_concurrent_executions, invocations_per_second, burst, max_fuel_per_execution, code_execution)")))?;
        let bad = |field: &str, m: &str| Err(ParseError::new(format!("quotas.{field}"), m));
        if o.max_functions.is_some_and(|n| n < 0) {
            return bad("max_functions", "must be 0 or more");
        }
        if o.max_concurrent_executions == Some(0) {
            return bad("max_concurrent_executions", "must be at least 1");
        }
        if o.invocations_per_second.is_some_and(|r| !r.is_finite() || r < 0.0) {
            return bad("invocations_per_second", "must be 0 (unlimited) or more");
        }
        if o.burst.is_some_and(|b| !b.is_finite() || b < 1.0) {
            return bad("burst", "must be at least 1");
        }
        if o.max_fuel_per_execution == Some(0) {
            return bad("max_fuel_per_execution", "must be at least 1");
        }
        Ok(serde_json::to_value(o).unwrap_or_default())
    }

    /// The server's defaults under a tenant's stored overrides. Overrides that do not read
    /// are an error, never the (looser) defaults.
    fn effective(cfg: &Settings, stored: Option<&Value>) -> Result<Quotas, String> {
        let o: Overrides = match stored.filter(|v| !v.is_null()) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("stored quotas do not read: {e}"))?,
            None => Overrides::default(),
        };
        let default_concurrency = match cfg.tenant_max_concurrent_executions {
            0 => (cfg.sandbox_workers as u32 / 2).max(1),
            n => n,
        };
        let rate = o.invocations_per_second.unwrap_or(cfg.tenant_invocations_per_second);
        Ok(Quotas {
            max_functions: o.max_functions.unwrap_or(cfg.tenant_max_functions),
            max_concurrent_executions: o.max_concurrent_executions.unwrap_or(default_concurrency),
            invocations_per_second: rate,
            burst: o.burst.unwrap_or(rate.max(1.0)),
            max_fuel_per_execution: o.max_fuel_per_execution,
            code_execution: cfg.allow_code_execution && o.code_execution.unwrap_or(true),
        })
    }
}

/// One tenant's counters on this server.
struct Tenant {
    quotas: Quotas,
    read_at: Instant,
    /// Its concurrency: one permit per execution it may run at once (`cap` of them), handed
    /// to waiting calls in the order they came.
    slots: Arc<Semaphore>,
    cap: u32,
    running: Arc<AtomicU32>,
    /// Calls waiting for a slot now.
    waiting: Arc<AtomicU32>,
    tokens: f64,
    refilled: Instant,
}

impl Tenant {
    /// Follow a changed cap. Lowering it takes back only free permits; the rest are taken
    /// back at later reads, as running executions end.
    fn resize(&mut self, cap: u32) {
        if cap > self.cap {
            self.slots.add_permits((cap - self.cap) as usize);
            self.cap = cap;
        } else if cap < self.cap {
            let gone = self.slots.forget_permits((self.cap - cap) as usize);
            self.cap -= gone as u32;
        }
    }
}

/// Whether a call at its tenant's cap waits for a slot or is refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtCap {
    Wait,
    Refuse,
}

/// A running execution's place in its tenant's concurrency; leaving frees it.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    running: Arc<AtomicU32>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a call in its tenant's line while it waits (a caller who gives up leaves it).
struct InLine(Arc<AtomicU32>);

impl Drop for InLine {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Limiter {
    store: Store,
    settings: Arc<Settings>,
    tenants: Mutex<HashMap<String, Tenant>>,
    /// The rate's buckets in Redis, shared by every replica (when Redis is configured).
    shared: Option<SharedRate>,
}

impl Limiter {
    pub fn new(store: Store, settings: Arc<Settings>, redis: Option<redis::Client>) -> Limiter {
        Limiter {
            store,
            settings,
            tenants: Mutex::new(HashMap::new()),
            shared: redis.map(SharedRate::new),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tenant>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many of the tenant's executions hold a concurrency slot on this server now.
    pub fn running(&self, tenant: &str) -> u32 {
        self.lock().get(tenant).map_or(0, |t| t.running.load(Ordering::Acquire))
    }

    /// A tenant's quotas (cached for a second). When they cannot be read, the last known
    /// ones hold; with none known, the error (never looser defaults).
    pub async fn quotas(&self, tenant: &str) -> Result<Quotas, Error> {
        if let Some(t) = self.lock().get(tenant).filter(|t| t.read_at.elapsed() < QUOTA_TTL) {
            return Ok(t.quotas.clone());
        }
        let stored = match self.store.get_subtenant(tenant).await {
            Ok(s) => Some(s.quotas),
            Err(crate::store::StoreError::NotFound(_)) => None, // a token-bound tenant: the defaults
            Err(e) => {
                // Keep what was known rather than fall back to looser defaults.
                tracing::warn!(tenant, error = %e, "could not read quotas; keeping the last known");
                return match self.lock().get(tenant) {
                    Some(t) => Ok(t.quotas.clone()),
                    None => Err(e.into()),
                };
            }
        };
        let quotas = Quotas::effective(&self.settings, stored.as_ref())
            .map_err(|m| Error::Store(crate::store::StoreError::Corrupt(format!("subtenant {tenant}: {m}"))))?;
        let mut map = self.lock();
        let cap = quotas.max_concurrent_executions;
        let entry = map.entry(tenant.to_string()).or_insert_with(|| Tenant {
            quotas: quotas.clone(),
            read_at: Instant::now(),
            slots: Arc::new(Semaphore::new(cap as usize)),
            cap,
            running: Arc::default(),
            waiting: Arc::default(),
            tokens: quotas.burst,
            refilled: Instant::now(),
        });
        entry.resize(cap);
        entry.quotas = quotas.clone();
        entry.read_at = Instant::now();
        Ok(quotas)
    }

    pub fn forget(&self, tenant: &str) {
        if let Some(t) = self.lock().get_mut(tenant) {
            t.read_at = Instant::now() - QUOTA_TTL;
        }
    }

    /// Let one execution of `tenant` start, or say which limit it hit (429, retry shortly):
    /// a slot of its concurrency first (waited for in line, with `AtCap::Wait`), then a
    /// token of its rate (the slot is given back when there is none).
    pub async fn admit(&self, tenant: &str, at_cap: AtCap) -> Result<(Admission, Quotas), Error> {
        let quotas = self.quotas(tenant).await?;
        let cap = quotas.max_concurrent_executions;
        let (slots, running, waiting) = {
            let map = self.lock();
            let t = map
                .get(tenant)
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("tenant counters vanished")))?;
            (t.slots.clone(), t.running.clone(), t.waiting.clone())
        };
        let full = |why: &str| Error::Quota {
            message: format!(
                "tenant {tenant} already runs {cap} executions at once (its max_concurrent_executions){why}"
            ),
            retry_after_seconds: 1,
        };
        // A free slot is taken at once only when nobody waits: permits go to the line first.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let wait = Duration::from_millis(self.settings.tenant_queue_wait_ms);
                let depth = self.settings.queue_depth_per_tenant();
                if at_cap == AtCap::Refuse || wait.is_zero() {
                    return Err(full(""));
                }
                if waiting.fetch_add(1, Ordering::AcqRel) >= depth {
                    waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(full(&format!(" and {depth} more wait for a slot (TENANT_QUEUE_DEPTH)")));
                }
                let _in_line = InLine(waiting);
                match tokio::time::timeout(wait, slots.acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => return Err(full(&format!("; this call waited {} ms for a slot", wait.as_millis()))),
                }
            }
        };
        running.fetch_add(1, Ordering::AcqRel);
        let admission = Admission { _slot: slot, running };
        let rate = quotas.invocations_per_second;
        if rate > 0.0 {
            let shared = match &self.shared {
                Some(s) => s.take(tenant, rate, quotas.burst).await,
                None => None,
            };
            let taken = match shared {
                Some(taken) => taken,
                None => self.take_local(tenant, &quotas),
            };
            if !taken {
                return Err(Error::Quota {
                    message: format!("tenant {tenant} is over its rate of {rate} invocations per second"),
                    retry_after_seconds: 1,
                });
            }
        }
        Ok((admission, quotas))
    }

    /// Take a token from this server's own bucket of `tenant`.
    fn take_local(&self, tenant: &str, quotas: &Quotas) -> bool {
        let mut map = self.lock();
        let Some(t) = map.get_mut(tenant) else {
            return false;
        };
        let now = Instant::now();
        let earned = now.duration_since(t.refilled).as_secs_f64() * quotas.invocations_per_second;
        t.tokens = (t.tokens + earned).min(quotas.burst);
        t.refilled = now;
        if t.tokens < 1.0 {
            return false;
        }
        t.tokens -= 1.0;
        true
    }
}
