//! The immutable topology snapshot: a configuration, its key placement and a connection handle
//! per node.
//!
//! Requests load the current snapshot without locking and route through it; the topology
//! ([`crate::topology`]) builds the next one with [`Snapshot::next`] and swaps it in whole, so a
//! request sees the old topology or the new one, never a mix. `next` keeps the connections of nodes that stay (same
//! `hostname:port` and same address), opens new ones for new or re-addressed nodes (a node whose
//! IP changed is reconnected, not re-hashed, unless the placement hashes IPs: see
//! [`NodeIdentity`]), and lets removed nodes' connections close once their in-flight requests
//! finish. This module does no I/O itself; connection tasks start lazily.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{ClusterConfig, Node};
use crate::connection::{Connection, ConnectionSettings, Role};
use crate::distribution::{Distribution, Locator, NodeIdentity};
use crate::transport::Target;

/// One node of a snapshot with its connections.
pub(crate) struct NodeHandle {
    pub node: Node,
    pub id: Arc<str>,
    target: Target,
    connections: Vec<Connection>,
    next: AtomicUsize,
}

impl NodeHandle {
    /// Whether the node is marked down (by any of its connections).
    #[inline]
    pub fn is_down(&self) -> bool {
        self.connections.iter().any(Connection::is_down)
    }

    /// Notes, on each of the node's connections that is down, that `key` was written or deleted
    /// on `stand_in` instead (see [`Connection::note_written_elsewhere`]). Returns `false` when
    /// none is down any more: the write must be routed again.
    pub fn note_written_elsewhere(&self, key: &[u8], stand_in: &Connection) -> bool {
        let mut noted = false;
        for connection in &self.connections {
            noted |= connection.note_written_elsewhere(key, stand_in);
        }
        noted
    }

    /// One of the node's connections (round robin when there are several).
    #[inline]
    pub fn connection(&self) -> &Connection {
        &self.connections[self.pick()]
    }

    /// The index of the next of the node's connections in the round robin.
    #[inline]
    pub(crate) fn pick(&self) -> usize {
        let n = self.connections.len();
        if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        }
    }

    /// The node's connection `i` (from [`NodeHandle::pick`]).
    #[inline]
    pub(crate) fn connection_at(&self, i: usize) -> &Connection {
        &self.connections[i]
    }
}

/// What changed between two snapshots, for logs and for `refresh()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TopologyChange {
    /// Nodes (`host:port`) that joined.
    pub added: Vec<String>,
    /// Nodes that left.
    pub removed: Vec<String>,
    /// Nodes that stayed but now have another address (reconnected, keys unchanged).
    pub readdressed: Vec<String>,
    /// The share of keys whose owner changed (see [`Snapshot::moved_share`]).
    pub moved_share: f64,
}

impl TopologyChange {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.readdressed.is_empty()
    }
}

/// What happens to the keys of a node that is marked down (its connection failed: refused,
/// reset, timed out; see [`ClientBuilder::reconnect_backoff`](crate::ClientBuilder::reconnect_backoff)).
/// Set with [`ClientBuilder::failure_mode`](crate::ClientBuilder::failure_mode).
///
/// The trade-off of [`Redistribute`](FailureMode::Redistribute): while a node is down its keys
/// live on another node, the stand-in, so a key can be served by two nodes across the switch.
/// A node that comes back without having restarted (a network partition, not a crash) still
/// holds the values it had before. For this client's own writes that is taken care of:
///
/// * each key it writes or deletes on a stand-in while the owner is down (every one-key write:
///   `set`, `add`, `cas`, `append`, `incr`, `touch`, `delete`, ..., and `get_or_load` and
///   `invalidate`) is noted, and deleted on the node when it answers again, before its keys
///   come back to it; past 10,000 keys noted for one down node, the node is flushed
///   (`flush_all`) instead before it is marked up: a cache may lose data, it must not serve
///   stale;
/// * once the node is back, the stand-ins' copies of those keys are deleted, and in any case a
///   value written to a stand-in lives there no longer than
///   [`ClientBuilder::stand_in_ttl`](crate::ClientBuilder::stand_in_ttl) (5 s by default), so
///   it is not served again if the node fails again.
///
/// Other processes' writes are not in this client's record: a key another client wrote or
/// deleted on a stand-in is served by the returned node with the value it held before, until
/// that expires (or until that client's own record deletes it, if it runs this library), and
/// a copy another client left on a stand-in is served again if the node fails again, within
/// that client's stand-in cap. Use short TTLs, or [`FailFast`](FailureMode::FailFast), where
/// several writers share keys and that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Requests for a down node's keys fail at once with [`Error::NodeDown`](crate::Error::NodeDown)
    /// until its backoff is over and a request finds it back. The default.
    #[default]
    FailFast,
    /// While a node is down its keys go to the next live node in the distribution's own order:
    /// the next point of the ring or continuum, the next-highest score for rendezvous, the next
    /// node of the list for the modula modes. The down node's connection reconnects on its own
    /// (within the reconnect backoff) and its keys return to it once it answers a probe
    /// (`version`) on the new connection: a node that accepts connections without answering
    /// (a stopped process) gets no caller's request. Before that answer, the node deletes the
    /// keys this client wrote or deleted elsewhere meanwhile (see the trade-off above).
    Redistribute,
}

/// How a snapshot places keys: the mode, which name of a node it hashes, node weights, and
/// where a down node's keys go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placement {
    pub distribution: Distribution,
    pub identity: NodeIdentity,
    /// Weights by `hostname:port` (absent nodes weigh 1); `None` when none were configured.
    pub weights: Option<Arc<HashMap<String, u32>>>,
    pub failure_mode: FailureMode,
    /// The longest time to live of a value written to a stand-in, in seconds (at least 1).
    pub stand_in_ttl: u32,
}

impl Placement {
    /// The placement over `nodes` (placed by `placement_ids`), built from `previous`: the
    /// default ring reuses the points of the nodes that stay and hashes only the new ones.
    fn locator(
        &self,
        previous: &Locator,
        nodes: &[NodeHandle],
        placement_ids: &[String],
    ) -> Locator {
        let weights: Option<Vec<u32>> = self.weights.as_ref().map(|weights| {
            nodes
                .iter()
                .map(|n| weights.get(&*n.id).copied().unwrap_or(1))
                .collect()
        });
        previous.next(placement_ids, weights.as_deref())
    }
}

/// Everything a request needs, immutable once built.
pub(crate) struct Snapshot {
    pub config: Arc<ClusterConfig>,
    pub nodes: Vec<NodeHandle>,
    pub locator: Locator,
    pub placement: Placement,
    /// What each node is placed by (see [`NodeIdentity`]), in node order.
    placement_ids: Vec<String>,
}

fn target_of(node: &Node) -> Target {
    Target::new(
        node.hostname(),
        node.port(),
        node.ip().map(|ip| SocketAddr::new(ip, node.port())),
    )
}

impl Snapshot {
    /// A snapshot with no nodes.
    pub fn empty(placement: Placement) -> Snapshot {
        Snapshot {
            config: Arc::new(ClusterConfig::new(0, Vec::new())),
            nodes: Vec::new(),
            locator: Locator::new::<&str>(placement.distribution, &[]),
            placement,
            placement_ids: Vec::new(),
        }
    }

    /// The node a request for `key` goes to now: its owner, or, under
    /// [`FailureMode::Redistribute`] while the owner is down, the next live node.
    #[inline]
    pub fn route(&self, key: &[u8]) -> Option<&NodeHandle> {
        self.route_index(key).and_then(|i| self.nodes.get(i))
    }

    /// The index of the node [`Snapshot::route`] picks.
    #[inline]
    pub fn route_index(&self, key: &[u8]) -> Option<usize> {
        self.route_and_owner(key).map(|(index, _)| index)
    }

    /// The index of the node [`Snapshot::route`] picks, and of the key's owner.
    #[inline]
    pub fn route_and_owner(&self, key: &[u8]) -> Option<(usize, usize)> {
        let owner = self.locator.locate(key)?;
        if self.placement.failure_mode == FailureMode::FailFast
            || !self.nodes.get(owner).is_some_and(NodeHandle::is_down)
        {
            return Some((owner, owner));
        }
        let usable = |i: usize| self.nodes.get(i).is_some_and(|n| !n.is_down());
        let index = self.locator.locate_usable(key, usable).unwrap_or(owner);
        Some((index, owner))
    }

    /// The node that owns `key` by placement alone, down or not.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> Option<&NodeHandle> {
        self.locator.locate(key).and_then(|i| self.nodes.get(i))
    }

    /// The snapshot for `config`, reusing this one's connections where the node is unchanged.
    /// Duplicate node entries (same `hostname:port`) are kept once.
    pub fn next(
        &self,
        config: ClusterConfig,
        settings: &Arc<ConnectionSettings>,
        connections_per_node: usize,
    ) -> (Snapshot, TopologyChange) {
        let mut change = TopologyChange::default();
        let old: HashMap<&str, &NodeHandle> = self.nodes.iter().map(|n| (&*n.id, n)).collect();
        let mut seen: HashSet<Arc<str>> = HashSet::with_capacity(config.nodes().len());
        let mut nodes: Vec<NodeHandle> = Vec::with_capacity(config.nodes().len());
        let mut kept_config = Vec::with_capacity(config.nodes().len());
        for node in config.nodes() {
            let id: Arc<str> = Arc::from(node.id());
            if !seen.insert(id.clone()) {
                continue;
            }
            let target = target_of(node);
            let old = old.get(&*id);
            let connections = match old {
                Some(old) if old.target == target => old.connections.clone(),
                _ => {
                    match old {
                        Some(_) => change.readdressed.push(id.to_string()),
                        None => change.added.push(id.to_string()),
                    }
                    (0..connections_per_node.max(1))
                        .map(|_| {
                            Connection::spawn(
                                Role::Node,
                                id.clone(),
                                target.clone(),
                                settings.clone(),
                            )
                        })
                        .collect()
                }
            };
            kept_config.push(node.clone());
            nodes.push(NodeHandle {
                node: node.clone(),
                id,
                target,
                connections,
                next: AtomicUsize::new(0),
            });
        }
        change.removed = self
            .nodes
            .iter()
            .filter(|old| !seen.contains(&old.id))
            .map(|old| old.id.to_string())
            .collect();
        // The placement is rebuilt only when what it hashes changed: nodes joined or left, the
        // order changed, or (identity by IP) a node was re-addressed.
        let placement_ids: Vec<String> = nodes
            .iter()
            .map(|n| self.placement.identity.placement_id(&n.node))
            .collect();
        let locator = if placement_ids == self.placement_ids {
            self.locator.clone()
        } else {
            self.placement
                .locator(&self.locator, &nodes, &placement_ids)
        };
        let snapshot = Snapshot {
            config: Arc::new(ClusterConfig::new(config.version(), kept_config)),
            nodes,
            locator,
            placement: self.placement.clone(),
            placement_ids,
        };
        (snapshot, change)
    }

    /// The share of keys (0.0 to 1.0) that `other` places on another node than `self`, for
    /// topology-change events and the warm handoff: exact from the two point tables for the
    /// ring and the continuum modes (one merge), from a fixed sample of 1,000 keys otherwise.
    pub fn moved_share(&self, other: &Snapshot) -> f64 {
        let same = |a: usize, b: usize| match (self.nodes.get(a), other.nodes.get(b)) {
            (Some(a), Some(b)) => a.id == b.id,
            _ => false,
        };
        if let Some(share) = self.locator.moved_share(&other.locator, same) {
            return share;
        }
        const SAMPLE: u32 = 1000;
        let moved = (0..SAMPLE)
            .filter(|i| {
                let key = format!("sample-key-{i}");
                let a = self.owner(key.as_bytes()).map(|n| &n.id);
                let b = other.owner(key.as_bytes()).map(|n| &n.id);
                a != b
            })
            .count();
        moved as f64 / f64::from(SAMPLE)
    }
}
