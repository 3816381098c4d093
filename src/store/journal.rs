//! [`CallJournal`]: a file that lets the next start record the calls a crash cut, and the
//! records the crash caught before they reached the database (`docs/architecture.md`, Call
//! journal).
//!
//! ```text
//! call task ── in_progress(record so far) ─┐            (one line each, appended with one
//!           ── ended(final record) ────────┤ journal     write(2) under a mutex: a kill -9
//! writer task ─ written(records) ──────────┘ (JSON lines) loses none of them)
//! ```
//!
//! Each line is one call's state, keyed by the call's identity in the store (Call-ID and arrival
//! time): the record as it stands while the call is in progress, or the final record once the
//! call ended. The journal keeps in memory the last line of every call the database does not hold
//! yet, and forgets a call when the record writer reports its record written. When the file has
//! grown well past what it still has to hold, it is rewritten with only those lines (a new file
//! renamed over the old one).
//!
//! At the next start ([`CallJournal::open`]), every call still in the file becomes a record
//! again: an ended call's final record as it was, an in-progress call's record marked
//! [`CallOutcome::Restarted`] and ended at the time of the file's last write (the moment the
//! process stopped, to within its last call event). Writing a record twice stores it once, so a
//! record the database already held when the crash came costs nothing.
//!
//! A write to the page cache survives the process being killed; it does not survive the machine
//! losing power before the kernel writes it back, and the journal does not `fsync` each line
//! (that would cost a disk flush per call event). A rewrite does `fsync` the new file before the
//! rename, so a power cut never leaves a half-written journal in place of a whole one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::records::{CallOffer, CallOutcome, CallRecord, OfferResult};
use crate::config::model::SipUri;

/// The file is rewritten once it exceeds this size and four times what it still has to hold.
const COMPACT_AT: u64 = 8 << 20;

/// A call's identity in the store (`unique (call_id, arrived_at)`).
type Key = (String, i64);

fn key_of(record: &CallRecord) -> Key {
    (record.call_id.clone(), record.arrived_at.timestamp_millis())
}

/// What [`CallJournal::open`] found from the previous run.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every record to write again: the calls the previous run cut (outcome
    /// [`CallOutcome::Restarted`]) and the ended calls whose records it may not have written.
    pub records: Vec<CallRecord>,
    /// How many of `records` were cut (in progress when the previous run stopped).
    pub cut: usize,
    /// Lines that could not be read (a torn last line after a power cut), skipped.
    pub unreadable: usize,
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("call journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The journal of calls whose records the database does not hold yet. Shared by the call tasks
/// and the record writer.
pub struct CallJournal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CallJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    file: File,
    /// Size of the file.
    bytes: u64,
    /// The last line of every call not yet written to the database.
    live: HashMap<Key, Vec<u8>>,
    /// Sum of the lengths of `live`'s lines.
    live_bytes: u64,
    /// Whether a write failed since the last success (logged once per run of failures).
    failing: bool,
}

impl CallJournal {
    /// Opens the journal at `path` (created when absent), reading what the previous run left.
    /// The records recovered are already in the journal again (as ended calls), so a crash
    /// before they are written loses nothing either; the caller submits them to the writer.
    ///
    /// `now` is used as the stop time when the file's modification time cannot be read.
    ///
    /// # Errors
    /// The file or its folder cannot be read, created or written.
    pub fn open(path: &Path, now: DateTime<Utc>) -> Result<(CallJournal, Recovered), JournalError> {
        let err = |source| JournalError {
            path: path.to_owned(),
            source,
        };
        let mut recovered = Recovered::default();
        let mut last: HashMap<Key, Entry> = HashMap::new();
        let mut order: Vec<Key> = Vec::new();
        match File::open(path) {
            Ok(file) => {
                let stopped_at: DateTime<Utc> = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .map_or(now, DateTime::<Utc>::from);
                for line in BufReader::new(file).split(b'\n') {
                    let line = line.map_err(err)?;
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Entry>(&line) {
                        Ok(Entry::Written { calls }) => {
                            for key in calls {
                                last.remove(&key);
                            }
                        }
                        Ok(entry @ (Entry::InProgress { .. } | Entry::Ended { .. })) => {
                            let (Entry::InProgress { record } | Entry::Ended { record }) = &entry
                            else {
                                continue;
                            };
                            let key = (record.call_id.clone(), record.arrived_at);
                            if last.insert(key.clone(), entry).is_none() {
                                order.push(key);
                            }
                        }
                        Err(_) => recovered.unreadable += 1,
                    }
                }
                for key in order {
                    let (cut, record) = match last.remove(&key) {
                        Some(Entry::InProgress { record }) => (true, record),
                        Some(Entry::Ended { record }) => (false, record),
                        Some(Entry::Written { .. }) | None => continue,
                    };
                    let Some(mut record) = record.into_record() else {
                        recovered.unreadable += 1;
                        continue;
                    };
                    if cut {
                        cut_at(&mut record, stopped_at);
                        recovered.cut += 1;
                    }
                    recovered.records.push(record);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        // Start a fresh file holding only what is recovered, then put it in place.
        let mut live = HashMap::new();
        let mut text = Vec::new();
        let mut live_bytes = 0;
        for record in &recovered.records {
            let line = encode(State::Ended, record);
            text.extend_from_slice(&line);
            live_bytes += line.len() as u64;
            live.insert(key_of(record), line);
        }
        let file = replace(path, &text).map_err(err)?;
        let journal = CallJournal {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                file,
                bytes: text.len() as u64,
                live,
                live_bytes,
                failing: false,
            }),
        };
        Ok((journal, recovered))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A call in progress, as far as it got (its record so far; the outcome is ignored).
    pub fn in_progress(&self, record: &CallRecord) {
        self.append(key_of(record), encode(State::InProgress, record));
    }

    /// A call ended with this record, which the writer now has.
    pub fn ended(&self, record: &CallRecord) {
        self.append(key_of(record), encode(State::Ended, record));
    }

    /// These records are in the database (or were refused by it for good): forget them.
    /// One line for all of them, so a batch of records costs one write.
    pub fn written<'a>(&self, records: impl IntoIterator<Item = &'a CallRecord>) {
        let mut inner = self.lock();
        let mut calls = Vec::new();
        for record in records {
            let key = key_of(record);
            if let Some(line) = inner.live.remove(&key) {
                inner.live_bytes -= line.len() as u64;
                calls.push(key);
            }
        }
        if calls.is_empty() {
            return;
        }
        let mut line = serde_json::to_vec(&Entry::Written { calls }).unwrap_or_default();
        line.push(b'\n');
        self.write_line(&mut inner, &line);
        self.compact_if_due(&mut inner);
    }

    /// Calls not yet in the database (in progress, or ended with the record still to write).
    pub fn pending(&self) -> usize {
        self.lock().live.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map and file consistent line by line.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, key: Key, line: Vec<u8>) {
        let mut inner = self.lock();
        self.write_line(&mut inner, &line);
        inner.live_bytes += line.len() as u64;
        if let Some(old) = inner.live.insert(key, line) {
            inner.live_bytes -= old.len() as u64;
        }
        self.compact_if_due(&mut inner);
    }

    fn write_line(&self, inner: &mut Inner, line: &[u8]) {
        match inner.file.write_all(line) {
            Ok(()) => {
                if inner.failing {
                    inner.failing = false;
                    tracing::info!(path = %self.path.display(), "call journal writable again");
                }
                inner.bytes += line.len() as u64;
            }
            Err(e) => {
                if !inner.failing {
                    inner.failing = true;
                    tracing::error!(path = %self.path.display(), error = %e,
                        "cannot write the call journal; a crash now would lose calls in progress");
                }
            }
        }
    }

    fn compact_if_due(&self, inner: &mut Inner) {
        if inner.bytes < COMPACT_AT || inner.bytes < inner.live_bytes.saturating_mul(4) {
            return;
        }
        let mut text = Vec::with_capacity(usize::try_from(inner.live_bytes).unwrap_or(0));
        for line in inner.live.values() {
            text.extend_from_slice(line);
        }
        match replace(&self.path, &text) {
            Ok(file) => {
                inner.file = file;
                inner.bytes = text.len() as u64;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot rewrite the call journal");
                // Try again after as much growth again, not on every line.
                inner.bytes = text.len() as u64;
            }
        }
    }
}

/// Writes `text` to a new file beside `path`, flushes it to disk and renames it over `path`;
/// returns the file opened for appending.
fn replace(path: &Path, text: &[u8]) -> std::io::Result<File> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).open(path)
}

/// Marks a record of a call in progress as cut by a stop at `at`.
fn cut_at(record: &mut CallRecord, at: DateTime<Utc>) {
    let ended = at.max(record.arrived_at);
    record.ended_at = ended;
    record.outcome = CallOutcome::Restarted;
    let since = |t: DateTime<Utc>| (ended - t).to_std().unwrap_or(Duration::ZERO);
    match record.answered_at {
        Some(answered) => record.talk = Some(since(answered)),
        None => {
            if let Some(queued) = record.queued_at {
                record.wait = Some(since(queued));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InProgress,
    Ended,
}

/// One line of the file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    /// A call in progress, as far as it got.
    InProgress { record: JRecord },
    /// A call that ended, with its final record.
    Ended { record: JRecord },
    /// These calls' records are in the database (Call-ID, arrival in milliseconds).
    Written { calls: Vec<Key> },
}

fn encode(state: State, record: &CallRecord) -> Vec<u8> {
    let record = JRecord::from(record);
    let line = match state {
        State::InProgress => Entry::InProgress { record },
        State::Ended => Entry::Ended { record },
    };
    // Serialising plain strings and numbers cannot fail.
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A [`CallRecord`] as a journal line holds it: times in milliseconds since the epoch, like the
/// database.
#[derive(Serialize, Deserialize)]
struct JRecord {
    call_id: String,
    workflow: String,
    workflow_uri: String,
    caller: String,
    arrived_at: i64,
    welcome_ended_at: Option<i64>,
    queue: Option<String>,
    queued_at: Option<i64>,
    answered_at: Option<i64>,
    ended_at: i64,
    outcome: String,
    agent: Option<String>,
    agent_group: Option<String>,
    transferred_to: Option<String>,
    sip_code: Option<u16>,
    wait_ms: Option<u64>,
    talk_ms: Option<u64>,
    offers: Vec<JOffer>,
    announcements: u32,
    wrap_up_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct JOffer {
    agent: String,
    agent_group: Option<String>,
    offered_at: i64,
    result: String,
    sip_code: Option<u16>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn time(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

impl From<&CallRecord> for JRecord {
    fn from(r: &CallRecord) -> Self {
        JRecord {
            call_id: r.call_id.clone(),
            workflow: r.workflow.clone(),
            workflow_uri: r.workflow_uri.0.clone(),
            caller: r.caller.clone(),
            arrived_at: r.arrived_at.timestamp_millis(),
            welcome_ended_at: r.welcome_ended_at.map(|t| t.timestamp_millis()),
            queue: r.queue.clone(),
            queued_at: r.queued_at.map(|t| t.timestamp_millis()),
            answered_at: r.answered_at.map(|t| t.timestamp_millis()),
            ended_at: r.ended_at.timestamp_millis(),
            outcome: r.outcome.as_str().to_owned(),
            agent: r.agent.as_ref().map(|a| a.0.clone()),
            agent_group: r.agent_group.clone(),
            transferred_to: r.transferred_to.clone(),
            sip_code: r.sip_code,
            wait_ms: r.wait.map(ms),
            talk_ms: r.talk.map(ms),
            offers: r
                .offers
                .iter()
                .map(|o| JOffer {
                    agent: o.agent.0.clone(),
                    agent_group: o.agent_group.clone(),
                    offered_at: o.offered_at.timestamp_millis(),
                    result: o.result.as_str().to_owned(),
                    sip_code: o.sip_code,
                })
                .collect(),
            announcements: r.announcements,
            wrap_up_ms: r.wrap_up.map(ms),
        }
    }
}

impl JRecord {
    /// The record, or `None` when a field does not parse (a file edited by hand).
    fn into_record(self) -> Option<CallRecord> {
        let offers = self
            .offers
            .into_iter()
            .map(|o| {
                Some(CallOffer {
                    agent: SipUri(o.agent),
                    agent_group: o.agent_group,
                    offered_at: time(o.offered_at)?,
                    result: OfferResult::parse(&o.result).ok()?,
                    sip_code: o.sip_code,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CallRecord {
            call_id: self.call_id,
            workflow: self.workflow,
            workflow_uri: SipUri(self.workflow_uri),
            caller: self.caller,
            arrived_at: time(self.arrived_at)?,
            welcome_ended_at: self.welcome_ended_at.map(time).unwrap_or(None),
            queue: self.queue,
            queued_at: self.queued_at.map(time).unwrap_or(None),
            answered_at: self.answered_at.map(time).unwrap_or(None),
            ended_at: time(self.ended_at)?,
            outcome: CallOutcome::parse(&self.outcome).ok()?,
            agent: self.agent.map(SipUri),
            agent_group: self.agent_group,
            transferred_to: self.transferred_to,
            sip_code: self.sip_code,
            wait: self.wait_ms.map(Duration::from_millis),
            talk: self.talk_ms.map(Duration::from_millis),
            offers,
            announcements: self.announcements,
            wrap_up: self.wrap_up_ms.map(Duration::from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods, clippy::unwrap_used)] // tests: a real clock and unwraps
    use super::*;

    fn record(id: &str, answered: bool) -> CallRecord {
        let at = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        CallRecord {
            call_id: id.to_owned(),
            workflow: "Sales line".into(),
            workflow_uri: SipUri("sip:sales@example.com".into()),
            caller: "<sip:c@example.com>;tag=1".into(),
            arrived_at: at,
            welcome_ended_at: Some(at + chrono::Duration::seconds(2)),
            queue: Some("Sales".into()),
            queued_at: Some(at + chrono::Duration::seconds(2)),
            answered_at: answered.then(|| at + chrono::Duration::seconds(5)),
            ended_at: at + chrono::Duration::seconds(9),
            outcome: if answered {
                CallOutcome::Answered
            } else {
                CallOutcome::Abandoned
            },
            agent: answered.then(|| SipUri("sip:alice@example.com".into())),
            agent_group: answered.then(|| "Sales agents".into()),
            transferred_to: None,
            sip_code: Some(200),
            wait: Some(Duration::from_secs(3)),
            talk: answered.then(|| Duration::from_secs(4)),
            offers: vec![CallOffer {
                agent: SipUri("sip:alice@example.com".into()),
                agent_group: Some("Sales agents".into()),
                offered_at: at + chrono::Duration::seconds(3),
                result: if answered {
                    OfferResult::Answered
                } else {
                    OfferResult::Cancelled
                },
                sip_code: answered.then_some(200),
            }],
            announcements: 2,
            wrap_up: Some(Duration::from_secs(30)),
        }
    }

    #[test]
    fn a_record_survives_the_line_format_unchanged() {
        let r = record("a", true);
        let line = encode(State::Ended, &r);
        let Entry::Ended { record } = serde_json::from_slice(&line).unwrap() else {
            panic!("not an ended call: {}", String::from_utf8_lossy(&line));
        };
        assert_eq!(record.into_record().unwrap(), r);
    }

    #[test]
    fn the_next_open_recovers_cut_calls_and_unwritten_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.journal");
        {
            let (journal, recovered) = CallJournal::open(&path, Utc::now()).unwrap();
            assert!(recovered.records.is_empty());
            // Cut while talking: progress lines, no end.
            let mut cut = record("cut", true);
            cut.outcome = CallOutcome::Failed;
            journal.in_progress(&cut);
            // Ended and written: forgotten.
            let done = record("done", true);
            journal.in_progress(&done);
            journal.ended(&done);
            journal.written([&done]);
            // Ended, not yet written.
            let late = record("late", false);
            journal.in_progress(&late);
            journal.ended(&late);
            assert_eq!(journal.pending(), 2);
            // Dropped without shutdown, as kill -9 would.
        }
        let (journal, recovered) = CallJournal::open(&path, Utc::now()).unwrap();
        assert_eq!(recovered.cut, 1);
        assert_eq!(recovered.unreadable, 0);
        let ids: Vec<_> = recovered
            .records
            .iter()
            .map(|r| r.call_id.as_str())
            .collect();
        assert_eq!(ids, ["cut", "late"]);
        let cut = &recovered.records[0];
        assert_eq!(cut.outcome, CallOutcome::Restarted);
        assert!(cut.ended_at >= cut.arrived_at);
        assert_eq!(
            cut.talk,
            (cut.ended_at - cut.answered_at.unwrap()).to_std().ok()
        );
        assert_eq!(recovered.records[1], record("late", false));
        // Recovered records stay in the journal until written.
        assert_eq!(journal.pending(), 2);
        drop(journal);
        let (journal, again) = CallJournal::open(&path, Utc::now()).unwrap();
        assert_eq!(again.records.len(), 2);
        assert_eq!(again.cut, 0, "recovered records are ended calls now");
        journal.written(&again.records);
        drop(journal);
        let (_, empty) = CallJournal::open(&path, Utc::now()).unwrap();
        assert!(empty.records.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_rest_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.journal");
        let mut text = encode(State::Ended, &record("whole", true));
        text.extend_from_slice(&encode(State::Ended, &record("torn", true))[..40]);
        std::fs::write(&path, text).unwrap();
        let (_, recovered) = CallJournal::open(&path, Utc::now()).unwrap();
        assert_eq!(recovered.unreadable, 1);
        assert_eq!(recovered.records.len(), 1);
        assert_eq!(recovered.records[0].call_id, "whole");
    }

    #[test]
    fn the_file_is_rewritten_once_mostly_forgotten_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.journal");
        let (journal, _) = CallJournal::open(&path, Utc::now()).unwrap();
        let keep = record("keep", false);
        journal.in_progress(&keep);
        let mut biggest = 0;
        for i in 0..40_000 {
            let r = record(&format!("call-{i}"), true);
            journal.in_progress(&r);
            journal.ended(&r);
            journal.written([&r]);
            biggest = biggest.max(std::fs::metadata(&path).unwrap().len());
        }
        // 40,000 calls wrote about 50 MiB of lines; the file never held much more than the
        // threshold.
        assert!(
            biggest <= COMPACT_AT + 4096,
            "journal grew to {biggest} bytes"
        );
        drop(journal);
        let (_, recovered) = CallJournal::open(&path, Utc::now()).unwrap();
        let ids: Vec<_> = recovered
            .records
            .iter()
            .map(|r| r.call_id.as_str())
            .collect();
        assert_eq!(ids, ["keep"]);
        assert_eq!(recovered.cut, 1);
    }
}
