//! The recogniser on speech made by espeak-ng and sent through G.711 µ-law at 8 kHz, as a
//! phone would send it (`scripts/voice_accuracy` measures the same over three synthesisers).
// Test harness: a failed unwrap is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use rgsd_asr::{ACCEPT_MARGIN, CONFIRM_MARGIN, Model, Recognizer, upsample_8k};

/// `word` spoken by espeak-ng (US English), padded with 300 ms of silence, through µ-law at
/// 8 kHz, as 16-bit samples; `None` (with the reason printed) when a tool is missing.
fn spoken(word: &str, dir: &Path) -> Option<Vec<i16>> {
    for tool in ["espeak-ng", "sox"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("skipped: {tool} is not installed (scripts/test installs it as root)");
            return None;
        }
    }
    let wav = dir.join(format!("{word}.wav"));
    let ulaw = dir.join(format!("{word}-ulaw.wav"));
    let raw = dir.join(format!("{word}.raw"));
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&wav)
        .arg(word));
    run(Command::new("sox")
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-e", "mu-law"])
        .arg(&ulaw)
        .args(["pad", "0.3", "0.3"]));
    run(Command::new("sox")
        .arg(&ulaw)
        .args(["-e", "signed", "-b", "16", "-t", "raw"])
        .arg(&raw));
    let bytes = std::fs::read(&raw).unwrap();
    Some(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    )
}

#[test]
fn answers_are_heard_and_other_words_are_not() {
    let model = match Model::for_language("en-US") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let mut rec = Recognizer::new(&model, &["Sales", "Billing", "Operator", "yes", "no"]).unwrap();
    let dir = tempfile_dir();
    for (word, index) in [("billing", 1), ("operator", 2)] {
        let Some(pcm) = spoken(word, &dir) else {
            return;
        };
        let heard = rec.recognize(&upsample_8k(&pcm).unwrap()).unwrap().unwrap();
        assert_eq!(heard.phrase, index, "{word}: {heard:?}");
        assert!(heard.margin >= ACCEPT_MARGIN, "{word}: {heard:?}");
    }
    let Some(pcm) = spoken("banana", &dir) else {
        return;
    };
    let heard = rec.recognize(&upsample_8k(&pcm).unwrap()).unwrap();
    assert!(
        heard.as_ref().is_none_or(|h| h.margin < CONFIRM_MARGIN),
        "banana is not an answer: {heard:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_word_the_model_does_not_know_is_refused_up_front() {
    let Ok(model) = Model::for_language("en-US") else {
        eprintln!("skipped: no model");
        return;
    };
    let e = Recognizer::new(&model, &["sales", "xqzzyv"]).unwrap_err();
    assert!(e.to_string().contains("xqzzyv"), "{e}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rgsd-asr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
