//! Packages: the runtime's built-ins and the tenant's own. Installing, uploading and
//! removing are the package manager's (it holds the per-tenant lock and writes the audit
//! row with the change); this service adds the request's rules and the read views.

use std::sync::Arc;

use serde_json::json;

use super::{Error, Result};
use crate::auth::Caller;
use crate::domain::JobStatus;
use crate::packages::wheel::canonical_name;
use crate::packages::{Builtin, Packages as Manager, Started};
use crate::store::{now_ms, Audit, InstalledPackage, PackageJob, Store};

#[derive(Clone)]
pub struct Packages {
    store: Store,
    manager: Arc<Manager>,
}

/// One package by name: built in, or installed with the installed ones that need it.
pub enum Found {
    Builtin(Builtin),
    Installed {
        package: InstalledPackage,
        needed_by: Vec<String>,
    },
}

impl Packages {
    pub fn new(store: Store, manager: Arc<Manager>) -> Packages {
        Packages { store, manager }
    }

    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// The tenant's installed packages.
    pub async fn installed(&self, caller: &Caller) -> Result<Vec<InstalledPackage>> {
        Ok(self.store.tenant(&caller.tenant).list_packages().await?)
    }

    pub async fn find(&self, caller: &Caller, name: &str) -> Result<Found> {
        let name = canonical_name(name);
        if let Some(b) = self.manager.builtin().get(&name) {
            return Ok(Found::Builtin(b.clone()));
        }
        let installed = self.store.tenant(&caller.tenant).list_packages().await?;
        let needed_by = installed
            .iter()
            .filter(|o| o.requires.contains(&name))
            .map(|o| o.name.clone())
            .collect();
        let package = installed
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::NotFound(format!("package {name} is neither built in nor installed")))?;
        Ok(Found::Installed { package, needed_by })
    }

    /// Start installing `name` (at `version`, a version or a specifier) with pip.
    pub async fn install(&self, caller: &Caller, name: &str, version: Option<&str>) -> Result<Started> {
        self.manager.check_allowed()?;
        // Parsed here too, so a bad name or version answers with the field at fault.
        crate::packages::requirement(name, version).map_err(Error::Malformed)?;
        let audit = Audit::new(
            &caller.email,
            "package.install",
            format!("package:{}", canonical_name(name)),
        );
        Ok(self
            .manager
            .install(&caller.tenant, &caller.email, name, version, audit)
            .await?)
    }

    /// Store an uploaded wheel (`replace`: over the same name and version).
    pub async fn upload(
        &self,
        caller: &Caller,
        filename: &str,
        bytes: Vec<u8>,
        replace: bool,
    ) -> Result<serde_json::Value> {
        let audit = Audit::new(&caller.email, "package.upload", format!("package:{filename}"));
        Ok(self
            .manager
            .upload(&caller.tenant, &caller.email, filename, bytes, replace, audit)
            .await?)
    }

    /// Remove a package (`force`: even while others need it).
    pub async fn uninstall(&self, caller: &Caller, name: &str, force: bool) -> Result<InstalledPackage> {
        let audit = |p: &InstalledPackage| {
            Audit::new(&caller.email, "package.uninstall", format!("package:{}", p.name))
                .detail(json!({"version": p.version, "force": force}))
        };
        Ok(self.manager.uninstall(&caller.tenant, name, force, audit).await?)
    }

    pub async fn job(&self, caller: &Caller, id: &str) -> Result<PackageJob> {
        let job = self.store.tenant(&caller.tenant).get_package_job(id).await?;
        Ok(self.settled(job))
    }

    /// The tenant's last `limit` installs, newest first.
    pub async fn jobs(&self, caller: &Caller, limit: i64) -> Result<Vec<PackageJob>> {
        let jobs = self.store.tenant(&caller.tenant).list_package_jobs(limit).await?;
        Ok(jobs.into_iter().map(|j| self.settled(j)).collect())
    }

    /// A job still `running` long after any install could have ended belonged to a server
    /// that stopped; show it as failed rather than forever running.
    fn settled(&self, mut job: PackageJob) -> PackageJob {
        let limit = self.manager.stale_after().as_millis() as i64;
        if job.status == JobStatus::Running && now_ms() - job.created_at > limit {
            job.status = JobStatus::Failed;
            job.error = Some(json!({"code": "interrupted", "message": "the server running this install stopped"}));
        }
        job
    }
}
