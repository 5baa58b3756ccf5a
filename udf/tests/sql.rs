//! The SQL functions through DataFusion against a real service on loopback.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, DictionaryArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::prelude::{SessionConfig, SessionContext};
use pseudonym_client::{Client, RetryPolicy};
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_udf::{Service, generate, tables};

/// A session with the functions registered against `url`, its I/O on `io`.
fn session(
    url: &str,
    key: &str,
    io: &tokio::runtime::Runtime,
    retry: RetryPolicy,
) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(4096));
    let client = Client::builder()
        .url(url)
        .api_key(key)
        .retry_policy(retry)
        .build()
        .expect("client");
    Service::new(client, io.handle().clone()).register(&ctx);
    ctx
}

/// A replica on loopback, a session with the functions registered against it, and a folder.
struct Setup {
    replica: Replica,
    ctx: SessionContext,
    dir: tempfile::TempDir,
    io: Option<tokio::runtime::Runtime>,
    _fixture: Fixture,
}

impl Setup {
    fn start() -> Setup {
        let fixture = Fixture::new();
        let replica = Replica::start(&fixture, Fault::None);
        let io = io_runtime();
        let ctx = session(&replica.url, &fixture.api_key, &io, RetryPolicy::default());
        Setup {
            replica,
            ctx,
            dir: tempfile::tempdir().expect("tempdir"),
            io: Some(io),
            _fixture: fixture,
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // A runtime may not be dropped inside the test's own runtime.
        if let Some(io) = self.io.take() {
            io.shutdown_background();
        }
    }
}

fn io_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0)
}

/// 20,000 seed-shaped rows with every 10th VIN null, as table `cars`.
async fn cars(ctx: &SessionContext, dir: &std::path::Path) {
    let path = dir.join("cars.parquet");
    generate::parquet(ctx, &path, 20_000, 3_000)
        .await
        .expect("generated");
    tables::register(ctx, "raw_cars", &path)
        .await
        .expect("registered");
    ctx.sql("CREATE VIEW cars AS SELECT dept_id, CASE WHEN CAST(dept_id AS INT) % 10 = 3 THEN NULL ELSE vin END AS vin, example_ts FROM raw_cars")
        .await
        .expect("view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_nulls_and_joins_through_sql() {
    let setup = Setup::start();
    let (ctx, dir) = (setup.ctx.clone(), &setup.dir);
    cars(&ctx, dir.path()).await;

    assert_eq!(count(&ctx, "SELECT count(*) FROM cars").await, 20_000);
    let wrong = "SELECT count(*) FROM (SELECT vin, pseudonymize(vin, 'vin') AS p FROM cars) \
                 WHERE reidentify(p, 'vin') IS DISTINCT FROM vin";
    assert_eq!(
        count(&ctx, wrong).await,
        0,
        "every row round-trips, nulls included"
    );
    let nulls = "SELECT count(*) FROM cars WHERE (pseudonymize(vin, 'vin', 'hash') IS NULL) != (vin IS NULL)";
    assert_eq!(count(&ctx, nulls).await, 0);

    ctx.sql("CREATE TABLE pseudo AS SELECT dept_id, pseudonymize(vin, 'vin') AS vin FROM cars")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let plain = count(
        &ctx,
        "SELECT count(*) FROM cars a JOIN cars b ON a.vin = b.vin",
    )
    .await;
    let pseudo = count(
        &ctx,
        "SELECT count(*) FROM pseudo a JOIN pseudo b ON a.vin = b.vin",
    )
    .await;
    assert!(plain > 20_000);
    assert_eq!(pseudo, plain, "joins on pseudonyms match joins on values");
    assert!(setup.replica.values_pseudonymized() > 0);

    let copy = dir.path().join("out.parquet");
    let sql = format!(
        "COPY (SELECT dept_id, pseudonymize(vin, 'vin') AS vin FROM cars) TO '{}' STORED AS PARQUET",
        copy.display()
    );
    ctx.sql(&sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    tables::register(&ctx, "out", &copy)
        .await
        .expect("registered");
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM out WHERE vin LIKE 'd1.%'").await,
        18_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_nest_and_numbers_go_by_their_canonical_text() {
    let setup = Setup::start();
    let (ctx, dir) = (setup.ctx.clone(), &setup.dir);
    cars(&ctx, dir.path()).await;

    // Only the inner call of a nested pair waits on the engine's thread: the outer one, and a
    // call on its own, stay in DataFusion's async step (AsyncFuncExec).
    let plan = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(&format!("EXPLAIN {sql}")).await.expect("plans");
            let batches = batches.collect().await.expect("explains");
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .expect("prints")
                .to_string()
        }
    };
    let alone = plan("SELECT pseudonymize(vin, 'vin') FROM cars".to_owned()).await;
    assert!(alone.contains("AsyncFuncExec"), "{alone}");
    let nested =
        plan("SELECT reidentify(pseudonymize(vin, 'vin'), 'vin') FROM cars".to_owned()).await;
    let async_step = nested
        .lines()
        .find(|line| line.contains("AsyncFuncExec"))
        .unwrap_or_default();
    assert!(async_step.contains("reidentify"), "{nested}");
    assert_eq!(
        async_step.matches("__async_fn_").count(),
        1,
        "one async call: {nested}"
    );

    // Nested in each other, in a filter, and with another function between them.
    let nested = "SELECT count(*) FROM cars \
                  WHERE (reidentify(pseudonymize(vin, 'vin'), 'vin') IS DISTINCT FROM vin) \
                  OR (reidentify(rewrap(pseudonymize(vin, 'vin', 'randomized'), 'vin'), 'vin') IS DISTINCT FROM vin) \
                  OR reidentify(lower(upper(pseudonymize(vin, 'vin'))), 'vin', 'null') IS NOT NULL";
    assert_eq!(count(&ctx, nested).await, 0);

    // A number is pseudonymized as its decimal text, the same as that text.
    let numbers = "SELECT count(*) FROM (VALUES (42), (-7), (NULL)) AS t(id) \
                   WHERE (pseudonymize(id, 'ids') IS DISTINCT FROM pseudonymize(CAST(id AS VARCHAR), 'ids')) \
                   OR (reidentify(pseudonymize(id, 'ids'), 'ids') IS DISTINCT FROM CAST(id AS VARCHAR))";
    assert_eq!(count(&ctx, numbers).await, 0);
    let decimals = "SELECT count(*) FROM (VALUES (CAST(12.5 AS DECIMAL(10, 2)))) AS t(amount) \
                    WHERE reidentify(pseudonymize(amount, 'ids'), 'ids') != '12.50'";
    assert_eq!(count(&ctx, decimals).await, 0);
    let dates = "SELECT count(*) FROM (VALUES (DATE '2024-01-31')) AS t(day) \
                 WHERE reidentify(pseudonymize(day, 'ids'), 'ids') != '2024-01-31'";
    assert_eq!(count(&ctx, dates).await, 0);

    let refused = ctx
        .sql("SELECT reidentify(42, 'ids')")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("pseudonyms are strings"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_encoded_parquet_goes_through_its_dictionary() {
    let setup = Setup::start();
    let (ctx, dir) = (setup.ctx.clone(), &setup.dir);

    let vins: DictionaryArray<Int32Type> = (0..10_000)
        .map(|i| (i % 7 != 0).then(|| ["WVWZZZ1JZXW000001", "WVWZZZ1JZXW000002"][i % 2]))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("vin", vins.data_type().clone(), true),
    ]));
    let ids = Int64Array::from_iter_values(0..10_000);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(vins)]).expect("batch");
    let path = dir.path().join("dict.parquet");
    let file = std::fs::File::create(&path).expect("file");
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    tables::register(&ctx, "dict", &path)
        .await
        .expect("registered");

    let batches = ctx
        .sql("SELECT p, reidentify(p, 'vin') AS back, vin FROM (SELECT pseudonymize(vin, 'vin') AS p, vin FROM dict)")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let mut rows = 0;
    for batch in &batches {
        assert!(matches!(
            batch.column(0).data_type(),
            DataType::Dictionary(_, _)
        ));
        rows += batch.num_rows();
        let (p, back, vin) = (batch.column(0), batch.column(1), batch.column(2));
        assert_eq!(p.logical_null_count(), vin.logical_null_count());
        assert_eq!(
            datafusion::arrow::compute::cast(back, &DataType::Utf8)
                .expect("cast")
                .as_string::<i32>(),
            datafusion::arrow::compute::cast(vin, &DataType::Utf8)
                .expect("cast")
                .as_string::<i32>()
        );
    }
    assert_eq!(rows, 10_000);
    assert!(
        setup.replica.values_pseudonymized() < 100,
        "only dictionary entries are sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_literals_fail_at_planning_and_a_missing_service_fails_clearly() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let io = io_runtime();
    let ctx = session(&replica.url, &fixture.api_key, &io, RetryPolicy::default());
    ctx.sql("CREATE TABLE t AS VALUES ('a', 'vin'), ('b', 'vin')")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");

    for (sql, expected) in [
        (
            "SELECT pseudonymize(column1, 5) FROM t",
            "argument 2 (domain) must be a string literal",
        ),
        (
            "SELECT pseudonymize(column1, column2) FROM t",
            "argument 2 (domain) must be a string literal",
        ),
        (
            "SELECT pseudonymize(column1, 'VIN!') FROM t",
            "pseudonymize: domain must be",
        ),
        (
            "SELECT pseudonymize(column1, 'vin', 'rot13') FROM t",
            "mode must be one of",
        ),
        (
            "SELECT reidentify(column1, 'vin', 'skip') FROM t",
            "on_error must be 'error' or 'null'",
        ),
        (
            "SELECT pseudonymize(1.5, 'vin')",
            "pseudonymize: unsupported input: Float64",
        ),
    ] {
        let error = match ctx.sql(sql).await {
            Err(error) => error.to_string(),
            Ok(frame) => frame.collect().await.expect_err(sql).to_string(),
        };
        assert!(error.contains(expected), "{sql}: {error}");
    }

    let error = ctx
        .sql("SELECT reidentify(column1, 'vin') FROM t")
        .await
        .expect("plans")
        .collect()
        .await
        .expect_err("not tokens");
    assert!(
        error
            .to_string()
            .contains("2 value(s) could not be re-identified"),
        "{error}"
    );
    let nulls = ctx
        .sql("SELECT reidentify(column1, 'vin', 'null') AS v FROM t")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    assert_eq!(nulls[0].column(0).null_count(), 2);

    let nobody = session(
        "http://127.0.0.1:9",
        &fixture.api_key,
        &io,
        RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
    );
    nobody
        .sql("CREATE TABLE t AS VALUES ('SECRET-VIN')")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let error = nobody
        .sql("SELECT pseudonymize(column1, 'vin') FROM t")
        .await
        .expect("plans")
        .collect()
        .await
        .expect_err("no service")
        .to_string();
    assert!(
        error.contains("pseudonymize: batch 1 of 1: failed after 2 attempts"),
        "{error}"
    );
    assert!(!error.contains("SECRET-VIN"));
    io.shutdown_background();
}

/// Runs `pseudonym-sql` against the service at `url`; its standard output, after checking that it
/// succeeded.
fn run_cli(url: &str, api_key: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pseudonym-sql"))
        .args(args)
        .env("PSEUDONYM_URL", url)
        .env("PSEUDONYM_API_KEY", api_key)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_command_line_pseudonymizes_a_parquet_file() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| run_cli(&replica.url, &fixture.api_key, args);
    let help = run(&["--help"]);
    assert!(
        help.contains("pseudonymize(value, domain [, mode [, on_error]])") && help.contains("COPY")
    );

    let cars = dir.path().join("cars.parquet");
    run(&[
        "generate",
        "--rows",
        "5000",
        "--cardinality",
        "700",
        cars.to_str().expect("utf-8"),
    ]);
    let out = dir.path().join("out.parquet");
    let copy = format!(
        "COPY (SELECT dept_id, pseudonymize(vin, 'vin') AS vin, example_ts FROM cars) TO '{}'",
        out.display()
    );
    run(&["-t", &format!("cars={}", cars.display()), &copy]);
    let table = run(&[
        "-t",
        &format!("out={}", out.display()),
        "--format",
        "csv",
        "SELECT count(DISTINCT vin) AS n, min(vin) LIKE 'd1.%' AS tokens FROM out",
    ]);
    assert_eq!(table.trim(), "n,tokens\n700,true");
}

/// A lake of the replaced AWS service's pseudonyms and of our older key version, rewrapped in
/// one statement of the command line, then re-identified to the original values.
#[test]
fn the_command_line_rewraps_a_lake_into_the_primary_key_version() {
    use datafusion::arrow::array::StringArray;
    use pseudonym_client::Mode;
    use pseudonym_service::lambda::{LambdaKey, LambdaMode};
    use pseudonym_service::{Domain, Engine, Keyring};

    let default = Domain::new("default").expect("valid");
    let mut keyring = Keyring::generate();
    let seed = LambdaKey::from_secret_json(
        r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw==",
            "encodedNonceKey": "AQIDBAUGBwg=", "nonceStrPos": 9, "nonceEndPos": 21}"#,
    )
    .expect("valid key");
    keyring.import_lambda_key(seed).expect("first seed key");
    let old = Engine::new(&keyring).with_compat_domain(default);
    let values: Vec<Option<String>> = (0..3000)
        .map(|i| (i % 11 != 5).then(|| format!("WVWZZZ1JZ{:08}", i % 400)))
        .collect();
    let (aws, ours) = values.split_at(2000);
    let mut tokens = old
        .pseudonymize_lambda(LambdaMode::Deterministic, aws)
        .expect("seed key");
    tokens.extend(old.pseudonymize(default, Mode::Deterministic, ours));
    keyring.add_version(true).expect("a version number is free");

    let fixture = Fixture::with_keyring(&keyring);
    let replica = Replica::start(&fixture, Fault::None);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake.parquet");
    let ids: Vec<i64> = (0..values.len() as i64).collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids)) as Arc<dyn Array>),
        ("vin", Arc::new(StringArray::from(tokens)) as Arc<dyn Array>),
    ])
    .expect("batch");
    let runtime = io_runtime();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_batch("lake", batch).expect("registered");
        let copy = format!("COPY (SELECT * FROM lake) TO '{}'", lake.display());
        ctx.sql(&copy)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("written");
    });

    let run = |args: &[&str]| run_cli(&replica.url, &fixture.api_key, args);
    let rewrapped = dir.path().join("rewrapped.parquet");
    let copy = format!(
        "COPY (SELECT id, rewrap(vin, 'default') AS vin FROM lake) TO '{}'",
        rewrapped.display()
    );
    run(&["-t", &format!("lake={}", lake.display()), &copy]);
    let table = format!("new={}", rewrapped.display());
    let summary = run(&[
        "-t",
        &table,
        "--format",
        "csv",
        "SELECT count(vin) AS tokens, count(DISTINCT vin) AS n, sum(CASE WHEN vin LIKE 'd2.%' THEN 1 ELSE 0 END) AS v2 FROM new",
    ]);
    let non_null = values.iter().flatten().count();
    assert_eq!(
        summary.trim(),
        format!("tokens,n,v2\n{non_null},400,{non_null}")
    );
    let back = run(&[
        "-t",
        &table,
        "--format",
        "csv",
        "SELECT coalesce(reidentify(vin, 'default'), 'NULL') AS vin FROM new ORDER BY id",
    ]);
    let back: Vec<&str> = back.lines().skip(1).collect();
    let expected: Vec<&str> = values
        .iter()
        .map(|v| v.as_deref().unwrap_or("NULL"))
        .collect();
    assert_eq!(back.len(), expected.len());
    let wrong = back.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(wrong, 0, "rows that did not come back as they were");
}

#[test]
fn the_command_line_splits_statements_where_sql_does() {
    let out = run_cli(
        "http://127.0.0.1:9",
        "unused",
        &[
            "--format",
            "csv",
            "SELECT 'a;b' AS x; -- a comment; with a semicolon\nSELECT 2 AS y",
        ],
    );
    assert_eq!(out, "x\na;b\ny\n2\n");
}
