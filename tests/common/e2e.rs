//! The end-to-end harness shared by `tests/e2e*.rs`: SIPp agents and callers on loopback
//! ports, configuration snippets, and a small in-test UA that makes one call over raw SIP and
//! sends and checks RTP.
//!
//! Every SIPp run is bounded (`-m`, `-timeout 30s`), every wait has a deadline.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Scratch, Server};

/// A free UDP port on loopback (released at once; SIPp binds it right after).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// A SIPp process (agent UAS or caller UAC) with its logs in a scratch folder.
pub struct Sipp {
    pub child: Option<Child>,
    pub errors: PathBuf,
    pub messages: PathBuf,
    pub name: String,
}

impl Sipp {
    pub fn spawn(sipp: &Path, dir: &Path, name: &str, args: &[String]) -> Self {
        let errors = dir.join(format!("{name}.errors.log"));
        let messages = dir.join(format!("{name}.messages.log"));
        let child = Command::new(sipp)
            .args(args)
            .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&messages)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sipp");
        Self {
            child: Some(child),
            errors,
            messages,
            name: name.to_owned(),
        }
    }

    /// An agent: UAS on `port` running `scenario`, answering after `delay_ms`.
    #[allow(clippy::too_many_arguments)] // test helper: every knob of one SIPp command line
    pub fn agent(
        sipp: &Path,
        dir: &Path,
        name: &str,
        port: u16,
        xml: &str,
        calls: Option<u32>,
        delay_ms: u32,
        echo: bool,
    ) -> Self {
        // The media port comes from the OS's free ports, released before SIPp binds it (and
        // SIPp also takes the ports after it): another test's socket can take one in between,
        // and SIPp then exits. Such a start is retried with other media ports.
        for _ in 0..3 {
            let mut args = vec![
                "-sf".to_owned(),
                scenario(xml).display().to_string(),
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-mp".into(),
                free_udp_port().to_string(),
                "-d".into(),
                delay_ms.to_string(),
            ];
            if let Some(m) = calls {
                args.extend(["-m".into(), m.to_string()]);
            }
            if echo {
                args.push("-rtp_echo".into());
            }
            let mut s = Self::spawn(sipp, dir, name, &args);
            if s.wait_bound(port) {
                return s;
            }
        }
        panic!("sipp did not bind port {port} in three starts");
    }

    /// Waits until something holds UDP `port` (SIPp started listening); `false` when SIPp
    /// exited first (a port it wanted was taken).
    fn wait_bound(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            assert!(Instant::now() < deadline, "sipp did not bind port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Callers: `calls` calls to `service`, `parallel` at a time, each held `hold_ms`.
    #[allow(clippy::too_many_arguments)] // test helper: every knob of one SIPp command line
    pub fn callers(
        sipp: &Path,
        dir: &Path,
        name: &str,
        rgsd: SocketAddr,
        service: &str,
        calls: u32,
        parallel: u32,
        hold_ms: u32,
    ) -> Self {
        let args = vec![
            rgsd.to_string(),
            "-sf".into(),
            scenario("e2e_caller_hunt.xml").display().to_string(),
            "-s".into(),
            service.into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-mp".into(),
            free_udp_port().to_string(),
            "-m".into(),
            calls.to_string(),
            "-l".into(),
            parallel.to_string(),
            "-r".into(),
            "20".into(),
            "-d".into(),
            hold_ms.to_string(),
        ];
        Self::spawn(sipp, dir, name, &args)
    }

    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- {} errors:\n{}\n--- {} messages:\n{}",
            self.name,
            read(&self.errors),
            self.name,
            read(&self.messages)
        )
    }

    /// Waits (at most 40 s) for exit; returns the exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts a clean exit (every call of the scenario succeeded).
    pub fn assert_success(&mut self, server: &Server) {
        let code = self.wait();
        assert_eq!(
            code,
            Some(0),
            "sipp {} failed (exit {code:?})\n{}\n--- rgsd stderr:\n{}",
            self.name,
            self.logs(),
            server.stderr()
        );
    }

    /// INVITEs this SIPp process received (from its message log).
    pub fn invites_received(&self) -> usize {
        std::fs::read_to_string(&self.messages)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("INVITE sip:"))
            .count()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn server_section(rtp: u16) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [{rtp}, {}]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]
agent_ringback_grace_period = "30s"
"#,
        rtp + 199
    )
}

pub fn group(name: &str, routing: &str, ports: &[u16]) -> String {
    let agents: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("\"sip:agent{i}@127.0.0.1:{p}\""))
        .collect();
    format!(
        "\n[[agent_group]]\nname = \"{name}\"\nrouting = \"{routing}\"\nalert_time = \"10s\"\nagents = [{}]\n",
        agents.join(", ")
    )
}

pub fn hunt_group(queue: &str) -> String {
    format!(
        "\n[[queue]]\nname = \"{queue}\"\nagent_groups = [\"{queue} agents\"]\n\n[[workflow]]\nname = \"{queue} line\"\nkind = \"hunt_group\"\nuri = \"sip:sales@127.0.0.1\"\nqueue = \"{queue}\"\n"
    )
}

pub fn start(scratch: &Scratch, config: &str) -> Server {
    let path = scratch.write("rgsd.toml", config);
    Server::start(&path)
}

// ---------------------------------------------------------------------------------------------
// A small in-test UA: one call, raw SIP over UDP, RTP from its own socket.

pub const MARK: u8 = 0x2a;

pub struct Ua {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub server: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    pub to: String,
    /// rgsd's media address from its SDP answer.
    pub remote_rtp: Option<SocketAddr>,
    /// Where in-dialog requests go (rgsd's Contact).
    pub target: String,
    pub seq: u16,
    /// Every SIP message received, for failure messages.
    pub log: String,
    /// rgsd's SDP answer (the body of its 200).
    pub answer_sdp: String,
    /// Header lines (each ending in CRLF) added to every request after Max-Forwards.
    pub extra_headers: String,
}

pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

impl Ua {
    pub fn new(server: SocketAddr) -> Self {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        Self {
            sip,
            rtp,
            server,
            call_id: format!("e2e-{}@127.0.0.1", fastrand::u64(..)),
            from_tag: format!("ua{}", fastrand::u32(..)),
            to: String::new(),
            remote_rtp: None,
            target: String::new(),
            seq: 0,
            log: String::new(),
            answer_sdp: String::new(),
            extra_headers: String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.sip.local_addr().unwrap().port()
    }

    pub fn send(&self, text: &str) {
        self.sip.send_to(text.as_bytes(), self.server).unwrap();
    }

    pub fn recv(&mut self, deadline: Instant) -> Option<String> {
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.log.push_str(&msg);
                self.log.push_str("\n----\n");
                return Some(msg);
            }
        }
        None
    }

    pub fn request(&self, method: &str, uri: &str, cseq: u32, body: &str, ctype: bool) -> String {
        let port = self.port();
        let to = if self.to.is_empty() {
            format!("<{uri}>")
        } else {
            self.to.clone()
        };
        let ct = if ctype {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n{}From: <sip:caller@127.0.0.1>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            fastrand::u64(..),
            self.extra_headers,
            self.from_tag,
            self.call_id,
            body.len()
        )
    }

    /// INVITEs `uri` and waits for rgsd's 200 (then ACKs). Panics on a failure response.
    pub fn call(&mut self, uri: &str) {
        let code = self.call_status(uri);
        assert_eq!(code, 200, "INVITE refused:\n{}", self.log);
    }

    /// INVITEs `uri`; returns the final status (ACKing a 200; the endpoint ACKs failures).
    pub fn call_status(&mut self, uri: &str) -> u16 {
        let sdp = self.sdp("RTP/AVP", "");
        self.call_with_sdp(uri, &sdp)
    }

    /// The UA's SDP offer: PCMU and telephone-event on its RTP port, with `profile`
    /// (`RTP/AVP`, `RTP/SAVP`) and `extra` attribute lines.
    pub fn sdp(&self, profile: &str, extra: &str) -> String {
        let rtp_port = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=ua 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} {profile} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n{extra}"
        )
    }

    /// INVITEs `uri` with `sdp`; returns the final status (ACKing a 200, whose body is kept in
    /// [`Ua::answer_sdp`]).
    pub fn call_with_sdp(&mut self, uri: &str, sdp: &str) -> u16 {
        let invite = self.request("INVITE", uri, 1, sdp, true);
        self.send(&invite);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let msg = self
                .recv(deadline)
                .unwrap_or_else(|| panic!("no final response to INVITE; got:\n{}", self.log));
            let code: u16 = msg
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if code < 200 {
                continue;
            }
            if code != 200 {
                // ACK for a failure response: same branch as the INVITE is not needed for this
                // test peer; the endpoint stops retransmitting on any ACK of the dialog.
                return code;
            }
            self.to = header(&msg, "To").unwrap().to_owned();
            self.target = header(&msg, "Contact")
                .map(|c| c.trim_matches(['<', '>']).to_owned())
                .unwrap_or_else(|| uri.to_owned());
            let body = msg.split("\r\n\r\n").nth(1).unwrap_or_default();
            body.clone_into(&mut self.answer_sdp);
            let ip = body
                .lines()
                .find_map(|l| l.strip_prefix("c=IN IP4 "))
                .unwrap()
                .trim();
            let port = body
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|l| l.split_whitespace().next())
                .unwrap();
            self.remote_rtp = Some(format!("{ip}:{port}").parse().unwrap());
            let target = self.target.clone();
            let ack = self.request("ACK", &target, 1, "", false);
            self.send(&ack);
            return code;
        }
    }

    pub fn rtp_packet(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// Sends `frames` PCMU frames of the marker byte (20 ms apart) and counts the marker frames
    /// heard back. Returns (marker frames heard, other frames heard).
    pub fn talk(&mut self, frames: u32) -> (u32, u32) {
        let to = self.remote_rtp.unwrap();
        let (mut heard, mut other) = (0, 0);
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        for i in 0..frames {
            let p = self.rtp_packet(0, i == 0, i * 160, &[MARK; 160]);
            self.rtp.send_to(&p, to).unwrap();
            let next = start + Duration::from_millis(20 * u64::from(i + 1));
            while Instant::now() < next {
                if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                    if n > 12 && buf[12..n].iter().all(|b| *b == MARK) {
                        heard += 1;
                    } else {
                        other += 1;
                    }
                }
            }
        }
        (heard, other)
    }

    /// Sends one key as RFC 4733 events (three updates, three end packets).
    pub fn press(&mut self, key: u8) {
        let to = self.remote_rtp.unwrap();
        let ts = 80_000;
        for (i, end) in [
            (1u16, false),
            (2, false),
            (3, false),
            (4, true),
            (4, true),
            (4, true),
        ] {
            let duration = (i * 160).to_be_bytes();
            let payload = [
                key,
                if end { 0x80 | 10 } else { 10 },
                duration[0],
                duration[1],
            ];
            let p = self.rtp_packet(101, i == 1 && !end, ts, &payload);
            self.rtp.send_to(&p, to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn bye(&mut self) {
        let target = self.target.clone();
        let bye = self.request("BYE", &target, 2, "", false);
        self.send(&bye);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(msg) = self.recv(deadline) {
            if msg.starts_with("SIP/2.0 200") && msg.contains("BYE") {
                return;
            }
        }
        panic!("BYE not answered; got:\n{}", self.log);
    }

    /// Waits for rgsd's BYE and answers 200.
    pub fn expect_bye(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while let Some(msg) = self.recv(deadline) {
            if msg.starts_with("BYE ") {
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    for l in msg.lines().filter(|l| {
                        l.split_once(':')
                            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                    }) {
                        resp.push_str(l);
                        resp.push_str("\r\n");
                    }
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                self.send(&resp);
                return;
            }
        }
        panic!("no BYE from rgsd; got:\n{}", self.log);
    }
}

/// Keeps sending marker frames until some come back (the agent answered and the bridge is up),
/// at most `max` frames. Returns the frames heard back.
pub fn talk_until_heard(ua: &mut Ua, max: u32) -> u32 {
    let mut total = 0;
    for _ in 0..(max / 10) {
        let (heard, _) = ua.talk(10);
        total += heard;
        if total >= 5 {
            break;
        }
    }
    total
}

/// A mono 16-bit 8 kHz WAV of a sine at `hz` for `ms` milliseconds.
#[allow(clippy::cast_possible_truncation)] // the amplitude is bounded by 12,000
pub fn tone_wav(hz: f64, ms: u32) -> Vec<u8> {
    let n = 8 * ms;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let s = (f64::from(i) * hz * std::f64::consts::TAU / 8000.0).sin() * 12_000.0;
        data.extend_from_slice(&(s as i16).to_le_bytes());
    }
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + u32::try_from(data.len()).unwrap()).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    for word in [16u32, 0x0001_0001, 8000, 16000, 0x0010_0002] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    v.extend_from_slice(&data);
    v
}

/// The frequency of a PCMU frame, by zero crossings (Hz).
pub fn frame_hz(payload: &[u8]) -> f64 {
    let samples: Vec<i16> = payload
        .iter()
        .map(|b| rgsd::media::ulaw_to_linear(*b))
        .collect();
    pcm_hz(&samples)
}

/// The frequency of 8 kHz linear samples, by zero crossings (Hz).
#[allow(clippy::cast_precision_loss)] // sample counts of one frame
pub fn pcm_hz(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 8000.0)
}
