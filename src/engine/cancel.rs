//! Cancelling executions wherever they run. The store decides what a cancel means (a queued
//! job is taken off the queue; a running execution gets a request row); this server stops
//! its own at once, and every server's lease pass stops those it runs that another replica
//! was asked to cancel.

use serde_json::Value;

use super::{Engine, Result};
use crate::sandbox::{Cancel, ErrorKind, ErrorRecord};
use crate::store::{now_ms, CancelOutcome, StoreError};

/// How far back a lease pass reads cancel requests (a request is acted on within a pass, so
/// this only has to outlast clock skew between servers and a pass that failed).
const REQUEST_WINDOW_MS: i64 = 10 * 60 * 1000;
/// How often a server forgets requests older than the window.
const FORGET_EVERY_MS: i64 = 60 * 1000;

impl Engine {
    /// Cancel execution `id` of `tenant`: see [`CancelOutcome`].
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<CancelOutcome> {
        let outcome = self.inner.store.tenant(tenant).cancel_execution(id).await?;
        match &outcome {
            CancelOutcome::Requested(current) => {
                self.inner.cancel_local(std::slice::from_ref(current));
            }
            CancelOutcome::Dequeued(current) => self.inner.events.publish(
                tenant,
                current,
                "execution.finished",
                serde_json::json!({"step_id": current, "status": "cancelled", "depth": 0}),
            ),
            CancelOutcome::Finished(_) => {}
        }
        Ok(outcome)
    }

    /// Stop the executions running here that a cancel request names; now and then forget
    /// old requests. Part of the lease pass; `last_forget` is when it last forgot.
    pub(super) async fn apply_cancel_requests(&self, last_forget: &mut i64) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = now_ms();
        if self.in_flight() > 0 {
            let ids = store.cancel_requests(now - REQUEST_WINDOW_MS).await?;
            let stopped = self.inner.cancel_local(&ids);
            if stopped > 0 {
                tracing::debug!(stopped, "cancel requests reached executions running here");
            }
        }
        if now - *last_forget > FORGET_EVERY_MS {
            *last_forget = now;
            store.forget_cancel_requests(now - REQUEST_WINDOW_MS).await?;
        }
        Ok(())
    }
}

/// How a cancel decides a call's failure: one that failed after its tree was cancelled (a
/// trap, or code that caught a cancelled nested call and failed otherwise) ends cancelled;
/// the `cancelled` kind when nobody asked (the guest's own report) is a crash.
pub(super) fn settle(result: &mut std::result::Result<Value, ErrorRecord>, cancel: Cancel) {
    let Err(e) = result else { return };
    if cancel.is_cancelled() {
        if e.kind != ErrorKind::Cancelled {
            *e = ErrorRecord::new(ErrorKind::Cancelled, "the execution was cancelled");
        }
    } else if e.kind == ErrorKind::Cancelled {
        *e = ErrorRecord::new(ErrorKind::Crash, "the code reported a cancel nobody asked for");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_asked_cancel_ends_a_call_cancelled() {
        let failed = |kind| Err::<Value, _>(ErrorRecord::new(kind, "x"));
        let (asked, not_asked) = (Cancel::new(), Cancel::new());
        asked.cancel();
        let mut caught = failed(ErrorKind::PythonException);
        settle(&mut caught, asked);
        assert_eq!(caught.unwrap_err().kind, ErrorKind::Cancelled);
        let mut forged = failed(ErrorKind::Cancelled);
        settle(&mut forged, not_asked);
        assert_eq!(forged.unwrap_err().kind, ErrorKind::Crash);
        let mut other = failed(ErrorKind::Timeout);
        settle(&mut other, not_asked);
        assert_eq!(other.unwrap_err().kind, ErrorKind::Timeout);
        let mut done = Ok(Value::Null);
        settle(&mut done, asked);
        assert!(done.is_ok(), "a call that ended keeps its result");
        asked.release();
    }
}
