//! Format-preserving pseudonyms through DataFusion SQL and `pseudonym-sql`, against a real
//! service whose `vin` domain has a format.

mod common;

use std::collections::BTreeMap;

use common::CarsSession;
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_service::format::Outside;
use pseudonym_service::formats::FormatConfig;

/// A replica whose `vin` domain is format-preserving (VIN characters, others refused).
fn replica() -> (Fixture, Replica) {
    let mut fixture = Fixture::new();
    let vin = FormatConfig {
        alphabet: Some("vin".to_owned()),
        characters: None,
        outside: Outside::Refuse,
        key_version: 1,
    };
    fixture.config.format_preserving = BTreeMap::from([("vin".to_owned(), vin)]);
    let replica = Replica::start(&fixture, Fault::None);
    (fixture, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_round_trips_keeps_the_format_and_joins_alike() {
    let (fixture, replica) = replica();
    let session = CarsSession::start(&replica.url, &fixture.api_key, 10_000, 1_500).await;
    let ctx = &session.ctx;

    let pseudo = "SELECT vin, pseudonymize(vin, 'vin', 'format-preserving') AS p FROM cars";
    session
        .run(&format!("CREATE TABLE pseudo AS {pseudo}"))
        .await;
    let same_shape = "SELECT count(*) FROM pseudo WHERE length(p) = 17 AND p <> vin \
                      AND regexp_like(p, '^[0-9A-HJ-NPR-Z]{17}$')";
    assert_eq!(session.count(same_shape).await, 10_000);
    let wrong = "SELECT count(*) FROM pseudo WHERE reidentify(p, 'vin') IS DISTINCT FROM vin";
    assert_eq!(session.count(wrong).await, 0, "every row round-trips");
    let plain = session
        .count("SELECT count(*) FROM pseudo a JOIN pseudo b ON a.vin = b.vin")
        .await;
    let joined = session
        .count("SELECT count(*) FROM pseudo a JOIN pseudo b ON a.p = b.p")
        .await;
    assert!(plain > 10_000);
    assert_eq!(joined, plain, "joins on pseudonyms match joins on values");

    let kept = "SELECT count(*) FROM (VALUES ('WVWZZZ1JZXW12345I'), ('123')) v(x) \
                WHERE pseudonymize(x, 'vin', 'format-preserving', 'null') IS NULL";
    assert_eq!(session.count(kept).await, 2);
    let failing = "SELECT pseudonymize(x, 'vin', 'format-preserving') FROM (VALUES ('WVWZZZ1JZXW12345I')) v(x)";
    let error = ctx
        .sql(failing)
        .await
        .expect("plans")
        .collect()
        .await
        .expect_err("fails");
    let message = error.to_string();
    assert!(
        message.contains("outside_alphabet") && !message.contains("12345I"),
        "{message}"
    );
}

#[test]
fn the_command_line_writes_format_preserving_pseudonyms() {
    let (fixture, replica) = replica();
    let dir = tempfile::tempdir().expect("tempdir");
    let cars = dir.path().join("cars.parquet");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pseudonym-sql"))
            .args(args)
            .env("PSEUDONYM_URL", &replica.url)
            .env("PSEUDONYM_API_KEY", &fixture.api_key)
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let path = cars.to_str().expect("utf-8");
    run(&["generate", "--rows", "2000", "--cardinality", "300", path]);
    let table = run(&[
        "-t",
        &format!("cars={path}"),
        "--format",
        "csv",
        "SELECT count(DISTINCT p) AS n, min(length(p)) AS shortest, max(length(p)) AS longest \
         FROM (SELECT pseudonymize(vin, 'vin', 'format-preserving') AS p FROM cars)",
    ]);
    assert_eq!(table.trim(), "n,shortest,longest\n300,17,17");
}
