//! Cold start as in a fresh Lambda environment: a new client, `build()` (discovery from the
//! configuration endpoint), then the first `get` answered (which opens the connection).

use std::fmt::Write as _;
use std::time::Instant;

use async_memcached::AsciiProtocol as _;

use crate::load::route;
use crate::report::Spread;
use crate::Bench;

/// The times of this crate's cold-start samples, in microseconds.
#[derive(Default)]
pub struct Phases {
    /// `Client::builder()...build().await`: discovery.
    pub build_us: Vec<f64>,
    /// The first `get` after `build()`: connect plus one round trip.
    pub first_get_us: Vec<f64>,
    /// Both together.
    pub total_us: Vec<f64>,
}

impl Phases {
    /// Adds one sample: started at `start`, `build()` returned at `built`, the first `get` was
    /// answered at `answered`.
    pub fn push(&mut self, start: Instant, built: Instant, answered: Instant) {
        let us = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1e6;
        self.build_us.push(us(start, built));
        self.first_get_us.push(us(built, answered));
        self.total_us.push(us(start, answered));
    }
}

/// Cold-start samples, in microseconds.
pub struct ColdStart {
    pub samples: usize,
    pub phases: Phases,
    /// Reference: async-memcached `Client::new` to the key's server, then one `get`.
    pub peer_total_us: Vec<f64>,
}

/// One cold start: a client from `builder` built on the configuration endpoint `endpoint`,
/// then its first `get` of `key`, which must find a value. Returns the client (for the caller
/// to drop once it has read what it measures) with when `build()` returned and when the `get`
/// was answered.
pub async fn sample(
    builder: memcached_autodiscovery::ClientBuilder,
    endpoint: &str,
    key: &str,
) -> Result<(memcached_autodiscovery::Client, Instant, Instant), String> {
    let client = builder
        .config_endpoint(endpoint)
        .build()
        .await
        .map_err(|e| format!("cold start build: {e}"))?;
    let built = Instant::now();
    let value = client
        .get(key)
        .await
        .map_err(|e| format!("cold start get: {e}"))?;
    let answered = Instant::now();
    if value.is_none() {
        return Err("cold start: the first get missed".into());
    }
    Ok((client, built, answered))
}

pub async fn measure(bench: &Bench, samples: usize) -> Result<ColdStart, String> {
    let mut cold = ColdStart {
        samples,
        phases: Phases::default(),
        peer_total_us: Vec::new(),
    };
    for i in 0..samples {
        let key = &bench.keys.keys[(i * 7919) % bench.keys.keys.len()];
        let start = Instant::now();
        let (client, built, answered) = sample(
            memcached_autodiscovery::Client::builder(),
            &bench.endpoint.to_string(),
            key,
        )
        .await?;
        drop(client);
        cold.phases.push(start, built, answered);

        let server = bench.servers[route(key, bench.servers.len())];
        let start = Instant::now();
        let mut peer = async_memcached::Client::new(format!("tcp://{server}"))
            .await
            .map_err(|e| format!("cold start (async-memcached): {e}"))?;
        let value = peer
            .get(key)
            .await
            .map_err(|e| format!("cold start (async-memcached): {e}"))?;
        if value.is_none() {
            return Err("cold start: async-memcached's first get missed".into());
        }
        cold.peer_total_us.push(start.elapsed().as_secs_f64() * 1e6);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(cold)
}

impl ColdStart {
    pub fn spread(values: &[f64]) -> Spread {
        Spread::of(values.to_vec())
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "## Cold start ({} samples)\n\n| step | median | min | max |\n|---|---:|---:|---:|\n",
            self.samples
        );
        for (name, values) in [
            (
                "this crate: `build()` (discovery from the endpoint)",
                &self.phases.build_us,
            ),
            (
                "this crate: first `get` (connect + round trip)",
                &self.phases.first_get_us,
            ),
            (
                "**this crate: `build()` to first `get` answered**",
                &self.phases.total_us,
            ),
            (
                "async-memcached: connect to the key's node + first `get` (no discovery)",
                &self.peer_total_us,
            ),
        ] {
            let s = Self::spread(values);
            let _ = writeln!(
                md,
                "| {name} | {:.0} µs | {:.0} µs | {:.0} µs |",
                s.median, s.min, s.max
            );
        }
        md.push('\n');
        md
    }
}
