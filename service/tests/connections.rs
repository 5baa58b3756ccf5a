//! Connections are bounded. Found in review: 3,000 connections that sent only part of a
//! request's headers were all still open 40 s later, with no cap on how many. Now headers must
//! arrive within `limits.header_read_timeout_ms`, an idle HTTP/1 connection closes after as long,
//! and connections beyond `limits.max_connections` are closed at once; HTTPS in `tls.rs`.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PART_OF_A_REQUEST: &[u8] = b"POST /v1/pseudonymize HTTP/1.1\r\nHost: x\r\n";

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .expect("connects")
}

/// Whether the server closes `stream` within `wait` (reads to the end, ignoring any answer).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(wait, read_to_end).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed_while_others_are_served() {
    let server = TestServer::start(|config| config.limits.header_read_timeout_ms = 500).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = connect(&server).await;
        stream.write_all(PART_OF_A_REQUEST).await.expect("writes");
        slow.push(stream);
    }
    let mut silent = connect(&server).await;
    let mut idle = connect(&server).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut answer = [0u8; 256];
    let read = idle.read(&mut answer).await.expect("answered");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    let admin = Some(server.keys.admin.as_str());
    let (status, _) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "values": ["a"]}),
        )
        .await;
    assert_eq!(status, 200, "served next to 200 slow connections");

    let wait = Duration::from_secs(5);
    for stream in &mut slow {
        assert!(
            closed_within(stream, wait).await,
            "slow headers are cut off"
        );
    }
    assert!(
        closed_within(&mut silent, wait).await,
        "a silent connection too"
    );
    assert!(
        closed_within(&mut idle, wait).await,
        "an idle keep-alive one too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let server = TestServer::start(|config| config.limits.max_connections = 20).await;
    let mut streams = Vec::new();
    for _ in 0..30 {
        streams.push(connect(&server).await);
    }
    let mut closed = 0;
    for stream in &mut streams {
        if closed_within(stream, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 10, "exactly the connections beyond 20");

    drop(streams);
    let healthz = format!("{}/healthz", server.url);
    let mut served = false;
    for _ in 0..50 {
        if let Ok(answer) = reqwest::get(&healthz).await {
            served = answer.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "closed connections give their place back");
}
