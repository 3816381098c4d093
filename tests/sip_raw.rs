//! Raw SIP over loopback UDP against the in-process endpoint: exact status lines for the cases
//! SIPp scenarios do not cover (malformed requests, unknown methods, in-dialog requests,
//! session timers, limits). No timers are crossed, so each test takes milliseconds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rgsd::config::model::{Listen, Transport};
use rgsd::sip::RateLimit;
use rgsd::sip::message::{Message, Response, parse};
use rgsd::sip::{Endpoint, EndpointConfig, RouteDecision, RouteId};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const LOCAL_SDP: &str = "v=0\r\no=rgsd 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

struct Setup {
    target: SocketAddr,
    events: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
    _endpoint: Endpoint,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An endpoint on loopback trusting 127.0.0.0/8, 10 calls, no rate limit, no proxy, session
/// timers at their defaults; tests change the field they are about.
fn loopback(listen: Vec<Listen>) -> EndpointConfig {
    EndpointConfig {
        listen,
        advertised_host: "127.0.0.1".into(),
        trusted_peers: vec!["127.0.0.0/8".parse().expect("net")],
        max_calls: 10,
        rate_limit: None,
        dns_servers: Vec::new(),
        outbound_proxy: None,
        session_expires: Some(1800),
        min_se: 90,
        tls: Default::default(),
    }
}

fn udp_listener() -> Listen {
    Listen {
        transport: Transport::Udp,
        addr: "127.0.0.1:0".parse().expect("addr"),
    }
}

/// Endpoint on UDP 127.0.0.1:0; the controller answers `sales` and keeps `hold` ringing.
async fn setup(max_calls: u32, rate_limit: RateLimit) -> Setup {
    let config = EndpointConfig {
        max_calls,
        rate_limit: Some(rate_limit),
        ..loopback(vec![udp_listener()])
    };
    let router = Arc::new(|uri: &str, _: &str| {
        if uri.contains("sales@") || uri.contains("hold@") {
            RouteDecision::Accept(RouteId(0))
        } else {
            RouteDecision::NotFound
        }
    });
    let shutdown = CancellationToken::new();
    let (endpoint, mut calls) = Endpoint::bind(config, router, shutdown.clone())
        .await
        .expect("bind");
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    tokio::spawn(async move {
        while let Some(mut incoming) = calls.recv().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if incoming.info().request_uri.contains("hold@") {
                    while let Some(e) = incoming.next_event().await {
                        seen.lock().expect("lock").push(format!("{e:?}"));
                    }
                    return;
                }
                let mut call = incoming
                    .answer(Bytes::from_static(LOCAL_SDP.as_bytes()))
                    .expect("answer");
                while let Some(e) = call.next_event().await {
                    seen.lock().expect("lock").push(format!("{e:?}"));
                    if e.is_terminal() {
                        break;
                    }
                }
            });
        }
    });
    Setup {
        target: endpoint.local_addr(Transport::Udp).expect("udp"),
        events,
        shutdown,
        _endpoint: endpoint,
    }
}

struct Ua {
    socket: UdpSocket,
    target: SocketAddr,
    port: u16,
}

impl Ua {
    async fn new(target: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind ua");
        let port = socket.local_addr().expect("addr").port();
        Self {
            socket,
            target,
            port,
        }
    }

    async fn send(&self, text: &str) {
        let text = text.replace("PORT", &self.port.to_string());
        let text = text.replace('\n', "\r\n");
        self.socket
            .send_to(text.as_bytes(), self.target)
            .await
            .expect("send");
    }

    /// The next response other than 100 Trying.
    async fn recv(&self) -> Response {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, _) =
                tokio::time::timeout(Duration::from_secs(5), self.socket.recv_from(&mut buf))
                    .await
                    .expect("a response in time")
                    .expect("recv");
            match parse(&buf[..len]) {
                Ok(Message::Response(r)) if r.status == 100 => continue,
                Ok(Message::Response(r)) => return r,
                other => panic!("not a response: {other:?}"),
            }
        }
    }

    async fn silent(&self) -> bool {
        let mut buf = vec![0u8; 65_536];
        tokio::time::timeout(Duration::from_millis(150), self.socket.recv_from(&mut buf))
            .await
            .is_err()
    }
}

fn request(
    method: &str,
    user: &str,
    call: &str,
    cseq: u32,
    to_tag: &str,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} sip:{user}@127.0.0.1 SIP/2.0\n\
Via: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK{call}{cseq}{method};rport\n\
From: <sip:caller@127.0.0.1:PORT>;tag=c1\n\
To: <sip:{user}@127.0.0.1>{to_tag}\n\
Call-ID: {call}\n\
CSeq: {cseq} {method}\n\
Max-Forwards: 70\n\
Contact: <sip:caller@127.0.0.1:PORT>\n\
{extra}Content-Length: {}\n\n{body}",
        body.len()
    )
}

async fn wait_events(setup: &Setup, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let events = setup.events.lock().expect("lock").clone();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.events.lock().expect("lock").clone()
}

#[tokio::test]
async fn malformed_request_gets_400_and_unanswerable_junk_is_dropped() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    let bad = request("OPTIONS", "sales", "bad1", 1, "", "", "")
        .replace("Max-Forwards: 70", "Max-Forwards: many");
    ua.send(&bad).await;
    let r = ua.recv().await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get("Call-ID"), Some("bad1"));
    ua.send("garbage without any header\n\n").await;
    assert!(ua.silent().await, "no reply to junk");
}

#[tokio::test]
async fn unknown_method_gets_405_with_allow() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    ua.send(&request("NEWMETHOD", "sales", "m1", 1, "", "", ""))
        .await;
    let r = ua.recv().await;
    assert_eq!(r.status, 405);
    assert!(r.headers.get("Allow").is_some_and(|a| a.contains("INVITE")));
    // The response carries our rport/received stamp back.
    let via = r.top_via().expect("via");
    assert_eq!(via.param("rport"), Some(Some(ua.port.to_string().as_str())));
}

#[tokio::test]
async fn a_sips_request_over_udp_gets_416() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    for method in ["OPTIONS", "INVITE"] {
        let call = format!("sips-{method}");
        let req = request(method, "sales", &call, 1, "", "", "").replacen(
            " sip:sales@",
            " SIPS:sales@",
            1,
        );
        ua.send(&req).await;
        let r = ua.recv().await;
        assert_eq!(r.status, 416, "{method}");
        assert_eq!(r.headers.get("Call-ID"), Some(call.as_str()));
    }
    // The same request with a `sip:` Request-URI is answered as usual.
    ua.send(&request("OPTIONS", "sales", "sip-ok", 1, "", "", ""))
        .await;
    assert_eq!(ua.recv().await.status, 200);
}

#[tokio::test]
async fn requests_outside_any_dialog() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    ua.send(&request("BYE", "sales", "x1", 1, "nope", "", ""))
        .await;
    assert_eq!(ua.recv().await.status, 481);
    ua.send(&request("CANCEL", "sales", "x2", 1, "", "", ""))
        .await;
    assert_eq!(ua.recv().await.status, 481);
    ua.send(&request(
        "INVITE",
        "sales",
        "x3",
        1,
        "",
        "Require: 100rel\n",
        "",
    ))
    .await;
    let r = ua.recv().await;
    assert_eq!(
        (r.status, r.headers.get("Unsupported")),
        (420, Some("100rel"))
    );
    ua.send(&request(
        "INVITE",
        "sales",
        "x4",
        1,
        "",
        "Session-Expires: 30\n",
        "",
    ))
    .await;
    let r = ua.recv().await;
    assert_eq!((r.status, r.headers.get("Min-SE")), (422, Some("90")));
    ua.send(&request(
        "INVITE",
        "sales",
        "x5",
        1,
        "",
        "Content-Type: text/plain\n",
        "hi",
    ))
    .await;
    assert_eq!(ua.recv().await.status, 415);
}

/// Asked to be the refresher (RFC 4028 §9), rgsd accepts: its 2xx names itself (`uas`) and
/// requires the extension the caller supports.
#[tokio::test]
async fn asked_to_refresh_the_session_rgsd_becomes_the_refresher() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    ua.send(&request(
        "INVITE",
        "sales",
        "st1",
        1,
        "",
        "Supported: timer\nSession-Expires: 1800;refresher=uas\nContent-Type: application/sdp\n",
        "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\n",
    ))
    .await;
    let ok = ua.recv().await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers.get("Session-Expires"),
        Some("1800;refresher=uas")
    );
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    assert!(
        ok.headers
            .get_list("Supported")
            .any(|t| t.eq_ignore_ascii_case("timer")),
        "{:?}",
        ok.headers.get("Supported")
    );
}

/// A proxy that Record-Routes (Kamailio's `record_route()`) finds its entries in rgsd's 200,
/// in order, so the caller's ACK and BYE come back through it (RFC 3261 §12.1.1).
#[tokio::test]
async fn the_answer_carries_the_invites_record_route_in_order() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    ua.send(&request(
        "INVITE",
        "sales",
        "rr1",
        1,
        "",
        "Record-Route: <sip:127.0.0.1:PORT;lr;ftag=c1>, <sip:p2.invalid;lr>\n\
Record-Route: <sip:p3.invalid;lr>\nContent-Type: application/sdp\n",
        "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\n",
    ))
    .await;
    let ok = ua.recv().await;
    assert_eq!(ok.status, 200);
    let routes: Vec<&str> = ok.headers.get_list("Record-Route").collect();
    assert_eq!(
        routes,
        [
            format!("<sip:127.0.0.1:{};lr;ftag=c1>", ua.port).as_str(),
            "<sip:p2.invalid;lr>",
            "<sip:p3.invalid;lr>"
        ]
    );
}

#[tokio::test]
async fn dialog_reinvite_update_info_bye() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    let offer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\n";
    ua.send(&request(
        "INVITE",
        "sales",
        "d1",
        1,
        "",
        "Supported: timer\nSession-Expires: 1800;refresher=uac\nContent-Type: application/sdp\n",
        offer,
    ))
    .await;
    let ok = ua.recv().await;
    assert_eq!(ok.status, 200);
    assert_eq!(&ok.body[..], LOCAL_SDP.as_bytes());
    assert_eq!(
        ok.headers.get("Session-Expires"),
        Some("1800;refresher=uac")
    );
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    let tag = ok
        .to()
        .and_then(|t| t.tag().map(str::to_owned))
        .expect("to tag");
    ua.send(&request("ACK", "sales", "d1", 1, &tag, "", ""))
        .await;

    ua.send(&request(
        "INVITE",
        "sales",
        "d1",
        2,
        &tag,
        "Content-Type: application/sdp\n",
        offer,
    ))
    .await;
    let re = ua.recv().await;
    assert_eq!(re.status, 200);
    assert_eq!(
        &re.body[..],
        LOCAL_SDP.as_bytes(),
        "answered with the current local SDP"
    );
    ua.send(&request("ACK", "sales", "d1", 2, &tag, "", ""))
        .await;

    ua.send(&request(
        "UPDATE",
        "sales",
        "d1",
        3,
        &tag,
        "Content-Type: application/sdp\n",
        offer,
    ))
    .await;
    assert_eq!(ua.recv().await.status, 200);
    ua.send(&request(
        "INFO",
        "sales",
        "d1",
        4,
        &tag,
        "Content-Type: application/dtmf-relay\n",
        "Signal=5\r\nDuration=160\r\n",
    ))
    .await;
    assert_eq!(ua.recv().await.status, 200);
    // An old CSeq is refused.
    ua.send(&request("INFO", "sales", "d1", 3, &tag, "", ""))
        .await;
    assert_eq!(ua.recv().await.status, 500);
    ua.send(&request("BYE", "sales", "d1", 5, &tag, "", ""))
        .await;
    assert_eq!(ua.recv().await.status, 200);

    let events = wait_events(&s, 5).await;
    assert_eq!(events[0], "Confirmed { sdp: None }");
    assert!(events[1].starts_with("Reinvite { sdp: Some("), "{events:?}");
    assert!(events[2].starts_with("Update { sdp: Some("), "{events:?}");
    assert!(events[3].contains("application/dtmf-relay"), "{events:?}");
    assert_eq!(events[4], "Bye");
}

#[tokio::test]
async fn max_calls_gives_503_with_retry_after() {
    let s = setup(1, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    ua.send(&request("INVITE", "hold", "q1", 1, "", "", ""))
        .await;
    // The first call is held (no final response); the second is over the cap.
    ua.send(&request("INVITE", "hold", "q2", 1, "", "", ""))
        .await;
    let r = ua.recv().await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("Call-ID"), Some("q2"));
    assert_eq!(r.headers.get("Retry-After"), Some("5"));
}

#[tokio::test]
async fn rate_limit_drops_a_flood() {
    let s = setup(
        10,
        RateLimit {
            per_second: 0.001,
            burst: 3.0,
        },
    )
    .await;
    let ua = Ua::new(s.target).await;
    for i in 0..3 {
        ua.send(&request(
            "OPTIONS",
            "sales",
            &format!("r{i}"),
            1,
            "",
            "",
            "",
        ))
        .await;
        assert_eq!(ua.recv().await.status, 200);
    }
    ua.send(&request("OPTIONS", "sales", "r9", 1, "", "", ""))
        .await;
    assert!(ua.silent().await, "fourth request dropped");
}

/// The caller never ACKs our 200: it is retransmitted at T1 doubling to T2 until 64·T1, then
/// the endpoint reports `AckTimeout` and sends BYE. Runs on tokio's paused clock: the runtime
/// jumps from one timer to the next while the socket is idle, so 32 s pass in milliseconds.
#[tokio::test(start_paused = true)]
async fn unacknowledged_200_is_retransmitted_then_bye() {
    let s = setup(10, RateLimit::default()).await;
    let ua = Ua::new(s.target).await;
    ua.send(&request("INVITE", "sales", "noack", 1, "", "", ""))
        .await;
    let start = tokio::time::Instant::now();
    let mut oks = Vec::new();
    let bye = loop {
        let mut buf = vec![0u8; 65_536];
        let (len, _) = tokio::time::timeout(Duration::from_secs(60), ua.socket.recv_from(&mut buf))
            .await
            .expect("traffic in time")
            .expect("recv");
        match parse(&buf[..len]).expect("parse") {
            Message::Response(r) if r.status == 200 => oks.push(start.elapsed()),
            Message::Response(_) => {}
            Message::Request(req) => break req,
        }
        assert!(oks.len() < 20, "retransmitting forever");
    };
    assert_eq!(bye.method, rgsd::sip::message::Method::Bye);
    let secs: Vec<u128> = oks.iter().map(|d| d.as_millis() / 100).collect();
    // First 200 at once, then 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s (tenths of a second).
    assert_eq!(secs, [0, 5, 15, 35, 75, 115, 155, 195, 235, 275, 315]);
    let events = wait_events(&s, 1).await;
    assert_eq!(events, ["AckTimeout"]);
}

#[tokio::test]
async fn out_of_dialog_request_gets_its_final_response() {
    use rgsd::config::model::SipUri;
    use rgsd::sip::message::{Headers, Method, Request};
    let s = setup(10, RateLimit::default()).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let target = SipUri(format!(
        "sip:127.0.0.1:{}",
        peer.local_addr().expect("addr").port()
    ));
    let mut headers = Headers::new();
    headers.push("From", "<sip:sales@127.0.0.1>;tag=r1");
    headers.push("To", "<sip:sales@127.0.0.1>");
    headers.push("Call-ID", "reg-1");
    headers.push("CSeq", "1 REGISTER");
    let request = Request {
        method: Method::Register,
        uri: target.to_string(),
        headers,
        body: Bytes::new(),
    };
    let endpoint = s._endpoint.clone();
    let pending = tokio::spawn(async move { endpoint.request(request, &target).await });
    let mut buf = vec![0u8; 65_536];
    let (len, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("REGISTER arrives")
        .expect("recv");
    let Ok(Message::Request(req)) = parse(&buf[..len]) else {
        panic!("not a request: {}", String::from_utf8_lossy(&buf[..len]))
    };
    assert_eq!(req.method, Method::Register);
    let ok = Response::to_request(&req, 200, Some("t"));
    peer.send_to(&ok.to_bytes(), from).await.expect("send");
    let response = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("answer in time")
        .expect("join")
        .expect("response");
    assert_eq!(response.status, 200);
}

/// A name server on loopback that holds every query until `release` fires, then answers A
/// queries with 127.0.0.1 (other types: no records). Returns its address, a query count and
/// the release switch.
async fn held_resolver() -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::sync::watch::Sender<bool>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
    let addr = socket.local_addr().expect("addr");
    let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = queries.clone();
    let (release, mut released) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut buf = [0u8; 1500];
        loop {
            tokio::select! {
                Ok((n, from)) = socket.recv_from(&mut buf) => {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    held.push((buf[..n].to_vec(), from));
                }
                Ok(()) = released.changed() => {}
            }
            if !*released.borrow() {
                continue;
            }
            for (query, from) in held.drain(..) {
                // Header, then the question: labels up to the root, QTYPE, QCLASS.
                let mut end = 12;
                while end < query.len() && query[end] != 0 {
                    end += usize::from(query[end]) + 1;
                }
                let mut reply = query[..end + 5].to_vec();
                reply[2] = 0x81;
                reply[3] = 0x80;
                reply[6..12].fill(0);
                if u16::from_be_bytes([query[end + 1], query[end + 2]]) == 1 {
                    reply[7] = 1;
                    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    reply.extend_from_slice(&[127, 0, 0, 1]);
                }
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    (addr, queries, release)
}

#[tokio::test]
async fn invite_returns_at_once_and_a_leg_cancelled_while_resolving_sends_nothing() {
    let (dns, queries, release) = held_resolver().await;
    let config = EndpointConfig {
        dns_servers: vec![dns],
        ..loopback(vec![udp_listener()])
    };
    let router = Arc::new(|_: &str, _: &str| RouteDecision::NotFound);
    let shutdown = CancellationToken::new();
    let (endpoint, _calls) = Endpoint::bind(config, router, shutdown.clone())
        .await
        .expect("bind");
    let agent = UdpSocket::bind("127.0.0.1:0").await.expect("agent");
    let port = agent.local_addr().expect("addr").port();
    let target = rgsd::config::model::SipUri(format!("sip:agent@agent.rgsd.test:{port}"));
    let from = rgsd::config::model::SipUri("sip:sales@127.0.0.1".into());
    let offer = Bytes::from_static(LOCAL_SDP.as_bytes());
    // Both legs exist before any name server has answered.
    let invite = endpoint.invite(&target, &from, offer.clone(), vec![]);
    let mut cancelled = tokio::time::timeout(Duration::from_millis(100), invite)
        .await
        .expect("invite returns without waiting for DNS")
        .expect("leg");
    let mut kept = endpoint
        .invite(&target, &from, offer, vec![])
        .await
        .expect("leg");
    while queries.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancelled.cancel().expect("cancel");
    assert_eq!(
        cancelled.next_event().await,
        Some(rgsd::sip::CallEvent::Failed(rgsd::sip::LegFailure::Status(
            487
        )))
    );
    release.send(true).expect("release");
    // Only the leg still wanted sends its INVITE once the name resolves.
    let mut buf = vec![0u8; 65_536];
    let mut invites = Vec::new();
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), agent.recv_from(&mut buf)).await
    {
        if let Ok(Message::Request(r)) = parse(&buf[..n]) {
            invites.push(r.call_id().to_owned());
        }
    }
    invites.dedup(); // retransmissions
    assert_eq!(invites, vec![kept.call_id().to_owned()]);
    kept.cancel().expect("cancel");
    shutdown.cancel();
}

#[tokio::test]
async fn a_removed_tcp_listener_refuses_new_connections_and_its_open_ones_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listen = |transport, addr: &str| Listen {
        transport,
        addr: addr.parse().expect("addr"),
    };
    let mut config = loopback(vec![
        listen(Transport::Udp, "127.0.0.1:0"),
        listen(Transport::Tcp, "127.0.0.1:0"),
    ]);
    let router = Arc::new(|_: &str, _: &str| RouteDecision::NotFound);
    let shutdown = CancellationToken::new();
    let (endpoint, _calls) = Endpoint::bind(config.clone(), router, shutdown.clone())
        .await
        .expect("bind");
    let tcp = endpoint.local_addr(Transport::Tcp).expect("tcp");
    let mut stream = tokio::net::TcpStream::connect(tcp).await.expect("connect");
    let mine = stream.local_addr().expect("addr");
    let options = |n: u32| {
        format!(
            "OPTIONS sip:rgsd@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {mine};branch=z9hG4bKtcp{n}\r\n\
From: <sip:caller@127.0.0.1>;tag=o{n}\r\nTo: <sip:rgsd@127.0.0.1>\r\nCall-ID: tcp-{n}\r\n\
CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut buf = vec![0u8; 8192];
    for n in [1, 2] {
        if n == 2 {
            // Drop the TCP listener (keep UDP, add nothing).
            config.listen.truncate(1);
            let restart = endpoint.reconfigure(config.clone()).await.expect("live");
            assert!(restart.is_empty(), "{restart:?}");
            assert_eq!(endpoint.local_addr(Transport::Tcp), None);
            // The acceptor task ends on its next turn: poll briefly.
            let mut tries = 0;
            while tokio::net::TcpStream::connect(tcp).await.is_ok() {
                tries += 1;
                assert!(tries < 100, "still accepting");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        stream
            .write_all(options(n).as_bytes())
            .await
            .expect("write");
        let len = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer on the open connection")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..len]);
        assert!(text.starts_with("SIP/2.0 200"), "{text}");
    }
    // A changed advertised_host cannot apply live: it is named.
    config.advertised_host = "192.0.2.1".into();
    let restart = endpoint.reconfigure(config).await.expect("live");
    assert_eq!(restart, vec!["advertised_host".to_owned()]);
    shutdown.cancel();
}

/// The next request `socket` receives (retransmissions of an earlier one included).
async fn next_request(socket: &UdpSocket) -> (rgsd::sip::message::Request, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("a request in time")
            .expect("recv");
        if let Ok(Message::Request(r)) = parse(&buf[..n]) {
            return (r, from);
        }
    }
}

#[tokio::test]
async fn outbound_legs_go_through_the_proxy_with_a_loose_route_and_follow_a_reload() {
    use rgsd::config::model::SipUri;
    use rgsd::sip::message::Method;
    use rgsd::sip::{CallEvent, LegFailure};
    let proxy_a = UdpSocket::bind("127.0.0.1:0").await.expect("proxy a");
    let proxy_b = UdpSocket::bind("127.0.0.1:0").await.expect("proxy b");
    let uri_a = format!("sip:127.0.0.1:{}", proxy_a.local_addr().expect("a").port());
    let uri_b = format!("sip:127.0.0.1:{}", proxy_b.local_addr().expect("b").port());
    let mut config = EndpointConfig {
        outbound_proxy: Some(SipUri(uri_a.clone())),
        ..loopback(vec![udp_listener()])
    };
    let router = Arc::new(|_: &str, _: &str| RouteDecision::NotFound);
    let shutdown = CancellationToken::new();
    let (endpoint, _calls) = Endpoint::bind(config.clone(), router, shutdown.clone())
        .await
        .expect("bind");
    let from = SipUri("sip:sales@127.0.0.1".into());
    let offer = Bytes::from_static(LOCAL_SDP.as_bytes());

    // A name rgsd could not resolve itself: the proxy is the next hop, the AOR the Request-URI.
    let agent = SipUri("sip:alice@agents.invalid".into());
    let mut leg = endpoint
        .invite(&agent, &from, offer.clone(), vec![])
        .await
        .expect("leg");
    let (invite, source) = next_request(&proxy_a).await;
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri, "sip:alice@agents.invalid");
    let route = format!("<{uri_a};lr>");
    assert_eq!(
        invite.headers.get_lines("Route").collect::<Vec<_>>(),
        [route.as_str()]
    );
    // The proxy record-routes; the agent's answer comes back through it.
    let mut ok = Response::to_request(&invite, 200, Some("agent-tag"));
    ok.headers.push("Record-Route", route.clone());
    ok.headers.push("Contact", "<sip:alice@127.0.0.1:9>");
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = Bytes::from_static(LOCAL_SDP.as_bytes());
    proxy_a
        .send_to(&ok.to_bytes(), source)
        .await
        .expect("send 200");
    assert!(matches!(
        leg.next_event().await,
        Some(CallEvent::Answered { .. })
    ));
    let (ack, _) = next_request(&proxy_a).await;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.uri, "sip:alice@127.0.0.1:9",
        "ACK to the agent's Contact"
    );
    assert_eq!(
        ack.headers.get_lines("Route").collect::<Vec<_>>(),
        [route.as_str()],
        "in-dialog requests follow the Record-Route"
    );

    // A reload moves new legs to another proxy; a number goes out as written.
    config.outbound_proxy = Some(SipUri(format!("{uri_b};transport=udp;lr")));
    assert!(
        endpoint
            .reconfigure(config.clone())
            .await
            .expect("reconfigure")
            .is_empty()
    );
    let number = SipUri("tel:+14255550100".into());
    let mut tel = endpoint
        .invite(&number, &from, offer.clone(), vec![])
        .await
        .expect("leg");
    let (invite, _) = next_request(&proxy_b).await;
    assert_eq!(invite.uri, "tel:+14255550100");
    assert_eq!(
        invite.headers.get_lines("Route").collect::<Vec<_>>(),
        [format!("<{uri_b};transport=udp;lr>").as_str()],
        "an ;lr already written is not doubled"
    );
    tel.cancel().expect("cancel");

    // Without a proxy a number goes nowhere.
    config.outbound_proxy = None;
    assert!(
        endpoint
            .reconfigure(config)
            .await
            .expect("reconfigure")
            .is_empty()
    );
    let mut refused = endpoint
        .invite(&number, &from, offer, vec![])
        .await
        .expect("leg");
    assert_eq!(
        refused.next_event().await,
        Some(CallEvent::Failed(LegFailure::Transport))
    );
    leg.bye().expect("bye");
    shutdown.cancel();
}

#[tokio::test]
async fn a_tls_target_nobody_listens_on_fails_the_leg_clearly() {
    use rgsd::config::model::SipUri;
    use rgsd::sip::{CallEvent, LegFailure};
    let config = loopback(vec![udp_listener()]);
    let router = Arc::new(|_: &str, _: &str| RouteDecision::NotFound);
    let shutdown = CancellationToken::new();
    let (endpoint, _calls) = Endpoint::bind(config, router, shutdown.clone())
        .await
        .expect("bind");
    let from = SipUri("sip:sales@127.0.0.1".into());
    let offer = Bytes::from_static(LOCAL_SDP.as_bytes());
    for target in ["sips:alice@127.0.0.1", "sip:alice@127.0.0.1;transport=tls"] {
        let mut leg = endpoint
            .invite(&SipUri(target.into()), &from, offer.clone(), vec![])
            .await
            .expect("leg");
        assert_eq!(
            leg.next_event().await,
            Some(CallEvent::Failed(LegFailure::Transport)),
            "{target}"
        );
    }
    shutdown.cancel();
}
