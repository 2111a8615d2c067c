//! Workflow definitions: a DAG of functions (Taskmaster's Graph), checked before it is
//! stored. Nodes are function names; an edge `[parent, child]` passes the parent's output to
//! the child. Checks: sizes, unknown nodes, self-edges, duplicate edges, fan-out, and cycles
//! (named: `a -> b -> c -> a`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::FunctionName;

pub const MAX_NODES: usize = 200;
pub const MAX_CHILDREN: usize = 50;

/// A node: a function, how often to retry it, and its own time limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub function: String,
    #[serde(default)]
    pub retries: u32,
    #[serde(default = "one")]
    pub retry_delay_seconds: f64,
    #[serde(default = "two")]
    pub backoff_factor: f64,
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}

/// A node as written: a bare function name or the full form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NodeIn {
    Name(String),
    Full(Node),
}

/// An edge as written: `[parent, child]` or Taskmaster's `add_edges(parents, children)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum EdgeIn {
    Pair(String, String),
    Many {
        parents: Vec<String>,
        children: Vec<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionIn {
    nodes: Vec<NodeIn>,
    #[serde(default)]
    edges: Vec<EdgeIn>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schedule: Option<WorkflowSchedule>,
}

/// When the workflow runs by itself: a cron expression in an IANA time zone, fired by the
/// schedules engine (its own schedule, named `workflow:<name>`, kept in step with this).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSchedule {
    #[serde(alias = "cron")]
    pub cron_expression: String,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn utc() -> String {
    super::DEFAULT_TIMEZONE.into()
}
fn yes() -> bool {
    true
}

/// A checked definition, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Definition {
    pub nodes: Vec<Node>,
    pub edges: Vec<(String, String)>,
    pub config: Value,
    pub concurrency: u32,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<WorkflowSchedule>,
}

/// A rejected definition: which field and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

impl DefinitionIn {
    /// Check everything that does not need the database.
    pub fn check(self) -> Result<Definition, Invalid> {
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return Err(invalid("nodes", format!("a workflow has 1 to {MAX_NODES} nodes")));
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut seen = BTreeSet::new();
        for n in self.nodes {
            let node = match n {
                NodeIn::Name(function) => Node {
                    function,
                    retries: 0,
                    retry_delay_seconds: 1.0,
                    backoff_factor: 2.0,
                    timeout_seconds: None,
                },
                NodeIn::Full(node) => node,
            };
            FunctionName::parse(&node.function).map_err(|m| invalid("nodes", m.to_string()))?;
            if node.retries > 10 || !(0.0..=3600.0).contains(&node.retry_delay_seconds) {
                return Err(invalid(
                    "nodes",
                    format!("{}: retries 0-10, retry_delay_seconds 0-3600", node.function),
                ));
            }
            if !(1.0..=10.0).contains(&node.backoff_factor)
                || node.timeout_seconds.is_some_and(|t| !(t > 0.0 && t <= 86_400.0))
            {
                return Err(invalid(
                    "nodes",
                    format!("{}: backoff_factor 1-10, timeout_seconds (0, 86400]", node.function),
                ));
            }
            if !seen.insert(node.function.clone()) {
                return Err(invalid("nodes", format!("{} appears twice", node.function)));
            }
            nodes.push(node);
        }
        let mut edges: Vec<(String, String)> = Vec::new();
        for e in self.edges {
            let pairs: Vec<(String, String)> = match e {
                EdgeIn::Pair(p, c) => vec![(p, c)],
                EdgeIn::Many { parents, children } => parents
                    .iter()
                    .flat_map(|p| children.iter().map(move |c| (p.clone(), c.clone())))
                    .collect(),
            };
            for (p, c) in pairs {
                for end in [&p, &c] {
                    if !seen.contains(end) {
                        return Err(invalid("edges", format!("{end} is not a node of this workflow")));
                    }
                }
                if p == c {
                    return Err(invalid("edges", format!("{p} -> {p} is an edge to itself")));
                }
                if edges.contains(&(p.clone(), c.clone())) {
                    return Err(invalid("edges", format!("{p} -> {c} is given twice")));
                }
                edges.push((p, c));
            }
        }
        let config = match self.config {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(Value::Object(m)) => Value::Object(m),
            Some(_) => return Err(invalid("config", "config must be a JSON object")),
        };
        let concurrency = self.concurrency.unwrap_or(4);
        if !(1..=32).contains(&concurrency) {
            return Err(invalid("concurrency", "1 to 32 nodes at once"));
        }
        if let Some(s) = &self.schedule {
            crate::domain::Timing::parse(&s.cron_expression, &s.timezone)
                .map_err(|e| invalid("schedule", e.to_string()))?;
        }
        let def = Definition {
            nodes,
            edges,
            config,
            concurrency,
            description: self.description.unwrap_or_default(),
            schedule: self.schedule,
        };
        if let Some((node, n)) = def.children().iter().find(|(_, c)| c.len() > MAX_CHILDREN) {
            return Err(invalid(
                "edges",
                format!("{node} has {} children; the limit is {MAX_CHILDREN}", n.len()),
            ));
        }
        if let Some(cycle) = def.cycle() {
            return Err(invalid(
                "edges",
                format!("the edges make a cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(def)
    }
}

impl Definition {
    pub fn parents(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut m: BTreeMap<&str, Vec<&str>> = self.nodes.iter().map(|n| (n.function.as_str(), vec![])).collect();
        for (p, c) in &self.edges {
            m.entry(c.as_str()).or_default().push(p.as_str());
        }
        m
    }

    pub fn children(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut m: BTreeMap<&str, Vec<&str>> = self.nodes.iter().map(|n| (n.function.as_str(), vec![])).collect();
        for (p, c) in &self.edges {
            m.entry(p.as_str()).or_default().push(c.as_str());
        }
        m
    }

    /// Nodes with no edge at all (allowed: they run on their own; reported).
    pub fn isolated(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .map(|n| n.function.as_str())
            .filter(|n| !self.edges.iter().any(|(p, c)| p == n || c == n))
            .collect()
    }

    /// A cycle, as the nodes along it with the first repeated at the end.
    fn cycle(&self) -> Option<Vec<String>> {
        let children = self.children();
        // 0 unvisited, 1 on the current path, 2 done.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut path: Vec<&str> = Vec::new();
        fn visit<'a>(
            n: &'a str,
            children: &BTreeMap<&'a str, Vec<&'a str>>,
            state: &mut BTreeMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            state.insert(n, 1);
            path.push(n);
            for &c in children.get(n).map(Vec::as_slice).unwrap_or(&[]) {
                match state.get(c).copied().unwrap_or(0) {
                    1 => {
                        let start = path.iter().position(|p| *p == c).unwrap_or(0);
                        let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                        cycle.push(c.to_string());
                        return Some(cycle);
                    }
                    0 => {
                        if let Some(found) = visit(c, children, state, path) {
                            return Some(found);
                        }
                    }
                    _ => {}
                }
            }
            path.pop();
            state.insert(n, 2);
            None
        }
        for n in &self.nodes {
            if state.get(n.function.as_str()).copied().unwrap_or(0) == 0 {
                if let Some(c) = visit(&n.function, &children, &mut state, &mut path) {
                    return Some(c);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Definition, Invalid> {
        serde_json::from_value::<DefinitionIn>(v)
            .map_err(|e| invalid("body", e.to_string()))?
            .check()
    }

    #[test]
    fn the_seed_dag_checks_and_cycles_are_named() {
        let d = check(json!({
            "nodes": ["pass_2", "add_3", "print_return_none", {"function": "leaf", "retries": 2}],
            "edges": [{"parents": ["pass_2"], "children": ["add_3", "print_return_none"]},
                      ["add_3", "print_return_none"], ["print_return_none", "leaf"]]
        }))
        .unwrap();
        assert_eq!(d.edges.len(), 4);
        assert_eq!(d.parents()["print_return_none"], vec!["pass_2", "add_3"]);
        let e = check(json!({"nodes": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"], ["c", "a"]]})).unwrap_err();
        assert!(e.message.ends_with("a -> b -> c -> a"), "{e:?}");
        for bad in [
            json!({"nodes": ["a"], "edges": [["a", "a"]]}),
            json!({"nodes": ["a", "b"], "edges": [["a", "b"], ["a", "b"]]}),
            json!({"nodes": ["a"], "edges": [["a", "zz"]]}),
            json!({"nodes": ["a", "a"]}),
            json!({"nodes": []}),
            json!({"nodes": ["a"], "config": [1]}),
            json!({"nodes": (0..10_000).map(|i| format!("f{i}")).collect::<Vec<_>>()}),
        ] {
            assert!(check(bad.clone()).is_err(), "{bad}");
        }
    }
}
