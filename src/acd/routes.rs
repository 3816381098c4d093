//! The workflows of one configuration by the Request-URIs that reach them: built with each
//! runtime (`acd::runtime`), read by the router (`acd::router`) on every INVITE.

use std::collections::HashMap;

use crate::config::model::{Config, PhoneNumber, WorkflowId};
use crate::config::uri::user_host;

/// The workflows of one configuration by the Request-URIs that reach them.
///
/// A Request-URI reaches, in this order:
/// 1. the workflow whose `uri` has its user and host (host compared without case; ports and
///    parameters ignored: a PBX sends to `sip:sales@rgsd-host:5060` while the workflow is
///    `sip:sales@rgsd-host`);
/// 2. the workflow whose `line_uri` is its number: a `tel:` URI, or a `sip:`/`sips:` URI whose
///    user part is a number (see [`PhoneNumber::of_request_uri`]);
/// 3. the workflow whose `uri` has its user part, when exactly one has (a trunk that rewrites the
///    host to rgsd's IP address).
#[derive(Debug, Default)]
pub struct Routes {
    /// User part of each workflow's `uri` → (host, workflow), in file order.
    by_user: HashMap<String, Vec<(String, WorkflowId)>>,
    /// Each `line_uri`'s number → its workflow (numbers are unique: the compile step checks).
    by_number: HashMap<PhoneNumber, WorkflowId>,
}

impl Routes {
    /// The maps of `config`'s workflows.
    pub fn new(config: &Config) -> Self {
        let mut routes = Self::default();
        for (i, w) in config.workflows.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let id = WorkflowId(i);
            if let Some((user, host)) = user_host(w.uri.as_str()) {
                routes
                    .by_user
                    .entry(user.to_owned())
                    .or_default()
                    .push((host.to_owned(), id));
            }
            if let Some(line) = &w.line_uri {
                routes.by_number.entry(line.number).or_insert(id);
            }
        }
        routes
    }

    /// The workflow `request_uri` reaches (see the type's docs for the order).
    pub fn lookup(&self, request_uri: &str) -> Option<WorkflowId> {
        let by_user =
            user_host(request_uri).and_then(|(user, host)| Some((self.by_user.get(user)?, host)));
        if let Some((candidates, host)) = by_user
            && let Some(&(_, id)) = candidates
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(host))
        {
            return Some(id);
        }
        if let Some(number) = PhoneNumber::of_request_uri(request_uri)
            && let Some(&id) = self.by_number.get(&number)
        {
            return Some(id);
        }
        match by_user.map(|(candidates, _)| candidates.as_slice()) {
            Some(&[(_, id)]) => Some(id),
            _ => None,
        }
    }
}
