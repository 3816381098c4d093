//! One broken configuration per rule: `tests/config/bad/<rule>.toml` and `<rule>.expected`.
//!
//! An `.expected` file lists, one per line, every diagnostic `config::load_with_audio` (with the
//! media layer's WAV probe, as `serve` and `rgsd check` load) must report:
//!
//! ```text
//! # comment
//! <line> <error|warning> <key or -> | <fragment of the message>
//! ```
//!
//! The check is strict both ways: each expected line must match a distinct diagnostic (same
//! line, severity and key, message containing the fragment), and every diagnostic reported must
//! be expected. Files are loaded with `check_environment: false`, so the result does not depend
//! on what is installed (the text-to-speech check has unit tests in `config::compile`).
//! Adding a rule means adding two files.

use std::path::{Path, PathBuf};

use rgsd::config::{Diagnostic, LoadOptions, Severity, load_with_audio};

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/bad")
}

fn opts() -> LoadOptions {
    LoadOptions {
        check_environment: false,
    }
}

/// All diagnostics of a load, errors and warnings alike.
fn diagnostics(path: &Path) -> Vec<Diagnostic> {
    match load_with_audio(path, &opts(), rgsd::media::config_probe) {
        Ok(loaded) => loaded.warnings,
        Err(all) => all,
    }
}

#[derive(Debug)]
struct Expected {
    line: usize,
    severity: Severity,
    key: String,
    fragment: String,
}

fn parse_expected(path: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| {
            let bad = || -> ! {
                panic!(
                    "{}:{}: expected `LINE SEVERITY KEY | FRAGMENT`",
                    path.display(),
                    n + 1
                )
            };
            let (head, fragment) = l.split_once(" | ").unwrap_or_else(|| bad());
            let mut words = head.split_whitespace();
            let line = words
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| bad());
            let severity = match words.next() {
                Some("error") => Severity::Error,
                Some("warning") => Severity::Warning,
                _ => bad(),
            };
            let key = match words.next() {
                Some("-") => String::new(),
                Some(k) => k.to_owned(),
                None => bad(),
            };
            if words.next().is_some() || fragment.trim().is_empty() {
                bad();
            }
            Expected {
                line,
                severity,
                key,
                fragment: fragment.trim().to_owned(),
            }
        })
        .collect()
}

fn render(d: &Diagnostic) -> String {
    let key = if d.key.is_empty() { "-" } else { &d.key };
    format!("{} {} {} | {}", d.line, d.severity, key, d.message)
}

/// Compares one case; returns what is wrong with it.
fn check_case(toml: &Path) -> Result<(), String> {
    let expected = parse_expected(&toml.with_extension("expected"));
    if expected.is_empty() {
        return Err("the .expected file lists nothing".into());
    }
    let mut actual = diagnostics(toml);
    let mut missing = Vec::new();
    for e in &expected {
        let found = actual.iter().position(|d| {
            d.line == e.line
                && d.severity == e.severity
                && d.key == e.key
                && d.message.contains(&e.fragment)
        });
        match found {
            Some(i) => {
                actual.remove(i);
            }
            None => missing.push(format!(
                "{} {:?} {} | {}",
                e.line, e.severity, e.key, e.fragment
            )),
        }
    }
    if missing.is_empty() && actual.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = diagnostics(toml).iter().map(render).collect();
    Err(format!(
        "missing:\n  {}\nunexpected:\n  {}\nreported:\n  {}",
        missing.join("\n  "),
        actual.iter().map(render).collect::<Vec<_>>().join("\n  "),
        all.join("\n  ")
    ))
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(bad_dir())
        .expect("tests/config/bad")
        .map(|e| e.expect("tests/config/bad entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_bad_config_reports_exactly_its_expected_diagnostics() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check_case(c)
                .err()
                .map(|e| format!("{}:\n{e}", c.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn every_case_has_an_expected_file_and_fails_to_load_or_warns() {
    for case in cases() {
        assert!(
            case.with_extension("expected").is_file(),
            "{} has no .expected file",
            case.display()
        );
        assert!(
            !diagnostics(&case).is_empty(),
            "{} loads without a diagnostic",
            case.display()
        );
    }
}

#[test]
fn one_file_with_many_different_errors_reports_them_all_at_once() {
    let all = diagnostics(&bad_dir().join("many_errors.toml"));
    let keys: Vec<&str> = all.iter().map(|d| d.key.as_str()).collect();
    for key in [
        "server.sip_listen[0]",
        "server.rtp_ports",
        "agent_group[0].alert_time",
        "agent_group[0].routing",
        "queue[0].agent_groups[0]",
        "queue[0].timeout.after",
        "hours[0].monday[0]",
        "holiday_set[0].holidays[0].end",
        "workflow[0].time_zone",
        "workflow[0].business_hours",
        "workflow[0].uri",
    ] {
        assert!(keys.contains(&key), "{key} not reported; got {keys:?}");
    }
    assert!(all.iter().all(Diagnostic::is_error));
    let lines: Vec<usize> = all.iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "diagnostics are sorted by line");
}

#[test]
fn a_missing_config_file_is_one_diagnostic() {
    let path = bad_dir().join("does-not-exist.toml");
    let errors = load_with_audio(&path, &opts(), rgsd::media::config_probe).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 0);
    assert!(
        errors[0]
            .message
            .contains("cannot read the configuration file")
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with(&path.display().to_string())
    );
}

#[test]
fn diagnostics_print_like_a_compiler() {
    let path = bad_dir().join("queue_timeout_range.toml");
    let first = diagnostics(&path).remove(0);
    let text = first.to_string();
    let prefix = format!(
        "{}:{}:{}: error: queue[0].timeout.after: ",
        path.display(),
        first.line,
        first.column
    );
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.ends_with("5s is below the minimum 10s"), "{text}");
}
