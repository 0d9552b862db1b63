//! Key placement cost, for every mode: one lookup at 3, 30 and 300 nodes (`lookup/<mode>/<n>`);
//! building the placement for 300 and 1,000 nodes (`build/<mode>/<n>`; the default ring also at
//! 3 and 30); and what a one-node change costs the default ring when the next placement is built
//! from the previous one with `Locator::next` (`next/ring/<n>/add-one`, `next/ring/<n>/remove-one`
//! at 30, 300 and 1,000 nodes).
//!
//! Run: `cargo bench --bench distribution -- --warm-up-time 1 --measurement-time 3`
//! (the ring's build and change only: add `'build/ring|next/'`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use memcached_autodiscovery_proto::distribution::{Distribution, Locator};

fn ids(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("mycluster.abc123.{i:04}.use1.cache.amazonaws.com:11211"))
        .collect()
}

/// 1,024 keys of typical shape and length, a quarter of them non-ASCII.
fn keys() -> Vec<String> {
    (0..1024)
        .map(|i| match i % 4 {
            0 => format!("user:{i}:profile"),
            1 => format!("session-{i:08x}"),
            2 => format!("clé-ünïcode-{i}"),
            _ => format!("photo/{i}/thumbnail"),
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    for &distribution in Distribution::ALL {
        let mut group = c.benchmark_group(format!("lookup/{distribution}"));
        for n in [3, 30, 300] {
            let locator = Locator::new(distribution, &ids(n));
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
}

fn build(c: &mut Criterion) {
    for &distribution in Distribution::ALL {
        let mut group = c.benchmark_group(format!("build/{distribution}"));
        group.sample_size(10);
        let sizes: &[usize] = if distribution == Distribution::Ring {
            &[3, 30, 300, 1000]
        } else {
            &[300, 1000]
        };
        for &n in sizes {
            let nodes = ids(n);
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| black_box(Locator::new(distribution, black_box(&nodes))))
            });
        }
        group.finish();
    }
}

/// A one-node change of the default ring: the next placement built from the previous one.
fn next(c: &mut Criterion) {
    let mut group = c.benchmark_group("next/ring");
    group.sample_size(10);
    for n in [30, 300, 1000] {
        let before = ids(n);
        let previous = Locator::new(Distribution::Ring, &before);
        let added = ids(n + 1);
        let mut removed = before.clone();
        removed.remove(n / 2);
        group.bench_function(BenchmarkId::new(n.to_string(), "add-one"), |b| {
            b.iter(|| black_box(previous.next(black_box(&added), None)))
        });
        group.bench_function(BenchmarkId::new(n.to_string(), "remove-one"), |b| {
            b.iter(|| black_box(previous.next(black_box(&removed), None)))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, build, next);
criterion_main!(benches);
