//! Every route the routers declare is in `/openapi.json`, with each of its methods; the docs
//! pages and their bundles are served from the binary.

mod common;

use common::{start_with, Backend};
use reqwest::StatusCode;
use serde_json::Value;

/// `text` with every `.route(...)` call on one line.
fn one_line_routes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(".route(") {
        out.push_str(&rest[..i]);
        let call = &rest[i..];
        let mut depth = 0;
        let mut end = call.len();
        for (j, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let joined: Vec<&str> = call[..end].split_whitespace().collect();
        out.push_str(&joined.join(" ").replace(".route( ", ".route("));
        rest = &call[end..];
    }
    out.push_str(rest);
    out
}

/// (method, full path) of every `.route(...)` in the HTTP sources.
fn declared_routes() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut files = vec![];
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    // Routers merged at the top level; every other one is nested under /api/v1.
    let top_level = ["health.rs", "openapi.rs"];
    let mut out = vec![];
    for f in files {
        // A `.route(...)` that rustfmt broke over several lines is joined into one.
        let text = one_line_routes(&std::fs::read_to_string(&f).unwrap());
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name == "console.rs" {
            continue; // the web console's pages and assets, not the API
        }
        for line in text.lines() {
            let Some(rest) = line.split(".route(\"").nth(1) else {
                continue;
            };
            let path = rest.split('"').next().unwrap();
            if path.starts_with("/docs/") {
                continue; // the UI's own bundles
            }
            let full = if top_level.contains(&name.as_str()) || path == "/scheduler/status" {
                path.to_string()
            } else {
                format!("/api/v1{path}")
            }
            .replace("{*path}", "{path}");
            let methods: Vec<&str> = ["get(", "post(", "put(", "delete(", "patch(", "any("]
                .into_iter()
                .filter(|m| {
                    rest.contains(&format!(" {m}"))
                        || rest.contains(&format!(",{m}"))
                        || rest.contains(&format!(".{m}"))
                })
                .collect();
            assert!(!methods.is_empty(), "no method found in {line}");
            for m in methods {
                out.push((m.trim_end_matches('(').to_string(), full.clone()));
            }
        }
    }
    out
}

async fn every_route_documented(b: Backend) {
    let app = start_with(b, &[]).await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["tags"][0]["name"], "functions", "the docs open on functions");
    // Query parameters come from the handlers' query types.
    let params = |method: &str, path: &str| -> Vec<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(params("get", "/api/v1/functions"), ["limit", "offset"]);
    assert!(params("get", "/api/v1/executions").contains(&"trigger_id".to_string()));
    assert_eq!(params("get", "/api/v1/executions/{id}/logs"), ["follow"]);
    assert_eq!(params("delete", "/api/v1/packages/{name}"), ["force"]);
    assert_eq!(params("post", "/api/v1/packages/upload"), ["replace"]);
    assert!(params("post", "/api/v1/workflows/{name}/run").contains(&"wait".to_string()));
    let routes = declared_routes();
    assert!(routes.len() > 40, "found {} routes", routes.len());
    assert!(
        routes.iter().any(|(m, p)| m == "put" && p == "/api/v1/secrets/{name}"),
        "a route written over several lines is found"
    );
    for (method, path) in &routes {
        let ops = &doc["paths"][path];
        assert!(ops.is_object(), "{path} is not in the document");
        if method == "any" {
            for m in ["get", "post", "put", "patch", "delete"] {
                assert!(ops[m].is_object(), "{m} {path} is not in the document");
            }
        } else {
            assert!(
                ops[method.as_str()].is_object(),
                "{method} {path} is not in the document"
            );
        }
    }
    // Every schema a path refers to is defined.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = vec![];
    refs(&doc["paths"], &mut all);
    refs(&doc["components"], &mut all);
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(doc["components"]["schemas"][name].is_object(), "{r} is not defined");
    }
    for (page, needle) in [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")] {
        let text = app.get_text(page).await;
        assert!(
            text.contains(needle) && !text.contains("https://"),
            "{page} loads only local files"
        );
    }
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/redoc.standalone.js",
    ] {
        let r = app.client.get(format!("{}{asset}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(r.bytes().await.unwrap().len() > 100_000, "{asset}");
    }
    app.stop().await;
}

both_backends!(every_route_documented);
