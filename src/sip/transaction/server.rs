//! The non-INVITE server transaction (RFC 3261 §17.2.2).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Action;
use super::timer::{Armed, TIMEOUT_64T1, Timer};
use crate::sip::message::Response;

/// Where a non-INVITE server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerNonInviteState {
    /// The user has the request; retransmits are absorbed silently.
    Trying,
    /// A provisional was sent; retransmits get it again.
    Proceeding,
    /// A final was sent; retransmits get it again until timer J.
    Completed,
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    armed: Armed,
    last: Option<Bytes>,
}

impl ServerNonInvite {
    pub(crate) fn new(reliable: bool) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            reliable,
            armed: Armed::default(),
            last: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> ServerNonInviteState {
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
        self.state == ServerNonInviteState::Terminated
    }

    /// Sends a response from the user; ignored after a final.
    pub(crate) fn respond(&mut self, response: &Response, now: Instant) -> Vec<Action> {
        use ServerNonInviteState::*;
        if matches!(self.state, Completed | Terminated) {
            return Vec::new();
        }
        let wire = response.to_bytes();
        if response.status < 200 {
            self.state = Proceeding;
        } else {
            self.state = Completed;
            let j = if self.reliable {
                Duration::ZERO
            } else {
                TIMEOUT_64T1
            };
            self.armed.arm(Timer::J, now + j);
        }
        self.last = Some(wire.clone());
        vec![Action::Send(wire)]
    }

    /// The request was retransmitted.
    pub(crate) fn on_retransmit(&self) -> Vec<Action> {
        match self.state {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                self.last.clone().map(Action::Send).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        while let Some(timer) = self.armed.pop_due(now) {
            if timer == Timer::J {
                self.state = ServerNonInviteState::Terminated;
                self.armed.clear();
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::{request, response};

    #[test]
    fn absorbs_in_trying_and_replays_final_until_timer_j() {
        let t0 = Instant::now();
        let req = request("OPTIONS");
        let mut tx = ServerNonInvite::new(false);
        assert!(tx.on_retransmit().is_empty());
        tx.respond(&response(&req, 200), t0);
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        assert_eq!(tx.deadline(Timer::J), Some(t0 + Duration::from_secs(32)));
        assert_eq!(tx.on_retransmit().len(), 1);
        assert!(tx.respond(&response(&req, 500), t0).is_empty());
        tx.on_timer(t0 + Duration::from_secs(31));
        assert!(!tx.is_terminated());
        tx.on_timer(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_terminates_at_once() {
        let t0 = Instant::now();
        let req = request("BYE");
        let mut tx = ServerNonInvite::new(true);
        tx.respond(&response(&req, 200), t0);
        assert_eq!(tx.deadline(Timer::J), Some(t0));
    }
}
