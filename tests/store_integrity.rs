//! Nothing stored is half-written or made up: every successful write has its audit row, a
//! write whose audit row cannot be written does not happen at all, and a stored value that
//! does not decode fails its read with a clear error instead of reading as a default.

mod common;

use std::time::Duration;

use common::{start, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

async fn db(app: &TestApp) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = app.state().settings.database_url();
    sqlx::AnyConnection::connect(&url)
        .await
        .expect("connect to the app's database")
}

/// The audit rows of the app's tenant: (action, target), oldest first.
async fn audit_rows(app: &TestApp) -> Vec<(String, String)> {
    let admin = app
        .keys
        .mint(&app.tenant, "admin@example.com", true, Duration::from_secs(600))
        .unwrap();
    let (status, body) = app
        .call_as(
            &admin,
            Method::GET,
            &format!("/api/v1/audit?tenant={}&limit=1000", app.tenant),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut rows: Vec<(String, String)> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

fn pair(action: &str, target: &str) -> (String, String) {
    (action.to_string(), target.to_string())
}

/// Make every audit insert for `target` in the app's tenant fail, as a full disk or a lost
/// connection would, after the write itself passed validation.
async fn refuse_audit_of(app: &TestApp, target: &str) -> String {
    let mut conn = db(app).await;
    let suffix: String = target.chars().filter(char::is_ascii_alphanumeric).collect();
    let trigger = format!("refuse_{}_{suffix}", app.tenant.replace('-', "_"));
    let when = format!("new.tenant = '{}' and new.target = '{target}'", app.tenant);
    if app.state().settings.database_url().starts_with("postgres") {
        conn.execute(
            "create or replace function maestro_test_refuse_audit() returns trigger language plpgsql as \
             $$ begin raise exception 'audit refused by the test'; end $$",
        )
        .await
        .unwrap();
        conn.execute(
            format!(
                "create trigger {trigger} before insert on audit_log for each row when ({when}) \
                 execute function maestro_test_refuse_audit()"
            )
            .as_str(),
        )
        .await
        .unwrap();
    } else {
        conn.execute(
            format!(
                "create trigger {trigger} before insert on audit_log when {when} \
                 begin select raise(abort, 'audit refused by the test'); end"
            )
            .as_str(),
        )
        .await
        .unwrap();
    }
    trigger
}

async fn drop_trigger(app: &TestApp, trigger: &str) {
    let mut conn = db(app).await;
    let sql = if app.state().settings.database_url().starts_with("postgres") {
        format!("drop trigger if exists {trigger} on audit_log")
    } else {
        format!("drop trigger if exists {trigger}")
    };
    conn.execute(sql.as_str()).await.unwrap();
}

async fn audit_is_atomic(app: TestApp) {
    // Successful writes of each kind leave one row each, in order.
    app.create("kept", "def kept(input):\n    return 1\n").await;
    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/functions/kept",
            Some(json!({"code": "def kept(input):\n    return 2\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, hook) = app
        .post(
            "/api/v1/webhooks",
            json!({"path": "kept-hook", "function_name": "kept"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .call(Method::PUT, "/api/v1/secrets/API_KEY", Some(json!({"value": "v"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app.call(Method::DELETE, "/api/v1/secrets/API_KEY", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .call(Method::DELETE, &format!("/api/v1/webhooks/{hook_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let expected = vec![
        pair("function.create", "function:kept"),
        pair("function.update", "function:kept"),
        pair("webhook.create", &format!("webhook:{hook_id}")),
        pair("secret.put", "secret:API_KEY"),
        pair("secret.delete", "secret:API_KEY"),
        pair("webhook.delete", &format!("webhook:{hook_id}")),
    ];
    assert_eq!(audit_rows(&app).await, expected);

    // A refused write (a conflict) leaves no row.
    let (s, _) = app
        .post(
            "/api/v1/functions",
            json!({"name": "kept", "code": "def kept(input):\n    return 3\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(audit_rows(&app).await, expected);

    // A write that passes validation but whose audit row cannot be written does not happen.
    let trigger = refuse_audit_of(&app, "function:boom").await;
    let (s, body) = app
        .post(
            "/api/v1/functions",
            json!({"name": "boom", "code": "def boom(input):\n    return 1\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (s, _) = app.get("/api/v1/functions/boom").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the function must not exist without its audit row"
    );
    let trigger2 = refuse_audit_of(&app, "function:kept").await;
    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/functions/kept",
            Some(json!({"code": "def kept(input):\n    return 4\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (s, _) = app.call(Method::DELETE, "/api/v1/functions/kept", None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    drop_trigger(&app, &trigger).await;
    drop_trigger(&app, &trigger2).await;
    let (s, f) = app.get("/api/v1/functions/kept").await;
    assert_eq!(s, StatusCode::OK, "the delete must have been rolled back");
    assert_eq!(f["version"], json!(2), "the update must have been rolled back: {f}");
    assert_eq!(audit_rows(&app).await, expected);
    app.stop().await;
}

#[tokio::test]
async fn audit_rows_commit_with_their_writes_sqlite() {
    audit_is_atomic(start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn audit_rows_commit_with_their_writes_postgres() {
    audit_is_atomic(start(Backend::Postgres).await).await;
}

async fn corrupt_rows_fail_clearly(app: TestApp) {
    // Not invoked before: the call path's short-lived cache must not hold it.
    app.create("limited", "def limited(input):\n    return 1\n").await;
    let mut conn = db(&app).await;
    let sql = format!(
        "update function_versions set settings = '{{\"timeout_seconds\": 1' where function_id in \
         (select id from functions where tenant = '{}' and name = 'limited')",
        app.tenant
    );
    conn.execute(sql.as_str()).await.unwrap();
    for (what, (status, body)) in [
        ("read", app.get("/api/v1/functions/limited").await),
        ("invoke", app.invoke("limited", json!({})).await),
    ] {
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {body}");
        assert_eq!(body["error"]["code"], json!("corrupt_data"), "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`settings`"),
            "{what}: the message names the column: {message}"
        );
    }
    let (status, body): (StatusCode, Value) = app.get("/api/v1/functions").await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a listing with a corrupt row fails too: {body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn corrupt_json_fails_the_read_sqlite() {
    corrupt_rows_fail_clearly(start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn corrupt_json_fails_the_read_postgres() {
    corrupt_rows_fail_clearly(start(Backend::Postgres).await).await;
}

/// Stored quotas that do not read stop the tenant's executions with a clear error; they are
/// never replaced by the server's (looser) defaults.
async fn corrupt_quotas_refuse(app: TestApp) {
    let admin = app
        .keys
        .mint(&app.tenant, "admin@example.com", true, Duration::from_secs(600))
        .unwrap();
    let sub = format!("{}-q", app.tenant);
    let (s, v) = app
        .call_as(
            &admin,
            Method::POST,
            "/api/v1/subtenants",
            Some(json!({"subtenant_id": sub, "quotas": {"max_concurrent_executions": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = app.token_for("q");
    let (s, v) = app
        .call_as(
            &token,
            Method::POST,
            "/api/v1/functions",
            Some(json!({"name": "f", "code": "def f(input):\n    return 1\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut conn = db(&app).await;
    let sql =
        format!("update subtenants set quotas = '{{\"max_concurrent_executions\": \"many\"}}' where id = '{sub}'");
    conn.execute(sql.as_str()).await.unwrap();
    // A fresh server: nothing known about the tenant's quotas yet.
    let again = common::start_on(&app, &[]).await;
    let (s, v) = again
        .call_as(&token, Method::POST, "/api/v1/functions/f/invoke", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["error"]["code"], json!("corrupt_data"), "{v}");
    again.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn corrupt_quotas_refuse_sqlite() {
    corrupt_quotas_refuse(start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn corrupt_quotas_refuse_postgres() {
    corrupt_quotas_refuse(start(Backend::Postgres).await).await;
}
