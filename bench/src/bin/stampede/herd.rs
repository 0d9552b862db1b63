//! One herd: every caller of every client asks for its key at the same moment, with one
//! strategy, and the loads, answers and latencies that came of it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memcached_autodiscovery::Client;
use tokio::sync::watch;

/// How a caller gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `get`; on a miss the loader, then `set` with the TTL.
    Naive,
    /// `Client::get_or_load`.
    GetOrLoad,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::Naive, Strategy::GetOrLoad];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::GetOrLoad => "get_or_load",
        }
    }
}

/// The state of the keys when a herd starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Right after `flush_all`.
    Cold,
    /// After the values of the cold round have expired.
    Expired,
    /// Right after the expired round: every key is stored.
    Warm,
}

impl Round {
    pub const ALL: [Round; 3] = [Round::Cold, Round::Expired, Round::Warm];

    pub fn name(self) -> &'static str {
        match self {
            Round::Cold => "cold",
            Round::Expired => "expired",
            Round::Warm => "warm",
        }
    }
}

/// The clients and the shape of the herd.
pub struct Herd<'a> {
    pub clients: &'a [Client],
    pub callers_per_client: usize,
    pub keys: &'a [String],
    pub loader: Duration,
    pub ttl: Duration,
}

/// What one herd did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Loader runs, per key.
    pub loads: Vec<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Callers answered with a value that is not their key's.
    pub wrong: u64,
    /// Per caller, from its call to its answer.
    pub latencies: Vec<Duration>,
    /// From the start signal to the last answer.
    pub wall: Duration,
}

/// The value the loader returns for `key`.
pub fn value_of(key: &str) -> Bytes {
    Bytes::from(format!("loaded:{key}"))
}

/// A caller that has no answer after this long counts as an error.
const CALLER_LIMIT: Duration = Duration::from_secs(60);

type Answer = (usize, Result<Bytes, String>, Duration, Instant);

/// Runs one herd: every caller waits at the start line, then all ask at once.
pub async fn run(herd: &Herd<'_>, strategy: Strategy) -> Outcome {
    let loads: Arc<Vec<AtomicU64>> =
        Arc::new(herd.keys.iter().map(|_| AtomicU64::new(0)).collect());
    let ready = Arc::new(AtomicUsize::new(0));
    let (go, start_line) = watch::channel(false);
    let mut tasks = Vec::new();
    for (c, client) in herd.clients.iter().enumerate() {
        for j in 0..herd.callers_per_client {
            let index = (c * herd.callers_per_client + j) % herd.keys.len();
            let key = herd.keys[index].clone();
            let (client, loads, ready) = (client.clone(), loads.clone(), ready.clone());
            let mut start_line = start_line.clone();
            let (ttl, delay) = (herd.ttl, herd.loader);
            tasks.push(tokio::spawn(async move {
                ready.fetch_add(1, Ordering::SeqCst);
                let _ = start_line.wait_for(|go| *go).await;
                let start = Instant::now();
                let load = || load(loads, index, key.clone(), delay);
                let call = call(&client, strategy, &key, ttl, load);
                let result = match tokio::time::timeout(CALLER_LIMIT, call).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer in {CALLER_LIMIT:?}")),
                };
                let end = Instant::now();
                (index, result, end - start, end) as Answer
            }));
        }
    }
    while ready.load(Ordering::SeqCst) < tasks.len() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let the last callers to arrive park on the start line.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    go.send_replace(true);

    let mut outcome = Outcome {
        loads: Vec::new(),
        errors: 0,
        first_error: None,
        wrong: 0,
        latencies: Vec::with_capacity(tasks.len()),
        wall: Duration::ZERO,
    };
    let mut last = started;
    for task in tasks {
        let (index, result, latency, end) = match task.await {
            Ok(answer) => answer,
            Err(e) => (
                0,
                Err(format!("caller task failed: {e}")),
                Duration::ZERO,
                started,
            ),
        };
        match result {
            Ok(value) if value == value_of(&herd.keys[index]) => {}
            Ok(_) => outcome.wrong += 1,
            Err(e) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(e);
            }
        }
        outcome.latencies.push(latency);
        last = last.max(end);
    }
    outcome.wall = last - started;
    outcome.loads = loads.iter().map(|n| n.load(Ordering::SeqCst)).collect();
    outcome
}

/// The loader: counts itself, takes `delay`, and names the key.
async fn load(
    loads: Arc<Vec<AtomicU64>>,
    index: usize,
    key: String,
    delay: Duration,
) -> Result<Bytes, std::io::Error> {
    loads[index].fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    Ok(value_of(&key))
}

/// One caller's call.
async fn call<F, Fut>(
    client: &Client,
    strategy: Strategy,
    key: &str,
    ttl: Duration,
    load: F,
) -> Result<Bytes, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, std::io::Error>>,
{
    match strategy {
        Strategy::Naive => match client.get(key).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => {
                let value = load().await.map_err(|e| e.to_string())?;
                client
                    .set(key, &value, ttl)
                    .await
                    .map_err(|e| format!("set: {e}"))?;
                Ok(value)
            }
            Err(e) => Err(format!("get: {e}")),
        },
        Strategy::GetOrLoad => client
            .get_or_load(key, ttl, load)
            .await
            .map_err(|e| format!("get_or_load: {e}")),
    }
}
