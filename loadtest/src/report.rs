//! What a run measured: counts, rates, latency percentiles (HDR histogram), errors, memory; as
//! a table for people and JSON for machines.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies of one run, in microseconds (1 µs to 10 minutes, 3 significant digits).
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"))
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds another run's latencies.
    pub fn add(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    /// The percentiles in milliseconds.
    pub fn percentiles(&self) -> Percentiles {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: self.0.len(),
            p50: ms(0.50),
            p90: ms(0.90),
            p99: ms(0.99),
            p999: ms(0.999),
            max: self.0.max() as f64 / 1000.0,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Latencies recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest.
    pub max: f64,
}

/// One run of one scenario at one setting.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `batch`, `rate` or `sweep`.
    pub scenario: String,
    /// `raw` or `client`.
    pub via: String,
    /// The mode sent.
    pub mode: String,
    /// Values per request.
    pub batch_size: usize,
    /// Sends in flight at most (closed loop: workers).
    pub concurrency: usize,
    /// Values sent successfully.
    pub values: u64,
    /// Units sent successfully: requests (raw) or partitions (client).
    pub requests: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// `values / seconds`.
    pub values_per_s: f64,
    /// `requests / seconds`.
    pub requests_per_s: f64,
    /// Latency of a send. Open-loop runs measure it from when the send was due, not from when
    /// it started, so a service that falls behind cannot hide its queueing.
    pub latency_ms: Percentiles,
    /// Failed sends by kind (`http_503`, `connect`, `timeout`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Highest resident memory of the service during the run, when it runs here.
    pub service_rss_mib: Option<f64>,
    /// Open-loop runs: how the run kept its schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// How an open-loop run kept up with its arrival rate.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    /// Values per second asked for.
    pub target_values_per_s: f64,
    /// Time between micro-batches.
    pub interval_ms: f64,
    /// Micro-batches due during the run.
    pub micro_batches: u64,
    /// Largest delay of a micro-batch's completion past its deadline (the next one's start).
    pub max_lag_ms: f64,
    /// Mean delay past the deadline over the last tenth of the micro-batches.
    pub final_lag_ms: f64,
    /// Highest number of micro-batches in flight at once.
    pub max_outstanding: u64,
    /// Every micro-batch was sent, none failed, and the final lag is within one interval (or
    /// 5 ms of timer slack): the backlog did not grow.
    pub keeps_up: bool,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Tool version.
    pub version: &'static str,
    /// Logical CPUs of this machine.
    pub cpus: usize,
    /// Single-core in-process rate of the same values and mode (no HTTP), when measured.
    pub in_process_crypto_values_per_s: Option<f64>,
    /// The runs.
    pub runs: Vec<RunReport>,
    /// `rate --find-max`: the highest rate that kept up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_rate_keeping_up: Option<f64>,
}

impl Report {
    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<6} {:<6} {:>6} {:>5} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7}\n",
            "run",
            "via",
            "batch",
            "conc",
            "values/s",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "RSS MiB"
        ));
        for run in &self.runs {
            let errors: u64 = run.errors.values().sum();
            out.push_str(&format!(
                "{:<6} {:<6} {:>6} {:>5} {:>12.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>7}\n",
                run.scenario,
                run.via,
                run.batch_size,
                run.concurrency,
                run.values_per_s,
                run.requests_per_s,
                run.latency_ms.p50,
                run.latency_ms.p90,
                run.latency_ms.p99,
                run.latency_ms.p999,
                run.latency_ms.max,
                errors,
                run.service_rss_mib.map_or("-".to_owned(), |m| format!("{m:.1}")),
            ));
            if let Some(schedule) = &run.schedule {
                out.push_str(&format!(
                    "       target {:.0} values/s in micro-batches every {:.3} ms: {} ({} micro-batches, lag max {:.1} ms, final {:.1} ms, at most {} in flight)\n",
                    schedule.target_values_per_s,
                    schedule.interval_ms,
                    if schedule.keeps_up { "keeps up" } else { "FALLS BEHIND" },
                    schedule.micro_batches,
                    schedule.max_lag_ms,
                    schedule.final_lag_ms,
                    schedule.max_outstanding,
                ));
            }
        }
        if let Some(crypto) = self.in_process_crypto_values_per_s {
            out.push_str(&format!(
                "in-process crypto, one core, same values and mode: {crypto:.0} values/s\n"
            ));
            for run in &self.runs {
                out.push_str(&format!(
                    "  {} batch {} conc {}: service {:.2}x the single-core crypto rate\n",
                    run.scenario,
                    run.batch_size,
                    run.concurrency,
                    run.values_per_s / crypto
                ));
            }
        }
        if let Some(rate) = self.highest_rate_keeping_up {
            out.push_str(&format!("highest rate that keeps up: {rate:.0} values/s\n"));
        }
        out
    }
}
