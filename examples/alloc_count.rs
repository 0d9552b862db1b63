//! Heap allocations per request, counted by a wrapping global allocator: sequential `get`s and
//! `set`s of 100-byte values, `get`s of absent keys and `get_many`s of 10 present keys on a local
//! emulated cluster (3 nodes), after a warm-up. Counts every
//! allocation of the process during the measured calls (client, runtime and connection tasks).
//!
//! ```sh
//! cargo run --release --example alloc_count
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = LocalCluster::start(3).await?;
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .build()
        .await?;
    let keys: Vec<String> = (0..1000).map(|i| format!("alloc:{i:04}")).collect();
    for key in &keys {
        client
            .set(key, [b'v'; 100], Duration::from_secs(600))
            .await?;
        client.get(key).await?;
    }
    let misses: Vec<String> = (0..1000).map(|i| format!("alloc:miss:{i:04}")).collect();
    let groups: Vec<Vec<&String>> = (0..100)
        .map(|g| (0..10).map(|i| &keys[(g * 10 + i) % keys.len()]).collect())
        .collect();
    // Warm-up of the other calls too (buffers, pools, channel blocks).
    for i in 0..1000 {
        client.get(&misses[i % misses.len()]).await?;
        client.get_many(groups[i % groups.len()].iter()).await?;
    }
    const ROUNDS: u64 = 10_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..ROUNDS as usize {
        client.get(&keys[i % keys.len()]).await?;
    }
    let gets = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..ROUNDS as usize {
        client.get(&misses[i % misses.len()]).await?;
    }
    let get_misses = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..ROUNDS as usize {
        client
            .set(&keys[i % keys.len()], [b'v'; 100], Duration::from_secs(600))
            .await?;
    }
    let sets = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..ROUNDS as usize {
        client.get_many(groups[i % groups.len()].iter()).await?;
    }
    let multi = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let per = |n: u64| n as f64 / ROUNDS as f64;
    println!(
        "allocations per get (hit, 100-byte value): {:.2}",
        per(gets)
    );
    println!(
        "allocations per get (miss):                {:.2}",
        per(get_misses)
    );
    println!(
        "allocations per set (100-byte value):      {:.2}",
        per(sets)
    );
    println!(
        "allocations per get_many of 10 keys (hits): {:.2}",
        per(multi)
    );
    Ok(())
}
