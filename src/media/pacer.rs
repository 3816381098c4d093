//! The playback clock shared by every leg: a few pacer tasks send the next 20 ms frame of every
//! playing leg, instead of one timer per leg.
//!
//! ```text
//! leg task ── register(Weak<leg>) ──> Pacer ── round robin ──> shard task (one per runtime worker)
//!                                                               └─ Wheel: 20 buckets of 1 ms
//! ```
//!
//! A shard's [`Wheel`] has one bucket per millisecond of the 20 ms frame period. A leg stays in
//! the bucket it was given for as long as it plays, so it is sent on absolute deadlines (no
//! drift) and legs registered in the same instant are spread over the period instead of all
//! firing together: a new leg goes to the emptiest bucket of the next 20 ms, the earliest of
//! equals, so a lone leg starts at once. Each wake of a shard walks the due buckets and calls
//! [`Paced::tick`] on their legs; a leg that stopped playing says so and leaves the wheel, a leg
//! that was dropped is found dead (the wheel holds only weak references) and leaves too.
//!
//! A shard that wakes late sends the due buckets in order, one bucket per turn, yielding to other
//! tasks between turns (so an overloaded pacer slows down instead of starving signalling); after
//! a stall of more than three periods it starts again from now rather than send a burst.
//!
//! The wheel is plain code over `Instant`s; the shard task around it only sleeps and receives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::codec::FRAME_DURATION;
use super::rtp::MAX_PACKET;

/// The wheel's resolution (tokio's timer resolution).
const SLOT: Duration = Duration::from_millis(1);
/// Buckets per frame period.
const SLOTS: usize = 20;
const SLOTS_U64: u64 = 20;
const _: () = assert!(SLOT.as_nanos() * SLOTS as u128 == FRAME_DURATION.as_nanos());

/// Something the pacer sends a frame for every 20 ms.
pub(crate) trait Paced: Send + Sync + 'static {
    /// Sends the next frame (using `buf` as scratch space); returns `false` when nothing is
    /// playing any more, and the pacer forgets this leg.
    fn tick(&self, now: Instant, buf: &mut [u8; MAX_PACKET]) -> bool;
}

/// Hands playing legs to the shard tasks. The shards are started on the first registration, in
/// the runtime of the caller, one per worker thread.
pub(crate) struct Pacer<T> {
    shards: Mutex<Vec<mpsc::UnboundedSender<Weak<T>>>>,
    next: AtomicUsize,
}

impl<T> std::fmt::Debug for Pacer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shards = self.shards.lock().map_or(0, |s| s.len());
        f.debug_struct("Pacer").field("shards", &shards).finish()
    }
}

impl<T: Paced> Pacer<T> {
    pub(crate) fn new() -> Self {
        Self {
            shards: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// Starts pacing `leg`: its first frame goes out now or within 20 ms, then one every 20 ms
    /// until [`Paced::tick`] returns `false`. Register a leg once per run of playing.
    ///
    /// # Panics
    /// Outside a tokio runtime (the shards are spawned on the first call).
    pub(crate) fn register(&self, leg: Weak<T>) {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        // Never held across an await; a panic cannot happen inside.
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        if shards.is_empty() {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            shards.extend((0..workers.max(1)).map(|_| spawn_shard::<T>()));
        }
        let slot = index % shards.len();
        if let Err(mpsc::error::SendError(leg)) = shards[slot].send(leg) {
            // That shard's runtime has gone (the engine outlived it): start a new one here.
            shards[slot] = spawn_shard::<T>();
            let _ = shards[slot].send(leg);
        }
    }
}

fn spawn_shard<T: Paced>() -> mpsc::UnboundedSender<Weak<T>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_shard(rx));
    tx
}

/// One shard: sleeps until the next bucket with legs in it, or until a leg registers.
async fn run_shard<T: Paced>(mut registrations: mpsc::UnboundedReceiver<Weak<T>>) {
    let mut wheel = Wheel::new(Instant::now());
    let mut buf = [0u8; MAX_PACKET];
    loop {
        let wake = wheel.next_deadline();
        tokio::select! {
            () = crate::util::sleep_until(wake), if wake.is_some() => {
                // One slot at a time; when late, let other tasks (signalling, the legs' own
                // tasks) run between slots rather than hold the worker for a whole period.
                if wheel.run_due(Instant::now(), &mut buf, 1) {
                    tokio::task::yield_now().await;
                }
            }
            leg = registrations.recv() => {
                // The pacer is gone: so are the engine and every leg.
                let Some(leg) = leg else { return };
                let now = Instant::now();
                wheel.add(leg, now, &mut buf);
                // Bounded by what is queued now.
                while let Ok(leg) = registrations.try_recv() {
                    wheel.add(leg, now, &mut buf);
                }
            }
        }
    }
}

/// The bucket of a slot.
fn slot_index(slot: u64) -> usize {
    // The remainder is below SLOTS, so it fits any usize.
    usize::try_from(slot % SLOTS_U64).unwrap_or(0)
}

/// The legs of one shard, by the millisecond of the frame period they are sent in.
struct Wheel<T> {
    /// The start of slot 0.
    base: Instant,
    buckets: [Vec<Weak<T>>; SLOTS],
    /// Every slot before this one has been run.
    done_until: u64,
}

impl<T: Paced> Wheel<T> {
    fn new(base: Instant) -> Self {
        Self {
            base,
            buckets: std::array::from_fn(|_| Vec::new()),
            done_until: 0,
        }
    }

    /// The slot `now` falls in.
    fn slot_of(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.base).as_nanos() / SLOT.as_nanos();
        u64::try_from(elapsed).unwrap_or(u64::MAX)
    }

    fn start_of(&self, slot: u64) -> Instant {
        let nanos = u64::try_from(SLOT.as_nanos()).unwrap_or(u64::MAX);
        self.base + Duration::from_nanos(slot.saturating_mul(nanos))
    }

    fn bucket(&mut self, slot: u64) -> &mut Vec<Weak<T>> {
        &mut self.buckets[slot_index(slot)]
    }

    /// When the next slot with legs in it starts; `None` when the wheel is empty.
    fn next_deadline(&self) -> Option<Instant> {
        (self.done_until..self.done_until + SLOTS_U64)
            .find(|&s| !self.buckets[slot_index(s)].is_empty())
            .map(|s| self.start_of(s))
    }

    /// Runs the slots due at `now`, in order, at most `max_slots` of them with legs in them;
    /// returns whether more such slots are due.
    fn run_due(&mut self, now: Instant, buf: &mut [u8; MAX_PACKET], max_slots: u64) -> bool {
        let now_slot = self.slot_of(now);
        if now_slot < self.done_until {
            return false;
        }
        if now_slot - self.done_until >= 3 * SLOTS_U64 {
            // A long stall: the frames due meanwhile are skipped, not sent in a burst.
            self.done_until = now_slot + 1 - SLOTS_U64;
        }
        let mut run = 0;
        while self.done_until <= now_slot && run < max_slots {
            let bucket = self.bucket(self.done_until);
            if !bucket.is_empty() {
                bucket.retain(|leg| leg.upgrade().is_some_and(|leg| leg.tick(now, buf)));
                run += 1;
            }
            self.done_until += 1;
        }
        // More is due only if a bucket with legs in it is left.
        (self.done_until..=now_slot).any(|s| !self.buckets[slot_index(s)].is_empty())
    }

    /// Places a leg in the emptiest bucket of the next frame period (the earliest of equals); in
    /// the current slot, which has run already, its first frame goes out at once.
    fn add(&mut self, leg: Weak<T>, now: Instant, buf: &mut [u8; MAX_PACKET]) {
        let now_slot = self.slot_of(now);
        let slot = (now_slot..now_slot + SLOTS_U64)
            .min_by_key(|&s| (self.buckets[slot_index(s)].len(), s))
            .unwrap_or(now_slot);
        if slot < self.done_until {
            let playing = leg.upgrade().is_some_and(|l| l.tick(now, buf));
            if !playing {
                return;
            }
        }
        self.bucket(slot).push(leg);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Records when it was ticked; plays for `frames` ticks.
    struct Probe {
        frames: usize,
        ticks: Mutex<Vec<Instant>>,
    }

    impl Probe {
        fn new(frames: usize) -> Arc<Self> {
            Arc::new(Self {
                frames,
                ticks: Mutex::new(Vec::new()),
            })
        }
        fn ticks(&self) -> Vec<Instant> {
            self.ticks.lock().unwrap().clone()
        }
    }

    impl Paced for Probe {
        fn tick(&self, now: Instant, _buf: &mut [u8; MAX_PACKET]) -> bool {
            let mut ticks = self.ticks.lock().unwrap();
            if ticks.len() >= self.frames {
                return false;
            }
            ticks.push(now);
            true
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_lone_leg_starts_at_once_and_keeps_a_20_ms_cadence() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let mut buf = [0u8; MAX_PACKET];
        let probe = Probe::new(3);
        let at = t0 + Duration::from_micros(7_400);
        wheel.run_due(at, &mut buf, u64::MAX);
        wheel.add(Arc::downgrade(&probe), at, &mut buf);
        assert_eq!(probe.ticks(), vec![at], "the first frame goes out at once");
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(27)));
        for step in [ms(27), ms(47)] {
            wheel.run_due(t0 + step, &mut buf, u64::MAX);
        }
        assert_eq!(probe.ticks(), vec![at, t0 + ms(27), t0 + ms(47)]);
        // The fourth tick says it is done: the leg leaves the wheel.
        wheel.run_due(t0 + ms(67), &mut buf, u64::MAX);
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn legs_registered_together_are_spread_over_the_period() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let mut buf = [0u8; MAX_PACKET];
        let probes: Vec<_> = (0..100).map(|_| Probe::new(usize::MAX)).collect();
        wheel.run_due(t0, &mut buf, u64::MAX);
        for p in &probes {
            wheel.add(Arc::downgrade(p), t0, &mut buf);
        }
        assert!(wheel.buckets.iter().all(|b| b.len() == 5), "5 legs per ms");
        for ms_step in 1..40 {
            wheel.run_due(t0 + ms(ms_step), &mut buf, u64::MAX);
        }
        for p in &probes {
            let ticks = p.ticks();
            assert_eq!(ticks.len(), 2, "one frame per period");
            assert_eq!(ticks[1] - ticks[0], FRAME_DURATION);
        }
        // At most 5 legs share any millisecond.
        let mut per_ms = std::collections::HashMap::new();
        for t in probes.iter().flat_map(|p| p.ticks()) {
            *per_ms.entry(t).or_insert(0) += 1;
        }
        assert!(per_ms.values().all(|&n| n <= 5), "{per_ms:?}");
    }

    #[test]
    fn dropped_legs_leave_and_a_late_wake_sends_each_leg_once() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let mut buf = [0u8; MAX_PACKET];
        let kept = Probe::new(usize::MAX);
        let dropped = Probe::new(usize::MAX);
        wheel.run_due(t0, &mut buf, u64::MAX);
        wheel.add(Arc::downgrade(&kept), t0, &mut buf);
        wheel.add(Arc::downgrade(&dropped), t0, &mut buf);
        drop(dropped);
        // 15 ms late for the second period: one frame each, not two.
        wheel.run_due(t0 + ms(35), &mut buf, u64::MAX);
        assert_eq!(kept.ticks().len(), 2);
        assert_eq!(wheel.len(), 1, "the dropped leg is gone");
        // A stall of 200 ms: one frame, not ten.
        wheel.run_due(t0 + ms(235), &mut buf, u64::MAX);
        assert_eq!(kept.ticks().len(), 3);
        // And the cadence continues from the same slot.
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(240)));
    }

    #[test]
    fn a_limited_run_says_more_is_due() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let mut buf = [0u8; MAX_PACKET];
        let probes: Vec<_> = (0..3).map(|_| Probe::new(usize::MAX)).collect();
        for p in &probes {
            wheel.add(Arc::downgrade(p), t0, &mut buf);
        }
        // Slots 0, 1 and 2 are due at 2 ms: one per run.
        assert!(wheel.run_due(t0 + ms(2), &mut buf, 1));
        assert_eq!(probes.iter().map(|p| p.ticks().len()).sum::<usize>(), 1);
        assert!(wheel.run_due(t0 + ms(2), &mut buf, 1));
        assert!(!wheel.run_due(t0 + ms(2), &mut buf, 1));
        assert!(probes.iter().all(|p| p.ticks().len() == 1));
        assert!(!wheel.run_due(t0 + ms(2), &mut buf, 1), "nothing left");
    }

    #[tokio::test(start_paused = true)]
    async fn the_shard_task_paces_registered_legs() {
        let pacer = Pacer::new();
        let probes: Vec<_> = (0..4).map(|_| Probe::new(5)).collect();
        let start = Instant::now();
        for p in &probes {
            pacer.register(Arc::downgrade(p));
        }
        tokio::time::sleep(ms(200)).await;
        for p in &probes {
            let ticks = p.ticks();
            assert_eq!(ticks.len(), 5);
            assert!(ticks[0] - start < FRAME_DURATION);
            for pair in ticks.windows(2) {
                assert_eq!(pair[1] - pair[0], FRAME_DURATION);
            }
        }
        let firsts: std::collections::HashSet<_> = probes.iter().map(|p| p.ticks()[0]).collect();
        assert_eq!(firsts.len(), 4, "spread over four milliseconds");
    }
}
