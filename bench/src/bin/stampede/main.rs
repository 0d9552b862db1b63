//! `stampede`: a thundering herd on cold and expired keys. Separate clients (as separate Lambda
//! environments), each with many callers, all ask for a few keys at once; `naive`
//! (get, load, set) against `Client::get_or_load`, on local memcached 1.6 nodes (the test kit).
//!
//! See `--help`, and docs/performance/stampede/README.md for the method and the results.

mod args;
mod herd;
mod nodes;
mod report;

use std::time::{Duration, Instant};

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;

use crate::args::Options;
use crate::herd::{Herd, Outcome, Round, Strategy};
use crate::nodes::Counters;
use crate::report::Record;

fn main() {
    let options = match args::parse(std::env::args().collect()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{}", args::HELP);
            return;
        }
        Err(e) => {
            eprintln!("stampede: {e}");
            std::process::exit(2);
        }
    };
    // Every client shares one runtime with two workers, as many as the machine has cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("stampede: {e}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let cluster = LocalCluster::builder()
        .nodes(options.nodes)
        .threads(1)
        .memory_mb(256)
        .start()
        .await
        .map_err(|e| format!("starting memcached: {e}"))?;
    let endpoint = cluster.config_endpoint().to_string();
    let observer = Client::builder()
        .config_endpoint(&endpoint)
        .build()
        .await
        .map_err(|e| format!("building the observer: {e}"))?;
    let keys: Vec<String> = (0..options.keys)
        .map(|i| format!("stampede:{i:02}"))
        .collect();
    let keys_per_node = keys_per_node(&cluster, &observer, &keys)?;
    let memcached = memcached_version();
    println!(
        "# {} nodes ({memcached}), keys per node {keys_per_node:?}; {} clients × {} callers on {} keys, loader {} ms, TTL {} s, {} repeats",
        options.nodes,
        options.clients,
        options.callers,
        options.keys,
        options.loader.as_millis(),
        options.ttl.as_secs(),
        options.repeats,
    );

    let mut records = Vec::new();
    for repeat in 0..options.repeats {
        let mut order = Strategy::ALL;
        if repeat % 2 == 1 {
            order.reverse();
        }
        for strategy in order {
            let clients = nodes::clients(&endpoint, options.clients).await?;
            let herd = Herd {
                clients: &clients,
                callers_per_client: options.callers,
                keys: &keys,
                loader: options.loader,
                ttl: options.ttl,
            };
            nodes::flush(&observer, &keys).await?;
            let (outcome, counters) = measure(&observer, &herd, strategy).await?;
            let stored = Instant::now();
            records.push(show(repeat, Round::Cold, strategy, outcome, counters, None));

            let waited = nodes::wait_for_expiry(&observer, &keys, stored, options.ttl).await?;
            let (outcome, counters) = measure(&observer, &herd, strategy).await?;
            let record = show(
                repeat,
                Round::Expired,
                strategy,
                outcome,
                counters,
                Some(waited),
            );
            records.push(record);

            if options.warm {
                let (outcome, counters) = measure(&observer, &herd, strategy).await?;
                records.push(show(repeat, Round::Warm, strategy, outcome, counters, None));
            }
        }
    }

    let summaries = report::summaries(&records);
    println!();
    print!("{}", report::summary_table(&summaries));
    println!();
    print!("{}", report::goals_table(&summaries));
    let meta = report::Meta {
        memcached,
        keys_per_node,
        elapsed: started.elapsed(),
    };
    let markdown = report::markdown(&options, &meta, &records, &summaries);
    let csv = report::csv(&options, &records, &summaries);
    report::write(&options.out, &markdown, &csv)
        .map_err(|e| format!("writing {}: {e}", options.out.display()))?;
    println!(
        "# results in {} ({:.0} s)",
        options.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One herd, with memcached's counters around it.
async fn measure(
    observer: &Client,
    herd: &Herd<'_>,
    strategy: Strategy,
) -> Result<(Outcome, Counters), String> {
    let before = Counters::read(observer).await?;
    let outcome = herd::run(herd, strategy).await;
    let after = Counters::read(observer).await?;
    Ok((outcome, after.since(before)))
}

/// Prints one herd's line and makes its record.
fn show(
    repeat: usize,
    round: Round,
    strategy: Strategy,
    outcome: Outcome,
    counters: Counters,
    waited: Option<Duration>,
) -> Record {
    let mut sorted = outcome.latencies.clone();
    sorted.sort();
    let ms = |q| report::quantile(&sorted, q).as_secs_f64() * 1000.0;
    let total: u64 = outcome.loads.iter().sum();
    println!(
        "[{} {:<7} {:<11}] loads/key max {:>3} mean {:>6.2} total {:>4}  errors {}  wrong {}  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  wall {:>7.1} ms  memcached gets {:>5} sets {:>4}{}{}",
        repeat + 1,
        round.name(),
        strategy.name(),
        outcome.loads.iter().max().copied().unwrap_or(0),
        total as f64 / outcome.loads.len().max(1) as f64,
        total,
        outcome.errors,
        outcome.wrong,
        ms(0.5),
        ms(0.99),
        ms(1.0),
        outcome.wall.as_secs_f64() * 1000.0,
        counters.gets,
        counters.sets,
        waited.map_or(String::new(), |w| format!("  (waited {:.1} s for expiry)", w.as_secs_f64())),
        outcome.first_error.as_ref().map_or(String::new(), |e| format!("  first error: {e}")),
    );
    Record {
        repeat,
        round,
        strategy,
        outcome,
        counters,
    }
}

/// How many of `keys` each node holds, in the cluster's node order.
fn keys_per_node(
    cluster: &LocalCluster,
    observer: &Client,
    keys: &[String],
) -> Result<Vec<usize>, String> {
    let ids: Vec<String> = cluster.nodes().iter().map(|n| n.id()).collect();
    let mut counts = vec![0; ids.len()];
    for key in keys {
        let id = observer.node_for(key).map_err(|e| e.to_string())?.id();
        if let Some(i) = ids.iter().position(|n| *n == id) {
            counts[i] += 1;
        }
    }
    Ok(counts)
}

fn memcached_version() -> String {
    let binary = std::env::var("MEMCACHED_BIN").unwrap_or_else(|_| "memcached".into());
    std::process::Command::new(binary)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "memcached".into())
}
