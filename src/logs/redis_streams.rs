//! Events on Redis Streams: `maestro:exec:<execution id>` (everything of one run, from its
//! start, kept for a day) and `maestro:tenant:<tenant>` (the tenant's live feed), both trimmed
//! with `MAXLEN ~`. A writer task sends them in pipelined batches off the call path; when Redis
//! is down events are dropped (the database keeps the record) and a warning is logged once
//! per outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Event;

/// Events waiting for the writer; beyond this they are dropped (Redis is slow or down).
const QUEUE: usize = 10_000;
/// How long an execution's stream lives after its last event.
const EXEC_STREAM_TTL_SECONDS: i64 = 86_400;

pub fn exec_key(execution_id: &str) -> String {
    format!("maestro:exec:{execution_id}")
}

pub fn tenant_key(tenant: &str) -> String {
    format!("maestro:tenant:{tenant}")
}

pub struct RedisEvents {
    client: redis::Client,
    tx: mpsc::Sender<Arc<Event>>,
    down: Arc<AtomicBool>,
}

/// Stream lengths kept (approximately).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub execution_maxlen: usize,
    pub tenant_maxlen: usize,
}

impl RedisEvents {
    pub fn start(client: redis::Client, limits: Limits) -> RedisEvents {
        let (tx, rx) = mpsc::channel(QUEUE);
        let down = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer(client.clone(), rx, limits, down.clone()));
        RedisEvents { client, tx, down }
    }

    pub fn send(&self, event: Arc<Event>) {
        if self.tx.try_send(event).is_err() && !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!("Redis event queue full; live events are dropped until it drains");
        }
    }

    /// A connection of its own, for a blocking read.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let connect = self.client.get_multiplexed_async_connection();
        tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out")))?
    }
}

/// Read events of `key` after stream id `after`, waiting up to `block` for new ones.
pub async fn read(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    after: &str,
    block: Duration,
) -> redis::RedisResult<Vec<(String, Value)>> {
    let opts = StreamReadOptions::default()
        .count(200)
        .block(block.as_millis() as usize);
    let reply: Option<StreamReadReply> = conn.xread_options(&[key], &[after], &opts).await?;
    let mut out = vec![];
    for stream in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in stream.ids {
            let body = entry
                .get::<String>("event")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            out.push((entry.id, body));
        }
    }
    Ok(out)
}

async fn writer(client: redis::Client, mut rx: mpsc::Receiver<Arc<Event>>, limits: Limits, down: Arc<AtomicBool>) {
    let mut conn: Option<ConnectionManager> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            let connect = ConnectionManager::new(client.clone());
            conn = tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .ok()
                .and_then(Result::ok);
        }
        let result = match conn.as_mut() {
            Some(c) => write_batch(c, &batch, limits).await,
            None => Err(redis::RedisError::from((redis::ErrorKind::IoError, "cannot connect"))),
        };
        match result {
            Ok(()) => {
                if down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis is back; live events flow again");
                }
            }
            Err(e) => {
                if !down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "Redis unavailable: live events are dropped (executions are still recorded)");
                }
                if conn.is_some() && e.is_connection_dropped() {
                    conn = None;
                }
            }
        }
    }
}

async fn write_batch(conn: &mut ConnectionManager, batch: &[Arc<Event>], limits: Limits) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for e in batch {
        let text = e.body.to_string();
        let exec = exec_key(&e.execution_id);
        pipe.cmd("XADD")
            .arg(&exec)
            .arg("MAXLEN")
            .arg("~")
            .arg(limits.execution_maxlen)
            .arg("*")
            .arg("event")
            .arg(&text)
            .ignore();
        pipe.cmd("EXPIRE").arg(&exec).arg(EXEC_STREAM_TTL_SECONDS).ignore();
        pipe.cmd("XADD")
            .arg(tenant_key(&e.tenant))
            .arg("MAXLEN")
            .arg("~")
            .arg(limits.tenant_maxlen)
            .arg("*")
            .arg("event")
            .arg(&text)
            .ignore();
    }
    let run = pipe.query_async::<()>(conn);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "write timed out")))?
}
