//! The default placement: a consistent-hash ring of 160 virtual nodes per node, placing keys
//! exactly as the `consistent_hash_ring` crate (0.8) does over the hash function specified here.
//!
//! # The hash
//!
//! Keys and node identities are hashed as their raw bytes, and nothing else, with
//! [`StableHasher`] (64-bit FNV-1a finished with MurmurHash3's fmix64); integers (the ring
//! chains vnode points) are fed as 8 little-endian bytes. `std::hash::Hash` is not used for
//! them: its byte stream differs between `&str` and `&[u8]` and is not promised stable across
//! Rust versions. The result is the same on every platform and release, and pinned by a golden
//! test (`tests/ring_placement.rs`).
//!
//! # The placement is the crate's; its code is not used at runtime
//!
//! The placement is defined as the one `consistent_hash_ring::RingBuilder` builds when given
//! the nodes in list order, 160 vnodes each, our hasher, and nodes and keys hashed by their raw
//! bytes (releases before this table used the crate itself, so every key stays where it was).
//! In the crate, inserting a node does, in order:
//!
//! 1. for `i` in `0..160`: put the point `p_i` (`p_0 = hash(id)`, `p_{i+1} = hash(p_i)`) into a
//!    sorted map, replacing the owner of an equal point already there (so a node listed later
//!    wins an equal point);
//! 2. then, with `t = hash(p_159)`: while a point equal to `t` is in the map, remove it and set
//!    `t = hash(t)` (a clean-up of a previous, heavier insertion of the same node, which also
//!    removes a colliding point of any node).
//!
//! A key goes to the owner of the first point at or after `hash(key)`, wrapping to the first
//! point.
//!
//! The crate keeps its map in a sorted `Vec` and inserts each of the 160 points of every node
//! into it, shifting on average half the vector: building is quadratic in the number of points
//! (0.4 s at 300 nodes, minutes at 10,000). So it is used only as the reference in tests and
//! benchmarks, and the runtime table is built by sorting:
//!
//! * all points are generated, sorted by `(point, node index)`, and an equal point kept once
//!   with its last owner (the tie rule of step 1);
//! * step 2 can only ever remove something when some node's `t` (its *tail*, kept per node)
//!   equals a point. Then, and only then (never with distinct 64-bit hashes in practice, but
//!   exactly when it happens), the table is built by replaying the crate's steps over an
//!   ordered map, in `O(points · log points)`.
//!
//! [`RingLocator::next`] builds the table for a new node list from the previous one, hashing
//! only the added nodes and merging their sorted points into the kept ones in one linear pass.
//!
//! This module owns the ring's hash and its point table; it does not own the choice of mode or
//! the dispatch over modes (the `locator` module). Its unit tests, which check it against the
//! crate, are in `ring/tests.rs`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

/// Virtual nodes per node on the ring.
pub const RING_VNODES: usize = 160;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the bytes written, finished with fmix64.
#[derive(Clone, Copy)]
pub(crate) struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(FNV_OFFSET)
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut k = self.0;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct BuildStableHasher;

impl BuildHasher for BuildStableHasher {
    type Hasher = StableHasher;
    fn build_hasher(&self) -> StableHasher {
        StableHasher::default()
    }
}

/// The hash of raw bytes (a key or a node identity).
#[inline]
fn hash_bytes<S: BuildHasher>(hasher: &S, bytes: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(bytes);
    h.finish()
}

/// The hash of a point: the next point of the chain.
#[inline]
fn hash_point<S: BuildHasher>(hasher: &S, point: u64) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u64(point);
    h.finish()
}

/// Calls `each` with the node's 160 points in the order the crate inserts them, and returns
/// the node's tail: the hash after its last point, where the crate's clean-up starts.
#[inline]
fn chain<S: BuildHasher>(hasher: &S, id: &str, mut each: impl FnMut(u64)) -> u64 {
    let mut point = hash_bytes(hasher, id.as_bytes());
    for _ in 0..RING_VNODES {
        each(point);
        point = hash_point(hasher, point);
    }
    point
}

/// The owner index stored for node `index` (a list of more than 4 billion nodes cannot be
/// allocated: 160 points each).
#[inline]
fn owner(index: usize) -> u32 {
    index as u32
}

/// The built ring: points ascending and unique, the index of the node owning each, and each
/// node's tail (see the module docs).
#[derive(Clone)]
pub(crate) struct RingLocator<S = BuildStableHasher> {
    hasher: S,
    points: Box<[u64]>,
    owners: Box<[u32]>,
    tails: Box<[u64]>,
}

impl RingLocator {
    pub(crate) fn new<I: AsRef<str>>(ids: &[I]) -> Self {
        RingLocator::with_hasher(BuildStableHasher, ids)
    }
}

impl<S: BuildHasher + Clone> RingLocator<S> {
    pub(crate) fn with_hasher<I: AsRef<str>>(hasher: S, ids: &[I]) -> Self {
        let mut all: Vec<(u64, u32)> = Vec::with_capacity(ids.len().saturating_mul(RING_VNODES));
        let tails: Vec<u64> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| chain(&hasher, id.as_ref(), |p| all.push((p, owner(i)))))
            .collect();
        // By point, then by owner: of equal points the last one is the node listed last.
        all.sort_unstable();
        let mut points = Vec::with_capacity(all.len());
        let mut owners: Vec<u32> = Vec::with_capacity(all.len());
        for (p, o) in all {
            match owners.last_mut() {
                Some(last) if points.last() == Some(&p) => *last = o,
                _ => {
                    points.push(p);
                    owners.push(o);
                }
            }
        }
        let ring = RingLocator {
            hasher,
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            tails: tails.into_boxed_slice(),
        };
        if ring.a_tail_is_a_point() {
            return RingLocator::replayed(ring.hasher, ids);
        }
        ring
    }

    /// Whether some node's tail equals a point: the only case where the crate's clean-up step
    /// can remove anything.
    fn a_tail_is_a_point(&self) -> bool {
        self.tails
            .iter()
            .any(|t| self.points.binary_search(t).is_ok())
    }

    /// The crate's steps, replayed one by one over an ordered map (see the module docs).
    fn replayed<I: AsRef<str>>(hasher: S, ids: &[I]) -> Self {
        let mut map: BTreeMap<u64, u32> = BTreeMap::new();
        let mut tails = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let mut t = chain(&hasher, id.as_ref(), |p| {
                map.insert(p, owner(i));
            });
            tails.push(t);
            // Each turn removes a point, so this ends within the map's size.
            while map.remove(&t).is_some() {
                t = hash_point(&hasher, t);
            }
        }
        let (points, owners): (Vec<u64>, Vec<u32>) = map.into_iter().unzip();
        RingLocator {
            hasher,
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            tails: tails.into_boxed_slice(),
        }
    }

    /// The ring over `ids`, the same as [`RingLocator::with_hasher`] over them, built from
    /// `self`, the ring over `old_ids`: the points of the nodes that stay are kept (their owner
    /// renumbered to the new list), those of the removed nodes dropped, and only the added
    /// nodes are hashed; their sorted points are merged into the kept ones in one pass.
    ///
    /// Falls back to a full build when the shortcut would not be exact: the previous table lost
    /// points to a tie or the clean-up step, the new list repeats an id, or the merged table
    /// has a tie or a tail equal to a point.
    pub(crate) fn next<A: AsRef<str>, I: AsRef<str>>(&self, old_ids: &[A], ids: &[I]) -> Self {
        self.merged(old_ids, ids)
            .unwrap_or_else(|| RingLocator::with_hasher(self.hasher.clone(), ids))
    }

    /// [`RingLocator::next`] without the fallback: `None` where the shortcut would not be exact.
    fn merged<A: AsRef<str>, I: AsRef<str>>(&self, old_ids: &[A], ids: &[I]) -> Option<Self> {
        // Every previous node has all its 160 points in the table, with itself as the owner.
        let complete = old_ids.len() == self.tails.len()
            && Some(self.points.len()) == self.tails.len().checked_mul(RING_VNODES);
        if !complete {
            return None;
        }
        let mut index: HashMap<&str, u32> = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.as_ref(), owner(i)).is_some() {
                return None;
            }
        }
        const GONE: u32 = u32::MAX;
        let mut tails = vec![0u64; ids.len()];
        let mut kept = vec![false; ids.len()];
        let renumber: Vec<u32> = old_ids
            .iter()
            .zip(self.tails.iter())
            .map(|(id, &tail)| match index.get(id.as_ref()) {
                Some(&new) => {
                    if let (Some(t), Some(k)) =
                        (tails.get_mut(new as usize), kept.get_mut(new as usize))
                    {
                        *t = tail;
                        *k = true;
                    }
                    new
                }
                None => GONE,
            })
            .collect();
        let mut added: Vec<(u64, u32)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if !kept[i] {
                tails[i] = chain(&self.hasher, id.as_ref(), |p| added.push((p, owner(i))));
            }
        }
        added.sort_unstable();

        let capacity = ids.len().saturating_mul(RING_VNODES);
        let mut points: Vec<u64> = Vec::with_capacity(capacity);
        let mut owners: Vec<u32> = Vec::with_capacity(capacity);
        let mut added = added.into_iter().peekable();
        for (&p, &o) in self.points.iter().zip(self.owners.iter()) {
            let o = renumber.get(o as usize).copied().unwrap_or(GONE);
            if o == GONE {
                continue;
            }
            while let Some((q, qo)) = added.next_if(|&(q, _)| q <= p) {
                points.push(q);
                owners.push(qo);
            }
            points.push(p);
            owners.push(o);
        }
        for (q, qo) in added {
            points.push(q);
            owners.push(qo);
        }
        // Sorted, so an equal pair of points is adjacent.
        if points.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        let ring = RingLocator {
            hasher: self.hasher.clone(),
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            tails: tails.into_boxed_slice(),
        };
        if ring.a_tail_is_a_point() {
            return None;
        }
        Some(ring)
    }

    /// The index in the table of the first point at or after the key's hash, wrapping to the
    /// first; `None` when the table is empty.
    #[inline]
    fn slot(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash_bytes(&self.hasher, key);
        let i = self.points.partition_point(|&p| p < h);
        Some(if i == self.points.len() { 0 } else { i })
    }

    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> Option<usize> {
        let i = self.slot(key)?;
        self.owners.get(i).map(|&o| o as usize)
    }

    /// The owner of the key's point if `usable`, else the owner of the next point (wrapping)
    /// whose owner is `usable`; `None` when no point in one lap has one.
    #[inline]
    pub(crate) fn locate_usable(
        &self,
        key: &[u8],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let i = self.slot(key)?;
        super::locator::first_usable(&self.owners, i, usable)
    }

    /// The points, ascending, and their owners (for [`super::locator::moved_share_of`]).
    pub(crate) fn table(&self) -> (&[u64], &[u32]) {
        (&self.points, &self.owners)
    }
}

#[cfg(test)]
mod tests;
