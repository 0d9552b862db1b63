//! What a read served from the near cache costs (`ClientBuilder::near_cache`), beside the same
//! read from its memcached node: `hit` is `Client::get` of a key the near cache holds,
//! `get_many_10_hits` a 10-key `get_many` of held keys, `node_get` a `get` with the near cache
//! off (a round trip to a real memcached on loopback, started by the test kit).
//!
//! Each sample runs its iterations back to back inside one task of a current-thread runtime, so
//! the figure is the call itself: validating the key, the lookup, the age check on both clocks,
//! the counters (no metrics feature). With `BENCH_CLOCK=cpu` the clock is the thread's CPU time.
//!
//!   cargo bench --bench near_cache
//!   BENCH_CLOCK=cpu cargo bench --bench near_cache

// Only its clock: this benchmark times its own loop, inside a runtime.
#[path = "support/clock.rs"]
#[allow(dead_code)]
mod clock;

use std::hint::black_box;
use std::time::Duration;

use clock::Clock;
use criterion::{criterion_group, criterion_main, Criterion};
use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;

fn near_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = runtime.block_on(LocalCluster::start(3)).unwrap();
    let build = |near: bool| {
        let mut builder = Client::builder().config_endpoint(cluster.config_endpoint().to_string());
        if near {
            // Long enough that no entry expires during the benchmark.
            builder = builder.near_cache(16 << 20, Duration::from_secs(3600));
        }
        runtime.block_on(builder.build()).unwrap()
    };
    let (near, plain) = (build(true), build(false));
    let keys: Vec<String> = (0..10).map(|i| format!("bench:hot:{i}")).collect();
    runtime.block_on(async {
        for key in &keys {
            plain.set(key, [b'v'; 100], Duration::ZERO).await.unwrap();
            near.get(key).await.unwrap().expect("stored");
        }
    });
    assert_eq!(near.near_cache_stats().unwrap().entries, 10);

    let mut group = c.benchmark_group("near_cache");
    let mut timed = |name: &str, client: &Client, many: bool| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let clock = Clock::from_env();
                    let start = clock.now();
                    for _ in 0..iters {
                        if many {
                            black_box(client.get_many(&keys).await.unwrap());
                        } else {
                            black_box(client.get(&keys[0]).await.unwrap());
                        }
                    }
                    Duration::from_nanos(clock.now() - start)
                })
            })
        });
    };
    timed("hit", &near, false);
    timed("get_many_10_hits", &near, true);
    timed("node_get", &plain, false);
    group.finish();
    let stats = near.near_cache_stats().unwrap();
    assert_eq!(stats.misses, 10, "every timed read was a hit: {stats:?}");
}

criterion_group!(benches, near_cache);
criterion_main!(benches);
