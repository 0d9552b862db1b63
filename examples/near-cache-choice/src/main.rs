//! The cache crates considered for the near cache, side by side on the near cache's workload:
//! a Zipf-distributed read stream (s = 1.1 over 100,000 keys, 100-byte values) against a
//! byte budget, alone and interleaved one to one with a scan of 1,000,000 distinct cold keys
//! (each read once: a miss, then offered to the cache, as the near cache does).
//!
//! For each crate it prints: the hot stream's hit ratio without and during the scan, the most
//! weight the cache held at any point of the scan against its budget, the process's resident
//! memory after the scan (run one crate per process for that figure), and the cost of a hit
//! (one thread, a key that is present) in nanoseconds.
//!
//!   cargo run --release --manifest-path examples/near-cache-choice/Cargo.toml -- all
//!   cargo run --release --manifest-path examples/near-cache-choice/Cargo.toml -- quick_cache
//!   cargo run --release --manifest-path examples/near-cache-choice/Cargo.toml -- moka

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;

const KEYS: usize = 100_000;
const SCAN: usize = 1_000_000;
const READS: usize = 2_000_000;
/// Bytes counted per entry beyond the key and the value (the entry's own allocation).
const OVERHEAD: usize = 64;

/// A cache as the near cache uses one.
trait Candidate {
    fn name(&self) -> &'static str;
    fn get(&self, key: &[u8]) -> Option<Bytes>;
    fn insert(&self, key: Bytes, value: Bytes);
    /// The weight held now, as the crate counts it.
    fn weight(&self) -> u64;
}

fn weigh(key: &Bytes, value: &Bytes) -> u64 {
    (key.len() + value.len() + OVERHEAD) as u64
}

#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<Bytes, Bytes> for ByteWeighter {
    fn weight(&self, key: &Bytes, value: &Bytes) -> u64 {
        weigh(key, value)
    }
}

struct Quick(quick_cache::sync::Cache<Bytes, Bytes, ByteWeighter>);

impl Quick {
    fn new(budget: u64) -> Quick {
        let items = (budget / 200).max(16) as usize;
        Quick(quick_cache::sync::Cache::with_weighter(
            items,
            budget,
            ByteWeighter,
        ))
    }
}

impl Candidate for Quick {
    fn name(&self) -> &'static str {
        "quick_cache 0.6 (S3-FIFO)"
    }
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.0.get(key)
    }
    fn insert(&self, key: Bytes, value: Bytes) {
        self.0.insert(key, value)
    }
    fn weight(&self) -> u64 {
        self.0.weight()
    }
}

struct Moka(moka::sync::Cache<Bytes, Bytes>);

impl Moka {
    fn new(budget: u64) -> Moka {
        Moka(
            moka::sync::Cache::builder()
                .max_capacity(budget)
                .weigher(|k: &Bytes, v: &Bytes| weigh(k, v).min(u32::MAX as u64) as u32)
                .build(),
        )
    }
}

impl Candidate for Moka {
    fn name(&self) -> &'static str {
        "moka 0.12 (TinyLFU)"
    }
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.0.get(key)
    }
    fn insert(&self, key: Bytes, value: Bytes) {
        self.0.insert(key, value)
    }
    fn weight(&self) -> u64 {
        self.0.weighted_size()
    }
}

/// xorshift64*: a fixed seed, so every crate sees the same stream.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ranks drawn with probability ∝ 1 / rank^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / (rank as f64).powf(s);
            cdf.push(sum);
        }
        for p in &mut cdf {
            *p /= sum;
        }
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&p| p < u).min(self.cdf.len() - 1)
    }
}

fn hot_key(rank: usize) -> Bytes {
    Bytes::from(format!("hot:{rank:06}"))
}

/// One read as the near cache does it: a hit, or a miss then an insert. Whether it hit.
fn read(cache: &dyn Candidate, key: Bytes) -> bool {
    if cache.get(&key).is_some() {
        return true;
    }
    cache.insert(key, Bytes::from(vec![b'v'; 100]));
    false
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn measure(make: &dyn Fn(u64) -> Box<dyn Candidate>, budget: u64, zipf: &Zipf) {
    let cache = make(budget);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // The hot stream alone: warm up, then count.
    for _ in 0..READS / 4 {
        read(&*cache, hot_key(zipf.sample(&mut rng)));
    }
    let hits = (0..READS)
        .filter(|_| read(&*cache, hot_key(zipf.sample(&mut rng))))
        .count();
    let alone = hits as f64 / READS as f64;
    // Interleaved one to one with a scan of cold keys.
    let (mut scan_hits, mut hot_reads, mut peak) = (0usize, 0usize, 0u64);
    for i in 0..SCAN {
        read(&*cache, Bytes::from(format!("cold:{i:07}")));
        hot_reads += 1;
        scan_hits += read(&*cache, hot_key(zipf.sample(&mut rng))) as usize;
        if i % 64 == 0 {
            peak = peak.max(cache.weight());
        }
    }
    let during_scan = scan_hits as f64 / hot_reads as f64;
    // The cost of a hit: one present key, read over and over.
    let key = hot_key(0);
    read(&*cache, key.clone());
    let n = 5_000_000u32;
    let start = Instant::now();
    for _ in 0..n {
        black_box(cache.get(black_box(&key)));
    }
    let hit_ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "| {} | {} MiB | {:.1} % | {:.1} % | {:.2} MiB ({:.0} % of budget) | {:.1} MiB | {:.0} ns |",
        cache.name(),
        budget >> 20,
        alone * 100.0,
        during_scan * 100.0,
        peak as f64 / (1 << 20) as f64,
        peak as f64 * 100.0 / budget as f64,
        resident_bytes() as f64 / (1 << 20) as f64,
        hit_ns,
    );
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let zipf = Zipf::new(KEYS, 1.1);
    println!("| crate | budget | hot hit ratio | hot hit ratio during a 1M-key scan | peak weight held during the scan | process RSS after | hit cost |");
    println!("|---|---|---|---|---|---|---|");
    for budget in [16u64 << 20, 1 << 20] {
        if which == "all" || which == "quick_cache" {
            measure(&|b| Box::new(Quick::new(b)), budget, &zipf);
        }
        if which == "all" || which == "moka" {
            measure(&|b| Box::new(Moka::new(b)), budget, &zipf);
        }
    }
}
