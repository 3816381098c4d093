//! RFC 3263 end to end: the real `rgsd` binary reaches agents whose URIs name a host, through a
//! name server the test runs on loopback (`tests/common/dns.rs`, set as `[server] dns_servers`).
//!
//! - SRV with two targets, the first answering 503: the INVITE goes on to the second, a SIPp
//!   agent that answers, and the caller hears its audio back through the bridge.
//! - NAPTR (TCP preferred to UDP) → SRV over TCP, the first target refusing the connection: the
//!   INVITE arrives over TCP at the second; the UDP service is never used.
//! - A name with a port: A records only, no NAPTR or SRV question asked.
//! - (Without SIPp) SRV whose first target answers 503: the INVITE reaches the second.
//!
//! The SIPp case is skipped, with a printed reason, when `sipp` is not on PATH.
// Test harness: a failed unwrap is a test failure; waiting on child processes and sockets
// needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dns::Zone;
use common::e2e::{Sipp, Ua, free_udp_port, hunt_group, server_section, start, talk_until_heard};
use common::{Scratch, require};
use hickory_resolver::proto::rr::RecordType;

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// `[server]` with the test's name server, one agent group (`routing`) of `agents`, and a hunt
/// group on `sip:sales@127.0.0.1`.
fn config(rtp: u16, dns: std::net::SocketAddr, routing: &str, agents: &[&str]) -> String {
    let agents: Vec<String> = agents.iter().map(|a| format!("\"{a}\"")).collect();
    server_section(rtp)
        + &format!("dns_servers = [\"{dns}\"]\n")
        + &format!(
            "\n[[agent_group]]\nname = \"Sales agents\"\nrouting = \"{routing}\"\nalert_time = \"10s\"\nagents = [{}]\n",
            agents.join(", ")
        )
        + &hunt_group("Sales")
}

/// A UDP peer that answers every INVITE with 503 and keeps the Request-URIs it saw.
struct Unavailable {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Unavailable {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, done) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !done.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some(uri) = text.strip_prefix("INVITE ") else {
                    continue; // the ACK of our 503
                };
                log.lock()
                    .unwrap()
                    .push(uri.split(' ').next().unwrap_or_default().to_owned());
                let mut reply = String::from("SIP/2.0 503 Service Unavailable\r\n");
                for line in text.lines() {
                    let name = line
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    match name.as_str() {
                        "via" | "from" | "call-id" | "cseq" => {
                            reply.push_str(line);
                            reply.push_str("\r\n");
                        }
                        "to" => reply.push_str(&format!("{line};tag=down\r\n")),
                        _ => {}
                    }
                }
                reply.push_str("Content-Length: 0\r\n\r\n");
                let _ = socket.send_to(reply.as_bytes(), from);
            }
        });
        Self { port, seen, stop }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Unavailable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn srv_first_target_503_the_second_answers_and_the_call_is_bridged() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let down = Unavailable::start();
    let up = free_udp_port();
    let dns = Zone::default()
        .srv(
            "_sip._udp.agents.test",
            10,
            0,
            down.port,
            "down.agents.test",
        )
        .srv("_sip._udp.agents.test", 20, 0, up, "up.agents.test")
        .a("down.agents.test", LOOPBACK)
        .a("up.agents.test", LOOPBACK)
        .serve();
    let server = start(
        &scratch,
        &config(33400, dns.addr, "serial", &["sip:agent@agents.test"]),
    );
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        up,
        "e2e_agent_answers.xml",
        Some(1),
        0,
        true,
    );
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:sales@127.0.0.1");
    let heard = talk_until_heard(&mut ua, 150);
    assert!(
        heard >= 5,
        "caller did not hear its audio back through the second SRV target (heard {heard})\n{}\n{}",
        agent.logs(),
        server.stderr()
    );
    assert_eq!(
        down.seen().first().map(String::as_str),
        Some("sip:agent@agents.test"),
        "the first SRV target was tried first, with the agent's URI"
    );
    let queries = dns.queries();
    assert!(
        queries.contains(&("agents.test".into(), RecordType::NAPTR))
            && queries.contains(&("_sip._udp.agents.test".into(), RecordType::SRV)),
        "NAPTR, then SRV: {queries:?}"
    );
    ua.bye();
    agent.assert_success(&server);
}

/// Waits for a connection on `listener` and returns the first message read from it, with the
/// connection (kept open: a closed one would make rgsd try the next destination).
fn first_message(listener: &TcpListener, deadline: Instant) -> Option<(String, TcpStream)> {
    listener.set_nonblocking(true).unwrap();
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut text = Vec::new();
                let mut buf = [0u8; 4096];
                while Instant::now() < deadline && !text.windows(4).any(|w| w == b"\r\n\r\n") {
                    if let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        text.extend_from_slice(&buf[..n]);
                    }
                }
                return Some((String::from_utf8_lossy(&text).into_owned(), stream));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

/// Waits for a datagram on `socket`.
fn first_datagram(socket: &UdpSocket, deadline: Instant) -> Option<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

#[test]
fn naptr_leads_to_tcp_srv_past_a_refused_target_a_503_leads_on_and_a_port_means_a_records_only() {
    let scratch = Scratch::new();
    // A port nobody listens on: bound, then closed, so connecting to it is refused.
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp_agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp_agent.local_addr().unwrap().port();
    let udp_unused = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_agent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_agent.local_addr().unwrap().port();
    // And without SIPp: an SRV target answering 503, then one that receives the INVITE.
    let down = Unavailable::start();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second_port = second.local_addr().unwrap().port();
    let dns = Zone::default()
        .naptr("naptr.test", 20, "SIP+D2U", "_sip._udp.naptr.test")
        .naptr("naptr.test", 10, "SIP+D2T", "_sip._tcp.naptr.test")
        .srv(
            "_sip._udp.naptr.test",
            10,
            0,
            udp_unused.local_addr().unwrap().port(),
            "udp.naptr.test",
        )
        .srv("_sip._tcp.naptr.test", 10, 0, refused, "refused.naptr.test")
        .srv("_sip._tcp.naptr.test", 20, 0, tcp_port, "tcp.naptr.test")
        .a("udp.naptr.test", LOOPBACK)
        .a("refused.naptr.test", LOOPBACK)
        .a("tcp.naptr.test", LOOPBACK)
        .a("aonly.test", LOOPBACK)
        .srv("_sip._udp.busy.test", 10, 0, down.port, "down.busy.test")
        .srv(
            "_sip._udp.busy.test",
            20,
            0,
            second_port,
            "second.busy.test",
        )
        .a("down.busy.test", LOOPBACK)
        .a("second.busy.test", LOOPBACK)
        .serve();
    let with_port = format!("sip:agent@aonly.test:{udp_port}");
    let server = start(
        &scratch,
        &config(
            33600,
            dns.addr,
            "parallel",
            &["sip:agent@naptr.test", &with_port, "sip:agent@busy.test"],
        ),
    );
    // rgsd answers the caller, then rings both agents at once.
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:sales@127.0.0.1");

    let deadline = Instant::now() + Duration::from_secs(10);
    let (over_tcp, _connection) = first_message(&tcp_agent, deadline).unwrap_or_else(|| {
        panic!(
            "no INVITE over TCP\n{:?}\n{}",
            dns.queries(),
            server.stderr()
        )
    });
    assert!(
        over_tcp.starts_with("INVITE sip:agent@naptr.test SIP/2.0\r\n"),
        "{over_tcp}"
    );
    assert!(
        over_tcp.contains("SIP/2.0/TCP "),
        "sent over TCP: {over_tcp}"
    );
    let over_udp = first_datagram(&udp_agent, deadline)
        .unwrap_or_else(|| panic!("no INVITE to the name with a port\n{}", server.stderr()));
    assert!(
        over_udp.starts_with(&format!("INVITE {with_port} SIP/2.0\r\n")),
        "{over_udp}"
    );
    let after_503 = first_datagram(&second, deadline)
        .unwrap_or_else(|| panic!("no INVITE after the 503\n{}", server.stderr()));
    assert!(
        after_503.starts_with("INVITE sip:agent@busy.test SIP/2.0\r\n"),
        "{after_503}"
    );
    assert_eq!(down.seen(), ["sip:agent@busy.test"], "the 503 came first");
    assert!(
        first_datagram(&udp_unused, Instant::now() + Duration::from_millis(200)).is_none(),
        "the UDP service comes after TCP in the NAPTR order and TCP worked"
    );
    let queries = dns.queries();
    assert!(
        !queries.iter().any(|(name, t)| name.ends_with("aonly.test")
            && matches!(t, RecordType::NAPTR | RecordType::SRV)),
        "a name with a port is looked up by A/AAAA only: {queries:?}"
    );
    assert!(
        queries.contains(&("_sip._tcp.naptr.test".into(), RecordType::SRV)),
        "{queries:?}"
    );
}
