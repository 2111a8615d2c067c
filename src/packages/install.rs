//! Installing (pip or upload) and uninstalling a tenant's packages.
//!
//! pip runs in a child process with the embedded `runtime/resolve.py`, which only ever
//! downloads wheels (never builds), into a work directory of its own. Every wheel is then
//! checked here ([`wheel::inspect`]) and all of them are stored in one transaction; the work
//! directory is removed whatever happens, so a failed install leaves nothing behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{wheel, Packages};
use crate::domain::{Fault, ParseError};
use crate::store::{Audit, InstalledPackage, NewPackage, StoreError};

const RESOLVE: &str = include_str!("../../runtime/resolve.py");

/// The sandbox interpreter as PEP 508 markers see it (checked against the runtime by a test).
const MARKERS: &str = r#"{"python_version": "3.15", "python_full_version": "3.15.0", "implementation_name": "cpython",
  "implementation_version": "3.15.0", "platform_python_implementation": "CPython", "os_name": "posix",
  "sys_platform": "wasi", "platform_system": "WASI", "platform_machine": "wasm32", "platform_release": "",
  "platform_version": ""}"#;

/// Why an install failed, as the job records it and the API answers it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub fault: Fault,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(fault: Fault, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            fault,
            code,
            message: message.into(),
        }
    }

    /// An unexpected failure: logged here, shown as `internal error`.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "package operation failed");
        Failure::new(Fault::Internal, "internal", "internal error")
    }

    pub fn to_json(&self) -> Value {
        json!({"status": self.fault.status_code(), "code": self.code, "message": self.message})
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<wheel::Refusal> for Failure {
    fn from(r: wheel::Refusal) -> Self {
        let fault = match r.code {
            "package_too_large" => Fault::TooLarge,
            _ => Fault::Rejected,
        };
        Failure::new(fault, r.code, r.message)
    }
}

/// A store error met while serving a request keeps its meaning (404, 409).
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Failure::new(Fault::NotFound, "not_found", m),
            StoreError::Conflict(m) => Failure::new(Fault::Conflict, "conflict", m),
            StoreError::Invalid { message, .. } => Failure::new(Fault::Rejected, "validation_failed", message),
            StoreError::Unavailable(_) => Failure::new(
                Fault::Unavailable,
                "database_unavailable",
                "the database is unavailable; try again shortly",
            ),
            other => Failure::internal(other),
        }
    }
}

/// Storing a set: the store refuses a set over the tenant's quota as `Invalid`.
fn from_store(e: StoreError) -> Failure {
    match e {
        StoreError::Invalid { message, .. } => Failure::new(Fault::Forbidden, "package_quota_exceeded", message),
        other => other.into(),
    }
}

/// An install under way: its job id, and its end if it comes soon enough.
pub struct Started {
    pub job_id: String,
    pub done: oneshot::Receiver<Result<Value, Failure>>,
}

/// What resolve.py prints.
#[derive(Deserialize)]
struct Resolved {
    ok: bool,
    #[serde(default)]
    already: bool,
    #[serde(default)]
    wheels: Vec<ResolvedWheel>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ResolvedWheel {
    name: String,
    path: PathBuf,
    requested_by: Option<String>,
    #[serde(default)]
    requires: Vec<String>,
}

/// A version specifier as pip takes it: `1.2`, `==1.2`, `>=1,<2`, `~=1.4`, `!=1.3.*`.
fn valid_spec(spec: &str) -> bool {
    spec.len() <= 100
        && spec.split(',').all(|clause| {
            let c = clause.trim();
            let v = c.trim_start_matches(['=', '!', '<', '>', '~']).trim();
            c.len() - c.trim_start_matches(['=', '!', '<', '>', '~']).len() <= 3
                && !v.is_empty()
                && v.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '*' | '+' | '!' | '-' | '_'))
        })
}

/// The requirement string for a name and an optional version (a bare version means `==`).
pub fn requirement(name: &str, version: Option<&str>) -> Result<String, ParseError> {
    if !wheel::valid_name(name) {
        return Err(ParseError::new(
            "name",
            "a package name holds only letters, digits, `-`, `_` and `.` (and starts and ends with a letter or digit)",
        ));
    }
    match version.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(name.to_string()),
        Some(v) if !valid_spec(v) => Err(ParseError::new(
            "version",
            "expected a version (`1.2.3`) or a specifier (`>=1.2,<2`, `~=1.4`)",
        )),
        Some(v) if v.starts_with(|c: char| c.is_ascii_alphanumeric()) => Ok(format!("{name}=={v}")),
        Some(v) => Ok(format!("{name}{v}")),
    }
}

impl Packages {
    /// Start installing `name` (and its dependencies) with pip, in the background.
    pub async fn install(
        self: &Arc<Self>,
        tenant: &str,
        by: &str,
        name: &str,
        version: Option<&str>,
        audit: Audit,
    ) -> Result<Started, Failure> {
        self.check_allowed()?;
        let req =
            requirement(name, version).map_err(|e| Failure::new(Fault::Malformed, "invalid_request", e.summary))?;
        let canonical = wheel::canonical_name(name);
        if let Some(b) = self.builtin.get(&canonical) {
            return Err(builtin_refusal(b));
        }
        let since = crate::store::now_ms() - self.stale_after().as_millis() as i64;
        if self.store.tenant(tenant).running_package_jobs(since).await? > 0 {
            return Err(Failure::new(
                Fault::Conflict,
                "install_in_progress",
                "an install is already running for this tenant; wait for it (GET /api/v1/packages/installs)",
            ));
        }
        let job_id = uuid::Uuid::now_v7().to_string();
        let audit = audit.detail(json!({"name": name, "version": version, "job_id": job_id}));
        self.store
            .tenant(tenant)
            .create_package_job(&job_id, &req, by, audit)
            .await?;
        let (tx, done) = oneshot::channel();
        let me = self.clone();
        let (tenant, by, id) = (tenant.to_string(), by.to_string(), job_id.clone());
        tokio::spawn(async move {
            let result = me.run_install(&tenant, &by, &req, &id).await;
            let recorded = match &result {
                Ok(v) => me.store.finish_package_job(&id, Ok(v)).await,
                Err(f) => me.store.finish_package_job(&id, Err(&f.to_json())).await,
            };
            if let Err(e) = recorded {
                tracing::error!(job = %id, error = %e, "could not record the end of a package install");
            }
            let _ = tx.send(result);
        });
        Ok(Started { job_id, done })
    }

    /// How long after its start a job still `running` is taken for dead (its server stopped).
    pub fn stale_after(&self) -> Duration {
        self.policy.timeout * 3 + Duration::from_secs(120)
    }

    async fn run_install(&self, tenant: &str, by: &str, req: &str, job: &str) -> Result<Value, Failure> {
        let _change = self.change_lock(tenant).await;
        let work = self.root.join(".work").join(job);
        std::fs::create_dir_all(&work).map_err(Failure::internal)?;
        let result = self.resolve_and_store(tenant, by, req, &work).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        result
    }

    async fn resolve_and_store(
        &self,
        tenant: &str,
        by: &str,
        req: &str,
        work: &std::path::Path,
    ) -> Result<Value, Failure> {
        let installed = self.store.tenant(tenant).list_packages().await.map_err(from_store)?;
        let have: serde_json::Map<String, Value> =
            installed.iter().map(|p| (p.name.clone(), json!(p.version))).collect();
        let builtin: serde_json::Map<String, Value> = self
            .builtin
            .iter()
            .map(|(k, b)| (k.clone(), json!(b.version)))
            .collect();
        let markers: Value = serde_json::from_str(MARKERS).unwrap_or_default();
        let request = json!({
            "requirement": req, "python_version": "3.15", "environment": markers,
            "builtin": builtin, "installed": have, "dest": work,
            "max_packages": self.policy.max_packages, "timeout": self.policy.timeout.as_secs(),
            "max_bytes": self.policy.limits.max_bytes,
        });
        let resolved = self.run_resolver(&request, work).await?;
        if !resolved.ok {
            return Err(resolver_failure(&resolved.code, resolved.message));
        }
        if resolved.already {
            let name = wheel::canonical_name(req.split(|c: char| "=<>!~".contains(c)).next().unwrap_or(req));
            let existing: Vec<&InstalledPackage> = installed.iter().filter(|p| p.name == name).collect();
            return Ok(json!({"already_installed": true, "installed": existing}));
        }
        let mut new = Vec::new();
        for w in &resolved.wheels {
            let filename = w
                .path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string();
            let size = tokio::fs::metadata(&w.path).await.map(|m| m.len()).unwrap_or(u64::MAX);
            if size > self.policy.limits.max_bytes {
                return Err(Failure::new(
                    Fault::TooLarge,
                    "package_too_large",
                    format!(
                        "{filename} is {size} bytes; the limit is {} bytes",
                        self.policy.limits.max_bytes
                    ),
                ));
            }
            let bytes = tokio::fs::read(&w.path).await.map_err(Failure::internal)?;
            let (checked, bytes) = self.inspect(filename.clone(), bytes).await?;
            if checked.name != w.name || self.builtin.contains_key(&checked.name) {
                return Err(Failure::new(
                    Fault::Rejected,
                    "invalid_wheel",
                    format!("pip returned {filename} for {}", w.name),
                ));
            }
            new.push(self.new_package(checked, bytes, w.requires.clone(), "pip", w.requested_by.clone(), by));
        }
        self.store_packages(tenant, &installed, new, false, None).await
    }

    /// Check the tenant's quota, store in one transaction, make the change visible.
    async fn store_packages(
        &self,
        tenant: &str,
        installed: &[InstalledPackage],
        new: Vec<NewPackage>,
        replace: bool,
        audit: Option<Audit>,
    ) -> Result<Value, Failure> {
        // The quota counts what the packages take unpacked, on every server's disk.
        let replaced: i64 = installed
            .iter()
            .filter(|p| replace && new.iter().any(|n| n.package.name == p.name))
            .map(|p| p.unpacked_bytes)
            .sum();
        let total = installed.iter().map(|p| p.unpacked_bytes).sum::<i64>() - replaced
            + new.iter().map(|p| p.package.unpacked_bytes).sum::<i64>();
        if total > self.policy.tenant_max_bytes {
            return Err(Failure::new(
                Fault::Forbidden,
                "package_quota_exceeded",
                format!(
                    "the tenant's packages would take {total} bytes unpacked; the limit is {} bytes (uninstall something first)",
                    self.policy.tenant_max_bytes
                ),
            ));
        }
        self.store
            .tenant(tenant)
            .add_packages(&new, self.policy.tenant_max_bytes, replace, audit)
            .await
            .map_err(from_store)?;
        self.changed(tenant);
        let listed: Vec<&InstalledPackage> = new.iter().map(|p| &p.package).collect();
        Ok(json!({"installed": listed}))
    }

    fn new_package(
        &self,
        w: wheel::Wheel,
        bytes: Vec<u8>,
        requires: Vec<String>,
        source: &str,
        dependency_of: Option<String>,
        by: &str,
    ) -> NewPackage {
        NewPackage {
            package: InstalledPackage {
                name: w.name,
                version: w.version,
                filename: w.filename,
                sha256: w.sha256,
                size_bytes: w.size as i64,
                unpacked_bytes: w.unpacked as i64,
                requires,
                source: source.to_string(),
                dependency_of,
                installed_by: by.to_string(),
                installed_at: crate::store::now_ms(),
            },
            wheel: bytes,
        }
    }

    /// Check a wheel off the async threads (it is decompressed and hashed in full).
    async fn inspect(&self, filename: String, bytes: Vec<u8>) -> Result<(wheel::Wheel, Vec<u8>), Failure> {
        let limits = self.policy.limits;
        tokio::task::spawn_blocking(move || wheel::inspect(&filename, &bytes, limits).map(|w| (w, bytes)))
            .await
            .map_err(Failure::internal)?
            .map_err(Failure::from)
    }

    /// Run resolve.py: isolated mode (`-I`), only the environment pip needs (never the
    /// server's secrets), in the job's work directory, in a process group of its own so a
    /// timeout stops pip too.
    async fn run_resolver(&self, request: &Value, work: &std::path::Path) -> Result<Resolved, Failure> {
        let _slot = self.pip_slots.acquire().await.map_err(Failure::internal)?;
        let mut cmd = tokio::process::Command::new(&self.policy.python);
        cmd.arg("-I")
            .arg("-c")
            .arg(RESOLVE)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| pip_env(k)))
            .current_dir(work)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Failure::new(
                Fault::Unavailable,
                "pip_unavailable",
                format!(
                    "could not run {} (python3 with pip is needed to install packages): {e}",
                    self.policy.python
                ),
            )
        })?;
        let group = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(request.to_string().as_bytes()).await;
        }
        let limit = self.policy.timeout * 3 + Duration::from_secs(30);
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(Failure::internal(e)),
            Err(_) => {
                if let Some(pid) = group {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &format!("-{pid}")])
                        .status();
                }
                return Err(Failure::new(Fault::Timeout, "pip_timeout", "pip took too long"));
            }
        };
        serde_json::from_slice(&out.stdout).map_err(|_| {
            tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr), "the package resolver failed");
            Failure::new(
                Fault::Upstream,
                "pip_failed",
                "the package resolver failed (see the server log)",
            )
        })
    }

    /// Store an uploaded wheel (private code), checked like a downloaded one. Its dependencies
    /// are not fetched; the answer lists the ones neither built in nor installed.
    pub async fn upload(
        &self,
        tenant: &str,
        by: &str,
        filename: &str,
        bytes: Vec<u8>,
        replace: bool,
        audit: Audit,
    ) -> Result<Value, Failure> {
        self.check_allowed()?;
        let filename = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
        let (checked, bytes) = self.inspect(filename.to_string(), bytes).await?;
        let _change = self.change_lock(tenant).await;
        if let Some(b) = self.builtin.get(&checked.name) {
            return Err(builtin_refusal(b));
        }
        let installed = self.store.tenant(tenant).list_packages().await?;
        if let Some(p) = installed.iter().find(|p| p.name == checked.name) {
            if !replace {
                return Err(Failure::new(
                    Fault::Conflict,
                    "conflict",
                    format!(
                        "{} {} is already installed; pass ?replace=true to replace it",
                        p.name, p.version
                    ),
                ));
            }
        }
        let missing: Vec<String> = checked
            .requires
            .iter()
            .filter(|r| !self.builtin.contains_key(*r) && !installed.iter().any(|p| &&p.name == r))
            .cloned()
            .collect();
        let requires = checked.requires.clone();
        let new = vec![self.new_package(checked, bytes, requires, "upload", None, by)];
        let listed: Vec<&InstalledPackage> = new.iter().map(|p| &p.package).collect();
        let audit = audit.detail(json!(listed));
        let mut out = self
            .store_packages(tenant, &installed, new, replace, Some(audit))
            .await?;
        out["missing_dependencies"] = json!(missing);
        Ok(out)
    }

    pub async fn uninstall(
        &self,
        tenant: &str,
        name: &str,
        force: bool,
        audit: impl FnOnce(&InstalledPackage) -> Audit,
    ) -> Result<InstalledPackage, Failure> {
        self.check_allowed()?;
        let canonical = wheel::canonical_name(name);
        if let Some(b) = self.builtin.get(&canonical) {
            return Err(Failure::new(
                Fault::Conflict,
                "conflict",
                format!(
                    "{} {} is built into the runtime and cannot be removed",
                    b.name, b.version
                ),
            ));
        }
        let _change = self.change_lock(tenant).await;
        let removed = self
            .store
            .tenant(tenant)
            .remove_package(&canonical, force, audit)
            .await?;
        self.changed(tenant);
        Ok(removed)
    }
}

/// The environment the resolver keeps: what pip and its TLS need, nothing of the server's.
fn pip_env(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    matches!(
        k.as_str(),
        "PATH" | "HOME" | "LANG" | "LC_ALL" | "TMPDIR" | "SSL_CERT_FILE" | "SSL_CERT_DIR" | "REQUESTS_CA_BUNDLE"
    ) || k.starts_with("PIP_")
        || k.ends_with("_PROXY")
}

fn builtin_refusal(b: &super::Builtin) -> Failure {
    Failure::new(
        Fault::Conflict,
        "builtin_package",
        format!(
            "{} {} is built into the runtime: import it directly, no install needed (the built-in version cannot be replaced)",
            b.name, b.version
        ),
    )
}

fn resolver_failure(code: &str, message: String) -> Failure {
    let (status, code) = match code {
        "builtin" => (Fault::Conflict, "builtin_package"),
        "conflict" => (Fault::Conflict, "conflict"),
        "package_not_found" => (Fault::NotFound, "package_not_found"),
        "version_not_found" => (Fault::NotFound, "version_not_found"),
        "not_pure" => (Fault::Rejected, "not_pure"),
        "python_incompatible" => (Fault::Rejected, "python_incompatible"),
        "invalid_wheel" => (Fault::Rejected, "invalid_wheel"),
        "too_many" => (Fault::Rejected, "too_many_dependencies"),
        "invalid_requirement" => (Fault::Malformed, "invalid_request"),
        "pip_timeout" => (Fault::Timeout, "pip_timeout"),
        "package_too_large" => (Fault::TooLarge, "package_too_large"),
        _ => (Fault::Upstream, "pip_failed"),
    };
    Failure::new(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_checked() {
        assert_eq!(requirement("six", None).ok().as_deref(), Some("six"));
        assert_eq!(requirement("six", Some("1.2")).ok().as_deref(), Some("six==1.2"));
        assert_eq!(requirement("six", Some(">=1,<2")).ok().as_deref(), Some("six>=1,<2"));
        assert_eq!(requirement("six", Some("~=1.4")).ok().as_deref(), Some("six~=1.4"));
        for (n, v) in [
            ("six; rm -rf /", None),
            ("../six", None),
            ("six", Some("1; rm")),
            ("six", Some("$(x)")),
            ("six", Some(">>>>1")),
        ] {
            assert!(requirement(n, v).is_err(), "{n} {v:?}");
        }
    }
}
