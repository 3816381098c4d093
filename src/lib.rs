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
//!   line and key; SIP URIs (`config::uri`).
//! - `workflow`: pure call logic: schedules, IVR, the per-call state machine.
//! - [`sip`]: transport, messages, transactions, dialogs, registration.
//! - [`media`]: SDP, RTP, prompt and music playback, DTMF, bridging.
//! - [`store`]: all SQL (SQLite or PostgreSQL).
//! - [`acd`]: drives calls, owns queues and the agent table; routing decisions.
//! - [`api`]: HTTP API, agent page, reports, metrics.
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
