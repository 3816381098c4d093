//! RFC 3261 §17 transactions as sans-IO state values.
//!
//! Each transaction is a plain value: feed it messages (`on_response` / `on_request`), responses
//! from its user (`respond`) and the time (`on_timer(now)`); it returns [`Action`]s and says when it
//! next wants the time through `poll_timeout()`. No sockets, no clock reads, no `.await`: the
//! endpoint's driver (`sip::endpoint`) owns the I/O, and the unit tests below each type drive them on
//! a virtual clock, asserting timer values and retransmission counts.
//!
//! - [`ClientInvite`]: INVITE client (timers A, B, D; RFC 6026 M), builds the ACK for non-2xx.
//! - [`ClientNonInvite`]: non-INVITE client (E, F, K).
//! - [`ServerInvite`]: INVITE server (G, H, I; RFC 6026 L).
//! - [`ServerNonInvite`]: non-INVITE server (J).
//! - [`Answer2xx`]: the UAS core's 2xx retransmission until ACK, giving up at 64·T1 (§13.3.1.4).
//!
//! Must not import anything above `sip::message`.

mod client;
mod client_invite;
mod server;
mod server_invite;
pub(super) mod timer;

use bytes::Bytes;

pub(super) use client::{ClientNonInvite, ClientNonInviteState};
pub(super) use client_invite::{ClientInvite, ClientInviteState};
pub(super) use server::ServerNonInvite;
pub(super) use server_invite::{Answer2xx, ServerInvite, ServerInviteState};

use super::message::{Method, Request, Response};

/// What a transaction asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Put these bytes on the wire toward the transaction's peer.
    Send(Bytes),
    /// Hand this response up to the transaction user (client transactions only).
    Response(Response),
    /// The peer never answered (timer B, F, H, the 2xx ACK wait, or the CANCEL guard): the user
    /// must treat the transaction as failed (408 for a client, hang up for an unacknowledged 2xx).
    TimedOut,
}

/// What identifies a transaction (RFC 3261 §17.1.3 and §17.2.3): the top Via branch, its
/// sent-by (server side), and the method, with ACK folded into INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct TransactionKey {
    pub branch: String,
    pub sent_by: String,
    pub method: Method,
    /// Server transactions and client transactions share one map in the driver.
    pub server: bool,
}

impl TransactionKey {
    /// The server transaction a request belongs to. ACK maps to its INVITE; CANCEL is its own
    /// transaction (same branch, method CANCEL). Requests without an RFC 3261 branch (RFC 2543
    /// peers) are keyed on Call-ID, CSeq number and From tag, which is enough for absorption.
    pub(super) fn for_request(request: &Request) -> Option<Self> {
        let via = request.top_via()?;
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(super::message::BRANCH_COOKIE) => b.to_owned(),
            _ => format!(
                "2543:{}:{}:{}",
                request.call_id(),
                request.cseq().map(|c| c.seq).unwrap_or_default(),
                request
                    .from()
                    .and_then(|f| f.tag().map(str::to_owned))
                    .unwrap_or_default()
            ),
        };
        Some(Self {
            branch,
            sent_by: via.sent_by.to_ascii_lowercase(),
            method,
            server: true,
        })
    }

    /// The client transaction a response belongs to: our branch and the CSeq method.
    pub(super) fn for_response(response: &Response) -> Option<Self> {
        let via = response.top_via()?;
        Some(Self {
            branch: via.branch()?.to_owned(),
            sent_by: String::new(),
            method: response.cseq()?.method,
            server: false,
        })
    }

    /// The key of a client transaction we start with `branch`.
    pub(super) fn client(branch: &str, method: Method) -> Self {
        Self {
            branch: branch.to_owned(),
            sent_by: String::new(),
            method,
            server: false,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders shared by the transaction tests.
    use super::*;
    use crate::sip::message::{Message, parse};

    pub(crate) fn request(method: &str) -> Request {
        let text = format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest1\r\n\
From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n\
Call-ID: call-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\r\n"
        );
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("bad test request: {other:?}"),
        }
    }

    pub(crate) fn response(to: &Request, status: u16) -> Response {
        Response::to_request(to, status, Some("b1"))
    }

    pub(crate) fn sends(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Send(_)))
            .count()
    }

    /// Advances the virtual clock from deadline to deadline until `until`, counting sends and
    /// recording the instants of each send. Bounded: at most 1,000 steps.
    pub(crate) fn run_until<T>(
        tx: &mut T,
        poll: impl Fn(&T) -> Option<tokio::time::Instant>,
        mut step: impl FnMut(&mut T, tokio::time::Instant) -> Vec<Action>,
        until: tokio::time::Instant,
    ) -> (Vec<tokio::time::Instant>, Vec<Action>) {
        let mut send_times = Vec::new();
        let mut all = Vec::new();
        for _ in 0..1000 {
            let Some(at) = poll(tx) else { break };
            if at > until {
                break;
            }
            let actions = step(tx, at);
            for _ in 0..sends(&actions) {
                send_times.push(at);
            }
            all.extend(actions);
        }
        (send_times, all)
    }
}

/// Any of the four transactions, for the driver's single table.
#[derive(Debug)]
pub(super) enum Tx {
    ClientInvite(ClientInvite),
    Client(ClientNonInvite),
    ServerInvite(ServerInvite),
    Server(ServerNonInvite),
}

impl Tx {
    pub(super) fn poll_timeout(&self) -> Option<tokio::time::Instant> {
        match self {
            Self::ClientInvite(t) => t.poll_timeout(),
            Self::Client(t) => t.poll_timeout(),
            Self::ServerInvite(t) => t.poll_timeout(),
            Self::Server(t) => t.poll_timeout(),
        }
    }

    pub(super) fn on_timer(&mut self, now: tokio::time::Instant) -> Vec<Action> {
        match self {
            Self::ClientInvite(t) => t.on_timer(now),
            Self::Client(t) => t.on_timer(now),
            Self::ServerInvite(t) => t.on_timer(now),
            Self::Server(t) => t.on_timer(now),
        }
    }

    pub(super) fn is_terminated(&self) -> bool {
        match self {
            Self::ClientInvite(t) => t.is_terminated(),
            Self::Client(t) => t.is_terminated(),
            Self::ServerInvite(t) => t.is_terminated(),
            Self::Server(t) => t.is_terminated(),
        }
    }

    /// A response from the transaction user (server transactions; ignored by clients).
    pub(super) fn respond(
        &mut self,
        response: &Response,
        now: tokio::time::Instant,
    ) -> Vec<Action> {
        match self {
            Self::ServerInvite(t) => t.respond(response, now),
            Self::Server(t) => t.respond(response, now),
            Self::ClientInvite(_) | Self::Client(_) => Vec::new(),
        }
    }

    /// A response from the peer (client transactions; ignored by servers).
    pub(super) fn on_response(
        &mut self,
        response: Response,
        now: tokio::time::Instant,
    ) -> Vec<Action> {
        match self {
            Self::ClientInvite(t) => t.on_response(response, now),
            Self::Client(t) => t.on_response(response, now),
            Self::ServerInvite(_) | Self::Server(_) => Vec::new(),
        }
    }

    /// Whether this is a request rgsd sent that still waits for its final response.
    pub(super) fn awaits_response(&self) -> bool {
        match self {
            Self::Client(t) => matches!(
                t.state(),
                ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
            ),
            Self::ClientInvite(t) => matches!(
                t.state(),
                ClientInviteState::Calling | ClientInviteState::Proceeding
            ),
            Self::Server(_) | Self::ServerInvite(_) => false,
        }
    }
}
