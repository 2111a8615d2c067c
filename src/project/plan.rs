//! What a deploy would do: each resource of the folder compared with the server's, and what
//! the server has that the folder does not; printed for people (with code diffs) or as JSON.

use serde_json::{json, Value};

use super::kinds::{same, Kind, ALL};
use super::{Project, Resource};

/// One field that differs: the server's value and the folder's.
#[derive(Clone, Debug)]
pub struct Change {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Clone, Debug)]
pub enum Action {
    Create,
    Update(Vec<Change>),
    Unchanged,
    /// On the server, not in the folder, and `--prune` asked for it to go.
    Delete,
    /// On the server, not in the folder; left alone.
    Extra,
}

/// One resource's fate.
#[derive(Clone, Debug)]
pub struct Step {
    pub kind: Kind,
    pub key: String,
    pub action: Action,
    /// The folder's resource (create, update, unchanged).
    pub local: Option<Resource>,
    /// The server's resource (update, unchanged, delete, extra).
    pub remote: Option<Resource>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// In deploy order: creates and updates by kind; deletes last, in reverse kind order.
    pub steps: Vec<Step>,
    /// Secrets the folder names that the server does not have.
    pub missing_secrets: Vec<String>,
}

/// Compare the folder with the server.
pub fn plan(local: &Project, remote: &Project, prune: bool) -> Plan {
    let mut steps = Vec::new();
    let mut gone = Vec::new();
    for kind in ALL {
        for l in local.resources.iter().filter(|r| r.kind == kind) {
            let r = remote.find(kind, &l.key);
            let action = match r {
                None => Action::Create,
                Some(r) => match changes(l, r) {
                    c if c.is_empty() => Action::Unchanged,
                    c => Action::Update(c),
                },
            };
            steps.push(step(l, action, Some(l), r));
        }
        for r in remote.resources.iter().filter(|r| r.kind == kind) {
            let dependency = kind == Kind::Package && r.id.is_some();
            if local.find(kind, &r.key).is_none() && local.manages(kind) && !dependency {
                let action = if prune { Action::Delete } else { Action::Extra };
                gone.push(step(r, action, None, Some(r)));
            }
        }
    }
    gone.sort_by_key(|s| std::cmp::Reverse(s.kind));
    steps.extend(gone);
    let missing_secrets = local
        .secrets
        .iter()
        .filter(|n| !remote.secrets.contains(n))
        .cloned()
        .collect();
    Plan { steps, missing_secrets }
}

fn step(r: &Resource, action: Action, local: Option<&Resource>, remote: Option<&Resource>) -> Step {
    Step {
        kind: r.kind,
        key: r.key.clone(),
        action,
        local: local.cloned(),
        remote: remote.cloned(),
    }
}

/// The fields the folder sets that the server has otherwise.
fn changes(local: &Resource, remote: &Resource) -> Vec<Change> {
    let mut out = Vec::new();
    for (field, new) in &local.fields {
        let old = remote.fields.get(field).cloned().unwrap_or(Value::Null);
        let differs = match (local.kind, field.as_str()) {
            // A version specifier (`>=2,<3`) is met by whatever pip chose.
            (Kind::Package, "version") => {
                new.as_str()
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                    && !same(&old, new)
            }
            _ => !same(&old, new),
        };
        if differs {
            out.push(Change {
                field: field.clone(),
                old,
                new: new.clone(),
            });
        }
    }
    out
}

impl Plan {
    /// How many steps change something.
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s.action, Action::Create | Action::Update(_) | Action::Delete))
            .count()
    }

    /// `2 to create, 1 to update, 0 to delete, 5 unchanged` (and what is left alone).
    pub fn summary(&self) -> String {
        let count = |f: fn(&Action) -> bool| self.steps.iter().filter(|s| f(&s.action)).count();
        let mut s = format!(
            "{} to create, {} to update, {} to delete, {} unchanged",
            count(|a| matches!(a, Action::Create)),
            count(|a| matches!(a, Action::Update(_))),
            count(|a| matches!(a, Action::Delete)),
            count(|a| matches!(a, Action::Unchanged)),
        );
        let extra = count(|a| matches!(a, Action::Extra));
        if extra > 0 {
            s.push_str(&format!(
                "; {extra} on the server only (kept; `deploy --prune` deletes them)"
            ));
        }
        s
    }

    /// The plan for people; `color` paints it for a terminal, `verbose` lists unchanged ones.
    pub fn render(&self, color: bool, verbose: bool) -> String {
        let paint = |code: &str, s: &str| match color {
            true => format!("\x1b[{code}m{s}\x1b[0m"),
            false => s.to_string(),
        };
        let mut out = String::new();
        for s in &self.steps {
            let what = format!("{} {}", s.kind.singular(), s.key);
            match &s.action {
                Action::Create => out.push_str(&format!("{} {what}: create\n", paint("32", "+"))),
                Action::Update(changes) => {
                    out.push_str(&format!("{} {what}: update\n", paint("33", "~")));
                    for c in changes {
                        out.push_str(&render_change(c, s, &paint));
                    }
                }
                Action::Unchanged if verbose => out.push_str(&format!("  {what}: no change\n")),
                Action::Unchanged => {}
                Action::Delete => out.push_str(&format!("{} {what}: delete\n", paint("31", "-"))),
                Action::Extra => out.push_str(&format!(
                    "{} {what}: on the server, not in the folder (kept)\n",
                    paint("2", "?")
                )),
            }
        }
        for name in &self.missing_secrets {
            out.push_str(&format!(
                "{} secret {name}: named in the folder but not set on the server (PUT /api/v1/secrets/{name})\n",
                paint("33", "!")
            ));
        }
        match self.changes() {
            0 => out.push_str(&format!(
                "No changes: the server matches the folder ({}).\n",
                self.summary()
            )),
            _ => out.push_str(&format!("Plan: {}.\n", self.summary())),
        }
        out
    }

    /// The plan for scripts.
    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let (action, fields) = match &s.action {
                    Action::Create => ("create", vec![]),
                    Action::Update(c) => (
                        "update",
                        c.iter()
                            .map(|c| json!({"field": c.field, "old": c.old, "new": c.new}))
                            .collect(),
                    ),
                    Action::Unchanged => ("unchanged", vec![]),
                    Action::Delete => ("delete", vec![]),
                    Action::Extra => ("server_only", vec![]),
                };
                json!({"kind": s.kind.singular(), "name": s.key, "action": action, "changes": fields})
            })
            .collect();
        json!({"steps": steps, "missing_secrets": self.missing_secrets, "changes": self.changes(), "summary": self.summary()})
    }
}

/// One changed field: a unified diff for code and other long values, else `old → new`.
fn render_change(c: &Change, s: &Step, paint: &dyn Fn(&str, &str) -> String) -> String {
    let text = |v: &Value| match v {
        Value::String(s) if s.contains('\n') => s.clone(),
        Value::Null => String::new(),
        v if v.is_object() || v.is_array() => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        v => v.to_string(),
    };
    let (old, new) = (text(&c.old), text(&c.new));
    if !old.contains('\n') && !new.contains('\n') {
        let show = |v: &Value| {
            if v.is_null() {
                "(default)".to_string()
            } else {
                v.to_string()
            }
        };
        return format!("    {}: {} → {}\n", c.field, show(&c.old), show(&c.new));
    }
    let source = s.local.as_ref().map_or("folder", |l| l.source.as_str());
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut out = format!("    {}:\n", c.field);
    let unified = diff
        .unified_diff()
        .context_radius(3)
        .header("server", source)
        .to_string();
    for line in unified.lines() {
        let line = match line.chars().next() {
            Some('+') if !line.starts_with("+++") => paint("32", line),
            Some('-') if !line.starts_with("---") => paint("31", line),
            Some('@') => paint("36", line),
            _ => line.to_string(),
        };
        out.push_str(&format!("      {line}\n"));
    }
    out
}
