//! `/api/agent-groups` is the one collection of agent groups: it shows each group's `id` (for
//! the sign-in endpoint) and a formal group's members signed in, for file and database groups,
//! and a document read back can be sent back as is.
// Test harness: a failed unwrap is a test failure; waiting on child processes needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use serde_json::{Value, json};

use common::http::http;
use common::{Scratch, Server, run_rgsd};

const CONFIG: &str = r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [27200, 27399]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
participation = "formal"
agents = ["sip:alice@127.0.0.1", "sip:bob@127.0.0.1"]

[[agent_group]]
name = "Support agents"
agents = ["sip:carol@127.0.0.1"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]
"#;

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn agent_groups_show_their_id_and_who_is_signed_in() {
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
    let admin = out.lines().last().unwrap().trim().to_owned();
    let server = Server::start(&path);
    let api = |method: &str, path: &str, body: Option<Value>| {
        let (code, text) = http(
            server.http,
            method,
            path,
            Some(&admin),
            body.map(|b| b.to_string()).as_deref(),
        );
        (code, text)
    };

    // A database group next to the file's.
    let (code, body) = api(
        "POST",
        "/api/agent-groups",
        Some(json!({ "name": "Night agents", "participation": "formal",
                     "agents": ["sip:dave@127.0.0.1", "sip:alice@127.0.0.1"] })),
    );
    assert_eq!(code, 201, "{body}");
    let night = json_of(&body);
    assert_eq!(night["signed_in"], json!([]), "{night}");
    assert!(night["id"].is_i64(), "{night}");

    let (code, body) = api("GET", "/api/agent-groups", None);
    assert_eq!(code, 200, "{body}");
    let list = json_of(&body);
    let by_name = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {list}"))
    };
    let sales = by_name("Sales agents");
    assert_eq!(sales["signed_in"], json!([]));
    // An informal group has no sign-in state to show.
    assert!(
        by_name("Support agents").get("signed_in").is_none(),
        "{list}"
    );

    // Alice signs in to both formal groups, by the ids shown here.
    let (code, body) = api("GET", "/api/agents", None);
    assert_eq!(code, 200, "{body}");
    let alice = json_of(&body)
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["sip_uri"] == "sip:alice@127.0.0.1")
        .map(|a| a["id"].as_i64().unwrap())
        .unwrap();
    for group in [&sales, &night] {
        let (code, body) = api(
            "PUT",
            &format!("/api/groups/{}/sign-ins/{alice}", group["id"]),
            Some(json!({ "signed_in": true })),
        );
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = api("GET", "/api/agent-groups/Sales%20agents", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["signed_in"], json!(["sip:alice@127.0.0.1"]));
    let (code, body) = api("GET", "/api/agent-groups/Night%20agents", None);
    assert_eq!(code, 200, "{body}");
    let night = json_of(&body);
    assert_eq!(
        night["signed_in"],
        json!(["sip:alice@127.0.0.1"]),
        "{night}"
    );

    // The document read back is a valid replacement: `id` and `signed_in` are ignored.
    let mut replaced = night.clone();
    replaced["alert_time"] = json!("30s");
    let (code, body) = api("PUT", "/api/agent-groups/Night%20agents", Some(replaced));
    assert_eq!(code, 200, "{body}");
    let after = json_of(&body);
    assert_eq!(after["alert_time"], "30s");
    assert_eq!(after["version"], 2);
    // Alice is still signed in (the change kept the membership).
    assert_eq!(
        after["signed_in"],
        json!(["sip:alice@127.0.0.1"]),
        "{after}"
    );
}
