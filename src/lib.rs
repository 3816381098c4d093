//! rgsd: a self-hosted SIP response-group server (an ACD daemon).
//!
//! An administrator describes workflows in TOML; rgsd answers calls to each workflow's SIP URI,
//! plays prompts, checks holidays and business hours, asks IVR questions, holds callers in queues
//! with music on hold and offers them to agents by each agent group's routing method.
//!
//! # Layout
//!
//! Lower layers never use higher ones; `tests/layers.rs` enforces the table and
//! `docs/architecture.md` explains it, with the path of one call, who owns which state, and how
//! reload and shutdown travel. `docs/behaviour.md` holds the response-group rules the code
//! follows.
//!
//! - `util`: tiny helpers every layer may use (`sleep_until`, `random_token`).
//! - [`clock`]: the only reader of the wall clock.
//! - [`config`]: TOML → validated [`config::model::Config`]; every error at once, with file,
//!   line and key; the file and the database's objects compiled together ([`config::merge`]);
//!   SIP URIs ([`config::uri`]).
//! - `workflow`: pure call logic: schedules, IVR, the per-call state machine.
//! - [`sip`]: transports, messages, transactions, each leg's user-agent core, admission, the
//!   endpoint driver, registration.
//! - [`media`]: SDP, RTP legs, prompt and music playback, DTMF, bridging, the RTP port pool.
//! - [`store`]: all SQL (SQLite or PostgreSQL), the call-record writer.
//! - [`acd`]: the runtime in force and its one reload, the agent table, queue owners, call
//!   tasks, routing decisions.
//! - [`api`]: HTTP API (configuration objects, agents, sign-in, live state, reports, metrics),
//!   agent page and wallboard.
//! - `daemon`: the composition root: builds every layer, owns signals, shutdown and reload.
//! - `admin`: the offline commands that open the database (`user`, `check --database`,
//!   `export`, `import`).
//! - [`cli`]: the command line (`serve`, `check`, `migrate`, `token create`, `user`, `export`,
//!   `import`).

pub mod acd;
mod admin;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
mod daemon;
pub mod media;
pub mod sip;
pub mod store;
mod util;
mod workflow;
