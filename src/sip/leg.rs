//! One call leg's user-agent state machine (RFC 3261 §13–15), sans-IO.
//!
//! A [`LegCore`] takes what happened to the leg ([`Input`]: a command from its holder, a
//! request or response from the peer, a timer) and returns what to do ([`Out`]: events for the
//! holder, responses, requests to send, forget the leg). It builds no message and touches no
//! socket: the endpoint's driver turns each [`Out`] into bytes on a transaction, the same way
//! it runs the transactions in `sip::transaction`. The table tests below walk every input
//! through every state.
//!
//! States: an inbound leg goes Early (INVITE received) → Confirming (our 2xx sent) →
//! Established (ACK received) → Ending (our BYE sent); an outbound leg goes Early (INVITE
//! sent) → Established (2xx received, ACK sent), or Early → Cancelling (CANCEL wanted) → gone.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::call::{CallEvent, LegFailure};
use super::dialog::Dialog;
use super::message::Request;
use super::transaction::{Answer2xx, TransactionKey};
use super::transport::Flow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegState {
    /// Inbound: INVITE received, not answered. Outbound: INVITE sent, no final response.
    Early,
    /// Inbound: 2xx sent, waiting for ACK.
    Confirming,
    Established,
    /// Outbound: CANCEL wanted (sent once a provisional response allows it), waiting for the
    /// INVITE's final response.
    Cancelling,
    /// BYE sent.
    Ending,
}

/// An in-dialog request from the peer (the CSeq check has passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InDialog {
    Bye,
    Invite {
        sdp: Option<Bytes>,
    },
    Update {
        sdp: Option<Bytes>,
    },
    Info {
        content_type: Option<String>,
        body: Bytes,
    },
    Options,
    /// Any method rgsd does not take inside a dialog.
    Other,
}

/// What happened to a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Holder: send a provisional response (inbound, unanswered).
    Ring(u16),
    /// Holder: answer 200 (inbound, unanswered).
    Answer,
    /// Holder: refuse with this final status (inbound, unanswered).
    Reject(u16),
    /// Holder: end the leg whatever its state (480, CANCEL or BYE).
    Hangup,
    /// Peer: CANCEL of the INVITE that created this (inbound) leg.
    Cancel,
    /// Peer: ACK of our 2xx.
    Ack { sdp: Option<Bytes> },
    /// No ACK for our 2xx within 64·T1.
    AckTimeout,
    /// Peer: a request inside the dialog.
    Request(InDialog),
    /// Peer (outbound): a provisional response to our INVITE.
    Provisional { status: u16, sdp: Option<Bytes> },
    /// Peer (outbound): a 2xx to our INVITE (first or retransmitted).
    Success { sdp: Bytes },
    /// Peer (outbound): a final non-2xx to our INVITE.
    Failure(u16),
    /// Our INVITE got no final response (timer B).
    InviteTimeout,
    /// Our BYE got its final response, or timed out.
    ByeDone,
    /// The connection the leg runs over closed.
    TransportClosed,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    /// Give the holder this event.
    Emit(CallEvent),
    /// Answer the request in hand (the in-dialog request or the CANCEL) with this status;
    /// `retry_after` adds `Retry-After: 1` (RFC 3261 §14.2).
    Reply {
        status: u16,
        retry_after: bool,
    },
    /// Answer the in-dialog request in hand 200 as its method needs (a re-INVITE: with the
    /// local SDP, retransmitted until ACKed; UPDATE: with it if the UPDATE had an offer).
    Accept,
    /// Send this status on the INVITE server transaction that created the leg.
    RespondInvite(u16),
    /// Send 200 with the local SDP on the creating INVITE, retransmitted until ACKed.
    SendAnswer,
    /// Stop retransmitting our 2xx.
    StopRetransmit,
    SendCancel,
    /// ACK the first 2xx (and keep the ACK for retransmitted 2xx).
    SendAck,
    ResendAck,
    SendBye,
    /// The holder has its terminal event: later events go nowhere.
    Detach,
    /// Forget the leg (after the events above).
    End,
}

/// The decisions of one leg: state and the flags the transitions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegCore {
    pub outbound: bool,
    pub state: LegState,
    /// Outbound: a provisional response arrived, so a CANCEL may be sent (RFC 3261 §9.1).
    heard: bool,
    cancel_sent: bool,
    /// Outbound: the 2xx has been ACKed.
    acked: bool,
    /// Inbound: our 2xx waits for its ACK; `true` when it answered the creating INVITE.
    awaiting_ack: Option<bool>,
}

impl LegCore {
    pub(crate) fn inbound() -> Self {
        Self::new(false)
    }

    pub(crate) fn outbound() -> Self {
        Self::new(true)
    }

    fn new(outbound: bool) -> Self {
        Self {
            outbound,
            state: LegState::Early,
            heard: false,
            cancel_sent: false,
            acked: false,
            awaiting_ack: None,
        }
    }

    /// Whether a 2xx of ours waits for its ACK.
    pub(crate) fn awaits_ack(&self) -> bool {
        self.awaiting_ack.is_some()
    }

    fn unanswered_inbound(&self) -> bool {
        !self.outbound && self.state == LegState::Early
    }

    fn bye(&mut self) -> Vec<Out> {
        self.state = LegState::Ending;
        let mut out = Vec::new();
        if self.awaiting_ack.take().is_some() {
            out.push(Out::StopRetransmit);
        }
        out.push(Out::SendBye);
        out
    }

    fn cancel(&mut self) -> Vec<Out> {
        if self.heard && !std::mem::replace(&mut self.cancel_sent, true) {
            vec![Out::SendCancel]
        } else {
            Vec::new()
        }
    }

    /// The one transition function.
    pub(crate) fn on(&mut self, input: Input) -> Vec<Out> {
        use LegState::{Cancelling, Confirming, Early, Ending, Established};
        match input {
            Input::Ring(status) if self.unanswered_inbound() => vec![Out::RespondInvite(status)],
            Input::Answer if self.unanswered_inbound() => {
                self.state = Confirming;
                self.awaiting_ack = Some(true);
                vec![Out::SendAnswer]
            }
            Input::Reject(status) if self.unanswered_inbound() => {
                vec![Out::RespondInvite(status), Out::End]
            }
            Input::Ring(_) | Input::Answer | Input::Reject(_) => Vec::new(),
            Input::Hangup => match (self.outbound, self.state) {
                (false, Early) => vec![Out::RespondInvite(480), Out::End],
                (_, Confirming | Established) => self.bye(),
                (true, Early) => {
                    // RFC 3261 §9.1: no CANCEL before a provisional response; until then it
                    // waits (and timer B still bounds the INVITE).
                    self.state = Cancelling;
                    self.cancel()
                }
                (_, Cancelling | Ending) => Vec::new(),
            },
            Input::Cancel if self.unanswered_inbound() => vec![
                Out::Reply {
                    status: 200,
                    retry_after: false,
                },
                Out::RespondInvite(487),
                Out::Emit(CallEvent::Cancelled),
                Out::End,
            ],
            // After our final response a CANCEL changes nothing (RFC 3261 §9.2).
            Input::Cancel => vec![Out::Reply {
                status: 200,
                retry_after: false,
            }],
            Input::Ack { sdp } => match self.awaiting_ack.take() {
                // An ACK retransmit, or an ACK for a 2xx we no longer care about.
                None => Vec::new(),
                Some(initial) => {
                    if self.state == Confirming {
                        self.state = Established;
                    }
                    let mut out = vec![Out::StopRetransmit];
                    if initial {
                        out.push(Out::Emit(CallEvent::Confirmed { sdp }));
                    }
                    out
                }
            },
            Input::AckTimeout => {
                let mut out = vec![Out::Emit(CallEvent::AckTimeout)];
                out.extend(self.bye());
                out.push(Out::Detach);
                out
            }
            Input::Request(request) => self.on_request(request),
            Input::Provisional { status, sdp } if matches!(self.state, Early | Cancelling) => {
                self.heard = true;
                let mut out = Vec::new();
                if status > 100 {
                    out.push(Out::Emit(CallEvent::Provisional { status, sdp }));
                }
                if self.state == Cancelling {
                    out.extend(self.cancel());
                }
                out
            }
            Input::Provisional { .. } => Vec::new(),
            Input::Success { .. } if self.acked => vec![Out::ResendAck],
            Input::Success { sdp } => {
                self.acked = true;
                if self.state == Cancelling {
                    // Answered despite our CANCEL (they crossed): hang up at once.
                    let mut out = vec![Out::SendAck];
                    out.extend(self.bye());
                    out
                } else {
                    self.state = Established;
                    vec![Out::SendAck, Out::Emit(CallEvent::Answered { sdp })]
                }
            }
            Input::Failure(status) => {
                vec![
                    Out::Emit(CallEvent::Failed(LegFailure::Status(status))),
                    Out::End,
                ]
            }
            Input::InviteTimeout => {
                vec![Out::Emit(CallEvent::Failed(LegFailure::Timeout)), Out::End]
            }
            Input::ByeDone => vec![Out::Emit(CallEvent::Ended), Out::End],
            Input::TransportClosed => match (self.outbound, self.state) {
                (true, Early | Cancelling) => vec![
                    Out::Emit(CallEvent::Failed(LegFailure::Transport)),
                    Out::End,
                ],
                (_, Ending) => vec![Out::Emit(CallEvent::Ended), Out::End],
                _ => Vec::new(),
            },
        }
    }

    fn on_request(&mut self, request: InDialog) -> Vec<Out> {
        let reply = |status| Out::Reply {
            status,
            retry_after: false,
        };
        match request {
            InDialog::Bye => {
                let mut out = vec![reply(200)];
                if self.unanswered_inbound() {
                    // RFC 3261 §15.1.2: the INVITE still pending gets 487.
                    out.push(Out::RespondInvite(487));
                }
                self.awaiting_ack = None;
                out.extend([Out::Emit(CallEvent::Bye), Out::End]);
                out
            }
            // Our own INVITE on this dialog has no final response yet: glare (RFC 3261 §14.2).
            InDialog::Invite { .. } if self.outbound && self.state != LegState::Established => {
                vec![reply(491)]
            }
            // Our previous 2xx is not ACKed yet, or the INVITE that created the leg is not
            // answered (RFC 3261 §14.2).
            InDialog::Invite { .. } if self.awaits_ack() || self.unanswered_inbound() => {
                vec![Out::Reply {
                    status: 500,
                    retry_after: true,
                }]
            }
            InDialog::Invite { sdp } => {
                self.awaiting_ack = Some(false);
                vec![Out::Accept, Out::Emit(CallEvent::Reinvite { sdp })]
            }
            InDialog::Update { sdp } => vec![Out::Emit(CallEvent::Update { sdp }), Out::Accept],
            InDialog::Info { content_type, body } => {
                vec![
                    Out::Emit(CallEvent::Info { content_type, body }),
                    reply(200),
                ]
            }
            InDialog::Options => vec![Out::Accept],
            InDialog::Other => vec![reply(405)],
        }
    }
}

/// A leg as the driver keeps it: the core's decisions plus what it needs for I/O.
#[derive(Debug)]
pub(crate) struct Leg {
    pub core: LegCore,
    pub dialog: Dialog,
    pub events: mpsc::UnboundedSender<CallEvent>,
    pub flow: Flow,
    pub peer: SocketAddr,
    /// Answers re-INVITE and UPDATE offers.
    pub local_sdp: Bytes,
    /// Our 2xx's retransmission while `core.awaits_ack()`.
    pub answer: Option<Answer2xx>,
    /// The INVITE transaction (inbound: server; outbound: client).
    pub invite_tx: Option<TransactionKey>,
    /// Outbound: our INVITE, to build the CANCEL from.
    pub invite: Option<Request>,
    /// Outbound: the ACK sent for the 2xx, resent for 2xx retransmits.
    pub ack: Option<Bytes>,
    /// Counts toward `max_calls`.
    pub counted: bool,
    /// Outbound over TLS: the name the peer's certificate was checked against, to connect
    /// again the same way when the connection is gone.
    pub tls_name: Option<std::sync::Arc<str>>,
}

impl Leg {
    pub(crate) fn emit(&self, event: CallEvent) {
        // The holder may have dropped its handle; the leg's own cleanup still happens.
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::LegState::{Cancelling, Confirming, Early, Ending, Established};
    use super::*;

    const fn reply(status: u16) -> Out {
        Out::Reply {
            status,
            retry_after: false,
        }
    }

    /// A core driven into `state` the way the driver would get it there.
    fn core(outbound: bool, state: LegState) -> LegCore {
        let mut c = if outbound {
            LegCore::outbound()
        } else {
            LegCore::inbound()
        };
        let path: &[Input] = match (outbound, state) {
            (_, Early) => &[],
            (false, Confirming) => &[Input::Answer],
            (false, Established) => &[Input::Answer, Input::Ack { sdp: None }],
            (false, Ending) => &[Input::Answer, Input::Ack { sdp: None }, Input::Hangup],
            (true, Established) => &[Input::Success { sdp: Bytes::new() }],
            (true, Cancelling) => &[Input::Hangup],
            (true, Ending) => &[Input::Success { sdp: Bytes::new() }, Input::Hangup],
            (false, Cancelling) | (true, Confirming) => panic!("not a state of this side"),
        };
        for input in path {
            c.on(input.clone());
        }
        assert_eq!(c.state, state);
        c
    }

    /// Every state of each side.
    const INBOUND: [LegState; 4] = [Early, Confirming, Established, Ending];
    const OUTBOUND: [LegState; 4] = [Early, Cancelling, Established, Ending];

    fn step(outbound: bool, state: LegState, input: Input) -> (Vec<Out>, LegState) {
        let mut c = core(outbound, state);
        let out = c.on(input);
        (out, c.state)
    }

    #[test]
    fn bye_from_the_peer_ends_the_leg_in_every_state() {
        for (outbound, states) in [(false, INBOUND), (true, OUTBOUND)] {
            for state in states {
                let (out, _) = step(outbound, state, Input::Request(InDialog::Bye));
                let mut want = vec![reply(200)];
                if !outbound && state == Early {
                    want.push(Out::RespondInvite(487));
                }
                want.extend([Out::Emit(CallEvent::Bye), Out::End]);
                assert_eq!(out, want, "outbound={outbound} {state:?}");
            }
        }
    }

    #[test]
    fn hangup_in_every_state() {
        let cases: &[(bool, LegState, &[Out], LegState)] = &[
            (false, Early, &[Out::RespondInvite(480), Out::End], Early),
            (
                false,
                Confirming,
                &[Out::StopRetransmit, Out::SendBye],
                Ending,
            ),
            (false, Established, &[Out::SendBye], Ending),
            (false, Ending, &[], Ending),
            // Nothing heard yet: the CANCEL waits for a provisional response.
            (true, Early, &[], Cancelling),
            (true, Cancelling, &[], Cancelling),
            (true, Established, &[Out::SendBye], Ending),
            (true, Ending, &[], Ending),
        ];
        for (outbound, state, want, after) in cases {
            let (out, now) = step(*outbound, *state, Input::Hangup);
            assert_eq!(
                (out.as_slice(), now),
                (*want, *after),
                "{outbound} {state:?}"
            );
        }
    }

    #[test]
    fn cancel_races_on_an_outbound_leg() {
        // CANCEL wanted before any provisional: sent when the 180 arrives, once.
        let mut c = core(true, Cancelling);
        let ringing = Input::Provisional {
            status: 180,
            sdp: None,
        };
        assert_eq!(
            c.on(ringing.clone()),
            vec![
                Out::Emit(CallEvent::Provisional {
                    status: 180,
                    sdp: None
                }),
                Out::SendCancel
            ]
        );
        assert_eq!(
            c.on(ringing),
            vec![Out::Emit(CallEvent::Provisional {
                status: 180,
                sdp: None
            })]
        );
        // A 100 Trying is enough to allow the CANCEL, and is not reported.
        let mut c = core(true, Cancelling);
        let trying = Input::Provisional {
            status: 100,
            sdp: None,
        };
        assert_eq!(c.on(trying), vec![Out::SendCancel]);
        // CANCEL after a provisional: sent at once.
        let mut c = core(true, Early);
        c.on(Input::Provisional {
            status: 183,
            sdp: None,
        });
        assert_eq!(c.on(Input::Hangup), vec![Out::SendCancel]);
        assert_eq!(c.state, Cancelling);
        // The 487 for our CANCEL ends the leg as a failure.
        assert_eq!(
            c.on(Input::Failure(487)),
            vec![
                Out::Emit(CallEvent::Failed(LegFailure::Status(487))),
                Out::End
            ]
        );
        // The callee answered as our CANCEL went out (crossed): ACK, then BYE, no Answered.
        let mut c = core(true, Cancelling);
        assert_eq!(
            c.on(Input::Success { sdp: Bytes::new() }),
            vec![Out::SendAck, Out::SendBye]
        );
        assert_eq!(c.state, Ending);
        assert_eq!(
            c.on(Input::Success { sdp: Bytes::new() }),
            vec![Out::ResendAck]
        );
        assert_eq!(
            c.on(Input::ByeDone),
            vec![Out::Emit(CallEvent::Ended), Out::End]
        );
    }

    #[test]
    fn cancel_races_on_an_inbound_leg() {
        // CANCEL before our answer (with or without a provisional sent): 200, 487, Cancelled.
        for rung in [false, true] {
            let mut c = core(false, Early);
            if rung {
                assert_eq!(c.on(Input::Ring(180)), vec![Out::RespondInvite(180)]);
            }
            assert_eq!(
                c.on(Input::Cancel),
                vec![
                    reply(200),
                    Out::RespondInvite(487),
                    Out::Emit(CallEvent::Cancelled),
                    Out::End
                ]
            );
        }
        // CANCEL after our 200 (ACKed or not): 200 to the CANCEL, the call goes on.
        for state in [Confirming, Established, Ending] {
            let (out, after) = step(false, state, Input::Cancel);
            assert_eq!((out, after), (vec![reply(200)], state));
        }
        // Holder commands after the answer are ignored.
        for input in [Input::Ring(180), Input::Answer, Input::Reject(486)] {
            assert_eq!(step(false, Established, input).0, vec![]);
        }
    }

    #[test]
    fn reinvite_and_glare() {
        let offer = Some(Bytes::from_static(b"v=0"));
        let reinvite = || Input::Request(InDialog::Invite { sdp: offer.clone() });
        let accepted = vec![
            Out::Accept,
            Out::Emit(CallEvent::Reinvite { sdp: offer.clone() }),
        ];
        let retry = vec![Out::Reply {
            status: 500,
            retry_after: true,
        }];
        // Inbound established: answered, and its 2xx then waits for an ACK, which is not
        // reported (only the creating INVITE's is).
        let mut c = core(false, Established);
        assert_eq!(c.on(reinvite()), accepted);
        assert!(c.awaits_ack());
        assert_eq!(c.on(reinvite()), retry, "second re-INVITE before the ACK");
        assert_eq!(c.on(Input::Ack { sdp: None }), vec![Out::StopRetransmit]);
        assert_eq!(c.on(reinvite()), accepted);
        // Before the creating INVITE's 2xx is ACKed, or before it is answered at all: 500.
        assert_eq!(step(false, Confirming, reinvite()).0, retry);
        assert_eq!(step(false, Early, reinvite()).0, retry);
        // Outbound: accepted once established; while our INVITE is pending it is glare.
        assert_eq!(step(true, Established, reinvite()).0, accepted);
        for state in [Early, Cancelling] {
            assert_eq!(step(true, state, reinvite()).0, vec![reply(491)]);
        }
    }

    #[test]
    fn ack_confirms_the_answer_once() {
        let mut c = core(false, Confirming);
        let sdp = Some(Bytes::from_static(b"v=0"));
        assert_eq!(
            c.on(Input::Ack { sdp: sdp.clone() }),
            vec![Out::StopRetransmit, Out::Emit(CallEvent::Confirmed { sdp })]
        );
        assert_eq!(c.state, Established);
        assert_eq!(c.on(Input::Ack { sdp: None }), vec![], "ACK retransmit");
    }

    #[test]
    fn ack_timeout_hangs_up_and_detaches() {
        let (out, after) = step(false, Confirming, Input::AckTimeout);
        assert_eq!(
            out,
            vec![
                Out::Emit(CallEvent::AckTimeout),
                Out::StopRetransmit,
                Out::SendBye,
                Out::Detach
            ]
        );
        assert_eq!(after, Ending);
        // Our BYE then completes on its own.
        let mut c = core(false, Confirming);
        c.on(Input::AckTimeout);
        assert_eq!(
            c.on(Input::ByeDone),
            vec![Out::Emit(CallEvent::Ended), Out::End]
        );
    }

    #[test]
    fn outbound_answer_failure_timeout_and_transport() {
        let mut c = core(true, Early);
        let sdp = Bytes::from_static(b"v=0");
        assert_eq!(
            c.on(Input::Success { sdp: sdp.clone() }),
            vec![Out::SendAck, Out::Emit(CallEvent::Answered { sdp })]
        );
        assert_eq!(
            c.on(Input::Success { sdp: Bytes::new() }),
            vec![Out::ResendAck]
        );
        // A late provisional after the answer is ignored.
        let late = Input::Provisional {
            status: 180,
            sdp: None,
        };
        assert_eq!(c.on(late), vec![]);
        assert_eq!(
            step(true, Early, Input::InviteTimeout).0,
            vec![Out::Emit(CallEvent::Failed(LegFailure::Timeout)), Out::End]
        );
        let closed = [
            (
                Early,
                vec![
                    Out::Emit(CallEvent::Failed(LegFailure::Transport)),
                    Out::End,
                ],
            ),
            (
                Cancelling,
                vec![
                    Out::Emit(CallEvent::Failed(LegFailure::Transport)),
                    Out::End,
                ],
            ),
            (Established, vec![]),
            (Ending, vec![Out::Emit(CallEvent::Ended), Out::End]),
        ];
        for (state, want) in closed {
            assert_eq!(
                step(true, state, Input::TransportClosed).0,
                want,
                "{state:?}"
            );
        }
        assert_eq!(step(false, Established, Input::TransportClosed).0, vec![]);
    }

    #[test]
    fn other_in_dialog_requests() {
        let info = InDialog::Info {
            content_type: Some("application/dtmf-relay".into()),
            body: Bytes::from_static(b"Signal=5"),
        };
        assert_eq!(
            step(false, Established, Input::Request(info)).0,
            vec![
                Out::Emit(CallEvent::Info {
                    content_type: Some("application/dtmf-relay".into()),
                    body: Bytes::from_static(b"Signal=5"),
                }),
                reply(200)
            ]
        );
        let update = InDialog::Update { sdp: None };
        assert_eq!(
            step(true, Established, Input::Request(update)).0,
            vec![Out::Emit(CallEvent::Update { sdp: None }), Out::Accept]
        );
        assert_eq!(
            step(false, Established, Input::Request(InDialog::Options)).0,
            vec![Out::Accept]
        );
        assert_eq!(
            step(false, Established, Input::Request(InDialog::Other)).0,
            vec![reply(405)]
        );
    }
}
