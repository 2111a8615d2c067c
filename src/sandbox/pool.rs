//! Idle warm instances, keyed by tenant + function + version + code key (function id and
//! code hash) + memory cap + package set. An instance
//! is only ever reused for the exact function version it loaded, never across tenants.

use std::collections::HashMap;
use std::sync::Mutex;

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

pub(super) struct WarmPool {
    per_key: usize,
    total: usize,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    map: HashMap<PoolKey, Vec<Instance>>,
    count: usize,
}

impl WarmPool {
    pub fn new(per_key: usize, total: usize) -> Self {
        WarmPool {
            per_key,
            total,
            idle: Mutex::new(Idle::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while holding the lock leaves only a map of idle instances: safe to reuse.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take(&self, key: &PoolKey) -> Option<Instance> {
        let mut idle = self.lock();
        let inst = idle.map.get_mut(key)?.pop();
        if inst.is_some() {
            idle.count -= 1;
        }
        inst
    }

    /// Keep `inst` for reuse if there is room; otherwise it is dropped.
    pub fn put(&self, key: PoolKey, inst: Instance) {
        let mut idle = self.lock();
        if idle.map.get(&key).is_some_and(|l| l.len() >= self.per_key) {
            return;
        }
        // Full: make room by retiring an idle instance of another function.
        let evicted = if idle.count >= self.total {
            let Some(victim) = idle.map.values_mut().find(|l| !l.is_empty()).and_then(Vec::pop) else {
                return;
            };
            idle.count -= 1;
            Some(victim)
        } else {
            None
        };
        idle.map.entry(key).or_default().push(inst);
        idle.count += 1;
        drop(idle);
        drop(evicted);
    }

    pub fn idle(&self) -> usize {
        self.lock().count
    }

    pub fn drop_tenant(&self, tenant: &str) {
        let mut idle = self.lock();
        let mut dropped = 0;
        idle.map.retain(|k, v| {
            if k.tenant == tenant {
                dropped += v.len();
                false
            } else {
                true
            }
        });
        idle.count -= dropped;
    }
}
