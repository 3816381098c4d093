//! rgsd: a self-hosted SIP response-group server (an ACD daemon).
//!
//! An administrator describes workflows in TOML; rgsd answers calls to each workflow's SIP URI,
//! plays prompts, checks holidays and business hours, asks IVR questions, holds callers in queues
//! with music on hold and offers them to agents by each agent group's routing method.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `check`, `migrate`).
//! - [`daemon`]: the composition root: builds every layer, owns signals, shutdown and reload.
//! - [`clock`]: the only reader of the wall clock.
//! - [`config`]: TOML → validated [`config::model::Config`]; every error at once, with file,
//!   line and key.
//! - [`sip`]: transport, messages, transactions, dialogs, registration.
//! - [`media`]: SDP, RTP, prompt and music playback, DTMF, bridging.
//! - [`workflow`]: pure call logic: schedules, IVR, the per-call state machine.
//! - [`acd`]: drives calls, owns queues and the agent table; routing decisions.
//! - [`store`]: all SQL (SQLite or PostgreSQL).
//! - [`api`]: HTTP API, agent page, reports, metrics.
//!
//! Each module may use the ones listed after it in the table of `STYLE.md` §6.2; only `daemon`
//! knows them all.

pub mod acd;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod media;
pub mod sip;
pub mod store;
pub mod util;
pub mod workflow;
