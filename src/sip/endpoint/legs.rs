//! The driver's leg side: carrying out what a leg's core decided (responses, ACK, CANCEL,
//! BYE, 2xx retransmission), responses to the requests rgsd sent, and building outbound
//! INVITEs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ALLOW, Ctx, Driver, TimerOwner, TxEntry};
use crate::sip::call::{LegFailure, LegId, OutboundRequest};
use crate::sip::dialog::Dialog;
use crate::sip::leg::{Input, Leg, LegCore, Out};
use crate::sip::message::{Method, NameAddr, Request, Response};
use crate::sip::session_timer::{self, Echo, Refresher, Session, Verdict};
use crate::sip::transaction::{Answer2xx, ClientInvite, ClientNonInvite, TransactionKey, Tx};
use crate::sip::transport::Flow;
use crate::sip::wire::{cancel_for, header_ok, make_contact, make_via};
use crate::util::random_token;

impl Driver {
    // ---- the leg core's outputs -----------------------------------------------------------

    /// Feeds `input` to the leg's core and carries out what it returns.
    pub(super) fn step(&mut self, leg_id: LegId, input: Input, mut ctx: Ctx<'_>) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let outs = leg.core.on(input);
        for out in outs {
            let Some(leg) = self.legs.get_mut(&leg_id) else {
                return;
            };
            match out {
                Out::Emit(event) => leg.emit(event),
                Out::Reply {
                    status,
                    retry_after,
                } => {
                    if let Some(key) = ctx.key {
                        let tag = leg.dialog.local_tag.clone();
                        self.reply(key, status, Some(&tag), |r| {
                            if retry_after {
                                r.headers.push("Retry-After", "1");
                            }
                            if status == 405 {
                                r.headers.push("Allow", ALLOW);
                            }
                        });
                    }
                }
                Out::Accept => self.accept(leg_id, &ctx),
                Out::RespondInvite(status) => {
                    let (Some(key), flow) = (leg.invite_tx.clone(), leg.flow) else {
                        continue;
                    };
                    let tag = leg.dialog.local_tag.clone();
                    let sips = leg.dialog.is_sips();
                    let contact = self.contact(flow, sips);
                    let sdp = if status < 200 { ctx.sdp.take() } else { None };
                    self.reply(&key, status, Some(&tag), |r| {
                        if status < 200 {
                            r.headers.push("Contact", contact);
                        }
                        if status == 503 {
                            // Refused for now (draining, or out of capacity): a proxy in front
                            // tries another node, a phone tries again later (RFC 3261 §21.5.4).
                            r.headers
                                .push("Retry-After", crate::sip::admission::RETRY_AFTER);
                        }
                        if let Some(sdp) = sdp {
                            r.headers.push("Content-Type", "application/sdp");
                            r.body = sdp;
                        }
                    });
                }
                Out::SendAnswer => self.send_answer(leg_id),
                Out::StopRetransmit => leg.answer = None,
                Out::SendCancel => self.send_cancel(leg_id),
                Out::SendAck => {
                    let port = self.transports.local_port(leg.flow);
                    let transport = self.transports.transport_of(leg.flow);
                    let via = make_via(&self.config.advertised_host, port, transport).0;
                    let contact = make_contact(
                        &self.config.advertised_host,
                        port,
                        transport,
                        leg.dialog.is_sips(),
                    );
                    let ack = leg
                        .dialog
                        .request(Method::Ack, &via, &contact, Bytes::new());
                    let ack = ack.to_bytes();
                    self.transports.send(leg.flow, leg.peer, ack.clone());
                    leg.ack = Some(ack);
                    let id = (leg.dialog.call_id.clone(), leg.dialog.local_tag.clone());
                    self.dialogs.insert(id, leg_id);
                }
                Out::ResendAck => {
                    if let Some(ack) = &leg.ack {
                        // A 2xx retransmit: our ACK was lost.
                        self.transports.send(leg.flow, leg.peer, ack.clone());
                    }
                }
                Out::SendBye => self.send_bye(leg_id),
                Out::Detach => leg.events = mpsc::unbounded_channel().0,
                Out::ArmTimer {
                    generation,
                    after,
                    jitter,
                } => {
                    let jitter = jitter.mul_f64(fastrand::f64());
                    let at = Instant::now() + after + jitter;
                    self.schedule(TimerOwner::Session(leg_id, generation), Some(at));
                }
                Out::SendRefresh { update, interval } => {
                    self.send_refresh(leg_id, update, interval);
                }
                Out::RetryInvite { interval } => self.retry_invite(leg_id, interval),
                Out::End => {
                    self.fallbacks.remove(&leg_id);
                    let Some(leg) = self.legs.remove(&leg_id) else {
                        return;
                    };
                    self.dialogs
                        .remove(&(leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()));
                    if leg.counted {
                        self.inbound_calls = self.inbound_calls.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// 200 to the in-dialog request in hand, as its method needs.
    pub(super) fn accept(&mut self, leg_id: LegId, ctx: &Ctx<'_>) {
        let (Some(key), Some(request)) = (ctx.key, ctx.request) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let tag = leg.dialog.local_tag.clone();
        let method = request.method.clone();
        if method == Method::Options {
            return self.reply_options(key);
        }
        if method == Method::Invite
            && let Some(contact) = request.contact()
        {
            leg.dialog.remote_target = contact.uri;
        }
        let offered = method == Method::Invite || !request.body.is_empty();
        let body = if offered {
            leg.local_sdp.clone()
        } else {
            Bytes::new()
        };
        let (flow, sips) = (leg.flow, leg.dialog.is_sips());
        let contact = self.contact(flow, sips);
        let timer = echo(request);
        let wire = self.respond(key, 200, Some(&tag), |r| {
            r.headers.push("Contact", contact);
            if method == Method::Invite {
                r.headers.push("Allow", ALLOW);
            }
            session_timer::add(r, timer);
            if !body.is_empty() {
                r.headers.push("Content-Type", "application/sdp");
                r.body = body;
            }
        });
        if method == Method::Invite
            && let Some(wire) = wire
        {
            self.retransmit_until_ack(leg_id, wire, flow);
        }
    }

    pub(super) fn retransmit_until_ack(&mut self, leg_id: LegId, wire: Bytes, flow: Flow) {
        let answer = Answer2xx::new(wire, flow.is_reliable(), Instant::now());
        let at = answer.poll_timeout();
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.answer = Some(answer);
            self.schedule(TimerOwner::Answer(leg_id), at);
        }
    }

    /// 200 with the local SDP to the INVITE that created an inbound leg.
    pub(super) fn send_answer(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (Some(key), flow) = (leg.invite_tx.clone(), leg.flow) else {
            return;
        };
        let (tag, body) = (leg.dialog.local_tag.clone(), leg.local_sdp.clone());
        let contact = self.contact(flow, leg.dialog.is_sips());
        let request = self.txs.get(&key).and_then(|e| e.request.as_ref());
        let timer = request.and_then(echo);
        let wire = self.respond(&key, 200, Some(&tag), |r| {
            r.headers.push("Contact", contact);
            r.headers.push("Allow", ALLOW);
            r.headers.push("Supported", "timer");
            session_timer::add(r, timer);
            if !body.is_empty() {
                r.headers.push("Content-Type", "application/sdp");
                r.body = body;
            }
        });
        if let Some(wire) = wire {
            self.retransmit_until_ack(leg_id, wire, flow);
        }
    }

    // ---- client side ----------------------------------------------------------------------

    pub(super) fn on_client_response(
        &mut self,
        key: &TransactionKey,
        leg_id: Option<LegId>,
        response: Response,
    ) {
        if response.status >= 200
            && let Some(reply) = self.pending.remove(key)
        {
            let _ = reply.send(Ok(response));
            return;
        }
        let Some(leg_id) = leg_id else {
            return;
        };
        if self
            .legs
            .get(&leg_id)
            .is_some_and(|l| l.refresh_tx.as_ref() == Some(key))
        {
            return self.on_refresh_response(key, leg_id, &response);
        }
        let input = match (key.method.clone(), response.status) {
            (Method::Invite, 100..=199) => {
                // A server answered: no other destination is tried (RFC 3263 §4.3).
                self.fallbacks.remove(&leg_id);
                if let (Some(leg), true) = (self.legs.get_mut(&leg_id), response.status > 100) {
                    leg.dialog.on_response(&response);
                }
                let sdp = (!response.body.is_empty()).then(|| response.body.clone());
                Input::Provisional {
                    status: response.status,
                    sdp,
                }
            }
            (Method::Invite, 200..=299) => {
                if let Some(leg) = self.legs.get_mut(&leg_id)
                    && leg.ack.is_none()
                {
                    leg.dialog.on_response(&response);
                    let session = leg
                        .offered
                        .map(|offered| session_timer::on_success(&response.headers, offered));
                    leg.core.propose(session);
                    leg.core
                        .peer_allows_update(session_timer::allows_update(&response.headers));
                }
                Input::Success { sdp: response.body }
            }
            (Method::Invite, 503) if self.fail_over(leg_id, "503 Service Unavailable") => return,
            (Method::Invite, 422) => match session_timer::min_se(&response.headers) {
                Some(min_se) => Input::IntervalTooSmall { min_se },
                None => Input::Failure(422),
            },
            (Method::Invite, status) => {
                tracing::debug!(status, "outbound leg refused");
                Input::Failure(status)
            }
            (Method::Bye, 200..) => Input::ByeDone,
            _ => return,
        };
        self.step(leg_id, input, Ctx::default());
    }

    pub(super) fn on_transaction_timeout(&mut self, key: &TransactionKey, leg: Option<LegId>) {
        if let Some(reply) = self.pending.remove(key) {
            let _ = reply.send(Err(LegFailure::Timeout));
        }
        let (Some(leg), false) = (leg, key.server) else {
            return;
        };
        if let Some(l) = self.legs.get_mut(&leg)
            && l.refresh_tx.as_ref() == Some(key)
        {
            tracing::info!("no response to our session refresh");
            l.refresh_tx = None;
            return self.step(leg, Input::Refreshed(408), Ctx::default());
        }
        match key.method {
            Method::Invite => {
                if self.fail_over(leg, "no answer") {
                    return;
                }
                tracing::info!("outbound leg timed out");
                self.step(leg, Input::InviteTimeout, Ctx::default());
            }
            Method::Bye => self.step(leg, Input::ByeDone, Ctx::default()),
            _ => {}
        }
    }

    pub(super) fn via(&self, flow: Flow) -> (String, String) {
        let port = self.transports.local_port(flow);
        make_via(
            &self.config.advertised_host,
            port,
            self.transports.transport_of(flow),
        )
    }

    /// Our Contact over `flow`; `sips` for a SIPS dialog (see [`Dialog::is_sips`]).
    pub(super) fn contact(&self, flow: Flow, sips: bool) -> String {
        let port = self.transports.local_port(flow);
        let transport = self.transports.transport_of(flow);
        make_contact(&self.config.advertised_host, port, transport, sips)
    }

    /// Sends an in-dialog BYE over the leg's flow (a closed stream is reopened); the leg ends
    /// when it is answered or times out.
    pub(super) fn send_bye(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (flow, peer, sips) = (leg.flow, leg.peer, leg.dialog.is_sips());
        let flow = match flow {
            Flow::Stream(id) if !self.transports.has_stream(id) => {
                let tls_name = leg.tls_name.clone();
                self.transports.stream_flow_for(peer, tls_name.as_deref())
            }
            other => other,
        };
        let (via, branch) = self.via(flow);
        let contact = self.contact(flow, sips);
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.flow = flow;
        let bye = leg
            .dialog
            .request(Method::Bye, &via, &contact, Bytes::new());
        self.start_client(&bye, &branch, flow, peer, Some(leg_id));
    }

    pub(super) fn start_client(
        &mut self,
        request: &Request,
        branch: &str,
        flow: Flow,
        peer: SocketAddr,
        leg: Option<LegId>,
    ) -> TransactionKey {
        let now = Instant::now();
        let key = TransactionKey::client(branch, request.method.clone());
        self.transactions.client.fetch_add(1, Ordering::Relaxed);
        let (tx, actions) = if request.method == Method::Invite {
            let (t, a) = ClientInvite::new(request.clone(), flow.is_reliable(), now);
            (Tx::ClientInvite(t), a)
        } else {
            let (t, a) = ClientNonInvite::new(request, flow.is_reliable(), now);
            (Tx::Client(t), a)
        };
        let entry = TxEntry {
            tx,
            flow,
            peer,
            leg,
            request: None,
        };
        self.txs.insert(key.clone(), Box::new(entry));
        self.run_actions(&key, actions);
        self.settle(&key);
        key
    }

    pub(super) fn send_cancel(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (Some(invite), Some(key)) = (leg.invite.as_ref(), leg.invite_tx.clone()) else {
            return;
        };
        let (flow, peer) = (leg.flow, leg.peer);
        let cancel = cancel_for(invite);
        let branch = invite.top_via().and_then(|v| v.branch().map(str::to_owned));
        if let Some(Tx::ClientInvite(t)) = self.txs.get_mut(&key).map(|e| &mut e.tx) {
            t.cancel_sent(Instant::now());
        }
        self.settle(&key);
        self.start_client(&cancel, &branch.unwrap_or_default(), flow, peer, None);
    }

    /// Builds and sends the INVITE of an outbound leg to `dest` over `flow`.
    pub(super) fn invite(&mut self, out: OutboundRequest, dest: SocketAddr, flow: Flow) {
        let name_addr = |uri: &str| NameAddr {
            display: String::new(),
            uri: uri.to_owned(),
            params: Vec::new(),
        };
        let (local, remote) = (name_addr(&out.from), name_addr(&out.request_uri));
        let (call_id, target) = (out.call_id.clone(), out.request_uri.clone());
        let mut dialog = Dialog::new_uac(call_id, random_token(10), local, remote, target);
        // Through the outbound proxy: the initial INVITE (and its CANCEL and non-2xx ACK, which
        // copy its Route) carries the proxy's Route; the dialog's own route set is what the
        // answer's Record-Route says (RFC 3261 §12.1.2, §8.1.2).
        if let Some(route) = out.route.clone() {
            dialog.route_set = vec![route];
        }
        let (via, branch) = self.via(flow);
        let contact = self.contact(flow, dialog.is_sips());
        let mut request = dialog.request(Method::Invite, &via, &contact, out.sdp.clone());
        request.headers.push("Allow", ALLOW);
        if let Some(interval) = self.config.session_expires {
            session_timer::offer(&mut request.headers, interval, self.config.min_se);
        }
        request.headers.push("User-Agent", "rgsd");
        if !out.sdp.is_empty() {
            request.headers.push("Content-Type", "application/sdp");
        }
        for (name, value) in out.extra_headers {
            // The controller is trusted, but a header that would break framing is still refused.
            if header_ok(&name, &value) {
                request.headers.push(name, value);
            } else {
                tracing::warn!(%name, "extra header refused: not a valid SIP header");
            }
        }
        let leg = Leg {
            core: LegCore::outbound(),
            dialog,
            events: out.events,
            flow,
            peer: dest,
            local_sdp: out.sdp,
            answer: None,
            invite_tx: None,
            invite: Some(request.clone()),
            ack: None,
            counted: false,
            offered: self.config.session_expires,
            refresh_tx: None,
            refresh_ack: None,
            tls_name: self.transports.tls_name(flow),
        };
        self.legs.insert(out.leg, leg);
        let key = self.start_client(&request, &branch, flow, dest, Some(out.leg));
        if let Some(leg) = self.legs.get_mut(&out.leg) {
            leg.invite_tx = Some(key);
        }
    }
}

/// What a 2xx to `request` (an INVITE or UPDATE) echoes of its Session-Expires.
fn echo(request: &Request) -> Option<Echo> {
    // The minimum was checked when the request arrived (422 below it).
    match session_timer::on_request(&request.headers, 0) {
        Verdict::Accept { echo, .. } => Some(echo),
        Verdict::None | Verdict::TooSmall { .. } => None,
    }
}

impl Driver {
    // ---- session timers (RFC 4028) --------------------------------------------------------

    /// Sends our refresh: an UPDATE without SDP, or a re-INVITE with the leg's current SDP
    /// (unchanged, so the same session version, RFC 3264 §8), offering `interval` with us as
    /// refresher.
    fn send_refresh(&mut self, leg_id: LegId, update: bool, interval: u32) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (flow, peer) = (leg.flow, leg.peer);
        let flow = match flow {
            Flow::Stream(id) if !self.transports.has_stream(id) => {
                let tls_name = leg.tls_name.clone();
                self.transports.stream_flow_for(peer, tls_name.as_deref())
            }
            other => other,
        };
        let (via, branch) = self.via(flow);
        let contact = self.contact(flow, leg.dialog.is_sips());
        let min_se = self.config.min_se;
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.flow = flow;
        let (method, body) = if update {
            (Method::Update, Bytes::new())
        } else {
            (Method::Invite, leg.local_sdp.clone())
        };
        let mut request = leg.dialog.request(method, &via, &contact, body);
        request.headers.push("Allow", ALLOW);
        session_timer::offer(&mut request.headers, interval, min_se);
        if !request.body.is_empty() {
            request.headers.push("Content-Type", "application/sdp");
        }
        leg.offered = Some(interval);
        leg.refresh_ack = None;
        tracing::debug!(method = %request.method, interval, "session refresh");
        let key = self.start_client(&request, &branch, flow, peer, Some(leg_id));
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.refresh_tx = Some(key);
        }
    }

    /// A response to our refresh: a 2xx to a re-INVITE is ACKed (again for its retransmits);
    /// every final response goes to the core.
    fn on_refresh_response(&mut self, key: &TransactionKey, leg_id: LegId, response: &Response) {
        if response.status < 200 {
            return;
        }
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        if let Some((acked, ack)) = &leg.refresh_ack
            && acked == key
        {
            if response.is_success() {
                self.transports.send(leg.flow, leg.peer, ack.clone());
            }
            return;
        }
        if response.is_success() {
            if key.method == Method::Invite {
                let port = self.transports.local_port(leg.flow);
                let transport = self.transports.transport_of(leg.flow);
                let via = make_via(&self.config.advertised_host, port, transport).0;
                let contact = make_contact(
                    &self.config.advertised_host,
                    port,
                    transport,
                    leg.dialog.is_sips(),
                );
                let ack = leg
                    .dialog
                    .request(Method::Ack, &via, &contact, Bytes::new())
                    .to_bytes();
                self.transports.send(leg.flow, leg.peer, ack.clone());
                leg.refresh_ack = Some((key.clone(), ack));
                if let Some(contact) = response.contact() {
                    leg.dialog.remote_target = contact.uri;
                }
            }
            let offered = leg.offered.unwrap_or(session_timer::MIN_SE);
            leg.core
                .propose(Some(session_timer::on_success(&response.headers, offered)));
        } else {
            leg.refresh_tx = None;
            let asked = session_timer::min_se(&response.headers);
            if let (422, Some(min_se)) = (response.status, asked) {
                leg.core.propose(Some(Session {
                    interval: min_se,
                    refresher: Refresher::Us,
                }));
            }
        }
        self.step(leg_id, Input::Refreshed(response.status), Ctx::default());
    }

    /// Sends the INVITE of an outbound leg again after a 422: new branch and CSeq, the
    /// interval the 422's Min-SE asked for (RFC 4028 §7.4).
    fn retry_invite(&mut self, leg_id: LegId, interval: u32) {
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (flow, peer) = (leg.flow, leg.peer);
        let (via, branch) = self.via(flow);
        let min_se = self.config.min_se.max(interval);
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let Some(mut request) = leg.invite.clone() else {
            return;
        };
        let seq = leg.dialog.local_cseq;
        leg.dialog.local_cseq = seq.saturating_add(1);
        for name in ["Via", "CSeq", "Supported", "Session-Expires", "Min-SE"] {
            request.headers.remove(name);
        }
        request.headers.push_front("Via", via);
        request.headers.push("CSeq", format!("{seq} INVITE"));
        session_timer::offer(&mut request.headers, interval, min_se);
        leg.offered = Some(interval);
        leg.invite = Some(request.clone());
        tracing::info!(
            interval,
            "agent asked for a longer session interval (422): retrying"
        );
        let key = self.start_client(&request, &branch, flow, peer, Some(leg_id));
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.invite_tx = Some(key);
        }
    }
}
