//! Function capabilities over HTTP with the real sandbox: outbound HTTP through the host
//! against a local server started here, the egress policy (default deny, SSRF refusals,
//! redirects, caps), secrets, structured logs and the context.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{start, start_with, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A small HTTP server on 127.0.0.1: what functions reach out to. Counts the requests it saw.
async fn upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new()
        .route(
            "/doc.txt",
            get(|| async { "Invoice Number: INV-7\nTotal: $1,234.50\nThank you!\n" }),
        )
        .route(
            "/json",
            get(|| async { ([("x-test", "yes")], axum::Json(json!({"hello": "world"}))) }),
        )
        .route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                axum::Json(json!({"body": body, "authorization": auth}))
            }),
        )
        .route(
            "/redirect-private",
            get(|| async {
                (
                    AxStatus::FOUND,
                    [("location", "http://169.254.169.254/latest/meta-data")],
                )
            }),
        )
        .route(
            "/redirect-ok",
            get(|| async { (AxStatus::FOUND, [("location", "/json")]).into_response() }),
        )
        .route(
            "/big",
            get(|| async {
                // A 1 GB answer, produced lazily: the host must stop reading at its cap.
                let chunk = bytes_chunk();
                let stream =
                    futures_util::stream::iter((0..16_384).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
                axum::body::Body::from_stream(stream)
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

fn bytes_chunk() -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b'x'; 64 * 1024])
}

/// Run `code` (defining `def f(input)`) as a function named `name` and return the invoke answer.
async fn run(app: &TestApp, name: &str, code: &str, input: Value) -> Value {
    let (s, v) = app
        .post(
            "/api/v1/functions",
            json!({"name": name, "code": code.replace("def f(", &format!("def {name}("))}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, out) = app.invoke(name, input).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    out
}

async fn activity(app: &TestApp, execution_id: &str) -> Vec<Value> {
    let (_, e) = app.get(&format!("/api/v1/executions/{execution_id}")).await;
    e["activity"].as_array().cloned().unwrap_or_default()
}

const TRY_GET: &str = "import maestro\n\
def f(input):\n    try:\n        r = maestro.http.get(input['url'], timeout=5)\n        \
return {'status': r.status_code, 'len': len(r.content), 'text': r.text[:200]}\n    \
except maestro.http.HTTPRequestError as e:\n        return {'error': e.kind, 'message': str(e)}\n";

const PRIVATE_OK: &[&str] = &["--egress-allow-private", "true"];

async fn http_and_egress(b: Backend) {
    let app = start_with(b, PRIVATE_OK).await;
    let (base, hits) = upstream().await;
    let port = base.rsplit(':').next().unwrap().to_string();

    // Default deny: nothing is reachable until the tenant allows it.
    let out = run(&app, "probe", TRY_GET, json!({"url": format!("{base}/json")})).await;
    assert_eq!(out["output"]["error"], "egress_denied", "{out}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let act = activity(&app, out["execution_id"].as_str().unwrap()).await;
    assert_eq!(act[0]["type"], "http");
    assert_eq!(act[0]["error"], "egress_denied");

    let (s, _) = app.get("/api/v1/egress").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app
        .call(Method::PUT, "/api/v1/egress", Some(json!({"allow": ["bad host!"]})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let policy = json!({
        "allow": [{"url": format!("{base}/"), "allow_private": true}, "localhost", "169.254.169.254"],
        "max_requests_per_execution": 5,
        "max_response_bytes": 1_048_576,
    });
    let (s, v) = app.call(Method::PUT, "/api/v1/egress", Some(policy)).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Allowed: a real request, answered by the local server.
    let code = "import maestro\n\
def f(input):\n    r = maestro.http.get(input['base'] + '/json?token=abc')\n    \
return {'status': r.status_code, 'json': r.json(), 'x': r.headers['X-Test'], 'ok': r.ok}\n";
    let out = run(&app, "fetch_json", code, json!({"base": base})).await;
    assert_eq!(
        out["output"],
        json!({"status": 200, "json": {"hello": "world"}, "x": "yes", "ok": true}),
        "{out}"
    );
    let act = activity(&app, out["execution_id"].as_str().unwrap()).await;
    assert_eq!(act[0]["method"], "GET");
    assert_eq!(act[0]["url"], format!("{base}/json"), "the query is not recorded");
    assert_eq!(act[0]["status"], 200);
    assert!(act[0]["bytes"].as_u64().unwrap() > 0);

    // A redirect is followed when its target is allowed too.
    let out = run(&app, "follow", TRY_GET, json!({"url": format!("{base}/redirect-ok")})).await;
    assert_eq!(out["output"]["status"], 200, "{out}");

    // Refused: a name resolving to loopback without allow_private, the metadata address
    // (allowed by name, but not public), a redirect from an allowed host to it, 1 GB.
    let before = hits.load(Ordering::SeqCst);
    for (url, kind) in [
        (format!("http://localhost:{port}/json"), "egress_denied"),
        ("http://169.254.169.254/latest/meta-data".to_string(), "egress_denied"),
        (format!("http://127.0.0.2:{port}/json"), "egress_denied"),
        ("ftp://example.com/x".to_string(), "egress_denied"),
    ] {
        let out = app.invoke("probe", json!({"url": url})).await.1;
        assert_eq!(out["output"]["error"], kind, "{url}: {out}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "refused requests never reach a server"
    );
    let out = app
        .invoke("probe", json!({"url": format!("{base}/redirect-private")}))
        .await
        .1;
    assert_eq!(out["output"]["error"], "egress_denied", "{out}");
    assert!(
        out["output"]["message"].as_str().unwrap().contains("169.254.169.254"),
        "{out}"
    );
    let out = app.invoke("probe", json!({"url": format!("{base}/big")})).await.1;
    assert_eq!(out["output"]["error"], "response_too_large", "{out}");

    // At most 5 requests per execution.
    let code = "import maestro\n\
def f(input):\n    done = 0\n    try:\n        for _ in range(10000):\n            \
maestro.http.get(input['base'] + '/json')\n            done += 1\n    \
except maestro.http.HTTPRequestError as e:\n        return {'done': done, 'error': e.kind}\n";
    let out = run(&app, "flood", code, json!({"base": base})).await;
    assert_eq!(out["output"], json!({"done": 5, "error": "request_limit"}), "{out}");

    // urllib.request.urlopen goes through the same path.
    let code = "import urllib.request, urllib.error\n\
def f(input):\n    with urllib.request.urlopen(input['base'] + '/doc.txt') as r:\n        \
text = r.read().decode()\n    try:\n        urllib.request.urlopen('http://169.254.169.254/')\n        \
denied = False\n    except urllib.error.URLError:\n        denied = True\n    return {'text': text, 'denied': denied}\n";
    let out = run(&app, "legacy", code, json!({"base": base})).await;
    assert_eq!(out["output"]["denied"], true, "{out}");
    assert!(
        out["output"]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Invoice Number: INV-7"),
        "{out}"
    );
    app.stop().await;
}

#[tokio::test]
async fn http_and_egress_sqlite() {
    http_and_egress(Backend::Sqlite).await;
}

#[tokio::test]
async fn http_and_egress_postgres() {
    http_and_egress(Backend::Postgres).await;
}

#[tokio::test]
async fn secrets_logs_and_context() {
    let app = start_with(Backend::Sqlite, PRIVATE_OK).await;
    let (base, _) = upstream().await;
    let other = app.token_for("other");

    let (s, v) = app
        .call(
            Method::PUT,
            "/api/v1/secrets/API_TOKEN",
            Some(json!({"value": "tok-123-secret"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(!v.to_string().contains("tok-123"), "{v}");
    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/secrets/API_TOKEN",
            Some(json!({"value": "tok-123-secret"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.get("/api/v1/secrets").await;
    assert_eq!(list["secrets"][0]["name"], "API_TOKEN");
    assert!(!list.to_string().contains("tok-123"));
    let (s, one) = app.get("/api/v1/secrets/API_TOKEN").await;
    assert_eq!(s, StatusCode::OK);
    assert!(one.get("value").is_none(), "{one}");
    for bad in ["a-b", "1ABC", "x.y", "..%2Fetc%2Fpasswd", "a%20b"] {
        let (s, v) = app
            .call(
                Method::PUT,
                &format!("/api/v1/secrets/{bad}"),
                Some(json!({"value": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (s, _) = app
        .call(Method::PUT, "/api/v1/secrets/X", Some(json!({"nope": 1})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Another tenant sees none of it.
    let (s, _) = app
        .call_as(&other, Method::GET, "/api/v1/secrets/API_TOKEN", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = app.call_as(&other, Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(list["secrets"], json!([]));

    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/egress",
            Some(json!({"allow": [{"url": format!("{base}/"), "allow_private": true}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let code = "import maestro\n\
def f(input):\n    token = maestro.secrets.get('API_TOKEN')\n    print('using', token)\n    \
r = maestro.http.post(input['base'] + '/echo', json={'n': 1}, headers={'Authorization': 'Bearer ' + token})\n    \
maestro.log('sent', level='warning', status=r.status_code)\n    \
missing = maestro.secrets.get('NOPE', None)\n    ctx = maestro.context\n    \
return {'seen': r.json()['authorization'] == 'Bearer ' + token, 'body': r.json()['body'], 'missing': missing,\n            \
'ctx': [ctx.execution_id, ctx['function'], ctx.trigger, ctx.tenant, ctx.depth]}\n";
    let out = run(&app, "notify", code, json!({"base": base})).await;
    let id = out["execution_id"].as_str().unwrap().to_string();
    assert_eq!(out["output"]["seen"], true, "{out}");
    assert_eq!(out["output"]["body"], "{\"n\": 1}");
    assert_eq!(out["output"]["missing"], Value::Null);
    assert_eq!(out["output"]["ctx"], json!([id, "notify", "manual", app.tenant, 0]));
    let act = activity(&app, &id).await;
    let kinds: Vec<&str> = act.iter().filter_map(|a| a["type"].as_str()).collect();
    assert_eq!(kinds, ["secret", "http", "log", "secret"], "{act:?}");
    assert_eq!(act[0]["name"], "API_TOKEN");
    assert_eq!(act[2]["fields"]["status"], 200);
    // The value is nowhere in the records: not in the execution, its steps or its logs.
    for path in [
        format!("/api/v1/executions/{id}"),
        format!("/api/v1/executions/{id}/steps"),
        format!("/api/v1/executions/{id}/logs"),
    ] {
        let (_, v) = app.get(&path).await;
        assert!(!v.to_string().contains("tok-123"), "{path}: {v}");
    }

    let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
    assert!(logs.to_string().contains("using [secret API_TOKEN]"), "{logs}");
    // Another tenant's function cannot read it.
    let (s, _) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "steal",
            "code": "import maestro\ndef steal(input):\n    return maestro.secrets.get('API_TOKEN', 'none')\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, out) = app
        .call_as(&other, Method::POST, "/api/v1/functions/steal/invoke", Some(json!({})))
        .await;
    assert_eq!(out["output"], "none", "{out}");

    let (s, _) = app.call(Method::DELETE, "/api/v1/secrets/API_TOKEN", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.call(Method::DELETE, "/api/v1/secrets/API_TOKEN", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn private_rules_need_the_operator() {
    let app = start(Backend::Sqlite).await;
    let policy = json!({"allow": [{"url": "http://10.0.0.5:8080/", "allow_private": true}]});
    let (s, v) = app.call(Method::PUT, "/api/v1/egress", Some(policy)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    for bad in [
        json!({"allow": [], "timeout_seconds": 0.0001}),
        json!({"allow": [], "max_response_bytes": 1u64 << 40}),
        json!({"allow": "x"}),
    ] {
        let (s, v) = app.call(Method::PUT, "/api/v1/egress", Some(bad.clone())).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {s} {v}"
        );
    }
    let (s, v) = app
        .call(
            Method::PUT,
            "/api/v1/egress",
            Some(json!({"allow": ["api.example.com"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.stop().await;
}

/// Host calls that reach the database are limited per execution: with no fuel budget by
/// default, a loop on them would otherwise keep the database busy until the deadline. Names
/// already resolved are remembered, so repeating one costs nothing.
#[tokio::test]
async fn lookups_are_limited_per_execution() {
    let app = start(Backend::Sqlite).await;
    let (s, v) = app
        .call(Method::PUT, "/api/v1/secrets/S1", Some(json!({"value": "x"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The same secret read 2,000 times is one look-up; 1,100 different names are not.
    let code = "import maestro\ndef f(input):\n    for _ in range(2000):\n        maestro.secrets.get('S1')\n    \
                n = 0\n    try:\n        for i in range(1100):\n            maestro.secrets.get(f'NONE_{i}', None)\n            \
                n += 1\n    except Exception as e:\n        return {'n': n, 'error': str(e)}\n    return {'n': n}\n";
    let out = run(&app, "reader", code, json!({})).await;
    assert_eq!(out["output"]["n"], 999, "S1 took one of the 1,000: {out}");
    assert!(
        out["output"]["error"].as_str().is_some_and(|e| e.contains("look-ups")),
        "{out}"
    );
    // One missing name asked for again and again is one look-up: a real function still
    // resolves after it.
    app.create("known", "def known(input):\n    return 7\n").await;
    let code = "def f(input):\n    for i in range(3000):\n        try:\n            nope_again({})\n        \
                except NameError:\n            pass\n    return known({})\n";
    let out = run(&app, "repeater", code, json!({})).await;
    assert_eq!(out["output"], 7, "{out}");
    // Calls to made-up names through the raw frame count as look-ups too.
    let code = "import _host, json\ndef f(input):\n    for i in range(1500):\n        \
                _host.call(json.dumps({'op': 'call', 'function': f'made_up_{i}', 'input': {}}).encode())\n    \
                try:\n        return known({})\n    except NameError:\n        return 'unresolved'\n";
    let out = run(&app, "caller_raw", code, json!({})).await;
    assert_eq!(out["output"], "unresolved", "{out}");
    // Unknown names: each distinct one is a look-up; past the limit none resolves, and the
    // call still ends promptly.
    let code = "def f(input):\n    missing = 0\n    for i in range(3000):\n        try:\n            \
                eval(f'nope_{i}')\n        except NameError:\n            missing += 1\n    try:\n        \
                k = known({})\n    except NameError:\n        k = None\n    return {'missing': missing, 'known': k}\n";
    let out = run(&app, "prober", code, json!({})).await;
    assert_eq!(out["output"]["missing"], 3000, "{out}");
    assert_eq!(
        out["output"]["known"],
        Value::Null,
        "past the limit even a real function no longer resolves: {out}"
    );
    // A fresh execution starts with its own count.
    let out = run(&app, "caller", "def f(input):\n    return known({})\n", json!({})).await;
    assert_eq!(out["output"], 7, "{out}");
    app.stop().await;
}
