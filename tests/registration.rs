//! The real binary registers a workflow URI with a registrar that challenges it (SIPp playing
//! the registrar, checking the MD5 digest), and never logs the password.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Scratch, Server, minimal_config, require};

#[test]
fn serve_registers_through_a_digest_challenge_without_logging_the_secret() {
    let Some(sipp) = require("sipp") else { return };
    let scratch = Scratch::new();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let mut registrar = Command::new(sipp)
        .arg("-sf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/registrar_digest.xml"))
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
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg("-error_file")
        .arg(scratch.path().join("errors.log"))
        .current_dir(scratch.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    let extra = format!(
        r#"
[[registration]]
aor = "sip:sales@127.0.0.1"
registrar = "sip:127.0.0.1:{port}"
username = "sales"
password_env = "RGSD_TEST_REG_PASSWORD"
expires = "600s"
"#
    );
    let cfg = scratch.write("rgsd.toml", minimal_config(&extra));
    let server = Server::start_with(&cfg, &[("RGSD_TEST_REG_PASSWORD", "s3cret")]);
    let status = (0..3000)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            registrar.try_wait().expect("wait sipp")
        })
        .unwrap_or_else(|| {
            let _ = registrar.kill();
            panic!("SIPp registrar did not finish; rgsd:\n{}", server.stderr())
        });
    let errors = std::fs::read_to_string(scratch.path().join("errors.log")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "SIPp registrar failed (403 = wrong digest):\n{errors}\nrgsd:\n{}",
        server.stderr()
    );
    // SIPp's scenario also ends "successfully" after refusing bad credentials with 403, so
    // the proof of registration is rgsd's own state change.
    server.wait_log("Registered");
    assert!(
        !server.stderr().contains("s3cret"),
        "the password reached the log:\n{}",
        server.stderr()
    );
}
