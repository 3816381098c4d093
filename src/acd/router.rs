//! Which workflow an inbound INVITE is for: the SIP layer's [`CallRouter`], answered from the
//! configuration in force (an `ArcSwap` read, no lock, no allocation on a hit).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::model::{Config, WorkflowId};
use crate::sip::{CallRouter, RouteDecision, RouteId};

pub(crate) use crate::config::uri::user_host;

/// The workflow whose URI has the Request-URI's user and host (host compared without case).
///
/// Ports and parameters are ignored: a PBX or trunk sends to `sip:sales@rgsd-host:5060` while
/// the workflow is configured as `sip:sales@rgsd-host`. When no workflow has that exact
/// user and host, a workflow is still found by user part alone if exactly one has it (a trunk
/// that rewrites the host to rgsd's IP address).
pub(crate) fn lookup(config: &Config, request_uri: &str) -> Option<WorkflowId> {
    let (user, host) = user_host(request_uri)?;
    let mut by_user = None;
    let mut users = 0;
    for (i, w) in config.workflows.iter().enumerate() {
        let Some((wu, wh)) = user_host(w.uri.as_str()) else {
            continue;
        };
        if wu != user {
            continue;
        }
        let id = WorkflowId(u32::try_from(i).ok()?);
        if wh.eq_ignore_ascii_case(host) {
            return Some(id);
        }
        users += 1;
        by_user = Some(id);
    }
    if users == 1 { by_user } else { None }
}

/// The SIP layer's opaque route id for a workflow.
pub(crate) fn route_id(id: WorkflowId) -> RouteId {
    RouteId(u64::from(id.0))
}

/// The workflow a route id names, if `config` has it.
pub(crate) fn workflow_of(config: &Config, route: RouteId) -> Option<WorkflowId> {
    let id = u32::try_from(route.0).ok()?;
    (usize::try_from(id).ok()? < config.workflows.len()).then_some(WorkflowId(id))
}

/// [`CallRouter`] over the live configuration.
#[derive(Clone)]
pub struct WorkflowRouter {
    config: Arc<ArcSwap<Config>>,
}

impl WorkflowRouter {
    pub fn new(config: Arc<ArcSwap<Config>>) -> Self {
        Self { config }
    }
}

impl CallRouter for WorkflowRouter {
    fn route(&self, request_uri: &str, _to: &str) -> RouteDecision {
        let config = self.config.load();
        match lookup(&config, request_uri) {
            Some(id) if config.workflow(id).active => RouteDecision::Accept(route_id(id)),
            Some(_) => RouteDecision::Inactive,
            None => RouteDecision::NotFound,
        }
    }
}
