//! Tenancy: subtenants with their quotas, users' grants, and the audit trail. Admins only;
//! a change of quotas is forgotten by the engine's cache at once.

use serde_json::{json, Value};

use super::{Error, Result};
use crate::auth::Caller;
use crate::domain::Role;
use crate::engine::{Engine, Quotas};
use crate::store::{Audit, AuditEntry, Grant, Store, Subtenant};

#[derive(Clone)]
pub struct Tenancy {
    store: Store,
    engine: Engine,
}

/// A subtenant as the caller wrote it; on update, unset fields keep their value.
#[derive(Debug, Default)]
pub struct Draft {
    pub subtenant_id: Option<String>,
    pub description: Option<String>,
    pub quotas: Option<Value>,
}

/// A subtenant with what only its own page shows.
pub struct Detail {
    pub subtenant: Subtenant,
    pub members: usize,
    pub effective_quotas: Quotas,
}

impl Tenancy {
    pub fn new(store: Store, engine: Engine) -> Tenancy {
        Tenancy { store, engine }
    }

    pub async fn create(&self, caller: &Caller, draft: Draft) -> Result<Subtenant> {
        admin_only(caller)?;
        let id = draft
            .subtenant_id
            .ok_or_else(|| Error::malformed("subtenant_id", "required"))?;
        check_id(&id)?;
        let description = draft.description.unwrap_or_default();
        check_description(&description)?;
        let quotas = Quotas::parse(draft.quotas.as_ref()).map_err(Error::Malformed)?;
        let audit =
            |s: &Subtenant| Audit::new(&caller.email, "subtenant.create", format!("subtenant:{id}")).detail(json!(s));
        Ok(self
            .store
            .create_subtenant(&id, &description, &quotas, &caller.email, audit)
            .await?)
    }

    pub async fn list(&self, caller: &Caller, limit: i64, offset: i64) -> Result<(Vec<Subtenant>, i64)> {
        admin_only(caller)?;
        Ok(self.store.list_subtenants(limit, offset).await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Detail> {
        admin_only(caller)?;
        let subtenant = self.store.get_subtenant(id).await?;
        let members = self.store.members(id).await?.len();
        let effective_quotas = self.engine.quotas_of(id).await?;
        Ok(Detail {
            subtenant,
            members,
            effective_quotas,
        })
    }

    pub async fn update(&self, caller: &Caller, id: &str, draft: Draft) -> Result<Subtenant> {
        admin_only(caller)?;
        if draft.subtenant_id.as_deref().is_some_and(|s| s != id) {
            return Err(Error::malformed("subtenant_id", "a subtenant cannot be renamed"));
        }
        let current = self.store.get_subtenant(id).await?;
        let description = draft.description.unwrap_or(current.description);
        check_description(&description)?;
        let quotas = match &draft.quotas {
            Some(q) => Quotas::parse(Some(q)).map_err(Error::Malformed)?,
            None => current.quotas,
        };
        let audit =
            |s: &Subtenant| Audit::new(&caller.email, "subtenant.update", format!("subtenant:{id}")).detail(json!(s));
        let s = self.store.update_subtenant(id, &description, &quotas, audit).await?;
        self.engine.forget_quotas(id);
        Ok(s)
    }

    /// Delete a subtenant; `force` also removes everything it owns.
    pub async fn delete(&self, caller: &Caller, id: &str, force: bool) -> Result<()> {
        admin_only(caller)?;
        let audit =
            Audit::new(&caller.email, "subtenant.delete", format!("subtenant:{id}")).detail(json!({"force": force}));
        self.store.delete_subtenant(id, force, audit).await?;
        self.engine.forget_quotas(id);
        Ok(())
    }

    /// Give `email` a role (`member` unless said) in subtenant `id`.
    pub async fn grant(&self, caller: &Caller, id: &str, email: &str, role: Option<&str>) -> Result<Grant> {
        admin_only(caller)?;
        let email = check_email(email)?;
        let role = match role {
            None => Role::Member,
            Some(r) => r
                .parse()
                .ok()
                .filter(|r| Role::GRANTABLE.contains(r))
                .ok_or_else(|| Error::malformed("role", "must be one of member, viewer"))?,
        };
        let audit = |g: &Grant| Audit::new(&caller.email, "grant.create", format!("grant:{email}")).detail(json!(g));
        Ok(self.store.grant(id, &email, role, &caller.email, audit).await?)
    }

    pub async fn revoke(&self, caller: &Caller, id: &str, email: &str) -> Result<()> {
        admin_only(caller)?;
        let email = check_email(email)?;
        let audit = Audit::new(&caller.email, "grant.delete", format!("grant:{email}"));
        Ok(self.store.revoke(id, &email, audit).await?)
    }

    pub async fn members(&self, caller: &Caller, id: &str) -> Result<Vec<Grant>> {
        admin_only(caller)?;
        Ok(self.store.members(id).await?)
    }

    /// A page of the audit trail, newest first, of one tenant or all.
    pub async fn audit(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<AuditEntry>, i64)> {
        admin_only(caller)?;
        Ok(self.store.list_audit(tenant, limit, offset).await?)
    }

    /// The caller's grants and the quotas in force where they act.
    pub async fn me(&self, caller: &Caller) -> Result<(Vec<Grant>, Quotas)> {
        let grants = self.store.grants_of(&caller.email).await?;
        Ok((grants, self.engine.quotas_of(&caller.tenant).await?))
    }
}

fn admin_only(caller: &Caller) -> Result<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only admins manage subtenants and read the audit trail".into(),
        ))
    }
}

/// A subtenant id: a letter or digit, then letters, digits, `-` or `_`; at most 64.
fn check_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first || id.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::malformed(
            "subtenant_id",
            "1 to 64 letters, digits, `-` or `_`, starting with a letter or digit",
        ));
    }
    Ok(())
}

/// An email as stored: trimmed, lower-case, one `@` with a dotted domain.
fn check_email(email: &str) -> Result<String> {
    let e = email.trim().to_ascii_lowercase();
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && e.len() <= 254
                && e.chars().all(|c| c.is_ascii_graphic())
        }
        None => false,
    };
    if !ok {
        return Err(Error::malformed(
            "user_email",
            format!("{email:?} is not an email address"),
        ));
    }
    Ok(e)
}

fn check_description(d: &str) -> Result<()> {
    if d.len() > 4000 || d.contains('\0') {
        return Err(Error::malformed("description", "at most 4000 characters, no NUL bytes"));
    }
    Ok(())
}
