//! The INVITE server transaction (RFC 3261 §17.2.1 with RFC 6026's Accepted state), and the UAS
//! core's 2xx retransmission until the ACK arrives (§13.3.1.4).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Action;
use super::timer::{Armed, T1, T2, T4, TIMEOUT_64T1, Timer};
use crate::sip::message::{Method, Request, Response};

/// Where an INVITE server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerInviteState {
    /// The user has the INVITE; provisional responses may have been sent.
    Proceeding,
    /// A non-2xx final was sent; retransmitted on timer G until ACK or timer H.
    Completed,
    /// The ACK arrived; absorbing ACK retransmits until timer I.
    Confirmed,
    /// A 2xx was sent (RFC 6026); absorbing INVITE retransmits until timer L. The 2xx itself is
    /// retransmitted by [`Answer2xx`], not here.
    Accepted,
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    armed: Armed,
    /// The last response sent, resent when the INVITE is retransmitted.
    last: Option<Bytes>,
    /// Current timer G interval: T1 doubling to T2.
    g_interval: Duration,
}

impl ServerInvite {
    /// A new transaction for a just-received INVITE. The driver answers 100 Trying through
    /// [`respond`](Self::respond) at once (RFC 3261 §17.2.1 allows it without waiting 200 ms).
    pub(crate) fn new(reliable: bool) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            reliable,
            armed: Armed::default(),
            last: None,
            g_interval: T1,
        }
    }

    pub(crate) fn state(&self) -> ServerInviteState {
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
        self.state == ServerInviteState::Terminated
    }

    /// Sends a response from the user. Ignored (empty actions) once a final was sent.
    pub(crate) fn respond(&mut self, response: &Response, now: Instant) -> Vec<Action> {
        if self.state != ServerInviteState::Proceeding {
            tracing::debug!(status = response.status, "response after final ignored");
            return Vec::new();
        }
        let wire = response.to_bytes();
        match response.status {
            100..=199 => {}
            200..=299 => {
                self.state = ServerInviteState::Accepted;
                self.armed.arm(Timer::L, now + TIMEOUT_64T1);
            }
            _ => {
                self.state = ServerInviteState::Completed;
                if !self.reliable {
                    self.armed.arm(Timer::G, now + T1);
                }
                self.armed.arm(Timer::H, now + TIMEOUT_64T1);
            }
        }
        // In Accepted the 2xx is the user's to retransmit (RFC 6026 §7.1) and INVITE
        // retransmits are absorbed: keep nothing for the 32 s the state lasts.
        self.last = (self.state != ServerInviteState::Accepted).then(|| wire.clone());
        vec![Action::Send(wire)]
    }

    /// A request matched to this transaction: an INVITE retransmit or the ACK of a non-2xx.
    pub(crate) fn on_request(&mut self, request: &Request, now: Instant) -> Vec<Action> {
        use ServerInviteState::*;
        match (&request.method, self.state) {
            (Method::Invite, Proceeding | Completed) => {
                self.last.clone().map(Action::Send).into_iter().collect()
            }
            (Method::Ack, Completed) => {
                self.state = Confirmed;
                self.armed.clear();
                let i = if self.reliable { Duration::ZERO } else { T4 };
                self.armed.arm(Timer::I, now + i);
                Vec::new()
            }
            // Absorbed: INVITE retransmits after a 2xx, ACK retransmits in Confirmed.
            (method, state) => {
                tracing::trace!(%method, ?state, "request absorbed");
                Vec::new()
            }
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(timer) = self.armed.pop_due(now) {
            match (timer, self.state) {
                (Timer::G, ServerInviteState::Completed) => {
                    self.g_interval = (self.g_interval * 2).min(T2);
                    self.armed.arm(Timer::G, now + self.g_interval);
                    out.extend(self.last.clone().map(Action::Send));
                }
                (Timer::H, ServerInviteState::Completed) => {
                    self.terminate();
                    out.push(Action::TimedOut);
                }
                (Timer::I | Timer::L, _) => self.terminate(),
                (other, state) => tracing::trace!(?other, ?state, "stale timer"),
            }
        }
        out
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.armed.clear();
    }
}

/// The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4): resend the 2xx at T1, doubling to
/// T2, until the ACK arrives; at 64·T1 give up with [`Action::TimedOut`] so that the call is
/// hung up with a BYE.
///
/// Over reliable transports the 2xx is not resent (the transport is reliable hop by hop and the
/// peers we face are single hops), but the 64·T1 ACK wait still applies.
#[derive(Debug)]
pub(crate) struct Answer2xx {
    wire: Bytes,
    armed: Armed,
    interval: Duration,
    done: bool,
}

impl Answer2xx {
    /// Starts after the 2xx was first sent (by [`ServerInvite::respond`]).
    pub(crate) fn new(wire: Bytes, reliable: bool, now: Instant) -> Self {
        let mut armed = Armed::default();
        if !reliable {
            armed.arm(Timer::Retransmit2xx, now + T1);
        }
        armed.arm(Timer::AckWait, now + TIMEOUT_64T1);
        Self {
            wire,
            armed,
            interval: T1,
            done: false,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.armed.next()
    }

    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The ACK arrived: stop.
    pub(crate) fn on_ack(&mut self) {
        self.done = true;
        self.armed.clear();
    }

    /// The INVITE was retransmitted (our 2xx was lost): resend the 2xx now.
    pub(crate) fn on_invite_retransmit(&self) -> Vec<Action> {
        if self.done {
            Vec::new()
        } else {
            vec![Action::Send(self.wire.clone())]
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(timer) = self.armed.pop_due(now) {
            match timer {
                Timer::Retransmit2xx => {
                    self.interval = (self.interval * 2).min(T2);
                    self.armed.arm(Timer::Retransmit2xx, now + self.interval);
                    out.push(Action::Send(self.wire.clone()));
                }
                Timer::AckWait => {
                    self.on_ack();
                    out.push(Action::TimedOut);
                }
                other => tracing::trace!(?other, "stale timer"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::{request, response, run_until, sends};

    fn offsets(t0: Instant, times: &[Instant]) -> Vec<u128> {
        times.iter().map(|t| (*t - t0).as_millis()).collect()
    }

    #[test]
    fn non_2xx_final_retransmits_on_g_until_h() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerInvite::new(false);
        assert_eq!(sends(&tx.respond(&response(&req, 100), t0)), 1);
        assert_eq!(sends(&tx.respond(&response(&req, 486), t0)), 1);
        assert_eq!(tx.state(), ServerInviteState::Completed);
        assert_eq!(tx.deadline(Timer::G), Some(t0 + T1));
        assert_eq!(tx.deadline(Timer::H), Some(t0 + Duration::from_secs(32)));
        let (times, actions) = run_until(
            &mut tx,
            ServerInvite::poll_timeout,
            |tx, now| tx.on_timer(now),
            t0 + Duration::from_secs(60),
        );
        assert_eq!(
            offsets(t0, &times),
            [
                500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
            ]
        );
        assert_eq!(actions.last(), Some(&Action::TimedOut));
        assert!(tx.is_terminated());
    }

    #[test]
    fn ack_confirms_and_timer_i_ends_it() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerInvite::new(false);
        tx.respond(&response(&req, 487), t0);
        tx.on_timer(t0 + T1);
        let t1 = t0 + Duration::from_millis(700);
        assert!(tx.on_request(&request("ACK"), t1).is_empty());
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        assert_eq!(tx.deadline(Timer::G), None);
        assert_eq!(tx.deadline(Timer::I), Some(t1 + T4));
        assert!(tx.on_request(&request("ACK"), t1).is_empty());
        tx.on_timer(t1 + T4);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_retransmits_get_the_last_response_and_a_second_final_is_refused() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerInvite::new(false);
        tx.respond(&response(&req, 180), t0);
        let again = tx.on_request(&req, t0);
        assert!(matches!(&again[..], [Action::Send(b)] if b.starts_with(b"SIP/2.0 180")));
        tx.respond(&response(&req, 200), t0);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert!(tx.respond(&response(&req, 500), t0).is_empty());
        assert!(tx.on_request(&req, t0).is_empty(), "absorbed after 2xx");
        assert_eq!(tx.deadline(Timer::L), Some(t0 + Duration::from_secs(32)));
    }

    #[test]
    fn reliable_has_no_timer_g() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerInvite::new(true);
        tx.respond(&response(&req, 404), t0);
        assert_eq!(tx.deadline(Timer::G), None);
        tx.on_request(&request("ACK"), t0);
        assert_eq!(tx.deadline(Timer::I), Some(t0));
    }

    #[test]
    fn answer_2xx_retransmits_until_ack() {
        let t0 = Instant::now();
        let mut ans = Answer2xx::new(Bytes::from_static(b"SIP/2.0 200 OK"), false, t0);
        let (times, _) = run_until(
            &mut ans,
            Answer2xx::poll_timeout,
            |a, now| a.on_timer(now),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(offsets(t0, &times), [500, 1500, 3500]);
        ans.on_ack();
        assert!(ans.is_done());
        assert_eq!(ans.poll_timeout(), None);
        assert!(ans.on_invite_retransmit().is_empty());
    }

    #[test]
    fn answer_2xx_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let mut ans = Answer2xx::new(Bytes::from_static(b"SIP/2.0 200 OK"), false, t0);
        let (times, actions) = run_until(
            &mut ans,
            Answer2xx::poll_timeout,
            |a, now| a.on_timer(now),
            t0 + Duration::from_secs(100),
        );
        assert_eq!(times.len(), 10);
        assert_eq!(actions.last(), Some(&Action::TimedOut));
        assert!(ans.is_done());
    }

    #[test]
    fn answer_2xx_over_tcp_only_waits() {
        let t0 = Instant::now();
        let mut ans = Answer2xx::new(Bytes::from_static(b"SIP/2.0 200 OK"), true, t0);
        assert_eq!(ans.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert_eq!(
            ans.on_timer(t0 + Duration::from_secs(32)),
            [Action::TimedOut]
        );
    }
}
