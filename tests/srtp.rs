//! SRTP with SDES keys, end to end: the real `rgsd` binary, an in-test SRTP caller (raw SIP
//! through `common::e2e::Ua`) and an in-test SRTP agent (a tiny UAS below), both encrypting
//! with `webrtc-srtp`, the crate rgsd uses.
//!
//! - Tone both ways, checked by frequency after decrypting: the caller's 450 Hz reaches the
//!   agent, the agent's 1,350 Hz reaches the caller (rgsd decrypts each leg and re-encrypts
//!   for the other, each with its own keys).
//! - A tampered packet and a replayed one are dropped and counted in `/metrics`.
//! - A plain caller to a workflow with `srtp = "required"` gets 488.
//! - A workflow created through `/api/workflows` with `srtp = "required"` applies at once: a
//!   plain caller to it gets 488.
//! - On the wire (`tshark` on `lo`): an SRTP call's RTP carries no run of the tone's PCMU
//!   bytes, while a plain call's does (so the check can fail).
// Test harness: a failed unwrap is a test failure; waiting on sockets and tshark needs real
// time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::Read as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rgsd::media::Codec;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

use common::e2e::{Ua, frame_hz, group, header, server_section, start};
use common::http::http;
use common::{Scratch, Server, require, run_rgsd};

const SUITE_80: &str = "AES_CM_128_HMAC_SHA1_80";
const SUITE_32: &str = "AES_CM_128_HMAC_SHA1_32";
/// Whole periods in a 20 ms frame, so one frame repeats seamlessly.
const CALLER_HZ: f64 = 450.0;
const AGENT_HZ: f64 = 1_350.0;

fn random_key() -> [u8; 30] {
    std::array::from_fn(|_| fastrand::u8(..))
}

fn crypto_line(tag: u32, suite: &str, key: &[u8; 30]) -> String {
    format!("a=crypto:{tag} {suite} inline:{}\r\n", BASE64.encode(key))
}

/// The suite and key of `sdp`'s `a=crypto:<tag>` line.
fn crypto_of(sdp: &str, tag: u32) -> (String, [u8; 30]) {
    let prefix = format!("a=crypto:{tag} ");
    let line = sdp
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no a=crypto:{tag} in\n{sdp}"));
    let mut parts = line.split_whitespace();
    let suite = parts.next().unwrap().to_owned();
    let key = parts.next().unwrap().strip_prefix("inline:").unwrap();
    let key = key.split('|').next().unwrap();
    (suite, BASE64.decode(key).unwrap().try_into().unwrap())
}

fn context(suite: &str, key: &[u8; 30], replay: bool) -> Context {
    let profile = match suite {
        SUITE_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SUITE_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        other => panic!("unexpected suite {other}"),
    };
    let option = replay.then(|| srtp_replay_protection(64));
    Context::new(&key[..16], &key[16..], profile, option, None).unwrap()
}

/// The media address in an SDP body.
fn media_addr(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

/// One 20 ms PCMU frame of a sine at `hz`.
#[allow(clippy::cast_possible_truncation)] // amplitude bounded by 12,000
fn tone_frame(hz: f64) -> [u8; 160] {
    std::array::from_fn(|i| {
        let s = (i as f64 * hz * std::f64::consts::TAU / 8000.0).sin() * 12_000.0;
        Codec::Pcmu.encode(s as i16)
    })
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An agent phone: answers rgsd's INVITE with SRTP (tag 2, the 32-bit suite) and its own key.
struct Agent {
    sip: UdpSocket,
    rtp: UdpSocket,
    key: [u8; 30],
}

impl Agent {
    fn new() -> Self {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_nonblocking(true).unwrap();
        Self {
            sip,
            rtp,
            key: random_key(),
        }
    }

    fn port(&self) -> u16 {
        self.sip.local_addr().unwrap().port()
    }

    /// Waits for the INVITE and answers 200; returns rgsd's offer.
    fn answer(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            let Ok((n, from)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !msg.starts_with("INVITE ") {
                continue;
            }
            let offer = msg.split("\r\n\r\n").nth(1).unwrap().to_owned();
            let rtp_port = self.rtp.local_addr().unwrap().port();
            let body = format!(
                "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n{}",
                crypto_line(2, SUITE_32, &self.key)
            );
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "Call-ID", "CSeq"] {
                ok.push_str(&format!("{name}: {}\r\n", header(&msg, name).unwrap()));
            }
            ok.push_str(&format!(
                "To: {};tag=agent{}\r\nContact: <sip:agent0@127.0.0.1:{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                header(&msg, "To").unwrap(),
                fastrand::u32(..),
                self.port(),
                body.len()
            ));
            self.sip.send_to(ok.as_bytes(), from).unwrap();
            return offer;
        }
        panic!("no INVITE reached the agent");
    }
}

/// One bridged call: the caller (SRTP or plain) and the SRTP agent, with their contexts.
struct Call {
    ua: Ua,
    agent: Agent,
    /// Caller → rgsd, and rgsd → caller; `None` for a plain caller.
    caller_srtp: Option<(Context, Context)>,
    /// Agent → rgsd, rgsd → agent.
    agent_srtp: (Context, Context),
    /// rgsd's RTP ports for the caller's leg and the agent's.
    caller_leg: SocketAddr,
    agent_leg: SocketAddr,
    seq: u16,
    agent_seq: u16,
}

fn place_call(server: &Server, agent: Agent, uri: &str, srtp: bool) -> Call {
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.rtp.set_nonblocking(true).unwrap();
    let caller_key = random_key();
    let sdp = if srtp {
        ua.sdp("RTP/SAVP", &crypto_line(9, SUITE_80, &caller_key))
    } else {
        ua.sdp("RTP/AVP", "")
    };
    assert_eq!(ua.call_with_sdp(uri, &sdp), 200, "{}", ua.log);
    let caller_srtp = srtp.then(|| {
        let (suite, rgsd_key) = crypto_of(&ua.answer_sdp, 9);
        assert_eq!(suite, SUITE_80);
        assert!(ua.answer_sdp.contains(" RTP/SAVP "), "{}", ua.answer_sdp);
        assert_ne!(rgsd_key, caller_key, "rgsd answers with its own key");
        (
            context(SUITE_80, &caller_key, false),
            context(SUITE_80, &rgsd_key, true),
        )
    });
    if !srtp {
        assert!(!ua.answer_sdp.contains("a=crypto"), "{}", ua.answer_sdp);
    }
    let offer = agent.answer();
    // agent_srtp = "required": RTP/SAVP, both suites.
    assert!(offer.contains(" RTP/SAVP 0 8 101"), "{offer}");
    let (suite1, _) = crypto_of(&offer, 1);
    let (suite2, rgsd_key) = crypto_of(&offer, 2);
    assert_eq!((suite1.as_str(), suite2.as_str()), (SUITE_80, SUITE_32));
    let agent_srtp = (
        context(SUITE_32, &agent.key, false),
        context(SUITE_32, &rgsd_key, true),
    );
    Call {
        caller_leg: ua.remote_rtp.unwrap(),
        agent_leg: media_addr(&offer),
        ua,
        agent,
        caller_srtp,
        agent_srtp,
        seq: 0,
        agent_seq: 0,
    }
}

impl Call {
    /// The packet the caller sends for `payload` (encrypted if the caller speaks SRTP).
    fn caller_packet(&mut self, payload: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let p = rtp(self.seq, u32::from(self.seq) * 160, 0xCA11_E500, payload);
        match &mut self.caller_srtp {
            Some((protect, _)) => protect.encrypt_rtp(&p).unwrap().to_vec(),
            None => p,
        }
    }

    /// Sends a tone each way for `frames` × 20 ms; returns the frames each side heard at the
    /// other's frequency (caller heard, agent heard) and how many failed to decrypt.
    fn talk(&mut self, frames: u16) -> (u32, u32, u32) {
        let (caller_tone, agent_tone) = (tone_frame(CALLER_HZ), tone_frame(AGENT_HZ));
        let (mut caller_heard, mut agent_heard, mut undecryptable) = (0, 0, 0);
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        for i in 0..frames {
            let p = self.caller_packet(&caller_tone);
            self.ua.rtp.send_to(&p, self.caller_leg).unwrap();
            self.agent_seq = self.agent_seq.wrapping_add(1);
            let seq = self.agent_seq;
            let a = rtp(seq, u32::from(seq) * 160, 0xA6E7_0001, &agent_tone);
            let a = self.agent_srtp.0.encrypt_rtp(&a).unwrap();
            self.agent.rtp.send_to(&a, self.agent_leg).unwrap();
            let next = start + Duration::from_millis(20 * u64::from(i + 1));
            while Instant::now() < next {
                let mut idle = true;
                if let Ok((n, _)) = self.ua.rtp.recv_from(&mut buf) {
                    idle = false;
                    let plain = match &mut self.caller_srtp {
                        Some((_, unprotect)) => {
                            unprotect.decrypt_rtp(&buf[..n]).ok().map(|b| b.to_vec())
                        }
                        None => Some(buf[..n].to_vec()),
                    };
                    match plain {
                        Some(p) if (frame_hz(&p[12..]) - AGENT_HZ).abs() < 60.0 => {
                            caller_heard += 1;
                        }
                        Some(_) => {}
                        None => undecryptable += 1,
                    }
                }
                if let Ok((n, _)) = self.agent.rtp.recv_from(&mut buf) {
                    idle = false;
                    match self.agent_srtp.1.decrypt_rtp(&buf[..n]) {
                        Ok(p) if (frame_hz(&p[12..]) - CALLER_HZ).abs() < 40.0 => agent_heard += 1,
                        Ok(_) => {}
                        Err(_) => undecryptable += 1,
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        (caller_heard, agent_heard, undecryptable)
    }
}

fn config(rtp: u16, agent: &Agent) -> String {
    server_section(rtp).replacen(
        "[server]\n",
        "[server]\nagent_srtp = \"required\"\nallow_sdes_over_plain_sip = true\n",
        1,
    ) + &group("Sales agents", "serial", &[agent.port()])
        + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n\n[[workflow]]\nname = \"Sales line\"\nkind = \"hunt_group\"\nuri = \"sip:sales@127.0.0.1\"\nqueue = \"Sales\"\nsrtp = \"required\"\n\n[[workflow]]\nname = \"Plain line\"\nkind = \"hunt_group\"\nuri = \"sip:plain@127.0.0.1\"\nqueue = \"Sales\"\n"
}

fn srtp_failures(server: &Server) -> f64 {
    let (status, body) = http(server.http, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("rgsd_srtp_auth_failures_total "))
        .unwrap_or_else(|| panic!("no rgsd_srtp_auth_failures_total in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn srtp_caller_and_agent_hear_each_other_and_bad_packets_are_dropped_and_counted() {
    let scratch = Scratch::new();
    let agent = Agent::new();
    let server = start(&scratch, &config(36_000, &agent));

    // A plain caller to the SRTP-only workflow: 488.
    let mut plain = Ua::new(server.sip_addr("udp"));
    assert_eq!(
        plain.call_status("sip:sales@127.0.0.1"),
        488,
        "{}",
        plain.log
    );

    let mut call = place_call(&server, agent, "sip:sales@127.0.0.1", true);
    let (caller_heard, agent_heard, undecryptable) = call.talk(100);
    assert!(
        caller_heard >= 30,
        "the caller heard {caller_heard} agent frames"
    );
    assert!(
        agent_heard >= 30,
        "the agent heard {agent_heard} caller frames"
    );
    assert_eq!(
        undecryptable, 0,
        "rgsd sent packets the phones could not decrypt"
    );
    assert_eq!(srtp_failures(&server), 0.0);

    // One tampered packet (a payload bit flipped) and one replay: both refused and counted.
    let mut tampered = call.caller_packet(&tone_frame(CALLER_HZ));
    tampered[30] ^= 0x01;
    call.ua.rtp.send_to(&tampered, call.caller_leg).unwrap();
    // ...and a genuine packet sent twice: the second is a replay.
    let genuine = call.caller_packet(&tone_frame(CALLER_HZ));
    call.ua.rtp.send_to(&genuine, call.caller_leg).unwrap();
    call.ua.rtp.send_to(&genuine, call.caller_leg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while srtp_failures(&server) < 2.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(srtp_failures(&server), 2.0, "tampered + replayed");
    // The call still flows after them, and nothing else is refused.
    let (caller_heard, agent_heard, _) = call.talk(25);
    assert!(
        caller_heard >= 5 && agent_heard >= 5,
        "{caller_heard} {agent_heard}"
    );
    assert_eq!(srtp_failures(&server), 2.0);
    // No key reaches the log.
    let log = server.stderr();
    assert!(!log.contains("inline:"), "{log}");
}

/// Captures the UDP traffic of `ports` on `lo` while `during` runs; `None` (with the reason
/// printed) when tshark cannot capture here.
fn capture(scratch: &Scratch, ports: &[u16], during: impl FnOnce()) -> Option<Vec<u8>> {
    let tshark = require("tshark")?;
    let file = scratch.path().join(format!("cap-{}.pcap", ports[0]));
    let filter = ports
        .iter()
        .map(|p| format!("udp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut child = Command::new(tshark)
        .args(["-i", "lo", "-f", &filter, "-F", "pcap", "-w"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // Wait for "Capturing on 'Loopback…'" (or a failure).
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("Capturing on") {
                let _ = tx.send(true);
            }
        }
        let _ = tx.send(false);
        eprintln!("tshark: {}", String::from_utf8_lossy(&seen));
    });
    if rx.recv_timeout(Duration::from_secs(20)) != Ok(true) {
        let _ = child.kill();
        let _ = child.wait();
        println!("skipped: tshark cannot capture on lo here (see its message above)");
        return None;
    }
    during();
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let _ = child.wait();
    let bytes = std::fs::read(&file).ok()?;
    std::fs::remove_file(&file).ok();
    Some(bytes)
}

#[test]
fn on_the_wire_an_srtp_call_hides_the_tone_and_a_plain_call_does_not() {
    let scratch = Scratch::new();
    let agent = Agent::new();
    let server = start(&scratch, &config(36_400, &agent));
    // A run of the caller's tone, as PCMU bytes: what a listener on the path would see.
    let needle = tone_frame(CALLER_HZ)[40..72].to_vec();
    let agent_needle = tone_frame(AGENT_HZ)[40..72].to_vec();
    let found = |pcap: &[u8], n: &[u8]| pcap.windows(n.len()).any(|w| w == n);

    // SRTP caller, SRTP agent: neither tone in clear on either leg.
    let mut call = place_call(&server, agent, "sip:sales@127.0.0.1", true);
    let ports = [call.caller_leg.port(), call.agent_leg.port()];
    let mut heard = (0, 0, 0);
    let Some(pcap) = capture(&scratch, &ports, || heard = call.talk(50)) else {
        return;
    };
    assert!(
        heard.0 >= 10 && heard.1 >= 10,
        "the SRTP call carried audio: {heard:?}"
    );
    assert!(pcap.len() > 50 * 172, "captured {} bytes only", pcap.len());
    assert!(
        !found(&pcap, &needle),
        "the caller's tone is in clear on the wire"
    );
    assert!(
        !found(&pcap, &agent_needle),
        "the agent's tone is in clear on the wire"
    );
    call.ua.bye();

    // A plain caller (workflow without srtp) to the same SRTP agent: the caller's leg carries
    // the tone in clear, so the search above can find it.
    let agent = Agent::new();
    let server2 = start(&Scratch::new(), &config(36_600, &agent));
    let mut call = place_call(&server2, agent, "sip:plain@127.0.0.1", false);
    let ports = [call.caller_leg.port()];
    let mut heard = (0, 0, 0);
    let Some(pcap) = capture(&scratch, &ports, || heard = call.talk(50)) else {
        return;
    };
    assert!(
        heard.0 >= 10 && heard.1 >= 10,
        "the plain call carried audio: {heard:?}"
    );
    assert!(
        found(&pcap, &needle),
        "the plain caller's tone should be visible"
    );
    assert!(
        found(&pcap, &agent_needle),
        "re-encrypted agent audio reaches the plain caller in clear"
    );
    drop(server);
}

#[test]
fn check_and_serve_refuse_sdes_without_tls_unless_allowed() {
    let scratch = Scratch::new();
    let agent = Agent::new();
    let allowed = config(36_800, &agent);
    let refused = allowed.replace("allow_sdes_over_plain_sip = true\n", "");
    let cfg = scratch.write("refused.toml", &refused);
    let cfg = cfg.to_str().unwrap();
    for command in ["check", "serve"] {
        let (status, _, err) = run_rgsd(&[command, "--config", cfg]);
        assert_eq!(status.code(), Some(78), "{command}: {err}");
        for key in ["server.agent_srtp", "workflow[0].srtp"] {
            let line = err
                .lines()
                .find(|l| l.contains(key))
                .unwrap_or_else(|| panic!("{command} names {key}:\n{err}"));
            assert!(line.contains("allow_sdes_over_plain_sip"), "{line}");
        }
    }
    let cfg = scratch.write("allowed.toml", &allowed);
    let (status, _, err) = run_rgsd(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(status.success(), "{err}");
}

/// A workflow created through `/api/workflows` with `srtp = "required"` is in force at once in
/// the running daemon: a plain caller to its URI gets 404 before and 488 after.
#[test]
fn a_workflow_created_through_the_api_with_srtp_required_refuses_a_plain_caller() {
    let scratch = Scratch::new();
    let agent = Agent::new();
    let server = start(&scratch, &config(39_000, &agent));
    let path = scratch.path().join("rgsd.toml");
    let admin = common::create_token(path.to_str().unwrap(), "admin", "root");
    let mut plain = Ua::new(server.sip_addr("udp"));
    assert_eq!(
        plain.call_status("sip:vault@127.0.0.1"),
        404,
        "{}",
        plain.log
    );
    let body = r#"{"name": "Vault", "kind": "hunt_group", "uri": "sip:vault@127.0.0.1", "queue": "Sales", "srtp": "required"}"#;
    let (status, reply) = http(
        server.http,
        "POST",
        "/api/workflows",
        Some(&admin),
        Some(body),
    );
    assert_eq!(status, 201, "{reply}");
    let mut plain = Ua::new(server.sip_addr("udp"));
    assert_eq!(
        plain.call_status("sip:vault@127.0.0.1"),
        488,
        "{}",
        plain.log
    );
}
