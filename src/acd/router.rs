//! Which workflow an inbound INVITE is for: the SIP layer's [`CallRouter`], answered from the
//! runtime in force (an `ArcSwap` read, no lock, no allocation on a hit).
//!
//! The answer comes from [`Routes`](crate::acd::Routes), hash maps built once per runtime (at start and on every
//! reload), so a lookup costs the same with 2 workflows as with 10,000.
//!
//! A route names the workflow by its index in one runtime's configuration, together with that
//! runtime's generation. The call task runs on the runtime in force when it starts; only when a
//! reload came in between (another generation) does it look the Request-URI up again, in its
//! own runtime, since the reload may have reordered, removed or deactivated workflows.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::acd::runtime::Runtime;
use crate::config::model::WorkflowId;
use crate::sip::{CallRouter, RouteDecision, RouteId};

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
    match runtime.routes.lookup(request_uri) {
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
        match runtime.routes.lookup(request_uri) {
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
    use crate::acd::Routes;
    use crate::acd::runtime::{Acd, Change, PromptCache};
    use crate::config::model::Config;
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

    /// Workflows `(uri, line_uri)`, hunt groups into one queue.
    fn workflows(list: &[(&str, Option<&str>)]) -> Config {
        let mut c = config();
        let q = add_queue(&mut c, &[]);
        for (uri, line) in list {
            let id = add_workflow(&mut c, WorkflowKind::HuntGroup, ActionTarget::Queue(q));
            let w = &mut c.workflows[id.0 as usize];
            w.uri = crate::config::model::SipUri((*uri).to_owned());
            w.line_uri = line.map(|l| crate::config::model::LineUri::parse(l).unwrap());
        }
        c
    }

    /// The order of the type's docs: exact user and host, then number, then a unique user part.
    #[test]
    fn routes_find_by_uri_then_number_then_unique_user() {
        let routes = Routes::new(&workflows(&[
            ("sip:sales@rgsd.example.com", Some("tel:+1 (425) 555-0100")),
            ("sip:support@rgsd.example.com", Some("tel:+14255550199")),
            ("sip:support@other.example.com", None),
            ("sip:14255550100@rgsd.example.com", None),
            ("sip:+442079460000@rgsd.example.com", None),
        ]));
        let cases: &[(&str, Option<u32>)] = &[
            // By URI: user and host, host without case, port and parameters ignored.
            ("sip:sales@rgsd.example.com", Some(0)),
            ("sip:sales@RGSD.example.com:5060;transport=tcp", Some(0)),
            ("sip:support@other.example.com", Some(2)),
            ("sip:support@rgsd.example.com", Some(1)),
            // A user part alone: Sales is the only `sales`; two workflows are `support`.
            ("sip:sales@10.0.0.5", Some(0)),
            ("sip:support@10.0.0.5", None),
            // By number, from any host, in either scheme, with or without `+` and separators.
            ("tel:+14255550100", Some(0)),
            ("TEL:+1-425-555-0100;phone-context=+1", Some(0)),
            ("sip:+14255550100@10.0.0.5;user=phone", Some(0)),
            ("sips:+1.425.555.0199@10.0.0.5:5061;user=phone", Some(1)),
            ("tel:+14255550199", Some(1)),
            // A workflow URI with the number as user and rgsd's host wins over the line.
            ("sip:14255550100@rgsd.example.com", Some(3)),
            // The old way still works: a URI whose user part is the number, unique user part.
            ("sip:+442079460000@10.0.0.5", Some(4)),
            ("tel:+442079460000", None),
            // Unknown number, unknown user, no user, other schemes.
            ("tel:+14255550101", None),
            ("sip:+14255550101@rgsd.example.com;user=phone", None),
            ("sip:nobody@rgsd.example.com", None),
            ("sip:rgsd.example.com", None),
            ("mailto:sales@rgsd.example.com", None),
        ];
        for (uri, want) in cases {
            assert_eq!(routes.lookup(uri), want.map(WorkflowId), "{uri}");
        }
    }

    /// The maps are the runtime's: a reload that adds a line routes it, one that removes the
    /// line stops routing it, and the router answers from the runtime in force.
    #[tokio::test]
    async fn the_router_answers_numbers_from_the_runtime_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let before = workflows(&[("sip:sales@127.0.0.1", None)]);
        let acd = Acd::start(before, None, PromptCache::At(dir.path().into()))
            .await
            .unwrap();
        let router = WorkflowRouter::new(acd.runtime());
        let tel = "tel:+14255550100";
        assert!(matches!(router.route(tel, tel), RouteDecision::NotFound));
        let after = workflows(&[
            ("sip:support@127.0.0.1", None),
            ("sip:sales@127.0.0.1", Some("tel:+14255550100")),
        ]);
        acd.reload(Change::Config(Box::new(after))).await.unwrap();
        let RouteDecision::Accept(route) = router.route(tel, tel) else {
            panic!("the number is not routed after the reload");
        };
        assert_eq!(resolve(&acd.current(), route, tel), Ok(WorkflowId(1)));
        acd.reload(Change::Membership).await.unwrap();
        assert_eq!(resolve(&acd.current(), route, tel), Ok(WorkflowId(1)));
        let mut inactive = workflows(&[("sip:sales@127.0.0.1", Some("tel:+14255550100"))]);
        inactive.workflows[0].active = false;
        acd.reload(Change::Config(Box::new(inactive)))
            .await
            .unwrap();
        assert!(matches!(router.route(tel, tel), RouteDecision::Inactive));
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
