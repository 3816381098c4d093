//! DTMF digits from the three places a caller's key press can arrive:
//!
//! - RFC 4733 `telephone-event` RTP packets ([`TelephoneEventReceiver`]): a start packet,
//!   updates, then the end packet sent three times; one key press gives one [`Digit`].
//! - SIP INFO bodies ([`parse_info_body`]): `application/dtmf-relay` and `application/dtmf`.
//! - In-band tones in the audio ([`InbandDetector`], Goertzel), used when the peer negotiated
//!   no telephone-event.
//!
//! Pure: times come in as parameters.

use tokio::time::Instant;

/// A key press, with when rgsd saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub key: char,
    pub at: Instant,
}

/// The 16 keys in RFC 4733 event-code order (0-9, *, #, A-D).
const EVENT_KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The key of an RFC 4733 event code; `None` for non-DTMF events (flash, tones).
#[must_use]
pub(crate) fn key_of_event(code: u8) -> Option<char> {
    EVENT_KEYS.get(usize::from(code)).copied()
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    /// In timestamp units since the event began.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first four bytes of a payload; `None` when it is shorter.
    #[must_use]
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The four payload bytes.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// Turns a stream of telephone-event packets into digits.
///
/// Every packet of one key press carries the same RTP timestamp (the event's start), so the
/// timestamp identifies the press: the first end packet for a timestamp yields the digit and the
/// two retransmissions are ignored. If a new press starts while the previous one never showed an
/// end packet (all three lost), the previous one is reported then.
#[derive(Debug, Default)]
pub(crate) struct TelephoneEventReceiver {
    /// The press in progress: (RTP timestamp, key, when its first packet arrived).
    current: Option<(u32, char, Instant)>,
    /// Timestamp of the last press reported, to drop its retransmitted end packets.
    reported: Option<u32>,
}

impl TelephoneEventReceiver {
    #[must_use]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet (its RTP timestamp and payload); returns a digit when a press is complete.
    pub(crate) fn on_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Option<Digit> {
        let event = TelephoneEvent::parse(payload)?;
        if self.reported == Some(timestamp) {
            return None;
        }
        let mut out = None;
        match self.current {
            Some((ts, _, _)) if ts == timestamp => {}
            previous => {
                // A new press: report an older one whose end packets were all lost.
                if let Some((ts, key, at)) = previous {
                    self.reported = Some(ts);
                    out = Some(Digit { key, at });
                }
                self.current = key_of_event(event.event).map(|key| (timestamp, key, now));
            }
        }
        if event.end
            && let Some((ts, key, at)) = self.current.take()
        {
            self.reported = Some(ts);
            // Two digits from one packet: the older press (whose end packets were all lost) is
            // reported now; this one stays pending and is reported by its next end packet (an
            // end packet is sent three times).
            if out.is_some() {
                self.current = Some((ts, key, at));
                self.reported = None;
            } else {
                out = Some(Digit { key, at });
            }
        }
        out
    }
}

/// Parses a SIP INFO body carrying a key press; `content_type` is the media type without
/// parameters, any case.
///
/// - `application/dtmf-relay`: `Signal=5\r\nDuration=160` (Signal may be a digit, `*`, `#`,
///   `A`-`D`, or the event number 10/11 some phones send for `*`/`#`).
/// - `application/dtmf`: the key itself, e.g. `5`.
#[must_use]
pub(crate) fn parse_info_body(content_type: &str, body: &str) -> Option<char> {
    let content_type = content_type.trim();
    if content_type.eq_ignore_ascii_case("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("signal") {
                return None;
            }
            signal_key(value.trim())
        })
    } else if content_type.eq_ignore_ascii_case("application/dtmf") {
        signal_key(body.trim())
    } else {
        None
    }
}

fn signal_key(value: &str) -> Option<char> {
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        _ => {
            let mut chars = value.chars();
            let c = chars.next()?.to_ascii_uppercase();
            (chars.next().is_none() && EVENT_KEYS.contains(&c)).then_some(c)
        }
    }
}

/// Row (low) and column (high) frequencies of the DTMF keypad.
const ROWS_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS_HZ: [f32; 4] = [1_209.0, 1_336.0, 1_477.0, 1_633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Goertzel block: 205 samples at 8 kHz (25.6 ms), the classic choice whose bins land close to
/// the eight DTMF frequencies.
const BLOCK: usize = 205;

/// Goertzel coefficients `2·cos(2πk/N)` for the eight frequencies, rows then columns.
fn coefficients() -> [f32; 8] {
    let mut c = [0.0; 8];
    for (i, hz) in ROWS_HZ.iter().chain(COLS_HZ.iter()).enumerate() {
        #[allow(clippy::cast_precision_loss)] // BLOCK = 205 is exact in f32
        let k = (hz * BLOCK as f32 / 8_000.0).round();
        #[allow(clippy::cast_precision_loss)]
        let w = std::f32::consts::TAU * k / BLOCK as f32;
        c[i] = 2.0 * w.cos();
    }
    c
}

/// In-band DTMF detection with the Goertzel algorithm on 8 kHz linear samples.
///
/// Each 205-sample block is tested for one strong row tone plus one strong column tone that
/// together hold most of the block's energy, with limited twist. A key counts once it is seen in
/// two blocks in a row, and again only after a block without it.
#[derive(Debug)]
pub(crate) struct InbandDetector {
    coefficients: [f32; 8],
    block: [f32; BLOCK],
    filled: usize,
    /// Key seen in the previous block.
    candidate: Option<char>,
    /// Key already reported and still held down.
    held: Option<char>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    #[must_use]
    pub(crate) fn new() -> Self {
        Self {
            coefficients: coefficients(),
            block: [0.0; BLOCK],
            filled: 0,
            candidate: None,
            held: None,
        }
    }

    /// Feeds samples (any count, e.g. one 20 ms frame); returns the first new key completed in
    /// them, stamped `now`.
    pub(crate) fn feed(&mut self, samples: &[i16], now: Instant) -> Option<Digit> {
        let mut found = None;
        for &s in samples {
            self.block[self.filled] = f32::from(s) / 32_768.0;
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                let key = self.analyse();
                if key != self.held {
                    // Released, or another key.
                    self.held = None;
                }
                if key.is_some() && key == self.candidate && self.held.is_none() {
                    self.held = key;
                    if found.is_none() {
                        found = key.map(|key| Digit { key, at: now });
                    }
                }
                self.candidate = key;
            }
        }
        found
    }

    /// The key present in the current block, if any.
    fn analyse(&self) -> Option<char> {
        let mut power = [0.0f32; 8];
        for (p, &coefficient) in power.iter_mut().zip(&self.coefficients) {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for &x in &self.block {
                let s0 = x + coefficient * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            *p = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
        }
        let energy: f32 = self.block.iter().map(|x| x * x).sum();
        // Too quiet to be a key press (about -40 dBFS).
        #[allow(clippy::cast_precision_loss)]
        if energy < 1e-4 * BLOCK as f32 {
            return None;
        }
        let strongest = |range: &[f32]| {
            let (i, &p) = range.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
            // The runner-up in the same group must be well below (6 dB).
            let second = range
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &q)| q)
                .fold(0.0, f32::max);
            (p > 4.0 * second).then_some((i, p))
        };
        let (row, row_power) = strongest(&power[..4])?;
        let (col, col_power) = strongest(&power[4..])?;
        // Twist: the two tones within 8 dB of each other.
        if row_power > 6.3 * col_power || col_power > 6.3 * row_power {
            return None;
        }
        // Goertzel power of a full-scale sine over N samples is (N/2)²·A²; energy is N·A²/2.
        // The two tones together must hold most of the block's energy (not speech or noise).
        #[allow(clippy::cast_precision_loss)]
        let tone_energy = (row_power + col_power) * 2.0 / BLOCK as f32;
        if tone_energy < 0.5 * energy {
            return None;
        }
        Some(KEYPAD[row][col])
    }
}

#[cfg(test)]
// Test signal generators: every float-to-integer cast is on a value bounded by construction.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn te(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    }

    #[test]
    fn rfc4733_press_with_three_end_packets_counts_once() {
        let t0 = Instant::now();
        let mut rx = TelephoneEventReceiver::new();
        let ts = 16_000;
        assert_eq!(rx.on_packet(ts, &te(5, false, 0), t0), None);
        assert_eq!(rx.on_packet(ts, &te(5, false, 400), t0), None);
        assert_eq!(rx.on_packet(ts, &te(5, false, 800), t0), None);
        let d = rx.on_packet(ts, &te(5, true, 1_200), t0 + Duration::from_millis(150));
        assert_eq!(d, Some(Digit { key: '5', at: t0 }));
        assert_eq!(rx.on_packet(ts, &te(5, true, 1_200), t0), None);
        assert_eq!(rx.on_packet(ts, &te(5, true, 1_200), t0), None);
        // The next press, same key, new timestamp.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(rx.on_packet(ts + 8_000, &te(5, false, 0), t1), None);
        assert_eq!(
            rx.on_packet(ts + 8_000, &te(5, true, 800), t1),
            Some(Digit { key: '5', at: t1 })
        );
        // *, # and D by event code; a short payload is ignored.
        assert_eq!(
            rx.on_packet(1, &te(10, true, 80), t1).map(|d| d.key),
            Some('*')
        );
        assert_eq!(
            rx.on_packet(2, &te(11, true, 80), t1).map(|d| d.key),
            Some('#')
        );
        assert_eq!(
            rx.on_packet(3, &te(15, true, 80), t1).map(|d| d.key),
            Some('D')
        );
        assert_eq!(rx.on_packet(4, &[1, 2], t1), None);
    }

    #[test]
    fn rfc4733_end_packet_alone_and_lost_end_packets() {
        let t0 = Instant::now();
        let mut rx = TelephoneEventReceiver::new();
        // Start and updates lost: the end packet alone is enough.
        assert_eq!(
            rx.on_packet(100, &te(7, true, 800), t0).map(|d| d.key),
            Some('7')
        );
        assert_eq!(rx.on_packet(100, &te(7, true, 800), t0), None);
        // All end packets of '1' lost: reported when '2' starts.
        assert_eq!(rx.on_packet(200, &te(1, false, 0), t0), None);
        assert_eq!(
            rx.on_packet(300, &te(2, false, 0), t0).map(|d| d.key),
            Some('1')
        );
        assert_eq!(
            rx.on_packet(300, &te(2, true, 400), t0).map(|d| d.key),
            Some('2')
        );
        // Non-DTMF events (flash = 16) give nothing.
        assert_eq!(rx.on_packet(400, &te(16, true, 400), t0), None);
    }

    #[test]
    fn sip_info_bodies() {
        assert_eq!(
            parse_info_body("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            parse_info_body("Application/DTMF-Relay", "signal= #\nDuration=100"),
            Some('#')
        );
        assert_eq!(
            parse_info_body("application/dtmf-relay", "Signal=10"),
            Some('*')
        );
        assert_eq!(
            parse_info_body("application/dtmf-relay", "Signal=b"),
            Some('B')
        );
        assert_eq!(parse_info_body("application/dtmf", "9\r\n"), Some('9'));
        assert_eq!(parse_info_body("application/dtmf", "99"), None);
        assert_eq!(
            parse_info_body("application/dtmf-relay", "Duration=160"),
            None
        );
        assert_eq!(parse_info_body("text/plain", "5"), None);
    }

    /// A deterministic noise source (xorshift), uniform in -1..1.
    struct Noise(u32);
    impl Noise {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            (self.0 as f32 / u32::MAX as f32) * 2.0 - 1.0
        }
    }

    fn dial(keys: &str, noise_amplitude: f32) -> Vec<i16> {
        let mut noise = Noise(0x1234_5678);
        let mut out = Vec::new();
        for key in keys.chars() {
            let (r, c) = (0..16)
                .map(|i| (i / 4, i % 4))
                .find(|&(r, c)| KEYPAD[r][c] == key)
                .unwrap();
            // 80 ms of tone, 80 ms of pause, noise throughout.
            for i in 0..640 {
                let t = i as f32 / 8_000.0;
                let tone = 0.25 * (std::f32::consts::TAU * ROWS_HZ[r] * t).sin()
                    + 0.25 * (std::f32::consts::TAU * COLS_HZ[c] * t).sin();
                out.push(((tone + noise_amplitude * noise.next()) * 32_767.0) as i16);
            }
            for _ in 0..640 {
                out.push((noise_amplitude * noise.next() * 32_767.0) as i16);
            }
        }
        out
    }

    #[test]
    fn goertzel_detects_all_16_keys_in_noise() {
        let keys = "0123456789*#ABCD";
        // Uniform noise of amplitude 0.05 is about -31 dBFS, 20 dB under the tones.
        let audio = dial(keys, 0.05);
        let t0 = Instant::now();
        let mut detector = InbandDetector::new();
        let mut got = String::new();
        for (i, frame) in audio.chunks(160).enumerate() {
            if let Some(d) = detector.feed(frame, t0 + Duration::from_millis(20 * i as u64)) {
                got.push(d.key);
            }
        }
        assert_eq!(got, keys);
    }

    #[test]
    fn goertzel_ignores_noise_and_single_tones() {
        let t0 = Instant::now();
        let mut detector = InbandDetector::new();
        let mut noise = Noise(42);
        let loud_noise: Vec<i16> = (0..8_000)
            .map(|_| (0.5 * noise.next() * 32_767.0) as i16)
            .collect();
        assert_eq!(detector.feed(&loud_noise, t0), None);
        let one_tone: Vec<i16> = (0..8_000)
            .map(|i| {
                (0.5 * (std::f32::consts::TAU * 770.0 * i as f32 / 8_000.0).sin() * 32_767.0) as i16
            })
            .collect();
        assert_eq!(detector.feed(&one_tone, t0), None);
        let music: Vec<i16> = (0..8_000)
            .map(|i| {
                let t = i as f32 / 8_000.0;
                ((0.2 * (std::f32::consts::TAU * 523.25 * t).sin()
                    + 0.2 * (std::f32::consts::TAU * 659.25 * t).sin()
                    + 0.2 * (std::f32::consts::TAU * 783.99 * t).sin())
                    * 32_767.0) as i16
            })
            .collect();
        assert_eq!(detector.feed(&music, t0), None);
    }
}
