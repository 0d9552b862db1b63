//! A checked load: many callers doing set / get / get_many on keys of their own, every value
//! naming its key and a generation, so that a value meant for another key, or an acknowledged
//! write that reads back older, is counted rather than missed.
//!
//! Besides the totals of [`Report`], the load keeps numbered windows (see [`Load::next_window`]):
//! a test that applies faults in phases gets, per phase, the operations, a latency histogram
//! (p50, p99, max), errors by kind, wrong values, stale reads, calls longer than a limit, and
//! when the first and last error happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, Error};

const KEYS_PER_CALLER: usize = 4;
/// How many windows a load can be split into; the last one takes everything after it.
pub const WINDOWS: usize = 32;
/// Error kinds, in the order the windows count them.
const KINDS: [&str; 7] = [
    "timeout",
    "io",
    "node_down",
    "protocol",
    "server",
    "no_nodes",
    "other",
];
/// Latency histogram: 16 exact buckets below 16 µs, then 16 per power of two up to 2^40 µs.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB + (40 - SUB_BITS as usize) * SUB;

/// What a load saw.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub ops: u64,
    pub errors: BTreeMap<&'static str, u64>,
    /// A value that names another key, or is not a value this harness wrote.
    pub wrong_values: u64,
    /// A read after an acknowledged write that found an older generation (a miss is counted
    /// in `misses_after_write`: a cache may lose data when a node dies).
    pub stale_reads: u64,
    pub misses_after_write: u64,
    pub max_latency: Duration,
    /// Longest stretch without a single successful operation, after the first one.
    pub longest_outage: Duration,
    /// When the last error happened, since the load started.
    pub last_error: Option<Duration>,
    /// The windows used, in order (one when [`Load::next_window`] was never called).
    pub windows: Vec<WindowReport>,
}

/// What a load saw in one window (see [`Load::next_window`]). An operation counts in the window
/// current when it completes.
#[derive(Debug, Default, Clone)]
pub struct WindowReport {
    /// When the window began and ended, since the load started.
    pub start: Duration,
    pub end: Duration,
    pub ops: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub wrong_values: u64,
    pub stale_reads: u64,
    pub misses_after_write: u64,
    /// Latency percentiles, as the upper bound of their histogram bucket (within 1/16).
    pub p50: Duration,
    pub p99: Duration,
    pub max_latency: Duration,
    /// Calls that took longer than the limit given to [`Load::set_call_limit`].
    pub over_limit: u64,
    /// When the first and the last error of the window happened, since the load started.
    pub first_error: Option<Duration>,
    pub last_error: Option<Duration>,
}

impl WindowReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn length(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.length().as_secs_f64().max(1e-3)
    }
}

struct Window {
    start_us: AtomicU64,
    ops: AtomicU64,
    errors: [AtomicU64; KINDS.len()],
    wrong: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    over_limit: AtomicU64,
    max_latency_us: AtomicU64,
    /// Microseconds since the load started, plus one (0: none).
    first_error_us: AtomicU64,
    last_error_us: AtomicU64,
    histogram: Vec<AtomicU64>,
}

impl Window {
    fn new() -> Window {
        Window {
            start_us: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            errors: Default::default(),
            wrong: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            over_limit: AtomicU64::new(0),
            max_latency_us: AtomicU64::new(0),
            first_error_us: AtomicU64::new(u64::MAX),
            last_error_us: AtomicU64::new(0),
            histogram: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn report(&self, end_us: u64) -> WindowReport {
        let errors = KINDS
            .iter()
            .zip(&self.errors)
            .map(|(kind, n)| (*kind, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let counts: Vec<u64> = self
            .histogram
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let max_us = self.max_latency_us.load(Ordering::Relaxed);
        let since = |us: u64| Duration::from_micros(us - 1);
        WindowReport {
            start: Duration::from_micros(self.start_us.load(Ordering::Relaxed)),
            end: Duration::from_micros(end_us),
            ops: self.ops.load(Ordering::Relaxed),
            errors,
            wrong_values: self.wrong.load(Ordering::Relaxed),
            stale_reads: self.stale.load(Ordering::Relaxed),
            misses_after_write: self.misses.load(Ordering::Relaxed),
            p50: Duration::from_micros(percentile(&counts, 0.50).min(max_us)),
            p99: Duration::from_micros(percentile(&counts, 0.99).min(max_us)),
            max_latency: Duration::from_micros(max_us),
            over_limit: self.over_limit.load(Ordering::Relaxed),
            first_error: match self.first_error_us.load(Ordering::Relaxed) {
                u64::MAX => None,
                us => Some(since(us)),
            },
            last_error: match self.last_error_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(since(us)),
            },
        }
    }
}

fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = ((us >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    (SUB + (exp - SUB_BITS) as usize * SUB + sub).min(BUCKETS - 1)
}

/// The largest latency (µs) bucket `b` holds.
fn bucket_top(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let exp = ((b - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((b - SUB) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (exp - SUB_BITS)) - 1
}

fn percentile(counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (b, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_top(b);
        }
    }
    bucket_top(counts.len() - 1)
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct Shared {
    ops: AtomicU64,
    wrong: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    max_latency_us: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    last_success_us: AtomicU64,
    longest_outage_us: AtomicU64,
    /// Microseconds since the start of the last error, plus one (0: none).
    last_error_us: AtomicU64,
    windows: Vec<Window>,
    /// The window operations count in now.
    window: AtomicUsize,
    /// Calls longer than this (µs) count as `over_limit`.
    limit_us: AtomicU64,
    /// Over-limit calls described on stderr so far (the first 20 are).
    over_limit_told: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            ops: AtomicU64::new(0),
            wrong: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            max_latency_us: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            last_success_us: AtomicU64::new(0),
            longest_outage_us: AtomicU64::new(0),
            last_error_us: AtomicU64::new(0),
            windows: (0..WINDOWS).map(|_| Window::new()).collect(),
            window: AtomicUsize::new(0),
            limit_us: AtomicU64::new(u64::MAX),
            over_limit_told: AtomicU64::new(0),
        }
    }

    fn window(&self) -> &Window {
        &self.windows[self.window.load(Ordering::Relaxed)]
    }
}

/// The share of each operation, in tenths: the rest of the ten are single gets.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub sets: usize,
    pub multi_gets: usize,
}

impl Mix {
    /// 3 sets, 1 multi-get, 6 gets in ten.
    pub const CHURN: Mix = Mix {
        sets: 3,
        multi_gets: 1,
    };
    /// 1 set, 9 gets in ten: a read-mostly cache.
    pub const READ_MOSTLY: Mix = Mix {
        sets: 1,
        multi_gets: 0,
    };
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Timeout { .. } => "timeout",
        Error::Io { .. } => "io",
        Error::NodeDown { .. } => "node_down",
        Error::Protocol { .. } => "protocol",
        Error::Server { .. } => "server",
        Error::NoNodes => "no_nodes",
        _ => "other",
    }
}

fn value(key: &str, generation: u64) -> String {
    format!(
        "{key}#{generation}#{}",
        "v".repeat((generation % 64) as usize)
    )
}

/// Parses a value this harness wrote: (key, generation).
fn parse(bytes: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split('#');
    let key = parts.next()?;
    let generation = parts.next()?.parse().ok()?;
    let pad = parts.next()?;
    (parts.next().is_none() && pad.len() == (generation % 64) as usize).then_some((key, generation))
}

/// A running load; [`Load::finish`] stops it and returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `callers` tasks on `client`. Keys are prefixed with `tag` so loads never share keys.
    pub fn start(client: &Client, callers: usize, tag: &str) -> Load {
        Load::start_mix(client, callers, tag, Mix::CHURN)
    }

    /// As [`Load::start`], with another mix of operations.
    pub fn start_mix(client: &Client, callers: usize, tag: &str, mix: Mix) -> Load {
        Load::start_keys(client, callers, tag, mix, KEYS_PER_CALLER)
    }

    /// As [`Load::start_mix`], each caller on `keys` keys of its own (its multi-gets ask for
    /// all of them).
    pub fn start_keys(client: &Client, callers: usize, tag: &str, mix: Mix, keys: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::new());
        let started = Instant::now();
        let tasks = (0..callers)
            .map(|caller| {
                let client = client.clone();
                let stop = stop.clone();
                let shared = shared.clone();
                let keys: Vec<String> = (0..keys.max(1))
                    .map(|k| format!("{tag}-c{caller}-k{k}"))
                    .collect();
                tokio::spawn(async move { run(client, keys, stop, shared, started, mix).await })
            })
            .collect();
        Load {
            stop,
            shared,
            started,
            tasks,
        }
    }

    /// Time since the load started (the clock of [`Report::last_error`]).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Operations done so far.
    pub fn ops(&self) -> u64 {
        self.shared.ops.load(Ordering::Relaxed)
    }

    /// From now on, calls that take longer than `limit` count as `over_limit` in their window.
    pub fn set_call_limit(&self, limit: Duration) {
        self.shared
            .limit_us
            .store(limit.as_micros() as u64, Ordering::Relaxed);
    }

    /// Closes the current window and opens the next one, returning its index (the first window,
    /// 0, opens with the load). After [`WINDOWS`] - 1 calls the last window stays open.
    pub fn next_window(&self) -> usize {
        let s = &self.shared;
        let next = (s.window.load(Ordering::Relaxed) + 1).min(WINDOWS - 1);
        s.windows[next]
            .start_us
            .store(self.started.elapsed().as_micros() as u64, Ordering::Relaxed);
        s.window.store(next, Ordering::Relaxed);
        next
    }

    /// Stops the callers, waits for them, and reports.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a load task panicked");
        }
        let s = &self.shared;
        let now_us = self.started.elapsed().as_micros() as u64;
        let used = s.window.load(Ordering::Relaxed) + 1;
        let windows = (0..used)
            .map(|i| {
                let end_us = match i + 1 < used {
                    true => s.windows[i + 1].start_us.load(Ordering::Relaxed),
                    false => now_us,
                };
                s.windows[i].report(end_us)
            })
            .collect();
        let tail = now_us.saturating_sub(s.last_success_us.load(Ordering::Relaxed));
        Report {
            ops: s.ops.load(Ordering::Relaxed),
            errors: s.errors.lock().unwrap().clone(),
            wrong_values: s.wrong.load(Ordering::Relaxed),
            stale_reads: s.stale.load(Ordering::Relaxed),
            misses_after_write: s.misses.load(Ordering::Relaxed),
            max_latency: Duration::from_micros(s.max_latency_us.load(Ordering::Relaxed)),
            longest_outage: Duration::from_micros(
                s.longest_outage_us.load(Ordering::Relaxed).max(tail),
            ),
            last_error: match s.last_error_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(Duration::from_micros(us - 1)),
            },
            windows,
        }
    }
}

async fn run(
    client: Client,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    started: Instant,
    mix: Mix,
) {
    // Last acknowledged generation per key, and the next generation to write.
    let mut acked: Vec<Option<u64>> = vec![None; keys.len()];
    let mut next_gen = 1u64;
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let i = round % keys.len();
        let op_started = Instant::now();
        let slot = round % 10;
        let outcome: Result<(), Error> = match slot {
            _ if slot < mix.sets => {
                let generation = next_gen;
                next_gen += 1;
                match client
                    .set(
                        &keys[i],
                        value(&keys[i], generation),
                        Duration::from_secs(300),
                    )
                    .await
                {
                    Ok(()) => {
                        acked[i] = Some(generation);
                        Ok(())
                    }
                    Err(e) => {
                        // The write may or may not have landed: forget what we know of the key.
                        acked[i] = None;
                        Err(e)
                    }
                }
            }
            _ if slot < mix.sets + mix.multi_gets => client.get_many(&keys).await.map(|found| {
                for (k, key) in keys.iter().enumerate() {
                    check(
                        &shared,
                        key,
                        found.get(key.as_bytes()).map(|v| &v[..]),
                        acked[k],
                    );
                }
            }),
            _ => client
                .get(&keys[i])
                .await
                .map(|v| check(&shared, &keys[i], v.as_deref(), acked[i])),
        };
        let latency = op_started.elapsed();
        let latency_us = latency.as_micros() as u64;
        shared
            .max_latency_us
            .fetch_max(latency_us, Ordering::Relaxed);
        shared.ops.fetch_add(1, Ordering::Relaxed);
        let window = shared.window();
        window.ops.fetch_add(1, Ordering::Relaxed);
        window.histogram[bucket(latency_us)].fetch_add(1, Ordering::Relaxed);
        window
            .max_latency_us
            .fetch_max(latency_us, Ordering::Relaxed);
        if latency_us > shared.limit_us.load(Ordering::Relaxed) {
            window.over_limit.fetch_add(1, Ordering::Relaxed);
        }
        if latency_us > shared.limit_us.load(Ordering::Relaxed)
            && shared.over_limit_told.fetch_add(1, Ordering::Relaxed) < 20
        {
            let kind = match &outcome {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("{} ({e})", kind(e)),
            };
            eprintln!(
                "call over the limit: {latency:?}, ended {:?} after the load began (window {}), {kind}",
                started.elapsed(),
                shared.window.load(Ordering::Relaxed)
            );
        }
        match outcome {
            Ok(()) => {
                let now = started.elapsed().as_micros() as u64;
                let last = shared.last_success_us.swap(now, Ordering::Relaxed);
                if last > 0 {
                    shared
                        .longest_outage_us
                        .fetch_max(now.saturating_sub(last), Ordering::Relaxed);
                }
            }
            Err(e) => {
                let kind = kind(&e);
                *shared.errors.lock().unwrap().entry(kind).or_default() += 1;
                let now = started.elapsed().as_micros() as u64;
                shared.last_error_us.fetch_max(now + 1, Ordering::Relaxed);
                let k = KINDS
                    .iter()
                    .position(|&k| k == kind)
                    .unwrap_or(KINDS.len() - 1);
                window.errors[k].fetch_add(1, Ordering::Relaxed);
                window.first_error_us.fetch_min(now + 1, Ordering::Relaxed);
                window.last_error_us.fetch_max(now + 1, Ordering::Relaxed);
                // Back off a little so that a dead node does not turn the load into a spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

fn check(shared: &Shared, key: &str, found: Option<&[u8]>, acked: Option<u64>) {
    match (found, acked) {
        (Some(bytes), _) => match parse(bytes) {
            Some((k, generation)) if k == key => {
                if acked.is_some_and(|a| generation < a) {
                    shared.stale.fetch_add(1, Ordering::Relaxed);
                    shared.window().stale.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                eprintln!(
                    "wrong value for {key}: {:?}",
                    String::from_utf8_lossy(bytes)
                );
                shared.wrong.fetch_add(1, Ordering::Relaxed);
                shared.window().wrong.fetch_add(1, Ordering::Relaxed);
            }
        },
        (None, Some(_)) => {
            shared.misses.fetch_add(1, Ordering::Relaxed);
            shared.window().misses.fetch_add(1, Ordering::Relaxed);
        }
        (None, None) => {}
    }
}
