//! Prometheus metrics: [`Metrics`], the counters other layers bump, and [`render`], the text
//! exposition format served at `/metrics`.
//!
//! Written by hand rather than with `prometheus-client`: every counter here has a label set fixed
//! at compile time (an enum), so each is a plain `AtomicU64` in an array indexed by the enum —
//! one relaxed `fetch_add` on the hot path, no map, no lock; and the gauges (queue sizes, agent
//! states) are read from the live snapshot at scrape time, which a registry would need a custom
//! collector for. The call-record writer's figures and the SIP endpoint's transaction counts are
//! read from their own atomics at scrape time too ([`Metrics::attach_writer`],
//! [`Metrics::attach_sip_transactions`]), and so are the media legs' RTP packet counts
//! ([`Metrics::attach_rtp_packets`]; the legs count in batches, see `media::leg::COUNT_BATCH`).
//! What is left is the text format itself: `# HELP`,
//! `# TYPE` and one `name{labels} value` line per series, with label values escaped (tested
//! below).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::snapshot::LiveSnapshot;
use crate::store::{CallOutcome, RecordWriter, WriterStats};

/// Every call outcome, in the order of the `calls` array.
const OUTCOMES: [CallOutcome; 12] = [
    CallOutcome::Answered,
    CallOutcome::Abandoned,
    CallOutcome::QueueTimedOut,
    CallOutcome::Overflowed,
    CallOutcome::OutOfHours,
    CallOutcome::Holiday,
    CallOutcome::Forwarded,
    CallOutcome::Disconnected,
    CallOutcome::Rejected,
    CallOutcome::Failed,
    CallOutcome::SessionExpired,
    CallOutcome::Restarted,
];

/// The label value of an outcome (same spelling as the call records).
pub(super) fn outcome_label(o: CallOutcome) -> &'static str {
    match o {
        CallOutcome::Answered => "answered",
        CallOutcome::Abandoned => "abandoned",
        CallOutcome::QueueTimedOut => "queue_timed_out",
        CallOutcome::Overflowed => "overflowed",
        CallOutcome::OutOfHours => "out_of_hours",
        CallOutcome::Holiday => "holiday",
        CallOutcome::Forwarded => "forwarded",
        CallOutcome::Disconnected => "disconnected",
        CallOutcome::Rejected => "rejected",
        CallOutcome::Failed => "failed",
        CallOutcome::SessionExpired => "session_expired",
        CallOutcome::Restarted => "restarted",
    }
}

fn outcome_index(o: CallOutcome) -> usize {
    match o {
        CallOutcome::Answered => 0,
        CallOutcome::Abandoned => 1,
        CallOutcome::QueueTimedOut => 2,
        CallOutcome::Overflowed => 3,
        CallOutcome::OutOfHours => 4,
        CallOutcome::Holiday => 5,
        CallOutcome::Forwarded => 6,
        CallOutcome::Disconnected => 7,
        CallOutcome::Rejected => 8,
        CallOutcome::Failed => 9,
        CallOutcome::SessionExpired => 10,
        CallOutcome::Restarted => 11,
    }
}

/// Upper bounds (seconds) of the queue-wait histogram buckets; `+Inf` follows.
pub(super) const WAIT_BUCKETS: [u64; 9] = [1, 5, 10, 20, 30, 60, 120, 300, 600];

/// Counters and histograms bumped by the other layers; each update is one relaxed atomic add.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: [AtomicU64; OUTCOMES.len()],
    /// Cumulative counts per bucket of [`WAIT_BUCKETS`] (non-cumulative here, summed at render).
    wait_buckets: [AtomicU64; 10],
    wait_count: AtomicU64,
    wait_sum_ms: AtomicU64,
    /// Announcements to waiting callers: position, expected wait, periodic prompt.
    announcements: [AtomicU64; 3],
    /// The call-record writer, once the daemon has started one: the database write lag
    /// (records not yet written) and its counters are read from it at scrape time.
    writer: std::sync::OnceLock<RecordWriter>,
    /// The SIP endpoint's own transaction counts (server, client), read at scrape time: the
    /// only source of `rgsd_sip_transactions_total` (0 until attached).
    sip_source: std::sync::OnceLock<CountSource>,
    /// The media engine's packet counts (received, sent), read at scrape time: the only source
    /// of `rgsd_rtp_packets_total` (0 until attached).
    rtp_source: std::sync::OnceLock<CountSource>,
    /// The media engine's count of SRTP packets refused (authentication or replay), read at
    /// scrape time: the only source of `rgsd_srtp_auth_failures_total` (0 until attached).
    srtp_failures_source: std::sync::OnceLock<CountSource>,
}

/// Reads another layer's counters at scrape time: (server or received, client or sent).
/// A closure, so this module needs no type of that layer.
struct CountSource(Box<dyn Fn() -> (u64, u64) + Send + Sync>);

impl std::fmt::Debug for CountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountSource")
    }
}

impl Metrics {
    /// A call ended with `outcome`.
    pub fn call_ended(&self, outcome: CallOutcome) {
        self.calls[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// A waiting caller was told their position and/or expected wait, or (neither) the
    /// periodic prompt.
    pub fn announced(&self, position: bool, wait: bool) {
        let kinds = [position, wait, !position && !wait];
        for (counter, said) in self.announcements.iter().zip(kinds) {
            if said {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A call left a queue (answered, abandoned, moved on) after waiting `wait`.
    pub fn observe_wait(&self, wait: Duration) {
        let secs = wait.as_secs_f64();
        let i = WAIT_BUCKETS
            .iter()
            .position(|&b| secs <= b as f64)
            .unwrap_or(WAIT_BUCKETS.len());
        self.wait_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.wait_count.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.wait_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The call-record writer's state and records waiting, once one is attached.
    pub fn writer_health(&self) -> Option<(crate::store::WriterStatus, u64)> {
        self.writer.get().map(|w| (w.status(), w.pending()))
    }

    /// Reports the call-record writer's figures from now on (the daemon calls this once, when
    /// it spawns the writer). A second call is ignored.
    pub fn attach_writer(&self, writer: RecordWriter) {
        let _ = self.writer.set(writer);
    }

    /// Adds `read()` = (server, client) transactions to `rgsd_sip_transactions_total` at each
    /// scrape (the daemon hands over the SIP endpoint's counts once). A second call is ignored.
    pub fn attach_sip_transactions(&self, read: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
        let _ = self.sip_source.set(CountSource(Box::new(read)));
    }

    /// Adds `read()` = (received, sent) RTP packets to `rgsd_rtp_packets_total` at each scrape
    /// (the daemon hands over the media engine's counts once). A second call is ignored.
    pub fn attach_rtp_packets(&self, read: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
        let _ = self.rtp_source.set(CountSource(Box::new(read)));
    }

    /// Reports `read()` as `rgsd_srtp_auth_failures_total` at each scrape (the daemon hands
    /// over the media engine's count once). A second call is ignored.
    pub fn attach_srtp_auth_failures(&self, read: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self
            .srtp_failures_source
            .set(CountSource(Box::new(move || (read(), 0))));
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn ms_to_secs(ms: u64) -> f64 {
    // Precision loss above 2^53 ms (285,000 years) is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

/// The whole `/metrics` document: counters from `metrics`, gauges from `live`.
pub(super) fn render(metrics: &Metrics, live: &LiveSnapshot, database: &str) -> String {
    let mut out = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

    header(
        &mut out,
        "rgsd_calls_total",
        "counter",
        "Calls ended, by outcome.",
    );
    for o in OUTCOMES {
        let _ = writeln!(
            out,
            "rgsd_calls_total{{outcome=\"{}\"}} {}",
            outcome_label(o),
            load(&metrics.calls[outcome_index(o)])
        );
    }

    header(
        &mut out,
        "rgsd_announcements_total",
        "counter",
        "Announcements to waiting callers, by kind (one announcement may say both position and wait).",
    );
    for (i, kind) in ["position", "wait", "periodic"].iter().enumerate() {
        let _ = writeln!(
            out,
            "rgsd_announcements_total{{kind=\"{kind}\"}} {}",
            load(&metrics.announcements[i])
        );
    }

    header(
        &mut out,
        "rgsd_calls_in_progress",
        "gauge",
        "Calls in progress.",
    );
    let _ = writeln!(out, "rgsd_calls_in_progress {}", live.calls.len());

    header(
        &mut out,
        "rgsd_queue_waiting_calls",
        "gauge",
        "Calls waiting in each queue.",
    );
    for q in &live.queues {
        let _ = writeln!(
            out,
            "rgsd_queue_waiting_calls{{queue=\"{}\"}} {}",
            escape(&q.name),
            q.waiting
        );
    }
    header(
        &mut out,
        "rgsd_queue_longest_wait_seconds",
        "gauge",
        "Wait of the oldest call in each queue.",
    );
    for q in &live.queues {
        let _ = writeln!(
            out,
            "rgsd_queue_longest_wait_seconds{{queue=\"{}\"}} {}",
            escape(&q.name),
            q.longest_wait_seconds
        );
    }

    header(
        &mut out,
        "rgsd_queue_wait_seconds",
        "histogram",
        "Time calls spent waiting in a queue.",
    );
    let mut cumulative = 0;
    for (i, bound) in WAIT_BUCKETS.iter().enumerate() {
        cumulative += load(&metrics.wait_buckets[i]);
        let _ = writeln!(
            out,
            "rgsd_queue_wait_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += load(&metrics.wait_buckets[WAIT_BUCKETS.len()]);
    let _ = writeln!(
        out,
        "rgsd_queue_wait_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "rgsd_queue_wait_seconds_sum {}",
        ms_to_secs(load(&metrics.wait_sum_ms))
    );
    let _ = writeln!(
        out,
        "rgsd_queue_wait_seconds_count {}",
        load(&metrics.wait_count)
    );

    header(&mut out, "rgsd_agents", "gauge", "Agents by state.");
    for state in ["idle", "ringing", "busy", "wrap_up"] {
        let n = live.agents.iter().filter(|a| a.state == state).count();
        let _ = writeln!(out, "rgsd_agents{{state=\"{state}\"}} {n}");
    }

    header(
        &mut out,
        "rgsd_sip_transactions_total",
        "counter",
        "SIP transactions started, by side.",
    );
    let (server, client) = metrics.sip_source.get().map_or((0, 0), |s| (s.0)());
    for (side, n) in [("server", server), ("client", client)] {
        let _ = writeln!(out, "rgsd_sip_transactions_total{{side=\"{side}\"}} {n}");
    }

    header(
        &mut out,
        "rgsd_rtp_packets_total",
        "counter",
        "RTP packets, by direction.",
    );
    let (received, sent) = metrics.rtp_source.get().map_or((0, 0), |s| (s.0)());
    for (dir, n) in [("received", received), ("sent", sent)] {
        let _ = writeln!(out, "rgsd_rtp_packets_total{{direction=\"{dir}\"}} {n}");
    }

    header(
        &mut out,
        "rgsd_srtp_auth_failures_total",
        "counter",
        "SRTP packets dropped because they failed authentication or were replayed.",
    );
    let failures = metrics.srtp_failures_source.get().map_or(0, |s| (s.0)().0);
    let _ = writeln!(out, "rgsd_srtp_auth_failures_total {failures}");

    let stats = metrics.writer.get().map(RecordWriter::stats);
    writer_series(&mut out, stats.as_ref(), database);
    out
}

/// The call-record writer's series (all zero before the daemon attached a writer).
fn writer_series(out: &mut String, stats: Option<&WriterStats>, database: &str) {
    header(
        out,
        "rgsd_record_writer_pending",
        "gauge",
        "Call records waiting to be written to the database.",
    );
    let _ = writeln!(
        out,
        "rgsd_record_writer_pending {}",
        stats.map_or(0, |s| s.pending)
    );
    header(
        out,
        "rgsd_record_write_lag_seconds",
        "gauge",
        "How long the oldest call record waiting to be written has waited (0 when none waits).",
    );
    let _ = writeln!(
        out,
        "rgsd_record_write_lag_seconds {}",
        stats.map_or(0.0, |s| s.oldest_wait.as_secs_f64())
    );
    header(
        out,
        "rgsd_db_write_pending_records",
        "gauge",
        "Call records submitted and not yet written to the database (the write lag).",
    );
    let _ = writeln!(
        out,
        "rgsd_db_write_pending_records{{database=\"{}\"}} {}",
        escape(database),
        stats.map_or(0, |s| s.pending)
    );
    header(
        out,
        "rgsd_db_records_total",
        "counter",
        "Call records by fate: written, dropped (buffer full or shutdown), rejected.",
    );
    for (result, n) in [
        ("written", stats.map_or(0, |s| s.written)),
        ("dropped", stats.map_or(0, |s| s.dropped)),
        ("rejected", stats.map_or(0, |s| s.rejected)),
    ] {
        let _ = writeln!(out, "rgsd_db_records_total{{result=\"{result}\"}} {n}");
    }
    header(
        out,
        "rgsd_db_write_failures_total",
        "counter",
        "Failed call-record write attempts (database outages).",
    );
    let _ = writeln!(
        out,
        "rgsd_db_write_failures_total {}",
        stats.map_or(0, |s| s.failed_attempts)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::snapshot::{AgentSnapshot, QueueSnapshot};

    fn value(doc: &str, series: &str) -> f64 {
        doc.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing in\n{doc}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn counters_histogram_and_gauges_render_in_text_format() {
        let m = Metrics::default();
        m.call_ended(CallOutcome::Answered);
        m.call_ended(CallOutcome::Answered);
        m.call_ended(CallOutcome::Abandoned);
        m.observe_wait(Duration::from_millis(500)); // le=1
        m.observe_wait(Duration::from_secs(20)); // le=20 (bounds are inclusive)
        m.observe_wait(Duration::from_secs(700)); // +Inf only
        m.attach_sip_transactions(|| (1, 0));
        m.attach_rtp_packets(|| (0, 50));
        let at = chrono::DateTime::from_timestamp(1_795_687_200, 0).unwrap();
        let live = LiveSnapshot {
            at,
            queues: vec![QueueSnapshot {
                name: "Sales \"EU\"".into(),
                waiting: 3,
                longest_wait_seconds: 42,
                agents_signed_in: 2,
                agents_eligible: 1,
                agents_busy: 1,
                agents_wrap_up: 0,
                announcements: 0,
            }],
            agents: vec![AgentSnapshot {
                sip_uri: "sip:a@h".into(),
                state: "busy",
                wrap_up_until: None,
                current_call: None,
                idle_since: at,
                signed_in: vec![],
            }],
            calls: vec![],
        };
        let doc = render(&m, &live, "sqlite");
        assert_eq!(value(&doc, "rgsd_calls_total{outcome=\"answered\"}"), 2.0);
        assert_eq!(value(&doc, "rgsd_calls_total{outcome=\"abandoned\"}"), 1.0);
        assert_eq!(value(&doc, "rgsd_calls_total{outcome=\"failed\"}"), 0.0);
        assert_eq!(value(&doc, "rgsd_queue_wait_seconds_bucket{le=\"1\"}"), 1.0);
        assert_eq!(
            value(&doc, "rgsd_queue_wait_seconds_bucket{le=\"10\"}"),
            1.0
        );
        assert_eq!(
            value(&doc, "rgsd_queue_wait_seconds_bucket{le=\"20\"}"),
            2.0
        );
        assert_eq!(
            value(&doc, "rgsd_queue_wait_seconds_bucket{le=\"600\"}"),
            2.0
        );
        assert_eq!(
            value(&doc, "rgsd_queue_wait_seconds_bucket{le=\"+Inf\"}"),
            3.0
        );
        assert_eq!(value(&doc, "rgsd_queue_wait_seconds_count"), 3.0);
        assert_eq!(value(&doc, "rgsd_queue_wait_seconds_sum"), 720.5);
        assert_eq!(
            value(&doc, "rgsd_queue_waiting_calls{queue=\"Sales \\\"EU\\\"\"}"),
            3.0
        );
        assert_eq!(value(&doc, "rgsd_agents{state=\"busy\"}"), 1.0);
        assert_eq!(value(&doc, "rgsd_agents{state=\"idle\"}"), 0.0);
        assert_eq!(
            value(&doc, "rgsd_sip_transactions_total{side=\"server\"}"),
            1.0
        );
        assert_eq!(
            value(&doc, "rgsd_rtp_packets_total{direction=\"sent\"}"),
            50.0
        );
        assert_eq!(
            value(&doc, "rgsd_db_write_pending_records{database=\"sqlite\"}"),
            0.0
        );
        assert_eq!(
            value(&doc, "rgsd_db_records_total{result=\"written\"}"),
            0.0
        );
        // Every family is announced once, before its series.
        for line in doc.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                doc.contains(&format!("# TYPE {family} ")),
                "no TYPE for {name}"
            );
        }
    }

    #[test]
    fn attached_sip_transaction_counts_are_read_at_each_scrape() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicU64;
        let m = Metrics::default();
        let server = Arc::new(AtomicU64::new(5));
        let read = Arc::clone(&server);
        m.attach_sip_transactions(move || (read.load(Ordering::Relaxed), 7));
        // A second source is ignored.
        m.attach_sip_transactions(|| (1000, 1000));
        let live = LiveSnapshot {
            at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            queues: vec![],
            agents: vec![],
            calls: vec![],
        };
        let doc = render(&m, &live, "sqlite");
        assert_eq!(
            value(&doc, "rgsd_sip_transactions_total{side=\"server\"}"),
            5.0
        );
        assert_eq!(
            value(&doc, "rgsd_sip_transactions_total{side=\"client\"}"),
            7.0
        );
        server.store(9, Ordering::Relaxed);
        let doc = render(&m, &live, "sqlite");
        assert_eq!(
            value(&doc, "rgsd_sip_transactions_total{side=\"server\"}"),
            9.0
        );
    }

    #[test]
    fn attached_rtp_packet_counts_are_read_at_each_scrape() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicU64;
        let m = Metrics::default();
        let sent = Arc::new(AtomicU64::new(100));
        let read = Arc::clone(&sent);
        m.attach_rtp_packets(move || (40, read.load(Ordering::Relaxed)));
        m.attach_rtp_packets(|| (1000, 1000));
        let live = LiveSnapshot {
            at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            queues: vec![],
            agents: vec![],
            calls: vec![],
        };
        let doc = render(&m, &live, "sqlite");
        assert_eq!(
            value(&doc, "rgsd_rtp_packets_total{direction=\"received\"}"),
            40.0
        );
        assert_eq!(
            value(&doc, "rgsd_rtp_packets_total{direction=\"sent\"}"),
            100.0
        );
        sent.store(150, Ordering::Relaxed);
        let doc = render(&m, &live, "sqlite");
        assert_eq!(
            value(&doc, "rgsd_rtp_packets_total{direction=\"sent\"}"),
            150.0
        );
        // SRTP failures: 0 until attached, then read at each scrape.
        assert_eq!(value(&doc, "rgsd_srtp_auth_failures_total"), 0.0);
        let failures = Arc::new(AtomicU64::new(3));
        let read = Arc::clone(&failures);
        m.attach_srtp_auth_failures(move || read.load(Ordering::Relaxed));
        assert_eq!(
            value(
                &render(&m, &live, "sqlite"),
                "rgsd_srtp_auth_failures_total"
            ),
            3.0
        );
        failures.store(4, Ordering::Relaxed);
        assert_eq!(
            value(
                &render(&m, &live, "sqlite"),
                "rgsd_srtp_auth_failures_total"
            ),
            4.0
        );
    }

    #[test]
    fn the_writer_series_show_pending_records_and_the_oldest_ones_wait() {
        let mut doc = String::new();
        writer_series(&mut doc, None, "sqlite");
        assert_eq!(value(&doc, "rgsd_record_writer_pending"), 0.0);
        assert_eq!(value(&doc, "rgsd_record_write_lag_seconds"), 0.0);
        let stats = WriterStats {
            pending: 12,
            oldest_wait: Duration::from_millis(61_250),
            written: 3,
            ..WriterStats::default()
        };
        let mut doc = String::new();
        writer_series(&mut doc, Some(&stats), "postgres");
        assert_eq!(value(&doc, "rgsd_record_writer_pending"), 12.0);
        assert_eq!(value(&doc, "rgsd_record_write_lag_seconds"), 61.25);
        assert_eq!(
            value(&doc, "rgsd_db_write_pending_records{database=\"postgres\"}"),
            12.0
        );
        assert_eq!(
            value(&doc, "rgsd_db_records_total{result=\"written\"}"),
            3.0
        );
        assert!(doc.contains("# TYPE rgsd_record_writer_pending gauge\n"));
        assert!(doc.contains("# TYPE rgsd_record_write_lag_seconds gauge\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
