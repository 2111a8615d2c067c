//! Webhooks: their rules (a path, one target, a method, a signing secret strong enough) and
//! their writes. Paths are one namespace across tenants; the store refuses a taken one.

use serde_json::json;

use super::{Error, Result};
use crate::auth::Caller;
use crate::domain::{webhook_method, webhook_path, Target};
use crate::store::{Audit, Store, Webhook, WebhookFields};

/// A webhook as the caller wrote it; on update, unset fields keep their value.
#[derive(Debug, Default)]
pub struct Draft {
    pub path: Option<String>,
    pub function_name: Option<String>,
    pub workflow_name: Option<String>,
    pub http_method: Option<String>,
    pub requires_auth: Option<bool>,
    pub require_timestamp: Option<bool>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub async_mode: Option<bool>,
    pub input_mode: Option<String>,
    /// `Some(None)` falls back to the server's default.
    pub max_concurrency: Option<Option<i64>>,
    pub secret: Option<String>,
}

#[derive(Clone)]
pub struct Webhooks {
    store: Store,
}

impl Webhooks {
    pub fn new(store: Store) -> Webhooks {
        Webhooks { store }
    }

    /// A new webhook; its secret is the one given or a generated one.
    pub async fn create(&self, caller: &Caller, draft: Draft) -> Result<Webhook> {
        let fields = fields_from(&draft, None)?;
        let secret = match draft.secret {
            Some(s) => checked_secret(s)?,
            None => new_secret(),
        };
        let audit =
            |w: &Webhook| Audit::new(&caller.email, "webhook.create", format!("webhook:{}", w.id)).detail(json!(w));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .create_webhook(&fields, &secret, &caller.email, audit)
            .await?)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        function: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Webhook>, i64)> {
        Ok(self
            .store
            .tenant(&caller.tenant)
            .list_webhooks(function, limit, offset)
            .await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Webhook> {
        Ok(self.store.tenant(&caller.tenant).get_webhook(id).await?)
    }

    /// `draft` over the current settings; the secret changes only by `rotate_secret`.
    pub async fn update(&self, caller: &Caller, id: &str, draft: Draft) -> Result<Webhook> {
        if draft.secret.is_some() {
            return Err(Error::invalid(
                "secret",
                "change it with POST /api/v1/webhooks/{id}/rotate-secret",
            ));
        }
        let current = self.store.tenant(&caller.tenant).get_webhook(id).await?;
        let fields = fields_from(&draft, Some(&current.fields))?;
        let audit = |w: &Webhook| Audit::new(&caller.email, "webhook.update", format!("webhook:{id}")).detail(json!(w));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .update_webhook(id, &fields, audit)
            .await?)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        let audit = Audit::new(&caller.email, "webhook.delete", format!("webhook:{id}"));
        Ok(self.store.tenant(&caller.tenant).delete_webhook(id, audit).await?)
    }

    /// A new signing secret: the one given, or a generated one.
    pub async fn rotate_secret(&self, caller: &Caller, id: &str, secret: Option<String>) -> Result<Webhook> {
        let secret = match secret {
            Some(s) => checked_secret(s)?,
            None => new_secret(),
        };
        let audit = Audit::new(&caller.email, "webhook.rotate_secret", format!("webhook:{id}"));
        Ok(self
            .store
            .tenant(&caller.tenant)
            .set_webhook_secret(id, &secret, audit)
            .await?)
    }
}

/// Merge `draft` over `base` (or the defaults) and check every field.
fn fields_from(draft: &Draft, base: Option<&WebhookFields>) -> Result<WebhookFields> {
    let path = match (&draft.path, base) {
        (Some(p), _) => webhook_path(p).map_err(|m| Error::invalid("path", m))?,
        (None, Some(b)) => b.path.clone(),
        (None, None) => return Err(Error::invalid("path", "required")),
    };
    let target = Target::from_body(
        draft.function_name.as_deref(),
        draft.workflow_name.as_deref(),
        base.map(|b| &b.target),
    )
    .map_err(|(field, m)| Error::invalid(field, m))?;
    let http_method = match (&draft.http_method, base) {
        (Some(m), _) => webhook_method(m).map_err(|m| Error::invalid("http_method", m))?,
        (None, Some(b)) => b.http_method.clone(),
        (None, None) => "POST".to_string(),
    };
    let input_mode = draft
        .input_mode
        .clone()
        .or_else(|| base.map(|b| b.input_mode.clone()))
        .unwrap_or_else(|| "request".into());
    if input_mode != "request" && input_mode != "body" {
        return Err(Error::invalid(
            "input_mode",
            "must be `request` (the whole request) or `body`",
        ));
    }
    let description = draft
        .description
        .clone()
        .or_else(|| base.map(|b| b.description.clone()))
        .unwrap_or_default();
    if description.len() > 4000 || description.contains('\0') {
        return Err(Error::invalid("description", "at most 4000 characters, no NUL bytes"));
    }
    let max_concurrency = match draft.max_concurrency {
        Some(n) => n,
        None => base.and_then(|b| b.max_concurrency),
    };
    if max_concurrency.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(Error::invalid("max_concurrency", "must be between 1 and 10000"));
    }
    let flag = |v: Option<bool>, old: Option<bool>, default: bool| v.or(old).unwrap_or(default);
    Ok(WebhookFields {
        path,
        target,
        http_method,
        requires_auth: flag(draft.requires_auth, base.map(|b| b.requires_auth), false),
        require_timestamp: flag(draft.require_timestamp, base.map(|b| b.require_timestamp), false),
        description,
        enabled: flag(draft.enabled, base.map(|b| b.enabled), true),
        async_mode: flag(draft.async_mode, base.map(|b| b.async_mode), false),
        input_mode,
        max_concurrency,
    })
}

/// A caller-chosen secret must be long enough to resist guessing.
fn checked_secret(secret: String) -> Result<String> {
    if secret.len() < 16 || secret.len() > 256 || !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid("secret", "16 to 256 printable ASCII characters"));
    }
    Ok(secret)
}

fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()))
}
