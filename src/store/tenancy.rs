//! Subtenants, access grants and the audit trail.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::{conflict_on_unique, json_col, now_ms, text_col, Audit, Row, Store, StoreError, StoreResult};
use crate::domain::Role;

#[derive(Debug, Clone, Serialize)]
pub struct Subtenant {
    pub subtenant_id: String,
    pub description: String,
    /// Overrides of the server's default quotas.
    pub quotas: Value,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub subtenant_id: String,
    pub user_email: String,
    pub role: Role,
    pub granted_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<Value>,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub at: i64,
}

/// Every table whose rows belong to a tenant, children first (a forced delete empties them).
const TENANT_TABLES: [&str; 15] = [
    "jobs",
    "workflow_runs",
    "workflow_versions",
    "workflows",
    "secrets",
    "egress_policies",
    "packages",
    "package_jobs",
    "steps",
    "executions",
    "schedule_runs",
    "schedules",
    "webhooks",
    "function_versions",
    "functions",
];

fn subtenant_from(r: &Row) -> Result<Subtenant, sqlx::Error> {
    Ok(Subtenant {
        subtenant_id: r.try_get("id")?,
        description: r.try_get("description")?,
        quotas: json_col(r, "quotas")?.unwrap_or(Value::Null),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn grant_from(r: &Row) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        subtenant_id: r.try_get("subtenant_id")?,
        user_email: r.try_get("user_email")?,
        role: text_col(r, "role")?,
        granted_by: r.try_get("granted_by")?,
        created_at: r.try_get("created_at")?,
    })
}

async fn fetch_subtenant(conn: &mut sqlx::AnyConnection, id: &str) -> StoreResult<Subtenant> {
    let row = sqlx::query("select * from subtenants where id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(subtenant_from(&row.ok_or_else(|| not_found(id))?)?)
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("subtenant {id} not found"))
}

const GRANT_COLS: &str = "subtenant_id, user_email, role, granted_by, created_at";

impl Store {
    pub async fn create_subtenant(
        &self,
        id: &str,
        description: &str,
        quotas: &Value,
        by: &str,
        audit: impl FnOnce(&Subtenant) -> Audit,
    ) -> StoreResult<Subtenant> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query(
            "insert into subtenants (id, description, quotas, created_by, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id)
        .bind(description)
        .bind(quotas.to_string())
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("subtenant {id} already exists")))?;
        let s = fetch_subtenant(&mut tx, id).await?;
        audit(&s).write(&mut tx, id).await?;
        tx.commit().await?;
        Ok(s)
    }

    pub async fn get_subtenant(&self, id: &str) -> StoreResult<Subtenant> {
        fetch_subtenant(&mut *self.pool.acquire().await?, id).await
    }

    pub async fn subtenant_exists(&self, id: &str) -> StoreResult<bool> {
        let row = sqlx::query("select 1 as one from subtenants where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn list_subtenants(&self, limit: i64, offset: i64) -> StoreResult<(Vec<Subtenant>, i64)> {
        let rows = sqlx::query("select * from subtenants order by id limit $1 offset $2")
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query("select count(*) as n from subtenants")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((rows.iter().map(subtenant_from).collect::<Result<_, _>>()?, total))
    }

    pub async fn update_subtenant(
        &self,
        id: &str,
        description: &str,
        quotas: &Value,
        audit: impl FnOnce(&Subtenant) -> Audit,
    ) -> StoreResult<Subtenant> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("update subtenants set description = $2, quotas = $3, updated_at = $4 where id = $1")
            .bind(id)
            .bind(description)
            .bind(quotas.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        let s = fetch_subtenant(&mut tx, id).await?;
        audit(&s).write(&mut tx, id).await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Delete a subtenant. While it owns functions this is refused unless `force`, which
    /// removes everything it owns in the same transaction.
    pub async fn delete_subtenant(&self, id: &str, force: bool, audit: Audit) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let owned: i64 = sqlx::query("select count(*) as n from functions where tenant = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if owned > 0 && !force {
            return Err(StoreError::Conflict(format!(
                "subtenant {id} still owns {owned} function(s); delete them first or pass ?force=true"
            )));
        }
        for table in TENANT_TABLES {
            sqlx::query(&format!("delete from {table} where tenant = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("delete from grants where subtenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("delete from subtenants where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        audit.write(&mut tx, id).await?;
        tx.commit().await?;
        self.functions.clear();
        Ok(())
    }

    /// Give `email` a role in a subtenant (replacing any role it had there).
    pub async fn grant(
        &self,
        subtenant: &str,
        email: &str,
        role: Role,
        by: &str,
        audit: impl FnOnce(&Grant) -> Audit,
    ) -> StoreResult<Grant> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("select 1 as one from subtenants where id = $1")
            .bind(subtenant)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(not_found(subtenant));
        }
        sqlx::query(
            "insert into grants (subtenant_id, user_email, role, granted_by, created_at) values ($1, $2, $3, $4, $5)
             on conflict (subtenant_id, user_email) do update set role = excluded.role, granted_by = excluded.granted_by",
        )
        .bind(subtenant)
        .bind(email)
        .bind(role.as_str())
        .bind(by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let sql = format!("select {GRANT_COLS} from grants where subtenant_id = $1 and user_email = $2");
        let row = sqlx::query(&sql)
            .bind(subtenant)
            .bind(email)
            .fetch_one(&mut *tx)
            .await?;
        let g = grant_from(&row)?;
        audit(&g).write(&mut tx, subtenant).await?;
        tx.commit().await?;
        Ok(g)
    }

    pub async fn revoke(&self, subtenant: &str, email: &str, audit: Audit) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        fetch_subtenant(&mut tx, subtenant).await?;
        let done = sqlx::query("delete from grants where subtenant_id = $1 and user_email = $2")
            .bind(subtenant)
            .bind(email)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "{email} has no access to subtenant {subtenant}"
            )));
        }
        audit.write(&mut tx, subtenant).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn members(&self, subtenant: &str) -> StoreResult<Vec<Grant>> {
        self.get_subtenant(subtenant).await?;
        let sql = format!("select {GRANT_COLS} from grants where subtenant_id = $1 order by user_email");
        let rows = sqlx::query(&sql).bind(subtenant).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(grant_from).collect::<Result<_, _>>()?)
    }

    /// Every grant of a user (emails compare case-insensitively: they are stored lower-case).
    pub async fn grants_of(&self, email: &str) -> StoreResult<Vec<Grant>> {
        let sql = format!("select {GRANT_COLS} from grants where user_email = $1 order by subtenant_id");
        let rows = sqlx::query(&sql).bind(email).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(grant_from).collect::<Result<_, _>>()?)
    }

    pub async fn grant_of(&self, subtenant: &str, email: &str) -> StoreResult<Option<Grant>> {
        let sql = format!("select {GRANT_COLS} from grants where subtenant_id = $1 and user_email = $2");
        let row = sqlx::query(&sql)
            .bind(subtenant)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(grant_from).transpose()?)
    }

    /// The audit trail, newest first; `tenant` narrows it to one tenant.
    pub async fn list_audit(
        &self,
        tenant: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        let filter = "($1 is null or tenant = $1)";
        let sql = format!("select * from audit_log where {filter} order by at desc, id desc limit $2 offset $3");
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query(&format!("select count(*) as n from audit_log where {filter}"))
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    tenant: r.try_get("tenant")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: json_col(r, "detail")?,
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((entries, total))
    }
}
