//! Reports computed from call records: pure functions over `&[CallRecord]`, so the figures are
//! unit-tested against hand-computed ones (below) and the HTTP layer only fetches and formats.
//!
//! # Definitions
//!
//! Per bucket (a workflow, a queue, or an agent):
//!
//! - **received**: calls in the bucket. For a workflow, every call that reached it; for a queue,
//!   every call that entered it (`queue`); for an agent, every call offered to them at least once.
//! - **offered**: for a workflow or queue, calls offered to at least one agent; for an agent,
//!   the number of offers made to them (one call may ring them twice).
//! - **answered**: calls answered by an agent (for an agent: by that agent).
//! - **abandoned**: calls whose caller hung up before an answer; `abandoned_percent` =
//!   abandoned / received × 100.
//! - **average wait**: mean `wait` (queue entry to answer or leaving) over the bucket's calls
//!   that have one; **average talk**: mean `talk` over answered calls that have one.
//! - **timed out** / **overflowed**: calls the queue's time-out or overflow action moved on.
//! - **announcements**: announcements the bucket's callers heard while waiting (for an agent:
//!   callers of the calls they answered).
//! - **average wrap-up**: mean wrap-up (as set) after answered calls that had one (for an agent:
//!   after the calls they answered).
//! - **service level**: answered within `N` seconds of queue entry / calls that entered a queue,
//!   × 100 (for an agent: of the calls they answered / calls they were offered). `None` when the
//!   denominator is 0.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::metrics::outcome_label;
use crate::store::{CallOutcome, CallRecord};

/// What a summary report is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Workflow,
    Queue,
    Agent,
}

/// One row of a summary report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SummaryRow {
    /// The workflow, queue or agent URI.
    pub key: String,
    pub received: u64,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub abandoned_percent: Option<f64>,
    pub average_wait_seconds: Option<f64>,
    pub average_talk_seconds: Option<f64>,
    pub timed_out: u64,
    pub overflowed: u64,
    pub announcements: u64,
    pub average_wrap_up_seconds: Option<f64>,
    /// Answered within the service-level threshold.
    pub answered_within_threshold: u64,
    pub service_level_percent: Option<f64>,
}

#[derive(Debug, Default)]
struct Acc {
    received: u64,
    offered: u64,
    answered: u64,
    abandoned: u64,
    wait_ms: u128,
    waits: u64,
    talk_ms: u128,
    talks: u64,
    timed_out: u64,
    overflowed: u64,
    within: u64,
    sl_base: u64,
    announcements: u64,
    wrap_up_ms: u128,
    wrap_ups: u64,
}

#[allow(clippy::cast_precision_loss)] // counts and milliseconds far below 2^53
fn ratio(n: u128, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn percent(n: u64, d: u64) -> Option<f64> {
    ratio(u128::from(n) * 100, d).map(round2)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// An agent answered the call (it may have ended when its session timer ran out, or been cut by
/// a crash while talking).
fn answered(r: &CallRecord) -> bool {
    match r.outcome {
        CallOutcome::Answered => true,
        CallOutcome::SessionExpired | CallOutcome::Restarted => r.agent.is_some(),
        _ => false,
    }
}

fn answered_within(r: &CallRecord, threshold: Duration) -> bool {
    answered(r) && r.wait.is_some_and(|w| w <= threshold)
}

impl Acc {
    fn add_call(&mut self, r: &CallRecord, threshold: Duration) {
        self.received += 1;
        self.offered += u64::from(!r.offers.is_empty());
        self.answered += u64::from(answered(r));
        match r.outcome {
            CallOutcome::Abandoned => self.abandoned += 1,
            CallOutcome::QueueTimedOut => self.timed_out += 1,
            CallOutcome::Overflowed => self.overflowed += 1,
            _ => {}
        }
        if let Some(w) = r.wait {
            self.wait_ms += w.as_millis();
            self.waits += 1;
        }
        if answered(r)
            && let Some(t) = r.talk
        {
            self.talk_ms += t.as_millis();
            self.talks += 1;
        }
        self.add_waiting(r);
        if r.queue.is_some() {
            self.sl_base += 1;
            self.within += u64::from(answered_within(r, threshold));
        }
    }

    /// What the caller heard while waiting and the wrap-up after an answered call.
    fn add_waiting(&mut self, r: &CallRecord) {
        self.announcements += u64::from(r.announcements);
        if answered(r)
            && let Some(w) = r.wrap_up
        {
            self.wrap_up_ms += w.as_millis();
            self.wrap_ups += 1;
        }
    }

    fn row(self, key: String) -> SummaryRow {
        SummaryRow {
            key,
            received: self.received,
            offered: self.offered,
            answered: self.answered,
            abandoned: self.abandoned,
            abandoned_percent: percent(self.abandoned, self.received),
            average_wait_seconds: ratio(self.wait_ms, self.waits).map(|ms| round2(ms / 1000.0)),
            average_talk_seconds: ratio(self.talk_ms, self.talks).map(|ms| round2(ms / 1000.0)),
            timed_out: self.timed_out,
            overflowed: self.overflowed,
            announcements: self.announcements,
            average_wrap_up_seconds: ratio(self.wrap_up_ms, self.wrap_ups)
                .map(|ms| round2(ms / 1000.0)),
            answered_within_threshold: self.within,
            service_level_percent: percent(self.within, self.sl_base),
        }
    }
}

/// The summary report of `records`, one row per workflow, queue or agent, sorted by key.
/// `threshold` is the service-level `N`.
#[cfg(test)]
pub fn summarize(records: &[CallRecord], by: GroupBy, threshold: Duration) -> Vec<SummaryRow> {
    let mut summary = Summary::new(by, threshold);
    for r in records {
        summary.add(r);
    }
    summary.rows()
}

/// The summary report built one record at a time, so that a report over a long range reads the
/// records page by page and holds only one accumulator per workflow, queue or agent.
#[derive(Debug)]
pub struct Summary {
    by: GroupBy,
    threshold: Duration,
    acc: BTreeMap<String, Acc>,
}

impl Summary {
    pub fn new(by: GroupBy, threshold: Duration) -> Self {
        Self {
            by,
            threshold,
            acc: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, r: &CallRecord) {
        let threshold = self.threshold;
        match self.by {
            GroupBy::Workflow => self
                .acc
                .entry(r.workflow.clone())
                .or_default()
                .add_call(r, threshold),
            GroupBy::Queue => {
                if let Some(q) = &r.queue {
                    self.acc
                        .entry(q.clone())
                        .or_default()
                        .add_call(r, threshold);
                }
            }
            GroupBy::Agent => add_agent_rows(&mut self.acc, r, threshold),
        }
    }

    /// The rows, sorted by key.
    pub fn rows(self) -> Vec<SummaryRow> {
        self.acc.into_iter().map(|(k, a)| a.row(k)).collect()
    }
}

fn add_agent_rows(acc: &mut BTreeMap<String, Acc>, r: &CallRecord, threshold: Duration) {
    let mut agents: Vec<&str> = r.offers.iter().map(|o| o.agent.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    for agent in agents {
        let a = acc.entry(agent.to_owned()).or_default();
        let answered_by_them = answered(r) && r.agent.as_ref().is_some_and(|x| x.as_str() == agent);
        a.received += 1;
        a.offered += r
            .offers
            .iter()
            .filter(|o| o.agent.as_str() == agent)
            .count() as u64;
        a.sl_base += 1;
        if answered_by_them {
            a.answered += 1;
            if let Some(w) = r.wait {
                a.wait_ms += w.as_millis();
                a.waits += 1;
            }
            if let Some(t) = r.talk {
                a.talk_ms += t.as_millis();
                a.talks += 1;
            }
            a.add_waiting(r);
            a.within += u64::from(answered_within(r, threshold));
        }
        // Abandoned, timed out and overflowed count against every agent the call rang.
        match r.outcome {
            CallOutcome::Abandoned => a.abandoned += 1,
            CallOutcome::QueueTimedOut => a.timed_out += 1,
            CallOutcome::Overflowed => a.overflowed += 1,
            _ => {}
        }
    }
}

/// One line of the call list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallRow {
    pub call_id: String,
    pub caller: String,
    pub workflow: String,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    pub sip_code: Option<u16>,
    pub outcome: &'static str,
}

/// The call list, in arrival order.
pub fn call_list(records: &[CallRecord]) -> Vec<CallRow> {
    records
        .iter()
        .map(|r| CallRow {
            call_id: r.call_id.clone(),
            caller: r.caller.clone(),
            workflow: r.workflow.clone(),
            queue: r.queue.clone(),
            agent: r.agent.as_ref().map(ToString::to_string),
            start: r.arrived_at,
            end: r.ended_at,
            sip_code: r.sip_code,
            outcome: outcome_label(r.outcome),
        })
        .collect()
}

/// Why a CSV export failed (only writing to memory: never in practice).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The CSV writer failed.
    #[error("CSV encoding failed")]
    Csv(#[from] csv::Error),
    /// The CSV writer could not be flushed into its buffer.
    #[error("CSV buffer")]
    Buffer(#[source] std::io::Error),
    /// The output was not UTF-8 (cannot happen: every field is a Rust string).
    #[error("CSV output is not UTF-8")]
    Utf8(#[from] std::string::FromUtf8Error),
}

fn opt<T: ToString>(v: Option<&T>) -> String {
    v.map(ToString::to_string).unwrap_or_default()
}

/// The call list as CSV (header line first, RFC 4180 quoting).
///
/// # Errors
/// [`CsvError`] (never for in-memory output).
pub fn calls_csv(rows: &[CallRow]) -> Result<String, CsvError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "call_id", "caller", "workflow", "queue", "agent", "start", "end", "sip_code", "outcome",
    ])?;
    for r in rows {
        w.write_record([
            r.call_id.clone(),
            r.caller.clone(),
            r.workflow.clone(),
            opt(r.queue.as_ref()),
            opt(r.agent.as_ref()),
            r.start.to_rfc3339(),
            r.end.to_rfc3339(),
            opt(r.sip_code.as_ref()),
            r.outcome.to_owned(),
        ])?;
    }
    Ok(String::from_utf8(
        w.into_inner()
            .map_err(|e| CsvError::Buffer(e.into_error()))?,
    )?)
}

/// A summary report as CSV.
///
/// # Errors
/// [`CsvError`] (never for in-memory output).
pub fn summary_csv(rows: &[SummaryRow]) -> Result<String, CsvError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "key",
        "received",
        "offered",
        "answered",
        "abandoned",
        "abandoned_percent",
        "average_wait_seconds",
        "average_talk_seconds",
        "timed_out",
        "overflowed",
        "announcements",
        "average_wrap_up_seconds",
        "answered_within_threshold",
        "service_level_percent",
    ])?;
    for r in rows {
        w.write_record([
            r.key.clone(),
            r.received.to_string(),
            r.offered.to_string(),
            r.answered.to_string(),
            r.abandoned.to_string(),
            opt(r.abandoned_percent.as_ref()),
            opt(r.average_wait_seconds.as_ref()),
            opt(r.average_talk_seconds.as_ref()),
            r.timed_out.to_string(),
            r.overflowed.to_string(),
            r.announcements.to_string(),
            opt(r.average_wrap_up_seconds.as_ref()),
            r.answered_within_threshold.to_string(),
            opt(r.service_level_percent.as_ref()),
        ])?;
    }
    Ok(String::from_utf8(
        w.into_inner()
            .map_err(|e| CsvError::Buffer(e.into_error()))?,
    )?)
}

/// A known set of call records, shared by the unit tests here and the API tests.
#[doc(hidden)]
pub mod fixture {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use crate::config::model::SipUri;
    use crate::store::{CallOffer, CallOutcome, CallRecord, OfferResult};

    /// 2026-11-26T10:00:00Z plus `s` seconds.
    pub fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_687_200 + s, 0).unwrap_or_default()
    }

    pub fn agent(name: &str) -> SipUri {
        SipUri(format!("sip:{name}@127.0.0.1"))
    }

    fn offer(name: &str, at_s: i64, result: OfferResult) -> CallOffer {
        CallOffer {
            agent: agent(name),
            agent_group: Some("Sales agents".into()),
            offered_at: at(at_s),
            result,
            sip_code: match result {
                OfferResult::Declined => Some(486),
                _ => None,
            },
        }
    }

    #[allow(clippy::too_many_arguments)] // a table row: every column named at the call site
    fn call(
        n: i64,
        workflow: &str,
        queue: Option<&str>,
        outcome: CallOutcome,
        wait_s: Option<u64>,
        talk_s: Option<u64>,
        answered_by: Option<&str>,
        offers: Vec<CallOffer>,
    ) -> CallRecord {
        let arrived = at(n * 100);
        let wait = wait_s.map(Duration::from_secs);
        let talk = talk_s.map(Duration::from_secs);
        let queued = queue.map(|_| arrived + chrono::Duration::seconds(5));
        let answered_at = answered_by
            .and(queued)
            .zip(wait)
            .map(|(q, w)| q + chrono::Duration::from_std(w).unwrap_or_default());
        let ended = arrived
            + chrono::Duration::seconds(5)
            + chrono::Duration::from_std(wait.unwrap_or_default() + talk.unwrap_or_default())
                .unwrap_or_default();
        CallRecord {
            call_id: format!("call-{n}@127.0.0.1"),
            workflow: workflow.into(),
            workflow_uri: SipUri(format!("sip:{}@127.0.0.1", workflow.to_lowercase())),
            caller: format!("sip:+1555000{n:04}@trunk.example"),
            arrived_at: arrived,
            welcome_ended_at: Some(arrived + chrono::Duration::seconds(5)),
            queue: queue.map(str::to_owned),
            queued_at: queued,
            answered_at,
            ended_at: ended,
            outcome,
            agent: answered_by.map(agent),
            agent_group: answered_by.map(|_| "Sales agents".to_owned()),
            transferred_to: match outcome {
                CallOutcome::QueueTimedOut | CallOutcome::Overflowed => {
                    Some("sip:voicemail@127.0.0.1".into())
                }
                _ => None,
            },
            sip_code: match outcome {
                CallOutcome::Rejected => Some(480),
                _ => None,
            },
            wait,
            talk,
            offers,
            announcements: 0,
            wrap_up: None,
        }
    }

    /// Eight calls. Workflow "Sales" (queue "Sales"):
    ///
    /// | # | outcome | wait | talk | agent | offers |
    /// |---|---|---|---|---|---|
    /// | 1 | answered | 10 s | 60 s | alice | alice |
    /// | 2 | answered | 30 s | 120 s | bob | alice (no answer), bob |
    /// | 3 | abandoned | 25 s | – | – | alice (declined 486) |
    /// | 4 | timed out | 90 s | – | – | bob (no answer) |
    /// | 5 | overflowed | 0 s | – | – | none |
    /// | 6 | answered | 20 s | 30 s | alice | alice |
    ///
    /// Workflow "Support": 7 rejected (480, no queue); 8 answered in queue "Support" after 5 s,
    /// talk 45 s, by carol.
    pub fn records() -> Vec<CallRecord> {
        use CallOutcome::*;
        use OfferResult as O;
        vec![
            call(
                1,
                "Sales",
                Some("Sales"),
                Answered,
                Some(10),
                Some(60),
                Some("alice"),
                vec![offer("alice", 115, O::Answered)],
            ),
            call(
                2,
                "Sales",
                Some("Sales"),
                Answered,
                Some(30),
                Some(120),
                Some("bob"),
                vec![
                    offer("alice", 210, O::NoAnswer),
                    offer("bob", 230, O::Answered),
                ],
            ),
            call(
                3,
                "Sales",
                Some("Sales"),
                Abandoned,
                Some(25),
                None,
                None,
                vec![offer("alice", 310, O::Declined)],
            ),
            call(
                4,
                "Sales",
                Some("Sales"),
                QueueTimedOut,
                Some(90),
                None,
                None,
                vec![offer("bob", 410, O::NoAnswer)],
            ),
            call(
                5,
                "Sales",
                Some("Sales"),
                Overflowed,
                Some(0),
                None,
                None,
                vec![],
            ),
            call(
                6,
                "Sales",
                Some("Sales"),
                Answered,
                Some(20),
                Some(30),
                Some("alice"),
                vec![offer("alice", 615, O::Answered)],
            ),
            call(7, "Support", None, Rejected, None, None, None, vec![]),
            call(
                8,
                "Support",
                Some("Support"),
                Answered,
                Some(5),
                Some(45),
                Some("carol"),
                vec![offer("carol", 810, O::Answered)],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(rows: &'a [SummaryRow], key: &str) -> &'a SummaryRow {
        rows.iter().find(|r| r.key == key).unwrap()
    }

    #[test]
    fn announcements_and_wrap_up_by_queue_and_agent() {
        let mut records = fixture::records();
        // Call 1 (alice) heard 2 announcements, wrap-up 30 s; call 2 (bob) 1 and 60 s; call 3
        // (abandoned, rang alice) 4, and no wrap-up; call 6 (alice) none, 10 s.
        let set = |r: &mut CallRecord, n: u32, w: Option<u64>| {
            r.announcements = n;
            r.wrap_up = w.map(Duration::from_secs);
        };
        set(&mut records[0], 2, Some(30));
        set(&mut records[1], 1, Some(60));
        set(&mut records[2], 4, None);
        set(&mut records[5], 0, Some(10));
        let threshold = Duration::from_secs(20);
        let queues = summarize(&records, GroupBy::Queue, threshold);
        let sales = row(&queues, "Sales");
        assert_eq!(sales.announcements, 7);
        assert_eq!(sales.average_wrap_up_seconds, Some(33.33)); // (30 + 60 + 10) / 3
        assert_eq!(row(&queues, "Support").average_wrap_up_seconds, None);
        let agents = summarize(&records, GroupBy::Agent, threshold);
        let alice = row(&agents, "sip:alice@127.0.0.1");
        assert_eq!(alice.announcements, 2, "only the calls she answered");
        assert_eq!(alice.average_wrap_up_seconds, Some(20.0)); // (30 + 10) / 2
        assert_eq!(
            row(&agents, "sip:bob@127.0.0.1").average_wrap_up_seconds,
            Some(60.0)
        );
        let csv = summary_csv(&queues).unwrap();
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .contains("announcements,average_wrap_up_seconds")
        );
    }

    #[test]
    fn per_workflow_figures_match_the_hand_computed_ones() {
        let rows = summarize(
            &fixture::records(),
            GroupBy::Workflow,
            Duration::from_secs(20),
        );
        assert_eq!(rows.len(), 2);
        let sales = row(&rows, "Sales");
        assert_eq!(sales.received, 6);
        assert_eq!(sales.offered, 5); // call 5 overflowed before any offer
        assert_eq!(sales.answered, 3);
        assert_eq!(sales.abandoned, 1);
        assert_eq!(sales.abandoned_percent, Some(16.67)); // 1 / 6
        // waits 10 + 30 + 25 + 90 + 0 + 20 = 175 over 6
        assert_eq!(sales.average_wait_seconds, Some(29.17));
        // talks 60 + 120 + 30 = 210 over 3
        assert_eq!(sales.average_talk_seconds, Some(70.0));
        assert_eq!(sales.timed_out, 1);
        assert_eq!(sales.overflowed, 1);
        // answered within 20 s: calls 1 (10 s) and 6 (20 s, inclusive) of 6 queued
        assert_eq!(sales.answered_within_threshold, 2);
        assert_eq!(sales.service_level_percent, Some(33.33));

        let support = row(&rows, "Support");
        assert_eq!(support.received, 2);
        assert_eq!(support.answered, 1);
        assert_eq!(support.abandoned_percent, Some(0.0));
        assert_eq!(support.average_wait_seconds, Some(5.0));
        assert_eq!(support.service_level_percent, Some(100.0)); // 1 of the 1 queued call
    }

    #[test]
    fn the_threshold_is_a_parameter() {
        let rows = summarize(
            &fixture::records(),
            GroupBy::Workflow,
            Duration::from_secs(30),
        );
        // now call 2 (30 s) counts too
        assert_eq!(row(&rows, "Sales").answered_within_threshold, 3);
        assert_eq!(row(&rows, "Sales").service_level_percent, Some(50.0));
        let rows = summarize(
            &fixture::records(),
            GroupBy::Workflow,
            Duration::from_secs(5),
        );
        assert_eq!(row(&rows, "Sales").service_level_percent, Some(0.0));
    }

    #[test]
    fn per_queue_figures_leave_out_calls_that_never_queued() {
        let rows = summarize(&fixture::records(), GroupBy::Queue, Duration::from_secs(20));
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["Sales", "Support"]
        );
        assert_eq!(row(&rows, "Support").received, 1); // call 7 never queued
        assert_eq!(row(&rows, "Sales").received, 6);
    }

    #[test]
    fn per_agent_figures() {
        let rows = summarize(&fixture::records(), GroupBy::Agent, Duration::from_secs(20));
        let alice = row(&rows, "sip:alice@127.0.0.1");
        // rang on calls 1, 2, 3, 6; answered 1 and 6
        assert_eq!(alice.received, 4);
        assert_eq!(alice.offered, 4);
        assert_eq!(alice.answered, 2);
        assert_eq!(alice.abandoned, 1);
        assert_eq!(alice.abandoned_percent, Some(25.0));
        assert_eq!(alice.average_wait_seconds, Some(15.0)); // (10 + 20) / 2
        assert_eq!(alice.average_talk_seconds, Some(45.0)); // (60 + 30) / 2
        assert_eq!(alice.service_level_percent, Some(50.0)); // 2 within of 4 offered
        let bob = row(&rows, "sip:bob@127.0.0.1");
        assert_eq!((bob.received, bob.answered, bob.timed_out), (2, 1, 1));
        assert_eq!(bob.average_talk_seconds, Some(120.0));
        assert_eq!(bob.service_level_percent, Some(0.0)); // answered after 30 s
        assert_eq!(row(&rows, "sip:carol@127.0.0.1").answered, 1);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn an_empty_range_has_no_rows_and_no_division_by_zero() {
        assert!(summarize(&[], GroupBy::Workflow, Duration::from_secs(20)).is_empty());
        let acc = Acc::default().row("x".into());
        assert_eq!(acc.abandoned_percent, None);
        assert_eq!(acc.service_level_percent, None);
    }

    #[test]
    fn the_call_list_and_its_csv() {
        let rows = call_list(&fixture::records());
        assert_eq!(rows.len(), 8);
        assert_eq!(rows[6].outcome, "rejected");
        assert_eq!(rows[6].sip_code, Some(480));
        let csv = calls_csv(&rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 9);
        assert_eq!(
            lines[0],
            "call_id,caller,workflow,queue,agent,start,end,sip_code,outcome"
        );
        assert_eq!(
            lines[7],
            "call-7@127.0.0.1,sip:+15550000007@trunk.example,Support,,,2026-11-26T10:11:40+00:00,2026-11-26T10:11:45+00:00,480,rejected"
        );
    }

    #[test]
    fn csv_fields_with_commas_and_quotes_are_quoted() {
        let mut rows = call_list(&fixture::records()[..1]);
        rows[0].caller = "\"Smith, J\" <sip:j@x>".into();
        let csv = calls_csv(&rows).unwrap();
        assert!(csv.contains("\"\"\"Smith, J\"\" <sip:j@x>\""), "{csv}");
        let summary = summary_csv(&summarize(
            &fixture::records(),
            GroupBy::Workflow,
            Duration::from_secs(20),
        ))
        .unwrap();
        assert!(
            summary.contains("\nSales,6,5,3,1,16.67,29.17,70,1,1,0,,2,33.33\n"),
            "{summary}"
        );
    }
}
