//! The interop harness shared by `tests/interop_*.rs`: real software nobody here wrote, started
//! on free loopback ports from templates in a scratch folder, and killed on drop.
//!
//! - [`Baresip`]: one baresip instance, with its own config folder (`baresip -f DIR`), an 8 kHz
//!   mono tone as its microphone (`aufile`), no speaker, and the
//!   `sndfile` filter recording what it heard into `DIR/rec/dump-…-dec.wav`. It is driven over
//!   the `ctrl_tcp` module (netstring JSON commands; its call events come back on the same
//!   connection).
//! - [`Kamailio`]: Kamailio with `tests/interop/kamailio.cfg` (registrar in memory and a
//!   record-routing stateful proxy), ready when it answers an OPTIONS.
//!
//! Every wait is bounded by a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::e2e::{pcm_hz, tone_wav};

/// A UDP port on loopback free for UDP and TCP, whose next port is free for TCP too: baresip
/// listens for SIP on UDP and TCP at its port and for SIP over TLS at the next one.
pub fn free_sip_port_pair() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

/// A free TCP port on loopback (released at once; the program under test binds it next).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The 20 ms frames (160 samples at 8 kHz) of `samples` that carry a tone of `hz` (±8 %)
/// loud enough to be speech-level audio rather than comfort noise.
#[allow(clippy::cast_precision_loss)] // sample counts of one frame
pub fn tone_frames(samples: &[i16], hz: f64) -> usize {
    samples
        .chunks_exact(160)
        .filter(|frame| {
            let energy = frame.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
            let rms = (energy / frame.len() as f64).sqrt();
            rms > 1000.0 && (pcm_hz(frame) - hz).abs() < hz * 0.08
        })
        .count()
}

/// The samples of a 16-bit mono WAV file as the `sndfile` module writes it: the `data` chunk to
/// the end of the file (a file still open has no final length in its header).
pub fn wav_samples(bytes: &[u8]) -> Vec<i16> {
    let Some(at) = bytes.windows(4).position(|w| w == b"data") else {
        return Vec::new();
    };
    bytes
        .get(at + 8..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// One baresip instance, killed on drop.
pub struct Baresip {
    child: Option<Child>,
    /// Its config folder (`config`, `accounts`, `tone.wav`, and `rec/` for the recordings).
    pub dir: PathBuf,
    /// Its SIP port on 127.0.0.1 (UDP and TCP; TLS on the next one).
    pub sip_port: u16,
    ctrl: TcpStream,
    messages: mpsc::Receiver<Value>,
    /// Every event and response received so far, for failure messages.
    pub seen: Vec<Value>,
    /// How many of `seen` [`Baresip::wait_event`] has passed over.
    cursor: usize,
    output: Arc<Mutex<String>>,
    token: u32,
}

impl Baresip {
    /// Starts baresip named `name` under `parent` with one account line `account` (e.g.
    /// `<sip:agent@127.0.0.1>;regint=0;answermode=auto`) playing a sine of `tone_hz`, and
    /// waits (at most 10 s) until its control socket answers. `extra` is appended to the config
    /// file.
    pub fn start(
        bin: &Path,
        parent: &Path,
        name: &str,
        account: &str,
        tone_hz: f64,
        extra: &str,
    ) -> Self {
        let dir = parent.join(name);
        std::fs::create_dir_all(dir.join("rec")).unwrap();
        std::fs::write(dir.join("tone.wav"), tone_wav(tone_hz, 30_000)).unwrap();
        std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
        // A SIP or control port taken by another test between our check and baresip's bind
        // makes it exit or run without control: start again on other ports.
        let mut last = String::new();
        for _ in 0..3 {
            let sip_port = free_sip_port_pair();
            let ctrl_port = free_tcp_port();
            let config = include_str!("../interop/baresip.config")
                .replace("@SIP_PORT@", &sip_port.to_string())
                .replace("@CTRL_PORT@", &ctrl_port.to_string())
                .replace("@DIR@", &dir.display().to_string())
                + extra;
            std::fs::write(dir.join("config"), config).unwrap();
            match Self::spawn(bin, &dir, sip_port, ctrl_port) {
                Ok(b) => return b,
                Err(why) => last = why,
            }
        }
        panic!("baresip {name} did not start in three tries:\n{last}");
    }

    fn spawn(bin: &Path, dir: &Path, sip_port: u16, ctrl_port: u16) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .arg("-f")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baresip");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            let text = output.lock().unwrap().clone();
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{text}"));
            }
            if text.contains("ctrl_tcp: failed") || text.contains("Address already in use") {
                let _ = child.kill();
                let _ = child.wait();
                return Err(text);
            }
            if text.contains("baresip is ready")
                && let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port))
            {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not ready within 10 s:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (tx, messages) = mpsc::channel();
        let mut reader = ctrl.try_clone().unwrap();
        std::thread::spawn(move || {
            while let Some(msg) = read_netstring(&mut reader) {
                let Ok(value) = serde_json::from_slice::<Value>(&msg) else {
                    continue;
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child: Some(child),
            dir: dir.to_owned(),
            sip_port,
            ctrl,
            messages,
            seen: Vec::new(),
            cursor: 0,
            output,
            token: 0,
        })
    }

    /// Sends a `ctrl_tcp` command and waits (at most 5 s) for its response; panics when
    /// baresip refuses it.
    pub fn command(&mut self, command: &str, params: &str) {
        self.token += 1;
        let token = self.token.to_string();
        let body =
            serde_json::json!({ "command": command, "params": params, "token": token }).to_string();
        let frame = format!("{}:{body},", body.len());
        self.ctrl.write_all(frame.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self.seen.iter().find(|m| {
                m["response"] == Value::Bool(true) && m["token"] == Value::String(token.clone())
            });
            if let Some(m) = found {
                assert_eq!(
                    m["ok"],
                    Value::Bool(true),
                    "baresip refused {command} {params}: {m}\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                self.pump(deadline),
                "no response to {command} {params}\n{}",
                self.log()
            );
        }
    }

    /// Receives one message into `seen`; `false` once `deadline` has passed.
    fn pump(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match self.messages.recv_timeout(left) {
            Ok(m) => {
                self.seen.push(m);
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(left.min(Duration::from_millis(50)));
                Instant::now() < deadline
            }
        }
    }

    /// Waits (at most `within`) for the next event of `kind` (`CALL_ESTABLISHED`,
    /// `CALL_CLOSED`, …) after the last one waited for; returns it.
    pub fn wait_event(&mut self, kind: &str, within: Duration) -> Value {
        self.next_event(kind, within)
            .unwrap_or_else(|| panic!("baresip: no {kind} event within {within:?}\n{}", self.log()))
    }

    /// [`Baresip::wait_event`] that returns `None` when the event does not come.
    pub fn next_event(&mut self, kind: &str, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.seen[self.cursor..]
                .iter()
                .position(|m| m["event"] == Value::Bool(true) && m["type"] == kind)
            {
                self.cursor += i + 1;
                return Some(self.seen[self.cursor - 1].clone());
            }
            if !self.pump(deadline) {
                return None;
            }
        }
    }

    /// Waits (at most `within`) until baresip's console output contains `needle` (events
    /// before the control connection, such as the first registration, are only seen there).
    pub fn wait_output(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "baresip: {needle:?} not printed within {within:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes in every message received so far; returns how many events of `kind` came in all.
    pub fn count_events(&mut self, kind: &str) -> usize {
        while let Ok(m) = self.messages.try_recv() {
            self.seen.push(m);
        }
        self.seen
            .iter()
            .filter(|m| m["event"] == Value::Bool(true) && m["type"] == kind)
            .count()
    }

    pub fn dial(&mut self, uri: &str) {
        self.command("dial", uri);
    }

    pub fn hangup(&mut self) {
        self.command("hangup", "");
    }

    /// Sends DTMF `keys` in the current call (RFC 4733 telephone-events).
    pub fn send_dtmf(&mut self, keys: &str) {
        self.command("sndcode", keys);
    }

    /// The samples this instance heard in its calls (every `*-dec.wav` recording, in name
    /// order).
    pub fn heard(&self) -> Vec<i16> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("rec"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|p| wav_samples(&std::fs::read(p).unwrap()))
            .collect()
    }

    /// Waits (at most `within`) until this instance's recording holds `frames` frames of a
    /// tone of `hz`; returns the count seen last.
    pub fn wait_heard(&self, hz: f64, frames: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let n = tone_frames(&self.heard(), hz);
            if n >= frames || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// baresip's console output and the control messages, for failure messages.
    pub fn log(&self) -> String {
        let events: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        format!(
            "--- baresip {} output:\n{}\n--- control messages:\n{}",
            self.dir.display(),
            self.output.lock().unwrap(),
            events.join("\n")
        )
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One netstring (`LEN:BYTES,`) from `r`; `None` at the end of the stream.
fn read_netstring(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut byte = [0u8; 1];
    loop {
        r.read_exact(&mut byte).ok()?;
        match byte[0] {
            b'0'..=b'9' => len = len.checked_mul(10)? + usize::from(byte[0] - b'0'),
            b':' => break,
            _ => return None,
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    r.read_exact(&mut byte).ok()?;
    (byte[0] == b',').then_some(body)
}

/// Kamailio with `tests/interop/kamailio.cfg` on a free UDP port, stopped on drop.
pub struct Kamailio {
    child: Option<Child>,
    pub port: u16,
    output: Arc<Mutex<String>>,
}

impl Kamailio {
    /// Starts Kamailio with the template written into `dir` (created) and waits (at most 10 s) until it
    /// answers an OPTIONS.
    pub fn start(bin: &Path, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            let port = super::e2e::free_udp_port();
            let cfg = dir.join("kamailio.cfg");
            std::fs::write(
                &cfg,
                include_str!("../interop/kamailio.cfg").replace("@PORT@", &port.to_string()),
            )
            .unwrap();
            let mut child = Command::new(bin)
                // Its own process group: dropping it ends the worker processes too.
                .process_group(0)
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-m", "64", "-M", "8"])
                .arg("-Y")
                .arg(dir)
                .arg("-w")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn kamailio");
            let output = Arc::new(Mutex::new(String::new()));
            let stderr = child.stderr.take().unwrap();
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
            let mut k = Self {
                child: Some(child),
                port,
                output,
            };
            if k.wait_ready() {
                return k;
            }
            last = k.log();
        }
        panic!("kamailio did not start in three tries:\n{last}");
    }

    /// Sends OPTIONS every 100 ms until a response comes (at most 10 s); `false` when Kamailio
    /// exited or stayed silent.
    fn wait_ready(&mut self) -> bool {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            let options = format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                fastrand::u32(..),
                fastrand::u64(..),
                port = self.port,
            );
            probe
                .send_to(options.as_bytes(), ("127.0.0.1", self.port))
                .unwrap();
            if let Ok((n, _)) = probe.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 ")
            {
                return true;
            }
        }
        false
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits (at most 5 s) until Kamailio's log contains `needle`; `false` when it does not.
    pub fn logged(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.output.lock().unwrap().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// How many lines of Kamailio's log so far contain `needle`.
    pub fn output_count(&self, needle: &str) -> usize {
        self.output
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Kamailio's log (its `xlog` lines name every request it routes), for failure messages.
    pub fn log(&self) -> String {
        format!("--- kamailio log:\n{}", self.output.lock().unwrap())
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets the main process stop its workers; after 5 s SIGKILL to the whole
            // process group (the workers too).
            let group = i32::try_from(child.id())
                .ok()
                .map(nix::unistd::Pid::from_raw);
            if let Some(g) = group {
                let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(g) = group {
                let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The call records in the SQLite database `db` once there are `count` of them (waiting at
/// most 10 s: records are written off the call's path).
pub fn call_records(db: &Path, count: usize) -> Vec<rgsd::store::CallRecord> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = rt.block_on(async {
            let url = rgsd::config::model::DatabaseUrl::Sqlite(db.to_owned());
            let store = rgsd::store::Store::connect(&url).await.unwrap();
            let from = chrono::DateTime::<chrono::Utc>::MIN_UTC;
            let to = chrono::DateTime::<chrono::Utc>::MAX_UTC;
            store.call_records_between(from, to).await.unwrap()
        });
        if records.len() >= count || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PEM files for TLS on loopback, made at test time: a CA (`ca`), and one certificate it
/// signed for 127.0.0.1 (`cert`, `key`; `bundle` holds both, as baresip's `sip_certificate`
/// wants) that rgsd and baresip both present.
pub struct LoopbackTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl LoopbackTls {
    pub fn new(dir: &Path) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "interop test CA");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Self {
            ca: write("ca.pem", &issuer.pem()),
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            bundle: write(
                "bundle.pem",
                &format!("{}{}", cert.pem(), key.serialize_pem()),
            ),
        }
    }
}
