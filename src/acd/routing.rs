//! Routing decisions: which agents of one group to offer a call to, by the group's method.
//!
//! [`pick`] is pure apart from reading the agent table's atomics: it writes nothing, reads no
//! clock and claims nobody. The queue owner claims what it picked
//! ([`AgentTable::claim`](super::agents::AgentTable::claim)) and, if another queue won an agent in
//! between, picks again with that agent in [`Exclusions::lost`].
//!
//! Eligibility (`docs/behaviour.md`, Agent groups), for every method but attendant: in the group
//! (signed in, for formal groups), free in the table (not on an rgsd call, not ringing for another
//! call), not inside the ringback grace period for *this* call, and not already tried in this pass
//! of the group. Attendant rings every signed-in member, busy ones too, but none in wrap-up.
//!
//! | method | picks | next after the alert time |
//! |---|---|---|
//! | serial | the first eligible member in list order | the next member, then the next group |
//! | round robin | the first eligible member after the group's position (the member offered the group's last call) | the same rule again, then the next group |
//! | longest idle | the eligible member idle longest (ties: list order) | the next longest, then the next group |
//! | parallel | every eligible member | the next group |
//! | attendant | every signed-in reachable member not in wrap-up | the next group |

use std::time::Instant;

use crate::acd::agents::{AgentId, AgentTable, GroupMembers};
use crate::config::model::RoutingMethod;

/// An agent who refused or failed this call: not offered it again before `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub agent: AgentId,
    pub until: Instant,
}

/// What to leave out for this call.
#[derive(Debug, Clone, Copy)]
pub struct Exclusions<'a> {
    /// Offered this call already in the current pass of this group.
    pub tried: &'a [AgentId],
    /// Picked a moment ago but claimed by another queue first.
    pub lost: &'a [AgentId],
    /// Ringback grace periods of this call.
    pub refused: &'a [Refusal],
    /// To judge the grace periods.
    pub now: Instant,
}

impl Exclusions<'_> {
    /// Nothing excluded (a call's first pick).
    pub fn none(now: Instant) -> Exclusions<'static> {
        Exclusions {
            tried: &[],
            lost: &[],
            refused: &[],
            now,
        }
    }

    /// Whether `agent` is left out for this call.
    pub fn excludes(&self, agent: AgentId) -> bool {
        self.tried.contains(&agent)
            || self.lost.contains(&agent)
            || self
                .refused
                .iter()
                .any(|r| r.agent == agent && r.until > self.now)
    }
}

/// The agents to ring now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Serial, round robin, longest idle: one agent, at `index` in the group's member list.
    One { agent: AgentId, index: usize },
    /// Parallel, attendant: all of them at once (never empty).
    Many(Vec<AgentId>),
    /// Nobody eligible in this group right now: skip to the next group at once.
    Nobody,
}

/// Picks the agents of `group` to offer a call to, by the group's routing method.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use rgsd::acd::agents::{AgentTable, CallKey};
/// use rgsd::acd::routing::{pick, Exclusions, Pick};
/// use rgsd::config::model::*;
/// # let mut config = Config {
/// #     source: "/x".into(),
/// #     server: Server {
/// #         sip_listen: vec![], advertised_host: "127.0.0.1".into(), rtp_ports: 1..=2,
/// #         http_listen: "127.0.0.1:0".parse().unwrap(),
/// #         database: DatabaseUrl::Sqlite("/x.db".into()), default_music_on_hold: None,
/// #         agent_ringback_grace_period: Duration::from_secs(60), trusted_peers: vec![],
/// #         drain_limit: Duration::from_secs(30),
/// #         call_journal: "rgsd.journal".into(),
/// #         max_calls: 1, call_context: false, sip_rate_limit: None, dns_servers: vec![],
/// #         outbound_proxy: None, tls: Default::default(),
/// #         srtp: SrtpPolicy::Off, agent_srtp: SrtpPolicy::Off, allow_sdes_over_plain_sip: false,
/// #         session_expires: Some(Duration::from_secs(1800)), min_se: Duration::from_secs(90),
/// #     },
/// #     registrations: vec![], agent_groups: vec![], queues: vec![], hours: vec![],
/// #     holiday_sets: vec![], workflows: vec![], prompts: vec![],
/// # };
/// config.agent_groups.push(AgentGroup {
///     name: "Sales".into(),
///     description: None,
///     participation: Participation::Informal,
///     routing: RoutingMethod::Serial,
///     alert_time: Duration::from_secs(20),
///     wrap_up: Duration::ZERO,
///     agents: vec![SipUri("sip:alice@127.0.0.1".into()), SipUri("sip:bob@127.0.0.1".into())],
/// });
/// # #[allow(clippy::disallowed_methods)] // a doc example needs one real instant
/// let now = Instant::now();
/// let table = AgentTable::from_config(&config, now);
/// let membership = table.membership();
/// let group = membership.group(AgentGroupId(0)).unwrap();
/// let (alice, bob) = (group.members[0], group.members[1]);
///
/// // Serial starts at the top of the list.
/// assert_eq!(pick(group, &table, &Exclusions::none(now)), Pick::One { agent: alice, index: 0 });
/// // Alice is ringing for another call: she is skipped.
/// assert!(table.claim(alice, CallKey(1)));
/// assert_eq!(pick(group, &table, &Exclusions::none(now)), Pick::One { agent: bob, index: 1 });
/// // Bob too: nobody is eligible, the queue moves on to its next group.
/// assert!(table.claim(bob, CallKey(2)));
/// assert_eq!(pick(group, &table, &Exclusions::none(now)), Pick::Nobody);
/// ```
pub fn pick(group: &GroupMembers, table: &AgentTable, skip: &Exclusions<'_>) -> Pick {
    let view = table.routing_view();
    let eligible = |index: usize, agent: AgentId| {
        view.is_free(agent) && table.is_member_signed_in(group, index) && !skip.excludes(agent)
    };
    let members = &group.members;
    match group.routing {
        RoutingMethod::Serial => members
            .iter()
            .enumerate()
            .find(|(i, a)| eligible(*i, **a))
            .map_or(Pick::Nobody, |(index, &agent)| Pick::One { agent, index }),
        RoutingMethod::RoundRobin => {
            let n = members.len();
            let start = table.round_robin_last(group).map_or(0, |last| last + 1);
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| eligible(i, members[i]))
                .map_or(Pick::Nobody, |index| Pick::One {
                    agent: members[index],
                    index,
                })
        }
        RoutingMethod::LongestIdle => {
            // The eligible member idle longest; ties go to list order (only a strictly longer
            // idle time replaces the best so far). The per-call exclusions are checked only for
            // a member that would become the best: the scan over a large group stays cheap.
            let mut best: Option<(u64, usize, AgentId)> = None;
            for (index, &agent) in members.iter().enumerate() {
                if !view.is_free(agent) || !table.is_member_signed_in(group, index) {
                    continue;
                }
                let since = view.idle_since(agent);
                if best.is_some_and(|(b, _, _)| since >= b) || skip.excludes(agent) {
                    continue;
                }
                best = Some((since, index, agent));
            }
            best.map_or(Pick::Nobody, |(_, index, agent)| Pick::One { agent, index })
        }
        RoutingMethod::Parallel => many(
            members
                .iter()
                .enumerate()
                .filter(|(i, a)| eligible(*i, **a))
                .map(|(_, a)| *a)
                .collect(),
        ),
        RoutingMethod::Attendant => many(
            members
                .iter()
                .enumerate()
                .filter(|(i, a)| table.is_member_signed_in(group, *i) && !table.in_wrap_up(**a))
                .map(|(_, a)| *a)
                .collect(),
        ),
    }
}

fn many(agents: Vec<AgentId>) -> Pick {
    if agents.is_empty() {
        Pick::Nobody
    } else {
        Pick::Many(agents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::agents::CallKey;
    use crate::config::model::{AgentGroupId, Participation};
    use crate::workflow::testing::{add_group, config, t0};
    use std::time::Duration;

    const G: AgentGroupId = AgentGroupId(0);

    fn table(
        routing: RoutingMethod,
        participation: Participation,
        n: usize,
    ) -> (AgentTable, Instant) {
        let mut c = config();
        let names: Vec<String> = (0..n).map(|i| format!("agent{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        add_group(&mut c, routing, participation, 20, &names);
        let now = t0();
        (AgentTable::from_config(&c, now), now)
    }

    fn one(p: Pick) -> u32 {
        match p {
            Pick::One { agent, .. } => agent.0,
            other => panic!("expected one agent, got {other:?}"),
        }
    }

    /// Offer, claim, answer and end a call the way the queue and driver do.
    fn take(t: &AgentTable, p: &Pick, call: u32, end: Instant) {
        if let Pick::One { agent, index } = p {
            assert!(t.claim(*agent, CallKey(call)));
            t.set_round_robin_last(t.membership().group(G).unwrap(), *index);
            t.answered(*agent, CallKey(call));
            t.call_ended(*agent, end);
        }
    }

    #[test]
    fn serial_always_from_the_top() {
        let (t, now) = table(RoutingMethod::Serial, Participation::Informal, 3);
        let m = t.membership();
        let g = m.group(G).unwrap();
        for call in 0..4 {
            assert_eq!(one(pick(g, &t, &Exclusions::none(now))), 0, "call {call}");
        }
        let tried = [AgentId(0)];
        let skip = Exclusions {
            tried: &tried,
            ..Exclusions::none(now)
        };
        assert_eq!(one(pick(g, &t, &skip)), 1, "next agent after no answer");
        let tried = [AgentId(0), AgentId(1), AgentId(2)];
        let skip = Exclusions {
            tried: &tried,
            ..Exclusions::none(now)
        };
        assert_eq!(
            pick(g, &t, &skip),
            Pick::Nobody,
            "after the last agent: next group"
        );
    }

    #[test]
    fn round_robin_over_three_agents_for_six_calls_is_two_each() {
        let (t, now) = table(RoutingMethod::RoundRobin, Participation::Informal, 3);
        let m = t.membership();
        let g = m.group(G).unwrap();
        let mut counts = [0; 3];
        let mut order = vec![];
        for call in 0..6 {
            let p = pick(g, &t, &Exclusions::none(now));
            let agent = one(p.clone());
            counts[agent as usize] += 1;
            order.push(agent);
            take(&t, &p, call, now + Duration::from_secs(u64::from(call)));
        }
        assert_eq!(counts, [2, 2, 2]);
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn round_robin_starts_after_the_last_offered_and_skips_busy() {
        let (t, now) = table(RoutingMethod::RoundRobin, Participation::Informal, 4);
        let m = t.membership();
        let g = m.group(G).unwrap();
        t.set_round_robin_last(g, 1);
        assert!(t.claim(AgentId(2), CallKey(99)));
        assert_eq!(
            one(pick(g, &t, &Exclusions::none(now))),
            3,
            "2 is busy: skipped"
        );
        t.set_round_robin_last(g, 3);
        assert_eq!(one(pick(g, &t, &Exclusions::none(now))), 0, "wraps around");
        // A call's own pass continues after its tried agents.
        let tried = [AgentId(0)];
        let skip = Exclusions {
            tried: &tried,
            ..Exclusions::none(now)
        };
        assert_eq!(one(pick(g, &t, &skip)), 1);
    }

    #[test]
    fn longest_idle_first_then_next_longest() {
        let (t, now) = table(RoutingMethod::LongestIdle, Participation::Informal, 3);
        let m = t.membership();
        let g = m.group(G).unwrap();
        // All idle since start-up: list order breaks the tie.
        assert_eq!(one(pick(g, &t, &Exclusions::none(now))), 0);
        // Agent 0 ends a call at +10 s, agent 2 at +5 s: agent 1 is idle longest, then 2, then 0.
        for (agent, secs) in [(0u32, 10u64), (2, 5)] {
            t.answered(AgentId(agent), CallKey(agent));
            t.call_ended(AgentId(agent), now + Duration::from_secs(secs));
        }
        assert_eq!(one(pick(g, &t, &Exclusions::none(now))), 1);
        let tried = [AgentId(1)];
        let skip = Exclusions {
            tried: &tried,
            ..Exclusions::none(now)
        };
        assert_eq!(one(pick(g, &t, &skip)), 2);
        let tried = [AgentId(1), AgentId(2)];
        let skip = Exclusions {
            tried: &tried,
            ..Exclusions::none(now)
        };
        assert_eq!(one(pick(g, &t, &skip)), 0);
    }

    #[test]
    fn longest_idle_ties_go_to_list_order_after_the_excluded_and_busy() {
        let (t, now) = table(RoutingMethod::LongestIdle, Participation::Informal, 5);
        let m = t.membership();
        let g = m.group(G).unwrap();
        // All idle since start-up. Agent 0 refused this call, agent 1 rings for another.
        assert!(t.claim(AgentId(1), CallKey(99)));
        let refused = [Refusal {
            agent: AgentId(0),
            until: now + Duration::from_secs(10),
        }];
        let skip = Exclusions {
            refused: &refused,
            ..Exclusions::none(now)
        };
        assert_eq!(one(pick(g, &t, &skip)), 2);
        // Agent 3 has been idle longer than everyone else (its clock is older): it wins.
        for agent in [0u32, 2, 4] {
            t.answered(AgentId(agent), CallKey(agent));
            t.call_ended(AgentId(agent), now + Duration::from_secs(1));
        }
        assert_eq!(one(pick(g, &t, &skip)), 3);
    }

    #[test]
    fn longest_idle_is_fair_over_many_calls() {
        let (t, now) = table(RoutingMethod::LongestIdle, Participation::Informal, 4);
        let m = t.membership();
        let g = m.group(G).unwrap();
        let mut counts = [0; 4];
        for call in 0..40u32 {
            let p = pick(g, &t, &Exclusions::none(now));
            counts[one(p.clone()) as usize] += 1;
            take(&t, &p, call, now + Duration::from_secs(u64::from(call) + 1));
        }
        assert_eq!(counts, [10, 10, 10, 10]);
    }

    #[test]
    fn parallel_rings_every_eligible_agent() {
        let (t, now) = table(RoutingMethod::Parallel, Participation::Informal, 4);
        let m = t.membership();
        let g = m.group(G).unwrap();
        assert!(t.claim(AgentId(1), CallKey(5)));
        t.answered(AgentId(3), CallKey(4));
        assert_eq!(
            pick(g, &t, &Exclusions::none(now)),
            Pick::Many(vec![AgentId(0), AgentId(2)])
        );
        assert!(t.claim(AgentId(0), CallKey(6)));
        assert!(t.claim(AgentId(2), CallKey(6)));
        assert_eq!(pick(g, &t, &Exclusions::none(now)), Pick::Nobody);
    }

    #[test]
    fn attendant_rings_busy_agents_but_not_signed_out_ones() {
        let (t, now) = table(RoutingMethod::Attendant, Participation::Formal, 4);
        let m = t.membership();
        let g = m.group(G).unwrap();
        assert_eq!(
            pick(g, &t, &Exclusions::none(now)),
            Pick::Nobody,
            "nobody signed in"
        );
        for a in 0..3 {
            t.sign_in(AgentId(a), G, now).unwrap();
        }
        t.answered(AgentId(0), CallKey(1)); // busy
        assert!(t.claim(AgentId(1), CallKey(2))); // ringing for another call
        // Agent 3 stays signed out.
        let refused = [Refusal {
            agent: AgentId(2),
            until: now + Duration::from_secs(60),
        }];
        let skip = Exclusions {
            refused: &refused,
            ..Exclusions::none(now)
        };
        assert_eq!(
            pick(g, &t, &skip),
            Pick::Many(vec![AgentId(0), AgentId(1), AgentId(2)]),
            "busy, ringing and refused agents are rung; signed-out ones are not"
        ); // An agent in wrap-up is not rung, even by an attendant group.
        t.answered(AgentId(2), CallKey(3));
        assert!(
            t.call_ended_then(AgentId(2), now, Duration::from_secs(30))
                .is_some()
        );
        assert_eq!(
            pick(g, &t, &skip),
            Pick::Many(vec![AgentId(0), AgentId(1)]),
            "the agent in wrap-up is left out"
        );
    }

    #[test]
    fn formal_groups_only_offer_signed_in_agents() {
        let (t, now) = table(RoutingMethod::Serial, Participation::Formal, 3);
        let m = t.membership();
        let g = m.group(G).unwrap();
        assert_eq!(pick(g, &t, &Exclusions::none(now)), Pick::Nobody);
        t.sign_in(AgentId(2), G, now).unwrap();
        assert_eq!(one(pick(g, &t, &Exclusions::none(now))), 2);
        t.sign_out(AgentId(2), G).unwrap();
        assert_eq!(pick(g, &t, &Exclusions::none(now)), Pick::Nobody);
    }

    #[test]
    fn busy_and_ringing_agents_are_skipped() {
        let (t, now) = table(RoutingMethod::Serial, Participation::Informal, 3);
        let m = t.membership();
        let g = m.group(G).unwrap();
        t.answered(AgentId(0), CallKey(1));
        assert!(t.claim(AgentId(1), CallKey(2)));
        assert_eq!(one(pick(g, &t, &Exclusions::none(now))), 2);
    }

    #[test]
    fn ringback_grace_is_per_call_and_expires() {
        for routing in [
            RoutingMethod::Serial,
            RoutingMethod::RoundRobin,
            RoutingMethod::LongestIdle,
            RoutingMethod::Parallel,
        ] {
            let (t, now) = table(routing, Participation::Informal, 2);
            let m = t.membership();
            let g = m.group(G).unwrap();
            let refused = [Refusal {
                agent: AgentId(0),
                until: now + Duration::from_secs(60),
            }];
            let during = Exclusions {
                refused: &refused,
                ..Exclusions::none(now + Duration::from_secs(59))
            };
            let after = Exclusions {
                refused: &refused,
                ..Exclusions::none(now + Duration::from_secs(60))
            };
            let agents = |p: Pick| match p {
                Pick::One { agent, .. } => vec![agent],
                Pick::Many(v) => v,
                Pick::Nobody => vec![],
            };
            assert_eq!(
                agents(pick(g, &t, &during)),
                vec![AgentId(1)],
                "{routing:?} during grace"
            );
            assert!(
                agents(pick(g, &t, &after)).contains(&AgentId(0)),
                "{routing:?} after grace"
            );
            // Another call (no refusals) may be offered agent 0 at once.
            assert!(agents(pick(g, &t, &Exclusions::none(now))).contains(&AgentId(0)));
        }
    }

    #[test]
    fn lost_claims_are_skipped() {
        let (t, now) = table(RoutingMethod::LongestIdle, Participation::Informal, 2);
        let m = t.membership();
        let g = m.group(G).unwrap();
        let lost = [AgentId(0)];
        let skip = Exclusions {
            lost: &lost,
            ..Exclusions::none(now)
        };
        assert_eq!(one(pick(g, &t, &skip)), 1);
    }
}
