//! The [`Endpoint`]: the B2BUA's SIP side. One driver task owns every transaction, dialog and
//! call leg; transports feed it messages, handles feed it commands, and a timer heap feeds it
//! the time. The decisions are made by sans-IO parts: `transaction` (RFC 3261 §17),
//! `leg` (each leg's UA state machine), `admission` (edge policy), `session_timer` (RFC 4028),
//! `wire` (the headers rgsd writes). This file keeps the handle, the loop and the tables
//! (transactions, legs, dialogs, timers); its two child modules turn the parts' decisions into
//! messages: `inbound` (requests from peers, admission, in-dialog requests to their leg) and
//! `legs` (a leg core's outputs, responses to what rgsd sent, outbound INVITEs).
//!
//! The driver never awaits anything but its inputs: DNS for an outbound leg runs on a task of
//! its own (`resolve`), whose answer comes back as a command.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, CallRouter};
use super::call::{
    CallEvent, Command, EndpointGone, Handle, IncomingCall, LegFailure, LegId, OutboundCall,
    OutboundRequest,
};
use super::leg::{Input, Leg, LegState};
use super::message::{self, Message, ParseError, Request, Response};
use super::policy::Verdict;
use super::resolve::{Destination, ResolveError, Resolver};
use super::transaction::{Action, TransactionKey, Tx};
use super::transport::{BindError, BoundListener, Flow, TransportEvent, Transports};
use crate::config::model::{SipUri, Transport};
use crate::util::random_token;

mod inbound;
mod legs;

pub use super::settings::EndpointConfig;

/// Methods we implement, for `Allow`.
pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
/// Longest the endpoint keeps running after shutdown for requests already sent (a last BYE)
/// to get their final responses.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// Queue of inbound calls waiting for the controller; beyond it new INVITEs get 503. It only
/// absorbs bursts (the controller spawns a task per call and takes the next): 64 filled in
/// 21 ms at 3,000 calls/s whenever the controller's worker thread was descheduled for that long
/// on a loaded machine, refusing calls well below `max_calls`. Each entry is one `IncomingCall`
/// (the caller's headers and SDP, under 2 KiB), so 4,096 cost at most about 8 MiB.
const INCOMING_QUEUE: usize = 4096;

/// Why [`Endpoint::invite`] could not start a leg.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    /// The target is not a SIP URI we can parse.
    #[error("target {0} is not a usable SIP URI")]
    BadTarget(String),
    /// The endpoint has shut down.
    #[error(transparent)]
    Gone(#[from] EndpointGone),
}

/// Why [`Endpoint::request`] got no final response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The target is unusable or did not resolve.
    #[error(transparent)]
    Target(#[from] ResolveError),
    /// No final response within 64·T1 (timer F).
    #[error("no response")]
    Timeout,
    /// No listener can reach the target, or the connection failed.
    #[error("transport failure")]
    Transport,
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
    bound: Arc<ArcSwap<Vec<BoundListener>>>,
    next_leg: Arc<AtomicU64>,
    host: Arc<str>,
    resolver: Resolver,
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
        let tls = super::tls::contexts(&config.tls)?;
        let transports = Transports::bind(&config.listen, tls, transport_tx, stopped.clone())?;
        let bound = Arc::new(ArcSwap::from_pointee(transports.bound()));
        for b in bound.load().iter() {
            tracing::info!(transport = ?b.transport, addr = %b.addr, "SIP listening");
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let next_leg = Arc::new(AtomicU64::new(1));
        let transactions = Arc::new(TransactionCounts::default());
        let resolver = Resolver::new(&config.dns_servers);
        let endpoint = Self {
            commands: commands.clone(),
            bound: Arc::clone(&bound),
            next_leg: next_leg.clone(),
            host: config.advertised_host.clone().into(),
            resolver: resolver.clone(),
            transactions: Arc::clone(&transactions),
            stopped: stopped.clone(),
        };
        let mut admission = Admission::new(
            config.trusted_peers.clone(),
            config.max_calls,
            config.rate_limit,
        );
        admission.set_min_se(config.min_se);
        let driver = Driver {
            admission,
            config,
            bound,
            router,
            transports,
            commands,
            incoming: incoming_tx,
            next_leg,
            resolver,
            resolving: HashMap::new(),
            fallbacks: HashMap::new(),
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

    /// The bound listeners (ports resolved when the configuration said 0), as of now.
    pub fn local_addrs(&self) -> Vec<BoundListener> {
        self.bound.load().to_vec()
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.bound
            .load()
            .iter()
            .find(|b| b.transport == transport)
            .map(|b| b.addr)
    }

    /// The Contact URI (in angle brackets) for requests sent over `transport`.
    pub fn contact(&self, transport: Transport) -> String {
        let port = self.local_addr(transport).map_or(5060, |a| a.port());
        super::wire::make_contact(&self.host, port, transport, false)
    }

    /// Applies new edge settings while calls run: `trusted_peers`, `max_calls` and the rate
    /// limit for the next request, `outbound_proxy` for the next outbound leg; listeners added
    /// are opened and listeners removed are closed (connections a closed TCP listener accepted
    /// stay until they end). Returns the keys it
    /// could not apply (`advertised_host`, `dns_servers`, a listener that failed to bind), each
    /// of which needs a restart.
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub async fn reconfigure(&self, config: EndpointConfig) -> Result<Vec<String>, EndpointGone> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reconfigure {
                config: Box::new(config),
                reply,
            })
            .map_err(|_| EndpointGone)?;
        answer.await.map_err(|_| EndpointGone)
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
        // REGISTER and OPTIONS take the first destination; no failover.
        let destinations = self.resolver.resolve(target.as_str()).await?;
        let Some(first) = destinations.first() else {
            return Err(RequestError::Transport);
        };
        let (dest, tcp) = (first.addr, first.transport == Transport::Tcp);
        let tls_name = (first.transport == Transport::Tls).then(|| first.server_name.clone());
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                request: Box::new(request),
                dest,
                tcp,
                tls_name,
                reply,
            })
            .map_err(|_| EndpointGone)?;
        match answer.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(LegFailure::Timeout)) => Err(RequestError::Timeout),
            Ok(Err(_)) | Err(_) => Err(RequestError::Transport),
        }
    }

    /// Starts an outbound leg: INVITE `target` from `from` with `sdp_offer`, sent to the
    /// `outbound_proxy` when one is configured, else to the target's destinations (RFC 3263,
    /// `sip::resolve`; the next one when one fails before answering; TLS for a `sips:` target,
    /// `;transport=tls` or a TLS SRV record, the peer's certificate checked against the
    /// target's host). `target` may be a `tel:` number only with a proxy. Returns at once, without waiting for DNS: a host name is
    /// resolved on a task of the endpoint's (an address needs none), and every outcome arrives
    /// as an event on the returned leg ([`CallEvent::Answered`], or [`CallEvent::Failed`], with
    /// [`LegFailure::Transport`] when no destination is reachable). Cancelling the leg while its
    /// name is still resolving drops it: nothing is sent, and it fails with 487.
    ///
    /// # Errors
    ///
    /// [`InviteError`] when the target cannot be parsed, or after shutdown.
    pub async fn invite(
        &self,
        target: &SipUri,
        from: &SipUri,
        sdp_offer: Bytes,
        extra_headers: Vec<(String, String)>,
    ) -> Result<OutboundCall, InviteError> {
        if !super::resolve::usable_target(target.as_str()) {
            return Err(InviteError::BadTarget(target.to_string()));
        }
        let leg = LegId(self.next_leg.fetch_add(1, Ordering::Relaxed));
        let (events_tx, events) = mpsc::unbounded_channel();
        let call_id = format!("{}@{}", random_token(20), self.host);
        self.commands
            .send(Command::Invite(Box::new(OutboundRequest {
                leg,
                events: events_tx,
                route: None,
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

/// The Route header value that sends a request through `proxy` (RFC 3261 §16.12: `;lr`, the
/// proxy is a loose router, and the Request-URI stays the target).
fn proxy_route(proxy: &str) -> String {
    let has_lr = proxy.split(';').skip(1).any(|p| {
        p.trim().eq_ignore_ascii_case("lr") || p.trim().to_ascii_lowercase().starts_with("lr=")
    });
    if has_lr {
        format!("<{proxy}>")
    } else {
        format!("<{proxy};lr>")
    }
}

/// Who a heap entry wakes up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerOwner {
    Transaction(TransactionKey),
    Answer(LegId),
    /// A leg's session timer (RFC 4028), with the number the leg core gave it.
    Session(LegId, u32),
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

struct Driver {
    config: EndpointConfig,
    admission: Admission,
    /// What [`Endpoint::local_addrs`] reads.
    bound: Arc<ArcSwap<Vec<BoundListener>>>,
    router: Arc<dyn CallRouter>,
    transports: Transports,
    /// For handles created here (inbound calls), and for resolution results.
    commands: mpsc::UnboundedSender<Command>,
    incoming: mpsc::Sender<IncomingCall>,
    next_leg: Arc<AtomicU64>,
    resolver: Resolver,
    /// Outbound legs whose INVITE may still go to another destination (RFC 3263 §4.3): the
    /// request and the destinations not yet tried. Dropped at the first provisional response.
    fallbacks: HashMap<LegId, (OutboundRequest, VecDeque<Destination>)>,
    /// Outbound legs whose target is being resolved, with the task resolving it.
    resolving: HashMap<LegId, (OutboundRequest, tokio::task::AbortHandle)>,
    /// Boxed: an entry is several hundred bytes and the map holds every transaction of the last
    /// 32 s (RFC 6026 / 3261 wait states), 100,000 and more under load; unboxed, inserts and
    /// every growth of the table copied them all (about 5 % of rgsd's CPU at 4,000 calls/s).
    txs: HashMap<TransactionKey, Box<TxEntry>>,
    /// Deadlines, lazily invalidated: an entry whose owner is gone or not yet due is skipped.
    heap: BinaryHeap<Reverse<(Instant, TimerOwner)>>,
    legs: HashMap<LegId, Leg>,
    /// (Call-ID, local tag) to leg.
    dialogs: HashMap<(String, String), LegId>,
    inbound_calls: u32,
    /// Out-of-dialog requests from `Endpoint::request`, waiting for a final response.
    pending: HashMap<TransactionKey, oneshot::Sender<Result<Response, LegFailure>>>,
    transactions: Arc<TransactionCounts>,
}

/// What an in-dialog request or command brings along for the leg's outputs.
#[derive(Default)]
struct Ctx<'a> {
    /// The server transaction of the request in hand.
    key: Option<&'a TransactionKey>,
    request: Option<&'a Request>,
    /// SDP of a provisional response the holder asked for.
    sdp: Option<Bytes>,
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
                && (Instant::now() >= until || !self.txs.values().any(|e| e.tx.awaits_response()))
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
        for (_, (_, task)) in self.resolving.drain() {
            task.abort();
        }
        tracing::debug!("SIP endpoint stopped");
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
                            Action::TimedOut => {
                                tracing::info!("no ACK for our 2xx within 64*T1: hanging up");
                                self.step(leg_id, Input::AckTimeout, Ctx::default());
                            }
                            Action::Response(_) => {}
                        }
                    }
                    self.schedule(TimerOwner::Answer(leg_id), next);
                }
                TimerOwner::Session(leg_id, generation) => {
                    self.step(leg_id, Input::SessionTimer { generation }, Ctx::default());
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
            TransportEvent::Opened {
                id,
                peer,
                transport,
                writer,
            } => {
                self.transports.adopt_stream(id, peer, transport, writer);
            }
            TransportEvent::Closed { id, peer } => {
                self.transports.forget_stream(id);
                // Legs waiting on a transaction over this connection learn it now rather
                // than at timer B/F.
                let affected: Vec<LegId> = self
                    .legs
                    .iter()
                    .filter(|(_, l)| l.flow == Flow::Stream(id))
                    .map(|(leg, _)| *leg)
                    .collect();
                for leg in affected {
                    tracing::debug!(%peer, "connection closed under a call leg");
                    if !self.fail_over(leg, "connection failed") {
                        self.step(leg, Input::TransportClosed, Ctx::default());
                    }
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
        let is_response = bytes.starts_with(b"SIP/2.0 ");
        match self.admission.pass_rate(source.ip(), is_response, now) {
            Verdict::Allow => {}
            Verdict::DropAndLog => {
                tracing::warn!(%source, "request rate limit exceeded; dropping (logged once a minute)");
                return;
            }
            Verdict::DropTableFullAndLog => {
                tracing::warn!(%source, "requests from more sources than the rate limiter tracks (10,000 active); dropping new sources until some go quiet (logged once a minute)");
                return;
            }
            Verdict::Drop => return,
        }
        match message::parse(bytes) {
            Ok(Message::Request(request)) => self.on_request(request, source, flow, now),
            Ok(Message::Response(response)) => {
                let Some(key) = TransactionKey::for_response(&response) else {
                    return;
                };
                let Some(entry) = self.txs.get_mut(&key) else {
                    tracing::trace!(status = response.status, "stray response");
                    return;
                };
                let actions = entry.tx.on_response(response, now);
                self.run_actions(&key, actions);
                self.settle(&key);
            }
            Err(ParseError::Empty) => {}
            Err(error) => {
                tracing::debug!(%source, %error, "malformed message");
                if let Some(reply) = message::bad_request(bytes, &error) {
                    self.transports.send(flow, source, reply);
                }
            }
        }
    }
    // ---- commands -------------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        let ctx = Ctx::default();
        match command {
            Command::Ring { leg, status, sdp } => {
                let ctx = Ctx { sdp, ..ctx };
                self.step(leg, Input::Ring(status), ctx);
            }
            Command::Answer { leg, sdp } => {
                if let Some(l) = self.legs.get_mut(&leg)
                    && l.core.state == LegState::Early
                    && !l.core.outbound
                {
                    l.local_sdp = sdp;
                }
                self.step(leg, Input::Answer, ctx);
            }
            Command::Reject { leg, status } => self.step(leg, Input::Reject(status), ctx),
            Command::SetLocalSdp { leg, sdp } => {
                if let Some(leg) = self.legs.get_mut(&leg) {
                    leg.local_sdp = sdp;
                }
            }
            Command::Hangup { leg } => {
                if let Some((out, task)) = self.resolving.remove(&leg) {
                    // Still resolving: nothing was sent, nothing will be.
                    task.abort();
                    let _ = out.events.send(CallEvent::Failed(LegFailure::Status(487)));
                }
                self.step(leg, Input::Hangup, ctx);
            }
            Command::Invite(out) => self.place(*out),
            Command::Resolved { leg, result } => {
                let Some((out, _)) = self.resolving.remove(&leg) else {
                    return; // cancelled while resolving
                };
                match result {
                    Ok(destinations) => self.try_destinations(out, destinations.into()),
                    Err(reason) => {
                        tracing::warn!(target = %out.request_uri, "cannot place leg: {reason}");
                        let _ = out.events.send(CallEvent::Failed(LegFailure::Transport));
                    }
                }
            }
            Command::Request {
                request,
                dest,
                tcp,
                tls_name,
                reply,
            } => {
                let Some(flow) = self.flow_to(dest, tcp, tls_name.as_deref()) else {
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
            Command::Reconfigure { config, reply } => {
                let _ = reply.send(self.reconfigure(*config));
            }
        }
    }

    /// The flow a request to `dest` goes out on: TLS when `tls_name` is set (the name the
    /// peer's certificate must carry), else TCP when `tcp`, else UDP.
    fn flow_to(&mut self, dest: SocketAddr, tcp: bool, tls_name: Option<&str>) -> Option<Flow> {
        if tcp || tls_name.is_some() {
            Some(self.transports.stream_flow_for(dest, tls_name))
        } else {
            self.transports.udp_flow_for(dest)
        }
    }

    /// Sends an outbound INVITE towards its next hop: the `outbound_proxy` when one is
    /// configured (the INVITE then carries `Route: <proxy;lr>`), else the target itself. An
    /// address goes out now; a host name is looked up on a task of its own, whose answer comes
    /// back as [`Command::Resolved`].
    fn place(&mut self, mut out: OutboundRequest) {
        let hop = match &self.config.outbound_proxy {
            Some(proxy) => {
                out.route = Some(proxy_route(proxy.as_str()));
                proxy.as_str().to_owned()
            }
            None if super::resolve::is_number(&out.request_uri) => {
                // A number only ever leaves through the proxy (README, "toll fraud").
                tracing::warn!(target = %out.request_uri, "cannot place leg: a number needs server.outbound_proxy");
                let _ = out.events.send(CallEvent::Failed(LegFailure::Transport));
                return;
            }
            None => out.request_uri.clone(),
        };
        match super::resolve::literal(&hop) {
            Some(Ok(destinations)) => self.try_destinations(out, destinations.into()),
            Some(Err(reason)) => {
                tracing::warn!(target = %out.request_uri, "cannot place leg: {reason}");
                let _ = out.events.send(CallEvent::Failed(LegFailure::Transport));
            }
            None => self.resolve(out, hop),
        }
    }

    /// Sends the leg's INVITE to the first destination it can reach; the rest are kept for
    /// [`fail_over`](Self::fail_over). None left: the leg fails.
    fn try_destinations(&mut self, out: OutboundRequest, mut rest: VecDeque<Destination>) {
        while let Some(next) = rest.pop_front() {
            let flow = match next.transport {
                Transport::Udp => self.transports.udp_flow_for(next.addr),
                Transport::Tcp => Some(self.transports.stream_flow_for(next.addr, None)),
                // The peer's certificate must name the URI's host (RFC 5922).
                Transport::Tls => Some(
                    self.transports
                        .stream_flow_for(next.addr, Some(next.server_name.as_str())),
                ),
            };
            let Some(flow) = flow else {
                tracing::warn!(dest = %next.addr, "no listener can reach this destination");
                continue;
            };
            if !rest.is_empty() {
                self.fallbacks.insert(out.leg, (out.clone(), rest));
            }
            self.invite(out, next.addr, flow);
            return;
        }
        tracing::warn!(target = %out.request_uri, "cannot place leg: no reachable destination");
        let _ = out.events.send(CallEvent::Failed(LegFailure::Transport));
    }

    /// RFC 3263 §4.3: the INVITE of `leg_id` failed before any provisional response (connection
    /// failed, 503, no answer): sends it to the next destination. False when there is none or
    /// the leg is past that point (then its failure stands).
    pub(super) fn fail_over(&mut self, leg_id: LegId, why: &str) -> bool {
        let early = self
            .legs
            .get(&leg_id)
            .is_some_and(|l| l.core.state == LegState::Early);
        if !early {
            return false;
        }
        let Some((out, rest)) = self.fallbacks.remove(&leg_id) else {
            return false;
        };
        if let Some(old) = self.legs.remove(&leg_id) {
            tracing::info!(target = %out.request_uri, failed = %old.peer, "{why}; trying the next destination");
        }
        self.try_destinations(out, rest);
        true
    }

    /// Looks `hop` up on a task of its own; the answer comes back as [`Command::Resolved`].
    fn resolve(&mut self, out: OutboundRequest, hop: String) {
        let leg = out.leg;
        let (resolver, commands) = (self.resolver.clone(), self.commands.clone());
        let task = tokio::spawn(async move {
            let result = resolver.resolve(&hop).await.map_err(|e| e.to_string());
            let _ = commands.send(Command::Resolved { leg, result });
        });
        self.resolving.insert(leg, (out, task.abort_handle()));
    }

    fn reconfigure(&mut self, new: EndpointConfig) -> Vec<String> {
        let mut restart = Vec::new();
        self.admission
            .reconfigure(new.trusted_peers.clone(), new.max_calls, new.rate_limit);
        self.admission.set_min_se(new.min_se);
        // Before the listeners: a tls: listener added now needs the new certificate.
        match super::tls::contexts(&new.tls) {
            Ok(tls) => self.transports.set_tls(tls),
            Err(e) => {
                tracing::error!("{e}; TLS keeps the running certificate");
                restart.push("tls".to_owned());
            }
        }
        for listen in self.transports.configured() {
            if !new.listen.contains(&listen)
                && let Some(b) = self.transports.close(&listen)
            {
                tracing::info!(transport = ?b.transport, addr = %b.addr, "SIP listener closed");
            }
        }
        for listen in &new.listen {
            if self.transports.configured().contains(listen) {
                continue;
            }
            match self.transports.open(listen) {
                Ok(b) => tracing::info!(transport = ?b.transport, addr = %b.addr, "SIP listening"),
                Err(e) => {
                    tracing::error!(
                        "{e}: {}",
                        std::error::Error::source(&e).map_or_else(String::new, ToString::to_string)
                    );
                    restart.push(format!(
                        "sip_listen ({:?} {})",
                        listen.transport, listen.addr
                    ));
                }
            }
        }
        self.bound.store(Arc::new(self.transports.bound()));
        if new.advertised_host != self.config.advertised_host {
            restart.push("advertised_host".to_owned());
        }
        if new.dns_servers != self.config.dns_servers {
            restart.push("dns_servers".to_owned());
        }
        if new.outbound_proxy != self.config.outbound_proxy {
            tracing::info!(
                outbound_proxy = new.outbound_proxy.as_ref().map_or("none", SipUri::as_str),
                "outbound proxy for new legs"
            );
        }
        let EndpointConfig {
            listen,
            trusted_peers,
            max_calls,
            rate_limit,
            outbound_proxy,
            session_expires,
            min_se,
            tls,
            ..
        } = new;
        self.config = EndpointConfig {
            listen,
            trusted_peers,
            max_calls,
            rate_limit,
            outbound_proxy,
            session_expires,
            min_se,
            tls,
            ..self.config.clone()
        };
        restart
    }
}
