//! SIP URIs (RFC 3261 §19.1): the one type and the one parser every layer uses.
//!
//! - [`SipUri::parse`] checks a `sip:`/`sips:` URI with `rsip`'s URI grammar and keeps it as
//!   written: the configuration, the API and the store all hold [`SipUri`]s.
//! - [`user_host`] is the allocation-free view routing needs on every INVITE: the user and host
//!   of a Request-URI, without port or parameters.
//! - [`target`] is what the SIP layer needs to send a request: host, port, `;transport=tcp`.
//!
//! `config` sits at the bottom of the layer table (`docs/architecture.md`), so `sip`, `acd` and
//! `api` can all use these without an arrow pointing up.

/// A SIP URI that parsed (`sip:` or `sips:`), kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipUri(pub String);

impl SipUri {
    /// Checks a `sip:` or `sips:` URI and keeps it as written.
    ///
    /// # Errors
    /// A message for the user: wrong scheme, white space, or not valid URI syntax (no host,
    /// trailing garbage).
    pub fn parse(text: &str) -> Result<Self, String> {
        let scheme_ok = text.split_once(':').is_some_and(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
        });
        if !scheme_ok {
            return Err(format!(
                "\"{text}\" is not a SIP URI; write \"sip:user@host\" or \"sips:user@host\""
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "\"{text}\" is not a SIP URI: it contains white space"
            ));
        }
        match rsip_uri(text) {
            Some(uri) if !uri.host().to_string().is_empty() => Ok(Self(text.to_owned())),
            _ => Err(format!(
                "\"{text}\" is not a valid SIP URI; write \"sip:user@host[:port]\""
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The whole text as an rsip URI. rsip's `Uri::try_from(&str)` ignores trailing input, so
/// tokenize and require all of it to be consumed.
fn rsip_uri(text: &str) -> Option<rsip::Uri> {
    rsip::common::uri::Tokenizer::<&[u8], u8>::tokenize(text.as_bytes())
        .ok()
        .filter(|(rest, _)| rest.is_empty())
        .and_then(|(_, tokens)| rsip::Uri::try_from(tokens).ok())
}

/// The `user@host` of a SIP URI, without scheme, port or parameters (and without the `<>` of a
/// name-addr). `None` when the text is not a `sip:`/`sips:` URI with a user part. Borrowed from
/// the text: routing calls it on every INVITE.
pub(crate) fn user_host(uri: &str) -> Option<(&str, &str)> {
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

/// Where a request to a SIP URI goes (RFC 3263 starts from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTarget {
    pub host: String,
    pub port: Option<u16>,
    /// `;transport=tcp` present.
    pub tcp: bool,
    /// A `sips:` URI, or `;transport=tls` present: the request goes over TLS (default port
    /// 5061, RFC 3261 §19.1.2).
    pub tls: bool,
    /// The user part, if any.
    pub user: Option<String>,
}

/// The target of a `sip:`/`sips:` URI (surrounding white space allowed); `None` when it does not
/// parse as a whole (the same grammar as [`SipUri::parse`]).
pub(crate) fn target(uri: &str) -> Option<UriTarget> {
    let parsed = rsip_uri(uri.trim())?;
    let host = match &parsed.host_with_port.host {
        rsip::Host::Domain(d) => d.to_string(),
        rsip::Host::IpAddr(ip) => ip.to_string(),
    };
    let port = parsed.host_with_port.port.as_ref().map(|p| *p.value());
    let tcp = parsed
        .params
        .iter()
        .any(|p| matches!(p, rsip::Param::Transport(t) if *t == rsip::Transport::Tcp));
    let tls = parsed.scheme == Some(rsip::Scheme::Sips)
        || parsed
            .params
            .iter()
            .any(|p| matches!(p, rsip::Param::Transport(t) if *t == rsip::Transport::Tls));
    Some(UriTarget {
        host,
        port,
        tcp,
        tls,
        user: parsed.user().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_valid_uris_as_written_and_refuses_the_rest() {
        for good in [
            "sip:alice@127.0.0.1:5071",
            "sip:+14255550199@127.0.0.1:5080",
            "sip:127.0.0.1:5080",
            "sips:bob@example.com",
            "sip:sales@example.com;transport=tcp",
        ] {
            assert_eq!(
                SipUri::parse(good).map(|u| u.0),
                Ok(good.to_owned()),
                "{good}"
            );
        }
        for bad in [
            "alice@example.com",
            "http://example.com",
            "tel:+14255550100",
            "sip:",
            "sip:alice@",
            "sip:alice@host extra",
            "sip:alice@host\u{7}",
            "",
        ] {
            assert!(SipUri::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

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

    #[test]
    fn target_has_host_port_and_transport() {
        let t = target("sip:agent@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tcp, t.user.as_deref()),
            ("127.0.0.1", Some(5070), true, Some("agent"))
        );
        let t = target(" sip:example.com ").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tcp, t.user),
            ("example.com", None, false, None)
        );
        assert_eq!(target("not a uri"), None);
        assert_eq!(target("sip:agent@host extra"), None);
    }
}
