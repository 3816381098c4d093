//! What the SIP endpoint takes from `[server]` ([`EndpointConfig`]): built at start and again
//! on every reload, when [`super::Endpoint::reconfigure`] applies what it can live.

use std::net::SocketAddr;

use ipnet::IpNet;

use super::policy::RateLimit;
use crate::config::model::{Listen, Server, SipUri, Tls};

/// What the endpoint needs from `[server]`.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub listen: Vec<Listen>,
    /// Host written into Via and Contact.
    pub advertised_host: String,
    /// Sources allowed to create dialogs; others get 403.
    pub trusted_peers: Vec<IpNet>,
    /// Concurrent inbound calls before new INVITEs get 503 with Retry-After.
    pub max_calls: u32,
    /// Per-source request limit; `None` turns it off (`sip_rate_limit.per_second = 0`).
    pub rate_limit: Option<RateLimit>,
    /// Name servers for agent and registrar host names; empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Next hop of every outbound INVITE (`outbound_proxy`), written as `Route: <proxy;lr>`;
    /// `None`: the target's own address.
    pub outbound_proxy: Option<SipUri>,
    /// RFC 4028 interval (seconds) offered on legs rgsd originates; `None`: no session timer
    /// there. Live on reload for new dialogs.
    pub session_expires: Option<u32>,
    /// Smallest interval (seconds) accepted from peers (422 below it). Live on reload.
    pub min_se: u32,
    /// Certificate, CAs and handshake limit for TLS; read again on every reload.
    pub tls: Tls,
}

impl EndpointConfig {
    pub fn from_server(server: &Server) -> Self {
        Self {
            listen: server.sip_listen.clone(),
            advertised_host: server.advertised_host.clone(),
            trusted_peers: server.trusted_peers.clone(),
            max_calls: server.max_calls,
            rate_limit: server.sip_rate_limit.map(RateLimit::from),
            dns_servers: server.dns_servers.clone(),
            outbound_proxy: server.outbound_proxy.clone(),
            session_expires: server.session_expires.map(secs),
            min_se: secs(server.min_se),
            tls: server.tls.clone(),
        }
    }
}

/// Whole seconds, as SIP headers carry them (the config keeps intervals to 86,400 s).
fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
