//! Compile: raw, spanned configuration → validated [`Config`], every problem collected.
//!
//! [`compile`] walks the raw file once, in file order, and never stops at the first problem:
//! each check pushes a [`Diagnostic`] and yields `None`, and the [`Config`] is built only when no
//! error was found. Names are indexed before anything else so that a reference can be checked
//! wherever it appears. Warnings (real configuration smells, never noise) are kept apart.
//!
//! The checks are methods of one `Compiler`, split by subject: `[server]` and registrations in
//! `compile/server.rs`, prompts, actions and IVR questions in `compile/ivr.rs`, the other
//! objects here. The submodules share this file's imports (`use super::*`).

use std::collections::HashMap;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use ipnet::IpNet;
use toml::Spanned;

use super::diagnostic::{self, Diagnostic, Severity, SourceMap};
use super::model::{
    ActionTarget, AgentGroup, AgentGroupId, Answer, CallAction, Config, DatabaseUrl, Holiday,
    HolidaySet, HolidaySetId, Hours, HoursId, Overflow, OverflowCandidate, Participation, Prompt,
    PromptId, PromptSource, Question, QuestionId, Queue, QueueId, QueueTimeout, Registration,
    RoutingMethod, Secret, Server, SipRateLimit, SipUri, SrtpPolicy, TimeRange, Tls, Transport,
    Workflow, WorkflowId, WorkflowKind,
};
use super::number::{LineUri, PhoneNumber};
use super::raw::{
    RawAction, RawAgentGroup, RawAnswer, RawCallAction, RawConfig, RawHolidaySet, RawHours,
    RawPrompt, RawQuestion, RawQueue, RawRegistration, RawServer, RawSipRateLimit, RawTls,
    RawWorkflow, SList, SString,
};
use super::values::{
    format_duration, parse_duration, parse_listen, parse_local_datetime, parse_time_range,
};
use super::{AudioProbe, AudioProblem, LoadOptions, Loaded, resolve_path};

mod announce;
mod ivr;
mod server;

use ivr::{Ivr, Place};

/// What compile needs from the machine, injected so tests control it.
pub(crate) struct Environment<'a> {
    /// Reads an environment variable (`password_env`).
    pub(crate) var: &'a dyn Fn(&str) -> Option<String>,
    /// Whether text-to-speech (`espeak-ng`) is installed; asked only when
    /// [`LoadOptions::check_environment`] is set and a text prompt exists.
    pub(crate) text_to_speech: fn() -> bool,
    /// Checks a prompt or music file (the caller's WAV header probe).
    pub(crate) audio: AudioProbe,
}

/// Limits from `docs/behaviour.md` ("Limits at a glance").
const ALERT_TIME: RangeInclusive<Duration> = Duration::from_secs(10)..=Duration::from_secs(600);
const ALERT_TIME_DEFAULT: Duration = Duration::from_secs(20);
/// `docs/behaviour.md`, Wrap-up.
const WRAP_UP: RangeInclusive<Duration> = Duration::ZERO..=crate::config::model::WRAP_UP_MAX;
/// Clients reject longer alert times in practice (`docs/behaviour.md`, Agent groups), and SIP proxies give up on a ringing
/// INVITE after about three minutes (RFC 3261 timer C).
const ALERT_TIME_PRACTICAL_MAX: Duration = Duration::from_secs(180);
const GRACE: RangeInclusive<Duration> = Duration::from_secs(30)..=Duration::from_secs(600);
const GRACE_DEFAULT: Duration = Duration::from_secs(60);
/// `[server] tls.handshake_timeout`: long enough for a slow trunk, short enough that a client
/// stalling mid-handshake does not hold a connection for long.
const TLS_HANDSHAKE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(120);
const TLS_HANDSHAKE_DEFAULT: Duration = Duration::from_secs(10);
const QUEUE_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(65_535);
const NO_INPUT: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(60);
const NO_INPUT_DEFAULT: Duration = Duration::from_secs(5);
const EXPIRES_DEFAULT: Duration = Duration::from_secs(3600);
const OVERFLOW_MAX_CALLS: RangeInclusive<i64> = 0..=1_000;
const SERVER_MAX_CALLS: RangeInclusive<i64> = 1..=100_000;
const SERVER_MAX_CALLS_DEFAULT: u32 = 1_000;
/// RFC 4028 §4: a session interval is at least 90 s; a day is far beyond any useful one.
const SESSION_INTERVAL: RangeInclusive<Duration> =
    Duration::from_secs(90)..=Duration::from_secs(86_400);
const SESSION_EXPIRES_DEFAULT: Duration = Duration::from_secs(1800);
const MIN_SE_DEFAULT: Duration = Duration::from_secs(90);
/// `sip_rate_limit.per_second`; 0 turns the limit off.
const SIP_RATE_PER_SECOND: RangeInclusive<i64> = 0..=1_000_000;
/// `sip_rate_limit.burst`; by default [`SIP_RATE_BURST_FACTOR`] × `per_second`.
const SIP_RATE_BURST: RangeInclusive<i64> = 1..=4_000_000;
const SIP_RATE_BURST_FACTOR: u32 = 4;
const RTP_PORTS_DEFAULT: RangeInclusive<u16> = 20_000..=20_999;
const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:8080";
/// The call journal beside the configuration when `[server] call_journal` is absent.
const CALL_JOURNAL_DEFAULT: &str = "rgsd.journal";
const TEXT_PROMPT_MAX_CHARS: usize = 4_096;
const MAX_QUESTION_LEVELS: u32 = 2;
const DEFAULT_LANGUAGE: &str = "en-US";

/// Compiles the raw file. `source` is the absolute path of the file, `base` its folder.
pub(crate) fn compile(
    raw: &RawConfig,
    map: &SourceMap<'_>,
    source: PathBuf,
    base: &Path,
    opts: &LoadOptions,
    env: &Environment<'_>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut c = Compiler {
        map,
        base,
        env,
        diagnostics: Vec::new(),
        prompts: Vec::new(),
        prompt_ids: HashMap::new(),
        first_text_prompt: None,
        names: Names::default(),
        outbound_proxy: raw
            .server
            .as_ref()
            .is_some_and(|s| s.get_ref().outbound_proxy.is_some()),
    };
    c.index_names(raw);

    let server = c.server(raw);
    let registrations: Vec<Option<_>> = raw
        .registration
        .iter()
        .enumerate()
        .map(|(i, r)| c.registration(r, &format!("registration[{i}]")))
        .collect();
    c.duplicate_registrations(raw);
    let agent_groups: Vec<Option<_>> = raw
        .agent_group
        .iter()
        .enumerate()
        .map(|(i, g)| c.agent_group(g, &format!("agent_group[{i}]")))
        .collect();
    let queue_languages = queue_languages(raw);
    let queues: Vec<Option<_>> = raw
        .queue
        .iter()
        .enumerate()
        .map(|(i, q)| c.queue(q, i, &queue_languages))
        .collect();
    let hours: Vec<Option<_>> = raw
        .hours
        .iter()
        .enumerate()
        .map(|(i, h)| c.hours(h, &format!("hours[{i}]")))
        .collect();
    let holiday_sets: Vec<Option<_>> = raw
        .holiday_set
        .iter()
        .enumerate()
        .map(|(i, h)| c.holiday_set(h, &format!("holiday_set[{i}]")))
        .collect();
    let workflows: Vec<Option<_>> = raw
        .workflow
        .iter()
        .enumerate()
        .map(|(i, w)| c.workflow(w, &format!("workflow[{i}]")))
        .collect();
    c.duplicate_workflow_uris(raw);
    c.duplicate_line_uris(raw);
    if let Some(server) = &server {
        c.sdes_needs_tls(raw, server);
    }
    // Every object was compiled above (its problems reported); only now may one `None` spoil
    // the whole list. Collecting into `Option<Vec<_>>` directly would stop at the first `None`
    // and skip the checks of every later object.
    let registrations: Option<Vec<_>> = registrations.into_iter().collect();
    let agent_groups: Option<Vec<_>> = agent_groups.into_iter().collect();
    let queues: Option<Vec<_>> = queues.into_iter().collect();
    let hours: Option<Vec<_>> = hours.into_iter().collect();
    let holiday_sets: Option<Vec<_>> = holiday_sets.into_iter().collect();
    let workflows: Option<Vec<_>> = workflows.into_iter().collect();
    if let (Some(groups), Some(queues)) = (&agent_groups, &queues) {
        c.warn_queues_without_agents(raw, groups, queues);
    }
    if opts.check_environment {
        c.check_text_to_speech();
    }

    let Compiler {
        mut diagnostics,
        prompts,
        ..
    } = c;
    diagnostic::sort(&mut diagnostics);
    let (errors, warnings): (Vec<_>, Vec<_>) =
        diagnostics.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        diagnostic::sort(&mut all);
        return Err(all);
    }
    match (
        server,
        registrations,
        agent_groups,
        queues,
        hours,
        holiday_sets,
        workflows,
    ) {
        (
            Some(server),
            Some(registrations),
            Some(agent_groups),
            Some(queues),
            Some(hours),
            Some(holiday_sets),
            Some(workflows),
        ) => Ok(Loaded {
            config: Config {
                source,
                server,
                registrations,
                agent_groups,
                queues,
                hours,
                holiday_sets,
                workflows,
                prompts,
            },
            warnings,
        }),
        // Every `None` above comes with an error, so this arm means a check forgot to report.
        _ => Err(vec![diagnostic::file_error(
            map.file(),
            "internal error: the configuration was refused without a message; please report this",
        )]),
    }
}

/// Name → index, per object kind.
#[derive(Default)]
struct Names {
    agent_groups: HashMap<String, AgentGroupId>,
    queues: HashMap<String, QueueId>,
    hours: HashMap<String, HoursId>,
    holiday_sets: HashMap<String, HolidaySetId>,
}

struct Compiler<'a> {
    map: &'a SourceMap<'a>,
    base: &'a Path,
    env: &'a Environment<'a>,
    diagnostics: Vec<Diagnostic>,
    prompts: Vec<Prompt>,
    prompt_ids: HashMap<Prompt, PromptId>,
    /// The first text prompt (span, key), for the text-to-speech check.
    first_text_prompt: Option<(Range<usize>, String)>,
    names: Names,
    /// `[server] outbound_proxy` is written: numbers may be forward and voicemail targets.
    outbound_proxy: bool,
}

/// A `u32` id from a vector index; configurations never hold 4 billion objects.
fn id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

impl Compiler<'_> {
    fn error(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.diagnostics
            .push(self.map.at(Severity::Error, span, key, message));
    }

    fn warn(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.diagnostics
            .push(self.map.at(Severity::Warning, span, key, message));
    }

    /// `value`, or an error at the table that lacks it.
    fn required<'r, T>(
        &mut self,
        value: &'r Option<T>,
        table_span: &Range<usize>,
        table_key: &str,
        key: &str,
    ) -> Option<&'r T> {
        if value.is_none() {
            self.error(
                table_span,
                &join(table_key, key),
                format!("missing required key `{key}`"),
            );
        }
        value.as_ref()
    }

    // ---- names -------------------------------------------------------------------------

    fn index_names(&mut self, raw: &RawConfig) {
        let mut names = Names::default();
        self.index(
            "agent group",
            "agent_group",
            raw.agent_group
                .iter()
                .map(|g| (g.span(), g.get_ref().name.as_ref())),
            &mut names.agent_groups,
            AgentGroupId,
        );
        self.index(
            "queue",
            "queue",
            raw.queue
                .iter()
                .map(|q| (q.span(), q.get_ref().name.as_ref())),
            &mut names.queues,
            QueueId,
        );
        self.index(
            "hours",
            "hours",
            raw.hours
                .iter()
                .map(|h| (h.span(), h.get_ref().name.as_ref())),
            &mut names.hours,
            HoursId,
        );
        self.index(
            "holiday set",
            "holiday_set",
            raw.holiday_set
                .iter()
                .map(|h| (h.span(), h.get_ref().name.as_ref())),
            &mut names.holiday_sets,
            HolidaySetId,
        );
        // Workflows are never referenced by name, but two with one name confuse reports.
        let mut workflows = HashMap::new();
        self.index(
            "workflow",
            "workflow",
            raw.workflow
                .iter()
                .map(|w| (w.span(), w.get_ref().name.as_ref())),
            &mut workflows,
            WorkflowId,
        );
        self.names = names;
    }

    /// Records each object's name; reports missing, empty and duplicate names.
    fn index<'r, Id: Copy>(
        &mut self,
        what: &str,
        table: &str,
        items: impl Iterator<Item = (Range<usize>, Option<&'r SString>)>,
        out: &mut HashMap<String, Id>,
        make: fn(u32) -> Id,
    ) {
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, (span, name)) in items.enumerate() {
            let key = format!("{table}[{i}]");
            let Some(name) = name else {
                self.error(&span, &join(&key, "name"), "missing required key `name`");
                continue;
            };
            let key = join(&key, "name");
            let text = name.get_ref().trim();
            if text.is_empty() {
                self.error(&name.span(), &key, format!("a {what} name cannot be empty"));
                continue;
            }
            if let Some(line) = first_line.get(text) {
                self.error(
                    &name.span(),
                    &key,
                    format!("duplicate {what} name \"{text}\"; the first is on line {line}"),
                );
                continue;
            }
            first_line.insert(text.to_owned(), self.map.position(name.span().start).0);
            out.insert(text.to_owned(), make(id(i)));
        }
    }

    /// Looks a name up; reports an undeclared one with what is declared.
    fn lookup<Id: Copy>(
        &mut self,
        what: &str,
        table: &str,
        select: fn(&Names) -> &HashMap<String, Id>,
        name: &SString,
        key: &str,
    ) -> Option<Id> {
        let names = select(&self.names);
        let text = name.get_ref().trim();
        if let Some(found) = names.get(text) {
            return Some(*found);
        }
        let mut declared: Vec<&str> = names.keys().map(String::as_str).collect();
        declared.sort_unstable();
        let hint = match declared
            .iter()
            .map(|d| (strsim::damerau_levenshtein(d, text), *d))
            .filter(|(distance, _)| *distance <= 2)
            .min()
        {
            Some((_, close)) => format!("; did you mean \"{close}\"?"),
            None if declared.is_empty() => {
                format!("; declare it in a [[{table}]] table with name = \"{text}\"")
            }
            None => format!(
                "; declared: {}",
                declared
                    .iter()
                    .map(|d| format!("\"{d}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.error(
            &name.span(),
            key,
            format!("{what} \"{text}\" is not declared{hint}"),
        );
        None
    }

    fn lookup_queue(&mut self, name: &SString, key: &str) -> Option<QueueId> {
        self.lookup("queue", "queue", |n| &n.queues, name, key)
    }

    fn lookup_agent_group(&mut self, name: &SString, key: &str) -> Option<AgentGroupId> {
        self.lookup("agent group", "agent_group", |n| &n.agent_groups, name, key)
    }

    fn lookup_hours(&mut self, name: &SString, key: &str) -> Option<HoursId> {
        self.lookup("hours", "hours", |n| &n.hours, name, key)
    }

    fn lookup_holiday_set(&mut self, name: &SString, key: &str) -> Option<HolidaySetId> {
        self.lookup("holiday set", "holiday_set", |n| &n.holiday_sets, name, key)
    }

    // ---- values ------------------------------------------------------------------------

    /// A duration within `range`, or `default` when absent.
    fn duration(
        &mut self,
        value: Option<&SString>,
        key: &str,
        range: &RangeInclusive<Duration>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return default;
        };
        let text = value.get_ref();
        let d = match parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.error(&value.span(), key, e);
                return None;
            }
        };
        if d < *range.start() {
            self.error(
                &value.span(),
                key,
                format!(
                    "{text} is below the minimum {}",
                    format_duration(*range.start())
                ),
            );
            return None;
        }
        if d > *range.end() {
            self.error(
                &value.span(),
                key,
                format!(
                    "{text} is above the maximum {}",
                    format_duration(*range.end())
                ),
            );
            return None;
        }
        Some(d)
    }

    /// An integer within `range`.
    fn integer(
        &mut self,
        value: &Spanned<i64>,
        key: &str,
        range: &RangeInclusive<i64>,
    ) -> Option<u32> {
        let v = *value.get_ref();
        if !range.contains(&v) {
            self.error(
                &value.span(),
                key,
                format!(
                    "{v} is out of range; allowed: {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        u32::try_from(v).ok()
    }

    fn sip_uri(&mut self, value: &SString, key: &str) -> Option<SipUri> {
        SipUri::parse(value.get_ref().trim())
            .map_err(|e| self.error(&value.span(), key, e))
            .ok()
    }

    /// A forward or voicemail target: a SIP URI, or a number (`tel:+14255550100`, or a SIP URI
    /// with `;user=phone`), which only ever goes out through `[server] outbound_proxy`
    /// (README, "toll fraud").
    fn outbound_target(&mut self, value: &SString, key: &str) -> Option<SipUri> {
        let text = value.get_ref().trim();
        let uri = if text
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case("tel:"))
        {
            if !super::uri::is_tel(text) {
                self.error(
                    &value.span(),
                    key,
                    format!(
                        "\"{text}\" is not a telephone number; write e.g. \"tel:+14255550100\""
                    ),
                );
                return None;
            }
            SipUri(text.to_owned())
        } else {
            self.sip_uri(value, key)?
        };
        if super::uri::is_number(uri.as_str()) && !self.outbound_proxy {
            self.error(
                &value.span(),
                key,
                format!("{text} is a telephone number, and numbers are only called through a proxy: set [server] outbound_proxy = \"sip:…\" (your PBX or trunk)"),
            );
            return None;
        }
        Some(uri)
    }

    fn sip_uris(&mut self, list: Option<&SList>, key: &str, what: &str) -> Option<Vec<SipUri>> {
        let Some(list) = list else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in list.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            match self.sip_uri(item, &item_key) {
                Some(uri) if out.contains(&uri) => {
                    self.error(
                        &item.span(),
                        &item_key,
                        format!("{what} {uri} is listed twice"),
                    );
                    ok = false;
                }
                Some(uri) => out.push(uri),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A WAV file that exists and that the environment's audio probe accepts.
    fn wav_file(&mut self, value: &SString, key: &str) -> Option<PathBuf> {
        let written = value.get_ref();
        if written.trim().is_empty() {
            self.error(&value.span(), key, "the file name is empty");
            return None;
        }
        let path = resolve_path(self.base, written);
        match (self.env.audio)(&path) {
            Ok(()) => Some(path),
            Err(AudioProblem::Unreadable(source)) => {
                self.error(
                    &value.span(),
                    key,
                    format!("cannot read \"{written}\" ({}): {source}", path.display()),
                );
                None
            }
            Err(AudioProblem::Unusable(why)) => {
                self.error(
                    &value.span(),
                    key,
                    format!("cannot use \"{written}\" ({}): {why}", path.display()),
                );
                None
            }
        }
    }

    fn language(&mut self, value: Option<&SString>, key: &str) -> Option<String> {
        let Some(value) = value else {
            return Some(DEFAULT_LANGUAGE.to_owned());
        };
        let text = value.get_ref().trim();
        if is_language_tag(text) {
            Some(text.to_owned())
        } else {
            self.error(
                &value.span(),
                key,
                format!("\"{text}\" is not a language tag; write e.g. \"en-US\" or \"fr-FR\""),
            );
            None
        }
    }

    fn agent_group(&mut self, raw: &Spanned<RawAgentGroup>, key: &str) -> Option<AgentGroup> {
        let g = raw.get_ref();
        let name = g.name.as_ref().map(|n| n.get_ref().trim().to_owned());
        let participation = match &g.participation {
            None => Some(Participation::Informal),
            Some(p) => match p.get_ref().trim() {
                "informal" => Some(Participation::Informal),
                "formal" => Some(Participation::Formal),
                other => {
                    self.error(
                        &p.span(),
                        &join(key, "participation"),
                        format!(
                            "unknown participation \"{other}\"; use \"informal\" or \"formal\""
                        ),
                    );
                    None
                }
            },
        };
        let routing = match &g.routing {
            None => Some(RoutingMethod::Parallel),
            Some(r) => match r.get_ref().trim() {
                "longest_idle" => Some(RoutingMethod::LongestIdle),
                "parallel" => Some(RoutingMethod::Parallel),
                "round_robin" => Some(RoutingMethod::RoundRobin),
                "serial" => Some(RoutingMethod::Serial),
                "attendant" => Some(RoutingMethod::Attendant),
                other => {
                    self.error(&r.span(), &join(key, "routing"), format!("unknown routing \"{other}\"; use \"longest_idle\", \"parallel\", \"round_robin\", \"serial\" or \"attendant\""));
                    None
                }
            },
        };
        let alert_time = self.duration(
            g.alert_time.as_ref(),
            &join(key, "alert_time"),
            &ALERT_TIME,
            Some(ALERT_TIME_DEFAULT),
        );
        if let (Some(t), Some(written)) = (alert_time, &g.alert_time)
            && t > ALERT_TIME_PRACTICAL_MAX
        {
            self.warn(
                &written.span(),
                &join(key, "alert_time"),
                format!(
                    "{} is allowed, but many phones and proxies stop ringing after {}; agents may never see calls ring that long",
                    written.get_ref(),
                    format_duration(ALERT_TIME_PRACTICAL_MAX)
                ),
            );
        }
        let wrap_up = self.duration(
            g.wrap_up.as_ref(),
            &join(key, "wrap_up"),
            &WRAP_UP,
            Some(Duration::ZERO),
        );
        let agents = self.sip_uris(g.agents.as_ref(), &join(key, "agents"), "agent");
        Some(AgentGroup {
            name: name?,
            description: g.description.clone(),
            participation: participation?,
            routing: routing?,
            alert_time: alert_time?,
            wrap_up: wrap_up?,
            agents: agents?,
        })
    }

    fn queue(
        &mut self,
        raw: &Spanned<RawQueue>,
        index: usize,
        languages: &HashMap<String, String>,
    ) -> Option<Queue> {
        let key = &format!("queue[{index}]");
        let own = QueueId(id(index));
        let span = raw.span();
        let q = raw.get_ref();
        let name = q.name.as_ref().map(|n| n.get_ref().trim().to_owned());
        let language = match &q.language {
            Some(l) => self.language(Some(l), &join(key, "language")),
            None => Some(
                name.as_ref()
                    .and_then(|n| languages.get(n))
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned()),
            ),
        };
        let language = language.unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned());
        let groups_key = join(key, "agent_groups");
        let agent_groups = self
            .required(&q.agent_groups, &span, key, "agent_groups")
            .and_then(|list| {
                if list.get_ref().is_empty() {
                    self.error(&list.span(), &groups_key, "list at least one agent group");
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for (i, g) in list.get_ref().iter().enumerate() {
                    let item_key = format!("{groups_key}[{i}]");
                    match self.lookup_agent_group(g, &item_key) {
                        Some(found) if out.contains(&found) => {
                            self.error(
                                &g.span(),
                                &item_key,
                                format!("agent group \"{}\" is listed twice", g.get_ref().trim()),
                            );
                            ok = false;
                        }
                        Some(found) => out.push(found),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            });
        let timeout = match &q.timeout {
            None => Some(None),
            Some(t) => {
                let t_key = join(key, "timeout");
                let tv = t.get_ref();
                let after = self
                    .required(&tv.after, &t.span(), &t_key, "after")
                    .and_then(|a| {
                        self.duration(Some(a), &join(&t_key, "after"), &QUEUE_TIMEOUT, None)
                    });
                let action = self
                    .required(&tv.action, &t.span(), &t_key, "action")
                    .and_then(|a| {
                        self.action(
                            a,
                            tv.prompt.as_ref(),
                            &join(&t_key, "action"),
                            Place::QueueTimeout(own),
                            &language,
                            None,
                        )
                    });
                match (after, action) {
                    (Some(after), Some(action)) => Some(Some(QueueTimeout { after, action })),
                    _ => None,
                }
            }
        };
        let overflow = match &q.overflow {
            None => Some(None),
            Some(o) => {
                let o_key = join(key, "overflow");
                let ov = o.get_ref();
                let max_calls = self
                    .required(&ov.max_calls, &o.span(), &o_key, "max_calls")
                    .and_then(|m| self.integer(m, &join(&o_key, "max_calls"), &OVERFLOW_MAX_CALLS));
                let candidate = match &ov.candidate {
                    None => Some(OverflowCandidate::Newest),
                    Some(c) => {
                        match c.get_ref().trim() {
                            "newest" => Some(OverflowCandidate::Newest),
                            "oldest" => Some(OverflowCandidate::Oldest),
                            other => {
                                self.error(&c.span(), &join(&o_key, "candidate"), format!("unknown candidate \"{other}\"; use \"newest\" or \"oldest\""));
                                None
                            }
                        }
                    }
                };
                let action = self
                    .required(&ov.action, &o.span(), &o_key, "action")
                    .and_then(|a| {
                        self.action(
                            a,
                            ov.prompt.as_ref(),
                            &join(&o_key, "action"),
                            Place::QueueOverflow(own),
                            &language,
                            None,
                        )
                    });
                match (max_calls, candidate, action) {
                    (Some(max_calls), Some(candidate), Some(action)) => Some(Some(Overflow {
                        max_calls,
                        candidate,
                        action,
                    })),
                    _ => None,
                }
            }
        };
        let announce = self.announcements(q, key, &span, &language);
        Some(Queue {
            name: name?,
            description: q.description.clone(),
            agent_groups: agent_groups?,
            timeout: timeout?,
            overflow: overflow?,
            announce: announce?,
        })
    }

    fn hours(&mut self, raw: &Spanned<RawHours>, key: &str) -> Option<Hours> {
        let h = raw.get_ref();
        let mut days: [Vec<TimeRange>; 7] = Default::default();
        let mut ok = true;
        for (day_index, (day, list)) in h.days().into_iter().enumerate() {
            let Some(list) = list else { continue };
            let day_key = join(key, day);
            if list.get_ref().len() > 2 {
                self.error(
                    &list.span(),
                    &day_key,
                    format!(
                        "{} ranges given; at most two ranges a day are allowed",
                        list.get_ref().len()
                    ),
                );
                ok = false;
                continue;
            }
            let mut ranges: Vec<(TimeRange, Range<usize>, String)> = Vec::new();
            for (i, item) in list.get_ref().iter().enumerate() {
                let item_key = format!("{day_key}[{i}]");
                match parse_time_range(item.get_ref().trim()) {
                    Ok((open, close)) if open < close => {
                        ranges.push((TimeRange { open, close }, item.span(), item_key));
                    }
                    Ok(_) => {
                        self.error(&item.span(), &item_key, format!("\"{}\": the opening time must be before the closing time (ranges cannot cross midnight)", item.get_ref()));
                        ok = false;
                    }
                    Err(e) => {
                        self.error(&item.span(), &item_key, e);
                        ok = false;
                    }
                }
            }
            ranges.sort_by_key(|(r, _, _)| r.open);
            if let [(first, _, first_key), (second, second_span, second_key)] = ranges.as_slice()
                && second.open < first.close
            {
                self.error(
                    second_span,
                    second_key,
                    format!(
                        "{} overlaps {} ({first_key}); the two ranges of a day must not overlap",
                        show_range(second),
                        show_range(first)
                    ),
                );
                ok = false;
            }
            if let Some(slot) = days.get_mut(day_index) {
                *slot = ranges.into_iter().map(|(r, _, _)| r).collect();
            }
        }
        let name = h.name.as_ref()?.get_ref().trim().to_owned();
        ok.then_some(Hours { name, days })
    }

    fn holiday_set(&mut self, raw: &Spanned<RawHolidaySet>, key: &str) -> Option<HolidaySet> {
        let span = raw.span();
        let h = raw.get_ref();
        let list_key = join(key, "holidays");
        let holidays = self
            .required(&h.holidays, &span, key, "holidays")
            .and_then(|list| {
                if list.get_ref().is_empty() {
                    self.error(&list.span(), &list_key, "a holiday set needs at least one holiday");
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in list.get_ref().iter().enumerate() {
                    let item_key = format!("{list_key}[{i}]");
                    let d = item.get_ref();
                    let datetime = |this: &mut Self, v: &Option<SString>, field: &str| {
                        this.required(v, &item.span(), &item_key, field).and_then(|s| {
                            parse_local_datetime(s.get_ref().trim())
                                .map_err(|e| this.error(&s.span(), &join(&item_key, field), e))
                                .ok()
                        })
                    };
                    let start = datetime(self, &d.start, "start");
                    let end = datetime(self, &d.end, "end");
                    let name = self.required(&d.name, &item.span(), &item_key, "name").map(|n| n.get_ref().trim().to_owned());
                    match (name, start, end) {
                        (Some(name), Some(start), Some(end)) if start < end => out.push(Holiday { name, start, end }),
                        (Some(_), Some(_), Some(_)) => {
                            let at = d.end.as_ref().map_or(item.span(), Spanned::span);
                            self.error(&at, &join(&item_key, "end"), "the end must be after the start (end is exclusive: a one-day holiday ends at 00:00 the next day)");
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                ok.then_some(out)
            });
        Some(HolidaySet {
            name: h.name.as_ref()?.get_ref().trim().to_owned(),
            holidays: holidays?,
        })
    }

    fn workflow(&mut self, raw: &Spanned<RawWorkflow>, key: &str) -> Option<Workflow> {
        let span = raw.span();
        let w = raw.get_ref();
        let name = w.name.as_ref().map(|n| n.get_ref().trim().to_owned());
        let kind =
            self.required(&w.kind, &span, key, "kind")
                .and_then(|k| match k.get_ref().trim() {
                    "hunt_group" => Some(WorkflowKind::HuntGroup),
                    "interactive" => Some(WorkflowKind::Interactive),
                    other => {
                        self.error(
                            &k.span(),
                            &join(key, "kind"),
                            format!(
                                "unknown kind \"{other}\"; use \"hunt_group\" or \"interactive\""
                            ),
                        );
                        None
                    }
                });
        let uri = self
            .required(&w.uri, &span, key, "uri")
            .and_then(|u| self.sip_uri(u, &join(key, "uri")));
        let line_uri = match &w.line_uri {
            None => Some(None),
            Some(l) => LineUri::parse(l.get_ref().trim())
                .map_err(|e| self.error(&l.span(), &join(key, "line_uri"), e))
                .ok()
                .map(Some),
        };
        let language = self.language(w.language.as_ref(), &join(key, "language"));
        let lang = language
            .clone()
            .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned());
        let time_zone = match &w.time_zone {
            None => Some(Tz::UTC),
            Some(tz) => tz.get_ref().trim().parse::<Tz>().map_err(|_| {
                self.error(&tz.span(), &join(key, "time_zone"), format!("\"{}\" is not an IANA time zone; write e.g. \"Europe/Paris\" or \"UTC\"", tz.get_ref()));
            }).ok(),
        };
        let welcome = self.optional_prompt(w.welcome.as_ref(), &join(key, "welcome"), &lang);
        let music_on_hold = match &w.music_on_hold {
            None => Some(None),
            Some(f) => self.wav_file(f, &join(key, "music_on_hold")).map(Some),
        };
        let business_hours = match &w.business_hours {
            None => Some(None),
            Some(h) => self.lookup_hours(h, &join(key, "business_hours")).map(Some),
        };
        let holidays = match &w.holidays {
            None => Some(Vec::new()),
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, h) in list.get_ref().iter().enumerate() {
                    let item_key = format!("{key}.holidays[{i}]");
                    match self.lookup_holiday_set(h, &item_key) {
                        Some(found) if !out.contains(&found) => out.push(found),
                        Some(_) => {
                            self.error(
                                &h.span(),
                                &item_key,
                                format!("holiday set \"{}\" is listed twice", h.get_ref().trim()),
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
        };
        let out_of_hours = self.closed_action(
            w.out_of_hours.as_ref(),
            &join(key, "out_of_hours"),
            Place::OutOfHours,
            &lang,
        );
        let on_holiday = self.closed_action(
            w.on_holiday.as_ref(),
            &join(key, "on_holiday"),
            Place::OnHoliday,
            &lang,
        );
        let managers = self.sip_uris(w.managers.as_ref(), &join(key, "managers"), "manager");
        let srtp = match &w.srtp {
            None => Some(None),
            Some(p) => self.srtp_policy(p, &join(key, "srtp")).map(Some),
        };

        let mut ivr = Ivr {
            questions: Vec::new(),
        };
        let start = match kind {
            // The kind is missing or wrong (reported): still check whatever start is written.
            None => {
                if let Some(q) = &w.queue {
                    self.lookup_queue(q, &join(key, "queue"));
                }
                if let Some(q) = &w.question {
                    let rq = Spanned::new(q.span(), q.get_ref());
                    self.question(&rq, &join(key, "question"), 1, &lang, &mut ivr);
                }
                None
            }
            Some(WorkflowKind::HuntGroup) => {
                if let Some(q) = &w.question {
                    self.error(&q.span(), &join(key, "question"), "a hunt_group workflow has no questions; use kind = \"interactive\" or remove [workflow.question]");
                }
                match &w.queue {
                    None => {
                        self.error(
                            &span,
                            &join(key, "queue"),
                            "a hunt_group workflow needs queue = \"NAME\"",
                        );
                        None
                    }
                    Some(q) => {
                        // With a question too (reported above) the workflow is refused.
                        self.lookup_queue(q, &join(key, "queue"))
                            .filter(|_| w.question.is_none())
                            .map(ActionTarget::Queue)
                    }
                }
            }
            Some(WorkflowKind::Interactive) => {
                if let Some(q) = &w.queue {
                    self.error(&q.span(), &join(key, "queue"), "an interactive workflow starts with its question; send calls to a queue from an answer's action instead");
                }
                match &w.question {
                    None => {
                        self.error(
                            &span,
                            &join(key, "question"),
                            "an interactive workflow needs a [workflow.question] with answers",
                        );
                        None
                    }
                    Some(q) => {
                        let rq = Spanned::new(q.span(), q.get_ref());
                        self.question(&rq, &join(key, "question"), 1, &lang, &mut ivr)
                            .filter(|_| w.queue.is_none())
                            .map(ActionTarget::Question)
                    }
                }
            }
        };
        let questions: Option<Vec<Question>> = ivr.questions.into_iter().collect();
        Some(Workflow {
            name: name?,
            kind: kind?,
            uri: uri?,
            line_uri: line_uri?,
            display_number: w.display_number.clone(),
            description: w.description.clone(),
            active: w.active.unwrap_or(true),
            anonymous: w.anonymous.unwrap_or(false),
            language: language?,
            time_zone: time_zone?,
            welcome: welcome.ok()?,
            start: start?,
            music_on_hold: music_on_hold?,
            business_hours: business_hours?,
            out_of_hours: out_of_hours.ok()?,
            holidays: holidays?,
            on_holiday: on_holiday.ok()?,
            managers: managers?,
            srtp: srtp?,
            questions: questions?,
        })
    }

    fn duplicate_workflow_uris(&mut self, raw: &RawConfig) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, w) in raw.workflow.iter().enumerate() {
            if let Some(uri) = &w.get_ref().uri {
                let text = uri.get_ref().trim().to_owned();
                if let Some(line) = seen.get(&text) {
                    self.error(&uri.span(), &format!("workflow[{i}].uri"), format!("{text} is already the URI of the workflow on line {line}; each workflow needs its own URI"));
                } else {
                    seen.insert(text, self.map.position(uri.span().start).0);
                }
            }
        }
    }

    /// Two workflows on one number (compared as routing compares them, so `tel:+1-425-555-0100`
    /// and `tel:+14255550100` are the same line). Numbers that do not parse are reported by
    /// [`Compiler::workflow`].
    fn duplicate_line_uris(&mut self, raw: &RawConfig) {
        let mut seen: HashMap<PhoneNumber, (String, usize)> = HashMap::new();
        for (i, w) in raw.workflow.iter().enumerate() {
            let w = w.get_ref();
            let Some(line) = &w.line_uri else { continue };
            let Ok(parsed) = LineUri::parse(line.get_ref().trim()) else {
                continue;
            };
            let name = w
                .name
                .as_ref()
                .map_or_else(String::new, |n| n.get_ref().trim().to_owned());
            if let Some((first, at)) = seen.get(&parsed.number) {
                self.error(
                    &line.span(),
                    &format!("workflow[{i}].line_uri"),
                    format!(
                        "workflow \"{name}\" and workflow \"{first}\" on line {at} both have the number {}; each number reaches one workflow",
                        parsed.number
                    ),
                );
            } else {
                let at = self.map.position(line.span().start).0;
                seen.insert(parsed.number, (name, at));
            }
        }
    }

    fn warn_queues_without_agents(
        &mut self,
        raw: &RawConfig,
        groups: &[AgentGroup],
        queues: &[Queue],
    ) {
        for (i, (queue, raw_queue)) in queues.iter().zip(&raw.queue).enumerate() {
            let no_agents = queue
                .agent_groups
                .iter()
                .all(|g| groups.get(g.0 as usize).is_none_or(|g| g.agents.is_empty()));
            if no_agents {
                let span = raw_queue
                    .get_ref()
                    .agent_groups
                    .as_ref()
                    .map_or(raw_queue.span(), Spanned::span);
                self.warn(
                    &span,
                    &format!("queue[{i}].agent_groups"),
                    format!("no agent group of queue \"{}\" lists any agent; its calls will wait until agents are added", queue.name),
                );
            }
        }
    }
}

/// For each queue name, the language of the first workflow (in file order) that sends calls to
/// it directly: its prompts speak that language unless `queue.language` says otherwise.
fn queue_languages(raw: &RawConfig) -> HashMap<String, String> {
    fn from_action(action: &RawAction, out: &mut Vec<String>) {
        if let RawAction::Table(t) = action {
            if let Some(q) = &t.queue {
                out.push(q.get_ref().trim().to_owned());
            }
            if let Some(q) = &t.question {
                from_question(q.get_ref(), out);
            }
        }
    }
    fn from_question(q: &RawQuestion, out: &mut Vec<String>) {
        for a in q.answers.iter().flat_map(|l| l.get_ref()) {
            if let Some(action) = &a.get_ref().action {
                from_action(action.get_ref(), out);
            }
        }
    }
    let mut languages = HashMap::new();
    for w in &raw.workflow {
        let w = w.get_ref();
        let language = w
            .language
            .as_ref()
            .map_or(DEFAULT_LANGUAGE, |l| l.get_ref().trim())
            .to_owned();
        let mut names = Vec::new();
        if let Some(q) = &w.queue {
            names.push(q.get_ref().trim().to_owned());
        }
        if let Some(q) = &w.question {
            from_question(q.get_ref(), &mut names);
        }
        for name in names {
            languages.entry(name).or_insert_with(|| language.clone());
        }
    }
    languages
}

/// `HH:MM-HH:MM` as written (the end of the day as `24:00`).
fn show_range(r: &TimeRange) -> String {
    let close = if r.close == super::values::end_of_day() {
        "24:00".to_owned()
    } else {
        r.close.format("%H:%M").to_string()
    };
    format!("{}-{close}", r.open.format("%H:%M"))
}

/// `parent.key`.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A BCP 47 tag in its common shape: a 2-3 letter language, then 2-8 character subtags.
fn is_language_tag(text: &str) -> bool {
    let mut parts = text.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    primary_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use chrono::NaiveTime;

    use super::{AudioProblem, Environment};
    use crate::config::model::{
        ActionTarget, Config, OverflowCandidate, Participation, PromptSource, RoutingMethod,
        SipRateLimit,
    };
    use crate::config::values::end_of_day;
    use crate::config::{Diagnostic, LoadOptions, Loaded, load_with};

    const SERVER: &str = r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.1"]

[[agent_group]]
name = "Agents"
agents = ["sip:alice@127.0.0.1"]

[[queue]]
name = "Main"
agent_groups = ["Agents"]
"#;

    const WORKFLOW: &str = r#"
[[workflow]]
name = "Main line"
kind = "hunt_group"
uri = "sip:main@127.0.0.1"
queue = "Main"
"#;

    fn env_with<'a>(
        var: &'a dyn Fn(&str) -> Option<String>,
        text_to_speech: fn() -> bool,
    ) -> Environment<'a> {
        Environment {
            var,
            text_to_speech,
            audio: crate::config::readable_file,
        }
    }

    fn load_text(
        text: &str,
        check_environment: bool,
        env: &Environment<'_>,
    ) -> Result<Loaded, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        std::fs::write(&path, text).unwrap();
        load_with(&path, &LoadOptions { check_environment }, env)
    }

    fn load_ok(text: &str) -> Config {
        let env = env_with(&|_| None, || true);
        match load_text(text, true, &env) {
            Ok(loaded) => loaded.config,
            Err(d) => panic!(
                "{}",
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    fn load_err(text: &str) -> Vec<Diagnostic> {
        let env = env_with(&|_| None, || true);
        load_text(text, true, &env).expect_err("must be refused")
    }

    #[test]
    fn audio_files_are_checked_by_the_environments_probe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hold.wav"), b"anything").unwrap();
        let text = format!(
            "{SERVER}{WORKFLOW}music_on_hold = \"{}\"\n",
            dir.path().join("hold.wav").display()
        );
        // The default probe only asks for a readable file.
        let config = load_ok(&text);
        assert!(config.workflows[0].music_on_hold.is_some());
        // A probe that refuses the file: its reason becomes the diagnostic.
        let mut env = env_with(&|_| None, || true);
        env.audio = |_| Err(AudioProblem::Unusable("not a WAV file: test".into()));
        let errors = load_text(&text, true, &env).expect_err("refused by the probe");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "workflow[0].music_on_hold");
        assert!(
            errors[0].message.contains("not a WAV file: test"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn srtp_policies_and_sdes_needs_tls() {
        use crate::config::model::SrtpPolicy;
        // Defaults: off everywhere.
        let config = load_ok(&format!("{SERVER}{WORKFLOW}"));
        assert_eq!(config.server.srtp, SrtpPolicy::Off);
        assert_eq!(config.server.agent_srtp, SrtpPolicy::Off);
        assert!(!config.server.allow_sdes_over_plain_sip);
        assert_eq!(config.workflows[0].srtp, None);
        let allow = "allow_sdes_over_plain_sip = true\n";
        let server = |extra: &str| SERVER.replacen("[server]\n", &format!("[server]\n{extra}"), 1);
        // agent_srtp follows srtp unless given; a workflow overrides its callers only.
        let config = load_ok(&format!(
            "{}{WORKFLOW}srtp = \"required\"\n",
            server(&format!("srtp = \"offer\"\n{allow}"))
        ));
        assert_eq!(config.server.agent_srtp, SrtpPolicy::Offer);
        let w = &config.workflows[0];
        assert_eq!(w.caller_srtp(&config.server), SrtpPolicy::Required);
        let config = load_ok(&format!(
            "{}{WORKFLOW}",
            server(&format!(
                "srtp = \"required\"\nagent_srtp = \"off\"\n{allow}"
            ))
        ));
        assert_eq!(
            (config.server.srtp, config.server.agent_srtp),
            (SrtpPolicy::Required, SrtpPolicy::Off)
        );
        assert_eq!(
            config.workflows[0].caller_srtp(&config.server),
            SrtpPolicy::Required
        );
        // Offering SDES keys with only UDP/TCP listeners is refused, at each key that offers.
        let errors = load_err(&format!(
            "{}{WORKFLOW}srtp = \"offer\"\n",
            server("agent_srtp = \"required\"\n")
        ));
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.agent_srtp", "workflow[0].srtp"],
            "{errors:?}"
        );
        assert!(
            errors[0].message.contains("allow_sdes_over_plain_sip"),
            "{}",
            errors[0].message
        );
        // "off" written out is no offer.
        load_ok(&format!(
            "{}{WORKFLOW}srtp = \"off\"\n",
            server("srtp = \"off\"\n")
        ));
        // A misspelt policy.
        let errors = load_err(&format!("{}{WORKFLOW}", server("srtp = \"on\"\n")));
        assert_eq!(errors[0].key, "server.srtp");
        assert!(
            errors[0].message.contains("\"offer\""),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn defaults_are_what_the_docs_say() {
        let config = load_ok(&format!("{SERVER}{WORKFLOW}"));
        let s = &config.server;
        assert_eq!(s.rtp_ports, 20000..=20999);
        assert_eq!(s.http_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.agent_ringback_grace_period, Duration::from_secs(60));
        assert_eq!(s.max_calls, 1000);
        assert!(s.call_context);
        assert_eq!(s.session_expires, Some(Duration::from_secs(1800)));
        assert_eq!(s.min_se, Duration::from_secs(90));
        assert_eq!(
            s.sip_rate_limit,
            Some(SipRateLimit {
                per_second: 50,
                burst: 200
            })
        );
        assert_eq!(
            s.trusted_peers,
            vec!["127.0.0.1/32".parse().unwrap()],
            "an address is a /32"
        );
        let g = &config.agent_groups[0];
        assert_eq!(g.participation, Participation::Informal);
        assert_eq!(g.routing, RoutingMethod::Parallel);
        assert_eq!(g.alert_time, Duration::from_secs(20));
        let w = &config.workflows[0];
        assert!(
            w.active,
            "a workflow written in the file is active unless it says otherwise"
        );
        assert!(!w.anonymous);
        assert_eq!(w.language, "en-US");
        assert_eq!(w.time_zone, chrono_tz::UTC);
        assert!(w.welcome.is_none() && w.out_of_hours.is_none() && w.on_holiday.is_none());
        assert!(config.queues[0].timeout.is_none() && config.queues[0].overflow.is_none());
        assert!(config.prompts.is_empty());
    }

    #[test]
    fn tls_keys_are_checked_together_and_a_tls_listener_needs_a_certificate() {
        let with = |listen: &str, tls: &str| {
            SERVER.replace(
                "sip_listen = [\"udp:127.0.0.1:0\"]",
                &format!("sip_listen = [{listen}]\n{tls}"),
            ) + WORKFLOW
        };
        let messages = |errors: Vec<Diagnostic>| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let config = load_ok(&with("\"udp:127.0.0.1:0\"", ""));
        assert!(config.server.tls.identity.is_none());
        assert_eq!(config.server.tls.handshake_timeout, Duration::from_secs(10));

        let text = messages(load_err(&with("\"tls:127.0.0.1:0\"", "")));
        assert!(
            text.contains("server.tls") && text.contains("needs a certificate"),
            "{text}"
        );
        let text = messages(load_err(&with(
            "\"tls:127.0.0.1:0\"",
            "tls = { certificate = \"cert.pem\" }",
        )));
        assert!(
            text.contains("server.tls.private_key") && text.contains("go together"),
            "{text}"
        );
        let text = messages(load_err(&with(
            "\"udp:127.0.0.1:0\"",
            "tls = { client_ca = \"missing-ca.pem\", handshake_timeout = \"10ms\" }",
        )));
        assert!(
            text.contains("server.tls.client_ca") && text.contains("cannot read"),
            "{text}"
        );
        assert!(text.contains("server.tls.handshake_timeout"), "{text}");
    }

    #[test]
    fn sip_rate_limit_burst_defaults_to_four_seconds_and_zero_turns_it_off() {
        let with = |limit: &str| {
            SERVER.replace(
                "trusted_peers = [\"127.0.0.1\"]",
                &format!("trusted_peers = [\"127.0.0.1\"]\nsip_rate_limit = {limit}"),
            ) + WORKFLOW
        };
        let config = load_ok(&with("{ per_second = 1000, burst = 5000 }"));
        assert_eq!(
            config.server.sip_rate_limit,
            Some(SipRateLimit {
                per_second: 1000,
                burst: 5000
            })
        );
        let config = load_ok(&with("{ per_second = 300 }"));
        assert_eq!(
            config.server.sip_rate_limit,
            Some(SipRateLimit {
                per_second: 300,
                burst: 1200
            })
        );
        let env = env_with(&|_| None, || true);
        let loaded = load_text(&with("{ per_second = 0, burst = 10 }"), true, &env).unwrap();
        assert_eq!(loaded.config.server.sip_rate_limit, None);
        assert!(
            loaded.warnings.iter().any(|w| w
                .to_string()
                .contains("turns the per-source request limit off")),
            "turning the limit off is warned about: {:?}",
            loaded.warnings
        );
    }

    #[test]
    fn summary_counts_each_agent_once_and_speaks_singular() {
        let config = load_ok(&format!("{SERVER}{WORKFLOW}"));
        assert_eq!(
            crate::config::summary(&config),
            "1 workflow, 1 queue, 1 agent group, 1 agent"
        );
        let two_groups = SERVER.replace(
            "[[queue]]",
            "[[agent_group]]\nname = \"More\"\nagents = [\"sip:alice@127.0.0.1\", \"sip:bob@127.0.0.1\"]\n\n[[queue]]",
        );
        let config = load_ok(&format!("{two_groups}{WORKFLOW}"));
        assert_eq!(
            crate::config::summary(&config),
            "1 workflow, 1 queue, 2 agent groups, 2 agents"
        );
    }

    #[test]
    fn session_timer_keys() {
        let with = |keys: &str| {
            SERVER.replace(
                "trusted_peers = [\"127.0.0.1\"]",
                &format!("trusted_peers = [\"127.0.0.1\"]\n{keys}"),
            ) + WORKFLOW
        };
        let s = load_ok(&with("session_expires = \"600s\"\nmin_se = \"2m\"")).server;
        assert_eq!(s.session_expires, Some(Duration::from_secs(600)));
        assert_eq!(s.min_se, Duration::from_secs(120));
        let s = load_ok(&with("min_se = \"1h\"")).server;
        assert_eq!(
            s.session_expires,
            Some(Duration::from_secs(3600)),
            "follows min_se"
        );
        for off in ["\"off\"", "\"0\""] {
            let s = load_ok(&with(&format!("session_expires = {off}"))).server;
            assert_eq!(s.session_expires, None, "{off}");
        }
        let cases = [
            ("min_se = \"60s\"", "server.min_se", "below the minimum 90s"),
            (
                "session_expires = \"30s\"",
                "server.session_expires",
                "below the minimum 90s",
            ),
            (
                "session_expires = \"100s\"\nmin_se = \"300s\"",
                "server.session_expires",
                "below min_se (300s)",
            ),
            (
                "session_expires = \"never\"",
                "server.session_expires",
                "not a duration",
            ),
        ];
        for (keys, key, message) in cases {
            let errors = load_err(&with(keys));
            assert_eq!(errors.len(), 1, "{keys}: {errors:?}");
            assert_eq!(errors[0].key, key, "{keys}");
            assert!(
                errors[0].message.contains(message),
                "{keys}: {}",
                errors[0].message
            );
        }
    }

    #[test]
    fn extra_keys_are_read() {
        let text = format!(
            "{}{WORKFLOW}display_number = \"+1 425 555 0100\"\ndescription = \"Front line\"\n",
            SERVER
                .replace("trusted_peers = [\"127.0.0.1\"]", "trusted_peers = [\"127.0.0.1\"]\nmax_calls = 20\ncall_context = false")
                .replace("name = \"Agents\"", "name = \"Agents\"\ndescription = \"Front desk\"")
                .replace("name = \"Main\"", "name = \"Main\"\ndescription = \"First queue\"\noverflow = { max_calls = 0, action = \"disconnect\" }")
        );
        let config = load_ok(&text);
        assert_eq!(config.server.max_calls, 20);
        assert!(!config.server.call_context);
        assert_eq!(
            config.agent_groups[0].description.as_deref(),
            Some("Front desk")
        );
        assert_eq!(config.queues[0].description.as_deref(), Some("First queue"));
        let overflow = config.queues[0].overflow.as_ref().unwrap();
        assert_eq!(overflow.max_calls, 0, "0 overflows every call at once");
        assert_eq!(overflow.candidate, OverflowCandidate::Newest);
        assert_eq!(
            config.workflows[0].display_number.as_deref(),
            Some("+1 425 555 0100")
        );
    }

    #[test]
    fn hours_are_sorted_and_24_00_closes_at_midnight() {
        let text = format!(
            "{SERVER}{WORKFLOW}business_hours = \"Office\"\n\n[[hours]]\nname = \"Office\"\nmonday = [\"18:00-24:00\", \"08:00-12:00\"]\nsunday = []\n"
        );
        let config = load_ok(&text);
        let monday = &config.hours[0].days[0];
        assert_eq!(monday[0].open, NaiveTime::from_hms_opt(8, 0, 0).unwrap());
        assert_eq!(monday[1].open, NaiveTime::from_hms_opt(18, 0, 0).unwrap());
        assert_eq!(monday[1].close, end_of_day());
        assert!(
            config.hours[0].days[6].is_empty(),
            "an empty list is a closed day"
        );
    }

    #[test]
    fn touching_ranges_do_not_overlap() {
        let text = format!(
            "{SERVER}{WORKFLOW}\n[[hours]]\nname = \"Office\"\nmonday = [\"08:00-12:00\", \"12:00-17:00\"]\n"
        );
        assert_eq!(load_ok(&text).hours[0].days[0].len(), 2);
    }

    #[test]
    fn prompts_are_deduplicated_by_source_and_language() {
        let text = format!(
            r#"{SERVER}{WORKFLOW}welcome = {{ text = "Hello" }}
out_of_hours = {{ prompt = {{ text = "Hello" }} }}

[[workflow]]
name = "French line"
kind = "hunt_group"
uri = "sip:fr@127.0.0.1"
queue = "Main"
language = "fr-FR"
welcome = {{ text = "Hello" }}
"#
        );
        let config = load_ok(&text);
        let en = &config.workflows[0];
        let fr = &config.workflows[1];
        assert_eq!(
            en.welcome,
            en.out_of_hours.as_ref().unwrap().prompt,
            "same text, same language"
        );
        assert_ne!(en.welcome, fr.welcome, "same text, another language");
        assert_eq!(config.prompts.len(), 2);
        assert_eq!(config.prompt(fr.welcome.unwrap()).language, "fr-FR");
        // Left without an action, out_of_hours plays its prompt and disconnects.
        assert_eq!(
            en.out_of_hours.as_ref().unwrap().target,
            ActionTarget::Disconnect
        );
    }

    #[test]
    fn queue_prompts_speak_the_language_of_the_first_workflow_using_the_queue() {
        let queue_prompt =
            "timeout = { after = \"60s\", prompt = { text = \"Bye\" }, action = \"disconnect\" }";
        let with_timeout = SERVER.replace(
            "agent_groups = [\"Agents\"]",
            &format!("agent_groups = [\"Agents\"]\n{queue_prompt}"),
        );
        let text = format!("{with_timeout}{WORKFLOW}language = \"de-DE\"\n");
        let config = load_ok(&text);
        let timeout = config.queues[0].timeout.as_ref().unwrap();
        assert_eq!(
            config.prompt(timeout.action.prompt.unwrap()).language,
            "de-DE"
        );
        assert_eq!(
            config.prompt(timeout.action.prompt.unwrap()).source,
            PromptSource::Text("Bye".into())
        );

        let explicit =
            with_timeout.replace("name = \"Main\"", "name = \"Main\"\nlanguage = \"es-ES\"");
        let config = load_ok(&format!("{explicit}{WORKFLOW}language = \"de-DE\"\n"));
        let timeout = config.queues[0].timeout.as_ref().unwrap();
        assert_eq!(
            config.prompt(timeout.action.prompt.unwrap()).language,
            "es-ES"
        );
    }

    #[test]
    fn text_prompts_need_espeak_only_when_the_environment_is_checked() {
        let text = format!("{SERVER}{WORKFLOW}welcome = {{ text = \"Hello\" }}\n");
        let no_tts = env_with(&|_| None, || false);
        let errors = load_text(&text, true, &no_tts).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "workflow[0].welcome.text");
        assert!(
            errors[0]
                .message
                .contains("install espeak-ng (Debian: apt-get install espeak-ng)")
        );
        assert!(load_text(&text, false, &no_tts).is_ok());
        // Without text prompts, espeak-ng is not needed at all.
        assert!(load_text(&format!("{SERVER}{WORKFLOW}"), true, &no_tts).is_ok());
    }

    #[test]
    fn password_env_is_read_and_never_printed() {
        let text = format!(
            "{SERVER}{WORKFLOW}\n[[registration]]\naor = \"sip:main@127.0.0.1\"\nregistrar = \"sip:127.0.0.1:5080\"\nusername = \"main\"\npassword_env = \"RGSD_PW\"\n"
        );
        let lookup = |name: &str| (name == "RGSD_PW").then(|| "hunter2".to_owned());
        let env = env_with(&lookup, || true);
        let config = load_text(&text, true, &env).unwrap().config;
        let r = &config.registrations[0];
        assert_eq!(r.password.expose(), "hunter2");
        assert_eq!(r.expires, Duration::from_secs(3600));
        assert!(!format!("{config:?}").contains("hunter2"));

        let empty = |_: &str| Some(String::new());
        let env = env_with(&empty, || true);
        let errors = load_text(&text, true, &env).unwrap_err();
        assert!(errors[0].message.contains("RGSD_PW is empty"), "{errors:?}");
    }

    #[test]
    fn postgres_urls_are_secrets() {
        let text = format!("{SERVER}{WORKFLOW}").replace(
            "sqlite://rgsd.db",
            "postgres://rgsd:topsecret@localhost/rgsd",
        );
        let config = load_ok(&text);
        assert!(!format!("{config:?}").contains("topsecret"));
        let bad =
            format!("{SERVER}{WORKFLOW}").replace("sqlite://rgsd.db", "mysql://u:topsecret@h/db");
        let errors = load_err(&bad);
        assert!(
            errors.iter().all(|d| !d.to_string().contains("topsecret")),
            "{errors:?}"
        );
    }

    #[test]
    fn sqlite_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        std::fs::write(&path, format!("{SERVER}{WORKFLOW}")).unwrap();
        let env = env_with(&|_| None, || true);
        let config = load_with(&path, &LoadOptions::default(), &env)
            .unwrap()
            .config;
        let expected = std::path::absolute(dir.path()).unwrap().join("rgsd.db");
        assert_eq!(
            config.server.database,
            crate::config::model::DatabaseUrl::Sqlite(expected)
        );
        assert_eq!(config.source, std::path::absolute(&path).unwrap());
        assert!(Path::new(&config.source).is_absolute());
    }

    #[test]
    fn questions_are_flattened_with_the_top_question_first() {
        let text = format!(
            r##"{SERVER}
[[workflow]]
name = "IVR"
kind = "interactive"
uri = "sip:ivr@127.0.0.1"

[workflow.question]
prompt = {{ text = "Top" }}
no_input_timeout = "8s"

[[workflow.question.answers]]
dtmf = "1"
action = {{ question = {{ prompt = {{ text = "First" }}, answers = [{{ dtmf = "*", action = "disconnect" }}] }} }}

[[workflow.question.answers]]
dtmf = "2"
prompt = {{ text = "Transferring" }}
action = {{ question = {{ prompt = {{ text = "Second" }}, answers = [{{ dtmf = "#", action = {{ queue = "Main" }} }}] }} }}
"##
        );
        let config = load_ok(&text);
        let w = &config.workflows[0];
        assert_eq!(w.questions.len(), 3);
        let text_of = |q: usize| match &config.prompt(w.questions[q].prompt).source {
            PromptSource::Text(t) => t.clone(),
            PromptSource::File(_) => String::new(),
        };
        assert_eq!(text_of(0), "Top");
        assert_eq!(w.questions[0].no_input_timeout, Duration::from_secs(8));
        for (answer, expected) in [(0, "First"), (1, "Second")] {
            let ActionTarget::Question(q) = w.questions[0].answers[answer].action.target else {
                panic!("answer {answer} leads to a question");
            };
            assert_eq!(text_of(q.0 as usize), expected);
        }
        assert!(
            w.questions[0].answers[1].action.prompt.is_some(),
            "prompt next to action"
        );
        assert_eq!(w.questions[1].answers[0].dtmf, Some('*'));
    }

    #[test]
    fn an_action_of_the_wrong_type_says_what_an_action_is() {
        let text = format!("{SERVER}{WORKFLOW}out_of_hours = {{ action = 5 }}\n");
        let errors = load_err(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "workflow[0].out_of_hours.action");
        assert!(
            errors[0].message.contains("\"disconnect\" or a table"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn unknown_keys_and_a_type_error_come_together() {
        let text = format!("{SERVER}colour = 1\n{WORKFLOW}active = \"yes\"\n");
        let errors = load_err(&text);
        let keys: Vec<&str> = errors.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            ["queue[0].colour", "workflow[0].active"],
            "{errors:?}"
        );
    }
}
