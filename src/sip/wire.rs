//! Headers the endpoint writes itself: Via (with a fresh branch), Contact, the received/rport
//! stamp on a request's top Via (RFC 3581, RFC 3261 §18.2.1), and the CANCEL for an INVITE we
//! sent (RFC 3261 §9.1). Pure functions.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::message::{BRANCH_COOKIE, Headers, Method, Request, Via};
use crate::config::model::Transport;
use crate::util::random_token;

/// A host as written in a URI or Via: IPv6 literals get brackets.
pub(crate) fn uri_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// A Via for a request we send over `transport`, and its fresh branch.
pub(crate) fn make_via(host: &str, port: u16, transport: Transport) -> (String, String) {
    let host = uri_host(host);
    let branch = format!("{BRANCH_COOKIE}{}", random_token(16));
    let transport = match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    };
    (
        format!("SIP/2.0/{transport} {host}:{port};branch={branch};rport"),
        branch,
    )
}

/// Our Contact (in angle brackets) for messages sent over `transport`: `;transport=tcp` or
/// `;transport=tls` for streams (RFC 3261 §19.1.1), and a `sips:` URI when the dialog is a
/// SIPS one (`sips`: its Request-URI is one; RFC 3261 §8.1.1.8, §12.1.1).
pub(crate) fn make_contact(host: &str, port: u16, transport: Transport, sips: bool) -> String {
    let host = uri_host(host);
    if sips && transport == Transport::Tls {
        return format!("<sips:rgsd@{host}:{port}>");
    }
    let transport = match transport {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
    };
    format!("<sip:rgsd@{host}:{port}{transport}>")
}

/// RFC 3581 and §18.2.1: record where the request really came from in its top Via, so that
/// responses go back there.
pub(crate) fn stamp_via(request: &mut Request, source: SocketAddr) {
    let Some(mut via) = request.top_via() else {
        return;
    };
    let host = via
        .sent_by
        .rsplit_once(':')
        .map_or(via.sent_by.as_str(), |(h, p)| {
            if p.parse::<u16>().is_ok() {
                h
            } else {
                &via.sent_by
            }
        });
    let host = host.trim_matches(['[', ']']);
    let mut changed = false;
    if host.parse::<IpAddr>().ok() != Some(source.ip()) {
        via.params
            .retain(|(n, _)| !n.eq_ignore_ascii_case("received"));
        via.params
            .push(("received".into(), Some(source.ip().to_string())));
        changed = true;
    }
    if let Some(p) = via
        .params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case("rport"))
    {
        p.1 = Some(source.port().to_string());
        changed = true;
    }
    if changed {
        request
            .headers
            .set_first_list_item("Via", &Via::to_string(&via));
    }
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
/// number and top Via; Route kept.
pub(crate) fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.get_list("Via").next() {
        headers.push("Via", via);
    }
    for route in invite.headers.get_lines("Route") {
        headers.push("Route", route);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "To", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            headers.push(name, v);
        }
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or_default();
    headers.push("CSeq", format!("{seq} CANCEL"));
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

/// Whether an extra header the controller asks for can go on the wire without breaking
/// framing (a valid token name, no line break in the value).
pub(crate) fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        && !value.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{self, Message};

    fn request(text: &str) -> Request {
        match message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:sales@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKabc;rport\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:sales@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n\r\n";

    #[test]
    fn via_gets_received_and_rport() {
        let mut r = request(INVITE);
        stamp_via(&mut r, "192.0.2.7:4444".parse().unwrap());
        let via = r.top_via().unwrap();
        assert_eq!(via.param("received"), Some(Some("192.0.2.7")));
        assert_eq!(via.param("rport"), Some(Some("4444")));
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_via_and_contact() {
        let (via, branch) = make_via("2001:db8::1", 5060, Transport::Udp);
        assert!(via.starts_with("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK"));
        assert!(branch.starts_with(BRANCH_COOKIE));
        assert!(Via::parse(&via).is_ok());
        assert_eq!(
            make_contact("::1", 5070, Transport::Tcp, false),
            "<sip:rgsd@[::1]:5070;transport=tcp>"
        );
        assert_eq!(
            make_contact("pbx.example.com", 5060, Transport::Udp, false),
            "<sip:rgsd@pbx.example.com:5060>"
        );
    }

    #[test]
    fn tls_via_and_contact() {
        let (via, _) = make_via("192.0.2.1", 5061, Transport::Tls);
        assert!(
            via.starts_with("SIP/2.0/TLS 192.0.2.1:5061;branch="),
            "{via}"
        );
        assert!(Via::parse(&via).is_ok());
        assert_eq!(
            make_contact("192.0.2.1", 5061, Transport::Tls, false),
            "<sip:rgsd@192.0.2.1:5061;transport=tls>"
        );
        assert_eq!(
            make_contact("192.0.2.1", 5061, Transport::Tls, true),
            "<sips:rgsd@192.0.2.1:5061>"
        );
        // A sips: dialog over anything but TLS has no SIPS Contact to offer.
        assert_eq!(
            make_contact("192.0.2.1", 5060, Transport::Tcp, true),
            "<sip:rgsd@192.0.2.1:5060;transport=tcp>"
        );
    }

    #[test]
    fn cancel_copies_the_invite_identity() {
        let r = request(INVITE);
        let c = cancel_for(&r);
        assert_eq!(c.headers.get("CSeq"), Some("2 CANCEL"));
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(c.uri, r.uri);
    }

    #[test]
    fn extra_headers_that_break_framing_are_refused() {
        assert!(header_ok("X-Queue", "sales"));
        assert!(!header_ok("X Queue", "sales"));
        assert!(!header_ok("", "x"));
        assert!(!header_ok("X-Queue", "a\r\nVia: evil"));
    }
}
