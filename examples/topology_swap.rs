//! Throughput while the topology changes: 256 callers doing 90 % get / 10 % set on a local
//! emulated cluster, first steady, then while a node is added and removed every second, as
//! ElastiCache does it (a removed node leaves the configuration first and stops a moment later).
//! Prints ops/s of both phases, their ratio, and every failed request.
//!
//! ```sh
//! cargo run --release --example topology_swap -- [CHURN_SECONDS]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;

const CALLERS: usize = 256;
const KEYS: usize = 10_000;
const POLL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    failed: AtomicU64,
}

fn spawn_load(
    client: &Client,
    counts: &Arc<Counts>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CALLERS)
        .map(|caller| {
            let (client, counts, stop) = (client.clone(), counts.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = caller * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = (i * 31 + 17) % KEYS;
                    let key = format!("swap:{i:05}");
                    let result = if i % 10 == 0 {
                        client
                            .set(&key, [b'v'; 100], Duration::from_secs(600))
                            .await
                            .map(|_| ())
                    } else {
                        client.get(&key).await.map(|_| ())
                    };
                    counts.ops.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = result {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {e}");
                    }
                }
            })
        })
        .collect()
}

async fn phase(client: &Client, seconds: u64, churn: Option<&LocalCluster>) -> (f64, u64) {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_load(client, &counts, &stop);
    let started = Instant::now();
    let mut step = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(cluster) = churn else { continue };
        step += 1;
        if step % 2 == 1 {
            cluster.add_node().await.expect("add a node");
        } else {
            // Leave the configuration first (the process keeps serving), stop a little later.
            let mut nodes = cluster.config().nodes().to_vec();
            nodes.pop();
            let version = cluster.config().version();
            cluster.set_nodes_same_version(nodes);
            cluster.set_version(version + 1);
            tokio::time::sleep(POLL * 3).await;
            let last = cluster.len() - 1;
            cluster.remove_node(last).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a caller panicked");
    }
    let ops = counts.ops.load(Ordering::Relaxed);
    (
        ops as f64 / started.elapsed().as_secs_f64(),
        counts.failed.load(Ordering::Relaxed),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let churn_secs: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(30);
    let cluster = LocalCluster::builder()
        .nodes(3)
        .memory_mb(256)
        .start()
        .await?;
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(POLL)
        .build()
        .await?;
    for i in 0..KEYS {
        client
            .set(
                format!("swap:{i:05}"),
                [b'v'; 100],
                Duration::from_secs(600),
            )
            .await?;
    }
    let (steady, steady_failed) = phase(&client, 10, None).await;
    println!("steady:  {steady:>9.0} ops/s over 10 s, {steady_failed} failed requests");
    let (churned, churn_failed) = phase(&client, churn_secs, Some(&cluster)).await;
    println!(
        "churn:   {churned:>9.0} ops/s over {churn_secs} s (a node added, then removed, every second; \
         final version {}), {churn_failed} failed requests",
        client.cluster().version()
    );
    println!(
        "ratio:   {:.2} of steady-state throughput",
        churned / steady
    );
    Ok(())
}
