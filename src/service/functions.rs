//! Functions: create, update, roll back and delete, with their rules (limits, schemas, code
//! that compiles, a tenant's maximum) and the warm instances each change retires.

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Error, Result};
use crate::auth::Caller;
use crate::config::Settings;
use crate::domain::{compile_schema, FunctionName, FunctionSettings, Isolation, OnInterrupt, ParseError};
use crate::engine::Engine;
use crate::store::{Audit, Function, FunctionVersion, Store, VersionContent, VersionSource};

/// A function as the caller wrote it; on update, unset fields keep their current value and
/// a schema set to `null` is removed.
#[derive(Debug, Default)]
pub struct Draft {
    pub name: Option<String>,
    pub description: Option<String>,
    pub code: Option<String>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    /// The settings: `None` keeps the current value, `Some(None)` goes back to the default.
    pub isolation: Option<Option<Isolation>>,
    pub timeout_seconds: Option<Option<f64>>,
    pub fuel: Option<Option<u64>>,
    pub memory_mb: Option<Option<u64>>,
    pub on_interrupt: Option<Option<OnInterrupt>>,
}

#[derive(Clone)]
pub struct Functions {
    store: Store,
    engine: Engine,
    settings: Arc<Settings>,
}

fn missing(field: &str) -> Error {
    Error::invalid_as(field, "required", format!("missing field `{field}`"))
}

impl Functions {
    pub fn new(store: Store, engine: Engine, settings: Arc<Settings>) -> Functions {
        Functions {
            store,
            engine,
            settings,
        }
    }

    pub async fn create(&self, caller: &Caller, draft: Draft) -> Result<Function> {
        let name = FunctionName::parse(draft.name.as_deref().ok_or_else(|| missing("name"))?)?;
        let tenant = &caller.tenant;
        if self.store.tenant(tenant).function_exists(name.as_str()).await? {
            return Err(Error::Conflict(format!("a function named {name} already exists")));
        }
        let quotas = self.engine.quotas_of(tenant).await?;
        if self.store.tenant(tenant).count_functions().await? >= quotas.max_functions {
            return Err(Error::Forbidden(format!(
                "tenant {tenant} already has its maximum of {} functions",
                quotas.max_functions
            )));
        }
        let version = self.build_version(caller, &name, draft, None).await?;
        let sha = version.code_sha256.clone();
        let audit = |v| {
            Audit::new(&caller.email, "function.create", format!("function:{name}"))
                .detail(json!({"version": v, "code_sha256": sha}))
        };
        Ok(self
            .store
            .tenant(tenant)
            .create_function(name.as_str(), &version, audit)
            .await?)
    }

    pub async fn list(&self, caller: &Caller, limit: i64, offset: i64) -> Result<(Vec<Function>, i64)> {
        Ok(self.store.tenant(&caller.tenant).list_functions(limit, offset).await?)
    }

    pub async fn get(&self, caller: &Caller, name: &str) -> Result<Function> {
        Ok(self.store.tenant(&caller.tenant).get_function(name).await?)
    }

    /// A new version from `draft` over the current one; the function's warm instances are
    /// retired so the next call runs the new code.
    pub async fn update(&self, caller: &Caller, name: &str, draft: Draft) -> Result<Function> {
        let current = self.store.tenant(&caller.tenant).get_function(name).await?;
        if draft.name.as_deref().is_some_and(|n| n != name) {
            let e = ParseError::new("name", "must match the path").summarized("a function cannot be renamed");
            return Err(e.into());
        }
        let fname = FunctionName::parse(name)?;
        let version = self.build_version(caller, &fname, draft, Some(&current)).await?;
        let sha = version.code_sha256.clone();
        let audit = |v| {
            Audit::new(&caller.email, "function.update", format!("function:{name}"))
                .detail(json!({"version": v, "code_sha256": sha}))
        };
        let f = self
            .store
            .tenant(&caller.tenant)
            .add_version(name, VersionSource::New(&version), audit)
            .await?;
        self.engine.sandbox().recycle_function(&caller.tenant, name);
        Ok(f)
    }

    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<()> {
        let audit = Audit::new(&caller.email, "function.delete", format!("function:{name}"));
        self.store.tenant(&caller.tenant).delete_function(name, audit).await?;
        self.engine.sandbox().recycle_function(&caller.tenant, name);
        Ok(())
    }

    /// Every version, and the number of the current one.
    pub async fn versions(&self, caller: &Caller, name: &str) -> Result<(i64, Vec<FunctionVersion>)> {
        let versions = self.store.tenant(&caller.tenant).list_versions(name).await?;
        let f = self.store.tenant(&caller.tenant).get_function(name).await?;
        Ok((f.current.version, versions))
    }

    /// A new version that copies `version`'s content.
    pub async fn rollback(&self, caller: &Caller, name: &str, version: i64) -> Result<Function> {
        let source = VersionSource::Rollback {
            version,
            by: &caller.email,
        };
        let audit = |new| {
            Audit::new(&caller.email, "function.rollback", format!("function:{name}"))
                .detail(json!({"to_version": version, "new_version": new}))
        };
        let f = self
            .store
            .tenant(&caller.tenant)
            .add_version(name, source, audit)
            .await?;
        self.engine.sandbox().recycle_function(&caller.tenant, name);
        Ok(f)
    }

    /// Check limits, schemas and code; build the version to store. `base` is the current
    /// version on update.
    async fn build_version(
        &self,
        caller: &Caller,
        name: &FunctionName,
        draft: Draft,
        base: Option<&Function>,
    ) -> Result<VersionContent> {
        let cfg = &self.settings;
        let cur = base.map(|f| &f.current.content);
        let code = draft
            .code
            .or_else(|| cur.map(|c| c.code.clone()))
            .ok_or_else(|| missing("code"))?;
        check_code_size(cfg, &code)?;
        let keep = |new: Option<Value>, old: Option<&Option<Value>>| match new {
            Some(Value::Null) => None,
            Some(v) => Some(v),
            None => old.cloned().flatten(),
        };
        let input_schema = keep(draft.input_schema, cur.map(|c| &c.input_schema));
        let output_schema = keep(draft.output_schema, cur.map(|c| &c.output_schema));
        for (field, schema) in [("input_schema", &input_schema), ("output_schema", &output_schema)] {
            if let Some(s) = schema {
                compile_schema(field, s)?;
            }
        }
        let old = cur.map(|c| c.settings.clone()).unwrap_or_default();
        let settings = FunctionSettings {
            isolation: draft.isolation.unwrap_or(old.isolation),
            timeout_seconds: draft.timeout_seconds.unwrap_or(old.timeout_seconds),
            fuel: draft.fuel.unwrap_or(old.fuel),
            memory_mb: draft.memory_mb.unwrap_or(old.memory_mb),
            on_interrupt: draft.on_interrupt.unwrap_or(old.on_interrupt),
        };
        check_settings(cfg, &self.engine, &settings)?;
        if draft.description.as_deref().is_some_and(|d| d.contains('\0')) {
            return Err(Error::invalid_as(
                "description",
                "contains a NUL byte",
                "description contains a NUL byte",
            ));
        }
        if cur.is_none_or(|c| c.code != code) {
            self.engine.check_code(name.as_str(), &code).await?;
        }
        Ok(VersionContent {
            description: draft
                .description
                .or_else(|| cur.map(|c| c.description.clone()))
                .unwrap_or_default(),
            code_sha256: hex::encode(Sha256::digest(code.as_bytes())),
            code,
            input_schema,
            output_schema,
            settings,
            note: None,
            created_by: caller.email.clone(),
        })
    }
}

/// Code within `MAX_CODE_BYTES`.
pub(super) fn check_code_size(cfg: &Settings, code: &str) -> Result<()> {
    if code.len() > cfg.max_code_bytes {
        return Err(Error::TooLarge(format!(
            "code is {} bytes; the limit is {}",
            code.len(),
            cfg.max_code_bytes
        )));
    }
    Ok(())
}

/// Limits within the server's maxima (a function's settings, or a code run's).
pub(super) fn check_settings(cfg: &Settings, engine: &Engine, s: &FunctionSettings) -> Result<()> {
    let mut problems = vec![];
    if let Some(t) = s.timeout_seconds {
        if !(t > 0.0 && t <= cfg.max_function_timeout) {
            let message = format!("must be > 0 and <= {}", cfg.max_function_timeout);
            problems.push(json!({"field": "timeout_seconds", "message": message}));
        }
    }
    if let Some(f) = s.fuel {
        if f == 0 || f > cfg.max_function_fuel {
            let message = format!("must be between 1 and {}", cfg.max_function_fuel);
            problems.push(json!({"field": "fuel", "message": message}));
        }
    }
    if let Some(m) = s.memory_mb {
        let floor = engine.sandbox().initial_memory().div_ceil(1 << 20) + 16;
        if m < floor || m > cfg.max_function_memory_mb {
            let message = format!("must be between {floor} and {}", cfg.max_function_memory_mb);
            problems.push(json!({"field": "memory_mb", "message": message}));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let e = ParseError::new("settings", "out of range")
        .summarized("invalid function settings")
        .with_details(json!(problems));
    Err(e.into())
}
