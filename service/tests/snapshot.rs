//! One snapshot of the keys serves a whole request. Found in review: authentication, the engine
//! and `key_version` were three loads of the swappable keys, so a reload landing inside a request
//! could give an answer that mixed keyrings.

mod common;

use std::time::{Duration, Instant};

use common::{post_json, start_daemon};
use pseudonym_service::keyring::Keyring;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_request_does_not_change_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long request timeout: the held request must outlast a slow machine's reload.
    let (daemon, keys) = start_daemon(
        dir.path(),
        &[
            "--max-concurrent-requests-per-key",
            "1",
            "--request-timeout-ms",
            "60000",
        ],
    );
    let keyring = dir.path().join("keyring.toml");
    let body = json!({"domain": "vin", "values": ["WVWZZZ1JZXW000001"]}).to_string();
    let (head, rest) = body.split_at(10);

    // A request that is past authentication, waiting for the rest of its body.
    let mut held = tokio::net::TcpStream::connect(daemon.url.trim_start_matches("http://"))
        .await
        .expect("connects");
    let request = format!(
        "POST /v1/pseudonymize HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
        keys.admin,
        body.len()
    );
    held.write_all(request.as_bytes()).await.expect("writes");
    // With one request allowed per key, a 429 for the same key proves it is inside.
    let deadline = Instant::now() + Duration::from_secs(5);
    while post_json(
        &daemon.url,
        "/v1/pseudonymize",
        Some(&keys.admin),
        body.clone(),
    )
    .await
    .0 != 429
    {
        assert!(Instant::now() < deadline, "the held request never got in");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut ring = Keyring::load(&keyring).expect("keyring");
    ring.add_version(true).expect("a version number is free");
    ring.save(&keyring).expect("save");
    daemon.hangup();
    daemon.wait_for_output("reloaded keys");

    held.write_all(rest.as_bytes())
        .await
        .expect("writes the rest");
    let mut answer = String::new();
    held.read_to_string(&mut answer).await.expect("answered");
    let json: Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON");
    assert_eq!(json["key_version"], 1, "the keys of when it came in");
    assert!(
        json["pseudonyms"][0]
            .as_str()
            .expect("token")
            .starts_with("d1.")
    );

    let (_, after) = post_json(&daemon.url, "/v1/pseudonymize", Some(&keys.admin), body).await;
    assert_eq!(after["key_version"], 2, "the next request sees the reload");
}
