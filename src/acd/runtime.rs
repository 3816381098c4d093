//! The runtime: what new calls run with, and the one way to change it.
//!
//! A [`Runtime`] is one configuration in force: the configuration, the queue owners' handles,
//! the rendered prompts and the (process-wide) agent table. [`Acd`] holds the current one behind
//! an `ArcSwap` and owns everything that changes it: [`Acd::reload`] is the only entry point,
//! called by the daemon on SIGHUP, by the API after an accepted change to a configuration object
//! ([`Change::Config`]) or to group membership ([`Change::Membership`]), and by tests.
//! Calls keep the `Arc<Runtime>` they started with; the queue owners behind its handles are
//! shared with every later runtime that keeps their queue by name.
//!
//! A reload, under one lock (two reloads never interleave):
//!
//! 1. does everything that can fail first: stores the file's agent groups, renders its prompts,
//!    reads the database's groups and sign-in state; any error refuses the reload whole and
//!    the runtime in force stays;
//! 2. rebuilds the agent table's membership ([`AgentTable::set_membership`]): ids are stable,
//!    so agents keep their states and groups their sign-ins with nothing copied, and a queue
//!    owner that still holds the previous settings picks from the same groups by the same ids;
//! 3. hands the queue owners their new settings ([`Queues::reload`]), wakes every queue, and
//!    swaps in the new runtime, then the configuration the SIP router and the API read.
//!
//! The SIP edge, registrations and RTP ports are not the runtime's: the daemon applies them after
//! a SIGHUP's reload succeeded (see `docs/architecture.md`).
//!
//! Formal sign-in goes through [`Acd::set_signed_in`], under the same lock, so a reload reading
//! the store's sign-in state cannot undo a sign-in that lands in between.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::acd::agents::{AgentTable, SignInError};
use crate::acd::queue_task::Queues;
use crate::acd::routes::Routes;
use crate::config::model::{AgentGroup, Config, SipUri};
use crate::media::assets::MediaAssets;
use crate::media::tts::TextToSpeech;
use crate::store::{Store, StoreError};

/// One configuration in force: what a call gets when it starts.
#[derive(Debug)]
pub struct Runtime {
    /// Counts the runtimes of the process (0 at start, one more per reload): a route decided
    /// on one runtime is used as is only by a call that runs on the same one.
    pub generation: u64,
    pub config: Arc<Config>,
    /// `config`'s workflows by the Request-URIs that reach them, built with the runtime.
    pub routes: Arc<Routes>,
    /// The queue owners of this configuration (by `QueueId`), and those a reload retired.
    pub queues: Queues,
    /// Prompts rendered once at load, music on hold decoded once.
    pub assets: Arc<MediaAssets>,
    /// The agent table: the same one in every runtime of the process.
    pub agents: Arc<AgentTable>,
}

/// What a reload applies.
#[derive(Debug)]
pub enum Change {
    /// A new configuration file (already loaded and validated).
    Config(Box<Config>),
    /// The database's agent groups changed (API): same configuration, membership read again.
    Membership,
}

/// Why a reload was refused (the runtime in force stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot store or read the agent groups: {0}")]
    Store(#[from] StoreError),
    #[error("{0:#}")]
    Prompts(anyhow::Error),
}

/// Where text-to-speech output is cached.
#[derive(Debug, Clone)]
pub enum PromptCache {
    /// systemd's `CACHE_DIRECTORY` when set, else next to the configuration file, else (that
    /// folder not writable) the system's temporary folder.
    Default,
    /// This folder.
    At(PathBuf),
}

/// Owner of the runtime in force. See the module docs.
#[derive(Debug)]
pub struct Acd {
    current: Arc<ArcSwap<Runtime>>,
    /// The configuration the SIP router and the API read (stored after the runtime).
    routed: Arc<ArcSwap<Config>>,
    agents: Arc<AgentTable>,
    /// `None` runs without a database: the file's groups only, nobody signed in.
    store: Option<Store>,
    prompts: PromptCache,
    lock: Mutex<()>,
}

impl Acd {
    /// Builds the first runtime: stores the file's agent groups, renders the prompts, builds
    /// the agent table (with the database's version of each group and its sign-in state, which
    /// survives a restart) and starts one owner task per queue.
    ///
    /// # Errors
    /// The store could not be written or read, or a prompt could not be rendered.
    pub async fn start(
        config: Config,
        store: Option<Store>,
        prompts: PromptCache,
    ) -> Result<Self, ReloadError> {
        if let Some(store) = &store {
            store.sync_config_groups(&config.agent_groups).await?;
        }
        let assets = prompts
            .render(&config)
            .await
            .map_err(ReloadError::Prompts)?;
        let read = read_membership(&config, store.as_ref()).await?;
        let agents = Arc::new(AgentTable::new(tokio::time::Instant::now().into_std()));
        read.apply(&agents);
        let config = Arc::new(config);
        let runtime = Runtime {
            generation: 0,
            queues: Queues::spawn(&config, &agents),
            routes: Arc::new(Routes::new(&config)),
            config: Arc::clone(&config),
            assets: Arc::new(assets),
            agents: Arc::clone(&agents),
        };
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(runtime)),
            routed: Arc::new(ArcSwap::new(config)),
            agents,
            store,
            prompts,
            lock: Mutex::new(()),
        })
    }

    /// Applies `change`, or refuses it whole. See the module docs for the order.
    ///
    /// # Errors
    /// [`ReloadError`]: the runtime in force stays.
    pub async fn reload(&self, change: Change) -> Result<(), ReloadError> {
        let _guard = self.lock.lock().await;
        let old = self.current.load_full();
        let (config, assets) = match change {
            Change::Config(config) => {
                if let Some(store) = &self.store {
                    store.sync_config_groups(&config.agent_groups).await?;
                }
                let assets = self
                    .prompts
                    .render(&config)
                    .await
                    .map_err(ReloadError::Prompts)?;
                (Some(Arc::new(*config)), Arc::new(assets))
            }
            Change::Membership => (None, Arc::clone(&old.assets)),
        };
        let in_force = config.as_ref().unwrap_or(&old.config);
        let read = read_membership(in_force, self.store.as_ref()).await?;
        // Nothing can fail from here on.
        read.apply(&self.agents);
        let runtime = match config {
            Some(config) => Runtime {
                generation: old.generation + 1,
                queues: old.queues.reload(&old.config, &config, &self.agents).await,
                routes: Arc::new(Routes::new(&config)),
                config,
                assets,
                agents: Arc::clone(&self.agents),
            },
            None => Runtime {
                generation: old.generation + 1,
                queues: old.queues.clone(),
                routes: Arc::clone(&old.routes),
                config: Arc::clone(&old.config),
                assets,
                agents: Arc::clone(&self.agents),
            },
        };
        let routed = Arc::clone(&runtime.config);
        // Members may have joined: let every queue look again.
        runtime.queues.wake_all();
        self.current.store(Arc::new(runtime));
        self.routed.store(routed);
        Ok(())
    }

    /// Flips the routing flag for `agent` in `group` (by name) and wakes the group's queues.
    /// Returns `false` when routing does not know the pair (a group stored but not routed).
    ///
    /// # Errors
    /// The agent is not a member of the group, or the group is informal.
    pub async fn set_signed_in(
        &self,
        agent: &SipUri,
        group: &str,
        signed_in: bool,
    ) -> Result<bool, SignInError> {
        let _guard = self.lock.lock().await;
        let membership = self.agents.membership_full();
        let (Some(gid), Some(aid)) = (membership.group_id(group), membership.id(agent)) else {
            return Ok(false);
        };
        if signed_in {
            let now = tokio::time::Instant::now().into_std();
            self.agents.sign_in(aid, gid, now)?;
            self.current.load().queues.wake_groups(&[gid]);
        } else {
            self.agents.sign_out(aid, gid)?;
        }
        Ok(true)
    }

    /// Ends the agent's wrap-up early (whichever period is in progress) and wakes the queues of
    /// their groups. Returns whether they were in wrap-up.
    pub fn end_wrap_up(&self, agent: &SipUri) -> bool {
        let Some(aid) = self.agents.id(agent) else {
            return false;
        };
        let now = tokio::time::Instant::now().into_std();
        if !self.agents.end_wrap_up(aid, now, None) {
            return false;
        }
        let membership = self.agents.membership();
        self.current
            .load()
            .queues
            .wake_groups(membership.groups_of(aid));
        true
    }

    /// The runtime new calls get (hand it to the call controller).
    pub fn runtime(&self) -> Arc<ArcSwap<Runtime>> {
        Arc::clone(&self.current)
    }

    /// The runtime in force.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// The configuration in force, as the SIP router and the API read it.
    pub fn routed(&self) -> Arc<ArcSwap<Config>> {
        Arc::clone(&self.routed)
    }

    /// The process-wide agent table.
    pub fn agents(&self) -> &Arc<AgentTable> {
        &self.agents
    }
}

/// What [`read_membership`] read, to apply to the agent table in one go.
struct ReadMembership {
    groups: Vec<AgentGroup>,
    /// Formal sign-ins: (agent, group).
    sign_ins: Vec<(SipUri, String)>,
    /// Every stored agent's own wrap-up time (`None`: its groups' apply).
    wrap_ups: Vec<(SipUri, Option<std::time::Duration>)>,
}

impl ReadMembership {
    fn apply(&self, agents: &AgentTable) {
        agents.set_membership(&self.groups);
        agents.set_sign_ins(self.sign_ins.iter().map(|(a, g)| (a, g.as_str())));
        for (uri, wrap_up) in &self.wrap_ups {
            if let Some(agent) = agents.id(uri) {
                agents.set_agent_wrap_up(agent, *wrap_up);
            }
        }
    }
}

/// The groups routing uses (each configured group replaced by the database's version of it,
/// same name, so API edits of members, alert time, wrap-up and routing take effect; groups only
/// in the database are not routed: no queue refers to them), the formal sign-ins and the agents'
/// own wrap-up times.
async fn read_membership(
    config: &Config,
    store: Option<&Store>,
) -> Result<ReadMembership, StoreError> {
    let Some(store) = store else {
        return Ok(ReadMembership {
            groups: config.agent_groups.clone(),
            sign_ins: Vec::new(),
            wrap_ups: Vec::new(),
        });
    };
    let stored = store.list_groups().await?;
    let groups = config
        .agent_groups
        .iter()
        .map(|g| {
            stored
                .iter()
                .find(|d| d.name == g.name)
                .map_or_else(|| g.clone(), crate::store::Group::to_agent_group)
        })
        .collect();
    let sign_ins = store
        .sign_in_state()
        .await?
        .into_iter()
        .map(|s| (s.agent, s.group))
        .collect();
    let wrap_ups = store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| (a.sip_uri, a.wrap_up))
        .collect();
    Ok(ReadMembership {
        groups,
        sign_ins,
        wrap_ups,
    })
}

impl PromptCache {
    /// Renders every prompt and decodes the music, off the async threads.
    async fn render(&self, config: &Config) -> anyhow::Result<MediaAssets> {
        let dirs: Vec<PathBuf> = match self {
            Self::At(dir) => vec![dir.clone()],
            Self::Default => {
                let beside = config
                    .source
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join(".rgsd-tts-cache");
                let systemd = std::env::var_os("CACHE_DIRECTORY")
                    .and_then(|dirs| std::env::split_paths(&dirs).next())
                    .map(|d| d.join("tts"));
                systemd
                    .into_iter()
                    .chain([beside, std::env::temp_dir().join("rgsd-tts-cache")])
                    .collect()
            }
        };
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let cache = dirs
                .into_iter()
                .find(|d| is_writable_dir(d))
                .unwrap_or_else(std::env::temp_dir);
            MediaAssets::load(&config, &TextToSpeech::new(cache))
        })
        .await
        .context("prompt rendering stopped")?
        .context("cannot load prompts and music")
    }
}

/// Whether `dir` exists (created when missing) and a file can be written in it.
fn is_writable_dir(dir: &Path) -> bool {
    let probe = dir.join(".rgsd-write-probe");
    let ok = std::fs::create_dir_all(dir).is_ok() && std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The reload windows: each test failed when ids were indexes into a table every reload
/// replaced (the queue owner picked Support's agent for a queue of Sales); see the module docs.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::agents::{AgentState, CallKey};
    use crate::acd::queue_task::QueueMsg;
    use crate::config::model::QueueId;
    use crate::workflow::call::Event;
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn config(dir: &Path, groups: &[(&str, &str)]) -> Config {
        let path = dir.join("rgsd.toml");
        let mut text = String::from(
            "[server]\nsip_listen = [\"udp:127.0.0.1:0\"]\nadvertised_host = \"127.0.0.1\"\nrtp_ports = [30000, 30999]\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://rgsd.db\"\ntrusted_peers = [\"127.0.0.0/8\"]\n",
        );
        for (name, agent) in groups {
            text.push_str(&format!(
                "\n[[agent_group]]\nname = \"{name}\"\nagents = [\"sip:{agent}@127.0.0.1\"]\n"
            ));
        }
        text.push_str("\n[[queue]]\nname = \"Q\"\nagent_groups = [\"Sales\"]\n");
        text.push_str("\n[[workflow]]\nname = \"W\"\nkind = \"hunt_group\"\nuri = \"sip:w@127.0.0.1\"\nqueue = \"Q\"\n");
        std::fs::write(&path, text).unwrap();
        crate::config::load(
            &path,
            &crate::config::LoadOptions {
                check_environment: false,
            },
        )
        .unwrap_or_else(|d| panic!("{d:?}"))
        .config
    }

    fn uri(a: &str) -> SipUri {
        SipUri(format!("sip:{a}@127.0.0.1"))
    }

    /// Sales' only agent (a) busy, Support's (b) free, one call waiting in Q (over Sales).
    async fn waiting_call(
        dir: &Path,
    ) -> (
        Acd,
        mpsc::UnboundedReceiver<Event>,
        crate::acd::agents::AgentId,
    ) {
        let c1 = config(dir, &[("Sales", "a"), ("Support", "b")]);
        let acd = Acd::start(c1, None, PromptCache::At(dir.join("tts")))
            .await
            .unwrap();
        let a = acd.agents().id(&uri("a")).unwrap();
        assert!(acd.agents().claim(a, CallKey(999)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let join = QueueMsg::Join {
            call: CallKey(1),
            inbox: tx,
        };
        acd.current().queues.send(QueueId(0), join).await;
        assert!(matches!(rx.recv().await, Some(Event::EnteredQueue(_))));
        (acd, rx, a)
    }

    /// Nothing may be offered: Sales has only a, and a is busy.
    async fn no_offer(rx: &mut mpsc::UnboundedReceiver<Event>, acd: &Acd) {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        if let Ok(Some(Event::Offered(offer))) = got {
            let names: Vec<_> = offer
                .agents
                .iter()
                .map(|&x| acd.agents().uri(x).cloned())
                .collect();
            panic!("offered {names:?} for a queue of Sales, whose only agent is busy");
        }
    }

    /// (a) Two reloads in quick succession, each reordering the groups, while a call waits:
    /// the owner may take the first reconfiguration while the second's membership is in
    /// force. With indexes, the first reconfiguration's id for Sales named Support there.
    #[tokio::test(start_paused = true)]
    async fn window_a_two_quick_reloads_never_offer_another_groups_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (acd, mut rx, _) = waiting_call(dir.path()).await;
        let c2 = config(dir.path(), &[("Support", "b"), ("Sales", "a")]);
        let c3 = config(dir.path(), &[("Sales", "a"), ("Support", "b")]);
        let (r2, r3) = tokio::join!(
            acd.reload(Change::Config(Box::new(c2))),
            acd.reload(Change::Config(Box::new(c3)))
        );
        r2.unwrap();
        r3.unwrap();
        no_offer(&mut rx, &acd).await;
        assert_eq!(acd.agents().refused_releases(), 0);
    }

    /// (c) A reload and an API membership change at once: the owner's reconfiguration (new
    /// file's ids) met a table the API had rebuilt from the configuration still stored (old
    /// file's ids). Now both go through one lock, and ids do not depend on either file.
    #[tokio::test(start_paused = true)]
    async fn window_c_a_reload_and_a_membership_change_never_mix_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (acd, mut rx, a) = waiting_call(dir.path()).await;
        let c2 = config(dir.path(), &[("Support", "b"), ("Sales", "a")]);
        let (r1, r2) = tokio::join!(
            acd.reload(Change::Config(Box::new(c2))),
            acd.reload(Change::Membership)
        );
        r1.unwrap();
        r2.unwrap();
        no_offer(&mut rx, &acd).await;
        // And Sales still works: a frees up and is offered the call.
        assert!(acd.agents().release(a, CallKey(999)));
        let groups = acd.agents().membership().groups_of(a).to_vec();
        acd.current().queues.wake_groups(&groups);
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Event::Offered(offer))) => assert_eq!(offer.agents, vec![a]),
            other => panic!("expected an offer of a, got {other:?}"),
        }
        assert_eq!(acd.agents().state(a), Some(AgentState::Ringing(CallKey(1))));
    }

    /// A reload refused whole leaves the runtime in force: a prompt file that does not exist.
    #[tokio::test]
    async fn a_reload_that_cannot_render_its_prompts_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c1 = config(dir.path(), &[("Sales", "a")]);
        let acd = Acd::start(c1, None, PromptCache::At(dir.path().join("tts")))
            .await
            .unwrap();
        let before = acd.current();
        let mut c2 = config(dir.path(), &[("Sales", "a"), ("Extra", "x")]);
        c2.prompts.push(crate::config::model::Prompt {
            source: crate::config::model::PromptSource::File(dir.path().join("missing.wav")),
            language: "en-US".into(),
        });
        assert!(matches!(
            acd.reload(Change::Config(Box::new(c2))).await,
            Err(ReloadError::Prompts(_))
        ));
        assert!(Arc::ptr_eq(&before, &acd.current()));
        assert_eq!(acd.agents().membership().group_id("Extra"), None);
    }
}
