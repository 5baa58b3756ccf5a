//! The service's replicas as the client sees them: each base URL's routes, and failover (a
//! replica that failed is passed over for a while, as long as another one is not).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::error::Error;

#[derive(Debug)]
pub(crate) struct Endpoint {
    pseudonymize: Url,
    reidentify: Url,
    rewrap: Url,
    passed_over_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    /// The routes of the service at base URL `url` (a path in it is kept).
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
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

    /// Whether a failure passed this replica over until after `now`.
    fn is_passed_over(&self, now: Instant) -> bool {
        self.passed_over_until
            .lock()
            .map(|until| until.is_some_and(|until| until > now))
            .unwrap_or(false)
    }

    /// Passes this replica over for `pause`: other replicas get its batches meanwhile.
    pub(crate) fn pass_over(&self, pause: Duration) {
        if let Ok(mut until) = self.passed_over_until.lock() {
            *until = Some(Instant::now() + pause);
        }
    }
}

/// A route of the service's own API.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    Pseudonymize,
    Reidentify,
    Rewrap,
}

impl Endpoint {
    /// The URL of `route` at this replica.
    pub(crate) fn url(&self, route: Route) -> &Url {
        match route {
            Route::Pseudonymize => &self.pseudonymize,
            Route::Reidentify => &self.reidentify,
            Route::Rewrap => &self.rewrap,
        }
    }
}

/// The `turn`-th endpoint in rotation, skipping those passed over while any other is not.
pub(crate) fn pick(endpoints: &[Endpoint], turn: usize) -> &Endpoint {
    let now = Instant::now();
    (0..endpoints.len())
        .map(|k| &endpoints[(turn + k) % endpoints.len()])
        .find(|endpoint| !endpoint.is_passed_over(now))
        .unwrap_or(&endpoints[turn % endpoints.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_path_keep_it() {
        let endpoint = Endpoint::parse("http://host:1/pseudonym").expect("valid");
        assert_eq!(
            endpoint.pseudonymize.as_str(),
            "http://host:1/pseudonym/v1/pseudonymize"
        );
    }
}
