//! The async [`Client`]: partitions in, batches out concurrently with retries and failover,
//! answers back in the partition's order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use rand::Rng;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::de::DeserializeOwned;

use crate::batch::Plan;
use crate::cache::PseudonymCache;
use crate::error::{Error, Failure};
use crate::retry::{self, RetryPolicy};
use crate::wire::{
    ErrorBody, ItemError, ItemErrorCode, Mode, PseudonymizeRequest, PseudonymizeResponse,
    ReidentifyRequest, ReidentifyResponse, RewrapRequest, RewrapResponse, Text,
};

/// Values per request unless set: near the service's measured sweet spot (see README).
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// Requests in flight per call unless set.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// Settings of a [`Client`]; every one has a documented default.
#[derive(Debug)]
pub struct ClientBuilder {
    urls: Vec<String>,
    api_key: Option<SecretString>,
    batch_size: usize,
    max_in_flight: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
    failover_pause: Duration,
    retry: RetryPolicy,
    cache_capacity: usize,
    root_certificates: Vec<Vec<u8>>,
    identity: Option<SecretBox<Vec<u8>>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            urls: Vec::new(),
            api_key: None,
            batch_size: DEFAULT_BATCH_SIZE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            failover_pause: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            cache_capacity: 0,
            root_certificates: Vec::new(),
            identity: None,
        }
    }
}

impl ClientBuilder {
    /// Adds a service URL, e.g. `http://127.0.0.1:8080`. With several, batches are spread over
    /// them and move off one that fails.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Adds several service URLs.
    pub fn urls<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// The API key, sent as `x-api-key`. Required.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// Most values per request. Default [`DEFAULT_BATCH_SIZE`]; must not exceed the service's
    /// `limits.max_values`.
    pub fn batch_size(mut self, values: usize) -> Self {
        self.batch_size = values;
        self
    }

    /// Most requests in flight at once for one call. Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Time to open a connection. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time for one attempt of one request, answer included. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a URL that failed is passed over while others remain. Default 2 s.
    pub fn failover_pause(mut self, pause: Duration) -> Self {
        self.failover_pause = pause;
        self
    }

    /// How failed batches are retried. Default [`RetryPolicy::default`].
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Remember up to this many `deterministic` and `hash` pseudonyms across calls, so values
    /// that repeat across record batches or micro-batches are sent once. Default 0 (off).
    /// Memory: roughly the value and token lengths plus 100 bytes per entry. When full, it keeps
    /// what it has and remembers nothing more.
    pub fn cache_capacity(mut self, pseudonyms: usize) -> Self {
        self.cache_capacity = pseudonyms;
        self
    }

    /// Trusts the CA certificates in this PEM for `https` URLs, besides the public web roots:
    /// for a service whose certificate a private CA signed.
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Presents this client certificate to services that require one (mTLS): a PEM holding
    /// the private key and the certificate chain, leaf first.
    pub fn client_identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some(SecretBox::new(Box::new(pem.into())));
        self
    }

    /// Checks the settings and builds the client and its connection pool.
    pub fn build(self) -> Result<Client, Error> {
        let config = |message: &str| Error::Config(message.to_owned());
        if self.urls.is_empty() {
            return Err(config("at least one service URL is needed"));
        }
        if self.batch_size == 0 || self.max_in_flight == 0 || self.retry.max_attempts == 0 {
            return Err(config(
                "batch_size, max_in_flight and max_attempts must be at least 1",
            ));
        }
        let api_key = self.api_key.ok_or_else(|| config("an API key is needed"))?;
        let mut api_key = HeaderValue::from_str(api_key.expose_secret().trim())
            .map_err(|_| config("the API key holds characters not allowed in a header"))?;
        api_key.set_sensitive(true);
        let endpoints = self
            .urls
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        let mut http = reqwest::Client::builder()
            // A redirect would re-send the API key and the values to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .pool_max_idle_per_host(self.max_in_flight.max(16))
            .tcp_nodelay(true);
        for pem in &self.root_certificates {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| config("root certificates: not a PEM certificate bundle"))?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = &self.identity {
            let identity = reqwest::Identity::from_pem(identity.expose_secret()).map_err(|_| {
                config("client identity: not a PEM private key with its certificate chain")
            })?;
            http = http.identity(identity);
        }
        let http = http
            .build()
            .map_err(|_| config("the HTTP client could not be built"))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_key,
                endpoints,
                next: AtomicUsize::new(0),
                batch_size: self.batch_size,
                max_in_flight: self.max_in_flight,
                failover_pause: self.failover_pause,
                retry: self.retry,
                cache: (self.cache_capacity > 0).then(|| PseudonymCache::new(self.cache_capacity)),
            }),
        })
    }
}

/// A client of the pseudonym service: cheap to clone, one connection pool for all clones.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api_key: HeaderValue,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    batch_size: usize,
    max_in_flight: usize,
    failover_pause: Duration,
    retry: RetryPolicy,
    cache: Option<PseudonymCache>,
}

#[derive(Debug)]
struct Endpoint {
    pseudonymize: Url,
    reidentify: Url,
    rewrap: Url,
    passed_over_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, Error> {
        let invalid = || Error::Config("a service URL is not a valid http(s) URL".to_owned());
        let mut base = Url::parse(url).map_err(|_| invalid())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid());
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Endpoint {
            pseudonymize: base.join("v1/pseudonymize").map_err(|_| invalid())?,
            reidentify: base.join("v1/reidentify").map_err(|_| invalid())?,
            rewrap: base.join("v1/rewrap").map_err(|_| invalid())?,
            passed_over_until: Mutex::new(None),
        })
    }

    fn is_passed_over(&self, now: Instant) -> bool {
        self.passed_over_until
            .lock()
            .map(|until| until.is_some_and(|until| until > now))
            .unwrap_or(false)
    }

    fn pass_over(&self, pause: Duration) {
        if let Ok(mut until) = self.passed_over_until.lock() {
            *until = Some(Instant::now() + pause);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Pseudonymize,
    Reidentify,
    Rewrap,
}

/// An answer of one string per pseudonym sent, with the items that failed listed apart.
trait PerItemAnswer: DeserializeOwned {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>);
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

/// Where a batch stands in its call, for error messages.
#[derive(Debug, Clone, Copy)]
struct BatchId {
    number: usize,
    of: usize,
}

enum AttemptError {
    Retry {
        failure: Failure,
        retry_after: Option<Duration>,
    },
    Fatal(Error),
}

impl Client {
    /// A builder with every default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Pseudonymizes a whole partition: one pseudonym per value, same order, `None` stays
    /// `None`. Equal values are sent once (except in `randomized` mode, where each row must get
    /// its own pseudonym); batches go out concurrently and are retried per the retry policy.
    /// Fails as a whole if any batch fails.
    pub async fn pseudonymize<S: AsRef<str>>(
        &self,
        domain: &str,
        mode: Mode,
        values: &[Option<S>],
    ) -> Result<Vec<Option<String>>, Error> {
        let rows = values.iter().map(|v| v.as_ref().map(AsRef::as_ref));
        let plan = plan(mode, rows);
        let answers = self.pseudonymize_unique(domain, mode, &plan.unique).await?;
        Ok(plan.spread(&answers))
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
        let plan = Plan::deduplicated(rows);
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
        cache.store(domain, mode, &to_send, &sent);
        for (index, token) in misses.into_iter().zip(sent) {
            answers[index] = token;
        }
        Ok(answers)
    }

    async fn pseudonymize_from_service(
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
                unique,
                encode,
                |id, n, r: PseudonymizeResponse| {
                    if r.pseudonyms.len() != n || r.pseudonyms.iter().any(Option::is_none) {
                        return Err(protocol(id, "not one pseudonym per value"));
                    }
                    Ok(r.pseudonyms)
                },
            )
            .await?;
        Ok(answers.into_iter().flatten().collect())
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
            .run_batches(route, unique, encode, |id, n, r: R| {
                let (answers, errors) = r.into_parts();
                if answers.len() != n || errors.iter().any(|e| e.index >= n) {
                    return Err(protocol(id, "not one answer per pseudonym"));
                }
                let mut codes = vec![None; n];
                for error in errors {
                    codes[error.index] = Some(error.code);
                }
                if answers
                    .iter()
                    .zip(&codes)
                    .any(|(v, c)| v.is_none() == c.is_none())
                {
                    return Err(protocol(id, "a null answer without an error, or both"));
                }
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

    /// Cuts `unique` into batches, encodes each with `encode` when its turn comes, sends them with at most `max_in_flight` in flight, checks
    /// each answer with `accept`, and returns the accepted answers in batch order.
    async fn run_batches<Resp, Out>(
        &self,
        route: Route,
        unique: &[&str],
        encode: impl Fn(&[&str]) -> serde_json::Result<Vec<u8>>,
        accept: impl Fn(BatchId, usize, Resp) -> Result<Out, Error>,
    ) -> Result<Vec<Out>, Error>
    where
        Resp: DeserializeOwned,
    {
        let of = unique.len().div_ceil(self.inner.batch_size);
        let mut chunks = unique.chunks(self.inner.batch_size).enumerate();
        let mut answers: Vec<Option<Out>> = (0..of).map(|_| None).collect();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.inner.max_in_flight {
                let Some((index, chunk)) = chunks.next() else {
                    break;
                };
                let id = BatchId {
                    number: index + 1,
                    of,
                };
                let body =
                    encode(chunk).map_err(|_| protocol(id, "the request could not be encoded"))?;
                in_flight.push(self.send_batch::<Resp>(route, Bytes::from(body), id, chunk.len()));
            }
            let Some(sent) = in_flight.next().await else {
                break;
            };
            let (id, len, response) = sent?;
            answers[id.number - 1] = Some(accept(id, len, response)?);
        }
        Ok(answers.into_iter().flatten().collect())
    }

    async fn send_batch<R: DeserializeOwned>(
        &self,
        route: Route,
        body: Bytes,
        id: BatchId,
        len: usize,
    ) -> Result<(BatchId, usize, R), Error> {
        Ok((id, len, self.send(route, body, id).await?))
    }

    /// Sends one batch until it succeeds, fails for good, or the retry policy gives up.
    async fn send<R: DeserializeOwned>(
        &self,
        route: Route,
        body: Bytes,
        id: BatchId,
    ) -> Result<R, Error> {
        let inner = &self.inner;
        let started = Instant::now();
        let first = inner.next.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let endpoint = self.pick_endpoint(first + attempt as usize - 1);
            let (failure, retry_after) = match self.attempt(endpoint, route, body.clone(), id).await
            {
                Ok(answer) => return Ok(answer),
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Retry {
                    failure,
                    retry_after,
                }) => (failure, retry_after),
            };
            if inner.endpoints.len() > 1 {
                endpoint.pass_over(inner.failover_pause);
            }
            let pause = inner
                .retry
                .backoff(attempt, rand::rng().random(), retry_after);
            let out_of_time = started.elapsed() + pause >= inner.retry.max_elapsed;
            if attempt >= inner.retry.max_attempts || out_of_time {
                return Err(Error::RetriesExhausted {
                    batch: id.number,
                    batches: id.of,
                    attempts: attempt,
                    elapsed: started.elapsed(),
                    last: failure,
                });
            }
            tracing::debug!(batch = id.number, attempt, %failure, ?pause, "retrying batch");
            tokio::time::sleep(pause).await;
        }
    }

    /// The `turn`-th endpoint in rotation, skipping those passed over while any other is not.
    fn pick_endpoint(&self, turn: usize) -> &Endpoint {
        let endpoints = &self.inner.endpoints;
        let now = Instant::now();
        (0..endpoints.len())
            .map(|k| &endpoints[(turn + k) % endpoints.len()])
            .find(|endpoint| !endpoint.is_passed_over(now))
            .unwrap_or(&endpoints[turn % endpoints.len()])
    }

    async fn attempt<R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        route: Route,
        body: Bytes,
        id: BatchId,
    ) -> Result<R, AttemptError> {
        let url = match route {
            Route::Pseudonymize => &endpoint.pseudonymize,
            Route::Reidentify => &endpoint.reidentify,
            Route::Rewrap => &endpoint.rewrap,
        };
        let response = self
            .inner
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("x-api-key", self.inner.api_key.clone())
            .body(body)
            .send()
            .await
            .map_err(|error| retry(failure_of(&error), None))?;
        let status = response.status();
        if retry::is_retryable(status.as_u16()) {
            let header = response.headers().get(RETRY_AFTER);
            let wait = retry::retry_after(header.and_then(|value| value.to_str().ok()));
            return Err(retry(Failure::Status(status.as_u16()), wait));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| retry(failure_of(&error), None))?;
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
        serde_json::from_slice(&bytes)
            .map_err(|_| AttemptError::Fatal(protocol(id, "the answer is not the expected JSON")))
    }
}

/// How a partition is sent in `mode`: deduplicated, except where each row needs its own answer.
pub(crate) fn plan<'a>(
    mode: Mode,
    rows: impl ExactSizeIterator<Item = Option<&'a str>>,
) -> Plan<'a> {
    match mode {
        Mode::Randomized => Plan::every_row(rows),
        Mode::Deterministic | Mode::Hash => Plan::deduplicated(rows),
    }
}

fn texts<'a>(chunk: &[&'a str]) -> Vec<Option<Text<'a>>> {
    chunk.iter().map(|v| Some(Text::from(*v))).collect()
}

fn retry(failure: Failure, retry_after: Option<Duration>) -> AttemptError {
    AttemptError::Retry {
        failure,
        retry_after,
    }
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

fn protocol(id: BatchId, problem: &'static str) -> Error {
    Error::Protocol {
        batch: id.number,
        batches: id.of,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let no_url = Client::builder().api_key("k").build();
        assert!(matches!(no_url, Err(Error::Config(_))));
        let no_key = Client::builder().url("http://127.0.0.1:1").build();
        assert!(matches!(no_key, Err(Error::Config(_))));
        let bad_url = Client::builder().url("ftp://x").api_key("k").build();
        assert!(matches!(bad_url, Err(Error::Config(_))));
        let zero = Client::builder()
            .url("http://127.0.0.1:1")
            .api_key("k")
            .batch_size(0)
            .build();
        assert!(matches!(zero, Err(Error::Config(_))));
    }

    #[test]
    fn urls_with_a_path_keep_it() {
        let endpoint = Endpoint::parse("http://host:1/pseudonym").expect("valid");
        assert_eq!(
            endpoint.pseudonymize.as_str(),
            "http://host:1/pseudonym/v1/pseudonymize"
        );
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let client = Client::builder()
            .url("http://127.0.0.1:1")
            .api_key("pk_very-secret")
            .build()
            .expect("valid");
        assert!(!format!("{client:?}").contains("very-secret"));
    }
}
