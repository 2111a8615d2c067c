//! The server's side of a project: read over the public API (the CLI never opens a
//! database), and a plan applied step by step.

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::kinds::Kind;
use super::plan::{Action, Plan, Step};
use super::{Project, Resource};
use crate::client::{seg, Client};

/// A workflow's own schedule is part of the workflow, not a schedule of the folder.
const WORKFLOW_SCHEDULE_PREFIX: &str = "workflow:";
const PAGE: usize = 200;

/// Everything the token's tenant holds that a folder can declare.
pub async fn fetch(client: &Client) -> anyhow::Result<Project> {
    let mut p = Project::default();
    let get = |path: String| async move { client.call_ok(Method::GET, &path, None, &[StatusCode::OK]).await };
    let packages = get("/packages?builtin=false".into()).await?;
    for pkg in list(&packages, "packages") {
        // One pip brought in as a dependency is marked (its `id` names what needs it): a
        // folder may declare it, but it is never pruned or pulled on its own.
        let fields = Map::from_iter([("version".to_string(), pkg["version"].clone())]);
        let needed_by = pkg["dependency_of"].as_str().map(|n| Value::String(n.to_string()));
        p.resources
            .push(remote(Kind::Package, &pkg["name"], fields, needed_by.as_ref()));
    }
    let egress = get("/egress".into()).await?;
    p.resources.push(remote(
        Kind::Egress,
        &"policy".into(),
        Kind::Egress.from_view(&egress),
        None,
    ));
    for f in pages(client, "functions").await? {
        p.resources
            .push(remote(Kind::Function, &f["name"], Kind::Function.from_view(&f), None));
    }
    for w in list(&get("/workflows".into()).await?, "workflows") {
        p.resources
            .push(remote(Kind::Workflow, &w["name"], Kind::Workflow.from_view(&w), None));
    }
    for h in pages(client, "webhooks").await? {
        p.resources.push(remote(
            Kind::Webhook,
            &h["path"],
            Kind::Webhook.from_view(&h),
            Some(&h["id"]),
        ));
    }
    for s in pages(client, "schedules").await? {
        if !s["name"].as_str().unwrap_or("").starts_with(WORKFLOW_SCHEDULE_PREFIX) {
            p.resources.push(remote(
                Kind::Schedule,
                &s["name"],
                Kind::Schedule.from_view(&s),
                Some(&s["id"]),
            ));
        }
    }
    p.secrets = list(&get("/secrets".into()).await?, "secrets")
        .into_iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    Ok(p)
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn remote(kind: Kind, key: &Value, fields: Map<String, Value>, id: Option<&Value>) -> Resource {
    Resource {
        kind,
        key: key.as_str().unwrap_or_default().to_string(),
        fields,
        id: id.and_then(Value::as_str).map(String::from),
        source: "server".into(),
    }
}

/// Every item of a paged collection (`{"<name>": [...], "total"}`).
async fn pages(client: &Client, name: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let path = format!("/{name}?limit={PAGE}&offset={}", out.len());
        let page = client.call_ok(Method::GET, &path, None, &[StatusCode::OK]).await?;
        let items = list(&page, name);
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let done = items.is_empty();
        out.extend(items);
        if done || out.len() >= total {
            return Ok(out);
        }
    }
}

/// What a deploy did, line by line (`created function hello`).
pub type Applied = Vec<String>;

/// What `apply` reports as it goes, for a person to watch: a change it is starting (a
/// package install can take minutes), then the line saying it was done.
pub enum Progress<'a> {
    Starting(&'a str),
    Done(&'a str),
}

/// What a step is about to do (`installing package numpy`); None for a step with nothing to do.
fn doing(s: &Step) -> Option<String> {
    let verb = match (&s.action, s.kind) {
        (Action::Create | Action::Update(_), Kind::Package) => "installing",
        (Action::Create, _) => "creating",
        (Action::Update(_), _) => "updating",
        (Action::Delete, _) => "deleting",
        (Action::Unchanged | Action::Extra, _) => return None,
    };
    Some(format!("{verb} {} {}", s.kind.singular(), s.key))
}

/// Apply the plan's changes in order, reporting each as it starts and as it is done; on the
/// first refusal, stop and say what was applied before it.
pub async fn apply(client: &Client, plan: &Plan, progress: &mut dyn FnMut(Progress)) -> anyhow::Result<Applied> {
    let mut done = Applied::new();
    for s in &plan.steps {
        let Some(what) = doing(s) else { continue };
        progress(Progress::Starting(&what));
        let line = match apply_step(client, s).await {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            Err(e) => {
                let before = match done.is_empty() {
                    true => "nothing was applied before it".to_string(),
                    false => format!("applied before it:\n  {}", done.join("\n  ")),
                };
                anyhow::bail!("{} {}: {e:#}\n{before}", s.kind.singular(), s.key);
            }
        };
        progress(Progress::Done(&line));
        done.push(line);
    }
    Ok(done)
}

async fn apply_step(client: &Client, s: &Step) -> anyhow::Result<Option<String>> {
    let what = format!("{} {}", s.kind.singular(), s.key);
    let ok = [
        StatusCode::OK,
        StatusCode::CREATED,
        StatusCode::ACCEPTED,
        StatusCode::NO_CONTENT,
    ];
    let call = |method: Method, path: String, body: Option<Value>| async move {
        client.call_ok(method, &path, body.as_ref(), &ok).await
    };
    let local = s.local.as_ref();
    let fields = || local.map(|l| l.fields.clone()).unwrap_or_default();
    let id = || s.remote.as_ref().and_then(|r| r.id.clone()).unwrap_or_default();
    match (&s.action, s.kind) {
        (Action::Unchanged | Action::Extra, _) => Ok(None),
        (Action::Create | Action::Update(_), Kind::Package) => {
            let body = serde_json::json!({"name": s.key, "version": fields()["version"]});
            let answer = call(Method::POST, "/packages?wait=300".into(), Some(body)).await?;
            if answer.get("job_id").is_some() && answer.get("installed").is_none() {
                anyhow::bail!("the install is still running on the server (GET /api/v1/packages/installs)");
            }
            Ok(Some(format!("installed {what}")))
        }
        (Action::Create | Action::Update(_), Kind::Egress) => {
            call(Method::PUT, "/egress".into(), Some(Value::Object(fields()))).await?;
            Ok(Some("set the egress policy".into()))
        }
        (Action::Create, kind) => {
            let key_field = if kind == Kind::Webhook { "path" } else { "name" };
            let mut body = without_nulls(fields());
            body.insert(key_field.into(), Value::String(s.key.clone()));
            let answer = call(Method::POST, format!("/{}", kind.plural()), Some(Value::Object(body))).await?;
            Ok(Some(match answer["secret"].as_str() {
                Some(secret) => format!("created {what} (signing secret, shown once: {secret})"),
                None => format!("created {what}"),
            }))
        }
        (Action::Update(_), kind) => {
            let (path, body) = match kind {
                // A function's null clears a schema or a setting back to the default.
                Kind::Function => (format!("/functions/{}", seg(&s.key)), fields()),
                Kind::Workflow => (format!("/workflows/{}", seg(&s.key)), without_nulls(fields())),
                _ => (format!("/{}/{}", kind.plural(), seg(&id())), update_body(fields())),
            };
            call(Method::PUT, path, Some(Value::Object(body))).await?;
            Ok(Some(format!("updated {what}")))
        }
        (Action::Delete, kind) => {
            let key = match kind {
                Kind::Webhook | Kind::Schedule => id(),
                _ => s.key.clone(),
            };
            call(Method::DELETE, format!("/{}/{}", kind.plural(), seg(&key)), None)
                .await
                .with_context(|| format!("deleting {what}"))?;
            Ok(Some(format!("deleted {what}")))
        }
    }
}

fn without_nulls(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|_, v| !v.is_null());
    m
}

/// A webhook's or schedule's update: its target named by the field that is set; other
/// nulls sent as they are (a webhook's `max_concurrency: null` removes its cap).
fn update_body(mut m: Map<String, Value>) -> Map<String, Value> {
    for target in ["function_name", "workflow_name"] {
        if m.get(target).is_some_and(Value::is_null) {
            m.remove(target);
        }
    }
    m
}
