//! `loadbench --near-cache`: this crate's client with the near cache
//! (`ClientBuilder::near_cache`) against the same client without it, side by side in one run,
//! on local memcached nodes.
//!
//! Keys `hot:000000` ... of 100-byte values are preloaded on every node; callers read them with
//! `get`, drawing ranks from a Zipf distribution (p ∝ 1/rank^s, one CDF computed up front,
//! sampled by binary search with a per-caller SplitMix64). Every repeat builds a fresh client
//! per side, the order of the two sides alternating between repeats, and measures for each:
//!
//! * **unthrottled**: C closed-loop callers each loop `get` for `--secs`;
//! * **throttled**: the same callers paced to `--rate` reads/s in total, each on its own fixed
//!   schedule of rate/C (`sleep_until`; a late caller catches up to its schedule but never gets
//!   ahead of it), the achieved rate reported.
//!
//! Each timed run follows a warm-up of the same kind lasting max(1 s, max age), so the near
//! cache is in its steady state. Per run: reads/s; the latency of every read (from the moment
//! it is issued, in nanoseconds); client CPU per read (`getrusage` of this process, harness
//! included); memcached CPU per read; the `get` requests every node served (`cmd_get` of its
//! `stats` before and after), hence the busiest node's requests per read and the busiest/mean
//! ratio; and the near cache's counters (`near_cache_stats`).
//!
//! Then the cost of a near-cache hit in isolation (one caller reading one held key
//! `--hit-reads` times: CPU per read, and the latency of every 16th call), with the same loop
//! on the client without near cache for reference; and memory under a scan (`--scan` distinct
//! keys `scan:0000000` ... read once each by C callers, with the process's resident memory
//! before, at its peak, after, and `VmHWM`).
//!
//! A near-cache hit never returns `Pending`, so a caller that never yields would hold its
//! worker thread: every caller (both sides, every section) calls `tokio::task::yield_now`
//! every [`YIELD_EVERY`](measure::YIELD_EVERY) reads.
//!
//! Files: this one (options, the order of the runs, the preload), `measure.rs` (the runs and
//! what is read around them), `report.rs` (near-cache.md and near-cache.csv).

mod measure;
pub(crate) mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memcached_autodiscovery_testkit::LocalCluster;

use crate::load::{Keyspace, VALUE_LEN};
use crate::raw;
use crate::report::si;
use measure::{build, hit_cost, scan, scan_key, timed, Zipf};
use report::{csv, load_average, markdown, progress, utc_now, Meta};

/// What the command line decides in this mode.
#[derive(Debug, Clone)]
pub struct NearOptions {
    pub zipf: f64,
    pub key_count: usize,
    pub concurrency: usize,
    pub budget: usize,
    pub max_age: Duration,
    pub rate: f64,
    pub secs: Duration,
    pub repeats: usize,
    pub hit_reads: u64,
    pub scan: usize,
    pub nodes: usize,
    pub out: PathBuf,
    pub current_thread: bool,
    pub command: String,
}

impl NearOptions {
    pub fn defaults(command: String) -> NearOptions {
        NearOptions {
            zipf: 1.1,
            key_count: 100_000,
            concurrency: 64,
            budget: 16 << 20,
            max_age: Duration::from_secs(1),
            rate: 40_000.0,
            secs: Duration::from_secs(5),
            repeats: 3,
            hit_reads: 2_000_000,
            scan: 1_000_000,
            nodes: 3,
            out: PathBuf::from("docs/performance"),
            current_thread: false,
            command,
        }
    }

    /// Warm-up before every timed run: long enough for every entry kept before it to expire.
    fn warmup(&self) -> Duration {
        self.max_age.max(Duration::from_secs(1))
    }
}

/// The keys and their distribution, shared by every caller.
struct Work {
    keys: Keyspace,
    zipf: Zipf,
}

/// Near cache off or on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Off,
    On,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Off => "off",
            Side::On => "on",
        }
    }
}

/// The nodes and the keys.
struct Bench {
    endpoint: SocketAddr,
    servers: Vec<SocketAddr>,
    pids: Vec<u32>,
    work: Arc<Work>,
}

struct Section {
    name: &'static str,
    rate: Option<f64>,
}

/// Stores `count` keys `scan:0000000` ... with the hot keys' value on every node, in chunks (no
/// list of every key is kept, so the scans start from a heap without it).
fn preload_scan(servers: &[SocketAddr], value: &[u8], count: usize) -> std::io::Result<()> {
    const CHUNK: usize = 20_000;
    let mut key = String::new();
    for first in (0..count).step_by(CHUNK) {
        let keys = (first..(first + CHUNK).min(count))
            .map(|i| {
                scan_key(&mut key, i as u64);
                key.clone()
            })
            .collect();
        raw::preload(
            servers,
            &Keyspace {
                keys,
                value: value.to_vec(),
            },
        )?;
    }
    Ok(())
}

/// Runs the whole mode and writes the report.
pub async fn run(o: NearOptions) -> Result<(), String> {
    let started = Instant::now();
    let (started_utc, load_start) = (utc_now(), load_average());
    // Every key on every node: memcached stores a 100-byte value with its key in a 192-byte
    // chunk; 256 bytes a key leaves room for the slab pages.
    let keys_per_node = o.key_count + o.scan;
    let memory_mb = 256.max(((keys_per_node * 256) >> 20) as u32 + 64);
    let cluster = LocalCluster::builder()
        .nodes(o.nodes)
        .threads(1)
        .memory_mb(memory_mb)
        .start()
        .await
        .map_err(|e| format!("starting memcached: {e}"))?;
    let keys = Keyspace {
        keys: (0..o.key_count).map(|i| format!("hot:{i:06}")).collect(),
        value: (0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect(),
    };
    let bench = Bench {
        endpoint: cluster.config_endpoint(),
        servers: cluster.node_addrs(),
        pids: (0..o.nodes).filter_map(|i| cluster.pid(i)).collect(),
        work: Arc::new(Work {
            zipf: Zipf::new(o.key_count, o.zipf),
            keys,
        }),
    };
    let memcached = format!("{}, -t 1 -m {memory_mb}", crate::memcached_version());
    println!(
        "# {} nodes ({memcached}), endpoint {}, servers {:?}",
        o.nodes, bench.endpoint, bench.servers
    );
    {
        let (servers, work, scan) = (bench.servers.clone(), bench.work.clone(), o.scan);
        tokio::task::spawn_blocking(move || {
            raw::preload(&servers, &work.keys)?;
            preload_scan(&servers, &work.keys.value, scan)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("preload: {e}"))?;
    }
    println!(
        "# preloaded {} hot keys and {} scan keys, {VALUE_LEN}-byte values, on every node ({:.0} s)",
        o.key_count,
        o.scan,
        started.elapsed().as_secs_f64()
    );

    let sections = [
        Section {
            name: "unthrottled",
            rate: None,
        },
        Section {
            name: "throttled",
            rate: Some(o.rate),
        },
    ];
    let mut runs = Vec::new();
    for repeat in 0..o.repeats {
        let order = if repeat % 2 == 0 {
            [Side::Off, Side::On]
        } else {
            [Side::On, Side::Off]
        };
        for (position, side) in order.into_iter().enumerate() {
            let near = (side == Side::On).then_some((o.budget, o.max_age));
            let client = build(bench.endpoint, near).await?;
            for section in &sections {
                let run = timed(&bench, &o, &client, section, side, repeat, position + 1).await?;
                println!(
                    "[{:>4.0}s] {}",
                    started.elapsed().as_secs_f64(),
                    progress(&run)
                );
                runs.push(run);
            }
            client.close().await;
            drop(client);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut hits = Vec::new();
    if o.hit_reads > 0 {
        for (side, reads) in [
            (Side::On, o.hit_reads),
            (Side::Off, (o.hit_reads / 100).max(1000)),
        ] {
            let h = hit_cost(&bench, &o, side, reads).await?;
            println!(
                "[{:>4.0}s] hit cost, near cache {}: {} reads, {:.3} µs CPU/read, p50 {:.3} µs, p99 {:.3} µs",
                started.elapsed().as_secs_f64(),
                side.name(),
                h.reads,
                h.cpu_us,
                h.p50_us,
                h.p99_us
            );
            hits.push(h);
        }
    }

    let mut scans = Vec::new();
    if o.scan > 0 {
        for side in [Side::Off, Side::On] {
            let s = scan(&bench, &o, side).await?;
            println!(
                "[{:>4.0}s] scan, near cache {}: {} reads at {}/s, RSS before {} KiB, peak {} KiB, after {} KiB, VmHWM {} KiB",
                started.elapsed().as_secs_f64(),
                side.name(),
                s.reads,
                si(s.reads_per_s),
                s.rss_before,
                s.rss_peak,
                s.rss_after,
                s.hwm
            );
            scans.push(s);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let meta = Meta {
        memcached,
        started_utc,
        elapsed: started.elapsed(),
        load_start,
        load_end: load_average(),
    };
    let md = markdown(&o, &meta, &runs, &hits, &scans);
    println!();
    print!("{md}");
    std::fs::create_dir_all(&o.out)
        .and_then(|()| std::fs::write(o.out.join("near-cache.md"), &md))
        .and_then(|()| std::fs::write(o.out.join("near-cache.csv"), csv(&runs, &hits, &scans)))
        .map_err(|e| format!("writing results: {e}"))?;
    println!("# results in {}", o.out.display());
    drop(bench);
    drop(cluster);
    Ok(())
}
