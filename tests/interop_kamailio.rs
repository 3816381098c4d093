//! Interop with Kamailio (Debian's package) as registrar and record-routing proxy in front of
//! the real `rgsd` binary: rgsd registers its workflow URI there through `[[registration]]`,
//! and a baresip caller registered at Kamailio calls the workflow's address of record through
//! Kamailio and is answered by rgsd; audio both ways is checked by frequency, and either side's
//! BYE crosses Kamailio along the recorded route. Agents registered at Kamailio are reached
//! through `[server] outbound_proxy`, and a trunk's number (`sip:+…;user=phone` or `tel:+…`)
//! reaches the workflow with that `line_uri`.
//!
//! Each test skips (with the reason) only when `kamailio` or `baresip` is not installed.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::e2e::{Ua, group, hunt_group, server_section};
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

/// How a test lays the parts out.
struct Plan {
    rtp: u16,
    /// The agent registers at Kamailio and rgsd reaches it through `[server] outbound_proxy`
    /// (else rgsd calls the agent's own address).
    agent_behind_kamailio: bool,
    /// The address of record rgsd registers at Kamailio.
    aor: &'static str,
    /// Appended to the hunt-group workflow's table.
    workflow_extra: &'static str,
    /// The user part the caller dials at Kamailio, and the URI parameters after the port.
    dial: &'static str,
}

const SALES: Plan = Plan {
    rtp: 0,
    agent_behind_kamailio: false,
    aor: "sip:sales@127.0.0.1",
    workflow_extra: "",
    dial: "sales",
};

/// Kamailio, a baresip agent, rgsd registering `plan.aor` at Kamailio, and a baresip caller
/// registered at Kamailio; then the caller calls `plan.dial` at Kamailio, and both sides hear
/// each other.
fn call_through_kamailio(plan: &Plan) -> Option<Setup> {
    let baresip = require("baresip")?;
    let kamailio_bin = kamailio_bin()?;
    let scratch = Scratch::new();
    let kamailio = Kamailio::start(&kamailio_bin, &scratch.path().join("kamailio"));
    let k = kamailio.port;
    let (agent_account, agent_port, proxy) = if plan.agent_behind_kamailio {
        (
            format!("<sip:agent0@127.0.0.1:{k}>;regint=600;answermode=auto"),
            k,
            format!("outbound_proxy = \"sip:127.0.0.1:{k}\"\n"),
        )
    } else {
        (
            "<sip:agent0@127.0.0.1>;regint=0;answermode=auto".to_owned(),
            0,
            String::new(),
        )
    };
    let agent = Baresip::start(
        &baresip,
        scratch.path(),
        "agent0",
        &agent_account,
        AGENT_HZ,
        "",
    );
    let agent_port = if plan.agent_behind_kamailio {
        // The registration's answer, as baresip prints it: "agent0@…: {0/UDP/v4} 200 OK (…)".
        agent.wait_output("} 200 OK", Duration::from_secs(5));
        agent_port
    } else {
        agent.sip_port
    };
    let config = server_section(plan.rtp)
        + &proxy
        + &group("Sales agents", "serial", &[agent_port])
        + &hunt_group("Sales")
        + plan.workflow_extra
        + &format!(
            r#"
[[registration]]
aor = "{}"
registrar = "sip:127.0.0.1:{k}"
username = "sales"
password_env = "RGSD_INTEROP_PASSWORD"
expires = "600s"
"#,
            plan.aor
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
    s.caller.wait_output("} 200 OK", Duration::from_secs(5));
    let (user, params) = plan.dial.split_once(';').unwrap_or((plan.dial, ""));
    let params = if params.is_empty() {
        String::new()
    } else {
        format!(";{params}")
    };
    s.caller.dial(&format!("sip:{user}@127.0.0.1:{k}{params}"));
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
            "kamailio: relaying INVITE to sip:{user}@127.0.0.1:{}",
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
    let Some(mut s) = call_through_kamailio(&Plan {
        rtp: 36600,
        ..SALES
    }) else {
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
    let Some(mut s) = call_through_kamailio(&Plan {
        rtp: 36800,
        ..SALES
    }) else {
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

#[test]
fn agents_registered_at_kamailio_are_reached_through_the_outbound_proxy() {
    let Some(mut s) = call_through_kamailio(&Plan {
        rtp: 37000,
        agent_behind_kamailio: true,
        ..SALES
    }) else {
        return;
    };
    let k = s.kamailio.port;
    // rgsd sent the agent's INVITE to Kamailio for its AOR, and Kamailio found the phone.
    assert!(
        s.kamailio.logged(&format!(
            "kamailio: INVITE sip:agent0@127.0.0.1:{k} from 127.0.0.1:{}",
            s.server.sip_addr("udp").port()
        )) && s.kamailio.logged("kamailio: relaying INVITE to sip:agent0")
            && s.kamailio.log().lines().any(|l| {
                l.contains("kamailio: relaying INVITE to sip:agent0")
                    && l.contains(&format!("@127.0.0.1:{}", s.agent.sip_port))
            }),
        "{}",
        s.logs()
    );
    // The agent hangs up: its BYE reaches rgsd through Kamailio, and rgsd's BYE to the caller
    // too.
    s.agent.hangup();
    s.agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    s.caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let records = call_records(&s.scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}\n{}", s.logs());
    assert_eq!(
        records[0].agent.as_ref().map(ToString::to_string),
        Some(format!("sip:agent0@127.0.0.1:{k}")),
        "{records:#?}"
    );
    assert!(
        s.kamailio.output_count("kamailio: relaying BYE in dialog") >= 2,
        "both BYEs cross Kamailio\n{}",
        s.logs()
    );
}

/// A trunk-shaped call: the number registered at Kamailio as rgsd's AOR, the caller dialling
/// `sip:+14255550100@…;user=phone`, the workflow found by its `line_uri`.
#[test]
fn a_trunk_number_through_kamailio_reaches_the_workflow_with_that_line_uri() {
    let Some(mut s) = call_through_kamailio(&Plan {
        rtp: 37200,
        aor: "sip:+14255550100@127.0.0.1",
        workflow_extra: "line_uri = \"tel:+14255550100\"\n",
        dial: "+14255550100;user=phone",
        ..SALES
    }) else {
        return;
    };
    s.caller.hangup();
    s.agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let records = call_records(&s.scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}\n{}", s.logs());
    assert_eq!(records[0].workflow, "Sales line", "{records:#?}");
    assert_eq!(
        records[0].outcome,
        rgsd::store::CallOutcome::Answered,
        "{records:#?}"
    );
}

/// A trunk that sends `tel:+14255550100` as Request-URI (the in-test UA, since baresip dials
/// SIP URIs): Kamailio looks the number up like any AOR, and the call reaches the workflow with
/// that `line_uri`.
#[test]
fn a_tel_request_uri_through_kamailio_reaches_the_workflow_with_that_line_uri() {
    let Some(baresip) = require("baresip") else {
        return;
    };
    let Some(kamailio_bin) = kamailio_bin() else {
        return;
    };
    let scratch = Scratch::new();
    let kamailio = Kamailio::start(&kamailio_bin, &scratch.path().join("kamailio"));
    let k = kamailio.port;
    let mut agent = Baresip::start(
        &baresip,
        scratch.path(),
        "agent0",
        "<sip:agent0@127.0.0.1>;regint=0;answermode=auto",
        AGENT_HZ,
        "",
    );
    let config = server_section(37400)
        + &group("Sales agents", "serial", &[agent.sip_port])
        + &hunt_group("Sales")
        + &format!(
            r#"line_uri = "tel:+14255550100"

[[registration]]
aor = "sip:+14255550100@127.0.0.1"
registrar = "sip:127.0.0.1:{k}"
username = "sales"
password_env = "RGSD_INTEROP_PASSWORD"
"#
        );
    let path = scratch.write("rgsd.toml", config);
    let server = Server::start_with(&path, &[("RGSD_INTEROP_PASSWORD", "not-asked-for")]);
    server.wait_log("Registered");
    let mut trunk = Ua::new(kamailio.addr());
    let status = trunk.call_status("tel:+14255550100");
    assert_eq!(
        status,
        200,
        "{}\n{}\n{}\n--- rgsd:\n{}",
        trunk.log,
        agent.log(),
        kamailio.log(),
        server.stderr()
    );
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    assert!(
        kamailio.logged("kamailio: INVITE tel:+14255550100 from"),
        "{}",
        kamailio.log()
    );
    trunk.bye();
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let records = call_records(&scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].workflow, "Sales line", "{records:#?}");
}
