//! RTP numbering for what a leg sends, and the relay that forwards one leg's packets to another.
//!
//! - [`RtpStream`]: a leg's outgoing stream. One SSRC for the leg's whole life; sequence numbers
//!   and timestamps run on without a jump across prompt → music → bridge, and the marker bit is
//!   set on the first packet after each change of source.
//! - [`Relay`]: one direction of a bridge. It splices the other leg's packets onto this leg's
//!   stream (rewriting SSRC, sequence number and timestamp by a fixed offset per source, so loss
//!   and reordering carry through), transcodes PCMU ↔ PCMA by table lookup, passes
//!   telephone-event, and drops anything else. It allocates nothing per packet.
//!
//! Pure: bytes in, bytes out. Packets are read and written with `rtp-rs`.

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

use super::codec::Codec;
use super::sdp::Negotiated;

/// Largest RTP packet rgsd reads or writes (fits an Ethernet MTU).
pub const MAX_PACKET: usize = 1_500;

/// The payload formats of one negotiated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

impl From<&Negotiated> for StreamFormat {
    fn from(n: &Negotiated) -> Self {
        Self {
            codec: n.codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
        }
    }
}

/// A leg's outgoing RTP numbering.
#[derive(Debug, Clone)]
pub struct RtpStream {
    ssrc: u32,
    next_seq: u16,
    next_ts: u32,
    /// Set by [`RtpStream::begin_source`]; the next packet carries the marker bit.
    marker: bool,
    /// Counts source changes, so a relay sees that something else was sent in between.
    epoch: u32,
}

impl RtpStream {
    /// A stream with the given SSRC and first sequence number and timestamp.
    #[must_use]
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32) -> Self {
        Self {
            ssrc,
            next_seq: first_seq,
            next_ts: first_ts,
            marker: true,
            epoch: 0,
        }
    }

    /// A stream with a random SSRC, sequence number and timestamp (RFC 3550 §5.1).
    #[must_use]
    pub fn random() -> Self {
        Self::new(fastrand::u32(..), fastrand::u16(..), fastrand::u32(..))
    }

    /// The sequence number the next packet gets.
    #[cfg(test)]
    #[must_use]
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// The timestamp the next frame gets.
    #[cfg(test)]
    #[must_use]
    pub fn next_timestamp(&self) -> u32 {
        self.next_ts
    }

    /// Starts a new source (prompt, music, bridge): the next packet is marked. Returns the new
    /// epoch.
    pub fn begin_source(&mut self) -> u32 {
        self.marker = true;
        self.epoch = self.epoch.wrapping_add(1);
        self.epoch
    }

    /// Moves the timestamp on over a time nothing was sent (`ticks` at 8 kHz).
    pub fn skip(&mut self, ticks: u32) {
        self.next_ts = self.next_ts.wrapping_add(ticks);
    }

    /// Writes the next packet of a locally played source (`ticks` samples of audio) into `buf`;
    /// returns its length, or `None` when `buf` is too small.
    pub fn write(
        &mut self,
        payload_type: u8,
        payload: &[u8],
        ticks: u32,
        buf: &mut [u8],
    ) -> Option<usize> {
        let len = RtpPacketBuilder::new()
            .payload_type(payload_type)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.next_seq))
            .timestamp(self.next_ts)
            .marked(self.marker)
            .payload(payload)
            .build_into(buf)
            .ok()?;
        self.marker = false;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_ts = self.next_ts.wrapping_add(ticks);
        Some(len)
    }
}

/// One direction of a bridge: the other leg's packets, rewritten for this leg's stream.
#[derive(Debug)]
pub struct Relay {
    from: StreamFormat,
    to: StreamFormat,
    transcode: Option<&'static [u8; 256]>,
    /// The source being spliced: (its SSRC, the stream epoch it was spliced at).
    source: Option<(u32, u32)>,
    seq_offset: u16,
    ts_offset: u32,
    /// Transcoded payload; reused for every packet.
    scratch: [u8; MAX_PACKET],
}

impl Relay {
    /// Relays packets of format `from` (the receiving leg's negotiation) to a stream of format
    /// `to` (the sending leg's).
    #[must_use]
    pub fn new(from: StreamFormat, to: StreamFormat) -> Self {
        Self {
            from,
            to,
            transcode: from.codec.transcode_table(to.codec),
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            scratch: [0; MAX_PACKET],
        }
    }

    /// The (from, to) formats this relay was built for.
    #[must_use]
    pub fn formats(&self) -> (StreamFormat, StreamFormat) {
        (self.from, self.to)
    }

    /// Rewrites `packet` for `out` into `buf`; returns the length to send, or `None` when the
    /// packet is not RTP, or carries a payload the other side did not negotiate.
    pub fn forward(&mut self, packet: &[u8], out: &mut RtpStream, buf: &mut [u8]) -> Option<usize> {
        let reader = RtpReader::new(packet).ok()?;
        let payload_type = reader.payload_type();
        let is_audio = payload_type == self.from.payload_type;
        let out_type = if is_audio {
            self.to.payload_type
        } else if self.from.telephone_event == Some(payload_type) {
            // An event the far side cannot receive is dropped (no in-band regeneration).
            self.to.telephone_event?
        } else {
            return None;
        };
        let ssrc = reader.ssrc();
        let in_seq = u16::from(reader.sequence_number());
        let in_ts = reader.timestamp();
        if self.source != Some((ssrc, out.epoch)) {
            let epoch = out.begin_source();
            self.source = Some((ssrc, epoch));
            self.seq_offset = out.next_seq.wrapping_sub(in_seq);
            self.ts_offset = out.next_ts.wrapping_sub(in_ts);
        }
        let seq = in_seq.wrapping_add(self.seq_offset);
        let ts = in_ts.wrapping_add(self.ts_offset);
        let marker = reader.mark() || out.marker;
        let payload = reader.payload();
        let payload: &[u8] = match (is_audio, self.transcode) {
            (true, Some(table)) => {
                let n = payload.len().min(MAX_PACKET);
                for (o, &i) in self.scratch[..n].iter_mut().zip(payload) {
                    *o = table[usize::from(i)];
                }
                &self.scratch[..n]
            }
            _ => payload,
        };
        let len = RtpPacketBuilder::new()
            .payload_type(out_type)
            .ssrc(out.ssrc)
            .sequence(Seq::from(seq))
            .timestamp(ts)
            .marked(marker)
            .payload(payload)
            .build_into(buf)
            .ok()?;
        out.marker = false;
        // Move the stream on, never back (a late packet keeps its place).
        if is_newer_u16(seq, out.next_seq) || seq == out.next_seq {
            out.next_seq = seq.wrapping_add(1);
        }
        if is_audio {
            // G.711: one byte per sample.
            let end = ts.wrapping_add(u32::try_from(payload.len()).unwrap_or(0));
            if is_newer_u32(end, out.next_ts) {
                out.next_ts = end;
            }
        }
        Some(len)
    }
}

fn is_newer_u16(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

fn is_newer_u32(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::TelephoneEvent;

    fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(ssrc)
            .sequence(Seq::from(seq))
            .timestamp(ts)
            .marked(marker)
            .payload(payload)
            .build()
            .unwrap()
    }

    const PCMU: StreamFormat = StreamFormat {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };
    const PCMA: StreamFormat = StreamFormat {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event: Some(96),
    };

    #[test]
    fn a_stream_numbers_frames_and_marks_each_new_source() {
        let mut s = RtpStream::new(0xABCD, 65_535, 1_000);
        let mut buf = [0u8; MAX_PACKET];
        let read = |len: usize, buf: &[u8]| {
            let r = RtpReader::new(&buf[..len]).unwrap();
            (
                u16::from(r.sequence_number()),
                r.timestamp(),
                r.mark(),
                r.ssrc(),
            )
        };
        let n = s.write(0, &[0xFF; 160], 160, &mut buf).unwrap();
        assert_eq!(read(n, &buf), (65_535, 1_000, true, 0xABCD));
        let n = s.write(0, &[0xFF; 160], 160, &mut buf).unwrap();
        assert_eq!(read(n, &buf), (0, 1_160, false, 0xABCD));
        s.begin_source();
        s.skip(320);
        let n = s.write(0, &[0xFF; 160], 160, &mut buf).unwrap();
        assert_eq!(read(n, &buf), (1, 1_640, true, 0xABCD));
    }

    #[test]
    fn relay_rewrites_headers_and_transcodes_both_ways() {
        // Caller speaks PCMU, agent PCMA. Each leg has its own outgoing stream, already used by
        // a prompt (caller) and nothing (agent).
        let mut to_agent = Relay::new(PCMU, PCMA);
        let mut to_caller = Relay::new(PCMA, PCMU);
        let mut caller_out = RtpStream::new(111, 500, 80_000);
        let mut agent_out = RtpStream::new(222, 9_000, 7);
        let mut buf = [0u8; MAX_PACKET];
        let tone: Vec<u8> = (0..160).map(|i| Codec::Pcmu.encode(i * 100)).collect();
        caller_out.write(0, &tone, 160, &mut buf).unwrap(); // the prompt's last frame

        // Caller → agent: two frames, µ-law in, A-law out, agent's SSRC and numbering.
        for k in 0..2u16 {
            let p = packet(
                0,
                0xCA11,
                40_000 + k,
                3_000_000 + 160 * u32::from(k),
                k == 0,
                &tone,
            );
            let n = to_agent.forward(&p, &mut agent_out, &mut buf).unwrap();
            let r = RtpReader::new(&buf[..n]).unwrap();
            assert_eq!(r.ssrc(), 222);
            assert_eq!(r.payload_type(), 8);
            assert_eq!(u16::from(r.sequence_number()), 9_000 + k);
            assert_eq!(r.timestamp(), 7 + 160 * u32::from(k));
            assert_eq!(r.mark(), k == 0);
            let want: Vec<u8> = tone
                .iter()
                .map(|&c| crate::media::g711::ULAW_TO_ALAW[usize::from(c)])
                .collect();
            assert_eq!(r.payload(), &want[..]);
        }
        // Agent → caller: continues the caller's stream right after the prompt, marked.
        let alaw: Vec<u8> = (0..160).map(|i| Codec::Pcma.encode(-(i * 90))).collect();
        let p = packet(8, 0xA6E7, 12, 55, false, &alaw);
        let n = to_caller.forward(&p, &mut caller_out, &mut buf).unwrap();
        let r = RtpReader::new(&buf[..n]).unwrap();
        assert_eq!((r.ssrc(), r.payload_type()), (111, 0));
        assert_eq!(u16::from(r.sequence_number()), 501);
        assert_eq!(r.timestamp(), 80_160);
        assert!(r.mark(), "first relayed packet after the prompt is marked");
        for (o, i) in r.payload().iter().zip(&alaw) {
            assert_eq!(*o, crate::media::g711::ALAW_TO_ULAW[usize::from(*i)]);
        }
        // A lost packet stays a gap; a late one keeps its place without moving the stream back.
        let p = packet(8, 0xA6E7, 14, 55 + 320, false, &alaw);
        let n = to_caller.forward(&p, &mut caller_out, &mut buf).unwrap();
        let r = RtpReader::new(&buf[..n]).unwrap();
        assert_eq!(
            (u16::from(r.sequence_number()), r.timestamp()),
            (503, 80_480)
        );
        let p = packet(8, 0xA6E7, 13, 55 + 160, false, &alaw);
        let n = to_caller.forward(&p, &mut caller_out, &mut buf).unwrap();
        assert_eq!(
            u16::from(RtpReader::new(&buf[..n]).unwrap().sequence_number()),
            502
        );
        assert_eq!(caller_out.next_seq(), 504);
        assert_eq!(caller_out.next_timestamp(), 80_640);

        // The agent's phone restarts with a new SSRC: spliced on, marked, no jump.
        let p = packet(8, 0xBEEF, 60_000, 1, false, &alaw);
        let n = to_caller.forward(&p, &mut caller_out, &mut buf).unwrap();
        let r = RtpReader::new(&buf[..n]).unwrap();
        assert_eq!(
            (u16::from(r.sequence_number()), r.timestamp(), r.mark()),
            (504, 80_640, true)
        );
        // Music played in between is noticed: the next relayed packet splices after it.
        caller_out.begin_source();
        caller_out.write(0, &tone, 160, &mut buf).unwrap();
        let p = packet(8, 0xBEEF, 60_001, 161, false, &alaw);
        let n = to_caller.forward(&p, &mut caller_out, &mut buf).unwrap();
        let r = RtpReader::new(&buf[..n]).unwrap();
        assert_eq!(
            (u16::from(r.sequence_number()), r.timestamp(), r.mark()),
            (506, 80_960, true)
        );
    }

    #[test]
    fn relay_maps_telephone_event_and_drops_the_rest() {
        let mut relay = Relay::new(PCMU, PCMA);
        let mut out = RtpStream::new(1, 0, 0);
        let mut buf = [0u8; MAX_PACKET];
        let event = TelephoneEvent {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        let p = packet(101, 9, 1, 800, true, &event);
        let n = relay.forward(&p, &mut out, &mut buf).unwrap();
        let r = RtpReader::new(&buf[..n]).unwrap();
        assert_eq!(r.payload_type(), 96);
        assert_eq!(r.payload(), &event[..], "events are not transcoded");
        assert_eq!(
            out.next_timestamp(),
            0,
            "events do not move the audio clock"
        );
        // Comfort noise, unknown types and garbage are dropped.
        assert_eq!(
            relay.forward(&packet(13, 9, 2, 800, false, &[40]), &mut out, &mut buf),
            None
        );
        assert_eq!(relay.forward(&[1, 2, 3], &mut out, &mut buf), None);
        // No telephone-event on the far side: dropped.
        let mut plain = Relay::new(
            PCMU,
            StreamFormat {
                telephone_event: None,
                ..PCMA
            },
        );
        assert_eq!(plain.forward(&p, &mut out, &mut buf), None);
        // Same codec both ways: the payload passes untouched.
        let mut same = Relay::new(PCMU, PCMU);
        let audio = [0x12u8; 160];
        let n = same
            .forward(&packet(0, 9, 3, 960, false, &audio), &mut out, &mut buf)
            .unwrap();
        assert_eq!(RtpReader::new(&buf[..n]).unwrap().payload(), &audio[..]);
    }
}
