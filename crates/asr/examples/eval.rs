//! Accuracy of the recogniser on a directory of utterances: `scripts/voice_accuracy` makes the
//! audio and calls this (README, Voice answers).
//!
//! `eval DIR PHRASE...`: every `DIR/*.raw` is 8 kHz signed 16-bit mono audio named
//! `<words>__<family>__<condition>.raw` (words joined by `_`). Words that are one of the phrases
//! are in-grammar; others are out-of-grammar. Prints one line per utterance (`--verbose`) and
//! a table per family and condition: in-grammar accepted right, sent to confirmation, wrong or
//! rejected; out-of-grammar rejected, sent to confirmation, accepted; decoding time (one
//! core) per second of audio.

use std::collections::BTreeMap;
use std::time::Instant;

use rgsd_asr::{
    ACCEPT_MARGIN as ACCEPT, CONFIRM_MARGIN as CONFIRM, Model, Recognizer, upsample_8k,
};

// Margins (see `Hypothesis::margin`): at or above ACCEPT the answer is taken; between CONFIRM
// and ACCEPT the caller is asked to confirm; below CONFIRM it is rejected. Overridable with
// `--accept N --confirm N`.

#[derive(Default)]
struct Tally {
    in_right: u32,
    in_confirm: u32,
    in_wrong: u32,
    in_rejected: u32,
    out_rejected: u32,
    out_confirm: u32,
    out_accepted: u32,
    audio_s: f64,
    cpu_s: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    args.retain(|a| a != "--verbose");
    let mut take = |flag: &str, default: f64| -> f64 {
        match args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < args.len() => {
                let v = args[i + 1].parse().unwrap_or(default);
                args.drain(i..=i + 1);
                v
            }
            _ => default,
        }
    };
    let accept = take("--accept", ACCEPT);
    let confirm = take("--confirm", CONFIRM);
    let Some((dir, phrases)) = args.split_first() else {
        eprintln!("usage: eval DIR PHRASE... [--accept N] [--confirm N] [--verbose]");
        std::process::exit(2);
    };
    let phrases: Vec<&str> = phrases.iter().map(String::as_str).collect();
    let model = Model::for_language("en-US")?;
    let mut rec = Recognizer::new(&model, &phrases)?;
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "raw"))
        .collect();
    files.sort();
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for path in files {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut parts = name.split("__");
        let (Some(words), Some(family), Some(condition)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let said = words.replace('_', " ");
        let bytes = std::fs::read(&path)?;
        let pcm: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // Wall time of one CPU-bound decode on one thread (nothing here runs under a paused
        // tokio clock).
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let up = upsample_8k(&pcm)?;
        let heard = rec.recognize(&up)?;
        let cpu = started.elapsed().as_secs_f64();
        // One row per synthesiser family (espeak, flite, festival) and condition.
        let family = family.split('-').next().unwrap_or(family);
        let t = tallies
            .entry((family.to_owned(), condition.to_owned()))
            .or_default();
        t.cpu_s += cpu;
        t.audio_s += pcm.len() as f64 / 8_000.0;
        let expected = rec.phrases().iter().position(|p| *p == said);
        let (got, margin) = match &heard {
            Some(h) => (Some(h.phrase), h.margin),
            None => (None, f64::NEG_INFINITY),
        };
        match expected {
            Some(e) => {
                if got != Some(e) || margin < confirm {
                    if got.is_some() && got != Some(e) && margin >= confirm {
                        t.in_wrong += 1;
                    } else {
                        t.in_rejected += 1;
                    }
                } else if margin >= accept {
                    t.in_right += 1;
                } else {
                    t.in_confirm += 1;
                }
            }
            None => {
                if margin >= accept {
                    t.out_accepted += 1;
                } else if margin >= confirm {
                    t.out_confirm += 1;
                } else {
                    t.out_rejected += 1;
                }
            }
        }
        if verbose {
            let heard = got.map_or("-", |g| rec.phrases()[g].as_str());
            println!("{name}\theard={heard}\tmargin={margin:.2}\tcpu={cpu:.2}s");
        }
    }
    println!(
        "| synthesiser | audio | in-grammar: right | confirm | wrong | rejected | out-of-grammar: rejected | confirm | accepted | decode s per audio s (1 core) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut all = Tally::default();
    for ((family, condition), t) in &tallies {
        row(family, condition, t);
        all.in_right += t.in_right;
        all.in_confirm += t.in_confirm;
        all.in_wrong += t.in_wrong;
        all.in_rejected += t.in_rejected;
        all.out_rejected += t.out_rejected;
        all.out_confirm += t.out_confirm;
        all.out_accepted += t.out_accepted;
        all.audio_s += t.audio_s;
        all.cpu_s += t.cpu_s;
    }
    row("all", "", &all);
    println!("thresholds: accept >= {accept}, confirm >= {confirm} (margin per 10 ms frame)");
    Ok(())
}

fn pct(n: u32, d: u32) -> String {
    if d == 0 {
        "–".into()
    } else {
        format!("{:.0} % ({n}/{d})", f64::from(n) * 100.0 / f64::from(d))
    }
}

fn row(family: &str, condition: &str, t: &Tally) {
    let inn = t.in_right + t.in_confirm + t.in_wrong + t.in_rejected;
    let out = t.out_rejected + t.out_confirm + t.out_accepted;
    println!(
        "| {family} | {condition} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
        pct(t.in_right, inn),
        pct(t.in_confirm, inn),
        pct(t.in_wrong, inn),
        pct(t.in_rejected, inn),
        pct(t.out_rejected, out),
        pct(t.out_confirm, out),
        pct(t.out_accepted, out),
        t.cpu_s / t.audio_s.max(1e-9)
    );
}
