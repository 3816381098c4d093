//! Media: SDP, RTP, prompts, music on hold, DTMF, bridging.
//!
//! Must not import `sip`, `workflow` or `acd`.

pub mod wav;
