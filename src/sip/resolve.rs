//! Where a request for a SIP URI goes (RFC 3263 §4): an ordered list of destinations, each an
//! address, a transport and the name a TLS server must prove (the URI's host, RFC 5922 §4).
//!
//! - A host that is an IP address: that address, the URI's port (default 5060, 5061 for TLS)
//!   and transport (`;transport=`, else TLS for `sips:`, else UDP).
//! - A name with a port: its A/AAAA records (IPv4 first), no SRV.
//! - A name with `;transport=` and no port: SRV for that transport (`_sip._udp`, `_sip._tcp`,
//!   `_sips._tcp`), then A/AAAA of each SRV target in priority and weight order (RFC 2782).
//! - A name with neither: NAPTR first (services `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`; only
//!   `SIPS+D2T` for a `sips:` URI), each record's replacement looked up as SRV; with no usable
//!   NAPTR, SRV for UDP then TCP (`_sips._tcp` for `sips:`).
//! - No SRV records at all: A/AAAA of the name, default port.
//!
//! The name servers are those of `[server] dns_servers`, or of `/etc/resolv.conf`; answers are
//! cached for their TTL (the resolver's cache). Resolution may take as long as the name
//! servers make it, so the endpoint runs it on a task of its own per outbound leg, never on a
//! call's task (see `Endpoint::invite`); the endpoint tries the next destination when one fails
//! (RFC 3263 §4.3, `docs/architecture.md`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use super::message;
use crate::config::model::Transport;

/// How long one query waits for an answer before the next attempt (two attempts per server).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a target has no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The target is not a SIP URI we can parse.
    #[error("target {0} is not a usable SIP URI")]
    BadTarget(String),
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Lookup { host: String, reason: String },
}

/// One place a request can be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The name a TLS server must prove: the URI's host.
    pub server_name: String,
}

/// What RFC 3263 starts from: the URI's host, port, transport and scheme.
struct Start {
    host: String,
    port: Option<u16>,
    transport: Option<Transport>,
    secure: bool,
}

impl Start {
    fn of(target: &str) -> Result<Self, ResolveError> {
        let bad = || ResolveError::BadTarget(target.to_owned());
        let uri = message::parse_uri(target).map_err(|_| bad())?;
        let secure = target
            .trim()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        let text = target.trim();
        let text = text.split('?').next().unwrap_or(text);
        let mut transport = None;
        for param in text.split(';').skip(1) {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("transport") {
                transport = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    _ => return Err(bad()),
                });
            }
        }
        // `sips:` always means TLS (RFC 3261 §26.2.2), whatever the parameter says.
        if secure {
            transport = Some(Transport::Tls);
        }
        Ok(Self {
            host: uri.host.trim_matches(['[', ']']).to_owned(),
            port: uri.port,
            transport,
            secure,
        })
    }

    /// The transport when nothing in the DNS chooses it.
    fn default_transport(&self) -> Transport {
        self.transport.unwrap_or(Transport::Udp)
    }

    fn at(&self, ip: IpAddr, port: Option<u16>, transport: Transport) -> Destination {
        Destination {
            addr: SocketAddr::new(ip, port.unwrap_or_else(|| default_port(transport))),
            transport,
            server_name: self.host.clone(),
        }
    }
}

fn default_port(transport: Transport) -> u16 {
    if transport == Transport::Tls {
        5061
    } else {
        5060
    }
}

/// The SRV owner name for `transport` at `domain` (RFC 3263 §4.1).
fn srv_name(transport: Transport, domain: &str) -> String {
    let service = match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    };
    format!("{service}.{}", domain.trim_end_matches('.'))
}

/// One SRV record, as ordering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// SRV records in the order to try them (RFC 2782): ascending priority; within a priority, a
/// weighted random draw repeated over the records not yet chosen, zero weights first so that
/// they are picked only when the draw is 0. `draw(total)` returns a number in `0..=total`.
pub(crate) fn order_srv(mut records: Vec<Srv>, draw: &mut dyn FnMut(u32) -> u32) -> Vec<Srv> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<Srv> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = draw(total).min(total);
            let mut running = 0;
            let at = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(at));
        }
    }
    out
}

/// Usable NAPTR records of a SIP domain (RFC 3263 §4.1): `s` flag, a service rgsd knows (only
/// `SIPS+D2T` for a `sips:` URI), in order then preference. Each is (SRV name, transport).
fn naptr_services(
    records: &[(u16, u16, String, String, String)],
    secure: bool,
) -> Vec<(String, Transport)> {
    let mut usable: Vec<_> = records
        .iter()
        .filter(|(_, _, flags, _, _)| flags.eq_ignore_ascii_case("s"))
        .filter_map(|(order, pref, _, service, replacement)| {
            let transport = match service.to_ascii_uppercase().as_str() {
                "SIP+D2U" if !secure => Transport::Udp,
                "SIP+D2T" if !secure => Transport::Tcp,
                "SIPS+D2T" => Transport::Tls,
                _ => return None,
            };
            Some(((*order, *pref), replacement.clone(), transport))
        })
        .collect();
    usable.sort_by_key(|(key, _, _)| *key);
    usable.into_iter().map(|(_, name, t)| (name, t)).collect()
}

/// A cloneable resolver (one cache, shared).
#[derive(Clone)]
pub(crate) struct Resolver {
    inner: Option<TokioResolver>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("configured", &self.inner.is_some())
            .finish()
    }
}

impl Resolver {
    /// A resolver asking `servers` (UDP, then TCP), or the system's name servers when the list
    /// is empty. Without a usable system configuration only IP literals resolve (logged).
    pub(crate) fn new(servers: &[SocketAddr]) -> Self {
        let provider = TokioRuntimeProvider::default();
        let builder = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the system's resolver configuration ({e}); \
                         agent targets must be IP addresses"
                    );
                    return Self { inner: None };
                }
            }
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                provider,
            )
        };
        let mut builder = builder;
        builder.options_mut().timeout = QUERY_TIMEOUT;
        builder.options_mut().attempts = 2;
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        match builder.build() {
            Ok(r) => Self { inner: Some(r) },
            Err(e) => {
                tracing::warn!(
                    "cannot start the DNS resolver ({e}); agent targets must be IP addresses"
                );
                Self { inner: None }
            }
        }
    }

    /// Where a request for `target` goes, in the order to try (RFC 3263 §4, module docs).
    ///
    /// # Errors
    ///
    /// [`ResolveError`] when the URI is unusable or its host has no address.
    pub(crate) async fn resolve(&self, target: &str) -> Result<Vec<Destination>, ResolveError> {
        if let Some(known) = literal(target) {
            return known;
        }
        let start = Start::of(target)?;
        let host = start.host.clone();
        let lookup_error = |reason: String| ResolveError::Lookup {
            host: host.clone(),
            reason,
        };
        let resolver = self
            .inner
            .as_ref()
            .ok_or_else(|| lookup_error("no resolver configured".into()))?;
        if start.port.is_some() {
            let transport = start.default_transport();
            let ips = addresses(resolver, &start.host)
                .await
                .map_err(lookup_error)?;
            return Ok(ips
                .into_iter()
                .map(|ip| start.at(ip, start.port, transport))
                .collect());
        }
        let services = match start.transport {
            Some(t) => vec![(srv_name(t, &start.host), t)],
            None => {
                let found = naptr(resolver, &start.host).await;
                let services = naptr_services(&found, start.secure);
                if services.is_empty() {
                    [Transport::Udp, Transport::Tcp]
                        .into_iter()
                        .map(|t| (srv_name(t, &start.host), t))
                        .collect()
                } else {
                    services
                }
            }
        };
        let mut out = Vec::new();
        let mut any_srv = false;
        for (name, transport) in services {
            let records = srv(resolver, &name).await;
            any_srv |= !records.is_empty();
            for record in order_srv(records, &mut |total| fastrand::u32(0..=total)) {
                // "." : the service is decidedly not available there (RFC 2782).
                if record.target.is_empty() || record.target == "." {
                    continue;
                }
                match addresses(resolver, &record.target).await {
                    Ok(ips) => out.extend(
                        ips.into_iter()
                            .map(|ip| start.at(ip, Some(record.port), transport)),
                    ),
                    Err(reason) => {
                        tracing::debug!(target = %record.target, "SRV target does not resolve: {reason}");
                    }
                }
            }
        }
        if any_srv {
            return if out.is_empty() {
                Err(lookup_error("no SRV target has an address".into()))
            } else {
                Ok(out)
            };
        }
        let transport = start.default_transport();
        let ips = addresses(resolver, &start.host)
            .await
            .map_err(lookup_error)?;
        Ok(ips
            .into_iter()
            .map(|ip| start.at(ip, None, transport))
            .collect())
    }
}

/// A and AAAA records of `name`, IPv4 first.
async fn addresses(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, String> {
    let ips = resolver.lookup_ip(name).await.map_err(|e| e.to_string())?;
    let ips: Vec<IpAddr> = ips.iter().collect();
    if ips.is_empty() {
        return Err("no address".into());
    }
    Ok(ips)
}

/// SRV records at `name`; none when the name has none or the lookup fails (logged).
async fn srv(resolver: &TokioResolver, name: &str) -> Vec<Srv> {
    match resolver.lookup(name, RecordType::SRV).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect(),
        Err(e) => {
            if !e.is_no_records_found() {
                tracing::debug!(%name, "SRV lookup failed: {e}");
            }
            Vec::new()
        }
    }
}

/// NAPTR records at `name` as (order, preference, flags, service, replacement).
async fn naptr(resolver: &TokioResolver, name: &str) -> Vec<(u16, u16, String, String, String)> {
    match resolver.lookup(name, RecordType::NAPTR).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NAPTR(n) => Some((
                    n.order,
                    n.preference,
                    String::from_utf8_lossy(&n.flags).into_owned(),
                    String::from_utf8_lossy(&n.services).into_owned(),
                    n.replacement.to_ascii().trim_end_matches('.').to_owned(),
                )),
                _ => None,
            })
            .collect(),
        Err(e) => {
            if !e.is_no_records_found() {
                tracing::debug!(%name, "NAPTR lookup failed: {e}");
            }
            Vec::new()
        }
    }
}

/// The destination of `target` when it needs no name server: an unusable URI, or a host that
/// is an IP address. `None` when its host is a name.
pub(crate) fn literal(target: &str) -> Option<Result<Vec<Destination>, ResolveError>> {
    let start = match Start::of(target) {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let ip = start.host.parse::<IpAddr>().ok()?;
    let transport = start.default_transport();
    Some(Ok(vec![start.at(ip, start.port, transport)]))
}

/// Whether `target` can be the Request-URI of an outbound INVITE: a SIP URI that parses, or a
/// `tel:` URI (RFC 3966), which only goes out through the outbound proxy.
pub(crate) fn usable_target(target: &str) -> bool {
    message::parse_uri(target).is_ok() || crate::config::uri::is_tel(target)
}

/// Whether `target` is a telephone number (`tel:`, or `;user=phone`): numbers leave only
/// through `outbound_proxy`.
pub(crate) fn is_number(target: &str) -> bool {
    crate::config::uri::is_number(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(addr: &str, transport: Transport, name: &str) -> Destination {
        Destination {
            addr: addr.parse().unwrap(),
            transport,
            server_name: name.into(),
        }
    }

    #[tokio::test]
    async fn literals_resolve_without_a_name_server() {
        let r = Resolver { inner: None };
        assert_eq!(
            r.resolve("sip:a@127.0.0.1:5070;transport=tcp")
                .await
                .unwrap(),
            [dest("127.0.0.1:5070", Transport::Tcp, "127.0.0.1")]
        );
        assert_eq!(
            r.resolve("sips:a@127.0.0.3").await.unwrap(),
            [dest("127.0.0.3:5061", Transport::Tls, "127.0.0.3")],
            "sips: is TLS on 5061"
        );
        assert_eq!(
            r.resolve("sip:a@127.0.0.2;transport=TLS").await.unwrap(),
            [dest("127.0.0.2:5061", Transport::Tls, "127.0.0.2")]
        );
        assert!(literal("sip:a@agent.example").is_none());
        assert!(matches!(
            r.resolve("sip:a@agent.example").await,
            Err(ResolveError::Lookup { .. })
        ));
        for bad in ["tel:+14255550100", "sip:a@127.0.0.1;transport=sctp"] {
            assert!(
                matches!(r.resolve(bad).await, Err(ResolveError::BadTarget(_))),
                "{bad}"
            );
        }
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    fn targets(records: &[Srv]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn srv_records_go_by_priority_then_by_weighted_draw() {
        let records = vec![
            srv(20, 100, "late"),
            srv(10, 0, "zero"),
            srv(10, 30, "thirty"),
            srv(10, 70, "seventy"),
            srv(5, 0, "first"),
        ];
        // The lowest draw takes the zero weight first, then the first of the rest each time.
        let low = order_srv(records.clone(), &mut |_| 0);
        assert_eq!(
            targets(&low),
            ["first", "zero", "thirty", "seventy", "late"]
        );
        // The highest draw takes the last record of the running sum each time.
        let high = order_srv(records.clone(), &mut |total| total);
        assert_eq!(
            targets(&high),
            ["first", "seventy", "thirty", "zero", "late"]
        );
        // A draw of 31 falls past "thirty" (running sum 30) into "seventy".
        let mut draws = [0, 31, 0, 0].into_iter();
        let mid = order_srv(records, &mut |_| draws.next().unwrap_or(0));
        assert_eq!(targets(&mid)[..3], ["first", "seventy", "zero"]);
    }

    #[test]
    fn weights_share_first_places_in_proportion() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let order = order_srv(vec![srv(1, 10, "light"), srv(1, 90, "heavy")], &mut |t| {
                rng.u32(0..=t)
            });
            if order[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        assert!(
            (850..=950).contains(&heavy_first),
            "heavy first {heavy_first} of 1000"
        );
    }

    #[test]
    fn naptr_keeps_known_sip_services_in_order_then_preference() {
        let record = |order, pref, flags: &str, service: &str, to: &str| {
            (
                order,
                pref,
                flags.to_owned(),
                service.to_owned(),
                to.to_owned(),
            )
        };
        let records = vec![
            record(20, 10, "s", "SIP+D2U", "_sip._udp.x"),
            record(10, 20, "s", "SIP+D2T", "_sip._tcp.x"),
            record(10, 10, "S", "SIPS+D2T", "_sips._tcp.x"),
            record(5, 10, "s", "SIP+D2S", "_sip._sctp.x"),
            record(5, 10, "u", "E2U+sip", "!^.*$!sip:a@x!"),
        ];
        assert_eq!(
            naptr_services(&records, false),
            [
                ("_sips._tcp.x".to_owned(), Transport::Tls),
                ("_sip._tcp.x".to_owned(), Transport::Tcp),
                ("_sip._udp.x".to_owned(), Transport::Udp),
            ]
        );
        assert_eq!(
            naptr_services(&records, true),
            [("_sips._tcp.x".to_owned(), Transport::Tls)],
            "a sips: URI takes TLS only"
        );
    }

    /// A name server on loopback that answers every query with one A record.
    #[tokio::test]
    async fn names_resolve_through_the_configured_server() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                // Header, then the question: labels up to the root, QTYPE, QCLASS.
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += usize::from(buf[end]) + 1;
                }
                let qtype = u16::from_be_bytes([buf[end + 1], buf[end + 2]]);
                let mut reply = buf[..end + 5].to_vec();
                reply[2] = 0x81; // QR, RD
                reply[3] = 0x80; // RA, NOERROR
                reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]); // no answers, no OPT
                if qtype == 1 {
                    reply[7] = 1; // ANCOUNT
                    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    reply.extend_from_slice(&[127, 0, 0, 9]);
                }
                let _ = socket.send_to(&reply, from).await;
            }
        });
        let r = Resolver::new(&[server]);
        let found = r.resolve("sip:agent@agent.rgsd.test:5080").await.unwrap();
        assert_eq!(
            found,
            [dest("127.0.0.9:5080", Transport::Udp, "agent.rgsd.test")]
        );
    }
}
