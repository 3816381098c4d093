//! The audit log: who changed what through the API. Append-only.
//!
//! `detail` is a JSON document, stored as text on both backends (the same column type
//! everywhere; nothing queries inside it). Never put a secret in it: a token's id, not the token.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::{Store, from_ms, on_pool, to_ms};

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Increases with every entry: the order entries were written.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who did it: a token's subject.
    pub actor: String,
    /// What was done, e.g. `agent.create`, `group.members.set`, `token.revoke`.
    pub action: String,
    /// What it was done to, e.g. an agent's URI or a group's name.
    pub target: String,
    pub detail: serde_json::Value,
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        let detail = serde_json::from_str(&row.detail).map_err(|_| StoreError::Corrupt {
            column: "audit_log.detail",
            value: row.detail.clone(),
        })?;
        Ok(AuditEntry {
            id: row.id,
            at: from_ms(row.at, "audit_log.at")?,
            actor: row.actor,
            action: row.action,
            target: row.target,
            detail,
        })
    }
}

impl Store {
    /// Appends an entry, stamped with the store clock's "now".
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => sqlx::query(
            "insert into audit_log (at, actor, action, target, detail) values ($1, $2, $3, $4, $5)",
        )
        .bind(now)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(on(Entity::AuditEntry))
    }

    /// Up to `limit` entries at or after `since`, oldest first (in write order). To page, call
    /// again with the last entry's `at` and skip the ids already seen.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn list_audit(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "select id, at, actor, action, target, detail
             from audit_log where at >= $1
             order by id
             limit $2",
        )
        .bind(to_ms(since))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(on(Entity::AuditEntry))?;
        rows.into_iter().map(AuditEntry::try_from).collect()
    }
}
