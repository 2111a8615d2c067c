//! The bottom floor: pure types built once at the edge ("parse, don't validate"), with no
//! I/O and no HTTP. Names, statuses, timings and cron, workflow definitions, egress
//! policies, and the errors that say what is wrong with a value.

pub mod cron;
pub mod egress;
mod error;
pub mod schedule;
mod status;
mod tenant;
pub mod time;
mod timing;
pub mod workflow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use crate::sandbox::{ErrorKind, ErrorRecord, Isolation};
pub use error::{Fault, ParseError};
pub use schedule::{Overlap, RetryPolicy, DEFAULT_TIMEZONE};
pub use status::{CallStatus, JobStatus, RunStatus};
pub use tenant::{Role, TenantId};
pub use timing::{Timing, TimingError};

const KEYWORDS: &str = "False None True and as assert async await break class continue def del elif else except \
finally for from global if import in is lambda nonlocal not or pass raise return try while with yield";

/// Python's builtins: a function with one of these names could never be called by its bare
/// name (the builtin wins), so such names are refused.
const BUILTINS: &str = "ArithmeticError AssertionError AttributeError BaseException BaseExceptionGroup \
BlockingIOError BrokenPipeError BufferError BytesWarning ChildProcessError ConnectionAbortedError ConnectionError \
ConnectionRefusedError ConnectionResetError DeprecationWarning EOFError Ellipsis EncodingWarning EnvironmentError \
Exception ExceptionGroup FileExistsError FileNotFoundError FloatingPointError FutureWarning GeneratorExit IOError \
ImportError ImportWarning IndentationError IndexError InterruptedError IsADirectoryError KeyError KeyboardInterrupt \
LookupError MemoryError ModuleNotFoundError NameError NotADirectoryError NotImplemented NotImplementedError OSError \
OverflowError PendingDeprecationWarning PermissionError ProcessLookupError PythonFinalizationError RecursionError \
ReferenceError ResourceWarning RuntimeError RuntimeWarning StopAsyncIteration StopIteration SyntaxError SyntaxWarning \
SystemError SystemExit TabError TimeoutError TypeError UnboundLocalError UnicodeDecodeError UnicodeEncodeError \
UnicodeError UnicodeTranslateError UnicodeWarning UserWarning ValueError Warning ZeroDivisionError abs aiter all anext \
any ascii bin bool breakpoint bytearray bytes callable chr classmethod compile complex copyright credits delattr dict \
dir divmod enumerate eval exec exit filter float format frozenset getattr globals hasattr hash help hex id input int \
isinstance issubclass iter len license list locals map max memoryview min next object oct open ord pow print property \
quit range repr reversed round set setattr slice sorted staticmethod str sum super tuple type vars zip maestro CallError";

/// A function's name: an ASCII Python identifier, callable by its bare name from other functions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FunctionName(String);

impl FunctionName {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| ParseError::new("name", why).summarized(format!("invalid function name {s:?}: {why}"));
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(
                "a name must be a Python identifier (letters, digits, _; not starting with a digit)",
            ));
        }
        if s.len() > 64 {
            return Err(bad("a name has at most 64 characters"));
        }
        if s.starts_with("__") {
            return Err(bad("names starting with __ are reserved"));
        }
        if KEYWORDS.split(' ').any(|k| k == s) {
            return Err(bad("a name cannot be a Python keyword"));
        }
        if BUILTINS.split_whitespace().any(|k| k == s) {
            return Err(bad(
                "a name cannot be a Python builtin or a reserved name (it could not be called by name)",
            ));
        }
        Ok(FunctionName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the queue does with a job whose server died while it ran: run it again as a new
/// attempt (up to QUEUE_MAX_ATTEMPTS), or end it as failed / interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnInterrupt {
    #[default]
    Retry,
    Fail,
}

impl std::str::FromStr for OnInterrupt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "retry" => Ok(OnInterrupt::Retry),
            "fail" => Ok(OnInterrupt::Fail),
            other => Err(format!("on_interrupt must be retry or fail, not {other:?}")),
        }
    }
}

/// Per-function limits and isolation; unset fields take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// For queued runs: what to do when the server running one dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_interrupt: Option<OnInterrupt>,
}

/// Compile a JSON Schema, saying what is wrong with it.
pub fn compile_schema(field: &str, schema: &Value) -> Result<jsonschema::Validator, ParseError> {
    jsonschema::validator_for(schema).map_err(|e| {
        ParseError::new(field, e.to_string())
            .summarized(format!("{field} is not a valid JSON Schema: {e}"))
            .with_details(json!([{"field": field, "message": e.to_string(), "path": e.instance_path().to_string()}]))
    })
}

/// Every violation of `validator` by `value`, as `[{path, message}]` (empty when valid).
pub fn violations(validator: &jsonschema::Validator, value: &Value) -> Vec<Value> {
    validator
        .iter_errors(value)
        .take(20)
        .map(|e| json!({"path": e.instance_path().to_string(), "message": e.to_string()}))
        .collect()
}

/// Longest webhook path, in bytes.
pub const MAX_WEBHOOK_PATH: usize = 200;

/// A webhook's path under `/api/v1/h/`: `/`-separated segments of URL-safe characters
/// (letters, digits, `-`, `.`, `_`, `~`), none empty, `.` or `..`. Percent-encoding is never
/// needed for these, so a `%` is refused too: `%2e%2e` cannot sneak in a `..`.
pub fn webhook_path(raw: &str) -> Result<String, String> {
    let path = raw.trim_matches('/');
    if path.is_empty() {
        return Err("a webhook path cannot be empty".into());
    }
    if path.len() > MAX_WEBHOOK_PATH {
        return Err(format!("a webhook path has at most {MAX_WEBHOOK_PATH} characters"));
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("a webhook path cannot contain empty, `.` or `..` segments".into());
        }
        if !segment.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) {
            return Err("a webhook path uses only letters, digits, `-`, `.`, `_`, `~` and `/`".into());
        }
    }
    Ok(path.to_string())
}

/// The methods a webhook may accept (`ANY` accepts all of them).
pub const WEBHOOK_METHODS: [&str; 8] = ["ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// A webhook's method, upper-cased; `*` means `ANY`.
pub fn webhook_method(raw: &str) -> Result<String, String> {
    let m = if raw == "*" {
        "ANY".to_string()
    } else {
        raw.to_ascii_uppercase()
    };
    if WEBHOOK_METHODS.contains(&m.as_str()) {
        Ok(m)
    } else {
        Err(format!("http_method must be one of {}", WEBHOOK_METHODS.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for ok in ["hello_world", "_private", "f2", "validate_customer", "match", "case"] {
            assert!(FunctionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2f",
            "my-func",
            "a b",
            "class",
            "None",
            "print",
            "len",
            "maestro",
            "__x",
            "é",
            &"x".repeat(65),
        ] {
            assert!(FunctionName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_problems_are_reported() -> Result<(), ParseError> {
        assert!(compile_schema("input_schema", &json!({"type": "object"})).is_ok());
        let err = compile_schema("input_schema", &json!({"type": 12})).unwrap_err();
        assert!(err.to_string().contains("input_schema"));
        let v = compile_schema("s", &json!({"type": "object", "required": ["a"]}))?;
        assert_eq!(violations(&v, &json!({})).len(), 1);
        assert!(violations(&v, &json!({"a": 1})).is_empty());
        Ok(())
    }

    #[test]
    fn webhook_paths() {
        for (raw, want) in [
            ("hello", "hello"),
            ("/a/b-c/d.e_f~/", "a/b-c/d.e_f~"),
            ("v1/stripe", "v1/stripe"),
        ] {
            assert_eq!(webhook_path(raw).as_deref(), Ok(want), "{raw}");
        }
        for bad in [
            "",
            "/",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "%2e%2e",
            "a b",
            "a?b",
            "é",
            &"x".repeat(201),
        ] {
            assert!(webhook_path(bad).is_err(), "{bad}");
        }
        assert_eq!(webhook_method("post").as_deref(), Ok("POST"));
        assert_eq!(webhook_method("*").as_deref(), Ok("ANY"));
        assert!(webhook_method("TRACE").is_err());
    }
}

/// What a webhook or schedule runs: a function or a workflow of the same tenant. Shown and
/// written as `function_name` or `workflow_name`; stored as the two columns of that name,
/// `function_name` empty for a workflow (a function's name is never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Target {
    #[serde(rename = "function_name")]
    Function(String),
    #[serde(rename = "workflow_name")]
    Workflow(String),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Function(n) | Target::Workflow(n) => n,
        }
    }

    /// As shown: (function_name, workflow_name), exactly one set.
    pub fn into_names(self) -> (Option<String>, Option<String>) {
        match self {
            Target::Function(n) => (Some(n), None),
            Target::Workflow(n) => (None, Some(n)),
        }
    }

    /// The stored columns: (function_name, workflow_name).
    pub fn columns(&self) -> (&str, Option<&str>) {
        match self {
            Target::Function(n) => (n, None),
            Target::Workflow(n) => ("", Some(n)),
        }
    }

    pub fn from_columns(function: String, workflow: Option<String>) -> Target {
        match workflow.filter(|w| !w.is_empty()) {
            Some(w) => Target::Workflow(w),
            None => Target::Function(function),
        }
    }

    /// From a body's `function_name` / `workflow_name` (at most one), else `base` (an
    /// update keeps its target). Names that cannot exist read as unknown.
    pub fn from_body(
        function: Option<&str>,
        workflow: Option<&str>,
        base: Option<&Target>,
    ) -> Result<Target, (&'static str, String)> {
        let known = |field: &'static str, kind: &str, n: &str| {
            FunctionName::parse(n)
                .map(|_| n.to_string())
                .map_err(|_| (field, format!("there is no {kind} named {n:?}")))
        };
        match (function, workflow, base) {
            (Some(_), Some(_), _) => Err(("workflow_name", "give function_name or workflow_name, not both".into())),
            (Some(f), None, _) => Ok(Target::Function(known("function_name", "function", f)?)),
            (None, Some(w), _) => Ok(Target::Workflow(known("workflow_name", "workflow", w)?)),
            (None, None, Some(b)) => Ok(b.clone()),
            (None, None, None) => Err(("function_name", "required (or workflow_name)".into())),
        }
    }
}

/// A package name in PEP 503 form (`Python_Slugify` is `python-slugify`): how installed
/// packages are named, so a project folder compares names the same way.
pub fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}
