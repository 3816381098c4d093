//! What SIGHUP applies besides workflows, queues and agents: `[server] rtp_ports` takes effect
//! for the next call (calls in progress keep their ports). `[[registration]]` is covered in
//! `tests/registration.rs`.
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
