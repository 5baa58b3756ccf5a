//! Client of the `pseudonym` service, and the wire types both sides share.
//!
//! A pipeline hands the client a whole partition of values; the client sends each distinct
//! value once, in batches, several at a time, retrying what can be retried and moving between
//! service replicas, and hands back one answer per row, in order, nulls kept:
//!
//! ```no_run
//! # async fn run() -> Result<(), pseudonym_client::Error> {
//! use pseudonym_client::{Client, Mode};
//!
//! let client = Client::builder()
//!     .url("http://127.0.0.1:8080")
//!     .api_key(std::env::var("PSEUDONYM_API_KEY").unwrap_or_default())
//!     .build()?;
//! let vins = [Some("WVWZZZ1JZXW000001"), None, Some("WVWZZZ1JZXW000001")];
//! let pseudonyms = client.pseudonymize("vin", Mode::Deterministic, &vins).await?;
//! assert_eq!(pseudonyms[0], pseudonyms[2]);
//! assert_eq!(pseudonyms[1], None);
//! # Ok(()) }
//! ```
//!
//! - [`wire`]: the JSON bodies of the HTTP API (always built; no HTTP dependency).
//! - `client`: [`Client`]'s operations and one exchange with the service (feature `http`, on by
//!   default); `builder`: its [`ClientBuilder`].
//! - [`batch`]: dedup of a partition, the batches sent concurrently, the way back to its rows.
//! - [`retry`]: [`RetryPolicy`]: what is retried, how often, how long to wait; the retry loop.
//! - `endpoints`: the replicas' URLs and failover between them.
//! - `cache`: an optional memo of pseudonyms already received, across calls.
//! - `blocking`: [`BlockingClient`] for callers without a runtime.
//! - `error`: the one [`Error`] type.
//! - `arrow` (feature `arrow`): the same operations on Arrow string arrays.
#![forbid(unsafe_code)]

pub mod wire;

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "http")]
pub mod batch;
#[cfg(feature = "http")]
mod blocking;
#[cfg(feature = "http")]
mod builder;
#[cfg(feature = "http")]
mod cache;
#[cfg(feature = "http")]
mod client;
#[cfg(feature = "http")]
mod endpoints;
#[cfg(feature = "http")]
mod error;
#[cfg(feature = "http")]
mod exchange;
#[cfg(feature = "http")]
pub mod retry;
#[cfg(feature = "http")]
mod transport;

#[cfg(feature = "http")]
pub use blocking::BlockingClient;
#[cfg(feature = "http")]
pub use builder::{
    ClientBuilder, DEFAULT_BATCH_SIZE, DEFAULT_MAX_IN_FLIGHT, DEFAULT_REQUEST_TIMEOUT,
};
#[cfg(feature = "http")]
pub use client::{Client, Pseudonymized};
#[cfg(feature = "http")]
pub use error::{Error, Failure};
#[cfg(feature = "http")]
pub use retry::RetryPolicy;
pub use wire::{ItemError, ItemErrorCode, Mode, ReidentifyResponse, RewrapResponse};
