//! Configuration: TOML file → validated [`model::Config`].
//!
//! Two stages: `raw.rs` reads the file into spanned serde types (reporting every TOML syntax
//! error and every unknown key at once), then `compile.rs` checks every rule and builds the
//! [`model::Config`], collecting every problem into one list of [`Diagnostic`]s, warnings kept
//! apart. `serve` and `check` both go through [`load_with_audio`], so their messages cannot
//! drift apart. [`merge`] compiles the file together with the objects created through the API
//! (stored in the database) by the same compile step. Nothing here runs per call.
//!
//! Imports no other rgsd layer (`docs/architecture.md` has the table). What the compiler needs
//! from the machine (environment variables, the text-to-speech engine, a check of audio files)
//! reaches it as an `Environment`: [`load_with_audio`] and [`merge::load_merged_with_audio`]
//! build it from the process, with the [`AudioProbe`] their caller passes (the daemon and
//! `rgsd check` pass the media layer's WAV header probe); unit tests inject their own.

mod compile;
mod diagnostic;
pub(crate) mod merge;
pub mod model;
pub mod number;
mod raw;
mod tls;
pub(crate) mod uri;
mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, EXIT_CONFIG, Severity, print_diagnostics};
pub use merge::{DbObject, Merged, ObjectKind, Origin, load_merged};
pub(crate) use tls::{ExpiryAlarm, ExpiryWatch};

use model::Config;

/// How much of the machine [`load`] checks besides the file and the files it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Check that the tools the configuration needs are installed: text prompts need
    /// `espeak-ng` on `PATH`. Files named by the configuration (prompts, music, password files)
    /// and `password_env` variables are always checked. Default `true`.
    pub check_environment: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            check_environment: true,
        }
    }
}

/// A configuration that loaded, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Probably-unintended settings that do not stop rgsd (e.g. a queue without agents), sorted
    /// by line.
    pub warnings: Vec<Diagnostic>,
}

/// Why an audio file the configuration names (a prompt, music on hold) cannot be used.
#[derive(Debug)]
pub enum AudioProblem {
    /// The file cannot be opened or read.
    Unreadable(std::io::Error),
    /// The file is read but cannot be played; the message says why.
    Unusable(String),
}

/// Checks an audio file the configuration names. The configuration layer does not know audio
/// formats; the caller supplies the check (the daemon and `rgsd check` pass the media layer's
/// WAV header probe).
pub type AudioProbe = fn(&Path) -> Result<(), AudioProblem>;

/// An [`AudioProbe`] that only checks the file can be read: for callers that need the
/// configuration but play nothing (tests, the token and user commands).
///
/// # Errors
/// The file cannot be read.
pub fn readable_file(path: &Path) -> Result<(), AudioProblem> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(AudioProblem::Unreadable)
}

/// Reads, checks and compiles the configuration file at `path`; audio files are only checked to
/// be readable. Whoever plays them uses [`load_with_audio`].
///
/// # Errors
/// As [`load_with_audio`].
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, Vec<Diagnostic>> {
    load_with_audio(path, opts, readable_file)
}

/// Reads, checks and compiles the configuration file at `path`, checking every audio file with
/// `audio`.
///
/// # Errors
/// Every problem found, sorted by line: an unreadable file, TOML syntax errors, unknown keys,
/// type errors, out-of-range values, undeclared references, missing files or secrets, audio
/// files `audio` refuses. When there is at least one error, the warnings found are returned
/// with the errors.
pub fn load_with_audio(
    path: &Path,
    opts: &LoadOptions,
    audio: AudioProbe,
) -> Result<Loaded, Vec<Diagnostic>> {
    let env = compile::Environment {
        var: &|name| std::env::var(name).ok(),
        text_to_speech: || find_on_path("espeak-ng").is_some(),
        audio,
    };
    load_with(path, opts, &env)
}

/// [`load`] with the process environment injected (tests cannot change the real one safely).
pub(crate) fn load_with(
    path: &Path,
    opts: &LoadOptions,
    env: &compile::Environment<'_>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![diagnostic::file_error(
            path,
            format!("cannot read the configuration file: {e}"),
        )]
    })?;
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = source.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let map = diagnostic::SourceMap::new(path, &text);
    let raw = raw::parse(&map, &text).map_err(|mut d| {
        diagnostic::sort(&mut d);
        d
    })?;
    compile::compile(&raw, &map, source, &base, opts, env)
}

/// Resolves a path written in the configuration: relative paths are relative to the folder of
/// the configuration file. The only place that does so.
pub(crate) fn resolve_path(base: &Path, written: &str) -> PathBuf {
    let path = Path::new(written);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// The first executable file called `name` in a folder of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(&std::env::var_os("PATH")?, name)
}

/// The first executable file called `name` in one of the folders of `path_var` (`PATH` syntax).
fn find_in(path_var: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// One line for the start-up log: "2 workflows, 2 queues, 2 agent groups, 3 agents" (agents
/// counted once however many groups list them).
pub fn summary(config: &Config) -> String {
    let agents: BTreeSet<&str> = config
        .agent_groups
        .iter()
        .flat_map(|g| g.agents.iter().map(model::SipUri::as_str))
        .collect();
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    [
        count(config.workflows.len(), "workflow", "workflows"),
        count(config.queues.len(), "queue", "queues"),
        count(config.agent_groups.len(), "agent group", "agent groups"),
        count(agents.len(), "agent", "agents"),
    ]
    .join(", ")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn find_in_wants_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let bin = tempfile::tempdir().unwrap();
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("espeak-ng"), "not executable").unwrap();
        let exe = bin.path().join("espeak-ng");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = std::env::join_paths([plain.as_path(), bin.path()]).unwrap();
        assert_eq!(find_in(&path_var, "espeak-ng"), Some(exe));
        let only_plain = std::env::join_paths([plain.as_path()]).unwrap();
        assert_eq!(find_in(&only_plain, "espeak-ng"), None);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let base = Path::new("/etc/rgsd");
        assert_eq!(
            resolve_path(base, "sounds/a.wav"),
            Path::new("/etc/rgsd/sounds/a.wav")
        );
        assert_eq!(resolve_path(base, "/srv/a.wav"), Path::new("/srv/a.wav"));
    }
}
