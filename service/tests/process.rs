//! `pseudonymd` as a process: replicas agree, logs never show values or keys.

mod common;

use common::{Daemon, post_json, start_daemon, write_keys};
use serde_json::{Value, json};

async fn post(url: &str, path: &str, key: &str, body: Value) -> Value {
    let (status, answer) = post_json(url, path, Some(key), body.to_string()).await;
    assert!((200..500).contains(&status), "{status}");
    assert!(!answer.is_null(), "a JSON answer");
    answer
}

#[tokio::test]
async fn two_replicas_with_one_keyring_answer_byte_identical_pseudonyms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keyring, api_keys, keys) = write_keys(dir.path());
    let args = [
        "--keyring-file",
        keyring.to_str().expect("utf-8 path"),
        "--api-keys-file",
        api_keys.to_str().expect("utf-8 path"),
    ];
    let a = Daemon::start(&args, &[]);
    let b = Daemon::start(&args, &[]);
    assert_ne!(a.url, b.url);
    let values: Vec<String> = (0..500).map(|i| format!("WVWZZZ1JZXW{i:06}")).collect();
    for mode in ["deterministic", "hash"] {
        let body = json!({"domain": "vin", "mode": mode, "values": values});
        let from_a = post(&a.url, "/v1/pseudonymize", &keys.admin, body.clone()).await;
        let from_b = post(&b.url, "/v1/pseudonymize", &keys.admin, body).await;
        assert_eq!(from_a.to_string(), from_b.to_string(), "{mode}");
    }
    let randomized = post(
        &a.url,
        "/v1/pseudonymize",
        &keys.admin,
        json!({"domain": "vin", "mode": "randomized", "values": values}),
    )
    .await;
    let back = post(
        &b.url,
        "/v1/reidentify",
        &keys.admin,
        json!({"domain": "vin", "pseudonyms": randomized["pseudonyms"]}),
    )
    .await;
    assert_eq!(
        back["values"],
        json!(values),
        "one replica opens the other's tokens"
    );
}

#[tokio::test]
async fn the_most_verbose_logs_hold_no_value_token_plaintext_or_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keyring, api_keys, keys) = write_keys(dir.path());
    let keyring_text = std::fs::read_to_string(&keyring).expect("keyring");
    let daemon = Daemon::start(
        &[
            "--keyring-file",
            keyring.to_str().expect("utf-8 path"),
            "--api-keys-file",
            api_keys.to_str().expect("utf-8 path"),
            "--log",
            "trace",
        ],
        &[],
    );
    let secrets = [
        "SECRETVIN0000001",
        "jane.secret@example.com",
        "pLaInTeXt-with-\"quotes\"",
    ];
    let made = post(
        &daemon.url,
        "/v1/pseudonymize",
        &keys.admin,
        json!({"domain": "vin", "values": secrets}),
    )
    .await;
    let mut tokens = made["pseudonyms"].as_array().expect("list").clone();
    tokens.push(json!("d1.SECRETTOKENBODY"));
    post(
        &daemon.url,
        "/v1/reidentify",
        &keys.admin,
        json!({"domain": "vin", "pseudonyms": tokens}),
    )
    .await;
    post(
        &daemon.url,
        "/v1/reidentify",
        &keys.writer,
        json!({"domain": "vin", "pseudonyms": tokens}),
    )
    .await;
    post(
        &daemon.url,
        "/v1/pseudonymize",
        &keys.admin,
        json!({"domain": "vin", "values": "SECRETVIN0000001"}),
    )
    .await;
    let long = format!("SECRETVIN0000001{}", "x".repeat(5000));
    post(
        &daemon.url,
        "/v1/pseudonymize",
        &keys.admin,
        json!({"domain": "vin", "values": [long]}),
    )
    .await;
    post(
        &daemon.url,
        "/v1/pseudonymize",
        "pk_SECRETWRONGKEY",
        json!({"domain": "vin", "values": secrets}),
    )
    .await;

    let logs = daemon.stop();
    assert!(
        logs.contains("\"operation\":\"reidentify\""),
        "audit lines (standard output) were captured:\n{logs}"
    );
    assert!(
        logs.contains("tower_http"),
        "request traces were captured:\n{logs}"
    );
    let mut forbidden: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    forbidden.push("SECRETTOKENBODY".into());
    forbidden.push("SECRETWRONGKEY".into());
    forbidden.push(keys.admin.clone());
    forbidden.push(keys.writer.clone());
    for line in keyring_text.lines().filter(|l| l.starts_with("secret")) {
        forbidden.push(
            line.trim_start_matches("secret = ")
                .trim_matches('"')
                .to_owned(),
        );
    }
    for secret in forbidden {
        assert!(!logs.contains(&secret), "the logs show {secret:?}");
    }
}

/// Found in review: every 503 was an ERROR log line, so an overload flooded stderr.
#[tokio::test]
async fn timeouts_and_overload_are_not_logged_as_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, keys) = start_daemon(dir.path(), &["--request-timeout-ms", "1"]);
    // A body that never arrives in full: the request times out with 503, three times.
    let head = format!(
        "POST /v1/pseudonymize HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"domain\"",
        keys.admin
    );
    for _ in 0..3 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(daemon.url.trim_start_matches("http://"))
            .await
            .expect("connects");
        stream.write_all(head.as_bytes()).await.expect("writes");
        let mut answer = [0u8; 64];
        let read = stream.read(&mut answer).await.expect("answered");
        assert!(
            answer[..read].starts_with(b"HTTP/1.1 503"),
            "{:?}",
            &answer[..read]
        );
    }
    let output = daemon.stop();
    assert!(!output.contains("ERROR"), "{output}");
}
