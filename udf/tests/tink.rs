//! Tink tokens through DataFusion SQL: a replica whose `vin` domain writes them, the functions
//! unchanged.

mod common;

use std::collections::BTreeMap;

use common::CarsSession;
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_service::config::TinkConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_writes_and_reads_tink_tokens_in_a_tink_domain() {
    let mut fixture = Fixture::new();
    fixture.config.tink = BTreeMap::from([("vin".to_owned(), TinkConfig::default())]);
    let replica = Replica::start(&fixture, Fault::None);
    let session = CarsSession::start(&replica.url, &fixture.api_key, 5_000, 800).await;

    session
        .run("CREATE TABLE pseudo AS SELECT vin, pseudonymize(vin, 'vin') AS p FROM cars")
        .await;
    // 0x01 and key id 1 in base64, and 4 characters for each 3 of the 21-byte head and the VIN.
    let tink = "SELECT count(*) FROM pseudo WHERE p LIKE 'AQAAAA%' AND length(p) = 52";
    assert_eq!(session.count(tink).await, 5_000);
    let wrong = "SELECT count(*) FROM pseudo WHERE reidentify(p, 'vin') IS DISTINCT FROM vin";
    assert_eq!(session.count(wrong).await, 0, "every row round-trips");
    let distinct = "SELECT count(DISTINCT p) - count(DISTINCT vin) FROM pseudo";
    assert_eq!(
        session.count(distinct).await,
        0,
        "deterministic: one token per VIN"
    );
    drop(session);
    drop(replica);
}
