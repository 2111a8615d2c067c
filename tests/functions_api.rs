//! The functions API over HTTP: CRUD, versions, rollback, validation, auth.

mod common;

use common::{start, Backend};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const HELLO: &str = "def hello_world(input):\n    return f\"Hello, {input.get('name', 'World')}!\"\n";

/// The seed's examples 1-3 (string, object, boolean outputs) through create and invoke.
async fn seed_examples(b: Backend) {
    let app = start(b).await;
    app.create_with(json!({
        "name": "hello_world", "description": "Simple hello world function that returns a string",
        "code": HELLO,
        "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "output_schema": {"type": "string"}
    }))
    .await;
    app.create_with(json!({
        "name": "user_info",
        "code": "def user_info(input):\n    return {\"user\": input[\"name\"], \"age\": input[\"age\"], \"adult\": input[\"age\"] >= 18}",
        "input_schema": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]},
        "output_schema": {"type": "object", "properties": {"user": {"type": "string"}, "age": {"type": "integer"}, "adult": {"type": "boolean"}}, "required": ["user", "age", "adult"]}
    }))
    .await;
    app.create_with(json!({
        "name": "is_even", "code": "def is_even(input):\n    return input[\"number\"] % 2 == 0",
        "input_schema": {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
        "output_schema": {"type": "boolean"}
    }))
    .await;

    let (s, v) = app.invoke("hello_world", json!({"name": "Claude"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"], "Hello, Claude!");
    assert!(v["fuel_used"].as_u64().unwrap() > 0);
    assert!(v["execution_id"].as_str().is_some());
    assert!(v["duration_ms"].as_f64().unwrap() > 0.0);

    let (_, v) = app.invoke("user_info", json!({"name": "Ada", "age": 36})).await;
    assert_eq!(v["output"], json!({"user": "Ada", "age": 36, "adult": true}));
    let (_, v) = app.invoke("is_even", json!({"number": 7})).await;
    assert_eq!(v["output"], json!(false));

    // Input schema violation: 422 with the validation errors, no execution.
    let (s, v) = app.invoke("user_info", json!({"name": "Ada"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "validation_failed");
    assert!(
        v["error"]["details"][0]["message"].as_str().unwrap().contains("age"),
        "{v}"
    );

    let (s, list) = app.get("/api/v1/functions").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["total"], 3);
    let names: Vec<&str> = list["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello_world", "is_even", "user_info"]);
    app.stop().await;
}

async fn versions_and_rollback(b: Backend) {
    let app = start(b).await;
    let v = app.create("greet", "def greet(input):\n    return 'v1'\n").await;
    assert_eq!(v["version"], 1);
    let (s, v) = app
        .call(
            Method::PUT,
            "/api/v1/functions/greet",
            Some(json!({"code": "def greet(input):\n    return 'v2'\n", "description": "second"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 2);
    assert_eq!(v["description"], "second");
    assert_eq!(app.invoke("greet", json!({})).await.1["output"], "v2");

    // A PUT that changes only the description keeps the code, and still makes a version.
    let (_, v) = app
        .call(
            Method::PUT,
            "/api/v1/functions/greet",
            Some(json!({"description": "third"})),
        )
        .await;
    assert_eq!(v["version"], 3);
    assert!(v["code"].as_str().unwrap().contains("v2"));

    let (s, v) = app.post("/api/v1/functions/greet/rollback/1", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 4, "a rollback is itself recorded as a new version");
    assert_eq!(app.invoke("greet", json!({})).await.1["output"], "v1");

    let (_, h) = app.get("/api/v1/functions/greet/versions").await;
    assert_eq!(h["current_version"], 4);
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 4);
    assert_eq!(versions[0]["note"], "rollback to version 1");
    assert_eq!(versions[0]["code_sha256"], versions[3]["code_sha256"]);

    let (s, v) = app.post("/api/v1/functions/greet/rollback/99", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = app.post("/api/v1/functions/greet/rollback/abc", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A failed rollback changed nothing.
    assert_eq!(app.get("/api/v1/functions/greet").await.1["version"], 4);

    let (s, _) = app.call(Method::DELETE, "/api/v1/functions/greet", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/functions/greet").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/v1/functions/greet/versions").await.0,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

/// Every bad request gets a clear 4xx JSON error and changes nothing.
async fn bad_input(b: Backend) {
    let app = start(b).await;
    app.create("existing", "def existing(input):\n    return 1\n").await;
    let long_code = format!("def big(input):\n    return 1\n#{}\n", "x".repeat(300 * 1024));
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("missing code", json!({"name": "f"}), 422, "code"),
        ("missing name", json!({"code": "def f(input): pass"}), 422, "name"),
        (
            "duplicate",
            json!({"name": "existing", "code": "def existing(input): pass"}),
            409,
            "already exists",
        ),
        (
            "not an identifier",
            json!({"name": "my-func", "code": "def f(input): pass"}),
            422,
            "identifier",
        ),
        (
            "digit first",
            json!({"name": "1f", "code": "def f(input): pass"}),
            422,
            "identifier",
        ),
        (
            "keyword",
            json!({"name": "class", "code": "def f(input): pass"}),
            422,
            "keyword",
        ),
        (
            "builtin",
            json!({"name": "print", "code": "def print(input): pass"}),
            422,
            "builtin",
        ),
        (
            "no def",
            json!({"name": "f", "code": "def g(input):\n    return 1\n"}),
            422,
            "does not define",
        ),
        (
            "syntax error",
            json!({"name": "f", "code": "def f(input):\n    return (1 +\n"}),
            422,
            "line",
        ),
        (
            "two args",
            json!({"name": "f", "code": "def f(a, b):\n    return 1\n"}),
            422,
            "exactly one argument",
        ),
        (
            "async def",
            json!({"name": "f", "code": "async def f(input):\n    return 1\n"}),
            422,
            "async",
        ),
        (
            "invalid schema",
            json!({"name": "f", "code": "def f(input): pass", "input_schema": {"type": "nonsense"}}),
            422,
            "input_schema",
        ),
        (
            "oversized code",
            json!({"name": "big", "code": long_code}),
            413,
            "limit",
        ),
        (
            "unknown field",
            json!({"name": "f", "code": "def f(input): pass", "inputschema": {}}),
            422,
            "unknown field",
        ),
        (
            "bad timeout",
            json!({"name": "f", "code": "def f(input): pass", "timeout_seconds": 100000}),
            422,
            "timeout_seconds",
        ),
        (
            "bad isolation",
            json!({"name": "f", "code": "def f(input): pass", "isolation": "shared"}),
            422,
            "isolation",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (s, v) = app.post("/api/v1/functions", body).await;
        assert_eq!(s.as_u16(), status, "{what}: {v}");
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error code in {v}"));
        assert!(!code.is_empty());
        let text = v.to_string();
        assert!(text.contains(needle), "{what}: expected {needle:?} in {v}");
    }
    // The syntax error names its line.
    let (_, v) = app
        .post(
            "/api/v1/functions",
            json!({"name": "f", "code": "x = 1\ndef f(input):\n    return (1 +\n"}),
        )
        .await;
    assert_eq!(v["error"]["details"][0]["line"], 3, "{v}");

    // Malformed JSON is a 400.
    let (s, v) = app
        .raw(Method::POST, "/api/v1/functions", Some(&app.token), "{\"name\": ")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    let (s, _) = app
        .raw(
            Method::POST,
            "/api/v1/functions/existing/invoke",
            Some(&app.token),
            "{nope",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Unknown function.
    let (s, v) = app.invoke("nope", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/functions/nope",
            Some(json!({"code": "def nope(input): pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.call(Method::DELETE, "/api/v1/functions/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A bad update leaves the function as it was.
    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/functions/existing",
            Some(json!({"code": "def existing(input) return"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, v) = app.get("/api/v1/functions/existing").await;
    assert_eq!(v["version"], 1);

    // Oversized input.
    let big = json!({"blob": "x".repeat(1_200_000)});
    let (s, v) = app.invoke("existing", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");

    // Nothing was created by any of the above.
    assert_eq!(app.get("/api/v1/functions").await.1["total"], 1);
    app.stop().await;
}

/// Missing, expired, forged and `alg: none` tokens are refused; tenants cannot see each other.
async fn auth_and_tenancy(b: Backend) {
    let app = start(b).await;
    app.create("mine", "def mine(input):\n    return 'secret'\n").await;
    let (s, v) = app.raw(Method::GET, "/api/v1/functions", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");

    let forged = maestro::auth::Keys::new("wrong-secret")
        .mint(&app.tenant, "x@y", true, std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        app.raw(Method::GET, "/api/v1/functions", Some(&forged), "").await.0,
        StatusCode::UNAUTHORIZED
    );

    use base64_like::b64;
    let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(&format!(r#"{{"sub":"x","tenant":"{}","exp":9999999999}}"#, app.tenant));
    for none in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        assert_eq!(
            app.raw(Method::GET, "/api/v1/functions", Some(&none), "").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let expired = {
        let claims = json!({"sub": "x", "email": "x", "tenant": app.tenant, "exp": 1_000_000});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (s, v) = app.raw(Method::GET, "/api/v1/functions", Some(&expired), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["message"].as_str().unwrap().contains("xpired"), "{v}");

    // Another tenant sees none of it: 404, never the data.
    let other = app.token_for("someone-else");
    let (s, v) = app.call_as(&other, Method::GET, "/api/v1/functions", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 0);
    for (m, p) in [
        (Method::GET, "/api/v1/functions/mine"),
        (Method::POST, "/api/v1/functions/mine/invoke"),
        (Method::GET, "/api/v1/functions/mine/versions"),
        (Method::DELETE, "/api/v1/functions/mine"),
    ] {
        let (s, v) = app.call_as(&other, m, p, Some(json!({}))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}: {v}");
        assert!(!v.to_string().contains("secret"));
    }
    // The same name can exist in both tenants.
    let (s, _) = app
        .call_as(
            &other,
            Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "mine", "code": "def mine(input):\n    return 'theirs'\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(app.invoke("mine", json!({})).await.1["output"], "secret");
    app.stop().await;
}

mod base64_like {
    /// URL-safe base64 without padding, enough to hand-craft a JWT.
    pub fn b64(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..=c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

both_backends!(seed_examples, versions_and_rollback, bad_input, auth_and_tenancy);
