//! Several rgsd processes on one PostgreSQL database: a change made through one process's API
//! reaches the others.
//!
//! Every committed change to the database's objects is notified on `rgsd_config` in the
//! transaction that makes it (`store::objects`). [`watch_database`] listens on that channel and,
//! every [`CHECK_EVERY`], compares the versions stored with those of the model in force (which
//! catches a notification lost while the listening connection was down, and a process that
//! cannot listen at all). On either it asks the daemon for a reload, the one SIGHUP does (the
//! file and the database compiled together): new calls get the new model, calls in progress
//! keep theirs.
//!
//! A process's own changes are in force before their notification matters: the comparison runs
//! under the change lock and finds nothing to do. A reload that fails (the database's objects do
//! not compile with this process's file) is reported once and not asked again until the
//! database changes again. On SQLite (one process) the periodic check alone runs; it notices
//! objects written by `rgsd import` while the daemon runs.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::objects::Objects;
use crate::store::Store;
use crate::store::objects::{ConfigEvent, ObjectVersions};

/// How often the stored versions are compared with the model in force.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why a reload is asked for (logged by the daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resync {
    /// Another process committed a change.
    Notified,
    /// The periodic check found versions the model in force was not compiled with.
    Checked,
}

/// Watches the database for changes other processes make and sends a [`Resync`] on `reload`
/// for each one the model in force lacks; compares versions every `every` ([`CHECK_EVERY`]).
/// Ends on `shutdown`.
pub(super) async fn watch_database(
    store: Store,
    objects: Objects,
    every: Duration,
    reload: mpsc::Sender<Resync>,
    shutdown: CancellationToken,
) {
    let mut listener = None;
    let mut listening = true;
    let mut check = tokio::time::interval(every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    // The versions a reload was last asked for: not asked again while they stay.
    let mut asked: Option<ObjectVersions> = None;
    loop {
        if listening && listener.is_none() {
            match store.listen_config().await {
                Ok(Some(l)) => {
                    info!(
                        channel = crate::store::objects::CONFIG_CHANNEL,
                        "listening for configuration changes"
                    );
                    listener = Some(l);
                }
                Ok(None) => listening = false,
                Err(e) => {
                    warn!(error = %e, "cannot listen for configuration changes; checking every {every:?}");
                }
            }
        }
        let why = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = check.tick() => Resync::Checked,
            event = next(&mut listener) => match event {
                Ok(ConfigEvent::Changed(kind)) => {
                    tracing::debug!(kind, "configuration change notified");
                    Resync::Notified
                }
                Ok(ConfigEvent::Reconnected) => {
                    warn!("the configuration listener lost its connection and made it again; checking for missed changes");
                    Resync::Checked
                }
                Err(e) => {
                    // Listened to again at the top of the loop; if that fails, the periodic
                    // check paces the retries.
                    warn!(error = %e, "the configuration listener failed; listening again and checking for missed changes");
                    listener = None;
                    Resync::Checked
                }
            },
        };
        match objects.stale(&store).await {
            Ok(Some(stored)) if asked.as_ref() != Some(&stored) => {
                asked = Some(stored);
                // Capacity 1: a reload already asked for covers this change too.
                let _ = reload.try_send(why);
            }
            Ok(Some(_)) => {}
            Ok(None) => asked = None,
            Err(e) => warn!(error = %e, "cannot read the configuration objects' versions"),
        }
    }
}

/// The listener's next event; never, without a listener.
async fn next(
    listener: &mut Option<crate::store::objects::ConfigListener>,
) -> Result<ConfigEvent, crate::store::StoreError> {
    match listener {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::LoadOptions;
    use crate::config::merge::ObjectKind;

    const FILE: &str = r#"
[server]
sip_listen = ["udp:127.0.0.1:0"]
advertised_host = "127.0.0.1"
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]

[[agent_group]]
name = "Sales agents"
agents = ["sip:alice@127.0.0.1"]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]
"#;

    /// A change written behind the process's back (no notification: SQLite, or one lost) is
    /// found by the periodic check and asked for once; a write that puts the versions back
    /// where the model is stops the asking.
    #[tokio::test]
    async fn the_periodic_check_asks_once_for_versions_the_model_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        std::fs::write(&path, FILE).unwrap();
        let options = LoadOptions {
            check_environment: false,
        };
        let merged = crate::config::load_merged(&path, &[], &options).unwrap();
        // Nothing is applied here: the test watches what the watcher asks for.
        let apply: crate::api::objects::Apply = Arc::new(|_| Box::pin(async { Ok(()) }));
        let objects = Objects::new(apply, &merged, options);
        let store = Store::connect(&crate::config::model::DatabaseUrl::Sqlite(
            dir.path().join("rgsd.db"),
        ))
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let every = Duration::from_millis(20);
        let task = tokio::spawn(watch_database(
            store.clone(),
            objects,
            every,
            tx,
            shutdown.clone(),
        ));
        let quiet = |rx: &mut mpsc::Receiver<Resync>| {
            assert!(rx.try_recv().is_err(), "asked without a change");
        };
        tokio::time::sleep(every * 5).await;
        quiet(&mut rx);

        let body = json!({ "agent_groups": ["Sales agents"] });
        store
            .create_object(ObjectKind::Queue, "Support", &body, "root")
            .await
            .unwrap();
        let why = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(why, Some(Resync::Checked));
        // Nobody reloads here: the versions stay different, and are not asked for again.
        tokio::time::sleep(every * 5).await;
        quiet(&mut rx);
        // Another change is asked for again.
        store
            .replace_object(ObjectKind::Queue, "Support", &body, None, "root")
            .await
            .unwrap();
        let why = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(why, Some(Resync::Checked));
        // Back to what the model was compiled with (nothing): nothing to ask.
        store
            .delete_object(ObjectKind::Queue, "Support", None)
            .await
            .unwrap();
        tokio::time::sleep(every * 5).await;
        quiet(&mut rx);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        store.close().await;
    }
}
