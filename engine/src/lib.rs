#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod buffers;
pub mod engine;
pub mod ff1;
pub mod format;
pub mod keyring;
pub mod lambda;
pub mod preserving;
pub mod private_file;
mod short_copy;
pub mod siv;
pub mod texts;
pub mod tink;
pub mod token;

pub use engine::Engine;
pub use keyring::Keyring;
pub use pseudonym_client::wire::Domain;
pub use texts::{Texts, TextsBuilder};
