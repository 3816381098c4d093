//! Which workflow an inbound INVITE is for: the SIP layer's [`CallRouter`], answered from the
//! runtime in force (an `ArcSwap` read, no lock, no allocation on a hit).
//!
//! A route names the workflow by its index in one runtime's configuration, together with that
//! runtime's generation. The call task runs on the runtime in force when it starts; only when a
//! reload came in between (another generation) does it look the Request-URI up again, in its
//! own runtime, since the reload may have reordered, removed or deactivated workflows.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::acd::runtime::Runtime;
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

/// The SIP layer's opaque route id for workflow `id` of the runtime of `generation`: the low
/// 32 bits of the generation, then the index.
pub(crate) fn route_id(generation: u64, id: WorkflowId) -> RouteId {
    RouteId(((generation & 0xFFFF_FFFF) << 32) | u64::from(id.0))
}

/// The workflow a route id names when it was decided on `runtime` (same generation); `None`
/// when it was decided on another runtime, or names no workflow of this one.
pub(crate) fn workflow_of(runtime: &Runtime, route: RouteId) -> Option<WorkflowId> {
    if route.0 >> 32 != runtime.generation & 0xFFFF_FFFF {
        return None;
    }
    let id = u32::try_from(route.0 & 0xFFFF_FFFF).ok()?;
    (usize::try_from(id).ok()? < runtime.config.workflows.len()).then_some(WorkflowId(id))
}

/// What a call does with its Request-URI on `runtime`: the workflow, or the status to reject
/// with (404 unknown, 480 inactive). The route decided by the endpoint when it was decided on
/// this runtime; otherwise (a reload in between) the Request-URI looked up again here.
///
/// # Errors
/// The SIP status to reject the call with.
pub(crate) fn resolve(
    runtime: &Runtime,
    route: RouteId,
    request_uri: &str,
) -> Result<WorkflowId, u16> {
    if let Some(id) = workflow_of(runtime, route) {
        return Ok(id);
    }
    match lookup(&runtime.config, request_uri) {
        Some(id) if runtime.config.workflow(id).active => Ok(id),
        Some(_) => Err(480),
        None => Err(404),
    }
}

/// [`CallRouter`] over the runtime in force.
#[derive(Clone)]
pub struct WorkflowRouter {
    runtime: Arc<ArcSwap<Runtime>>,
}

impl WorkflowRouter {
    pub fn new(runtime: Arc<ArcSwap<Runtime>>) -> Self {
        Self { runtime }
    }
}

impl CallRouter for WorkflowRouter {
    fn route(&self, request_uri: &str, _to: &str) -> RouteDecision {
        let runtime = self.runtime.load();
        let config = &runtime.config;
        match lookup(config, request_uri) {
            Some(id) if config.workflow(id).active => {
                RouteDecision::Accept(route_id(runtime.generation, id))
            }
            Some(_) => RouteDecision::Inactive,
            None => RouteDecision::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::runtime::{Acd, Change, PromptCache};
    use crate::config::model::{ActionTarget, WorkflowKind};
    use crate::workflow::testing::{add_queue, add_workflow, config};

    /// Two hunt groups, `sip:workflow0@…` and `sip:workflow1@…`, into one queue.
    fn two_workflows() -> Config {
        let mut c = config();
        let q = add_queue(&mut c, &[]);
        add_workflow(&mut c, WorkflowKind::HuntGroup, ActionTarget::Queue(q));
        add_workflow(&mut c, WorkflowKind::HuntGroup, ActionTarget::Queue(q));
        c
    }

    /// A route decided on one runtime is used as is on that runtime; after a reload that
    /// reorders, deactivates or removes workflows, the call looks its Request-URI up again on
    /// the runtime it runs on, and never takes another workflow's place.
    #[tokio::test]
    async fn a_route_from_before_a_reload_is_looked_up_again() {
        let dir = tempfile::tempdir().unwrap();
        let acd = Acd::start(two_workflows(), None, PromptCache::At(dir.path().into()))
            .await
            .unwrap();
        let router = WorkflowRouter::new(acd.runtime());
        let uri = "sip:workflow1@127.0.0.1";
        let RouteDecision::Accept(route) = router.route(uri, uri) else {
            panic!("not routed");
        };
        assert_eq!(resolve(&acd.current(), route, uri), Ok(WorkflowId(1)));

        // Reordered: index 1 is now the other workflow; the call finds its own at index 0.
        let mut reordered = two_workflows();
        reordered.workflows.swap(0, 1);
        acd.reload(Change::Config(Box::new(reordered)))
            .await
            .unwrap();
        let now = acd.current();
        assert_eq!(workflow_of(&now, route), None, "another generation");
        assert_eq!(resolve(&now, route, uri), Ok(WorkflowId(0)));

        // Deactivated, then removed.
        let mut inactive = two_workflows();
        inactive.workflows[1].active = false;
        acd.reload(Change::Config(Box::new(inactive)))
            .await
            .unwrap();
        assert_eq!(resolve(&acd.current(), route, uri), Err(480));
        let mut removed = two_workflows();
        removed.workflows.truncate(1);
        acd.reload(Change::Config(Box::new(removed))).await.unwrap();
        assert_eq!(resolve(&acd.current(), route, uri), Err(404));
    }
}
