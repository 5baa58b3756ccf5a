//! [`ClientBuilder`]: every setting of a [`Client`] with its default, and the checks that refuse
//! settings that cannot work before anything is sent.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::batch::Batching;
use crate::cache::PseudonymCache;
use crate::client::{Client, Inner};
use crate::endpoints::Endpoint;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::transport::Transport;

/// Values per request unless set: near the service's measured sweet spot (see README).
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// Requests in flight per call unless set.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// How long one request may take unless set.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
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
    /// Memory: the value and token lengths plus 25 to 50 bytes per entry (the text grows by
    /// doubling, so up to twice the lengths). When full, it keeps what it has and remembers
    /// nothing more.
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
        let transport = Transport {
            http,
            api_key,
            endpoints,
            next: AtomicUsize::new(0),
            failover_pause: self.failover_pause,
            retry: self.retry,
            arrow_refused_at: Mutex::new(None),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                batching: Batching {
                    size: self.batch_size,
                    in_flight: self.max_in_flight,
                },
                cache: (self.cache_capacity > 0).then(|| PseudonymCache::new(self.cache_capacity)),
            }),
        })
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
    fn debug_output_hides_the_api_key() {
        let client = Client::builder()
            .url("http://127.0.0.1:1")
            .api_key("pk_very-secret")
            .build()
            .expect("valid");
        assert!(!format!("{client:?}").contains("very-secret"));
    }
}
