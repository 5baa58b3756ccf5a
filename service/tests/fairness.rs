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
