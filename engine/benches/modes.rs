//! ns/value of every mode on 17-character VIN-like values, next to bare `aes-siv` encryption of
//! the same values in the same run (the floor the deterministic mode is measured against), and
//! of the replaced AWS service's tokens: made (`compat_tokens = "lambda"`), read, and rewrapped
//! into ours (the cost per value of migrating a lake); and the JSON list of a batch's tokens.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;

use aes_siv::aead::KeyInit;
use aes_siv::aead::generic_array::GenericArray;
use aes_siv::siv::Aes256Siv;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pseudonym_client::Mode;
use pseudonym_engine::lambda::{LambdaKey, LambdaMode};
use pseudonym_engine::{Domain, Engine, Keyring};

/// Both sides run on the allocator the engine ships with in `pseudonymd`, `pseudonym-sql` and the
/// loadtest (the workspace's Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1000;

fn vins() -> Vec<Option<String>> {
    (0..BATCH)
        .map(|i| Some(format!("WVWZZZ1JZXW{i:06}")))
        .collect()
}

fn modes(c: &mut Criterion) {
    let engine = Engine::new(&Keyring::generate());
    let vin = Domain::new("vin").expect("valid");
    let values = vins();
    let mut group = c.benchmark_group("per_value");
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("bare_aes_siv_encrypt", |b| {
        let key = [7u8; 64];
        let mut siv = Aes256Siv::new(GenericArray::from_slice(&key));
        b.iter(|| {
            for value in values.iter().flatten() {
                black_box(siv.encrypt([b"vin"], value.as_bytes()).expect("encrypts"));
            }
        })
    });
    group.bench_function("bare_aes_siv_decrypt", |b| {
        let key = [7u8; 64];
        let mut siv = Aes256Siv::new(GenericArray::from_slice(&key));
        let sealed: Vec<Vec<u8>> = values
            .iter()
            .flatten()
            .map(|value| siv.encrypt([b"vin"], value.as_bytes()).expect("encrypts"))
            .collect();
        b.iter(|| {
            for item in &sealed {
                black_box(siv.decrypt([b"vin"], item).expect("decrypts"));
            }
        })
    });
    // What the service answers from: the batch's tokens in one string. (Format-preserving
    // pseudonyms are not tokens: the goals bench measures them against these.)
    for mode in Mode::ALL
        .into_iter()
        .filter(|mode| *mode != Mode::FormatPreserving)
    {
        group.bench_function(format!("pseudonymize_{}", mode.as_str()), |b| {
            b.iter(|| black_box(engine.pseudonymize_tokens(vin, mode, black_box(&values))))
        });
    }
    // The same as one `String` per token.
    group.bench_function("pseudonymize_deterministic_strings", |b| {
        b.iter(|| black_box(engine.pseudonymize(vin, Mode::Deterministic, black_box(&values))))
    });
    // What the service answers from: the batch's values in one string.
    for mode in [Mode::Deterministic, Mode::Randomized] {
        let tokens = engine.pseudonymize(vin, mode, &values);
        group.bench_function(format!("reidentify_{}", mode.as_str()), |b| {
            b.iter(|| black_box(engine.reidentify_texts(vin, black_box(&tokens))))
        });
    }
    let tokens = engine.pseudonymize(vin, Mode::Deterministic, &values);
    group.bench_function("reidentify_deterministic_strings", |b| {
        b.iter(|| black_box(engine.reidentify(vin, black_box(&tokens))))
    });

    // The JSON list of a batch's tokens, as the service writes it and as `serde_json` would.
    let tokens = engine.pseudonymize_tokens(vin, Mode::Deterministic, &values);
    group.bench_function("json_tokens_write_json", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            black_box(&tokens).write_json(&mut out);
            black_box(out)
        })
    });
    group.bench_function("json_tokens_serde_json", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&tokens)).expect("serializes")))
    });

    let mut keyring = Keyring::generate();
    let secret = r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "encodedNonceKey": "AQIDBAUGBwg=", "nonceStrPos": 4, "nonceEndPos": 16}"#;
    keyring
        .import_lambda_key(LambdaKey::from_secret_json(secret).expect("valid key"))
        .expect("first key of the Lambda service");
    let engine = Engine::new(&keyring).with_compat_domain(vin);
    group.bench_function("lambda_pseudonymize_deterministic", |b| {
        b.iter(|| {
            black_box(engine.pseudonymize_lambda(LambdaMode::Deterministic, black_box(&values)))
        })
    });
    let old = engine
        .pseudonymize_lambda(LambdaMode::Deterministic, &values)
        .expect("the Lambda service's key");
    group.bench_function("lambda_reidentify_deterministic", |b| {
        b.iter(|| black_box(engine.reidentify(vin, black_box(&old))))
    });
    group.bench_function("lambda_rewrap_deterministic", |b| {
        b.iter(|| black_box(engine.rewrap(vin, black_box(&old))))
    });
    group.finish();
}

criterion_group!(benches, modes);
criterion_main!(benches);
