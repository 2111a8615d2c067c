//! Subtenants, access grants and the audit trail.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::{conflict_on_unique, json_col, now_ms, Row, Store, StoreError, StoreResult};

#[derive(Debug, Clone, Serialize)]
pub struct Subtenant {
    pub subtenant_id: String,
    pub description: String,
    /// Overrides of the server's default quotas.
    pub quotas: Value,
    pub created_by: String,
    #[serde(serialize_with = "crate::http::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::http::iso_ms")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub subtenant_id: String,
    pub user_email: String,
    pub role: String,
    pub granted_by: String,
    #[serde(serialize_with = "crate::http::iso_ms")]
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
    #[serde(serialize_with = "crate::http::iso_ms")]
    pub at: i64,
}

/// Every table whose rows belong to a tenant, children first (a forced delete empties them).
const TENANT_TABLES: [&str; 14] = [
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
        quotas: json_col(r.try_get("quotas")?).unwrap_or(Value::Null),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn grant_from(r: &Row) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        subtenant_id: r.try_get("subtenant_id")?,
        user_email: r.try_get("user_email")?,
        role: r.try_get("role")?,
        granted_by: r.try_get("granted_by")?,
        created_at: r.try_get("created_at")?,
    })
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
    ) -> StoreResult<Subtenant> {
        let now = now_ms();
        sqlx::query(
            "insert into subtenants (id, description, quotas, created_by, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id)
        .bind(description)
        .bind(quotas.to_string())
        .bind(by)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("subtenant {id} already exists")))?;
        self.get_subtenant(id).await
    }

    pub async fn get_subtenant(&self, id: &str) -> StoreResult<Subtenant> {
        let row = sqlx::query("select * from subtenants where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(subtenant_from(&row.ok_or_else(|| not_found(id))?)?)
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

    pub async fn update_subtenant(&self, id: &str, description: &str, quotas: &Value) -> StoreResult<Subtenant> {
        let done = sqlx::query("update subtenants set description = $2, quotas = $3, updated_at = $4 where id = $1")
            .bind(id)
            .bind(description)
            .bind(quotas.to_string())
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        self.get_subtenant(id).await
    }

    /// Delete a subtenant. While it owns functions this is refused unless `force`, which
    /// removes everything it owns in the same transaction.
    pub async fn delete_subtenant(&self, id: &str, force: bool) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        self.functions.clear();
        Ok(())
    }

    /// Give `email` a role in a subtenant (replacing any role it had there).
    pub async fn grant(&self, subtenant: &str, email: &str, role: &str, by: &str) -> StoreResult<Grant> {
        let mut tx = self.pool.begin().await?;
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
        .bind(role)
        .bind(by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.grant_of(subtenant, email)
            .await?
            .ok_or_else(|| StoreError::NotFound("grant vanished".into()))
    }

    pub async fn revoke(&self, subtenant: &str, email: &str) -> StoreResult<()> {
        self.get_subtenant(subtenant).await?;
        let done = sqlx::query("delete from grants where subtenant_id = $1 and user_email = $2")
            .bind(subtenant)
            .bind(email)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "{email} has no access to subtenant {subtenant}"
            )));
        }
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

    pub async fn audit(
        &self,
        tenant: &str,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<&Value>,
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into audit_log (id, tenant, actor, action, target, detail, at) values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.map(Value::to_string))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
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
                    detail: json_col(r.try_get("detail")?),
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((entries, total))
    }
}
