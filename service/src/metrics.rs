//! Prometheus metrics: requests, values, errors by code and latency. Labels are fixed sets of
//! names (route patterns, modes, codes), never anything taken from a request's content.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ValueLabels {
    operation: &'static str,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KeyLabels {
    /// The API key's name from the key file (a set the operator controls).
    api_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The service's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    values: Family<ValueLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    in_flight: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    key_limited: Family<KeyLabels, Counter>,
    audit_dropped: Gauge,
    primary_version: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pseudonym");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let values = Family::<ValueLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let in_flight = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let key_limited = Family::<KeyLabels, Counter>::default();
        let audit_dropped = Gauge::default();
        let primary_version = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "values",
            "Non-null values or pseudonyms processed, by operation and mode",
            values.clone(),
        );
        registry.register(
            "errors",
            "Request-level and per-item errors, by code",
            errors.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled now",
            in_flight.clone(),
        );
        registry.register(
            "reloads",
            "Reloads of keys and TLS files (SIGHUP), by outcome: ok, failed, panicked",
            reloads.clone(),
        );
        registry.register(
            "key_limited",
            "Requests answered 429 because their API key had its limit in flight or had spent its values per second, by key name",
            key_limited.clone(),
        );
        registry.register(
            "audit_refusals_dropped",
            "Audit lines of requests refused before anything was read, dropped because the audit queue was full (a flood)",
            audit_dropped.clone(),
        );
        registry.register(
            "primary_key_version",
            "The key version this replica makes pseudonyms with (compare across replicas during a rotation)",
            primary_version.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            values,
            errors,
            in_flight,
            reloads,
            key_limited,
            audit_dropped,
            primary_version,
        }
    }
}

impl Metrics {
    /// Counts an answered request and its latency. `route` is the router's pattern (e.g.
    /// `/{stage}/pseudonymization`), never the path a caller sent.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        let route = route.to_owned();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// Counts `count` values processed.
    pub fn add_values(&self, operation: &'static str, mode: &'static str, count: usize) {
        self.values
            .get_or_create(&ValueLabels { operation, mode })
            .inc_by(count as u64);
    }

    /// Counts `count` errors of one code.
    pub fn add_errors(&self, code: &'static str, count: usize) {
        self.errors
            .get_or_create(&ErrorLabels { code })
            .inc_by(count as u64);
    }

    /// Counts a reload that ended with `outcome` (`ok`, `failed` or `panicked`).
    pub fn add_reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
    }

    /// Counts a request refused because key `api_key` had its limit in flight.
    pub fn add_key_limited(&self, api_key: &str) {
        self.key_limited
            .get_or_create(&KeyLabels {
                api_key: api_key.to_owned(),
            })
            .inc();
    }

    /// Sets how many refusal audit lines were dropped so far.
    pub fn set_audit_dropped(&self, dropped: u64) {
        self.audit_dropped
            .set(i64::try_from(dropped).unwrap_or(i64::MAX));
    }

    /// Sets the key version this replica makes pseudonyms with.
    pub fn set_primary_version(&self, version: u32) {
        self.primary_version.set(i64::from(version));
    }

    /// The gauge of requests being handled.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let metrics = Metrics::default();
        metrics.observe_request("/v1/pseudonymize", 200, 0.001);
        metrics.add_values("pseudonymize", "deterministic", 900);
        metrics.add_errors("invalid_token", 2);
        let text = metrics.render();
        assert!(text.contains(
            "pseudonym_http_requests_total{route=\"/v1/pseudonymize\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "pseudonym_values_total{operation=\"pseudonymize\",mode=\"deterministic\"} 900"
        ));
        assert!(text.contains("pseudonym_errors_total{code=\"invalid_token\"} 2"));
        assert!(text.contains("pseudonym_http_request_duration_seconds_bucket"));
    }
}
