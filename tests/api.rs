//! The HTTP API end to end: every role's allowed and refused cases, sign-in reaching the routing
//! table and the store, live state and SSE, reports against a known set of call records, metrics,
//! the OpenAPI document covering every route, and tokens issued by the real binary used against
//! the real `rgsd serve`.
//!
//! The in-process suite ([`suite`]) runs on SQLite always and on PostgreSQL when
//! `RGSD_TEST_PG_URL` names a server (a scratch database per run, dropped afterwards).

// Test code: a failed `unwrap` is how a test fails; deadlines in the real-binary test are real.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rgsd::acd::runtime::{Acd, PromptCache};
use rgsd::api::Shared;
use rgsd::api::objects::Objects;
use rgsd::api::reports::fixture;
use rgsd::api::{self, Live};
use rgsd::api::{CallPhase, LiveCall};
use rgsd::clock::ManualClock;
use rgsd::config::LoadOptions;
use rgsd::config::model::{Config, SipUri, SrtpPolicy};
use rgsd::store::{RecordWriter, Role, Store, WriterOptions};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::Scratch;
use common::http::http;
use common::pg::ScratchDatabase;

const ALICE: &str = "sip:alice@127.0.0.1";
const BOB: &str = "sip:bob@127.0.0.1";
const CAROL: &str = "sip:carol@127.0.0.1";
const DAVE: &str = "sip:dave@127.0.0.1";
const MANAGER: &str = "sip:manager@127.0.0.1";

/// Three workflows, each with its queue and group; the manager manages "Sales" only.
fn config_text(database: &str) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [30000, 30999]
http_listen = "127.0.0.1:0"
database = "{database}"
trusted_peers = ["127.0.0.0/8"]
# A workflow's srtp other than "off" is accepted without a tls: listener (the API tests speak no SIP).
allow_sdes_over_plain_sip = true

[[agent_group]]
name = "Sales agents"
participation = "formal"
routing = "serial"
agents = ["{ALICE}", "{BOB}"]

[[agent_group]]
name = "Support agents"
participation = "informal"
agents = ["{CAROL}"]

[[agent_group]]
name = "Other agents"
participation = "formal"
agents = ["{DAVE}"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[queue]]
name = "Support"
agent_groups = ["Support agents"]

[[queue]]
name = "Other"
agent_groups = ["Other agents"]

[[workflow]]
name = "Sales"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
managers = ["{MANAGER}"]

[[workflow]]
name = "Support"
kind = "hunt_group"
uri = "sip:support@127.0.0.1"
queue = "Support"

[[workflow]]
name = "Other"
kind = "hunt_group"
uri = "sip:other@127.0.0.1"
queue = "Other"
"#
    )
}

/// The 1-based line where `needle` starts in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

struct App {
    router: Router,
    shared: Shared,
    clock: Arc<ManualClock>,
    admin: String,
    manager: String,
    alice: String,
    _scratch: Scratch,
}

/// 2026-11-26T10:00:00Z plus `s` seconds (the fixture's time line).
fn at(s: i64) -> DateTime<Utc> {
    fixture::at(s)
}

/// What `Daemon::start` builds, without the listeners.
async fn app(database: &str) -> App {
    let scratch = Scratch::new();
    let path = scratch.write("rgsd.toml", config_text(database));
    let options = LoadOptions {
        check_environment: false,
    };
    let merged =
        rgsd::config::load_merged(&path, &[], &options).unwrap_or_else(|d| panic!("{d:?}"));
    let config = merged.loaded.config.clone();
    let clock = Arc::new(ManualClock::new(at(10_000)));
    let store = Store::connect(&config.server.database)
        .await
        .unwrap()
        .with_clock(clock.clone());
    store.migrate().await.unwrap();
    let acd = Arc::new(
        Acd::start(config, Some(store.clone()), PromptCache::Default)
            .await
            .unwrap(),
    );
    let live = Live::new(Arc::clone(&acd), clock.clone());
    let shared = Shared {
        config: acd.routed(),
        store: store.clone(),
        clock: clock.clone(),
        live: Arc::new(live),
        revocations: Default::default(),
        objects: Objects::new(Objects::through(Arc::clone(&acd)), &merged, options),
    };
    let token = |role, subject: &'static str| {
        let store = store.clone();
        async move {
            store
                .create_token(role, subject)
                .await
                .unwrap()
                .token
                .expose()
                .to_owned()
        }
    };
    App {
        router: api::router(shared.clone()),
        admin: token(Role::Admin, "admin").await,
        manager: token(Role::Manager, MANAGER).await,
        alice: token(Role::Agent, ALICE).await,
        shared,
        clock,
        _scratch: scratch,
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// Asserts a 4xx with the JSON error body and `code`.
    fn refused(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        body
    }
}

async fn send(
    app: &App,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        content_type,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &App, path: &str, token: &str) -> Reply {
    send(app, "GET", path, Some(token), None).await
}

async fn put(app: &App, path: &str, token: &str, body: Value) -> Reply {
    send(app, "PUT", path, Some(token), Some(&body.to_string())).await
}

async fn post(app: &App, path: &str, token: &str, body: Value) -> Reply {
    send(app, "POST", path, Some(token), Some(&body.to_string())).await
}

async fn group_id(app: &App, name: &str) -> i64 {
    app.shared.store.get_group_by_name(name).await.unwrap().id.0
}

async fn agent_id(app: &App, uri: &str) -> i64 {
    app.shared
        .store
        .get_agent_by_uri(&SipUri(uri.into()))
        .await
        .unwrap()
        .id
        .0
}

fn routed(app: &App, agent: &str, group: &str) -> Option<bool> {
    app.shared.live.is_signed_in(&SipUri(agent.into()), group)
}

/// The value of `series` (exact name and labels) in `/metrics`.
async fn metric(app: &App, series: &str) -> f64 {
    let doc = send(app, "GET", "/metrics", None, None).await.text;
    doc.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing in\n{doc}"))
        .parse()
        .unwrap()
}

/// The call driver's reports (through `Live`'s `CallObserver`) land in `/api/live/calls` and
/// `/metrics`: an update lists the call, its end unlists it, counts the outcome and observes
/// the wait; a call refused before any update is counted without touching the list.
async fn call_observer_feeds_live_calls_and_metrics(app: &App) {
    use rgsd::acd::{CallObserver, CallSnapshot, CallStage};
    use rgsd::store::CallOutcome;
    let observer: &dyn CallObserver = app.shared.live.as_ref();
    let answered = "rgsd_calls_total{outcome=\"answered\"}";
    let rejected = "rgsd_calls_total{outcome=\"rejected\"}";
    let le5 = "rgsd_queue_wait_seconds_bucket{le=\"5\"}";
    let le1 = "rgsd_queue_wait_seconds_bucket{le=\"1\"}";
    let count = "rgsd_queue_wait_seconds_count";
    let before: Vec<f64> = futures_util::future::join_all(
        [answered, rejected, le5, le1, count].map(|s| metric(app, s)),
    )
    .await;
    let listed = |calls: &Value| {
        calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call_id"] == "obs-1@127.0.0.1")
            .cloned()
    };
    let now = app.clock.now_utc_for_test();
    let mut call = CallSnapshot {
        call_id: "obs-1@127.0.0.1".into(),
        workflow: "Sales".into(),
        caller: "sip:+15550002@trunk.example".into(),
        stage: CallStage::Greeting,
        arrived_at: now,
        queue: None,
        queued_at: None,
        agent: None,
    };
    observer.call_updated(&call);
    call.stage = CallStage::Talking;
    call.queue = Some("Sales".into());
    call.queued_at = Some(now);
    call.agent = Some(ALICE.into());
    observer.call_updated(&call);
    let calls = get(app, "/api/live/calls", &app.admin).await.json();
    let c = listed(&calls).unwrap_or_else(|| panic!("not listed: {calls}"));
    assert_eq!(c["phase"], "talking");
    assert_eq!(c["agent"], ALICE);
    assert_eq!(c["queue"], "Sales");
    observer.call_ended(
        "obs-1@127.0.0.1",
        CallOutcome::Answered,
        Some(Duration::from_secs(3)),
    );
    observer.call_ended("refused@127.0.0.1", CallOutcome::Rejected, None);
    let calls = get(app, "/api/live/calls", &app.admin).await.json();
    assert!(listed(&calls).is_none(), "{calls}");
    let after: Vec<f64> = futures_util::future::join_all(
        [answered, rejected, le5, le1, count].map(|s| metric(app, s)),
    )
    .await;
    let delta: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // answered +1, rejected +1, a 3 s wait in le=5 (not le=1), one wait observed (not two).
    assert_eq!(delta, [1.0, 1.0, 1.0, 0.0, 1.0]);
}

/// Every assertion, on whichever backend `app` runs.
async fn suite(app: App) {
    authentication(&app).await;
    bad_input(&app).await;
    admin_agents_and_groups(&app).await;
    sign_in_reaches_routing_store_and_audit(&app).await;
    manager_scope(&app).await;
    agent_self_only(&app).await;
    wrap_up_through_the_api(&app).await;
    live_state_and_metrics(&app).await;
    call_observer_feeds_live_calls_and_metrics(&app).await;
    server_sent_events(&app).await;
    revoking_a_token_ends_its_streams(&app).await;
    reports(&app).await;
    objects_through_every_collection(&app).await;
    objects_and_a_manager(&app).await;
    workflow_srtp(&app).await;
    objects_refuse_every_range(&app).await;
    each_collection_creates_reads_replaces_patches_and_deletes(&app).await;
    prompts_are_converted_once_and_used_by_file(&app).await;
    openapi_covers_every_route(&app).await;
    sign_in_survives_a_restart(&app).await;
    app.shared.store.close().await;
}

async fn authentication(app: &App) {
    send(app, "GET", "/api/agents", None, None)
        .await
        .refused(401, "unauthenticated");
    get(app, "/api/agents", "rgsd_0000")
        .await
        .refused(401, "unauthenticated");
    get(app, "/api/agents", "not-even-a-token")
        .await
        .refused(401, "unauthenticated");
    // A revoked token stops working.
    let issued = app
        .shared
        .store
        .create_token(Role::Admin, "temp")
        .await
        .unwrap();
    assert_eq!(
        get(app, "/api/agents", issued.token.expose()).await.status,
        200
    );
    app.shared.store.revoke_token(issued.info.id).await.unwrap();
    get(app, "/api/agents", issued.token.expose())
        .await
        .refused(401, "unauthenticated");
    // Tokens issued through the API work, are listed without the secret, and can be revoked.
    let r = post(
        app,
        "/api/tokens",
        &app.admin,
        json!({ "role": "manager", "subject": MANAGER }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let issued = r.json();
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(get(app, "/api/workflows", &token).await.status, 200);
    let list = get(app, "/api/tokens", &app.admin).await;
    assert!(
        !list.text.contains(&token),
        "a listed token must not show its secret"
    );
    assert!(
        list.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == issued["id"] && t["role"] == "manager")
    );
    let r = send(
        app,
        "DELETE",
        &format!("/api/tokens/{}", issued["id"]),
        Some(&app.admin),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    get(app, "/api/workflows", &token)
        .await
        .refused(401, "unauthenticated");
    post(
        app,
        "/api/tokens",
        &app.admin,
        json!({ "role": "agent", "subject": "alice" }),
    )
    .await
    .refused(422, "invalid_field");
    post(
        app,
        "/api/tokens",
        &app.admin,
        json!({ "role": "root", "subject": "x" }),
    )
    .await
    .refused(400, "bad_request");
    post(
        app,
        "/api/tokens",
        &app.manager,
        json!({ "role": "admin", "subject": "me" }),
    )
    .await
    .refused(403, "forbidden");
    get(app, "/api/tokens", &app.alice)
        .await
        .refused(403, "forbidden");
    send(app, "DELETE", "/api/tokens/999999", Some(&app.admin), None)
        .await
        .refused(404, "not_found");
    // A token in the URL counts on the SSE stream only.
    send(
        app,
        "GET",
        &format!("/api/agents?access_token={}", app.admin),
        None,
        None,
    )
    .await
    .refused(401, "unauthenticated");
    // Health needs no token.
    assert_eq!(send(app, "GET", "/health", None, None).await.text, "ok");
    // Unknown routes are JSON 404s too.
    get(app, "/api/nothing-here", &app.admin)
        .await
        .refused(404, "not_found");
}

async fn bad_input(app: &App) {
    let r = send(
        app,
        "POST",
        "/api/agents",
        Some(&app.admin),
        Some("{\"sip_uri\": "),
    )
    .await;
    r.refused(400, "bad_request");
    let r = post(
        app,
        "/api/agents",
        &app.admin,
        json!({ "sip_uri": ALICE, "colour": "red" }),
    )
    .await;
    let body = r.refused(400, "bad_request");
    assert!(body["error"].as_str().unwrap().contains("colour"), "{body}");
    post(
        app,
        "/api/agents",
        &app.admin,
        json!({ "sip_uri": "alice" }),
    )
    .await
    .refused(422, "invalid_field");
    let body = post(
        app,
        "/api/agents",
        &app.admin,
        json!({ "sip_uri": "mailto:x@y" }),
    )
    .await
    .refused(422, "invalid_field");
    assert_eq!(body["field"], "sip_uri");
    get(app, "/api/agents/abc", &app.admin)
        .await
        .refused(400, "bad_request");
    get(app, "/api/agents/999999", &app.admin)
        .await
        .refused(404, "not_found");
    get(app, "/api/groups/999999", &app.admin)
        .await
        .refused(404, "not_found");
    // A body that is not JSON at all, without a content type.
    let r = send(app, "PUT", "/api/groups/1/members", Some(&app.admin), None).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.text);
    assert!(r.json()["error"].is_string());
    // Group settings out of range.
    let body = post(
        app,
        "/api/groups",
        &app.admin,
        json!({ "name": "G", "participation": "formal", "routing": "serial", "alert_time_seconds": 5 }),
    )
    .await
    .refused(422, "invalid_field");
    assert_eq!(body["field"], "alert_time_seconds");
    post(
        app,
        "/api/groups",
        &app.admin,
        json!({ "name": "G", "participation": "sometimes", "routing": "serial" }),
    )
    .await
    .refused(400, "bad_request");
    post(
        app,
        "/api/groups",
        &app.admin,
        json!({ "name": "G", "participation": "formal", "routing": "serial", "agents": [ALICE, ALICE] }),
    )
    .await
    .refused(422, "invalid_field");
}

async fn admin_agents_and_groups(app: &App) {
    let r = post(
        app,
        "/api/agents",
        &app.admin,
        json!({ "sip_uri": "sip:erin@127.0.0.1", "display_name": "Erin" }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let erin = r.json();
    assert_eq!(erin["display_name"], "Erin");
    post(
        app,
        "/api/agents",
        &app.admin,
        json!({ "sip_uri": "sip:erin@127.0.0.1" }),
    )
    .await
    .refused(409, "conflict");
    let id = erin["id"].as_i64().unwrap();
    let r = put(
        app,
        &format!("/api/agents/{id}"),
        &app.admin,
        json!({ "sip_uri": "sip:erin@127.0.0.1", "display_name": "Erin B." }),
    )
    .await;
    assert_eq!(r.json()["display_name"], "Erin B.");
    assert_eq!(
        get(app, &format!("/api/agents/{id}"), &app.admin)
            .await
            .json()["sip_uri"],
        "sip:erin@127.0.0.1"
    );

    // A group created through `/api/groups` is an `agent_group` object of the model, as one
    // created through `/api/agent-groups`: created, listed (both ways), members replaced in
    // order, routed, deleted.
    let r = post(
        app,
        "/api/groups",
        &app.admin,
        json!({ "name": "Night shift", "participation": "formal", "routing": "round_robin",
                "alert_time_seconds": 30, "agents": ["sip:erin@127.0.0.1", "sip:frank@127.0.0.1"] }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let g = r.json();
    assert_eq!(g["source"], "database");
    assert_eq!(g["routed"], true);
    let gid = g["id"].as_i64().unwrap();
    let object = get(app, "/api/agent-groups/Night%20shift", &app.admin)
        .await
        .json();
    assert_eq!(object["source"], "database", "{object}");
    assert_eq!(object["id"], gid);
    assert_eq!(object["alert_time"], "30s");
    assert_eq!(object["routing"], "round_robin");
    assert_eq!(
        object["agents"],
        json!(["sip:erin@127.0.0.1", "sip:frank@127.0.0.1"])
    );
    // Routing has it at once: its formal members are known, signed out.
    assert_eq!(
        routed(app, "sip:erin@127.0.0.1", "Night shift"),
        Some(false)
    );
    post(
        app,
        "/api/groups",
        &app.admin,
        json!({ "name": "Night shift", "participation": "formal", "routing": "serial" }),
    )
    .await
    .refused(409, "conflict");
    let r = put(
        app,
        &format!("/api/groups/{gid}/members"),
        &app.admin,
        json!({ "agents": ["sip:frank@127.0.0.1", "sip:erin@127.0.0.1"] }),
    )
    .await;
    assert_eq!(
        r.json()["agents"],
        json!(["sip:frank@127.0.0.1", "sip:erin@127.0.0.1"])
    );
    // The members edit is a new version of the object, and routing follows the order.
    let object = get(app, "/api/agent-groups/Night%20shift", &app.admin)
        .await
        .json();
    assert_eq!(object["version"], 2, "{object}");
    assert_eq!(
        object["agents"],
        json!(["sip:frank@127.0.0.1", "sip:erin@127.0.0.1"])
    );
    let membership = app.shared.live.agents().membership_full();
    let night = membership
        .group_id("Night shift")
        .expect("Night shift routed");
    let order: Vec<String> = membership
        .group(night)
        .unwrap()
        .members
        .iter()
        .map(|a| {
            app.shared
                .live
                .agents()
                .uri(*a)
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(order, ["sip:frank@127.0.0.1", "sip:erin@127.0.0.1"]);
    // Settings out of the model's ranges are refused as `/api/agent-groups` refuses them, and a
    // group cannot be renamed.
    put(
        app,
        &format!("/api/groups/{gid}"),
        &app.admin,
        json!({ "name": "Night shift", "participation": "formal", "routing": "serial",
                "alert_time_seconds": 601, "agents": [] }),
    )
    .await
    .refused(422, "invalid_field");
    put(
        app,
        &format!("/api/groups/{gid}"),
        &app.admin,
        json!({ "name": "Late shift", "participation": "formal", "routing": "serial" }),
    )
    .await
    .refused(422, "invalid_field");
    // A group of the file is read-only here too.
    let sales = group_id(app, "Sales agents").await;
    let body = put(
        app,
        &format!("/api/groups/{sales}/members"),
        &app.admin,
        json!({ "agents": [ALICE] }),
    )
    .await
    .refused(409, "config_managed");
    assert!(body["line"].as_u64().is_some(), "{body}");
    let names: Vec<String> = get(app, "/api/groups", &app.admin)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "Night shift",
            "Other agents",
            "Sales agents",
            "Support agents"
        ]
    );
    // Signing in to it reaches routing.
    let frank = agent_id(app, "sip:frank@127.0.0.1").await;
    let r = put(
        app,
        &format!("/api/groups/{gid}/sign-ins/{frank}"),
        &app.admin,
        json!({ "signed_in": true }),
    )
    .await;
    assert_eq!(r.json()["routed"], true, "{}", r.text);
    assert_eq!(r.json()["changed"], true);
    assert_eq!(
        routed(app, "sip:frank@127.0.0.1", "Night shift"),
        Some(true)
    );
    let r = send(
        app,
        "DELETE",
        &format!("/api/groups/{gid}"),
        Some(&app.admin),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    get(app, &format!("/api/groups/{gid}"), &app.admin)
        .await
        .refused(404, "not_found");
    get(app, "/api/agent-groups/Night%20shift", &app.admin)
        .await
        .refused(404, "not_found");
    assert_eq!(routed(app, "sip:frank@127.0.0.1", "Night shift"), None);
    // A group only the groups table has (created by `/api/groups` before it wrote objects)
    // becomes a database object, under its id, on its next write, and then routes.
    let legacy = app
        .shared
        .store
        .create_group(&rgsd::config::model::AgentGroup {
            name: "Legacy".into(),
            description: None,
            participation: rgsd::config::model::Participation::Informal,
            routing: rgsd::config::model::RoutingMethod::Serial,
            alert_time: Duration::from_secs(20),
            wrap_up: Duration::ZERO,
            agents: vec![SipUri("sip:erin@127.0.0.1".into())],
        })
        .await
        .unwrap()
        .id
        .0;
    let g = get(app, &format!("/api/groups/{legacy}"), &app.admin)
        .await
        .json();
    assert_eq!((&g["source"], &g["routed"]), (&json!("api"), &json!(false)));
    let r = put(
        app,
        &format!("/api/groups/{legacy}/members"),
        &app.admin,
        json!({ "agents": ["sip:frank@127.0.0.1"] }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let g = r.json();
    assert_eq!(g["id"], legacy);
    assert_eq!(
        (&g["source"], &g["routed"]),
        (&json!("database"), &json!(true))
    );
    assert_eq!(routed(app, "sip:frank@127.0.0.1", "Legacy"), Some(true));
    let r = send(
        app,
        "DELETE",
        &format!("/api/groups/{legacy}"),
        Some(&app.admin),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = send(
        app,
        "DELETE",
        &format!("/api/agents/{id}"),
        Some(&app.admin),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    send(
        app,
        "DELETE",
        &format!("/api/agents/{id}"),
        Some(&app.admin),
        None,
    )
    .await
    .refused(404, "not_found");
}

async fn sign_in_reaches_routing_store_and_audit(app: &App) {
    let sales = group_id(app, "Sales agents").await;
    let alice = agent_id(app, ALICE).await;
    assert_eq!(routed(app, ALICE, "Sales agents"), Some(false));
    let r = put(
        app,
        &format!("/api/groups/{sales}/sign-ins/{alice}"),
        &app.admin,
        json!({ "signed_in": true }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({ "agent": ALICE, "group": "Sales agents", "signed_in": true, "changed": true, "routed": true })
    );
    // Routing sees it at once, the store has it, the group document lists it.
    assert_eq!(routed(app, ALICE, "Sales agents"), Some(true));
    assert_eq!(
        app.shared
            .store
            .signed_in_groups(&SipUri(ALICE.into()))
            .await
            .unwrap(),
        ["Sales agents"]
    );
    assert_eq!(
        get(app, &format!("/api/groups/{sales}"), &app.admin)
            .await
            .json()["signed_in"],
        json!([ALICE])
    );
    // Again: no change.
    let r = put(
        app,
        &format!("/api/groups/{sales}/sign-ins/{alice}"),
        &app.admin,
        json!({ "signed_in": true }),
    )
    .await;
    assert_eq!(r.json()["changed"], false);
    // Informal groups have no sign-in.
    let support = group_id(app, "Support agents").await;
    let carol = agent_id(app, CAROL).await;
    put(
        app,
        &format!("/api/groups/{support}/sign-ins/{carol}"),
        &app.admin,
        json!({ "signed_in": true }),
    )
    .await
    .refused(409, "conflict");
    // Not a member.
    let dave = agent_id(app, DAVE).await;
    put(
        app,
        &format!("/api/groups/{sales}/sign-ins/{dave}"),
        &app.admin,
        json!({ "signed_in": true }),
    )
    .await
    .refused(404, "not_found");
    // The audit log: who, what, when.
    let log = get(app, "/api/audit", &app.admin).await.json();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "agent.sign_in" && e["target"] == ALICE)
        .unwrap_or_else(|| panic!("no sign-in entry in {log}"));
    assert_eq!(entry["actor"], "admin");
    assert_eq!(entry["detail"]["group"], "Sales agents");
    assert_eq!(entry["at"], json!(at(10_000)));
    for action in [
        "token.create",
        "token.revoke",
        "agent.create",
        "agent.update",
        "agent.delete",
        "agent_group.create",
        "agent_group.update",
        "agent_group.delete",
    ] {
        assert!(
            log.as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action),
            "{action} not audited: {log}"
        );
    }
    get(app, "/api/audit", &app.manager)
        .await
        .refused(403, "forbidden");
}

async fn manager_scope(app: &App) {
    let m = &app.manager;
    let sales = group_id(app, "Sales agents").await;
    let other = group_id(app, "Other agents").await;
    let alice = agent_id(app, ALICE).await;
    let dave = agent_id(app, DAVE).await;
    // Sees only the groups of their workflows' queues, and those groups' agents.
    let groups = get(app, "/api/groups", m).await.json();
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(groups[0]["name"], "Sales agents");
    let agents: Vec<Value> = get(app, "/api/agents", m)
        .await
        .json()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        agents
            .iter()
            .map(|a| a["sip_uri"].clone())
            .collect::<Vec<_>>(),
        [json!(ALICE), json!(BOB)]
    );
    get(app, &format!("/api/groups/{other}"), m)
        .await
        .refused(403, "forbidden");
    get(app, &format!("/api/agents/{dave}"), m)
        .await
        .refused(403, "forbidden");
    // Signs their agents in and out.
    let r = put(
        app,
        &format!("/api/groups/{sales}/sign-ins/{alice}"),
        m,
        json!({ "signed_in": false }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(routed(app, ALICE, "Sales agents"), Some(false));
    put(
        app,
        &format!("/api/groups/{other}/sign-ins/{dave}"),
        m,
        json!({ "signed_in": true }),
    )
    .await
    .refused(403, "forbidden");
    assert_eq!(routed(app, DAVE, "Other agents"), Some(false));
    // The file's group is read-only here too (409 naming the file), but a manager may create a
    // group (as through `/api/agent-groups`) and change its members, alert time and routing;
    // routing sees each change at once.
    put(
        app,
        &format!("/api/groups/{sales}/members"),
        m,
        json!({ "agents": [BOB, ALICE] }),
    )
    .await
    .refused(409, "config_managed");
    let r = post(
        app,
        "/api/groups",
        m,
        json!({ "name": "Mine", "participation": "formal", "routing": "serial", "agents": [ALICE] }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mine = r.json()["id"].as_i64().unwrap();
    let names: Vec<Value> = get(app, "/api/groups", m)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(names, [json!("Mine"), json!("Sales agents")]);
    let r = put(
        app,
        &format!("/api/groups/{mine}/members"),
        m,
        json!({ "agents": [BOB, ALICE, "sip:gina@127.0.0.1"] }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let table = app.shared.live.agents();
    let membership = table.membership_full();
    let gina = membership
        .id(&SipUri("sip:gina@127.0.0.1".into()))
        .expect("gina routed");
    let members = &membership
        .group(membership.group_id("Mine").expect("Mine routed"))
        .unwrap()
        .members;
    assert_eq!(members.len(), 3);
    assert_eq!(members[2], gina);
    assert_eq!(table.uri(members[0]).unwrap().as_str(), BOB);
    let r = put(
        app,
        &format!("/api/groups/{mine}"),
        m,
        json!({ "name": "Mine", "participation": "formal", "routing": "parallel",
                "alert_time_seconds": 45, "agents": [ALICE, BOB] }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["alert_time_seconds"], 45);
    let membership = app.shared.live.agents().membership_full();
    let g = membership
        .group(membership.group_id("Mine").unwrap())
        .unwrap();
    assert_eq!(g.alert_time, Duration::from_secs(45));
    assert_eq!(g.routing, rgsd::config::model::RoutingMethod::Parallel);
    // But not its name or participation, nor other groups.
    put(
        app,
        &format!("/api/groups/{mine}"),
        m,
        json!({ "name": "Renamed", "participation": "formal", "routing": "serial", "agents": [ALICE] }),
    )
    .await
    .refused(403, "forbidden");
    put(
        app,
        &format!("/api/groups/{mine}"),
        m,
        json!({ "name": "Mine", "participation": "informal", "routing": "serial", "agents": [ALICE] }),
    )
    .await
    .refused(403, "forbidden");
    put(
        app,
        &format!("/api/groups/{other}/members"),
        m,
        json!({ "agents": [ALICE] }),
    )
    .await
    .refused(403, "forbidden");
    send(
        app,
        "DELETE",
        &format!("/api/groups/{other}"),
        Some(m),
        None,
    )
    .await
    .refused(403, "forbidden");
    // A file group is not deleted here; their own group they may delete.
    send(
        app,
        "DELETE",
        &format!("/api/groups/{sales}"),
        Some(m),
        None,
    )
    .await
    .refused(409, "config_managed");
    let r = send(app, "DELETE", &format!("/api/groups/{mine}"), Some(m), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(routed(app, ALICE, "Mine"), None);
    post(
        app,
        "/api/agents",
        m,
        json!({ "sip_uri": "sip:x@127.0.0.1" }),
    )
    .await
    .refused(403, "forbidden");
    // Workflows: sees their own; never URI, number or kind; the rest is in the TOML file.
    let wf = get(app, "/api/workflows", m).await.json();
    assert_eq!(wf.as_array().unwrap().len(), 1);
    assert_eq!(wf[0]["name"], "Sales");
    assert_eq!(
        get(app, "/api/workflows", &app.admin)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let patch = |body: Value, token: &str, name: &str| {
        let path = format!("/api/workflows/{name}");
        let token = token.to_owned();
        async move { send(app, "PATCH", &path, Some(&token), Some(&body.to_string())).await }
    };
    patch(json!({ "uri": "sip:x@127.0.0.1" }), m, "Sales")
        .await
        .refused(403, "forbidden");
    // The number is a manager's to change, but this workflow is declared in the file.
    let body = patch(json!({ "display_number": "+15550001" }), m, "Sales")
        .await
        .refused(409, "config_managed");
    assert!(
        body["file"].as_str().unwrap().ends_with("rgsd.toml"),
        "{body}"
    );
    patch(json!({ "kind": "interactive" }), m, "Sales")
        .await
        .refused(403, "forbidden");
    let body = patch(json!({ "active": false }), m, "Sales")
        .await
        .refused(409, "config_managed");
    assert_eq!(
        body["line"],
        line_of(&config_text("x"), "name = \"Sales\"\nkind"),
        "{body}"
    );
    patch(json!({ "active": false }), m, "Other")
        .await
        .refused(403, "forbidden");
    patch(json!({ "active": false }), m, "Nope")
        .await
        .refused(404, "not_found");
    patch(json!({}), m, "Sales")
        .await
        .refused(422, "invalid_field");
    patch(json!({ "uri": "sip:x@127.0.0.1" }), &app.admin, "Sales")
        .await
        .refused(409, "config_managed");
}

async fn agent_self_only(app: &App) {
    let a = &app.alice;
    let me = get(app, "/api/me", a).await.json();
    assert_eq!(me["role"], "agent");
    assert_eq!(me["subject"], ALICE);
    assert_eq!(me["state"]["state"], "idle");
    let sales = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Sales agents")
        .unwrap()
        .clone();
    assert_eq!(sales["participation"], "formal");
    assert_eq!(sales["signed_in"], false);
    let alice_id = me["agent_id"].as_i64().unwrap();
    let gid = sales["id"].as_i64().unwrap();
    let r = put(
        app,
        &format!("/api/groups/{gid}/sign-ins/{alice_id}"),
        a,
        json!({ "signed_in": true }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(routed(app, ALICE, "Sales agents"), Some(true));
    let me = get(app, "/api/me", a).await.json();
    assert_eq!(me["state"]["signed_in"], json!(["Sales agents"]));
    // Nobody else's sign-in, nothing shared.
    let bob = agent_id(app, BOB).await;
    put(
        app,
        &format!("/api/groups/{gid}/sign-ins/{bob}"),
        a,
        json!({ "signed_in": true }),
    )
    .await
    .refused(403, "forbidden");
    assert_eq!(routed(app, BOB, "Sales agents"), Some(false));
    for path in [
        "/api/agents",
        "/api/groups",
        "/api/live",
        "/api/live/queues",
        "/api/workflows",
        "/api/audit",
        "/api/reports/calls?from=2026-11-26T00:00:00Z&to=2026-11-27T00:00:00Z",
    ] {
        get(app, path, a).await.refused(403, "forbidden");
    }
    get(app, &format!("/api/agents/{bob}"), a)
        .await
        .refused(403, "forbidden");
    assert_eq!(
        get(app, &format!("/api/agents/{alice_id}"), a).await.status,
        200
    );
    post(
        app,
        "/api/agents",
        a,
        json!({ "sip_uri": "sip:x@127.0.0.1" }),
    )
    .await
    .refused(403, "forbidden");
}

/// An agent's own wrap-up time through `/api/agents`; the wrap-up state in `/api/me`, the live
/// state and `/metrics`; ending it early, by whom.
async fn wrap_up_through_the_api(app: &App) {
    let alice = agent_id(app, ALICE).await;
    let r = put(
        app,
        &format!("/api/agents/{alice}"),
        &app.admin,
        json!({ "sip_uri": ALICE, "wrap_up_seconds": 45 }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["wrap_up_seconds"], 45);
    let table = app.shared.live.agents();
    let a = table.id(&SipUri(ALICE.into())).unwrap();
    assert_eq!(table.agent_wrap_up(a), Some(Duration::from_secs(45)));
    let body = put(
        app,
        &format!("/api/agents/{alice}"),
        &app.admin,
        json!({ "sip_uri": ALICE, "wrap_up_seconds": 3601 }),
    )
    .await
    .refused(422, "invalid_field");
    assert_eq!(body["field"], "wrap_up_seconds");
    assert_eq!(
        table.agent_wrap_up(a),
        Some(Duration::from_secs(45)),
        "kept"
    );
    let sales = group_id(app, "Sales agents").await;
    let g = get(app, &format!("/api/groups/{sales}"), &app.admin)
        .await
        .json();
    assert_eq!(g["wrap_up_seconds"], 0);

    // Alice's call ends: 45 s of wrap-up (her own, over the group's none).
    assert!(table.claim(a, rgsd::acd::agents::CallKey(90)));
    table.answered(a, rgsd::acd::agents::CallKey(90));
    let wrap = table.wrap_up_for(a, table.group_id("Sales agents"));
    assert_eq!(wrap, Duration::from_secs(45));
    let now = tokio::time::Instant::now().into_std();
    assert!(table.call_ended_then(a, now, wrap).is_some());
    let me = get(app, "/api/me", &app.alice).await.json();
    assert_eq!(me["state"]["state"], "wrap_up", "{me}");
    assert!(me["state"]["wrap_up_until"].is_string(), "{me}");
    assert_eq!(metric(app, "rgsd_agents{state=\"wrap_up\"}").await, 1.0);
    let queues = get(app, "/api/live/queues", &app.admin).await.json();
    let q = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "Sales")
        .unwrap()
        .clone();
    assert_eq!(q["agents_wrap_up"], 1, "{q}");

    // Only Alice, her managers and administrators end it.
    let bob_token = app
        .shared
        .store
        .create_token(Role::Agent, BOB)
        .await
        .unwrap()
        .token
        .expose()
        .to_owned();
    let path = format!("/api/agents/{alice}/wrap-up");
    send(app, "DELETE", &path, Some(&bob_token), None)
        .await
        .refused(403, "forbidden");
    send(
        app,
        "DELETE",
        "/api/agents/999999/wrap-up",
        Some(&app.admin),
        None,
    )
    .await
    .refused(404, "not_found");
    let r = send(app, "DELETE", &path, Some(&app.alice), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["ended"], true);
    assert!(table.is_free(a));
    let r = send(app, "DELETE", &path, Some(&app.alice), None).await;
    assert_eq!(r.json()["ended"], false, "nothing left to end");
    assert_eq!(
        get(app, "/api/me", &app.alice).await.json()["state"]["state"],
        "idle"
    );
    let audit = get(app, "/api/audit", &app.admin).await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "agent.end_wrap_up"),
        "{audit}"
    );
    // Back to her groups' wrap-up (none).
    let r = put(
        app,
        &format!("/api/agents/{alice}"),
        &app.admin,
        json!({ "sip_uri": ALICE }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["wrap_up_seconds"].is_null());
    assert_eq!(table.agent_wrap_up(a), None);
}

async fn live_state_and_metrics(app: &App) {
    // Alice is signed in to Sales (formal), Carol always in Support (informal), Dave signed out.
    let queues = get(app, "/api/live/queues", &app.admin).await.json();
    let q = |name: &str| {
        queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(q("Sales")["agents_signed_in"], 1);
    assert_eq!(q("Sales")["agents_eligible"], 1);
    assert_eq!(q("Support")["agents_signed_in"], 1);
    assert_eq!(q("Other")["agents_signed_in"], 0);
    assert_eq!(q("Sales")["waiting"], 0);
    // The call driver reports two waiting calls and one talking to Alice.
    let now = app.clock.now_utc_for_test();
    let call = |id: &str, phase, queued_s: i64, agent: Option<&str>| LiveCall {
        call_id: id.into(),
        workflow: "Sales".into(),
        caller: "sip:+15550001@trunk.example".into(),
        phase,
        arrived_at: now - chrono::Duration::seconds(queued_s + 5),
        queue: Some("Sales".into()),
        queued_at: Some(now - chrono::Duration::seconds(queued_s)),
        agent: agent.map(str::to_owned),
    };
    app.shared
        .live
        .call_update(call("c1", CallPhase::Waiting, 42, None));
    app.shared
        .live
        .call_update(call("c2", CallPhase::Ringing, 12, Some(BOB)));
    app.shared
        .live
        .call_update(call("c3", CallPhase::Talking, 100, Some(ALICE)));
    let sales = get(app, "/api/live/queues", &app.admin).await.json()[0].clone();
    assert_eq!(sales["name"], "Sales");
    assert_eq!(sales["waiting"], 2);
    assert_eq!(sales["longest_wait_seconds"], 42);
    assert_eq!(sales["announcements"], 0);
    // Two announcements to a waiting caller of Sales; one to a call rgsd does not know (ended
    // meanwhile) counts for no queue.
    use rgsd::acd::CallObserver as _;
    app.shared.live.announced("c1", Some(1), None);
    app.shared
        .live
        .announced("c1", None, Some(Duration::from_secs(60)));
    app.shared.live.announced("gone", Some(3), None);
    let sales = get(app, "/api/live/queues", &app.admin).await.json()[0].clone();
    assert_eq!(sales["announcements"], 2);
    let calls = get(app, "/api/live/calls", &app.manager).await.json();
    assert_eq!(calls.as_array().unwrap().len(), 3);
    let agents = get(app, "/api/live/agents", &app.admin).await.json();
    let alice = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["sip_uri"] == ALICE)
        .unwrap()
        .clone();
    assert_eq!(alice["current_call"], "c3");
    assert_eq!(alice["signed_in"], json!(["Sales agents"]));
    // A manager sees their queue only.
    let mq = get(app, "/api/live/queues", &app.manager).await.json();
    assert_eq!(mq.as_array().unwrap().len(), 1);
    assert_eq!(mq[0]["name"], "Sales");

    // Metrics: the gauges come from the live state, the counters from the layers.
    app.shared
        .live
        .metrics
        .call_ended(rgsd::store::CallOutcome::Answered);
    app.shared.live.metrics.observe_wait(Duration::from_secs(7));
    let r = send(app, "GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        r.content_type
    );
    for line in [
        "rgsd_queue_waiting_calls{queue=\"Sales\"} 2",
        "rgsd_queue_longest_wait_seconds{queue=\"Sales\"} 42",
        "rgsd_calls_in_progress 3",
        "rgsd_calls_total{outcome=\"answered\"} 1",
        "rgsd_queue_wait_seconds_bucket{le=\"10\"} 1",
        "rgsd_queue_wait_seconds_bucket{le=\"5\"} 0",
        "rgsd_agents{state=\"idle\"} 4", // alice, bob, carol, dave (gina left Sales again)
    ] {
        assert!(
            r.text.lines().any(|l| l == line),
            "{line:?} not in\n{}",
            r.text
        );
    }
    for family in [
        "rgsd_sip_transactions_total",
        "rgsd_rtp_packets_total",
        "rgsd_db_write_pending_records",
        "rgsd_db_records_total",
        "rgsd_record_writer_pending",
        "rgsd_record_write_lag_seconds",
    ] {
        assert!(r.text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    // The database write figures come from the call-record writer once it is attached.
    let writer = RecordWriter::spawn(app.shared.store.clone(), WriterOptions::default());
    app.shared.live.metrics.attach_writer(writer.clone());
    let mut record = fixture::records()[0].clone();
    record.call_id = "metrics-1@127.0.0.1".into();
    record.arrived_at = at(-100_000); // outside every report range below
    let mut changes = writer.subscribe();
    writer.submit(record).unwrap();
    // Bounded: each round waits for one change of the writer's state, at most 5 s.
    for _ in 0..10 {
        if writer.stats().written == 1 {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
    }
    let text = send(app, "GET", "/metrics", None, None).await.text;
    for line in [
        "rgsd_db_records_total{result=\"written\"} 1",
        "rgsd_db_write_pending_records{database=\"sqlite\"} 0",
        "rgsd_db_write_failures_total 0",
        "rgsd_record_writer_pending 0",
        "rgsd_record_write_lag_seconds 0",
    ] {
        let line = line.replace("sqlite", app.shared.store.backend_name());
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    writer.shutdown(Duration::from_secs(5)).await;
    // Routing claims Alice for a call: she counts as busy, no longer eligible.
    let table = app.shared.live.agents();
    let alice_id = table.id(&SipUri(ALICE.into())).unwrap();
    assert!(table.claim(alice_id, rgsd::acd::agents::CallKey(7)));
    let sales = get(app, "/api/live/queues", &app.admin).await.json()[0].clone();
    assert_eq!(
        (
            sales["agents_signed_in"].as_u64(),
            sales["agents_eligible"].as_u64(),
            sales["agents_busy"].as_u64()
        ),
        (Some(1), Some(0), Some(1))
    );
    let me = get(app, "/api/me", &app.alice).await.json();
    assert_eq!(me["state"]["state"], "ringing");
    let metrics = send(app, "GET", "/metrics", None, None).await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l == "rgsd_agents{state=\"ringing\"} 1"),
        "{metrics}"
    );
    assert!(table.release(alice_id, rgsd::acd::agents::CallKey(7)));
    for id in ["c1", "c2", "c3"] {
        app.shared.live.call_ended(id);
    }
    assert_eq!(
        get(app, "/api/live/calls", &app.admin).await.json(),
        json!([])
    );
}

async fn server_sent_events(app: &App) {
    let req = Request::builder()
        .uri(format!("/api/live/stream?access_token={}", app.manager))
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8(first.to_vec()).unwrap();
    assert!(text.starts_with("event: snapshot\ndata: "), "{text}");
    let data: Value =
        serde_json::from_str(text.trim_start_matches("event: snapshot\ndata: ").trim()).unwrap();
    assert_eq!(
        data["queues"].as_array().unwrap().len(),
        1,
        "manager scope: {data}"
    );
    // A change is pushed at once.
    app.shared.live.call_update(LiveCall {
        call_id: "sse-1".into(),
        workflow: "Sales".into(),
        caller: "sip:+1555@trunk.example".into(),
        phase: CallPhase::Waiting,
        arrived_at: app.clock.now_utc_for_test(),
        queue: Some("Sales".into()),
        queued_at: Some(app.clock.now_utc_for_test()),
        agent: None,
    });
    let next = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8(next.to_vec()).unwrap();
    assert!(text.contains("\"waiting\":1"), "{text}");
    app.shared.live.call_ended("sse-1");
    // No token: refused before streaming.
    send(app, "GET", "/api/live/stream", None, None)
        .await
        .refused(401, "unauthenticated");
    send(
        app,
        "GET",
        &format!("/api/live/stream?access_token={}", app.alice),
        None,
        None,
    )
    .await
    .refused(403, "forbidden");
}

/// Opens `/api/live/stream` with `token` and reads the first (immediate) snapshot.
async fn open_stream(app: &App, token: &str) -> axum::body::BodyDataStream {
    let req = Request::builder()
        .uri(format!("/api/live/stream?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("first snapshot")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"event: snapshot\n"));
    body
}

async fn revoking_a_token_ends_its_streams(app: &App) {
    let issued = post(
        app,
        "/api/tokens",
        &app.admin,
        json!({ "role": "manager", "subject": MANAGER }),
    )
    .await
    .json();
    let token = issued["token"].as_str().unwrap().to_owned();
    let mut doomed = open_stream(app, &token).await;
    let mut doomed_too = open_stream(app, &token).await;
    let mut other = open_stream(app, &app.manager).await;
    let r = send(
        app,
        "DELETE",
        &format!("/api/tokens/{}", issued["id"]),
        Some(&app.admin),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Both streams of the revoked token end (not merely go quiet): `None` well before the 5 s
    // refresh or the 15 s keep-alive could come.
    for body in [&mut doomed, &mut doomed_too] {
        let end = tokio::time::timeout(Duration::from_secs(2), body.next())
            .await
            .expect("the revoked token's stream must end promptly");
        assert!(end.is_none(), "expected the end of the stream, got {end:?}");
    }
    // Another token's stream goes on: it still gets the next change.
    app.shared.live.call_update(LiveCall {
        call_id: "sse-2".into(),
        workflow: "Sales".into(),
        caller: "sip:+1555@trunk.example".into(),
        phase: CallPhase::Waiting,
        arrived_at: app.clock.now_utc_for_test(),
        queue: Some("Sales".into()),
        queued_at: Some(app.clock.now_utc_for_test()),
        agent: None,
    });
    let next = tokio::time::timeout(Duration::from_secs(5), other.next())
        .await
        .expect("the other stream goes on")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&next).contains("sse-2"), "{next:?}");
    app.shared.live.call_ended("sse-2");
    // A stream opened with an already revoked token is refused, as any request is.
    send(
        app,
        "GET",
        &format!("/api/live/stream?access_token={token}"),
        None,
        None,
    )
    .await
    .refused(401, "unauthenticated");
}

async fn reports(app: &App) {
    for r in fixture::records() {
        app.shared.store.record_call(&r).await.unwrap();
    }
    let range = "from=2026-11-26T10:00:00Z&to=2026-11-26T11:00:00Z";
    let r = get(
        app,
        &format!("/api/reports/summary?{range}&by=workflow&service_level_seconds=20"),
        &app.admin,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let doc = r.json();
    assert_eq!(doc["service_level_seconds"], 20);
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let sales = &rows[0];
    assert_eq!(sales["key"], "Sales");
    assert_eq!(
        (
            sales["received"].as_u64(),
            sales["offered"].as_u64(),
            sales["answered"].as_u64(),
            sales["abandoned"].as_u64()
        ),
        (Some(6), Some(5), Some(3), Some(1))
    );
    assert_eq!(sales["abandoned_percent"], 16.67);
    assert_eq!(sales["average_wait_seconds"], 29.17);
    assert_eq!(sales["average_talk_seconds"], 70.0);
    assert_eq!(sales["timed_out"], 1);
    assert_eq!(sales["overflowed"], 1);
    assert_eq!(sales["service_level_percent"], 33.33);
    // N is a parameter.
    let doc = get(
        app,
        &format!("/api/reports/summary?{range}&service_level_seconds=30"),
        &app.admin,
    )
    .await
    .json();
    assert_eq!(doc["rows"][0]["service_level_percent"], 50.0);
    // Per queue and per agent.
    let doc = get(
        app,
        &format!("/api/reports/summary?{range}&by=agent"),
        &app.admin,
    )
    .await
    .json();
    let alice = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == ALICE)
        .unwrap()
        .clone();
    assert_eq!(
        (alice["received"].as_u64(), alice["answered"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(alice["average_talk_seconds"], 45.0);
    let doc = get(
        app,
        &format!("/api/reports/summary?{range}&by=queue"),
        &app.admin,
    )
    .await
    .json();
    assert_eq!(doc["rows"][1]["key"], "Support");
    assert_eq!(doc["rows"][1]["received"], 1);
    // A range that leaves calls out.
    let doc = get(
        app,
        "/api/reports/summary?from=2026-11-26T10:00:00Z&to=2026-11-26T10:05:00Z",
        &app.admin,
    )
    .await
    .json();
    // Calls 1 (10:01:40) and 2 (10:03:20); call 3 arrives at 10:05:00, the exclusive end.
    assert_eq!(doc["rows"][0]["received"], 2);
    // A manager sees their workflow only.
    let doc = get(app, &format!("/api/reports/summary?{range}"), &app.manager)
        .await
        .json();
    assert_eq!(doc["rows"].as_array().unwrap().len(), 1);
    assert_eq!(doc["rows"][0]["key"], "Sales");
    // The call list, JSON and CSV.
    let list = get(app, &format!("/api/reports/calls?{range}"), &app.admin)
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 8);
    assert_eq!(list[6]["sip_code"], 480);
    assert_eq!(list[6]["outcome"], "rejected");
    assert_eq!(list[0]["start"], json!(at(100)));
    // A range holding more calls than asked for is refused, not cut short.
    let capped = get(
        app,
        &format!("/api/reports/calls?{range}&max_calls=7"),
        &app.admin,
    )
    .await;
    assert_eq!(capped.status, 422, "{}", capped.text);
    assert!(capped.text.contains("more than 7 calls"), "{}", capped.text);
    let exact = get(
        app,
        &format!("/api/reports/calls?{range}&max_calls=8"),
        &app.admin,
    )
    .await;
    assert_eq!(exact.status, 200, "{}", exact.text);
    let csv = get(
        app,
        &format!("/api/reports/calls?{range}&format=csv"),
        &app.admin,
    )
    .await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(
        lines[0],
        "call_id,caller,workflow,queue,agent,start,end,sip_code,outcome"
    );
    assert!(
        lines[1].starts_with(
            "call-1@127.0.0.1,sip:+15550000001@trunk.example,Sales,Sales,sip:alice@127.0.0.1,"
        ),
        "{}",
        lines[1]
    );
    let csv = get(
        app,
        &format!("/api/reports/summary?{range}&format=csv"),
        &app.manager,
    )
    .await;
    assert_eq!(csv.text.lines().count(), 2, "{}", csv.text);
    // Bad queries.
    get(app, "/api/reports/summary", &app.admin)
        .await
        .refused(400, "bad_request");
    get(
        app,
        "/api/reports/summary?from=yesterday&to=2026-11-26T11:00:00Z",
        &app.admin,
    )
    .await
    .refused(400, "bad_request");
    get(
        app,
        "/api/reports/summary?from=2026-11-26T11:00:00Z&to=2026-11-26T10:00:00Z",
        &app.admin,
    )
    .await
    .refused(422, "invalid_field");
    get(
        app,
        &format!("/api/reports/summary?{range}&format=xml"),
        &app.admin,
    )
    .await
    .refused(422, "invalid_field");
    get(
        app,
        &format!("/api/reports/summary?{range}&by=caller"),
        &app.admin,
    )
    .await
    .refused(400, "bad_request");
}

/// Every route the router serves, with a request that reaches its handler.
/// A request with an `If-Match` header.
async fn send_if(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    version: i64,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::IF_MATCH, format!("\"{version}\""));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        content_type: String::new(),
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn patch_json(app: &App, path: &str, token: &str, body: Value) -> Reply {
    send(app, "PATCH", path, Some(token), Some(&body.to_string())).await
}

async fn delete(app: &App, path: &str, token: &str) -> Reply {
    send(app, "DELETE", path, Some(token), None).await
}

/// Every collection: create, read, replace, merge-patch, delete; each change compiled with the
/// file, put in force at once, audited; 422 naming the field, 409 for file-owned and used
/// objects, 412 for a stale version.
async fn objects_through_every_collection(app: &App) {
    let a = &app.admin;
    let created = |r: Reply| {
        assert_eq!(r.status, 201, "{}", r.text);
        let body = r.json();
        assert_eq!(body["source"], "database");
        assert_eq!(body["version"], 1);
        body
    };
    created(
        post(
            app,
            "/api/agent-groups",
            a,
            json!({ "name": "Night agents", "routing": "parallel", "agents": [ALICE, "sip:erin@127.0.0.1"] }),
        )
        .await,
    );
    // The ranges and rules of `rgsd check`, named by object and field.
    let body = post(
        app,
        "/api/queues",
        a,
        json!({ "name": "Night", "agent_groups": ["Night agents", "Nobody"],
                "timeout": { "after": "5s", "action": "disconnect" },
                "overflow": { "max_calls": 5000, "action": "disconnect" } }),
    )
    .await
    .refused(422, "invalid_field");
    let problems = body["problems"].as_array().unwrap();
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"timeout.after"), "{body}");
    assert!(fields.contains(&"overflow.max_calls"), "{body}");
    assert!(fields.contains(&"agent_groups[1]"), "{body}");
    assert!(
        problems.iter().all(|p| p["object"] == "queues/Night"),
        "{body}"
    );
    let timeout = problems
        .iter()
        .find(|p| p["field"] == "timeout.after")
        .unwrap();
    assert_eq!(timeout["message"], "5s is below the minimum 10s");
    let body = post(
        app,
        "/api/agent-groups",
        a,
        json!({ "name": "Slow", "alert_time": "5s", "agents": [BOB] }),
    )
    .await
    .refused(422, "invalid_field");
    assert_eq!(body["problems"][0]["field"], "alert_time", "{body}");
    created(
        post(
            app,
            "/api/queues",
            a,
            json!({ "name": "Night", "agent_groups": ["Night agents"],
                    "timeout": { "after": "60s", "action": { "queue": "Sales" } } }),
        )
        .await,
    );
    let body = post(
        app,
        "/api/hours",
        a,
        json!({ "name": "Bad", "tuesday": ["25:00-26:00"] }),
    )
    .await
    .refused(422, "invalid_field");
    assert!(
        body["field"].as_str().unwrap().starts_with("tuesday"),
        "{body}"
    );
    created(
        post(
            app,
            "/api/hours",
            a,
            json!({ "name": "Evenings", "monday": ["18:00-20:00", "21:00-23:00"] }),
        )
        .await,
    );
    created(
        post(
            app,
            "/api/holiday-sets",
            a,
            json!({ "name": "2027", "holidays": [
                { "name": "New year", "start": "2027-01-01T00:00", "end": "2027-01-02T00:00" } ] }),
        )
        .await,
    );
    // A workflow may use file objects and database objects; its URI must be its own.
    let workflow = json!({
        "name": "Night line", "kind": "hunt_group", "uri": "sip:sales@127.0.0.1",
        "queue": "Night", "business_hours": "Evenings", "holidays": ["2027"],
        "welcome": { "text": "Good evening." }, "managers": [MANAGER],
        "display_number": "+1 555 0100",
    });
    let body = post(app, "/api/workflows", a, workflow.clone())
        .await
        .refused(422, "invalid_field");
    assert_eq!(body["problems"][0]["field"], "uri", "{body}");
    let mut workflow = workflow;
    workflow["uri"] = json!("sip:night@127.0.0.1");
    created(post(app, "/api/workflows", a, workflow).await);
    // In force at once: the running model has it.
    {
        let config = app.shared.config.load();
        let w = config
            .workflows
            .iter()
            .find(|w| w.name == "Night line")
            .unwrap();
        assert_eq!(w.uri.as_str(), "sip:night@127.0.0.1");
        assert!(config.queues.iter().any(|q| q.name == "Night"));
    }
    // Names are unique across file and database.
    let body = post(
        app,
        "/api/queues",
        a,
        json!({ "name": "Sales", "agent_groups": ["Sales agents"] }),
    )
    .await
    .refused(409, "conflict");
    assert!(body["error"].as_str().unwrap().contains("line"), "{body}");

    // Read: the list has both owners; file objects say where they are.
    let list = get(app, "/api/queues", a).await.json();
    let sales = list
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "Sales")
        .unwrap();
    assert_eq!(sales["source"], "file");
    assert_eq!(
        sales["line"],
        line_of(&config_text("x"), "name = \"Sales\"\nagent_groups")
    );
    let r = get(app, "/api/workflows/Night%20line", a).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["queue"], "Night");
    assert_eq!(r.json()["welcome"]["text"], "Good evening.");
    get(app, "/api/workflows/Nope", a)
        .await
        .refused(404, "not_found");

    // Merge patch with If-Match; a stale version is refused; null removes a key.
    let r = send_if(
        app,
        "PATCH",
        "/api/workflows/Night%20line",
        a,
        1,
        Some(json!({ "description": "After hours", "welcome": { "text": "Hello at night." } })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.json()["welcome"]["text"], "Hello at night.");
    let body = send_if(
        app,
        "PATCH",
        "/api/workflows/Night%20line",
        a,
        1,
        Some(json!({ "description": "x" })),
    )
    .await
    .refused(412, "stale_version");
    assert_eq!(body["version"], 2);
    let r = send_if(
        app,
        "PATCH",
        "/api/workflows/Night%20line",
        a,
        2,
        Some(json!({ "display_number": null })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json().get("display_number").is_none(), "{}", r.text);
    assert_eq!(r.json()["description"], "After hours");
    // A stale version in the body counts as If-Match when the header is absent.
    patch_json(
        app,
        "/api/workflows/Night%20line",
        a,
        json!({ "version": 1, "active": false }),
    )
    .await
    .refused(412, "stale_version");
    // An invalid patch changes nothing.
    let body = patch_json(
        app,
        "/api/agent-groups/Night%20agents",
        a,
        json!({ "alert_time": "900s" }),
    )
    .await
    .refused(422, "invalid_field");
    assert_eq!(body["problems"][0]["object"], "agent-groups/Night agents");

    // Replace.
    let r = put(
        app,
        "/api/queues/Night",
        a,
        json!({ "agent_groups": ["Night agents", "Sales agents"], "overflow": { "max_calls": 3, "action": "disconnect" } }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["version"], 2);
    assert!(r.json().get("timeout").is_none());
    {
        let config = app.shared.config.load();
        let q = config.queues.iter().find(|q| q.name == "Night").unwrap();
        assert_eq!(q.agent_groups.len(), 2);
    }
    put(
        app,
        "/api/queues/Night",
        a,
        json!({ "name": "Day", "agent_groups": ["Night agents"] }),
    )
    .await
    .refused(422, "invalid_field");

    // File objects are read-only here, with their file and line.
    let body = delete(app, "/api/queues/Sales", a)
        .await
        .refused(409, "config_managed");
    assert!(body["file"].as_str().unwrap().ends_with("rgsd.toml"));
    put(
        app,
        "/api/agent-groups/Sales%20agents",
        a,
        json!({ "agents": [ALICE] }),
    )
    .await
    .refused(409, "config_managed");
    // In use: the users are named.
    let body = delete(app, "/api/queues/Night", a)
        .await
        .refused(409, "in_use");
    assert_eq!(body["used_by"], json!(["workflow \"Night line\""]));
    delete(app, "/api/hours/Evenings", a)
        .await
        .refused(409, "in_use");
    delete(app, "/api/agent-groups/Night%20agents", a)
        .await
        .refused(409, "in_use");

    // Every change is audited with the object before and after.
    let audit = app.shared.store.list_audit(at(0), 1000).await.unwrap();
    let update = audit
        .iter()
        .find(|e| e.action == "queue.update" && e.target == "Night")
        .unwrap();
    assert_eq!(update.actor, "admin");
    assert_eq!(update.detail["before"]["version"], 1);
    assert_eq!(update.detail["after"]["version"], 2);
    assert_eq!(update.detail["after"]["overflow"]["max_calls"], 3);
    assert!(
        audit
            .iter()
            .any(|e| e.action == "workflow.create" && e.detail["before"].is_null())
    );
}

/// Managers: their workflows and what those use or what they created; never URI or kind.
async fn objects_and_a_manager(app: &App) {
    let m = &app.manager;
    let a = &app.admin;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let workflows = names(get(app, "/api/workflows", m).await.json());
    assert_eq!(workflows, ["Sales", "Night line"]);
    let queues = names(get(app, "/api/queues", m).await.json());
    assert!(
        queues.contains(&"Night".to_owned()) && !queues.contains(&"Support".to_owned()),
        "{queues:?}"
    );
    get(app, "/api/queues/Support", m)
        .await
        .refused(403, "forbidden");
    post(app, "/api/workflows", m, json!({ "name": "Mine", "kind": "hunt_group", "uri": "sip:mine@127.0.0.1", "queue": "Night" }))
        .await
        .refused(403, "forbidden");
    let body = patch_json(
        app,
        "/api/workflows/Night%20line",
        m,
        json!({ "uri": "sip:x@127.0.0.1" }),
    )
    .await
    .refused(403, "forbidden");
    assert!(body["error"].as_str().unwrap().contains("URI"), "{body}");
    patch_json(
        app,
        "/api/workflows/Night%20line",
        m,
        json!({ "kind": "interactive" }),
    )
    .await
    .refused(403, "forbidden");
    patch_json(
        app,
        "/api/workflows/Night%20line",
        m,
        json!({ "managers": [] }),
    )
    .await
    .refused(403, "forbidden");
    // The trunk number is the administrator's: a manager may neither set, change nor remove it.
    let night = "/api/workflows/Night%20line";
    let body = patch_json(app, night, m, json!({ "line_uri": "tel:+14255550142" }))
        .await
        .refused(403, "forbidden");
    assert!(
        body["error"].as_str().unwrap().contains("line_uri"),
        "{body}"
    );
    let body = patch_json(app, night, a, json!({ "line_uri": "tel:4255550142" }))
        .await
        .refused(422, "invalid_field");
    assert_eq!(body["problems"][0]["field"], "line_uri", "{body}");
    let r = patch_json(app, night, a, json!({ "line_uri": "tel:+1 425 555 0142" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let line_of_night = || {
        let config = app.shared.config.load();
        let w = config.workflows.iter().find(|w| w.name == "Night line");
        w.unwrap().line_uri.as_ref().map(|l| l.number.to_string())
    };
    assert_eq!(line_of_night().as_deref(), Some("+14255550142"));
    for change in [
        json!({ "line_uri": "tel:+14255550143" }),
        json!({ "line_uri": null }),
    ] {
        let body = patch_json(app, night, m, change)
            .await
            .refused(403, "forbidden");
        assert!(
            body["error"].as_str().unwrap().contains("line_uri"),
            "{body}"
        );
    }
    let mut whole = get(app, night, m).await.json();
    whole["line_uri"] = json!("tel:+14255550143");
    put(app, night, m, whole).await.refused(403, "forbidden");
    assert_eq!(line_of_night().as_deref(), Some("+14255550142"));
    delete(app, "/api/workflows/Night%20line", m)
        .await
        .refused(403, "forbidden");
    patch_json(
        app,
        "/api/queues/Other",
        m,
        json!({ "agent_groups": ["Other agents"] }),
    )
    .await
    .refused(403, "forbidden");
    // Nor use an object outside their scope.
    let body = post(
        app,
        "/api/queues",
        m,
        json!({ "name": "Poach", "agent_groups": ["Other agents"] }),
    )
    .await
    .refused(403, "forbidden");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("agent group \"Other agents\""),
        "{body}"
    );
    // What a manager may do: create objects, see them, use them in their workflow.
    let r = post(
        app,
        "/api/hours",
        m,
        json!({ "name": "Late", "friday": ["20:00-23:00"] }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(get(app, "/api/hours/Late", m).await.status, 200);
    let r = patch_json(
        app,
        "/api/workflows/Night%20line",
        m,
        json!({ "business_hours": "Late", "managers": [MANAGER, "sip:deputy@127.0.0.1"], "active": false }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        !app.shared
            .config
            .load()
            .workflows
            .iter()
            .find(|w| w.name == "Night line")
            .unwrap()
            .active
    );
    // A manager's change that leaves the number alone keeps it.
    assert_eq!(line_of_night().as_deref(), Some("+14255550142"));
    let audit = app.shared.store.list_audit(at(0), 1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "hours.create" && e.actor == MANAGER)
    );
    // Agents see nothing here.
    get(app, "/api/queues", &app.alice)
        .await
        .refused(403, "forbidden");

    // Clean up in dependency order: workflow, then what it used.
    assert_eq!(
        delete(app, "/api/workflows/Night%20line", a).await.status,
        204
    );
    for path in [
        "/api/queues/Night",
        "/api/agent-groups/Night%20agents",
        "/api/hours/Evenings",
        "/api/hours/Late",
        "/api/holiday-sets/2027",
    ] {
        let r = delete(app, path, a).await;
        assert_eq!(r.status, 204, "{path}: {}", r.text);
    }
    let config = app.shared.config.load();
    assert!(config.workflows.iter().all(|w| w.name != "Night line"));
    assert!(config.queues.iter().all(|q| q.name != "Night"));
    assert!(app.shared.store.list_objects().await.unwrap().is_empty());
}

/// A workflow's `srtp` through the API: an administrator sets it and the running workflow has it;
/// a bad value is 422 naming `srtp`; a manager may neither set, change nor remove it (403).
async fn workflow_srtp(app: &App) {
    let (a, m) = (&app.admin, &app.manager);
    let path = "/api/workflows/Secure";
    let srtp_of = || {
        let config = app.shared.config.load();
        let w = config
            .workflows
            .iter()
            .find(|w| w.name == "Secure")
            .cloned();
        w.map(|w| (w.srtp, w.caller_srtp(&config.server)))
    };
    let body = post(app, "/api/workflows", a, json!({ "name": "Secure", "kind": "hunt_group", "uri": "sip:secure@127.0.0.1", "queue": "Sales", "srtp": "sometimes", "managers": [MANAGER] }))
        .await
        .refused(422, "invalid_field");
    assert_eq!(body["problems"][0]["field"], "srtp", "{body}");
    assert_eq!(srtp_of(), None, "a refused workflow is not in force");
    let r = post(app, "/api/workflows", a, json!({ "name": "Secure", "kind": "hunt_group", "uri": "sip:secure@127.0.0.1", "queue": "Sales", "srtp": "required", "managers": [MANAGER] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        srtp_of(),
        Some((Some(SrtpPolicy::Required), SrtpPolicy::Required))
    );
    assert_eq!(get(app, path, a).await.json()["srtp"], "required");

    // The manager sees the workflow and its srtp but may not touch it.
    let mut whole = get(app, path, m).await.json();
    assert_eq!(whole["srtp"], "required");
    for change in [json!({ "srtp": "off" }), json!({ "srtp": null })] {
        let body = patch_json(app, path, m, change)
            .await
            .refused(403, "forbidden");
        assert!(body["error"].as_str().unwrap().contains("srtp"), "{body}");
    }
    whole["srtp"] = json!("offer");
    put(app, path, m, whole.clone())
        .await
        .refused(403, "forbidden");
    // Everything else a manager may change still goes through, srtp left alone.
    whole["srtp"] = json!("required");
    whole["description"] = json!("Encrypted line");
    let r = put(app, path, m, whole).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        srtp_of(),
        Some((Some(SrtpPolicy::Required), SrtpPolicy::Required))
    );

    // The administrator changes it, then removes the key: the server's default applies.
    let r = patch_json(app, path, a, json!({ "srtp": "offer" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        srtp_of(),
        Some((Some(SrtpPolicy::Offer), SrtpPolicy::Offer))
    );
    let r = patch_json(app, path, a, json!({ "srtp": null })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(srtp_of(), Some((None, SrtpPolicy::Off)));
    // A manager may not set it either where it was absent.
    patch_json(app, path, m, json!({ "srtp": "off" }))
        .await
        .refused(403, "forbidden");
    assert_eq!(delete(app, path, a).await.status, 204);
    assert_eq!(srtp_of(), None);
}

/// Each published range, through the API: 422 naming the object and the field, nothing stored.
async fn objects_refuse_every_range(app: &App) {
    let long_text = "a".repeat(4097);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/agent-groups",
            json!({ "name": "R", "alert_time": "9s", "agents": [ALICE] }),
            "alert_time",
        ),
        (
            "/api/agent-groups",
            json!({ "name": "R", "alert_time": "601s", "agents": [ALICE] }),
            "alert_time",
        ),
        (
            "/api/agent-groups",
            json!({ "name": "R", "routing": "random", "agents": [ALICE] }),
            "routing",
        ),
        (
            "/api/queues",
            json!({ "name": "R", "agent_groups": ["Sales agents"], "timeout": { "after": "9s" } }),
            "timeout.after",
        ),
        (
            "/api/queues",
            json!({ "name": "R", "agent_groups": ["Sales agents"], "timeout": { "after": "65536s" } }),
            "timeout.after",
        ),
        (
            "/api/queues",
            json!({ "name": "R", "agent_groups": ["Sales agents"], "overflow": { "max_calls": -1 } }),
            "overflow.max_calls",
        ),
        (
            "/api/queues",
            json!({ "name": "R", "agent_groups": ["Sales agents"], "overflow": { "max_calls": 1001 } }),
            "overflow.max_calls",
        ),
        (
            "/api/hours",
            json!({ "name": "R", "monday": ["08:00-09:00", "10:00-11:00", "12:00-13:00"] }),
            "monday",
        ),
        (
            "/api/hours",
            json!({ "name": "R", "monday": ["17:00-09:00"] }),
            "monday[0]",
        ),
        (
            "/api/holiday-sets",
            json!({ "name": "R", "holidays": [{ "name": "X", "start": "2027-01-02T00:00", "end": "2027-01-01T00:00" }] }),
            "holidays[0]",
        ),
        (
            "/api/workflows",
            json!({ "name": "R", "kind": "hunt_group", "uri": "sip:r@127.0.0.1", "queue": "Sales", "welcome": { "text": long_text } }),
            "welcome",
        ),
        (
            "/api/workflows",
            json!({ "name": "R", "kind": "interactive", "uri": "sip:r@127.0.0.1",
            "question": { "prompt": { "text": "?" }, "no_input_timeout": "61s",
                          "answers": [{ "dtmf": "1", "action": { "queue": "Sales" } }] } }),
            "question.no_input_timeout",
        ),
        (
            "/api/workflows",
            json!({ "name": "R", "kind": "interactive", "uri": "sip:r@127.0.0.1",
            "question": { "prompt": { "text": "1?" }, "answers": [{ "dtmf": "1", "action": { "question": {
                "prompt": { "text": "2?" }, "answers": [{ "dtmf": "1", "action": { "question": {
                    "prompt": { "text": "3?" }, "answers": [{ "dtmf": "1", "action": "disconnect" }] } } }] } } }] } }),
            "question.answers[0].action.question.answers[0].action.question",
        ),
        (
            "/api/workflows",
            json!({ "name": "R", "kind": "hunt_group", "uri": "http://r", "queue": "Sales" }),
            "uri",
        ),
        (
            "/api/workflows",
            json!({ "name": "R", "kind": "hunt_group", "uri": "sip:r@127.0.0.1", "queue": "Sales", "time_zone": "Mars/Olympus" }),
            "time_zone",
        ),
    ];
    for (path, body, field) in cases {
        let r = post(app, path, &app.admin, body.clone()).await;
        let refused = r.refused(422, "invalid_field");
        let fields: Vec<&str> = refused["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{path} {body}: expected a problem at {field}, got {refused}"
        );
        assert!(
            refused["problems"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["object"].as_str().unwrap().ends_with("/R")),
            "{refused}"
        );
    }
    assert!(app.shared.store.list_objects().await.unwrap().is_empty());
}

/// A WAV file in memory: 16-bit PCM, `channels`, `rate`, `seconds` of a quiet tone.
fn wav_bytes(rate: u32, channels: u16, seconds: u32) -> Vec<u8> {
    let frames = rate * seconds;
    let mut data = Vec::new();
    for i in 0..frames {
        let v = (f64::from(i) * 0.05).sin() * 3000.0;
        #[allow(clippy::cast_possible_truncation)]
        let v = (v as i16).to_le_bytes();
        for _ in 0..channels {
            data.extend_from_slice(&v);
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + u32::try_from(data.len()).unwrap()).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&data);
    out
}

async fn send_bytes(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "audio/wav")
        .body(Body::from(body))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 8 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec(), ctype)
}

/// `/api/prompts`: an upload in another format is converted once to 8 kHz mono, played back as
/// WAV, used by an object as `{ "file": … }`, and protected from deletion while used.
async fn prompts_are_converted_once_and_used_by_file(app: &App) {
    let a = &app.admin;
    let (status, body, _) = send_bytes(
        app,
        "PUT",
        "/api/prompts/night-welcome",
        a,
        wav_bytes(16_000, 2, 2),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(created["file"], "prompts/night-welcome.wav");
    assert_eq!(created["duration_ms"], 2000);
    let (status, body, ctype) =
        send_bytes(app, "GET", "/api/prompts/night-welcome", a, Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "audio/wav");
    // 8 kHz, mono, 16-bit: 44-byte header plus 2 s × 8000 × 2 bytes.
    assert_eq!(&body[22..28], &[1, 0, 0x40, 0x1f, 0, 0]);
    assert_eq!(body.len(), 44 + 32_000);
    let (status, body, _) =
        send_bytes(app, "PUT", "/api/prompts/bad", a, b"RIFF nonsense".to_vec()).await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = send_bytes(
        app,
        "PUT",
        "/api/prompts/..%2Fescape",
        a,
        wav_bytes(8_000, 1, 1),
    )
    .await;
    assert_eq!(status, 422);
    let list = get(app, "/api/prompts", a).await.json();
    assert_eq!(
        list,
        json!([{ "name": "night-welcome", "file": "prompts/night-welcome.wav", "duration_ms": 2000 }])
    );
    // Used by file, as the TOML file would write it; then protected.
    let r = post(
        app,
        "/api/queues",
        a,
        json!({ "name": "Prompted", "agent_groups": ["Sales agents"],
                "timeout": { "after": "60s", "prompt": { "file": "prompts/night-welcome.wav" }, "action": "disconnect" } }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = delete(app, "/api/prompts/night-welcome", a)
        .await
        .refused(409, "in_use");
    assert_eq!(body["used_by"], json!(["queue \"Prompted\""]));
    send(
        app,
        "DELETE",
        "/api/prompts/night-welcome",
        Some(&app.manager),
        None,
    )
    .await
    .refused(403, "forbidden");
    assert_eq!(delete(app, "/api/queues/Prompted", a).await.status, 204);
    assert_eq!(
        delete(app, "/api/prompts/night-welcome", a).await.status,
        204
    );
    get(app, "/api/prompts/night-welcome", a)
        .await
        .refused(404, "not_found");
    // Text, spoken once, when the text-to-speech engine is installed.
    if common::require("espeak-ng").is_some() {
        let r = post(
            app,
            "/api/prompts",
            &app.manager,
            json!({ "name": "hello", "text": "Hello." }),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert!(r.json()["duration_ms"].as_u64().unwrap() > 100);
        assert_eq!(delete(app, "/api/prompts/hello", a).await.status, 204);
    } else {
        println!("skipping the text prompt: espeak-ng not installed");
    }
    let audit = app.shared.store.list_audit(at(0), 1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "prompt.upload" && e.target == "night-welcome")
    );
}

/// Create, read, replace, patch and delete in each collection, checking the running model after
/// each step.
async fn each_collection_creates_reads_replaces_patches_and_deletes(app: &App) {
    let a = &app.admin;
    // (collection, created, replacement, patch, key the patch sets, value it has afterwards)
    let cases: Vec<(&str, Value, Value, Value, &str, Value)> = vec![
        (
            "agent-groups",
            json!({ "name": "C g", "agents": [ALICE] }),
            json!({ "agents": [BOB, CAROL], "routing": "serial" }),
            json!({ "alert_time": "30s" }),
            "alert_time",
            json!("30s"),
        ),
        (
            "queues",
            json!({ "name": "C q", "agent_groups": ["Sales agents"] }),
            json!({ "agent_groups": ["Support agents"], "timeout": { "after": "30s", "action": "disconnect" } }),
            json!({ "timeout": null, "overflow": { "max_calls": 2, "action": "disconnect" } }),
            "overflow",
            json!({ "max_calls": 2, "action": "disconnect" }),
        ),
        (
            "hours",
            json!({ "name": "C h", "monday": ["09:00-17:00"] }),
            json!({ "tuesday": ["09:00-12:00", "13:00-17:00"] }),
            json!({ "tuesday": null, "sunday": ["10:00-11:00"] }),
            "sunday",
            json!(["10:00-11:00"]),
        ),
        (
            "holiday-sets",
            json!({ "name": "C s", "holidays": [{ "name": "A", "start": "2027-05-01T00:00", "end": "2027-05-02T00:00" }] }),
            json!({ "holidays": [{ "name": "B", "start": "2027-06-01T00:00", "end": "2027-06-02T00:00" }] }),
            json!({ "holidays": [{ "name": "C", "start": "2027-07-01T00:00", "end": "2027-07-02T00:00" }] }),
            "holidays",
            json!([{ "name": "C", "start": "2027-07-01T00:00", "end": "2027-07-02T00:00" }]),
        ),
        (
            "workflows",
            json!({ "name": "C w", "kind": "hunt_group", "uri": "sip:cw@127.0.0.1", "queue": "Sales" }),
            json!({ "kind": "hunt_group", "uri": "sip:cw@127.0.0.1", "queue": "Support", "active": false }),
            json!({ "active": null, "description": "crud" }),
            "description",
            json!("crud"),
        ),
    ];
    for (collection, create, replace, patch, key, value) in cases {
        let name = create["name"].as_str().unwrap().to_owned();
        let one = format!("/api/{collection}/{}", name.replace(' ', "%20"));
        let r = post(app, &format!("/api/{collection}"), a, create.clone()).await;
        assert_eq!(r.status, 201, "{collection}: {}", r.text);
        let r = get(app, &one, a).await;
        assert_eq!(r.status, 200, "{collection}: {}", r.text);
        assert_eq!(r.json()["source"], "database");
        let r = put(app, &one, a, replace.clone()).await;
        assert_eq!(r.status, 200, "{collection}: {}", r.text);
        assert_eq!(r.json()["version"], 2);
        for (k, v) in replace.as_object().unwrap() {
            assert_eq!(&r.json()[k], v, "{collection}.{k}");
        }
        let r = patch_json(app, &one, a, patch.clone()).await;
        assert_eq!(r.status, 200, "{collection}: {}", r.text);
        assert_eq!(r.json()["version"], 3);
        assert_eq!(r.json()[key], value, "{collection}: {}", r.text);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                assert!(
                    r.json().get(k).is_none(),
                    "{collection}.{k} not removed: {}",
                    r.text
                );
            }
        }
        let listed = get(app, &format!("/api/{collection}"), a).await.json();
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["name"] == name && o["version"] == 3)
        );
        {
            let config = app.shared.config.load();
            let present = match collection {
                "agent-groups" => config.agent_groups.iter().any(|g| g.name == name),
                "queues" => config.queues.iter().any(|q| q.name == name),
                "hours" => config.hours.iter().any(|h| h.name == name),
                "holiday-sets" => config.holiday_sets.iter().any(|h| h.name == name),
                _ => config.workflows.iter().any(|w| w.name == name),
            };
            assert!(present, "{collection} {name} not in the running model");
        }
        let r = delete(app, &one, a).await;
        assert_eq!(r.status, 204, "{collection}: {}", r.text);
        get(app, &one, a).await.refused(404, "not_found");
    }
    assert!(app.shared.store.list_objects().await.unwrap().is_empty());
}

const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/health", "/health"),
    ("get", "/metrics", "/metrics"),
    ("get", "/agent", "/agent"),
    ("get", "/wallboard", "/wallboard"),
    ("get", "/config", "/config"),
    ("get", "/RgsConfig", "/RgsConfig"),
    ("get", "/config/config.js", "/config/config.js"),
    ("get", "/config/config.css", "/config/config.css"),
    ("get", "/api/openapi.json", "/api/openapi.json"),
    ("get", "/api/agents", "/api/agents"),
    ("post", "/api/agents", "/api/agents"),
    ("get", "/api/agents/{id}", "/api/agents/1"),
    ("put", "/api/agents/{id}", "/api/agents/1"),
    ("delete", "/api/agents/{id}", "/api/agents/999999"),
    ("get", "/api/groups", "/api/groups"),
    ("post", "/api/groups", "/api/groups"),
    ("get", "/api/groups/{id}", "/api/groups/1"),
    ("put", "/api/groups/{id}", "/api/groups/1"),
    ("delete", "/api/groups/{id}", "/api/groups/999999"),
    ("put", "/api/groups/{id}/members", "/api/groups/1/members"),
    (
        "put",
        "/api/groups/{id}/sign-ins/{agent_id}",
        "/api/groups/1/sign-ins/1",
    ),
    ("get", "/api/me", "/api/me"),
    (
        "delete",
        "/api/agents/{id}/wrap-up",
        "/api/agents/999999/wrap-up",
    ),
    ("get", "/api/agent-groups", "/api/agent-groups"),
    ("post", "/api/agent-groups", "/api/agent-groups"),
    ("get", "/api/agent-groups/{name}", "/api/agent-groups/Sales"),
    ("put", "/api/agent-groups/{name}", "/api/agent-groups/Nope"),
    (
        "patch",
        "/api/agent-groups/{name}",
        "/api/agent-groups/Nope",
    ),
    (
        "delete",
        "/api/agent-groups/{name}",
        "/api/agent-groups/Nope",
    ),
    ("get", "/api/queues", "/api/queues"),
    ("post", "/api/queues", "/api/queues"),
    ("get", "/api/queues/{name}", "/api/queues/Sales"),
    ("put", "/api/queues/{name}", "/api/queues/Nope"),
    ("patch", "/api/queues/{name}", "/api/queues/Nope"),
    ("delete", "/api/queues/{name}", "/api/queues/Nope"),
    ("get", "/api/hours", "/api/hours"),
    ("post", "/api/hours", "/api/hours"),
    ("get", "/api/hours/{name}", "/api/hours/Sales"),
    ("put", "/api/hours/{name}", "/api/hours/Nope"),
    ("patch", "/api/hours/{name}", "/api/hours/Nope"),
    ("delete", "/api/hours/{name}", "/api/hours/Nope"),
    ("get", "/api/holiday-sets", "/api/holiday-sets"),
    ("post", "/api/holiday-sets", "/api/holiday-sets"),
    ("get", "/api/holiday-sets/{name}", "/api/holiday-sets/Sales"),
    ("put", "/api/holiday-sets/{name}", "/api/holiday-sets/Nope"),
    (
        "patch",
        "/api/holiday-sets/{name}",
        "/api/holiday-sets/Nope",
    ),
    (
        "delete",
        "/api/holiday-sets/{name}",
        "/api/holiday-sets/Nope",
    ),
    ("get", "/api/workflows", "/api/workflows"),
    ("post", "/api/workflows", "/api/workflows"),
    ("get", "/api/workflows/{name}", "/api/workflows/Sales"),
    ("put", "/api/workflows/{name}", "/api/workflows/Nope"),
    ("patch", "/api/workflows/{name}", "/api/workflows/Nope"),
    ("delete", "/api/workflows/{name}", "/api/workflows/Nope"),
    ("get", "/api/prompts", "/api/prompts"),
    ("post", "/api/prompts", "/api/prompts"),
    ("get", "/api/prompts/{name}", "/api/prompts/nope"),
    ("put", "/api/prompts/{name}", "/api/prompts/nope"),
    ("delete", "/api/prompts/{name}", "/api/prompts/nope"),
    ("get", "/api/live", "/api/live"),
    ("get", "/api/live/queues", "/api/live/queues"),
    ("get", "/api/live/agents", "/api/live/agents"),
    ("get", "/api/live/calls", "/api/live/calls"),
    ("get", "/api/live/stream", "/api/live/stream"),
    ("get", "/api/reports/summary", "/api/reports/summary"),
    ("get", "/api/reports/calls", "/api/reports/calls"),
    ("get", "/api/audit", "/api/audit"),
    ("get", "/api/tokens", "/api/tokens"),
    ("post", "/api/tokens", "/api/tokens"),
    ("delete", "/api/tokens/{id}", "/api/tokens/999999"),
    ("post", "/api/session", "/api/session"),
    ("get", "/api/session", "/api/session"),
    ("delete", "/api/session", "/api/session"),
];

async fn openapi_covers_every_route(app: &App) {
    let r = send(app, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Bodies are described, not just named.
    for schema in [
        "AgentDoc",
        "AgentBody",
        "GroupDoc",
        "GroupBody",
        "SignInBody",
        "ErrorBody",
        "LiveSnapshot",
        "SummaryDoc",
        "CallRow",
        "ObjectDoc",
        "ObjectBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema]["properties"].is_object()
                || doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["ErrorBody"]["required"],
        json!(["error", "code"])
    );
    let paths = doc["paths"].as_object().unwrap();
    // `/api/groups` is described as the alias of `/api/agent-groups` it is, not as deprecated.
    let post_groups = &paths["/api/groups"]["post"];
    let text = format!("{} {}", post_groups["summary"], post_groups["description"]);
    assert!(text.contains("/api/agent-groups"), "{text}");
    for (path, ops) in paths.iter().filter(|(p, _)| p.starts_with("/api/groups")) {
        for (verb, op) in ops.as_object().unwrap() {
            let text = op.to_string().to_lowercase();
            assert!(
                op["deprecated"] != true && !text.contains("deprecated"),
                "{verb} {path}: {op}"
            );
        }
    }
    let mut documented = 0;
    for (_, ops) in paths {
        documented += ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
            .count();
    }
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document and the route list differ: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, template, concrete) in ROUTES {
        assert!(
            doc["paths"][template][method].is_object(),
            "{method} {template} missing from the OpenAPI document"
        );
        // The route is served: neither the JSON 404 fallback nor 405. (The SSE stream is not
        // requested here: it never ends.)
        if template.ends_with("/stream") {
            continue;
        }
        let r = send(
            app,
            &method.to_uppercase(),
            concrete,
            Some(&app.admin),
            Some("{}"),
        )
        .await;
        let fallback = r.status == 404 && r.text.contains("route not found");
        assert!(
            !fallback && r.status != 405,
            "{method} {concrete}: {} {}",
            r.status,
            r.text
        );
    }
}

async fn sign_in_survives_a_restart(app: &App) {
    // Alice signed herself in above; a new live state from the same store has her signed in.
    let config = Config::clone(&app.shared.config.load());
    let acd = Acd::start(config, Some(app.shared.store.clone()), PromptCache::Default)
        .await
        .unwrap();
    let live = Live::new(Arc::new(acd), app.clock.clone());
    assert_eq!(
        live.is_signed_in(&SipUri(ALICE.into()), "Sales agents"),
        Some(true)
    );
    assert_eq!(
        live.is_signed_in(&SipUri(BOB.into()), "Sales agents"),
        Some(false)
    );
}

trait NowForTest {
    fn now_utc_for_test(&self) -> DateTime<Utc>;
}

impl NowForTest for Arc<ManualClock> {
    fn now_utc_for_test(&self) -> DateTime<Utc> {
        rgsd::clock::Clock::now_utc(self.as_ref())
    }
}

/// `/health` stays 200 while call records cannot be written, and says so: `degraded`.
#[tokio::test]
async fn health_says_degraded_while_call_records_cannot_be_written() {
    let app = app("sqlite://rgsd.db").await;
    assert_eq!(send(&app, "GET", "/health", None, None).await.text, "ok");
    // A writer whose database has gone away: it keeps the record and retries.
    let scratch = Scratch::new();
    let url = rgsd::config::model::DatabaseUrl::Sqlite(scratch.path().join("gone.db"));
    let gone = Store::connect(&url).await.unwrap();
    gone.migrate().await.unwrap();
    gone.close().await;
    let options = WriterOptions {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..WriterOptions::default()
    };
    let writer = RecordWriter::spawn(gone, options);
    app.shared.live.metrics.attach_writer(writer.clone());
    writer.submit(fixture::records().remove(0)).unwrap();
    let mut status = writer.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(*status.borrow(), rgsd::store::WriterStatus::Retrying { .. }) {
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the writer never saw its database fail");
    let reply = send(&app, "GET", "/health", None, None).await;
    assert_eq!(reply.status, 200, "degraded is not down");
    assert!(
        reply
            .text
            .starts_with("degraded: the database is unreachable; 1 call records kept"),
        "{}",
        reply.text
    );
    app.shared.store.close().await;
}

#[tokio::test]
async fn api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    suite(app(&url).await).await;
}

/// A change that compiles but cannot be put in force (the daemon's apply failed, e.g. a prompt
/// could not be rendered) is answered with 500 and leaves the database as it was.
#[tokio::test]
async fn a_change_that_cannot_be_applied_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let mut app = app(&url).await;
    let path = app.shared.config.load().source.clone();
    let merged = rgsd::config::load_merged(
        &path,
        &[],
        &LoadOptions {
            check_environment: false,
        },
    )
    .unwrap();
    let failing: rgsd::api::objects::Apply =
        Arc::new(|_| Box::pin(async { Err(anyhow::anyhow!("cannot render the prompts")) }));
    app.shared.objects = Objects::new(
        failing,
        &merged,
        LoadOptions {
            check_environment: false,
        },
    );
    app.router = api::router(app.shared.clone());
    let r = post(
        &app,
        "/api/hours",
        &app.admin,
        json!({ "name": "Never", "monday": ["09:00-10:00"] }),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.text.contains("cannot render the prompts"), "{}", r.text);
    assert!(app.shared.store.list_objects().await.unwrap().is_empty());
    assert!(
        app.shared
            .config
            .load()
            .hours
            .iter()
            .all(|h| h.name != "Never")
    );
}

#[tokio::test]
async fn api_on_postgres() {
    let Some(admin_url) = common::pg_url() else {
        return;
    };
    let db = ScratchDatabase::create(&admin_url).await;
    suite(app(&db.url).await).await;
}

/// A token issued by `rgsd token create`, used against the real `rgsd serve`.
#[test]
fn token_from_the_binary_works_against_the_real_server() {
    let scratch = Scratch::new();
    let config = scratch.write("rgsd.toml", config_text("sqlite://rgsd.db"));
    let config = config.to_str().unwrap();
    let (status, out, err) = common::run_rgsd(&[
        "token",
        "create",
        "--config",
        config,
        "--role",
        "admin",
        "--subject",
        "ops",
    ]);
    assert!(status.success(), "{out}{err}");
    let admin = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert!(admin.starts_with("rgsd_"), "{out}");
    let (status, out, err) = common::run_rgsd(&[
        "token",
        "create",
        "--config",
        config,
        "--role",
        "agent",
        "--subject",
        ALICE,
    ]);
    assert!(status.success(), "{out}{err}");
    let agent = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let (status, _, err) = common::run_rgsd(&[
        "token",
        "create",
        "--config",
        config,
        "--role",
        "boss",
        "--subject",
        "x",
    ]);
    assert!(!status.success());
    assert!(err.contains("boss"), "{err}");

    let server = common::Server::start(std::path::Path::new(config));
    let (code, body) = http(server.http, "GET", "/api/agents", Some(&admin), None);
    assert_eq!(code, 200, "{body}");
    let agents: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(agents.as_array().unwrap().len(), 4);
    let (code, body) = http(server.http, "GET", "/api/agents", Some(&agent), None);
    assert_eq!(code, 403, "{body}");
    let (code, _) = http(server.http, "GET", "/api/agents", None, None);
    assert_eq!(code, 401);
    // The agent signs in through the API of the running daemon.
    let (_, me) = http(server.http, "GET", "/api/me", Some(&agent), None);
    let me: Value = serde_json::from_str(&me).unwrap();
    let group = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Sales agents")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/groups/{group}/sign-ins/{}", me["agent_id"]);
    let (code, body) = http(
        server.http,
        "PUT",
        &path,
        Some(&agent),
        Some(r#"{"signed_in":true}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"routed\":true"), "{body}");
    let (code, metrics) = http(server.http, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("rgsd_calls_total{outcome=\"answered\"} 0"),
        "{metrics}"
    );
    let (code, page) = http(server.http, "GET", "/agent", None, None);
    assert_eq!(code, 200);
    assert!(page.contains("role=\"status\""));

    // The sign-in survives a restart of the daemon: stored, and loaded into routing at start.
    drop(server);
    let server = common::Server::start(std::path::Path::new(config));
    let (code, agents) = http(server.http, "GET", "/api/live/agents", Some(&admin), None);
    assert_eq!(code, 200, "{agents}");
    let agents: Value = serde_json::from_str(&agents).unwrap();
    let alice = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["sip_uri"] == ALICE)
        .unwrap();
    assert_eq!(alice["signed_in"], json!(["Sales agents"]), "{agents}");
    let (_, queues) = http(server.http, "GET", "/api/live/queues", Some(&admin), None);
    let queues: Value = serde_json::from_str(&queues).unwrap();
    assert_eq!(queues[0]["name"], "Sales");
    assert_eq!(queues[0]["agents_signed_in"], 1);
}
