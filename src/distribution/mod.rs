//! Where a key goes: the key-placement modes, pure (no sockets, no clocks).
//!
//! A [`Locator`] is built once per cluster snapshot from the node identities (`hostname:port`)
//! and answers, for a key's raw bytes, the index of the node that owns it. This module owns the
//! placement algorithms and their exact hash functions; it does not own node connections or the
//! cluster configuration.

mod ring;

pub use ring::{ring_hash, RING_VNODES};

/// How keys are spread over the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// Consistent hashing over a ring of virtual nodes (the `consistent_hash_ring` crate), with
    /// [`RING_VNODES`] points per node placed by [`ring_hash`] of the node identity
    /// `hostname:port`. Adding one node to N moves about 1/(N+1) of the keys; a node whose IP
    /// changes keeps its keys. The default.
    #[default]
    Ring,
}

impl Distribution {
    /// The mode's name, as the command-line tool spells it.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ring => "ring",
        }
    }

    /// Looks a mode up by its name.
    pub fn from_name(name: &str) -> Option<Distribution> {
        match name {
            "ring" => Some(Distribution::Ring),
            _ => None,
        }
    }
}

/// A built key placement over a fixed list of nodes.
#[derive(Clone)]
pub struct Locator {
    inner: ring::RingLocator,
    len: usize,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator").field("nodes", &self.len).finish()
    }
}

impl Locator {
    /// Builds the placement of `distribution` over nodes identified by `ids` (usually
    /// `hostname:port`). Index `i` of the answer refers to `ids[i]`.
    pub fn new<S: AsRef<str>>(distribution: Distribution, ids: &[S]) -> Locator {
        let inner = match distribution {
            Distribution::Ring => ring::RingLocator::new(ids),
        };
        Locator {
            inner,
            len: ids.len(),
        }
    }

    /// The index of the node that owns `key`, or `None` when there are no nodes.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        self.inner.locate(key)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
