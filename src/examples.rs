//! `maestro examples load`: create the shipped example functions and webhooks through the
//! API of a running server, as any client would.
//!
//! Bundles are `{"functions": [...], "webhooks": [...]}` files; the ones in `examples/` are
//! built into the binary so the container image can load them too. Loading is idempotent: an
//! unchanged function or webhook is reported unchanged, and one the tenant already has in
//! another form (its own `hello_world`, say) is left alone unless `--force` replaces it.

use std::path::Path;

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};

use crate::client::Client;
use serde_json::{json, Value};

/// The shipped bundles, in load order.
pub const BUNDLES: [(&str, &str); 3] = [
    ("basics", include_str!("../examples/basics.json")),
    (
        "document_processing",
        include_str!("../examples/document_processing.json"),
    ),
    (
        "invoice_processing",
        include_str!("../examples/invoice_processing.json"),
    ),
];

/// Bundles from `dir` (every `*.json`, by name), or the shipped ones.
pub fn bundles(dir: Option<&Path>) -> anyhow::Result<Vec<(String, Value)>> {
    let Some(dir) = dir else {
        return BUNDLES
            .iter()
            .map(|(name, text)| Ok((name.to_string(), serde_json::from_str(text)?)))
            .collect();
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)?;
            let name = p.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            Ok((
                name,
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?,
            ))
        })
        .collect()
}

/// Whether the stored item already says everything the example says (fields the example
/// leaves out are not compared).
fn same(stored: &Value, wanted: &Value) -> bool {
    wanted
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "secret"))
        .all(|(k, v)| stored.get(k).unwrap_or(&Value::Null) == v)
}

/// What to do with an item the tenant already has.
fn existing(bundle: &str, what: &str, stored: &Value, wanted: &Value, force: bool) -> Option<String> {
    if same(stored, wanted) {
        return Some(format!("{bundle}: {what} is unchanged"));
    }
    if !force {
        return Some(format!(
            "{bundle}: skipped {what}: you have your own of that name, left as it is (--force replaces it)"
        ));
    }
    None
}

/// Load `bundles` into the server at `base` as the token's tenant, with `path_prefix` before
/// every webhook path (paths are shared by all tenants of a server); one line per item. An
/// item the tenant already has in another form is left alone unless `force`.
pub async fn load(
    base: &str,
    token: &str,
    bundles: &[(String, Value)],
    path_prefix: &str,
    force: bool,
) -> anyhow::Result<Vec<String>> {
    let client = Client::new(base, token);
    let mut report = vec![];
    for (bundle, b) in bundles {
        for f in b["functions"].as_array().into_iter().flatten() {
            let name = f["name"].as_str().context("a function without a name")?;
            let what = format!("function {name}");
            let (status, stored) = client.call(Method::GET, &format!("/functions/{name}"), None).await?;
            if status != StatusCode::OK && status != StatusCode::NOT_FOUND {
                bail!(
                    "GET /functions/{name}: {status}: {}",
                    stored["error"]["message"].as_str().unwrap_or(&stored.to_string())
                );
            }
            let line = if status == StatusCode::NOT_FOUND {
                client
                    .call_ok(Method::POST, "/functions", Some(f), &[StatusCode::CREATED])
                    .await?;
                format!("{bundle}: created {what}")
            } else if let Some(line) = existing(bundle, &what, &stored, f, force) {
                line
            } else {
                let v = client
                    .call_ok(Method::PUT, &format!("/functions/{name}"), Some(f), &[StatusCode::OK])
                    .await?;
                format!("{bundle}: replaced {what} (now version {})", v["version"])
            };
            report.push(line);
        }
        let listed = client
            .call_ok(Method::GET, "/webhooks?limit=500", None, &[StatusCode::OK])
            .await?;
        for w in b["webhooks"].as_array().into_iter().flatten() {
            let mut w = w.clone();
            let path = format!(
                "{path_prefix}{}",
                w["path"].as_str().context("a webhook without a path")?
            );
            w["path"] = json!(path);
            let w = &w;
            let what = format!("webhook /api/v1/h/{path}");
            let found = listed["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["path"] == json!(path));
            let line = match found {
                Some(stored) => match existing(bundle, &what, stored, w, force) {
                    Some(line) => line,
                    None => {
                        let id = stored["id"].as_str().context("a webhook without an id")?;
                        client
                            .call_ok(Method::PUT, &format!("/webhooks/{id}"), Some(w), &[StatusCode::OK])
                            .await?;
                        format!("{bundle}: replaced {what}")
                    }
                },
                None => {
                    client
                        .call_ok(Method::POST, "/webhooks", Some(w), &[StatusCode::CREATED])
                        .await?;
                    format!("{bundle}: created {what}")
                }
            };
            report.push(line);
        }
    }
    Ok(report)
}
