//! The sandbox over HTTP: typed errors, hostile code, calls between functions, tracking.

mod common;

use common::{start, start_with, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn error_of(app: &common::TestApp, name: &str, code: &str, input: Value) -> Value {
    app.create(name, code).await;
    let (s, v) = app.invoke(name, input).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "failed", "{name} should fail: {v}");
    v["error"].clone()
}

/// Hostile code is contained, each with the right error, and the server keeps serving.
async fn hostile_code(b: Backend) {
    let app = start_with(b, &["--function-timeout", "2", "--function-memory-mb", "128"]).await;
    app.create("ok", "def ok(input):\n    return 'still here'\n").await;
    let cases: &[(&str, &str, &str)] = &[
        ("spin", "def spin(input):\n    while True: pass\n", "timeout"),
        (
            "sleepy",
            "import time\ndef sleepy(input):\n    time.sleep(60)\n",
            "timeout",
        ),
        (
            "hog",
            "def hog(input):\n    return len(bytearray(1024**3))\n",
            "memory_limit",
        ),
        (
            "hog4",
            "def hog4(input):\n    return len(bytearray(4 * 1024**3))\n",
            "python_exception",
        ),
        (
            "hog2",
            "def hog2(input):\n    x = []\n    while True: x.append(' ' * 10**6)\n",
            "memory_limit",
        ),
        (
            "deep",
            "def deep(input):\n    def r(n): return r(n + 1)\n    return r(0)\n",
            "python_exception",
        ),
        (
            "passwd",
            "def passwd(input):\n    return open('/etc/passwd').read()\n",
            "python_exception",
        ),
        (
            "listing",
            "import os\ndef listing(input):\n    return os.listdir('/')\n",
            "ok:",
        ),
        (
            "envs",
            "import os\ndef envs(input):\n    return dict(os.environ)\n",
            "ok:",
        ),
        (
            "sock",
            "import socket\ndef sock(input):\n    s = socket.socket()\n    s.connect(('127.0.0.1', 5432))\n",
            "python_exception",
        ),
        (
            "writer",
            "def writer(input):\n    open('/tmp/x', 'w').write('x')\n",
            "python_exception",
        ),
        (
            "writer2",
            "def writer2(input):\n    open('/usr/local/lib/x', 'w').write('x')\n",
            "python_exception",
        ),
        (
            "chatty",
            "def chatty(input):\n    s = 'x' * 1000\n    for _ in range(100_000): print(s)\n    return 1\n",
            "ok:",
        ),
        ("quitter", "import os\ndef quitter(input):\n    os._exit(3)\n", "crash"),
        (
            "exiter",
            "import sys\ndef exiter(input):\n    sys.exit(2)\n",
            "python_exception",
        ),
        (
            "not_json",
            "def not_json(input):\n    return {1, 2}\n",
            "invalid_output",
        ),
        ("nan", "def nan(input):\n    return float('nan')\n", "invalid_output"),
        // Lone surrogates cannot travel as JSON to the host: the value is an invalid output,
        // and in printed text or an error message they become '?' rather than losing the
        // whole report.
        (
            "surrogate_out",
            "def surrogate_out(input):\n    return 'a\\ud800'\n",
            "invalid_output",
        ),
        (
            "surrogate_err",
            "def surrogate_err(input):\n    print('\\ud800')\n    raise ValueError('bad \\udc00')\n",
            "python_exception",
        ),
    ];
    for (name, code, expect) in cases {
        app.create(name, code).await;
        let (s, v) = app.invoke(name, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{name}: {v}");
        if let Some(rest) = expect.strip_prefix("ok:") {
            assert_eq!(v["status"], "succeeded", "{name}: {v}");
            let out = v["output"].to_string();
            assert!(out.contains(rest), "{name}: {v}");
            match *name {
                // The guest sees an empty root: no host files.
                "listing" => assert!(
                    v["output"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|e| ["usr", "tmp"].contains(&e.as_str().unwrap())),
                    "{v}"
                ),
                // Only the variables we hand it, never the server's.
                "envs" => {
                    let keys: Vec<&String> = v["output"].as_object().unwrap().keys().collect();
                    assert!(
                        keys.iter()
                            .all(|k| ["TMPDIR", "PYTHONTZPATH", "HOME", "MPLCONFIGDIR", "MPLBACKEND"]
                                .contains(&k.as_str())),
                        "{v}"
                    );
                }
                _ => {}
            }
        } else {
            assert_eq!(v["status"], "failed", "{name}: {v}");
            let kind = v["error"]["kind"].as_str().unwrap();
            assert!(
                expect.split('|').any(|k| k == kind),
                "{name}: expected {expect}, got {v}"
            );
        }
        // And the server still serves.
        let (_, ok) = app.invoke("ok", json!({})).await;
        assert_eq!(ok["output"], "still here", "after {name}");
    }
    // stdout of the chatty function was capped, not kept whole.
    let (_, list) = app.get("/api/v1/executions?function=chatty&total=true").await;
    let id = list["executions"][0]["id"].as_str().unwrap().to_string();
    let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
    let text = logs["logs"][0]["text"].as_str().unwrap();
    assert!(text.len() <= 1024 * 1024 + 200, "stdout kept {} bytes", text.len());
    assert!(text.contains("more bytes dropped"));
    app.stop().await;
}

async fn fuel_and_per_function_limits(b: Backend) {
    let app = start_with(b, &["--function-timeout", "3"]).await;
    // With the default settings there is no fuel budget: CPU-bound work runs until its
    // deadline and ends as a timeout, however much fuel it burns.
    app.create(
        "spin_long",
        "def spin_long(input):\n    n = 0\n    while True: n += 1\n",
    )
    .await;
    let started = std::time::Instant::now();
    let (_, v) = app.invoke("spin_long", json!({})).await;
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    assert!(started.elapsed().as_secs_f64() >= 2.9, "ran {:?}", started.elapsed());
    assert!(v["fuel_used"].as_u64().unwrap() > 10_000_000_000, "{v}");
    app.create_with(
        json!({"name": "burn", "code": "def burn(input):\n    n = 0\n    while True: n += 1\n", "fuel": 50_000_000}),
    )
    .await;
    let (_, v) = app.invoke("burn", json!({})).await;
    assert_eq!(v["error"]["kind"], "out_of_fuel", "{v}");
    assert!(v["fuel_used"].as_u64().unwrap() >= 49_000_000, "{v}");
    app.create_with(
        json!({"name": "slow", "code": "def slow(input):\n    while True: pass\n", "timeout_seconds": 0.5}),
    )
    .await;
    let started = std::time::Instant::now();
    let (_, v) = app.invoke("slow", json!({})).await;
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    assert!(started.elapsed().as_secs_f64() < 5.0);
    app.stop().await;
}

async fn python_errors_and_output_validation(b: Backend) {
    let app = start(b).await;
    let e = error_of(
        &app,
        "boom",
        "def boom(input):\n    x = 1\n    raise ValueError('bad value: ' + str(input['n']))\n",
        json!({"n": 3}),
    )
    .await;
    assert_eq!(e["kind"], "python_exception");
    assert_eq!(e["type"], "ValueError");
    assert_eq!(e["message"], "bad value: 3");
    let tb = e["traceback"].as_str().unwrap();
    assert!(tb.contains("boom.py\", line 3, in boom"), "{tb}");
    assert!(tb.contains("raise ValueError"), "traceback shows the source line: {tb}");
    assert!(!tb.contains("_mx_"), "no prelude frames: {tb}");

    // Chained exceptions read as Python prints them; deep recursion is collapsed.
    let e = error_of(
        &app,
        "chained",
        "def chained(input):\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n        raise KeyError('k') from e\n",
        json!({}),
    )
    .await;
    let tb = e["traceback"].as_str().unwrap();
    let (first, second) = tb
        .split_once("The above exception was the direct cause")
        .expect("chain shown");
    assert!(first.contains("ZeroDivisionError: division by zero"), "{tb}");
    assert!(second.contains("KeyError: 'k'"), "{tb}");
    let e = error_of(
        &app,
        "spiral",
        "def spiral(input):\n    def r(n):\n        return r(n + 1)\n    return r(0)\n",
        json!({}),
    )
    .await;
    assert_eq!(e["type"], "RecursionError");
    assert!(e["traceback"].as_str().unwrap().contains("more times]"), "{e}");
    assert!(e["traceback"].as_str().unwrap().len() < 2000, "{e}");

    app.create_with(
        json!({"name": "liar", "code": "def liar(input):\n    return {'n': 'not a number'}\n",
        "output_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}),
    )
    .await;
    let (s, v) = app.invoke("liar", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "output_validation", "{v}");
    assert!(v["error"]["errors"][0]["path"].as_str().unwrap().contains("n"), "{v}");
    app.stop().await;
}

/// A two-function chain by bare name, tracked as an execution with a step tree.
async fn calls_between_functions(b: Backend) {
    let app = start(b).await;
    app.create_with(json!({"name": "validate_customer",
        "code": "def validate_customer(input):\n    print('checking', input['customer_id'])\n    return {'is_valid': input['customer_id'].startswith('C')}\n",
        "input_schema": {"type": "object", "required": ["customer_id"]},
        "output_schema": {"type": "object", "required": ["is_valid"]}})).await;
    app.create(
        "process",
        concat!(
            "def process(input):\n",
            "    print('start')\n",
            "    v = validate_customer({'customer_id': input['id']})\n",
            "    try:\n",
            "        validate_customer({'wrong': 1})\n",
            "    except maestro.CallError as e:\n",
            "        caught = e.error['kind']\n",
            "    try:\n",
            "        not_a_function_anywhere({})\n",
            "    except NameError as e:\n",
            "        missing = 'NameError'\n",
            "    return {'valid': v['is_valid'], 'caught': caught, 'missing': missing}\n",
        ),
    )
    .await;
    // maestro is importable without an import statement? No: it must be imported.
    let (_, v) = app.invoke("process", json!({"id": "C42"})).await;
    assert_eq!(v["status"], "failed", "maestro needs importing: {v}");
    assert_eq!(v["error"]["type"], "NameError");

    let code = format!(
        "import maestro\n{}",
        app.get("/api/v1/functions/process").await.1["code"].as_str().unwrap()
    );
    let (s, _) = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/functions/process",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = app.invoke("process", json!({"id": "C42"})).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        v["output"],
        json!({"valid": true, "caught": "input_validation", "missing": "NameError"})
    );

    let id = v["execution_id"].as_str().unwrap();
    let (_, ex) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(ex["status"], "succeeded");
    assert_eq!(ex["trigger"], "manual");
    assert_eq!(ex["function_name"], "process");
    assert_eq!(ex["input"], json!({"id": "C42"}));
    let (_, steps) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    let steps = steps["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0]["function_name"], "process");
    assert_eq!(steps[0]["depth"], 0);
    assert_eq!(steps[1]["function_name"], "validate_customer");
    assert_eq!(steps[1]["depth"], 1);
    assert_eq!(steps[1]["parent_id"], steps[0]["id"]);
    assert_eq!(steps[1]["output"], json!({"is_valid": true}));
    assert_eq!(steps[2]["status"], "failed");
    assert_eq!(steps[2]["error"]["kind"], "input_validation");
    // The root's fuel includes what its callees used.
    let root_fuel = steps[0]["fuel_used"].as_u64().unwrap();
    assert!(root_fuel > steps[1]["fuel_used"].as_u64().unwrap());
    let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs[0]["text"], "start\n");
    assert_eq!(logs[1]["function_name"], "validate_customer");
    assert_eq!(logs[1]["text"], "checking C42\n");
    app.stop().await;
}

/// Calling back and forth forever hits the depth limit; a chain of exactly the limit works.
/// (A function calling itself by its own name is plain Python recursion inside one sandbox,
/// stopped by RecursionError; `ping`/`pong` and `maestro.call` go through the host.)
async fn depth_limit(b: Backend) {
    let app = start(b).await;
    app.create("ping", "def ping(input):\n    return pong({'n': input['n'] + 1})\n")
        .await;
    app.create("pong", "def pong(input):\n    return ping({'n': input['n'] + 1})\n")
        .await;
    let (_, v) = app.invoke("ping", json!({"n": 0})).await;
    assert_eq!(v["status"], "failed");
    let text = v["error"].to_string();
    assert!(text.contains("depth_limit"), "{v}");
    assert!(text.contains("the limit is 16"), "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let (_, steps) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    let steps = steps["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 17, "the root and 16 nested calls");
    let max_depth = steps.iter().map(|s| s["depth"].as_i64().unwrap()).max().unwrap();
    assert_eq!(max_depth, 16);
    // Each step's parent is the step one level up.
    for w in steps.windows(2) {
        assert_eq!(w[1]["parent_id"], w[0]["id"]);
    }

    // A chain exactly 16 deep, each level a real sandbox on the same native stack, finishes.
    app.create("chain", "import maestro\ndef chain(input):\n    n = input['n']\n    return n if n == 0 else maestro.call('chain', {'n': n - 1}) + 1\n").await;
    let (_, v) = app.invoke("chain", json!({"n": 16})).await;
    assert_eq!(v["output"], 16, "{v}");
    let (_, v) = app.invoke("chain", json!({"n": 17})).await;
    assert_eq!(v["status"], "failed", "{v}");
    app.stop().await;
}

/// A function cannot reach another tenant's function by name.
async fn no_cross_tenant_calls(b: Backend) {
    let app = start(b).await;
    let other = app.token_for("other");
    let (s, _) = app
        .call_as(
            &other,
            reqwest::Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "their_secret", "code": "def their_secret(input):\n    return 'leak'\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.create("snoop", "import maestro\ndef snoop(input):\n    try:\n        return their_secret({})\n    except NameError:\n        pass\n    try:\n        return maestro.call('their_secret', {})\n    except maestro.CallError as e:\n        return e.error['kind']\n").await;
    let (_, v) = app.invoke("snoop", json!({})).await;
    assert_eq!(v["output"], "not_found", "{v}");
    app.stop().await;
}

/// Warm instances keep module state between calls of one function; fresh ones never do.
async fn isolation_modes(b: Backend) {
    let app = start(b).await;
    let counter = "state = {'n': 0}\ndef NAME(input):\n    state['n'] += 1\n    return state['n']\n";
    app.create_with(
        json!({"name": "warm_counter", "code": counter.replace("NAME", "warm_counter"), "isolation": "warm"}),
    )
    .await;
    app.create_with(
        json!({"name": "fresh_counter", "code": counter.replace("NAME", "fresh_counter"), "isolation": "fresh"}),
    )
    .await;
    let mut warm = vec![];
    let mut fresh = vec![];
    for _ in 0..3 {
        warm.push(
            app.invoke("warm_counter", json!({})).await.1["output"]
                .as_i64()
                .unwrap(),
        );
        fresh.push(
            app.invoke("fresh_counter", json!({})).await.1["output"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(fresh, [1, 1, 1]);
    assert!(warm.iter().max().unwrap() > &1, "warm instances are reused: {warm:?}");
    // A new version never reuses an instance of the old one.
    let (s, _) = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/functions/warm_counter",
            Some(json!({"code": counter.replace("NAME", "warm_counter").replace("+= 1", "+= 100")})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.invoke("warm_counter", json!({})).await.1["output"], 100);
    app.stop().await;
}

/// Hostile inputs found in review: NUL bytes (PostgreSQL refuses them in text), free host
/// calls, oversized nested inputs, call floods, state surviving a delete + recreate.
async fn abuse_regressions(b: Backend) {
    let app = start(b).await;
    // NUL bytes never become a 500.
    let (s, v) = app.get("/api/v1/functions/%00").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = app.get("/api/v1/executions?status=%00").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = app
        .post(
            "/api/v1/functions",
            json!({"name": "d", "code": "def d(input): pass", "description": "a\u{0}b"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    app.create(
        "nul_printer",
        "def nul_printer(input):\n    print('a\\0b')\n    return 'x\\0y'\n",
    )
    .await;
    let (s, v) = app.invoke("nul_printer", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"], "x\u{0}y");
    let (_, logs) = app
        .get(&format!(
            "/api/v1/executions/{}/logs",
            v["execution_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(logs["logs"][0]["text"], "a\u{FFFD}b\n", "{logs}");

    // Host calls cost fuel: a loop on _host.call runs out of fuel instead of running free.
    app.create_with(json!({"name": "spammer", "fuel": 100_000_000, "timeout_seconds": 20,
        "code": "import _host\ndef spammer(input):\n    while True:\n        _host.call(b'{\"op\":\"nope\"}')\n"}))
        .await;
    let (_, v) = app.invoke("spammer", json!({})).await;
    assert_eq!(v["error"]["kind"], "out_of_fuel", "{v}");

    // Nested inputs are held to MAX_INPUT_BYTES like invoke inputs.
    app.create("sink", "def sink(input):\n    return len(input['blob'])\n")
        .await;
    app.create("big_caller", "import maestro\ndef big_caller(input):\n    try:\n        return sink({'blob': 'x' * 2_000_000})\n    except maestro.CallError as e:\n        return e.error['kind']\n").await;
    assert_eq!(
        app.invoke("big_caller", json!({})).await.1["output"],
        "input_validation"
    );

    // One execution cannot make more than MAX_CALLS_PER_EXECUTION nested calls.
    app.create("flooder", "import maestro\ndef flooder(input):\n    n = 0\n    try:\n        while True:\n            sink({'blob': ''})\n            n += 1\n    except maestro.CallError as e:\n        return [n, e.error['kind']]\n").await;
    let (_, v) = app.invoke("flooder", json!({})).await;
    assert_eq!(v["output"], json!([1000, "call_limit"]), "{v}");

    // A deleted and recreated function (same code, same version number) starts clean.
    let counter = "state = {'n': 0}\ndef again(input):\n    state['n'] += 1\n    return state['n']\n";
    app.create("again", counter).await;
    app.invoke("again", json!({})).await;
    assert_eq!(app.invoke("again", json!({})).await.1["output"], 2);
    assert_eq!(
        app.call(reqwest::Method::DELETE, "/api/v1/functions/again", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    app.create("again", counter).await;
    assert_eq!(app.invoke("again", json!({})).await.1["output"], 1);
    app.stop().await;
}

/// `maestro.gather` runs calls at once: each is its own step under the caller, their
/// timings overlap, results come back in order, a failure raises (or is returned).
async fn gather_runs_in_parallel(b: Backend) {
    let app = start(b).await;
    app.create("nap", "import time\ndef nap(input):\n    time.sleep(input['s'])\n    if input.get('fail'):\n        raise ValueError('nap failed')\n    return input['n']\n").await;
    app.create(
        "fan",
        "import maestro\ndef fan(input):\n    \
         calls = [('nap', {'n': i, 's': 0.4}) for i in range(input['k'])]\n    \
         if input.get('bad'):\n        calls.append(('nap', {'n': 9, 's': 0, 'fail': True}))\n        \
         mixed = maestro.gather(calls, return_exceptions=True)\n        \
         try:\n            maestro.gather(calls)\n        except maestro.CallError as e:\n            \
         return [type(mixed[-1]).__name__, e.function, e.error['type']]\n    \
         return maestro.gather(calls)\n",
    )
    .await;
    let (s, v) = app.invoke("fan", json!({"k": 3})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["output"], json!([0, 1, 2]), "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let (_, steps) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    let naps: Vec<&Value> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["function_name"] == "nap")
        .collect();
    assert_eq!(naps.len(), 3);
    assert!(naps.iter().all(|s| s["parent_id"] == id && s["depth"] == 1));
    // Overlap: every nap started before any of them finished.
    let ts = |s: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(s[k].as_str().unwrap()).unwrap();
    let last_start = naps.iter().map(|s| ts(s, "started_at")).max().unwrap();
    let first_end = naps.iter().map(|s| ts(s, "finished_at")).min().unwrap();
    assert!(last_start < first_end, "{steps}");

    // More calls than threads still all run, in order.
    let (_, v) = app.invoke("fan", json!({"k": 12})).await;
    assert_eq!(v["output"], json!((0..12).collect::<Vec<_>>()), "{v}");
    let (_, v) = app.invoke("fan", json!({"k": 1, "bad": true})).await;
    assert_eq!(v["output"], json!(["CallError", "nap", "ValueError"]), "{v}");
    app.stop().await;
}

/// A guest that forges the prelude's `end` frame with more stdout than it could ever print
/// under the capture cap, then spins until its deadline. The host caps every field it takes
/// from such a frame, and does not parse one larger than any real report: the answer comes
/// within the timeout plus a second, the record keeps at most the capture limit, and the
/// live stream carries a bounded number of events. The frame (31 M lines, 62 MB) is
/// refused whole; one of 10 M lines (20 MB) is read and cut.
async fn forged_end_frame(b: Backend) {
    let app = start_with(b, &["--function-timeout", "2"]).await;
    for (name, lines) in [("forger_huge", 31_000_000), ("forger", 10_000_000)] {
        let code = format!(
            "import _host\ndef {name}(input):\n    \
             _host.call(b'{{\"op\":\"end\",\"ok\":true,\"output\":1,\"stdout\":\"' + b'\\\\n' * {lines} + b'\"}}')\n    \
             while True: pass\n"
        );
        app.create(name, &code).await;
        let started = std::time::Instant::now();
        let (s, v) = app.invoke(name, json!({})).await;
        let took = started.elapsed();
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["error"]["kind"], "timeout", "{name}: {v}");
        assert!(
            took < std::time::Duration::from_secs(3),
            "{name}: answered {took:?} after the call"
        );
        let id = v["execution_id"].as_str().unwrap().to_string();
        let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
        let text = logs["logs"][0]["text"].as_str().unwrap_or("");
        assert!(
            text.len() <= (1 << 20) + 256,
            "{name}: stdout kept {} bytes",
            text.len()
        );
        if name == "forger" {
            assert!(
                text.contains("more bytes dropped"),
                "{}",
                &text[text.len().saturating_sub(80)..]
            );
        }
        let events = app.state().events.history(&id).unwrap_or_default();
        assert!(events.len() < 1_100, "{name}: {} live events", events.len());
        if name == "forger_huge" {
            assert_eq!(text, "", "a report larger than any real one is not read");
        }
    }
    // Forged, then the real report silenced (the guest replaces `_host.call`): with no trap
    // and no report it could keep, the call is an invalid output.
    app.create(
        "silencer",
        "import _host\ndef silencer(input):\n    \
         _host.call(b'{\"op\":\"end\",\"ok\":true,\"output\":1,\"stdout\":\"' + b'\\\\n' * 31_000_000 + b'\"}')\n    \
         _host.call = lambda frame: b'{}'\n    return 1\n",
    )
    .await;
    let (_, v) = app.invoke("silencer", json!({})).await;
    assert_eq!(v["error"]["kind"], "invalid_output", "{v}");
    // The prelude's capture keeps bytes in order: once a character is cut at the cap, nothing
    // written later is kept.
    let app2 = start_with(b, &["--max-log-bytes", "100"]).await;
    app2.create(
        "cutter",
        "import sys\ndef cutter(input):\n    sys.stdout.write('x' * 98)\n    sys.stdout.write('\\u20ac')\n    \
         sys.stdout.write('y')\n    return 1\n",
    )
    .await;
    let (_, v) = app2.invoke("cutter", json!({})).await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    let (_, logs) = app2.get(&format!("/api/v1/executions/{id}/logs")).await;
    let text = logs["logs"][0]["text"].as_str().unwrap_or("");
    assert_eq!(
        text,
        format!("{}\n[maestro: 4 more bytes dropped]\n", "x".repeat(98)),
        "{v}"
    );
    app2.stop().await;
    app.stop().await;
}

both_backends!(
    forged_end_frame,
    abuse_regressions,
    hostile_code,
    fuel_and_per_function_limits,
    python_errors_and_output_validation,
    calls_between_functions,
    depth_limit,
    no_cross_tenant_calls,
    isolation_modes,
    gather_runs_in_parallel
);
