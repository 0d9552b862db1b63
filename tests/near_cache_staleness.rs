//! The near cache's staleness bound, with a writer in another process: no value read through
//! the near cache is older than its maximum age (plus one round trip).
//!
//! The test binary runs twice. Started by the test harness, it starts real memcached nodes,
//! then itself again with `--writer <endpoint>`: that process sets keys `stale:0..KEYS` to
//! increasing sequence numbers for `RUN`, and prints after each acknowledged set a line
//! `key seq wall-clock-ns`. Meanwhile readers here read the keys through a near cache,
//! recording for each read the wall clock when it was made and the sequence number it got.
//! A read of sequence `s` at time `t` is stale by `t - ack(s + 1)` when the writer's next set
//! of that key was acknowledged before `t`: the value was replaced that long ago. Both
//! processes read the same wall clock.
//!
//! (`harness = false` in Cargo.toml: this is a program, failing with a non-zero exit.)

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;
use tokio::io::{AsyncBufReadExt, BufReader};

const KEYS: u64 = 16;
const RUN: Duration = Duration::from_secs(4);
const MAX_AGE: Duration = Duration::from_millis(250);
const READERS: usize = 8;

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Some(at) = args.iter().position(|a| a == "--writer") {
        let endpoint = args.get(at + 1).expect("--writer <endpoint>").clone();
        runtime.block_on(writer(endpoint));
        return;
    }
    // `cargo test -- <filter>`: run unless filtered out by a name it does not match.
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let name = "near_cache_staleness_is_bounded_by_max_age";
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        println!("running 0 tests (filtered out)");
        return;
    }
    runtime.block_on(staleness_is_bounded());
    println!("test {name} ... ok");
}

/// The writer process: sets the keys in turn for [`RUN`], printing each acknowledged set.
async fn writer(endpoint: String) {
    let client = Client::builder()
        .config_endpoint(endpoint)
        .build()
        .await
        .expect("the writer's client");
    let end = tokio::time::Instant::now() + RUN;
    let mut seq = 0u64;
    while tokio::time::Instant::now() < end {
        seq += 1;
        let key = format!("stale:{}", seq % KEYS);
        client
            .set(&key, seq.to_string(), Duration::from_secs(60))
            .await
            .expect("the writer's set");
        println!("{key} {seq} {}", wall_ns());
        // About a write per key every 20 ms: many per max age.
        tokio::time::sleep(Duration::from_micros(1250)).await;
    }
}

/// One read: when it was made, the key, the sequence number it got, how long it took.
struct Read {
    at_ns: u64,
    key: String,
    seq: u64,
    took: Duration,
}

async fn staleness_is_bounded() {
    let cluster = LocalCluster::start(3).await.expect("memcached nodes");
    let endpoint = cluster.config_endpoint().to_string();
    // The keys exist before the writer starts: every read finds a number.
    let seeder = Client::builder()
        .config_endpoint(endpoint.clone())
        .build()
        .await
        .unwrap();
    for k in 0..KEYS {
        seeder
            .set(format!("stale:{k}"), "0", Duration::from_secs(60))
            .await
            .unwrap();
    }
    let start_ns = wall_ns();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--writer", &endpoint])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the writer process");
    let stdout = child.stdout.take().unwrap();
    let log = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut acks: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut parts = line.split(' ');
            let (Some(key), Some(seq), Some(at)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (seq, at) = (seq.parse().unwrap(), at.parse().unwrap());
            acks.entry(key.to_string()).or_default().push((seq, at));
        }
        acks
    });
    let near = Client::builder()
        .config_endpoint(endpoint)
        .near_cache(16 << 20, MAX_AGE)
        .build()
        .await
        .unwrap();
    let reads = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (near, reads) = (near.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let end = tokio::time::Instant::now() + RUN;
            let mut i = r as u64;
            while tokio::time::Instant::now() < end {
                i += 7;
                let key = format!("stale:{}", i % KEYS);
                let at_ns = wall_ns();
                let started = tokio::time::Instant::now();
                let value = near.get(&key).await.unwrap().expect("seeded");
                let took = started.elapsed();
                let seq = std::str::from_utf8(&value).unwrap().parse().unwrap();
                reads.lock().unwrap().push(Read {
                    at_ns,
                    key,
                    seq,
                    took,
                });
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the writer failed: {status}");
    let acks = log.await.unwrap();
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let stats = near.near_cache_stats().unwrap();

    // The longest round trip of a read that asked a node: the bound's slack.
    let round_trip = reads.iter().map(|r| r.took).max().unwrap();
    let mut worst = Duration::ZERO;
    let mut stale_reads = 0;
    for read in &reads {
        // When the value this read got was replaced on the node (the next seq's ack).
        let replaced = acks[&read.key]
            .iter()
            .find(|&&(seq, _)| seq > read.seq)
            .map(|&(_, at)| at);
        if let Some(replaced) = replaced.filter(|&at| at < read.at_ns) {
            stale_reads += 1;
            worst = worst.max(Duration::from_nanos(read.at_ns - replaced));
        }
    }
    let writes: usize = acks.values().map(Vec::len).sum();
    println!(
        "{} reads ({} from memory, {} from nodes) against {} writes in {:.1} s; {} reads \
         returned a replaced value; the oldest by {:.1} ms; max age {} ms; longest read {:.2} ms",
        reads.len(),
        stats.hits,
        stats.misses,
        writes,
        (wall_ns() - start_ns) as f64 / 1e9,
        stale_reads,
        worst.as_secs_f64() * 1e3,
        MAX_AGE.as_millis(),
        round_trip.as_secs_f64() * 1e3,
    );
    // The run means something: the writer wrote throughout, the near cache served most reads,
    // and reads did see replaced values (the bound is what is tested, not their absence).
    assert!(writes as u64 > 10 * KEYS, "the writer wrote {writes} times");
    assert!(stats.hits > stats.misses, "{stats:?}");
    assert!(
        stale_reads > 0,
        "no read saw a replaced value: the test tests nothing"
    );
    assert!(
        worst <= MAX_AGE + round_trip,
        "a read returned a value replaced {worst:?} before it, over max age {MAX_AGE:?} + one \
         round trip ({round_trip:?})"
    );
}
