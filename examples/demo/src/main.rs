//! A tour of auto-discovery on a local emulated ElastiCache cluster (real memcached processes
//! behind a configuration endpoint): discover, spread keys, grow the cluster, follow it.
//!
//! ```sh
//! cargo run --release -p memcached-autodiscovery-demo     # or: scripts/demo
//! ```
//!
//! A package of its own (`examples/demo/`), so that it builds the library, the test kit and
//! tokio only, not the library's dev-dependencies.
//!
//! Exits with status 1 if anything does not happen as described.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, ClusterConfig};
use memcached_autodiscovery_testkit::LocalCluster;

const KEYS: usize = 1_000;
const POLL: Duration = Duration::from_secs(1);
/// Longest wait for the client to notice the new node (a few poll intervals).
const FOLLOW_LIMIT: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, String>;

#[tokio::main]
async fn main() -> ExitCode {
    // `run` owns the cluster: every memcached process is stopped before the status is returned.
    match run().await {
        Ok(()) => {
            println!("\nDemo finished: everything behaved as expected.");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("\ndemo failed: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn key(i: usize) -> String {
    format!("demo:item:{i}")
}

fn value(i: usize) -> String {
    format!("value number {i}")
}

fn print_config(config: &ClusterConfig) {
    println!(
        "  configuration version {}, {} nodes:",
        config.version(),
        config.nodes().len()
    );
    for node in config.nodes() {
        let ip = node
            .ip()
            .map_or_else(|| "-".to_string(), |ip| ip.to_string());
        println!("    {:<28} {ip}:{}", node.hostname(), node.port());
    }
}

/// Which node (`hostname:port`) each key goes to now.
fn placement(client: &Client) -> Result<Vec<String>> {
    (0..KEYS)
        .map(|i| {
            client
                .node_for(key(i))
                .map(|n| n.id())
                .map_err(|e| format!("no node for {}: {e}", key(i)))
        })
        .collect()
}

fn print_spread(placement: &[String]) -> BTreeMap<&str, usize> {
    let mut per_node = BTreeMap::new();
    for node in placement {
        *per_node.entry(node.as_str()).or_insert(0) += 1;
    }
    for (node, count) in &per_node {
        println!(
            "    {node:<34} {count:>4} keys ({:.1} %)",
            100.0 * *count as f64 / KEYS as f64
        );
    }
    per_node
}

async fn run() -> Result<()> {
    println!("1. Starting a local cluster: 3 memcached nodes and a configuration endpoint");
    let cluster = LocalCluster::start(3)
        .await
        .map_err(|e| format!("cannot start the local cluster: {e}"))?;
    let endpoint = cluster.config_endpoint().to_string();
    println!("  configuration endpoint: {endpoint}");

    println!("\n2. Building a client on the endpoint (polling it every {POLL:?})");
    let client = Client::builder()
        .config_endpoint(endpoint.clone())
        .poll_interval(POLL)
        .build()
        .await
        .map_err(|e| format!("the client could not discover the cluster: {e}"))?;
    let discovered = client.cluster();
    print_config(&discovered);
    if *discovered != cluster.config() {
        return Err("the client sees another configuration than the endpoint serves".into());
    }

    println!("\n3. Storing {KEYS} keys; where they went (consistent hashing):");
    let started = Instant::now();
    for i in 0..KEYS {
        client
            .set(key(i), value(i), Duration::ZERO)
            .await
            .map_err(|e| format!("set {}: {e}", key(i)))?;
    }
    println!("  stored in {:.0?}", started.elapsed());
    let before = placement(&client)?;
    let spread = print_spread(&before);
    if spread.len() != 3 || spread.values().any(|&n| n < KEYS / 6) {
        return Err(format!(
            "the keys are spread very unevenly over the 3 nodes: {spread:?}"
        ));
    }

    println!("\n4. Reading them all back");
    let hits = read_back(&client, |_| true).await?;
    println!("  {hits} of {KEYS} keys hit");
    if hits != KEYS {
        return Err(format!("{} keys were lost", KEYS - hits));
    }

    println!("\n5. Adding a fourth node to the cluster");
    let added = cluster
        .add_node()
        .await
        .map_err(|e| format!("cannot add a node: {e}"))?;
    let new_version = cluster.config().version();
    println!(
        "  the endpoint now serves version {new_version} with {}:{}",
        added.hostname(),
        added.port()
    );
    let waiting = Instant::now();
    while client.cluster().version() < new_version {
        if waiting.elapsed() > FOLLOW_LIMIT {
            return Err(format!(
                "the client still has version {} after {FOLLOW_LIMIT:?}",
                client.cluster().version()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "  the client followed after {:.1?} (next poll):",
        waiting.elapsed()
    );
    let followed = client.cluster();
    print_config(&followed);
    if followed.nodes().len() != 4 || !followed.nodes().contains(&added) {
        return Err("the client's node list does not have the new node".into());
    }

    println!("\n6. Where the {KEYS} keys go now:");
    let after = placement(&client)?;
    print_spread(&after);
    let moved: Vec<usize> = (0..KEYS).filter(|&i| before[i] != after[i]).collect();
    let share = moved.len() as f64 / KEYS as f64;
    println!(
        "  {} keys ({:.1} %) moved, about 1/4 as expected when 3 nodes become 4",
        moved.len(),
        100.0 * share
    );
    if let Some(&stray) = moved.iter().find(|&&i| after[i] != added.id()) {
        return Err(format!(
            "{} moved from {} to {}, not to the new node",
            key(stray),
            before[stray],
            after[stray]
        ));
    }
    println!("  every moved key went to the new node; no key moved between the old ones");
    if !(0.10..=0.40).contains(&share) {
        return Err(format!(
            "{:.1} % of the keys moved; about 25 % was expected",
            100.0 * share
        ));
    }

    println!("\n7. Reading every key again");
    let unmoved_hits = read_back(&client, |i| before[i] == after[i]).await?;
    let misses = count_misses(&client, &moved).await?;
    println!(
        "  {unmoved_hits} of {} keys that stayed put hit",
        KEYS - moved.len()
    );
    println!(
        "  {misses} of {} moved keys are clean misses: the new node starts empty, so a cache \
         fills them again from the source of truth",
        moved.len()
    );
    if unmoved_hits != KEYS - moved.len() || misses != moved.len() {
        return Err("some keys were neither a correct hit nor a clean miss".into());
    }

    println!("\n8. Writing the moved keys again, as a cache-aside reader would");
    for &i in &moved {
        client
            .set(key(i), value(i), Duration::ZERO)
            .await
            .map_err(|e| format!("set {}: {e}", key(i)))?;
    }
    let hits = read_back(&client, |_| true).await?;
    println!("  {hits} of {KEYS} keys hit");
    if hits != KEYS {
        return Err(format!("{} keys missed after refilling", KEYS - hits));
    }

    drop(client);
    drop(cluster);
    println!("\nStopped the cluster's memcached processes and the configuration endpoint.");
    Ok(())
}

/// Reads the keys chosen by `which`; how many came back with their value. A wrong value or an
/// error fails.
async fn read_back(client: &Client, which: impl Fn(usize) -> bool) -> Result<usize> {
    let mut hits = 0;
    for i in (0..KEYS).filter(|&i| which(i)) {
        match client.get(key(i)).await {
            Ok(Some(v)) if v == value(i).as_bytes() => hits += 1,
            Ok(Some(v)) => {
                return Err(format!(
                    "{} came back as {:?}",
                    key(i),
                    String::from_utf8_lossy(&v)
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(format!("get {}: {e}", key(i))),
        }
    }
    Ok(hits)
}

/// How many of the keys `indexes` are misses (no error, no value).
async fn count_misses(client: &Client, indexes: &[usize]) -> Result<usize> {
    let mut misses = 0;
    for &i in indexes {
        match client.get(key(i)).await {
            Ok(None) => misses += 1,
            Ok(Some(_)) => {}
            Err(e) => return Err(format!("get {}: {e}", key(i))),
        }
    }
    Ok(misses)
}
