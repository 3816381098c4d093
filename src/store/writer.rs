//! [`RecordWriter`]: takes call records off the routing hot path and writes them, surviving
//! database outages.
//!
//! ```text
//! call tasks ── submit() (try_send, never waits) ──▶ bounded channel ──▶ writer task
//!                                                                         │ VecDeque buffer
//!                                                                         ▼ (≤ max_buffered)
//!                                        Store::record_calls: what is waiting (≤ batch), in order
//! ```
//!
//! The writer task always keeps draining the channel into its own buffer, also while a write is
//! in flight or waiting to be retried, so the channel only fills if the task itself is starved.
//! A write that fails for a transient reason (database unreachable, refusing connections, busy,
//! out of resources; see [`StoreError::is_transient`]) is retried with exponential back-off, and the buffer is written
//! in arrival order once the database answers again. Each write takes what is waiting, up to
//! `batch` records, in one transaction, once `max_delay` (50 ms) has passed since the first of
//! them arrived or since the last write: a few records when calls are few, a hundred or more
//! under load or after an outage (a transaction per record costs about as much to the database
//! thread as a whole batch of multi-row inserts). A batch
//! that fails permanently is written again one record at a time, and the record the database
//! refuses is logged and dropped so that it cannot block the ones behind it.
//!
//! A record is lost only when the buffer is full (`max_buffered`), when the channel is full, or
//! when [`RecordWriter::shutdown`]'s grace period ends with the database still down. Every loss
//! is counted ([`WriterStats::dropped`]) and logged at error level. With a [`CallJournal`]
//! ([`RecordWriter::spawn_journaled`], as the daemon runs it) even those records are only lost
//! to this run: the journal keeps every record until the writer reports it written, and the next
//! start writes it again.
//!
//! Retries are safe: writing a record twice stores it once (see [`super::records`]).
//!
//! The lag is watched from outside with two figures ([`RecordWriter::stats`], served on
//! `/metrics` as `rgsd_record_writer_pending` and `rgsd_record_write_lag_seconds`): how many
//! records are waiting, and how long the oldest of them has waited since it was submitted. Each
//! record travels with the time of its submission; the task publishes the submission time of
//! the front of its buffer (the oldest record not yet written) whenever that front changes. A
//! record still in the channel is counted in `pending` but not in the age until the task has
//! taken it, which it does continuously, also during an outage.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::journal::CallJournal;
use super::records::CallRecord;
use super::{Store, StoreError};

/// Sizes and back-off of a [`RecordWriter`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Capacity of the channel between `submit` and the writer task.
    pub channel_capacity: usize,
    /// Most records kept in memory while the database is unreachable. At roughly 1 KiB a record,
    /// the default (100,000) bounds the memory at about 100 MiB.
    pub max_buffered: usize,
    /// Wait before the first retry of a failed write.
    pub initial_backoff: Duration,
    /// Longest wait between retries (the back-off doubles up to this).
    pub max_backoff: Duration,
    /// Most records written in one transaction ([`Store::record_calls`]). The writer takes what
    /// is waiting, up to this.
    pub batch: usize,
    /// Longest a record waits for others to share its transaction: a write starts when `batch`
    /// records are waiting, or `max_delay` after the first of them arrived (or after the last
    /// write ended), or at shutdown. Records reach the database this much later; under load a
    /// transaction then carries many records instead of one or two.
    pub max_delay: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            channel_capacity: 4096,
            max_buffered: 100_000,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            batch: 512,
            max_delay: Duration::from_millis(50),
        }
    }
}

/// Whether the writer can currently reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStatus {
    /// The last write succeeded (or none was needed yet).
    Healthy,
    /// Writes are failing; records are kept and retried.
    Retrying {
        /// Consecutive failed attempts in this outage.
        failures: u64,
    },
}

/// Counters of a [`RecordWriter`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records submitted and not yet written nor dropped (the writer's lag).
    pub pending: u64,
    /// How long the oldest record waiting has waited since it was submitted (zero when none
    /// waits).
    pub oldest_wait: Duration,
    /// Records written.
    pub written: u64,
    /// Records lost: buffer or channel full, or still unwritten when shutdown gave up.
    pub dropped: u64,
    /// Records the database refused permanently (logged, then dropped).
    pub rejected: u64,
    /// Failed write attempts, all outages together.
    pub failed_attempts: u64,
}

/// Why [`RecordWriter::submit`] could not take a record. The record is counted as dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The channel to the writer task is full: the task is not keeping up.
    #[error("call record writer is overloaded")]
    Full,
    /// The writer has shut down.
    #[error("call record writer has shut down")]
    ShutDown,
}

/// What the submitting side and the task share.
struct Shared {
    pending: AtomicU64,
    /// The time everything below is measured from (tokio's clock, so paused-time tests see it).
    epoch: Instant,
    /// Submission time of the oldest record in the task's buffer, in nanoseconds after `epoch`
    /// plus one; 0 when the buffer is empty. Written only by the task.
    oldest_submitted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    failed_attempts: AtomicU64,
    /// Sent on every change of the task's state, so that waiters (health checks, tests) wake.
    status: watch::Sender<WriterStatus>,
    /// `shutdown` sends the deadline for the final flush through it. Taken once.
    stop: Mutex<Option<oneshot::Sender<Instant>>>,
    /// The writer task. Taken once, by `shutdown`.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// `at` as stored in `oldest_submitted` (never 0).
    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Publishes the submission time of the buffer's front (`None`: the buffer is empty).
    fn set_oldest(&self, front: Option<Instant>) {
        let v = front.map_or(0, |at| self.stamp(at));
        self.oldest_submitted.store(v, Ordering::Relaxed);
    }

    /// How long the oldest buffered record has waited, at `now`.
    fn oldest_wait(&self, now: Instant) -> Duration {
        match self.oldest_submitted.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            v => now
                .saturating_duration_since(self.epoch)
                .saturating_sub(Duration::from_nanos(v - 1)),
        }
    }

    /// Counts `n` records as lost, logging at error level when the total crosses a power of two
    /// (1, 2, 4, …) so that a long overflow does not flood the log.
    fn drop_records(&self, n: u64, why: &str) {
        if n == 0 {
            return;
        }
        self.pending.fetch_sub(n, Ordering::Relaxed);
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before == 0 || (before.ilog2() != after.ilog2()) {
            tracing::error!(dropped_total = after, why, "call records lost");
        }
    }
}

/// A cheap, cloneable handle to the call-record writer task.
#[derive(Clone)]
pub struct RecordWriter {
    tx: mpsc::Sender<Submitted>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A record and when it was submitted (for the writer's lag).
type Submitted = (Instant, CallRecord);

/// A write in flight: how many records from the buffer's front it covers, and its result.
type WriteFuture = Pin<Box<dyn Future<Output = (usize, Result<(), StoreError>)> + Send>>;

impl RecordWriter {
    /// Starts the writer task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn spawn(store: Store, options: WriterOptions) -> RecordWriter {
        Self::start(store, options, None)
    }

    /// As [`RecordWriter::spawn`], and tells `journal` of every record written (or refused by
    /// the database for good), so that it keeps only what the database does not hold yet.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn spawn_journaled(
        store: Store,
        options: WriterOptions,
        journal: Arc<CallJournal>,
    ) -> RecordWriter {
        Self::start(store, options, Some(journal))
    }

    fn start(store: Store, options: WriterOptions, journal: Option<Arc<CallJournal>>) -> Self {
        let (tx, rx) = mpsc::channel(options.channel_capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            pending: AtomicU64::new(0),
            epoch: Instant::now(),
            oldest_submitted: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            status: watch::Sender::new(WriterStatus::Healthy),
            stop: Mutex::new(Some(stop_tx)),
            task: Mutex::new(None),
        });
        let task = Task {
            store,
            journal,
            options,
            rx,
            stop: stop_rx,
            shared: shared.clone(),
        };
        let handle = tokio::spawn(task.run());
        // A poisoned lock only means another thread panicked while holding it; the Option
        // inside is still meaningful, so take the guard either way.
        *shared.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        RecordWriter { tx, shared }
    }

    /// Queues a record for writing. Never waits: on the routing path.
    ///
    /// # Errors
    /// [`SubmitError`]; the record is then counted as dropped.
    pub fn submit(&self, record: CallRecord) -> Result<(), SubmitError> {
        // Count first, so the task can never uncount a record before it was counted.
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send((Instant::now(), record)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.drop_records(1, "writer channel full");
                Err(SubmitError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.drop_records(1, "writer shut down");
                Err(SubmitError::ShutDown)
            }
        }
    }

    /// Records submitted and not yet written nor dropped.
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn stats(&self) -> WriterStats {
        let s = &self.shared;
        let pending = s.pending.load(Ordering::Relaxed);
        WriterStats {
            pending,
            // A record written between the two loads may leave a stale front for a moment;
            // with nothing pending there is no lag to report.
            oldest_wait: if pending == 0 {
                Duration::ZERO
            } else {
                s.oldest_wait(Instant::now())
            },
            written: s.written.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            failed_attempts: s.failed_attempts.load(Ordering::Relaxed),
        }
    }

    /// Whether the database is currently reachable, as far as the writer knows.
    pub fn status(&self) -> WriterStatus {
        *self.shared.status.borrow()
    }

    /// A receiver that sees every change of the writer's state (each write, failure, drop),
    /// for health checks that want to wait rather than poll.
    pub fn subscribe(&self) -> watch::Receiver<WriterStatus> {
        self.shared.status.subscribe()
    }

    /// Stops taking records and writes what is left, retrying for at most `grace`; then counts
    /// whatever is still unwritten as dropped. Returns the final counters. Calling it again
    /// returns the counters at once.
    pub async fn shutdown(&self, grace: Duration) -> WriterStats {
        let stop = self
            .shared
            .stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(stop) = stop {
            // An error means the task has already ended; nothing to tell it.
            let _ = stop.send(Instant::now() + grace);
        }
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "call record writer task failed");
        }
        self.stats()
    }

    /// Waits until `done` holds for the counters. For tests.
    #[cfg(test)]
    async fn wait_until(&self, done: impl Fn(&WriterStats) -> bool) {
        let mut rx = self.subscribe();
        loop {
            if done(&self.stats()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The writer task's state.
struct Task {
    store: Store,
    journal: Option<Arc<CallJournal>>,
    options: WriterOptions,
    rx: mpsc::Receiver<Submitted>,
    stop: oneshot::Receiver<Instant>,
    shared: Arc<Shared>,
}

impl Task {
    async fn run(mut self) {
        let mut buffer: VecDeque<Submitted> = VecDeque::new();
        let mut in_flight: Option<WriteFuture> = None;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = self.options.initial_backoff;
        let mut failures: u64 = 0;
        // Set when `shutdown` asked: stop waiting for records at this time.
        let mut deadline: Option<Instant> = None;
        let mut channel_done = false;
        // Whether `stop` has completed (a completed oneshot must not be polled again).
        let mut stop_seen = false;
        // Records left to write one at a time after a batch was refused.
        let mut singles: usize = 0;
        // When the records waiting are written even if fewer than a batch: `max_delay` after
        // the first one arrived at an idle writer, or after the last write ended.
        let mut gather_until: Option<Instant> = None;
        // The wait for `gather_until` in progress.
        let mut gather: Option<Instant> = None;
        loop {
            if in_flight.is_none() && retry_at.is_none() {
                if buffer.is_empty() {
                    if channel_done {
                        break;
                    }
                } else if let Some(due) = gather_until.filter(|&due| {
                    buffer.len() < self.options.batch
                        && singles == 0
                        && failures == 0
                        && deadline.is_none()
                        && !channel_done
                        && Instant::now() < due
                }) {
                    // Let a batch gather (shutdown and a full batch end the wait).
                    gather = Some(due);
                } else {
                    gather = None;
                    gather_until = None;
                    // Everything waiting, up to a batch; one at a time while looking for a
                    // record the database refused.
                    let n = if singles > 0 {
                        1
                    } else {
                        buffer.len().min(self.options.batch)
                    };
                    let batch: Vec<CallRecord> =
                        buffer.iter().take(n).map(|(_, r)| r.clone()).collect();
                    let store = self.store.clone();
                    in_flight = Some(Box::pin(async move {
                        let result = if let [record] = batch.as_slice() {
                            store.record_call(record).await.map(|_| ())
                        } else {
                            store.record_calls(&batch).await
                        };
                        (batch.len(), result)
                    }));
                }
            }
            tokio::select! {
                // Shutdown first, then the finished write, so that results are not starved by
                // a busy channel.
                biased;
                at = &mut self.stop, if !stop_seen => {
                    stop_seen = true;
                    // `Err`: the sender was dropped without a shutdown; flush without a deadline.
                    if let Ok(at) = at {
                        deadline = Some(at);
                    }
                    // No new records; those already in the channel are still received.
                    self.rx.close();
                }
                () = crate::util::sleep_until(deadline) => {
                    let left = buffer.len() as u64 + drain_count(&mut self.rx);
                    if left > 0 {
                        tracing::error!(left, "shutdown grace period over with call records unwritten");
                        self.shared.drop_records(left, "shutdown while the database was unreachable");
                    }
                    self.shared.set_oldest(None);
                    break;
                }
                (n, result) = poll_opt(&mut in_flight) => {
                    in_flight = None;
                    gather_until = Some(Instant::now() + self.options.max_delay);
                    match result {
                        Ok(()) => {
                            if let Some(journal) = &self.journal {
                                journal.written(buffer.iter().take(n).map(|(_, r)| r));
                            }
                            buffer.drain(..n);
                            self.shared.set_oldest(buffer.front().map(|(at, _)| *at));
                            singles = singles.saturating_sub(n);
                            self.shared.pending.fetch_sub(n as u64, Ordering::Relaxed);
                            self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
                            if failures > 0 {
                                tracing::info!(failures, buffered = buffer.len(), "database reachable again; writing buffered call records");
                                failures = 0;
                                backoff = self.options.initial_backoff;
                            }
                            self.shared.status.send_replace(WriterStatus::Healthy);
                        }
                        Err(e) if e.is_transient() => {
                            failures += 1;
                            self.shared.failed_attempts.fetch_add(1, Ordering::Relaxed);
                            if failures == 1 {
                                tracing::warn!(error = %e, buffered = buffer.len(), "cannot write call records; keeping them and retrying");
                            } else {
                                tracing::debug!(error = %e, failures, "call record write failed again");
                            }
                            retry_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(self.options.max_backoff);
                            self.shared.status.send_replace(WriterStatus::Retrying { failures });
                        }
                        Err(e) if n > 1 => {
                            // Some record of the batch is refused; write these one at a time
                            // so that only that one is dropped.
                            tracing::debug!(error = %e, records = n, "call record batch refused; writing it one by one");
                            singles = n;
                        }
                        Err(e) => {
                            singles = singles.saturating_sub(1);
                            let rejected = buffer.pop_front();
                            if let (Some(journal), Some((_, r))) = (&self.journal, &rejected) {
                                journal.written([r]);
                            }
                            self.shared.set_oldest(buffer.front().map(|(at, _)| *at));
                            tracing::error!(
                                error = %e,
                                call_id = rejected.as_ref().map(|(_, r)| r.call_id.as_str()),
                                "database refused a call record; dropping it"
                            );
                            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                            self.shared.status.send_modify(|_| {});
                        }
                    }
                }
                () = crate::util::sleep_until(retry_at) => {
                    retry_at = None;
                }
                () = crate::util::sleep_until(gather) => {
                    gather = None;
                }
                record = self.rx.recv(), if !channel_done => {
                    match record {
                        Some(record) if buffer.len() < self.options.max_buffered => {
                            if buffer.is_empty() {
                                if in_flight.is_none() && retry_at.is_none() {
                                    gather_until = Some(Instant::now() + self.options.max_delay);
                                }
                                self.shared.set_oldest(Some(record.0));
                            }
                            buffer.push_back(record);
                        }
                        Some(_) => self.shared.drop_records(1, "writer buffer full"),
                        None => channel_done = true,
                    }
                    self.shared.status.send_modify(|_| {});
                }
            }
        }
        self.shared.status.send_modify(|_| {});
    }
}

/// Awaits the write in flight, or forever when there is none.
async fn poll_opt(write: &mut Option<WriteFuture>) -> (usize, Result<(), StoreError>) {
    match write {
        Some(write) => write.await,
        None => std::future::pending().await,
    }
}

/// Empties a closed channel, returning how many records were still in it.
fn drain_count(rx: &mut mpsc::Receiver<Submitted>) -> u64 {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{DatabaseUrl, SipUri};
    use crate::store::{CallOutcome, ConnectOptions};
    use chrono::{DateTime, Utc};
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    /// Upper bound for anything a test waits on; reached only when the code under test is broken.
    const LIMIT: Duration = Duration::from_secs(20);

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_795_000_000_000 + ms).unwrap()
    }

    fn record(i: i64) -> CallRecord {
        CallRecord {
            call_id: format!("call-{i}@127.0.0.1"),
            workflow: "Sales".into(),
            workflow_uri: SipUri("sip:sales@127.0.0.1".into()),
            caller: format!("sip:caller{i}@127.0.0.1"),
            arrived_at: at(i * 1000),
            welcome_ended_at: None,
            queue: Some("Sales queue".into()),
            queued_at: Some(at(i * 1000 + 10)),
            answered_at: None,
            ended_at: at(i * 1000 + 500),
            outcome: CallOutcome::Abandoned,
            agent: None,
            agent_group: None,
            transferred_to: None,
            sip_code: Some(487),
            wait: Some(Duration::from_millis(490)),
            talk: None,
            offers: vec![],
            announcements: 0,
            wrap_up: None,
        }
    }

    /// A migrated SQLite store that gives up at once on a locked database, and a second,
    /// independent connection to the same file that can hold the write lock: a real outage,
    /// as another process holding the database would cause.
    async fn store_and_locker() -> (tempfile::TempDir, Store, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.db");
        let options = ConnectOptions {
            busy_timeout: Duration::ZERO,
            ..ConnectOptions::default()
        };
        let store = Store::connect_with(&DatabaseUrl::Sqlite(path.clone()), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let locker = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(Duration::ZERO),
        )
        .await
        .unwrap();
        (dir, store, locker)
    }

    fn fast_retries() -> WriterOptions {
        WriterOptions {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..WriterOptions::default()
        }
    }

    #[tokio::test]
    async fn records_survive_an_outage_and_are_written_in_order_when_the_database_is_back() {
        let (_dir, store, mut locker) = store_and_locker().await;
        sqlx::query("begin exclusive")
            .execute(&mut locker)
            .await
            .unwrap();

        let writer = RecordWriter::spawn(store.clone(), fast_retries());
        let sent: Vec<CallRecord> = (0..50).map(record).collect();
        for r in &sent {
            writer.submit(r.clone()).unwrap();
        }
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.failed_attempts >= 3))
            .await
            .expect("the writer never retried");
        assert!(matches!(writer.status(), WriterStatus::Retrying { .. }));
        let during = writer.stats();
        assert_eq!((during.written, during.pending, during.dropped), (0, 50, 0));

        // The database comes back.
        sqlx::query("commit").execute(&mut locker).await.unwrap();
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.pending == 0))
            .await
            .expect("the buffer was never flushed");
        assert_eq!(writer.status(), WriterStatus::Healthy);
        let stats = writer.shutdown(LIMIT).await;
        assert_eq!(
            (stats.written, stats.dropped, stats.rejected, stats.pending),
            (50, 0, 0, 0)
        );
        let stored = store
            .call_records_between(at(-1), at(1_000_000))
            .await
            .unwrap();
        assert_eq!(stored, sent);
    }

    #[tokio::test]
    async fn the_lag_is_the_wait_of_the_oldest_unwritten_record_and_drains_with_the_buffer() {
        let (_dir, store, mut locker) = store_and_locker().await;
        sqlx::query("begin exclusive")
            .execute(&mut locker)
            .await
            .unwrap();
        let writer = RecordWriter::spawn(store.clone(), fast_retries());
        assert_eq!(writer.stats().oldest_wait, Duration::ZERO);
        let first = Instant::now();
        writer.submit(record(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        writer.submit(record(1)).unwrap();
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.failed_attempts >= 2))
            .await
            .expect("the writer never retried");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let during = writer.stats();
        let since_first = first.elapsed();
        assert_eq!(during.pending, 2);
        // The first record's wait, not the second's (about 150 ms less).
        assert!(
            during.oldest_wait >= Duration::from_millis(300) && during.oldest_wait <= since_first,
            "oldest_wait {:?}, first submitted {since_first:?} ago",
            during.oldest_wait
        );
        // It keeps growing while the outage lasts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(writer.stats().oldest_wait >= during.oldest_wait + Duration::from_millis(50));

        sqlx::query("commit").execute(&mut locker).await.unwrap();
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.pending == 0))
            .await
            .expect("the buffer was never flushed");
        assert_eq!(writer.stats().oldest_wait, Duration::ZERO);
        // A record submitted later is measured from its own submission.
        writer.submit(record(2)).unwrap();
        assert!(writer.stats().oldest_wait < Duration::from_millis(300));
        writer.shutdown(LIMIT).await;
    }

    #[tokio::test]
    async fn a_refused_record_in_a_batch_costs_only_itself() {
        let (_dir, store, mut locker) = store_and_locker().await;
        // The database refuses one record for its data (a constraint), permanently.
        sqlx::query(
            "create trigger refuse_call_3 before insert on call_record
             when new.call_id = 'call-3@127.0.0.1'
             begin select raise(abort, 'refused'); end",
        )
        .execute(&mut locker)
        .await
        .unwrap();
        // Held back while the records arrive, so that they are written as one batch.
        sqlx::query("begin exclusive")
            .execute(&mut locker)
            .await
            .unwrap();
        let writer = RecordWriter::spawn(store.clone(), fast_retries());
        for i in 0..10 {
            writer.submit(record(i)).unwrap();
        }
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.failed_attempts >= 1))
            .await
            .expect("the writer never tried");
        sqlx::query("commit").execute(&mut locker).await.unwrap();
        let stats = writer.shutdown(LIMIT).await;
        assert_eq!(
            (stats.written, stats.rejected, stats.dropped, stats.pending),
            (9, 1, 0, 0)
        );
        let stored = store
            .call_records_between(at(-1), at(1_000_000))
            .await
            .unwrap();
        let expected: Vec<CallRecord> = (0..10).filter(|&i| i != 3).map(record).collect();
        assert_eq!(stored, expected);
    }

    #[tokio::test]
    async fn records_waiting_together_are_written_in_one_batch() {
        let (_dir, store, mut locker) = store_and_locker().await;
        sqlx::query("begin exclusive")
            .execute(&mut locker)
            .await
            .unwrap();
        let writer = RecordWriter::spawn(
            store.clone(),
            WriterOptions {
                batch: 4,
                ..fast_retries()
            },
        );
        for i in 0..10 {
            writer.submit(record(i)).unwrap();
        }
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.failed_attempts >= 1))
            .await
            .expect("the writer never tried");
        sqlx::query("commit").execute(&mut locker).await.unwrap();
        // `written` moves once per committed transaction: by the batch size, then the rest.
        let mut steps = Vec::new();
        let mut rx = writer.subscribe();
        let mut last = 0;
        while last < 10 {
            tokio::time::timeout(LIMIT, rx.changed())
                .await
                .unwrap()
                .unwrap();
            let now = writer.stats().written;
            if now != last {
                steps.push(now - last);
                last = now;
            }
        }
        assert_eq!(steps, vec![4, 4, 2]);
        writer.shutdown(LIMIT).await;
    }

    #[tokio::test]
    async fn records_wait_for_a_batch_up_to_max_delay_and_shutdown_writes_them_at_once() {
        let (_dir, store, _locker) = store_and_locker().await;
        let writer = RecordWriter::spawn(
            store.clone(),
            WriterOptions {
                batch: 5,
                max_delay: Duration::from_secs(3600),
                ..fast_retries()
            },
        );
        for i in 0..3 {
            writer.submit(record(i)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(writer.stats().written, 0, "written before a batch gathered");
        for i in 3..7 {
            writer.submit(record(i)).unwrap();
        }
        // Five make a batch, written without waiting; two are left to gather.
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.written == 5))
            .await
            .expect("a full batch was not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(writer.stats().written, 5);
        let stats = tokio::time::timeout(LIMIT, writer.shutdown(LIMIT))
            .await
            .expect("shutdown waited for max_delay");
        assert_eq!((stats.written, stats.pending, stats.dropped), (7, 0, 0));
        let stored = store
            .call_records_between(at(-1), at(1_000_000))
            .await
            .unwrap();
        assert_eq!(stored, (0..7).map(record).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_the_overflow() {
        let (_dir, store, mut locker) = store_and_locker().await;
        sqlx::query("begin exclusive")
            .execute(&mut locker)
            .await
            .unwrap();
        let writer = RecordWriter::spawn(
            store.clone(),
            WriterOptions {
                max_buffered: 3,
                ..fast_retries()
            },
        );
        for i in 0..10 {
            writer.submit(record(i)).unwrap();
        }
        tokio::time::timeout(LIMIT, writer.wait_until(|s| s.dropped == 7))
            .await
            .expect("overflow not counted");
        sqlx::query("commit").execute(&mut locker).await.unwrap();
        let stats = writer.shutdown(LIMIT).await;
        assert_eq!((stats.written, stats.dropped, stats.pending), (3, 7, 0));
        let stored = store
            .call_records_between(at(-1), at(1_000_000))
            .await
            .unwrap();
        assert_eq!(stored, (0..3).map(record).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn shutdown_with_the_database_down_gives_up_after_the_grace_period_and_counts_the_loss() {
        let (_dir, store, mut locker) = store_and_locker().await;
        sqlx::query("begin exclusive")
            .execute(&mut locker)
            .await
            .unwrap();
        let writer = RecordWriter::spawn(store, fast_retries());
        for i in 0..5 {
            writer.submit(record(i)).unwrap();
        }
        let stats = tokio::time::timeout(LIMIT, writer.shutdown(Duration::from_millis(50)))
            .await
            .expect("shutdown did not honour its grace period");
        assert_eq!((stats.written, stats.dropped, stats.pending), (0, 5, 0));
        assert_eq!(writer.submit(record(9)), Err(SubmitError::ShutDown));
        assert_eq!(writer.stats().dropped, 6);
        sqlx::query("rollback").execute(&mut locker).await.unwrap();
    }

    #[tokio::test]
    async fn a_record_written_twice_is_stored_once() {
        let (_dir, store, _locker) = store_and_locker().await;
        let writer = RecordWriter::spawn(store.clone(), fast_retries());
        writer.submit(record(1)).unwrap();
        writer.submit(record(1)).unwrap();
        let stats = writer.shutdown(LIMIT).await;
        assert_eq!((stats.written, stats.dropped), (2, 0));
        let stored = store
            .call_records_between(at(-1), at(1_000_000))
            .await
            .unwrap();
        assert_eq!(stored, vec![record(1)]);
    }
}
