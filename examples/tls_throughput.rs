//! Get throughput over TLS against plaintext, side by side in one run: two local 3-node
//! clusters started with the same options (one with TLS on every node and on the endpoint), 256
//! concurrent callers each, a few seconds per measurement, 3 rounds alternating plaintext and
//! TLS. Prints each measurement (with the CPU time the client process and the memcached
//! processes used, from /proc) and the TLS/plaintext ratio of the medians.
//!
//! ```sh
//! cargo run --release --features tls --example tls_throughput [-- SECONDS]
//! ```
//!
//! Everything runs on loopback; every loop stops after its measurement window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, TlsConfig};
use memcached_autodiscovery_testkit::{LocalCluster, TestCa};

const CALLERS: usize = 256;
const KEYS: usize = 1000;
const VALUE_LEN: usize = 100;
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 3,
    };
    let window = Duration::from_secs(seconds.max(1));

    // A CA, and a certificate it issued for the cluster's node names and the endpoint's IP.
    let ca = TestCa::new("throughput CA");
    let (chain_pem, key_pem) = ca.issue(&[
        "node-1.local-cluster.test",
        "node-2.local-cluster.test",
        "node-3.local-cluster.test",
        "127.0.0.1",
    ]);
    let ca_pem = ca.pem.clone();
    let plain_cluster = LocalCluster::builder().nodes(3).start().await?;
    let tls_cluster = LocalCluster::builder()
        .nodes(3)
        .tls(chain_pem, key_pem)
        .start()
        .await?;
    let plain = client(&plain_cluster, None).await?;
    let tls = client(&tls_cluster, Some(TlsConfig::with_ca_pem(&ca_pem)?)).await?;
    let value = [b'v'; VALUE_LEN];
    for c in [&plain, &tls] {
        for k in 0..KEYS {
            c.set(&key(k), &value[..], Duration::from_secs(600)).await?;
        }
    }

    println!(
        "get throughput, {CALLERS} concurrent callers, {KEYS} keys of {VALUE_LEN} bytes on 3 \
         nodes, {seconds} s per measurement"
    );
    let mut results: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let modes = [
        ("plaintext", &plain, &plain_cluster),
        ("tls", &tls, &tls_cluster),
    ];
    for round in 1..=ROUNDS {
        for (i, (name, c, cluster)) in modes.into_iter().enumerate() {
            let servers: Vec<u32> = (0..cluster.len()).filter_map(|n| cluster.pid(n)).collect();
            let (client_before, servers_before) = (cpu_ms(None), cpu_sum(&servers));
            let (rate, gets) = measure(c, window).await?;
            let client_us = (cpu_ms(None) - client_before) * 1000.0 / gets;
            let server_us = (cpu_sum(&servers) - servers_before) * 1000.0 / gets;
            println!(
                "round {round} {name:>9}: {rate:>10.0} gets/s   CPU per get: client \
                 {client_us:.2} us, memcached {server_us:.2} us"
            );
            results[i].push(rate);
        }
    }
    let plain_median = median(&mut results[0]);
    let tls_median = median(&mut results[1]);
    println!(
        "median plaintext {plain_median:.0} gets/s, tls {tls_median:.0} gets/s, \
         TLS/plaintext = {:.3}",
        tls_median / plain_median
    );
    Ok(())
}

fn key(k: usize) -> String {
    format!("throughput-{k}")
}

async fn client(
    cluster: &LocalCluster,
    tls: Option<TlsConfig>,
) -> Result<Client, Box<dyn std::error::Error>> {
    let mut builder = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .request_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    Ok(builder.build().await?)
}

/// CPU time (user + system) of a process so far, in ms: this one for `None`. 0 where /proc
/// cannot be read.
fn cpu_ms(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after `(comm)`: state is the 1st, utime the 12th, stime the 13th (clock ticks,
    // 100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) * 10.0
}

fn cpu_sum(pids: &[u32]) -> f64 {
    pids.iter().map(|&pid| cpu_ms(Some(pid))).sum()
}

/// Gets per second over `window` with [`CALLERS`] tasks, each waiting for its reply before the
/// next get; and how many gets that was.
async fn measure(
    client: &Client,
    window: Duration,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut k = caller * 7;
                while !stop.load(Ordering::Relaxed) {
                    k = (k + 13) % KEYS;
                    let value = client.get(&key(k)).await?;
                    assert_eq!(value.map(|v| v.len()), Some(VALUE_LEN));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), memcached_autodiscovery::Error>(())
            })
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    for task in tasks {
        task.await??;
    }
    Ok((counted as f64 / elapsed.as_secs_f64(), counted as f64))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
