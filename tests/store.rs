//! The store contract: one suite of assertions ([`contract`]) that every backend must pass, run
//! on SQLite always and on PostgreSQL when `RGSD_TEST_PG_URL` names a server (for example
//! `postgres://postgres@127.0.0.1:5432/test`). Each PostgreSQL run creates a database of its own
//! (`rgsd_test_<random>`) and drops it afterwards, so parallel runs and a reused CI server do not
//! see each other.

// The helpers below are test code too, but clippy's `allow-unwrap-in-tests` only covers
// `#[test]` functions: a failed `unwrap` is how a test fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rgsd::clock::ManualClock;
use rgsd::config::model::{AgentGroup, DatabaseUrl, Participation, RoutingMethod, Secret, SipUri};
use rgsd::store::{
    AgentFields, AgentId, CallOffer, CallOutcome, CallRecord, ConnectOptions, Entity, GroupId,
    GroupSource, OfferResult, PasswordHash, RecordWriter, Role, SignIn, Store, StoreError,
    WriterOptions, WriterStatus,
};
use sqlx::Connection;

mod common;
use common::pg::ScratchDatabase;

fn uri(s: &str) -> SipUri {
    SipUri(format!("sip:{s}@127.0.0.1"))
}

/// 2026-11-20T10:00:00Z plus `ms`.
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_687_200_000 + ms).unwrap()
}

fn group(name: &str, participation: Participation, agents: &[&str]) -> AgentGroup {
    AgentGroup {
        name: name.into(),
        description: Some(format!("{name} team")),
        participation,
        routing: RoutingMethod::Serial,
        alert_time: Duration::from_secs(20),
        wrap_up: Duration::ZERO,
        agents: agents.iter().map(|a| uri(a)).collect(),
    }
}

fn agent(name: &str, display: Option<&str>) -> AgentFields {
    AgentFields {
        sip_uri: uri(name),
        display_name: display.map(str::to_owned),
        wrap_up: None,
    }
}

fn call(n: i64, arrived_at: DateTime<Utc>) -> CallRecord {
    CallRecord {
        call_id: format!("{n}-a84b4c76e66710@127.0.0.1"),
        workflow: "Sales".into(),
        workflow_uri: uri("sales"),
        caller: format!("sip:+1555000{n:04}@trunk.example"),
        arrived_at,
        welcome_ended_at: Some(arrived_at + chrono::Duration::milliseconds(3_250)),
        queue: Some("Sales queue".into()),
        queued_at: Some(arrived_at + chrono::Duration::milliseconds(3_251)),
        answered_at: Some(arrived_at + chrono::Duration::milliseconds(30_000)),
        ended_at: arrived_at + chrono::Duration::milliseconds(95_000),
        outcome: CallOutcome::Answered,
        agent: Some(uri("bob")),
        agent_group: Some("Sales agents".into()),
        transferred_to: None,
        sip_code: Some(200),
        wait: Some(Duration::from_millis(26_749)),
        talk: Some(Duration::from_millis(65_000)),
        offers: vec![
            CallOffer {
                agent: uri("alice"),
                agent_group: Some("Sales agents".into()),
                offered_at: arrived_at + chrono::Duration::milliseconds(3_300),
                result: OfferResult::NoAnswer,
                sip_code: Some(487),
            },
            CallOffer {
                agent: uri("bob"),
                agent_group: Some("Sales agents".into()),
                offered_at: arrived_at + chrono::Duration::milliseconds(23_300),
                result: OfferResult::Answered,
                sip_code: Some(200),
            },
        ],
        // Round-tripped like the rest: what the caller heard, the wrap-up that followed.
        announcements: 3,
        wrap_up: Some(Duration::from_secs(30)),
    }
}

/// Every assertion about the store, on a fresh, empty, unmigrated database.
async fn contract(store: Store) {
    let clock = Arc::new(ManualClock::new(at(0)));
    let store = store.with_clock(clock.clone());

    // Migrations: applying them twice is a no-op.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();

    agents(&store, &clock).await;
    groups(&store, &clock).await;
    sign_in(&store, &clock).await;
    config_sync(&store, &clock).await;
    call_records(&store).await;
    call_records_in_batches(&store).await;
    tokens(&store, &clock).await;
    audit(&store, &clock).await;
    users_and_sessions(&store, &clock).await;
    objects(&store, &clock).await;
    deleting_an_agent_removes_its_memberships_and_sign_ins(&store).await;
    concurrent_writers_all_succeed(&store).await;
}

async fn agents(store: &Store, clock: &ManualClock) {
    let alice = store
        .create_agent(&agent("alice", Some("Alice")))
        .await
        .unwrap();
    assert_eq!(alice.sip_uri, uri("alice"));
    assert_eq!(alice.display_name.as_deref(), Some("Alice"));
    assert_eq!((alice.created_at, alice.updated_at), (at(0), at(0)));

    let bob = store.create_agent(&agent("bob", None)).await.unwrap();
    assert_ne!(alice.id, bob.id);

    // A duplicate URI is a conflict, not a database failure.
    let dup = store.create_agent(&agent("alice", Some("Other"))).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(Entity::Agent))),
        "{dup:?}"
    );

    assert_eq!(store.get_agent(alice.id).await.unwrap(), alice);
    assert_eq!(store.get_agent_by_uri(&uri("bob")).await.unwrap(), bob);
    assert!(matches!(
        store.get_agent(AgentId(987_654)).await,
        Err(StoreError::NotFound(Entity::Agent))
    ));
    assert!(matches!(
        store.get_agent_by_uri(&uri("nobody")).await,
        Err(StoreError::NotFound(Entity::Agent))
    ));

    clock.advance(Duration::from_secs(60));
    let alice2 = store
        .update_agent(alice.id, &agent("alice", Some("Alice A.")))
        .await
        .unwrap();
    assert_eq!(alice2.display_name.as_deref(), Some("Alice A."));
    assert_eq!((alice2.created_at, alice2.updated_at), (at(0), at(60_000)));

    let taken = store.update_agent(alice.id, &agent("bob", None)).await;
    assert!(
        matches!(taken, Err(StoreError::Conflict(Entity::Agent))),
        "{taken:?}"
    );
    assert!(matches!(
        store
            .update_agent(AgentId(987_654), &agent("zed", None))
            .await,
        Err(StoreError::NotFound(Entity::Agent))
    ));

    let temp = store.create_agent(&agent("temp", None)).await.unwrap();
    store.delete_agent(temp.id).await.unwrap();
    assert!(matches!(
        store.delete_agent(temp.id).await,
        Err(StoreError::NotFound(Entity::Agent))
    ));

    let listed: Vec<SipUri> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.sip_uri)
        .collect();
    assert_eq!(listed, vec![uri("alice"), uri("bob")]);
}

async fn groups(store: &Store, clock: &ManualClock) {
    clock.set(at(100_000));
    // Members keep their order; a URI not seen before becomes an agent.
    let sales = store
        .create_group(&group(
            "Sales agents",
            Participation::Informal,
            &["carol", "alice", "bob"],
        ))
        .await
        .unwrap();
    assert_eq!(sales.source, GroupSource::Api);
    assert_eq!(sales.agents, vec![uri("carol"), uri("alice"), uri("bob")]);
    assert_eq!(sales.routing, RoutingMethod::Serial);
    assert_eq!(sales.alert_time, Duration::from_secs(20));
    assert_eq!(sales.created_at, at(100_000));
    assert_eq!(
        sales.to_agent_group(),
        group(
            "Sales agents",
            Participation::Informal,
            &["carol", "alice", "bob"]
        )
    );
    let carol = store.get_agent_by_uri(&uri("carol")).await.unwrap();
    assert_eq!(carol.display_name, None);

    let dup = store
        .create_group(&group("Sales agents", Participation::Formal, &[]))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(Entity::AgentGroup))),
        "{dup:?}"
    );

    // A URI listed twice is refused, and the whole creation is rolled back.
    let twice = store
        .create_group(&group("Twice", Participation::Formal, &["alice", "alice"]))
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(Entity::Membership))),
        "{twice:?}"
    );
    assert!(matches!(
        store.get_group_by_name("Twice").await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));

    clock.set(at(110_000));
    let mut changed = group("Sales team", Participation::Informal, &["bob", "carol"]);
    changed.routing = RoutingMethod::RoundRobin;
    changed.alert_time = Duration::from_millis(12_500);
    changed.description = None;
    let updated = store.update_group(sales.id, &changed).await.unwrap();
    assert_eq!(updated.to_agent_group(), changed);
    assert_eq!(updated.source, GroupSource::Api);
    assert_eq!(
        (updated.created_at, updated.updated_at),
        (at(100_000), at(110_000))
    );
    assert!(matches!(
        store.get_group_by_name("Sales agents").await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));

    let reordered = store
        .set_group_members(sales.id, &[uri("alice"), uri("carol"), uri("bob")])
        .await
        .unwrap();
    assert_eq!(
        reordered.agents,
        vec![uri("alice"), uri("carol"), uri("bob")]
    );
    assert_eq!(store.get_group(sales.id).await.unwrap(), reordered);
    assert_eq!(
        store.get_group_by_name("Sales team").await.unwrap(),
        reordered
    );

    assert!(matches!(
        store.set_group_members(GroupId(987_654), &[]).await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));
    assert!(matches!(
        store.update_group(GroupId(987_654), &changed).await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));
    assert!(matches!(
        store.get_group(GroupId(987_654)).await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));

    let other = store
        .create_group(&group("Other", Participation::Formal, &["bob"]))
        .await
        .unwrap();
    let rename = store
        .update_group(other.id, &group("Sales team", Participation::Formal, &[]))
        .await;
    assert!(
        matches!(rename, Err(StoreError::Conflict(Entity::AgentGroup))),
        "{rename:?}"
    );
    store.delete_group(other.id).await.unwrap();
    assert!(matches!(
        store.delete_group(other.id).await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));
    // Deleting a group keeps its agents.
    store.get_agent_by_uri(&uri("bob")).await.unwrap();

    let names: Vec<(String, Vec<SipUri>)> = store
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.name, g.agents))
        .collect();
    assert_eq!(
        names,
        vec![(
            "Sales team".to_owned(),
            vec![uri("alice"), uri("carol"), uri("bob")]
        )]
    );
}

async fn sign_in(store: &Store, clock: &ManualClock) {
    clock.set(at(200_000));
    let support = store
        .create_group(&group("Support", Participation::Formal, &["alice", "bob"]))
        .await
        .unwrap();

    assert!(store.sign_in(&uri("alice"), "Support").await.unwrap());
    clock.set(at(201_000));
    // Already signed in: no change, and `since` stays the first sign-in.
    assert!(!store.sign_in(&uri("alice"), "Support").await.unwrap());
    assert_eq!(
        store.signed_in_groups(&uri("alice")).await.unwrap(),
        vec!["Support".to_owned()]
    );
    assert_eq!(
        store.sign_in_state().await.unwrap(),
        vec![SignIn {
            agent: uri("alice"),
            group: "Support".into(),
            since: at(200_000),
        }]
    );
    // Never signed in: signing out changes nothing.
    assert!(!store.sign_out(&uri("bob"), "Support").await.unwrap());
    assert!(
        store
            .signed_in_groups(&uri("bob"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .signed_in_groups(&uri("nobody"))
            .await
            .unwrap()
            .is_empty()
    );

    let not_member = store.sign_in(&uri("carol"), "Support").await;
    assert!(
        matches!(not_member, Err(StoreError::NotFound(Entity::Membership))),
        "{not_member:?}"
    );
    let no_agent = store.sign_in(&uri("nobody"), "Support").await;
    assert!(
        matches!(no_agent, Err(StoreError::NotFound(Entity::Agent))),
        "{no_agent:?}"
    );
    let no_group = store.sign_in(&uri("alice"), "Nope").await;
    assert!(
        matches!(no_group, Err(StoreError::NotFound(Entity::AgentGroup))),
        "{no_group:?}"
    );
    let informal = store.sign_in(&uri("alice"), "Sales team").await;
    assert!(
        matches!(&informal, Err(StoreError::InformalGroup { group }) if group == "Sales team"),
        "{informal:?}"
    );

    // A group that turns informal reports no sign-ins; formal again, they count again.
    let mut informal = group("Support", Participation::Informal, &["alice", "bob"]);
    store.update_group(support.id, &informal).await.unwrap();
    assert!(
        store
            .signed_in_groups(&uri("alice"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.sign_in_state().await.unwrap().is_empty());
    informal.participation = Participation::Formal;
    store.update_group(support.id, &informal).await.unwrap();
    assert_eq!(store.sign_in_state().await.unwrap().len(), 1);

    // Reordering members keeps sign-in state; leaving the group drops it.
    store
        .set_group_members(support.id, &[uri("bob"), uri("alice")])
        .await
        .unwrap();
    assert_eq!(
        store.signed_in_groups(&uri("alice")).await.unwrap(),
        vec!["Support".to_owned()]
    );
    store
        .set_group_members(support.id, &[uri("bob")])
        .await
        .unwrap();
    assert!(
        store
            .signed_in_groups(&uri("alice"))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_group_members(support.id, &[uri("bob"), uri("alice")])
        .await
        .unwrap();
    assert!(
        store
            .signed_in_groups(&uri("alice"))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.sign_in(&uri("alice"), "Support").await.unwrap());
    assert!(store.sign_in(&uri("bob"), "Support").await.unwrap());
    clock.set(at(202_000));
    assert!(store.sign_out(&uri("alice"), "Support").await.unwrap());
    assert!(!store.sign_out(&uri("alice"), "Support").await.unwrap());
    assert_eq!(
        store.sign_in_state().await.unwrap(),
        vec![SignIn {
            agent: uri("bob"),
            group: "Support".into(),
            since: at(201_000),
        }]
    );
}

async fn config_sync(store: &Store, clock: &ManualClock) {
    clock.set(at(300_000));
    // An API group that the file will take over, signed-in state included.
    store
        .create_group(&group("Escalation", Participation::Formal, &["dave"]))
        .await
        .unwrap();
    store.sign_in(&uri("dave"), "Escalation").await.unwrap();

    let declared = vec![
        group("Hotline", Participation::Informal, &["erin", "alice"]),
        group("Escalation", Participation::Formal, &["dave", "erin"]),
    ];
    let report = store.sync_config_groups(&declared).await.unwrap();
    assert_eq!(report.created, vec!["Hotline".to_owned()]);
    assert_eq!(report.taken_over, vec!["Escalation".to_owned()]);
    assert!(report.updated.is_empty() && report.retired.is_empty());
    assert_eq!(report.unchanged, 0);
    assert!(report.to_string().contains("1 created"), "{report}");
    let hotline = store.get_group_by_name("Hotline").await.unwrap();
    assert_eq!(hotline.source, GroupSource::Config);
    assert_eq!(hotline.to_agent_group(), declared[0]);
    let escalation = store.get_group_by_name("Escalation").await.unwrap();
    assert_eq!(escalation.source, GroupSource::Config);
    assert_eq!(escalation.to_agent_group(), declared[1]);
    assert_eq!(
        store.signed_in_groups(&uri("dave")).await.unwrap(),
        vec!["Escalation".to_owned()]
    );

    // The same file again changes nothing.
    clock.set(at(301_000));
    let again = store.sync_config_groups(&declared).await.unwrap();
    assert_eq!(again.unchanged, 2);
    assert!(again.created.is_empty() && again.updated.is_empty() && again.taken_over.is_empty());
    assert_eq!(
        store.get_group_by_name("Hotline").await.unwrap().updated_at,
        at(300_000)
    );

    // Hotline changes, Escalation leaves the file: it is retired, not deleted.
    let mut hotline2 = group("Hotline", Participation::Informal, &["alice", "erin"]);
    hotline2.routing = RoutingMethod::Parallel;
    let report = store.sync_config_groups(&[hotline2.clone()]).await.unwrap();
    assert_eq!(report.updated, vec!["Hotline".to_owned()]);
    assert_eq!(report.retired, vec!["Escalation".to_owned()]);
    assert_eq!(
        store
            .get_group_by_name("Hotline")
            .await
            .unwrap()
            .to_agent_group(),
        hotline2
    );
    let retired = store.get_group_by_name("Escalation").await.unwrap();
    assert_eq!(retired.source, GroupSource::Retired);
    assert_eq!(retired.agents, vec![uri("dave"), uri("erin")]);
    assert_eq!(
        store.signed_in_groups(&uri("dave")).await.unwrap(),
        vec!["Escalation".to_owned()]
    );
    // API groups are left alone.
    let support = store.get_group_by_name("Support").await.unwrap();
    assert_eq!(support.source, GroupSource::Api);
    assert_eq!(support.agents, vec![uri("bob"), uri("alice")]);

    // Declared again: restored as a config group, sign-in state intact.
    let report = store
        .sync_config_groups(&[hotline2.clone(), declared[1].clone()])
        .await
        .unwrap();
    assert_eq!(report.updated, vec!["Escalation".to_owned()]);
    assert_eq!(report.unchanged, 1);
    assert_eq!(
        store.get_group_by_name("Escalation").await.unwrap().source,
        GroupSource::Config
    );
    assert_eq!(
        store.signed_in_groups(&uri("dave")).await.unwrap(),
        vec!["Escalation".to_owned()]
    );

    // A bad declaration changes nothing at all.
    let bad = vec![
        group("Brand new", Participation::Informal, &["zoe"]),
        group("Hotline", Participation::Informal, &["alice", "alice"]),
    ];
    let err = store.sync_config_groups(&bad).await;
    assert!(
        matches!(err, Err(StoreError::Conflict(Entity::Membership))),
        "{err:?}"
    );
    assert!(matches!(
        store.get_group_by_name("Brand new").await,
        Err(StoreError::NotFound(Entity::AgentGroup))
    ));
    assert!(matches!(
        store.get_agent_by_uri(&uri("zoe")).await,
        Err(StoreError::NotFound(Entity::Agent))
    ));
    assert_eq!(
        store
            .get_group_by_name("Hotline")
            .await
            .unwrap()
            .to_agent_group(),
        hotline2
    );
}

async fn call_records(store: &Store) {
    let first = call(1, at(1_000_000));
    let mut second = call(2, at(1_000_500));
    second.outcome = CallOutcome::QueueTimedOut;
    second.answered_at = None;
    second.agent = None;
    second.agent_group = None;
    second.transferred_to = Some("sip:voicemail@127.0.0.1".into());
    second.sip_code = None;
    second.talk = None;
    second.welcome_ended_at = None;
    second.offers = vec![];
    let mut late = call(3, at(2_000_000));
    // Added by migration 0004 (the session timer ran out): a value both schemas accept.
    late.outcome = CallOutcome::SessionExpired;

    // Written out of arrival order; read back in arrival order.
    let id_late = store.record_call(&late).await.unwrap();
    let id_second = store.record_call(&second).await.unwrap();
    let id_first = store.record_call(&first).await.unwrap();
    assert_ne!(id_first, id_second);
    // Writing a record again stores nothing new and returns the same id.
    assert_eq!(store.record_call(&first).await.unwrap(), id_first);
    assert_eq!(store.record_call(&late).await.unwrap(), id_late);

    // [from, to): the start is included, the end is not.
    let window = store
        .call_records_between(at(1_000_000), at(2_000_000))
        .await
        .unwrap();
    assert_eq!(window, vec![first.clone(), second.clone()]);
    let all = store
        .call_records_between(at(0), at(3_000_000))
        .await
        .unwrap();
    assert_eq!(all, vec![first, second, late]);
    assert!(
        store
            .call_records_between(at(1_000_501), at(2_000_000))
            .await
            .unwrap()
            .is_empty()
    );
}

/// The record writer's path: many records in one transaction, across the multi-row statements'
/// size limit, with a record already stored and one twice in the batch.
async fn call_records_in_batches(store: &Store) {
    let base = 10_000_000;
    let n = i64::try_from(2 * rgsd::store::BATCH_ROWS + 7).unwrap();
    let mut batch: Vec<CallRecord> = (0..n).map(|i| call(1000 + i, at(base + i * 10))).collect();
    // Each record keeps its own offers: vary their count (0, 1, 2).
    for (i, r) in batch.iter_mut().enumerate() {
        r.offers.truncate(i % 3);
    }
    // One is already stored with different offers: the stored one stays as it is.
    let mut stored_before = batch[5].clone();
    stored_before.offers.clear();
    stored_before.outcome = CallOutcome::Abandoned;
    store.record_call(&stored_before).await.unwrap();
    // One comes twice.
    batch.push(batch[9].clone());

    store.record_calls(&batch).await.unwrap();
    store.record_calls(&[]).await.unwrap();

    let mut expected: Vec<CallRecord> = batch[..usize::try_from(n).unwrap()].to_vec();
    expected[5] = stored_before;
    let stored = store
        .call_records_between(at(base), at(base + n * 10))
        .await
        .unwrap();
    assert_eq!(stored.len(), expected.len());
    assert_eq!(stored, expected);

    // Read back in pages of 7: the same records, in the same order, offers included.
    let mut paged = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (page, next) = store
            .call_records_page(at(base), at(base + n * 10), after, 7)
            .await
            .unwrap();
        assert!(page.len() <= 7);
        pages += 1;
        paged.extend(page);
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(paged, expected);
    assert_eq!(
        pages,
        expected.len().div_ceil(7) + usize::from(expected.len().is_multiple_of(7))
    );

    // Writing the same batch again changes nothing.
    store.record_calls(&batch).await.unwrap();
    assert_eq!(
        store
            .call_records_between(at(base), at(base + n * 10))
            .await
            .unwrap(),
        expected
    );
}

async fn tokens(store: &Store, clock: &ManualClock) {
    clock.set(at(400_000));
    let issued = store
        .create_token(Role::Agent, "sip:alice@127.0.0.1")
        .await
        .unwrap();
    let token = issued.token.expose().to_owned();
    assert!(token.starts_with("rgsd_") && token.len() >= 64, "{token}");
    assert!(!format!("{issued:?}").contains(&token));
    assert_eq!(issued.info.role, Role::Agent);
    assert_eq!(issued.info.created_at, at(400_000));
    assert_eq!(issued.info.revoked_at, None);

    let admin = store.create_token(Role::Admin, "root").await.unwrap();
    assert_ne!(admin.token.expose(), token);

    assert_eq!(
        store.authenticate(&token).await.unwrap(),
        Some(issued.info.clone())
    );
    assert_eq!(
        store
            .authenticate(admin.token.expose())
            .await
            .unwrap()
            .map(|t| t.role),
        Some(Role::Admin)
    );
    let mut wrong = token.clone();
    wrong.pop();
    wrong.push(if token.ends_with('0') { '1' } else { '0' });
    assert_eq!(store.authenticate(&wrong).await.unwrap(), None);
    assert_eq!(store.authenticate("").await.unwrap(), None);
    assert_eq!(store.authenticate("not a token").await.unwrap(), None);

    clock.set(at(401_000));
    store.revoke_token(issued.info.id).await.unwrap();
    assert_eq!(store.authenticate(&token).await.unwrap(), None);
    clock.set(at(402_000));
    store.revoke_token(issued.info.id).await.unwrap();
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, issued.info.id);
    assert_eq!(listed[0].revoked_at, Some(at(401_000)));
    assert_eq!(listed[1].revoked_at, None);
    assert!(matches!(
        store.revoke_token(rgsd::store::TokenId(987_654)).await,
        Err(StoreError::NotFound(Entity::ApiToken))
    ));
}

async fn audit(store: &Store, clock: &ManualClock) {
    clock.set(at(500_000));
    store
        .audit(
            "root",
            "agent.create",
            "sip:alice@127.0.0.1",
            &serde_json::json!({"display_name": "Alice"}),
        )
        .await
        .unwrap();
    clock.set(at(501_000));
    store
        .audit(
            "root",
            "group.members.set",
            "Support",
            &serde_json::json!({"agents": ["sip:bob@127.0.0.1"], "n": 1}),
        )
        .await
        .unwrap();
    clock.set(at(502_000));
    store
        .audit(
            "sip:mgr@127.0.0.1",
            "token.revoke",
            "7",
            &serde_json::json!(null),
        )
        .await
        .unwrap();

    let since = store.list_audit(at(501_000), 10).await.unwrap();
    assert_eq!(since.len(), 2);
    assert_eq!(since[0].action, "group.members.set");
    assert_eq!(since[0].at, at(501_000));
    assert_eq!(
        since[0].detail,
        serde_json::json!({"agents": ["sip:bob@127.0.0.1"], "n": 1})
    );
    assert_eq!(since[1].actor, "sip:mgr@127.0.0.1");
    assert!(since[0].id < since[1].id);
    let first = store.list_audit(at(0), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].target, "sip:alice@127.0.0.1");
    assert!(store.list_audit(at(600_000), 10).await.unwrap().is_empty());
}

/// Users (password hashes, disable, remove) and sessions (idle and absolute expiry, sign-out,
/// a password change or a disabled user ending them).
async fn users_and_sessions(store: &Store, clock: &ManualClock) {
    const IDLE: Duration = Duration::from_secs(600);
    const ABSOLUTE: Duration = Duration::from_secs(3600);
    let secs = |s: i64| at(700_000 + s * 1000);
    clock.set(secs(0));
    let hash = tokio::task::spawn_blocking(|| PasswordHash::new("correct horse battery"))
        .await
        .unwrap()
        .unwrap();
    let ann = store
        .create_user("sip:ann@127.0.0.1", Role::Manager, &hash)
        .await
        .unwrap();
    assert_eq!(ann.role, Role::Manager);
    assert_eq!(ann.created_at, secs(0));
    assert_eq!(ann.disabled_at, None);
    assert!(matches!(
        store
            .create_user("sip:ann@127.0.0.1", Role::Agent, &hash)
            .await,
        Err(StoreError::Conflict(Entity::User))
    ));
    store
        .create_user("sip:abe@127.0.0.1", Role::Agent, &hash)
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["sip:abe@127.0.0.1", "sip:ann@127.0.0.1"]);
    let (found, stored) = store
        .user_credentials("sip:ann@127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, ann);
    assert_eq!(stored, hash);
    assert!(stored.verify("correct horse battery"));
    assert!(
        store
            .user_credentials("sip:nobody@127.0.0.1")
            .await
            .unwrap()
            .is_none()
    );

    // A session: found by its id, not by anything else; idle expiry counts from the last use.
    let issued = store.create_session(ann.id, ABSOLUTE, IDLE).await.unwrap();
    let secret = issued.secret.expose().to_owned();
    assert_eq!(secret.len(), 64);
    assert!(!format!("{issued:?}").contains(&secret));
    assert_eq!(issued.info.user, ann);
    assert_eq!(issued.info.expires_at, secs(3600));
    let found = store.session(&secret, IDLE).await.unwrap().unwrap();
    assert_eq!(found.id, issued.info.id);
    assert!(
        store
            .session(&"0".repeat(64), IDLE)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.session("short", IDLE).await.unwrap().is_none());
    clock.set(secs(599));
    assert!(store.session(&secret, IDLE).await.unwrap().is_some());
    // Used at 599 s: alive until 1199 s.
    clock.set(secs(1198));
    assert_eq!(
        store
            .session(&secret, IDLE)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        secs(1198)
    );
    // Used again within a minute: not rewritten.
    clock.set(secs(1210));
    assert_eq!(
        store
            .session(&secret, IDLE)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        secs(1198)
    );
    // The recorded use is 1198 s (the one at 1210 s was within the minute): alive until 1798 s.
    clock.set(secs(1797));
    assert!(store.session(&secret, IDLE).await.unwrap().is_some());
    clock.set(secs(1797 + 600));
    assert!(
        store.session(&secret, IDLE).await.unwrap().is_none(),
        "idle"
    );

    // Absolute expiry, however active.
    clock.set(secs(10_000));
    let s = store.create_session(ann.id, ABSOLUTE, IDLE).await.unwrap();
    let s = s.secret.expose().to_owned();
    for t in (10_000..13_600).step_by(300) {
        clock.set(secs(t));
        assert!(store.session(&s, IDLE).await.unwrap().is_some(), "at {t}");
    }
    clock.set(secs(13_600));
    assert!(store.session(&s, IDLE).await.unwrap().is_none(), "absolute");

    // Sign-out, password change, disabling and removal each end sessions.
    let s1 = store.create_session(ann.id, ABSOLUTE, IDLE).await.unwrap();
    let s1 = s1.secret.expose().to_owned();
    assert!(store.delete_session(&s1).await.unwrap());
    assert!(!store.delete_session(&s1).await.unwrap());
    assert!(store.session(&s1, IDLE).await.unwrap().is_none());

    let s2 = store.create_session(ann.id, ABSOLUTE, IDLE).await.unwrap();
    let s2 = s2.secret.expose().to_owned();
    let new_hash = tokio::task::spawn_blocking(|| PasswordHash::new("another long password"))
        .await
        .unwrap()
        .unwrap();
    store
        .set_password("sip:ann@127.0.0.1", &new_hash)
        .await
        .unwrap();
    assert!(
        store.session(&s2, IDLE).await.unwrap().is_none(),
        "password changed"
    );
    let (_, stored) = store
        .user_credentials("sip:ann@127.0.0.1")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.verify("another long password"));
    assert!(!stored.verify("correct horse battery"));
    assert!(matches!(
        store.set_password("sip:nobody@127.0.0.1", &new_hash).await,
        Err(StoreError::NotFound(Entity::User))
    ));

    let s3 = store.create_session(ann.id, ABSOLUTE, IDLE).await.unwrap();
    let s3 = s3.secret.expose().to_owned();
    clock.set(secs(14_000));
    let disabled = store
        .set_user_disabled("sip:ann@127.0.0.1", true)
        .await
        .unwrap();
    assert_eq!(disabled.disabled_at, Some(secs(14_000)));
    assert!(
        store.session(&s3, IDLE).await.unwrap().is_none(),
        "disabled"
    );
    clock.set(secs(14_001));
    let again = store
        .set_user_disabled("sip:ann@127.0.0.1", true)
        .await
        .unwrap();
    assert_eq!(again.disabled_at, Some(secs(14_000)), "first time kept");
    let enabled = store
        .set_user_disabled("sip:ann@127.0.0.1", false)
        .await
        .unwrap();
    assert_eq!(enabled.disabled_at, None);

    let s4 = store.create_session(ann.id, ABSOLUTE, IDLE).await.unwrap();
    let s4 = s4.secret.expose().to_owned();
    store.delete_user("sip:ann@127.0.0.1").await.unwrap();
    assert!(store.session(&s4, IDLE).await.unwrap().is_none(), "removed");
    assert!(matches!(
        store.delete_user("sip:ann@127.0.0.1").await,
        Err(StoreError::NotFound(Entity::User))
    ));
    assert!(matches!(
        store.create_session(ann.id, ABSOLUTE, IDLE).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Response-group objects created through the API: create, read, compare-and-set on the
/// version, delete.
async fn objects(store: &Store, clock: &ManualClock) {
    use rgsd::config::ObjectKind;
    use rgsd::store::Versioned;
    clock.set(at(600_000));
    let body =
        serde_json::json!({ "agent_groups": ["Sales agents"], "timeout": { "after": "60s" } });
    let created = store
        .create_object(ObjectKind::Queue, "Support", &body, "admin")
        .await
        .unwrap();
    assert_eq!(created.object.version, 1);
    assert_eq!(created.object.body, body);
    assert_eq!(created.created_by, "admin");
    assert_eq!(created.created_at, at(600_000));
    // Same name, other kind: allowed. Same kind and name: conflict.
    store
        .create_object(
            ObjectKind::Workflow,
            "Support",
            &serde_json::json!({}),
            "admin",
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_object(ObjectKind::Queue, "Support", &body, "admin")
            .await,
        Err(StoreError::Conflict(Entity::ConfigObject))
    ));

    clock.set(at(601_000));
    let patched = serde_json::json!({ "agent_groups": ["Sales agents"] });
    let Versioned::Done(replaced) = store
        .replace_object(
            ObjectKind::Queue,
            "Support",
            &patched,
            Some(1),
            "sip:mgr@127.0.0.1",
        )
        .await
        .unwrap()
    else {
        panic!("version 1 is current");
    };
    assert_eq!(replaced.object.version, 2);
    assert_eq!(replaced.object.body, patched);
    assert_eq!(replaced.updated_by, "sip:mgr@127.0.0.1");
    assert_eq!(replaced.updated_at, at(601_000));
    assert_eq!(replaced.created_at, at(600_000));
    // A stale version changes nothing.
    assert_eq!(
        store
            .replace_object(ObjectKind::Queue, "Support", &body, Some(1), "admin")
            .await
            .unwrap(),
        Versioned::Stale { current: 2 }
    );
    assert_eq!(
        store
            .delete_object(ObjectKind::Queue, "Support", Some(1))
            .await
            .unwrap(),
        Versioned::Stale { current: 2 }
    );
    assert_eq!(
        store
            .get_object(ObjectKind::Queue, "Support")
            .await
            .unwrap()
            .object
            .body,
        patched
    );
    let all = store.list_objects().await.unwrap();
    let names: Vec<_> = all
        .iter()
        .map(|o| (o.object.kind, o.object.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (ObjectKind::Queue, "Support"),
            (ObjectKind::Workflow, "Support")
        ]
    );
    assert_eq!(
        store
            .delete_object(ObjectKind::Queue, "Support", Some(2))
            .await
            .unwrap(),
        Versioned::Done(())
    );
    assert!(matches!(
        store.get_object(ObjectKind::Queue, "Support").await,
        Err(StoreError::NotFound(Entity::ConfigObject))
    ));
    assert!(matches!(
        store
            .delete_object(ObjectKind::Queue, "Support", None)
            .await,
        Err(StoreError::NotFound(Entity::ConfigObject))
    ));
    assert_eq!(
        store
            .delete_object(ObjectKind::Workflow, "Support", None)
            .await
            .unwrap(),
        Versioned::Done(())
    );
}

async fn deleting_an_agent_removes_its_memberships_and_sign_ins(store: &Store) {
    let bob = store.get_agent_by_uri(&uri("bob")).await.unwrap();
    assert_eq!(
        store.signed_in_groups(&uri("bob")).await.unwrap(),
        vec!["Support".to_owned()]
    );
    store.delete_agent(bob.id).await.unwrap();
    assert_eq!(
        store.get_group_by_name("Support").await.unwrap().agents,
        vec![uri("alice")]
    );
    assert!(
        !store
            .sign_in_state()
            .await
            .unwrap()
            .iter()
            .any(|s| s.agent == uri("bob"))
    );
    // Call records keep the URI of a deleted agent.
    let records = store
        .call_records_between(at(0), at(3_000_000))
        .await
        .unwrap();
    assert_eq!(records[0].agent, Some(uri("bob")));
}

/// Writers racing each other (calls ending while an administrator edits groups and a reload
/// synchronises the config) must all succeed: on SQLite this relies on write transactions taking
/// the lock up front.
async fn concurrent_writers_all_succeed(store: &Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..12 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .record_call(&call(100 + n, at(5_000_000 + n * 1000)))
                .await
                .map(|_| ())
        });
    }
    for n in 0..4 {
        let syncing = store.clone();
        tasks.spawn(async move {
            let declared = [group(
                "Hotline",
                Participation::Informal,
                &["alice", if n % 2 == 0 { "erin" } else { "frank" }],
            )];
            syncing.sync_config_groups(&declared).await.map(|_| ())
        });
        let store = store.clone();
        tasks.spawn(async move {
            store
                .create_group(&group(
                    &format!("Concurrent {n}"),
                    Participation::Formal,
                    &["alice"],
                ))
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let stored = store
        .call_records_between(at(5_000_000), at(6_000_000))
        .await
        .unwrap();
    assert_eq!(stored.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("rgsd.db"));
    let store = Store::connect(&url).await.unwrap();
    contract(store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_contract() {
    let Ok(admin_url) = std::env::var("RGSD_TEST_PG_URL") else {
        println!("skipping: RGSD_TEST_PG_URL not set");
        return;
    };
    let scratch = ScratchDatabase::create(&admin_url).await;
    let store = Store::connect(&DatabaseUrl::Postgres(Secret::new(scratch.url.clone())))
        .await
        .unwrap();
    contract(store.clone()).await;
    store.close().await;
}

/// A real outage: the database stops accepting connections and every session to it is killed,
/// while calls keep ending. The writer keeps the records, and writes them, in order and once,
/// when the database is back. A record the database refuses (a NUL byte, which PostgreSQL text
/// cannot hold) is dropped without blocking the others.
#[tokio::test]
async fn postgres_outage_loses_no_call_records() {
    const LIMIT: Duration = Duration::from_secs(30);
    let Ok(admin_url) = std::env::var("RGSD_TEST_PG_URL") else {
        println!("skipping: RGSD_TEST_PG_URL not set");
        return;
    };
    let scratch = ScratchDatabase::create(&admin_url).await;
    let options = ConnectOptions {
        acquire_timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    };
    let url = DatabaseUrl::Postgres(Secret::new(scratch.url.clone()));
    let store = Store::connect_with(&url, &options).await.unwrap();
    store.migrate().await.unwrap();
    let writer = RecordWriter::spawn(
        store.clone(),
        WriterOptions {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..WriterOptions::default()
        },
    );
    let mut changes = writer.subscribe();
    let before = call(0, at(0));
    writer.submit(before.clone()).unwrap();
    tokio::time::timeout(LIMIT, changes.wait_for(|_| writer.pending() == 0))
        .await
        .unwrap()
        .unwrap();

    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let name = &scratch.name;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} allow_connections false"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    let mut expected = vec![before];
    for n in 1..=20 {
        let mut record = call(n, at(n * 1000));
        if n == 10 {
            record.caller = "sip:bad\0byte@127.0.0.1".to_owned();
        } else {
            expected.push(record.clone());
        }
        writer.submit(record).unwrap();
    }
    tokio::time::timeout(
        LIMIT,
        changes.wait_for(|s| matches!(s, WriterStatus::Retrying { failures } if *failures >= 3)),
    )
    .await
    .expect("the writer never failed: was the database really down?")
    .unwrap();
    let during = writer.stats();
    assert_eq!((during.written, during.pending, during.dropped), (1, 20, 0));

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} allow_connections true"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    tokio::time::timeout(LIMIT, changes.wait_for(|_| writer.pending() == 0))
        .await
        .expect("the buffer was never flushed")
        .unwrap();
    let stats = writer.shutdown(LIMIT).await;
    assert_eq!(
        (stats.written, stats.rejected, stats.dropped, stats.pending),
        (20, 1, 0, 0)
    );
    let stored = store
        .call_records_between(at(-1), at(100_000))
        .await
        .unwrap();
    assert_eq!(stored, expected);
    store.close().await;
    admin.close().await.unwrap();
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        common::pg::with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        common::pg::with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        common::pg::with_database("postgres://h", "x"),
        "postgres://h/x"
    );
}
