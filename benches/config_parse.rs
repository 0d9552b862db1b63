//! Micro-benchmarks of the cluster configuration parser, on data blocks shaped like the ones
//! ElastiCache serves: `<version>\n` then `host|ip|port` entries separated by spaces, with
//! hostnames of the form `<cluster>.<id>.<nnnn>.<region>.cache.amazonaws.com` and private IPv4
//! addresses.
//!
//! What is timed: `ClusterConfig::parse` of a block that is built once, outside the timing
//! (parsing only reads it, so nothing needs resetting between iterations), including every
//! allocation of the result (the node list and one `String` per hostname) and dropping it again
//! at the end of the iteration. (Keeping the results alive until the end of a sample, as
//! `iter_with_large_drop` does, holds thousands of configs at once, and the page faults of that
//! memory land in the timed region: it measures worse, not better.)
//!
//! The clock is wall time. With `BENCH_CLOCK=cpu` it is the benchmark thread's own on-CPU time
//! instead (Linux, `CLOCK_THREAD_CPUTIME_ID`), which time spent running other processes on a busy
//! shared machine does not inflate.

#[path = "support/clock.rs"]
mod clock;

use std::hint::black_box;

use clock::looped;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use memcached_autodiscovery::ClusterConfig;

/// A data block of `nodes` nodes, as `config get cluster` returns it inside its envelope.
fn block(nodes: usize) -> Vec<u8> {
    let entries: Vec<String> = (1..=nodes)
        .map(|n| {
            format!(
                "sessions-prod.x7kq2m.{n:04}.use1.cache.amazonaws.com|10.{}.{}.{}|11211",
                n % 4,
                (n * 37) % 256,
                1 + (n * 11) % 254
            )
        })
        .collect();
    format!("{}\n{}\n", 40 + nodes, entries.join(" ")).into_bytes()
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("config_parse");
    for nodes in [3, 30, 300] {
        let data = block(nodes);
        let parsed = ClusterConfig::parse(&data).expect("the benchmark block parses");
        assert_eq!(parsed.nodes().len(), nodes);
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(BenchmarkId::new("nodes", nodes), &data, |b, data| {
            looped(b, || ClusterConfig::parse(black_box(data)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
