//! `loadbench --rtt-ms R`: every client on loopback and through a delay line of round-trip time
//! R between the clients and every node (and the configuration endpoint), side by side in one
//! run, on local memcached nodes.
//!
//! The kernel here has no `netem`, so the delay is a forwarding proxy per node and one for the
//! endpoint ([`delay`]): each chunk read is held R/2 before it is written on, in both
//! directions, on a thread of its own whose CPU is reported apart and kept out of the client's.
//! A second configuration endpoint lists the nodes at the proxies' addresses (same host names),
//! so this crate discovers them there; the other clients are given the proxies' addresses.
//!
//! What one run measures:
//!
//! * **ping**: `version` round trips on one connection straight to a node and through the line
//!   (the real RTT: timer wake-ups and scheduling add to the nominal one), and connect + first
//!   `version` on fresh connections (the line charges the handshake its round trip);
//! * **load**: closed-loop callers (as in the main mode: fresh client per run, warm-up, timed
//!   phase, peer order rotating per block, loopback and delayed blocks alternating) for the
//!   mixes `get` (100-byte values) and `hol` (head of line: keys `hol:00000`…, every 100th with a
//!   256 KiB value, the rest 100 bytes; latency of the small and the big gets kept apart), per
//!   run: ops/s, p50/p99/p999, client CPU per op (this process minus the line's thread),
//!   memcached CPU per op, the line's CPU per op, client sockets (through the line: the most
//!   connections it held at once), and how late the line released chunks;
//! * **lone caller**: `get` at C=1 on a current-thread runtime (a thread of its own), both
//!   networks;
//! * **cold start**: `build()` → first `get` answered through the line, with the connections
//!   and request/response turns the line saw, per target, and the time beyond them; the same
//!   on loopback for reference.
//!
//! With `--tls` (a build with the feature `tls`), cold start is also measured over TLS: a TLS
//! cluster of its own behind a line of its own (`tls.rs`).
//!
//! Files: this one (options, run order), `delay.rs` (the line), `measure.rs` (runs, ping, cold
//! start), `report.rs` (network.md and network.csv), `goals.rs` (its goals table and cold-start
//! section).

mod delay;
mod goals;
mod measure;
mod report;
#[cfg(feature = "tls")]
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memcached_autodiscovery::{ClusterConfig, Node};
use memcached_autodiscovery_testkit::{ConfigEndpoint, LocalCluster};

use crate::load::{Keyspace, VALUE_LEN};
use crate::peers::PeerKind;
use delay::DelayLine;
use measure::{cold_start, ping, run_one, Keys, Net, NetMix, Run, Target};

/// Bytes of the big values of the `hol` mix.
pub const BIG_LEN: usize = 256 << 10;
/// Every how many `hol` keys one is big.
pub const BIG_EVERY: usize = 100;

/// What the command line decides in this mode.
#[derive(Debug, Clone)]
pub struct NetOptions {
    pub rtt: Duration,
    pub mixes: Vec<NetMix>,
    pub concurrency: Vec<usize>,
    pub hol_concurrency: Vec<usize>,
    pub peers: Vec<PeerKind>,
    pub nets: Vec<Net>,
    pub repeats: usize,
    pub ops: u64,
    pub delay_secs: f64,
    pub cap: Duration,
    pub nodes: usize,
    pub cold_start: usize,
    pub pings: usize,
    pub lone: bool,
    pub tls: bool,
    pub out: PathBuf,
    pub current_thread: bool,
    pub command: String,
}

pub const HELP: &str = "\
NETWORK MODE: loadbench --rtt-ms R [OPTIONS]

  Every client on loopback and through a delay line of round-trip time R ms (a forwarding
  proxy per node and one for the configuration endpoint, holding every chunk R/2 each way),
  side by side in one run: the measured RTT, get and the head-of-line mix, the lone caller on
  a current-thread runtime, and cold start with the round trips counted. Writes network.md
  and network.csv.

  --rtt-ms R            round-trip time of the line, ms (fractions allowed)
  --mixes LIST          get,hol                               (default: get,hol)
  --concurrency LIST    callers of the get mix                (default: 1,64,256)
  --hol-concurrency LIST callers of the hol mix               (default: 64)
  --peers LIST          mcad, mcad-cpnN, async-memcached, memcache-async, memcache-exp
                        (default: mcad,mcad-cpn2,async-memcached,memcache-async,memcache-exp)
  --networks LIST       loopback,delay                        (default: both)
  --repeats N           repeats of every run                  (default: 3)
  --ops N               operations per timed run              (default: 30000)
  --delay-secs S        through the line, a run does at most C x S / RTT operations,
                        so that the lone caller's runs stay short (default: 2)
  --cap-secs S          time cap of a timed run               (default: 6)
  --no-lone             skip the lone caller on a current-thread runtime
  --no-load             no load runs (ping and cold start only)
  --cold-start N        cold-start samples per network (0: skip)   (default: 20)
  --tls                 cold start over TLS too, on a TLS cluster behind a line of its own
                        (a build with the feature tls)
  --pings N             round trips of each ping probe        (default: 200)
  --nodes N             memcached nodes                       (default: 3)
  --quick               get at C=64 and hol at C=64, 1 repeat, 5 cold starts, results to
                        target/loadbench-network-quick unless --out is given
  --out DIR             where network.md and network.csv go   (default: docs/performance)
  --current-thread      every run on a current-thread runtime
";

/// The options of this mode.
pub fn parse_args(args: &[String]) -> Result<NetOptions, String> {
    let command = format!("loadbench {}", args[1..].join(" "));
    let mut o = NetOptions {
        rtt: Duration::ZERO,
        mixes: vec![NetMix::Get, NetMix::Hol],
        concurrency: vec![1, 64, 256],
        hol_concurrency: vec![64],
        peers: crate::list(
            "mcad,mcad-cpn2,async-memcached,memcache-async,memcache-exp",
            PeerKind::parse,
            "peer",
        )?,
        nets: vec![Net::Loopback, Net::Delay],
        repeats: 3,
        ops: 30_000,
        delay_secs: 2.0,
        cap: Duration::from_secs(6),
        nodes: 3,
        cold_start: 20,
        pings: 200,
        lone: true,
        tls: false,
        out: PathBuf::from("docs/performance"),
        current_thread: false,
        command: command.trim_end().to_string(),
    };
    let (mut quick, mut out_given) = (false, false);
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let callers = |v: &String| crate::list(v, |s| s.parse().ok().filter(|c| *c > 0), "C");
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--rtt-ms" => o.rtt = Duration::from_secs_f64(crate::real(value()?)? / 1000.0),
            "--mixes" => o.mixes = crate::list(value()?, NetMix::parse, "mix")?,
            "--concurrency" => o.concurrency = callers(value()?)?,
            "--hol-concurrency" => o.hol_concurrency = callers(value()?)?,
            "--peers" => o.peers = crate::list(value()?, PeerKind::parse, "peer")?,
            "--networks" => o.nets = crate::list(value()?, Net::parse, "network")?,
            "--repeats" => o.repeats = crate::number(value()?)?.max(1) as usize,
            "--ops" => o.ops = crate::number(value()?)?.max(1),
            "--delay-secs" => o.delay_secs = crate::real(value()?)?,
            "--cap-secs" => o.cap = Duration::from_secs_f64(crate::real(value()?)?),
            "--no-lone" => o.lone = false,
            "--no-load" => {
                o.mixes.clear();
                o.lone = false;
            }
            "--tls" if cfg!(feature = "tls") => o.tls = true,
            "--tls" => return Err("--tls needs a build with the feature tls (cargo build --release -p memcached-autodiscovery-bench --features tls)".into()),
            "--cold-start" => o.cold_start = crate::number(value()?)? as usize,
            "--pings" => o.pings = crate::number(value()?)?.max(1) as usize,
            "--nodes" => o.nodes = crate::number(value()?)?.max(1) as usize,
            "--quick" => quick = true,
            "--out" => {
                o.out = PathBuf::from(value()?);
                out_given = true;
            }
            "--current-thread" => o.current_thread = true,
            other => return Err(format!("unknown option of --rtt-ms {other}; see --help")),
        }
    }
    if quick {
        o.concurrency = vec![64];
        o.hol_concurrency = vec![64];
        o.repeats = 1;
        o.cold_start = o.cold_start.min(5);
        if !out_given {
            o.out = PathBuf::from("target/loadbench-network-quick");
        }
    }
    if o.rtt.is_zero() {
        return Err("--rtt-ms needs a positive round-trip time".into());
    }
    if let Some(p) = o
        .peers
        .iter()
        .find(|p| matches!(p, PeerKind::MemcacheSync | PeerKind::Raw { .. }))
    {
        return Err(format!(
            "{} does not run in this mode (async clients only)",
            p.name()
        ));
    }
    Ok(o)
}

/// Both networks' addresses, and what every run shares.
pub struct Bench {
    pub loopback: Target,
    pub delay: Target,
    pub line: DelayLine,
    pub keys: Arc<Keys>,
    /// The second endpoint (nodes at the line's addresses); kept alive for the run.
    _endpoint: ConfigEndpoint,
}

impl Bench {
    pub fn target(&self, net: Net) -> &Target {
        match net {
            Net::Loopback => &self.loopback,
            Net::Delay => &self.delay,
        }
    }
}

/// Starts the line in front of `cluster` and `endpoint` (a second endpoint, serving nothing yet),
/// and has the endpoint list the nodes at the line's addresses: a front for the endpoint on 127.0.1.1 and one per
/// node on 127.0.1.(k+1), node k keeping its host name.
pub(super) fn start_line(
    cluster: &LocalCluster,
    endpoint: ConfigEndpoint,
    rtt: Duration,
) -> Result<(DelayLine, ConfigEndpoint), String> {
    let nodes = cluster.nodes();
    let addrs = cluster.node_addrs();
    let front_ip = |k: usize| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + k as u8));
    // Node fronts first (their addresses go into the second endpoint's configuration), then
    // the endpoint's front.
    let mut routes: Vec<(SocketAddr, SocketAddr)> = addrs
        .iter()
        .enumerate()
        .map(|(k, &a)| (SocketAddr::new(front_ip(k + 1), 0), a))
        .collect();
    routes.push((SocketAddr::new(front_ip(0), 0), endpoint.addr()));
    let line = DelayLine::start(&routes, rtt / 2).map_err(|e| format!("delay line: {e}"))?;
    let listed = nodes
        .iter()
        .zip(&line.fronts)
        .map(|(n, f)| Node::new(n.hostname(), Some(f.ip()), f.port()))
        .collect();
    endpoint.set_config(ClusterConfig::new(1, listed));
    Ok((line, endpoint))
}

/// Runs the whole mode and writes the report.
pub async fn run(o: NetOptions) -> Result<(), String> {
    let started = Instant::now();
    let (started_utc, load_start) = (
        crate::near::report::utc_now(),
        crate::near::report::load_average(),
    );
    let cluster = LocalCluster::builder()
        .nodes(o.nodes)
        .threads(1)
        .memory_mb(256)
        .start()
        .await
        .map_err(|e| format!("starting memcached: {e}"))?;
    let pids: Vec<u32> = (0..o.nodes).filter_map(|i| cluster.pid(i)).collect();
    let endpoint = ConfigEndpoint::start(ClusterConfig::new(1, Vec::new()))
        .map_err(|e| format!("starting the second endpoint: {e}"))?;
    let (line, endpoint) = start_line(&cluster, endpoint, o.rtt)?;
    let n = o.nodes;
    let bench = Arc::new(Bench {
        loopback: Target {
            net: Net::Loopback,
            endpoint: cluster.config_endpoint(),
            servers: cluster.node_addrs(),
            pids: pids.clone(),
            line: None,
        },
        delay: Target {
            net: Net::Delay,
            endpoint: line.fronts[n],
            servers: line.fronts[..n].to_vec(),
            pids,
            line: Some(line.shared.clone()),
        },
        line,
        keys: Arc::new(Keys::new()),
        _endpoint: endpoint,
    });
    let memcached = format!("{}, -t 1 -m 256", crate::memcached_version());
    println!(
        "# {n} nodes ({memcached}) at {:?}, endpoint {}; through the line (RTT {:.3} ms): nodes {:?}, endpoint {}",
        bench.loopback.servers,
        bench.loopback.endpoint,
        o.rtt.as_secs_f64() * 1e3,
        bench.delay.servers,
        bench.delay.endpoint
    );
    {
        let (servers, keys) = (bench.loopback.servers.clone(), bench.keys.clone());
        tokio::task::spawn_blocking(move || keys.preload(&servers))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("preload: {e}"))?;
    }
    println!(
        "# preloaded get keys pb:* ({VALUE_LEN} B) and hol keys hol:* (every {BIG_EVERY}th {BIG_LEN} B, the rest {VALUE_LEN} B) on every node"
    );

    let hold = calibrate(&bench, o.rtt).await?;
    println!(
        "# the line holds each chunk {:.1} µs (one-way {:.1} µs less its own wake-ups, calibrated)",
        hold / 1e3,
        o.rtt.as_secs_f64() * 1e6 / 2.0
    );
    let mut pings = vec![ping(&bench, o.pings, "start").await?];
    for p in &pings {
        println!("# {}", report::ping_line(p));
    }

    let mut blocks: Vec<(NetMix, usize, bool)> = Vec::new();
    for &mix in &o.mixes {
        let cs = match mix {
            NetMix::Get => &o.concurrency,
            NetMix::Hol => &o.hol_concurrency,
        };
        blocks.extend(cs.iter().map(|&c| (mix, c, o.current_thread)));
    }
    if o.lone && !o.current_thread && o.mixes.contains(&NetMix::Get) {
        blocks.push((NetMix::Get, 1, true));
    }
    let total = o.repeats * blocks.len() * o.nets.len() * o.peers.len();
    let (mut runs, mut done, mut block) = (Vec::<Run>::new(), 0, 0);
    for repeat in 0..o.repeats {
        for &(mix, c, current_thread) in &blocks {
            // Alternate which network goes first, and rotate the peers in every block.
            let mut nets = o.nets.clone();
            if repeat % 2 == 1 {
                nets.reverse();
            }
            for net in nets {
                let shift = block % o.peers.len();
                block += 1;
                for kind in o.peers.iter().cycle().skip(shift).take(o.peers.len()) {
                    done += 1;
                    let seed = (repeat as u64) << 32 | (c as u64) << 8 | mix as u64;
                    let run = if current_thread && !o.current_thread {
                        on_current_thread(&bench, &o, kind, mix, net, c, repeat, seed).await?
                    } else {
                        run_one(&bench, &o, kind, mix, net, c, repeat, seed, current_thread).await?
                    };
                    println!(
                        "[{done}/{total} {:>4.0}s] {}",
                        started.elapsed().as_secs_f64(),
                        report::progress(&run)
                    );
                    runs.push(run);
                }
            }
        }
    }

    pings.push(ping(&bench, o.pings, "end").await?);
    println!("# {}", report::ping_line(&pings[1]));
    let mut colds = Vec::new();
    if o.cold_start > 0 {
        for &net in &o.nets {
            let t = bench.target(net);
            let c = cold_start(
                t,
                &bench.keys,
                o.cold_start,
                false,
                memcached_autodiscovery::Client::builder,
            )
            .await?;
            println!("# {}", report::cold_line(&c));
            colds.push(c);
        }
    }
    if o.tls && o.cold_start > 0 {
        #[cfg(feature = "tls")]
        for c in tls::cold_starts(&o, &bench.keys).await? {
            println!("# {}", report::cold_line(&c));
            colds.push(c);
        }
    }
    let meta = report::Meta {
        memcached,
        started_utc,
        elapsed: started.elapsed(),
        load_start,
        load_end: crate::near::report::load_average(),
        hold_us: hold / 1e3,
        realtime: bench
            .line
            .shared
            .realtime
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    let md = report::markdown(&o, &meta, &runs, &pings, &colds);
    println!();
    print!("{md}");
    std::fs::create_dir_all(&o.out)
        .and_then(|()| std::fs::write(o.out.join("network.md"), &md))
        .and_then(|()| std::fs::write(o.out.join("network.csv"), report::csv(&runs)))
        .map_err(|e| format!("writing results: {e}"))?;
    println!("# results in {}", o.out.display());
    drop(bench);
    drop(cluster);
    Ok(())
}

/// Sets how long the line holds each chunk so that the median `version` round trip through
/// it exceeds the one straight to the node by the RTT asked for: the line's own wake-ups (on
/// reading a chunk, on releasing it) would otherwise add to every round trip. Three rounds of
/// 200 pings; returns the hold, ns.
async fn calibrate(bench: &Bench, rtt: Duration) -> Result<f64, String> {
    let line = &bench.line.shared;
    let target_us = rtt.as_secs_f64() * 1e6;
    for _ in 0..3 {
        let p = ping(bench, 200, "calibration").await?;
        let (direct, through) = (
            measure::Ping::at(&p[0].rtt_us, 0.5),
            measure::Ping::at(&p[1].rtt_us, 0.5),
        );
        let excess_ns = ((through - direct) - target_us) * 1e3;
        let hold = (line.hold_ns() as f64 - excess_ns / 2.0).clamp(0.0, line.one_way_ns as f64);
        line.set_hold_ns(hold as u64);
    }
    Ok(line.hold_ns() as f64)
}

/// One run on a current-thread runtime of its own (a new OS thread), as a lone caller on
/// Lambda runs.
#[allow(clippy::too_many_arguments)]
async fn on_current_thread(
    bench: &Arc<Bench>,
    o: &NetOptions,
    kind: &PeerKind,
    mix: NetMix,
    net: Net,
    c: usize,
    repeat: usize,
    seed: u64,
) -> Result<Run, String> {
    let (bench, o, kind) = (bench.clone(), o.clone(), kind.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("current-thread".into())
        .spawn(move || {
            let result = crate::runtime(true)
                .block_on(run_one(&bench, &o, &kind, mix, net, c, repeat, seed, true));
            let _ = tx.send(result);
        })
        .map_err(|e| e.to_string())?;
    rx.await
        .map_err(|_| "the current-thread run panicked".to_string())?
}

/// The `get` keyspace and the `hol` keyspace.
impl Keys {
    pub fn new() -> Keys {
        let small: Vec<u8> = (0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect();
        Keys {
            get: Keyspace::new(),
            hol: (0..crate::load::KEY_COUNT)
                .map(|i| format!("hol:{i:05}"))
                .collect(),
            small,
            big: (0..BIG_LEN).map(|i| b'A' + (i % 26) as u8).collect(),
        }
    }

    fn preload(&self, servers: &[SocketAddr]) -> std::io::Result<()> {
        crate::raw::preload(servers, &self.get)?;
        let (big, small): (Vec<_>, Vec<_>) = self
            .hol
            .iter()
            .enumerate()
            .partition(|(i, _)| i.is_multiple_of(BIG_EVERY));
        let strip = |v: Vec<(usize, &String)>| v.into_iter().map(|(_, k)| k.clone()).collect();
        crate::raw::preload(
            servers,
            &Keyspace {
                keys: strip(small),
                value: self.small.clone(),
            },
        )?;
        crate::raw::preload(
            servers,
            &Keyspace {
                keys: strip(big),
                value: self.big.clone(),
            },
        )
    }
}
