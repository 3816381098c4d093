//! RFC 4028 session timers, pure: what rgsd answers to a request that carries
//! `Session-Expires`, what it offers on the requests it sends, who refreshes a dialog, and when
//! a refresh or the end of a silent session is due.
//!
//! rgsd refreshes when the peer lets it: a caller that names `refresher=uas`, or leaves the
//! choice to rgsd, gets rgsd as refresher; an agent's 2xx that keeps our `refresher=uac` (or
//! has no Session-Expires at all, §7.2) leaves rgsd refreshing too. A refresher sends its
//! refresh at half the interval (§10); the other side ends the session at
//! `interval − min(32 s, interval / 3)` without one. The leg core (`leg.rs`) runs the timer.

use std::time::Duration;

use super::message::{Headers, Response};

/// Smallest Session-Expires RFC 4028 allows (§4: Min-SE is at least 90 s).
pub(crate) const MIN_SE: u32 = 90;

/// Who sends the refreshes of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    Us,
    Peer,
}

/// A dialog's negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    /// Seconds.
    pub interval: u32,
    pub refresher: Refresher,
}

impl Session {
    /// How long after a refresh rgsd acts: the refresher refreshes at half the interval; the
    /// other side sends BYE at `interval − min(32 s, interval / 3)` (RFC 4028 §10).
    pub(crate) fn due(self) -> Duration {
        let interval = Duration::from_secs(u64::from(self.interval));
        match self.refresher {
            Refresher::Us => interval / 2,
            Refresher::Peer => interval - Duration::from_secs(32).min(interval / 3),
        }
    }
}

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

/// The `Min-SE` of a 422 (or of a request), in seconds.
pub(crate) fn min_se(headers: &Headers) -> Option<u32> {
    headers
        .get("Min-SE")?
        .split(';')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn supports_timer(headers: &Headers) -> bool {
    headers
        .get_list("Supported")
        .chain(headers.get_list("Require"))
        .any(|t| t.eq_ignore_ascii_case("timer"))
}

/// Whether the peer's `Allow` (of its INVITE or its 2xx) lists UPDATE: then refreshes are
/// UPDATEs without SDP, else re-INVITEs.
pub(crate) fn allows_update(headers: &Headers) -> bool {
    headers
        .get_list("Allow")
        .any(|m| m.eq_ignore_ascii_case("UPDATE"))
}

/// What a 2xx echoes (RFC 4028 §9): `Session-Expires` value, and whether to add
/// `Require: timer` (only if the peer supports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Echo {
    pub session_expires: String,
    pub require: bool,
}

/// rgsd's verdict on an INVITE or UPDATE it receives (it is the UAS of that transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No Session-Expires: no session timer for the dialog from this request.
    None,
    /// The interval is below our Min-SE: answer 422 with `Min-SE: min_se`.
    TooSmall { min_se: u32 },
    /// Accept: echo this in the 2xx and run this timer.
    Accept { echo: Echo, session: Session },
}

/// RFC 4028 §9: the UAS keeps the interval (≥ `min_se`), and the refresher the UAC named;
/// when it named none, rgsd (the UAS) refreshes, which is also the only choice when the UAC
/// does not support the extension.
pub(crate) fn on_request(headers: &Headers, min_se: u32) -> Verdict {
    let Some((secs, refresher)) = session_expires(headers) else {
        return Verdict::None;
    };
    if secs < min_se {
        return Verdict::TooSmall { min_se };
    }
    let supported = supports_timer(headers);
    let refresher = match refresher.as_deref() {
        Some("uac") if supported => Refresher::Peer,
        _ => Refresher::Us,
    };
    let name = match refresher {
        Refresher::Peer => "uac",
        Refresher::Us => "uas",
    };
    Verdict::Accept {
        echo: Echo {
            session_expires: format!("{secs};refresher={name}"),
            require: supported,
        },
        session: Session {
            interval: secs,
            refresher,
        },
    }
}

/// The headers rgsd puts on a request that offers (or refreshes) a session timer with itself,
/// the UAC of that request, as refresher.
pub(crate) fn offer(headers: &mut Headers, interval: u32, min_se: u32) {
    headers.push("Supported", "timer");
    headers.push("Session-Expires", format!("{interval};refresher=uac"));
    headers.push("Min-SE", min_se.min(interval).to_string());
}

/// The session after the 2xx to a request of ours that offered `offered` seconds: the 2xx's
/// choice, or rgsd refreshing when the 2xx has no Session-Expires (the peer does not support
/// the extension, RFC 4028 §7.2).
pub(crate) fn on_success(headers: &Headers, offered: u32) -> Session {
    match session_expires(headers) {
        Some((secs, refresher)) => Session {
            interval: secs,
            refresher: if refresher.as_deref() == Some("uas") {
                Refresher::Peer
            } else {
                Refresher::Us
            },
        },
        None => Session {
            interval: offered,
            refresher: Refresher::Us,
        },
    }
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

    fn with(se: &str) -> Request {
        request(&INVITE.replace("Session-Expires: 1800", se))
    }

    fn accept(value: &str, require: bool, interval: u32, refresher: Refresher) -> Verdict {
        Verdict::Accept {
            echo: Echo {
                session_expires: value.to_owned(),
                require,
            },
            session: Session {
                interval,
                refresher,
            },
        }
    }

    #[test]
    fn the_callers_choice_of_refresher_is_kept_and_rgsd_refreshes_when_left_to_it() {
        let cases = [
            (
                "Session-Expires: 1800;refresher=uas",
                accept("1800;refresher=uas", true, 1800, Refresher::Us),
            ),
            (
                "Session-Expires: 1800;refresher=uac",
                accept("1800;refresher=uac", true, 1800, Refresher::Peer),
            ),
            (
                "Session-Expires: 1800",
                accept("1800;refresher=uas", true, 1800, Refresher::Us),
            ),
            (
                "Session-Expires: 90;refresher=uas",
                accept("90;refresher=uas", true, 90, Refresher::Us),
            ),
            ("Session-Expires: 89", Verdict::TooSmall { min_se: 90 }),
            (
                "Session-Expires: 60;refresher=uac",
                Verdict::TooSmall { min_se: 90 },
            ),
            ("X-Nothing: 1", Verdict::None),
        ];
        for (se, want) in cases {
            assert_eq!(on_request(&with(se).headers, MIN_SE), want, "{se}");
        }
        // A larger configured Min-SE refuses what RFC 4028's floor would allow.
        assert_eq!(
            on_request(&with("Session-Expires: 300").headers, 600),
            Verdict::TooSmall { min_se: 600 }
        );
    }

    #[test]
    fn a_caller_without_timer_support_gets_rgsd_as_refresher_and_no_require() {
        let r = request(&INVITE.replace("Supported: timer, 100rel", "Supported: 100rel"));
        assert_eq!(
            on_request(&r.headers, MIN_SE),
            accept("1800;refresher=uas", false, 1800, Refresher::Us)
        );
        // Even when it names itself: it cannot refresh what it does not support.
        let r = request(
            &INVITE
                .replace("Supported: timer, 100rel", "Supported: 100rel")
                .replace(
                    "Session-Expires: 1800",
                    "Session-Expires: 1800;refresher=uac",
                ),
        );
        assert_eq!(
            on_request(&r.headers, MIN_SE),
            accept("1800;refresher=uas", false, 1800, Refresher::Us)
        );
    }

    #[test]
    fn our_offer_and_the_answers_choice() {
        let mut r = request(INVITE);
        r.headers = Headers::new();
        offer(&mut r.headers, 1800, 90);
        assert_eq!(r.headers.get("Session-Expires"), Some("1800;refresher=uac"));
        assert_eq!(r.headers.get("Min-SE"), Some("90"));
        assert!(supports_timer(&r.headers));
        let answer = |se: &str| {
            let mut h = Headers::new();
            if !se.is_empty() {
                h.push("Session-Expires", se);
            }
            on_success(&h, 1800)
        };
        let s = |interval, refresher| Session {
            interval,
            refresher,
        };
        assert_eq!(answer("1800;refresher=uac"), s(1800, Refresher::Us));
        assert_eq!(answer("900;refresher=uas"), s(900, Refresher::Peer));
        assert_eq!(answer("600"), s(600, Refresher::Us));
        assert_eq!(answer(""), s(1800, Refresher::Us), "no timer support");
        let mut h = Headers::new();
        h.push("Min-SE", "300;x=1");
        assert_eq!(min_se(&h), Some(300));
    }

    #[test]
    fn refresh_at_half_the_interval_and_expiry_before_its_end() {
        let us = |interval| {
            Session {
                interval,
                refresher: Refresher::Us,
            }
            .due()
        };
        let peer = |interval| {
            Session {
                interval,
                refresher: Refresher::Peer,
            }
            .due()
        };
        assert_eq!(us(90), Duration::from_secs(45));
        assert_eq!(us(1800), Duration::from_secs(900));
        // min(32 s, SE/3): SE/3 for short intervals, 32 s beyond 96 s.
        assert_eq!(peer(90), Duration::from_secs(60));
        assert_eq!(peer(96), Duration::from_secs(64));
        assert_eq!(peer(1800), Duration::from_secs(1768));
    }

    #[test]
    fn allow_lists_update() {
        let mut h = Headers::new();
        h.push("Allow", "INVITE, ACK, BYE");
        assert!(!allows_update(&h));
        h.push("Allow", "update");
        assert!(allows_update(&h));
    }
}
