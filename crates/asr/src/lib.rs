//! Offline recognition of the spoken answers of one IVR question, for rgsd
//! (`docs/behaviour.md` of rgsd, Interactive workflows).
//!
//! A [`Recognizer`] holds a PocketSphinx decoder with two searches over the same audio:
//!
//! - **the question's grammar**: a JSGF rule that is exactly one of the answers' phrases, so the
//!   decoder can only hear an answer;
//! - **a phone loop** (PocketSphinx's `allphone` search over the model's phonetic language
//!   model), which hears any speech at all.
//!
//! An utterance that is one of the answers scores almost as well under the grammar as under the
//! phone loop; anything else scores much worse under the grammar, which had to force it into a
//! phrase. The difference per 10 ms frame is the [`Hypothesis::margin`]; rgsd accepts an answer
//! above one threshold, asks the caller to confirm between two, and rejects below. The figures
//! behind the defaults are measured by `scripts/voice_accuracy` (README, Voice answers).
//!
//! Decoding is synchronous and CPU-bound: callers run it on a blocking thread, never on an
//! event loop. A decoder is used by one thread at a time ([`Recognizer`] is `Send`, not
//! `Sync`).

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    #[link(name = "pocketsphinx")]
    #[link(name = "sphinxbase")]
    unsafe extern "C" {
        pub(crate) fn ps_args() -> *const c_void;
        pub(crate) fn cmd_ln_parse_r(
            inout: *mut c_void,
            defn: *const c_void,
            argc: i32,
            argv: *const *const c_char,
            strict: c_int,
        ) -> *mut c_void;
        pub(crate) fn cmd_ln_free_r(cmdln: *mut c_void) -> c_int;
        pub(crate) fn ps_init(config: *mut c_void) -> *mut c_void;
        pub(crate) fn ps_free(ps: *mut c_void) -> c_int;
        pub(crate) fn ps_set_jsgf_string(
            ps: *mut c_void,
            name: *const c_char,
            jsgf: *const c_char,
        ) -> c_int;
        pub(crate) fn ps_set_allphone_file(
            ps: *mut c_void,
            name: *const c_char,
            path: *const c_char,
        ) -> c_int;
        pub(crate) fn ps_set_search(ps: *mut c_void, name: *const c_char) -> c_int;
        pub(crate) fn ps_start_utt(ps: *mut c_void) -> c_int;
        pub(crate) fn ps_process_raw(
            ps: *mut c_void,
            data: *const i16,
            n_samples: usize,
            no_search: c_int,
            full_utt: c_int,
        ) -> c_int;
        pub(crate) fn ps_end_utt(ps: *mut c_void) -> c_int;
        pub(crate) fn ps_get_hyp(ps: *mut c_void, out_best_score: *mut i32) -> *const c_char;
        pub(crate) fn ps_get_n_frames(ps: *mut c_void) -> c_int;
    }
}

/// At or above this margin an answer is taken as heard (README, Voice answers: measured).
pub const ACCEPT_MARGIN: f64 = 2.0;
/// From this margin up to [`ACCEPT_MARGIN`] the caller is asked to confirm; below, the
/// utterance is not an answer.
pub const CONFIRM_MARGIN: f64 = -1.0;

/// Where Debian's packages put the models.
pub const MODEL_ROOT: &str = "/usr/share/pocketsphinx/model";

/// Why a recognizer could not be made or could not decode.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// No acoustic model for the language is installed.
    #[error("no speech model for \"{language}\" is installed (looked in {dir}); install {package}")]
    NoModel {
        language: String,
        dir: String,
        package: &'static str,
    },
    /// A word of a phrase is not in the model's pronouncing dictionary.
    #[error(
        "\"{word}\" (in \"{phrase}\") is not in the speech model's dictionary; use another word"
    )]
    UnknownWord { word: String, phrase: String },
    /// A phrase has nothing to recognise.
    #[error("a spoken answer is empty")]
    EmptyPhrase,
    /// PocketSphinx refused (its log says why; rgsd sends it to /dev/null by default).
    #[error("PocketSphinx: {0}")]
    Engine(&'static str),
    /// Resampling failed.
    #[error("resampling: {0}")]
    Resample(String),
}

/// The files of one language's model.
#[derive(Debug, Clone)]
pub struct Model {
    pub language: String,
    pub acoustic: PathBuf,
    pub dictionary: PathBuf,
    pub phone_lm: PathBuf,
}

impl Model {
    /// The installed model for a workflow language (`en-US`, `en-GB`, … all use Debian's US
    /// English model, the only one it packages).
    ///
    /// # Errors
    /// [`AsrError::NoModel`], naming the package to install.
    pub fn for_language(language: &str) -> Result<Self, AsrError> {
        Self::for_language_in(language, Path::new(MODEL_ROOT))
    }

    /// [`Self::for_language`] under another root (tests).
    ///
    /// # Errors
    /// [`AsrError::NoModel`].
    pub fn for_language_in(language: &str, root: &Path) -> Result<Self, AsrError> {
        let primary = language
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (dir, package) = match primary.as_str() {
            "en" => ("en-us", "pocketsphinx-en-us"),
            _ => {
                return Err(AsrError::NoModel {
                    language: language.to_owned(),
                    dir: root.display().to_string(),
                    package: "a PocketSphinx model for that language (Debian packages only pocketsphinx-en-us)",
                });
            }
        };
        let base = root.join(dir);
        let model = Self {
            language: language.to_owned(),
            acoustic: base.join("en-us"),
            dictionary: base.join("cmudict-en-us.dict"),
            phone_lm: base.join("en-us-phone.lm.bin"),
        };
        if model.acoustic.is_dir() && model.dictionary.is_file() && model.phone_lm.is_file() {
            Ok(model)
        } else {
            Err(AsrError::NoModel {
                language: language.to_owned(),
                dir: base.display().to_string(),
                package,
            })
        }
    }

    /// The words of the dictionary, lower case (for checking phrases before building).
    ///
    /// # Errors
    /// The dictionary cannot be read.
    pub fn words(&self) -> std::io::Result<std::collections::HashSet<String>> {
        let text = std::fs::read_to_string(&self.dictionary)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| !w.contains('('))
            .map(str::to_ascii_lowercase)
            .collect())
    }
}

/// What was heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Index of the phrase heard, in the order given to [`Recognizer::new`].
    pub phrase: usize,
    /// Grammar score minus phone-loop score per frame, in PocketSphinx's log units (base
    /// 1.0001): mostly above 0 for an answer, below for anything else (see
    /// [`ACCEPT_MARGIN`] and [`CONFIRM_MARGIN`]).
    pub margin: f64,
    /// Frames of audio (10 ms each).
    pub frames: u32,
}

/// One question's decoder (see the crate docs).
#[derive(Debug)]
pub struct Recognizer {
    config: NonNull<c_void>,
    decoder: NonNull<c_void>,
    /// Normalised phrases, by index.
    phrases: Vec<String>,
}

// SAFETY: the decoder and its configuration are owned by this value alone and PocketSphinx
// keeps no thread-affine state; `&mut self` on every call serialises their use.
unsafe impl Send for Recognizer {}

const GRAMMAR: &CStr = c"answers";
const PHONES: &CStr = c"phones";

fn normalise(phrase: &str) -> String {
    phrase
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cstring(s: &str) -> Result<CString, AsrError> {
    CString::new(s).map_err(|_| AsrError::Engine("a path or phrase holds a NUL byte"))
}

impl Recognizer {
    /// A decoder for `phrases` (each a word or a few words) with `model`. Checks every word
    /// against the model's dictionary first.
    ///
    /// # Errors
    /// [`AsrError::UnknownWord`], [`AsrError::EmptyPhrase`], or [`AsrError::Engine`].
    pub fn new(model: &Model, phrases: &[&str]) -> Result<Self, AsrError> {
        let words = model
            .words()
            .map_err(|_| AsrError::Engine("cannot read the dictionary"))?;
        let mut normalised = Vec::with_capacity(phrases.len());
        for phrase in phrases {
            let n = normalise(phrase);
            if n.is_empty() {
                return Err(AsrError::EmptyPhrase);
            }
            if let Some(word) = n.split(' ').find(|w| !words.contains(*w)) {
                return Err(AsrError::UnknownWord {
                    word: word.to_owned(),
                    phrase: (*phrase).to_owned(),
                });
            }
            normalised.push(n);
        }
        let mut alternatives: Vec<&str> = normalised.iter().map(String::as_str).collect();
        alternatives.sort_unstable();
        alternatives.dedup();
        let jsgf = format!(
            "#JSGF V1.0;\ngrammar answers;\npublic <answer> = {};\n",
            alternatives
                .iter()
                .map(|a| format!("( {a} )"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let args: Vec<CString> = [
            "-hmm",
            &model.acoustic.display().to_string(),
            "-dict",
            &model.dictionary.display().to_string(),
            "-samprate",
            "16000",
            "-logfn",
            "/dev/null",
            // Context-independent phones for the phone loop: 45 ms instead of 8 s per second of
            // audio on the machine of the README's figures, and the margins still separate.
            "-allphone_ci",
            "yes",
        ]
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<_, _>>()?;
        let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        // SAFETY: `ps_args` returns a static table; `argv` holds `argc` valid C strings that
        // outlive the call (cmd_ln copies what it keeps).
        let config = unsafe {
            ffi::cmd_ln_parse_r(std::ptr::null_mut(), ffi::ps_args(), argc, argv.as_ptr(), 1)
        };
        let config = NonNull::new(config).ok_or(AsrError::Engine("bad decoder arguments"))?;
        // SAFETY: `config` is a valid configuration; ps_init takes its own reference.
        let decoder = unsafe { ffi::ps_init(config.as_ptr()) };
        let Some(decoder) = NonNull::new(decoder) else {
            // SAFETY: `config` came from cmd_ln_parse_r and is released once.
            unsafe { ffi::cmd_ln_free_r(config.as_ptr()) };
            return Err(AsrError::Engine("the model could not be loaded"));
        };
        let recognizer = Self {
            config,
            decoder,
            phrases: normalised,
        };
        let jsgf = cstring(&jsgf)?;
        let phone_lm = cstring(&model.phone_lm.display().to_string())?;
        // SAFETY: a live decoder and NUL-terminated strings, copied by the callee.
        let (g, p) = unsafe {
            (
                ffi::ps_set_jsgf_string(decoder.as_ptr(), GRAMMAR.as_ptr(), jsgf.as_ptr()),
                ffi::ps_set_allphone_file(decoder.as_ptr(), PHONES.as_ptr(), phone_lm.as_ptr()),
            )
        };
        if g != 0 {
            return Err(AsrError::Engine("the answers' grammar was refused"));
        }
        if p != 0 {
            return Err(AsrError::Engine("the phone loop could not be loaded"));
        }
        Ok(recognizer)
    }

    /// The phrases, normalised (lower case, punctuation removed), by index.
    pub fn phrases(&self) -> &[String] {
        &self.phrases
    }

    /// Decodes one utterance of 16 kHz audio with `search`; returns the hypothesis text, its
    /// score and the frame count.
    fn decode(
        &mut self,
        search: &CStr,
        pcm: &[i16],
    ) -> Result<(Option<String>, i32, u32), AsrError> {
        let ps = self.decoder.as_ptr();
        // SAFETY: a live decoder owned by `self` (`&mut`: no other use meanwhile); `pcm` is a
        // valid slice for the length given; the hypothesis string is copied before the next
        // call into the decoder.
        unsafe {
            if ffi::ps_set_search(ps, search.as_ptr()) != 0 {
                return Err(AsrError::Engine("no such search"));
            }
            if ffi::ps_start_utt(ps) != 0 {
                return Err(AsrError::Engine("cannot start an utterance"));
            }
            if ffi::ps_process_raw(ps, pcm.as_ptr(), pcm.len(), 0, 1) < 0 {
                let _ = ffi::ps_end_utt(ps);
                return Err(AsrError::Engine("cannot process the audio"));
            }
            if ffi::ps_end_utt(ps) != 0 {
                return Err(AsrError::Engine("cannot end the utterance"));
            }
            let mut score = 0;
            let hyp = ffi::ps_get_hyp(ps, &raw mut score);
            let text = if hyp.is_null() {
                None
            } else {
                Some(CStr::from_ptr(hyp).to_string_lossy().into_owned())
            };
            let frames = u32::try_from(ffi::ps_get_n_frames(ps)).unwrap_or(0);
            Ok((text, score, frames))
        }
    }

    /// What `pcm` (16 kHz mono, one utterance) says: the phrase it is closest to and the
    /// margin, or `None` when the grammar matched nothing at all.
    ///
    /// # Errors
    /// [`AsrError::Engine`].
    pub fn recognize(&mut self, pcm: &[i16]) -> Result<Option<Hypothesis>, AsrError> {
        let (text, grammar_score, frames) = self.decode(GRAMMAR, pcm)?;
        let Some(text) = text.map(|t| normalise(&t)).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let Some(phrase) = self.phrases.iter().position(|p| *p == text) else {
            return Ok(None);
        };
        let (_, phone_score, _) = self.decode(PHONES, pcm)?;
        let margin = f64::from(grammar_score - phone_score) / f64::from(frames.max(1));
        Ok(Some(Hypothesis {
            phrase,
            margin,
            frames,
        }))
    }
}

impl Drop for Recognizer {
    fn drop(&mut self) {
        // SAFETY: both came from PocketSphinx, are owned by `self` and are released once.
        unsafe {
            ffi::ps_free(self.decoder.as_ptr());
            ffi::cmd_ln_free_r(self.config.as_ptr());
        }
    }
}

/// Telephone audio (8 kHz) up to the model's 16 kHz.
///
/// # Errors
/// [`AsrError::Resample`] (rubato refused; not expected for these fixed rates).
pub fn upsample_8k(pcm: &[i16]) -> Result<Vec<i16>, AsrError> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};
    if pcm.is_empty() {
        return Ok(Vec::new());
    }
    let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    let mut resampler = Fft::<f32>::new(8_000, 16_000, 1_024, 1, FixedSync::Input)
        .map_err(|e| AsrError::Resample(e.to_string()))?;
    let input = InterleavedSlice::new(&samples[..], 1, samples.len())
        .map_err(|e| AsrError::Resample(e.to_string()))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| AsrError::Resample(e.to_string()))?;
    #[allow(clippy::cast_possible_truncation)] // clamped to the i16 range first
    Ok(output
        .take_data()
        .into_iter()
        .map(|s| (s.clamp(-1.0, 1.0) * 32_767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_normalised() {
        assert_eq!(normalise("  Customer   Service! "), "customer service");
        assert_eq!(normalise("it's"), "it's");
    }

    #[test]
    fn a_language_without_a_model_names_the_package() {
        let e = Model::for_language("fr-FR").unwrap_err().to_string();
        assert!(e.contains("fr-FR") && e.contains("pocketsphinx"), "{e}");
        let dir = std::env::temp_dir().join("rgsd-asr-no-model");
        let e = Model::for_language_in("en-US", &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pocketsphinx-en-us"), "{e}");
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)] // a sine of amplitude 8,000
    fn upsampling_doubles_the_length() {
        let tone: Vec<i16> = (0..8_000)
            .map(|i| ((f64::from(i) * 0.3).sin() * 8_000.0) as i16)
            .collect();
        let up = upsample_8k(&tone).unwrap();
        assert!(up.len().abs_diff(16_000) < 64, "{}", up.len());
    }
}
