//! The audit trail's rows, written inside the transaction of the change they record: a change
//! that commits has its row, one that fails has none.

use serde_json::Value;
use sqlx::AnyConnection;

use super::now_ms;

/// Who changed what, for the audit trail. The store writes it with the change.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub detail: Option<Value>,
}

impl Audit {
    pub fn new(actor: &str, action: &'static str, target: impl Into<String>) -> Audit {
        Audit {
            actor: actor.to_string(),
            action,
            target: target.into(),
            detail: None,
        }
    }

    pub fn detail(mut self, detail: Value) -> Audit {
        self.detail = Some(detail);
        self
    }

    /// Insert the row for `tenant` on `conn` (the change's transaction).
    pub(super) async fn write(&self, conn: &mut AnyConnection, tenant: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into audit_log (id, tenant, actor, action, target, detail, at) values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant)
        .bind(&self.actor)
        .bind(self.action)
        .bind(&self.target)
        .bind(self.detail.as_ref().map(Value::to_string))
        .bind(now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }
}
