//! Any bytes through TCP framing, fed in two chunks: never a panic, never a frame larger than
//! the cap.
//!
//! 2026-11-23: 2.45 M runs in 46 s (`cargo +nightly fuzz run -s none sip_stream_frame`), no crash.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rgsd::sip::message::MAX_MESSAGE_SIZE;
use rgsd::sip::transport::next_frame;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::from(&data[..split]);
    for chunk in [&data[split..], &[][..]] {
        buf.extend_from_slice(chunk);
        for _ in 0..64 {
            match next_frame(&mut buf) {
                Ok(Some(frame)) => assert!(frame.len() <= MAX_MESSAGE_SIZE),
                Ok(None) | Err(_) => break,
            }
        }
    }
});
