//! Values per second through the whole client and service, in each form of the API: the JSON
//! form (`Client::pseudonymize` on strings) against the Arrow form (`pseudonymize_array` on an
//! Arrow array), for all-distinct VINs, and back. One replica on loopback in this process.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;

use arrow_array::StringArray;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pseudonym_client::{Client, Mode};
use pseudonym_e2e::{Fault, Fixture, Replica};

const VALUES: usize = 200_000;

fn json_against_arrow(c: &mut Criterion) {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = Client::builder()
        .url(&replica.url)
        .api_key(&fixture.api_key)
        .build_blocking()
        .expect("client");
    let values: Vec<Option<String>> = (0..VALUES)
        .map(|i| Some(format!("WVWZZZ1JZ{i:08}")))
        .collect();
    let array = StringArray::from(values.clone());
    let tokens = client
        .pseudonymize("vin", Mode::Deterministic, &values)
        .expect("pseudonymized");
    let token_array = StringArray::from(tokens.clone());

    let mut group = c.benchmark_group(format!("client_and_service_{VALUES}_distinct_vins"));
    group.throughput(Throughput::Elements(VALUES as u64));
    group.sample_size(10);
    group.bench_function("pseudonymize_json", |b| {
        b.iter(|| {
            let answer = client.pseudonymize("vin", Mode::Deterministic, black_box(&values));
            answer.expect("pseudonymized")
        })
    });
    group.bench_function("pseudonymize_arrow", |b| {
        b.iter(|| {
            let answer = client.pseudonymize_array("vin", Mode::Deterministic, black_box(&array));
            answer.expect("pseudonymized")
        })
    });
    group.bench_function("reidentify_json", |b| {
        b.iter(|| {
            client
                .reidentify("vin", black_box(&tokens))
                .expect("reidentified")
        })
    });
    group.bench_function("reidentify_arrow", |b| {
        b.iter(|| {
            let answer = client.reidentify_array("vin", black_box(&token_array));
            answer.expect("reidentified")
        })
    });
    group.finish();
}

criterion_group!(benches, json_against_arrow);
criterion_main!(benches);
