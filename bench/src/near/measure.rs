//! The runs of `loadbench --near-cache` and what is read around them: Zipf-drawn reads by C
//! callers (unthrottled or paced), each node's `cmd_get`, the cost of a hit, and resident memory
//! during a scan.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memcached_autodiscovery::{Client, NearCacheStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Bench, NearOptions, Section, Side, Work};
use crate::load::{Rng, VALUE_LEN};
use crate::sys;

/// Reads between two `yield_now` of a caller.
pub(super) const YIELD_EVERY: u64 = 32;
/// In the hit-cost loop, every this many calls is timed on its own.
pub(super) const SAMPLE_EVERY: u64 = 16;
/// During the scan, resident memory is read every this many reads.
pub(super) const RSS_EVERY: u64 = 10_000;

/// The ranks' cumulative distribution: p(rank) ∝ 1/(rank+1)^s.
pub(super) struct Zipf {
    pub(super) cdf: Vec<f64>,
}

impl Zipf {
    pub(super) fn new(n: usize, s: f64) -> Zipf {
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

    pub(super) fn sample(&self, rng: &mut Rng) -> usize {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// The share of reads that go to the `top` most read keys.
    pub(super) fn share(&self, top: usize) -> f64 {
        self.cdf[top.clamp(1, self.cdf.len()) - 1]
    }
}

pub(super) async fn build(
    endpoint: SocketAddr,
    near: Option<(usize, Duration)>,
) -> Result<Client, String> {
    let mut builder = Client::builder().config_endpoint(endpoint.to_string());
    if let Some((max_bytes, max_age)) = near {
        builder = builder.near_cache(max_bytes, max_age);
    }
    builder.build().await.map_err(|e| format!("build: {e}"))
}

/// A latency histogram in nanoseconds, 1 ns to 60 s, 3 significant figures.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

pub(super) fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Counts a `get` result: `(not found, errors)`. Every key read is preloaded.
pub(super) fn check(
    result: Result<Option<bytes::Bytes>, memcached_autodiscovery::Error>,
) -> (u64, u64) {
    match result {
        Ok(Some(value)) if value.len() == VALUE_LEN => (0, 0),
        Ok(Some(_)) | Err(_) => (0, 1),
        Ok(None) => (1, 0),
    }
}

/// What the callers of one run did.
pub(super) struct Load {
    pub(super) reads: u64,
    pub(super) elapsed: Duration,
    pub(super) histogram: Histogram<u64>,
    pub(super) not_found: u64,
    pub(super) errors: u64,
}

/// C callers reading Zipf-drawn keys for `duration`, unthrottled (`rate` None) or paced.
pub(super) async fn load(
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
pub(super) async fn node_gets(servers: &[SocketAddr]) -> Result<Vec<u64>, String> {
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
pub(super) struct Run {
    pub(super) section: &'static str,
    pub(super) side: Side,
    pub(super) repeat: usize,
    /// 1 if this side ran first in its repeat, 2 if second.
    pub(super) position: usize,
    pub(super) target_rate: Option<f64>,
    pub(super) reads: u64,
    pub(super) elapsed_s: f64,
    pub(super) reads_per_s: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    pub(super) client_cpu_us: f64,
    pub(super) server_cpu_us: f64,
    pub(super) node_gets: Vec<u64>,
    /// The busiest node's `get` requests per read.
    pub(super) busiest_per_read: f64,
    pub(super) busiest_over_mean: f64,
    /// Deltas of the counters over the run (`bytes` and `entries`: at its end).
    pub(super) near: Option<NearCacheStats>,
    pub(super) not_found: u64,
    pub(super) errors: u64,
}

impl Run {
    pub(super) fn hit_ratio(&self) -> Option<f64> {
        self.near
            .map(|n| n.hits as f64 / (n.hits + n.misses).max(1) as f64)
    }
}

pub(super) fn delta(
    before: Option<NearCacheStats>,
    after: Option<NearCacheStats>,
) -> Option<NearCacheStats> {
    let (b, mut a) = (before?, after?);
    a.hits -= b.hits;
    a.misses -= b.misses;
    a.admissions -= b.admissions;
    a.evictions -= b.evictions;
    Some(a)
}

/// Warms `client` up, then measures one timed run.
pub(super) async fn timed(
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
pub(super) struct HitCost {
    pub(super) side: Side,
    pub(super) reads: u64,
    pub(super) cpu_us: f64,
    pub(super) wall_us: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) near: Option<NearCacheStats>,
}

pub(super) async fn hit_cost(
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
pub(super) struct Scan {
    pub(super) side: Side,
    pub(super) reads: u64,
    pub(super) reads_per_s: f64,
    pub(super) not_found: u64,
    pub(super) errors: u64,
    /// KiB: before the first read (after `build`), the highest sampled, after the last read
    /// (client still alive), and `VmHWM` (reset before the scan if `hwm_reset`).
    pub(super) rss_before: u64,
    pub(super) rss_peak: u64,
    pub(super) rss_after: u64,
    pub(super) hwm: u64,
    pub(super) hwm_reset: bool,
    pub(super) near: Option<NearCacheStats>,
}

pub(super) fn scan_key(buf: &mut String, i: u64) {
    buf.clear();
    let _ = write!(buf, "scan:{i:07}");
}

/// Max age of the scan's near cache: long enough that nothing expires during it.
pub(super) const SCAN_MAX_AGE: Duration = Duration::from_secs(600);

pub(super) async fn scan(bench: &Bench, o: &NearOptions, side: Side) -> Result<Scan, String> {
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
}
