//! Format-preserving pseudonyms through DataFusion SQL and `pseudonym-sql`, against a real
//! service whose `vin` domain has a format.

use std::collections::BTreeMap;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::{SessionConfig, SessionContext};
use pseudonym_client::Client;
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_service::format::Outside;
use pseudonym_service::formats::FormatConfig;
use pseudonym_udf::{Service, generate, tables};

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

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_round_trips_keeps_the_format_and_joins_alike() {
    let (fixture, replica) = replica();
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(4096));
    let client = Client::builder()
        .url(&replica.url)
        .api_key(&fixture.api_key)
        .build()
        .expect("client");
    Service::new(client, io.handle().clone()).register(&ctx);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cars.parquet");
    generate::parquet(&ctx, &path, 10_000, 1_500)
        .await
        .expect("generated");
    tables::register(&ctx, "cars", &path)
        .await
        .expect("registered");

    let pseudo = "SELECT vin, pseudonymize(vin, 'vin', 'format-preserving') AS p FROM cars";
    ctx.sql(&format!("CREATE TABLE pseudo AS {pseudo}"))
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let same_shape = "SELECT count(*) FROM pseudo WHERE length(p) = 17 AND p <> vin \
                      AND regexp_like(p, '^[0-9A-HJ-NPR-Z]{17}$')";
    assert_eq!(count(&ctx, same_shape).await, 10_000);
    let wrong = "SELECT count(*) FROM pseudo WHERE reidentify(p, 'vin') IS DISTINCT FROM vin";
    assert_eq!(count(&ctx, wrong).await, 0, "every row round-trips");
    let plain = count(
        &ctx,
        "SELECT count(*) FROM pseudo a JOIN pseudo b ON a.vin = b.vin",
    )
    .await;
    let joined = count(
        &ctx,
        "SELECT count(*) FROM pseudo a JOIN pseudo b ON a.p = b.p",
    )
    .await;
    assert!(plain > 10_000);
    assert_eq!(joined, plain, "joins on pseudonyms match joins on values");

    let kept = "SELECT count(*) FROM (VALUES ('WVWZZZ1JZXW12345I'), ('123')) v(x) \
                WHERE pseudonymize(x, 'vin', 'format-preserving', 'null') IS NULL";
    assert_eq!(count(&ctx, kept).await, 2);
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
    io.shutdown_background();
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
