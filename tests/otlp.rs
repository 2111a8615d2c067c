//! Spans reach an OTLP/HTTP collector: a request span, the execution inside it and the nested
//! call's step inside that, in one trace.

mod common;

use std::time::Duration;

use common::{start_with, Backend};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A collector that accepts every POST and hands over its JSON body.
async fn collector() -> (String, mpsc::UnboundedReceiver<(String, Value)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let head = text[..end].to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                    let _ = tx.send((path, body));
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                        .await;
                    return;
                }
            });
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector() {
    use tracing_subscriber::prelude::*;
    let (endpoint, mut rx) = collector().await;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(maestro::logs::otlp::OtlpLayer::new(&endpoint))
        .init();
    let app = start_with(Backend::Sqlite, &[]).await;
    app.create("inner", "def inner(input):\n    return 1\n").await;
    app.create("outer", "def outer(input):\n    return inner({}) + 1\n")
        .await;
    let (_, v) = app.invoke("outer", json!({})).await;
    let execution_id = v["execution_id"].as_str().unwrap().to_string();

    let mut spans: Vec<Value> = vec![];
    let wait = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < wait {
        let Ok(Some((path, body))) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await else {
            continue;
        };
        assert_eq!(path, "/v1/traces");
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(ss["spans"].as_array().cloned().unwrap_or_default());
            }
        }
        let attr = |s: &Value, k: &str| {
            s["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == k)
                .map(|a| a["value"]["stringValue"].clone())
        };
        let execution = spans
            .iter()
            .find(|s| s["name"] == "execution" && attr(s, "id") == Some(json!(execution_id)));
        let Some(execution) = execution.cloned() else { continue };
        let Some(step) = spans
            .iter()
            .find(|s| s["name"] == "step" && s["parentSpanId"] == execution["spanId"])
        else {
            continue;
        };
        assert_eq!(step["traceId"], execution["traceId"], "one trace");
        assert_eq!(attr(step, "function"), Some(json!("inner")));
        let request = spans.iter().find(|s| s["spanId"] == execution["parentSpanId"]);
        assert!(
            request.is_some_and(|r| r["name"] == "request"),
            "the execution sits in its request's span"
        );
        app.stop().await;
        return;
    }
    panic!("no execution/step spans arrived: {spans:?}");
}
