//! End to end: the real `rgsd` binary takes calls from SIPp (or a small in-test UA that also
//! sends and checks RTP) and offers them to SIPp agents on loopback ports the test started.
//!
//! Audio is checked, not assumed: the in-test caller sends PCMU frames of a marker byte, the
//! SIPp agent runs with `-rtp_echo`, and the caller must hear its own marker frames back
//! through rgsd's bridge (caller → agent → caller).
//!
//! Skipped, with a printed reason, when `sipp` is not on PATH. Every SIPp run is bounded
//! (`-m`, `-timeout 30s`), every wait has a deadline.
// Test harness: a failed unwrap is a test failure; waiting on child processes and sockets
// needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::e2e::{
    Sipp, Ua, frame_hz, free_udp_port, group, hunt_group, scenario, server_section, start,
    talk_until_heard, tone_wav,
};
use common::{Scratch, Server, require};

// ---------------------------------------------------------------------------------------------

#[test]
fn hunt_group_call_is_bridged_with_audio_both_ways_and_the_caller_hangs_up() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config =
        server_section(31000) + &group("Sales agents", "serial", &[port]) + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
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
        "caller did not hear its audio back through the agent (heard {heard})\n{}\n{}",
        agent.logs(),
        server.stderr()
    );
    // Nothing of the agent reaches the caller's dialog.
    assert!(
        !ua.log.contains("agent0"),
        "agent identity leaked:\n{}",
        ua.log
    );
    ua.bye();
    agent.assert_success(&server);
}

#[test]
fn agent_hangs_up_and_rgsd_ends_the_callers_leg() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config =
        server_section(31200) + &group("Sales agents", "serial", &[port]) + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
        "e2e_agent_hangs_up.xml",
        Some(1),
        1500,
        true,
    );
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:sales@127.0.0.1");
    let heard = talk_until_heard(&mut ua, 60);
    assert!(
        heard >= 5,
        "no audio back (heard {heard})\n{}",
        agent.logs()
    );
    ua.expect_bye(Duration::from_secs(10));
    agent.assert_success(&server);
}

#[test]
fn round_robin_over_three_agents_gives_six_calls_two_each() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let config = server_section(31400)
        + &group("Sales agents", "round_robin", &ports)
        + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut agents: Vec<Sipp> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Sipp::agent(
                &sipp,
                scratch.path(),
                &format!("agent{i}"),
                *p,
                "e2e_agent_answers.xml",
                None,
                0,
                false,
            )
        })
        .collect();
    let mut callers = Sipp::callers(
        &sipp,
        scratch.path(),
        "callers",
        server.sip_addr("udp"),
        "sales",
        6,
        1,
        300,
    );
    callers.assert_success(&server);
    let counts: Vec<usize> = agents.iter().map(Sipp::invites_received).collect();
    for a in &mut agents {
        a.stop();
    }
    assert_eq!(
        counts,
        vec![2, 2, 2],
        "INVITEs per agent\n{}",
        server.stderr()
    );
}

#[test]
fn parallel_rings_everyone_and_cancels_the_rest_when_one_answers() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let config =
        server_section(31600) + &group("Sales agents", "parallel", &ports) + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut ringing0 = Sipp::agent(
        &sipp,
        scratch.path(),
        "ring0",
        ports[0],
        "e2e_agent_rings.xml",
        Some(1),
        0,
        false,
    );
    let mut answering = Sipp::agent(
        &sipp,
        scratch.path(),
        "answer",
        ports[1],
        "e2e_agent_answers.xml",
        Some(1),
        500,
        false,
    );
    let mut ringing2 = Sipp::agent(
        &sipp,
        scratch.path(),
        "ring2",
        ports[2],
        "e2e_agent_rings.xml",
        Some(1),
        0,
        false,
    );
    let mut callers = Sipp::callers(
        &sipp,
        scratch.path(),
        "caller",
        server.sip_addr("udp"),
        "sales",
        1,
        1,
        1200,
    );
    callers.assert_success(&server);
    answering.assert_success(&server);
    ringing0.assert_success(&server);
    ringing2.assert_success(&server);
}

#[test]
fn a_busy_agent_is_not_offered_a_second_call() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config =
        server_section(31800) + &group("Sales agents", "serial", &[port]) + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
        "e2e_agent_answers.xml",
        None,
        0,
        false,
    );
    // The first caller talks for 2 s; the second arrives during that call, waits 600 ms in the
    // queue and hangs up.
    let mut first = Sipp::callers(
        &sipp,
        scratch.path(),
        "first",
        server.sip_addr("udp"),
        "sales",
        1,
        1,
        2000,
    );
    std::thread::sleep(Duration::from_millis(400));
    let mut second = Sipp::callers(
        &sipp,
        scratch.path(),
        "second",
        server.sip_addr("udp"),
        "sales",
        1,
        1,
        600,
    );
    second.assert_success(&server);
    assert_eq!(
        agent.invites_received(),
        1,
        "the busy agent was offered the waiting call\n{}",
        agent.logs()
    );
    first.assert_success(&server);
    agent.stop();
}

/// Queues Billing and Support behind an interactive workflow `help`: key 1 or 2.
const IVR_BILLING_OR_SUPPORT: &str = r#"
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
prompt = { text = "For billing press 1. For support press 2." }

[[workflow.question.answers]]
dtmf = "1"
action = { queue = "Billing" }

[[workflow.question.answers]]
dtmf = "2"
action = { queue = "Support" }
"#;

/// SIPp agents of the two queues: Billing's answers any call (none expected), Support's one.
fn billing_and_support(sipp: &Path, scratch: &Scratch, billing: u16, support: u16) -> (Sipp, Sipp) {
    let agent = |name, port, calls| {
        Sipp::agent(
            sipp,
            scratch.path(),
            name,
            port,
            "e2e_agent_hangs_up.xml",
            calls,
            300,
            false,
        )
    };
    (
        agent("billing", billing, None),
        agent("support", support, Some(1)),
    )
}

#[test]
fn ivr_rfc4733_digit_lands_in_the_chosen_queue() {
    let Some(sipp) = require("sipp") else { return };
    if require("espeak-ng").is_none() {
        return;
    }
    let scratch = Scratch::new();
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let config = server_section(32000)
        + &group("Billing agents", "serial", &[port_a])
        + &group("Support agents", "serial", &[port_b])
        + IVR_BILLING_OR_SUPPORT;
    let server = start(&scratch, &config);
    let (mut billing, mut support) = billing_and_support(&sipp, &scratch, port_a, port_b);
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:help@127.0.0.1");
    ua.press(2);
    ua.expect_bye(Duration::from_secs(10));
    support.assert_success(&server);
    assert_eq!(billing.invites_received(), 0, "{}", billing.logs());
    billing.stop();
}

/// The same menu answered by a SIP INFO key press (`application/dtmf-relay`) from a SIPp caller:
/// key 2 leads to the Support queue's agent, never to Billing's.
#[test]
fn ivr_sip_info_digit_from_sipp_lands_in_the_chosen_queue() {
    let Some(sipp) = require("sipp") else { return };
    if require("espeak-ng").is_none() {
        return;
    }
    let scratch = Scratch::new();
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let config = server_section(38400)
        + &group("Billing agents", "serial", &[port_a])
        + &group("Support agents", "serial", &[port_b])
        + IVR_BILLING_OR_SUPPORT;
    let server = start(&scratch, &config);
    let (mut billing, mut support) = billing_and_support(&sipp, &scratch, port_a, port_b);
    let args = vec![
        server.sip_addr("udp").to_string(),
        "-sf".into(),
        scenario("e2e_caller_info_dtmf.xml").display().to_string(),
        "-s".into(),
        "help".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_udp_port().to_string(),
        "-mp".into(),
        free_udp_port().to_string(),
        "-m".into(),
        "1".into(),
    ];
    let mut caller = Sipp::spawn(&sipp, scratch.path(), "caller", &args);
    caller.assert_success(&server);
    support.assert_success(&server);
    assert_eq!(billing.invites_received(), 0, "{}", billing.logs());
    billing.stop();
}

#[test]
fn sigterm_refuses_new_calls_lets_the_call_in_progress_finish_and_records_it() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config =
        server_section(32200) + &group("Sales agents", "serial", &[port]) + &hunt_group("Sales");
    let mut server = start(&scratch, &config);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
        "e2e_agent_answers.xml",
        Some(1),
        0,
        true,
    );
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:sales@127.0.0.1");
    assert!(talk_until_heard(&mut ua, 150) >= 5, "{}", server.stderr());
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_log("waiting for calls in progress");
    let mut late = Ua::new(server.sip_addr("udp"));
    assert_eq!(late.call_status("sip:sales@127.0.0.1"), 503);
    // The call in progress still carries audio, then ends normally.
    assert!(ua.talk(20).0 >= 10, "bridge broken during the grace period");
    ua.bye();
    agent.assert_success(&server);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", server.stderr());

    // One record for the answered call (the refused one never reached the controller's
    // workflow: 503 at the door).
    let records = common::interop::call_records(&scratch.path().join("rgsd.db"), 1);
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.outcome, rgsd::store::CallOutcome::Answered);
    assert_eq!(r.queue.as_deref(), Some("Sales"));
    assert_eq!(
        r.agent.as_ref().map(|a| a.to_string()),
        Some(format!("sip:agent0@127.0.0.1:{port}"))
    );
    assert_eq!(r.offers.len(), 1);
    assert_eq!(r.offers[0].result, rgsd::store::OfferResult::Answered);
    assert!(r.answered_at.is_some() && r.talk.is_some());
}

/// SIGTERM with a drain limit: new INVITEs get 503 with Retry-After (a proxy in front fails
/// over); the calls in progress go on until the limit, then both legs get BYE and each call is
/// recorded (answered, or disconnected while it waited); the process exits 0.
#[test]
fn drain_limit_ends_calls_still_up_with_bye_and_records_them() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config = server_section(34200)
        + "drain_limit = \"2s\"\n"
        + &group("Sales agents", "serial", &[port])
        + &hunt_group("Sales");
    let mut server = start(&scratch, &config);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
        "e2e_agent_answers.xml",
        Some(1),
        0,
        true,
    );
    let mut talking = Ua::new(server.sip_addr("udp"));
    talking.call("sip:sales@127.0.0.1");
    assert!(
        talk_until_heard(&mut talking, 150) >= 5,
        "{}",
        server.stderr()
    );
    // A second caller waits: the only agent is busy.
    let mut waiting = Ua::new(server.sip_addr("udp"));
    assert_eq!(waiting.call_status("sip:sales@127.0.0.1"), 200);
    let signalled = std::time::Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_log("waiting for calls in progress");
    let mut late = Ua::new(server.sip_addr("udp"));
    assert_eq!(late.call_status("sip:sales@127.0.0.1"), 503);
    assert!(
        late.log.contains("Retry-After: 5"),
        "503 without Retry-After:\n{}",
        late.log
    );
    // Still bridged during the drain, then BYE to both callers (and to the agent) at the limit.
    assert!(talking.talk(20).0 >= 10, "bridge broken during the drain");
    talking.expect_bye(Duration::from_secs(10));
    waiting.expect_bye(Duration::from_secs(10));
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(1_800),
        "BYE after {waited:?}, before the 2 s limit"
    );
    agent.assert_success(&server);
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(
        server.stderr().contains("drain limit"),
        "{}",
        server.stderr()
    );

    let records = common::interop::call_records(&scratch.path().join("rgsd.db"), 2);
    assert_eq!(records.len(), 2, "{records:#?}");
    let outcome = |ua: &Ua| {
        records
            .iter()
            .find(|r| r.call_id == ua.call_id)
            .map(|r| r.outcome)
            .unwrap_or_else(|| panic!("no record for {}: {records:#?}", ua.call_id))
    };
    assert_eq!(outcome(&talking), rgsd::store::CallOutcome::Answered);
    assert_eq!(outcome(&waiting), rgsd::store::CallOutcome::Disconnected);
}

/// `kill -9` with one call talking and one waiting (and one finished before): the next start
/// records the two cut calls from the call journal, as `restarted`, with what they had reached
/// (the agent who answered, the queue); the finished call keeps its own record, once.
#[test]
fn calls_cut_by_kill_9_are_recorded_as_restarted_at_the_next_start() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config =
        server_section(35000) + &group("Sales agents", "serial", &[port]) + &hunt_group("Sales");
    let mut server = start(&scratch, &config);
    let _agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
        "e2e_agent_answers.xml",
        Some(2),
        0,
        true,
    );
    let mut finished = Ua::new(server.sip_addr("udp"));
    finished.call("sip:sales@127.0.0.1");
    assert!(
        talk_until_heard(&mut finished, 150) >= 5,
        "{}",
        server.stderr()
    );
    finished.bye();
    let db = scratch.path().join("rgsd.db");
    assert_eq!(common::interop::call_records(&db, 1).len(), 1);
    let mut talking = Ua::new(server.sip_addr("udp"));
    talking.call("sip:sales@127.0.0.1");
    assert!(
        talk_until_heard(&mut talking, 150) >= 5,
        "{}",
        server.stderr()
    );
    let mut waiting = Ua::new(server.sip_addr("udp"));
    assert_eq!(waiting.call_status("sip:sales@127.0.0.1"), 200);
    // The waiting call's journal line says it entered the queue before the kill.
    let journal = scratch.path().join("rgsd.journal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(&waiting.call_id) && l.contains("\"queue\":\"Sales\""))
    {
        assert!(
            Instant::now() < deadline,
            "the waiting call never reached its queue"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal(nix::sys::signal::Signal::SIGKILL);
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(!status.success());
    assert_eq!(
        common::interop::call_records(&db, 1).len(),
        1,
        "no record yet for the cut calls"
    );

    let server = Server::start(&scratch.path().join("rgsd.toml"));
    server.wait_log("previous run stopped without ending its calls");
    let records = common::interop::call_records(&db, 3);
    assert_eq!(records.len(), 3, "{records:#?}");
    let record = |ua: &Ua| {
        let mine: Vec<_> = records.iter().filter(|r| r.call_id == ua.call_id).collect();
        assert_eq!(mine.len(), 1, "{} has {} records", ua.call_id, mine.len());
        mine[0].clone()
    };
    assert_eq!(
        record(&finished).outcome,
        rgsd::store::CallOutcome::Answered
    );
    let cut = record(&talking);
    assert_eq!(cut.outcome, rgsd::store::CallOutcome::Restarted);
    assert_eq!(
        cut.agent.as_ref().map(|a| a.0.contains(&port.to_string())),
        Some(true),
        "{cut:#?}"
    );
    assert!(cut.answered_at.is_some() && cut.talk.is_some(), "{cut:#?}");
    let queued = record(&waiting);
    assert_eq!(queued.outcome, rgsd::store::CallOutcome::Restarted);
    assert_eq!(queued.queue.as_deref(), Some("Sales"), "{queued:#?}");
    assert!(queued.answered_at.is_none() && queued.agent.is_none());
    assert!(queued.ended_at >= queued.arrived_at);
    // Recorded once: after a clean stop, the next start finds nothing left.
    let mut server = server;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    // Recovery runs before the listeners open, so READY means it is done.
    let server = Server::start(&scratch.path().join("rgsd.toml"));
    assert_eq!(common::interop::call_records(&db, 0).len(), 3);
    assert!(
        !server.stderr().contains("previous run stopped"),
        "{}",
        server.stderr()
    );
}

#[test]
fn reload_carries_the_busy_agent_over_and_frees_it_when_its_call_ends() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let config =
        server_section(32400) + &group("Sales agents", "serial", &[port]) + &hunt_group("Sales");
    let server = start(&scratch, &config);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "agent",
        port,
        "e2e_agent_answers.xml",
        Some(2),
        0,
        true,
    );
    let mut first = Ua::new(server.sip_addr("udp"));
    first.call("sip:sales@127.0.0.1");
    assert!(
        talk_until_heard(&mut first, 150) >= 5,
        "{}",
        server.stderr()
    );

    // A changed group (alert time) makes the reload build a new agent table.
    scratch.write(
        "rgsd.toml",
        config.replace("alert_time = \"10s\"", "alert_time = \"11s\""),
    );
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_log("reloaded");

    // The agent is still busy in the new table: the new call waits.
    let mut second = Ua::new(server.sip_addr("udp"));
    second.call("sip:sales@127.0.0.1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        agent.invites_received(),
        1,
        "busy agent offered after reload"
    );

    // The first call ends (under the old configuration): the agent is free in the new table and
    // the waiting call reaches it.
    first.bye();
    assert!(
        talk_until_heard(&mut second, 150) >= 5,
        "waiting call not bridged after the agent was freed\n{}\n{}",
        agent.logs(),
        server.stderr()
    );
    second.bye();
    agent.assert_success(&server);
}

#[test]
fn ivr_answer_forwards_to_voicemail_and_bridges_audio_when_it_answers() {
    let Some(sipp) = require("sipp") else { return };
    if require("espeak-ng").is_none() {
        return;
    }
    let scratch = Scratch::new();
    let (agent_port, vm_port) = (free_udp_port(), free_udp_port());
    let config = server_section(24200)
        + &group("Support agents", "serial", &[agent_port])
        + &format!(
            r#"
[[queue]]
name = "Support"
agent_groups = ["Support agents"]

[[workflow]]
name = "Help line"
kind = "interactive"
uri = "sip:help@127.0.0.1"

[workflow.question]
prompt = {{ text = "For support press 1. To leave a message press 9." }}

[[workflow.question.answers]]
dtmf = "1"
action = {{ queue = "Support" }}

[[workflow.question.answers]]
dtmf = "9"
action = {{ voicemail = "sip:vm@127.0.0.1:{vm_port}" }}
"#
        );
    let server = start(&scratch, &config);
    let mut voicemail = Sipp::agent(
        &sipp,
        scratch.path(),
        "voicemail",
        vm_port,
        "e2e_agent_answers.xml",
        Some(1),
        0,
        true,
    );
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:help@127.0.0.1");
    ua.press(9);
    let heard = talk_until_heard(&mut ua, 150);
    assert!(
        heard >= 5,
        "no audio through the voicemail leg (heard {heard})\n{}\n{}",
        voicemail.logs(),
        server.stderr()
    );
    ua.bye();
    voicemail.assert_success(&server);
}

#[test]
fn caller_hears_the_welcome_prompt_then_music_on_hold_at_a_20_ms_cadence() {
    let scratch = Scratch::new();
    // A 400 ms 1 kHz welcome, a 400 Hz music loop; the agent's port answers nothing, so the
    // caller stays in the queue hearing music.
    scratch.write("welcome.wav", tone_wav(1000.0, 400));
    scratch.write("moh.wav", tone_wav(400.0, 1000));
    let dead = free_udp_port();
    let config = server_section(24400)
        + "default_music_on_hold = \"moh.wav\"\n"
        + &group("Sales agents", "serial", &[dead])
        + &hunt_group("Sales")
        + "welcome = { file = \"welcome.wav\" }\n";
    let server = start(&scratch, &config);
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:sales@127.0.0.1");

    // (arrival, seq, timestamp, marker, frequency) of every packet for 1.5 s.
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        if let Ok((n, _)) = ua.rtp.recv_from(&mut buf) {
            assert!(
                n == 12 + 160 && buf[1] & 0x7f == 0,
                "PCMU 20 ms frames: {n} bytes"
            );
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            packets.push((
                Instant::now(),
                seq,
                ts,
                buf[1] & 0x80 != 0,
                frame_hz(&buf[12..n]),
            ));
        }
    }
    // (seq, marker, Hz) of each packet, then the daemon's log, for failure messages.
    let log = || {
        let brief: Vec<_> = packets.iter().map(|p| (p.1, p.3, p.4)).collect();
        format!("{brief:?}\n{}", server.stderr())
    };
    assert!(packets.len() >= 60, "about 75 frames in 1.5 s: {}", log());
    // Continuous numbering across the change of source.
    for w in packets.windows(2) {
        assert_eq!(w[1].1, w[0].1.wrapping_add(1), "sequence: {}", log());
        assert_eq!(w[1].2, w[0].2.wrapping_add(160), "timestamp: {}", log());
    }
    // 20 ms cadence: the span of the packets matches their count.
    let span = packets.last().unwrap().0 - packets[0].0;
    let expected = Duration::from_millis(20 * (packets.len() as u64 - 1));
    assert!(
        span.abs_diff(expected) < Duration::from_millis(100),
        "{} packets over {span:?}: {}",
        packets.len(),
        log()
    );
    // First the welcome (1 kHz, 20 frames), then a marked change to music (400 Hz).
    let change = packets
        .iter()
        .skip(1)
        .position(|p| p.3)
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no marker bit at the change of source: {}", log()));
    assert!(
        (18..=22).contains(&change),
        "welcome lasted {change} frames: {}",
        log()
    );
    for p in &packets[1..change - 1] {
        assert!(
            (p.4 - 1000.0).abs() < 100.0,
            "welcome frame at {} Hz: {}",
            p.4,
            log()
        );
    }
    for p in &packets[change + 1..] {
        assert!(
            (p.4 - 400.0).abs() < 100.0,
            "music frame at {} Hz: {}",
            p.4,
            log()
        );
    }
    // The caller sends 100 frames of its own. A leg adds to the totals every 50 packets, so
    // the count reaches exactly 100 while the call is up: wait for it before hanging up (a BYE
    // racing the last packets would close the socket with some of them unread).
    let to = ua.remote_rtp.unwrap();
    for i in 0..100u32 {
        let p = ua.rtp_packet(0, i == 0, i * 160, &[0xFF; 160]);
        ua.rtp.send_to(&p, to).unwrap();
    }
    let received_metric = "rgsd_rtp_packets_total{direction=\"received\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(server.http, received_metric) < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric(server.http, received_metric),
        100,
        "RTP packets received: {}",
        server.stderr()
    );
    // Hanging up ends the leg, which adds its last, partial batch of sent packets: everything
    // the caller heard (the agent never answered, so nothing else was sent).
    ua.bye();
    // What reached the caller meanwhile waits in its socket: count it too.
    let mut heard = packets.len() as u64;
    ua.rtp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while ua.rtp.recv_from(&mut buf).is_ok() {
        heard += 1;
    }
    let sent_metric = "rgsd_rtp_packets_total{direction=\"sent\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    let sent = loop {
        let sent = metric(server.http, sent_metric);
        if sent >= heard || Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        (heard..heard + 50).contains(&sent),
        "RTP packets sent: {sent}, the caller heard {heard}"
    );
}

/// The value of `series` (exact name and labels) in the daemon's `/metrics`.
fn metric(http: std::net::SocketAddr, series: &str) -> u64 {
    let (code, doc) = common::http::http(http, "GET", "/metrics", None, None);
    assert_eq!(code, 200, "{doc}");
    doc.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{doc}"))
        .parse()
        .unwrap()
}
