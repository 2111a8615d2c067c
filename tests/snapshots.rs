//! Per-function snapshots, on the real sandbox: a function's module code runs once, and later
//! instances of it (fresh calls, warm-pool misses) start from the memory saved right after,
//! with nothing of any call in it.

mod common;

use common::{start_with, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `maestro_sandbox_snapshots_total{event="…"}` now.
async fn snapshots(app: &TestApp, event: &str) -> f64 {
    let text = app.get_text("/metrics").await;
    let series = format!("maestro_sandbox_snapshots_total{{event=\"{event}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series}in /metrics:\n{text}"))
}

async fn output(app: &TestApp, name: &str, input: Value) -> Value {
    let (s, v) = app.invoke(name, input).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    v["output"].clone()
}

/// Module code that is slow to run (a loop standing in for imports) and keeps state: a fresh
/// call starts from after the module code, sees none of an earlier call's input or prints,
/// and gets random numbers of its own; the module code ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_calls_start_after_the_module_code() {
    let app = start_with(Backend::Sqlite, &["--fresh-spares", "1"]).await;
    let code = "import random\n\
        built = sum(range(200000))\n\
        token = random.random()\n\
        last = None\n\
        def remember(input):\n    \
            global last\n    \
            seen, last = last, input\n    \
            print('saw', input)\n    \
            return {'built': built, 'seen': seen, 'token': token, 'draw': random.random()}\n";
    app.create_with(json!({"name": "remember", "code": code, "isolation": "fresh"}))
        .await;
    let before = snapshots(&app, "built").await;
    let mut draws = Vec::new();
    for i in 0..4 {
        let (s, v) = app.invoke("remember", json!({"secret": i})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let out = &v["output"];
        assert_eq!(out["built"], 19999900000u64, "{v}");
        // No call's input survives into the next one.
        assert_eq!(out["seen"], Value::Null, "call {i} saw an earlier input: {v}");
        let id = v["execution_id"].as_str().expect("an execution id");
        let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
        assert_eq!(logs["logs"][0]["text"], format!("saw {{'secret': {i}}}\n"), "{logs}");
        draws.push(out["draw"].as_f64().expect("a draw"));
        // The module's own value is the snapshot's: the module code ran once.
        assert_eq!(out["token"], output(&app, "remember", json!({})).await["token"]);
    }
    // The next instance was started from the snapshot ahead of the next call.
    let ready = "maestro_sandbox_instances{kind=\"fresh_ready\"} 1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.get_text("/metrics").await.lines().any(|l| l == ready) {
        assert!(
            std::time::Instant::now() < deadline,
            "no ready instance of the fresh function"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    draws.sort_by(f64::total_cmp);
    draws.dedup();
    assert_eq!(
        draws.len(),
        4,
        "instances from one snapshot drew the same numbers: {draws:?}"
    );
    assert_eq!(snapshots(&app, "built").await - before, 1.0, "the module code ran once");
    assert!(snapshots(&app, "restored").await >= 7.0);

    // A new version runs its own module code, not the old snapshot.
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/functions/remember",
            Some(json!({"code": "built = 'v2'\ndef remember(input):\n    return {'built': built}\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The change dropped the old version's snapshot at once.
    assert!(app
        .get_text("/metrics")
        .await
        .lines()
        .any(|l| l == "maestro_sandbox_snapshots 0"));
    assert_eq!(output(&app, "remember", json!({})).await["built"], "v2");
    assert_eq!(output(&app, "remember", json!({})).await["built"], "v2");
    app.stop().await;
}

/// Module code that fails is the call's error every time (no snapshot of a failure), and a
/// tenant's snapshot is never another's: the same code under two tenants is built twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_tenants_are_kept_apart() {
    let app = start_with(Backend::Sqlite, &[]).await;
    app.create_with(json!({"name": "broken", "code": "raise ValueError('at import')\ndef broken(input):\n    return 1\n", "isolation": "fresh"}))
        .await;
    for _ in 0..2 {
        let (_, v) = app.invoke("broken", json!({})).await;
        assert_eq!(v["status"], "failed", "{v}");
        assert_eq!(v["error"]["type"], "ValueError", "{v}");
        assert!(
            v["error"]["traceback"].as_str().unwrap_or("").contains("at import"),
            "{v}"
        );
    }
    assert_eq!(snapshots(&app, "built").await, 0.0);

    // The same function name and version under two tenants, each module with its own value.
    let other = app.token_for("other");
    let tenants = [("one", &app.token), ("two", &other)];
    for (who, token) in tenants {
        let code = format!(
            "who = '{who}'\nstate = []\ndef mine(input):\n    state.append(input['v'])\n    return [who, state]\n"
        );
        let body = json!({"name": "mine", "code": code, "isolation": "fresh"});
        let (s, v) = app
            .call_as(token, reqwest::Method::POST, "/api/v1/functions", Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for i in 0..4 {
        let (who, token) = tenants[i % 2];
        let url = "/api/v1/functions/mine/invoke";
        let (s, v) = app
            .call_as(token, reqwest::Method::POST, url, Some(json!({"v": i})))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["output"], json!([who, [i]]), "{v}");
    }
    assert_eq!(snapshots(&app, "built").await, 2.0, "one snapshot per tenant");
    app.stop().await;
}

/// Module code that asks the host for something of the call (its context here; a secret, a
/// nested call or HTTP alike) or leaves a file open is not snapshot: it runs again in each new
/// instance and sees its own call. A module that seeds `random` itself keeps its sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_state_is_never_frozen() {
    let app = start_with(Backend::Sqlite, &[]).await;
    let fresh = |name: &str, code: &str| json!({"name": name, "code": code, "isolation": "fresh"});
    app.create_with(fresh(
        "ctx",
        "import maestro\nfirst = maestro.context.execution_id\ndef ctx(input):\n    return first\n",
    ))
    .await;
    app.create_with(fresh(
        "opened",
        "held = open('/usr/local/lib/python315.zip', 'rb')\ndef opened(input):\n    return len(held.read(4))\n",
    ))
    .await;
    app.create_with(fresh(
        "seeded",
        "import random\nrandom.seed(42)\ndef seeded(input):\n    return random.random()\n",
    ))
    .await;
    for _ in 0..3 {
        let (s, v) = app.invoke("ctx", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["execution_id"].is_string(), "{v}");
        assert_eq!(
            v["output"], v["execution_id"],
            "module code saw another call's context: {v}"
        );
        assert_eq!(output(&app, "opened", json!({})).await, 4);
    }
    assert_eq!(
        snapshots(&app, "built").await,
        0.0,
        "a module that used the host was snapshot"
    );
    let first = output(&app, "seeded", json!({})).await;
    for _ in 0..3 {
        assert_eq!(
            output(&app, "seeded", json!({})).await,
            first,
            "an explicit seed was overridden"
        );
    }
    // `seed()` with no value asks for fresh numbers: instances still draw their own.
    app.create_with(fresh(
        "unseeded",
        "import random\nrandom.seed()\ndef unseeded(input):\n    return random.random()\n",
    ))
    .await;
    let mut draws = Vec::new();
    for _ in 0..4 {
        draws.push(output(&app, "unseeded", json!({})).await.as_f64().expect("a draw"));
    }
    draws.sort_by(f64::total_cmp);
    draws.dedup();
    assert_eq!(draws.len(), 4, "seed() froze the draws: {draws:?}");
    assert_eq!(snapshots(&app, "built").await, 2.0);
    app.stop().await;
}

/// Past the disk budget the least recently used snapshots go, and their functions still
/// answer (their module code runs again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_budget_holds() {
    let app = start_with(Backend::Sqlite, &["--snapshot-disk-mb", "1", "--warm-total", "0"]).await;
    // Each module holds ~100 KiB of its own data, its snapshot ~650 KiB: one fills the budget.
    for i in 0..4 {
        let name = format!("big_{i}");
        let code = format!("blob = bytes(range(256)) * 400 + b'{i}'\ndef {name}(input):\n    return len(blob) + {i}\n");
        app.create(&name, &code).await;
    }
    for round in 0..2 {
        for i in 0..4 {
            assert_eq!(
                output(&app, &format!("big_{i}"), json!({})).await,
                102401 + i,
                "round {round}"
            );
        }
    }
    assert!(snapshots(&app, "evicted").await >= 2.0);
    let text = app.get_text("/metrics").await;
    let bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("maestro_sandbox_snapshot_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("snapshot bytes");
    assert!(bytes > 0.0 && bytes <= (1 << 20) as f64, "{bytes}");
    app.stop().await;
}
