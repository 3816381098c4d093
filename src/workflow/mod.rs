//! The pure logic of a call: schedules, IVR, the call state machine. No I/O, no clock reads.
//!
//! Must not import tokio, sockets, sqlx, `sip` or `media`.
//!
//! - [`schedule`]: [`schedule::is_open`], business hours and holidays in the workflow's zone.
//! - [`call`]: [`call::Call`], the per-call state machine: `Call::on(event, now, &mut effects)`.
//!
//! # Life of a call
//!
//! ```text
//!  INVITE ─► Call::new ──(Started)──► Arrived
//!                                        │ welcome prompt?  yes ─► Welcome ──(PromptEnded)──┐
//!                                        │                  no ──────────────────────────────┤
//!                                        ▼                                                  │
//!                         schedule::is_open(hours, holidays, zone, now.utc) ◄───────────────┘
//!              Holiday(name) │        OutOfHours │                 Open │
//!       on_holiday action    │  out_of_hours act.│       workflow.start │ (queue | question 0)
//!      (default: disconnect) ▼                   ▼                      ▼
//!   ┌──────────────── act(action) = prompt? ─► Announcing ─(PromptEnded)─► go(target) ──────┐
//!   │                                  no ───────────────────────────────► go(target)       │
//!   │                                                                                       │
//!   │ go(Disconnect) ─► Hangup ─► Ended(Disconnected{because})                              │
//!   │ go(Forward|Voicemail) ─► Forwarding ─(ForwardAnswered)─► Bridged ─(hang-up)─► Ended   │
//!   │                                     ─(ForwardFailed)───► Ended(ForwardFailed)         │
//!   │ go(Question q) ─► Asking{q, tries, Prompting}                                         │
//!   │        ─(PromptEnded)─► Waiting (Arm NoInput) ─(NoInputTimeout)─► failed attempt      │
//!   │        ─(Digit valid)─► act(answer.action)                                            │
//!   │        ─(Digit invalid)─► failed attempt                                              │
//!   │   failed attempt: tries+1 == 5 ─► Hangup ─► Ended(Disconnected{IvrAttempts})          │
//!   │                   else invalid/no-answer prompt (Correcting) ─► question again        │
//!   │ go(Queue q) ─► MoH, Enqueue(q), Arm(QueueTimeout) ─► Queued{q, since}                 │
//!   │        ─(EnteredQueue(Overflow) | Overflowed)─► overflow action ──────────────────────┤
//!   │        ─(QueueTimeout)─► Dequeue, time-out action ────────────────────────────────────┤
//!   │        ─(Offered{agents})─► Ring each, Arm(Alert) ─► Offering{q, ringing}             │
//!   │               ─(AgentAnswered a)─► CancelRing others, Dequeue, Bridge(a) ─► Bridged   │
//!   │               ─(AgentRefused/Failed a)─► Release a, NoteRefusal(grace); none left:    │
//!   │                                          NextOffer ─► Queued                          │
//!   │               ─(AlertTimeout)─► CancelRing all, NextOffer ─► Queued                   │
//!   │               ─(QueueTimeout | Overflowed)─► CancelRing all, action ──────────────────┘
//!   │
//!   └─ CallerHungUp in any live phase ─► Ended(Abandoned…): the record says where.
//! ```
//!
//! A queue-to-queue action keeps the caller and restarts the clocks (a new queue entry and
//! time-out). Every [`call::Effect::Record`] is also appended to the call's timeline, which the
//! driver writes as the call record once the phase is `Ended`.
//!
//! # The driver (in `acd`, not here)
//!
//! One tokio task per call owns its [`call::Call`]. It loops: `select!` on SIP events of the
//! caller and agent legs, media events (prompt ended, DTMF), messages from the queue owner
//! (entered, offered, overflowed), queue messages waiting for room, and the earliest armed
//! timer; reads [`call::Now`] once per event; calls `Call::on`; applies the effects in order.
//! Agents named in `Offered` were already claimed in the agent table by the queue owner; the
//! driver releases them (`CancelRing`, `ReleaseAgent`, `DropAgent`) exactly as the effects say,
//! and gives back any claim it still holds when its loop ends, however it ends. The path of a
//! call through the tasks is in `docs/architecture.md`.

pub(crate) mod call;
pub(crate) mod schedule;

#[cfg(test)]
pub(crate) mod testing;
