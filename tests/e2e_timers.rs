//! The call controller in-process, on real loopback sockets, with tokio's clock paused: alert
//! times, queue time-outs and overflow are crossed in virtual time, so these tests take
//! milliseconds. The peers (caller, agents, voicemail) are small async SIP UAs in the test.
// Test harness: a failed unwrap is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rgsd::acd::WorkflowRouter;
use rgsd::acd::agents::AgentState;
use rgsd::acd::agents::CallKey;
use rgsd::acd::runtime::{Acd, Change, PromptCache};
use rgsd::acd::{Controller, Services};
use rgsd::clock::SystemClock;
use rgsd::config::model::{Config, SipUri};
use rgsd::config::{LoadOptions, load};
use rgsd::media::PortPool;
use rgsd::media::{LegOptions, MediaEngine};
use rgsd::sip::{Endpoint, EndpointConfig};
use rgsd::store::{CallOutcome, CallRecord, RecordWriter, Store, WriterOptions};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Rgsd {
    sip: SocketAddr,
    shutdown: CancellationToken,
    /// The runtime and its one reload, as the daemon builds them.
    acd: Arc<Acd>,
    /// What the controller runs on: its media engine and agent table, for tests to reach.
    services: Arc<Services>,
    store: Store,
    records: RecordWriter,
    rtp: u16,
    dir: tempfile::TempDir,
}

/// The configuration file: a TOML `[server]` with `rtp` ports, then `rest`.
fn config_text(rtp: u16, rest: &str) -> String {
    format!(
        "[server]\nsip_listen = [\"udp:127.0.0.1:0\"]\nadvertised_host = \"127.0.0.1\"\nrtp_ports = [{rtp}, {}]\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://rgsd.db\"\ntrusted_peers = [\"127.0.0.0/8\"]\n{rest}",
        rtp + 99
    )
}

/// Loads the file at `path` as the daemon does (a broken file fails the test).
fn load_file(path: &std::path::Path) -> Config {
    load(path, &LoadOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"))
        .config
}

impl Rgsd {
    /// What the daemon's SIGHUP does: load the new file, then the same `Acd::reload`.
    async fn reload(&self, rest: &str) {
        let path = self.dir.path().join("rgsd.toml");
        std::fs::write(&path, config_text(self.rtp, rest)).unwrap();
        self.acd
            .reload(Change::Config(Box::new(load_file(&path))))
            .await
            .unwrap();
    }

    /// The record of the call `call_id`, after the writer has flushed (the clock resumed: the
    /// database's pool times out in virtual time otherwise).
    async fn record(&self, call_id: &str) -> CallRecord {
        self.records_of(&[call_id]).await.remove(0)
    }

    /// The records of these calls, in that order, once every record is written (time resumes).
    async fn records_of(&self, call_ids: &[&str]) -> Vec<CallRecord> {
        tokio::time::resume();
        self.records.shutdown(Duration::from_secs(5)).await;
        let (from, to) = (
            chrono::DateTime::UNIX_EPOCH,
            rgsd::clock::Clock::now_utc(&SystemClock) + chrono::Days::new(1),
        );
        let records = self.store.call_records_between(from, to).await.unwrap();
        call_ids
            .iter()
            .map(|id| {
                records
                    .iter()
                    .find(|r| r.call_id == *id)
                    .cloned()
                    .unwrap_or_else(|| panic!("no record for {id}"))
            })
            .collect()
    }
}

impl Drop for Rgsd {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the endpoint and the controller on `config` (a TOML `[server]` is prepended), with
/// the runtime the daemon builds ([`Acd::start`]), without a database behind routing: the
/// tests pause the clock, and the database's pool would time out in virtual time.
async fn start(rtp: u16, rest: &str) -> Rgsd {
    start_observed(rtp, rest, None).await
}

/// [`start`] with an observer of the calls (what the live registry would see).
async fn start_observed(
    rtp: u16,
    rest: &str,
    observer: Option<Arc<dyn rgsd::acd::CallObserver>>,
) -> Rgsd {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rgsd.toml");
    std::fs::write(&path, config_text(rtp, rest)).unwrap();
    let config = load_file(&path);
    let store = Store::connect(&config.server.database).await.unwrap();
    store.migrate().await.unwrap();
    let records = RecordWriter::spawn(store.clone(), WriterOptions::default());
    let writer = records.clone();
    let server = config.server.clone();
    let acd = Arc::new(
        Acd::start(config, None, PromptCache::At(dir.path().join("tts")))
            .await
            .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let router = Arc::new(WorkflowRouter::new(acd.runtime()));
    let (endpoint, incoming) = Endpoint::bind(
        EndpointConfig::from_server(&server),
        router,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let media = MediaEngine::new(
        PortPool::new(ip, server.rtp_ports.clone()),
        ip,
        LegOptions { rtp_timeout: None },
    );
    let sip = endpoint.local_addrs()[0].addr;
    let mut services = Services::new(
        endpoint,
        media,
        records,
        Arc::new(SystemClock),
        acd.runtime(),
    );
    if let Some(observer) = observer {
        services = services.with_observer(observer);
    }
    let services = Arc::new(services);
    let controller = Controller {
        services: Arc::clone(&services),
        stopping: CancellationToken::new(),
        calls: tokio_util::task::TaskTracker::new(),
    };
    tokio::spawn(controller.run(incoming));
    Rgsd {
        sip,
        shutdown,
        acd,
        services,
        store,
        records: writer,
        rtp,
        dir,
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A response to `req` copying its dialog headers.
fn response(req: &str, status: &str, to_tag: &str, sdp: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for l in req.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        }) {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    let to = header(req, "To").unwrap();
    if to.contains("tag=") {
        r.push_str(&format!("To: {to}\r\n"));
    } else {
        r.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    }
    r.push_str("Contact: <sip:peer@127.0.0.1>\r\n");
    match sdp {
        Some(b) => r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => r.push_str("Content-Length: 0\r\n\r\n"),
    }
    r
}

const PEER_SDP: &str = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";

/// How a peer UA treats INVITEs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// 180, then 200 with SDP.
    Answers,
    /// 180 and nothing more; CANCEL gets 200 + 487.
    Rings,
    /// As `Answers`, its 200 naming itself the session refresher (90 s); it never refreshes.
    AnswersAsRefresher,
    /// 422 with `Min-SE` to an INVITE offering a shorter Session-Expires, else as `Answers`.
    WantsAtLeast(u32),
}

/// A peer UA task; reports what it saw as ("INVITE" | "CANCEL" | "BYE" | "ACK" | "UPDATE",
/// virtual time, text). An UPDATE (a session refresh) is answered 200.
async fn peer(
    behaviour: Peer,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(String, Instant, String)>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let method = msg.split_whitespace().next().unwrap_or_default().to_owned();
            if method.starts_with("SIP/") {
                continue;
            }
            let _ = tx.send((method.clone(), Instant::now(), msg.clone()));
            let reply =
                match (method.as_str(), behaviour) {
                    ("INVITE", Peer::Answers) => {
                        let ring = response(&msg, "180 Ringing", "p1", None);
                        sock.send_to(ring.as_bytes(), from).await.unwrap();
                        Some(response(&msg, "200 OK", "p1", Some(PEER_SDP)))
                    }
                    ("INVITE", Peer::Rings) => Some(response(&msg, "180 Ringing", "p1", None)),
                    ("INVITE", Peer::AnswersAsRefresher) => {
                        Some(response(&msg, "200 OK", "p1", Some(PEER_SDP)).replacen(
                            "Contact:",
                            "Session-Expires: 90;refresher=uas\r\nRequire: timer\r\nContact:",
                            1,
                        ))
                    }
                    ("INVITE", Peer::WantsAtLeast(min)) => {
                        let offered = header(&msg, "Session-Expires")
                            .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
                        if offered.is_some_and(|o| o < min) {
                            Some(
                                response(&msg, "422 Session Interval Too Small", "p1", None)
                                    .replacen("Contact:", &format!("Min-SE: {min}\r\nContact:"), 1),
                            )
                        } else {
                            Some(response(&msg, "200 OK", "p1", Some(PEER_SDP)))
                        }
                    }
                    ("CANCEL", _) => {
                        let ok = response(&msg, "200 OK", "p1", None);
                        sock.send_to(ok.as_bytes(), from).await.unwrap();
                        let cseq = header(&msg, "CSeq").unwrap().replace("CANCEL", "INVITE");
                        let terminated = response(&msg, "487 Request Terminated", "p1", None)
                            .replace(
                                &format!("CSeq: {}", header(&msg, "CSeq").unwrap()),
                                &format!("CSeq: {cseq}"),
                            );
                        Some(terminated)
                    }
                    ("BYE" | "UPDATE", _) => Some(response(&msg, "200 OK", "p1", None)),
                    _ => None,
                };
            if let Some(r) = reply {
                sock.send_to(r.as_bytes(), from).await.unwrap();
            }
        }
    });
    (addr, rx)
}

const CALLER_SDP: &str = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";

/// A caller's dialog: its socket and what in-dialog requests need.
struct Caller {
    sock: UdpSocket,
    rgsd: SocketAddr,
    user: String,
    call_id: String,
    to: String,
    /// The final response to the INVITE.
    final_response: String,
}

impl Caller {
    fn request(&self, method: &str, to: &str, cseq: u32) -> String {
        let port = self.sock.local_addr().unwrap().port();
        format!(
            "{method} sip:{}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n",
            self.user,
            fastrand::u64(..),
            self.call_id
        )
    }

    /// Sends BYE (the caller hangs up).
    async fn bye(&self) {
        let bye = self.request("BYE", &self.to, 2) + "Content-Length: 0\r\n\r\n";
        self.sock.send_to(bye.as_bytes(), self.rgsd).await.unwrap();
    }
}

/// A caller: INVITE with `sdp` (none for a late offer), waits for the final response, ACKs a
/// 200 (with `ack_sdp` when the 200 carried rgsd's offer).
async fn dial(rgsd: SocketAddr, user: &str, sdp: Option<&str>, ack_sdp: Option<&str>) -> Caller {
    dial_with(rgsd, user, sdp, ack_sdp, "").await
}

/// [`dial`] with `extra` header lines (each ending in CRLF) in the INVITE.
async fn dial_with(
    rgsd: SocketAddr,
    user: &str,
    sdp: Option<&str>,
    ack_sdp: Option<&str>,
    extra: &str,
) -> Caller {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut caller = Caller {
        sock,
        rgsd,
        user: user.to_owned(),
        call_id: format!("t-{}", fastrand::u64(..)),
        to: format!("<sip:{user}@127.0.0.1>"),
        final_response: String::new(),
    };
    let body = |sdp: Option<&str>| match sdp {
        Some(b) => format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "Content-Length: 0\r\n\r\n".to_owned(),
    };
    let invite = caller.request("INVITE", &caller.to, 1) + extra + &body(sdp);
    caller.sock.send_to(invite.as_bytes(), rgsd).await.unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, _) = caller.sock.recv_from(&mut buf).await.unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("SIP/2.0 1") {
            continue;
        }
        if msg.starts_with("SIP/2.0 200") {
            caller.to = header(&msg, "To").unwrap().to_owned();
            let ack = caller.request("ACK", &caller.to, 1) + &body(ack_sdp);
            caller.sock.send_to(ack.as_bytes(), rgsd).await.unwrap();
        }
        caller.final_response = msg;
        return caller;
    }
}

/// A caller with an ordinary PCMU offer, answered 200 by rgsd.
async fn call(rgsd: SocketAddr, user: &str) -> UdpSocket {
    let caller = dial(rgsd, user, Some(CALLER_SDP), None).await;
    assert!(
        caller.final_response.starts_with("SIP/2.0 200"),
        "{}",
        caller.final_response
    );
    caller.sock
}

/// Waits for a BYE on the caller's socket; returns when it came.
async fn caller_gets_bye(sock: &UdpSocket) -> Instant {
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await.unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("BYE ") {
            let ok = response(&msg, "200 OK", "c1", None);
            sock.send_to(ok.as_bytes(), from).await.unwrap();
            return Instant::now();
        }
    }
}

async fn next_of(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant, String)>,
    method: &str,
) -> Instant {
    next_msg(rx, method).await.0
}

/// The next `method` request a peer saw: when, and its text.
async fn next_msg(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant, String)>,
    method: &str,
) -> (Instant, String) {
    let limit = Duration::from_secs(600);
    tokio::time::timeout(limit, async {
        loop {
            let (m, at, text) = rx.recv().await.unwrap();
            if m == method {
                return (at, text);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {method} within {limit:?} of virtual time"))
}

fn group(name: &str, routing: &str, alert: u32, agents: &[SocketAddr]) -> String {
    let list: Vec<String> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| format!("\"sip:a{i}@{a}\""))
        .collect();
    format!(
        "\n[[agent_group]]\nname = \"{name}\"\nrouting = \"{routing}\"\nalert_time = \"{alert}s\"\nagents = [{}]\n",
        list.join(", ")
    )
}

const WORKFLOW: &str = "\n[[workflow]]\nname = \"Sales line\"\nkind = \"hunt_group\"\nuri = \"sip:sales@127.0.0.1\"\nqueue = \"Sales\"\n";

#[tokio::test]
async fn alert_time_out_moves_the_call_to_the_next_agent() {
    let (a0, mut seen0) = peer(Peer::Rings).await;
    let (a1, mut seen1) = peer(Peer::Answers).await;
    let rgsd = start(
        21200,
        &(group("Sales agents", "serial", 12, &[a0, a1])
            + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n"
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let _caller = call(rgsd.sip, "sales").await;
    let rang = next_of(&mut seen0, "INVITE").await;
    let cancelled = next_of(&mut seen0, "CANCEL").await;
    let (offered, invite) = next_msg(&mut seen1, "INVITE").await;
    // Call context: the workflow, the queue, the caller and the wait so far (12 s).
    assert!(invite.contains("X-RGS-Workflow: Sales line"), "{invite}");
    assert!(invite.contains("X-RGS-Queue: Sales"), "{invite}");
    assert!(
        invite.contains("X-RGS-Caller: <sip:caller@127.0.0.1>;tag=c1"),
        "{invite}"
    );
    assert!(
        header(&invite, "From")
            .unwrap()
            .contains("sip:sales@127.0.0.1"),
        "{invite}"
    );
    next_of(&mut seen1, "ACK").await;
    assert!(
        cancelled - rang >= Duration::from_secs(12),
        "{:?}",
        cancelled - rang
    );
    assert!(
        cancelled - rang < Duration::from_secs(13),
        "{:?}",
        cancelled - rang
    );
    assert!(offered >= cancelled);
}

#[tokio::test]
async fn queue_time_out_runs_its_action() {
    let (a0, mut seen0) = peer(Peer::Rings).await;
    let (vm, mut seen_vm) = peer(Peer::Answers).await;
    let rgsd = start(
        21400,
        &(group("Sales agents", "serial", 30, &[a0])
            + &format!(
                "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\ntimeout = {{ after = \"20s\", action = {{ voicemail = \"sip:vm@{vm}\" }} }}\n"
            )
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let start = Instant::now();
    let _caller = call(rgsd.sip, "sales").await;
    next_of(&mut seen0, "INVITE").await;
    let cancelled = next_of(&mut seen0, "CANCEL").await;
    let forwarded = next_of(&mut seen_vm, "INVITE").await;
    let waited = forwarded - start;
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(21),
        "{waited:?}"
    );
    assert!(cancelled <= forwarded);
}

#[tokio::test]
async fn overflow_on_entry_runs_the_overflow_action() {
    let (a0, mut seen0) = peer(Peer::Rings).await;
    let rgsd = start(
        21600,
        &(group("Sales agents", "serial", 30, &[a0])
            + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\noverflow = { max_calls = 1, candidate = \"newest\", action = \"disconnect\" }\n"
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let first = call(rgsd.sip, "sales").await;
    next_of(&mut seen0, "INVITE").await;
    let t = Instant::now();
    let second = call(rgsd.sip, "sales").await;
    let bye = caller_gets_bye(&second).await;
    assert!(
        bye - t < Duration::from_secs(1),
        "overflowed caller waited {:?}",
        bye - t
    );
    // The first caller still waits: no BYE for it.
    let mut buf = [0u8; 2048];
    let quiet = tokio::time::timeout(Duration::from_secs(5), first.recv_from(&mut buf)).await;
    assert!(quiet.is_err() || !String::from_utf8_lossy(&buf).starts_with("BYE"));
}

#[tokio::test]
async fn call_context_false_sends_no_context_headers() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        21800,
        &(group("Sales agents", "serial", 12, &[a0])
            + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n"
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let _caller = call(rgsd.sip, "sales").await;
    let (_, invite) = next_msg(&mut seen0, "INVITE").await;
    assert!(invite.contains("X-RGS-Workflow"), "{invite}");
    drop(rgsd);
    // SQLite's pool times out under a paused clock: start the second server in real time.
    tokio::time::resume();

    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        21900,
        &(String::from("call_context = false\n")
            + &group("Sales agents", "serial", 12, &[a0])
            + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n"
            + WORKFLOW),
    )
    .await;
    let _caller = call(rgsd.sip, "sales").await;
    let (_, invite) = next_msg(&mut seen0, "INVITE").await;
    assert!(!invite.contains("X-RGS-"), "{invite}");
}

const QUEUE: &str = "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n";

#[tokio::test]
async fn no_common_codec_is_refused_with_488_and_a_late_offer_is_answered_with_ours() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        22000,
        &(group("Sales agents", "serial", 12, &[a0]) + QUEUE + WORKFLOW),
    )
    .await;
    let g729 = CALLER_SDP.replace("RTP/AVP 0", "RTP/AVP 18");
    let refused = dial(rgsd.sip, "sales", Some(&g729), None).await;
    assert!(
        refused.final_response.starts_with("SIP/2.0 488"),
        "{}",
        refused.final_response
    );
    // No SDP in the INVITE: rgsd's 200 carries its offer; the ACK carries the answer.
    let late = dial(rgsd.sip, "sales", None, Some(CALLER_SDP)).await;
    assert!(
        late.final_response.starts_with("SIP/2.0 200"),
        "{}",
        late.final_response
    );
    assert!(
        late.final_response.contains("m=audio "),
        "{}",
        late.final_response
    );
    // The workflow runs: the agent is offered the call.
    next_of(&mut seen0, "INVITE").await;
}

#[tokio::test]
async fn caller_hanging_up_while_agents_ring_cancels_them() {
    let (a0, mut seen0) = peer(Peer::Rings).await;
    let (a1, mut seen1) = peer(Peer::Rings).await;
    let rgsd = start(
        22200,
        &(group("Sales agents", "parallel", 20, &[a0, a1]) + QUEUE + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let caller = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    next_of(&mut seen0, "INVITE").await;
    next_of(&mut seen1, "INVITE").await;
    let hung_up = Instant::now();
    caller.bye().await;
    let c0 = next_of(&mut seen0, "CANCEL").await;
    let c1 = next_of(&mut seen1, "CANCEL").await;
    // At once, not at the end of the alert time.
    assert!(
        c0.max(c1) - hung_up < Duration::from_secs(1),
        "{:?}",
        c0.max(c1) - hung_up
    );
}

/// A reload that adds a group with a free agent to the queue reaches the call already waiting
/// there: it is offered to the new agent at once, and its queue time-out still runs from its
/// entry (not from the reload).
#[tokio::test]
async fn reload_offers_a_waiting_call_to_the_new_agents_of_its_queue() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let (a1, mut seen1) = peer(Peer::Rings).await;
    let (vm, mut seen_vm) = peer(Peer::Answers).await;
    let queue = |groups: &str| {
        format!(
            "\n[[queue]]\nname = \"Sales\"\nagent_groups = [{groups}]\ntimeout = {{ after = \"20s\", action = {{ voicemail = \"sip:vm@{vm}\" }} }}\n"
        )
    };
    let before = group("Sales agents", "serial", 30, &[a0]) + &queue("\"Sales agents\"") + WORKFLOW;
    let rgsd = start(25000, &before).await;
    // The only agent is busy (on another call): the caller waits.
    let a0_id = rgsd
        .acd
        .agents()
        .id(&SipUri(format!("sip:a0@{a0}")))
        .unwrap();
    assert!(rgsd.acd.agents().claim(a0_id, CallKey(u32::MAX)));
    tokio::time::pause();
    let entered = Instant::now();
    let _caller = call(rgsd.sip, "sales").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        seen0.try_recv().is_err(),
        "the busy agent was offered the call"
    );
    // Reload: a second group with a free agent, declared after the first (so the old group
    // keeps its id and only the queue's list of groups changes) and a new queue before
    // "Sales" (so its index changes).
    let after = group("Sales agents", "serial", 30, &[a0])
        + &group("Sales backup", "serial", 30, &[a1])
        + "\n[[queue]]\nname = \"Support\"\nagent_groups = [\"Sales backup\"]\n"
        + &queue("\"Sales agents\", \"Sales backup\"")
        + WORKFLOW;
    let reloaded = Instant::now();
    rgsd.reload(&after).await;
    let (offered, invite) = next_msg(&mut seen1, "INVITE").await;
    assert!(
        invite.starts_with(&format!("INVITE sip:a0@{a1} ")),
        "{invite}"
    );
    assert!(
        offered - reloaded < Duration::from_secs(1),
        "offered {:?} after the reload",
        offered - reloaded
    );
    // The time-out counts from the queue entry: 20 s after it, not after the reload.
    let cancelled = next_of(&mut seen1, "CANCEL").await;
    let forwarded = next_of(&mut seen_vm, "INVITE").await;
    let waited = forwarded - entered;
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(21),
        "{waited:?}"
    );
    assert!(cancelled <= forwarded);
    assert!(
        seen0.try_recv().is_err(),
        "the busy agent was offered the call"
    );
}

/// Reload window (b): a call offered one agent before a reload and another after it. When ids
/// were indexes into a table each reload replaced, the agent added first by the new file took
/// the id the first agent had in the old table, and the call's two offers collided on it: the
/// record named the second agent for both. Ids are stable now: each offer keeps its agent.
#[tokio::test]
async fn a_call_offered_agents_across_a_reload_keeps_each_offers_agent() {
    let (first, mut seen_first) = peer(Peer::Rings).await;
    let (second, mut seen_second) = peer(Peer::Answers).await;
    let sales = |agents: &[String]| {
        format!(
            "\n[[agent_group]]\nname = \"Sales agents\"\nrouting = \"serial\"\nalert_time = \"10s\"\nagents = [{}]\n",
            agents.join(", ")
        )
    };
    let first_uri = format!("sip:first@{first}");
    let second_uri = format!("sip:second@{second}");
    let rgsd = start(
        25400,
        &(sales(&[format!("\"{first_uri}\"")]) + QUEUE + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let caller = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    assert!(caller.final_response.starts_with("SIP/2.0 200"));
    next_of(&mut seen_first, "INVITE").await;
    // While the first agent rings, the file puts a new agent ahead of it.
    rgsd.reload(
        &(sales(&[format!("\"{second_uri}\""), format!("\"{first_uri}\"")]) + QUEUE + WORKFLOW),
    )
    .await;
    next_of(&mut seen_first, "CANCEL").await;
    let (_, invite) = next_msg(&mut seen_second, "INVITE").await;
    assert!(
        invite.starts_with(&format!("INVITE {second_uri} ")),
        "{invite}"
    );
    next_of(&mut seen_second, "ACK").await;
    caller.bye().await;
    next_of(&mut seen_second, "BYE").await;
    let record = rgsd.record(&caller.call_id).await;
    let offered: Vec<&str> = record.offers.iter().map(|o| o.agent.as_str()).collect();
    assert_eq!(offered, vec![first_uri.as_str(), second_uri.as_str()]);
    assert_eq!(
        record.agent.as_ref().map(SipUri::as_str),
        Some(second_uri.as_str())
    );
    assert_eq!(
        record.offers[0].agent_group.as_deref(),
        Some("Sales agents")
    );
    assert_eq!(rgsd.acd.agents().refused_releases(), 0, "no second writer");
}

/// The agent answers, but the media leg placed for it died before the bridge: rgsd ends the
/// call (BYE to the caller and the agent), the agent is free again (not left busy), and the
/// record's outcome is `failed`.
#[tokio::test]
async fn a_dead_media_leg_before_the_bridge_ends_the_call_as_failed() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        22400,
        &(group("Sales agents", "serial", 20, &[a0]) + QUEUE + WORKFLOW),
    )
    .await;
    let agent = rgsd
        .services
        .agents
        .id(&SipUri(format!("sip:a0@{a0}")))
        .unwrap();
    tokio::time::pause();
    // The agent's leg is the next one rgsd offers.
    rgsd.services.media.end_next_offered_leg_task();
    let caller = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    assert!(
        caller.final_response.starts_with("SIP/2.0 200"),
        "{}",
        caller.final_response
    );
    let answered = next_of(&mut seen0, "ACK").await;
    let caller_bye = tokio::time::timeout(Duration::from_secs(600), caller_gets_bye(&caller.sock))
        .await
        .expect("the caller got no BYE within 600 s of virtual time");
    let agent_bye = next_of(&mut seen0, "BYE").await;
    // At once, not after some time-out.
    assert!(
        caller_bye.max(agent_bye) - answered < Duration::from_secs(1),
        "{:?}",
        caller_bye.max(agent_bye) - answered
    );
    assert_eq!(
        rgsd.services.agents.state(agent),
        Some(AgentState::Idle),
        "the agent is left in a call that ended"
    );
    assert!(rgsd.services.agents.is_free(agent));
    let record = rgsd.record(&caller.call_id).await;
    assert_eq!(record.outcome, CallOutcome::Failed, "{record:?}");
}

// ---- RFC 4028 session timers ----------------------------------------------------------------

/// The caller's socket after the call is set up: answers rgsd's refreshes (UPDATE 200; a
/// re-INVITE 200 with its SDP, then waits for the ACK) and reports each as (method, when, text);
/// a BYE is answered and reported, and ends the task.
fn caller_answers_refreshes(caller: Caller) -> mpsc::UnboundedReceiver<(String, Instant, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok((n, from)) = caller.sock.recv_from(&mut buf).await {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let method = msg.split_whitespace().next().unwrap_or_default().to_owned();
            if method.starts_with("SIP/") {
                continue;
            }
            let _ = tx.send((method.clone(), Instant::now(), msg.clone()));
            let reply = match method.as_str() {
                "INVITE" => response(&msg, "200 OK", "c1", Some(CALLER_SDP)),
                "UPDATE" | "BYE" => response(&msg, "200 OK", "c1", None),
                _ => continue,
            };
            caller.sock.send_to(reply.as_bytes(), from).await.unwrap();
            if method == "BYE" {
                return;
            }
        }
    });
    rx
}

/// `o=` of an SDP body in a SIP message.
fn origin(msg: &str) -> Option<&str> {
    msg.lines().find(|l| l.starts_with("o="))
}

fn secs_between(from: Instant, to: Instant) -> f64 {
    (to - from).as_secs_f64()
}

/// (a) A caller that names rgsd the refresher with 90 s gets a refresh every 45 s: an UPDATE
/// without SDP when its Allow lists UPDATE, else a re-INVITE with rgsd's SDP unchanged (same
/// `o=` version).
#[tokio::test]
async fn rgsd_refreshes_a_callers_session_at_half_the_interval() {
    for (rtp, allow, method) in [
        (26000, "INVITE, ACK, CANCEL, BYE, UPDATE", "UPDATE"),
        (26200, "INVITE, ACK, CANCEL, BYE", "INVITE"),
    ] {
        let (a0, _seen0) = peer(Peer::Answers).await;
        let rgsd = start(
            rtp,
            &(group("Sales agents", "serial", 20, &[a0]) + QUEUE + WORKFLOW),
        )
        .await;
        tokio::time::pause();
        let caller = dial_with(
            rgsd.sip,
            "sales",
            Some(CALLER_SDP),
            None,
            &format!("Supported: timer\r\nSession-Expires: 90;refresher=uas\r\nAllow: {allow}\r\n"),
        )
        .await;
        let answered = Instant::now();
        let ok = caller.final_response.clone();
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        assert_eq!(
            header(&ok, "Session-Expires"),
            Some("90;refresher=uas"),
            "{ok}"
        );
        assert_eq!(header(&ok, "Require"), Some("timer"), "{ok}");
        let mut seen = caller_answers_refreshes(caller);
        let (first, refresh) = next_msg(&mut seen, method).await;
        assert!(
            (45.0..46.0).contains(&secs_between(answered, first)),
            "{method} {:?} after the answer",
            first - answered
        );
        assert!(
            header(&refresh, "Session-Expires").is_some_and(|v| v.starts_with("90;refresher=uac")),
            "{refresh}"
        );
        if method == "UPDATE" {
            assert!(
                refresh.ends_with("\r\n\r\n"),
                "an UPDATE refresh has no SDP: {refresh}"
            );
        } else {
            assert_eq!(origin(&refresh), origin(&ok), "{refresh}");
            next_of(&mut seen, "ACK").await;
        }
        let (second, _) = next_msg(&mut seen, method).await;
        assert!(
            (45.0..46.0).contains(&secs_between(first, second)),
            "second {method} {:?} after the first",
            second - first
        );
        drop(rgsd);
        // SQLite's pool times out under a paused clock: the next server starts in real time.
        tokio::time::resume();
    }
}

/// (b) A caller that is the refresher (90 s) refreshes once with UPDATE, which restarts the
/// timer, then stops: rgsd sends BYE at 90 − min(32, 90/3) = 60 s after that refresh, to the
/// caller and the agent, and the record's outcome is `session_expired`.
#[tokio::test]
async fn a_caller_that_stops_refreshing_is_hung_up_on_and_the_record_says_so() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        26400,
        &(group("Sales agents", "serial", 20, &[a0]) + QUEUE + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let caller = dial_with(
        rgsd.sip,
        "sales",
        Some(CALLER_SDP),
        None,
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    )
    .await;
    let ok = caller.final_response.clone();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(
        header(&ok, "Session-Expires"),
        Some("90;refresher=uac"),
        "{ok}"
    );
    next_of(&mut seen0, "ACK").await;
    // The caller refreshes once, 30 s in.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let refreshed = Instant::now();
    let update = caller.request("UPDATE", &caller.to, 2)
        + "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\nContent-Length: 0\r\n\r\n";
    caller
        .sock
        .send_to(update.as_bytes(), caller.rgsd)
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let (n, _) = caller.sock.recv_from(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert_eq!(
        header(&answer, "Session-Expires"),
        Some("90;refresher=uac"),
        "{answer}"
    );
    // Then nothing: BYE 60 s after the refresh, not 60 s after the answer.
    let call_id = caller.call_id.clone();
    let mut seen = caller_answers_refreshes(caller);
    let (bye, _) = next_msg(&mut seen, "BYE").await;
    let waited = secs_between(refreshed, bye);
    assert!(
        (60.0..61.0).contains(&waited),
        "BYE {waited} s after the refresh"
    );
    let agent_bye = next_of(&mut seen0, "BYE").await;
    assert!(
        secs_between(bye, agent_bye) < 1.0,
        "the agent's BYE came late"
    );
    let record = rgsd.record(&call_id).await;
    assert_eq!(record.outcome, CallOutcome::SessionExpired, "{record:?}");
    assert!(record.agent.is_some(), "{record:?}");
}

/// (c) An agent leg: rgsd's INVITE offers session timers with itself as refresher
/// (`session_expires`), the agent's 200 has no Session-Expires (no timer support), so rgsd
/// refreshes it every 45 s; the agent's 200 has no Allow, so with re-INVITEs carrying the
/// same SDP version.
#[tokio::test]
async fn rgsd_offers_session_timers_to_agents_and_refreshes_them() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        26600,
        &(String::from("session_expires = \"90s\"\nmin_se = \"90s\"\n")
            + &group("Sales agents", "serial", 20, &[a0])
            + QUEUE
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let _caller = call(rgsd.sip, "sales").await;
    let (_, invite) = next_msg(&mut seen0, "INVITE").await;
    assert_eq!(
        header(&invite, "Session-Expires"),
        Some("90;refresher=uac"),
        "{invite}"
    );
    assert_eq!(header(&invite, "Min-SE"), Some("90"), "{invite}");
    assert!(
        header(&invite, "Supported").is_some_and(|v| v.contains("timer")),
        "{invite}"
    );
    let answered = next_of(&mut seen0, "ACK").await;
    let (first, refresh) = next_msg(&mut seen0, "INVITE").await;
    assert!(
        (45.0..46.0).contains(&secs_between(answered, first)),
        "refresh {:?} after the answer",
        first - answered
    );
    assert!(refresh.contains(";tag=p1"), "in the dialog: {refresh}");
    assert_eq!(
        origin(&refresh),
        origin(&invite),
        "same SDP version: {refresh}"
    );
    assert_eq!(
        header(&refresh, "Session-Expires"),
        Some("90;refresher=uac"),
        "{refresh}"
    );
    next_of(&mut seen0, "ACK").await;
    let (second, _) = next_msg(&mut seen0, "INVITE").await;
    assert!(
        (45.0..46.0).contains(&secs_between(first, second)),
        "second refresh {:?} after the first",
        second - first
    );
}

/// An agent whose 200 makes it the refresher (90 s) and then never refreshes: rgsd sends BYE to
/// the agent 60 s after the answer, and to the caller, and the record says `session_expired`.
#[tokio::test]
async fn an_agent_that_stops_refreshing_ends_the_call_as_session_expired() {
    let (a0, mut seen0) = peer(Peer::AnswersAsRefresher).await;
    let rgsd = start(
        26800,
        &(group("Sales agents", "serial", 20, &[a0]) + QUEUE + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let caller = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    assert!(caller.final_response.starts_with("SIP/2.0 200"));
    let answered = next_of(&mut seen0, "ACK").await;
    let agent_bye = next_of(&mut seen0, "BYE").await;
    let waited = secs_between(answered, agent_bye);
    assert!(
        (60.0..61.0).contains(&waited),
        "agent's BYE {waited} s after the answer"
    );
    let caller_bye = tokio::time::timeout(Duration::from_secs(5), caller_gets_bye(&caller.sock))
        .await
        .expect("the caller got no BYE");
    assert!(secs_between(agent_bye, caller_bye) < 1.0);
    let record = rgsd.record(&caller.call_id).await;
    assert_eq!(record.outcome, CallOutcome::SessionExpired, "{record:?}");
}

/// An agent that wants longer sessions answers rgsd's INVITE 422 with `Min-SE: 1800`: rgsd
/// sends the INVITE again at once (new CSeq, same Call-ID and From tag) offering 1800 s, and
/// the call is answered.
#[tokio::test]
async fn a_422_from_an_agent_is_retried_once_with_its_min_se() {
    let (a0, mut seen0) = peer(Peer::WantsAtLeast(1800)).await;
    let rgsd = start(
        27000,
        &(String::from("session_expires = \"600s\"\n")
            + &group("Sales agents", "serial", 20, &[a0])
            + QUEUE
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let _caller = call(rgsd.sip, "sales").await;
    let (first_at, first) = next_msg(&mut seen0, "INVITE").await;
    assert_eq!(
        header(&first, "Session-Expires"),
        Some("600;refresher=uac"),
        "{first}"
    );
    let (again_at, again) = next_msg(&mut seen0, "INVITE").await;
    assert!(secs_between(first_at, again_at) < 1.0);
    assert_eq!(
        header(&again, "Session-Expires"),
        Some("1800;refresher=uac"),
        "{again}"
    );
    assert_eq!(header(&again, "Call-ID"), header(&first, "Call-ID"));
    assert_eq!(header(&again, "From"), header(&first, "From"));
    assert_eq!(header(&first, "CSeq"), Some("1 INVITE"));
    assert_eq!(header(&again, "CSeq"), Some("2 INVITE"));
    assert_ne!(header(&again, "Via"), header(&first, "Via"), "a new branch");
    // The answer to the retry is ACKed with its CSeq: the leg is up.
    let (_, ack) = next_msg(&mut seen0, "ACK").await;
    let (_, ack) = if header(&ack, "CSeq") == Some("1 ACK") {
        // The ACK of the 422 (same transaction); the 2xx's ACK follows.
        next_msg(&mut seen0, "ACK").await
    } else {
        (Instant::now(), ack)
    };
    assert_eq!(header(&ack, "CSeq"), Some("2 ACK"), "{ack}");
}

/// rgsd refreshes the caller's session (UPDATE at 45 s) and the caller answers 481: the
/// dialog is gone there (RFC 4028 §10), so rgsd ends the call, BYE to the caller and the agent,
/// and the record says `session_expired`.
#[tokio::test]
async fn a_refresh_answered_481_ends_the_call() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let rgsd = start(
        27200,
        &(group("Sales agents", "serial", 20, &[a0]) + QUEUE + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    let caller = dial_with(
        rgsd.sip,
        "sales",
        Some(CALLER_SDP),
        None,
        "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
    )
    .await;
    assert!(caller.final_response.starts_with("SIP/2.0 200"));
    let answered = Instant::now();
    next_of(&mut seen0, "ACK").await;
    let mut buf = vec![0u8; 8192];
    let (update_at, bye_at) = loop {
        let (n, from) = caller.sock.recv_from(&mut buf).await.unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("UPDATE ") {
            let gone = response(&msg, "481 Call/Transaction Does Not Exist", "c1", None);
            caller.sock.send_to(gone.as_bytes(), from).await.unwrap();
            let at = Instant::now();
            let bye = caller_gets_bye(&caller.sock).await;
            break (at, bye);
        }
    };
    assert!((45.0..46.0).contains(&secs_between(answered, update_at)));
    assert!(secs_between(update_at, bye_at) < 1.0, "BYE came late");
    let agent_bye = next_of(&mut seen0, "BYE").await;
    assert!(
        secs_between(bye_at, agent_bye) < 1.0,
        "the agent's BYE came late"
    );
    let record = rgsd.record(&caller.call_id).await;
    assert_eq!(record.outcome, CallOutcome::SessionExpired, "{record:?}");
}

// ---- Wrap-up ----------------------------------------------------------------------------------

/// An agent in two groups answers a call from the first; its wrap-up (the group's 30 s) keeps
/// the second group's queue from offering them a call until it ends, then the waiting call
/// rings them at once. A second round is ended early (the agent page's button).
#[tokio::test]
async fn wrap_up_keeps_an_agent_in_two_groups_from_both_until_it_ends() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let agent_uri = format!("sip:a0@{a0}");
    let rest = format!(
        "\n[[agent_group]]\nname = \"Sales agents\"\nrouting = \"serial\"\nwrap_up = \"30s\"\nagents = [\"{agent_uri}\"]\n\
         \n[[agent_group]]\nname = \"Support agents\"\nrouting = \"longest_idle\"\nagents = [\"{agent_uri}\"]\n\
         \n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n\
         \n[[queue]]\nname = \"Support\"\nagent_groups = [\"Support agents\"]\n\
         {WORKFLOW}\
         \n[[workflow]]\nname = \"Support line\"\nkind = \"hunt_group\"\nuri = \"sip:support@127.0.0.1\"\nqueue = \"Support\"\n"
    );
    let rgsd = start(23400, &rest).await;
    let agent = rgsd.services.agents.id(&SipUri(agent_uri.clone())).unwrap();
    tokio::time::pause();

    // First call, to Sales: answered, then the caller hangs up.
    let first = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    assert!(
        first.final_response.starts_with("SIP/2.0 200"),
        "{}",
        first.final_response
    );
    next_of(&mut seen0, "ACK").await;
    first.bye().await;
    let ended = next_of(&mut seen0, "BYE").await;
    // The BYE reached the agent once the call task ended the agent's call: in wrap-up now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rgsd.services.agents.state(agent), Some(AgentState::WrapUp));
    assert!(!rgsd.services.agents.is_free(agent));

    // A call to Support (the agent's other group, no wrap-up of its own) waits.
    let second = dial(rgsd.sip, "support", Some(CALLER_SDP), None).await;
    assert!(
        second.final_response.starts_with("SIP/2.0 200"),
        "{}",
        second.final_response
    );
    let (offered, _) = next_msg(&mut seen0, "INVITE").await;
    let waited = offered - ended;
    assert!(
        waited >= Duration::from_millis(29_500) && waited < Duration::from_secs(31),
        "offered {waited:?} after the first call ended; wrap-up is 30 s"
    );
    next_of(&mut seen0, "ACK").await;
    assert_eq!(
        rgsd.services.agents.state(agent),
        Some(AgentState::Busy { calls: 1 })
    );

    // That call came through Support (no wrap-up): when it ends the agent is free at once.
    second.bye().await;
    next_of(&mut seen0, "BYE").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rgsd.services.agents.state(agent), Some(AgentState::Idle));

    // Round two: a Sales call puts the agent in wrap-up again; the agent ends it after 5 s and
    // the waiting Support call rings them at once.
    let third = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    assert!(
        third.final_response.starts_with("SIP/2.0 200"),
        "{}",
        third.final_response
    );
    next_msg(&mut seen0, "INVITE").await;
    next_of(&mut seen0, "ACK").await;
    third.bye().await;
    next_of(&mut seen0, "BYE").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rgsd.services.agents.state(agent), Some(AgentState::WrapUp));
    let fourth = dial(rgsd.sip, "support", Some(CALLER_SDP), None).await;
    assert!(
        fourth.final_response.starts_with("SIP/2.0 200"),
        "{}",
        fourth.final_response
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        rgsd.services.agents.state(agent),
        Some(AgentState::WrapUp),
        "still in wrap-up 5 s in"
    );
    assert!(seen0.try_recv().is_err(), "nothing offered during wrap-up");
    let early = Instant::now();
    assert!(rgsd.acd.end_wrap_up(&SipUri(agent_uri.clone())));
    assert!(
        !rgsd.acd.end_wrap_up(&SipUri(agent_uri)),
        "nothing left to end"
    );
    let (offered, _) = next_msg(&mut seen0, "INVITE").await;
    assert!(
        offered - early < Duration::from_millis(100),
        "offered {:?} after the early end",
        offered - early
    );
    next_of(&mut seen0, "ACK").await;
    // The 30 s timer of the period ended early fires later and must not touch the agent's
    // next state (busy on the fourth call).
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        rgsd.services.agents.state(agent),
        Some(AgentState::Busy { calls: 1 })
    );
    fourth.bye().await;
    next_of(&mut seen0, "BYE").await;
    // The records say which wrap-up followed each call.
    let records = rgsd.records_of(&[&first.call_id, &second.call_id]).await;
    assert_eq!(records[0].wrap_up, Some(Duration::from_secs(30)));
    assert_eq!(records[1].wrap_up, None, "the Support group has none");
}

// ---- Announcements --------------------------------------------------------------------------

/// What the test observer saw, with the virtual time it saw it.
#[derive(Debug)]
enum Seen {
    /// A place announcement (position, wait) or, both `None`, the periodic prompt.
    Announced(String, Option<u32>, Option<Duration>, Instant),
    /// A call started talking.
    Talking(String, Instant),
}

#[derive(Debug)]
struct Watcher(mpsc::UnboundedSender<Seen>);

impl rgsd::acd::CallObserver for Watcher {
    fn call_updated(&self, call: &rgsd::acd::CallSnapshot) {
        if call.stage == rgsd::acd::CallStage::Talking {
            let _ = self
                .0
                .send(Seen::Talking(call.call_id.clone(), Instant::now()));
        }
    }
    fn call_ended(&self, _: &str, _: CallOutcome, _: Option<Duration>) {}
    fn announced(&self, call_id: &str, position: Option<u32>, wait: Option<Duration>) {
        let seen = Seen::Announced(call_id.to_owned(), position, wait, Instant::now());
        let _ = self.0.send(seen);
    }
}

/// The next place announcement to `call_id` (periodic ones and others' skipped, but every one
/// to `call_id` is pushed to `log`).
async fn next_place(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    call_id: &str,
    log: &mut Vec<Instant>,
) -> (u32, Option<Duration>, Instant) {
    tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            match rx.recv().await.unwrap() {
                Seen::Announced(id, position, wait, at) if id == call_id => {
                    log.push(at);
                    if let Some(p) = position {
                        return (p, wait, at);
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .expect("no announcement within 600 s of virtual time")
}

/// One agent, busy; callers wait. The third hears position 3 and an expected wait, then fewer
/// and a new figure as the calls ahead are answered, never two announcements within 15 s; and
/// when the agent answers during the third caller's announcement, the caller is bridged at once.
#[tokio::test]
async fn waiting_callers_hear_their_position_and_expected_wait() {
    let (a0, mut seen0) = peer(Peer::Answers).await;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let rest = group("Sales agents", "serial", 20, &[a0])
        + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\nannounce_every = \"20s\"\n\
           periodic_announcement = { every = \"25s\", prompt = { text = \"Thank you for holding.\" } }\n"
        + WORKFLOW;
    let rgsd = start_observed(23600, &rest, Some(Arc::new(Watcher(tx)))).await;
    tokio::time::pause();

    // Two calls answered one after the other, 60 s apart: the queue's pace is known.
    let w1 = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    next_of(&mut seen0, "ACK").await;
    let w2 = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    w1.bye().await;
    next_of(&mut seen0, "ACK").await; // w2 answered
    // Three callers wait for the busy agent.
    let c1 = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    let c2 = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    let c3 = dial(rgsd.sip, "sales", Some(CALLER_SDP), None).await;
    let mut log = Vec::new();
    let (position, first_wait, _) = next_place(&mut seen, &c3.call_id, &mut log).await;
    assert_eq!(position, 3, "the third caller is told position 3");
    let first_wait = first_wait.expect("and an expected wait");
    assert!(first_wait >= Duration::from_secs(30), "{first_wait:?}");

    // The call ahead is answered: position 2, and a new figure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    w2.bye().await;
    next_of(&mut seen0, "ACK").await; // c1 answered
    let (position, wait, _) = next_place(&mut seen, &c3.call_id, &mut log).await;
    assert_eq!(position, 2);
    assert_ne!(wait, Some(first_wait), "the estimate moved with the queue");

    // Once more: position 1. The agent frees up during that announcement and answers.
    c1.bye().await;
    next_of(&mut seen0, "ACK").await; // c2 answered
    let (position, _, started) = next_place(&mut seen, &c3.call_id, &mut log).await;
    assert_eq!(position, 1);
    let runtime = rgsd.acd.current();
    let sentence = runtime.config.queues[0]
        .announce
        .position_prompt(1)
        .unwrap();
    let length = runtime.assets.prompt(sentence).unwrap().duration();
    // Half a second into the sentence, the agent's call ends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c2.bye().await;
    let (answered, _) = next_msg(&mut seen0, "INVITE").await; // c3 offered, answered at once
    assert!(
        answered > started && answered < started + length,
        "the agent answered {:?} after the announcement started, which lasts {length:?}",
        answered - started
    );
    let talking = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            if let Seen::Talking(id, at) = seen.recv().await.unwrap()
                && id == c3.call_id
            {
                return at;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        talking - answered < Duration::from_millis(100),
        "bridged {:?} after the agent answered",
        talking - answered
    );
    for pair in log.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(15),
            "two announcements {:?} apart: {log:?}",
            pair[1] - pair[0]
        );
    }
    c3.bye().await;
    next_of(&mut seen0, "BYE").await;
    let record = rgsd.record(&c3.call_id).await;
    assert_eq!(record.announcements as usize, log.len(), "{log:?}");
}

/// Longest idle with an agent who never answers: once an offer rings out, that agent goes to
/// the back of the order, so the next call goes straight to an agent who has been idle longer
/// instead of ringing the same silent phone for another alert time.
#[tokio::test]
async fn an_agent_who_let_an_offer_ring_out_goes_to_the_back_of_longest_idle() {
    let (a0, mut seen0) = peer(Peer::Rings).await;
    let (a1, mut seen1) = peer(Peer::Answers).await;
    let (a2, mut seen2) = peer(Peer::Answers).await;
    let rgsd = start(
        35400,
        &(group("Sales agents", "longest_idle", 10, &[a0, a1, a2])
            + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n"
            + WORKFLOW),
    )
    .await;
    tokio::time::pause();
    // The first call rings the silent agent (all idle since start-up; the list order breaks
    // the tie), then the next one answers.
    let _first = call(rgsd.sip, "sales").await;
    next_of(&mut seen0, "INVITE").await;
    next_of(&mut seen0, "CANCEL").await;
    next_of(&mut seen1, "INVITE").await;
    next_of(&mut seen1, "ACK").await;
    // The second call: a2, idle since start-up, is offered it first; a0 is not rung again.
    let placed = Instant::now();
    let _second = call(rgsd.sip, "sales").await;
    let (offered, _) = next_msg(&mut seen2, "INVITE").await;
    assert!(
        offered - placed < Duration::from_secs(1),
        "the second call waited {:?} before reaching an agent who answers",
        offered - placed
    );
    while let Ok((method, _, _)) = seen0.try_recv() {
        assert_ne!(method, "INVITE", "the silent agent was rung again first");
    }
}
