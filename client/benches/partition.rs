//! The client's own cost per value, without the network: the plan of a 1M-value partition
//! (deduplicated where that pays) and reassembly of the answers into rows.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pseudonym_client::Mode;
use pseudonym_client::batch::Plan;

const ROWS: usize = 1_000_000;

/// 1M VIN-like values, 10% null, `distinct` different values.
fn partition(distinct: usize) -> Vec<Option<String>> {
    (0..ROWS)
        .map(|i| (i % 10 != 7).then(|| format!("WVWZZZ1JZ{:08}", (i * 7919) % distinct)))
        .collect()
}

fn dedup_and_reassembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_overhead_1M_rows");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    for distinct in [10_000, 1_000_000] {
        let values = partition(distinct);
        let answers: Vec<Option<String>> = {
            let plan = Plan::for_mode(Mode::Deterministic, values.iter().map(Option::as_deref));
            plan.unique
                .iter()
                .map(|v| Some(format!("d1.{v}xxxxxxxxxxxxxxxxxxxxxxxxxxxx")))
                .collect()
        };
        group.bench_function(format!("{distinct}_distinct"), |b| {
            b.iter(|| {
                let rows = black_box(&values).iter().map(Option::as_deref);
                let plan = Plan::for_mode(Mode::Deterministic, rows);
                black_box(plan.spread(&answers[..plan.unique.len()]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dedup_and_reassembly);
criterion_main!(benches);
