//! The INVITE client transaction (RFC 3261 §17.1.1, with RFC 6026's Accepted state).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Action;
use super::timer::{Armed, T1, TIMEOUT_64T1, TIMER_D, Timer};
use crate::sip::message::{Headers, Method, Request, Response};

/// Where an INVITE client transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientInviteState {
    /// Sent, nothing heard; retransmitting on timer A (unreliable transports).
    Calling,
    /// A provisional response arrived; retransmissions stop.
    Proceeding,
    /// A non-2xx final arrived and was ACKed; waiting out retransmits (timer D).
    Completed,
    /// A 2xx arrived (RFC 6026); further 2xx retransmits still go up to the user until timer M.
    Accepted,
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientInvite {
    state: ClientInviteState,
    /// Kept until a final response: the non-2xx ACK is built from it.
    request: Option<Request>,
    /// The serialized INVITE, resent on timer A.
    wire: Bytes,
    reliable: bool,
    armed: Armed,
    /// Current timer A interval: T1, doubling on each retransmit (no T2 cap for INVITE).
    a_interval: Duration,
    /// The ACK sent for a non-2xx final, resent for each retransmit of that final.
    ack: Option<Bytes>,
}

impl ClientInvite {
    /// Starts the transaction: the returned actions send the INVITE.
    pub(crate) fn new(request: Request, reliable: bool, now: Instant) -> (Self, Vec<Action>) {
        let wire = request.to_bytes();
        let mut armed = Armed::default();
        if !reliable {
            armed.arm(Timer::A, now + T1);
        }
        armed.arm(Timer::B, now + TIMEOUT_64T1);
        let tx = Self {
            state: ClientInviteState::Calling,
            request: Some(request),
            wire: wire.clone(),
            reliable,
            armed,
            a_interval: T1,
            ack: None,
        };
        (tx, vec![Action::Send(wire)])
    }

    pub(crate) fn state(&self) -> ClientInviteState {
        self.state
    }

    #[cfg(test)]
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.armed.deadline(timer)
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.armed.next()
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// The user sent a CANCEL for this INVITE: if no final response arrives within 64·T1, the
    /// transaction times out (RFC 3261 §9.1).
    pub(crate) fn cancel_sent(&mut self, now: Instant) {
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            self.armed.arm(Timer::CancelGuard, now + TIMEOUT_64T1);
        }
    }

    pub(crate) fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action> {
        use ClientInviteState::*;
        match (self.state, response.status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.armed.disarm(Timer::A);
                self.armed.disarm(Timer::B);
                vec![Action::Response(response)]
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.armed.clear();
                // Never resent again: free them for the 32 s of Accepted.
                self.wire = Bytes::new();
                self.request = None;
                self.armed.arm(Timer::M, now + TIMEOUT_64T1);
                vec![Action::Response(response)]
            }
            (Calling | Proceeding, _) => {
                self.state = Completed;
                self.armed.clear();
                self.wire = Bytes::new();
                let ack = self.ack_for(&response);
                self.request = None;
                self.ack = Some(ack.clone());
                let d = if self.reliable {
                    Duration::ZERO
                } else {
                    TIMER_D
                };
                self.armed.arm(Timer::D, now + d);
                vec![Action::Send(ack), Action::Response(response)]
            }
            // A retransmitted final: resend the ACK, do not bother the user again.
            (Completed, 300..) => self.ack.clone().map(Action::Send).into_iter().collect(),
            // RFC 6026: 2xx retransmits (or 2xx from forked branches) go to the user, who ACKs.
            (Accepted, 200..=299) => vec![Action::Response(response)],
            (Completed | Accepted | Terminated, _) => {
                tracing::trace!(status = response.status, state = ?self.state, "response ignored");
                Vec::new()
            }
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(timer) = self.armed.pop_due(now) {
            match timer {
                Timer::A if self.state == ClientInviteState::Calling => {
                    self.a_interval *= 2;
                    self.armed.arm(Timer::A, now + self.a_interval);
                    out.push(Action::Send(self.wire.clone()));
                }
                Timer::B | Timer::CancelGuard
                    if matches!(
                        self.state,
                        ClientInviteState::Calling | ClientInviteState::Proceeding
                    ) =>
                {
                    self.terminate();
                    out.push(Action::TimedOut);
                }
                Timer::D | Timer::M => self.terminate(),
                other => tracing::trace!(?other, state = ?self.state, "stale timer"),
            }
        }
        out
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.armed.clear();
    }

    /// The ACK for a non-2xx final (RFC 3261 §17.1.1.3): same Request-URI, Call-ID, From, CSeq
    /// number and top Via as the INVITE, To from the response, Route headers kept.
    fn ack_for(&self, response: &Response) -> Bytes {
        let Some(req) = &self.request else {
            return Bytes::new();
        };
        let mut headers = Headers::new();
        if let Some(via) = req.headers.get_list("Via").next() {
            headers.push("Via", via);
        }
        for route in req.headers.get_lines("Route") {
            headers.push("Route", route);
        }
        headers.push("Max-Forwards", "70");
        if let Some(from) = req.headers.get("From") {
            headers.push("From", from);
        }
        if let Some(to) = response.headers.get("To") {
            headers.push("To", to);
        }
        headers.push("Call-ID", req.call_id());
        let seq = req.cseq().map(|c| c.seq).unwrap_or_default();
        headers.push("CSeq", format!("{seq} ACK"));
        Request {
            method: Method::Ack,
            uri: req.uri.clone(),
            headers,
            body: Bytes::new(),
        }
        .to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Message, parse};
    use crate::sip::transaction::test_support::{request, response, run_until, sends};

    #[test]
    fn timer_a_doubles_without_cap_until_timer_b() {
        let t0 = Instant::now();
        let (mut tx, first) = ClientInvite::new(request("INVITE"), false, t0);
        assert_eq!(sends(&first), 1);
        assert_eq!(tx.deadline(Timer::A), Some(t0 + Duration::from_millis(500)));
        assert_eq!(tx.deadline(Timer::B), Some(t0 + Duration::from_secs(32)));
        let (times, actions) = run_until(
            &mut tx,
            ClientInvite::poll_timeout,
            |tx, now| tx.on_timer(now),
            t0 + Duration::from_secs(60),
        );
        // Retransmits at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: six, then B at 32 s.
        let offsets: Vec<_> = times.iter().map(|t| (*t - t0).as_millis()).collect();
        assert_eq!(offsets, [500, 1500, 3500, 7500, 15_500, 31_500]);
        assert_eq!(actions.last(), Some(&Action::TimedOut));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_transport_has_no_timer_a() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientInvite::new(request("INVITE"), true, t0);
        assert_eq!(tx.deadline(Timer::A), None);
        let (times, actions) = run_until(
            &mut tx,
            ClientInvite::poll_timeout,
            |tx, now| tx.on_timer(now),
            t0 + Duration::from_secs(60),
        );
        assert!(times.is_empty());
        assert_eq!(actions, [Action::TimedOut]);
    }

    #[test]
    fn provisional_stops_retransmits_and_final_error_is_acked_once_per_retransmit() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientInvite::new(req.clone(), false, t0);
        let out = tx.on_response(response(&req, 180), t0 + Duration::from_millis(100));
        assert!(matches!(out[..], [Action::Response(ref r)] if r.status == 180));
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(tx.deadline(Timer::A), None);
        assert_eq!(tx.deadline(Timer::B), None);

        let t1 = t0 + Duration::from_secs(2);
        let out = tx.on_response(response(&req, 486), t1);
        assert_eq!(tx.state(), ClientInviteState::Completed);
        let Action::Send(ack) = &out[0] else {
            panic!("no ACK: {out:?}")
        };
        let Ok(Message::Request(ack)) = parse(ack) else {
            panic!()
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert_eq!(ack.to().unwrap().tag(), Some("b1"));
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKtest1"));
        assert!(matches!(out[1], Action::Response(ref r) if r.status == 486));
        assert_eq!(tx.deadline(Timer::D), Some(t1 + Duration::from_secs(32)));

        // A retransmitted 486 gets the ACK again and is not passed up.
        let again = tx.on_response(response(&req, 486), t1 + Duration::from_secs(1));
        assert_eq!(again.len(), 1);
        assert!(matches!(again[0], Action::Send(_)));

        assert!(tx.on_timer(t1 + Duration::from_secs(32)).is_empty());
        assert!(tx.is_terminated());
    }

    #[test]
    fn success_enters_accepted_and_passes_retransmits_until_timer_m() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientInvite::new(req.clone(), false, t0);
        assert_eq!(tx.on_response(response(&req, 200), t0).len(), 1);
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(tx.deadline(Timer::M), Some(t0 + Duration::from_secs(32)));
        assert_eq!(tx.on_response(response(&req, 200), t0).len(), 1);
        tx.on_timer(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn cancel_guard_times_out_a_proceeding_invite() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientInvite::new(req.clone(), false, t0);
        tx.on_response(response(&req, 180), t0);
        tx.cancel_sent(t0 + Duration::from_secs(10));
        assert!(tx.on_timer(t0 + Duration::from_secs(41)).is_empty());
        assert_eq!(
            tx.on_timer(t0 + Duration::from_secs(42)),
            [Action::TimedOut]
        );
    }
}
