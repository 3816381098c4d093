//! The one place that reads the wall clock.
//!
//! Monotonic time (timers, alert times, queue time-outs, RTP pacing) comes from
//! `tokio::time::Instant`, which tests freeze and advance with `tokio::time::pause()`.
//! Wall time (business hours, holidays, call records) comes from a [`Clock`], so that a test can
//! put a call on Christmas Day or across a daylight-saving change without waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_utc(&self) -> DateTime<Utc>;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one allowed reader of the wall clock
    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. For tests.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            micros: AtomicI64::new(at.timestamp_micros()),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.store(at.timestamp_micros(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 12, 25, 9, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now_utc(), start);
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.now_utc(), start + chrono::Duration::seconds(90));
        clock.set(start);
        assert_eq!(clock.now_utc(), start);
    }
}
