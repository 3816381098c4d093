//! The real binary: start, database created, signals, reload, check and migrate.

mod common;

use std::time::Duration;

use common::{Scratch, Server, minimal_config, run_rgsd};
use nix::sys::signal::Signal;

#[test]
fn serve_creates_the_database_and_stops_on_sigterm_with_exit_0() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let db = scratch.path().join("rgsd.db");
    assert!(!db.exists());
    let mut server = Server::start(&cfg);
    assert!(
        db.exists(),
        "SQLite database not created at {}",
        db.display()
    );
    assert_ne!(
        server.http.port(),
        0,
        "READY line must carry the bound port"
    );
    assert!(server.sip_addr("udp").port() != 0);
    assert!(server.sip_addr("tcp").port() != 0);
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(40));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
}

#[test]
fn sigint_stops_at_once_with_exit_0() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let mut server = Server::start(&cfg);
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
}

#[test]
fn http_health_answers_while_running() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let server = Server::start(&cfg);
    let mut stream = std::net::TcpStream::connect(server.http).expect("connect http");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("ok"), "{reply}");
}

#[test]
fn a_config_error_at_start_exits_78_with_the_same_messages_as_check() {
    let scratch = Scratch::new();
    let cfg = scratch.write(
        "rgsd.toml",
        minimal_config("").replace(r#"queue = "Sales""#, r#"queue = "Nowhere""#),
    );
    let cfg = cfg.to_str().unwrap();
    let (serve_status, _, serve_err) = run_rgsd(&["serve", "--config", cfg]);
    let (check_status, _, check_err) = run_rgsd(&["check", "--config", cfg]);
    assert_eq!(serve_status.code(), Some(78), "{serve_err}");
    assert_eq!(check_status.code(), Some(78), "{check_err}");
    let line = check_err
        .lines()
        .find(|l| l.contains("Nowhere"))
        .unwrap_or_else(|| panic!("check names the bad reference:\n{check_err}"));
    assert!(
        line.contains("rgsd.toml:"),
        "names the file and line: {line}"
    );
    assert!(
        serve_err.contains(line),
        "serve prints the same line:\n{serve_err}"
    );
    assert!(
        !scratch.path().join("rgsd.db").exists(),
        "no database on a bad config"
    );
}

#[test]
fn check_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rgsd.toml");
    let (status, out, err) = run_rgsd(&["check", "--config", example]);
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("2 workflows"), "{out}");
}

#[test]
fn migrate_creates_the_schema_and_exits_0() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let (status, out, err) = run_rgsd(&["migrate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(scratch.path().join("rgsd.db").exists());
    // Twice is fine.
    let (status, _, err) = run_rgsd(&["migrate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn sighup_reloads_a_good_file_and_keeps_running_on_a_bad_one() {
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let mut server = Server::start(&cfg);
    // A broken file: the daemon reports it and keeps the running configuration.
    scratch.write("rgsd.toml", "[server\n");
    server.signal(Signal::SIGHUP);
    server.wait_log("reload refused");
    // A good file with one more workflow.
    let extra = r#"
[[workflow]]
name = "Second line"
kind = "hunt_group"
uri = "sip:second@127.0.0.1"
queue = "Sales"
"#;
    scratch.write("rgsd.toml", minimal_config(extra));
    server.signal(Signal::SIGHUP);
    server.wait_log("reloaded: 2 workflows");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(40)).code(), Some(0));
}

#[test]
fn serve_raises_its_open_files_soft_limit_to_the_hard_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // nextest runs each test in its own process: lowering this one's soft limit is inherited by
    // the rgsd it starts and by nothing else.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard > 256,
        "the hard limit here ({hard}) leaves nothing to raise"
    );
    setrlimit(Resource::RLIMIT_NOFILE, 256, hard).unwrap();
    let scratch = Scratch::new();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let server = Server::start(&cfg);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers, vec![hard, hard], "{line}");
}
