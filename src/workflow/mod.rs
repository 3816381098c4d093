//! The pure logic of a call: schedules, IVR, the call state machine. No I/O, no clock reads.
//!
//! Must not import tokio, sockets, sqlx, `sip` or `media`.
