//! schemathesis (PyPI) against the real binary: it reads `/api/openapi.json`, generates requests
//! for every operation (examples, coverage, fuzzing and stateful sequences through the
//! document's links) with an administrator's token, and checks every response: never a 5xx,
//! the status code, content type, headers and body as documented, and no route that says it
//! needs credentials answering without them.
//!
//! Bounded: a few examples per operation and a time budget. `scripts/test` installs
//! schemathesis (`pip install schemathesis`) when run as root; without it the test says why it
//! skips, unless it runs as root, where a missing schemathesis is a failure (the suite was not
//! set up by `scripts/test`).
// Test harness: a failed unwrap is a test failure; waiting on child processes needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, Server, run_rgsd};

/// The checks run; `all` would add `positive_data_acceptance`, which cannot hold for bodies
/// documented as free-form objects (an object's TOML table is checked by the configuration
/// compiler, not by a JSON schema), and `negative_data_rejection` likewise.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,ignored_auth";

/// Longest a run may take (schemathesis' own budget is smaller).
const LIMIT: Duration = Duration::from_secs(300);

fn schemathesis() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("schemathesis"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        // `/proc/self` belongs to the process's effective user.
        let root = std::fs::metadata("/proc/self")
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        assert!(
            !root,
            "schemathesis is not installed: scripts/test installs it (pip install schemathesis)"
        );
        println!(
            "skipping: schemathesis not installed (pip install schemathesis; scripts/test does it as root)"
        );
    }
    found
}

const CONFIG: &str = r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [27400, 27599]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
participation = "formal"
agents = ["sip:alice@127.0.0.1:5071", "sip:bob@127.0.0.1:5072"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[hours]]
name = "Office"
monday = ["09:00-17:00"]

[[workflow]]
name = "Sales line"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
"#;

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let Some(st) = schemathesis() else {
        return;
    };
    let scratch = Scratch::new();
    let path = scratch.write("rgsd.toml", CONFIG);
    let (status, out, err) = run_rgsd(&[
        "token",
        "create",
        "--config",
        path.to_str().unwrap(),
        "--role",
        "admin",
        "--subject",
        "root",
    ]);
    assert!(status.success(), "{out}{err}");
    let token = out.lines().last().unwrap().trim().to_owned();
    let server = Server::start(&path);
    let url = format!("http://{}/api/openapi.json", server.http);

    let mut child = Command::new(st)
        .arg("run")
        .arg(&url)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", "5", "--max-time", "40", "--workers", "2"])
        .args(["--request-timeout", "10", "--no-color"])
        // PUT /api/prompts/{name} takes a WAV body, which schemathesis cannot generate; the
        // upload is covered by tests/api.rs.
        .args(["--exclude-operation-id", "upload"])
        .current_dir(scratch.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run schemathesis");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = reader.join().unwrap();
    let mut errors = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut errors);
    println!("{report}");
    assert!(
        status.success(),
        "schemathesis found problems ({status}):\n{report}\n{errors}\nrgsd:\n{}",
        server.stderr()
    );
    // It did test: every documented operation but the upload was selected.
    assert!(report.contains("Selected:"), "{report}");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}
