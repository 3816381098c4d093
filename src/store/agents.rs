//! Agents: the SIP endpoints calls are offered to. Create, read, update, delete.
//!
//! An agent is identified by its SIP URI (unique, compared exactly as written). Agents also come
//! into being implicitly when a group lists a URI not seen before (see [`super::groups`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::{Store, duration_from_ms, duration_to_ms, from_ms, on_pool};
use crate::config::model::SipUri;

/// Database id of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub i64);

/// What the API says about an agent when creating or replacing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFields {
    pub sip_uri: SipUri,
    pub display_name: Option<String>,
    /// The agent's own wrap-up time, overriding its groups'; `None`: its groups' apply.
    pub wrap_up: Option<Duration>,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub sip_uri: SipUri,
    pub display_name: Option<String>,
    /// See [`AgentFields::wrap_up`].
    pub wrap_up: Option<Duration>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct AgentRow {
    id: i64,
    sip_uri: String,
    display_name: Option<String>,
    wrap_up_ms: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(row: AgentRow) -> Result<Self, StoreError> {
        Ok(Agent {
            id: AgentId(row.id),
            sip_uri: SipUri(row.sip_uri),
            display_name: row.display_name,
            wrap_up: row
                .wrap_up_ms
                .map(|ms| duration_from_ms(ms, "agent.wrap_up_ms"))
                .transpose()?,
            created_at: from_ms(row.created_at, "agent.created_at")?,
            updated_at: from_ms(row.updated_at, "agent.updated_at")?,
        })
    }
}

impl Store {
    /// Adds an agent.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the URI is taken.
    pub async fn create_agent(&self, fields: &AgentFields) -> Result<Agent, StoreError> {
        let now = self.now_ms();
        let row = on_pool!(self, pool => sqlx::query_as::<_, AgentRow>(
            "insert into agent (sip_uri, display_name, created_at, updated_at, wrap_up_ms)
             values ($1, $2, $3, $3, $4)
             returning id, sip_uri, display_name, wrap_up_ms, created_at, updated_at",
        )
        .bind(fields.sip_uri.as_str())
        .bind(fields.display_name.as_deref())
        .bind(now)
        .bind(fields.wrap_up.map(duration_to_ms))
        .fetch_one(pool)
        .await)
        .map_err(on(Entity::Agent))?;
        row.try_into()
    }

    /// One agent by id.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn get_agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, AgentRow>(
            "select id, sip_uri, display_name, wrap_up_ms, created_at, updated_at from agent where id = $1",
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)
        .map_err(on(Entity::Agent))?;
        row.ok_or(StoreError::NotFound(Entity::Agent))?.try_into()
    }

    /// One agent by SIP URI (exact match).
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn get_agent_by_uri(&self, sip_uri: &SipUri) -> Result<Agent, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, AgentRow>(
            "select id, sip_uri, display_name, wrap_up_ms, created_at, updated_at from agent where sip_uri = $1",
        )
        .bind(sip_uri.as_str())
        .fetch_optional(pool)
        .await)
        .map_err(on(Entity::Agent))?;
        row.ok_or(StoreError::NotFound(Entity::Agent))?.try_into()
    }

    /// Every agent, by SIP URI.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AgentRow>(
            "select id, sip_uri, display_name, wrap_up_ms, created_at, updated_at from agent order by sip_uri",
        )
        .fetch_all(pool)
        .await)
        .map_err(on(Entity::Agent))?;
        rows.into_iter().map(Agent::try_from).collect()
    }

    /// Replaces an agent's URI and display name. Memberships and sign-in state stay.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Conflict`] when the new URI is
    /// another agent's.
    pub async fn update_agent(
        &self,
        id: AgentId,
        fields: &AgentFields,
    ) -> Result<Agent, StoreError> {
        let now = self.now_ms();
        let row = on_pool!(self, pool => sqlx::query_as::<_, AgentRow>(
            "update agent set sip_uri = $2, display_name = $3, updated_at = $4, wrap_up_ms = $5
             where id = $1
             returning id, sip_uri, display_name, wrap_up_ms, created_at, updated_at",
        )
        .bind(id.0)
        .bind(fields.sip_uri.as_str())
        .bind(fields.display_name.as_deref())
        .bind(now)
        .bind(fields.wrap_up.map(duration_to_ms))
        .fetch_optional(pool)
        .await)
        .map_err(on(Entity::Agent))?;
        row.ok_or(StoreError::NotFound(Entity::Agent))?.try_into()
    }

    /// Deletes an agent, with its memberships and sign-in state. Call records keep its URI.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn delete_agent(&self, id: AgentId) -> Result<(), StoreError> {
        let done = on_pool!(self, pool => sqlx::query("delete from agent where id = $1")
            .bind(id.0)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(on(Entity::Agent))?;
        if done == 0 {
            return Err(StoreError::NotFound(Entity::Agent));
        }
        Ok(())
    }
}
