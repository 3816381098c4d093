//! TLS contexts for SIP over TLS (RFC 3261 §26.2, RFC 5630), built with rustls on the *ring*
//! provider from the `[server] tls` material the configuration already read and checked.
//!
//! - Inbound (`tls:` listeners): our certificate; with `client_ca`, a client certificate that CA
//!   signed is required (mutual TLS with a trunk).
//! - Outbound (`sips:` and `;transport=tls` targets): the peer's certificate is checked against
//!   `ca` or the system's roots, and against the name we connect to (the URI's host); our own
//!   certificate, when configured, is offered as the client certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::model::Tls;

/// What the transports use to accept and open TLS connections. Replaced whole on reload: new
/// connections use the new contexts, open ones keep theirs.
#[derive(Clone)]
pub(crate) struct TlsContexts {
    /// `None` when no certificate is configured (then no `tls:` listener is either).
    pub(crate) acceptor: Option<TlsAcceptor>,
    pub(crate) connector: TlsConnector,
    pub(crate) handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsContexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContexts")
            .field("acceptor", &self.acceptor.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Why the TLS contexts could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client_ca: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    #[error("{0}: no usable CA certificate")]
    NoRoots(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn store(certs: &[rustls::pki_types::CertificateDer<'static>]) -> (RootCertStore, usize) {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
    (roots, added)
}

/// The system's CA certificates (through rustls-native-certs); problems are logged, and an
/// empty store means outbound TLS fails with "unknown issuer" until `ca` is set.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "cannot read some of the system's CA certificates");
    }
    let (roots, added) = store(&found.certs);
    if added == 0 {
        tracing::warn!(
            "no system CA certificates found; outbound TLS needs [server] tls.ca to verify peers"
        );
    }
    roots
}

/// Builds the inbound and outbound contexts from `[server] tls`.
///
/// # Errors
///
/// [`TlsSetupError`] when rustls refuses the material (the configuration checks it first, so
/// this is rare).
pub(crate) fn contexts(tls: &Tls) -> Result<TlsContexts, TlsSetupError> {
    let acceptor = match &tls.identity {
        None => None,
        Some(id) => {
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?;
            let builder = match &tls.client_ca {
                None => builder.with_no_client_auth(),
                Some(ca) => {
                    let (roots, added) = store(&ca.certificates);
                    if added == 0 {
                        return Err(TlsSetupError::NoRoots(ca.path.display().to_string()));
                    }
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider(),
                    )
                    .build()?;
                    builder.with_client_cert_verifier(verifier)
                }
            };
            let config = builder.with_single_cert(id.chain.clone(), id.key.clone_key())?;
            Some(TlsAcceptor::from(Arc::new(config)))
        }
    };
    let roots = match &tls.ca {
        Some(ca) => {
            let (roots, added) = store(&ca.certificates);
            if added == 0 {
                return Err(TlsSetupError::NoRoots(ca.path.display().to_string()));
            }
            roots
        }
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let client = match &tls.identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    Ok(TlsContexts {
        acceptor,
        connector: TlsConnector::from(Arc::new(client)),
        handshake_timeout: tls.handshake_timeout,
    })
}

/// The name a peer's certificate must carry: a DNS name, or an IP address (matched against the
/// certificate's IP address names).
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).ok()
}

/// Why a handshake failed, in words for the log line.
pub(crate) fn reason(e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error};
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return e.to_string();
    };
    match inner {
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the peer's certificate has expired".to_owned(),
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the peer's certificate is signed by an unknown CA".to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the peer's certificate is not valid for the name we connected to".to_owned(),
        other => other.to_string(),
    }
}

/// How many failed inbound handshakes a listener logs in full each minute; the rest are
/// counted and summed up in one line (a scanner must not flood the log).
pub(crate) const FULL_FAILURES_PER_MINUTE: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The failed inbound handshakes one listener did not log in full during a minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureSummary {
    pub(crate) count: u64,
    pub(crate) last_peer: SocketAddr,
    pub(crate) last_reason: String,
}

impl FailureSummary {
    /// Writes the summary line.
    pub(crate) fn log(&self) {
        tracing::warn!(
            count = self.count,
            last_peer = %self.last_peer,
            "{} more TLS handshake failures in the last minute, last from {}: {}",
            self.count,
            self.last_peer,
            self.last_reason
        );
    }
}

/// Per-listener rate limit on handshake-failure warnings: the first
/// [`FULL_FAILURES_PER_MINUTE`] of each minute are logged in full, the others only counted,
/// and the count is logged once the minute is over (on the next failure or the listener's
/// once-a-minute [`FailureLog::roll`]).
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
    last: Option<(SocketAddr, String)>,
}

/// What to log for one failed handshake.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FailureNote {
    /// Log this failure's own line.
    pub(crate) full: bool,
    /// First log the summary of the minute that just ended.
    pub(crate) summary: Option<FailureSummary>,
}

impl FailureLog {
    /// Records a failed handshake from `peer` at `now`.
    pub(crate) fn note(&mut self, now: Instant, peer: SocketAddr, reason: &str) -> FailureNote {
        let summary = self.roll(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
        let full = self.logged < FULL_FAILURES_PER_MINUTE;
        if full {
            self.logged += 1;
        } else {
            self.suppressed += 1;
            self.last = Some((peer, reason.to_owned()));
        }
        FailureNote { full, summary }
    }

    /// Ends the current minute if it is over, returning what it did not log in full.
    pub(crate) fn roll(&mut self, now: Instant) -> Option<FailureSummary> {
        let start = self.window_start?;
        if now.duration_since(start) < FAILURE_WINDOW {
            return None;
        }
        let (count, last) = (self.suppressed, self.last.take());
        *self = Self::default();
        let (last_peer, last_reason) = last?;
        (count > 0).then_some(FailureSummary {
            count,
            last_peer,
            last_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_failed_handshakes_logs_a_few_lines_then_one_summary_a_minute() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        let peer = |n: u16| SocketAddr::from(([192, 0, 2, 1], n));
        let mut full = 0;
        for n in 0..1000u16 {
            let note = log.note(
                t0 + Duration::from_millis(u64::from(n) * 50),
                peer(n),
                "junk",
            );
            assert_eq!(note.summary, None, "no summary inside the first minute");
            full += u32::from(note.full);
        }
        assert_eq!(full, FULL_FAILURES_PER_MINUTE);
        // Still inside the minute: nothing to roll.
        assert_eq!(log.roll(t0 + Duration::from_secs(59)), None);
        // The next failure after the minute brings the summary and is logged in full again.
        let note = log.note(t0 + Duration::from_secs(61), peer(7), "timed out");
        assert!(note.full);
        assert_eq!(
            note.summary,
            Some(FailureSummary {
                count: 1000 - u64::from(FULL_FAILURES_PER_MINUTE),
                last_peer: peer(999),
                last_reason: "junk".to_owned(),
            })
        );
        // A quiet minute with nothing suppressed rolls over with no summary.
        assert_eq!(log.roll(t0 + Duration::from_secs(200)), None);
        // The listener's minute tick flushes a count even when the flood stopped.
        let t1 = t0 + Duration::from_secs(300);
        for n in 0..8u16 {
            log.note(t1, peer(n), "plain text");
        }
        assert_eq!(
            log.roll(t1 + Duration::from_secs(60)).map(|s| s.count),
            Some(8 - u64::from(FULL_FAILURES_PER_MINUTE))
        );
        assert_eq!(log.roll(t1 + Duration::from_secs(600)), None);
    }

    #[test]
    fn server_names_take_dns_names_and_addresses() {
        assert!(matches!(
            server_name("sip.example.com"),
            Some(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(server_name("bad name!").is_none());
    }

    #[test]
    fn without_a_certificate_only_the_outbound_side_exists() {
        let ctx = contexts(&Tls {
            handshake_timeout: Duration::from_secs(10),
            ..Tls::default()
        })
        .expect("contexts");
        assert!(ctx.acceptor.is_none());
    }
}
