//! Webhooks over HTTP against the real server and sandbox: management, the handler's
//! envelope and answers, authentication, async runs, limits.

mod common;

use std::time::Duration;

use common::{start, start_with, Backend, TestApp};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Webhook paths are one namespace across tenants (and the PostgreSQL test database outlives
/// a run), so each test's paths live under its own tenant id.
fn at(app: &TestApp, path: &str) -> String {
    format!("{}/{}", app.tenant, path.trim_start_matches('/'))
}

/// Create a webhook at `at(path)`; panics unless it is created.
async fn hook(app: &TestApp, mut body: Value) -> Value {
    body["path"] = json!(at(app, body["path"].as_str().unwrap_or("")));
    let (s, v) = app.post("/api/v1/webhooks", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// Send a request to a webhook path; returns status, headers and the body text.
async fn hit(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let url = format!("{}/api/v1/h/{}", app.base, at(app, path));
    let mut req = app.client.request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap_or_default())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A request written byte for byte (no client normalises its path); returns status and body.
async fn raw_request(app: &TestApp, request: &str) -> (u16, String) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading everything: keep what arrived.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn sign(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(message);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn count_webhooks(app: &TestApp) -> i64 {
    app.get("/api/v1/webhooks").await.1["total"].as_i64().unwrap_or(-1)
}

/// Create, list, show, update, rotate, delete; every bad input is a 4xx and writes nothing.
async fn management(b: Backend) {
    let app = start(b).await;
    app.create("target", "def target(input):\n    return input\n").await;
    let v = hook(
        &app,
        json!({"path": "/orders/new/", "function_name": "target", "description": "d"}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    let orders = at(&app, "orders/new");
    assert_eq!(v["path"], json!(orders), "slashes are trimmed: {v}");
    assert_eq!(v["url"], format!("/api/v1/h/{orders}"));
    assert_eq!(v["http_method"], "POST", "POST by default");
    assert_eq!(v["requires_auth"], false);
    assert_eq!(v["enabled"], true);
    assert_eq!(v["input_mode"], "request");
    assert!(
        v["secret"].as_str().unwrap().starts_with("whsec_"),
        "the secret is shown once: {v}"
    );

    let (s, shown) = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(shown.get("secret").is_none(), "never shown again: {shown}");
    assert_eq!(shown["function_name"], "target");
    let (_, listed) = app.get("/api/v1/webhooks").await;
    assert_eq!(listed["webhooks"][0]["id"], json!(id));
    assert!(listed["webhooks"][0].get("secret").is_none(), "{listed}");

    let (s, up) = app
        .call(
            Method::PUT,
            &format!("/api/v1/webhooks/{id}"),
            Some(json!({"http_method": "any", "max_concurrency": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{up}");
    assert_eq!(up["http_method"], "ANY");
    assert_eq!(up["max_concurrency"], 3);
    assert_eq!(up["description"], "d", "unset fields keep their value");
    let (_, up) = app
        .call(
            Method::PUT,
            &format!("/api/v1/webhooks/{id}"),
            Some(json!({"max_concurrency": null})),
        )
        .await;
    assert_eq!(up["max_concurrency"], Value::Null, "null resets to the default: {up}");

    let (s, rotated) = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            json!({"secret": "0123456789abcdef-mine"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rotated["secret"], "0123456789abcdef-mine");

    // Bad input: each a clear 4xx, none writes a row.
    let other = app.token_for("other");
    let cases = [
        (json!({"path": "a/../b", "function_name": "target"}), 422, "path"),
        (json!({"path": "%2e%2e/x", "function_name": "target"}), 422, "path"),
        (json!({"path": "a b", "function_name": "target"}), 422, "path"),
        (json!({"path": "x".repeat(201), "function_name": "target"}), 422, "path"),
        (json!({"path": "", "function_name": "target"}), 422, "path"),
        (json!({"function_name": "target"}), 422, "path"),
        (json!({"path": "p"}), 422, "function_name"),
        (json!({"path": "p", "function_name": "missing"}), 422, "function_name"),
        (
            json!({"path": "p", "function_name": "target", "http_method": "TRACE"}),
            422,
            "http_method",
        ),
        (
            json!({"path": "p", "function_name": "target", "input_mode": "raw"}),
            422,
            "input_mode",
        ),
        (
            json!({"path": "p", "function_name": "target", "max_concurrency": 0}),
            422,
            "max_concurrency",
        ),
        (
            json!({"path": "p", "function_name": "target", "secret": "short"}),
            422,
            "secret",
        ),
        (
            json!({"path": "p", "function_name": "target", "colour": "red"}),
            422,
            "colour",
        ),
        (json!({"path": orders, "function_name": "target"}), 409, "already"),
    ];
    for (body, status, needle) in cases {
        let (s, v) = app.post("/api/v1/webhooks", body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body} -> {v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(needle),
            "{body} -> {v}"
        );
    }
    let (s, v) = app
        .raw(Method::POST, "/api/v1/webhooks", Some(&app.token), "{not json")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(count_webhooks(&app).await, 1);

    // Paths are global: another tenant cannot take it, nor point a webhook at our function.
    let (s, _) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"path": orders, "function_name": "target"})),
        )
        .await;
    assert!(
        s == StatusCode::CONFLICT || s == StatusCode::UNPROCESSABLE_ENTITY,
        "{s}"
    );
    let (s, v) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"path": "theirs", "function_name": "target"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another tenant's function is not there: {v}"
    );
    let (s, _) = app
        .call_as(&other, Method::GET, &format!("/api/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "tenants do not see each other's webhooks");
    let (s, _) = app
        .call_as(&other, Method::DELETE, &format!("/api/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A function in use by a webhook is not deleted from under it.
    let (s, v) = app.call(Method::DELETE, "/api/v1/functions/target", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&orders));
    let (s, _) = app.call(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/webhooks/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = app.call(Method::DELETE, "/api/v1/functions/target", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.stop().await;
}

const ECHO: &str = r#"
def echo(input):
    h = input["headers"]
    return {
        "input": input,
        "user": h["X-User-ID"] if "X-USER-ID" in h else None,
        "user_get": h.get("x-user-id"),
        "header_type": type(h).__name__,
    }
"#;

/// The input envelope for each kind of body, the answers for wrong paths and methods, and
/// the execution each hit records.
async fn envelope_and_routing(b: Backend) {
    let app = start(b).await;
    app.create("echo", ECHO).await;
    let h = hook(
        &app,
        json!({"path": "in/echo", "function_name": "echo", "http_method": "POST"}),
    )
    .await;
    let hook_id = h["id"].as_str().unwrap();

    let (s, headers, text) = hit(
        &app,
        Method::POST,
        "in/echo?priority=high&tag=a&tag=b&async=false",
        &[("Content-Type", "application/json"), ("X-User-ID", "user123")],
        r#"{"document_url": "https://example.com/x.pdf"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let v = json_of(&text);
    let input = &v["input"];
    assert_eq!(input["body"], json!({"document_url": "https://example.com/x.pdf"}));
    assert_eq!(input["headers"]["x-user-id"], "user123");
    assert_eq!(v["user"], "user123", "any-case lookup: {v}");
    assert_eq!(v["user_get"], "user123");
    assert_eq!(v["header_type"], "Headers");
    assert_eq!(
        input["query"],
        json!({"priority": "high", "tag": ["a", "b"]}),
        "async is Maestro's: {v}"
    );
    assert_eq!(input["method"], "POST");
    assert_eq!(input["path"], json!(at(&app, "in/echo")));
    let execution_id = headers["x-maestro-execution-id"].to_str().unwrap().to_string();

    // The execution is recorded with its trigger and webhook.
    let (_, e) = app.get(&format!("/api/v1/executions/{execution_id}")).await;
    assert_eq!(e["trigger"], "webhook");
    assert_eq!(e["trigger_id"], hook_id);
    assert_eq!(e["status"], "succeeded");
    let (_, list) = app
        .get(&format!("/api/v1/executions?trigger_id={hook_id}&total=true"))
        .await;
    assert_eq!(list["total"], 1);

    // Form data becomes a dict, other text stays text, bytes come base64-encoded.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (_, _, text) = hit(&app, Method::POST, "in/echo", &form, "name=Ada&x=1&x=2").await;
    assert_eq!(json_of(&text)["input"]["body"], json!({"name": "Ada", "x": ["1", "2"]}));
    let (_, _, text) = hit(
        &app,
        Method::POST,
        "in/echo",
        &[("Content-Type", "text/csv")],
        "a,b\n1,2",
    )
    .await;
    assert_eq!(json_of(&text)["input"]["body"], "a,b\n1,2");
    let (_, _, text) = hit(&app, Method::POST, "in/echo", &[], vec![0xffu8, 0, 1]).await;
    let v = json_of(&text);
    assert_eq!(v["input"]["body"], "/wAB");
    assert_eq!(v["input"]["body_encoding"], "base64");
    let (_, _, text) = hit(&app, Method::POST, "in/echo", &[], "").await;
    assert_eq!(json_of(&text)["input"]["body"], Value::Null);

    // Malformed JSON under a JSON content type is refused before anything runs.
    let json_ct = [("Content-Type", "application/json")];
    let (s, _, text) = hit(&app, Method::POST, "in/echo", &json_ct, "{broken").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json_of(&text)["error"]["code"], "bad_request");

    // Wrong method, unknown path, disabled webhook, malformed paths.
    let (s, headers, text) = hit(&app, Method::GET, "in/echo", &[], "").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{text}");
    assert_eq!(headers["allow"], "POST");
    assert_eq!(json_of(&text)["error"]["code"], "method_not_allowed");
    let (s, _, text) = hit(&app, Method::POST, "in/nothing", &[], "").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");
    assert_eq!(json_of(&text)["error"]["code"], "not_found");
    for path in ["in/%2e%2e/echo", "in/../echo", "in/%2Fecho"] {
        let path = format!("/api/v1/h/{}", at(&app, path));
        let (status, text) = raw_request(
            &app,
            &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("invalid webhook path"), "{text}");
    }
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/webhooks/{hook_id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = hit(&app, Method::POST, "in/echo", &[], "").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a disabled webhook is not there");

    // Tokens are never handed to functions, whatever their tenant; other credentials are.
    let enable = Some(json!({"enabled": true}));
    app.call(Method::PUT, &format!("/api/v1/webhooks/{hook_id}"), enable)
        .await;
    for token in [app.token.clone(), app.token_for("visitor")] {
        let auth = format!("Bearer {token}");
        let (s, _, text) = hit(&app, Method::POST, "in/echo", &[("Authorization", &auth)], "").await;
        assert_eq!(s, StatusCode::OK, "{text}");
        assert!(
            json_of(&text)["input"]["headers"].get("authorization").is_none(),
            "{text}"
        );
    }
    let (_, _, text) = hit(
        &app,
        Method::POST,
        "in/echo",
        &[("Authorization", "Bearer not-ours")],
        "",
    )
    .await;
    assert_eq!(json_of(&text)["input"]["headers"]["authorization"], "Bearer not-ours");
    let (s, headers, _) = hit(&app, Method::OPTIONS, "in/echo", &[], "").await;
    assert_eq!(
        (s, headers["allow"].to_str().unwrap()),
        (StatusCode::NO_CONTENT, "POST"),
        "OPTIONS runs nothing"
    );

    // `input_mode: body` hands over just the body; `ANY` takes every method.
    app.create(
        "hello_world",
        "def hello_world(input):\n    return f\"Hello, {input.get('name', 'World')}!\"\n",
    )
    .await;
    hook(
        &app,
        json!({"path": "hello", "function_name": "hello_world", "http_method": "ANY", "input_mode": "body"}),
    )
    .await;
    let (s, _, text) = hit(&app, Method::POST, "hello", &json_ct, r#"{"name": "Claude"}"#).await;
    assert_eq!((s, json_of(&text)), (StatusCode::OK, json!("Hello, Claude!")));
    let (s, _, text) = hit(&app, Method::DELETE, "hello", &[], "").await;
    assert_eq!((s, json_of(&text)), (StatusCode::OK, json!("Hello, World!")));
    let (s, _, text) = hit(&app, Method::HEAD, "hello", &[], "").await;
    assert_eq!((s, text.as_str()), (StatusCode::OK, ""));
    // In body mode a body's own `headers` key is data, left as sent.
    app.create("raw_body", "def raw_body(input):\n    return input\n").await;
    hook(
        &app,
        json!({"path": "raw", "function_name": "raw_body", "input_mode": "body"}),
    )
    .await;
    let sent = json!({"headers": {"Foo": 1, "foo": 2}});
    let (_, _, text) = hit(&app, Method::POST, "raw", &json_ct, sent.to_string()).await;
    assert_eq!(json_of(&text), sent);
    app.stop().await;
}

const SHAPED: &str = r#"
import maestro

def shaped(input):
    kind = input["query"].get("kind")
    if kind == "text":
        return maestro.http_response("created\n", status_code=201, headers={"X-Order": 7, "Content-Type": "text/plain"})
    if kind == "raw":
        return {"__http_response__": {"status_code": 404, "body": {"missing": True}}}
    if kind == "bad":
        return maestro.http_response("x", status_code=1000)
    if kind == "boom":
        raise ValueError("secret detail " + input["headers"].get("x-token", ""))
    if kind == "slow":
        while True:
            pass
    return {"plain": True}
"#;

/// Shaped answers, function errors (details only for the owner), timeouts.
async fn answers_and_errors(b: Backend) {
    let app = start(b).await;
    app.create_with(json!({"name": "shaped", "code": SHAPED, "timeout_seconds": 1, "fuel": 100_000_000_000u64}))
        .await;
    hook(
        &app,
        json!({"path": "shaped", "function_name": "shaped", "http_method": "ANY"}),
    )
    .await;

    let (s, headers, text) = hit(&app, Method::GET, "shaped?kind=text", &[], "").await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    assert_eq!(headers["x-order"], "7");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(text, "created\n");
    let (s, _, text) = hit(&app, Method::GET, "shaped?kind=raw", &[], "").await;
    assert_eq!((s, json_of(&text)), (StatusCode::NOT_FOUND, json!({"missing": true})));
    let (s, headers, text) = hit(&app, Method::GET, "shaped", &[], "").await;
    assert_eq!((s, json_of(&text)), (StatusCode::OK, json!({"plain": true})));
    assert_eq!(headers["content-type"], "application/json");

    let (s, _, text) = hit(&app, Method::GET, "shaped?kind=bad", &[], "").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{text}");
    assert_eq!(json_of(&text)["error"]["code"], "invalid_response");

    // An anonymous caller learns the execution id, never the message or the traceback.
    let (s, _, text) = hit(&app, Method::GET, "shaped?kind=boom", &[("X-Token", "t0p")], "").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    let v = json_of(&text);
    assert_eq!(v["error"]["code"], "function_failed");
    let execution_id = v["error"]["execution_id"].as_str().unwrap().to_string();
    assert!(!text.contains("secret detail") && !text.contains("Traceback"), "{text}");
    let (_, e) = app.get(&format!("/api/v1/executions/{execution_id}")).await;
    assert_eq!(e["status"], "failed");
    assert!(e["error"]["traceback"].as_str().unwrap().contains("shaped.py"), "{e}");

    // The owner (a token of the tenant) gets the whole error record.
    let auth = format!("Bearer {}", app.token);
    let (s, _, text) = hit(&app, Method::GET, "shaped?kind=boom", &[("Authorization", &auth)], "").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let v = json_of(&text);
    assert!(v["error"]["message"].as_str().unwrap().contains("secret detail"), "{v}");
    assert!(
        v["error"]["details"]["traceback"]
            .as_str()
            .unwrap()
            .contains("ValueError"),
        "{v}"
    );

    let (s, _, text) = hit(&app, Method::GET, "shaped?kind=slow", &[], "").await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert_eq!(json_of(&text)["error"]["code"], "function_timeout");
    app.stop().await;
}

/// `requires_auth`: a token of the owning tenant, or an HMAC signature of the body.
async fn authentication(b: Backend) {
    let app = start(b).await;
    app.create(
        "guarded",
        "def guarded(input):\n    return {'auth': input['headers'].get('authorization')}\n",
    )
    .await;
    let secret = "a-very-secret-key-123";
    hook(
        &app,
        json!({"path": "guarded", "function_name": "guarded", "requires_auth": true, "secret": secret}),
    )
    .await;
    let body = r#"{"event":"paid"}"#;

    let (s, _, text) = hit(&app, Method::POST, "guarded", &[], body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
    assert!(json_of(&text)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-maestro-signature"));

    let auth = format!("Bearer {}", app.token);
    let (s, _, text) = hit(&app, Method::POST, "guarded", &[("Authorization", &auth)], body).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(
        json_of(&text)["auth"],
        Value::Null,
        "a verified token is not handed to the function"
    );
    let other = format!("Bearer {}", app.token_for("x"));
    let (s, _, _) = hit(&app, Method::POST, "guarded", &[("Authorization", &other)], body).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's token learns nothing");
    let (s, _, _) = hit(
        &app,
        Method::POST,
        "guarded",
        &[("Authorization", "Bearer forged")],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let good = sign(secret, body.as_bytes());
    let (s, _, text) = hit(&app, Method::POST, "guarded", &[("X-Maestro-Signature", &good)], body).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    for bad in [
        sign("wrong-secret-wrong-secret", body.as_bytes()),
        sign(secret, b"other body"),
        "sha256=zz".into(),
        "deadbeef".into(),
    ] {
        let (s, _, text) = hit(&app, Method::POST, "guarded", &[("X-Maestro-Signature", &bad)], body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}: {text}");
    }

    // A `require_timestamp` webhook signs `<ts>.<body>`; stale timestamps are replays, and a
    // captured signature cannot be replayed without its timestamp either.
    hook(
        &app,
        json!({"path": "guarded-ts", "function_name": "guarded", "requires_auth": true,
        "require_timestamp": true, "secret": secret}),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let ts = now.to_string();
    let signed = sign(secret, format!("{ts}.{body}").as_bytes());
    let headers = [
        ("X-Maestro-Signature", signed.as_str()),
        ("X-Maestro-Timestamp", ts.as_str()),
    ];
    let (s, _, text) = hit(&app, Method::POST, "guarded-ts", &headers, body).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let (s, _, text) = hit(
        &app,
        Method::POST,
        "guarded-ts",
        &[("X-Maestro-Signature", &signed)],
        format!("{ts}.{body}"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the same signature without its timestamp: {text}"
    );
    let (s, _, _) = hit(
        &app,
        Method::POST,
        "guarded-ts",
        &[("X-Maestro-Signature", &good)],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "an untimestamped signature");
    let old = (now - 3600).to_string();
    let signed = sign(secret, format!("{old}.{body}").as_bytes());
    let headers = [
        ("X-Maestro-Signature", signed.as_str()),
        ("X-Maestro-Timestamp", old.as_str()),
    ];
    let (s, _, text) = hit(&app, Method::POST, "guarded-ts", &headers, body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("replayed"), "{text}");
    // An unrelated Authorization header does not hide a valid signature.
    let (s, _, text) = hit(
        &app,
        Method::POST,
        "guarded",
        &[("Authorization", "Basic eDp5"), ("X-Maestro-Signature", &good)],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(json_of(&text)["auth"], "Basic eDp5", "and reaches the function");

    // Only the four accepted requests ran.
    let (_, list) = app.get("/api/v1/executions?function=guarded&total=true").await;
    assert_eq!(list["total"], 4, "{list}");
    app.stop().await;
}

const SLOW: &str = "import time\n\ndef slow(input):\n    time.sleep(input['body'].get('seconds', 1) if input['body'] else 1)\n    return 'done'\n";

/// Poll an execution until it leaves `running`.
async fn finished(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let (s, e) = app.get(&format!("/api/v1/executions/{id}")).await;
        if s == StatusCode::OK && e["status"] != "running" {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} did not finish");
}

/// Async runs, a client hanging up mid-run, the concurrency cap and the body cap.
async fn async_and_limits(b: Backend) {
    let app = start_with(b, &["--webhook-max-body-bytes", "65536"]).await;
    app.create_with(json!({"name": "slow", "code": SLOW, "timeout_seconds": 10}))
        .await;
    let h = hook(
        &app,
        json!({"path": "slow", "function_name": "slow", "max_concurrency": 1}),
    )
    .await;
    let json_ct = [("Content-Type", "application/json")];

    let (s, headers, text) = hit(&app, Method::POST, "slow?async=true", &json_ct, r#"{"seconds": 0.3}"#).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{text}");
    let v = json_of(&text);
    assert_eq!(v["status"], "queued", "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"], format!("/api/v1/executions/{id}").as_str());
    let (s, e) = app.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(s, StatusCode::OK, "visible at once: {e}");
    assert!(
        ["queued", "running", "succeeded"].contains(&e["status"].as_str().unwrap()),
        "{e}"
    );
    assert_eq!(e["attempt"], 1, "{e}");
    let (_, list) = app
        .get(&format!(
            "/api/v1/executions?trigger_id={}&total=true",
            h["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(list["executions"][0]["id"], json!(id), "and listed: {list}");
    // A queued run holds no slot of the webhook's cap (the queue bounds the backlog): a
    // sync request goes through beside it.
    let (s, _, text) = hit(&app, Method::POST, "slow", &json_ct, r#"{"seconds": 0}"#).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let e = finished(&app, &id).await;
    assert_eq!(
        (e["status"].clone(), e["output"].clone()),
        (json!("succeeded"), json!("done"))
    );

    // A sync run holds its slot too.
    let (app2, path2) = (
        app.client.clone(),
        format!("{}/api/v1/h/{}", app.base, at(&app, "slow")),
    );
    let first = tokio::spawn(async move {
        app2.post(path2)
            .header("Content-Type", "application/json")
            .body(r#"{"seconds": 0.8}"#)
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _, _) = hit(&app, Method::POST, "slow", &json_ct, r#"{"seconds": 0}"#).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);

    // The webhook's own async setting, and `?async=false` overriding it.
    let hook_id = h["id"].as_str().unwrap();
    app.call(
        Method::PUT,
        &format!("/api/v1/webhooks/{hook_id}"),
        Some(json!({"async": true, "max_concurrency": 4})),
    )
    .await;
    let (s, _, _) = hit(&app, Method::POST, "slow", &json_ct, r#"{"seconds": 0}"#).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, text) = hit(&app, Method::POST, "slow?async=false", &json_ct, r#"{"seconds": 0}"#).await;
    assert_eq!((s, json_of(&text)), (StatusCode::OK, json!("done")));
    let (s, _, _) = hit(&app, Method::POST, "slow?async=maybe", &json_ct, "{}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A client that hangs up mid-run loses nothing: the run finishes and is recorded.
    app.call(
        Method::PUT,
        &format!("/api/v1/webhooks/{hook_id}"),
        Some(json!({"async": false})),
    )
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let sent = impatient
        .post(format!("{}/api/v1/h/{}", app.base, at(&app, "slow")))
        .header("Content-Type", "application/json")
        .body(r#"{"seconds": 1}"#)
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, list) = app.get("/api/v1/executions?function=slow&limit=1&total=true").await;
    let last = &list["executions"][0];
    assert_eq!(last["input"]["body"], json!({"seconds": 1}));
    assert_eq!(
        finished(&app, last["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );

    // Bodies over the cap: a declared 10 MB, and one streamed in chunks with no length.
    let head = format!(
        "POST /api/v1/h/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
        at(&app, "slow")
    );
    let (status, text) = raw_request(&app, &format!("{head}Content-Length: {}\r\n\r\n", 10 << 20)).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    let chunk = "y".repeat(40_000);
    let chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n9c40\r\n{chunk}\r\n9c40\r\n{chunk}\r\n0\r\n\r\n");
    let (status, text) = raw_request(&app, &chunked).await;
    assert_eq!(status, 413, "{text}");
    app.stop().await;
}

both_backends!(
    management,
    envelope_and_routing,
    answers_and_errors,
    authentication,
    async_and_limits
);
