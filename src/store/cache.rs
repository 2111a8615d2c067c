//! A per-server cache of current function versions for the call path (invoke and nested
//! calls look a function up on every call). Entries live for a short TTL and are dropped at
//! once when this server changes the function, so a single server is always exact; other
//! servers on the same database see a change within the TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Function;

pub(super) struct FunctionCache {
    ttl: Duration,
    map: Mutex<HashMap<(String, String), (Function, Instant)>>,
    /// Bumped by every `forget`: a lookup that started before a change must not put back
    /// what it read (it may predate the change).
    generation: AtomicU64,
}

impl FunctionCache {
    pub fn new(ttl: Duration) -> Self {
        FunctionCache {
            ttl,
            map: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
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

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Remember `f`, read after `generation()` returned `seen`, unless a change came since.
    pub fn put(&self, seen: u64, tenant: &str, f: &Function) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if self.generation() != seen {
            return;
        }
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        map.insert((tenant.to_string(), f.name.clone()), (f.clone(), Instant::now()));
    }

    pub fn forget(&self, tenant: &str, name: &str) {
        let mut map = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        map.remove(&(tenant.to_string(), name.to_string()));
    }

    /// Drop everything (a whole tenant went away).
    pub fn clear(&self) {
        let mut map = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        map.clear();
    }
}
