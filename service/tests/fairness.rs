//! One API key cannot take the whole service. Found in review: one global pool of 256 requests,
//! so a single key (a big Spark job) took all of it and every other team got 503.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A request of `key` that authenticates, then waits for a body that never comes.
async fn hold_a_request(server: &TestServer, key: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .expect("connects");
    let head = format!(
        "POST /v1/pseudonymize HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.expect("writes");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_at_its_limit_gets_429_while_other_keys_are_served() {
    let server =
        TestServer::start(|config| config.limits.max_concurrent_requests_per_key = 2).await;
    let (admin, writer) = (server.keys.admin.clone(), server.keys.writer.clone());
    let body = json!({"domain": "vin", "values": ["a"]});
    let held = [
        hold_a_request(&server, &writer).await,
        hold_a_request(&server, &writer).await,
    ];

    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/pseudonymize", server.url))
            .header("x-api-key", &writer)
            .json(&body)
            .send()
            .await
            .expect("answered");
        if answer.status().as_u16() == 429 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the writer key was never limited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let error: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "too_many_requests");

    let (status, _) = server
        .post("/v1/pseudonymize", Some(&admin), body.clone())
        .await;
    assert_eq!(status, 200, "another key is served");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("pseudonym_key_limited_total{api_key=\"writer\"}"),
        "{metrics}"
    );

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = server
            .post("/v1/pseudonymize", Some(&writer), body.clone())
            .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "finished requests give their place back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_key_over_its_values_per_second_is_refused_before_its_body_is_read() {
    let server =
        TestServer::start(|config| config.limits.max_values_per_second_per_key = 100).await;
    let (admin, writer) = (server.keys.admin.clone(), server.keys.writer.clone());
    let values: Vec<String> = (0..1_000).map(|i| format!("WVWZZZ1JZXW{i:06}")).collect();

    // Ten seconds' budget in one batch: let in once, into debt.
    let (status, _) = server
        .post(
            "/v1/pseudonymize",
            Some(&writer),
            json!({"domain": "vin", "values": values}),
        )
        .await;
    assert_eq!(status, 200);

    // In debt: refused with the wait, before the body is read (bad JSON is not even seen).
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/pseudonymize", server.url))
        .header("x-api-key", &writer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status().as_u16(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((8..=10).contains(&wait), "Retry-After {wait}");
    let error: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "too_many_requests");

    let (status, _) = server
        .post(
            "/v1/pseudonymize",
            Some(&admin),
            json!({"domain": "vin", "values": ["a"]}),
        )
        .await;
    assert_eq!(status, 200, "another key has its own budget");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("pseudonym_key_limited_total{api_key=\"writer\"} 1"),
        "{metrics}"
    );
}
