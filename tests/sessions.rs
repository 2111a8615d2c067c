//! Sessions (`/api/v1/sessions`): an interpreter kept between cells, with a private working
//! directory, on both databases with the real sandbox: state persists, files move in and
//! out, a crashing cell ends the session (410 after), idle sessions expire, caps hold, other
//! tenants see nothing, and a second server names the one holding a session (409).

mod common;

use base64::Engine as _;
use common::{start, start_on, start_with, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn open(app: &TestApp, body: Value) -> String {
    let (s, v) = app.post("/api/v1/sessions", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "active", "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn cell(app: &TestApp, id: &str, code: &str) -> Value {
    let (s, v) = app
        .post(&format!("/api/v1/sessions/{id}/run"), json!({ "code": code }))
        .await;
    assert_eq!(s, StatusCode::OK, "{code}: {v}");
    v
}

/// Result `i`'s JSON value.
fn value(v: &Value, i: usize) -> &Value {
    &v["results"][i]["json"]
}

/// A raw request's status and body bytes.
async fn bytes(app: &TestApp, method: Method, path: &str, body: Option<Vec<u8>>) -> (StatusCode, Vec<u8>) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.token);
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

async fn keeps_state_and_files(b: Backend) {
    let app = start(b).await;
    let id = open(&app, json!({})).await;
    let (s, v) = app.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["execution_count"], 0);
    assert!(!v["server"].as_str().unwrap().is_empty(), "{v}");

    // Globals and imports persist between cells; each cell counts.
    let v = cell(&app, &id, "x = 41\nimport math").await;
    assert_eq!(
        (v["status"].as_str(), v["execution_count"].as_i64()),
        (Some("succeeded"), Some(1)),
        "{v}"
    );
    let v = cell(&app, &id, "x + 1").await;
    assert_eq!(value(&v, 0), 42, "{v}");
    assert_eq!(v["execution_count"], 2);
    let v = cell(&app, &id, "print('root', math.sqrt(16))").await;
    assert_eq!(v["stdout"], "root 4.0\n", "{v}");

    // An exception fails the cell, not the session; its traceback shows the cell's line.
    let v = cell(&app, &id, "def f():\n    return 1 / 0\nf()").await;
    assert_eq!(v["error"]["name"], "ZeroDivisionError", "{v}");
    assert!(
        v["error"]["traceback"].as_str().unwrap().contains("line 2, in f"),
        "{v}"
    );
    assert_eq!(value(&cell(&app, &id, "x").await, 0), 41);

    // Every cell is an execution of its own, with the code and its count.
    let (_, e) = app
        .get(&format!("/api/v1/executions/{}", v["execution_id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (e["trigger"].as_str(), e["function_name"].as_str()),
        (Some("session"), Some("__session__")),
        "{e}"
    );
    assert_eq!(e["trigger_id"], id.as_str(), "{e}");
    assert_eq!(e["input"]["execution_count"], 4, "{e}");
    assert!(e["input"]["code"].as_str().unwrap().contains("1 / 0"), "{e}");

    // A file written in one cell is read in the next, listed and downloaded.
    let v = cell(
        &app,
        &id,
        "with open('notes/a.txt', 'w') as f:\n    f.write('hello file')\nimport os\nos.listdir('notes')",
    )
    .await;
    assert_eq!(value(&v, 0), &json!(["a.txt"]), "{v}");
    let v = cell(&app, &id, "open('/home/user/notes/a.txt').read().upper()").await;
    assert_eq!(value(&v, 0), "HELLO FILE", "{v}");
    // glob, os.walk and pathlib see the working directory too.
    let v = cell(
        &app,
        &id,
        "import glob, pathlib
[glob.glob('*'), glob.glob('**/*.txt', recursive=True),          [(r, f) for r, _, f in os.walk('.')], [p.name for p in pathlib.Path('notes').iterdir()]]",
    )
    .await;
    assert_eq!(
        value(&v, 0),
        &json!([
            ["notes"],
            ["notes/a.txt"],
            [[".", []], ["./notes", ["a.txt"]]],
            ["a.txt"]
        ]),
        "{v}"
    );
    let (s, v) = app.get(&format!("/api/v1/sessions/{id}/files")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["files"], json!([{"path": "notes/a.txt", "size": 10}]));
    let (s, body) = bytes(
        &app,
        Method::GET,
        &format!("/api/v1/sessions/{id}/files/notes/a.txt"),
        None,
    )
    .await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, b"hello file".as_slice()));
    // Uploaded, read by pandas; a chart saved by matplotlib, downloaded as a PNG.
    let csv = b"a,b\n1,2\n3,4\n".to_vec();
    let (s, _) = bytes(
        &app,
        Method::PUT,
        &format!("/api/v1/sessions/{id}/files/in/nums.csv"),
        Some(csv),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = cell(
        &app,
        &id,
        "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('in/nums.csv')\n\
         df.plot(x='a', y='b')\nplt.savefig('out/chart.png')\nplt.close('all')\nint(df['b'].sum())",
    )
    .await;
    assert_eq!(value(&v, 0), 6, "{v}");
    let (s, png) = bytes(
        &app,
        Method::GET,
        &format!("/api/v1/sessions/{id}/files/out/chart.png"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} bytes",
        png.len()
    );
    let (s, _) = bytes(
        &app,
        Method::DELETE,
        &format!("/api/v1/sessions/{id}/files/in/nums.csv"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = bytes(
        &app,
        Method::GET,
        &format!("/api/v1/sessions/{id}/files/in/nums.csv"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v = cell(&app, &id, "import os\nos.path.exists('in/nums.csv')").await;
    assert_eq!(value(&v, 0), false, "{v}");
    // Paths stay inside; the host's files stay out of reach; the cap holds.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "a%2F..%2F..%2Fb", "%2Fetc%2Fpasswd"] {
        let (s, _) = bytes(&app, Method::GET, &format!("/api/v1/sessions/{id}/files/{bad}"), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // Code that climbs out of the working directory meets the read-only file system.
    let v = cell(&app, &id, "open('../escape.txt', 'w').write('x')").await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["error"]["name"].as_str().unwrap().ends_with("Error"), "{v}");
    let v = cell(
        &app,
        &id,
        "import os
os.path.exists('/home/escape.txt')",
    )
    .await;
    assert_eq!(value(&v, 0), false, "{v}");
    // Egress policy holds as for functions (deny by default).
    let v = cell(
        &app,
        &id,
        "import maestro
maestro.http.get('http://127.0.0.1:9/')",
    )
    .await;
    assert!(v["error"]["name"].as_str().unwrap().contains("EgressDenied"), "{v}");
    let v = cell(
        &app,
        &id,
        "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (9 << 20))",
    )
    .await;
    assert!(
        v["error"]["value"]
            .as_str()
            .unwrap()
            .contains("SESSION_FILES_MAX_BYTES"),
        "{v}"
    );
    assert_eq!(value(&cell(&app, &id, "x").await, 0), 41, "the session survives");

    // Another tenant sees none of it.
    let other = app.token_for("other");
    for (m, path) in [
        (Method::GET, format!("/api/v1/sessions/{id}")),
        (Method::DELETE, format!("/api/v1/sessions/{id}")),
        (Method::GET, format!("/api/v1/sessions/{id}/files")),
        (Method::GET, format!("/api/v1/sessions/{id}/files/notes/a.txt")),
        (Method::DELETE, format!("/api/v1/sessions/{id}/files/notes/a.txt")),
    ] {
        let (s, v) = app.call_as(&other, m.clone(), &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {v}");
    }
    let put = app
        .client
        .put(format!("{}/api/v1/sessions/{id}/files/notes/a.txt", app.base))
        .bearer_auth(&other)
        .body("overwritten")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NOT_FOUND);
    let (s, _) = app
        .call_as(
            &other,
            Method::POST,
            &format!("/api/v1/sessions/{id}/run"),
            Some(json!({"code": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = app.call_as(&other, Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(list["sessions"], json!([]));
    let (_, list) = app.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["sessions"][0]["execution_count"], 15, "{list}");

    // Deleted: the next cell is told so.
    let (s, _) = app.call(Method::DELETE, &format!("/api/v1/sessions/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app
        .post(&format!("/api/v1/sessions/{id}/run"), json!({"code": "x"}))
        .await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    assert_eq!(v["error"]["code"], "session_ended");
    let (_, v) = app.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(
        (v["status"].as_str(), v["end_reason"].as_str()),
        (Some("ended"), Some("deleted")),
        "{v}"
    );
    app.stop().await;
}

async fn crashes_and_expiry_end_sessions(b: Backend) {
    let app = start(b).await;
    // A cell past its deadline stops the interpreter: the session has ended, and says why.
    let id = open(&app, json!({"timeout_seconds": 0.5})).await;
    cell(&app, &id, "y = 1").await;
    let v = cell(&app, &id, "while True:\n    pass").await;
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    let (s, v) = app
        .post(&format!("/api/v1/sessions/{id}/run"), json!({"code": "y"}))
        .await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("crashed"), "{v}");
    let (_, v) = app.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(
        (v["end_reason"].as_str(), v["error"]["kind"].as_str()),
        (Some("crashed"), Some("timeout")),
        "{v}"
    );
    let (s, _) = app.get(&format!("/api/v1/sessions/{id}/files")).await;
    assert_eq!(s, StatusCode::GONE);
    // Memory and fuel likewise.
    let id = open(&app, json!({"memory_mb": 100})).await;
    let v = cell(&app, &id, "b = bytearray(200 << 20)").await;
    assert_eq!(v["error"]["kind"], "memory_limit", "{v}");
    let (s, _) = app
        .post(&format!("/api/v1/sessions/{id}/run"), json!({"code": "1"}))
        .await;
    assert_eq!(s, StatusCode::GONE);
    let id = open(&app, json!({"fuel": 20_000_000})).await;
    let v = cell(&app, &id, "n = 0\nwhile True:\n    n += 1").await;
    assert_eq!(v["error"]["kind"], "out_of_fuel", "{v}");
    let (s, _) = app
        .post(&format!("/api/v1/sessions/{id}/run"), json!({"code": "1"}))
        .await;
    assert_eq!(s, StatusCode::GONE);

    // A file request runs the guest's code too (which may have replaced the prelude's): it
    // is held to the session's deadline, and an answer the prelude never sends is a crash.
    let id = open(&app, json!({"timeout_seconds": 0.5})).await;
    cell(
        &app,
        &id,
        "def spin():\n    while True:\n        pass\nopen.__globals__['_mx_files_op'] = spin",
    )
    .await;
    let (s, v) = app.get(&format!("/api/v1/sessions/{id}/files")).await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    let (_, v) = app.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(
        (v["end_reason"].as_str(), v["error"]["kind"].as_str()),
        (Some("crashed"), Some("timeout")),
        "{v}"
    );
    let id = open(&app, json!({})).await;
    cell(
        &app,
        &id,
        "g = open.__globals__\ng['_mx_files_op'] = lambda: g['_mx_end']({'op': 'end', 'ok': True, 'output': {'data': 5}})",
    )
    .await;
    let (s, _) = bytes(&app, Method::GET, &format!("/api/v1/sessions/{id}/files/a.txt"), None).await;
    assert_eq!(s, StatusCode::GONE);
    let (_, v) = app.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(v["error"]["kind"], "crash", "{v}");

    // Idle past its time: ended by the server, not by the next request.
    let id = open(&app, json!({"idle_ttl_seconds": 1})).await;
    cell(&app, &id, "z = 3").await;
    let mut ended = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (_, v) = app.get(&format!("/api/v1/sessions/{id}")).await;
        if v["status"] == "ended" {
            ended = v;
            break;
        }
    }
    assert_eq!(ended["end_reason"], "expired", "{ended}");
    let (s, v) = app
        .post(&format!("/api/v1/sessions/{id}/run"), json!({"code": "z"}))
        .await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    // Requests the API refuses.
    for body in [
        json!({"idle_ttl_seconds": 0}),
        json!({"colour": "red"}),
        json!({"timeout_seconds": 1e9}),
    ] {
        let (s, v) = app.post("/api/v1/sessions", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    let (s, v) = app.post("/api/v1/sessions/nope/run", json!({"code": "1"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    app.stop().await;
}

both_backends!(
    keeps_state_and_files,
    crashes_and_expiry_end_sessions,
    runs_take_and_return_files,
    streams_output_and_survives_disconnects
);

/// Per-tenant caps on open sessions and their memory, named in the 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_hold() {
    let app = start_with(
        Backend::Sqlite,
        &["--sessions-max-per-tenant", "2", "--sessions-memory-max-mb", "400"],
    )
    .await;
    let a = open(&app, json!({"memory_mb": 150})).await;
    open(&app, json!({"memory_mb": 150})).await;
    let (s, v) = app.post("/api/v1/sessions", json!({"memory_mb": 64})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SESSIONS_MAX_PER_TENANT"),
        "{v}"
    );
    app.call(Method::DELETE, &format!("/api/v1/sessions/{a}"), None).await;
    let (s, v) = app.post("/api/v1/sessions", json!({"memory_mb": 300})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SESSIONS_MEMORY_MAX_MB"),
        "{v}"
    );
    open(&app, json!({"memory_mb": 200})).await;
    app.stop().await;

    // Off with code execution.
    let app = start_with(Backend::Sqlite, &["--allow-code-execution", "false"]).await;
    let (s, _) = app.post("/api/v1/sessions", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.stop().await;
}

/// A session lives on the server that opened it: another replica names that server (409),
/// and says it ended once that server stopped (410).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_names_the_owner() {
    let a = start_with(Backend::Postgres, &["--sessions-max-per-tenant", "3"]).await;
    let b = start_on(&a, &["--sessions-max-per-tenant", "3"]).await;
    // Opens racing on both servers cannot pass the tenant's cap together.
    let opens = (0..6).map(|i| {
        let srv = if i % 2 == 0 { &a } else { &b };
        srv.call_as(&a.token, Method::POST, "/api/v1/sessions", Some(json!({})))
    });
    let answers = futures_util::future::join_all(opens).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((created, refused), (3, 3), "{answers:?}");
    for (s, v) in &answers {
        if *s == StatusCode::CREATED {
            let srv = if v["server"] == json!(a.state().engine.node_id()) {
                &a
            } else {
                &b
            };
            let (s, _) = srv
                .call_as(
                    &a.token,
                    Method::DELETE,
                    &format!("/api/v1/sessions/{}", v["id"].as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
    }
    let id = open(&a, json!({})).await;
    cell(&a, &id, "k = 'kept'").await;
    let owner = a.state().engine.node_id().to_string();
    let token = a.token.clone();
    let (s, v) = b
        .call_as(&a.token, Method::GET, &format!("/api/v1/sessions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["server"].as_str(), v["status"].as_str()),
        (Some(owner.as_str()), Some("active")),
        "{v}"
    );
    let run = |srv: &TestApp| {
        let path = format!("/api/v1/sessions/{id}/run");
        let token = token.clone();
        let srv_base = srv.base.clone();
        let client = srv.client.clone();
        async move {
            let r = client
                .post(format!("{srv_base}{path}"))
                .bearer_auth(token)
                .json(&json!({"code": "k"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = run(&b).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "session_elsewhere");
    assert!(v["error"]["message"].as_str().unwrap().contains(&owner), "{v}");
    let (s, v) = run(&a).await;
    assert_eq!((s, &v["results"][0]["json"]), (StatusCode::OK, &json!("kept")), "{v}");
    a.stop().await;
    let (s, v) = run(&b).await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("stopped"), "{v}");
    let (_, v) = b
        .call_as(&token, Method::GET, &format!("/api/v1/sessions/{id}"), None)
        .await;
    assert_eq!(v["end_reason"], "server_stopped", "{v}");
    b.stop().await;
}

/// One-shot runs take files in and give back what they wrote under `out/`.
async fn runs_take_and_return_files(b: Backend) {
    let app = start(b).await;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let body = json!({
        "code": "import os\ndata = open('in.txt').read()\nos.makedirs('out', exist_ok=True)\n\
                 with open('out/upper.txt', 'w') as f:\n    f.write(data.upper())\nlen(data)",
        "files": {"in.txt": b64(b"shout")},
        "return_files": true,
    });
    let (s, v) = app.post("/api/v1/run", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["json"], 5, "{v}");
    assert_eq!(v["files"], json!({"out/upper.txt": b64(b"SHOUT")}), "{v}");
    for files in [json!({"../x": b64(b"1")}), json!({"a.txt": "not base64!"})] {
        let (s, v) = app.post("/api/v1/run", json!({"code": "1", "files": files})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }
    // Without files, nothing changes: the file system stays read-only.
    let (_, v) = app.post("/api/v1/run", json!({"code": "open('x.txt', 'w')"})).await;
    assert_eq!(v["status"], "failed", "{v}");
    app.stop().await;
}

/// The events of a Server-Sent Events body: (event, data as JSON).
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut kind = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = Some(k.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            Some((kind?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

fn streamed(events: &[(String, Value)], kind: &str) -> String {
    events
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v["text"].as_str().unwrap().to_string())
        .collect()
}

/// `?stream=true`: output as it is printed, then results and the whole answer; a client
/// that hangs up mid-run loses nothing of the record.
async fn streams_output_and_survives_disconnects(b: Backend) {
    let app = start(b).await;
    let post = |path: &str, code: &str| {
        app.client
            .post(format!("{}{path}", app.base))
            .bearer_auth(&app.token)
            .json(&json!({ "code": code }))
            .send()
    };
    let code = "import sys, time\nprint('a')\ntime.sleep(0.2)\nprint('b', file=sys.stderr)\n6 * 7";
    let r = post("/api/v1/run?stream=true", code).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = events(&r.text().await.unwrap());
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    let first_stderr = kinds.iter().position(|k| *k == "stderr").expect("stderr events");
    assert!(kinds[..first_stderr].contains(&"stdout"), "printed in order: {kinds:?}");
    // A line is one event (print writes the value and its newline separately).
    assert_eq!(kinds.iter().filter(|k| **k == "stdout").count(), 1, "{kinds:?}");
    assert_eq!(
        (streamed(&ev, "stdout"), streamed(&ev, "stderr")),
        ("a\n".into(), "b\n".into())
    );
    let result = ev.iter().find(|(k, _)| k == "result").expect("a result event");
    assert_eq!(result.1["json"], 42);
    let end = &ev.last().unwrap().1;
    assert_eq!(
        (end["status"].as_str(), end["stdout"].as_str()),
        (Some("succeeded"), Some("a\n")),
        "{end}"
    );
    assert_eq!(end["execution_id"], ev[0].1["execution_id"]);

    // A session's cell streams too, with its count.
    let id = open(&app, json!({})).await;
    let r = post(&format!("/api/v1/sessions/{id}/run?stream=true"), "print('cell')")
        .await
        .unwrap();
    let ev = events(&r.text().await.unwrap());
    assert_eq!(ev[0].1["execution_count"], 1, "{ev:?}");
    assert_eq!(streamed(&ev, "stdout"), "cell\n");

    // Hang up after the first event: the run still ends and is recorded.
    let code = "import time\nprint('started')\ntime.sleep(1)\nprint('done')\n'finished'";
    let mut r = post("/api/v1/run?stream=true", code).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        seen.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().expect("a chunk")));
    }
    let exec = events(&seen)[0].1["execution_id"].as_str().unwrap().to_string();
    drop(r);
    let mut e = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        e = app.get(&format!("/api/v1/executions/{exec}")).await.1;
        if e["status"] != "running" {
            break;
        }
    }
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["output"]["results"][0]["json"], "finished", "{e}");

    // So does a session's cell, and the session goes on after it.
    let code = "import time\nprint('started')\ntime.sleep(1)\ny = 'kept'";
    let mut r = post(&format!("/api/v1/sessions/{id}/run?stream=true"), code)
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        seen.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().expect("a chunk")));
    }
    let exec = events(&seen)[0].1["execution_id"].as_str().unwrap().to_string();
    drop(r);
    assert_eq!(
        value(&cell(&app, &id, "y").await, 0),
        "kept",
        "the next cell waits for it"
    );
    let (_, e) = app.get(&format!("/api/v1/executions/{exec}")).await;
    assert_eq!(
        (e["status"].as_str(), e["trigger"].as_str()),
        (Some("succeeded"), Some("session")),
        "{e}"
    );
    app.stop().await;
}
