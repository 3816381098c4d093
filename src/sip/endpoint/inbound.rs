//! The driver's server side: requests from peers, matched to transactions and dialogs, new
//! INVITEs through admission, in-dialog requests handed to their leg's core.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ALLOW, Ctx, Driver, TxEntry};
use crate::config::model::Transport;
use crate::sip::admission::{RETRY_AFTER, Refusal};
use crate::sip::call::{CallInfo, Handle, IncomingCall, LegId};
use crate::sip::dialog::Dialog;
use crate::sip::leg::{InDialog, Input, Leg, LegCore};
use crate::sip::message::{Method, Request, Response};
use crate::sip::session_timer::{self, Verdict};
use crate::sip::transaction::{
    ServerInvite, ServerInviteState, ServerNonInvite, TransactionKey, Tx,
};
use crate::sip::transport::Flow;
use crate::sip::wire::stamp_via;
use crate::util::random_token;

impl Driver {
    // ---- requests -------------------------------------------------------------------------

    pub(super) fn on_request(
        &mut self,
        mut request: Request,
        source: SocketAddr,
        flow: Flow,
        now: Instant,
    ) {
        stamp_via(&mut request, source);
        let Some(key) = TransactionKey::for_request(&request) else {
            return;
        };
        if request.method == Method::Ack {
            return self.on_ack(&key, &request, now);
        }
        if let Some(entry) = self.txs.get_mut(&key) {
            // A retransmission.
            let mut actions = match &mut entry.tx {
                Tx::ServerInvite(t) => t.on_request(&request, now),
                Tx::Server(t) => t.on_retransmit(),
                Tx::ClientInvite(_) | Tx::Client(_) => Vec::new(),
            };
            if let Some(leg) = entry.leg.and_then(|l| self.legs.get(&l))
                && let Some(answer) = &leg.answer
            {
                actions.extend(answer.on_invite_retransmit());
            }
            self.run_actions(&key, actions);
            self.settle(&key);
            return;
        }
        self.transactions.server.fetch_add(1, Ordering::Relaxed);
        let tx = if request.method == Method::Invite {
            Tx::ServerInvite(ServerInvite::new(flow.is_reliable()))
        } else {
            Tx::Server(ServerNonInvite::new(flow.is_reliable()))
        };
        let entry = TxEntry {
            tx,
            flow,
            peer: source,
            leg: None,
            request: Some(request.clone()),
        };
        self.txs.insert(key.clone(), Box::new(entry));
        self.dispatch(&key, &request, source, flow);
        self.settle(&key);
    }

    pub(super) fn dispatch(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        source: SocketAddr,
        flow: Flow,
    ) {
        let max_forwards = request
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u8>().ok());
        if max_forwards == Some(0) && request.method != Method::Options {
            return self.reply(key, 483, None, |_| {});
        }
        if request.method == Method::Cancel {
            return self.on_cancel(key);
        }
        // A `sips:` Request-URI demands TLS on every hop (RFC 3261 §26.2.2); one that reached
        // us over UDP or TCP did not get it, so its scheme is refused as unsupported on this
        // transport (RFC 3261 §8.2.2.1: 416).
        if is_sips(&request.uri) && self.transports.transport_of(flow) != Transport::Tls {
            tracing::info!(%source, method = %request.method, "sips: request over a plain transport: 416");
            return self.reply(key, 416, None, |_| {});
        }
        if let Some(tag) = request.to().and_then(|t| t.tag().map(str::to_owned)) {
            let leg = self.dialogs.get(&(request.call_id().to_owned(), tag));
            return match leg.copied() {
                Some(leg) => self.on_in_dialog(key, request, leg),
                None if request.method == Method::Options => self.reply_options(key),
                None => self.reply(key, 481, None, |_| {}),
            };
        }
        if let Some(refusal) = self.admission.check_source(&request.method, source.ip()) {
            tracing::info!(%source, method = %request.method, "request from untrusted source: 403");
            return self.refuse(key, None, refusal);
        }
        match request.method {
            Method::Invite => self.on_new_invite(key, request, source, flow),
            Method::Options => self.reply_options(key),
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.reply(key, 481, None, |_| {});
            }
            _ => self.reply(key, 405, None, |r| r.headers.push("Allow", ALLOW)),
        }
    }

    pub(super) fn reply_options(&mut self, key: &TransactionKey) {
        self.reply(key, 200, None, |r| {
            r.headers.push("Allow", ALLOW);
            r.headers.push("Accept", "application/sdp");
            r.headers.push("Supported", "timer");
        });
    }

    /// 422 with our Min-SE to an in-dialog refresh (RFC 4028 §9).
    fn too_small(&mut self, key: &TransactionKey, to_tag: &str, min_se: u32) {
        tracing::info!(min_se, "session interval below min_se: 422");
        self.reply(key, 422, Some(to_tag), |r| {
            r.headers.push("Min-SE", min_se.to_string());
        });
    }

    pub(super) fn refuse(&mut self, key: &TransactionKey, to_tag: Option<&str>, refusal: Refusal) {
        self.reply(key, refusal.status, to_tag, |r| {
            for (name, value) in refusal.headers {
                r.headers.push(name, value);
            }
        });
    }

    /// Sends a response on a server transaction. `to_tag` is the leg's tag; without one a fresh
    /// tag is made (a final response outside any dialog still needs one).
    pub(super) fn reply(
        &mut self,
        key: &TransactionKey,
        status: u16,
        to_tag: Option<&str>,
        edit: impl FnOnce(&mut Response),
    ) {
        self.respond(key, status, to_tag, edit);
    }

    /// [`reply`](Self::reply), returning the response as sent.
    pub(super) fn respond(
        &mut self,
        key: &TransactionKey,
        status: u16,
        to_tag: Option<&str>,
        edit: impl FnOnce(&mut Response),
    ) -> Option<Bytes> {
        let now = Instant::now();
        let entry = self.txs.get_mut(key)?;
        let request = entry.request.as_ref()?;
        let fresh;
        let tag = if let Some(t) = to_tag {
            t
        } else {
            fresh = random_token(10);
            &fresh
        };
        let mut response = Response::to_request(request, status, Some(tag));
        if request.method == Method::Invite && (101..300).contains(&status) {
            // RFC 3261 §12.1.1: a response that makes a dialog carries the request's
            // Record-Route, in order, so the caller's ACK, BYE and re-INVITEs cross the proxies
            // that asked to stay in the path.
            for route in request.headers.get_lines("Record-Route") {
                response.headers.push("Record-Route", route);
            }
        }
        response.headers.push("Server", "rgsd");
        edit(&mut response);
        let actions = entry.tx.respond(&response, now);
        if status >= 200 {
            // No response can follow a final one: the request is not needed for the 32 s the
            // transaction still lives (Accepted, or Completed for a non-INVITE).
            entry.request = None;
        }
        self.run_actions(key, actions);
        self.settle(key);
        Some(response.to_bytes())
    }

    pub(super) fn on_new_invite(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        source: SocketAddr,
        flow: Flow,
    ) {
        let to = request.headers.get("To").unwrap_or_default();
        let route = self.router.route(&request.uri, to);
        let route = match self
            .admission
            .check_invite(request, route, self.inbound_calls)
        {
            Ok(route) => route,
            Err(refusal) => {
                if refusal.status == 503 {
                    tracing::info!(%source, "at max_calls: 503");
                }
                return self.refuse(key, None, refusal);
            }
        };
        let session = match session_timer::on_request(&request.headers, self.config.min_se) {
            Verdict::Accept { session, .. } => Some(session),
            // Admission answered a too short interval with 422 already.
            Verdict::None | Verdict::TooSmall { .. } => None,
        };
        let local_tag = random_token(10);
        let Some(dialog) = Dialog::from_uas(request, local_tag.clone()) else {
            return self.reply(key, 400, None, |_| {});
        };
        self.reply(key, 100, None, |_| {});
        let leg_id = LegId(self.next_leg.fetch_add(1, Ordering::Relaxed));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let info = CallInfo {
            from: request.headers.get("From").unwrap_or_default().to_owned(),
            to: to.to_owned(),
            call_id: request.call_id().to_owned(),
            request_uri: request.uri.clone(),
            source,
            sdp: request.body.clone(),
        };
        let inner = Handle {
            leg: leg_id,
            commands: self.commands.clone(),
            events: events_rx,
            live: true,
        };
        if let Err(e) = self.incoming.try_send(IncomingCall { info, route, inner }) {
            tracing::warn!(%source, "call controller not keeping up: 503");
            // Dropping the returned call would queue a Hangup for a leg that never existed.
            let (mpsc::error::TrySendError::Full(mut call)
            | mpsc::error::TrySendError::Closed(mut call)) = e;
            call.inner.live = false;
            return self.reply(key, 503, Some(&local_tag), |r| {
                r.headers.push("Retry-After", RETRY_AFTER);
            });
        }
        self.dialogs
            .insert((dialog.call_id.clone(), local_tag), leg_id);
        if let Some(entry) = self.txs.get_mut(key) {
            entry.leg = Some(leg_id);
        }
        self.inbound_calls += 1;
        let mut core = LegCore::inbound();
        core.propose(session);
        core.peer_allows_update(session_timer::allows_update(&request.headers));
        let leg = Leg {
            core,
            dialog,
            events: events_tx,
            flow,
            peer: source,
            local_sdp: Bytes::new(),
            answer: None,
            invite_tx: Some(key.clone()),
            invite: None,
            ack: None,
            counted: true,
            offered: None,
            refresh_tx: None,
            refresh_ack: None,
            // Should the caller's TLS connection be gone when rgsd hangs up, the BYE goes over a
            // new TLS connection (checked against the caller's address), never in clear.
            tls_name: (self.transports.transport_of(flow) == Transport::Tls)
                .then(|| std::sync::Arc::from(source.ip().to_string())),
        };
        self.legs.insert(leg_id, leg);
    }

    pub(super) fn on_cancel(&mut self, key: &TransactionKey) {
        let invite_key = TransactionKey {
            method: Method::Invite,
            ..key.clone()
        };
        let leg = self.txs.get(&invite_key).map(|e| e.leg);
        match leg {
            None => self.reply(key, 481, None, |_| {}),
            Some(Some(leg)) if self.legs.contains_key(&leg) => {
                let ctx = Ctx {
                    key: Some(key),
                    ..Ctx::default()
                };
                self.step(leg, Input::Cancel, ctx);
            }
            // An INVITE already refused at the edge: nothing left to cancel.
            Some(_) => self.reply(key, 200, None, |_| {}),
        }
    }

    pub(super) fn on_ack(&mut self, key: &TransactionKey, request: &Request, now: Instant) {
        if let Some(entry) = self.txs.get_mut(key)
            && let Tx::ServerInvite(t) = &mut entry.tx
            && t.state() == ServerInviteState::Completed
        {
            // The ACK of a non-2xx: same branch as the INVITE.
            let actions = t.on_request(request, now);
            self.run_actions(key, actions);
            self.settle(key);
            return;
        }
        // The ACK of a 2xx is its own transaction; match it to the dialog. Some peers reuse the
        // INVITE's branch for it, which is why the Completed check above comes first.
        let Some(tag) = request.to().and_then(|t| t.tag().map(str::to_owned)) else {
            return;
        };
        if let Some(leg) = self.dialogs.get(&(request.call_id().to_owned(), tag)) {
            let sdp = (!request.body.is_empty()).then(|| request.body.clone());
            self.step(*leg, Input::Ack { sdp }, Ctx::default());
        }
    }

    pub(super) fn on_in_dialog(&mut self, key: &TransactionKey, request: &Request, leg_id: LegId) {
        if let Some(entry) = self.txs.get_mut(key) {
            entry.leg = Some(leg_id);
        }
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return self.reply(key, 481, None, |_| {});
        };
        let seq = request.cseq().map(|c| c.seq).unwrap_or_default();
        if !leg.dialog.accept_remote_cseq(seq) {
            let tag = leg.dialog.local_tag.clone();
            return self.reply(key, 500, Some(&tag), |_| {});
        }
        if matches!(request.method, Method::Invite | Method::Update) {
            // A session refresh (or a re-INVITE/UPDATE without Session-Expires, which turns
            // the timer off, RFC 4028 §9).
            let session = match session_timer::on_request(&request.headers, self.config.min_se) {
                Verdict::TooSmall { min_se } => {
                    let tag = leg.dialog.local_tag.clone();
                    return self.too_small(key, &tag, min_se);
                }
                Verdict::Accept { session, .. } => Some(session),
                Verdict::None => None,
            };
            leg.core.propose(session);
        }
        let sdp = (!request.body.is_empty()).then(|| request.body.clone());
        let input = match request.method {
            Method::Bye => InDialog::Bye,
            Method::Invite => InDialog::Invite { sdp },
            Method::Update => InDialog::Update { sdp },
            Method::Info => InDialog::Info {
                content_type: request.headers.get("Content-Type").map(str::to_owned),
                body: request.body.clone(),
            },
            Method::Options => InDialog::Options,
            _ => InDialog::Other,
        };
        let ctx = Ctx {
            key: Some(key),
            request: Some(request),
            sdp: None,
        };
        self.step(leg_id, Input::Request(input), ctx);
    }
}

/// Whether a Request-URI has the `sips:` scheme (case-insensitive, RFC 3261 §19.1.1).
fn is_sips(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(scheme, _)| scheme.trim().eq_ignore_ascii_case("sips"))
}
