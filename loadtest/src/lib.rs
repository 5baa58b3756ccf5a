//! `pseudonym-loadtest`: replays the batch and streaming scenarios of the design `pseudonymd`
//! replaces against any running service, or one it starts itself, and reports throughput,
//! latency percentiles, errors and the service's memory.
//!
//! - [`Opts`] and [`run`]: the command line and the whole run (`main` is a thin shell).
//! - `scenario`: `batch` (closed loop), `rate` (open loop on a schedule), `sweep`.
//! - `send`: raw fixed requests (the server alone) or the client crate (what pipelines get).
//! - `report`: HDR latency histograms, the human table, the JSON report.
//! - `target`: starting a `pseudonymd` on loopback and sampling its RSS.
//! - `data`: VIN-like values of a chosen cardinality.

mod data;
mod report;
mod scenario;
mod send;
mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use pseudonym_client::Mode;

pub use report::{Percentiles, Report, RunReport, Schedule};
use scenario::RunSettings;
use send::{Form, Sender, SenderSettings};
use target::Spawned;

/// Load generator for pseudonymd.
#[derive(Debug, Parser)]
#[command(name = "pseudonym-loadtest", version, about)]
pub struct Opts {
    /// What to run.
    #[command(subcommand)]
    pub scenario: Scenario,
    /// Settings every scenario shares.
    #[command(flatten)]
    pub common: Common,
}

/// Settings every scenario shares.
#[derive(Debug, Args)]
pub struct Common {
    /// Service URL. Without it, a pseudonymd is started on loopback (see --pseudonymd).
    #[arg(long, env = "PSEUDONYM_URL", global = true)]
    pub url: Option<String>,
    /// API key for --url.
    #[arg(long, env = "PSEUDONYM_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// PEM CA certificates to trust for an https --url signed by a private CA.
    #[arg(long, env = "PSEUDONYM_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// The pseudonymd binary to start when no --url is given [default: next to this tool].
    #[arg(long, global = true)]
    pub pseudonymd: Option<PathBuf>,
    /// Process id of the service under test, to report its memory (automatic when started here).
    #[arg(long, global = true)]
    pub service_pid: Option<u32>,
    /// Send raw fixed requests (the server alone) or through the client crate.
    #[arg(long, value_enum, default_value_t = Via::Raw, global = true)]
    pub via: Via,
    /// Mode to request.
    #[arg(long, default_value = "deterministic", value_parser = parse_mode, global = true)]
    pub mode: Mode,
    /// Domain to request.
    #[arg(long, default_value = "vin", global = true)]
    pub domain: String,
    /// The started pseudonymd writes the domain's deterministic pseudonyms as Tink tokens
    /// (`[tink.<domain>]`), and so does the crypto baseline.
    #[arg(long, global = true)]
    pub tink: bool,
    /// Distinct values in the generated data.
    #[arg(long, default_value_t = 1_000_000, global = true)]
    pub cardinality: u64,
    /// Values per partition when sending through the client.
    #[arg(long, default_value_t = 100_000, global = true)]
    pub partition: usize,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Skip measuring the in-process crypto rate of the same values.
    #[arg(long, global = true)]
    pub no_crypto_baseline: bool,
    /// With `--via client`: attempts after a failed one, as a pipeline's client makes them
    /// (backoff, `Retry-After` honoured). 0: every failure is counted, none retried.
    #[arg(long, default_value_t = 0, global = true)]
    pub retries: u32,
}

/// How values are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Pre-encoded requests of --batch-size values: measures the server alone.
    Raw,
    /// As `raw`, in the API's Arrow form: each request an Arrow IPC stream of one `Utf8`
    /// column, the domain and mode in the query.
    Arrow,
    /// The client crate, one partition (--partition values) per send: what pipelines get.
    Client,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// A fixed number of values in batches at a fixed concurrency (closed loop), as the AWS sample's
    /// batch job (900 values per call).
    Batch {
        /// Values to send.
        #[arg(long, default_value_t = 1_000_000)]
        values: u64,
        /// Values per request.
        #[arg(long, default_value_t = 900)]
        batch_size: usize,
        /// Sends in flight (workers).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Stop after this many seconds even if values remain.
        #[arg(long, default_value_t = 60.0)]
        max_seconds: f64,
    },
    /// Values arriving at a fixed rate in micro-batches (open loop), as the AWS sample's streaming job
    /// (85,000 records a minute); reports whether the service keeps up.
    Rate {
        /// Arrival rate in values per second.
        #[arg(long, conflicts_with = "records_per_minute")]
        values_per_s: Option<f64>,
        /// Arrival rate in records per minute [default: 85000, the AWS sample's streaming load].
        #[arg(long)]
        records_per_minute: Option<f64>,
        /// Time between micro-batches, in milliseconds (fractions allowed; the timer's
        /// resolution is 1 ms, and lateness counts against the service).
        #[arg(long, default_value_t = 1000.0)]
        interval_ms: f64,
        /// Length of the run, in seconds.
        #[arg(long, default_value_t = 30.0)]
        duration_s: f64,
        /// Values per request.
        #[arg(long, default_value_t = 900)]
        batch_size: usize,
        /// Requests in flight per micro-batch.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Micro-batches in flight at most; a due one beyond this is counted as not started.
        #[arg(long, default_value_t = 16)]
        max_outstanding: usize,
        /// Search for the highest rate that keeps up (doubling, then bisecting; at most 12 trials).
        #[arg(long)]
        find_max: bool,
        /// Seconds per trial of --find-max.
        #[arg(long, default_value_t = 5.0)]
        trial_s: f64,
    },
    /// The batch scenario over a table of batch sizes and concurrency levels.
    Sweep {
        /// Batch sizes to try.
        #[arg(long, value_delimiter = ',', default_value = "1,10,100,900,5000")]
        batch_sizes: Vec<usize>,
        /// Concurrency levels to try.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        concurrency: Vec<usize>,
        /// Values per cell at most.
        #[arg(long, default_value_t = 500_000)]
        values_per_cell: u64,
        /// Seconds per cell at most.
        #[arg(long, default_value_t = 5.0)]
        seconds_per_cell: f64,
    },
}

/// How many connections a `pseudonymd` keeps open at once unless told otherwise
/// (`--max-connections`); it closes those beyond, as it accepts them.
pub const SERVICE_MAX_CONNECTIONS: usize = 1000;

impl Opts {
    /// The most requests the run can have in flight at once. Each has a connection of its own,
    /// since HTTP/1 answers one request at a time on a connection.
    pub fn peak_in_flight(&self) -> usize {
        // Through the client, one send is a partition, up to `concurrency` requests at once.
        let requests_per_send = |batch_size: usize, concurrency: usize| match self.common.via {
            Via::Raw | Via::Arrow => 1,
            Via::Client => {
                let batches = self.common.partition.div_ceil(batch_size.max(1));
                concurrency.min(batches).max(1)
            }
        };
        let sends = |batch_size: usize, concurrency: usize, outstanding: usize| {
            let concurrency = concurrency.max(1);
            concurrency
                .saturating_mul(outstanding.max(1))
                .saturating_mul(requests_per_send(batch_size, concurrency))
        };
        match &self.scenario {
            Scenario::Batch {
                batch_size,
                concurrency,
                ..
            } => sends(*batch_size, *concurrency, 1),
            Scenario::Sweep {
                batch_sizes,
                concurrency,
                ..
            } => batch_sizes
                .iter()
                .flat_map(|&size| concurrency.iter().map(move |&level| sends(size, level, 1)))
                .max()
                .unwrap_or(1),
            Scenario::Rate {
                batch_size,
                concurrency,
                max_outstanding,
                ..
            } => sends(*batch_size, *concurrency, *max_outstanding),
        }
    }
}

/// Files the load generator has open besides its connections, at most: its own, and the pipes
/// of a `pseudonymd` it starts.
#[cfg(unix)]
const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// Raises this process's soft limit on open files, up to the hard one, so that `in_flight`
/// connections fit under it (many systems start a process with 1,024, and a run of
/// `--concurrency 128 --max-outstanding 8` opens as many connections). Returns a warning to
/// print if even the hard limit is too low.
#[cfg(unix)]
pub fn fit_open_files(in_flight: usize) -> Option<String> {
    let needed = u64::try_from(in_flight)
        .unwrap_or(u64::MAX)
        .saturating_add(FILES_BESIDES_CONNECTIONS);
    match rlimit::increase_nofile_limit(needed) {
        Ok(open_files) if open_files >= needed => None,
        Ok(open_files) => Some(format!(
            "warning: up to {in_flight} requests in flight, each on a connection of its own, \
             but this process may open only {open_files} files (`ulimit -n`, hard limit \
             included): connections beyond it fail to open, which shows as failed requests"
        )),
        Err(error) => Some(format!(
            "warning: cannot read or raise the open-file limit: {error}"
        )),
    }
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    text.parse()
        .map_err(|e: pseudonym_client::wire::UnknownMode| e.to_string())
}

/// Runs the scenario, prints the table, writes the JSON if asked, and returns the report.
pub async fn run(opts: Opts) -> anyhow::Result<Report> {
    let common = &opts.common;
    let in_flight = opts.peak_in_flight();
    #[cfg(unix)]
    if let Some(warning) = fit_open_files(in_flight) {
        eprintln!("{warning}");
    }
    let spawned = match &common.url {
        Some(_) => {
            if in_flight > SERVICE_MAX_CONNECTIONS {
                eprintln!(
                    "warning: up to {in_flight} requests in flight, each on a connection of its \
                     own; a pseudonymd closes the connections beyond its --max-connections \
                     ({SERVICE_MAX_CONNECTIONS} unless told otherwise), which shows here as \
                     failed requests"
                );
            }
            None
        }
        None => {
            let binary = common
                .pseudonymd
                .clone()
                .unwrap_or_else(Spawned::default_binary);
            // Room for every connection the run opens, so that the cap is not what is measured,
            // and an eighth more for those still closing when their replacements open (which
            // a service run by someone else may or may not have: the warning above is only for
            // what is certain to fail).
            let room = in_flight.saturating_add(in_flight / 8);
            let extra = match room > SERVICE_MAX_CONNECTIONS {
                true => vec!["--max-connections".to_owned(), room.to_string()],
                false => Vec::new(),
            };
            // Format-preserving pseudonyms need a domain with a format: the VIN alphabet.
            let config = match (common.mode, common.tink) {
                (Mode::FormatPreserving, _) => Some(format!(
                    "[format_preserving.{:?}]\nalphabet = \"vin\"\nkey_version = 1\n",
                    common.domain
                )),
                (_, true) => Some(format!("[tink.{:?}]\n", common.domain)),
                (_, false) => None,
            };
            let spawned = Spawned::start(&binary, &extra, config.as_deref());
            Some(spawned.context("starting a pseudonymd to test")?)
        }
    };
    let (url, api_key) = match &spawned {
        Some(s) => (s.url.clone(), s.api_key.clone()),
        None => (
            common.url.clone().unwrap_or_default(),
            common
                .api_key
                .clone()
                .context("--api-key (or PSEUDONYM_API_KEY) is needed with --url")?,
        ),
    };
    let service_pid = common.service_pid.or(spawned.as_ref().map(|s| s.pid));
    let root_certificates = match &common.ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };

    let crypto = if common.no_crypto_baseline {
        None
    } else {
        Some(crypto_rate(common.mode, &common.domain, common.tink, common.cardinality).await?)
    };
    let mut report = Report {
        version: env!("CARGO_PKG_VERSION"),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        in_process_crypto_values_per_s: crypto,
        runs: Vec::new(),
        highest_rate_keeping_up: None,
    };
    let sender_for =
        |batch_size: usize, concurrency: usize| -> anyhow::Result<(Sender, RunSettings)> {
            let settings = SenderSettings {
                url: &url,
                api_key: &api_key,
                root_certificates: root_certificates.as_deref(),
                domain: &common.domain,
                mode: common.mode,
                batch_size,
                cardinality: common.cardinality,
                client_in_flight: concurrency,
                partition: common.partition,
                retries: common.retries,
            };
            let sender = match common.via {
                Via::Raw => Sender::raw(&settings, Form::Json)?,
                Via::Arrow => Sender::raw(&settings, Form::Arrow)?,
                Via::Client => Sender::client(&settings)?,
            };
            let run = RunSettings {
                via: match common.via {
                    Via::Raw => "raw",
                    Via::Arrow => "arrow",
                    Via::Client => "client",
                },
                mode: common.mode.as_str(),
                batch_size,
                service_pid,
                progress: !common.no_progress,
            };
            Ok((sender, run))
        };

    match opts.scenario {
        Scenario::Batch {
            values,
            batch_size,
            concurrency,
            max_seconds,
        } => {
            let (sender, settings) = sender_for(batch_size, concurrency)?;
            let limit = Duration::from_secs_f64(max_seconds);
            report
                .runs
                .push(scenario::batch(&sender, &settings, values, concurrency, limit).await);
        }
        Scenario::Sweep {
            batch_sizes,
            concurrency,
            values_per_cell,
            seconds_per_cell,
        } => {
            for &batch_size in &batch_sizes {
                for &level in &concurrency {
                    let (sender, settings) = sender_for(batch_size, level)?;
                    let limit = Duration::from_secs_f64(seconds_per_cell);
                    let mut run =
                        scenario::batch(&sender, &settings, values_per_cell, level, limit).await;
                    run.scenario = "sweep".into();
                    report.runs.push(run);
                }
            }
        }
        Scenario::Rate {
            values_per_s,
            records_per_minute,
            interval_ms,
            duration_s,
            batch_size,
            concurrency,
            max_outstanding,
            find_max,
            trial_s,
        } => {
            let start_rate = values_per_s
                .or(records_per_minute.map(|r| r / 60.0))
                .unwrap_or(85_000.0 / 60.0);
            let (sender, settings) = sender_for(batch_size, concurrency)?;
            let interval = Duration::from_secs_f64(interval_ms.max(0.01) / 1000.0);
            let trial = |rate: f64, seconds: f64| {
                scenario::rate(
                    &sender,
                    &settings,
                    rate,
                    interval,
                    Duration::from_secs_f64(seconds),
                    concurrency,
                    max_outstanding,
                )
            };
            if !find_max {
                report.runs.push(trial(start_rate, duration_s).await);
            } else {
                let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
                let mut rate = start_rate;
                for _ in 0..12 {
                    let run = trial(rate, trial_s).await;
                    let kept_up = run.schedule.as_ref().is_some_and(|s| s.keeps_up);
                    report.runs.push(run);
                    if kept_up {
                        good = Some(good.map_or(rate, |g: f64| g.max(rate)));
                    } else {
                        bad = Some(bad.map_or(rate, |b: f64| b.min(rate)));
                    }
                    rate = match (good, bad) {
                        (Some(g), Some(b)) if (b - g) / g < 0.1 => break,
                        (Some(g), Some(b)) => (g + b) / 2.0,
                        (Some(g), None) => g * 2.0,
                        (None, Some(b)) => b / 2.0,
                        (None, None) => rate,
                    };
                }
                report.highest_rate_keeping_up = good;
            }
        }
    }

    print!("{}", report.table());
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// Single-core rate of the engine itself on the same kind of values, no HTTP, same mode, as the
/// service uses it: batches of the AWS sample's 900 values, each batch's tokens in one string
/// (format-preserving: in the VIN alphabet, as the started service's domain has it; with
/// `tink`, Tink tokens).
async fn crypto_rate(
    mode: Mode,
    domain: &str,
    tink: bool,
    cardinality: u64,
) -> anyhow::Result<f64> {
    let domain = domain.to_owned();
    tokio::task::spawn_blocking(move || {
        use pseudonym_engine::{Domain, Engine, Keyring};
        let domain = Domain::new(&domain).map_err(|e| anyhow::anyhow!("--domain: {e}"))?;
        let tink_domains = tink.then_some(domain);
        let engine = Engine::new(&Keyring::generate()).with_tink_domains(tink_domains);
        let values: Vec<Option<String>> = data::vins(0, 200_000, cardinality)
            .into_iter()
            .map(Some)
            .collect();
        let vin = pseudonym_engine::format::Format::new(
            Some("vin"),
            None,
            pseudonym_engine::format::Outside::Keep,
        )?;
        let batches = || {
            values.chunks(900).map(|batch| match mode {
                Mode::FormatPreserving => {
                    engine.pseudonymize_preserving(domain, &vin, 1, batch).texts
                }
                _ => engine.pseudonymize_tokens(domain, mode, batch),
            })
        };
        batches().take(10).for_each(drop);
        let started = Instant::now();
        let mut done = 0usize;
        while started.elapsed() < Duration::from_secs(1) {
            done += batches().map(|tokens| tokens.len()).sum::<usize>();
        }
        Ok(done as f64 / started.elapsed().as_secs_f64())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak(args: &[&str]) -> usize {
        let argv = std::iter::once("pseudonym-loadtest").chain(args.iter().copied());
        Opts::try_parse_from(argv)
            .expect("valid arguments")
            .peak_in_flight()
    }

    #[test]
    fn the_peak_in_flight_counts_every_connection_the_run_opens() {
        assert_eq!(peak(&["batch", "--concurrency", "16"]), 16);
        assert_eq!(peak(&["sweep", "--concurrency", "1,64,4"]), 64);
        let overload = ["rate", "--concurrency", "128", "--max-outstanding", "8"];
        assert_eq!(peak(&overload), 1024);
        assert!(peak(&overload) > SERVICE_MAX_CONNECTIONS);
        // Through the client, a partition of 100,000 values goes as 112 batches of 900, up to
        // `concurrency` of them at once; a partition of 1,800 values as 2.
        let client = [
            "--via",
            "client",
            "batch",
            "--concurrency",
            "40",
            "--batch-size",
            "900",
        ];
        assert_eq!(peak(&client), 40 * 40);
        let small = [
            "--via",
            "client",
            "--partition",
            "1800",
            "batch",
            "--concurrency",
            "40",
            "--batch-size",
            "900",
        ];
        assert_eq!(peak(&small), 40 * 2);
    }
}
