//! The agent table: one for the whole server, shared by every queue owner and call task.
//!
//! An agent in several groups and queues has one entry, so it is never offered two calls at
//! once (attendant groups excepted, by design: they ring busy agents too). Nothing here takes a
//! lock:
//!
//! - each agent's state is one `AtomicU64` word (see [`AgentState`]); claiming an agent for a
//!   call is a single `compare_exchange(free → ringing for this call)`, so two queue owners
//!   racing for the same agent cannot both win, and neither waits;
//! - the idle clock (for longest idle) is an `AtomicU64` of nanoseconds since the table's epoch;
//! - formal sign-in is one `AtomicBool` per (group, member), written by the API, read by routing;
//! - the round-robin position is one `AtomicU32` per group (kept per agent group:
//!   `docs/behaviour.md`, Agent groups).
//!
//! Membership (which agents are in which group, in which order) is fixed when the table is
//! built from a [`Config`]; a reload builds a new table and carries states over
//! ([`AgentTable::carry_over`]): agents by SIP URI and groups by name, never by index, since a
//! new file may reorder, insert or drop groups and agents (ids and group ids are only indexes
//! into one table).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::model::{AgentGroupId, Config, Participation, RoutingMethod, SipUri};
pub use crate::workflow::call::AgentId;

/// Identifies a call in the agent table (who an agent is ringing for). Allocated by the driver,
/// unique among live calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u32);

// The state word: bits 0..16 rgsd calls in progress, bits 16..24 flags, bits 24..64 the call the
// agent is ringing for (CallKey + 1; 0 = not ringing). An agent is free exactly when the word is 0.
const CALLS_MASK: u64 = 0xFFFF;
const OFFLINE: u64 = 1 << 16;
const WRAP_UP: u64 = 1 << 17;
const RINGING_SHIFT: u32 = 24;
const RINGING_MASK: u64 = !((1 << RINGING_SHIFT) - 1);
const NO_RR_POSITION: u32 = u32::MAX;

fn ringing_bits(call: CallKey) -> u64 {
    (u64::from(call.0) + 1) << RINGING_SHIFT
}

/// A snapshot of one agent's state, for the API and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Free: may be offered a call.
    Idle,
    /// Claimed for this call; its phone is (about to be) ringing.
    Ringing(CallKey),
    /// On `calls` rgsd calls (more than one only through attendant groups).
    Busy { calls: u16 },
    /// After a call, not taking calls until wrap-up ends.
    WrapUp,
    /// Unreachable or do-not-disturb: no group offers calls, not even attendant.
    Offline,
}

/// Why a sign-in or sign-out was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The agent is not a member of that group; nothing to sign in to.
    #[error("agent {agent:?} is not a member of agent group {group:?}")]
    NotAMember { agent: AgentId, group: AgentGroupId },
    /// Informal groups have no sign-in: members are always in.
    #[error("agent group {0:?} is informal: its members cannot sign in or out")]
    Informal(AgentGroupId),
}

/// One agent group as routing sees it.
#[derive(Debug)]
pub struct GroupMembers {
    /// The group's name: what identifies it across tables (its id is only its index in one).
    pub name: String,
    pub routing: RoutingMethod,
    pub participation: Participation,
    pub alert_time: Duration,
    /// In configured order (serial and round robin follow it).
    pub members: Vec<AgentId>,
    /// Formal sign-in, one flag per member (same index as `members`). Unused for informal groups.
    signed_in: Box<[AtomicBool]>,
    /// Index in `members` of the agent offered the group's last call; `u32::MAX` for none yet.
    rr_last: AtomicU32,
}

/// The server-wide agent table.
#[derive(Debug)]
pub struct AgentTable {
    uris: Vec<SipUri>,
    by_uri: HashMap<SipUri, AgentId>,
    /// State words, packed: 8 agents to a cache line. Longest idle, parallel and a group with
    /// nobody free read every member's word per decision; packed, the scan of an 8,000-agent
    /// group with one agent free takes 11 µs instead of 15.5 µs padded to a line each (the
    /// routing bench with one group of 8,000). The price is false sharing when two queues claim
    /// neighbouring agents at the same instant: a cache line bouncing, nanoseconds at call rates.
    words: Box<[AtomicU64]>,
    /// Nanoseconds since `epoch` at which each agent's idle clock started.
    idle_since: Box<[AtomicU64]>,
    /// Time zero of `idle_since`; the table's creation (start-up).
    epoch: Instant,
    groups: Vec<GroupMembers>,
    /// Group name → id in this table.
    group_ids: HashMap<String, AgentGroupId>,
    /// (agent, group) → index in that group's `members`.
    positions: HashMap<(AgentId, AgentGroupId), u32>,
    /// Per agent, the groups it belongs to, in group order.
    memberships: Vec<Vec<AgentGroupId>>,
}

impl AgentTable {
    /// Builds the table from the configured groups: one agent per distinct URI, in order of
    /// first appearance. Every agent starts idle, its idle clock at `now` (start-up), and
    /// signed out of its formal groups.
    pub fn from_config(config: &Config, now: Instant) -> Self {
        let mut uris = Vec::new();
        let mut by_uri = HashMap::new();
        let mut positions = HashMap::new();
        let mut groups = Vec::with_capacity(config.agent_groups.len());
        let mut group_ids = HashMap::with_capacity(config.agent_groups.len());
        for (g, group) in config.agent_groups.iter().enumerate() {
            let gid = AgentGroupId(u32::try_from(g).unwrap_or(u32::MAX));
            // Names are unique (the config compiler checks); a duplicate keeps the first.
            group_ids.entry(group.name.clone()).or_insert(gid);
            let mut members = Vec::with_capacity(group.agents.len());
            for uri in &group.agents {
                let id = *by_uri.entry(uri.clone()).or_insert_with(|| {
                    uris.push(uri.clone());
                    AgentId(u32::try_from(uris.len() - 1).unwrap_or(u32::MAX))
                });
                positions
                    .entry((id, gid))
                    .or_insert(u32::try_from(members.len()).unwrap_or(u32::MAX));
                members.push(id);
            }
            groups.push(GroupMembers {
                name: group.name.clone(),
                routing: group.routing,
                participation: group.participation,
                alert_time: group.alert_time,
                signed_in: members.iter().map(|_| AtomicBool::new(false)).collect(),
                members,
                rr_last: AtomicU32::new(NO_RR_POSITION),
            });
        }
        let n = uris.len();
        let mut memberships = vec![Vec::new(); n];
        for (g, group) in groups.iter().enumerate() {
            let gid = AgentGroupId(u32::try_from(g).unwrap_or(u32::MAX));
            for member in &group.members {
                let list: &mut Vec<AgentGroupId> = &mut memberships[member.0 as usize];
                if !list.contains(&gid) {
                    list.push(gid);
                }
            }
        }
        Self {
            uris,
            by_uri,
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            idle_since: (0..n).map(|_| AtomicU64::new(0)).collect(),
            epoch: now,
            groups,
            group_ids,
            positions,
            memberships,
        }
    }

    /// Copies states, idle clocks, sign-ins and round-robin positions from the table this one
    /// replaces (reload, API change of membership). Agents are matched by SIP URI and groups by
    /// name, never by index: a group the new table does not have leaves nothing behind, and a
    /// group that moved keeps its own state.
    ///
    /// - An agent's state word and idle clock follow its URI.
    /// - A formal sign-in follows (group name, agent URI), when the group was formal in both
    ///   tables (an informal group has no sign-in to carry; the caller restores stored state,
    ///   see [`Self::set_sign_ins`]).
    /// - The round-robin position follows the agent last offered: it points at the same agent
    ///   in the new member list, wherever it now stands; if that agent left the group, the
    ///   group starts again from its first member.
    pub fn carry_over(&self, old: &Self) {
        for (id, uri) in self.uris.iter().enumerate() {
            if let Some(&old_id) = old.by_uri.get(uri) {
                let word = old.words[old_id.0 as usize].load(Ordering::Acquire);
                self.words[id].store(word, Ordering::Release);
                let since = old.idle_since_instant(old_id);
                self.idle_since[id].store(self.nanos(since), Ordering::Release);
            }
        }
        for group in &self.groups {
            let Some(old_gid) = old.group_id(&group.name) else {
                continue;
            };
            let old_group = old.group(old_gid);
            if group.participation == Participation::Formal
                && old_group.participation == Participation::Formal
            {
                for (i, &member) in group.members.iter().enumerate() {
                    if let Some(old_id) = old.id(self.uri(member))
                        && old.is_signed_in(old_id, old_gid)
                    {
                        group.signed_in[i].store(true, Ordering::Release);
                    }
                }
            }
            let last = old
                .round_robin_last(old_group)
                .and_then(|i| old_group.members.get(i))
                .and_then(|&old_agent| self.id(old.uri(old_agent)))
                .and_then(|agent| group.members.iter().position(|&m| m == agent));
            if let Some(index) = last {
                self.set_round_robin_last(group, index);
            }
        }
    }

    /// Sets every formal sign-in flag to what `signed_in` lists as (agent URI, group name) pairs
    /// (the store's sign-in state); pairs this table does not route are ignored. Idle clocks are
    /// left alone: this restores state, it is not a sign-in. Meant for a table not yet shared.
    pub fn set_sign_ins<'a>(&self, signed_in: impl IntoIterator<Item = (&'a SipUri, &'a str)>) {
        for group in &self.groups {
            for flag in &group.signed_in {
                flag.store(false, Ordering::Release);
            }
        }
        for (uri, name) in signed_in {
            let (Some(agent), Some(group)) = (self.id(uri), self.group_id(name)) else {
                continue;
            };
            if let Ok(flag) = self.sign_in_flag(agent, group) {
                flag.store(true, Ordering::Release);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.uris.len()
    }

    pub fn is_empty(&self) -> bool {
        self.uris.is_empty()
    }

    pub fn id(&self, uri: &SipUri) -> Option<AgentId> {
        self.by_uri.get(uri).copied()
    }

    pub fn uri(&self, agent: AgentId) -> &SipUri {
        &self.uris[agent.0 as usize]
    }

    /// The groups the agent belongs to: their queues need [`Command::AgentAvailable`] when it
    /// frees up.
    ///
    /// [`Command::AgentAvailable`]: super::queue::Command::AgentAvailable
    pub fn groups_of(&self, agent: AgentId) -> &[AgentGroupId] {
        &self.memberships[agent.0 as usize]
    }

    /// The id in this table of the group named `name`.
    pub fn group_id(&self, name: &str) -> Option<AgentGroupId> {
        self.group_ids.get(name).copied()
    }

    pub fn group(&self, group: AgentGroupId) -> &GroupMembers {
        &self.groups[group.0 as usize]
    }

    /// The group, if this table has it: a queue owner's group ids can briefly belong to the
    /// previous configuration while a reload swaps the table and reconfigures the owners.
    pub fn get_group(&self, group: AgentGroupId) -> Option<&GroupMembers> {
        self.groups.get(group.0 as usize)
    }

    pub fn state(&self, agent: AgentId) -> AgentState {
        let word = self.word(agent).load(Ordering::Acquire);
        if word & OFFLINE != 0 {
            AgentState::Offline
        } else if word & RINGING_MASK != 0 {
            let key = (word >> RINGING_SHIFT) - 1;
            AgentState::Ringing(CallKey(u32::try_from(key).unwrap_or(u32::MAX)))
        } else if word & CALLS_MASK != 0 {
            let calls = u16::try_from(word & CALLS_MASK).unwrap_or(u16::MAX);
            AgentState::Busy { calls }
        } else if word & WRAP_UP != 0 {
            AgentState::WrapUp
        } else {
            AgentState::Idle
        }
    }

    /// Free: not offline, not ringing, not on an rgsd call, not in wrap-up.
    pub fn is_free(&self, agent: AgentId) -> bool {
        self.word(agent).load(Ordering::Acquire) == 0
    }

    /// Not offline (attendant groups ring busy agents too, never offline ones).
    pub fn is_reachable(&self, agent: AgentId) -> bool {
        self.word(agent).load(Ordering::Acquire) & OFFLINE == 0
    }

    /// In the group for routing: always for informal groups, when signed in for formal ones.
    pub fn is_signed_in(&self, agent: AgentId, group: AgentGroupId) -> bool {
        let g = &self.groups[group.0 as usize];
        match g.participation {
            Participation::Informal => true,
            Participation::Formal => self
                .positions
                .get(&(agent, group))
                .is_some_and(|&i| g.signed_in[i as usize].load(Ordering::Acquire)),
        }
    }

    /// `is_signed_in` by position in the group's member list (the routing hot path).
    pub fn is_member_signed_in(&self, group: &GroupMembers, index: usize) -> bool {
        match group.participation {
            Participation::Informal => true,
            Participation::Formal => group.signed_in[index].load(Ordering::Acquire),
        }
    }

    /// When the agent's idle clock started (last rgsd call ended, sign-in, or start-up).
    pub fn idle_since(&self, agent: AgentId) -> u64 {
        self.idle_since[agent.0 as usize].load(Ordering::Acquire)
    }

    fn idle_since_instant(&self, agent: AgentId) -> Instant {
        self.epoch + Duration::from_nanos(self.idle_since(agent))
    }

    /// The group's round-robin position: index of the member offered its last call.
    pub fn round_robin_last(&self, group: &GroupMembers) -> Option<usize> {
        match group.rr_last.load(Ordering::Relaxed) {
            NO_RR_POSITION => None,
            i => Some(i as usize),
        }
    }

    /// Moves the group's round-robin position to member `index` (the agent just offered).
    /// Relaxed: two queues racing may both store; either value keeps the rotation going.
    pub fn set_round_robin_last(&self, group: &GroupMembers, index: usize) {
        let index = u32::try_from(index).unwrap_or(NO_RR_POSITION);
        group.rr_last.store(index, Ordering::Relaxed);
    }

    /// Claims a free agent for `call`: `compare_exchange(free → ringing for call)`. Returns
    /// whether this caller won; on `false` the agent is busy, ringing for someone else, in
    /// wrap-up or offline.
    pub fn claim(&self, agent: AgentId, call: CallKey) -> bool {
        self.word(agent)
            .compare_exchange(0, ringing_bits(call), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends `call`'s claim on the agent (declined, failed, cancelled, timed out). Returns
    /// whether the agent was ringing for `call`; a claim by another call is left alone.
    pub fn release(&self, agent: AgentId, call: CallKey) -> bool {
        self.update(agent, |w| {
            (w & RINGING_MASK == ringing_bits(call)).then_some(w & !RINGING_MASK)
        })
    }

    /// The agent answered `call`: ends the claim (if it was ours) and counts one more rgsd call.
    pub fn answered(&self, agent: AgentId, call: CallKey) {
        self.update(agent, |w| {
            let w = if w & RINGING_MASK == ringing_bits(call) {
                w & !RINGING_MASK
            } else {
                w
            };
            Some(if w & CALLS_MASK == CALLS_MASK {
                w
            } else {
                w + 1
            })
        });
    }

    /// One of the agent's rgsd calls ended at `now`. When it was the last, the idle clock starts
    /// (`docs/behaviour.md`, Agent groups) and, with `wrap_up`, the agent enters wrap-up until
    /// [`Self::end_wrap_up`].
    pub fn call_ended(&self, agent: AgentId, now: Instant, wrap_up: bool) {
        let mut last = false;
        self.update(agent, |w| {
            let calls = (w & CALLS_MASK).saturating_sub(1);
            last = calls == 0;
            let flags = if last && wrap_up { WRAP_UP } else { 0 };
            Some((w & !CALLS_MASK) | calls | flags)
        });
        if last {
            self.start_idle_clock(agent, now);
        }
    }

    /// Wrap-up over: the agent is free again (its idle clock kept running since the call ended).
    pub fn end_wrap_up(&self, agent: AgentId) {
        self.update(agent, |w| Some(w & !WRAP_UP));
    }

    /// Marks the agent reachable or not (registration, presence, do-not-disturb). Coming back
    /// starts the idle clock.
    pub fn set_online(&self, agent: AgentId, online: bool, now: Instant) {
        let changed = self.update(agent, |w| {
            let next = if online { w & !OFFLINE } else { w | OFFLINE };
            (next != w).then_some(next)
        });
        if changed && online {
            self.start_idle_clock(agent, now);
        }
    }

    /// Formal sign-in to `group` at `now`; the idle clock starts (`docs/behaviour.md`, Agent
    /// groups).
    ///
    /// # Errors
    ///
    /// [`SignInError`] when the agent is not a member or the group is informal.
    pub fn sign_in(
        &self,
        agent: AgentId,
        group: AgentGroupId,
        now: Instant,
    ) -> Result<(), SignInError> {
        let flag = self.sign_in_flag(agent, group)?;
        if !flag.swap(true, Ordering::AcqRel) {
            self.start_idle_clock(agent, now);
        }
        Ok(())
    }

    /// Formal sign-out of `group`. A call already ringing is not withdrawn.
    ///
    /// # Errors
    ///
    /// [`SignInError`] when the agent is not a member or the group is informal.
    pub fn sign_out(&self, agent: AgentId, group: AgentGroupId) -> Result<(), SignInError> {
        self.sign_in_flag(agent, group)?
            .store(false, Ordering::Release);
        Ok(())
    }

    fn sign_in_flag(
        &self,
        agent: AgentId,
        group: AgentGroupId,
    ) -> Result<&AtomicBool, SignInError> {
        let g = self
            .groups
            .get(group.0 as usize)
            .ok_or(SignInError::NotAMember { agent, group })?;
        if g.participation == Participation::Informal {
            return Err(SignInError::Informal(group));
        }
        let index = self
            .positions
            .get(&(agent, group))
            .ok_or(SignInError::NotAMember { agent, group })?;
        Ok(&g.signed_in[*index as usize])
    }

    fn start_idle_clock(&self, agent: AgentId, now: Instant) {
        self.idle_since[agent.0 as usize].store(self.nanos(now), Ordering::Release);
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    fn word(&self, agent: AgentId) -> &AtomicU64 {
        &self.words[agent.0 as usize]
    }

    /// Compare-and-swap loop: `f` returns the new word, or `None` to leave it. Returns whether
    /// it wrote.
    fn update(&self, agent: AgentId, mut f: impl FnMut(u64) -> Option<u64>) -> bool {
        self.word(agent)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, &mut f)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::testing::{add_group, config, t0, uri};

    /// `n` seconds in the table's nanosecond idle clock.
    fn secs(n: u64) -> u64 {
        n * 1_000_000_000
    }

    fn table() -> (AgentTable, Instant) {
        let mut c = config();
        add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a", "b"],
        );
        add_group(
            &mut c,
            RoutingMethod::Parallel,
            Participation::Formal,
            20,
            &["b", "c"],
        );
        let now = t0();
        (AgentTable::from_config(&c, now), now)
    }

    #[test]
    fn one_entry_per_agent_across_groups() {
        let (t, _) = table();
        assert_eq!(t.len(), 3);
        let b = t.id(&uri("b")).unwrap();
        assert_eq!(t.group(AgentGroupId(0)).members[1], b);
        assert_eq!(t.group(AgentGroupId(1)).members[0], b);
        assert_eq!(t.uri(b), &uri("b"));
        assert_eq!(t.groups_of(b), &[AgentGroupId(0), AgentGroupId(1)]);
        assert_eq!(t.groups_of(AgentId(0)), &[AgentGroupId(0)]);
    }

    #[test]
    fn claim_is_exclusive_and_release_only_by_the_owner() {
        let (t, _) = table();
        let a = AgentId(0);
        assert!(t.claim(a, CallKey(7)));
        assert_eq!(t.state(a), AgentState::Ringing(CallKey(7)));
        assert!(
            !t.claim(a, CallKey(8)),
            "a second call cannot claim a ringing agent"
        );
        assert!(
            !t.release(a, CallKey(8)),
            "another call's release is ignored"
        );
        assert_eq!(t.state(a), AgentState::Ringing(CallKey(7)));
        assert!(t.release(a, CallKey(7)));
        assert_eq!(t.state(a), AgentState::Idle);
        assert!(t.claim(a, CallKey(0)), "key 0 is a valid key");
        assert_eq!(t.state(a), AgentState::Ringing(CallKey(0)));
        assert!(t.release(a, CallKey(0)));
        assert!(t.claim(a, CallKey(u32::MAX)));
        assert_eq!(t.state(a), AgentState::Ringing(CallKey(u32::MAX)));
    }

    #[test]
    fn claims_race_across_threads_exactly_one_wins() {
        let (t, _) = table();
        let wins = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for k in 0..8 {
                let (t, wins) = (&t, &wins);
                s.spawn(move || {
                    if t.claim(AgentId(2), CallKey(k)) {
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(wins.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn answer_end_and_idle_clock() {
        let (t, start) = table();
        let a = AgentId(0);
        assert!(t.claim(a, CallKey(1)));
        t.answered(a, CallKey(1));
        assert_eq!(t.state(a), AgentState::Busy { calls: 1 });
        assert!(!t.is_free(a));
        assert!(!t.claim(a, CallKey(2)));
        let end = start + Duration::from_secs(90);
        t.call_ended(a, end, false);
        assert_eq!(t.state(a), AgentState::Idle);
        assert_eq!(t.idle_since(a), secs(90));
        // With wrap-up the agent is not free until wrap-up ends; the idle clock already runs.
        assert!(t.claim(a, CallKey(3)));
        t.answered(a, CallKey(3));
        t.call_ended(a, end + Duration::from_secs(10), true);
        assert_eq!(t.state(a), AgentState::WrapUp);
        assert!(!t.claim(a, CallKey(4)));
        t.end_wrap_up(a);
        assert!(t.is_free(a));
        assert_eq!(t.idle_since(a), secs(100));
    }

    #[test]
    fn attendant_answer_while_busy_counts_two_calls() {
        let (t, start) = table();
        let a = AgentId(0);
        t.answered(a, CallKey(1));
        t.answered(a, CallKey(2));
        assert_eq!(t.state(a), AgentState::Busy { calls: 2 });
        t.call_ended(a, start + Duration::from_secs(5), false);
        assert_eq!(t.state(a), AgentState::Busy { calls: 1 });
        assert_eq!(t.idle_since(a), 0, "idle clock waits for the last call");
        t.call_ended(a, start + Duration::from_secs(9), false);
        assert_eq!(t.state(a), AgentState::Idle);
        assert_eq!(t.idle_since(a), secs(9));
    }

    #[test]
    fn offline_agents_are_neither_free_nor_reachable() {
        let (t, start) = table();
        let a = AgentId(0);
        t.set_online(a, false, start);
        assert_eq!(t.state(a), AgentState::Offline);
        assert!(!t.is_reachable(a));
        assert!(!t.claim(a, CallKey(1)));
        t.set_online(a, true, start + Duration::from_secs(3));
        assert!(t.is_free(a));
        assert_eq!(t.idle_since(a), secs(3));
    }

    #[test]
    fn formal_sign_in_per_group() {
        let (t, start) = table();
        let b = t.id(&uri("b")).unwrap();
        let c = t.id(&uri("c")).unwrap();
        let (informal, formal) = (AgentGroupId(0), AgentGroupId(1));
        assert!(t.is_signed_in(b, informal), "informal: always in");
        assert!(!t.is_signed_in(b, formal), "formal: out until signed in");
        t.sign_in(b, formal, start + Duration::from_secs(1))
            .unwrap();
        assert!(t.is_signed_in(b, formal));
        assert!(!t.is_signed_in(c, formal));
        assert_eq!(t.idle_since(b), secs(1));
        t.sign_out(b, formal).unwrap();
        assert!(!t.is_signed_in(b, formal));
        assert_eq!(
            t.sign_in(b, informal, start),
            Err(SignInError::Informal(informal))
        );
        let a = t.id(&uri("a")).unwrap();
        assert_eq!(
            t.sign_in(a, formal, start),
            Err(SignInError::NotAMember {
                agent: a,
                group: formal
            })
        );
    }

    #[test]
    fn carry_over_keeps_states_by_uri() {
        let (old, start) = table();
        let b = old.id(&uri("b")).unwrap();
        old.sign_in(b, AgentGroupId(1), start + Duration::from_secs(4))
            .unwrap();
        assert!(old.claim(b, CallKey(5)));
        // The new config drops "a", so "b" gets a new index.
        let mut c = config();
        add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["b"],
        );
        add_group(
            &mut c,
            RoutingMethod::Parallel,
            Participation::Formal,
            20,
            &["b", "c"],
        );
        let new = AgentTable::from_config(&c, start + Duration::from_secs(10));
        new.carry_over(&old);
        let nb = new.id(&uri("b")).unwrap();
        assert_eq!(nb, AgentId(0));
        assert_eq!(new.state(nb), AgentState::Ringing(CallKey(5)));
        assert!(new.is_signed_in(nb, AgentGroupId(1)));
        // Idle clock: 4 s after the old epoch is before the new epoch: saturates to 0.
        assert_eq!(new.idle_since(nb), 0);
    }

    /// Adds a group named `name` to `c`.
    fn named(
        c: &mut Config,
        name: &str,
        routing: RoutingMethod,
        participation: Participation,
        agents: &[&str],
    ) -> AgentGroupId {
        let g = add_group(c, routing, participation, 20, agents);
        c.agent_groups[g.0 as usize].name = name.to_owned();
        g
    }

    #[test]
    fn carry_over_follows_sign_ins_by_group_name_when_groups_are_reordered() {
        let now = t0();
        let mut c = config();
        let sales = named(
            &mut c,
            "Sales",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a"],
        );
        let support = named(
            &mut c,
            "Support",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        let old = AgentTable::from_config(&c, now);
        let a = old.id(&uri("a")).unwrap();
        old.sign_in(a, sales, now).unwrap();
        assert!(!old.is_signed_in(a, support));

        // The new file lists Support first: the group ids swap.
        let mut c = config();
        let support = named(
            &mut c,
            "Support",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        let sales = named(
            &mut c,
            "Sales",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a"],
        );
        let new = AgentTable::from_config(&c, now);
        new.carry_over(&old);
        let a = new.id(&uri("a")).unwrap();
        assert!(new.is_signed_in(a, sales), "still signed in to Sales");
        assert!(!new.is_signed_in(a, support), "not signed in to Support");
        let b = new.id(&uri("b")).unwrap();
        assert!(!new.is_signed_in(b, support));
    }

    #[test]
    fn carry_over_keeps_each_groups_round_robin_position_by_name_and_agent() {
        let now = t0();
        let mut c = config();
        let sales = named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["a", "b", "c"],
        );
        let support = named(
            &mut c,
            "Support",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["d", "e"],
        );
        let old = AgentTable::from_config(&c, now);
        old.set_round_robin_last(old.group(sales), 1); // b
        assert_eq!(old.round_robin_last(old.group(support)), None);

        // Support moves first and Sales lists its members in another order.
        let mut c = config();
        let support = named(
            &mut c,
            "Support",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["d", "e"],
        );
        let sales = named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["c", "a", "b"],
        );
        let new = AgentTable::from_config(&c, now);
        new.carry_over(&old);
        assert_eq!(
            new.round_robin_last(new.group(sales)),
            Some(2),
            "Sales goes on after b, wherever b now stands"
        );
        assert_eq!(
            new.round_robin_last(new.group(support)),
            None,
            "Support has not offered a call yet"
        );

        // b leaves Sales: the group starts again from its first member.
        let mut c = config();
        let sales = named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["a", "c"],
        );
        let newer = AgentTable::from_config(&c, now);
        newer.carry_over(&new);
        assert_eq!(newer.round_robin_last(newer.group(sales)), None);
    }

    #[test]
    fn carry_over_leaves_a_deleted_groups_state_behind() {
        let now = t0();
        let mut c = config();
        let sales = named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Formal,
            &["a", "b"],
        );
        named(
            &mut c,
            "Support",
            RoutingMethod::RoundRobin,
            Participation::Formal,
            &["a", "b"],
        );
        let old = AgentTable::from_config(&c, now);
        let a = old.id(&uri("a")).unwrap();
        old.sign_in(a, sales, now).unwrap();
        old.set_round_robin_last(old.group(sales), 1);

        // Sales is gone; Support takes its index.
        let mut c = config();
        let support = named(
            &mut c,
            "Support",
            RoutingMethod::RoundRobin,
            Participation::Formal,
            &["a", "b"],
        );
        assert_eq!(support, sales, "the index Sales had");
        let new = AgentTable::from_config(&c, now);
        new.carry_over(&old);
        let a = new.id(&uri("a")).unwrap();
        assert!(
            !new.is_signed_in(a, support),
            "Sales' sign-in lands nowhere"
        );
        assert_eq!(new.round_robin_last(new.group(support)), None);
    }

    #[test]
    fn set_sign_ins_makes_formal_flags_exactly_the_listed_pairs() {
        let (t, start) = table();
        let (b, c) = (t.id(&uri("b")).unwrap(), t.id(&uri("c")).unwrap());
        let formal = AgentGroupId(1);
        t.sign_in(c, formal, start).unwrap();
        let (ub, ua) = (uri("b"), uri("a"));
        t.set_sign_ins([
            (&ub, "group 1"),
            (&ua, "group 1"),   // not a member: ignored
            (&ub, "group 0"),   // informal: ignored
            (&ub, "elsewhere"), // not routed: ignored
        ]);
        assert!(t.is_signed_in(b, formal));
        assert!(!t.is_signed_in(c, formal), "not listed: signed out");
        assert_eq!(t.idle_since(b), 0, "restoring is not a sign-in");
    }
}
