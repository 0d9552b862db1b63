//! The default placement: `consistent_hash_ring` over a hash function specified here.
//!
//! The ring crate hashes through `std::hash::Hash`, whose byte stream differs between `&str` and
//! `&[u8]` and is not promised stable across Rust versions. So keys and node identities are
//! wrapped in types that feed their raw bytes, and nothing else, to [`StableHasher`]; integers
//! (the ring chains vnode hashes) are fed as 8 little-endian bytes. The result is the same on
//! every platform and release, and pinned by a golden test.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use consistent_hash_ring::{Ring, RingBuilder};

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

/// A node on the ring: hashed and compared by its identity only.
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

/// A key: hashed as its raw bytes.
struct RawKey<'a>(&'a [u8]);

impl Hash for RawKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

#[derive(Clone)]
pub(crate) struct RingLocator {
    ring: Ring<RingNode, BuildStableHasher>,
}

impl RingLocator {
    pub(crate) fn new<S: AsRef<str>>(ids: &[S]) -> Self {
        let ring = RingBuilder::new(BuildStableHasher)
            .vnodes(RING_VNODES)
            .nodes_iter(ids.iter().enumerate().map(|(index, id)| RingNode {
                id: Arc::from(id.as_ref()),
                index,
            }))
            .build();
        RingLocator { ring }
    }

    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> Option<usize> {
        self.ring.try_get(RawKey(key)).map(|n| n.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::{Distribution, Locator};
    use bytes::Bytes;

    /// The ring's hash of a byte string: 64-bit FNV-1a, then the 64-bit finalizer of MurmurHash3
    /// (fmix64) so that nearby inputs land far apart on the ring.
    fn ring_hash(bytes: &[u8]) -> u64 {
        let mut h = StableHasher::default();
        h.write(bytes);
        h.finish()
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

    /// The node of the first of the nodes' points at or after `ring_hash(key)` (wrapping), the
    /// points of a node being `ring_hash(id)` and then `ring_hash` of the previous point's
    /// little-endian bytes: the placement the ring must give, worked out without it.
    fn by_hand(ids: &[String], key: &[u8]) -> usize {
        let mut points = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            let mut point = ring_hash(id.as_bytes());
            for _ in 0..RING_VNODES {
                points.push((point, index));
                point = ring_hash(&point.to_le_bytes());
            }
        }
        points.sort_unstable();
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
    fn empty_ring_locates_nothing() {
        let ids: [&str; 0] = [];
        assert_eq!(RingLocator::new(&ids).locate(b"k"), None);
    }
}
