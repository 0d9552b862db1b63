//! Unit tests of the ring: its hasher, and its placement against the `consistent_hash_ring`
//! crate it reproduces (building, `next`, fallbacks and point tables).

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
    let push = |out: &mut Vec<(u64, u64, usize)>, s: u64, e: u64, o: usize| match out.last_mut() {
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

fn assert_same_as_reference<S: BuildHasher + Clone>(hasher: S, ids: &[String], keys: &[String]) {
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
