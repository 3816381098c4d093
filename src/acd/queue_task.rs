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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::acd::agents::{AgentId, AgentTable, CallKey};
use crate::acd::queue::{Command, QueueCore};
use crate::config::model::{Config, QueueId};
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
        agent: AgentId,
        until: StdInstant,
    },
    /// The call's offer ended unanswered: offer the next agent or group.
    OfferEnded(CallKey),
    /// An agent may have become free: dispatch again.
    AgentAvailable,
}

/// Handles to every queue owner of one configuration.
#[derive(Debug, Clone)]
pub struct Queues {
    senders: Arc<[mpsc::Sender<QueueMsg>]>,
}

impl Queues {
    /// Starts one owner task per queue of `config`, routing over the agent table in force
    /// (`agents` is swapped when the API or a reload rebuilds it). The tasks end when every
    /// [`Queues`] clone is dropped.
    pub fn spawn(config: &Config, agents: &Arc<ArcSwap<AgentTable>>) -> Self {
        let mut senders = Vec::with_capacity(config.queues.len());
        for (i, queue) in config.queues.iter().enumerate() {
            let id = QueueId(u32::try_from(i).unwrap_or(u32::MAX));
            let (tx, rx) = mpsc::channel(INBOX);
            senders.push(tx);
            let owner = Owner {
                core: QueueCore::new(id, queue),
                agents: Arc::clone(agents),
                calls: HashMap::new(),
            };
            tokio::spawn(owner.run(rx));
        }
        Self {
            senders: senders.into(),
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
    }
}

/// One queue's owner task.
struct Owner {
    core: QueueCore,
    /// The agent table in force, loaded for each command.
    agents: Arc<ArcSwap<AgentTable>>,
    /// Inbox of every waiting call.
    calls: HashMap<CallKey, mpsc::UnboundedSender<QueueEvent>>,
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
            let table = self.agents.load_full();
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
