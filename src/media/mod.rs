//! Media: SDP, RTP, prompts, music on hold, DTMF, bridging.
//!
//! Must not import `sip`, `workflow` or `acd`.

pub mod clip;
pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod leg;
pub mod ports;
pub mod rtp;
pub mod sdp;
pub mod wav;
