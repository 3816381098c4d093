//! [`CallObserver`]: how the call driver reports calls in progress and ended calls to whoever
//! watches (the API's live registry and metrics), without `acd` knowing the API.
//!
//! The call task calls the observer at arrival, at each change of what the call is doing that
//! a wallboard shows ([`CallStage`], queue, agent) and at the end. Calls are synchronous and
//! must be cheap: an implementation takes a short lock or bumps atomics, never awaits, never
//! touches the database.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::CallOutcome;

/// What a call in progress is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStage {
    /// Answered, welcome or an action's announcement playing.
    Greeting,
    /// Answering an IVR question.
    Ivr,
    /// In a queue, no agent ringing.
    Waiting,
    /// In a queue with at least one agent ringing.
    Ringing,
    /// An outbound forward leg is being placed.
    Forwarding,
    /// Bridged to an agent or a forward target.
    Talking,
}

/// One call in progress, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSnapshot {
    /// SIP Call-ID of the caller's leg.
    pub call_id: String,
    /// Workflow name.
    pub workflow: String,
    /// The caller's From, as received.
    pub caller: String,
    pub stage: CallStage,
    pub arrived_at: DateTime<Utc>,
    /// The queue the call is (or was last) in, by name.
    pub queue: Option<String>,
    /// When it last entered that queue.
    pub queued_at: Option<DateTime<Utc>>,
    /// The agent ringing (first of them) or talking, by URI.
    pub agent: Option<String>,
}

/// Receives the driver's reports. Implementations must not block.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// A call arrived or changed what it is doing (same `call_id` replaces the last report).
    fn call_updated(&self, call: &CallSnapshot);
    /// A call ended with `outcome` after waiting `wait` in queues (`None`: never queued).
    /// Also reported for calls refused before a task ran (`Rejected`), which never had an
    /// update.
    fn call_ended(&self, call_id: &str, outcome: CallOutcome, wait: Option<Duration>);
    /// An agent's state changed without a call report saying so (its wrap-up ended).
    fn agent_changed(&self) {}
    /// A waiting caller was told their place (`position` and `expected_wait`, each `None` when
    /// not said) or, with both `None`, the queue's periodic prompt.
    fn announced(&self, _call_id: &str, _position: Option<u32>, _expected_wait: Option<Duration>) {}
}

/// An observer that ignores everything (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoObserver;

impl CallObserver for NoObserver {
    fn call_updated(&self, _call: &CallSnapshot) {}
    fn call_ended(&self, _call_id: &str, _outcome: CallOutcome, _wait: Option<Duration>) {}
}
