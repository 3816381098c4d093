//! `[server] tls` files: PEM certificate chains, private keys and CA bundles read and checked
//! (the key matches the certificate; the certificate's names and expiry), so that `rgsd check`,
//! start and reload all refuse the same broken files. The SIP layer builds its TLS contexts
//! from the DER this returns (see `docs/architecture.md`, transports).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::model::{TlsIdentity, TlsRoots};

/// A certificate expiring sooner than this is warned about.
pub(crate) const EXPIRY_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Why a TLS file is unusable; `Display` is the diagnostic (never the key's bytes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TlsFileError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("{path}: the certificate cannot be parsed: {reason}")]
    BadCertificate { path: String, reason: String },
    #[error("the private key {key} cannot be used: {reason}")]
    BadKey { key: String, reason: String },
    #[error("the private key {key} does not belong to the certificate {certificate}")]
    KeyMismatch { key: String, certificate: String },
    #[error("the certificate {path} expired on {at}")]
    Expired { path: String, at: String },
    #[error("the certificate {path} is not valid before {at}")]
    NotYetValid { path: String, at: String },
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError::Unreadable {
        path: shown(path),
        reason: e.to_string(),
    })
}

/// Every certificate of a PEM file (at least one).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsFileError::BadCertificate {
            path: shown(path),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { path: shown(path) });
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|e| TlsFileError::BadCertificate {
            path: shown(path),
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// A CA bundle.
pub(crate) fn roots(path: &Path) -> Result<TlsRoots, TlsFileError> {
    Ok(TlsRoots {
        path: path.to_path_buf(),
        certificates: certificates(path)?,
    })
}

/// The certificate chain and key, checked: the key parses, matches the end-entity certificate,
/// and that certificate is valid at `now`.
pub(crate) fn identity(
    certificate: &Path,
    private_key: &Path,
    now: DateTime<Utc>,
) -> Result<TlsIdentity, TlsFileError> {
    let chain = certificates(certificate)?;
    let pem = read(private_key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsFileError::NoKey {
            path: shown(private_key),
        },
        other => TlsFileError::BadKey {
            key: shown(private_key),
            reason: other.to_string(),
        },
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsFileError::BadKey {
            key: shown(private_key),
            reason: e.to_string(),
        })?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|_| TlsFileError::KeyMismatch {
            key: shown(private_key),
            certificate: shown(certificate),
        })?;
    let Described {
        names,
        not_before,
        not_after,
    } = describe(&chain[0]).map_err(|reason| TlsFileError::BadCertificate {
        path: shown(certificate),
        reason,
    })?;
    if now > not_after {
        return Err(TlsFileError::Expired {
            path: shown(certificate),
            at: not_after.to_rfc3339(),
        });
    }
    if now < not_before {
        return Err(TlsFileError::NotYetValid {
            path: shown(certificate),
            at: not_before.to_rfc3339(),
        });
    }
    Ok(TlsIdentity {
        certificate: certificate.to_path_buf(),
        private_key: private_key.to_path_buf(),
        chain,
        key: Arc::new(key),
        names,
        not_after,
    })
}

/// What a certificate says about itself: its names and when it is valid.
struct Described {
    names: Vec<String>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

/// A certificate's subject alternative names (DNS names and IP addresses; the subject's common
/// name when it has none) and its validity period.
fn describe(der: &[u8]) -> Result<Described, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    names.extend(ip);
                }
                GeneralName::URI(u) => names.push((*u).to_owned()),
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).ok_or("a validity date is out of range")
    };
    let validity = cert.validity();
    Ok(Described {
        names,
        not_before: time(validity.not_before)?,
        not_after: time(validity.not_after)?,
    })
}

/// What the running daemon says about its certificate's expiry at one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpiryAlarm {
    /// Expires within [`EXPIRY_WARNING`]: a warning.
    Soon { not_after: DateTime<Utc> },
    /// Has expired: an error (TLS clients now refuse it).
    Expired { not_after: DateTime<Utc> },
}

/// How often the running daemon repeats an expiry warning or error.
pub(crate) const EXPIRY_REPEAT: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Decides when the running daemon logs about its certificate's expiry: once a day while it
/// expires within [`EXPIRY_WARNING`], and as an error as soon as (and once a day while) it has
/// expired. A new certificate (another `not_after`, after a reload) starts afresh.
#[derive(Debug, Default)]
pub(crate) struct ExpiryWatch {
    /// The certificate last looked at and when we last logged about it (and whether that was
    /// the error).
    last: Option<(DateTime<Utc>, DateTime<Utc>, bool)>,
}

impl ExpiryWatch {
    /// A watch whose certificate was already warned about at `now` (the configuration's
    /// warning at start).
    pub(crate) fn warned_at_start(not_after: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let soon = not_after - now < EXPIRY_WARNING;
        Self {
            last: soon.then_some((not_after, now, now > not_after)),
        }
    }

    /// What to log now, if anything, for a certificate valid until `not_after`.
    pub(crate) fn check(
        &mut self,
        not_after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<ExpiryAlarm> {
        let expired = now > not_after;
        if !expired && not_after - now >= EXPIRY_WARNING {
            self.last = None;
            return None;
        }
        if let Some((cert, at, was_expired)) = self.last
            && cert == not_after
            && was_expired == expired
            && now - at < EXPIRY_REPEAT
        {
            return None;
        }
        self.last = Some((not_after, now, expired));
        Some(if expired {
            ExpiryAlarm::Expired { not_after }
        } else {
            ExpiryAlarm::Soon { not_after }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_daemon_warns_daily_before_expiry_and_errs_once_expired() {
        use chrono::TimeZone;
        let day = chrono::TimeDelta::days(1);
        let hour = chrono::TimeDelta::hours(1);
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let not_after = start + chrono::TimeDelta::days(40);
        let mut watch = ExpiryWatch::warned_at_start(not_after, start);
        // Forty days left: nothing, at start or for the next ten days.
        for h in 0..(10 * 24) {
            assert_eq!(watch.check(not_after, start + hour * h), None, "hour {h}");
        }
        // Thirty days left: one warning, then quiet for a day, then the next one.
        let soon = not_after - EXPIRY_WARNING + hour;
        let alarm = Some(ExpiryAlarm::Soon { not_after });
        assert_eq!(watch.check(not_after, soon), alarm);
        for h in 1..24 {
            assert_eq!(watch.check(not_after, soon + hour * h), None, "hour {h}");
        }
        assert_eq!(watch.check(not_after, soon + day), alarm);
        // The moment it expires: the error at once, not a day after the last warning.
        let gone = not_after + chrono::TimeDelta::minutes(1);
        assert_eq!(watch.check(not_after, not_after - hour * 2), alarm);
        let expired = Some(ExpiryAlarm::Expired { not_after });
        assert_eq!(watch.check(not_after, gone), expired);
        assert_eq!(watch.check(not_after, gone + hour), None);
        assert_eq!(watch.check(not_after, gone + day), expired);
        // A renewed certificate (SIGHUP) is quiet; a replacement expiring soon is warned at once.
        let renewed = gone + chrono::TimeDelta::days(365);
        assert_eq!(watch.check(renewed, gone + day + hour), None);
        let short = gone + chrono::TimeDelta::days(5);
        assert_eq!(
            watch.check(short, gone + day + hour * 2),
            Some(ExpiryAlarm::Soon { not_after: short })
        );

        // Started within the thirty days: the configuration warned already, the next is a day on.
        let mut watch = ExpiryWatch::warned_at_start(not_after, soon);
        assert_eq!(watch.check(not_after, soon + hour), None);
        assert_eq!(watch.check(not_after, soon + day), alarm);
    }

    fn pair(names: &[&str], not_after: (i32, u8, u8)) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).expect("write");
        std::fs::write(&k, key).expect("write");
        (c, k)
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("date")
            .and_utc()
    }

    #[test]
    fn reads_names_and_expiry_and_checks_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(&["sip.example.com", "127.0.0.1"], (2030, 6, 1));
        let (c, k) = files(dir.path(), &cert, &key);
        let id = identity(&c, &k, at(2026, 1, 1)).expect("valid");
        assert_eq!(id.names, ["sip.example.com", "127.0.0.1"]);
        assert_eq!(id.not_after.date_naive().to_string(), "2030-06-01");
        assert!(
            !format!("{id:?}").contains("PRIVATE"),
            "Debug hides the key"
        );

        assert!(matches!(
            identity(&c, &k, at(2030, 6, 2)),
            Err(TlsFileError::Expired { .. })
        ));
        assert!(matches!(
            identity(&c, &k, at(2019, 6, 2)),
            Err(TlsFileError::NotYetValid { .. })
        ));

        let (_, other_key) = pair(&["x"], (2030, 1, 1));
        std::fs::write(&k, other_key).expect("write");
        assert!(matches!(
            identity(&c, &k, at(2026, 1, 1)),
            Err(TlsFileError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn refuses_files_without_pem_items() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, _) = pair(&["a.example"], (2030, 1, 1));
        let (c, k) = files(dir.path(), "not a certificate", "not a key");
        assert!(matches!(
            certificates(&c),
            Err(TlsFileError::NoCertificate { .. })
        ));
        std::fs::write(&c, cert).expect("write");
        let err = identity(&c, &k, at(2026, 1, 1)).expect_err("no key");
        assert!(matches!(err, TlsFileError::NoKey { .. }), "{err}");
        assert!(matches!(
            identity(&dir.path().join("missing.pem"), &k, at(2026, 1, 1)),
            Err(TlsFileError::Unreadable { .. })
        ));
    }
}
