//! The composition root: loads the configuration, opens the store, binds the listeners, runs
//! until a signal, reloads on SIGHUP.
//!
//! Start-up builds every layer: the store and its call-record writer, the configuration (the file
//! with the objects stored in the database), the runtime (`acd::runtime::Acd`: prompts rendered
//! once and music, the agent table, one owner task per queue), the SIP endpoint, the
//! registrations, the media engine, the call controller (`acd::call_task`) that takes the
//! endpoint's inbound calls, and the HTTP API.
//!
//! Signals follow pingora's split: SIGTERM stops gracefully (new calls refused with 503 and
//! Retry-After, calls in progress given `[server] drain_limit`, then each one still up is ended
//! with BYE and recorded, the SIP endpoint stops and the record writer flushes; exit 0), SIGINT
//! stops at once (every call ended with BYE and recorded; exit 0), SIGHUP reloads (a broken file, or prompts
//! that cannot be rendered, are reported and the running configuration kept). The reload itself
//! is `acd::runtime::Acd::reload`, the same one the API's changes and the tests go through: new
//! calls get a new runtime (the prompts of the new file, the agent table's membership rebuilt
//! over stable ids, the queue owners carried over by queue name with the calls waiting in them;
//! see `acd::runtime`). What the file says is compiled together with the objects created
//! through the API (`api::objects`), on SIGHUP as at start.
//! A reload also applies `[[registration]]` (started, unregistered or registered again by diff,
//! `sip::registration::Registrations`), `[server] rtp_ports` (new calls bind in the new range)
//! and the SIP edge (`sip::Endpoint::reconfigure`: `trusted_peers`, `max_calls`,
//! `sip_rate_limit`, `session_expires` and `min_se` for new dialogs, listeners opened and
//! closed). A changed key it cannot apply
//! (`http_listen`, `database`, `advertised_host`, `dns_servers`, a listener that cannot be bound)
//! is logged as a warning naming it and saying it takes effect after a restart. SIGHUP and the
//! API's changes to configuration objects take the same lock, so they never interleave. How
//! reload and shutdown travel is described in `docs/architecture.md`.
//!
//! Once every listener is bound, `serve` prints one machine-readable line on stdout:
//!
//! ```text
//! READY sip=udp:127.0.0.1:5060,tcp:127.0.0.1:5060 http=127.0.0.1:8080
//! ```
//!
//! Tests and scripts wait on that line (ports 0 in the config become the real ports there),
//! and under systemd (`Type=notify`) the same moment sends `READY=1`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::acd::call_task::{Controller, Services};
use crate::acd::runtime::{Acd, Change, PromptCache};
use crate::api::Shared;
use crate::clock::{SharedClock, SystemClock};
use crate::config::model::{Config, Transport};
use crate::config::{self, Diagnostic, EXIT_CONFIG, LoadOptions, Loaded, print_diagnostics};
use crate::media::leg::{LegOptions, MediaEngine};
use crate::media::ports::PortPool;
use crate::sip::registration::Registrations;
use crate::store::{RecordWriter, Role, Store, WriterOptions};

mod watch;

/// How long calls in progress may go on after SIGTERM before the daemon exits anyway.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// After the drain limit, how long the call tasks get to send their BYEs and records.
const HANG_UP_GRACE: Duration = Duration::from_secs(5);

/// The addresses the daemon actually bound (ports resolved).
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub sip: Vec<(Transport, SocketAddr)>,
    pub http: SocketAddr,
}

impl Bound {
    /// The readiness line printed on stdout.
    pub(crate) fn ready_line(&self) -> String {
        let sip: Vec<String> = self
            .sip
            .iter()
            .map(|(t, a)| {
                let t = match t {
                    Transport::Udp => "udp",
                    Transport::Tls => "tls",
                    Transport::Tcp => "tcp",
                };
                format!("{t}:{a}")
            })
            .collect();
        format!("READY sip={} http={}", sip.join(","), self.http)
    }
}

/// `rgsd serve`.
pub(crate) async fn serve_main(path: PathBuf) -> ExitCode {
    let Some(config) = load_or_report(&path) else {
        return ExitCode::from(EXIT_CONFIG);
    };
    // Handlers first: a signal that arrives right after READY must not kill the process with
    // its default action.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rgsd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    raise_open_files_limit(config.server.max_calls);
    let shutdown = CancellationToken::new();
    let running = match Daemon::start(config, Arc::new(SystemClock), shutdown.clone()).await {
        Ok(d) => d,
        Err(e) => {
            error!("cannot start: {e:#}");
            eprintln!("rgsd: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", running.bound.ready_line());
    notify(&[sd_notify::NotifyState::Ready]);
    match running.run_until_signal(signals, path).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("stopped on error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Descriptors a call can hold: the caller's and an agent's RTP sockets, and a SIP TCP
/// connection or two (parallel ringing holds more, briefly).
const FILES_PER_CALL: u64 = 4;

/// Raises the soft limit on open files to the hard limit, as servers that hold a socket per
/// media stream do (a login shell's soft limit is often 1,024: 500 calls). Under systemd the
/// unit's `LimitNOFILE` sets both. Warns when even the hard limit is short of `max_calls`.
fn raise_open_files_limit(max_calls: u32) {
    let wanted = u64::from(max_calls) * FILES_PER_CALL + 256;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => warn!(
            limit,
            wanted,
            max_calls,
            "open files limit is low for max_calls; calls beyond it will be refused with 503 (raise LimitNOFILE or ulimit -n)"
        ),
        Ok(limit) => info!(limit, "open files limit"),
        Err(e) => warn!(error = %e, "cannot read or raise the open files limit"),
    }
}

/// `rgsd migrate`.
pub(crate) async fn migrate_main(path: PathBuf) -> ExitCode {
    let Some(config) = load_or_report(&path) else {
        return ExitCode::from(EXIT_CONFIG);
    };
    let result = async {
        let store = Store::connect(&config.server.database)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("migration failed")?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            println!("database {:?}: migrated", config.server.database);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rgsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rgsd token create`: migrates the database if needed, issues a token for `role` (`admin`,
/// `manager` or `agent`) and `subject`, audits it and prints it once.
pub(crate) async fn token_create_main(path: PathBuf, role: &str, subject: String) -> ExitCode {
    let opts = LoadOptions {
        check_environment: false,
    };
    let config = match config::load(&path, &opts) {
        Ok(loaded) => loaded.config,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Ok(role) = role.parse::<Role>() else {
        eprintln!("rgsd: unknown role {role:?}");
        return ExitCode::FAILURE;
    };
    let result = async {
        let store = Store::connect(&config.server.database)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("migration failed")?;
        let issued = store
            .create_token(role, &subject)
            .await
            .context("cannot create the token")?;
        store
            .audit(
                "rgsd token create",
                "token.create",
                &subject,
                &serde_json::json!({ "id": issued.info.id.0, "role": role.as_str() }),
            )
            .await
            .context("cannot write the audit log")?;
        store.close().await;
        anyhow::Ok(issued)
    }
    .await;
    match result {
        Ok(issued) => {
            println!(
                "token {} created for {} ({}); it is shown only once:",
                issued.info.id.0,
                issued.info.subject,
                role.as_str()
            );
            println!("{}", issued.token.expose());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rgsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration as `serve` and `rgsd check` do: every audio file it names is checked
/// with the media layer's WAV header probe.
///
/// # Errors
/// Every problem found (see [`config::load_with_audio`]).
pub(crate) fn load_config(path: &Path, opts: &LoadOptions) -> Result<Loaded, Vec<Diagnostic>> {
    config::load_with_audio(path, opts, crate::media::wav::config_probe)
}

fn load_or_report(path: &Path) -> Option<Config> {
    match load_config(path, &LoadOptions::default()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                warn!("{w}");
            }
            Some(loaded.config)
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                error!("{d}");
            }
            print_diagnostics(&diagnostics);
            None
        }
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    // Not under systemd (no NOTIFY_SOCKET): nothing to do. A failure to notify is worth a
    // warning, never a crash.
    if let Err(e) = sd_notify::notify(state) {
        warn!("systemd notify failed: {e}");
    }
}

/// The signals the daemon acts on, installed before anything else so none is lost.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the SIGTERM, SIGINT and SIGHUP handlers.
    ///
    /// # Errors
    /// The OS refused a handler.
    pub(crate) fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }
}

/// A started daemon.
pub(crate) struct Daemon {
    pub shared: Shared,
    /// The SIP endpoint (cloneable handle); the call controller starts outbound legs on it.
    pub endpoint: crate::sip::Endpoint,
    pub bound: Bound,
    /// What new calls run with (configuration, agent table, queue owners, prompts), and the
    /// one reload that changes it.
    pub acd: Arc<Acd>,
    /// The `[[registration]]` tasks; a reload applies the new list.
    registrations: std::sync::Mutex<Registrations>,
    /// The RTP port pool (shared with the media engine); a reload applies `rtp_ports` to it.
    rtp_ports: PortPool,
    /// Every call in progress.
    calls: tokio_util::task::TaskTracker,
    /// Ends every call still in progress with BYE when the drain limit passes.
    hang_up: CancellationToken,
    records: RecordWriter,
    /// Stops the SIP endpoint, after the calls.
    sip_shutdown: CancellationToken,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
    /// Reloads asked for by [`watch::watch_database`] (another process changed the database).
    resync: Option<tokio::sync::mpsc::Receiver<watch::Resync>>,
}

impl Daemon {
    /// Opens the store, migrates it, syncs the configured agent groups and binds every
    /// listener.
    ///
    /// # Errors
    /// Database unreachable, a migration failed, a listener could not be bound.
    pub(crate) async fn start(
        config: Config,
        clock: SharedClock,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let store = Store::connect(&config.server.database)
            .await
            .with_context(|| format!("cannot open database {:?}", config.server.database))?;
        store.migrate().await.context("database migration failed")?;
        // The file plus the objects created through the API. Objects the file no longer allows
        // (a file object they use was removed) keep the daemon from nothing: it starts with the
        // file alone and says why.
        let options = LoadOptions::default();
        let merged =
            match crate::api::objects::load_with_database(config.source.clone(), &store, options)
                .await
            {
                Ok(merged) => {
                    for w in &merged.loaded.warnings {
                        warn!("{w}");
                    }
                    merged
                }
                Err(e) => {
                    report_database_objects(&e);
                    error!("starting with the configuration file alone");
                    // The file loaded a moment ago; loading it again fails only if it changed.
                    config::load_merged(&config.source, &[], &options).unwrap_or_else(|_| {
                        config::Merged {
                            loaded: config::Loaded {
                                config: config.clone(),
                                warnings: Vec::new(),
                            },
                            origins: Default::default(),
                            file_objects: Vec::new(),
                            file_text: std::fs::read_to_string(&config.source)
                                .unwrap_or_default()
                                .into(),
                        }
                    })
                }
            };
        let config = merged.loaded.config.clone();

        let tasks = tokio_util::task::TaskTracker::new();

        let http = tokio::net::TcpListener::bind(config.server.http_listen)
            .await
            .with_context(|| format!("cannot bind http_listen {}", config.server.http_listen))?;
        let http_addr = http.local_addr()?;

        let media_address = media_address(&config.server.advertised_host).await?;
        // The call journal first: what the previous run left (calls a crash cut, records it
        // had not written) is recorded before any new call.
        let (journal, recovered) =
            crate::store::CallJournal::open(&config.server.call_journal, clock.now_utc())
                .context("cannot open [server] call_journal (set it to a writable file)")?;
        let journal = Arc::new(journal);
        let records = RecordWriter::spawn_journaled(
            store.clone(),
            WriterOptions::default(),
            Arc::clone(&journal),
        );
        if !recovered.records.is_empty() || recovered.unreadable > 0 {
            warn!(
                path = %journal.path().display(),
                cut = recovered.cut,
                unwritten = recovered.records.len() - recovered.cut,
                unreadable = recovered.unreadable,
                "call journal: the previous run stopped without ending its calls; recording them (outcome restarted)"
            );
        }
        let cut = recovered.cut;
        for record in recovered.records {
            if let Err(e) = records.submit(record) {
                warn!("recovered call record not queued: {e}; it stays in the journal");
            }
        }

        // The runtime: the configured groups stored, prompts rendered, the agent table (with
        // the database's groups and sign-in state) and one owner task per queue.
        let acd = Arc::new(
            Acd::start(config, Some(store.clone()), PromptCache::Default)
                .await
                .context("cannot load the agent groups or the prompts")?,
        );
        let live = Arc::new(crate::api::Live::new(Arc::clone(&acd), clock.clone()));
        live.metrics.attach_writer(records.clone());
        let live_config = acd.routed();
        let config = live_config.load_full();
        let router = Arc::new(crate::acd::router::WorkflowRouter::new(acd.runtime()));
        // The endpoint outlives `shutdown`: calls in progress keep their dialogs during the
        // grace period; `stop` ends it after them.
        let sip_shutdown = CancellationToken::new();
        let (endpoint, incoming) = crate::sip::Endpoint::bind(
            crate::sip::EndpointConfig::from_server(&config.server),
            router,
            sip_shutdown.clone(),
        )
        .await
        .context("cannot bind sip_listen")?;
        let sip = endpoint
            .local_addrs()
            .iter()
            .map(|b| (b.transport, b.addr))
            .collect();
        // One task per [[registration]]: REGISTER with digest auth, refresh, back-off. A reload
        // applies the new list (`Registrations::apply`).
        let mut registrations =
            Registrations::new(endpoint.clone(), tasks.clone(), shutdown.clone());
        registrations.apply(&config.registrations);
        let sip_counts = endpoint.transaction_counts();
        live.metrics
            .attach_sip_transactions(move || (sip_counts.server(), sip_counts.client()));
        let rtp_ports = PortPool::new(media_address, config.server.rtp_ports.clone());
        let media = MediaEngine::new(rtp_ports.clone(), media_address, LegOptions::default());
        let rtp_counts = media.rtp_counts();
        let srtp_counts = Arc::clone(&rtp_counts);
        live.metrics
            .attach_rtp_packets(move || (rtp_counts.received(), rtp_counts.sent()));
        live.metrics
            .attach_srtp_auth_failures(move || srtp_counts.srtp_auth_failures());
        let services = Arc::new(
            Services::new(
                endpoint.clone(),
                media,
                records.clone(),
                clock.clone(),
                acd.runtime(),
            )
            // Calls in progress, ended calls and queue waits reach the wallboard and `/metrics`.
            .with_observer(live.clone())
            .with_journal(Arc::clone(&journal)),
        );
        for _ in 0..cut {
            live.metrics
                .call_ended(crate::store::CallOutcome::Restarted);
        }
        let calls = tokio_util::task::TaskTracker::new();
        let hang_up = services.hang_up.clone();
        let controller = Controller {
            services,
            stopping: shutdown.clone(),
            calls: calls.clone(),
        };
        tasks.spawn(controller.run(incoming));

        info!(
            "rgsd {} serving {} ({})",
            env!("CARGO_PKG_VERSION"),
            config.source.display(),
            config::summary(&config)
        );
        // An accepted change through the API goes through the same reload as SIGHUP.
        let apply = crate::api::objects::Objects::through(Arc::clone(&acd));
        let shared = Shared {
            config: live_config,
            store,
            clock,
            live,
            revocations: crate::api::tokens::Revocations::default(),
            objects: crate::api::objects::Objects::new(apply, &merged, options),
        };

        tasks.spawn(watch_certificate_expiry(
            Arc::clone(&shared.config),
            shared.clock.clone(),
            shutdown.clone(),
        ));

        // Changes other processes commit to the database reach this one (`watch`).
        let (resync_tx, resync) = tokio::sync::mpsc::channel(1);
        tasks.spawn(watch::watch_database(
            shared.store.clone(),
            shared.objects.clone(),
            watch::CHECK_EVERY,
            resync_tx,
            shutdown.clone(),
        ));

        let router = crate::api::router(shared.clone());
        let token = shutdown.clone();
        tasks.spawn(async move {
            let serve = axum::serve(
                http,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(token.cancelled_owned());
            if let Err(e) = serve.await {
                error!("http server stopped: {e}");
            }
        });

        Ok(Self {
            shared,
            registrations: std::sync::Mutex::new(registrations),
            rtp_ports,
            acd,
            calls,
            hang_up,
            records,
            sip_shutdown,
            endpoint,
            bound: Bound {
                sip,
                http: http_addr,
            },
            shutdown,
            tasks,
            resync: Some(resync),
        })
    }

    /// Waits for SIGTERM, SIGINT or SIGHUP (or the shutdown token) and acts on them.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a fatal error in a long-running task.
    pub(crate) async fn run_until_signal(
        mut self,
        mut signals: Signals,
        config_path: PathBuf,
    ) -> anyhow::Result<()> {
        let mut resync = self.resync.take();
        let grace = loop {
            tokio::select! {
                _ = signals.term.recv() => {
                    let limit = self.acd.current().config.server.drain_limit;
                    info!(?limit, "SIGTERM: draining (new calls get 503), then stopping");
                    break limit;
                }
                _ = signals.int.recv() => { info!("SIGINT: stopping now"); break Duration::ZERO; }
                _ = signals.hup.recv() => {
                    notify(&[sd_notify::NotifyState::Reloading]);
                    self.reload(&config_path).await;
                    notify(&[sd_notify::NotifyState::Ready]);
                }
                Some(why) = recv(&mut resync) => {
                    info!(?why, "the database's configuration objects changed: reloading");
                    self.reload(&config_path).await;
                }
                () = self.shutdown.cancelled() => break SHUTDOWN_GRACE,
            }
        };
        self.stop(grace).await;
        Ok(())
    }

    /// Loads the file again, with the objects stored in the database; applies the result only
    /// when it is entirely valid.
    pub(crate) async fn reload(&self, path: &Path) {
        let objects = &self.shared.objects;
        let _guard = objects.lock().await;
        let merged = match crate::api::objects::load_with_database(
            path.to_path_buf(),
            &self.shared.store,
            objects.options(),
        )
        .await
        {
            Ok(merged) => merged,
            Err(e) => {
                report_database_objects(&e);
                error!("reload refused; the running configuration stays");
                return;
            }
        };
        for w in &merged.loaded.warnings {
            warn!("{w}");
        }
        let before = self.shared.config.load_full();
        let summary = config::summary(&merged.loaded.config);
        match self
            .acd
            .reload(Change::Config(Box::new(merged.loaded.config.clone())))
            .await
        {
            Ok(()) => {
                objects.set_catalog(&merged);
                let config = self.shared.config.load_full();
                for key in restart_only_changes(&before.server, &config.server) {
                    warn!("[server] {key} changed; it takes effect after a restart");
                }
                self.apply_sip_and_media(&config);
                // The SIP edge (trusted_peers, max_calls, sip_rate_limit, sip_listen) applies
                // to the next request; what it cannot apply is named.
                let edge = crate::sip::EndpointConfig::from_server(&config.server);
                for key in self.endpoint.reconfigure(edge).await.unwrap_or_default() {
                    warn!("[server] {key} changed; it takes effect after a restart");
                }
                // Last: whoever waits for this line finds the new configuration in force.
                info!("reloaded: {summary}");
            }
            Err(e) => error!("reload refused: {e:#}"),
        }
    }

    /// The reloaded `[[registration]]` list and `[server] rtp_ports` (new calls bind in the new
    /// range; calls in progress keep their ports).
    fn apply_sip_and_media(&self, config: &Config) {
        let applied = self
            .registrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(&config.registrations);
        info!(
            started = applied.started,
            removed = applied.removed,
            restarted = applied.restarted,
            unchanged = applied.unchanged,
            "registrations applied"
        );
        if self.rtp_ports.range() != config.server.rtp_ports {
            info!(
                from = ?self.rtp_ports.range(),
                to = ?config.server.rtp_ports,
                "rtp_ports applied to new calls"
            );
            self.rtp_ports.set_range(config.server.rtp_ports.clone());
        }
    }

    /// Stops taking calls (new INVITEs get 503), gives the calls in progress `grace` to end,
    /// then stops the SIP endpoint and every other task.
    pub(crate) async fn stop(self, grace: Duration) {
        notify(&[sd_notify::NotifyState::Stopping]);
        self.shutdown.cancel();
        self.calls.close();
        if !self.calls.is_empty() {
            info!(calls = self.calls.len(), "waiting for calls in progress");
        }
        if tokio::time::timeout(grace, self.calls.wait())
            .await
            .is_err()
        {
            warn!(
                calls = self.calls.len(),
                "drain limit ({grace:?}) passed with calls in progress: ending them with BYE"
            );
            self.hang_up.cancel();
            // Each call task sends its BYEs and submits its record, then ends.
            if tokio::time::timeout(HANG_UP_GRACE, self.calls.wait())
                .await
                .is_err()
            {
                warn!(
                    calls = self.calls.len(),
                    "calls still not ended; stopping anyway"
                );
            }
        }
        self.sip_shutdown.cancel();
        // The endpoint drains (a last BYE gets its answer) for at most 2 s.
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.stopped()).await;
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(2), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("tasks still running; exiting anyway");
        }
        let stats = self.records.shutdown(Duration::from_secs(2)).await;
        if stats.dropped > 0 {
            warn!(dropped = stats.dropped, "call records lost at shutdown");
        }
        self.shared.store.close().await;
        info!("stopped");
    }
}

/// The next reload [`watch::watch_database`] asks for; never, once it has ended.
async fn recv<T>(rx: &mut Option<tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Logs why the objects stored in the database could not be loaded with the file.
fn report_database_objects(e: &crate::api::objects::LoadError) {
    match e {
        crate::api::objects::LoadError::Store(e) => {
            error!("cannot read the configuration objects from the database: {e}");
        }
        crate::api::objects::LoadError::Config(diagnostics) => {
            for d in diagnostics {
                error!("{d}");
            }
            error!(
                "the configuration with the database's objects has {} problem(s)",
                diagnostics.len()
            );
        }
    }
}

/// The address RTP sockets bind to and SDP announces: `advertised_host` itself when it is an
/// IP address, else its first resolved address.
async fn media_address(host: &str) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host, 0))
        .await
        .with_context(|| format!("cannot resolve advertised_host {host}"))?
        .next()
        .map(|a| a.ip())
        .with_context(|| format!("advertised_host {host} has no address"))
}

/// The `[server]` keys a reload cannot apply, among those that changed: the HTTP listener and
/// the database are opened once at start. (`advertised_host` and `dns_servers` are named by the
/// SIP endpoint's own reconfiguration; every other key applies live, see the README.)
fn restart_only_changes(
    before: &crate::config::model::Server,
    after: &crate::config::model::Server,
) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if before.http_listen != after.http_listen {
        keys.push("http_listen");
    }
    if before.database != after.database {
        keys.push("database");
    }
    if before.call_journal != after.call_journal {
        keys.push("call_journal");
    }
    keys
}

/// How often the running daemon looks at its certificate's expiry (it logs at most once a
/// day, see [`config::ExpiryWatch`]).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Warns once a day while `[server] tls.certificate` expires within 30 days, and logs an
/// error once it has expired; follows reloads (a new certificate starts afresh).
async fn watch_certificate_expiry(
    config: Arc<arc_swap::ArcSwap<Config>>,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    // The configuration warned at start already (see `config::compile`).
    let mut watch = match &config.load().server.tls.identity {
        Some(id) => config::ExpiryWatch::warned_at_start(id.not_after, clock.now_utc()),
        None => config::ExpiryWatch::default(),
    };
    let mut every = tokio::time::interval(EXPIRY_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let current = config.load();
        let Some(id) = &current.server.tls.identity else {
            continue;
        };
        match watch.check(id.not_after, clock.now_utc()) {
            None => {}
            Some(config::ExpiryAlarm::Soon { not_after }) => warn!(
                certificate = %id.certificate.display(),
                not_after = %not_after.to_rfc3339(),
                "the TLS certificate expires within 30 days; renew it and send SIGHUP"
            ),
            Some(config::ExpiryAlarm::Expired { not_after }) => error!(
                certificate = %id.certificate.display(),
                not_after = %not_after.to_rfc3339(),
                "the TLS certificate has expired: TLS peers refuse it; renew it and send SIGHUP"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_listen_and_database_changes_need_a_restart() {
        let config = crate::workflow::testing::config();
        let before = config.server.clone();
        assert!(restart_only_changes(&before, &config.server).is_empty());
        let mut after = before.clone();
        after.http_listen = "127.0.0.1:1".parse().expect("address");
        after.max_calls += 1;
        assert_eq!(restart_only_changes(&before, &after), ["http_listen"]);
        after.database = crate::config::model::DatabaseUrl::Postgres(
            crate::config::model::Secret::new("postgres://db/rgsd".into()),
        );
        assert_eq!(
            restart_only_changes(&before, &after),
            ["http_listen", "database"]
        );
    }
}
