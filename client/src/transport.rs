//! How a batch reaches the service: the endpoints in rotation, one attempt to one replica, and
//! the loop that sends a batch again as the [`RetryPolicy`] says, each attempt to the next
//! replica. Retried: connection failures, timeouts, bodies cut short, and the answers the
//! policy lists (`retry::is_retryable`); a replica that fails is passed over for a while.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::endpoints::{self, Endpoint, Route};
use crate::error::{Error, Failure};
use crate::retry::{self, RetryPolicy};
use crate::wire::{ARROW_STREAM, ErrorBody, Mode};

/// The connection pool, the API key, the replicas and how to retry: what sends a batch.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) api_key: HeaderValue,
    pub(crate) endpoints: Vec<Endpoint>,
    /// The replica the next batch starts at.
    pub(crate) next: AtomicUsize,
    /// How long a replica that failed is passed over.
    pub(crate) failover_pause: Duration,
    pub(crate) retry: RetryPolicy,
    /// When a replica last answered that it does not read the Arrow form (a service older than
    /// this client): the array operations send JSON for a while after.
    #[cfg_attr(not(feature = "arrow"), allow(dead_code))]
    pub(crate) arrow_refused_at: Mutex<Option<Instant>>,
}

/// Where a batch stands in its call, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchId {
    /// 1 for the first batch.
    pub(crate) number: usize,
    /// Batches in the call.
    pub(crate) of: usize,
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

/// Why one attempt to send a batch failed: worth another attempt, or not.
enum AttemptError {
    Retry {
        failure: Failure,
        retry_after: Option<Duration>,
    },
    Fatal(Error),
}

/// A failure worth another attempt, after at least `retry_after` if the service said so.
fn again(failure: Failure, retry_after: Option<Duration>) -> AttemptError {
    AttemptError::Retry {
        failure,
        retry_after,
    }
}

impl Transport {
    /// Sends one batch until it succeeds, fails for good, or the retry policy gives up.
    pub(crate) async fn send(
        &self,
        route: Route,
        form: Form<'_>,
        body: Bytes,
        id: BatchId,
    ) -> Result<Bytes, Error> {
        let started = Instant::now();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let endpoint = endpoints::pick(&self.endpoints, first + attempt as usize - 1);
            let (failure, retry_after) =
                match self.attempt(endpoint, route, form, body.clone(), id).await {
                    Ok(answer) => return Ok(answer),
                    Err(AttemptError::Fatal(error)) => return Err(error),
                    Err(AttemptError::Retry {
                        failure,
                        retry_after,
                    }) => (failure, retry_after),
                };
            if self.endpoints.len() > 1 {
                endpoint.pass_over(self.failover_pause);
            }
            let pause = self
                .retry
                .backoff(attempt, rand::rng().random(), retry_after);
            let out_of_time = started.elapsed() + pause >= self.retry.max_elapsed;
            if attempt >= self.retry.max_attempts || out_of_time {
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

    /// One exchange with one replica: the answer's body, if its status is a success.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        route: Route,
        form: Form<'_>,
        body: Bytes,
        id: BatchId,
    ) -> Result<Bytes, AttemptError> {
        let media_type = HeaderValue::from_static(form.media_type());
        let mut request = self
            .http
            .post(endpoint.url(route).clone())
            .header(CONTENT_TYPE, media_type.clone())
            .header(ACCEPT, media_type)
            .header("x-api-key", self.api_key.clone())
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

fn failure_of(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else if error.is_connect() {
        Failure::Connect
    } else {
        Failure::Interrupted
    }
}
