//! SIP signalling: transport, messages, transactions, dialogs, registration.
//!
//! Must not import `workflow`, `acd`, `store` or `api`.

pub mod message;
pub mod transaction;
