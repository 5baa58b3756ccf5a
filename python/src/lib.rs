//! `pseudonym._internal`: the native half of the `pseudonym` Python package.
//!
//! Rust does the work; the typed Python package in `python/pseudonym/` is the face users see.
//!
//! - `client`: `Client`, the pseudonym client for lists and Arrow arrays, per process.
//! - `errors`: every Rust error becomes one of the Python exceptions of `pseudonym.errors`,
//!   here and nowhere else.

mod client;
mod errors;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _internal(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<client::Client>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The client's defaults, written once in the Rust client: the Python signatures read them.
    module.add("DEFAULT_BATCH_SIZE", pseudonym_client::DEFAULT_BATCH_SIZE)?;
    module.add(
        "DEFAULT_CONCURRENCY",
        pseudonym_client::DEFAULT_MAX_IN_FLIGHT,
    )?;
    let timeout = pseudonym_client::DEFAULT_REQUEST_TIMEOUT.as_secs_f64();
    module.add("DEFAULT_TIMEOUT", timeout)?;
    let attempts = pseudonym_client::RetryPolicy::default().max_attempts;
    module.add("DEFAULT_RETRIES", attempts - 1)?;
    // The classes of `pseudonym.errors` that Rust errors become (a test checks they exist).
    module.add("ERROR_CLASSES", errors::CLASSES)?;
    Ok(())
}
