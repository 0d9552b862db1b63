//! Key placement cost: one lookup, and building the placement, at 3, 30 and 300 nodes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use memcached_autodiscovery::distribution::{Distribution, Locator};

fn ids(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("mycluster.abc123.{i:04}.use1.cache.amazonaws.com:11211"))
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_lookup");
    let keys: Vec<String> = (0..1024).map(|i| format!("user:{i}:profile")).collect();
    for n in [3, 30, 300] {
        let locator = Locator::new(Distribution::Ring, &ids(n));
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(locator.locate(black_box(keys[i].as_bytes())))
            })
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    group.sample_size(10);
    for n in [3, 30, 300] {
        let nodes = ids(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(Locator::new(Distribution::Ring, black_box(&nodes))))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
