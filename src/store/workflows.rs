//! Workflows and their versions (each change appends one, like functions).

use serde::Serialize;
use sqlx::Row as _;

use super::schedules::{sync_managed, users_of_workflow};
use super::{conflict_on_unique, now_ms, Audit, ScheduleFields, StoreError, StoreResult, Tenant};
use crate::domain::workflow::Definition;

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub version: i64,
    #[serde(flatten)]
    pub definition: Definition,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowVersion {
    pub version: i64,
    #[serde(flatten)]
    pub definition: Definition,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
}

const SELECT: &str = "select w.id, w.name, w.current_version, w.created_by, w.created_at, w.updated_at, v.definition \
                      from workflows w join workflow_versions v on v.workflow_id = w.id and v.version = w.current_version";

fn workflow_from(r: &super::Row) -> Result<Workflow, sqlx::Error> {
    let text: String = r.try_get("definition")?;
    let definition = serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::Decode(format!("column `definition` holds an invalid definition: {e}").into()))?;
    Ok(Workflow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        version: r.try_get("current_version")?,
        definition,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("workflow {name} not found"))
}

/// The schedule a workflow's `schedule` field asks for, with its first tick; `None` removes it.
pub type ManagedSchedule<'a> = Option<(&'a ScheduleFields, Option<i64>)>;

impl Tenant<'_> {
    /// Create a workflow (version 1) and its own schedule, in one transaction.
    pub async fn create_workflow(
        &self,
        name: &str,
        (def, schedule): (&Definition, ManagedSchedule<'_>),
        by: &str,
        audit: Audit,
    ) -> StoreResult<Workflow> {
        let tenant = self.id;
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "insert into workflows (id, tenant, name, current_version, created_by, created_at, updated_at) \
             values ($1, $2, $3, 1, $4, $5, $5)",
        )
        .bind(&id)
        .bind(tenant)
        .bind(name)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("a workflow named {name} already exists")))?;
        insert_version(&mut tx, (tenant, &id), 1, def, (by, now)).await?;
        sync_managed(&mut tx, tenant, name, schedule, by).await?;
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        self.get_workflow(name).await
    }

    pub async fn get_workflow(&self, name: &str) -> StoreResult<Workflow> {
        let tenant = self.id;
        sqlx::query(&format!("{SELECT} where w.tenant = $1 and w.name = $2"))
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.store.pool)
            .await?
            .map(|r| workflow_from(&r))
            .transpose()?
            .ok_or_else(|| not_found(name))
    }

    pub async fn list_workflows(&self) -> StoreResult<Vec<Workflow>> {
        let tenant = self.id;
        let rows = sqlx::query(&format!("{SELECT} where w.tenant = $1 order by w.name"))
            .bind(tenant)
            .fetch_all(&self.store.pool)
            .await?;
        Ok(rows.iter().map(workflow_from).collect::<Result<_, _>>()?)
    }

    /// Append a version, make it current and bring its own schedule in line.
    pub async fn update_workflow(
        &self,
        name: &str,
        (def, schedule): (&Definition, ManagedSchedule<'_>),
        by: &str,
        audit: Audit,
    ) -> StoreResult<Workflow> {
        let tenant = self.id;
        let current = self.get_workflow(name).await?;
        let version = current.version + 1;
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        insert_version(&mut tx, (tenant, &current.id), version, def, (by, now))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!("{name} was changed concurrently; retry")),
                other => other,
            })?;
        sqlx::query("update workflows set current_version = $3, updated_at = $4 where tenant = $1 and id = $2")
            .bind(tenant)
            .bind(&current.id)
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // An edit that leaves the schedule as it was leaves its state alone too (a pause, a
        // tick about to fire).
        if current.definition.schedule != def.schedule {
            sync_managed(&mut tx, tenant, name, schedule, by).await?;
        }
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        self.get_workflow(name).await
    }

    pub async fn workflow_versions(&self, name: &str) -> StoreResult<Vec<WorkflowVersion>> {
        let w = self.get_workflow(name).await?;
        let rows = sqlx::query(
            "select version, definition, created_by, created_at from workflow_versions where workflow_id = $1 \
             order by version desc",
        )
        .bind(&w.id)
        .fetch_all(&self.store.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let text: String = r.try_get("definition")?;
            out.push(WorkflowVersion {
                version: r.try_get("version")?,
                definition: serde_json::from_str(&text).map_err(|e| {
                    sqlx::Error::Decode(format!("column `definition` holds an invalid definition: {e}").into())
                })?,
                created_by: r.try_get("created_by")?,
                created_at: r.try_get("created_at")?,
            });
        }
        Ok(out)
    }

    /// Delete a workflow, its versions and its own schedule; refused while a webhook or
    /// another schedule runs it. Its past runs stay as executions.
    pub async fn delete_workflow(&self, name: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let w = self.get_workflow(name).await?;
        let mut tx = self.store.begin().await?;
        let users = users_of_workflow(&mut tx, tenant, name).await?;
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "workflow {name} is run by {}; delete or repoint them first",
                users.join(", ")
            )));
        }
        sync_managed(&mut tx, tenant, name, None, "").await?;
        sqlx::query("delete from workflow_versions where workflow_id = $1")
            .bind(&w.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from workflows where tenant = $1 and id = $2")
            .bind(tenant)
            .bind(&w.id)
            .execute(&mut *tx)
            .await?;
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Names of the tenant's workflows whose current version runs `function`.
pub(super) async fn names_for_function(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    function: &str,
) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(&format!("{SELECT} where w.tenant = $1 order by w.name"))
        .bind(tenant)
        .fetch_all(&mut **tx)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let w = workflow_from(r)?;
        if w.definition.nodes.iter().any(|n| n.function == function) {
            out.push(w.name);
        }
    }
    Ok(out)
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    (tenant, id): (&str, &str),
    version: i64,
    def: &Definition,
    (by, now): (&str, i64),
) -> StoreResult<()> {
    sqlx::query(
        "insert into workflow_versions (workflow_id, tenant, version, definition, created_by, created_at) \
         values ($1, $6, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(version)
    .bind(serde_json::to_string(def).unwrap_or_default())
    .bind(by)
    .bind(now)
    .bind(tenant)
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("version {version} exists")))?;
    Ok(())
}
