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
    Ok(())
}
