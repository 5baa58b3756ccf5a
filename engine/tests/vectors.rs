//! Known-answer tests: the golden vectors that pin every pseudonym format forever (RFC 5297
//! is checked where AES-SIV is, in `engine/tests/siv.rs`).

mod common;

use common::GoldenKeyring;
use pseudonym_client::Mode;
use pseudonym_engine::lambda::{LambdaKey, LambdaMode};
use pseudonym_engine::{Domain, Engine, Keyring};
use serde::Deserialize;

#[derive(Deserialize)]
struct GoldenFile {
    format: u32,
    keyring: GoldenKeyring,
    vectors: Vec<Golden>,
}

#[derive(Deserialize)]
struct Golden {
    mode: Mode,
    key_version: u32,
    domain: String,
    value: String,
    pseudonym: String,
}

fn golden() -> GoldenFile {
    serde_json::from_str(include_str!("data/golden-v1.json")).expect("valid golden file")
}

/// The golden keyring with `primary` as its primary version.
fn keyring(file: &GoldenFile, primary: u32) -> Keyring {
    file.keyring.with_primary(primary)
}

#[test]
fn golden_vectors_are_reproduced_exactly() {
    let file = golden();
    assert_eq!(file.format, 1);
    let mut checked = 0;
    for version in [1, 2] {
        let engine = Engine::new(&keyring(&file, version));
        for vector in file.vectors.iter().filter(|v| v.key_version == version) {
            let domain = Domain::new(&vector.domain).expect("valid domain");
            if vector.mode != Mode::Randomized {
                let made = engine.pseudonymize(domain, vector.mode, &[Some(&vector.value)]);
                assert_eq!(
                    made[0].as_deref(),
                    Some(vector.pseudonym.as_str()),
                    "{:?} v{} {}",
                    vector.mode,
                    version,
                    vector.domain
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 40);
}

#[test]
fn golden_reversible_pseudonyms_reidentify_under_any_primary() {
    let file = golden();
    let engine = Engine::new(&keyring(&file, 2));
    for vector in file.vectors.iter().filter(|v| v.mode != Mode::Hash) {
        let domain = Domain::new(&vector.domain).expect("valid domain");
        let back = engine.reidentify(domain, &[Some(&vector.pseudonym)]);
        assert!(back.errors.is_empty(), "{}", vector.pseudonym);
        assert_eq!(back.values[0].as_deref(), Some(vector.value.as_str()));
    }
}

#[derive(Deserialize)]
struct SeedFile {
    compat_domain: String,
    secrets: Vec<serde_json::Value>,
    vectors: Vec<SeedVector>,
}

#[derive(Deserialize)]
struct SeedVector {
    secret: usize,
    mode: Mode,
    value: String,
    pseudonym: String,
    rewrapped: Option<String>,
}

/// The replaced service's tokens, made by an independent implementation
/// (`tests/python/make_seed_vectors.py`): reproduced byte for byte, re-identified, and rewrapped
/// into exactly the native token of the same value.
#[test]
fn seed_vectors_are_reproduced_reidentified_and_rewrapped() {
    let file: SeedFile =
        serde_json::from_str(include_str!("data/golden-seed.json")).expect("valid seed file");
    let golden = golden();
    let domain = Domain::new(&file.compat_domain).expect("valid domain");
    let mut checked = 0;
    for (number, secret) in file.secrets.iter().enumerate() {
        let mut keyring = keyring(&golden, 2);
        let key = LambdaKey::from_secret_json(&secret.to_string()).expect("valid secret JSON");
        keyring.import_lambda_key(key).expect("first seed key");
        let engine = Engine::new(&keyring).with_compat_domain(domain);
        for vector in file.vectors.iter().filter(|v| v.secret == number) {
            let token = [Some(vector.pseudonym.as_str())];
            let back = engine.reidentify(domain, &token);
            assert_eq!(
                back.values,
                [Some(vector.value.clone())],
                "{}",
                vector.pseudonym
            );
            let rewrapped = engine.rewrap(domain, &token);
            assert!(rewrapped.errors.is_empty(), "{}", vector.pseudonym);
            let new = rewrapped.pseudonyms[0].as_deref().expect("rewrapped");
            if vector.mode == Mode::Deterministic {
                let made =
                    engine.pseudonymize_lambda(LambdaMode::Deterministic, &[Some(&vector.value)]);
                assert_eq!(made, Some(vec![Some(vector.pseudonym.clone())]));
                assert_eq!(Some(new), vector.rewrapped.as_deref(), "{}", vector.value);
            } else {
                assert!(new.starts_with("r2."), "{new}");
                let back = engine.reidentify(domain, &[Some(new)]);
                assert_eq!(back.values, [Some(vector.value.clone())]);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 28);
}
