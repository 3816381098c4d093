//! Several rgsd processes on one PostgreSQL database: a change made through one process's API
//! reaches the other (LISTEN/NOTIFY on `rgsd_config`, plus a periodic check), and the
//! notification is sent only for a change that committed.
// Test harness: a failed unwrap is a test failure; waiting on child processes and sockets
// needs real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use rgsd::config::ObjectKind;
use rgsd::config::model::{DatabaseUrl, Secret};
use rgsd::store::{CONFIG_CHANNEL, ConfigEvent, ConfigListener};
use rgsd::store::{Store, StoreError};
use serde_json::json;

use common::e2e::{Ua, group, hunt_group, server_section};
use common::http::http;
use common::pg::ScratchDatabase;
use common::{Scratch, Server};

/// The final status of one INVITE to `uri` (a 200 is ended with BYE).
fn call(server: &Server, uri: &str) -> u16 {
    let mut ua = Ua::new(server.sip[0].1);
    let code = ua.call_status(uri);
    if code == 200 {
        ua.bye();
    }
    code
}

/// Calls `uri` on `server` until the answer is `want` (at most 5 s); returns how long after
/// `since` it came.
fn until_status(server: &Server, uri: &str, want: u16, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let code = call(server, uri);
        if code == want {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "still {code}, not {want}, after 5 s; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_workflow_created_through_one_process_answers_on_the_other_within_a_second() {
    let Some(admin_url) = common::pg_url() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(ScratchDatabase::create(&admin_url));
    let config = |rtp| {
        (server_section(rtp) + &group("Sales agents", "serial", &[5997]) + &hunt_group("Sales"))
            .replace("sqlite://rgsd.db", &db.url)
    };
    let (one, two) = (Scratch::new(), Scratch::new());
    let path_one = one.write("rgsd.toml", config(26400));
    let path_two = two.write("rgsd.toml", config(26600));
    let admin = common::create_token(path_one.to_str().unwrap(), "admin", "root");
    let first = Server::start(&path_one);
    let second = Server::start(&path_two);
    second.wait_log("listening for configuration changes");
    let night = "sip:night@127.0.0.1";
    assert_eq!(call(&second, night), 404, "{}", second.stderr());

    // Created through the first process: the second answers the new URI within 1 s.
    let started = Instant::now();
    let (code, body) = http(
        first.http,
        "POST",
        "/api/workflows",
        Some(&admin),
        Some(
            &json!({ "name": "Night line", "kind": "hunt_group", "uri": night, "queue": "Sales" })
                .to_string(),
        ),
    );
    assert_eq!(code, 201, "{body}");
    let elapsed = until_status(&second, night, 200, started);
    println!("created through one process, answered by the other after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    // The "reloaded:" line comes after the swap (and the SIP edge's reconfiguration), so the
    // call above can be answered a moment before it is written.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !second.stderr().contains("reloaded: 2 workflows") {
        assert!(Instant::now() < deadline, "{}", second.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }

    // And back: deactivated through the second, the first refuses the next call (480) within
    // 1 s, and its API shows the new version.
    let started = Instant::now();
    let (code, body) = http(
        second.http,
        "PATCH",
        "/api/workflows/Night%20line",
        Some(&admin),
        Some(&json!({ "active": false }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    let elapsed = until_status(&first, night, 480, started);
    println!("deactivated through the other process, refused after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1),
        "refused after {elapsed:?}"
    );
    let (code, body) = http(
        first.http,
        "GET",
        "/api/workflows/Night%20line",
        Some(&admin),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["version"], 2, "{doc}");
    assert_eq!(doc["active"], false, "{doc}");

    // Each process reloaded once, for the other's change: never for its own.
    for server in [&first, &second] {
        let reloads = server
            .stderr()
            .matches("configuration objects changed: reloading")
            .count();
        assert_eq!(reloads, 1, "{}", server.stderr());
    }

    // The listening connections are cut (as a database restart or a network failure would):
    // a change made right then still reaches the other process, within 1 s.
    let cut = rt.block_on(async {
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
             where datname = current_database() and query like 'LISTEN%') t",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap()
    });
    assert_eq!(cut, 2, "one listener per process");
    let started = Instant::now();
    let (code, body) = http(
        first.http,
        "PATCH",
        "/api/workflows/Night%20line",
        Some(&admin),
        Some(&json!({ "active": true }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    let elapsed = until_status(&second, night, 200, started);
    println!("with the listeners cut, answered by the other after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    second.wait_log("checking for missed changes");
    drop((first, second));
    drop(db);
}

/// The listener's next event, or `Err` after 500 ms of silence.
async fn next(
    listener: &mut ConfigListener,
) -> Result<Result<ConfigEvent, StoreError>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_millis(500), listener.next()).await
}

#[tokio::test]
async fn a_committed_change_is_notified_and_a_refused_one_is_not() {
    let Some(admin_url) = common::pg_url() else {
        return;
    };
    let db = ScratchDatabase::create(&admin_url).await;
    let url = DatabaseUrl::Postgres(Secret::new(db.url.clone()));
    let writer = Store::connect(&url).await.unwrap();
    writer.migrate().await.unwrap();
    let reader = Store::connect(&url).await.unwrap();
    let mut listener = reader
        .listen_config()
        .await
        .unwrap()
        .expect("postgres listens");
    assert_eq!(CONFIG_CHANNEL, "rgsd_config");

    let body = json!({ "queue": "Sales" });
    writer
        .create_object(ObjectKind::Queue, "Support", &body, "root")
        .await
        .unwrap();
    assert_eq!(
        next(&mut listener).await.unwrap().unwrap(),
        ConfigEvent::Changed("queue".into())
    );

    // A duplicate name: the insert fails, the transaction rolls back, nothing is notified.
    let err = writer
        .create_object(ObjectKind::Queue, "Support", &body, "root")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // A stale version: nothing changed, nothing notified.
    let stale = writer
        .replace_object(ObjectKind::Queue, "Support", &body, Some(7), "root")
        .await
        .unwrap();
    assert!(matches!(
        stale,
        rgsd::store::Versioned::Stale { current: 1 }
    ));
    assert!(
        next(&mut listener).await.is_err(),
        "a refused change was notified"
    );

    // A replace and a delete are each notified once.
    writer
        .replace_object(ObjectKind::Queue, "Support", &body, Some(1), "root")
        .await
        .unwrap();
    assert!(matches!(
        next(&mut listener).await.unwrap().unwrap(),
        ConfigEvent::Changed(_)
    ));
    writer
        .delete_object(ObjectKind::Queue, "Support", None)
        .await
        .unwrap();
    assert!(matches!(
        next(&mut listener).await.unwrap().unwrap(),
        ConfigEvent::Changed(_)
    ));
    assert!(next(&mut listener).await.is_err());
    assert!(reader.object_versions().await.unwrap().is_empty());
    drop(listener);
    reader.close().await;
    writer.close().await;
}
