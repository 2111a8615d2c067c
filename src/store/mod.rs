//! Storage: PostgreSQL in production, SQLite as the zero-setup default.
//!
//! One `Store` serves both through sqlx's `Any` driver: the SQL is written once (lowercase,
//! `$n` placeholders, portable types: text, bigint, double precision), each backend has its
//! own migrations folder.
//!
//! A tenant's rows are reached through `store.tenant(id)`: every query of that handle is
//! scoped to its tenant, so none can forget it. `Store`'s own methods are the duties that
//! work across tenants (claiming queued jobs, schedule ticks and workflow leases, retention, writing the
//! recorder's batches, finding a webhook by its path, tenancy for admins).

mod audit;
mod cache;
mod cancels;
mod capabilities;
mod executions;
mod functions;
mod jobs;
mod packages;
mod page;
mod schedules;
mod sessions;
mod tenancy;
mod webhooks;
mod workflow_runs;
mod workflows;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;

pub use audit::Audit;
pub use cancels::CancelOutcome;
pub use capabilities::SecretInfo;
pub use executions::{CallRecord, ExecutionFilter, ExecutionRecord, NewStep, StepFinish, StepRecord, Write};
pub use functions::{Function, FunctionVersion, VersionContent, VersionSource};
pub use jobs::{Handover, Job, NewJob, Node, Refused};
pub use packages::{InstalledPackage, NewPackage, PackageJob, StoredWheel};
pub use page::{Keyset, PageQuery, Paged};
pub use schedules::{managed_name, MANAGED_PREFIX};
pub use schedules::{NewRun, Schedule, ScheduleFields, ScheduleRun};
pub use sessions::{SessionRow, SessionUsage};
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
    /// A stored value that does not decode: the read fails rather than make up a default
    /// (a function must never run with limits it was not given).
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    /// The database cannot be reached now (no connection within the pool's acquire
    /// timeout, or the connection broke): trying again later may work.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Decode(e) => StoreError::Corrupt(e.to_string()),
            sqlx::Error::ColumnDecode { index, source } => StoreError::Corrupt(format!("column {index}: {source}")),
            e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)) => {
                StoreError::Unavailable(e.to_string())
            }
            // PostgreSQL shutting down or starting (57P01-57P03), connection failures (08xxx).
            sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                StoreError::Unavailable(d.to_string())
            }
            e => StoreError::Db(e),
        }
    }
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
    /// A transaction that writes. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock
    /// at once (waiting up to the busy timeout behind another writer), where a deferred one
    /// that read first would fail outright when it then writes after another connection did.
    pub(super) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Connect (creating the SQLite file if needed) and apply migrations.
    /// Connect and migrate; `cache_ttl` bounds how stale another server's function change
    /// may look here (zero turns the cache off).
    /// `acquire_timeout` bounds how long a query waits for a connection: when the database
    /// is down, callers hear so (`StoreError::Unavailable`) within it instead of hanging.
    pub async fn connect(url: &str, cache_ttl: Duration, acquire_timeout: Duration) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else if url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite://");
        };
        let mut opts = AnyPoolOptions::new().acquire_timeout(acquire_timeout);
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

    /// The handle for one tenant's rows.
    pub fn tenant<'a>(&'a self, id: &'a str) -> Tenant<'a> {
        Tenant { store: self, id }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// One tenant's view of the store: every query it makes names that tenant. The id comes
/// from a `TenantId` parsed at the edge (a caller's) or from a row already stored.
#[derive(Clone, Copy)]
pub struct Tenant<'a> {
    store: &'a Store,
    id: &'a str,
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

/// Read a JSON text column into `T`; a value that does not decode fails the read, naming
/// the column.
fn json_col<T: serde::de::DeserializeOwned>(r: &Row, column: &str) -> Result<Option<T>, sqlx::Error> {
    use sqlx::Row as _;
    let Some(text) = r.try_get::<Option<String>, _>(column)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| sqlx::Error::Decode(format!("column `{column}` holds invalid JSON: {e}").into()))
}

/// A text column holding one of an enum's names (a status); another name fails the read.
fn text_col<T: std::str::FromStr<Err = String>>(r: &Row, column: &str) -> Result<T, sqlx::Error> {
    use sqlx::Row as _;
    let text: String = r.try_get(column)?;
    text.parse()
        .map_err(|e: String| sqlx::Error::Decode(format!("column `{column}`: {e}").into()))
}

/// A JSON column that is never null.
fn json_req<T: serde::de::DeserializeOwned>(r: &Row, column: &str) -> Result<T, sqlx::Error> {
    json_col(r, column)?.ok_or_else(|| sqlx::Error::Decode(format!("column `{column}` is null").into()))
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
