//! The near cache ([`ClientBuilder::near_cache`](crate::ClientBuilder::near_cache)): values of
//! often-read keys kept in this process's memory, each for at most the maximum age, within a
//! byte budget, so that a hot key is read from memory instead of from its one node.
//!
//! Owns: which values are kept (admission and eviction are quick_cache's S3-FIFO, which keeps a
//! key only once it is read again, so a scan of keys read once does not push out the hot ones),
//! how old a served value may be, the budget, and the order between this client's reads and
//! writes of a key (see [`NearCache::ticket`] and [`NearCache::write`]). Does not own routing,
//! connections or what a call sends: the calls in [`crate::client`], [`crate::multi_get`] and
//! [`crate::exchange`] ask it before sending and tell it what they read or wrote.
//!
//! Read-your-writes within the process: every key has a write generation (one counter per
//! stripe of keys). A write bumps it when it is sent and again when it ends (answered, failed
//! or cancelled), dropping the key's entry both times. A read takes the generation before its
//! request is sent and keeps what it read only if the generation has not moved since: a read
//! that overlapped any part of a write of its key by this client keeps nothing, so no value
//! from before a write can come back after it.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

/// Stripes of write generations: keys share one by hash. More stripes only make a read less
/// likely to keep nothing because another key of its stripe was written meanwhile.
const STRIPES: usize = 256;
/// Bytes counted per entry beyond its key and value: the entry's slot in the cache's slab and
/// table, its share of the ghost queue (keys recently evicted, S3-FIFO's memory), and the
/// allocator's share of the key's and the value's own allocations. Measured with
/// `loadbench --near-cache`'s scan of 1M keys: with 160 counted, the process grew 462 bytes per
/// entry held, 190 more than counted; with 400, 413 (docs/performance/near-cache.md).
const ENTRY_OVERHEAD: usize = 400;
/// The cache's shards (locks), each with an eighth of the budget.
const SHARDS: usize = 8;
/// The heaviest entry kept, whatever the budget.
const MAX_KEPT_VALUE: usize = 1 << 20;

/// What `ClientBuilder::near_cache` was given, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NearCacheSettings {
    max_bytes: usize,
    max_age: Duration,
}

impl NearCacheSettings {
    /// `None` (off) for a zero budget or a zero age. Ages are capped at 24 h.
    pub(crate) fn new(max_bytes: usize, max_age: Duration) -> Option<NearCacheSettings> {
        (max_bytes > 0 && !max_age.is_zero()).then(|| NearCacheSettings {
            max_bytes,
            max_age: max_age.min(Duration::from_secs(24 * 3600)),
        })
    }
}

/// What the near cache has done since the client was built: [`Client::near_cache_stats`].
///
/// [`Client::near_cache_stats`]: crate::Client::near_cache_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Reads served from memory.
    pub hits: u64,
    /// Reads that asked a node (not in memory, or older than the maximum age).
    pub misses: u64,
    /// Values kept (read from a node, or stored by `get_or_load`).
    pub admissions: u64,
    /// Values dropped to stay within the budget.
    pub evictions: u64,
    /// Bytes counted against the budget now (keys, values and bookkeeping).
    pub bytes: u64,
    /// Entries held now.
    pub entries: u64,
}

/// One kept value.
#[derive(Clone)]
struct Entry {
    value: Bytes,
    /// `None` for a value kept by `get_or_load`, whose reply does not carry them.
    flags: Option<u32>,
    /// When it was read, on the monotonic clock and on the wall clock: it is served only while
    /// both say it is younger than the maximum age (whether a frozen Lambda environment's
    /// monotonic clock advances is not documented; the wall clock is set right after a thaw).
    born: Instant,
    born_wall: SystemTime,
}

/// A value served from memory.
pub(crate) struct Kept {
    pub value: Bytes,
    pub flags: Option<u32>,
}

/// What an entry of `key_len` and `value_len` bytes counts against the budget.
fn weight(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + ENTRY_OVERHEAD
}

/// The budget's unit: key, value and [`ENTRY_OVERHEAD`] ([`weight`]).
#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Bytes, Entry> for Weigh {
    fn weight(&self, key: &Bytes, entry: &Entry) -> u64 {
        weight(key.len(), entry.value.len()) as u64
    }
}

/// Counts what the cache evicts.
#[derive(Clone)]
struct CountEvictions {
    count: Arc<AtomicU64>,
    meter: crate::metrics::NearCacheMeter,
}

impl quick_cache::Lifecycle<Bytes, Entry> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut Self::RequestState, _key: Bytes, _entry: Entry) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.meter.evicted();
    }
}

type Entries = quick_cache::sync::Cache<Bytes, Entry, Weigh, RandomState, CountEvictions>;

/// The near cache of one client (shared by its clones).
pub(crate) struct NearCache {
    entries: Entries,
    max_age: Duration,
    /// The heaviest entry kept (key, value and [`ENTRY_OVERHEAD`]).
    max_entry: usize,
    /// Write generations, by stripe of keys (see the module docs).
    generations: Box<[Mutex<u64>]>,
    stripe_of: RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
    admissions: AtomicU64,
    evictions: Arc<AtomicU64>,
    meter: crate::metrics::NearCacheMeter,
}

/// A read's generation, taken before its request is sent (see [`NearCache::offer`]).
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    stripe: usize,
    generation: u64,
}

/// A write of one key (or of every key: `flush_all`) in progress: dropping it (answered,
/// failed or cancelled) moves the generation on and drops the entry again.
pub(crate) struct Write<'a> {
    near: &'a NearCache,
    key: Option<&'a [u8]>,
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        match &self.key {
            Some(key) => self.near.forget(key),
            None => self.near.forget_all(),
        }
    }
}

impl NearCache {
    pub(crate) fn new(settings: NearCacheSettings) -> NearCache {
        let budget = settings.max_bytes as u64;
        let meter = crate::metrics::NearCacheMeter::new();
        let evictions = CountEvictions {
            count: Arc::default(),
            meter: meter.clone(),
        };
        let options = quick_cache::OptionsBuilder::new()
            // Each shard holds an eighth of the budget, at least twice the largest value kept.
            .shards(SHARDS)
            // A guess of the entries it holds (100-byte values): the table grows if needed.
            .estimated_items_capacity((settings.max_bytes / (ENTRY_OVERHEAD + 128)).max(64))
            .weight_capacity(budget)
            .build()
            .expect("a non-zero capacity is valid");
        let entries = Entries::with_options(options, Weigh, RandomState::new(), evictions.clone());
        NearCache {
            entries,
            max_age: settings.max_age,
            max_entry: (settings.max_bytes / 16).min(MAX_KEPT_VALUE),
            generations: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            stripe_of: RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            admissions: AtomicU64::new(0),
            evictions: evictions.count,
            meter,
        }
    }

    fn stripe(&self, key: &[u8]) -> usize {
        (self.stripe_of.hash_one(key) % STRIPES as u64) as usize
    }

    fn generation(&self, stripe: usize) -> MutexGuard<'_, u64> {
        self.generations[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of `key` if one younger than the maximum age is held (with its flags, if
    /// `needs_flags`); counts a hit or a miss.
    pub(crate) fn get(&self, key: &[u8], needs_flags: bool) -> Option<Kept> {
        let found = self.entries.get(key).filter(|entry| {
            (entry.flags.is_some() || !needs_flags)
                && self.fresh(entry, Instant::now(), SystemTime::now())
        });
        match found {
            Some(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.meter.hit();
                Some(Kept {
                    value: entry.value,
                    flags: entry.flags,
                })
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.meter.miss();
                None
            }
        }
    }

    /// Whether `entry` may be served at `now` (both clocks; a wall clock set back serves
    /// nothing).
    fn fresh(&self, entry: &Entry, now: Instant, wall: SystemTime) -> bool {
        let wall_age = wall.duration_since(entry.born_wall).ok();
        now.saturating_duration_since(entry.born) < self.max_age
            && wall_age.is_some_and(|age| age < self.max_age)
    }

    /// Before a read of `key` is sent: what [`NearCache::offer`] checks.
    pub(crate) fn ticket(&self, key: &[u8]) -> Ticket {
        let stripe = self.stripe(key);
        let generation = *self.generation(stripe);
        Ticket { stripe, generation }
    }

    /// After a read of `key` found `value`: keeps a copy of it (its own allocation, not a slice
    /// of the read buffer) unless a write of the key by this client began since `ticket` was
    /// taken, or the value is over the size limit. `born` is when the read was sent: its age
    /// counts from then.
    pub(crate) fn offer(
        &self,
        ticket: Ticket,
        born: Instant,
        key: &[u8],
        value: &Bytes,
        flags: Option<u32>,
    ) {
        if weight(key.len(), value.len()) > self.max_entry {
            return;
        }
        let entry = Entry {
            value: Bytes::copy_from_slice(value),
            flags,
            born,
            born_wall: SystemTime::now() - born.elapsed(),
        };
        let generation = self.generation(ticket.stripe);
        if *generation == ticket.generation {
            self.entries.insert(Bytes::copy_from_slice(key), entry);
            self.admissions.fetch_add(1, Ordering::Relaxed);
            self.meter.admitted(|| self.entries.weight());
        }
    }

    /// Before a write of `key` is sent: drops its entry and makes every read in progress keep
    /// nothing; the returned guard does both again when the write ends.
    pub(crate) fn write<'a>(&'a self, key: &'a [u8]) -> Write<'a> {
        self.forget(key);
        Write {
            near: self,
            key: Some(key),
        }
    }

    /// Before a `flush_all` is sent: [`NearCache::write`] of every key.
    pub(crate) fn write_all(&self) -> Write<'_> {
        self.forget_all();
        Write {
            near: self,
            key: None,
        }
    }

    fn forget(&self, key: &[u8]) {
        let mut generation = self.generation(self.stripe(key));
        *generation += 1;
        if self.entries.remove(key).is_some() {
            self.meter.bytes(|| self.entries.weight());
        }
    }

    fn forget_all(&self) {
        let mut held: Vec<MutexGuard<'_, u64>> = (0..STRIPES).map(|s| self.generation(s)).collect();
        for generation in &mut held {
            **generation += 1;
        }
        self.entries.clear();
        self.meter.bytes(|| 0);
    }

    pub(crate) fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            admissions: self.admissions.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: self.entries.weight(),
            entries: self.entries.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(max_age: Duration) -> NearCache {
        NearCache::new(NearCacheSettings::new(1 << 20, max_age).unwrap())
    }

    fn entry(born: Instant, born_wall: SystemTime) -> Entry {
        Entry {
            value: Bytes::from_static(b"v"),
            flags: Some(0),
            born,
            born_wall,
        }
    }

    /// Served only while both clocks say it is younger than the maximum age: a monotonic
    /// clock that stood still (a frozen environment) or a wall clock set back serves nothing.
    #[test]
    fn age_counts_on_both_clocks() {
        let age = Duration::from_secs(1);
        let near = near(age);
        let (born, wall) = (Instant::now(), SystemTime::now());
        let e = entry(born, wall);
        let half = Duration::from_millis(500);
        assert!(near.fresh(&e, born + half, wall + half));
        assert!(
            !near.fresh(&e, born + age, wall + half),
            "monotonic age reached"
        );
        assert!(
            !near.fresh(&e, born + half, wall + age),
            "wall-clock age reached"
        );
        assert!(
            !near.fresh(&e, born, wall + Duration::from_secs(600)),
            "thawed"
        );
        assert!(
            !near.fresh(&e, born + half, wall - half),
            "wall clock set back"
        );
    }

    #[test]
    fn settings_turn_off_at_zero_and_cap_the_age() {
        assert!(NearCacheSettings::new(0, Duration::from_secs(1)).is_none());
        assert!(NearCacheSettings::new(1, Duration::ZERO).is_none());
        let capped = NearCacheSettings::new(1, Duration::from_secs(u64::MAX)).unwrap();
        assert_eq!(capped.max_age, Duration::from_secs(24 * 3600));
    }

    /// The limit on a kept entry: a sixteenth of the budget, at most 1 MiB.
    #[test]
    fn the_largest_value_kept() {
        let small =
            NearCache::new(NearCacheSettings::new(64 << 10, Duration::from_secs(1)).unwrap());
        assert_eq!(small.max_entry, 4 << 10);
        let large =
            NearCache::new(NearCacheSettings::new(1 << 30, Duration::from_secs(1)).unwrap());
        assert_eq!(large.max_entry, MAX_KEPT_VALUE);
    }
}
