//! Media: SDP, RTP, prompts, music on hold, DTMF, bridging.
//!
//! Must not import `sip`, `workflow` or `acd` (only `config` model types).
//!
//! - [`leg`]: the API the call controller uses: [`leg::MediaEngine`] creates a [`leg::Leg`]
//!   from an SDP offer (or makes an offer), and the leg plays prompts and music, reports digits
//!   and bridges to another leg.
//! - [`assets`]: [`assets::MediaAssets`], every prompt and music file decoded once at load.
//! - [`sdp`]: offer/answer rules. [`rtp`]: stream numbering and the relay. [`ports`]: the RTP
//!   port pool. `pacer` (private): the playback clock shared by every leg, a timer wheel per
//!   runtime worker. [`dtmf`]: RFC 4733, SIP INFO and in-band digits. [`clip`], [`codec`],
//!   [`g711`], [`wav`], [`tts`]: audio.

pub(crate) mod assets;
pub(crate) mod clip;
pub(crate) mod codec;
pub(crate) mod dtmf;
pub(crate) mod g711;
pub(crate) mod leg;
mod pacer;
pub(crate) mod ports;
pub(crate) mod rtp;
mod sdp;
mod srtp;
pub(crate) mod tts;
pub(crate) mod wav;

pub use clip::tone_loop;
pub use codec::Codec;
pub use g711::ulaw_to_linear;
pub use leg::{LegOptions, MediaEngine};
pub use ports::PortPool;
pub use rtp::{MAX_PACKET, Relay, RtpStream, StreamFormat};
pub use wav::config_probe;
