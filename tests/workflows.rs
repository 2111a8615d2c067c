//! Workflows over HTTP with the real sandbox, on both databases: the Taskmaster seed's DAG
//! with message passing and config, validation (cycles named), parallel branches, retries,
//! failure with skipped descendants, versions and the run view.

mod common;

use common::{start, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn run(app: &TestApp, name: &str, body: Value) -> Value {
    let (s, v) = app.post(&format!("/api/v1/workflows/{name}/run?wait=60"), body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn view(app: &TestApp, name: &str, id: &str) -> Value {
    let (s, v) = app.get(&format!("/api/v1/workflows/{name}/runs/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn ts(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("rfc3339")
}

async fn seed_dag_and_validation(b: Backend) {
    let app = start(b).await;
    app.define(&[
            ("pass_2", "    return {'value': 2, 'config': input['config']}"),
            ("add_3", "    return {'key': input['pass_2']['value'] + 3}"),
            ("print_return_none", "    print(input['pass_2']['value'] + input['add_3']['key'])"),
            ("leaf", "    print(input['print_return_none'] is None)\n    return {'saw_none': input['print_return_none'] is None}"),
        ],
    )
    .await;
    // The seed's graph, with Taskmaster's add_edges shape and pairs.
    let (s, w) = app
        .post(
            "/api/v1/workflows",
            json!({
                "name": "test_workflow",
                "nodes": ["pass_2", "add_3", "print_return_none", "leaf"],
                "edges": [{"parents": ["pass_2"], "children": ["add_3", "print_return_none"]},
                          ["add_3", "print_return_none"], ["print_return_none", "leaf"]],
                "config": {"region": "eu", "level": 1}
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(w["version"], 1);
    assert_eq!(w["isolated"], json!([]));

    let v = run(&app, "test_workflow", json!({"config": {"level": 2}})).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    let out = &v["output"];
    assert_eq!(out["add_3"], json!({"key": 5}));
    assert_eq!(out["print_return_none"], Value::Null);
    assert_eq!(out["leaf"], json!({"saw_none": true}));
    // Roots get the run's config: the workflow's default with the run's keys over it.
    assert_eq!(out["pass_2"]["config"], json!({"region": "eu", "level": 2}));
    let id = v["execution_id"].as_str().unwrap();
    let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
    let text = logs.to_string();
    assert!(text.contains("7\\n") && text.contains("True\\n"), "{logs}");
    let dag = view(&app, "test_workflow", id).await;
    for n in ["pass_2", "add_3", "print_return_none", "leaf"] {
        assert_eq!(dag["nodes"][n]["status"], "succeeded", "{dag}");
        assert_eq!(dag["nodes"][n]["attempts"], 1);
    }
    // print_return_none ran after both its parents.
    assert!(ts(&dag["nodes"]["print_return_none"]["started_at"]) >= ts(&dag["nodes"]["add_3"]["finished_at"]));
    let (_, e) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(
        (e["trigger"].as_str(), e["function_name"].as_str()),
        (Some("workflow"), Some("test_workflow"))
    );
    let (_, runs) = app.get("/api/v1/workflows/test_workflow/runs?total=true").await;
    assert_eq!(runs["total"], 1, "{runs}");

    // Bad definitions: clear 400s naming what is wrong.
    app.define(&[("a", "    return 1"), ("b", "    return 1"), ("c", "    return 1")])
        .await;
    let other = app.token_for("x");
    let (s, _) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "theirs", "code": "def theirs(input):\n    return 1\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let many: Vec<String> = (0..10_000).map(|i| format!("f{i}")).collect();
    for (body, needle) in [
        (
            json!({"name": "cyc", "nodes": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"], ["c", "a"]]}),
            "a -> b -> c -> a",
        ),
        (json!({"name": "bad", "nodes": ["a", "nope"]}), "nope"),
        (json!({"name": "bad", "nodes": ["a", "theirs"]}), "theirs"),
        (json!({"name": "bad", "nodes": ["a"], "edges": [["a", "a"]]}), "itself"),
        (
            json!({"name": "bad", "nodes": ["a", "b"], "edges": [["a", "b"], ["a", "b"]]}),
            "twice",
        ),
        (json!({"name": "bad", "nodes": ["a"], "edges": [["a", "zz"]]}), "zz"),
        (json!({"name": "bad", "nodes": ["a"], "config": [1, 2]}), "object"),
        (json!({"name": "bad", "nodes": many}), "200"),
    ] {
        let (s, v) = app.post("/api/v1/workflows", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    let (s, _) = app
        .post("/api/v1/workflows/test_workflow/run", json!({"config": "x"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Versions: an update appends one; the old one stays readable.
    let (s, w) = app
        .call(
            Method::PUT,
            "/api/v1/workflows/test_workflow",
            Some(json!({"nodes": ["a", "b"], "edges": [["a", "b"]]})),
        )
        .await;
    assert_eq!((s, w["version"].as_i64()), (StatusCode::OK, Some(2)), "{w}");
    let (_, vs) = app.get("/api/v1/workflows/test_workflow/versions").await;
    assert_eq!(vs["versions"].as_array().map(Vec::len), Some(2));
    // The first run's view still uses the version it ran.
    assert_eq!(
        view(&app, "test_workflow", id).await["nodes"]["leaf"]["status"],
        "succeeded"
    );
    // A function a workflow runs cannot be deleted from under it.
    let (s, v) = app.call(Method::DELETE, "/api/v1/functions/a", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("workflow test_workflow"),
        "{v}"
    );
    let (s, _) = app.call(Method::DELETE, "/api/v1/workflows/test_workflow", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.call(Method::DELETE, "/api/v1/functions/a", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.stop().await;
}

async fn parallel_retries_and_failures(b: Backend) {
    let app = start(b).await;
    app.define(&[
            ("start", "    return 'go'"),
            ("nap_a", "    time.sleep(0.4)\n    return 'a'"),
            ("nap_b", "    time.sleep(0.4)\n    return 'b'"),
            ("join", "    return sorted(input)"),
            ("flaky", "    if maestro.context.attempt < 2:\n        raise RuntimeError('first try fails')\n    return maestro.context.attempt"),
            ("boom", "    raise ValueError('boom')"),
            ("after_boom", "    return 'never'"),
            ("deeper", "    return 'never'"),
        ],
    )
    .await;
    let (s, v) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "fan", "nodes": ["start", "nap_a", "nap_b", "join",
                    {"function": "flaky", "retries": 2, "retry_delay_seconds": 0.1}],
                   "edges": [{"parents": ["start"], "children": ["nap_a", "nap_b", "flaky"]},
                             {"parents": ["nap_a", "nap_b"], "children": ["join"]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = run(&app, "fan", json!({})).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"]["join"], json!(["nap_a", "nap_b"]));
    assert_eq!(v["output"]["flaky"], 2);
    let dag = view(&app, "fan", v["execution_id"].as_str().unwrap()).await;
    // Independent branches overlap.
    let (a, b) = (&dag["nodes"]["nap_a"], &dag["nodes"]["nap_b"]);
    assert!(
        ts(&a["started_at"]) < ts(&b["finished_at"]) && ts(&b["started_at"]) < ts(&a["finished_at"]),
        "{dag}"
    );
    // Retried, then succeeded: two attempts, two steps.
    assert_eq!(dag["nodes"]["flaky"]["attempts"], 2, "{dag}");
    assert_eq!(dag["nodes"]["flaky"]["status"], "succeeded");

    // A failure fails the run; its descendants are skipped, other branches still finish.
    let (s, v) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "breaks", "nodes": ["start", "boom", "after_boom", "deeper", "nap_a"],
                   "edges": [["start", "boom"], ["boom", "after_boom"], ["after_boom", "deeper"], ["start", "nap_a"]]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = run(&app, "breaks", json!({})).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["kind"], "node_failed");
    assert_eq!(v["error"]["skipped"], json!(["after_boom", "deeper"]));
    let id = v["execution_id"].as_str().unwrap();
    let dag = view(&app, "breaks", id).await;
    let status = |n: &str| dag["nodes"][n]["status"].as_str().unwrap_or("").to_string();
    assert_eq!(
        ["start", "boom", "after_boom", "deeper", "nap_a"].map(status),
        ["succeeded", "failed", "skipped", "skipped", "succeeded"]
    );
    let (_, e) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(e["status"], "failed");
    app.stop().await;
}

/// A 202 names an execution that can be read at once, from this server or any other.
async fn accepted_run_is_readable(b: Backend) {
    let app = start(b).await;
    app.define(&[("one", "    return 1")]).await;
    let (s, v) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "quick", "nodes": ["one"], "edges": []}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for _ in 0..10 {
        let (s, v) = app.post("/api/v1/workflows/quick/run", json!({})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "queued", "committed to the queue: {v}");
        let url = v["status_url"].as_str().expect("status_url");
        let (s, e) = app.get(url).await;
        assert_eq!(s, StatusCode::OK, "the execution a 202 named: {e}");
        assert_eq!(e["trigger"], "workflow");
        assert_eq!(e["function_name"], "quick", "{e}");
        let id = v["execution_id"].as_str().unwrap();
        let e = common::ended_within(&app, id, std::time::Duration::from_secs(30)).await;
        assert_eq!(e["status"], "succeeded", "{e}");
        assert_eq!(e["output"], json!({"one": 1}), "{e}");
    }
    let (_, runs) = app.get("/api/v1/workflows/quick/runs?total=true").await;
    assert_eq!(runs["total"], 10, "{runs}");
    app.stop().await;
}

both_backends!(
    seed_dag_and_validation,
    parallel_retries_and_failures,
    accepted_run_is_readable
);
