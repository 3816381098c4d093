//! The audio codecs rgsd speaks on RTP, and the constants of its 8 kHz, 20 ms framing.

use std::time::Duration;

use super::g711;

/// Every RTP stream rgsd sends runs at the G.711 clock.
pub(crate) const SAMPLE_RATE: u32 = 8_000;
/// Samples in one 20 ms packet.
pub(crate) const FRAME_SAMPLES: usize = 160;
/// `FRAME_SAMPLES` as an RTP timestamp increment.
pub(crate) const FRAME_TICKS: u32 = 160;
/// The packet interval (`a=ptime:20`).
pub(crate) const FRAME_DURATION: Duration = Duration::from_millis(20);

/// An audio codec of a negotiated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The encoding name of `a=rtpmap`.
    #[must_use]
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// The code of silence.
    #[cfg(test)]
    #[must_use]
    pub const fn silence(self) -> u8 {
        match self {
            Self::Pcmu => g711::ULAW_SILENCE,
            Self::Pcma => g711::ALAW_SILENCE,
        }
    }

    /// Decodes one code to a linear sample.
    #[must_use]
    pub const fn decode(self, code: u8) -> i16 {
        match self {
            Self::Pcmu => g711::ulaw_to_linear(code),
            Self::Pcma => g711::alaw_to_linear(code),
        }
    }

    /// Encodes one linear sample.
    #[must_use]
    pub const fn encode(self, sample: i16) -> u8 {
        match self {
            Self::Pcmu => g711::linear_to_ulaw(sample),
            Self::Pcma => g711::linear_to_alaw(sample),
        }
    }

    /// The table that turns codes of `self` into codes of `to`; `None` when they are the same.
    #[must_use]
    pub fn transcode_table(self, to: Self) -> Option<&'static [u8; 256]> {
        match (self, to) {
            (Self::Pcmu, Self::Pcma) => Some(&g711::ULAW_TO_ALAW),
            (Self::Pcma, Self::Pcmu) => Some(&g711::ALAW_TO_ULAW),
            _ => None,
        }
    }
}
