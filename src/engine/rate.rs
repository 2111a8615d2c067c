//! The rate limit across replicas. With Redis configured, a tenant's token bucket lives in
//! Redis: one Lua script refills and takes a token atomically, on Redis's own clock, so any
//! number of replicas together allow the tenant's `invocations_per_second`, not that many
//! times it. Without Redis, or while Redis does not answer within [`TIMEOUT`], each server
//! keeps its own bucket (the caller's fallback) and looks at Redis again after [`BACKOFF`];
//! the connection is opened in the background, so no call waits for it. Needs Redis 5+
//! (`TIME` before a write in a script).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// How long a token may take before the local bucket decides instead.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long the local bucket decides after Redis failed.
const BACKOFF: Duration = Duration::from_secs(5);
/// How long opening a connection may take (in the background: calls do not wait for it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// KEYS[1]: the bucket; ARGV: rate per second, burst. Answers 1 (taken) or 0 (empty). The
/// bucket is a hash {tokens, ms}; it expires once it would be full again anyway.
const TAKE: &str = r#"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(v[1]) or burst
local last = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return taken
"#;

pub(super) struct SharedRate {
    client: redis::Client,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    connecting: Arc<AtomicBool>,
    down_until: Arc<Mutex<Option<Instant>>>,
}

impl SharedRate {
    /// Starts connecting at once (call within the runtime).
    pub fn new(client: redis::Client) -> SharedRate {
        let shared = SharedRate {
            client,
            conn: Arc::default(),
            connecting: Arc::default(),
            down_until: Arc::default(),
        };
        let _ = shared.connection();
        shared
    }

    /// The connection, or `None` while one is being opened in the background.
    fn connection(&self) -> Option<MultiplexedConnection> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Some(c.clone());
        }
        if !self.connecting.swap(true, Ordering::AcqRel) {
            let (client, conn, connecting) = (self.client.clone(), self.conn.clone(), self.connecting.clone());
            let down_until = self.down_until.clone();
            tokio::spawn(async move {
                let failed =
                    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
                        Ok(Ok(c)) => {
                            *conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                            None
                        }
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some("timed out".to_string()),
                    };
                if let Some(why) = failed {
                    tracing::warn!(error = %why, "could not connect to Redis for rate limits; each server counts for itself for now");
                    *down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + BACKOFF);
                }
                connecting.store(false, Ordering::Release);
            });
        }
        None
    }

    /// Take one of `tenant`'s tokens: `Some(taken)`, or `None` when Redis cannot say now.
    pub async fn take(&self, tenant: &str, rate: f64, burst: f64) -> Option<bool> {
        if self
            .down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let mut conn = self.connection()?;
        match tokio::time::timeout(TIMEOUT, take(&mut conn, tenant, rate, burst)).await {
            Ok(Ok(taken)) => Some(taken),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(error = %why, "Redis rate limit unavailable; each server counts for itself for now");
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + BACKOFF);
                None
            }
        }
    }
}

async fn take(conn: &mut MultiplexedConnection, tenant: &str, rate: f64, burst: f64) -> redis::RedisResult<bool> {
    let taken: i64 = redis::cmd("EVAL")
        .arg(TAKE)
        .arg(1)
        .arg(format!("maestro:rate:{tenant}"))
        .arg(rate)
        .arg(burst)
        .query_async(conn)
        .await?;
    Ok(taken == 1)
}
