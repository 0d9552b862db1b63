//! The ketama family: a sorted continuum of 32-bit points, built once per topology, searched
//! with a binary search for the first point at or after the key's hash (wrapping to the first).
//!
//! Peers differ in four details, each a parameter here: the string hashed for a node's points
//! (port elided at 11211 or not), how many points a node gets (a constant, or libmemcached's
//! float32 weight formula), how a node string becomes points (four per MD5/SHA-384 digest, or
//! one per hash), and which node wins when two points are equal.

use super::hash;

/// The default memcached port: libmemcached and twemproxy leave it out of node strings.
const DEFAULT_PORT_SUFFIX: &str = ":11211";

/// Points per node before weights: 160 (40 digests of 4 points) in every weighted ketama.
const KETAMA_POINTS: u32 = 160;

/// Points per node in libmemcached's non-weighted consistent mode (one hash per string).
const LIBMEMCACHED_CONSISTENT_POINTS: u32 = 100;

/// How a key becomes a position on the continuum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyHash {
    /// `md5_32` of the raw key bytes.
    Md5,
    /// `sha384_32` of the raw key bytes (AWS Java client).
    Sha384,
    /// twemproxy's truncated FNV-1a over signed bytes; an empty key hashes to 0 as in twemproxy.
    Fnv1a64,
    /// libmemcached's one-at-a-time over signed bytes.
    OneAtATime,
}

impl KeyHash {
    #[inline]
    fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::Md5 => hash::md5_32(key),
            KeyHash::Sha384 => hash::sha384_32(key),
            KeyHash::Fnv1a64 if key.is_empty() => 0,
            KeyHash::Fnv1a64 => hash::fnv1a_64_truncated(key),
            KeyHash::OneAtATime => hash::one_at_a_time(key),
        }
    }
}

/// The digest that turns one node string into four points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PointDigest {
    Md5,
    Sha384,
}

impl PointDigest {
    #[inline]
    fn points(self, text: &[u8]) -> [u32; 4] {
        match self {
            PointDigest::Md5 => hash::md5_points(text),
            PointDigest::Sha384 => hash::sha384_points(text),
        }
    }
}

/// Which node keeps a position that two nodes' points share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ties {
    /// The node listed first (libmemcached sorts by value, then server index; twemproxy on
    /// glibc sorts stably from the same insertion order).
    FirstListed,
    /// The node listed last (spymemcached fills a `TreeMap` in list order: later puts win).
    LastListed,
}

/// The number of points libmemcached, twemproxy and spymemcached (with a weights map) give a
/// node of `weight` out of `total` over `live` nodes, computed step by step in `f32` exactly as
/// they do: `floor(f32(f32(f32(w / total) * 160) / 4) * live) + 1e-10) * 4`.
///
/// With 25 equal nodes this is 156, not 160: `f32` rounding makes `x` 39.999996.
pub fn ketama_points_per_node(weight: u32, total: u64, live: usize) -> u32 {
    let pct = weight as f32 / total as f32;
    let x: f32 = pct * KETAMA_POINTS as f32 / 4.0 * live as f32;
    ((f64::from(x) + 1e-10).floor() as u32) * 4
}

/// The node string stem of libmemcached and twemproxy: `host:port`, or `host` when the port is
/// 11211.
fn elide_default_port(id: &str) -> &str {
    id.strip_suffix(DEFAULT_PORT_SUFFIX).unwrap_or(id)
}

/// Calls `each(i, "stem-i")` for `i` in `0..count`, reusing one buffer.
fn for_each_node_string(stem: &str, count: u32, mut each: impl FnMut(&[u8])) {
    let mut buf = Vec::with_capacity(stem.len() + 12);
    buf.extend_from_slice(stem.as_bytes());
    buf.push(b'-');
    let keep = buf.len();
    for i in 0..count {
        buf.truncate(keep);
        push_decimal(&mut buf, i);
        each(&buf);
    }
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// A built continuum: positions ascending and unique, and the node index owning each.
///
/// `starts` indexes the positions by their top `bits` bits: `starts[b]` is the index of the
/// first position whose top bits are `>= b` (`starts[2^bits]` = the count), so a lookup
/// binary-searches only the few positions that share the key hash's top bits instead of the
/// whole continuum (48,000 positions at 300 nodes).
#[derive(Debug, Clone)]
pub(crate) struct Continuum {
    positions: Box<[u32]>,
    owners: Box<[u32]>,
    starts: Box<[u32]>,
    bits: u32,
    key_hash: KeyHash,
}

/// Sorts packed `(position << 32) | node` values by position, stably (so equal positions keep
/// the order they were pushed in: node order), with an LSD radix sort over the position's four
/// bytes: linear time, where a comparison sort of 48,000 points costs more than hashing them.
fn sort_by_position(values: &mut Vec<u64>) {
    let mut spare = vec![0u64; values.len()];
    for pass in 0..4 {
        let shift = 32 + 8 * pass;
        let mut offsets = [0usize; 256];
        for &v in values.iter() {
            offsets[((v >> shift) & 0xFF) as usize] += 1;
        }
        let mut sum = 0;
        for slot in offsets.iter_mut() {
            let count = *slot;
            *slot = sum;
            sum += count;
        }
        for &v in values.iter() {
            let digit = ((v >> shift) & 0xFF) as usize;
            spare[offsets[digit]] = v;
            offsets[digit] += 1;
        }
        std::mem::swap(values, &mut spare);
    }
}

/// How many top bits of a position index a continuum of `len` positions: about four
/// positions per bucket, between 4 and 16 bits.
fn index_bits(len: usize) -> u32 {
    (usize::BITS - len.max(1).leading_zeros())
        .saturating_sub(2)
        .clamp(4, 16)
}

/// Collects `(position, node)` pairs, then sorts them into a [`Continuum`].
struct Points(Vec<u64>);

impl Points {
    fn with_capacity(n: usize) -> Points {
        Points(Vec::with_capacity(n))
    }

    #[inline]
    fn push(&mut self, position: u32, node: usize) {
        self.0.push((u64::from(position) << 32) | node as u64);
    }

    fn finish(mut self, ties: Ties, key_hash: KeyHash) -> Continuum {
        sort_by_position(&mut self.0);
        let mut positions = Vec::with_capacity(self.0.len());
        let mut owners: Vec<u32> = Vec::with_capacity(self.0.len());
        for &packed in &self.0 {
            let position = (packed >> 32) as u32;
            let owner = packed as u32;
            if positions.last() == Some(&position) {
                let kept = owners.last_mut().expect("one owner per position");
                *kept = match ties {
                    Ties::FirstListed => (*kept).min(owner),
                    Ties::LastListed => (*kept).max(owner),
                };
                continue;
            }
            positions.push(position);
            owners.push(owner);
        }
        Continuum::new(positions, owners, key_hash)
    }
}

/// Normalised weights: `None` stands for "no weights given"; 0 counts as 1.
fn weight_of(weights: Option<&[u32]>, i: usize) -> u32 {
    weights.and_then(|w| w.get(i).copied()).unwrap_or(1).max(1)
}

/// The sum of the weights of `nodes` nodes, each as [`weight_of`] reads it.
fn total_weight(weights: Option<&[u32]>, nodes: usize) -> u64 {
    (0..nodes).map(|i| u64::from(weight_of(weights, i))).sum()
}

impl Continuum {
    fn new(positions: Vec<u32>, owners: Vec<u32>, key_hash: KeyHash) -> Continuum {
        let bits = index_bits(positions.len());
        let buckets = 1usize << bits;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut i = 0;
        for b in 0..buckets {
            while i < positions.len() && ((positions[i] >> (32 - bits)) as usize) < b {
                i += 1;
            }
            starts.push(i as u32);
        }
        starts.push(positions.len() as u32);
        Continuum {
            positions: positions.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            bits,
            key_hash,
        }
    }

    /// libmemcached's weighted ketama (php-memcached `OPT_LIBKETAMA_COMPATIBLE`) and twemproxy's
    /// ketama: node strings `host:port-i` (`host-i` at port 11211), points from the float32
    /// formula (weights default to 1, so this formula applies without weights too), four MD5
    /// points per string, ties to the node listed first.
    pub(crate) fn libmemcached_weighted<S: AsRef<str>>(
        ids: &[S],
        weights: Option<&[u32]>,
        key_hash: KeyHash,
    ) -> Continuum {
        let total = total_weight(weights, ids.len());
        let mut points = Points::with_capacity(ids.len() * KETAMA_POINTS as usize);
        for (node, id) in ids.iter().enumerate() {
            let count = ketama_points_per_node(weight_of(weights, node), total, ids.len());
            for_each_node_string(elide_default_port(id.as_ref()), count / 4, |text| {
                for p in hash::md5_points(text) {
                    points.push(p, node);
                }
            });
        }
        points.finish(Ties::FirstListed, key_hash)
    }

    /// libmemcached's non-weighted consistent mode: node strings as in the weighted mode, 100
    /// points per node, each the key hash of one string, ties to the node listed first.
    pub(crate) fn libmemcached_consistent<S: AsRef<str>>(
        ids: &[S],
        key_hash: KeyHash,
    ) -> Continuum {
        let mut points = Points::with_capacity(ids.len() * LIBMEMCACHED_CONSISTENT_POINTS as usize);
        for (node, id) in ids.iter().enumerate() {
            let stem = elide_default_port(id.as_ref());
            for_each_node_string(stem, LIBMEMCACHED_CONSISTENT_POINTS, |text| {
                points.push(key_hash.hash(text), node);
            });
        }
        points.finish(Ties::FirstListed, key_hash)
    }

    /// spymemcached's `KetamaNodeLocator` with `KETAMA_HASH`: node strings `id-i` with the id
    /// as given (the port always present), four points per digest; 160 points per node without
    /// weights, the float32 formula with them; later nodes win ties.
    pub(crate) fn spymemcached<S: AsRef<str>>(
        ids: &[S],
        weights: Option<&[u32]>,
        digest: PointDigest,
        key_hash: KeyHash,
    ) -> Continuum {
        let total = total_weight(weights, ids.len());
        let mut points = Points::with_capacity(ids.len() * KETAMA_POINTS as usize);
        for (node, id) in ids.iter().enumerate() {
            let count = match weights {
                None => KETAMA_POINTS,
                Some(_) => ketama_points_per_node(weight_of(weights, node), total, ids.len()),
            };
            for_each_node_string(id.as_ref(), count / 4, |text| {
                for p in digest.points(text) {
                    points.push(p, node);
                }
            });
        }
        points.finish(Ties::LastListed, key_hash)
    }

    /// The node owning `key`: the first position at or after its hash, wrapping to the first.
    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> Option<usize> {
        if self.positions.is_empty() {
            return None;
        }
        Some(self.owner_of(self.key_hash.hash(key)))
    }

    /// The owner of the first position `>= h`, or of the first position when none is (the
    /// continuum is not empty).
    #[inline]
    fn owner_of(&self, h: u32) -> usize {
        self.owners[self.slot_of(h)] as usize
    }

    /// The index of the first position `>= h`, or 0 when none is (the continuum is not empty).
    #[inline]
    fn slot_of(&self, h: u32) -> usize {
        // Every position in starts[b]..starts[b + 1] has the top bits b of h, and the one at
        // starts[b + 1] (if any) is above h: the answer is in that range or just after it.
        let b = (h >> (32 - self.bits)) as usize;
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let i = lo + self.positions[lo..hi].partition_point(|&p| p < h);
        if i == self.positions.len() {
            0
        } else {
            i
        }
    }

    /// The owner of the key's position if `usable`, else the owner of the next position
    /// (wrapping) whose owner is `usable`; `None` when no position in one lap has one.
    #[inline]
    pub(crate) fn locate_usable(
        &self,
        key: &[u8],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.positions.is_empty() {
            return None;
        }
        let i = self.slot_of(self.key_hash.hash(key));
        super::locator::first_usable(&self.owners, i, usable)
    }

    /// The positions, ascending, and their owners.
    pub(crate) fn table(&self) -> (&[u32], &[u32]) {
        (&self.positions, &self.owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_points_match_the_peers_arithmetic() {
        assert_eq!(ketama_points_per_node(1, 3, 3), 160);
        assert_eq!(ketama_points_per_node(1, 5, 5), 160);
        // The f32 artefact the spec documents: 25 equal nodes get 156 points each.
        assert_eq!(ketama_points_per_node(1, 25, 25), 156);
        for n in [47, 50, 55, 61, 71, 94, 100] {
            assert_eq!(ketama_points_per_node(1, n as u64, n), 156, "n = {n}");
        }
        let short: Vec<usize> = (1..500)
            .filter(|&n| ketama_points_per_node(1, n as u64, n) != 160)
            .collect();
        assert_eq!(short.len(), 54, "{short:?}");
        // Weights: 2 of 4 over 3 nodes gets twice a share of 160 * 3 / 4.
        assert_eq!(ketama_points_per_node(2, 4, 3), 240);
        assert_eq!(ketama_points_per_node(1, 4, 3), 120);
    }

    #[test]
    fn node_strings_elide_only_the_default_port() {
        assert_eq!(elide_default_port("cache-1:11211"), "cache-1");
        assert_eq!(elide_default_port("cache-1:11212"), "cache-1:11212");
        assert_eq!(elide_default_port("::1:11211"), "::1");
        let mut seen = Vec::new();
        for_each_node_string("h", 12, |t| {
            seen.push(String::from_utf8(t.to_vec()).unwrap())
        });
        assert_eq!(seen[0], "h-0");
        assert_eq!(seen[11], "h-11");
    }

    #[test]
    fn ties_follow_each_peer() {
        let mut a = Points::with_capacity(4);
        a.push(10, 0);
        a.push(10, 2);
        a.push(10, 1);
        a.push(20, 1);
        let first = a.finish(Ties::FirstListed, KeyHash::Md5);
        assert_eq!(&*first.positions, &[10, 20]);
        assert_eq!(&*first.owners, &[0, 1]);
        let mut b = Points::with_capacity(4);
        b.push(10, 1);
        b.push(10, 2);
        b.push(10, 0);
        let last = b.finish(Ties::LastListed, KeyHash::Md5);
        assert_eq!(&*last.owners, &[2]);
    }

    #[test]
    fn lookup_takes_the_first_point_at_or_after_the_hash_and_wraps() {
        let c = Continuum::new(vec![100, 200, 300], vec![0, 1, 2], KeyHash::Md5);
        let at = |h: u32| c.owner_of(h);
        assert_eq!(at(0), 0);
        assert_eq!(at(100), 0);
        assert_eq!(at(101), 1);
        assert_eq!(at(300), 2);
        assert_eq!(at(301), 0);
        assert_eq!(at(u32::MAX), 0);
        // Positions spread over every bucket, including the first and last.
        let high = Continuum::new(
            vec![0, 5, 0x1000_0000, 0x8000_0000, 0xFFFF_FFF0, u32::MAX],
            vec![0, 1, 2, 3, 4, 5],
            KeyHash::Md5,
        );
        for (h, owner) in [
            (0, 0),
            (1, 1),
            (6, 2),
            (0x1000_0000, 2),
            (0x1000_0001, 3),
            (0x8000_0001, 4),
            (0xFFFF_FFF1, 5),
            (u32::MAX, 5),
        ] {
            assert_eq!(high.owner_of(h), owner, "{h:#x}");
        }
    }

    #[test]
    fn the_bucket_index_agrees_with_a_plain_binary_search() {
        let ids: Vec<String> = (0..300).map(|i| format!("node-{i}:11211")).collect();
        let c = Continuum::libmemcached_weighted(&ids, None, KeyHash::Md5);
        assert_eq!(c.bits, 14);
        let mut h: u32 = 12345;
        for _ in 0..100_000 {
            h = h.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let i = c.positions.partition_point(|&p| p < h);
            let expected = c.owners[if i == c.positions.len() { 0 } else { i }] as usize;
            assert_eq!(c.owner_of(h), expected);
        }
        for h in [
            0,
            1,
            u32::MAX,
            c.positions[0],
            c.positions[c.positions.len() - 1],
        ] {
            let i = c.positions.partition_point(|&p| p < h);
            let expected = c.owners[if i == c.positions.len() { 0 } else { i }] as usize;
            assert_eq!(c.owner_of(h), expected);
        }
    }

    #[test]
    fn the_radix_sort_is_a_stable_sort_by_position() {
        let mut values: Vec<u64> = Vec::new();
        let mut x: u32 = 7;
        for node in 0..50u64 {
            for _ in 0..100 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                // Few distinct positions, so that many are equal.
                values.push((u64::from(x % 997) << 32) | node);
            }
        }
        let mut expected = values.clone();
        expected.sort_by_key(|v| v >> 32);
        sort_by_position(&mut values);
        assert_eq!(values, expected);
    }

    #[test]
    fn continuum_sizes() {
        let ids = ["a:1", "b:2", "c:3"];
        assert_eq!(
            Continuum::libmemcached_weighted(&ids, None, KeyHash::Md5)
                .positions
                .len(),
            480
        );
        assert_eq!(
            Continuum::libmemcached_consistent(&ids, KeyHash::OneAtATime)
                .positions
                .len(),
            300
        );
        assert_eq!(
            Continuum::spymemcached(&ids, None, PointDigest::Sha384, KeyHash::Sha384)
                .positions
                .len(),
            480
        );
        let weighted = Continuum::libmemcached_weighted(&ids, Some(&[2, 1, 1]), KeyHash::Md5);
        assert_eq!(weighted.positions.len(), 240 + 120 + 120);
        let empty: [&str; 0] = [];
        assert_eq!(
            Continuum::libmemcached_weighted(&empty, None, KeyHash::Md5).locate(b"k"),
            None
        );
    }
}
