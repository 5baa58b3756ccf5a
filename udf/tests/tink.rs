//! Tink tokens through DataFusion SQL: a replica whose `vin` domain writes them, the functions
//! unchanged.

use std::collections::BTreeMap;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::{SessionConfig, SessionContext};
use pseudonym_client::Client;
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_service::config::TinkConfig;
use pseudonym_udf::{Service, generate, tables};

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
async fn sql_writes_and_reads_tink_tokens_in_a_tink_domain() {
    let mut fixture = Fixture::new();
    fixture.config.tink = BTreeMap::from([("vin".to_owned(), TinkConfig::default())]);
    let replica = Replica::start(&fixture, Fault::None);
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
    generate::parquet(&ctx, &path, 5_000, 800)
        .await
        .expect("generated");
    tables::register(&ctx, "cars", &path)
        .await
        .expect("registered");

    ctx.sql("CREATE TABLE pseudo AS SELECT vin, pseudonymize(vin, 'vin') AS p FROM cars")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    // 0x01 and key id 1 in base64, and 4 characters for each 3 of the 21-byte head and the VIN.
    let tink = "SELECT count(*) FROM pseudo WHERE p LIKE 'AQAAAA%' AND length(p) = 52";
    assert_eq!(count(&ctx, tink).await, 5_000);
    let wrong = "SELECT count(*) FROM pseudo WHERE reidentify(p, 'vin') IS DISTINCT FROM vin";
    assert_eq!(count(&ctx, wrong).await, 0, "every row round-trips");
    let distinct = "SELECT count(DISTINCT p) - count(DISTINCT vin) FROM pseudo";
    assert_eq!(
        count(&ctx, distinct).await,
        0,
        "deterministic: one token per VIN"
    );
    io.shutdown_background();
    drop(replica);
}
