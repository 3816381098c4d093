//! The bridge's per-packet path: read an RTP packet from one leg, rewrite SSRC, sequence number
//! and timestamp for the other leg's stream, transcode PCMU → PCMA, write the packet.
//!
//! `relay_srtp_to_srtp` adds what an SRTP bridge does around it (`media::srtp`, webrtc-srtp):
//! authenticate and decrypt the packet with the caller's key, forward, encrypt with the agent
//! leg's key (AES_CM_128_HMAC_SHA1_80 both ways). Plain legs never take that path.
//!
//! Run: `cargo bench --bench relay` (add `-- --warm-up-time 1 --measurement-time 3` for a short run).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rgsd::media::Codec;
use rgsd::media::{MAX_PACKET, Relay, RtpStream, StreamFormat};
use rtp_rs::{RtpPacketBuilder, Seq};

const PCMU: StreamFormat = StreamFormat {
    codec: Codec::Pcmu,
    payload_type: 0,
    telephone_event: Some(101),
};
const PCMA: StreamFormat = StreamFormat {
    codec: Codec::Pcma,
    payload_type: 8,
    telephone_event: Some(101),
};

/// 256 consecutive 20 ms PCMU packets from one phone.
fn packets() -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..160u8).map(|i| i.wrapping_mul(37)).collect();
    (0..256u16)
        .map(|k| {
            RtpPacketBuilder::new()
                .payload_type(0)
                .ssrc(0xCA11)
                .sequence(Seq::from(k))
                .timestamp(u32::from(k) * 160)
                .payload(&payload)
                .build()
                .expect("a valid packet")
        })
        .collect()
}

fn relay(c: &mut Criterion) {
    let input = packets();
    let mut buf = [0u8; MAX_PACKET];
    for (name, to) in [("relay_pcmu_to_pcma", PCMA), ("relay_pcmu_to_pcmu", PCMU)] {
        let mut relay = Relay::new(PCMU, to);
        let mut out = RtpStream::new(0xA6E7, 1, 1);
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                let packet = &input[i % input.len()];
                i = i.wrapping_add(1);
                black_box(relay.forward(black_box(packet), &mut out, &mut buf))
            });
        });
    }
}

fn relay_srtp(c: &mut Criterion) {
    use webrtc_srtp::context::Context;
    use webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80;
    let (key, salt) = ([7u8; 16], [9u8; 14]);
    let new = || Context::new(&key, &salt, Aes128CmHmacSha1_80, None, None).expect("valid key");
    // One packet, decrypted again and again: without a replay window (a bitmap check, not
    // measured here) the same sequence number keeps the rollover counter still, so every
    // iteration authenticates and decrypts for real.
    let mut phone = new();
    let plain = RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(0xCA11)
        .sequence(Seq::from(7))
        .timestamp(7 * 160)
        .payload(&[0x55; 160])
        .build()
        .expect("a valid packet");
    let sealed = phone.encrypt_rtp(&plain).expect("encrypts").to_vec();
    let mut unprotect = new();
    let mut protect = new();
    let mut relay = Relay::new(PCMU, PCMU);
    let mut out = RtpStream::new(0xA6E7, 1, 1);
    let mut rx = [0u8; MAX_PACKET];
    let mut tx = [0u8; MAX_PACKET];
    c.bench_function("relay_srtp_to_srtp", |b| {
        b.iter(|| {
            let plain = unprotect
                .decrypt_rtp(black_box(&sealed))
                .expect("authenticates");
            rx[..plain.len()].copy_from_slice(&plain);
            let n = relay
                .forward(&rx[..plain.len()], &mut out, &mut tx)
                .unwrap_or(0);
            protect
                .encrypt_rtp(&tx[..n])
                .map_or(0, |p| black_box(p.len()))
        });
    });
}

criterion_group!(benches, relay, relay_srtp);
criterion_main!(benches);
