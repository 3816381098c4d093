//! SIP signalling: transport, messages, transactions, dialogs, and the B2BUA endpoint the call
//! controller drives.
//!
//! Must not import `workflow`, `acd`, `store` or `api`; SDP crosses this layer as bytes.
//!
//! # Layers
//!
//! ```text
//! endpoint   Endpoint (the handle), the driver task: its loop and tables; endpoint/inbound
//!            and endpoint/legs carry out what the pure parts below decide
//! call       IncomingCall -> Call, OutboundCall, CallEvent: what the controller holds
//! leg        each call leg's UA state machine: inputs in, outputs out (pure, sans-IO)
//! admission  edge policy: rate limit, trusted peers, INVITE checks, routing verdict (pure)
//! policy     the per-source token bucket and the trusted-peer match admission uses (pure)
//! settings   EndpointConfig: what the endpoint takes from [server], at bind and on reload
//! session_timer  RFC 4028 answers (pure)
//! wire       Via, Contact, received/rport, CANCEL construction (pure)
//! resolve    target URI -> address (DNS on its own task, never the driver's)
//! dialog     tags, CSeq, route set, remote target (pure)
//! transaction  RFC 3261 §17 client/server, INVITE/non-INVITE, timers A–M (pure, sans-IO)
//! message    bytes <-> Request/Response (never panics; 400 when a reply can be formed)
//! transport  UDP, TCP and TLS listeners, Content-Length framing, flows
//! tls        rustls contexts: our certificate, client_ca, outbound roots and names
//! registration  REGISTER with digest auth, refresh, back-off
//! ```
//!
//! # Flow for a call controller
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use rgsd::sip::{CallEvent, Endpoint, EndpointConfig, RouteDecision, RouteId};
//! # async fn example(config: EndpointConfig, agent: rgsd::config::model::SipUri,
//! #                  me: rgsd::config::model::SipUri, our_sdp: Bytes) -> anyhow::Result<()> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let router = Arc::new(|uri: &str, _to: &str| {
//!     if uri.starts_with("sip:sales@") { RouteDecision::Accept(RouteId(0)) } else { RouteDecision::NotFound }
//! });
//! let (endpoint, mut calls) = Endpoint::bind(config, router, shutdown.clone()).await?;
//! while let Some(incoming) = calls.recv().await {
//!     incoming.ring(180, None)?;
//!     // Media builds an answer from incoming.info().sdp; then:
//!     let mut caller = incoming.answer(our_sdp.clone())?;
//!     // Start the agent leg.
//!     let mut agent_leg = endpoint.invite(&agent, &me, our_sdp.clone(), vec![]).await?;
//!     while let Some(event) = agent_leg.next_event().await {
//!         match event {
//!             CallEvent::Answered { sdp: _ } => break,
//!             CallEvent::Failed(_) => { caller.bye()?; break; }
//!             _ => {}
//!         }
//!     }
//!     // Later: caller.next_event() yields Confirmed, Bye, Reinvite, Info, AckTimeout, …
//! }
//! # Ok(()) }
//! ```
//!
//! Every end of a leg reaches its holder as a terminal [`CallEvent`] (see
//! [`CallEvent::is_terminal`]); nothing fails silently.
//!
//! # Registration
//!
//! `registration::Registrations` keeps one task per `[[registration]]` (started, stopped or
//! restarted by `apply` on reload): it REGISTERs, answers 401/407 with digest (MD5 or SHA-256,
//! `qop=auth`), refreshes a minute before expiry (half-time for short ones), backs off 2 s
//! doubling to 5 min after failures, and logs every state change.
//!
//! # Edge policy (before anything reaches the controller)
//!
//! | request | answer |
//! |---|---|
//! | INVITE/SUBSCRIBE/REFER from outside `trusted_peers` | 403 |
//! | INVITE whose Request-URI is not `sip:`/`sips:`/`tel:` | 416 |
//! | any request whose Request-URI is `sips:` arriving over UDP or TCP (not TLS) | 416 |
//! | INVITE whose Request-URI the [`CallRouter`] does not know / knows as inactive | 404 / 480 |
//! | INVITE while `max_calls` inbound calls exist, or the controller's queue is full | 503, Retry-After |
//! | more than the per-source token bucket allows | dropped, one log line per source a minute |
//! | malformed but answerable | 400; otherwise dropped with a debug line |
//! | unknown or unsupported method | 405 with Allow |
//! | `Require` of an extension other than `timer` / body not SDP / Session-Expires < 90 | 420 / 415 / 422 |
//!
//! [`Endpoint::reconfigure`] changes `trusted_peers`, `max_calls`, the rate limit and the
//! listeners while calls run; the next request meets the new limits.
//!
//! # Routing choices
//!
//! Responses go back to the request's source address and port (symmetric response routing,
//! RFC 3581 behaviour whether or not the peer asked with `rport`). In-dialog requests we send
//! carry the dialog's remote target and route set, but are sent to the peer address the dialog
//! was formed with; rgsd faces single-hop peers (trunks, PBXs, phones), for which this is the
//! address that works through NAT.

mod admission;
mod call;
mod dialog;
mod endpoint;
mod leg;
pub mod message;
pub(crate) mod policy;
pub(crate) mod registration;
mod resolve;
mod session_timer;
mod settings;
mod tls;
mod transaction;
pub mod transport;
mod wire;

pub use admission::{CallRouter, RouteDecision, RouteId};
pub use call::{Call, CallEvent, CallInfo, EndpointGone, IncomingCall, LegFailure, OutboundCall};
pub use endpoint::{Endpoint, EndpointConfig, InviteError, RequestError, TransactionCounts};
pub use policy::RateLimit;
pub use registration::{Next, Registrar, RegistrationState};
pub use tls::TlsSetupError;
pub use transport::{BindError, BoundListener};
