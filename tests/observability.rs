//! `/metrics` after a few calls, its optional token, and retention purging only old runs.

mod common;

use std::time::Duration;

use common::{start_with, Backend};
use reqwest::StatusCode;
use serde_json::json;

async fn metrics_after_calls(b: Backend) {
    let app = start_with(b, &[]).await;
    app.create("inner", "def inner(input):\n    return 1\n").await;
    app.create("outer", "def outer(input):\n    return inner({}) + 1\n")
        .await;
    let mut ids = vec![];
    for _ in 0..3 {
        let (_, v) = app.invoke("outer", json!({})).await;
        ids.push(v["execution_id"].as_str().unwrap().to_string());
    }
    app.create("boom", "def boom(input):\n    raise ValueError('no')\n")
        .await;
    app.invoke("boom", json!({})).await;
    let path = format!("{}/m", app.tenant);
    app.post("/api/v1/webhooks", json!({"path": path, "function_name": "outer"}))
        .await;
    app.client
        .post(format!("{}/api/v1/h/{path}", app.base))
        .send()
        .await
        .unwrap();

    let text = app.get_text("/metrics").await;
    for line in [
        "maestro_invocations_total{function=\"outer\",trigger=\"manual\",status=\"succeeded\"} 3",
        "maestro_invocations_total{function=\"boom\",trigger=\"manual\",status=\"failed\"} 1",
        "maestro_invocations_total{function=\"outer\",trigger=\"webhook\",status=\"succeeded\"} 1",
        "maestro_nested_calls_total{status=\"succeeded\"} 4",
        "maestro_webhook_responses_total{status=\"200\"} 1",
        "maestro_execution_duration_seconds_count{trigger=\"manual\"} 4",
        "# TYPE maestro_execution_duration_seconds histogram",
        "maestro_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/functions/{name}/invoke\",status=\"200\"} 4",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    assert!(text.contains("maestro_sandbox_instances{kind=\"warm_pooled\"}"));
    assert!(text.contains("maestro_fuel_used_total{trigger=\"manual\"}"));
    for id in &ids {
        assert!(!text.contains(id.as_str()), "no execution ids in labels");
    }
    app.stop().await;

    let app = start_with(b, &["--metrics-token", "scrape-me"]).await;
    let url = format!("{}/metrics", app.base);
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let ok = app.client.get(&url).bearer_auth("scrape-me").send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    app.stop().await;
}

async fn retention_purges_only_old(b: Backend) {
    let app = start_with(b, &[]).await;
    app.create("inner", "def inner(input):\n    print('x')\n    return 1\n")
        .await;
    app.create("outer", "def outer(input):\n    return inner({})\n").await;
    let (_, old) = app.invoke("outer", json!({})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cutoff = maestro::store::now_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, young) = app.invoke("outer", json!({})).await;
    let store = &app.state().store;
    let mut purged = 0;
    loop {
        let n = store.purge_finished_before(cutoff, 1, Some(&app.tenant)).await.unwrap();
        if n == 0 {
            break;
        }
        purged += n;
    }
    assert!(purged >= 1);
    let old_id = old["execution_id"].as_str().unwrap();
    let young_id = young["execution_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/executions/{old_id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/executions/{old_id}/steps")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, steps) = app.get(&format!("/api/v1/executions/{young_id}/steps")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(steps["steps"].as_array().unwrap().len(), 2, "the younger run is whole");
    app.stop().await;
}

both_backends!(metrics_after_calls, retention_purges_only_old);
