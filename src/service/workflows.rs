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
use crate::store::{
    Audit, ExecutionRecord, PageQuery, Paged, StepRecord, Store, Workflow, WorkflowRunRow, WorkflowVersion,
};

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
            .tenant(&caller.tenant)
            .create_workflow(name, (&def, own), &caller.email, audit)
            .await?)
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<Workflow>> {
        Ok(self.store.tenant(&caller.tenant).list_workflows().await?)
    }

    pub async fn get(&self, caller: &Caller, name: &str) -> Result<Workflow> {
        Ok(self.store.tenant(&caller.tenant).get_workflow(name).await?)
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
            .tenant(&caller.tenant)
            .update_workflow(name, (&def, own), &caller.email, audit)
            .await?)
    }

    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<()> {
        let audit = Audit::new(&caller.email, "workflow.delete", format!("workflow:{name}"));
        Ok(self.store.tenant(&caller.tenant).delete_workflow(name, audit).await?)
    }

    pub async fn versions(&self, caller: &Caller, name: &str) -> Result<Vec<WorkflowVersion>> {
        Ok(self.store.tenant(&caller.tenant).workflow_versions(name).await?)
    }

    /// Start a run here, now, with `config` over the workflow's defaults (its caller waits).
    pub async fn run(&self, caller: &Caller, name: &str, config: Option<&Value>) -> Result<WorkflowRun> {
        let (w, config) = self.with_config(caller, name, config).await?;
        let trigger = Trigger::Workflow { id: w.id.clone() };
        Ok(self.engine.run_workflow(&caller.tenant, &w, config, trigger).await?)
    }

    /// Queue a run with `config` over the workflow's defaults; answers its execution id.
    pub async fn queue(&self, caller: &Caller, name: &str, config: Option<&Value>) -> Result<String> {
        let (w, config) = self.with_config(caller, name, config).await?;
        let trigger = Trigger::Workflow { id: w.id.clone() };
        Ok(self
            .engine
            .enqueue_workflow(&caller.tenant, &w, &config, &trigger)
            .await?)
    }

    async fn with_config(&self, caller: &Caller, name: &str, config: Option<&Value>) -> Result<(Workflow, Value)> {
        let w = self.store.tenant(&caller.tenant).get_workflow(name).await?;
        let config = merge_config(&w.definition.config, config).map_err(Error::Malformed)?;
        Ok((w, config))
    }

    /// A page of the workflow's runs (as executions), newest first, with the total.
    pub async fn runs(
        &self,
        caller: &Caller,
        name: &str,
        status: Option<&str>,
        page: &PageQuery,
    ) -> Result<Paged<ExecutionRecord>> {
        let w = self.store.tenant(&caller.tenant).get_workflow(name).await?;
        Ok(self
            .store
            .tenant(&caller.tenant)
            .list_workflow_runs(&w.id, status, page)
            .await?)
    }

    /// One run of this workflow, with the definition it ran and its steps.
    pub async fn run_detail(&self, caller: &Caller, name: &str, id: &str) -> Result<RunDetail> {
        let tenant = &caller.tenant;
        let w = self.store.tenant(tenant).get_workflow(name).await?;
        let run = self.store.tenant(tenant).workflow_run(id).await?;
        let Some(run) = run.filter(|r| r.workflow_id == w.id) else {
            return Err(Error::NotFound(format!("{name} has no run {id}")));
        };
        let execution = self.store.tenant(tenant).get_execution(id).await?;
        let (_, definition) = self
            .store
            .tenant(tenant)
            .workflow_version_by_id(&w.id, run.version)
            .await?;
        let steps = self.store.tenant(tenant).list_steps(id).await?;
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
            if !self.store.tenant(tenant).function_exists(&n.function).await? {
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
