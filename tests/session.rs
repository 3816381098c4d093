//! People signing in with a password: the session cookie and its flags, wrong password and
//! unknown user alike, the failed sign-in limit, CSRF on changes, idle and absolute expiry on
//! the injectable clock, sign-out, roles the same as tokens, audit entries. In process on SQLite
//! and on PostgreSQL (when `RGSD_TEST_PG_URL` names a server); then `rgsd user …` driven as a
//! real binary, and its user signing in to the real `rgsd serve`.

// Test code: a failed `unwrap` is how a test fails; the real-binary test waits on real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use rgsd::acd::runtime::{Acd, PromptCache};
use rgsd::api::Shared;
use rgsd::api::objects::Objects;
use rgsd::api::{self, Live};
use rgsd::clock::ManualClock;
use rgsd::config::LoadOptions;
use rgsd::store::{PasswordHash, Role, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::Scratch;
use common::pg::ScratchDatabase;

const ADMIN: &str = "sip:admin@127.0.0.1";
const MANAGER: &str = "sip:manager@127.0.0.1";
const ALICE: &str = "sip:alice@127.0.0.1";
const PASSWORD: &str = "correct horse battery staple";

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

[[agent_group]]
name = "Sales agents"
participation = "formal"
agents = ["{ALICE}"]

[[agent_group]]
name = "Other agents"
agents = ["sip:dave@127.0.0.1"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

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
name = "Other"
kind = "hunt_group"
uri = "sip:other@127.0.0.1"
queue = "Other"
"#
    )
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
}

struct App {
    router: Router,
    shared: Shared,
    clock: Arc<ManualClock>,
    admin_token: String,
    _scratch: Scratch,
}

async fn app(database: &str) -> App {
    let scratch = Scratch::new();
    let path = scratch.write("rgsd.toml", config_text(database));
    let options = LoadOptions {
        check_environment: false,
    };
    let merged =
        rgsd::config::load_merged(&path, &[], &options).unwrap_or_else(|d| panic!("{d:?}"));
    let config = merged.loaded.config.clone();
    let clock = Arc::new(ManualClock::new(start_time()));
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
    let hash = tokio::task::spawn_blocking(|| PasswordHash::new(PASSWORD))
        .await
        .unwrap()
        .unwrap();
    for (name, role) in [
        (ADMIN, Role::Admin),
        (MANAGER, Role::Manager),
        (ALICE, Role::Agent),
    ] {
        store.create_user(name, role, &hash).await.unwrap();
    }
    let admin_token = store
        .create_token(Role::Admin, "ops")
        .await
        .unwrap()
        .token
        .expose()
        .to_owned();
    App {
        router: api::router(shared.clone()),
        shared,
        clock,
        admin_token,
        _scratch: scratch,
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// The cookie, with this CSRF header (or none).
    Cookie(&'a Session, Option<&'a str>),
}

#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

async fn send(
    app: &App,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
    from: &str,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "rgsd.test");
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Auth::Cookie(s, csrf) => {
            req = req.header(
                header::COOKIE,
                format!("theme=dark; rgsd_session={}", s.cookie),
            );
            if let Some(c) = csrf {
                req = req.header("x-csrf-token", c);
            }
        }
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
    reply(app.router.clone().oneshot(req).await.unwrap()).await
}

async fn reply(res: axum::response::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

const HOME: &str = "192.0.2.1:40000";

async fn attempt(app: &App, user: &str, password: &str, from: &str) -> Reply {
    let body = json!({ "user": user, "password": password });
    send(app, "POST", "/api/session", Auth::None, Some(body), from).await
}

/// Signs in and returns the session (cookie value and CSRF token).
async fn sign_in(app: &App, user: &str) -> Session {
    let r = attempt(app, user, PASSWORD, HOME).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let set = r.header("set-cookie").unwrap();
    let cookie = set
        .strip_prefix("rgsd_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    Session {
        cookie,
        csrf: r.json()["csrf_token"].as_str().unwrap().to_owned(),
    }
}

async fn audit_actions(app: &App) -> Vec<(String, String, Value)> {
    app.shared
        .store
        .list_audit(DateTime::<Utc>::MIN_UTC, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.detail))
        .collect()
}

async fn suite(app: App) {
    cookie_flags_and_who_is_signed_in(&app).await;
    wrong_password_and_unknown_user_get_the_same_401(&app).await;
    csrf_is_required_on_changes_by_cookie_only(&app).await;
    roles_are_the_same_as_with_tokens(&app).await;
    sign_out_ends_the_session(&app).await;
    sessions_expire_when_idle_and_absolutely(&app).await;
    failed_sign_ins_are_limited_per_user_and_per_address(&app).await;
    sign_ins_are_audited_without_secrets(&app).await;
}

async fn cookie_flags_and_who_is_signed_in(app: &App) {
    let r = attempt(app, ADMIN, PASSWORD, HOME).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let set = r.header("set-cookie").unwrap();
    let (pair, flags) = set.split_once("; ").unwrap();
    let id = pair.strip_prefix("rgsd_session=").unwrap();
    assert_eq!(id.len(), 64);
    assert_eq!(flags, "HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["user"], ADMIN);
    assert_eq!(body["role"], "admin");
    assert_eq!(body["idle_timeout_seconds"], 7200);
    assert!(!r.text.contains(id), "the session id is only in the cookie");
    let session = Session {
        cookie: id.to_owned(),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    };
    let who = send(
        app,
        "GET",
        "/api/session",
        Auth::Cookie(&session, None),
        None,
        HOME,
    )
    .await;
    assert_eq!(who.status, StatusCode::OK, "{}", who.text);
    assert_eq!(who.json()["user"], ADMIN);
    assert_eq!(who.json()["csrf_token"], session.csrf.as_str());
    // Without a cookie, or with a bearer token only, nobody is signed in.
    let none = send(app, "GET", "/api/session", Auth::None, None, HOME).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let bearer = send(
        app,
        "GET",
        "/api/session",
        Auth::Bearer(&app.admin_token),
        None,
        HOME,
    )
    .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);

    // Behind a TLS-terminating proxy the cookie is Secure.
    let mut req = Request::builder()
        .method("POST")
        .uri("/api/session")
        .header(header::HOST, "rgsd.test")
        .header("x-forwarded-proto", "https")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"user": ADMIN, "password": PASSWORD}).to_string(),
        ))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(HOME.parse::<SocketAddr>().unwrap()));
    let r = reply(app.router.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.header("set-cookie").unwrap().ends_with("; Secure"));

    // An HTML form signs in too.
    let req = Request::builder()
        .method("POST")
        .uri("/api/session")
        .header(header::HOST, "rgsd.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "user=sip%3Aalice%40127.0.0.1&password={}",
            PASSWORD.replace(' ', "+")
        )))
        .unwrap();
    let r = reply(app.router.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["user"], ALICE);

    // A page of another site may not sign anyone in.
    let req = Request::builder()
        .method("POST")
        .uri("/api/session")
        .header(header::HOST, "rgsd.test")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"user": ADMIN, "password": PASSWORD}).to_string(),
        ))
        .unwrap();
    let r = reply(app.router.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.header("set-cookie").is_none());
}

async fn wrong_password_and_unknown_user_get_the_same_401(app: &App) {
    let from = "192.0.2.10:1";
    let wrong = attempt(app, MANAGER, "not the password at all", from).await;
    let unknown = attempt(app, "sip:nobody@127.0.0.1", PASSWORD, from).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.text, unknown.text);
    assert_eq!(wrong.json()["code"], "unauthenticated");
    assert!(wrong.header("set-cookie").is_none());
    // A disabled user is refused the same way, with the right password.
    app.shared
        .store
        .set_user_disabled(MANAGER, true)
        .await
        .unwrap();
    let disabled = attempt(app, MANAGER, PASSWORD, from).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(disabled.text, wrong.text);
    app.shared
        .store
        .set_user_disabled(MANAGER, false)
        .await
        .unwrap();
    // Malformed bodies are 400, not 401 or 500.
    let r = send(
        app,
        "POST",
        "/api/session",
        Auth::None,
        Some(json!({"user": ADMIN})),
        from,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

async fn csrf_is_required_on_changes_by_cookie_only(app: &App) {
    let admin = sign_in(app, ADMIN).await;
    let new_agent = |n: u32| json!({ "sip_uri": format!("sip:csrf{n}@127.0.0.1") });
    let missing = send(
        app,
        "POST",
        "/api/agents",
        Auth::Cookie(&admin, None),
        Some(new_agent(1)),
        HOME,
    )
    .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.text);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token")
    );
    let other = sign_in(app, ADMIN).await;
    let wrong = send(
        app,
        "POST",
        "/api/agents",
        Auth::Cookie(&admin, Some(&other.csrf)),
        Some(new_agent(1)),
        HOME,
    )
    .await;
    assert_eq!(
        wrong.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    let right = send(
        app,
        "POST",
        "/api/agents",
        Auth::Cookie(&admin, Some(&admin.csrf)),
        Some(new_agent(1)),
        HOME,
    )
    .await;
    assert_eq!(right.status, StatusCode::CREATED, "{}", right.text);
    // Reads need no CSRF token; bearer tokens never do.
    let read = send(
        app,
        "GET",
        "/api/agents",
        Auth::Cookie(&admin, None),
        None,
        HOME,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    let bearer = send(
        app,
        "POST",
        "/api/agents",
        Auth::Bearer(&app.admin_token),
        Some(new_agent(2)),
        HOME,
    )
    .await;
    assert_eq!(bearer.status, StatusCode::CREATED, "{}", bearer.text);
    // A wrong bearer token is not rescued by a good cookie.
    let mut req = Request::builder()
        .uri("/api/agents")
        .header(header::AUTHORIZATION, "Bearer rgsd_wrong")
        .header(header::COOKIE, format!("rgsd_session={}", admin.cookie))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(HOME.parse::<SocketAddr>().unwrap()));
    let r = reply(app.router.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn roles_are_the_same_as_with_tokens(app: &App) {
    let store = &app.shared.store;
    let tokens = [
        (ADMIN, store.create_token(Role::Admin, ADMIN).await.unwrap()),
        (
            MANAGER,
            store.create_token(Role::Manager, MANAGER).await.unwrap(),
        ),
        (ALICE, store.create_token(Role::Agent, ALICE).await.unwrap()),
    ];
    for (user, token) in &tokens {
        let session = sign_in(app, user).await;
        for path in [
            "/api/agents",
            "/api/tokens",
            "/api/workflows",
            "/api/groups",
            "/api/live",
            "/api/me",
            "/api/audit?since=2026-01-01T00:00:00Z",
        ] {
            let by_token = send(
                app,
                "GET",
                path,
                Auth::Bearer(token.token.expose()),
                None,
                HOME,
            )
            .await;
            let by_cookie = send(app, "GET", path, Auth::Cookie(&session, None), None, HOME).await;
            assert_eq!(by_token.status, by_cookie.status, "{user} GET {path}");
            if path != "/api/live" && path != "/api/me" && !path.starts_with("/api/audit") {
                // The same things are visible (live state and audit move on between the two).
                assert_eq!(by_token.text, by_cookie.text, "{user} GET {path}");
            }
        }
    }
    // The manager sees the workflow they manage only; the agent signs herself in.
    let manager = sign_in(app, MANAGER).await;
    let flows = send(
        app,
        "GET",
        "/api/workflows",
        Auth::Cookie(&manager, None),
        None,
        HOME,
    )
    .await;
    let names: Vec<Value> = flows
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].clone())
        .collect();
    assert_eq!(names, [json!("Sales")]);
    let alice = sign_in(app, ALICE).await;
    let me = send(
        app,
        "GET",
        "/api/me",
        Auth::Cookie(&alice, None),
        None,
        HOME,
    )
    .await
    .json();
    let group = me["groups"][0]["id"].as_i64().unwrap();
    let path = format!("/api/groups/{group}/sign-ins/{}", me["agent_id"]);
    let r = send(
        app,
        "PUT",
        &path,
        Auth::Cookie(&alice, Some(&alice.csrf)),
        Some(json!({"signed_in": true})),
        HOME,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["routed"], true);
    let r = send(
        app,
        "POST",
        "/api/agents",
        Auth::Cookie(&alice, Some(&alice.csrf)),
        Some(json!({"sip_uri": "sip:x@127.0.0.1"})),
        HOME,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

async fn sign_out_ends_the_session(app: &App) {
    let s = sign_in(app, ALICE).await;
    let no_csrf = send(
        app,
        "DELETE",
        "/api/session",
        Auth::Cookie(&s, None),
        None,
        HOME,
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let out = send(
        app,
        "DELETE",
        "/api/session",
        Auth::Cookie(&s, Some(&s.csrf)),
        None,
        HOME,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("rgsd_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    for path in ["/api/session", "/api/me"] {
        let r = send(app, "GET", path, Auth::Cookie(&s, None), None, HOME).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn sessions_expire_when_idle_and_absolutely(app: &App) {
    // Idle: 2 hours without a request.
    let s = sign_in(app, ALICE).await;
    app.clock.advance(Duration::from_secs(7199));
    let r = send(app, "GET", "/api/me", Auth::Cookie(&s, None), None, HOME).await;
    assert_eq!(r.status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(7200));
    let r = send(app, "GET", "/api/me", Auth::Cookie(&s, None), None, HOME).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Absolute: 12 hours after sign-in, however busy.
    let s = sign_in(app, ALICE).await;
    for _ in 0..(12 * 4 - 1) {
        app.clock.advance(Duration::from_secs(15 * 60));
        let r = send(
            app,
            "GET",
            "/api/session",
            Auth::Cookie(&s, None),
            None,
            HOME,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    app.clock.advance(Duration::from_secs(15 * 60));
    let r = send(
        app,
        "GET",
        "/api/session",
        Auth::Cookie(&s, None),
        None,
        HOME,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // An event stream opened 300 ms before the absolute expiry ends with the session.
    let admin = sign_in_at_expiry_minus(app, Duration::from_millis(300)).await;
    let mut req = Request::builder()
        .uri("/api/live/stream")
        .header(header::COOKIE, format!("rgsd_session={}", admin.cookie))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(HOME.parse::<SocketAddr>().unwrap()));
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        axum::body::to_bytes(res.into_body(), 1 << 20),
    )
    .await
    .expect("the stream outlived its session")
    .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("event: snapshot"));
    app.clock.advance(Duration::from_secs(1));
}

/// An administrator's session whose absolute expiry is `left` from now (moves the clock).
async fn sign_in_at_expiry_minus(app: &App, left: Duration) -> Session {
    let s = sign_in(app, ADMIN).await;
    let step = Duration::from_secs(3600);
    let mut to_go = Duration::from_secs(12 * 3600) - left;
    while to_go > Duration::ZERO {
        let d = to_go.min(step);
        app.clock.advance(d);
        to_go -= d;
        let r = send(
            app,
            "GET",
            "/api/session",
            Auth::Cookie(&s, None),
            None,
            HOME,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    s
}

async fn failed_sign_ins_are_limited_per_user_and_per_address(app: &App) {
    // Per user: five failures, then 429 even with the right password, from anywhere.
    for n in 0..5 {
        let r = attempt(
            app,
            MANAGER,
            "wrong password!!",
            &format!("198.51.100.{n}:1"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = attempt(app, MANAGER, PASSWORD, "198.51.100.99:1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.json()["code"], "rate_limited");
    assert_eq!(r.header("retry-after"), Some("60"));
    assert!(r.header("set-cookie").is_none());
    // Another user is not affected.
    assert_eq!(
        attempt(app, ADMIN, PASSWORD, "198.51.100.99:1")
            .await
            .status,
        StatusCode::CREATED
    );
    app.clock.advance(Duration::from_secs(30));
    let r = attempt(app, MANAGER, PASSWORD, "198.51.100.99:1").await;
    assert_eq!(r.header("retry-after"), Some("30"));
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(
        attempt(app, MANAGER, PASSWORD, "198.51.100.99:1")
            .await
            .status,
        StatusCode::CREATED
    );

    // Per address: twenty failures (over many names), then that address is refused.
    app.clock.advance(Duration::from_secs(120));
    let from = "203.0.113.7:5000";
    for n in 0..20 {
        let r = attempt(
            app,
            &format!("sip:guess{n}@127.0.0.1"),
            "wrong password!!",
            from,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = attempt(app, ALICE, PASSWORD, from).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // The port does not matter; another address does.
    let r = attempt(app, ALICE, PASSWORD, "203.0.113.7:5001").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = attempt(app, ALICE, PASSWORD, "203.0.113.8:5000").await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.clock.advance(Duration::from_secs(61));
}

async fn sign_ins_are_audited_without_secrets(app: &App) {
    let s = sign_in(app, ADMIN).await;
    attempt(app, ADMIN, "a wrong password here", "192.0.2.77:1").await;
    attempt(app, "my password typed here", PASSWORD, "192.0.2.77:1").await;
    send(
        app,
        "DELETE",
        "/api/session",
        Auth::Cookie(&s, Some(&s.csrf)),
        None,
        HOME,
    )
    .await;
    let entries = audit_actions(app).await;
    let tail: Vec<(&str, &str)> = entries[entries.len() - 4..]
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            (ADMIN, "session.sign_in"),
            (ADMIN, "session.sign_in_failed"),
            ("(not a SIP URI)", "session.sign_in_failed"),
            (ADMIN, "session.sign_out"),
        ]
    );
    let failed = &entries[entries.len() - 3].2;
    assert_eq!(failed["reason"], "wrong password");
    assert_eq!(failed["address"], "192.0.2.77");
    let all = format!("{entries:?}");
    for secret in [PASSWORD, "a wrong password here", &s.cookie, &s.csrf] {
        assert!(!all.contains(secret), "{secret} in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("session.db").display());
    suite(app(&url).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_postgres() {
    let Some(admin_url) = common::pg_url() else {
        return;
    };
    let db = ScratchDatabase::create(&admin_url).await;
    suite(app(&db.url).await).await;
}

#[test]
fn the_openapi_document_lists_the_session_endpoints() {
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let path = &doc["paths"]["/api/session"];
    for method in ["get", "post", "delete"] {
        assert!(path[method].is_object(), "{method} missing: {path}");
    }
    assert_eq!(
        path["post"]["security"],
        json!([{}]),
        "sign-in needs no credential"
    );
    assert!(path["post"]["responses"]["429"].is_object());
    // Its body has a schema of its own, next to (not instead of) the group sign-in body.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Credentials"]["properties"]["password"].is_object());
    assert!(schemas["SignInBody"]["properties"]["signed_in"].is_object());
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "rgsd_session");
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// Runs `rgsd args…` with `stdin` as standard input.
fn rgsd_with_stdin(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::rgsd_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP request to the real server; returns the status line's code, the head and the body.
fn raw_http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_owned(), body.to_owned())
}

fn post_sign_in(addr: SocketAddr, user: &str, password: &str) -> (u16, String, String) {
    let body = json!({ "user": user, "password": password }).to_string();
    raw_http(
        addr,
        &format!(
            "POST /api/session HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn get_with_cookie(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String, String) {
    raw_http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Cookie: rgsd_session={cookie}\r\n\r\n"
        ),
    )
}

#[test]
fn user_commands_of_the_binary_and_signing_in_to_the_real_server() {
    let scratch = Scratch::new();
    let config = scratch.write("rgsd.toml", config_text("sqlite://rgsd.db"));
    let config = config.to_str().unwrap();
    let add = |name: &str, role: &str, stdin: &str| {
        rgsd_with_stdin(
            &["user", "add", "--config", config, "--role", role, name],
            stdin,
        )
    };
    // Refused: too short, empty, not a SIP URI, a broken configuration.
    let (code, _, err) = add(ADMIN, "admin", "short\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("12 characters"), "{err}");
    let (code, _, err) = add(ADMIN, "admin", "");
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = add("admin", "admin", &format!("{PASSWORD}\n"));
    assert_eq!(code, 1);
    assert!(err.contains("not a SIP URI"), "{err}");
    let broken = scratch.write("broken.toml", "[server]\nnonsense = 1\n");
    let (code, _, _) = rgsd_with_stdin(
        &[
            "user",
            "add",
            "--config",
            broken.to_str().unwrap(),
            "--role",
            "admin",
            ADMIN,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 78);
    // The password is never an argument; the help says the minimum.
    let (code, out, _) = rgsd_with_stdin(&["user", "add", "--help"], "");
    assert_eq!(code, 0);
    assert!(out.contains("at least 12 characters"), "{out}");
    assert!(out.contains("--password-file"), "{out}");
    assert!(!out.contains("--password "), "{out}");

    // Added from standard input (CRLF too) and from a file; a duplicate is refused.
    let (code, out, err) = add(ADMIN, "admin", &format!("{PASSWORD}\r\n"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("added"), "{out}");
    let (code, _, err) = add(ADMIN, "manager", &format!("{PASSWORD}\n"));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let file = scratch.write("alice.pw", "alice's long password\n");
    let (code, out, err) = rgsd_with_stdin(
        &[
            "user",
            "add",
            "--config",
            config,
            "--role",
            "agent",
            "--password-file",
            file.to_str().unwrap(),
            ALICE,
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = rgsd_with_stdin(&["user", "list", "--config", config], "");
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0][..2], [ADMIN, "admin"]);
    assert_eq!(lines[1][..2], [ALICE, "agent"]);
    assert_eq!(lines[1][3], "-");

    // Signing in to the real server.
    let server = common::Server::start(std::path::Path::new(config));
    let (code, head, body) = post_sign_in(server.http, ADMIN, PASSWORD);
    assert_eq!(code, 201, "{head}{body}");
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(
        set.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
        "{set}"
    );
    let admin = set
        .strip_prefix("rgsd_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (code, _, body) = get_with_cookie(server.http, "/api/tokens", &admin);
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = post_sign_in(server.http, ALICE, "alice's long password");
    assert_eq!(code, 201);
    let (code, _, _) = post_sign_in(server.http, ALICE, "not alice's password");
    assert_eq!(code, 401);

    // A new password ends the sessions; removing the user refuses sign-in.
    let (code, out, err) = rgsd_with_stdin(
        &["user", "passwd", "--config", config, ADMIN],
        "a brand new password\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = get_with_cookie(server.http, "/api/tokens", &admin);
    assert_eq!(code, 401);
    let (code, _, _) = post_sign_in(server.http, ADMIN, "a brand new password");
    assert_eq!(code, 201);
    // Disabled, the right password no longer signs in; enabled again, it does.
    let (code, _, err) = rgsd_with_stdin(&["user", "disable", "--config", config, ADMIN], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = post_sign_in(server.http, ADMIN, "a brand new password");
    assert_eq!(code, 401);
    let (_, out, _) = rgsd_with_stdin(&["user", "list", "--config", config], "");
    assert_ne!(
        out.lines().next().unwrap().split('\t').nth(3),
        Some("-"),
        "{out}"
    );
    let (code, _, err) = rgsd_with_stdin(&["user", "enable", "--config", config, ADMIN], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = post_sign_in(server.http, ADMIN, "a brand new password");
    assert_eq!(code, 201);
    let (code, _, err) = rgsd_with_stdin(&["user", "remove", "--config", config, ALICE], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = rgsd_with_stdin(&["user", "remove", "--config", config, ALICE], "");
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, _, _) = post_sign_in(server.http, ALICE, "alice's long password");
    assert_eq!(code, 401);

    // Neither passwords nor session ids reach the log.
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("signed in"), "{log}");
    for secret in [
        PASSWORD,
        "alice's long password",
        "a brand new password",
        &admin,
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}
