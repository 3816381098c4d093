//! UDP, TCP and TLS transports: listeners, stream framing, and sending on a flow.
//!
//! Each UDP socket and each TCP or TLS connection has a task that reads, frames and forwards
//! `TransportEvent`s to the endpoint's driver; the driver sends through `Transports` without
//! awaiting (UDP `try_send_to`; streams through the connection's writer queue), so one slow peer
//! never stalls the others. TLS is another stream kind beside TCP: the same framing, the same
//! [`Flow::Stream`]; its handshake runs on the connection's own task, under a time limit, so a
//! client that stalls mid-handshake holds only its own connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::message::{MAX_MESSAGE_SIZE, ParseError, content_length, header_end};
use super::tls::{self, TlsContexts};
use crate::config::model::{Listen, Transport};

/// Where a message came from or goes to, beyond the peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// A UDP socket, by index into the bound listeners.
    Udp(usize),
    /// A TCP or TLS connection (inbound or outbound), by id.
    Stream(u64),
}

impl Flow {
    /// Whether the transport is reliable (no retransmission timers A, E, G).
    pub fn is_reliable(self) -> bool {
        matches!(self, Self::Stream(_))
    }
}

/// A listener after binding (port 0 resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundListener {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// What the transport tasks tell the driver.
#[derive(Debug)]
pub(crate) enum TransportEvent {
    /// One whole message (a datagram, or one frame cut from a stream).
    Message {
        bytes: Bytes,
        source: SocketAddr,
        flow: Flow,
    },
    /// An inbound stream connection was accepted (for TLS: its handshake done); its writer
    /// queue.
    Opened {
        id: u64,
        peer: SocketAddr,
        transport: Transport,
        writer: mpsc::Sender<Bytes>,
    },
    /// A stream connection closed or failed to connect.
    Closed { id: u64, peer: SocketAddr },
}

/// Why binding the listeners failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A socket could not be bound.
    #[error("cannot bind {transport:?} {addr}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No listener was configured.
    #[error("no SIP listener configured")]
    NoListener,
    /// The TLS contexts could not be built.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
    /// A `tls:` listener without `[server] tls` certificate.
    #[error("the TLS listener {0} has no certificate ([server] tls)")]
    NoCertificate(SocketAddr),
}

/// Which connection a stream is, for reuse: the peer, TCP or TLS, and for outbound TLS the
/// name its certificate was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PeerKey {
    peer: SocketAddr,
    transport: Transport,
    name: Option<Arc<str>>,
}

struct Stream {
    writer: mpsc::Sender<Bytes>,
    key: PeerKey,
}

/// Cuts one message off the front of a stream buffer.
///
/// Returns `Ok(None)` until a whole message is buffered. Leading CRLF keep-alives are
/// discarded. A stream message without Content-Length is taken to have no body (RFC 3261 §18.3
/// makes the header mandatory on streams).
///
/// # Errors
///
/// [`ParseError::TooLarge`] when headers or body exceed [`MAX_MESSAGE_SIZE`], or a bad
/// Content-Length: the connection must then be closed, as framing is lost.
pub fn next_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, ParseError> {
    let skip = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let _ = buf.split_to(skip);
    let Some(head) = header_end(buf) else {
        return if buf.len() > MAX_MESSAGE_SIZE {
            Err(ParseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let body = content_length(&buf[..head])?.unwrap_or(0);
    let total = head.checked_add(body).ok_or(ParseError::TooLarge)?;
    if total > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

/// The sockets and connections the driver sends on.
pub(crate) struct Transports {
    /// UDP sockets by [`Flow::Udp`] index; a closed listener leaves `None` so that the
    /// indexes of the others stay valid.
    udp: Vec<Option<(Arc<UdpSocket>, SocketAddr)>>,
    /// Writer queues of open stream connections.
    streams: HashMap<u64, Stream>,
    /// Connection reuse: peer (address, transport, TLS name) to connection id.
    by_peer: HashMap<PeerKey, u64>,
    next_id: Arc<AtomicU64>,
    /// Inbound connections open now (bounded by [`MAX_INBOUND_STREAMS`]).
    inbound: Arc<AtomicUsize>,
    /// TLS contexts for new connections, replaced on reload.
    tls: Arc<ArcSwap<TlsContexts>>,
    events: mpsc::Sender<TransportEvent>,
    /// Open listeners: as configured, as bound, and the token that closes each.
    listeners: Vec<(Listen, BoundListener, CancellationToken)>,
    shutdown: CancellationToken,
}

/// Stream writer queue depth; a peer this far behind is dropped.
const STREAM_QUEUE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most inbound TCP and TLS connections open at once, all listeners together. Beyond it a new
/// connection is accepted and closed at once (counted, logged once a minute), so connections
/// opened and left idle by the thousand cannot take the descriptors calls need (each call
/// holds up to two RTP sockets; the unit's `LimitNOFILE` is 65,536).
pub(crate) const MAX_INBOUND_STREAMS: usize = 4096;
/// An inbound connection that has not carried one whole SIP message this long after it was
/// accepted (after the TLS handshake) is closed. Once it has, it lives as long as the peer
/// keeps it: dialogs over it may be idle for hours.
pub(crate) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A write to a connection that cannot complete this long (the peer stopped reading and its
/// window is full) closes that connection; nothing else waits for it.
pub(crate) const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Transports {
    /// Binds every listener and starts its reader task.
    pub(crate) fn bind(
        listen: &[Listen],
        tls: TlsContexts,
        events: mpsc::Sender<TransportEvent>,
        shutdown: CancellationToken,
    ) -> Result<Self, BindError> {
        if listen.is_empty() {
            return Err(BindError::NoListener);
        }
        let mut this = Self {
            udp: Vec::new(),
            streams: HashMap::new(),
            by_peer: HashMap::new(),
            next_id: Arc::new(AtomicU64::new(1)),
            inbound: Arc::new(AtomicUsize::new(0)),
            tls: Arc::new(ArcSwap::from_pointee(tls)),
            events,
            listeners: Vec::new(),
            shutdown,
        };
        for l in listen {
            this.open(l)?;
        }
        Ok(this)
    }

    /// Binds one more listener (at once: binding does not wait) and starts its task.
    pub(crate) fn open(&mut self, l: &Listen) -> Result<BoundListener, BindError> {
        let err = |source| BindError::Bind {
            transport: l.transport,
            addr: l.addr,
            source,
        };
        let token = self.shutdown.child_token();
        let bound = match l.transport {
            Transport::Udp => {
                let socket = std::net::UdpSocket::bind(l.addr).map_err(err)?;
                socket.set_nonblocking(true).map_err(err)?;
                let socket = UdpSocket::from_std(socket).map_err(err)?;
                widen_buffers(&socket);
                let socket = Arc::new(socket);
                let addr = socket.local_addr().map_err(err)?;
                let index = self.udp.len();
                self.udp.push(Some((socket.clone(), addr)));
                tokio::spawn(udp_reader(
                    socket,
                    index,
                    self.events.clone(),
                    token.clone(),
                ));
                BoundListener {
                    transport: Transport::Udp,
                    addr,
                }
            }
            Transport::Tcp | Transport::Tls => {
                let tls = match l.transport {
                    Transport::Tls if self.tls.load().acceptor.is_none() => {
                        return Err(BindError::NoCertificate(l.addr));
                    }
                    Transport::Tls => Some(self.tls.clone()),
                    _ => None,
                };
                let listener = bind_tcp(l.addr).map_err(err)?;
                let addr = listener.local_addr().map_err(err)?;
                tokio::spawn(stream_acceptor(
                    listener,
                    tls,
                    self.next_id.clone(),
                    self.inbound.clone(),
                    self.events.clone(),
                    token.clone(),
                    self.shutdown.clone(),
                ));
                BoundListener {
                    transport: l.transport,
                    addr,
                }
            }
        };
        self.listeners.push((*l, bound, token));
        Ok(bound)
    }

    /// Closes the listener configured as `l`. Connections it accepted stay open until they
    /// close on their own, so dialogs over them may finish.
    pub(crate) fn close(&mut self, l: &Listen) -> Option<BoundListener> {
        let at = self.listeners.iter().position(|(c, _, _)| c == l)?;
        let (_, bound, token) = self.listeners.remove(at);
        token.cancel();
        if bound.transport == Transport::Udp {
            for slot in &mut self.udp {
                if slot.as_ref().is_some_and(|(_, a)| *a == bound.addr) {
                    *slot = None;
                }
            }
        }
        Some(bound)
    }

    /// The listeners as configured, in the order opened.
    pub(crate) fn configured(&self) -> Vec<Listen> {
        self.listeners.iter().map(|(l, _, _)| *l).collect()
    }

    pub(crate) fn bound(&self) -> Vec<BoundListener> {
        self.listeners.iter().map(|(_, b, _)| *b).collect()
    }

    /// New connections use `tls` from now on; open ones keep what they were made with.
    pub(crate) fn set_tls(&self, tls: TlsContexts) {
        self.tls.store(Arc::new(tls));
    }

    /// The transport a flow uses (what Via and Contact say).
    pub(crate) fn transport_of(&self, flow: Flow) -> Transport {
        match flow {
            Flow::Udp(_) => Transport::Udp,
            Flow::Stream(id) => self
                .streams
                .get(&id)
                .map_or(Transport::Tcp, |s| s.key.transport),
        }
    }

    /// The local address a flow sends from (for Via and Contact ports): for a stream, the port
    /// of the listener of its transport.
    pub(crate) fn local_port(&self, flow: Flow) -> u16 {
        match flow {
            Flow::Udp(i) => self
                .udp
                .get(i)
                .and_then(Option::as_ref)
                .map_or(0, |(_, a)| a.port()),
            Flow::Stream(_) => {
                let transport = self.transport_of(flow);
                self.listeners
                    .iter()
                    .find(|(_, b, _)| b.transport == transport)
                    .map_or(0, |(_, b, _)| b.addr.port())
            }
        }
    }

    /// A UDP flow able to reach `dest` (same address family), if any.
    pub(crate) fn udp_flow_for(&self, dest: SocketAddr) -> Option<Flow> {
        self.udp
            .iter()
            .position(|slot| {
                slot.as_ref()
                    .is_some_and(|(_, a)| a.is_ipv4() == dest.is_ipv4())
            })
            .map(Flow::Udp)
    }

    /// The stream connection to `dest`, opening one if needed: TCP, or TLS when `tls_name`
    /// says which name the peer's certificate must carry. Connections are reused by (address,
    /// transport, name). Bytes queued before the connection is up are sent once it is; a failed
    /// connect or handshake reports [`TransportEvent::Closed`].
    pub(crate) fn stream_flow_for(&mut self, dest: SocketAddr, tls_name: Option<&str>) -> Flow {
        let key = PeerKey {
            peer: dest,
            transport: if tls_name.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            },
            name: tls_name.map(Arc::from),
        };
        if let Some(id) = self.by_peer.get(&key)
            && self.streams.contains_key(id)
        {
            return Flow::Stream(*id);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        self.streams.insert(
            id,
            Stream {
                writer: tx,
                key: key.clone(),
            },
        );
        let name = key.name.clone();
        self.by_peer.insert(key, id);
        let events = self.events.clone();
        let shutdown = self.shutdown.clone();
        let tls = name.map(|n| (n, self.tls.load_full()));
        tokio::spawn(async move {
            let closed = TransportEvent::Closed { id, peer: dest };
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dest)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%dest, error = %e, "TCP connect failed");
                    let _ = events.send(closed).await;
                    return;
                }
                Err(_) => {
                    tracing::debug!(%dest, "TCP connect timed out");
                    let _ = events.send(closed).await;
                    return;
                }
            };
            let Some((name, tls)) = tls else {
                run_stream(tcp, dest, id, rx, events, shutdown, None).await;
                return;
            };
            let Some(server_name) = tls::server_name(&name) else {
                tracing::warn!(peer = %dest, %name, "TLS connection not opened: the name is not a DNS name or IP address");
                let _ = events.send(closed).await;
                return;
            };
            let handshake = tls.connector.connect(server_name, tcp);
            match tokio::time::timeout(tls.handshake_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    tracing::debug!(peer = %dest, %name, "TLS connection up");
                    run_stream(stream, dest, id, rx, events, shutdown, None).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %dest, %name, reason = %tls::reason(&e), "TLS connection to the peer refused");
                    let _ = events.send(closed).await;
                }
                Err(_) => {
                    tracing::warn!(peer = %dest, %name, reason = "the handshake timed out", "TLS connection to the peer refused");
                    let _ = events.send(closed).await;
                }
            }
        });
        Flow::Stream(id)
    }

    /// Registers an accepted connection's writer.
    pub(crate) fn adopt_stream(
        &mut self,
        id: u64,
        peer: SocketAddr,
        transport: Transport,
        writer: mpsc::Sender<Bytes>,
    ) {
        let key = PeerKey {
            peer,
            transport,
            name: None,
        };
        self.by_peer.entry(key.clone()).or_insert(id);
        self.streams.insert(id, Stream { writer, key });
    }

    /// The TLS name an outbound stream was opened with (to open it again the same way).
    pub(crate) fn tls_name(&self, flow: Flow) -> Option<Arc<str>> {
        match flow {
            Flow::Stream(id) => self.streams.get(&id).and_then(|s| s.key.name.clone()),
            Flow::Udp(_) => None,
        }
    }

    pub(crate) fn has_stream(&self, id: u64) -> bool {
        self.streams.contains_key(&id)
    }

    pub(crate) fn forget_stream(&mut self, id: u64) {
        if let Some(stream) = self.streams.remove(&id)
            && self.by_peer.get(&stream.key) == Some(&id)
        {
            self.by_peer.remove(&stream.key);
        }
    }

    /// Sends without waiting. Returns false when the message could not be queued (the
    /// connection is gone, or the socket buffer is full): UDP retransmission covers the latter.
    pub(crate) fn send(&self, flow: Flow, dest: SocketAddr, bytes: Bytes) -> bool {
        match flow {
            Flow::Udp(i) => {
                let Some(Some((socket, _))) = self.udp.get(i) else {
                    return false;
                };
                match socket.try_send_to(&bytes, dest) {
                    Ok(_) => true,
                    // tokio learns a socket is writable only from the reactor, so the first
                    // send on a fresh socket (or one with a full buffer) reports WouldBlock:
                    // finish it on a task that waits for writability.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let socket = socket.clone();
                        tokio::spawn(async move {
                            if let Err(e) = socket.send_to(&bytes, dest).await {
                                tracing::debug!(%dest, error = %e, "UDP send failed");
                            }
                        });
                        true
                    }
                    Err(e) => {
                        tracing::debug!(%dest, error = %e, "UDP send failed");
                        false
                    }
                }
            }
            Flow::Stream(id) => match self.streams.get(&id) {
                Some(stream) => stream.writer.try_send(bytes).is_ok(),
                None => false,
            },
        }
    }
}

/// Socket buffer size asked for on SIP UDP sockets (both directions). The kernel default
/// (about 208 KiB, some 150 datagrams) overflows when a burst of requests meets a worker thread
/// that was descheduled for a few tens of milliseconds: at 2,000 calls/s (10,000 SIP messages/s)
/// 50 ms is 500 datagrams, and each one dropped costs a caller a 500 ms retransmission. Linux
/// caps the request at `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER: usize = 4 << 20;

/// Asks for [`UDP_BUFFER`]-sized socket buffers and says what the kernel granted.
fn widen_buffers(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    // Failures leave the kernel default, which works at lower rates: log and go on.
    if let Err(e) = sock.set_recv_buffer_size(UDP_BUFFER) {
        tracing::warn!(error = %e, "cannot set the SIP UDP receive buffer size");
    }
    if let Err(e) = sock.set_send_buffer_size(UDP_BUFFER) {
        tracing::warn!(error = %e, "cannot set the SIP UDP send buffer size");
    }
    // Linux reports twice the size it books (the bookkeeping overhead).
    let granted = sock.recv_buffer_size().unwrap_or(0) / 2;
    if granted < UDP_BUFFER / 2 {
        tracing::info!(
            granted_bytes = granted,
            wanted_bytes = UDP_BUFFER,
            "SIP UDP receive buffer smaller than wanted; raise net.core.rmem_max for bursts at high call rates"
        );
    } else {
        tracing::debug!(granted_bytes = granted, "SIP UDP receive buffer");
    }
}

async fn udp_reader(
    socket: Arc<UdpSocket>,
    index: usize,
    events: mpsc::Sender<TransportEvent>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, source)) => {
                let bytes = Bytes::copy_from_slice(&buf[..len]);
                let event = TransportEvent::Message {
                    bytes,
                    source,
                    flow: Flow::Udp(index),
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable and the like surface here on some systems: keep reading.
            Err(e) => tracing::debug!(error = %e, "UDP receive error"),
        }
    }
}

/// A TCP listener bound at once, with `SO_REUSEADDR` as tokio's own `bind` sets it.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until the listener is closed (`closed`); each connection lives until
/// it ends or the endpoint stops (`shutdown`). With `tls`, each connection's handshake runs on
/// its own task, limited to the contexts' `handshake_timeout`; a failed or stalled one is
/// logged and closed without touching the others.
async fn stream_acceptor(
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<TlsContexts>>>,
    next_id: Arc<AtomicU64>,
    inbound: Arc<AtomicUsize>,
    events: mpsc::Sender<TransportEvent>,
    closed: CancellationToken,
    shutdown: CancellationToken,
) {
    // Connections refused at the cap since the last minute's log line.
    let mut refused: u64 = 0;
    // Failed handshakes are logged a few a minute in full, then counted (see `tls::FailureLog`).
    let failures = Arc::new(std::sync::Mutex::new(tls::FailureLog::default()));
    let mut minute = tokio::time::interval(Duration::from_secs(60));
    minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            () = closed.cancelled() => return,
            _ = minute.tick() => {
                if refused > 0 {
                    tracing::warn!(refused, limit = MAX_INBOUND_STREAMS, "inbound connections refused in the last minute: too many open");
                    refused = 0;
                }
                let summary = failures.lock().ok().and_then(|mut f| f.roll(Instant::now()));
                if let Some(summary) = summary {
                    summary.log();
                }
                continue;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = InboundSlot::take(&inbound) else {
                    // Closed at once: the peer sees the connection end (or a reset).
                    drop(stream);
                    refused += 1;
                    continue;
                };
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let events = events.clone();
                let shutdown = shutdown.clone();
                let Some(tls) = &tls else {
                    tokio::spawn(async move {
                        serve_accepted(stream, peer, Transport::Tcp, id, events, shutdown).await;
                        drop(slot);
                    });
                    continue;
                };
                let tls = tls.load_full();
                let failures = Arc::clone(&failures);
                let failed = move |reason: &str| {
                    let note = failures
                        .lock()
                        .ok()
                        .map(|mut f| f.note(Instant::now(), peer, reason));
                    if let Some(summary) = note.as_ref().and_then(|n| n.summary.as_ref()) {
                        summary.log();
                    }
                    note.is_none_or(|n| n.full)
                };
                tokio::spawn(async move {
                    let _slot = slot;
                    let Some(acceptor) = tls.acceptor.clone() else {
                        let reason = "no certificate configured";
                        if failed(reason) {
                            tracing::warn!(%peer, reason, "TLS client refused");
                        }
                        return;
                    };
                    let handshake = acceptor.accept(stream);
                    let stream = tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = tokio::time::timeout(tls.handshake_timeout, handshake) => r,
                    };
                    match stream {
                        Ok(Ok(stream)) => {
                            serve_accepted(stream, peer, Transport::Tls, id, events, shutdown)
                                .await;
                        }
                        Ok(Err(e)) => {
                            let reason = tls::reason(&e);
                            if failed(&reason) {
                                tracing::warn!(%peer, %reason, "TLS handshake with a client failed; connection closed");
                            }
                        }
                        Err(_) => {
                            if failed("the handshake timed out") {
                                tracing::warn!(%peer, timeout = ?tls.handshake_timeout, "TLS client did not finish its handshake in time; connection closed");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Hands an accepted connection's writer to the driver, then runs it. The writer reaches the
/// driver before any message of this connection.
async fn serve_accepted<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    id: u64,
    events: mpsc::Sender<TransportEvent>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let opened = TransportEvent::Opened {
        id,
        peer,
        transport,
        writer: tx,
    };
    if events.send(opened).await.is_ok() {
        run_stream(
            stream,
            peer,
            id,
            rx,
            events,
            shutdown,
            Some(FIRST_MESSAGE_TIMEOUT),
        )
        .await;
    }
}

/// One of the [`MAX_INBOUND_STREAMS`] places, given back when dropped.
struct InboundSlot(Arc<AtomicUsize>);

impl InboundSlot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_INBOUND_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(Arc::clone(open)))
    }
}

impl Drop for InboundSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads frames from and writes queued bytes to one stream (TCP or TLS) until it closes.
/// `first_message_within`: close it unless a whole SIP message arrives that soon (inbound
/// connections, [`FIRST_MESSAGE_TIMEOUT`]).
async fn run_stream<S>(
    stream: S,
    peer: SocketAddr,
    id: u64,
    mut outgoing: mpsc::Receiver<Bytes>,
    events: mpsc::Sender<TransportEvent>,
    shutdown: CancellationToken,
    first_message_within: Option<Duration>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8192);
    let mut silent_until = first_message_within.map(|d| tokio::time::Instant::now() + d);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = crate::util::sleep_until(silent_until) => {
                tracing::debug!(%peer, "connection carried no SIP message in time; closing");
                break;
            }
            out = outgoing.recv() => match out {
                Some(bytes) => {
                    // TLS buffers records until flushed; for TCP the flush is free.
                    let write = async { writer.write_all(&bytes).await?; writer.flush().await };
                    match tokio::time::timeout(STREAM_WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "stream write failed");
                            break;
                        }
                        Err(_) => {
                            tracing::info!(%peer, timeout = ?STREAM_WRITE_TIMEOUT, "peer stopped reading its connection; closing it");
                            break;
                        }
                    }
                }
                None => break,
            },
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => loop {
                    match next_frame(&mut buf) {
                        Ok(Some(bytes)) => {
                            silent_until = None;
                            let event = TransportEvent::Message { bytes, source: peer, flow: Flow::Stream(id) };
                            if events.send(event).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TCP framing lost; closing");
                            let _ = events.send(TransportEvent::Closed { id, peer }).await;
                            return;
                        }
                    }
                },
            },
        }
    }
    let _ = events.send(TransportEvent::Closed { id, peer }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_under_test(
        buffer: usize,
    ) -> (
        tokio::io::DuplexStream,
        mpsc::Sender<Bytes>,
        mpsc::Receiver<TransportEvent>,
    ) {
        let (ours, theirs) = tokio::io::duplex(buffer);
        let (out_tx, out_rx) = mpsc::channel(STREAM_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(16);
        let peer = "127.0.0.1:5060".parse().unwrap();
        tokio::spawn(run_stream(
            ours,
            peer,
            7,
            out_rx,
            events_tx,
            CancellationToken::new(),
            Some(FIRST_MESSAGE_TIMEOUT),
        ));
        (theirs, out_tx, events_rx)
    }

    #[tokio::test(start_paused = true)]
    async fn an_inbound_connection_silent_past_the_first_message_timeout_is_closed() {
        let (mut theirs, _out, mut events) = stream_under_test(4096);
        // Keep-alives are not messages.
        theirs.write_all(b"\r\n\r\n").await.unwrap();
        tokio::time::sleep(FIRST_MESSAGE_TIMEOUT - Duration::from_secs(1)).await;
        assert!(events.try_recv().is_err(), "closed too early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(
            events.recv().await,
            Some(TransportEvent::Closed { id: 7, .. })
        ));
        let mut rest = Vec::new();
        assert_eq!(
            theirs.read_to_end(&mut rest).await.unwrap(),
            0,
            "ours hung up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_carried_a_message_may_stay_idle() {
        let (mut theirs, _out, mut events) = stream_under_test(4096);
        theirs
            .write_all(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(
            events.recv().await,
            Some(TransportEvent::Message { .. })
        ));
        tokio::time::sleep(FIRST_MESSAGE_TIMEOUT * 10).await;
        assert!(
            events.try_recv().is_err(),
            "an idle dialog connection was closed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_loses_its_connection_after_the_write_timeout() {
        let (mut theirs, out, mut events) = stream_under_test(64);
        theirs
            .write_all(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(
            events.recv().await,
            Some(TransportEvent::Message { .. })
        ));
        // 1 KiB into a 64-byte pipe nobody reads.
        out.send(Bytes::from(vec![b'x'; 1024])).await.unwrap();
        tokio::time::sleep(STREAM_WRITE_TIMEOUT - Duration::from_secs(1)).await;
        assert!(events.try_recv().is_err(), "closed too early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(
            events.recv().await,
            Some(TransportEvent::Closed { id: 7, .. })
        ));
    }

    #[test]
    fn inbound_places_run_out_at_the_limit_and_come_back_when_dropped() {
        let open = Arc::new(AtomicUsize::new(MAX_INBOUND_STREAMS - 1));
        let last = InboundSlot::take(&open).expect("one place left");
        assert!(InboundSlot::take(&open).is_none(), "over the limit");
        drop(last);
        assert!(InboundSlot::take(&open).is_some());
    }

    #[test]
    fn frames_by_content_length_and_skips_keepalives() {
        let mut buf = BytesMut::from(
            &b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcBYE sip:x SIP/2.0\r\nl: 0\r\n"[..],
        );
        let first = next_frame(&mut buf).unwrap().unwrap();
        assert!(first.starts_with(b"OPTIONS") && first.ends_with(b"abc"));
        assert_eq!(
            next_frame(&mut buf).unwrap(),
            None,
            "second still incomplete"
        );
        buf.extend_from_slice(b"\r\n");
        let second = next_frame(&mut buf).unwrap().unwrap();
        assert!(second.starts_with(b"BYE"));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_frames() {
        let mut buf =
            BytesMut::from(&b"INVITE sip:a SIP/2.0\r\nContent-Length: 99999999\r\n\r\n"[..]);
        assert_eq!(next_frame(&mut buf), Err(ParseError::TooLarge));
        let mut endless = BytesMut::from(&vec![b'a'; MAX_MESSAGE_SIZE + 10][..]);
        assert_eq!(next_frame(&mut endless), Err(ParseError::TooLarge));
    }
}
