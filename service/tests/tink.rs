//! Tink domains over HTTP (the golden tokens through JSON and Arrow, rewrapping between
//! versions and formats, per-item failures) and `keygen --export-tink-keyset` (permitted per
//! domain, audited, private, no key in any message).

mod common;

use std::collections::BTreeMap;

use arrow_array::StringArray;
use arrow_array::cast::AsArray;
use common::TestServer;
use pseudonym_service::config::{Config, TinkConfig};
use pseudonym_service::keyring::Keyring;
use pseudonym_service::kms::KeyringStore;
use pseudonym_service::tink_export;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct GoldenFile {
    keyring: Value,
    vectors: Vec<Golden>,
    keysets: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct Golden {
    domain: String,
    key_version: u32,
    value: String,
    token: String,
}

fn golden() -> GoldenFile {
    serde_json::from_str(include_str!("../../engine/tests/data/golden-tink.json"))
        .expect("valid golden file")
}

fn keyring() -> Keyring {
    common::golden_keyring(&golden().keyring)
}

/// `vin` a Tink domain whose keyset may not be exported, `crm.email` one whose keyset may.
fn tink_tables(config: &mut Config) {
    config.tink = BTreeMap::from([
        ("vin".to_owned(), TinkConfig { export: false }),
        ("crm.email".to_owned(), TinkConfig { export: true }),
    ]);
}

fn vectors(domain: &str, version: u32) -> Vec<Golden> {
    golden()
        .vectors
        .into_iter()
        .filter(|v| v.domain == domain && v.key_version == version)
        .collect()
}

#[tokio::test]
async fn golden_tokens_come_back_through_json_and_rewrap_between_versions() {
    let server = TestServer::start_with(keyring(), tink_tables).await;
    let admin = server.keys.admin.clone();
    let (old, new) = (vectors("vin", 1), vectors("vin", 2));
    let values: Vec<&str> = new.iter().map(|v| v.value.as_str()).collect();
    let body = json!({"domain": "vin", "mode": "deterministic", "values": values});
    let (status, answer) = server.post("/v1/pseudonymize", Some(&admin), body).await;
    assert_eq!(status, 200, "{answer}");
    let tokens: Vec<&str> = new.iter().map(|v| v.token.as_str()).collect();
    assert_eq!(answer["pseudonyms"], json!(tokens));
    assert_eq!(answer["key_version"], 2);

    let mut both: Vec<Value> = old.iter().map(|v| json!(v.token)).collect();
    both.extend(tokens.iter().map(|t| json!(t)));
    both.push(Value::Null);
    let body = json!({"domain": "vin", "pseudonyms": both});
    let (status, back) = server.post("/v1/reidentify", Some(&admin), body).await;
    assert_eq!(status, 200, "{back}");
    let mut expected: Vec<Value> = values.iter().chain(&values).map(|v| json!(v)).collect();
    expected.push(Value::Null);
    assert_eq!(back["values"], json!(expected));

    let old_tokens: Vec<&str> = old.iter().map(|v| v.token.as_str()).collect();
    let body = json!({"domain": "vin", "pseudonyms": old_tokens});
    let (status, moved) = server.post("/v1/rewrap", Some(&admin), body).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["pseudonyms"], json!(tokens));

    let (_, readiness) = server.get("/readyz").await;
    let readiness: Value = serde_json::from_str(&readiness).expect("JSON");
    assert_eq!(readiness["tink_domains"], json!(["crm.email", "vin"]));
}

#[tokio::test]
async fn native_tokens_rewrap_into_tink_and_back() {
    let native = TestServer::start_with(keyring(), |_| {}).await;
    let tink = TestServer::start_with(keyring(), tink_tables).await;
    let new = vectors("crm.email", 2);
    let values: Vec<&str> = new.iter().map(|v| v.value.as_str()).collect();
    let tokens: Vec<&str> = new.iter().map(|v| v.token.as_str()).collect();
    let body = json!({"domain": "crm.email", "mode": "deterministic", "values": values});
    let (_, made) = native
        .post("/v1/pseudonymize", Some(&native.keys.admin), body)
        .await;
    let natives = made["pseudonyms"].clone();
    assert!(natives[1].as_str().is_some_and(|t| t.starts_with("d2.")));

    let body = json!({"domain": "crm.email", "pseudonyms": natives});
    let (_, to_tink) = tink.post("/v1/rewrap", Some(&tink.keys.admin), body).await;
    assert_eq!(to_tink["pseudonyms"], json!(tokens));
    let body = json!({"domain": "crm.email", "pseudonyms": tokens});
    let (_, to_native) = native
        .post("/v1/rewrap", Some(&native.keys.admin), body)
        .await;
    assert_eq!(to_native["pseudonyms"], natives);
}

#[tokio::test]
async fn the_arrow_form_makes_and_opens_tink_tokens() {
    let server = TestServer::start_with(keyring(), tink_tables).await;
    let new = vectors("vin", 2);
    let values = StringArray::from(vec![Some(new[1].value.as_str()), None]);
    let made = server
        .post_arrow("pseudonymize&mode=deterministic", values)
        .await;
    let made = made.column(0).as_string::<i32>().clone();
    assert_eq!(made.value(0), new[1].token);
    let back = server.post_arrow("reidentify", made).await;
    assert_eq!(
        back.column(0).as_string::<i32>().iter().collect::<Vec<_>>(),
        [Some(new[1].value.as_str()), None]
    );
}

#[tokio::test]
async fn foreign_tampered_and_misplaced_tokens_fail_per_item() {
    let server = TestServer::start_with(keyring(), tink_tables).await;
    let token = vectors("vin", 2)[1].token.clone();
    let mut tampered = token.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII");
    // Key id 9, which no version has: `AQAAAAk` is the base64 of 0x01 0 0 0 9 and 2 bits.
    let foreign = format!("AQAAAAk{}", &token[7..]);
    let body = json!({"domain": "vin", "pseudonyms": [token, tampered, foreign, &token[..20]]});
    let (status, answer) = server
        .post("/v1/reidentify", Some(&server.keys.admin), body)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["errors"],
        json!([
            {"index": 1, "code": "invalid_token"},
            {"index": 2, "code": "unknown_key_version"},
            {"index": 3, "code": "invalid_token"}
        ])
    );
    let body = json!({"domain": "crm.email", "pseudonyms": [token]});
    let (_, other) = server
        .post("/v1/reidentify", Some(&server.keys.admin), body)
        .await;
    assert_eq!(
        other["errors"],
        json!([{"index": 0, "code": "invalid_token"}])
    );
}

#[test]
fn keysets_are_exported_only_where_permitted_after_their_audit_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring_file = dir.path().join("keyring.toml");
    keyring().save(&keyring_file).expect("saved");
    let audit_log = dir.path().join("audit.jsonl");
    let mut config = Config {
        audit_log: Some(audit_log.clone()),
        ..Config::default()
    };
    tink_tables(&mut config);
    let store = KeyringStore::new(&keyring_file, None).expect("store");
    let to = dir.path().join("keyset.json");

    let refused = tink_export::export(&config, &store, "vin", &to).expect_err("not permitted");
    assert!(refused.to_string().contains("export = true"), "{refused}");
    assert!(!to.exists());
    let refused = tink_export::export(&config, &store, "other", &to).expect_err("not Tink");
    assert!(refused.to_string().contains("[tink.other]"), "{refused}");
    tink_export::export(&config, &store, "Not A Domain", &to).expect_err("not a domain");
    let nowhere = dir.path().join("missing").join("keyset.json");
    tink_export::export(&config, &store, "crm.email", &nowhere).expect_err("no such folder");
    std::fs::write(dir.path().join("taken.json"), "").expect("written");
    let taken = tink_export::export(&config, &store, "crm.email", &dir.path().join("taken.json"));
    assert!(taken.expect_err("exists").to_string().contains("exists"));
    let unaudited = Config {
        audit_log: None,
        ..config.clone()
    };
    let refused_unaudited =
        tink_export::export(&unaudited, &store, "crm.email", &to).expect_err("no audit_log");
    assert!(refused_unaudited.to_string().contains("audit_log"));
    assert!(!to.exists());

    let done = tink_export::export(&config, &store, "crm.email", &to).expect("exported");
    let written = std::fs::read_to_string(&to).expect("written");
    let keyset: Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(keyset, golden().keysets["crm.email"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&to)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let lines: Vec<Value> = std::fs::read_to_string(&audit_log)
        .expect("audit log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let seen: Vec<_> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["operation"], "export_tink_keyset");
            (
                l["domain"].clone(),
                l["outcome"].clone(),
                l["reason"].clone(),
            )
        })
        .collect();
    let refusal = |domain: Value, reason: &str| (domain, json!("refused"), json!(reason));
    let ok = (json!("crm.email"), json!("ok"), Value::Null);
    assert_eq!(
        seen,
        [
            refusal(json!("vin"), "export_not_permitted"),
            refusal(json!("other"), "export_not_permitted"),
            refusal(Value::Null, "invalid_domain"),
            ok.clone(),
            refusal(json!("crm.email"), "write_failed"),
            refusal(json!("crm.email"), "file_exists"),
            ok,
        ]
    );
    assert_eq!(lines[6]["count"], 2);
    // No key material anywhere but the keyset file.
    let key_value = keyset["key"][0]["keyData"]["value"]
        .as_str()
        .expect("a key");
    let audit_text = std::fs::read_to_string(&audit_log).expect("audit log");
    for shown in [audit_text.as_str(), done.as_str(), &refused.to_string()] {
        assert!(
            !shown.contains(key_value) && !shown.contains(&key_value[4..24]),
            "{shown}"
        );
    }
}
