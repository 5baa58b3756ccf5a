//! Client of the `pseudonym` service, and the wire types both sides share.
//!
//! - [`wire`]: the JSON bodies of the HTTP API (always available, no HTTP dependency).
#![forbid(unsafe_code)]

pub mod wire;

pub use wire::{ItemErrorCode, Mode};
