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

    let (_, all) = app.get("/api/v1/executions?total=true").await;
    assert_eq!(all["total"], 7);
    // Newest first.
    assert_eq!(all["executions"][0]["function_name"], "bad");
    let (_, good) = app.get("/api/v1/executions?function=good&total=true").await;
    assert_eq!(good["total"], 5);
    assert_eq!(good["executions"][0]["output"], 4);
    let (_, failed) = app.get("/api/v1/executions?status=failed&total=true").await;
    assert_eq!(failed["total"], 2);
    assert_eq!(failed["executions"][0]["error"]["type"], "RuntimeError");
    let (_, manual) = app
        .get("/api/v1/executions?trigger=manual&function=bad&total=true")
        .await;
    assert_eq!(manual["total"], 2);
    let (_, none) = app.get("/api/v1/executions?trigger=schedule&total=true").await;
    assert_eq!(none["total"], 0);

    let (_, p1) = app.get("/api/v1/executions?function=good&limit=2&total=true").await;
    let (_, p2) = app
        .get("/api/v1/executions?function=good&limit=2&offset=2&total=true")
        .await;
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
    let (_, since) = app.get(&format!("/api/v1/executions?since={at}&total=true")).await;
    assert_eq!(since["total"], started.iter().filter(|s| **s >= t).count(), "{since}");
    let (_, until) = app.get(&format!("/api/v1/executions?until={at}&total=true")).await;
    assert_eq!(until["total"], started.iter().filter(|s| **s < t).count(), "{until}");
    assert!(until["total"].as_i64().unwrap() >= 1 && since["total"].as_i64().unwrap() >= 4);
    let (_, window) = app
        .get(&format!("/api/v1/executions?since={at}&until={at}&total=true"))
        .await;
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
        .call_as(&other, reqwest::Method::GET, "/api/v1/executions?total=true", None)
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

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Follow `next_cursor` from `first` to the end: every page's ids, and whether any page
/// was longer than `limit`.
async fn walk(app: &common::TestApp, first: &str, key: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = vec![];
    let mut path = first.to_string();
    loop {
        let (s, v) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        assert!(v.get("total").is_none(), "total only when asked: {v}");
        let page = ids(&v, key);
        assert!(page.len() <= limit, "{v}");
        pages.push(page);
        match v["next_cursor"].as_str() {
            Some(c) => {
                let sep = if first.contains('?') { '&' } else { '?' };
                path = format!("{first}{sep}cursor={c}");
            }
            None => return pages,
        }
        assert!(pages.len() < 50, "the cursor went round in circles");
    }
}

/// Keyset pages on every history listing: they tile the whole list in order, with no repeat
/// and no gap even when rows are added between pages, on both databases; cursors from
/// another listing, junk, or with an offset are a 400.
async fn keyset_pages(b: Backend) {
    let app = start(b).await;
    app.define(&[
        ("leaf", "    return input"),
        ("fan", "    return [leaf({'i': i}) for i in range(5)]"),
    ])
    .await;
    for n in 0..7 {
        app.invoke("leaf", json!({"n": n})).await;
    }
    let (_, all) = app.get("/api/v1/executions?function=leaf&limit=500").await;
    let all = ids(&all, "executions");
    assert_eq!(all.len(), 7);

    let pages = walk(&app, "/api/v1/executions?function=leaf&limit=3", "executions", 3).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 1]);
    assert_eq!(pages.concat(), all, "the pages tile the list, newest first");

    // Rows added after page 1 do not shift page 2 (an offset would repeat a row).
    let (_, p1) = app.get("/api/v1/executions?function=leaf&limit=3").await;
    app.invoke("leaf", json!({"n": 99})).await;
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app
        .get(&format!("/api/v1/executions?function=leaf&limit=3&cursor={c}"))
        .await;
    assert_eq!(ids(&p2, "executions"), all[3..6].to_vec(), "{p2}");
    let (_, shifted) = app.get("/api/v1/executions?function=leaf&limit=3&offset=3").await;
    assert_eq!(ids(&shifted, "executions")[0], all[2], "offset pages do shift");
    let (_, counted) = app
        .get(&format!("/api/v1/executions?function=leaf&cursor={c}&total=true"))
        .await;
    assert_eq!(counted["total"], 8, "total counts every match, not the rest: {counted}");

    // Steps: the root first, then the nested calls in order, a page at a time.
    let (s, v) = app.invoke("fan", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let (_, whole) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    assert_eq!(whole["next_cursor"], Value::Null, "{whole}");
    let whole = ids(&whole, "steps");
    assert_eq!((whole.len(), whole[0].as_str()), (6, id));
    let steps = walk(&app, &format!("/api/v1/executions/{id}/steps?limit=4"), "steps", 4).await;
    assert_eq!(steps.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 2]);
    assert_eq!(steps.concat(), whole);

    // A workflow's runs.
    let (s, w) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "wf", "nodes": ["leaf"], "edges": []}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let mut runs = vec![];
    for _ in 0..5 {
        let (s, v) = app.post("/api/v1/workflows/wf/run?wait=60", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        runs.insert(0, v["execution_id"].as_str().unwrap().to_string());
    }
    let pages = walk(&app, "/api/v1/workflows/wf/runs?limit=2", "runs", 2).await;
    assert_eq!(pages.concat(), runs, "newest first");
    let (_, counted) = app.get("/api/v1/workflows/wf/runs?limit=1&total=true").await;
    assert_eq!(counted["total"], 5, "{counted}");

    // A schedule's runs (manual ones, so nothing waits for a tick).
    let (s, sched) = app
        .post(
            "/api/v1/schedules",
            json!({"name": "yearly", "function_name": "leaf", "cron_expression": "0 0 1 1 *"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sched}");
    let sid = sched["id"].as_str().unwrap();
    for _ in 0..5 {
        let (s, v) = app.post(&format!("/api/v1/schedules/{sid}/run"), json!({})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    let (_, listed) = app
        .get(&format!("/api/v1/schedules/{sid}/runs?limit=500&total=true"))
        .await;
    assert_eq!(listed["total"], 5, "{listed}");
    let pages = walk(&app, &format!("/api/v1/schedules/{sid}/runs?limit=2"), "runs", 2).await;
    assert_eq!(pages.concat(), ids(&listed, "runs"));

    // Refusals: a cursor of another listing, junk, a cursor with an offset.
    let (_, p1) = app.get("/api/v1/executions?limit=1").await;
    let c = p1["next_cursor"].as_str().unwrap();
    for path in [
        format!("/api/v1/executions/{id}/steps?cursor={c}"),
        format!("/api/v1/workflows/wf/runs?cursor={c}"),
        "/api/v1/executions?cursor=not-a-cursor".to_string(),
        format!("/api/v1/executions?cursor={c}&offset=2"),
    ] {
        let (s, v) = app.get(&path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("cursor"), "{v}");
    }
    app.stop().await;
}

both_backends!(history_filters_and_pages, health_reports, keyset_pages);
