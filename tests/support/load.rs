//! A checked load: many callers doing set / get / get_many on keys of their own, every value
//! naming its key and a generation, so that a value meant for another key, or an acknowledged
//! write that reads back older, is counted rather than missed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, Error};

const KEYS_PER_CALLER: usize = 4;

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
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Default)]
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
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let tasks = (0..callers)
            .map(|caller| {
                let client = client.clone();
                let stop = stop.clone();
                let shared = shared.clone();
                let keys: Vec<String> = (0..KEYS_PER_CALLER)
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

    /// Stops the callers, waits for them, and reports.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a load task panicked");
        }
        let s = &self.shared;
        let now_us = self.started.elapsed().as_micros() as u64;
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
        shared
            .max_latency_us
            .fetch_max(latency.as_micros() as u64, Ordering::Relaxed);
        shared.ops.fetch_add(1, Ordering::Relaxed);
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
                *shared.errors.lock().unwrap().entry(kind(&e)).or_default() += 1;
                let now = started.elapsed().as_micros() as u64;
                shared.last_error_us.fetch_max(now + 1, Ordering::Relaxed);
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
                }
            }
            _ => {
                eprintln!(
                    "wrong value for {key}: {:?}",
                    String::from_utf8_lossy(bytes)
                );
                shared.wrong.fetch_add(1, Ordering::Relaxed);
            }
        },
        (None, Some(_)) => {
            shared.misses.fetch_add(1, Ordering::Relaxed);
        }
        (None, None) => {}
    }
}
