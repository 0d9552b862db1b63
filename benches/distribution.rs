//! Key placement cost, for every mode: one lookup at 3, 30 and 300 nodes (`lookup/<mode>/<n>`),
//! and building the placement for 300 nodes, what a topology change costs (`build/<mode>/300`;
//! the default ring also at 3 and 30).
//!
//! Run: `cargo bench --bench distribution -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use memcached_autodiscovery::distribution::{Distribution, Locator};

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
            &[3, 30, 300]
        } else {
            &[300]
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

criterion_group!(benches, lookup, build);
criterion_main!(benches);
