//! Automatic call distribution: drives calls, owns queues, the agent table and the runtime.
//!
//! - [`runtime`]: [`runtime::Runtime`], one configuration in force (configuration, queue
//!   owners, prompts, agent table) behind one `ArcSwap`, and [`runtime::Acd`], which owns it and
//!   its only way to change: [`runtime::Acd::reload`] (SIGHUP, the API's accepted changes to
//!   configuration objects and to group membership, tests).
//! - [`agents`]: [`agents::AgentTable`], one for the process and never replaced: stable agent
//!   and group ids interned by URI and name, lock-free agent states, claims, idle clocks,
//!   formal sign-in, round-robin positions, and the membership snapshot routing reads.
//! - [`routing`]: [`routing::pick`], the pure choice of agents in one group by routing method.
//! - [`queue`]: [`queue::QueueCore`], the pure core of one queue (FIFO, overflow, group
//!   cycling, grace periods), owned by one task.
//! - [`queue_task`]: the queue owner tasks and [`queue_task::Queues`], their handle.
//! - [`call_task`]: [`call_task::Controller`], one task per call driving
//!   `workflow::call::Call` over SIP and media legs.
//! - [`observe`]: [`observe::CallObserver`], how the driver reports calls to watchers (the API).
//! - [`record`]: a finished call's timeline as a `store::CallRecord`.
//! - [`router`]: Request-URI → workflow, answered once by the SIP endpoint; the call task gets
//!   the workflow back from the route id.
//! - [`routes`]: [`routes::Routes`], the hash maps (URI user part, `line_uri` number) the
//!   router reads, built with each runtime.
//!
//! Who writes an agent's state is in [`agents`]; how a reload travels is in [`runtime`]; how
//! queues, calls and the table fit together is in [`queue`].

pub mod agents;
mod announce;
pub(crate) mod call_task;
pub mod estimate;
pub(crate) mod observe;
pub mod queue;
mod queue_task;
mod record;
pub(crate) mod router;
mod routes;
pub mod routing;
pub mod runtime;

pub use call_task::{Controller, Services};
pub use observe::{CallObserver, CallSnapshot, CallStage};
pub use router::WorkflowRouter;
pub use routes::Routes;
