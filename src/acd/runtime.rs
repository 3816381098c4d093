//! The runtime: what new calls run with, and the one way to change it.
//!
//! A [`Runtime`] is one configuration in force: the configuration, the queue owners' handles,
//! the rendered prompts and the (process-wide) agent table. [`Acd`] holds the current one behind
//! an `ArcSwap` and owns everything that changes it: [`Acd::reload`] is the only entry point,
//! called by the daemon on SIGHUP, by the API after a change of group membership, and by tests.
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
//! 3. hands the queue owners their new settings ([`Queues::reload`]) and swaps in the new
//!    runtime, then the configuration the SIP router and the API read.
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
use crate::config::model::{AgentGroup, Config, SipUri};
use crate::media::assets::MediaAssets;
use crate::media::tts::TextToSpeech;
use crate::store::{Store, StoreError};

/// One configuration in force: what a call gets when it starts.
#[derive(Debug)]
pub struct Runtime {
    pub config: Arc<Config>,
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
        let (groups, sign_ins) = read_membership(&config, store.as_ref()).await?;
        let agents = Arc::new(AgentTable::new(tokio::time::Instant::now().into_std()));
        agents.set_membership(&groups);
        agents.set_sign_ins(sign_ins.iter().map(|(a, g)| (a, g.as_str())));
        let config = Arc::new(config);
        let runtime = Runtime {
            queues: Queues::spawn(&config, &agents),
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
        let (groups, sign_ins) = read_membership(in_force, self.store.as_ref()).await?;
        // Nothing can fail from here on.
        self.agents.set_membership(&groups);
        self.agents
            .set_sign_ins(sign_ins.iter().map(|(a, g)| (a, g.as_str())));
        let runtime = match config {
            Some(config) => Runtime {
                queues: old.queues.reload(&old.config, &config, &self.agents).await,
                config,
                assets,
                agents: Arc::clone(&self.agents),
            },
            None => Runtime {
                queues: old.queues.clone(),
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

/// The groups routing uses (each configured group replaced by the database's version of it,
/// same name, so API edits of members, alert time and routing take effect; groups only in the
/// database are not routed: no queue refers to them) and the formal sign-ins (agent, group).
async fn read_membership(
    config: &Config,
    store: Option<&Store>,
) -> Result<(Vec<AgentGroup>, Vec<(SipUri, String)>), StoreError> {
    let Some(store) = store else {
        return Ok((config.agent_groups.clone(), Vec::new()));
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
    Ok((groups, sign_ins))
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
