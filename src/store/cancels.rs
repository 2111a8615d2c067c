//! Cancelling executions (migration 0013). A queued one is taken off the queue at once, in
//! the transaction that says so; a running one gets a request row, which the server running
//! it reads on its next lease pass (any replica may have been asked). Lease recovery and a
//! job given back to the queue look for a request too, so a cancelled job never starts again.

use sqlx::Row;

use super::{now_ms, Store, StoreError, StoreResult, Tenant};
use crate::domain::CallStatus;

/// What a cancel did, and to which execution: a queued job's current attempt (a new one
/// after its server died) is the one cancelled, whichever attempt was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued: its job is gone and this execution says `cancelled`.
    Dequeued(String),
    /// This execution runs: the server running it stops it.
    Requested(String),
    /// It had already ended, with this status.
    Finished(CallStatus),
}

/// The error an execution cancelled before it ended records.
pub(super) fn cancelled_error() -> String {
    serde_json::json!({"kind": "cancelled", "message": "the execution was cancelled"}).to_string()
}

impl Tenant<'_> {
    /// Cancel execution `id` of this tenant (a function's or a workflow run's), or the
    /// current attempt of the job it is an attempt of (see [`CancelOutcome`]).
    pub async fn cancel_execution(&self, id: &str) -> StoreResult<CancelOutcome> {
        let mut tx = self.store.begin().await?;
        // The job's row first, as in every queue transaction (and SQLite's write lock at once).
        // A job's id is its first attempt's execution id.
        let of_job = "(id = $1 or execution_id = $1) and tenant = $2";
        sqlx::query(&format!("update jobs set run_at = run_at where {of_job}"))
            .bind(id)
            .bind(self.id)
            .execute(&mut *tx)
            .await?;
        let job: Option<(String, String, String)> =
            sqlx::query(&format!("select id, status, execution_id from jobs where {of_job}"))
                .bind(id)
                .bind(self.id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("status")?, r.try_get("execution_id")?)))
                .transpose()?;
        let status: String = sqlx::query("select status from executions where tenant = $1 and id = $2")
            .bind(self.id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("execution {id} not found")))?
            .try_get("status")?;
        let status: CallStatus = status.parse().map_err(StoreError::Corrupt)?;
        if let Some((job_id, job_status, current)) = &job {
            if job_status == "queued" {
                close_cancelled(&mut tx, job_id, current).await?;
                tx.commit().await?;
                return Ok(CancelOutcome::Dequeued(current.clone()));
            }
            // Running: its current attempt is the one to stop.
            request(&mut tx, current, self.id).await?;
            tx.commit().await?;
            return Ok(CancelOutcome::Requested(current.clone()));
        }
        if status.is_finished() {
            return Ok(CancelOutcome::Finished(status));
        }
        request(&mut tx, id, self.id).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Requested(id.to_string()))
    }
}

/// Record a cancel request for running execution `id`.
async fn request(conn: &mut sqlx::AnyConnection, id: &str, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into cancel_requests (execution_id, tenant, requested_at) values ($1, $2, $3) \
         on conflict (execution_id) do nothing",
    )
    .bind(id)
    .bind(tenant)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Executions asked to stop since `since` (every server compares them with its own).
    pub async fn cancel_requests(&self, since: i64) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("select execution_id from cancel_requests where requested_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("execution_id"))
            .collect::<Result<_, _>>()?)
    }

    /// Whether execution `id` was asked to stop (a workflow run resumed after its server died).
    pub async fn cancel_requested_for(&self, id: &str) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        Ok(cancel_requested(&mut conn, id).await?)
    }

    /// Forget requests older than `before`: their executions ended or were taken back.
    pub async fn forget_cancel_requests(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("delete from cancel_requests where requested_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Whether execution `id` was asked to stop.
pub(super) async fn cancel_requested(conn: &mut sqlx::AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("select 1 as one from cancel_requests where execution_id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// End job `job_id` and its execution `id` as cancelled (the job row is locked already).
pub(super) async fn close_cancelled(conn: &mut sqlx::AnyConnection, job_id: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("delete from jobs where id = $1")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    super::executions::close_open(&mut *conn, id, "cancelled", &cancelled_error()).await?;
    super::jobs::end_queued_workflow_run(conn, id, "cancelled").await?;
    Ok(())
}
