//! The call controller: [`Controller`] takes the SIP endpoint's inbound calls and runs one tokio
//! task per call, the driver of [`workflow::call::Call`](crate::workflow::call::Call).
//!
//! Each call task:
//!
//! 1. finds the workflow of the Request-URI, builds the media leg from the caller's SDP offer
//!    (488 when no codec is common, 503 when no RTP port is free) and answers 200 OK;
//! 2. once the ACK arrives, feeds `Event::Started` and loops: `select!` over the caller's SIP
//!    events (BYE, INFO digits, re-INVITE), the caller's media events (prompt finished, RFC 4733
//!    digits), the queue owner's answers (entered, offered, overflowed), the agent and forward
//!    legs' SIP events, and the earliest armed timer; each event goes through `Call::on`, and
//!    the effects are applied in order;
//! 3. when the phase is `Ended`, hangs up whatever is left, releases every agent claim and
//!    submits the call record.
//!
//! Agent legs are outbound INVITEs from the workflow's URI with rgsd's own SDP offer; the
//! caller's dialog never carries anything of the agent (rgsd is a B2BUA: its From, To tag,
//! Contact and SDP toward the caller are its own), so anonymous workflows need nothing more.
//! With `call_context = true` agent INVITEs carry `X-RGS-Workflow`, `X-RGS-Queue`,
//! `X-RGS-Caller`, `X-RGS-Wait` (seconds in queue) and `X-RGS-Answers` (IVR keys).
//!
//! Observation: the task reports the call to [`Services`]' [`CallObserver`] at arrival, at each
//! change of [`CallStage`], queue or agent (after an event's effects are applied) and at the end
//! (with the call record's outcome and queue wait); rejected calls report their end only.
//!
//! Time: monotonic from `tokio::time::Instant` (so `tokio::time::pause()` drives alert times and
//! queue time-outs in tests), wall time from the shared [`Clock`](crate::clock::Clock).
//!
//! Reload: a call keeps the [`Runtime`] (configuration, prompts, queue handles) it started
//! with, but the queue owners behind those handles are shared with the new runtime for every
//! queue the new file keeps by name (see `runtime`): a call waiting there is offered to the new
//! configuration's agents, keeps its place, and its time-out still runs from its queue entry
//! with the duration it started with. A call ringing an agent or bridged goes on as it was.
//! Agent ids are stable and the agent table is the process's only one, so whatever a reload
//! does, the call's ids name the agents it was offered.
//!
//! Agent states: the call holds the claims its offers carried (an agent `ringing` for this
//! call) and is their only writer: it releases them (declined, cancelled, timed out) or turns
//! them into a call (`answered`), and at the end it gives back whatever it still holds. A freed
//! agent wakes only the queues whose groups contain it.
//!
//! Effects never wait in the event loop: queue messages go to the owner's inbox with
//! `try_send`, and when it is full they wait in the call's own ordered outbox, drained by the
//! same `select!` that hears the caller's BYE. A media leg whose task has died when it is to be
//! bridged ends the call, logged, with the record's outcome `failed`.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;

use std::collections::HashSet;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::acd::agents::{AgentId, AgentState, AgentTable, CallKey, WrapUpToken};
use crate::acd::announce::Announcer;
use crate::acd::observe::{CallObserver, CallSnapshot, CallStage, NoObserver};
use crate::acd::queue::{Command, command_for};
use crate::acd::queue_task::{Outbox, Place, QueueMsg};
use crate::acd::record;
use crate::acd::router;
use crate::acd::runtime::Runtime;
use crate::clock::SharedClock;
use crate::config::model::{AgentGroupId, PromptId, QueueId, SipUri, WorkflowId};
use crate::media::dtmf::parse_info_body;
use crate::media::leg::{Leg, LegError, LegEvent, MediaEngine};
use crate::sip::{self, CallEvent, Endpoint, IncomingCall, LegFailure, OutboundCall};
use crate::store::CallJournal;
use crate::store::{CallOutcome, RecordWriter};
use crate::workflow::call::{Call, Effect, Event, Now, Peer, Phase, RecordEvent, SipStatus, Timer};

/// The answer on `asking`, when there is a question out; never otherwise. A dropped sender
/// (the queue owner is gone) answers `None`.
async fn answer_of(asking: &mut Option<oneshot::Receiver<Option<Place>>>) -> Option<Place> {
    match asking {
        Some(rx) => rx.await.unwrap_or(None),
        None => std::future::pending().await,
    }
}

/// Ends the agent's wrap-up period `token` when it is due (unless the agent ended it earlier, or
/// it is no longer the period in progress) and wakes the queues of the agent's groups. The timer
/// outlives the call that started it; a restart forgets it (the agent starts free).
fn arm_wrap_up(svc: &Services, agent: AgentId, token: WrapUpToken) {
    let agents = Arc::clone(&svc.agents);
    let runtime = Arc::clone(&svc.runtime);
    let observer = Arc::clone(&svc.observer);
    let at = Instant::from_std(agents.wrap_up_deadline(token));
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        if agents.end_wrap_up(agent, Instant::now().into_std(), Some(token)) {
            let membership = agents.membership();
            runtime
                .load()
                .queues
                .wake_groups(membership.groups_of(agent));
            observer.agent_changed();
        }
    });
}

/// What every call shares, whatever its configuration.
#[derive(Debug)]
pub struct Services {
    pub endpoint: Endpoint,
    pub media: MediaEngine,
    pub records: RecordWriter,
    pub clock: SharedClock,
    /// The runtime new calls get (swapped by `Acd::reload`).
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// The process's agent table (the same in every runtime).
    pub agents: Arc<AgentTable>,
    /// Told about calls in progress and ended calls ([`NoObserver`] unless
    /// [`Services::with_observer`]).
    pub observer: Arc<dyn CallObserver>,
    /// Cancelled when the daemon's drain limit passes: every call still up is ended with BYE
    /// (each leg) and recorded.
    pub hang_up: CancellationToken,
    /// Where each call's progress and end are written so that the next start can record the
    /// calls a crash cut (`store::CallJournal`); `None`: not kept (tests without a daemon).
    pub journal: Option<Arc<CallJournal>>,
    next_key: AtomicU32,
}

impl Services {
    pub fn new(
        endpoint: Endpoint,
        media: MediaEngine,
        records: RecordWriter,
        clock: SharedClock,
        runtime: Arc<ArcSwap<Runtime>>,
    ) -> Self {
        let agents = Arc::clone(&runtime.load().agents);
        Self {
            endpoint,
            media,
            records,
            clock,
            runtime,
            agents,
            hang_up: CancellationToken::new(),
            observer: Arc::new(NoObserver),
            journal: None,
            next_key: AtomicU32::new(0),
        }
    }

    /// Reports calls to `observer` instead of ignoring them.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Journals every call's progress and end in `journal`.
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<CallJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    fn now(&self) -> Now {
        Now {
            instant: Instant::now().into_std(),
            utc: self.clock.now_utc(),
        }
    }

    fn key(&self) -> CallKey {
        // Keys wrap after 2^32 calls; by then the call that had a key is long gone.
        CallKey(self.next_key.fetch_add(1, Ordering::Relaxed))
    }
}

/// Takes inbound calls and runs a task per call.
pub struct Controller {
    pub services: Arc<Services>,
    /// Cancelled when the daemon stops taking calls: new INVITEs get 503.
    pub stopping: CancellationToken,
    /// Every call task (the daemon waits on it for the shutdown grace).
    pub calls: TaskTracker,
}

impl Controller {
    /// Runs until the endpoint closes its channel.
    pub async fn run(self, mut incoming: mpsc::Receiver<IncomingCall>) {
        while let Some(call) = incoming.recv().await {
            if self.stopping.is_cancelled() {
                info!(call_id = %call.info().call_id, "shutting down: 503");
                let _ = call.reject(503);
                continue;
            }
            let context = self.services.runtime.load_full();
            let services = Arc::clone(&self.services);
            let span = info_span!("call", call_id = %call.info().call_id);
            self.calls
                .spawn(run_call(call, context, services).instrument(span));
        }
    }
}

/// Runs one inbound call from INVITE to call record.
pub(crate) async fn run_call(incoming: IncomingCall, ctx: Arc<Runtime>, svc: Arc<Services>) {
    let info = incoming.info().clone();
    // Routed once, by the endpoint (404 and 480 were answered there), unless a reload came
    // between the endpoint's decision and this runtime (see `router`).
    let workflow = match router::resolve(&ctx, incoming.route(), &info.request_uri) {
        Ok(workflow) => workflow,
        Err(status) => {
            let _ = incoming.reject(status);
            return;
        }
    };
    let reject = |incoming: IncomingCall, status: u16| {
        let _ = incoming.reject(status);
        let leg = record::Leg {
            call_id: &info.call_id,
            caller: &info.from,
            sip_code: Some(status),
        };
        submit(
            &svc,
            record::rejected(&ctx.config, workflow, &leg, svc.clock.now_utc()),
        );
    };
    let late_offer = info.sdp.is_empty();
    let srtp = ctx
        .config
        .workflow(workflow)
        .caller_srtp(&ctx.config.server);
    let created = if late_offer {
        svc.media.offer(srtp).await
    } else {
        svc.media.answer(&info.sdp, srtp).await
    };
    let (media, local_sdp) = match created {
        Ok(c) => c,
        Err(LegError::Sdp(e)) => {
            info!("caller SDP refused: {e}");
            reject(incoming, e.sip_status());
            return;
        }
        Err(LegError::Port(e)) => {
            warn!("no RTP port: {e}");
            reject(incoming, 503);
            return;
        }
    };
    let now = svc.now();
    let machine = Call::new(Arc::clone(&ctx.config), workflow, now);
    let Ok(caller) = incoming.answer(Bytes::from(local_sdp)) else {
        return;
    };
    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    let mut task = CallTask {
        key: svc.key(),
        workflow,
        machine,
        caller,
        caller_open: true,
        started: false,
        late_offer,
        media,
        inbox_tx,
        inbox,
        legs: HashMap::new(),
        claims: HashSet::new(),
        outbox: Outbox::default(),
        failed: None,
        session_expired: false,
        forward: None,
        bridged_agent: None,
        offered_through: HashMap::new(),
        bridged_group: None,
        waiting_in: None,
        drained: false,
        announcements: 0,
        wrap_up_after: None,
        announcer: None,
        asking: None,
        announcing: VecDeque::new(),
        queue: None,
        timers: HashMap::new(),
        pending: VecDeque::new(),
        effects: Vec::new(),
        reported: None,
        ctx,
        svc,
    };
    task.report();
    task.run().await;
    task.finish();
}

/// Reports the end to the observer and hands the record to the writer.
fn submit(svc: &Services, record: crate::store::CallRecord) {
    svc.observer
        .call_ended(&record.call_id, record.outcome, record.wait);
    if let Some(journal) = &svc.journal {
        journal.ended(&record);
    }
    if let Err(e) = svc.records.submit(record) {
        warn!("call record dropped: {e}");
    }
}

/// An outbound leg: an agent being offered the call, or a forward target.
#[derive(Debug)]
struct FarLeg {
    sip: OutboundCall,
    media: Leg,
    answered: bool,
}

/// Which outbound leg an event came from.
#[derive(Debug, Clone, Copy)]
enum Far {
    Agent(AgentId),
    Forward,
}

struct CallTask {
    ctx: Arc<Runtime>,
    svc: Arc<Services>,
    key: CallKey,
    workflow: WorkflowId,
    machine: Call,
    caller: sip::Call,
    /// The caller's dialog can still report events.
    caller_open: bool,
    /// The ACK arrived and `Event::Started` was fed.
    started: bool,
    /// The INVITE had no SDP: our 200 carried the offer and the ACK carries the answer.
    late_offer: bool,
    media: Leg,
    inbox_tx: mpsc::UnboundedSender<Event>,
    /// Answers of the queue owner.
    inbox: mpsc::UnboundedReceiver<Event>,
    legs: HashMap<AgentId, FarLeg>,
    /// Agents ringing for this call by its claim: this task is their state's only writer.
    claims: HashSet<AgentId>,
    /// Queue messages the owners' inboxes had no room for yet, in order.
    outbox: Outbox,
    /// Why rgsd ends the call itself (a media leg died); recorded as `failed`.
    failed: Option<&'static str>,
    /// A leg's session timer ran out (RFC 4028): the record says so.
    session_expired: bool,
    forward: Option<FarLeg>,
    /// The agent this call counted as busy in the agent table (`answered`), until `call_ended`.
    bridged_agent: Option<AgentId>,
    /// The group through which each agent was last offered this call (its wrap-up applies).
    offered_through: HashMap<AgentId, AgentGroupId>,
    /// The group the bridged agent answered through.
    bridged_group: Option<AgentGroupId>,
    /// The queue the call waits in now and when it entered (the wait estimate's sample at the
    /// answer).
    waiting_in: Option<(QueueId, Instant)>,
    /// Ended by the daemon's drain limit ([`Services::hang_up`]).
    drained: bool,
    /// Announcements played to the caller so far (the record keeps the count).
    announcements: u32,
    /// The wrap-up the bridged agent went into when this call ended (the record keeps it).
    wrap_up_after: Option<std::time::Duration>,
    /// Its announcements' schedule, while it waits in a queue that has some.
    announcer: Option<Announcer>,
    /// A place asked of the queue owner for an announcement, not answered yet.
    asking: Option<oneshot::Receiver<Option<Place>>>,
    /// The announcement playing now: the prompts still to come after the current one. Set
    /// while an announcement plays (with the current prompt first), cleared by any media
    /// change the workflow makes.
    announcing: VecDeque<PromptId>,
    /// The queue the call was last added to and not yet removed from.
    queue: Option<QueueId>,
    timers: HashMap<Timer, Instant>,
    /// Events to feed before waiting for more.
    pending: VecDeque<Event>,
    effects: Vec<Effect>,
    /// What was last reported to the observer (stage, queue, agent).
    reported: Option<StageKey>,
}

/// What the observer is told about again when it changes.
type StageKey = (CallStage, Option<QueueId>, Option<AgentId>);

/// The stage of `phase` with its queue and agent; `None` once ended.
fn stage_key(phase: &Phase) -> Option<StageKey> {
    Some(match phase {
        Phase::Arrived | Phase::Welcome | Phase::Announcing { .. } => {
            (CallStage::Greeting, None, None)
        }
        Phase::Asking { .. } => (CallStage::Ivr, None, None),
        Phase::Queued { queue, .. } => (CallStage::Waiting, Some(*queue), None),
        Phase::Offering { queue, ringing, .. } => {
            (CallStage::Ringing, Some(*queue), ringing.first().copied())
        }
        Phase::Forwarding { .. } => (CallStage::Forwarding, None, None),
        Phase::Bridged { peer, .. } => {
            let agent = match peer {
                Peer::Agent(a) => Some(*a),
                Peer::Forward { .. } => None,
            };
            (CallStage::Talking, None, agent)
        }
        Phase::Ended(_) => return None,
    })
}

impl CallTask {
    async fn run(&mut self) {
        loop {
            while let Some(event) = self.pending.pop_front() {
                self.feed(event).await;
            }
            if matches!(self.machine.phase(), Phase::Ended(_)) || self.failed.is_some() {
                return;
            }
            let deadline = self.timers.values().min().copied();
            let announce_at = self.announcer.as_ref().and_then(Announcer::next_due);
            tokio::select! {
                () = self.svc.hang_up.cancelled(), if !self.drained => self.drain_end(),
                () = crate::util::sleep_until(announce_at) => self.announce_due(),
                place = answer_of(&mut self.asking) => self.on_place(place),
                event = self.caller.next_event(), if self.caller_open => self.on_caller(event),
                Some(event) = self.media.next_event() => self.on_media(event),
                Some(queued) = self.inbox.recv() => self.on_queue(queued),
                (far, event) = next_far_event(&mut self.legs, &mut self.forward) => {
                    self.on_far(far, event);
                }
                () = self.outbox.flush_one(&self.ctx.queues) => {}
                () = crate::util::sleep_until(deadline) => self.fire_timers(),
            }
        }
    }

    async fn feed(&mut self, event: Event) {
        let now = self.svc.now();
        debug!(?event, "call event");
        let mut effects = std::mem::take(&mut self.effects);
        let rang_out = event == Event::AlertTimeout;
        self.machine.on(event, now, &mut effects);
        if rang_out {
            // Agents who let the offer ring out go to the back of the longest-idle order, so
            // one who never answers does not take every next call's alert time
            // (`docs/behaviour.md`, Agent groups). Still claimed by this call: no one else can
            // offer them anything before the release below.
            for effect in &effects {
                if let Effect::CancelRing(agent) = effect
                    && self.claims.contains(agent)
                {
                    self.svc.agents.rang_out(*agent, now.instant);
                }
            }
        }
        for effect in effects.drain(..) {
            self.apply(effect).await;
        }
        self.effects = effects;
        self.report();
    }

    /// Tells the observer what the call is doing, when that changed since the last report.
    fn report(&mut self) {
        let Some(key) = stage_key(self.machine.phase()) else {
            return;
        };
        if self.reported == Some(key) {
            return;
        }
        self.reported = Some(key);
        let (stage, _, agent) = key;
        let config = &self.ctx.config;
        let mut arrived_at = None;
        let mut entered = None;
        for s in self.machine.timeline() {
            match &s.event {
                RecordEvent::Arrived { .. } => arrived_at = arrived_at.or(Some(s.at)),
                RecordEvent::QueueEntered { queue } => entered = Some((*queue, s.at)),
                _ => {}
            }
        }
        let info = self.caller.info();
        let snapshot = CallSnapshot {
            call_id: info.call_id.clone(),
            workflow: config.workflow(self.workflow).name.clone(),
            caller: info.from.clone(),
            stage,
            arrived_at: arrived_at.unwrap_or_else(|| self.svc.clock.now_utc()),
            queue: entered.map(|(q, _)| config.queue(q).name.clone()),
            queued_at: entered.map(|(_, at)| at),
            agent: agent.map(|a| self.uri_of(a).to_string()),
        };
        self.svc.observer.call_updated(&snapshot);
        if let Some(journal) = &self.svc.journal {
            journal.in_progress(&self.record_now());
        }
    }

    /// The call's record as its timeline stands now (ended now if it has no end yet), with the
    /// announcements heard so far: the journal's in-progress line and, at the end, the record.
    fn record_now(&self) -> crate::store::CallRecord {
        let info = self.caller.info();
        let leg = record::Leg {
            call_id: &info.call_id,
            caller: &info.from,
            sip_code: Some(200),
        };
        let uri = |a: AgentId| self.uri_of(a);
        let group = |g| self.svc.agents.group_name(g).map(str::to_owned);
        let mut record = record::from_timeline(
            &self.ctx.config,
            &uri,
            &group,
            self.workflow,
            &leg,
            self.machine.timeline(),
            self.svc.clock.now_utc(),
        );
        record.announcements = self.announcements;
        record
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due: Vec<(Timer, Instant)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, at)| (*t, *at))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        for (timer, _) in due {
            self.timers.remove(&timer);
            self.pending.push_back(timer.event());
        }
    }

    fn on_caller(&mut self, event: Option<CallEvent>) {
        match event {
            Some(CallEvent::Confirmed { sdp }) => {
                if self.late_offer
                    && let Some(sdp) = sdp
                    && let Err(e) = self.media.accept_answer(&sdp)
                {
                    info!("caller's SDP answer unusable: {e}");
                    let _ = self.caller.bye();
                    self.pending.push_back(Event::CallerHungUp);
                    return;
                }
                if !self.started {
                    self.started = true;
                    self.pending.push_back(Event::Started);
                }
            }
            Some(CallEvent::Bye | CallEvent::Cancelled | CallEvent::AckTimeout) | None => {
                self.caller_open = false;
                self.pending.push_back(Event::CallerHungUp);
            }
            Some(CallEvent::SessionExpired) => {
                info!("the caller's session timer ran out");
                self.session_expired = true;
                self.caller_open = false;
                self.pending.push_back(Event::CallerHungUp);
            }
            Some(CallEvent::Ended) => self.caller_open = false,
            Some(CallEvent::Reinvite { sdp } | CallEvent::Update { sdp }) => {
                if let Some(sdp) = sdp {
                    match self.media.answer_reoffer(&sdp) {
                        Ok(answer) => {
                            let _ = self.caller.set_local_sdp(Bytes::from(answer));
                        }
                        Err(e) => info!("caller re-offer ignored: {e}"),
                    }
                }
            }
            Some(CallEvent::Info { content_type, body }) => {
                let body = String::from_utf8_lossy(&body);
                if let Some(key) = parse_info_body(content_type.as_deref().unwrap_or(""), &body) {
                    self.pending.push_back(Event::Digit(key));
                }
            }
            Some(
                CallEvent::Provisional { .. } | CallEvent::Answered { .. } | CallEvent::Failed(_),
            ) => {}
        }
    }

    fn on_queue(&mut self, event: Event) {
        if let (Event::EnteredQueue(crate::workflow::call::Entry::Waiting { .. }), Some(queue)) =
            (&event, self.queue)
        {
            let now = Instant::now();
            self.waiting_in = Some((queue, now));
            self.announcer = Announcer::start(&self.ctx.config.queue(queue).announce, now);
        }
        if let Event::Offered(offer) = &event {
            for &a in &offer.agents {
                self.offered_through.insert(a, offer.group);
                // Claimed for this call by the queue owner (attendant offers ring unclaimed):
                // from here on only this task moves the agent out of `ringing(this call)`.
                if self.svc.agents.state(a) == Some(AgentState::Ringing(self.key)) {
                    self.claims.insert(a);
                }
            }
        }
        self.pending.push_back(event);
    }

    fn on_media(&mut self, event: LegEvent) {
        match event {
            LegEvent::Digit(d) if self.started => self.pending.push_back(Event::Digit(d.key)),
            LegEvent::PromptFinished if !self.announcing.is_empty() => self.announce_next(),
            LegEvent::PromptFinished if self.started => self.pending.push_back(Event::PromptEnded),
            LegEvent::MediaTimeout => {
                info!("no RTP from the caller: hanging up");
                if self.caller_open {
                    let _ = self.caller.bye();
                }
                self.pending.push_back(Event::CallerHungUp);
            }
            LegEvent::Digit(_) | LegEvent::PromptFinished => {}
        }
    }

    fn on_far(&mut self, far: Far, event: Option<CallEvent>) {
        let leg = match far {
            Far::Agent(a) => self.legs.get_mut(&a),
            Far::Forward => self.forward.as_mut(),
        };
        let Some(leg) = leg else { return };
        let event = event.unwrap_or(CallEvent::Failed(LegFailure::Transport));
        match event {
            CallEvent::Provisional { .. }
            | CallEvent::Info { .. }
            | CallEvent::Confirmed { .. } => {}
            CallEvent::Answered { sdp } => {
                leg.answered = true;
                if let Err(e) = leg.media.accept_answer(&sdp) {
                    info!(?far, "answer SDP unusable: {e}");
                    let _ = leg.sip.bye();
                    self.remove_far(far);
                    self.pending.push_back(match far {
                        Far::Agent(a) => Event::AgentFailed(a),
                        Far::Forward => Event::ForwardFailed(SipStatus(488)),
                    });
                    return;
                }
                match far {
                    Far::Agent(a) => self.pending.push_back(Event::AgentAnswered(a)),
                    Far::Forward => {
                        if self.media.bridge(&leg.media).is_err() {
                            self.fail("a media leg stopped before the forward could be bridged");
                            return;
                        }
                        self.pending.push_back(Event::ForwardAnswered);
                    }
                }
            }
            CallEvent::Failed(failure) => {
                self.remove_far(far);
                self.pending.push_back(match (far, failure) {
                    (Far::Agent(a), LegFailure::Status(code)) => {
                        Event::AgentRefused(a, SipStatus(code))
                    }
                    (Far::Agent(a), LegFailure::Timeout | LegFailure::Transport) => {
                        Event::AgentFailed(a)
                    }
                    (Far::Forward, LegFailure::Status(code)) => {
                        Event::ForwardFailed(SipStatus(code))
                    }
                    (Far::Forward, LegFailure::Timeout) => Event::ForwardFailed(SipStatus(408)),
                    (Far::Forward, LegFailure::Transport) => Event::ForwardFailed(SipStatus(500)),
                });
            }
            CallEvent::Bye
            | CallEvent::AckTimeout
            | CallEvent::Cancelled
            | CallEvent::Ended
            | CallEvent::SessionExpired => {
                if event == CallEvent::SessionExpired {
                    info!(?far, "the far leg's session timer ran out");
                    self.session_expired = true;
                }
                let answered = leg.answered;
                self.remove_far(far);
                match far {
                    Far::Agent(a) if self.bridged_agent == Some(a) => {
                        self.end_agent_call(a);
                        self.pending.push_back(Event::PeerHungUp);
                    }
                    Far::Agent(a) if !answered => self.pending.push_back(Event::AgentFailed(a)),
                    Far::Agent(_) => {}
                    Far::Forward if answered => self.pending.push_back(Event::PeerHungUp),
                    Far::Forward => self.pending.push_back(Event::ForwardFailed(SipStatus(500))),
                }
            }
            CallEvent::Reinvite { sdp } | CallEvent::Update { sdp } => {
                if let Some(sdp) = sdp
                    && let Ok(answer) = leg.media.answer_reoffer(&sdp)
                {
                    let _ = leg.sip.set_local_sdp(Bytes::from(answer));
                }
            }
        }
    }

    fn remove_far(&mut self, far: Far) -> Option<FarLeg> {
        match far {
            Far::Agent(a) => self.legs.remove(&a),
            Far::Forward => self.forward.take(),
        }
    }

    async fn apply(&mut self, effect: Effect) {
        if matches!(
            effect,
            Effect::Play(_)
                | Effect::StartMusicOnHold
                | Effect::Bridge(_)
                | Effect::Forward(_)
                | Effect::Hangup
        ) {
            // The workflow's media replaces the announcement (an agent answering mid-sentence
            // is bridged at once).
            self.announcing.clear();
        }
        match effect {
            Effect::Play(prompt) => match self.ctx.assets.prompt(prompt) {
                Some(clip) => {
                    if self.media.play(Arc::clone(clip)).is_err() {
                        self.pending.push_back(Event::PromptEnded);
                    }
                }
                None => self.pending.push_back(Event::PromptEnded),
            },
            Effect::StartMusicOnHold => {
                let music = self
                    .ctx
                    .assets
                    .music_for(self.ctx.config.workflow(self.workflow));
                let _ = self.media.start_music(music);
            }
            Effect::Enqueue(queue) => {
                self.queue = Some(queue);
                let msg = QueueMsg::Join {
                    call: self.key,
                    inbox: self.inbox_tx.clone(),
                };
                self.hand_to_queue(queue, msg);
            }
            Effect::Dequeue(_) | Effect::NoteRefusal { .. } | Effect::NextOffer(_) => {
                if let Some((queue, command)) = command_for(self.key, &effect) {
                    if matches!(effect, Effect::Dequeue(_)) && self.queue == Some(queue) {
                        self.queue = None;
                        self.announcer = None;
                        self.asking = None;
                    }
                    self.hand_to_queue(queue, QueueMsg::Core(command));
                }
            }
            Effect::Ring(agent) => {
                let uri = self.uri_of(agent);
                let headers = self.context_headers();
                match self.place(&uri, headers).await {
                    Some(leg) => {
                        self.legs.insert(agent, leg);
                    }
                    None => self.pending.push_back(Event::AgentFailed(agent)),
                }
            }
            Effect::CancelRing(agent) | Effect::DropAgent(agent) => {
                if let Some(mut leg) = self.legs.remove(&agent) {
                    let _ = leg.sip.cancel();
                }
                self.release(agent);
            }
            Effect::ReleaseAgent(agent) => {
                self.legs.remove(&agent);
                self.release(agent);
            }
            Effect::Bridge(agent) => {
                self.claims.remove(&agent);
                self.svc.agents.answered(agent, self.key);
                self.bridged_agent = Some(agent);
                if let Some((queue, entered)) = self.waiting_in.take() {
                    self.hand_to_queue(queue, QueueMsg::Answered { entered });
                }
                self.bridged_group = self.offered_through.get(&agent).copied();
                match self.legs.get(&agent) {
                    Some(leg) => {
                        if self.media.bridge(&leg.media).is_err() {
                            self.fail("a media leg stopped before the agent could be bridged");
                        }
                    }
                    // The leg ended between its answer and now: treat as the agent hanging up.
                    None => {
                        self.end_agent_call(agent);
                        self.pending.push_back(Event::PeerHungUp);
                    }
                }
            }
            Effect::Forward(to) => match self.place(&to, Vec::new()).await {
                Some(leg) => self.forward = Some(leg),
                None => self.pending.push_back(Event::ForwardFailed(SipStatus(500))),
            },
            Effect::CancelForward => {
                if let Some(mut leg) = self.forward.take() {
                    let _ = leg.sip.cancel();
                }
            }
            Effect::HangupPeer => {
                if let Some(agent) = self.bridged_agent {
                    if let Some(mut leg) = self.legs.remove(&agent) {
                        let _ = leg.sip.bye();
                    }
                    self.end_agent_call(agent);
                } else if let Some(mut leg) = self.forward.take() {
                    let _ = leg.sip.bye();
                }
            }
            Effect::Hangup => {
                let _ = self.media.stop();
                if self.caller_open {
                    let _ = self.caller.bye();
                }
            }
            Effect::Arm(timer, at) => {
                self.timers.insert(timer, Instant::from_std(at));
            }
            Effect::Disarm(timer) => {
                self.timers.remove(&timer);
            }
            // The record is written from the call's timeline at the end.
            Effect::Record(_) => {}
        }
    }

    /// Starts an outbound leg to `to` with rgsd's SDP offer, from the workflow's URI.
    async fn place(&self, to: &SipUri, headers: Vec<(String, String)>) -> Option<FarLeg> {
        // Agent and forward legs: `agent_srtp` (README, "SRTP").
        let srtp = self.ctx.config.server.agent_srtp;
        let (media, offer) = match self.svc.media.offer(srtp).await {
            Ok(m) => m,
            Err(e) => {
                warn!(%to, "cannot place leg: {e}");
                return None;
            }
        };
        let from = &self.ctx.config.workflow(self.workflow).uri;
        match self
            .svc
            .endpoint
            .invite(to, from, Bytes::from(offer), headers)
            .await
        {
            Ok(sip) => Some(FarLeg {
                sip,
                media,
                answered: false,
            }),
            Err(e) => {
                warn!(%to, "cannot place leg: {e}");
                None
            }
        }
    }

    /// Call-context headers for an agent INVITE (none when `call_context = false`).
    fn context_headers(&self) -> Vec<(String, String)> {
        let config = &self.ctx.config;
        if !config.server.call_context {
            return Vec::new();
        }
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let wf = config.workflow(self.workflow);
        let mut headers = vec![
            ("X-RGS-Workflow".to_owned(), clean(&wf.name)),
            ("X-RGS-Caller".to_owned(), clean(&self.caller.info().from)),
        ];
        let mut entered = None;
        let mut keys = String::new();
        for s in self.machine.timeline() {
            match &s.event {
                RecordEvent::QueueEntered { queue } => entered = Some((*queue, s.at)),
                RecordEvent::Key {
                    key, valid: true, ..
                } => keys.push(*key),
                _ => {}
            }
        }
        if let Some((queue, at)) = entered {
            headers.push(("X-RGS-Queue".to_owned(), clean(&config.queue(queue).name)));
            let waited = (self.svc.clock.now_utc() - at).num_seconds().max(0);
            headers.push(("X-RGS-Wait".to_owned(), waited.to_string()));
        }
        if !keys.is_empty() {
            headers.push(("X-RGS-Answers".to_owned(), keys));
        }
        headers
    }

    /// Hands a message to a queue owner without waiting (see [`Outbox`]).
    fn hand_to_queue(&mut self, queue: QueueId, msg: QueueMsg) {
        self.outbox.send(&self.ctx.queues, queue, msg);
    }

    /// An announcement is due: ask the queue owner for the call's place, play the periodic
    /// prompt, or both (`docs/behaviour.md`, Announcements).
    fn announce_due(&mut self) {
        let Some(announcer) = self.announcer.as_mut() else {
            return;
        };
        let due = announcer.due(Instant::now());
        if due.ask
            && self.asking.is_none()
            && let Some(queue) = self.queue
        {
            let (reply, answer) = oneshot::channel();
            let msg = QueueMsg::Where {
                call: self.key,
                reply,
            };
            // A full inbox skips this round; the next comes at the interval.
            if self.ctx.queues.try_send(queue, msg).is_ok() {
                self.asking = Some(answer);
            }
        }
        if let Some(prompt) = due.periodic
            && self.announce(vec![prompt])
        {
            let call_id = &self.caller.info().call_id;
            self.svc.observer.announced(call_id, None, None);
        }
    }

    fn on_place(&mut self, place: Option<Place>) {
        self.asking = None;
        let (Some(announcer), Some(queue)) = (self.announcer.as_mut(), self.queue) else {
            return;
        };
        let settings = &self.ctx.config.queue(queue).announce;
        let prompts = announcer.on_place(settings, place, Instant::now());
        let said = (
            place
                .map(|p| p.position)
                .filter(|_| settings.says_position()),
            place
                .and_then(|p| p.expected_wait)
                .filter(|_| settings.says_wait()),
        );
        if !prompts.is_empty() && self.announce(prompts) {
            debug!(position = ?said.0, wait = ?said.1, "announced the place");
            let call_id = &self.caller.info().call_id;
            self.svc.observer.announced(call_id, said.0, said.1);
        }
    }

    /// Plays `prompts` over the music on hold, which comes back after them; only while the call
    /// waits (queued or ringing agents). Returns whether it plays them.
    fn announce(&mut self, prompts: Vec<PromptId>) -> bool {
        if !matches!(
            self.machine.phase(),
            Phase::Queued { .. } | Phase::Offering { .. }
        ) {
            return false;
        }
        self.announcements = self.announcements.saturating_add(1);
        self.announcing = prompts.into();
        self.play_announcement();
        true
    }

    /// Plays the announcement's next prompt, or the music again after the last.
    fn play_announcement(&mut self) {
        while let Some(&prompt) = self.announcing.front() {
            if let Some(clip) = self.ctx.assets.prompt(prompt)
                && self.media.play(Arc::clone(clip)).is_ok()
            {
                return;
            }
            self.announcing.pop_front();
        }
        let music = self
            .ctx
            .assets
            .music_for(self.ctx.config.workflow(self.workflow));
        let _ = self.media.start_music(music);
    }

    /// The announcement's current prompt ended.
    fn announce_next(&mut self) {
        self.announcing.pop_front();
        self.play_announcement();
    }

    /// The drain limit passed: the caller gets BYE and the call ends as if they hung up (the
    /// agent's leg gets BYE, a ringing agent CANCEL); the record says `disconnected` unless an
    /// agent had answered.
    fn drain_end(&mut self) {
        self.drained = true;
        info!("drain limit passed: ending the call");
        if self.caller_open {
            let _ = self.caller.bye();
            self.caller_open = false;
        }
        self.pending.push_back(Event::CallerHungUp);
    }

    /// Ends the call from here: `reason` is logged and the record's outcome is `failed`.
    fn fail(&mut self, reason: &'static str) {
        warn!("ending the call: {reason}");
        self.failed = Some(reason);
    }

    /// Ends this call's claim on `agent` (if it holds one) and lets the queues offer it again.
    fn release(&mut self, agent: AgentId) {
        if self.claims.remove(&agent) {
            // Refused (and counted) only if someone else wrote the agent's state meanwhile.
            self.svc.agents.release(agent, self.key);
            self.notify_available(agent);
        }
    }

    /// The agent's rgsd call (bridged to this caller) ended: its wrap-up (the agent's own, else
    /// the group's they answered through) or else its idle clock starts.
    fn end_agent_call(&mut self, agent: AgentId) {
        if self.bridged_agent != Some(agent) {
            return;
        }
        self.bridged_agent = None;
        let now = Instant::now().into_std();
        let agents = &self.svc.agents;
        let wrap_up = agents.wrap_up_for(agent, self.bridged_group.take());
        match agents.call_ended_then(agent, now, wrap_up) {
            Some(token) => {
                debug!(?agent, ?wrap_up, "agent in wrap-up");
                self.wrap_up_after = Some(wrap_up);
                arm_wrap_up(&self.svc, agent, token);
                self.svc.observer.agent_changed();
            }
            None => self.notify_available(agent),
        }
    }

    fn uri_of(&self, agent: AgentId) -> SipUri {
        self.svc
            .agents
            .uri(agent)
            .cloned()
            .unwrap_or_else(|| SipUri(format!("sip:unknown-agent-{}@invalid", agent.0)))
    }

    /// Wakes the queues that offer calls to the agent's groups (through the runtime in force:
    /// it holds every live queue owner, reconfigured or retired).
    fn notify_available(&self, agent: AgentId) {
        let membership = self.svc.agents.membership();
        self.svc
            .runtime
            .load()
            .queues
            .wake_groups(membership.groups_of(agent));
    }

    /// After the end (or an early stop): hang up every leg, release every claim, leave the
    /// queue, write the record.
    fn finish(&mut self) {
        for (agent, mut leg) in std::mem::take(&mut self.legs) {
            let _ = leg.sip.cancel();
            self.release(agent);
        }
        for agent in self.claims.clone() {
            self.release(agent);
        }
        if let Some(agent) = self.bridged_agent {
            self.end_agent_call(agent);
        }
        if let Some(mut leg) = self.forward.take() {
            let _ = leg.sip.cancel();
        }
        self.outbox.send_now(&self.ctx.queues);
        if let Some(queue) = self.queue.take() {
            let _ = self
                .ctx
                .queues
                .try_send(queue, QueueMsg::Core(Command::Leave(self.key)));
        }
        if self.caller_open && !matches!(self.machine.phase(), Phase::Ended(_)) {
            let _ = self.caller.bye();
        }
        let mut record = self.record_now();
        record.wrap_up = self.wrap_up_after;
        if self.drained && record.agent.is_none() {
            record.outcome = CallOutcome::Disconnected;
        }
        if self.failed.is_some() {
            record.outcome = CallOutcome::Failed;
        } else if self.session_expired {
            record.outcome = CallOutcome::SessionExpired;
        }
        debug!(outcome = ?record.outcome, "call ended");
        submit(&self.svc, record);
    }
}

/// The next event of any outbound leg (pending forever when there is none).
async fn next_far_event(
    legs: &mut HashMap<AgentId, FarLeg>,
    forward: &mut Option<FarLeg>,
) -> (Far, Option<CallEvent>) {
    poll_fn(|cx| {
        for (agent, leg) in legs.iter_mut() {
            // `next_event` is cancel-safe: a fresh future per poll loses nothing.
            if let Poll::Ready(event) = pin!(leg.sip.next_event()).poll(cx) {
                return Poll::Ready((Far::Agent(*agent), event));
            }
        }
        if let Some(leg) = forward.as_mut()
            && let Poll::Ready(event) = pin!(leg.sip.next_event()).poll(cx)
        {
            return Poll::Ready((Far::Forward, event));
        }
        Poll::Pending
    })
    .await
}
