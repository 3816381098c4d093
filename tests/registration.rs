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

/// A registrar in the test: takes one REGISTER within 10 s, answers 200 OK with the expiry the
/// request asked for, and returns the request's text.
fn answer_register(registrar: &std::net::UdpSocket) -> String {
    registrar
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    let (n, from) = registrar
        .recv_from(&mut buf)
        .expect("a REGISTER within 10 s");
    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(request.starts_with("REGISTER "), "{request}");
    let header = |name: &str| {
        request
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} in\n{request}"))
    };
    let response = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg1\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: {};expires={}\r\nContent-Length: 0\r\n\r\n",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        header("CSeq"),
        header("Contact"),
        header("Expires"),
    );
    registrar
        .send_to(response.as_bytes(), from)
        .expect("send the 200");
    request
}

fn expires_of(request: &str) -> &str {
    request
        .lines()
        .find_map(|l| l.strip_prefix("Expires:"))
        .map_or("", str::trim)
}

/// `[[registration]]` follows SIGHUP: an entry added to the file is registered (REGISTER with
/// its expiry seen by the registrar), an unchanged one is left alone, a changed one registers
/// again with its new settings, and a removed one is unregistered (REGISTER with `Expires: 0`
/// on the same Call-ID).
#[test]
fn sighup_starts_and_removes_a_registration() {
    use nix::sys::signal::Signal;
    let scratch = Scratch::new();
    let registrar = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = registrar.local_addr().unwrap().port();
    let cfg = scratch.write("rgsd.toml", minimal_config(""));
    let server = Server::start_with(&cfg, &[("RGSD_TEST_REG_PASSWORD", "s3cret")]);
    // Nothing registers before the entry exists.
    registrar
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(registrar.recv_from(&mut [0u8; 64]).is_err());

    let entry = format!(
        r#"
[[registration]]
aor = "sip:sales@127.0.0.1"
registrar = "sip:127.0.0.1:{port}"
username = "sales"
password_env = "RGSD_TEST_REG_PASSWORD"
expires = "600s"
"#
    );
    scratch.write("rgsd.toml", minimal_config(&entry));
    server.signal(Signal::SIGHUP);
    let register = answer_register(&registrar);
    assert_eq!(expires_of(&register), "600", "{register}");
    assert!(register.contains("sip:sales@127.0.0.1"), "{register}");
    server.wait_log("Registered");
    server.wait_log("started=1 removed=0 restarted=0 unchanged=0");

    // The same file again: nothing changes, no REGISTER.
    server.signal(Signal::SIGHUP);
    server.wait_log("started=0 removed=0 restarted=0 unchanged=1");

    // A changed expiry registers again at once, with the new value.
    scratch.write(
        "rgsd.toml",
        minimal_config(&entry.replace("\"600s\"", "\"300s\"")),
    );
    server.signal(Signal::SIGHUP);
    let register = answer_register(&registrar);
    assert_eq!(expires_of(&register), "300", "{register}");
    server.wait_log("started=0 removed=0 restarted=1 unchanged=0");

    scratch.write("rgsd.toml", minimal_config(""));
    server.signal(Signal::SIGHUP);
    let unregister = answer_register(&registrar);
    assert_eq!(expires_of(&unregister), "0", "{unregister}");
    let call_id = |r: &str| {
        r.lines()
            .find(|l| l.starts_with("Call-ID:"))
            .map(str::to_owned)
    };
    assert_eq!(call_id(&unregister), call_id(&register));
    server.wait_log("registration removed (unregistered)");
    assert!(!server.stderr().contains("s3cret"), "{}", server.stderr());
}
