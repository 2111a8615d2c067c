//! Everyday commands: functions, invoke, executions, show, logs (-f), tail, schedules,
//! webhooks, workflows run. Tables for people, `--json` for scripts.

use anyhow::bail;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::term::{paint_status_column, spinner, status_word};
use crate::client::{seg, Client};

pub(super) async fn get(client: &Client, path: &str) -> anyhow::Result<Value> {
    client.call_ok(Method::GET, path, None, &[StatusCode::OK]).await
}

/// A table with a header row, no borders (easy to read and to grep).
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec())
        .add_rows(rows);
    let mut out = t.to_string();
    out.push('\n');
    out
}

pub(super) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// `0.4 ms`, `12 ms`, `1.5 s`.
pub fn duration(ms: &Value) -> String {
    match ms.as_f64() {
        None => "-".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

fn print(json: bool, v: &Value, text: impl FnOnce() -> String) {
    match json {
        true => println!("{v:#}"),
        false => print!("{}", text()),
    }
}

/// `maestro functions [ls]`.
pub async fn functions(client: &Client, json: bool) -> anyhow::Result<()> {
    let v = get(client, "/functions?limit=1000").await?;
    print(json, &v, || {
        let rows = list(&v, "functions")
            .map(|f| {
                vec![
                    s(&f["name"]),
                    s(&f["version"]),
                    s(&f["updated_at"]),
                    s(&f["description"]),
                ]
            })
            .collect();
        table(&["NAME", "VERSION", "UPDATED", "DESCRIPTION"], rows)
    });
    Ok(())
}

pub(super) fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// A 404 about function `name`, with the closest name the tenant has.
async fn unknown_function(client: &Client, name: &str) -> anyhow::Error {
    let names: Vec<String> = match get(client, "/functions?limit=1000").await {
        Ok(v) => list(&v, "functions").map(|f| s(&f["name"])).collect(),
        Err(e) => return e,
    };
    let best = names
        .iter()
        .map(|n| (edit_distance(n, name), n))
        .filter(|(d, n)| *d <= (n.len().max(name.len()) / 3).max(2))
        .min();
    match best {
        Some((_, n)) => anyhow::anyhow!("no function `{name}`: did you mean `{n}`?"),
        None => anyhow::anyhow!("no function `{name}` (`maestro functions` lists them)"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// GET a function's path, turning a 404 into a suggestion.
async fn function_get(client: &Client, name: &str, rest: &str) -> anyhow::Result<Value> {
    let (status, v) = client
        .call(Method::GET, &format!("/functions/{}{rest}", seg(name)), None)
        .await?;
    match status {
        StatusCode::OK => Ok(v),
        StatusCode::NOT_FOUND => Err(unknown_function(client, name).await),
        _ => bail!("{}", refusal(status, &v)),
    }
}

/// `maestro functions show NAME`.
pub async fn function_show(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let f = function_get(client, name, "").await?;
    print(json, &f, || {
        let mut out = format!(
            "{} (version {} of {}), updated {}\n",
            s(&f["name"]),
            s(&f["version"]),
            s(&f["latest_version"]),
            s(&f["updated_at"])
        );
        if f["description"] != "" {
            out.push_str(&format!("{}\n", s(&f["description"])));
        }
        if let Some(settings) = f["settings"].as_object().filter(|m| !m.is_empty()) {
            let parts: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
            out.push_str(&format!("settings: {}\n", parts.join(" ")));
        }
        for k in ["input_schema", "output_schema"] {
            if !f[k].is_null() {
                out.push_str(&format!("{k}: {}\n", f[k]));
            }
        }
        out.push_str(&format!("\n{}", s(&f["code"])));
        out
    });
    Ok(())
}

/// `maestro functions versions NAME`.
pub async fn function_versions(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let v = function_get(client, name, "/versions").await?;
    print(json, &v, || {
        let rows = list(&v, "versions")
            .map(|x| {
                let sha = s(&x["code_sha256"]).chars().take(12).collect();
                vec![
                    s(&x["version"]),
                    s(&x["created_at"]),
                    s(&x["created_by"]),
                    sha,
                    s(&x["note"]),
                ]
            })
            .collect();
        table(&["VERSION", "CREATED", "BY", "CODE", "NOTE"], rows)
    });
    Ok(())
}

/// `maestro functions rollback NAME VERSION`.
pub async fn function_rollback(client: &Client, name: &str, version: i64) -> anyhow::Result<()> {
    let path = format!("/functions/{}/rollback/{version}", seg(name));
    let f = client.call_ok(Method::POST, &path, None, &[StatusCode::OK]).await?;
    println!(
        "{name} is now version {} (the content of version {version})",
        s(&f["version"])
    );
    Ok(())
}

/// `maestro invoke NAME`: prints the output; answers whether the execution succeeded.
pub async fn invoke(client: &Client, name: &str, input: Value, json: bool) -> anyhow::Result<bool> {
    let path = format!("/functions/{}/invoke", seg(name));
    let waiting = spinner(format!("running {name}"));
    let answer = client.call(Method::POST, &path, Some(&input)).await;
    waiting.finish_and_clear();
    let (status, v) = answer?;
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(unknown_function(client, name).await),
        _ => bail!("{}", refusal(status, &v)),
    }
    let ok = v["status"] == "succeeded";
    if json {
        println!("{v:#}");
    } else if ok {
        match &v["output"] {
            Value::String(s) => println!("{s}"),
            out => println!("{out:#}"),
        }
    } else {
        eprintln!("{}", error_text(&v["error"]));
        eprintln!("(execution {}: `maestro show {0}`)", s(&v["execution_id"]));
    }
    Ok(ok)
}

/// The server's refusal as `code: message`, with each detail (a schema's complaints) and
/// the next step where the status tells it.
fn refusal(status: StatusCode, v: &Value) -> String {
    let e = &v["error"];
    let mut text = match e["code"].as_str() {
        Some(code) => format!("{code}: {}", s(&e["message"])),
        None => format!("the server answered {status}"),
    };
    for d in e["details"].as_array().into_iter().flatten() {
        text.push_str(&format!("\n  {} {}", s(&d["path"]), s(&d["message"])));
    }
    crate::client::Refused { status, text }.to_string()
}

/// An error record for a terminal: its message, then the traceback when there is one.
fn error_text(e: &Value) -> String {
    let mut out = format!("{}: {}", s(&e["kind"]), s(&e["message"]));
    if let Some(tb) = e["traceback"].as_str().filter(|t| !t.is_empty()) {
        out.push('\n');
        out.push_str(tb.trim_end());
    }
    out
}

/// What `maestro executions` lists.
pub struct Listing<'a> {
    pub function: Option<&'a str>,
    pub status: Option<&'a str>,
    /// The previous listing's `next_cursor`.
    pub cursor: Option<&'a str>,
    pub limit: u32,
}

/// `maestro executions`: a page, newest first, and how to ask for the next one.
pub async fn executions(client: &Client, l: &Listing<'_>, json: bool) -> anyhow::Result<()> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("limit", &l.limit.to_string());
    for (k, v) in [("function", l.function), ("status", l.status), ("cursor", l.cursor)] {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let v = get(client, &format!("/executions?{}", q.finish())).await?;
    print(json, &v, || {
        let rows = list(&v, "executions")
            .map(|e| {
                vec![
                    s(&e["id"]),
                    s(&e["function_name"]),
                    s(&e["status"]),
                    s(&e["trigger"]),
                    s(&e["started_at"]),
                    duration(&e["duration_ms"]),
                ]
            })
            .collect();
        let t = table(&["ID", "FUNCTION", "STATUS", "TRIGGER", "STARTED", "DURATION"], rows);
        paint_status_column(&t, "STATUS")
    });
    if let (false, Some(next)) = (json, v["next_cursor"].as_str()) {
        eprintln!("older: maestro executions --cursor {next}");
    }
    Ok(())
}

/// Every step of an execution, following `next_cursor` page by page.
async fn all_steps(client: &Client, id: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = vec![];
    let mut path = format!("/executions/{}/steps", seg(id));
    loop {
        let mut page = get(client, &path).await?;
        if let Some(steps) = page["steps"].as_array_mut() {
            out.append(steps);
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/executions/{}/steps?cursor={}", seg(id), seg(c)),
            None => return Ok(out),
        }
    }
}

/// `maestro show EXECUTION`: the call tree with statuses, durations, errors and tracebacks.
pub async fn show(client: &Client, id: &str, json: bool) -> anyhow::Result<()> {
    let e = get(client, &format!("/executions/{}", seg(id))).await?;
    let steps = all_steps(client, id).await?;
    if json {
        println!("{:#}", json!({"execution": e, "steps": steps}));
        return Ok(());
    }
    println!(
        "execution {} ({} trigger, started {}): {} in {}",
        s(&e["id"]),
        s(&e["trigger"]),
        s(&e["started_at"]),
        status_word(&s(&e["status"])),
        duration(&e["duration_ms"])
    );
    let steps: Vec<&Value> = steps.iter().collect();
    print!("{}", tree(&steps));
    Ok(())
}

/// Steps (in call order, with `depth`) drawn as a tree.
fn tree(steps: &[&Value]) -> String {
    let mut out = String::new();
    for (i, st) in steps.iter().enumerate() {
        let depth = st["depth"].as_u64().unwrap_or(0) as usize;
        // Whether a later sibling at each level keeps its vertical line going.
        let more = |level: usize| {
            steps[i + 1..]
                .iter()
                .map(|n| n["depth"].as_u64().unwrap_or(0) as usize)
                .take_while(|d| *d >= level)
                .any(|d| d == level)
        };
        let mut prefix = String::new();
        for level in 1..depth {
            prefix.push_str(if more(level) { "│  " } else { "   " });
        }
        if depth > 0 {
            prefix.push_str(if more(depth) { "├─ " } else { "└─ " });
        }
        out.push_str(&format!(
            "{prefix}{}  {}  {}\n",
            s(&st["function_name"]),
            status_word(&s(&st["status"])),
            duration(&st["duration_ms"])
        ));
        let pad = " ".repeat(prefix.chars().count() + 3);
        if !st["error"].is_null() {
            for line in error_text(&st["error"]).lines() {
                out.push_str(&format!("{pad}{line}\n"));
            }
        }
    }
    out
}

/// What a schedule or webhook runs: its function, else its workflow.
fn target(x: &Value) -> String {
    let set = |k: &str| x.get(k).filter(|v| !v.is_null());
    s(set("function_name").or(set("workflow_name")).unwrap_or(&Value::Null))
}

fn yes_no(b: &Value) -> String {
    if *b == true { "yes" } else { "no" }.into()
}

/// `maestro schedules`.
pub async fn schedules(client: &Client, json: bool) -> anyhow::Result<()> {
    let v = get(client, "/schedules?limit=1000").await?;
    print(json, &v, || {
        let rows = list(&v, "schedules")
            .map(|x| {
                vec![
                    s(&x["name"]),
                    target(x),
                    format!("{} ({})", s(&x["cron_expression"]), s(&x["timezone"])),
                    yes_no(&x["enabled"]),
                    s(&x["next_run_at"]),
                    s(&x["last_status"]),
                ]
            })
            .collect();
        table(&["NAME", "RUNS", "WHEN", "ENABLED", "NEXT", "LAST"], rows)
    });
    Ok(())
}

/// `maestro webhooks`.
pub async fn webhooks(client: &Client, json: bool) -> anyhow::Result<()> {
    let v = get(client, "/webhooks?limit=1000").await?;
    print(json, &v, || {
        let rows = list(&v, "webhooks")
            .map(|x| {
                let mode = if x["async"] == true { "async" } else { "sync" };
                vec![
                    s(&x["http_method"]),
                    s(&x["url"]),
                    target(x),
                    mode.into(),
                    yes_no(&x["enabled"]),
                ]
            })
            .collect();
        table(&["METHOD", "URL", "RUNS", "MODE", "ENABLED"], rows)
    });
    Ok(())
}

/// `maestro workflows run NAME [--wait]`: answers whether the run succeeded (or started).
pub async fn workflow_run(
    client: &Client,
    name: &str,
    config: Option<Value>,
    wait: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let body = json!({ "config": config });
    // Waiting, the server runs it at once and answers when it ends (or after a minute).
    let path = format!("/workflows/{}/run{}", seg(name), if wait { "?wait=60" } else { "" });
    let ok = [StatusCode::OK, StatusCode::CREATED, StatusCode::ACCEPTED];
    let waiting = spinner(format!("running workflow {name}"));
    let started = client.call_ok(Method::POST, &path, Some(&body), &ok).await?;
    let run_id = s(&started["execution_id"]);
    let mut run = started;
    while wait && matches!(run["status"].as_str(), Some("queued" | "running")) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        run = get(client, &format!("/workflows/{}/runs/{}", seg(name), seg(&run_id))).await?;
    }
    waiting.finish_and_clear();
    print(json, &run, || {
        format!("workflow {name} run {run_id}: {}\n", status_word(&s(&run["status"])))
    });
    Ok(!wait || run["status"] == "succeeded")
}
