//! Music on hold at scale, next to a bare UDP sender of the same packet rate, in one run.
//!
//! For each N: (a) rgsd's [`MediaEngine`] answers N calls on loopback and loops the built-in
//! music on hold to all of them; (b) a bare sender (N tokio UDP sockets, one tight loop per
//! runtime worker, a 172-byte packet every 20 ms per socket, only a sequence number written)
//! sends the same packet rate. Both run in this process on a 2-worker tokio runtime and are
//! measured the same way over the same window, after a warm-up:
//!
//! - the sending side's CPU time: `getrusage(RUSAGE_SELF)` of this process, so the receivers,
//!   which run in a child process, are not counted (the kernel's loopback delivery, done in the
//!   sender's `sendto`, is);
//! - per stream, from the receivers: packets, loss from sequence-number gaps, and the pacing
//!   error `|gap − 20 ms|` between consecutive packets, timed by the kernel (`SO_TIMESTAMPNS`),
//!   so the receivers' own scheduling does not count (they read in batches every 2 ms); plus the receive sockets' overflow drops
//!   (`/proc/net/udp`).
//!
//! Run: `scripts/moh_load.sh [streams[,streams...]] [seconds]` (raises `ulimit -n`), or
//! `cargo bench --bench moh -- 1000,10000 10`. With `--ceiling` (`scripts/moh_load.sh ceiling
//! [start] [seconds]`) it searches each sender's ceiling instead (see [`ceilings`]). Bounded: at most 15,000 streams, 1 to 120 s.
//! Without `--bench` (`cargo test --benches`, nextest) it does nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rgsd::media::PortPool;
use rgsd::media::tone_loop;
use rgsd::media::{LegOptions, MediaEngine};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UdpSocket;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::Instant;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Receive sockets (and threads) in the child process.
const RECEIVERS: usize = 4;
const WARM_UP: Duration = Duration::from_secs(2);
/// 12 bytes of RTP header + 160 bytes of G.711: what a music-on-hold packet weighs.
const PACKET: usize = 172;
const WORKERS: usize = 2;
const PERIOD_MS: u64 = 20;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--receiver") {
        return receiver::run();
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`, `nextest --list`: this is not a test.
        return Ok(());
    }
    let numbers: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let streams: Vec<usize> = match numbers.first() {
        Some(list) => list
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("streams: a number or a comma-separated list")?,
        None => vec![1_000],
    };
    let seconds: u64 = match numbers.get(1) {
        Some(s) => s.parse().context("seconds: a number")?,
        None => 10,
    };
    ensure!(
        streams.iter().all(|&n| (1..=15_000).contains(&n)),
        "1 to 15,000 streams"
    );
    ensure!((1..=120).contains(&seconds), "1 to 120 seconds");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()?;
    if args.iter().any(|a| a == "--ceiling") {
        let start = streams.first().copied().unwrap_or(1_000);
        return runtime.block_on(ceilings(start, Duration::from_secs(seconds)));
    }
    for n in streams {
        runtime.block_on(compare(n, Duration::from_secs(seconds)))?;
    }
    Ok(())
}

/// The two senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    Engine,
    Bare,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Self::Engine => "rgsd media engine",
            Self::Bare => "bare UDP sender",
        }
    }
}

async fn phase(
    sender: Sender,
    n: usize,
    rx: &mut Receivers,
    window: Duration,
) -> anyhow::Result<Phase> {
    match sender {
        Sender::Engine => engine_phase(n, rx, window).await,
        Sender::Bare => bare_phase(n, rx, window).await,
    }
}

/// Packets due from `n` streams over `window`.
fn due(n: usize, window: Duration) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX)) * window.as_secs_f64()
        / (PERIOD_MS as f64 / 1_000.0)
}

/// The ceiling's criteria: p99 pacing error under 2 ms, no loss, no receive-buffer drop, and
/// at least 99.9 % of the packets due arrived (a pacer that falls behind skips frames rather
/// than losing them, so "lost" alone would not show it).
fn holds(p: &Phase, n: usize) -> bool {
    p.rx.p99_us < 2_000
        && p.rx.expected == p.rx.packets
        && p.rx.drops == 0
        && p.rx.packets as f64 >= 0.999 * due(n, p.window)
}

/// For each sender, the most streams that meet [`holds`]: doubling from `start`, then
/// halving the interval down to 5 % (or 50 streams), each step a fresh run of `window`; then
/// both senders again at the lower of the two ceilings, for the CPU per stream side by side.
#[allow(clippy::cast_precision_loss)] // packet counts below 2^52
async fn ceilings(start: usize, window: Duration) -> anyhow::Result<()> {
    let mut rx = Receivers::spawn().await?;
    println!(
        "music-on-hold ceilings: p99 |gap-20ms| < 2 ms, 0 lost, 0 drops, >= 99.9 % of packets due; \
         {:.0} s windows after {} s warm-up; load average {} at start",
        window.as_secs_f64(),
        WARM_UP.as_secs(),
        load_average()
    );
    let mut found = Vec::new();
    for sender in [Sender::Engine, Sender::Bare] {
        let mut good: Option<usize> = None;
        let mut bad: Option<usize> = None;
        let mut n = start;
        loop {
            let p = phase(sender, n, &mut rx, window).await?;
            let ok = holds(&p, n);
            println!(
                "  {:<18} {n:>6} streams: p99 {:.2} ms, {} of {:.0} due, lost {}, drops {}, CPU {:.2} us/stream/s -> {}  (load {})",
                sender.name(),
                ms(p.rx.p99_us),
                p.rx.packets,
                due(n, p.window),
                p.rx.expected.saturating_sub(p.rx.packets),
                p.rx.drops,
                per_stream_us(&p, n),
                if ok { "holds" } else { "fails" },
                p.load
            );
            if ok {
                good = Some(n);
            } else {
                bad = Some(n);
            }
            n = match (good, bad) {
                (Some(g), None) if g >= 15_000 => break,
                (Some(g), None) => (g * 2).min(15_000),
                (None, Some(b)) if b <= 50 => break,
                (None, Some(b)) => b / 2,
                (Some(g), Some(b)) if b - g <= (g / 20).max(50) => break,
                (Some(g), Some(b)) => g + (b - g) / 2,
                (None, None) => unreachable!("a step was measured"),
            };
        }
        println!("  {} ceiling: {} streams", sender.name(), good.unwrap_or(0));
        found.push(good.unwrap_or(0));
    }
    let (engine, bare) = (found[0], found[1]);
    let at = engine.min(bare).max(1);
    let e = phase(Sender::Engine, at, &mut rx, window).await?;
    let b = phase(Sender::Bare, at, &mut rx, window).await?;
    rx.quit().await?;
    println!(
        "ceilings: rgsd {engine}, bare {bare}: ratio {:.2}; at {at} streams CPU per stream rgsd {:.2} us/s, bare {:.2} us/s: ratio {:.2}",
        engine as f64 / bare.max(1) as f64,
        per_stream_us(&e, at),
        per_stream_us(&b, at),
        per_stream_us(&e, at) / per_stream_us(&b, at)
    );
    Ok(())
}

/// What the receivers saw in one measurement window (sent by the child as one JSON line).
#[derive(Debug, Default, Serialize, Deserialize)]
struct RxReport {
    streams: usize,
    packets: u64,
    /// Sum over streams of (last − first + 1) sequence numbers.
    expected: u64,
    /// Consecutive-packet gaps measured.
    gaps: u64,
    /// |gap − 20 ms| percentiles, microseconds (upper edge of a 10 µs bin), and the exact max.
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// Packets without a kernel timestamp (not timed).
    untimed: u64,
    /// Receive-buffer overflows on the receive sockets.
    drops: u64,
    cpu_s: f64,
}

/// One phase's figures.
struct Phase {
    rx: RxReport,
    user: Duration,
    system: Duration,
    window: Duration,
    load: String,
}

async fn compare(n: usize, window: Duration) -> anyhow::Result<()> {
    let mut rx = Receivers::spawn().await?;
    let engine = engine_phase(n, &mut rx, window).await?;
    let bare = bare_phase(n, &mut rx, window).await?;
    rx.quit().await?;
    println!(
        "\nmusic on hold: N = {n} streams, {:.1} s window after {} s warm-up; loopback; sender: \
         tokio, {WORKERS} workers; receivers: child process, {RECEIVERS} sockets, recvmmsg every \
         2 ms, kernel receive timestamps",
        window.as_secs_f64(),
        WARM_UP.as_secs()
    );
    println!(
        "{:<18} {:>7} {:>9} {:>9} {:>6} {:>6}  {:<34} {:<22} {:>13} {:>11}  load avg 1/5/15 min",
        "",
        "streams",
        "packets",
        "due",
        "lost",
        "drops",
        "|gap-20ms| p50/p99/p99.9/max ms",
        "sender CPU user+sys s",
        "CPU/stream",
        "CPU/packet",
    );
    for (name, p) in [("rgsd media engine", &engine), ("bare UDP sender", &bare)] {
        let due = f64::from(u32::try_from(n).unwrap_or(u32::MAX)) * p.window.as_secs_f64()
            / (PERIOD_MS as f64 / 1_000.0);
        println!(
            "{name:<18} {:>7} {:>9} {:>9.0} {:>6} {:>6}  {:<34} {:<22} {:>8.2} us/s {:>8.2} us  {}",
            p.rx.streams,
            p.rx.packets,
            due,
            p.rx.expected.saturating_sub(p.rx.packets),
            p.rx.drops,
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                ms(p.rx.p50_us),
                ms(p.rx.p99_us),
                ms(p.rx.p999_us),
                ms(p.rx.max_us)
            ),
            format!(
                "{:.2} + {:.2} = {:.2}",
                p.user.as_secs_f64(),
                p.system.as_secs_f64(),
                (p.user + p.system).as_secs_f64()
            ),
            per_stream_us(p, n),
            per_packet_us(p),
            p.load
        );
    }
    println!(
        "CPU per stream, rgsd / bare: {:.2}; per packet sent: {:.2}; receivers' CPU (not counted above): {:.2} s / {:.2} s; \
         untimed packets: {} / {}",
        per_stream_us(&engine, n) / per_stream_us(&bare, n),
        per_packet_us(&engine) / per_packet_us(&bare),
        engine.rx.cpu_s,
        bare.rx.cpu_s,
        engine.rx.untimed,
        bare.rx.untimed
    );
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // microseconds below 2^52
fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// Sender CPU microseconds per stream per second of wall time.
fn per_stream_us(p: &Phase, n: usize) -> f64 {
    let streams = f64::from(u32::try_from(n).unwrap_or(u32::MAX));
    (p.user + p.system).as_secs_f64() * 1e6 / streams / p.window.as_secs_f64()
}

/// Sender CPU microseconds per packet received (the fair figure when a sender falls behind).
#[allow(clippy::cast_precision_loss)] // packet counts below 2^52
fn per_packet_us(p: &Phase) -> f64 {
    (p.user + p.system).as_secs_f64() * 1e6 / p.rx.packets.max(1) as f64
}

fn offer(port: u16) -> String {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\n"
    )
}

async fn engine_phase(n: usize, rx: &mut Receivers, window: Duration) -> anyhow::Result<Phase> {
    let first = 20_000;
    let last = first + u16::try_from(2 * n + 400).context("too many streams")?;
    let engine = MediaEngine::new(
        PortPool::new(LOOPBACK, first..=last),
        LOOPBACK,
        LegOptions { rtp_timeout: None },
    );
    let music = tone_loop();
    let mut legs = Vec::with_capacity(n);
    for i in 0..n {
        let (leg, _) = engine
            .answer(
                offer(rx.ports[i % rx.ports.len()]).as_bytes(),
                rgsd::config::model::SrtpPolicy::Off,
            )
            .await?;
        leg.start_music(Arc::clone(&music))?;
        legs.push(leg);
    }
    tokio::time::sleep(WARM_UP).await;
    let phase = rx.measure(window).await?;
    for leg in legs {
        leg.close().await;
    }
    Ok(phase)
}

/// One socket of the bare sender with its packet.
struct Bare {
    socket: UdpSocket,
    packet: [u8; PACKET],
    to: SocketAddr,
}

async fn bare_phase(n: usize, rx: &mut Receivers, window: Duration) -> anyhow::Result<Phase> {
    // Socket i goes to shard i % WORKERS, in millisecond (i / WORKERS) % 20 of the period,
    // like the engine's pacer spreads its legs.
    let mut shards: Vec<Vec<Vec<Bare>>> = (0..WORKERS)
        .map(|_| (0..PERIOD_MS).map(|_| Vec::new()).collect())
        .collect();
    for i in 0..n {
        let mut packet = [0u8; PACKET];
        packet[0] = 0x80;
        packet[8..12].copy_from_slice(&u32::try_from(i)?.to_be_bytes());
        let slot = (i / WORKERS) % shards[0].len();
        shards[i % WORKERS][slot].push(Bare {
            socket: UdpSocket::bind((LOOPBACK, 0)).await?,
            packet,
            to: SocketAddr::new(LOOPBACK, rx.ports[i % rx.ports.len()]),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = shards
        .into_iter()
        .map(|mut buckets| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let base = Instant::now();
                let mut slot = 0u64;
                // Bounded by the stop flag, set after the window.
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep_until(base + Duration::from_millis(slot)).await;
                    let index = usize::try_from(slot % PERIOD_MS).unwrap_or(0);
                    for b in &mut buckets[index] {
                        let seq = u16::from_be_bytes([b.packet[2], b.packet[3]]).wrapping_add(1);
                        b.packet[2..4].copy_from_slice(&seq.to_be_bytes());
                        let _ = b.socket.try_send_to(&b.packet, b.to);
                    }
                    slot += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let phase = rx.measure(window).await?;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    Ok(phase)
}

fn cpu_time() -> anyhow::Result<(Duration, Duration)> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let duration = |t: nix::sys::time::TimeVal| {
        Duration::from_micros(
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
                + u64::try_from(t.tv_usec()).unwrap_or(0),
        )
    };
    Ok((duration(usage.user_time()), duration(usage.system_time())))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The receiver child process, driven by lines on its stdin.
struct Receivers {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    ports: Vec<u16>,
}

impl Receivers {
    async fn spawn() -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--receiver")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().context("child stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        let first = lines.next_line().await?.context("the receiver exited")?;
        let Some(ports) = first.strip_prefix("ports ") else {
            bail!("unexpected line from the receiver: {first}");
        };
        let ports = ports
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            child,
            stdin,
            lines,
            ports,
        })
    }

    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Opens the receivers' window, waits `window`, closes it; this process's CPU time is taken
    /// at the same two moments.
    async fn measure(&mut self, window: Duration) -> anyhow::Result<Phase> {
        let load = load_average();
        self.say("start").await?;
        let (user0, system0) = cpu_time()?;
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        self.say("stop").await?;
        let (user1, system1) = cpu_time()?;
        let window = t0.elapsed();
        let line = self
            .lines
            .next_line()
            .await?
            .context("the receiver exited")?;
        Ok(Phase {
            rx: serde_json::from_str(&line)?,
            user: user1 - user0,
            system: system1 - system0,
            window,
            load,
        })
    }

    async fn quit(mut self) -> anyhow::Result<()> {
        self.say("quit").await?;
        self.child.wait().await?;
        Ok(())
    }
}

/// The child process: blocking threads on `recvmmsg`, one per receive socket.
mod receiver {
    use std::io::{BufRead, IoSliceMut, Write};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, setsockopt, sockopt,
    };
    use nix::sys::time::TimeSpec;

    use super::{LOOPBACK, PERIOD_MS, RECEIVERS, RxReport};

    const BATCH: usize = 64;
    /// Histogram bins of 10 µs up to 1 s.
    const BIN_NS: u64 = 10_000;
    const BINS: usize = 100_000;
    const PERIOD_NS: i64 = 20_000_000;
    const _: () = assert!(PERIOD_NS == PERIOD_MS.cast_signed() * 1_000_000);

    #[derive(Clone, Copy)]
    struct Stream {
        last_ts: Option<i64>,
        last_seq: u16,
        /// Extended sequence number of the last packet, relative to the first.
        ext: i64,
        min: i64,
        max: i64,
        count: u64,
    }

    struct Stats {
        recording: bool,
        /// By the sender's source port.
        streams: Vec<Option<Stream>>,
        hist: Vec<u64>,
        max_ns: u64,
        untimed: u64,
    }

    impl Stats {
        fn new() -> Self {
            Self {
                recording: false,
                streams: vec![None; 65_536],
                hist: vec![0; BINS],
                max_ns: 0,
                untimed: 0,
            }
        }

        fn reset(&mut self) {
            self.streams.fill(None);
            self.hist.fill(0);
            self.max_ns = 0;
            self.untimed = 0;
        }

        fn record(&mut self, port: u16, seq: u16, ts: Option<i64>) {
            if ts.is_none() {
                self.untimed += 1;
            }
            let slot = &mut self.streams[usize::from(port)];
            let Some(s) = slot else {
                *slot = Some(Stream {
                    last_ts: ts,
                    last_seq: seq,
                    ext: 0,
                    min: 0,
                    max: 0,
                    count: 1,
                });
                return;
            };
            let step = i64::from(seq.wrapping_sub(s.last_seq));
            let step = if step >= 32_768 { step - 65_536 } else { step };
            s.ext += step;
            s.min = s.min.min(s.ext);
            s.max = s.max.max(s.ext);
            s.count += 1;
            if step == 1
                && let (Some(now), Some(before)) = (ts, s.last_ts)
            {
                let error = (now - before - PERIOD_NS).unsigned_abs();
                self.max_ns = self.max_ns.max(error);
                let bin = usize::try_from(error / BIN_NS).unwrap_or(BINS - 1);
                self.hist[bin.min(BINS - 1)] += 1;
            }
            s.last_seq = seq;
            s.last_ts = ts;
        }
    }

    fn lock(stats: &Mutex<Stats>) -> std::sync::MutexGuard<'_, Stats> {
        stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn run() -> anyhow::Result<()> {
        let sockets: Vec<UdpSocket> = (0..RECEIVERS)
            .map(|_| UdpSocket::bind((LOOPBACK, 0)))
            .collect::<Result<_, _>>()?;
        let mut ports = Vec::new();
        for s in &sockets {
            // Root may pass rmem_max; otherwise the kernel caps it.
            if setsockopt(s, sockopt::RcvBufForce, &(16 << 20)).is_err() {
                setsockopt(s, sockopt::RcvBuf, &(16 << 20))?;
            }
            setsockopt(s, sockopt::ReceiveTimestampns, &true)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            ports.push(s.local_addr()?.port());
        }
        let all: Vec<Arc<Mutex<Stats>>> = (0..RECEIVERS)
            .map(|_| Arc::new(Mutex::new(Stats::new())))
            .collect();
        let quit = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = sockets
            .into_iter()
            .zip(&all)
            .map(|(socket, stats)| {
                let stats = Arc::clone(stats);
                let quit = Arc::clone(&quit);
                std::thread::spawn(move || receive(&socket, &stats, &quit))
            })
            .collect();
        let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
        println!("ports {}", port_list.join(" "));
        std::io::stdout().flush()?;
        let mut drops0 = 0;
        let mut cpu0 = 0.0;
        for line in std::io::stdin().lock().lines() {
            match line?.as_str() {
                "start" => {
                    for s in &all {
                        let mut s = lock(s);
                        s.reset();
                        s.recording = true;
                    }
                    drops0 = drops(&ports);
                    cpu0 = cpu_s()?;
                }
                "stop" => {
                    let report = stop(&all, drops(&ports).saturating_sub(drops0), cpu_s()? - cpu0);
                    println!("{}", serde_json::to_string(&report)?);
                    std::io::stdout().flush()?;
                }
                _ => break,
            }
        }
        quit.store(true, Ordering::Relaxed);
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a receiver thread panicked"))??;
        }
        Ok(())
    }

    fn stop(all: &[Arc<Mutex<Stats>>], drops: u64, cpu_s: f64) -> RxReport {
        let mut report = RxReport {
            drops,
            cpu_s,
            ..RxReport::default()
        };
        let mut hist = vec![0u64; BINS];
        for s in all {
            let mut s = lock(s);
            s.recording = false;
            for stream in s.streams.iter().flatten() {
                report.streams += 1;
                report.packets += stream.count;
                report.expected += (stream.max - stream.min + 1).unsigned_abs();
            }
            for (h, v) in hist.iter_mut().zip(&s.hist) {
                *h += v;
            }
            report.max_us = report.max_us.max(s.max_ns / 1_000);
            report.untimed += s.untimed;
        }
        report.gaps = hist.iter().sum();
        let percentile = |per_mille: u64| {
            let target = (report.gaps * per_mille).div_ceil(1_000).max(1);
            let mut seen = 0;
            for (i, v) in hist.iter().enumerate() {
                seen += v;
                if seen >= target {
                    return (u64::try_from(i).unwrap_or(u64::MAX) + 1) * BIN_NS / 1_000;
                }
            }
            0
        };
        report.p50_us = percentile(500);
        report.p99_us = percentile(990);
        report.p999_us = percentile(999);
        report
    }

    /// Receives until `quit`: every 2 ms, drains the socket in batches. The kernel timestamps
    /// each packet on arrival, so reading late costs no precision and saves wake-ups.
    fn receive(socket: &UdpSocket, stats: &Mutex<Stats>, quit: &AtomicBool) -> anyhow::Result<()> {
        let fd = socket.as_raw_fd();
        let mut headers =
            MultiHeaders::<SockaddrIn>::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)));
        let mut bufs = vec![[0u8; 256]; BATCH];
        // Bounded: the parent says quit at the end of the run.
        while !quit.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
            // At most 1,000 batches per turn.
            for _ in 0..1_000 {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                let results = match recvmmsg(
                    fd,
                    &mut headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    Ok(r) => r,
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => break,
                    Err(e) => return Err(e.into()),
                };
                let mut stats = lock(stats);
                let mut received = 0;
                for msg in results {
                    received += 1;
                    if !stats.recording || msg.bytes < 12 {
                        continue;
                    }
                    let Some(port) = msg.address.map(|a| a.port()) else {
                        continue;
                    };
                    let Some(data) = msg.iovs().next() else {
                        continue;
                    };
                    let seq = u16::from_be_bytes([data[2], data[3]]);
                    let mut ts = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmTimestampns(t) = c {
                                ts = Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec());
                            }
                        }
                    }
                    stats.record(port, seq, ts);
                }
                if received < BATCH {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Receive-buffer overflows so far on our sockets (last column of `/proc/net/udp`).
    fn drops(ports: &[u16]) -> u64 {
        let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
            return 0;
        };
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields.get(1)?.rsplit(':').next()?;
                let port = u16::from_str_radix(port, 16).ok()?;
                ports
                    .contains(&port)
                    .then(|| fields.last()?.parse::<u64>().ok())?
            })
            .sum()
    }

    fn cpu_s() -> anyhow::Result<f64> {
        let (user, system) = super::cpu_time()?;
        Ok((user + system).as_secs_f64())
    }
}
