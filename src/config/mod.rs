//! Configuration: TOML file → validated [`model::Config`].
//!
//! Must not import any other rgsd layer (the WAV header probe in `media::wav` is pure and the
//! one exception).

pub mod model;
