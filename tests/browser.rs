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
use common::e2e::tone_wav;

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
            "--window-size=1280,800",
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
    let agent = common::create_token(config, "agent", ALICE);
    let admin = common::create_token(config, "admin", "ops");
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
        // Queue, waiting, longest wait, signed in, free, busy, in wrap-up, announced.
        json!(["Sales", "0", "0:00", "1", "1", "0", "0", "0"]),
        "{row}"
    );
    assert_eq!(
        row[1],
        json!(["Support", "0", "0:00", "1", "1", "0", "0", "0"]),
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

// ---------------------------------------------------------------------------------------------
// The configuration tool (`/config`): the two scenarios of the Response Group documents.

use common::e2e::{Sipp, Ua, free_udp_port, talk_until_heard};

/// Where the configuration tool's screenshots go: `target/screenshots/`.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Page {
    /// Saves a screenshot of the viewport under `target/screenshots/NAME.png`.
    fn shot(&mut self, name: &str) {
        let r = self.command("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let path = screenshots().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    /// Opens a page of the tool (`#/queues/new`) and waits until it is drawn.
    fn tool(&mut self, hash: &str, title: &str) {
        self.eval("document.getElementById('view').replaceChildren(); document.getElementById('status').textContent = ''; true");
        self.eval(&format!("location.hash = {}; true", json!(hash)));
        self.wait_for(&format!(
            "document.querySelector('#view h2') !== null && document.querySelector('#view h2').textContent === {}",
            json!(title)
        ));
    }

    /// Types `value` into the field whose API path is `field`, as a person would (input and
    /// change events).
    fn fill(&mut self, field: &str, value: &str) {
        let ok = self.eval(&format!(
            "(() => {{ const e = document.querySelector('#view [data-field=\"' + CSS.escape({}) + '\"]'); if (!e) return false; e.value = {}; e.dispatchEvent(new Event('input', {{ bubbles: true }})); e.dispatchEvent(new Event('change', {{ bubbles: true }})); return e.value === {}; }})()",
            json!(field), json!(value), json!(value)
        ));
        assert_eq!(
            ok,
            json!(true),
            "field {field} could not be set to {value:?}"
        );
    }

    fn tick(&mut self, field: &str, on: bool) {
        let ok = self.eval(&format!(
            "(() => {{ const e = document.querySelector('#view [data-field=\"' + CSS.escape({}) + '\"]'); if (!e) return false; if (e.checked !== {on}) e.click(); return e.checked === {on}; }})()",
            json!(field)
        ));
        assert_eq!(ok, json!(true), "checkbox {field}");
    }

    /// Presses the button of the form whose text is `text` (the `nth` one from 0).
    fn press(&mut self, text: &str, nth: usize) {
        let ok = self.eval(&format!(
            "(() => {{ const b = Array.from(document.querySelectorAll('#view button')).filter(b => b.textContent === {})[{nth}]; if (!b) return false; b.focus(); b.click(); return true; }})()",
            json!(text)
        ));
        assert_eq!(ok, json!(true), "no button {text:?} #{nth}");
    }

    /// Submits the editor and waits for the tool to say it is saved.
    fn save(&mut self) {
        self.eval("document.getElementById('status').textContent = ''; document.getElementById('status').className = ''; document.getElementById('editor').requestSubmit(); true");
        self.wait_for(
            "document.getElementById('status').textContent.startsWith('Saved') || document.getElementById('status').className === 'error'",
        );
        let status = self.eval("document.getElementById('status').textContent");
        let errors = self.eval(
            "Array.from(document.querySelectorAll('#view .error')).map(e => e.textContent).filter(Boolean).join(' | ')",
        );
        assert!(
            status.as_str().unwrap().starts_with("Saved"),
            "not saved: {status} {errors}"
        );
    }

    /// Every input and select of the page has a label a screen reader reads, and everything that
    /// reacts to a click is a control the keyboard reaches (no mouse-only control).
    fn assert_keyboard_ready(&mut self) {
        let unlabeled = self.eval(
            "Array.from(document.querySelectorAll('#view input, #view select')).filter(i => i.labels.length === 0 && !i.getAttribute('aria-label')).map(i => i.outerHTML)",
        );
        assert_eq!(unlabeled, json!([]), "controls without a label");
        let r = self.command(
            "Runtime.evaluate",
            json!({
                "expression": "Array.from(document.querySelectorAll('body *')).filter(e => { const l = getEventListeners(e); return (l.click || l.mousedown || l.mouseup || l.dblclick) && !['BUTTON', 'A', 'INPUT', 'SELECT'].includes(e.tagName); }).map(e => e.outerHTML.slice(0, 80))",
                "returnByValue": true,
                "includeCommandLineAPI": true,
            }),
        );
        assert_eq!(r["result"]["value"], json!([]), "mouse-only controls: {r}");
        let listened = self.command(
            "Runtime.evaluate",
            json!({
                "expression": "Array.from(document.querySelectorAll('#view button')).filter(b => getEventListeners(b).click).length",
                "returnByValue": true,
                "includeCommandLineAPI": true,
            }),
        );
        assert!(
            listened["result"]["value"].as_u64().unwrap() > 0,
            "{listened}"
        );
    }

    /// The desktop size the screenshots are taken at.
    fn desktop(&mut self) {
        self.command(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false }),
        );
    }

    /// A screenshot of the whole page, however long, at half scale (640 wide).
    fn shot_full(&mut self, name: &str) {
        let height = self
            .eval("document.documentElement.scrollHeight")
            .as_u64()
            .unwrap();
        let r = self.command(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": 1280, "height": height, "scale": 0.5 } }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let path = screenshots().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    /// A key pressed on the keyboard (`Enter`, `Tab`, ` `), sent to the focused element.
    fn key(&mut self, key: &str, code: u32) {
        let text = match key {
            "Enter" => "\r",
            " " => " ",
            _ => "",
        };
        for kind in ["keyDown", "keyUp"] {
            let mut p = json!({ "type": kind, "key": key, "code": if key == " " { "Space" } else { key }, "windowsVirtualKeyCode": code });
            if kind == "keyDown" && !text.is_empty() {
                p["text"] = json!(text);
            }
            self.command("Input.dispatchKeyEvent", p);
        }
    }

    /// Text typed into the focused element.
    fn type_text(&mut self, text: &str) {
        self.command("Input.insertText", json!({ "text": text }));
    }

    /// The API path of the focused field.
    fn focused(&mut self) -> Value {
        self.eval("document.activeElement.dataset.field || document.activeElement.dataset.add || document.activeElement.textContent")
    }

    /// The page at phone width: nothing wider than the screen; screenshot; back to 1280×800.
    fn phone_shot(&mut self, name: &str) {
        self.command(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
        );
        std::thread::sleep(Duration::from_millis(200));
        let wide = self.eval("document.documentElement.scrollWidth");
        assert!(
            wide.as_u64().unwrap() <= 390,
            "page is {wide}px wide at phone width"
        );
        self.shot(name);
        self.desktop();
    }
}

/// The daemon's configuration for the scenarios: no response group yet but a file-owned one
/// (`Sales line`), which the tool shows read-only.
fn tool_config(rtp: u16) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [{rtp}, {}]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
agents = ["sip:sales-agent@127.0.0.1:5999"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[workflow]]
name = "Sales line"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
"#,
        rtp + 199
    )
}

fn sign_in_tool(page: &mut Page, base: &str, user: &str, password: &str) {
    page.navigate(&format!("{base}/config"));
    page.wait_for("!document.getElementById('login').hidden");
    sign_in_form(page, user, password);
    page.wait_for("document.querySelector('#view h2') !== null && document.querySelector('#view h2').textContent === 'Workflows'");
}

/// The rows of the list on the page, cell by cell.
fn rows(page: &mut Page) -> Vec<Vec<String>> {
    let v = page.eval(
        "Array.from(document.querySelectorAll('#list tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))",
    );
    serde_json::from_value(v).unwrap()
}

/// One RTP packet rgsd sent: its marker bit and whether it carries sound (not PCMU silence).
struct Heard {
    marker: bool,
    sound: bool,
}

/// Receives the RTP rgsd sends for `ms`.
fn listen(ua: &mut Ua, ms: u64) -> Vec<Heard> {
    let mut buf = [0u8; 2048];
    let mut heard = Vec::new();
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if let Ok((n, _)) = ua.rtp.recv_from(&mut buf)
            && n > 12
        {
            heard.push(Heard {
                marker: buf[1] & 0x80 != 0,
                // PCMU silence is 0xff / 0x7f; speech swings far from it.
                sound: buf[12..n].iter().any(|b| (*b & 0x7f) < 0x70),
            });
        }
    }
    heard
}

/// How long the text-to-speech engine speaks `text`, in 20 ms frames (a prompt made through the
/// page's own API client, the same engine the daemon speaks prompts with).
fn spoken_frames(page: &mut Page, text: &str) -> usize {
    let ms = page.eval(&format!(
        "api('POST', '/api/prompts', {{ name: 'length-check', text: {} }}).then(p => p.duration_ms)",
        json!(text)
    ));
    usize::try_from(ms.as_u64().unwrap() / 20).unwrap()
}

const ADMIN: &str = "sip:admin@127.0.0.1";
const ADMIN_PASSWORD: &str = "the administrator's password";
const CAROL: &str = "sip:carol@127.0.0.1";
const CAROL_PASSWORD: &str = "carol manages orders";

/// Scenario 1: the administrator creates and configures everything in the browser, and the
/// next call to the new workflow hears its welcome and reaches an agent, with no restart.
#[test]
fn scenario_1_the_administrator_builds_a_hunt_group_in_the_browser_and_it_answers_calls() {
    let Some(bin) = chromium() else { return };
    let Some(sipp) = common::require("sipp") else {
        return;
    };
    if common::require("espeak-ng").is_none() {
        return;
    }
    let scratch = Scratch::new();
    let config = scratch.write("rgsd.toml", tool_config(32200));
    let config = config.to_str().unwrap();
    user(config, "admin", ADMIN, ADMIN_PASSWORD);
    let server = common::Server::start(std::path::Path::new(config));
    let base = format!("http://{}", server.http);
    let ports = [free_udp_port(), free_udp_port()];
    let mut agents: Vec<Sipp> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Sipp::agent(
                &sipp,
                scratch.path(),
                &format!("agent{i}"),
                *p,
                "e2e_agent_answers.xml",
                Some(1),
                0,
                true,
            )
        })
        .collect();
    let (_browser, mut page) = launch(&bin, &scratch.path().join("chrome"));
    page.desktop();

    // Sign in: the workflow list shows the file's workflow, read-only with its file and line.
    page.navigate(&format!("{base}/RgsConfig"));
    page.wait_for("!document.getElementById('login').hidden");
    page.shot("scenario1-sign-in");
    sign_in_form(&mut page, ADMIN, "a wrong password");
    page.wait_for("document.getElementById('login-error').textContent !== ''");
    sign_in_tool(&mut page, &base, ADMIN, ADMIN_PASSWORD);
    let list = rows(&mut page);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0][..6],
        ["Sales line", "sip:sales@127.0.0.1", "", "", "yes", ""]
    );
    assert!(
        list[0][6].starts_with("file ") && list[0][6].ends_with(":19 (read-only)"),
        "{list:?}"
    );
    page.tool("#/workflows/Sales%20line", "Workflow: Sales line");
    assert!(
        page.eval("document.getElementById('file-note').textContent")
            .as_str()
            .unwrap()
            .contains("line 19")
    );
    assert_eq!(page.eval("document.getElementById('save')"), Value::Null);
    assert_eq!(
        page.eval("document.querySelector('[data-field=uri]').disabled"),
        true
    );

    // An agent group with two agents, in order, longest-idle routing.
    page.tool("#/agent-groups/new", "New agent group");
    page.fill("name", "Help agents");
    page.fill("routing", "serial");
    page.fill("alert_time", "5s");
    // A value out of range is refused next to its field.
    page.press("Add an agent", 0);
    page.fill("agents[0]", &format!("sip:agent0@127.0.0.1:{}", ports[0]));
    page.press("Add an agent", 0);
    page.fill("agents[1]", &format!("sip:agent1@127.0.0.1:{}", ports[1]));
    page.eval("document.getElementById('editor').requestSubmit(); true");
    page.wait_for("document.querySelector('[data-err=alert_time]').textContent !== ''");
    let err = page.eval("document.querySelector('[data-err=alert_time]').textContent");
    assert!(err.as_str().unwrap().contains("10s"), "{err}");
    assert_eq!(
        page.eval("document.activeElement.dataset.field"),
        "alert_time"
    );
    page.shot("scenario1-agent-group-error");
    page.fill("alert_time", "10s");
    page.assert_keyboard_ready();
    page.save();
    page.shot("scenario1-agent-group");

    // A queue using it, with a time-out to disconnect.
    page.tool("#/queues/new", "New queue");
    page.fill("name", "Help desk");
    page.press("Add an agent group", 0);
    page.fill("agent_groups[0]", "Help agents");
    page.fill("timeout.after", "120s");
    page.fill("timeout.action", "disconnect");
    page.assert_keyboard_ready();
    page.save();
    page.shot("scenario1-queue");
    // The group is now in use: deleting it is refused with the API's reason.
    page.tool("#/agent-groups/Help%20agents", "Agent group: Help agents");
    page.press("Delete", 0);
    page.press("Press again to delete Help agents", 0);
    page.wait_for("document.getElementById('form-error').textContent !== ''");
    assert_eq!(
        page.eval("document.getElementById('form-error').textContent"),
        "in use by queue \"Help desk\""
    );

    // Business hours open all day, every day (two ranges a day).
    page.tool("#/hours/new", "New business hours");
    page.fill("name", "Always");
    for day in [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ] {
        page.fill(&format!("{day}[0]"), "00:00-12:00");
        page.fill(&format!("{day}[1]"), "12:00-24:00");
    }
    page.save();
    page.shot("scenario1-hours");

    // A holiday set (a day far from now).
    page.tool("#/holiday-sets/new", "New holiday set");
    page.fill("name", "Closures");
    page.press("Add a holiday", 0);
    page.fill("holidays[0].name", "Founders' day");
    page.fill("holidays[0].start", "2031-03-02T00:00");
    page.fill("holidays[0].end", "2031-03-03T00:00");
    page.save();
    page.shot("scenario1-holiday-set");

    // The workflow: a hunt group with a text welcome, those hours and holidays, the queue, active.
    page.tool("#/workflows/new", "New workflow");
    page.fill("name", "Help line");
    page.tick("active", true);
    page.fill("kind", "hunt_group");
    page.fill("uri", "sip:help@127.0.0.1");
    page.fill("line_uri", "tel:+1 425 555 0142");
    page.fill("srtp", "off");
    page.fill("display_number", "+1 425 555 0142");
    page.fill("welcome.kind", "text");
    page.fill("welcome.text", "Welcome to the help desk.");
    page.fill("business_hours", "Always");
    page.fill("time_zone", "UTC");
    page.tick("holidays.Closures", true);
    page.fill("on_holiday.prompt.kind", "text");
    page.fill("on_holiday.prompt.text", "We are closed today.");
    page.fill("on_holiday.action", "disconnect");
    page.fill("queue", "Help desk");
    page.assert_keyboard_ready();
    page.shot_full("scenario1-workflow-editor");
    page.save();
    page.phone_shot("scenario1-workflow-phone");
    page.tool("#/workflows", "Workflows");
    let list = rows(&mut page);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        list[1][..5],
        [
            "Help line",
            "sip:help@127.0.0.1",
            "tel:+1 425 555 0142",
            "+1 425 555 0142",
            "yes"
        ]
    );
    assert_eq!(list[1][6], "database, version 1");
    page.shot("scenario1-workflow-list");
    // The media encryption chosen in the form is the workflow's srtp key.
    assert_eq!(
        page.eval("api('GET', '/api/workflows/Help%20line').then(w => w.srtp)"),
        json!("off")
    );

    // The next call, same process: the welcome is heard, then an agent answers.
    let welcome = spoken_frames(&mut page, "Welcome to the help desk.");
    assert!(welcome > 25, "the welcome lasts {welcome} frames");
    let mut ua = Ua::new(server.sip_addr("udp"));
    // Through the trunk number the form gave it.
    ua.call("sip:+14255550142@127.0.0.1;user=phone");
    // The welcome: speech from the first packet until the marked change of source.
    let heard = listen(&mut ua, 20 * welcome as u64 + 400);
    let change = heard
        .iter()
        .skip(1)
        .position(|h| h.marker)
        .map_or(heard.len(), |i| i + 1);
    assert!(
        change.abs_diff(welcome) <= 3
            && heard[..change].iter().filter(|h| h.sound).count() > welcome / 2,
        "the welcome should be {welcome} frames of speech; heard {change} frames before the change, {} with sound\n{}",
        heard[..change].iter().filter(|h| h.sound).count(),
        server.stderr()
    );
    let heard = talk_until_heard(&mut ua, 400);
    assert!(
        heard >= 5,
        "no agent answered (heard {heard})\n{}\n{}",
        agents[0].logs(),
        server.stderr()
    );
    ua.bye();
    let offered: usize = agents.iter().map(Sipp::invites_received).sum();
    assert_eq!(offered, 1, "one agent was offered the call");
    for a in &mut agents {
        a.stop();
    }
    assert!(
        !server.stderr().contains("reloaded"),
        "no restart or reload was needed"
    );
}

/// Scenario 2: the administrator creates the workflow and names a manager; the manager signs in,
/// sees that workflow only, builds an agent group, attaches it to the queue and sets hours that
/// are closed now; the URI stays the administrator's; the next call hears the out-of-hours
/// message and no agent is offered it.
#[test]
fn scenario_2_a_manager_configures_the_workflow_the_administrator_created() {
    let Some(bin) = chromium() else { return };
    let Some(sipp) = common::require("sipp") else {
        return;
    };
    if common::require("espeak-ng").is_none() {
        return;
    }
    let scratch = Scratch::new();
    let config = scratch.write("rgsd.toml", tool_config(32400));
    let config = config.to_str().unwrap();
    user(config, "admin", ADMIN, ADMIN_PASSWORD);
    user(config, "manager", CAROL, CAROL_PASSWORD);
    let server = common::Server::start(std::path::Path::new(config));
    let base = format!("http://{}", server.http);
    let ports = [free_udp_port(), free_udp_port()];
    let mut agents: Vec<Sipp> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Sipp::agent(
                &sipp,
                scratch.path(),
                &format!("agent{i}"),
                *p,
                "e2e_agent_answers.xml",
                Some(1),
                0,
                true,
            )
        })
        .collect();
    let (_browser, mut page) = launch(&bin, &scratch.path().join("chrome"));
    page.desktop();

    // The administrator: a first agent group and a queue, then the workflow with its manager.
    sign_in_tool(&mut page, &base, ADMIN, ADMIN_PASSWORD);
    page.tool("#/agent-groups/new", "New agent group");
    page.fill("name", "Front desk");
    page.press("Add an agent", 0);
    page.fill("agents[0]", &format!("sip:front@127.0.0.1:{}", ports[0]));
    page.save();
    page.tool("#/queues/new", "New queue");
    page.fill("name", "Orders");
    page.press("Add an agent group", 0);
    page.fill("agent_groups[0]", "Front desk");
    page.save();
    page.tool("#/workflows/new", "New workflow");
    page.fill("name", "Orders line");
    page.fill("uri", "sip:orders@127.0.0.1");
    page.fill("description", "Orders");
    page.tick("active", true);
    page.press("Add a manager", 0);
    page.fill("managers[0]", CAROL);
    page.fill("queue", "Orders");
    page.save();
    page.shot("scenario2-admin-workflow");
    page.eval("document.getElementById('logout').click(); true");
    page.wait_for("!document.getElementById('login').hidden");

    // The manager sees that workflow only; URI and kind are read-only, with the reason.
    sign_in_tool(&mut page, &base, CAROL, CAROL_PASSWORD);
    let list = rows(&mut page);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0][..6],
        ["Orders line", "sip:orders@127.0.0.1", "", "", "yes", CAROL]
    );
    assert_eq!(
        page.eval("document.getElementById('create')"),
        Value::Null,
        "managers do not create workflows"
    );
    page.tool("#/queues", "Queues");
    assert_eq!(rows(&mut page), [["Orders", "database, version 1"]]);
    page.tool("#/workflows", "Workflows");
    page.shot("scenario2-manager-list");

    // Her own agent group, attached to the queue after the first.
    page.tool("#/agent-groups/new", "New agent group");
    page.fill("name", "Carol's team");
    page.fill("routing", "parallel");
    page.press("Add an agent", 0);
    page.fill("agents[0]", &format!("sip:dan@127.0.0.1:{}", ports[1]));
    page.save();
    page.tool("#/queues/Orders", "Queue: Orders");
    page.press("Add an agent group", 0);
    page.fill("agent_groups[1]", "Carol's team");
    page.save();
    page.shot("scenario2-manager-queue");

    // Hours closed now (a range every day that does not hold the current UTC time).
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let range = if hour >= 3 {
        "00:00-01:00"
    } else {
        "20:00-21:00"
    };
    page.tool("#/hours/new", "New business hours");
    page.fill("name", "Night desk");
    for day in [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ] {
        page.fill(&format!("{day}[0]"), range);
    }
    page.save();

    page.tool("#/workflows/Orders%20line", "Workflow: Orders line");
    assert_eq!(
        page.eval("document.querySelector('[data-field=uri]').readOnly"),
        true
    );
    assert_eq!(
        page.eval("document.querySelector('[data-field=kind]').disabled"),
        true
    );
    assert_eq!(
        page.eval("document.querySelector('[data-field=line_uri]').readOnly"),
        true
    );
    assert_eq!(
        page.eval("document.getElementById(document.querySelector('[data-field=line_uri]').id + '-hint').textContent"),
        "Managers may not change a workflow's line_uri (its trunk number); ask an administrator."
    );
    // Media encryption is the administrator's too: shown (server default here), not changeable.
    assert_eq!(
        page.eval("document.querySelector('[data-field=srtp]').disabled"),
        true
    );
    assert_eq!(
        page.eval("document.querySelector('[data-field=srtp]').value"),
        ""
    );
    assert_eq!(
        page.eval("document.getElementById(document.querySelector('[data-field=srtp]').id + '-hint').textContent"),
        "Managers may not change a workflow's media encryption (srtp); ask an administrator."
    );
    assert_eq!(
        page.eval("document.getElementById(document.querySelector('[data-field=uri]').id + '-hint').textContent"),
        "Managers may not change a workflow's URI or kind; ask an administrator."
    );
    page.fill("business_hours", "Night desk");
    page.fill("time_zone", "UTC");
    page.fill("display_number", "+1 425 555 0177");
    page.fill("out_of_hours.prompt.kind", "text");
    page.fill(
        "out_of_hours.prompt.text",
        "The order desk is closed. Please call again tomorrow.",
    );
    page.fill("out_of_hours.action", "disconnect");
    page.save();
    page.shot_full("scenario2-manager-workflow");

    // A change of URI (forced past the read-only field) is refused with the API's reason.
    page.eval("document.querySelector('[data-field=uri]').value = 'sip:mine@127.0.0.1'; true");
    page.eval("document.getElementById('editor').requestSubmit(); true");
    page.wait_for("document.getElementById('form-error').textContent !== ''");
    assert_eq!(
        page.eval("document.getElementById('form-error').textContent"),
        "managers may not change a workflow's URI or kind; ask an administrator"
    );
    page.shot("scenario2-manager-uri-refused");
    page.phone_shot("scenario2-manager-phone");

    // The call: answered, the out-of-hours message played, then disconnected; no agent rings.
    let message = spoken_frames(
        &mut page,
        "The order desk is closed. Please call again tomorrow.",
    );
    let mut ua = Ua::new(server.sip_addr("udp"));
    ua.call("sip:orders@127.0.0.1");
    // The whole message, then nothing: rgsd hangs up.
    let heard = listen(&mut ua, 20 * message as u64 + 600);
    let sound = heard.iter().filter(|h| h.sound).count();
    assert!(
        heard.len().abs_diff(message) <= 3 && sound > message / 2,
        "the message should be {message} frames of speech; heard {} frames, {sound} with sound\n{}",
        heard.len(),
        server.stderr()
    );
    ua.expect_bye(Duration::from_secs(15));
    let offered: usize = agents.iter().map(Sipp::invites_received).sum();
    assert_eq!(offered, 0, "an agent was offered a call out of hours");
    for a in &mut agents {
        a.stop();
    }
}

/// Prompts (a WAV uploaded through the file input and played back; a text spoken and played
/// back) and an interactive workflow built by keyboard: two levels of questions, four answers a
/// level, each with a DTMF key and voice words, saved in the contract's nested shape.
#[test]
fn the_tool_uploads_and_plays_prompts_and_builds_a_two_level_question_tree_by_keyboard() {
    let Some(bin) = chromium() else { return };
    if common::require("espeak-ng").is_none() {
        return;
    }
    let scratch = Scratch::new();
    let config = scratch.write("rgsd.toml", tool_config(32600));
    let config = config.to_str().unwrap();
    let wav = scratch.write("chime.wav", tone_wav(800.0, 600));
    user(config, "admin", ADMIN, ADMIN_PASSWORD);
    let server = common::Server::start(std::path::Path::new(config));
    let base = format!("http://{}", server.http);
    let (_browser, mut page) = launch(&bin, &scratch.path().join("chrome"));
    page.desktop();
    sign_in_tool(&mut page, &base, ADMIN, ADMIN_PASSWORD);

    // Upload through the file input, then play it back from GET /api/prompts/chime.
    page.tool("#/prompts", "Prompts");
    page.eval("document.querySelector('#upload [data-field=name]').value = 'chime'; true");
    let doc = page.command("DOM.getDocument", json!({}));
    let input = page.command(
        "DOM.querySelector",
        json!({ "nodeId": doc["root"]["nodeId"], "selector": "#upload-file" }),
    );
    page.command(
        "DOM.setFileInputFiles",
        json!({ "files": [wav.to_str().unwrap()], "nodeId": input["nodeId"] }),
    );
    page.eval("document.getElementById('upload').requestSubmit(); true");
    page.wait_for("document.querySelector('#list audio') !== null");
    assert_eq!(
        rows(&mut page)[0][..3],
        ["chime", "prompts/chime.wav", "0.6 s"]
    );
    let played = page.eval(
        "new Promise(res => { const a = document.querySelector('#list audio'); a.onloadedmetadata = () => res(a.duration); a.onerror = () => res(-1); a.load(); })",
    );
    let played = played.as_f64().unwrap();
    assert!((played - 0.6).abs() < 0.05, "the browser played {played} s");
    // A text spoken once and played back.
    page.eval("document.querySelector('#tts [data-field=name]').value = 'menu'; document.querySelector('#tts [data-field=text]').value = 'For sales press one. For support press two.'; document.getElementById('tts').requestSubmit(); true");
    let row = "Array.from(document.querySelectorAll('#list tbody tr')).find(r => r.cells[0].textContent === 'menu')";
    page.wait_for(&format!("{row} !== undefined"));
    let spoken = page.eval(&format!(
        "new Promise(res => {{ const a = {row}.querySelector('audio'); a.onloadedmetadata = () => res(a.duration); a.onerror = () => res(-1); a.load(); }})"
    ));
    assert!(
        spoken.as_f64().unwrap() > 1.0,
        "spoken prompt lasts {spoken} s"
    );
    // A bad name is refused next to the field.
    page.eval("document.querySelector('#tts [data-field=name]').value = '../x'; document.getElementById('tts').requestSubmit(); true");
    page.wait_for("document.querySelector('#tts [data-err=name]').textContent !== ''");
    page.shot("prompts");

    // An interactive workflow by keyboard.
    page.tool("#/workflows/new", "New workflow");
    page.eval("document.querySelector('[data-field=name]').focus(); true");
    page.type_text("Menu line");
    page.key("Tab", 9);
    assert_eq!(page.focused(), "active");
    page.key(" ", 32);
    assert_eq!(
        page.eval("document.querySelector('[data-field=active]').checked"),
        true
    );
    page.key("Tab", 9);
    assert_eq!(page.focused(), "kind");
    page.fill("kind", "interactive");
    page.key("Tab", 9);
    assert_eq!(page.focused(), "uri");
    page.type_text("sip:menu@127.0.0.1");
    page.fill("welcome.kind", "file");
    page.fill("welcome.file", "prompts/menu.wav");
    page.fill("question.prompt.kind", "text");
    page.fill(
        "question.prompt.text",
        "For sales press 1. For more choices press 2.",
    );
    // Four answers on level 1; the add button is then disabled.
    for i in 0..4 {
        page.eval("document.querySelector('[data-add=\"question.answers\"]').focus(); true");
        page.key("Enter", 13);
        assert_eq!(
            page.focused(),
            format!("question.answers[{i}].dtmf"),
            "Enter on the add button moves the focus to the new answer"
        );
        page.fill(&format!("question.answers[{i}].dtmf"), &(i + 1).to_string());
        page.fill(
            &format!("question.answers[{i}].voice"),
            &format!("choice {}, option {}", i + 1, i + 1),
        );
        if i != 1 {
            page.fill(&format!("question.answers[{i}].action"), "queue");
            page.fill(&format!("question.answers[{i}].action.queue"), "Sales");
        }
    }
    assert_eq!(
        page.eval("document.querySelector('[data-add=\"question.answers\"]').disabled"),
        true
    );
    // Answer 2 asks a second question, with four answers of its own.
    page.fill("question.answers[1].action", "question");
    let level2 = "question.answers[1].action.question";
    page.fill(&format!("{level2}.prompt.kind"), "text");
    page.fill(
        &format!("{level2}.prompt.text"),
        "For orders press 1, for returns press 2.",
    );
    for i in 0..4 {
        page.eval(&format!(
            "document.querySelector('[data-add=\"{level2}.answers\"]').focus(); true"
        ));
        page.key("Enter", 13);
        page.fill(&format!("{level2}.answers[{i}].dtmf"), &(i + 1).to_string());
        page.fill(&format!("{level2}.answers[{i}].action"), "disconnect");
    }
    page.fill(&format!("{level2}.answers[0].action"), "forward");
    page.fill(
        &format!("{level2}.answers[0].action.forward"),
        "sip:orders@127.0.0.1:5999",
    );
    // The second answer moved first and back, by keyboard.
    page.eval(
        "document.querySelector('[aria-label=\"Move down level-1 answer 1\"]').focus(); true",
    );
    page.key("Enter", 13);
    assert_eq!(
        page.eval("document.querySelector('[data-field=\"question.answers[0].dtmf\"]').value"),
        "2"
    );
    page.eval("document.querySelector('[aria-label=\"Move up level-1 answer 2\"]').focus(); true");
    page.key("Enter", 13);
    assert_eq!(
        page.eval("document.querySelector('[data-field=\"question.answers[0].dtmf\"]').value"),
        "1"
    );
    page.assert_keyboard_ready();
    page.shot_full("interactive-workflow-editor");
    page.save();

    let saved = page.eval("fetch('/api/workflows/Menu%20line').then(r => r.json())");
    assert_eq!(saved["kind"], "interactive", "{saved}");
    assert_eq!(saved["active"], true);
    assert_eq!(saved["welcome"], json!({ "file": "prompts/menu.wav" }));
    assert!(saved.get("queue").is_none(), "{saved}");
    let answers = saved["question"]["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 4, "{saved}");
    assert_eq!(
        answers[0],
        json!({ "dtmf": "1", "voice": ["choice 1", "option 1"], "action": { "queue": "Sales" } })
    );
    let second = &answers[1]["action"]["question"];
    assert_eq!(
        second["prompt"],
        json!({ "text": "For orders press 1, for returns press 2." })
    );
    assert_eq!(second["answers"].as_array().unwrap().len(), 4, "{saved}");
    assert_eq!(
        second["answers"][0]["action"],
        json!({ "forward": "sip:orders@127.0.0.1:5999" })
    );
    assert_eq!(
        second["answers"][3],
        json!({ "dtmf": "4", "action": "disconnect" })
    );
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

/// Wrap-up on the agent page: after a call the page says "wrap up" with its end and shows the
/// button; the next caller waits; the agent presses the button and that caller is offered to
/// them at once.
#[test]
fn an_agent_ends_their_wrap_up_on_the_page_and_the_waiting_call_rings() {
    let Some(bin) = chromium() else { return };
    let Some(sipp) = common::require("sipp") else {
        return;
    };
    let scratch = Scratch::new();
    let port = free_udp_port();
    let alice = format!("sip:alice@127.0.0.1:{port}");
    let config = format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [34400, 34599]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
wrap_up = "600s"
agents = ["{alice}"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[workflow]]
name = "Sales"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
"#
    );
    let config = scratch.write("rgsd.toml", config);
    let config = config.to_str().unwrap();
    user(config, "agent", &alice, ALICE_PASSWORD);
    let server = common::Server::start(std::path::Path::new(config));
    let base = format!("http://{}", server.http);
    let mut agent = Sipp::agent(
        &sipp,
        scratch.path(),
        "alice",
        port,
        "e2e_agent_answers.xml",
        Some(2),
        0,
        true,
    );
    // A call, answered and ended: Alice is in wrap-up for 600 s.
    let mut first = Ua::new(server.sip_addr("udp"));
    first.call("sip:sales@127.0.0.1");
    assert!(
        talk_until_heard(&mut first, 150) >= 5,
        "{}",
        server.stderr()
    );
    first.bye();

    let (_browser, mut page) = launch(&bin, &scratch.path().join("chrome"));
    page.navigate(&format!("{base}/agent"));
    sign_in_form(&mut page, &alice, ALICE_PASSWORD);
    page.wait_for("document.getElementById('state').textContent.startsWith('wrap up until')");
    page.wait_for("!document.getElementById('end-wrap-up').hidden");
    page.screenshot("agent-page-wrap-up.png");

    // The next caller waits: nobody else can take it and Alice is wrapping up.
    let mut second = Ua::new(server.sip_addr("udp"));
    second.call("sip:sales@127.0.0.1");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.invites_received(), 1, "offered a call during wrap-up");

    page.eval("document.getElementById('end-wrap-up').click(); true");
    page.wait_for("document.getElementById('status').textContent.startsWith('Wrap-up ended')");
    assert!(
        talk_until_heard(&mut second, 150) >= 5,
        "the waiting call did not ring Alice\n{}",
        server.stderr()
    );
    assert_eq!(agent.invites_received(), 2);
    second.bye();
    agent.assert_success(&server);
}
