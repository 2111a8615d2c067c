//! Ready instances for `fresh` functions: started from the function's snapshot off the
//! request path, with the pages its last call touched already faulted in, so that a fresh
//! call costs about what a warm one does.
//!
//! Starting from a snapshot is cheap but not free: a new store, the snapshot mapped over its
//! memory, and then every page the call touches faults in on first use (copy-on-write for
//! the ones it writes), which on a hello function is most of the difference between a fresh
//! and a warm call. So after each fresh call the upkeep thread reads which pages that call
//! touched (from the instance it is about to drop), starts the next instance of the function
//! from its snapshot and touches the same pages. The instance has still run nothing since the
//! snapshot: faulting a page in copies the snapshot's bytes, never a call's.
//!
//! One ready instance per function, for the functions called fresh most recently; the stock
//! is bounded by `keys`, least recently asked for dropped first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::instance::Instance;
use super::pool::PoolKey;
use super::snapshot::Snapshot;

/// What the upkeep thread needs to make a function's next ready instance.
pub(super) struct Ask {
    pub key: PoolKey,
    pub snap: Arc<Snapshot>,
    pub memory: usize,
    pub packages: Option<PathBuf>,
    /// The instance the last call ran in: its touched pages are learnt, then it is dropped.
    pub used: Instance,
}

pub(super) struct Ready {
    keys: usize,
    stock: Mutex<Stock>,
    asks: Mutex<Vec<Ask>>,
}

#[derive(Default)]
struct Stock {
    map: HashMap<PoolKey, (Instance, u64, Instant)>,
    clock: u64,
}

impl Ready {
    pub fn new(keys: usize) -> Self {
        Ready {
            keys,
            stock: Mutex::default(),
            asks: Mutex::default(),
        }
    }

    fn stock(&self) -> std::sync::MutexGuard<'_, Stock> {
        self.stock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ready instance of `key`, if there is one.
    pub fn take(&self, key: &PoolKey) -> Option<Instance> {
        self.stock().map.remove(key).map(|(inst, ..)| inst)
    }

    /// Ask for `ask.key`'s next ready instance; refused (and `ask` handed back to be retired)
    /// when the stock is off, the key has one ready or asked for already (concurrent fresh
    /// calls of one function ask once), or too many asks wait.
    pub fn ask(&self, ask: Ask) -> Result<(), Box<Ask>> {
        if self.keys == 0 || self.stock().map.contains_key(&ask.key) {
            return Err(Box::new(ask));
        }
        let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
        if asks.len() >= self.keys || asks.iter().any(|a| a.key == ask.key) {
            return Err(Box::new(ask));
        }
        asks.push(ask);
        Ok(())
    }

    /// Whether asks are waiting.
    pub fn pending(&self) -> bool {
        !self.asks.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The asks waiting, taken out.
    pub fn asked(&self) -> Vec<Ask> {
        std::mem::take(&mut *self.asks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Keep `inst` as `key`'s ready instance; returns what no longer fits (the least recently
    /// stocked), to be dropped.
    pub fn stock_up(&self, key: PoolKey, inst: Instance) -> Vec<Instance> {
        let mut stock = self.stock();
        stock.clock += 1;
        let now = stock.clock;
        let mut out: Vec<Instance> = stock
            .map
            .insert(key, (inst, now, Instant::now()))
            .map(|(old, ..)| old)
            .into_iter()
            .collect();
        while stock.map.len() > self.keys {
            let Some(oldest) = stock
                .map
                .iter()
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            out.extend(stock.map.remove(&oldest).map(|(inst, ..)| inst));
        }
        out
    }

    /// Take out the instances ready for longer than `idle` (their function is not being
    /// called fresh any more), like the warm pool's idle ones.
    pub fn expire(&self, idle: Duration) -> Vec<Instance> {
        let Some(cutoff) = Instant::now().checked_sub(idle) else {
            return Vec::new();
        };
        let mut stock = self.stock();
        let old: Vec<PoolKey> = stock
            .map
            .iter()
            .filter(|(_, e)| e.2 < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        old.iter()
            .filter_map(|k| stock.map.remove(k))
            .map(|(inst, ..)| inst)
            .collect()
    }

    /// Drop the ready instances whose key matches (their function or tenant changed).
    pub fn forget(&self, matches: impl Fn(&PoolKey) -> bool) -> Vec<Instance> {
        let mut stock = self.stock();
        let gone: Vec<PoolKey> = stock.map.keys().filter(|k| matches(k)).cloned().collect();
        gone.iter()
            .filter_map(|k| stock.map.remove(k))
            .map(|(inst, ..)| inst)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.stock().map.len()
    }
}
