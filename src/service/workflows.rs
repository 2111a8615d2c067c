//! Workflows: a definition checked in the tenant (every node a function that exists), its
//! own schedule built by the schedules' parser, versions appended in one transaction with
//! that schedule and the audit row, and manual runs.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Error, Result};
use crate::auth::Caller;
use crate::config::Settings;
use crate::domain::workflow::{Definition, DefinitionIn};
use crate::domain::FunctionName;
use crate::engine::workflow::merge_config;
use crate::engine::workflow::WorkflowRun;
use crate::engine::{Engine, Trigger};
use crate::store::{Audit, ExecutionRecord, StepRecord, Store, Workflow, WorkflowRunRow, WorkflowVersion};

#[derive(Clone)]
pub struct Workflows {
    store: Store,
    engine: Engine,
    settings: Arc<Settings>,
}

/// One run with what its DAG view needs: the version it ran and every step.
pub struct RunDetail {
    pub run: WorkflowRunRow,
    pub execution: ExecutionRecord,
    pub definition: Definition,
    pub steps: Vec<StepRecord>,
}

impl Workflows {
    pub fn new(store: Store, engine: Engine, settings: Arc<Settings>) -> Workflows {
        Workflows {
            store,
            engine,
            settings,
        }
    }

    /// A new workflow from a body (its fields but `name`).
    pub async fn create(&self, caller: &Caller, name: &str, body: Map<String, Value>) -> Result<Workflow> {
        FunctionName::parse(name)?;
        let def = self.definition(&caller.tenant, body).await?;
        let own = super::schedules::owned_by_workflow(&self.settings, name, &def)?;
        let own = own.as_ref().map(|(f, next)| (f, *next));
        let audit = Audit::new(&caller.email, "workflow.create", format!("workflow:{name}"));
        Ok(self
            .store
            .create_workflow(&caller.tenant, name, (&def, own), &caller.email, audit)
            .await?)
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<Workflow>> {
        Ok(self.store.list_workflows(&caller.tenant).await?)
    }

    pub async fn get(&self, caller: &Caller, name: &str) -> Result<Workflow> {
        Ok(self.store.get_workflow(&caller.tenant, name).await?)
    }

    /// A new version from `body`; a `name` in it must be the workflow's own.
    pub async fn update(&self, caller: &Caller, name: &str, mut body: Map<String, Value>) -> Result<Workflow> {
        if body
            .remove("name")
            .is_some_and(|n| n != Value::String(name.to_string()))
        {
            return Err(Error::malformed("name", "a workflow cannot be renamed"));
        }
        let def = self.definition(&caller.tenant, body).await?;
        let own = super::schedules::owned_by_workflow(&self.settings, name, &def)?;
        let own = own.as_ref().map(|(f, next)| (f, *next));
        let audit = Audit::new(&caller.email, "workflow.update", format!("workflow:{name}"));
        Ok(self
            .store
            .update_workflow(&caller.tenant, name, (&def, own), &caller.email, audit)
            .await?)
    }

    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<()> {
        let audit = Audit::new(&caller.email, "workflow.delete", format!("workflow:{name}"));
        Ok(self.store.delete_workflow(&caller.tenant, name, audit).await?)
    }

    pub async fn versions(&self, caller: &Caller, name: &str) -> Result<Vec<WorkflowVersion>> {
        Ok(self.store.workflow_versions(&caller.tenant, name).await?)
    }

    /// Start a run now with `config` over the workflow's defaults.
    pub async fn run(&self, caller: &Caller, name: &str, config: Option<&Value>) -> Result<WorkflowRun> {
        let w = self.store.get_workflow(&caller.tenant, name).await?;
        let config = merge_config(&w.definition.config, config).map_err(Error::Malformed)?;
        let trigger = Trigger::Workflow { id: w.id.clone() };
        Ok(self.engine.run_workflow(&caller.tenant, &w, config, trigger).await?)
    }

    /// A page of the workflow's runs (as executions), newest first, with the total.
    pub async fn runs(
        &self,
        caller: &Caller,
        name: &str,
        status: Option<&str>,
        page: (i64, i64),
    ) -> Result<(Vec<ExecutionRecord>, i64)> {
        let w = self.store.get_workflow(&caller.tenant, name).await?;
        Ok(self
            .store
            .list_workflow_runs(&caller.tenant, &w.id, status, page)
            .await?)
    }

    /// One run of this workflow, with the definition it ran and its steps.
    pub async fn run_detail(&self, caller: &Caller, name: &str, id: &str) -> Result<RunDetail> {
        let tenant = &caller.tenant;
        let w = self.store.get_workflow(tenant, name).await?;
        let run = self.store.workflow_run(tenant, id).await?;
        let Some(run) = run.filter(|r| r.workflow_id == w.id) else {
            return Err(Error::NotFound(format!("{name} has no run {id}")));
        };
        let execution = self.store.get_execution(tenant, id).await?;
        let (_, definition) = self.store.workflow_version_by_id(tenant, &w.id, run.version).await?;
        let steps = self.store.list_steps(tenant, id).await?;
        Ok(RunDetail {
            run,
            execution,
            definition,
            steps,
        })
    }

    /// Check a body: its shape, then that every node is a function of the tenant.
    async fn definition(&self, tenant: &str, body: Map<String, Value>) -> Result<Definition> {
        let parsed: DefinitionIn =
            serde_json::from_value(Value::Object(body)).map_err(|e| Error::malformed("body", e.to_string()))?;
        let def = parsed.check().map_err(|e| Error::malformed(e.field, e.message))?;
        let mut unknown = Vec::new();
        for n in &def.nodes {
            if !self.store.function_exists(tenant, &n.function).await? {
                unknown.push(n.function.as_str());
            }
        }
        if !unknown.is_empty() {
            return Err(Error::malformed(
                "nodes",
                format!("no function named {} in this tenant", unknown.join(", ")),
            ));
        }
        Ok(def)
    }
}
