//! The one place where Rust errors become Python exceptions (classes of `pseudonym.errors`).

use pseudonym_client::Error;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The classes of `pseudonym.errors` the errors below become, by name.
pub const CLASSES: [&str; 6] = [
    "ConfigurationError",
    "UnsupportedTypeError",
    "ServiceRejectedError",
    "ServiceUnavailableError",
    "PseudonymizationError",
    "ProtocolError",
];

/// The Python exception for a client error. Messages carry batch numbers, statuses and codes,
/// never a value.
pub fn to_py(error: Error) -> PyErr {
    Python::attach(|py| match build(py, &error) {
        Ok(exception) => exception,
        Err(import_failed) => import_failed,
    })
}

fn build(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let errors = py.import("pseudonym.errors")?;
    let message = error.to_string();
    let kwargs = PyDict::new(py);
    let class = match error {
        Error::Config(_) => "ConfigurationError",
        Error::Unsupported(_) => "UnsupportedTypeError",
        Error::Rejected { status, code, .. } => {
            kwargs.set_item("status", status)?;
            kwargs.set_item("code", code)?;
            "ServiceRejectedError"
        }
        Error::RetriesExhausted { attempts, .. } => {
            kwargs.set_item("attempts", attempts)?;
            "ServiceUnavailableError"
        }
        // Transient, like an unavailable service: the call may be made again once the
        // replicas agree.
        Error::KeyVersionsDiffer { .. } => "ServiceUnavailableError",
        Error::Unpseudonymized { errors: failed } => {
            let rows: Vec<(usize, &str)> =
                failed.iter().map(|e| (e.index, e.code.as_str())).collect();
            let instance = errors.getattr("PseudonymizationError")?.call1((rows,))?;
            return Ok(PyErr::from_value(instance));
        }
        _ => "ProtocolError",
    };
    let instance = errors.getattr(class)?.call((message,), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}

/// A `ValueError` for an argument the caller got wrong.
pub fn invalid_argument(message: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(message.into())
}
