//! [`MediaAssets`]: every prompt and music-on-hold file of a configuration, decoded once at load
//! time into shared [`Clip`]s. Prompt indexes match [`PromptId`]; music is keyed by file path,
//! with the server default (a file, or the built-in tone loop) for workflows without their own.
//!
//! Blocking (reads files, runs espeak-ng): build it at start-up or reload, off the call path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::clip::{self, Clip, ClipError};
use super::tts::{TextToSpeech, TtsError};
use super::wav::WavError;
use crate::config::model::{Config, PromptId, PromptSource, Workflow};

/// Why the media of a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    /// A prompt's audio file is unreadable or not playable.
    #[error("prompt {index} ({path}): {source}")]
    PromptFile {
        index: u32,
        path: PathBuf,
        #[source]
        source: ClipError,
    },
    /// A text prompt could not be spoken.
    #[error("prompt {index} (text-to-speech): {source}")]
    PromptText {
        index: u32,
        #[source]
        source: TtsError,
    },
    /// What espeak-ng wrote could not be decoded.
    #[error("prompt {index} (text-to-speech output): {source}")]
    PromptSpeech {
        index: u32,
        #[source]
        source: ClipError,
    },
    /// A music-on-hold file is unreadable or not playable.
    #[error("music on hold {path}: {source}")]
    Music {
        path: PathBuf,
        #[source]
        source: ClipError,
    },
}

/// The decoded prompts and music of one configuration. Cheap to share (`Arc` inside).
#[derive(Debug, Clone)]
pub struct MediaAssets {
    prompts: Vec<Arc<Clip>>,
    music: HashMap<PathBuf, Arc<Clip>>,
    default_music: Arc<Clip>,
}

fn read_clip(path: &Path, looped: bool) -> Result<Clip, ClipError> {
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Clip::from_wav(&bytes, looped)
}

impl MediaAssets {
    /// Decodes every prompt and music file of `config` (text prompts through `tts`).
    ///
    /// # Errors
    /// [`AssetsError`] for the first prompt or file that cannot be used.
    pub fn load(config: &Config, tts: &TextToSpeech) -> Result<Self, AssetsError> {
        let mut prompts = Vec::with_capacity(config.prompts.len());
        for (i, prompt) in config.prompts.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let clip = match &prompt.source {
                PromptSource::File(path) => {
                    read_clip(path, false).map_err(|source| AssetsError::PromptFile {
                        index,
                        path: path.clone(),
                        source,
                    })?
                }
                PromptSource::Text(text) => {
                    let wav = tts
                        .render(text, &prompt.language)
                        .map_err(|source| AssetsError::PromptText { index, source })?;
                    Clip::from_wav(&wav, false)
                        .map_err(|source| AssetsError::PromptSpeech { index, source })?
                }
            };
            prompts.push(Arc::new(clip));
        }
        let mut music = HashMap::new();
        let paths = config
            .workflows
            .iter()
            .filter_map(|w| w.music_on_hold.as_ref())
            .chain(config.server.default_music_on_hold.as_ref());
        for path in paths {
            if music.contains_key(path) {
                continue;
            }
            let clip = read_clip(path, true).map_err(|source| AssetsError::Music {
                path: path.clone(),
                source,
            })?;
            music.insert(path.clone(), Arc::new(clip));
        }
        let default_music = config
            .server
            .default_music_on_hold
            .as_ref()
            .and_then(|p| music.get(p).cloned())
            .unwrap_or_else(clip::tone_loop);
        Ok(Self {
            prompts,
            music,
            default_music,
        })
    }

    /// The rendered prompt; `None` only for an id from another configuration.
    #[must_use]
    pub fn prompt(&self, id: PromptId) -> Option<&Arc<Clip>> {
        self.prompts.get(usize::try_from(id.0).ok()?)
    }

    /// Music for a workflow: its own file, else the server default, else the tone loop.
    #[must_use]
    pub fn music_for(&self, workflow: &Workflow) -> Arc<Clip> {
        self.music(workflow.music_on_hold.as_deref())
    }

    /// Music by file path; the default for `None` or a path not in the configuration.
    #[must_use]
    pub fn music(&self, path: Option<&Path>) -> Arc<Clip> {
        path.and_then(|p| self.music.get(p))
            .unwrap_or(&self.default_music)
            .clone()
    }

    /// The server default music (a file, or the built-in tone loop).
    #[cfg(test)]
    #[must_use]
    pub fn default_music(&self) -> Arc<Clip> {
        Arc::clone(&self.default_music)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{DatabaseUrl, Prompt, Server, SrtpPolicy};
    use crate::media::codec::Codec;
    use crate::media::wav::tests::wav_bytes;
    use std::time::Duration;

    fn config(prompts: Vec<Prompt>, default_music: Option<PathBuf>) -> Config {
        Config {
            source: PathBuf::from("/etc/rgsd/rgsd.toml"),
            server: Server {
                sip_listen: vec![],
                advertised_host: "127.0.0.1".to_owned(),
                rtp_ports: 40_000..=40_100,
                http_listen: "127.0.0.1:0".parse().unwrap(),
                database: DatabaseUrl::Sqlite(PathBuf::from("/tmp/x.db")),
                default_music_on_hold: default_music,
                agent_ringback_grace_period: Duration::from_secs(60),
                drain_limit: Duration::from_secs(30),
                call_journal: "rgsd.journal".into(),
                trusted_peers: vec![],
                max_calls: 10,
                call_context: false,
                sip_rate_limit: None,
                dns_servers: Vec::new(),
                outbound_proxy: None,
                srtp: SrtpPolicy::Off,
                agent_srtp: SrtpPolicy::Off,
                allow_sdes_over_plain_sip: false,
                session_expires: Some(Duration::from_secs(1800)),
                min_se: Duration::from_secs(90),
                tls: Default::default(),
            },
            registrations: vec![],
            agent_groups: vec![],
            queues: vec![],
            hours: vec![],
            holiday_sets: vec![],
            workflows: vec![],
            prompts,
        }
    }

    fn write_wav(dir: &Path, name: &str, rate: u32, seconds: f32) -> PathBuf {
        let pcm: Vec<u8> = crate::media::clip::tests::sine(440.0, rate, seconds, 0.5)
            .iter()
            .flat_map(|s| crate::media::clip::to_i16(*s).to_le_bytes())
            .collect();
        let path = dir.join(name);
        std::fs::write(&path, wav_bytes(1, 1, rate, 16, &pcm)).unwrap();
        path
    }

    #[test]
    fn prompts_keep_their_indexes_and_music_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let short = write_wav(dir.path(), "short.wav", 8_000, 0.2);
        let long = write_wav(dir.path(), "long.wav", 44_100, 1.0);
        let prompts = vec![
            Prompt {
                source: PromptSource::File(long.clone()),
                language: "en-US".to_owned(),
            },
            Prompt {
                source: PromptSource::File(short.clone()),
                language: "en-US".to_owned(),
            },
        ];
        let tts = TextToSpeech::with_program(PathBuf::from("/nonexistent"), dir.path().join("tts"));
        let assets = MediaAssets::load(&config(prompts.clone(), None), &tts).unwrap();
        assert_eq!(assets.prompt(PromptId(0)).unwrap().frames(), 50);
        assert_eq!(assets.prompt(PromptId(1)).unwrap().frames(), 10);
        assert!(assets.prompt(PromptId(2)).is_none());
        // No music file anywhere: the tone loop.
        assert_eq!(assets.default_music(), clip::tone_loop());
        assert_eq!(assets.music(Some(&short)), clip::tone_loop());

        // A server default file replaces the tone loop, shared, not decoded per call.
        let with_default = MediaAssets::load(&config(prompts, Some(short.clone())), &tts).unwrap();
        let a = with_default.music(None);
        let b = with_default.music(Some(Path::new("/elsewhere.wav")));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.frames(), 10);
        assert!(
            a.frame(Codec::Pcmu, 3)
                .iter()
                .any(|&c| c != Codec::Pcmu.silence())
        );
    }

    #[test]
    fn errors_name_the_prompt_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.wav");
        std::fs::write(&bad, b"not a wav").unwrap();
        let tts = TextToSpeech::with_program(PathBuf::from("/nonexistent"), dir.path().join("tts"));
        let prompts = vec![Prompt {
            source: PromptSource::File(bad.clone()),
            language: "en-US".to_owned(),
        }];
        let err = MediaAssets::load(&config(prompts, None), &tts).unwrap_err();
        assert!(
            matches!(err, AssetsError::PromptFile { index: 0, .. }),
            "{err}"
        );
        let err = MediaAssets::load(&config(vec![], Some(bad)), &tts).unwrap_err();
        assert!(matches!(err, AssetsError::Music { .. }), "{err}");
        let text = vec![Prompt {
            source: PromptSource::Text("Hello".to_owned()),
            language: "en-US".to_owned(),
        }];
        let err = MediaAssets::load(&config(text, None), &tts).unwrap_err();
        assert!(matches!(
            err,
            AssetsError::PromptText {
                index: 0,
                source: TtsError::Missing { .. }
            }
        ));
    }

    #[test]
    fn text_prompts_are_spoken_with_espeak() {
        let found = std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipping: espeak-ng is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tts = TextToSpeech::new(dir.path().to_path_buf());
        let text = vec![Prompt {
            source: PromptSource::Text("Please hold.".to_owned()),
            language: "en-US".to_owned(),
        }];
        let assets = MediaAssets::load(&config(text, None), &tts).unwrap();
        let clip = assets.prompt(PromptId(0)).unwrap();
        assert!(clip.frames() > 20, "{} frames", clip.frames());
        let loud = (0..clip.frames())
            .filter(|&i| {
                clip.frame(Codec::Pcma, i)
                    .iter()
                    .any(|&c| Codec::Pcma.decode(c).abs() > 2_000)
            })
            .count();
        assert!(loud > 5, "speech is audible");
    }
}
