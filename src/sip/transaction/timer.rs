//! RFC 3261 timer values (§17, Table 4) and the small set of armed timers a transaction holds.

use std::time::Duration;

use tokio::time::Instant;

/// Round-trip estimate.
pub(crate) const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests and INVITE responses.
pub(crate) const T2: Duration = Duration::from_secs(4);
/// Longest time a message stays in the network.
pub(crate) const T4: Duration = Duration::from_secs(5);
/// 64·T1: transaction timeouts (B, F, H, J) and the 2xx-without-ACK give-up.
pub(crate) const TIMEOUT_64T1: Duration = Duration::from_secs(32);
/// Timer D on unreliable transports (at least 32 s).
pub(crate) const TIMER_D: Duration = Duration::from_secs(32);

/// The timers named by RFC 3261 §17 and RFC 6026, plus the UAS core's 2xx retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Timer {
    /// INVITE client: request retransmit (unreliable).
    A,
    /// INVITE client: transaction timeout.
    B,
    /// INVITE client: wait for response retransmits after a non-2xx.
    D,
    /// Non-INVITE client: request retransmit (unreliable).
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: final non-2xx response retransmit (unreliable).
    G,
    /// INVITE server: wait for ACK.
    H,
    /// INVITE server: wait for ACK retransmits.
    I,
    /// Non-INVITE server: wait for request retransmits.
    J,
    /// Non-INVITE client: wait for response retransmits.
    K,
    /// INVITE server (RFC 6026): keep absorbing INVITE retransmits after a 2xx.
    L,
    /// INVITE client (RFC 6026): keep accepting 2xx retransmits.
    M,
    /// UAS core (§13.3.1.4): 2xx retransmit, T1 doubling to T2.
    Retransmit2xx,
    /// UAS core (§13.3.1.4): give up waiting for the ACK of a 2xx after 64·T1.
    AckWait,
    /// INVITE client (§9.1): no final response 64·T1 after CANCEL: consider it cancelled.
    CancelGuard,
}

/// The timers a transaction has armed, each with its deadline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Armed(Vec<(Timer, Instant)>);

impl Armed {
    /// Arms `timer` at `at`, replacing an earlier deadline of the same timer.
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        self.disarm(timer);
        self.0.push((timer, at));
    }

    pub(crate) fn disarm(&mut self, timer: Timer) {
        self.0.retain(|(t, _)| *t != timer);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The deadline of `timer`, if armed.
    #[cfg(test)]
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.0.iter().find(|(t, _)| *t == timer).map(|(_, at)| *at)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().map(|(_, at)| *at).min()
    }

    /// Removes and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.0.swap_remove(i).0)
    }
}
