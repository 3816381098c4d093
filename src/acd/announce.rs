//! What a waiting caller is told, and when (`docs/behaviour.md`, Announcements): the schedule
//! of one call's announcements, without I/O. The call task asks its queue owner for the call's
//! place when [`Announcer::due`] says so, hands the answer to [`Announcer::on_place`] with the
//! queue's settings (their sentences stay in the configuration; nothing is copied per call), and
//! plays the prompts it returns over the music on hold.

use std::time::Duration;

use tokio::time::Instant;

use crate::acd::queue_task::Place;
use crate::config::model::{Announcements, Periodic, PromptId, WaitBucket};

/// Two announcements to one caller start at least this far apart.
pub(crate) const MIN_GAP: Duration = Duration::from_secs(15);

/// What is due now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Ask the queue owner for the call's place (then [`Announcer::on_place`]).
    pub(crate) ask: bool,
    /// Play the periodic prompt.
    pub(crate) periodic: Option<PromptId>,
}

/// One waiting call's announcement schedule.
#[derive(Debug)]
pub(crate) struct Announcer {
    every: Option<Duration>,
    periodic: Option<Periodic>,
    next_place: Option<Instant>,
    next_periodic: Option<Instant>,
    /// When the last announcement started.
    last_at: Option<Instant>,
    /// The position and wait sentences last said.
    last_said: Option<(Option<PromptId>, Option<PromptId>)>,
}

impl Announcer {
    /// The schedule of a call that entered a queue with these settings at `now`; `None` when
    /// the queue announces nothing.
    pub(crate) fn start(settings: &Announcements, now: Instant) -> Option<Self> {
        if !settings.any() {
            return None;
        }
        Some(Self {
            every: settings.every,
            periodic: settings.periodic,
            next_place: settings.every.map(|_| now),
            next_periodic: settings.periodic.as_ref().map(|p| now + p.every),
            last_at: None,
            last_said: None,
        })
    }

    /// When to call [`Self::due`] next.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        match (self.next_place, self.next_periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn too_soon(&self, now: Instant) -> Option<Instant> {
        let earliest = self.last_at? + MIN_GAP;
        (now < earliest).then_some(earliest)
    }

    /// What is due at `now`. A periodic prompt that would come within [`MIN_GAP`] of the last
    /// announcement waits for the gap.
    pub(crate) fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        if let (Some(at), Some(every)) = (self.next_place, self.every)
            && at <= now
        {
            due.ask = true;
            self.next_place = Some(now + every);
        }
        if let (Some(at), Some(periodic)) = (self.next_periodic, self.periodic)
            && at <= now
        {
            if let Some(earliest) = self.too_soon(now) {
                self.next_periodic = Some(earliest);
            } else {
                due.periodic = Some(periodic.prompt);
                self.next_periodic = Some(now + periodic.every);
                self.last_at = Some(now);
            }
        }
        due
    }

    /// The queue owner's answer, with the settings [`Self::start`] had: the prompts to play
    /// now, in order, or nothing when the call is no longer waiting, when nothing changed since
    /// the last announcement, or when it would come within [`MIN_GAP`] of the last one (it is
    /// asked again when the gap has passed).
    pub(crate) fn on_place(
        &mut self,
        settings: &Announcements,
        place: Option<Place>,
        now: Instant,
    ) -> Vec<PromptId> {
        let Some(place) = place else {
            self.next_place = None;
            return Vec::new();
        };
        let position = settings.position_prompt(place.position);
        let wait = place
            .expected_wait
            .and_then(|w| settings.wait_prompt(WaitBucket::of(w)));
        let said = (position, wait);
        if self.last_said == Some(said) || (position.is_none() && wait.is_none()) {
            return Vec::new();
        }
        if let Some(earliest) = self.too_soon(now) {
            self.next_place = Some(self.next_place.map_or(earliest, |n| n.min(earliest)));
            return Vec::new();
        }
        self.last_said = Some(said);
        self.last_at = Some(now);
        position.into_iter().chain(wait).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(every: u64, periodic: Option<u64>) -> Announcements {
        Announcements {
            every: Some(Duration::from_secs(every)),
            // Positions 1..=3, then "more than 3".
            position: (0..4).map(PromptId).collect(),
            wait: (100..100 + 19).map(PromptId).collect(),
            periodic: periodic.map(|e| Periodic {
                every: Duration::from_secs(e),
                prompt: PromptId(50),
            }),
        }
    }

    fn place(position: u32, wait: Option<u64>) -> Option<Place> {
        Some(Place {
            position,
            expected_wait: wait.map(Duration::from_secs),
        })
    }

    #[test]
    fn nothing_configured_nothing_scheduled() {
        assert!(Announcer::start(&Announcements::default(), Instant::now()).is_none());
    }

    #[test]
    fn on_entry_then_every_interval_and_only_when_changed() {
        let t = Instant::now();
        let s = settings(30, None);
        let mut a = Announcer::start(&s, t).unwrap();
        assert_eq!(a.next_due(), Some(t));
        assert!(a.due(t).ask);
        // Position 3, about 2 minutes: prompt 2 and the 2-minute bucket (index 2).
        assert_eq!(
            a.on_place(&s, place(3, Some(120)), t),
            vec![PromptId(2), PromptId(102)]
        );
        assert_eq!(a.next_due(), Some(t + Duration::from_secs(30)));
        let t30 = t + Duration::from_secs(30);
        assert!(a.due(t30).ask);
        assert!(
            a.on_place(&s, place(3, Some(125)), t30).is_empty(),
            "unchanged"
        );
        let t60 = t + Duration::from_secs(60);
        assert!(a.due(t60).ask);
        assert_eq!(
            a.on_place(&s, place(2, Some(60)), t60),
            vec![PromptId(1), PromptId(101)]
        );
        // Beyond the limit, and no estimate yet: "more than 3", no wait sentence.
        let t90 = t + Duration::from_secs(90);
        a.due(t90);
        assert_eq!(a.on_place(&s, place(7, None), t90), vec![PromptId(3)]);
        // Gone from the queue: no more asking.
        a.due(t + Duration::from_secs(120));
        assert!(
            a.on_place(&s, None, t + Duration::from_secs(120))
                .is_empty()
        );
        assert_eq!(a.next_due(), None);
    }

    #[test]
    fn never_two_announcements_within_fifteen_seconds() {
        let t = Instant::now();
        let s = settings(20, Some(25));
        let mut a = Announcer::start(&s, t).unwrap();
        assert!(a.due(t).ask);
        assert_eq!(a.on_place(&s, place(1, None), t).len(), 1);
        let t20 = t + Duration::from_secs(20);
        assert!(a.due(t20).ask);
        assert_eq!(a.on_place(&s, place(2, None), t20).len(), 1);
        // Periodic due at 25, 5 s after the last one: put off to 35.
        let t25 = t + Duration::from_secs(25);
        assert_eq!(a.due(t25), Due::default());
        assert_eq!(a.next_due(), Some(t + Duration::from_secs(35)));
        let t35 = t + Duration::from_secs(35);
        assert_eq!(a.due(t35).periodic, Some(PromptId(50)));
        // The position round at 40 changed, but is 5 s after the periodic: asked again at 50.
        let t40 = t + Duration::from_secs(40);
        assert!(a.due(t40).ask);
        assert!(a.on_place(&s, place(1, None), t40).is_empty());
        assert_eq!(a.next_due(), Some(t + Duration::from_secs(50)));
        let t50 = t + Duration::from_secs(50);
        assert!(a.due(t50).ask);
        assert_eq!(a.on_place(&s, place(1, None), t50), vec![PromptId(0)]);
    }
}
