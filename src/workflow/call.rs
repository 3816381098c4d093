//! The per-call state machine: [`Call`] takes an [`Event`] and the time ([`Now`]) and pushes
//! [`Effect`]s. Pure: no clock reads, no I/O, no `.await`; the same phase, event and `now` always
//! give the same effects.
//!
//! The machine decides what the *caller* experiences. It does not pick agents: the queue owner
//! (`acd::queue`) does that and hands the call an [`Offer`] of agents it has already claimed in the
//! agent table. The machine rings them, arms the alert timer, and reports back through effects
//! ([`Effect::NextOffer`], [`Effect::NoteRefusal`], [`Effect::Dequeue`]). See the module docs of
//! [`crate::workflow`] for the whole life of a call and the driver's contract.
//!
//! # Time
//!
//! `Now::instant` is a `std::time::Instant`. The tokio driver reads
//! `tokio::time::Instant::now().into_std()`, so a test with `tokio::time::pause()` moves it too;
//! unit tests here build instants from a base plus durations. Deadlines in [`Effect::Arm`] are
//! in the same clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::trace;

use crate::config::model::{
    ActionTarget, AgentGroupId, CallAction, Config, PromptId, Question, QuestionId, QueueId,
    SipUri, Workflow, WorkflowId,
};
use crate::workflow::schedule::{self, OpenState};

/// Failed IVR attempts (invalid key or no input) before the call is disconnected (`docs/behaviour.md`,
/// Interactive workflows).
pub(crate) const MAX_IVR_ATTEMPTS: u8 = 5;

/// Queue entries a single call may make (initial queue plus transfers by time-out or overflow)
/// before it is disconnected. Bounds a configuration whose actions send calls round in a loop.
pub(crate) const MAX_QUEUE_ENTRIES: u8 = 16;

/// An agent: an index into the server-wide agent table (`acd::agents::AgentTable`). Defined here
/// because the call machine names agents and must not depend on `acd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub u32);

/// A SIP response status code (kept as a number: `workflow` must not import `sip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipStatus(pub u16);

/// Both clocks, read once by the driver and passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic time for timers (see the module docs).
    pub instant: Instant,
    /// Wall time for business hours, holidays and call records.
    pub utc: DateTime<Utc>,
}

impl Now {
    /// `self` moved forward by `by` on both clocks (for simulated time in tests and benches).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn after(self, by: Duration) -> Self {
        Self {
            instant: self.instant + by,
            utc: self.utc + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX),
        }
    }
}

/// The call's timers. The driver keeps at most one deadline per timer: `Arm` replaces it,
/// `Disarm` removes it, and when it passes the driver feeds [`Timer::event`] back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Time allowed for a key after an IVR question's prompt ended.
    NoInput,
    /// The current offer's alert time.
    Alert,
    /// The queue time-out, counted from queue entry.
    QueueTimeout,
}

impl Timer {
    /// The event the driver feeds back when this timer fires.
    pub fn event(self) -> Event {
        match self {
            Self::NoInput => Event::NoInputTimeout,
            Self::Alert => Event::AlertTimeout,
            Self::QueueTimeout => Event::QueueTimeout,
        }
    }
}

/// What the queue owner answers to [`Effect::Enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The call waits; `position` is 1 for the head of the queue.
    Waiting { position: u32 },
    /// The queue is full and this (newest) call is the overflow candidate; it was not added.
    Overflow,
}

/// Agents the queue owner picked and claimed for this call: ring them all now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The agent group whose routing method chose them.
    pub group: AgentGroupId,
    /// One agent (serial, round robin, longest idle) or several (parallel, attendant).
    pub agents: Vec<AgentId>,
    /// How long they ring before the next agent or group is tried (the group's alert time).
    pub alert_time: Duration,
}

/// Something that happened to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// rgsd answered the caller (200 OK sent, ACK received): start the workflow.
    Started,
    /// The prompt started by the last [`Effect::Play`] finished. The driver reports only the end
    /// of the current prompt; a prompt cut short by a newer media effect reports nothing.
    PromptEnded,
    /// The caller pressed a key (RFC 4733 event or SIP INFO), already mapped to `0-9`, `*`, `#`
    /// (or `A-D`, which no answer can use). Spoken answers are accepted in the configuration but
    /// not recognised yet, so there is no event for them.
    Digit(char),
    /// [`Timer::NoInput`] fired.
    NoInputTimeout,
    /// The queue owner's answer to [`Effect::Enqueue`].
    EnteredQueue(Entry),
    /// The queue owner claimed agents for this call.
    Offered(Offer),
    /// An agent leg answered (200 OK).
    AgentAnswered(AgentId),
    /// An agent leg was refused with a final status (486 Busy Here, 603 Decline, 480 …).
    AgentRefused(AgentId, SipStatus),
    /// An agent leg failed without a final response (transport error, Timer B).
    AgentFailed(AgentId),
    /// [`Timer::Alert`] fired.
    AlertTimeout,
    /// [`Timer::QueueTimeout`] fired.
    QueueTimeout,
    /// While waiting, this (oldest) call was chosen as the overflow candidate for a newer call;
    /// the queue owner has already removed it.
    Overflowed,
    /// The forward leg ([`Effect::Forward`]) answered.
    ForwardAnswered,
    /// The forward leg failed with this status (or 408 / 500 from the driver for timeouts and
    /// transport errors).
    ForwardFailed(SipStatus),
    /// The caller sent BYE (or CANCEL before answer).
    CallerHungUp,
    /// The bridged far leg (agent or forward target) sent BYE.
    PeerHungUp,
}

/// Something the driver must do. Effects are applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Play this prompt to the caller, replacing whatever plays now; report [`Event::PromptEnded`].
    Play(PromptId),
    /// Loop the workflow's music on hold (else the server default, else the built-in tone),
    /// replacing whatever plays now.
    StartMusicOnHold,
    /// Ask the queue owner to add the call; it answers with [`Event::EnteredQueue`].
    Enqueue(QueueId),
    /// Tell the queue owner the call left (answered, hung up, timed out). Harmless if the queue no
    /// longer holds it.
    Dequeue(QueueId),
    /// Send an INVITE to this agent (claimed for this call by the queue owner).
    Ring(AgentId),
    /// Send CANCEL to this agent's ringing leg and release the agent's claim in the agent table.
    CancelRing(AgentId),
    /// The agent's leg ended with a final failure: release the claim (no CANCEL needed).
    ReleaseAgent(AgentId),
    /// The agent answered a leg this call no longer wants (200 OK crossed a CANCEL, or the call
    /// ended): ACK it, send BYE, release the agent.
    DropAgent(AgentId),
    /// Tell the queue owner: do not offer this call to `agent` before `until` (ringback grace).
    NoteRefusal {
        queue: QueueId,
        agent: AgentId,
        until: Instant,
    },
    /// Tell the queue owner the current offer ended unanswered: pick the next agent or group.
    NextOffer(QueueId),
    /// Connect the caller to the agent who answered; mark the agent busy in the agent table.
    Bridge(AgentId),
    /// Place an outbound leg to this URI (voicemail, forward, PSTN); report
    /// [`Event::ForwardAnswered`] / [`Event::ForwardFailed`]. On answer, bridge it to the caller.
    Forward(SipUri),
    /// Cancel the forward leg (the caller hung up first).
    CancelForward,
    /// Send BYE to the bridged far leg (agent or forward target). For an agent, also end the
    /// agent's rgsd call in the agent table (its idle clock starts).
    HangupPeer,
    /// Send BYE to the caller. Any media and timers of the call stop.
    Hangup,
    /// Set `timer` to fire at the deadline (replacing an earlier deadline of the same timer).
    Arm(Timer, Instant),
    /// Forget `timer`.
    Disarm(Timer),
    /// A call-record entry, also appended to [`Call::timeline`]; for live statistics.
    Record(Stamped),
}

/// Why an action ran: the call record keeps it, the usage report counts by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Because {
    OutOfHours,
    /// The holiday's name.
    Holiday(String),
    /// The queue was full.
    Overflow,
    /// The queue time-out passed.
    QueueTimeout,
    /// The caller chose an IVR answer whose action this is.
    IvrAnswer,
    /// [`MAX_IVR_ATTEMPTS`] failed IVR attempts.
    IvrAttempts,
    /// The queue has no agent group, or its groups have no agents (`docs/behaviour.md`, Queues).
    NoAgents,
    /// The call entered [`MAX_QUEUE_ENTRIES`] queues (a loop in the configuration).
    QueueLoop,
    /// The workflow's start (hunt group queue or first question).
    Start,
}

/// How a call ended: what the call record stores and the reports count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An agent answered; the call ended later, by either side.
    Answered { agent: AgentId },
    /// The call was forwarded (voicemail, SIP address, number) and the forward leg answered.
    Forwarded {
        to: SipUri,
        voicemail: bool,
        because: Because,
    },
    /// The forward leg failed; rgsd hung up.
    ForwardFailed {
        to: SipUri,
        status: SipStatus,
        because: Because,
    },
    /// A disconnect action ended the call.
    Disconnected { because: Because },
    /// The caller hung up during the welcome prompt.
    AbandonedInWelcome,
    /// The caller hung up during an IVR question.
    AbandonedInIvr,
    /// The caller hung up while waiting or ringing in a queue.
    AbandonedInQueue,
    /// The caller hung up during an action's prompt (out of hours, holiday, overflow, time-out).
    AbandonedInAnnouncement { because: Because },
    /// The caller hung up while the forward leg was being placed.
    AbandonedWhileForwarding,
}

/// Result of one offer to one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferResult {
    Answered,
    /// Final status from the agent (486, 603, 480 …).
    Refused(SipStatus),
    /// No final response (transport failure).
    Failed,
    /// The alert time passed.
    NoAnswer,
    /// Another agent answered, the caller hung up, or the call timed out or overflowed.
    Cancelled,
}

/// One entry of the call record's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    Arrived {
        workflow: WorkflowId,
    },
    WelcomeEnded,
    /// Result of the business-hours / holiday check.
    Schedule(OpenState),
    Asked {
        question: QuestionId,
    },
    Key {
        question: QuestionId,
        key: char,
        valid: bool,
    },
    NoInput {
        question: QuestionId,
    },
    QueueEntered {
        queue: QueueId,
    },
    Waiting {
        queue: QueueId,
        position: u32,
    },
    Overflowed {
        queue: QueueId,
    },
    QueueTimedOut {
        queue: QueueId,
    },
    Offered {
        agent: AgentId,
        group: AgentGroupId,
    },
    OfferEnded {
        agent: AgentId,
        result: OfferResult,
    },
    ForwardStarted {
        to: SipUri,
    },
    ForwardAnswered {
        to: SipUri,
    },
    ForwardFailed {
        to: SipUri,
        status: SipStatus,
    },
    Ended(Outcome),
}

/// A record entry with the wall-clock time it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub at: DateTime<Utc>,
    pub event: RecordEvent,
}

/// Where an IVR question stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskStep {
    /// The question's prompt plays; a key already counts (barge-in; the welcome is not skippable,
    /// the question is).
    Prompting,
    /// The prompt ended; [`Timer::NoInput`] is armed.
    Waiting,
    /// The invalid-answer or no-answer prompt plays; keys are ignored until the question repeats.
    Correcting,
}

/// The far leg of a bridged call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    Agent(AgentId),
    Forward {
        to: SipUri,
        voicemail: bool,
        because: Because,
    },
}

/// What one inbound call is doing now. Each variant holds what that phase needs and nothing more.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// Created, not yet answered by rgsd.
    Arrived,
    /// The welcome prompt plays (not skippable).
    Welcome,
    /// An action's prompt plays (out of hours, holiday, overflow, time-out, IVR answer); then
    /// `then` runs.
    Announcing {
        then: ActionTarget,
        because: Because,
    },
    /// An IVR question: `tries` failed attempts so far.
    Asking {
        question: QuestionId,
        tries: u8,
        step: AskStep,
    },
    /// In a queue, music on hold, no agent ringing. `since` is the queue entry.
    Queued { queue: QueueId, since: Instant },
    /// In a queue with agents ringing (music on hold continues).
    Offering {
        queue: QueueId,
        since: Instant,
        group: AgentGroupId,
        ringing: Vec<AgentId>,
    },
    /// An outbound forward leg is being placed.
    Forwarding {
        to: SipUri,
        voicemail: bool,
        because: Because,
    },
    /// Caller connected to an agent or a forward target.
    Bridged { peer: Peer, since: Instant },
    /// Terminal.
    Ended(Outcome),
}

/// One inbound call: its workflow (locked for the life of the call: a reload changes new calls
/// only), its phase and its record.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    config: Arc<Config>,
    workflow: WorkflowId,
    phase: Phase,
    timeline: Vec<Stamped>,
    /// Queue entries so far (bounded by [`MAX_QUEUE_ENTRIES`]).
    queue_entries: u8,
    /// Both clocks at arrival. The timeline's wall times are the arrival's wall time plus the
    /// monotonic time since, so a step of the system clock during the call (an hour forward,
    /// NTP correcting) moves no wait or talk time in the record; business hours and holidays
    /// still read the wall clock of the moment (`now.utc`).
    origin: Now,
}

impl Call {
    /// A new call to `workflow`, arrived at `now`. Send [`Event::Started`] once it is answered.
    pub(crate) fn new(config: Arc<Config>, workflow: WorkflowId, now: Now) -> Self {
        Self {
            config,
            workflow,
            phase: Phase::Arrived,
            timeline: vec![Stamped {
                at: now.utc,
                event: RecordEvent::Arrived { workflow },
            }],
            queue_entries: 0,
            origin: now,
        }
    }

    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The call record so far, oldest first.
    pub(crate) fn timeline(&self) -> &[Stamped] {
        &self.timeline
    }

    /// How the call ended, once it has.
    #[cfg(test)]
    pub(crate) fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Ended(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Advances the call by one event. Pure: pushes effects to `out`, reads no clock.
    pub(crate) fn on(&mut self, event: Event, now: Now, out: &mut Vec<Effect>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Arrived);
        self.phase = self.step(phase, event, now, out);
    }

    fn step(&mut self, phase: Phase, event: Event, now: Now, out: &mut Vec<Effect>) -> Phase {
        use Event as E;
        use Phase as P;
        match (phase, event) {
            (P::Arrived, E::Started) => match self.wf().welcome {
                Some(prompt) => {
                    out.push(Effect::Play(prompt));
                    P::Welcome
                }
                None => self.check_schedule(now, out),
            },
            (P::Arrived | P::Welcome, E::CallerHungUp) => {
                self.end(Outcome::AbandonedInWelcome, now, out)
            }
            (P::Welcome, E::PromptEnded) => {
                self.note(RecordEvent::WelcomeEnded, now, out);
                self.check_schedule(now, out)
            }

            (P::Announcing { then, because }, E::PromptEnded) => self.go(&then, because, now, out),
            (P::Announcing { because, .. }, E::CallerHungUp) => {
                self.end(Outcome::AbandonedInAnnouncement { because }, now, out)
            }

            (
                P::Asking {
                    question,
                    tries,
                    step,
                },
                event,
            ) => self.on_asking(question, tries, step, event, now, out),

            (P::Queued { queue, since }, event) => self.on_queued(queue, since, event, now, out),
            (
                P::Offering {
                    queue,
                    since,
                    group,
                    ringing,
                },
                event,
            ) => self.on_offering(queue, since, group, ringing, event, now, out),

            (
                P::Forwarding {
                    to,
                    voicemail,
                    because,
                },
                E::ForwardAnswered,
            ) => {
                self.note(RecordEvent::ForwardAnswered { to: to.clone() }, now, out);
                P::Bridged {
                    peer: Peer::Forward {
                        to,
                        voicemail,
                        because,
                    },
                    since: now.instant,
                }
            }
            (P::Forwarding { to, because, .. }, E::ForwardFailed(status)) => {
                let record = RecordEvent::ForwardFailed {
                    to: to.clone(),
                    status,
                };
                self.note(record, now, out);
                out.push(Effect::Hangup);
                self.end(
                    Outcome::ForwardFailed {
                        to,
                        status,
                        because,
                    },
                    now,
                    out,
                )
            }
            (P::Forwarding { .. }, E::CallerHungUp) => {
                out.push(Effect::CancelForward);
                self.end(Outcome::AbandonedWhileForwarding, now, out)
            }

            (P::Bridged { peer, .. }, E::CallerHungUp) => {
                out.push(Effect::HangupPeer);
                self.end(peer.outcome(), now, out)
            }
            (P::Bridged { peer, .. }, E::PeerHungUp) => {
                out.push(Effect::Hangup);
                self.end(peer.outcome(), now, out)
            }

            // Every other (phase, event) pair, spelled out so that a new event or phase must be
            // decided here: what a stray event costs is decided once, in `stray`.
            (
                phase @ P::Arrived,
                event @ (E::PromptEnded
                | E::Digit(_)
                | E::NoInputTimeout
                | E::EnteredQueue(_)
                | E::Offered(_)
                | E::AgentAnswered(_)
                | E::AgentRefused(..)
                | E::AgentFailed(_)
                | E::AlertTimeout
                | E::QueueTimeout
                | E::Overflowed
                | E::ForwardAnswered
                | E::ForwardFailed(_)
                | E::PeerHungUp),
            )
            | (
                phase @ (P::Welcome | P::Announcing { .. }),
                event @ (E::Started
                | E::Digit(_)
                | E::NoInputTimeout
                | E::EnteredQueue(_)
                | E::Offered(_)
                | E::AgentAnswered(_)
                | E::AgentRefused(..)
                | E::AgentFailed(_)
                | E::AlertTimeout
                | E::QueueTimeout
                | E::Overflowed
                | E::ForwardAnswered
                | E::ForwardFailed(_)
                | E::PeerHungUp),
            )
            | (
                phase @ P::Forwarding { .. },
                event @ (E::Started
                | E::PromptEnded
                | E::Digit(_)
                | E::NoInputTimeout
                | E::EnteredQueue(_)
                | E::Offered(_)
                | E::AgentAnswered(_)
                | E::AgentRefused(..)
                | E::AgentFailed(_)
                | E::AlertTimeout
                | E::QueueTimeout
                | E::Overflowed
                | E::PeerHungUp),
            )
            | (
                phase @ P::Bridged { .. },
                event @ (E::Started
                | E::PromptEnded
                | E::Digit(_)
                | E::NoInputTimeout
                | E::EnteredQueue(_)
                | E::Offered(_)
                | E::AgentAnswered(_)
                | E::AgentRefused(..)
                | E::AgentFailed(_)
                | E::AlertTimeout
                | E::QueueTimeout
                | E::Overflowed
                | E::ForwardAnswered
                | E::ForwardFailed(_)),
            )
            | (phase @ P::Ended(_), event) => self.stray(phase, event, out),
        }
    }

    /// An event that means nothing in `phase`: keep the phase. Agents claimed or answering for a
    /// call that no longer wants them must still be let go; every other event is dropped.
    fn stray(&mut self, phase: Phase, event: Event, out: &mut Vec<Effect>) -> Phase {
        trace!(?phase, ?event, "event ignored in this phase");
        match event {
            Event::Offered(offer) => {
                // The queue claimed agents just as the call left it: free them.
                out.extend(offer.agents.into_iter().map(Effect::ReleaseAgent));
            }
            Event::AgentAnswered(agent) => out.push(Effect::DropAgent(agent)),
            // Late or duplicate: a prompt that was replaced, a timer that raced its disarm, a key
            // while the welcome plays, a queue answer after the call moved on, a leg result
            // after the call ended, a hang-up after the end.
            Event::Started
            | Event::PromptEnded
            | Event::Digit(_)
            | Event::NoInputTimeout
            | Event::EnteredQueue(_)
            | Event::AgentRefused(..)
            | Event::AgentFailed(_)
            | Event::AlertTimeout
            | Event::QueueTimeout
            | Event::Overflowed
            | Event::ForwardAnswered
            | Event::ForwardFailed(_)
            | Event::CallerHungUp
            | Event::PeerHungUp => {}
        }
        phase
    }

    fn on_asking(
        &mut self,
        question: QuestionId,
        tries: u8,
        step: AskStep,
        event: Event,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        use AskStep as S;
        use Event as E;
        let asking = |step| Phase::Asking {
            question,
            tries,
            step,
        };
        match (step, event) {
            (_, E::CallerHungUp) => {
                out.push(Effect::Disarm(Timer::NoInput));
                self.end(Outcome::AbandonedInIvr, now, out)
            }
            (S::Prompting, E::PromptEnded) => {
                let timeout = self.question(question).no_input_timeout;
                out.push(Effect::Arm(Timer::NoInput, now.instant + timeout));
                asking(S::Waiting)
            }
            (S::Prompting, E::Digit(key)) => self.answer(question, tries, key, now, out),
            (S::Waiting, E::Digit(key)) => {
                out.push(Effect::Disarm(Timer::NoInput));
                self.answer(question, tries, key, now, out)
            }
            (S::Waiting, E::NoInputTimeout) => {
                self.note(RecordEvent::NoInput { question }, now, out);
                let prompt = self.question(question).no_answer;
                self.failed_attempt(question, tries, prompt, now, out)
            }
            (S::Correcting, E::PromptEnded) => {
                out.push(Effect::Play(self.question(question).prompt));
                asking(S::Prompting)
            }
            // Keys during the invalid/no-answer prompt are dropped: the question repeats first.
            (S::Correcting, E::Digit(_)) => asking(step),
            (
                S::Prompting | S::Waiting | S::Correcting,
                event @ (E::Started
                | E::PromptEnded
                | E::NoInputTimeout
                | E::EnteredQueue(_)
                | E::Offered(_)
                | E::AgentAnswered(_)
                | E::AgentRefused(..)
                | E::AgentFailed(_)
                | E::AlertTimeout
                | E::QueueTimeout
                | E::Overflowed
                | E::ForwardAnswered
                | E::ForwardFailed(_)
                | E::PeerHungUp),
            ) => self.stray(asking(step), event, out),
        }
    }

    fn answer(
        &mut self,
        question: QuestionId,
        tries: u8,
        key: char,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        let action = self
            .question(question)
            .answers
            .iter()
            .find(|a| a.dtmf == Some(key))
            .map(|a| a.action.clone());
        let valid = action.is_some();
        self.note(
            RecordEvent::Key {
                question,
                key,
                valid,
            },
            now,
            out,
        );
        match action {
            Some(action) => self.act(&action, Because::IvrAnswer, now, out),
            None => {
                let prompt = self.question(question).invalid_answer;
                self.failed_attempt(question, tries, prompt, now, out)
            }
        }
    }

    fn failed_attempt(
        &mut self,
        question: QuestionId,
        tries: u8,
        prompt: Option<PromptId>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        let tries = tries.saturating_add(1);
        if tries >= MAX_IVR_ATTEMPTS {
            out.push(Effect::Hangup);
            return self.end(
                Outcome::Disconnected {
                    because: Because::IvrAttempts,
                },
                now,
                out,
            );
        }
        let (prompt, step) = match prompt {
            Some(p) => (p, AskStep::Correcting),
            None => (self.question(question).prompt, AskStep::Prompting),
        };
        out.push(Effect::Play(prompt));
        Phase::Asking {
            question,
            tries,
            step,
        }
    }

    fn on_queued(
        &mut self,
        queue: QueueId,
        since: Instant,
        event: Event,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        use Event as E;
        match event {
            E::EnteredQueue(Entry::Waiting { position }) => {
                self.note(RecordEvent::Waiting { queue, position }, now, out);
                Phase::Queued { queue, since }
            }
            // Not added (newest candidate) or already removed (oldest): no Dequeue.
            E::EnteredQueue(Entry::Overflow) | E::Overflowed => {
                out.push(Effect::Disarm(Timer::QueueTimeout));
                self.overflow(queue, now, out)
            }
            E::Offered(offer) if offer.agents.is_empty() => {
                // Nothing to ring (the queue owner never sends this): ask again at once rather
                // than wait out an alert time.
                out.push(Effect::NextOffer(queue));
                Phase::Queued { queue, since }
            }
            E::Offered(offer) => {
                for &agent in &offer.agents {
                    out.push(Effect::Ring(agent));
                    let group = offer.group;
                    self.note(RecordEvent::Offered { agent, group }, now, out);
                }
                out.push(Effect::Arm(Timer::Alert, now.instant + offer.alert_time));
                Phase::Offering {
                    queue,
                    since,
                    group: offer.group,
                    ringing: offer.agents,
                }
            }
            E::QueueTimeout => {
                out.push(Effect::Dequeue(queue));
                self.timed_out(queue, now, out)
            }
            E::CallerHungUp => {
                out.push(Effect::Disarm(Timer::QueueTimeout));
                out.push(Effect::Dequeue(queue));
                self.end(Outcome::AbandonedInQueue, now, out)
            }
            event @ (E::Started
            | E::PromptEnded
            | E::Digit(_)
            | E::NoInputTimeout
            | E::AgentAnswered(_)
            | E::AgentRefused(..)
            | E::AgentFailed(_)
            | E::AlertTimeout
            | E::ForwardAnswered
            | E::ForwardFailed(_)
            | E::PeerHungUp) => self.stray(Phase::Queued { queue, since }, event, out),
        }
    }

    #[allow(clippy::too_many_arguments)] // the phase's fields, passed apart after the move
    fn on_offering(
        &mut self,
        queue: QueueId,
        since: Instant,
        group: AgentGroupId,
        mut ringing: Vec<AgentId>,
        event: Event,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        use Event as E;
        match event {
            E::AgentAnswered(agent) if ringing.contains(&agent) => {
                for &other in ringing.iter().filter(|a| **a != agent) {
                    out.push(Effect::CancelRing(other));
                    let result = OfferResult::Cancelled;
                    self.note(
                        RecordEvent::OfferEnded {
                            agent: other,
                            result,
                        },
                        now,
                        out,
                    );
                }
                let result = OfferResult::Answered;
                self.note(RecordEvent::OfferEnded { agent, result }, now, out);
                out.push(Effect::Disarm(Timer::Alert));
                out.push(Effect::Disarm(Timer::QueueTimeout));
                out.push(Effect::Dequeue(queue));
                out.push(Effect::Bridge(agent));
                Phase::Bridged {
                    peer: Peer::Agent(agent),
                    since: now.instant,
                }
            }
            E::AgentRefused(agent, _) | E::AgentFailed(agent) if ringing.contains(&agent) => {
                let result = match event {
                    E::AgentRefused(_, status) => OfferResult::Refused(status),
                    _ => OfferResult::Failed,
                };
                ringing.retain(|a| *a != agent);
                out.push(Effect::ReleaseAgent(agent));
                let until = now.instant + self.config.server.agent_ringback_grace_period;
                out.push(Effect::NoteRefusal {
                    queue,
                    agent,
                    until,
                });
                self.note(RecordEvent::OfferEnded { agent, result }, now, out);
                if ringing.is_empty() {
                    out.push(Effect::Disarm(Timer::Alert));
                    out.push(Effect::NextOffer(queue));
                    Phase::Queued { queue, since }
                } else {
                    Phase::Offering {
                        queue,
                        since,
                        group,
                        ringing,
                    }
                }
            }
            E::AlertTimeout => {
                self.stop_ringing(&ringing, OfferResult::NoAnswer, now, out);
                out.push(Effect::NextOffer(queue));
                Phase::Queued { queue, since }
            }
            E::QueueTimeout => {
                self.stop_ringing(&ringing, OfferResult::Cancelled, now, out);
                out.push(Effect::Disarm(Timer::Alert));
                out.push(Effect::Dequeue(queue));
                self.timed_out(queue, now, out)
            }
            E::Overflowed => {
                self.stop_ringing(&ringing, OfferResult::Cancelled, now, out);
                out.push(Effect::Disarm(Timer::Alert));
                out.push(Effect::Disarm(Timer::QueueTimeout));
                self.overflow(queue, now, out)
            }
            E::CallerHungUp => {
                self.stop_ringing(&ringing, OfferResult::Cancelled, now, out);
                out.push(Effect::Disarm(Timer::Alert));
                out.push(Effect::Disarm(Timer::QueueTimeout));
                out.push(Effect::Dequeue(queue));
                self.end(Outcome::AbandonedInQueue, now, out)
            }
            event @ (E::Started
            | E::PromptEnded
            | E::Digit(_)
            | E::NoInputTimeout
            | E::EnteredQueue(_)
            | E::Offered(_)
            | E::AgentAnswered(_)
            | E::AgentRefused(..)
            | E::AgentFailed(_)
            | E::ForwardAnswered
            | E::ForwardFailed(_)
            | E::PeerHungUp) => {
                let phase = Phase::Offering {
                    queue,
                    since,
                    group,
                    ringing,
                };
                self.stray(phase, event, out)
            }
        }
    }

    fn stop_ringing(
        &mut self,
        ringing: &[AgentId],
        result: OfferResult,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        for &agent in ringing {
            out.push(Effect::CancelRing(agent));
            self.note(RecordEvent::OfferEnded { agent, result }, now, out);
        }
    }

    fn check_schedule(&mut self, now: Now, out: &mut Vec<Effect>) -> Phase {
        let config = Arc::clone(&self.config);
        let wf = config.workflow(self.workflow);
        let hours = wf.business_hours.map(|id| config.hours_set(id));
        let sets: Vec<_> = wf
            .holidays
            .iter()
            .map(|id| config.holiday_set(*id))
            .collect();
        let state = schedule::is_open(hours, &sets, wf.time_zone, now.utc);
        self.note(RecordEvent::Schedule(state.clone()), now, out);
        match state {
            OpenState::Open => self.go(&wf.start, Because::Start, now, out),
            OpenState::Holiday(name) => {
                self.act_or_disconnect(wf.on_holiday.as_ref(), Because::Holiday(name), now, out)
            }
            OpenState::OutOfHours => {
                self.act_or_disconnect(wf.out_of_hours.as_ref(), Because::OutOfHours, now, out)
            }
        }
    }

    fn overflow(&mut self, queue: QueueId, now: Now, out: &mut Vec<Effect>) -> Phase {
        self.note(RecordEvent::Overflowed { queue }, now, out);
        let config = Arc::clone(&self.config);
        let action = config.queue(queue).overflow.as_ref().map(|o| &o.action);
        self.act_or_disconnect(action, Because::Overflow, now, out)
    }

    fn timed_out(&mut self, queue: QueueId, now: Now, out: &mut Vec<Effect>) -> Phase {
        self.note(RecordEvent::QueueTimedOut { queue }, now, out);
        let config = Arc::clone(&self.config);
        let action = config.queue(queue).timeout.as_ref().map(|t| &t.action);
        self.act_or_disconnect(action, Because::QueueTimeout, now, out)
    }

    fn act_or_disconnect(
        &mut self,
        action: Option<&CallAction>,
        because: Because,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        match action {
            Some(action) => self.act(action, because, now, out),
            None => self.go(&ActionTarget::Disconnect, because, now, out),
        }
    }

    /// Runs an action: its prompt first (if any), then its target.
    fn act(
        &mut self,
        action: &CallAction,
        because: Because,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        match action.prompt {
            Some(prompt) => {
                out.push(Effect::Play(prompt));
                Phase::Announcing {
                    then: action.target.clone(),
                    because,
                }
            }
            None => self.go(&action.target, because, now, out),
        }
    }

    /// Runs an action's target.
    fn go(
        &mut self,
        target: &ActionTarget,
        because: Because,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Phase {
        match target {
            ActionTarget::Disconnect => {
                out.push(Effect::Hangup);
                self.end(Outcome::Disconnected { because }, now, out)
            }
            ActionTarget::Voicemail(to) | ActionTarget::Forward(to) => {
                let voicemail = matches!(target, ActionTarget::Voicemail(_));
                out.push(Effect::Forward(to.clone()));
                self.note(RecordEvent::ForwardStarted { to: to.clone() }, now, out);
                Phase::Forwarding {
                    to: to.clone(),
                    voicemail,
                    because,
                }
            }
            ActionTarget::Queue(queue) => self.enter_queue(*queue, now, out),
            ActionTarget::Question(question) => {
                let question = *question;
                out.push(Effect::Play(self.question(question).prompt));
                self.note(RecordEvent::Asked { question }, now, out);
                Phase::Asking {
                    question,
                    tries: 0,
                    step: AskStep::Prompting,
                }
            }
        }
    }

    fn enter_queue(&mut self, queue: QueueId, now: Now, out: &mut Vec<Effect>) -> Phase {
        self.queue_entries = self.queue_entries.saturating_add(1);
        if self.queue_entries > MAX_QUEUE_ENTRIES {
            return self.go(&ActionTarget::Disconnect, Because::QueueLoop, now, out);
        }
        let config = Arc::clone(&self.config);
        let q = config.queue(queue);
        let has_agents = q
            .agent_groups
            .iter()
            .any(|g| !config.agent_group(*g).agents.is_empty());
        if !has_agents {
            return self.go(&ActionTarget::Disconnect, Because::NoAgents, now, out);
        }
        out.push(Effect::StartMusicOnHold);
        out.push(Effect::Enqueue(queue));
        if let Some(timeout) = &q.timeout {
            out.push(Effect::Arm(
                Timer::QueueTimeout,
                now.instant + timeout.after,
            ));
        }
        self.note(RecordEvent::QueueEntered { queue }, now, out);
        Phase::Queued {
            queue,
            since: now.instant,
        }
    }

    fn end(&mut self, outcome: Outcome, now: Now, out: &mut Vec<Effect>) -> Phase {
        self.note(RecordEvent::Ended(outcome.clone()), now, out);
        Phase::Ended(outcome)
    }

    fn note(&mut self, event: RecordEvent, now: Now, out: &mut Vec<Effect>) {
        let since = now.instant.saturating_duration_since(self.origin.instant);
        let at = chrono::Duration::from_std(since)
            .ok()
            .and_then(|d| self.origin.utc.checked_add_signed(d))
            .unwrap_or(now.utc);
        let stamped = Stamped { at, event };
        out.push(Effect::Record(stamped.clone()));
        self.timeline.push(stamped);
    }

    fn wf(&self) -> &Workflow {
        self.config.workflow(self.workflow)
    }

    fn question(&self, id: QuestionId) -> &Question {
        &self.wf().questions[id.0 as usize]
    }
}

impl Peer {
    fn outcome(self) -> Outcome {
        match self {
            Self::Agent(agent) => Outcome::Answered { agent },
            Self::Forward {
                to,
                voicemail,
                because,
            } => Outcome::Forwarded {
                to,
                voicemail,
                because,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{
        Answer, Holiday, HolidaySet, HolidaySetId, Hours, HoursId, OverflowCandidate,
        Participation, RoutingMethod, TimeRange, WorkflowKind,
    };
    use crate::workflow::testing::{
        action, add_group, add_prompt, add_queue, add_workflow, config, set_overflow, set_timeout,
        t0, uri, utc0,
    };
    use chrono::NaiveTime;

    const Q0: QueueId = QueueId(0);
    const Q1: QueueId = QueueId(1);
    const G0: AgentGroupId = AgentGroupId(0);
    const A0: AgentId = AgentId(0);
    const A1: AgentId = AgentId(1);
    const A2: AgentId = AgentId(2);

    /// Prompts by name, to assert on `Play`.
    struct Prompts {
        welcome: PromptId,
        closed: PromptId,
        holiday: PromptId,
        busy: PromptId,
        question: PromptId,
        question2: PromptId,
        invalid: PromptId,
        no_answer: PromptId,
    }

    /// Two queues (Q0 over a serial group of a0, a1, a2; Q1 over the same group), a hunt-group
    /// workflow (0) and an interactive one (1), both with a welcome prompt.
    fn fixture() -> (Config, Prompts) {
        let mut c = config();
        let p = Prompts {
            welcome: add_prompt(&mut c, "welcome"),
            closed: add_prompt(&mut c, "closed"),
            holiday: add_prompt(&mut c, "holiday"),
            busy: add_prompt(&mut c, "all agents busy"),
            question: add_prompt(&mut c, "press 1 for sales, 2 for more, 9 for voicemail"),
            question2: add_prompt(&mut c, "press 1 for billing"),
            invalid: add_prompt(&mut c, "invalid"),
            no_answer: add_prompt(&mut c, "no answer"),
        };
        let g = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a0", "a1", "a2"],
        );
        add_queue(&mut c, &[g]);
        add_queue(&mut c, &[g]);
        let hunt = add_workflow(&mut c, WorkflowKind::HuntGroup, ActionTarget::Queue(Q0));
        c.workflows[hunt.0 as usize].welcome = Some(p.welcome);
        let ivr = add_workflow(
            &mut c,
            WorkflowKind::Interactive,
            ActionTarget::Question(QuestionId(0)),
        );
        let wf = &mut c.workflows[ivr.0 as usize];
        wf.welcome = Some(p.welcome);
        wf.questions = vec![
            Question {
                prompt: p.question,
                invalid_answer: Some(p.invalid),
                no_answer: Some(p.no_answer),
                no_input_timeout: Duration::from_secs(5),
                answers: vec![
                    Answer {
                        dtmf: Some('1'),
                        voice: vec!["sales".into()],
                        action: action(None, ActionTarget::Queue(Q0)),
                    },
                    Answer {
                        dtmf: Some('2'),
                        voice: vec![],
                        action: action(None, ActionTarget::Question(QuestionId(1))),
                    },
                    Answer {
                        dtmf: Some('9'),
                        voice: vec![],
                        action: action(Some(p.busy), ActionTarget::Voicemail(uri("vm"))),
                    },
                    Answer {
                        dtmf: None,
                        voice: vec!["operator".into()],
                        action: action(None, ActionTarget::Disconnect),
                    },
                ],
            },
            Question {
                prompt: p.question2,
                invalid_answer: None,
                no_answer: None,
                no_input_timeout: Duration::from_secs(3),
                answers: vec![Answer {
                    dtmf: Some('#'),
                    voice: vec![],
                    action: action(None, ActionTarget::Queue(Q1)),
                }],
            },
        ];
        (c, p)
    }

    const HUNT: WorkflowId = WorkflowId(0);
    const IVR: WorkflowId = WorkflowId(1);

    /// A call on simulated time.
    struct Sim {
        call: Call,
        now: Now,
    }

    impl Sim {
        fn new(config: Config, workflow: WorkflowId) -> Self {
            Self::at(config, workflow, utc0())
        }

        fn at(config: Config, workflow: WorkflowId, utc: DateTime<Utc>) -> Self {
            let now = Now { instant: t0(), utc };
            Self {
                call: Call::new(Arc::new(config), workflow, now),
                now,
            }
        }

        /// Feeds an event; returns the effects without the record entries.
        fn on(&mut self, event: Event) -> Vec<Effect> {
            let mut out = vec![];
            self.call.on(event, self.now, &mut out);
            out.retain(|e| !matches!(e, Effect::Record(_)));
            out
        }

        fn wait(&mut self, secs: u64) {
            self.now = self.now.after(Duration::from_secs(secs));
        }

        fn at_secs(&self, secs: u64) -> Instant {
            self.now.instant + Duration::from_secs(secs)
        }

        fn outcome(&self) -> Option<&Outcome> {
            self.call.outcome()
        }

        fn records(&self) -> Vec<RecordEvent> {
            self.call
                .timeline()
                .iter()
                .map(|s| s.event.clone())
                .collect()
        }

        /// Hunt group, open: welcome played, now queued in Q0 (effects of the entry dropped).
        fn queued(config: Config) -> Self {
            let mut sim = Self::new(config, HUNT);
            sim.on(Event::Started);
            sim.on(Event::PromptEnded);
            sim.on(Event::EnteredQueue(Entry::Waiting { position: 1 }));
            sim
        }

        fn offer(&mut self, agents: &[AgentId]) -> Vec<Effect> {
            self.on(Event::Offered(Offer {
                group: G0,
                agents: agents.to_vec(),
                alert_time: Duration::from_secs(20),
            }))
        }
    }

    fn enter_q0(sim: &Sim, timeout: Option<u64>) -> Vec<Effect> {
        let mut v = vec![Effect::StartMusicOnHold, Effect::Enqueue(Q0)];
        if let Some(secs) = timeout {
            v.push(Effect::Arm(Timer::QueueTimeout, sim.at_secs(secs)));
        }
        v
    }

    /// The wall clock stepped an hour forward while the caller waits, and back while they
    /// talk: the record's times follow the monotonic clock from the arrival on, so the wait
    /// and talk it shows are the real ones.
    #[test]
    fn a_wall_clock_step_during_the_call_moves_no_time_in_its_record() {
        let (c, _) = fixture();
        let mut sim = Sim::queued(c);
        let arrived = sim.call.timeline()[0].at;
        sim.wait(4);
        sim.now.utc += chrono::Duration::hours(1);
        sim.offer(&[A0]);
        sim.wait(6);
        sim.on(Event::AgentAnswered(A0));
        sim.now.utc -= chrono::Duration::hours(2);
        sim.wait(30);
        sim.on(Event::PeerHungUp);
        let at = |want: fn(&RecordEvent) -> bool| {
            let s = sim.call.timeline().iter().find(|s| want(&s.event)).unwrap();
            (s.at - arrived).num_seconds()
        };
        assert_eq!(at(|e| matches!(e, RecordEvent::Offered { .. })), 4);
        assert_eq!(
            at(|e| matches!(
                e,
                RecordEvent::OfferEnded {
                    result: OfferResult::Answered,
                    ..
                }
            )),
            10
        );
        assert_eq!(at(|e| matches!(e, RecordEvent::Ended(_))), 40);
    }

    #[test]
    fn hunt_group_answered_by_the_second_agent() {
        let (c, p) = fixture();
        let mut sim = Sim::new(c, HUNT);
        assert_eq!(sim.on(Event::Started), vec![Effect::Play(p.welcome)]);
        assert_eq!(
            sim.on(Event::Digit('1')),
            vec![],
            "the welcome is not skippable"
        );
        sim.wait(4);
        assert_eq!(sim.on(Event::PromptEnded), enter_q0(&sim, None));
        assert_eq!(
            sim.on(Event::EnteredQueue(Entry::Waiting { position: 3 })),
            vec![]
        );
        sim.wait(30);
        assert_eq!(
            sim.offer(&[A0]),
            vec![Effect::Ring(A0), Effect::Arm(Timer::Alert, sim.at_secs(20))]
        );
        sim.wait(20);
        assert_eq!(
            sim.on(Event::AlertTimeout),
            vec![Effect::CancelRing(A0), Effect::NextOffer(Q0)]
        );
        assert_eq!(
            sim.offer(&[A1]),
            vec![Effect::Ring(A1), Effect::Arm(Timer::Alert, sim.at_secs(20))]
        );
        sim.wait(5);
        assert_eq!(
            sim.on(Event::AgentAnswered(A1)),
            vec![
                Effect::Disarm(Timer::Alert),
                Effect::Disarm(Timer::QueueTimeout),
                Effect::Dequeue(Q0),
                Effect::Bridge(A1),
            ]
        );
        assert!(matches!(
            sim.call.phase(),
            Phase::Bridged {
                peer: Peer::Agent(A1),
                ..
            }
        ));
        sim.wait(120);
        assert_eq!(sim.on(Event::PeerHungUp), vec![Effect::Hangup]);
        assert_eq!(sim.outcome(), Some(&Outcome::Answered { agent: A1 }));
        assert_eq!(
            sim.records(),
            vec![
                RecordEvent::Arrived { workflow: HUNT },
                RecordEvent::WelcomeEnded,
                RecordEvent::Schedule(OpenState::Open),
                RecordEvent::QueueEntered { queue: Q0 },
                RecordEvent::Waiting {
                    queue: Q0,
                    position: 3
                },
                RecordEvent::Offered {
                    agent: A0,
                    group: G0
                },
                RecordEvent::OfferEnded {
                    agent: A0,
                    result: OfferResult::NoAnswer
                },
                RecordEvent::Offered {
                    agent: A1,
                    group: G0
                },
                RecordEvent::OfferEnded {
                    agent: A1,
                    result: OfferResult::Answered
                },
                RecordEvent::Ended(Outcome::Answered { agent: A1 }),
            ]
        );
        // Timeline stamps follow simulated wall time: arrival at 10:00:00, end 179 s later.
        let tl = sim.call.timeline();
        assert_eq!(tl[0].at, utc0());
        assert_eq!(tl[tl.len() - 1].at, utc0() + chrono::Duration::seconds(179));
        // After the end everything is stray; a late offer's agents are let go.
        assert_eq!(sim.on(Event::CallerHungUp), vec![]);
        assert_eq!(sim.offer(&[A2]), vec![Effect::ReleaseAgent(A2)]);
    }

    #[test]
    fn without_a_welcome_prompt_the_schedule_is_checked_at_once() {
        let (mut c, _) = fixture();
        c.workflows[0].welcome = None;
        let mut sim = Sim::new(c, HUNT);
        assert_eq!(sim.on(Event::Started), enter_q0(&sim, None));
    }

    #[test]
    fn caller_hears_parallel_ringing_and_first_answer_wins() {
        let (c, _) = fixture();
        let mut sim = Sim::queued(c);
        sim.offer(&[A0, A1, A2]);
        assert_eq!(
            sim.on(Event::AgentAnswered(A2)),
            vec![
                Effect::CancelRing(A0),
                Effect::CancelRing(A1),
                Effect::Disarm(Timer::Alert),
                Effect::Disarm(Timer::QueueTimeout),
                Effect::Dequeue(Q0),
                Effect::Bridge(A2),
            ]
        );
        // A0's 200 OK crossed the CANCEL: that leg is dropped.
        assert_eq!(
            sim.on(Event::AgentAnswered(A0)),
            vec![Effect::DropAgent(A0)]
        );
        assert_eq!(sim.on(Event::CallerHungUp), vec![Effect::HangupPeer]);
        assert_eq!(sim.outcome(), Some(&Outcome::Answered { agent: A2 }));
    }

    #[test]
    fn agent_declines_grace_is_noted_and_the_next_offer_asked() {
        let (c, _) = fixture();
        let mut sim = Sim::queued(c);
        sim.offer(&[A0]);
        sim.wait(3);
        assert_eq!(
            sim.on(Event::AgentRefused(A0, SipStatus(603))),
            vec![
                Effect::ReleaseAgent(A0),
                Effect::NoteRefusal {
                    queue: Q0,
                    agent: A0,
                    until: sim.at_secs(60)
                },
                Effect::Disarm(Timer::Alert),
                Effect::NextOffer(Q0),
            ]
        );
        assert!(matches!(sim.call.phase(), Phase::Queued { .. }));
        assert!(sim.records().contains(&RecordEvent::OfferEnded {
            agent: A0,
            result: OfferResult::Refused(SipStatus(603)),
        }));
        // A stale alert time-out after that does nothing.
        assert_eq!(sim.on(Event::AlertTimeout), vec![]);
    }

    #[test]
    fn in_parallel_one_refusal_keeps_the_others_ringing() {
        let (c, _) = fixture();
        let mut sim = Sim::queued(c);
        sim.offer(&[A0, A1]);
        assert_eq!(
            sim.on(Event::AgentFailed(A1)),
            vec![
                Effect::ReleaseAgent(A1),
                Effect::NoteRefusal {
                    queue: Q0,
                    agent: A1,
                    until: sim.at_secs(60)
                },
            ]
        );
        assert!(
            matches!(sim.call.phase(), Phase::Offering { ringing, .. } if ringing == &vec![A0])
        );
        // A refusal from an agent not ringing (already released) changes nothing.
        assert_eq!(sim.on(Event::AgentRefused(A1, SipStatus(486))), vec![]);
        let effects = sim.on(Event::AgentRefused(A0, SipStatus(486)));
        assert_eq!(effects.last(), Some(&Effect::NextOffer(Q0)));
    }

    fn with_hours_and_holiday(c: &mut Config) {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        let weekday = vec![TimeRange {
            open: t(9, 0),
            close: t(17, 0),
        }];
        c.hours.push(Hours {
            name: "office".into(),
            days: [
                weekday.clone(),
                weekday.clone(),
                weekday.clone(),
                weekday.clone(),
                weekday,
                vec![],
                vec![],
            ],
        });
        c.holiday_sets.push(HolidaySet {
            name: "2026".into(),
            holidays: vec![Holiday {
                name: "Christmas".into(),
                start: "2026-12-25T00:00:00".parse().unwrap(),
                end: "2026-12-26T00:00:00".parse().unwrap(),
            }],
        });
        let wf = &mut c.workflows[0];
        wf.business_hours = Some(HoursId(0));
        wf.holidays = vec![HolidaySetId(0)];
    }

    #[test]
    fn holiday_wins_and_runs_the_holiday_action_after_its_prompt() {
        let (mut c, p) = fixture();
        with_hours_and_holiday(&mut c);
        c.workflows[0].on_holiday =
            Some(action(Some(p.holiday), ActionTarget::Voicemail(uri("vm"))));
        c.workflows[0].out_of_hours = Some(action(Some(p.closed), ActionTarget::Disconnect));
        // Friday 25 December 2026, 10:00 UTC: office hours, and Christmas.
        let at = utc0() + chrono::Duration::days(3);
        let mut sim = Sim::at(c, HUNT, at);
        sim.on(Event::Started);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Play(p.holiday)]);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Forward(uri("vm"))]);
        assert_eq!(sim.on(Event::ForwardAnswered), vec![]);
        assert_eq!(sim.on(Event::PeerHungUp), vec![Effect::Hangup]);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Forwarded {
                to: uri("vm"),
                voicemail: true,
                because: Because::Holiday("Christmas".into()),
            })
        );
        assert!(
            sim.records()
                .contains(&RecordEvent::Schedule(OpenState::Holiday(
                    "Christmas".into()
                )))
        );
    }

    #[test]
    fn out_of_hours_plays_its_prompt_then_disconnects() {
        let (mut c, p) = fixture();
        with_hours_and_holiday(&mut c);
        c.workflows[0].out_of_hours = Some(action(Some(p.closed), ActionTarget::Disconnect));
        // Saturday 26 December, 10:00: a closed day.
        let mut sim = Sim::at(c, HUNT, utc0() + chrono::Duration::days(4));
        sim.on(Event::Started);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Play(p.closed)]);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Hangup]);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::OutOfHours
            })
        );
    }

    #[test]
    fn closed_without_an_action_disconnects_at_once() {
        let (mut c, _) = fixture();
        with_hours_and_holiday(&mut c);
        // Tuesday 22 December, 20:00 UTC: after hours.
        let mut sim = Sim::at(c, HUNT, utc0() + chrono::Duration::hours(10));
        sim.on(Event::Started);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Hangup]);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::OutOfHours
            })
        );
    }

    /// Interactive workflow past its welcome, first question playing.
    fn asking() -> (Sim, Prompts) {
        let (c, p) = fixture();
        let mut sim = Sim::new(c, IVR);
        sim.on(Event::Started);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Play(p.question)]);
        (sim, p)
    }

    #[test]
    fn ivr_valid_key_after_the_prompt_goes_to_the_queue() {
        let (mut sim, _) = asking();
        assert_eq!(
            sim.on(Event::PromptEnded),
            vec![Effect::Arm(Timer::NoInput, sim.at_secs(5))]
        );
        sim.wait(2);
        let mut expected = vec![Effect::Disarm(Timer::NoInput)];
        expected.extend(enter_q0(&sim, None));
        assert_eq!(sim.on(Event::Digit('1')), expected);
        assert!(sim.records().contains(&RecordEvent::Key {
            question: QuestionId(0),
            key: '1',
            valid: true
        }));
    }

    #[test]
    fn ivr_key_during_the_question_prompt_barges_in_to_the_next_question() {
        let (mut sim, p) = asking();
        assert_eq!(sim.on(Event::Digit('2')), vec![Effect::Play(p.question2)]);
        assert_eq!(
            sim.on(Event::PromptEnded),
            vec![Effect::Arm(Timer::NoInput, sim.at_secs(3))]
        );
        let effects = sim.on(Event::Digit('#'));
        assert!(effects.contains(&Effect::Enqueue(Q1)));
    }

    #[test]
    fn ivr_answer_with_a_prompt_plays_it_before_forwarding() {
        let (mut sim, p) = asking();
        assert_eq!(sim.on(Event::Digit('9')), vec![Effect::Play(p.busy)]);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Forward(uri("vm"))]);
        assert_eq!(
            sim.on(Event::ForwardFailed(SipStatus(486))),
            vec![Effect::Hangup]
        );
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::ForwardFailed {
                to: uri("vm"),
                status: SipStatus(486),
                because: Because::IvrAnswer,
            })
        );
    }

    #[test]
    fn ivr_five_invalid_keys_disconnect() {
        let (mut sim, p) = asking();
        for attempt in 1..MAX_IVR_ATTEMPTS {
            assert_eq!(
                sim.on(Event::Digit('7')),
                vec![Effect::Play(p.invalid)],
                "attempt {attempt}"
            );
            assert_eq!(
                sim.on(Event::Digit('1')),
                vec![],
                "keys during the invalid prompt are dropped"
            );
            assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Play(p.question)]);
        }
        assert_eq!(sim.on(Event::Digit('*')), vec![Effect::Hangup]);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::IvrAttempts
            })
        );
        let invalid = sim
            .records()
            .iter()
            .filter(|r| matches!(r, RecordEvent::Key { valid: false, .. }))
            .count();
        assert_eq!(invalid, 5);
    }

    #[test]
    fn ivr_no_input_plays_the_no_answer_prompt_and_asks_again() {
        let (mut sim, p) = asking();
        sim.on(Event::PromptEnded);
        sim.wait(5);
        assert_eq!(
            sim.on(Event::NoInputTimeout),
            vec![Effect::Play(p.no_answer)]
        );
        assert_eq!(
            sim.on(Event::NoInputTimeout),
            vec![],
            "a stale time-out is ignored"
        );
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Play(p.question)]);
        assert_eq!(
            sim.on(Event::PromptEnded),
            vec![Effect::Arm(Timer::NoInput, sim.at_secs(5))]
        );
        assert!(sim.records().contains(&RecordEvent::NoInput {
            question: QuestionId(0)
        }));
    }

    #[test]
    fn ivr_silence_and_wrong_keys_count_together_and_without_prompts_repeat_the_question() {
        let (c, p) = fixture();
        let mut sim = Sim::new(c, IVR);
        sim.on(Event::Started);
        sim.on(Event::PromptEnded);
        assert_eq!(sim.on(Event::Digit('2')), vec![Effect::Play(p.question2)]);
        // Question 1 has no invalid/no-answer prompts: the question itself repeats.
        for _ in 0..2 {
            sim.on(Event::PromptEnded);
            assert_eq!(
                sim.on(Event::NoInputTimeout),
                vec![Effect::Play(p.question2)]
            );
            assert_eq!(sim.on(Event::Digit('5')), vec![Effect::Play(p.question2)]);
        }
        sim.on(Event::PromptEnded);
        assert_eq!(
            sim.on(Event::NoInputTimeout),
            vec![Effect::Hangup],
            "fifth failure"
        );
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::IvrAttempts
            })
        );
    }

    #[test]
    fn overflow_on_entry_runs_the_overflow_action() {
        let (mut c, p) = fixture();
        set_overflow(
            &mut c,
            Q0,
            5,
            OverflowCandidate::Newest,
            action(Some(p.busy), ActionTarget::Forward(uri("desk"))),
        );
        let mut sim = Sim::new(c, HUNT);
        sim.on(Event::Started);
        sim.on(Event::PromptEnded);
        assert_eq!(
            sim.on(Event::EnteredQueue(Entry::Overflow)),
            vec![Effect::Disarm(Timer::QueueTimeout), Effect::Play(p.busy)]
        );
        assert_eq!(
            sim.on(Event::PromptEnded),
            vec![Effect::Forward(uri("desk"))]
        );
        sim.on(Event::ForwardAnswered);
        sim.on(Event::CallerHungUp);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Forwarded {
                to: uri("desk"),
                voicemail: false,
                because: Because::Overflow
            })
        );
        assert!(
            sim.records()
                .contains(&RecordEvent::Overflowed { queue: Q0 })
        );
    }

    #[test]
    fn oldest_call_overflowed_while_ringing_cancels_its_agents() {
        let (mut c, _) = fixture();
        set_overflow(
            &mut c,
            Q0,
            1,
            OverflowCandidate::Oldest,
            action(None, ActionTarget::Disconnect),
        );
        let mut sim = Sim::queued(c);
        sim.offer(&[A0]);
        assert_eq!(
            sim.on(Event::Overflowed),
            vec![
                Effect::CancelRing(A0),
                Effect::Disarm(Timer::Alert),
                Effect::Disarm(Timer::QueueTimeout),
                Effect::Hangup,
            ]
        );
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::Overflow
            })
        );
    }

    #[test]
    fn queue_time_out_with_each_action() {
        let targets = [
            ActionTarget::Disconnect,
            ActionTarget::Voicemail(uri("vm")),
            ActionTarget::Forward(uri("desk")),
            ActionTarget::Queue(Q1),
        ];
        for target in targets {
            let (mut c, _) = fixture();
            set_timeout(&mut c, Q0, 300, action(None, target.clone()));
            set_timeout(&mut c, Q1, 100, action(None, ActionTarget::Disconnect));
            let mut sim = Sim::new(c, HUNT);
            sim.on(Event::Started);
            assert_eq!(
                sim.on(Event::PromptEnded),
                enter_q0(&sim, Some(300)),
                "{target:?}"
            );
            sim.wait(200);
            sim.offer(&[A0]);
            sim.wait(20);
            sim.on(Event::AlertTimeout);
            sim.offer(&[A1]);
            sim.wait(80);
            let head = [
                Effect::CancelRing(A1),
                Effect::Disarm(Timer::Alert),
                Effect::Dequeue(Q0),
            ];
            let effects = sim.on(Event::QueueTimeout);
            assert_eq!(effects[..3], head[..], "{target:?}");
            let tail = effects[3..].to_vec();
            match &target {
                ActionTarget::Disconnect => {
                    assert_eq!(tail, vec![Effect::Hangup]);
                    assert_eq!(
                        sim.outcome(),
                        Some(&Outcome::Disconnected {
                            because: Because::QueueTimeout
                        })
                    );
                }
                ActionTarget::Voicemail(to) | ActionTarget::Forward(to) => {
                    assert_eq!(tail, vec![Effect::Forward(to.clone())]);
                    sim.on(Event::ForwardAnswered);
                    sim.on(Event::PeerHungUp);
                    assert_eq!(
                        sim.outcome(),
                        Some(&Outcome::Forwarded {
                            to: to.clone(),
                            voicemail: matches!(target, ActionTarget::Voicemail(_)),
                            because: Because::QueueTimeout,
                        })
                    );
                }
                ActionTarget::Queue(q1) => {
                    // The caller stays; the clocks restart in the new queue.
                    assert_eq!(
                        tail,
                        vec![
                            Effect::StartMusicOnHold,
                            Effect::Enqueue(*q1),
                            Effect::Arm(Timer::QueueTimeout, sim.at_secs(100)),
                        ]
                    );
                    assert!(
                        matches!(sim.call.phase(), Phase::Queued { queue, since } if *queue == Q1 && *since == sim.now.instant)
                    );
                    sim.wait(100);
                    assert_eq!(
                        sim.on(Event::QueueTimeout),
                        vec![Effect::Dequeue(Q1), Effect::Hangup]
                    );
                }
                ActionTarget::Question(_) => unreachable!("not in this table"),
            }
        }
    }

    #[test]
    fn a_queue_loop_is_cut_after_max_entries() {
        let (mut c, _) = fixture();
        set_timeout(&mut c, Q0, 10, action(None, ActionTarget::Queue(Q1)));
        set_timeout(&mut c, Q1, 10, action(None, ActionTarget::Queue(Q0)));
        let mut sim = Sim::queued(c);
        let mut hops = 1;
        while sim.outcome().is_none() {
            assert!(hops <= MAX_QUEUE_ENTRIES, "bounded");
            sim.wait(10);
            sim.on(Event::QueueTimeout);
            hops += 1;
        }
        assert_eq!(hops, MAX_QUEUE_ENTRIES + 1);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::QueueLoop
            })
        );
    }

    #[test]
    fn a_queue_without_agents_disconnects() {
        let (mut c, _) = fixture();
        c.agent_groups[0].agents.clear();
        let mut sim = Sim::new(c, HUNT);
        sim.on(Event::Started);
        assert_eq!(sim.on(Event::PromptEnded), vec![Effect::Hangup]);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::Disconnected {
                because: Because::NoAgents
            })
        );
    }

    #[test]
    fn caller_hang_up_in_each_phase() {
        let (c, p) = fixture();
        type Setup = fn(&mut Sim);
        let cases: Vec<(&str, WorkflowId, Setup, Vec<Effect>, Outcome)> = vec![
            (
                "before start",
                HUNT,
                |_| {},
                vec![],
                Outcome::AbandonedInWelcome,
            ),
            (
                "welcome",
                HUNT,
                |s| {
                    s.on(Event::Started);
                },
                vec![],
                Outcome::AbandonedInWelcome,
            ),
            (
                "question prompt",
                IVR,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                },
                vec![Effect::Disarm(Timer::NoInput)],
                Outcome::AbandonedInIvr,
            ),
            (
                "waiting for a key",
                IVR,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.on(Event::PromptEnded);
                },
                vec![Effect::Disarm(Timer::NoInput)],
                Outcome::AbandonedInIvr,
            ),
            (
                "invalid prompt",
                IVR,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.on(Event::Digit('0'));
                },
                vec![Effect::Disarm(Timer::NoInput)],
                Outcome::AbandonedInIvr,
            ),
            (
                "answer prompt",
                IVR,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.on(Event::Digit('9'));
                },
                vec![],
                Outcome::AbandonedInAnnouncement {
                    because: Because::IvrAnswer,
                },
            ),
            (
                "queued",
                HUNT,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                },
                vec![Effect::Disarm(Timer::QueueTimeout), Effect::Dequeue(Q0)],
                Outcome::AbandonedInQueue,
            ),
            (
                "ringing",
                HUNT,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.offer(&[A0, A1]);
                },
                vec![
                    Effect::CancelRing(A0),
                    Effect::CancelRing(A1),
                    Effect::Disarm(Timer::Alert),
                    Effect::Disarm(Timer::QueueTimeout),
                    Effect::Dequeue(Q0),
                ],
                Outcome::AbandonedInQueue,
            ),
            (
                "forwarding",
                IVR,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.on(Event::Digit('9'));
                    s.on(Event::PromptEnded);
                },
                vec![Effect::CancelForward],
                Outcome::AbandonedWhileForwarding,
            ),
            (
                "bridged to an agent",
                HUNT,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.offer(&[A0]);
                    s.on(Event::AgentAnswered(A0));
                },
                vec![Effect::HangupPeer],
                Outcome::Answered { agent: A0 },
            ),
            (
                "bridged to voicemail",
                IVR,
                |s| {
                    s.on(Event::Started);
                    s.on(Event::PromptEnded);
                    s.on(Event::Digit('9'));
                    s.on(Event::PromptEnded);
                    s.on(Event::ForwardAnswered);
                },
                vec![Effect::HangupPeer],
                Outcome::Forwarded {
                    to: uri("vm"),
                    voicemail: true,
                    because: Because::IvrAnswer,
                },
            ),
        ];
        let _ = p;
        for (name, wf, setup, effects, outcome) in cases {
            let mut sim = Sim::new(c.clone(), wf);
            setup(&mut sim);
            assert_eq!(sim.on(Event::CallerHungUp), effects, "{name}");
            assert_eq!(sim.outcome(), Some(&outcome), "{name}");
            assert_eq!(
                sim.records().last(),
                Some(&RecordEvent::Ended(outcome)),
                "{name}"
            );
            assert_eq!(
                sim.on(Event::CallerHungUp),
                vec![],
                "{name}: a second hang-up is stray"
            );
        }
    }

    #[test]
    fn closed_announcement_hang_up_keeps_the_reason() {
        let (mut c, p) = fixture();
        with_hours_and_holiday(&mut c);
        c.workflows[0].out_of_hours = Some(action(Some(p.closed), ActionTarget::Disconnect));
        let mut sim = Sim::at(c, HUNT, utc0() + chrono::Duration::days(4));
        sim.on(Event::Started);
        sim.on(Event::PromptEnded);
        assert_eq!(sim.on(Event::CallerHungUp), vec![]);
        assert_eq!(
            sim.outcome(),
            Some(&Outcome::AbandonedInAnnouncement {
                because: Because::OutOfHours
            })
        );
    }

    #[test]
    fn stray_events_change_nothing_but_free_agents() {
        let (c, p) = fixture();
        let mut sim = Sim::new(c, HUNT);
        sim.on(Event::Started);
        // During the welcome: late queue/agent/timer events.
        for e in [
            Event::NoInputTimeout,
            Event::AlertTimeout,
            Event::QueueTimeout,
            Event::Overflowed,
            Event::EnteredQueue(Entry::Overflow),
            Event::AgentRefused(A0, SipStatus(486)),
            Event::ForwardAnswered,
            Event::PeerHungUp,
            Event::Started,
        ] {
            assert_eq!(sim.on(e.clone()), vec![], "{e:?}");
            assert_eq!(sim.call.phase(), &Phase::Welcome, "{e:?}");
        }
        assert_eq!(
            sim.offer(&[A0, A1]),
            vec![Effect::ReleaseAgent(A0), Effect::ReleaseAgent(A1)]
        );
        assert_eq!(
            sim.on(Event::AgentAnswered(A2)),
            vec![Effect::DropAgent(A2)]
        );
        assert_eq!(sim.call.phase(), &Phase::Welcome);
        let _ = p;
    }

    /// A tiny deterministic generator (no extra dependency): xorshift64.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            usize::try_from(self.0 % n as u64).unwrap()
        }
    }

    fn random_event(rng: &mut Rng) -> Event {
        let agent = AgentId(u32::try_from(rng.below(4)).unwrap());
        match rng.below(17) {
            0 => Event::Started,
            1 | 2 => Event::PromptEnded,
            3 | 4 => Event::Digit(['1', '2', '9', '#', '5', 'A'][rng.below(6)]),
            5 => Event::NoInputTimeout,
            6 => Event::EnteredQueue(if rng.below(4) == 0 {
                Entry::Overflow
            } else {
                Entry::Waiting { position: 1 }
            }),
            7 | 8 => Event::Offered(Offer {
                group: G0,
                agents: (0..=rng.below(3))
                    .map(|i| AgentId(u32::try_from(i).unwrap()))
                    .collect(),
                alert_time: Duration::from_secs(20),
            }),
            9 => Event::AgentAnswered(agent),
            10 => Event::AgentRefused(agent, SipStatus(486)),
            11 => Event::AgentFailed(agent),
            12 => Event::AlertTimeout,
            13 => Event::QueueTimeout,
            14 => Event::Overflowed,
            15 => {
                [Event::ForwardAnswered, Event::ForwardFailed(SipStatus(503))][rng.below(2)].clone()
            }
            _ => [Event::CallerHungUp, Event::PeerHungUp][rng.below(2)].clone(),
        }
    }

    /// Any sequence of events, however unlikely: no panic, the same input gives the same
    /// effects, an ended call stays ended, and every agent handed to the call is let go (or
    /// bridged and later hung up) by the time it ends.
    #[test]
    fn random_event_sequences_keep_the_invariants() {
        let (mut c, p) = fixture();
        set_timeout(
            &mut c,
            Q0,
            60,
            action(Some(p.busy), ActionTarget::Queue(Q1)),
        );
        set_overflow(
            &mut c,
            Q1,
            0,
            OverflowCandidate::Newest,
            action(None, ActionTarget::Voicemail(uri("vm"))),
        );
        let config = Arc::new(c);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let (mut ended, mut rings, mut bridges) = (0, 0, 0);
        for round in 0..3000 {
            let wf = if round % 2 == 0 { HUNT } else { IVR };
            let now = Now {
                instant: t0(),
                utc: utc0(),
            };
            let mut call = Call::new(Arc::clone(&config), wf, now);
            let mut twin = call.clone();
            let mut held: Vec<AgentId> = vec![];
            let mut bridged: Option<AgentId> = None;
            call.on(Event::Started, now, &mut vec![]);
            twin.on(Event::Started, now, &mut vec![]);
            for step in 0..40u64 {
                let event = random_event(&mut rng);
                let now = now.after(Duration::from_secs(step));
                let was_ended = call.outcome().cloned();
                if let Event::Offered(offer) = &event {
                    held.extend(&offer.agents);
                }
                let (mut out, mut out2) = (vec![], vec![]);
                call.on(event.clone(), now, &mut out);
                twin.on(event.clone(), now, &mut out2);
                assert_eq!(out, out2, "deterministic");
                if let Some(outcome) = was_ended {
                    assert_eq!(call.outcome(), Some(&outcome), "ended calls stay ended");
                }
                for effect in &out {
                    match effect {
                        Effect::CancelRing(a) | Effect::ReleaseAgent(a) | Effect::DropAgent(a) => {
                            if let Some(i) = held.iter().position(|h| h == a) {
                                held.remove(i);
                            }
                        }
                        Effect::Ring(_) => rings += 1,
                        Effect::Bridge(a) => {
                            bridges += 1;
                            let i = held
                                .iter()
                                .position(|h| h == a)
                                .expect("bridged a held agent");
                            held.remove(i);
                            bridged = Some(*a);
                        }
                        Effect::HangupPeer | Effect::Hangup => bridged = None,
                        _ => {}
                    }
                }
            }
            if call.outcome().is_some() {
                ended += 1;
                assert_eq!(
                    held,
                    vec![],
                    "round {round}: agents still claimed after the end"
                );
                assert_eq!(bridged, None, "round {round}: agent leg left up");
                assert!(matches!(
                    call.timeline().last(),
                    Some(Stamped {
                        event: RecordEvent::Ended(_),
                        ..
                    })
                ));
            }
        }
        assert!(
            ended > 1000,
            "the generator reaches the end often enough: {ended}"
        );
        assert!(
            rings > 1000 && bridges > 50,
            "and rings and bridges agents: {rings}, {bridges}"
        );
    }
}
