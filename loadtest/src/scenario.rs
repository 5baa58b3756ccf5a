//! The scenarios, each bounded by a count and a time and stopping by itself:
//! `batch` (closed loop), `rate` (open loop, micro-batches on a schedule) and `sweep`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;

use crate::report::{Latencies, RunReport, Schedule};
use crate::send::{ErrorKind, Sender};
use crate::target::RssSampler;

/// What every run records.
#[derive(Default)]
struct Tally {
    values: u64,
    requests: u64,
    latencies: Latencies,
    errors: BTreeMap<ErrorKind, u64>,
}

impl Tally {
    fn add(&mut self, outcome: Result<crate::send::Sent, ErrorKind>, latency: Duration) {
        match outcome {
            Ok(sent) => {
                self.values += sent.values as u64;
                self.requests += sent.requests as u64;
                self.latencies.record(latency);
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }
}

/// Common settings of a run.
pub struct RunSettings {
    /// `raw` or `client`.
    pub via: &'static str,
    /// Mode name.
    pub mode: &'static str,
    /// Values per request.
    pub batch_size: usize,
    /// Process id of the service, for RSS.
    pub service_pid: Option<u32>,
    /// Show a progress bar.
    pub progress: bool,
}

fn progress(show: bool, length: u64, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    let template = format!("{{elapsed_precise}} {{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Closed loop: `concurrency` workers send back to back until `values` are sent or
/// `max_time` has passed.
pub async fn batch(
    sender: &Sender,
    settings: &RunSettings,
    values: u64,
    concurrency: usize,
    max_time: Duration,
) -> RunReport {
    let per_send = sender.values_per_send() as u64;
    let sends = values.div_ceil(per_send).max(1);
    let next = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let bar = progress(settings.progress, sends * per_send, "values");
    let rss = settings.service_pid.map(RssSampler::start);
    let started = Instant::now();
    let deadline = started + max_time;
    let worker = || async {
        let mut mine = Tally::default();
        loop {
            let seq = next.fetch_add(1, Ordering::Relaxed);
            if seq >= sends || Instant::now() >= deadline {
                break;
            }
            let sent_at = Instant::now();
            let outcome = sender.send(seq).await;
            mine.add(outcome, sent_at.elapsed());
            bar.inc(per_send);
        }
        let mut all = tally.lock().await;
        all.values += mine.values;
        all.requests += mine.requests;
        all.latencies.add(&mine.latencies);
        for (kind, n) in mine.errors {
            *all.errors.entry(kind).or_default() += n;
        }
    };
    futures::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let tally = tally.into_inner();
    finish("batch", settings, concurrency, tally, seconds, rss, None)
}

/// Open loop: a micro-batch of `rate * interval` values is due every `interval` for
/// `duration`, whether or not earlier ones have finished (at most `max_outstanding` in flight).
/// Latency counts from when a micro-batch was due.
pub async fn rate(
    sender: &Sender,
    settings: &RunSettings,
    values_per_s: f64,
    interval: Duration,
    duration: Duration,
    concurrency: usize,
    max_outstanding: usize,
) -> RunReport {
    let per_send = sender.values_per_send();
    let per_micro_batch = ((values_per_s * interval.as_secs_f64()).round() as usize).max(1);
    let sends_per_micro_batch = per_micro_batch.div_ceil(per_send).max(1);
    let micro_batches = (duration.as_secs_f64() / interval.as_secs_f64())
        .floor()
        .max(1.0) as u64;
    let bar = progress(settings.progress, micro_batches, "micro-batches");
    let rss = settings.service_pid.map(RssSampler::start);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut in_flight = FuturesUnordered::new();
    let mut max_outstanding_seen = 0u64;
    let mut lags: Vec<(u64, Duration)> = Vec::with_capacity(micro_batches as usize);
    let mut skipped = 0u64;
    let started = Instant::now();
    let mut seq = 0u64;
    for index in 0..micro_batches {
        let due = started + interval.mul_f64(index as f64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => break,
                Some(lag) = in_flight.next(), if !in_flight.is_empty() => {
                    lags.push(lag);
                    bar.inc(1);
                }
            }
        }
        if in_flight.len() >= max_outstanding {
            skipped += 1;
            continue;
        }
        let first = seq;
        seq += sends_per_micro_batch as u64;
        let (sender, tally) = (sender.clone(), tally.clone());
        in_flight.push(async move {
            let sends = futures::stream::iter(first..first + sends_per_micro_batch as u64)
                .map(|s| {
                    let sender = &sender;
                    async move { sender.send(s).await }
                })
                .buffer_unordered(concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
            let latency = due.elapsed();
            let mut tally = tally.lock().await;
            for outcome in sends {
                tally.add(outcome, latency);
            }
            (index, latency.saturating_sub(interval))
        });
        max_outstanding_seen = max_outstanding_seen.max(in_flight.len() as u64);
    }
    while let Some(lag) = in_flight.next().await {
        lags.push(lag);
        bar.inc(1);
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let tally = Arc::try_unwrap(tally)
        .map(Mutex::into_inner)
        .unwrap_or_default();
    lags.sort_unstable();
    let max_lag = lags.iter().map(|(_, lag)| *lag).max().unwrap_or_default();
    let final_lag = mean_lag(&lags[lags.len() - lags.len().div_ceil(10)..]);
    // Lag is judged at the end: a backlog that grew shows there, a passing hiccup does not.
    let keeps_up =
        skipped == 0 && tally.errors.is_empty() && final_lag <= interval.max(TIMER_SLACK);
    let schedule = Schedule {
        target_values_per_s: values_per_s,
        interval_ms: interval.as_secs_f64() * 1000.0,
        micro_batches,
        max_lag_ms: max_lag.as_secs_f64() * 1000.0,
        final_lag_ms: final_lag.as_secs_f64() * 1000.0,
        max_outstanding: max_outstanding_seen,
        keeps_up,
    };
    let mut tally = tally;
    if skipped > 0 {
        tally
            .errors
            .insert("micro_batch_not_started_backlog_full".into(), skipped);
    }
    finish(
        "rate",
        settings,
        concurrency,
        tally,
        seconds,
        rss,
        Some(schedule),
    )
}

/// Lateness the 1 ms timer alone can cause, forgiven when judging whether a run keeps up.
const TIMER_SLACK: Duration = Duration::from_millis(5);

fn mean_lag(lags: &[(u64, Duration)]) -> Duration {
    let total: Duration = lags.iter().map(|(_, lag)| *lag).sum();
    total / u32::try_from(lags.len().max(1)).unwrap_or(u32::MAX)
}

fn finish(
    scenario: &str,
    settings: &RunSettings,
    concurrency: usize,
    tally: Tally,
    seconds: f64,
    rss: Option<RssSampler>,
    schedule: Option<Schedule>,
) -> RunReport {
    RunReport {
        scenario: scenario.to_owned(),
        via: settings.via.to_owned(),
        mode: settings.mode.to_owned(),
        batch_size: settings.batch_size,
        concurrency,
        values: tally.values,
        requests: tally.requests,
        seconds,
        values_per_s: tally.values as f64 / seconds,
        requests_per_s: tally.requests as f64 / seconds,
        latency_ms: tally.latencies.percentiles(),
        errors: tally.errors,
        service_rss_mib: rss.map(|r| r.peak_mib()),
        schedule,
    }
}
