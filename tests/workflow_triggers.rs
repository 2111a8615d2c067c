//! Workflows started by something other than a manual run, on both databases: their own
//! cron schedule, a schedule of the schedules API, a webhook; and a run resumed after its
//! server was killed (the real binary), finished nodes not repeated.

mod common;

use std::time::{Duration, Instant};

use common::{start_with, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Poll `path` until `done` holds for its body (at most `secs` seconds).
async fn until(app: &TestApp, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, v) = app.get(path).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting on {path}: {v}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn ended(v: &Value) -> bool {
    v["status"] == "succeeded" || v["status"] == "failed"
}

async fn scheduled_workflows(b: Backend) {
    let app = start_with(b, &["--scheduler-poll-ms", "100"]).await;
    app.define(&[
        (
            "source",
            "    return {'region': input['config']['region'], 'trigger': maestro.context.trigger}",
        ),
        ("sink", "    return input['source']"),
    ])
    .await;
    // Bad schedules are refused with the field named.
    for bad in [
        json!({"cron_expression": "61 * * * *"}),
        json!({"cron_expression": "* * * * *", "timezone": "Mars/Base"}),
        json!({"cron_expression": "* * * * *", "every": 5}),
    ] {
        let (s, v) = app
            .post(
                "/api/v1/workflows",
                json!({"name": "bad", "nodes": ["source"], "schedule": bad}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (s, w) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "nightly", "nodes": ["source", "sink"], "edges": [["source", "sink"]],
                   "config": {"region": "eu"},
                   "schedule": {"cron_expression": "* * * * * *", "timezone": "Europe/Paris"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(w["schedule"]["schedule_name"], "workflow:nightly");
    let (_, list) = app.get("/api/v1/schedules").await;
    assert_eq!(list["total"], 1, "{list}");
    let own = &list["schedules"][0];
    assert_eq!(own["name"], "workflow:nightly");
    assert_eq!(own["workflow_name"], "nightly");
    assert!(own.get("function_name").is_none(), "{own}");
    let own_id = own["id"].as_str().unwrap().to_string();

    // It fires: a run with trigger `schedule`, its nodes passing the default config along.
    // Waits on the page itself: its `total` is counted after the rows are read, so a run that
    // succeeds in between is counted but not listed.
    let runs = until(
        &app,
        "/api/v1/workflows/nightly/runs?status=succeeded&total=true",
        20,
        |v| v["runs"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let run = &runs["runs"][0];
    assert_eq!(run["trigger"], "schedule", "{run}");
    assert_eq!(run["trigger_id"], json!(own_id));
    assert_eq!(run["output"]["sink"], json!({"region": "eu", "trigger": "schedule"}));
    let id = run["id"].as_str().unwrap();
    let (_, dag) = app.get(&format!("/api/v1/workflows/nightly/runs/{id}")).await;
    assert_eq!(dag["trigger"], "schedule");
    assert_eq!(dag["nodes"]["sink"]["status"], "succeeded", "{dag}");

    // The workflow owns that schedule: it changes with the workflow, not directly.
    let (s, v) = app
        .call(Method::DELETE, &format!("/api/v1/schedules/{own_id}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/api/v1/schedules/{own_id}"),
            Some(json!({"cron_expression": "0 * * * *"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = app
        .post(
            "/api/v1/schedules",
            json!({"name": "workflow:mine", "workflow_name": "nightly", "cron_expression": "0 * * * *"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // A schedule of the schedules API may run a workflow too, its input as the run config.
    for (body, field) in [
        (json!({"workflow_name": "nope"}), "workflow_name"),
        (json!({"workflow_name": "nightly", "input_data": [1]}), "config"),
        (
            json!({"workflow_name": "nightly", "function_name": "source"}),
            "workflow_name",
        ),
    ] {
        let mut b = json!({"name": "by-hand", "cron_expression": "0 0 1 1 *"});
        b.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        let (s, v) = app.post("/api/v1/schedules", b).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(field) || v.to_string().contains(field),
            "{v}"
        );
    }
    let (s, by_hand) = app
        .post(
            "/api/v1/schedules",
            json!({"name": "by-hand", "workflow_name": "nightly", "cron_expression": "0 0 1 1 *",
                   "input_data": {"region": "us"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{by_hand}");
    assert_eq!(by_hand["workflow_name"], "nightly");
    let hand_id = by_hand["id"].as_str().unwrap();
    let (s, r) = app.post(&format!("/api/v1/schedules/{hand_id}/run"), json!({})).await;
    assert!(s.is_success(), "{r}");
    let e = until(
        &app,
        &format!("/api/v1/executions/{}", r["execution_id"].as_str().unwrap()),
        20,
        ended,
    )
    .await;
    assert_eq!(
        e["output"]["sink"],
        json!({"region": "us", "trigger": "schedule"}),
        "{e}"
    );
    // A workflow in use is not deleted; the error names the user.
    let (s, v) = app.call(Method::DELETE, "/api/v1/workflows/nightly", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("by-hand"), "{v}");
    let (s, _) = app
        .call(Method::DELETE, &format!("/api/v1/schedules/{hand_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Its schedule can be paused, and an edit that leaves `schedule` alone keeps the pause.
    let (s, v) = app.post(&format!("/api/v1/schedules/{own_id}/pause"), json!({})).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = app
        .call(
            Method::PUT,
            "/api/v1/workflows/nightly",
            Some(
                json!({"nodes": ["source", "sink"], "edges": [["source", "sink"]], "config": {"region": "fr"},
                        "schedule": {"cron_expression": "* * * * * *", "timezone": "Europe/Paris"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 2);
    let (_, own) = app.get(&format!("/api/v1/schedules/{own_id}")).await;
    assert_eq!(own["enabled"], false, "{own}");
    // Dropping `schedule` from the workflow removes its schedule: no more runs.
    let (s, v) = app
        .call(
            Method::PUT,
            "/api/v1/workflows/nightly",
            Some(json!({"nodes": ["source", "sink"], "edges": [["source", "sink"]], "config": {"region": "eu"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, list) = app.get("/api/v1/schedules").await;
    assert_eq!(list["total"], 0, "{list}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, before) = app.get("/api/v1/workflows/nightly/runs?total=true").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, after) = app.get("/api/v1/workflows/nightly/runs?total=true").await;
    assert_eq!(before["total"], after["total"]);
    // With its own schedule gone and nothing else using it, it can be deleted.
    let (s, _) = app.call(Method::DELETE, "/api/v1/workflows/nightly", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.stop().await;
}

async fn webhook_workflows(b: Backend) {
    let app = start_with(b, &[]).await;
    app.define(&[
        ("double", "    return input['config']['n'] * 2"),
        (
            "report",
            "    return {'doubled': input['double'], 'trigger': maestro.context.trigger}",
        ),
    ])
    .await;
    let (s, v) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "pipeline", "nodes": ["double", "report"], "edges": [["double", "report"]],
                   "config": {"n": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Webhook paths are one namespace for the server (and the PostgreSQL database is shared).
    let path = format!("wf-{}", &app.tenant[2..14]);
    let url = format!("/api/v1/h/{path}");
    let (s, hook) = app
        .post(
            "/api/v1/webhooks",
            json!({"path": path, "workflow_name": "pipeline", "input_mode": "body"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["workflow_name"], "pipeline");
    assert!(hook.get("function_name").is_none(), "{hook}");

    // The body is the run config, over the workflow's default; the answer is its output.
    let (s, v) = app.post(&url, json!({"n": 21})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["report"], json!({"doubled": 42, "trigger": "webhook"}), "{v}");
    assert_eq!(v["double"], 42);
    // Asynchronously: 202 (a job of the queue), and the run is listed with trigger `webhook`.
    let (s, v) = app.post(&format!("{url}?async=true"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "queued", "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let e = until(&app, &format!("/api/v1/executions/{id}"), 20, ended).await;
    assert_eq!(e["output"]["double"], 2, "{e}");
    let (_, runs) = app.get("/api/v1/workflows/pipeline/runs?total=true").await;
    assert_eq!(runs["total"], 2, "{runs}");
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["trigger"] == "webhook"),
        "{runs}"
    );
    // A body that is not an object cannot be a config.
    let (s, v) = app.post(&url, json!([1, 2])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Another tenant cannot point a webhook at this tenant's workflow.
    let other = app.token_for("other");
    let (s, v) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"path": format!("{path}-steal"), "workflow_name": "pipeline"})),
        )
        .await;
    // As for a function it does not have: no such workflow in its tenant.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("no workflow named pipeline"), "{v}");
    // Nor is a workflow a webhook runs deleted from under it.
    let (s, v) = app.call(Method::DELETE, "/api/v1/workflows/pipeline", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains(&path), "{v}");
    // Repointed at a function, the same webhook runs the function.
    let hook_id = hook["id"].as_str().unwrap();
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/api/v1/webhooks/{hook_id}"),
            Some(json!({"function_name": "double"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["function_name"], "double");
    let (s, _) = app.call(Method::DELETE, "/api/v1/workflows/pipeline", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.stop().await;
}

/// Kill the server in the middle of a node; a new one resumes the run without repeating
/// the node that had finished, re-running the interrupted one.
async fn resumed_after_restart(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let pg = match b {
        // A database of its own: the shared one holds other tests' runs, which the
        // restarted server would otherwise take over too.
        Backend::Postgres => Some(common::fresh_postgres("maestro_resume").await),
        Backend::Sqlite => None,
    };
    let mut flags = vec![
        "--jwt-secret",
        common::SECRET,
        "--workflow-lease-ms",
        "1000",
        "--scheduler-poll-ms",
        "200",
    ];
    if let Some(url) = &pg {
        flags.extend(["--database-url", url.as_str()]);
    }
    let (mut child, lines) = common::serve_binary(&data, &flags);
    let keys = maestro::auth::Keys::new(common::SECRET);
    let token = keys
        .mint("resume-test", "dev@example.com", false, Duration::from_secs(600))
        .unwrap();
    let mut app = common::remote(&common::address(&lines), &token);
    app.define(&[
        ("first", "    print('first ran')\n    return {'n': 1}"),
        ("slow", "    time.sleep(4)\n    return input['first']['n'] + 1"),
        ("last", "    return input['slow'] * 10"),
    ])
    .await;
    let (s, v) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "long", "nodes": ["first", "slow", "last"], "edges": [["first", "slow"], ["slow", "last"]]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.post("/api/v1/workflows/long/run", json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let view = format!("/api/v1/workflows/long/runs/{id}");
    // Kill it while `slow` runs (its start committed), `first` done.
    let before = until(&app, &view, 30, |v| v["nodes"]["slow"]["status"] == "running").await;
    assert_eq!(before["nodes"]["first"]["status"], "succeeded", "{before}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, lines) = common::serve_binary(&data, &flags);
    app.base = common::address(&lines);
    let after = until(&app, &view, 60, ended).await;
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_eq!(after["resumes"], 1, "{after}");
    // `first` ran once: the same single step as before the restart.
    assert_eq!(
        after["nodes"]["first"]["steps"], before["nodes"]["first"]["steps"],
        "{after}"
    );
    assert_eq!(after["nodes"]["first"]["attempts"], 1);
    // `slow` was interrupted, then ran again and finished.
    let slow = &after["nodes"]["slow"];
    assert_eq!(slow["steps"].as_array().map(Vec::len), Some(2), "{after}");
    assert_eq!(slow["status"], "succeeded");
    // The interruption is not an attempt the node used up.
    assert_eq!(slow["attempts"], 1, "{after}");
    assert_eq!(slow["interrupted"], 1, "{after}");
    assert_eq!(after["nodes"]["last"]["output"], 20);
    let (_, steps) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    let interrupted: Vec<&Value> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["error"]["kind"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "{steps}");
    assert_eq!(interrupted[0]["function_name"], "slow");
    let (_, e) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(e["output"], json!({"first": {"n": 1}, "slow": 2, "last": 20}), "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
    if let Some(url) = pg {
        common::drop_postgres(&url).await;
    }
}

/// Runs nobody waits for are jobs of the queue: the 202 says `queued`, the run is listed at
/// once, and a server killed (SIGKILL) before it started them loses none: another server
/// on the same data runs every one.
async fn queued_runs_survive_a_kill(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = match b {
        Backend::Postgres => common::fresh_postgres("maestro_wfqueue").await,
        Backend::Sqlite => format!("sqlite://{}/maestro.db?mode=rwc", dir.path().display()),
    };
    let one_worker = ["--queue-workers", "1"];
    let first = common::replica_with(&db, &one_worker);
    let (_, token) = common::fresh_tenant(false);
    let app = common::remote(&first.base, &token);
    app.define(&[
        ("hold", "    time.sleep(60)\n    return 1"),
        ("one", "    return {'n': input['config']['n']}"),
    ])
    .await;
    let (s, v) = app
        .post("/api/v1/workflows", json!({"name": "w", "nodes": ["one"], "edges": []}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The server's only queue worker is held, so the runs wait in the queue.
    let (s, v) = app
        .post("/api/v1/functions/hold/invoke?async=true&on_interrupt=fail", json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let hold = format!("/api/v1/executions/{}", v["execution_id"].as_str().unwrap());
    until(&app, &hold, 30, |e| e["status"] == "running").await;
    let mut runs = Vec::new();
    for n in 0..3 {
        let (s, v) = app.post("/api/v1/workflows/w/run", json!({"config": {"n": n}})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "queued", "{v}");
        runs.push(v["execution_id"].as_str().unwrap().to_string());
    }
    let (_, listed) = app.get("/api/v1/workflows/w/runs?total=true").await;
    assert_eq!(listed["total"], 3, "{listed}");
    let statuses: Vec<&Value> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert!(statuses.iter().all(|s| **s == "queued"), "{listed}");
    let (s, view) = app.get(&format!("/api/v1/workflows/w/runs/{}", runs[0])).await;
    assert_eq!((s, &view["status"]), (StatusCode::OK, &json!("queued")), "{view}");

    drop(first); // SIGKILL
    let second = common::replica_with(&db, &one_worker);
    let app = common::remote(&second.base, &token);
    for (n, id) in runs.iter().enumerate() {
        let e = until(&app, &format!("/api/v1/executions/{id}"), 60, ended).await;
        assert_eq!(e["status"], "succeeded", "{e}");
        assert_eq!(e["output"], json!({"one": {"n": n}}), "{e}");
        let (_, view) = app.get(&format!("/api/v1/workflows/w/runs/{id}")).await;
        assert_eq!(view["resumes"], 0, "it started after the kill, once: {view}");
        assert_eq!(view["nodes"]["one"]["attempts"], 1, "{view}");
    }
    // The job the killed server held ends interrupted (its `on_interrupt` is `fail`).
    let e = until(&app, &hold, 30, ended).await;
    assert_eq!(e["error"]["kind"], "interrupted", "{e}");
    drop(second);
    if b == Backend::Postgres {
        common::drop_postgres(&db).await;
    }
}

both_backends!(
    scheduled_workflows,
    webhook_workflows,
    resumed_after_restart,
    queued_runs_survive_a_kill
);
