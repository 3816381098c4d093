//! The compiled, validated configuration: what every other layer reads.
//!
//! `config::load` turns the TOML file into these types (see `raw.rs` and `compile.rs`). Values
//! here are already checked: durations are in range, references are typed ids that index the
//! vectors of [`Config`], time zones are parsed, file paths are absolute. A value of these types
//! cannot point at something that does not exist, so the engine never re-validates.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDateTime, NaiveTime};
use chrono_tz::Tz;
use ipnet::IpNet;

/// Index of an agent group in [`Config::agent_groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentGroupId(pub u32);
/// Index of a queue in [`Config::queues`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u32);
/// Index of an hours set in [`Config::hours`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoursId(pub u32);
/// Index of a holiday set in [`Config::holiday_sets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolidaySetId(pub u32);
/// Index of a workflow in [`Config::workflows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkflowId(pub u32);
/// Index of a prompt in [`Config::prompts`]. The media layer renders every prompt once at load
/// time and keeps the frames in a table with the same indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromptId(pub u32);
/// Index of a question in its workflow's [`Workflow::questions`] (level one is index 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuestionId(pub u32);

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (absolute).
    pub source: PathBuf,
    pub server: Server,
    pub registrations: Vec<Registration>,
    pub agent_groups: Vec<AgentGroup>,
    pub queues: Vec<Queue>,
    pub hours: Vec<Hours>,
    pub holiday_sets: Vec<HolidaySet>,
    pub workflows: Vec<Workflow>,
    /// Every prompt of every workflow and action, deduplicated by (source, language).
    pub prompts: Vec<Prompt>,
}

impl Config {
    pub fn agent_group(&self, id: AgentGroupId) -> &AgentGroup {
        &self.agent_groups[id.0 as usize]
    }
    pub fn queue(&self, id: QueueId) -> &Queue {
        &self.queues[id.0 as usize]
    }
    pub fn hours_set(&self, id: HoursId) -> &Hours {
        &self.hours[id.0 as usize]
    }
    pub fn holiday_set(&self, id: HolidaySetId) -> &HolidaySet {
        &self.holiday_sets[id.0 as usize]
    }
    pub fn workflow(&self, id: WorkflowId) -> &Workflow {
        &self.workflows[id.0 as usize]
    }
    pub fn prompt(&self, id: PromptId) -> &Prompt {
        &self.prompts[id.0 as usize]
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    /// SIP listeners, e.g. `udp:127.0.0.1:5060`. Port 0 asks the OS for a free port.
    pub sip_listen: Vec<Listen>,
    /// Host written into Via, Contact and SDP `c=`.
    pub advertised_host: String,
    /// Inclusive range of UDP ports for RTP sockets.
    pub rtp_ports: RangeInclusive<u16>,
    /// Admin, agent and metrics HTTP API. Port 0 asks the OS for a free port.
    pub http_listen: SocketAddr,
    /// `sqlite://…` (relative paths resolved against the config folder) or `postgres://…`.
    pub database: DatabaseUrl,
    /// Music on hold for workflows without their own; a built-in tone loop when `None`.
    pub default_music_on_hold: Option<PathBuf>,
    /// An agent who declined or failed is not offered the same call again sooner (30 s to 600 s).
    pub agent_ringback_grace_period: Duration,
    /// On SIGTERM, how long calls in progress may go on (new INVITEs get 503 with Retry-After
    /// meanwhile); then each is ended with BYE and recorded (`drain_limit`, 0 s to 3,600 s).
    pub drain_limit: Duration,
    /// The file that lets the next start record calls a crash cut (`call_journal`; default
    /// `rgsd.journal` in the configuration's folder).
    pub call_journal: PathBuf,
    /// Source networks allowed to place calls. INVITEs from anywhere else get 403.
    pub trusted_peers: Vec<IpNet>,
    /// Concurrent calls answered before new INVITEs get 503 with Retry-After (`max_calls`).
    pub max_calls: u32,
    /// Whether INVITEs to agents carry call-context headers (`call_context`).
    pub call_context: bool,
    /// Token bucket for requests from each source address (`sip_rate_limit`); `None` when the
    /// file turns the limit off (`per_second = 0`).
    pub sip_rate_limit: Option<SipRateLimit>,
    /// Name servers for host names in agent and registrar URIs (`dns_servers`); empty: the
    /// system's (/etc/resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
    /// Where every outbound INVITE is sent (`outbound_proxy`), with `Route: <proxy;lr>` and the
    /// target as Request-URI (RFC 3261 §16.12 loose routing); `None`: straight to the target.
    pub outbound_proxy: Option<SipUri>,
    /// SRTP policy of every leg (`srtp`, default off); a workflow's `srtp` overrides it for its
    /// callers, `agent_srtp` for agent legs.
    pub srtp: SrtpPolicy,
    /// SRTP policy of agent (and forward) legs (`agent_srtp`; default: `srtp`).
    pub agent_srtp: SrtpPolicy,
    /// Whether SDES keys may be offered without a TLS listener (`allow_sdes_over_plain_sip`).
    pub allow_sdes_over_plain_sip: bool,
    /// RFC 4028 session interval rgsd offers on the legs it originates (`session_expires`);
    /// `None` (`"off"`) offers none.
    pub session_expires: Option<Duration>,
    /// Smallest session interval accepted from a peer (`min_se`, at least 90 s); smaller
    /// requests get 422.
    pub min_se: Duration,
    /// SIP over TLS (`tls = { certificate, private_key, client_ca, ca, handshake_timeout }`).
    pub tls: Tls,
}

/// `srtp = "off" | "offer" | "required"`: SRTP (RFC 3711) keyed by SDES (RFC 4568) on a leg.
/// See README, "SRTP".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP only; an offer with only RTP/SAVP is refused (488).
    #[default]
    Off,
    /// SRTP when the peer offers it (or accepts it); plain RTP otherwise. Outbound offers are
    /// RTP/AVP with `a=crypto` lines (best effort).
    Offer,
    /// SRTP or nothing: callers without a usable `a=crypto` get 488; outbound offers are
    /// RTP/SAVP.
    Required,
}

impl SrtpPolicy {
    /// The word used in the configuration.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Offer => "offer",
            Self::Required => "required",
        }
    }
}

/// `[server] tls`: the certificate `tls:` listeners present (also offered as the client
/// certificate outbound), who may connect, and whom outbound connections trust. Loaded and
/// checked when the configuration is compiled, so a reload with a broken file is refused.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// `certificate` and `private_key`; `None` when the table does not name them.
    pub identity: Option<TlsIdentity>,
    /// `client_ca`: inbound TLS clients must present a certificate this CA signed.
    pub client_ca: Option<TlsRoots>,
    /// `ca`: the roots outbound connections trust; `None`: the system's.
    pub ca: Option<TlsRoots>,
    /// How long an inbound client may take to finish its handshake (`handshake_timeout`).
    pub handshake_timeout: Duration,
}

/// Our certificate chain and private key, parsed from their PEM files.
#[derive(Clone)]
pub struct TlsIdentity {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// The chain as DER, end-entity certificate first.
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The key as DER. Never printed.
    pub key: std::sync::Arc<rustls_pki_types::PrivateKeyDer<'static>>,
    /// The end-entity certificate's subject alternative names (DNS names and IP addresses).
    pub names: Vec<String>,
    /// The end-entity certificate's expiry.
    pub not_after: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificate", &self.certificate)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// CA certificates from a PEM file.
#[derive(Debug, Clone)]
pub struct TlsRoots {
    pub path: PathBuf,
    pub certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// `sip_rate_limit = { per_second, burst }`: requests each source address may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipRateLimit {
    /// Sustained requests per second (at least 1).
    pub per_second: u32,
    /// Requests allowed in a burst (at least 1).
    pub burst: u32,
}

impl Default for SipRateLimit {
    /// 50 requests/s sustained, bursts of 200: far above what a trunk or PBX sends per address
    /// for the call volumes rgsd targets (a call is about 3 requests), far below a scanner's rate.
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 200,
        }
    }
}

/// A database URL, kept apart so that a password inside it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`, PATH absolute after resolution.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, as written.
    Postgres(Secret),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Postgres(_) => f.write_str("postgres://***"),
        }
    }
}

/// One SIP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS on TCP (RFC 3261 §26.2, RFC 5630).
    Tls,
}

/// A secret (password, database URL with credentials). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself. Call only where it is used (digest computation, connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

pub use super::number::{LineUri, PhoneNumber};
pub use super::uri::SipUri;

/// `[[registration]]`: register a workflow URI with an upstream registrar.
#[derive(Debug, Clone)]
pub struct Registration {
    pub aor: SipUri,
    pub registrar: SipUri,
    pub username: String,
    /// From `password_file` (trailing newline trimmed) or `password_env`.
    pub password: Secret,
    pub expires: Duration,
}

/// `[[agent_group]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentGroup {
    pub name: String,
    pub description: Option<String>,
    pub participation: Participation,
    pub routing: RoutingMethod,
    /// 10 s to 600 s, default 20 s.
    pub alert_time: Duration,
    /// 0 s (none, the default) to 3600 s: after a call answered through this group, its agent
    /// is offered nothing from any group for this long, or until they end it early.
    pub wrap_up: Duration,
    /// Ordered: serial and round robin follow this order.
    pub agents: Vec<SipUri>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Participation {
    /// In the group whenever configured; cannot sign out.
    Informal,
    /// Must sign in to the group (API or agent page) before calls reach them.
    Formal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingMethod {
    LongestIdle,
    Parallel,
    RoundRobin,
    Serial,
    Attendant,
}

/// The longest wrap-up, of a group or an agent (`docs/behaviour.md`, Wrap-up).
pub const WRAP_UP_MAX: Duration = Duration::from_secs(3600);

/// `[[queue]]`.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub description: Option<String>,
    /// Offered in this order, cycling back to the first after the last.
    pub agent_groups: Vec<AgentGroupId>,
    pub timeout: Option<QueueTimeout>,
    pub overflow: Option<Overflow>,
    /// What waiting callers are told (none by default).
    pub announce: Announcements,
}

/// A queue's announcements to waiting callers (`docs/behaviour.md`, Announcements).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Announcements {
    /// Position and expected wait: on entry, then at this interval (15 s or more); `None`: off.
    pub every: Option<Duration>,
    /// Position sentences: index `p - 1` says "position `p`", up to the limit; the last one says
    /// "more than the limit ahead". Empty when positions are not announced.
    pub position: Vec<PromptId>,
    /// Expected-wait sentences, by [`WaitBucket::index`]. Empty when waits are not announced.
    pub wait: Vec<PromptId>,
    /// A fixed prompt played at its own interval (15 s or more).
    pub periodic: Option<Periodic>,
}

impl Announcements {
    /// Whether anything is announced at all.
    pub fn any(&self) -> bool {
        self.every.is_some() || self.periodic.is_some()
    }

    /// Whether positions are said.
    pub fn says_position(&self) -> bool {
        !self.position.is_empty()
    }

    /// Whether expected waits are said.
    pub fn says_wait(&self) -> bool {
        !self.wait.is_empty()
    }

    /// The sentence for `position` (1 = next); the "more than the limit" one beyond it.
    pub fn position_prompt(&self, position: u32) -> Option<PromptId> {
        let index = usize::try_from(position.max(1) - 1).unwrap_or(usize::MAX);
        self.position
            .get(index)
            .or_else(|| self.position.last())
            .copied()
    }

    /// The sentence for an expected wait.
    pub fn wait_prompt(&self, wait: WaitBucket) -> Option<PromptId> {
        self.wait.get(wait.index()).copied()
    }
}

/// `periodic_announcement = { every, prompt }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Periodic {
    pub every: Duration,
    pub prompt: PromptId,
}

/// An expected wait as callers are told it: rounded to a step they can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitBucket {
    /// Under 45 s.
    UnderAMinute,
    /// About this many minutes: 1 to 10, then 15, 20, 25, 30, 40, 50, 60.
    Minutes(u32),
    /// Over 65 minutes.
    OverAnHour,
}

impl WaitBucket {
    /// The minute steps, in order.
    pub const MINUTES: [u32; 17] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60];

    /// Every bucket, in [`Self::index`] order.
    pub fn all() -> impl Iterator<Item = Self> {
        std::iter::once(Self::UnderAMinute)
            .chain(Self::MINUTES.iter().map(|&m| Self::Minutes(m)))
            .chain(std::iter::once(Self::OverAnHour))
    }

    /// The step nearest to `wait`.
    pub fn of(wait: Duration) -> Self {
        let secs = wait.as_secs();
        if secs < 45 {
            return Self::UnderAMinute;
        }
        if secs > 65 * 60 {
            return Self::OverAnHour;
        }
        let minutes = secs as f64 / 60.0;
        let nearest = Self::MINUTES
            .iter()
            .copied()
            .min_by(|a, b| {
                (f64::from(*a) - minutes)
                    .abs()
                    .total_cmp(&(f64::from(*b) - minutes).abs())
            })
            .unwrap_or(1);
        Self::Minutes(nearest)
    }

    /// Index into [`Announcements::wait`].
    pub fn index(self) -> usize {
        match self {
            Self::UnderAMinute => 0,
            Self::Minutes(m) => 1 + Self::MINUTES.iter().position(|&x| x == m).unwrap_or(0),
            Self::OverAnHour => 1 + Self::MINUTES.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueueTimeout {
    /// 10 s to 65,535 s, counted from queue entry.
    pub after: Duration,
    /// Never a question.
    pub action: CallAction,
}

#[derive(Debug, Clone)]
pub struct Overflow {
    /// 0 to 1,000 waiting calls; 0 overflows every call at once.
    pub max_calls: u32,
    pub candidate: OverflowCandidate,
    /// Never a question.
    pub action: CallAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowCandidate {
    Newest,
    Oldest,
}

/// What to do with a call: an optional prompt, then a target.
#[derive(Debug, Clone, PartialEq)]
pub struct CallAction {
    pub prompt: Option<PromptId>,
    pub target: ActionTarget,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionTarget {
    Disconnect,
    /// Forward to a voicemail box (a new outbound leg).
    Voicemail(SipUri),
    /// Forward to a SIP address or a number written as `sip:+E164@host` (a new outbound leg).
    Forward(SipUri),
    /// Another queue: the caller stays, the clocks restart.
    Queue(QueueId),
    /// An IVR question of the same workflow (only inside interactive workflows).
    Question(QuestionId),
}

/// `[[hours]]`: a weekly template.
#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    pub name: String,
    /// Index 0 is Monday (`chrono::Weekday::num_days_from_monday`). At most two ranges a day,
    /// each `open < close`, sorted, not overlapping; an empty day is closed.
    pub days: [Vec<TimeRange>; 7],
}

/// Open from `open` (inclusive) to `close` (exclusive), local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub open: NaiveTime,
    pub close: NaiveTime,
}

/// `[[holiday_set]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HolidaySet {
    pub name: String,
    pub holidays: Vec<Holiday>,
}

/// From `start` (inclusive) to `end` (exclusive), local to the workflow that uses the set.
#[derive(Debug, Clone, PartialEq)]
pub struct Holiday {
    pub name: String,
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowKind {
    HuntGroup,
    Interactive,
}

/// `[[workflow]]`.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub kind: WorkflowKind,
    /// The SIP URI calls arrive at (unique across workflows).
    pub uri: SipUri,
    /// The trunk number calls for this workflow arrive at (`tel:+14255550100`; unique across
    /// workflows): a Request-URI with this number reaches it (`docs/architecture.md`).
    pub line_uri: Option<LineUri>,
    pub display_number: Option<String>,
    pub description: Option<String>,
    /// Inactive workflows answer 480.
    pub active: bool,
    /// Callers never learn which agent answered.
    pub anonymous: bool,
    /// BCP 47 tag, e.g. `en-US`; picks the text-to-speech voice.
    pub language: String,
    pub time_zone: Tz,
    pub welcome: Option<PromptId>,
    /// Hunt group: a queue. Interactive: question 0.
    pub start: ActionTarget,
    /// Workflow music on hold; else the server default; else the built-in tone loop.
    pub music_on_hold: Option<PathBuf>,
    /// Open all the time when `None`.
    pub business_hours: Option<HoursId>,
    /// Played and done outside business hours; disconnect when `None`. Never a queue or question.
    pub out_of_hours: Option<CallAction>,
    pub holidays: Vec<HolidaySetId>,
    /// Played and done on a holiday; disconnect when `None`. Never a queue or question.
    pub on_holiday: Option<CallAction>,
    pub managers: Vec<SipUri>,
    /// The IVR tree, flattened; [`ActionTarget::Question`] indexes it. Empty for hunt groups.
    pub questions: Vec<Question>,
    /// SRTP policy of this workflow's callers (`srtp`); `None`: the server's `srtp`.
    pub srtp: Option<SrtpPolicy>,
}

impl Workflow {
    /// The SRTP policy of this workflow's caller legs.
    #[must_use]
    pub fn caller_srtp(&self, server: &Server) -> SrtpPolicy {
        self.srtp.unwrap_or(server.srtp)
    }
}

/// An IVR question.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub prompt: PromptId,
    pub invalid_answer: Option<PromptId>,
    pub no_answer: Option<PromptId>,
    /// Time allowed for a key after the prompt ends (default 5 s).
    pub no_input_timeout: Duration,
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// One of `0`-`9`, `*`, `#`; unique within its question.
    pub dtmf: Option<char>,
    /// Spoken phrases; accepted and kept, not yet recognised.
    pub voice: Vec<String>,
    /// A queue or the next question (or any other action but none of them repeat questions).
    pub action: CallAction,
}

/// A prompt to play: an audio file or text for text-to-speech.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prompt {
    pub source: PromptSource,
    /// The language of the workflow that uses it (picks the TTS voice).
    pub language: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PromptSource {
    /// A WAV file (absolute path), already probed: PCM 8/16-bit, A-law or µ-law.
    File(PathBuf),
    /// At most 4,096 characters, rendered by espeak-ng at load time.
    Text(String),
}
