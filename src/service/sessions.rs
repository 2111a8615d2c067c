//! Sessions (`/api/v1/sessions`): interpreters kept between cells. The policy is the same as
//! for one-shot runs (`ALLOW_CODE_EXECUTION`, the tenant's `code_execution` quota); this
//! service checks a session's limits and the paths of its files; the engine holds the
//! interpreters (see `engine::session`).

use std::sync::Arc;
use std::time::Duration;

use super::functions::{check_code_size, check_settings};
use super::runs::check_allowed;
use super::{Error, Result};
use crate::auth::Caller;
use crate::config::Settings;
use crate::domain::{FunctionSettings, Isolation};
use crate::engine::session::SessionOptions;
use crate::engine::{Engine, Output, Started};
use crate::sandbox::{FileAnswer, FileOp};
use crate::store::SessionRow;

/// Longest idle time a session may ask for.
pub const MAX_IDLE_TTL_SECONDS: u64 = 86_400;
/// Longest path of a file in a working directory.
const MAX_PATH_BYTES: usize = 1024;

/// A session as asked: each cell's limits, the interpreter's memory, its idle time.
pub struct SessionRequest {
    pub limits: FunctionSettings,
    pub idle_ttl_seconds: Option<u64>,
}

#[derive(Clone)]
pub struct Sessions {
    engine: Engine,
    settings: Arc<Settings>,
}

impl Sessions {
    pub fn new(engine: Engine, settings: Arc<Settings>) -> Sessions {
        Sessions { engine, settings }
    }

    /// Refuse a caller whose tenant may not run code.
    pub async fn check_allowed(&self, caller: &Caller) -> Result<()> {
        check_allowed(&self.settings, &self.engine, caller).await
    }

    pub async fn open(&self, caller: &Caller, req: SessionRequest) -> Result<SessionRow> {
        self.check_allowed(caller).await?;
        if req.limits.isolation.is_some_and(|i| i != Isolation::Fresh) {
            return Err(Error::invalid("isolation", "a session keeps its own interpreter"));
        }
        check_settings(&self.settings, &self.engine, &req.limits)?;
        let ttl = req.idle_ttl_seconds.unwrap_or(self.settings.session_idle_ttl_seconds);
        if ttl == 0 || ttl > MAX_IDLE_TTL_SECONDS {
            return Err(Error::invalid(
                "idle_ttl_seconds",
                format!("must be between 1 and {MAX_IDLE_TTL_SECONDS}"),
            ));
        }
        let opts = SessionOptions {
            settings: req.limits,
            idle_ttl: Duration::from_secs(ttl),
        };
        Ok(self.engine.open_session(&caller.tenant, opts).await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<SessionRow> {
        Ok(self.engine.session(&caller.tenant, id).await?)
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<SessionRow>> {
        Ok(self.engine.sessions(&caller.tenant).await?)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        Ok(self.engine.close_session(&caller.tenant, id).await?)
    }

    /// Start a cell; answers its execution and `execution_count`.
    pub async fn run(&self, caller: &Caller, id: &str, code: String, stream: Option<Output>) -> Result<(Started, i64)> {
        self.check_allowed(caller).await?;
        check_code_size(&self.settings, &code)?;
        Ok(self.engine.run_cell(&caller.tenant, id, code, stream).await?)
    }

    /// The files of the session's working directory: path and size.
    pub async fn files(&self, caller: &Caller, id: &str) -> Result<Vec<(String, u64)>> {
        match self.engine.session_files(&caller.tenant, id, FileOp::List).await? {
            FileAnswer::List(files) => Ok(files),
            other => Err(unexpected(other)),
        }
    }

    pub async fn read_file(&self, caller: &Caller, id: &str, path: &str) -> Result<Vec<u8>> {
        let path = check_path(path)?;
        match self.engine.session_files(&caller.tenant, id, FileOp::Get(path)).await? {
            FileAnswer::Data(data) => Ok(data),
            other => Err(unexpected(other)),
        }
    }

    pub async fn write_file(&self, caller: &Caller, id: &str, path: &str, data: Vec<u8>) -> Result<u64> {
        self.check_allowed(caller).await?;
        let path = check_path(path)?;
        if data.len() as u64 > self.settings.session_files_max_bytes {
            return Err(Error::TooLarge(format!(
                "the file is {} bytes; a working directory holds at most {} (SESSION_FILES_MAX_BYTES)",
                data.len(),
                self.settings.session_files_max_bytes
            )));
        }
        match self
            .engine
            .session_files(&caller.tenant, id, FileOp::Put(path, data))
            .await?
        {
            FileAnswer::Size(size) => Ok(size),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_file(&self, caller: &Caller, id: &str, path: &str) -> Result<()> {
        let path = check_path(path)?;
        self.engine
            .session_files(&caller.tenant, id, FileOp::Delete(path))
            .await?;
        Ok(())
    }
}

/// An answer of another operation's shape (the sandbox checks each against its request).
fn unexpected(answer: FileAnswer) -> Error {
    Error::Internal(anyhow::anyhow!("a file request got the answer of another: {answer:?}"))
}

/// A file's path in a working directory: relative, without `.`/`..` or empty parts, NUL or
/// backslashes (what a client may name; `/home/user/` in front is allowed and dropped).
pub fn check_path(path: &str) -> Result<String> {
    let rel = path.strip_prefix("/home/user/").unwrap_or(path);
    let bad = |why: &str| Err(Error::invalid("path", format!("{path:?} {why}")));
    if rel.is_empty() || rel.len() > MAX_PATH_BYTES {
        return bad(&format!("must have 1 to {MAX_PATH_BYTES} bytes"));
    }
    if rel.starts_with('/') {
        return bad("must be relative to the working directory");
    }
    if rel.contains('\0') || rel.contains('\\') {
        return bad("may not hold NUL or backslashes");
    }
    if rel.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return bad("may not have empty, `.` or `..` parts");
    }
    Ok(rel.to_string())
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths_stay_inside() {
        for ok in ["a.csv", "out/chart.png", "/home/user/data/x.txt", "é/ü.txt"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\0b",
            "/home/user/../x",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_path("/home/user/a/b").unwrap(), "a/b");
    }
}
