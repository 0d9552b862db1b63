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
//! This file holds the modes themselves ([`Distribution`], [`NodeIdentity`]: their names,
//! parsing and `Display`); `locator` holds the built placement, `ring`, `ketama`, `rendezvous`
//! and `hash` the algorithms behind it, and `tests` the unit tests of the modes.

mod hash;
mod ketama;
mod locator;
mod rendezvous;
mod ring;
#[cfg(test)]
mod tests;

pub use locator::Locator;

use std::net::IpAddr;

use crate::config::Node;

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
