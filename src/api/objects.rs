//! The response-group collections: `/api/agent-groups`, `/api/queues`, `/api/hours`,
//! `/api/holiday-sets` and `/api/workflows`, each with list, create, and per object read,
//! replace (PUT), merge patch (PATCH, RFC 7386) and delete.
//!
//! # One contract, two owners
//!
//! A request or response body is the object's TOML table as JSON: the same keys and value shapes
//! as the configuration file (the README's configuration reference). Objects the file declares are
//! read-only here (409 `config_managed` naming the file and line); objects created here live in
//! the database. Responses add `source` (`"file"` or `"database"`), `version` (the ETag; 0 for
//! file objects) and, for file objects, `file` and `line`; agent groups add their `id` (the
//! sign-in endpoint's) and, when formal, the members `signed_in` (`/api/groups` is the same
//! groups by id, its writes an alias of these through [`change`]). These keys are ignored in
//! request bodies, except that `version` stands for `If-Match` when the header is absent.
//!
//! # One validation, applied live
//!
//! Every change compiles the whole merged model (the file plus every database object, the change
//! included) with the compile step `rgsd check` uses; a model with errors is refused with 422
//! and every problem named by object and key. An accepted change is written, audited (who, when,
//! the object before and after) and handed to `Objects::apply`, which swaps the running model:
//! the next call sees it, calls in progress keep theirs. Changes are serialised by one lock per
//! process.
//!
//! # Roles
//!
//! An administrator does everything. A manager sees the workflows that list them in `managers`,
//! the queues, agent groups, hours and holiday sets those workflows use, and the objects the
//! manager created; may create agent groups, queues, hours and holiday sets; may change what they
//! see, in their workflows everything but `uri`, `line_uri`, `srtp` and `kind`, adding managers but
//! never removing one; may delete what they see except workflows; may make an object use only objects they see.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::{Caller, ManagedScope};
use super::error::{ApiError, Refusal};
use super::extract::{Body, Params};
use crate::api::Shared;
use crate::config::merge::{self, DbObject, FileObject, Merged, ObjectKind};
use crate::config::model::Config;
use crate::config::{Diagnostic, LoadOptions};
use crate::store::objects::ObjectVersions;
use crate::store::{Role, Store, StoreError, StoredObject, Versioned};

/// Swaps a newly compiled model into the running daemon (prompts rendered, agent table and
/// queue owners carried over): [`Objects::through`] the runtime's reload.
pub type Apply =
    Arc<dyn Fn(Config) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

/// What the collections share: the apply hook, the change lock and the file's objects.
#[derive(Clone)]
pub struct Objects {
    apply: Apply,
    /// One change at a time: read the database, compile, write, apply.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The file's objects and every object's origin, as of the last compile.
    catalog: Arc<ArcSwap<Catalog>>,
    options: LoadOptions,
}

/// The file side of the last merged compile.
#[derive(Debug, Default)]
pub struct Catalog {
    pub file: PathBuf,
    pub file_objects: Vec<FileObject>,
    /// The file's text as the model in force compiled it (changes compile against it).
    pub file_text: Arc<str>,
    /// The version of every database object the model in force was compiled with.
    pub database: ObjectVersions,
}

impl Objects {
    /// `apply` swaps the running model; `merged` is the model in force at start.
    pub fn new(apply: Apply, merged: &Merged, options: LoadOptions) -> Self {
        let objects = Self {
            apply,
            lock: Arc::default(),
            catalog: Arc::default(),
            options,
        };
        objects.set_catalog(merged);
        objects
    }

    /// The [`Apply`] of a running daemon (and of the tests): an accepted change goes through
    /// the runtime's one reload, as SIGHUP does (groups stored, prompts rendered, agent table
    /// and queue owners updated, then the swap).
    pub fn through(acd: Arc<crate::acd::runtime::Acd>) -> Apply {
        Arc::new(move |config| {
            let acd = Arc::clone(&acd);
            Box::pin(async move {
                acd.reload(crate::acd::runtime::Change::Config(Box::new(config)))
                    .await
                    .map_err(anyhow::Error::from)
            })
        })
    }

    /// Records the file side of a merged model (start, reload, every change).
    pub fn set_catalog(&self, merged: &Merged) {
        self.catalog.store(Arc::new(Catalog {
            file: merged.loaded.config.source.clone(),
            file_objects: merged.file_objects.clone(),
            file_text: Arc::clone(&merged.file_text),
            database: merged
                .origins
                .iter()
                .filter_map(|(key, origin)| match origin {
                    merge::Origin::Database { version } => Some((key.clone(), *version)),
                    merge::Origin::File { .. } => None,
                })
                .collect(),
        }));
    }

    /// Whether the database holds other objects, or other versions, than the model in force
    /// was compiled with: another process changed them (or a change here is between its write
    /// and its apply; the change lock is taken to tell the two apart). Returns the database's
    /// versions when they differ.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn stale(&self, store: &Store) -> Result<Option<ObjectVersions>, StoreError> {
        let _guard = self.lock().await;
        let stored = store.object_versions().await?;
        Ok((stored != self.catalog.load().database).then_some(stored))
    }

    /// The change lock: SIGHUP reloads take it too, so a reload and a change never interleave.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// The configuration-loading options changes are compiled with.
    pub fn options(&self) -> LoadOptions {
        self.options
    }
}

/// Loads the file plus the database's objects (start-up, SIGHUP, `rgsd check --database`).
///
/// # Errors
/// The store cannot be read, or the merged model does not compile (every problem).
pub async fn load_with_database(
    path: PathBuf,
    store: &crate::store::Store,
    options: LoadOptions,
) -> Result<Merged, LoadError> {
    let objects: Vec<DbObject> = store
        .list_objects()
        .await
        .map_err(LoadError::Store)?
        .into_iter()
        .map(|o| o.object)
        .collect();
    tokio::task::spawn_blocking(move || {
        merge::load_merged_with_audio(&path, &objects, &options, crate::media::wav::config_probe)
    })
    .await
    .map_err(|e| {
        LoadError::Store(StoreError::Corrupt {
            column: "config compile task",
            value: e.to_string(),
        })
    })?
    .map_err(LoadError::Config)
}

/// Why [`load_with_database`] failed.
#[derive(Debug)]
pub enum LoadError {
    Store(StoreError),
    Config(Vec<Diagnostic>),
}

/// One problem with a change, as the 422 body lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `queues/Sales` for a database object, else the configuration file.
    pub object: String,
    /// The key at fault, relative to the object (`timeout.after`).
    pub field: String,
    pub message: String,
}

/// Why a change to an object failed.
#[derive(Debug)]
pub enum ObjectError {
    Api(ApiError),
    /// 422: the merged model does not compile.
    Invalid(Vec<Problem>),
    /// 409: the object is declared in the configuration file.
    FileOwned {
        file: String,
        line: usize,
    },
    /// 409: other objects refer to this one.
    InUse(Vec<String>),
    /// 409: the name is taken.
    Exists(String),
    /// 412: `If-Match` names an older version.
    Stale {
        current: i64,
    },
    /// 403 with the reason, when it names objects.
    Forbidden(String),
    /// 500: the model compiled but could not be put in force (prompts could not be rendered).
    NotApplied(String),
}

impl From<ApiError> for ObjectError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for ObjectError {
    fn from(e: StoreError) -> Self {
        Self::Api(ApiError::Store(e))
    }
}

impl IntoResponse for ObjectError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Api(e) => return e.into_response(),
            Self::Invalid(problems) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": format!("the change would make the configuration invalid: {}", problems.iter().map(|p| if p.field.is_empty() { format!("{}: {}", p.object, p.message) } else { format!("{}: {}: {}", p.object, p.field, p.message) }).collect::<Vec<_>>().join("; ")),
                    "code": "invalid_field",
                    "field": problems.first().map(|p| p.field.clone()),
                    "problems": problems,
                }),
            ),
            Self::FileOwned { file, line } => (
                StatusCode::CONFLICT,
                json!({
                    "error": format!("this object is declared in the configuration file {file} on line {line}: edit the file and reload (SIGHUP)"),
                    "code": "config_managed",
                    "file": file,
                    "line": line,
                }),
            ),
            Self::InUse(users) => (
                StatusCode::CONFLICT,
                json!({
                    "error": format!("in use by {}", users.join(", ")),
                    "code": "in_use",
                    "used_by": users,
                }),
            ),
            Self::Forbidden(reason) => (
                StatusCode::FORBIDDEN,
                json!({ "error": reason, "code": "forbidden" }),
            ),
            Self::Exists(what) => (
                StatusCode::CONFLICT,
                json!({ "error": format!("{what} already exists"), "code": "conflict" }),
            ),
            Self::Stale { current } => (
                StatusCode::PRECONDITION_FAILED,
                json!({
                    "error": format!("the object changed since you read it: it is at version {current}"),
                    "code": "stale_version",
                    "version": current,
                }),
            ),
            Self::NotApplied(reason) => {
                tracing::error!(%reason, "a change compiled but could not be applied");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": format!("the change could not be put in force: {reason}"), "code": "internal" }),
                )
            }
        };
        if status.is_client_error() {
            tracing::info!(status = status.as_u16(), error = %body["error"], "configuration change refused");
        }
        (status, Json(body)).into_response()
    }
}

/// The keys a response adds to the object's table; ignored in request bodies.
const META_KEYS: [&str; 6] = ["source", "version", "file", "line", "id", "signed_in"];

/// Adds to agent groups as returned what `/api/groups` used to be the only place for: the
/// group's `id` (for `PUT /api/groups/{id}/sign-ins/{agent_id}`) and, for a formal group, the
/// members `signed_in` now. Other kinds are left as they are.
async fn add_sign_ins(
    shared: &Shared,
    kind: ObjectKind,
    docs: &mut [Value],
) -> Result<(), ObjectError> {
    if kind != ObjectKind::AgentGroup || docs.is_empty() {
        return Ok(());
    }
    let groups = shared.store.list_groups().await?;
    let sign_ins = shared.store.sign_in_state().await?;
    for doc in docs {
        let Some(name) = doc.get("name").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        let Value::Object(map) = doc else { continue };
        if let Some(g) = groups.iter().find(|g| g.name == name) {
            map.insert("id".into(), json!(g.id.0));
        }
        // `sign_in_state` reports formal groups only; an informal group's members are always in.
        let formal = map.get("participation").and_then(Value::as_str) == Some("formal");
        if formal {
            let signed_in: Vec<&str> = sign_ins
                .iter()
                .filter(|s| s.group == name)
                .map(|s| s.agent.as_str())
                .collect();
            map.insert("signed_in".into(), json!(signed_in));
        }
    }
    Ok(())
}

/// An object as returned: its table plus where it comes from.
fn doc_of_database(o: &StoredObject) -> Value {
    let mut body = o.object.body.clone();
    if let Value::Object(map) = &mut body {
        map.insert("name".into(), json!(o.object.name));
        map.insert("source".into(), json!("database"));
        map.insert("version".into(), json!(o.object.version));
    }
    body
}

fn doc_of_file(o: &FileObject, file: &std::path::Path) -> Value {
    let mut body = o.body.clone();
    if let Value::Object(map) = &mut body {
        map.insert("source".into(), json!("file"));
        map.insert("version".into(), json!(0));
        map.insert("file".into(), json!(file.display().to_string()));
        map.insert("line".into(), json!(o.line));
    }
    body
}

/// The JSON schema of an object as returned (the contract's table plus these keys).
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectDoc {
    pub name: String,
    /// `"file"` or `"database"`.
    pub source: String,
    /// The ETag; 0 for file objects.
    pub version: i64,
    /// File objects only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// File objects only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Agent groups only: the group's id, for `PUT /api/groups/{id}/sign-ins/{agent_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Formal agent groups only: the members signed in now (SIP URIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_in: Option<Vec<String>>,
    /// Every other key of the object's TOML table, as JSON.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub table: serde_json::Map<String, Value>,
}

/// The JSON schema of a request body: the object's TOML table as JSON.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct ObjectBody(pub serde_json::Map<String, Value>);

/// What a manager may see: the objects their workflows use, and what they created.
fn visible(
    caller: &Caller,
    config: &Config,
    kind: ObjectKind,
    name: &str,
    created_by: Option<&str>,
) -> bool {
    match caller.role() {
        Role::Admin => true,
        Role::Agent => false,
        Role::Manager => {
            if created_by == Some(caller.subject()) {
                return true;
            }
            let scope = ManagedScope::of(config, caller.subject());
            match kind {
                ObjectKind::Workflow => scope.workflows.contains(name),
                ObjectKind::Queue => scope.queues.contains(name),
                ObjectKind::AgentGroup => scope.groups.contains(name),
                ObjectKind::Hours | ObjectKind::HolidaySet => config
                    .workflows
                    .iter()
                    .filter(|w| scope.workflows.contains(&w.name))
                    .any(|w| match kind {
                        ObjectKind::Hours => w
                            .business_hours
                            .is_some_and(|h| config.hours_set(h).name == name),
                        _ => w
                            .holidays
                            .iter()
                            .any(|h| config.holiday_set(*h).name == name),
                    }),
            }
        }
    }
}

fn require_manager_or_admin(caller: &Caller) -> Result<(), ObjectError> {
    caller.require_admin_or_manager().map_err(ObjectError::Api)
}

/// `If-Match: "3"` (or `3`, `W/"3"`); `*` and no header mean any version.
fn if_match(headers: &HeaderMap, body: Option<&Value>) -> Result<Option<i64>, ObjectError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let text = v.to_str().unwrap_or_default().trim();
        if text == "*" {
            return Ok(None);
        }
        let tag = text.trim_start_matches("W/").trim_matches('"');
        return tag.parse().map(Some).map_err(|_| {
            ObjectError::Api(ApiError::InvalidField {
                field: "If-Match",
                reason: format!("{text:?} is not a version of this object (the ETag of a GET)"),
            })
        });
    }
    Ok(body.and_then(|b| b.get("version")).and_then(Value::as_i64))
}

/// The request body without the response-only keys; `name` checked against `name`.
fn clean_body(body: &Value, name: Option<&str>) -> Result<Value, ObjectError> {
    let Value::Object(map) = body else {
        return Err(ObjectError::Api(ApiError::Malformed(
            "the body must be a JSON object: the object's TOML table as JSON".into(),
        )));
    };
    let mut map = map.clone();
    for k in META_KEYS {
        map.remove(k);
    }
    if let (Some(expected), Some(given)) = (name, map.get("name"))
        && given.as_str() != Some(expected)
    {
        return Err(ObjectError::Api(ApiError::InvalidField {
            field: "name",
            reason: "an object cannot be renamed: create one with the new name and delete this one"
                .into(),
        }));
    }
    map.remove("name");
    Ok(Value::Object(map))
}

/// A change: the new body of `name`, or its removal.
pub(super) enum Change {
    Create(Value),
    Replace(Value),
    Delete,
}

impl Change {
    fn verb(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Replace(_) => "update",
            Self::Delete => "delete",
        }
    }
}

/// Compiles the model with the change, writes it, audits it and puts it in force.
/// `/api/groups` (`api::agents`) writes its groups through this too, so they route calls.
pub(super) async fn change(
    shared: &Shared,
    caller: &Caller,
    kind: ObjectKind,
    name: &str,
    change: Change,
    expected: Option<i64>,
) -> Result<Option<StoredObject>, ObjectError> {
    let objects = &shared.objects;
    let _guard = objects.lock().await;
    let catalog = objects.catalog.load_full();
    let file_object = catalog
        .file_objects
        .iter()
        .find(|o| o.kind == kind && o.name == name);
    let stored = shared.store.list_objects().await?;
    let before = stored
        .iter()
        .find(|o| o.object.kind == kind && o.object.name == name)
        .cloned();
    if matches!(change, Change::Replace(_) | Change::Delete)
        && file_object.is_none()
        && before.is_none()
    {
        return Err(ObjectError::Api(ApiError::NotFound("object")));
    }
    let config = shared.config.load_full();
    let old = match (file_object, &before) {
        (Some(f), _) => Some((&f.body, None)),
        (None, Some(b)) => Some((&b.object.body, Some(b.created_by.as_str()))),
        (None, None) => None,
    };
    check_role(caller, &config, kind, name, &change, old)?;
    if let (Role::Manager, Change::Create(body) | Change::Replace(body)) = (caller.role(), &change)
    {
        let before_refs = old
            .map(|(b, _)| merge::references(kind, b))
            .unwrap_or_default();
        let foreign: Vec<String> = merge::references(kind, body)
            .into_iter()
            .filter(|r| !before_refs.contains(r))
            .filter(|(k, n)| {
                let created_by = stored
                    .iter()
                    .find(|o| o.object.kind == *k && &o.object.name == n)
                    .map(|o| o.created_by.as_str());
                !visible(caller, &config, *k, n, created_by)
            })
            .map(|(k, n)| format!("{k} {n:?}"))
            .collect();
        if !foreign.is_empty() {
            return Err(ObjectError::Forbidden(format!(
                "a manager may use only the objects their workflows use and the objects they created, not {}",
                foreign.join(", ")
            )));
        }
    }
    if let Some(f) = file_object {
        return Err(match change {
            Change::Create(_) => ObjectError::Exists(format!(
                "{kind} {name:?} (declared in the configuration file {} on line {})",
                catalog.file.display(),
                f.line
            )),
            Change::Replace(_) | Change::Delete => ObjectError::FileOwned {
                file: catalog.file.display().to_string(),
                line: f.line,
            },
        });
    }
    if let (Change::Create(_), Some(_)) = (&change, &before) {
        return Err(ObjectError::Exists(format!("{kind} {name:?}")));
    }
    if let (Some(expected), Some(before)) = (expected, &before)
        && expected != before.object.version
    {
        return Err(ObjectError::Stale {
            current: before.object.version,
        });
    }
    if let Change::Delete = change {
        let users: Vec<String> = stored
            .iter()
            .filter(|o| {
                merge::references(o.object.kind, &o.object.body).contains(&(kind, name.to_owned()))
            })
            .map(|o| format!("{} {:?}", o.object.kind, o.object.name))
            .collect();
        if !users.is_empty() {
            return Err(ObjectError::InUse(users));
        }
    }

    let mut next: Vec<DbObject> = stored
        .iter()
        .map(|o| o.object.clone())
        .filter(|o| !(o.kind == kind && o.name == name))
        .collect();
    match &change {
        Change::Create(body) | Change::Replace(body) => next.push(DbObject {
            kind,
            name: name.to_owned(),
            body: body.clone(),
            version: before.as_ref().map_or(1, |b| b.object.version + 1),
        }),
        Change::Delete => {}
    }
    // Compiled against the file as the model in force read it: an edit of the file not yet
    // signalled with SIGHUP stays out, and audio files are probed as SIGHUP probes them.
    let path = config.source.clone();
    let text = Arc::clone(&objects.catalog.load().file_text);
    let options = objects.options();
    let merged = tokio::task::spawn_blocking(move || {
        merge::compile_merged_text(
            &path,
            &text,
            &next,
            &options,
            crate::media::wav::config_probe,
        )
    })
    .await
    .map_err(|e| ObjectError::NotApplied(e.to_string()))?
    .map_err(|d| ObjectError::Invalid(problems(&d)))?;

    let actor = caller.subject();
    // The model was compiled against `before`: write only if it is still what is stored (another
    // rgsd process on the same database may have changed it since).
    let compiled_against = before.as_ref().map(|b| b.object.version);
    let after = match &change {
        Change::Create(body) => Some(shared.store.create_object(kind, name, body, actor).await?),
        Change::Replace(body) => {
            match shared
                .store
                .replace_object(kind, name, body, compiled_against, actor)
                .await?
            {
                Versioned::Done(o) => Some(o),
                Versioned::Stale { current } => return Err(ObjectError::Stale { current }),
            }
        }
        Change::Delete => match shared
            .store
            .delete_object(kind, name, compiled_against)
            .await?
        {
            Versioned::Done(()) => None,
            Versioned::Stale { current } => return Err(ObjectError::Stale { current }),
        },
    };
    if let Err(e) = (objects.apply)(merged.loaded.config.clone()).await {
        undo(shared, kind, name, before.as_ref(), actor).await;
        return Err(ObjectError::NotApplied(format!("{e:#}")));
    }
    objects.set_catalog(&merged);
    shared
        .store
        .audit(
            actor,
            &format!("{}.{}", kind.table(), change.verb()),
            name,
            &json!({
                "before": before.as_ref().map(doc_of_database),
                "after": after.as_ref().map(doc_of_database),
            }),
        )
        .await?;
    tracing::info!(
        kind = kind.table(),
        name,
        actor,
        change = change.verb(),
        "configuration object changed"
    );
    Ok(after)
}

/// Puts the database back as it was before a change that could not be applied.
async fn undo(
    shared: &Shared,
    kind: ObjectKind,
    name: &str,
    before: Option<&StoredObject>,
    actor: &str,
) {
    let result = match before {
        None => shared
            .store
            .delete_object(kind, name, None)
            .await
            .map(|_| ()),
        Some(b) => match shared.store.get_object(kind, name).await {
            Ok(_) => shared
                .store
                .replace_object(kind, name, &b.object.body, None, actor)
                .await
                .map(|_| ()),
            Err(_) => shared
                .store
                .create_object(kind, name, &b.object.body, actor)
                .await
                .map(|_| ()),
        },
    };
    if let Err(e) = result {
        tracing::error!(error = %e, kind = kind.table(), name, "could not undo a change that was not applied");
    }
}

/// The compile's errors as the 422 body lists them (warnings left out).
fn problems(diagnostics: &[Diagnostic]) -> Vec<Problem> {
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| Problem {
            object: d.file.display().to_string(),
            field: d.key.clone(),
            message: d.message.clone(),
        })
        .collect()
}

/// The role rules for a change (see the module docs).
fn check_role(
    caller: &Caller,
    config: &Config,
    kind: ObjectKind,
    name: &str,
    change: &Change,
    old: Option<(&Value, Option<&str>)>,
) -> Result<(), ObjectError> {
    let forbid = |r: Refusal| Err(ObjectError::Api(ApiError::Forbidden(r)));
    match caller.role() {
        Role::Admin => Ok(()),
        Role::Agent => forbid(Refusal::AdminOnly),
        Role::Manager => {
            let created_by = old.and_then(|(_, by)| by);
            match change {
                Change::Create(_) if kind == ObjectKind::Workflow => forbid(Refusal::AdminOnly),
                Change::Create(_) => Ok(()),
                Change::Delete if kind == ObjectKind::Workflow => forbid(Refusal::AdminOnly),
                _ if !visible(caller, config, kind, name, created_by) => forbid(Refusal::NotYours),
                Change::Delete => Ok(()),
                Change::Replace(body) if kind == ObjectKind::Workflow => {
                    let old = old.map_or(&Value::Null, |(body, _)| body);
                    if old.get("uri") != body.get("uri") || old.get("kind") != body.get("kind") {
                        return forbid(Refusal::ManagerMayNotChangeUriOrKind);
                    }
                    if old.get("line_uri") != body.get("line_uri") {
                        return forbid(Refusal::ManagerMayNotChangeLineUri);
                    }
                    if old.get("srtp") != body.get("srtp") {
                        return forbid(Refusal::ManagerMayNotChangeSrtp);
                    }
                    let managers = |v: &Value| -> BTreeSet<String> {
                        v.get("managers")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|m| m.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    if !managers(old).is_subset(&managers(body)) {
                        return forbid(Refusal::ManagerMayNotRemoveManagers);
                    }
                    Ok(())
                }
                Change::Replace(_) => Ok(()),
            }
        }
    }
}

/// Who owns `name`: `Some("file")`, `Some("database")`, or `None` when neither declares it.
pub(super) async fn owner(
    shared: &Shared,
    kind: ObjectKind,
    name: &str,
) -> Result<Option<&'static str>, StoreError> {
    let in_file = shared
        .objects
        .catalog
        .load()
        .file_objects
        .iter()
        .any(|o| o.kind == kind && o.name == name);
    if in_file {
        return Ok(Some("file"));
    }
    match shared.store.get_object(kind, name).await {
        Ok(_) => Ok(Some("database")),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `caller` may see the `kind` object `name`: an administrator everything; a manager
/// what their workflows use and what they created; an agent nothing.
pub(super) async fn may_see(
    shared: &Shared,
    caller: &Caller,
    kind: ObjectKind,
    name: &str,
) -> Result<bool, StoreError> {
    let created_by = match shared.store.get_object(kind, name).await {
        Ok(o) => Some(o.created_by),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(visible(
        caller,
        &shared.config.load(),
        kind,
        name,
        created_by.as_deref(),
    ))
}

/// `o` as returned, with its `ETag` (and, for an agent group, its sign-in state).
async fn with_etag(
    shared: &Shared,
    status: StatusCode,
    o: &StoredObject,
) -> Result<Response, ObjectError> {
    let mut doc = [doc_of_database(o)];
    add_sign_ins(shared, o.object.kind, &mut doc).await?;
    let [doc] = doc;
    let mut res = (status, Json(doc)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", o.object.version)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    Ok(res)
}

async fn list(shared: Shared, caller: Caller, kind: ObjectKind) -> Result<Response, ObjectError> {
    require_manager_or_admin(&caller)?;
    let config = shared.config.load_full();
    let catalog = shared.objects.catalog.load_full();
    let mut out: Vec<Value> = catalog
        .file_objects
        .iter()
        .filter(|o| o.kind == kind && visible(&caller, &config, kind, &o.name, None))
        .map(|o| doc_of_file(o, &catalog.file))
        .collect();
    out.extend(
        shared
            .store
            .list_objects()
            .await?
            .iter()
            .filter(|o| {
                o.object.kind == kind
                    && visible(&caller, &config, kind, &o.object.name, Some(&o.created_by))
            })
            .map(doc_of_database),
    );
    add_sign_ins(&shared, kind, &mut out).await?;
    Ok(Json(out).into_response())
}

async fn get_one(
    shared: Shared,
    caller: Caller,
    kind: ObjectKind,
    name: String,
) -> Result<Response, ObjectError> {
    require_manager_or_admin(&caller)?;
    let config = shared.config.load_full();
    let catalog = shared.objects.catalog.load_full();
    if let Some(o) = catalog
        .file_objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
    {
        if !visible(&caller, &config, kind, &name, None) {
            return Err(ApiError::Forbidden(Refusal::NotYours).into());
        }
        let mut doc = [doc_of_file(o, &catalog.file)];
        add_sign_ins(&shared, kind, &mut doc).await?;
        let [doc] = doc;
        return Ok(Json(doc).into_response());
    }
    let o = match shared.store.get_object(kind, &name).await {
        Ok(o) => o,
        Err(StoreError::NotFound(_)) => return Err(ApiError::NotFound("object").into()),
        Err(e) => return Err(e.into()),
    };
    if !visible(&caller, &config, kind, &name, Some(&o.created_by)) {
        return Err(ApiError::Forbidden(Refusal::NotYours).into());
    }
    with_etag(&shared, StatusCode::OK, &o).await
}

async fn create(
    shared: Shared,
    caller: Caller,
    kind: ObjectKind,
    body: Value,
) -> Result<Response, ObjectError> {
    require_manager_or_admin(&caller)?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(ApiError::InvalidField {
            field: "name",
            reason: "missing required key `name`".into(),
        })?
        .to_owned();
    let body = clean_body(&body, None)?;
    let created = change(&shared, &caller, kind, &name, Change::Create(body), None).await?;
    let created = created.ok_or(ApiError::NotFound("object"))?;
    with_etag(&shared, StatusCode::CREATED, &created).await
}

async fn replace(
    shared: Shared,
    caller: Caller,
    kind: ObjectKind,
    name: String,
    headers: &HeaderMap,
    body: Value,
) -> Result<Response, ObjectError> {
    require_manager_or_admin(&caller)?;
    let expected = if_match(headers, Some(&body))?;
    let body = clean_body(&body, Some(&name))?;
    let after = change(
        &shared,
        &caller,
        kind,
        &name,
        Change::Replace(body),
        expected,
    )
    .await?;
    let after = after.ok_or(ApiError::NotFound("object"))?;
    with_etag(&shared, StatusCode::OK, &after).await
}

async fn patch(
    shared: Shared,
    caller: Caller,
    kind: ObjectKind,
    name: String,
    headers: &HeaderMap,
    patch: Value,
) -> Result<Response, ObjectError> {
    require_manager_or_admin(&caller)?;
    let expected = if_match(headers, Some(&patch))?;
    let after = patch_object(&shared, &caller, kind, &name, expected, &patch).await?;
    with_etag(&shared, StatusCode::OK, &after).await
}

/// Applies a JSON merge patch (RFC 7386) to `name` through [`change`]; `expected` is the
/// version the patch is based on. `/api/groups/{id}/members` patches `agents` through this.
pub(super) async fn patch_object(
    shared: &Shared,
    caller: &Caller,
    kind: ObjectKind,
    name: &str,
    expected: Option<i64>,
    patch: &Value,
) -> Result<StoredObject, ObjectError> {
    let patch = clean_body(patch, Some(name))?;
    if patch.as_object().is_some_and(serde_json::Map::is_empty) {
        return Err(ApiError::InvalidField {
            field: "body",
            reason: "no field to change".into(),
        }
        .into());
    }
    // A file object is refused by `change` (with its file and line) after the role checks,
    // which compare with its body.
    let file_body = shared
        .objects
        .catalog
        .load()
        .file_objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .map(|o| clean_body(&o.body, None))
        .transpose()?;
    let current = match file_body {
        Some(body) => body,
        None => match shared.store.get_object(kind, name).await {
            Ok(o) => o.object.body,
            Err(StoreError::NotFound(_)) => return Err(ApiError::NotFound("object").into()),
            Err(e) => return Err(e.into()),
        },
    };
    let mut body = current;
    merge::merge_patch(&mut body, &patch);
    change(shared, caller, kind, name, Change::Replace(body), expected)
        .await?
        .ok_or_else(|| ApiError::NotFound("object").into())
}

async fn delete(
    shared: Shared,
    caller: Caller,
    kind: ObjectKind,
    name: String,
    headers: &HeaderMap,
) -> Result<Response, ObjectError> {
    require_manager_or_admin(&caller)?;
    let expected = if_match(headers, None)?;
    change(&shared, &caller, kind, &name, Change::Delete, expected).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The six handlers of one collection, each documented for the OpenAPI document.
macro_rules! collection {
    ($module:ident, $kind:expr, $tag:literal, $list:literal, $one:literal) => {
        pub mod $module {
            use super::*;

            #[utoipa::path(get, path = $list, tag = $tag,
                responses((status = 200, body = Vec<ObjectDoc>), (status = "4XX", body = crate::api::error::ErrorBody)))]
            pub async fn list(State(shared): State<Shared>, caller: Caller) -> Result<Response, ObjectError> {
                super::list(shared, caller, $kind).await
            }

            #[utoipa::path(post, path = $list, tag = $tag, request_body = ObjectBody,
                responses((status = 201, body = ObjectDoc, headers(("ETag" = String))),
                    (status = 409, description = "the name is taken"),
                    (status = 422, description = "invalid: every problem by object and field"),
                    (status = "4XX", body = crate::api::error::ErrorBody)))]
            pub async fn create(State(shared): State<Shared>, caller: Caller, Body(body): Body<Value>) -> Result<Response, ObjectError> {
                super::create(shared, caller, $kind, body).await
            }

            #[utoipa::path(get, path = $one, tag = $tag,
                params(("name" = String, Path, description = "object name, URL-encoded")),
                responses((status = 200, body = ObjectDoc, headers(("ETag" = String))), (status = "4XX", body = crate::api::error::ErrorBody)))]
            pub async fn get(State(shared): State<Shared>, caller: Caller, Params(name): Params<String>) -> Result<Response, ObjectError> {
                super::get_one(shared, caller, $kind, name).await
            }

            #[utoipa::path(put, path = $one, tag = $tag, request_body = ObjectBody,
                params(("name" = String, Path, description = "object name, URL-encoded"),
                    ("If-Match" = Option<String>, Header, description = "the version (ETag) the change is based on")),
                responses((status = 200, body = ObjectDoc, headers(("ETag" = String))),
                    (status = 409, description = "declared in the configuration file"),
                    (status = 412, description = "stale If-Match"),
                    (status = 422, description = "invalid: every problem by object and field"),
                    (status = "4XX", body = crate::api::error::ErrorBody)))]
            pub async fn replace(State(shared): State<Shared>, caller: Caller, Params(name): Params<String>, headers: HeaderMap, Body(body): Body<Value>) -> Result<Response, ObjectError> {
                super::replace(shared, caller, $kind, name, &headers, body).await
            }

            #[utoipa::path(patch, path = $one, tag = $tag, request_body(content = ObjectBody, content_type = "application/merge-patch+json"),
                params(("name" = String, Path, description = "object name, URL-encoded"),
                    ("If-Match" = Option<String>, Header, description = "the version (ETag) the change is based on")),
                responses((status = 200, body = ObjectDoc, headers(("ETag" = String))),
                    (status = 409, description = "declared in the configuration file"),
                    (status = 412, description = "stale If-Match"),
                    (status = 422, description = "invalid: every problem by object and field"),
                    (status = "4XX", body = crate::api::error::ErrorBody)))]
            pub async fn patch(State(shared): State<Shared>, caller: Caller, Params(name): Params<String>, headers: HeaderMap, Body(body): Body<Value>) -> Result<Response, ObjectError> {
                super::patch(shared, caller, $kind, name, &headers, body).await
            }

            #[utoipa::path(delete, path = $one, tag = $tag,
                params(("name" = String, Path, description = "object name, URL-encoded"),
                    ("If-Match" = Option<String>, Header, description = "the version (ETag) the change is based on")),
                responses((status = 204, description = "deleted"),
                    (status = 409, description = "declared in the configuration file, or used by other objects"),
                    (status = 412, description = "stale If-Match"),
                    (status = "4XX", body = crate::api::error::ErrorBody)))]
            pub async fn delete(State(shared): State<Shared>, caller: Caller, Params(name): Params<String>, headers: HeaderMap) -> Result<Response, ObjectError> {
                super::delete(shared, caller, $kind, name, &headers).await
            }
        }
    };
}

collection!(
    agent_groups,
    ObjectKind::AgentGroup,
    "agent-groups",
    "/api/agent-groups",
    "/api/agent-groups/{name}"
);
collection!(
    queues,
    ObjectKind::Queue,
    "queues",
    "/api/queues",
    "/api/queues/{name}"
);
collection!(
    hours,
    ObjectKind::Hours,
    "hours",
    "/api/hours",
    "/api/hours/{name}"
);
collection!(
    holiday_sets,
    ObjectKind::HolidaySet,
    "holiday-sets",
    "/api/holiday-sets",
    "/api/holiday-sets/{name}"
);
collection!(
    workflows,
    ObjectKind::Workflow,
    "workflows",
    "/api/workflows",
    "/api/workflows/{name}"
);
