//! `/api/prompts`: prompt audio made once, at upload, and used by name from any object.
//!
//! A prompt is uploaded as a WAV file in any format a configured prompt may have (8- or 16-bit
//! linear PCM, A-law or µ-law, mono or stereo, any rate; at most 4 MB), or written as text and
//! spoken once by the text-to-speech engine. Either way it is converted once to 8 kHz 16-bit mono
//! and saved as `prompts/NAME.wav` in the configuration file's folder; objects then use it as
//! `{ "file": "prompts/NAME.wav" }`, the shape the file itself uses, so the compile step checks it
//! like any other prompt file. `GET /api/prompts/{name}` serves the WAV for playing back in a
//! browser. Deleting a prompt a database object uses is refused with the users named.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body as RawBody;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{Body, Params};
use super::objects::ObjectError;
use crate::api::Shared;
use crate::media::clip::{resample_to_8k, to_i16};
use crate::media::tts::TextToSpeech;
use crate::media::wav;

/// The folder, beside the configuration file, that holds the prompts made here.
const FOLDER: &str = "prompts";
/// The largest WAV file accepted (the limit of the original product).
const MAX_UPLOAD: usize = 4 * 1024 * 1024;
/// The longest text spoken.
const MAX_TEXT: usize = 4_096;
const RATE: u32 = 8_000;

/// A prompt as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PromptDoc {
    pub name: String,
    /// What an object writes to use it: `{ "file": "prompts/NAME.wav" }`.
    pub file: String,
    pub duration_ms: u64,
}

/// A prompt spoken by the text-to-speech engine.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PromptText {
    pub name: String,
    pub text: String,
    /// BCP 47 tag choosing the voice; default `en-US`.
    pub language: Option<String>,
}

fn folder(shared: &Shared) -> PathBuf {
    shared
        .config
        .load()
        .source
        .parent()
        .map_or_else(|| PathBuf::from(FOLDER), |p| p.join(FOLDER))
}

/// A name is a file name: letters, digits, space, `-`, `_`, `.`; 1 to 64 characters, not
/// starting with a dot.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.chars().count())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidField {
            field: "name",
            reason: "1 to 64 letters, digits, spaces, '-', '_' or '.', not starting with '.'"
                .into(),
        })
    }
}

fn relative(name: &str) -> String {
    format!("{FOLDER}/{name}.wav")
}

/// Any accepted WAV → 8 kHz 16-bit mono WAV bytes, and its length in milliseconds.
fn convert(bytes: &[u8]) -> Result<(Vec<u8>, u64), ApiError> {
    let decoded = wav::decode(bytes).map_err(|e| ApiError::InvalidField {
        field: "body",
        reason: format!("not a WAV file rgsd can play: {e}"),
    })?;
    let samples = resample_to_8k(&decoded.samples, decoded.sample_rate).map_err(|e| {
        ApiError::InvalidField {
            field: "body",
            reason: format!("cannot convert to 8 kHz: {e}"),
        }
    })?;
    Ok((
        encode(&samples),
        u64::try_from(samples.len()).unwrap_or(u64::MAX) * 1000 / u64::from(RATE),
    ))
}

/// 16-bit linear PCM, mono, 8 kHz, in a canonical 44-byte-header WAV file.
fn encode(samples: &[f32]) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // linear PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&to_i16(*s).to_le_bytes());
    }
    out
}

/// Writes `bytes` as the prompt `name`, atomically (temporary file, then rename).
async fn save(dir: PathBuf, name: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
    let path = dir.join(format!("{name}.wav"));
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let partial = path.with_extension(format!("wav.{}.partial", std::process::id()));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, &path)
    })
    .await
    .map_err(|e| ObjectError::NotApplied(e.to_string()))?
    .map_err(|e| ObjectError::NotApplied(format!("cannot write the prompt: {e}")))
}

fn duration_of(path: &Path) -> u64 {
    wav::probe(path).map_or(0, |i| i.frames * 1000 / u64::from(i.sample_rate.max(1)))
}

fn doc(name: &str, duration_ms: u64) -> PromptDoc {
    PromptDoc {
        name: name.to_owned(),
        file: relative(name),
        duration_ms,
    }
}

async fn audit(shared: &Shared, caller: &Caller, action: &str, name: &str, detail: Value) {
    if let Err(e) = shared
        .store
        .audit(caller.subject(), action, name, &detail)
        .await
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// The prompts made here, by name.
#[utoipa::path(get, path = "/api/prompts", tag = "prompts",
    responses((status = 200, body = Vec<PromptDoc>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_admin_or_manager()?;
    let dir = folder(&shared);
    let mut out: Vec<PromptDoc> = tokio::task::spawn_blocking(move || {
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let path = e.path();
                        let name = path.file_name()?.to_str()?.strip_suffix(".wav")?.to_owned();
                        check_name(&name).ok()?;
                        Some(doc(&name, duration_of(&path)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out).into_response())
}

/// Speaks `text` once with the text-to-speech engine and keeps the result as a prompt.
#[utoipa::path(post, path = "/api/prompts", tag = "prompts", request_body = PromptText,
    responses((status = 201, body = PromptDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_from_text(
    State(shared): State<Shared>,
    caller: Caller,
    Body(body): Body<PromptText>,
) -> Result<Response, ObjectError> {
    caller.require_admin_or_manager()?;
    check_name(&body.name)?;
    if body.text.trim().is_empty() || body.text.chars().count() > MAX_TEXT {
        return Err(ApiError::InvalidField {
            field: "text",
            reason: format!("1 to {MAX_TEXT} characters"),
        }
        .into());
    }
    let language = body.language.clone().unwrap_or_else(|| "en-US".to_owned());
    let text = body.text.clone();
    let tts = TextToSpeech::new(std::env::temp_dir().join("rgsd-tts-cache"));
    let spoken = tokio::task::spawn_blocking(move || tts.render(&text, &language))
        .await
        .map_err(|e| ObjectError::NotApplied(e.to_string()))?
        .map_err(|e| ApiError::InvalidField {
            field: "text",
            reason: format!("text-to-speech failed: {e}"),
        })?;
    let (bytes, duration_ms) = convert(&spoken)?;
    save(folder(&shared), &body.name, bytes).await?;
    audit(
        &shared,
        &caller,
        "prompt.create",
        &body.name,
        json!({ "text": body.text, "language": body.language, "file": relative(&body.name) }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(doc(&body.name, duration_ms))).into_response())
}

/// Uploads a WAV file (the body, `Content-Type: audio/wav`) as the prompt `name`, converted once
/// to 8 kHz 16-bit mono; replaces a prompt of that name.
#[utoipa::path(put, path = "/api/prompts/{name}", tag = "prompts",
    params(("name" = String, Path, description = "prompt name")),
    request_body(content = Vec<u8>, content_type = "audio/wav"),
    responses((status = 201, body = PromptDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn upload(
    State(shared): State<Shared>,
    caller: Caller,
    Params(name): Params<String>,
    body: RawBody,
) -> Result<Response, ObjectError> {
    caller.require_admin_or_manager()?;
    check_name(&name)?;
    let bytes =
        axum::body::to_bytes(body, MAX_UPLOAD)
            .await
            .map_err(|_| ApiError::InvalidField {
                field: "body",
                reason: format!("a prompt file is at most {MAX_UPLOAD} bytes"),
            })?;
    let (converted, duration_ms) = tokio::task::spawn_blocking(move || convert(&bytes))
        .await
        .map_err(|e| ObjectError::NotApplied(e.to_string()))??;
    save(folder(&shared), &name, converted).await?;
    audit(
        &shared,
        &caller,
        "prompt.upload",
        &name,
        json!({ "file": relative(&name), "duration_ms": duration_ms }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(doc(&name, duration_ms))).into_response())
}

/// The prompt's WAV file, for playing back.
#[utoipa::path(get, path = "/api/prompts/{name}", tag = "prompts",
    params(("name" = String, Path, description = "prompt name")),
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get(
    State(shared): State<Shared>,
    caller: Caller,
    Params(name): Params<String>,
) -> Result<Response, ApiError> {
    caller.require_admin_or_manager()?;
    check_name(&name).map_err(|_| ApiError::NotFound("prompt"))?;
    let path = folder(&shared).join(format!("{name}.wav"));
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::NotFound("prompt"))?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response())
}

/// Deletes a prompt no database object uses (administrators only).
#[utoipa::path(delete, path = "/api/prompts/{name}", tag = "prompts",
    params(("name" = String, Path, description = "prompt name")),
    responses((status = 204, description = "deleted"), (status = 409, description = "in use"), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete(
    State(shared): State<Shared>,
    caller: Caller,
    Params(name): Params<String>,
) -> Result<Response, ObjectError> {
    caller.require_admin()?;
    check_name(&name).map_err(|_| ApiError::NotFound("prompt"))?;
    let file = relative(&name);
    let users: Vec<String> = shared
        .store
        .list_objects()
        .await?
        .iter()
        .filter(|o| uses_file(&o.object.body, &file))
        .map(|o| format!("{} {:?}", o.object.kind, o.object.name))
        .collect();
    if !users.is_empty() {
        return Err(ObjectError::InUse(users));
    }
    let path = folder(&shared).join(format!("{name}.wav"));
    tokio::fs::remove_file(&path)
        .await
        .map_err(|_| ApiError::NotFound("prompt"))?;
    audit(
        &shared,
        &caller,
        "prompt.delete",
        &name,
        json!({ "file": file }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a body names `file` as a prompt file anywhere (`{ "file": … }`).
fn uses_file(value: &Value, file: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == "file"
                && v.as_str()
                    .is_some_and(|f| f.trim_start_matches("./") == file))
                || uses_file(v, file)
        }),
        Value::Array(items) => items.iter().any(|v| uses_file(v, file)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_prompts_are_8k_16_bit_mono() {
        // One second of 16 kHz stereo silence with a click.
        let mut samples = vec![0.0f32; 16_000];
        samples[100] = 0.5;
        let mut wav16k = Vec::new();
        let data: Vec<u8> = samples
            .iter()
            .flat_map(|s| {
                let v = to_i16(*s).to_le_bytes();
                [v[0], v[1], v[0], v[1]]
            })
            .collect();
        wav16k.extend_from_slice(b"RIFF");
        wav16k.extend_from_slice(&(36 + u32::try_from(data.len()).unwrap()).to_le_bytes());
        wav16k.extend_from_slice(b"WAVEfmt ");
        wav16k.extend_from_slice(&16u32.to_le_bytes());
        wav16k.extend_from_slice(&1u16.to_le_bytes());
        wav16k.extend_from_slice(&2u16.to_le_bytes());
        wav16k.extend_from_slice(&16_000u32.to_le_bytes());
        wav16k.extend_from_slice(&64_000u32.to_le_bytes());
        wav16k.extend_from_slice(&4u16.to_le_bytes());
        wav16k.extend_from_slice(&16u16.to_le_bytes());
        wav16k.extend_from_slice(b"data");
        wav16k.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        wav16k.extend_from_slice(&data);
        let (out, ms) = convert(&wav16k).unwrap();
        assert_eq!(ms, 1000);
        let (info, body) = wav::parse(&out).unwrap();
        assert_eq!(info.sample_rate, 8_000);
        assert_eq!(info.channels, 1);
        assert_eq!(info.format, wav::WavFormat::Pcm16);
        assert_eq!(body.len(), 16_000);
        assert!(convert(b"not a wav").is_err());
    }

    #[test]
    fn names_are_plain_file_names() {
        assert!(check_name("welcome night-2.v1").is_ok());
        for bad in ["", ".hidden", "../etc/passwd", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uses_file_looks_at_every_prompt() {
        let body = json!({ "welcome": { "file": "prompts/a.wav" },
            "question": { "answers": [{ "prompt": { "file": "./prompts/b.wav" } }] } });
        assert!(uses_file(&body, "prompts/a.wav"));
        assert!(uses_file(&body, "prompts/b.wav"));
        assert!(!uses_file(&body, "prompts/c.wav"));
    }
}
