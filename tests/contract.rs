//! The configuration contract (`tests/config/contract.toml`, a vendored copy of
//! `shared/reference/config-contract.toml`) loads once the files it names exist, and compiles to
//! the values it spells out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use rgsd::config::model::{
    ActionTarget, Config, DatabaseUrl, OverflowCandidate, Participation, PromptSource,
    RoutingMethod, Transport, WorkflowKind,
};
use rgsd::config::{LoadOptions, load, summary};

fn contract_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/contract.toml")
}

/// A playable WAV file: 16-bit PCM, mono, 8 kHz, 100 ms of a quiet ramp.
fn wav_bytes() -> Vec<u8> {
    let samples: Vec<i16> = (0..800i16).map(|i| (i % 64) * 16).collect();
    let data_len = u32::try_from(samples.len() * 2).expect("scratch files");
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Copies the contract into a scratch folder with every file it names.
fn scratch_contract() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("scratch files");
    let config = dir.path().join("rgsd.toml");
    std::fs::copy(contract_path(), &config).expect("scratch files");
    std::fs::create_dir_all(dir.path().join("sounds")).expect("scratch files");
    for wav in [
        "default-moh.wav",
        "sales-moh.wav",
        "holiday.wav",
        "support-welcome.wav",
    ] {
        std::fs::write(dir.path().join("sounds").join(wav), wav_bytes()).expect("scratch files");
    }
    std::fs::create_dir_all(dir.path().join("secrets")).expect("scratch files");
    std::fs::write(dir.path().join("secrets/sales.pass"), "s3cret\n").expect("scratch files");
    (dir, config)
}

fn load_contract() -> (tempfile::TempDir, Config, usize) {
    let (dir, path) = scratch_contract();
    // Text prompts need espeak-ng; it is installed here and in CI, but the environment check
    // is a rule of its own (tested elsewhere), so it does not decide this test.
    let opts = LoadOptions {
        check_environment: false,
    };
    match load(&path, &opts) {
        Ok(loaded) => (dir, loaded.config, loaded.warnings.len()),
        Err(diagnostics) => {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("the contract must load:\n{}", text.join("\n"));
        }
    }
}

#[test]
fn vendored_contract_matches_the_shared_one() {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/config-contract.toml");
    let Ok(shared) = std::fs::read_to_string(&shared) else {
        eprintln!("skipping: {} not present", shared.display());
        return;
    };
    let vendored = std::fs::read_to_string(contract_path()).unwrap();
    assert_eq!(
        vendored, shared,
        "tests/config/contract.toml is out of date: copy the shared contract again"
    );
}

#[test]
fn contract_loads_with_the_expected_objects() {
    let (_dir, config, warnings) = load_contract();
    assert_eq!(warnings, 0);
    assert_eq!(
        summary(&config),
        "2 workflows, 2 queues, 2 agent groups, 3 agents"
    );
    assert_eq!(config.registrations.len(), 1);
    assert_eq!(config.hours.len(), 1);
    assert_eq!(config.holiday_sets.len(), 1);
    assert!(config.source.is_absolute());
}

#[test]
fn contract_server_values() {
    let (dir, config, _) = load_contract();
    let s = &config.server;
    assert_eq!(s.sip_listen.len(), 2);
    assert_eq!(s.sip_listen[0].transport, Transport::Udp);
    assert_eq!(s.sip_listen[1].transport, Transport::Tcp);
    assert_eq!(s.sip_listen[1].addr, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(s.advertised_host, "127.0.0.1");
    assert_eq!(s.rtp_ports, 20000..=20999);
    assert_eq!(s.http_listen, "127.0.0.1:8080".parse().unwrap());
    // Relative paths resolve against the config file's folder.
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(s.database, DatabaseUrl::Sqlite(base.join("rgsd.db")));
    assert_eq!(
        s.default_music_on_hold.as_deref(),
        Some(base.join("sounds/default-moh.wav").as_path())
    );
    assert_eq!(s.agent_ringback_grace_period, Duration::from_secs(60));
    assert_eq!(s.trusted_peers, vec!["127.0.0.0/8".parse().unwrap()]);
    // Extra keys absent from the contract take their defaults.
    assert_eq!(s.max_calls, 1000);
    assert!(s.call_context);

    let r = &config.registrations[0];
    assert_eq!(r.aor.as_str(), "sip:sales@127.0.0.1");
    assert_eq!(r.registrar.as_str(), "sip:127.0.0.1:5080");
    assert_eq!(r.username, "sales");
    assert_eq!(r.password.expose(), "s3cret", "trailing newline trimmed");
    assert_eq!(r.expires, Duration::from_secs(600));
    assert!(
        !format!("{r:?}").contains("s3cret"),
        "Debug never shows a secret"
    );
}

#[test]
fn contract_groups_and_queues() {
    let (_dir, config, _) = load_contract();
    let sales = &config.agent_groups[0];
    assert_eq!(sales.name, "Sales agents");
    assert_eq!(sales.participation, Participation::Informal);
    assert_eq!(sales.routing, RoutingMethod::LongestIdle);
    assert_eq!(sales.alert_time, Duration::from_secs(20));
    assert_eq!(sales.agents.len(), 2);
    let billing = &config.agent_groups[1];
    assert_eq!(billing.participation, Participation::Formal);
    assert_eq!(billing.routing, RoutingMethod::Serial);
    assert_eq!(billing.alert_time, Duration::from_secs(15));

    let q_sales = &config.queues[0];
    assert_eq!(q_sales.name, "Sales");
    assert_eq!(q_sales.agent_groups.len(), 1);
    let timeout = q_sales.timeout.as_ref().unwrap();
    assert_eq!(timeout.after, Duration::from_secs(300));
    assert!(
        matches!(&timeout.action.target, ActionTarget::Voicemail(u) if u.as_str() == "sip:sales-vm@127.0.0.1:5090")
    );
    let overflow = q_sales.overflow.as_ref().unwrap();
    assert_eq!(overflow.max_calls, 50);
    assert_eq!(overflow.candidate, OverflowCandidate::Newest);
    assert_eq!(overflow.action.target, ActionTarget::Disconnect);

    let q_billing = &config.queues[1];
    let groups: Vec<&str> = q_billing
        .agent_groups
        .iter()
        .map(|g| config.agent_group(*g).name.as_str())
        .collect();
    assert_eq!(groups, ["Billing agents", "Sales agents"], "order kept");
    let timeout = q_billing.timeout.as_ref().unwrap();
    assert_eq!(timeout.after, Duration::from_secs(120));
    match timeout.action.target {
        ActionTarget::Queue(q) => assert_eq!(config.queue(q).name, "Sales"),
        ref other => panic!("expected the Sales queue, got {other:?}"),
    }
    let overflow = q_billing.overflow.as_ref().unwrap();
    assert_eq!(overflow.candidate, OverflowCandidate::Oldest);
    assert!(
        matches!(&overflow.action.target, ActionTarget::Forward(u) if u.as_str() == "sip:+14255550199@127.0.0.1:5080")
    );
}

#[test]
fn contract_hours_and_holidays() {
    let (_dir, config, _) = load_contract();
    let office = &config.hours[0];
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    assert_eq!(office.days[0].len(), 2, "Monday has two ranges");
    assert_eq!(
        (office.days[0][0].open, office.days[0][0].close),
        (t(9, 0), t(12, 0))
    );
    assert_eq!(
        (office.days[0][1].open, office.days[0][1].close),
        (t(13, 0), t(17, 30))
    );
    assert_eq!(office.days[4][0].close, t(16, 0), "Friday closes at 16:00");
    assert!(
        office.days[5].is_empty() && office.days[6].is_empty(),
        "weekend closed"
    );

    let us = &config.holiday_sets[0];
    assert_eq!(us.holidays.len(), 2);
    assert_eq!(us.holidays[1].name, "Christmas");
    assert_eq!(
        us.holidays[1].start,
        NaiveDate::from_ymd_opt(2026, 12, 25)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    );
}

#[test]
fn contract_workflows() {
    let (dir, config, _) = load_contract();
    let sales = &config.workflows[0];
    assert_eq!(sales.kind, WorkflowKind::HuntGroup);
    assert_eq!(sales.uri.as_str(), "sip:sales@127.0.0.1");
    assert_eq!(sales.time_zone, chrono_tz::America::New_York);
    assert!(sales.active);
    assert!(!sales.anonymous);
    assert_eq!(sales.display_number.as_deref(), Some("+1 425 555 0100"));
    match sales.start {
        ActionTarget::Queue(q) => assert_eq!(config.queue(q).name, "Sales"),
        ref other => panic!("expected a queue, got {other:?}"),
    }
    assert_eq!(
        config.hours_set(sales.business_hours.unwrap()).name,
        "Office"
    );
    assert_eq!(config.holiday_set(sales.holidays[0]).name, "US 2026");
    let welcome = config.prompt(sales.welcome.unwrap());
    assert_eq!(
        welcome.source,
        PromptSource::Text("Thank you for calling Contoso sales.".into())
    );
    assert_eq!(welcome.language, "en-US");
    let ooh = sales.out_of_hours.as_ref().unwrap();
    assert_eq!(ooh.target, ActionTarget::Disconnect);
    assert!(ooh.prompt.is_some());
    let holiday = sales.on_holiday.as_ref().unwrap();
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        config.prompt(holiday.prompt.unwrap()).source,
        PromptSource::File(base.join("sounds/holiday.wav"))
    );
    assert!(matches!(&holiday.target, ActionTarget::Voicemail(_)));
    assert_eq!(sales.managers.len(), 1);
    assert!(sales.questions.is_empty());

    let support = &config.workflows[1];
    assert_eq!(support.kind, WorkflowKind::Interactive);
    assert_eq!(support.time_zone, chrono_tz::Europe::Paris);
    assert_eq!(
        support.start,
        ActionTarget::Question(rgsd::config::model::QuestionId(0))
    );
    assert_eq!(support.questions.len(), 2, "two levels, flattened");
    let top = &support.questions[0];
    assert_eq!(top.no_input_timeout, Duration::from_secs(5));
    assert_eq!(top.answers.len(), 2);
    assert_eq!(top.answers[0].dtmf, Some('1'));
    assert_eq!(top.answers[0].voice, ["billing", "invoice"]);
    match top.answers[0].action.target {
        ActionTarget::Queue(q) => assert_eq!(config.queue(q).name, "Billing"),
        ref other => panic!("expected a queue, got {other:?}"),
    }
    let ActionTarget::Question(second) = top.answers[1].action.target else {
        panic!("answer 2 leads to the second question");
    };
    let second = &support.questions[second.0 as usize];
    assert_eq!(second.answers.len(), 2);
    assert_eq!(second.answers[1].dtmf, Some('2'));

    // Every prompt id is valid, and no (source, language) pair appears twice.
    for (i, a) in config.prompts.iter().enumerate() {
        for b in &config.prompts[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn contract_loads_with_the_environment_check_when_espeak_is_installed() {
    let (_dir, path) = scratch_contract();
    let espeak = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("espeak-ng").is_file()));
    let result = load(&path, &LoadOptions::default());
    if espeak {
        assert!(result.is_ok(), "{:?}", result.err());
    } else {
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("apt-get install espeak-ng"));
    }
}

/// Damaged copies of the contract (bytes deleted, duplicated or replaced by TOML punctuation)
/// are refused with diagnostics or loaded, never a panic. Deterministic: a fixed xorshift seed.
#[test]
fn damaged_contracts_never_panic() {
    let (dir, path) = scratch_contract();
    let original = std::fs::read(&path).unwrap();
    let damaged = dir.path().join("damaged.toml");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % u64::try_from(bound).unwrap()).unwrap()
    };
    let punctuation = b"[]{}=\",.:#\n 0a-";
    for _ in 0..100 {
        let mut bytes = original.clone();
        for _ in 0..1 + next(4) {
            let at = next(bytes.len());
            match next(3) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, bytes[at]),
                _ => bytes[at] = punctuation[next(punctuation.len())],
            }
        }
        std::fs::write(&damaged, &bytes).unwrap();
        let opts = LoadOptions {
            check_environment: false,
        };
        if let Err(diagnostics) = load(&damaged, &opts) {
            assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                assert!(!d.message.is_empty());
                assert!(!d.to_string().contains("s3cret"), "a secret leaked: {d}");
            }
        }
    }
}

#[test]
fn rgsd_check_exits_0_on_the_contract_with_its_files_present() {
    // The literal check: the real binary, default options (so the text prompts need
    // espeak-ng, which .ci/run installs).
    let (_dir, path) = scratch_contract();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rgsd"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run rgsd check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("2 workflows, 2 queues, 2 agent groups, 3 agents"),
        "{stdout}"
    );
}
