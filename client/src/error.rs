//! The client's one error type. Messages name batches, attempts and statuses, never a value.

use std::time::Duration;

use crate::wire::ItemError;

/// Why a call failed. The whole partition fails: the client never fills in nulls or empty
/// strings for values it could not get.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input the client cannot handle, e.g. an Arrow array that holds no strings.
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// The builder's settings cannot work.
    #[error("client configuration: {0}")]
    Config(String),
    /// The service answered with an error that retrying cannot change (400, 401, 403, 413, ...).
    #[error("batch {batch} of {batches}: the service refused it: HTTP {status} {code}: {message}")]
    Rejected {
        /// 1-based batch number.
        batch: usize,
        /// Batches in the call.
        batches: usize,
        /// HTTP status.
        status: u16,
        /// The service's error code, e.g. `forbidden`.
        code: String,
        /// The service's message (it never contains values).
        message: String,
    },
    /// Every attempt failed with a retryable failure, or the retry time ran out.
    #[error(
        "batch {batch} of {batches}: failed after {attempts} attempts in {elapsed:.1?}; last failure: {last}"
    )]
    RetriesExhausted {
        /// 1-based batch number.
        batch: usize,
        /// Batches in the call.
        batches: usize,
        /// Attempts made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: Duration,
        /// The last attempt's failure.
        last: Failure,
    },
    /// The service's answer does not fit the request (wrong length, a null for a value, ...).
    #[error("batch {batch} of {batches}: the service's answer does not fit the request: {problem}")]
    Protocol {
        /// 1-based batch number.
        batch: usize,
        /// Batches in the call.
        batches: usize,
        /// What does not fit.
        problem: &'static str,
    },
    /// Format-preserving pseudonyms of one call came back under two key versions: the
    /// service's replicas pin different versions of the domain's key while a rotation rolls
    /// out. Such pseudonyms carry no version, so a mix could never be told apart: none is
    /// returned, and the call can be made again once the replicas agree.
    #[error(
        "batch {batch} of {batches}: made under key version {version}, batch 1 under {first}: the service's replicas pin different key versions for this format-preserving domain (a rotation is rolling out; /readyz shows each replica's pins); nothing is returned: send the values again once they agree"
    )]
    KeyVersionsDiffer {
        /// 1-based number of the first batch whose version differs from batch 1's.
        batch: usize,
        /// Batches in the call.
        batches: usize,
        /// Batch 1's key version.
        first: u32,
        /// That batch's key version.
        version: u32,
    },
    /// Values that have no pseudonym (format-preserving mode: a character outside the
    /// domain's alphabet, too few or too many characters). The `_with_errors` calls answer the
    /// other rows instead.
    #[error("{}", unpseudonymized(errors))]
    Unpseudonymized {
        /// The rows that failed, with their codes, in row order.
        errors: Vec<ItemError>,
    },
}

/// How many values have no pseudonym, the first row and the codes.
fn unpseudonymized(errors: &[ItemError]) -> String {
    let codes: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.code.as_str()).collect();
    let first = errors.first().map_or(0, |e| e.index);
    format!(
        "{} value(s) have no pseudonym (first row {first}; codes: {})",
        errors.len(),
        codes.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// One attempt's retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made.
    Connect,
    /// The attempt took longer than the request timeout.
    Timeout,
    /// The connection broke before the whole answer arrived.
    Interrupted,
    /// The service answered a retryable status (429, 502, 503, 504).
    Status(u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect => f.write_str("could not connect"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Interrupted => f.write_str("connection broke during the exchange"),
            Failure::Status(status) => write!(f, "HTTP {status}"),
        }
    }
}
