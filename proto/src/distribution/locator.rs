//! The built key placement, [`Locator`]: one placement over a fixed node list, chosen by a
//! [`Distribution`] and dispatching to that mode's algorithm.
//!
//! This module owns building a placement (`new`, `weighted`, and `next` from the previous one),
//! locating keys (with the mode's fallback order when nodes cannot serve) and measuring the
//! share of keys two placements place differently. It does not own the algorithms' point tables
//! or hash functions (the sibling `ring`, `ketama`, `rendezvous` and `hash` modules) nor the
//! modes and their names (the parent module).

use std::sync::Arc;

use super::ketama::{Continuum, KeyHash, PointDigest};
use super::{hash, rendezvous, ring, Distribution};

/// A built key placement over a fixed list of nodes. Cheap to clone (shared).
///
/// Besides [`locate`](Locator::locate), it answers where a key goes when some nodes cannot
/// serve ([`locate_usable`](Locator::locate_usable)), builds the placement of the next node
/// list from itself ([`next`](Locator::next)), and measures the share of keys two placements
/// place differently ([`moved_share`](Locator::moved_share)).
#[derive(Clone)]
pub struct Locator {
    inner: Arc<Inner>,
    distribution: Distribution,
    ids: Arc<[Arc<str>]>,
}

enum Inner {
    Ring(ring::RingLocator),
    Continuum(Continuum),
    Rendezvous(rendezvous::Rendezvous),
    Modula {
        nodes: usize,
        hash: fn(&[u8]) -> u32,
    },
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("distribution", &self.distribution)
            .field("nodes", &self.ids.len())
            .finish()
    }
}

impl Locator {
    /// Builds the placement of `distribution` over nodes identified by `ids` (usually
    /// `host:port`, see [`NodeIdentity`](super::NodeIdentity)), all of the same weight (for
    /// spymemcached's modes: without a weights map). Index `i` of the answer refers to `ids[i]`.
    ///
    /// The ketama modes take the id as the node string's stem, so a twemproxy server with an
    /// explicit name is matched by passing that name.
    pub fn new<S: AsRef<str>>(distribution: Distribution, ids: &[S]) -> Locator {
        Locator::build(distribution, ids, None)
    }

    /// Builds the placement of `distribution` over `(id, weight)` pairs. Modes without weights
    /// ([`Distribution::honours_weights`] is false) ignore them; a weight of 0 counts as 1.
    ///
    /// [`Distribution::KetamaSpymemcached`] and [`Distribution::KetamaAwsJava`] use the
    /// float32 weight formula here even when every weight is 1, as spymemcached does when it is
    /// given a weights map (it differs from the constant 160 points at some node counts, such
    /// as 25).
    pub fn weighted<S: AsRef<str>>(distribution: Distribution, nodes: &[(S, u32)]) -> Locator {
        let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_ref()).collect();
        let weights: Vec<u32> = nodes.iter().map(|&(_, w)| w).collect();
        Locator::build(distribution, &ids, Some(&weights))
    }

    /// The placement of the same mode over the node list `ids` (with `weights`, as
    /// [`Locator::weighted`] would take them, or none, as [`Locator::new`]), reusing the work
    /// done for `self` where the mode allows: the answer is always the one
    /// `Locator::new(self.distribution(), ids)` (or `Locator::weighted`) gives.
    ///
    /// [`Distribution::Ring`] keeps the points of the nodes that stay, hashes only the added
    /// nodes and merges them in, in time linear in the ring's size (a fraction of a millisecond
    /// for a one-node change at 300 nodes, against a few milliseconds for a full build).
    /// Other modes build afresh: their builds are already fast (see `benches/distribution.rs`),
    /// and the ketama modes' points per node depend on the node count.
    pub fn next<S: AsRef<str>>(&self, ids: &[S], weights: Option<&[u32]>) -> Locator {
        match &*self.inner {
            Inner::Ring(ring) => {
                let next = ring.next(&self.ids, ids);
                Locator {
                    inner: Arc::new(Inner::Ring(next)),
                    distribution: self.distribution,
                    ids: self.shared_ids(ids),
                }
            }
            _ => Locator::build(self.distribution, ids, weights),
        }
    }

    /// `ids` as shared strings, reusing this placement's copy of each id that stays.
    fn shared_ids<S: AsRef<str>>(&self, ids: &[S]) -> Arc<[Arc<str>]> {
        let known: std::collections::HashMap<&str, &Arc<str>> =
            self.ids.iter().map(|id| (&**id, id)).collect();
        ids.iter()
            .map(|id| match known.get(id.as_ref()) {
                Some(&shared) => Arc::clone(shared),
                None => Arc::from(id.as_ref()),
            })
            .collect()
    }

    fn build<S: AsRef<str>>(
        distribution: Distribution,
        ids: &[S],
        weights: Option<&[u32]>,
    ) -> Locator {
        let inner = match distribution {
            Distribution::Ring => Inner::Ring(ring::RingLocator::new(ids)),
            Distribution::Ketama => {
                Inner::Continuum(Continuum::libmemcached_weighted(ids, weights, KeyHash::Md5))
            }
            Distribution::KetamaFnv1a64 => Inner::Continuum(Continuum::libmemcached_weighted(
                ids,
                weights,
                KeyHash::Fnv1a64,
            )),
            Distribution::KetamaSpymemcached => Inner::Continuum(Continuum::spymemcached(
                ids,
                weights,
                PointDigest::Md5,
                KeyHash::Md5,
            )),
            Distribution::KetamaAwsJava => Inner::Continuum(Continuum::spymemcached(
                ids,
                weights,
                PointDigest::Sha384,
                KeyHash::Sha384,
            )),
            Distribution::ConsistentLibmemcached | Distribution::ConsistentLibmemcachedMd5 => {
                let key_hash = if distribution == Distribution::ConsistentLibmemcached {
                    KeyHash::OneAtATime
                } else {
                    KeyHash::Md5
                };
                // libmemcached turns on weighted ketama when a server of weight > 1 is added.
                let weighted = weights.is_some_and(|w| w.iter().any(|&w| w > 1));
                Inner::Continuum(if weighted {
                    Continuum::libmemcached_weighted(ids, weights, key_hash)
                } else {
                    Continuum::libmemcached_consistent(ids, key_hash)
                })
            }
            Distribution::Rendezvous => Inner::Rendezvous(rendezvous::Rendezvous::new(ids)),
            Distribution::ModulaLibmemcached => Inner::Modula {
                nodes: ids.len(),
                hash: hash::one_at_a_time,
            },
            Distribution::ModulaJava => Inner::Modula {
                nodes: ids.len(),
                hash: hash::java_string_hash,
            },
        };
        Locator {
            inner: Arc::new(inner),
            distribution,
            ids: ids.iter().map(|id| Arc::from(id.as_ref())).collect(),
        }
    }

    /// The index of the node that owns `key`, or `None` when there are no nodes.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        match &*self.inner {
            Inner::Ring(ring) => ring.locate(key),
            Inner::Continuum(continuum) => continuum.locate(key),
            Inner::Rendezvous(rendezvous) => rendezvous.locate(key),
            Inner::Modula { nodes: 0, .. } => None,
            Inner::Modula { nodes, hash } => Some((hash(key) % *nodes as u32) as usize),
        }
    }

    /// The first node, in the mode's own order of fallbacks for `key`, for which `usable(index)`
    /// is true; `None` when no node is usable. With every node usable this is
    /// [`locate`](Locator::locate), at the same cost when the key's own node is usable.
    ///
    /// The order of fallbacks:
    /// - [`Ring`](Distribution::Ring) and every continuum (the ketama and consistent modes):
    ///   the owner of the key's point, then the owners of the following points, wrapping: the
    ///   keys of an unusable node spread over the nodes that follow its points, as they would
    ///   if it were removed (exactly so for the ring; for the ketama modes whose points per
    ///   node depend on the node count, nearly so). At most one lap of the points (160 per
    ///   node) is walked: with no node usable, that is the cost of a `None`.
    /// - [`Rendezvous`](Distribution::Rendezvous): the highest-scoring usable node (equal scores
    ///   as in `locate`): exactly where the key goes with the unusable nodes removed.
    /// - The modula modes: the key's node, then the following indices in list order, wrapping
    ///   (`i + 1`, `i + 2`, … mod the node count).
    ///
    /// ```
    /// use memcached_autodiscovery_proto::distribution::{Distribution, Locator};
    /// let ids = ["a:11211", "b:11211", "c:11211"];
    /// let locator = Locator::new(Distribution::Ring, &ids);
    /// let owner = locator.locate(b"user:1").unwrap();
    /// let fallback = locator.locate_usable(b"user:1", |i| i != owner).unwrap();
    /// assert_ne!(fallback, owner);
    /// assert_eq!(locator.locate_usable(b"user:1", |_| false), None);
    /// ```
    #[inline]
    pub fn locate_usable(&self, key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        match &*self.inner {
            Inner::Ring(ring) => ring.locate_usable(key, usable),
            Inner::Continuum(continuum) => continuum.locate_usable(key, usable),
            Inner::Rendezvous(rendezvous) => rendezvous.locate_usable(key, usable),
            Inner::Modula { nodes: 0, .. } => None,
            Inner::Modula { nodes, hash } => {
                let first = (hash(key) % *nodes as u32) as usize;
                (first..*nodes).chain(0..first).find(|&i| usable(i))
            }
        }
    }

    /// The exact share of the key hash space (hence, for well-spread keys, of the keys) that
    /// `self` and `other` place on different nodes, where `same_node(i, j)` tells whether node
    /// `i` of `self` is node `j` of `other` (e.g. by comparing [`ids`](Locator::ids)).
    ///
    /// Computed by one merge of the two point tables, without hashing any key, for
    /// [`Ring`](Distribution::Ring) and the continuum modes when both placements are of the same
    /// mode; `None` otherwise (other modes, or different modes). Two empty placements share
    /// everything (0.0); an empty and a non-empty one share nothing (1.0).
    pub fn moved_share(
        &self,
        other: &Locator,
        same_node: impl Fn(usize, usize) -> bool,
    ) -> Option<f64> {
        if self.distribution != other.distribution {
            return None;
        }
        match (&*self.inner, &*other.inner) {
            (Inner::Ring(a), Inner::Ring(b)) => {
                let ((ap, ao), (bp, bo)) = (a.table(), b.table());
                Some(moved_share_of(ap, ao, bp, bo, 1u128 << 64, same_node))
            }
            (Inner::Continuum(a), Inner::Continuum(b)) => {
                let ((ap, ao), (bp, bo)) = (a.table(), b.table());
                Some(moved_share_of(ap, ao, bp, bo, 1u128 << 32, same_node))
            }
            _ => None,
        }
    }

    /// The node ids this placement was built over, in index order.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }

    /// The mode this placement was built for.
    pub fn distribution(&self) -> Distribution {
        self.distribution
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The first usable owner in a point table's `owners`, starting at slot `at` and wrapping: the
/// walk of [`Locator::locate_usable`] for the ring and the continuum (at most one lap).
pub(super) fn first_usable(
    owners: &[u32],
    at: usize,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let (before, from) = owners.split_at(at.min(owners.len()));
    from.iter()
        .chain(before)
        .map(|&o| o as usize)
        .find(|&o| usable(o))
}

/// The share of a hash space of `space` values (`points` lie below it) on which two point
/// tables (points ascending, each owning the hashes from just after the previous point up to
/// itself, the first also those after the last point) have owners that are not `same`.
///
/// One merge: between two consecutive points of either table, both owners are constant.
pub(super) fn moved_share_of<P: Copy + Ord + Into<u128>>(
    a_points: &[P],
    a_owners: &[u32],
    b_points: &[P],
    b_owners: &[u32],
    space: u128,
    same: impl Fn(usize, usize) -> bool,
) -> f64 {
    let (Some(&a_first), Some(&b_first)) = (a_owners.first(), b_owners.first()) else {
        let both_empty = a_owners.is_empty() && b_owners.is_empty();
        return if both_empty { 0.0 } else { 1.0 };
    };
    let owner = |owners: &[u32], i: usize, first: u32| owners.get(i).copied().unwrap_or(first);
    let (mut i, mut j) = (0, 0);
    let mut start: u128 = 0;
    let mut moved: u128 = 0;
    loop {
        let end = match (a_points.get(i), b_points.get(j)) {
            (None, None) => break,
            (Some(&p), None) | (None, Some(&p)) => p,
            (Some(&p), Some(&q)) => p.min(q),
        };
        let end_value: u128 = end.into();
        let (oa, ob) = (owner(a_owners, i, a_first), owner(b_owners, j, b_first));
        if !same(oa as usize, ob as usize) {
            moved += end_value + 1 - start.min(end_value + 1);
        }
        start = end_value + 1;
        if a_points.get(i) == Some(&end) {
            i += 1;
        }
        if b_points.get(j) == Some(&end) {
            j += 1;
        }
    }
    // After the last point of both: the first points' owners.
    if start < space && !same(a_first as usize, b_first as usize) {
        moved += space - start;
    }
    moved as f64 / space as f64
}
