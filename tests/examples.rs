//! The shipped examples load through the API and the seed's two workflows run through their
//! webhooks, sent the way the README's curl commands send them.

mod common;

use common::{start, Backend, TestApp};
use serde_json::{json, Value};

/// POST to a webhook (under this test's path prefix) like `curl -d` (which labels the body as a form unless told otherwise).
async fn curl(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value, String) {
    let url = format!("{}/api/v1/h/{}/{path}", app.base, app.tenant);
    let mut req = app.client.post(url).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        req = req.header("Content-Type", "application/x-www-form-urlencoded");
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-maestro-execution-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), id)
}

/// The execution's calls as (function, depth, parent function), in call order.
async fn tree(app: &TestApp, execution_id: &str) -> Vec<(String, i64, String)> {
    let (_, v) = app.get(&format!("/api/v1/executions/{execution_id}/steps")).await;
    let steps = v["steps"].as_array().expect("steps").clone();
    let name_of = |id: &Value| {
        steps
            .iter()
            .find(|s| &s["id"] == id)
            .map(|s| s["function_name"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    steps
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "succeeded", "{s}");
            (
                s["function_name"].as_str().unwrap_or("").to_string(),
                s["depth"].as_i64().unwrap_or(-1),
                name_of(&s["parent_id"]),
            )
        })
        .collect()
}

fn calls(list: &[(&str, i64, &str)]) -> Vec<(String, i64, String)> {
    list.iter()
        .map(|(f, d, p)| (f.to_string(), *d, p.to_string()))
        .collect()
}

async fn seed_workflows(b: Backend) {
    let app = start(b).await;
    // The tenant's own hello_world (the README's walk-through makes one): never replaced
    // silently.
    let own = "def hello_world(input):\n    return 'mine'\n";
    app.create("hello_world", own).await;
    let bundles = maestro::examples::bundles(None).expect("bundles");
    // Webhook paths are shared by all tenants and the PostgreSQL test database outlives a run.
    let prefix = format!("{}/", app.tenant);
    let report = maestro::examples::load(&app.base, &app.token, &bundles, &prefix, false)
        .await
        .expect("load");
    assert!(
        report
            .iter()
            .any(|l| l.contains("skipped function hello_world") && l.contains("--force")),
        "{report:?}"
    );
    let (_, f) = app.get("/api/v1/functions/hello_world").await;
    assert_eq!((f["code"].as_str(), f["version"].as_i64()), (Some(own), Some(1)), "{f}");
    let forced = maestro::examples::load(&app.base, &app.token, &bundles, &prefix, true)
        .await
        .expect("load --force");
    assert!(
        forced.contains(&"basics: replaced function hello_world (now version 2)".to_string()),
        "{forced:?}"
    );
    for hook in ["hello", "process-document", "process-invoice"] {
        assert!(
            report.contains(&format!(
                "{}: created webhook /api/v1/h/{prefix}{hook}",
                match hook {
                    "hello" => "basics",
                    "process-document" => "document_processing",
                    _ => "invoice_processing",
                }
            )),
            "{report:?}"
        );
    }
    // Loading again changes nothing (fetch_document is shared by both workflows).
    let again = maestro::examples::load(&app.base, &app.token, &bundles, &prefix, false)
        .await
        .expect("reload");
    assert!(again.iter().all(|l| l.ends_with(" is unchanged")), "{again:?}");
    let items: usize = bundles
        .iter()
        .map(|(_, b)| b["functions"].as_array().map_or(0, Vec::len) + b["webhooks"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(again.len(), items, "one line per item: {again:?}");
    let (_, list) = app.get("/api/v1/functions?limit=100").await;
    assert_eq!(list["total"], 15, "{list}");

    let (s, v, _) = curl(&app, "hello", &[], r#"{"name": "Claude"}"#).await;
    assert_eq!((s, v), (200, json!("Hello, Claude!")));

    // The AI document-processing system: five levels deep, then the router's choice.
    let (s, v, id) = curl(
        &app,
        "process-document",
        &[("X-User-ID", "user123")],
        r#"{"document_url": "https://example.com/invoice.pdf"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["processing"]["path"], "auto_approved", "{v}");
    assert_eq!(v["processing"]["risk_score"], 0.2);
    assert_eq!(v["processing"]["result"]["approval_id"], "APR-E7D95FB3");
    assert_eq!(
        tree(&app, &id).await,
        calls(&[
            ("document_webhook", 0, ""),
            ("route_for_processing", 1, "document_webhook"),
            ("validate_business_rules", 2, "route_for_processing"),
            ("analyze_document", 3, "validate_business_rules"),
            ("fetch_document", 4, "analyze_document"),
            ("auto_approve_document", 2, "route_for_processing"),
        ])
    );
    let risky = json!({
        "document_url": "https://example.com/invoice.pdf",
        "content": "Invoice Number: INV-2002\nTotal: $25,000.00\nThis invoice is overdue and disputed. A late payment penalty applies."
    });
    let (s, v, id) = curl(
        &app,
        "process-document",
        &[("x-user-id", "user123")],
        &risky.to_string(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["processing"]["path"], "human_review", "{v}");
    assert_eq!(v["processing"]["risk_score"], 0.8);
    assert_eq!(v["processing"]["result"]["reviewer"], "finance-review@example.com");
    let steps = tree(&app, &id).await;
    assert_eq!(steps.last().map(|s| s.0.as_str()), Some("notify_human_reviewer"));
    let (_, logs) = app.get(&format!("/api/v1/executions/{id}/logs")).await;
    assert!(logs.to_string().contains("[human-review]"), "{logs}");

    // The invoice workflow, exactly as the seed's curl sends it.
    let (s, v, id) = curl(
        &app,
        "process-invoice",
        &[("Content-Type", "application/json"), ("X-Customer-ID", "CUST001")],
        r#"{"url": "https://example.com/invoice.txt", "priority": "high"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "invoice": {"invoice_number": "INV-4932", "total": 4125.08, "customer_valid": true,
            "status": "processed", "priority": "high", "notified": true}})
    );
    assert_eq!(
        tree(&app, &id).await,
        calls(&[
            ("invoice_webhook_handler", 0, ""),
            ("process_invoice", 1, "invoice_webhook_handler"),
            ("fetch_document", 2, "process_invoice"),
            ("extract_invoice_data", 2, "process_invoice"),
            ("validate_customer", 2, "process_invoice"),
            ("notify_team", 2, "process_invoice"),
        ])
    );
    // Priority from the query string; normal priority notifies nobody.
    let body = json!({"url": "https://example.com/i.txt", "content": "Invoice Number: INV-1001\nTotal: $1,250.00"});
    let (s, v, id) = curl(
        &app,
        "process-invoice?priority=normal",
        &[("X-Customer-ID", "CUST001")],
        &body.to_string(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["invoice"]["invoice_number"], "INV-1001");
    assert_eq!(v["invoice"]["total"], 1250.0);
    assert_eq!(v["invoice"]["notified"], false);
    assert_eq!(tree(&app, &id).await.len(), 5, "no notify_team step");
    app.stop().await;
}

both_backends!(seed_workflows);

/// The document workflow over real HTTP: fetch_document downloads the document from a local
/// server the tenant's egress policy allows, and notify_human_reviewer posts the notice to
/// the chat webhook named by the tenant's REVIEW_WEBHOOK_URL secret.
#[tokio::test]
async fn document_workflow_over_http() {
    use std::sync::{Arc, Mutex};
    let app = common::start_with(Backend::Sqlite, &["--egress-allow-private", "true"]).await;
    let notices: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = notices.clone();
    let upstream = axum::Router::new()
        .route(
            "/docs/risky.txt",
            axum::routing::get(|| async {
                "Invoice Number: INV-2002\nTotal: $25,000.00\nThis invoice is overdue and disputed.\n"
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, upstream).await });

    let bundles = maestro::examples::bundles(None).expect("bundles");
    let prefix = format!("{}/", app.tenant);
    maestro::examples::load(&app.base, &app.token, &bundles, &prefix, false)
        .await
        .expect("load");
    let policy = json!({"allow": [{"url": format!("{base}/"), "allow_private": true}]});
    let (s, v) = app.call(reqwest::Method::PUT, "/api/v1/egress", Some(policy)).await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    let secret = json!({"value": format!("{base}/hook")});
    let (s, _) = app
        .call(reqwest::Method::PUT, "/api/v1/secrets/REVIEW_WEBHOOK_URL", Some(secret))
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED);

    let body = json!({"document_url": format!("{base}/docs/risky.txt")}).to_string();
    let (s, v, id) = curl(&app, "process-document", &[("X-User-ID", "user123")], &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["processing"]["path"], "human_review", "{v}");
    assert_eq!(v["processing"]["result"]["delivered"], true, "{v}");
    let (_, steps) = app.get(&format!("/api/v1/executions/{id}/steps")).await;
    let fetch = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function_name"] == "fetch_document")
        .expect("fetch step");
    assert_eq!(fetch["output"]["fetched"], true, "{fetch}");
    assert_eq!(fetch["activity"][0]["url"], format!("{base}/docs/risky.txt"));
    let notify = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function_name"] == "notify_human_reviewer")
        .expect("notify step");
    // The webhook URL is a secret: the record names it, never shows it.
    assert_eq!(notify["activity"][1]["url"], "[secret REVIEW_WEBHOOK_URL]", "{notify}");
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0]["text"].as_str().unwrap().contains("[human-review]"),
        "{notices:?}"
    );
    assert_eq!(notices[0]["reviewer"], "finance-review@example.com");
    app.stop().await;
}
