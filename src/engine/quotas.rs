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
    slots: Slots,
    running: Arc<AtomicU32>,
    /// Calls waiting for a slot now.
    waiting: Arc<AtomicU32>,
    tokens: f64,
    refilled: Instant,
}

/// A tenant's concurrency: one permit per execution it may run at once (`cap` of them),
/// handed to waiting calls in the order they came.
struct Slots {
    sem: Arc<Semaphore>,
    cap: u32,
    /// Permits still to take back after the cap was lowered while they were in use: each
    /// admission that ends while some are owed is forgotten rather than returned.
    owed: Arc<AtomicU32>,
}

impl Slots {
    fn new(cap: u32) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(cap as usize)),
            cap,
            owed: Arc::default(),
        }
    }

    /// Follow a changed cap. Lowering it takes back the free permits now and owes the
    /// rest, which running executions pay as they end (a freed permit would otherwise go
    /// straight to the next call in line); raising it pays off what is owed first.
    fn resize(&mut self, cap: u32) {
        if cap > self.cap {
            let more = cap - self.cap;
            let paid = take_up_to(&self.owed, more);
            self.sem.add_permits((more - paid) as usize);
        } else if cap < self.cap {
            let less = self.cap - cap;
            // A permit returned between these two lines lets one more call in; the
            // executions ending after it pay that back, so the cap is exceeded by at most
            // one, briefly.
            let gone = self.sem.forget_permits(less as usize) as u32;
            self.owed.fetch_add(less - gone, Ordering::AcqRel);
        }
        self.cap = cap;
    }
}

/// Whether a call at its tenant's cap waits for a slot or is refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtCap {
    Wait,
    Refuse,
}

/// Take up to `n` from `counter` (never below zero); answers how many were taken.
fn take_up_to(counter: &AtomicU32, n: u32) -> u32 {
    let before = counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v - v.min(n)))
        .unwrap_or(0);
    before.min(n)
}

/// A running execution's place in its tenant's concurrency; leaving frees it (or pays a
/// permit owed since the cap was lowered).
pub struct Admission {
    slot: Option<OwnedSemaphorePermit>,
    owed: Arc<AtomicU32>,
    running: Arc<AtomicU32>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        if take_up_to(&self.owed, 1) == 1 {
            if let Some(slot) = self.slot.take() {
                slot.forget();
            }
        }
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
            slots: Slots::new(cap),
            running: Arc::default(),
            waiting: Arc::default(),
            tokens: quotas.burst,
            refilled: Instant::now(),
        });
        entry.slots.resize(cap);
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
        let (slots, owed, running, waiting) = {
            let map = self.lock();
            let t = map
                .get(tenant)
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("tenant counters vanished")))?;
            (
                t.slots.sem.clone(),
                t.slots.owed.clone(),
                t.running.clone(),
                t.waiting.clone(),
            )
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
        let admission = Admission {
            slot: Some(slot),
            owed,
            running,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(slots: &Slots) -> Admission {
        Admission {
            slot: Some(slots.sem.clone().try_acquire_owned().expect("a free slot")),
            owed: slots.owed.clone(),
            running: Arc::new(AtomicU32::new(1)),
        }
    }

    #[test]
    fn a_lowered_cap_holds_even_while_its_slots_are_in_use() {
        let mut slots = Slots::new(2);
        let (a, b) = (admit(&slots), admit(&slots));
        slots.resize(1);
        assert_eq!(slots.sem.available_permits(), 0);
        drop(a); // pays what was owed instead of letting the next call in
        assert_eq!(slots.sem.available_permits(), 0);
        drop(b);
        assert_eq!(slots.sem.available_permits(), 1, "one slot: the new cap");
        slots.resize(3);
        assert_eq!(slots.sem.available_permits(), 3);
    }

    #[test]
    fn raising_the_cap_again_cancels_what_was_owed() {
        let mut slots = Slots::new(2);
        let (a, b) = (admit(&slots), admit(&slots));
        slots.resize(1);
        slots.resize(2);
        assert_eq!(slots.owed.load(Ordering::Acquire), 0);
        drop(a);
        drop(b);
        assert_eq!(slots.sem.available_permits(), 2);
        slots.resize(1);
        assert_eq!(slots.sem.available_permits(), 1, "free permits are taken back at once");
    }
}
