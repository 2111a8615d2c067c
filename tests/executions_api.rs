//! Execution history (filters, pagination), health, and the shipped examples.

mod common;

use common::{start, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn history_filters_and_pages(b: Backend) {
    let app = start(b).await;
    app.create("good", "def good(input):\n    return input['n']\n").await;
    app.create("bad", "def bad(input):\n    raise RuntimeError('no')\n")
        .await;
    for n in 0..5 {
        app.invoke("good", json!({"n": n})).await;
    }
    app.invoke("bad", json!({})).await;
    app.invoke("bad", json!({})).await;

    let (_, all) = app.get("/api/v1/executions").await;
    assert_eq!(all["total"], 7);
    // Newest first.
    assert_eq!(all["executions"][0]["function_name"], "bad");
    let (_, good) = app.get("/api/v1/executions?function=good").await;
    assert_eq!(good["total"], 5);
    assert_eq!(good["executions"][0]["output"], 4);
    let (_, failed) = app.get("/api/v1/executions?status=failed").await;
    assert_eq!(failed["total"], 2);
    assert_eq!(failed["executions"][0]["error"]["type"], "RuntimeError");
    let (_, manual) = app.get("/api/v1/executions?trigger=manual&function=bad").await;
    assert_eq!(manual["total"], 2);
    let (_, none) = app.get("/api/v1/executions?trigger=schedule").await;
    assert_eq!(none["total"], 0);

    let (_, p1) = app.get("/api/v1/executions?function=good&limit=2").await;
    let (_, p2) = app.get("/api/v1/executions?function=good&limit=2&offset=2").await;
    let ids = |v: &Value| {
        v["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1).len(), 2);
    assert_eq!(ids(&p2).len(), 2);
    assert!(ids(&p1).iter().all(|id| !ids(&p2).contains(id)));

    // A time range: compared with the listed start times themselves.
    let started: Vec<chrono::DateTime<chrono::FixedOffset>> = all["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["started_at"].as_str().unwrap()).unwrap())
        .collect();
    let t = started[3];
    let at = urlencode(&t.to_rfc3339());
    let (_, since) = app.get(&format!("/api/v1/executions?since={at}")).await;
    assert_eq!(since["total"], started.iter().filter(|s| **s >= t).count(), "{since}");
    let (_, until) = app.get(&format!("/api/v1/executions?until={at}")).await;
    assert_eq!(until["total"], started.iter().filter(|s| **s < t).count(), "{until}");
    assert!(until["total"].as_i64().unwrap() >= 1 && since["total"].as_i64().unwrap() >= 4);
    let (_, window) = app.get(&format!("/api/v1/executions?since={at}&until={at}")).await;
    assert_eq!(window["total"], 0);
    let (s, v) = app.get("/api/v1/executions?since=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("since"), "{v}");

    let (s, v) = app.get("/api/v1/executions?limit=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = app.get("/api/v1/executions/does-not-exist").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/api/v1/executions/does-not-exist/steps").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another tenant sees none of these executions.
    let id = all["executions"][0]["id"].as_str().unwrap();
    let other = app.token_for("intruder");
    for path in [
        format!("/api/v1/executions/{id}"),
        format!("/api/v1/executions/{id}/steps"),
        format!("/api/v1/executions/{id}/logs"),
    ] {
        let (s, _) = app.call_as(&other, reqwest::Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, theirs) = app
        .call_as(&other, reqwest::Method::GET, "/api/v1/executions", None)
        .await;
    assert_eq!(theirs["total"], 0);
    app.stop().await;
}

async fn health_reports(b: Backend) {
    let app = common::start_with(b, &["--redis-url", "redis://127.0.0.1:6379"]).await;
    let (s, v) = app.raw(reqwest::Method::GET, "/health", None, "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"]["status"], "ok");
    let backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(v["database"]["backend"], backend);
    assert_eq!(v["runtime"]["status"], "ok");
    assert_eq!(v["redis"]["status"], "ok");
    app.stop().await;

    // Redis down (nothing listens on port 1) does not stop the server; health says degraded.
    let app = common::start_with(b, &["--redis-url", "redis://127.0.0.1:1"]).await;
    let (s, v) = app.raw(reqwest::Method::GET, "/health", None, "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["redis"]["status"], "error");
    assert_eq!(
        app.invoke("nothing", json!({})).await.0,
        StatusCode::NOT_FOUND,
        "the API still answers"
    );
    app.stop().await;
}

both_backends!(history_filters_and_pages, health_reports);
