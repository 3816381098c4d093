//! RFC 4028 session timers, pure: what rgsd answers to a request that carries
//! `Session-Expires`.
//!
//! rgsd never sends session refreshes, so it never agrees to be the refresher: a request that
//! names `refresher=uas` without `Require: timer` is answered as by a UA without session timers
//! (no Session-Expires, no `Supported: timer`), and the peer refreshes or runs no timer (RFC
//! 4028 §7.4). Only a peer that *requires* the extension and names rgsd the refresher gets its
//! choice echoed, with a warning: it may end the call when the interval passes.

use super::message::{Headers, Response};

/// Smallest Session-Expires we accept (RFC 4028 §4 recommends 90 s); below it, 422.
pub(crate) const MIN_SE: u32 = 90;

/// `Session-Expires: 1800;refresher=uac` as (seconds, refresher).
pub(crate) fn session_expires(headers: &Headers) -> Option<(u32, Option<String>)> {
    let value = headers.get("Session-Expires")?;
    let mut parts = value.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        p.trim()
            .strip_prefix("refresher=")
            .map(|r| r.trim().to_ascii_lowercase())
    });
    Some((secs, refresher))
}

/// What a 2xx echoes (RFC 4028 §9): `Session-Expires` value, and whether to add
/// `Require: timer` (only if the peer supports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Echo {
    pub session_expires: String,
    pub require: bool,
}

/// What to echo in a 2xx to a request that asked for session timers: the interval, the
/// refresher (the peer, `uac`, unless it chose), and whether to add `Require: timer`.
pub(crate) fn reply(headers: &Headers) -> Option<Echo> {
    let (secs, refresher) = session_expires(headers)?;
    if declines(headers) {
        return None;
    }
    let refresher = refresher.unwrap_or_else(|| "uac".to_owned());
    if refresher == "uas" {
        tracing::warn!(
            secs,
            "the caller requires session timers with rgsd as refresher; rgsd does not refresh, \
             so the caller may end the call when the interval passes"
        );
    }
    let require = headers
        .get_list("Supported")
        .any(|t| t.eq_ignore_ascii_case("timer"));
    Some(Echo {
        session_expires: format!("{secs};refresher={refresher}"),
        require,
    })
}

/// Whether to answer `headers`' request as a UA without session timers: it asks rgsd to be
/// the refresher and does not require the extension.
pub(crate) fn declines(headers: &Headers) -> bool {
    let required = headers
        .get_list("Require")
        .any(|t| t.eq_ignore_ascii_case("timer"));
    !required && session_expires(headers).is_some_and(|(_, r)| r.as_deref() == Some("uas"))
}

/// Adds the echo to a 2xx.
pub(crate) fn add(response: &mut Response, echo: Option<Echo>) {
    if let Some(echo) = echo {
        response
            .headers
            .push("Session-Expires", echo.session_expires);
        if echo.require {
            response.headers.push("Require", "timer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{self, Message, Request};

    fn request(text: &str) -> Request {
        match message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:sales@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKabc;rport\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:sales@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n\
Session-Expires: 1800\r\nSupported: timer, 100rel\r\n\r\n";

    fn echo(value: &str, require: bool) -> Option<Echo> {
        Some(Echo {
            session_expires: value.to_owned(),
            require,
        })
    }

    #[test]
    fn rgsd_declines_to_be_the_refresher_unless_the_caller_requires_it() {
        let asked = request(&INVITE.replace(
            "Session-Expires: 1800",
            "Session-Expires: 1800;refresher=uas",
        ));
        assert!(declines(&asked.headers));
        assert_eq!(reply(&asked.headers), None);
        let required = request(&INVITE.replace(
            "Session-Expires: 1800",
            "Session-Expires: 1800;refresher=uas\r\nRequire: timer",
        ));
        assert!(!declines(&required.headers));
        assert_eq!(reply(&required.headers), echo("1800;refresher=uas", true));
        let peer = request(&INVITE.replace(
            "Session-Expires: 1800",
            "Session-Expires: 1800;refresher=uac",
        ));
        assert!(!declines(&peer.headers));
    }

    #[test]
    fn session_timer_echo_defaults_refresher_to_uac_and_requires_timer() {
        let r = request(INVITE);
        assert_eq!(reply(&r.headers), echo("1800;refresher=uac", true));
        let unsupported = request(&INVITE.replace("Supported: timer, 100rel", "Supported: 100rel"));
        assert_eq!(
            reply(&unsupported.headers),
            echo("1800;refresher=uac", false)
        );
        let none = request(&INVITE.replace("Session-Expires: 1800\r\n", ""));
        assert_eq!(reply(&none.headers), None);
    }
}
