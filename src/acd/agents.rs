//! The agent table: one for the whole process, shared by every queue owner, call task and the
//! API, never replaced.
//!
//! # Stable ids
//!
//! An agent's [`AgentId`] is interned from its SIP URI, and a group's [`AgentGroupId`] from its
//! name, the first time either is seen; the registry only grows, so an id means the same agent
//! (or group) for the life of the process, across every reload and API change of membership.
//! The first configuration's groups get ids in file order (so, at start-up, a group's id equals
//! its index in `Config::agent_groups`); a queue's groups are translated into these ids when a
//! queue owner is given its settings ([`AgentTable::stable_queue`]). Nothing is ever remapped
//! or carried over from one table to another: there is only one.
//!
//! # What lives where
//!
//! - **Per agent, for the process** (append-only arrays indexed by id, see `Slots`): its URI,
//!   its state word and its idle clock.
//! - **Per (group, agent) pair, for the process**: the formal sign-in flag, interned like the
//!   ids; a pair that leaves the configuration and comes back finds its flag where it was.
//! - **Per group, for the process**: its name and its round-robin position (the member offered
//!   the group's last call, by agent id, so it follows the agent wherever the list puts it).
//! - **Membership** ([`Membership`]): which groups are routed, their members in order, routing
//!   method, participation and alert time. An immutable snapshot, replaced whole on rebuild
//!   ([`AgentTable::set_membership`]) through an `ArcSwap`; routing loads it once per decision.
//!
//! # Who writes an agent's state word
//!
//! The word is `free`, `ringing(call)` or `busy(n)`. Its writers follow one protocol, so no two
//! writers can disagree:
//!
//! - `free → ringing(call)`: only the queue owner dispatching `call`, by
//!   `compare_exchange(0 → ringing(call))` ([`AgentTable::claim`]); two owners racing for the
//!   same agent cannot both win.
//! - `ringing(call) → free` or `→ busy`: only the task of `call`, the claim's holder
//!   ([`AgentTable::release`], [`AgentTable::answered`]). A release by any other call is
//!   refused and counted ([`AgentTable::refused_releases`]): it is a bug, and a test looks for it.
//! - `busy(n) → busy(n ± 1)`: the call bridged to the agent (`answered`, `call_ended`); attendant
//!   groups ring without a claim, so their answer adds a call to a busy agent.
//!
//! Nothing on the routing path takes a lock or allocates: the state words are read with one
//! atomic load each, the membership snapshot with one `ArcSwap` load per dispatch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};

use crate::config::model::{
    AgentGroup, AgentGroupId, Config, Participation, Queue, RoutingMethod, SipUri,
};
pub use crate::workflow::call::AgentId;

/// Identifies a call in the agent table (who an agent is ringing for). Allocated by the driver,
/// unique among live calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u32);

// The state word: bits 0..16 rgsd calls in progress, bit 16 wrap-up (after the last call, until
// its wrap-up time passes or the agent ends it), bits 17..24 unused, bits 24..64 the call the agent
// is ringing for (CallKey + 1; 0 = not ringing). An agent is free exactly when the word is 0, so
// every routing method skips an agent in wrap-up with the same one load.
const CALLS_MASK: u64 = 0xFFFF;
const WRAP_UP: u64 = 1 << 16;
const RINGING_SHIFT: u32 = 24;
const RINGING_MASK: u64 = !((1 << RINGING_SHIFT) - 1);

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
    /// After an rgsd call, in its wrap-up time: offered nothing from any group until it passes
    /// or the agent ends it ([`AgentTable::end_wrap_up`]).
    WrapUp,
}

/// Identifies one wrap-up period of one agent (its deadline): the timer that started with it
/// ends that period only, never a later one ([`AgentTable::end_wrap_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapUpToken(u64);

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

// Append-only arrays: a first block allocated with the table, then fixed-size segments
// allocated on first use; nothing is ever moved or freed, so a reader holding an id reaches its
// slot without a lock. The state words and idle clocks of the first 65,536 agents sit in one
// flat block: the routing scan pays one bounds check per member, as with a plain array (a
// segment lookup per member, an `OnceLock` load and two bounds checks, cost the routing bench
// 0.8 ns per member: +68 % on its p50). The `boxcar` crate is all segments, with a flag beside
// every entry that would also halve the state words per cache line, so it is not used here.
const SEGMENT_BITS: u32 = 12;
const SEGMENT_LEN: usize = 1 << SEGMENT_BITS;
const SEGMENTS: usize = 1024;
/// Slots in the flat first block of the per-agent arrays read by routing.
const FIRST_AGENTS: usize = 1 << 16;
/// Ids the registry hands out at most (agents, groups, sign-in pairs each): 4,194,304 (more
/// for the arrays with a first block).
const CAPACITY: usize = SEGMENT_LEN * SEGMENTS;

/// An append-only array of `T` indexed by a stable id (see the module docs).
struct Slots<T> {
    /// Ids `0..first.len()`, allocated with the table.
    first: Box<[T]>,
    /// The ids after those, by segment.
    segments: Box<[OnceLock<Box<[T]>>]>,
}

impl<T: Default> Slots<T> {
    /// Segments only: for arrays off the routing path.
    fn new() -> Self {
        Self::with_first(0)
    }

    /// A flat first block of `first` slots, then segments.
    fn with_first(first: usize) -> Self {
        Self {
            first: (0..first).map(|_| T::default()).collect(),
            segments: (0..SEGMENTS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The slot of an id already handed out; `None` for one never handed out.
    #[inline]
    fn get(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        if let Some(slot) = self.first.get(i) {
            return Some(slot);
        }
        self.segment_get(i - self.first.len())
    }

    #[cold]
    fn segment_get(&self, j: usize) -> Option<&T> {
        let segment = self.segments.get(j >> SEGMENT_BITS)?.get()?;
        segment.get(j & (SEGMENT_LEN - 1))
    }

    /// Makes slot `i` exist (the registry, before handing `i` out).
    fn ensure(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        if let Some(slot) = self.first.get(i) {
            return Some(slot);
        }
        let j = i - self.first.len();
        let segment = self
            .segments
            .get(j >> SEGMENT_BITS)?
            .get_or_init(|| (0..SEGMENT_LEN).map(|_| T::default()).collect());
        segment.get(j & (SEGMENT_LEN - 1))
    }
}

impl<T> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.segments.iter().filter(|s| s.get().is_some()).count();
        write!(f, "Slots {{ segments: {used} }}")
    }
}

/// [`AgentTable::routing_view`]: the same answers as the table's `is_free` and `idle_since`,
/// for the ids of the first blocks without re-reading their bounds.
#[derive(Clone, Copy)]
pub struct RoutingView<'a> {
    table: &'a AgentTable,
    words: &'a [AtomicU64],
    idle_since: &'a [AtomicU64],
}

impl RoutingView<'_> {
    /// [`AgentTable::is_free`].
    #[inline]
    pub fn is_free(&self, agent: AgentId) -> bool {
        match self.words.get(agent.0 as usize) {
            Some(w) => w.load(Ordering::Acquire) == 0,
            None => self.table.is_free(agent),
        }
    }

    /// [`AgentTable::idle_since`].
    #[inline]
    pub fn idle_since(&self, agent: AgentId) -> u64 {
        match self.idle_since.get(agent.0 as usize) {
            Some(t) => t.load(Ordering::Acquire),
            None => self.table.idle_since(agent),
        }
    }
}

/// The interners: written under a lock on rebuilds and API look-ups, never on the routing path.
#[derive(Debug, Default)]
struct Registry {
    agents: HashMap<SipUri, AgentId>,
    groups: HashMap<String, AgentGroupId>,
    /// (group, agent) → index of its sign-in flag.
    pairs: HashMap<(AgentGroupId, AgentId), u32>,
}

fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn next_id(len: usize) -> Option<u32> {
    if len >= CAPACITY {
        None
    } else {
        u32::try_from(len).ok()
    }
}

/// One agent group as routing sees it (part of a [`Membership`] snapshot).
#[derive(Debug)]
pub struct GroupMembers {
    /// Its stable id.
    pub id: AgentGroupId,
    pub name: String,
    pub routing: RoutingMethod,
    pub participation: Participation,
    pub alert_time: Duration,
    /// Wrap-up after a call answered through this group (zero: none).
    pub wrap_up: Duration,
    /// In configured order (serial and round robin follow it).
    pub members: Vec<AgentId>,
    /// Index of each member's sign-in flag (same index as `members`).
    flags: Box<[u32]>,
}

/// Who is routed now: an immutable snapshot, replaced whole by [`AgentTable::set_membership`].
#[derive(Debug, Default)]
pub struct Membership {
    /// By stable group id; `None` for a group not routed now.
    groups: Vec<Option<GroupMembers>>,
    by_name: HashMap<String, AgentGroupId>,
    /// Agents of at least one routed group, in order of first appearance.
    agents: Vec<AgentId>,
    by_uri: HashMap<SipUri, AgentId>,
    /// Per agent, its routed groups in group order.
    memberships: HashMap<AgentId, Vec<AgentGroupId>>,
    /// (agent, group) → index in that group's `members`.
    positions: HashMap<(AgentId, AgentGroupId), u32>,
}

impl Membership {
    /// The group, if it is routed now.
    pub fn group(&self, group: AgentGroupId) -> Option<&GroupMembers> {
        self.groups.get(group.0 as usize)?.as_ref()
    }

    /// The routed groups, in stable id order.
    pub fn groups(&self) -> impl Iterator<Item = &GroupMembers> {
        self.groups.iter().flatten()
    }

    /// The id of the routed group named `name`.
    pub fn group_id(&self, name: &str) -> Option<AgentGroupId> {
        self.by_name.get(name).copied()
    }

    /// The id of a routed agent.
    pub fn id(&self, uri: &SipUri) -> Option<AgentId> {
        self.by_uri.get(uri).copied()
    }

    /// Every routed agent, in order of first appearance.
    pub fn agents(&self) -> &[AgentId] {
        &self.agents
    }

    /// The routed groups the agent belongs to: the queues that offer calls to them are the
    /// ones to wake when it frees up.
    pub fn groups_of(&self, agent: AgentId) -> &[AgentGroupId] {
        self.memberships.get(&agent).map_or(&[], Vec::as_slice)
    }

    /// Routed agents.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

/// The process-wide agent table. See the module docs.
pub struct AgentTable {
    registry: Mutex<Registry>,
    uris: Slots<OnceLock<SipUri>>,
    /// State words, packed: 8 agents to a cache line. Longest idle, parallel and a group with
    /// nobody free read every member's word per decision.
    words: Slots<AtomicU64>,
    /// Nanoseconds since `epoch` at which each agent's idle clock started.
    idle_since: Slots<AtomicU64>,
    /// Per agent: nanoseconds since `epoch` at which its wrap-up ends; 0 when not in one.
    wrap_until: Slots<AtomicU64>,
    /// Per agent: its own wrap-up time in milliseconds + 1, overriding its groups'; 0 = unset.
    wrap_override: Slots<AtomicU64>,
    /// Formal sign-in, by (group, agent) pair.
    flags: Slots<AtomicBool>,
    /// Per group: 0 for none, else (agent id + 1) << 32 | index in the member list then.
    round_robin: Slots<AtomicU64>,
    group_names: Slots<OnceLock<String>>,
    membership: ArcSwap<Membership>,
    /// Changes with every membership stored, unique across tables (see [`Self::generation`]).
    generation: AtomicU64,
    /// Time zero of `idle_since`: the table's creation (start-up).
    epoch: Instant,
    /// Releases refused because the caller did not hold the claim.
    refused_releases: AtomicU64,
}

impl std::fmt::Debug for AgentTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTable")
            .field("membership", &self.membership.load())
            .finish_non_exhaustive()
    }
}

impl AgentTable {
    /// An empty table whose idle clocks count from `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            registry: Mutex::new(Registry::default()),
            uris: Slots::new(),
            words: Slots::with_first(FIRST_AGENTS),
            idle_since: Slots::with_first(FIRST_AGENTS),
            wrap_until: Slots::new(),
            wrap_override: Slots::new(),
            flags: Slots::with_first(FIRST_AGENTS),
            round_robin: Slots::new(),
            group_names: Slots::new(),
            membership: ArcSwap::from_pointee(Membership::default()),
            generation: AtomicU64::new(next_generation()),
            epoch: now,
            refused_releases: AtomicU64::new(0),
        }
    }

    /// A table routing `config`'s groups: group ids in file order, agents in order of first
    /// appearance. Every agent starts idle, its idle clock at `now`, signed out of its formal
    /// groups.
    pub fn from_config(config: &Config, now: Instant) -> Self {
        let table = Self::new(now);
        table.set_membership(&config.agent_groups);
        table
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Held for map operations only; a panic there leaves the maps usable.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Routes `groups` from now on: interns their names and agents (new ones get new ids, the
    /// others keep theirs, with their states, clocks, sign-ins and round-robin positions) and
    /// swaps the membership snapshot. Returns the snapshot stored. Ids beyond the table's
    /// capacity are left out, with an error logged.
    pub fn set_membership(&self, groups: &[AgentGroup]) -> Arc<Membership> {
        let mut reg = self.registry();
        let mut membership = Membership::default();
        for group in groups {
            let Some(gid) = self.intern_group(&mut reg, &group.name) else {
                tracing::error!(group = %group.name, "agent table full: group not routed");
                continue;
            };
            if membership.by_name.contains_key(&group.name) {
                continue; // names are unique (the config compiler checks); keep the first
            }
            let mut members = Vec::with_capacity(group.agents.len());
            let mut flags = Vec::with_capacity(group.agents.len());
            for uri in &group.agents {
                let Some(agent) = self.intern_agent(&mut reg, uri) else {
                    tracing::error!(%uri, "agent table full: agent not routed");
                    continue;
                };
                let Some(flag) = self.intern_pair(&mut reg, gid, agent) else {
                    tracing::error!(%uri, "agent table full: agent not routed");
                    continue;
                };
                let index = u32::try_from(members.len()).unwrap_or(u32::MAX);
                membership.positions.entry((agent, gid)).or_insert(index);
                if !membership.by_uri.contains_key(uri) {
                    membership.by_uri.insert(uri.clone(), agent);
                    membership.agents.push(agent);
                }
                let list = membership.memberships.entry(agent).or_default();
                if !list.contains(&gid) {
                    list.push(gid);
                }
                members.push(agent);
                flags.push(flag);
            }
            membership.by_name.insert(group.name.clone(), gid);
            let slot = gid.0 as usize;
            if membership.groups.len() <= slot {
                membership.groups.resize_with(slot + 1, || None);
            }
            membership.groups[slot] = Some(GroupMembers {
                id: gid,
                name: group.name.clone(),
                routing: group.routing,
                participation: group.participation,
                alert_time: group.alert_time,
                wrap_up: group.wrap_up,
                members,
                flags: flags.into(),
            });
        }
        for list in membership.memberships.values_mut() {
            list.sort_unstable();
        }
        let membership = Arc::new(membership);
        self.membership.store(Arc::clone(&membership));
        // After the store: whoever sees the new generation loads the new snapshot.
        self.generation.store(next_generation(), Ordering::Release);
        membership
    }

    /// A number that changes whenever the membership does, unique across tables: a queue
    /// core keeps the snapshot of its last dispatch and loads it again only when this moved
    /// (one atomic load per dispatch instead of an `ArcSwap` load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn intern_agent(&self, reg: &mut Registry, uri: &SipUri) -> Option<AgentId> {
        if let Some(&id) = reg.agents.get(uri) {
            return Some(id);
        }
        let id = next_id(reg.agents.len())?;
        // Every slot exists before the id is handed out.
        self.words.ensure(id)?;
        self.idle_since.ensure(id)?;
        self.wrap_until.ensure(id)?;
        self.wrap_override.ensure(id)?;
        self.uris.ensure(id)?.get_or_init(|| uri.clone());
        reg.agents.insert(uri.clone(), AgentId(id));
        Some(AgentId(id))
    }

    fn intern_group(&self, reg: &mut Registry, name: &str) -> Option<AgentGroupId> {
        if let Some(&id) = reg.groups.get(name) {
            return Some(id);
        }
        let id = next_id(reg.groups.len())?;
        self.round_robin.ensure(id)?;
        self.group_names.ensure(id)?.get_or_init(|| name.to_owned());
        reg.groups.insert(name.to_owned(), AgentGroupId(id));
        Some(AgentGroupId(id))
    }

    fn intern_pair(&self, reg: &mut Registry, group: AgentGroupId, agent: AgentId) -> Option<u32> {
        if let Some(&flag) = reg.pairs.get(&(group, agent)) {
            return Some(flag);
        }
        let flag = next_id(reg.pairs.len())?;
        self.flags.ensure(flag)?;
        reg.pairs.insert((group, agent), flag);
        Some(flag)
    }

    /// The membership in force (one lock-free load; hold it for one decision).
    pub fn membership(&self) -> Guard<Arc<Membership>> {
        self.membership.load()
    }

    /// The membership in force, as an `Arc` to keep.
    pub fn membership_full(&self) -> Arc<Membership> {
        self.membership.load_full()
    }

    /// `queue` with its agent groups (indexes into `config.agent_groups`) replaced by their
    /// stable ids, by name; a group the table has never routed is left out. Call after
    /// [`Self::set_membership`] for the same configuration.
    pub fn stable_queue(&self, config: &Config, queue: &Queue) -> Queue {
        let reg = self.registry();
        let mut stable = queue.clone();
        stable.agent_groups = queue
            .agent_groups
            .iter()
            .filter_map(|g| config.agent_groups.get(g.0 as usize))
            .filter_map(|g| reg.groups.get(&g.name).copied())
            .collect();
        stable
    }

    /// The id of an agent the table has ever seen.
    pub fn id(&self, uri: &SipUri) -> Option<AgentId> {
        self.registry().agents.get(uri).copied()
    }

    /// The id of a group the table has ever seen.
    pub fn group_id(&self, name: &str) -> Option<AgentGroupId> {
        self.registry().groups.get(name).copied()
    }

    /// The URI of an agent id this table handed out.
    pub fn uri(&self, agent: AgentId) -> Option<&SipUri> {
        self.uris.get(agent.0)?.get()
    }

    /// The name of a group id this table handed out.
    pub fn group_name(&self, group: AgentGroupId) -> Option<&str> {
        self.group_names.get(group.0)?.get().map(String::as_str)
    }

    /// The agent's state; `None` for an id this table never handed out.
    pub fn state(&self, agent: AgentId) -> Option<AgentState> {
        let word = self.word(agent)?.load(Ordering::Acquire);
        Some(if word & RINGING_MASK != 0 {
            let key = (word >> RINGING_SHIFT) - 1;
            AgentState::Ringing(CallKey(u32::try_from(key).unwrap_or(u32::MAX)))
        } else if word & CALLS_MASK != 0 {
            let calls = u16::try_from(word & CALLS_MASK).unwrap_or(u16::MAX);
            AgentState::Busy { calls }
        } else if word & WRAP_UP != 0 {
            AgentState::WrapUp
        } else {
            AgentState::Idle
        })
    }

    /// Free: not ringing, not on an rgsd call. An id this table never handed out is never free.
    #[inline]
    pub fn is_free(&self, agent: AgentId) -> bool {
        self.word(agent)
            .is_some_and(|w| w.load(Ordering::Acquire) == 0)
    }

    /// The first blocks of the arrays a routing scan reads, borrowed once for one decision.
    /// Each state word is read with an `Acquire` load, after which the compiler must read
    /// again anything it cannot prove unchanged, such as this table's array bounds; held in a
    /// [`RoutingView`] the bounds stay in registers for the whole scan (the routing bench's
    /// 1,000-member scan: see `benches/routing.rs`). Ids past the first blocks fall back to
    /// the table's own accessors.
    #[inline]
    pub fn routing_view(&self) -> RoutingView<'_> {
        RoutingView {
            table: self,
            words: &self.words.first,
            idle_since: &self.idle_since.first,
        }
    }

    /// In the group for routing: always for informal groups, when signed in for formal ones.
    /// `false` when the group is not routed or the agent is not in it.
    pub fn is_signed_in(&self, agent: AgentId, group: AgentGroupId) -> bool {
        let m = self.membership();
        let Some(g) = m.group(group) else {
            return false;
        };
        m.positions
            .get(&(agent, group))
            .is_some_and(|&i| self.is_member_signed_in(g, i as usize))
    }

    /// `is_signed_in` by position in the group's member list (the routing hot path).
    #[inline]
    pub fn is_member_signed_in(&self, group: &GroupMembers, index: usize) -> bool {
        match group.participation {
            Participation::Informal => true,
            Participation::Formal => group
                .flags
                .get(index)
                .and_then(|&f| self.flags.get(f))
                .is_some_and(|f| f.load(Ordering::Acquire)),
        }
    }

    /// When the agent's idle clock started (last rgsd call ended, sign-in, or start-up), in
    /// nanoseconds since the table's creation.
    #[inline]
    pub fn idle_since(&self, agent: AgentId) -> u64 {
        self.idle_since
            .get(agent.0)
            .map_or(0, |t| t.load(Ordering::Acquire))
    }

    /// The group's round-robin position: index of the member offered its last call. Follows
    /// that agent when a rebuild moved it in the list; `None` when it left the group.
    pub fn round_robin_last(&self, group: &GroupMembers) -> Option<usize> {
        let word = self.round_robin.get(group.id.0)?.load(Ordering::Relaxed);
        if word == 0 {
            return None;
        }
        let agent = AgentId(u32::try_from((word >> 32) - 1).ok()?);
        let index = usize::try_from(word & u64::from(u32::MAX)).ok()?;
        if group.members.get(index) == Some(&agent) {
            return Some(index);
        }
        group.members.iter().position(|&m| m == agent)
    }

    /// Moves the group's round-robin position to member `index` (the agent just offered).
    /// Relaxed: two queues racing may both store; either value keeps the rotation going.
    pub fn set_round_robin_last(&self, group: &GroupMembers, index: usize) {
        let (Some(&agent), Some(slot), Ok(i)) = (
            group.members.get(index),
            self.round_robin.get(group.id.0),
            u32::try_from(index),
        ) else {
            return;
        };
        slot.store(
            ((u64::from(agent.0) + 1) << 32) | u64::from(i),
            Ordering::Relaxed,
        );
    }

    /// Claims a free agent for `call`: `compare_exchange(free → ringing for call)`. Returns
    /// whether this caller won; on `false` the agent is busy or ringing for someone else. Only
    /// the queue owner dispatching `call` claims.
    #[inline]
    pub fn claim(&self, agent: AgentId, call: CallKey) -> bool {
        self.word(agent).is_some_and(|w| {
            w.compare_exchange(0, ringing_bits(call), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// Ends `call`'s claim on the agent (declined, failed, cancelled, timed out). Returns
    /// whether the agent was ringing for `call`. Anyone else's release is refused, counted in
    /// [`Self::refused_releases`] and logged: only the claim's holder may free the agent.
    pub fn release(&self, agent: AgentId, call: CallKey) -> bool {
        let released = self.update(agent, |w| {
            (w & RINGING_MASK == ringing_bits(call)).then_some(w & !RINGING_MASK)
        });
        if !released {
            self.refused_releases.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?agent, ?call, state = ?self.state(agent), "release refused: the call does not hold the agent's claim");
        }
        released
    }

    /// Releases refused so far (see [`Self::release`]); stays 0 when every writer follows the
    /// protocol of the module docs.
    pub fn refused_releases(&self) -> u64 {
        self.refused_releases.load(Ordering::Relaxed)
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

    /// One of the agent's rgsd calls ended at `now`, with no wrap-up. When it was the last, the
    /// idle clock starts (`docs/behaviour.md`, Agent groups).
    pub fn call_ended(&self, agent: AgentId, now: Instant) {
        let _ = self.call_ended_then(agent, now, Duration::ZERO);
    }

    /// One of the agent's rgsd calls ended at `now`. When it was the last: with a non-zero
    /// `wrap_up` the agent goes into wrap-up until `now + wrap_up` and the token of that period
    /// is returned (the caller arms a timer for [`Self::end_wrap_up`]); otherwise the idle clock
    /// starts (`docs/behaviour.md`, Agent groups and Wrap-up).
    pub fn call_ended_then(
        &self,
        agent: AgentId,
        now: Instant,
        wrap_up: Duration,
    ) -> Option<WrapUpToken> {
        let mut last = false;
        let wrap = !wrap_up.is_zero();
        self.update(agent, |w| {
            let calls = (w & CALLS_MASK).saturating_sub(1);
            last = calls == 0;
            let w = (w & !CALLS_MASK) | calls;
            Some(if last && wrap { w | WRAP_UP } else { w })
        });
        if !last {
            return None;
        }
        if !wrap {
            self.start_idle_clock(agent, now);
            return None;
        }
        // Never 0 (0 means "not in wrap-up"): the deadline is after the epoch by `wrap_up`.
        let deadline = self
            .nanos(now)
            .saturating_add(Self::nanos_of(wrap_up))
            .max(1);
        if let Some(slot) = self.wrap_until.get(agent.0) {
            slot.store(deadline, Ordering::Release);
        }
        Some(WrapUpToken(deadline))
    }

    /// Ends the agent's wrap-up at `now`: the period of `token` only (its timer), or whichever
    /// is in progress for `None` (the agent ended it early). The idle clock starts. Returns
    /// whether a wrap-up ended (the caller then wakes the agent's queues).
    pub fn end_wrap_up(&self, agent: AgentId, now: Instant, token: Option<WrapUpToken>) -> bool {
        let Some(slot) = self.wrap_until.get(agent.0) else {
            return false;
        };
        let owned = match token {
            Some(WrapUpToken(t)) => slot
                .compare_exchange(t, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
            None => slot.swap(0, Ordering::AcqRel) != 0,
        };
        if token.is_some() && !owned {
            return false; // a later period, or this one already ended early
        }
        let ended = self.update(agent, |w| (w & WRAP_UP != 0).then_some(w & !WRAP_UP));
        if ended {
            self.start_idle_clock(agent, now);
        }
        ended
    }

    /// When the agent's wrap-up ends, in nanoseconds since the table's creation (as
    /// [`Self::idle_since`]); `None` when it is not in one.
    pub fn wrap_up_until(&self, agent: AgentId) -> Option<u64> {
        let word = self.word(agent)?.load(Ordering::Acquire);
        if word & WRAP_UP == 0 {
            return None;
        }
        let at = self.wrap_until.get(agent.0)?.load(Ordering::Acquire);
        (at != 0).then_some(at)
    }

    /// When the wrap-up period of `token` ends (for its timer).
    pub fn wrap_up_deadline(&self, token: WrapUpToken) -> Instant {
        self.epoch + Duration::from_nanos(token.0)
    }

    /// Whether the agent is in wrap-up (attendant groups, which ring busy agents, skip it too).
    #[inline]
    pub fn in_wrap_up(&self, agent: AgentId) -> bool {
        self.word(agent)
            .is_some_and(|w| w.load(Ordering::Acquire) & WRAP_UP != 0)
    }

    /// Sets the agent's own wrap-up time, which overrides its groups'; `None` removes it.
    pub fn set_agent_wrap_up(&self, agent: AgentId, wrap_up: Option<Duration>) {
        if let Some(slot) = self.wrap_override.get(agent.0) {
            let ms = wrap_up.map_or(0, |d| {
                u64::try_from(d.as_millis())
                    .unwrap_or(u64::MAX - 1)
                    .saturating_add(1)
            });
            slot.store(ms, Ordering::Release);
        }
    }

    /// The agent's own wrap-up time, if set.
    pub fn agent_wrap_up(&self, agent: AgentId) -> Option<Duration> {
        let ms = self.wrap_override.get(agent.0)?.load(Ordering::Acquire);
        (ms != 0).then(|| Duration::from_millis(ms - 1))
    }

    /// The wrap-up that follows an rgsd call the agent answered through `group`: the agent's
    /// own where set, else the group's (zero when the group is not routed any more).
    pub fn wrap_up_for(&self, agent: AgentId, group: Option<AgentGroupId>) -> Duration {
        self.agent_wrap_up(agent).unwrap_or_else(|| {
            group
                .and_then(|g| self.membership().group(g).map(|g| g.wrap_up))
                .unwrap_or(Duration::ZERO)
        })
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

    /// Sets every formal sign-in flag of the routed groups to what `signed_in` lists as (agent
    /// URI, group name) pairs (the store's sign-in state); pairs not routed are ignored. Idle
    /// clocks are left alone: this restores state, it is not a sign-in.
    pub fn set_sign_ins<'a>(&self, signed_in: impl IntoIterator<Item = (&'a SipUri, &'a str)>) {
        let m = self.membership();
        for group in m.groups() {
            for &f in &group.flags {
                if let Some(flag) = self.flags.get(f) {
                    flag.store(false, Ordering::Release);
                }
            }
        }
        for (uri, name) in signed_in {
            let (Some(agent), Some(group)) = (m.id(uri), m.group_id(name)) else {
                continue;
            };
            if let Ok(flag) = self.sign_in_flag(agent, group) {
                flag.store(true, Ordering::Release);
            }
        }
    }

    fn sign_in_flag(
        &self,
        agent: AgentId,
        group: AgentGroupId,
    ) -> Result<&AtomicBool, SignInError> {
        let m = self.membership();
        let g = m
            .group(group)
            .ok_or(SignInError::NotAMember { agent, group })?;
        if g.participation == Participation::Informal {
            return Err(SignInError::Informal(group));
        }
        m.positions
            .get(&(agent, group))
            .and_then(|&i| g.flags.get(i as usize))
            .and_then(|&f| self.flags.get(f))
            .ok_or(SignInError::NotAMember { agent, group })
    }

    /// An offer to the agent rang out unanswered at `now`: the idle clock starts again, so
    /// longest-idle routing tries every other free agent first. Called by the call holding the
    /// agent's claim, before it releases it.
    pub fn rang_out(&self, agent: AgentId, now: Instant) {
        self.start_idle_clock(agent, now);
    }

    fn start_idle_clock(&self, agent: AgentId, now: Instant) {
        if let Some(t) = self.idle_since.get(agent.0) {
            t.store(self.nanos(now), Ordering::Release);
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        Self::nanos_of(at.saturating_duration_since(self.epoch))
    }

    fn nanos_of(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn word(&self, agent: AgentId) -> Option<&AtomicU64> {
        self.words.get(agent.0)
    }

    /// Compare-and-swap loop: `f` returns the new word, or `None` to leave it. Returns whether
    /// it wrote.
    fn update(&self, agent: AgentId, mut f: impl FnMut(u64) -> Option<u64>) -> bool {
        self.word(agent).is_some_and(|w| {
            w.fetch_update(Ordering::AcqRel, Ordering::Acquire, &mut f)
                .is_ok()
        })
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
        table_where(|_| {})
    }

    /// [`table`] with its configuration changed by `edit` first.
    fn table_where(edit: impl FnOnce(&mut Config)) -> (AgentTable, Instant) {
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
        edit(&mut c);
        let now = t0();
        (AgentTable::from_config(&c, now), now)
    }

    #[test]
    fn one_entry_per_agent_across_groups() {
        let (t, _) = table();
        let m = t.membership();
        assert_eq!(m.len(), 3);
        let b = t.id(&uri("b")).unwrap();
        assert_eq!(m.group(AgentGroupId(0)).unwrap().members[1], b);
        assert_eq!(m.group(AgentGroupId(1)).unwrap().members[0], b);
        assert_eq!(t.uri(b), Some(&uri("b")));
        assert_eq!(m.groups_of(b), &[AgentGroupId(0), AgentGroupId(1)]);
        assert_eq!(m.groups_of(AgentId(0)), &[AgentGroupId(0)]);
    }

    #[test]
    fn claim_is_exclusive_and_release_only_by_the_owner() {
        let (t, _) = table();
        let a = AgentId(0);
        assert!(t.claim(a, CallKey(7)));
        assert_eq!(t.state(a), Some(AgentState::Ringing(CallKey(7))));
        assert!(
            !t.claim(a, CallKey(8)),
            "a second call cannot claim a ringing agent"
        );
        assert_eq!(t.refused_releases(), 0);
        assert!(
            !t.release(a, CallKey(8)),
            "another call's release is refused"
        );
        assert_eq!(t.refused_releases(), 1, "and counted");
        assert_eq!(t.state(a), Some(AgentState::Ringing(CallKey(7))));
        assert!(t.release(a, CallKey(7)));
        assert_eq!(t.state(a), Some(AgentState::Idle));
        assert!(t.claim(a, CallKey(0)), "key 0 is a valid key");
        assert_eq!(t.state(a), Some(AgentState::Ringing(CallKey(0))));
        assert!(t.release(a, CallKey(0)));
        assert!(t.claim(a, CallKey(u32::MAX)));
        assert_eq!(t.state(a), Some(AgentState::Ringing(CallKey(u32::MAX))));
        assert_eq!(t.refused_releases(), 1);
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
        assert_eq!(t.state(a), Some(AgentState::Busy { calls: 1 }));
        assert!(!t.is_free(a));
        assert!(!t.claim(a, CallKey(2)));
        let end = start + Duration::from_secs(90);
        t.call_ended(a, end);
        assert_eq!(t.state(a), Some(AgentState::Idle));
        assert!(t.is_free(a));
        assert_eq!(t.idle_since(a), secs(90));
    }

    #[test]
    fn wrap_up_after_the_last_call_then_its_timer_or_an_early_end() {
        let (t, start) = table();
        let a = AgentId(0);
        let wrap = Duration::from_secs(30);
        assert!(t.claim(a, CallKey(1)));
        t.answered(a, CallKey(1));
        let end = start + Duration::from_secs(10);
        let token = t.call_ended_then(a, end, wrap).expect("wrap-up began");
        assert_eq!(t.state(a), Some(AgentState::WrapUp));
        assert!(!t.is_free(a) && t.in_wrap_up(a));
        assert!(!t.claim(a, CallKey(2)), "no offer during wrap-up");
        assert_eq!(t.wrap_up_until(a), Some(secs(40)));
        assert_eq!(t.wrap_up_deadline(token), start + Duration::from_secs(40));
        // The timer ends it; the idle clock starts then, not at the call's end.
        let due = start + Duration::from_secs(40);
        assert!(t.end_wrap_up(a, due, Some(token)));
        assert_eq!(t.state(a), Some(AgentState::Idle));
        assert_eq!(t.idle_since(a), secs(40));
        assert!(!t.end_wrap_up(a, due, Some(token)), "ends once");

        // Ended early, then a second call and wrap-up: the first period's timer must not end
        // the second.
        assert!(t.claim(a, CallKey(3)));
        t.answered(a, CallKey(3));
        let first = t
            .call_ended_then(a, start + Duration::from_secs(50), wrap)
            .unwrap();
        assert!(t.end_wrap_up(a, start + Duration::from_secs(55), None));
        assert!(!t.end_wrap_up(a, start + Duration::from_secs(56), None));
        assert!(t.claim(a, CallKey(4)));
        t.answered(a, CallKey(4));
        let second = t
            .call_ended_then(a, start + Duration::from_secs(70), wrap)
            .unwrap();
        assert!(!t.end_wrap_up(a, start + Duration::from_secs(80), Some(first)));
        assert_eq!(t.state(a), Some(AgentState::WrapUp));
        assert!(t.end_wrap_up(a, start + Duration::from_secs(100), Some(second)));
        assert!(t.is_free(a));
    }

    #[test]
    fn no_wrap_up_while_calls_remain_nor_when_zero() {
        let (t, start) = table();
        let a = AgentId(0);
        t.answered(a, CallKey(1));
        t.answered(a, CallKey(2));
        let wrap = Duration::from_secs(30);
        assert_eq!(t.call_ended_then(a, start, wrap), None, "one call left");
        assert_eq!(t.state(a), Some(AgentState::Busy { calls: 1 }));
        assert!(t.call_ended_then(a, start, wrap).is_some());
        assert!(t.end_wrap_up(a, start, None));
        t.answered(a, CallKey(3));
        assert_eq!(t.call_ended_then(a, start, Duration::ZERO), None);
        assert!(t.is_free(a));
    }

    #[test]
    fn an_agents_own_wrap_up_overrides_its_groups() {
        let (t, _) = table_where(|c| c.agent_groups[0].wrap_up = Duration::from_secs(15));
        let (a, b) = (AgentId(0), AgentId(1));
        let g = Some(AgentGroupId(0));
        assert_eq!(t.wrap_up_for(a, g), Duration::from_secs(15));
        assert_eq!(t.wrap_up_for(a, None), Duration::ZERO);
        t.set_agent_wrap_up(a, Some(Duration::from_secs(60)));
        t.set_agent_wrap_up(b, Some(Duration::ZERO));
        assert_eq!(t.wrap_up_for(a, g), Duration::from_secs(60));
        assert_eq!(
            t.wrap_up_for(b, g),
            Duration::ZERO,
            "0 s of their own: none"
        );
        t.set_agent_wrap_up(a, None);
        assert_eq!(t.wrap_up_for(a, g), Duration::from_secs(15));
        assert_eq!(t.agent_wrap_up(a), None);
    }

    #[test]
    fn attendant_answer_while_busy_counts_two_calls() {
        let (t, start) = table();
        let a = AgentId(0);
        t.answered(a, CallKey(1));
        t.answered(a, CallKey(2));
        assert_eq!(t.state(a), Some(AgentState::Busy { calls: 2 }));
        t.call_ended(a, start + Duration::from_secs(5));
        assert_eq!(t.state(a), Some(AgentState::Busy { calls: 1 }));
        assert_eq!(t.idle_since(a), 0, "idle clock waits for the last call");
        t.call_ended(a, start + Duration::from_secs(9));
        assert_eq!(t.state(a), Some(AgentState::Idle));
        assert_eq!(t.idle_since(a), secs(9));
    }

    #[test]
    fn ids_beyond_the_allocated_slots_are_never_free() {
        let (t, _) = table();
        // Past the first block, in no segment: no slot at all (the registry hands out ids in
        // order, so every id it gave has its slot).
        let ghost = AgentId(u32::try_from(FIRST_AGENTS + 5).unwrap());
        assert!(!t.is_free(ghost));
        assert!(!t.claim(ghost, CallKey(1)));
        assert_eq!(t.state(ghost), None);
        assert_eq!(t.uri(ghost), None);
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

    /// Adds a group named `name` to `c`.
    fn named(
        c: &mut Config,
        name: &str,
        routing: RoutingMethod,
        participation: Participation,
        agents: &[&str],
    ) {
        let g = add_group(c, routing, participation, 20, agents);
        c.agent_groups[g.0 as usize].name = name.to_owned();
    }

    #[test]
    fn a_rebuild_keeps_every_id_and_the_state_behind_it() {
        let (t, start) = table();
        let (a, b, c) = (
            t.id(&uri("a")).unwrap(),
            t.id(&uri("b")).unwrap(),
            t.id(&uri("c")).unwrap(),
        );
        t.sign_in(b, AgentGroupId(1), start + Duration::from_secs(4))
            .unwrap();
        assert!(t.claim(b, CallKey(5)));
        // The new file drops "a", adds "x" first and lists the groups the other way round.
        let mut cfg = config();
        add_group(
            &mut cfg,
            RoutingMethod::Parallel,
            Participation::Formal,
            20,
            &["x", "b", "c"],
        );
        cfg.agent_groups[0].name = "group 1".into();
        add_group(
            &mut cfg,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["b"],
        );
        cfg.agent_groups[1].name = "group 0".into();
        let m = t.set_membership(&cfg.agent_groups);
        assert_eq!(t.id(&uri("b")), Some(b), "b keeps its id");
        assert_eq!(t.id(&uri("c")), Some(c));
        let x = t.id(&uri("x")).unwrap();
        assert!(![a, b, c].contains(&x), "a new agent gets a new id: {x:?}");
        assert_eq!(m.id(&uri("a")), None, "a is no longer routed");
        assert_eq!(t.id(&uri("a")), Some(a), "but keeps its id");
        assert_eq!(
            m.group_id("group 1"),
            Some(AgentGroupId(1)),
            "groups keep theirs"
        );
        assert_eq!(t.state(b), Some(AgentState::Ringing(CallKey(5))));
        assert!(t.is_signed_in(b, AgentGroupId(1)));
        assert_eq!(t.idle_since(b), secs(4));
        assert_eq!(m.groups_of(b), &[AgentGroupId(0), AgentGroupId(1)]);
    }

    #[test]
    fn sign_ins_follow_the_group_by_name_when_groups_are_reordered() {
        let now = t0();
        let mut c = config();
        named(
            &mut c,
            "Sales",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a"],
        );
        named(
            &mut c,
            "Support",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        let t = AgentTable::from_config(&c, now);
        let (sales, support) = (t.group_id("Sales").unwrap(), t.group_id("Support").unwrap());
        let a = t.id(&uri("a")).unwrap();
        t.sign_in(a, sales, now).unwrap();

        let mut c = config();
        named(
            &mut c,
            "Support",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        named(
            &mut c,
            "Sales",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a"],
        );
        t.set_membership(&c.agent_groups);
        assert_eq!(t.group_id("Sales"), Some(sales));
        assert!(t.is_signed_in(a, sales), "still signed in to Sales");
        assert!(!t.is_signed_in(a, support), "not signed in to Support");
    }

    #[test]
    fn round_robin_position_follows_the_agent_last_offered() {
        let now = t0();
        let mut c = config();
        named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["a", "b", "c"],
        );
        named(
            &mut c,
            "Support",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["d", "e"],
        );
        let t = AgentTable::from_config(&c, now);
        let sales = t.group_id("Sales").unwrap();
        let support = t.group_id("Support").unwrap();
        t.set_round_robin_last(t.membership().group(sales).unwrap(), 1); // b

        // Support moves first and Sales lists its members in another order.
        let mut c = config();
        named(
            &mut c,
            "Support",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["d", "e"],
        );
        named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["c", "a", "b"],
        );
        let m = t.set_membership(&c.agent_groups);
        assert_eq!(
            t.round_robin_last(m.group(sales).unwrap()),
            Some(2),
            "Sales goes on after b, wherever b now stands"
        );
        assert_eq!(t.round_robin_last(m.group(support).unwrap()), None);

        // b leaves Sales: the group starts again from its first member.
        let mut c = config();
        named(
            &mut c,
            "Sales",
            RoutingMethod::RoundRobin,
            Participation::Informal,
            &["a", "c"],
        );
        let m = t.set_membership(&c.agent_groups);
        assert_eq!(t.round_robin_last(m.group(sales).unwrap()), None);
    }

    #[test]
    fn a_group_dropped_and_put_back_gets_its_old_id_and_a_new_group_a_new_one() {
        let now = t0();
        let mut c = config();
        named(
            &mut c,
            "Sales",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        let t = AgentTable::from_config(&c, now);
        let sales = t.group_id("Sales").unwrap();
        let mut c = config();
        named(
            &mut c,
            "Support",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        let m = t.set_membership(&c.agent_groups);
        let support = t.group_id("Support").unwrap();
        assert_ne!(support, sales, "Support does not inherit Sales' id");
        assert!(m.group(sales).is_none(), "Sales is not routed");
        let a = t.id(&uri("a")).unwrap();
        assert!(!t.is_signed_in(a, support));
        let mut c = config();
        named(
            &mut c,
            "Sales",
            RoutingMethod::Serial,
            Participation::Formal,
            &["a", "b"],
        );
        t.set_membership(&c.agent_groups);
        assert_eq!(t.group_id("Sales"), Some(sales));
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

    #[test]
    fn slots_span_segments() {
        let s: Slots<AtomicU64> = Slots::new();
        assert!(s.get(0).is_none());
        let far = u32::try_from(SEGMENT_LEN * 3 + 5).unwrap();
        s.ensure(far).unwrap().store(7, Ordering::Relaxed);
        assert_eq!(s.get(far).unwrap().load(Ordering::Relaxed), 7);
        assert!(s.get(0).is_none(), "segment 0 still unallocated");
        assert!(s.ensure(u32::try_from(CAPACITY).unwrap()).is_none());

        // With a first block: ids in it need nothing, the next ones go to segment 0.
        let s: Slots<AtomicU64> = Slots::with_first(10);
        s.get(9).unwrap().store(9, Ordering::Relaxed);
        assert!(s.get(10).is_none());
        s.ensure(10).unwrap().store(10, Ordering::Relaxed);
        assert_eq!(s.get(10).unwrap().load(Ordering::Relaxed), 10);
        assert_eq!(s.get(9).unwrap().load(Ordering::Relaxed), 9);
        assert!(s.ensure(u32::try_from(CAPACITY + 10).unwrap()).is_none());
    }
}
