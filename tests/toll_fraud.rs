//! No toll fraud: nothing a caller dials or sends becomes an outbound target. The real `rgsd`
//! binary runs with an `outbound_proxy` (a socket of the test) and one agent reachable only
//! through it; callers send a `tel:` Request-URI for an unknown number, a `;user=phone` one, and
//! a call to the hunt group carrying `Route`, `Diversion` and `Refer-To` headers that name a
//! "victim" socket, then a REFER to that victim inside the dialog, then DTMF. The victim gets
//! nothing, and the proxy only ever sees INVITEs for the configured agent.
// Test harness: a failed unwrap is a test failure; waiting on sockets needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Scratch;
use common::e2e::{Ua, header, hunt_group, server_section, start};

const AGENT: &str = "sip:agent@agents.invalid";

/// Every datagram `socket` receives until `until`.
fn drain(socket: &UdpSocket, until: Instant) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < until {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn nothing_a_caller_sends_becomes_an_outbound_target() {
    let scratch = Scratch::new();
    let proxy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let victim_port = victim.local_addr().unwrap().port();
    let config = server_section(33800)
        + &format!("outbound_proxy = \"sip:127.0.0.1:{proxy_port}\"\n")
        + &format!(
            "\n[[agent_group]]\nname = \"Sales agents\"\nrouting = \"serial\"\nalert_time = \"10s\"\nagents = [\"{AGENT}\"]\n"
        )
        + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let victim_uri = format!("sip:+19005550100@127.0.0.1:{victim_port}");

    // Dialled numbers rgsd does not serve are refused, whatever the Route says.
    for dialled in [
        "tel:+19005550100".to_owned(),
        "sip:+19005550100@127.0.0.1;user=phone".to_owned(),
        victim_uri.clone(),
    ] {
        let mut ua = Ua::new(server.sip_addr("udp"));
        ua.extra_headers = format!("Route: <sip:127.0.0.1:{victim_port};lr>\r\n");
        let status = ua.call_status(&dialled);
        assert!(status >= 400, "{dialled} got {status}\n{}", ua.log);
    }

    // A real call, with headers that name the victim; then a REFER to it and DTMF.
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.extra_headers = format!(
        "Route: <sip:127.0.0.1:{victim_port};lr>\r\nDiversion: <{victim_uri}>;reason=unconditional\r\nRefer-To: <{victim_uri}>\r\nHistory-Info: <{victim_uri}>;index=1\r\n"
    );
    ua.call("sip:sales@127.0.0.1");
    ua.extra_headers =
        format!("Refer-To: <{victim_uri}>\r\nReferred-By: <sip:caller@127.0.0.1>\r\n");
    let target = ua.target.clone();
    let refer = ua.request("REFER", &target, 2, "", false);
    ua.send(&refer);
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let msg = ua
            .recv(deadline)
            .unwrap_or_else(|| panic!("no answer to REFER\n{}", ua.log));
        if header(&msg, "CSeq").is_some_and(|c| c.ends_with("REFER")) {
            break msg;
        }
    };
    assert!(
        !answer.starts_with("SIP/2.0 2"),
        "REFER is not taken: {answer}"
    );
    ua.extra_headers.clear();
    for key in [9, 0, 0] {
        ua.press(key);
    }

    let until = Instant::now() + Duration::from_millis(500);
    let at_proxy = drain(&proxy, until);
    let at_victim = drain(&victim, Instant::now() + Duration::from_millis(50));
    assert!(
        at_victim.is_empty(),
        "the victim was reached: {at_victim:?}"
    );
    let invites: Vec<&str> = at_proxy
        .iter()
        .filter_map(|m| m.strip_prefix("INVITE "))
        .map(|m| m.split(' ').next().unwrap_or_default())
        .collect();
    assert!(
        !invites.is_empty(),
        "the configured agent is rung through the proxy\n{}",
        server.stderr()
    );
    assert!(
        invites.iter().all(|uri| *uri == AGENT),
        "only the configured agent is called: {invites:?}"
    );
    assert!(
        at_proxy.iter().all(|m| !m.contains("+19005550100")),
        "nothing the caller sent reaches the proxy: {at_proxy:?}"
    );
    // CSeq 2 went to the REFER.
    ua.send(&ua.request("BYE", &target, 3, "", false));
}
