//! What a newcomer hits first over HTTP: a method a route does not take, the server's root,
//! and an input over the configured limit.

mod common;

use common::{start_with, Backend};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn unknown_methods_root_and_input_limit() {
    let app = start_with(Backend::Sqlite, &["--max-input-bytes", "1000"]).await;
    for (method, path) in [
        (Method::DELETE, "/api/v1/functions"),
        (Method::PATCH, "/api/v1/functions/x"),
        (Method::PUT, "/api/v1/executions"),
        (Method::POST, "/health"),
        (Method::DELETE, "/openapi.json"),
    ] {
        let resp = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or("").to_string());
        assert!(
            allow.as_deref().is_some_and(|a| !a.is_empty()),
            "{method} {path}: Allow"
        );
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], "method_not_allowed", "{method} {path}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(method.as_str())));
    }

    // The root leads to the console; an unknown console asset is a JSON 404.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.get(format!("{}/", app.base)).send().await.expect("root");
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(resp.headers()["location"], "/ui/");
    let (s, v) = app.raw(Method::GET, "/ui/assets/nope.js", None, "").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found")),
        "{v}"
    );

    // An input over MAX_INPUT_BYTES names that limit, whether it is caught by its declared
    // length before the body is read, or while a chunked body (no declared length) is read.
    app.create("echo", "def echo(input):\n    return input\n").await;
    for size in [5_000, 2_000_000] {
        let body = json!({"pad": "x".repeat(size)}).to_string();
        let (s, v) = app
            .raw(Method::POST, "/api/v1/functions/echo/invoke", Some(&app.token), &body)
            .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("the limit is 1000 (MAX_INPUT_BYTES)"),
            "{size}: {message}"
        );
        let (s, v) = chunked(&app.base, "/api/v1/functions/echo/invoke", &app.token, body.as_bytes()).await;
        assert_eq!(s, 413, "chunked {size}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("MAX_INPUT_BYTES")),
            "{v}"
        );
    }
    // A function named `invoke` is updated under the general limit, not the input's.
    app.create("invoke", "def invoke(input):\n    return 1\n").await;
    let big = format!("def invoke(input):\n    return 1\n#{}\n", "x".repeat(5_000));
    let (s, v) = app
        .call(Method::PUT, "/api/v1/functions/invoke", Some(json!({"code": big})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.invoke("echo", json!({"a": 1})).await;
    assert_eq!((s, &v["output"]), (StatusCode::OK, &json!({"a": 1})), "{v}");
    app.stop().await;
}

/// POST `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw connection;
/// the status and the JSON answer.
async fn chunked(base: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut out = head.into_bytes();
    for c in body.chunks(64 << 10) {
        out.extend(format!("{:x}\r\n", c.len()).into_bytes());
        out.extend_from_slice(c);
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\n\r\n");
    // The server may answer and close before it has read everything: a failed write is fine.
    let _ = s.write_all(&out).await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
