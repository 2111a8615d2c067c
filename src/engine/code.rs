//! Code sent to run on demand (`POST /api/v1/run`): not a stored function but a script, run
//! as a notebook cell in a sandbox of the caller's tenant (its packages, egress policy and
//! secrets apply; its own functions are callable by name). The execution is recorded like
//! any other, with trigger `run`, function name [`RUN_FUNCTION`] and the code in its input.

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Engine, Result, Schemas, Started, Trigger, Unit};
use crate::domain::FunctionSettings;
use crate::sandbox::Isolation;
use crate::store::{now_ms, Function, FunctionVersion, VersionContent};

/// The function name a run's execution carries: reserved (no function's name starts with
/// `__`), so it never clashes with a stored function.
pub const RUN_FUNCTION: &str = "__run__";
/// The most of a run's code its execution record keeps.
pub const RECORDED_CODE_BYTES: usize = 64 << 10;

/// Code to run once.
pub struct CodeRun {
    pub code: String,
    /// The script's global `input` (None when not given).
    pub input: Value,
    /// Its limits (checked by the caller against the server's maxima); its isolation is
    /// always `fresh`.
    pub settings: FunctionSettings,
    /// Files put in its working directory first (path -> base64).
    pub files: Option<serde_json::Map<String, Value>>,
    /// Answer the files it left under `out/`.
    pub return_files: bool,
    /// Where its output goes as it prints (`?stream=true`).
    pub stream: Option<super::Output>,
}

impl Engine {
    /// Start `run` as an execution of `tenant`; its output is `{"results": [...]}` (and
    /// `files`, when asked).
    pub async fn start_code(&self, tenant: &str, run: CodeRun) -> Result<Started> {
        self.inner.check_open()?;
        let (function, mut recorded) = script_function(RUN_FUNCTION, run.code, run.settings);
        recorded["input"] = run.input.clone();
        if let Some(files) = &run.files {
            recorded["files"] = json!(files.keys().collect::<Vec<_>>());
        }
        let extras = (run.files.is_some() || run.return_files).then(|| {
            let mut m = serde_json::Map::new();
            m.insert("files".into(), Value::Object(run.files.unwrap_or_default()));
            m.insert("return_files".into(), Value::Bool(run.return_files));
            m.insert("files_cap".into(), json!(self.inner.settings.session_files_max_bytes));
            m
        });
        let unit = Unit {
            function,
            schemas: Arc::new(Schemas::default()),
            script: true,
            recorded_input: recorded.to_string(),
            extras,
            session: None,
            stream: run.stream,
        };
        self.launch_unit(tenant, unit, run.input, Trigger::Run, None).await
    }
}

/// Code sent to run, as the function an execution runs (named `name`, always `fresh`), and
/// its recorded input: the code, cut to [`RECORDED_CODE_BYTES`] (with its sha256 and size
/// when cut).
pub(super) fn script_function(name: &str, code: String, settings: FunctionSettings) -> (Function, Value) {
    let sha = hex::encode(Sha256::digest(code.as_bytes()));
    let kept = head(&code, RECORDED_CODE_BYTES);
    let mut recorded = json!({"code": kept});
    if kept.len() < code.len() {
        recorded["code_sha256"] = json!(sha);
        recorded["code_bytes"] = json!(code.len());
    }
    let settings = FunctionSettings {
        isolation: Some(Isolation::Fresh),
        ..settings
    };
    let now = now_ms();
    let function = Function {
        id: format!("run:{sha}"),
        name: name.to_string(),
        latest_version: 0,
        created_at: now,
        updated_at: now,
        current: FunctionVersion {
            version: 0,
            created_at: now,
            content: VersionContent {
                description: String::new(),
                code,
                code_sha256: sha,
                input_schema: None,
                output_schema: None,
                settings,
                note: None,
                created_by: String::new(),
            },
        },
    };
    (function, recorded)
}

/// The first `max` bytes of `text` (at a character boundary).
fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
