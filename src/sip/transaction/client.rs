//! The non-INVITE client transaction (RFC 3261 §17.1.2).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Action;
use super::timer::{Armed, T1, T2, T4, TIMEOUT_64T1, Timer};
use crate::sip::message::{Request, Response};

/// Where a non-INVITE client transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientNonInviteState {
    Trying,
    Proceeding,
    /// Final received; absorbing response retransmits until timer K.
    Completed,
    Terminated,
}

/// A non-INVITE client transaction (BYE, CANCEL, OPTIONS, INFO, UPDATE, REGISTER, …).
#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    state: ClientNonInviteState,
    wire: Bytes,
    reliable: bool,
    armed: Armed,
    /// Current timer E interval: T1 doubling to T2 (T2 flat once Proceeding).
    e_interval: Duration,
}

impl ClientNonInvite {
    /// Starts the transaction: the returned actions send the request.
    pub(crate) fn new(request: &Request, reliable: bool, now: Instant) -> (Self, Vec<Action>) {
        let wire = request.to_bytes();
        let mut armed = Armed::default();
        if !reliable {
            armed.arm(Timer::E, now + T1);
        }
        armed.arm(Timer::F, now + TIMEOUT_64T1);
        let tx = Self {
            state: ClientNonInviteState::Trying,
            wire: wire.clone(),
            reliable,
            armed,
            e_interval: T1,
        };
        (tx, vec![Action::Send(wire)])
    }

    pub(crate) fn state(&self) -> ClientNonInviteState {
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
        self.state == ClientNonInviteState::Terminated
    }

    pub(crate) fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action> {
        use ClientNonInviteState::*;
        match (self.state, response.status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                vec![Action::Response(response)]
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.armed.clear();
                let k = if self.reliable { Duration::ZERO } else { T4 };
                self.armed.arm(Timer::K, now + k);
                vec![Action::Response(response)]
            }
            (Completed | Terminated, _) => Vec::new(),
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        use ClientNonInviteState::*;
        let mut out = Vec::new();
        while let Some(timer) = self.armed.pop_due(now) {
            match (timer, self.state) {
                (Timer::E, Trying) => {
                    self.e_interval = (self.e_interval * 2).min(T2);
                    self.armed.arm(Timer::E, now + self.e_interval);
                    out.push(Action::Send(self.wire.clone()));
                }
                (Timer::E, Proceeding) => {
                    self.armed.arm(Timer::E, now + T2);
                    out.push(Action::Send(self.wire.clone()));
                }
                (Timer::F, Trying | Proceeding) => {
                    self.state = Terminated;
                    self.armed.clear();
                    out.push(Action::TimedOut);
                }
                (Timer::K, _) => {
                    self.state = Terminated;
                    self.armed.clear();
                }
                (other, state) => tracing::trace!(?other, ?state, "stale timer"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::{request, response, run_until};

    fn offsets(t0: Instant, times: &[Instant]) -> Vec<u128> {
        times.iter().map(|t| (*t - t0).as_millis()).collect()
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_fires() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientNonInvite::new(&request("OPTIONS"), false, t0);
        assert_eq!(tx.deadline(Timer::E), Some(t0 + T1));
        assert_eq!(tx.deadline(Timer::F), Some(t0 + Duration::from_secs(32)));
        let (times, actions) = run_until(
            &mut tx,
            ClientNonInvite::poll_timeout,
            |tx, now| tx.on_timer(now),
            t0 + Duration::from_secs(60),
        );
        // 0.5, 1.5, 3.5, 7.5 (interval now capped at 4 s), 11.5 … 31.5: ten retransmits.
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
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let req = request("BYE");
        let (mut tx, _) = ClientNonInvite::new(&req, false, t0);
        tx.on_timer(t0 + T1); // one retransmit; next E at 1.5 s
        tx.on_response(response(&req, 100), t0 + Duration::from_millis(600));
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        let (times, _) = run_until(
            &mut tx,
            ClientNonInvite::poll_timeout,
            |tx, now| tx.on_timer(now),
            t0 + Duration::from_secs(12),
        );
        assert_eq!(offsets(t0, &times), [1500, 5500, 9500]);
    }

    #[test]
    fn final_response_waits_timer_k_and_absorbs_retransmits() {
        let t0 = Instant::now();
        let req = request("BYE");
        let (mut tx, _) = ClientNonInvite::new(&req, false, t0);
        assert_eq!(tx.on_response(response(&req, 200), t0).len(), 1);
        assert_eq!(tx.deadline(Timer::K), Some(t0 + T4));
        assert_eq!(tx.deadline(Timer::E), None);
        assert!(tx.on_response(response(&req, 200), t0).is_empty());
        tx.on_timer(t0 + T4);
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_transport_terminates_at_once_after_final() {
        let t0 = Instant::now();
        let req = request("BYE");
        let (mut tx, _) = ClientNonInvite::new(&req, true, t0);
        assert_eq!(tx.deadline(Timer::E), None);
        tx.on_response(response(&req, 200), t0);
        assert_eq!(tx.poll_timeout(), Some(t0));
        tx.on_timer(t0);
        assert!(tx.is_terminated());
    }
}
