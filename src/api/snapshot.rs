//! The live state as the API shows it: plain data, serialised for the REST and SSE routes and
//! read by the `/metrics` renderer. [`super::live::Live`] builds these snapshots; keeping the
//! types here lets `metrics` read them without importing `live` (which holds the counters).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::acd::observe::{CallSnapshot, CallStage};

/// What a call in progress is doing, as the wallboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// Welcome message, holiday or out-of-hours message playing.
    Greeting,
    /// Answering an IVR question.
    Ivr,
    /// Waiting in a queue (music on hold), no agent ringing.
    Waiting,
    /// Waiting in a queue with at least one agent ringing.
    Ringing,
    /// Being forwarded to a SIP address (the forward leg is ringing).
    Forwarding,
    /// Talking to an agent (or to a forward target; then `agent` is empty).
    Talking,
}

impl From<CallStage> for CallPhase {
    fn from(stage: CallStage) -> Self {
        match stage {
            CallStage::Greeting => Self::Greeting,
            CallStage::Ivr => Self::Ivr,
            CallStage::Waiting => Self::Waiting,
            CallStage::Ringing => Self::Ringing,
            CallStage::Forwarding => Self::Forwarding,
            CallStage::Talking => Self::Talking,
        }
    }
}

impl From<&CallSnapshot> for LiveCall {
    fn from(c: &CallSnapshot) -> Self {
        Self {
            call_id: c.call_id.clone(),
            workflow: c.workflow.clone(),
            caller: c.caller.clone(),
            phase: c.stage.into(),
            arrived_at: c.arrived_at,
            queue: c.queue.clone(),
            queued_at: c.queued_at,
            agent: c.agent.clone(),
        }
    }
}

/// One call in progress, as reported by the call driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveCall {
    /// SIP Call-ID of the caller's leg: the key of the registry.
    pub call_id: String,
    pub workflow: String,
    pub caller: String,
    pub phase: CallPhase,
    pub arrived_at: DateTime<Utc>,
    /// The queue the call is (or was last) in.
    pub queue: Option<String>,
    /// When it entered that queue (the wait clock).
    pub queued_at: Option<DateTime<Utc>>,
    /// The agent ringing (first of them) or talking.
    pub agent: Option<String>,
}

/// One queue, now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueSnapshot {
    pub name: String,
    /// Calls waiting (ringing included).
    pub waiting: usize,
    /// Seconds the oldest waiting call has waited; 0 when none waits.
    pub longest_wait_seconds: u64,
    /// Distinct agents of the queue's groups who are in the group for routing (informal
    /// members always; formal ones when signed in).
    pub agents_signed_in: usize,
    /// Of those, free to be offered a call now.
    pub agents_eligible: usize,
    /// Of those, ringing or on a call.
    pub agents_busy: usize,
    /// Of those, in wrap-up after a call (offered nothing until it ends).
    pub agents_wrap_up: usize,
    /// Announcements (position, expected wait, periodic prompt) played to this queue's waiting
    /// callers since rgsd started.
    pub announcements: u64,
}

/// One agent, now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AgentSnapshot {
    pub sip_uri: String,
    /// `idle`, `ringing`, `busy` or `wrap_up`.
    pub state: &'static str,
    /// In wrap-up: when it ends (the agent may end it earlier).
    pub wrap_up_until: Option<DateTime<Utc>>,
    /// The Call-ID of the call the agent is ringing for or talking on, when the driver reported it.
    pub current_call: Option<String>,
    /// When the agent's idle clock started (last call ended, sign-in or start-up).
    pub idle_since: DateTime<Utc>,
    /// Formal groups the agent is signed in to, by name.
    pub signed_in: Vec<String>,
}

/// Everything live, in one document (the SSE payload).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiveSnapshot {
    pub at: DateTime<Utc>,
    pub queues: Vec<QueueSnapshot>,
    pub agents: Vec<AgentSnapshot>,
    pub calls: Vec<LiveCall>,
}
