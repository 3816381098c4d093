//! Response-group objects owned by the database (created through the API): one row per object,
//! its body the object's TOML table as JSON text, its version the ETag.
//!
//! The store does not check bodies: the caller compiles the merged model first
//! (`config::merge`) and writes only what compiled. Every change is a compare-and-set on the
//! version when the caller gives one (`If-Match`), so two writers cannot overwrite each other
//! unseen.
//!
//! # Several processes on one PostgreSQL database
//!
//! Every change also sends `NOTIFY rgsd_config` ([`CONFIG_CHANNEL`]) in the transaction that
//! makes it, so the notification is delivered when, and only when, the change commits.
//! [`Store::listen_config`] gives a daemon the other side; [`Store::object_versions`] is the
//! cheap fingerprint a daemon compares with the model in force, to catch a notification it
//! missed. SQLite is one process's file: nothing is sent there.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::postgres::PgListener;

use super::error::{Entity, StoreError, on};
use super::{Backend, BeginWrite, Store, from_ms, on_pool};
use crate::config::merge::{DbObject, ObjectKind};

/// A stored object with who made and last changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub object: DbObject,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// The outcome of a versioned change.
#[derive(Debug, Clone, PartialEq)]
pub enum Versioned<T> {
    Done(T),
    /// The object's version is not the one expected; nothing was changed.
    Stale {
        current: i64,
    },
}

/// The PostgreSQL channel every committed change to `config_object` is notified on; the payload
/// is the object's kind (`workflow`), for the logs.
pub const CONFIG_CHANNEL: &str = "rgsd_config";

/// Each stored object's version, by kind and name: what [`Store::object_versions`] returns.
pub(crate) type ObjectVersions = BTreeMap<(ObjectKind, String), i64>;

/// Sends the change notification inside the transaction `$tx`, on PostgreSQL only. The text
/// compiles for both backends (`on_pool!`) but runs on PostgreSQL only.
macro_rules! notify_change {
    ($store:expr, $tx:expr, $kind:expr) => {
        if matches!($store.backend, Backend::Postgres(_)) {
            sqlx::query("select pg_notify($1, $2)")
                .bind(CONFIG_CHANNEL)
                .bind($kind.table())
                .execute(&mut *$tx)
                .await
                .map_err(on(Entity::ConfigObject))?;
        }
    };
}

#[derive(FromRow)]
struct ObjectRow {
    kind: String,
    name: String,
    body: String,
    version: i64,
    created_by: String,
    created_at: i64,
    updated_by: String,
    updated_at: i64,
}

impl TryFrom<ObjectRow> for StoredObject {
    type Error = StoreError;
    fn try_from(row: ObjectRow) -> Result<Self, StoreError> {
        let kind = ObjectKind::from_table(&row.kind).ok_or_else(|| StoreError::Corrupt {
            column: "config_object.kind",
            value: row.kind.clone(),
        })?;
        let body = serde_json::from_str(&row.body).map_err(|_| StoreError::Corrupt {
            column: "config_object.body",
            value: row.body.clone(),
        })?;
        Ok(StoredObject {
            object: DbObject {
                kind,
                name: row.name,
                body,
                version: row.version,
            },
            created_by: row.created_by,
            created_at: from_ms(row.created_at, "config_object.created_at")?,
            updated_by: row.updated_by,
            updated_at: from_ms(row.updated_at, "config_object.updated_at")?,
        })
    }
}

impl Store {
    /// Every stored object, by kind then name.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn list_objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ObjectRow>(
            "select kind, name, body, version, created_by, created_at, updated_by, updated_at
             from config_object order by kind, name",
        )
            .fetch_all(pool)
            .await)
        .map_err(on(Entity::ConfigObject))?;
        let mut out: Vec<StoredObject> = rows
            .into_iter()
            .map(StoredObject::try_from)
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (a.object.kind, &a.object.name).cmp(&(b.object.kind, &b.object.name)));
        Ok(out)
    }

    /// One object.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn get_object(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<StoredObject, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, ObjectRow>(
            "select kind, name, body, version, created_by, created_at, updated_by, updated_at
             from config_object where kind = $1 and name = $2",
        )
            .bind(kind.table())
            .bind(name)
            .fetch_optional(pool)
            .await)
        .map_err(on(Entity::ConfigObject))?
        .ok_or(StoreError::NotFound(Entity::ConfigObject))?;
        row.try_into()
    }

    /// Stores a new object at version 1.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when an object of that kind and name exists.
    pub async fn create_object(
        &self,
        kind: ObjectKind,
        name: &str,
        body: &serde_json::Value,
        actor: &str,
    ) -> Result<StoredObject, StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "insert into config_object (kind, name, body, version, created_by, created_at, updated_by, updated_at)
                 values ($1, $2, $3, 1, $4, $5, $4, $5)",
            )
            .bind(kind.table())
            .bind(name)
            .bind(body.to_string())
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(on(Entity::ConfigObject))?;
            notify_change!(self, tx, kind);
            tx.commit().await.map_err(on(Entity::ConfigObject))?;
        });
        self.get_object(kind, name).await
    }

    /// Replaces an object's body and bumps its version, if its version is `expected` (any
    /// version when `None`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn replace_object(
        &self,
        kind: ObjectKind,
        name: &str,
        body: &serde_json::Value,
        expected: Option<i64>,
        actor: &str,
    ) -> Result<Versioned<StoredObject>, StoreError> {
        let now = self.now_ms();
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "update config_object set body = $1, version = version + 1, updated_by = $2, updated_at = $3
                 where kind = $4 and name = $5 and ($6 is null or version = $6)",
            )
            .bind(body.to_string())
            .bind(actor)
            .bind(now)
            .bind(kind.table())
            .bind(name)
            .bind(expected)
            .execute(&mut *tx)
            .await
            .map_err(on(Entity::ConfigObject))?
            .rows_affected();
            if changed > 0 {
                notify_change!(self, tx, kind);
            }
            tx.commit().await.map_err(on(Entity::ConfigObject))?;
            changed
        });
        let current = self.get_object(kind, name).await?;
        Ok(if changed == 1 {
            Versioned::Done(current)
        } else {
            Versioned::Stale {
                current: current.object.version,
            }
        })
    }

    /// Deletes an object if its version is `expected` (any version when `None`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn delete_object(
        &self,
        kind: ObjectKind,
        name: &str,
        expected: Option<i64>,
    ) -> Result<Versioned<()>, StoreError> {
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "delete from config_object where kind = $1 and name = $2 and ($3 is null or version = $3)",
            )
            .bind(kind.table())
            .bind(name)
            .bind(expected)
            .execute(&mut *tx)
            .await
            .map_err(on(Entity::ConfigObject))?
            .rows_affected();
            if changed > 0 {
                notify_change!(self, tx, kind);
            }
            tx.commit().await.map_err(on(Entity::ConfigObject))?;
            changed
        });
        if changed == 1 {
            return Ok(Versioned::Done(()));
        }
        let current = self.get_object(kind, name).await?;
        Ok(Versioned::Stale {
            current: current.object.version,
        })
    }
}

impl Store {
    /// Each stored object's version, by kind and name: the fingerprint of the database's side
    /// of the model, compared with the model in force.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn object_versions(&self) -> Result<ObjectVersions, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, pool => sqlx::query_as(
            "select kind, name, version from config_object",
        )
            .fetch_all(pool)
            .await)
        .map_err(on(Entity::ConfigObject))?;
        rows.into_iter()
            .map(|(kind, name, version)| {
                let kind = ObjectKind::from_table(&kind).ok_or_else(|| StoreError::Corrupt {
                    column: "config_object.kind",
                    value: kind.clone(),
                })?;
                Ok(((kind, name), version))
            })
            .collect()
    }

    /// Listens for the changes other processes commit ([`CONFIG_CHANNEL`]); `None` on SQLite,
    /// where there are no other processes. The listener holds one connection of the pool.
    ///
    /// # Errors
    /// [`StoreError::Database`]: no connection, or `LISTEN` refused.
    pub async fn listen_config(&self) -> Result<Option<ConfigListener>, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(StoreError::Database)?;
        listener
            .listen(CONFIG_CHANNEL)
            .await
            .map_err(StoreError::Database)?;
        Ok(Some(ConfigListener { listener }))
    }
}

/// What a [`ConfigListener`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEvent {
    /// A change was committed (by any process, this one included); the kind of object.
    Changed(String),
    /// The connection was lost and has been made again: notifications sent meanwhile are lost.
    Reconnected,
}

/// The `LISTEN rgsd_config` side of [`CONFIG_CHANNEL`].
pub struct ConfigListener {
    listener: PgListener,
}

impl ConfigListener {
    /// Waits for the next notification, or for a lost connection (reconnected before this
    /// returns, the channel listened to again).
    ///
    /// # Errors
    /// [`StoreError::Database`]: the connection could not be made again, or the pool closed.
    /// The next call tries again.
    pub async fn next(&mut self) -> Result<ConfigEvent, StoreError> {
        match self.listener.try_recv().await {
            Ok(Some(n)) => Ok(ConfigEvent::Changed(n.payload().to_owned())),
            Ok(None) => Ok(ConfigEvent::Reconnected),
            Err(e) => Err(StoreError::Database(e)),
        }
    }
}
