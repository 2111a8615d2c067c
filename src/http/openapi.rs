//! The OpenAPI 3.1 document (`/openapi.json`), Swagger UI (`/docs`) and ReDoc (`/redoc`).
//!
//! The document is generated from the types: each resource module lists its operations
//! with the Rust types of their query parameters, bodies and answers (`Doc::op`), and the
//! schemas come from those types' `IntoParams`/`ToSchema` derives (`views.rs` holds the
//! answers' shapes). `tests/openapi.rs` checks every route the routers declare is in it, and
//! the test suite checks every response it receives against it. The UI bundles are vendored
//! under `static/docs` and compiled in, so nothing is downloaded at build or run time.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use super::AppState;

const SWAGGER_JS: &str = include_str!("../../static/docs/swagger-ui-bundle.js");
const SWAGGER_CSS: &str = include_str!("../../static/docs/swagger-ui.css");
const REDOC_JS: &str = include_str!("../../static/docs/redoc.standalone.js");

pub fn routes() -> Router<AppState> {
    Router::new()
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

/// The document as it is built: paths and the component schemas they refer to.
#[derive(Default)]
pub struct Doc {
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
}

/// One operation being described; `add` puts it in the document.
#[must_use = "call .add() to put the operation in the document"]
pub struct Op<'a> {
    doc: &'a mut Doc,
    method: &'static str,
    path: &'static str,
    op: Value,
}

impl Doc {
    /// An operation on `path` (`{name}` segments become string path parameters). Paths under
    /// `/api/v1/`, but for the webhook handler, need a bearer token.
    pub fn op(&mut self, method: &'static str, path: &'static str, tag: &str, summary: &str) -> Op<'_> {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let error = self.schema::<super::views::Error>();
        let error = json!({"description": "the error", "content": {"application/json": {"schema": error}}});
        let mut op = json!({
            "tags": [tag],
            "summary": summary,
            "operationId": format!("{method}_{}", path.trim_start_matches("/api/v1").replace(['/', '{', '}', '-', '.'], "_").trim_matches('_')),
            "parameters": params,
            "responses": {"4XX": error, "5XX": error},
        });
        if (path.starts_with("/api/v1/") && !path.starts_with("/api/v1/h/"))
            || path == "/scheduler/status"
            || path == "/cluster"
        {
            op["security"] = json!([{"bearer": []}]);
        }
        Op {
            doc: self,
            method,
            path,
            op,
        }
    }

    /// A `$ref` to `T`'s schema, which goes into the components with everything it uses.
    fn schema<T: ToSchema>(&mut self) -> Value {
        let mut used = Vec::new();
        T::schemas(&mut used);
        for (name, schema) in used {
            self.schemas.insert(name, json!(schema));
        }
        let name = T::name();
        self.schemas.insert(name.to_string(), json!(T::schema()));
        json!({"$ref": format!("#/components/schemas/{name}")})
    }
}

impl Op<'_> {
    /// The query parameters, from the handler's query type.
    pub fn query<Q: IntoParams>(mut self) -> Self {
        let params = Q::into_params(|| Some(ParameterIn::Query));
        if let Some(list) = self.op["parameters"].as_array_mut() {
            list.extend(params.iter().map(|p| json!(p)));
        }
        self
    }

    /// A JSON request body of type `B`.
    pub fn body<B: ToSchema>(self) -> Self {
        self.body_as::<B>("application/json")
    }

    /// A request body of type `B` in `media` (`multipart/form-data` for uploads).
    pub fn body_as<B: ToSchema>(mut self, media: &str) -> Self {
        let schema = self.doc.schema::<B>();
        self.op["requestBody"] = json!({"content": {media: {"schema": schema}}});
        self
    }

    /// A request body of raw bytes (a file's content).
    pub fn bytes_body(mut self) -> Self {
        self.op["requestBody"] = json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
        self
    }

    /// Say what path parameter `name` holds (one that may span several segments: `a/b.csv`).
    pub fn path_param(mut self, name: &str, description: &str) -> Self {
        if let Some(list) = self.op["parameters"].as_array_mut() {
            for p in list.iter_mut().filter(|p| p["name"] == name && p["in"] == "path") {
                p["description"] = json!(description);
            }
        }
        self
    }

    /// A request body of any JSON (a function's input).
    pub fn any_body(mut self) -> Self {
        self.op["requestBody"] = json!({"content": {"application/json": {"schema": {}}}});
        self
    }

    /// A JSON answer of type `R` with `status`.
    pub fn reply<R: ToSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = self.doc.schema::<R>();
        self.op["responses"][status.to_string()] =
            json!({"description": description, "content": {"application/json": {"schema": schema}}});
        self
    }

    /// An answer with no body (204, a redirect).
    pub fn empty(mut self, status: u16, description: &str) -> Self {
        self.op["responses"][status.to_string()] = json!({"description": description});
        self
    }

    /// Answers of a status class (`2XX`) with any body (a function chose the status).
    pub fn any_of(mut self, class: &str, description: &str) -> Self {
        self.op["responses"][class] =
            json!({"description": description, "content": {"application/json": {"schema": {}}}});
        self
    }

    /// An answer of another media type (text, HTML, a stream, whatever a function answers).
    /// (Added to the status's JSON answer when it has one: `?stream=true` answers events.)
    pub fn media(mut self, status: u16, media: &str, description: &str) -> Self {
        let answer = &mut self.op["responses"][status.to_string()];
        if answer["content"].is_object() {
            answer["content"][media] = json!({"schema": {}});
            let text = format!("{}; {description}", answer["description"].as_str().unwrap_or(""));
            answer["description"] = json!(text);
        } else {
            *answer = json!({"description": description, "content": {media: {"schema": {}}}});
        }
        self
    }

    pub fn add(self) {
        let entry = self.doc.paths.entry(self.path.to_string()).or_insert_with(|| json!({}));
        entry[self.method] = self.op;
    }
}

/// The sections, in the order the docs show them: functions first, admin last.
const TAGS: [&str; 10] = [
    "functions",
    "run",
    "executions",
    "webhooks",
    "schedules",
    "workflows",
    "packages",
    "capabilities",
    "tenancy",
    "operations",
];

/// The whole document.
pub fn document() -> Value {
    let mut doc = Doc::default();
    super::functions::document(&mut doc);
    super::executions::document(&mut doc);
    super::webhooks::document(&mut doc);
    super::hooks::document(&mut doc);
    super::schedules::document(&mut doc);
    super::workflows::document(&mut doc);
    super::run::document(&mut doc);
    super::sessions::document(&mut doc);
    super::packages::document(&mut doc);
    super::capabilities::document(&mut doc);
    super::tenancy::document(&mut doc);
    super::health::document(&mut doc);
    own(&mut doc);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Maestro", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Run untrusted Python functions in a WebAssembly sandbox and wire them together."},
        // Swagger UI and ReDoc show the sections in this order: functions first.
        "tags": TAGS.map(|t| json!({"name": t})),
        "paths": doc.paths,
        "components": {
            "schemas": doc.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}

fn own(doc: &mut Doc) {
    let tag = "operations";
    doc.op("get", "/openapi.json", tag, "This document")
        .media(200, "application/json", "the OpenAPI document")
        .add();
    doc.op("get", "/", tag, "Redirects to the web console (/ui/)")
        .empty(303, "to /ui/")
        .add();
    doc.op(
        "get",
        "/ui/",
        tag,
        "The web console (a client of this API; sign in with a token)",
    )
    .media(200, "text/html", "the page")
    .add();
    doc.op("get", "/docs", tag, "Swagger UI")
        .media(200, "text/html", "the page")
        .add();
    doc.op("get", "/redoc", tag, "ReDoc")
        .media(200, "text/html", "the page")
        .add();
}
