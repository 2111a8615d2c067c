//! The kinds of resource a project folder declares, each with the fields it compares, the
//! default a field takes when the folder leaves it out, and how the API's view of one is
//! brought to the same shape.

use serde_json::{json, Map, Value};

/// A resource kind, in the order a deploy applies them: packages and the egress policy before
/// the functions that use them, functions before the workflows, webhooks and schedules that
/// call them. Prunes go the other way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Package,
    Egress,
    Function,
    Workflow,
    Webhook,
    Schedule,
}

/// What a field is when the folder does not say.
pub enum Default {
    /// The API's fixed default: leaving the field out sets it back to this.
    Fixed(Value),
    /// A server setting decides (`catchup_window_seconds`, say): left out, the server's
    /// current value stands and is not compared.
    Server,
}

pub const ALL: [Kind; 6] = [
    Kind::Package,
    Kind::Egress,
    Kind::Function,
    Kind::Workflow,
    Kind::Webhook,
    Kind::Schedule,
];

impl Kind {
    /// The manifest's table and the API's collection (`functions`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Package => "packages",
            Kind::Egress => "egress",
            Kind::Function => "functions",
            Kind::Workflow => "workflows",
            Kind::Webhook => "webhooks",
            Kind::Schedule => "schedules",
        }
    }

    /// As printed in a plan (`function`).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Package => "package",
            Kind::Egress => "egress",
            Kind::Function => "function",
            Kind::Workflow => "workflow",
            Kind::Webhook => "webhook",
            Kind::Schedule => "schedule",
        }
    }

    /// The fields compared, with their defaults. Workflows and packages are compared as a
    /// whole definition / version (see `project::read`).
    pub fn fields(self) -> Vec<(&'static str, Default)> {
        use Default::*;
        let null = || Fixed(Value::Null);
        match self {
            Kind::Function => vec![
                ("description", Fixed(json!(""))),
                ("code", null()),
                ("input_schema", null()),
                ("output_schema", null()),
                ("isolation", null()),
                ("timeout_seconds", null()),
                ("fuel", null()),
                ("memory_mb", null()),
                ("on_interrupt", null()),
            ],
            Kind::Webhook => vec![
                ("function_name", null()),
                ("workflow_name", null()),
                ("http_method", Fixed(json!("POST"))),
                ("requires_auth", Fixed(json!(false))),
                ("require_timestamp", Fixed(json!(false))),
                ("description", Fixed(json!(""))),
                ("enabled", Fixed(json!(true))),
                ("async", Fixed(json!(false))),
                ("input_mode", Fixed(json!("request"))),
                ("max_concurrency", null()),
            ],
            Kind::Schedule => vec![
                ("function_name", null()),
                ("workflow_name", null()),
                ("cron_expression", null()),
                ("timezone", Fixed(json!("UTC"))),
                ("input_data", Fixed(json!({}))),
                ("enabled", Fixed(json!(true))),
                ("max_retries", Fixed(json!(0))),
                ("retry_delay_seconds", Fixed(json!(60))),
                ("backoff_factor", Fixed(json!(2))),
                ("max_retry_delay_seconds", Fixed(json!(3600))),
                ("overlap_policy", Fixed(json!("skip"))),
                ("catchup_window_seconds", Server),
            ],
            Kind::Egress => vec![
                ("allow", Fixed(json!([]))),
                ("max_requests_per_execution", null()),
                ("max_response_bytes", null()),
                ("timeout_seconds", null()),
            ],
            Kind::Workflow => vec![
                ("description", Fixed(json!(""))),
                ("nodes", null()),
                ("edges", Fixed(json!([]))),
                ("config", Fixed(json!({}))),
                ("concurrency", Server),
                ("schedule", null()),
            ],
            Kind::Package => vec![("version", null())],
        }
    }

    /// Shorter names a manifest may use for a field (`cron` for `cron_expression`).
    pub fn alias(self, field: &str) -> Option<&'static str> {
        Some(match (self, field) {
            (Kind::Webhook | Kind::Schedule, "function") => "function_name",
            (Kind::Webhook | Kind::Schedule, "workflow") => "workflow_name",
            (Kind::Webhook, "method") => "http_method",
            (Kind::Schedule, "cron") => "cron_expression",
            (Kind::Schedule, "input") => "input_data",
            _ => return None,
        })
    }

    /// The API's view of one resource brought to the compared fields (the rest dropped).
    pub fn from_view(self, view: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for (field, _) in self.fields() {
            let v = match (self, field) {
                (Kind::Function, "isolation" | "timeout_seconds" | "fuel" | "memory_mb" | "on_interrupt") => {
                    &view["settings"][field]
                }
                _ => &view[field],
            };
            let mut v = v.clone();
            if let (Kind::Workflow, "schedule", Value::Object(s)) = (self, field, &mut v) {
                s.remove("schedule_name");
            }
            out.insert(field.to_string(), v);
        }
        out
    }
}

/// Whether two JSON values say the same (numbers compared by value: `60` is `60.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
