//! The per-leg media API the call controller uses: a [`Leg`] is one RTP stream between rgsd and
//! a phone (the caller, or an agent), driven by its own tokio task.
//!
//! ```text
//! MediaEngine::answer(offer) ─┐                      ┌─ play / play_to_end (prompt)
//! MediaEngine::offer()  ──────┴─> Leg ── commands ──>│  start_music / stop
//!                                  ^                 └─ bridge(other)
//!                                  └── events: Digit, PromptFinished, MediaTimeout
//! ```
//!
//! Playback (prompts, music) is paced by the engine's pacer (`media::pacer`), not by the leg:
//! a leg that starts playing registers with one of a few pacer tasks, which sends its next frame
//! every 20 ms on absolute deadlines (no drift), legs spread over the 20 ms period, until the
//! source ends. What plays, and the stream's numbering, live in the leg's shared state, so the
//! pacer and the leg's task see one stream: one SSRC, continuous sequence numbers and
//! timestamps across prompt → music → bridge, the marker bit on each change of source.
//!
//! The leg's own task handles commands and reads the leg's socket: symmetric RTP (rgsd sends to
//! where the peer's packets come from, once the first one arrived; to the SDP address until
//! then; packets from the SDP address take the latch back from any other source that got in
//! first), DTMF (RFC 4733, or in-band Goertzel when no telephone-event was negotiated), and,
//! when bridged, the relay to the other leg. Both legs of a bridge relay in their own task, straight into the
//! other leg's socket, under the other leg's (std) mutex: no channel hop and no allocation per
//! packet. A bridge holds only a weak reference to the other leg, so closing either leg ends
//! its half of the bridge and frees its port.
//!
//! SRTP (`media::srtp`): a leg whose offer/answer settled SDES keys protects every packet it
//! sends (played, or relayed into it by the bridged peer) and authenticates and decrypts every
//! packet it receives before anything else looks at it; a packet that fails is dropped and
//! counted ([`RtpCounts::srtp_auth_failures`]) and does not latch the peer's address. A bridge
//! between an SRTP leg and a plain one (or two SRTP legs, each with its own keys) therefore
//! decrypts on one side and encrypts on the other. Plain legs skip all of it: one `Option`
//! check per packet.
//!
//! Every leg counts the RTP packets it sends and receives into its engine's [`RtpCounts`]
//! (`rgsd_rtp_packets_total`), in batches: see [`COUNT_BATCH`].
//!
//! SIP stays out: SDP comes in and goes out as bytes and strings.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use rtp_rs::RtpReader;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::clip::Clip;
use super::codec::{FRAME_DURATION, FRAME_SAMPLES, FRAME_TICKS};
use super::dtmf::{Digit, InbandDetector, TelephoneEventReceiver};
use super::pacer::{Paced, Pacer};
use super::ports::{PortError, PortPool, RtpSocket};
use super::rtp::{MAX_PACKET, Relay, RtpStream, StreamFormat};
use super::sdp::{self, AnswerError, Direction, LocalMedia, MasterKey, Negotiated};
use super::srtp::SrtpSession;
use crate::config::model::SrtpPolicy;

/// Tuning for every leg.
#[derive(Debug, Clone, Copy)]
pub struct LegOptions {
    /// Report [`LegEvent::MediaTimeout`] after this long without a packet from a peer that
    /// should be sending; `None` never.
    pub rtp_timeout: Option<Duration>,
}

impl Default for LegOptions {
    fn default() -> Self {
        Self {
            rtp_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A leg adds what it counted to its engine's [`RtpCounts`] every this many packets (per
/// direction; one second of one stream), and once more when it ends. The shared atomics are
/// then touched once per batch instead of once per packet, so thousands of legs on two cores do
/// not fight over one cache line 50 times a second each; the totals run behind by less than one
/// batch per direction per open leg, and are exact for legs that ended.
pub(crate) const COUNT_BATCH: u32 = 50;

/// The RTP packets the legs of one engine (and its clones) sent and received, for
/// `rgsd_rtp_packets_total`: read them with [`RtpCounts::sent`] and [`RtpCounts::received`].
///
/// Sent: packets handed to the socket without error (prompt and music frames, and packets a
/// bridge relayed out of this leg). Received: RTP packets a leg accepted from its peer (not
/// stray ones from another address once latched, unless from the SDP's address, which takes
/// the latch back; nor ones before the SDP answer). See
/// [`COUNT_BATCH`] for when the figures move.
#[derive(Debug, Default)]
pub struct RtpCounts {
    sent: AtomicU64,
    received: AtomicU64,
    srtp_auth_failures: AtomicU64,
}

impl RtpCounts {
    /// Packets sent by legs, up to each open leg's last batch.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Packets received by legs, up to each open leg's last batch.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// SRTP packets dropped because they failed authentication or were replayed (counted at
    /// once: they are rare, or an attack worth seeing).
    #[must_use]
    pub fn srtp_auth_failures(&self) -> u64 {
        self.srtp_auth_failures.load(Ordering::Relaxed)
    }
}

/// Counts one packet in a leg's own counter; adds the batch to `total` when it is full.
fn count_one(pending: &mut u32, total: &AtomicU64) {
    *pending += 1;
    if *pending >= COUNT_BATCH {
        total.fetch_add(u64::from(std::mem::take(pending)), Ordering::Relaxed);
    }
}

/// Creates legs: allocates their ports and writes their SDP. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct MediaEngine {
    pool: PortPool,
    /// Written into the SDP (`c=`, `o=`): the server's advertised address.
    address: IpAddr,
    options: LegOptions,
    /// Sends the frames of every playing leg of this engine (and its clones).
    pacer: Arc<Pacer<Shared>>,
    /// What every leg of this engine (and its clones) sent and received.
    counts: Arc<RtpCounts>,
    /// Set by [`MediaEngine::end_next_offered_leg_task`]; shared with clones.
    end_next_offer: Arc<AtomicBool>,
}

/// Why a leg could not be created.
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    /// No RTP port.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The peer's SDP is unusable; [`AnswerError::sip_status`] says how to reject it.
    #[error(transparent)]
    Sdp(#[from] AnswerError),
}

/// The leg's task has ended (closed); nothing more can be asked of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the media leg is closed")]
pub struct LegClosed;

/// Something the call controller should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// The caller pressed a key (RFC 4733 or in-band).
    Digit(Digit),
    /// The prompt started with [`Leg::play`] played to its end.
    PromptFinished,
    /// No RTP from a peer that should be sending for [`LegOptions::rtp_timeout`].
    MediaTimeout,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayOutcome {
    /// Played to the end.
    Finished,
    /// Replaced by another source, stopped, or bridged before the end.
    Interrupted,
}

impl MediaEngine {
    #[must_use]
    pub fn new(pool: PortPool, address: IpAddr, options: LegOptions) -> Self {
        Self {
            pool,
            address,
            options,
            pacer: Arc::new(Pacer::new()),
            counts: Arc::new(RtpCounts::default()),
            end_next_offer: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Test hook: the task of the next leg made by [`MediaEngine::offer`] (on this engine or a
    /// clone) is ended at once, as if it had died. The leg keeps its port and SDP, so the
    /// outbound call is placed and answered as usual, but commands to it fail with
    /// [`LegClosed`]. Lets the integration tests reach the call's handling of a dead leg.
    #[doc(hidden)]
    pub fn end_next_offered_leg_task(&self) {
        self.end_next_offer.store(true, Ordering::Relaxed);
    }

    /// The packet counts of this engine's legs (shared with its clones); the daemon reads them
    /// for `/metrics`.
    #[must_use]
    pub fn rtp_counts(&self) -> Arc<RtpCounts> {
        Arc::clone(&self.counts)
    }

    /// A leg answering the peer's `offer` under the SRTP policy `srtp`; returns it with rgsd's
    /// SDP answer.
    ///
    /// # Errors
    /// [`LegError::Sdp`] (reject with its status; 488 when no codec is common or the SRTP
    /// policy refuses the offer) or [`LegError::Port`] (reject with 503).
    pub async fn answer(&self, offer: &[u8], srtp: SrtpPolicy) -> Result<(Leg, String), LegError> {
        let socket = self.pool.bind().await?;
        let local = self.local_media(socket.port(), srtp);
        let (negotiated, answer) = sdp::answer(offer, &local)?;
        Ok((self.spawn(socket, local, Some(negotiated)), answer))
    }

    /// A leg for an outbound call (an agent) under the SRTP policy `srtp`; returns it with
    /// rgsd's SDP offer. Nothing is sent until [`Leg::accept_answer`].
    ///
    /// # Errors
    /// [`LegError::Port`] when no port is free.
    pub async fn offer(&self, srtp: SrtpPolicy) -> Result<(Leg, String), LegError> {
        let socket = self.pool.bind().await?;
        let local = self.local_media(socket.port(), srtp);
        let offer = sdp::offer(&local);
        let leg = self.spawn(socket, local, None);
        // A fault-injection point for the tests: one relaxed load per offered leg otherwise.
        if self.end_next_offer.load(Ordering::Relaxed)
            && self.end_next_offer.swap(false, Ordering::Relaxed)
        {
            leg.task.abort();
        }
        Ok((leg, offer))
    }

    fn local_media(&self, port: u16, srtp: SrtpPolicy) -> LocalMedia {
        LocalMedia {
            address: self.address,
            port,
            session_id: u64::from(fastrand::u32(..)),
            session_version: 1,
            direction: Direction::SendRecv,
            srtp,
            // A fresh key per leg, from the OS; drawn only when the leg may speak SRTP.
            key: if srtp == SrtpPolicy::Off {
                MasterKey::from_bytes([0; sdp::MASTER_LEN])
            } else {
                MasterKey::random()
            },
        }
    }

    fn spawn(&self, socket: RtpSocket, local: LocalMedia, negotiated: Option<Negotiated>) -> Leg {
        let mut out = Out {
            stream: RtpStream::random(),
            remote: None,
            latched: false,
            negotiated: None,
            srtp: None,
            local,
            last_sent: None,
            source: Source::Idle,
            from_silence: false,
            paced: false,
            sent_pending: 0,
        };
        if let Some(n) = negotiated {
            out.apply(n);
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            socket,
            out: Mutex::new(out),
            events: event_tx,
            counts: Arc::clone(&self.counts),
        });
        let task = tokio::spawn(
            LegTask {
                shared: Arc::clone(&shared),
                commands: command_rx,
                options: self.options,
                pacer: Arc::clone(&self.pacer),
            }
            .run(),
        );
        Leg {
            shared,
            commands,
            events,
            task,
        }
    }
}

/// What the leg's own task, a bridged peer's task and the pacer touch.
#[derive(Debug)]
struct Shared {
    socket: RtpSocket,
    out: Mutex<Out>,
    events: mpsc::Sender<LegEvent>,
    /// The engine's totals; [`Out::sent_pending`] goes there by batches.
    counts: Arc<RtpCounts>,
}

impl Drop for Shared {
    /// The last, partial batch of sent packets. Dropped when the leg, its task and any pacer
    /// tick holding it are all done, so nothing is sent afterwards.
    fn drop(&mut self) {
        let out = self.out.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.counts
            .sent
            .fetch_add(u64::from(out.sent_pending), Ordering::Relaxed);
    }
}

impl Shared {
    // Held only for a few field updates and one non-blocking send; never across an await.
    fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: LegEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!(?event, "leg event dropped: nobody reads the leg's events");
        }
    }
}

impl Paced for Shared {
    /// Sends the next frame of the prompt or music (nothing while on hold: time runs on);
    /// ends a prompt one frame period after its last frame.
    fn tick(&self, now: Instant, buf: &mut [u8; MAX_PACKET]) -> bool {
        let mut guard = self.lock();
        let out = &mut *guard;
        let finished = match &out.source {
            Source::Idle => {
                out.paced = false;
                return false;
            }
            Source::Prompt { clip, frame, .. } => *frame >= clip.frames(),
            Source::Music { .. } => false,
        };
        if finished {
            let notify = matches!(out.source, Source::Prompt { done: None, .. });
            out.source.end(PlayOutcome::Finished);
            out.paced = false;
            drop(guard);
            if notify {
                self.emit(LegEvent::PromptFinished);
            }
            return false;
        }
        if std::mem::take(&mut out.from_silence)
            && let Some(last) = out.last_sent
        {
            // Starting from silence: move the timestamp over it.
            out.stream.skip(ticks_between(last, now));
        }
        let target = out.target();
        let (Source::Prompt { clip, frame, .. } | Source::Music { clip, frame }) = &mut out.source
        else {
            return false;
        };
        match target {
            Some((to, format)) => {
                let payload = clip.frame(format.codec, *frame);
                if let Some(n) = out
                    .stream
                    .write(format.payload_type, payload, FRAME_TICKS, buf)
                {
                    let sealed;
                    let packet: &[u8] = match out.srtp.as_mut() {
                        None => &buf[..n],
                        Some(srtp) => {
                            sealed = srtp.protect(&buf[..n]);
                            sealed.as_deref().unwrap_or_default()
                        }
                    };
                    // UDP: a full socket buffer loses the packet, as the network would.
                    if !packet.is_empty() && self.socket.send_now(packet, to).is_ok() {
                        count_one(&mut out.sent_pending, &self.counts.sent);
                    }
                }
            }
            // On hold: time runs, nothing is sent.
            None => out.stream.skip(FRAME_TICKS),
        }
        *frame += 1;
        out.last_sent = Some(now);
        true
    }
}

/// The sending side of the leg, and what the last offer/answer settled.
#[derive(Debug)]
struct Out {
    stream: RtpStream,
    negotiated: Option<Negotiated>,
    /// The SRTP contexts, when the negotiation settled SDES keys.
    srtp: Option<SrtpSession>,
    /// Where to send: the SDP address, then the source of the peer's packets.
    remote: Option<SocketAddr>,
    /// Whether `remote` was learnt from received packets (symmetric RTP).
    latched: bool,
    local: LocalMedia,
    /// When the last packet (played or relayed) went out: the timestamp moves on over silence.
    last_sent: Option<Instant>,
    /// What plays; the pacer sends its frames.
    source: Source,
    /// The source started from silence: its first frame moves the timestamp over the silence.
    from_silence: bool,
    /// Registered with the pacer (until a tick finds nothing playing).
    paced: bool,
    /// Packets sent (played or relayed out of this leg) not yet added to
    /// [`Shared::counts`]: counted under this lock, which every send already holds.
    sent_pending: u32,
}

impl Out {
    /// Where to send now, with what payload format, if sending is allowed (not on hold).
    fn target(&self) -> Option<(SocketAddr, StreamFormat)> {
        let n = self.negotiated.as_ref()?;
        if !n.direction.sends() {
            return None;
        }
        Some((self.remote?, StreamFormat::from(n)))
    }

    fn apply(&mut self, negotiated: Negotiated) {
        // A new address in the SDP (or a resume after c=0.0.0.0) drops the latch.
        if negotiated.remote.is_some()
            && negotiated.remote != self.negotiated.as_ref().and_then(|n| n.remote)
        {
            self.remote = negotiated.remote;
            self.latched = false;
        }
        // New keys (or none) take effect with the new negotiation; the same keys keep their
        // contexts, so the replay window and rollover counters carry on.
        match negotiated.srtp {
            None => self.srtp = None,
            Some(keys) if self.srtp.as_ref().map(SrtpSession::keys) == Some(keys) => {}
            Some(keys) => {
                self.srtp = SrtpSession::new(keys);
                if self.srtp.is_none() {
                    // Never fall back to sending in clear what should be encrypted.
                    tracing::error!("SRTP keys refused by the cipher; the leg stays silent");
                    self.negotiated = None;
                    return;
                }
            }
        }
        self.negotiated = Some(negotiated);
    }
}

enum Command {
    Play {
        clip: Arc<Clip>,
        done: Option<oneshot::Sender<PlayOutcome>>,
    },
    Music(Arc<Clip>),
    Stop,
    Bridge(Weak<Shared>),
}

/// A media leg. Dropping it (or [`Leg::close`]) ends its task and frees its port.
#[derive(Debug)]
pub struct Leg {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<LegEvent>,
    task: JoinHandle<()>,
}

impl Leg {
    /// The leg's local RTP port.
    #[cfg(test)]
    #[must_use]
    pub fn local_port(&self) -> u16 {
        self.shared.socket.port()
    }

    /// Applies the peer's answer to the offer from [`MediaEngine::offer`].
    ///
    /// # Errors
    /// [`AnswerError`] when the answer has no usable stream (end the call).
    pub fn accept_answer(&self, answer: &[u8]) -> Result<(), AnswerError> {
        let mut out = self.shared.lock();
        let negotiated = sdp::apply_answer(answer, &out.local)?;
        out.apply(negotiated);
        Ok(())
    }

    /// Answers a new offer inside the dialog (re-INVITE: hold, resume, new address); returns the
    /// SDP answer. Hold pauses what rgsd sends; playback time keeps running.
    ///
    /// # Errors
    /// [`AnswerError`]; reject the re-INVITE with its status and keep the old session.
    pub fn answer_reoffer(&self, offer: &[u8]) -> Result<String, AnswerError> {
        let mut out = self.shared.lock();
        out.local.session_version += 1;
        let (negotiated, answer) = sdp::answer(offer, &out.local)?;
        out.apply(negotiated);
        Ok(answer)
    }

    fn send(&self, command: Command) -> Result<(), LegClosed> {
        self.commands.send(command).map_err(|_| LegClosed)
    }

    /// Starts a prompt (replacing what was playing); [`LegEvent::PromptFinished`] follows at its
    /// end.
    ///
    /// # Errors
    /// [`LegClosed`] when the leg's task has ended.
    pub fn play(&self, clip: Arc<Clip>) -> Result<(), LegClosed> {
        self.send(Command::Play { clip, done: None })
    }

    /// Plays a prompt and waits until it ends or is interrupted. No
    /// [`LegEvent::PromptFinished`] is sent for it.
    ///
    /// # Errors
    /// [`LegClosed`] when the leg's task has ended.
    pub async fn play_to_end(&self, clip: Arc<Clip>) -> Result<PlayOutcome, LegClosed> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Play {
            clip,
            done: Some(tx),
        })?;
        rx.await.map_err(|_| LegClosed)
    }

    /// Loops music on hold (replacing what was playing) until stopped or bridged.
    ///
    /// # Errors
    /// [`LegClosed`] when the leg's task has ended.
    pub fn start_music(&self, clip: Arc<Clip>) -> Result<(), LegClosed> {
        self.send(Command::Music(clip))
    }

    /// Stops the prompt or music (silence; nothing is sent).
    ///
    /// # Errors
    /// [`LegClosed`] when the leg's task has ended.
    pub fn stop(&self) -> Result<(), LegClosed> {
        self.send(Command::Stop)
    }

    /// Bridges this leg and `other` both ways (stopping whatever either played).
    ///
    /// # Errors
    /// [`LegClosed`] when either leg's task has ended.
    pub fn bridge(&self, other: &Leg) -> Result<(), LegClosed> {
        self.send(Command::Bridge(Arc::downgrade(&other.shared)))?;
        other.send(Command::Bridge(Arc::downgrade(&self.shared)))
    }

    /// The next event; `None` once the leg is closed.
    ///
    /// # Cancel safety
    /// Cancel-safe: an event not returned stays queued.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        self.events.recv().await
    }

    /// Ends the leg's task and waits for it, so the port is free when this returns.
    pub async fn close(self) {
        let Self {
            shared,
            commands,
            events,
            task,
        } = self;
        drop(commands);
        drop(events);
        drop(shared);
        // A panic in the task is a bug already logged by tokio; the port is freed either way.
        let _ = task.await;
    }
}

/// What the leg plays.
#[derive(Debug)]
enum Source {
    Idle,
    Prompt {
        clip: Arc<Clip>,
        frame: usize,
        done: Option<oneshot::Sender<PlayOutcome>>,
    },
    Music {
        clip: Arc<Clip>,
        frame: usize,
    },
}

impl Source {
    fn end(&mut self, outcome: PlayOutcome) {
        if let Self::Prompt {
            done: Some(done), ..
        } = std::mem::replace(self, Self::Idle)
        {
            // The caller stopped waiting: nothing to tell.
            let _ = done.send(outcome);
        }
    }
}

struct LegTask {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    options: LegOptions,
    pacer: Arc<Pacer<Shared>>,
}

/// The bridge half owned by a leg's task.
struct Bridge {
    peer: Weak<Shared>,
    /// Built at the first packet, and again whenever either side renegotiates.
    relay: Option<Relay>,
}

impl LegTask {
    fn emit(&self, event: LegEvent) {
        self.shared.emit(event);
    }

    /// Applies a command to what plays; registers with the pacer when playing starts.
    fn command(&self, command: Command, bridge: &mut Option<Bridge>) {
        let mut out = self.shared.lock();
        let was_playing = !matches!(out.source, Source::Idle);
        match command {
            Command::Play { clip, done } => {
                out.source.end(PlayOutcome::Interrupted);
                out.source = Source::Prompt {
                    clip,
                    frame: 0,
                    done,
                };
            }
            Command::Music(clip) => {
                out.source.end(PlayOutcome::Interrupted);
                out.source = Source::Music { clip, frame: 0 };
            }
            Command::Stop => out.source.end(PlayOutcome::Interrupted),
            Command::Bridge(peer) => {
                out.source.end(PlayOutcome::Interrupted);
                *bridge = Some(Bridge { peer, relay: None });
            }
        }
        if matches!(out.source, Source::Idle) {
            return;
        }
        // A new source: its first packet is marked.
        out.stream.begin_source();
        if !was_playing {
            out.from_silence = true;
        }
        if !out.paced {
            out.paced = true;
            drop(out);
            self.pacer.register(Arc::downgrade(&self.shared));
        }
    }

    async fn run(mut self) {
        let mut bridge: Option<Bridge> = None;
        let mut last_rx = Instant::now();
        let mut timed_out = false;
        let mut rx_buf = [0u8; MAX_PACKET];
        let mut tx_buf = [0u8; MAX_PACKET];
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut telephone_events = TelephoneEventReceiver::new();
        let mut inband = InbandDetector::new();
        // Packets received and not yet added to the engine's totals (this task alone reads
        // the socket, so a local counter needs no lock).
        let mut received_pending = 0u32;
        let shared = Arc::clone(&self.shared);
        loop {
            let timeout_at = self.options.rtp_timeout.map(|t| last_rx + t);
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    self.command(command, &mut bridge);
                }
                received = shared.socket.socket().recv_from(&mut rx_buf) => {
                    let Ok((mut len, from)) = received else { continue };
                    if RtpReader::new(&rx_buf[..len]).is_err() {
                        continue;
                    }
                    let now = Instant::now();
                    let negotiated = {
                        let mut out = shared.lock();
                        let Some(negotiated) = out.negotiated else { continue };
                        // The address the peer's SDP gave: its packets always win the latch, so
                        // a sender who got in first (before the peer's first packet) loses the
                        // leg as soon as the peer speaks.
                        let from_sdp = negotiated.remote == Some(from);
                        if out.latched && out.remote != Some(from) && !from_sdp {
                            // Stray packets (an old call on a reused port, a spoofer).
                            continue;
                        }
                        if let Some(srtp) = out.srtp.as_mut() {
                            // Authenticated before it may latch the address or be heard.
                            match srtp.unprotect(&mut rx_buf, len) {
                                Ok(n) => len = n,
                                Err(_) => {
                                    shared.counts.srtp_auth_failures.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                            }
                        }
                        if !out.latched || (from_sdp && out.remote != Some(from)) {
                            out.remote = Some(from);
                            out.latched = true;
                        }
                        negotiated
                    };
                    let packet = &rx_buf[..len];
                    let Ok(reader) = RtpReader::new(packet) else { continue };
                    count_one(&mut received_pending, &shared.counts.received);
                    last_rx = now;
                    timed_out = false;
                    let payload_type = reader.payload_type();
                    if Some(payload_type) == negotiated.telephone_event {
                        if let Some(d) = telephone_events.on_packet(reader.timestamp(), reader.payload(), now) {
                            self.emit(LegEvent::Digit(d));
                        }
                    } else if payload_type == negotiated.payload_type && negotiated.telephone_event.is_none() {
                        for chunk in reader.payload().chunks(FRAME_SAMPLES) {
                            for (s, &c) in pcm.iter_mut().zip(chunk) {
                                *s = negotiated.codec.decode(c);
                            }
                            if let Some(d) = inband.feed(&pcm[..chunk.len()], now) {
                                self.emit(LegEvent::Digit(d));
                            }
                        }
                    }
                    if let Some(b) = bridge.as_mut() {
                        let Some(peer) = b.peer.upgrade() else {
                            bridge = None;
                            continue;
                        };
                        let mut peer_out = peer.lock();
                        let Some((target, to)) = peer_out.target() else { continue };
                        let from_format = StreamFormat::from(&negotiated);
                        let relay = match &mut b.relay {
                            Some(r) if r.formats() == (from_format, to) => r,
                            slot => slot.insert(Relay::new(from_format, to)),
                        };
                        if let Some(n) = relay.forward(packet, &mut peer_out.stream, &mut tx_buf) {
                            let sealed;
                            let wire: &[u8] = match peer_out.srtp.as_mut() {
                                None => &tx_buf[..n],
                                Some(srtp) => {
                                    sealed = srtp.protect(&tx_buf[..n]);
                                    sealed.as_deref().unwrap_or_default()
                                }
                            };
                            // UDP: a full socket buffer loses the packet, as the network would.
                            if !wire.is_empty() && peer.socket.socket().try_send_to(wire, target).is_ok() {
                                count_one(&mut peer_out.sent_pending, &peer.counts.sent);
                            }
                            peer_out.last_sent = Some(now);
                        }
                    }
                }
                () = crate::util::sleep_until(timeout_at), if !timed_out && timeout_at.is_some() => {
                    let expecting = shared.lock().negotiated.as_ref().is_some_and(|n| n.direction.receives());
                    if expecting {
                        timed_out = true;
                        self.emit(LegEvent::MediaTimeout);
                    } else {
                        last_rx = Instant::now();
                    }
                }
            }
        }
        self.shared.lock().source.end(PlayOutcome::Interrupted);
        shared
            .counts
            .received
            .fetch_add(u64::from(received_pending), Ordering::Relaxed);
    }
}

/// RTP ticks (8 kHz) to skip when a source starts at `later`, the last frame having been sent
/// at `earlier`: the whole frames of silence in between (the stream already counts one frame).
fn ticks_between(earlier: Instant, later: Instant) -> u32 {
    let frames = later.saturating_duration_since(earlier).as_millis() / FRAME_DURATION.as_millis();
    u32::try_from(frames.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .saturating_mul(FRAME_TICKS)
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
    use crate::media::codec::Codec;
    use crate::media::dtmf::TelephoneEvent;
    use rtp_rs::{RtpPacketBuilder, Seq};
    use std::net::Ipv4Addr;
    use tokio::net::UdpSocket;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OFF: SrtpPolicy = SrtpPolicy::Off;

    fn engine(first_port: u16) -> (MediaEngine, PortPool) {
        let pool = PortPool::new(LOOPBACK, first_port..=first_port + 7);
        (
            MediaEngine::new(pool.clone(), LOOPBACK, LegOptions::default()),
            pool,
        )
    }

    fn offer(port: u16, codec: &str, extra: &str) -> String {
        format!(
            "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {codec}\r\n{extra}"
        )
    }

    fn rtp(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
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

    async fn recv(phone: &UdpSocket) -> Option<(Vec<u8>, Instant)> {
        let mut buf = [0u8; MAX_PACKET];
        let (n, _) = tokio::time::timeout(Duration::from_secs(1), phone.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((buf[..n].to_vec(), Instant::now()))
    }

    fn tone_clip(frames: usize) -> Arc<Clip> {
        let samples: Vec<f32> = (0..frames * FRAME_SAMPLES)
            .map(|i| 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / 8_000.0).sin())
            .collect();
        Arc::new(Clip::from_8k_samples(&samples, false))
    }

    /// Steps paused time by 1 ms for `ms` ms and collects what `phone` (a plain non-blocking
    /// socket, read by syscall, so no I/O driver is involved) received, with the virtual time.
    /// Stepping by hand keeps tokio from auto-advancing the clock past a packet in flight.
    async fn collect(phone: &std::net::UdpSocket, ms: u32) -> Vec<(Vec<u8>, Instant)> {
        let mut got = Vec::new();
        let mut buf = [0u8; MAX_PACKET];
        for _ in 0..ms {
            tokio::time::advance(Duration::from_millis(1)).await;
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            while let Ok((n, _)) = phone.recv_from(&mut buf) {
                got.push((buf[..n].to_vec(), Instant::now()));
            }
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_arrives_every_20_ms_with_continuous_numbering() {
        let (engine, pool) = engine(47_200);
        let phone = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        phone.set_nonblocking(true).unwrap();
        let port = phone.local_addr().unwrap().port();
        let (mut leg, answer) = engine
            .answer(offer(port, "8", "").as_bytes(), OFF)
            .await
            .unwrap();
        assert!(answer.contains(&format!("m=audio {} RTP/AVP 8", leg.local_port())));
        let clip = tone_clip(5);
        leg.play(Arc::clone(&clip)).unwrap();
        let packets = collect(&phone, 300).await;
        assert_eq!(packets.len(), 5, "the prompt's five frames, then nothing");
        let first = RtpReader::new(&packets[0].0).unwrap();
        let (ssrc, seq0, ts0) = (
            first.ssrc(),
            u16::from(first.sequence_number()),
            first.timestamp(),
        );
        assert!(first.mark());
        for (i, (bytes, at)) in packets.iter().enumerate() {
            let r = RtpReader::new(bytes).unwrap();
            let k = u16::try_from(i).unwrap();
            assert_eq!(r.payload_type(), 8);
            assert_eq!(r.ssrc(), ssrc);
            assert_eq!(r.mark(), i == 0);
            assert_eq!(u16::from(r.sequence_number()), seq0.wrapping_add(k));
            assert_eq!(r.timestamp(), ts0.wrapping_add(160 * u32::from(k)));
            assert_eq!(r.payload(), clip.frame(Codec::Pcma, i));
            assert!(r.payload().iter().any(|&c| c != Codec::Pcma.silence()));
            let gap = at.duration_since(packets[0].1);
            assert_eq!(gap, FRAME_DURATION * u32::from(k), "frame {i} at {gap:?}");
        }
        assert_eq!(leg.next_event().await, Some(LegEvent::PromptFinished));
        // Music starts a new source: marked, numbering continues, and it loops without a gap.
        let music = tone_clip(2);
        leg.start_music(Arc::clone(&music)).unwrap();
        let packets = collect(&phone, 200).await;
        assert!(
            (9..=11).contains(&packets.len()),
            "{} music frames in 200 ms",
            packets.len()
        );
        for (i, (bytes, at)) in packets.iter().enumerate() {
            let r = RtpReader::new(bytes).unwrap();
            let k = u16::try_from(i).unwrap();
            assert_eq!(r.ssrc(), ssrc);
            assert_eq!(r.mark(), i == 0);
            assert_eq!(u16::from(r.sequence_number()), seq0.wrapping_add(5 + k));
            assert_eq!(r.payload(), music.frame(Codec::Pcma, i));
            assert_eq!(
                at.duration_since(packets[0].1),
                FRAME_DURATION * u32::from(k)
            );
        }
        // The timestamp moved on over the silence between prompt and music.
        let music_ts = RtpReader::new(&packets[0].0).unwrap().timestamp();
        assert!(
            music_ts.wrapping_sub(ts0) > 5 * 160,
            "timestamp jumped back"
        );
        leg.close().await;
        assert_eq!(pool.available(), pool.size());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_prompt_over_music_is_marked_and_continues_the_numbering() {
        let (engine, _pool) = engine(47_320);
        let phone = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        phone.set_nonblocking(true).unwrap();
        let port = phone.local_addr().unwrap().port();
        let (leg, _) = engine
            .answer(offer(port, "0", "").as_bytes(), OFF)
            .await
            .unwrap();
        leg.start_music(tone_clip(50)).unwrap();
        let music = collect(&phone, 50).await;
        let prompt = tone_clip(3);
        leg.play(Arc::clone(&prompt)).unwrap();
        let spoken = collect(&phone, 100).await;
        assert_eq!(music.len(), 3);
        assert_eq!(spoken.len(), 3);
        let last = RtpReader::new(&music[2].0).unwrap();
        let first = RtpReader::new(&spoken[0].0).unwrap();
        assert!(first.mark(), "a change of source is marked");
        assert_eq!(first.ssrc(), last.ssrc());
        assert_eq!(
            u16::from(first.sequence_number()),
            u16::from(last.sequence_number()).wrapping_add(1)
        );
        assert_eq!(first.timestamp(), last.timestamp().wrapping_add(160));
        assert_eq!(first.payload(), prompt.frame(Codec::Pcmu, 0));
        // No extra frame squeezed in: the cadence holds across the switch.
        assert_eq!(spoken[0].1.duration_since(music[2].1), FRAME_DURATION);
    }

    #[tokio::test(start_paused = true)]
    async fn play_to_end_waits_and_stop_interrupts() {
        let (engine, _pool) = engine(47_220);
        let phone = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let port = phone.local_addr().unwrap().port();
        let (leg, _) = engine
            .answer(offer(port, "0", "").as_bytes(), OFF)
            .await
            .unwrap();
        let start = Instant::now();
        assert_eq!(
            leg.play_to_end(tone_clip(10)).await,
            Ok(PlayOutcome::Finished)
        );
        assert_eq!(Instant::now() - start, FRAME_DURATION * 10);
        let leg = Arc::new(leg);
        let waiter = {
            let leg = Arc::clone(&leg);
            tokio::spawn(async move { leg.play_to_end(tone_clip(100)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        leg.stop().unwrap();
        assert_eq!(waiter.await.unwrap(), Ok(PlayOutcome::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn symmetric_rtp_and_telephone_events() {
        let (engine, _pool) = engine(47_240);
        // The SDP names one port; the phone really sends from another.
        let sdp_socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let phone = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let sdp_port = sdp_socket.local_addr().unwrap().port();
        let extra = "a=rtpmap:101 telephone-event/8000\r\n";
        let (mut leg, _) = engine
            .answer(offer(sdp_port, "0 101", extra).as_bytes(), OFF)
            .await
            .unwrap();
        leg.start_music(tone_clip(3)).unwrap();
        assert!(
            recv(&sdp_socket).await.is_some(),
            "before any packet: the SDP address"
        );
        let to_leg = SocketAddr::new(LOOPBACK, leg.local_port());
        for (i, end) in [false, false, true, true, true].into_iter().enumerate() {
            let event = TelephoneEvent {
                event: 9,
                end,
                volume: 10,
                duration: 160 * u16::try_from(i).unwrap(),
            };
            let p = rtp(
                101,
                77,
                u16::try_from(i).unwrap(),
                4_000,
                i == 0,
                &event.to_bytes(),
            );
            phone.send_to(&p, to_leg).await.unwrap();
        }
        match leg.next_event().await {
            Some(LegEvent::Digit(d)) => assert_eq!(d.key, '9'),
            other => panic!("expected a digit, got {other:?}"),
        }
        // Now latched: music goes to where the packets came from.
        let (bytes, _) = recv(&phone).await.expect("music follows the peer");
        assert_eq!(RtpReader::new(&bytes).unwrap().payload_type(), 0);
        // Only one digit for the three end packets.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(leg.events.try_recv().is_err());
    }

    /// A sender that gets in before the peer latches the leg, but the first packet from the
    /// address the peer's SDP gave takes it back; the intruder is dropped from then on.
    #[tokio::test(start_paused = true)]
    async fn the_sdp_address_takes_the_latch_back_from_an_earlier_intruder() {
        let (engine, _pool) = engine(47_400);
        let peer = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let intruder = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let port = peer.local_addr().unwrap().port();
        let extra = "a=rtpmap:101 telephone-event/8000\r\n";
        let (mut leg, _) = engine
            .answer(offer(port, "0 101", extra).as_bytes(), OFF)
            .await
            .unwrap();
        leg.start_music(tone_clip(3)).unwrap();
        let to_leg = SocketAddr::new(LOOPBACK, leg.local_port());
        let digit = |key: u8, seq: u16, end: bool| {
            let event = TelephoneEvent {
                event: key,
                end,
                volume: 10,
                duration: 160,
            };
            rtp(101, 9, seq, 8_000 * u32::from(key), true, &event.to_bytes())
        };
        // The intruder first: it latches the leg and its key is heard.
        intruder.send_to(&digit(1, 0, true), to_leg).await.unwrap();
        match leg.next_event().await {
            Some(LegEvent::Digit(d)) => assert_eq!(d.key, '1'),
            other => panic!("expected a digit, got {other:?}"),
        }
        assert!(recv(&intruder).await.is_some(), "latched to the intruder");
        // The peer speaks from its SDP address: the leg is its again.
        peer.send_to(&digit(5, 1, true), to_leg).await.unwrap();
        match leg.next_event().await {
            Some(LegEvent::Digit(d)) => assert_eq!(d.key, '5'),
            other => panic!("expected a digit, got {other:?}"),
        }
        while tokio::time::timeout(Duration::from_millis(1), peer.recv_from(&mut [0; 2048]))
            .await
            .is_ok()
        {}
        assert!(recv(&peer).await.is_some(), "music back to the peer");
        // The intruder's packets are now stray.
        intruder.send_to(&digit(7, 2, true), to_leg).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(event) = leg.events.try_recv() {
            assert!(
                !matches!(event, LegEvent::Digit(_)),
                "the intruder was heard after the peer: {event:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn in_band_dtmf_without_telephone_event() {
        let (engine, _pool) = engine(47_260);
        let phone = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let port = phone.local_addr().unwrap().port();
        let (mut leg, _) = engine
            .answer(offer(port, "0", "").as_bytes(), OFF)
            .await
            .unwrap();
        let to_leg = SocketAddr::new(LOOPBACK, leg.local_port());
        // '#' = 941 Hz + 1477 Hz for 100 ms, then silence.
        for k in 0..10u16 {
            let payload: Vec<u8> = (0..160)
                .map(|i| {
                    let t = f32::from(k * 160 + i) / 8_000.0;
                    let v = if k < 5 {
                        0.3 * (std::f32::consts::TAU * 941.0 * t).sin()
                            + 0.3 * (std::f32::consts::TAU * 1_477.0 * t).sin()
                    } else {
                        0.0
                    };
                    Codec::Pcmu.encode((v * 32_767.0) as i16)
                })
                .collect();
            phone
                .send_to(&rtp(0, 5, k, u32::from(k) * 160, false, &payload), to_leg)
                .await
                .unwrap();
        }
        match leg.next_event().await {
            Some(LegEvent::Digit(d)) => assert_eq!(d.key, '#'),
            other => panic!("expected a digit, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bridged_legs_relay_both_ways_with_transcoding() {
        let (engine, pool) = engine(47_280);
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let agent = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let caller_port = caller.local_addr().unwrap().port();
        let (caller_leg, _) = engine
            .answer(offer(caller_port, "0", "").as_bytes(), OFF)
            .await
            .unwrap();
        let (agent_leg, rgsd_offer) = engine.offer(OFF).await.unwrap();
        assert!(rgsd_offer.contains("RTP/AVP 0 8 101"));
        let agent_port = agent.local_addr().unwrap().port();
        agent_leg
            .accept_answer(offer(agent_port, "8", "").as_bytes())
            .unwrap();
        caller_leg.bridge(&agent_leg).unwrap();
        tokio::task::yield_now().await;

        let to_caller_leg = SocketAddr::new(LOOPBACK, caller_leg.local_port());
        let to_agent_leg = SocketAddr::new(LOOPBACK, agent_leg.local_port());
        let voice: Vec<u8> = (0..160i16)
            .map(|i| Codec::Pcmu.encode(i * 150 - 12_000))
            .collect();
        let mut agent_seq = None;
        for k in 0..3u16 {
            caller
                .send_to(
                    &rtp(
                        0,
                        0xCA11,
                        100 + k,
                        1_000 + 160 * u32::from(k),
                        k == 0,
                        &voice,
                    ),
                    to_caller_leg,
                )
                .await
                .unwrap();
            let (bytes, _) = recv(&agent).await.expect("relayed to the agent");
            let r = RtpReader::new(&bytes).unwrap();
            assert_eq!(r.payload_type(), 8);
            assert_ne!(r.ssrc(), 0xCA11);
            let seq = u16::from(r.sequence_number());
            if let Some(prev) = agent_seq {
                assert_eq!(seq, u16::wrapping_add(prev, 1));
            }
            agent_seq = Some(seq);
            let want: Vec<u8> = voice
                .iter()
                .map(|&c| crate::media::g711::ULAW_TO_ALAW[usize::from(c)])
                .collect();
            assert_eq!(r.payload(), &want[..]);
        }
        let answer: Vec<u8> = (0..160i16)
            .map(|i| Codec::Pcma.encode(9_000 - i * 100))
            .collect();
        agent
            .send_to(&rtp(8, 0xA6E7, 7, 99, true, &answer), to_agent_leg)
            .await
            .unwrap();
        let (bytes, _) = recv(&caller).await.expect("relayed to the caller");
        let r = RtpReader::new(&bytes).unwrap();
        assert_eq!(r.payload_type(), 0);
        assert_ne!(r.ssrc(), 0xA6E7);
        assert!(r.mark());
        let want: Vec<u8> = answer
            .iter()
            .map(|&c| crate::media::g711::ALAW_TO_ULAW[usize::from(c)])
            .collect();
        assert_eq!(r.payload(), &want[..]);

        // The caller puts rgsd on hold (sendonly): nothing is relayed to them.
        let hold = offer(caller_port, "0", "a=sendonly\r\n");
        let reply = caller_leg.answer_reoffer(hold.as_bytes()).unwrap();
        assert!(reply.contains("a=recvonly"));
        agent
            .send_to(&rtp(8, 0xA6E7, 8, 259, false, &answer), to_agent_leg)
            .await
            .unwrap();
        assert!(recv(&caller).await.is_none(), "paused on hold");
        // Resumed: relayed again, on the same stream.
        let resume = offer(caller_port, "0", "a=sendrecv\r\n");
        assert!(
            caller_leg
                .answer_reoffer(resume.as_bytes())
                .unwrap()
                .contains("a=sendrecv")
        );
        agent
            .send_to(&rtp(8, 0xA6E7, 9, 419, false, &answer), to_agent_leg)
            .await
            .unwrap();
        let (bytes, _) = recv(&caller).await.expect("resumed");
        assert_eq!(RtpReader::new(&bytes).unwrap().ssrc(), r.ssrc());
        // Closing one leg frees its port; the other stops relaying to it.
        agent_leg.close().await;
        caller
            .send_to(&rtp(0, 0xCA11, 200, 9_000, false, &voice), to_caller_leg)
            .await
            .unwrap();
        assert!(recv(&agent).await.is_none());
        caller_leg.close().await;
        assert_eq!(pool.available(), pool.size());
    }

    #[tokio::test(start_paused = true)]
    async fn legs_count_packets_sent_and_received_in_batches() {
        let (engine, pool) = engine(25_100);
        let counts = engine.rtp_counts();
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let agent = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let (caller_leg, _) = engine
            .answer(
                offer(caller.local_addr().unwrap().port(), "0", "").as_bytes(),
                OFF,
            )
            .await
            .unwrap();
        // A clone of the engine shares the totals.
        let (agent_leg, _) = engine.clone().offer(OFF).await.unwrap();
        agent_leg
            .accept_answer(offer(agent.local_addr().unwrap().port(), "0", "").as_bytes())
            .unwrap();
        // 30 prompt frames to the caller: under one batch, so not in the totals yet.
        assert_eq!(
            caller_leg.play_to_end(tone_clip(30)).await,
            Ok(PlayOutcome::Finished)
        );
        let mut heard = 0;
        while recv(&caller).await.is_some() {
            heard += 1;
        }
        assert_eq!(heard, 30);
        assert_eq!((counts.sent(), counts.received()), (0, 0));
        // Bridged: 60 packets from the caller, each relayed to the agent (received by the
        // caller's leg, sent by the agent's).
        caller_leg.bridge(&agent_leg).unwrap();
        tokio::task::yield_now().await;
        let to_caller_leg = SocketAddr::new(LOOPBACK, caller_leg.local_port());
        for k in 0..60u16 {
            caller
                .send_to(
                    &rtp(0, 0xCA11, k, 160 * u32::from(k), k == 0, &[0xFF; 160]),
                    to_caller_leg,
                )
                .await
                .unwrap();
            recv(&agent).await.expect("relayed to the agent");
        }
        // One full batch each way is in; the rest waits for the next batch or the leg's end.
        assert_eq!((counts.sent(), counts.received()), (50, 50));
        agent_leg.close().await;
        caller_leg.close().await;
        assert_eq!(pool.available(), pool.size());
        // Ended legs are counted exactly: 30 played + 60 relayed, 60 received.
        assert_eq!((counts.sent(), counts.received()), (90, 60));
    }

    /// The key in the first `a=crypto` line of `sdp`.
    fn crypto_key(sdp: &str) -> MasterKey {
        use base64::Engine as _;
        let line = sdp.lines().find(|l| l.starts_with("a=crypto:")).unwrap();
        let b64 = line.split("inline:").nth(1).unwrap();
        let b64 = b64.split(['|', ' ']).next().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        MasterKey::from_bytes(bytes.try_into().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn an_srtp_caller_bridged_to_a_plain_agent_is_decrypted_and_encrypted() {
        use crate::media::sdp::{CryptoSuite, MASTER_LEN, Sdes};
        let (engine, pool) = engine(47_340);
        let counts = engine.rtp_counts();
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let agent = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let caller_key = MasterKey::from_bytes([0x42; MASTER_LEN]);
        let crypto = format!(
            "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                [0x42u8; MASTER_LEN]
            )
        );
        let savp =
            offer(caller.local_addr().unwrap().port(), "0", &crypto).replace("RTP/AVP", "RTP/SAVP");
        // Plain RTP only refuses it; required takes it.
        assert!(matches!(
            engine.answer(savp.as_bytes(), OFF).await,
            Err(LegError::Sdp(AnswerError::SrtpOff))
        ));
        let (caller_leg, answer) = engine
            .answer(savp.as_bytes(), SrtpPolicy::Required)
            .await
            .unwrap();
        assert!(answer.contains("RTP/SAVP 0"), "{answer}");
        assert!(answer.contains("a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:"));
        let rgsd_key = crypto_key(&answer);
        assert_ne!(rgsd_key, caller_key);
        let mut phone = SrtpSession::new(Sdes {
            suite: CryptoSuite::AesCm128HmacSha1_32,
            ours: caller_key,
            theirs: rgsd_key,
        })
        .unwrap();
        let (agent_leg, _) = engine.offer(OFF).await.unwrap();
        agent_leg
            .accept_answer(offer(agent.local_addr().unwrap().port(), "0", "").as_bytes())
            .unwrap();
        caller_leg.bridge(&agent_leg).unwrap();
        tokio::task::yield_now().await;
        let to_caller_leg = SocketAddr::new(LOOPBACK, caller_leg.local_port());
        let to_agent_leg = SocketAddr::new(LOOPBACK, agent_leg.local_port());
        let voice = [0x11u8; 160];
        // Caller → agent: decrypted, relayed in clear.
        let sealed = phone
            .protect(&rtp(0, 0xCA11, 1, 160, true, &voice))
            .unwrap();
        caller.send_to(&sealed, to_caller_leg).await.unwrap();
        let (bytes, _) = recv(&agent).await.expect("relayed to the agent");
        assert_eq!(RtpReader::new(&bytes).unwrap().payload(), &voice[..]);
        // A tampered packet and a replay are dropped and counted, not relayed.
        let mut tampered = phone
            .protect(&rtp(0, 0xCA11, 2, 320, false, &voice))
            .unwrap()
            .to_vec();
        tampered[20] ^= 0x80;
        caller.send_to(&tampered, to_caller_leg).await.unwrap();
        caller.send_to(&sealed, to_caller_leg).await.unwrap();
        assert!(recv(&agent).await.is_none(), "nothing relayed");
        assert_eq!(counts.srtp_auth_failures(), 2);
        // Agent → caller: encrypted with rgsd's key.
        let reply = [0x22u8; 160];
        agent
            .send_to(&rtp(0, 0xA6E7, 5, 800, true, &reply), to_agent_leg)
            .await
            .unwrap();
        let (bytes, _) = recv(&caller).await.expect("relayed to the caller");
        assert!(!bytes.windows(32).any(|w| w == [0x22; 32]), "sent in clear");
        let mut buf = [0u8; MAX_PACKET];
        buf[..bytes.len()].copy_from_slice(&bytes);
        let n = phone.unprotect(&mut buf, bytes.len()).unwrap();
        assert_eq!(RtpReader::new(&buf[..n]).unwrap().payload(), &reply[..]);
        agent_leg.close().await;
        caller_leg.close().await;
        assert_eq!(pool.available(), pool.size());
    }

    #[tokio::test(start_paused = true)]
    async fn silence_from_the_peer_raises_media_timeout() {
        let pool = PortPool::new(LOOPBACK, 47_300..=47_303);
        let options = LegOptions {
            rtp_timeout: Some(Duration::from_secs(5)),
        };
        let engine = MediaEngine::new(pool, LOOPBACK, options);
        let (mut leg, _) = engine
            .answer(offer(9, "0", "").as_bytes(), OFF)
            .await
            .unwrap();
        let start = Instant::now();
        assert_eq!(leg.next_event().await, Some(LegEvent::MediaTimeout));
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        assert!(matches!(
            engine.answer(offer(9, "18", "").as_bytes(), OFF).await,
            Err(LegError::Sdp(e)) if e.sip_status() == 488
        ));
    }
}
