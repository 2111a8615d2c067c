//! Server-Sent Events: `GET /api/v1/executions/{id}/logs?follow=true` (one run, from its
//! start until it ends) and `GET /api/v1/events` (the tenant's live feed).
//!
//! With Redis the events come from its streams, so a client on one replica follows a run on
//! another; without it (or while it is down) from this node's bus, and for a run this node
//! did not see, from the database record once the run has ended. Each client has a bounded
//! buffer: a client that reads too slowly loses events and is told so with a `dropped`
//! event, and a client that goes away ends its producer task.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::AppState;
use crate::logs::redis_streams::{exec_key, read, tenant_key};
use crate::logs::Event;
use crate::store::StepRecord;

/// Events buffered per client.
const CLIENT_BUFFER: usize = 256;

/// Where a producer sends a client's events.
struct Sink {
    tx: mpsc::Sender<Value>,
    dropped: u64,
}

impl Sink {
    /// Send without waiting; a full buffer drops the event (and says so later). False when
    /// the client is gone.
    fn push(&mut self, v: Value) -> bool {
        if self.dropped > 0 {
            match self.tx.try_send(json!({"type": "dropped", "count": self.dropped})) {
                Ok(()) => self.dropped = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped += 1;
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(v) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// The last event waits for room: a slow client still learns the run ended.
    async fn finish(&mut self, v: Value) {
        let _ = self.tx.send(v).await;
    }

    fn gone(&self) -> bool {
        self.tx.is_closed()
    }
}

fn stream_of(rx: mpsc::Receiver<Value>) -> Response {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let kind = v["type"].as_str().unwrap_or("message").to_string();
        Some((
            Ok::<_, Infallible>(SseEvent::default().event(kind).data(v.to_string())),
            rx,
        ))
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// SSE of one execution, from its first event to `execution.finished`.
pub fn follow(state: AppState, tenant: String, execution_id: String) -> Response {
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    let mut sink = Sink { tx, dropped: 0 };
    tokio::spawn(async move {
        if state.events.redis().is_some() {
            match follow_redis(&state, &tenant, &execution_id, &mut sink).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "following through Redis failed; using this node's events"),
            }
        }
        follow_local(&state, &tenant, &execution_id, &mut sink).await;
    });
    stream_of(rx)
}

async fn follow_redis(state: &AppState, tenant: &str, id: &str, sink: &mut Sink) -> anyhow::Result<()> {
    let redis = state.events.redis().ok_or_else(|| anyhow::anyhow!("no Redis"))?;
    let mut conn = redis.connection().await?;
    let key = exec_key(id);
    let mut last = "0".to_string();
    let mut seen = false;
    loop {
        let batch = read(&mut conn, &key, &last, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            if sink.gone() {
                return Ok(());
            }
            // Nothing (more) in Redis and the run is over: the record has the rest.
            if !still_running(state, tenant, id).await {
                if seen {
                    if let Some(end) = record_events(state, tenant, id).await.pop() {
                        sink.finish(end).await;
                    }
                    return Ok(());
                }
                anyhow::bail!("Redis has no events of this run");
            }
            continue;
        }
        for (entry, body) in batch {
            last = entry;
            seen = true;
            let end = body["type"] == "execution.finished";
            if end {
                sink.finish(body).await;
                return Ok(());
            }
            if !sink.push(body) {
                return Ok(());
            }
        }
    }
}

async fn follow_local(state: &AppState, tenant: &str, id: &str, sink: &mut Sink) {
    let mut rx = state.events.subscribe(tenant);
    let mut last_seq = 0;
    let local = state.events.history(id);
    for e in local.iter().flatten() {
        last_seq = e.seq();
        if e.is_last() {
            sink.finish(e.body.clone()).await;
            return;
        }
        if !sink.push(e.body.clone()) {
            return;
        }
    }
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(e) if e.execution_id == id && e.seq() > last_seq => {
                    last_seq = e.seq();
                    if e.is_last() {
                        sink.finish(e.body.clone()).await;
                        return;
                    }
                    if !sink.push(e.body.clone()) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => sink.dropped += n,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if sink.gone() {
                    return;
                }
                // A run this node never saw (another replica, no Redis): replay its record
                // once it has ended.
                if last_seq == 0 && !still_running(state, tenant, id).await {
                    for e in record_events(state, tenant, id).await {
                        if e["type"] == "execution.finished" {
                            sink.finish(e).await;
                            return;
                        }
                        if !sink.push(e) {
                            return;
                        }
                    }
                    return;
                }
            }
        }
    }
}

async fn still_running(state: &AppState, tenant: &str, id: &str) -> bool {
    state
        .store
        .tenant(tenant)
        .get_execution(id)
        .await
        .map(|e| !e.call.status.is_finished())
        .unwrap_or(false)
}

/// A finished run's events, rebuilt from its database record.
async fn record_events(state: &AppState, tenant: &str, id: &str) -> Vec<Value> {
    let Ok(steps) = state.store.tenant(tenant).list_steps(id).await else {
        return vec![];
    };
    let mut out = vec![];
    let mut push = |kind: &str, mut v: Value| {
        v["type"] = json!(kind);
        v["execution_id"] = json!(id);
        v["seq"] = json!(out.len() + 1);
        v["source"] = json!("record");
        out.push(v);
    };
    let ended = |s: &StepRecord| {
        json!({"step_id": s.id, "function": s.call.function_name, "depth": s.depth, "status": s.call.status,
               "duration_ms": s.call.duration_ms, "fuel_used": s.call.fuel_used, "error": s.call.error})
    };
    let Some(root) = steps.first() else { return vec![] };
    push(
        "execution.started",
        json!({"step_id": root.id, "function": root.call.function_name, "depth": 0}),
    );
    for s in &steps[1..] {
        push(
            "step.started",
            json!({"step_id": s.id, "parent_id": s.parent_id, "function": s.call.function_name, "depth": s.depth}),
        );
        for (stream, text) in [("stdout", &s.call.stdout), ("stderr", &s.call.stderr)] {
            for line in crate::logs::log_lines(text) {
                push("log", json!({"step_id": s.id, "stream": stream, "line": line}));
            }
        }
        push("step.finished", ended(s));
    }
    for (stream, text) in [("stdout", &root.call.stdout), ("stderr", &root.call.stderr)] {
        for line in crate::logs::log_lines(text) {
            push("log", json!({"step_id": root.id, "stream": stream, "line": line}));
        }
    }
    push("execution.finished", ended(root));
    out
}

/// SSE of everything the tenant's executions do from now on: "now" being before the answer
/// goes out (this node's events are subscribed to first), so a client that has the headers
/// misses nothing this node publishes after them.
pub fn feed(state: AppState, tenant: String) -> Response {
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    let mut sink = Sink { tx, dropped: 0 };
    let mut local = state.events.subscribe(&tenant);
    tokio::spawn(async move {
        if state.events.redis().is_some() {
            match feed_redis(&state, &tenant, &mut sink).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "the Redis feed failed; using this node's events"),
            }
        }
        loop {
            tokio::select! {
                got = local.recv() => match got {
                    Ok(e) => {
                        if !sink.push(feed_body(&e)) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => sink.dropped += n,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(Duration::from_secs(5)) => if sink.gone() { return },
            }
        }
    });
    stream_of(rx)
}

fn feed_body(e: &Arc<Event>) -> Value {
    e.body.clone()
}

async fn feed_redis(state: &AppState, tenant: &str, sink: &mut Sink) -> anyhow::Result<()> {
    use redis::AsyncCommands;
    let redis = state.events.redis().ok_or_else(|| anyhow::anyhow!("no Redis"))?;
    let mut conn = redis.connection().await?;
    let key = tenant_key(tenant);
    // Start after the newest entry, so nothing between reads is missed.
    let newest: redis::streams::StreamRangeReply = conn.xrevrange_count(&key, "+", "-", 1).await?;
    let mut last = newest.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".into());
    loop {
        let batch = read(&mut conn, &key, &last, Duration::from_secs(5)).await?;
        if batch.is_empty() && sink.gone() {
            return Ok(());
        }
        for (entry, body) in batch {
            last = entry;
            if !sink.push(body) {
                return Ok(());
            }
        }
    }
}
