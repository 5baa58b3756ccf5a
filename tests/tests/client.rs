//! The client against real service replicas on loopback: whole partitions, faults, failover.

use std::time::{Duration, Instant};

use pseudonym_client::{Client, Error, Failure, ItemErrorCode, Mode, RetryPolicy};
use pseudonym_e2e::{DroppingProxy, Fault, Fixture, Replica};

/// `rows` values with about 10% nulls, drawn from `distinct` VIN-like values.
fn partition(rows: usize, distinct: usize) -> Vec<Option<String>> {
    (0..rows)
        .map(|i| (i % 10 != 7).then(|| format!("WVWZZZ1JZ{:08}", (i * 7919) % distinct)))
        .collect()
}

fn builder(urls: &[&str], key: &str) -> pseudonym_client::ClientBuilder {
    Client::builder()
        .urls(urls.iter().copied())
        .api_key(key)
        .retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_partition_equals_the_services_direct_answers_and_sends_each_value_once() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let values = partition(100_000, 5_000);
    let client = builder(&[&replica.url], &fixture.api_key)
        .build()
        .expect("client");

    let pseudonyms = client
        .pseudonymize("vin", Mode::Deterministic, &values)
        .await
        .expect("pseudonymized");
    assert_eq!(
        pseudonyms,
        fixture.direct_pseudonyms("vin", Mode::Deterministic, &values)
    );
    let non_null = values.iter().flatten().count();
    let distinct = values
        .iter()
        .flatten()
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(
        distinct * 10 < non_null,
        "the partition is heavily duplicated"
    );
    assert_eq!(
        replica.values_pseudonymized(),
        distinct as u64,
        "dedup sends each of the {distinct} distinct values once, not {non_null}"
    );

    let back = client
        .reidentify("vin", &pseudonyms)
        .await
        .expect("reidentified");
    assert!(back.errors.is_empty());
    assert_eq!(back.values, values);
}

#[tokio::test]
async fn with_a_cache_repeated_values_go_to_the_service_once_per_client() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder(&[&replica.url], &fixture.api_key)
        .cache_capacity(10_000)
        .build()
        .expect("client");
    let first = partition(3_000, 1_000);
    let second = partition(6_000, 2_000);
    let a = client
        .pseudonymize("vin", Mode::Deterministic, &first)
        .await
        .expect("first");
    let b = client
        .pseudonymize("vin", Mode::Deterministic, &second)
        .await
        .expect("second");
    assert_eq!(
        a,
        fixture.direct_pseudonyms("vin", Mode::Deterministic, &first)
    );
    assert_eq!(
        b,
        fixture.direct_pseudonyms("vin", Mode::Deterministic, &second)
    );
    let distinct: std::collections::HashSet<_> = first.iter().chain(&second).flatten().collect();
    assert_eq!(
        replica.values_pseudonymized(),
        distinct.len() as u64,
        "each value sent once"
    );

    let randomized = [Some("r"), Some("r")];
    let one = client
        .pseudonymize("vin", Mode::Randomized, &randomized)
        .await
        .expect("r");
    let two = client
        .pseudonymize("vin", Mode::Randomized, &randomized)
        .await
        .expect("r");
    assert_ne!(one, two, "randomized pseudonyms are never cached");
}

#[tokio::test]
async fn randomized_rows_each_get_their_own_pseudonym() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder(&[&replica.url], &fixture.api_key)
        .build()
        .expect("client");
    let values = [Some("same"), Some("same"), None];
    let pseudonyms = client
        .pseudonymize("vin", Mode::Randomized, &values)
        .await
        .expect("pseudonymized");
    assert_ne!(pseudonyms[0], pseudonyms[1]);
    assert_eq!(pseudonyms[2], None);
}

#[tokio::test]
async fn failed_items_come_back_typed_with_their_row() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder(&[&replica.url], &fixture.api_key)
        .batch_size(2)
        .build()
        .expect("client");
    let good = client
        .pseudonymize("vin", Mode::Deterministic, &[Some("a")])
        .await
        .expect("pseudonymized")[0]
        .clone();
    let tokens = [
        good.clone(),
        Some("forged".to_owned()),
        None,
        Some("d99.AAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        Some("forged".to_owned()),
        good,
    ];
    let back = client.reidentify("vin", &tokens).await.expect("answered");
    let a = Some("a".to_owned());
    assert_eq!(back.values, [a.clone(), None, None, None, None, a]);
    let errors: Vec<_> = back.errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(
        errors,
        [
            (1, ItemErrorCode::InvalidToken),
            (3, ItemErrorCode::UnknownKeyVersion),
            (4, ItemErrorCode::InvalidToken)
        ]
    );
}

#[tokio::test]
async fn transient_503_429_and_dropped_connections_are_survived() {
    let fixture = Fixture::new();
    let values = partition(5_000, 5_000);
    let expected = fixture.direct_pseudonyms("vin", Mode::Deterministic, &values);

    for fault in [Fault::Unavailable(5), Fault::TooManyRequests(1)] {
        let replica = Replica::start(&fixture, fault);
        let client = builder(&[&replica.url], &fixture.api_key)
            .batch_size(1000)
            .build()
            .expect("client");
        let started = Instant::now();
        let pseudonyms = client
            .pseudonymize("vin", Mode::Deterministic, &values)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(pseudonyms, expected, "{fault:?}");
        if let Fault::TooManyRequests(_) = fault {
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "Retry-After honoured"
            );
        }
    }

    let replica = Replica::start(&fixture, Fault::None);
    let proxy = DroppingProxy::start(&replica.url, 3).await;
    let client = builder(&[&proxy.url], &fixture.api_key)
        .batch_size(1000)
        .build()
        .expect("client");
    let pseudonyms = client
        .pseudonymize("vin", Mode::Deterministic, &values)
        .await
        .expect("dropped connections are retried");
    assert_eq!(pseudonyms, expected);
}

#[tokio::test]
async fn a_service_that_always_fails_fails_the_call_within_the_retry_budget() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::AlwaysUnavailable);
    let client = builder(&[&replica.url], &fixture.api_key)
        .retry_policy(RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(10),
        })
        .build()
        .expect("client");
    // The budget is the attempts, not this machine's speed: exactly four, then the error.
    let error = client
        .pseudonymize("vin", Mode::Deterministic, &[Some("SECRET-VALUE")])
        .await
        .expect_err("must fail");
    assert!(matches!(
        error,
        Error::RetriesExhausted {
            attempts: 4,
            last: Failure::Status(503),
            ..
        }
    ));
    let message = error.to_string();
    assert!(
        message.contains("batch 1 of 1") && message.contains("HTTP 503"),
        "{message}"
    );
    assert!(!message.contains("SECRET-VALUE"));
    assert_eq!(
        replica.requests.load(std::sync::atomic::Ordering::SeqCst),
        4
    );
}

#[tokio::test]
async fn answers_that_cannot_change_are_not_retried() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder(&[&replica.url], "pk_wrong")
        .build()
        .expect("client");
    let error = client
        .pseudonymize("vin", Mode::Deterministic, &[Some("a")])
        .await
        .expect_err("unauthorized");
    assert!(
        matches!(&error, Error::Rejected { status: 401, code, .. } if code == "unauthorized"),
        "{error}"
    );
    assert_eq!(
        replica.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let nobody = builder(&["http://127.0.0.1:9"], &fixture.api_key)
        .retry_policy(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
        .build()
        .expect("client");
    let error = nobody
        .pseudonymize("vin", Mode::Deterministic, &[Some("a")])
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(
            error,
            Error::RetriesExhausted {
                last: Failure::Connect,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_loses_nothing() {
    let fixture = Fixture::new();
    let mut doomed = Replica::start(&fixture, Fault::None);
    let survivor = Replica::start(&fixture, Fault::None);
    let values = partition(200_000, 200_000);
    let expected = fixture.direct_pseudonyms("vin", Mode::Deterministic, &values);
    let client = builder(&[&doomed.url, &survivor.url], &fixture.api_key)
        .batch_size(500)
        .build()
        .expect("client");

    let call = tokio::spawn({
        let client = client.clone();
        let values = values.clone();
        async move {
            client
                .pseudonymize("vin", Mode::Deterministic, &values)
                .await
        }
    });
    while doomed.requests.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    doomed.kill();
    let pseudonyms = call.await.expect("task").expect("partition completes");
    assert_eq!(pseudonyms, expected);
    assert!(survivor.values_pseudonymized() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_replica_killed_and_restarted_mid_run_loses_nothing() {
    let fixture = Fixture::new();
    let mut replica = Replica::start(&fixture, Fault::None);
    let values = partition(200_000, 200_000);
    let expected = fixture.direct_pseudonyms("vin", Mode::Deterministic, &values);
    let client = builder(&[&replica.url], &fixture.api_key)
        .batch_size(500)
        .retry_policy(RetryPolicy {
            max_attempts: 30,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(60),
        })
        .build()
        .expect("client");
    let call = tokio::spawn({
        let values = values.clone();
        async move {
            client
                .pseudonymize("vin", Mode::Deterministic, &values)
                .await
        }
    });
    while replica.requests.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    replica.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica.restart(&fixture);
    let pseudonyms = call.await.expect("task").expect("the job completes");
    assert_eq!(pseudonyms, expected);
    assert!(
        replica.values_pseudonymized() > 0,
        "the restarted replica did the rest"
    );
}

#[tokio::test]
async fn a_stream_of_micro_batches_comes_back_in_order() {
    use futures::StreamExt;
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder(&[&replica.url], &fixture.api_key)
        .build()
        .expect("client");
    let batches: Vec<Vec<Option<String>>> = (0..20).map(|i| partition(500 + i, 300)).collect();
    let results: Vec<_> = client
        .pseudonymize_stream(
            "vin",
            Mode::Deterministic,
            futures::stream::iter(batches.clone()),
            3,
        )
        .collect()
        .await;
    for (batch, result) in batches.iter().zip(results) {
        let result = result.expect("batch pseudonymized");
        assert_eq!(
            result,
            fixture.direct_pseudonyms("vin", Mode::Deterministic, batch)
        );
    }
}

#[test]
fn the_blocking_client_needs_no_runtime() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = Client::builder()
        .url(&replica.url)
        .api_key(&fixture.api_key)
        .build_blocking()
        .expect("client");
    let values = [Some("x"), None];
    let pseudonyms = client
        .pseudonymize("vin", Mode::Hash, &values)
        .expect("pseudonymized");
    assert!(
        pseudonyms[0]
            .as_deref()
            .is_some_and(|p| p.starts_with("h1."))
    );
    assert_eq!(pseudonyms[1], None);
}

#[tokio::test]
async fn rewrap_moves_a_partition_to_the_new_primary_sending_each_token_once() {
    use pseudonym_service::lambda::{LambdaKey, LambdaMode};
    use pseudonym_service::{Domain, Engine, Keyring};
    let default = Domain::new("default").expect("valid");
    let mut keyring = Keyring::generate();
    let seed = LambdaKey::from_secret_json(
        r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "encodedNonceKey": "AQIDBAUGBwg=", "nonceStrPos": 3, "nonceEndPos": 15}"#,
    )
    .expect("valid key");
    keyring.import_lambda_key(seed).expect("first seed key");
    let old = Engine::new(&keyring).with_compat_domain(default);
    let v1 = old.pseudonymize(default, Mode::Deterministic, &[Some("a"), Some("b")]);
    let aws = old
        .pseudonymize_lambda(LambdaMode::Deterministic, &[Some("c")])
        .expect("seed key");
    let aws_randomized = old
        .pseudonymize_lambda(LambdaMode::Randomized, &[Some("d")])
        .expect("seed key");
    keyring.add_version(true).expect("a version number is free");
    let fixture = Fixture::with_keyring(&keyring);
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder(&[&replica.url], &fixture.api_key)
        .batch_size(2)
        .build()
        .expect("client");

    let rows = [
        v1[0].clone(),
        None,
        aws[0].clone(),
        v1[0].clone(),
        Some("forged".to_owned()),
        aws_randomized[0].clone(),
        v1[1].clone(),
    ];
    let rewrapped = client.rewrap("default", &rows).await.expect("rewrapped");
    let errors: Vec<_> = rewrapped.errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(errors, [(4, ItemErrorCode::InvalidToken)]);
    let now = |value: &str| {
        fixture.direct_pseudonyms("default", Mode::Deterministic, &[Some(value.to_owned())])[0]
            .clone()
    };
    let new = &rewrapped.pseudonyms;
    assert_eq!(
        [&new[0], &new[1], &new[2], &new[3], &new[4], &new[6]],
        [&now("a"), &None, &now("c"), &now("a"), &None, &now("b")]
    );
    assert!(new[5].as_deref().is_some_and(|t| t.starts_with("r2.")));
    assert_eq!(
        replica.requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "5 distinct tokens in batches of 2"
    );

    let back = client.reidentify("default", new).await.expect("answered");
    let expected = [
        Some("a"),
        None,
        Some("c"),
        Some("a"),
        None,
        Some("d"),
        Some("b"),
    ];
    assert_eq!(back.values, expected.map(|v| v.map(str::to_owned)));
}

/// Found in review: the client followed redirects, re-sending the API key and the values to
/// wherever a redirect pointed.
#[tokio::test]
async fn redirects_are_not_followed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{StatusCode, header};

    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let elsewhere = serve(axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "captured" }
    }))
    .await;
    let target = format!("{elsewhere}/v1/pseudonymize");
    let redirecting = serve(axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]) }
    }))
    .await;

    let client = builder(&[&redirecting], "pk_secret")
        .build()
        .expect("client");
    let error = client
        .pseudonymize("vin", Mode::Deterministic, &[Some("WVWZZZ1JZXW000001")])
        .await
        .expect_err("a redirect is not an answer");
    assert!(
        matches!(error, Error::Rejected { status: 307, .. }),
        "{error}"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing was sent elsewhere"
    );
}
