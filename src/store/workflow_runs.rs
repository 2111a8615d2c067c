//! Workflow runs: what a run executes (workflow version, config, trigger) and which server
//! drives it, under a lease. The node results themselves are the execution's steps, so a
//! server taking over a run whose lease ran out rebuilds its state from them. These queries
//! work across tenants like the scheduler's: they are how a stranded run finds its tenant.

use serde_json::Value;
use sqlx::Row as _;

use super::executions::{execution_from, EXEC_COLS};
use super::page::{Keyset, PageQuery, Paged};
use super::{json_col, now_ms, ExecutionRecord, Row, Store, StoreError, StoreResult, Tenant};
use crate::domain::workflow::Definition;

/// A run as stored.
#[derive(Debug, Clone)]
pub struct WorkflowRunRow {
    pub execution_id: String,
    pub tenant: String,
    pub workflow_id: String,
    pub version: i64,
    pub config: Value,
    pub trigger: String,
    pub trigger_id: Option<String>,
    pub lease_until: Option<i64>,
    pub resumes: i64,
}

const COLS: &str = "execution_id, tenant, workflow_id, version, config, trigger, trigger_id, lease_until, resumes";

fn run_from(r: &Row) -> Result<WorkflowRunRow, sqlx::Error> {
    Ok(WorkflowRunRow {
        execution_id: r.try_get("execution_id")?,
        tenant: r.try_get("tenant")?,
        workflow_id: r.try_get("workflow_id")?,
        version: r.try_get("version")?,
        config: json_col(r, "config")?.unwrap_or(Value::Null),
        trigger: r.try_get("trigger")?,
        trigger_id: r.try_get("trigger_id")?,
        lease_until: r.try_get("lease_until")?,
        resumes: r.try_get("resumes")?,
    })
}

impl Store {
    /// Record a run as it starts, leased to `owner` until `lease_until`.
    pub async fn insert_workflow_run(&self, r: &WorkflowRunRow, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "insert into workflow_runs (execution_id, tenant, workflow_id, version, config, trigger, trigger_id, \
             status, owner, lease_until, resumes, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, 0, $10)",
        )
        .bind(&r.execution_id)
        .bind(&r.tenant)
        .bind(&r.workflow_id)
        .bind(r.version)
        .bind(r.config.to_string())
        .bind(&r.trigger)
        .bind(&r.trigger_id)
        .bind(owner)
        .bind(r.lease_until)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extend `owner`'s lease; false when the run is no longer its own (taken over or ended).
    pub async fn renew_workflow_lease(&self, id: &str, owner: &str, until: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "update workflow_runs set lease_until = $3 where execution_id = $1 and owner = $2 and status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The run ended (`status` as its execution's); nobody drives it any more.
    /// With `owner`, only while that drive still holds it.
    pub async fn finish_workflow_run(&self, id: &str, status: &str, owner: Option<&str>) -> StoreResult<()> {
        sqlx::query(
            "update workflow_runs set status = $2, owner = null, lease_until = null \
             where execution_id = $1 and ($3 is null or owner = $3)",
        )
        .bind(id)
        .bind(status)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Running runs whose lease ran out before `now`: their server stopped.
    pub async fn stranded_workflow_runs(&self, now: i64, limit: i64) -> StoreResult<Vec<WorkflowRunRow>> {
        let sql = format!(
            "select {COLS} from workflow_runs where status = 'running' and lease_until < $1 \
             order by lease_until limit $2"
        );
        let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(run_from).collect::<Result<_, _>>()?)
    }

    /// Take over a stranded run: only one server's compare-and-set on the old lease matches.
    pub async fn take_workflow_run(&self, r: &WorkflowRunRow, owner: &str, until: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "update workflow_runs set owner = $2, lease_until = $3, resumes = resumes + 1 \
             where execution_id = $1 and status = 'running' and lease_until = $4",
        )
        .bind(&r.execution_id)
        .bind(owner)
        .bind(until)
        .bind(r.lease_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Tenant<'_> {
    /// The workflow's name and the definition of `version`, by id (a run outlives renames of
    /// nothing, but its workflow may have been deleted).
    pub async fn workflow_version_by_id(&self, workflow_id: &str, version: i64) -> StoreResult<(String, Definition)> {
        let tenant = self.id;
        let row = sqlx::query(
            "select w.name, v.definition from workflows w join workflow_versions v on v.workflow_id = w.id \
             where w.tenant = $1 and w.id = $2 and v.version = $3",
        )
        .bind(tenant)
        .bind(workflow_id)
        .bind(version)
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("workflow {workflow_id} version {version} is gone")))?;
        let text: String = row.try_get("definition")?;
        let def = serde_json::from_str(&text)
            .map_err(|e| sqlx::Error::Decode(format!("column `definition` holds an invalid definition: {e}").into()))?;
        Ok((row.try_get("name")?, def))
    }

    /// The run record of an execution, if it is a workflow run.
    pub async fn workflow_run(&self, execution_id: &str) -> StoreResult<Option<WorkflowRunRow>> {
        let tenant = self.id;
        let sql = format!("select {COLS} from workflow_runs where tenant = $1 and execution_id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant)
            .bind(execution_id)
            .fetch_optional(&self.store.pool)
            .await?;
        Ok(row.as_ref().map(run_from).transpose()?)
    }

    /// A workflow's runs as executions, newest first, with the total.
    pub async fn list_workflow_runs(
        &self,
        workflow_id: &str,
        status: Option<&str>,
        page: &PageQuery,
    ) -> StoreResult<Paged<ExecutionRecord>> {
        let tenant = self.id;
        // Driven from the workflow's own runs (newest first, by its index), so a page costs
        // a page however many runs the workflow or the tenant has had.
        let cols: Vec<String> = EXEC_COLS.split(", ").map(|c| format!("e.{c}")).collect();
        let cols = cols.join(", ");
        let from = "from workflow_runs w join executions e on e.id = w.execution_id \
                    where w.tenant = $1 and w.workflow_id = $2 and ($3 is null or e.status = $3)";
        let after = if page.after.is_some() {
            " and (w.created_at, w.execution_id) < ($6, $7)"
        } else {
            ""
        };
        let sql = format!(
            "select {cols}, w.created_at as run_at {from}{after} \
             order by w.created_at desc, w.execution_id desc limit $4 offset $5"
        );
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(workflow_id)
            .bind(status)
            .bind(page.fetch())
            .bind(page.offset);
        let rows = match page.after_binds() {
            (Some(at), Some(id)) => query.bind(at).bind(id),
            _ => query,
        }
        .fetch_all(&self.store.pool)
        .await?;
        let total = if page.count {
            let n: i64 = sqlx::query(&format!("select count(*) as n {from}"))
                .bind(tenant)
                .bind(workflow_id)
                .bind(status)
                .fetch_one(&self.store.pool)
                .await?
                .try_get("n")?;
            Some(n)
        } else {
            None
        };
        let mut items = vec![];
        for r in &rows {
            let at: i64 = r.try_get("run_at")?;
            items.push((at, execution_from(r)?));
        }
        let key = |(at, e): &(i64, ExecutionRecord)| Keyset {
            at: *at,
            id: e.id.clone(),
        };
        let p = page.finish(items, key, total);
        Ok(Paged {
            items: p.items.into_iter().map(|(_, e)| e).collect(),
            next: p.next,
            total: p.total,
        })
    }

    /// Close the steps of an execution that a stopped server left `running`.
    pub async fn interrupt_open_steps(&self, execution_id: &str) -> StoreResult<u64> {
        let tenant = self.id;
        let error = r#"{"kind":"interrupted","message":"the server running this step stopped; the run was resumed"}"#;
        let done = sqlx::query(
            "update steps set status = 'failed', error = $3, finished_at = $4 \
             where tenant = $1 and execution_id = $2 and status = 'running'",
        )
        .bind(tenant)
        .bind(execution_id)
        .bind(error)
        .bind(now_ms())
        .execute(&self.store.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
