//! Two owners, one model: the objects of the configuration file plus the response-group objects
//! stored in the database (created through the API), compiled together by the same compile step
//! as the file alone.
//!
//! A database object is the object's TOML table as JSON (same keys and value shapes as the
//! file; see the README's configuration reference). [`load_merged`] renders each one back to TOML, appends the
//! rendered tables to the file's own, and compiles the whole with `compile.rs`: every rule,
//! range and message is the one `rgsd check` applies to the file. So that problems can name the
//! object they concern, the rendered tables are parsed from a text padded to the file's length
//! (every byte of the file replaced by a space, newlines kept): a byte offset, and so a line,
//! tells file from database object.
//!
//! Rules of ownership:
//! - names are unique across both owners (a second `Sales` queue is a duplicate wherever it is);
//! - a database object may refer to a file object, never the reverse: the file is first compiled
//!   alone, so a file object that names a database-only object stays an error, as in
//!   `rgsd check` of the file alone.
//!
//! A problem in a database object is a [`Diagnostic`] whose `file` is `COLLECTION/NAME` (e.g.
//! `queues/Sales`), with line 0 and the key relative to the object (`timeout.after`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diagnostic::{self, Diagnostic, SourceMap};
use super::{LoadOptions, Loaded, compile, raw};

/// A response-group object kind: the tables of the file that the API may also create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    AgentGroup,
    Queue,
    Hours,
    HolidaySet,
    Workflow,
}

impl ObjectKind {
    /// Every kind, in the order objects that others refer to come first.
    pub const ALL: [ObjectKind; 5] = [
        Self::AgentGroup,
        Self::Queue,
        Self::Hours,
        Self::HolidaySet,
        Self::Workflow,
    ];

    /// The TOML table name (`[[agent_group]]`), also the database's `kind` column.
    pub fn table(self) -> &'static str {
        match self {
            Self::AgentGroup => "agent_group",
            Self::Queue => "queue",
            Self::Hours => "hours",
            Self::HolidaySet => "holiday_set",
            Self::Workflow => "workflow",
        }
    }

    /// The API collection (`/api/agent-groups`).
    pub fn collection(self) -> &'static str {
        match self {
            Self::AgentGroup => "agent-groups",
            Self::Queue => "queues",
            Self::Hours => "hours",
            Self::HolidaySet => "holiday-sets",
            Self::Workflow => "workflows",
        }
    }

    /// The kind whose [`ObjectKind::table`] is `table`.
    pub fn from_table(table: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.table() == table)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AgentGroup => "agent group",
            Self::Queue => "queue",
            Self::Hours => "hours",
            Self::HolidaySet => "holiday set",
            Self::Workflow => "workflow",
        })
    }
}

/// One object stored in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct DbObject {
    pub kind: ObjectKind,
    pub name: String,
    /// The object's table in the contract's shape, as JSON (`name` may be left out).
    pub body: serde_json::Value,
    pub version: i64,
}

/// One object declared in the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileObject {
    pub kind: ObjectKind,
    pub name: String,
    /// The object's table as written, as JSON.
    pub body: serde_json::Value,
    /// The line of its `name` key.
    pub line: usize,
}

/// Where a compiled object comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Database { version: i64 },
}

/// A merged model that compiled.
#[derive(Debug, Clone)]
pub struct Merged {
    pub loaded: Loaded,
    /// The origin of every response-group object of the model, by kind and name.
    pub origins: BTreeMap<(ObjectKind, String), Origin>,
    /// The file's response-group objects, in file order.
    pub file_objects: Vec<FileObject>,
    /// The configuration file's text as compiled: a change made through the API is compiled
    /// against this text ([`compile_merged_text`]), not against whatever the file holds now, so
    /// an edit not yet signalled with SIGHUP never comes into force with it.
    pub file_text: std::sync::Arc<str>,
}

/// Compiles the file at `path` together with the database `objects`.
///
/// # Errors
/// The file's own problems (as [`super::load`] reports them) when the file alone does not
/// compile; otherwise every problem of the merged model, those of database objects named by
/// object and key.
pub fn load_merged(
    path: &Path,
    objects: &[DbObject],
    opts: &LoadOptions,
) -> Result<Merged, Vec<Diagnostic>> {
    load_merged_with_audio(path, objects, opts, super::readable_file)
}

/// [`load_merged`], checking every audio file with `audio` (the daemon passes the media
/// layer's WAV header probe, as [`super::load_with_audio`] does).
///
/// # Errors
/// As [`load_merged`].
pub(crate) fn load_merged_with_audio(
    path: &Path,
    objects: &[DbObject],
    opts: &LoadOptions,
    audio: super::AudioProbe,
) -> Result<Merged, Vec<Diagnostic>> {
    let env = compile::Environment {
        var: &|name| std::env::var(name).ok(),
        text_to_speech: || super::find_on_path("espeak-ng").is_some(),
        audio,
    };
    load_merged_with(path, objects, opts, &env)
}

/// [`load_merged`] with the process environment injected.
pub(crate) fn load_merged_with(
    path: &Path,
    objects: &[DbObject],
    opts: &LoadOptions,
    env: &compile::Environment<'_>,
) -> Result<Merged, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![diagnostic::file_error(
            path,
            format!("cannot read the configuration file: {e}"),
        )]
    })?;
    compile_merged(path, &text, objects, opts, env)
}

/// Compiles `text`, the configuration file at `path` as it was when the model in force was
/// loaded ([`Merged::file_text`]), together with the database `objects`; audio files are
/// checked with `audio`. What the API's changes go through.
///
/// # Errors
/// As [`load_merged`].
pub(crate) fn compile_merged_text(
    path: &Path,
    text: &str,
    objects: &[DbObject],
    opts: &LoadOptions,
    audio: super::AudioProbe,
) -> Result<Merged, Vec<Diagnostic>> {
    let env = compile::Environment {
        var: &|name| std::env::var(name).ok(),
        text_to_speech: || super::find_on_path("espeak-ng").is_some(),
        audio,
    };
    compile_merged(path, text, objects, opts, &env)
}

fn compile_merged(
    path: &Path,
    text: &str,
    objects: &[DbObject],
    opts: &LoadOptions,
    env: &compile::Environment<'_>,
) -> Result<Merged, Vec<Diagnostic>> {
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = source.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let file_map = SourceMap::new(path, text);
    let mut raw = raw::parse(&file_map, text).map_err(|mut d| {
        diagnostic::sort(&mut d);
        d
    })?;
    // The file alone first: a file object naming a database-only object is an error here.
    let alone = compile::compile(&raw, &file_map, source.clone(), &base, opts, env)?;
    let file_objects = file_objects(text, &raw, &file_map)?;
    let mut origins: BTreeMap<(ObjectKind, String), Origin> = file_objects
        .iter()
        .map(|o| {
            (
                (o.kind, o.name.clone()),
                Origin::File {
                    path: source.clone(),
                    line: o.line,
                },
            )
        })
        .collect();
    if objects.is_empty() {
        return Ok(Merged {
            loaded: alone,
            origins,
            file_objects,
            file_text: text.into(),
        });
    }

    let rendered = Rendered::new(text, objects)?;
    let combined = format!("{text}\n{}", rendered.text);
    let map = SourceMap::new(path, &combined);
    let db_map = SourceMap::new(path, &rendered.padded);
    let db_raw = raw::parse(&db_map, &rendered.padded).map_err(|d| rendered.relocate(d, &map))?;
    raw.agent_group.extend(db_raw.agent_group);
    raw.queue.extend(db_raw.queue);
    raw.hours.extend(db_raw.hours);
    raw.holiday_set.extend(db_raw.holiday_set);
    raw.workflow.extend(db_raw.workflow);
    let mut loaded = compile::compile(&raw, &map, source, &base, opts, env)
        .map_err(|d| rendered.relocate(d, &map))?;
    loaded.warnings = rendered.relocate(loaded.warnings, &map);
    for o in objects {
        origins.insert(
            (o.kind, o.name.clone()),
            Origin::Database { version: o.version },
        );
    }
    Ok(Merged {
        loaded,
        origins,
        file_objects,
        file_text: text.into(),
    })
}

/// The database objects rendered as TOML after the file's text.
struct Rendered<'a> {
    /// The rendered tables (what follows the file and one newline in the combined text).
    text: String,
    /// The file's text blanked (newlines kept), one newline, then [`Rendered::text`]: same
    /// offsets and lines as the combined text.
    padded: String,
    /// Offset in the combined text where each object's tables start, in order.
    starts: Vec<(usize, &'a DbObject)>,
    /// Offset in the combined text where the database objects start.
    db_start: usize,
}

impl<'a> Rendered<'a> {
    fn new(file_text: &str, objects: &'a [DbObject]) -> Result<Self, Vec<Diagnostic>> {
        let db_start = file_text.len() + 1;
        let mut text = String::new();
        let mut starts = Vec::new();
        let mut problems = Vec::new();
        let mut sorted: Vec<&DbObject> = objects.iter().collect();
        sorted.sort_by_key(|o| o.kind);
        for o in sorted {
            match render_object(o.kind, &o.name, &o.body) {
                Ok(toml) => {
                    starts.push((db_start + text.len(), o));
                    text.push_str(&toml);
                    text.push('\n');
                }
                Err(message) => problems.push(object_diagnostic(o.kind, &o.name, "", message)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut padded: String = file_text
            .bytes()
            .map(|b| if b == b'\n' { '\n' } else { ' ' })
            .collect();
        padded.push('\n');
        padded.push_str(&text);
        Ok(Self {
            text,
            padded,
            starts,
            db_start,
        })
    }

    /// The object whose rendered tables hold `line` of the combined text.
    fn object_at(&self, map: &SourceMap<'_>, line: usize) -> Option<&'a DbObject> {
        if line < map.position(self.db_start).0 {
            return None;
        }
        self.starts
            .iter()
            .rev()
            .find(|(start, _)| map.position(*start).0 <= line)
            .map(|(_, o)| *o)
    }

    /// Rewrites diagnostics located in the rendered objects to name the object and its key;
    /// "on line N" in a message, N a rendered line, names the object instead.
    fn relocate(&self, diagnostics: Vec<Diagnostic>, map: &SourceMap<'_>) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = diagnostics
            .into_iter()
            .map(|mut d| {
                let owner = self.object_at(map, d.line);
                d.message = self.relocate_lines(map, &d.message, owner.is_some());
                let Some(o) = owner else {
                    return d;
                };
                let key = strip_table_index(&d.key, o.kind.table()).to_owned();
                object_diagnostic_with(o.kind, &o.name, &key, d)
            })
            .collect();
        diagnostic::sort(&mut out);
        out
    }

    /// `about_object`: the message is about a database object, so a file line names the file.
    fn relocate_lines(&self, map: &SourceMap<'_>, message: &str, about_object: bool) -> String {
        const MARK: &str = "on line ";
        let Some(at) = message.find(MARK) else {
            return message.to_owned();
        };
        let rest = &message[at + MARK.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(line) = digits.parse::<usize>() else {
            return message.to_owned();
        };
        match self.object_at(map, line) {
            Some(o) => format!(
                "{}in the database ({}/{}){}",
                &message[..at],
                o.kind.collection(),
                o.name,
                &rest[digits.len()..]
            ),
            None if about_object => format!(
                "{}{MARK}{digits} of {}{}",
                &message[..at],
                map.file().display(),
                &rest[digits.len()..]
            ),
            None => message.to_owned(),
        }
    }
}

/// `queue[3].timeout.after` → `timeout.after`; `queue[3]` → ``.
fn strip_table_index<'k>(key: &'k str, table: &str) -> &'k str {
    let Some(rest) = key.strip_prefix(table).filter(|r| r.starts_with('[')) else {
        return key;
    };
    let Some(close) = rest.find(']') else {
        return key;
    };
    rest[close + 1..].trim_start_matches('.')
}

/// A diagnostic about a database object: `file` is `COLLECTION/NAME`, no line.
fn object_diagnostic(kind: ObjectKind, name: &str, key: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: super::Severity::Error,
        file: object_path(kind, name),
        line: 0,
        column: 0,
        key: key.to_owned(),
        message,
    }
}

fn object_diagnostic_with(kind: ObjectKind, name: &str, key: &str, d: Diagnostic) -> Diagnostic {
    Diagnostic {
        file: object_path(kind, name),
        line: 0,
        column: 0,
        key: key.to_owned(),
        ..d
    }
}

/// `queues/Sales`: how diagnostics and the API name a database object.
pub(crate) fn object_path(kind: ObjectKind, name: &str) -> PathBuf {
    PathBuf::from(format!("{}/{name}", kind.collection()))
}

/// One object as TOML: `[[queue]]` with its keys, `name` set to `name`.
///
/// # Errors
/// The body is not a JSON object, or holds a value TOML cannot write.
pub(crate) fn render_object(
    kind: ObjectKind,
    name: &str,
    body: &serde_json::Value,
) -> Result<String, String> {
    let mut table = body_table(body)?;
    table.insert("name".to_owned(), toml::Value::String(name.to_owned()));
    let mut doc = toml::Table::new();
    doc.insert(
        kind.table().to_owned(),
        toml::Value::Array(vec![toml::Value::Table(table)]),
    );
    toml::to_string(&doc).map_err(|e| format!("cannot be written as TOML: {e}"))
}

/// A JSON body as a TOML table, `null`s dropped (an absent key).
fn body_table(body: &serde_json::Value) -> Result<toml::Table, String> {
    let serde_json::Value::Object(_) = body else {
        return Err("the object must be a JSON object (the TOML table as JSON)".to_owned());
    };
    match json_to_toml(body)? {
        Some(toml::Value::Table(t)) => Ok(t),
        _ => Err("the object must be a JSON object (the TOML table as JSON)".to_owned()),
    }
}

fn json_to_toml(value: &serde_json::Value) -> Result<Option<toml::Value>, String> {
    use serde_json::Value as J;
    Ok(Some(match value {
        J::Null => return Ok(None),
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) => toml::Value::Float(f),
            (None, None) => return Err(format!("number {n} is out of range")),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => toml::Value::Array(
            items
                .iter()
                .map(json_to_toml)
                .filter_map(Result::transpose)
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => {
            let mut t = toml::Table::new();
            for (k, v) in map {
                if let Some(v) = json_to_toml(v)? {
                    t.insert(k.clone(), v);
                }
            }
            toml::Value::Table(t)
        }
    }))
}

/// A TOML value as JSON (the API's view of a file object).
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => J::from(*f),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Database objects as one TOML document in the contract's shape (`rgsd export`).
///
/// # Errors
/// An object whose body cannot be written as TOML (not a JSON object).
pub(crate) fn export_toml(objects: &[DbObject]) -> Result<String, String> {
    let mut sorted: Vec<&DbObject> = objects.iter().collect();
    sorted.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let mut out = String::new();
    for o in sorted {
        let toml = render_object(o.kind, &o.name, &o.body)
            .map_err(|e| format!("{}: {e}", object_path(o.kind, &o.name).display()))?;
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&toml);
    }
    Ok(out)
}

/// The response-group objects of a TOML document, as JSON bodies with their names (`rgsd
/// import`). Other tables (`[server]`, `[[registration]]`) are ignored.
///
/// # Errors
/// The text is not TOML, or an object has no string `name`.
pub(crate) fn objects_of_toml(
    text: &str,
) -> Result<Vec<(ObjectKind, String, serde_json::Value)>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for kind in ObjectKind::ALL {
        let Some(value) = doc.get(kind.table()) else {
            continue;
        };
        let toml::Value::Array(items) = value else {
            return Err(format!("`{}` must be a list of tables", kind.table()));
        };
        for (i, item) in items.iter().enumerate() {
            let body = toml_to_json(item);
            let Some(name) = body.get("name").and_then(serde_json::Value::as_str) else {
                return Err(format!("{}[{i}]: missing `name`", kind.table()));
            };
            out.push((kind, name.to_owned(), body.clone()));
        }
    }
    Ok(out)
}

/// The file's response-group objects as JSON, with the line of each one's `name`.
fn file_objects(
    text: &str,
    raw: &raw::RawConfig,
    map: &SourceMap<'_>,
) -> Result<Vec<FileObject>, Vec<Diagnostic>> {
    let doc: toml::Table = toml::from_str(text)
        .map_err(|e| vec![diagnostic::file_error(map.file(), e.to_string())])?;
    let name_lines = |kind: ObjectKind| -> Vec<usize> {
        let spans: Vec<Option<std::ops::Range<usize>>> = match kind {
            ObjectKind::AgentGroup => raw
                .agent_group
                .iter()
                .map(|o| o.get_ref().name.as_ref().map(toml::Spanned::span))
                .collect(),
            ObjectKind::Queue => raw
                .queue
                .iter()
                .map(|o| o.get_ref().name.as_ref().map(toml::Spanned::span))
                .collect(),
            ObjectKind::Hours => raw
                .hours
                .iter()
                .map(|o| o.get_ref().name.as_ref().map(toml::Spanned::span))
                .collect(),
            ObjectKind::HolidaySet => raw
                .holiday_set
                .iter()
                .map(|o| o.get_ref().name.as_ref().map(toml::Spanned::span))
                .collect(),
            ObjectKind::Workflow => raw
                .workflow
                .iter()
                .map(|o| o.get_ref().name.as_ref().map(toml::Spanned::span))
                .collect(),
        };
        spans
            .into_iter()
            .map(|s| s.map_or(0, |s| map.position(s.start).0))
            .collect()
    };
    let mut out = Vec::new();
    for kind in ObjectKind::ALL {
        let Some(toml::Value::Array(items)) = doc.get(kind.table()) else {
            continue;
        };
        let lines = name_lines(kind);
        for (i, item) in items.iter().enumerate() {
            let body = toml_to_json(item);
            let name = body
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_owned();
            out.push(FileObject {
                kind,
                name,
                body,
                line: lines.get(i).copied().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// The names of objects that `body` (an object of any kind, in the contract's shape) refers
/// to: queues (`queue = NAME` anywhere, in a workflow or an action), agent groups, hours and
/// holiday sets.
pub(crate) fn references(kind: ObjectKind, body: &serde_json::Value) -> Vec<(ObjectKind, String)> {
    let mut out = Vec::new();
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.trim().to_owned()],
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(|s| s.trim().to_owned()))
                .collect(),
            _ => Vec::new(),
        }
    };
    match kind {
        ObjectKind::Queue => {
            for g in strings(body.get("agent_groups")) {
                out.push((ObjectKind::AgentGroup, g));
            }
        }
        ObjectKind::Workflow => {
            for h in strings(body.get("business_hours")) {
                out.push((ObjectKind::Hours, h));
            }
            for h in strings(body.get("holidays")) {
                out.push((ObjectKind::HolidaySet, h));
            }
        }
        ObjectKind::AgentGroup | ObjectKind::Hours | ObjectKind::HolidaySet => {}
    }
    if matches!(kind, ObjectKind::Queue | ObjectKind::Workflow) {
        queue_names(body, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Every `queue = "NAME"` in a JSON tree (a workflow's queue, actions at any depth).
fn queue_names(value: &serde_json::Value, out: &mut Vec<(ObjectKind, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("queue", serde_json::Value::String(s)) => {
                        out.push((ObjectKind::Queue, s.trim().to_owned()));
                    }
                    _ => queue_names(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for i in items {
                queue_names(i, out);
            }
        }
        _ => {}
    }
}

/// RFC 7386 JSON merge patch: `patch` applied to `target`; `null` removes a key.
pub(crate) fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(serde_json::Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FILE: &str = r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
agents = ["sip:alice@127.0.0.1"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[workflow]]
name = "Sales line"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
"#;

    fn env() -> compile::Environment<'static> {
        compile::Environment {
            var: &|_| None,
            text_to_speech: || true,
            audio: crate::config::readable_file,
        }
    }

    fn load(file: &str, objects: &[DbObject]) -> Result<Merged, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        std::fs::write(&path, file).unwrap();
        load_merged_with(
            &path,
            objects,
            &LoadOptions {
                check_environment: false,
            },
            &env(),
        )
    }

    fn db(kind: ObjectKind, name: &str, body: serde_json::Value) -> DbObject {
        DbObject {
            kind,
            name: name.into(),
            body,
            version: 1,
        }
    }

    #[test]
    fn database_objects_join_the_file_and_may_refer_to_it() {
        let merged = load(
            FILE,
            &[
                db(
                    ObjectKind::Workflow,
                    "Support line",
                    json!({ "kind": "hunt_group", "uri": "sip:support@127.0.0.1", "queue": "Support",
                            "welcome": { "text": "Hello" } }),
                ),
                db(
                    ObjectKind::Queue,
                    "Support",
                    json!({ "agent_groups": ["Sales agents"], "timeout": { "after": "60s", "action": { "queue": "Sales" } } }),
                ),
            ],
        )
        .unwrap();
        let config = &merged.loaded.config;
        assert_eq!(config.workflows.len(), 2);
        assert_eq!(config.queues.len(), 2);
        assert_eq!(
            merged.origins[&(ObjectKind::Queue, "Support".to_owned())],
            Origin::Database { version: 1 }
        );
        assert!(matches!(
            merged.origins[&(ObjectKind::Queue, "Sales".to_owned())],
            Origin::File { line: 14, .. }
        ));
        assert_eq!(merged.file_objects.len(), 3);
        assert_eq!(
            merged.file_objects[1].body["agent_groups"][0],
            "Sales agents"
        );
    }

    #[test]
    fn problems_in_database_objects_name_the_object_and_key() {
        let errors = load(
            FILE,
            &[
                db(
                    ObjectKind::Queue,
                    "Support",
                    json!({ "agent_groups": ["Nobody"], "timeout": { "after": "5s", "action": "disconnect" } }),
                ),
                db(
                    ObjectKind::AgentGroup,
                    "Sales agents",
                    json!({ "agents": ["sip:bob@127.0.0.1"], "colour": "red" }),
                ),
            ],
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("agent-groups/Sales agents: error: colour: unknown key")),
            "{shown:#?}"
        );
        // Unknown keys stop before compile, as for the file; fix it and look again.
        let errors = load(
            FILE,
            &[
                db(
                    ObjectKind::Queue,
                    "Support",
                    json!({ "agent_groups": ["Nobody"], "timeout": { "after": "5s", "action": "disconnect" } }),
                ),
                db(
                    ObjectKind::AgentGroup,
                    "Sales agents",
                    json!({ "agents": ["sip:bob@127.0.0.1"] }),
                ),
            ],
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown.contains(
                &"queues/Support: error: timeout.after: 5s is below the minimum 10s".to_owned()
            ),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("queues/Support: error: agent_groups[0]:")),
            "{shown:#?}"
        );
        assert!(
            shown.iter().any(|s| s.starts_with(
                "agent-groups/Sales agents: error: name: duplicate agent group name \"Sales agents\"; the first is on line 10 of "
            )),
            "{shown:#?}"
        );
    }

    #[test]
    fn crlf_and_non_ascii_in_the_file_do_not_move_database_problems() {
        let file = FILE
            .replace("Sales agents", "Équipe ventes")
            .replace('\n', "\r\n");
        let errors = load(
            &file,
            &[db(
                ObjectKind::Queue,
                "Support",
                json!({ "agent_groups": ["Équipe ventes"], "timeout": { "after": "1s", "action": "disconnect" } }),
            )],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "queues/Support: error: timeout.after: 1s is below the minimum 10s"
        );
    }

    #[test]
    fn a_file_object_may_not_refer_to_a_database_object() {
        let file = FILE.replace("queue = \"Sales\"\n", "queue = \"Support\"\n");
        let errors = load(
            &file,
            &[db(
                ObjectKind::Queue,
                "Support",
                json!({ "agent_groups": ["Sales agents"] }),
            )],
        )
        .unwrap_err();
        assert!(errors[0].file.ends_with("rgsd.toml"), "{errors:?}");
        assert_eq!(errors[0].key, "workflow[0].queue");
    }

    #[test]
    fn duplicates_between_database_objects_name_the_first() {
        let errors = load(
            FILE,
            &[
                db(
                    ObjectKind::Workflow,
                    "A",
                    json!({ "kind": "hunt_group", "uri": "sip:a@127.0.0.1", "queue": "Sales" }),
                ),
                db(
                    ObjectKind::Workflow,
                    "B",
                    json!({ "kind": "hunt_group", "uri": "sip:a@127.0.0.1", "queue": "Sales" }),
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "workflows/B: error: uri: sip:a@127.0.0.1 is already the URI of the workflow in the database (workflows/A); each workflow needs its own URI"
        );
    }

    /// A database workflow on a number the file's workflow has: the error names both, and the
    /// number an export writes is the one read back.
    #[test]
    fn a_number_used_by_the_file_and_a_database_workflow_names_both() {
        let file = FILE.replace(
            "uri = \"sip:sales@127.0.0.1\"\n",
            "uri = \"sip:sales@127.0.0.1\"\nline_uri = \"tel:+14255550100\"\n",
        );
        let night = json!({ "kind": "hunt_group", "uri": "sip:night@127.0.0.1",
            "line_uri": "tel:+1-425-555-0100", "queue": "Sales" });
        let errors = load(&file, &[db(ObjectKind::Workflow, "Night", night.clone())]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(text.starts_with("workflows/Night: error: line_uri: workflow \"Night\" and workflow \"Sales line\" on line 21 of "), "{text}");
        assert!(
            text.ends_with("both have the number +14255550100; each number reaches one workflow"),
            "{text}"
        );

        let mut other = night;
        other["line_uri"] = json!("tel:+14255550199");
        let objects = [db(ObjectKind::Workflow, "Night", other)];
        let merged = load(&file, &objects).unwrap();
        let w = merged
            .loaded
            .config
            .workflows
            .iter()
            .find(|w| w.name == "Night")
            .unwrap();
        assert_eq!(
            w.line_uri.as_ref().unwrap().number.to_string(),
            "+14255550199"
        );
        let back = objects_of_toml(&export_toml(&objects).unwrap()).unwrap();
        assert_eq!(back[0].2["line_uri"], "tel:+14255550199");
    }

    #[test]
    fn export_and_import_round_trip() {
        let objects = vec![
            db(
                ObjectKind::Queue,
                "Support",
                json!({ "agent_groups": ["Sales agents"], "timeout": { "after": "60s", "action": { "queue": "Sales" } } }),
            ),
            db(
                ObjectKind::Hours,
                "Office",
                json!({ "monday": ["09:00-12:00", "13:00-17:00"] }),
            ),
        ];
        let text = export_toml(&objects).unwrap();
        let back = objects_of_toml(&text).unwrap();
        assert_eq!(back.len(), 2);
        for (kind, name, body) in back {
            let original = objects
                .iter()
                .find(|o| o.kind == kind && o.name == name)
                .unwrap();
            let mut expected = original.body.clone();
            expected["name"] = json!(name);
            assert_eq!(body, expected);
        }
    }

    #[test]
    fn references_find_queues_at_any_depth() {
        let body = json!({
            "queue": "A", "business_hours": "Office", "holidays": ["US"],
            "question": { "answers": [ { "action": { "question": { "answers": [ { "action": { "queue": "B" } } ] } } } ] }
        });
        assert_eq!(
            references(ObjectKind::Workflow, &body),
            [
                (ObjectKind::Queue, "A".to_owned()),
                (ObjectKind::Queue, "B".to_owned()),
                (ObjectKind::Hours, "Office".to_owned()),
                (ObjectKind::HolidaySet, "US".to_owned()),
            ]
        );
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({ "a": "b", "c": { "d": "e", "f": "g" } });
        merge_patch(&mut target, &json!({ "a": "z", "c": { "f": null } }));
        assert_eq!(target, json!({ "a": "z", "c": { "d": "e" } }));
        merge_patch(&mut target, &json!({ "c": ["x"] }));
        assert_eq!(target, json!({ "a": "z", "c": ["x"] }));
    }
}
