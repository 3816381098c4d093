//! Automatic call distribution: drives calls, owns queues and the agent table.
//!
//! - [`agents`]: [`agents::AgentTable`], one for the server: lock-free agent states, claims,
//!   idle clocks, formal sign-in, round-robin positions.
//! - [`routing`]: [`routing::pick`], the pure choice of agents in one group by routing method.
//! - [`queue`]: [`queue::QueueCore`], the pure core of one queue (FIFO, overflow, group
//!   cycling, grace periods), owned by one task.
//! - [`queue_task`]: the queue owner tasks and [`queue_task::Queues`], their handle.
//! - [`call_task`]: [`call_task::Controller`], one task per call driving
//!   `workflow::call::Call` over SIP and media legs.
//! - [`observe`]: [`observe::CallObserver`], how the driver reports calls to watchers (the API).
//! - [`record`]: a finished call's timeline as a `store::CallRecord`.
//! - [`router`]: Request-URI → workflow.
//!
//! See the module docs of [`queue`] for how the pieces fit together.

pub mod agents;
pub mod call_task;
pub mod observe;
pub mod queue;
pub mod queue_task;
pub mod record;
pub mod router;
pub mod routing;
