//! Python packages for functions: the runtime's built-in ones, and pure-Python wheels a
//! tenant installs (through pip) or uploads.
//!
//! The database is the source of truth (each wheel is stored there), so every server sees the
//! same packages. A server unpacks a tenant's set into `DATA_DIR/packages/<tenant>/<digest>`
//! the first time a call needs it; the digest names the exact set, so a changed set is a new
//! directory and never a half-updated one, and warm instances are keyed by it (an instance
//! never sees a set other than the one it started with). The sandbox mounts that directory
//! read-only at `/packages` and puts it on `sys.path`; no other tenant's directory is mounted.

pub mod builtin;
mod install;
pub mod wheel;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::domain::Fault;
use crate::sandbox::{PackageMount, Sandbox};
use crate::store::{Store, StoredWheel};
pub use builtin::Builtin;
pub use install::{requirement, Failure, Started};

/// Limits and switches read once from the settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allowed: bool,
    pub limits: wheel::WheelLimits,
    pub tenant_max_bytes: i64,
    pub python: String,
    pub timeout: Duration,
    pub max_packages: usize,
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Policy {
        Policy {
            allowed: s.allow_package_installation,
            limits: wheel::WheelLimits {
                max_bytes: s.package_max_bytes,
                max_unpacked: s.package_max_bytes.saturating_mul(5),
                max_files: 20_000,
            },
            tenant_max_bytes: s.tenant_packages_max_bytes as i64,
            python: s.package_python.clone(),
            timeout: Duration::from_secs(s.package_install_timeout_seconds),
            max_packages: 50,
        }
    }
}

/// What this server last learnt of a tenant's set: its mount, or why it could not be made
/// (remembered as briefly as a success, so a broken set does not unpack on every call).
struct Cached {
    mount: Result<Option<Arc<PackageMount>>, String>,
    at: Instant,
}

pub struct Packages {
    store: Store,
    sandbox: Arc<Sandbox>,
    policy: Policy,
    builtin: BTreeMap<String, Builtin>,
    root: PathBuf,
    /// How long a tenant's package set is trusted before asking the database again (bounds
    /// how late a change made through another server shows here).
    ttl: Duration,
    mounts: Mutex<HashMap<String, Cached>>,
    /// One unpacking at a time on this server.
    unpacking: tokio::sync::Mutex<()>,
    /// Tenants with an install, upload or uninstall under way here: one at a time each, so
    /// a change is always computed against the set it will replace.
    changing: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// pip runs at most this many at once on this server.
    pip_slots: tokio::sync::Semaphore,
}

impl Packages {
    pub fn new(store: Store, sandbox: Arc<Sandbox>, settings: &Settings) -> anyhow::Result<Arc<Packages>> {
        let zip = settings.runtime_dir().join("lib").join("python315.zip");
        let builtin = builtin::read(&zip).map_err(|e| anyhow::anyhow!("reading {}: {e}", zip.display()))?;
        let root = settings.data_dir.join("packages");
        std::fs::create_dir_all(&root)?;
        Ok(Arc::new(Packages {
            store,
            sandbox,
            policy: Policy::from_settings(settings),
            builtin,
            root,
            ttl: Duration::from_millis(settings.function_cache_ms),
            mounts: Mutex::new(HashMap::new()),
            unpacking: tokio::sync::Mutex::new(()),
            changing: tokio::sync::Mutex::new(HashMap::new()),
            pip_slots: tokio::sync::Semaphore::new(2),
        }))
    }

    pub fn builtin(&self) -> &BTreeMap<String, Builtin> {
        &self.builtin
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Refuse changes when installation is turned off.
    pub fn check_allowed(&self) -> Result<(), Failure> {
        if self.policy.allowed {
            return Ok(());
        }
        Err(Failure::new(
            Fault::Forbidden,
            "package_installation_disabled",
            "package installation is turned off on this server (ALLOW_PACKAGE_INSTALLATION=false)",
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.mounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget what this server knows of a tenant's set and drop its warm instances, so the
    /// next call sees a change made here at once.
    pub fn changed(&self, tenant: &str) {
        self.lock().remove(tenant);
        self.sandbox.recycle_tenant(tenant);
    }

    /// The lock serialising changes to one tenant's set on this server.
    pub(crate) async fn change_lock(&self, tenant: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.changing.lock().await;
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(tenant.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The directory to mount for a tenant's calls, unpacked if needed; None when the tenant
    /// has no packages.
    pub async fn mount(&self, tenant: &str) -> Result<Option<Arc<PackageMount>>, Failure> {
        let previous = match self.lock().get(tenant) {
            Some(c) if c.at.elapsed() < self.ttl => return c.mount.clone().map_err(as_error),
            Some(c) => c.mount.as_ref().ok().and_then(|m| m.as_ref().map(|m| m.digest.clone())),
            None => None,
        };
        let result = self.resolve_mount(tenant).await;
        if let Err(f) = &result {
            if f.code == "database_unavailable" {
                return Err(f.clone()); // not remembered: it may be back for the next call
            }
        }
        let digest = result.as_ref().ok().and_then(|m| m.as_ref().map(|m| m.digest.clone()));
        if previous.is_some() && digest != previous {
            // Another server changed the set: this one's warm instances hold the old one.
            self.sandbox.recycle_tenant(tenant);
        }
        let cached = result.map_err(|e| match e {
            f if f.fault == Fault::Unavailable => f.message,
            other => {
                tracing::warn!(tenant, error = ?other, "could not prepare a tenant's packages");
                unavailable(other.to_string()).to_string()
            }
        });
        self.lock().insert(
            tenant.to_string(),
            Cached {
                mount: cached.clone(),
                at: Instant::now(),
            },
        );
        cached.map_err(as_error)
    }

    async fn resolve_mount(&self, tenant: &str) -> Result<Option<Arc<PackageMount>>, Failure> {
        let list = self.store.tenant(tenant).list_packages().await?;
        if list.is_empty() {
            return Ok(None);
        }
        let digest = set_digest(
            list.iter()
                .map(|p| (p.name.as_str(), p.version.as_str(), p.sha256.as_str())),
        );
        let dir = self.tenant_dir(tenant).join(&digest);
        if dir.is_dir() {
            touch(&dir);
            return Ok(Some(Arc::new(PackageMount { dir, digest })));
        }
        self.unpack(tenant).await
    }

    /// Tenant ids may hold any characters; their directory is named by a hash.
    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join(&hex::encode(Sha256::digest(tenant.as_bytes()))[..24])
    }

    /// Unpack the tenant's wheels into a temporary directory, then rename it into place. The
    /// directory is named by the digest of the very rows unpacked (read in one query), so
    /// a change committed meanwhile cannot put one set's files under another set's name.
    async fn unpack(&self, tenant: &str) -> Result<Option<Arc<PackageMount>>, Failure> {
        let _one = self.unpacking.lock().await;
        let wheels = self.store.tenant(tenant).package_wheels().await?;
        if wheels.is_empty() {
            return Ok(None);
        }
        let digest = set_digest(
            wheels
                .iter()
                .map(|w| (w.name.as_str(), w.version.as_str(), w.sha256.as_str())),
        );
        let dir = self.tenant_dir(tenant).join(&digest);
        if !dir.is_dir() {
            let target = dir.clone();
            tokio::task::spawn_blocking(move || unpack_into(&wheels, &target))
                .await
                .map_err(Failure::internal)?
                .map_err(|e| unavailable(e.to_string()))?;
        }
        Ok(Some(Arc::new(PackageMount { dir, digest })))
    }
}

fn as_error(message: String) -> Failure {
    Failure::new(Fault::Unavailable, "packages_unavailable", message)
}

fn unavailable(message: String) -> Failure {
    Failure::new(
        Fault::Unavailable,
        "packages_unavailable",
        format!("the tenant's packages could not be prepared on this server: {message}"),
    )
}

/// Names a set of packages: the same set always gets the same directory.
fn set_digest<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (name, version, sha) in rows {
        h.update(format!("{name} {version} {sha}\n"));
    }
    hex::encode(h.finalize())[..16].to_string()
}

fn unpack_into(wheels: &[StoredWheel], dir: &Path) -> anyhow::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no parent for {}", dir.display()))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&tmp)?;
    let result = wheels
        .iter()
        .try_for_each(|w| {
            if hex::encode(Sha256::digest(&w.wheel)) != w.sha256 {
                anyhow::bail!("the stored wheel of {} does not match its sha256", w.name);
            }
            let clashes = wheel::extract(&w.wheel, &tmp).map_err(|e| anyhow::anyhow!("unpacking {}: {e}", w.name))?;
            if !clashes.is_empty() {
                tracing::warn!(package = %w.name, files = ?clashes, "files left out: another package of the set has them");
            }
            Ok(())
        })
        .and_then(|_| std::fs::rename(&tmp, dir).map_err(Into::into));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    sweep(parent, dir);
    Ok(())
}

/// Mark a set as in use now, so [`sweep`] leaves it alone.
fn touch(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Remove a tenant's older sets once nothing can still be starting on them (a running call
/// keeps its directory open, but may still import from it for a while).
fn sweep(parent: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let old = SystemTime::now() - Duration::from_secs(600);
    for e in entries.flatten() {
        let path = e.path();
        let stale = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < old);
        if path != keep && stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
