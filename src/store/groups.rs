//! Agent groups: settings, ordered members, formal sign-in, and synchronisation with the groups
//! declared in the config file.
//!
//! A group is described by the same [`AgentGroup`] value whether it comes from the TOML file or
//! the API; members are SIP URIs, in order, and a URI not seen before becomes an agent (as in the
//! config file, where agents exist only as URIs in groups).
//!
//! # Where groups come from
//!
//! [`GroupSource`] records it. [`Store::sync_config_groups`] makes the database match the file at
//! start and on reload, in one transaction:
//! - a declared group is created, or updated to match the file (members included);
//! - a declared group whose name an API-created group already has is *taken over*: the file is the
//!   declaration, so it wins, and the group becomes a config group;
//! - groups created through the API (`source = 'api'`) and not declared are left alone;
//! - a config group no longer in the file is kept but marked [`GroupSource::Retired`]: nothing
//!   is lost (members and their sign-in state stay), putting it back in the file restores it,
//!   and the API may delete it. The engine routes by the compiled config, so a retired group
//!   receives no calls.
//!
//! The API may edit a config group; the next reload rewrites it from the file.
//!
//! # Formal sign-in
//!
//! Sign-in state belongs to a membership (a foreign key to it), so leaving a group drops the
//! state. No row means signed out. Informal groups have no sign-in state: signing in to one is
//! refused, and state left from when a group was formal is not reported while it is informal
//! (it counts again if the group becomes formal again).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::{BeginWrite, Store, duration_from_ms, duration_to_ms, from_ms, on_pool};
use crate::config::model::{AgentGroup, Participation, RoutingMethod, SipUri};

/// Database id of an agent group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub i64);

/// Who manages a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupSource {
    /// Declared in the config file; rewritten from it at start and on reload.
    Config,
    /// Created through the API; config synchronisation never touches it.
    Api,
    /// Was declared in the config file and no longer is (see the module docs).
    Retired,
}

impl GroupSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
            Self::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "config" => Ok(Self::Config),
            "api" => Ok(Self::Api),
            "retired" => Ok(Self::Retired),
            _ => Err(corrupt("agent_group.source", s)),
        }
    }
}

/// A stored agent group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub description: Option<String>,
    pub participation: Participation,
    pub routing: RoutingMethod,
    pub alert_time: Duration,
    /// Zero: no wrap-up.
    pub wrap_up: Duration,
    /// In order: serial and round-robin routing follow it.
    pub agents: Vec<SipUri>,
    pub source: GroupSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Group {
    /// The group as the engine and the config file describe it.
    pub fn to_agent_group(&self) -> AgentGroup {
        AgentGroup {
            name: self.name.clone(),
            description: self.description.clone(),
            participation: self.participation,
            routing: self.routing,
            alert_time: self.alert_time,
            wrap_up: self.wrap_up,
            agents: self.agents.clone(),
        }
    }
}

/// An agent signed in to a formal group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub agent: SipUri,
    pub group: String,
    /// When the agent signed in.
    pub since: DateTime<Utc>,
}

/// What [`Store::sync_config_groups`] changed, by group name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: Vec<String>,
    /// Changed to match the file (including retired groups declared again).
    pub updated: Vec<String>,
    /// API-created groups that the file now declares.
    pub taken_over: Vec<String>,
    /// Config groups no longer in the file.
    pub retired: Vec<String>,
    /// Declared groups that already matched the file.
    pub unchanged: usize,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "agent groups: {} created, {} updated, {} taken over from the API, {} retired, {} unchanged",
            self.created.len(),
            self.updated.len(),
            self.taken_over.len(),
            self.retired.len(),
            self.unchanged
        )
    }
}

#[derive(FromRow)]
struct GroupRow {
    id: i64,
    name: String,
    description: Option<String>,
    participation: String,
    routing: String,
    alert_time_ms: i64,
    wrap_up_ms: i64,
    source: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct MemberRow {
    group_id: i64,
    sip_uri: String,
}

#[derive(FromRow)]
struct SignInRow {
    sip_uri: String,
    name: String,
    changed_at: i64,
}

impl GroupRow {
    fn into_group(self, agents: Vec<SipUri>) -> Result<Group, StoreError> {
        Ok(Group {
            id: GroupId(self.id),
            participation: participation_parse(&self.participation)?,
            routing: routing_parse(&self.routing)?,
            alert_time: duration_from_ms(self.alert_time_ms, "agent_group.alert_time_ms")?,
            wrap_up: duration_from_ms(self.wrap_up_ms, "agent_group.wrap_up_ms")?,
            source: GroupSource::parse(&self.source)?,
            created_at: from_ms(self.created_at, "agent_group.created_at")?,
            updated_at: from_ms(self.updated_at, "agent_group.updated_at")?,
            name: self.name,
            description: self.description,
            agents,
        })
    }

    /// Whether the stored settings equal `g`'s (members aside).
    fn settings_match(&self, g: &AgentGroup) -> bool {
        self.description == g.description
            && self.participation == participation_str(g.participation)
            && self.routing == routing_str(g.routing)
            && self.alert_time_ms == duration_to_ms(g.alert_time)
            && self.wrap_up_ms == duration_to_ms(g.wrap_up)
    }
}

fn corrupt(column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        column,
        value: value.to_owned(),
    }
}

fn participation_str(p: Participation) -> &'static str {
    match p {
        Participation::Informal => "informal",
        Participation::Formal => "formal",
    }
}

fn participation_parse(s: &str) -> Result<Participation, StoreError> {
    match s {
        "informal" => Ok(Participation::Informal),
        "formal" => Ok(Participation::Formal),
        _ => Err(corrupt("agent_group.participation", s)),
    }
}

fn routing_str(r: RoutingMethod) -> &'static str {
    match r {
        RoutingMethod::LongestIdle => "longest_idle",
        RoutingMethod::Parallel => "parallel",
        RoutingMethod::RoundRobin => "round_robin",
        RoutingMethod::Serial => "serial",
        RoutingMethod::Attendant => "attendant",
    }
}

fn routing_parse(s: &str) -> Result<RoutingMethod, StoreError> {
    match s {
        "longest_idle" => Ok(RoutingMethod::LongestIdle),
        "parallel" => Ok(RoutingMethod::Parallel),
        "round_robin" => Ok(RoutingMethod::RoundRobin),
        "serial" => Ok(RoutingMethod::Serial),
        "attendant" => Ok(RoutingMethod::Attendant),
        _ => Err(corrupt("agent_group.routing", s)),
    }
}

/// Statements that run inside a caller's transaction and are shared by several methods.
/// Implemented for both connection types by `impl_group_statements!`, body written once.
trait GroupStatements {
    /// The group named `name`, if any.
    async fn group_by_name(&mut self, name: &str) -> Result<Option<GroupRow>, StoreError>;
    /// Inserts a group, returning its id.
    async fn insert_group(
        &mut self,
        g: &AgentGroup,
        source: GroupSource,
        now: i64,
    ) -> Result<i64, StoreError>;
    /// Rewrites a group's settings and source. Returns `false` when there is no such group.
    async fn update_settings(
        &mut self,
        id: i64,
        g: &AgentGroup,
        source: Option<GroupSource>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// The group's member URIs, in order.
    async fn member_uris(&mut self, group: i64) -> Result<Vec<SipUri>, StoreError>;
    /// Makes the group's members exactly `uris`, in that order, creating unknown agents. Members
    /// who stay keep their sign-in state; members who leave lose it.
    async fn write_members(
        &mut self,
        group: i64,
        uris: &[SipUri],
        now: i64,
    ) -> Result<(), StoreError>;
}

macro_rules! impl_group_statements {
    ($conn:ty) => {
        impl GroupStatements for $conn {
            async fn group_by_name(&mut self, name: &str) -> Result<Option<GroupRow>, StoreError> {
                sqlx::query_as::<_, GroupRow>(
                    "select id, name, description, participation, routing, alert_time_ms, wrap_up_ms, source,
                            created_at, updated_at
                     from agent_group where name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *self)
                .await
                .map_err(on(Entity::AgentGroup))
            }

            async fn insert_group(
                &mut self,
                g: &AgentGroup,
                source: GroupSource,
                now: i64,
            ) -> Result<i64, StoreError> {
                sqlx::query_scalar::<_, i64>(
                    "insert into agent_group (name, description, participation, routing,
                                              alert_time_ms, source, created_at, updated_at,
                                              wrap_up_ms)
                     values ($1, $2, $3, $4, $5, $6, $7, $7, $8)
                     returning id",
                )
                .bind(g.name.as_str())
                .bind(g.description.as_deref())
                .bind(participation_str(g.participation))
                .bind(routing_str(g.routing))
                .bind(duration_to_ms(g.alert_time))
                .bind(source.as_str())
                .bind(now)
                .bind(duration_to_ms(g.wrap_up))
                .fetch_one(&mut *self)
                .await
                .map_err(on(Entity::AgentGroup))
            }

            async fn update_settings(
                &mut self,
                id: i64,
                g: &AgentGroup,
                source: Option<GroupSource>,
                now: i64,
            ) -> Result<bool, StoreError> {
                sqlx::query(
                    "update agent_group
                     set name = $2, description = $3, participation = $4, routing = $5,
                         alert_time_ms = $6, source = coalesce($7, source), updated_at = $8,
                         wrap_up_ms = $9
                     where id = $1",
                )
                .bind(id)
                .bind(g.name.as_str())
                .bind(g.description.as_deref())
                .bind(participation_str(g.participation))
                .bind(routing_str(g.routing))
                .bind(duration_to_ms(g.alert_time))
                .bind(source.map(GroupSource::as_str))
                .bind(now)
                .bind(duration_to_ms(g.wrap_up))
                .execute(&mut *self)
                .await
                .map(|r| r.rows_affected() > 0)
                .map_err(on(Entity::AgentGroup))
            }

            async fn member_uris(&mut self, group: i64) -> Result<Vec<SipUri>, StoreError> {
                let uris = sqlx::query_scalar::<_, String>(
                    "select a.sip_uri
                     from agent_group_member m join agent a on a.id = m.agent_id
                     where m.group_id = $1
                     order by m.position",
                )
                .bind(group)
                .fetch_all(&mut *self)
                .await
                .map_err(on(Entity::Membership))?;
                Ok(uris.into_iter().map(SipUri).collect())
            }

            async fn write_members(
                &mut self,
                group: i64,
                uris: &[SipUri],
                now: i64,
            ) -> Result<(), StoreError> {
                let before = sqlx::query_scalar::<_, i64>(
                    "select agent_id from agent_group_member where group_id = $1",
                )
                .bind(group)
                .fetch_all(&mut *self)
                .await
                .map_err(on(Entity::Membership))?;
                let mut after = HashSet::with_capacity(uris.len());
                for (position, uri) in uris.iter().enumerate() {
                    // Insert the agent if new. `do update` (a no-op write) rather than
                    // `do nothing`, so that `returning` yields the id either way.
                    let agent = sqlx::query_scalar::<_, i64>(
                        "insert into agent (sip_uri, created_at, updated_at) values ($1, $2, $2)
                         on conflict (sip_uri) do update set sip_uri = excluded.sip_uri
                         returning id",
                    )
                    .bind(uri.as_str())
                    .bind(now)
                    .fetch_one(&mut *self)
                    .await
                    .map_err(on(Entity::Agent))?;
                    if !after.insert(agent) {
                        // The same URI twice in one list.
                        return Err(StoreError::Conflict(Entity::Membership));
                    }
                    // Upsert, not delete-and-insert: the sign-in state hangs off the membership.
                    sqlx::query(
                        "insert into agent_group_member (group_id, agent_id, position)
                         values ($1, $2, $3)
                         on conflict (group_id, agent_id) do update set position = excluded.position",
                    )
                    .bind(group)
                    .bind(agent)
                    .bind(i32::try_from(position).unwrap_or(i32::MAX))
                    .execute(&mut *self)
                    .await
                    .map_err(on(Entity::AgentGroup))?;
                }
                for gone in before.into_iter().filter(|id| !after.contains(id)) {
                    sqlx::query("delete from agent_group_member where group_id = $1 and agent_id = $2")
                        .bind(group)
                        .bind(gone)
                        .execute(&mut *self)
                        .await
                        .map_err(on(Entity::Membership))?;
                }
                Ok(())
            }
        }
    };
}

impl_group_statements!(sqlx::SqliteConnection);
impl_group_statements!(sqlx::PgConnection);

impl Store {
    /// Creates a group through the API (source [`GroupSource::Api`]), with its members in order.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the name is taken or a URI is listed twice.
    pub async fn create_group(&self, group: &AgentGroup) -> Result<Group, StoreError> {
        let now = self.now_ms();
        let id = on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let id = tx.insert_group(group, GroupSource::Api, now).await?;
            tx.write_members(id, &group.agents, now).await?;
            tx.commit().await.map_err(StoreError::Database)?;
            Ok::<_, StoreError>(id)
        }.await)?;
        self.get_group(GroupId(id)).await
    }

    /// One group by id, with its members.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn get_group(&self, id: GroupId) -> Result<Group, StoreError> {
        on_pool!(self, pool => async {
            let mut conn = pool.acquire().await.map_err(StoreError::Database)?;
            let row = sqlx::query_as::<_, GroupRow>(
                "select id, name, description, participation, routing, alert_time_ms, wrap_up_ms, source,
                        created_at, updated_at
                 from agent_group where id = $1",
            )
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(on(Entity::AgentGroup))?
            .ok_or(StoreError::NotFound(Entity::AgentGroup))?;
            let members = conn.member_uris(row.id).await?;
            row.into_group(members)
        }.await)
    }

    /// One group by name, with its members.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn get_group_by_name(&self, name: &str) -> Result<Group, StoreError> {
        on_pool!(self, pool => async {
            let mut conn = pool.acquire().await.map_err(StoreError::Database)?;
            let row = conn
                .group_by_name(name)
                .await?
                .ok_or(StoreError::NotFound(Entity::AgentGroup))?;
            let members = conn.member_uris(row.id).await?;
            row.into_group(members)
        }.await)
    }

    /// Every group, by name, with members.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        let (rows, members) = on_pool!(self, pool => async {
            let mut conn = pool.acquire().await.map_err(StoreError::Database)?;
            let rows = sqlx::query_as::<_, GroupRow>(
                "select id, name, description, participation, routing, alert_time_ms, wrap_up_ms, source,
                        created_at, updated_at
                 from agent_group order by name",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(on(Entity::AgentGroup))?;
            let members = sqlx::query_as::<_, MemberRow>(
                "select m.group_id, a.sip_uri
                 from agent_group_member m join agent a on a.id = m.agent_id
                 order by m.group_id, m.position",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(on(Entity::Membership))?;
            Ok::<_, StoreError>((rows, members))
        }.await)?;
        let mut by_group: std::collections::HashMap<i64, Vec<SipUri>> =
            std::collections::HashMap::new();
        for m in members {
            by_group
                .entry(m.group_id)
                .or_default()
                .push(SipUri(m.sip_uri));
        }
        rows.into_iter()
            .map(|row| {
                let agents = by_group.remove(&row.id).unwrap_or_default();
                row.into_group(agents)
            })
            .collect()
    }

    /// Replaces a group's settings and members (its source stays).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Conflict`] when the new name is
    /// another group's or a URI is listed twice.
    pub async fn update_group(&self, id: GroupId, group: &AgentGroup) -> Result<Group, StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            if !tx.update_settings(id.0, group, None, now).await? {
                return Err(StoreError::NotFound(Entity::AgentGroup));
            }
            tx.write_members(id.0, &group.agents, now).await?;
            tx.commit().await.map_err(StoreError::Database)
        }.await)?;
        self.get_group(id).await
    }

    /// Makes a group's members exactly `agents`, in that order. Agents who stay keep their
    /// sign-in state; unknown URIs become agents.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown group, [`StoreError::Conflict`] when a URI is
    /// listed twice.
    pub async fn set_group_members(
        &self,
        id: GroupId,
        agents: &[SipUri],
    ) -> Result<Group, StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query("update agent_group set updated_at = $2 where id = $1")
                .bind(id.0)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(on(Entity::AgentGroup))?
                .rows_affected();
            if found == 0 {
                return Err(StoreError::NotFound(Entity::AgentGroup));
            }
            tx.write_members(id.0, agents, now).await?;
            tx.commit().await.map_err(StoreError::Database)
        }.await)?;
        self.get_group(id).await
    }

    /// Deletes a group, its memberships and their sign-in state. Agents stay.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn delete_group(&self, id: GroupId) -> Result<(), StoreError> {
        let done = on_pool!(self, pool => sqlx::query("delete from agent_group where id = $1")
            .bind(id.0)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(on(Entity::AgentGroup))?;
        if done == 0 {
            return Err(StoreError::NotFound(Entity::AgentGroup));
        }
        Ok(())
    }

    /// Makes the database's config groups match `groups` (the compiled config's agent groups), in
    /// one transaction. See the module docs for what happens to each kind of group.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a group lists a URI twice (the config compiler should have
    /// caught it); [`StoreError::Database`]. Nothing is changed on error.
    pub async fn sync_config_groups(
        &self,
        groups: &[AgentGroup],
    ) -> Result<SyncReport, StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => async {
            let mut report = SyncReport::default();
            let mut tx = pool.begin_write().await?;
            for g in groups {
                let Some(row) = tx.group_by_name(&g.name).await? else {
                    let id = tx.insert_group(g, GroupSource::Config, now).await?;
                    tx.write_members(id, &g.agents, now).await?;
                    report.created.push(g.name.clone());
                    continue;
                };
                let source = GroupSource::parse(&row.source)?;
                if source == GroupSource::Config
                    && row.settings_match(g)
                    && tx.member_uris(row.id).await? == g.agents
                {
                    report.unchanged += 1;
                    continue;
                }
                tx.update_settings(row.id, g, Some(GroupSource::Config), now).await?;
                tx.write_members(row.id, &g.agents, now).await?;
                match source {
                    GroupSource::Api => report.taken_over.push(g.name.clone()),
                    GroupSource::Config | GroupSource::Retired => report.updated.push(g.name.clone()),
                }
            }
            let declared: HashSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            let config_groups = sqlx::query_as::<_, (i64, String)>(
                "select id, name from agent_group where source = $1 order by name",
            )
            .bind(GroupSource::Config.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(on(Entity::AgentGroup))?;
            for (id, name) in config_groups {
                if declared.contains(name.as_str()) {
                    continue;
                }
                sqlx::query("update agent_group set source = $2, updated_at = $3 where id = $1")
                    .bind(id)
                    .bind(GroupSource::Retired.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(on(Entity::AgentGroup))?;
                report.retired.push(name);
            }
            tx.commit().await.map_err(StoreError::Database)?;
            Ok(report)
        }.await)
    }

    /// Signs an agent in to a formal group. Returns whether the state changed (`false` when
    /// already signed in).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] of [`Entity::Agent`], [`Entity::AgentGroup`] or
    /// [`Entity::Membership`] (the agent is not a member); [`StoreError::InformalGroup`].
    pub async fn sign_in(&self, agent: &SipUri, group: &str) -> Result<bool, StoreError> {
        self.set_signed_in(agent, group, true).await
    }

    /// Signs an agent out of a formal group. Returns whether the state changed (`false` when
    /// already signed out, or never signed in).
    ///
    /// # Errors
    /// As [`Store::sign_in`].
    pub async fn sign_out(&self, agent: &SipUri, group: &str) -> Result<bool, StoreError> {
        self.set_signed_in(agent, group, false).await
    }

    async fn set_signed_in(
        &self,
        agent: &SipUri,
        group: &str,
        signed_in: bool,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => async {
            let mut conn = pool.acquire().await.map_err(StoreError::Database)?;
            let row = conn
                .group_by_name(group)
                .await?
                .ok_or(StoreError::NotFound(Entity::AgentGroup))?;
            if participation_parse(&row.participation)? == Participation::Informal {
                return Err(StoreError::InformalGroup { group: row.name });
            }
            let agent_id = sqlx::query_scalar::<_, i64>("select id from agent where sip_uri = $1")
                .bind(agent.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(on(Entity::Agent))?
                .ok_or(StoreError::NotFound(Entity::Agent))?;
            let member = sqlx::query_scalar::<_, i64>(
                "select agent_id from agent_group_member where group_id = $1 and agent_id = $2",
            )
            .bind(row.id)
            .bind(agent_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(on(Entity::Membership))?;
            if member.is_none() {
                return Err(StoreError::NotFound(Entity::Membership));
            }
            // Only a real change touches the row, so `changed_at` is when the state last changed
            // and the affected-row count says whether it did. Signing out without a row writes
            // nothing: no row already means signed out.
            let sql = if signed_in {
                "insert into agent_sign_in (group_id, agent_id, signed_in, changed_at)
                 values ($1, $2, $3, $4)
                 on conflict (group_id, agent_id) do update
                 set signed_in = excluded.signed_in, changed_at = excluded.changed_at
                 where agent_sign_in.signed_in <> excluded.signed_in"
            } else {
                "update agent_sign_in set signed_in = $3, changed_at = $4
                 where group_id = $1 and agent_id = $2 and signed_in <> $3"
            };
            let changed = sqlx::query(sql)
                .bind(row.id)
                .bind(agent_id)
                .bind(signed_in)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(on(Entity::Membership))?
                .rows_affected();
            Ok(changed > 0)
        }.await)
    }

    /// Names of the formal groups `agent` is signed in to, by name. Empty for an unknown agent.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn signed_in_groups(&self, agent: &SipUri) -> Result<Vec<String>, StoreError> {
        on_pool!(self, pool => sqlx::query_scalar::<_, String>(
            "select g.name
             from agent_sign_in s
             join agent a on a.id = s.agent_id
             join agent_group g on g.id = s.group_id
             where a.sip_uri = $1 and s.signed_in = $2 and g.participation = $3
             order by g.name",
        )
        .bind(agent.as_str())
        .bind(true)
        .bind(participation_str(Participation::Formal))
        .fetch_all(pool)
        .await)
        .map_err(on(Entity::Membership))
    }

    /// Every agent signed in to a group, by group then agent: what the engine loads at start.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn sign_in_state(&self) -> Result<Vec<SignIn>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, SignInRow>(
            "select a.sip_uri, g.name, s.changed_at
             from agent_sign_in s
             join agent a on a.id = s.agent_id
             join agent_group g on g.id = s.group_id
             where s.signed_in = $1 and g.participation = $2
             order by g.name, a.sip_uri",
        )
        .bind(true)
        .bind(participation_str(Participation::Formal))
        .fetch_all(pool)
        .await)
        .map_err(on(Entity::Membership))?;
        rows.into_iter()
            .map(|r| {
                Ok(SignIn {
                    agent: SipUri(r.sip_uri),
                    group: r.name,
                    since: from_ms(r.changed_at, "agent_sign_in.changed_at")?,
                })
            })
            .collect()
    }
}
