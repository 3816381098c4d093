//! Automatic call distribution: drives calls, owns queues and the agent table.
//!
//! - [`agents`]: [`agents::AgentTable`], one for the server: lock-free agent states, claims,
//!   idle clocks, formal sign-in, round-robin positions.
//! - [`routing`]: [`routing::pick`], the pure choice of agents in one group by routing method.
//! - [`queue`]: [`queue::QueueCore`], the pure core of one queue (FIFO, overflow, group
//!   cycling, grace periods), owned by one task.
//!
//! The call task (`call_task`, to come) drives `workflow::call::Call`; see the module docs of
//! [`queue`] for how the three fit together.

pub mod agents;
pub mod queue;
pub mod router;
pub mod routing;
