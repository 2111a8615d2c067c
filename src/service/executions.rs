//! Executions as recorded: history with filters, one execution, its steps; and cancel. The
//! engine writes them.

use super::{Error, Result};
use crate::auth::Caller;
use crate::engine::Engine;
use crate::store::{CancelOutcome, ExecutionFilter, ExecutionRecord, PageQuery, Paged, StepRecord, Store};

#[derive(Clone)]
pub struct Executions {
    store: Store,
    engine: Engine,
}

/// What a cancel answers.
pub enum Cancelled {
    /// It was queued and now says `cancelled`.
    Now(Box<ExecutionRecord>),
    /// This execution (the job's current attempt) runs; the server running it stops it
    /// within moments.
    Requested(String),
}

impl Executions {
    pub fn new(store: Store, engine: Engine) -> Executions {
        Executions { store, engine }
    }

    /// Take a queued execution off the queue, or stop a running one wherever it runs. One
    /// that already ended is a conflict.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Cancelled> {
        match self.engine.cancel(&caller.tenant, id).await? {
            CancelOutcome::Dequeued(current) => Ok(Cancelled::Now(Box::new(self.get(caller, &current).await?))),
            CancelOutcome::Requested(current) => Ok(Cancelled::Requested(current)),
            CancelOutcome::Finished(status) => Err(Error::Conflict(format!(
                "execution {id} already ended ({status}); there is nothing to cancel"
            ))),
        }
    }

    pub async fn list(
        &self,
        caller: &Caller,
        filter: &ExecutionFilter,
        page: &PageQuery,
    ) -> Result<Paged<ExecutionRecord>> {
        Ok(self.store.tenant(&caller.tenant).list_executions(filter, page).await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ExecutionRecord> {
        Ok(self.store.tenant(&caller.tenant).get_execution(id).await?)
    }

    /// Every call of an execution, in call order.
    pub async fn steps(&self, caller: &Caller, id: &str) -> Result<Vec<StepRecord>> {
        Ok(self.store.tenant(&caller.tenant).list_steps(id).await?)
    }

    /// A page of an execution's calls, in call order.
    pub async fn steps_page(&self, caller: &Caller, id: &str, page: &PageQuery) -> Result<Paged<StepRecord>> {
        Ok(self.store.tenant(&caller.tenant).list_steps_page(id, page).await?)
    }
}
