//! Storage: PostgreSQL in production, SQLite as the zero-setup default.
//!
//! One `Store` serves both through sqlx's `Any` driver: the SQL is written once (lowercase,
//! `$n` placeholders, portable types: text, bigint, double precision), each backend has its
//! own migrations folder. Every query takes the tenant; no query can forget it.

mod cache;
mod capabilities;
mod executions;
mod functions;
mod packages;
mod schedules;
mod tenancy;
mod webhooks;
mod workflow_runs;
mod workflows;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;

pub use capabilities::SecretInfo;
pub use executions::{CallRecord, ExecutionFilter, ExecutionRecord, NewStep, StepFinish, StepRecord, Write};
pub use functions::{Function, FunctionVersion, VersionContent, VersionSource};
pub use packages::{InstalledPackage, NewPackage, PackageJob, StoredWheel};
pub use schedules::{managed_name, MANAGED_PREFIX};
pub use schedules::{NewRun, Schedule, ScheduleFields, ScheduleRun};
pub use tenancy::{AuditEntry, Grant, Subtenant};
pub use webhooks::{Webhook, WebhookFields};
pub use workflow_runs::WorkflowRunRow;
pub use workflows::{ManagedSchedule, Workflow, WorkflowVersion};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A field refers to something that does not exist (e.g. a webhook's function).
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    functions: std::sync::Arc<cache::FunctionCache>,
}

impl Store {
    /// Connect (creating the SQLite file if needed) and apply migrations.
    /// Connect and migrate; `cache_ttl` bounds how stale another server's function change
    /// may look here (zero turns the cache off).
    pub async fn connect(url: &str, cache_ttl: Duration) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else if url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite://");
        };
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            opts = opts.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "pragma journal_mode = wal",
                        "pragma synchronous = normal",
                        "pragma busy_timeout = 10000",
                        "pragma foreign_keys = on",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        } else {
            opts = opts.max_connections(16);
        }
        let pool = opts.connect(url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let functions = std::sync::Arc::new(cache::FunctionCache::new(cache_ttl));
        Ok(Store {
            pool,
            backend,
            functions,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Unique violations become `Conflict` with `message`.
fn conflict_on_unique(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict(message())
        }
        _ => StoreError::Db(e),
    }
}

/// Parse a JSON text column; a corrupt value reads as null rather than failing the request.
fn json_col(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::Null))
}

/// A page of `table`'s rows of one tenant, optionally only those running `function`, with the
/// total count (webhooks and schedules list the same way).
async fn list_for_function<T>(
    pool: &AnyPool,
    (table, cols, order): (&str, &str, &str),
    (tenant, function): (&str, Option<&str>),
    (limit, offset): (i64, i64),
    from: fn(&Row) -> Result<T, sqlx::Error>,
) -> StoreResult<(Vec<T>, i64)> {
    use sqlx::Row as _;
    let filter = "tenant = $1 and ($2 is null or function_name = $2)";
    let sql = format!("select {cols} from {table} where {filter} order by {order} limit $3 offset $4");
    let rows = sqlx::query(&sql)
        .bind(tenant)
        .bind(function)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?;
    let total: i64 = sqlx::query(&format!("select count(*) as n from {table} where {filter}"))
        .bind(tenant)
        .bind(function)
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    Ok((rows.iter().map(from).collect::<Result<_, _>>()?, total))
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

type Row = AnyRow;
