//! `maestro bench --queue`: the durable queue's throughput and enqueue-to-start latency, on
//! one or more `maestro serve` replicas sharing DATABASE_URL (SQLite in a temporary
//! directory when none is given: one replica). The baseline, measured in the same run by
//! the same clients, is the same number of sync invokes (the local fast path that skips the
//! queue), so the figures read as "what durability costs".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{percentile, Server};
use crate::config::Settings;

/// Concurrent clients sending the calls.
const CLIENTS: usize = 16;

/// Send `jobs` calls (`?async=true` or sync) from `CLIENTS` tasks, round robin over `bases`;
/// answers each call's (execution id, ms since the epoch when it was sent).
async fn send(bases: &[String], token: &str, jobs: usize, queued: bool) -> anyhow::Result<Vec<(String, i64)>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (next, out, bases, token) = (next.clone(), out.clone(), bases.to_vec(), token.to_string());
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= jobs {
                    return anyhow::Ok(());
                }
                let query = if queued { "?async=true" } else { "" };
                let url = format!("{}/api/v1/functions/quick/invoke{query}", bases[n % bases.len()]);
                let sent = chrono::Utc::now().timestamp_millis();
                let r = client
                    .post(url)
                    .bearer_auth(&token)
                    .json(&json!({"n": n}))
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let v: Value = r.json().await?;
                anyhow::ensure!(status == if queued { 202 } else { 200 }, "call {n}: {status} {v}");
                let id = v["execution_id"].as_str().unwrap_or_default().to_string();
                out.lock().await.push((id, sent));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let out = std::mem::take(&mut *out.lock().await);
    Ok(out)
}

fn millis(v: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Every execution of the tenant: id -> (started_at, finished_at), once none is waiting.
async fn wait_all(base: &str, token: &str, limit: Duration) -> anyhow::Result<HashMap<String, (i64, i64)>> {
    let client = reqwest::Client::new();
    let t = Instant::now();
    loop {
        let mut open = 0;
        for status in ["queued", "running"] {
            let url = format!("{base}/api/v1/executions?status={status}&limit=1&total=true");
            let v: Value = client.get(url).bearer_auth(token).send().await?.json().await?;
            open += v["total"].as_i64().unwrap_or(0);
        }
        if open == 0 {
            break;
        }
        anyhow::ensure!(t.elapsed() < limit, "{open} jobs still open after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut all = HashMap::new();
    loop {
        let url = format!("{base}/api/v1/executions?limit=500&offset={}&total=true", all.len());
        let v: Value = client.get(url).bearer_auth(token).send().await?.json().await?;
        let rows = v["executions"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            return Ok(all);
        }
        for e in rows {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            let times = (
                millis(&e["started_at"]).unwrap_or(0),
                millis(&e["finished_at"]).unwrap_or(0),
            );
            all.insert(id, times);
        }
    }
}

/// Queue one job of `function` through `base`; answers its execution id.
async fn enqueue(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    function: &str,
    input: Value,
) -> anyhow::Result<String> {
    let v: Value = client
        .post(format!("{base}/api/v1/functions/{function}/invoke?async=true"))
        .bearer_auth(token)
        .json(&input)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["execution_id"].as_str().unwrap_or_default().to_string())
}

/// Enqueue-to-start of single jobs on an idle queue: each sent after the previous started.
async fn idle_latency(bases: &[String], token: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let mut out = vec![];
    for i in 0..n {
        let base = &bases[i % bases.len()];
        let sent = chrono::Utc::now().timestamp_millis();
        let id = enqueue(&client, base, token, "quick", json!({"n": i})).await?;
        let t = Instant::now();
        loop {
            let e: Value = client
                .get(format!("{base}/api/v1/executions/{id}"))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            if e["status"] != "queued" {
                let started = millis(&e["started_at"]).unwrap_or(sent);
                out.push((started - sent).max(0) as f64);
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "job {id} did not start");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

/// Cancel-to-end of running jobs of `function`: each job is queued through one replica, and
/// once it runs its cancel goes to the next one (another server than the one running it,
/// half the time, with two replicas); the time is until a read shows it `cancelled`.
async fn cancel_latency(bases: &[String], token: &str, function: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let status = |base: &str, id: &str| {
        let req = client.get(format!("{base}/api/v1/executions/{id}")).bearer_auth(token);
        async move { anyhow::Ok(req.send().await?.json::<Value>().await?["status"].clone()) }
    };
    let mut out = vec![];
    for i in 0..n {
        let (base, other) = (&bases[i % bases.len()], &bases[(i + 1) % bases.len()]);
        let id = enqueue(&client, base, token, function, json!({})).await?;
        let t = Instant::now();
        while status(base, &id).await? != "running" {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "job {id} did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // well under way
        let asked = Instant::now();
        let r = client
            .post(format!("{other}/api/v1/executions/{id}/cancel"))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "cancel of {id}: {}", r.text().await?);
        while status(other, &id).await? != "cancelled" {
            anyhow::ensure!(asked.elapsed() < Duration::from_secs(30), "job {id} did not stop");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        out.push(asked.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

pub async fn run(settings: Settings, jobs: usize, replicas: usize) -> anyhow::Result<()> {
    let sqlite = settings.database_url.as_ref().is_none_or(|u| u.0.starts_with("sqlite"));
    anyhow::ensure!(replicas >= 1, "--replicas must be at least 1");
    anyhow::ensure!(
        replicas == 1 || !sqlite,
        "several replicas share one PostgreSQL: set DATABASE_URL=postgres://…"
    );
    let root = std::env::temp_dir().join(format!("maestro-bench-queue-{}", std::process::id()));
    let mut servers = vec![];
    let mut settings = settings;
    if sqlite {
        let file = root.join("shared.db");
        std::fs::create_dir_all(&root)?;
        settings.database_url = Some(crate::config::Secret(format!("sqlite://{}?mode=rwc", file.display())));
    }
    for i in 0..replicas {
        let dir = root.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir)?;
        let (settings, dir) = (settings.clone(), dir.clone());
        // The clients outnumber a tenant's default concurrency (half the workers): let the
        // sandbox workers be the limit, for the sync baseline and the queue alike.
        let extra = ["--tenant-max-concurrent-executions", "64"];
        let exe = std::env::current_exe()?;
        let start = move || Server::start_exe(&exe, &settings, &dir, &extra, &[]);
        servers.push(tokio::task::spawn_blocking(start).await??);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let tenant = format!("bench-queue-{}", uuid::Uuid::new_v4().simple());
    let token = crate::auth::Keys::new("bench").mint(&tenant, "bench@localhost", false, Duration::from_secs(3600))?;
    let client = reqwest::Client::new();
    for f in [
        json!({"name": "quick", "code": "def quick(input):\n    return input['n']\n"}),
        json!({"name": "spin", "code": "def spin(input):\n    while True:\n        pass\n", "timeout_seconds": 60}),
        json!({"name": "nap", "code": "import time\ndef nap(input):\n    time.sleep(60)\n", "timeout_seconds": 60}),
    ] {
        let r = client
            .post(format!("{}/api/v1/functions", bases[0]))
            .bearer_auth(&token)
            .json(&f)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 201,
            "could not create {}: {}",
            f["name"],
            r.text().await?
        );
    }
    // Warm every replica (function cache, warm instances) with sync calls.
    send(&bases, &token, 20 * replicas, false).await?;

    let t = Instant::now();
    send(&bases, &token, jobs, false).await?;
    let sync_rate = jobs as f64 / t.elapsed().as_secs_f64();

    let idle = idle_latency(&bases, &token, 50).await?;
    let cancel_spin = cancel_latency(&bases, &token, "spin", 20).await?;
    let cancel_nap = cancel_latency(&bases, &token, "nap", 20).await?;
    let began = chrono::Utc::now().timestamp_millis();
    let sent = send(&bases, &token, jobs, true).await?;
    let acked_in = (chrono::Utc::now().timestamp_millis() - began) as f64 / 1000.0;
    let runs = wait_all(&bases[0], &token, Duration::from_secs(600)).await?;
    let mut latency = vec![];
    let mut last_end = began;
    for (id, sent_at) in &sent {
        let (started, finished) = runs
            .get(id)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("job {id} has no execution"))?;
        latency.push((started - sent_at).max(0) as f64);
        last_end = last_end.max(finished);
    }
    latency.sort_by(|a, b| a.total_cmp(b));
    let queue_rate = jobs as f64 / ((last_end - began) as f64 / 1000.0);
    let db = if sqlite { "sqlite" } else { "postgres" };
    println!("queue bench: {jobs} jobs, {CLIENTS} clients, {replicas} replica(s), {db}");
    println!("| measurement | value |");
    println!("| --- | --- |");
    println!("| sync invokes/s (baseline, same clients) | {sync_rate:.0} |");
    println!("| async jobs acknowledged/s | {:.0} |", jobs as f64 / acked_in);
    println!("| async jobs run/s (first sent to last finished) | {queue_rate:.0} |");
    println!("| async / sync throughput | {:.2} |", queue_rate / sync_rate);
    println!(
        "| enqueue-to-start, idle queue, p50 / p99 (ms) | {:.0} / {:.0} |",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99)
    );
    println!(
        "| enqueue-to-start under the {jobs}-job flood, p50 / p99 (ms) | {:.0} / {:.0} |",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99)
    );
    for (what, times) in [("computing", &cancel_spin), ("sleeping", &cancel_nap)] {
        println!(
            "| cancel to `cancelled`, a {what} job, p50 / p99 (ms) | {:.0} / {:.0} |",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
