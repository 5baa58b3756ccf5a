//! The async [`Client`]: partitions in, batches out concurrently with retries and failover,
//! answers back in the partition's order.

use std::sync::Arc;

use futures::{Stream, StreamExt};

use crate::batch::{Batching, Plan};
use crate::builder::ClientBuilder;
use crate::cache::PseudonymCache;
use crate::error::Error;
use crate::exchange::Exchange;
use crate::transport::Transport;
use crate::wire::{ItemError, Mode, ReidentifyResponse, RewrapResponse};

/// The answer to [`Client::pseudonymize_with_errors`]: one pseudonym per value, `None` for a
/// null or a value that failed; the rows that failed, with their codes, in row order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pseudonymized {
    /// The pseudonyms, row for row.
    pub pseudonyms: Vec<Option<String>>,
    /// The rows that have no pseudonym.
    pub errors: Vec<ItemError>,
}

/// A client of the pseudonym service: cheap to clone, one connection pool for all clones.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// What every clone of a [`Client`] shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) transport: Transport,
    pub(crate) batching: Batching,
    pub(crate) cache: Option<PseudonymCache>,
}

impl Client {
    /// A builder with every default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// What this client's calls send their values with.
    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            transport: &self.inner.transport,
            batching: self.inner.batching,
        }
    }

    /// Pseudonymizes a whole partition: one pseudonym per value, same order, `None` stays
    /// `None`. Equal values are sent once (except in `randomized` mode, where each row must get
    /// its own pseudonym); batches go out concurrently and are retried per the retry policy.
    /// Fails as a whole if any batch fails, or if any value has no pseudonym
    /// ([`Error::Unpseudonymized`], format-preserving mode only).
    pub async fn pseudonymize<S: AsRef<str>>(
        &self,
        domain: &str,
        mode: Mode,
        values: &[Option<S>],
    ) -> Result<Vec<Option<String>>, Error> {
        let answer = self.pseudonymize_with_errors(domain, mode, values).await?;
        match answer.errors.is_empty() {
            true => Ok(answer.pseudonyms),
            false => Err(Error::Unpseudonymized {
                errors: answer.errors,
            }),
        }
    }

    /// [`Client::pseudonymize`], where a value without a pseudonym is `None` and listed in
    /// `errors` with its row index and code instead of failing the call.
    pub async fn pseudonymize_with_errors<S: AsRef<str>>(
        &self,
        domain: &str,
        mode: Mode,
        values: &[Option<S>],
    ) -> Result<Pseudonymized, Error> {
        let rows = values.iter().map(|v| v.as_ref().map(AsRef::as_ref));
        let plan = Plan::for_mode(mode, rows);
        let (answers, codes) = match mode {
            Mode::FormatPreserving => {
                self.exchange()
                    .pseudonymize_per_item(domain, &plan.unique)
                    .await?
            }
            _ => {
                let answers = self.pseudonymize_unique(domain, mode, &plan.unique).await?;
                let codes = vec![None; answers.len()];
                (answers, codes)
            }
        };
        Ok(Pseudonymized {
            errors: plan.row_errors(&codes),
            pseudonyms: plan.spread(&answers),
        })
    }

    /// Re-identifies a whole partition: one value per pseudonym, same order, `None` stays
    /// `None`. A pseudonym that fails is `None` in `values` and listed in `errors` with its row
    /// index and code. Fails as a whole if any batch fails.
    pub async fn reidentify<S: AsRef<str>>(
        &self,
        domain: &str,
        pseudonyms: &[Option<S>],
    ) -> Result<ReidentifyResponse, Error> {
        let rows = pseudonyms.iter().map(|v| v.as_ref().map(AsRef::as_ref));
        let plan = Plan::deduplicated_if_it_pays(rows);
        let (answers, codes) = self.exchange().reidentify(domain, &plan.unique).await?;
        let errors = plan.row_errors(&codes);
        Ok(ReidentifyResponse {
            values: plan.spread(&answers),
            errors,
        })
    }

    /// Rewraps a whole partition: each pseudonym made again under the service's primary key
    /// version, in the same mode, without any plaintext leaving the service (also turns the
    /// replaced service's tokens into ours). Same order, `None` stays `None`; a pseudonym that
    /// fails is `None` and listed in `errors` with its row index and code. Equal pseudonyms are
    /// sent once. Fails as a whole if any batch fails.
    pub async fn rewrap<S: AsRef<str>>(
        &self,
        domain: &str,
        pseudonyms: &[Option<S>],
    ) -> Result<RewrapResponse, Error> {
        let rows = pseudonyms.iter().map(|v| v.as_ref().map(AsRef::as_ref));
        let plan = Plan::deduplicated(rows);
        let (answers, codes) = self.exchange().rewrap(domain, &plan.unique).await?;
        let errors = plan.row_errors(&codes);
        Ok(RewrapResponse {
            pseudonyms: plan.spread(&answers),
            errors,
        })
    }

    /// Runs [`Client::pseudonymize`] over a stream of partitions (micro-batches) with up to
    /// `depth` partitions in flight, yielding results in the stream's order.
    pub fn pseudonymize_stream<'a, P, S>(
        &'a self,
        domain: &'a str,
        mode: Mode,
        partitions: P,
        depth: usize,
    ) -> impl Stream<Item = Result<Vec<Option<String>>, Error>> + 'a
    where
        P: Stream<Item = Vec<Option<S>>> + 'a,
        S: AsRef<str> + 'a,
    {
        partitions
            .map(move |partition| async move { self.pseudonymize(domain, mode, &partition).await })
            .buffered(depth.max(1))
    }

    /// The pseudonym of each of `unique` (no nulls in, none out), from the cache where it has
    /// them and from the service for the rest.
    async fn pseudonymize_unique(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<Vec<Option<String>>, Error> {
        let cache = match (&self.inner.cache, mode) {
            (Some(cache), Mode::Deterministic | Mode::Hash) => cache,
            _ => return self.exchange().pseudonymize(domain, mode, unique).await,
        };
        let (mut answers, misses) = cache.lookup(domain, mode, unique);
        let to_send: Vec<&str> = misses.iter().map(|&i| unique[i]).collect();
        let sent = self.exchange().pseudonymize(domain, mode, &to_send).await?;
        let pairs = to_send.iter().zip(&sent);
        cache.store(domain, mode, pairs.map(|(v, t)| (*v, t.as_deref())));
        for (index, token) in misses.into_iter().zip(sent) {
            answers[index] = token;
        }
        Ok(answers)
    }
}

/// The Arrow operations: arrays in, arrays out, no value becoming a `String` on the way (see
/// [`crate::arrow`] for types and dictionaries).
#[cfg(feature = "arrow")]
impl Client {
    /// Pseudonymizes an Arrow array; see [`crate::arrow`] for types and dictionaries. Fails as
    /// a whole if a value has no pseudonym ([`Error::Unpseudonymized`], format-preserving mode
    /// only).
    pub async fn pseudonymize_array(
        &self,
        domain: &str,
        mode: Mode,
        array: &dyn arrow_array::Array,
    ) -> Result<arrow_array::ArrayRef, Error> {
        let cache = self.inner.cache.as_ref();
        crate::arrow::pseudonymize_array(self.exchange(), cache, domain, mode, array).await
    }

    /// [`Client::pseudonymize_array`], where a value without a pseudonym is null and listed in
    /// `errors` instead of failing the call.
    pub async fn pseudonymize_array_with_errors(
        &self,
        domain: &str,
        mode: Mode,
        array: &dyn arrow_array::Array,
    ) -> Result<crate::arrow::ArrayWithErrors, Error> {
        let cache = self.inner.cache.as_ref();
        crate::arrow::pseudonymize_array_with_errors(self.exchange(), cache, domain, mode, array)
            .await
    }

    /// Re-identifies an Arrow string array of pseudonyms; failed rows are null in `values` and
    /// listed in `errors`.
    pub async fn reidentify_array(
        &self,
        domain: &str,
        array: &dyn arrow_array::Array,
    ) -> Result<crate::arrow::ArrayWithErrors, Error> {
        crate::arrow::reidentify_array(self.exchange(), domain, array).await
    }

    /// Rewraps an Arrow string array of pseudonyms (see [`Client::rewrap`]); failed rows are
    /// null in `values` and listed in `errors`.
    pub async fn rewrap_array(
        &self,
        domain: &str,
        array: &dyn arrow_array::Array,
    ) -> Result<crate::arrow::ArrayWithErrors, Error> {
        crate::arrow::rewrap_array(self.exchange(), domain, array).await
    }
}
