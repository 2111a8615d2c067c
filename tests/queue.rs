//! The durable queue: `?async=true` answers 202 only once the job is committed, any replica
//! runs it, a replica killed with SIGKILL loses nothing acknowledged (its jobs come back as
//! new attempts, or fail as interrupted with `on_interrupt: fail`), tenants take turns, and a
//! tenant's backlog is capped.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{remote, replica_with, start_with, Backend, Replica, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Sleeps a little so that a killed replica has jobs under way.
const WORK: &str = "import time\ndef work(input):\n    time.sleep(0.05)\n    return input['n']\n";
const FRAGILE: &str = "import time\ndef fragile(input):\n    time.sleep(0.05)\n    return input['n']\n";
/// One call in ten: a killed server almost surely has one of these under way.
const LONG: &str = "import time\ndef long(input):\n    time.sleep(0.5)\n    return input['n']\n";
const SLEEPY: &str = "import time\ndef sleepy(input):\n    time.sleep(input['s'])\n    return 'slept'\n";
const QUICK: &str = "def quick(input):\n    return {'n': input.get('n')}\n";

/// Poll an execution until it has ended.
async fn ended(app: &TestApp, id: &str) -> Value {
    common::ended_within(app, id, Duration::from_secs(60)).await
}

/// `?async=true`: the 202, the run, the checks made before queueing, and the backlog cap.
async fn async_invoke(b: Backend) {
    let app = start_with(b, &["--queue-workers", "1", "--queue-max-per-tenant", "3"]).await;
    app.create("quick", QUICK).await;
    app.create("sleepy", SLEEPY).await;
    let typed = QUICK.replace("def quick", "def typed");
    app.create_with(json!({"name": "typed", "code": typed,
        "input_schema": {"type": "object", "required": ["n"]}, "on_interrupt": "fail"}))
        .await;

    let resp = app
        .client
        .post(format!("{}/api/v1/functions/quick/invoke?async=true", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"n": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "queued", "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/executions/{id}"));
    assert_eq!(v["status_url"], json!(location));
    let e = ended(&app, &id).await;
    assert_eq!(
        (&e["status"], &e["output"]),
        (&json!("succeeded"), &json!({"n": 7})),
        "{e}"
    );
    assert_eq!((&e["trigger"], &e["attempt"]), (&json!("manual"), &json!(1)), "{e}");

    // What a sync call would refuse is refused before anything is queued.
    let (s, v) = app.post("/api/v1/functions/typed/invoke?async=true", json!({})).await;
    assert_eq!(s, app.post("/api/v1/functions/typed/invoke", json!({})).await.0, "{v}");
    assert!(s.is_client_error(), "{v}");
    let (s, v) = app.post("/api/v1/functions/ghost/invoke?async=true", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    for bad in ["async=maybe", "async=true&on_interrupt=later", "async=true&colour=red"] {
        let (s, v) = app
            .post(&format!("/api/v1/functions/quick/invoke?{bad}"), json!({}))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (_, list) = app.get("/api/v1/executions?total=true").await;
    assert_eq!(list["total"], 1, "nothing refused was recorded: {list}");

    // The function's on_interrupt is stored and shown; a bad one is refused.
    let (_, f) = app.get("/api/v1/functions/typed").await;
    assert_eq!(f["settings"]["on_interrupt"], "fail", "{f}");
    let (s, v) = app
        .post(
            "/api/v1/functions",
            json!({"name": "bad", "code": QUICK, "on_interrupt": "sometimes"}),
        )
        .await;
    assert!(s.is_client_error(), "{v}");

    // One worker busy with a long job, three waiting: the fourth is over the cap.
    let (s, first) = app
        .post("/api/v1/functions/sleepy/invoke?async=true", json!({"s": 3}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let first = first["execution_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    while app.get(&format!("/api/v1/executions/{first}")).await.1["status"] != "running" {
        assert!(t.elapsed() < Duration::from_secs(20), "the first job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut waiting = vec![];
    for _ in 0..3 {
        let (s, v) = app
            .post("/api/v1/functions/sleepy/invoke?async=true", json!({"s": 0}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        waiting.push(v["execution_id"].as_str().unwrap().to_string());
    }
    let (_, queued) = app.get("/api/v1/executions?status=queued&total=true").await;
    assert_eq!(queued["total"], 3, "{queued}");
    let metrics = app.get_text("/metrics").await;
    let depth = format!("maestro_queue_depth{{tenant=\"{}\"}} 3", app.tenant);
    assert!(metrics.contains(&depth), "{depth} in:\n{metrics}");
    assert!(metrics.contains("maestro_queue_claims_total "), "{metrics}");
    assert!(metrics.contains("maestro_queue_oldest_age_seconds "), "{metrics}");
    let resp = app
        .client
        .post(format!("{}/api/v1/functions/sleepy/invoke?async=true", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"s": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("queued"), "{v}");
    // The backlog drains in order, each run once.
    for id in waiting.iter().chain([&first]) {
        assert_eq!(ended(&app, id).await["status"], "succeeded");
    }
    let (_, all) = app.get("/api/v1/executions?function=sleepy&total=true").await;
    assert_eq!(all["total"], 4, "{all}");
    app.stop().await;
}

both_backends!(async_invoke);

/// Tenant A queues 10,000 jobs, then tenant B one: B's starts within a couple of job-times
/// (README, "The queue"), long before A's backlog is through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_take_turns() {
    let app = start_with(Backend::Sqlite, &["--queue-workers", "2"]).await;
    let other = app.token_for("b");
    let code = "import time\ndef slow(input):\n    time.sleep(0.02)\n    return input['n']\n";
    app.create("slow", code).await;
    let (s, v) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "quick", "code": QUICK})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, base, token, next) = (app.client.clone(), app.base.clone(), app.token.clone(), next.clone());
        clients.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= 10_000 {
                    return;
                }
                let r = client
                    .post(format!("{base}/api/v1/functions/slow/invoke?async=true"))
                    .bearer_auth(&token)
                    .json(&json!({"n": n}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let (_, backlog) = app.get("/api/v1/executions?status=queued&limit=1&total=true").await;
    let backlog = backlog["total"].as_i64().unwrap();
    assert!(backlog > 5_000, "the flood is still queued: {backlog}");

    let asked = Instant::now();
    let (s, v) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/functions/quick/invoke?async=true",
            Some(json!({"n": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution_id"].as_str().unwrap();
    loop {
        let (_, e) = app
            .call_as(&other, Method::GET, &format!("/api/v1/executions/{id}"), None)
            .await;
        if e["status"] == "succeeded" {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "B's job waits behind A's flood: {e}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, left) = app.get("/api/v1/executions?status=queued&limit=1&total=true").await;
    assert!(
        left["total"].as_i64().unwrap() > 4_000,
        "B went first, not last: {left}"
    );
    app.stop().await;
}

const LEASE_MS: i64 = common::LEASE_MS;
const POLL_MS: i64 = common::POLL_MS;

/// A replica whose tenants may use all its workers for queued jobs (counted across the
/// cluster, a tenant's cap would otherwise be half of one server's two workers).
fn replica(db: &str) -> Replica {
    replica_with(db, &["--tenant-max-concurrent-executions", "6"])
}

/// What the clients were told: input n -> the execution in the 202 (first attempt).
#[derive(Default)]
struct Acks {
    acked: Mutex<BTreeMap<u64, (String, String)>>,
    /// Inputs whose request failed (a killed server): their job may or may not exist.
    lost: Mutex<HashSet<u64>>,
}

/// Send `total` async calls from `clients` tasks over `bases` (round robin, moving on to the
/// next server when one does not answer); `fragile` every tenth, `long` every tenth (from 5).
/// `kill_at` acknowledgements in, `kill` runs once.
async fn flood(
    bases: Arc<Mutex<Vec<String>>>,
    token: &str,
    total: u64,
    clients: usize,
    kill_at: usize,
    kill: impl FnOnce() + Send + 'static,
) -> Arc<Acks> {
    // Server admin of the same tenant: reads /cluster to kill the victim with jobs in hand.
    let claims = maestro::auth::Keys::new(common::SECRET);
    let tenant = token_tenant(token);
    let admin = claims
        .mint(&tenant, "ops@example.com", true, Duration::from_secs(3600))
        .unwrap();
    let acks = Arc::new(Acks::default());
    let next = Arc::new(AtomicUsize::new(0));
    let kill = Arc::new(Mutex::new(Some(kill)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (bases, token, acks, next, kill) = (
            bases.clone(),
            token.to_string(),
            acks.clone(),
            next.clone(),
            kill.clone(),
        );
        let admin = admin.clone();
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as u64;
                if n >= total {
                    return;
                }
                let function = match n % 10 {
                    0 => "fragile",
                    5 => "long",
                    _ => "work",
                };
                for attempt in 0..6 {
                    let base = {
                        let b = bases.lock().unwrap();
                        b[(n as usize + attempt) % b.len()].clone()
                    };
                    let sent = client
                        .post(format!("{base}/api/v1/functions/{function}/invoke?async=true"))
                        .bearer_auth(&token)
                        .json(&json!({"n": n}))
                        .send()
                        .await;
                    let answer = match sent {
                        Ok(r) => (r.status(), r.json::<Value>().await.ok()),
                        Err(_) => {
                            acks.lost.lock().unwrap().insert(n);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    match answer {
                        (StatusCode::ACCEPTED, Some(v)) => {
                            assert_eq!(v["status"], "queued", "{v}");
                            let id = v["execution_id"].as_str().unwrap().to_string();
                            let count = {
                                let mut a = acks.acked.lock().unwrap();
                                a.insert(n, (function.to_string(), id));
                                a.len()
                            };
                            let k = if count >= kill_at {
                                kill.lock().unwrap().take()
                            } else {
                                None
                            };
                            if let Some(k) = k {
                                // Only once the victim runs a `long` job (on SQLite, a flood of
                                // enqueues can hold the claims off for a moment; a short job
                                // could end between the look and the kill).
                                let victim = bases.lock().unwrap()[0].clone();
                                let t = Instant::now();
                                while t.elapsed() < Duration::from_secs(120) {
                                    if runs_a_long_job(&client, &victim, &admin).await {
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                // It blocks (a restart waits for the new server): not on the runtime's threads.
                                tokio::task::block_in_place(k);
                            }
                            break;
                        }
                        (status, body) => {
                            // A reply that is not a 202 is an answer too: nothing may be owed.
                            acks.lost.lock().unwrap().insert(n);
                            assert!(status == StatusCode::SERVICE_UNAVAILABLE, "n={n}: {status} {body:?}");
                        }
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    acks
}

/// Whether the server at `base` runs a job of `long` now (by its own line in /cluster).
async fn runs_a_long_job(client: &reqwest::Client, base: &str, admin: &str) -> bool {
    let get = |path: String| async move {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(admin)
            .send()
            .await
            .ok()?;
        r.json::<Value>().await.ok()
    };
    let Some(v) = get("/cluster".into()).await else {
        return false;
    };
    let held: Vec<String> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["id"] == v["node_id"])
        .flat_map(|n| n["executions"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    for id in held {
        if let Some(e) = get(format!("/api/v1/executions/{id}")).await {
            if e["function_name"] == "long" && e["status"] == "running" {
                return true;
            }
        }
    }
    false
}

/// The tenant a test token names (its `tenant` claim).
fn token_tenant(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["tenant"].as_str().expect("a tenant claim").to_string()
}

/// Wait until nothing of the tenant is queued or running (or fail after `limit`).
async fn settled(app: &TestApp, limit: Duration) {
    let t = Instant::now();
    loop {
        let (_, q) = app.get("/api/v1/executions?status=queued&limit=1&total=true").await;
        let (_, r) = app.get("/api/v1/executions?status=running&limit=1&total=true").await;
        if q["total"] == 0 && r["total"] == 0 {
            return;
        }
        assert!(
            t.elapsed() < limit,
            "still {} queued and {} running",
            q["total"],
            r["total"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every execution of the tenant.
async fn all_executions(app: &TestApp) -> Vec<Value> {
    let mut all = vec![];
    loop {
        let (s, page) = app
            .get(&format!("/api/v1/executions?limit=500&offset={}&total=true", all.len()))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let rows = page["executions"].as_array().unwrap().clone();
        if rows.is_empty() {
            return all;
        }
        all.extend(rows);
    }
}

fn millis(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// The acceptance rules: every acknowledged job ended exactly once (`work`: succeeded,
/// perhaps after interrupted attempts; `fragile`: succeeded, or failed / interrupted with
/// no re-run); no other run exists but those of requests whose answer was lost; the killed
/// server's runs were closed within a lease and a poll of the kill. Answers how many
/// attempts were interrupted.
fn check_outcome(acks: &Acks, executions: &[Value], killed_at_ms: i64) -> usize {
    let by_id: HashMap<&str, &Value> = executions.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();
    let mut chains: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in executions {
        let first = e["retry_of"].as_str().unwrap_or(e["id"].as_str().unwrap());
        chains.entry(first.to_string()).or_default().push(e);
    }
    let acked = acks.acked.lock().unwrap();
    let lost = acks.lost.lock().unwrap();
    let mut interrupted = 0;
    let mut seen = HashSet::new();
    for (first, chain) in chains.iter_mut() {
        chain.sort_by_key(|e| e["attempt"].as_i64().unwrap());
        let head = by_id
            .get(first.as_str())
            .unwrap_or_else(|| panic!("chain {first} has no first attempt"));
        let n = head["input"]["n"].as_u64().unwrap();
        let function = head["function_name"].as_str().unwrap();
        match acked.get(&n) {
            Some((_, id)) if id == first => {
                seen.insert(n);
            }
            _ => assert!(lost.contains(&n), "a run nobody was told about: {head}"),
        }
        for (i, e) in chain.iter().enumerate() {
            assert_eq!(e["attempt"], json!(i + 1), "attempts are numbered in order: {chain:?}");
        }
        let (last, before) = chain.split_last().unwrap();
        for e in before {
            assert_eq!(
                (&e["status"], &e["error"]["kind"]),
                (&json!("failed"), &json!("interrupted")),
                "{e}"
            );
        }
        interrupted += before.len();
        let closed_in_time = |e: &Value| {
            let late = millis(&e["finished_at"]) - killed_at_ms;
            assert!(
                late <= LEASE_MS + POLL_MS + 1_500,
                "closed {late} ms after the kill: {e}"
            );
        };
        before.iter().for_each(|e| closed_in_time(e));
        if last["status"] == "succeeded" {
            assert_eq!(last["output"], json!(n), "{last}");
        } else {
            assert_eq!(function, "fragile", "a retried job ends succeeded: {chain:?}");
            assert_eq!(chain.len(), 1, "on_interrupt: fail is not re-run: {chain:?}");
            assert_eq!(last["error"]["kind"], "interrupted", "{last}");
            closed_in_time(last);
            interrupted += 1;
        }
    }
    for n in acked.keys() {
        assert!(seen.contains(n), "acknowledged job n={n} has no run");
    }
    interrupted
}

/// Three replicas on one PostgreSQL database, 1,000 async calls from 64 clients, one
/// replica killed with SIGKILL a third of the way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_a_kill_on_postgres() {
    let db = common::fresh_postgres("queue").await;
    let mut replicas: Vec<Replica> = (0..3).map(|_| replica(&db)).collect();
    let (tenant, token) = common::fresh_tenant(false);
    let app = remote(&replicas[1].base, &token);
    app.create("work", WORK).await;
    app.create("long", LONG).await;
    app.create_with(json!({"name": "fragile", "code": FRAGILE, "on_interrupt": "fail"}))
        .await;

    let admin = maestro::auth::Keys::new(common::SECRET)
        .mint(&tenant, "ops@example.com", true, Duration::from_secs(3600))
        .unwrap();
    let (s, _) = app.get("/cluster").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "/cluster is for admins");
    let nodes = |app: &TestApp| {
        let app = remote(&app.base, &admin);
        async move {
            let (s, v) = app.get("/cluster").await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["nodes"].as_array().unwrap().clone()
        }
    };
    let t = Instant::now();
    while nodes(&app).await.len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", nodes(&app).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bases = Arc::new(Mutex::new(replicas.iter().map(|r| r.base.clone()).collect::<Vec<_>>()));
    let mut victim = replicas.remove(0);
    let killed_at = Arc::new(Mutex::new(0i64));
    let (k, b) = (killed_at.clone(), bases.clone());
    let pid = victim.child.id();
    let acks = flood(bases.clone(), &token, 1_000, 64, 350, move || {
        // SIGKILL: no drain, no goodbye.
        unsafe_kill(pid);
        *k.lock().unwrap() = chrono::Utc::now().timestamp_millis();
        b.lock().unwrap().remove(0);
    })
    .await;
    victim.child.wait().unwrap();
    settled(&app, Duration::from_secs(120)).await;
    let executions = all_executions(&app).await;
    let interrupted = check_outcome(&acks, &executions, *killed_at.lock().unwrap());
    assert!(interrupted >= 1, "the killed replica had jobs under way");
    assert!(
        acks.acked.lock().unwrap().len() >= 990,
        "nearly every call was acknowledged"
    );
    // The dead replica drops out of /cluster within three leases; the others hold nothing now.
    let t = Instant::now();
    loop {
        let live = nodes(&app).await;
        if live.len() == 2 {
            assert!(live.iter().all(|n| n["jobs_held"] == 0), "{live:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3 * LEASE_MS as u64 / 1000 + 5),
            "{live:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut r in replicas {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
    common::drop_postgres(&db).await;
}

/// The same on the embedded SQLite default: one server killed and started again on the
/// same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/maestro.db?mode=rwc", dir.path().display());
    let first = replica(&db);
    let (_, token) = common::fresh_tenant(false);
    let app = remote(&first.base, &token);
    app.create("work", WORK).await;
    app.create("long", LONG).await;
    app.create_with(json!({"name": "fragile", "code": FRAGILE, "on_interrupt": "fail"}))
        .await;
    let bases = Arc::new(Mutex::new(vec![first.base.clone()]));
    let killed_at = Arc::new(Mutex::new(0i64));
    let restarted: Arc<Mutex<Option<Replica>>> = Arc::default();
    let (k, b, r) = (killed_at.clone(), bases.clone(), restarted.clone());
    let pid = first.child.id();
    let db2 = db.clone();
    let acks = flood(bases.clone(), &token, 300, 16, 100, move || {
        unsafe_kill(pid);
        *k.lock().unwrap() = chrono::Utc::now().timestamp_millis();
        std::thread::sleep(Duration::from_millis(200));
        let again = replica(&db2);
        *b.lock().unwrap() = vec![again.base.clone()];
        *r.lock().unwrap() = Some(again);
    })
    .await;
    let mut first = first;
    first.child.wait().unwrap();
    let mut again = restarted.lock().unwrap().take().expect("the server was restarted");
    let app = remote(&again.base, &token);
    settled(&app, Duration::from_secs(120)).await;
    let executions = all_executions(&app).await;
    let interrupted = check_outcome(&acks, &executions, *killed_at.lock().unwrap());
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for e in &executions {
        *by_status
            .entry(format!("{} {}", e["status"], e["attempt"]))
            .or_default() += 1;
    }
    assert!(
        interrupted >= 1,
        "the killed server had jobs under way: {by_status:?}, {} acked",
        acks.acked.lock().unwrap().len()
    );
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}

/// SIGKILL a process by id.
fn unsafe_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A tenant's `max_concurrent_executions` bounds its queued jobs across the cluster: three
/// replicas with a cap of 2 run about 2 at once, not 2 each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_counted_across_replicas() {
    let db = common::fresh_postgres("queue").await;
    let replicas: Vec<Replica> = (0..3)
        .map(|_| replica_with(&db, &["--tenant-max-concurrent-executions", "2"]))
        .collect();
    let (_, token) = common::fresh_tenant(false);
    let apps: Vec<TestApp> = replicas.iter().map(|r| remote(&r.base, &token)).collect();
    apps[0].create("sleepy", SLEEPY).await;
    let mut ids = vec![];
    // All queued through one replica (only it is woken at once; the others find the jobs by
    // polling), so claims rarely race: counted per server, the three would still run 6.
    for _ in 0..18 {
        let (s, v) = apps[0]
            .post("/api/v1/functions/sleepy/invoke?async=true", json!({"s": 0.3}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["execution_id"].as_str().unwrap().to_string());
    }
    let mut most = 0;
    let t = Instant::now();
    loop {
        let (_, running) = apps[0]
            .get("/api/v1/executions?status=running&limit=1&total=true")
            .await;
        let (_, queued) = apps[0].get("/api/v1/executions?status=queued&limit=1&total=true").await;
        let running = running["total"].as_i64().unwrap();
        most = most.max(running);
        if running == 0 && queued["total"] == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the jobs did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Counted per server, three replicas would run 6 at once; a claim that lost a race shows
    // as running for the moment before it is given back.
    assert!(most <= 3, "{most} of the tenant's jobs ran at once");
    assert!(most >= 1);
    for id in &ids {
        assert_eq!(ended(&apps[0], id).await["status"], "succeeded");
    }
    for mut r in replicas {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
    common::drop_postgres(&db).await;
}

/// With Redis, a tenant's `invocations_per_second` holds for the cluster: two replicas with
/// a rate of 2 (burst 2) let about 2 + 2/s calls through together, where each would let
/// its own 2 + 2/s through; a third replica whose Redis does not answer counts for itself
/// and answers every call (200 or 429, never an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_is_counted_across_replicas_with_redis() {
    let db = common::fresh_postgres("queue").await;
    let redis = std::env::var("REDIS_URL_TEST").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rate = [
        "--tenant-invocations-per-second",
        "2",
        "--tenant-max-concurrent-executions",
        "8",
    ];
    let with = |redis: &str| {
        let mut flags = rate.to_vec();
        flags.extend(["--redis-url", redis]);
        replica_with(&db, &flags)
    };
    let replicas = [with(&redis), with(&redis), with("redis://127.0.0.1:1")];
    let (_, token) = common::fresh_tenant(false);
    let apps: Vec<TestApp> = replicas.iter().map(|r| remote(&r.base, &token)).collect();
    apps[0].create("quick", QUICK).await;

    let t = Instant::now();
    let mut ok = [0usize; 2];
    for i in 0..40 {
        let (s, v) = apps[i % 2].invoke("quick", json!({"n": i})).await;
        match s {
            StatusCode::OK => ok[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => assert!(v["error"]["message"].as_str().unwrap().contains("rate"), "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    let allowed = 2.0 + 2.0 * t.elapsed().as_secs_f64() + 1.0;
    let total = ok[0] + ok[1];
    assert!(
        total as f64 <= allowed,
        "{total} calls passed on two replicas ({ok:?}); the shared bucket allows {allowed:.1}"
    );
    assert!(total >= 2, "the burst passes: {ok:?}");
    assert!(ok[0] >= 1 && ok[1] >= 1, "both replicas take from the bucket: {ok:?}");

    // Redis unreachable: the replica's own bucket, no errors.
    let mut answered = (0, 0);
    for i in 0..12 {
        let (s, v) = apps[2].invoke("quick", json!({"n": i})).await;
        match s {
            StatusCode::OK => answered.0 += 1,
            StatusCode::TOO_MANY_REQUESTS => answered.1 += 1,
            other => panic!("{other}: {v}"),
        }
    }
    assert!(answered.0 >= 2 && answered.1 >= 1, "its own bucket: {answered:?}");
    for mut r in replicas {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
    common::drop_postgres(&db).await;
}
