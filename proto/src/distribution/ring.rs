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
mod tests {
    use super::*;
    use crate::distribution::{Distribution, Locator};
    use bytes::Bytes;
    use consistent_hash_ring::{Ring, RingBuilder};
    use proptest::prelude::*;
    use std::hash::Hash;
    use std::sync::Arc;

    /// The ring's hash of a byte string: 64-bit FNV-1a, then the 64-bit finalizer of MurmurHash3
    /// (fmix64) so that nearby inputs land far apart on the ring.
    fn ring_hash(bytes: &[u8]) -> u64 {
        let mut h = StableHasher::default();
        h.write(bytes);
        h.finish()
    }

    /// A node for the reference ring: hashed (by its raw bytes) and compared by its identity.
    #[derive(Clone)]
    struct RingNode {
        id: Arc<str>,
        index: usize,
    }

    impl Hash for RingNode {
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write(self.id.as_bytes());
        }
    }

    impl PartialEq for RingNode {
        fn eq(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }
    impl Eq for RingNode {}

    /// A key for the reference ring: hashed as its raw bytes.
    struct RawKey<'a>(&'a [u8]);

    impl Hash for RawKey<'_> {
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write(self.0);
        }
    }

    /// The placement's definition: the crate's ring, built as releases before this table did.
    fn reference<S: BuildHasher, I: AsRef<str>>(hasher: S, ids: &[I]) -> Ring<RingNode, S> {
        RingBuilder::new(hasher)
            .vnodes(RING_VNODES)
            .nodes_iter(ids.iter().enumerate().map(|(index, id)| RingNode {
                id: Arc::from(id.as_ref()),
                index,
            }))
            .build()
    }

    /// The ranges of hashes and their owner, as the crate's `resident_ranges` lists them
    /// (adjacent ranges of one node merged; the wrap-around range last).
    fn ranges<S: BuildHasher + Clone>(ring: &RingLocator<S>) -> Vec<(u64, u64, usize)> {
        let mut out: Vec<(u64, u64, usize)> = Vec::new();
        let mut start = 0u64;
        let push = |out: &mut Vec<(u64, u64, usize)>, s: u64, e: u64, o: usize| match out.last_mut()
        {
            Some(last) if last.2 == o => last.1 = e,
            _ => out.push((s, e, o)),
        };
        for (&p, &o) in ring.points.iter().zip(ring.owners.iter()) {
            push(&mut out, start, p, o as usize);
            start = p.wrapping_add(1);
        }
        if let Some(&first) = ring.owners.first() {
            push(&mut out, start, u64::MAX, first as usize);
        }
        out
    }

    fn reference_ranges<S: BuildHasher>(ring: &Ring<RingNode, S>) -> Vec<(u64, u64, usize)> {
        ring.resident_ranges()
            .map(|r| (*r.keys().start(), *r.keys().end(), r.node().index))
            .collect()
    }

    /// A hasher with few outputs (`stable % modulus`), so that ties between nodes, nodes whose
    /// chain runs into its own points and the crate's clean-up step all happen.
    #[derive(Clone, Copy)]
    struct Tiny(u64);

    struct TinyHasher(StableHasher, u64);

    impl Hasher for TinyHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.write(bytes);
        }
        fn write_u64(&mut self, n: u64) {
            self.0.write_u64(n);
        }
        fn finish(&self) -> u64 {
            self.0.finish() % self.1
        }
    }

    impl BuildHasher for Tiny {
        type Hasher = TinyHasher;
        fn build_hasher(&self) -> TinyHasher {
            TinyHasher(StableHasher::default(), self.0.max(1))
        }
    }

    fn assert_same_as_reference<S: BuildHasher + Clone>(
        hasher: S,
        ids: &[String],
        keys: &[String],
    ) {
        let ours = RingLocator::with_hasher(hasher.clone(), ids);
        let theirs = reference(hasher, ids);
        assert_eq!(ranges(&ours), reference_ranges(&theirs), "ids {ids:?}");
        for key in keys {
            assert_eq!(
                ours.locate(key.as_bytes()),
                theirs.try_get(RawKey(key.as_bytes())).map(|n| n.index),
                "key {key:?}, ids {ids:?}"
            );
        }
    }

    fn node_ids(max: usize) -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(0u16..40, 0..max).prop_map(|v| {
            v.into_iter()
                .map(|i| format!("n{i}.example:11211"))
                .collect()
        })
    }

    fn some_keys() -> Vec<String> {
        (0..200).map(|i| format!("key-{i}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The table is the crate's ring, range for range, with the runtime hash (ids may
        /// repeat: the later copy owns the points).
        #[test]
        fn the_table_is_the_crates_ring(ids in node_ids(12)) {
            assert_same_as_reference(BuildStableHasher, &ids, &some_keys());
        }

        /// The same with a hash of few outputs, where ties between nodes, chains that cycle
        /// and the clean-up step that removes points are common.
        #[test]
        fn the_table_is_the_crates_ring_when_points_collide(
            ids in node_ids(8),
            modulus in prop::sample::select(vec![1u64, 2, 7, 50, 300, 5_000, 1 << 20]),
        ) {
            assert_same_as_reference(Tiny(modulus), &ids, &some_keys());
        }

        /// Building the next ring from the previous one gives the table a full build gives,
        /// whatever was added, removed, repeated or reordered.
        #[test]
        fn next_is_a_full_build(
            old in node_ids(12),
            new in node_ids(12),
            modulus in prop::sample::select(vec![7u64, 300, 5_000, u64::MAX]),
        ) {
            let hasher = Tiny(modulus);
            let prev = RingLocator::with_hasher(hasher, &old);
            let next = prev.next(&old, &new);
            let full = RingLocator::with_hasher(hasher, &new);
            prop_assert_eq!(&next.points, &full.points);
            prop_assert_eq!(&next.owners, &full.owners);
            prop_assert_eq!(&next.tails, &full.tails);
            // With the runtime hash, the merge itself is taken whenever the new list has no
            // repeated id (and the previous one none either).
            let prev = RingLocator::new(&old);
            let full = RingLocator::new(&new);
            let distinct = |ids: &[String]| {
                ids.iter().collect::<std::collections::HashSet<_>>().len() == ids.len()
            };
            match prev.merged(&old, &new) {
                Some(next) => {
                    prop_assert_eq!(&next.points, &full.points);
                    prop_assert_eq!(&next.owners, &full.owners);
                    prop_assert_eq!(&next.tails, &full.tails);
                }
                None => prop_assert!(!distinct(&old) || !distinct(&new)),
            }
            let next = prev.next(&old, &new);
            prop_assert_eq!(&next.points, &full.points);
            prop_assert_eq!(&next.owners, &full.owners);
        }
    }

    #[test]
    fn the_replay_is_taken_exactly_when_a_tail_is_a_point() {
        // With two hash values every chain cycles at once: node 0's tail is its own point.
        let ids = ["a:1".to_string(), "b:1".to_string(), "c:1".to_string()];
        let ring = RingLocator::with_hasher(Tiny(2), &ids);
        assert!(ring.points.len() < 2 * RING_VNODES);
        assert_same_as_reference(Tiny(2), &ids, &some_keys());
        // With the runtime hash, no tail is a point and no point is lost.
        let ids: Vec<String> = (0..300).map(|i| format!("node-{i}:11211")).collect();
        let ring = RingLocator::new(&ids);
        assert!(!ring.a_tail_is_a_point());
        assert_eq!(ring.points.len(), 300 * RING_VNODES);
    }

    #[test]
    fn hash_is_fnv1a_then_fmix64() {
        // FNV-1a 64 of the empty string is the offset basis; of "a" it is 0xaf63dc4c8601ec8c.
        let mut h = StableHasher::default();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(ring_hash(b"a"), ring_hash(b"b"));
        // Integers (the ring chains vnode points) are fed as 8 little-endian bytes.
        let mut h = StableHasher::default();
        h.write_u64(0x0102_0304_0506_0708);
        assert_eq!(h.finish(), ring_hash(&[8, 7, 6, 5, 4, 3, 2, 1]));
    }

    /// The points of the nodes, `ring_hash(id)` and then `ring_hash` of the previous point's
    /// little-endian bytes, sorted, with their node: the ring worked out without it.
    fn points_by_hand(ids: &[String]) -> Vec<(u64, usize)> {
        let mut points = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            let mut point = ring_hash(id.as_bytes());
            for _ in 0..RING_VNODES {
                points.push((point, index));
                point = ring_hash(&point.to_le_bytes());
            }
        }
        points.sort_unstable();
        points
    }

    /// The node of the first of the nodes' points at or after `ring_hash(key)` (wrapping).
    fn by_hand(ids: &[String], key: &[u8]) -> usize {
        let points = points_by_hand(ids);
        let h = ring_hash(key);
        points
            .iter()
            .find(|&&(p, _)| p >= h)
            .unwrap_or(&points[0])
            .1
    }

    #[test]
    fn a_key_is_placed_by_its_raw_bytes_whether_it_was_a_str_or_bytes() {
        let ids: Vec<String> = (0..5).map(|i| format!("node-{i}.example:11211")).collect();
        let ring = RingLocator::new(&ids);
        let locator = Locator::new(Distribution::Ring, &ids);
        let keys: Vec<String> = (0..200)
            .map(|i| match i % 3 {
                0 => format!("clé-{i}"),
                1 => format!("user:{i}"),
                _ => format!("日本-{i}"),
            })
            .collect();
        for key in &keys {
            let text: &str = key;
            let raw: Vec<u8> = key.bytes().collect();
            let bytes = Bytes::from(raw.clone());
            let expected = Some(by_hand(&ids, &raw));
            assert_eq!(ring.locate(text.as_bytes()), expected, "{key:?} as str");
            assert_eq!(ring.locate(&raw), expected, "{key:?} as Vec<u8>");
            assert_eq!(ring.locate(&bytes), expected, "{key:?} as Bytes");
            assert_eq!(locator.locate(text.as_bytes()), expected, "{key:?} as str");
            assert_eq!(locator.locate(&bytes), expected, "{key:?} as Bytes");
        }
        // What the wrapper types avoid: std's Hash writes a str with a 0xff terminator and a
        // slice with its length first, so hashing the key through either would move it.
        let std_hash = |write: &dyn Fn(&mut StableHasher)| {
            let mut h = StableHasher::default();
            write(&mut h);
            h.finish()
        };
        assert_ne!(std_hash(&|h| "clé".hash(h)), ring_hash("clé".as_bytes()));
        assert_ne!(
            std_hash(&|h| "clé".as_bytes().hash(h)),
            ring_hash("clé".as_bytes())
        );
        assert_eq!(
            std_hash(&|h| RawKey("clé".as_bytes()).hash(h)),
            ring_hash("clé".as_bytes())
        );
    }

    #[test]
    fn a_key_of_an_unusable_node_goes_to_the_owner_of_the_next_point_with_a_usable_owner() {
        let ids: Vec<String> = (0..4).map(|i| format!("node-{i}.example:11211")).collect();
        let ring = RingLocator::new(&ids);
        let points = points_by_hand(&ids);
        let mut checked = 0;
        for i in 0..300 {
            let key = format!("k{i}");
            let h = ring_hash(key.as_bytes());
            let at = points.iter().position(|&(p, _)| p >= h).unwrap_or(0);
            let owner = points[at].1;
            // The points after the key's point, wrapping, and the first whose owner is not
            // `owner`: with `owner` down, that is where the key goes.
            let next = (1..points.len())
                .map(|step| points[(at + step) % points.len()].1)
                .find(|&o| o != owner)
                .unwrap();
            assert_eq!(
                ring.locate_usable(key.as_bytes(), |n| n != owner),
                Some(next)
            );
            // With that one down too, the next owner that is neither.
            let third = (1..points.len())
                .map(|step| points[(at + step) % points.len()].1)
                .find(|&o| o != owner && o != next)
                .unwrap();
            assert_eq!(
                ring.locate_usable(key.as_bytes(), |n| n != owner && n != next),
                Some(third)
            );
            assert_eq!(ring.locate_usable(key.as_bytes(), |_| true), Some(owner));
            assert_eq!(ring.locate_usable(key.as_bytes(), |_| false), None);
            checked += 1;
        }
        assert_eq!(checked, 300);
    }

    #[test]
    fn ten_thousand_nodes_build_and_change() {
        let ids: Vec<String> = (0..10_001).map(|i| format!("node-{i}:11211")).collect();
        let (most, all) = (&ids[..10_000], &ids[..]);
        let ring = RingLocator::new(most);
        assert_eq!(ring.points.len(), 10_000 * RING_VNODES);
        let grown = ring.merged(most, all).expect("distinct points");
        assert_eq!(grown.points.len(), 10_001 * RING_VNODES);
        let back = grown.merged(all, most).expect("distinct points");
        assert_eq!(back.points, ring.points);
        assert_eq!(back.owners, ring.owners);
        for i in 0..100 {
            let key = format!("k{i}");
            let owner = ring.locate(key.as_bytes()).unwrap();
            assert!(owner < 10_000);
            assert_eq!(back.locate(key.as_bytes()), Some(owner));
        }
    }

    #[test]
    fn empty_ring_locates_nothing() {
        let ids: [&str; 0] = [];
        assert_eq!(RingLocator::new(&ids).locate(b"k"), None);
        assert_eq!(RingLocator::new(&ids).locate_usable(b"k", |_| true), None);
        let one = ["a:1"];
        assert_eq!(
            RingLocator::new(&ids).next(&ids, &one).locate(b"k"),
            Some(0)
        );
        assert_eq!(RingLocator::new(&one).next(&one, &ids).locate(b"k"), None);
    }
}
