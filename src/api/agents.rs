//! Agents, agent groups (ordered members), formal sign-in, the caller's own view (`/api/me`)
//! and workflows (read; the fields managers may not or cannot change are refused precisely).
//!
//! `/api/agent-groups` (`api::objects`) is the one collection of agent groups: its groups are
//! part of the compiled model, and its documents carry each group's `id` and, for a formal group,
//! the members `signed_in`. `/api/groups` is the same groups by id, in this API's older shape
//! (`alert_time_seconds`, `routed`): a compatible alias whose writes (create, replace, members,
//! delete) go through the one change path of `/api/agent-groups` (compile, version, audit,
//! apply), so a group created through either routes calls.
//! `PUT /api/groups/{id}/sign-ins/{agent_id}` is the sign-in endpoint, by the `id` both show.
//!
//! Every other change is stored, rebuilt into the routing table when routing uses the group
//! ([`super::live::Live::rebuild`], [`super::live::Live::set_signed_in`]) and written to the
//! audit log with the token's subject as the actor.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::Shared;
use super::auth::{Caller, Scope};
use super::error::{ApiError, ErrorBody, Refusal};
use super::extract::{Body, Params};
use super::live::AgentSnapshot;
use super::live::Visibility as _;
use super::objects::{self, Change, ObjectError};
use crate::config::merge::ObjectKind;
use crate::config::model::{AgentGroup, Config, Participation, RoutingMethod, SipUri};

use crate::store::{Agent, AgentFields, AgentId, Group, GroupId, GroupSource, Role};

/// Alert time bounds (`docs/behaviour.md`, Agent groups).
const ALERT_MIN: u64 = 10;
const ALERT_MAX: u64 = 600;

// ---------------------------------------------------------------------------------------------
// Bodies and documents

/// An agent as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AgentDoc {
    pub id: i64,
    pub sip_uri: String,
    pub display_name: Option<String>,
    /// The agent's own wrap-up time after each call, overriding their groups'; absent: their
    /// groups' apply.
    pub wrap_up_seconds: Option<u64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Agent> for AgentDoc {
    fn from(a: Agent) -> Self {
        Self {
            id: a.id.0,
            sip_uri: a.sip_uri.0,
            display_name: a.display_name,
            wrap_up_seconds: a.wrap_up.map(|d| d.as_secs()),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// Creating or replacing an agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentBody {
    /// `sip:user@host`.
    pub sip_uri: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// 0 to 3600: the agent's own wrap-up time, overriding their groups'; absent or null:
    /// their groups' apply.
    #[serde(default)]
    pub wrap_up_seconds: Option<u64>,
}

impl AgentBody {
    fn fields(self) -> Result<AgentFields, ApiError> {
        Ok(AgentFields {
            sip_uri: parse_uri("sip_uri", &self.sip_uri)?,
            display_name: self.display_name,
            wrap_up: self.wrap_up_seconds.map(wrap_up_secs).transpose()?,
        })
    }
}

/// A wrap-up time of the API, checked against the configuration's bound.
fn wrap_up_secs(secs: u64) -> Result<Duration, ApiError> {
    let max = crate::config::model::WRAP_UP_MAX;
    let wrap_up = Duration::from_secs(secs);
    if wrap_up > max {
        return Err(ApiError::InvalidField {
            field: "wrap_up_seconds",
            reason: format!("{secs} is outside 0 to {}", max.as_secs()),
        });
    }
    Ok(wrap_up)
}

/// Formal: agents sign in; informal: members are always in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipationDoc {
    Formal,
    Informal,
}

impl From<Participation> for ParticipationDoc {
    fn from(p: Participation) -> Self {
        match p {
            Participation::Formal => Self::Formal,
            Participation::Informal => Self::Informal,
        }
    }
}

impl From<ParticipationDoc> for Participation {
    fn from(p: ParticipationDoc) -> Self {
        match p {
            ParticipationDoc::Formal => Self::Formal,
            ParticipationDoc::Informal => Self::Informal,
        }
    }
}

/// How a group offers calls to its agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutingDoc {
    LongestIdle,
    Parallel,
    RoundRobin,
    Serial,
    Attendant,
}

impl From<RoutingMethod> for RoutingDoc {
    fn from(r: RoutingMethod) -> Self {
        match r {
            RoutingMethod::LongestIdle => Self::LongestIdle,
            RoutingMethod::Parallel => Self::Parallel,
            RoutingMethod::RoundRobin => Self::RoundRobin,
            RoutingMethod::Serial => Self::Serial,
            RoutingMethod::Attendant => Self::Attendant,
        }
    }
}

impl From<RoutingDoc> for RoutingMethod {
    fn from(r: RoutingDoc) -> Self {
        match r {
            RoutingDoc::LongestIdle => Self::LongestIdle,
            RoutingDoc::Parallel => Self::Parallel,
            RoutingDoc::RoundRobin => Self::RoundRobin,
            RoutingDoc::Serial => Self::Serial,
            RoutingDoc::Attendant => Self::Attendant,
        }
    }
}

/// An agent group as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct GroupDoc {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub participation: ParticipationDoc,
    pub routing: RoutingDoc,
    pub alert_time_seconds: u64,
    /// After each call answered through this group, its agent takes no call for this long.
    pub wrap_up_seconds: u64,
    /// Members in order (serial and round robin follow it).
    pub agents: Vec<String>,
    /// `file` (declared in the configuration file: read-only here), `database` (created through
    /// this API or `/api/agent-groups`), or, for a group neither declares, `retired` (left by
    /// the file) or `api` (created before `/api/groups` wrote objects; its next write makes it
    /// a database object).
    pub source: &'static str,
    /// Whether the group is in the compiled model (routing offers its calls once a queue uses it).
    pub routed: bool,
    /// Formal groups: members signed in now.
    pub signed_in: Vec<String>,
}

/// Creating or replacing an agent group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub participation: ParticipationDoc,
    pub routing: RoutingDoc,
    /// 10 to 600; 20 when absent.
    #[serde(default = "default_alert")]
    pub alert_time_seconds: u64,
    /// 0 (none, when absent) to 3600.
    #[serde(default)]
    pub wrap_up_seconds: u64,
    /// Member SIP URIs in order; unknown URIs become agents.
    #[serde(default)]
    pub agents: Vec<String>,
}

fn default_alert() -> u64 {
    20
}

/// A group's members, in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersBody {
    pub agents: Vec<String>,
}

/// Signing in (`true`) or out (`false`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignInBody {
    pub signed_in: bool,
}

/// The result of a sign-in change.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SignInDoc {
    pub agent: String,
    pub group: String,
    pub signed_in: bool,
    /// Whether the state changed (`false` when it already was so).
    pub changed: bool,
    /// Whether routing uses this group (configured and referred to by a queue); when `false`
    /// the state is stored only.
    pub routed: bool,
}

/// A group as the caller (an agent) sees it on their page.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MyGroup {
    pub id: i64,
    pub name: String,
    pub participation: ParticipationDoc,
    /// Informal groups: always `true`.
    pub signed_in: bool,
}

/// Who the token speaks for, and (for an agent) their groups and live state.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MeDoc {
    pub role: &'static str,
    pub subject: String,
    /// The agent's id, when the subject is a known agent.
    pub agent_id: Option<i64>,
    pub groups: Vec<MyGroup>,
    pub state: Option<AgentSnapshot>,
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A SIP URI from a request body, checked as the configuration checks one
/// ([`SipUri::parse`]).
pub(super) fn parse_uri(field: &'static str, text: &str) -> Result<SipUri, ApiError> {
    SipUri::parse(text).map_err(|reason| ApiError::InvalidField { field, reason })
}

fn parse_members(agents: &[String]) -> Result<Vec<SipUri>, ApiError> {
    let list: Vec<SipUri> = agents
        .iter()
        .map(|a| parse_uri("agents", a))
        .collect::<Result<_, _>>()?;
    for (i, a) in list.iter().enumerate() {
        if list[..i].contains(a) {
            return Err(ApiError::InvalidField {
                field: "agents",
                reason: format!("{a} is listed twice"),
            });
        }
    }
    Ok(list)
}

fn agent_group(body: &GroupBody) -> Result<AgentGroup, ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::InvalidField {
            field: "name",
            reason: "must not be empty".into(),
        });
    }
    if !(ALERT_MIN..=ALERT_MAX).contains(&body.alert_time_seconds) {
        return Err(ApiError::InvalidField {
            field: "alert_time_seconds",
            reason: format!(
                "{} is outside {ALERT_MIN} to {ALERT_MAX}",
                body.alert_time_seconds
            ),
        });
    }
    Ok(AgentGroup {
        name: body.name.clone(),
        description: body.description.clone(),
        participation: body.participation.into(),
        routing: body.routing.into(),
        alert_time: Duration::from_secs(body.alert_time_seconds),
        wrap_up: wrap_up_secs(body.wrap_up_seconds)?,
        agents: parse_members(&body.agents)?,
    })
}

fn source_name(s: GroupSource) -> &'static str {
    match s {
        GroupSource::Config => "config",
        GroupSource::Api => "api",
        GroupSource::Retired => "retired",
    }
}

fn is_routed(config: &Config, name: &str) -> bool {
    config.agent_groups.iter().any(|g| g.name == name)
}

async fn group_doc(shared: &Shared, g: Group) -> Result<GroupDoc, ApiError> {
    let sign_ins = shared.store.sign_in_state().await?;
    let owner = objects::owner(shared, ObjectKind::AgentGroup, &g.name).await?;
    Ok(group_doc_with(shared, g, &sign_ins, owner))
}

/// [`group_doc`] with the sign-in state already read (one query for a whole list).
/// `owner` is who declares the group (`"file"` or `"database"`), if anyone does.
fn group_doc_with(
    shared: &Shared,
    g: Group,
    sign_ins: &[crate::store::SignIn],
    owner: Option<&'static str>,
) -> GroupDoc {
    // `sign_in_state` reports formal groups only.
    let signed_in = sign_ins
        .iter()
        .filter(|s| s.group == g.name)
        .map(|s| s.agent.0.clone())
        .collect();
    let config = shared.config.load();
    GroupDoc {
        id: g.id.0,
        routed: is_routed(&config, &g.name),
        name: g.name,
        description: g.description,
        participation: g.participation.into(),
        routing: g.routing.into(),
        alert_time_seconds: g.alert_time.as_secs(),
        wrap_up_seconds: g.wrap_up.as_secs(),
        agents: g.agents.into_iter().map(|a| a.0).collect(),
        source: owner.unwrap_or(source_name(g.source)),
        signed_in,
    }
}

/// Who may read one agent or act for them: administrators; managers of a group the agent is in;
/// the agent themself.
async fn check_agent_access(
    shared: &Shared,
    caller: &Caller,
    agent: &Agent,
) -> Result<(), ApiError> {
    match caller.role() {
        Role::Admin => Ok(()),
        Role::Manager => {
            let config = shared.config.load();
            let scope = caller.scope(&config);
            let groups = shared.store.list_groups().await?;
            if groups
                .iter()
                .any(|g| scope.group(&g.name) && g.agents.contains(&agent.sip_uri))
            {
                Ok(())
            } else {
                Err(ApiError::Forbidden(Refusal::NotYourGroup))
            }
        }
        Role::Agent if caller.subject() == agent.sip_uri.as_str() => Ok(()),
        Role::Agent => Err(ApiError::Forbidden(Refusal::AgentSelfOnly)),
    }
}

/// Rebuilds the routing table from the configuration and the database's groups.
async fn rebuild_routing(shared: &Shared) -> Result<(), ApiError> {
    shared.live.rebuild().await?;
    Ok(())
}

async fn audit(
    shared: &Shared,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    shared
        .store
        .audit(caller.subject(), action, target, &detail)
        .await?;
    Ok(())
}

/// A manager may act on the group only when they may see it as `/api/agent-groups` shows it
/// (their workflows' groups and the groups they created).
async fn check_group_scope(shared: &Shared, caller: &Caller, name: &str) -> Result<(), ApiError> {
    match caller.role() {
        Role::Admin => Ok(()),
        Role::Manager if objects::may_see(shared, caller, ObjectKind::AgentGroup, name).await? => {
            Ok(())
        }
        Role::Manager => Err(ApiError::Forbidden(Refusal::NotYourGroup)),
        Role::Agent => Err(ApiError::Forbidden(Refusal::AdminOnly)),
    }
}

// ---------------------------------------------------------------------------------------------
// Agents

/// Every agent (a manager sees the members of their groups).
#[utoipa::path(get, path = "/api/agents", tag = "agents",
    responses((status = 200, body = Vec<AgentDoc>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_agents(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<AgentDoc>>, ApiError> {
    caller.require_admin_or_manager()?;
    let agents = shared.store.list_agents().await?;
    let agents = match caller.scope(&shared.config.load()) {
        Scope::All => agents,
        Scope::Managed(_) => {
            let groups = shared.store.list_groups().await?;
            let config = shared.config.load();
            let scope = caller.scope(&config);
            agents
                .into_iter()
                .filter(|a| {
                    groups
                        .iter()
                        .any(|g| scope.group(&g.name) && g.agents.contains(&a.sip_uri))
                })
                .collect()
        }
    };
    Ok(Json(agents.into_iter().map(AgentDoc::from).collect()))
}

/// Adds an agent (administrators).
#[utoipa::path(post, path = "/api/agents", tag = "agents", request_body = AgentBody,
    responses((status = 201, body = AgentDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_agent(
    State(shared): State<Shared>,
    caller: Caller,
    Body(body): Body<AgentBody>,
) -> Result<(StatusCode, Json<AgentDoc>), ApiError> {
    caller.require_admin()?;
    let fields = body.fields()?;
    let agent = shared.store.create_agent(&fields).await?;
    if agent.wrap_up.is_some() {
        rebuild_routing(&shared).await?;
    }
    audit(
        &shared,
        &caller,
        "agent.create",
        agent.sip_uri.as_str(),
        json!({ "id": agent.id.0, "display_name": agent.display_name,
                "wrap_up_seconds": agent.wrap_up.map(|d| d.as_secs()) }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

/// One agent.
#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents",
    params(("id" = i64, Path, description = "agent id")),
    responses((status = 200, body = AgentDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_agent(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
) -> Result<Json<AgentDoc>, ApiError> {
    let agent = shared.store.get_agent(AgentId(id)).await?;
    check_agent_access(&shared, &caller, &agent).await?;
    Ok(Json(agent.into()))
}

/// Replaces an agent's URI, display name and own wrap-up time (administrators).
#[utoipa::path(put, path = "/api/agents/{id}", tag = "agents", request_body = AgentBody,
    params(("id" = i64, Path, description = "agent id")),
    responses((status = 200, body = AgentDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn update_agent(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
    Body(body): Body<AgentBody>,
) -> Result<Json<AgentDoc>, ApiError> {
    caller.require_admin()?;
    let fields = body.fields()?;
    let agent = shared.store.update_agent(AgentId(id), &fields).await?;
    rebuild_routing(&shared).await?;
    audit(
        &shared,
        &caller,
        "agent.update",
        agent.sip_uri.as_str(),
        json!({ "id": id, "display_name": agent.display_name,
                "wrap_up_seconds": agent.wrap_up.map(|d| d.as_secs()) }),
    )
    .await?;
    Ok(Json(agent.into()))
}

/// Deletes an agent with their memberships (administrators).
#[utoipa::path(delete, path = "/api/agents/{id}", tag = "agents",
    params(("id" = i64, Path, description = "agent id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_agent(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let agent = shared.store.get_agent(AgentId(id)).await?;
    shared.store.delete_agent(AgentId(id)).await?;
    rebuild_routing(&shared).await?;
    audit(
        &shared,
        &caller,
        "agent.delete",
        agent.sip_uri.as_str(),
        json!({ "id": id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Groups

/// `group` as an `agent_group` object body: its TOML table as JSON (`alert_time` as `"20s"`).
fn object_body(group: &AgentGroup) -> serde_json::Value {
    let mut body = json!({
        "participation": ParticipationDoc::from(group.participation),
        "routing": RoutingDoc::from(group.routing),
        "alert_time": format!("{}s", group.alert_time.as_secs()),
        "agents": group.agents.iter().map(SipUri::as_str).collect::<Vec<_>>(),
    });
    if let (Some(d), serde_json::Value::Object(map)) = (&group.description, &mut body) {
        map.insert("description".into(), json!(d));
    }
    if let (false, serde_json::Value::Object(map)) = (group.wrap_up.is_zero(), &mut body) {
        map.insert(
            "wrap_up".into(),
            json!(format!("{}s", group.wrap_up.as_secs())),
        );
    }
    body
}

/// Writes `group` as the `agent_group` object of its name through the one change path of
/// `/api/agent-groups` (compile, version, audit, apply), so it routes calls: a replace when
/// the file or the database declares it (a file group is refused there with 409 naming the
/// file and line), else a create (a group only the groups table knows, from before this alias,
/// becomes a database object under its id). Returns the group's row, as the reload left it.
async fn write_group(
    shared: &Shared,
    caller: &Caller,
    group: &AgentGroup,
    create: bool,
) -> Result<Group, ObjectError> {
    let body = object_body(group);
    let change = if create
        || objects::owner(shared, ObjectKind::AgentGroup, &group.name)
            .await?
            .is_none()
    {
        Change::Create(body)
    } else {
        Change::Replace(body)
    };
    objects::change(
        shared,
        caller,
        ObjectKind::AgentGroup,
        &group.name,
        change,
        None,
    )
    .await?;
    Ok(shared.store.get_group_by_name(&group.name).await?)
}

/// Every agent group by id, in the groups table's shape (a manager sees the groups of their
/// workflows' queues and the groups they created). `/api/agent-groups` lists the same groups
/// in the file's shape.
#[utoipa::path(get, path = "/api/groups", tag = "groups",
    responses((status = 200, body = Vec<GroupDoc>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_groups(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<GroupDoc>>, ApiError> {
    caller.require_admin_or_manager()?;
    let sign_ins = shared.store.sign_in_state().await?;
    let mut docs = Vec::new();
    for g in shared.store.list_groups().await? {
        if objects::may_see(&shared, &caller, ObjectKind::AgentGroup, &g.name).await? {
            let owner = objects::owner(&shared, ObjectKind::AgentGroup, &g.name).await?;
            docs.push(group_doc_with(&shared, g, &sign_ins, owner));
        }
    }
    Ok(Json(docs))
}

/// Alias of `POST /api/agent-groups`: creates the group as a database object, so it routes
/// calls once a queue uses it (administrators, and managers as there). Body in this API's
/// shape (`alert_time_seconds`); validated, audited (`agent_group.create`) and applied as there.
#[utoipa::path(post, path = "/api/groups", tag = "groups", request_body = GroupBody,
    responses((status = 201, body = GroupDoc),
        (status = 409, description = "the name is taken"),
        (status = 422, description = "invalid: every problem by field"),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_group(
    State(shared): State<Shared>,
    caller: Caller,
    Body(body): Body<GroupBody>,
) -> Result<(StatusCode, Json<GroupDoc>), ObjectError> {
    caller.require_admin_or_manager()?;
    let group = agent_group(&body)?;
    let created = write_group(&shared, &caller, &group, true).await?;
    Ok((
        StatusCode::CREATED,
        Json(group_doc(&shared, created).await?),
    ))
}

/// One agent group by id (`/api/agent-groups/{name}` shows it in the file's shape).
#[utoipa::path(get, path = "/api/groups/{id}", tag = "groups",
    params(("id" = i64, Path, description = "group id")),
    responses((status = 200, body = GroupDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_group(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
) -> Result<Json<GroupDoc>, ApiError> {
    let g = shared.store.get_group(GroupId(id)).await?;
    check_group_scope(&shared, &caller, &g.name).await?;
    Ok(Json(group_doc(&shared, g).await?))
}

/// Alias of `PUT /api/agent-groups/{name}`: replaces a group's settings and members through the
/// same compile, version, audit and apply. A group declared in the file is refused with 409
/// naming the file and line; a group cannot be renamed (422 on `name`). Managers as there (on
/// their groups), and never a group's participation.
#[utoipa::path(put, path = "/api/groups/{id}", tag = "groups", request_body = GroupBody,
    params(("id" = i64, Path, description = "group id")),
    responses((status = 200, body = GroupDoc),
        (status = 409, description = "declared in the configuration file"),
        (status = 422, description = "invalid: every problem by field"),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn update_group(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
    Body(body): Body<GroupBody>,
) -> Result<Json<GroupDoc>, ObjectError> {
    let old = shared.store.get_group(GroupId(id)).await?;
    check_group_scope(&shared, &caller, &old.name).await?;
    let group = agent_group(&body)?;
    if caller.role() == Role::Manager
        && (group.name != old.name || group.participation != old.participation)
    {
        return Err(ApiError::Forbidden(Refusal::ManagerGroupField).into());
    }
    if group.name != old.name {
        return Err(ApiError::InvalidField {
            field: "name",
            reason: "a group cannot be renamed: create one with the new name and delete this one"
                .into(),
        }
        .into());
    }
    let updated = write_group(&shared, &caller, &group, false).await?;
    Ok(Json(group_doc(&shared, updated).await?))
}

/// Sets a group's members, in order: `PATCH /api/agent-groups/{name}` of `agents`, through the
/// same compile, version, audit and apply (administrators; managers on their groups).
#[utoipa::path(put, path = "/api/groups/{id}/members", tag = "groups", request_body = MembersBody,
    params(("id" = i64, Path, description = "group id")),
    responses((status = 200, body = GroupDoc),
        (status = 409, description = "declared in the configuration file"),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn set_members(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
    Body(body): Body<MembersBody>,
) -> Result<Json<GroupDoc>, ObjectError> {
    let old = shared.store.get_group(GroupId(id)).await?;
    check_group_scope(&shared, &caller, &old.name).await?;
    let members = parse_members(&body.agents)?;
    let updated = if objects::owner(&shared, ObjectKind::AgentGroup, &old.name)
        .await?
        .is_some()
    {
        let patch = json!({ "agents": body.agents });
        objects::patch_object(
            &shared,
            &caller,
            ObjectKind::AgentGroup,
            &old.name,
            None,
            &patch,
        )
        .await?;
        shared.store.get_group_by_name(&old.name).await?
    } else {
        let group = AgentGroup {
            name: old.name.clone(),
            description: old.description.clone(),
            participation: old.participation,
            routing: old.routing,
            alert_time: old.alert_time,
            wrap_up: old.wrap_up,
            agents: members,
        };
        write_group(&shared, &caller, &group, true).await?
    };
    Ok(Json(group_doc(&shared, updated).await?))
}

/// Alias of `DELETE /api/agent-groups/{name}` (refused with 409 while a queue uses the group,
/// or when the file declares it), then the group's row and memberships go too
/// (administrators, and managers on the groups they see). A group only the groups table knows
/// (from before this alias, or retired from the file) is deleted from it (administrators).
#[utoipa::path(delete, path = "/api/groups/{id}", tag = "groups",
    params(("id" = i64, Path, description = "group id")),
    responses((status = 204),
        (status = 409, description = "declared in the configuration file, or used by a queue"),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_group(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
) -> Result<StatusCode, ObjectError> {
    let old = shared.store.get_group(GroupId(id)).await?;
    check_group_scope(&shared, &caller, &old.name).await?;
    if objects::owner(&shared, ObjectKind::AgentGroup, &old.name)
        .await?
        .is_some()
    {
        objects::change(
            &shared,
            &caller,
            ObjectKind::AgentGroup,
            &old.name,
            Change::Delete,
            None,
        )
        .await?;
    } else {
        caller.require_admin()?;
        audit(
            &shared,
            &caller,
            "group.delete",
            &old.name,
            json!({ "id": id }),
        )
        .await?;
    }
    // The reload marked the group retired; the row and its sign-in state go, as they always did.
    shared.store.delete_group(GroupId(id)).await?;
    rebuild_routing(&shared).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The result of ending a wrap-up early.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WrapUpDoc {
    pub agent: String,
    /// Whether the agent was in wrap-up (`false`: nothing to end; they were already free or on
    /// a call).
    pub ended: bool,
}

/// Ends the agent's wrap-up now, so their groups' queues offer them calls again (the button on
/// the agent page). Administrators for anyone; managers for the agents of their groups; an
/// agent for themself. Audited when a wrap-up ended.
#[utoipa::path(delete, path = "/api/agents/{id}/wrap-up", tag = "agents",
    params(("id" = i64, Path, description = "agent id")),
    responses((status = 200, body = WrapUpDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn end_wrap_up(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
) -> Result<Json<WrapUpDoc>, ApiError> {
    let agent = shared.store.get_agent(AgentId(id)).await?;
    check_agent_access(&shared, &caller, &agent).await?;
    let ended = shared.live.end_wrap_up(&agent.sip_uri);
    if ended {
        audit(
            &shared,
            &caller,
            "agent.end_wrap_up",
            agent.sip_uri.as_str(),
            json!({ "id": id }),
        )
        .await?;
    }
    Ok(Json(WrapUpDoc {
        agent: agent.sip_uri.0,
        ended,
    }))
}

/// Signs an agent in to or out of a formal group: stored, applied to routing at once, audited.
/// Administrators for anyone; managers for the agents of their groups; an agent for themself.
#[utoipa::path(put, path = "/api/groups/{id}/sign-ins/{agent_id}", tag = "groups",
    request_body = SignInBody,
    params(("id" = i64, Path, description = "group id"), ("agent_id" = i64, Path, description = "agent id")),
    responses((status = 200, body = SignInDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn set_sign_in(
    State(shared): State<Shared>,
    caller: Caller,
    Params((id, agent_id)): Params<(i64, i64)>,
    Body(body): Body<SignInBody>,
) -> Result<Json<SignInDoc>, ApiError> {
    let group = shared.store.get_group(GroupId(id)).await?;
    let agent = shared.store.get_agent(AgentId(agent_id)).await?;
    match caller.role() {
        Role::Agent if caller.subject() != agent.sip_uri.as_str() => {
            return Err(ApiError::Forbidden(Refusal::AgentSelfOnly));
        }
        Role::Agent => {}
        Role::Admin | Role::Manager => check_group_scope(&shared, &caller, &group.name).await?,
    }
    let store = &shared.store;
    let changed = if body.signed_in {
        store.sign_in(&agent.sip_uri, &group.name).await?
    } else {
        store.sign_out(&agent.sip_uri, &group.name).await?
    };
    let routed = match shared
        .live
        .set_signed_in(&agent.sip_uri, &group.name, body.signed_in)
        .await
    {
        Ok(routed) => routed,
        Err(e) => {
            // The store accepted it, so the table is behind the database: rebuild and retry.
            tracing::warn!("routing table out of step ({e}); rebuilding");
            rebuild_routing(&shared).await?;
            shared
                .live
                .set_signed_in(&agent.sip_uri, &group.name, body.signed_in)
                .await
                .unwrap_or(false)
        }
    };
    let action = if body.signed_in {
        "agent.sign_in"
    } else {
        "agent.sign_out"
    };
    audit(
        &shared,
        &caller,
        action,
        agent.sip_uri.as_str(),
        json!({ "group": group.name, "changed": changed }),
    )
    .await?;
    Ok(Json(SignInDoc {
        agent: agent.sip_uri.0,
        group: group.name,
        signed_in: body.signed_in,
        changed,
        routed,
    }))
}

// ---------------------------------------------------------------------------------------------
// Me

/// Who the token speaks for; for an agent, their groups (with sign-in state) and live state.
#[utoipa::path(get, path = "/api/me", tag = "agents",
    responses((status = 200, body = MeDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn me(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<MeDoc>, ApiError> {
    let uri = SipUri(caller.subject().to_owned());
    let agent_id = match shared.store.get_agent_by_uri(&uri).await {
        Ok(a) => Some(a.id.0),
        Err(crate::store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut groups = Vec::new();
    if agent_id.is_some() {
        let signed: Vec<String> = shared.store.signed_in_groups(&uri).await?;
        for g in shared.store.list_groups().await? {
            if !g.agents.contains(&uri) {
                continue;
            }
            groups.push(MyGroup {
                id: g.id.0,
                signed_in: g.participation == Participation::Informal || signed.contains(&g.name),
                participation: g.participation.into(),
                name: g.name,
            });
        }
    }
    Ok(Json(MeDoc {
        role: caller.role().as_str(),
        subject: caller.subject().to_owned(),
        agent_id,
        groups,
        state: shared.live.agent(&uri),
    }))
}
