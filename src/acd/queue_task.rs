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
//! refusal, offer ended); [`Queues::agent_available`] uses `try_send`, because a full inbox
//! already holds messages that will each dispatch again.
//!
//! Time is `tokio::time::Instant` (converted to `std` for the pure core), so a test with
//! `tokio::time::pause()` moves grace periods too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::acd::agents::{AgentId, AgentTable, CallKey};
use crate::acd::queue::{Command, QueueCore};
use crate::config::model::{AgentGroupId, Config, QueueId};
use crate::workflow::call::{Entry, Event};

/// Capacity of each queue owner's inbox.
const INBOX: usize = 1024;

/// What a call task (or whoever frees an agent) tells a queue owner.
#[derive(Debug)]
pub enum QueueMsg {
    /// Add the call; answer with `Event::EnteredQueue` on `inbox`, later `Event::Offered`.
    Join {
        call: CallKey,
        inbox: mpsc::UnboundedSender<Event>,
    },
    /// The call left (answered, hung up, timed out).
    Leave(CallKey),
    /// Do not offer `call` to `agent` before `until` (ringback grace).
    Refused {
        call: CallKey,
        agent: AgentId,
        until: StdInstant,
    },
    /// The call's offer ended unanswered: offer the next agent or group.
    OfferEnded(CallKey),
    /// An agent may have become free: dispatch again.
    AgentAvailable,
}

/// Handles to every queue owner of one configuration, and which queues each agent can serve.
#[derive(Debug, Clone)]
pub struct Queues {
    senders: Arc<[mpsc::Sender<QueueMsg>]>,
    /// For each agent (by index), the queues any of its groups serve.
    by_agent: Arc<[Vec<QueueId>]>,
}

impl Queues {
    /// Starts one owner task per queue of `config`. The tasks end when every [`Queues`] clone
    /// is dropped.
    pub fn spawn(config: &Config, agents: &Arc<AgentTable>) -> Self {
        let mut senders = Vec::with_capacity(config.queues.len());
        let mut by_group: HashMap<AgentGroupId, Vec<QueueId>> = HashMap::new();
        for (i, queue) in config.queues.iter().enumerate() {
            let id = QueueId(u32::try_from(i).unwrap_or(u32::MAX));
            for g in &queue.agent_groups {
                by_group.entry(*g).or_default().push(id);
            }
            let (tx, rx) = mpsc::channel(INBOX);
            senders.push(tx);
            let owner = Owner {
                core: QueueCore::new(id, queue),
                agents: Arc::clone(agents),
                calls: HashMap::new(),
            };
            tokio::spawn(owner.run(rx));
        }
        let mut by_agent = vec![Vec::new(); agents.len()];
        for (g, group) in config.agent_groups.iter().enumerate() {
            let gid = AgentGroupId(u32::try_from(g).unwrap_or(u32::MAX));
            let queues = by_group.get(&gid).cloned().unwrap_or_default();
            for uri in &group.agents {
                if let Some(a) = agents.id(uri) {
                    let list: &mut Vec<QueueId> = &mut by_agent[a.0 as usize];
                    for q in &queues {
                        if !list.contains(q) {
                            list.push(*q);
                        }
                    }
                }
            }
        }
        Self {
            senders: senders.into(),
            by_agent: by_agent.into(),
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

    /// Tells every queue that `agent` can serve that it may be free now.
    pub fn agent_available(&self, agent: AgentId) {
        let Some(queues) = self.by_agent.get(agent.0 as usize) else {
            return;
        };
        for q in queues {
            if let Some(tx) = self.senders.get(q.0 as usize) {
                // Full: the pending messages dispatch anyway. Closed: shutting down.
                let _ = tx.try_send(QueueMsg::AgentAvailable);
            }
        }
    }

    /// Tells every queue to dispatch (an agent signed in or came online).
    pub fn wake_all(&self) {
        for tx in self.senders.iter() {
            let _ = tx.try_send(QueueMsg::AgentAvailable);
        }
    }
}

/// One queue's owner task.
struct Owner {
    core: QueueCore,
    agents: Arc<AgentTable>,
    /// Inbox of every waiting call.
    calls: HashMap<CallKey, mpsc::UnboundedSender<Event>>,
}

impl Owner {
    async fn run(mut self, mut inbox: mpsc::Receiver<QueueMsg>) {
        let mut wake_at: Option<Instant> = None;
        let mut out = Vec::new();
        loop {
            let command = tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => self.command(msg),
                    None => break,
                },
                () = sleep_until_opt(wake_at) => {
                    wake_at = None;
                    Command::AgentAvailable
                }
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

    /// The core's command for a message; keeps the inbox of a joining call.
    fn command(&mut self, msg: QueueMsg) -> Command {
        match msg {
            QueueMsg::Join { call, inbox } => {
                self.calls.insert(call, inbox);
                Command::Join(call)
            }
            QueueMsg::Leave(call) => {
                self.calls.remove(&call);
                Command::Leave(call)
            }
            QueueMsg::Refused { call, agent, until } => Command::Refused { call, agent, until },
            QueueMsg::OfferEnded(call) => Command::OfferEnded(call),
            QueueMsg::AgentAvailable => Command::AgentAvailable,
        }
    }

    /// Sends an event to its call task. A call that is no longer in the queue afterwards
    /// (turned away, evicted) is forgotten; agents offered to a call task that is gone are
    /// released.
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
                for a in &offer.agents {
                    self.agents.release(*a, call);
                }
            }
            self.core.leave(call);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
