//! Idle warm instances, keyed by tenant + function + version + code key (function id and
//! code hash) + memory cap + package set. An instance is only ever reused for the exact
//! function version it loaded, never across tenants.
//!
//! The pool is bounded three ways, because an instance keeps whatever memory it grew to (a
//! wasm memory never shrinks): by count, by the resident bytes of all idle instances
//! together, and by idle time. An instance that grew past `retire_above` is not kept at all. When a bound is
//! hit the least recently used instances go first. Evicted instances are handed back to the
//! caller to be dropped off the request path (unmapping a large memory takes time).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::instance::Instance;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PoolKey {
    tenant: String,
    function: String,
    version: i64,
    code_key: String,
    memory: usize,
    /// The tenant's package set (empty: none).
    packages: String,
}

impl PoolKey {
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    pub fn new(tenant: &str, function: &str, version: i64, code_key: &str, memory: usize, packages: &str) -> Self {
        PoolKey {
            tenant: tenant.to_string(),
            function: function.to_string(),
            version,
            code_key: code_key.to_string(),
            memory,
            packages: packages.to_string(),
        }
    }
}

/// The pool's bounds.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Idle instances kept per key.
    pub per_key: usize,
    /// Idle instances kept in all.
    pub total: usize,
    /// Bytes of memory all idle instances may hold together.
    pub max_bytes: u64,
    /// How long an instance may stay idle.
    pub idle: Duration,
    /// An instance whose memory grew past this is dropped after its call, never kept.
    pub retire_above: u64,
}

struct Entry {
    inst: Instance,
    bytes: u64,
    since: Instant,
}

pub(super) struct WarmPool {
    limits: PoolLimits,
    idle: Mutex<Idle>,
    /// Instances let go, by why (in `Gone`'s order): what an operator tunes the bounds by.
    dropped: [AtomicU64; 5],
}

/// Why an instance left the pool (or was never kept).
#[derive(Clone, Copy)]
enum Gone {
    /// Its memory grew past `retire_above` (or the whole pool's byte bound).
    Grown,
    /// Its key already had `per_key` idle instances (or the pool keeps none).
    Full,
    /// The least recently used, to keep the pool within its count or bytes.
    Lru,
    /// Idle for longer than the idle time.
    Idle,
    /// Its function or tenant changed.
    Changed,
}

const DROP_NAMES: [&str; 5] = ["grown", "full", "lru", "idle", "changed"];

#[derive(Default)]
struct Idle {
    map: HashMap<PoolKey, Vec<Entry>>,
    count: usize,
    bytes: u64,
}

impl Idle {
    fn remove(&mut self, key: &PoolKey, index: usize) -> Option<Instance> {
        let list = self.map.get_mut(key)?;
        if index >= list.len() {
            return None;
        }
        let e = list.remove(index);
        if list.is_empty() {
            self.map.remove(key);
        }
        self.count -= 1;
        self.bytes -= e.bytes;
        Some(e.inst)
    }

    /// The least recently used instance, taken out.
    fn pop_oldest(&mut self) -> Option<Instance> {
        let (key, index) = self
            .map
            .iter()
            .flat_map(|(k, list)| list.iter().enumerate().map(move |(i, e)| (k, i, e.since)))
            .min_by_key(|(_, _, since)| *since)
            .map(|(k, i, _)| (k.clone(), i))?;
        self.remove(&key, index)
    }

    /// Take out every instance whose key matches.
    fn drain(&mut self, mut matches: impl FnMut(&PoolKey) -> bool) -> Vec<Instance> {
        let keys: Vec<PoolKey> = self.map.keys().filter(|k| matches(k)).cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            for e in self.map.remove(&key).unwrap_or_default() {
                self.count -= 1;
                self.bytes -= e.bytes;
                out.push(e.inst);
            }
        }
        out
    }
}

impl WarmPool {
    pub fn new(limits: PoolLimits) -> Self {
        WarmPool {
            limits,
            idle: Mutex::new(Idle::default()),
            dropped: Default::default(),
        }
    }

    fn count(&self, why: Gone, n: usize) {
        self.dropped[why as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Instances let go since start, by reason (`grown`, `full`, `lru`, `idle`, `changed`).
    pub fn dropped(&self) -> BTreeMap<&'static str, u64> {
        DROP_NAMES
            .iter()
            .zip(&self.dropped)
            .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while holding the lock leaves only a map of idle instances: safe to reuse.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle instance of `key`, if any.
    pub fn take(&self, key: &PoolKey) -> Option<Instance> {
        let mut idle = self.lock();
        let index = idle.map.get(key)?.len().checked_sub(1)?;
        idle.remove(key, index)
    }

    /// Keep `inst` for reuse if it is within bounds, evicting the least recently used to make
    /// room. Returns what is not kept, for the caller to drop off the request path.
    pub fn put(&self, key: PoolKey, inst: Instance) -> Vec<Instance> {
        let l = self.limits;
        // An instance's size is the memory it grew to; its cost to the budget is what of
        // that is resident.
        let grown = inst.memory_size();
        let bytes = inst.resident_size();
        if grown > l.retire_above || bytes > l.max_bytes {
            self.count(Gone::Grown, 1);
            return vec![inst];
        }
        let mut idle = self.lock();
        if l.total == 0 || idle.map.get(&key).is_some_and(|list| list.len() >= l.per_key) {
            self.count(Gone::Full, 1);
            return vec![inst];
        }
        idle.map.entry(key).or_default().push(Entry {
            inst,
            bytes,
            since: Instant::now(),
        });
        idle.count += 1;
        idle.bytes += bytes;
        let mut evicted = Vec::new();
        while idle.count > l.total || idle.bytes > l.max_bytes {
            match idle.pop_oldest() {
                Some(old) => evicted.push(old),
                None => break,
            }
        }
        self.count(Gone::Lru, evicted.len());
        evicted
    }

    /// Take out the instances idle for longer than the pool's idle time.
    pub fn expire(&self) -> Vec<Instance> {
        let Some(cutoff) = Instant::now().checked_sub(self.limits.idle) else {
            return Vec::new();
        };
        let mut idle = self.lock();
        let mut out = Vec::new();
        while let Some(oldest) = idle.map.values().flatten().map(|e| e.since).min() {
            if oldest > cutoff {
                break;
            }
            match idle.pop_oldest() {
                Some(inst) => out.push(inst),
                None => break,
            }
        }
        self.count(Gone::Idle, out.len());
        out
    }

    /// Idle instances and the bytes of memory they hold.
    pub fn usage(&self) -> (usize, u64) {
        let idle = self.lock();
        (idle.count, idle.bytes)
    }

    /// Take out a tenant's instances (its packages changed).
    pub fn drain_tenant(&self, tenant: &str) -> Vec<Instance> {
        let out = self.lock().drain(|k| k.tenant == tenant);
        self.count(Gone::Changed, out.len());
        out
    }

    /// Take out a function's instances (it changed or went away: its old versions' instances
    /// would only wait for their idle time).
    pub fn drain_function(&self, tenant: &str, function: &str) -> Vec<Instance> {
        let out = self.lock().drain(|k| k.tenant == tenant && k.function == function);
        self.count(Gone::Changed, out.len());
        out
    }
}
