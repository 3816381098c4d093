//! Objects created through the API with the real binary: a workflow created through
//! `POST /api/workflows` answers a SIP call at once (no restart) and survives SIGHUP (a reload is
//! the file plus the database); `rgsd import`, `rgsd export` and `rgsd check --database` round-trip
//! and check the same objects.
// Test harness: a failed unwrap is a test failure; waiting on child processes and sockets
// needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::e2e::{Ua, group, hunt_group, server_section, start};
use common::http::http;
use common::{Scratch, run_rgsd};

/// The final status of one INVITE to `uri` (a 200 is ended with BYE).
fn call(server: &common::Server, uri: &str) -> u16 {
    let sip = server.sip[0].1;
    let mut ua = Ua::new(sip);
    let code = ua.call_status(uri);
    if code == 200 {
        ua.bye();
    }
    code
}

#[test]
fn a_workflow_created_through_the_api_answers_at_once_and_survives_sighup() {
    let scratch = Scratch::new();
    let config =
        server_section(26000) + &group("Sales agents", "serial", &[5999]) + &hunt_group("Sales");
    let path = scratch.write("rgsd.toml", &config);
    let admin = common::create_token(path.to_str().unwrap(), "admin", "root");
    let server = start(&scratch, &config);
    let night = "sip:night@127.0.0.1";
    assert_eq!(call(&server, night), 404, "{}", server.stderr());

    let started = Instant::now();
    let (code, body) = http(
        server.http,
        "POST",
        "/api/workflows",
        Some(&admin),
        Some(
            &json!({ "name": "Night line", "kind": "hunt_group", "uri": night, "queue": "Sales" })
                .to_string(),
        ),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(call(&server, night), 200, "{}", server.stderr());
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}"
    );

    // Deactivated through the API: the next call gets 480 (an inactive workflow).
    let (code, body) = http(
        server.http,
        "PATCH",
        "/api/workflows/Night%20line",
        Some(&admin),
        Some(&json!({ "active": false }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(call(&server, night), 480);

    // SIGHUP reloads the file and keeps the database's objects.
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("reloaded: ") {
        assert!(Instant::now() < deadline, "no reload\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.stderr().contains("reloaded: 2 workflows"),
        "{}",
        server.stderr()
    );
    let (code, body) = http(
        server.http,
        "PATCH",
        "/api/workflows/Night%20line",
        Some(&admin),
        Some(&json!({ "active": true }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(call(&server, night), 200, "{}", server.stderr());

    // A file edit that clashes with a database object: the reload is refused, the problem is
    // named by the database object and field, and the running model stays.
    scratch.write(
        "rgsd.toml",
        config.clone()
            + "\n[[workflow]]\nname = \"Clash\"\nkind = \"hunt_group\"\nuri = \"sip:night@127.0.0.1\"\nqueue = \"Sales\"\n",
    );
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let uri_line = config.matches('\n').count() + 5;
    assert!(
        server.stderr().contains(&format!("workflows/Night line: error: uri: sip:night@127.0.0.1 is already the URI of the workflow on line {uri_line} of ")),
        "{}",
        server.stderr()
    );
    assert_eq!(call(&server, night), 200, "{}", server.stderr());
}

/// An edit of the file that was not signalled with SIGHUP does not come into force with a
/// change made through the API: the change is compiled against the file as the model in force
/// read it. SIGHUP then applies the edit.
#[test]
fn an_unsignalled_file_edit_stays_out_of_an_api_change() {
    let scratch = Scratch::new();
    let config =
        server_section(26100) + &group("Sales agents", "serial", &[5998]) + &hunt_group("Sales");
    let path = scratch.write("rgsd.toml", &config);
    let admin = common::create_token(path.to_str().unwrap(), "admin", "root");
    let server = start(&scratch, &config);
    let edited = "sip:edited@127.0.0.1";
    let night = "sip:night@127.0.0.1";

    // The file gains a workflow on disk; nobody sends SIGHUP.
    scratch.write(
        "rgsd.toml",
        config.clone()
            + &format!("\n[[workflow]]\nname = \"Edited\"\nkind = \"hunt_group\"\nuri = \"{edited}\"\nqueue = \"Sales\"\n"),
    );
    let (code, body) = http(
        server.http,
        "POST",
        "/api/workflows",
        Some(&admin),
        Some(
            &json!({ "name": "Night line", "kind": "hunt_group", "uri": night, "queue": "Sales" })
                .to_string(),
        ),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(call(&server, night), 200, "{}", server.stderr());
    assert_eq!(
        call(&server, edited),
        404,
        "the unsignalled edit came into force"
    );
    let (code, body) = http(server.http, "GET", "/api/workflows", Some(&admin), None);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("Edited"), "{body}");

    server.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("reloaded: ") {
        assert!(Instant::now() < deadline, "no reload\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(call(&server, edited), 200, "{}", server.stderr());
    assert_eq!(call(&server, night), 200, "{}", server.stderr());
}

#[test]
fn import_export_and_check_with_the_database() {
    let scratch = Scratch::new();
    let config =
        server_section(26200) + &group("Sales agents", "serial", &[5998]) + &hunt_group("Sales");
    let path = scratch.write("rgsd.toml", &config);
    let config = path.to_str().unwrap();
    let objects = r#"
[[hours]]
name = "Evenings"
monday = ["18:00-20:00", "21:00-23:00"]

[[queue]]
name = "Night"
agent_groups = ["Sales agents"]
timeout = { after = "60s", action = { queue = "Sales" } }

[[workflow]]
name = "Night line"
kind = "hunt_group"
uri = "sip:night@127.0.0.1"
queue = "Night"
business_hours = "Evenings"
out_of_hours = { action = "disconnect" }
"#;
    let import = scratch.write("objects.toml", objects);
    let import = import.to_str().unwrap();
    let (status, out, err) = run_rgsd(&["import", "--config", config, import]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("imported 3 object(s)"), "{out}");

    // Names that exist are refused, nothing written.
    let (status, _, err) = run_rgsd(&["import", "--config", config, import]);
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(err.contains("exist already"), "{err}");

    // Export gives back the same tables.
    let (status, out, err) = run_rgsd(&["export", "--config", config]);
    assert!(status.success(), "{err}");
    let exported: toml::Table = toml::from_str(&out).unwrap();
    let original: toml::Table = toml::from_str(objects).unwrap();
    assert_eq!(exported, original, "{out}");

    let (status, out, err) = run_rgsd(&[
        "check",
        "--config",
        config,
        "--database",
        "--no-environment",
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("3 object(s) from the database"), "{out}");

    // An invalid import names the object and the key, as `rgsd check` words it.
    let bad = scratch.write(
        "bad.toml",
        "[[queue]]\nname = \"Slow\"\nagent_groups = [\"Sales agents\"]\ntimeout = { after = \"5s\" }\n",
    );
    let (status, _, err) = run_rgsd(&["import", "--config", config, bad.to_str().unwrap()]);
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(
        err.contains("queues/Slow: error: timeout.after: 5s is below the minimum 10s"),
        "{err}"
    );
    // The file alone cannot name a database object.
    let with_ref = std::fs::read_to_string(&path)
        .unwrap()
        .replace("queue = \"Sales\"\n", "queue = \"Night\"\n");
    scratch.write("rgsd.toml", with_ref);
    let (status, _, err) = run_rgsd(&[
        "check",
        "--config",
        config,
        "--database",
        "--no-environment",
    ]);
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(err.contains("rgsd.toml:"), "{err}");
}
