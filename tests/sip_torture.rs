//! Replays the torture corpus in `tests/torture/` through the same parse entry point the
//! transports use.
//!
//! - `valid/`: messages RFC 4475 §3.1.1 calls valid (plus a few of ours); each must parse.
//! - `invalid/`: RFC 4475 §3.1.2 invalid messages (plus fuzz-style ones); each must be refused.
//! - `tolerated/`: invalid per RFC 4475 only in a header rgsd never interprets (Date, a
//!   Contact's URI headers, an unquoted display name); they parse, which is allowed.
//!
//! The corpus was written for rgsd from RFC 4475's descriptions and names; it is not a byte copy
//! of the RFC's appendix. Every file, and every prefix of the small ones, must also go through
//! `parse` and `bad_request` without a panic. Crashers found by fuzzing go into `invalid/`.

use std::path::{Path, PathBuf};

use rgsd::sip::message::{Message, Method, bad_request, parse};

fn corpus(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus folder {dir}");
    files
}

#[test]
fn valid_messages_parse() {
    let mut failures = Vec::new();
    for (path, bytes) in corpus("valid") {
        if let Err(e) = parse(&bytes) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "refused valid messages:\n{}",
        failures.join("\n")
    );
}

#[test]
fn invalid_messages_are_refused() {
    let mut accepted = Vec::new();
    for (path, bytes) in corpus("invalid") {
        match parse(&bytes) {
            Ok(m) => accepted.push(format!("{}: {m:?}", path.display())),
            Err(e) => eprintln!("{}: refused: {e}", path.display()),
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted invalid messages:\n{}",
        accepted.join("\n")
    );
}

#[test]
fn tolerated_messages_parse() {
    for (path, bytes) in corpus("tolerated") {
        assert!(parse(&bytes).is_ok(), "{}", path.display());
    }
}

#[test]
fn selected_fields_of_the_tortuous_invite() {
    let (_, bytes) = corpus("valid")
        .into_iter()
        .find(|(p, _)| p.ends_with("wsinv.sip"))
        .unwrap();
    let Ok(Message::Request(req)) = parse(&bytes) else {
        panic!("wsinv did not parse")
    };
    assert_eq!(req.method, Method::Invite);
    assert_eq!(req.cseq().unwrap().seq, 9);
    assert_eq!(req.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(req.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(req.headers.get_list("Via").count(), 3);
    assert_eq!(req.top_via().unwrap().branch(), Some("390skdjuw"));
    assert_eq!(req.headers.get("Max-Forwards"), Some("0068"));
    assert!(req.body.starts_with(b"v=0"));
    assert_eq!(
        req.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
}

#[test]
fn invalid_requests_get_a_400_when_one_can_be_formed() {
    for name in ["mismatch01", "clerr", "scalarlg", "quotbal"] {
        let (_, bytes) = corpus("invalid")
            .into_iter()
            .find(|(p, _)| p.file_stem().is_some_and(|s| s == name))
            .unwrap();
        let err = parse(&bytes).unwrap_err();
        let reply = bad_request(&bytes, &err).unwrap_or_else(|| panic!("{name}: no 400"));
        assert!(reply.starts_with(b"SIP/2.0 400 "), "{name}");
    }
    // A response is never answered.
    let (_, bigcode) = corpus("invalid")
        .into_iter()
        .find(|(p, _)| p.ends_with("bigcode.sip"))
        .unwrap();
    assert!(bad_request(&bigcode, &parse(&bigcode).unwrap_err()).is_none());
}

#[test]
fn no_prefix_of_any_message_panics() {
    for dir in ["valid", "invalid", "tolerated"] {
        for (_, bytes) in corpus(dir) {
            let step = if bytes.len() > 2048 { 97 } else { 1 };
            for end in (0..=bytes.len()).step_by(step) {
                let part = &bytes[..end];
                if let Err(e) = parse(part) {
                    let _ = bad_request(part, &e);
                }
            }
        }
    }
}
