//! Live events: the sequence of a nested run on real Redis, the SSE tail of a running
//! execution (with and without Redis), the tenant feed, and the fallback when Redis is down.

mod common;

use std::time::Duration;

use common::{start_with, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const REDIS: &str = "redis://127.0.0.1:6379";

const INNER: &str = "def inner(input):\n    print('inner says hi')\n    return input['n'] + 1\n";
const OUTER: &str = "import time\n\ndef outer(input):\n    time.sleep(input.get('wait', 0))\n    print('outer before')\n    r = inner({'n': 1})\n    print('outer after', r)\n    return r\n";

async fn with_chain(app: &TestApp) {
    app.create("inner", INNER).await;
    app.create("outer", OUTER).await;
}

/// (type, function, depth) of each event, and the log lines.
fn shape(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap_or("").to_string();
            let what = match kind.as_str() {
                "log" => e["line"].as_str().unwrap_or("").to_string(),
                _ => format!("{}@{}", e["function"].as_str().unwrap_or(""), e["depth"]),
            };
            (kind, what)
        })
        .collect()
}

fn expected() -> Vec<(String, String)> {
    [
        // Lines arrive as they are printed: the outer call's first line before the call.
        ("execution.started", "outer@0"),
        ("log", "outer before"),
        ("step.started", "inner@1"),
        ("log", "inner says hi"),
        ("step.finished", "inner@1"),
        ("log", "outer after 2"),
        ("execution.finished", "outer@0"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Read Server-Sent Events until `execution.finished` (or `limit` events).
async fn read_sse(resp: reqwest::Response, limit: usize) -> Vec<Value> {
    let mut resp = resp;
    let mut buf = String::new();
    let mut out = vec![];
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
        .await
        .expect("no stall")
    {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    let last = v["type"] == "execution.finished";
                    out.push(v);
                    if last || out.len() >= limit {
                        return out;
                    }
                }
            }
        }
    }
    out
}

async fn follow(app: &TestApp, id: &str) -> reqwest::Response {
    let url = format!("{}/api/v1/executions/{id}/logs?follow=true", app.base);
    let resp = app
        .client
        .get(url)
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("follow");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp
}

/// A nested run's events land in its Redis stream, in order.
async fn redis_sequence(b: Backend) {
    let app = start_with(b, &["--redis-url", REDIS]).await;
    with_chain(&app).await;
    let (_, v) = app.invoke("outer", json!({})).await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut events = vec![];
    for _ in 0..100 {
        let range: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut conn, format!("maestro:exec:{id}"))
                .await
                .unwrap();
        events = range
            .ids
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.get::<String>("event").unwrap()).unwrap())
            .collect();
        if events.last().is_some_and(|e| e["type"] == "execution.finished") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shape(&events), expected(), "{events:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    // The tenant's stream has them too.
    let range: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrange_all(&mut conn, format!("maestro:tenant:{}", app.tenant))
            .await
            .unwrap();
    assert!(range.ids.len() >= events.len());
    app.stop().await;
}

/// A client that connects while a run is going gets everything from its start, live.
async fn sse_tail(b: Backend, extra: &[&str]) {
    let app = start_with(b, extra).await;
    with_chain(&app).await;
    let url = format!("{}/api/v1/functions/outer/invoke", app.base);
    let run = tokio::spawn(
        app.client
            .post(url)
            .bearer_auth(&app.token)
            .json(&json!({"wait": 1.0}))
            .send(),
    );
    // Find the running execution.
    let mut id = String::new();
    for _ in 0..100 {
        let (_, list) = app
            .get("/api/v1/executions?function=outer&status=running&total=true")
            .await;
        if let Some(e) = list["executions"].as_array().and_then(|l| l.first()) {
            id = e["id"].as_str().unwrap().to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!id.is_empty(), "the run shows as running");
    let events = read_sse(follow(&app, &id).await, 100).await;
    assert_eq!(shape(&events), expected(), "{events:?}");
    assert_eq!(run.await.unwrap().unwrap().status(), StatusCode::OK);

    // Following a finished run replays it; unknown and foreign runs are 404.
    let replay = read_sse(follow(&app, &id).await, 100).await;
    assert_eq!(shape(&replay), expected());
    let other = app.token_for("other");
    for (token, path) in [
        (&app.token, "/api/v1/executions/nope/logs?follow=true".to_string()),
        (&other, format!("/api/v1/executions/{id}/logs?follow=true")),
    ] {
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    app.stop().await;
}

async fn sse_tail_local(b: Backend) {
    sse_tail(b, &[]).await
}

async fn sse_tail_redis(b: Backend) {
    sse_tail(b, &["--redis-url", REDIS]).await
}

/// The tenant feed shows runs as they happen; a client that leaves frees its subscription.
async fn tenant_feed(b: Backend) {
    let app = start_with(b, &[]).await;
    with_chain(&app).await;
    let resp = app
        .client
        .get(format!("{}/api/v1/events", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.state().events.subscribers(&app.tenant), 1);
    app.invoke("outer", json!({})).await;
    let events = read_sse(resp, 100).await;
    assert_eq!(shape(&events), expected());
    // `read_sse` dropped the response: the producer notices and lets go.
    for _ in 0..100 {
        if app.state().events.subscribers(&app.tenant) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.state().events.subscribers(&app.tenant),
        0,
        "the subscription is freed"
    );
    app.stop().await;
}

/// Redis unreachable: runs still succeed, and following falls back to this node and the record.
async fn redis_down(b: Backend) {
    let app = start_with(b, &["--redis-url", "redis://127.0.0.1:1"]).await;
    with_chain(&app).await;
    let (s, v) = app.invoke("outer", json!({})).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("succeeded")), "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let events = read_sse(follow(&app, id).await, 100).await;
    assert_eq!(shape(&events), expected());
    app.stop().await;
}

both_backends!(redis_sequence, sse_tail_local, sse_tail_redis, tenant_feed, redis_down);
