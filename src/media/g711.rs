//! G.711 µ-law (PCMU) and A-law (PCMA): 16-bit linear ↔ 8-bit codes, and the 256-entry tables the
//! relay uses to transcode one law into the other without touching linear samples.
//!
//! Pure. The algorithms are the ITU-T G.711 segment encodings as in the public-domain Sun
//! reference (`g711.c`), written as `const fn` so that every table is built at compile time.
//! Written here rather than taken from a crate: they are a few lines each, the tables need to be
//! `const`, and the tests below pin them to the standard's known values.

/// The µ-law bias added before the segment search.
const ULAW_BIAS: i32 = 0x84;
/// The largest magnitude µ-law represents before clipping.
const ULAW_CLIP: i32 = 32_635;

/// Encodes one 16-bit linear sample as µ-law.
// Bit-level codec arithmetic in `const fn`, where `From`/`TryFrom` are not available: every cast
// here is on a value whose range the comments prove (codes are 0..=255, segments 0..=7,
// magnitudes ≤ 32_767).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
#[must_use]
pub(crate) const fn linear_to_ulaw(sample: i16) -> u8 {
    let s = sample as i32;
    let sign: i32 = if s < 0 { 0x80 } else { 0 };
    let mut mag = if s < 0 { -s } else { s };
    if mag > ULAW_CLIP {
        mag = ULAW_CLIP;
    }
    mag += ULAW_BIAS;
    // mag is in 0x84..=0x7FFF, so its top bit is bit 7 to bit 14: exponent 0 to 7.
    let top_bit = 31 - (mag as u32).leading_zeros() as i32;
    let exponent = top_bit - 7;
    let mantissa = (mag >> (exponent + 3)) & 0x0F;
    let code = !(sign | (exponent << 4) | mantissa);
    (code & 0xFF) as u8
}

/// Decodes one µ-law code to a 16-bit linear sample.
// Bit-level codec arithmetic in `const fn`, where `From`/`TryFrom` are not available: every cast
// here is on a value whose range the comments prove (codes are 0..=255, segments 0..=7,
// magnitudes ≤ 32_767).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
#[must_use]
pub const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // magnitude ≤ 32124, so it fits an i16.
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Upper ends of the eight A-law segments, on the 13-bit magnitude.
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one 16-bit linear sample as A-law.
// Bit-level codec arithmetic in `const fn`, where `From`/`TryFrom` are not available: every cast
// here is on a value whose range the comments prove (codes are 0..=255, segments 0..=7,
// magnitudes ≤ 32_767).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
#[must_use]
pub(crate) const fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let mut segment = 0;
    while segment < 8 && pcm > ALAW_SEGMENT_END[segment] {
        segment += 1;
    }
    let code = if segment >= 8 {
        0x7F ^ mask
    } else {
        let shift = if segment < 2 { 1 } else { segment as i32 };
        (((segment as i32) << 4) | ((pcm >> shift) & 0x0F)) ^ mask
    };
    (code & 0xFF) as u8
}

/// Decodes one A-law code to a 16-bit linear sample.
// Bit-level codec arithmetic in `const fn`, where `From`/`TryFrom` are not available: every cast
// here is on a value whose range the comments prove (codes are 0..=255, segments 0..=7,
// magnitudes ≤ 32_767).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
#[must_use]
pub(crate) const fn alaw_to_linear(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= segment - 1;
        }
    }
    // t ≤ 32256, so it fits an i16.
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

// Bit-level codec arithmetic in `const fn`, where `From`/`TryFrom` are not available: every cast
// here is on a value whose range the comments prove (codes are 0..=255, segments 0..=7,
// magnitudes ≤ 32_767).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = linear_to_alaw(ulaw_to_linear(i as u8));
        i += 1;
    }
    table
}

// Bit-level codec arithmetic in `const fn`, where `From`/`TryFrom` are not available: every cast
// here is on a value whose range the comments prove (codes are 0..=255, segments 0..=7,
// magnitudes ≤ 32_767).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = linear_to_ulaw(alaw_to_linear(i as u8));
        i += 1;
    }
    table
}

/// µ-law code → A-law code of the same level.
pub(crate) static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
/// A-law code → µ-law code of the same level.
pub(crate) static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

/// The µ-law code of silence.
#[cfg(test)]
pub(crate) const ULAW_SILENCE: u8 = linear_to_ulaw(0);
/// The A-law code of silence.
#[cfg(test)]
pub(crate) const ALAW_SILENCE: u8 = linear_to_alaw(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        // ITU-T G.711 table 2a: zero is 0xFF, full scale positive 0x80, negative 0x00.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        // Segment boundaries from the Sun reference decoder.
        assert_eq!(ulaw_to_linear(0xEF), 132);
        assert_eq!(ulaw_to_linear(0x8F), 16_764);
        assert_eq!(linear_to_ulaw(1_000), 0xCE);
        assert_eq!(linear_to_ulaw(-1_000), 0x4E);
    }

    #[test]
    fn alaw_known_values() {
        // ITU-T G.711 table 1a: the even bits are inverted, so zero is 0xD5.
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
        assert_eq!(linear_to_alaw(1_000), 0xFA);
        assert_eq!(alaw_to_linear(0xFA), 1_008);
    }

    #[test]
    fn every_code_decodes_to_a_level_that_encodes_back_to_itself() {
        for code in 0..=255u8 {
            let u = ulaw_to_linear(code);
            // 0x7F is µ-law's "negative zero": it decodes to 0, which encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(linear_to_ulaw(u), code, "µ-law {code:#04x}");
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_segment_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let x = i32::from(s);
            let err_u = (i32::from(ulaw_to_linear(linear_to_ulaw(s))) - x).abs();
            let err_a = (i32::from(alaw_to_linear(linear_to_alaw(s))) - x).abs();
            // Half the top segment's step (1024 for µ-law, 512 for A-law) plus clipping headroom.
            let bound_u = (x.abs() / 16).max(8) + 700 * i32::from(x.abs() > 32_000);
            let bound_a = (x.abs() / 16).max(16) + 600 * i32::from(x.abs() > 32_000);
            assert!(err_u <= bound_u, "µ-law error {err_u} at {s}");
            assert!(err_a <= bound_a, "A-law error {err_a} at {s}");
        }
    }

    #[test]
    fn transcoding_tables_keep_the_level() {
        for code in 0..=255u8 {
            let level = i32::from(ulaw_to_linear(code));
            let via_a = i32::from(alaw_to_linear(ULAW_TO_ALAW[usize::from(code)]));
            assert!(
                (level - via_a).abs() <= (level.abs() / 16).max(16),
                "{code:#04x}"
            );
        }
        assert_eq!(ULAW_TO_ALAW[usize::from(ULAW_SILENCE)], ALAW_SILENCE);
        assert_eq!(i32::from(ulaw_to_linear(ALAW_TO_ULAW[0xAA])), 32_124);
    }
}
