//! [`Live`]: the live side of the server as the API sees it: the agent states routing writes,
//! the calls in progress, metrics, and a broadcast of changes for server-sent events.
//!
//! # Who writes what
//!
//! - The **agent table** belongs to `acd` ([`Acd`]): `Live` only reads it for snapshots, and
//!   hands the API's changes to it: a change of membership is an [`Acd::reload`]
//!   ([`Live::rebuild`]), a formal sign-in [`Acd::set_signed_in`]. The store stays the source
//!   of truth for sign-in; the reload reads it back.
//! - Everything here names groups by name and looks them up in the table's membership
//!   snapshot: the configuration's indexes are not the table's ids.
//! - **Calls in progress** are reported by the call driver through `Live`'s implementation of
//!   [`CallObserver`] (which the daemon hands to the driver), landing in [`Live::call_update`]
//!   and [`Live::call_ended`]; the API only reads them. The same reports count ended calls by
//!   outcome and feed the queue-wait histogram.
//! - **Metrics** ([`Metrics`]) are atomics the other layers bump on their hot paths.
//!
//! Every change is announced on a `broadcast` channel ([`Live::subscribe`]); the SSE stream
//! answers each announcement with a fresh snapshot, so a slow client that misses some
//! announcements (lag) still ends up with the current state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::metrics::Metrics;
pub(crate) use super::snapshot::{AgentSnapshot, CallPhase, LiveCall, LiveSnapshot, QueueSnapshot};
use crate::acd::agents::{AgentId, AgentState, AgentTable, Membership, SignInError};
use crate::acd::observe::{CallObserver, CallSnapshot};
use crate::acd::runtime::{Acd, Change, ReloadError};
use crate::clock::SharedClock;
use crate::config::model::{AgentGroupId, Config, Participation, SipUri};
use crate::store::{CallOutcome, StoreError};

/// What changed (the SSE stream re-sends the snapshot on each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEvent {
    SignIn,
    Calls,
    Agents,
}

/// What a reader of the live state may see. The API's `auth::Scope` implements it; keeping it a
/// trait keeps this module free of the API's notion of roles, so it can move next to routing.
pub trait Visibility {
    /// Sees everything (then agents outside any visible group are listed too).
    fn everything(&self) -> bool;
    fn workflow(&self, name: &str) -> bool;
    fn queue(&self, name: &str) -> bool;
    fn group(&self, name: &str) -> bool;
}

/// The live state the API reads: the agent table `acd` owns (through [`Acd`]) and the calls in
/// progress the call driver reports through its [`CallObserver`] implementation.
#[derive(Debug)]
pub struct Live {
    /// Owner of the agent table and of the reload the API's changes go through.
    acd: Arc<Acd>,
    /// Wall-clock time of the agent table's epoch (its `idle_since` counts from there).
    epoch_wall: DateTime<Utc>,
    calls: Mutex<BTreeMap<String, LiveCall>>,
    /// Announcements played to each queue's waiting callers since start, by queue name.
    announced: Mutex<HashMap<String, u64>>,
    events: broadcast::Sender<LiveEvent>,
    clock: SharedClock,
    pub metrics: Metrics,
}

impl Live {
    /// The live state over `acd`'s agent table.
    pub fn new(acd: Arc<Acd>, clock: SharedClock) -> Self {
        let (events, _) = broadcast::channel(64);
        // The table was created a moment ago (start-up): its epoch on the wall clock is now, to
        // the start-up's few milliseconds.
        let epoch_wall = clock.now_utc();
        Self {
            acd,
            epoch_wall,
            calls: Mutex::new(BTreeMap::new()),
            announced: Mutex::new(HashMap::new()),
            events,
            clock,
            metrics: Metrics::default(),
        }
    }

    /// The process's agent table (read-only use: snapshots, tests).
    pub fn agents(&self) -> &Arc<AgentTable> {
        self.acd.agents()
    }

    /// Subscribes to change announcements.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    fn announce(&self, event: LiveEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Flips the routing flag for `agent` in `group` (by name). Returns `false` when routing
    /// does not know the pair (an API-only or retired group: stored, not routed).
    ///
    /// # Errors
    /// The agent is not a member of the group in the routing table, or the group is informal.
    pub async fn set_signed_in(
        &self,
        agent: &SipUri,
        group: &str,
        signed_in: bool,
    ) -> Result<bool, SignInError> {
        let routed = self.acd.set_signed_in(agent, group, signed_in).await?;
        if routed {
            self.announce(LiveEvent::SignIn);
        }
        Ok(routed)
    }

    /// Ends the agent's wrap-up now (they ended it on their page): the queues of their groups
    /// offer them calls again. Returns whether they were in wrap-up.
    pub fn end_wrap_up(&self, agent: &SipUri) -> bool {
        let ended = self.acd.end_wrap_up(agent);
        if ended {
            self.announce(LiveEvent::Agents);
        }
        ended
    }

    /// After a group or membership change in the database: the same reload SIGHUP uses, with
    /// the configuration in force ([`Change::Membership`]).
    ///
    /// # Errors
    /// The store could not be read; the membership in force stays.
    pub async fn rebuild(&self) -> Result<(), StoreError> {
        match self.acd.reload(Change::Membership).await {
            Ok(()) => {}
            Err(ReloadError::Store(e)) => return Err(e),
            // A membership change renders no prompt; should one fail, the membership stays.
            Err(e) => tracing::error!("membership change not applied: {e}"),
        }
        self.announce(LiveEvent::Agents);
        Ok(())
    }

    /// The call driver reports a new call or a change of phase.
    pub fn call_update(&self, call: LiveCall) {
        self.lock_calls().insert(call.call_id.clone(), call);
        self.announce(LiveEvent::Calls);
    }

    /// The call driver reports that a call ended.
    pub fn call_ended(&self, call_id: &str) {
        let removed = self.lock_calls().remove(call_id).is_some();
        // A call refused before it was reported changes nothing on the wallboard.
        if removed {
            self.announce(LiveEvent::Calls);
        }
    }

    /// An announcement was played to `call_id` (position, expected wait or periodic prompt):
    /// counted for the queue it waits in.
    pub fn count_announcement(&self, call_id: &str) {
        let queue = self.lock_calls().get(call_id).and_then(|c| c.queue.clone());
        if let Some(queue) = queue {
            *self
                .announced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(queue)
                .or_default() += 1;
            self.announce(LiveEvent::Calls);
        }
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LiveCall>> {
        // A std mutex: held for a map operation, never across an await.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Everything live that `scope` may see, at the clock's "now".
    pub fn snapshot(&self, config: &Config, scope: &impl Visibility) -> LiveSnapshot {
        let at = self.clock.now_utc();
        let calls: Vec<LiveCall> = self
            .lock_calls()
            .values()
            .filter(|c| scope.workflow(&c.workflow))
            .cloned()
            .collect();
        let table = self.acd.agents();
        let membership = table.membership_full();
        let epoch = self.epoch_wall;
        let announced = self
            .announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let queues = config
            .queues
            .iter()
            .filter(|q| scope.queue(&q.name))
            .map(|q| {
                let mut snapshot = queue_snapshot(table, &membership, config, q, &calls, at);
                snapshot.announcements = announced.get(&q.name).copied().unwrap_or(0);
                snapshot
            })
            .collect();
        let mut agents = Vec::new();
        for &aid in membership.agents() {
            let member_of: Vec<(AgentGroupId, &str)> = member_of(&membership, aid)
                .into_iter()
                .filter(|(_, name)| scope.group(name))
                .collect();
            if member_of.is_empty() && !scope.everything() {
                continue;
            }
            agents.push(agent_snapshot(
                table,
                &membership,
                aid,
                &member_of,
                &calls,
                epoch,
            ));
        }
        LiveSnapshot {
            at,
            queues,
            agents,
            calls,
        }
    }

    /// One agent's live state (for the agent page), if routing knows the agent.
    pub fn agent(&self, uri: &SipUri) -> Option<AgentSnapshot> {
        let table = self.acd.agents();
        let membership = table.membership_full();
        let aid = membership.id(uri)?;
        let member_of = member_of(&membership, aid);
        let calls: Vec<LiveCall> = self.lock_calls().values().cloned().collect();
        Some(agent_snapshot(
            table,
            &membership,
            aid,
            &member_of,
            &calls,
            self.epoch_wall,
        ))
    }

    /// Whether routing has `agent` signed in to `group` (by name); `None` when routing does not
    /// know the pair.
    pub fn is_signed_in(&self, agent: &SipUri, group: &str) -> Option<bool> {
        let table = self.acd.agents();
        let membership = table.membership();
        let gid = membership.group_id(group)?;
        let aid = membership.id(agent)?;
        Some(table.is_signed_in(aid, gid))
    }
}

/// The call driver's reports: the registry of calls in progress, ended calls by outcome, and
/// the queue-wait histogram (one observation per call that queued, its total queue wait).
impl CallObserver for Live {
    fn call_updated(&self, call: &CallSnapshot) {
        self.call_update(call.into());
    }

    fn call_ended(&self, call_id: &str, outcome: CallOutcome, wait: Option<std::time::Duration>) {
        self.metrics.call_ended(outcome);
        if let Some(wait) = wait {
            self.metrics.observe_wait(wait);
        }
        // Inherent method (the registry); the trait method of the same name is this one.
        Live::call_ended(self, call_id);
    }

    fn agent_changed(&self) {
        self.announce(LiveEvent::Agents);
    }

    fn announced(
        &self,
        call_id: &str,
        position: Option<u32>,
        expected_wait: Option<std::time::Duration>,
    ) {
        self.metrics
            .announced(position.is_some(), expected_wait.is_some());
        self.count_announcement(call_id);
    }
}

/// The routed groups `agent` belongs to, with their names.
fn member_of(membership: &Membership, agent: AgentId) -> Vec<(AgentGroupId, &str)> {
    membership
        .groups_of(agent)
        .iter()
        .filter_map(|&g| membership.group(g).map(|m| (g, m.name.as_str())))
        .collect()
}

fn state_name(state: AgentState) -> &'static str {
    match state {
        AgentState::Idle => "idle",
        AgentState::Ringing(_) => "ringing",
        AgentState::Busy { .. } => "busy",
        AgentState::WrapUp => "wrap_up",
    }
}

fn queue_snapshot(
    table: &AgentTable,
    membership: &Membership,
    config: &Config,
    queue: &crate::config::model::Queue,
    calls: &[LiveCall],
    at: DateTime<Utc>,
) -> QueueSnapshot {
    let waiting: Vec<&LiveCall> = calls
        .iter()
        .filter(|c| {
            matches!(c.phase, CallPhase::Waiting | CallPhase::Ringing)
                && c.queue.as_deref() == Some(queue.name.as_str())
        })
        .collect();
    let longest_wait_seconds = waiting
        .iter()
        .filter_map(|c| c.queued_at)
        .map(|q| u64::try_from((at - q).num_seconds()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut seen = std::collections::BTreeSet::new();
    let (mut signed_in, mut eligible, mut busy, mut wrap_up) = (0, 0, 0, 0);
    // The queue's groups by name: configuration indexes are not the table's ids.
    let groups = queue
        .agent_groups
        .iter()
        .filter_map(|g| config.agent_groups.get(g.0 as usize))
        .filter_map(|g| membership.group_id(&g.name))
        .filter_map(|gid| membership.group(gid));
    for group in groups {
        for (i, &aid) in group.members.iter().enumerate() {
            if !table.is_member_signed_in(group, i) || !seen.insert(aid) {
                continue;
            }
            signed_in += 1;
            match table.state(aid) {
                Some(AgentState::Idle) => eligible += 1,
                Some(AgentState::Ringing(_) | AgentState::Busy { .. }) => busy += 1,
                Some(AgentState::WrapUp) => wrap_up += 1,
                None => {}
            }
        }
    }
    QueueSnapshot {
        name: queue.name.clone(),
        waiting: waiting.len(),
        longest_wait_seconds,
        agents_signed_in: signed_in,
        agents_eligible: eligible,
        agents_busy: busy,
        agents_wrap_up: wrap_up,
        announcements: 0,
    }
}

fn agent_snapshot(
    table: &AgentTable,
    membership: &Membership,
    aid: AgentId,
    member_of: &[(AgentGroupId, &str)],
    calls: &[LiveCall],
    epoch: DateTime<Utc>,
) -> AgentSnapshot {
    let uri = table.uri(aid).map(SipUri::as_str).unwrap_or_default();
    let idle_ns = i64::try_from(table.idle_since(aid)).unwrap_or(i64::MAX);
    let signed_in = member_of
        .iter()
        .filter(|(g, _)| {
            membership
                .group(*g)
                .is_some_and(|m| m.participation == Participation::Formal)
                && table.is_signed_in(aid, *g)
        })
        .map(|(_, name)| (*name).to_owned())
        .collect();
    AgentSnapshot {
        sip_uri: uri.to_owned(),
        state: table.state(aid).map_or("unknown", state_name),
        wrap_up_until: table
            .wrap_up_until(aid)
            .map(|ns| epoch + chrono::Duration::nanoseconds(i64::try_from(ns).unwrap_or(i64::MAX))),
        current_call: calls
            .iter()
            .find(|c| c.agent.as_deref() == Some(uri))
            .map(|c| c.call_id.clone()),
        idle_since: epoch + chrono::Duration::nanoseconds(idle_ns),
        signed_in,
    }
}
