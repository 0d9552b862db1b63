//! The runs of the network mode and what is read around them: the closed-loop phase (get and
//! the head-of-line mix, small and big latencies apart), the ping probe, and cold start with the
//! line's counts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::delay::{now_ns, Event, EventKind, Shared};
use super::{Bench, NetOptions, BIG_EVERY, BIG_LEN};
use crate::load::{new_histogram, Keyspace, Rng, KEY_COUNT, VALUE_LEN};
use crate::peers::{self, PeerKind, Pools, SizedGet};
use crate::sys;

/// Loopback straight to the nodes, or through the delay line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Loopback,
    Delay,
}

impl Net {
    pub fn name(self) -> &'static str {
        match self {
            Net::Loopback => "loopback",
            Net::Delay => "delay",
        }
    }

    pub fn parse(s: &str) -> Option<Net> {
        [Net::Loopback, Net::Delay]
            .into_iter()
            .find(|n| n.name() == s)
    }
}

/// The operation mix of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMix {
    /// 100 % get of a uniformly random `pb:` key (100-byte values).
    Get,
    /// 100 % get of a uniformly random `hol:` key: 1 in [`BIG_EVERY`] holds [`BIG_LEN`] bytes.
    Hol,
}

impl NetMix {
    pub fn name(self) -> &'static str {
        match self {
            NetMix::Get => "get",
            NetMix::Hol => "hol",
        }
    }

    pub fn parse(s: &str) -> Option<NetMix> {
        [NetMix::Get, NetMix::Hol]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

/// Where a network's clients connect, and what is read about it.
pub struct Target {
    pub net: Net,
    pub endpoint: SocketAddr,
    pub servers: Vec<SocketAddr>,
    pub pids: Vec<u32>,
    /// The line, for the delayed network.
    pub line: Option<Arc<Shared>>,
}

/// The keys both mixes read, and their values.
pub struct Keys {
    pub get: Keyspace,
    pub hol: Vec<String>,
    pub small: Vec<u8>,
    pub big: Vec<u8>,
}

/// One timed run of one peer.
#[derive(Debug, Clone)]
pub struct Run {
    pub net: Net,
    pub mix: NetMix,
    pub concurrency: usize,
    pub current_thread: bool,
    pub peer: String,
    pub repeat: usize,
    pub ops: u64,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The 100-byte gets and the big ones (hol mix; in the get mix every get is small).
    pub small_p50_us: f64,
    pub small_p99_us: f64,
    pub big_ops: u64,
    pub big_p50_us: f64,
    pub big_p99_us: f64,
    /// CPU per op, µs: this process less the line's thread; memcached; the line's thread.
    pub client_cpu_us: f64,
    pub server_cpu_us: f64,
    pub line_cpu_us: f64,
    /// Client sockets: loopback, the most socket fds held (less those before the client);
    /// through the line, the most client connections the line held at once.
    pub sockets: usize,
    /// How late the line released chunks during the timed phase (0 on loopback).
    pub late_p50_us: f64,
    pub late_p99_us: f64,
    pub misses: u64,
    pub errors: u64,
    pub capped: bool,
}

/// Warm-up of every run: at least this many operations, at most one second.
const WARMUP_OPS: u64 = 2000;

/// Operations of a timed run: `--ops`, and through the line at most C × S / RTT.
fn ops_for(o: &NetOptions, net: Net, c: usize) -> u64 {
    match net {
        Net::Loopback => o.ops,
        Net::Delay => o
            .ops
            .min((c as f64 * o.delay_secs / o.rtt.as_secs_f64()).ceil() as u64)
            .max(1),
    }
}

/// Builds the peer, warms it up, measures one timed phase, then drops it.
#[allow(clippy::too_many_arguments)]
pub async fn run_one(
    bench: &Bench,
    o: &NetOptions,
    kind: &PeerKind,
    mix: NetMix,
    net: Net,
    c: usize,
    repeat: usize,
    seed: u64,
    current_thread: bool,
) -> Result<Run, String> {
    // Let the previous peer's connections close before the baseline is taken.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = bench.target(net);
    let phase = Phase {
        mix,
        c,
        ops: ops_for(o, net, c),
        cap: o.cap,
        seed,
    };
    let mut run = match kind {
        PeerKind::Mcad {
            connections_per_node,
        } => {
            let peer = peers::Mcad::build(t.endpoint, *connections_per_node).await?;
            measure(bench, t, Arc::new(peer), phase).await
        }
        PeerKind::AsyncMemcached => {
            let peer: peers::AsyncMemcached = Pools::new(&t.servers, c)?;
            measure(bench, t, Arc::new(peer), phase).await
        }
        PeerKind::MemcacheAsync => {
            let peer: peers::MemcacheAsync = Pools::new(&t.servers, c)?;
            measure(bench, t, Arc::new(peer), phase).await
        }
        PeerKind::MemcacheExp => {
            let peer = peers::MemcacheExp::build(&t.servers, c).await?;
            measure(bench, t, Arc::new(peer), phase).await
        }
        other => return Err(format!("{} does not run in this mode", other.name())),
    };
    run.peer = kind.name();
    run.repeat = repeat;
    run.current_thread = current_thread;
    Ok(run)
}

#[derive(Debug, Clone, Copy)]
struct Phase {
    mix: NetMix,
    c: usize,
    ops: u64,
    cap: Duration,
    seed: u64,
}

/// One caller's latencies (ns) and faults.
struct Worker {
    small: Vec<u64>,
    big: Vec<u64>,
    misses: u64,
    errors: u64,
}

/// C closed-loop callers, each with one get in flight, until `ops` are issued or `cap` passes.
async fn closed_loop<P: SizedGet>(
    peer: Arc<P>,
    keys: Arc<Keys>,
    p: Phase,
) -> (Vec<Worker>, Duration) {
    let share = ((p.ops as usize / p.c) * 2 + 64).min(1 << 22);
    let workers: Vec<Worker> = (0..p.c)
        .map(|_| Worker {
            small: Vec::with_capacity(share),
            big: Vec::with_capacity(share / 50 + 64),
            misses: 0,
            errors: 0,
        })
        .collect();
    let start = Instant::now();
    let deadline = start + p.cap;
    let issued = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(i, mut w)| {
            let (peer, keys, issued) = (peer.clone(), keys.clone(), issued.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(p.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
                let mut now = Instant::now();
                while now < deadline && issued.fetch_add(1, Ordering::Relaxed) < p.ops {
                    let k = rng.below(KEY_COUNT);
                    let (key, big) = match p.mix {
                        NetMix::Get => (&keys.get.keys[k], false),
                        NetMix::Hol => (&keys.hol[k], k.is_multiple_of(BIG_EVERY)),
                    };
                    let want = if big { BIG_LEN } else { VALUE_LEN };
                    match peer.get_len(key).await {
                        Ok(Some(len)) if len == want => {}
                        Ok(None) => w.misses += 1,
                        _ => w.errors += 1,
                    }
                    let end = Instant::now();
                    let nanos = end.duration_since(now).as_nanos() as u64;
                    if big {
                        w.big.push(nanos);
                    } else {
                        w.small.push(nanos);
                    }
                    now = end;
                }
                w
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("caller task panicked"));
    }
    (out, start.elapsed())
}

fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Warm-up, then the timed phase with every reading around it.
async fn measure<P: SizedGet>(bench: &Bench, t: &Target, peer: Arc<P>, p: Phase) -> Run {
    let warmup = Phase {
        ops: WARMUP_OPS.max(4 * p.c as u64),
        cap: Duration::from_secs(1),
        seed: p.seed ^ 0xffff,
        ..p
    };
    let base_sockets = sys::socket_count();
    closed_loop(peer.clone(), bench.keys.clone(), warmup).await;
    let line = &bench.line.shared;
    let sampler = sys::SocketSampler::start();
    line.reset_peak();
    line.take_lateness();
    let (cpu0, srv0, line0) = (
        sys::self_cpu_micros(),
        sys::procs_cpu_micros(&t.pids),
        line.cpu_ns(),
    );
    let (workers, elapsed) = closed_loop(peer.clone(), bench.keys.clone(), p).await;
    let (cpu1, srv1, line1) = (
        sys::self_cpu_micros(),
        sys::procs_cpu_micros(&t.pids),
        line.cpu_ns(),
    );
    let late = line.take_lateness();
    let sockets = match t.line {
        Some(_) => line.peak.load(Ordering::Relaxed),
        None => sampler.finish().saturating_sub(base_sockets),
    };
    drop(peer);
    let (mut all, mut small, mut big) = (new_histogram(), new_histogram(), new_histogram());
    let (mut misses, mut errors) = (0, 0);
    for w in &workers {
        for &n in &w.small {
            small.saturating_record(n.max(100));
            all.saturating_record(n.max(100));
        }
        for &n in &w.big {
            big.saturating_record(n.max(100));
            all.saturating_record(n.max(100));
        }
        misses += w.misses;
        errors += w.errors;
    }
    let ops = all.len();
    let per_op = |micros: f64| micros / ops.max(1) as f64;
    let line_us = line1.saturating_sub(line0) as f64 / 1000.0;
    let (late_p50_us, late_p99_us) = match t.line {
        Some(_) => (quantile_us(&late, 0.5), quantile_us(&late, 0.99)),
        None => (0.0, 0.0),
    };
    Run {
        net: t.net,
        mix: p.mix,
        concurrency: p.c,
        current_thread: false,
        peer: String::new(),
        repeat: 0,
        ops,
        elapsed_s: elapsed.as_secs_f64(),
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: quantile_us(&all, 0.5),
        p99_us: quantile_us(&all, 0.99),
        p999_us: quantile_us(&all, 0.999),
        small_p50_us: quantile_us(&small, 0.5),
        small_p99_us: quantile_us(&small, 0.99),
        big_ops: big.len(),
        big_p50_us: quantile_us(&big, 0.5),
        big_p99_us: quantile_us(&big, 0.99),
        client_cpu_us: per_op((cpu1.saturating_sub(cpu0) as f64 - line_us).max(0.0)),
        server_cpu_us: per_op(srv1.saturating_sub(srv0) as f64),
        line_cpu_us: per_op(line_us),
        sockets,
        late_p50_us,
        late_p99_us,
        misses,
        errors,
        capped: ops < p.ops,
    }
}

// ---------------------------------------------------------------------------------------------
// Ping.

/// Round trips on one connection, and connect + first round trip on fresh ones.
#[derive(Debug, Clone)]
pub struct Ping {
    pub when: &'static str,
    pub net: Net,
    /// Sorted, µs.
    pub rtt_us: Vec<f64>,
    /// Connect, `version`, reply, on a fresh connection; sorted, µs.
    pub connect_us: Vec<f64>,
}

impl Ping {
    pub fn at(values: &[f64], q: f64) -> f64 {
        if values.is_empty() {
            return 0.0;
        }
        values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1]
    }
}

fn version_round_trip(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    stream.write_all(b"version\r\n")?;
    let mut got = 0;
    while got < 2 || &buf[got - 2..got] != b"\r\n" {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

fn ping_one(addr: SocketAddr, pings: usize) -> std::io::Result<(Vec<f64>, Vec<f64>)> {
    let mut buf = [0u8; 256];
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    version_round_trip(&mut stream, &mut buf)?;
    let mut rtt = Vec::with_capacity(pings);
    for _ in 0..pings {
        let start = Instant::now();
        version_round_trip(&mut stream, &mut buf)?;
        rtt.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let mut connect = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let mut fresh = TcpStream::connect(addr)?;
        fresh.set_nodelay(true)?;
        version_round_trip(&mut fresh, &mut buf)?;
        connect.push(start.elapsed().as_secs_f64() * 1e6);
    }
    rtt.sort_by(f64::total_cmp);
    connect.sort_by(f64::total_cmp);
    Ok((rtt, connect))
}

/// The ping probe on both networks (node 0).
pub async fn ping(bench: &Bench, pings: usize, when: &'static str) -> Result<Vec<Ping>, String> {
    let mut out = Vec::new();
    for net in [Net::Loopback, Net::Delay] {
        let addr = bench.target(net).servers[0];
        let (rtt_us, connect_us) = tokio::task::spawn_blocking(move || ping_one(addr, pings))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("ping {}: {e}", net.name()))?;
        out.push(Ping {
            when,
            net,
            rtt_us,
            connect_us,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Cold start.

/// Cold-start samples of one network.
pub struct Cold {
    pub net: Net,
    pub tls: bool,
    pub nodes: usize,
    /// µs per sample.
    pub phases: crate::coldstart::Phases,
    /// async-memcached: connect to the key's node and one get (no discovery; plaintext only).
    pub peer_us: Vec<f64>,
    /// Through the line, per sample up to the first get's answer: connections accepted and
    /// turns, to the endpoint and to the nodes.
    pub endpoint_connects: Vec<u64>,
    pub endpoint_turns: Vec<u64>,
    pub node_connects: Vec<u64>,
    pub node_turns: Vec<u64>,
    /// The line's events of every sample, relative to the call of `build()`, ns.
    pub timelines: Vec<Vec<Event>>,
    /// The line's nominal round-trip time, µs.
    pub rtt_us: f64,
}

/// `build()` → first `get`, `samples` times, with clients from `builder` (plaintext or TLS);
/// through the line, with what it counted. The keys read must be on the nodes.
impl Cold {
    /// The network, and TLS when it was.
    pub fn label(&self) -> String {
        if self.tls {
            format!("{}, TLS", self.net.name())
        } else {
            self.net.name().to_string()
        }
    }
}

pub async fn cold_start(
    t: &Target,
    keys: &Keys,
    samples: usize,
    tls: bool,
    builder: impl Fn() -> memcached_autodiscovery::ClientBuilder,
) -> Result<Cold, String> {
    let net = t.net;
    let n = t.servers.len();
    let mut cold = Cold {
        net,
        tls,
        nodes: n,
        phases: Default::default(),
        peer_us: Vec::new(),
        endpoint_connects: Vec::new(),
        endpoint_turns: Vec::new(),
        node_connects: Vec::new(),
        node_turns: Vec::new(),
        timelines: Vec::new(),
        rtt_us: t
            .line
            .as_ref()
            .map_or(0.0, |l| 2.0 * l.one_way_ns as f64 / 1000.0),
    };
    let idle = Arc::new(Shared::idle(n + 1));
    let line = t.line.as_ref().unwrap_or(&idle);
    let sum = |v: &[(u64, u64)]| -> [u64; 4] {
        let nodes = &v[..n];
        [
            v[n].0,
            v[n].1,
            nodes.iter().map(|x| x.0).sum(),
            nodes.iter().map(|x| x.1).sum(),
        ]
    };
    for i in 0..samples {
        let key = &keys.get.keys[(i * 7919) % KEY_COUNT];
        tokio::time::sleep(Duration::from_millis(50)).await;
        line.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        line.logging.store(true, Ordering::SeqCst);
        let before = sum(&line.totals());
        let start_ns = now_ns();
        let start = Instant::now();
        let (client, built, answered) =
            crate::coldstart::sample(builder(), &t.endpoint.to_string(), key).await?;
        let answered_ns = now_ns();
        let after = sum(&line.totals());
        line.logging.store(false, Ordering::SeqCst);
        drop(client);
        let mut events: Vec<Event> =
            std::mem::take(&mut *line.log.lock().unwrap_or_else(|p| p.into_inner()));
        events.retain(|e| e.at_ns <= answered_ns);
        for e in &mut events {
            e.at_ns = e.at_ns.saturating_sub(start_ns);
        }
        cold.timelines.push(events);
        cold.phases.push(start, built, answered);
        cold.endpoint_connects.push(after[0] - before[0]);
        cold.endpoint_turns.push(after[1] - before[1]);
        cold.node_connects.push(after[2] - before[2]);
        cold.node_turns.push(after[3] - before[3]);

        if tls {
            continue;
        }
        // The reference starts from the same idle pause as the sample above: on these machines
        // the first syscalls after a pause are slower, and a sample taken right after another
        // would not pay for it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let server = t.servers[crate::load::route(key, n)];
        let start = Instant::now();
        let mut peer = async_memcached::Client::new(format!("tcp://{server}"))
            .await
            .map_err(|e| format!("cold start (async-memcached): {e}"))?;
        let value = async_memcached::AsciiProtocol::get(&mut peer, key)
            .await
            .map_err(|e| format!("cold start (async-memcached): {e}"))?;
        if value.is_none() {
            return Err("cold start: async-memcached's first get missed".into());
        }
        cold.peer_us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(cold)
}

/// The name of a line target in a timeline.
pub fn target_name(target: usize, nodes: usize) -> String {
    if target == nodes {
        "endpoint".into()
    } else {
        format!("node {}", target + 1)
    }
}

/// What an event says, for a timeline.
pub fn event_text(e: &Event, nodes: usize) -> String {
    let who = target_name(e.target, nodes);
    match e.kind {
        EventKind::Accept => format!("{who}: connection {} accepted", e.conn),
        EventKind::Up(n) => format!("{who}: {n} B from the client (conn {})", e.conn),
        EventKind::Down(n) => format!("{who}: {n} B from the server (conn {})", e.conn),
    }
}
