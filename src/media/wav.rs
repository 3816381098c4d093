//! WAV files: header probe (used by config validation) and decoding (used by playback).
//!
//! Pure: reads bytes. Of the other rgsd layers it knows only the configuration's
//! [`crate::config::AudioProbe`] shape, which [`config_probe`] fills. Accepted formats are the
//! ones Lync accepted (`docs/behaviour.md`, "Audio files"): PCM 8-bit (unsigned) or 16-bit,
//! A-law, µ-law; mono or stereo; any sample rate from 8 kHz to 192 kHz.

use std::path::Path;

/// The sample encoding inside a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WavFormat {
    /// Linear PCM, 8-bit unsigned.
    Pcm8,
    /// Linear PCM, 16-bit signed little-endian.
    Pcm16,
    /// G.711 A-law.
    ALaw,
    /// G.711 µ-law.
    MuLaw,
}

/// What the header of a readable WAV file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WavInfo {
    pub format: WavFormat,
    pub channels: u16,
    pub sample_rate: u32,
    /// Sample frames (one sample per channel) in the data chunk.
    pub frames: u64,
}

/// Why a WAV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not a RIFF/WAVE file, or a chunk is cut short.
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    /// A WAV file in an encoding rgsd does not play.
    #[error(
        "unsupported WAV encoding (format tag {format_tag}, {bits} bits); use PCM 8/16-bit, A-law or µ-law"
    )]
    Unsupported { format_tag: u16, bits: u16 },
    /// More than two channels.
    #[error("unsupported channel count {0}; use mono or stereo")]
    Channels(u16),
    /// A sample rate outside 8 kHz to 192 kHz.
    #[error("unsupported sample rate {0} Hz; use 8 kHz to 192 kHz")]
    SampleRate(u32),
    /// The data chunk holds no samples.
    #[error("the WAV file holds no audio")]
    Empty,
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_ALAW: u16 = 6;
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Reads the header of the WAV file at `path`.
///
/// # Errors
/// [`WavError`] says why the file cannot be played.
pub(crate) fn probe(path: &Path) -> Result<WavInfo, WavError> {
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes).map(|(info, _)| info)
}

/// The configuration's audio check: the file must be readable and its header playable. The
/// daemon and `rgsd check` hand it to `config::load_with_audio`.
///
/// # Errors
/// The file cannot be read, or [`probe`] refuses its header.
pub fn config_probe(path: &Path) -> Result<(), crate::config::AudioProblem> {
    use crate::config::AudioProblem;
    match probe(path) {
        Ok(_) => Ok(()),
        Err(WavError::Io { source, .. }) => Err(AudioProblem::Unreadable(source)),
        Err(e) => Err(AudioProblem::Unusable(e.to_string())),
    }
}

/// Parses a whole WAV file held in memory; returns the header and the data chunk.
///
/// # Errors
/// [`WavError`] says why the bytes are not a playable WAV file.
pub(crate) fn parse(bytes: &[u8]) -> Result<(WavInfo, &[u8]), WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav("missing RIFF/WAVE header"));
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let len = usize::try_from(len).map_err(|_| WavError::NotWav("chunk too large"))?;
        let body_start = pos + 8;
        // Some writers put a bogus length on the data chunk (streaming); clamp it to the file.
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(WavError::NotWav("fmt chunk too short"));
                }
                let le16 = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let mut tag = le16(0);
                let channels = le16(2);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let block_align = le16(12);
                let bits = le16(14);
                if tag == WAVE_FORMAT_EXTENSIBLE {
                    // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID whose first
                    // two bytes are the real format tag.
                    if body.len() < 26 {
                        return Err(WavError::NotWav("extensible fmt chunk too short"));
                    }
                    tag = le16(24);
                }
                fmt = Some((tag, channels, rate, block_align, bits));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body_start.saturating_add(len).saturating_add(len & 1);
    }
    let (tag, channels, sample_rate, block_align, bits) =
        fmt.ok_or(WavError::NotWav("no fmt chunk"))?;
    let data = data.ok_or(WavError::NotWav("no data chunk"))?;
    let format = match (tag, bits) {
        (WAVE_FORMAT_PCM, 8) => WavFormat::Pcm8,
        (WAVE_FORMAT_PCM, 16) => WavFormat::Pcm16,
        (WAVE_FORMAT_ALAW, 8) => WavFormat::ALaw,
        (WAVE_FORMAT_MULAW, 8) => WavFormat::MuLaw,
        (format_tag, bits) => return Err(WavError::Unsupported { format_tag, bits }),
    };
    if !(1..=2).contains(&channels) {
        return Err(WavError::Channels(channels));
    }
    if !(8_000..=192_000).contains(&sample_rate) {
        return Err(WavError::SampleRate(sample_rate));
    }
    let frame_bytes = u64::from(channels) * u64::from(bits / 8);
    if u64::from(block_align) != frame_bytes {
        return Err(WavError::NotWav(
            "block align does not match channels and bits",
        ));
    }
    let frames = data.len() as u64 / frame_bytes;
    if frames == 0 {
        return Err(WavError::Empty);
    }
    Ok((
        WavInfo {
            format,
            channels,
            sample_rate,
            frames,
        },
        data,
    ))
}

/// A whole WAV file decoded to mono linear samples at its own rate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoded {
    pub sample_rate: u32,
    /// Mono samples in -1.0..=1.0; stereo files are mixed down by averaging the two channels.
    pub samples: Vec<f32>,
}

/// Decodes a whole WAV file held in memory to mono samples (see [`Decoded`]).
///
/// # Errors
/// [`WavError`] says why the bytes are not a playable WAV file.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, WavError> {
    let (info, data) = parse(bytes)?;
    let channels = usize::from(info.channels);
    let width = match info.format {
        WavFormat::Pcm16 => 2,
        WavFormat::Pcm8 | WavFormat::ALaw | WavFormat::MuLaw => 1,
    };
    let sample = |b: &[u8]| -> f32 {
        match info.format {
            WavFormat::Pcm8 => (f32::from(b[0]) - 128.0) / 128.0,
            WavFormat::Pcm16 => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            WavFormat::ALaw => f32::from(super::g711::alaw_to_linear(b[0])) / 32_768.0,
            WavFormat::MuLaw => f32::from(super::g711::ulaw_to_linear(b[0])) / 32_768.0,
        }
    };
    let samples = data
        .chunks_exact(width * channels)
        .map(|frame| {
            let sum: f32 = frame.chunks_exact(width).map(sample).sum();
            // channels is 1 or 2 (checked by `parse`).
            sum / f32::from(info.channels)
        })
        .collect();
    Ok(Decoded {
        sample_rate: info.sample_rate,
        samples,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a WAV file in memory (for tests across the crate).
    pub(crate) fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + u32::try_from(data.len()).unwrap()).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        let align = channels * (bits / 8);
        v.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        v.extend_from_slice(&align.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_each_supported_format() {
        let cases = [
            (1, 8, WavFormat::Pcm8),
            (1, 16, WavFormat::Pcm16),
            (6, 8, WavFormat::ALaw),
            (7, 8, WavFormat::MuLaw),
        ];
        for (tag, bits, want) in cases {
            let bytes = wav_bytes(tag, 2, 44_100, bits, &[0u8; 400]);
            let (info, data) = parse(&bytes).unwrap();
            assert_eq!(info.format, want);
            assert_eq!(info.channels, 2);
            assert_eq!(info.sample_rate, 44_100);
            assert_eq!(info.frames, 400 / (2 * u64::from(bits / 8)));
            assert_eq!(data.len(), 400);
        }
    }

    #[test]
    fn decodes_each_format_to_mono() {
        // One stereo frame: left and right at different levels, averaged.
        let pcm16: Vec<u8> = [16_384i16, -8_192, 0, 0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let d = decode(&wav_bytes(1, 2, 16_000, 16, &pcm16)).unwrap();
        assert_eq!(d.sample_rate, 16_000);
        assert_eq!(d.samples, vec![0.125, 0.0]);
        let d = decode(&wav_bytes(1, 1, 8_000, 8, &[128, 255, 0])).unwrap();
        assert_eq!(d.samples, vec![0.0, 127.0 / 128.0, -1.0]);
        let d = decode(&wav_bytes(7, 1, 8_000, 8, &[0x80, 0xFF])).unwrap();
        assert!((d.samples[0] - 32_124.0 / 32_768.0).abs() < 1e-6);
        assert_eq!(d.samples[1], 0.0);
        let d = decode(&wav_bytes(6, 1, 8_000, 8, &[0xAA])).unwrap();
        assert!((d.samples[0] - 32_256.0 / 32_768.0).abs() < 1e-6);
    }

    #[test]
    fn refuses_what_it_cannot_play() {
        assert!(matches!(parse(b"hello"), Err(WavError::NotWav(_))));
        let float = wav_bytes(3, 1, 8000, 32, &[0u8; 64]);
        assert!(matches!(
            parse(&float),
            Err(WavError::Unsupported {
                format_tag: 3,
                bits: 32
            })
        ));
        let pcm24 = wav_bytes(1, 1, 8000, 24, &[0u8; 63]);
        assert!(matches!(parse(&pcm24), Err(WavError::Unsupported { .. })));
        let six = wav_bytes(1, 6, 8000, 16, &[0u8; 120]);
        assert!(matches!(parse(&six), Err(WavError::Channels(6))));
        let slow = wav_bytes(1, 1, 4000, 16, &[0u8; 64]);
        assert!(matches!(parse(&slow), Err(WavError::SampleRate(4000))));
        let empty = wav_bytes(1, 1, 8000, 16, &[]);
        assert!(matches!(parse(&empty), Err(WavError::Empty)));
    }
}
