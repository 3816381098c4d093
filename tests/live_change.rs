//! A workflow's welcome prompt changed through the API while 50 calls are in it: no call is
//! dropped, the calls in progress keep the prompt they started with (a 1 kHz tone), and new
//! calls hear the new one (a 600 Hz tone). What each caller hears is told apart by the tone's
//! frequency in the RTP it receives.
// Test harness: a failed unwrap is a test failure; waiting on child processes and sockets
// needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // tone arithmetic

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use common::e2e::{Ua, frame_hz, free_udp_port, group, server_section, tone_wav};
use common::http::http;
use common::{Scratch, Server};

/// Calls in progress when the prompt changes.
const CALLS: usize = 50;
/// Calls placed after the change.
const NEW_CALLS: usize = 5;
const OLD_HZ: f64 = 1000.0;
const NEW_HZ: f64 = 600.0;
const MUSIC_HZ: f64 = 400.0;

/// Which tone a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Old,
    New,
    Music,
    Other,
}

fn tone(payload: &[u8]) -> Tone {
    let hz = frame_hz(payload);
    if (hz - OLD_HZ).abs() < 80.0 {
        Tone::Old
    } else if (hz - NEW_HZ).abs() < 80.0 {
        Tone::New
    } else if (hz - MUSIC_HZ).abs() < 80.0 {
        Tone::Music
    } else {
        Tone::Other
    }
}

/// Receives `ua`'s RTP until `until` says stop; (arrival, tone) of every frame.
fn listen(ua: &Ua, until: impl Fn() -> bool) -> Vec<(Instant, Tone)> {
    let mut frames = Vec::new();
    let mut buf = [0u8; 2048];
    while !until() {
        if let Ok((n, _)) = ua.rtp.recv_from(&mut buf)
            && n == 12 + 160
        {
            frames.push((Instant::now(), tone(&buf[12..n])));
        }
    }
    frames
}

#[test]
fn a_welcome_change_leaves_50_calls_in_progress_alone_and_reaches_new_calls() {
    let scratch = Scratch::new();
    // The old welcome lasts long enough to still be playing when the change is made.
    scratch.write("old.wav", tone_wav(OLD_HZ, 8000));
    scratch.write("new.wav", tone_wav(NEW_HZ, 2000));
    scratch.write("moh.wav", tone_wav(MUSIC_HZ, 1000));
    // The agent's port answers nothing: callers stay in the queue after the welcome.
    let config = server_section(27600)
        .replace("rtp_ports = [27600, 27799]", "rtp_ports = [27600, 27999]")
        + "default_music_on_hold = \"moh.wav\"\n"
        + &group("Sales agents", "serial", &[free_udp_port()])
        + "\n[[queue]]\nname = \"Sales\"\nagent_groups = [\"Sales agents\"]\n";
    let path = scratch.write("rgsd.toml", &config);
    let admin = common::create_token(path.to_str().unwrap(), "admin", "root");
    let server = Server::start(&path);
    let uri = "sip:sales@127.0.0.1";
    let (code, body) = http(
        server.http,
        "POST",
        "/api/workflows",
        Some(&admin),
        Some(
            &json!({ "name": "Sales line", "kind": "hunt_group", "uri": uri, "queue": "Sales",
                     "welcome": { "file": "old.wav" } })
            .to_string(),
        ),
    );
    assert_eq!(code, 201, "{body}");
    let sip = server.sip_addr("udp");

    // 50 callers, each on its own thread: call, then listen until told to hang up.
    let answered = Arc::new(Barrier::new(CALLS + 1));
    let hang_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLS)
        .map(|_| {
            let (answered, hang_up) = (answered.clone(), hang_up.clone());
            std::thread::spawn(move || {
                let mut ua = Ua::new(sip);
                let code = ua.call_status(uri);
                answered.wait();
                assert_eq!(code, 200, "{}", ua.log);
                let frames = listen(&ua, || hang_up.load(std::sync::atomic::Ordering::SeqCst));
                // Still up: rgsd answers the caller's BYE (a dropped call would get 481).
                ua.bye();
                frames
            })
        })
        .collect();
    answered.wait();
    // Every call hears its welcome for a moment before the change.
    std::thread::sleep(Duration::from_millis(500));

    let (code, body) = http(
        server.http,
        "PATCH",
        "/api/workflows/Sales%20line",
        Some(&admin),
        Some(&json!({ "welcome": { "file": "new.wav" } }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    let changed = Instant::now();

    // New calls, while the old ones go on: each hears the new welcome first.
    for i in 0..NEW_CALLS {
        let mut ua = Ua::new(sip);
        ua.call(uri);
        let start = Instant::now();
        let frames = listen(&ua, || start.elapsed() > Duration::from_millis(400));
        ua.bye();
        let tones: Vec<Tone> = frames.iter().map(|f| f.1).collect();
        let new = tones.iter().filter(|t| **t == Tone::New).count();
        assert!(
            new >= 10 && !tones.contains(&Tone::Old),
            "new call {i} heard {tones:?}\n{}",
            server.stderr()
        );
    }
    // The old calls listen at least a second after the change.
    let left = Duration::from_secs(1).saturating_sub(changed.elapsed());
    std::thread::sleep(left);
    hang_up.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut kept = 0;
    for (i, caller) in callers.into_iter().enumerate() {
        let frames = caller
            .join()
            .unwrap_or_else(|_| panic!("caller {i} failed (dropped?)\n{}", server.stderr()));
        let tones: Vec<Tone> = frames.iter().map(|f| f.1).collect();
        assert!(
            !tones.contains(&Tone::New),
            "call {i}, in progress at the change, heard the new welcome: {tones:?}"
        );
        let after: Vec<Tone> = frames
            .iter()
            .filter(|f| f.0 > changed)
            .map(|f| f.1)
            .collect();
        // Still the old welcome after the change (it lasts 8 s), with its media flowing.
        assert!(
            after.iter().filter(|t| **t == Tone::Old).count() >= 20,
            "call {i} after the change heard {after:?}\n{}",
            server.stderr()
        );
        kept += 1;
    }
    assert_eq!(kept, CALLS);
    println!(
        "{CALLS} calls kept the old welcome across the change; {NEW_CALLS} new calls heard the new one"
    );
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}
