//! Test helpers: small [`Config`] values built from the model types directly (the TOML loader
//! is not needed to test the engine), and a base instant for simulated time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use crate::config::model::{
    ActionTarget, AgentGroup, AgentGroupId, CallAction, Config, DatabaseUrl, Overflow,
    OverflowCandidate, Participation, Prompt, PromptId, PromptSource, Queue, QueueId, QueueTimeout,
    RoutingMethod, Server, SipUri, SrtpPolicy, Workflow, WorkflowId, WorkflowKind,
};

/// An arbitrary base for simulated monotonic time. Nothing depends on its value; every test
/// adds durations to it.
pub(crate) fn t0() -> Instant {
    // Tests need one real `Instant` to build simulated ones from; it is never compared to the
    // clock again.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// A fixed wall-clock base: Tuesday 22 December 2026, 10:00 UTC.
pub(crate) fn utc0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 22, 10, 0, 0).unwrap()
}

pub(crate) fn uri(s: &str) -> SipUri {
    SipUri(format!("sip:{s}@127.0.0.1"))
}

/// An empty configuration with a 60 s ringback grace period.
pub(crate) fn config() -> Config {
    Config {
        source: PathBuf::from("/test/rgsd.toml"),
        server: Server {
            sip_listen: vec![],
            advertised_host: "127.0.0.1".into(),
            rtp_ports: 20000..=20999,
            http_listen: "127.0.0.1:0".parse().unwrap(),
            database: DatabaseUrl::Sqlite(PathBuf::from("/test/rgsd.db")),
            default_music_on_hold: None,
            agent_ringback_grace_period: Duration::from_secs(60),
            drain_limit: Duration::from_secs(30),
            call_journal: "rgsd.journal".into(),
            trusted_peers: vec![],
            max_calls: 100,
            call_context: true,
            sip_rate_limit: None,
            dns_servers: Vec::new(),
            outbound_proxy: None,
            srtp: SrtpPolicy::Off,
            agent_srtp: SrtpPolicy::Off,
            allow_sdes_over_plain_sip: false,
            session_expires: Some(Duration::from_secs(1800)),
            min_se: Duration::from_secs(90),
            tls: Default::default(),
        },
        registrations: vec![],
        agent_groups: vec![],
        queues: vec![],
        hours: vec![],
        holiday_sets: vec![],
        workflows: vec![],
        prompts: vec![],
    }
}

pub(crate) fn add_prompt(config: &mut Config, text: &str) -> PromptId {
    config.prompts.push(Prompt {
        source: PromptSource::Text(text.into()),
        language: "en-US".into(),
    });
    PromptId(u32::try_from(config.prompts.len() - 1).unwrap())
}

pub(crate) fn add_group(
    config: &mut Config,
    routing: RoutingMethod,
    participation: Participation,
    alert_secs: u64,
    agents: &[&str],
) -> AgentGroupId {
    let n = config.agent_groups.len();
    config.agent_groups.push(AgentGroup {
        name: format!("group {n}"),
        description: None,
        participation,
        routing,
        alert_time: Duration::from_secs(alert_secs),
        wrap_up: Duration::ZERO,
        agents: agents.iter().map(|a| uri(a)).collect(),
    });
    AgentGroupId(u32::try_from(n).unwrap())
}

pub(crate) fn add_queue(config: &mut Config, groups: &[AgentGroupId]) -> QueueId {
    let n = config.queues.len();
    config.queues.push(Queue {
        name: format!("queue {n}"),
        description: None,
        agent_groups: groups.to_vec(),
        timeout: None,
        overflow: None,
        announce: Default::default(),
    });
    QueueId(u32::try_from(n).unwrap())
}

pub(crate) fn action(prompt: Option<PromptId>, target: ActionTarget) -> CallAction {
    CallAction { prompt, target }
}

pub(crate) fn set_timeout(config: &mut Config, queue: QueueId, secs: u64, action: CallAction) {
    config.queues[queue.0 as usize].timeout = Some(QueueTimeout {
        after: Duration::from_secs(secs),
        action,
    });
}

pub(crate) fn set_overflow(
    config: &mut Config,
    queue: QueueId,
    max_calls: u32,
    candidate: OverflowCandidate,
    action: CallAction,
) {
    config.queues[queue.0 as usize].overflow = Some(Overflow {
        max_calls,
        candidate,
        action,
    });
}

/// A hunt-group workflow in UTC, always open, no prompts, starting at `start`.
pub(crate) fn add_workflow(
    config: &mut Config,
    kind: WorkflowKind,
    start: ActionTarget,
) -> WorkflowId {
    let n = config.workflows.len();
    config.workflows.push(Workflow {
        name: format!("workflow {n}"),
        kind,
        uri: uri(&format!("workflow{n}")),
        line_uri: None,
        display_number: None,
        description: None,
        active: true,
        anonymous: false,
        language: "en-US".into(),
        time_zone: chrono_tz::Tz::UTC,
        welcome: None,
        start,
        music_on_hold: None,
        business_hours: None,
        out_of_hours: None,
        holidays: vec![],
        on_holiday: None,
        managers: vec![],
        questions: vec![],
        srtp: None,
    });
    WorkflowId(u32::try_from(n).unwrap())
}
