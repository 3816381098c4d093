//! Admission of requests at the edge, pure: which requests may reach a transaction user at all
//! (per-source rate limit), which sources may create dialogs (`trusted_peers`), and what a new
//! INVITE is answered when it cannot become a call (unsupported extension, wrong body, too
//! short a session interval, unknown or inactive workflow, `max_calls`).
//!
//! The driver asks `Admission` and sends what it says; nothing here does I/O. Time comes in
//! as a parameter. `Admission::reconfigure` replaces the limits while calls run.

use std::net::IpAddr;

use ipnet::IpNet;
use tokio::time::Instant;

use super::message::{Headers, Method, Request};
use super::policy::{RateLimit, RateLimiter, Verdict, is_trusted};
use super::session_timer::{self, MIN_SE};

/// Seconds a caller is told to wait when we are at `max_calls`.
pub(crate) const RETRY_AFTER: &str = "5";

/// An opaque routing result: whatever the [`CallRouter`] needs to find the call's target again
/// (the acd layer puts a workflow id in it). The SIP layer never interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub u64);

/// What the upper layer says about an inbound INVITE's Request-URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDecision {
    /// A workflow takes it: hand the call up, with the id the router found.
    Accept(RouteId),
    /// No workflow has this URI: 404.
    NotFound,
    /// The workflow exists but is inactive: 480.
    Inactive,
}

/// The upper layer's lookup from Request-URI (and To) to a workflow. Called on the driver
/// task for every new INVITE, so it must be synchronous and cheap (read an `ArcSwap`).
pub trait CallRouter: Send + Sync {
    fn route(&self, request_uri: &str, to: &str) -> RouteDecision;
}

impl<F> CallRouter for F
where
    F: Fn(&str, &str) -> RouteDecision + Send + Sync,
{
    fn route(&self, request_uri: &str, to: &str) -> RouteDecision {
        self(request_uri, to)
    }
}

/// A refusal: the status and the headers that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn bare(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }

    fn with(status: u16, name: &'static str, value: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![(name, value.into())],
        }
    }
}

/// The edge limits in force.
#[derive(Debug)]
pub(crate) struct Admission {
    trusted_peers: Vec<IpNet>,
    max_calls: u32,
    /// `None` when the per-source limit is off.
    limiter: Option<RateLimiter>,
}

impl Admission {
    pub(crate) fn new(
        trusted_peers: Vec<IpNet>,
        max_calls: u32,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        Self {
            trusted_peers,
            max_calls,
            limiter: rate_limit.map(RateLimiter::new),
        }
    }

    /// Applies new limits. A rate limiter whose limit did not change keeps its buckets.
    pub(crate) fn reconfigure(
        &mut self,
        trusted_peers: Vec<IpNet>,
        max_calls: u32,
        rate_limit: Option<RateLimit>,
    ) {
        self.trusted_peers = trusted_peers;
        self.max_calls = max_calls;
        let same = match (&self.limiter, rate_limit) {
            (Some(l), Some(r)) => l.limit() == r,
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.limiter = rate_limit.map(RateLimiter::new);
        }
    }

    /// Whether a message from `source` may be looked at. Only requests count: responses answer
    /// requests rgsd sent (an agent answering its INVITEs must not be throttled).
    pub(crate) fn pass_rate(&mut self, source: IpAddr, is_response: bool, now: Instant) -> Verdict {
        match (is_response, &mut self.limiter) {
            (false, Some(limiter)) => limiter.check(source, now),
            _ => Verdict::Allow,
        }
    }

    /// 403 for a dialog-creating request from outside `trusted_peers`.
    pub(crate) fn check_source(&self, method: &Method, source: IpAddr) -> Option<Refusal> {
        let creates_dialog = matches!(method, Method::Invite | Method::Subscribe | Method::Refer);
        (creates_dialog && !is_trusted(&self.trusted_peers, source)).then(|| Refusal::bare(403))
    }

    /// Whether a new INVITE may become a call, given the router's verdict and the inbound calls
    /// now running. The checks run in the order a caller can fix them: the request itself
    /// (416, 420, 415, 422), then the target (404, 480), then capacity (503).
    pub(crate) fn check_invite(
        &self,
        request: &Request,
        route: RouteDecision,
        inbound_calls: u32,
    ) -> Result<RouteId, Refusal> {
        // `tel:` (RFC 3966) is how a trunk may address a number; the router looks it up.
        let scheme = request.uri.split(':').next().unwrap_or_default();
        if !["sip", "sips", "tel"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            return Err(Refusal::bare(416));
        }
        let unsupported: Vec<&str> = request
            .headers
            .get_list("Require")
            .filter(|tag| !tag.eq_ignore_ascii_case("timer"))
            .collect();
        if !unsupported.is_empty() {
            return Err(Refusal::with(420, "Unsupported", unsupported.join(", ")));
        }
        if !request.body.is_empty() && !is_sdp(&request.headers) {
            return Err(Refusal::with(415, "Accept", "application/sdp"));
        }
        if session_timer::session_expires(&request.headers).is_some_and(|(secs, _)| secs < MIN_SE) {
            return Err(Refusal::with(422, "Min-SE", MIN_SE.to_string()));
        }
        let id = match route {
            RouteDecision::Accept(id) => id,
            RouteDecision::NotFound => return Err(Refusal::bare(404)),
            RouteDecision::Inactive => return Err(Refusal::bare(480)),
        };
        if inbound_calls >= self.max_calls {
            return Err(Refusal::with(503, "Retry-After", RETRY_AFTER));
        }
        Ok(id)
    }
}

fn is_sdp(headers: &Headers) -> bool {
    headers.get("Content-Type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{self, Message};

    fn invite(extra: &str, body: &str) -> Request {
        let text = format!(
            "INVITE sip:sales@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:sales@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n\
{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const OK: RouteDecision = RouteDecision::Accept(RouteId(7));

    fn admission() -> Admission {
        Admission::new(vec!["10.0.0.0/8".parse().unwrap()], 2, None)
    }

    #[test]
    fn invite_verdicts() {
        let a = admission();
        let sdp = "Content-Type: application/sdp\r\n";
        // (extra headers, body, router's verdict, calls running, route id or status)
        type Case<'a> = (&'a str, &'a str, RouteDecision, u32, Result<u64, u16>);
        let cases: &[Case<'_>] = &[
            ("", "", OK, 0, Ok(7)),
            (sdp, "v=0\r\n", OK, 1, Ok(7)),
            ("Require: timer\r\n", "", OK, 0, Ok(7)),
            ("Require: 100rel\r\n", "", OK, 0, Err(420)),
            ("Content-Type: text/plain\r\n", "hi", OK, 0, Err(415)),
            ("Session-Expires: 60\r\n", "", OK, 0, Err(422)),
            ("Session-Expires: 90\r\n", "", OK, 0, Ok(7)),
            ("", "", RouteDecision::NotFound, 0, Err(404)),
            ("", "", RouteDecision::Inactive, 0, Err(480)),
            ("", "", OK, 2, Err(503)),
            // The request's own faults come before the target's and capacity.
            ("Require: foo\r\n", "", RouteDecision::NotFound, 9, Err(420)),
            ("", "", RouteDecision::NotFound, 9, Err(404)),
        ];
        for (extra, body, route, calls, want) in cases {
            let got = a
                .check_invite(&invite(extra, body), *route, *calls)
                .map(|r| r.0)
                .map_err(|r| r.status);
            assert_eq!(got, *want, "{extra:?} {route:?} {calls}");
        }
        let mut tel = invite("", "");
        tel.uri = "tel:+14255550100".into();
        assert_eq!(a.check_invite(&tel, OK, 0).map(|r| r.0).ok(), Some(7));
        for scheme in [
            "http:",
            "urn:service:sos",
            "mailto:a@b",
            "sales@127.0.0.1",
            "",
        ] {
            let mut other = invite("", "");
            other.uri = scheme.into();
            let got = a.check_invite(&other, OK, 0).map_err(|r| r.status);
            assert_eq!(got, Err(416), "{scheme:?}");
        }
        let r = a.check_invite(&invite("", ""), OK, 2).unwrap_err();
        assert_eq!(r.headers, vec![("Retry-After", RETRY_AFTER.to_owned())]);
    }

    #[test]
    fn only_dialog_creating_requests_from_outside_are_refused() {
        let a = admission();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(a.check_source(&Method::Invite, inside), None);
        for m in [Method::Invite, Method::Subscribe, Method::Refer] {
            assert_eq!(a.check_source(&m, outside).map(|r| r.status), Some(403));
        }
        assert_eq!(a.check_source(&Method::Options, outside), None);
    }

    #[test]
    fn reconfigure_narrows_peers_and_limits_live() {
        let mut a = admission();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        a.reconfigure(vec!["192.0.2.0/24".parse().unwrap()], 0, None);
        assert_eq!(
            a.check_source(&Method::Invite, peer).map(|r| r.status),
            Some(403)
        );
        let r = a.check_invite(&invite("", ""), OK, 0).unwrap_err();
        assert_eq!(r.status, 503);
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1.0,
        };
        a.reconfigure(Vec::new(), 1, Some(limit));
        let now = Instant::now();
        assert_eq!(a.pass_rate(peer, false, now), Verdict::Allow);
        assert_ne!(a.pass_rate(peer, false, now), Verdict::Allow);
        // Responses are never throttled.
        assert_eq!(a.pass_rate(peer, true, now), Verdict::Allow);
        // The same limit again keeps the buckets (the source stays throttled).
        a.reconfigure(Vec::new(), 1, Some(limit));
        assert_ne!(a.pass_rate(peer, false, now), Verdict::Allow);
    }
}
