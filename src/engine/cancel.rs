//! Cancelling executions wherever they run. The store decides what a cancel means (a queued
//! job is taken off the queue; a running execution gets a request row); this server stops
//! its own at once, and every server's lease pass stops those it runs that another replica
//! was asked to cancel.

use super::{Engine, Result};
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
        if outcome == CancelOutcome::Requested {
            self.inner.cancel_local(&[id.to_string()]);
        }
        if outcome == CancelOutcome::Dequeued {
            self.inner.events.publish(
                tenant,
                id,
                "execution.finished",
                serde_json::json!({"step_id": id, "status": "cancelled", "depth": 0}),
            );
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
