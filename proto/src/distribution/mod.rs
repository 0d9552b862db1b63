//! Where a key goes: the key-placement modes, pure (no sockets, no clocks).
//!
//! A [`Locator`] is built once per cluster snapshot from the node identities (`host:port`,
//! see [`NodeIdentity`]) and answers, for a key's raw bytes, the index of the node that owns it.
//! This module owns the placement algorithms and their exact hash functions (in its private `hash` module); it does
//! not own node connections or the cluster configuration.
//!
//! Besides the crate's own [`Distribution::Ring`], every mode reproduces, bit for bit, the
//! placement of another memcached client, so that this crate and that client share one cache:
//!
//! | mode | places keys like |
//! |---|---|
//! | [`Ketama`](Distribution::Ketama) | php-memcached with `OPT_LIBKETAMA_COMPATIBLE`, the AWS PHP cluster client, twemproxy `hash: md5` |
//! | [`KetamaFnv1a64`](Distribution::KetamaFnv1a64) | twemproxy `hash: fnv1a_64` |
//! | [`KetamaSpymemcached`](Distribution::KetamaSpymemcached) | spymemcached `KetamaConnectionFactory` |
//! | [`KetamaAwsJava`](Distribution::KetamaAwsJava) | the AWS ElastiCache Cluster Client for Java (1.2.0 and later) with `KetamaConnectionFactory` |
//! | [`ConsistentLibmemcached`](Distribution::ConsistentLibmemcached) | php-memcached / libmemcached `DISTRIBUTION_CONSISTENT` |
//! | [`ConsistentLibmemcachedMd5`](Distribution::ConsistentLibmemcachedMd5) | the same with `HASH_MD5` |
//! | [`Rendezvous`](Distribution::Rendezvous) | pymemcache `HashClient` |
//! | [`ModulaLibmemcached`](Distribution::ModulaLibmemcached) | php-memcached / libmemcached without options |
//! | [`ModulaJava`](Distribution::ModulaJava) | the AWS Java client and spymemcached without options |
//!
//! Each is proven against placements recorded from the real clients (`tests/interop_vectors.rs`)
//! and, where the client can run on a test machine, against the client itself
//! (`tests/interop_live.rs`).
//!
//! Beyond `locate`, a [`Locator`] gives each mode's fallback order for keys whose node cannot
//! serve ([`Locator::locate_usable`]), builds the next placement from the previous one
//! ([`Locator::next`]) and measures moved shares ([`Locator::moved_share`]).
//!
//! The file is about 890 lines; some 330 of them are unit tests of the modes.

mod hash;
mod ketama;
mod rendezvous;
mod ring;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Node;
use ketama::{Continuum, KeyHash, PointDigest};

/// How keys are spread over the nodes.
///
/// Modes other than [`Ring`](Distribution::Ring) exist to share a cache with another client;
/// they hash what that client hashes, so the node strings must be the ones it was given (see
/// [`NodeIdentity`]). Modes named `modula-…` move almost every key when a node is added or
/// removed; use them only to match a client configured that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// Consistent hashing over a ring of virtual nodes, with 160 points per node placed by a
    /// 64-bit FNV-1a hash (finished with MurmurHash3's fmix64) of the node identity
    /// `hostname:port`, keys placed exactly as the `consistent_hash_ring` crate (0.8) places
    /// them over that hash (earlier releases used that crate). Adding one node to N moves about
    /// 1/(N+1) of the keys; a node whose IP changes keeps its keys. Weights are ignored. The
    /// default; shared with no other client.
    #[default]
    Ring,
    /// libmemcached's weighted ketama (`ketama`): key hash = the first 4 bytes of MD5,
    /// little-endian; per node, the strings `host:port-0 … host:port-39` (`host-i` when the
    /// port is 11211) give four MD5 points each; points per node follow libmemcached's float32
    /// formula, so weights count and 25 equal nodes get 156
    /// points; equal points go to the node listed first.
    ///
    /// Reproduces php-memcached with `Memcached::OPT_LIBKETAMA_COMPATIBLE = true` (alone, or
    /// after `OPT_DISTRIBUTION = DISTRIBUTION_CONSISTENT` as AWS documents), the AWS PHP
    /// cluster client, twemproxy with `distribution: ketama` and `hash: md5`, and spymemcached
    /// with the `LIBMEMCACHED` node-key format when given hostnames.
    Ketama,
    /// twemproxy's `distribution: ketama` with `hash: fnv1a_64` (`ketama-fnv1a64`): the ring of
    /// [`Ketama`](Distribution::Ketama), with the key hashed by the 32-bit FNV-1a that
    /// twemproxy calls fnv1a_64 (over signed bytes). An empty key
    /// hashes to 0, as in twemproxy.
    KetamaFnv1a64,
    /// Upstream spymemcached's `KetamaConnectionFactory` (`ketama-spymemcached`): MD5 key hash;
    /// node strings `id-i` with the port always present (the default `SPYMEMCACHED` node-key
    /// format: `ip:port` for a node given by IP, `hostname/ip:port` for one given by hostname,
    /// see [`NodeIdentity::HostnameAndIp`]); 160 points per node, or the float32 formula when
    /// built with weights (a weights map in Java); equal points go to the node listed last.
    KetamaSpymemcached,
    /// The AWS ElastiCache Cluster Client for Java, 1.2.0 and later, with
    /// `KetamaConnectionFactory` (`ketama-aws-java`): as
    /// [`KetamaSpymemcached`](Distribution::KetamaSpymemcached) but with SHA-384 in place of
    /// MD5 for keys and points (the first 16 bytes of each digest). The client hashes the
    /// node's IP (`ip:port-i`): use [`NodeIdentity::Ip`]. Compatible with no other client.
    KetamaAwsJava,
    /// libmemcached's non-weighted consistent mode (`consistent-libmemcached`): 100 points per
    /// node, each the one-at-a-time hash (signed bytes) of `host:port-i` (`host-i` at port
    /// 11211), keys hashed the same way; equal points go to the node listed first.
    /// Reproduces php-memcached with `OPT_DISTRIBUTION = DISTRIBUTION_CONSISTENT` (or
    /// `memcached.default_consistent_hash = 1`).
    ///
    /// As in libmemcached, a node of weight above 1 switches the whole ring to the weighted
    /// ketama points of [`Ketama`](Distribution::Ketama) (keys are still hashed with
    /// one-at-a-time).
    ConsistentLibmemcached,
    /// The same with MD5 as the key and point hash (`consistent-libmemcached-md5`):
    /// php-memcached `DISTRIBUTION_CONSISTENT` with `OPT_HASH = HASH_MD5`, or
    /// `OPT_LIBKETAMA_COMPATIBLE` set *before* `DISTRIBUTION_CONSISTENT`. With a weight above
    /// 1 it becomes [`Ketama`](Distribution::Ketama), as libmemcached does.
    ConsistentLibmemcachedMd5,
    /// pymemcache's `HashClient` default (`rendezvous`): the node with the highest
    /// `murmur3_32("{host}:{port}-{key}")` (seed 0, one byte per character, `ord(ch) & 0xFF`)
    /// wins; equal scores go to the larger node string. Matches `str` keys (pymemcache hashes
    /// the repr of a `bytes` key). No weights. Cost grows with the node count.
    Rendezvous,
    /// libmemcached's default (`modula-libmemcached`): one-at-a-time (signed bytes) modulo the
    /// node count, in list order. php-memcached without distribution options.
    ModulaLibmemcached,
    /// spymemcached's default `ArrayModNodeLocator` (`modula-java`): Java's
    /// `String.hashCode()` of the key (UTF-16 units), unsigned, modulo the node count, in list
    /// order. `new MemcachedClient(addrs)` in the AWS Java client and spymemcached.
    ModulaJava,
}

impl Distribution {
    /// Every mode, the default first: what `from_name` accepts, in the order tools list them.
    pub const ALL: &'static [Distribution] = &[
        Distribution::Ring,
        Distribution::Ketama,
        Distribution::KetamaSpymemcached,
        Distribution::KetamaFnv1a64,
        Distribution::KetamaAwsJava,
        Distribution::ConsistentLibmemcached,
        Distribution::ConsistentLibmemcachedMd5,
        Distribution::Rendezvous,
        Distribution::ModulaLibmemcached,
        Distribution::ModulaJava,
    ];

    /// The mode's name, as the command-line tool spells it.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ring => "ring",
            Distribution::Ketama => "ketama",
            Distribution::KetamaSpymemcached => "ketama-spymemcached",
            Distribution::KetamaFnv1a64 => "ketama-fnv1a64",
            Distribution::KetamaAwsJava => "ketama-aws-java",
            Distribution::ConsistentLibmemcached => "consistent-libmemcached",
            Distribution::ConsistentLibmemcachedMd5 => "consistent-libmemcached-md5",
            Distribution::Rendezvous => "rendezvous",
            Distribution::ModulaLibmemcached => "modula-libmemcached",
            Distribution::ModulaJava => "modula-java",
        }
    }

    /// Looks a mode up by its name.
    pub fn from_name(name: &str) -> Option<Distribution> {
        Distribution::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Whether node weights change this mode's placement (the ketama family, and libmemcached's
    /// consistent modes, which a weight above 1 turns into weighted ketama).
    pub fn honours_weights(self) -> bool {
        matches!(
            self,
            Distribution::Ketama
                | Distribution::KetamaFnv1a64
                | Distribution::KetamaSpymemcached
                | Distribution::KetamaAwsJava
                | Distribution::ConsistentLibmemcached
                | Distribution::ConsistentLibmemcachedMd5
        )
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which name of a node its placement hashes: the `host` of the `host:port` a [`Locator`] is
/// built from. Connections, deduplication and logs always use `hostname:port`
/// ([`Node::id`]); only placement changes.
///
/// ElastiCache's `config get cluster` gives each node as `hostname|ip|port`, and peers hash
/// different parts of it:
///
/// | peer | identity |
/// |---|---|
/// | php-memcached with the AWS cluster client (libmemcached fork), twemproxy or php-memcached given the node hostnames | [`Hostname`](NodeIdentity::Hostname) |
/// | AWS ElastiCache Cluster Client for Java (it rebuilds every address from the IP) | [`Ip`](NodeIdentity::Ip) |
/// | upstream spymemcached given hostnames (its default node key is Java's `hostname/ip:port`) | [`HostnameAndIp`](NodeIdentity::HostnameAndIp) |
/// | any client given the node IPs | [`Ip`](NodeIdentity::Ip) |
/// | pymemcache | whichever string its `(host, port)` tuples hold |
///
/// Static nodes (`ClientBuilder::nodes`) are hashed as written, whatever the identity, unless
/// written as an IP literal (then the IP is also their hostname). A node given by hostname has
/// no known IP, so [`Ip`](NodeIdentity::Ip) and [`HostnameAndIp`](NodeIdentity::HostnameAndIp)
/// fall back to its hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum NodeIdentity {
    /// The node's DNS name (`hostname`). The default: stable when a node's IP changes.
    #[default]
    Hostname,
    /// The node's IP address (IPv6 without brackets), or its hostname when the configuration
    /// carries no IP. A node whose IP changes then moves its keys.
    Ip,
    /// `hostname/ip`, the text of a resolved Java `InetSocketAddress` (what upstream
    /// spymemcached's default node key hashes); just the IP when the hostname is that IP, just
    /// the hostname when no IP is known. IPv6 is not covered: Java prints it in a form that
    /// depends on the JVM version.
    HostnameAndIp,
}

impl NodeIdentity {
    /// Every identity, the default first.
    pub const ALL: &'static [NodeIdentity] = &[
        NodeIdentity::Hostname,
        NodeIdentity::Ip,
        NodeIdentity::HostnameAndIp,
    ];

    /// The identity's name: `hostname`, `ip` or `hostname-and-ip`.
    pub fn name(self) -> &'static str {
        match self {
            NodeIdentity::Hostname => "hostname",
            NodeIdentity::Ip => "ip",
            NodeIdentity::HostnameAndIp => "hostname-and-ip",
        }
    }

    /// Looks an identity up by its name.
    pub fn from_name(name: &str) -> Option<NodeIdentity> {
        NodeIdentity::ALL.iter().copied().find(|i| i.name() == name)
    }

    /// The `host:port` that places `node` under this identity (the host without IPv6
    /// brackets, as in [`Node::id`]).
    ///
    /// ```
    /// use memcached_autodiscovery_proto::{config::Node, distribution::NodeIdentity};
    /// let node = Node::new("mc.abc123.0001.use1.cache.amazonaws.com", "10.0.0.7".parse().ok(), 11211);
    /// assert_eq!(NodeIdentity::Hostname.placement_id(&node), "mc.abc123.0001.use1.cache.amazonaws.com:11211");
    /// assert_eq!(NodeIdentity::Ip.placement_id(&node), "10.0.0.7:11211");
    /// assert_eq!(
    ///     NodeIdentity::HostnameAndIp.placement_id(&node),
    ///     "mc.abc123.0001.use1.cache.amazonaws.com/10.0.0.7:11211"
    /// );
    /// ```
    pub fn placement_id(self, node: &Node) -> String {
        let hostname_is_ip = node.hostname().parse::<IpAddr>().is_ok();
        match (self, node.ip()) {
            (NodeIdentity::Hostname, _) | (_, None) => node.id(),
            (NodeIdentity::Ip, Some(ip)) => format!("{ip}:{}", node.port()),
            (NodeIdentity::HostnameAndIp, Some(ip)) if hostname_is_ip => {
                format!("{ip}:{}", node.port())
            }
            (NodeIdentity::HostnameAndIp, Some(ip)) => {
                format!("{}/{ip}:{}", node.hostname(), node.port())
            }
        }
    }
}

impl std::fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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
    /// `host:port`, see [`NodeIdentity`]), all of the same weight (for spymemcached's modes:
    /// without a weights map). Index `i` of the answer refers to `ids[i]`.
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
fn first_usable(owners: &[u32], at: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
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
fn moved_share_of<P: Copy + Ord + Into<u128>>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_has_a_unique_name_that_round_trips() {
        let mut names = std::collections::HashSet::new();
        for &d in Distribution::ALL {
            assert!(names.insert(d.name()), "{d} named twice");
            assert_eq!(Distribution::from_name(d.name()), Some(d));
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!(Distribution::ALL[0], Distribution::default());
        assert_eq!(Distribution::from_name("Ketama"), None);
        for &i in NodeIdentity::ALL {
            assert_eq!(NodeIdentity::from_name(i.name()), Some(i));
        }
    }

    #[test]
    fn every_mode_places_on_a_listed_node_and_none_without_nodes() {
        let ids = ["a:11211", "b:11212", "c:3"];
        let none: [&str; 0] = [];
        for &d in Distribution::ALL {
            let locator = Locator::new(d, &ids);
            assert_eq!(locator.distribution(), d);
            let mut used = [false; 3];
            for i in 0..300 {
                let key = format!("k{i}é");
                used[locator.locate(key.as_bytes()).unwrap()] = true;
            }
            assert_eq!(used, [true; 3], "{d}");
            assert_eq!(Locator::new(d, &none).locate(b"k"), None, "{d}");
            assert!(Locator::new(d, &none).is_empty());
        }
    }

    #[test]
    fn weights_shift_keys_only_in_modes_that_have_them() {
        let ids = ["a:1", "b:1", "c:1"];
        let heavy = [("a:1", 8), ("b:1", 1), ("c:1", 1)];
        let flat = [("a:1", 1), ("b:1", 1), ("c:1", 1)];
        for &d in Distribution::ALL {
            let plain = Locator::new(d, &ids);
            let weighted = Locator::weighted(d, &heavy);
            let on_a = (0..3000)
                .filter(|i| weighted.locate(format!("w{i}").as_bytes()) == Some(0))
                .count();
            let moved = (0..3000)
                .filter(|i| {
                    let k = format!("w{i}");
                    plain.locate(k.as_bytes()) != weighted.locate(k.as_bytes())
                })
                .count();
            if d.honours_weights() {
                assert!(on_a > 2000, "{d}: {on_a} of 3000 on the weight-8 node");
            } else {
                assert_eq!(moved, 0, "{d} has no weights");
            }
            // All weights 1: the same as no weights, except in spymemcached's modes (the
            // float formula), which at 3 nodes also gives 160 points.
            let flat = Locator::weighted(d, &flat);
            for i in 0..500 {
                let k = format!("f{i}");
                assert_eq!(plain.locate(k.as_bytes()), flat.locate(k.as_bytes()), "{d}");
            }
        }
    }

    #[test]
    fn consistent_libmemcached_md5_with_a_heavy_node_is_ketama() {
        let nodes = [("a:11211", 2), ("b:11211", 1), ("c:5", 1)];
        let a = Locator::weighted(Distribution::ConsistentLibmemcachedMd5, &nodes);
        let b = Locator::weighted(Distribution::Ketama, &nodes);
        for i in 0..1000 {
            let k = format!("key{i}");
            assert_eq!(a.locate(k.as_bytes()), b.locate(k.as_bytes()));
        }
    }

    #[test]
    fn modula_modes_are_hash_mod_n_in_list_order() {
        let ids = ["x:1", "y:1", "z:1", "w:1", "v:1"];
        let l = Locator::new(Distribution::ModulaLibmemcached, &ids);
        let j = Locator::new(Distribution::ModulaJava, &ids);
        for key in ["a", "user:1", "clé"] {
            let k = key.as_bytes();
            assert_eq!(
                l.locate(k),
                Some((hash::one_at_a_time(k) % 5) as usize),
                "{key}"
            );
            assert_eq!(
                j.locate(k),
                Some((hash::java_string_hash(k) % 5) as usize),
                "{key}"
            );
        }
    }

    fn node_list(picks: &[u8]) -> Vec<String> {
        picks
            .iter()
            .map(|i| format!("n{i}.example:11211"))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// `next` from any previous list gives what a fresh build gives, in every mode, with
        /// and without weights.
        #[test]
        fn next_places_as_a_fresh_build(
            old in proptest::collection::vec(0u8..12, 0..8),
            new in proptest::collection::vec(0u8..12, 0..8),
            weights in proptest::collection::vec(0u32..4, 8),
        ) {
            let (old, new) = (node_list(&old), node_list(&new));
            let weights = &weights[..new.len()];
            let pairs: Vec<(&str, u32)> =
                new.iter().map(String::as_str).zip(weights.iter().copied()).collect();
            for &d in Distribution::ALL {
                let prev = Locator::new(d, &old);
                let plain = prev.next(&new, None);
                let weighted = prev.next(&new, Some(weights));
                let (fresh, fresh_weighted) = (Locator::new(d, &new), Locator::weighted(d, &pairs));
                proptest::prop_assert_eq!(plain.len(), new.len());
                proptest::prop_assert_eq!(plain.distribution(), d);
                proptest::prop_assert!(plain.ids().iter().map(|id| &**id).eq(new.iter().map(String::as_str)));
                for i in 0..200 {
                    let k = format!("key-{i}");
                    proptest::prop_assert_eq!(plain.locate(k.as_bytes()), fresh.locate(k.as_bytes()), "{}", d);
                    proptest::prop_assert_eq!(
                        weighted.locate(k.as_bytes()),
                        fresh_weighted.locate(k.as_bytes()),
                        "{} weighted", d
                    );
                }
            }
        }
    }

    #[test]
    fn next_handles_growth_to_many_nodes_and_back_to_none() {
        let many: Vec<String> = (0..2_000).map(|i| format!("n{i}:11211")).collect();
        let none: [&str; 0] = [];
        let ring = Locator::new(Distribution::Ring, &none).next(&many, None);
        let fresh = Locator::new(Distribution::Ring, &many);
        let shrunk = ring.next(&many[..1_000], None);
        let fresh_shrunk = Locator::new(Distribution::Ring, &many[..1_000]);
        for i in 0..2_000 {
            let k = format!("k{i}");
            assert_eq!(ring.locate(k.as_bytes()), fresh.locate(k.as_bytes()));
            assert_eq!(
                shrunk.locate(k.as_bytes()),
                fresh_shrunk.locate(k.as_bytes())
            );
        }
        assert_eq!(shrunk.next(&none, None).locate(b"k"), None);
    }

    #[test]
    fn with_every_node_usable_locate_usable_is_locate() {
        let ids = ["a:11211", "b:11212", "c:3", "d:4", "e:5"];
        for &d in Distribution::ALL {
            let locator = Locator::new(d, &ids);
            for i in 0..500 {
                let k = format!("k{i}");
                assert_eq!(
                    locator.locate_usable(k.as_bytes(), |_| true),
                    locator.locate(k.as_bytes()),
                    "{d}"
                );
                assert_eq!(locator.locate_usable(k.as_bytes(), |_| false), None, "{d}");
            }
            let none: [&str; 0] = [];
            assert_eq!(Locator::new(d, &none).locate_usable(b"k", |_| true), None);
        }
    }

    #[test]
    fn keys_of_an_unusable_node_move_to_other_nodes_and_no_other_key_moves() {
        let ids = ["a:11211", "b:11212", "c:3", "d:4", "e:5"];
        for &d in Distribution::ALL {
            let locator = Locator::new(d, &ids);
            for down in 0..ids.len() {
                let mut moved = 0;
                for i in 0..1000 {
                    let k = format!("k{i}");
                    let owner = locator.locate(k.as_bytes()).unwrap();
                    let now = locator.locate_usable(k.as_bytes(), |n| n != down).unwrap();
                    if owner == down {
                        assert_ne!(now, down, "{d}");
                        moved += 1;
                    } else {
                        assert_eq!(now, owner, "{d}");
                    }
                }
                assert!(moved > 0, "{d}: node {down} owns no key");
            }
        }
    }

    #[test]
    fn rendezvous_and_ring_fall_back_as_if_the_node_were_removed() {
        let ids = ["a:11211", "b:11212", "c:3", "d:4", "e:5"];
        let without_c = ["a:11211", "b:11212", "d:4", "e:5"];
        let to_full = |i: usize| if i >= 2 { i + 1 } else { i };
        for d in [Distribution::Ring, Distribution::Rendezvous] {
            let all = Locator::new(d, &ids);
            let removed = Locator::new(d, &without_c);
            for i in 0..1000 {
                let k = format!("k{i}");
                assert_eq!(
                    all.locate_usable(k.as_bytes(), |n| n != 2),
                    removed.locate(k.as_bytes()).map(to_full),
                    "{d}"
                );
            }
        }
    }

    #[test]
    fn modula_falls_back_to_the_following_indices_in_list_order() {
        let ids = ["x:1", "y:1", "z:1", "w:1", "v:1"];
        let l = Locator::new(Distribution::ModulaLibmemcached, &ids);
        for i in 0..200 {
            let k = format!("k{i}");
            let owner = l.locate(k.as_bytes()).unwrap();
            assert_eq!(
                l.locate_usable(k.as_bytes(), |n| n != owner),
                Some((owner + 1) % 5)
            );
            let only = (owner + 3) % 5;
            assert_eq!(l.locate_usable(k.as_bytes(), |n| n == only), Some(only));
        }
    }

    #[test]
    fn moved_share_is_the_share_of_keys_that_move() {
        let ids: Vec<String> = (0..10).map(|i| format!("n{i}:11211")).collect();
        let same = |a: &Locator, b: &Locator| {
            let (a, b) = (a.clone(), b.clone());
            move |i: usize, j: usize| a.ids()[i] == b.ids()[j]
        };
        for &d in Distribution::ALL {
            let before = Locator::new(d, &ids[..9]);
            let after = before.next(&ids, None);
            let Some(share) = before.moved_share(&after, same(&before, &after)) else {
                assert!(matches!(
                    d,
                    Distribution::Rendezvous
                        | Distribution::ModulaLibmemcached
                        | Distribution::ModulaJava
                ));
                continue;
            };
            let keys = 20_000;
            let moved = (0..keys)
                .filter(|i| {
                    let k = format!("key:{i}");
                    let (x, y) = (before.locate(k.as_bytes()), after.locate(k.as_bytes()));
                    before.ids()[x.unwrap()] != after.ids()[y.unwrap()]
                })
                .count();
            let sampled = moved as f64 / keys as f64;
            // A share of the hash space: keys follow it as far as their hash spreads them
            // (twemproxy's 32-bit FNV-1a and one-at-a-time spread these keys less evenly).
            let tolerance = match d {
                Distribution::KetamaFnv1a64 | Distribution::ConsistentLibmemcached => 0.04,
                _ => 0.015,
            };
            assert!(
                (share - sampled).abs() < tolerance,
                "{d}: {share} exact, {sampled} sampled"
            );
            assert!(share > 0.05 && share < 0.2, "{d}: {share}");
            assert_eq!(
                before.moved_share(&before, same(&before, &before)),
                Some(0.0)
            );
            assert_eq!(before.moved_share(&after, |_, _| false), Some(1.0));
        }
        let none: [&str; 0] = [];
        let empty = Locator::new(Distribution::Ring, &none);
        let full = Locator::new(Distribution::Ring, &ids);
        assert_eq!(empty.moved_share(&empty, |_, _| true), Some(0.0));
        assert_eq!(empty.moved_share(&full, |_, _| true), Some(1.0));
        assert_eq!(
            full.moved_share(&Locator::new(Distribution::Ketama, &ids), |_, _| true),
            None
        );
    }

    #[test]
    fn moved_share_of_small_tables_by_hand() {
        // Space 0..100. a: [0, 10] and (90, 100) -> 0, (10, 50] -> 1, (50, 90] -> 2.
        // b: [0, 30] and (80, 100) -> 0, (30, 80] -> 1.
        let a: [u32; 3] = [10, 50, 90];
        let b: [u32; 2] = [30, 80];
        let share = moved_share_of(&a, &[0, 1, 2], &b, &[0, 1], 100, |x, y| x == y);
        // Differ on (10, 30] (1 vs 0), (50, 80] (2 vs 1), (80, 90] (2 vs 0): 20 + 30 + 10.
        assert!((share - 0.60).abs() < 1e-12, "{share}");
        let share = moved_share_of(&a, &[0, 1, 2], &b, &[0, 1], 100, |x, y| x + 1 == y);
        // If node x of a were node x + 1 of b, only a's 0 against b's 1 would be the same
        // node, and those ranges do not overlap: everything moved.
        assert!((share - 1.0).abs() < 1e-12, "{share}");
    }

    #[test]
    fn identities() {
        let named = Node::new("mc-1.example", "10.1.2.3".parse().ok(), 11212);
        let bare = Node::new("mc-2.example", None, 11211);
        let literal = Node::new("10.9.9.9", "10.9.9.9".parse().ok(), 11211);
        let v6 = Node::new("2001:db8::5", "2001:db8::5".parse().ok(), 11211);
        assert_eq!(
            NodeIdentity::Hostname.placement_id(&named),
            "mc-1.example:11212"
        );
        assert_eq!(NodeIdentity::Ip.placement_id(&named), "10.1.2.3:11212");
        assert_eq!(
            NodeIdentity::HostnameAndIp.placement_id(&named),
            "mc-1.example/10.1.2.3:11212"
        );
        for identity in NodeIdentity::ALL {
            assert_eq!(identity.placement_id(&bare), "mc-2.example:11211");
            assert_eq!(identity.placement_id(&literal), "10.9.9.9:11211");
            assert_eq!(identity.placement_id(&v6), "2001:db8::5:11211");
        }
    }
}
