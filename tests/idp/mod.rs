//! A small OAuth 2 / OpenID provider for the console's sign-in test: `/authorize` signs the
//! user in at once and sends the browser back with a code; `/token` checks the code, the
//! redirect URI, the client and the PKCE verifier (S256), and takes a code once, before it
//! answers an access token for the API (`aud` = the API) and an ID token (`aud` = the
//! client), both signed with the fixture RSA key (the one `tests/fixtures/jwks.json`
//! publishes). `/last` tells the test the last code and state it sent back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

pub const ISSUER: &str = "https://idp.example";
pub const CLIENT_ID: &str = "maestro-console";
pub const AUDIENCE: &str = "maestro";

#[derive(Clone)]
struct Idp {
    /// code → (PKCE challenge, redirect URI)
    codes: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// The last (code, state) sent back.
    last: Arc<Mutex<(String, String)>>,
    email: String,
    tenant: String,
}

/// Start the provider on a free local port; answers its base URL.
pub async fn start(email: &str, tenant: &str) -> String {
    let idp = Idp {
        codes: Default::default(),
        last: Default::default(),
        email: email.into(),
        tenant: tenant.into(),
    };
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route(
            "/last",
            get(|State(idp): State<Idp>| async move { Json(idp.last.lock().unwrap().clone()) }),
        )
        .with_state(idp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn authorize(State(idp): State<Idp>, Query(q): Query<HashMap<String, String>>) -> Response {
    let ok = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.contains_key("code_challenge")
        && q.contains_key("state");
    if !ok {
        return (StatusCode::BAD_REQUEST, format!("a bad authorization request: {q:?}")).into_response();
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    let redirect = q["redirect_uri"].clone();
    idp.codes
        .lock()
        .unwrap()
        .insert(code.clone(), (q["code_challenge"].clone(), redirect.clone()));
    *idp.last.lock().unwrap() = (code.clone(), q["state"].clone());
    Redirect::to(&format!("{redirect}?code={code}&state={}", q["state"])).into_response()
}

async fn token(State(idp): State<Idp>, body: axum::body::Bytes) -> Response {
    let f: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let refuse = |why: &str| {
        let body = json!({"error": "invalid_grant", "error_description": why});
        (StatusCode::BAD_REQUEST, cors(), Json(body)).into_response()
    };
    let Some((challenge, redirect)) = f.get("code").and_then(|c| idp.codes.lock().unwrap().remove(c)) else {
        return refuse("unknown or used code");
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if hashed != challenge {
        return refuse("the PKCE verifier does not match");
    }
    if f.get("redirect_uri") != Some(&redirect) || f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return refuse("redirect_uri or client_id differ from the authorization request");
    }
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str| {
        json!({"sub": "u-42", "email": idp.email, "tenant": idp.tenant, "iss": ISSUER,
               "aud": aud, "exp": now + 600, "nbf": now - 10, "iat": now})
    };
    let body: Value = json!({"access_token": signed(claims(AUDIENCE)), "token_type": "Bearer", "expires_in": 600,
                             "id_token": signed(claims(CLIENT_ID))});
    (cors(), Json(body)).into_response()
}

/// The console posts the code from its own origin.
fn cors() -> [(header::HeaderName, &'static str); 1] {
    [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")]
}

fn signed(claims: Value) -> String {
    let pem = std::fs::read(format!("{}/tests/fixtures/rsa_private.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
