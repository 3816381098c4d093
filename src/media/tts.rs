//! Text-to-speech for `PromptSource::Text` prompts: espeak-ng, run once per prompt at load time,
//! its WAV output cached on disk under a hash of (engine, voice, language, text).
//!
//! The workflow's language picks the voice: `en-US` → `-v en-us`; when espeak-ng has no voice
//! for the whole tag, the primary language (`en`) is tried. The text goes in on stdin, so it is
//! never parsed as an option.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// Why a text prompt could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// The espeak-ng program is not installed (or not where configured).
    #[error(
        "text-to-speech needs espeak-ng, which was not found as {program:?}; install the espeak-ng package or use audio files"
    )]
    Missing { program: PathBuf },
    /// espeak-ng ran and failed (unknown voice, bad input).
    #[error("espeak-ng failed for voice {voice:?}: {stderr}")]
    Failed { voice: String, stderr: String },
    /// The cache folder or a file in it could not be written or read.
    #[error("text-to-speech cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Running espeak-ng failed for another reason.
    #[error("cannot run espeak-ng: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Renders text with espeak-ng into a disk cache.
#[derive(Debug, Clone)]
pub struct TextToSpeech {
    program: PathBuf,
    cache_dir: PathBuf,
}

/// The espeak-ng voice for a BCP 47 tag: lower case (`en-US` → `en-us`).
#[must_use]
pub(crate) fn voice_for(language: &str) -> String {
    let tag = language.trim().to_ascii_lowercase();
    if tag.is_empty() {
        "en-us".to_owned()
    } else {
        tag
    }
}

impl TextToSpeech {
    /// espeak-ng from `PATH`, caching into `cache_dir` (created when needed).
    #[must_use]
    pub fn new(cache_dir: PathBuf) -> Self {
        Self::with_program(PathBuf::from("espeak-ng"), cache_dir)
    }

    /// A given espeak-ng binary (tests, unusual installs).
    #[must_use]
    pub fn with_program(program: PathBuf, cache_dir: PathBuf) -> Self {
        Self { program, cache_dir }
    }

    /// The cache file for `text` in `language`.
    #[must_use]
    pub fn cache_path(&self, text: &str, language: &str) -> PathBuf {
        let voice = voice_for(language);
        let mut hash = Sha256::new();
        for part in ["espeak-ng", &voice, language, text] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.cache_dir.join(format!("{hex}.wav"))
    }

    /// The WAV bytes of `text` spoken in `language`: from the cache, or rendered and cached.
    ///
    /// Blocking (runs a process); call at load time, not on a call's path.
    ///
    /// # Errors
    /// [`TtsError`]; [`TtsError::Missing`] when espeak-ng is not installed.
    pub fn render(&self, text: &str, language: &str) -> Result<Vec<u8>, TtsError> {
        let path = self.cache_path(text, language);
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        std::fs::create_dir_all(&self.cache_dir).map_err(|source| TtsError::Cache {
            path: self.cache_dir.clone(),
            source,
        })?;
        // Written under a temporary name and renamed, so a crash never leaves half a file that
        // a later start would trust.
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        let voice = voice_for(language);
        let primary = voice.split('-').next().unwrap_or(&voice).to_owned();
        let mut result = self.run(&voice, text, &partial);
        if matches!(result, Err(TtsError::Failed { .. })) && primary != voice {
            result = self.run(&primary, text, &partial);
        }
        if let Err(e) = result {
            // Best effort: the partial file may not exist.
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &path).map_err(|source| TtsError::Cache {
            path: path.clone(),
            source,
        })?;
        std::fs::read(&path).map_err(|source| TtsError::Cache { path, source })
    }

    fn run(&self, voice: &str, text: &str, out: &Path) -> Result<(), TtsError> {
        let mut child = Command::new(&self.program)
            .arg("-v")
            .arg(voice)
            .arg("-w")
            .arg(out)
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    TtsError::Missing {
                        program: self.program.clone(),
                    }
                }
                _ => TtsError::Spawn(e),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(TtsError::Spawn)?;
        }
        let output = child.wait_with_output().map_err(TtsError::Spawn)?;
        if !output.status.success() {
            return Err(TtsError::Failed {
                voice: voice.to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn espeak_available() -> bool {
        let found = Command::new("espeak-ng")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!("skipping: espeak-ng is not installed");
        }
        found
    }

    #[test]
    fn voices_follow_the_language_tag() {
        assert_eq!(voice_for("en-US"), "en-us");
        assert_eq!(voice_for("fr"), "fr");
        assert_eq!(voice_for(""), "en-us");
    }

    #[test]
    fn the_cache_key_covers_text_and_language() {
        let tts = TextToSpeech::new(PathBuf::from("/cache"));
        let a = tts.cache_path("Welcome", "en-US");
        assert_eq!(a, tts.cache_path("Welcome", "en-US"));
        assert_ne!(a, tts.cache_path("Welcome", "en-GB"));
        assert_ne!(a, tts.cache_path("Welcome!", "en-US"));
        assert!(a.starts_with("/cache"));
        assert_eq!(a.extension().and_then(|e| e.to_str()), Some("wav"));
    }

    #[test]
    fn missing_espeak_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let tts = TextToSpeech::with_program(
            PathBuf::from("/nonexistent/espeak-ng"),
            dir.path().to_path_buf(),
        );
        let err = tts.render("Hello", "en-US").unwrap_err();
        assert!(matches!(err, TtsError::Missing { .. }));
        assert!(err.to_string().contains("install the espeak-ng package"));
    }

    #[test]
    fn renders_once_then_reads_the_cache() {
        if !espeak_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tts = TextToSpeech::new(dir.path().to_path_buf());
        let bytes = tts.render("Thank you for calling.", "en-US").unwrap();
        let info = crate::media::wav::parse(&bytes).unwrap().0;
        assert!(info.frames > 8_000, "about a second of speech");
        assert!(tts.cache_path("Thank you for calling.", "en-US").exists());
        // A broken program now: the cache still answers.
        let cached = TextToSpeech::with_program(
            PathBuf::from("/nonexistent/espeak-ng"),
            dir.path().to_path_buf(),
        );
        assert_eq!(
            cached.render("Thank you for calling.", "en-US").unwrap(),
            bytes
        );
        // An unknown region falls back to the language.
        assert!(tts.render("Bonjour", "fr-XX").is_ok());
        assert!(matches!(
            tts.render("Hello", "xx-YY"),
            Err(TtsError::Failed { .. })
        ));
    }
}
