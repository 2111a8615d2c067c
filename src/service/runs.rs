//! Code sent to run on demand (`POST /api/v1/run`): the policy (the server's
//! `ALLOW_CODE_EXECUTION` and the tenant's `code_execution` quota), the code's size and
//! limits; the engine runs it (see `engine::code`).

use std::sync::Arc;

use serde_json::Value;

use super::functions::{check_code_size, check_settings};
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
        if !self.settings.allow_code_execution {
            return Err(Error::Forbidden(
                "running code on demand is turned off on this server (ALLOW_CODE_EXECUTION=false)".into(),
            ));
        }
        if !self.engine.quotas_of(&caller.tenant).await?.code_execution {
            return Err(Error::Forbidden(format!(
                "tenant {} may not run code on demand (its `code_execution` quota is false)",
                caller.tenant
            )));
        }
        Ok(())
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
        let run = CodeRun {
            code: req.code,
            input: req.input.unwrap_or(Value::Null),
            settings: req.limits,
        };
        Ok(self.engine.start_code(&caller.tenant, run).await?)
    }
}
