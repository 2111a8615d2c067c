//! A tenant's installed packages (with their wheels) and the jobs that install them.
//!
//! An install adds all its wheels in one transaction, so a tenant never has half of a
//! dependency tree; uninstalling checks for dependents in the same transaction as the delete.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::{
    conflict_on_unique, json_col, json_req, now_ms, text_col, Audit, Row, Store, StoreError, StoreResult, Tenant,
};
use crate::domain::JobStatus;

/// An installed package as listed (the wheel bytes are fetched separately).
#[derive(Debug, Clone, Serialize)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub unpacked_bytes: i64,
    pub requires: Vec<String>,
    pub source: String,
    pub dependency_of: Option<String>,
    pub installed_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub installed_at: i64,
}

/// A package to add, with its wheel.
pub struct NewPackage {
    pub package: InstalledPackage,
    pub wheel: Vec<u8>,
}

/// A stored wheel with what names it.
pub struct StoredWheel {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub wheel: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageJob {
    pub id: String,
    pub requirement: String,
    pub status: JobStatus,
    pub error: Option<Value>,
    pub result: Option<Value>,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms_opt")]
    pub finished_at: Option<i64>,
}

const COLS: &str = "name, version, filename, sha256, size_bytes, unpacked_bytes, requires, source, dependency_of, \
                    installed_by, installed_at";

fn package_from(r: &Row) -> Result<InstalledPackage, sqlx::Error> {
    Ok(InstalledPackage {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        filename: r.try_get("filename")?,
        sha256: r.try_get("sha256")?,
        size_bytes: r.try_get("size_bytes")?,
        unpacked_bytes: r.try_get("unpacked_bytes")?,
        requires: json_req(r, "requires")?,
        source: r.try_get("source")?,
        dependency_of: r.try_get("dependency_of")?,
        installed_by: r.try_get("installed_by")?,
        installed_at: r.try_get("installed_at")?,
    })
}

fn job_from(r: &Row) -> Result<PackageJob, sqlx::Error> {
    Ok(PackageJob {
        id: r.try_get("id")?,
        requirement: r.try_get("requirement")?,
        status: text_col(r, "status")?,
        error: json_col(r, "error")?,
        result: json_col(r, "result")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

impl Store {
    pub async fn finish_package_job(&self, id: &str, result: Result<&Value, &Value>) -> StoreResult<()> {
        let (status, result, error) = match result {
            Ok(r) => (JobStatus::Succeeded, Some(r.to_string()), None),
            Err(e) => (JobStatus::Failed, None, Some(e.to_string())),
        };
        sqlx::query("update package_jobs set status = $2, result = $3, error = $4, finished_at = $5 where id = $1")
            .bind(id)
            .bind(status.as_str())
            .bind(result)
            .bind(error)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Tenant<'_> {
    pub async fn list_packages(&self) -> StoreResult<Vec<InstalledPackage>> {
        let tenant = self.id;
        let rows = sqlx::query(&format!("select {COLS} from packages where tenant = $1 order by name"))
            .bind(tenant)
            .fetch_all(&self.store.pool)
            .await?;
        Ok(rows.iter().map(package_from).collect::<Result<_, _>>()?)
    }

    /// The wheels of a tenant's packages, by name, for unpacking.
    pub async fn package_wheels(&self) -> StoreResult<Vec<StoredWheel>> {
        let tenant = self.id;
        let rows = sqlx::query("select name, version, sha256, wheel from packages where tenant = $1 order by name")
            .bind(tenant)
            .fetch_all(&self.store.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(StoredWheel {
                name: r.try_get("name")?,
                version: r.try_get("version")?,
                sha256: r.try_get("sha256")?,
                wheel: r.try_get("wheel")?,
            });
        }
        Ok(out)
    }

    /// Add packages in one transaction; any name already installed fails the whole set
    /// unless `replace`, which swaps the old row for the new one in the same transaction.
    pub async fn add_packages(
        &self,
        packages: &[NewPackage],
        max_total: i64,
        replace: bool,
        audit: Option<Audit>,
    ) -> StoreResult<()> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        for p in packages {
            let m = &p.package;
            if replace {
                sqlx::query("delete from packages where tenant = $1 and name = $2")
                    .bind(tenant)
                    .bind(&m.name)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "insert into packages (tenant, name, version, filename, sha256, size_bytes, unpacked_bytes, requires, \
                 source, dependency_of, installed_by, installed_at, wheel) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(tenant)
            .bind(&m.name)
            .bind(&m.version)
            .bind(&m.filename)
            .bind(&m.sha256)
            .bind(m.size_bytes)
            .bind(m.unpacked_bytes)
            .bind(serde_json::to_string(&m.requires).unwrap_or_else(|_| "[]".into()))
            .bind(&m.source)
            .bind(m.dependency_of.as_deref())
            .bind(&m.installed_by)
            .bind(m.installed_at)
            .bind(p.wheel.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("{} is already installed", m.name)))?;
        }
        let total: i64 =
            sqlx::query("select cast(coalesce(sum(size_bytes), 0) as bigint) as n from packages where tenant = $1")
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if total > max_total {
            return Err(StoreError::Invalid {
                field: "quota",
                message: format!(
                    "the tenant's packages would take {total} bytes; the limit is {max_total} bytes \
                     (uninstall something first)"
                ),
            });
        }
        if let Some(audit) = audit {
            audit.write(&mut tx, tenant).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remove a package. While another installed package depends on it this is refused
    /// (naming them) unless `force`.
    pub async fn remove_package(
        &self,
        name: &str,
        force: bool,
        audit: impl FnOnce(&InstalledPackage) -> Audit,
    ) -> StoreResult<InstalledPackage> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let rows = sqlx::query(&format!("select {COLS} from packages where tenant = $1"))
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await?;
        let all = rows.iter().map(package_from).collect::<Result<Vec<_>, _>>()?;
        let Some(target) = all.iter().find(|p| p.name == name).cloned() else {
            return Err(StoreError::NotFound(format!("package {name} is not installed")));
        };
        let dependents: Vec<&str> = all
            .iter()
            .filter(|p| p.name != name && p.requires.iter().any(|r| r == name))
            .map(|p| p.name.as_str())
            .collect();
        if !dependents.is_empty() && !force {
            return Err(StoreError::Conflict(format!(
                "{name} is needed by {}; uninstall that first or pass ?force=true",
                dependents.join(", ")
            )));
        }
        sqlx::query("delete from packages where tenant = $1 and name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        audit(&target).write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(target)
    }

    /// Jobs of the tenant still running that started after `since`.
    pub async fn running_package_jobs(&self, since: i64) -> StoreResult<i64> {
        let tenant = self.id;
        Ok(sqlx::query(
            "select count(*) as n from package_jobs where tenant = $1 and status = 'running' and created_at > $2",
        )
        .bind(tenant)
        .bind(since)
        .fetch_one(&self.store.pool)
        .await?
        .try_get("n")?)
    }

    pub async fn create_package_job(&self, id: &str, requirement: &str, by: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "insert into package_jobs (id, tenant, requirement, status, created_by, created_at) \
             values ($1, $2, $3, 'running', $4, $5)",
        )
        .bind(id)
        .bind(tenant)
        .bind(requirement)
        .bind(by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_package_job(&self, id: &str) -> StoreResult<PackageJob> {
        let tenant = self.id;
        sqlx::query("select * from package_jobs where tenant = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.store.pool)
            .await?
            .map(|r| job_from(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("install {id} not found")))
    }

    pub async fn list_package_jobs(&self, limit: i64) -> StoreResult<Vec<PackageJob>> {
        let tenant = self.id;
        let rows = sqlx::query("select * from package_jobs where tenant = $1 order by created_at desc limit $2")
            .bind(tenant)
            .bind(limit)
            .fetch_all(&self.store.pool)
            .await?;
        Ok(rows.iter().map(job_from).collect::<Result<_, _>>()?)
    }
}
