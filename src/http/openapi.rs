//! The OpenAPI 3.1 document (`/openapi.json`), Swagger UI (`/docs`) and ReDoc (`/redoc`).
//!
//! The document is built here from one table of operations next to the schemas of the main
//! bodies; `tests/openapi.rs` checks every route the routers declare is in it. The UI bundles
//! are vendored under `static/docs` and compiled in, so nothing is downloaded at build or run
//! time.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::AppState;

const SWAGGER_JS: &str = include_str!("../../static/docs/swagger-ui-bundle.js");
const SWAGGER_CSS: &str = include_str!("../../static/docs/swagger-ui.css");
const REDOC_JS: &str = include_str!("../../static/docs/redoc.standalone.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        // The server's root leads somewhere useful: the API docs.
        .route("/", get(|| async { axum::response::Redirect::temporary("/docs") }))
        .route("/openapi.json", get(|| async { Json(document()) }))
        .route("/docs", get(docs))
        .route("/redoc", get(redoc))
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript", SWAGGER_JS) }),
        )
        .route("/docs/swagger-ui.css", get(|| async { asset("text/css", SWAGGER_CSS) }))
        .route(
            "/docs/redoc.standalone.js",
            get(|| async { asset("text/javascript", REDOC_JS) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

async fn docs() -> Html<&'static str> {
    Html(
        r##"<!doctype html><html><head><meta charset="utf-8"><title>Maestro API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"##,
    )
}

async fn redoc() -> Html<&'static str> {
    Html(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Maestro API</title></head><body>
<redoc spec-url="/openapi.json"></redoc><script src="/docs/redoc.standalone.js"></script></body></html>"#,
    )
}

/// (method, path, tag, summary, request body schema, success status, response schema).
type Op = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
);

const OPS: &[Op] = &[
    (
        "post",
        "/api/v1/functions",
        "functions",
        "Create a function",
        Some("FunctionBody"),
        201,
        "Function",
    ),
    (
        "get",
        "/api/v1/functions",
        "functions",
        "List functions",
        None,
        200,
        "Page",
    ),
    (
        "get",
        "/api/v1/functions/{name}",
        "functions",
        "Show a function",
        None,
        200,
        "Function",
    ),
    (
        "put",
        "/api/v1/functions/{name}",
        "functions",
        "Update a function (appends a version)",
        Some("FunctionBody"),
        200,
        "Function",
    ),
    (
        "delete",
        "/api/v1/functions/{name}",
        "functions",
        "Delete a function",
        None,
        204,
        "",
    ),
    (
        "get",
        "/api/v1/functions/{name}/versions",
        "functions",
        "Version history",
        None,
        200,
        "Object",
    ),
    (
        "post",
        "/api/v1/functions/{name}/rollback/{version}",
        "functions",
        "Make an old version current",
        None,
        200,
        "Function",
    ),
    (
        "post",
        "/api/v1/functions/{name}/invoke",
        "functions",
        "Run a function (the body is its input)",
        Some("Any"),
        200,
        "InvokeResult",
    ),
    (
        "get",
        "/api/v1/executions",
        "executions",
        "Execution history",
        None,
        200,
        "Page",
    ),
    (
        "get",
        "/api/v1/executions/{id}",
        "executions",
        "One execution",
        None,
        200,
        "Execution",
    ),
    (
        "get",
        "/api/v1/executions/{id}/steps",
        "executions",
        "Every call of an execution",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/executions/{id}/logs",
        "executions",
        "Captured output; ?follow=true streams live events (SSE)",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/events",
        "executions",
        "The tenant's live events (SSE)",
        None,
        200,
        "EventStream",
    ),
    (
        "post",
        "/api/v1/webhooks",
        "webhooks",
        "Create a webhook",
        Some("WebhookBody"),
        201,
        "Webhook",
    ),
    (
        "get",
        "/api/v1/webhooks",
        "webhooks",
        "List webhooks",
        None,
        200,
        "Page",
    ),
    (
        "get",
        "/api/v1/webhooks/{id}",
        "webhooks",
        "Show a webhook",
        None,
        200,
        "Webhook",
    ),
    (
        "put",
        "/api/v1/webhooks/{id}",
        "webhooks",
        "Update a webhook",
        Some("WebhookBody"),
        200,
        "Webhook",
    ),
    (
        "delete",
        "/api/v1/webhooks/{id}",
        "webhooks",
        "Delete a webhook",
        None,
        204,
        "",
    ),
    (
        "post",
        "/api/v1/webhooks/{id}/rotate-secret",
        "webhooks",
        "New signing secret",
        Some("Object"),
        200,
        "Webhook",
    ),
    (
        "get",
        "/api/v1/h/{path}",
        "webhooks",
        "Webhook handler (any method)",
        None,
        200,
        "Any",
    ),
    (
        "post",
        "/api/v1/h/{path}",
        "webhooks",
        "Webhook handler (any method)",
        Some("Any"),
        200,
        "Any",
    ),
    (
        "put",
        "/api/v1/h/{path}",
        "webhooks",
        "Webhook handler (any method)",
        Some("Any"),
        200,
        "Any",
    ),
    (
        "patch",
        "/api/v1/h/{path}",
        "webhooks",
        "Webhook handler (any method)",
        Some("Any"),
        200,
        "Any",
    ),
    (
        "delete",
        "/api/v1/h/{path}",
        "webhooks",
        "Webhook handler (any method)",
        None,
        200,
        "Any",
    ),
    (
        "post",
        "/api/v1/schedules",
        "schedules",
        "Create a schedule",
        Some("ScheduleBody"),
        201,
        "Schedule",
    ),
    (
        "get",
        "/api/v1/schedules",
        "schedules",
        "List schedules",
        None,
        200,
        "Page",
    ),
    (
        "post",
        "/api/v1/schedules/preview",
        "schedules",
        "Next fire times of an expression",
        Some("Preview"),
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/schedules/{id}",
        "schedules",
        "Show a schedule",
        None,
        200,
        "Schedule",
    ),
    (
        "put",
        "/api/v1/schedules/{id}",
        "schedules",
        "Update a schedule",
        Some("ScheduleBody"),
        200,
        "Schedule",
    ),
    (
        "delete",
        "/api/v1/schedules/{id}",
        "schedules",
        "Delete a schedule",
        None,
        204,
        "",
    ),
    (
        "post",
        "/api/v1/schedules/{id}/run",
        "schedules",
        "Run once now",
        None,
        202,
        "Object",
    ),
    (
        "post",
        "/api/v1/schedules/{id}/pause",
        "schedules",
        "Pause",
        None,
        200,
        "Schedule",
    ),
    (
        "post",
        "/api/v1/schedules/{id}/resume",
        "schedules",
        "Resume",
        None,
        200,
        "Schedule",
    ),
    (
        "get",
        "/api/v1/schedules/{id}/runs",
        "schedules",
        "Ticks and attempts",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/scheduler/status",
        "schedules",
        "Scheduler status",
        None,
        200,
        "Object",
    ),
    (
        "post",
        "/api/v1/subtenants",
        "tenancy",
        "Create a subtenant (admin)",
        Some("Subtenant"),
        201,
        "Object",
    ),
    (
        "get",
        "/api/v1/subtenants",
        "tenancy",
        "List subtenants (admin)",
        None,
        200,
        "Page",
    ),
    (
        "get",
        "/api/v1/subtenants/{id}",
        "tenancy",
        "Show a subtenant (admin)",
        None,
        200,
        "Object",
    ),
    (
        "put",
        "/api/v1/subtenants/{id}",
        "tenancy",
        "Update description and quotas (admin)",
        Some("Subtenant"),
        200,
        "Object",
    ),
    (
        "delete",
        "/api/v1/subtenants/{id}",
        "tenancy",
        "Delete (admin; ?force=true removes what it owns)",
        None,
        204,
        "",
    ),
    (
        "post",
        "/api/v1/subtenants/{id}/grant-access",
        "tenancy",
        "Grant a user access (admin)",
        Some("Grant"),
        200,
        "Object",
    ),
    (
        "post",
        "/api/v1/subtenants/{id}/revoke-access",
        "tenancy",
        "Revoke a user's access (admin)",
        Some("Grant"),
        204,
        "",
    ),
    (
        "get",
        "/api/v1/subtenants/{id}/members",
        "tenancy",
        "Members (admin)",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/audit",
        "tenancy",
        "Audit trail (admin)",
        None,
        200,
        "Page",
    ),
    (
        "get",
        "/api/v1/me",
        "tenancy",
        "Who I am and where I act",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/health",
        "operations",
        "Health of the database, runtime and Redis",
        None,
        200,
        "Object",
    ),
    ("get", "/metrics", "operations", "Prometheus metrics", None, 200, "Text"),
    (
        "get",
        "/openapi.json",
        "operations",
        "This document",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/",
        "operations",
        "Redirects to the API docs (/docs)",
        None,
        307,
        "",
    ),
    ("get", "/docs", "operations", "Swagger UI", None, 200, "Text"),
    ("get", "/redoc", "operations", "ReDoc", None, 200, "Text"),
    (
        "get",
        "/api/v1/packages",
        "packages",
        "Built-in and installed packages (?builtin=true|false filters)",
        None,
        200,
        "PackageList",
    ),
    (
        "post",
        "/api/v1/packages",
        "packages",
        "Install a pure-Python package and its dependencies with pip (?wait=seconds, then 202)",
        Some("PackageBody"),
        201,
        "Object",
    ),
    (
        "post",
        "/api/v1/packages/upload",
        "packages",
        "Upload a pure-Python wheel (multipart part `file`; ?replace=true)",
        Some("Upload"),
        201,
        "Object",
    ),
    (
        "get",
        "/api/v1/packages/installs",
        "packages",
        "Recent installs",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/packages/installs/{id}",
        "packages",
        "One install and its status",
        None,
        200,
        "PackageInstall",
    ),
    (
        "get",
        "/api/v1/packages/{name}",
        "packages",
        "One package (built in or installed)",
        None,
        200,
        "Package",
    ),
    (
        "delete",
        "/api/v1/packages/{name}",
        "packages",
        "Uninstall (409 while another package needs it, unless ?force=true)",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/secrets",
        "capabilities",
        "The tenant's secrets (names and dates, never values)",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/secrets/{name}",
        "capabilities",
        "One secret's name and dates",
        None,
        200,
        "Secret",
    ),
    (
        "put",
        "/api/v1/secrets/{name}",
        "capabilities",
        "Set a secret (201 new, 200 replaced); the value is never returned",
        Some("SecretBody"),
        201,
        "Secret",
    ),
    (
        "delete",
        "/api/v1/secrets/{name}",
        "capabilities",
        "Delete a secret",
        None,
        204,
        "",
    ),
    (
        "get",
        "/api/v1/egress",
        "capabilities",
        "The tenant's egress policy (default: deny all)",
        None,
        200,
        "EgressPolicy",
    ),
    (
        "put",
        "/api/v1/egress",
        "capabilities",
        "Replace the tenant's egress policy",
        Some("EgressPolicy"),
        200,
        "EgressPolicy",
    ),
    (
        "post",
        "/api/v1/workflows",
        "workflows",
        "Create a workflow (a DAG of functions)",
        Some("WorkflowBody"),
        201,
        "Workflow",
    ),
    (
        "get",
        "/api/v1/workflows",
        "workflows",
        "The tenant's workflows",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/workflows/{name}",
        "workflows",
        "One workflow (current version)",
        None,
        200,
        "Workflow",
    ),
    (
        "put",
        "/api/v1/workflows/{name}",
        "workflows",
        "Replace the definition (appends a version)",
        Some("WorkflowBody"),
        200,
        "Workflow",
    ),
    (
        "delete",
        "/api/v1/workflows/{name}",
        "workflows",
        "Delete a workflow",
        None,
        204,
        "",
    ),
    (
        "get",
        "/api/v1/workflows/{name}/versions",
        "workflows",
        "Version history, newest first",
        None,
        200,
        "Object",
    ),
    (
        "post",
        "/api/v1/workflows/{name}/run",
        "workflows",
        "Run it now (202; ?wait=seconds answers the result)",
        Some("Object"),
        202,
        "Object",
    ),
    (
        "get",
        "/api/v1/workflows/{name}/runs",
        "workflows",
        "Its runs (executions, whether manual, scheduled or from a webhook)",
        None,
        200,
        "Object",
    ),
    (
        "get",
        "/api/v1/workflows/{name}/runs/{id}",
        "workflows",
        "One run as its DAG: each node's status, attempts, timings",
        None,
        200,
        "Object",
    ),
];

fn schemas() -> Value {
    let settings = json!({
        "isolation": {"enum": ["warm", "fresh"]}, "timeout_seconds": {"type": "number"},
        "fuel": {"type": "integer"}, "memory_mb": {"type": "integer"}
    });
    let mut function_body = json!({
        "type": "object", "additionalProperties": false,
        "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "code": {"type": "string"},
                       "input_schema": {}, "output_schema": {}},
        "required": ["name", "code"]
    });
    for (k, v) in settings.as_object().into_iter().flatten() {
        function_body["properties"][k] = v.clone();
    }
    json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {}, "execution_id": {"type": "string"}},
            "required": ["code", "message"]}}},
        "FunctionBody": function_body,
        "Function": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"},
            "version": {"type": "integer"}, "latest_version": {"type": "integer"}, "code": {"type": "string"},
            "code_sha256": {"type": "string"}, "input_schema": {}, "output_schema": {}, "settings": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}}},
        "InvokeResult": {"type": "object", "properties": {"execution_id": {"type": "string"},
            "status": {"enum": ["succeeded", "failed"]}, "output": {}, "error": {"type": ["object", "null"]},
            "duration_ms": {"type": "number"}, "fuel_used": {"type": "integer"}}},
        "Execution": {"type": "object", "properties": {"id": {"type": "string"}, "trigger": {"enum": ["manual", "webhook", "schedule", "workflow"]},
            "trigger_id": {"type": ["string", "null"]}, "attempt": {"type": "integer"}, "retry_of": {"type": "string"},
            "function_name": {"type": "string"}, "status": {"enum": ["running", "succeeded", "failed"]},
            "input": {}, "output": {}, "error": {}, "stdout": {"type": "string"}, "stderr": {"type": "string"},
            "fuel_used": {"type": "integer"}, "duration_ms": {"type": ["number", "null"]}}},
        "WebhookBody": {"type": "object", "additionalProperties": false, "properties": {
            "path": {"type": "string"}, "function_name": {"type": "string"},
            "workflow_name": {"type": "string", "description": "run this workflow (request = run config) instead of a function"},
            "http_method": {"enum": ["ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]},
            "requires_auth": {"type": "boolean"}, "require_timestamp": {"type": "boolean"}, "description": {"type": "string"},
            "enabled": {"type": "boolean"}, "async": {"type": "boolean"}, "input_mode": {"enum": ["request", "body"]},
            "max_concurrency": {"type": ["integer", "null"]}, "secret": {"type": "string"}}},
        "Webhook": {"type": "object", "properties": {"id": {"type": "string"}, "path": {"type": "string"},
            "url": {"type": "string"}, "function_name": {"type": "string"}, "workflow_name": {"type": "string"},
            "secret": {"type": "string"}}},
        "ScheduleBody": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "function_name": {"type": "string"},
            "workflow_name": {"type": "string", "description": "run this workflow (input_data = run config) instead of a function"},
            "cron_expression": {"type": "string"},
            "timezone": {"type": "string"}, "input_data": {}, "enabled": {"type": "boolean"},
            "max_retries": {"type": "integer"}, "retry_delay_seconds": {"type": "number"},
            "backoff_factor": {"type": "number"}, "max_retry_delay_seconds": {"type": "number"},
            "overlap_policy": {"enum": ["skip", "allow"]}, "catchup_window_seconds": {"type": "number"}}},
        "Schedule": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"},
            "function_name": {"type": "string"}, "workflow_name": {"type": "string"},
            "next_run_at": {"type": ["string", "null"]}, "last_run_at": {"type": ["string", "null"]},
            "last_status": {"type": ["string", "null"]}, "upcoming": {"type": "array", "items": {"type": "string"}}}},
        "Preview": {"type": "object", "properties": {"cron_expression": {"type": "string"}, "timezone": {"type": "string"},
            "after": {"type": "string", "format": "date-time"}, "count": {"type": "integer"}}, "required": ["cron_expression"]},
        "Subtenant": {"type": "object", "properties": {"subtenant_id": {"type": "string"}, "description": {"type": "string"},
            "quotas": {"type": "object"}}},
        "Grant": {"type": "object", "properties": {"user_email": {"type": "string"}, "role": {"enum": ["member", "viewer"]}},
            "required": ["user_email"]},
        "Page": {"type": "object", "properties": {"total": {"type": "integer"}, "limit": {"type": "integer"},
            "offset": {"type": "integer"}}},
        "EventStream": {"type": "string", "description": "text/event-stream"},
        "Object": {"type": "object"},
        "Any": {},
        "Text": {"type": "string"}
    })
}

/// Every component schema.
fn all_schemas() -> Value {
    let mut all = schemas();
    if let (Some(a), Value::Object(b)) = (all.as_object_mut(), more_schemas()) {
        a.extend(b);
    }
    all
}

/// Schemas of the later resources (kept apart: one `json!` cannot hold them all).
fn more_schemas() -> Value {
    json!({
        "PackageBody": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string", "description": "1.2.3 or a specifier such as >=1.2,<2"}}},
        "Package": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"},
            "builtin": {"type": "boolean"}, "sha256": {"type": "string"}, "size_bytes": {"type": "integer"},
            "requires": {"type": "array", "items": {"type": "string"}}, "source": {"enum": ["pip", "upload"]},
            "installed_by": {"type": "string"}, "installed_at": {"type": "string"}}},
        "PackageList": {"type": "object", "properties": {"packages": {"type": "array", "items": {"$ref": "#/components/schemas/Package"}},
            "installation_allowed": {"type": "boolean"}}},
        "PackageInstall": {"type": "object", "properties": {"id": {"type": "string"}, "requirement": {"type": "string"},
            "status": {"enum": ["running", "succeeded", "failed"]}, "error": {"type": ["object", "null"]},
            "result": {"type": ["object", "null"]}}},
        "Upload": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}},
        "SecretBody": {"type": "object", "additionalProperties": false, "required": ["value"],
            "properties": {"value": {"type": "string", "maxLength": 65536}}},
        "Secret": {"type": "object", "properties": {"name": {"type": "string"}, "created_by": {"type": "string"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}}},
        "EgressPolicy": {"type": "object", "additionalProperties": false, "properties": {
            "allow": {"type": "array", "items": {"oneOf": [
                {"type": "string", "description": "host (api.example.com, *.example.com) or URL prefix (https://host/path/)"},
                {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}, "allow_private": {"type": "boolean"}}}]}},
            "max_requests_per_execution": {"type": "integer", "default": 100},
            "max_response_bytes": {"type": "integer", "default": 10485760},
            "timeout_seconds": {"type": "number", "default": 30}}},
        "WorkflowBody": {"type": "object", "required": ["nodes"], "properties": {
            "name": {"type": "string"},
            "nodes": {"type": "array", "maxItems": 200, "items": {"oneOf": [{"type": "string"}, {"type": "object", "required": ["function"],
                "properties": {"function": {"type": "string"}, "retries": {"type": "integer"}, "retry_delay_seconds": {"type": "number"},
                    "backoff_factor": {"type": "number"}, "timeout_seconds": {"type": "number"}}}]}},
            "edges": {"type": "array", "items": {"oneOf": [{"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"}},
                {"type": "object", "properties": {"parents": {"type": "array", "items": {"type": "string"}},
                    "children": {"type": "array", "items": {"type": "string"}}}}]}},
            "config": {"type": "object"}, "concurrency": {"type": "integer", "minimum": 1, "maximum": 32},
            "description": {"type": "string"},
            "schedule": {"type": "object", "required": ["cron_expression"], "additionalProperties": false, "properties": {
                "cron_expression": {"type": "string"}, "timezone": {"type": "string", "default": "UTC"},
                "enabled": {"type": "boolean", "default": true}}}}},
        "Workflow": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"},
            "nodes": {"type": "array"}, "edges": {"type": "array"}, "config": {"type": "object"}, "concurrency": {"type": "integer"},
            "isolated": {"type": "array", "items": {"type": "string"}},
            "schedule": {"type": "object", "properties": {"cron_expression": {"type": "string"}, "timezone": {"type": "string"},
                "enabled": {"type": "boolean"}, "schedule_name": {"type": "string"}}}}}
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, tag, summary, body, status, response) in OPS {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "tags": [tag],
            "summary": summary,
            "operationId": format!("{method}_{}", path.replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": params,
            "responses": {
                status.to_string(): match *response {
                    "" => json!({"description": "done"}),
                    r => json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}}}),
                },
                "4XX": {"description": "client error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(b) = body {
            let media = if *b == "Upload" {
                "multipart/form-data"
            } else {
                "application/json"
            };
            op["requestBody"] = json!({"content": {media: {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        if path.starts_with("/api/v1/") && !path.starts_with("/api/v1/h/") {
            op["security"] = json!([{"bearer": []}]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Maestro", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Run untrusted Python functions in a WebAssembly sandbox and wire them together."},
        "paths": paths,
        "components": {
            "schemas": all_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}
