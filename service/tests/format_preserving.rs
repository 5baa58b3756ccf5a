//! Format-preserving domains over HTTP: the golden pseudonyms through JSON and Arrow, per-item
//! errors, rewrapping from the pinned version to the primary, and clear refusals.

mod common;

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::{Array, StringArray};
use common::TestServer;
use pseudonym_engine::format::Outside;
use pseudonym_service::formats::FormatConfig;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct GoldenFile {
    keyring: Value,
    vectors: Vec<Golden>,
}

#[derive(Deserialize)]
struct Golden {
    domain: String,
    key_version: u32,
    value: String,
    pseudonym: String,
}

fn golden() -> GoldenFile {
    serde_json::from_str(include_str!(
        "../../engine/tests/data/golden-format-preserving.json"
    ))
    .expect("valid golden file")
}

/// A server with the golden keyring (primary 2), `vin` pinned to version 1 (VIN characters,
/// others refused) and `phone` to version 1 (digits, others kept).
async fn server() -> TestServer {
    let keyring = common::golden_keyring(&golden().keyring);
    TestServer::start_with(keyring, |config| {
        config.format_preserving = BTreeMap::from([
            ("vin".to_owned(), table("vin", Outside::Refuse)),
            ("phone".to_owned(), table("digits", Outside::Keep)),
        ]);
    })
    .await
}

fn table(alphabet: &str, outside: Outside) -> FormatConfig {
    FormatConfig {
        alphabet: Some(alphabet.to_owned()),
        characters: None,
        outside,
        key_version: 1,
    }
}

fn vectors(domain: &str, version: u32) -> Vec<Golden> {
    golden()
        .vectors
        .into_iter()
        .filter(|v| v.domain == domain && v.key_version == version)
        .collect()
}

#[tokio::test]
async fn golden_pseudonyms_come_back_through_json_with_per_item_errors() {
    let server = server().await;
    let admin = server.keys.admin.clone();
    for domain in ["vin", "phone"] {
        let golden = vectors(domain, 1);
        let mut values: Vec<Value> = golden.iter().map(|v| json!(v.value)).collect();
        values.push(Value::Null);
        let body = json!({"domain": domain, "mode": "format-preserving", "values": values});
        let (status, answer) = server.post("/v1/pseudonymize", Some(&admin), body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["key_version"], 1);
        assert!(
            answer.get("errors").is_none(),
            "no errors, no field: {answer}"
        );
        let mut expected: Vec<Value> = golden.iter().map(|v| json!(v.pseudonym)).collect();
        expected.push(Value::Null);
        assert_eq!(answer["pseudonyms"], json!(expected));

        let body = json!({"domain": domain, "pseudonyms": expected});
        let (status, back) = server.post("/v1/reidentify", Some(&admin), body).await;
        assert_eq!(status, 200, "{back}");
        assert_eq!(back["values"], json!(values));
    }

    let secret = "WVWZZZ1JZXW12345I";
    let values = json!(["WVWZZZ1JZXW123456", secret, "123", null]);
    let body = json!({"domain": "vin", "mode": "format-preserving", "values": values});
    let (status, answer) = server.post("/v1/pseudonymize", Some(&admin), body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["errors"],
        json!([{"index": 1, "code": "outside_alphabet"}, {"index": 2, "code": "format_too_short"}])
    );
    let pseudonyms = answer["pseudonyms"].as_array().expect("a list");
    assert!(pseudonyms[0].is_string() && pseudonyms[1].is_null() && pseudonyms[3].is_null());
    assert!(!answer.to_string().contains(secret));
}

#[tokio::test]
async fn the_arrow_form_answers_pseudonyms_and_error_codes() {
    let server = server().await;
    let golden = vectors("vin", 1);
    let values = StringArray::from(vec![Some(golden[0].value.as_str()), Some("I0I0I0"), None]);
    let answer = server
        .post_arrow("pseudonymize&mode=format-preserving", values)
        .await;
    assert_eq!(
        answer
            .schema()
            .metadata()
            .get("key_version")
            .map(String::as_str),
        Some("1")
    );
    let pseudonyms = answer.column_by_name("pseudonyms").expect("pseudonyms");
    let errors = answer
        .column_by_name("error")
        .expect("error")
        .as_string::<i32>();
    assert_eq!(pseudonyms.as_string::<i32>().value(0), golden[0].pseudonym);
    assert!(pseudonyms.is_null(1) && pseudonyms.is_null(2));
    assert_eq!(
        errors.iter().collect::<Vec<_>>(),
        [None, Some("outside_alphabet"), None]
    );

    let tokens = StringArray::from(vec![Some(golden[0].pseudonym.as_str()), None]);
    let back = server.post_arrow("reidentify", tokens).await;
    let values = back
        .column_by_name("values")
        .expect("values")
        .as_string::<i32>();
    assert_eq!(
        values.iter().collect::<Vec<_>>(),
        [Some(golden[0].value.as_str()), None]
    );
}

#[tokio::test]
async fn rewrap_moves_a_column_from_the_pinned_version_to_the_primary() {
    let server = server().await;
    let (old, new) = (vectors("phone", 1), vectors("phone", 2));
    let pseudonyms: Vec<&str> = old.iter().map(|v| v.pseudonym.as_str()).collect();
    let body = json!({"domain": "phone", "pseudonyms": pseudonyms});
    let (status, answer) = server
        .post("/v1/rewrap", Some(&server.keys.admin), body)
        .await;
    assert_eq!(status, 200, "{answer}");
    let expected: Vec<&str> = new.iter().map(|v| v.pseudonym.as_str()).collect();
    assert_eq!(answer["pseudonyms"], json!(expected));

    // What an operator compares across replicas before resuming the domain's writers.
    let (status, readiness) = server.get("/readyz").await;
    assert_eq!(status, 200);
    let readiness: Value = serde_json::from_str(&readiness).expect("JSON");
    assert_eq!(
        readiness["pinned_key_versions"],
        json!({"phone": 1, "vin": 1})
    );
}

#[tokio::test]
async fn modes_and_domains_that_do_not_match_are_refused_clearly() {
    let server = server().await;
    let admin = server.keys.admin.clone();
    let cases = [
        ("crm", "format-preserving", "has no format"),
        ("vin", "deterministic", "only mode is format-preserving"),
        ("vin", "hash", "only mode is format-preserving"),
    ];
    for (domain, mode, message) in cases {
        let body = json!({"domain": domain, "mode": mode, "values": ["WVWZZZ1JZXW123456"]});
        let (status, answer) = server.post("/v1/pseudonymize", Some(&admin), body).await;
        assert_eq!(status, 400, "{domain} {mode}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument");
        let text = answer["error"]["message"].as_str().expect("a message");
        assert!(text.contains(message), "{text}");
        assert!(!text.contains("WVWZZZ"));
    }
    let writer = server.keys.writer.clone();
    let body = json!({"domain": "phone", "mode": "format-preserving", "values": ["5551234"]});
    let (status, _) = server.post("/v1/pseudonymize", Some(&writer), body).await;
    assert_eq!(status, 403, "the writer may only use vin");
}
