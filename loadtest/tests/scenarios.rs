//! Every scenario, briefly, against a live service on loopback, so they keep working.

use clap::Parser;
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_loadtest::{Opts, Report, run};

async fn run_with(fixture: &Fixture, replica: &Replica, args: &[&str]) -> Report {
    let mut argv = vec!["pseudonym-loadtest"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&[
        "--url",
        &replica.url,
        "--api-key",
        &fixture.api_key,
        "--no-progress",
    ]);
    run(Opts::try_parse_from(argv).expect("valid arguments"))
        .await
        .expect("run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_raw_and_client_send_everything_and_write_json() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let report = run_with(
        &fixture,
        &replica,
        &[
            "batch",
            "--values",
            "9000",
            "--batch-size",
            "900",
            "--concurrency",
            "2",
            "--json",
            json.to_str().expect("utf-8"),
        ],
    )
    .await;
    let run = &report.runs[0];
    assert_eq!((run.values, run.requests), (9000, 10));
    assert!(run.errors.is_empty());
    assert!(
        report
            .in_process_crypto_values_per_s
            .is_some_and(|r| r > 0.0)
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("JSON");
    for key in [
        "values_per_s",
        "requests_per_s",
        "latency_ms",
        "errors",
        "service_rss_mib",
    ] {
        assert!(
            written["runs"][0].get(key).is_some(),
            "{key} in the JSON report"
        );
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(written["runs"][0]["latency_ms"][key].is_number(), "{key}");
    }

    let report = run_with(
        &fixture,
        &replica,
        &[
            "batch",
            "--via",
            "client",
            "--values",
            "20000",
            "--partition",
            "10000",
            "--cardinality",
            "500",
            "--no-crypto-baseline",
        ],
    )
    .await;
    assert_eq!(report.runs[0].values, 20000);
    assert!(report.runs[0].errors.is_empty());

    // The server's Arrow form: every request answered 2xx (an error kind per failure otherwise).
    let report = run_with(
        &fixture,
        &replica,
        &[
            "batch",
            "--via",
            "arrow",
            "--values",
            "9000",
            "--batch-size",
            "900",
            "--no-crypto-baseline",
        ],
    )
    .await;
    assert_eq!(report.runs[0].values, 9000);
    assert!(
        report.runs[0].errors.is_empty(),
        "{:?}",
        report.runs[0].errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_streaming_rate_sends_every_micro_batch_and_find_max_bisects() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let report = run_with(
        &fixture,
        &replica,
        &[
            "rate",
            "--records-per-minute",
            "85000",
            "--interval-ms",
            "250",
            "--duration-s",
            "2",
            "--no-crypto-baseline",
        ],
    )
    .await;
    let schedule = report.runs[0]
        .schedule
        .as_ref()
        .expect("open-loop schedule");
    // Whether it keeps up is the machine's speed; that every micro-batch went out and came
    // back is the tool's behaviour.
    assert_eq!(schedule.micro_batches, 8);
    assert!(
        report.runs[0].errors.is_empty(),
        "{:?}",
        report.runs[0].errors
    );
    assert_eq!(report.runs[0].requests, 8);

    let report = run_with(
        &fixture,
        &replica,
        &[
            "rate",
            "--values-per-s",
            "20000",
            "--interval-ms",
            "100",
            "--find-max",
            "--trial-s",
            "0.5",
            "--no-crypto-baseline",
        ],
    )
    .await;
    // The search's own rules, whatever this machine's speed: the answer is the highest rate
    // tried that kept up, and it stops after 12 trials or once that rate and the lowest one
    // that did not keep up are within 10%.
    let rates = |kept: bool| -> Vec<f64> {
        report
            .runs
            .iter()
            .filter_map(|run| run.schedule.as_ref())
            .filter(|schedule| schedule.keeps_up == kept)
            .map(|schedule| schedule.target_values_per_s)
            .collect()
    };
    let (kept, missed) = (rates(true), rates(false));
    let highest = kept.iter().copied().reduce(f64::max);
    assert_eq!(report.highest_rate_keeping_up, highest);
    let lowest_missed = missed.iter().copied().reduce(f64::min);
    if report.runs.len() < 12 {
        let (good, bad) = (
            highest.expect("stopped early"),
            lowest_missed.expect("bounded"),
        );
        assert!((bad - good) / good < 0.1, "{good} .. {bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_fills_its_table_and_a_failing_service_shows_as_errors() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let report = run_with(
        &fixture,
        &replica,
        &[
            "sweep",
            "--batch-sizes",
            "10,900",
            "--concurrency",
            "1,4",
            "--values-per-cell",
            "2000",
            "--seconds-per-cell",
            "1",
            "--no-crypto-baseline",
        ],
    )
    .await;
    assert_eq!(report.runs.len(), 4);
    assert!(
        report
            .runs
            .iter()
            .all(|r| r.values > 0 && r.errors.is_empty())
    );

    let failing = Replica::start(&fixture, Fault::AlwaysUnavailable);
    let report = run_with(
        &fixture,
        &failing,
        &[
            "batch",
            "--values",
            "1800",
            "--batch-size",
            "900",
            "--no-crypto-baseline",
        ],
    )
    .await;
    assert_eq!(report.runs[0].errors.get("http_503"), Some(&2));
}
