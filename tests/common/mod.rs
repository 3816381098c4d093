//! Test harness shared by the integration tests: scratch folders, the real `rgsd` binary on
//! ephemeral ports, skip helpers.
#![allow(dead_code)] // each test binary uses a different part of the harness
#![allow(unreachable_pub)]
// `pub` here means "shared by the test binaries", not crate API
// Harness code outside #[test] fns: a failed unwrap is a test failure, and waiting on a real
// child process needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub fn rgsd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rgsd"))
}

/// A scratch folder removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Writes `rel` under the scratch folder, creating parent folders.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, contents).expect("write");
        p
    }
}

/// A minimal valid configuration on ephemeral loopback ports with a SQLite file `rgsd.db`.
pub fn minimal_config(extra: &str) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [30000, 30999]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
agents = ["sip:alice@127.0.0.1:5071"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[workflow]]
name = "Sales line"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
{extra}
"#
    )
}

/// A running `rgsd serve`, killed on drop.
pub struct Server {
    pub child: Option<Child>,
    pub sip: Vec<(String, SocketAddr)>,
    pub http: SocketAddr,
    /// Everything the daemon wrote on stderr so far is collected here by a reader thread.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `rgsd serve --config <config>` and waits (at most 60 s) for its READY line.
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(rgsd_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rgsd");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child: Some(child),
            sip: Vec::new(),
            http: "127.0.0.1:0".parse().unwrap(),
            stderr: log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("READY ") => {
                    server.parse_ready(&line);
                    return server;
                }
                Ok(_) => {}
                Err(_) => {
                    let status = server.child.as_mut().unwrap().try_wait().ok().flatten();
                    panic!(
                        "rgsd did not become ready (exit: {status:?}); stderr:\n{}",
                        server.stderr()
                    );
                }
            }
        }
    }

    fn parse_ready(&mut self, line: &str) {
        for part in line.split_whitespace().skip(1) {
            if let Some(list) = part.strip_prefix("sip=") {
                for item in list.split(',').filter(|s| !s.is_empty()) {
                    let (t, a) = item.split_once(':').expect("transport:addr");
                    self.sip.push((t.to_string(), a.parse().expect("sip addr")));
                }
            } else if let Some(a) = part.strip_prefix("http=") {
                self.http = a.parse().expect("http addr");
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.as_ref().unwrap().id()).unwrap())
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("kill");
    }

    /// Waits (at most `limit`) for the daemon to exit; returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rgsd did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most 10 s) until the daemon's stderr contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.stderr().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "log line {needle:?} not seen; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sip_addr(&self, transport: &str) -> SocketAddr {
        self.sip
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {transport} listener in {:?}", self.sip))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `rgsd <args>` to completion; returns (status, stdout, stderr).
pub fn run_rgsd(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(rgsd_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rgsd");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rgsd token create` against the file at `config`: the new token (the last word of the
/// command's last line, where it prints it once).
pub fn create_token(config: &str, role: &str, subject: &str) -> String {
    let (status, out, err) = run_rgsd(&[
        "token",
        "create",
        "--config",
        config,
        "--role",
        role,
        "--subject",
        subject,
    ]);
    assert!(status.success(), "{out}{err}");
    out.lines()
        .last()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned()
}

/// `Some(path)` when `cmd` is on PATH; otherwise prints why the test is skipped.
pub fn require(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let p = dir.join(cmd);
        if p.is_file() {
            return Some(p);
        }
    }
    println!("skipping: {cmd} not on PATH");
    None
}

/// The PostgreSQL URL for tests, from `RGSD_TEST_PG_URL`; prints why when it is not set.
pub fn pg_url() -> Option<String> {
    match std::env::var("RGSD_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            println!("skipping: RGSD_TEST_PG_URL not set");
            None
        }
    }
}
pub mod dns;
pub mod e2e;
pub mod http;
pub mod interop;
pub mod pg;
