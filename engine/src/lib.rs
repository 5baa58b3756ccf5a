//! `pseudonym-engine`: the keyed crypto of the pseudonym service, with no HTTP in it.
//!
//! - [`engine`]: AES-SIV (RFC 5297) and HMAC-SHA256 over batches of values, per key version and
//!   domain; the [`Engine`] the service, the benchmarks and the load generator's baseline share.
//! - `buffers`: the one buffer a batch's values are sealed or opened in, in place.
//! - [`siv`]: AES-SIV (RFC 5297) for batches, checked against the `aes-siv` crate.
//! - [`ff1`]: FF1 (NIST SP 800-38G) with AES-256 for batches, checked against the `fpe` crate.
//! - [`format`]: the alphabets of format-preserving domains, and values split into numerals.
//! - [`preserving`]: format-preserving pseudonyms, per domain format and key version.
//! - [`keyring`]: numbered key versions and the primary one; file format, generation.
//! - [`token`]: the printable, self-describing form of a pseudonym.
//! - [`tink`]: deterministic pseudonyms in Tink's format, and a domain's Tink keyset.
//! - [`texts`]: the strings of a batch in one buffer: its tokens, or its values.
//! - [`seed`]: the replaced service's tokens and key, read and written for migration.
//! - [`private_file`]: reading and writing files that hold keys or grant rights, safely.
//! - `short_copy`: copies of a value's or a token's few bytes without a call to `memmove`.
#![forbid(unsafe_code)]

mod buffers;
pub mod engine;
pub mod ff1;
pub mod format;
pub mod keyring;
pub mod preserving;
pub mod private_file;
pub mod seed;
mod short_copy;
pub mod siv;
pub mod texts;
pub mod tink;
pub mod token;

pub use engine::Engine;
pub use keyring::Keyring;
pub use pseudonym_client::wire::Domain;
pub use texts::{Texts, TextsBuilder};
