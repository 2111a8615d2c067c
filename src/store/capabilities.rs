//! Secrets (stored encrypted; this layer never sees a plaintext) and egress policies.

use serde::Serialize;
use sqlx::Row as _;

use super::{now_ms, Audit, StoreError, StoreResult, Tenant};
use crate::domain::egress::Policy;

/// A secret as the API shows it: never its value.
#[derive(Debug, Clone, Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub created_by: String,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::domain::time::iso_ms")]
    pub updated_at: i64,
}

fn info_from(r: &super::Row) -> Result<SecretInfo, sqlx::Error> {
    Ok(SecretInfo {
        name: r.try_get("name")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Tenant<'_> {
    /// Create or replace a secret; answers whether it was new.
    pub async fn put_secret(
        &self,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
        by: &str,
        audit: Audit,
    ) -> StoreResult<bool> {
        let tenant = self.id;
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let updated = sqlx::query(
            "update secrets set nonce = $3, ciphertext = $4, updated_at = $5 where tenant = $1 and name = $2",
        )
        .bind(tenant)
        .bind(name)
        .bind(nonce)
        .bind(ciphertext)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "insert into secrets (tenant, name, nonce, ciphertext, created_by, created_at, updated_at) \
                 values ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(tenant)
            .bind(name)
            .bind(nonce)
            .bind(ciphertext)
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| super::conflict_on_unique(e, || format!("secret {name} was created concurrently")))?;
        }
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(updated == 0)
    }

    pub async fn list_secrets(&self) -> StoreResult<Vec<SecretInfo>> {
        let tenant = self.id;
        let rows =
            sqlx::query("select name, created_by, created_at, updated_at from secrets where tenant = $1 order by name")
                .bind(tenant)
                .fetch_all(&self.store.pool)
                .await?;
        Ok(rows.iter().map(info_from).collect::<Result<_, _>>()?)
    }

    pub async fn secret_info(&self, name: &str) -> StoreResult<SecretInfo> {
        let tenant = self.id;
        sqlx::query("select name, created_by, created_at, updated_at from secrets where tenant = $1 and name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.store.pool)
            .await?
            .map(|r| info_from(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("secret {name} not found")))
    }

    /// The sealed value: (nonce, ciphertext).
    pub async fn sealed_secret(&self, name: &str) -> StoreResult<Option<(Vec<u8>, Vec<u8>)>> {
        let tenant = self.id;
        let row = sqlx::query("select nonce, ciphertext from secrets where tenant = $1 and name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.store.pool)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("nonce")?, r.try_get("ciphertext")?)),
            None => None,
        })
    }

    pub async fn delete_secret(&self, name: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let mut tx = self.store.begin().await?;
        let done = sqlx::query("delete from secrets where tenant = $1 and name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("secret {name} not found")));
        }
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn egress_policy(&self) -> StoreResult<Option<Policy>> {
        let tenant = self.id;
        let row = sqlx::query("select policy from egress_policies where tenant = $1")
            .bind(tenant)
            .fetch_optional(&self.store.pool)
            .await?;
        Ok(match row {
            Some(r) => super::json_col(&r, "policy")?,
            None => None,
        })
    }

    pub async fn set_egress_policy(&self, policy: &Policy, by: &str, audit: Audit) -> StoreResult<()> {
        let tenant = self.id;
        let text = serde_json::to_string(policy).unwrap_or_else(|_| "{}".into());
        let mut tx = self.store.begin().await?;
        sqlx::query("delete from egress_policies where tenant = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        sqlx::query("insert into egress_policies (tenant, policy, updated_by, updated_at) values ($1, $2, $3, $4)")
            .bind(tenant)
            .bind(text)
            .bind(by)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| super::conflict_on_unique(e, || "the policy was changed concurrently; retry".into()))?;
        audit.write(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }
}
