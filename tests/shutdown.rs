//! The real binary, stopped with SIGTERM: it stops accepting, lets running executions finish
//! within `SHUTDOWN_GRACE_SECONDS` (their callers get their answers), records what is still
//! running after that as interrupted, and exits 0. A restart on the same data shows both.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

fn start(data: &str, grace: &str) -> (Server, Option<String>) {
    let (child, lines) = common::serve_binary(data, &["--shutdown-grace-seconds", grace]);
    let base = common::address(&lines);
    let token = lines
        .iter()
        .position(|l| l.contains("Admin token"))
        .map(|i| lines[i + 2].trim().to_string());
    (Server { child, base }, token)
}

async fn call(method: reqwest::Method, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn running(base: &str, token: &str) -> u64 {
    let (_, v) = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/executions?status=running&total=true"),
        token,
        None,
    )
    .await;
    v["total"].as_u64().unwrap_or(0)
}

/// `GET path` from the server restarted on the same data: what was recorded.
async fn after_restart(data: &str, token: &str, path: &str) -> Value {
    let (mut again, _) = start(data, "1");
    let (_, v) = call(reqwest::Method::GET, &format!("{}{path}", again.base), token, None).await;
    again.child.kill().unwrap();
    again.child.wait().unwrap();
    v
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

/// Wait for the process to exit; its exit status and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, t.elapsed());
        }
        assert!(t.elapsed() < limit, "the server did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn define(base: &str, token: &str, name: &str, seconds: f64) {
    let code = format!("import time\ndef {name}(input):\n    time.sleep({seconds})\n    return 'done'\n");
    let (s, v) = call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/functions"),
        token,
        Some(json!({"name": name, "code": code, "timeout_seconds": 120})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

/// Start a sync invoke in the background and wait until its execution is running.
async fn invoke_in_background(base: &str, token: &str, name: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (url, t) = (format!("{base}/api/v1/functions/{name}/invoke"), token.to_string());
    let call = tokio::spawn(async move { call(reqwest::Method::POST, &url, &t, Some(json!({}))).await });
    let t = Instant::now();
    while running(base, token).await == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the execution did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_executions_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut server, token) = start(data, "20");
    let token = token.expect("an admin token is printed");
    define(&server.base, &token, "slow", 2.0).await;
    let pending = invoke_in_background(&server.base, &token, "slow").await;
    sigterm(&server.child);
    // New connections are refused once the signal is handled; the running call goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = reqwest::Client::new()
        .get(format!("{}/health", server.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "a new request after SIGTERM must not be served");
    let (status, answer) = pending.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(answer["output"], "done");
    let (exit, took) = wait_exit(&mut server.child, Duration::from_secs(15));
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took < Duration::from_secs(10),
        "it exits once nothing runs, not after the grace: {took:?}"
    );
    // Restarted on the same data, the record says what the caller was told.
    let id = answer["execution_id"].as_str().unwrap();
    let e = after_restart(data, &token, &format!("/api/v1/executions/{id}")).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["output"], "done", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_outlives_the_grace_period_is_recorded_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut server, token) = start(data, "1");
    let token = token.expect("an admin token is printed");
    define(&server.base, &token, "stuck", 60.0).await;
    let pending = invoke_in_background(&server.base, &token, "stuck").await;
    sigterm(&server.child);
    let (exit, took) = wait_exit(&mut server.child, Duration::from_secs(20));
    assert!(exit.success(), "exit status {exit:?}");
    assert!(took < Duration::from_secs(8), "the grace period is 1 s: {took:?}");
    let _ = pending.await; // the connection was dropped with the server
    let list = after_restart(data, &token, "/api/v1/executions?total=true").await;
    let e = &list["executions"][0];
    assert_eq!(e["function_name"], "stuck", "{list}");
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["error"]["kind"], "interrupted", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("SHUTDOWN_GRACE_SECONDS"),
        "the reason is given: {message}"
    );
    assert!(e["finished_at"].is_string(), "{e}");
}

/// A run started in the background (202) with no connection left open: the signal must
/// still wait for it, and a workflow's run finishes within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_runs_get_the_grace_period_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut server, token) = start(data, "20");
    let token = token.expect("an admin token is printed");
    define(&server.base, &token, "slow", 2.0).await;
    let (s, v) = call(
        reqwest::Method::POST,
        &format!("{}/api/v1/workflows", server.base),
        &token,
        Some(json!({"name": "chain", "nodes": ["slow"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, started) = call(
        reqwest::Method::POST,
        &format!("{}/api/v1/workflows/chain/run", server.base),
        &token,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 202, "{started}");
    let t = Instant::now();
    while running(&server.base, &token).await == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the run did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&server.child);
    let (exit, took) = wait_exit(&mut server.child, Duration::from_secs(25));
    assert!(exit.success(), "exit status {exit:?}");
    assert!(took >= Duration::from_millis(500), "it waited for the run: {took:?}");
    let id = started["execution_id"].as_str().unwrap();
    let e = after_restart(data, &token, &format!("/api/v1/executions/{id}")).await;
    assert_eq!(
        e["status"], "succeeded",
        "the workflow run finished before the exit: {e}"
    );
}
