//! Who is calling ([`Caller`]): a script with a bearer token or a person with a session cookie
//! (see [`super::session`]); and what a manager may touch ([`ManagedScope`]). Both credentials
//! carry the same role and subject and pass the same checks.
//!
//! Roles (`docs/behaviour.md`, Roles): an administrator may do everything; a manager acts on the
//! workflows that list their subject in `managers`, and through them on the queues those
//! workflows reach and those queues' agent groups; an agent acts on their own sign-in and state.

use std::collections::{BTreeSet, HashMap};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::Shared;
use super::error::{ApiError, Refusal};
use super::session::{SessionPolicy, Sessions, csrf_ok, session_cookie, stream_key};
use crate::config::model::{ActionTarget, CallAction, Config, QueueId};

use crate::store::{Role, SessionId, TokenInfo};

/// The authenticated caller of a request: who (as [`TokenInfo`]: role and subject; for a
/// session, `id` is the negated session id, under which its event streams are ended, and
/// `created_at` the sign-in time) and by which credential.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo, pub Credential);

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer …` (or `access_token` on the event stream).
    Token,
    /// The session cookie of a signed-in user.
    Session(SessionId),
}

impl Caller {
    pub fn role(&self) -> Role {
        self.0.role
    }

    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// Refuses everyone but an administrator.
    ///
    /// # Errors
    /// [`Refusal::AdminOnly`].
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.0.role {
            Role::Admin => Ok(()),
            Role::Manager | Role::Agent => Err(ApiError::Forbidden(Refusal::AdminOnly)),
        }
    }

    /// Refuses agents; managers and administrators pass (callers then narrow by scope).
    ///
    /// # Errors
    /// [`Refusal::AdminOnly`] for an agent token.
    pub fn require_admin_or_manager(&self) -> Result<(), ApiError> {
        match self.0.role {
            Role::Admin | Role::Manager => Ok(()),
            Role::Agent => Err(ApiError::Forbidden(Refusal::AdminOnly)),
        }
    }

    /// What this caller may see and change: everything for an administrator, their scope for a
    /// manager, nothing shared for an agent.
    pub fn scope(&self, config: &Config) -> Scope {
        match self.0.role {
            Role::Admin => Scope::All,
            Role::Manager => Scope::Managed(ManagedScope::of(config, &self.0.subject)),
            Role::Agent => Scope::Managed(ManagedScope::default()),
        }
    }
}

/// The part of the configuration a caller may act on.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Managed(ManagedScope),
}

impl super::live::Visibility for Scope {
    fn everything(&self) -> bool {
        matches!(self, Self::All)
    }
    fn workflow(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Managed(m) => m.workflows.contains(name),
        }
    }
    fn queue(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Managed(m) => m.queues.contains(name),
        }
    }
    fn group(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Managed(m) => m.groups.contains(name),
        }
    }
}

/// Names of the workflows a manager manages, the queues they reach and those queues' groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedScope {
    pub workflows: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl ManagedScope {
    /// The scope of `subject` (a manager's SIP URI) in `config`. A queue is reached when a
    /// workflow starts in it, an IVR answer sends calls to it, or the time-out or overflow action
    /// of a reached queue does.
    pub fn of(config: &Config, subject: &str) -> Self {
        let mut scope = Self::default();
        let mut todo: Vec<QueueId> = Vec::new();
        for w in &config.workflows {
            if !w.managers.iter().any(|m| m.as_str() == subject) {
                continue;
            }
            scope.workflows.insert(w.name.clone());
            push_queue(&w.start, &mut todo);
            for q in &w.questions {
                for a in &q.answers {
                    push_action(&a.action, &mut todo);
                }
            }
        }
        let mut seen: HashMap<QueueId, ()> = HashMap::new();
        // Bounded: each queue is expanded once.
        while let Some(id) = todo.pop() {
            if seen.insert(id, ()).is_some() || id.0 as usize >= config.queues.len() {
                continue;
            }
            let queue = config.queue(id);
            scope.queues.insert(queue.name.clone());
            for g in &queue.agent_groups {
                scope.groups.insert(config.agent_group(*g).name.clone());
            }
            if let Some(t) = &queue.timeout {
                push_action(&t.action, &mut todo);
            }
            if let Some(o) = &queue.overflow {
                push_action(&o.action, &mut todo);
            }
        }
        scope
    }
}

fn push_action(action: &CallAction, todo: &mut Vec<QueueId>) {
    push_queue(&action.target, todo);
}

fn push_queue(target: &ActionTarget, todo: &mut Vec<QueueId>) {
    if let ActionTarget::Queue(q) = target {
        todo.push(*q);
    }
}

/// The one route that takes its token from the query string.
const STREAM_PATH: &str = "/api/live/stream";

/// The token from `Authorization: Bearer …`, or, on the SSE stream only (`EventSource` cannot
/// set headers), from an `access_token` query parameter. Elsewhere a token in the URL is
/// ignored: URLs end up in logs and browser history.
fn bearer(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if parts.uri.path() != STREAM_PATH {
        return None;
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|kv| {
        kv.strip_prefix("access_token=")
            .map(|t| t.trim().to_owned())
    })
}

/// An event stream is authenticated once, when it opens; one opened with a session must still
/// end when the session does. Sign-out ends it through [`Revocations`]; this ends it at the
/// session's absolute expiry the same way. (While the stream is open the page is in use, so the
/// idle expiry does not apply to it.)
///
/// [`Revocations`]: super::tokens::Revocations
fn end_stream_at_expiry(state: &Shared, session: &crate::store::SessionInfo) {
    let left = (session.expires_at - state.clock.now_utc())
        .to_std()
        .unwrap_or_default();
    let revocations = state.revocations.clone();
    let key = stream_key(session.id);
    tokio::spawn(async move {
        tokio::time::sleep(left).await;
        revocations.revoke(key);
    });
}

/// Whether a method only reads (and so needs no CSRF token).
fn safe_method(method: &axum::http::Method) -> bool {
    use axum::http::Method;
    [Method::GET, Method::HEAD, Method::OPTIONS].contains(method)
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    /// A bearer token when one is sent (a wrong one is not rescued by a cookie); otherwise the
    /// session cookie, with the CSRF token on anything but GET, HEAD and OPTIONS.
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if let Some(token) = bearer(parts) {
            let info = state
                .store
                .authenticate(&token)
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            return Ok(Caller(info, Credential::Token));
        }
        let secret = session_cookie(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        let idle = parts
            .extensions
            .get::<std::sync::Arc<Sessions>>()
            .map_or_else(|| SessionPolicy::default().idle, |s| s.policy.idle);
        let session = state
            .store
            .session(&secret, idle)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        if !safe_method(&parts.method) && !csrf_ok(&parts.headers, &secret) {
            return Err(ApiError::Forbidden(Refusal::CsrfToken));
        }
        if parts.uri.path() == STREAM_PATH {
            end_stream_at_expiry(state, &session);
        }
        let info = TokenInfo {
            id: stream_key(session.id),
            role: session.user.role,
            subject: session.user.name,
            created_at: session.created_at,
            revoked_at: None,
        };
        Ok(Caller(info, Credential::Session(session.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_reaches_queues_through_time_out_and_overflow_actions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        std::fs::write(
            &path,
            r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [30000, 30999]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "A agents"
agents = ["sip:a@127.0.0.1"]

[[agent_group]]
name = "B agents"
agents = ["sip:b@127.0.0.1"]

[[agent_group]]
name = "C agents"
agents = ["sip:c@127.0.0.1"]

[[queue]]
name = "A"
agent_groups = ["A agents"]
timeout = { after = "60s", action = { queue = "B" } }

[[queue]]
name = "B"
agent_groups = ["B agents"]
overflow = { max_calls = 5, action = { queue = "A" } }

[[queue]]
name = "C"
agent_groups = ["C agents"]

[[workflow]]
name = "Managed"
kind = "hunt_group"
uri = "sip:m@127.0.0.1"
queue = "A"
managers = ["sip:boss@127.0.0.1"]

[[workflow]]
name = "Unmanaged"
kind = "hunt_group"
uri = "sip:u@127.0.0.1"
queue = "C"
"#,
        )
        .unwrap();
        let config = crate::config::load(
            &path,
            &crate::config::LoadOptions {
                check_environment: false,
            },
        )
        .unwrap()
        .config;
        let scope = ManagedScope::of(&config, "sip:boss@127.0.0.1");
        let names = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(names(&scope.workflows), ["Managed"]);
        // A, and B through A's time-out (B's overflow back to A ends the walk).
        assert_eq!(names(&scope.queues), ["A", "B"]);
        assert_eq!(names(&scope.groups), ["A agents", "B agents"]);
        assert_eq!(
            ManagedScope::of(&config, "sip:nobody@127.0.0.1"),
            ManagedScope::default()
        );
    }

    fn parts(auth: Option<&str>, uri: &str) -> Parts {
        let mut b = axum::http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_comes_from_the_header_or_the_access_token_parameter() {
        assert_eq!(
            bearer(&parts(Some("Bearer rgsd_abc"), "/x")).as_deref(),
            Some("rgsd_abc")
        );
        assert_eq!(
            bearer(&parts(Some("bearer  rgsd_abc "), "/x")).as_deref(),
            Some("rgsd_abc")
        );
        assert_eq!(bearer(&parts(Some("Basic Zm9v"), "/x")), None);
        assert_eq!(
            bearer(&parts(None, "/api/live/stream?a=1&access_token=rgsd_q")).as_deref(),
            Some("rgsd_q")
        );
        assert_eq!(bearer(&parts(None, "/api/live/stream?a=1")), None);
        // Only the stream takes a token from the URL.
        assert_eq!(
            bearer(&parts(None, "/api/agents?access_token=rgsd_q")),
            None
        );
    }
}
