//! Keys over time, through a running `pseudonymd`: add a version and reload on SIGHUP, rewrap,
//! retire, a bad reload, and the audit trail of it all.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, post_json, write_keys};
use serde_json::{Value, json};

async fn post(url: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    post_json(url, path, Some(key), body.to_string()).await
}

fn keygen(keyring: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_pseudonymd"))
        .args(["keygen", "--keyring-file", keyring.to_str().expect("utf-8")])
        .args(args)
        .status()
        .expect("keygen runs");
    assert!(status.success(), "keygen {args:?}");
}

/// Sends SIGHUP and waits until the service answers with `primary` as its key version.
async fn reload_until(daemon: &Daemon, key: &str, primary: u64) {
    daemon.hangup();
    let started = Instant::now();
    loop {
        let (_, answer) = post(
            &daemon.url,
            "/v1/pseudonymize",
            key,
            json!({"domain": "vin", "values": []}),
        )
        .await;
        if answer["key_version"] == primary {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no reload to v{primary}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rotate_rewrap_retire_with_reloads_and_an_audit_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keyring, api_keys, keys) = write_keys(dir.path());
    let audit = dir.path().join("audit.jsonl");
    let daemon = Daemon::start(
        &[
            "--keyring-file",
            keyring.to_str().expect("utf-8"),
            "--api-keys-file",
            api_keys.to_str().expect("utf-8"),
            "--audit-log",
            audit.to_str().expect("utf-8"),
        ],
        &[],
    );
    let admin = keys.admin.as_str();
    let values = ["SECRET-VIN-00001", "SECRET-VIN-00002"];
    let (_, v1) = post(
        &daemon.url,
        "/v1/pseudonymize",
        admin,
        json!({"domain": "vin", "values": values}),
    )
    .await;
    assert_eq!(v1["key_version"], 1);

    keygen(&keyring, &["--add"]);
    reload_until(&daemon, admin, 2).await;
    let (_, v2) = post(
        &daemon.url,
        "/v1/pseudonymize",
        admin,
        json!({"domain": "vin", "values": values}),
    )
    .await;
    assert!(
        v2["pseudonyms"][0]
            .as_str()
            .is_some_and(|t| t.starts_with("d2."))
    );

    let mixed = json!([v1["pseudonyms"][0], v2["pseudonyms"][1]]);
    let (_, back) = post(
        &daemon.url,
        "/v1/reidentify",
        admin,
        json!({"domain": "vin", "pseudonyms": mixed}),
    )
    .await;
    assert_eq!(
        back["values"],
        json!(values),
        "v1 and v2 tokens in one batch"
    );

    let (status, rewrapped) = post(
        &daemon.url,
        "/v1/rewrap",
        admin,
        json!({"domain": "vin", "pseudonyms": v1["pseudonyms"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        rewrapped["pseudonyms"], v2["pseudonyms"],
        "rewrap equals pseudonymizing under v2"
    );
    assert!(
        !rewrapped.to_string().contains("SECRET-VIN"),
        "rewrap never returns plaintext"
    );
    let (status, _) = post(
        &daemon.url,
        "/v1/rewrap",
        &keys.writer,
        json!({"domain": "vin", "pseudonyms": v1["pseudonyms"]}),
    )
    .await;
    assert_eq!(status, 403, "rewrap is a permission of its own");

    keygen(&keyring, &["--retire", "1"]);
    let before = std::fs::read_to_string(&keyring).expect("keyring");
    Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .expect("kill");
    let started = Instant::now();
    loop {
        let (_, back) = post(
            &daemon.url,
            "/v1/reidentify",
            admin,
            json!({"domain": "vin", "pseudonyms": mixed}),
        )
        .await;
        if back["errors"] == json!([{"index": 0, "code": "unknown_key_version"}]) {
            assert_eq!(back["values"], json!([null, values[1]]));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "v1 was not retired: {back}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    std::fs::write(&keyring, "primary = 9\n").expect("break the keyring");
    daemon.hangup();
    daemon.wait_for_output("reload failed");
    let (_, back) = post(
        &daemon.url,
        "/v1/reidentify",
        admin,
        json!({"domain": "vin", "pseudonyms": [v2["pseudonyms"][0]]}),
    )
    .await;
    assert_eq!(
        back["values"],
        json!([values[0]]),
        "a bad file keeps the old keys in service"
    );
    std::fs::write(&keyring, before).expect("restore");

    let logs = daemon.stop();
    let trail = std::fs::read_to_string(&audit).expect("audit log");
    let lines: Vec<Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let summary: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["operation"].as_str().unwrap_or_default().to_owned(),
                l["api_key"].as_str().unwrap_or_default().to_owned(),
                l["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("reidentify", "admin", "ok"),
        ("rewrap", "admin", "ok"),
        ("rewrap", "writer", "refused"),
    ];
    for (i, (operation, key, outcome)) in expected.iter().enumerate() {
        assert_eq!(
            summary[i],
            (operation.to_string(), key.to_string(), outcome.to_string())
        );
    }
    assert!(summary[3..].iter().all(|(op, _, _)| op == "reidentify"));
    assert!(
        lines
            .iter()
            .all(|l| l["domain"] == "vin" && l["count"].is_u64())
    );
    for secret in values {
        assert!(
            !trail.contains(secret) && !logs.contains(secret),
            "{secret} leaked"
        );
    }
}
