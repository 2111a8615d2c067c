//! Every answer the tests receive is checked against `/openapi.json`: its status must be
//! documented for the operation, and a JSON body must validate against the documented
//! schema. So the document cannot drift from the handlers without a test failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(maestro::http::openapi::document)
}

/// Does a concrete path match a template (`{x}` is one segment; `{path}` the rest)?
fn matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some("{path}"), Some(seg)) => return !seg.is_empty(),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// The operation documented for `method` on `path`, with its template; literal templates
/// win over ones with parameters (`/schedules/preview` over `/schedules/{id}`).
fn operation(method: &Method, path: &str) -> Option<(&'static str, &'static Value)> {
    let paths = document()["paths"].as_object()?;
    let method = method.as_str().to_ascii_lowercase();
    let mut found: Vec<(&'static str, &'static Value)> = paths
        .iter()
        .filter(|(t, item)| matches(t, path) && item.get(&method).is_some())
        .map(|(t, item)| (t.as_str(), &item[&method]))
        .collect();
    found.sort_by_key(|(t, _)| t.matches('{').count());
    found.into_iter().next()
}

fn validator(schema: &Value) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&key) {
        return v.clone();
    }
    // The schema refers to `#/components/schemas/...`: give it the document's components.
    let mut root = json!({"components": document()["components"].clone()});
    if let (Some(r), Some(s)) = (root.as_object_mut(), schema.as_object()) {
        r.extend(s.clone());
    }
    let v = Arc::new(jsonschema::validator_for(&root).expect("the documented schema compiles"));
    cache.lock().unwrap().insert(key, v.clone());
    v
}

/// Panic unless `status` is documented for the call and `body` fits its schema. Calls to
/// paths or methods the document does not have (tests of 404 and 405) are not checked.
pub fn check(method: &Method, path_and_query: &str, status: StatusCode, body: &Value, json: bool) {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let Some((template, op)) = operation(method, path) else {
        return;
    };
    let responses = &op["responses"];
    let class = format!("{}XX", status.as_u16() / 100);
    let Some(response) = [status.as_str(), class.as_str()]
        .into_iter()
        .find_map(|k| responses.get(k))
    else {
        panic!("{method} {template} answered {status}, which /openapi.json does not document: {body}");
    };
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return;
    };
    if schema.as_object().is_some_and(|o| o.is_empty()) {
        return; // documented as any value (what a function answered)
    }
    if !json {
        panic!("{method} {template} answered {status} without a JSON body, but /openapi.json documents one");
    }
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(body)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} answered {status} with a body that does not fit /openapi.json: {errors:?}\nbody: {body}"
    );
}
