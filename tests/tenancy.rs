//! Multi-tenancy over HTTP: subtenants and grants, which tenant a request acts in, tokens
//! from an external issuer, a walk of every route across tenants, quotas and fairness, audit.

mod common;

use std::time::Duration;

use common::{start, start_with, Backend, TestApp};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An HS256 token with exactly these claims, signed with the test secret.
fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap()
}

/// A call with a token and optional `X-Subtenant`.
async fn call(
    app: &TestApp,
    token: &str,
    sub: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token);
    if let Some(s) = sub {
        req = req.header("X-Subtenant", s);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn admin_token(app: &TestApp) -> String {
    app.keys
        .mint(&app.tenant, "root@example.com", true, Duration::from_secs(600))
        .unwrap()
}

/// A token with no tenant claim: the tenant comes from the user's grants.
fn user_token(email: &str) -> String {
    hs256(json!({"sub": email, "email": email, "exp": now() + 600}))
}

const ECHO: &str = "def echo(input):\n    return input\n";

async fn subtenants_and_grants(b: Backend) {
    let app = start(b).await;
    let admin = admin_token(&app);
    let (a, b2) = (format!("{}-a", app.tenant), format!("{}-b", app.tenant));
    let user = format!("user-{}@company-a.com", &app.tenant[2..10]);
    let user_tok = user_token(&user);

    // Only admins manage subtenants; bad ids and duplicates write nothing.
    let (s, _) = app.post("/api/v1/subtenants", json!({"subtenant_id": a})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (id, body) in [
        (&a, json!({"subtenant_id": a, "description": "Company A"})),
        (&b2, json!({"subtenant_id": b2})),
    ] {
        let (s, v) = call(&app, &admin, None, Method::POST, "/api/v1/subtenants", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{id}: {v}");
    }
    for (bad, status) in [
        (json!({"subtenant_id": a}), StatusCode::CONFLICT),
        (json!({"subtenant_id": "../etc"}), StatusCode::BAD_REQUEST),
        (json!({"subtenant_id": "a/b"}), StatusCode::BAD_REQUEST),
        (json!({"subtenant_id": ""}), StatusCode::BAD_REQUEST),
        (
            json!({"subtenant_id": "ok-id", "quotas": {"max_functions": -1}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"subtenant_id": "ok-id", "quotas": {"colour": 1}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, v) = call(
            &app,
            &admin,
            None,
            Method::POST,
            "/api/v1/subtenants",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, status, "{bad} -> {v}");
    }
    assert_eq!(
        call(&app, &admin, None, Method::GET, "/api/v1/subtenants/ok-id", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Grants: emails are checked and stored lower-case; roles are member or viewer.
    let grant = |sub: &str| format!("/api/v1/subtenants/{sub}/grant-access");
    let (s, g) = call(
        &app,
        &admin,
        None,
        Method::POST,
        &grant(&a),
        Some(json!({"user_email": user.to_uppercase()})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(
        (g["user_email"].as_str(), g["role"].as_str()),
        (Some(user.as_str()), Some("member"))
    );
    for bad in [
        json!({"user_email": "not-an-email"}),
        json!({"user_email": "a@b"}),
        json!({"user_email": user, "role": "owner"}),
    ] {
        let (s, v) = call(&app, &admin, None, Method::POST, &grant(&a), Some(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} -> {v}");
    }
    let (s, _) = call(
        &app,
        &admin,
        None,
        Method::POST,
        &grant("nope-x"),
        Some(json!({"user_email": user})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, m) = call(
        &app,
        &admin,
        None,
        Method::GET,
        &format!("/api/v1/subtenants/{a}/members"),
        None,
    )
    .await;
    assert_eq!(m["members"].as_array().unwrap().len(), 1, "{m}");

    // One grant: the user acts there without saying so.
    let (s, me) = call(&app, &user_tok, None, Method::GET, "/api/v1/me", None).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(
        (me["tenant"].as_str(), me["role"].as_str()),
        (Some(a.as_str()), Some("member"))
    );
    let (s, _) = call(
        &app,
        &user_tok,
        None,
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "echo", "code": ECHO})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, list) = call(&app, &admin, Some(&a), Method::GET, "/api/v1/functions", None).await;
    assert_eq!(list["total"], 1, "the admin sees it in the subtenant: {list}");
    let (s, v) = call(&app, &user_tok, Some(&b2), Method::GET, "/api/v1/functions", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no grant there: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&b2));

    // Two grants: the user must choose; a viewer only reads.
    call(
        &app,
        &admin,
        None,
        Method::POST,
        &grant(&b2),
        Some(json!({"user_email": user, "role": "viewer"})),
    )
    .await;
    let (s, v) = call(&app, &user_tok, None, Method::GET, "/api/v1/functions", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("X-Subtenant")
            || v["error"]["message"].as_str().unwrap().contains("x-subtenant"),
        "{v}"
    );
    let (s, v) = call(&app, &user_tok, Some(&b2), Method::GET, "/api/v1/functions", None).await;
    assert_eq!((s, v["total"].clone()), (StatusCode::OK, json!(0)));
    let (s, _) = call(
        &app,
        &user_tok,
        Some(&b2),
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "echo", "code": ECHO})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "viewers cannot write");
    // Nor run code, once or in a session.
    for (path, body) in [("/api/v1/run", json!({"code": "1"})), ("/api/v1/sessions", json!({}))] {
        let (s, v) = call(&app, &user_tok, Some(&b2), Method::POST, path, Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "viewers cannot run code: {path} {v}");
    }
    let (s, _) = call(
        &app,
        &admin,
        Some("no-such-subtenant"),
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "echo", "code": ECHO})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an admin's typo does not start a phantom tenant"
    );
    let (s, _) = call(&app, &user_tok, Some("../x"), Method::GET, "/api/v1/functions", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Nobody else: a user without grants is told what is missing.
    let (s, v) = call(
        &app,
        &user_token("stranger@example.com"),
        None,
        Method::GET,
        "/api/v1/functions",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["error"]["message"].as_str().unwrap().contains("no grant"), "{v}");

    // Revoke, then delete: refused while it owns functions, unless forced.
    let (s, _) = call(
        &app,
        &admin,
        None,
        Method::POST,
        &format!("/api/v1/subtenants/{b2}/revoke-access"),
        Some(json!({"user_email": user})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&app, &user_tok, Some(&b2), Method::GET, "/api/v1/functions", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let path = format!("/api/v1/subtenants/{a}");
    let (s, v) = call(&app, &admin, None, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        call(&app, &admin, Some(&a), Method::GET, "/api/v1/functions", None)
            .await
            .1["total"],
        1
    );
    let (s, _) = call(&app, &admin, None, Method::DELETE, &format!("{path}?force=true"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        app.state().store.tenant(&a).count_functions().await.unwrap(),
        0,
        "everything it owned is gone"
    );
    let (s, _) = call(&app, &admin, Some(&a), Method::GET, "/api/v1/functions", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "and the subtenant itself");
    assert_eq!(
        call(&app, &user_tok, None, Method::GET, "/api/v1/me", None).await.0,
        StatusCode::FORBIDDEN,
        "and its grants"
    );

    // The audit trail has who did what.
    let (s, _) = app.get("/api/v1/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, audit) = call(
        &app,
        &admin,
        None,
        Method::GET,
        &format!("/api/v1/audit?tenant={a}"),
        None,
    )
    .await;
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (action, actor) in [
        ("subtenant.create", "root@example.com"),
        ("grant.create", "root@example.com"),
        ("function.create", user.as_str()),
        ("subtenant.delete", "root@example.com"),
    ] {
        assert!(
            actions.contains(&(action.to_string(), actor.to_string())),
            "{action} by {actor}: {actions:?}"
        );
    }
    call(
        &app,
        &admin,
        None,
        Method::DELETE,
        &format!("/api/v1/subtenants/{b2}?force=true"),
        None,
    )
    .await;
    app.stop().await;
}

/// Sign `claims` with a fixture key.
fn signed(alg: Algorithm, key_file: &str, kid: Option<&str>, claims: Value) -> String {
    let pem = std::fs::read(fixture(key_file)).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, &claims, &key).unwrap()
}

/// Serve `body` to every HTTP request on a local port (a stand-in for an issuer's JWKS URL).
async fn serve_once_more(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

async fn external_issuer(b: Backend) {
    let iss = "https://census.example";
    let jwks_url = serve_once_more(std::fs::read_to_string(fixture("jwks.json")).unwrap()).await;
    let app = start_with(
        b,
        &[
            "--auth-jwks",
            &jwks_url,
            "--auth-issuer",
            iss,
            "--auth-audience",
            "maestro",
        ],
    )
    .await;
    let tenant = app.tenant.clone();
    let good = |extra: Value| {
        let mut c = json!({"sub": "u1", "email": "u1@example.com", "tenant": tenant, "iss": iss, "aud": "maestro",
                           "exp": now() + 600, "nbf": now() - 10});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let ok_rsa = signed(Algorithm::RS256, "rsa_private.pem", Some("test-rsa-1"), good(json!({})));
    let ok_ec = signed(Algorithm::ES256, "ec_private.pem", Some("test-ec-1"), good(json!({})));
    for t in [&ok_rsa, &ok_ec, &app.token] {
        let (s, v) = call(&app, t, None, Method::GET, "/api/v1/me", None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let rsa_public = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &good(json!({})),
        &EncodingKey::from_secret(&rsa_public),
    )
    .unwrap();
    let none = {
        let h = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
        format!("{h}.{}.", base64_url(good(json!({})).to_string().as_bytes()))
    };
    let refused = [
        (
            "wrong issuer",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                good(json!({"iss": "https://evil.example"})),
            ),
        ),
        (
            "wrong audience",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                good(json!({"aud": "other"})),
            ),
        ),
        (
            "expired",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                good(json!({"exp": now() - 3600})),
            ),
        ),
        (
            "not yet valid",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                good(json!({"nbf": now() + 3600})),
            ),
        ),
        (
            "forged",
            signed(
                Algorithm::RS256,
                "rsa_other_private.pem",
                Some("test-rsa-1"),
                good(json!({})),
            ),
        ),
        (
            "unknown kid",
            signed(Algorithm::RS256, "rsa_private.pem", Some("nope"), good(json!({}))),
        ),
        (
            "EC key id for an RSA token",
            signed(Algorithm::RS256, "rsa_private.pem", Some("test-ec-1"), good(json!({}))),
        ),
        (
            "no identity",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                json!({"iss": iss, "aud": "maestro", "exp": now() + 600, "tenant": "x"}),
            ),
        ),
        ("HS256 signed with the public key", confused),
        (
            "no audience",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                without(good(json!({})), "aud"),
            ),
        ),
        (
            "no issuer",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                without(good(json!({})), "iss"),
            ),
        ),
        (
            "unverified email",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("test-rsa-1"),
                good(json!({"email_verified": false})),
            ),
        ),
        ("alg none", none),
    ];
    for (what, token) in &refused {
        let (s, v) = call(&app, token, None, Method::GET, "/api/v1/me", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {v}");
    }
    app.stop().await;

    // A PEM key instead of a JWKS, and other claim names.
    let app = start_with(
        b,
        &[
            "--auth-public-key",
            &fixture("rsa_public.pem"),
            "--auth-email-claim",
            "upn",
            "--auth-tenant-claim",
            "org",
            "--auth-role-claim",
            "roles",
            "--auth-admin-role",
            "admin",
            "--auth-issuer",
            iss,
            "--auth-audience",
            "maestro",
        ],
    )
    .await;
    let claims = json!({"sub": "x", "upn": "Boss@Example.com", "org": app.tenant, "roles": ["reader", "admin"],
                        "exp": now() + 600, "iss": iss, "aud": "maestro"});
    let boss = signed(Algorithm::RS256, "rsa_private.pem", None, claims.clone());
    let (s, me) = call(&app, &boss, None, Method::GET, "/api/v1/me", None).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(
        (me["email"].as_str(), me["tenant"].as_str(), me["admin"].as_bool()),
        (Some("boss@example.com"), Some(app.tenant.as_str()), Some(true))
    );
    let ec = signed(Algorithm::ES256, "ec_private.pem", None, claims);
    assert_eq!(
        call(&app, &ec, None, Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED,
        "not the configured key type"
    );
    app.stop().await;

    // Without an external issuer, RS256 tokens are refused outright.
    let app = start(b).await;
    assert_eq!(
        call(&app, &ok_rsa, None, Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().map(|o| o.remove(key));
    claims
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every route, called by tenant B with tenant A's ids: a 404 that reveals nothing, and A's
/// objects untouched.
async fn isolation_walk(b: Backend) {
    let app = start_with(b, &["--allow-package-installation", "true"]).await;
    let secret_pkg = common::wheel(
        "secretpkg",
        "1.0",
        &[],
        &[("secretpkg/__init__.py", "X = 'a-secret'\n")],
    );
    let (s, v) = common::upload(&app, "secretpkg-1.0-py3-none-any.whl", &secret_pkg, "").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // An install job (it fails, which is fine: it exists).
    let (s, job) = app
        .post(
            "/api/v1/packages?wait=0",
            json!({"name": "maestro-no-such-package-zq7"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = job["job_id"].as_str().unwrap().to_string();
    app.create(
        "secret_fn",
        "def secret_fn(input):\n    print('a-secret')\n    return 'a-secret'\n",
    )
    .await;
    let (_, inv) = app.invoke("secret_fn", json!({})).await;
    let exec = inv["execution_id"].as_str().unwrap().to_string();
    let path = format!("{}/iso", app.tenant);
    let (_, hook) = app
        .post(
            "/api/v1/webhooks",
            json!({"path": path, "function_name": "secret_fn", "requires_auth": true}),
        )
        .await;
    let hook = hook["id"].as_str().unwrap().to_string();
    let (_, sched) = app
        .post(
            "/api/v1/schedules",
            json!({"name": "s", "function_name": "secret_fn", "cron_expression": "0 0 1 1 *"}),
        )
        .await;
    let sched = sched["id"].as_str().unwrap().to_string();
    let other = app.token_for("b");
    let some = |v: Value| Some(v);
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/functions/secret_fn".into(), None),
        (
            Method::PUT,
            "/api/v1/functions/secret_fn".into(),
            some(json!({"description": "x"})),
        ),
        (Method::DELETE, "/api/v1/functions/secret_fn".into(), None),
        (Method::GET, "/api/v1/functions/secret_fn/versions".into(), None),
        (Method::POST, "/api/v1/functions/secret_fn/rollback/1".into(), None),
        (
            Method::POST,
            "/api/v1/functions/secret_fn/invoke".into(),
            some(json!({})),
        ),
        (Method::GET, format!("/api/v1/webhooks/{hook}"), None),
        (
            Method::PUT,
            format!("/api/v1/webhooks/{hook}"),
            some(json!({"description": "x"})),
        ),
        (Method::DELETE, format!("/api/v1/webhooks/{hook}"), None),
        (Method::POST, format!("/api/v1/webhooks/{hook}/rotate-secret"), None),
        (Method::GET, format!("/api/v1/schedules/{sched}"), None),
        (
            Method::PUT,
            format!("/api/v1/schedules/{sched}"),
            some(json!({"cron_expression": "* * * * *"})),
        ),
        (Method::DELETE, format!("/api/v1/schedules/{sched}"), None),
        (Method::POST, format!("/api/v1/schedules/{sched}/run"), None),
        (Method::POST, format!("/api/v1/schedules/{sched}/pause"), None),
        (Method::POST, format!("/api/v1/schedules/{sched}/resume"), None),
        (Method::GET, format!("/api/v1/schedules/{sched}/runs?total=true"), None),
        (Method::GET, format!("/api/v1/executions/{exec}"), None),
        (Method::GET, format!("/api/v1/executions/{exec}/steps"), None),
        (Method::GET, format!("/api/v1/executions/{exec}/logs"), None),
        (Method::POST, format!("/api/v1/h/{path}"), some(json!({}))),
        (Method::GET, "/api/v1/packages/secretpkg".into(), None),
        (Method::DELETE, "/api/v1/packages/secretpkg?force=true".into(), None),
        (Method::GET, format!("/api/v1/packages/installs/{job}"), None),
    ];
    for (method, route, body) in routes {
        let (s, v) = call(&app, &other, None, method.clone(), &route, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {route}: {v}");
        assert!(!v.to_string().contains("a-secret"), "{method} {route} leaked: {v}");
    }
    for list in [
        "/api/v1/functions",
        "/api/v1/webhooks",
        "/api/v1/schedules",
        "/api/v1/executions?total=true",
        "/api/v1/executions?function=secret_fn&total=true",
        &format!("/api/v1/executions?trigger_id={hook}&total=true"),
    ] {
        let (s, v) = call(&app, &other, None, Method::GET, list, None).await;
        assert_eq!((s, v["total"].clone()), (StatusCode::OK, json!(0)), "{list}: {v}");
    }
    let (_, v) = call(&app, &other, None, Method::GET, "/api/v1/packages?builtin=false", None).await;
    assert_eq!(v["packages"], json!([]), "{v}");
    let (_, v) = call(&app, &other, None, Method::GET, "/api/v1/packages/installs", None).await;
    assert_eq!(v["installs"], json!([]), "{v}");
    // Another tenant's function cannot import it either.
    let (s, _) = call(
        &app,
        &other,
        None,
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "peek",
        "code": "def peek(input):\n    import secretpkg\n    return secretpkg.X\n"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, v) = call(
        &app,
        &other,
        None,
        Method::POST,
        "/api/v1/functions/peek/invoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(v["error"]["type"], "ModuleNotFoundError", "{v}");
    // A's objects are as they were.
    let (_, f) = app.get("/api/v1/functions/secret_fn").await;
    assert_eq!((f["version"].clone(), f["description"].clone()), (json!(1), json!("")));
    assert_eq!(app.get(&format!("/api/v1/webhooks/{hook}")).await.0, StatusCode::OK);
    let (_, s) = app.get(&format!("/api/v1/schedules/{sched}")).await;
    assert_eq!(
        (s["enabled"].clone(), s["cron_expression"].clone()),
        (json!(true), json!("0 0 1 1 *"))
    );
    assert_eq!(
        app.get(&format!("/api/v1/executions/{exec}/logs")).await.1["logs"][0]["text"],
        "a-secret\n"
    );
    let (s, _) = app.get("/api/v1/packages/secretpkg").await;
    assert_eq!(s, StatusCode::OK);
    app.create(
        "usepkg",
        "import secretpkg\ndef usepkg(input):\n    return secretpkg.X\n",
    )
    .await;
    assert_eq!(app.invoke("usepkg", json!({})).await.1["output"], "a-secret");
    app.call(Method::DELETE, &format!("/api/v1/schedules/{sched}"), None)
        .await;
    app.stop().await;
}

/// Raw request: status, `Retry-After`, body.
async fn invoke_raw(
    app: &TestApp,
    token: &str,
    sub: Option<&str>,
    name: &str,
    input: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut req = app
        .client
        .post(format!("{}/api/v1/functions/{name}/invoke", app.base))
        .bearer_auth(token)
        .json(&input);
    if let Some(s) = sub {
        req = req.header("X-Subtenant", s);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

const GATED: &str = "def f(input):\n    if input.get('burn'):\n        while True:\n            pass\n    return 1\n";
const SLOW: &str = "import time\n\ndef slow(input):\n    time.sleep(1.5)\n    return 'slow'\n";

/// Per-subtenant quotas (functions, rate, fuel), and one tenant's flood leaving room for another.
async fn quotas_and_fairness(b: Backend) {
    // Calls at the cap are refused at once here (no line), so the count of refusals is exact.
    let app = start_with(b, &["--tenant-queue-wait-ms", "0"]).await;
    let admin = admin_token(&app);
    let sub = format!("{}-q", app.tenant);
    let quotas =
        json!({"max_functions": 1, "invocations_per_second": 1, "burst": 1, "max_fuel_per_execution": 50_000_000});
    let (s, v) = call(
        &app,
        &admin,
        None,
        Method::POST,
        "/api/v1/subtenants",
        Some(json!({"subtenant_id": sub, "quotas": quotas})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = call(
        &app,
        &admin,
        Some(&sub),
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "f", "code": GATED})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call(
        &app,
        &admin,
        Some(&sub),
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "g", "code": GATED.replace("def f", "def g")})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a hard cap: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("maximum of 1"), "{v}");

    let (s, _, _) = invoke_raw(&app, &admin, Some(&sub), "f", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, retry, v) = invoke_raw(&app, &admin, Some(&sub), "f", json!({})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "one per second: {v}");
    assert_eq!(retry.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, v) = invoke_raw(&app, &admin, Some(&sub), "f", json!({"burn": true})).await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (StatusCode::OK, Some("out_of_fuel")),
        "{v}"
    );
    assert!(
        v["fuel_used"].as_u64().unwrap() <= 60_000_000,
        "fuel capped by the quota: {v}"
    );

    // The admin lifts the quotas; the defaults apply again.
    let path = format!("/api/v1/subtenants/{sub}");
    let (s, v) = call(&app, &admin, None, Method::PUT, &path, Some(json!({"quotas": {}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = call(&app, &admin, None, Method::GET, &path, None).await;
    assert_eq!(v["effective_quotas"]["max_functions"], 1000, "{v}");
    assert_eq!(v["effective_quotas"]["invocations_per_second"], 0.0);

    // Fairness: tenant A floods with slow calls; tenant B's call still runs at once.
    app.create("slow", SLOW).await;
    let b_token = app.token_for("b");
    let (s, _) = app
        .call_as(
            &b_token,
            Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "quick", "code": "def quick(input):\n    return 'quick'\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, token) = (
                app.client.clone(),
                format!("{}/api/v1/functions/slow/invoke", app.base),
                app.token.clone(),
            );
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("request");
                (resp.status(), resp.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _, quick) = invoke_raw(&app, &b_token, None, "quick", json!({})).await;
    assert_eq!(
        (s, quick["output"].as_str()),
        (StatusCode::OK, Some("quick")),
        "{quick}"
    );
    let mut ran = vec![];
    let mut refused = 0;
    for f in flood {
        let (status, v) = f.await.unwrap();
        match status {
            StatusCode::OK => ran.push(v["execution_id"].as_str().unwrap().to_string()),
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((ran.len(), refused), (2, 6), "A runs at most half the workers at once");
    let finished = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["finished_at"].as_str().unwrap()).unwrap();
    let (_, q) = app
        .call_as(
            &b_token,
            Method::GET,
            &format!("/api/v1/executions/{}", quick["execution_id"].as_str().unwrap()),
            None,
        )
        .await;
    for id in &ran {
        let (_, a) = app.get(&format!("/api/v1/executions/{id}")).await;
        assert!(
            finished(&q) < finished(&a),
            "B finished while A's flood was still running"
        );
    }
    call(&app, &admin, None, Method::DELETE, &format!("{path}?force=true"), None).await;
    app.stop().await;
}

/// Each of `n` calls of `name` at once: status, Retry-After, body, and how long it took.
async fn burst(app: &TestApp, name: &str, n: usize) -> Vec<(StatusCode, Option<String>, Value, Duration)> {
    let calls = (0..n).map(|i| async move {
        let t = std::time::Instant::now();
        let (s, retry, v) = invoke_raw(app, &app.token, None, name, json!({"i": i})).await;
        (s, retry, v, t.elapsed())
    });
    futures_util::future::join_all(calls).await
}

/// A burst above a tenant's concurrency waits its turn instead of being refused: the calls
/// that fit in the line all run, one at a time at a cap of 1; those past the line's depth
/// are refused at once, and one that waits longer than the wait is refused then. With the
/// defaults, a burst of 16 quick calls from one tenant gets no 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_waits_its_turn() {
    let flags = [
        "--tenant-max-concurrent-executions",
        "1",
        "--tenant-queue-wait-ms",
        "20000",
        "--tenant-queue-depth",
        "3",
    ];
    let app = start_with(Backend::Sqlite, &flags).await;
    app.create(
        "nap",
        "import time\ndef nap(input):\n    time.sleep(0.4)\n    return input['i']\n",
    )
    .await;
    let answers = burst(&app, "nap", 6).await;
    let ok: Vec<_> = answers.iter().filter(|a| a.0 == StatusCode::OK).collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        (ok.len(), refused.len()),
        (4, 2),
        "one runs, three wait, two are turned away: {answers:?}"
    );
    for (_, retry, v, took) in &refused {
        assert_eq!(retry.as_deref(), Some("1"), "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("TENANT_QUEUE_DEPTH"),
            "{v}"
        );
        assert!(
            *took < Duration::from_millis(400),
            "refused at once, not after a wait: {took:?}"
        );
    }
    // The four ran one at a time.
    let mut spans = vec![];
    for (_, _, v, _) in &ok {
        let id = v["execution_id"].as_str().unwrap();
        let (_, e) = app.get(&format!("/api/v1/executions/{id}")).await;
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(e[k].as_str().unwrap()).unwrap();
        spans.push((at("started_at"), at("finished_at")));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping runs at a cap of 1: {spans:?}");
    }
    assert!(
        ok.iter().map(|a| a.3).max().unwrap() >= Duration::from_millis(1500),
        "the last waited for three"
    );
    app.stop().await;

    // A call that cannot get a slot within the wait is refused when the wait ends.
    let app = start_with(
        Backend::Sqlite,
        &[
            "--tenant-max-concurrent-executions",
            "1",
            "--tenant-queue-wait-ms",
            "300",
        ],
    )
    .await;
    app.create("nap", "import time\ndef nap(input):\n    time.sleep(2)\n    return 1\n")
        .await;
    let answers = burst(&app, "nap", 2).await;
    let late = answers
        .iter()
        .find(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .expect("one waited too long");
    assert!(
        late.2["error"]["message"].as_str().unwrap().contains("waited 300 ms"),
        "{:?}",
        late.2
    );
    assert!(
        late.3 >= Duration::from_millis(300) && late.3 < Duration::from_millis(1900),
        "{:?}",
        late.3
    );
    assert_eq!(
        answers.iter().filter(|a| a.0 == StatusCode::OK).count(),
        1,
        "{answers:?}"
    );
    app.stop().await;

    // The defaults: a burst of 16 quick calls from one tenant all run.
    let app = start(Backend::Sqlite).await;
    app.create("quick", "def quick(input):\n    return input['i']\n").await;
    let answers = burst(&app, "quick", 16).await;
    assert!(answers.iter().all(|a| a.0 == StatusCode::OK), "{answers:?}");
    app.stop().await;
}

both_backends!(
    subtenants_and_grants,
    external_issuer,
    isolation_walk,
    quotas_and_fairness
);
