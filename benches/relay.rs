//! The bridge's per-packet path: read an RTP packet from one leg, rewrite SSRC, sequence number
//! and timestamp for the other leg's stream, transcode PCMU → PCMA, write the packet.
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

criterion_group!(benches, relay);
criterion_main!(benches);
