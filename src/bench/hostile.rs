//! `maestro bench --hostile`: what hostile or careless code costs a server, and the edges a
//! new user hits first, measured against a `maestro serve` child: this binary, or another
//! build given with `--server-exe` (an older one gives before/after figures from one run of
//! one client). Only flags every build knows are passed; newer settings go in as environment
//! variables, which older builds ignore.
//!
//! - a guest that forges the prelude's `end` frame (31 million lines of stdout) and then spins
//!   until its 2 s deadline: when does the answer come, and what is kept;
//! - `while True: pass` with the server's default fuel and a 2 s timeout: how it ends;
//! - `import numpy, pandas` in a fresh instance: fuel and time;
//! - eight functions that each fill 200 MiB and return: the server's RSS before, right
//!   after, and once they have been idle for `WARM_IDLE_SECONDS` (5 here) plus a margin;
//! - the first fire time `POST /schedules/preview` gives for `*/5 9-17 * * mon-fri` after a
//!   Saturday midnight;
//! - how many of 20 workflow runs answered 202 read back as 404 right after.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Server;
use crate::config::Settings;

const MIB: f64 = (1 << 20) as f64;

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn create(&self, name: &str, code: &str, isolation: &str) -> anyhow::Result<()> {
        let body = json!({"name": name, "code": code, "isolation": isolation});
        let (status, v) = self.post("/functions", &body).await?;
        anyhow::ensure!(status == 201, "creating {name}: {v}");
        Ok(())
    }

    /// Invoke and time it: (seconds, answer).
    async fn invoke(&self, name: &str) -> anyhow::Result<(f64, Value)> {
        let t = Instant::now();
        let (_, v) = self.post(&format!("/functions/{name}/invoke"), &json!({})).await?;
        Ok((t.elapsed().as_secs_f64(), v))
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb * 1024.0 / MIB)
}

fn kind(v: &Value) -> String {
    v["error"]["kind"]
        .as_str()
        .unwrap_or(v["status"].as_str().unwrap_or("?"))
        .to_string()
}

const FORGER: &str = "import _host\ndef forger(input):\n    \
    _host.call(b'{\"op\":\"end\",\"ok\":true,\"output\":1,\"stdout\":\"' + b'\\\\n' * 31_000_000 + b'\"}')\n    \
    while True: pass\n";

pub async fn run(settings: Settings, server_exe: Option<PathBuf>) -> anyhow::Result<()> {
    let exe = match server_exe {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let dir = std::env::temp_dir().join(format!("maestro-bench-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let server = {
        let (settings, dir, exe) = (settings.clone(), dir.clone(), exe.clone());
        tokio::task::spawn_blocking(move || {
            Server::start_exe(
                &exe,
                &settings,
                &dir,
                &["--function-timeout", "2", "--function-memory-mb", "512"],
                &[("WARM_IDLE_SECONDS", "5"), ("TENANT_MAX_CONCURRENT_EXECUTIONS", "8")],
            )
        })
        .await??
    };
    let pid = server.child.id();
    let tenant = format!("hostile-{}", uuid::Uuid::now_v7().simple());
    let client = Client {
        http: reqwest::Client::new(),
        base: server.addr.clone(),
        token: crate::auth::Keys::new("bench").mint(&tenant, "bench@localhost", false, Duration::from_secs(3600))?,
    };
    let mut rows: Vec<(String, String)> = Vec::new();

    client.create("forger", FORGER, "warm").await?;
    let (secs, v) = client.invoke("forger").await?;
    let logs = client
        .get(&format!(
            "/api/v1/executions/{}/logs",
            v["execution_id"].as_str().unwrap_or("")
        ))
        .await?
        .1;
    let kept = logs["logs"][0]["text"].as_str().map_or(0, str::len);
    rows.push((
        "forged end frame, then spin (timeout 2 s)".into(),
        format!("answered after {secs:.2} s as `{}`; stdout kept {kept} bytes", kind(&v)),
    ));

    client
        .create("spin", "def spin(input):\n    while True: pass\n", "warm")
        .await?;
    let (secs, v) = client.invoke("spin").await?;
    rows.push((
        "`while True: pass`, default fuel (timeout 2 s)".into(),
        format!(
            "`{}` after {secs:.2} s, fuel {:.3e}",
            kind(&v),
            v["fuel_used"].as_f64().unwrap_or(0.0)
        ),
    ));

    client
        .create(
            "numpandas",
            "import numpy, pandas\ndef numpandas(input):\n    return 1\n",
            "fresh",
        )
        .await?;
    let (secs, v) = client.invoke("numpandas").await?;
    rows.push((
        "`import numpy, pandas`, fresh instance".into(),
        format!(
            "`{}` in {secs:.2} s, fuel {:.3e}",
            kind(&v),
            v["fuel_used"].as_f64().unwrap_or(0.0)
        ),
    ));

    client
        .create("warmup", "def warmup(input):\n    return 1\n", "warm")
        .await?;
    client.invoke("warmup").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mib(pid);
    for i in 0..8 {
        let name = format!("hoard_{i}");
        let code = format!("def {name}(input):\n    data = b'x' * (200 << 20)\n    return len(data)\n");
        client.create(&name, &code, "warm").await?;
        client.invoke(&name).await?;
    }
    let after = rss_mib(pid);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let idle = rss_mib(pid);
    rows.push((
        "eight 200 MiB hoarders: server RSS".into(),
        format!(
            "{before:.0} MiB before, {after:.0} MiB right after (+{:.0}), {idle:.0} MiB after 8 s idle (+{:.0})",
            after - before,
            idle - before
        ),
    ));

    let body = json!({"cron_expression": "*/5 9-17 * * mon-fri", "after": "2026-11-28T00:00:00Z", "count": 1});
    let (_, v) = client.post("/schedules/preview", &body).await?;
    rows.push((
        "`*/5 9-17 * * mon-fri` after Saturday 2026-11-28 00:00Z".into(),
        format!("first fire {}", v["next"][0]),
    ));

    let (status, v) = client
        .post(
            "/workflows",
            &json!({"name": "quick", "nodes": ["warmup"], "edges": []}),
        )
        .await?;
    anyhow::ensure!(status == 201, "creating a workflow: {v}");
    let mut missing = 0;
    for _ in 0..20 {
        let (_, v) = client.post("/workflows/quick/run", &json!({})).await?;
        let id = v["execution_id"].as_str().unwrap_or("").to_string();
        if client.get(&format!("/api/v1/executions/{id}")).await?.0 == 404 {
            missing += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rows.push((
        "workflow run: 202 then GET at once".into(),
        format!("{missing} of 20 were 404"),
    ));

    println!("server: {}", exe.display());
    println!("| scenario | measured |");
    println!("| --- | --- |");
    for (scenario, figure) in rows {
        println!("| {scenario} | {figure} |");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
