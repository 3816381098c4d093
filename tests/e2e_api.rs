//! End to end through the API: the real `rgsd` binary, a formal agent group whose agent signs in
//! and out through `PUT /api/groups/{id}/sign-ins/{agent_id}` with a token issued by
//! `rgsd token create`, a SIPp agent that answers and echoes RTP, and the in-test caller.
//!
//! Checks that formal sign-in gates routing for real calls (a signed-out agent gets no INVITE,
//! a sign-in reaches the call already waiting), and that the call driver's reports reach the
//! API: `/api/live/calls` lists calls in progress with their phase, and `/metrics` counts ended
//! calls by outcome and observes queue waits.
//!
//! Also checks that a reload which reorders, drops and restores formal groups keeps each
//! sign-in on its own group, as routing reports it through `/api/live` (no SIPp needed).
//!
//! The SIPp tests are skipped, with a printed reason, when `sipp` is not on PATH. Every wait has
//! a deadline.
// Test harness: a failed unwrap is a test failure; waiting on child processes and sockets
// needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::e2e::{Sipp, Ua, free_udp_port, group, hunt_group, server_section, start};
use common::http::http;
use common::{Scratch, require};

fn get_json(addr: SocketAddr, path: &str, token: &str) -> Value {
    let (code, body) = http(addr, "GET", path, Some(token), None);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The live call `call_id` as `/api/live/calls` lists it, if listed.
fn live_call(addr: SocketAddr, token: &str, call_id: &str) -> Option<Value> {
    get_json(addr, "/api/live/calls", token)
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == call_id)
        .cloned()
}

/// Polls (at most 5 s) until `/api/live/calls` lists `call_id` in `phase`; returns the entry.
fn wait_live_phase(addr: SocketAddr, token: &str, call_id: &str, phase: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let call = live_call(addr, token, call_id);
        if let Some(c) = &call
            && c["phase"] == phase
        {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "call {call_id} not listed as {phase}: {call:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the series `series` (exact name and labels) in `/metrics`.
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (code, doc) = http(addr, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    doc.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing in\n{doc}"))
        .parse()
        .unwrap()
}

/// Polls (at most 5 s) until `series` reaches `at_least`.
fn wait_metric(addr: SocketAddr, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(addr, series) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {at_least}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sign_in(addr: SocketAddr, token: &str, group: i64, agent: i64, signed_in: bool) {
    let path = format!("/api/groups/{group}/sign-ins/{agent}");
    let body = format!("{{\"signed_in\":{signed_in}}}");
    let (code, reply) = http(addr, "PUT", &path, Some(token), Some(&body));
    assert_eq!(code, 200, "{reply}");
    assert!(reply.contains("\"routed\":true"), "{reply}");
}

/// How long a waiting call is watched for an INVITE that must not come.
const NO_INVITE_WINDOW: Duration = Duration::from_millis(1500);

#[test]
fn formal_sign_in_through_the_api_gates_real_calls_and_the_api_sees_them() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let agent_uri = format!("sip:agent0@127.0.0.1:{port}");
    // RTP ports below the kernel's ephemeral range (32768+), apart from the other e2e tests'.
    let config = server_section(23000)
        + &group("Sales agents", "serial", &[port])
        + "participation = \"formal\"\n"
        + &hunt_group("Sales");
    let path = scratch.write("rgsd.toml", &config);
    let path_str = path.to_str().unwrap();
    let admin = common::create_token(path_str, "admin", "root");
    let agent_token = common::create_token(path_str, "agent", &agent_uri);
    let server = start(&scratch, &config);
    let api = server.http;
    // Two calls at most: the second one must never arrive (checked on the message log).
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
    let me = get_json(api, "/api/me", &agent_token);
    let agent_id = me["agent_id"].as_i64().unwrap();
    let group_id = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Sales agents")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(me["groups"][0]["signed_in"], false, "{me}");
    let rgsd = server.sip_addr("udp");

    // Not signed in: the call waits in the queue and the agent gets no INVITE.
    let mut ua = Ua::new(rgsd);
    ua.call("sip:sales@127.0.0.1");
    let waiting = wait_live_phase(api, &admin, &ua.call_id, "waiting");
    assert_eq!(waiting["queue"], "Sales", "{waiting}");
    assert_eq!(waiting["workflow"], "Sales line", "{waiting}");
    assert!(waiting["agent"].is_null(), "{waiting}");
    assert_eq!(metric(api, "rgsd_calls_in_progress"), 1.0);
    std::thread::sleep(NO_INVITE_WINDOW);
    assert_eq!(agent.invites_received(), 0, "{}", agent.logs());
    let still = live_call(api, &admin, &ua.call_id).unwrap();
    assert_eq!(still["phase"], "waiting", "{still}");

    // The agent signs in with their own token: the waiting call reaches them, audio flows.
    sign_in(api, &agent_token, group_id, agent_id, true);
    let mut heard = 0;
    for _ in 0..20 {
        heard += ua.talk(10).0;
        if heard >= 5 {
            break;
        }
    }
    assert!(
        heard >= 5,
        "caller heard {heard} echoed frames\n{}\n{}",
        agent.logs(),
        server.stderr()
    );
    let talking = wait_live_phase(api, &admin, &ua.call_id, "talking");
    assert_eq!(
        talking["agent"].as_str(),
        Some(agent_uri.as_str()),
        "{talking}"
    );
    assert!(!talking["queued_at"].is_null(), "{talking}");
    assert_eq!(agent.invites_received(), 1, "{}", agent.logs());
    ua.bye();
    wait_metric(api, "rgsd_calls_total{outcome=\"answered\"}", 1.0);
    assert_eq!(metric(api, "rgsd_queue_wait_seconds_count"), 1.0);
    // It waited at least the window before the sign-in.
    assert!(
        metric(api, "rgsd_queue_wait_seconds_bucket{le=\"1\"}") < 1.0,
        "a wait longer than 1 s lands above the 1 s bucket"
    );
    assert!(live_call(api, &admin, &ua.call_id).is_none());
    assert_eq!(metric(api, "rgsd_calls_in_progress"), 0.0);

    // Signed out: a new call waits again and the agent gets no second INVITE.
    sign_in(api, &agent_token, group_id, agent_id, false);
    let mut ua2 = Ua::new(rgsd);
    ua2.call("sip:sales@127.0.0.1");
    wait_live_phase(api, &admin, &ua2.call_id, "waiting");
    std::thread::sleep(NO_INVITE_WINDOW);
    assert_eq!(agent.invites_received(), 1, "{}", agent.logs());
    let still = live_call(api, &admin, &ua2.call_id).unwrap();
    assert_eq!(still["phase"], "waiting", "{still}");
    ua2.bye();
    wait_metric(api, "rgsd_calls_total{outcome=\"abandoned\"}", 1.0);
    assert_eq!(metric(api, "rgsd_calls_total{outcome=\"answered\"}"), 1.0);
    // Two INVITEs and two BYEs from the callers; an INVITE and a BYE to the agent.
    assert!(metric(api, "rgsd_sip_transactions_total{side=\"server\"}") >= 4.0);
    assert!(metric(api, "rgsd_sip_transactions_total{side=\"client\"}") >= 2.0);
    agent.stop();
}

/// A formal group named `name` with the one agent `uri`, and a queue and workflow over it.
fn formal_line(name: &str, uri: &str) -> String {
    let lower = name.to_lowercase();
    format!(
        r#"
[[agent_group]]
name = "{name} agents"
participation = "formal"
agents = ["{uri}"]

[[queue]]
name = "{name}"
agent_groups = ["{name} agents"]

[[workflow]]
name = "{name} line"
kind = "hunt_group"
uri = "sip:{lower}@127.0.0.1"
queue = "{name}"
"#
    )
}

/// Rewrites the file, sends SIGHUP and waits for the `n`th "reloaded" line.
fn reload(server: &common::Server, scratch: &Scratch, config: &str, n: usize) {
    scratch.write("rgsd.toml", config);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stderr().matches("reloaded: ").count() < n {
        assert!(
            Instant::now() < deadline,
            "reload {n} not seen\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What routing says about `uri`: the groups it is signed in to, and per queue (by name) how
/// many agents are signed in.
fn routing_view(api: SocketAddr, token: &str, uri: &str) -> (Value, Vec<(String, i64)>) {
    let agents = get_json(api, "/api/live/agents", token);
    let agent = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["sip_uri"] == uri)
        .unwrap_or_else(|| panic!("{uri} not in {agents}"));
    let queues = get_json(api, "/api/live/queues", token)
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["agents_signed_in"].as_i64().unwrap(),
            )
        })
        .collect();
    (agent["signed_in"].clone(), queues)
}

/// A reload that reorders, drops and restores formal groups keeps each sign-in on its own
/// group (by name), never on the group that took its index. No SIPp: routing's view through
/// the live API is the check.
#[test]
fn reload_keeps_sign_ins_on_their_group_when_groups_move_or_go() {
    let scratch = Scratch::new();
    let uri = "sip:alice@127.0.0.1:5999";
    let sales = formal_line("Sales", uri);
    let support = formal_line("Support", uri);
    let config = server_section(25000) + &sales + &support;
    let path = scratch.write("rgsd.toml", &config);
    let admin = common::create_token(path.to_str().unwrap(), "admin", "root");
    let server = start(&scratch, &config);
    let api = server.http;
    let agent_id = get_json(api, "/api/agents", &admin)
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["sip_uri"] == uri)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let sales_id = get_json(api, "/api/groups", &admin)
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Sales agents")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    sign_in(api, &admin, sales_id, agent_id, true);
    let signed_in_to_sales = serde_json::json!(["Sales agents"]);
    let before = routing_view(api, &admin, uri);
    assert_eq!(before.0, signed_in_to_sales, "{before:?}");

    // Support first: the groups swap indexes.
    reload(
        &server,
        &scratch,
        &(server_section(25000) + &support + &sales),
        1,
    );
    let (signed_in, queues) = routing_view(api, &admin, uri);
    assert_eq!(signed_in, signed_in_to_sales, "{}", server.stderr());
    assert_eq!(
        queues,
        [("Support".to_owned(), 0), ("Sales".to_owned(), 1)],
        "{}",
        server.stderr()
    );

    // Sales dropped: Support takes index 0, and the sign-in does not land on it.
    reload(&server, &scratch, &(server_section(25000) + &support), 2);
    let (signed_in, queues) = routing_view(api, &admin, uri);
    assert_eq!(signed_in, serde_json::json!([]));
    assert_eq!(queues, [("Support".to_owned(), 0)]);

    // Sales back: its stored sign-in (kept while the group was retired) routes again.
    reload(
        &server,
        &scratch,
        &(server_section(25000) + &support + &sales),
        3,
    );
    let (signed_in, queues) = routing_view(api, &admin, uri);
    assert_eq!(signed_in, signed_in_to_sales, "{}", server.stderr());
    assert_eq!(queues, [("Support".to_owned(), 0), ("Sales".to_owned(), 1)]);
}
