//! Expected wait, from the queue's recent throughput (`docs/behaviour.md`, Announcements).
//!
//! The model: a caller at position `p` waits about `p` times the time this queue currently
//! takes to move its head forward by one call. That time is measured, not derived: each
//! answered call gives one sample, the time from the later of the previous answer and this
//! call's own entry to its answer (so idle stretches with nobody waiting do not count), and the
//! estimate is the mean of the last [`SAMPLES`] samples no older than [`MAX_AGE`]. It already
//! holds both things that set a queue's pace (how long agents spend per call, and how many of
//! them serve this queue), including agents shared with other queues, which a formula
//! `handle time / staffed agents` counts as fully this queue's. With no recent sample rgsd
//! announces the position only, rather than invent a figure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Answered calls the estimate averages over.
pub const SAMPLES: usize = 10;
/// Samples older than this are dropped: the queue's pace then is not its pace now.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// One queue's recent answers. Owned by the queue owner; no locks.
#[derive(Debug, Default, Clone)]
pub struct WaitEstimator {
    /// (answered at, time it took), oldest first.
    samples: VecDeque<(Instant, Duration)>,
    last_answer: Option<Instant>,
}

impl WaitEstimator {
    /// A call that entered the queue at `entered` was answered at `now`.
    pub fn answered(&mut self, entered: Instant, now: Instant) {
        let from = self.last_answer.map_or(entered, |last| last.max(entered));
        let took = now.saturating_duration_since(from);
        self.last_answer = Some(self.last_answer.map_or(now, |last| last.max(now)));
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, took));
    }

    /// The expected wait of the caller at `position` (1 = next), or `None` without a recent
    /// sample.
    pub fn expected_wait(&mut self, position: u32, now: Instant) -> Option<Duration> {
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > MAX_AGE)
        {
            self.samples.pop_front();
        }
        if self.samples.is_empty() {
            return None;
        }
        let total: Duration = self.samples.iter().map(|(_, d)| *d).sum();
        let n = u32::try_from(self.samples.len()).unwrap_or(u32::MAX);
        Some((total / n).saturating_mul(position.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[test]
    fn no_sample_no_figure() {
        let mut e = WaitEstimator::default();
        assert_eq!(e.expected_wait(3, now()), None);
    }

    #[test]
    fn position_times_the_time_to_move_the_head_on() {
        let t = now();
        let mut e = WaitEstimator::default();
        // Three callers entered at 0; answers at 30, 90, 120: 30, 60, 30 s per step.
        e.answered(t, t + s(30));
        e.answered(t, t + s(90));
        e.answered(t, t + s(120));
        assert_eq!(e.expected_wait(1, t + s(120)), Some(s(40)));
        assert_eq!(e.expected_wait(3, t + s(120)), Some(s(120)));
    }

    #[test]
    fn idle_time_with_nobody_waiting_is_not_counted() {
        let t = now();
        let mut e = WaitEstimator::default();
        e.answered(t, t + s(10));
        // Nobody waited for ten minutes; the next caller entered at 610 and was answered at 640.
        e.answered(t + s(610), t + s(640));
        assert_eq!(e.expected_wait(1, t + s(640)), Some(s(20)));
    }

    #[test]
    fn old_samples_expire_and_the_window_is_bounded() {
        let t = now();
        let mut e = WaitEstimator::default();
        for k in 0..30 {
            e.answered(t, t + s(60 * (k + 1)));
        }
        assert_eq!(e.samples.len(), SAMPLES);
        assert_eq!(e.expected_wait(1, t + s(1800)), Some(s(60)));
        assert_eq!(e.expected_wait(1, t + s(1800) + MAX_AGE + s(1)), None);
    }
}
