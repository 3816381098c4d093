//! The bridge's steady path allocates nothing: once two plain (RTP/AVP) legs are bridged and
//! the first packets have built the relay, every further packet is received, rewritten
//! (transcoded when the codecs differ) and sent with no heap allocation on any thread.
//! See docs/architecture.md (the bridge step of a call) and `src/media/leg.rs`.
//!
//! This binary's global allocator is dhat's counting allocator (testing mode: counts only, no
//! file written), so the count covers the tokio worker threads the legs run on. rgsd's own
//! binary uses mimalloc; which allocator sits below does not change whether code allocates.
//!
//! Out of scope: SRTP legs. webrtc-srtp returns each protected or unprotected packet in a new
//! buffer, so an SRTP bridge allocates per packet by design of that crate.
// Test harness: a failed unwrap is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use rgsd::config::model::SrtpPolicy;
use rgsd::media::{LegOptions, MAX_PACKET, MediaEngine, PortPool};
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WARM_UP: u16 = 200;
const MEASURED: u16 = 1_000;
/// Measured windows of `MEASURED` packets per bridge.
const WINDOWS: usize = 3;

/// An SDP offer from a phone at `port` offering one static payload type.
fn offer(port: u16, payload_type: u8) -> String {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {payload_type} 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// The RTP port in rgsd's SDP answer.
fn answered_port(answer: &str) -> u16 {
    let m = answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .expect("an audio stream in the answer");
    m.split(' ').next().unwrap().parse().unwrap()
}

/// 256 different 20 ms PCMU packets, built before counting starts.
fn packets() -> Vec<Vec<u8>> {
    (0..256u16)
        .map(|k| {
            let payload: Vec<u8> = (0..160u16)
                .map(|i| u8::try_from((i * 37 + k) % 256).unwrap())
                .collect();
            RtpPacketBuilder::new()
                .payload_type(0)
                .ssrc(0xCA11)
                .sequence(Seq::from(k))
                .timestamp(u32::from(k) * 160)
                .payload(&payload)
                .build()
                .unwrap()
        })
        .collect()
}

/// Sends `count` packets from `caller` to `to`, each received by `agent` before the next goes
/// (so none is lost to a full socket buffer), starting at packet number `first`. Allocates
/// nothing itself: stack buffers and blocking std sockets.
fn relay_through(
    caller: &UdpSocket,
    agent: &UdpSocket,
    to: SocketAddr,
    input: &[Vec<u8>],
    first: u16,
    count: u16,
    agent_payload_type: u8,
) {
    let mut buf = [0u8; MAX_PACKET];
    for k in first..first + count {
        caller
            .send_to(&input[usize::from(k) % input.len()], to)
            .unwrap();
        let (n, _) = agent.recv_from(&mut buf).expect("the packet was relayed");
        let got = RtpReader::new(&buf[..n]).unwrap();
        assert_eq!(got.payload_type(), agent_payload_type);
        assert_eq!(got.payload().len(), 160);
    }
}

/// Bridges a PCMU caller with an agent offering `agent_payload_type`, warms the bridge up and
/// returns the heap allocations (all threads) counted in each of `WINDOWS` consecutive windows
/// of `MEASURED` relayed packets.
async fn allocations_while_relaying(
    engine: &MediaEngine,
    agent_payload_type: u8,
) -> [u64; WINDOWS] {
    let caller = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let agent = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    agent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let caller_offer = offer(caller.local_addr().unwrap().port(), 0);
    let agent_offer = offer(agent.local_addr().unwrap().port(), agent_payload_type);
    let (caller_leg, caller_answer) = engine
        .answer(caller_offer.as_bytes(), SrtpPolicy::Off)
        .await
        .unwrap();
    let (agent_leg, _) = engine
        .answer(agent_offer.as_bytes(), SrtpPolicy::Off)
        .await
        .unwrap();
    caller_leg.bridge(&agent_leg).unwrap();
    let to = SocketAddr::new(LOOPBACK, answered_port(&caller_answer));
    let input = packets();
    // The bridge command may still be in flight: send until the first packet comes through.
    let mut buf = [0u8; MAX_PACKET];
    agent
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut bridged = false;
    for _ in 0..100 {
        caller.send_to(&input[0], to).unwrap();
        if agent.recv_from(&mut buf).is_ok() {
            bridged = true;
            break;
        }
    }
    assert!(bridged, "the bridge never relayed a packet");
    agent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    relay_through(&caller, &agent, to, &input, 1, WARM_UP, agent_payload_type);
    let mut counts = [0; WINDOWS];
    let mut next = 1 + WARM_UP;
    for count in &mut counts {
        let before = dhat::HeapStats::get().total_blocks;
        relay_through(
            &caller,
            &agent,
            to,
            &input,
            next,
            MEASURED,
            agent_payload_type,
        );
        *count = dhat::HeapStats::get().total_blocks - before;
        next += MEASURED;
    }
    caller_leg.close().await;
    agent_leg.close().await;
    counts
}

// The test thread blocks on std sockets while the legs' tasks relay on the two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_call_relays_without_allocating() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // A window of ports from a free one up: ports held by other programs are skipped.
    let first = UdpSocket::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .min(65_535 - 64);
    let pool = PortPool::new(LOOPBACK, first..=first + 63);
    let engine = MediaEngine::new(pool, LOOPBACK, LegOptions::default());
    // A per-packet allocation (or one every few packets, every counting batch…) shows in every
    // window. What the process initialises once, lazily, on whichever thread first needs it
    // (parking_lot's global table of parked threads, at the first contended lock of a tokio
    // worker; a thread's bookkeeping when it starts) lands in at most one window, at a moment
    // the scheduling decides: so a window with none proves the steady path allocates nothing.
    for (path, agent_payload_type) in [("PCMU→PCMU", 0), ("PCMU→PCMA", 8)] {
        let counts = allocations_while_relaying(&engine, agent_payload_type).await;
        assert!(
            counts.contains(&0),
            "{path}: heap allocations in each window of {MEASURED} relayed packets: {counts:?}"
        );
    }
}
