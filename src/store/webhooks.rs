//! Webhooks: a path under `/api/v1/h/` bound to a function of the owning tenant.
//!
//! Paths are one namespace across tenants (the public URL names no tenant), so
//! `webhook_by_path` is the one query here that does not take a tenant: it is how a request
//! finds its tenant. Everything else is scoped like the rest of the store.

use serde::Serialize;
use sqlx::Row as _;

use super::{conflict_on_unique, now_ms, Audit, Row, Store, StoreError, StoreResult, Tenant};
use crate::domain::Target;

/// The settings of a webhook, as created or replaced.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookFields {
    pub path: String,
    #[serde(flatten)]
    pub target: Target,
    pub http_method: String,
    pub requires_auth: bool,
    /// Signatures must carry a recent `X-Maestro-Timestamp` (replay protection).
    pub require_timestamp: bool,
    pub description: String,
    pub enabled: bool,
    #[serde(rename = "async")]
    pub async_mode: bool,
    pub input_mode: String,
    pub max_concurrency: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub id: String,
    #[serde(skip)]
    pub tenant: String,
    /// The HMAC key for signed requests; shown only when created or rotated.
    #[serde(skip)]
    pub secret: String,
    #[serde(flatten)]
    pub fields: WebhookFields,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub updated_at: i64,
}

const COLS: &str =
    "id, tenant, path, function_name, workflow_name, http_method, requires_auth, require_timestamp, secret, \
                    description, enabled, async_mode, input_mode, max_concurrency, created_by, created_at, updated_at";

fn webhook_from(r: &Row) -> Result<Webhook, sqlx::Error> {
    let flag = |c: &str| r.try_get::<i64, _>(c).map(|v| v != 0);
    Ok(Webhook {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        secret: r.try_get("secret")?,
        fields: WebhookFields {
            path: r.try_get("path")?,
            target: Target::from_columns(r.try_get("function_name")?, r.try_get("workflow_name")?),
            http_method: r.try_get("http_method")?,
            requires_auth: flag("requires_auth")?,
            require_timestamp: flag("require_timestamp")?,
            description: r.try_get("description")?,
            enabled: flag("enabled")?,
            async_mode: flag("async_mode")?,
            input_mode: r.try_get("input_mode")?,
            max_concurrency: r.try_get("max_concurrency")?,
        },
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("webhook {id} not found"))
}

fn path_taken(path: &str) -> String {
    format!("a webhook already uses the path {path:?}")
}

/// The target must be a function or workflow of the same tenant, checked inside the write's
/// transaction (webhooks and schedules alike).
pub(super) async fn check_target(conn: &mut sqlx::AnyConnection, tenant: &str, target: &Target) -> StoreResult<()> {
    let (sql, field, kind) = match target {
        Target::Function(_) => (
            "select 1 as one from functions where tenant = $1 and name = $2",
            "function_name",
            "function",
        ),
        Target::Workflow(_) => (
            "select 1 as one from workflows where tenant = $1 and name = $2",
            "workflow_name",
            "workflow",
        ),
    };
    let row = sqlx::query(sql)
        .bind(tenant)
        .bind(target.name())
        .fetch_optional(conn)
        .await?;
    match row {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid {
            field,
            message: format!("there is no {kind} named {}", target.name()),
        }),
    }
}

impl Store {
    /// The webhook at a public path, whatever its tenant.
    pub async fn webhook_by_path(&self, path: &str) -> StoreResult<Option<Webhook>> {
        let sql = format!("select {COLS} from webhooks where path = $1");
        let row = sqlx::query(&sql).bind(path).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(webhook_from).transpose()?)
    }
}

impl Tenant<'_> {
    pub async fn create_webhook(
        &self,
        f: &WebhookFields,
        secret: &str,
        by: &str,
        audit: impl FnOnce(&Webhook) -> Audit,
    ) -> StoreResult<Webhook> {
        let tenant = self.id;
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        check_target(&mut tx, tenant, &f.target).await?;
        sqlx::query(
            r#"insert into webhooks (id, tenant, path, function_name, http_method, requires_auth, secret, description,
               enabled, async_mode, input_mode, max_concurrency, created_by, created_at, updated_at, require_timestamp,
               workflow_name)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16)"#,
        )
        .bind(&id)
        .bind(tenant)
        .bind(&f.path)
        .bind(f.target.columns().0)
        .bind(&f.http_method)
        .bind(f.requires_auth as i64)
        .bind(secret)
        .bind(&f.description)
        .bind(f.enabled as i64)
        .bind(f.async_mode as i64)
        .bind(&f.input_mode)
        .bind(f.max_concurrency)
        .bind(by)
        .bind(now)
        .bind(f.require_timestamp as i64)
        .bind(f.target.columns().1)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || path_taken(&f.path)))?;
        audited(tx, tenant, &id, audit).await
    }

    /// Replace a webhook's settings (the handler merges a partial update first).
    pub async fn update_webhook(
        &self,
        id: &str,
        f: &WebhookFields,
        audit: impl FnOnce(&Webhook) -> Audit,
    ) -> StoreResult<Webhook> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        check_target(&mut tx, tenant, &f.target).await?;
        let done = sqlx::query(
            r#"update webhooks set path = $3, function_name = $4, http_method = $5, requires_auth = $6,
               description = $7, enabled = $8, async_mode = $9, input_mode = $10, max_concurrency = $11,
               updated_at = $12, require_timestamp = $13, workflow_name = $14 where tenant = $1 and id = $2"#,
        )
        .bind(tenant)
        .bind(id)
        .bind(&f.path)
        .bind(f.target.columns().0)
        .bind(&f.http_method)
        .bind(f.requires_auth as i64)
        .bind(&f.description)
        .bind(f.enabled as i64)
        .bind(f.async_mode as i64)
        .bind(&f.input_mode)
        .bind(f.max_concurrency)
        .bind(now_ms())
        .bind(f.require_timestamp as i64)
        .bind(f.target.columns().1)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || path_taken(&f.path)))?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        audited(tx, tenant, id, audit).await
    }

    pub async fn set_webhook_secret(&self, id: &str, secret: &str, audit: Audit) -> StoreResult<Webhook> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let done = sqlx::query("update webhooks set secret = $3, updated_at = $4 where tenant = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .bind(secret)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        audited(tx, tenant, id, |_| audit).await
    }

    pub async fn get_webhook(&self, id: &str) -> StoreResult<Webhook> {
        let tenant = self.id;
        let mut conn = self.store.pool.acquire().await?;
        fetch(&mut conn, tenant, id).await
    }

    pub async fn list_webhooks(
        &self,
        function: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<Webhook>, i64)> {
        let tenant = self.id;
        let query = ("webhooks", COLS, "path");
        super::list_for_function(
            &self.store.pool,
            query,
            (tenant, function),
            (limit, offset),
            webhook_from,
        )
        .await
    }

    pub async fn delete_webhook(&self, id: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let done = sqlx::query("delete from webhooks where tenant = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn fetch(conn: &mut sqlx::AnyConnection, tenant: &str, id: &str) -> StoreResult<Webhook> {
    let sql = format!("select {COLS} from webhooks where tenant = $1 and id = $2");
    let row = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    Ok(webhook_from(&row.ok_or_else(|| not_found(id))?)?)
}

/// Read the webhook as written, record `audit` of it, and commit.
async fn audited(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    id: &str,
    audit: impl FnOnce(&Webhook) -> Audit,
) -> StoreResult<Webhook> {
    let w = fetch(&mut tx, tenant, id).await?;
    audit(&w).write(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(w)
}

/// Paths of the tenant's webhooks that run `function` (a function in use is not deleted).
pub(super) async fn paths_for_function(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    function: &str,
) -> StoreResult<Vec<String>> {
    let rows = sqlx::query("select path from webhooks where tenant = $1 and function_name = $2 order by path")
        .bind(tenant)
        .bind(function)
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(|r| r.try_get("path")).collect::<Result<_, _>>()?)
}
