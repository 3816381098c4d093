//! TLS contexts for SIP over TLS (RFC 3261 §26.2, RFC 5630), built with rustls on the *ring*
//! provider from the `[server] tls` material the configuration already read and checked.
//!
//! - Inbound (`tls:` listeners): our certificate; with `client_ca`, a client certificate that CA
//!   signed is required (mutual TLS with a trunk).
//! - Outbound (`sips:` and `;transport=tls` targets): the peer's certificate is checked against
//!   `ca` or the system's roots, and against the name we connect to (the URI's host); our own
//!   certificate, when configured, is offered as the client certificate.

use std::sync::Arc;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
