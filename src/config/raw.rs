//! Raw configuration types: the TOML file exactly as written, before any check.
//!
//! Every value a later check may point at is a [`Spanned`], so its diagnostic carries a line.
//! Durations, times, dates, URIs, paths and enum words stay strings here and are parsed in
//! `compile.rs`, which collects every problem instead of stopping at the first one. For the same
//! reason, keys the contract requires are `Option`s here: a missing key is a diagnostic in
//! `compile.rs`, not a serde error that would hide every other problem.
//!
//! [`parse`] reads the text: TOML syntax errors (all of them); otherwise unknown keys (all of them,
//! via `serde_ignored`, each located by walking the span-keeping `DeTable`) and type errors (a
//! string where a table belongs, ...). serde stops at a type error, so `parse` drops the offending
//! key and deserializes again until none is left: every type error comes out in one run too.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, SourceMap};

/// A string with its place in the file.
pub(crate) type SString = Spanned<String>;
/// A list of strings with the place of the list and of each item.
pub(crate) type SList = Spanned<Vec<SString>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    pub(crate) server: Option<Spanned<RawServer>>,
    #[serde(default)]
    pub(crate) registration: Vec<Spanned<RawRegistration>>,
    #[serde(default)]
    pub(crate) agent_group: Vec<Spanned<RawAgentGroup>>,
    #[serde(default)]
    pub(crate) queue: Vec<Spanned<RawQueue>>,
    #[serde(default)]
    pub(crate) hours: Vec<Spanned<RawHours>>,
    #[serde(default)]
    pub(crate) holiday_set: Vec<Spanned<RawHolidaySet>>,
    #[serde(default)]
    pub(crate) workflow: Vec<Spanned<RawWorkflow>>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawServer {
    /// Required: `["udp:IP:PORT", "tcp:IP:PORT", "tls:IP:PORT"]`.
    pub(crate) sip_listen: Option<SList>,
    /// Required: the host written into Via, Contact and SDP.
    pub(crate) advertised_host: Option<SString>,
    /// `[low, high]`, inclusive; default `[20000, 20999]`.
    pub(crate) rtp_ports: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Default `127.0.0.1:8080`.
    pub(crate) http_listen: Option<SString>,
    /// Required: `sqlite://PATH` or `postgres://…`.
    pub(crate) database: Option<SString>,
    pub(crate) default_music_on_hold: Option<SString>,
    /// Default `60s`.
    pub(crate) agent_ringback_grace_period: Option<SString>,
    /// Extra key: default `30s`.
    pub(crate) drain_limit: Option<SString>,
    /// Extra key: the call journal's file; default `rgsd.journal` beside the configuration.
    pub(crate) call_journal: Option<SString>,
    /// Required: networks (`127.0.0.0/8`) or single addresses allowed to place calls.
    pub(crate) trusted_peers: Option<SList>,
    /// Extra key: concurrent calls before new INVITEs get 503; default 1000, 1 to 100,000.
    pub(crate) max_calls: Option<Spanned<i64>>,
    /// Extra key: whether INVITEs to agents carry call-context headers; default true.
    pub(crate) call_context: Option<bool>,
    /// Extra key: per-source request rate limit; default 50/s, bursts of 200.
    pub(crate) sip_rate_limit: Option<Spanned<RawSipRateLimit>>,
    /// Extra key: name servers (`"IP"` or `"IP:PORT"`) for agent and registrar host names;
    /// default: those of /etc/resolv.conf.
    pub(crate) dns_servers: Option<SList>,
    /// Extra key: a SIP URI every outbound INVITE is sent through (loose routing); default none.
    pub(crate) outbound_proxy: Option<SString>,
    /// Extra key: `"off"` (default), `"offer"` or `"required"`: SRTP with SDES keys.
    pub(crate) srtp: Option<SString>,
    /// Extra key: the SRTP policy of agent legs; default: `srtp`.
    pub(crate) agent_srtp: Option<SString>,
    /// Extra key: allow SDES keys without a TLS listener; default false.
    pub(crate) allow_sdes_over_plain_sip: Option<bool>,
    /// Extra key: RFC 4028 session interval offered on legs rgsd originates; default `1800s`,
    /// `"0"` or `"off"` offers none.
    pub(crate) session_expires: Option<SString>,
    /// Extra key: smallest session interval accepted from peers; default and minimum `90s`.
    pub(crate) min_se: Option<SString>,
    /// SIP over TLS: certificate and key for `tls:` listeners, CAs.
    pub(crate) tls: Option<Spanned<RawTls>>,
}

/// `tls = { certificate, private_key, client_ca, ca, handshake_timeout }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawTls {
    /// PEM certificate chain, end-entity first.
    pub(crate) certificate: Option<SString>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) private_key: Option<SString>,
    /// PEM CA certificates; when set, inbound clients must present a certificate they signed.
    pub(crate) client_ca: Option<SString>,
    /// PEM CA certificates outbound connections trust instead of the system's.
    pub(crate) ca: Option<SString>,
    /// Default `10s`.
    pub(crate) handshake_timeout: Option<SString>,
}

/// `sip_rate_limit = { per_second, burst }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawSipRateLimit {
    /// Required: 0 turns the limit off, else 1 to 1,000,000.
    pub(crate) per_second: Option<Spanned<i64>>,
    /// Default 4 × `per_second`; 1 to 4,000,000.
    pub(crate) burst: Option<Spanned<i64>>,
}

/// `[[registration]]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawRegistration {
    pub(crate) aor: Option<SString>,
    pub(crate) registrar: Option<SString>,
    pub(crate) username: Option<SString>,
    pub(crate) password_file: Option<SString>,
    pub(crate) password_env: Option<SString>,
    /// Not allowed: secrets never sit in the config file. Kept here to say so precisely.
    pub(crate) password: Option<Spanned<toml::Value>>,
    /// Default `3600s`.
    pub(crate) expires: Option<SString>,
}

/// `[[agent_group]]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawAgentGroup {
    pub(crate) name: Option<SString>,
    /// Extra key: free text for admins.
    pub(crate) description: Option<String>,
    pub(crate) participation: Option<SString>,
    pub(crate) routing: Option<SString>,
    pub(crate) alert_time: Option<SString>,
    /// Extra key: `"30s"`; none by default.
    pub(crate) wrap_up: Option<SString>,
    pub(crate) agents: Option<SList>,
}

/// `[[queue]]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawQueue {
    pub(crate) name: Option<SString>,
    /// Extra key: free text for admins.
    pub(crate) description: Option<String>,
    /// Extra key: the language (TTS voice) of this queue's timeout and overflow prompts; by
    /// default the language of the first workflow that sends calls to the queue.
    pub(crate) language: Option<SString>,
    pub(crate) agent_groups: Option<SList>,
    pub(crate) timeout: Option<Spanned<RawTimeout>>,
    pub(crate) overflow: Option<Spanned<RawOverflow>>,
    /// Extra key: position and expected wait, on entry and at this interval; off by default.
    pub(crate) announce_every: Option<SString>,
    /// Extra key: default `true` (with `announce_every`).
    pub(crate) announce_position: Option<Spanned<bool>>,
    /// Extra key: default `true` (with `announce_every`).
    pub(crate) announce_wait: Option<Spanned<bool>>,
    /// Extra key: positions above it are "more than N callers ahead"; default 10.
    pub(crate) announce_position_limit: Option<Spanned<i64>>,
    /// Extra key: `{ every = "45s", prompt = { … } }`.
    pub(crate) periodic_announcement: Option<Spanned<RawPeriodic>>,
}

/// `periodic_announcement = { every, prompt }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawPeriodic {
    pub(crate) every: Option<SString>,
    pub(crate) prompt: Option<Spanned<RawPrompt>>,
}

/// `timeout = { after, prompt, action }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawTimeout {
    pub(crate) after: Option<SString>,
    pub(crate) prompt: Option<Spanned<RawPrompt>>,
    pub(crate) action: Option<Spanned<RawAction>>,
}

/// `overflow = { max_calls, candidate, prompt, action }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawOverflow {
    pub(crate) max_calls: Option<Spanned<i64>>,
    pub(crate) candidate: Option<SString>,
    pub(crate) prompt: Option<Spanned<RawPrompt>>,
    pub(crate) action: Option<Spanned<RawAction>>,
}

/// `[[hours]]`: up to two `"HH:MM-HH:MM"` ranges per day; a day left out is closed.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHours {
    pub(crate) name: Option<SString>,
    pub(crate) monday: Option<SList>,
    pub(crate) tuesday: Option<SList>,
    pub(crate) wednesday: Option<SList>,
    pub(crate) thursday: Option<SList>,
    pub(crate) friday: Option<SList>,
    pub(crate) saturday: Option<SList>,
    pub(crate) sunday: Option<SList>,
}

impl RawHours {
    /// The seven days, Monday first, with their key names.
    pub(crate) fn days(&self) -> [(&'static str, Option<&SList>); 7] {
        [
            ("monday", self.monday.as_ref()),
            ("tuesday", self.tuesday.as_ref()),
            ("wednesday", self.wednesday.as_ref()),
            ("thursday", self.thursday.as_ref()),
            ("friday", self.friday.as_ref()),
            ("saturday", self.saturday.as_ref()),
            ("sunday", self.sunday.as_ref()),
        ]
    }
}

/// `[[holiday_set]]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHolidaySet {
    pub(crate) name: Option<SString>,
    pub(crate) holidays: Option<Spanned<Vec<Spanned<RawHoliday>>>>,
}

/// `{ name, start, end }` inside a holiday set.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHoliday {
    pub(crate) name: Option<SString>,
    pub(crate) start: Option<SString>,
    pub(crate) end: Option<SString>,
}

/// `[[workflow]]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawWorkflow {
    pub(crate) name: Option<SString>,
    pub(crate) kind: Option<SString>,
    pub(crate) uri: Option<SString>,
    pub(crate) line_uri: Option<SString>,
    pub(crate) display_number: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) active: Option<bool>,
    pub(crate) anonymous: Option<bool>,
    pub(crate) language: Option<SString>,
    pub(crate) time_zone: Option<SString>,
    pub(crate) welcome: Option<Spanned<RawPrompt>>,
    pub(crate) queue: Option<SString>,
    pub(crate) question: Option<Spanned<RawQuestion>>,
    pub(crate) music_on_hold: Option<SString>,
    pub(crate) business_hours: Option<SString>,
    pub(crate) out_of_hours: Option<Spanned<RawCallAction>>,
    pub(crate) holidays: Option<SList>,
    pub(crate) on_holiday: Option<Spanned<RawCallAction>>,
    pub(crate) managers: Option<SList>,
    /// Extra key: the SRTP policy of this workflow's callers; default: `[server] srtp`.
    pub(crate) srtp: Option<SString>,
}

/// `{ prompt, action }` for `out_of_hours` and `on_holiday`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawCallAction {
    pub(crate) prompt: Option<Spanned<RawPrompt>>,
    pub(crate) action: Option<Spanned<RawAction>>,
}

/// `{ text = "…" }` or `{ file = "…" }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawPrompt {
    pub(crate) text: Option<SString>,
    pub(crate) file: Option<SString>,
}

/// `[workflow.question]` or `action = { question = { … } }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawQuestion {
    pub(crate) prompt: Option<Spanned<RawPrompt>>,
    pub(crate) invalid_answer: Option<Spanned<RawPrompt>>,
    pub(crate) no_answer: Option<Spanned<RawPrompt>>,
    /// Extra key: time allowed for a key after the prompt ends; default `5s`, 1 s to 60 s.
    pub(crate) no_input_timeout: Option<SString>,
    pub(crate) answers: Option<Spanned<Vec<Spanned<RawAnswer>>>>,
}

/// `[[workflow.question.answers]]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawAnswer {
    pub(crate) dtmf: Option<SString>,
    pub(crate) voice: Option<SList>,
    pub(crate) prompt: Option<Spanned<RawPrompt>>,
    pub(crate) action: Option<Spanned<RawAction>>,
}

/// An action: a word (`"disconnect"`) or a table naming one target.
#[derive(Debug)]
pub(crate) enum RawAction {
    Word(String),
    Table(RawActionTable),
}

/// `{ voicemail = URI }`, `{ forward = URI }`, `{ queue = NAME }` or `{ question = {…} }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawActionTable {
    pub(crate) voicemail: Option<SString>,
    pub(crate) forward: Option<SString>,
    pub(crate) queue: Option<SString>,
    pub(crate) question: Option<Spanned<Box<RawQuestion>>>,
}

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ActionVisitor;
        impl<'de> de::Visitor<'de> for ActionVisitor {
            type Value = RawAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"disconnect\" or a table such as { queue = \"Sales\" }, { voicemail = \"sip:…\" }, { forward = \"sip:…\" } or { question = { … } }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAction, E> {
                Ok(RawAction::Word(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawAction, A::Error> {
                RawActionTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAction::Table)
            }
        }
        deserializer.deserialize_any(ActionVisitor)
    }
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// Writes a path the way diagnostics show keys: `workflow[1].question.answers[0].dtmf`; keys
/// that are not bare TOML keys are quoted.
pub(crate) fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
        }
    }
    out
}

/// Reads the TOML text into [`RawConfig`], or returns every syntax error, or every unknown key
/// and every type error, sorted by line.
pub(crate) fn parse(map: &SourceMap<'_>, text: &str) -> Result<RawConfig, Vec<Diagnostic>> {
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let mut diagnostics: Vec<Diagnostic> = syntax_errors
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                map.error(
                    &span,
                    "",
                    format!("TOML syntax: {}", e.message().trim_end()),
                )
            })
            .collect();
        // The recovering parser may report one problem twice.
        super::diagnostic::sort(&mut diagnostics);
        diagnostics.dedup();
        return Err(diagnostics);
    }
    // serde stops at the first type error. Report it, drop the offending key from a copy of the
    // document and deserialize again, so that every type error and every unknown key comes out
    // in one run. Every key of the raw types is optional, so dropping one adds no new error.
    let original = doc.get_ref();
    let mut current = doc.clone();
    let mut unknown: BTreeSet<Vec<Segment>> = BTreeSet::new();
    let mut diagnostics = Vec::new();
    let mut outcome = None;
    for _ in 0..MAX_TYPE_ERRORS {
        let deserializer = toml::de::Deserializer::from(current.clone());
        let result: Result<RawConfig, toml::de::Error> =
            serde_ignored::deserialize(deserializer, |path| {
                unknown.insert(segments(&path));
            });
        match result {
            Ok(raw) => {
                outcome = Some(raw);
                break;
            }
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let path = path_at(original, span.start);
                let message = type_error_message(e.message().trim_end(), &path);
                diagnostics.push(map.error(&span, render_path(&path), message));
                if !remove_key(current.get_mut(), &path) {
                    break;
                }
            }
        }
    }
    for path in &unknown {
        let span = key_span(original, path).unwrap_or(0..0);
        diagnostics.push(map.error(&span, render_path(path), unknown_key_message(path)));
    }
    match outcome {
        Some(raw) if diagnostics.is_empty() => Ok(raw),
        _ => {
            super::diagnostic::sort(&mut diagnostics);
            Err(diagnostics)
        }
    }
}

/// serde's "invalid type: string \"yes\", expected a boolean", said in the file's terms.
fn type_error_message(message: &str, path: &[Segment]) -> String {
    let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return message.to_owned();
    };
    let top_level_array = matches!(
        path,
        [Segment::Key(k)] if ["registration", "agent_group", "queue", "hours", "holiday_set", "workflow"].contains(&k.as_str())
    );
    let expected = match expected {
        "a sequence" if top_level_array => {
            let Some(Segment::Key(k)) = path.first() else {
                return message.to_owned();
            };
            return format!("write each entry under a [[{k}]] header (double brackets), not [{k}]");
        }
        "a sequence" => "a list, e.g. [\"…\"]".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "i64" | "u32" | "an integer" => "a whole number".to_owned(),
        "a string" => "a quoted string".to_owned(),
        "struct RawPrompt" => "a prompt: { text = \"…\" } or { file = \"…\" }".to_owned(),
        "struct RawCallAction" => "a table: { prompt = { … }, action = … }".to_owned(),
        "struct RawTimeout" => "a table: { after = \"300s\", action = … }".to_owned(),
        "struct RawOverflow" => "a table: { max_calls = 50, action = … }".to_owned(),
        "struct RawPeriodic" => {
            "a table: { every = \"45s\", prompt = { text = \"…\" } }".to_owned()
        }
        other if other.starts_with("struct Raw") => "a table".to_owned(),
        other => other.to_owned(),
    };
    format!("expected {expected}, found {found}")
}

/// Type errors reported before giving up (each costs one more pass over the document).
const MAX_TYPE_ERRORS: usize = 100;

/// Removes the innermost key of `path` from the document (for a path into an array, the key
/// holding the array). False when there is nothing to remove.
fn remove_key(root: &mut DeTable<'_>, path: &[Segment]) -> bool {
    let Some(last) = path.iter().rposition(|s| matches!(s, Segment::Key(_))) else {
        return false;
    };
    let Segment::Key(key) = &path[last] else {
        return false;
    };
    let Some(table) = table_at_mut(root, &path[..last]) else {
        return false;
    };
    table.remove(key.as_str()).is_some()
}

fn table_at_mut<'a, 'i>(
    table: &'a mut DeTable<'i>,
    path: &[Segment],
) -> Option<&'a mut DeTable<'i>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(table);
    };
    let Segment::Key(key) = first else {
        return None;
    };
    let (_, value) = table.iter_mut().find(|(k, _)| k.get_ref() == key)?;
    match value_at_mut(value.get_mut(), rest)? {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

fn value_at_mut<'a, 'i>(
    value: &'a mut DeValue<'i>,
    path: &[Segment],
) -> Option<&'a mut DeValue<'i>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = match (first, value) {
        (Segment::Key(key), DeValue::Table(t)) => {
            t.iter_mut().find(|(k, _)| k.get_ref() == key)?.1.get_mut()
        }
        (Segment::Index(i), DeValue::Array(items)) => items.get_mut(*i)?.get_mut(),
        _ => return None,
    };
    value_at_mut(next, rest)
}

/// A `serde_ignored` path as segments, without the private keys of `Spanned`.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current = Some(path);
    while let Some(p) = current {
        current = match p {
            serde_ignored::Path::Root => None,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                Some(*parent)
            }
            serde_ignored::Path::Map { parent, key } => {
                if !key.starts_with("$__serde_spanned_private") {
                    out.push(Segment::Key(key.clone()));
                }
                Some(*parent)
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => Some(*parent),
        };
    }
    out.reverse();
    out
}

/// The span of the last key of `path` in the document.
fn key_span(root: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let mut table = root;
    let mut value: Option<&DeValue<'_>> = None;
    let mut last_key_span = None;
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if let Some(v) = value {
                    table = v.as_table()?;
                }
                let (key, v) = table.iter().find(|(key, _)| key.get_ref() == k)?;
                last_key_span = Some(key.span());
                value = Some(v.get_ref());
            }
            Segment::Index(i) => {
                let item = value?.as_array()?.get(*i)?;
                value = Some(item.get_ref());
            }
        }
    }
    last_key_span
}

/// The path of the innermost key or value whose span holds `offset`. Walks every node: the
/// span of a table built from `[[array]]` headers does not cover its keys.
fn path_at(root: &DeTable<'_>, offset: usize) -> Vec<Segment> {
    let mut best = Vec::new();
    walk_table(root, offset, &mut Vec::new(), &mut best);
    best
}

fn walk_table(
    table: &DeTable<'_>,
    offset: usize,
    path: &mut Vec<Segment>,
    best: &mut Vec<Segment>,
) {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        if (contains(&key.span(), offset) || contains(&value.span(), offset))
            && path.len() > best.len()
        {
            best.clone_from(path);
        }
        walk_value(value.get_ref(), offset, path, best);
        path.pop();
    }
}

fn walk_value(
    value: &DeValue<'_>,
    offset: usize,
    path: &mut Vec<Segment>,
    best: &mut Vec<Segment>,
) {
    match value {
        DeValue::Table(t) => walk_table(t, offset, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                if contains(&item.span(), offset) && path.len() > best.len() {
                    best.clone_from(path);
                }
                walk_value(item.get_ref(), offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// "unknown key `x`", with the closest valid key or the list of valid keys.
fn unknown_key_message(path: &[Segment]) -> String {
    let Some(Segment::Key(key)) = path.last() else {
        return "unknown key".to_owned();
    };
    let parent = path[..path.len() - 1].iter().rev().find_map(|s| match s {
        Segment::Key(k) => Some(k.as_str()),
        Segment::Index(_) => None,
    });
    if parent == Some("action") && key == "prompt" {
        return "unknown key `prompt`: a prompt goes next to `action`, not inside it, e.g. \
                timeout = { after = \"300s\", prompt = { text = \"…\" }, action = \"disconnect\" }"
            .to_owned();
    }
    let known = known_keys(parent);
    let closest = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(k, key), *k))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    match closest {
        Some((_, suggestion)) => format!("unknown key `{key}`; did you mean `{suggestion}`?"),
        None if known.is_empty() => format!("unknown key `{key}`"),
        None => format!(
            "unknown key `{key}`; the keys allowed here are {}",
            known
                .iter()
                .filter(|k| **k != "password")
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The keys a table accepts, told by the table's key in its parent.
fn known_keys(parent: Option<&str>) -> &'static [&'static str] {
    match parent {
        None => fields_of::<RawConfig>(),
        Some("server") => fields_of::<RawServer>(),
        Some("registration") => fields_of::<RawRegistration>(),
        Some("agent_group") => fields_of::<RawAgentGroup>(),
        Some("queue") => fields_of::<RawQueue>(),
        Some("timeout") => fields_of::<RawTimeout>(),
        Some("overflow") => fields_of::<RawOverflow>(),
        Some("periodic_announcement") => fields_of::<RawPeriodic>(),
        Some("hours") => fields_of::<RawHours>(),
        Some("holiday_set") => fields_of::<RawHolidaySet>(),
        Some("holidays") => fields_of::<RawHoliday>(),
        Some("workflow") => fields_of::<RawWorkflow>(),
        Some("question") => fields_of::<RawQuestion>(),
        Some("answers") => fields_of::<RawAnswer>(),
        Some("action") => fields_of::<RawActionTable>(),
        Some("out_of_hours" | "on_holiday") => fields_of::<RawCallAction>(),
        Some("prompt" | "welcome" | "invalid_answer" | "no_answer") => fields_of::<RawPrompt>(),
        Some(_) => &[],
    }
}

/// The field names serde's derive gives a struct: asks the derived `Deserialize` to read from a
/// deserializer that records the list and stops.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe always fails on purpose; only the recorded list matters.
    let _ = T::deserialize(FieldsProbe(&mut fields));
    fields
}

struct FieldsProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldsProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn unknown(text: &str) -> Vec<(usize, String, String)> {
        let map = SourceMap::new(Path::new("t.toml"), text);
        let Err(diagnostics) = parse(&map, text) else {
            panic!("expected diagnostics");
        };
        diagnostics
            .into_iter()
            .map(|d| (d.line, d.key, d.message))
            .collect()
    }

    #[test]
    fn every_table_kind_knows_its_keys() {
        for parent in [
            None,
            Some("server"),
            Some("registration"),
            Some("agent_group"),
            Some("queue"),
            Some("timeout"),
            Some("overflow"),
            Some("periodic_announcement"),
            Some("hours"),
            Some("holiday_set"),
            Some("holidays"),
            Some("workflow"),
            Some("question"),
            Some("answers"),
            Some("action"),
            Some("out_of_hours"),
            Some("prompt"),
        ] {
            assert!(!known_keys(parent).is_empty(), "{parent:?}");
        }
        assert!(known_keys(Some("hours")).contains(&"sunday"));
        assert!(known_keys(Some("action")).contains(&"question"));
    }

    #[test]
    fn unknown_keys_deep_inside_inline_tables_are_located() {
        let text = r#"
[[holiday_set]]
name = "X"
holidays = [
  { name = "A", start = "2026-01-01T00:00", end = "2026-01-02T00:00", colour = "red" },
]

[[workflow]]
name = "W"

[workflow.question]
prompt = { txt = "Hi" }

[[workflow.question.answers]]
dtmf = "1"
action = { question = { prompt = { text = "x" }, answers = [{ dtmf = "1", action = "disconnect", extra = 1 }] } }
"#;
        let mut found = unknown(text);
        found.sort();
        assert_eq!(
            found,
            [
                (
                    5,
                    "holiday_set[0].holidays[0].colour".to_owned(),
                    "unknown key `colour`; the keys allowed here are `name`, `start`, `end`"
                        .to_owned()
                ),
                (
                    12,
                    "workflow[0].question.prompt.txt".to_owned(),
                    "unknown key `txt`; did you mean `text`?".to_owned()
                ),
                (
                    16,
                    "workflow[0].question.answers[0].action.question.answers[0].extra".to_owned(),
                    "unknown key `extra`; the keys allowed here are `dtmf`, `voice`, `prompt`, `action`"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_prompt_inside_an_action_says_where_it_belongs() {
        let found = unknown(
            "[[queue]]\ntimeout = { after = \"60s\", action = { queue = \"B\", prompt = { text = \"x\" } } }\n",
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "queue[0].timeout.action.prompt");
        assert!(
            found[0].2.contains("goes next to `action`"),
            "{}",
            found[0].2
        );
    }

    #[test]
    fn the_inline_password_key_is_not_listed_as_allowed() {
        let found = unknown("[[registration]]\nsecret = \"x\"\n");
        assert_eq!(found.len(), 1);
        assert!(!found[0].2.contains("`password`"), "{}", found[0].2);
        assert!(found[0].2.contains("`password_file`"));
    }

    #[test]
    fn every_syntax_error_is_reported() {
        let found = unknown("a = \nb = [1,\n[server\n");
        assert!(!found.is_empty());
        assert!(found.iter().all(|(_, _, m)| m.starts_with("TOML syntax:")));
        assert_eq!(found[0].0, 1, "{found:?}");
    }

    #[test]
    fn paths_render_with_indexes_and_quoted_keys() {
        let path = [
            Segment::Key("workflow".into()),
            Segment::Index(1),
            Segment::Key("Sales line".into()),
            Segment::Key("dtmf".into()),
        ];
        assert_eq!(render_path(&path), "workflow[1].\"Sales line\".dtmf");
    }
}
