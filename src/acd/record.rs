//! Turns a finished call's timeline ([`Stamped`] entries of `workflow::call`) into the
//! [`CallRecord`] the store keeps. Pure: names and URIs are looked up in the configuration and
//! agent table the call ran with.

use chrono::{DateTime, Utc};

use crate::acd::agents::AgentId;
use crate::config::model::{AgentGroupId, Config, SipUri, WorkflowId};
use crate::store::{CallOffer, CallOutcome, CallRecord, OfferResult as StoreOfferResult};
use crate::workflow::call::{Because, OfferResult, Outcome, RecordEvent, Stamped};

/// What the call task knows beyond the timeline.
#[derive(Debug, Clone)]
pub(super) struct Leg<'a> {
    pub call_id: &'a str,
    /// The caller's From header value.
    pub caller: &'a str,
    /// The final status rgsd sent the caller (200 once answered, else the rejection).
    pub sip_code: Option<u16>,
}

/// The record of a call that was rejected before the workflow ran.
pub(super) fn rejected(
    config: &Config,
    workflow: WorkflowId,
    leg: &Leg<'_>,
    at: DateTime<Utc>,
) -> CallRecord {
    let wf = config.workflow(workflow);
    CallRecord {
        call_id: leg.call_id.to_owned(),
        workflow: wf.name.clone(),
        workflow_uri: wf.uri.clone(),
        caller: leg.caller.to_owned(),
        arrived_at: at,
        welcome_ended_at: None,
        queue: None,
        queued_at: None,
        answered_at: None,
        ended_at: at,
        outcome: CallOutcome::Rejected,
        agent: None,
        agent_group: None,
        transferred_to: None,
        sip_code: leg.sip_code,
        wait: None,
        talk: None,
        offers: Vec::new(),
        announcements: 0,
        wrap_up: None,
    }
}

/// The record of a call from its timeline. `agent_uri` names the agents of the timeline and
/// `group_name` their groups (by the agent table's stable ids);
/// `ended_at` is used when the timeline has no end (the task stopped early).
pub(super) fn from_timeline(
    config: &Config,
    agent_uri: &dyn Fn(AgentId) -> SipUri,
    group_name: &dyn Fn(AgentGroupId) -> Option<String>,
    workflow: WorkflowId,
    leg: &Leg<'_>,
    timeline: &[Stamped],
    ended_at: DateTime<Utc>,
) -> CallRecord {
    let mut record = rejected(config, workflow, leg, ended_at);
    record.outcome = CallOutcome::Failed;
    if let Some(first) = timeline.first() {
        record.arrived_at = first.at;
    }
    // Offers with their group index, result still open.
    let mut offers: Vec<(CallOffer, bool)> = Vec::new();
    let mut answered_group = None;
    let mut transfer_pending = false;
    for s in timeline {
        match &s.event {
            RecordEvent::WelcomeEnded => record.welcome_ended_at = Some(s.at),
            RecordEvent::QueueEntered { queue } => {
                let name = config.queue(*queue).name.clone();
                if transfer_pending {
                    record.transferred_to = Some(name.clone());
                }
                transfer_pending = false;
                record.queue = Some(name);
                record.queued_at.get_or_insert(s.at);
            }
            RecordEvent::Overflowed { .. } | RecordEvent::QueueTimedOut { .. } => {
                transfer_pending = true;
            }
            RecordEvent::Offered { agent, group } => offers.push((
                CallOffer {
                    agent: agent_uri(*agent),
                    agent_group: group_name(*group),
                    offered_at: s.at,
                    result: StoreOfferResult::Cancelled,
                    sip_code: None,
                },
                false,
            )),
            RecordEvent::OfferEnded { agent, result } => {
                let uri = agent_uri(*agent);
                if let Some((offer, done)) = offers
                    .iter_mut()
                    .rev()
                    .find(|(o, done)| !done && o.agent == uri)
                {
                    *done = true;
                    (offer.result, offer.sip_code) = match result {
                        OfferResult::Answered => (StoreOfferResult::Answered, Some(200)),
                        OfferResult::Refused(status) => {
                            (StoreOfferResult::Declined, Some(status.0))
                        }
                        OfferResult::Failed => (StoreOfferResult::Failed, None),
                        OfferResult::NoAnswer => (StoreOfferResult::NoAnswer, None),
                        OfferResult::Cancelled => (StoreOfferResult::Cancelled, None),
                    };
                    if *result == OfferResult::Answered {
                        record.answered_at = Some(s.at);
                        record.agent = Some(uri);
                        answered_group.clone_from(&offer.agent_group);
                    }
                }
            }
            RecordEvent::ForwardStarted { to } => {
                record.transferred_to = Some(to.to_string());
                transfer_pending = false;
            }
            RecordEvent::ForwardAnswered { .. } => record.answered_at = Some(s.at),
            RecordEvent::Ended(outcome) => {
                record.ended_at = s.at;
                record.outcome = outcome_of(outcome);
            }
            RecordEvent::Arrived { .. }
            | RecordEvent::Schedule(_)
            | RecordEvent::Asked { .. }
            | RecordEvent::Key { .. }
            | RecordEvent::NoInput { .. }
            | RecordEvent::Waiting { .. }
            | RecordEvent::ForwardFailed { .. } => {}
        }
    }
    record.agent_group = answered_group;
    record.offers = offers.into_iter().map(|(o, _)| o).collect();
    record.wait = record.queued_at.map(|q| {
        let until = record.answered_at.unwrap_or(record.ended_at);
        (until - q).to_std().unwrap_or_default()
    });
    record.talk = record
        .answered_at
        .map(|a| (record.ended_at - a).to_std().unwrap_or_default());
    record
}

fn by_reason(because: &Because, otherwise: CallOutcome) -> CallOutcome {
    match because {
        Because::OutOfHours => CallOutcome::OutOfHours,
        Because::Holiday(_) => CallOutcome::Holiday,
        Because::QueueTimeout => CallOutcome::QueueTimedOut,
        Because::Overflow => CallOutcome::Overflowed,
        Because::IvrAnswer
        | Because::IvrAttempts
        | Because::NoAgents
        | Because::QueueLoop
        | Because::Start => otherwise,
    }
}

/// The report's outcome for the state machine's outcome.
pub(super) fn outcome_of(outcome: &Outcome) -> CallOutcome {
    match outcome {
        Outcome::Answered { .. } => CallOutcome::Answered,
        Outcome::Forwarded { because, .. } => by_reason(because, CallOutcome::Forwarded),
        Outcome::ForwardFailed { because, .. } => by_reason(because, CallOutcome::Failed),
        Outcome::Disconnected { because } => by_reason(because, CallOutcome::Disconnected),
        Outcome::AbandonedInAnnouncement { because } => match because {
            Because::OutOfHours | Because::Holiday(_) => by_reason(because, CallOutcome::Abandoned),
            _ => CallOutcome::Abandoned,
        },
        Outcome::AbandonedInWelcome
        | Outcome::AbandonedInIvr
        | Outcome::AbandonedInQueue
        | Outcome::AbandonedWhileForwarding => CallOutcome::Abandoned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::agents::AgentTable;
    use crate::config::model::{ActionTarget, AgentGroupId, Participation, QueueId, RoutingMethod};
    use crate::workflow::call::SipStatus;
    use crate::workflow::testing::{add_group, add_queue, add_workflow, config, t0, utc0};

    fn at(secs: i64) -> DateTime<Utc> {
        utc0() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn offers_answer_wait_and_talk_come_from_the_timeline() {
        let mut c = config();
        let g = add_group(
            &mut c,
            RoutingMethod::Serial,
            Participation::Informal,
            20,
            &["a0", "a1"],
        );
        add_queue(&mut c, &[g]);
        let wf = add_workflow(
            &mut c,
            crate::config::model::WorkflowKind::HuntGroup,
            ActionTarget::Queue(QueueId(0)),
        );
        let table = AgentTable::from_config(&c, t0());
        let (a0, a1) = (AgentId(0), AgentId(1));
        let stamp = |s, event| Stamped { at: at(s), event };
        let timeline = vec![
            stamp(0, RecordEvent::Arrived { workflow: wf }),
            stamp(1, RecordEvent::QueueEntered { queue: QueueId(0) }),
            stamp(
                1,
                RecordEvent::Offered {
                    agent: a0,
                    group: AgentGroupId(0),
                },
            ),
            stamp(
                3,
                RecordEvent::OfferEnded {
                    agent: a0,
                    result: OfferResult::Refused(SipStatus(486)),
                },
            ),
            stamp(
                3,
                RecordEvent::Offered {
                    agent: a1,
                    group: AgentGroupId(0),
                },
            ),
            stamp(
                5,
                RecordEvent::OfferEnded {
                    agent: a1,
                    result: OfferResult::Answered,
                },
            ),
            stamp(65, RecordEvent::Ended(Outcome::Answered { agent: a1 })),
        ];
        let leg = Leg {
            call_id: "c1",
            caller: "<sip:bob@x>",
            sip_code: Some(200),
        };
        let uri = |a: AgentId| table.uri(a).unwrap().clone();
        let group = |g| table.group_name(g).map(str::to_owned);
        let r = from_timeline(&c, &uri, &group, wf, &leg, &timeline, at(99));
        assert_eq!(r.outcome, CallOutcome::Answered);
        assert_eq!(r.queued_at, Some(at(1)));
        assert_eq!(r.answered_at, Some(at(5)));
        assert_eq!(r.ended_at, at(65));
        assert_eq!(r.wait, Some(std::time::Duration::from_secs(4)));
        assert_eq!(r.talk, Some(std::time::Duration::from_secs(60)));
        assert_eq!(
            r.agent.as_ref().map(|u| u.as_str()),
            Some("sip:a1@127.0.0.1")
        );
        assert_eq!(r.offers.len(), 2);
        assert_eq!(r.offers[0].result, StoreOfferResult::Declined);
        assert_eq!(r.offers[0].sip_code, Some(486));
        assert_eq!(r.offers[1].result, StoreOfferResult::Answered);
        assert_eq!(r.agent_group, r.offers[1].agent_group);
    }

    #[test]
    fn outcomes_follow_the_reason() {
        assert_eq!(
            outcome_of(&Outcome::Disconnected {
                because: Because::OutOfHours
            }),
            CallOutcome::OutOfHours
        );
        assert_eq!(
            outcome_of(&Outcome::Disconnected {
                because: Because::IvrAttempts
            }),
            CallOutcome::Disconnected
        );
        assert_eq!(
            outcome_of(&Outcome::AbandonedInQueue),
            CallOutcome::Abandoned
        );
    }
}
