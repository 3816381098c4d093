//! The queue owners: one tokio task per queue drives its [`QueueCore`], and [`Queues`] is the
//! handle call tasks use to reach them.
//!
//! ```text
//! call task ── QueueMsg (bounded mpsc) ──▶ queue owner ── Event (call's inbox) ──▶ call task
//!                                           │ QueueCore::join / leave / refused / offer_ended
//!                                           │ QueueCore::dispatch (claims in the AgentTable)
//!                                           └ sleeps until the next message or Dispatch::wake_at
//! ```
//!
//! The owner never waits on a call task: answers go into each call's unbounded inbox. Call tasks
//! hand messages that must not be lost (join, leave, refusal, offer ended) to the owner's bounded
//! inbox without waiting in their event loop (see `call_task`); [`Queues::wake_groups`] and
//! [`Queues::wake_all`] use `try_send`, because a full inbox already holds messages that will
//! each dispatch again.
//!
//! Agent and group ids are the agent table's stable ids ([`super::agents`]): the owner keeps its
//! queue's groups, grace periods and tried agents in them, and they mean the same agents and
//! groups whatever the table's membership is when the next command arrives.
//!
//! Time is `tokio::time::Instant` (converted to `std` for the pure core), so a test with
//! `tokio::time::pause()` moves grace periods too.
//!
//! # Reload
//!
//! [`Queues::reload`] builds the handles of a new configuration from the old ones. A queue
//! whose name is in both keeps its owner task, which takes the new settings
//! ([`QueueCore::reconfigure`]): calls waiting there keep their order of entry and are offered
//! to the new configuration's groups at once, while calls still holding the old configuration
//! reach the same owner through their old handles (by the old index). A queue of the new file
//! only gets a new owner. A queue the new file drops keeps its owner for the calls waiting in
//! it, *retired*: it is held weakly (it ends with its last call), keeps its groups (a group no
//! longer routed just offers nobody) and is woken with the others. The call tasks keep their
//! own configuration: time-outs still run from queue entry, with the duration and actions the
//! call started with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::acd::agents::{AgentState, AgentTable, CallKey};
use crate::acd::estimate::WaitEstimator;
use crate::acd::queue::{Command, QueueCore};
use crate::config::model::{AgentGroupId, Config, Queue, QueueId};
use crate::workflow::call::{Entry, Event};

/// Capacity of each queue owner's inbox.
const INBOX: usize = 1024;

/// What a call task (or whoever frees an agent) tells a queue owner.
#[derive(Debug)]
pub enum QueueMsg {
    /// Add the call ([`Command::Join`]) and keep `inbox` to answer it: `Event::EnteredQueue`,
    /// later `Event::Offered`.
    Join {
        call: CallKey,
        inbox: mpsc::UnboundedSender<Event>,
    },
    /// A reload: this queue is now queue `id` with these settings (groups in stable ids).
    /// Waiting calls keep their place and are dispatched again.
    Reconfigure { id: QueueId, queue: Box<Queue> },
    /// Where is this call: its position and expected wait, for an announcement. `None` when it
    /// is not waiting here.
    Where {
        call: CallKey,
        reply: oneshot::Sender<Option<Place>>,
    },
    /// A call that entered this queue at `entered` was answered (the wait estimate's sample).
    Answered { entered: Instant },
    /// Any other command for the queue's core: `Leave` (the owner forgets the call's inbox),
    /// `Refused`, `OfferEnded`, `AgentAvailable`. A `Join` sent this way has no inbox to answer
    /// and is treated like a call whose task is gone; send [`QueueMsg::Join`].
    Core(Command),
}

/// A waiting call's place, as [`QueueMsg::Where`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// 1 = next.
    pub position: u32,
    /// From the queue's recent answers ([`WaitEstimator`]); `None` without any.
    pub expected_wait: Option<Duration>,
}

/// Handles to every queue owner of one configuration.
#[derive(Debug, Clone)]
pub struct Queues {
    /// By [`QueueId`] of that configuration, with the queue's groups (stable ids).
    owners: Arc<[Handle]>,
    /// Owners of queues a reload dropped, still serving the calls that wait in them.
    retired: Arc<[Retired]>,
}

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<QueueMsg>,
    queue: Queue,
}

/// The owner of a queue no longer in the configuration (see the module docs).
#[derive(Debug)]
struct Retired {
    /// Weak: the owner ends when the last call holding the old configuration does.
    tx: mpsc::WeakSender<QueueMsg>,
    /// Its id in the last configuration that had it (for logs).
    id: QueueId,
    /// Its settings, groups in stable ids.
    queue: Queue,
}

impl Queues {
    /// Starts one owner task per queue of `config`, routing over `agents`. The tasks end when
    /// every [`Queues`] clone is dropped.
    pub fn spawn(config: &Config, agents: &Arc<AgentTable>) -> Self {
        let owners: Vec<_> = config
            .queues
            .iter()
            .enumerate()
            .map(|(i, queue)| {
                let queue = agents.stable_queue(config, queue);
                Handle {
                    tx: spawn_owner(queue_id(i), &queue, agents),
                    queue,
                }
            })
            .collect();
        Self {
            owners: owners.into(),
            retired: Arc::new([]),
        }
    }

    /// The handles for `config`, reloaded over `self` (the handles of `old`): a queue of the
    /// same name keeps its owner, reconfigured, with the calls waiting in it; a new queue gets a
    /// new owner; a dropped queue's owner is retired. See the module docs. Set the agent
    /// table's membership for `config` first.
    pub async fn reload(&self, old: &Config, config: &Config, agents: &Arc<AgentTable>) -> Self {
        // Every owner alive, by queue name: retired ones, then the old configuration's.
        let mut alive: HashMap<String, (mpsc::Sender<QueueMsg>, QueueId, Queue)> = HashMap::new();
        for r in self.retired.iter() {
            if let Some(tx) = r.tx.upgrade() {
                alive.insert(r.queue.name.clone(), (tx, r.id, r.queue.clone()));
            }
        }
        for (i, (h, queue)) in self.owners.iter().zip(&old.queues).enumerate() {
            alive.insert(
                queue.name.clone(),
                (h.tx.clone(), queue_id(i), h.queue.clone()),
            );
        }
        let mut owners = Vec::with_capacity(config.queues.len());
        for (i, queue) in config.queues.iter().enumerate() {
            let id = queue_id(i);
            let queue = agents.stable_queue(config, queue);
            let tx = match alive.remove(&queue.name) {
                Some((tx, ..)) => {
                    let msg = QueueMsg::Reconfigure {
                        id,
                        queue: Box::new(queue.clone()),
                    };
                    // An owner that is gone has no calls to keep: start one.
                    match tx.send(msg).await {
                        Ok(()) => tx,
                        Err(_) => spawn_owner(id, &queue, agents),
                    }
                }
                None => spawn_owner(id, &queue, agents),
            };
            owners.push(Handle { tx, queue });
        }
        let retired: Vec<Retired> = alive
            .into_values()
            .map(|(tx, id, queue)| Retired {
                tx: tx.downgrade(),
                id,
                queue,
            })
            .collect();
        Self {
            owners: owners.into(),
            retired: retired.into(),
        }
    }

    /// The inbox of queue `queue`'s owner.
    pub fn sender(&self, queue: QueueId) -> Option<&mpsc::Sender<QueueMsg>> {
        self.owners.get(queue.0 as usize).map(|h| &h.tx)
    }

    /// Sends a message that must arrive (waits while the owner's inbox is full). A queue whose
    /// owner is gone (shutdown) drops it.
    pub async fn send(&self, queue: QueueId, msg: QueueMsg) {
        if let Some(tx) = self.sender(queue) {
            let _ = tx.send(msg).await;
        }
    }

    /// Sends a message without waiting. Gives it back when the owner's inbox is full; a queue
    /// whose owner is gone (shutdown) drops it.
    ///
    /// # Errors
    /// The message, when the inbox is full.
    pub fn try_send(&self, queue: QueueId, msg: QueueMsg) -> Result<(), QueueMsg> {
        let Some(tx) = self.sender(queue) else {
            return Ok(());
        };
        match tx.try_send(msg) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(msg)) => Err(msg),
        }
    }

    /// Tells the queues that offer calls to any of `groups` to dispatch: one of their agents
    /// was freed or signed in. Never waits: a full inbox already holds messages that will each
    /// dispatch.
    pub fn wake_groups(&self, groups: &[AgentGroupId]) {
        let serves = |q: &Queue| q.agent_groups.iter().any(|g| groups.contains(g));
        for h in self.owners.iter().filter(|h| serves(&h.queue)) {
            let _ = h.tx.try_send(QueueMsg::Core(Command::AgentAvailable));
        }
        for r in self.retired.iter().filter(|r| serves(&r.queue)) {
            if let Some(tx) = r.tx.upgrade() {
                let _ = tx.try_send(QueueMsg::Core(Command::AgentAvailable));
            }
        }
    }

    /// Tells every queue to dispatch (membership rebuilt).
    pub fn wake_all(&self) {
        for h in self.owners.iter() {
            let _ = h.tx.try_send(QueueMsg::Core(Command::AgentAvailable));
        }
        for r in self.retired.iter() {
            if let Some(tx) = r.tx.upgrade() {
                let _ = tx.try_send(QueueMsg::Core(Command::AgentAvailable));
            }
        }
    }
}

/// A call's queue messages that the owners' inboxes had no room for yet, in order: how a call
/// task hands messages over without waiting inside its event loop. [`Outbox::send`] never
/// waits; the call's `select!` runs [`Outbox::flush_one`] beside its other events, so a BYE is
/// heard while an owner is slow.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    held: std::collections::VecDeque<(QueueId, QueueMsg)>,
}

impl Outbox {
    /// Straight into the owner's inbox when there is room and nothing is held before it, else
    /// held (order is kept across queues: a join is never overtaken by its leave).
    pub(super) fn send(&mut self, queues: &Queues, queue: QueueId, msg: QueueMsg) {
        if self.held.is_empty() {
            if let Err(msg) = queues.try_send(queue, msg) {
                self.held.push_back((queue, msg));
            }
        } else {
            self.held.push_back((queue, msg));
        }
    }

    /// Waits for room for the oldest held message and hands it over; pending forever while
    /// nothing is held. Cancel-safe: a message leaves the outbox only with a slot reserved.
    pub(super) async fn flush_one(&mut self, queues: &Queues) {
        loop {
            let Some((queue, _)) = self.held.front() else {
                return std::future::pending().await;
            };
            // A queue this configuration does not have, or an owner gone: nowhere to go.
            let Some(tx) = queues.sender(*queue).cloned() else {
                self.held.pop_front();
                continue;
            };
            let permit = tx.reserve_owned().await;
            let front = self.held.pop_front();
            if let (Ok(permit), Some((_, msg))) = (permit, front) {
                permit.send(msg);
            }
            return;
        }
    }

    /// Best effort at the end of a call: whatever fits now. A message lost to a full inbox only
    /// delays the queue's clean-up to its next dispatch, which finds the call's inbox closed.
    pub(super) fn send_now(&mut self, queues: &Queues) {
        for (queue, msg) in self.held.drain(..) {
            let _ = queues.try_send(queue, msg);
        }
    }

    /// Messages held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

fn queue_id(index: usize) -> QueueId {
    QueueId(u32::try_from(index).unwrap_or(u32::MAX))
}

/// Starts the owner task of `queue` (queue `id` of its configuration, groups in stable ids);
/// returns its inbox.
fn spawn_owner(id: QueueId, queue: &Queue, agents: &Arc<AgentTable>) -> mpsc::Sender<QueueMsg> {
    let (tx, rx) = mpsc::channel(INBOX);
    let owner = Owner {
        core: QueueCore::new(id, queue),
        agents: Arc::clone(agents),
        calls: HashMap::new(),
        estimator: WaitEstimator::default(),
    };
    tokio::spawn(owner.run(rx));
    tx
}

/// One queue's owner task.
struct Owner {
    core: QueueCore,
    agents: Arc<AgentTable>,
    /// Inbox of every waiting call.
    calls: HashMap<CallKey, mpsc::UnboundedSender<Event>>,
    /// Recent answers, for expected waits; kept across reloads with the owner.
    estimator: WaitEstimator,
}

impl Owner {
    async fn run(mut self, mut inbox: mpsc::Receiver<QueueMsg>) {
        let mut wake_at: Option<Instant> = None;
        let mut out = Vec::new();
        loop {
            let msg = tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => Some(msg),
                    None => break,
                },
                () = crate::util::sleep_until(wake_at) => {
                    wake_at = None;
                    None
                }
            };
            let Some(command) = msg.map_or(Some(Command::AgentAvailable), |msg| self.command(msg))
            else {
                continue;
            };
            trace!(queue = ?self.core.id(), ?command, "queue command");
            let now = Instant::now().into_std();
            if let Some(at) = self.core.handle(command, &self.agents, now, &mut out) {
                let at = Instant::from_std(at);
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            for (call, event) in out.drain(..) {
                self.deliver(call, event);
            }
        }
        debug!(queue = ?self.core.id(), "queue owner stopped");
    }

    /// The core's command for a message (`None`: answered here, nothing to dispatch); keeps
    /// the inbox of a joining call.
    fn command(&mut self, msg: QueueMsg) -> Option<Command> {
        Some(match msg {
            QueueMsg::Join { call, inbox } => {
                self.calls.insert(call, inbox);
                Command::Join(call)
            }
            QueueMsg::Core(command) => {
                if let Command::Leave(call) = command {
                    self.calls.remove(&call);
                }
                command
            }
            QueueMsg::Reconfigure { id, queue } => {
                debug!(old = ?self.core.id(), new = ?id, queue = %queue.name, "queue reconfigured");
                self.core.reconfigure(id, &queue);
                // Dispatch at once: the new groups may have someone for the waiting calls.
                Command::AgentAvailable
            }
            QueueMsg::Where { call, reply } => {
                let now = Instant::now().into_std();
                let place = self.core.position(call).map(|p| {
                    let position = u32::try_from(p).unwrap_or(u32::MAX);
                    Place {
                        position,
                        expected_wait: self.estimator.expected_wait(position, now),
                    }
                });
                let _ = reply.send(place);
                return None;
            }
            QueueMsg::Answered { entered } => {
                self.estimator
                    .answered(entered.into_std(), Instant::now().into_std());
                return None;
            }
        })
    }

    /// Sends an event to its call task. A call that is no longer in the queue afterwards
    /// (turned away, evicted) is forgotten. An offer whose call task is gone never reached a
    /// holder: the owner that claimed its agents gives the claims back.
    fn deliver(&mut self, call: CallKey, event: Event) {
        let leaves = matches!(
            event,
            Event::EnteredQueue(Entry::Overflow) | Event::Overflowed
        );
        let sent = self
            .calls
            .get(&call)
            .is_some_and(|tx| tx.send(event.clone()).is_ok());
        if leaves || !sent {
            self.calls.remove(&call);
        }
        if !sent {
            if let Event::Offered(offer) = &event {
                for &a in &offer.agents {
                    // Attendant offers ring without a claim: only ours are given back.
                    if self.agents.state(a) == Some(AgentState::Ringing(call)) {
                        self.agents.release(a, call);
                    }
                }
            }
            self.core.leave(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::agents::AgentId;
    use crate::config::model::SipUri;
    use crate::workflow::call::Offer;
    use std::time::Duration;

    /// Loads a configuration from `body` (after a fixed `[server]`), one workflow per queue.
    fn config(body: &str, queues: &[&str]) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        let mut text = String::from(
            "[server]\nsip_listen = [\"udp:127.0.0.1:0\"]\nadvertised_host = \"127.0.0.1\"\nrtp_ports = [30000, 30999]\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://rgsd.db\"\ntrusted_peers = [\"127.0.0.0/8\"]\n",
        );
        text.push_str(body);
        for (i, q) in queues.iter().enumerate() {
            text.push_str(&format!(
                "\n[[workflow]]\nname = \"W{i}\"\nkind = \"hunt_group\"\nuri = \"sip:w{i}@127.0.0.1\"\nqueue = \"{q}\"\n"
            ));
        }
        std::fs::write(&path, text).unwrap();
        crate::config::load(
            &path,
            &crate::config::LoadOptions {
                check_environment: false,
            },
        )
        .unwrap_or_else(|d| panic!("{d:?}"))
        .config
    }

    fn group(name: &str, agent: &str) -> String {
        format!("\n[[agent_group]]\nname = \"{name}\"\nagents = [\"sip:{agent}@127.0.0.1\"]\n")
    }

    fn queue(name: &str, groups: &str) -> String {
        format!("\n[[queue]]\nname = \"{name}\"\nagent_groups = [{groups}]\n")
    }

    fn id(table: &AgentTable, agent: &str) -> AgentId {
        table.id(&SipUri(format!("sip:{agent}@127.0.0.1"))).unwrap()
    }

    fn table(config: &Config) -> Arc<AgentTable> {
        Arc::new(AgentTable::from_config(config, Instant::now().into_std()))
    }

    /// Joins `call` to `queue` through `queues`; returns its inbox after `EnteredQueue`.
    async fn join(
        queues: &Queues,
        queue: u32,
        call: u32,
    ) -> (mpsc::UnboundedReceiver<Event>, Event) {
        let (inbox, mut rx) = mpsc::unbounded_channel();
        let call = CallKey(call);
        queues
            .send(QueueId(queue), QueueMsg::Join { call, inbox })
            .await;
        let entered = next(&mut rx).await.expect("entered");
        (rx, entered)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Option<Event> {
        tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The agents of the next event, which must be an offer.
    async fn offered(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<AgentId> {
        match next(rx).await {
            Some(Event::Offered(Offer { agents, .. })) => agents,
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reload_keeps_waiting_calls_in_order_and_offers_them_the_new_groups() {
        let busy = CallKey(999);
        let old = config(
            &(group("A", "a")
                + &group("B", "b")
                + &queue("Sales", "\"A\"")
                + &queue("Old", "\"B\"")),
            &["Sales", "Old"],
        );
        let agents = table(&old);
        let table = Arc::clone(&agents);
        assert!(table.claim(id(&table, "a"), busy));
        assert!(table.claim(id(&table, "b"), busy));
        let queues = Queues::spawn(&old, &agents);
        let (mut c1, _) = join(&queues, 0, 1).await;
        let (mut c2, _) = join(&queues, 0, 2).await;
        let (mut c3, _) = join(&queues, 1, 3).await;
        assert!(next(&mut c1).await.is_none(), "nobody is free");

        // The new file: groups reordered and a new one (C, free) added to Sales, a new queue
        // before Sales (its index moves from 0 to 1), Old dropped.
        let new = config(
            &(group("B", "b")
                + &group("A", "a")
                + &group("C", "c")
                + &queue("New", "\"C\"")
                + &queue("Sales", "\"A\", \"C\"")),
            &["New", "Sales"],
        );
        agents.set_membership(&new.agent_groups);
        let table2 = Arc::clone(&agents);
        let reloaded = queues.reload(&old, &new, &agents).await;

        // The head of Sales is offered the new group's agent at once.
        assert_eq!(offered(&mut c1).await, vec![id(&table2, "c")]);
        assert!(next(&mut c2).await.is_none());
        // A call arriving after the reload (new handles, new index) queues behind the old ones.
        let (mut c4, entered) = join(&reloaded, 1, 4).await;
        assert_eq!(
            entered,
            Event::EnteredQueue(Entry::Waiting { position: 3 }),
            "one queue: the calls that waited before the reload are ahead"
        );
        // Call 1 leaves (through its old handle, by the old index); c is free again: call 2,
        // not call 4, is next.
        queues
            .send(QueueId(0), QueueMsg::Core(Command::Leave(CallKey(1))))
            .await;
        assert!(table2.release(id(&table2, "c"), CallKey(1)));
        reloaded.wake_all();
        assert_eq!(offered(&mut c2).await, vec![id(&table2, "c")]);
        assert!(next(&mut c4).await.is_none());

        // The dropped queue's owner still serves call 3, over its group mapped by name onto the
        // same id whatever its place in the file, and the new handles wake it.
        assert!(next(&mut c3).await.is_none());
        assert!(table2.release(id(&table2, "b"), busy));
        reloaded.wake_all();
        assert_eq!(offered(&mut c3).await, vec![id(&table2, "b")]);
    }

    /// Between a reload's new membership and the queue's reconfiguration, the owner picks from
    /// its own groups, not from whatever group now comes first in the file.
    #[tokio::test(start_paused = true)]
    async fn before_its_reconfiguration_a_queue_picks_from_its_groups_by_name() {
        let old = config(
            &(group("Sales", "a") + &group("Support", "b") + &queue("Q", "\"Sales\"")),
            &["Q"],
        );
        let agents = table(&old);
        let table = Arc::clone(&agents);
        let busy = CallKey(999);
        assert!(table.claim(id(&table, "a"), busy));
        let queues = Queues::spawn(&old, &agents);
        let (mut c1, _) = join(&queues, 0, 1).await;
        assert!(next(&mut c1).await.is_none(), "nobody is free");

        // The new table lists Support first (index 0, Sales's old index); no reconfiguration
        // has reached the queue yet. Agent a frees up in it.
        let new = config(
            &(group("Support", "b") + &group("Sales", "a") + &queue("Q", "\"Sales\"")),
            &["Q"],
        );
        agents.set_membership(&new.agent_groups);
        let table2 = Arc::clone(&agents);
        assert!(table2.release(id(&table2, "a"), busy));
        queues.wake_all();
        // Sales's agent, not Support's.
        assert_eq!(offered(&mut c1).await, vec![id(&table2, "a")]);
    }

    #[tokio::test(start_paused = true)]
    async fn refusal_grace_and_tried_agents_survive_a_membership_rebuild() {
        let busy = CallKey(999);
        let members = |agents: &[&str]| {
            let list: Vec<String> = agents
                .iter()
                .map(|a| format!("\"sip:{a}@127.0.0.1\""))
                .collect();
            format!(
                "\n[[agent_group]]\nname = \"G\"\nagents = [{}]\n",
                list.join(", ")
            )
        };
        let old = config(&(members(&["a", "b"]) + &queue("Q", "\"G\"")), &["Q"]);
        let agents = table(&old);
        let table = Arc::clone(&agents);
        let (a, b) = (id(&table, "a"), id(&table, "b"));
        assert!(table.claim(b, busy));
        let queues = Queues::spawn(&old, &agents);
        let (mut c1, _) = join(&queues, 0, 1).await;
        assert_eq!(offered(&mut c1).await, vec![a]);

        // The API adds x ahead of both while a is ringing; a's refusal arrives after the
        // rebuild.
        let new = config(&(members(&["x", "b", "a"]) + &queue("Q", "\"G\"")), &["Q"]);
        agents.set_membership(&new.agent_groups);
        let table2 = Arc::clone(&agents);
        assert_eq!(id(&table2, "a"), a, "ids are stable: a keeps its id");
        assert!(table2.release(id(&table2, "a"), CallKey(1)));
        let until = Instant::now().into_std() + Duration::from_secs(60);
        let refused = QueueMsg::Core(Command::Refused {
            call: CallKey(1),
            agent: a,
            until,
        });
        queues.send(QueueId(0), refused).await;
        queues
            .send(QueueId(0), QueueMsg::Core(Command::OfferEnded(CallKey(1))))
            .await;

        // Serial: a was tried and is in grace, b is busy; x (new) is next.
        assert_eq!(offered(&mut c1).await, vec![id(&table2, "x")]);
        // x takes another call: a is kept away until its grace period ends, then offered.
        let x = id(&table2, "x");
        assert!(table2.release(x, CallKey(1)));
        assert!(table2.claim(x, busy));
        queues
            .send(QueueId(0), QueueMsg::Core(Command::OfferEnded(CallKey(1))))
            .await;
        assert!(
            next(&mut c1).await.is_none(),
            "a waits out its grace period"
        );
        let late = tokio::time::timeout(Duration::from_secs(70), c1.recv())
            .await
            .expect("offered once the grace period ends")
            .expect("inbox open");
        assert!(
            Instant::now().into_std() >= until,
            "not before the grace period ends"
        );
        match late {
            Event::Offered(Offer { agents, .. }) => assert_eq!(agents, vec![id(&table2, "a")]),
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    /// A freed agent wakes the queues over its groups and no other: here queue Q2 (over B)
    /// is not dispatched when only A's queue is woken, so B's agent, freed silently, waits.
    #[tokio::test(start_paused = true)]
    async fn wake_groups_wakes_only_the_queues_over_those_groups() {
        let c = config(
            &(group("A", "a") + &group("B", "b") + &queue("Q1", "\"A\"") + &queue("Q2", "\"B\"")),
            &["Q1", "Q2"],
        );
        let agents = table(&c);
        let (a, b) = (id(&agents, "a"), id(&agents, "b"));
        let busy = CallKey(999);
        assert!(agents.claim(a, busy));
        assert!(agents.claim(b, busy));
        let queues = Queues::spawn(&c, &agents);
        let (mut c1, _) = join(&queues, 0, 1).await;
        let (mut c2, _) = join(&queues, 1, 2).await;
        assert!(agents.release(a, busy));
        assert!(agents.release(b, busy));
        let groups = agents.membership().groups_of(a).to_vec();
        queues.wake_groups(&groups);
        assert_eq!(offered(&mut c1).await, vec![a]);
        assert!(next(&mut c2).await.is_none(), "Q2 was not woken");
        queues.wake_groups(agents.membership().groups_of(b));
        assert_eq!(offered(&mut c2).await, vec![b]);
    }

    /// A full inbox never makes the sender wait: the messages that do not fit are held and
    /// handed over in order as the owner makes room.
    #[tokio::test(start_paused = true)]
    async fn the_outbox_never_waits_and_keeps_the_order() {
        let c = config(&(group("A", "a") + &queue("Q", "\"A\"")), &["Q"]);
        let agents = table(&c);
        assert!(agents.claim(id(&agents, "a"), CallKey(u32::MAX)));
        let queues = Queues::spawn(&c, &agents);
        let mut outbox = Outbox::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The owner has not run yet: its inbox takes INBOX messages, the rest are held.
        let calls = u32::try_from(INBOX).unwrap() + 100;
        for call in 0..calls {
            let join = QueueMsg::Join {
                call: CallKey(call),
                inbox: tx.clone(),
            };
            outbox.send(&queues, QueueId(0), join);
        }
        assert_eq!(outbox.len(), 100);
        while !outbox.is_empty() {
            outbox.flush_one(&queues).await;
        }
        for position in 1..=calls {
            assert_eq!(
                next(&mut rx).await,
                Some(Event::EnteredQueue(Entry::Waiting { position })),
                "joins arrive in the order sent"
            );
        }
    }
}
