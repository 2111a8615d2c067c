//! Sessions' rows (migration 0015). The interpreter itself lives in one server's memory;
//! the row records which server (`node_id`), the session's limits, how it ended, and what
//! the cluster-wide caps on live sessions count.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Backend, Store, StoreResult, Tenant};

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub tenant: String,
    pub node_id: String,
    /// `active` or `ended`.
    pub status: String,
    /// Why it ended: `deleted`, `expired`, `crashed`, `server_stopped`.
    pub end_reason: Option<String>,
    /// The error that crashed it (an error record's JSON).
    pub error: Option<String>,
    pub timeout_seconds: Option<f64>,
    pub memory_mb: i64,
    pub fuel: Option<i64>,
    pub idle_ttl_seconds: i64,
    pub execution_count: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

const COLUMNS: &str = "id, tenant, node_id, status, end_reason, error, timeout_ms, memory_mb, fuel, \
                       idle_ttl_seconds, execution_count, created_at, last_used_at, expires_at, ended_at";

fn row(r: &AnyRow) -> Result<SessionRow, sqlx::Error> {
    Ok(SessionRow {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        node_id: r.try_get("node_id")?,
        status: r.try_get("status")?,
        end_reason: r.try_get("end_reason")?,
        error: r.try_get("error")?,
        timeout_seconds: r.try_get::<Option<i64>, _>("timeout_ms")?.map(|ms| ms as f64 / 1000.0),
        memory_mb: r.try_get("memory_mb")?,
        fuel: r.try_get("fuel")?,
        idle_ttl_seconds: r.try_get("idle_ttl_seconds")?,
        execution_count: r.try_get("execution_count")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        expires_at: r.try_get("expires_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

/// How many sessions are open, and the memory they may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionUsage {
    pub count: i64,
    pub memory_mb: i64,
}

impl Tenant<'_> {
    /// This tenant's session `id`.
    pub async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        let r = sqlx::query(&format!("select {COLUMNS} from sessions where tenant = $1 and id = $2"))
            .bind(self.id)
            .bind(id)
            .fetch_optional(&self.store.pool)
            .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// This tenant's sessions, the newest first: the open ones, then those ended in the last
    /// day (at most `limit`).
    pub async fn sessions(&self, since: i64, limit: i64) -> StoreResult<Vec<SessionRow>> {
        let rows = sqlx::query(&format!(
            "select {COLUMNS} from sessions where tenant = $1 and (status = 'active' or ended_at >= $2) \
             order by created_at desc, id desc limit $3"
        ))
        .bind(self.id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.store.pool)
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// The sessions of this tenant open now (not past their expiry) across the cluster.
    pub async fn session_usage(&self, now: i64) -> StoreResult<SessionUsage> {
        usage(&self.store.pool, self.id, now).await
    }

    /// Record new session `s` if the tenant's open sessions leave room for it under both
    /// caps; otherwise record nothing and answer the usage that refused it. The count and
    /// the insert are one transaction, one per tenant at a time, so concurrent opens cannot
    /// pass a cap together.
    pub async fn open_session(
        &self,
        s: &SessionRow,
        max_count: i64,
        max_memory_mb: i64,
    ) -> StoreResult<Result<(), SessionUsage>> {
        let mut tx = self.store.begin().await?;
        if self.store.backend == Backend::Postgres {
            // SQLite's writer is already alone (BEGIN IMMEDIATE).
            sqlx::query("select pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("sessions:{}", self.id))
                .execute(&mut *tx)
                .await?;
        }
        let used = usage(&mut *tx, self.id, s.created_at).await?;
        if used.count >= max_count || used.memory_mb + s.memory_mb > max_memory_mb {
            return Ok(Err(used)); // rolled back: nothing recorded
        }
        insert(&mut *tx, s).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}

async fn usage<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    tenant: &str,
    now: i64,
) -> StoreResult<SessionUsage> {
    let r = sqlx::query(
        "select count(*) as n, cast(coalesce(sum(memory_mb), 0) as bigint) as mb from sessions \
         where tenant = $1 and status = 'active' and expires_at > $2",
    )
    .bind(tenant)
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok(SessionUsage {
        count: r.try_get("n")?,
        memory_mb: r.try_get("mb")?,
    })
}

async fn insert<'e>(db: impl sqlx::Executor<'e, Database = sqlx::Any>, s: &SessionRow) -> StoreResult<()> {
    sqlx::query(&format!(
        "insert into sessions ({COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&s.id)
    .bind(&s.tenant)
    .bind(&s.node_id)
    .bind(&s.status)
    .bind(&s.end_reason)
    .bind(&s.error)
    // Milliseconds in a bigint: sqlx's Any driver binds a null f64 as a float4, and a
    // statement PostgreSQL prepared that way then refuses the next float8.
    .bind(s.timeout_seconds.map(|t| (t * 1000.0).round() as i64))
    .bind(s.memory_mb)
    .bind(s.fuel)
    .bind(s.idle_ttl_seconds)
    .bind(s.execution_count)
    .bind(s.created_at)
    .bind(s.last_used_at)
    .bind(s.expires_at)
    .bind(s.ended_at)
    .execute(db)
    .await?;
    Ok(())
}

impl Store {
    /// The session was used: its count of cells and its new expiry. False when the row is
    /// no longer active (another server ended it).
    pub async fn touch_session(&self, id: &str, count: i64, used_at: i64, expires_at: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "update sessions set execution_count = $2, last_used_at = $3, expires_at = $4 \
             where id = $1 and status = 'active'",
        )
        .bind(id)
        .bind(count)
        .bind(used_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The session ended (once: a later end keeps the first reason).
    pub async fn end_session(&self, id: &str, reason: &str, error: Option<&str>, at: i64) -> StoreResult<()> {
        sqlx::query(
            "update sessions set status = 'ended', end_reason = $2, error = $3, ended_at = $4 \
             where id = $1 and status = 'active'",
        )
        .bind(id)
        .bind(reason)
        .bind(error)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether server `node` was heard from since `since`.
    pub async fn node_alive(&self, node: &str, since: i64) -> StoreResult<bool> {
        let r = sqlx::query("select count(*) as n from nodes where id = $1 and heartbeat_at >= $2")
            .bind(node)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = r.try_get("n")?;
        Ok(n > 0)
    }
}
