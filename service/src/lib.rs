//! `pseudonym-service`: the stateless pseudonymization service behind `pseudonymd`.
//!
//! - [`keyring`]: numbered key versions and the primary one; file format, generation.
//! - [`engine`]: the keyed crypto (AES-SIV, HMAC-SHA256) over batches; no HTTP in it.
//! - [`token`]: the printable, self-describing form of a pseudonym.
//! - [`domain`]: the labels that separate one column's pseudonyms from another's.
#![forbid(unsafe_code)]

pub mod domain;
pub mod engine;
pub mod keyring;
pub mod token;

pub use domain::Domain;
pub use engine::Engine;
pub use keyring::Keyring;
