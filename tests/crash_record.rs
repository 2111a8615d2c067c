//! The real binary: a server killed mid-run leaves a truthful record (the execution shows as
//! `running` with its input, and the sweeper later marks it `interrupted`); with no secret
//! configured, `serve` generates one and prints a working admin token, and `maestro token`
//! signs with the same secret.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_secret_and_token_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, lines) = common::serve_binary(data, &[]);
    let addr = common::address(&lines);
    let printed = lines
        .iter()
        .position(|l| l.contains("Admin token"))
        .expect("an admin token is printed");
    let admin = lines[printed + 2].trim().to_string();
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{addr}/api/v1/functions"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // `maestro token` reads the same generated secret.
    let out = Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args([
            "token",
            "--tenant",
            "acme",
            "--email",
            "me@acme.io",
            "--ttl",
            "5m",
            "--data-dir",
            data,
        ])
        .env_remove("MAESTRO_JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = client
        .get(format!("{addr}/api/v1/functions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{addr}/api/v1/functions"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_leaves_truthful_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let (mut child, lines) = common::serve_binary(&data, &["--jwt-secret", common::SECRET]);
    let addr = common::address(&lines);

    let keys = maestro::auth::Keys::new(common::SECRET);
    let token = keys
        .mint("crash-test", "dev@example.com", false, Duration::from_secs(600))
        .unwrap();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{addr}/api/v1/functions"))
        .bearer_auth(&token)
        .json(&json!({"name": "sleeper", "code": "import time\ndef sleeper(input):\n    time.sleep(30)\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Start a long call, let its start be committed, then kill the server under it.
    let pending = tokio::spawn({
        let (client, addr, token) = (client.clone(), addr.clone(), token.clone());
        async move {
            let _ = client
                .post(format!("{addr}/api/v1/functions/sleeper/invoke"))
                .bearer_auth(&token)
                .json(&json!({"why": "crash"}))
                .send()
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = pending.await;

    // A new server on the same data directory sees the run as it was: running, with its input.
    let settings = maestro::config::Settings::from_args(
        [
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--runtime-dir",
            &common::runtime_dir(),
        ]
        .into_iter()
        .chain(["--jwt-secret", common::SECRET])
        .map(String::from),
    )
    .unwrap();
    let running = maestro::app::spawn(settings).await.unwrap();
    let base = format!("http://{}/api/v1", running.addr);
    let list = get_json(&client, &format!("{base}/executions?total=true"), &token).await;
    assert_eq!(list["total"], 1, "{list}");
    let e = &list["executions"][0];
    assert_eq!(e["status"], "running");
    assert_eq!(e["input"], json!({"why": "crash"}));
    assert_eq!(e["function_name"], "sleeper");

    // Once its deadline is long past, the sweeper marks it interrupted (grace shortened here).
    let marked = running.state.store.interrupt_stale(-3_600_000).await.unwrap();
    assert_eq!(marked, 1);
    let id = e["id"].as_str().unwrap();
    let e = get_json(&client, &format!("{base}/executions/{id}"), &token).await;
    assert_eq!(e["status"], "failed");
    assert_eq!(e["error"]["kind"], "interrupted");
    running.stop().await;
}
