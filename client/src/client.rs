//! The async [`Client`]: partitions in, batches out concurrently with retries and failover,
//! answers back in the partition's order.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;

use crate::batch::{BatchId, Plan};
use crate::builder::ClientBuilder;
use crate::cache::PseudonymCache;
use crate::endpoints::{Endpoint, Route};
use crate::error::{Error, Failure};
use crate::retry::{self, AttemptError, RetryPolicy, again};
use crate::wire::{
    ARROW_STREAM, ErrorBody, ItemError, ItemErrorCode, Mode, PseudonymizeRequest,
    PseudonymizeResponse, ReidentifyRequest, ReidentifyResponse, RewrapRequest, RewrapResponse,
    Text,
};

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
    pub(crate) http: reqwest::Client,
    pub(crate) api_key: HeaderValue,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) next: AtomicUsize,
    pub(crate) batch_size: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) failover_pause: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) cache: Option<PseudonymCache>,
    /// When a replica last answered that it does not read the Arrow form (a service older than
    /// it): the array operations send JSON for a while after.
    #[cfg_attr(not(feature = "arrow"), allow(dead_code))]
    pub(crate) arrow_refused_at: Mutex<Option<Instant>>,
}

/// The form of a batch on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Form<'a> {
    /// The API's JSON bodies.
    Json,
    /// An Arrow IPC stream each way; the domain and mode go in the query.
    #[cfg_attr(not(feature = "arrow"), allow(dead_code))]
    Arrow { domain: &'a str, mode: Option<Mode> },
}

impl Form<'_> {
    fn media_type(&self) -> &'static str {
        match self {
            Form::Json => "application/json",
            Form::Arrow { .. } => ARROW_STREAM,
        }
    }
}

/// An answer of one string per pseudonym sent, with the items that failed listed apart.
trait PerItemAnswer: DeserializeOwned {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>);
}

impl PerItemAnswer for PseudonymizeResponse {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>) {
        (self.pseudonyms, self.errors)
    }
}

impl PerItemAnswer for ReidentifyResponse {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>) {
        (self.values, self.errors)
    }
}

impl PerItemAnswer for RewrapResponse {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>) {
        (self.pseudonyms, self.errors)
    }
}

impl Client {
    /// A builder with every default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
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
            Mode::FormatPreserving => self.pseudonymize_per_item(domain, &plan.unique).await?,
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
        let (answers, codes) = self.reidentify_unique(domain, &plan.unique).await?;
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
        let (answers, codes) = self.rewrap_unique(domain, &plan.unique).await?;
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
    pub(crate) async fn pseudonymize_unique(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<Vec<Option<String>>, Error> {
        let cache = match (&self.inner.cache, mode) {
            (Some(cache), Mode::Deterministic | Mode::Hash) => cache,
            _ => return self.pseudonymize_from_service(domain, mode, unique).await,
        };
        let (mut answers, misses) = cache.lookup(domain, mode, unique);
        let to_send: Vec<&str> = misses.iter().map(|&i| unique[i]).collect();
        let sent = self
            .pseudonymize_from_service(domain, mode, &to_send)
            .await?;
        let pairs = to_send.iter().zip(&sent);
        cache.store(domain, mode, pairs.map(|(v, t)| (*v, t.as_deref())));
        for (index, token) in misses.into_iter().zip(sent) {
            answers[index] = token;
        }
        Ok(answers)
    }

    pub(crate) async fn pseudonymize_from_service(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<Vec<Option<String>>, Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&PseudonymizeRequest {
                domain: Text::from(domain),
                mode,
                values: texts(chunk),
            })
        };
        let answers = self
            .run_batches(
                Route::Pseudonymize,
                Form::Json,
                unique,
                encode,
                |id, n, body| {
                    let r: PseudonymizeResponse = json(id, &body)?;
                    if r.pseudonyms.len() != n || r.pseudonyms.iter().any(Option::is_none) {
                        return Err(protocol(id, "not one pseudonym per value"));
                    }
                    Ok(r.pseudonyms)
                },
            )
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// The format-preserving pseudonym of each of `unique` and, where one failed, its code.
    /// Never cached: a domain's pinned key version can change, and its pseudonyms with it.
    pub(crate) async fn pseudonymize_per_item(
        &self,
        domain: &str,
        unique: &[&str],
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&PseudonymizeRequest {
                domain: Text::from(domain),
                mode: Mode::FormatPreserving,
                values: texts(chunk),
            })
        };
        self.per_item_unique::<PseudonymizeResponse>(Route::Pseudonymize, unique, encode)
            .await
    }

    /// The value of each of `unique` and, where one failed, its code.
    pub(crate) async fn reidentify_unique(
        &self,
        domain: &str,
        unique: &[&str],
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&ReidentifyRequest {
                domain: Text::from(domain),
                pseudonyms: texts(chunk),
            })
        };
        self.per_item_unique::<ReidentifyResponse>(Route::Reidentify, unique, encode)
            .await
    }

    /// The rewrapped pseudonym of each of `unique` and, where one failed, its code.
    pub(crate) async fn rewrap_unique(
        &self,
        domain: &str,
        unique: &[&str],
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&RewrapRequest {
                domain: Text::from(domain),
                pseudonyms: texts(chunk),
            })
        };
        self.per_item_unique::<RewrapResponse>(Route::Rewrap, unique, encode)
            .await
    }

    /// Sends `unique` pseudonyms to a route that answers per item, checking that every answer
    /// is either a string or a listed error, never both or neither.
    async fn per_item_unique<R: PerItemAnswer>(
        &self,
        route: Route,
        unique: &[&str],
        encode: impl Fn(&[&str]) -> serde_json::Result<Vec<u8>>,
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let answers = self
            .run_batches(route, Form::Json, unique, encode, |id, n, body| {
                let (answers, errors) = json::<R>(id, &body)?.into_parts();
                if answers.len() != n || errors.iter().any(|e| e.index >= n) {
                    return Err(protocol(id, "not one answer per pseudonym"));
                }
                let mut codes = vec![None; n];
                for error in errors {
                    codes[error.index] = Some(error.code);
                }
                one_answer_or_code(id, &codes, |i| answers[i].is_some())?;
                Ok((answers, codes))
            })
            .await?;
        let mut values = Vec::with_capacity(unique.len());
        let mut codes = Vec::with_capacity(unique.len());
        for (batch_values, batch_codes) in answers {
            values.extend(batch_values);
            codes.extend(batch_codes);
        }
        Ok((values, codes))
    }

    /// One exchange with one replica: the answer's body, if its status is a success.
    pub(crate) async fn attempt(
        &self,
        endpoint: &Endpoint,
        route: Route,
        form: Form<'_>,
        body: Bytes,
        id: BatchId,
    ) -> Result<Bytes, AttemptError> {
        let media_type = HeaderValue::from_static(form.media_type());
        let mut request = self
            .inner
            .http
            .post(endpoint.url(route).clone())
            .header(CONTENT_TYPE, media_type.clone())
            .header(ACCEPT, media_type)
            .header("x-api-key", self.inner.api_key.clone())
            .body(body);
        if let Form::Arrow { domain, mode } = form {
            request = request.query(&[("domain", domain)]);
            if let Some(mode) = mode {
                request = request.query(&[("mode", mode.as_str())]);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|error| again(failure_of(&error), None))?;
        let status = response.status();
        if retry::is_retryable(status.as_u16()) {
            let header = response.headers().get(RETRY_AFTER);
            let wait = retry::retry_after(header.and_then(|value| value.to_str().ok()));
            return Err(again(Failure::Status(status.as_u16()), wait));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| again(failure_of(&error), None))?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => (body.error.code, body.error.message),
                Err(_) => ("unknown".to_owned(), "no error body".to_owned()),
            };
            return Err(AttemptError::Fatal(Error::Rejected {
                batch: id.number,
                batches: id.of,
                status: status.as_u16(),
                code,
                message,
            }));
        }
        Ok(bytes)
    }
}

/// A JSON answer's body read as `R`.
fn json<R: DeserializeOwned>(id: BatchId, body: &[u8]) -> Result<R, Error> {
    serde_json::from_slice(body).map_err(|_| protocol(id, "the answer is not the expected JSON"))
}

fn texts<'a>(chunk: &[&'a str]) -> Vec<Option<Text<'a>>> {
    chunk.iter().map(|v| Some(Text::from(*v))).collect()
}

fn failure_of(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else if error.is_connect() {
        Failure::Connect
    } else {
        Failure::Interrupted
    }
}

/// Checks that each item of a batch has either an answer (`answered`) or a code, never both or
/// neither.
pub(crate) fn one_answer_or_code(
    id: BatchId,
    codes: &[Option<ItemErrorCode>],
    answered: impl Fn(usize) -> bool,
) -> Result<(), Error> {
    match (0..codes.len()).any(|i| answered(i) == codes[i].is_some()) {
        true => Err(protocol(id, "a null answer without an error, or both")),
        false => Ok(()),
    }
}

pub(crate) fn protocol(id: BatchId, problem: &'static str) -> Error {
    Error::Protocol {
        batch: id.number,
        batches: id.of,
        problem,
    }
}
