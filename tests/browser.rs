//! The agent page and the wallboard in a real browser: headless Chromium driven over the
//! DevTools protocol (a WebSocket, JSON commands), against the real `rgsd serve`.
//!
//! An agent opens `/agent`, signs in with their user name and password (a wrong password first:
//! the form says so), sees their formal group's switch off, presses it, and sees it on; the
//! daemon then reports them signed in; a reload keeps them signed in; the sign-out button ends
//! the session. The wallboard refuses the agent's sign-in and, signed in as an administrator
//! with a password, shows the queue with that agent signed in, over server-sent events.
//! Screenshots are saved under the target folder (`CARGO_TARGET_TMPDIR`).
//!
//! Skipped, with the reason printed, when no Chromium is on PATH (Debian package `chromium`).

// Test code: a failed `unwrap` is how a test fails; deadlines here are real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use common::Scratch;

const ALICE: &str = "sip:alice@127.0.0.1";

fn config() -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [30000, 30999]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
participation = "formal"
agents = ["{ALICE}", "sip:bob@127.0.0.1"]

[[agent_group]]
name = "Support agents"
participation = "informal"
agents = ["{ALICE}"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[queue]]
name = "Support"
agent_groups = ["Support agents"]

[[workflow]]
name = "Sales"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"

[[workflow]]
name = "Support"
kind = "hunt_group"
uri = "sip:support@127.0.0.1"
queue = "Support"
"#
    )
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return Some(p);
        }
    }
    println!("skipping: chromium not on PATH (Debian package `chromium`)");
    None
}

/// A headless Chromium, killed on drop.
struct Browser {
    child: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page's DevTools connection.
struct Page {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Bounded: events in between are skipped until the reply or the deadline.
        while Instant::now() < deadline {
            let Message::Text(text) = self.ws.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
        panic!("no reply to {method}");
    }

    /// Evaluates `expr` in the page (promises awaited); returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.command(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits (at most 10 s) until `expr` is true in the page.
    fn wait_for(&mut self, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.eval(expr) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let html = self.eval("document.body.innerHTML");
        panic!("timed out waiting for {expr}; page:\n{html}");
    }

    fn navigate(&mut self, url: &str) {
        self.command("Page.navigate", json!({ "url": url }));
        self.wait_for("document.readyState === 'complete'");
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.command("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

fn launch(bin: &PathBuf, profile: &std::path::Path) -> (Browser, Page) {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=900,700",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let browser = Browser { child };
    let ws_url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium did not print its DevTools address");
    let addr: SocketAddr = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The page target's own socket, from the target list.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page_ws = loop {
        let (_, body) = http(addr, "GET", "/json/list", None, None);
        let list: Value = serde_json::from_str(&body).unwrap_or(json!([]));
        if let Some(p) = list
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
        {
            break p["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no page target: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (ws, _) = tungstenite::client(page_ws.as_str(), stream).unwrap();
    (browser, Page { ws, next_id: 0 })
}

fn token(config: &str, role: &str, subject: &str) -> String {
    let (status, out, err) = common::run_rgsd(&[
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

/// Adds a user with `rgsd user add`, the password on standard input.
fn user(config: &str, role: &str, name: &str, password: &str) {
    let mut child = Command::new(common::rgsd_bin())
        .args(["user", "add", "--config", config, "--role", role, name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Fills the sign-in form of the page and submits it.
fn sign_in_form(page: &mut Page, user: &str, password: &str) {
    page.eval(&format!(
        "document.getElementById('user').value = {}; document.getElementById('password').value = {}; document.getElementById('login').requestSubmit(); true",
        json!(user),
        json!(password)
    ));
}

const ALICE_PASSWORD: &str = "alice's long password";
const BOSS: &str = "sip:boss@127.0.0.1";
const BOSS_PASSWORD: &str = "the boss's long password";

#[test]
fn an_agent_signs_in_on_the_page_and_the_wallboard_shows_it() {
    let Some(bin) = chromium() else {
        return;
    };
    let scratch = Scratch::new();
    let config = scratch.write("rgsd.toml", config());
    let config = config.to_str().unwrap();
    let agent = token(config, "agent", ALICE);
    let admin = token(config, "admin", "ops");
    user(config, "agent", ALICE, ALICE_PASSWORD);
    user(config, "admin", BOSS, BOSS_PASSWORD);
    let server = common::Server::start(std::path::Path::new(config));
    let base = format!("http://{}", server.http);
    let (_browser, mut page) = launch(&bin, &scratch.path().join("chrome"));

    // The agent page: sign in with a password (a wrong one first).
    page.navigate(&format!("{base}/agent"));
    assert_eq!(
        page.eval("document.querySelector('label[for=user]').textContent"),
        "User name (your SIP address)"
    );
    sign_in_form(&mut page, ALICE, "not alice's password");
    page.wait_for("document.getElementById('login-error').textContent !== ''");
    assert_eq!(
        page.eval("document.getElementById('login-error').textContent"),
        "Unknown user name or wrong password."
    );
    page.screenshot("agent-page-sign-in.png");
    sign_in_form(&mut page, ALICE, ALICE_PASSWORD);
    page.wait_for("document.querySelector('[role=switch]') !== null");
    assert_eq!(
        page.eval("document.getElementById('subject').textContent"),
        ALICE
    );
    assert_eq!(
        page.eval("document.getElementById('state').textContent"),
        "idle"
    );
    // One switch (the formal group), off; the informal group has none.
    assert_eq!(
        page.eval("document.querySelectorAll('[role=switch]').length"),
        1
    );
    let switch = "document.querySelector('[role=switch]')";
    assert_eq!(
        page.eval(&format!("{switch}.getAttribute('aria-checked')")),
        "false"
    );
    assert_eq!(
        page.eval(&format!(
            "document.getElementById({switch}.getAttribute('aria-labelledby')).textContent"
        )),
        "Sales agents"
    );
    page.screenshot("agent-page-group-off.png");
    // The password is not kept in the page; the session id is not readable by it (HttpOnly).
    assert_eq!(page.eval("document.getElementById('password').value"), "");
    assert_eq!(page.eval("document.cookie"), "");

    // Press the switch (keyboard-reachable button): it turns on.
    page.eval(&format!("{switch}.focus(); {switch}.click(); true"));
    page.wait_for(&format!("{switch}.getAttribute('aria-checked') === 'true'"));
    assert_eq!(
        page.eval("document.getElementById('status').textContent"),
        "Signed in to Sales agents."
    );
    assert_eq!(
        page.eval(&format!("document.activeElement === {switch}")),
        true
    );
    page.screenshot("agent-page-signed-in.png");

    // The daemon agrees.
    let (code, me) = http(server.http, "GET", "/api/me", Some(&agent), None);
    assert_eq!(code, 200);
    let me: Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["state"]["signed_in"], json!(["Sales agents"]), "{me}");

    // A reload keeps the session; the sign-out button ends it.
    page.navigate(&format!("{base}/agent"));
    page.wait_for(&format!(
        "{switch} !== null && {switch}.getAttribute('aria-checked') === 'true'"
    ));
    page.eval("document.getElementById('logout').click(); true");
    page.wait_for("!document.getElementById('login').hidden");
    assert_eq!(
        page.eval("document.getElementById('status').textContent"),
        "Signed out of this page."
    );
    assert_eq!(page.eval("fetch('/api/session').then(r => r.status)"), 401);
    assert_eq!(page.eval("fetch('/api/me').then(r => r.status)"), 401);
    page.screenshot("agent-page-signed-out.png");

    // The wallboard, live over SSE: Sales has one agent signed in and free.
    page.navigate(&format!("{base}/wallboard"));
    // An agent is refused, and the page says so instead of retrying for ever.
    sign_in_form(&mut page, ALICE, ALICE_PASSWORD);
    page.wait_for("document.getElementById('login-error').textContent.includes('refused')");
    assert_eq!(page.eval("document.getElementById('board').hidden"), true);
    sign_in_form(&mut page, BOSS, BOSS_PASSWORD);
    page.wait_for("document.querySelectorAll('#board tbody tr').length === 2");
    let row = page.eval(
        "Array.from(document.querySelectorAll('#board tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))",
    );
    assert_eq!(
        row[0],
        json!(["Sales", "0", "0:00", "1", "1", "0"]),
        "{row}"
    );
    assert_eq!(
        row[1],
        json!(["Support", "0", "0:00", "1", "1", "0"]),
        "{row}"
    );
    // A sign-out through the API reaches the open wallboard without a reload.
    let sales_id = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Sales agents")
        .unwrap()["id"]
        .clone();
    let (code, body) = http(
        server.http,
        "PUT",
        &format!("/api/groups/{sales_id}/sign-ins/{}", me["agent_id"]),
        Some(&admin),
        Some(r#"{"signed_in":false}"#),
    );
    assert_eq!(code, 200, "{body}");
    page.wait_for("document.querySelector('#board tbody tr').cells[3].textContent === '0'");
    assert_eq!(
        page.eval("document.getElementById('who').textContent"),
        format!("Signed in as {BOSS}.")
    );
    page.screenshot("wallboard.png");
    // Its sign-out button ends the session and the stream.
    page.eval("document.getElementById('logout').click(); true");
    page.wait_for("!document.getElementById('login').hidden");
    assert_eq!(page.eval("fetch('/api/session').then(r => r.status)"), 401);
}

/// One HTTP/1.1 request over loopback; returns (status, body). Bodies here are small and not
/// chunked when they matter (JSON with a length), else de-chunked simply.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then exactly Content-Length bytes (Chromium's DevTools server keeps the
    // connection open), or to the end when there is no length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let (head, body) = loop {
        assert!(Instant::now() < deadline, "slow HTTP reply from {addr}");
        let n = s.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            match length {
                Some(len) if rest.len() >= len => break (head.to_owned(), rest.to_owned()),
                None if n == 0 => break (head.to_owned(), rest.to_owned()),
                _ => {}
            }
        }
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&raw)
        );
    };
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = body.as_str();
        while let Some((size, tail)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            s = &tail[n + 2..];
        }
        out
    } else {
        body
    };
    (code, body)
}
