//! The real binary's SIP edge while it runs: `[server]` SIP keys applied on SIGHUP
//! (`trusted_peers`, `sip_listen`), and an agent offer stuck in DNS that does not keep the
//! call from hearing the caller's BYE.
// Test harness: a failed unwrap is a test failure; waiting on the daemon needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::e2e::{Ua, free_udp_port, hunt_group, server_section, start};
use common::{Scratch, Server, minimal_config};
use nix::sys::signal::Signal;

/// Sends `method` for `uri` from `socket` to `server`; the first final status, if any arrives
/// within `within`.
fn final_status(
    socket: &UdpSocket,
    server: SocketAddr,
    method: &str,
    uri: &str,
    within: Duration,
) -> Option<u16> {
    let local = socket.local_addr().unwrap();
    let branch = fastrand::u64(..);
    let request = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller@{}>;tag=t{branch}\r\nTo: <{uri}>\r\n\
Call-ID: live-{branch}@test\r\nCSeq: 1 {method}\r\nContact: <sip:caller@{local}>\r\n\
Content-Length: 0\r\n\r\n",
        local.ip()
    );
    socket.send_to(request.as_bytes(), server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        // A closed port may report ICMP unreachable as an error: keep waiting until the deadline.
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
        if status >= 200 && text.contains(&format!("branch=z9hG4bK{branch}")) {
            return Some(status);
        }
    }
    None
}

fn socket_on(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).unwrap()
}

#[test]
fn sighup_with_narrowed_trusted_peers_refuses_the_removed_network_with_403() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let server = Server::start(&cfg);
    let sip = server.sip_addr("udp");
    let (one, two) = (socket_on("127.0.0.1"), socket_on("127.0.0.2"));
    let wait = Duration::from_secs(5);
    // Both sources trusted: an unknown workflow is 404 for either (trust is checked first).
    let nobody = "sip:nobody@127.0.0.1";
    assert_eq!(final_status(&two, sip, "INVITE", nobody, wait), Some(404));
    let narrowed = minimal_config("").replace(
        r#"trusted_peers = ["127.0.0.0/8"]"#,
        r#"trusted_peers = ["127.0.0.1/32"]"#,
    );
    scratch.write("rgsd.toml", narrowed);
    server.signal(Signal::SIGHUP);
    server.wait_log("reloaded:");
    assert_eq!(final_status(&two, sip, "INVITE", nobody, wait), Some(403));
    assert_eq!(final_status(&one, sip, "INVITE", nobody, wait), Some(404));
    // OPTIONS creates no dialog: still answered from the removed network.
    assert_eq!(final_status(&two, sip, "OPTIONS", nobody, wait), Some(200));
}

#[test]
fn sighup_with_a_changed_sip_listen_opens_the_new_listener_and_closes_the_removed_one() {
    let scratch = Scratch::new();
    let (old, new) = (free_udp_port(), free_udp_port());
    let tcp = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = |list: &str| {
        minimal_config("").replace(
            r#"sip_listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
            &format!("sip_listen = [{list}]"),
        )
    };
    let cfg = scratch.write("rgsd.toml", listen(&format!(r#""udp:127.0.0.1:{old}""#)));
    let server = Server::start(&cfg);
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let ua = socket_on("127.0.0.1");
    let uri = "sip:sales@127.0.0.1";
    let wait = Duration::from_secs(5);
    assert_eq!(
        final_status(&ua, addr(old), "OPTIONS", uri, wait),
        Some(200)
    );
    assert_eq!(
        final_status(&ua, addr(new), "OPTIONS", uri, Duration::from_millis(300)),
        None
    );
    let changed = listen(&format!(r#""udp:127.0.0.1:{new}", "tcp:127.0.0.1:{tcp}""#));
    scratch.write("rgsd.toml", changed);
    server.signal(Signal::SIGHUP);
    server.wait_log("reloaded:");
    assert_eq!(
        final_status(&ua, addr(new), "OPTIONS", uri, wait),
        Some(200)
    );
    assert!(
        std::net::TcpStream::connect(addr(tcp)).is_ok(),
        "the new TCP listener does not accept"
    );
    assert_eq!(
        final_status(&ua, addr(old), "OPTIONS", uri, Duration::from_millis(500)),
        None,
        "the removed listener still answers"
    );
    assert!(
        !server.stderr().contains("takes effect after a restart"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_listener_that_cannot_be_bound_on_reload_is_named_as_needing_a_restart() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let server = Server::start(&cfg);
    // A port another socket holds.
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let changed = minimal_config("").replace(
        r#"sip_listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
        &format!(r#"sip_listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "udp:127.0.0.1:{port}"]"#),
    );
    scratch.write("rgsd.toml", changed);
    server.signal(Signal::SIGHUP);
    server.wait_log("reloaded:");
    server.wait_log(&format!(
        "sip_listen (Udp 127.0.0.1:{port}) changed; it takes effect after a restart"
    ));
    // The listeners it had keep answering.
    let ua = socket_on("127.0.0.1");
    let status = final_status(
        &ua,
        server.sip_addr("udp"),
        "OPTIONS",
        "sip:sales@127.0.0.1",
        Duration::from_secs(5),
    );
    assert_eq!(status, Some(200));
}

/// A "name server" on loopback that reads queries and never answers; counts them.
fn silent_resolver() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = queries.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).is_ok() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, queries)
}

/// The value of `series` in the daemon's `/metrics`.
fn metric(http: SocketAddr, series: &str) -> u64 {
    let (code, doc) = common::http::http(http, "GET", "/metrics", None, None);
    assert_eq!(code, 200, "{doc}");
    doc.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{doc}"))
        .parse()
        .unwrap()
}

#[test]
fn a_bye_while_the_agent_offer_is_stuck_in_dns_ends_the_call_within_a_second() {
    let scratch = Scratch::new();
    let (dns, queries) = silent_resolver();
    let config = server_section(31400)
        + &format!("dns_servers = [\"{dns}\"]\n")
        + "\n[[agent_group]]\nname = \"Sales agents\"\nrouting = \"serial\"\nalert_time = \"10s\"\n\
           agents = [\"sip:agent@agent.rgsd.test:5099\"]\n"
        + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:sales@127.0.0.1");
    // The offer to the agent is now waiting on the name server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while queries.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no DNS query for the agent's host\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(metric(server.http, "rgsd_calls_in_progress"), 1);
    let bye_sent = Instant::now();
    ua.bye();
    while metric(server.http, "rgsd_calls_in_progress") != 0 {
        assert!(
            bye_sent.elapsed() < Duration::from_secs(1),
            "the call did not end within 1 s of the caller's BYE\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
