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
//! every [`YIELD_EVERY`] reads.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use memcached_autodiscovery::{Client, NearCacheStats};
use memcached_autodiscovery_testkit::LocalCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::load::{Keyspace, Rng, VALUE_LEN};
use crate::report::{si, Spread};
use crate::{raw, sys};

/// Reads between two `yield_now` of a caller.
pub const YIELD_EVERY: u64 = 32;
/// In the hit-cost loop, every this many calls is timed on its own.
const SAMPLE_EVERY: u64 = 16;
/// During the scan, resident memory is read every this many reads.
const RSS_EVERY: u64 = 10_000;
/// Allowance for the allocator in the memory goal: a sixteenth of the budget.
const SLACK_DIVISOR: u64 = 16;

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

/// The ranks' cumulative distribution: p(rank) ∝ 1/(rank+1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|rank| {
                total += ((rank + 1) as f64).powf(-s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// The share of reads that go to the `top` most read keys.
    fn share(&self, top: usize) -> f64 {
        self.cdf[top.clamp(1, self.cdf.len()) - 1]
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

async fn build(endpoint: SocketAddr, near: Option<(usize, Duration)>) -> Result<Client, String> {
    let mut builder = Client::builder().config_endpoint(endpoint.to_string());
    if let Some((max_bytes, max_age)) = near {
        builder = builder.near_cache(max_bytes, max_age);
    }
    builder.build().await.map_err(|e| format!("build: {e}"))
}

/// A latency histogram in nanoseconds, 1 ns to 60 s, 3 significant figures.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Counts a `get` result: `(not found, errors)`. Every key read is preloaded.
fn check(result: Result<Option<bytes::Bytes>, memcached_autodiscovery::Error>) -> (u64, u64) {
    match result {
        Ok(Some(value)) if value.len() == VALUE_LEN => (0, 0),
        Ok(Some(_)) | Err(_) => (0, 1),
        Ok(None) => (1, 0),
    }
}

/// What the callers of one run did.
struct Load {
    reads: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
    not_found: u64,
    errors: u64,
}

/// C callers reading Zipf-drawn keys for `duration`, unthrottled (`rate` None) or paced.
async fn load(
    client: &Client,
    work: &Arc<Work>,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
    seed: u64,
) -> Load {
    let start = Instant::now();
    let deadline = start + duration;
    let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
    let callers: Vec<_> = (0..concurrency)
        .map(|i| {
            let (client, work) = (client.clone(), work.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
                let mut histogram = histogram();
                let (mut reads, mut not_found, mut errors) = (0u64, 0u64, 0u64);
                // Each caller's schedule starts at its own offset within one interval.
                let mut next = interval.map(|d| start + d.mul_f64(i as f64 / concurrency as f64));
                let mut now = Instant::now();
                while now < deadline {
                    if let (Some(at), Some(d)) = (next.as_mut(), interval) {
                        if now < *at {
                            tokio::time::sleep_until((*at).into()).await;
                            now = Instant::now();
                        }
                        *at += d;
                    }
                    let key = &work.keys.keys[work.zipf.sample(&mut rng)];
                    let (nf, err) = check(client.get(key).await);
                    let end = Instant::now();
                    histogram.saturating_record(end.duration_since(now).as_nanos().max(1) as u64);
                    (reads, not_found, errors) = (reads + 1, not_found + nf, errors + err);
                    now = end;
                    if reads % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                        now = Instant::now();
                    }
                }
                (reads, not_found, errors, histogram)
            })
        })
        .collect();
    let mut done = Vec::with_capacity(callers.len());
    for caller in callers {
        done.push(caller.await.expect("caller task panicked"));
    }
    let elapsed = start.elapsed();
    let mut result = Load {
        reads: 0,
        elapsed,
        histogram: histogram(),
        not_found: 0,
        errors: 0,
    };
    for (reads, not_found, errors, h) in done {
        result.reads += reads;
        result.not_found += not_found;
        result.errors += errors;
        result.histogram.add(&h).expect("same histogram bounds");
    }
    result
}

/// `cmd_get` of every node's `stats`: the keys it was asked for by `get`.
async fn node_gets(servers: &[SocketAddr]) -> Result<Vec<u64>, String> {
    let mut counts = Vec::with_capacity(servers.len());
    for &addr in servers {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("stats of {addr}: {e}"))?;
        stream
            .write_all(b"stats\r\n")
            .await
            .map_err(|e| format!("stats of {addr}: {e}"))?;
        let mut reply = Vec::new();
        while !reply.ends_with(b"END\r\n") {
            let mut chunk = [0u8; 4096];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("stats of {addr}: {e}"))?;
            if n == 0 {
                return Err(format!("stats of {addr}: connection closed"));
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        let count = String::from_utf8_lossy(&reply)
            .lines()
            .find_map(|line| line.strip_prefix("STAT cmd_get ")?.trim().parse().ok())
            .ok_or_else(|| format!("stats of {addr}: no cmd_get"))?;
        counts.push(count);
    }
    Ok(counts)
}

/// One timed run of one side.
#[derive(Debug, Clone)]
struct Run {
    section: &'static str,
    side: Side,
    repeat: usize,
    /// 1 if this side ran first in its repeat, 2 if second.
    position: usize,
    target_rate: Option<f64>,
    reads: u64,
    elapsed_s: f64,
    reads_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    client_cpu_us: f64,
    server_cpu_us: f64,
    node_gets: Vec<u64>,
    /// The busiest node's `get` requests per read.
    busiest_per_read: f64,
    busiest_over_mean: f64,
    /// Deltas of the counters over the run (`bytes` and `entries`: at its end).
    near: Option<NearCacheStats>,
    not_found: u64,
    errors: u64,
}

impl Run {
    fn hit_ratio(&self) -> Option<f64> {
        self.near
            .map(|n| n.hits as f64 / (n.hits + n.misses).max(1) as f64)
    }
}

fn delta(before: Option<NearCacheStats>, after: Option<NearCacheStats>) -> Option<NearCacheStats> {
    let (b, mut a) = (before?, after?);
    a.hits -= b.hits;
    a.misses -= b.misses;
    a.admissions -= b.admissions;
    a.evictions -= b.evictions;
    Some(a)
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

/// Warms `client` up, then measures one timed run.
async fn timed(
    bench: &Bench,
    o: &NearOptions,
    client: &Client,
    section: &Section,
    side: Side,
    repeat: usize,
    position: usize,
) -> Result<Run, String> {
    let seed = (repeat as u64) << 8 | u64::from(section.rate.is_some());
    load(
        client,
        &bench.work,
        o.concurrency,
        o.warmup(),
        section.rate,
        !seed,
    )
    .await;
    let gets0 = node_gets(&bench.servers).await?;
    let near0 = client.near_cache_stats();
    let (cpu0, srv0) = (sys::self_cpu_micros(), sys::procs_cpu_micros(&bench.pids));
    let result = load(
        client,
        &bench.work,
        o.concurrency,
        o.secs,
        section.rate,
        seed,
    )
    .await;
    let (cpu1, srv1) = (sys::self_cpu_micros(), sys::procs_cpu_micros(&bench.pids));
    let near1 = client.near_cache_stats();
    let gets1 = node_gets(&bench.servers).await?;
    let node_gets: Vec<u64> = gets1.iter().zip(&gets0).map(|(a, b)| a - b).collect();
    let reads = result.reads.max(1) as f64;
    let busiest = node_gets.iter().copied().max().unwrap_or(0) as f64;
    let mean = node_gets.iter().sum::<u64>() as f64 / node_gets.len().max(1) as f64;
    let h = &result.histogram;
    Ok(Run {
        section: section.name,
        side,
        repeat,
        position,
        target_rate: section.rate,
        reads: result.reads,
        elapsed_s: result.elapsed.as_secs_f64(),
        reads_per_s: result.reads as f64 / result.elapsed.as_secs_f64().max(1e-9),
        p50_us: quantile_us(h, 0.5),
        p99_us: quantile_us(h, 0.99),
        p999_us: quantile_us(h, 0.999),
        client_cpu_us: cpu1.saturating_sub(cpu0) as f64 / reads,
        server_cpu_us: srv1.saturating_sub(srv0) as f64 / reads,
        busiest_per_read: busiest / reads,
        busiest_over_mean: if mean > 0.0 { busiest / mean } else { 0.0 },
        node_gets,
        near: delta(near0, near1),
        not_found: result.not_found,
        errors: result.errors,
    })
}

/// One caller reading one key `reads` times.
#[derive(Debug, Clone)]
struct HitCost {
    side: Side,
    reads: u64,
    cpu_us: f64,
    wall_us: f64,
    p50_us: f64,
    p99_us: f64,
    near: Option<NearCacheStats>,
}

async fn hit_cost(
    bench: &Bench,
    o: &NearOptions,
    side: Side,
    reads: u64,
) -> Result<HitCost, String> {
    let near = (side == Side::On).then_some((o.budget, o.max_age));
    let client = build(bench.endpoint, near).await?;
    let key = bench.work.keys.keys[0].clone();
    // The first read fetches the value (and the near cache keeps it), the second is a hit.
    for _ in 0..2 {
        if check(client.get(&key).await) != (0, 0) {
            return Err("hit cost: the key was not read".into());
        }
    }
    let near0 = client.near_cache_stats();
    let task = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut histogram = histogram();
            let mut bad = 0;
            let cpu0 = sys::self_cpu_micros();
            let start = Instant::now();
            for i in 0..reads {
                if i % SAMPLE_EVERY == 0 {
                    let t = Instant::now();
                    let result = client.get(&key).await;
                    histogram.saturating_record(t.elapsed().as_nanos().max(1) as u64);
                    bad += u64::from(check(result) != (0, 0));
                } else {
                    bad += u64::from(check(client.get(&key).await) != (0, 0));
                }
                if i % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
            }
            let elapsed = start.elapsed();
            let cpu = sys::self_cpu_micros().saturating_sub(cpu0);
            (histogram, elapsed, cpu, bad)
        })
    };
    let (h, elapsed, cpu, bad) = task.await.map_err(|e| e.to_string())?;
    if bad > 0 {
        return Err(format!("hit cost: {bad} reads failed or missed"));
    }
    let stats = delta(near0, client.near_cache_stats());
    client.close().await;
    Ok(HitCost {
        side,
        reads,
        cpu_us: cpu as f64 / reads as f64,
        wall_us: elapsed.as_secs_f64() * 1e6 / reads as f64,
        p50_us: quantile_us(&h, 0.5),
        p99_us: quantile_us(&h, 0.99),
        near: stats,
    })
}

/// Resident memory around a scan of distinct keys, each read once.
#[derive(Debug, Clone)]
struct Scan {
    side: Side,
    reads: u64,
    reads_per_s: f64,
    not_found: u64,
    errors: u64,
    /// KiB: before the first read (after `build`), the highest sampled, after the last read
    /// (client still alive), and `VmHWM` (reset before the scan if `hwm_reset`).
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    hwm: u64,
    hwm_reset: bool,
    near: Option<NearCacheStats>,
}

fn scan_key(buf: &mut String, i: u64) {
    buf.clear();
    let _ = write!(buf, "scan:{i:07}");
}

/// Max age of the scan's near cache: long enough that nothing expires during it.
const SCAN_MAX_AGE: Duration = Duration::from_secs(600);

async fn scan(bench: &Bench, o: &NearOptions, side: Side) -> Result<Scan, String> {
    let near = (side == Side::On).then_some((o.budget, SCAN_MAX_AGE));
    sys::trim_heap();
    let client = build(bench.endpoint, near).await?;
    let hwm_reset = sys::reset_peak_rss();
    let rss_before = sys::rss_kib();
    let count = o.scan as u64;
    let next = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let start = Instant::now();
    let callers: Vec<_> = (0..o.concurrency)
        .map(|_| {
            let (client, next, peak) = (client.clone(), next.clone(), peak.clone());
            tokio::spawn(async move {
                let (mut not_found, mut errors, mut reads) = (0u64, 0u64, 0u64);
                let mut key = String::with_capacity(16);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    scan_key(&mut key, i);
                    // The value is dropped here, at once.
                    let (nf, err) = check(client.get(&key).await);
                    (not_found, errors, reads) = (not_found + nf, errors + err, reads + 1);
                    if i % RSS_EVERY == 0 {
                        peak.fetch_max(sys::rss_kib(), Ordering::Relaxed);
                    }
                    if reads % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (not_found, errors)
            })
        })
        .collect();
    let (mut not_found, mut errors) = (0, 0);
    for caller in callers {
        let (nf, err) = caller.await.map_err(|e| e.to_string())?;
        not_found += nf;
        errors += err;
    }
    let elapsed = start.elapsed();
    let rss_after = sys::rss_kib();
    let hwm = sys::peak_rss_kib();
    let near = client.near_cache_stats();
    client.close().await;
    drop(client);
    Ok(Scan {
        side,
        reads: count,
        reads_per_s: count as f64 / elapsed.as_secs_f64().max(1e-9),
        not_found,
        errors,
        rss_before,
        rss_peak: peak.load(Ordering::Relaxed).max(rss_after),
        rss_after,
        hwm,
        hwm_reset,
        near,
    })
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

fn progress(r: &Run) -> String {
    format!(
        "{:<11} r{} near {:<3} {:>9}/s  p50 {:>9}  p99 {:>9}  cpu {:.2} µs/read  busiest node {:.3} req/read (×{:.2} mean){}{}",
        r.section,
        r.repeat + 1,
        r.side.name(),
        si(r.reads_per_s),
        us(r.p50_us),
        us(r.p99_us),
        r.client_cpu_us,
        r.busiest_per_read,
        r.busiest_over_mean,
        r.hit_ratio()
            .map(|h| format!("  hits {:.1} %", h * 100.0))
            .unwrap_or_default(),
        if r.not_found + r.errors > 0 {
            format!("  [not found {} errors {}]", r.not_found, r.errors)
        } else {
            String::new()
        }
    )
}

/// Microseconds with sub-µs precision below 10 µs.
fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.2} µs")
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// `1970-01-01T00:00:00Z` style, from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Medians over the repeats of one section and side.
struct Medians {
    runs: usize,
    reads_per_s: Spread,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    client_cpu_us: f64,
    server_cpu_us: f64,
    busiest_per_read: Spread,
    busiest_over_mean: f64,
    hit_ratio: Option<f64>,
    not_found: u64,
    errors: u64,
}

fn medians(runs: &[Run], section: &str, side: Side) -> Option<Medians> {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.section == section && r.side == side)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let spread = |f: fn(&Run) -> f64| Spread::of(mine.iter().map(|r| f(r)).collect());
    let hit_ratios: Vec<f64> = mine.iter().filter_map(|r| r.hit_ratio()).collect();
    Some(Medians {
        runs: mine.len(),
        reads_per_s: spread(|r| r.reads_per_s),
        p50_us: spread(|r| r.p50_us).median,
        p99_us: spread(|r| r.p99_us).median,
        p999_us: spread(|r| r.p999_us).median,
        client_cpu_us: spread(|r| r.client_cpu_us).median,
        server_cpu_us: spread(|r| r.server_cpu_us).median,
        busiest_per_read: spread(|r| r.busiest_per_read),
        busiest_over_mean: spread(|r| r.busiest_over_mean).median,
        hit_ratio: (!hit_ratios.is_empty()).then(|| Spread::of(hit_ratios).median),
        not_found: mine.iter().map(|r| r.not_found).sum(),
        errors: mine.iter().map(|r| r.errors).sum(),
    })
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// When and where the run happened.
struct Meta {
    memcached: String,
    started_utc: String,
    elapsed: Duration,
    /// `/proc/loadavg` at the start and at the end: other work on the machine shows there.
    load_start: String,
    load_end: String,
}

/// The 1, 5 and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn markdown(
    o: &NearOptions,
    meta: &Meta,
    runs: &[Run],
    hits: &[HitCost],
    scans: &[Scan],
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(md, "# Near cache: off and on, side by side\n");
    let _ = writeln!(md, "Command: `{}`\n", o.command);
    let _ = writeln!(
        md,
        "Started {} ({:.0} s), on a machine with {cores} cores (load average {} at the start, {} at the end); \
         the clients share one tokio runtime ({}); {} local memcached nodes ({}).\n",
        meta.started_utc,
        meta.elapsed.as_secs_f64(),
        meta.load_start,
        meta.load_end,
        if o.current_thread {
            "current-thread".to_string()
        } else {
            "2 worker threads".to_string()
        },
        o.nodes,
        meta.memcached,
    );
    let zipf = Zipf::new(o.key_count, o.zipf);
    let _ = writeln!(
        md,
        "Workload: {} keys `hot:000000` ... with {VALUE_LEN}-byte values, preloaded on every node; each read is a `get` \
         of a key whose rank is drawn from a Zipf distribution, s = {} (the top key gets {:.1} % of the reads, \
         the top 1 % of keys {:.1} %); {} callers. Near cache: budget {} bytes, max age {} ms. \
         Every repeat builds a fresh client per side, the one without near cache first in repeats 1, 3, ... and second in repeats 2, 4, ...; \
         every timed run lasts {:.1} s after a warm-up of the same kind lasting {:.1} s. \
         Figures are medians over {} repeat(s), min–max in parentheses where shown.\n",
        o.key_count,
        o.zipf,
        zipf.share(1) * 100.0,
        zipf.share(o.key_count / 100) * 100.0,
        o.concurrency,
        o.budget,
        o.max_age.as_millis(),
        o.secs.as_secs_f64(),
        o.warmup().as_secs_f64(),
        o.repeats,
    );
    let _ = writeln!(
        md,
        "How: latency is per read, from its issue to its answer, recorded in nanoseconds; client CPU is this \
         process's `getrusage` (user + system) over the run divided by the reads, so it includes the harness \
         (the key draw, the clock reads, the histogram) on both sides; memcached CPU is the nodes' /proc times. \
         Node requests are each node's `cmd_get` (from `stats`) after the run minus before. \
         Every caller calls `tokio::task::yield_now` every {YIELD_EVERY} reads, on both sides: a near-cache hit \
         never returns `Pending`, so a caller that never yields would hold its worker thread.\n"
    );

    let off_u = medians(runs, "unthrottled", Side::Off);
    let on_u = medians(runs, "unthrottled", Side::On);
    let off_t = medians(runs, "throttled", Side::Off);
    let on_t = medians(runs, "throttled", Side::On);
    let hit_on = hits.iter().find(|h| h.side == Side::On);
    let scan_of = |side| scans.iter().find(|s: &&Scan| s.side == side);
    let (scan_off, scan_on) = (scan_of(Side::Off), scan_of(Side::On));

    let _ = writeln!(md, "## Goals, measured in this run\n");
    let _ = writeln!(md, "| goal | measured | |\n|---|---|---|");
    if let (Some(off), Some(on)) = (&off_t, &on_t) {
        let ratio = off.busiest_per_read.median / on.busiest_per_read.median.max(1e-12);
        let _ = writeln!(
            md,
            "| busiest node's requests per read ≥ 5 × fewer at the same read rate ({} reads/s) | off {:.4}, on {:.4}: {ratio:.1} × fewer | {} |",
            si(o.rate),
            off.busiest_per_read.median,
            on.busiest_per_read.median,
            verdict(ratio >= 5.0)
        );
        let _ = writeln!(
            md,
            "| busiest/mean node requests ≤ 1.5, near cache on, at {} reads/s | {:.2} (off: {:.2}) | {} |",
            si(o.rate),
            on.busiest_over_mean,
            off.busiest_over_mean,
            verdict(on.busiest_over_mean <= 1.5)
        );
    }
    if let (Some(off), Some(on)) = (&off_u, &on_u) {
        let _ = writeln!(
            md,
            "| far more reads per second when unthrottled | off {}/s, on {}/s: {:.1} × | |",
            si(off.reads_per_s.median),
            si(on.reads_per_s.median),
            on.reads_per_s.median / off.reads_per_s.median.max(1e-9)
        );
        let ratio = off.busiest_per_read.median / on.busiest_per_read.median.max(1e-12);
        let _ = writeln!(
            md,
            "| busiest node's requests per read, unthrottled (context) | off {:.4}, on {:.4}: {ratio:.1} × fewer | |",
            off.busiest_per_read.median, on.busiest_per_read.median,
        );
        let _ = writeln!(
            md,
            "| busiest/mean node requests ≤ 1.5, near cache on, unthrottled | {:.2} (off: {:.2}) | {} |",
            on.busiest_over_mean,
            off.busiest_over_mean,
            verdict(on.busiest_over_mean <= 1.5)
        );
    }
    if let Some(h) = hit_on {
        let _ = writeln!(
            md,
            "| a near-cache hit ≤ 1 µs of client CPU (one caller, one held key) | {:.3} µs | {} |",
            h.cpu_us,
            verdict(h.cpu_us <= 1.0)
        );
        let _ = writeln!(
            md,
            "| a near-cache hit p50 ≤ 2 µs (every {SAMPLE_EVERY}th call timed) | {:.3} µs | {} |",
            h.p50_us,
            verdict(h.p50_us <= 2.0)
        );
    }
    if let (Some(off), Some(on)) = (scan_off, scan_on) {
        let budget_kib = o.budget as f64 / 1024.0;
        let slack_kib = budget_kib / SLACK_DIVISOR as f64;
        let extra_peak = on.rss_peak as f64
            - on.rss_before as f64
            - (off.rss_peak as f64 - off.rss_before as f64);
        let _ = writeln!(
            md,
            "| memory bounded by the budget under a scan of {} keys: RSS growth (peak − before), on minus off, ≤ budget + 1/{SLACK_DIVISOR} for the allocator ({}) | {} | {} |",
            o.scan,
            mib(budget_kib + slack_kib),
            mib(extra_peak),
            verdict(extra_peak <= budget_kib + slack_kib)
        );
    }

    for (title, off, on, rate) in [
        ("Unthrottled (closed loop)", &off_u, &on_u, None),
        ("Throttled", &off_t, &on_t, Some(o.rate)),
    ] {
        if off.is_none() && on.is_none() {
            continue;
        }
        match rate {
            Some(r) => {
                let _ = writeln!(
                    md,
                    "\n## {title}: {} reads/s in total ({:.0} per caller, each on its own schedule)\n",
                    si(r),
                    r / o.concurrency as f64
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "\n## {title}: {} callers, each looping `get`\n",
                    o.concurrency
                );
            }
        }
        let _ = writeln!(
            md,
            "| near cache | runs | reads/s | p50 | p99 | p99.9 | client CPU / read | memcached CPU / read | busiest node requests / read | busiest / mean node | near-cache hit ratio |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (side, m) in [(Side::Off, off), (Side::On, on)] {
            let Some(m) = m else { continue };
            let _ = writeln!(
                md,
                "| {} | {} | {} ({}–{}) | {} | {} | {} | {:.3} µs | {:.3} µs | {:.4} ({:.4}–{:.4}) | {:.2} | {} |{}",
                side.name(),
                m.runs,
                si(m.reads_per_s.median),
                si(m.reads_per_s.min),
                si(m.reads_per_s.max),
                us(m.p50_us),
                us(m.p99_us),
                us(m.p999_us),
                m.client_cpu_us,
                m.server_cpu_us,
                m.busiest_per_read.median,
                m.busiest_per_read.min,
                m.busiest_per_read.max,
                m.busiest_over_mean,
                m.hit_ratio
                    .map_or("–".into(), |h| format!("{:.1} %", h * 100.0)),
                if m.not_found + m.errors > 0 {
                    format!(" not found {}, errors {}", m.not_found, m.errors)
                } else {
                    String::new()
                }
            );
        }
        if let (Some(off), Some(on)) = (off, on) {
            let _ = writeln!(
                md,
                "\nBusiest node's requests per read, off / on: {:.1} ×; reads/s, on / off: {:.2} ×.",
                off.busiest_per_read.median / on.busiest_per_read.median.max(1e-12),
                on.reads_per_s.median / off.reads_per_s.median.max(1e-9)
            );
        }
    }

    if !hits.is_empty() {
        let _ = writeln!(
            md,
            "\n## Cost of a read of one held key (one caller)\n\n\
             One caller reads the same key again and again on the runtime above (near cache on: the key was read \
             once before, so every read is a hit while younger than the max age; off: every read asks the node, \
             for reference). CPU per read: the process's `getrusage` over the loop divided by the reads. \
             Latency: every {SAMPLE_EVERY}th call timed alone with two `Instant::now()` (their cost, some tens of \
             ns, included); wall per read: the loop's time over the reads (yields included).\n"
        );
        let _ = writeln!(
            md,
            "| near cache | reads | CPU / read | wall / read | p50 | p99 | near-cache hits / misses |\n|---|---:|---:|---:|---:|---:|---|"
        );
        for h in hits {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} µs | {:.3} µs | {:.3} µs | {:.3} µs | {} |",
                h.side.name(),
                h.reads,
                h.cpu_us,
                h.wall_us,
                h.p50_us,
                h.p99_us,
                h.near
                    .map_or("–".into(), |n| format!("{} / {}", n.hits, n.misses))
            );
        }
    }

    if !scans.is_empty() {
        let hwm_note = if scans.iter().all(|s| s.hwm_reset) {
            "VmHWM was reset before each scan (`/proc/self/clear_refs`), so it is that scan's peak"
        } else {
            "VmHWM could not be reset: it is the process's peak since it started"
        };
        let _ = writeln!(
            md,
            "\n## Memory under a scan of {} distinct keys\n\n\
             Keys `scan:0000000` ... ({VALUE_LEN}-byte values, on every node), each read once with `get` by {} callers, \
             the value dropped at once; near cache on: budget {} bytes, max age {} s (nothing expires during the scan). \
             Resident memory (VmRSS) before the first read (after `malloc_trim(0)` and `build`), the highest of the \
             readings taken every {RSS_EVERY} reads and at the end, and after the last read with the client still \
             alive; {hwm_note}. Off runs first, then on.\n",
            o.scan,
            o.concurrency,
            o.budget,
            SCAN_MAX_AGE.as_secs(),
        );
        let _ = writeln!(
            md,
            "| near cache | reads/s | RSS before | peak | after | growth at peak | growth after | VmHWM | near-cache bytes | entries | admissions | evictions |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in scans {
            let n =
                |f: fn(&NearCacheStats) -> u64| s.near.map_or("–".into(), |n| f(&n).to_string());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{}",
                s.side.name(),
                si(s.reads_per_s),
                mib(s.rss_before as f64),
                mib(s.rss_peak as f64),
                mib(s.rss_after as f64),
                mib(s.rss_peak as f64 - s.rss_before as f64),
                mib(s.rss_after as f64 - s.rss_before as f64),
                mib(s.hwm as f64),
                n(|n| n.bytes),
                n(|n| n.entries),
                n(|n| n.admissions),
                n(|n| n.evictions),
                if s.not_found + s.errors > 0 {
                    format!(" not found {}, errors {}", s.not_found, s.errors)
                } else {
                    String::new()
                }
            );
        }
        if let (Some(off), Some(on)) = (scan_off, scan_on) {
            let growth = |s: &Scan, to: u64| to as f64 - s.rss_before as f64;
            let peak = growth(on, on.rss_peak) - growth(off, off.rss_peak);
            let after = growth(on, on.rss_after) - growth(off, off.rss_after);
            let entries = on.near.map_or(0, |n| n.entries);
            let counted = on.near.map_or(0, |n| n.bytes);
            let _ = writeln!(
                md,
                "\nOn minus off: RSS growth {} at the peak, {} after; budget {}. The near cache counts {counted} bytes for \
                 {entries} entries ({:.0} bytes each); the RSS growth after the scan, on minus off, is {:.0} bytes per entry.",
                mib(peak),
                mib(after),
                mib(o.budget as f64 / 1024.0),
                counted as f64 / entries.max(1) as f64,
                after * 1024.0 / entries.max(1) as f64,
            );
        }
    }
    md
}

const CSV_COLUMNS: &[&str] = &[
    "section",
    "near_cache",
    "repeat",
    "position",
    "target_reads_per_s",
    "reads",
    "elapsed_s",
    "reads_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "client_cpu_us_per_read",
    "server_cpu_us_per_read",
    "node_gets",
    "busiest_node_gets_per_read",
    "busiest_over_mean",
    "near_hits",
    "near_misses",
    "near_hit_ratio",
    "near_admissions",
    "near_evictions",
    "near_bytes",
    "near_entries",
    "not_found",
    "errors",
    "rss_before_kib",
    "rss_peak_kib",
    "rss_after_kib",
    "vm_hwm_kib",
];

/// One CSV line: the values named, in [`CSV_COLUMNS`] order, empty where not given.
fn csv_line(out: &mut String, values: &[(&str, String)]) {
    let line: Vec<&str> = CSV_COLUMNS
        .iter()
        .map(|c| {
            values
                .iter()
                .find(|(name, _)| name == c)
                .map_or("", |(_, v)| v.as_str())
        })
        .collect();
    let _ = writeln!(out, "{}", line.join(","));
}

fn near_fields(near: Option<NearCacheStats>) -> Vec<(&'static str, String)> {
    let Some(n) = near else { return Vec::new() };
    vec![
        ("near_hits", n.hits.to_string()),
        ("near_misses", n.misses.to_string()),
        (
            "near_hit_ratio",
            format!("{:.4}", n.hits as f64 / (n.hits + n.misses).max(1) as f64),
        ),
        ("near_admissions", n.admissions.to_string()),
        ("near_evictions", n.evictions.to_string()),
        ("near_bytes", n.bytes.to_string()),
        ("near_entries", n.entries.to_string()),
    ]
}

fn csv(runs: &[Run], hits: &[HitCost], scans: &[Scan]) -> String {
    let mut out = CSV_COLUMNS.join(",") + "\n";
    for r in runs {
        let mut v = vec![
            ("section", r.section.to_string()),
            ("near_cache", r.side.name().to_string()),
            ("repeat", (r.repeat + 1).to_string()),
            ("position", r.position.to_string()),
            (
                "target_reads_per_s",
                r.target_rate.map_or(String::new(), |t| format!("{t:.0}")),
            ),
            ("reads", r.reads.to_string()),
            ("elapsed_s", format!("{:.4}", r.elapsed_s)),
            ("reads_per_s", format!("{:.1}", r.reads_per_s)),
            ("p50_us", format!("{:.3}", r.p50_us)),
            ("p99_us", format!("{:.3}", r.p99_us)),
            ("p999_us", format!("{:.3}", r.p999_us)),
            ("client_cpu_us_per_read", format!("{:.4}", r.client_cpu_us)),
            ("server_cpu_us_per_read", format!("{:.4}", r.server_cpu_us)),
            (
                "node_gets",
                r.node_gets
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            (
                "busiest_node_gets_per_read",
                format!("{:.5}", r.busiest_per_read),
            ),
            ("busiest_over_mean", format!("{:.4}", r.busiest_over_mean)),
            ("not_found", r.not_found.to_string()),
            ("errors", r.errors.to_string()),
        ];
        v.extend(near_fields(r.near));
        csv_line(&mut out, &v);
    }
    for h in hits {
        let mut v = vec![
            ("section", "hit_cost".to_string()),
            ("near_cache", h.side.name().to_string()),
            ("reads", h.reads.to_string()),
            (
                "elapsed_s",
                format!("{:.4}", h.wall_us * h.reads as f64 / 1e6),
            ),
            ("reads_per_s", format!("{:.1}", 1e6 / h.wall_us.max(1e-9))),
            ("p50_us", format!("{:.3}", h.p50_us)),
            ("p99_us", format!("{:.3}", h.p99_us)),
            ("client_cpu_us_per_read", format!("{:.4}", h.cpu_us)),
        ];
        v.extend(near_fields(h.near));
        csv_line(&mut out, &v);
    }
    for s in scans {
        let mut v = vec![
            ("section", "scan".to_string()),
            ("near_cache", s.side.name().to_string()),
            ("reads", s.reads.to_string()),
            ("reads_per_s", format!("{:.1}", s.reads_per_s)),
            ("not_found", s.not_found.to_string()),
            ("errors", s.errors.to_string()),
            ("rss_before_kib", s.rss_before.to_string()),
            ("rss_peak_kib", s.rss_peak.to_string()),
            ("rss_after_kib", s.rss_after.to_string()),
            ("vm_hwm_kib", s.hwm.to_string()),
        ];
        v.extend(near_fields(s.near));
        csv_line(&mut out, &v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_follows_the_power_law() {
        let zipf = Zipf::new(1000, 1.1);
        let mut rng = Rng::new(3);
        let mut counts = vec![0u64; 1000];
        let draws = 1_000_000;
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // Rank 0 against rank 9: (10/1)^1.1 ≈ 12.6.
        let ratio = counts[0] as f64 / counts[9] as f64;
        assert!((11.5..13.8).contains(&ratio), "{ratio}");
        let top = counts[0] as f64 / draws as f64;
        assert!((top - zipf.share(1)).abs() < 0.003, "{top}");
    }

    #[test]
    fn utc_date_is_civil() {
        let now = utc_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20"), "{now}");
    }
}
