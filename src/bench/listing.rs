//! `maestro bench --listing`: `GET /executions?limit=50` on a tenant with a short history and
//! again after `--rows` more executions (a million by default), on whichever database the
//! settings name. A keyset page should cost the same at both sizes; counting every match
//! (`total=true`) and deep offsets are measured beside it to show what they cost.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{summarise, Row, Server};
use crate::config::Settings;
use crate::store::{now_ms, Store};

/// `n` GETs of `url` back to back; each must answer 200.
async fn time_gets(client: &reqwest::Client, url: &str, token: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get(url).bearer_auth(token).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
        let _ = r.bytes().await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// The cursor `depth` pages into the listing, following `next_cursor`.
async fn cursor_at(client: &reqwest::Client, base: &str, token: &str, depth: usize) -> anyhow::Result<String> {
    let mut url = format!("{base}/executions?limit=500");
    let mut cursor = String::new();
    for _ in 0..depth {
        let v: Value = client.get(&url).bearer_auth(token).send().await?.json().await?;
        cursor = v["next_cursor"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the listing ended early: {v}"))?
            .to_string();
        url = format!("{base}/executions?limit=500&cursor={cursor}");
    }
    Ok(cursor)
}

pub async fn run(settings: Settings, iterations: usize, rows: i64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("maestro-bench-listing-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut settings = settings;
    settings.data_dir = dir.clone();
    let server = {
        let (settings, dir) = (settings.clone(), dir.clone());
        tokio::task::spawn_blocking(move || Server::start(&settings, &dir)).await??
    };
    let tenant = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let base = format!("{}/api/v1", server.addr);
    let token = crate::auth::Keys::new("bench").mint(&tenant, "bench@localhost", false, Duration::from_secs(3600))?;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/functions"))
        .bearer_auth(&token)
        .json(&json!({"name": "leaf", "code": "def leaf(input):\n    return input\n"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "creating leaf: {}", r.text().await?);
    // A real short history: one full page of invokes.
    for i in 0..60 {
        let r = client
            .post(format!("{base}/functions/leaf/invoke"))
            .bearer_auth(&token)
            .json(&json!({"i": i}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "invoke: {}", r.text().await?);
    }
    let first = format!("{base}/executions?limit=50");
    let counted = format!("{base}/executions?limit=50&total=true");
    let filtered = format!("{base}/executions?limit=50&function=leaf&status=succeeded");
    let n = iterations;
    let small = [
        time_gets(&client, &first, &token, n).await?,
        time_gets(&client, &counted, &token, n).await?,
        time_gets(&client, &filtered, &token, n).await?,
    ];

    eprintln!("writing {rows} executions ...");
    let store = Store::connect(&settings.database_url(), Duration::ZERO, Duration::from_secs(30)).await?;
    let t = Instant::now();
    let oldest_real = now_ms() - 3_600_000;
    store.tenant(&tenant).seed_history("leaf", rows, oldest_real).await?;
    eprintln!("written in {:.1} s; measuring ...", t.elapsed().as_secs_f64());
    // Warm the caches the small history had warm, then measure.
    time_gets(&client, &first, &token, 20).await?;
    let deep = cursor_at(&client, &base, &token, 20).await?;
    let deep_url = format!("{base}/executions?limit=50&cursor={deep}");
    let offset_url = format!("{base}/executions?limit=50&offset=10000");
    let big = [
        time_gets(&client, &first, &token, n).await?,
        time_gets(&client, &counted, &token, (n / 10).max(5)).await?,
        time_gets(&client, &filtered, &token, n).await?,
        time_gets(&client, &deep_url, &token, n).await?,
        time_gets(&client, &offset_url, &token, (n / 10).max(5)).await?,
    ];
    let [s_first, s_counted, s_filtered] = small;
    let [b_first, b_counted, b_filtered, b_deep, b_offset] = big;
    let history = rows + 60;
    let table: [(Row, i64); 8] = [
        (summarise("first page (limit=50)", s_first), 60),
        (summarise("first page, total=true", s_counted), 60),
        (summarise("first page, function and status filters", s_filtered), 60),
        (summarise("first page (limit=50)", b_first), history),
        (summarise("first page, total=true", b_counted), history),
        (
            summarise("first page, function and status filters", b_filtered),
            history,
        ),
        (summarise("page after 10,000 rows, by cursor", b_deep), history),
        (summarise("page after 10,000 rows, by offset", b_offset), history),
    ];
    let base_p50 = table[0].0.p50;
    println!("| GET /executions | tenant's rows | n | p50 ms | p99 ms | p50 / first page at 60 rows |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (r, rows) in &table {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.2}x |",
            r.name,
            rows,
            r.n,
            r.p50,
            r.p99,
            r.p50 / base_p50
        );
    }
    println!("database: {:?}", store.backend());
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
