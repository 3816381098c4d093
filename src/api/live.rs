//! [`Live`]: the live side of the server as the API sees it: the agent table routing reads,
//! the calls in progress, metrics, and a broadcast of changes for server-sent events.
//!
//! # Who writes what
//!
//! - The **agent table** ([`AgentTable`]) is shared with routing through
//!   [`Live::agent_table`] (an `ArcSwap`): the call driver loads it for every decision and the
//!   API flips formal sign-in flags in it. A change of membership rebuilds the table from the
//!   configuration with the database's version of each configured group and carries states
//!   over ([`Live::rebuild`]), so routing sees it at once. Agents are matched by SIP URI and
//!   groups by name, never by index (a reload may reorder, add or drop groups); formal sign-in
//!   is set from the store's sign-in state, its source of truth.
//! - Everything here names groups by name and looks them up in the table it reads: the
//!   configuration and the table are swapped one after the other during a reload, so an index
//!   from one may name another group (or none) in the other.
//! - **Calls in progress** are reported by the call driver through `Live`'s implementation of
//!   [`CallObserver`] (which the daemon hands to the driver), landing in [`Live::call_update`]
//!   and [`Live::call_ended`]; the API only reads them. The same reports count ended calls by
//!   outcome and feed the queue-wait histogram.
//! - **Metrics** ([`Metrics`]) are atomics the other layers bump on their hot paths.
//!
//! Every change is announced on a `broadcast` channel ([`Live::subscribe`]); the SSE stream
//! answers each announcement with a fresh snapshot, so a slow client that misses some
//! announcements (lag) still ends up with the current state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::broadcast;

use super::metrics::Metrics;
pub use super::snapshot::{AgentSnapshot, CallPhase, LiveCall, LiveSnapshot, QueueSnapshot};
use crate::acd::agents::{AgentState, AgentTable, SignInError};
use crate::acd::observe::{CallObserver, CallSnapshot};
use crate::clock::SharedClock;
use crate::config::model::{AgentGroupId, Config, Participation, SipUri};
use crate::store::{CallOutcome, Group, Store, StoreError};

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

/// The live state shared by the API, routing and the call driver (which reports calls through
/// its [`CallObserver`] implementation).
#[derive(Debug)]
pub struct Live {
    /// The table routing reads. The driver loads it for each decision.
    agents: Arc<ArcSwap<AgentTable>>,
    /// Wall-clock time of the current table's epoch (its `idle_since` counts from there).
    epoch_wall: ArcSwap<DateTime<Utc>>,
    /// Serialises rebuilds and sign-in flips: two API writers must not both carry over from the
    /// same old table, and a flip must not land on a table about to be replaced. Async: a
    /// rebuild holds it while it reads the store, so the sign-in state it reads is exactly what
    /// the API has written (each API sign-in writes the store, then flips under this lock).
    rebuild_lock: AsyncMutex<()>,
    calls: Mutex<BTreeMap<String, LiveCall>>,
    events: broadcast::Sender<LiveEvent>,
    clock: SharedClock,
    pub metrics: Metrics,
}

impl Live {
    /// Builds the agent table from `config` with the database's version of each configured
    /// group, and signs in every agent the database says is signed in (state survives a
    /// restart).
    ///
    /// # Errors
    /// The store could not be read.
    pub async fn start(
        config: &Config,
        store: &Store,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let groups = store.list_groups().await?;
        let now = tokio::time::Instant::now().into_std();
        let table = AgentTable::from_config(&routing_config(config, &groups), now);
        let sign_ins = store.sign_in_state().await?;
        table.set_sign_ins(sign_ins.iter().map(|s| (&s.agent, s.group.as_str())));
        let (events, _) = broadcast::channel(64);
        Ok(Self {
            agents: Arc::new(ArcSwap::from_pointee(table)),
            epoch_wall: ArcSwap::from_pointee(clock.now_utc()),
            rebuild_lock: AsyncMutex::new(()),
            calls: Mutex::new(BTreeMap::new()),
            events,
            clock,
            metrics: Metrics::default(),
        })
    }

    /// The agent table routing reads; hand this to the call driver.
    pub fn agent_table(&self) -> Arc<ArcSwap<AgentTable>> {
        Arc::clone(&self.agents)
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
        // Under the rebuild lock: a rebuild between loading the table and flipping the flag
        // would otherwise carry the old flag over and lose this change.
        let _guard = self.rebuild_lock.lock().await;
        let table = self.agents.load();
        let (Some(gid), Some(aid)) = (table.group_id(group), table.id(agent)) else {
            return Ok(false);
        };
        let now = tokio::time::Instant::now().into_std();
        if signed_in {
            table.sign_in(aid, gid, now)?;
        } else {
            table.sign_out(aid, gid)?;
        }
        self.announce(LiveEvent::SignIn);
        Ok(true)
    }

    /// Rebuilds the routing table after a group or membership change, or a reload: the
    /// configuration's groups, each replaced by its database version (`store.list_groups()`).
    /// Agent states, idle clocks and round-robin positions are carried over from the old table
    /// by agent URI and group name ([`AgentTable::carry_over`]); formal sign-ins are set from
    /// the store's sign-in state, so a group put back in the file gets its stored sign-ins
    /// again and a group that moved keeps its own.
    ///
    /// # Errors
    /// The store could not be read; the table in force stays.
    pub async fn rebuild(&self, config: &Config, store: &Store) -> Result<(), StoreError> {
        let _guard = self.rebuild_lock.lock().await;
        let groups = store.list_groups().await?;
        let sign_ins = store.sign_in_state().await?;
        let now = tokio::time::Instant::now().into_std();
        let table = AgentTable::from_config(&routing_config(config, &groups), now);
        table.carry_over(&self.agents.load());
        table.set_sign_ins(sign_ins.iter().map(|s| (&s.agent, s.group.as_str())));
        self.agents.store(Arc::new(table));
        self.epoch_wall.store(Arc::new(self.clock.now_utc()));
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
        let table = self.agents.load();
        let epoch = **self.epoch_wall.load();
        let queues = config
            .queues
            .iter()
            .filter(|q| scope.queue(&q.name))
            .map(|q| queue_snapshot(&table, config, q, &calls, at))
            .collect();
        let mut agents = Vec::new();
        for i in 0..table.len() {
            let aid = crate::acd::agents::AgentId(u32::try_from(i).unwrap_or(u32::MAX));
            let member_of: Vec<(AgentGroupId, &str)> = table
                .groups_of(aid)
                .iter()
                .map(|&g| (g, table.group(g).name.as_str()))
                .filter(|(_, name)| scope.group(name))
                .collect();
            if member_of.is_empty() && !scope.everything() {
                continue;
            }
            agents.push(agent_snapshot(&table, aid, &member_of, &calls, epoch));
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
        let table = self.agents.load();
        let aid = table.id(uri)?;
        let member_of: Vec<(AgentGroupId, &str)> = table
            .groups_of(aid)
            .iter()
            .map(|&g| (g, table.group(g).name.as_str()))
            .collect();
        let calls: Vec<LiveCall> = self.lock_calls().values().cloned().collect();
        Some(agent_snapshot(
            &table,
            aid,
            &member_of,
            &calls,
            **self.epoch_wall.load(),
        ))
    }

    /// Whether routing has `agent` signed in to `group` (by name); `None` when routing does not
    /// know the pair.
    pub fn is_signed_in(&self, agent: &SipUri, group: &str) -> Option<bool> {
        let table = self.agents.load();
        let gid = table.group_id(group)?;
        let aid = table.id(agent)?;
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
}

/// The configuration routing uses: each configured group replaced by the database's version
/// of it (same name), so API edits of members, alert time and routing take effect. Groups only
/// in the database are not routed (no queue refers to them).
fn routing_config(config: &Config, groups: &[Group]) -> Config {
    let mut routed = config.clone();
    for g in &mut routed.agent_groups {
        if let Some(db) = groups.iter().find(|d| d.name == g.name) {
            *g = db.to_agent_group();
        }
    }
    routed
}

fn state_name(state: AgentState) -> &'static str {
    match state {
        AgentState::Idle => "idle",
        AgentState::Ringing(_) => "ringing",
        AgentState::Busy { .. } => "busy",
        AgentState::WrapUp => "wrap_up",
        AgentState::Offline => "offline",
    }
}

fn queue_snapshot(
    table: &AgentTable,
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
    let (mut signed_in, mut eligible, mut busy) = (0, 0, 0);
    // The queue's groups by name: `config` and `table` may be a reload apart.
    let groups = queue
        .agent_groups
        .iter()
        .filter_map(|g| config.agent_groups.get(g.0 as usize))
        .filter_map(|g| table.group_id(&g.name));
    for gid in groups {
        let group = table.group(gid);
        for (i, &aid) in group.members.iter().enumerate() {
            if !table.is_member_signed_in(group, i) || !seen.insert(aid) {
                continue;
            }
            signed_in += 1;
            match table.state(aid) {
                AgentState::Idle => eligible += 1,
                AgentState::Ringing(_) | AgentState::Busy { .. } | AgentState::WrapUp => busy += 1,
                AgentState::Offline => {}
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
    }
}

fn agent_snapshot(
    table: &AgentTable,
    aid: crate::acd::agents::AgentId,
    member_of: &[(AgentGroupId, &str)],
    calls: &[LiveCall],
    epoch: DateTime<Utc>,
) -> AgentSnapshot {
    let uri = table.uri(aid);
    let idle_ns = i64::try_from(table.idle_since(aid)).unwrap_or(i64::MAX);
    let signed_in = member_of
        .iter()
        .filter(|(g, _)| {
            table.group(*g).participation == Participation::Formal && table.is_signed_in(aid, *g)
        })
        .map(|(_, name)| (*name).to_owned())
        .collect();
    AgentSnapshot {
        sip_uri: uri.to_string(),
        state: state_name(table.state(aid)),
        current_call: calls
            .iter()
            .find(|c| c.agent.as_deref() == Some(uri.as_str()))
            .map(|c| c.call_id.clone()),
        idle_since: epoch + chrono::Duration::nanoseconds(idle_ns),
        signed_in,
    }
}
