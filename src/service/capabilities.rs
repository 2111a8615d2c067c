//! What a tenant's functions may reach: secrets (sealed here, stored sealed, never shown)
//! and the egress policy (checked, stored, and forgotten by the egress cache at once).

use std::sync::Arc;

use serde_json::json;

use super::{Error, Result};
use crate::auth::Caller;
use crate::config::Settings;
use crate::domain::egress::Policy;
use crate::egress::Egress;
use crate::secrets::Vault;
use crate::store::{Audit, SecretInfo, Store};

/// Largest secret value.
const MAX_SECRET_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Capabilities {
    store: Store,
    vault: Arc<Vault>,
    egress: Arc<Egress>,
    settings: Arc<Settings>,
}

impl Capabilities {
    pub fn new(store: Store, vault: Arc<Vault>, egress: Arc<Egress>, settings: Arc<Settings>) -> Capabilities {
        Capabilities {
            store,
            vault,
            egress,
            settings,
        }
    }

    pub async fn secrets(&self, caller: &Caller) -> Result<Vec<SecretInfo>> {
        Ok(self.store.tenant(&caller.tenant).list_secrets().await?)
    }

    pub async fn secret(&self, caller: &Caller, name: &str) -> Result<SecretInfo> {
        check_name(name)?;
        Ok(self.store.tenant(&caller.tenant).secret_info(name).await?)
    }

    /// Seal and store a secret; answers it and whether it is new.
    pub async fn put_secret(&self, caller: &Caller, name: &str, value: &str) -> Result<(SecretInfo, bool)> {
        check_name(name)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(Error::malformed("value", format!("at most {MAX_SECRET_BYTES} bytes")));
        }
        let (nonce, sealed) = self.vault.seal(&caller.tenant, name, value)?;
        let audit = Audit::new(&caller.email, "secret.put", format!("secret:{name}"));
        let created = self
            .store
            .tenant(&caller.tenant)
            .put_secret(name, &nonce, &sealed, &caller.email, audit)
            .await?;
        Ok((self.store.tenant(&caller.tenant).secret_info(name).await?, created))
    }

    pub async fn delete_secret(&self, caller: &Caller, name: &str) -> Result<()> {
        check_name(name)?;
        let audit = Audit::new(&caller.email, "secret.delete", format!("secret:{name}"));
        Ok(self.store.tenant(&caller.tenant).delete_secret(name, audit).await?)
    }

    /// The tenant's policy (none stored: deny everything).
    pub async fn egress(&self, caller: &Caller) -> Result<Policy> {
        Ok(self
            .store
            .tenant(&caller.tenant)
            .egress_policy()
            .await?
            .unwrap_or_default())
    }

    pub async fn set_egress(&self, caller: &Caller, policy: Policy) -> Result<Policy> {
        policy.validate().map_err(|m| Error::malformed("allow", m))?;
        if policy.wants_private() && !self.settings.egress_allow_private {
            return Err(Error::Forbidden(
                "rules with allow_private are turned off on this server (EGRESS_ALLOW_PRIVATE=false)".into(),
            ));
        }
        let audit = Audit::new(&caller.email, "egress.update", "egress").detail(json!(policy));
        self.store
            .tenant(&caller.tenant)
            .set_egress_policy(&policy, &caller.email, audit)
            .await?;
        self.egress.changed(&caller.tenant);
        Ok(policy)
    }
}

fn check_name(name: &str) -> Result<()> {
    if crate::secrets::valid_name(name) {
        return Ok(());
    }
    Err(Error::malformed(
        "name",
        "a secret name is 1-128 letters, digits and `_`, not starting with a digit",
    ))
}
