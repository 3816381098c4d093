//! SRTP (RFC 3711) for one leg: protects what rgsd sends with its own key and authenticates
//! and decrypts what the peer sends with the peer's, the keys settled by SDES (`media::sdp`).
//!
//! The cipher is `webrtc-srtp`'s (AES-128 counter mode, HMAC-SHA1 with an 80- or 32-bit tag);
//! received packets go through a replay window of [`REPLAY_WINDOW`] packets. A packet that fails
//! authentication, or a replay, is refused: the leg drops it and counts it
//! (`rgsd_srtp_auth_failures_total`).
//!
//! Only legs with SRTP have a session; plain legs never reach this module.

use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::sdp::{CryptoSuite, MasterKey, Sdes};

/// Packets the replay window covers (RFC 3711 §3.3.2 asks for at least 64).
pub(crate) const REPLAY_WINDOW: usize = 128;

/// Why a received packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SRTP packet refused (authentication failed, replayed or malformed)")]
pub(crate) struct Refused;

/// The two SRTP contexts of one leg (one per direction, as RFC 3711 keeps them).
pub(crate) struct SrtpSession {
    keys: Sdes,
    protect: Context,
    unprotect: Context,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Sdes` prints its keys as `***`.
        f.debug_struct("SrtpSession")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn context(suite: CryptoSuite, key: &MasterKey, replay: bool) -> Option<Context> {
    let option = replay.then(|| srtp_replay_protection(REPLAY_WINDOW));
    Context::new(key.key(), key.salt(), profile(suite), option, None).ok()
}

impl SrtpSession {
    /// The contexts for `keys`; `None` only if the library refuses the key lengths, which the
    /// SDP parser has already checked.
    pub(crate) fn new(keys: Sdes) -> Option<Self> {
        Some(Self {
            keys,
            protect: context(keys.suite, &keys.ours, false)?,
            unprotect: context(keys.suite, &keys.theirs, true)?,
        })
    }

    /// The keys this session was made with.
    pub(crate) fn keys(&self) -> Sdes {
        self.keys
    }

    /// The SRTP packet for the RTP `packet`; `None` when it is not RTP (or the key is worn out
    /// after 2^48 packets).
    pub(crate) fn protect(&mut self, packet: &[u8]) -> Option<Bytes> {
        self.protect.encrypt_rtp(packet).ok()
    }

    /// Authenticates and decrypts the SRTP packet in `buf[..len]` in place; returns the length
    /// of the RTP packet now there.
    ///
    /// # Errors
    /// [`Refused`]: a wrong tag (tampered, or another key), a replay, or not SRTP at all.
    pub(crate) fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Refused> {
        let plain = self
            .unprotect
            .decrypt_rtp(buf.get(..len).ok_or(Refused)?)
            .map_err(|_| Refused)?;
        let n = plain.len();
        buf.get_mut(..n).ok_or(Refused)?.copy_from_slice(&plain);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::MASTER_LEN;
    use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

    fn pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
        let a = MasterKey::random();
        let b = MasterKey::random();
        let alice = SrtpSession::new(Sdes {
            suite,
            ours: a,
            theirs: b,
        })
        .unwrap();
        let bob = SrtpSession::new(Sdes {
            suite,
            ours: b,
            theirs: a,
        })
        .unwrap();
        (alice, bob)
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(0x1234_5678)
            .sequence(Seq::from(seq))
            .timestamp(u32::from(seq) * 160)
            .payload(payload)
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip_both_suites_and_the_payload_is_not_in_clear() {
        for (suite, tag) in [
            (CryptoSuite::AesCm128HmacSha1_80, 10),
            (CryptoSuite::AesCm128HmacSha1_32, 4),
        ] {
            let (mut alice, mut bob) = pair(suite);
            let payload = [0x5Au8; 160];
            for seq in [65_530u16, 65_535, 0, 1] {
                let plain = rtp(seq, &payload);
                let sealed = alice.protect(&plain).unwrap();
                assert_eq!(sealed.len(), plain.len() + tag, "{suite:?}");
                // The header stays readable, the payload does not.
                assert_eq!(sealed[..12], plain[..12]);
                assert!(!sealed.windows(16).any(|w| w == [0x5A; 16]));
                let mut buf = [0u8; 1_500];
                buf[..sealed.len()].copy_from_slice(&sealed);
                let n = bob.unprotect(&mut buf, sealed.len()).unwrap();
                assert_eq!(&buf[..n], &plain[..], "{suite:?} seq {seq}");
                let r = RtpReader::new(&buf[..n]).unwrap();
                assert_eq!(r.payload(), &payload[..]);
            }
        }
    }

    #[test]
    fn tampered_replayed_and_wrongly_keyed_packets_are_refused() {
        let (mut alice, mut bob) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let sealed = alice.protect(&rtp(7, &[1; 160])).unwrap();
        let mut buf = [0u8; 1_500];
        // One flipped bit in the payload.
        buf[..sealed.len()].copy_from_slice(&sealed);
        buf[40] ^= 0x01;
        assert_eq!(bob.unprotect(&mut buf, sealed.len()), Err(Refused));
        // The genuine packet still passes (the tampered one did not move the replay window)...
        buf[..sealed.len()].copy_from_slice(&sealed);
        assert!(bob.unprotect(&mut buf, sealed.len()).is_ok());
        // ...once.
        buf[..sealed.len()].copy_from_slice(&sealed);
        assert_eq!(bob.unprotect(&mut buf, sealed.len()), Err(Refused));
        // Plain RTP, and a packet under another key.
        let plain = rtp(8, &[1; 160]);
        buf[..plain.len()].copy_from_slice(&plain);
        assert_eq!(bob.unprotect(&mut buf, plain.len()), Err(Refused));
        let (mut mallory, _) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let forged = mallory.protect(&rtp(9, &[1; 160])).unwrap();
        buf[..forged.len()].copy_from_slice(&forged);
        assert_eq!(bob.unprotect(&mut buf, forged.len()), Err(Refused));
        // Too short to carry a tag.
        assert_eq!(bob.unprotect(&mut buf, 5), Err(Refused));
    }

    #[test]
    fn keys_never_print() {
        let key = MasterKey::from_bytes([0xAB; MASTER_LEN]);
        let (alice, _) = pair(CryptoSuite::AesCm128HmacSha1_32);
        let text = format!("{key:?} {alice:?}");
        assert!(
            !text.contains("171") && !text.contains("AB") && text.contains("***"),
            "{text}"
        );
    }
}
