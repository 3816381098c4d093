//! Response-group objects owned by the database (created through the API): one row per object,
//! its body the object's TOML table as JSON text, its version the ETag.
//!
//! The store does not check bodies: the caller compiles the merged model first
//! (`config::merge`) and writes only what compiled. Every change is a compare-and-set on the
//! version when the caller gives one (`If-Match`), so two writers cannot overwrite each other
//! unseen.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::{Store, from_ms, on_pool};
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
        on_pool!(self, pool => sqlx::query(
            "insert into config_object (kind, name, body, version, created_by, created_at, updated_by, updated_at)
             values ($1, $2, $3, 1, $4, $5, $4, $5)",
        )
        .bind(kind.table())
        .bind(name)
        .bind(body.to_string())
        .bind(actor)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(on(Entity::ConfigObject))?;
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
        let changed = on_pool!(self, pool => sqlx::query(
            "update config_object set body = $1, version = version + 1, updated_by = $2, updated_at = $3
             where kind = $4 and name = $5 and ($6 is null or version = $6)",
        )
        .bind(body.to_string())
        .bind(actor)
        .bind(now)
        .bind(kind.table())
        .bind(name)
        .bind(expected)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(on(Entity::ConfigObject))?;
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
        let changed = on_pool!(self, pool => sqlx::query(
            "delete from config_object where kind = $1 and name = $2 and ($3 is null or version = $3)",
        )
        .bind(kind.table())
        .bind(name)
        .bind(expected)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(on(Entity::ConfigObject))?;
        if changed == 1 {
            return Ok(Versioned::Done(()));
        }
        let current = self.get_object(kind, name).await?;
        Ok(Versioned::Stale {
            current: current.object.version,
        })
    }
}
