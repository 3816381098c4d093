//! What SIGHUP applies besides workflows, queues and agents: `[server] rtp_ports` takes effect
//! for the next call (calls in progress keep their ports). `[[registration]]` is covered in
//! `tests/registration.rs`. `session_expires` and `min_se` apply to new dialogs.
// Test harness: a failed unwrap is a test failure; waiting on sockets needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::Scratch;
use common::e2e::{Ua, free_udp_port, group, hunt_group, server_section, start};

#[test]
fn sighup_moves_new_calls_to_the_new_rtp_port_range() {
    let scratch = Scratch::new();
    // The agent never answers: rgsd answers the caller itself and queues it, which is all the
    // test needs (the SDP answer names the caller leg's RTP port).
    let agent = free_udp_port();
    let body = group("Sales agents", "serial", &[agent]) + &hunt_group("Sales");
    let server = start(&scratch, &(server_section(32600) + &body));

    let mut first = Ua::new(server.sip_addr("udp"));
    first.call("sip:sales@127.0.0.1");
    let port = first.remote_rtp.unwrap().port();
    assert!((32600..=32799).contains(&port), "first call on {port}");

    scratch.write("rgsd.toml", server_section(32800) + &body);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_log("rtp_ports applied to new calls");
    server.wait_log("reloaded");

    let mut second = Ua::new(server.sip_addr("udp"));
    second.call("sip:sales@127.0.0.1");
    let port = second.remote_rtp.unwrap().port();
    assert!(
        (32800..=32999).contains(&port),
        "call after reload on {port}; stderr:\n{}",
        server.stderr()
    );
    // The call from before the reload still has its leg: it hangs up normally.
    first.bye();
    second.bye();
}

/// The first INVITE `sock` (an agent that never answers) receives within 10 s.
fn agent_invite(sock: &std::net::UdpSocket) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.starts_with("INVITE ") {
                return msg;
            }
        }
    }
    panic!("the agent got no INVITE");
}

/// A caller's INVITE to the hunt group with `Session-Expires: 100` (and SDP); returns rgsd's
/// final response, ACKing a 200.
fn invite_for_100s(ua: &mut Ua) -> String {
    let sdp = "v=0\r\no=ua 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    let invite = ua
        .request("INVITE", "sip:sales@127.0.0.1", 1, sdp, true)
        .replacen(
            "Content-Type:",
            "Supported: timer\r\nSession-Expires: 100\r\nContent-Type:",
            1,
        );
    ua.send(&invite);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let msg = ua.recv(deadline).expect("no final response");
        if msg.starts_with("SIP/2.0 1") {
            continue;
        }
        if msg.starts_with("SIP/2.0 200") {
            ua.to = common::e2e::header(&msg, "To").unwrap().to_owned();
            ua.target = common::e2e::header(&msg, "Contact")
                .unwrap()
                .trim_matches(['<', '>'])
                .to_owned();
            let target = ua.target.clone();
            let ack = ua.request("ACK", &target, 1, "", false);
            ua.send(&ack);
        }
        return msg;
    }
}

/// `[server] session_expires` and `min_se` apply to dialogs set up after SIGHUP: before it, rgsd
/// offers agents 1800 s and accepts a caller's 100 s; after `session_expires = "off"` and
/// `min_se = "120s"` it offers agents no session timer and answers 100 s with 422, Min-SE 120.
#[test]
fn sighup_applies_session_timer_settings_to_new_dialogs() {
    let scratch = Scratch::new();
    let bind = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        s
    };
    let (before, after) = (bind(), bind());
    let port = |s: &std::net::UdpSocket| s.local_addr().unwrap().port();
    let body = |agent: u16| group("Sales agents", "serial", &[agent]) + &hunt_group("Sales");
    let server = start(&scratch, &(server_section(33000) + &body(port(&before))));

    let mut first = Ua::new(server.sip_addr("udp"));
    let ok = invite_for_100s(&mut first);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let invite = agent_invite(&before);
    assert_eq!(
        common::e2e::header(&invite, "Session-Expires"),
        Some("1800;refresher=uac"),
        "{invite}"
    );

    // The new file's agent is another socket: the first one stays busy ringing.
    scratch.write(
        "rgsd.toml",
        server_section(33000)
            + "session_expires = \"off\"\nmin_se = \"120s\"\n"
            + &body(port(&after)),
    );
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_log("reloaded");

    let mut refused = Ua::new(server.sip_addr("udp"));
    let too_small = invite_for_100s(&mut refused);
    assert!(too_small.starts_with("SIP/2.0 422"), "{too_small}");
    assert_eq!(common::e2e::header(&too_small, "Min-SE"), Some("120"));
    let mut second = Ua::new(server.sip_addr("udp"));
    second.call("sip:sales@127.0.0.1");
    let invite = agent_invite(&after);
    assert_eq!(
        common::e2e::header(&invite, "Session-Expires"),
        None,
        "{invite}"
    );
    assert_eq!(common::e2e::header(&invite, "Min-SE"), None, "{invite}");
    first.bye();
    second.bye();
}
