//! Trunk numbers through the real binary: a carrier's `INVITE tel:+…` or
//! `INVITE sip:+…@host;user=phone`, raw over UDP, reaches the workflow whose `line_uri` is that
//! number (README "Connect a SIP trunk").
// Test harness: a failed unwrap is a test failure; waiting on the daemon needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::Scratch;
use common::e2e::{Ua, free_udp_port, group, server_section, start};

/// Sales on `tel:+1 (425) 555-0100` (written with separators), Support on +14255550199 but
/// inactive, both through a queue whose agent never answers (rgsd answers the caller itself).
fn config() -> String {
    server_section(33400)
        + &group("Sales agents", "serial", &[free_udp_port()])
        + r#"
[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[workflow]]
name = "Sales line"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
line_uri = "tel:+1 (425) 555-0100"
queue = "Sales"

[[workflow]]
name = "Support line"
kind = "hunt_group"
uri = "sip:support@127.0.0.1"
line_uri = "tel:+14255550199"
active = false
queue = "Sales"
"#
}

#[test]
fn trunk_invites_reach_the_workflow_of_their_number() {
    let scratch = Scratch::new();
    let server = start(&scratch, &config());
    let sip = server.sip_addr("udp");
    for uri in [
        "sip:+14255550100@127.0.0.1;user=phone",
        "tel:+14255550100",
        "tel:+1-425-555-0100;phone-context=+1",
        "sip:14255550100@10.9.9.9",
        // The SIP URI still works.
        "sip:sales@127.0.0.1",
    ] {
        let mut ua = Ua::new(sip);
        assert_eq!(ua.call_status(uri), 200, "{uri}:\n{}", ua.log);
        ua.bye();
    }
    // Support's number reaches Support, which is inactive (480, not Sales' 200).
    for (uri, want) in [
        ("tel:+14255550199", 480),
        ("sip:+14255550199@127.0.0.1;user=phone", 480),
        // No workflow has these numbers.
        ("tel:+14255550101", 404),
        ("sip:+14255550101@127.0.0.1;user=phone", 404),
        ("tel:+", 404),
        // Not a scheme rgsd routes.
        ("urn:service:sos", 416),
        ("mailto:sales@127.0.0.1", 416),
    ] {
        let mut ua = Ua::new(sip);
        assert_eq!(ua.call_status(uri), want, "{uri}:\n{}", ua.log);
    }
    // None of that disturbed the daemon: Sales still answers.
    let mut ua = Ua::new(sip);
    assert_eq!(ua.call_status("tel:+14255550100"), 200, "{}", ua.log);
    ua.bye();
}

/// The README's "Connect a SIP trunk" example loads as written (with the Sales queue it names),
/// and every Request-URI its table says reaches Sales does, through the router's maps.
#[test]
fn the_readme_trunk_example_loads_and_its_table_is_what_routing_does() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Connect a SIP trunk")
        .nth(1)
        .expect("README has a \"Connect a SIP trunk\" section");
    let section = section.split("\n## ").next().unwrap();
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a toml example");
    let scratch = Scratch::new();
    let path = scratch.write(
        "rgsd.toml",
        format!(
            "{example}\n[[agent_group]]\nname = \"Sales agents\"\nagents = [\"sip:alice@192.0.2.20\"]\n\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n"
        ),
    );
    let opts = rgsd::config::LoadOptions {
        check_environment: false,
    };
    let config = rgsd::config::load(&path, &opts)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .config;
    let line = config.workflows[0].line_uri.as_ref().unwrap();
    assert_eq!(line.number.to_string(), "+14255550100");
    let routes = rgsd::acd::Routes::new(&config);
    let rows: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for uri in rows {
        assert_eq!(
            routes.lookup(uri),
            Some(rgsd::config::model::WorkflowId(0)),
            "{uri}"
        );
    }
    for other in ["sip:4255550100@192.0.2.10", "sip:0014255550100@192.0.2.10"] {
        assert_eq!(routes.lookup(other), None, "{other}");
    }
}
