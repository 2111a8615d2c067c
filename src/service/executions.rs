//! Executions as recorded: history with filters, one execution, its steps. Reads only; the
//! engine writes them.

use super::Result;
use crate::auth::Caller;
use crate::store::{ExecutionFilter, ExecutionRecord, StepRecord, Store};

#[derive(Clone)]
pub struct Executions {
    store: Store,
}

impl Executions {
    pub fn new(store: Store) -> Executions {
        Executions { store }
    }

    pub async fn list(&self, caller: &Caller, filter: &ExecutionFilter) -> Result<(Vec<ExecutionRecord>, i64)> {
        Ok(self.store.tenant(&caller.tenant).list_executions(filter).await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ExecutionRecord> {
        Ok(self.store.tenant(&caller.tenant).get_execution(id).await?)
    }

    /// Every call of an execution, in call order.
    pub async fn steps(&self, caller: &Caller, id: &str) -> Result<Vec<StepRecord>> {
        Ok(self.store.tenant(&caller.tenant).list_steps(id).await?)
    }
}
