//! PostgreSQL going away under load (cut at the network, between a real server binary and
//! the real database, for 20 s): requests that need the database answer 503 with
//! Retry-After, never 500 and never a hang; `/health` says so within a second; once the
//! database is back everything resumes by itself, and no acknowledged job is lost.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to the test PostgreSQL that can be cut: while cut, its open connections are
/// closed and new ones are closed as soon as they are accepted.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start() -> Proxy {
        let target = common::postgres_url();
        let host = target
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut down = watching.clone();
                if *down.borrow() {
                    let _ = client.shutdown().await;
                    continue;
                }
                let host = host.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&host).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|d| *d) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    fn set_down(&self, down: bool) {
        self.cut.send_replace(down);
    }
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// (status, code, took, had Retry-After) of every answer.
    answers: Vec<(u16, String, Duration, bool)>,
    /// Async jobs acknowledged: n -> execution id.
    acked: Vec<(u64, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load() {
    let db = common::fresh_postgres("outage").await;
    let (_, name) = db.rsplit_once('/').unwrap();
    let admin = common::postgres_url();
    let proxy = Proxy::start().await;
    let (user, _) = admin.split_once('@').unwrap();
    let via_proxy = format!("{user}@127.0.0.1:{}/{name}", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = common::serve_binary(
        dir.path().to_str().unwrap(),
        &[
            "--database-url",
            &via_proxy,
            "--jwt-secret",
            common::SECRET,
            "--database-timeout-ms",
            "1000",
            "--function-cache-ms",
            "0",
            "--scheduler-enabled",
            "false",
        ],
    );
    let base = common::address(&lines);
    let keys = maestro::auth::Keys::new(common::SECRET);
    let token = keys
        .mint(
            &format!("t-{}", uuid::Uuid::new_v4().simple()),
            "dev@example.com",
            false,
            Duration::from_secs(3600),
        )
        .unwrap();
    let app = common::remote(&base, &token);
    app.create(
        "work",
        "import time\ndef work(input):\n    time.sleep(0.02)\n    return input['n']\n",
    )
    .await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for client_no in 0..8u64 {
        let (seen, stop, base, token) = (seen.clone(), stop.clone(), base.clone(), token.clone());
        load.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let mut n = client_no * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let req = match n % 3 {
                    0 => client
                        .post(format!("{base}/api/v1/functions/work/invoke?async=true"))
                        .json(&json!({"n": n})),
                    1 => client
                        .post(format!("{base}/api/v1/functions/work/invoke"))
                        .json(&json!({"n": n})),
                    _ => client.get(format!("{base}/api/v1/executions?limit=5&total=true")),
                };
                let t = Instant::now();
                let resp = req.bearer_auth(&token).send().await.expect("the server answers");
                let took = t.elapsed();
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let code = body["error"]["code"].as_str().unwrap_or("").to_string();
                {
                    let mut seen = seen.lock().unwrap();
                    if status == 202 {
                        seen.acked.push((n, body["execution_id"].as_str().unwrap().to_string()));
                    }
                    seen.answers.push((status, code, took, retry_after));
                }
                if status >= 500 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let check_health = |want_up: bool| {
        let (health, base) = (health.clone(), base.clone());
        async move {
            let t = Instant::now();
            let r = health.get(format!("{base}/health")).send().await.unwrap();
            let took = t.elapsed();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert!(took < Duration::from_millis(1_000), "/health took {took:?}: {v}");
            if want_up {
                (status == StatusCode::OK, v)
            } else {
                (
                    status == StatusCode::SERVICE_UNAVAILABLE && v["database"]["status"] == "error",
                    v,
                )
            }
        }
    };

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(check_health(true).await.0);
    proxy.set_down(true);
    let cut_at = Instant::now();
    // Within a second of the cut, /health says the database is down (and answers in time).
    let mut reported = None;
    while cut_at.elapsed() < Duration::from_secs(20) {
        let (down, v) = check_health(false).await;
        if down && reported.is_none() {
            reported = Some(cut_at.elapsed());
        }
        if reported.is_some() {
            assert!(down, "it stays down while cut: {v}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reported = reported.expect("/health reported the outage");
    assert!(reported < Duration::from_secs(2), "reported after {reported:?}");
    proxy.set_down(false);
    let back_at = Instant::now();
    // Everything resumes by itself within seconds.
    loop {
        let (up, _) = check_health(true).await;
        let (s, v) = app.post("/api/v1/functions/work/invoke", json!({"n": 1})).await;
        if up && s == StatusCode::OK && v["status"] == "succeeded" {
            break;
        }
        assert!(back_at.elapsed() < Duration::from_secs(10), "not resumed: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = load.join_next().await {
        done.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut unavailable = 0;
    for (status, code, took, retry_after) in &seen.answers {
        assert!(*status != 500, "a 500 ({code})");
        assert!(
            *took < Duration::from_secs(6),
            "an answer took {took:?} ({status} {code})"
        );
        if *status == 503 {
            unavailable += 1;
            assert!(*retry_after, "503 {code} without Retry-After");
            assert!(
                ["database_unavailable", "not_recorded"].contains(&code.as_str()),
                "503 {code}"
            );
        } else if *status == 429 {
            assert!(*retry_after, "429 without Retry-After");
        } else {
            assert!([200, 202].contains(status), "{status} {code}");
        }
    }
    assert!(unavailable > 0, "the load met the outage");
    // Nothing acknowledged is lost: every 202's job ran to success.
    assert!(!seen.acked.is_empty());
    let mut reruns_of: Vec<String> = vec![];
    for (n, id) in &seen.acked {
        let t = Instant::now();
        loop {
            let (s, e) = app.get(&format!("/api/v1/executions/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{e}");
            if e["status"] == "succeeded" {
                assert_eq!(e["output"], json!(n));
                break;
            }
            // A run whose lease ran out during the outage is re-run as a new attempt.
            if e["status"] == "failed" {
                assert_eq!(e["error"]["kind"], "interrupted", "{e}");
                reruns_of.push(id.clone());
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "job {id} did not end: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The runs whose lease ran out during the outage were re-run, to success.
    if !reruns_of.is_empty() {
        let mut succeeded = vec![];
        loop {
            let page = format!(
                "/api/v1/executions?limit=500&status=succeeded&offset={}&total=true",
                succeeded.len()
            );
            let (_, list) = app.get(&page).await;
            let rows = list["executions"].as_array().unwrap().clone();
            if rows.is_empty() {
                break;
            }
            succeeded.extend(rows);
        }
        for id in &reruns_of {
            assert!(
                succeeded.iter().any(|r| r["retry_of"] == json!(id)),
                "job {id} was re-run"
            );
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    common::drop_postgres(&db).await;
}
