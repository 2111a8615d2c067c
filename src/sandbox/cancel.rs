//! Cancelling a running call from outside it. A [`Cancel`] is a small copyable handle that
//! travels down a call tree with its [`super::Budget`]; every instance running under it
//! checks it at each epoch check (a few times a second) and while it sleeps, and stops with
//! a `cancelled` trap once it is set. The handle is a number into one process-wide set, so a
//! budget stays `Copy` and checking costs one atomic load while nothing is cancelled.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

static NEXT: AtomicU64 = AtomicU64::new(1);
/// How many handles are cancelled and not yet released (the fast path when zero).
static PENDING: AtomicUsize = AtomicUsize::new(0);
static CANCELLED: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// A handle to stop the calls that run under it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Cancel(u64);

impl Cancel {
    /// The handle of calls nobody can cancel (checks, warm-ups).
    pub const NEVER: Cancel = Cancel(0);

    /// A fresh handle; [`Cancel::release`] it when its calls have ended.
    pub fn new() -> Cancel {
        Cancel(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Ask every call under this handle to stop.
    pub fn cancel(self) {
        if self == Cancel::NEVER {
            return;
        }
        if set().insert(self.0) {
            PENDING.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn is_cancelled(self) -> bool {
        self != Cancel::NEVER && PENDING.load(Ordering::SeqCst) > 0 && set().contains(&self.0)
    }

    /// Forget the handle (its calls have ended).
    pub fn release(self) {
        if set().remove(&self.0) {
            PENDING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn set() -> std::sync::MutexGuard<'static, HashSet<u64>> {
    CANCELLED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Raised (as a trap) in a call whose handle was cancelled.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the execution was cancelled")
    }
}

impl std::error::Error for Cancelled {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_cancelled_until_released_and_never_is_never() {
        let (a, b) = (Cancel::new(), Cancel::new());
        assert!(!a.is_cancelled());
        a.cancel();
        a.cancel();
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled(), "only the handle asked");
        Cancel::NEVER.cancel();
        assert!(!Cancel::NEVER.is_cancelled());
        a.release();
        assert!(!a.is_cancelled());
        b.release();
    }
}
