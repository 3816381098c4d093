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
//! wait on the owner's bounded inbox only for messages that must not be lost (join, leave,
//! refusal, offer ended); [`Queues::wake_all`] uses `try_send`, because a full inbox already
//! holds messages that will each dispatch again.
//!
//! The agent table is read through an `ArcSwap`: the API (membership changes) and reload
//! replace it, and each command dispatches on the table in force. Offers carry the table their
//! agent ids belong to ([`QueueEvent`]).
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
//! it, *retired*: it is held weakly (it ends with its last call), its groups are mapped by name
//! onto each later configuration (a group that is gone is left out) and it is woken with the
//! others. The call tasks keep their own configuration: time-outs still run from queue entry,
//! with the duration and actions the call started with.
//!
//! Agent and group ids are indexes into one table, so the owner keeps the table its ids are
//! in, and when another is in force moves them over: its calls' grace periods and tried agents
//! by URI ([`QueueCore::remap_agents`]), its group list by group name
//! ([`QueueCore::remap_groups`]), so that between the new agent table being stored and the
//! owner's reconfiguration it still picks from its own groups (one the new table lacks is left
//! out until then). A refusal names the table its agent id is from. One pointer comparison per
//! command; nothing is added to the routing decision. Two reloads in quick succession can still
//! let an owner apply the first reconfiguration's group ids to the second's table until the
//! second reconfiguration arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::acd::agents::{AgentId, AgentTable, CallKey};
use crate::acd::queue::{Command, QueueCore};
use crate::config::model::{AgentGroupId, Config, Queue, QueueId};
use crate::workflow::call::{Entry, Event};

/// Capacity of each queue owner's inbox.
const INBOX: usize = 1024;

/// What a queue owner sends a call task: the event, and the agent table its agent ids (in
/// `Event::Offered`) belong to.
#[derive(Debug)]
pub struct QueueEvent {
    pub event: Event,
    pub table: Arc<AgentTable>,
}

/// What a call task (or whoever frees an agent) tells a queue owner.
#[derive(Debug)]
pub enum QueueMsg {
    /// Add the call; answer with `Event::EnteredQueue` on `inbox`, later `Event::Offered`.
    Join {
        call: CallKey,
        inbox: mpsc::UnboundedSender<QueueEvent>,
    },
    /// The call left (answered, hung up, timed out).
    Leave(CallKey),
    /// Do not offer `call` to `agent` before `until` (ringback grace).
    Refused {
        call: CallKey,
        /// An id in `table`: the table the agent was offered from.
        agent: AgentId,
        until: StdInstant,
        table: Arc<AgentTable>,
    },
    /// The call's offer ended unanswered: offer the next agent or group.
    OfferEnded(CallKey),
    /// An agent may have become free: dispatch again.
    AgentAvailable,
    /// A reload: this queue is now queue `id` with these settings (group ids of the new
    /// configuration). Waiting calls keep their place and are dispatched again.
    Reconfigure { id: QueueId, queue: Box<Queue> },
}

/// Handles to every queue owner of one configuration.
#[derive(Debug, Clone)]
pub struct Queues {
    /// By [`QueueId`] of that configuration.
    senders: Arc<[mpsc::Sender<QueueMsg>]>,
    /// Owners of queues a reload dropped, still serving the calls that wait in them.
    retired: Arc<[Retired]>,
}

/// The owner of a queue no longer in the configuration (see the module docs).
#[derive(Debug)]
struct Retired {
    /// Weak: the owner ends when the last call holding the old configuration does.
    tx: mpsc::WeakSender<QueueMsg>,
    /// Its id in the last configuration that had it (for logs).
    id: QueueId,
    /// Its settings, with the group ids of the configuration it was last given.
    queue: Queue,
    /// Its groups by name, to map them onto the next configuration.
    group_names: Vec<String>,
}

/// An owner task found alive at a reload, with what its queue was.
struct Alive {
    tx: mpsc::Sender<QueueMsg>,
    id: QueueId,
    group_names: Vec<String>,
    queue: Queue,
}

/// The names of `queue`'s groups in `config`.
fn group_names(config: &Config, queue: &Queue) -> Vec<String> {
    queue
        .agent_groups
        .iter()
        .filter_map(|g| config.agent_groups.get(g.0 as usize))
        .map(|g| g.name.clone())
        .collect()
}

/// The ids in `config` of the groups named `names` (the ones it still has), in order.
fn group_ids(config: &Config, names: &[String]) -> Vec<AgentGroupId> {
    names
        .iter()
        .filter_map(|n| config.agent_groups.iter().position(|g| &g.name == n))
        .filter_map(|i| u32::try_from(i).ok())
        .map(AgentGroupId)
        .collect()
}

impl Queues {
    /// Starts one owner task per queue of `config`, routing over the agent table in force
    /// (`agents` is swapped when the API or a reload rebuilds it). The tasks end when every
    /// [`Queues`] clone is dropped.
    pub fn spawn(config: &Config, agents: &Arc<ArcSwap<AgentTable>>) -> Self {
        let senders: Vec<_> = config
            .queues
            .iter()
            .enumerate()
            .map(|(i, queue)| spawn_owner(queue_id(i), queue, agents))
            .collect();
        Self {
            senders: senders.into(),
            retired: Arc::new([]),
        }
    }

    /// The handles for `config`, reloaded over `self` (the handles of `old`): a queue of the
    /// same name keeps its owner, reconfigured, with the calls waiting in it; a new queue gets a
    /// new owner; a dropped queue's owner is retired. See the module docs.
    pub async fn reload(
        &self,
        old: &Config,
        config: &Config,
        agents: &Arc<ArcSwap<AgentTable>>,
    ) -> Self {
        // Every owner alive, by queue name: the old configuration's, then retired ones.
        let mut owners: HashMap<String, Alive> = HashMap::new();
        for r in self.retired.iter() {
            if let Some(tx) = r.tx.upgrade() {
                owners.insert(
                    r.queue.name.clone(),
                    Alive {
                        tx,
                        id: r.id,
                        group_names: r.group_names.clone(),
                        queue: r.queue.clone(),
                    },
                );
            }
        }
        for (i, (tx, queue)) in self.senders.iter().zip(&old.queues).enumerate() {
            owners.insert(
                queue.name.clone(),
                Alive {
                    tx: tx.clone(),
                    id: queue_id(i),
                    group_names: group_names(old, queue),
                    queue: queue.clone(),
                },
            );
        }
        let mut senders = Vec::with_capacity(config.queues.len());
        for (i, queue) in config.queues.iter().enumerate() {
            let id = queue_id(i);
            let tx = match owners.remove(&queue.name) {
                Some(Alive { tx, .. }) => {
                    let msg = QueueMsg::Reconfigure {
                        id,
                        queue: Box::new(queue.clone()),
                    };
                    // An owner that is gone has no calls to keep: start one.
                    match tx.send(msg).await {
                        Ok(()) => tx,
                        Err(_) => spawn_owner(id, queue, agents),
                    }
                }
                None => spawn_owner(id, queue, agents),
            };
            senders.push(tx);
        }
        let mut retired = Vec::with_capacity(owners.len());
        for (_, alive) in owners {
            let Alive {
                tx,
                id,
                group_names,
                mut queue,
            } = alive;
            queue.agent_groups = group_ids(config, &group_names);
            let msg = QueueMsg::Reconfigure {
                id,
                queue: Box::new(queue.clone()),
            };
            if tx.send(msg).await.is_ok() {
                retired.push(Retired {
                    tx: tx.downgrade(),
                    id,
                    queue,
                    group_names,
                });
            }
        }
        Self {
            senders: senders.into(),
            retired: retired.into(),
        }
    }

    /// Sends a message that must arrive (waits while the owner's inbox is full). A queue whose
    /// owner is gone (shutdown) drops it.
    pub async fn send(&self, queue: QueueId, msg: QueueMsg) {
        if let Some(tx) = self.senders.get(queue.0 as usize) {
            let _ = tx.send(msg).await;
        }
    }

    /// Sends a message without waiting (from a drop or clean-up path); lost when the inbox is
    /// full, which only delays the queue's clean-up to its next dispatch.
    pub fn try_send(&self, queue: QueueId, msg: QueueMsg) {
        if let Some(tx) = self.senders.get(queue.0 as usize) {
            let _ = tx.try_send(msg);
        }
    }

    /// Tells every queue to dispatch: an agent was freed, signed in, or came online. Every
    /// queue rather than the agent's own: membership can change at run time (API), and a
    /// dispatch with nothing to offer is cheap. Never waits: a full inbox already holds
    /// messages that will each dispatch.
    pub fn wake_all(&self) {
        for tx in self.senders.iter() {
            let _ = tx.try_send(QueueMsg::AgentAvailable);
        }
        for r in self.retired.iter() {
            if let Some(tx) = r.tx.upgrade() {
                let _ = tx.try_send(QueueMsg::AgentAvailable);
            }
        }
    }
}

fn queue_id(index: usize) -> QueueId {
    QueueId(u32::try_from(index).unwrap_or(u32::MAX))
}

/// Starts the owner task of `queue` (queue `id` of its configuration); returns its inbox.
fn spawn_owner(
    id: QueueId,
    queue: &Queue,
    agents: &Arc<ArcSwap<AgentTable>>,
) -> mpsc::Sender<QueueMsg> {
    let (tx, rx) = mpsc::channel(INBOX);
    let owner = Owner {
        core: QueueCore::new(id, queue),
        table: agents.load_full(),
        agents: Arc::clone(agents),
        calls: HashMap::new(),
    };
    tokio::spawn(owner.run(rx));
    tx
}

/// One queue's owner task.
struct Owner {
    core: QueueCore,
    /// The agent table in force, loaded for each command.
    agents: Arc<ArcSwap<AgentTable>>,
    /// The table the core's agent ids (grace periods, agents tried) belong to.
    table: Arc<AgentTable>,
    /// Inbox of every waiting call.
    calls: HashMap<CallKey, mpsc::UnboundedSender<QueueEvent>>,
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
            let table = self.agents.load_full();
            if !Arc::ptr_eq(&table, &self.table) {
                let old = std::mem::replace(&mut self.table, Arc::clone(&table));
                self.core.remap_agents(|a| id_in(&table, &old, a));
                self.core.remap_groups(|g| {
                    old.get_group(g)
                        .and_then(|members| table.group_id(&members.name))
                });
            }
            let command = msg.map_or(Command::AgentAvailable, |msg| self.command(msg, &table));
            trace!(queue = ?self.core.id(), ?command, "queue command");
            let now = Instant::now().into_std();
            if let Some(at) = self.core.handle(command, &table, now, &mut out) {
                let at = Instant::from_std(at);
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            for (call, event) in out.drain(..) {
                self.deliver(call, event, &table);
            }
        }
        debug!(queue = ?self.core.id(), "queue owner stopped");
    }

    /// The core's command for a message (agent ids in `table`, the table in force); keeps the
    /// inbox of a joining call.
    fn command(&mut self, msg: QueueMsg, table: &AgentTable) -> Command {
        match msg {
            QueueMsg::Join { call, inbox } => {
                self.calls.insert(call, inbox);
                Command::Join(call)
            }
            QueueMsg::Leave(call) => {
                self.calls.remove(&call);
                Command::Leave(call)
            }
            QueueMsg::Refused {
                call,
                agent,
                until,
                table: from,
            } => match id_in(table, &from, agent) {
                Some(agent) => Command::Refused { call, agent, until },
                // The agent is gone: nobody to keep away from the call.
                None => Command::AgentAvailable,
            },
            QueueMsg::OfferEnded(call) => Command::OfferEnded(call),
            QueueMsg::AgentAvailable => Command::AgentAvailable,
            QueueMsg::Reconfigure { id, queue } => {
                debug!(old = ?self.core.id(), new = ?id, queue = %queue.name, "queue reconfigured");
                self.core.reconfigure(id, &queue);
                // Dispatch at once: the new groups may have someone for the waiting calls.
                Command::AgentAvailable
            }
        }
    }

    /// Sends an event to its call task. A call that is no longer in the queue afterwards
    /// (turned away, evicted) is forgotten; agents offered to a call task that is gone are
    /// released.
    fn deliver(&mut self, call: CallKey, event: Event, table: &Arc<AgentTable>) {
        let leaves = matches!(
            event,
            Event::EnteredQueue(Entry::Overflow) | Event::Overflowed
        );
        let sent = self.calls.get(&call).is_some_and(|tx| {
            tx.send(QueueEvent {
                event: event.clone(),
                table: Arc::clone(table),
            })
            .is_ok()
        });
        if leaves || !sent {
            self.calls.remove(&call);
        }
        if !sent {
            if let Event::Offered(offer) = &event {
                for a in &offer.agents {
                    table.release(*a, call);
                }
            }
            self.core.leave(call);
        }
    }
}

/// The id in `table` of agent `agent` of table `from` (the same agent, by URI).
fn id_in(table: &AgentTable, from: &AgentTable, agent: AgentId) -> Option<AgentId> {
    if std::ptr::eq(table, from) {
        return Some(agent);
    }
    if agent.0 as usize >= from.len() {
        return None;
    }
    table.id(from.uri(agent))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// Joins `call` to `queue` through `queues`; returns its inbox after `EnteredQueue`.
    async fn join(
        queues: &Queues,
        queue: u32,
        call: u32,
    ) -> (mpsc::UnboundedReceiver<QueueEvent>, Event) {
        let (inbox, mut rx) = mpsc::unbounded_channel();
        let call = CallKey(call);
        queues
            .send(QueueId(queue), QueueMsg::Join { call, inbox })
            .await;
        let entered = next(&mut rx).await.expect("entered");
        (rx, entered.event)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<QueueEvent>) -> Option<QueueEvent> {
        tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The agents of the next event, which must be an offer.
    async fn offered(rx: &mut mpsc::UnboundedReceiver<QueueEvent>) -> Vec<AgentId> {
        match next(rx).await.map(|e| e.event) {
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
        let agents = Arc::new(ArcSwap::from_pointee(AgentTable::from_config(
            &old,
            Instant::now().into_std(),
        )));
        let table = agents.load_full();
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
        let table2 = AgentTable::from_config(&new, Instant::now().into_std());
        table2.carry_over(&table);
        agents.store(Arc::new(table2));
        let table2 = agents.load_full();
        let reloaded = queues.reload(&old, &new, &agents).await;

        // The head of Sales is offered the new group's agent at once, in the new table's ids.
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
        queues.send(QueueId(0), QueueMsg::Leave(CallKey(1))).await;
        assert!(table2.release(id(&table2, "c"), CallKey(1)));
        reloaded.wake_all();
        assert_eq!(offered(&mut c2).await, vec![id(&table2, "c")]);
        assert!(next(&mut c4).await.is_none());

        // The dropped queue's owner still serves call 3, over its group mapped by name onto the
        // new table (B moved from index 1 to 0), and the new handles wake it.
        assert!(next(&mut c3).await.is_none());
        assert!(table2.release(id(&table2, "b"), busy));
        reloaded.wake_all();
        assert_eq!(offered(&mut c3).await, vec![id(&table2, "b")]);
    }

    /// Between a reload's new agent table and the queue's reconfiguration, the owner picks
    /// from its groups by name, not from whatever group took their old index.
    #[tokio::test(start_paused = true)]
    async fn before_its_reconfiguration_a_queue_picks_from_its_groups_by_name() {
        let old = config(
            &(group("Sales", "a") + &group("Support", "b") + &queue("Q", "\"Sales\"")),
            &["Q"],
        );
        let agents = Arc::new(ArcSwap::from_pointee(AgentTable::from_config(
            &old,
            Instant::now().into_std(),
        )));
        let table = agents.load_full();
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
        let table2 = AgentTable::from_config(&new, Instant::now().into_std());
        table2.carry_over(&table);
        agents.store(Arc::new(table2));
        let table2 = agents.load_full();
        assert!(table2.release(id(&table2, "a"), busy));
        queues.wake_all();
        // Sales's agent, not Support's.
        assert_eq!(offered(&mut c1).await, vec![id(&table2, "a")]);
    }

    #[tokio::test(start_paused = true)]
    async fn refusal_grace_and_tried_agents_follow_their_agent_across_a_table_rebuild() {
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
        let agents = Arc::new(ArcSwap::from_pointee(AgentTable::from_config(
            &old,
            Instant::now().into_std(),
        )));
        let table = agents.load_full();
        let (a, b) = (id(&table, "a"), id(&table, "b"));
        assert!(table.claim(b, busy));
        let queues = Queues::spawn(&old, &agents);
        let (mut c1, _) = join(&queues, 0, 1).await;
        assert_eq!(offered(&mut c1).await, vec![a]);

        // The API adds x ahead of both: every agent id moves. It happens while a is ringing, so
        // a's refusal arrives in the old table's ids.
        let new = config(&(members(&["x", "b", "a"]) + &queue("Q", "\"G\"")), &["Q"]);
        let table2 = AgentTable::from_config(&new, Instant::now().into_std());
        table2.carry_over(&table);
        agents.store(Arc::new(table2));
        let table2 = agents.load_full();
        assert_ne!(id(&table2, "a"), a, "the test needs a to change id");
        assert!(table2.release(id(&table2, "a"), CallKey(1)));
        let until = Instant::now().into_std() + Duration::from_secs(60);
        let refused = QueueMsg::Refused {
            call: CallKey(1),
            agent: a,
            until,
            table: Arc::clone(&table),
        };
        queues.send(QueueId(0), refused).await;
        queues
            .send(QueueId(0), QueueMsg::OfferEnded(CallKey(1)))
            .await;

        // Serial: a was tried and is in grace, b is busy; x (new, with a's old id) is next.
        assert_eq!(offered(&mut c1).await, vec![id(&table2, "x")]);
        // x takes another call: a is kept away until its grace period ends, then offered.
        let x = id(&table2, "x");
        assert!(table2.release(x, CallKey(1)));
        assert!(table2.claim(x, busy));
        queues
            .send(QueueId(0), QueueMsg::OfferEnded(CallKey(1)))
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
        match late.event {
            Event::Offered(Offer { agents, .. }) => assert_eq!(agents, vec![id(&table2, "a")]),
            other => panic!("expected an offer, got {other:?}"),
        }
    }
}
