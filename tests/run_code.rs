//! `POST /api/v1/run`: code sent to run once in the caller's tenant, answered as a notebook
//! kernel answers a cell (stdout, rich results, an error with its traceback), on both
//! databases with the real sandbox; its limits, egress policy and tenancy hold as for
//! stored functions, and the run is recorded as an execution.

mod common;

use base64::Engine as _;
use common::{start, start_with, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn run(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.post("/api/v1/run", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// The representation `key` of result `i`.
fn repr<'a>(v: &'a Value, i: usize, key: &str) -> &'a Value {
    &v["results"][i][key]
}

async fn answers_like_a_notebook(b: Backend) {
    let app = start(b).await;
    // Statements, prints, and the value of the last expression.
    let v = run(&app, json!({"code": "x = 20\nprint('hello', x)\nx * 2 + 2"})).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["stdout"], "hello 20\n");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(repr(&v, 0, "text"), "42");
    assert_eq!(repr(&v, 0, "json"), 42);
    assert_eq!(v["error"], Value::Null);
    assert!(v["fuel_used"].as_u64().unwrap() > 0, "{v}");
    // No last expression (an assignment), or one that is None: no result.
    let v = run(&app, json!({"code": "y = 1\nNone"})).await;
    assert_eq!(v["results"], json!([]), "{v}");
    // `input` is the script's global; displays come first, then the last value.
    let v = run(
        &app,
        json!({"code": "import maestro\nmaestro.display(maestro.HTML('<b>hi</b>'))\n{'n': input['n'] + 1}", "input": {"n": 1}}),
    )
    .await;
    assert_eq!(repr(&v, 0, "html"), "<b>hi</b>", "{v}");
    assert_eq!(repr(&v, 1, "json"), &json!({"n": 2}), "{v}");

    // An exception: its type, message and a traceback with the user's line.
    let v = run(
        &app,
        json!({"code": "a = 1\ndef f():\n    raise ValueError('bad value')\nf()"}),
    )
    .await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["name"], "ValueError", "{v}");
    assert_eq!(v["error"]["value"], "bad value");
    assert_eq!(v["error"]["kind"], "python_exception");
    let tb = v["error"]["traceback"].as_str().unwrap();
    assert!(
        tb.contains("line 3, in f") && tb.contains("raise ValueError('bad value')"),
        "{tb}"
    );
    assert!(!tb.contains("_mx_"), "no prelude frames: {tb}");
    // A syntax error is an error too, not a 500.
    let v = run(&app, json!({"code": "def (:"})).await;
    assert_eq!(v["error"]["name"], "SyntaxError", "{v}");

    // A DataFrame gives html and text; a figure left open gives a PNG.
    let v = run(
        &app,
        json!({"code": "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [3, 4]})\ndf"}),
    )
    .await;
    assert!(repr(&v, 0, "html").as_str().unwrap().contains("<table"), "{v}");
    assert!(repr(&v, 0, "text").as_str().unwrap().contains('a'), "{v}");
    let v = run(
        &app,
        json!({"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()\nprint('drawn')"}),
    )
    .await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["stdout"], "drawn\n");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "one figure: {v}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(repr(&v, 0, "png").as_str().expect("a png"))
        .expect("base64");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} bytes",
        png.len()
    );
    // Left open rather than shown: shown at the end all the same.
    let v = run(
        &app,
        json!({"code": "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n_ = ax.plot([0, 1])\n"}),
    )
    .await;
    assert!(repr(&v, 0, "png").is_string(), "{}", v["results"][0]["text"]);

    // The tenant's own functions are callable by name; the run is an execution.
    app.create("double", "def double(input):\n    return input * 2\n").await;
    let v = run(&app, json!({"code": "double(21)"})).await;
    assert_eq!(repr(&v, 0, "json"), 42, "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let (s, e) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        (e["trigger"].as_str(), e["function_name"].as_str()),
        (Some("run"), Some("__run__"))
    );
    assert_eq!(e["input"]["code"], "double(21)", "the code is recorded: {e}");
    let (_, steps) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    assert!(
        steps["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["function_name"] == "double"),
        "{steps}"
    );
    // Another tenant's functions are not reachable.
    let other = app.token_for("other");
    let (s, v) = app
        .call_as(&other, Method::POST, "/api/v1/run", Some(json!({"code": "double(1)"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["error"]["name"], "NameError", "{v}");
    let (s, _) = app
        .call_as(&other, Method::GET, &format!("/api/v1/executions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn limits_and_policy_hold(b: Backend) {
    let app = start(b).await;
    // The deadline, fuel and memory cap, as asked (within the server's maxima).
    let v = run(&app, json!({"code": "while True:\n    pass", "timeout_seconds": 0.5})).await;
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    let v = run(
        &app,
        json!({"code": "n = 0\nwhile True:\n    n += 1", "fuel": 20_000_000}),
    )
    .await;
    assert_eq!(v["error"]["kind"], "out_of_fuel", "{v}");
    let v = run(&app, json!({"code": "b = bytearray(200 << 20)", "memory_mb": 100})).await;
    assert_eq!(v["error"]["kind"], "memory_limit", "{v}");
    let (s, v) = app
        .post("/api/v1/run", json!({"code": "1", "timeout_seconds": 1e9}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "timeout_seconds", "{v}");
    let (s, v) = app.post("/api/v1/run", json!({"code": "1", "isolation": "warm"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "runs are always fresh: {v}");
    let big = "x".repeat(1 << 20);
    let (s, v) = app.post("/api/v1/run", json!({"code": "1", "input": big})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("MAX_INPUT_BYTES"),
        "{v}"
    );
    // The tenant's egress policy (deny by default) and the sandbox's walls.
    let v = run(
        &app,
        json!({"code": "import maestro\nmaestro.http.get('http://127.0.0.1:9/')"}),
    )
    .await;
    assert!(v["error"]["name"].as_str().unwrap().contains("EgressDenied"), "{v}");
    let v = run(&app, json!({"code": "import os\nsorted(os.environ)"})).await;
    assert!(!repr(&v, 0, "text").as_str().unwrap().contains("DATABASE"), "{v}");
    let v = run(&app, json!({"code": "open('/etc/passwd').read()"})).await;
    assert_eq!(v["status"], "failed", "no host files: {v}");
    // Bad requests are 4xx JSON errors.
    let (s, v) = app.post("/api/v1/run", json!({"input": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("code"), "{v}");
    let (s, v) = app.post("/api/v1/run", json!({"code": "1", "colour": "red"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = app.raw(Method::POST, "/api/v1/run", None, "{\"code\": ").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = app
        .raw(Method::POST, "/api/v1/run", Some(&app.token), "{\"code\": ")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    app.stop().await;
}

/// `ALLOW_CODE_EXECUTION=false` turns the route off; an admin may turn it off per subtenant.
#[tokio::test]
async fn code_execution_can_be_turned_off() {
    let app = start_with(Backend::Sqlite, &["--allow-code-execution", "false"]).await;
    // Refused before the body is even read.
    let (s, v) = app
        .raw(Method::POST, "/api/v1/run", Some(&app.token), "{not json")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app.post("/api/v1/run", json!({"code": "1"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("ALLOW_CODE_EXECUTION"),
        "{v}"
    );
    app.stop().await;

    let app = start(Backend::Sqlite).await;
    let admin = maestro::auth::Keys::new(common::SECRET)
        .mint(
            &app.tenant,
            "root@example.com",
            true,
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let sub = format!("{}-nocode", app.tenant);
    let body = json!({"subtenant_id": sub, "quotas": {"code_execution": false}});
    let (s, v) = app
        .call_as(&admin, Method::POST, "/api/v1/subtenants", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let as_sub = |code: &str| {
        app.client
            .post(format!("{}/api/v1/run", app.base))
            .bearer_auth(&admin)
            .header(maestro::auth::SUBTENANT_HEADER, &sub)
            .json(&json!({ "code": code }))
            .send()
    };
    let r = as_sub("1").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("code_execution"),
        "{v}"
    );
    // The tenant itself still may.
    assert_eq!(run(&app, json!({"code": "1 + 1"})).await["results"][0]["json"], 2);
    app.stop().await;
}

both_backends!(answers_like_a_notebook, limits_and_policy_hold);

/// `maestro run FILE`: prints what the script printed and its results; a failed run exits 1
/// with the traceback on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_a_script() {
    let app = start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello.py");
    std::fs::write(&script, "print('hi', input['who'])\n6 * 7\n").unwrap();
    // Off the runtime's threads: the server answering it runs on them.
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maestro"));
        cmd.arg("run")
            .args(args)
            .args(["--url", &app.base, "--token", &app.token]);
        tokio::task::block_in_place(move || cmd.output().unwrap())
    };
    let out = cli(&[script.to_str().unwrap(), "--input", r#"{"who": "there"}"#]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hi there\n42\n");
    std::fs::write(&script, "def f():\n    return 1 / 0\nf()\n").unwrap();
    let out = cli(&[script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ZeroDivisionError") && stderr.contains("line 2, in f"),
        "{stderr}"
    );
    let out = cli(&[script.to_str().unwrap(), "--json"]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["error"]["name"], "ZeroDivisionError", "{answer}");
    app.stop().await;
}
