//! A blocking face of [`Client`] for callers without an async runtime.

use crate::builder::ClientBuilder;
use crate::client::{Client, Pseudonymized};
use crate::error::Error;
use crate::wire::{Mode, ReidentifyResponse, RewrapResponse};

/// [`Client`] with blocking calls. Owns a small Tokio runtime (one I/O thread) that drives the
/// batches of a call concurrently; several threads may call at once. Build it in the process
/// (or forked child) that uses it: a runtime does not survive `fork`.
#[derive(Debug)]
pub struct BlockingClient {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl ClientBuilder {
    /// Builds a [`BlockingClient`] with these settings.
    pub fn build_blocking(self) -> Result<BlockingClient, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pseudonym-client")
            .enable_all()
            .build()
            .map_err(|_| Error::Config("the client's Tokio runtime could not start".to_owned()))?;
        Ok(BlockingClient {
            client: self.build()?,
            runtime,
        })
    }
}

impl BlockingClient {
    /// See [`Client::pseudonymize`].
    pub fn pseudonymize<S: AsRef<str>>(
        &self,
        domain: &str,
        mode: Mode,
        values: &[Option<S>],
    ) -> Result<Vec<Option<String>>, Error> {
        self.runtime
            .block_on(self.client.pseudonymize(domain, mode, values))
    }

    /// See [`Client::pseudonymize_with_errors`].
    pub fn pseudonymize_with_errors<S: AsRef<str>>(
        &self,
        domain: &str,
        mode: Mode,
        values: &[Option<S>],
    ) -> Result<Pseudonymized, Error> {
        self.runtime
            .block_on(self.client.pseudonymize_with_errors(domain, mode, values))
    }

    /// See [`Client::reidentify`].
    pub fn reidentify<S: AsRef<str>>(
        &self,
        domain: &str,
        pseudonyms: &[Option<S>],
    ) -> Result<ReidentifyResponse, Error> {
        self.runtime
            .block_on(self.client.reidentify(domain, pseudonyms))
    }

    /// See [`Client::rewrap`].
    pub fn rewrap<S: AsRef<str>>(
        &self,
        domain: &str,
        pseudonyms: &[Option<S>],
    ) -> Result<RewrapResponse, Error> {
        self.runtime
            .block_on(self.client.rewrap(domain, pseudonyms))
    }

    /// See [`Client::pseudonymize_array`].
    #[cfg(feature = "arrow")]
    pub fn pseudonymize_array(
        &self,
        domain: &str,
        mode: Mode,
        array: &dyn arrow_array::Array,
    ) -> Result<arrow_array::ArrayRef, Error> {
        self.runtime
            .block_on(self.client.pseudonymize_array(domain, mode, array))
    }

    /// See [`Client::pseudonymize_array_with_errors`].
    #[cfg(feature = "arrow")]
    pub fn pseudonymize_array_with_errors(
        &self,
        domain: &str,
        mode: Mode,
        array: &dyn arrow_array::Array,
    ) -> Result<crate::arrow::ArrayWithErrors, Error> {
        self.runtime.block_on(
            self.client
                .pseudonymize_array_with_errors(domain, mode, array),
        )
    }

    /// See [`Client::reidentify_array`].
    #[cfg(feature = "arrow")]
    pub fn reidentify_array(
        &self,
        domain: &str,
        array: &dyn arrow_array::Array,
    ) -> Result<crate::arrow::ArrayWithErrors, Error> {
        self.runtime
            .block_on(self.client.reidentify_array(domain, array))
    }

    /// See [`Client::rewrap_array`].
    #[cfg(feature = "arrow")]
    pub fn rewrap_array(
        &self,
        domain: &str,
        array: &dyn arrow_array::Array,
    ) -> Result<crate::arrow::ArrayWithErrors, Error> {
        self.runtime
            .block_on(self.client.rewrap_array(domain, array))
    }

    /// The async client inside, e.g. to run several calls at once on another runtime.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
