//! Which workflow an inbound INVITE is for: the SIP layer's [`CallRouter`], answered from the
//! configuration in force (an `ArcSwap` read, no lock, no allocation on a hit).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::model::{Config, WorkflowId};
use crate::sip::{CallRouter, RouteDecision, RouteId};

/// The `user@host` of a SIP URI, host lower-cased, without scheme, port or parameters.
/// `None` when the text is not a `sip:`/`sips:` URI with a user part.
pub fn user_host(uri: &str) -> Option<(&str, &str)> {
    let uri = uri.trim().trim_start_matches('<');
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, host_port) = rest.split_once('@')?;
    let user = user.split(';').next().unwrap_or(user);
    let end = host_port
        .find(|c| [';', '?', '>'].contains(&c))
        .unwrap_or(host_port.len());
    let host_port = &host_port[..end];
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    (!user.is_empty()).then_some((user, host))
}

/// The workflow whose URI has the Request-URI's user and host (host compared without case).
///
/// Ports and parameters are ignored: a PBX or trunk sends to `sip:sales@rgsd-host:5060` while
/// the workflow is configured as `sip:sales@rgsd-host`. When no workflow has that exact
/// user and host, a workflow is still found by user part alone if exactly one has it (a trunk
/// that rewrites the host to rgsd's IP address).
pub fn lookup(config: &Config, request_uri: &str) -> Option<WorkflowId> {
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
pub fn route_id(id: WorkflowId) -> RouteId {
    RouteId(u64::from(id.0))
}

/// The workflow a route id names, if `config` has it.
pub fn workflow_of(config: &Config, route: RouteId) -> Option<WorkflowId> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_host_ignores_port_params_and_brackets() {
        assert_eq!(
            user_host("sip:sales@Example.com"),
            Some(("sales", "Example.com"))
        );
        assert_eq!(
            user_host("<sip:sales@10.0.0.1:5060;transport=tcp>"),
            Some(("sales", "10.0.0.1"))
        );
        assert_eq!(user_host("sips:a@[::1]:5061"), Some(("a", "::1")));
        assert_eq!(user_host("sip:10.0.0.1"), None);
        assert_eq!(user_host("tel:+14255550100"), None);
    }
}
