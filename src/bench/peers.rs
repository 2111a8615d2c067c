//! `maestro bench --peers`: Maestro next to what people run Python functions with instead,
//! in one interleaved run on this machine: an unsandboxed FastAPI server that `exec()`s the
//! code in-process, Pyodide (CPython in WebAssembly) warm in Node, and a `python3 -c`
//! subprocess per call. The peers live in `bench/peers` (see its README for their set-up);
//! one that cannot start is left out and said so. Every target gets the same functions,
//! the same inputs and the same HTTP client; the peers isolate and record nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{percentile, Server};
use crate::config::Settings;

const HELLO: &str = "def hello(input):\n    return {'greeting': 'hello ' + input.get('name', 'world')}\n";
/// A data function: its imports are what a fresh instance would pay for without a snapshot.
const DATA: &str = "import numpy as np\nimport pandas as pd\n\n\
                    def data_fresh(input):\n    \
                    df = pd.DataFrame({'a': np.arange(input['n'])})\n    \
                    return {'sum': int(df['a'].sum())}\n";
const FIBO: &str = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\
                    def fibo(input):\n    return {'n': input['n'], 'fib': fib(input['n'])}\n";
/// Functions in a round-robin set: `rr_0` .. `rr_999`.
const RR_MAX: usize = 1000;

fn rr(i: usize) -> (String, String) {
    let name = format!("rr_{i}");
    let code = format!("def {name}(input):\n    return {{'i': {i}, 'x': input['x']}}\n");
    (name, code)
}

/// The functions every HTTP target defines: (name, code, Maestro isolation).
fn functions() -> Vec<(String, String, &'static str)> {
    let mut out = vec![
        ("hello".to_string(), HELLO.to_string(), "warm"),
        (
            "hello_fresh".to_string(),
            HELLO.replace("hello(", "hello_fresh("),
            "fresh",
        ),
        ("fibo".to_string(), FIBO.to_string(), "warm"),
        (
            "leaf".to_string(),
            "def leaf(input):\n    return input\n".to_string(),
            "warm",
        ),
        (
            "c1".to_string(),
            "def c1(input):\n    return leaf(input)\n".to_string(),
            "warm",
        ),
        (
            "c2".to_string(),
            "def c2(input):\n    return c1(input)\n".to_string(),
            "warm",
        ),
        (
            "c3".to_string(),
            "def c3(input):\n    return c2(input)\n".to_string(),
            "warm",
        ),
    ];
    // c4 .. c16: a 16-deep chain down to `leaf`.
    out.extend((4..=16).map(|i| {
        let code = format!("def c{i}(input):\n    return c{}(input)\n", i - 1);
        (format!("c{i}"), code, "warm")
    }));
    out.extend((0..RR_MAX).map(|i| {
        let (n, c) = rr(i);
        (n, c, "warm")
    }));
    out
}

/// One thing measured: where it sends a call `i` of the workload.
#[derive(Clone)]
struct Target {
    name: &'static str,
    /// `{base}/functions/{name}/invoke` answers `{"status": "succeeded", ...}`.
    base: String,
    token: Option<String>,
    /// Maestro's sync webhook for fibo (the peers have none: their invoke stands in).
    webhook: Option<String>,
}

#[derive(Clone, Copy)]
enum Work {
    Hello,
    HelloFresh,
    Fibo10Webhook,
    Fibo25,
    Chain3,
    Chain16,
    /// numpy + pandas, fresh isolation (Maestro only: the peers have neither installed).
    DataFresh,
    RoundRobin(usize),
}

impl Work {
    fn label(self) -> String {
        match self {
            Work::Hello => "hello".into(),
            Work::HelloFresh => "hello, fresh isolation".into(),
            Work::Fibo10Webhook => "fibo(10) via sync webhook".into(),
            Work::Fibo25 => "fibo(25)".into(),
            Work::Chain3 => "3-deep chain".into(),
            Work::Chain16 => "16-deep chain".into(),
            Work::DataFresh => "numpy + pandas, fresh isolation".into(),
            Work::RoundRobin(n) => format!("round-robin over {n} functions"),
        }
    }

    /// The URL and body of call number `i`.
    fn request(self, t: &Target, i: usize) -> (String, Value) {
        let invoke = |name: &str| format!("{}/functions/{name}/invoke", t.base);
        match self {
            Work::Hello => (invoke("hello"), json!({"name": "bench"})),
            Work::HelloFresh => (invoke("hello_fresh"), json!({"name": "bench"})),
            Work::Fibo10Webhook => (t.webhook.clone().unwrap_or_else(|| invoke("fibo")), json!({"n": 10})),
            Work::Fibo25 => (invoke("fibo"), json!({"n": 25})),
            Work::Chain3 => (invoke("c3"), json!({"x": 1})),
            Work::Chain16 => (invoke("c16"), json!({"x": 1})),
            Work::DataFresh => (invoke("data_fresh"), json!({"n": 5})),
            Work::RoundRobin(n) => (invoke(&format!("rr_{}", i % n)), json!({"x": i})),
        }
    }
}

/// What one (workload, target, concurrency) cell measured.
#[derive(Default)]
struct Cell {
    ms: Vec<f64>,
    /// Wall time of the calls, for throughput.
    wall: Duration,
    refused: usize,
}

async fn one_call(client: &reqwest::Client, t: &Target, url: &str, body: &Value) -> anyhow::Result<(f64, bool)> {
    let start = Instant::now();
    let mut req = client.post(url).json(body);
    if let Some(tok) = &t.token {
        req = req.bearer_auth(tok);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Ok((ms, false));
    }
    anyhow::ensure!(
        status.is_success(),
        "{} {url}: {}",
        status,
        String::from_utf8_lossy(&bytes)
    );
    Ok((ms, true))
}

/// `n` calls of `work` on `t`, `conc` at a time, each task on its own connection.
async fn measure(client: &reqwest::Client, t: &Target, work: Work, n: usize, conc: usize) -> anyhow::Result<Cell> {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks = (0..conc).map(|_| {
        let (client, t, next) = (client.clone(), t.clone(), next.clone());
        tokio::spawn(async move {
            let mut out = (vec![], 0usize);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                let (url, body) = work.request(&t, i);
                let (ms, ok) = one_call(&client, &t, &url, &body).await?;
                if ok {
                    out.0.push(ms);
                } else {
                    out.1 += 1;
                }
            }
        })
    });
    let mut cell = Cell::default();
    for r in futures_util::future::join_all(tasks).await {
        let (ms, refused) = r??;
        cell.ms.extend(ms);
        cell.refused += refused;
    }
    cell.wall = start.elapsed();
    Ok(cell)
}

/// Start a peer (`program args`), wait for its "peer listening on URL" line.
async fn start_peer(program: &Path, args: &[&str], dir: &Path) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await? {
            if let Some(u) = l.strip_prefix("peer listening on ") {
                return Ok(u.to_string());
            }
        }
        anyhow::bail!("the peer exited before it listened")
    })
    .await??;
    Ok((child, url))
}

/// `python3 -c` per call: the function's code and a call of it, input on argv.
fn subprocess_call(python: &str, code: &str, call: &str, input: &Value) -> anyhow::Result<f64> {
    let program = format!("import json, sys\n{code}\nprint(json.dumps({call}(json.loads(sys.argv[1]))))");
    let t = Instant::now();
    let o = std::process::Command::new(python)
        .arg("-c")
        .arg(&program)
        .arg(input.to_string())
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "python3 -c failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

pub async fn run(settings: Settings, iterations: usize, peers_dir: PathBuf) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("maestro-bench-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let server = {
        let (settings, dir) = (settings.clone(), dir.clone());
        let extra = ["--tenant-max-functions", "2000"];
        tokio::task::spawn_blocking(move || Server::start_exe(&std::env::current_exe()?, &settings, &dir, &extra, &[]))
            .await??
    };
    let tenant = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let token = crate::auth::Keys::new("bench").mint(&tenant, "bench@localhost", false, Duration::from_secs(7200))?;
    let maestro = Target {
        name: "Maestro",
        base: format!("{}/api/v1", server.addr),
        token: Some(token.clone()),
        webhook: None,
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    // The peers: each optional, each said when missing.
    let python = std::env::var("MAESTRO_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut children = vec![];
    let mut targets = vec![maestro.clone()];
    let starts: [(&'static str, PathBuf, Vec<&str>); 2] = [
        ("FastAPI exec()", PathBuf::from(&python), vec!["fastapi_peer.py"]),
        ("Pyodide in Node", PathBuf::from("node"), vec!["pyodide_peer.mjs"]),
    ];
    for (name, program, args) in starts {
        match start_peer(&program, &args, &peers_dir).await {
            Ok((child, url)) => {
                children.push(child);
                targets.push(Target {
                    name,
                    base: url,
                    token: None,
                    webhook: None,
                });
            }
            Err(e) => eprintln!("{name}: left out ({e}); see bench/peers/README.md"),
        }
    }

    eprintln!(
        "defining {} functions on {} targets ...",
        functions().len(),
        targets.len()
    );
    for t in &targets {
        for (name, code, isolation) in functions() {
            let mut req = client
                .post(format!("{}/functions", t.base))
                .json(&json!({"name": name, "code": code, "isolation": isolation}));
            if let Some(tok) = &t.token {
                req = req.bearer_auth(tok);
            }
            let r = req.send().await?;
            anyhow::ensure!(
                r.status().is_success(),
                "{}: defining {name}: {}",
                t.name,
                r.text().await?
            );
        }
    }
    let path = format!("bench-fibo-{tenant}");
    let r = client
        .post(format!("{}/webhooks", maestro.base))
        .bearer_auth(&token)
        .json(&json!({"path": path, "function_name": "fibo", "http_method": "POST", "input_mode": "body"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "webhook: {}", r.text().await?);
    let r = client
        .post(format!("{}/functions", maestro.base))
        .bearer_auth(&token)
        .json(&json!({"name": "data_fresh", "code": DATA, "isolation": "fresh"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "data_fresh: {}", r.text().await?);
    targets[0].webhook = Some(format!("{}/api/v1/h/{path}", server.addr));

    let works = [
        Work::Hello,
        Work::HelloFresh,
        Work::Fibo10Webhook,
        Work::Fibo25,
        Work::Chain3,
        Work::Chain16,
        Work::DataFresh,
        Work::RoundRobin(1),
        Work::RoundRobin(10),
        Work::RoundRobin(100),
        Work::RoundRobin(RR_MAX),
    ];
    // Warm up: every function once on every target (pools, caches, Pyodide's JIT-less paths).
    for t in &targets {
        for w in works {
            if matches!(w, Work::DataFresh) && t.name != maestro.name {
                continue;
            }
            let n = match w {
                Work::RoundRobin(n) => n,
                Work::Fibo25 | Work::DataFresh => 2,
                _ => 20,
            };
            measure(&client, t, w, n, 1).await?;
        }
    }
    eprintln!("measuring ...");
    const ROUNDS: usize = 3;
    let concs = [1usize, 16];
    let mut cells: std::collections::BTreeMap<(usize, usize, usize), Cell> = Default::default();
    for _ in 0..ROUNDS {
        for (wi, w) in works.iter().enumerate() {
            for (ci, conc) in concs.iter().enumerate() {
                for (ti, t) in targets.iter().enumerate() {
                    if matches!(w, Work::HelloFresh | Work::DataFresh) && ti != 0 {
                        continue; // only Maestro has another isolation
                    }
                    if matches!(w, Work::DataFresh) && *conc > 1 {
                        continue;
                    }
                    let n = match w {
                        Work::Fibo25 | Work::DataFresh => (iterations / 20).max(5),
                        Work::RoundRobin(k) => (iterations / ROUNDS).max(*k * 2 / ROUNDS).max(1),
                        _ => (iterations / ROUNDS).max(1),
                    };
                    let c = measure(&client, t, *w, n, *conc).await?;
                    let e = cells.entry((wi, ci, ti)).or_default();
                    e.ms.extend(c.ms);
                    e.wall += c.wall;
                    e.refused += c.refused;
                }
            }
        }
    }
    // The subprocess: hello and fibo(25), sequential.
    let py = python.clone();
    let sub = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let mut hello = vec![];
        let mut fibo = vec![];
        for _ in 0..20 {
            hello.push(subprocess_call(&py, HELLO, "hello", &json!({"name": "bench"}))?);
        }
        for _ in 0..5 {
            fibo.push(subprocess_call(&py, FIBO, "fibo", &json!({"n": 25}))?);
        }
        Ok((hello, fibo))
    })
    .await??;

    println!("| workload | clients | target | n | p50 ms | p99 ms | calls/s | 429s | p50 / FastAPI p50 |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (wi, w) in works.iter().enumerate() {
        for (ci, conc) in concs.iter().enumerate() {
            let fastapi = targets
                .iter()
                .position(|t| t.name == "FastAPI exec()")
                .and_then(|ti| cells.get(&(wi, ci, ti)))
                .map(|c| p50(&c.ms));
            for (ti, t) in targets.iter().enumerate() {
                let Some(c) = cells.get(&(wi, ci, ti)) else { continue };
                let p = p50(&c.ms);
                let ratio = fastapi.map_or("–".to_string(), |f| format!("{:.2}x", p / f));
                let mut sorted = c.ms.clone();
                sorted.sort_by(f64::total_cmp);
                println!(
                    "| {} | {conc} | {} | {} | {:.3} | {:.3} | {:.0} | {} | {ratio} |",
                    w.label(),
                    t.name,
                    c.ms.len(),
                    p,
                    percentile(&sorted, 0.99),
                    (c.ms.len() + c.refused) as f64 / c.wall.as_secs_f64(),
                    c.refused,
                );
            }
        }
    }
    println!(
        "| hello | 1 | python3 -c subprocess | {} | {:.3} | – | – | – | – |",
        sub.0.len(),
        p50(&sub.0)
    );
    println!(
        "| fibo(25) | 1 | python3 -c subprocess | {} | {:.3} | – | – | – | – |",
        sub.1.len(),
        p50(&sub.1)
    );
    println!(
        "\nfibo(10) via webhook, cited not measured (Windmill's published benchmark): 54 ms/job on \
         dedicated workers, 111 ms normal, AWS Lambda 73 ms."
    );
    drop(children);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn p50(ms: &[f64]) -> f64 {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}
