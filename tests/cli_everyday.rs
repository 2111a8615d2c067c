//! The everyday commands with the real `maestro` binary against a real server: login
//! profiles, invoke (exit codes, stdin, a suggestion for a typo), executions, show (the
//! step tree), logs and `logs -f` printing a line of a running execution before it ends,
//! tail, functions versions and rollback, workflows run, completions, and short help.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{start, Backend, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `maestro ARGS` with `env` (no MAESTRO_* from the test's environment); answers (exit
/// code, stdout, stderr).
async fn maestro(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro"));
    cmd.args(args)
        .env_remove("MAESTRO_URL")
        .env_remove("MAESTRO_TOKEN")
        .env_remove("MAESTRO_PROFILE")
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("maestro runs");
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn env<'a>(app: &'a TestApp, config: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("MAESTRO_URL", app.base.as_str()),
        ("MAESTRO_TOKEN", app.token.as_str()),
        ("MAESTRO_CONFIG", config),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands() {
    let app = start(Backend::Sqlite).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    let config = config.to_str().unwrap();
    let env = env(&app, config);
    app.create("hello", "def hello(input):\n    print('greeting', input['name'])\n    return {'message': 'Hello, ' + input['name'] + '!'}\n").await;
    app.create("leaf", "def leaf(input):\n    return input['x'] + 1\n")
        .await;
    app.create(
        "outer",
        "def outer(input):\n    a = leaf({'x': 1})\n    return leaf({'x': 'no'})\n",
    )
    .await;

    // invoke: output on stdout; input from the flag or stdin; a failure exits 1 with the
    // traceback; a typo gets the closest name.
    let (code, out, _) = maestro(&env, &["invoke", "hello", "--input", r#"{"name": "Ada"}"#], None).await;
    assert_eq!((code, out.trim()), (0, "{\n  \"message\": \"Hello, Ada!\"\n}"));
    let (code, out, _) = maestro(&env, &["invoke", "hello"], Some(r#"{"name": "Bo"}"#)).await;
    assert_eq!(code, 0);
    assert!(out.contains("Hello, Bo!"), "{out}");
    let (code, out, err) = maestro(&env, &["invoke", "outer"], None).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Traceback") && err.contains("TypeError"), "{err}");
    let failed = err
        .split("maestro show ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches([')', '`'])
        .to_string();
    let (code, _, err) = maestro(&env, &["invoke", "helo"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("no function `helo`: did you mean `hello`?"), "{err}");

    // executions as a table; show draws the tree with the failing nested call's error.
    let (code, out, _) = maestro(&env, &["executions", "--function", "hello"], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("FUNCTION") && out.matches("succeeded").count() == 2,
        "{out}"
    );
    let (code, out, err) = maestro(&env, &["show", &failed], None).await;
    assert_eq!(code, 0, "{out}{err} [{failed}]");
    assert!(out.contains("outer  failed"), "{out}");
    assert!(out.contains("├─ leaf  succeeded"), "{out}");
    assert!(out.contains("└─ leaf  failed"), "{out}");
    assert!(out.contains("TypeError"), "{out}");

    // logs of an ended execution, per call.
    let (_, v) = app.get("/api/v1/executions?function=hello&limit=1&total=true").await;
    let id = v["executions"][0]["id"].as_str().unwrap().to_string();
    let (code, out, _) = maestro(&env, &["logs", &id], None).await;
    assert_eq!((code, out.as_str()), (0, "[hello] greeting Bo\n"));
    let (code, out, _) = maestro(&env, &["logs", &id, "--json"], None).await;
    let v: Value = serde_json::from_str(&out).expect("logs --json is JSON");
    assert_eq!((code, &v["logs"][0]["text"]), (0, &json!("greeting Bo\n")), "{v}");

    // logs -f prints a line of a running execution before it ends, and ends with it.
    app.create(
        "slow",
        "import time\ndef slow(input):\n    print('first', flush=True)\n    time.sleep(3)\n    print('second')\n    return 1\n",
    )
    .await;
    let (_, v) = app.post("/api/v1/functions/slow/invoke?async=true", json!({})).await;
    let slow = v["execution_id"].as_str().unwrap().to_string();
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["logs", &slow, "-f"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a line within 20 s")
        .unwrap()
        .unwrap_or_default();
    let (_, e) = app.get(&format!("/api/v1/executions/{slow}")).await;
    assert_eq!(e["status"], "running", "the line came before the end: {e}");
    assert!(first.ends_with("first"), "{first}");
    let second = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(second.unwrap_or_default().ends_with("second"));
    let status = tokio::time::timeout(Duration::from_secs(20), follow.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "logs -f ends with the execution");

    // tail: the tenant's feed, filtered by function.
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["tail", "--function", "leaf"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.post("/api/v1/functions/hello/invoke", json!({"name": "x"})).await;
    app.post("/api/v1/functions/leaf/invoke", json!({"x": 1})).await;
    let t = Instant::now();
    let mut seen = String::new();
    while !seen.contains("execution.finished leaf succeeded") && t.elapsed() < Duration::from_secs(20) {
        if let Ok(Ok(Some(l))) = tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await {
            seen.push_str(&l);
            seen.push('\n');
        }
    }
    assert!(seen.contains("execution.finished leaf succeeded"), "{seen}");
    assert!(!seen.contains("hello"), "filtered to leaf: {seen}");
    tail.kill().await.unwrap();

    // tail --json: one event object per line.
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["tail", "--json"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.post("/api/v1/functions/leaf/invoke", json!({"x": 1})).await;
    let mut types = vec![];
    while !types.contains(&"execution.finished".to_string()) {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("a line");
        let event: Value = serde_json::from_str(&line).expect("each line is JSON");
        assert_eq!(event["function"], "leaf", "{event}");
        types.push(event["type"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(
        types.first().map(String::as_str),
        Some("execution.started"),
        "{types:?}"
    );
    tail.kill().await.unwrap();

    // functions: list, versions, rollback.
    app.call(
        reqwest::Method::PUT,
        "/api/v1/functions/leaf",
        Some(json!({"code": "def leaf(input):\n    return input['x'] + 2\n"})),
    )
    .await;
    let (code, out, _) = maestro(&env, &["functions"], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("NAME") && out.contains("outer") && out.contains("slow"),
        "{out}"
    );
    let (_, out, _) = maestro(&env, &["functions", "versions", "leaf"], None).await;
    assert_eq!(out.lines().count(), 3, "a header and two versions: {out}");
    let (code, out, _) = maestro(&env, &["functions", "rollback", "leaf", "1"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("leaf is now version 3"), "{out}");
    let (_, out, _) = maestro(&env, &["invoke", "leaf", "--input", r#"{"x": 1}"#], None).await;
    assert_eq!(out.trim(), "2");
    let (_, out, _) = maestro(&env, &["functions", "show", "leaf", "--json"], None).await;
    let f: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["version"], 3);

    // workflows run --wait: exit code and status.
    app.create("root", "def root(input):\n    return input['config']['x']\n")
        .await;
    let (s, v) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "twice", "nodes": ["root"], "config": {"x": 1}}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
    let (code, out, err) = maestro(&env, &["workflows", "run", "twice", "--wait"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("succeeded"), "{out}");
    let (code, out, _) = maestro(
        &env,
        &["workflows", "run", "twice", "--wait", "--config", r#"{"x": "no"}"#],
        None,
    )
    .await;
    assert_eq!(code, 0, "a run's config is merged: {out}");

    // login saves a profile (checked first); later commands need no URL or token.
    let bare = [("MAESTRO_CONFIG", config)];
    let (code, _, err) = maestro(&bare, &["functions"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("maestro login URL"), "{err}");
    let (code, _, err) = maestro(&bare, &["login", &app.base, "--token", "not-a-token"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("refused the token"), "{err}");
    let (code, _, err) = maestro(&bare, &["login", "http://127.0.0.1:9", "--token", "x"], None).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach http://127.0.0.1:9: is a Maestro server running there?"),
        "{err}"
    );
    let (code, out, _) = maestro(&bare, &["login", &app.base], Some(&format!("{}\n", app.token))).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("in tenant {}", app.tenant)), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the config file holds tokens: owner only");
    }
    let (code, out, _) = maestro(&bare, &["invoke", "leaf", "--input", r#"{"x": 5}"#], None).await;
    assert_eq!((code, out.trim()), (0, "6"));
    // The saved token goes only to the server it was saved for.
    let (code, _, err) = maestro(&bare, &["functions", "--url", "http://127.0.0.1:9"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("no server to talk to"), "{err}");
    // A token the server refuses (expired, or another server's) names the way out.
    let stale = [
        ("MAESTRO_URL", app.base.as_str()),
        ("MAESTRO_TOKEN", "stale"),
        ("MAESTRO_CONFIG", config),
    ];
    let (code, _, err) = maestro(&stale, &["functions"], None).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("401") && err.contains("`maestro login URL` saves a new one"),
        "{err}"
    );
    let (code, _, err) = maestro(&bare, &["functions", "--profile", "other"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("no profile `other`"), "{err}");

    // Completions, and help that fits a screen and shows a command's own flags.
    let (code, out, _) = maestro(&bare, &["completions", "bash"], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("_maestro") && out.contains("deploy"),
        "{}",
        &out[..200.min(out.len())]
    );
    let (_, out, _) = maestro(&bare, &["--help"], None).await;
    assert!(out.lines().count() <= 50, "{out}");
    let (_, out, _) = maestro(&bare, &["invoke", "--help"], None).await;
    assert!(
        out.lines().count() <= 40 && out.contains("--input-file") && !out.contains("--prune"),
        "{out}"
    );
    app.stop().await;
}

/// Lines of `out` until ping's execution has finished (or 30 s pass without a line).
async fn until_finished(out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    let mut seen = String::new();
    while !seen.contains("execution.finished ping succeeded") {
        match tokio::time::timeout(Duration::from_secs(30), out.next_line()).await {
            Ok(Ok(Some(l))) => seen.push_str(&format!("{l}\n")),
            _ => break,
        }
    }
    seen
}

/// A port nobody listens on now, for a server that must come back on the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `maestro tail` outlives its server: killed with SIGKILL and started again on the same
/// address, the server's new events reach the same `tail`, which says it reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reconnects_when_the_server_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let bind = format!("127.0.0.1:{}", free_port());
    let serve = || common::serve_binary(&data, &["--bind", &bind, "--jwt-secret", common::SECRET]);
    let (mut server, lines) = serve();
    let base = common::address(&lines);
    let token = maestro::auth::Keys::new(common::SECRET)
        .mint("reconnect", "dev@example.com", false, Duration::from_secs(600))
        .unwrap();
    let app = common::remote(&base, &token);
    app.create("ping", "def ping(input):\n    return 'pong'\n").await;

    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["tail", "--url", &base, "--token", &token])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(tail.stderr.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = app.invoke("ping", json!({})).await;
    assert_eq!(status, 200);
    let seen = until_finished(&mut out).await;
    assert!(seen.contains("execution.finished ping succeeded"), "before: {seen}");

    server.kill().unwrap();
    server.wait().unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(20), err.next_line()).await;
    let lost = lost.expect("tail notices within 20 s").unwrap().unwrap_or_default();
    assert!(lost.contains("reconnecting"), "{lost}");
    let (mut server, _) = serve();
    let back = tokio::time::timeout(Duration::from_secs(30), err.next_line()).await;
    let back = back.expect("tail is back within 30 s").unwrap().unwrap_or_default();
    assert!(back.contains("reconnected"), "{back}");
    let (status, _) = app.invoke("ping", json!({})).await;
    assert_eq!(status, 200);
    let seen = until_finished(&mut out).await;
    assert!(seen.contains("execution.finished ping succeeded"), "after: {seen}");
    assert_eq!(tail.try_wait().unwrap(), None, "tail still runs");
    server.kill().unwrap();
    server.wait().unwrap();
}
