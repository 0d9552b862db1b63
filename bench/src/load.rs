//! The closed-loop load: C workers, each with one request in flight, draw operations from a
//! shared counter until the fixed count is reached or the time cap passes. Each operation is
//! timed from issue to completion into the worker's own histogram.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Keys preloaded on every node: `pb:00000` ... with values of [`VALUE_LEN`] bytes.
pub const KEY_COUNT: usize = 10_000;
/// Bytes per value.
pub const VALUE_LEN: usize = 100;
/// Keys per multi-get in the `mget10` mix.
pub const MGET_KEYS: usize = 10;

/// The operation mix of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// 100 % get of a uniformly random key.
    Get,
    /// 90 % get, 10 % set of a random key.
    Get90,
    /// One multi-get of 10 distinct random keys per operation.
    Mget10,
}

impl Mix {
    pub const ALL: [Mix; 3] = [Mix::Get, Mix::Get90, Mix::Mget10];

    pub fn name(self) -> &'static str {
        match self {
            Mix::Get => "get",
            Mix::Get90 => "get90",
            Mix::Mget10 => "mget10",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        Mix::ALL.into_iter().find(|m| m.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mix::Get => "100% get",
            Mix::Get90 => "90% get / 10% set",
            Mix::Mget10 => "10-key multi-get (1 op = one 10-key call)",
        }
    }
}

/// The key names and the value every run uses.
pub struct Keyspace {
    pub keys: Vec<String>,
    pub value: Vec<u8>,
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace {
            keys: (0..KEY_COUNT).map(|i| format!("pb:{i:05}")).collect(),
            value: (0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect(),
        }
    }
}

/// A small, fast generator (SplitMix64), one per worker.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// The operation a worker performs next.
pub enum Op<'a> {
    Get(&'a str),
    Set(&'a str),
    Mget([&'a str; MGET_KEYS]),
}

/// Draws the next operation of `mix`.
pub fn next_op<'a>(mix: Mix, rng: &mut Rng, keys: &'a Keyspace) -> Op<'a> {
    let n = keys.keys.len();
    match mix {
        Mix::Get => Op::Get(&keys.keys[rng.below(n)]),
        Mix::Get90 => {
            let key = &keys.keys[rng.below(n)];
            if rng.below(10) == 0 {
                Op::Set(key)
            } else {
                Op::Get(key)
            }
        }
        Mix::Mget10 => {
            let mut picked = [0usize; MGET_KEYS];
            let mut count = 0;
            while count < MGET_KEYS {
                let i = rng.below(n);
                if !picked[..count].contains(&i) {
                    picked[count] = i;
                    count += 1;
                }
            }
            Op::Mget(picked.map(|i| keys.keys[i].as_str()))
        }
    }
}

/// What one call returned, as the harness counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Keys asked for and not found (every key is preloaded, so any miss is a fault).
    pub misses: u64,
    /// Calls that failed, or returned a value of the wrong length.
    pub errors: u64,
}

impl Outcome {
    pub const OK: Outcome = Outcome {
        misses: 0,
        errors: 0,
    };
    pub const ERROR: Outcome = Outcome {
        misses: 0,
        errors: 1,
    };

    pub fn hit(found: Option<usize>) -> Outcome {
        match found {
            Some(VALUE_LEN) => Outcome::OK,
            Some(_) => Outcome::ERROR,
            None => Outcome {
                misses: 1,
                errors: 0,
            },
        }
    }

    pub fn hits(found: usize) -> Outcome {
        Outcome {
            misses: MGET_KEYS.saturating_sub(found) as u64,
            errors: 0,
        }
    }
}

/// A client driven from async tasks. Each method performs one call and reports its outcome.
pub trait AsyncPeer: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Outcome> + Send;
    fn set(&self, key: &str, value: &[u8]) -> impl Future<Output = Outcome> + Send;
    fn mget(&self, keys: &[&str]) -> impl Future<Output = Outcome> + Send;
}

/// A blocking client driven from OS threads.
pub trait SyncPeer: Send + Sync + 'static {
    fn get(&self, key: &str) -> Outcome;
    fn set(&self, key: &str, value: &[u8]) -> Outcome;
    fn mget(&self, keys: &[&str]) -> Outcome;
}

/// One phase of load: how many operations at most, and for how long at most.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub mix: Mix,
    pub concurrency: usize,
    pub ops: u64,
    pub cap: Duration,
    pub seed: u64,
}

/// What a phase measured.
pub struct PhaseResult {
    pub ops: u64,
    pub elapsed: Duration,
    pub misses: u64,
    pub errors: u64,
    /// Latency of each operation in nanoseconds.
    pub histogram: Histogram<u64>,
    /// Whether the time cap ended the phase before the operation count was reached.
    pub capped: bool,
}

/// A fresh latency histogram: 100 ns to 60 s at 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(100, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// One worker's tally. Latencies are kept as a plain list during the phase (a sequential
/// write per op) and go into the histogram afterwards, outside the measured CPU time: recording
/// straight into 256 large histograms costs a cache miss per operation.
struct Worker {
    latencies: Vec<u64>,
    outcome: Outcome,
}

impl Worker {
    fn new(capacity: usize) -> Worker {
        Worker {
            latencies: Vec::with_capacity(capacity),
            outcome: Outcome::OK,
        }
    }
}

/// Room for a fair share of the operations, with slack for uneven workers.
fn share(phase: &Phase) -> usize {
    ((phase.ops as usize / phase.concurrency.max(1)) * 2 + 64).min(1 << 22)
}

struct Shared {
    issued: AtomicU64,
    limit: u64,
    deadline: Instant,
}

impl Shared {
    /// Claims the next operation; false once the count or the time is used up.
    fn claim(&self, now: Instant) -> bool {
        now < self.deadline && self.issued.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

fn record(worker: &mut Worker, start: Instant, end: Instant, outcome: Outcome) {
    worker
        .latencies
        .push(end.duration_since(start).as_nanos() as u64);
    worker.outcome.misses += outcome.misses;
    worker.outcome.errors += outcome.errors;
}

/// A finished phase before its latencies are put into a histogram.
pub struct Tally {
    workers: Vec<Worker>,
    elapsed: Duration,
    phase: Phase,
    done: Option<PhaseResult>,
}

impl Tally {
    /// A phase whose result was built as it ran (the raw probe's).
    pub fn done(result: PhaseResult, phase: Phase) -> Tally {
        Tally {
            workers: Vec::new(),
            elapsed: result.elapsed,
            phase,
            done: Some(result),
        }
    }

    /// Builds the histogram and the totals.
    pub fn merge(self) -> PhaseResult {
        match self.done {
            Some(result) => result,
            None => merge(self.workers, self.elapsed, &self.phase),
        }
    }
}

fn merge(workers: Vec<Worker>, elapsed: Duration, phase: &Phase) -> PhaseResult {
    let mut histogram = new_histogram();
    let (mut ops, mut misses, mut errors) = (0, 0, 0);
    for w in workers {
        for &nanos in &w.latencies {
            histogram.saturating_record(nanos.max(100));
        }
        ops += w.latencies.len() as u64;
        misses += w.outcome.misses;
        errors += w.outcome.errors;
    }
    PhaseResult {
        ops,
        elapsed,
        misses,
        errors,
        histogram,
        capped: ops < phase.ops,
    }
}

/// Runs one phase against an async peer: `concurrency` tokio tasks.
pub async fn run_async<P: AsyncPeer>(peer: Arc<P>, keys: Arc<Keyspace>, phase: Phase) -> Tally {
    // Latency lists are allocated before the clock starts.
    let lists: Vec<Worker> = (0..phase.concurrency)
        .map(|_| Worker::new(share(&phase)))
        .collect();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        limit: phase.ops,
        deadline: start + phase.cap,
    });
    let tasks: Vec<_> = lists
        .into_iter()
        .enumerate()
        .map(|(i, mut worker)| {
            let (peer, keys, shared) = (peer.clone(), keys.clone(), shared.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(phase.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
                let mut now = Instant::now();
                while shared.claim(now) {
                    let outcome = match next_op(phase.mix, &mut rng, &keys) {
                        Op::Get(key) => peer.get(key).await,
                        Op::Set(key) => peer.set(key, &keys.value).await,
                        Op::Mget(batch) => peer.mget(&batch).await,
                    };
                    let end = Instant::now();
                    record(&mut worker, now, end, outcome);
                    now = end;
                }
                worker
            })
        })
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    for task in tasks {
        workers.push(task.await.expect("worker task panicked"));
    }
    Tally {
        elapsed: start.elapsed(),
        workers,
        phase,
        done: None,
    }
}

/// Runs one phase against a blocking peer: `concurrency` OS threads.
pub fn run_sync<P: SyncPeer>(peer: Arc<P>, keys: Arc<Keyspace>, phase: Phase) -> Tally {
    let lists: Vec<Worker> = (0..phase.concurrency)
        .map(|_| Worker::new(share(&phase)))
        .collect();
    let start = Instant::now();
    let shared = Shared {
        issued: AtomicU64::new(0),
        limit: phase.ops,
        deadline: start + phase.cap,
    };
    let workers = std::thread::scope(|scope| {
        let handles: Vec<_> = lists
            .into_iter()
            .enumerate()
            .map(|(i, mut worker)| {
                let (peer, keys, shared) = (&peer, &keys, &shared);
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(scope, move || {
                        let mut rng =
                            Rng::new(phase.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
                        let mut now = Instant::now();
                        while shared.claim(now) {
                            let outcome = match next_op(phase.mix, &mut rng, keys) {
                                Op::Get(key) => peer.get(key),
                                Op::Set(key) => peer.set(key, &keys.value),
                                Op::Mget(batch) => peer.mget(&batch),
                            };
                            let end = Instant::now();
                            record(&mut worker, now, end, outcome);
                            now = end;
                        }
                        worker
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect::<Vec<_>>()
    });
    Tally {
        elapsed: start.elapsed(),
        workers,
        phase,
        done: None,
    }
}

/// FNV-1a, 64 bits: the harness's key hash for peers that have no routing of their own.
pub fn fnv1a(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Jump consistent hash: the bucket in `0..buckets` for `key`.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

/// The harness's routing: FNV-1a then jump hash.
pub fn route(key: &str, servers: usize) -> usize {
    jump_hash(fnv1a(key.as_bytes()), servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_spreads_keys() {
        let keys = Keyspace::new();
        let mut counts = [0usize; 3];
        for k in &keys.keys {
            counts[route(k, 3)] += 1;
        }
        for c in counts {
            assert!(c > 3000 && c < 3700, "{counts:?}");
        }
    }

    #[test]
    fn mget_keys_are_distinct() {
        let keys = Keyspace::new();
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let Op::Mget(batch) = next_op(Mix::Mget10, &mut rng, &keys) else {
                panic!("not a multi-get");
            };
            for (i, k) in batch.iter().enumerate() {
                assert!(!batch[..i].contains(k));
            }
        }
    }
}
