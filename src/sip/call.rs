//! The handles the call controller holds: [`IncomingCall`] (typestate: ring, then answer or
//! reject), [`Call`] (an established inbound dialog) and [`OutboundCall`] (a leg we started).
//!
//! Handles talk to the endpoint's driver through an unbounded command queue, so every method
//! except `next_event` is synchronous and cannot block. Events come back on a per-call queue;
//! every end of a call (BYE, CANCEL, timeout, failure, ACK timeout) arrives as an event.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Identifies a call leg inside the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct LegId(pub(crate) u64);

/// What the peer or the endpoint reports about a call leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// Outbound: a provisional response (180, 183, …), with its SDP if it has one.
    Provisional { status: u16, sdp: Option<Bytes> },
    /// Outbound: the callee answered (2xx); the ACK has been sent. `sdp` is the answer.
    Answered { sdp: Bytes },
    /// Outbound: the leg failed before an answer. Terminal.
    Failed(LegFailure),
    /// Inbound: the caller sent CANCEL before we answered; 487 has been sent. Terminal.
    Cancelled,
    /// Inbound: the ACK for our 2xx arrived (with the SDP answer if our 2xx carried the offer).
    Confirmed { sdp: Option<Bytes> },
    /// Inbound: no ACK for our 2xx within 64·T1; the endpoint has sent BYE. Terminal.
    AckTimeout,
    /// The peer hung up (BYE answered 200). Terminal.
    Bye,
    /// A re-INVITE, already answered 200 with the current local SDP
    /// ([`Call::set_local_sdp`]); `sdp` is the peer's offer, if any.
    Reinvite { sdp: Option<Bytes> },
    /// An UPDATE, already answered 200 (with the current local SDP if it carried an offer).
    Update { sdp: Option<Bytes> },
    /// An INFO (DTMF relay, …), already answered 200.
    Info {
        content_type: Option<String>,
        body: Bytes,
    },
    /// Our BYE was answered or timed out: the dialog is gone. Terminal.
    Ended,
}

impl CallEvent {
    /// Whether no further events will follow.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Failed(_) | Self::Cancelled | Self::AckTimeout | Self::Bye | Self::Ended
        )
    }
}

/// Why an outbound leg failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegFailure {
    /// A final non-2xx response (486 busy, 480, 603 decline, 487 after our CANCEL, …).
    Status(u16),
    /// No response at all (timer B), or no final response 64·T1 after our CANCEL.
    Timeout,
    /// The connection to the target failed or closed.
    Transport,
}

/// Commands from handles to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Ring {
        leg: LegId,
        status: u16,
        sdp: Option<Bytes>,
    },
    Answer {
        leg: LegId,
        sdp: Bytes,
    },
    Reject {
        leg: LegId,
        status: u16,
    },
    SetLocalSdp {
        leg: LegId,
        sdp: Bytes,
    },
    Hangup {
        leg: LegId,
    },
    Invite(Box<OutboundRequest>),
    /// An outbound leg's target resolved (or not), from the task that looked it up.
    Resolved {
        leg: LegId,
        result: Result<(SocketAddr, bool), String>,
    },
    /// New edge settings and listeners; the reply names the keys that were not applied.
    Reconfigure {
        config: Box<super::settings::EndpointConfig>,
        reply: tokio::sync::oneshot::Sender<Vec<String>>,
    },
    /// An out-of-dialog non-INVITE request (REGISTER, OPTIONS ping); the driver adds the Via.
    Request {
        request: Box<super::message::Request>,
        dest: SocketAddr,
        tcp: bool,
        /// TLS, checking the peer's certificate for this name.
        tls_name: Option<String>,
        reply: tokio::sync::oneshot::Sender<Result<super::message::Response, LegFailure>>,
    },
}

/// What `Endpoint::invite` hands the driver.
#[derive(Debug)]
pub(crate) struct OutboundRequest {
    pub leg: LegId,
    pub events: mpsc::UnboundedSender<CallEvent>,
    /// `Route` of the initial INVITE (`<outbound_proxy;lr>`); set by the driver.
    pub route: Option<String>,
    pub request_uri: String,
    pub from: String,
    pub sdp: Bytes,
    pub extra_headers: Vec<(String, String)>,
    pub call_id: String,
}

/// The driver has stopped (endpoint shut down): nothing can be sent any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SIP endpoint has shut down")]
pub struct EndpointGone;

/// What an inbound INVITE said, as the controller needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The From header value as received.
    pub from: String,
    /// The To header value as received.
    pub to: String,
    pub call_id: String,
    pub request_uri: String,
    /// The transport source address of the INVITE.
    pub source: SocketAddr,
    /// The INVITE body (the SDP offer), empty for a late-offer INVITE.
    pub sdp: Bytes,
}

/// An inbound call not yet answered. Call [`ring`](Self::ring) as often as needed, then exactly
/// one of [`answer`](Self::answer) or [`reject`](Self::reject). Dropping it unanswered rejects
/// the call with 480, so a caller is never left ringing.
#[derive(Debug)]
#[must_use = "an unanswered call is rejected when dropped"]
pub struct IncomingCall {
    pub(crate) info: CallInfo,
    /// What the [`CallRouter`](super::CallRouter) answered when it accepted the call.
    pub(crate) route: super::RouteId,
    pub(crate) inner: Handle,
}

#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) leg: LegId,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) events: mpsc::UnboundedReceiver<CallEvent>,
    /// Whether dropping the handle should still tell the driver (reject/hang up).
    pub(crate) live: bool,
}

impl Handle {
    fn send(&self, command: Command) -> Result<(), EndpointGone> {
        self.commands.send(command).map_err(|_| EndpointGone)
    }
}

impl IncomingCall {
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The id the [`CallRouter`](super::CallRouter) returned for this call's Request-URI: the
    /// call was routed once, at the edge.
    pub fn route(&self) -> super::RouteId {
        self.route
    }

    /// Sends a provisional response (180 Ringing, 183 Session Progress with early media SDP).
    /// `status` outside 101..=199 is sent as 180.
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn ring(&self, status: u16, sdp: Option<Bytes>) -> Result<(), EndpointGone> {
        let status = if (101..200).contains(&status) {
            status
        } else {
            180
        };
        self.inner.send(Command::Ring {
            leg: self.inner.leg,
            status,
            sdp,
        })
    }

    /// Answers 200 OK with `sdp`. The endpoint retransmits the 200 until the ACK arrives; the
    /// returned [`Call`] then reports [`CallEvent::Confirmed`], or [`CallEvent::AckTimeout`]
    /// after 64·T1 (and sends BYE itself). If the caller had already cancelled, the first event
    /// is [`CallEvent::Cancelled`].
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn answer(mut self, sdp: Bytes) -> Result<Call, EndpointGone> {
        self.inner.send(Command::Answer {
            leg: self.inner.leg,
            sdp,
        })?;
        self.inner.live = false;
        let (commands, events) = (self.inner.commands.clone(), take_events(&mut self.inner));
        Ok(Call {
            info: self.info.clone(),
            inner: Handle {
                leg: self.inner.leg,
                commands,
                events,
                live: true,
            },
        })
    }

    /// Rejects with a final status (e.g. 486, 480, 603). Values outside 300..=699 become 500.
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn reject(mut self, status: u16) -> Result<(), EndpointGone> {
        let status = if (300..700).contains(&status) {
            status
        } else {
            500
        };
        self.inner.live = false;
        self.inner.send(Command::Reject {
            leg: self.inner.leg,
            status,
        })
    }

    /// The next event before answering: only [`CallEvent::Cancelled`] is possible here.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is either returned or stays queued.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.inner.events.recv().await
    }
}

fn take_events(handle: &mut Handle) -> mpsc::UnboundedReceiver<CallEvent> {
    let (_, empty) = mpsc::unbounded_channel();
    std::mem::replace(&mut handle.events, empty)
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.live {
            // Best effort: if the driver is gone there is nothing left to clean up.
            let _ = self.commands.send(Command::Hangup { leg: self.leg });
        }
    }
}

/// An answered inbound call (a confirmed or confirming dialog). Dropping it hangs up.
#[derive(Debug)]
pub struct Call {
    info: CallInfo,
    inner: Handle,
}

impl Call {
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The next event of this dialog; `None` once the endpoint has forgotten it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is either returned or stays queued.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.inner.events.recv().await
    }

    /// The SDP the endpoint answers re-INVITEs and UPDATE offers with from now on.
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn set_local_sdp(&self, sdp: Bytes) -> Result<(), EndpointGone> {
        self.inner.send(Command::SetLocalSdp {
            leg: self.inner.leg,
            sdp,
        })
    }

    /// Sends BYE. [`CallEvent::Ended`] follows when it is answered or times out.
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn bye(&mut self) -> Result<(), EndpointGone> {
        self.inner.live = false;
        self.inner.send(Command::Hangup {
            leg: self.inner.leg,
        })
    }
}

/// An outbound leg (we sent the INVITE). Dropping it cancels or hangs up.
#[derive(Debug)]
pub struct OutboundCall {
    pub(crate) call_id: String,
    pub(crate) inner: Handle,
}

impl OutboundCall {
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The next event: [`CallEvent::Provisional`]s, then [`CallEvent::Answered`] or
    /// [`CallEvent::Failed`], then in-dialog events as for [`Call`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is either returned or stays queued.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.inner.events.recv().await
    }

    /// Cancels the INVITE if no final response has arrived yet (the leg then fails with 487 or
    /// [`LegFailure::Timeout`]); if the callee answers anyway, the endpoint ACKs and BYEs it.
    /// After an answer, this is [`bye`](Self::bye).
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn cancel(&mut self) -> Result<(), EndpointGone> {
        self.inner.live = false;
        self.inner.send(Command::Hangup {
            leg: self.inner.leg,
        })
    }

    /// Hangs up an answered leg (BYE); before an answer, this is [`cancel`](Self::cancel).
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn bye(&mut self) -> Result<(), EndpointGone> {
        self.cancel()
    }

    /// The SDP used to answer re-INVITEs and UPDATE offers on this leg.
    ///
    /// # Errors
    ///
    /// [`EndpointGone`] after shutdown.
    pub fn set_local_sdp(&self, sdp: Bytes) -> Result<(), EndpointGone> {
        self.inner.send(Command::SetLocalSdp {
            leg: self.inner.leg,
            sdp,
        })
    }
}
