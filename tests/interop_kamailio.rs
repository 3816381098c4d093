//! Interop with Kamailio (Debian's package) as registrar and record-routing proxy in front of
//! the real `rgsd` binary: rgsd registers its workflow URI there through `[[registration]]`,
//! and a baresip caller registered at Kamailio calls the workflow's address of record through
//! Kamailio and is answered by rgsd; audio both ways is checked by frequency, and either side's
//! BYE crosses Kamailio along the recorded route.
//!
//! Each test skips (with the reason) only when `kamailio` or `baresip` is not installed.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::e2e::{group, hunt_group, server_section};
use common::interop::{Baresip, Kamailio, call_records};
use common::{Scratch, Server, require};

const CALLER_HZ: f64 = 440.0;
/// Above every note of the built-in music on hold, which the caller hears before the answer.
const AGENT_HZ: f64 = 1400.0;
const ONE_SECOND: usize = 50;

/// `kamailio` on PATH, else in /usr/sbin (where Debian puts it, not on a user's PATH).
fn kamailio_bin() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/kamailio");
    if sbin.is_file() {
        return Some(sbin);
    }
    require("kamailio")
}

struct Setup {
    scratch: Scratch,
    kamailio: Kamailio,
    server: Server,
    caller: Baresip,
    agent: Baresip,
}

impl Setup {
    fn logs(&self) -> String {
        format!(
            "{}\n{}\n{}\n--- rgsd:\n{}",
            self.caller.log(),
            self.agent.log(),
            self.kamailio.log(),
            self.server.stderr()
        )
    }
}

/// Kamailio, a baresip agent reached directly, rgsd registering `sip:sales@127.0.0.1` at
/// Kamailio, and a baresip caller registered at Kamailio; then the caller calls the workflow's
/// address of record at Kamailio, and both sides hear each other.
fn call_through_kamailio(rtp: u16) -> Option<Setup> {
    let baresip = require("baresip")?;
    let kamailio_bin = kamailio_bin()?;
    let scratch = Scratch::new();
    let kamailio = Kamailio::start(&kamailio_bin, &scratch.path().join("kamailio"));
    let k = kamailio.port;
    let agent = Baresip::start(
        &baresip,
        scratch.path(),
        "agent0",
        "<sip:agent0@127.0.0.1>;regint=0;answermode=auto",
        AGENT_HZ,
        "",
    );
    let config = server_section(rtp)
        + &group("Sales agents", "serial", &[agent.sip_port])
        + &hunt_group("Sales")
        + &format!(
            r#"
[[registration]]
aor = "sip:sales@127.0.0.1"
registrar = "sip:127.0.0.1:{k}"
username = "sales"
password_env = "RGSD_INTEROP_PASSWORD"
expires = "600s"
"#
        );
    let path = scratch.write("rgsd.toml", config);
    // Kamailio here does not challenge; the password is only what `[[registration]]` requires.
    let server = Server::start_with(&path, &[("RGSD_INTEROP_PASSWORD", "not-asked-for")]);
    server.wait_log("Registered");
    let caller = Baresip::start(
        &baresip,
        scratch.path(),
        "caller",
        &format!("<sip:caller@127.0.0.1:{k}>;regint=600"),
        CALLER_HZ,
        "",
    );
    let mut s = Setup {
        scratch,
        kamailio,
        server,
        caller,
        agent,
    };
    // The registration's answer, as baresip prints it: "caller@…: {0/UDP/v4} 200 OK (…)".
    s.caller.wait_output("} 200 OK", Duration::from_secs(5));
    s.caller.dial(&format!("sip:sales@127.0.0.1:{k}"));
    for agent_side in [false, true] {
        let side = if agent_side {
            &mut s.agent
        } else {
            &mut s.caller
        };
        if side
            .next_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_none()
        {
            panic!("the call was not established\n{}", s.logs());
        }
    }
    let heard_by_agent = s
        .agent
        .wait_heard(CALLER_HZ, ONE_SECOND, Duration::from_secs(8));
    let heard_by_caller = s
        .caller
        .wait_heard(AGENT_HZ, ONE_SECOND, Duration::from_secs(8));
    assert!(
        heard_by_agent >= ONE_SECOND && heard_by_caller >= ONE_SECOND,
        "agent heard {heard_by_agent} frames of {CALLER_HZ} Hz, caller {heard_by_caller} of \
         {AGENT_HZ} Hz\n{}",
        s.logs()
    );
    // The INVITE crossed Kamailio, which retargeted it to the contact rgsd registered.
    assert!(
        s.kamailio.logged(&format!(
            "kamailio: relaying INVITE to sip:sales@127.0.0.1:{}",
            s.server.sip_addr("udp").port()
        )),
        "{}",
        s.logs()
    );
    Some(s)
}

fn assert_answered_record(s: &Setup) {
    let records = call_records(&s.scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}\n{}", s.logs());
    assert_eq!(
        records[0].outcome,
        rgsd::store::CallOutcome::Answered,
        "{records:#?}"
    );
}

#[test]
fn a_caller_registered_at_kamailio_reaches_the_workflow_rgsd_registered_there() {
    let Some(mut s) = call_through_kamailio(36600) else {
        return;
    };
    s.caller.hangup();
    s.caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    s.agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    assert!(
        s.kamailio.logged("kamailio: relaying BYE in dialog"),
        "the caller's BYE did not follow the recorded route\n{}",
        s.logs()
    );
    assert_answered_record(&s);
}

#[test]
fn the_agents_bye_reaches_the_kamailio_caller_along_the_recorded_route() {
    let Some(mut s) = call_through_kamailio(36800) else {
        return;
    };
    s.agent.hangup();
    s.agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    s.caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    assert!(
        s.kamailio.logged("kamailio: relaying BYE in dialog"),
        "rgsd's BYE to the caller did not cross Kamailio\n{}",
        s.logs()
    );
    assert_answered_record(&s);
}
