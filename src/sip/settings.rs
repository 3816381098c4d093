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
            tls: server.tls.clone(),
        }
    }
}
