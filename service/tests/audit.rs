//! The audit trail. Found in review: a failed write was logged and the plaintext returned
//! anyway; without `--audit-log` a log filter dropped audit lines; the file was never reopened,
//! so log rotation broke it; requests refused before their handler (401, bad JSON, 413) left no
//! line; and lines quoted the request's unvalidated domain.

mod common;

use common::{Daemon, TestServer, post_json, start_daemon};
use serde_json::{Value, json};

/// The audit lines once there are `count` of them (refusals' lines are queued, not waited for),
/// or those written within 5 s.
async fn lines_when(path: &std::path::Path, count: usize) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let written = lines(path);
        if written.len() >= count || started.elapsed() > std::time::Duration::from_secs(5) {
            return written;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn every_refused_reidentification_leaves_a_line_with_a_checked_domain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = dir.path().join("audit.jsonl");
    let path = trail.clone();
    let server = TestServer::start(move |config| {
        config.audit_log = Some(path);
        config.limits.max_body_bytes = 4096;
    })
    .await;
    let admin = Some(server.keys.admin.as_str());
    let writer = Some(server.keys.writer.as_str());
    let tokens = json!({"domain": "vin", "pseudonyms": ["d1.AAAA"]});
    let cases: [(&str, Option<&str>, String, u16); 6] = [
        ("/v1/reidentify", None, tokens.to_string(), 401),
        (
            "/v1/reidentify",
            Some("pk_unknown"),
            tokens.to_string(),
            401,
        ),
        (
            "/v1/reidentify",
            admin,
            "{\"domain\": \"vin\", ".to_owned(),
            400,
        ),
        ("/v1/rewrap", admin, "x".repeat(5000), 413),
        (
            "/reidentification",
            writer,
            json!({"pseudonyms": []}).to_string(),
            403,
        ),
        (
            "/v1/reidentify",
            admin,
            json!({"domain": "<script>", "pseudonyms": []}).to_string(),
            400,
        ),
    ];
    for (path, key, body, status) in &cases {
        let (got, _) = post_json(&server.url, path, *key, body.clone()).await;
        assert_eq!(got, *status, "{path} {body:.40}");
    }
    let written = lines_when(&trail, cases.len()).await;
    let summary: Vec<(&str, &str, Value, Value)> = written
        .iter()
        .map(|line| {
            (
                line["operation"].as_str().expect("operation"),
                line["reason"].as_str().expect("reason"),
                line["api_key"].clone(),
                line["domain"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("reidentify", "unauthorized", Value::Null, Value::Null),
            ("reidentify", "unauthorized", Value::Null, Value::Null),
            ("reidentify", "bad_json", json!("admin"), Value::Null),
            ("rewrap", "body_too_large", json!("admin"), Value::Null),
            ("reidentify", "forbidden", json!("writer"), json!("default")),
            (
                "reidentify",
                "invalid_argument",
                json!("admin"),
                Value::Null
            ),
        ]
    );
    assert!(written.iter().all(|line| line["outcome"] == "refused"));
    assert!(
        !std::fs::read_to_string(&trail)
            .expect("trail")
            .contains("script")
    );
}

fn daemon(dir: &std::path::Path, extra: &[&str]) -> (Daemon, String) {
    let (daemon, keys) = start_daemon(dir, extra);
    (daemon, keys.admin)
}

async fn reidentify_one(daemon: &Daemon, key: &str) -> (u16, Value) {
    let body = json!({"domain": "vin", "values": ["SECRET-VIN-1"]}).to_string();
    let (_, made) = post_json(&daemon.url, "/v1/pseudonymize", Some(key), body).await;
    let body = json!({"domain": "vin", "pseudonyms": made["pseudonyms"]}).to_string();
    post_json(&daemon.url, "/v1/reidentify", Some(key), body).await
}

#[tokio::test]
async fn without_a_file_audit_lines_go_to_standard_output_whatever_the_log_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Only warnings, but for the start-up line the test learns the address from.
    let (daemon, admin) = daemon(dir.path(), &["--log", "warn,pseudonymd=info"]);
    let (status, _) = reidentify_one(&daemon, &admin).await;
    assert_eq!(status, 200);
    let output = daemon.stop();
    let line = output
        .lines()
        .find(|line| line.contains("\"operation\":\"reidentify\""))
        .unwrap_or_else(|| panic!("no audit line in {output}"));
    let line: Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(
        (&line["api_key"], &line["outcome"]),
        (&json!("admin"), &json!("ok"))
    );
    assert!(!output.contains("SECRET-VIN-1"));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn fail_closed_gives_no_plaintext_without_its_audit_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every write to /dev/full fails (no space left on device).
    let (closed, admin) = daemon(
        dir.path(),
        &["--audit-log", "/dev/full", "--audit-fail-closed"],
    );
    let (status, answer) = reidentify_one(&closed, &admin).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (503, &json!("audit_unavailable"))
    );
    assert!(!answer.to_string().contains("SECRET-VIN-1"));
    closed.stop();

    let open_dir = tempfile::tempdir().expect("tempdir");
    let (open, admin) = daemon(open_dir.path(), &["--audit-log", "/dev/full"]);
    let (status, answer) = reidentify_one(&open, &admin).await;
    assert_eq!((status, &answer["values"]), (200, &json!(["SECRET-VIN-1"])));
    assert!(open.stop().contains("audit line not written"));
}

#[tokio::test]
async fn sighup_reopens_the_audit_file_after_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let (daemon, admin) = daemon(dir.path(), &["--audit-log", trail.to_str().expect("utf-8")]);
    assert_eq!(reidentify_one(&daemon, &admin).await.0, 200);
    std::fs::rename(&trail, &rotated).expect("rotate");
    daemon.hangup();
    daemon.wait_for_output("reloaded keys");
    // The reopen follows the reload; give it its turn.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !trail.exists() {
        assert!(std::time::Instant::now() < deadline, "no new audit file");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(reidentify_one(&daemon, &admin).await.0, 200);
    assert_eq!(lines(&rotated).len(), 1);
    assert_eq!(lines(&trail).len(), 1);
    daemon.stop();
}

/// Found in review: with the crypto in slices, a request can time out between two of them,
/// after its handler had marked its line as written and before it wrote it.
#[tokio::test]
async fn a_reidentification_that_times_out_still_leaves_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = dir.path().join("audit.jsonl");
    let path = trail.clone();
    let server = TestServer::start(move |config| {
        config.audit_log = Some(path);
        config.limits.request_timeout_ms = 1;
    })
    .await;
    let tokens: Vec<String> = (0..10_000).map(|i| format!("d1.forged{i}")).collect();
    for _ in 0..5 {
        let (status, _) = post_json(
            &server.url,
            "/v1/reidentify",
            Some(&server.keys.admin),
            json!({"domain": "vin", "pseudonyms": tokens}).to_string(),
        )
        .await;
        assert!(status == 200 || status == 503, "{status}");
    }
    // Every request has its line, whether it finished or timed out, and at any point. A
    // refusal's line is queued, not waited for (`AuditLog::record_refusal`): it may come
    // just after the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines(&trail).len() < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let written = lines(&trail);
    assert_eq!(written.len(), 5, "{written:?}");
}

/// Found in review: a key that may only pseudonymize, asking to re-identify, waited for the
/// audit writer like a real re-identification; behind a sink that hangs, every such refusal
/// held its request until the timeout. A refusal releases nothing: it is answered at once.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_wait_for_a_hanging_audit_sink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo runs").success());
    // A reader that does not read until the end: the pipe fills, then the writer hangs.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("reader");
    let path = fifo.clone();
    let server = TestServer::start(move |config| {
        config.audit_log = Some(path);
        config.audit_fail_closed = true;
    })
    .await;
    let writer = Some(server.keys.writer.as_str());
    let admin = Some(server.keys.admin.as_str());
    let body = json!({"domain": "vin", "pseudonyms": ["d1.AAAA"]}).to_string();
    // More than the pipe holds: the writer hangs long before the last.
    for _ in 0..1_000 {
        let (status, _) = post_json(&server.url, "/v1/reidentify", writer, body.clone()).await;
        assert_eq!(
            status, 403,
            "answered at once, not after the request timeout"
        );
    }
    // A real re-identification is refused (fail-closed) within the audit's wait.
    let (status, answer) = post_json(&server.url, "/v1/reidentify", admin, body).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (503, &json!("audit_unavailable"))
    );

    // Found in review: that refusal left no line of its own. Once the sink reads again, the
    // trail holds it (after the `ok` line that was written too late).
    let (found, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut trail = Vec::new();
        let mut chunk = [0u8; 65536];
        while let Ok(read @ 1..) = reader.read(&mut chunk) {
            trail.extend_from_slice(&chunk[..read]);
            if String::from_utf8_lossy(&trail).contains("\"reason\":\"audit_unavailable\"") {
                let _ = found.send(());
                return;
            }
        }
    });
    let refusal_line = seen.recv_timeout(std::time::Duration::from_secs(10));
    assert!(refusal_line.is_ok(), "no refused line for the 503");
}
