//! `loadbench`: this crate against the other Rust memcached clients and a raw pipelined probe,
//! on a local cluster of real memcached processes (the test kit, memcached-autodiscovery-testkit),
//! in one run.
//!
//! See `--help`, and docs/performance/README.md for the method and the latest results.
//! `loadbench --near-cache` is another mode: the near cache on and off side by side (see
//! `near/mod.rs`). `loadbench --rtt-ms R` is a third: every client on loopback and through a
//! delay line of round-trip time R (see `net/mod.rs`).

mod chart;
mod coldstart;
mod load;
mod near;
mod net;
mod peers;
mod raw;
mod report;
mod sys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memcached_autodiscovery_testkit::LocalCluster;

use crate::load::{Keyspace, Mix, Phase, PhaseResult, Tally};
use crate::peers::{PeerKind, Pools};
use crate::report::Record;

const HELP: &str = "\
loadbench: memcached-autodiscovery against other Rust memcached clients on local memcached nodes

USAGE: loadbench [OPTIONS]

  --quick               one mix (get), C=256, 1 repeat, no cold start; results go to
                        target/loadbench-quick unless --out is given
  --mixes LIST          get,get90,mget10                      (default: all three)
  --concurrency LIST    closed-loop callers                   (default: 1,16,64,256)
  --peers LIST          mcad, mcad-cpnN (connections_per_node N), async-memcached,
                        memcache-async, memcache-exp, memcache-sync, raw,
                        raw-routed (the probe with every key sent to its node:
                        a multi-get split by node, as a client must send it)
                        (default: mcad,mcad-cpn2,async-memcached,memcache-async,
                                  memcache-exp,memcache-sync,raw,raw-routed)
  --repeats N           repeats of every (mix, C, peer) run   (default: 3)
  --ops N               operations per timed run              (default: 30000)
  --cap-secs S          time cap of a timed run               (default: 6)
  --raw-ops N           operations per raw probe run          (default: 10 x --ops)
  --nodes N             memcached nodes                       (default: 3)
  --cold-start N        cold-start samples (0: skip)          (default: 20)
  --out DIR             where results.csv, runs.csv, results.md and the charts go
                        (default: docs/performance)
  --no-charts           skip the PNG charts
  --current-thread      run every async client on a current-thread runtime (one thread)
                        instead of the default 2-worker runtime
  --help

NEAR-CACHE MODE: loadbench --near-cache [OPTIONS]

  This crate with ClientBuilder::near_cache and without it, side by side in one run: get of
  Zipf-distributed keys, unthrottled and at a fixed total rate (reads/s, latency, client and
  memcached CPU per read, get requests per node, near-cache counters), the cost of a hit, and
  resident memory during a scan of distinct keys. Writes near-cache.md and near-cache.csv.

  --zipf S              Zipf exponent of the key ranks        (default: 1.1)
  --key-count N         keys hot:000000 ... read by rank      (default: 100000)
  --concurrency C       callers                               (default: 64)
  --budget BYTES        near cache max_bytes                  (default: 16777216)
  --max-age-ms MS       near cache max_age                    (default: 1000)
  --rate R              total reads/s of the throttled runs   (default: 40000)
  --secs S              length of every timed run             (default: 5)
  --repeats N           (off, on) pairs, order alternating    (default: 3)
  --hit-reads N         reads of one held key for the hit cost (0: skip)
                                                              (default: 2000000)
  --scan N              distinct keys read once while memory is watched (0: skip)
                                                              (default: 1000000)
  --nodes N             memcached nodes                       (default: 3)
  --out DIR             where near-cache.md and near-cache.csv go
                        (default: docs/performance)
  --current-thread      a current-thread runtime instead of 2 workers
";

/// Everything the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    pub mixes: Vec<Mix>,
    pub concurrency: Vec<usize>,
    pub peers: Vec<PeerKind>,
    pub repeats: usize,
    pub ops: u64,
    pub raw_ops: Option<u64>,
    pub cap: Duration,
    pub nodes: usize,
    pub cold_start: usize,
    pub out: PathBuf,
    pub charts: bool,
    pub current_thread: bool,
    pub command: String,
}

/// A whole number given on the command line.
pub(crate) fn number(v: &str) -> Result<u64, String> {
    v.parse::<u64>().map_err(|_| format!("not a number: {v}"))
}

/// A positive, finite number given on the command line.
pub(crate) fn real(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| format!("not a positive number: {v}"))
}

pub(crate) fn list<T>(
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse(s.trim()).ok_or_else(|| format!("unknown {what}: {s}")))
        .collect()
}

fn parse_args() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().collect();
    let default_peers =
        "mcad,mcad-cpn2,async-memcached,memcache-async,memcache-exp,memcache-sync,raw,raw-routed";
    let mut o = Options {
        mixes: Mix::ALL.to_vec(),
        concurrency: vec![1, 16, 64, 256],
        peers: list(default_peers, PeerKind::parse, "peer")?,
        repeats: 3,
        ops: 30_000,
        raw_ops: None,
        cap: Duration::from_secs(6),
        nodes: 3,
        cold_start: 20,
        out: PathBuf::from("docs/performance"),
        charts: true,
        current_thread: false,
        command: format!("loadbench {}", args[1..].join(" "))
            .trim_end()
            .to_string(),
    };
    let mut out_given = false;
    let mut quick = false;
    let mut it = args.into_iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}\n{}", net::HELP);
                std::process::exit(0);
            }
            "--quick" => {
                quick = true;
                o.mixes = vec![Mix::Get];
                o.concurrency = vec![256];
                o.repeats = 1;
                o.cold_start = 0;
            }
            "--mixes" => o.mixes = list(&value()?, Mix::parse, "mix")?,
            "--concurrency" => o.concurrency = list(&value()?, |s| s.parse().ok(), "concurrency")?,
            "--peers" => o.peers = list(&value()?, PeerKind::parse, "peer")?,
            "--repeats" => o.repeats = number(&value()?)?.max(1) as usize,
            "--ops" => o.ops = number(&value()?)?.max(1),
            "--raw-ops" => o.raw_ops = Some(number(&value()?)?.max(1)),
            "--cap-secs" => o.cap = Duration::from_secs_f64(number(&value()?)? as f64),
            "--nodes" => o.nodes = number(&value()?)?.max(1) as usize,
            "--cold-start" => o.cold_start = number(&value()?)? as usize,
            "--out" => {
                o.out = PathBuf::from(value()?);
                out_given = true;
            }
            "--no-charts" => o.charts = false,
            "--current-thread" => o.current_thread = true,
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    if quick && !out_given {
        // A quick look must not overwrite the committed results.
        o.out = PathBuf::from("target/loadbench-quick");
    }
    if o.concurrency.contains(&0) {
        return Err("concurrency must be at least 1".into());
    }
    Ok(o)
}

/// The options of `--near-cache` mode.
fn parse_near_args(args: &[String]) -> Result<near::NearOptions, String> {
    let command = format!("loadbench {}", args[1..].join(" "));
    let mut o = near::NearOptions::defaults(command.trim_end().to_string());
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--near-cache" => {}
            "--zipf" => o.zipf = real(value()?)?,
            "--key-count" => o.key_count = number(value()?)?.max(1) as usize,
            "--concurrency" => o.concurrency = number(value()?)?.max(1) as usize,
            "--budget" => o.budget = number(value()?)? as usize,
            "--max-age-ms" => o.max_age = Duration::from_millis(number(value()?)?),
            "--rate" => o.rate = real(value()?)?,
            "--secs" => o.secs = Duration::from_secs_f64(real(value()?)?),
            "--repeats" => o.repeats = number(value()?)?.max(1) as usize,
            "--hit-reads" => o.hit_reads = number(value()?)?,
            "--scan" => o.scan = number(value()?)? as usize,
            "--nodes" => o.nodes = number(value()?)?.max(1) as usize,
            "--out" => o.out = PathBuf::from(value()?),
            "--current-thread" => o.current_thread = true,
            other => {
                return Err(format!(
                    "unknown option of --near-cache {other}; see --help"
                ))
            }
        }
    }
    Ok(o)
}

/// The runtime every client runs on: two workers (as many as the machine has cores), or one
/// thread.
fn runtime(current_thread: bool) -> tokio::runtime::Runtime {
    if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("tokio runtime")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--rtt-ms") {
        let options = net::parse_args(&args).unwrap_or_else(|e| {
            eprintln!("loadbench: {e}");
            std::process::exit(2);
        });
        if let Err(e) = runtime(options.current_thread).block_on(net::run(options)) {
            eprintln!("loadbench: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.iter().any(|a| a == "--near-cache") {
        let options = parse_near_args(&args).unwrap_or_else(|e| {
            eprintln!("loadbench: {e}");
            std::process::exit(2);
        });
        if let Err(e) = runtime(options.current_thread).block_on(near::run(options)) {
            eprintln!("loadbench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadbench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = runtime(options.current_thread).block_on(run(options)) {
        eprintln!("loadbench: {e}");
        std::process::exit(1);
    }
}

/// The local nodes and what every run needs to know about them.
pub struct Bench {
    pub cluster: LocalCluster,
    pub endpoint: SocketAddr,
    pub servers: Vec<SocketAddr>,
    pub pids: Vec<u32>,
    pub keys: Arc<Keyspace>,
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
    let bench = Bench {
        endpoint: cluster.config_endpoint(),
        servers: cluster.node_addrs(),
        pids: (0..options.nodes).filter_map(|i| cluster.pid(i)).collect(),
        keys: Arc::new(Keyspace::new()),
        cluster,
    };
    let memcached_version = memcached_version();
    println!(
        "# {} nodes ({memcached_version}, -t 1 -m 256), endpoint {}, servers {:?}",
        options.nodes, bench.endpoint, bench.servers
    );
    {
        let (servers, keys) = (bench.servers.clone(), bench.keys.clone());
        tokio::task::spawn_blocking(move || raw::preload(&servers, &keys))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("preload: {e}"))?;
    }
    println!(
        "# preloaded {} keys with {}-byte values on every node",
        load::KEY_COUNT,
        load::VALUE_LEN
    );

    let mut records = Vec::new();
    let total =
        options.repeats * options.mixes.len() * options.concurrency.len() * options.peers.len();
    let mut done = 0;
    let mut block = 0;
    for repeat in 0..options.repeats {
        for &mix in &options.mixes {
            for &concurrency in &options.concurrency {
                // Rotate the order every repeat (and every block), so that no peer always runs
                // first or last in a block.
                let n = options.peers.len();
                let shift = block % n;
                block += 1;
                let order: Vec<&PeerKind> =
                    options.peers.iter().cycle().skip(shift).take(n).collect();
                for kind in order {
                    done += 1;
                    let seed = (repeat as u64) << 32 | (concurrency as u64) << 8 | mix as u64;
                    let record =
                        run_one(&bench, &options, kind, mix, concurrency, repeat, seed).await?;
                    println!(
                        "[{done}/{total} {:>4.0}s] {:<6} C={:<3} {:<16} {:>9.0} ops/s  p50 {:>8.1} µs  p99 {:>8.1} µs  p999 {:>8.1} µs  cpu {:>5.2} µs/op (server {:>5.2})  sockets {:>3}{}",
                        started.elapsed().as_secs_f64(),
                        mix.name(),
                        concurrency,
                        record.peer,
                        record.ops_per_s,
                        record.p50_us,
                        record.p99_us,
                        record.p999_us,
                        record.client_cpu_us,
                        record.server_cpu_us,
                        record.sockets,
                        crate::report::run_flags(record.capped, record.misses, record.errors),
                    );
                    records.push(record);
                }
            }
        }
    }

    let cold = if options.cold_start > 0 {
        Some(coldstart::measure(&bench, options.cold_start).await?)
    } else {
        None
    };
    let summary = report::summarize(&records);
    println!();
    print!("{}", report::console_table(&summary, &options));
    if let Some(cold) = &cold {
        print!("{}", cold.markdown());
    }
    let meta = report::Meta {
        command: options.command.clone(),
        memcached_version,
        nodes: options.nodes,
        elapsed: started.elapsed(),
    };
    report::write_all(&options, &meta, &records, &summary, cold.as_ref())
        .map_err(|e| format!("writing results: {e}"))?;
    if options.charts {
        chart::write_all(&options, &summary).map_err(|e| format!("drawing charts: {e}"))?;
    }
    println!(
        "# results in {} ({:.0} s)",
        options.out.display(),
        started.elapsed().as_secs_f64()
    );
    drop(bench);
    Ok(())
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

/// Warm-up of every run: at least this many operations, at most one second.
const WARMUP_OPS: u64 = 2000;

/// Builds the peer, warms it up, measures one timed phase, then drops it.
async fn run_one(
    bench: &Bench,
    options: &Options,
    kind: &PeerKind,
    mix: Mix,
    concurrency: usize,
    repeat: usize,
    seed: u64,
) -> Result<Record, String> {
    // Let the previous peer's sockets close before the baseline is taken.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base_sockets = sys::socket_count();
    let phase = Phase {
        mix,
        concurrency,
        ops: options.ops,
        cap: options.cap,
        seed,
    };
    let warmup = Phase {
        ops: WARMUP_OPS.max(4 * concurrency as u64),
        cap: Duration::from_secs(1),
        seed: seed ^ 0xffff,
        ..phase
    };
    let keys = bench.keys.clone();
    let servers = bench.servers.clone();
    let measured = match kind {
        PeerKind::Mcad {
            connections_per_node,
        } => {
            let peer = Arc::new(peers::Mcad::build(bench.endpoint, *connections_per_node).await?);
            measure_async(bench, peer, keys, warmup, phase, base_sockets).await
        }
        PeerKind::AsyncMemcached => {
            let peer: Arc<peers::AsyncMemcached> = Arc::new(Pools::new(&servers, concurrency)?);
            measure_async(bench, peer, keys, warmup, phase, base_sockets).await
        }
        PeerKind::MemcacheAsync => {
            let peer: Arc<peers::MemcacheAsync> = Arc::new(Pools::new(&servers, concurrency)?);
            measure_async(bench, peer, keys, warmup, phase, base_sockets).await
        }
        PeerKind::MemcacheExp => {
            let peer = Arc::new(peers::MemcacheExp::build(&servers, concurrency).await?);
            measure_async(bench, peer, keys, warmup, phase, base_sockets).await
        }
        PeerKind::MemcacheSync => {
            let pids = bench.pids.clone();
            tokio::task::spawn_blocking(move || -> Result<_, String> {
                let peer = Arc::new(peers::MemcacheSync::build(&servers, concurrency)?);
                load::run_sync(peer.clone(), keys.clone(), warmup);
                let timed = peer.clone();
                let m = measure(&pids, base_sockets, || load::run_sync(timed, keys, phase));
                drop(peer);
                Ok(m)
            })
            .await
            .map_err(|e| e.to_string())??
        }
        PeerKind::Raw { routed } => {
            let pids = bench.pids.clone();
            let spec = raw::ProbeSpec {
                mix,
                routed: *routed,
                threads: 2,
                batch: 100,
                ops: options.raw_ops.unwrap_or(options.ops * 10),
                cap: options.cap,
                seed,
            };
            tokio::task::spawn_blocking(move || -> Result<_, String> {
                raw::probe(
                    &servers,
                    &keys,
                    raw::ProbeSpec {
                        ops: spec.ops / 10,
                        ..spec
                    },
                )
                .map_err(|e| e.to_string())?;
                let mut failed = None;
                let m = measure(&pids, base_sockets, || {
                    let result = match raw::probe(&servers, &keys, spec) {
                        Ok(r) => r,
                        Err(e) => {
                            failed = Some(e.to_string());
                            empty_result()
                        }
                    };
                    Tally::done(result, phase)
                });
                failed.map_or(Ok(m), Err)
            })
            .await
            .map_err(|e| e.to_string())??
        }
    };
    let mut record = Record::new(mix, concurrency, kind.name(), repeat, &measured);
    if matches!(kind, PeerKind::Raw { .. }) {
        // The probe's sockets live only inside the phase; it holds one per server per thread.
        record.sockets = 2 * bench.servers.len();
    }
    Ok(record)
}

fn empty_result() -> PhaseResult {
    PhaseResult {
        ops: 0,
        elapsed: Duration::ZERO,
        misses: 0,
        errors: 1,
        histogram: load::new_histogram(),
        capped: false,
    }
}

/// A timed phase with the CPU and socket figures taken around it.
pub struct Measured {
    pub result: PhaseResult,
    pub client_cpu_us: u64,
    pub server_cpu_us: u64,
    pub sockets: usize,
}

fn measure(pids: &[u32], base_sockets: usize, phase: impl FnOnce() -> Tally) -> Measured {
    let sampler = sys::SocketSampler::start();
    let (cpu0, srv0) = (sys::self_cpu_micros(), sys::procs_cpu_micros(pids));
    let tally = phase();
    let (cpu1, srv1) = (sys::self_cpu_micros(), sys::procs_cpu_micros(pids));
    let sockets = sampler.finish().saturating_sub(base_sockets);
    Measured {
        result: tally.merge(),
        client_cpu_us: cpu1.saturating_sub(cpu0),
        server_cpu_us: srv1.saturating_sub(srv0),
        sockets,
    }
}

async fn measure_async<P: load::AsyncPeer>(
    bench: &Bench,
    peer: Arc<P>,
    keys: Arc<Keyspace>,
    warmup: Phase,
    phase: Phase,
    base_sockets: usize,
) -> Measured {
    load::run_async(peer.clone(), keys.clone(), warmup).await;
    let sampler = sys::SocketSampler::start();
    let (cpu0, srv0) = (sys::self_cpu_micros(), sys::procs_cpu_micros(&bench.pids));
    let tally = load::run_async(peer.clone(), keys, phase).await;
    let (cpu1, srv1) = (sys::self_cpu_micros(), sys::procs_cpu_micros(&bench.pids));
    let sockets = sampler.finish().saturating_sub(base_sockets);
    drop(peer);
    Measured {
        result: tally.merge(),
        client_cpu_us: cpu1.saturating_sub(cpu0),
        server_cpu_us: srv1.saturating_sub(srv0),
        sockets,
    }
}
