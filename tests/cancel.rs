//! `POST /api/v1/executions/{id}/cancel`: a queued execution is taken off the queue and never
//! runs; a running one stops within moments, whether it computes, sleeps or waits on a
//! nested call, and on whichever replica runs it; one that ended is a 409.

mod common;

use std::time::{Duration, Instant};

use common::{ended_within, remote, replica_with, start_with, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SLEEPY: &str = "import time\ndef sleepy(input):\n    time.sleep(input['s'])\n    return 'slept'\n";
const SPIN: &str = "def spin(input):\n    n = 0\n    while True:\n        n += 1\n";
const OUTER: &str = "def outer(input):\n    return middle(input)\n";
/// Catches the cancelled call and fails otherwise: it ends cancelled all the same.
const MIDDLE: &str =
    "def middle(input):\n    try:\n        return spin(input)\n    except Exception as e:\n        raise ValueError('caught ' + str(e))\n";
const QUICK: &str = "def quick(input):\n    return {'n': input.get('n')}\n";

async fn running(app: &TestApp, id: &str) {
    let t = Instant::now();
    loop {
        let (_, e) = app.get(&format!("/api/v1/executions/{id}")).await;
        if e["status"] == "running" {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{id} did not start: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn enqueue(app: &TestApp, name: &str, input: Value) -> String {
    let (s, v) = app
        .post(&format!("/api/v1/functions/{name}/invoke?async=true"), input)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["execution_id"].as_str().unwrap().to_string()
}

/// A cancel that was accepted for a running execution: 202 `cancelling` with a Location.
async fn cancel_running(app: &TestApp, id: &str) {
    let (s, v) = app.post(&format!("/api/v1/executions/{id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "cancelling", "{v}");
    assert_eq!(v["status_url"], json!(format!("/api/v1/executions/{id}")), "{v}");
}

/// Create workflow `body`, run it, wait until one of its steps matches `(field, value)`, cancel
/// the run and wait for its end; answers the run's end and its steps.
async fn cancel_workflow_when(app: &TestApp, body: Value, step: (&str, &str)) -> (Value, Vec<Value>) {
    let name = body["name"].as_str().unwrap().to_string();
    let (s, w) = app.post("/api/v1/workflows", body).await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let (s, v) = app.post(&format!("/api/v1/workflows/{name}/run"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let run = v["execution_id"].as_str().unwrap().to_string();
    let steps = || async {
        let (_, steps) = app.get(&format!("/api/v1/executions/{run}/steps")).await;
        steps["steps"].as_array().cloned().unwrap_or_default()
    };
    let t = Instant::now();
    while !steps().await.iter().any(|s| s[step.0] == step.1) {
        assert!(t.elapsed() < Duration::from_secs(10), "no step with {step:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel_running(app, &run).await;
    let e = ended_within(app, &run, Duration::from_secs(5)).await;
    (e, steps().await)
}

fn assert_cancelled(e: &Value) {
    assert_eq!(e["status"], "cancelled", "{e}");
    assert_eq!(e["error"]["kind"], "cancelled", "{e}");
    assert_eq!(e["output"], Value::Null, "{e}");
}

/// On one server: queued, sleeping, computing (sync call), nested; refusals.
async fn cancel_on_one_server(b: Backend) {
    let app = start_with(b, &["--queue-workers", "1"]).await;
    app.create("sleepy", SLEEPY).await;
    app.create("quick", QUICK).await;
    app.create_with(json!({"name": "spin", "code": SPIN, "timeout_seconds": 60}))
        .await;
    app.create_with(json!({"name": "middle", "code": MIDDLE, "timeout_seconds": 60}))
        .await;
    app.create_with(json!({"name": "outer", "code": OUTER, "timeout_seconds": 60}))
        .await;

    // The one queue worker sleeps; the next job waits: cancelled, it never runs.
    let asleep = enqueue(&app, "sleepy", json!({"s": 60})).await;
    running(&app, &asleep).await;
    let waiting = enqueue(&app, "quick", json!({"n": 1})).await;
    let (s, e) = app
        .post(&format!("/api/v1/executions/{waiting}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "a queued execution is cancelled at once: {e}");
    assert_cancelled(&e);
    assert!(e["finished_at"].is_string(), "{e}");
    // A workflow run waits in the queue too: cancelled, its run says so and nothing ran.
    let (s, w) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "later", "nodes": ["quick"], "edges": []}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let (s, v) = app.post("/api/v1/workflows/later/run", json!({})).await;
    assert_eq!((s, &v["status"]), (StatusCode::ACCEPTED, &json!("queued")), "{v}");
    let run = v["execution_id"].as_str().unwrap().to_string();
    let (s, e) = app.post(&format!("/api/v1/executions/{run}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "a queued run is cancelled at once: {e}");
    assert_cancelled(&e);
    let (_, view) = app.get(&format!("/api/v1/workflows/later/runs/{run}")).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["nodes"]["quick"]["attempts"], 0, "{view}");

    // A sleeping job stops within moments, not in a minute.
    let asked = Instant::now();
    cancel_running(&app, &asleep).await;
    let e = ended_within(&app, &asleep, Duration::from_secs(5)).await;
    assert_cancelled(&e);
    assert!(asked.elapsed() < Duration::from_secs(5));
    // The worker is free again, and the cancelled job stays cancelled.
    let after = enqueue(&app, "quick", json!({"n": 2})).await;
    assert_eq!(
        ended_within(&app, &after, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
    let (_, e) = app.get(&format!("/api/v1/executions/{waiting}")).await;
    assert_cancelled(&e);
    let (_, e) = app.get(&format!("/api/v1/executions/{run}")).await;
    assert_cancelled(&e);
    let (_, steps) = app.get(&format!("/api/v1/executions/{waiting}/steps")).await;
    assert_eq!(steps["steps"][0]["status"], "cancelled", "{steps}");

    // A sync call computing in a loop: its caller gets the cancelled result.
    let (client, base, token) = (app.client.clone(), app.base.clone(), app.token.clone());
    let call = tokio::spawn(async move {
        let r = client
            .post(format!("{base}/api/v1/functions/spin/invoke"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    });
    let spinning = loop {
        let (_, list) = app
            .get("/api/v1/executions?function=spin&status=running&total=true")
            .await;
        if let Some(id) = list["executions"][0]["id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cancel_running(&app, &spinning).await;
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the sync caller is answered within moments")
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["status"], &v["error"]["kind"]),
        (&json!("cancelled"), &json!("cancelled")),
        "{v}"
    );
    assert_cancelled(&ended_within(&app, &spinning, Duration::from_secs(5)).await);

    // A call tree: the nested call stops too, and the execution ends cancelled.
    let nested = enqueue(&app, "outer", json!({})).await;
    running(&app, &nested).await;
    let t = Instant::now();
    loop {
        let (_, steps) = app.get(&format!("/api/v1/executions/{nested}/steps")).await;
        if steps["steps"].as_array().is_some_and(|s| s.len() == 3) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "spin was not called: {steps}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel_running(&app, &nested).await;
    assert_cancelled(&ended_within(&app, &nested, Duration::from_secs(5)).await);
    let (_, steps) = app.get(&format!("/api/v1/executions/{nested}/steps")).await;
    let statuses: Vec<&str> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "cancelled", "cancelled"], "{steps}");

    // A workflow run: its running node stops, the next never starts, the run ends cancelled.
    app.create(
        "nap",
        "import time\ndef nap(input):\n    time.sleep(60)\n    return 1\n",
    )
    .await;
    let body = json!({"name": "chain", "nodes": ["nap", "quick"], "edges": [["nap", "quick"]]});
    let (e, steps) = cancel_workflow_when(&app, body, ("function_name", "nap")).await;
    assert_eq!(
        (&e["status"], &e["error"]["kind"]),
        (&json!("cancelled"), &json!("cancelled")),
        "{e}"
    );
    let ran: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["function_name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert!(ran.contains(&("nap", "cancelled")), "{ran:?}");
    assert!(!ran.iter().any(|(f, s)| *f == "quick" && *s == "succeeded"), "{ran:?}");

    // A node waiting a minute to retry: the cancel ends the wait, and no attempt follows.
    app.create("boom", "def boom(input):\n    raise ValueError('no')\n")
        .await;
    let body = json!({"name": "patient", "edges": [],
        "nodes": [{"function": "boom", "retries": 3, "retry_delay_seconds": 60}]});
    let (e, steps) = cancel_workflow_when(&app, body, ("status", "failed")).await;
    assert_eq!(e["status"], "cancelled", "{e}");
    let boom_calls = steps
        .iter()
        .filter(|s| s["function_name"] == "boom" && s["status"] == "failed")
        .count();
    assert_eq!(boom_calls, 1, "no retry ran: {steps:?}");

    // Refusals: ended (409, and it stays as it was), unknown, another tenant's.
    let (s, v) = app.post(&format!("/api/v1/executions/{after}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("succeeded"), "{v}");
    let (_, e) = app.get(&format!("/api/v1/executions/{after}")).await;
    assert_eq!(e["status"], "succeeded");
    let (s, v) = app.post("/api/v1/executions/nope/cancel", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let mine = enqueue(&app, "sleepy", json!({"s": 30})).await;
    let other = app.token_for("other");
    let (s, v) = app
        .call_as(
            &other,
            reqwest::Method::POST,
            &format!("/api/v1/executions/{mine}/cancel"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's execution is not there: {v}");

    // The CLI: cancel, wait for the end, print the execution.
    let cli = |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let remote = |cmd: &[&str]| {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        a.extend(["--url".into(), app.base.clone(), "--token".into(), app.token.clone()]);
        a
    };
    let (ok, out, err) = tokio::task::block_in_place(|| cli(remote(&["executions", "cancel", &mine, "--wait", "10s"])));
    assert!(ok, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("JSON: {out}"));
    assert_eq!((&e["id"], &e["status"]), (&json!(mine), &json!("cancelled")), "{e}");
    let (ok, _, err) = tokio::task::block_in_place(|| cli(remote(&["executions", "cancel", &mine])));
    assert!(!ok, "cancelling an ended execution fails");
    assert!(err.contains("409") && err.contains("already ended"), "{err}");
    let (ok, out, err) = tokio::task::block_in_place(|| cli(remote(&["executions", "show", &mine])));
    assert!(ok, "{err}");
    assert!(out.contains("\"cancelled\""), "{out}");
    app.stop().await;
}

both_backends!(cancel_on_one_server);

/// Two replicas on PostgreSQL, one queue worker each: a queued job cancelled through the
/// replica that did not queue it never runs; each running job is cancelled through the
/// replica that does not run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_another_replica() {
    let db = common::fresh_postgres("cancel").await;
    let flags = ["--queue-workers", "1", "--tenant-max-concurrent-executions", "4"];
    let mut replicas = [replica_with(&db, &flags), replica_with(&db, &flags)];
    let (_, token) = common::fresh_tenant(true);
    let apps = [remote(&replicas[0].base, &token), remote(&replicas[1].base, &token)];
    apps[0].create("sleepy", SLEEPY).await;
    apps[0].create("quick", QUICK).await;

    // Two sleeping jobs, one on each replica (each runs one at a time), then a third waits.
    let jobs = [
        enqueue(&apps[0], "sleepy", json!({"s": 60})).await,
        enqueue(&apps[0], "sleepy", json!({"s": 60})).await,
    ];
    for id in &jobs {
        running(&apps[0], id).await;
    }
    let waiting = enqueue(&apps[0], "quick", json!({"n": 1})).await;
    let (s, e) = apps[1]
        .post(&format!("/api/v1/executions/{waiting}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_cancelled(&e);

    // Who runs what, as /cluster says.
    let mut node_of = vec![];
    let mut holder = std::collections::HashMap::new();
    for app in &apps {
        let (me, held) = holders(app).await;
        node_of.push(me);
        holder.extend(held);
    }
    for id in &jobs {
        let runs_on = holder
            .get(id)
            .unwrap_or_else(|| panic!("{id} is held by nobody: {holder:?}"));
        let other = if *runs_on == node_of[0] { 1 } else { 0 };
        assert_ne!(&node_of[other], runs_on);
        let asked = Instant::now();
        cancel_running(&apps[other], id).await;
        assert_cancelled(&ended_within(&apps[other], id, Duration::from_secs(5)).await);
        assert!(asked.elapsed() < Duration::from_secs(5));
    }

    // Both workers are free: new work runs, and the cancelled job never did.
    let after = enqueue(&apps[1], "quick", json!({"n": 2})).await;
    assert_eq!(
        ended_within(&apps[1], &after, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, e) = apps[0].get(&format!("/api/v1/executions/{waiting}")).await;
    assert_cancelled(&e);
    let (_, list) = apps[0].get("/api/v1/executions?function=quick&total=true").await;
    assert_eq!(list["total"], 2, "{list}");
    for r in replicas.iter_mut() {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
    common::drop_postgres(&db).await;
}

/// Which server (node id) holds each running job, by `/cluster` as `app` (an admin) sees it.
async fn holders(app: &TestApp) -> (String, std::collections::HashMap<String, String>) {
    let (s, v) = app.get("/cluster").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut held = std::collections::HashMap::new();
    for n in v["nodes"].as_array().unwrap() {
        for e in n["executions"].as_array().unwrap() {
            held.insert(e.as_str().unwrap().to_string(), n["id"].as_str().unwrap().to_string());
        }
    }
    (v["node_id"].as_str().unwrap().to_string(), held)
}

/// A cancel outlives the server that ran the job: cancelled while its server is dead, the
/// job ends `cancelled` when its lease runs out instead of running again; and naming the
/// first attempt of a job that was re-run after its server died cancels the new attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_survives_a_dead_server() {
    let db = common::fresh_postgres("cancel").await;
    let flags = ["--queue-workers", "1", "--tenant-max-concurrent-executions", "4"];
    let mut replicas = [replica_with(&db, &flags), replica_with(&db, &flags)];
    let (_, token) = common::fresh_tenant(true);
    let apps: Vec<TestApp> = replicas.iter().map(|r| remote(&r.base, &token)).collect();
    apps[0].create("sleepy", SLEEPY).await;
    let jobs = [
        enqueue(&apps[0], "sleepy", json!({"s": 60})).await,
        enqueue(&apps[0], "sleepy", json!({"s": 60})).await,
    ];
    for id in &jobs {
        running(&apps[0], id).await;
    }
    let (first_node, held) = holders(&apps[0]).await;
    // The replica running jobs[0] dies; the cancel reaches the other one.
    let victim = usize::from(held[&jobs[0]] != first_node);
    let survivor = 1 - victim;
    replicas[victim].child.kill().unwrap();
    replicas[victim].child.wait().unwrap();
    cancel_running(&apps[survivor], &jobs[0]).await;
    let e = ended_within(&apps[survivor], &jobs[0], Duration::from_secs(15)).await;
    assert_cancelled(&e);

    // jobs[1] runs on the survivor; it dies too, a new replica re-runs the job as attempt 2,
    // and cancelling by the first attempt's id stops attempt 2.
    replicas[survivor].child.kill().unwrap();
    replicas[survivor].child.wait().unwrap();
    let fresh = replica_with(&db, &flags);
    let app = remote(&fresh.base, &token);
    let t = Instant::now();
    let second = loop {
        let (_, list) = app
            .get("/api/v1/executions?function=sleepy&status=running&total=true")
            .await;
        let rerun = list["executions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["retry_of"] == json!(jobs[1]))
            .cloned();
        if let Some(e) = rerun {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "jobs[1] was not re-run: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(second["attempt"], 2, "{second}");
    let (s, v) = app
        .post(&format!("/api/v1/executions/{}/cancel", jobs[1]), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["execution_id"], second["id"], "the current attempt is cancelled: {v}");
    assert_cancelled(&ended_within(&app, second["id"].as_str().unwrap(), Duration::from_secs(5)).await);
    let (_, e) = app.get(&format!("/api/v1/executions/{}", jobs[1])).await;
    assert_eq!(e["error"]["kind"], "interrupted", "{e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, all) = app.get("/api/v1/executions?function=sleepy&total=true").await;
    assert_eq!(all["total"], 3, "nothing else ran: {all}");
    let mut fresh = fresh;
    fresh.child.kill().unwrap();
    fresh.child.wait().unwrap();
    common::drop_postgres(&db).await;
}
