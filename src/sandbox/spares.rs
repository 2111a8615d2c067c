//! Spare instances: booted (prelude loaded) but never used by any function. A `fresh` call,
//! or a warm call that finds no idle instance, takes one instead of creating and booting an
//! instance on the request path. A spare has run nothing but our prelude, so isolation is the
//! same as a brand-new instance.
//!
//! One background thread does the sandbox's upkeep: it keeps the stock topped up, drops used
//! instances handed to it (unmapping their memory off the request path) and expires warm
//! instances idle for too long.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::instance::Instance;
use super::Sandbox;

pub(super) struct Spares {
    want: usize,
    stock: Mutex<Vec<Instance>>,
    low: Condvar,
    /// Used instances waiting to be dropped by the background thread.
    retired: Mutex<Vec<Instance>>,
}

impl Spares {
    pub fn new(want: usize) -> Self {
        Spares {
            want,
            stock: Mutex::new(Vec::new()),
            low: Condvar::new(),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Hand over a used instance to be dropped in the background (or now, when too many are
    /// waiting).
    pub fn retire(&self, inst: Instance) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if retired.len() < 1024 {
            retired.push(inst);
            drop(retired);
            self.low.notify_one();
        }
    }

    /// Wake the upkeep thread (ready instances were asked for).
    pub fn wake(&self) {
        // Under the lock the upkeep thread checks for asks before it waits, so the wake-up
        // cannot fall between its check and its wait.
        let _stock = self.lock();
        self.low.notify_one();
    }

    fn drop_retired(&self) {
        let dead = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        drop(dead);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.stock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A booted, unused instance, if one is ready.
    pub fn take(&self) -> Option<Instance> {
        let inst = self.lock().pop();
        self.low.notify_one();
        inst
    }

    pub fn ready(&self) -> usize {
        self.lock().len()
    }
}

/// Do the sandbox's upkeep until it is dropped: drop retired instances, expire idle warm
/// ones, keep the spares stocked.
pub(super) fn spawn_upkeep(sandbox: &Arc<Sandbox>) {
    let weak: Weak<Sandbox> = Arc::downgrade(sandbox);
    let _ = std::thread::Builder::new()
        .name("maestro-upkeep".into())
        .spawn(move || loop {
            let Some(sb) = weak.upgrade() else { return };
            sb.spares.drop_retired();
            sb.stock_ready();
            drop(sb.pool.expire());
            drop(sb.ready_expire());
            let missing = sb.spares.want.saturating_sub(sb.spares.ready());
            if missing == 0 {
                let guard = sb.spares.lock();
                if sb.ready_pending() {
                    continue;
                }
                // Wake on a take or a retirement, or now and then to expire idle instances
                // and to notice the sandbox going away.
                let _ = sb.spares.low.wait_timeout(guard, Duration::from_millis(500));
                continue;
            }
            match sb.boot_instance() {
                Ok(inst) => sb.spares.lock().push(inst),
                Err(e) => {
                    tracing::warn!(error = %e.message, "could not boot a spare instance");
                    drop(sb);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
}
