//! Dialog state (RFC 3261 §12), pure: identifiers, CSeq counters, route set, remote target, and
//! the in-dialog requests built from them.

use bytes::Bytes;

use super::message::{Headers, Method, NameAddr, Request, Response};

/// One side's view of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    /// `None` until the remote side answers (an outbound leg before its first tagged response).
    pub remote_tag: Option<String>,
    /// Our address-of-record as written in From (UAC) or To (UAS), without tag.
    pub local_uri: NameAddr,
    pub remote_uri: NameAddr,
    /// Next CSeq for requests we send.
    pub local_cseq: u32,
    /// Highest CSeq seen from the peer (requests with a lower one get 500).
    pub remote_cseq: Option<u32>,
    /// Where in-dialog requests are addressed (the peer's Contact).
    pub remote_target: String,
    /// Route headers for in-dialog requests, in the order they are written.
    pub route_set: Vec<String>,
}

fn strip_tag(mut na: NameAddr) -> NameAddr {
    na.params.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
    na
}

impl Dialog {
    /// Whether this is a SIPS dialog (a `sips:` URI on either end), whose Contact must then be a
    /// SIPS URI too (RFC 3261 §8.1.1.8, §12.1.1).
    pub(super) fn is_sips(&self) -> bool {
        [&self.local_uri.uri, &self.remote_uri.uri]
            .iter()
            .any(|u| u.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")))
    }

    /// The UAS side of a dialog created by `invite` (RFC 3261 §12.1.1).
    pub(super) fn from_uas(invite: &Request, local_tag: String) -> Option<Self> {
        let from = invite.from()?;
        Some(Self {
            call_id: invite.call_id().to_owned(),
            local_tag,
            remote_tag: from.tag().map(str::to_owned),
            local_uri: strip_tag(invite.to()?),
            remote_uri: strip_tag(from),
            local_cseq: 1,
            remote_cseq: invite.cseq().map(|c| c.seq),
            remote_target: invite.contact().map_or_else(
                || invite.from().map(|f| f.uri).unwrap_or_default(),
                |c| c.uri,
            ),
            route_set: invite
                .headers
                .get_list("Record-Route")
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The UAC side before any answer; [`on_response`](Self::on_response) completes it.
    pub(super) fn new_uac(
        call_id: String,
        local_tag: String,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        request_uri: String,
    ) -> Self {
        Self {
            call_id,
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            local_cseq: 1,
            remote_cseq: None,
            remote_target: request_uri,
            route_set: Vec::new(),
        }
    }

    /// Takes the remote tag, target and route set from a tagged 1xx or 2xx (§12.1.2). The route
    /// set is fixed by the first response that sets the tag; the target follows the latest.
    pub(super) fn on_response(&mut self, response: &Response) {
        let tag = response.to().and_then(|t| t.tag().map(str::to_owned));
        if tag.is_none() {
            return;
        }
        if self.remote_tag.is_none() || response.is_success() {
            let mut routes: Vec<String> = response
                .headers
                .get_list("Record-Route")
                .map(str::to_owned)
                .collect();
            routes.reverse();
            self.route_set = routes;
        }
        self.remote_tag = tag;
        if let Some(contact) = response.contact() {
            self.remote_target = contact.uri;
        }
    }

    /// Checks an in-dialog request's CSeq; false for an out-of-order one (answer 500).
    pub(super) fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_cseq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_cseq = Some(seq);
                true
            }
        }
    }

    /// An in-dialog request (§12.2.1.1). ACK takes `cseq` of its INVITE; others use the next
    /// local CSeq. `via` is the full Via value including the branch.
    pub(super) fn request(
        &mut self,
        method: Method,
        via: &str,
        contact: &str,
        body: Bytes,
    ) -> Request {
        let seq = if method == Method::Ack {
            self.local_cseq.saturating_sub(1)
        } else {
            let seq = self.local_cseq;
            self.local_cseq = self.local_cseq.saturating_add(1);
            seq
        };
        let mut headers = Headers::new();
        headers.push("Via", via);
        for route in &self.route_set {
            headers.push("Route", route.as_str());
        }
        headers.push("Max-Forwards", "70");
        headers.push(
            "From",
            self.local_uri.clone().with_tag(&self.local_tag).to_string(),
        );
        let to = match &self.remote_tag {
            Some(tag) => self.remote_uri.clone().with_tag(tag),
            None => self.remote_uri.clone(),
        };
        headers.push("To", to.to_string());
        headers.push("Call-ID", self.call_id.as_str());
        headers.push("CSeq", format!("{seq} {method}"));
        if matches!(method, Method::Invite | Method::Update) {
            headers.push("Contact", contact);
        }
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Message, parse};

    fn invite() -> Request {
        let text = "INVITE sip:sales@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n\
From: \"A\" <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:sales@127.0.0.1>\r\n\
Call-ID: c1\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n\r\n";
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uas_dialog_and_bye_use_route_set_target_and_tags() {
        let mut d = Dialog::from_uas(&invite(), "ours".into()).unwrap();
        assert_eq!(d.remote_tag.as_deref(), Some("a1"));
        assert!(!d.accept_remote_cseq(7), "a retransmitted CSeq is old");
        assert!(d.accept_remote_cseq(8));
        let bye = d.request(
            Method::Bye,
            "SIP/2.0/UDP h;branch=z9hG4bKx",
            "<sip:h>",
            Bytes::new(),
        );
        assert_eq!(bye.uri, "sip:alice@127.0.0.1:5070");
        assert_eq!(
            bye.headers.get_lines("Route").collect::<Vec<_>>(),
            ["<sip:p1;lr>", "<sip:p2;lr>"]
        );
        assert_eq!(bye.from().unwrap().tag(), Some("ours"));
        assert_eq!(bye.to().unwrap().tag(), Some("a1"));
        assert_eq!(bye.cseq().unwrap().seq, 1);
        let next = d.request(
            Method::Info,
            "SIP/2.0/UDP h;branch=z9hG4bKy",
            "<sip:h>",
            Bytes::new(),
        );
        assert_eq!(next.cseq().unwrap().seq, 2);
    }

    #[test]
    fn uac_learns_tag_target_and_reversed_routes_from_2xx() {
        let req = invite();
        let mut d = Dialog::new_uac(
            "c1".into(),
            "a1".into(),
            req.from().unwrap(),
            req.to().unwrap(),
            req.uri.clone(),
        );
        let mut ok = Response::to_request(&req, 200, Some("b9"));
        ok.headers.push("Record-Route", "<sip:p1;lr>, <sip:p2;lr>");
        ok.headers.push("Contact", "<sip:bob@127.0.0.1:6000>");
        d.on_response(&ok);
        assert_eq!(d.remote_tag.as_deref(), Some("b9"));
        assert_eq!(d.remote_target, "sip:bob@127.0.0.1:6000");
        assert_eq!(d.route_set, ["<sip:p2;lr>", "<sip:p1;lr>"]);
    }
}
