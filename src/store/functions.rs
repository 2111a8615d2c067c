//! Functions and their immutable versions. A function row points at its current version;
//! every update or rollback appends a version, so history is never rewritten.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::{conflict_on_unique, json_col, json_req, now_ms, Audit, Row, StoreError, StoreResult, Tenant};
use crate::domain::FunctionSettings;

/// What a version holds (everything but its number and time).
#[derive(Debug, Clone, Serialize)]
pub struct VersionContent {
    pub description: String,
    pub code: String,
    pub code_sha256: String,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    pub settings: FunctionSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_by: String,
}

/// Where a new version's content comes from.
pub enum VersionSource<'a> {
    New(&'a VersionContent),
    Rollback { version: i64, by: &'a str },
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionVersion {
    pub version: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(flatten)]
    pub content: VersionContent,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub id: String,
    pub name: String,
    pub latest_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub current: FunctionVersion,
}

const VERSION_COLS: &str = "v.version, v.description, v.code, v.code_sha256, v.input_schema, v.output_schema, \
                            v.settings, v.note, v.created_by, v.created_at";

fn version_from(row: &Row) -> Result<FunctionVersion, sqlx::Error> {
    let content = VersionContent {
        description: row.try_get("description")?,
        code: row.try_get("code")?,
        code_sha256: row.try_get("code_sha256")?,
        input_schema: json_col(row, "input_schema")?,
        output_schema: json_col(row, "output_schema")?,
        settings: json_req(row, "settings")?,
        note: row.try_get("note")?,
        created_by: row.try_get("created_by")?,
    };
    Ok(FunctionVersion {
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        content,
    })
}

fn function_from(row: &Row) -> Result<Function, sqlx::Error> {
    Ok(Function {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        latest_version: row.try_get("latest_version")?,
        created_at: row.try_get("f_created_at")?,
        updated_at: row.try_get("updated_at")?,
        current: version_from(row)?,
    })
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("function {name} not found"))
}

fn schema_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

async fn insert_version(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    function_id: &str,
    version: i64,
    v: &VersionContent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"insert into function_versions
           (function_id, tenant, version, description, code, code_sha256, input_schema, output_schema,
            settings, note, created_by, created_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"#,
    )
    .bind(function_id)
    .bind(tenant)
    .bind(version)
    .bind(&v.description)
    .bind(&v.code)
    .bind(&v.code_sha256)
    .bind(schema_text(&v.input_schema))
    .bind(schema_text(&v.output_schema))
    .bind(serde_json::to_string(&v.settings).unwrap_or_else(|_| "{}".into()))
    .bind(&v.note)
    .bind(&v.created_by)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

impl Tenant<'_> {
    /// Create a function at version 1; `audit` (given the version) is written with it.
    pub async fn create_function(
        &self,
        name: &str,
        v: &VersionContent,
        audit: impl FnOnce(i64) -> Audit,
    ) -> StoreResult<Function> {
        let tenant = self.id;
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        sqlx::query(
            r#"insert into functions (id, tenant, name, current_version, latest_version, created_at, updated_at)
               values ($1, $2, $3, 1, 1, $4, $4)"#,
        )
        .bind(&id)
        .bind(tenant)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("a function named {name} already exists")))?;
        insert_version(&mut tx, tenant, &id, 1, v).await?;
        audit(1).write(&mut tx, tenant).await?;
        tx.commit().await?;
        self.store.functions.forget(tenant, name);
        self.get_function(name).await
    }

    /// The current version for the call path: from this server's short-lived cache when
    /// fresh, else from the database.
    pub async fn get_function_cached(&self, name: &str) -> StoreResult<Function> {
        let tenant = self.id;
        if let Some(f) = self.store.functions.get(tenant, name) {
            return Ok(f);
        }
        let seen = self.store.functions.generation();
        let f = self.get_function(name).await?;
        self.store.functions.put(seen, tenant, &f);
        Ok(f)
    }

    pub async fn get_function(&self, name: &str) -> StoreResult<Function> {
        let tenant = self.id;
        let sql = format!(
            "select f.id, f.name, f.latest_version, f.created_at as f_created_at, f.updated_at, {VERSION_COLS}
             from functions f join function_versions v on v.function_id = f.id and v.version = f.current_version
             where f.tenant = $1 and f.name = $2"
        );
        let row = sqlx::query(&sql)
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.store.pool)
            .await?;
        let row = row.ok_or_else(|| not_found(name))?;
        Ok(function_from(&row)?)
    }

    /// Whether the tenant has a function of that name (cheap; used to resolve bare names).
    pub async fn function_exists(&self, name: &str) -> StoreResult<bool> {
        let tenant = self.id;
        if self.store.functions.get(tenant, name).is_some() {
            return Ok(true);
        }
        let row = sqlx::query("select 1 as one from functions where tenant = $1 and name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.store.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn count_functions(&self) -> StoreResult<i64> {
        let tenant = self.id;
        let row = sqlx::query("select count(*) as n from functions where tenant = $1")
            .bind(tenant)
            .fetch_one(&self.store.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn list_functions(&self, limit: i64, offset: i64) -> StoreResult<(Vec<Function>, i64)> {
        let tenant = self.id;
        let sql = format!(
            "select f.id, f.name, f.latest_version, f.created_at as f_created_at, f.updated_at, {VERSION_COLS}
             from functions f join function_versions v on v.function_id = f.id and v.version = f.current_version
             where f.tenant = $1 order by f.name limit $2 offset $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.store.pool)
            .await?;
        let total: i64 = sqlx::query("select count(*) as n from functions where tenant = $1")
            .bind(tenant)
            .fetch_one(&self.store.pool)
            .await?
            .try_get("n")?;
        let list = rows.iter().map(function_from).collect::<Result<_, _>>()?;
        Ok((list, total))
    }

    /// Append a version and make it current: new content, or a copy of an old version
    /// (a rollback, recorded as a version of its own).
    /// `audit` (given the new version's number) is written with it.
    pub async fn add_version(
        &self,
        name: &str,
        source: VersionSource<'_>,
        audit: impl FnOnce(i64) -> Audit,
    ) -> StoreResult<Function> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        // The update takes the row lock (PostgreSQL) or the write lock (SQLite) first, so two
        // concurrent updates get consecutive version numbers.
        let row = sqlx::query(
            r#"update functions set latest_version = latest_version + 1, current_version = latest_version + 1,
               updated_at = $3 where tenant = $1 and name = $2 returning id, latest_version"#,
        )
        .bind(tenant)
        .bind(name)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(name))?;
        let id: String = row.try_get("id")?;
        let version: i64 = row.try_get("latest_version")?;
        let content = match source {
            VersionSource::New(v) => v.clone(),
            VersionSource::Rollback { version: old, by } => {
                let sql = format!(
                    "select {VERSION_COLS} from function_versions v where v.function_id = $1 and v.version = $2"
                );
                let row = sqlx::query(&sql).bind(&id).bind(old).fetch_optional(&mut *tx).await?;
                let old_v = version_from(
                    &row.ok_or_else(|| StoreError::NotFound(format!("function {name} has no version {old}")))?,
                )?;
                VersionContent {
                    note: Some(format!("rollback to version {old}")),
                    created_by: by.to_string(),
                    ..old_v.content
                }
            }
        };
        insert_version(&mut tx, tenant, &id, version, &content).await?;
        audit(version).write(&mut tx, tenant).await?;
        tx.commit().await?;
        self.store.functions.forget(tenant, name);
        self.get_function(name).await
    }

    pub async fn delete_function(&self, name: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let row = sqlx::query("select id from functions where tenant = $1 and name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found(name))?;
        let id: String = row.try_get("id")?;
        let paths = super::webhooks::paths_for_function(&mut tx, tenant, name).await?;
        let schedules = super::schedules::names_for_function(&mut tx, tenant, name).await?;
        let workflows = super::workflows::names_for_function(&mut tx, tenant, name).await?;
        if !paths.is_empty() || !schedules.is_empty() || !workflows.is_empty() {
            let users: Vec<String> = paths
                .iter()
                .map(|p| format!("webhook {p}"))
                .chain(schedules.iter().map(|s| format!("schedule {s}")))
                .chain(workflows.iter().map(|w| format!("workflow {w}")))
                .collect();
            return Err(StoreError::Conflict(format!(
                "function {name} is run by {}; delete or repoint them first",
                users.join(", ")
            )));
        }
        sqlx::query("delete from function_versions where function_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from functions where id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        self.store.functions.forget(tenant, name);
        Ok(())
    }

    pub async fn list_versions(&self, name: &str) -> StoreResult<Vec<FunctionVersion>> {
        let tenant = self.id;
        let sql = format!(
            "select {VERSION_COLS} from functions f join function_versions v on v.function_id = f.id
             where f.tenant = $1 and f.name = $2 order by v.version desc"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(name)
            .fetch_all(&self.store.pool)
            .await?;
        if rows.is_empty() {
            return Err(not_found(name));
        }
        Ok(rows.iter().map(version_from).collect::<Result<_, _>>()?)
    }
}
