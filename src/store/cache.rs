//! A per-server cache of current function versions for the call path (invoke and nested
//! calls look a function up on every call). Entries live for a short TTL and are dropped at
//! once when this server changes the function, so a single server is always exact; other
//! servers on the same database see a change within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Function;

pub(super) struct FunctionCache {
    ttl: Duration,
    map: Mutex<HashMap<(String, String), (Function, Instant)>>,
}

impl FunctionCache {
    pub fn new(ttl: Duration) -> Self {
        FunctionCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Function, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, tenant: &str, name: &str) -> Option<Function> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.lock();
        let (f, at) = map.get(&(tenant.to_string(), name.to_string()))?;
        (at.elapsed() < self.ttl).then(|| f.clone())
    }

    pub fn put(&self, tenant: &str, f: &Function) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        map.insert((tenant.to_string(), f.name.clone()), (f.clone(), Instant::now()));
    }

    pub fn forget(&self, tenant: &str, name: &str) {
        self.lock().remove(&(tenant.to_string(), name.to_string()));
    }
}
