//! `pseudonym-service`: the stateless pseudonymization service behind `pseudonymd`, over the
//! keyed crypto of `pseudonym-engine` (re-exported here: [`engine`], [`format`], [`keyring`], [`token`],
//! [`lambda`], [`private_file`]).
//!
//! - [`auth`]: API keys (stored as SHA-256 digests), their operations and domains.
//! - [`api_key_limits`]: requests in flight per API key.
//! - [`config`]: the typed configuration, its defaults and its limits.
//! - [`formats`]: format-preserving domains: their formats and pinned key versions.
//! - [`api`]: the HTTP routes, thin handlers and the tower layers around them; extracts and
//!   answers only.
//! - [`rules`]: what a request may do and what it costs: authorization, limits, slices, the
//!   audit line, metrics; between `api` and the engine.
//! - [`arrow_body`]: the Arrow IPC stream of a request body, read within bounds checked first.
//! - [`audit`]: one line per re-identification or rewrap request, to its own sink.
//! - [`error`]: the two errors: [`ApiError`] on the request path (with its one conversion into
//!   an HTTP answer), [`Error`] for everything else.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`kms`]: keyring files sealed by an OpenBao/Vault transit key (envelope keys).
//! - [`tls`]: HTTPS and client certificates (mTLS) on rustls.
//! - [`connections`]: the cap on open connections.
//! - [`keygen`]: the changes `pseudonymd keygen` makes to a keyring file.
//! - [`tink_export`]: `keygen --export-tink-keyset`: a Tink domain's keyset, permitted and audited.
//! - [`rollout`]: `keygen`'s check that every replica holds a version before it is primary.
//! - [`keys`]: where keys come from: the environment, files, a KMS, or dev mode.
//! - [`server`]: [`server::run`], the one way to serve, until a shutdown future completes.
//! - [`reload`]: new keys and TLS files in a running service (SIGHUP).
#![forbid(unsafe_code)]

// The keyed crypto is its own crate (no HTTP in it); its modules are the service's too.
pub use pseudonym_engine::{
    Domain, Engine, Keyring, Texts, engine, format, keyring, lambda, private_file, texts, tink,
    token,
};

pub mod api;
pub mod api_key_limits;
pub mod arrow_body;
pub mod audit;
pub mod auth;
pub mod config;
pub mod connections;
pub mod error;
pub mod formats;
pub mod keygen;
pub mod keys;
pub mod kms;
pub mod metrics;
pub mod reload;
pub mod rollout;
pub mod rules;
pub mod server;
pub mod tink_export;
pub mod tls;

pub use error::{ApiError, Error};
