//! The native `Client`: a [`BlockingClient`] per process, used with the GIL released.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::make_array;
use arrow_data::ArrayData;
use arrow_pyarrow::PyArrowType;
use pseudonym_client::{BlockingClient, Client as RustClient, Mode, RetryPolicy};
use pyo3::prelude::*;

use crate::errors::{invalid_argument, to_py};

/// Rows that failed re-identification or rewrapping: `(row index, code)`.
type ItemErrors = Vec<(usize, &'static str)>;

/// What a client is built from; kept so a forked child can build its own.
struct Settings {
    urls: Vec<String>,
    api_key: secrecy::SecretString,
    batch_size: usize,
    concurrency: usize,
    timeout: Duration,
    attempts: u32,
    cache_size: usize,
    root_certificates: Option<Vec<u8>>,
    identity: Option<secrecy::SecretBox<Vec<u8>>>,
}

impl Settings {
    fn build(&self) -> Result<BlockingClient, pseudonym_client::Error> {
        use secrecy::ExposeSecret;
        let mut builder = RustClient::builder();
        if let Some(pem) = &self.root_certificates {
            builder = builder.root_certificates_pem(pem.clone());
        }
        if let Some(pem) = &self.identity {
            builder = builder.client_identity_pem(pem.expose_secret().clone());
        }
        builder
            .urls(self.urls.iter().cloned())
            .api_key(self.api_key.expose_secret())
            .batch_size(self.batch_size)
            .max_in_flight(self.concurrency)
            .request_timeout(self.timeout)
            .retry_policy(RetryPolicy {
                max_attempts: self.attempts,
                ..RetryPolicy::default()
            })
            .cache_capacity(self.cache_size)
            .build_blocking()
    }
}

/// The native client. Spark's Python workers fork: a client made before a fork is never used
/// after it; each process builds its own runtime and connection pool on first use.
#[pyclass(module = "pseudonym._internal", frozen)]
pub struct Client {
    settings: Settings,
    native: Mutex<Option<(u32, Arc<BlockingClient>)>>,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        urls, api_key, batch_size, concurrency, timeout, attempts, cache_size,
        root_certificates=None, identity=None,
    ))]
    #[allow(clippy::too_many_arguments)] // mirrors the keyword arguments of pseudonym.Client
    fn new(
        urls: Vec<String>,
        api_key: String,
        batch_size: usize,
        concurrency: usize,
        timeout: f64,
        attempts: u32,
        cache_size: usize,
        root_certificates: Option<Vec<u8>>,
        identity: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| invalid_argument("timeout must be a positive number of seconds"))?;
        let settings = Settings {
            urls,
            api_key: api_key.into(),
            batch_size,
            concurrency,
            timeout,
            attempts,
            cache_size,
            root_certificates,
            identity: identity.map(|pem| secrecy::SecretBox::new(Box::new(pem))),
        };
        let native = settings.build().map_err(to_py)?;
        Ok(Client {
            settings,
            native: Mutex::new(Some((std::process::id(), Arc::new(native)))),
        })
    }

    /// Pseudonyms of a list of optional strings, in order, and the rows that have none
    /// (format-preserving mode only).
    fn pseudonymize_list(
        &self,
        py: Python<'_>,
        domain: String,
        mode: &str,
        values: Vec<Option<String>>,
    ) -> PyResult<(Vec<Option<String>>, ItemErrors)> {
        let (mode, native) = (parse_mode(mode)?, self.native()?);
        let answer = py
            .detach(|| native.pseudonymize_with_errors(&domain, mode, &values))
            .map_err(to_py)?;
        Ok((answer.pseudonyms, item_errors(&answer.errors)))
    }

    /// Values of a list of optional pseudonyms, and the rows that failed.
    fn reidentify_list(
        &self,
        py: Python<'_>,
        domain: String,
        pseudonyms: Vec<Option<String>>,
    ) -> PyResult<(Vec<Option<String>>, ItemErrors)> {
        let native = self.native()?;
        let answer = py
            .detach(|| native.reidentify(&domain, &pseudonyms))
            .map_err(to_py)?;
        Ok((answer.values, item_errors(&answer.errors)))
    }

    /// A list of optional pseudonyms made again under the primary key version, and the rows
    /// that failed.
    fn rewrap_list(
        &self,
        py: Python<'_>,
        domain: String,
        pseudonyms: Vec<Option<String>>,
    ) -> PyResult<(Vec<Option<String>>, ItemErrors)> {
        let native = self.native()?;
        let answer = py
            .detach(|| native.rewrap(&domain, &pseudonyms))
            .map_err(to_py)?;
        Ok((answer.pseudonyms, item_errors(&answer.errors)))
    }

    /// Pseudonyms of a pyarrow string array (read through the C data interface, no copy),
    /// and the rows that have none (format-preserving mode only).
    fn pseudonymize_arrow(
        &self,
        py: Python<'_>,
        domain: String,
        mode: &str,
        array: PyArrowType<ArrayData>,
    ) -> PyResult<(PyArrowType<ArrayData>, ItemErrors)> {
        let (mode, native) = (parse_mode(mode)?, self.native()?);
        let input = make_array(array.0);
        py.detach(|| native.pseudonymize_array_with_errors(&domain, mode, input.as_ref()))
            .map(arrow_answer)
            .map_err(to_py)
    }

    /// Values of a pyarrow array of pseudonyms, and the rows that failed.
    fn reidentify_arrow(
        &self,
        py: Python<'_>,
        domain: String,
        array: PyArrowType<ArrayData>,
    ) -> PyResult<(PyArrowType<ArrayData>, ItemErrors)> {
        let native = self.native()?;
        let input = make_array(array.0);
        py.detach(|| native.reidentify_array(&domain, input.as_ref()))
            .map(arrow_answer)
            .map_err(to_py)
    }

    /// A pyarrow array of pseudonyms made again under the primary key version, and the rows
    /// that failed.
    fn rewrap_arrow(
        &self,
        py: Python<'_>,
        domain: String,
        array: PyArrowType<ArrayData>,
    ) -> PyResult<(PyArrowType<ArrayData>, ItemErrors)> {
        let native = self.native()?;
        let input = make_array(array.0);
        py.detach(|| native.rewrap_array(&domain, input.as_ref()))
            .map(arrow_answer)
            .map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Client(urls={:?}, batch_size={}, concurrency={})",
            self.settings.urls, self.settings.batch_size, self.settings.concurrency
        )
    }
}

impl Client {
    /// This process's client, built on first use after a fork.
    fn native(&self) -> PyResult<Arc<BlockingClient>> {
        let pid = std::process::id();
        let mut slot = self
            .native
            .lock()
            .map_err(|_| invalid_argument("the client was poisoned by an earlier panic"))?;
        match slot.take() {
            Some((owner, client)) if owner == pid => {
                *slot = Some((owner, client.clone()));
                return Ok(client);
            }
            // Made in the parent before a fork: its runtime's threads do not exist here, and
            // dropping it could wait for them forever. It is left alone, never used again.
            Some(inherited) => std::mem::forget(inherited),
            None => {}
        }
        let client = Arc::new(self.settings.build().map_err(to_py)?);
        *slot = Some((pid, client.clone()));
        Ok(client)
    }
}

/// An Arrow answer of one item per row, and its failed rows, for Python.
fn arrow_answer(
    answer: pseudonym_client::arrow::ArrayWithErrors,
) -> (PyArrowType<ArrayData>, ItemErrors) {
    (
        PyArrowType(answer.values.to_data()),
        item_errors(&answer.errors),
    )
}

fn item_errors(errors: &[pseudonym_client::ItemError]) -> ItemErrors {
    errors.iter().map(|e| (e.index, e.code.as_str())).collect()
}

fn parse_mode(mode: &str) -> PyResult<Mode> {
    mode.parse()
        .map_err(|error: pseudonym_client::wire::UnknownMode| invalid_argument(error.to_string()))
}
