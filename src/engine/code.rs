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
}

impl Engine {
    /// Start `run` as an execution of `tenant`; its output is `{"results": [...]}`.
    pub async fn start_code(&self, tenant: &str, run: CodeRun) -> Result<Started> {
        self.inner.check_open()?;
        let sha = hex::encode(Sha256::digest(run.code.as_bytes()));
        let code = head(&run.code, RECORDED_CODE_BYTES);
        let mut recorded = json!({"code": code, "input": run.input});
        if code.len() < run.code.len() {
            recorded["code_sha256"] = json!(sha);
            recorded["code_bytes"] = json!(run.code.len());
        }
        let recorded = recorded.to_string();
        let settings = FunctionSettings {
            isolation: Some(Isolation::Fresh),
            ..run.settings
        };
        let now = now_ms();
        let function = Function {
            id: format!("run:{sha}"),
            name: RUN_FUNCTION.to_string(),
            latest_version: 0,
            created_at: now,
            updated_at: now,
            current: FunctionVersion {
                version: 0,
                created_at: now,
                content: VersionContent {
                    description: String::new(),
                    code: run.code,
                    code_sha256: sha,
                    input_schema: None,
                    output_schema: None,
                    settings,
                    note: None,
                    created_by: String::new(),
                },
            },
        };
        let unit = Unit {
            function,
            schemas: Arc::new(Schemas::default()),
            script: true,
            recorded_input: recorded,
        };
        self.launch_unit(tenant, unit, run.input, Trigger::Run, None).await
    }
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
