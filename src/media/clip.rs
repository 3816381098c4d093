//! A [`Clip`]: a sound decoded, resampled to 8 kHz and encoded ONCE, at load time, into 20 ms
//! frames of both PCMU and PCMA payloads. Every call that plays it shares one `Arc<Clip>`, so
//! playback is a slice lookup per packet and never reads a file.
//!
//! Also the built-in music-on-hold tone loop, used when no music file is configured.

use std::sync::Arc;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::codec::{Codec, FRAME_SAMPLES, SAMPLE_RATE};
use super::wav::{self, WavError};

/// Why a sound could not be turned into a clip.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The WAV file is unreadable or in a format rgsd does not play.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// The resampler refused the rate pair.
    #[error("cannot resample from {rate} Hz: {source}")]
    ResamplerSetup {
        rate: u32,
        #[source]
        source: rubato::ResamplerConstructionError,
    },
    /// The resampler failed while running.
    #[error("resampling failed: {0}")]
    Resample(#[from] rubato::ResampleError),
    /// The sample buffer did not match the length given to the resampler (a bug).
    #[error("resampler buffer: {0}")]
    Buffer(#[from] rubato::audioadapter_buffers::SizeError),
}

/// A sound ready to send: `frames` 20 ms frames per codec, laid end to end.
#[derive(Clone, PartialEq, Eq)]
pub struct Clip {
    pcmu: Box<[u8]>,
    pcma: Box<[u8]>,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip")
            .field("frames", &self.frames())
            .finish()
    }
}

impl Clip {
    /// Builds a clip from 8 kHz mono samples in -1.0..=1.0.
    ///
    /// For a prompt (`looped == false`) the last partial frame is padded with silence. For music
    /// that loops, the tail shorter than one frame is dropped instead, so that the loop joins
    /// without a gap of silence (at most 19.875 ms of audio is lost); a sound shorter than one
    /// frame is padded.
    #[must_use]
    pub fn from_8k_samples(samples: &[f32], looped: bool) -> Self {
        let whole = samples.len() / FRAME_SAMPLES * FRAME_SAMPLES;
        let len = if looped && whole > 0 {
            whole
        } else {
            samples.len().div_ceil(FRAME_SAMPLES).max(1) * FRAME_SAMPLES
        };
        let mut pcmu = Vec::with_capacity(len);
        let mut pcma = Vec::with_capacity(len);
        for i in 0..len {
            let s = samples.get(i).copied().unwrap_or(0.0);
            let linear = to_i16(s);
            pcmu.push(Codec::Pcmu.encode(linear));
            pcma.push(Codec::Pcma.encode(linear));
        }
        Self {
            pcmu: pcmu.into_boxed_slice(),
            pcma: pcma.into_boxed_slice(),
        }
    }

    /// Decodes a whole WAV file held in memory (see [`wav::decode`]) and resamples it to 8 kHz.
    ///
    /// # Errors
    /// [`ClipError`] when the file is not playable.
    pub fn from_wav(bytes: &[u8], looped: bool) -> Result<Self, ClipError> {
        let decoded = wav::decode(bytes)?;
        let samples = resample_to_8k(&decoded.samples, decoded.sample_rate)?;
        Ok(Self::from_8k_samples(&samples, looped))
    }

    /// Number of 20 ms frames (at least one).
    #[must_use]
    pub fn frames(&self) -> usize {
        self.pcmu.len() / FRAME_SAMPLES
    }

    /// The payload of frame `index` in `codec`; `index` is taken modulo [`Clip::frames`].
    #[must_use]
    pub fn frame(&self, codec: Codec, index: usize) -> &[u8] {
        let start = (index % self.frames()) * FRAME_SAMPLES;
        let all = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        &all[start..start + FRAME_SAMPLES]
    }

    /// How long the clip plays.
    #[must_use]
    pub fn duration(&self) -> std::time::Duration {
        super::codec::FRAME_DURATION * u32::try_from(self.frames()).unwrap_or(u32::MAX)
    }
}

/// Clamps and scales a sample in -1.0..=1.0 to 16 bits.
pub(crate) fn to_i16(s: f32) -> i16 {
    // The clamp keeps the product inside i16's range, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let v = (s.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
    v
}

/// Resamples mono samples from `rate` to 8 kHz with rubato's FFT resampler, whose
/// anti-aliasing low-pass filter removes everything above the new Nyquist frequency (4 kHz).
///
/// # Errors
/// [`ClipError`] when rubato refuses the rate.
pub(crate) fn resample_to_8k(samples: &[f32], rate: u32) -> Result<Vec<f32>, ClipError> {
    if rate == SAMPLE_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let rate_in = usize::try_from(rate).unwrap_or(usize::MAX);
    let mut resampler = Fft::<f32>::new(rate_in, 8_000, 1_024, 1, FixedSync::Input)
        .map_err(|source| ClipError::ResamplerSetup { rate, source })?;
    let input = InterleavedSlice::new(samples, 1, samples.len())?;
    let output = resampler.process_all(&input, samples.len(), None)?;
    Ok(output.take_data())
}

/// A calm four-second loop of sine tones (a C major arpeggio, each note faded in and out), the
/// music on hold when neither the workflow nor the server names a file.
#[must_use]
pub fn tone_loop() -> Arc<Clip> {
    const NOTES_HZ: [f32; 8] = [
        523.25, 659.25, 783.99, 1_046.5, 783.99, 659.25, 523.25, 392.0,
    ];
    const NOTE_SAMPLES: usize = 4_000; // 0.5 s, a whole number of frames
    const FADE: usize = 400; // 50 ms
    let mut samples = Vec::with_capacity(NOTES_HZ.len() * NOTE_SAMPLES);
    for hz in NOTES_HZ {
        for i in 0..NOTE_SAMPLES {
            let fade_in = i.min(FADE);
            let fade_out = (NOTE_SAMPLES - 1 - i).min(FADE);
            #[allow(clippy::cast_precision_loss)] // i < 4000 and FADE are exact in f32
            let envelope = fade_in.min(fade_out) as f32 / FADE as f32;
            #[allow(clippy::cast_precision_loss)]
            let t = i as f32 / 8_000.0;
            samples.push(0.2 * envelope * (std::f32::consts::TAU * hz * t).sin());
        }
    }
    Arc::new(Clip::from_8k_samples(&samples, true))
}

#[cfg(test)]
// Test signal generators: every float-to-integer cast is on a value bounded by construction.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sine(hz: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| amplitude * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(s: &[f32]) -> f32 {
        (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt()
    }

    /// Frequency from rising zero crossings, interpolated between samples.
    fn zero_crossing_hz(s: &[f32], rate: f32) -> f32 {
        let mut crossings = Vec::new();
        for i in 1..s.len() {
            if s[i - 1] < 0.0 && s[i] >= 0.0 {
                crossings.push((i - 1) as f32 + s[i - 1] / (s[i - 1] - s[i]));
            }
        }
        let periods = (crossings.len() - 1) as f32;
        rate * periods / (crossings[crossings.len() - 1] - crossings[0])
    }

    #[test]
    fn a_1khz_tone_at_44k1_keeps_its_frequency_at_8k() {
        let input = sine(1_000.0, 44_100, 1.0, 0.5);
        let out = resample_to_8k(&input, 44_100).unwrap();
        assert!((7_990..=8_010).contains(&out.len()), "len {}", out.len());
        // Skip the filter's edges.
        let middle = &out[800..7_200];
        let hz = zero_crossing_hz(middle, 8_000.0);
        assert!((hz - 1_000.0).abs() < 10.0, "measured {hz} Hz");
        let level = rms(middle) / rms(&input);
        assert!((0.9..1.1).contains(&level), "passband level {level}");
    }

    #[test]
    fn a_5khz_tone_at_44k1_is_filtered_out_not_aliased() {
        let input = sine(5_000.0, 44_100, 1.0, 0.5);
        let out = resample_to_8k(&input, 44_100).unwrap();
        let middle = &out[800..7_200];
        let db = 20.0 * (rms(middle) / rms(&input)).log10();
        assert!(db < -40.0, "5 kHz leaks at {db:.1} dB");
    }

    #[test]
    fn wav_files_become_frames_in_both_laws() {
        let pcm: Vec<u8> = sine(1_000.0, 16_000, 0.5, 0.5)
            .iter()
            .flat_map(|s| to_i16(*s).to_le_bytes())
            .collect();
        let bytes = wav::tests::wav_bytes(1, 1, 16_000, 16, &pcm);
        let clip = Clip::from_wav(&bytes, false).unwrap();
        assert_eq!(clip.frames(), 25);
        assert_eq!(clip.duration(), std::time::Duration::from_millis(500));
        let mid_u = clip.frame(Codec::Pcmu, 10);
        let mid_a = clip.frame(Codec::Pcma, 10);
        assert_eq!(mid_u.len(), 160);
        assert!(mid_u.iter().any(|&c| c != Codec::Pcmu.silence()));
        // Both payloads carry the same sound.
        for (u, a) in mid_u.iter().zip(mid_a) {
            let (lu, la) = (
                i32::from(Codec::Pcmu.decode(*u)),
                i32::from(Codec::Pcma.decode(*a)),
            );
            assert!((lu - la).abs() <= lu.abs() / 8 + 64, "{lu} vs {la}");
        }
        assert!(matches!(
            Clip::from_wav(b"nope", false),
            Err(ClipError::Wav(_))
        ));
    }

    #[test]
    fn prompts_pad_and_loops_trim_the_last_partial_frame() {
        let samples = vec![0.5; 330];
        let prompt = Clip::from_8k_samples(&samples, false);
        assert_eq!(prompt.frames(), 3);
        assert_eq!(prompt.frame(Codec::Pcmu, 2)[9], Codec::Pcmu.encode(16_384));
        assert_eq!(prompt.frame(Codec::Pcmu, 2)[10], Codec::Pcmu.silence());
        let music = Clip::from_8k_samples(&samples, true);
        assert_eq!(music.frames(), 2);
        assert_eq!(music.frame(Codec::Pcma, 3), music.frame(Codec::Pcma, 1));
        assert_eq!(Clip::from_8k_samples(&[], true).frames(), 1);
    }

    #[test]
    fn the_tone_loop_is_audible_and_loops_whole_frames() {
        let clip = tone_loop();
        assert_eq!(clip.frames(), 200);
        let loud = (0..clip.frames())
            .filter(|&i| {
                clip.frame(Codec::Pcmu, i)
                    .iter()
                    .any(|&c| Codec::Pcmu.decode(c).abs() > 3_000)
            })
            .count();
        assert!(loud > 150, "only {loud} audible frames");
    }
}
