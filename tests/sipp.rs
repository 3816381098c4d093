//! SIPp plays the caller against the SIP endpoint, started in-process on 127.0.0.1:0 with a
//! small test controller (the real call controller does not exist yet; later the same
//! scenarios run against the `rgsd` binary).
//!
//! Skipped, with a printed reason, when `sipp` is not on PATH. Each run is bounded: one call
//! (`-m 1`), SIPp's own 30 s timeout, and a 60 s kill on our side.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rgsd::config::model::{Listen, Transport};
use rgsd::sip::RateLimit;
use rgsd::sip::{Endpoint, EndpointConfig, RouteDecision, RouteId};
use tokio_util::sync::CancellationToken;

const ANSWER_SDP: &[u8] =
    b"v=0\r\no=rgsd 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

fn sipp() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("sipp"))
        .find(|p| p.is_file())
}

/// The endpoint plus a controller that answers `sales`, rings `hold` forever, and records
/// every event it sees.
struct Harness {
    endpoint: Endpoint,
    events: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn user_of(uri: &str) -> &str {
    uri.split_once(':')
        .map_or(uri, |(_, rest)| rest)
        .split(['@', ';'])
        .next()
        .unwrap_or_default()
}

async fn start(trusted: &str) -> Harness {
    let config = EndpointConfig {
        listen: vec![
            Listen {
                transport: Transport::Udp,
                addr: "127.0.0.1:0".parse().expect("test harness"),
            },
            Listen {
                transport: Transport::Tcp,
                addr: "127.0.0.1:0".parse().expect("test harness"),
            },
        ],
        advertised_host: "127.0.0.1".into(),
        trusted_peers: vec![trusted.parse().expect("test harness")],
        max_calls: 10,
        rate_limit: Some(RateLimit::default()),
        dns_servers: Vec::new(),
        outbound_proxy: None,
        tls: Default::default(),
    };
    let router = Arc::new(|uri: &str, _to: &str| match user_of(uri) {
        "sales" | "hold" => RouteDecision::Accept(RouteId(0)),
        "closed" => RouteDecision::Inactive,
        _ => RouteDecision::NotFound,
    });
    let shutdown = CancellationToken::new();
    let (endpoint, mut calls) = Endpoint::bind(config, router, shutdown.clone())
        .await
        .expect("test harness");
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    tokio::spawn(async move {
        while let Some(mut incoming) = calls.recv().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let record = |e: &str| seen.lock().expect("test harness").push(e.to_owned());
                record("incoming");
                incoming.ring(180, None).expect("test harness");
                if user_of(&incoming.info().request_uri) == "hold" {
                    while let Some(event) = incoming.next_event().await {
                        record(&format!("{event:?}"));
                    }
                    return;
                }
                let mut call = incoming
                    .answer(Bytes::from_static(ANSWER_SDP))
                    .expect("test harness");
                while let Some(event) = call.next_event().await {
                    let terminal = event.is_terminal();
                    record(&format!("{event:?}"));
                    if terminal {
                        break;
                    }
                }
            });
        }
    });
    Harness {
        endpoint,
        events,
        shutdown,
    }
}

struct SippRun {
    status: Option<i32>,
    errors: String,
    messages: String,
}

async fn run_sipp(
    sipp: &Path,
    scenario: &str,
    target: SocketAddr,
    tcp: bool,
    service: &str,
) -> SippRun {
    let dir = tempfile::tempdir().expect("test harness");
    let errors = dir.path().join("errors.log");
    let messages = dir.path().join("messages.log");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let mut child = tokio::process::Command::new(sipp)
        .arg(target.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", service, "-i", "127.0.0.1", "-m", "1"])
        .args(["-t", if tcp { "t1" } else { "u1" }])
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .args(["-trace_msg", "-message_file"])
        .arg(&messages)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp");
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.expect("test harness").code(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    SippRun {
        status,
        errors: std::fs::read_to_string(&errors).unwrap_or_default(),
        messages: std::fs::read_to_string(&messages).unwrap_or_default(),
    }
}

impl SippRun {
    #[track_caller]
    fn assert_success(&self, what: &str) {
        assert_eq!(
            self.status,
            Some(0),
            "{what}: sipp failed (exit {:?})\n--- error log ---\n{}\n--- message log ---\n{}",
            self.status,
            self.errors,
            self.messages
        );
    }
}

macro_rules! require_sipp {
    () => {
        match sipp() {
            Some(path) => path,
            None => {
                eprintln!("skipping: sipp not on PATH");
                return;
            }
        }
    };
}

async fn wait_for_event(h: &Harness, needle: &str) -> Vec<String> {
    for _ in 0..100 {
        let events = h.events.lock().expect("test harness").clone();
        if events.iter().any(|e| e.starts_with(needle)) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.events.lock().expect("test harness").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_over_udp_and_tcp() {
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let udp = h.endpoint.local_addr(Transport::Udp).expect("test harness");
    let tcp = h.endpoint.local_addr(Transport::Tcp).expect("test harness");
    run_sipp(&sipp, "caller_options.xml", udp, false, "sales")
        .await
        .assert_success("OPTIONS over UDP");
    run_sipp(&sipp, "caller_options.xml", tcp, true, "sales")
        .await
        .assert_success("OPTIONS over TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_uri_gets_404_and_inactive_480() {
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let udp = h.endpoint.local_addr(Transport::Udp).expect("test harness");
    run_sipp(&sipp, "caller_unknown_uri.xml", udp, false, "nobody")
        .await
        .assert_success("404");
    run_sipp(&sipp, "caller_inactive.xml", udp, false, "closed")
        .await
        .assert_success("480");
    assert!(
        h.events.lock().expect("test harness").is_empty(),
        "nothing handed up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_source_gets_403() {
    let sipp = require_sipp!();
    // Only 10/8 is trusted, so SIPp on 127.0.0.1 is not.
    let h = start("10.0.0.0/8").await;
    let udp = h.endpoint.local_addr(Transport::Udp).expect("test harness");
    run_sipp(&sipp, "caller_untrusted.xml", udp, false, "sales")
        .await
        .assert_success("403");
    assert!(
        h.events.lock().expect("test harness").is_empty(),
        "never handed up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_answer_ack_bye_over_udp_and_tcp() {
    let sipp = require_sipp!();
    for tcp in [false, true] {
        let h = start("127.0.0.0/8").await;
        let target = h
            .endpoint
            .local_addr(if tcp { Transport::Tcp } else { Transport::Udp })
            .expect("test harness");
        run_sipp(&sipp, "caller_call_bye.xml", target, tcp, "sales")
            .await
            .assert_success(if tcp {
                "call over TCP"
            } else {
                "call over UDP"
            });
        let events = wait_for_event(&h, "Bye").await;
        assert_eq!(events, ["incoming", "Confirmed { sdp: None }", "Bye"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_gets_487() {
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let udp = h.endpoint.local_addr(Transport::Udp).expect("test harness");
    run_sipp(&sipp, "caller_cancel.xml", udp, false, "hold")
        .await
        .assert_success("CANCEL");
    let events = wait_for_event(&h, "Cancelled").await;
    assert_eq!(events, ["incoming", "Cancelled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_is_retransmitted_until_the_withheld_ack() {
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let udp = h.endpoint.local_addr(Transport::Udp).expect("test harness");
    let run = run_sipp(&sipp, "caller_ack_withheld.xml", udp, false, "sales").await;
    run.assert_success("withheld ACK");
    // SIPp logs every datagram it receives, duplicates included.
    let oks = run
        .messages
        .split("message received")
        .filter(|m| m.contains("SIP/2.0 200 OK") && m.contains("CSeq: 1 INVITE"))
        .count();
    assert!(
        (3..=4).contains(&oks),
        "expected the 200 at 0, 0.5 and 1.5 s before the ACK at 2.2 s, got {oks}\n{}",
        run.messages
    );
    let events = wait_for_event(&h, "Bye").await;
    assert_eq!(events, ["incoming", "Confirmed { sdp: None }", "Bye"]);
}

/// Starts SIPp as an agent (UAS) on a free loopback UDP port; returns the child and the port.
/// The port is found by binding and releasing it; INVITE retransmission (timer A) covers the
/// moment SIPp needs to bind.
fn start_agent(
    sipp: &Path,
    scenario: &str,
    dir: &Path,
) -> (tokio::process::Child, u16, PathBuf, PathBuf) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let errors = dir.join("errors.log");
    let messages = dir.join("messages.log");
    let child = tokio::process::Command::new(sipp)
        .arg("-sf")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sipp")
                .join(scenario),
        )
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-t",
            "u1",
        ])
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .args(["-trace_msg", "-message_file"])
        .arg(&messages)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp");
    (child, port, errors, messages)
}

async fn finish_agent(mut child: tokio::process::Child, errors: &Path, messages: &Path) -> SippRun {
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.expect("sipp wait").code(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    SippRun {
        status,
        errors: std::fs::read_to_string(errors).unwrap_or_default(),
        messages: std::fs::read_to_string(messages).unwrap_or_default(),
    }
}

async fn next(leg: &mut rgsd::sip::OutboundCall) -> rgsd::sip::CallEvent {
    tokio::time::timeout(Duration::from_secs(30), leg.next_event())
        .await
        .expect("event in time")
        .expect("leg event")
}

fn agent_uri(port: u16) -> rgsd::config::model::SipUri {
    rgsd::config::model::SipUri(format!("sip:agent@127.0.0.1:{port}"))
}

/// An outbound leg from the endpoint to the SIPp agent on `port`, with rgsd's SDP offer.
async fn invite_agent(h: &Harness, port: u16) -> rgsd::sip::OutboundCall {
    h.endpoint
        .invite(
            &agent_uri(port),
            &me(),
            Bytes::from_static(ANSWER_SDP),
            vec![],
        )
        .await
        .expect("invite")
}

fn me() -> rgsd::config::model::SipUri {
    rgsd::config::model::SipUri("sip:sales@127.0.0.1".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_leg_answered_then_bye() {
    use rgsd::sip::CallEvent;
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port, errors, messages) = start_agent(&sipp, "agent_answers.xml", dir.path());
    let mut leg = invite_agent(&h, port).await;
    assert!(matches!(
        next(&mut leg).await,
        CallEvent::Provisional {
            status: 180,
            sdp: None
        }
    ));
    match next(&mut leg).await {
        CallEvent::Answered { sdp } => assert!(sdp.starts_with(b"v=0")),
        other => panic!("expected Answered, got {other:?}"),
    }
    leg.bye().expect("bye");
    assert_eq!(next(&mut leg).await, CallEvent::Ended);
    finish_agent(child, &errors, &messages)
        .await
        .assert_success("agent answers");
}

/// A BYE asked for just before the endpoint shuts down still goes out and gets its answer
/// (the endpoint drains): the agent's scenario, which waits for the BYE, succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_asked_for_at_shutdown_still_reaches_the_agent() {
    use rgsd::sip::CallEvent;
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port, errors, messages) = start_agent(&sipp, "agent_answers.xml", dir.path());
    let mut leg = invite_agent(&h, port).await;
    loop {
        match next(&mut leg).await {
            CallEvent::Answered { .. } => break,
            CallEvent::Provisional { .. } => {}
            other => panic!("expected Answered, got {other:?}"),
        }
    }
    leg.bye().expect("bye");
    h.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), h.endpoint.stopped())
        .await
        .expect("the endpoint never stopped");
    finish_agent(child, &errors, &messages)
        .await
        .assert_success("agent gets the BYE sent at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_leg_busy_fails_with_486() {
    use rgsd::sip::{CallEvent, LegFailure};
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port, errors, messages) = start_agent(&sipp, "agent_busy.xml", dir.path());
    let mut leg = invite_agent(&h, port).await;
    assert_eq!(
        next(&mut leg).await,
        CallEvent::Failed(LegFailure::Status(486))
    );
    finish_agent(child, &errors, &messages)
        .await
        .assert_success("agent busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_leg_cancelled_while_ringing() {
    use rgsd::sip::{CallEvent, LegFailure};
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port, errors, messages) =
        start_agent(&sipp, "agent_rings_until_cancel.xml", dir.path());
    let mut leg = h
        .endpoint
        .invite(
            &agent_uri(port),
            &me(),
            Bytes::from_static(ANSWER_SDP),
            vec![("X-Rgsd-Workflow".into(), "sales".into())],
        )
        .await
        .expect("invite");
    assert!(matches!(
        next(&mut leg).await,
        CallEvent::Provisional { status: 180, .. }
    ));
    leg.cancel().expect("cancel");
    assert_eq!(
        next(&mut leg).await,
        CallEvent::Failed(LegFailure::Status(487))
    );
    let run = finish_agent(child, &errors, &messages).await;
    run.assert_success("agent cancelled");
    assert!(
        run.messages.contains("X-Rgsd-Workflow: sales"),
        "extra header sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_through_a_401_digest_challenge() {
    use rgsd::config::model::{Registration, Secret, SipUri};
    use rgsd::sip::{Next, Registrar, RegistrationState};
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port, errors, messages) = start_agent(&sipp, "registrar_digest.xml", dir.path());
    let registrar_uri = SipUri(format!("sip:127.0.0.1:{port}"));
    let mut registrar = Registrar::new(
        Registration {
            aor: SipUri("sip:sales@127.0.0.1".into()),
            registrar: registrar_uri.clone(),
            username: "sales".into(),
            password: Secret::new("s3cret".into()),
            expires: Duration::from_secs(600),
        },
        "127.0.0.1",
    );
    let contact = h.endpoint.contact(Transport::Udp);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = h
            .endpoint
            .request(registrar.request(&contact), &registrar_uri)
            .await
            .expect("registrar answers");
        statuses.push(response.status);
        if registrar.on_response(&response) != Next::SendNow {
            break;
        }
    }
    let run = finish_agent(child, &errors, &messages).await;
    assert_eq!(statuses, [401, 200], "{}", run.messages);
    assert_eq!(
        registrar.state(),
        &RegistrationState::Registered {
            expires: Duration::from_secs(300)
        }
    );
    run.assert_success("registrar");
}

/// Cancelling at once, before the agent's 180 can arrive: the CANCEL waits for a provisional
/// (RFC 3261 §9.1) and then goes out, and the leg still fails with 487.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_leg_cancelled_before_any_provisional() {
    use rgsd::sip::{CallEvent, LegFailure};
    let sipp = require_sipp!();
    let h = start("127.0.0.0/8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port, errors, messages) =
        start_agent(&sipp, "agent_rings_until_cancel.xml", dir.path());
    let mut leg = invite_agent(&h, port).await;
    leg.cancel().expect("cancel");
    let mut last = next(&mut leg).await;
    while let CallEvent::Provisional { .. } = last {
        last = next(&mut leg).await;
    }
    assert_eq!(last, CallEvent::Failed(LegFailure::Status(487)));
    finish_agent(child, &errors, &messages)
        .await
        .assert_success("agent cancelled early");
}
