//! Writing a project folder: `maestro pull` (a server's state as files, which `plan` then
//! finds identical) and `maestro init` (a small working example).

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

use super::kinds::{Default, Kind};
use super::{Project, MANIFEST};
use crate::domain::egress::Policy;

/// Refuse to write over a project.
fn fresh(dir: &Path) -> anyhow::Result<()> {
    if dir.join(MANIFEST).exists() {
        bail!("{} already has a {MANIFEST}: pick an empty folder", dir.display());
    }
    std::fs::create_dir_all(dir.join("functions")).with_context(|| format!("creating {}", dir.display()))
}

fn put(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(file), text).with_context(|| format!("writing {file}"))
}

/// Write `project` (a server's) as a folder at `dir`; answers the files written.
pub fn write(dir: &Path, project: &Project) -> anyhow::Result<Vec<String>> {
    fresh(dir)?;
    let mut files = Vec::new();
    let mut manifest = Map::new();
    if !project.secrets.is_empty() {
        manifest.insert("secrets".into(), json!(project.secrets));
    }
    for r in &project.resources {
        if r.kind == Kind::Package && r.id.is_some() {
            continue; // installed as another package's dependency
        }
        let mut fields = r.fields.clone();
        let table = match r.kind {
            Kind::Package => json!(fields["version"]),
            Kind::Egress => {
                // The default policy (deny all) is left out: the folder then leaves it alone.
                if super::same(&Value::Object(fields.clone()), &json!(Policy::default())) {
                    continue;
                }
                Value::Object(fields)
            }
            Kind::Function => {
                let file = format!("functions/{}.py", r.key);
                put(dir, &file, fields["code"].as_str().unwrap_or_default())?;
                files.push(file);
                let schemas: Map<String, Value> = [("input", "input_schema"), ("output", "output_schema")]
                    .into_iter()
                    .filter(|(_, f)| !fields[*f].is_null())
                    .map(|(k, f)| (k.to_string(), fields[f].clone()))
                    .collect();
                if !schemas.is_empty() {
                    let file = format!("functions/{}.schema.json", r.key);
                    put(dir, &file, &(serde_json::to_string_pretty(&schemas)? + "\n"))?;
                    files.push(file);
                }
                for f in ["code", "input_schema", "output_schema"] {
                    fields.remove(f);
                }
                Value::Object(non_default(r.kind, fields))
            }
            Kind::Workflow => Value::Object(workflow(fields)),
            Kind::Webhook | Kind::Schedule => Value::Object(short_names(r.kind, non_default(r.kind, fields))),
        };
        let section = manifest
            .entry(r.kind.plural())
            .or_insert_with(|| Value::Object(Map::new()));
        match r.kind {
            Kind::Egress => *section = table,
            _ => {
                section[&r.key] = table;
            }
        }
    }
    let mut manifest = Value::Object(manifest);
    strip_nulls(&mut manifest);
    let text = toml::to_string_pretty(&toml::Value::try_from(manifest)?)?;
    put(
        dir,
        MANIFEST,
        &format!("# Pulled from a Maestro server: `maestro plan` compares it with the server.\n\n{text}"),
    )?;
    files.insert(0, MANIFEST.to_string());
    Ok(files)
}

/// TOML has no null: keys holding one are left out (inside an input or a config too), and
/// nulls in lists are refused by the TOML writer with the value's place.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The fields that differ from their defaults (and are not null: TOML has no null).
fn non_default(kind: Kind, mut fields: Map<String, Value>) -> Map<String, Value> {
    for (name, default) in kind.fields() {
        let drop = match (&default, fields.get(name)) {
            (_, Some(Value::Null)) => true,
            (Default::Fixed(d), Some(v)) => super::same(d, v),
            _ => false,
        };
        if drop {
            fields.remove(name);
        }
    }
    fields
}

/// `function` for `function_name`, `cron` for `cron_expression`, ...: as people write them.
fn short_names(kind: Kind, fields: Map<String, Value>) -> Map<String, Value> {
    let short = ["function", "workflow", "method", "cron", "input"];
    fields
        .into_iter()
        .map(|(k, v)| {
            let name = short.iter().find(|s| kind.alias(s) == Some(k.as_str()));
            (name.map_or(k, |s| s.to_string()), v)
        })
        .collect()
}

/// A workflow as written by hand: nodes with no options by name alone, nothing empty.
fn workflow(mut fields: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Array(nodes)) = fields.get_mut("nodes") {
        for n in nodes.iter_mut() {
            let plain = n["retries"] == 0
                && n["timeout_seconds"].is_null()
                && n["retry_delay_seconds"].as_f64() == Some(1.0)
                && n["backoff_factor"].as_f64() == Some(2.0);
            if plain {
                *n = n["function"].clone();
            } else if let Value::Object(o) = n {
                o.retain(|_, v| !v.is_null());
            }
        }
    }
    fields.retain(|k, v| {
        !(v.is_null()
            || (k == "edges" && v.as_array().is_some_and(Vec::is_empty))
            || (k == "config" && v.as_object().is_some_and(Map::is_empty))
            || (k == "description" && v == ""))
    });
    fields
}

const INIT_MANIFEST: &str = r#"# A Maestro project. `maestro plan` shows what `maestro deploy` would change on the server;
# `maestro deploy --prune` also deletes what this folder no longer has.
#
# Functions are the .py files in functions/: functions/NAME.py defines `def NAME(input)`,
# functions/NAME.schema.json holds {"input": <JSON Schema>, "output": <JSON Schema>}.
# Their settings (description, timeout_seconds, memory_mb, fuel, isolation) go here.

[functions.hello]
description = "Greets someone by name"
timeout_seconds = 5

# Runs `hello` every day at 09:00, Paris time.
[schedules.morning-hello]
function = "hello"
cron = "0 9 * * *"
timezone = "Europe/Paris"
input = { name = "team" }

# A webhook: POST /api/v1/h/<path> runs the function (paths are shared by every tenant of a
# server, so pick one that is yours).
# [webhooks."my-team/hello"]
# function = "hello"

# Secrets the functions read with maestro.secret(NAME): set on the server, never written here.
# secrets = ["GREETING_KEY"]
"#;

const INIT_FUNCTION: &str = r#"def hello(input):
    name = input.get("name", "world")
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!"}
"#;

const INIT_SCHEMA: &str = r#"{
  "input": {
    "type": "object",
    "properties": {"name": {"type": "string"}}
  },
  "output": {
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"]
  }
}
"#;

/// Write the starter project into `dir`; answers the files written.
pub fn init(dir: &Path) -> anyhow::Result<Vec<String>> {
    fresh(dir)?;
    let files = [
        (MANIFEST, INIT_MANIFEST),
        ("functions/hello.py", INIT_FUNCTION),
        ("functions/hello.schema.json", INIT_SCHEMA),
    ];
    for (file, text) in files {
        put(dir, file, text)?;
    }
    Ok(files.iter().map(|(f, _)| f.to_string()).collect())
}
