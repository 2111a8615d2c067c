//! Code sent to run on demand (`POST /api/v1/run`): the policy (the server's
//! `ALLOW_CODE_EXECUTION` and the tenant's `code_execution` quota), the code's size and
//! limits; the engine runs it (see `engine::code`).

use std::sync::Arc;

use serde_json::Value;

use super::functions::{check_code_size, check_settings};
use super::sessions::check_path;
use super::{Error, Result};
use crate::auth::Caller;
use crate::config::Settings;
use crate::domain::{FunctionSettings, Isolation};
use crate::engine::code::CodeRun;
use crate::engine::{Engine, Started};

/// A run as asked: code, its input and limits (unset ones are the server's defaults).
pub struct RunRequest {
    pub code: String,
    pub input: Option<Value>,
    pub limits: FunctionSettings,
    /// Files put in the run's working directory first: path -> base64.
    pub files: Option<serde_json::Map<String, Value>>,
    /// Answer the files the code left under `out/`.
    pub return_files: bool,
    /// Where the output goes as it is printed (`?stream=true`).
    pub stream: Option<crate::engine::Output>,
}

/// Refuse a caller whose tenant may not run code: the server's `ALLOW_CODE_EXECUTION` and
/// the tenant's `code_execution` quota (viewers are refused earlier: they only read).
pub(super) async fn check_allowed(settings: &Settings, engine: &Engine, caller: &Caller) -> Result<()> {
    if !settings.allow_code_execution {
        return Err(Error::Forbidden(
            "running code on demand is turned off on this server (ALLOW_CODE_EXECUTION=false)".into(),
        ));
    }
    if !engine.quotas_of(&caller.tenant).await?.code_execution {
        return Err(Error::Forbidden(format!(
            "tenant {} may not run code on demand (its `code_execution` quota is false)",
            caller.tenant
        )));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Runs {
    engine: Engine,
    settings: Arc<Settings>,
}

impl Runs {
    pub fn new(engine: Engine, settings: Arc<Settings>) -> Runs {
        Runs { engine, settings }
    }

    /// Refuse a caller whose tenant may not run code (checked before the body is read).
    pub async fn check_allowed(&self, caller: &Caller) -> Result<()> {
        check_allowed(&self.settings, &self.engine, caller).await
    }

    /// Start `req` in the caller's tenant, if it may run code.
    pub async fn start(&self, caller: &Caller, req: RunRequest) -> Result<Started> {
        self.check_allowed(caller).await?;
        check_code_size(&self.settings, &req.code)?;
        if req.limits.isolation == Some(Isolation::Warm) {
            return Err(Error::invalid(
                "isolation",
                "code runs are always `fresh` (a session keeps an interpreter's state instead)",
            ));
        }
        let input_bytes = req.input.as_ref().map_or(0, |i| i.to_string().len());
        if input_bytes > self.settings.max_input_bytes {
            return Err(Error::TooLarge(format!(
                "the input is {input_bytes} bytes; the limit is {} (MAX_INPUT_BYTES)",
                self.settings.max_input_bytes
            )));
        }
        check_settings(&self.settings, &self.engine, &req.limits)?;
        if let Some(files) = &req.files {
            self.check_files(files)?;
        }
        let run = CodeRun {
            code: req.code,
            input: req.input.unwrap_or(Value::Null),
            settings: req.limits,
            files: req.files,
            return_files: req.return_files,
            stream: req.stream,
        };
        Ok(self.engine.start_code(&caller.tenant, run).await?)
    }

    /// Files sent with a run: paths inside the working directory, base64 content, within
    /// SESSION_FILES_MAX_BYTES together.
    fn check_files(&self, files: &serde_json::Map<String, Value>) -> Result<()> {
        let mut total = 0usize;
        for (path, data) in files {
            check_path(path)?;
            let text = data
                .as_str()
                .ok_or_else(|| Error::invalid("files", format!("{path}: the content must be a base64 string")))?;
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
                .map_err(|e| Error::invalid("files", format!("{path}: not base64 ({e})")))?;
            total += bytes.len();
        }
        if total as u64 > self.settings.session_files_max_bytes {
            return Err(Error::TooLarge(format!(
                "the files are {total} bytes; a working directory holds at most {} (SESSION_FILES_MAX_BYTES)",
                self.settings.session_files_max_bytes
            )));
        }
        Ok(())
    }
}
