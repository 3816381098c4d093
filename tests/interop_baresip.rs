//! Interop with baresip, a SIP softphone nobody here wrote, as caller and as agent, straight to
//! the real `rgsd` binary on loopback: audio both ways checked by frequency in what each side
//! recorded, either side's BYE ending both legs and writing the call record, and an RFC 4733
//! key press picking an IVR answer.
//!
//! Each test skips (with the reason) only when `baresip` is not installed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::e2e::{group, hunt_group, server_section, start};
use common::interop::{Baresip, call_records};
use common::{Scratch, Server, require};

/// The caller's microphone tone; the agent's recording must show it.
const CALLER_HZ: f64 = 440.0;
/// The agent's microphone tone; the caller's recording must show it. Above every note of the
/// built-in music on hold (highest 1,046.5 Hz), which the caller hears before the answer.
const AGENT_HZ: f64 = 1400.0;
/// One second of a tone, in 20 ms frames.
const ONE_SECOND: usize = 50;

fn agent(baresip: &Path, scratch: &Scratch, name: &str) -> Baresip {
    Baresip::start(
        baresip,
        scratch.path(),
        name,
        &format!("<sip:{name}@127.0.0.1>;regint=0;answermode=auto"),
        AGENT_HZ,
        "",
    )
}

fn caller(baresip: &Path, scratch: &Scratch) -> Baresip {
    Baresip::start(
        baresip,
        scratch.path(),
        "caller",
        "<sip:caller@127.0.0.1>;regint=0",
        CALLER_HZ,
        "",
    )
}

/// A call from `caller` to the hunt group `sip:sales@…` answered by `agent`, with each side's
/// recording showing the other's tone for a second.
fn call_and_check_audio(caller: &mut Baresip, agent: &mut Baresip, server: &Server) {
    let rgsd = server.sip_addr("udp");
    caller.dial(&format!("sip:sales@127.0.0.1:{}", rgsd.port()));
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard_by_agent = agent.wait_heard(CALLER_HZ, ONE_SECOND, Duration::from_secs(8));
    let heard_by_caller = caller.wait_heard(AGENT_HZ, ONE_SECOND, Duration::from_secs(8));
    assert!(
        heard_by_agent >= ONE_SECOND && heard_by_caller >= ONE_SECOND,
        "agent heard {heard_by_agent} frames of {CALLER_HZ} Hz, caller {heard_by_caller} of \
         {AGENT_HZ} Hz\n{}\n{}\n--- rgsd:\n{}",
        caller.log(),
        agent.log(),
        server.stderr()
    );
}

fn assert_answered_record(scratch: &Scratch, agent: &Baresip, server: &Server) {
    assert_answered_by(
        scratch,
        &format!("sip:agent0@127.0.0.1:{}", agent.sip_port),
        server,
    );
}

fn assert_answered_by(scratch: &Scratch, agent: &str, server: &Server) {
    let records = call_records(&scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}\n{}", server.stderr());
    let r = &records[0];
    assert_eq!(r.outcome, rgsd::store::CallOutcome::Answered, "{r:#?}");
    assert_eq!(
        r.agent.as_ref().map(ToString::to_string),
        Some(agent.to_owned()),
        "{r:#?}"
    );
    assert!(r.talk.is_some(), "{r:#?}");
}

#[test]
fn baresip_caller_and_agent_hear_each_other_and_the_callers_bye_ends_both_legs() {
    let Some(bin) = require("baresip") else {
        return;
    };
    let scratch = Scratch::new();
    let mut agent = agent(&bin, &scratch, "agent0");
    let config = server_section(36000)
        + &group("Sales agents", "serial", &[agent.sip_port])
        + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut caller = caller(&bin, &scratch);
    call_and_check_audio(&mut caller, &mut agent, &server);

    caller.hangup();
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let closed = agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    assert_eq!(closed["direction"], "incoming", "{closed}");
    assert_answered_record(&scratch, &agent, &server);
}

#[test]
fn the_baresip_agents_bye_ends_the_callers_leg_too() {
    let Some(bin) = require("baresip") else {
        return;
    };
    let scratch = Scratch::new();
    let mut agent = agent(&bin, &scratch, "agent0");
    let config = server_section(36200)
        + &group("Sales agents", "serial", &[agent.sip_port])
        + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut caller = caller(&bin, &scratch);
    call_and_check_audio(&mut caller, &mut agent, &server);

    agent.hangup();
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let closed = caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    assert_eq!(closed["direction"], "outgoing", "{closed}");
    assert_answered_record(&scratch, &agent, &server);
}

/// An interactive workflow: key 1 for the first queue, key 2 for the second, each queue with
/// one baresip agent. The question is a WAV tone (no text-to-speech engine needed).
fn ivr_config(scratch: &Scratch, rtp: u16, first: u16, second: u16) -> String {
    scratch.write("question.wav", common::e2e::tone_wav(600.0, 3000));
    server_section(rtp)
        + &group("Billing agents", "serial", &[first])
        + &group("Support agents", "serial", &[second])
        + r#"
[[queue]]
name = "Billing"
agent_groups = ["Billing agents"]

[[queue]]
name = "Support"
agent_groups = ["Support agents"]

[[workflow]]
name = "Help line"
kind = "interactive"
uri = "sip:help@127.0.0.1"

[workflow.question]
prompt = { file = "question.wav" }

[[workflow.question.answers]]
dtmf = "1"
action = { queue = "Billing" }

[[workflow.question.answers]]
dtmf = "2"
action = { queue = "Support" }
"#
}

#[test]
fn a_baresip_rfc4733_key_2_lands_the_call_with_the_second_queues_agent() {
    let Some(bin) = require("baresip") else {
        return;
    };
    let scratch = Scratch::new();
    let mut billing = agent(&bin, &scratch, "agent0");
    let mut support = Baresip::start(
        &bin,
        scratch.path(),
        "support",
        "<sip:agent0@127.0.0.1>;regint=0;answermode=auto",
        AGENT_HZ,
        "",
    );
    let config = ivr_config(&scratch, 36400, billing.sip_port, support.sip_port);
    let server = start(&scratch, &config);
    let mut caller = caller(&bin, &scratch);
    let rgsd = server.sip_addr("udp");
    caller.dial(&format!("sip:help@127.0.0.1:{}", rgsd.port()));
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    // baresip sends the key as RFC 4733 telephone-events (the only DTMF mode of baresip 1.0).
    caller.send_dtmf("2");
    support.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = support.wait_heard(CALLER_HZ, ONE_SECOND, Duration::from_secs(8));
    assert!(
        heard >= ONE_SECOND,
        "the support agent heard {heard} frames of the caller\n{}\n{}\n--- rgsd:\n{}",
        caller.log(),
        support.log(),
        server.stderr()
    );
    caller.hangup();
    support.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let records = call_records(&scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].queue.as_deref(), Some("Support"), "{records:#?}");
    assert_eq!(
        billing.count_events("CALL_INCOMING"),
        0,
        "the billing agent was offered the call\n{}",
        billing.log()
    );
}

/// baresip's `srtp` module with `;mediaenc=srtp-mand` as caller and as agent, rgsd with
/// `srtp = "required"` on every leg: SDES keys both ways, and each side's recording still shows
/// the other's tone (rgsd decrypts one leg and encrypts into the other).
#[test]
fn baresip_srtp_caller_and_agent_hear_each_other_with_srtp_required() {
    let Some(bin) = require("baresip") else {
        return;
    };
    let scratch = Scratch::new();
    let srtp_module = "module\t\t\tsrtp.so\n";
    let mut agent = Baresip::start(
        &bin,
        scratch.path(),
        "agent0",
        "<sip:agent0@127.0.0.1>;regint=0;answermode=auto;mediaenc=srtp-mand",
        AGENT_HZ,
        srtp_module,
    );
    // Loopback only: the SDES keys may travel in plain SIP here.
    let config = server_section(37600)
        + "srtp = \"required\"\nallow_sdes_over_plain_sip = true\n"
        + &group("Sales agents", "serial", &[agent.sip_port])
        + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut caller = Baresip::start(
        &bin,
        scratch.path(),
        "caller",
        "<sip:caller@127.0.0.1>;regint=0;mediaenc=srtp-mand",
        CALLER_HZ,
        srtp_module,
    );
    call_and_check_audio(&mut caller, &mut agent, &server);
    // Each baresip reports its audio stream secured with an SDES suite rgsd chose.
    for side in [&mut caller, &mut agent] {
        side.count_events("CALL_MENC");
        assert!(
            side.seen.iter().any(|m| m["type"] == "CALL_MENC"
                && m["param"]
                    .as_str()
                    .is_some_and(|p| p.contains("audio,AES_CM_128_HMAC_SHA1_"))),
            "no SRTP on this leg\n{}",
            side.log()
        );
    }
    caller.hangup();
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    assert_answered_record(&scratch, &agent, &server);
}

/// SIP over TLS both ways: a baresip caller reaches rgsd's `tls:` listener
/// (`;transport=tls`), and rgsd reaches a baresip agent at its TLS port (`;transport=tls` agent
/// URI), each checking the other's certificate against the test CA (`sip_cafile`, `tls.ca`).
#[test]
fn baresip_calls_rgsd_over_tls_and_rgsd_reaches_a_baresip_agent_over_tls() {
    let Some(bin) = require("baresip") else {
        return;
    };
    let scratch = Scratch::new();
    let tls = common::interop::LoopbackTls::new(&scratch.path().join("tls"));
    let baresip_tls = format!(
        "sip_certificate\t\t{}\nsip_cafile\t\t{}\n",
        tls.bundle.display(),
        tls.ca.display()
    );
    let mut agent = Baresip::start(
        &bin,
        scratch.path(),
        "agent0",
        "<sip:agent0@127.0.0.1>;regint=0;answermode=auto",
        AGENT_HZ,
        &baresip_tls,
    );
    let config = server_section(37800).replace(
        "sip_listen = [\"udp:127.0.0.1:0\"]",
        &format!(
            "sip_listen = [\"udp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\ntls = {{ certificate = \"{}\", private_key = \"{}\", ca = \"{}\" }}",
            tls.cert.display(),
            tls.key.display(),
            tls.ca.display()
        ),
    ) + &format!(
        "\n[[agent_group]]\nname = \"Sales agents\"\nrouting = \"serial\"\nalert_time = \"10s\"\nagents = [\"sip:agent0@127.0.0.1:{};transport=tls\"]\n",
        agent.sip_port + 1
    ) + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut caller = Baresip::start(
        &bin,
        scratch.path(),
        "caller",
        "<sip:caller@127.0.0.1>;regint=0",
        CALLER_HZ,
        &baresip_tls,
    );
    let rgsd_tls = server.sip_addr("tls");
    caller.dial(&format!(
        "sip:sales@127.0.0.1:{};transport=tls",
        rgsd_tls.port()
    ));
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard_by_agent = agent.wait_heard(CALLER_HZ, ONE_SECOND, Duration::from_secs(8));
    let heard_by_caller = caller.wait_heard(AGENT_HZ, ONE_SECOND, Duration::from_secs(8));
    assert!(
        heard_by_agent >= ONE_SECOND && heard_by_caller >= ONE_SECOND,
        "agent heard {heard_by_agent}, caller {heard_by_caller}\n{}\n{}\n--- rgsd:\n{}",
        caller.log(),
        agent.log(),
        server.stderr()
    );
    caller.hangup();
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    assert_answered_by(
        &scratch,
        &format!("sip:agent0@127.0.0.1:{};transport=tls", agent.sip_port + 1),
        &server,
    );
}
