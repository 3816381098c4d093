//! Where a request for a SIP URI goes: its host resolved (A/AAAA through the configured name
//! servers, or those of `/etc/resolv.conf`), its port (default 5060), and whether
//! `;transport=tcp` asks for TCP.
//!
//! Resolution is asynchronous and may take as long as the name servers make it; the endpoint
//! runs it on a task of its own per outbound leg, never on a call's task (see
//! `Endpoint::invite`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::message;

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

    /// The destination of a request for `target`, and whether it goes over TCP.
    ///
    /// # Errors
    ///
    /// [`ResolveError`] when the URI is unusable or its host has no address.
    pub(crate) async fn resolve(&self, target: &str) -> Result<(SocketAddr, bool), ResolveError> {
        if let Some(known) = literal(target) {
            return known;
        }
        let uri =
            message::parse_uri(target).map_err(|_| ResolveError::BadTarget(target.to_owned()))?;
        let port = uri.port.unwrap_or(default_port(&uri));
        let host = uri.host.trim_matches(['[', ']']);
        let lookup_error = |reason: String| ResolveError::Lookup {
            host: host.to_owned(),
            reason,
        };
        let resolver = self
            .inner
            .as_ref()
            .ok_or_else(|| lookup_error("no resolver configured".into()))?;
        let ips = resolver
            .lookup_ip(host)
            .await
            .map_err(|e| lookup_error(e.to_string()))?;
        let ip = ips
            .iter()
            .next()
            .ok_or_else(|| lookup_error("no address".into()))?;
        Ok((SocketAddr::new(ip, port), uri.tcp))
    }
}

/// The destination of `target` when it needs no name server: an unusable URI, or a host that
/// is an IP address. `None` when its host is a name.
pub(crate) fn literal(target: &str) -> Option<Result<(SocketAddr, bool), ResolveError>> {
    let Ok(uri) = message::parse_uri(target) else {
        return Some(Err(ResolveError::BadTarget(target.to_owned())));
    };
    let ip = uri.host.trim_matches(['[', ']']).parse::<IpAddr>().ok()?;
    Some(Ok((
        SocketAddr::new(ip, uri.port.unwrap_or(default_port(&uri))),
        uri.tcp,
    )))
}

/// 5061 for TLS targets, 5060 for the others (RFC 3261 §19.1.2).
fn default_port(uri: &message::UriTarget) -> u16 {
    if uri.tls { 5061 } else { 5060 }
}

/// Whether `target` can be the Request-URI of an outbound INVITE: a SIP URI that parses, or a
/// `tel:` URI (RFC 3966), which only goes out through the outbound proxy.
pub(crate) fn usable_target(target: &str) -> bool {
    message::parse_uri(target).is_ok() || tel_number(target).is_some()
}

/// The number of a `tel:` URI (`tel:+14255550100`, visual separators allowed), without
/// parameters.
fn tel_number(target: &str) -> Option<&str> {
    let (scheme, rest) = target.trim().split_once(':')?;
    if !scheme.eq_ignore_ascii_case("tel") {
        return None;
    }
    let number = rest.split(';').next().unwrap_or_default();
    let digits = number.strip_prefix('+').unwrap_or(number);
    (digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b"*#-.()".contains(&b)))
    .then_some(number)
}

/// Whether `target` is a telephone number: a `tel:` URI, or a SIP URI with `;user=phone`
/// (RFC 3261 §19.1.6). Numbers leave only through `outbound_proxy`.
pub(crate) fn is_number(target: &str) -> bool {
    if tel_number(target).is_some() {
        return true;
    }
    let uri = target.trim();
    let uri = uri.split('?').next().unwrap_or(uri);
    uri.split(';').skip(1).any(|p| {
        p.split_once('=').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("user") && v.trim().eq_ignore_ascii_case("phone")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_resolve_without_a_name_server() {
        let r = Resolver { inner: None };
        assert_eq!(
            r.resolve("sip:a@127.0.0.1:5070;transport=tcp")
                .await
                .unwrap(),
            ("127.0.0.1:5070".parse().unwrap(), true)
        );
        assert!(literal("sip:a@agent.example").is_none());
        assert!(matches!(
            r.resolve("sip:a@agent.example").await,
            Err(ResolveError::Lookup { .. })
        ));
        assert!(matches!(
            r.resolve("tel:+14255550100").await,
            Err(ResolveError::BadTarget(_))
        ));
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
        let (dest, tcp) = r.resolve("sip:agent@agent.rgsd.test:5080").await.unwrap();
        assert_eq!((dest, tcp), ("127.0.0.9:5080".parse().unwrap(), false));
    }
}
