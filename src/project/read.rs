//! Reading a project folder into resources, collecting every mistake with its file.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::kinds::{Default, Kind};
use super::{Problems, Project, Resource, MANIFEST};
use crate::domain::egress::Policy;
use crate::domain::workflow::DefinitionIn;
use crate::domain::Timing;

const SECTIONS: [&str; 8] = [
    "project",
    "functions",
    "webhooks",
    "schedules",
    "workflows",
    "egress",
    "packages",
    "secrets",
];

/// Read the folder at `dir`; every problem found is reported, not only the first.
pub fn load(dir: &Path) -> Result<Project, Problems> {
    let mut r = Reader {
        dir: dir.to_path_buf(),
        problems: Vec::new(),
        project: Project::default(),
    };
    let manifest = r.manifest();
    r.packages(&manifest);
    r.egress(&manifest);
    r.functions(&manifest);
    r.workflows(&manifest);
    r.triggers(&manifest, Kind::Webhook);
    r.triggers(&manifest, Kind::Schedule);
    r.secrets(&manifest);
    match r.problems.is_empty() {
        true => Ok(r.project),
        false => Err(Problems(r.problems)),
    }
}

struct Reader {
    dir: PathBuf,
    problems: Vec<String>,
    project: Project,
}

impl Reader {
    fn problem(&mut self, file: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{file}: {message}"));
    }

    /// `maestro.toml` as JSON (an empty object when it is missing or broken).
    fn manifest(&mut self) -> Map<String, Value> {
        let path = self.dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let hint = match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        " (`maestro init` starts a project, `maestro pull` copies a server's)"
                    }
                    _ => "",
                };
                self.problem(&path.display().to_string(), format!("{e}{hint}"));
                return Map::new();
            }
        };
        let table: toml::Table = match toml::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                self.problem(MANIFEST, e.to_string().trim_end());
                return Map::new();
            }
        };
        let Ok(Value::Object(m)) = serde_json::to_value(table) else {
            self.problem(MANIFEST, "could not be read as data");
            return Map::new();
        };
        for key in m.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            self.problems.push(format!(
                "{MANIFEST}: unknown section `{key}` (known: {})",
                SECTIONS.join(", ")
            ));
        }
        m
    }

    /// The tables of section `name` (`[functions.x]` → `x`), each an object.
    fn section(&mut self, m: &Map<String, Value>, name: &str) -> Vec<(String, Map<String, Value>)> {
        match m.get(name) {
            None => vec![],
            Some(Value::Object(items)) => {
                let mut out = vec![];
                for (key, v) in items {
                    match v {
                        Value::Object(fields) => out.push((key.clone(), fields.clone())),
                        _ => self.problem(MANIFEST, format!("[{name}.{key}] must be a table")),
                    }
                }
                out
            }
            Some(_) => {
                self.problem(MANIFEST, format!("`{name}` must be a table"));
                vec![]
            }
        }
    }

    fn push(&mut self, kind: Kind, key: &str, fields: Map<String, Value>, source: &str) {
        self.project.resources.push(Resource {
            kind,
            key: key.to_string(),
            fields,
            id: None,
            source: source.to_string(),
        });
    }

    /// Fields of a `kind` table with aliases resolved, unknown ones reported, and the
    /// fixed defaults of those left out filled in. `extra` names fields read elsewhere.
    fn fields(&mut self, kind: Kind, key: &str, given: &Map<String, Value>, extra: &[&str]) -> Map<String, Value> {
        let known = kind.fields();
        let mut out = Map::new();
        for (name, v) in given {
            let name = kind.alias(name).unwrap_or(name);
            if extra.contains(&name) {
                continue;
            }
            if !known.iter().any(|(k, _)| *k == name) {
                let names: Vec<_> = known.iter().map(|(k, _)| *k).collect();
                self.problem(
                    MANIFEST,
                    format!(
                        "{} {key}: unknown field `{name}` (known: {})",
                        kind.singular(),
                        names.join(", ")
                    ),
                );
                continue;
            }
            out.insert(name.to_string(), v.clone());
        }
        for (name, default) in known {
            if let (false, Default::Fixed(v)) = (out.contains_key(name), default) {
                out.insert(name.to_string(), v);
            }
        }
        out
    }

    fn packages(&mut self, m: &Map<String, Value>) {
        let Some(list) = m.get("packages") else { return };
        let Value::Object(list) = list else {
            return self.problem(
                MANIFEST,
                "[packages] must map names to versions: `requests = \"2.32.3\"`",
            );
        };
        for (name, version) in list {
            match version {
                Value::String(v) => {
                    let fields = Map::from_iter([("version".to_string(), json!(v))]);
                    self.push(Kind::Package, &crate::domain::canonical_name(name), fields, MANIFEST);
                }
                _ => self.problem(MANIFEST, format!("package {name}: the version must be a string")),
            }
        }
    }

    fn egress(&mut self, m: &Map<String, Value>) {
        let Some(given) = m.get("egress") else { return };
        let policy = serde_json::from_value::<Policy>(given.clone())
            .map_err(|e| e.to_string())
            .and_then(|p| p.validate().map(|_| p));
        match policy {
            Ok(p) => {
                let Value::Object(fields) = json!(p) else {
                    unreachable!("a policy is an object")
                };
                self.push(Kind::Egress, "policy", fields, MANIFEST);
            }
            Err(e) => self.problem(MANIFEST, format!("[egress]: {e}")),
        }
    }

    /// Every `functions/*.py`, and every `[functions.NAME]` (which may name its `file`).
    fn functions(&mut self, m: &Map<String, Value>) {
        let mut tables = self.section(m, "functions");
        let dir = self.dir.join("functions");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "py"));
        files.sort();
        for f in &files {
            let name = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            if !tables.iter().any(|(n, _)| *n == name) {
                tables.push((name, Map::new()));
            }
        }
        tables.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, table) in tables {
            self.function(&name, &table);
        }
    }

    fn function(&mut self, name: &str, table: &Map<String, Value>) {
        let file = match table.get("file") {
            Some(Value::String(f)) => f.clone(),
            Some(_) => return self.problem(MANIFEST, format!("function {name}: `file` must be a path")),
            None => format!("functions/{name}.py"),
        };
        let mut fields = self.fields(Kind::Function, name, table, &["file", "code"]);
        if table.contains_key("code") {
            self.problem(
                MANIFEST,
                format!("function {name}: code lives in {file}, not in the manifest"),
            );
        }
        match std::fs::read_to_string(self.dir.join(&file)) {
            Ok(code) => {
                if !defines(&code, name) {
                    self.problem(
                        &file,
                        format!("defines no `def {name}(input)`: the function's entry point"),
                    );
                }
                fields.insert("code".into(), json!(code));
            }
            Err(e) => return self.problem(&file, e),
        }
        let schema_file = format!("{}.schema.json", file.trim_end_matches(".py"));
        if let Ok(text) = std::fs::read_to_string(self.dir.join(&schema_file)) {
            self.schema_file(name, &schema_file, &text, table, &mut fields);
        }
        for field in ["input_schema", "output_schema"] {
            if fields[field].is_null() {
                continue;
            }
            if let Err(e) = crate::domain::compile_schema(field, &fields[field]) {
                let src = if table.contains_key(field) {
                    MANIFEST
                } else {
                    schema_file.as_str()
                };
                self.problem(src, format!("{name}: {}", e.summary));
            }
        }
        self.push(Kind::Function, name, fields, &file);
    }

    /// `NAME.schema.json`: `{"input": ..., "output": ...}` (either may be left out).
    fn schema_file(
        &mut self,
        name: &str,
        file: &str,
        text: &str,
        table: &Map<String, Value>,
        fields: &mut Map<String, Value>,
    ) {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.problem(file, format!("not JSON: {e}")),
        };
        let Value::Object(parts) = v else {
            return self.problem(file, "must be an object: {\"input\": <schema>, \"output\": <schema>}");
        };
        for (part, schema) in parts {
            let field = match part.as_str() {
                "input" => "input_schema",
                "output" => "output_schema",
                other => {
                    self.problem(file, format!("unknown key `{other}` (known: input, output)"));
                    continue;
                }
            };
            if table.contains_key(field) {
                self.problem(file, format!("{name}'s {field} is also in {MANIFEST}: keep one"));
            }
            fields.insert(field.into(), schema);
        }
    }

    fn workflows(&mut self, m: &Map<String, Value>) {
        for (name, table) in self.section(m, "workflows") {
            let table_has_concurrency = table.contains_key("concurrency");
            let parsed = serde_json::from_value::<DefinitionIn>(Value::Object(table))
                .map_err(|e| e.to_string())
                .and_then(|d| d.check().map_err(|e| format!("{}: {}", e.field, e.message)));
            match parsed {
                Ok(def) => {
                    let view = json!(def);
                    let mut fields = Kind::Workflow.from_view(&view);
                    // Left out, the server's value stands (its default is a server setting).
                    if !table_has_concurrency {
                        fields.remove("concurrency");
                    }
                    self.push(Kind::Workflow, &name, fields, MANIFEST);
                }
                Err(e) => self.problem(MANIFEST, format!("workflow {name}: {e}")),
            }
        }
    }

    /// Webhooks (keyed by path) and schedules (by name): each calls a function or workflow.
    fn triggers(&mut self, m: &Map<String, Value>, kind: Kind) {
        for (key, table) in self.section(m, kind.plural()) {
            let mut fields = self.fields(kind, &key, &table, &[]);
            // As the server stores them: a path without its slashes, a method in capitals.
            let key = match kind {
                Kind::Webhook => match crate::domain::webhook_path(&key) {
                    Ok(p) => p,
                    Err(e) => {
                        self.problem(MANIFEST, format!("webhook {key}: {e}"));
                        continue;
                    }
                },
                _ => key,
            };
            if let Some(Value::String(m)) = fields.get("http_method").cloned() {
                match crate::domain::webhook_method(&m) {
                    Ok(m) => {
                        fields.insert("http_method".into(), json!(m));
                    }
                    Err(e) => self.problem(MANIFEST, format!("webhook {key}: http_method: {e}")),
                }
            }
            let targets = ["function_name", "workflow_name"].map(|f| !fields[f].is_null());
            if targets[0] == targets[1] {
                self.problem(
                    MANIFEST,
                    format!(
                        "{} {key}: give exactly one of `function` and `workflow`",
                        kind.singular()
                    ),
                );
            }
            if kind == Kind::Schedule {
                let cron = fields["cron_expression"].as_str().unwrap_or_default();
                let tz = fields["timezone"].as_str().unwrap_or_default();
                if let Err(e) = Timing::parse(cron, tz) {
                    self.problem(MANIFEST, format!("schedule {key}: {}: {}", e.field, e.message));
                }
            }
            self.push(kind, &key, fields, MANIFEST);
        }
    }

    fn secrets(&mut self, m: &Map<String, Value>) {
        match m.get("secrets") {
            None => {}
            Some(Value::Array(names)) if names.iter().all(Value::is_string) => {
                self.project.secrets = names.iter().filter_map(|n| n.as_str().map(String::from)).collect();
            }
            Some(_) => self.problem(MANIFEST, "`secrets` lists names: secrets = [\"STRIPE_KEY\"]"),
        }
    }
}

/// Whether `code` has a top-level `def name(`.
fn defines(code: &str, name: &str) -> bool {
    let want = format!("def {name}(");
    code.lines()
        .any(|l| l.starts_with(&want) || l.strip_prefix("async ").is_some_and(|l| l.starts_with(&want)))
}
