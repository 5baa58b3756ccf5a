//! Tink-format pseudonyms: the golden vectors and keysets (made with PyPI's `tink`, by
//! `tests/python/make_tink_vectors.py`), rewrapping between versions and formats, and tokens
//! that must fail per item.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::GoldenKeyring;
use pseudonym_client::{ItemErrorCode, Mode};
use pseudonym_engine::lambda::{LambdaKey, LambdaMode};
use pseudonym_engine::{Domain, Engine, Keyring};
use secrecy::ExposeSecret;
use serde::Deserialize;

#[derive(Deserialize)]
struct GoldenFile {
    format: u32,
    keyring: GoldenKeyring,
    vectors: Vec<Golden>,
    keysets: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Golden {
    domain: String,
    key_version: u32,
    value: String,
    token: String,
}

fn golden() -> GoldenFile {
    serde_json::from_str(include_str!("data/golden-tink.json")).expect("valid golden file")
}

const DOMAINS: [&str; 2] = ["vin", "crm.email"];

/// The golden keyring with `primary` as its primary.
fn keyring(file: &GoldenFile, primary: u32) -> Keyring {
    file.keyring.with_primary(primary)
}

/// The golden keyring with `primary` as its primary, Tink domains `tink`.
fn engine(file: &GoldenFile, primary: u32, tink: &[&str]) -> Engine {
    Engine::new(&keyring(file, primary)).with_tink_domains(tink.iter().map(|d| domain(d)))
}

fn domain(label: &str) -> Domain<'_> {
    Domain::new(label).expect("valid domain")
}

fn vectors<'f>(file: &'f GoldenFile, domain: &str, version: u32) -> Vec<&'f Golden> {
    file.vectors
        .iter()
        .filter(|v| v.domain == domain && v.key_version == version)
        .collect()
}

#[test]
fn golden_tokens_are_made_exactly_and_open_again() {
    let file = golden();
    assert_eq!(file.format, 1);
    for version in [1, 2] {
        let engine = engine(&file, version, &DOMAINS);
        for d in DOMAINS {
            let golden = vectors(&file, d, version);
            let mut values: Vec<Option<&str>> =
                golden.iter().map(|v| Some(v.value.as_str())).collect();
            values.insert(1, None);
            let mut expected: Vec<Option<String>> =
                golden.iter().map(|v| Some(v.token.clone())).collect();
            expected.insert(1, None);
            assert_eq!(
                engine.pseudonymize(domain(d), Mode::Deterministic, &values),
                expected
            );
        }
    }
    // Every version's tokens open, whichever version is the primary, in any domain's engine.
    let engine = engine(&file, file.keyring.primary, &[]);
    for vector in &file.vectors {
        let back = engine.reidentify(domain(&vector.domain), &[Some(&vector.token)]);
        assert_eq!(back.errors, []);
        assert_eq!(back.values, [Some(vector.value.clone())]);
    }
}

#[test]
fn exported_keysets_are_the_golden_ones() {
    let file = golden();
    let engine = engine(&file, file.keyring.primary, &[]);
    for d in DOMAINS {
        let keyset = engine.tink_keyset(domain(d));
        assert_eq!(keyset.key_ids(), [1, 2]);
        let json: serde_json::Value =
            serde_json::from_str(keyset.to_json().expose_secret()).expect("JSON");
        assert_eq!(json, file.keysets[d], "{d}");
    }
}

#[test]
fn rewrap_moves_tokens_between_versions_and_formats_both_ways() {
    let file = golden();
    let tink = engine(&file, 2, &DOMAINS);
    let native = engine(&file, 2, &[]);
    for d in DOMAINS {
        let (old, new) = (vectors(&file, d, 1), vectors(&file, d, 2));
        let old_tokens: Vec<Option<&str>> = old.iter().map(|v| Some(v.token.as_str())).collect();
        let new_tokens: Vec<Option<String>> = new.iter().map(|v| Some(v.token.clone())).collect();
        let values: Vec<Option<&str>> = old.iter().map(|v| Some(v.value.as_str())).collect();

        let moved = tink.rewrap(domain(d), &old_tokens);
        assert_eq!(
            (moved.errors, moved.pseudonyms),
            (vec![], new_tokens.clone())
        );

        let natives = native.pseudonymize(domain(d), Mode::Deterministic, &values);
        assert!(natives.iter().flatten().all(|t| t.starts_with("d2.")));
        let to_native = native.rewrap(domain(d), &old_tokens);
        assert_eq!(to_native.pseudonyms, natives);
        let to_tink = tink.rewrap(domain(d), &natives);
        assert_eq!(to_tink.pseudonyms, new_tokens);
    }
}

#[test]
fn foreign_tampered_and_truncated_tokens_fail_per_item() {
    let file = golden();
    let engine = engine(&file, 2, &DOMAINS);
    let token = &vectors(&file, "vin", 2)[1].token;
    let payload = STANDARD.decode(token).expect("base64");
    let spelled = |bytes: &[u8]| STANDARD.encode(bytes);
    let edited = |at: usize| {
        let mut bytes = payload.clone();
        bytes[at] ^= 1;
        spelled(&bytes)
    };
    let mut foreign_id = payload.clone();
    foreign_id[1..5].copy_from_slice(&77u32.to_be_bytes());
    let cases = [
        (edited(7), ItemErrorCode::InvalidToken),
        (edited(payload.len() - 1), ItemErrorCode::InvalidToken),
        (edited(0), ItemErrorCode::InvalidToken),
        (
            spelled(&payload[..payload.len() - 1]),
            ItemErrorCode::InvalidToken,
        ),
        (spelled(&payload[..20]), ItemErrorCode::InvalidToken),
        (spelled(&foreign_id), ItemErrorCode::UnknownKeyVersion),
        (
            token.trim_end_matches('=').to_owned(),
            ItemErrorCode::InvalidToken,
        ),
        (token.replace('/', "_"), ItemErrorCode::InvalidToken),
    ];
    let mut tokens: Vec<Option<&str>> = vec![Some(token)];
    tokens.extend(cases.iter().map(|(t, _)| Some(t.as_str())));
    let answer = engine.reidentify(domain("vin"), &tokens);
    assert_eq!(answer.values[0].as_deref(), Some("WVWZZZ1JZXW123456"));
    let codes: Vec<_> = answer.errors.iter().map(|e| (e.index, e.code)).collect();
    let expected: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, c))| (i + 1, *c))
        .collect();
    assert_eq!(codes, expected);

    // Another domain's token, and another keyring's: same shape, another key.
    let other_domain = engine.reidentify(domain("crm.email"), &[Some(token)]);
    assert_eq!(other_domain.errors[0].code, ItemErrorCode::InvalidToken);
    let other_keyring = Engine::new(&Keyring::generate());
    let foreign = other_keyring.reidentify(domain("vin"), &[Some(token)]);
    assert_eq!(foreign.errors[0].code, ItemErrorCode::UnknownKeyVersion);
    let mut ours_too = Keyring::generate();
    ours_too
        .add_version(true)
        .expect("a version number is free");
    let foreign = Engine::new(&ours_too).reidentify(domain("vin"), &[Some(token)]);
    assert_eq!(foreign.errors[0].code, ItemErrorCode::InvalidToken);
}

#[test]
fn randomized_and_hash_pseudonyms_stay_native_in_tink_domains() {
    let file = golden();
    let engine = engine(&file, 2, &DOMAINS);
    for (mode, start) in [(Mode::Randomized, "r2."), (Mode::Hash, "h2.")] {
        let made = engine.pseudonymize(domain("vin"), mode, &[Some("WVWZZZ1JZXW123456")]);
        assert!(made[0].as_deref().is_some_and(|t| t.starts_with(start)));
    }
}

/// What re-identifying a token gives: its value (`None` for `None`), or an error code.
type Expected = Result<Option<String>, ItemErrorCode>;

#[test]
fn a_batch_of_every_kind_of_token_answers_each_on_its_row() {
    let file = golden();
    let vin = domain("vin");
    let mut keyring = keyring(&file, 2);
    let seeds: serde_json::Value =
        serde_json::from_str(include_str!("data/golden-seed.json")).expect("seed vectors");
    let secret = LambdaKey::from_secret_json(&seeds["secrets"][0].to_string()).expect("secret");
    keyring.import_lambda_key(secret).expect("first seed key");
    let native = Engine::new(&keyring);
    let reader = Engine::new(&keyring)
        .with_compat_domain(vin)
        .with_tink_domains([vin]);
    let value = |i: usize| format!("WVWZZZ1JZXW{i:06}");
    let made = |mode, i| native.pseudonymize(vin, mode, &[Some(value(i))])[0].clone();
    let seed = |mode, i: usize| {
        native
            .pseudonymize_lambda(mode, &[Some(value(i))])
            .expect("a seed key")[0]
            .clone()
    };
    // The replaced service's randomized tokens start with a random nonce: one in 256 starts
    // with Tink's prefix byte, and must still open as that service's.
    let like_tink = (0..10_000)
        .map(|_| seed(LambdaMode::Randomized, 7).expect("a token"))
        .find(|token| STANDARD.decode(token).expect("base64")[0] == 1)
        .expect("one in 256 tokens");
    let golden = vectors(&file, "vin", 1);
    let mut tampered = STANDARD.decode(&golden[1].token).expect("base64");
    tampered[30] ^= 0x80;
    let rows: Vec<(Option<String>, Expected)> = vec![
        (
            Some(golden[1].token.clone()),
            Ok(Some(golden[1].value.clone())),
        ),
        (made(Mode::Deterministic, 1), Ok(Some(value(1)))),
        (None, Ok(None)),
        (made(Mode::Randomized, 2), Ok(Some(value(2)))),
        (seed(LambdaMode::Deterministic, 3), Ok(Some(value(3)))),
        (
            Some(vectors(&file, "vin", 2)[2].token.clone()),
            Ok(Some(vectors(&file, "vin", 2)[2].value.clone())),
        ),
        (
            Some("not a token".to_owned()),
            Err(ItemErrorCode::InvalidToken),
        ),
        (Some(like_tink), Ok(Some(value(7)))),
        (
            Some(STANDARD.encode(&tampered)),
            Err(ItemErrorCode::InvalidToken),
        ),
        (made(Mode::Hash, 4), Err(ItemErrorCode::NotReversible)),
        (Some(golden[0].token.clone()), Ok(Some(String::new()))),
    ];
    let tokens: Vec<Option<String>> = rows.iter().map(|(token, _)| token.clone()).collect();
    let answer = reader.reidentify(vin, &tokens);
    let expected_values: Vec<Option<String>> = rows
        .iter()
        .map(|(_, expected)| expected.clone().ok().flatten())
        .collect();
    assert_eq!(answer.values, expected_values);
    let expected_errors: Vec<(usize, ItemErrorCode)> = rows
        .iter()
        .enumerate()
        .filter_map(|(index, (_, expected))| expected.clone().err().map(|code| (index, code)))
        .collect();
    let errors: Vec<_> = answer.errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(errors, expected_errors);

    // Rewrapped in a Tink domain, every deterministic one becomes a Tink token of version 2.
    let moved = reader.rewrap(vin, &tokens);
    let tink_of = |v: &str| reader.pseudonymize(vin, Mode::Deterministic, &[Some(v)])[0].clone();
    assert_eq!(moved.pseudonyms[0], tink_of(&golden[1].value));
    assert_eq!(moved.pseudonyms[1], tink_of(&value(1)));
    assert_eq!(moved.pseudonyms[4], tink_of(&value(3)));
    assert!(
        moved.pseudonyms[3]
            .as_deref()
            .is_some_and(|t| t.starts_with("r2."))
    );
    assert!(
        moved.pseudonyms[7]
            .as_deref()
            .is_some_and(|t| t.starts_with("r2."))
    );
}
