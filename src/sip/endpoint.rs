//! The [`Endpoint`]: the B2BUA's SIP side. One driver task owns every transaction, dialog and
//! call leg; transports feed it messages, handles feed it commands, and a timer heap feeds it
//! the time. All protocol decisions are made by the pure parts (`transaction`, `dialog`,
//! `policy`); this file routes between them and the sockets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::call::{
    CallEvent, CallInfo, Command, EndpointGone, Handle, IncomingCall, LegFailure, LegId,
    OutboundCall, OutboundRequest,
};
use super::dialog::Dialog;
use super::message::{
    self, BRANCH_COOKIE, Headers, Message, Method, NameAddr, ParseError, Request, Response, Via,
};
use super::policy::{RateLimit, RateLimiter, Verdict, is_trusted};
use super::transaction::{
    Action, Answer2xx, ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState,
    ServerInvite, ServerNonInvite, TransactionKey,
};
use super::transport::{BindError, BoundListener, Flow, TransportEvent, Transports};
use crate::config::model::{Listen, Server, SipUri, Transport};
use crate::util::random_token;

/// Methods we implement, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
/// Smallest Session-Expires we accept (RFC 4028 §4 recommends 90 s).
const MIN_SE: u32 = 90;
/// Seconds a caller is told to wait when we are at `max_calls`.
const RETRY_AFTER: &str = "5";
/// Longest the endpoint keeps running after shutdown for requests already sent (a last BYE)
/// to get their final responses.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// Queue of inbound calls waiting for the controller; beyond it new INVITEs get 503. It only
/// absorbs bursts (the controller spawns a task per call and takes the next): 64 filled in
/// 21 ms at 3,000 calls/s whenever the controller's worker thread was descheduled for that long
/// on a loaded machine, refusing calls well below `max_calls`. Each entry is one `IncomingCall`
/// (the caller's headers and SDP, under 2 KiB), so 4,096 cost at most about 8 MiB.
const INCOMING_QUEUE: usize = 4096;

/// What the endpoint needs from `[server]`.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub listen: Vec<Listen>,
    /// Host written into Via and Contact.
    pub advertised_host: String,
    /// Sources allowed to create dialogs; others get 403.
    pub trusted_peers: Vec<IpNet>,
    /// Concurrent inbound calls before new INVITEs get 503 with Retry-After.
    pub max_calls: u32,
    /// Per-source request limit; `None` turns it off (`sip_rate_limit.per_second = 0`).
    pub rate_limit: Option<RateLimit>,
}

impl EndpointConfig {
    pub fn from_server(server: &Server) -> Self {
        Self {
            listen: server.sip_listen.clone(),
            advertised_host: server.advertised_host.clone(),
            trusted_peers: server.trusted_peers.clone(),
            max_calls: server.max_calls,
            rate_limit: server.sip_rate_limit.map(RateLimit::from),
        }
    }
}

/// What the upper layer says about an inbound INVITE's Request-URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDecision {
    /// A workflow takes it: hand the call up.
    Accept,
    /// No workflow has this URI: 404.
    NotFound,
    /// The workflow exists but is inactive: 480.
    Inactive,
}

/// The upper layer's lookup from Request-URI (and To) to a workflow. Called on the driver
/// task for every new INVITE, so it must be synchronous and cheap (read an `ArcSwap`).
pub trait CallRouter: Send + Sync {
    fn route(&self, request_uri: &str, to: &str) -> RouteDecision;
}

impl<F> CallRouter for F
where
    F: Fn(&str, &str) -> RouteDecision + Send + Sync,
{
    fn route(&self, request_uri: &str, to: &str) -> RouteDecision {
        self(request_uri, to)
    }
}

/// Why [`Endpoint::invite`] could not start a leg.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    /// The target is not a SIP URI we can parse.
    #[error("target {0} is not a usable SIP URI")]
    BadTarget(String),
    /// The target host did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The endpoint has shut down.
    #[error(transparent)]
    Gone(#[from] EndpointGone),
}

/// Transactions the endpoint has started since it was bound, by side (for metrics: the
/// driver bumps them, anyone holding the `Arc` reads them).
#[derive(Debug, Default)]
pub struct TransactionCounts {
    server: AtomicU64,
    client: AtomicU64,
}

impl TransactionCounts {
    /// Server transactions: requests received that started one (retransmissions and ACKs
    /// excluded).
    pub fn server(&self) -> u64 {
        self.server.load(Ordering::Relaxed)
    }

    /// Client transactions: requests rgsd sent (INVITE, CANCEL, BYE, REGISTER …).
    pub fn client(&self) -> u64 {
        self.client.load(Ordering::Relaxed)
    }
}

/// A cloneable handle to the running endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    commands: mpsc::UnboundedSender<Command>,
    bound: Arc<[BoundListener]>,
    next_leg: Arc<AtomicU64>,
    host: Arc<str>,
    transactions: Arc<TransactionCounts>,
    /// Cancelled when the driver has stopped (and with it the sockets).
    stopped: CancellationToken,
}

impl Endpoint {
    /// Binds every listener and starts the driver. Inbound calls that pass the edge policy
    /// arrive on the returned receiver. The endpoint runs until `shutdown` is cancelled.
    ///
    /// # Errors
    ///
    /// [`BindError`] when a listener cannot be bound.
    pub async fn bind(
        config: EndpointConfig,
        router: Arc<dyn CallRouter>,
        shutdown: CancellationToken,
    ) -> Result<(Self, mpsc::Receiver<IncomingCall>), BindError> {
        let (transport_tx, transport_rx) = mpsc::channel(1024);
        // The sockets stop with the driver, after its drain, not at `shutdown`: the drain needs
        // the responses.
        let stopped = CancellationToken::new();
        let transports = Transports::bind(&config.listen, transport_tx, stopped.clone()).await?;
        let bound: Arc<[BoundListener]> = transports.bound().into();
        for b in bound.iter() {
            tracing::info!(transport = ?b.transport, addr = %b.addr, "SIP listening");
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let next_leg = Arc::new(AtomicU64::new(1));
        let transactions = Arc::new(TransactionCounts::default());
        let endpoint = Self {
            commands: commands.clone(),
            bound,
            next_leg: next_leg.clone(),
            host: config.advertised_host.clone().into(),
            transactions: Arc::clone(&transactions),
            stopped: stopped.clone(),
        };
        let driver = Driver {
            limiter: config.rate_limit.map(RateLimiter::new),
            config,
            router,
            transports,
            commands,
            incoming: incoming_tx,
            next_leg,
            txs: HashMap::new(),
            heap: BinaryHeap::new(),
            legs: HashMap::new(),
            dialogs: HashMap::new(),
            inbound_calls: 0,
            pending: HashMap::new(),
            transactions,
        };
        tokio::spawn(async move {
            driver.run(transport_rx, command_rx, shutdown).await;
            stopped.cancel();
        });
        Ok((endpoint, incoming_rx))
    }

    /// Waits until the endpoint has stopped: after `shutdown`, once the requests it had sent
    /// got their final responses (at most 2 s).
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }

    /// Transactions started so far, by side.
    pub fn transaction_counts(&self) -> Arc<TransactionCounts> {
        Arc::clone(&self.transactions)
    }

    /// The bound listeners (ports resolved when the configuration said 0).
    pub fn local_addrs(&self) -> &[BoundListener] {
        &self.bound
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|b| b.transport == transport)
            .map(|b| b.addr)
    }

    /// The Contact URI (in angle brackets) for requests sent over `transport`.
    pub fn contact(&self, transport: Transport) -> String {
        let port = self.local_addr(transport).map_or(5060, |a| a.port());
        let tcp = if transport == Transport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        format!("<sip:rgsd@{}:{port}{tcp}>", uri_host(&self.host))
    }

    /// Sends an out-of-dialog non-INVITE request to `target` (Request-URI unchanged) and waits
    /// for its final response. The endpoint adds the Via; everything else is the caller's.
    ///
    /// # Errors
    ///
    /// [`RequestError`] when the target does not resolve, nothing answers (timer F), the
    /// connection fails, or the endpoint has shut down.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the answer; the transaction itself runs to its end.
    pub async fn request(
        &self,
        request: Request,
        target: &SipUri,
    ) -> Result<Response, RequestError> {
        let (dest, tcp) = resolve(target).await?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Request {
                request: Box::new(request),
                dest,
                tcp,
                reply,
            })
            .map_err(|_| EndpointGone)?;
        match answer.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(LegFailure::Timeout)) => Err(RequestError::Timeout),
            Ok(Err(_)) | Err(_) => Err(RequestError::Transport),
        }
    }

    /// Starts an outbound leg: INVITE `target` from `from` with `sdp_offer`. `;transport=tcp`
    /// in the target selects TCP. Every outcome arrives as an event on the returned leg
    /// ([`CallEvent::Answered`] or [`CallEvent::Failed`]).
    ///
    /// # Errors
    ///
    /// [`InviteError`] when the target cannot be parsed or resolved, or after shutdown.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe only in the harmless sense: dropping the future during DNS resolution
    /// sends nothing.
    pub async fn invite(
        &self,
        target: &SipUri,
        from: &SipUri,
        sdp_offer: Bytes,
        extra_headers: Vec<(String, String)>,
    ) -> Result<OutboundCall, InviteError> {
        let (dest, tcp) = resolve(target).await?;
        let leg = LegId(self.next_leg.fetch_add(1, Ordering::Relaxed));
        let (events_tx, events) = mpsc::unbounded_channel();
        let call_id = format!("{}@{}", random_token(20), self.host);
        self.commands
            .send(Command::Invite(Box::new(OutboundRequest {
                leg,
                events: events_tx,
                dest,
                tcp,
                request_uri: target.to_string(),
                from: from.to_string(),
                sdp: sdp_offer,
                extra_headers,
                call_id: call_id.clone(),
            })))
            .map_err(|_| EndpointGone)?;
        Ok(OutboundCall {
            call_id,
            inner: Handle {
                leg,
                commands: self.commands.clone(),
                events,
                live: true,
            },
        })
    }
}

/// Where to send a request for `target`: its host (resolved) and port (default 5060), and
/// whether `;transport=tcp` asks for TCP.
async fn resolve(target: &SipUri) -> Result<(SocketAddr, bool), InviteError> {
    let uri = message::parse_uri(target.as_str())
        .map_err(|_| InviteError::BadTarget(target.to_string()))?;
    let port = uri.port.unwrap_or(5060);
    let dest = match uri.host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((uri.host.as_str(), port))
            .await
            .map_err(|source| InviteError::Resolve {
                host: uri.host.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| InviteError::Resolve {
                host: uri.host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            })?,
    };
    Ok((dest, uri.tcp))
}

/// Why [`Endpoint::request`] got no final response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The target is unusable or did not resolve.
    #[error(transparent)]
    Target(#[from] InviteError),
    /// No final response within 64·T1 (timer F).
    #[error("no response")]
    Timeout,
    /// No listener can reach the target, or the connection failed.
    #[error("transport failure")]
    Transport,
}

impl From<EndpointGone> for RequestError {
    fn from(gone: EndpointGone) -> Self {
        Self::Target(InviteError::Gone(gone))
    }
}

/// Who a heap entry wakes up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerOwner {
    Transaction(TransactionKey),
    Answer(LegId),
}

#[derive(Debug)]
enum Tx {
    ClientInvite(ClientInvite),
    Client(ClientNonInvite),
    ServerInvite(ServerInvite),
    Server(ServerNonInvite),
}

impl Tx {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::ClientInvite(t) => t.poll_timeout(),
            Self::Client(t) => t.poll_timeout(),
            Self::ServerInvite(t) => t.poll_timeout(),
            Self::Server(t) => t.poll_timeout(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Self::ClientInvite(t) => t.on_timer(now),
            Self::Client(t) => t.on_timer(now),
            Self::ServerInvite(t) => t.on_timer(now),
            Self::Server(t) => t.on_timer(now),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Self::ClientInvite(t) => t.is_terminated(),
            Self::Client(t) => t.is_terminated(),
            Self::ServerInvite(t) => t.is_terminated(),
            Self::Server(t) => t.is_terminated(),
        }
    }

    fn respond(&mut self, response: &Response, now: Instant) -> Vec<Action> {
        match self {
            Self::ServerInvite(t) => t.respond(response, now),
            Self::Server(t) => t.respond(response, now),
            Self::ClientInvite(_) | Self::Client(_) => Vec::new(),
        }
    }
}

#[derive(Debug)]
struct TxEntry {
    tx: Tx,
    flow: Flow,
    peer: SocketAddr,
    leg: Option<LegId>,
    /// Server transactions: the request, to build responses from.
    request: Option<Request>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// Inbound: INVITE received, not answered. Outbound: INVITE sent, no final response.
    Early,
    /// Inbound: 2xx sent, waiting for ACK.
    Confirming,
    Established,
    /// Outbound: CANCEL sent, waiting for the INVITE's final response.
    Cancelling,
    /// BYE sent.
    Ending,
}

#[derive(Debug)]
struct Leg {
    outbound: bool,
    state: LegState,
    dialog: Dialog,
    events: mpsc::UnboundedSender<CallEvent>,
    flow: Flow,
    peer: SocketAddr,
    /// Answers re-INVITE and UPDATE offers.
    local_sdp: Bytes,
    /// The UAS core's 2xx retransmission, while waiting for an ACK.
    answer: Option<Answer2xx>,
    /// Whether the pending `answer` is for the dialog-creating INVITE (its ACK is reported).
    answer_initial: bool,
    /// The INVITE transaction (inbound: server; outbound: client).
    invite_tx: Option<TransactionKey>,
    /// Outbound: our INVITE, to build the CANCEL from.
    invite: Option<Request>,
    /// Outbound: the ACK sent for the 2xx, resent for 2xx retransmits.
    ack: Option<Bytes>,
    /// Counts toward `max_calls`.
    counted: bool,
    /// Outbound: a provisional response arrived, so a CANCEL may be sent.
    heard: bool,
    /// Outbound: the CANCEL has been sent.
    cancel_sent: bool,
}

impl Leg {
    fn emit(&self, event: CallEvent) {
        // The controller may have dropped the handle; the leg's own cleanup still happens.
        let _ = self.events.send(event);
    }
}

struct Driver {
    config: EndpointConfig,
    router: Arc<dyn CallRouter>,
    transports: Transports,
    /// For handles created here (inbound calls).
    commands: mpsc::UnboundedSender<Command>,
    incoming: mpsc::Sender<IncomingCall>,
    next_leg: Arc<AtomicU64>,
    /// Boxed: an entry is several hundred bytes and the map holds every transaction of the last
    /// 32 s (RFC 6026 / 3261 wait states), 100,000 and more under load; unboxed, inserts and
    /// every growth of the table copied them all (about 5 % of rgsd's CPU at 4,000 calls/s).
    txs: HashMap<TransactionKey, Box<TxEntry>>,
    /// Deadlines, lazily invalidated: an entry whose owner is gone or not yet due is skipped.
    heap: BinaryHeap<Reverse<(Instant, TimerOwner)>>,
    legs: HashMap<LegId, Leg>,
    /// (Call-ID, local tag) to leg.
    dialogs: HashMap<(String, String), LegId>,
    /// `None` when the per-source limit is off.
    limiter: Option<RateLimiter>,
    inbound_calls: u32,
    /// Out-of-dialog requests from `Endpoint::request`, waiting for a final response.
    pending: HashMap<TransactionKey, tokio::sync::oneshot::Sender<Result<Response, LegFailure>>>,
    transactions: Arc<TransactionCounts>,
}

impl Driver {
    async fn run(
        mut self,
        mut transport_rx: mpsc::Receiver<TransportEvent>,
        mut command_rx: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        // After shutdown: keep going (commands, responses, retransmissions) until the requests
        // already asked for have their final responses or DRAIN has passed, so that the BYE of
        // the last call to end is not lost with the process.
        let mut draining: Option<Instant> = None;
        loop {
            if let Some(until) = draining
                && (Instant::now() >= until || !self.awaits_responses())
            {
                break;
            }
            let deadline = self.heap.peek().map(|Reverse((at, _))| *at);
            let deadline = match (deadline, draining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                () = shutdown.cancelled(), if draining.is_none() => {
                    draining = Some(Instant::now() + DRAIN);
                    // Commands sent before the shutdown (a last BYE) are still to be run.
                    while let Ok(command) = command_rx.try_recv() {
                        self.on_command(command);
                    }
                }
                Some(event) = transport_rx.recv() => self.on_transport(event),
                Some(command) = command_rx.recv() => self.on_command(command),
                () = crate::util::sleep_until(deadline) => self.on_timers(),
            }
        }
        tracing::debug!("SIP endpoint stopped");
    }

    /// Whether a request rgsd sent still waits for its final response.
    fn awaits_responses(&self) -> bool {
        self.txs.values().any(|e| match &e.tx {
            Tx::Client(t) => matches!(
                t.state(),
                ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
            ),
            Tx::ClientInvite(t) => matches!(
                t.state(),
                ClientInviteState::Calling | ClientInviteState::Proceeding
            ),
            Tx::Server(_) | Tx::ServerInvite(_) => false,
        })
    }

    // ---- timers ---------------------------------------------------------------------------

    fn schedule(&mut self, owner: TimerOwner, at: Option<Instant>) {
        if let Some(at) = at {
            self.heap.push(Reverse((at, owner)));
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, owner))) = self.heap.pop() else {
                break;
            };
            match owner {
                TimerOwner::Transaction(key) => {
                    let Some(entry) = self.txs.get_mut(&key) else {
                        continue;
                    };
                    if entry.tx.poll_timeout().is_none_or(|t| t > now) {
                        continue;
                    }
                    let actions = entry.tx.on_timer(now);
                    self.run_actions(&key, actions);
                    self.settle(&key);
                }
                TimerOwner::Answer(leg_id) => {
                    let Some(leg) = self.legs.get_mut(&leg_id) else {
                        continue;
                    };
                    let Some(answer) = leg.answer.as_mut() else {
                        continue;
                    };
                    if answer.poll_timeout().is_none_or(|t| t > now) {
                        continue;
                    }
                    let actions = answer.on_timer(now);
                    let next = answer.poll_timeout();
                    let (flow, peer) = (leg.flow, leg.peer);
                    for action in actions {
                        match action {
                            Action::Send(bytes) => {
                                self.transports.send(flow, peer, bytes);
                            }
                            Action::TimedOut => self.on_ack_timeout(leg_id),
                            Action::Response(_) => {}
                        }
                    }
                    self.schedule(TimerOwner::Answer(leg_id), next);
                }
            }
        }
    }

    /// Reschedules a transaction after it changed, or forgets it once terminated.
    fn settle(&mut self, key: &TransactionKey) {
        let Some(entry) = self.txs.get(key) else {
            return;
        };
        if entry.tx.is_terminated() {
            self.txs.remove(key);
        } else {
            let at = entry.tx.poll_timeout();
            self.schedule(TimerOwner::Transaction(key.clone()), at);
        }
    }

    fn run_actions(&mut self, key: &TransactionKey, actions: Vec<Action>) {
        let Some(entry) = self.txs.get(key) else {
            return;
        };
        let (flow, peer, leg) = (entry.flow, entry.peer, entry.leg);
        for action in actions {
            match action {
                Action::Send(bytes) => {
                    if !self.transports.send(flow, peer, bytes) && flow.is_reliable() {
                        tracing::debug!(%peer, "stream send failed");
                    }
                }
                Action::Response(response) => self.on_client_response(key, leg, response),
                Action::TimedOut => self.on_transaction_timeout(key, leg),
            }
        }
    }

    // ---- transport ------------------------------------------------------------------------

    fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Opened { id, peer, writer } => {
                self.transports.adopt_stream(id, peer, writer);
            }
            TransportEvent::Closed { id, peer } => {
                self.transports.forget_stream(id);
                // Legs waiting on a transaction over this connection learn it now rather
                // than at timer B/F.
                let affected: Vec<(LegId, CallEvent)> = self
                    .legs
                    .iter()
                    .filter(|(_, l)| l.flow == Flow::Stream(id))
                    .filter_map(|(leg, l)| match (l.outbound, l.state) {
                        (true, LegState::Early | LegState::Cancelling) => {
                            Some((*leg, CallEvent::Failed(LegFailure::Transport)))
                        }
                        (_, LegState::Ending) => Some((*leg, CallEvent::Ended)),
                        _ => None,
                    })
                    .collect();
                for (leg, event) in affected {
                    tracing::info!(%peer, ?event, "connection closed under a call leg");
                    self.end_leg(leg, Some(event));
                }
                self.txs.retain(|_, e| {
                    !(e.flow == Flow::Stream(id)
                        && matches!(e.tx, Tx::ClientInvite(_) | Tx::Client(_)))
                });
                // Requests whose transaction just went away learn it (their sender drops).
                let txs = &self.txs;
                self.pending.retain(|key, _| txs.contains_key(key));
            }
            TransportEvent::Message {
                bytes,
                source,
                flow,
            } => self.on_message(&bytes, source, flow),
        }
    }

    fn on_message(&mut self, bytes: &[u8], source: SocketAddr, flow: Flow) {
        let now = Instant::now();
        tracing::trace!(%source, len = bytes.len(), "received");
        // Only requests count toward the rate limit: responses answer requests rgsd sent (an
        // agent answering its INVITEs must not be throttled), and a stray response is dropped
        // by the transaction lookup at the cost of a parse.
        let is_response = bytes.starts_with(b"SIP/2.0 ");
        if let (false, Some(limiter)) = (is_response, &mut self.limiter) {
            match limiter.check(source.ip(), now) {
                Verdict::Allow => {}
                Verdict::DropAndLog => {
                    tracing::warn!(%source, "request rate limit exceeded; dropping (logged once a minute)");
                    return;
                }
                Verdict::Drop => return,
            }
        }
        match message::parse(bytes) {
            Ok(Message::Request(request)) => self.on_request(request, source, flow, now),
            Ok(Message::Response(response)) => self.on_response(response, now),
            Err(ParseError::Empty) => {}
            Err(error) => {
                tracing::debug!(%source, %error, "malformed message");
                if let Some(reply) = message::bad_request(bytes, &error) {
                    self.transports.send(flow, source, reply);
                }
            }
        }
    }

    fn on_response(&mut self, response: Response, now: Instant) {
        let Some(key) = TransactionKey::for_response(&response) else {
            return;
        };
        let Some(entry) = self.txs.get_mut(&key) else {
            tracing::trace!(status = response.status, "stray response");
            return;
        };
        let actions = match &mut entry.tx {
            Tx::ClientInvite(t) => t.on_response(response, now),
            Tx::Client(t) => t.on_response(response, now),
            Tx::ServerInvite(_) | Tx::Server(_) => Vec::new(),
        };
        self.run_actions(&key, actions);
        self.settle(&key);
    }

    // ---- requests -------------------------------------------------------------------------

    fn on_request(&mut self, mut request: Request, source: SocketAddr, flow: Flow, now: Instant) {
        stamp_via(&mut request, source);
        let Some(key) = TransactionKey::for_request(&request) else {
            return;
        };
        if request.method == Method::Ack {
            self.on_ack(&key, &request, now);
            return;
        }
        if let Some(entry) = self.txs.get_mut(&key) {
            // A retransmission.
            let mut actions = match &mut entry.tx {
                Tx::ServerInvite(t) => t.on_request(&request, now),
                Tx::Server(t) => t.on_retransmit(),
                Tx::ClientInvite(_) | Tx::Client(_) => Vec::new(),
            };
            if let Some(leg) = entry.leg.and_then(|l| self.legs.get(&l))
                && let Some(answer) = &leg.answer
            {
                actions.extend(answer.on_invite_retransmit());
            }
            self.run_actions(&key, actions);
            self.settle(&key);
            return;
        }
        self.transactions.server.fetch_add(1, Ordering::Relaxed);
        let tx = if request.method == Method::Invite {
            Tx::ServerInvite(ServerInvite::new(flow.is_reliable()))
        } else {
            Tx::Server(ServerNonInvite::new(flow.is_reliable()))
        };
        self.txs.insert(
            key.clone(),
            Box::new(TxEntry {
                tx,
                flow,
                peer: source,
                leg: None,
                request: Some(request.clone()),
            }),
        );
        self.dispatch(&key, &request, source, flow);
        self.settle(&key);
    }

    fn dispatch(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        source: SocketAddr,
        flow: Flow,
    ) {
        let max_forwards = request
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u8>().ok());
        if max_forwards == Some(0) && request.method != Method::Options {
            return self.reply(key, 483, None, |_| {});
        }
        let to_tag = request.to().and_then(|t| t.tag().map(str::to_owned));
        if request.method == Method::Cancel {
            return self.on_cancel(key);
        }
        if let Some(tag) = to_tag {
            let leg = self
                .dialogs
                .get(&(request.call_id().to_owned(), tag))
                .copied();
            return match leg {
                Some(leg) => self.on_in_dialog(key, request, leg),
                None if request.method == Method::Options => self.reply_options(key),
                None => self.reply(key, 481, None, |_| {}),
            };
        }
        let creates_dialog = matches!(
            request.method,
            Method::Invite | Method::Subscribe | Method::Refer
        );
        if creates_dialog && !is_trusted(&self.config.trusted_peers, source.ip()) {
            tracing::info!(%source, method = %request.method, "request from untrusted source: 403");
            return self.reply(key, 403, None, |_| {});
        }
        match request.method {
            Method::Invite => self.on_new_invite(key, request, source, flow),
            Method::Options => self.reply_options(key),
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.reply(key, 481, None, |_| {});
            }
            _ => self.reply(key, 405, None, |r| r.headers.push("Allow", ALLOW)),
        }
    }

    fn reply_options(&mut self, key: &TransactionKey) {
        self.reply(key, 200, None, |r| {
            r.headers.push("Allow", ALLOW);
            r.headers.push("Accept", "application/sdp");
            r.headers.push("Supported", "timer");
        });
    }

    /// Sends a response on a server transaction. `to_tag` is the leg's tag; without one a fresh
    /// tag is made (a final response outside any dialog still needs one).
    fn reply(
        &mut self,
        key: &TransactionKey,
        status: u16,
        to_tag: Option<&str>,
        edit: impl FnOnce(&mut Response),
    ) {
        let now = Instant::now();
        let Some(entry) = self.txs.get_mut(key) else {
            return;
        };
        let Some(request) = &entry.request else {
            return;
        };
        let fresh;
        let tag = match to_tag {
            Some(t) => t,
            None => {
                fresh = random_token(10);
                &fresh
            }
        };
        let mut response = Response::to_request(request, status, Some(tag));
        response.headers.push("Server", "rgsd");
        edit(&mut response);
        let actions = entry.tx.respond(&response, now);
        if status >= 200 {
            // No response can follow a final one: the request is not needed for the 32 s the
            // transaction still lives (Accepted, or Completed for a non-INVITE).
            entry.request = None;
        }
        self.run_actions(key, actions);
        self.settle(key);
    }

    fn on_new_invite(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        source: SocketAddr,
        flow: Flow,
    ) {
        let scheme = request.uri.split(':').next().unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return self.reply(key, 416, None, |_| {});
        }
        let unsupported: Vec<&str> = request
            .headers
            .get_list("Require")
            .filter(|tag| !tag.eq_ignore_ascii_case("timer"))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            return self.reply(key, 420, None, |r| r.headers.push("Unsupported", list));
        }
        if !request.body.is_empty() && !is_sdp(&request.headers) {
            return self.reply(key, 415, None, |r| {
                r.headers.push("Accept", "application/sdp");
            });
        }
        if session_expires(&request.headers).is_some_and(|(secs, _)| secs < MIN_SE) {
            return self.reply(key, 422, None, |r| {
                r.headers.push("Min-SE", MIN_SE.to_string());
            });
        }
        let to = request.headers.get("To").unwrap_or_default();
        match self.router.route(&request.uri, to) {
            RouteDecision::Accept => {}
            RouteDecision::NotFound => return self.reply(key, 404, None, |_| {}),
            RouteDecision::Inactive => return self.reply(key, 480, None, |_| {}),
        }
        if self.inbound_calls >= self.config.max_calls {
            tracing::info!(%source, max_calls = self.config.max_calls, "at max_calls: 503");
            return self.reply(key, 503, None, |r| {
                r.headers.push("Retry-After", RETRY_AFTER);
            });
        }
        let local_tag = random_token(10);
        let Some(dialog) = Dialog::from_uas(request, local_tag.clone()) else {
            return self.reply(key, 400, None, |_| {});
        };
        self.reply(key, 100, None, |_| {});
        let leg_id = LegId(self.next_leg.fetch_add(1, Ordering::Relaxed));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let info = CallInfo {
            from: request.headers.get("From").unwrap_or_default().to_owned(),
            to: to.to_owned(),
            call_id: request.call_id().to_owned(),
            request_uri: request.uri.clone(),
            source,
            sdp: request.body.clone(),
        };
        let call = IncomingCall {
            info,
            inner: Handle {
                leg: leg_id,
                commands: self.commands.clone(),
                events: events_rx,
                live: true,
            },
        };
        if let Err(e) = self.incoming.try_send(call) {
            tracing::warn!(%source, "call controller not keeping up: 503");
            // Dropping the returned call would queue a Hangup for a leg that never existed.
            let (mpsc::error::TrySendError::Full(mut call)
            | mpsc::error::TrySendError::Closed(mut call)) = e;
            call.inner.live = false;
            return self.reply(key, 503, Some(&local_tag), |r| {
                r.headers.push("Retry-After", RETRY_AFTER);
            });
        }
        self.dialogs
            .insert((dialog.call_id.clone(), local_tag), leg_id);
        if let Some(entry) = self.txs.get_mut(key) {
            entry.leg = Some(leg_id);
        }
        self.inbound_calls += 1;
        self.legs.insert(
            leg_id,
            Leg {
                outbound: false,
                state: LegState::Early,
                dialog,
                events: events_tx,
                flow,
                peer: source,
                local_sdp: Bytes::new(),
                answer: None,
                answer_initial: false,
                invite_tx: Some(key.clone()),
                invite: None,
                ack: None,
                counted: true,
                heard: false,
                cancel_sent: false,
            },
        );
    }

    fn on_cancel(&mut self, key: &TransactionKey) {
        let invite_key = TransactionKey {
            method: Method::Invite,
            ..key.clone()
        };
        let Some(invite) = self.txs.get(&invite_key) else {
            return self.reply(key, 481, None, |_| {});
        };
        let pending = matches!(&invite.tx, Tx::ServerInvite(t) if !t.is_final());
        let leg = invite.leg;
        let tag = leg
            .and_then(|l| self.legs.get(&l))
            .map(|l| l.dialog.local_tag.clone());
        self.reply(key, 200, tag.as_deref(), |_| {});
        if pending {
            self.reply(&invite_key, 487, tag.as_deref(), |_| {});
            if let Some(leg) = leg {
                self.end_leg(leg, Some(CallEvent::Cancelled));
            }
        }
    }

    fn on_ack(&mut self, key: &TransactionKey, request: &Request, now: Instant) {
        if let Some(entry) = self.txs.get_mut(key)
            && let Tx::ServerInvite(t) = &mut entry.tx
            && t.state() == super::transaction::ServerInviteState::Completed
        {
            // The ACK of a non-2xx: same branch as the INVITE.
            let actions = t.on_request(request, now);
            self.run_actions(key, actions);
            self.settle(key);
            return;
        }
        // The ACK of a 2xx is its own transaction; match it to the dialog. Some peers reuse the
        // INVITE's branch for it, which is why the Completed check above comes first.
        let Some(tag) = request.to().and_then(|t| t.tag().map(str::to_owned)) else {
            return;
        };
        let Some(leg_id) = self
            .dialogs
            .get(&(request.call_id().to_owned(), tag))
            .copied()
        else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let Some(answer) = leg.answer.as_mut() else {
            return; // an ACK retransmit
        };
        answer.on_ack();
        leg.answer = None;
        if leg.state == LegState::Confirming {
            leg.state = LegState::Established;
        }
        if std::mem::take(&mut leg.answer_initial) {
            let sdp = (!request.body.is_empty()).then(|| request.body.clone());
            leg.emit(CallEvent::Confirmed { sdp });
        }
    }

    fn on_in_dialog(&mut self, key: &TransactionKey, request: &Request, leg_id: LegId) {
        if let Some(entry) = self.txs.get_mut(key) {
            entry.leg = Some(leg_id);
        }
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return self.reply(key, 481, None, |_| {});
        };
        let tag = leg.dialog.local_tag.clone();
        let seq = request.cseq().map(|c| c.seq).unwrap_or_default();
        if !leg.dialog.accept_remote_cseq(seq) {
            return self.reply(key, 500, Some(&tag), |_| {});
        }
        let sdp = (!request.body.is_empty()).then(|| request.body.clone());
        match request.method {
            Method::Bye => {
                self.reply(key, 200, Some(&tag), |_| {});
                self.end_leg(leg_id, Some(CallEvent::Bye));
            }
            Method::Invite => {
                if leg.answer.is_some() {
                    // Our previous 2xx is not ACKed yet (RFC 3261 §14.2).
                    return self.reply(key, 500, Some(&tag), |r| {
                        r.headers.push("Retry-After", "1");
                    });
                }
                if let Some(contact) = request.contact() {
                    leg.dialog.remote_target = contact.uri;
                }
                let body = leg.local_sdp.clone();
                let contact = make_contact(
                    &self.config.advertised_host,
                    self.transports.local_port(leg.flow),
                    leg.flow,
                );
                let timer = session_timer_reply(&request.headers);
                let mut wire = None;
                self.reply(key, 200, Some(&tag), |r| {
                    r.headers.push("Contact", contact);
                    r.headers.push("Allow", ALLOW);
                    add_session_timer(r, timer);
                    if !body.is_empty() {
                        r.headers.push("Content-Type", "application/sdp");
                        r.body = body;
                    }
                    wire = Some(r.to_bytes());
                });
                if let (Some(wire), Some(leg)) = (wire, self.legs.get_mut(&leg_id)) {
                    let answer = Answer2xx::new(wire, leg.flow.is_reliable(), Instant::now());
                    let at = answer.poll_timeout();
                    leg.answer = Some(answer);
                    leg.answer_initial = false;
                    leg.emit(CallEvent::Reinvite { sdp });
                    self.schedule(TimerOwner::Answer(leg_id), at);
                }
            }
            Method::Update => {
                let body = if sdp.is_some() {
                    leg.local_sdp.clone()
                } else {
                    Bytes::new()
                };
                let timer = session_timer_reply(&request.headers);
                let contact = make_contact(
                    &self.config.advertised_host,
                    self.transports.local_port(leg.flow),
                    leg.flow,
                );
                leg.emit(CallEvent::Update { sdp });
                self.reply(key, 200, Some(&tag), |r| {
                    r.headers.push("Contact", contact);
                    add_session_timer(r, timer);
                    if !body.is_empty() {
                        r.headers.push("Content-Type", "application/sdp");
                        r.body = body;
                    }
                });
            }
            Method::Info => {
                leg.emit(CallEvent::Info {
                    content_type: request.headers.get("Content-Type").map(str::to_owned),
                    body: request.body.clone(),
                });
                self.reply(key, 200, Some(&tag), |_| {});
            }
            Method::Options => self.reply_options(key),
            _ => self.reply(key, 405, Some(&tag), |r| r.headers.push("Allow", ALLOW)),
        }
    }

    // ---- client side ----------------------------------------------------------------------

    fn on_client_response(
        &mut self,
        key: &TransactionKey,
        leg_id: Option<LegId>,
        response: Response,
    ) {
        if response.status >= 200
            && let Some(reply) = self.pending.remove(key)
        {
            let _ = reply.send(Ok(response));
            return;
        }
        let Some(leg_id) = leg_id else {
            return;
        };
        match key.method {
            Method::Invite => self.on_invite_response(leg_id, response),
            Method::Bye if response.status >= 200 => {
                self.end_leg(leg_id, Some(CallEvent::Ended));
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, leg_id: LegId, response: Response) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let sdp = (!response.body.is_empty()).then(|| response.body.clone());
        match response.status {
            100..=199 => {
                leg.heard = true;
                if response.status > 100 {
                    leg.dialog.on_response(&response);
                    leg.emit(CallEvent::Provisional {
                        status: response.status,
                        sdp,
                    });
                }
                if leg.state == LegState::Cancelling {
                    self.send_cancel(leg_id);
                }
            }
            200..=299 => {
                if let Some(ack) = &leg.ack {
                    // A 2xx retransmit: our ACK was lost.
                    self.transports.send(leg.flow, leg.peer, ack.clone());
                    return;
                }
                leg.dialog.on_response(&response);
                let port = self.transports.local_port(leg.flow);
                let via = make_via(&self.config.advertised_host, port, leg.flow).0;
                let contact = make_contact(&self.config.advertised_host, port, leg.flow);
                let ack = leg
                    .dialog
                    .request(Method::Ack, &via, &contact, Bytes::new())
                    .to_bytes();
                self.transports.send(leg.flow, leg.peer, ack.clone());
                leg.ack = Some(ack);
                self.dialogs.insert(
                    (leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()),
                    leg_id,
                );
                if leg.state == LegState::Cancelling {
                    // Answered despite our CANCEL (they crossed): hang up at once.
                    leg.state = LegState::Established;
                    self.start_bye(leg_id);
                } else {
                    leg.state = LegState::Established;
                    leg.emit(CallEvent::Answered {
                        sdp: sdp.unwrap_or_default(),
                    });
                }
            }
            status => {
                tracing::debug!(status, "outbound leg refused");
                self.end_leg(leg_id, Some(CallEvent::Failed(LegFailure::Status(status))));
            }
        }
    }

    fn on_transaction_timeout(&mut self, key: &TransactionKey, leg: Option<LegId>) {
        if let Some(reply) = self.pending.remove(key) {
            let _ = reply.send(Err(LegFailure::Timeout));
        }
        let Some(leg) = leg else {
            return;
        };
        match key.method {
            Method::Invite if !key.server => {
                tracing::info!("outbound leg timed out");
                self.end_leg(leg, Some(CallEvent::Failed(LegFailure::Timeout)));
            }
            Method::Bye if !key.server => self.end_leg(leg, Some(CallEvent::Ended)),
            _ => {}
        }
    }

    fn on_ack_timeout(&mut self, leg_id: LegId) {
        tracing::info!("no ACK for our 2xx within 64*T1: hanging up");
        if let Some(leg) = self.legs.get(&leg_id) {
            leg.emit(CallEvent::AckTimeout);
        }
        self.start_bye(leg_id);
        // The controller has its terminal event; the BYE completes on its own.
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            let (tx, _) = mpsc::unbounded_channel();
            leg.events = tx;
        }
    }

    /// Forgets a leg, emitting its last event.
    fn end_leg(&mut self, leg_id: LegId, event: Option<CallEvent>) {
        let Some(leg) = self.legs.remove(&leg_id) else {
            return;
        };
        if let Some(event) = event {
            leg.emit(event);
        }
        self.dialogs
            .remove(&(leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()));
        if leg.counted {
            self.inbound_calls = self.inbound_calls.saturating_sub(1);
        }
    }

    fn via(&self, flow: Flow) -> (String, String) {
        make_via(
            &self.config.advertised_host,
            self.transports.local_port(flow),
            flow,
        )
    }

    fn contact(&self, flow: Flow) -> String {
        make_contact(
            &self.config.advertised_host,
            self.transports.local_port(flow),
            flow,
        )
    }

    /// The flow to reach a leg's peer now (a closed stream is reopened).
    fn leg_flow(&mut self, leg_id: LegId) -> Option<Flow> {
        let leg = self.legs.get(&leg_id)?;
        let (flow, peer) = (leg.flow, leg.peer);
        let flow = match flow {
            Flow::Stream(id) if !self.transports.has_stream(id) => {
                self.transports.stream_flow_for(peer)
            }
            other => other,
        };
        if let Some(leg) = self.legs.get_mut(&leg_id) {
            leg.flow = flow;
        }
        Some(flow)
    }

    /// Sends an in-dialog BYE; the leg ends when it is answered or times out.
    fn start_bye(&mut self, leg_id: LegId) {
        let Some(flow) = self.leg_flow(leg_id) else {
            return;
        };
        let (via, branch) = self.via(flow);
        let contact = self.contact(flow);
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.state = LegState::Ending;
        leg.answer = None;
        let bye = leg
            .dialog
            .request(Method::Bye, &via, &contact, Bytes::new());
        let peer = leg.peer;
        self.start_client(&bye, &branch, flow, peer, Some(leg_id));
    }

    fn start_client(
        &mut self,
        request: &Request,
        branch: &str,
        flow: Flow,
        peer: SocketAddr,
        leg: Option<LegId>,
    ) -> TransactionKey {
        let now = Instant::now();
        let key = TransactionKey::client(branch, request.method.clone());
        self.transactions.client.fetch_add(1, Ordering::Relaxed);
        let (tx, actions) = if request.method == Method::Invite {
            let (t, a) = ClientInvite::new(request.clone(), flow.is_reliable(), now);
            (Tx::ClientInvite(t), a)
        } else {
            let (t, a) = ClientNonInvite::new(request, flow.is_reliable(), now);
            (Tx::Client(t), a)
        };
        self.txs.insert(
            key.clone(),
            Box::new(TxEntry {
                tx,
                flow,
                peer,
                leg,
                request: None,
            }),
        );
        self.run_actions(&key, actions);
        self.settle(&key);
        key
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Ring { leg, status, sdp } => self.ring(leg, status, sdp),
            Command::Answer { leg, sdp } => self.answer(leg, sdp),
            Command::Reject { leg, status } => self.reject(leg, status),
            Command::SetLocalSdp { leg, sdp } => {
                if let Some(leg) = self.legs.get_mut(&leg) {
                    leg.local_sdp = sdp;
                }
            }
            Command::Hangup { leg } => self.hangup(leg),
            Command::Invite(request) => self.invite(*request),
            Command::Request {
                request,
                dest,
                tcp,
                reply,
            } => {
                let flow = if tcp {
                    Some(self.transports.stream_flow_for(dest))
                } else {
                    self.transports.udp_flow_for(dest)
                };
                let Some(flow) = flow else {
                    let _ = reply.send(Err(LegFailure::Transport));
                    return;
                };
                let mut request = *request;
                let (via, branch) = self.via(flow);
                request.headers.push_front("Via", via);
                let key = TransactionKey::client(&branch, request.method.clone());
                self.pending.insert(key, reply);
                self.start_client(&request, &branch, flow, dest, None);
            }
        }
    }

    fn pending_inbound(&self, leg_id: LegId) -> Option<(TransactionKey, String, Flow)> {
        let leg = self.legs.get(&leg_id)?;
        if leg.outbound || leg.state != LegState::Early {
            return None;
        }
        Some((
            leg.invite_tx.clone()?,
            leg.dialog.local_tag.clone(),
            leg.flow,
        ))
    }

    fn ring(&mut self, leg_id: LegId, status: u16, sdp: Option<Bytes>) {
        let Some((key, tag, flow)) = self.pending_inbound(leg_id) else {
            return;
        };
        let contact = self.contact(flow);
        self.reply(&key, status, Some(&tag), |r| {
            r.headers.push("Contact", contact);
            if let Some(sdp) = sdp {
                r.headers.push("Content-Type", "application/sdp");
                r.body = sdp;
            }
        });
    }

    fn answer(&mut self, leg_id: LegId, sdp: Bytes) {
        let Some((key, tag, flow)) = self.pending_inbound(leg_id) else {
            return;
        };
        let contact = self.contact(flow);
        let request = self.txs.get(&key).and_then(|e| e.request.as_ref());
        let timer = request.and_then(|r| session_timer_reply(&r.headers));
        let declined = request.is_some_and(|r| declines_session_timer(&r.headers));
        let mut wire = None;
        let body = sdp.clone();
        self.reply(&key, 200, Some(&tag), |r| {
            r.headers.push("Contact", contact);
            r.headers.push("Allow", ALLOW);
            if !declined {
                r.headers.push("Supported", "timer");
            }
            add_session_timer(r, timer);
            if !body.is_empty() {
                r.headers.push("Content-Type", "application/sdp");
                r.body = body;
            }
            wire = Some(r.to_bytes());
        });
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        leg.local_sdp = sdp;
        leg.state = LegState::Confirming;
        if let Some(wire) = wire {
            let answer = Answer2xx::new(wire, flow.is_reliable(), Instant::now());
            let at = answer.poll_timeout();
            leg.answer = Some(answer);
            leg.answer_initial = true;
            self.schedule(TimerOwner::Answer(leg_id), at);
        }
    }

    fn reject(&mut self, leg_id: LegId, status: u16) {
        let Some((key, tag, _)) = self.pending_inbound(leg_id) else {
            return;
        };
        self.reply(&key, status, Some(&tag), |_| {});
        self.end_leg(leg_id, None);
    }

    fn hangup(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        match (leg.outbound, leg.state) {
            (false, LegState::Early) => self.reject(leg_id, 480),
            (_, LegState::Confirming | LegState::Established) => self.start_bye(leg_id),
            (true, LegState::Early) => {
                leg.state = LegState::Cancelling;
                // RFC 3261 §9.1: no CANCEL before a provisional response; until then it waits
                // (and timer B still bounds the INVITE).
                if leg.heard {
                    self.send_cancel(leg_id);
                }
            }
            (_, LegState::Cancelling | LegState::Ending) => {}
        }
    }

    fn send_cancel(&mut self, leg_id: LegId) {
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        if std::mem::replace(&mut leg.cancel_sent, true) {
            return;
        }
        let (Some(invite), Some(key)) = (leg.invite.clone(), leg.invite_tx.clone()) else {
            return;
        };
        let (flow, peer) = (leg.flow, leg.peer);
        let cancel = cancel_for(&invite);
        if let Some(Tx::ClientInvite(t)) = self.txs.get_mut(&key).map(|e| &mut e.tx) {
            t.cancel_sent(Instant::now());
        }
        self.settle(&key);
        let branch = invite
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        self.start_client(&cancel, &branch, flow, peer, None);
    }

    fn invite(&mut self, out: OutboundRequest) {
        let flow = if out.tcp {
            Some(self.transports.stream_flow_for(out.dest))
        } else {
            self.transports.udp_flow_for(out.dest)
        };
        let Some(flow) = flow else {
            tracing::warn!(dest = %out.dest, "no listener can reach the target");
            let _ = out.events.send(CallEvent::Failed(LegFailure::Transport));
            return;
        };
        let local_tag = random_token(10);
        let local_uri = NameAddr {
            display: String::new(),
            uri: out.from.clone(),
            params: Vec::new(),
        };
        let remote_uri = NameAddr {
            display: String::new(),
            uri: out.request_uri.clone(),
            params: Vec::new(),
        };
        let mut dialog = Dialog::new_uac(
            out.call_id.clone(),
            local_tag,
            local_uri,
            remote_uri,
            out.request_uri.clone(),
        );
        let (via, branch) = self.via(flow);
        let contact = self.contact(flow);
        let mut request = dialog.request(Method::Invite, &via, &contact, out.sdp.clone());
        request.headers.push("Allow", ALLOW);
        // No `Supported: timer`: rgsd does not send session refreshes, so an agent's UA that
        // wants session timers must be the refresher itself (RFC 4028 §9: without the UAC's
        // support, the UAS refreshes).
        request.headers.push("User-Agent", "rgsd");
        if !out.sdp.is_empty() {
            request.headers.push("Content-Type", "application/sdp");
        }
        for (name, value) in out.extra_headers {
            // The controller is trusted, but a header that would break framing is still refused.
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if name_ok && !value.contains(['\r', '\n']) {
                request.headers.push(name, value);
            } else {
                tracing::warn!(%name, "extra header refused: not a valid SIP header");
            }
        }
        self.legs.insert(
            out.leg,
            Leg {
                outbound: true,
                state: LegState::Early,
                dialog,
                events: out.events,
                flow,
                peer: out.dest,
                local_sdp: out.sdp,
                answer: None,
                answer_initial: false,
                invite_tx: None,
                invite: Some(request.clone()),
                ack: None,
                counted: false,
                heard: false,
                cancel_sent: false,
            },
        );
        let key = self.start_client(&request, &branch, flow, out.dest, Some(out.leg));
        if let Some(leg) = self.legs.get_mut(&out.leg) {
            leg.invite_tx = Some(key);
        }
    }
}

/// A host as written in a URI or Via: IPv6 literals get brackets.
fn uri_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

fn make_via(host: &str, port: u16, flow: Flow) -> (String, String) {
    let host = uri_host(host);
    let branch = format!("{BRANCH_COOKIE}{}", random_token(16));
    let transport = if flow.is_reliable() { "TCP" } else { "UDP" };
    (
        format!("SIP/2.0/{transport} {host}:{port};branch={branch};rport"),
        branch,
    )
}

fn make_contact(host: &str, port: u16, flow: Flow) -> String {
    let host = uri_host(host);
    let transport = if flow.is_reliable() {
        ";transport=tcp"
    } else {
        ""
    };
    format!("<sip:rgsd@{host}:{port}{transport}>")
}

/// RFC 3581 and §18.2.1: record where the request really came from in its top Via, so that
/// responses go back there.
fn stamp_via(request: &mut Request, source: SocketAddr) {
    let Some(mut via) = request.top_via() else {
        return;
    };
    let host = via
        .sent_by
        .rsplit_once(':')
        .map_or(via.sent_by.as_str(), |(h, p)| {
            if p.parse::<u16>().is_ok() {
                h
            } else {
                &via.sent_by
            }
        });
    let host = host.trim_matches(['[', ']']);
    let mut changed = false;
    if host.parse::<IpAddr>().ok() != Some(source.ip()) {
        via.params
            .retain(|(n, _)| !n.eq_ignore_ascii_case("received"));
        via.params
            .push(("received".into(), Some(source.ip().to_string())));
        changed = true;
    }
    if let Some(p) = via
        .params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case("rport"))
    {
        p.1 = Some(source.port().to_string());
        changed = true;
    }
    if changed {
        request
            .headers
            .set_first_list_item("Via", &Via::to_string(&via));
    }
}

fn is_sdp(headers: &Headers) -> bool {
    headers.get("Content-Type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    })
}

/// `Session-Expires: 1800;refresher=uac` as (seconds, refresher).
fn session_expires(headers: &Headers) -> Option<(u32, Option<String>)> {
    let value = headers.get("Session-Expires")?;
    let mut parts = value.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        p.trim()
            .strip_prefix("refresher=")
            .map(|r| r.trim().to_ascii_lowercase())
    });
    Some((secs, refresher))
}

/// What to echo in a 2xx to a request that asked for session timers (RFC 4028 §9): the
/// interval, the refresher (the peer, `uac`, unless it chose), and whether to add
/// `Require: timer` (only if the peer supports it).
///
/// rgsd never sends refreshes itself, so it never agrees to be the refresher: a request that
/// names `refresher=uas` without `Require: timer` is answered as by a UA without session
/// timers (no Session-Expires, no `Supported: timer`: see [`declines_session_timer`]), and the
/// peer refreshes or runs no timer (RFC 4028 §7.4). Only a peer that *requires* the extension
/// and names rgsd the refresher gets its choice echoed, with a warning: it may end the call
/// when the interval passes.
fn session_timer_reply(headers: &Headers) -> Option<(String, bool)> {
    let (secs, refresher) = session_expires(headers)?;
    if declines_session_timer(headers) {
        return None;
    }
    let refresher = refresher.unwrap_or_else(|| "uac".to_owned());
    if refresher == "uas" {
        tracing::warn!(
            secs,
            "the caller requires session timers with rgsd as refresher; rgsd does not refresh, \
             so the caller may end the call when the interval passes"
        );
    }
    let supported = headers
        .get_list("Supported")
        .any(|t| t.eq_ignore_ascii_case("timer"));
    Some((format!("{secs};refresher={refresher}"), supported))
}

/// Whether to answer `headers`' request as a UA without session timers: it asks rgsd to be
/// the refresher and does not require the extension.
fn declines_session_timer(headers: &Headers) -> bool {
    let required = headers
        .get_list("Require")
        .any(|t| t.eq_ignore_ascii_case("timer"));
    !required && session_expires(headers).is_some_and(|(_, r)| r.as_deref() == Some("uas"))
}

fn add_session_timer(response: &mut Response, timer: Option<(String, bool)>) {
    if let Some((value, require)) = timer {
        response.headers.push("Session-Expires", value);
        if require {
            response.headers.push("Require", "timer");
        }
    }
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
/// number and top Via; Route kept.
fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.get_list("Via").next() {
        headers.push("Via", via);
    }
    for route in invite.headers.get_lines("Route") {
        headers.push("Route", route);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "To", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            headers.push(name, v);
        }
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or_default();
    headers.push("CSeq", format!("{seq} CANCEL"));
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request {
        match message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:sales@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKabc;rport\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:sales@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n\
Session-Expires: 1800\r\nSupported: timer, 100rel\r\n\r\n";

    #[test]
    fn via_gets_received_and_rport() {
        let mut r = request(INVITE);
        stamp_via(&mut r, "192.0.2.7:4444".parse().unwrap());
        let via = r.top_via().unwrap();
        assert_eq!(via.param("received"), Some(Some("192.0.2.7")));
        assert_eq!(via.param("rport"), Some(Some("4444")));
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
    }

    #[test]
    fn rgsd_declines_to_be_the_refresher_unless_the_caller_requires_it() {
        let asked = request(&INVITE.replace(
            "Session-Expires: 1800",
            "Session-Expires: 1800;refresher=uas",
        ));
        assert!(declines_session_timer(&asked.headers));
        assert_eq!(session_timer_reply(&asked.headers), None);
        let required = request(&INVITE.replace(
            "Session-Expires: 1800",
            "Session-Expires: 1800;refresher=uas\r\nRequire: timer",
        ));
        assert!(!declines_session_timer(&required.headers));
        assert_eq!(
            session_timer_reply(&required.headers),
            Some(("1800;refresher=uas".to_owned(), true))
        );
        let peer = request(&INVITE.replace(
            "Session-Expires: 1800",
            "Session-Expires: 1800;refresher=uac",
        ));
        assert!(!declines_session_timer(&peer.headers));
    }

    #[test]
    fn session_timer_echo_defaults_refresher_to_uac_and_requires_timer() {
        let r = request(INVITE);
        assert_eq!(
            session_timer_reply(&r.headers),
            Some(("1800;refresher=uac".to_owned(), true))
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_via_and_contact() {
        let (via, branch) = make_via("2001:db8::1", 5060, Flow::Udp(0));
        assert!(via.starts_with("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK"));
        assert!(branch.starts_with(BRANCH_COOKIE));
        assert!(Via::parse(&via).is_ok());
        assert_eq!(
            make_contact("::1", 5070, Flow::Stream(3)),
            "<sip:rgsd@[::1]:5070;transport=tcp>"
        );
        assert_eq!(
            make_contact("pbx.example.com", 5060, Flow::Udp(0)),
            "<sip:rgsd@pbx.example.com:5060>"
        );
    }

    #[test]
    fn cancel_copies_the_invite_identity() {
        let r = request(INVITE);
        let c = cancel_for(&r);
        assert_eq!(c.headers.get("CSeq"), Some("2 CANCEL"));
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(c.uri, r.uri);
    }
}
