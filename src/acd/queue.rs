//! The pure core of one queue: who waits, in what order, and which agents each call is offered.
//!
//! [`QueueCore`] holds the calls waiting in one queue, first in first out (`docs/behaviour.md`,
//! Queues), checks overflow on entry, and on [`QueueCore::dispatch`] walks the waiting calls in
//! order and offers each one that is not already ringing to the next agents of its current group,
//! claiming them in the shared [`AgentTable`]. It reads no clock and does no I/O; a queue owner
//! task calls it.
//!
//! # Per call: the group cycle
//!
//! Each waiting call remembers where it stands: its current group (index into the queue's
//! ordered groups), the agents already tried in this pass of that group, and its ringback grace
//! periods. A dispatch for the call:
//!
//! 1. asks [`routing::pick`] for the current group, leaving out tried agents and those in grace;
//! 2. nobody eligible → the next group at once (`docs/behaviour.md`, Queues), cycling after the
//!    last back to the first;
//! 3. after one full cycle without anybody, the call waits (music on hold) at its group, with a
//!    fresh pass, until the queue is dispatched again (an agent freed or signed in, or a grace
//!    period ended: see [`Dispatch::wake_at`]);
//! 4. when [`QueueCore::offer_ended`] says an offer went unanswered (alert time, or all refused),
//!    the next dispatch goes on with the next agent of the group (serial, round robin, longest
//!    idle) or the next group (parallel, attendant, or after the last agent).
//!
//! # The tokio side: who owns what
//!
//! - **Agent table**: one `Arc<AgentTable>` for the process, shared by everyone, lock-free,
//!   with stable agent and group ids (see [`super::agents`]); a dispatch reads one membership
//!   snapshot of it.
//! - **Queue owner task**, one per queue: owns a `QueueCore` and a map `CallKey → call task
//!   sender`. Its inbox (a bounded `mpsc`) carries [`Command`]s (wrapped in
//!   `queue_task::QueueMsg`, whose `Join` also carries the call's inbox): `Join`, `Leave`,
//!   `Refused`, `OfferEnded` from call tasks ([`command_for`] maps a call's effects to them) and
//!   `AgentAvailable` from whoever frees an agent. For each it calls [`QueueCore::handle`] and
//!   sends the `(CallKey, Event)` pairs it pushes (entered, overflowed, offered) to the call
//!   tasks; it sleeps until the next message or the returned grace-period wake-up.
//! - **Call task**, one per call: owns the `workflow::call::Call` and applies its effects in
//!   order. Queue effects go to the queue owner as commands. `Ring`, `CancelRing`,
//!   `ReleaseAgent`, `DropAgent`, `Bridge`, `HangupPeer` become SIP legs plus the matching
//!   [`AgentTable`] call (`release`, `answered`, `call_ended`); after a release or a call end it
//!   sends `AgentAvailable` to every queue of every group of that agent
//!   ([`Membership::groups_of`], `queue_task::Queues::wake_groups`).
//! - A formal sign-in writes the table and wakes the group's queues the same way
//!   (`runtime::Acd::set_signed_in`); a reload or membership change wakes every queue.
//!
//! The `wired` tests at the bottom of this file are that driver in miniature, synchronous and on
//! simulated time.
//!
//! Agents in several queues are protected by the claim, not by a lock: whichever queue owner
//! wins the `compare_exchange` rings the agent; the loser picks again at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::acd::agents::{AgentId, AgentTable, CallKey, Membership};
use crate::acd::routing::{self, Exclusions, Pick, Refusal};
use crate::config::model::{AgentGroupId, OverflowCandidate, Queue, QueueId, RoutingMethod};
use crate::workflow::call::{Effect, Entry, Event, Offer};

/// A message to a queue owner. [`command_for`] derives the ones a call's effects carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Add the call (`Effect::Enqueue`).
    Join(CallKey),
    /// The call left (`Effect::Dequeue`).
    Leave(CallKey),
    /// Ringback grace for this call and agent (`Effect::NoteRefusal`).
    Refused {
        call: CallKey,
        agent: AgentId,
        until: Instant,
    },
    /// The call's offer ended unanswered (`Effect::NextOffer`).
    OfferEnded(CallKey),
    /// An agent of one of this queue's groups may have become eligible: freed (claim released,
    /// call ended) or signed in. Also sent by the owner to itself at [`Dispatch::wake_at`].
    AgentAvailable,
}

/// The queue command a call effect stands for, with the queue it goes to; `None` for effects
/// that are not for a queue owner.
pub fn command_for(call: CallKey, effect: &Effect) -> Option<(QueueId, Command)> {
    match effect {
        Effect::Enqueue(q) => Some((*q, Command::Join(call))),
        Effect::Dequeue(q) => Some((*q, Command::Leave(call))),
        Effect::NoteRefusal {
            queue,
            agent,
            until,
        } => Some((
            *queue,
            Command::Refused {
                call,
                agent: *agent,
                until: *until,
            },
        )),
        Effect::NextOffer(q) => Some((*q, Command::OfferEnded(call))),
        Effect::Play(_)
        | Effect::StartMusicOnHold
        | Effect::Ring(_)
        | Effect::CancelRing(_)
        | Effect::ReleaseAgent(_)
        | Effect::DropAgent(_)
        | Effect::Bridge(_)
        | Effect::Forward(_)
        | Effect::CancelForward
        | Effect::HangupPeer
        | Effect::Hangup
        | Effect::Arm(..)
        | Effect::Disarm(_)
        | Effect::Record(_) => None,
    }
}

/// For each agent group (by index), the queues that offer calls to it: where to send
/// [`Command::AgentAvailable`] when one of the group's agents frees up (the wired tests; the
/// daemon asks `queue_task::Queues::wake_groups`).
#[cfg(test)]
pub fn queues_by_group(config: &crate::config::model::Config) -> Vec<Vec<QueueId>> {
    let mut by_group = vec![Vec::new(); config.agent_groups.len()];
    for (q, queue) in config.queues.iter().enumerate() {
        let id = QueueId(u32::try_from(q).unwrap_or(u32::MAX));
        for g in &queue.agent_groups {
            if let Some(list) = by_group.get_mut(g.0 as usize)
                && !list.contains(&id)
            {
                list.push(id);
            }
        }
    }
    by_group
}

/// The answer to [`QueueCore::join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// For the arriving call (send as `Event::EnteredQueue`).
    pub entry: Entry,
    /// With candidate "oldest": the call removed to make room (send it `Event::Overflowed`).
    pub evicted: Option<CallKey>,
}

/// An offer for one waiting call (send as `Event::Offered`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedOffer {
    pub call: CallKey,
    pub offer: Offer,
}

/// What one [`QueueCore::dispatch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dispatch {
    /// Offers made, in queue order.
    pub offers: Vec<QueuedOffer>,
    /// The earliest end of a grace period that kept a waiting call from being offered: dispatch
    /// again then, even if no agent event arrives.
    pub wake_at: Option<Instant>,
}

/// One waiting call.
#[derive(Debug)]
struct Waiting {
    call: CallKey,
    /// Index into the queue's groups of the group being tried.
    group: usize,
    /// Offered in the current pass of that group (serial, round robin, longest idle).
    tried: Vec<AgentId>,
    /// The group rang everyone at once in this pass (parallel, attendant): move on.
    group_done: bool,
    /// Ringback grace periods for this call.
    refused: Vec<Refusal>,
    /// Agents are ringing for this call now.
    offering: bool,
}

/// The pure core of one queue. See the module docs.
#[derive(Debug)]
pub struct QueueCore {
    id: QueueId,
    groups: Vec<AgentGroupId>,
    overflow: Option<(u32, OverflowCandidate)>,
    next_seq: u64,
    /// Every waiting call, by arrival sequence (first in first out).
    waiting: BTreeMap<u64, Waiting>,
    by_call: HashMap<CallKey, u64>,
    /// Sequences of waiting calls with no offer out: those `dispatch` looks at.
    ready: BTreeSet<u64>,
    /// Scratch for claims lost to other queues during one pick.
    lost: Vec<AgentId>,
    /// The agent table's membership at the last dispatch, with its generation.
    members: Option<(u64, Arc<Membership>)>,
}

impl QueueCore {
    pub fn new(id: QueueId, queue: &Queue) -> Self {
        Self {
            id,
            groups: queue.agent_groups.clone(),
            overflow: queue.overflow.as_ref().map(|o| (o.max_calls, o.candidate)),
            next_seq: 0,
            waiting: BTreeMap::new(),
            by_call: HashMap::new(),
            ready: BTreeSet::new(),
            lost: Vec::new(),
            members: None,
        }
    }

    pub fn id(&self) -> QueueId {
        self.id
    }

    /// Takes a reloaded configuration of this queue, where it is queue `id` (its agent groups
    /// in the agent table's stable ids: [`AgentTable::stable_queue`]). Waiting calls keep their
    /// place (their order of entry); each restarts its group cycle at the first group, since the
    /// list and its members may have changed. Calls with an offer out keep it. Grace periods and
    /// tried agents stay as they are: agent ids are stable.
    pub fn reconfigure(&mut self, id: QueueId, queue: &Queue) {
        self.id = id;
        self.groups.clone_from(&queue.agent_groups);
        self.overflow = queue.overflow.as_ref().map(|o| (o.max_calls, o.candidate));
        for w in self.waiting.values_mut() {
            w.group = 0;
            w.tried.clear();
            w.group_done = false;
        }
    }

    /// Calls waiting (ringing ones included).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// 1 for the head of the queue.
    pub fn position(&self, call: CallKey) -> Option<usize> {
        let seq = self.by_call.get(&call)?;
        Some(self.waiting.range(..=seq).count())
    }

    /// Adds a call at the tail, after the overflow check (`docs/behaviour.md`, Queues): when
    /// `max_calls` calls already wait, candidate "newest" (or a limit of 0) turns the arriving call
    /// away, and candidate "oldest" removes the head of the queue to make room.
    pub fn join(&mut self, call: CallKey) -> Joined {
        self.leave(call);
        let mut evicted = None;
        if let Some((max, candidate)) = self.overflow
            && self.waiting.len() >= max as usize
        {
            if max == 0 || candidate == OverflowCandidate::Newest {
                return Joined {
                    entry: Entry::Overflow,
                    evicted: None,
                };
            }
            if let Some((seq, oldest)) = self.waiting.pop_first() {
                self.by_call.remove(&oldest.call);
                self.ready.remove(&seq);
                evicted = Some(oldest.call);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.insert(
            seq,
            Waiting {
                call,
                group: 0,
                tried: Vec::new(),
                group_done: false,
                refused: Vec::new(),
                offering: false,
            },
        );
        self.by_call.insert(call, seq);
        self.ready.insert(seq);
        let position = u32::try_from(self.waiting.len()).unwrap_or(u32::MAX);
        Joined {
            entry: Entry::Waiting { position },
            evicted,
        }
    }

    /// Removes a call (answered, hung up, timed out). Returns whether it was here.
    pub fn leave(&mut self, call: CallKey) -> bool {
        let Some(seq) = self.by_call.remove(&call) else {
            return false;
        };
        self.waiting.remove(&seq);
        self.ready.remove(&seq);
        true
    }

    /// The call's agent refused or failed: do not offer it this call before `until`.
    pub fn refused(&mut self, call: CallKey, agent: AgentId, until: Instant) {
        if let Some(w) = self.get_mut(call) {
            w.refused.retain(|r| r.agent != agent);
            w.refused.push(Refusal { agent, until });
        }
    }

    /// The call's offer ended unanswered; it is ready for the next agent or group.
    pub fn offer_ended(&mut self, call: CallKey) {
        if let Some(&seq) = self.by_call.get(&call)
            && let Some(w) = self.waiting.get_mut(&seq)
        {
            w.offering = false;
            self.ready.insert(seq);
        }
    }

    /// Offers every waiting call that has no offer out, in queue order, to the next eligible
    /// agents of its current group (claiming them in `table`), skipping groups with nobody
    /// eligible. Stops early once a call with no exclusions of its own finds nobody in any group:
    /// then nobody behind it can be served either.
    pub fn dispatch(&mut self, table: &AgentTable, now: Instant) -> Dispatch {
        let mut result = Dispatch::default();
        // One snapshot for the whole dispatch: a rebuild in between is seen by the next one.
        let generation = table.generation();
        if self.members.as_ref().is_none_or(|(g, _)| *g != generation) {
            self.members = Some((generation, table.membership_full()));
        }
        let Some((_, members)) = &self.members else {
            return result;
        };
        let mut from = 0;
        while let Some(&seq) = self.ready.range(from..).next() {
            from = seq + 1;
            let Some(w) = self.waiting.get_mut(&seq) else {
                self.ready.remove(&seq);
                continue;
            };
            w.refused.retain(|r| r.until > now);
            match offer_one(&self.groups, w, table, members, now, &mut self.lost) {
                Some(offer) => {
                    w.offering = true;
                    self.ready.remove(&seq);
                    result.offers.push(QueuedOffer {
                        call: w.call,
                        offer,
                    });
                }
                None if w.refused.is_empty() => break,
                None => {
                    if let Some(end) = w.refused.iter().map(|r| r.until).min() {
                        result.wake_at = Some(result.wake_at.map_or(end, |at| at.min(end)));
                    }
                }
            }
        }
        result
    }

    /// Applies one command and dispatches when it can have made an offer possible. Pushes the
    /// events for call tasks to `out` (entered, overflowed, offered) and returns when to send
    /// itself [`Command::AgentAvailable`] for a grace period's end.
    pub fn handle(
        &mut self,
        command: Command,
        table: &AgentTable,
        now: Instant,
        out: &mut Vec<(CallKey, Event)>,
    ) -> Option<Instant> {
        match command {
            Command::Join(call) => {
                let joined = self.join(call);
                out.push((call, Event::EnteredQueue(joined.entry)));
                if let Some(oldest) = joined.evicted {
                    out.push((oldest, Event::Overflowed));
                }
            }
            // Leaving frees no agent by itself (the call task releases its claims, which comes
            // back as `AgentAvailable`); a refusal only narrows the choice.
            Command::Leave(call) => {
                self.leave(call);
                return None;
            }
            Command::Refused { call, agent, until } => {
                self.refused(call, agent, until);
                return None;
            }
            Command::OfferEnded(call) => self.offer_ended(call),
            Command::AgentAvailable => {}
        }
        let dispatch = self.dispatch(table, now);
        out.extend(
            dispatch
                .offers
                .into_iter()
                .map(|o| (o.call, Event::Offered(o.offer))),
        );
        dispatch.wake_at
    }

    fn get_mut(&mut self, call: CallKey) -> Option<&mut Waiting> {
        let seq = self.by_call.get(&call)?;
        self.waiting.get_mut(seq)
    }
}

/// Walks the call's group cycle from where it stands; claims and returns the first offer.
fn offer_one(
    groups: &[AgentGroupId],
    w: &mut Waiting,
    table: &AgentTable,
    members: &Membership,
    now: Instant,
    lost: &mut Vec<AgentId>,
) -> Option<Offer> {
    let n = groups.len();
    if n == 0 {
        return None;
    }
    // The current group (maybe part-way through its pass), every other group, then the current
    // group again from a fresh pass: one full cycle.
    for step in 0..=n {
        if !w.group_done
            && let Some(offer) = offer_in_group(groups[w.group % n], w, table, members, now, lost)
        {
            return Some(offer);
        }
        if step == n {
            break;
        }
        w.group = (w.group + 1) % n;
        w.tried.clear();
        w.group_done = false;
    }
    None
}

fn offer_in_group(
    gid: AgentGroupId,
    w: &mut Waiting,
    table: &AgentTable,
    members: &Membership,
    now: Instant,
    lost: &mut Vec<AgentId>,
) -> Option<Offer> {
    // A group no longer routed (a rebuild dropped it; the reconfiguration is on its way):
    // nobody there. Ids are stable, so a group id never names another group.
    let group = members.group(gid)?;
    lost.clear();
    // Each lost claim removes one member from the next pick: bounded by the group's size.
    for _ in 0..=group.members.len() {
        let skip = Exclusions {
            tried: &w.tried,
            lost,
            refused: &w.refused,
            now,
        };
        let key = w.call;
        let agents = match routing::pick(group, table, &skip) {
            Pick::Nobody => return None,
            Pick::One { agent, index } => {
                if !table.claim(agent, key) {
                    lost.push(agent);
                    continue;
                }
                if group.routing == RoutingMethod::RoundRobin {
                    table.set_round_robin_last(group, index);
                }
                w.tried.push(agent);
                vec![agent]
            }
            // Attendant rings busy agents too: nothing to claim.
            Pick::Many(agents) if group.routing == RoutingMethod::Attendant => {
                w.group_done = true;
                agents
            }
            Pick::Many(agents) => {
                let (claimed, taken): (Vec<_>, Vec<_>) =
                    agents.into_iter().partition(|a| table.claim(*a, key));
                if claimed.is_empty() {
                    lost.extend(taken);
                    continue;
                }
                w.group_done = true;
                claimed
            }
        };
        return Some(Offer {
            group: gid,
            agents,
            alert_time: group.alert_time,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::agents::AgentState;
    use crate::config::model::{ActionTarget, Config, Participation};
    use crate::workflow::testing::{action, add_group, add_queue, config, set_overflow, t0};
    use std::time::Duration;

    const Q: QueueId = QueueId(0);

    fn core(c: &Config) -> QueueCore {
        QueueCore::new(Q, c.queue(Q))
    }

    fn agents_of(d: &Dispatch) -> Vec<(u32, Vec<u32>)> {
        d.offers
            .iter()
            .map(|o| (o.call.0, o.offer.agents.iter().map(|a| a.0).collect()))
            .collect()
    }

    /// A queue over two groups: serial [a0, a1] then parallel [a2, a3].
    fn two_groups() -> Config {
        let mut c = config();
        let g0 = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            15,
            &["a0", "a1"],
        );
        let g1 = add_group(
            &mut c,
            RoutingMethod::Parallel,
            Participation::Informal,
            20,
            &["a2", "a3"],
        );
        add_queue(&mut c, &[g0, g1]);
        c
    }

    #[test]
    fn first_in_first_out() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a0"],
        );
        add_queue(&mut c, &[g]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        table.answered(AgentId(0), CallKey(100)); // busy
        let mut q = core(&c);
        for k in 1..=3 {
            assert_eq!(q.join(CallKey(k)).entry, Entry::Waiting { position: k });
        }
        assert_eq!(
            q.dispatch(&table, now),
            Dispatch::default(),
            "nobody free: all wait"
        );
        table.call_ended(AgentId(0), now);
        assert_eq!(
            agents_of(&q.dispatch(&table, now)),
            vec![(1, vec![0])],
            "head first"
        );
        assert_eq!(q.position(CallKey(3)), Some(3));
        q.leave(CallKey(1));
        assert_eq!(q.position(CallKey(3)), Some(2));
        table.release(AgentId(0), CallKey(1));
        assert_eq!(agents_of(&q.dispatch(&table, now)), vec![(2, vec![0])]);
    }

    #[test]
    fn serial_next_agent_after_alert_time_then_next_group_then_cycle() {
        let c = two_groups();
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q = core(&c);
        let call = CallKey(1);
        q.join(call);
        let d = q.dispatch(&table, now);
        assert_eq!(agents_of(&d), vec![(1, vec![0])]);
        assert_eq!(d.offers[0].offer.alert_time, Duration::from_secs(15));
        assert_eq!(d.offers[0].offer.group, AgentGroupId(0));
        assert_eq!(
            q.dispatch(&table, now),
            Dispatch::default(),
            "no second offer while ringing"
        );
        // Alert time passes: the call task cancels (releases) and reports the offer ended.
        let mut expect = vec![vec![1], vec![2, 3], vec![0], vec![1], vec![2, 3]];
        expect.reverse();
        let mut last = vec![0];
        while let Some(next) = expect.pop() {
            for a in &last {
                assert!(table.release(AgentId(*a), call));
            }
            q.offer_ended(call);
            let d = q.dispatch(&table, now);
            assert_eq!(agents_of(&d), vec![(1, next.clone())]);
            last = next;
        }
    }

    #[test]
    fn group_with_nobody_eligible_is_skipped_at_once() {
        let c = two_groups();
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        table.answered(AgentId(0), CallKey(90));
        assert!(table.claim(AgentId(1), CallKey(91)));
        let mut q = core(&c);
        q.join(CallKey(1));
        let d = q.dispatch(&table, now);
        assert_eq!(agents_of(&d), vec![(1, vec![2, 3])]);
        assert_eq!(d.offers[0].offer.group, AgentGroupId(1));
    }

    #[test]
    fn with_nobody_anywhere_the_call_waits_and_is_offered_when_an_agent_frees() {
        let c = two_groups();
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        for a in 0..4 {
            table.answered(AgentId(a), CallKey(90 + a));
        }
        let mut q = core(&c);
        q.join(CallKey(1));
        q.join(CallKey(2));
        assert_eq!(q.dispatch(&table, now), Dispatch::default());
        table.call_ended(AgentId(3), now + Duration::from_secs(30));
        assert_eq!(agents_of(&q.dispatch(&table, now)), vec![(1, vec![3])]);
        table.call_ended(AgentId(1), now + Duration::from_secs(31));
        assert_eq!(agents_of(&q.dispatch(&table, now)), vec![(2, vec![1])]);
    }

    #[test]
    fn overflow_newest_turns_the_arriving_call_away() {
        let mut c = two_groups();
        set_overflow(
            &mut c,
            Q,
            2,
            OverflowCandidate::Newest,
            action(None, ActionTarget::Disconnect),
        );
        let mut q = core(&c);
        assert_eq!(q.join(CallKey(1)).entry, Entry::Waiting { position: 1 });
        assert_eq!(q.join(CallKey(2)).entry, Entry::Waiting { position: 2 });
        let j = q.join(CallKey(3));
        assert_eq!(
            j,
            Joined {
                entry: Entry::Overflow,
                evicted: None
            }
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.position(CallKey(3)), None);
        q.leave(CallKey(1));
        assert_eq!(q.join(CallKey(4)).entry, Entry::Waiting { position: 2 });
    }

    #[test]
    fn overflow_oldest_evicts_the_head_and_queues_the_new_call() {
        let mut c = two_groups();
        set_overflow(
            &mut c,
            Q,
            2,
            OverflowCandidate::Oldest,
            action(None, ActionTarget::Disconnect),
        );
        let mut q = core(&c);
        q.join(CallKey(1));
        q.join(CallKey(2));
        let j = q.join(CallKey(3));
        assert_eq!(
            j,
            Joined {
                entry: Entry::Waiting { position: 2 },
                evicted: Some(CallKey(1))
            }
        );
        assert_eq!(q.position(CallKey(1)), None);
        assert_eq!(q.position(CallKey(2)), Some(1));
        assert_eq!(q.position(CallKey(3)), Some(2));
    }

    #[test]
    fn overflow_limit_zero_overflows_every_call_whatever_the_candidate() {
        for candidate in [OverflowCandidate::Newest, OverflowCandidate::Oldest] {
            let mut c = two_groups();
            set_overflow(
                &mut c,
                Q,
                0,
                candidate,
                action(None, ActionTarget::Disconnect),
            );
            let mut q = core(&c);
            assert_eq!(
                q.join(CallKey(1)),
                Joined {
                    entry: Entry::Overflow,
                    evicted: None
                }
            );
            assert!(q.is_empty());
        }
    }

    #[test]
    fn refused_agent_waits_out_the_grace_period_for_that_call_only() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a0"],
        );
        add_queue(&mut c, &[g]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q = core(&c);
        q.join(CallKey(1));
        assert_eq!(agents_of(&q.dispatch(&table, now)), vec![(1, vec![0])]);
        // a0 declines (603) at +2 s; grace 60 s.
        let t = now + Duration::from_secs(2);
        table.release(AgentId(0), CallKey(1));
        q.refused(CallKey(1), AgentId(0), t + Duration::from_secs(60));
        q.offer_ended(CallKey(1));
        let d = q.dispatch(&table, t);
        assert!(d.offers.is_empty(), "not offered again during grace");
        assert_eq!(d.wake_at, Some(t + Duration::from_secs(60)));
        // A second call behind it may be offered a0 at once.
        q.join(CallKey(2));
        assert_eq!(agents_of(&q.dispatch(&table, t)), vec![(2, vec![0])]);
        table.release(AgentId(0), CallKey(2));
        q.leave(CallKey(2));
        let d = q.dispatch(&table, t + Duration::from_secs(59));
        assert!(d.offers.is_empty());
        let d = q.dispatch(&table, t + Duration::from_secs(60));
        assert_eq!(agents_of(&d), vec![(1, vec![0])], "grace over");
    }

    #[test]
    fn two_queues_sharing_an_agent_never_offer_it_twice() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::LongestIdle,
            Participation::Informal,
            20,
            &["a0"],
        );
        add_queue(&mut c, &[g]);
        add_queue(&mut c, &[g]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q0 = QueueCore::new(QueueId(0), c.queue(QueueId(0)));
        let mut q1 = QueueCore::new(QueueId(1), c.queue(QueueId(1)));
        q0.join(CallKey(1));
        q1.join(CallKey(2));
        assert_eq!(agents_of(&q1.dispatch(&table, now)), vec![(2, vec![0])]);
        assert!(q0.dispatch(&table, now).offers.is_empty());
        assert_eq!(
            table.state(AgentId(0)),
            Some(AgentState::Ringing(CallKey(2)))
        );
    }

    #[test]
    fn parallel_claims_only_free_agents_and_attendant_claims_nobody() {
        let mut c = config();
        let p = add_group(
            &mut c,
            RoutingMethod::Parallel,
            Participation::Informal,
            20,
            &["a0", "a1", "a2"],
        );
        let a = add_group(
            &mut c,
            RoutingMethod::Attendant,
            Participation::Informal,
            20,
            &["a0", "a1", "a2"],
        );
        add_queue(&mut c, &[p]);
        add_queue(&mut c, &[a]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        assert!(table.claim(AgentId(1), CallKey(50)));
        let mut qp = QueueCore::new(QueueId(0), c.queue(QueueId(0)));
        qp.join(CallKey(1));
        assert_eq!(agents_of(&qp.dispatch(&table, now)), vec![(1, vec![0, 2])]);
        assert_eq!(
            table.state(AgentId(2)),
            Some(AgentState::Ringing(CallKey(1)))
        );
        let mut qa = QueueCore::new(QueueId(1), c.queue(QueueId(1)));
        qa.join(CallKey(2));
        assert_eq!(
            agents_of(&qa.dispatch(&table, now)),
            vec![(2, vec![0, 1, 2])]
        );
        assert_eq!(
            table.state(AgentId(2)),
            Some(AgentState::Ringing(CallKey(1))),
            "not claimed"
        );
    }

    #[test]
    fn round_robin_position_is_shared_by_the_calls_of_a_group() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::RoundRobin,
            Participation::Informal,
            20,
            &["a0", "a1", "a2"],
        );
        add_queue(&mut c, &[g]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q = core(&c);
        let mut counts = [0; 3];
        for k in 0..6u32 {
            q.join(CallKey(k));
            let d = q.dispatch(&table, now);
            let agent = d.offers[0].offer.agents[0];
            counts[agent.0 as usize] += 1;
            // Answered and done.
            q.leave(CallKey(k));
            table.answered(agent, CallKey(k));
            table.call_ended(agent, now + Duration::from_secs(u64::from(k)));
        }
        assert_eq!(counts, [2, 2, 2]);
    }

    #[test]
    fn attendant_group_rings_once_per_pass_then_the_next_group() {
        let mut c = config();
        let a = add_group(
            &mut c,
            RoutingMethod::Attendant,
            Participation::Informal,
            30,
            &["a0", "a1"],
        );
        let s = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            10,
            &["a2"],
        );
        add_queue(&mut c, &[a, s]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        table.answered(AgentId(0), CallKey(77)); // busy: attendant rings it anyway
        let mut q = core(&c);
        q.join(CallKey(1));
        let d = q.dispatch(&table, now);
        assert_eq!(agents_of(&d), vec![(1, vec![0, 1])]);
        assert_eq!(d.offers[0].offer.alert_time, Duration::from_secs(30));
        q.offer_ended(CallKey(1));
        let d = q.dispatch(&table, now);
        assert_eq!(
            agents_of(&d),
            vec![(1, vec![2])],
            "alert time over: next group"
        );
        table.release(AgentId(2), CallKey(1));
        q.offer_ended(CallKey(1));
        assert_eq!(
            agents_of(&q.dispatch(&table, now)),
            vec![(1, vec![0, 1])],
            "cycle"
        );
    }

    #[test]
    fn a_formal_sign_in_lets_a_waiting_call_through() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Formal,
            20,
            &["a0"],
        );
        add_queue(&mut c, &[g]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q = core(&c);
        q.join(CallKey(1));
        assert!(
            q.dispatch(&table, now).offers.is_empty(),
            "nobody signed in"
        );
        table.sign_in(AgentId(0), g, now).unwrap();
        assert_eq!(agents_of(&q.dispatch(&table, now)), vec![(1, vec![0])]);
    }

    #[test]
    fn queues_by_group_lists_each_queue_once() {
        let mut c = config();
        let g0 = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a0"],
        );
        let g1 = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a1"],
        );
        let _unused = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a2"],
        );
        add_queue(&mut c, &[g0, g1, g0]);
        add_queue(&mut c, &[g1]);
        assert_eq!(
            queues_by_group(&c),
            vec![vec![QueueId(0)], vec![QueueId(0), QueueId(1)], vec![]]
        );
    }

    #[test]
    fn handle_answers_joins_and_offers_as_call_events() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a0"],
        );
        add_queue(&mut c, &[g]);
        set_overflow(
            &mut c,
            Q,
            1,
            OverflowCandidate::Oldest,
            action(None, ActionTarget::Disconnect),
        );
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q = core(&c);
        let mut out = vec![];
        q.handle(Command::Join(CallKey(1)), &table, now, &mut out);
        let offer = Offer {
            group: g,
            agents: vec![AgentId(0)],
            alert_time: Duration::from_secs(20),
        };
        assert_eq!(
            out,
            vec![
                (
                    CallKey(1),
                    Event::EnteredQueue(Entry::Waiting { position: 1 })
                ),
                (CallKey(1), Event::Offered(offer.clone())),
            ]
        );
        out.clear();
        q.handle(Command::Join(CallKey(2)), &table, now, &mut out);
        assert_eq!(
            out,
            vec![
                (
                    CallKey(2),
                    Event::EnteredQueue(Entry::Waiting { position: 1 })
                ),
                (CallKey(1), Event::Overflowed),
            ],
            "a0 is still claimed by call 1 until its task cancels"
        );
        out.clear();
        table.release(AgentId(0), CallKey(1));
        q.handle(Command::AgentAvailable, &table, now, &mut out);
        assert_eq!(out, vec![(CallKey(2), Event::Offered(offer))]);
        // Effects map to commands for the right queue.
        let until = now + Duration::from_secs(60);
        let refusal = Effect::NoteRefusal {
            queue: Q,
            agent: AgentId(0),
            until,
        };
        assert_eq!(
            command_for(CallKey(2), &refusal),
            Some((
                Q,
                Command::Refused {
                    call: CallKey(2),
                    agent: AgentId(0),
                    until
                }
            ))
        );
        assert_eq!(
            command_for(CallKey(2), &Effect::NextOffer(Q)),
            Some((Q, Command::OfferEnded(CallKey(2))))
        );
        assert_eq!(command_for(CallKey(2), &Effect::Ring(AgentId(0))), None);
    }

    #[test]
    fn reconfigure_keeps_the_waiting_calls_and_restarts_their_cycle() {
        let c = two_groups();
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        let mut q = core(&c);
        q.join(CallKey(1));
        q.join(CallKey(2));
        q.dispatch(&table, now);
        table.release(AgentId(0), CallKey(1));
        table.release(AgentId(1), CallKey(2));
        // Reload: only the parallel group is left, as group 0.
        let mut c2 = config();
        let g = add_group(
            &mut c2,
            RoutingMethod::Parallel,
            Participation::Informal,
            20,
            &["a2", "a3"],
        );
        c2.agent_groups[g.0 as usize].name = "group 1".into();
        add_queue(&mut c2, &[g]);
        table.set_membership(&c2.agent_groups);
        q.reconfigure(Q, &table.stable_queue(&c2, c2.queue(Q)));
        assert_eq!(q.position(CallKey(2)), Some(2));
        q.offer_ended(CallKey(1));
        q.offer_ended(CallKey(2));
        let d = q.dispatch(&table, now);
        assert_eq!(
            agents_of(&d),
            vec![(1, vec![2, 3])],
            "a2, a3 keep their ids"
        );
    }

    #[test]
    fn dispatch_stops_early_when_nobody_is_free() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::LongestIdle,
            Participation::Informal,
            20,
            &["a0"],
        );
        add_queue(&mut c, &[g]);
        let now = t0();
        let table = AgentTable::from_config(&c, now);
        table.answered(AgentId(0), CallKey(1000));
        let mut q = core(&c);
        for k in 0..500 {
            q.join(CallKey(k));
        }
        assert!(q.dispatch(&table, now).offers.is_empty());
        // The head was tried; the others were not touched (their group index is unchanged).
        assert!(
            q.waiting
                .values()
                .skip(1)
                .all(|w| w.group == 0 && w.tried.is_empty())
        );
    }
}

/// The call machine, the queue cores and the agent table wired together by a small synchronous
/// stand-in for the tokio driver, on simulated time: checks that the effects and events of the
/// three fit together.
#[cfg(test)]
mod wired {
    use super::*;
    use crate::acd::agents::AgentState;
    use crate::config::model::{ActionTarget, Config, Participation, WorkflowId, WorkflowKind};
    use crate::workflow::call::{Call, Effect, Event, Now, Outcome, SipStatus, Timer};
    use crate::workflow::testing::{
        action, add_group, add_queue, add_workflow, config, set_overflow, set_timeout, t0, utc0,
    };
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    struct World {
        config: Arc<Config>,
        table: AgentTable,
        queues: Vec<QueueCore>,
        calls: BTreeMap<CallKey, Call>,
        timers: BTreeMap<(CallKey, u8), (Instant, Timer)>,
        /// Agent legs ringing: (call, agent).
        ringing: BTreeSet<(CallKey, AgentId)>,
        /// Which agent each call is bridged to.
        bridged: HashMap<CallKey, AgentId>,
        by_group: Vec<Vec<QueueId>>,
        wake_at: Option<Instant>,
        inbox: VecDeque<(CallKey, Event)>,
        now: Now,
    }

    fn timer_slot(t: Timer) -> u8 {
        match t {
            Timer::NoInput => 0,
            Timer::Alert => 1,
            Timer::QueueTimeout => 2,
        }
    }

    impl World {
        fn new(config: Config) -> Self {
            let now = Now {
                instant: t0(),
                utc: utc0(),
            };
            let queues = (0..config.queues.len())
                .map(|i| {
                    let id = QueueId(u32::try_from(i).unwrap());
                    QueueCore::new(id, config.queue(id))
                })
                .collect();
            let by_group = queues_by_group(&config);
            Self {
                table: AgentTable::from_config(&config, now.instant),
                config: Arc::new(config),
                queues,
                calls: BTreeMap::new(),
                timers: BTreeMap::new(),
                ringing: BTreeSet::new(),
                bridged: HashMap::new(),
                by_group,
                wake_at: None,
                inbox: VecDeque::new(),
                now,
            }
        }

        fn arrive(&mut self, key: u32) {
            let key = CallKey(key);
            let call = Call::new(Arc::clone(&self.config), WorkflowId(0), self.now);
            self.calls.insert(key, call);
            self.send(key, Event::Started);
        }

        fn send(&mut self, key: CallKey, event: Event) {
            self.inbox.push_back((key, event));
            let mut budget = 10_000;
            while let Some((key, event)) = self.inbox.pop_front() {
                budget -= 1;
                assert!(budget > 0, "event storm");
                let Some(call) = self.calls.get_mut(&key) else {
                    continue;
                };
                let mut out = vec![];
                call.on(event, self.now, &mut out);
                for effect in out {
                    self.apply(key, effect);
                }
            }
        }

        fn apply(&mut self, key: CallKey, effect: Effect) {
            let now = self.now.instant;
            if let Some((queue, command)) = command_for(key, &effect) {
                self.command(queue, command);
                return;
            }
            let freed = match effect {
                Effect::Ring(agent) => {
                    self.ringing.insert((key, agent));
                    None
                }
                Effect::CancelRing(agent)
                | Effect::ReleaseAgent(agent)
                | Effect::DropAgent(agent) => {
                    self.ringing.remove(&(key, agent));
                    self.table.release(agent, key);
                    Some(agent)
                }
                Effect::Bridge(agent) => {
                    self.ringing.remove(&(key, agent));
                    self.table.answered(agent, key);
                    self.bridged.insert(key, agent);
                    None
                }
                Effect::HangupPeer | Effect::Hangup => {
                    let agent = self.bridged.remove(&key);
                    if let Some(agent) = agent {
                        self.table.call_ended(agent, now);
                    }
                    agent
                }
                Effect::Arm(t, at) => {
                    self.timers.insert((key, timer_slot(t)), (at, t));
                    None
                }
                Effect::Disarm(t) => {
                    self.timers.remove(&(key, timer_slot(t)));
                    None
                }
                Effect::Enqueue(_)
                | Effect::Dequeue(_)
                | Effect::NoteRefusal { .. }
                | Effect::NextOffer(_)
                | Effect::Play(_)
                | Effect::StartMusicOnHold
                | Effect::Forward(_)
                | Effect::CancelForward
                | Effect::Record(_) => None,
            };
            if let Some(agent) = freed {
                let mut queues: Vec<QueueId> = vec![];
                for g in self.table.membership().groups_of(agent) {
                    queues.extend(&self.by_group[g.0 as usize]);
                }
                queues.sort_unstable();
                queues.dedup();
                for q in queues {
                    self.command(q, Command::AgentAvailable);
                }
            }
            if self.calls.get(&key).is_some_and(|c| c.outcome().is_some()) {
                self.timers.retain(|(k, _), _| *k != key);
            }
        }

        /// What a queue owner task does with one message.
        fn command(&mut self, queue: QueueId, command: Command) {
            let mut out = vec![];
            let q = &mut self.queues[queue.0 as usize];
            if let Some(wake) = q.handle(command, &self.table, self.now.instant, &mut out) {
                self.wake_at = self.wake_at.min(Some(wake)).or(Some(wake));
            }
            self.inbox.extend(out);
        }

        fn dispatch_all(&mut self) {
            self.wake_at = None;
            for q in 0..self.queues.len() {
                self.command(QueueId(u32::try_from(q).unwrap()), Command::AgentAvailable);
            }
        }

        /// Moves simulated time forward by `secs`, firing due timers and grace wake-ups in order.
        fn wait(&mut self, secs: u64) {
            let until = self.now.instant + Duration::from_secs(secs);
            for _ in 0..10_000 {
                let next_timer = self
                    .timers
                    .iter()
                    .map(|(k, (at, t))| (*at, k.0, *t))
                    .min_by_key(|(at, k, _)| (*at, *k));
                let next_wake = self.wake_at.filter(|w| *w <= until);
                match (next_timer.filter(|(at, ..)| *at <= until), next_wake) {
                    (Some((at, key, t)), wake) if wake.is_none_or(|w| at <= w) => {
                        self.set_now(at);
                        self.timers.remove(&(key, timer_slot(t)));
                        self.send(key, t.event());
                    }
                    (_, Some(wake)) => {
                        self.set_now(wake);
                        self.dispatch_all();
                        let pending: Vec<_> = self.inbox.drain(..).collect();
                        for (k, e) in pending {
                            self.send(k, e);
                        }
                    }
                    _ => break,
                }
            }
            self.set_now(until);
        }

        fn set_now(&mut self, at: Instant) {
            let by = at.saturating_duration_since(self.now.instant);
            self.now = self.now.after(by);
        }

        fn ringing_for(&self, key: u32) -> Vec<u32> {
            self.ringing
                .iter()
                .filter(|(k, _)| k.0 == key)
                .map(|(_, a)| a.0)
                .collect()
        }

        fn outcome(&self, key: u32) -> Option<&Outcome> {
            self.calls[&CallKey(key)].outcome()
        }
    }

    fn one_queue(routing: RoutingMethod, agents: &[&str]) -> Config {
        let mut c = config();
        let g = add_group(&mut c, routing, Participation::Informal, 20, agents);
        let q = add_queue(&mut c, &[g]);
        add_workflow(&mut c, WorkflowKind::HuntGroup, ActionTarget::Queue(q));
        c
    }

    #[test]
    fn declines_are_respected_for_the_grace_period_then_offered_again() {
        let mut w = World::new(one_queue(RoutingMethod::Serial, &["a0", "a1"]));
        w.arrive(1);
        assert_eq!(w.ringing_for(1), vec![0]);
        w.wait(2);
        w.send(CallKey(1), Event::AgentRefused(AgentId(0), SipStatus(603)));
        assert_eq!(w.ringing_for(1), vec![1], "next agent at once");
        w.wait(2);
        w.send(CallKey(1), Event::AgentRefused(AgentId(1), SipStatus(486)));
        assert_eq!(
            w.ringing_for(1),
            Vec::<u32>::new(),
            "both in grace: the call waits"
        );
        // Another call is offered a0 at once: the grace is for call 1 only.
        w.arrive(2);
        assert_eq!(w.ringing_for(2), vec![0]);
        w.send(CallKey(2), Event::CallerHungUp);
        assert_eq!(w.table.state(AgentId(0)), Some(AgentState::Idle));
        assert_eq!(
            w.ringing_for(1),
            Vec::<u32>::new(),
            "a0 freed, but still in grace for call 1"
        );
        // a0 declined at +2 s with a 60 s grace: offered again at +62 s, not before.
        w.wait(57);
        assert_eq!(w.ringing_for(1), Vec::<u32>::new());
        w.wait(1);
        assert_eq!(w.ringing_for(1), vec![0]);
        w.send(CallKey(1), Event::AgentAnswered(AgentId(0)));
        w.send(CallKey(1), Event::PeerHungUp);
        assert_eq!(w.outcome(1), Some(&Outcome::Answered { agent: AgentId(0) }));
        assert_eq!(w.table.state(AgentId(0)), Some(AgentState::Idle));
    }

    #[test]
    fn alert_timeouts_walk_the_group_and_cycle_until_the_queue_times_out() {
        let mut c = one_queue(RoutingMethod::Serial, &["a0", "a1"]);
        set_timeout(
            &mut c,
            QueueId(0),
            100,
            action(None, ActionTarget::Disconnect),
        );
        let mut w = World::new(c);
        w.arrive(1);
        let mut seen = vec![];
        for _ in 0..5 {
            seen.push(w.ringing_for(1));
            w.wait(20);
        }
        assert_eq!(seen, vec![vec![0], vec![1], vec![0], vec![1], vec![0]]);
        assert_eq!(
            w.outcome(1),
            Some(&Outcome::Disconnected {
                because: crate::workflow::call::Because::QueueTimeout
            })
        );
        assert!(
            w.table.is_free(AgentId(0)) && w.table.is_free(AgentId(1)),
            "claims released"
        );
        assert!(w.queues[0].is_empty());
    }

    #[test]
    fn oldest_overflow_frees_its_agent_for_the_next_call() {
        let mut c = one_queue(RoutingMethod::Serial, &["a0"]);
        set_overflow(
            &mut c,
            QueueId(0),
            1,
            OverflowCandidate::Oldest,
            action(None, ActionTarget::Disconnect),
        );
        let mut w = World::new(c);
        w.arrive(1);
        assert_eq!(w.ringing_for(1), vec![0]);
        w.arrive(2);
        assert_eq!(
            w.outcome(1),
            Some(&Outcome::Disconnected {
                because: crate::workflow::call::Because::Overflow
            })
        );
        assert_eq!(
            w.ringing_for(2),
            vec![0],
            "a0 released by call 1, offered to call 2"
        );
    }

    #[test]
    fn a_freed_agent_goes_to_the_head_of_the_queue() {
        let mut w = World::new(one_queue(RoutingMethod::LongestIdle, &["a0"]));
        w.arrive(1);
        w.send(CallKey(1), Event::AgentAnswered(AgentId(0)));
        w.arrive(2);
        w.arrive(3);
        assert!(w.ringing.is_empty());
        w.wait(60);
        w.send(CallKey(1), Event::PeerHungUp);
        assert_eq!(w.ringing_for(2), vec![0]);
        assert_eq!(w.ringing_for(3), Vec::<u32>::new());
    }
}
