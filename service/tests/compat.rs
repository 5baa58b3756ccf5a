//! The replaced service's callers, as they are written, against our routes: every spelling they
//! send, and the tokens that service already wrote (golden, made by an independent
//! implementation), read, made again byte for byte and rewrapped into ours.

mod common;

use common::TestServer;
use pseudonym_service::config::TokenFormat;
use pseudonym_service::keyring::Keyring;
use pseudonym_service::lambda::LambdaKey;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct SeedFile {
    secrets: Vec<Value>,
    vectors: Vec<SeedVector>,
}

#[derive(Deserialize)]
struct SeedVector {
    secret: usize,
    mode: String,
    value: String,
    pseudonym: String,
    rewrapped: Option<String>,
}

fn seed_file() -> SeedFile {
    serde_json::from_str(include_str!("../../engine/tests/data/golden-seed.json"))
        .expect("valid seed file")
}

/// The golden native keyring (primary 2) with the golden seed secret `number` imported.
fn golden_keyring(number: usize) -> Keyring {
    let golden: Value =
        serde_json::from_str(include_str!("../../engine/tests/data/golden-v1.json"))
            .expect("valid golden file");
    let mut text = "primary = 2\n".to_owned();
    for key in golden["keyring"]["keys"].as_array().expect("keys") {
        text.push_str(&format!(
            "[[keys]]\nversion = {}\nsecret = \"{}\"\n",
            key["version"],
            key["secret"].as_str().expect("secret")
        ));
    }
    let mut keyring = Keyring::from_toml(&text, "golden").expect("golden keyring");
    let secret = seed_file().secrets[number].to_string();
    let key = LambdaKey::from_secret_json(&secret).expect("seed secret");
    keyring.import_lambda_key(key).expect("first seed key");
    keyring
}

fn pseudonyms(answer: &Value) -> Vec<Value> {
    answer["pseudonyms"].as_array().expect("pseudonyms").clone()
}

#[tokio::test]
async fn deterministic_is_read_as_the_replaced_service_read_it_and_never_guessed() {
    let server = TestServer::start(|_| {}).await;
    let admin = Some(server.keys.admin.as_str());
    let body = json!({"identifiers": ["a", "a"]});
    let (_, native) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "default", "values": ["a"]}),
        )
        .await;
    let native = native["pseudonyms"][0].clone();
    for query in [
        "deterministic=true",
        "deterministic=True",
        "deterministic=TRUE",
    ] {
        let (status, answer) = server
            .post(&format!("/pseudonymization?{query}"), admin, body.clone())
            .await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(
            pseudonyms(&answer),
            [native.clone(), native.clone()],
            "{query}"
        );
    }
    for query in ["deterministic=false", "deterministic=False", ""] {
        let (status, answer) = server
            .post(&format!("/pseudonymization?{query}"), admin, body.clone())
            .await;
        assert_eq!(status, 200, "{query}");
        let tokens = pseudonyms(&answer);
        assert_ne!(tokens[0], tokens[1], "{query:?} is randomized");
        assert!(tokens[0].as_str().is_some_and(|t| t.starts_with("r1.")));
    }
    for query in [
        "deterministic=true%20",
        "deterministic=yes",
        "deterministic=1",
        "deterministic=",
        "deterministic=true&deterministic=false",
    ] {
        let (status, answer) = server
            .post(&format!("/pseudonymization?{query}"), admin, body.clone())
            .await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(answer["error"]["code"], "invalid_argument", "{query}");
    }
}

#[tokio::test]
async fn stages_and_the_reidentifications_body_of_its_jobs_are_accepted() {
    let server = TestServer::start(|_| {}).await;
    let admin = Some(server.keys.admin.as_str());
    // The Athena UDF: a stage, deterministic from a SQL string.
    let (status, made) = server
        .post(
            "/Dev/pseudonymization?deterministic=true",
            admin,
            json!({"identifiers": ["WVWZZZ1JZXW000001", "1234", null]}),
        )
        .await;
    assert_eq!(status, 200);
    let tokens = pseudonyms(&made);
    assert_eq!(tokens[2], Value::Null);
    // The PySpark jobs: `deterministic=True` on both routes, `reidentifications` in the body.
    let (status, back) = server
        .post(
            "/prod/reidentification?deterministic=True",
            admin,
            json!({"reidentifications": tokens}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        back,
        json!({"identifiers": ["WVWZZZ1JZXW000001", "1234", null]})
    );
    let (status, back) = server
        .post(
            "/Dev/reidentification",
            admin,
            json!({"pseudonyms": tokens}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(back["identifiers"][1], "1234");
    let (status, empty) = server
        .post(
            "/Dev/pseudonymization?deterministic=True",
            admin,
            json!({"identifiers": []}),
        )
        .await;
    assert_eq!((status, empty), (200, json!({"pseudonyms": []})));

    let (status, _) = server
        .post(
            "/a/b/pseudonymization",
            admin,
            json!({"identifiers": ["a"]}),
        )
        .await;
    assert_eq!(status, 404, "one stage segment at most");
    let (status, answer) = server
        .post(
            "/reidentification",
            admin,
            json!({"pseudonyms": [], "reidentifications": []}),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("bad_json"))
    );
    let (status, _) = server
        .post("/Dev/pseudonymization", None, json!({"identifiers": ["a"]}))
        .await;
    assert_eq!(status, 401);
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("route=\"/{stage}/pseudonymization\",status=\"200\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_replaced_services_tokens_reidentify_and_rewrap_per_item() {
    let file = seed_file();
    for number in 0..file.secrets.len() {
        let server = TestServer::start_with(golden_keyring(number), |_| {}).await;
        let admin = Some(server.keys.admin.as_str());
        let vectors: Vec<&SeedVector> =
            file.vectors.iter().filter(|v| v.secret == number).collect();
        let mut tokens: Vec<Value> = vectors.iter().map(|v| json!(v.pseudonym)).collect();
        let mut expected: Vec<Value> = vectors.iter().map(|v| json!(v.value)).collect();
        // Altered, truncated, foreign (the other test key) and not-a-token strings fail per item.
        let first = &vectors[1].pseudonym;
        let mut altered = first.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        let foreign = &file
            .vectors
            .iter()
            .find(|v| v.secret != number)
            .expect("other")
            .pseudonym;
        let bad = [
            String::from_utf8(altered).expect("ascii"),
            first[..first.len() - 4].to_owned(),
            foreign.clone(),
            "bm9wZQ==".to_owned(),
        ];
        for token in &bad {
            tokens.push(json!(token));
            expected.push(Value::Null);
        }
        tokens.push(Value::Null);
        expected.push(Value::Null);

        let (status, back) = server
            .post(
                "/v1/reidentify",
                admin,
                json!({"domain": "default", "pseudonyms": tokens}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(back["values"], json!(expected));
        let failed: Vec<(usize, &str)> = back["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| {
                (
                    e["index"].as_u64().expect("index") as usize,
                    e["code"].as_str().expect("code"),
                )
            })
            .collect();
        let n = vectors.len();
        assert_eq!(
            failed,
            (n..n + bad.len())
                .map(|i| (i, "invalid_token"))
                .collect::<Vec<_>>()
        );

        let (_, compat) = server
            .post(
                "/Dev/reidentification?deterministic=True",
                admin,
                json!({"reidentifications": tokens}),
            )
            .await;
        assert_eq!(compat["identifiers"], json!(expected));

        let (_, elsewhere) = server
            .post(
                "/v1/reidentify",
                admin,
                json!({"domain": "vin", "pseudonyms": [tokens[0]]}),
            )
            .await;
        assert_eq!(
            elsewhere["errors"][0]["code"], "invalid_token",
            "only in the compat domain"
        );

        let (status, rewrapped) = server
            .post(
                "/v1/rewrap",
                admin,
                json!({"domain": "default", "pseudonyms": tokens}),
            )
            .await;
        assert_eq!(status, 200);
        let new = pseudonyms(&rewrapped);
        for (vector, token) in vectors.iter().zip(&new) {
            let token = token.as_str().expect("rewrapped");
            match vector.mode.as_str() {
                "deterministic" => assert_eq!(Some(token), vector.rewrapped.as_deref()),
                _ => assert!(token.starts_with("r2."), "{token}"),
            }
        }
        assert_eq!(
            rewrapped["errors"].as_array().expect("errors").len(),
            bad.len()
        );
        let (_, back) = server
            .post(
                "/v1/reidentify",
                admin,
                json!({"domain": "default", "pseudonyms": new}),
            )
            .await;
        assert_eq!(back["values"], json!(expected));
    }
}

#[tokio::test]
async fn compat_tokens_seed_answers_the_replaced_services_tokens_byte_for_byte() {
    let file = seed_file();
    let server = TestServer::start_with(golden_keyring(1), |config| {
        config.compat_tokens = TokenFormat::Lambda;
    })
    .await;
    let admin = Some(server.keys.admin.as_str());
    let golden: Vec<&SeedVector> = file
        .vectors
        .iter()
        .filter(|v| v.secret == 1 && v.mode == "deterministic")
        .collect();
    let values: Vec<&str> = golden.iter().map(|v| v.value.as_str()).collect();
    let (status, made) = server
        .post(
            "/Dev/pseudonymization?deterministic=True",
            admin,
            json!({"identifiers": values}),
        )
        .await;
    assert_eq!(status, 200);
    let expected: Vec<Value> = golden.iter().map(|v| json!(v.pseudonym)).collect();
    assert_eq!(pseudonyms(&made), expected);

    let (_, randomized) = server
        .post(
            "/pseudonymization",
            admin,
            json!({"identifiers": ["a", "a"]}),
        )
        .await;
    let tokens = pseudonyms(&randomized);
    assert_ne!(tokens[0], tokens[1]);
    let (_, back) = server
        .post("/reidentification", admin, json!({"pseudonyms": tokens}))
        .await;
    assert_eq!(back["identifiers"], json!(["a", "a"]));

    let (_, native) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "default", "values": ["a"]}),
        )
        .await;
    assert!(
        native["pseudonyms"][0]
            .as_str()
            .is_some_and(|t| t.starts_with("d2."))
    );
}

#[test]
fn compat_tokens_seed_without_the_key_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keyring_file, api_keys_file, _) = common::write_keys(dir.path());
    let config = pseudonym_service::config::Config {
        keyring_file: Some(keyring_file),
        api_keys_file: Some(api_keys_file),
        compat_tokens: TokenFormat::Lambda,
        ..Default::default()
    };
    let keys = pseudonym_service::keys::load_keys(&config, None).expect("keys load");
    let message = pseudonym_service::server::Service::new(&config, &keys)
        .err()
        .expect("refused")
        .to_string();
    assert!(message.contains("compat_tokens"), "{message}");
    assert!(message.contains("--import-lambda-secret"), "{message}");
}
