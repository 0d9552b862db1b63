//! [`ClientBuilder`]: every setting of a [`Client`], its default, and the first discovery.
//!
//! This module owns configuration and start-up; the calls themselves are in [`crate::client`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;
use crate::config::{ClusterConfig, Node};
use crate::connection::ConnectionSettings;
use crate::discovery::fetch;
use crate::distribution::{Distribution, NodeIdentity};
use crate::error::Error;
use crate::protocol::{Limits, MAX_VALUE_CEILING};
use crate::snapshot::{FailureMode, Placement};
use crate::topology::{Source, Topology, TopologyOptions};
use crate::transport::{split_host_port, Dial, Transport};

/// The longest any timeout or interval may be: longer settings are clamped to it.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most connections per node: more are clamped to it.
pub const MAX_CONNECTIONS_PER_NODE: usize = 64;
/// The deepest request queue per connection: deeper settings are clamped to it.
pub const MAX_QUEUE_DEPTH: usize = 1 << 20;
/// The default of [`ClientBuilder::max_nodes`]: five times the 60 nodes an ElastiCache for
/// Memcached cluster holds at most without a quota increase.
pub const DEFAULT_MAX_NODES: usize = 300;

#[derive(Debug, Clone)]
enum Nodes {
    Endpoint(String),
    Static(Vec<String>),
}

impl Client {
    /// A builder with safe defaults; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

fn clamp(d: Duration, min: Duration) -> Duration {
    d.clamp(min, MAX_DURATION)
}

/// Builds a [`Client`]. Every setting has a default that is safe in AWS Lambda: short timeouts
/// (well under a function's), lazy connections, a refresh on staleness after a freeze. A builder
/// is `Clone`: one can serve as the template of per-environment variants.
///
/// ```no_run
/// # async fn demo() -> Result<(), memcached_autodiscovery::Error> {
/// use std::time::Duration;
/// use memcached_autodiscovery::{Client, Distribution};
/// let client = Client::builder()
///     .config_endpoint("mycluster.abc123.cfg.use1.cache.amazonaws.com:11211")
///     .distribution(Distribution::Ring)
///     .poll_interval(Duration::from_secs(60))
///     .request_timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// client.set("greeting", "hello", Duration::from_secs(300)).await?;
/// assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct ClientBuilder {
    source: Option<Nodes>,
    distribution: Distribution,
    node_identity: NodeIdentity,
    node_weights: Option<Vec<(String, u32)>>,
    poll_interval: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    discovery_timeout: Duration,
    max_value_size: usize,
    connections_per_node: usize,
    queue_depth: usize,
    backoff: (Duration, Duration),
    load_lease: Duration,
    failure_mode: FailureMode,
    stand_in_ttl: Duration,
    max_nodes: usize,
    warm_handoff: Option<Duration>,
    near_cache: Option<crate::near_cache::NearCacheSettings>,
    dialer: Option<Arc<dyn Dial>>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
    /// Whether the one node is an ElastiCache Serverless endpoint.
    serverless: bool,
    /// Whether `connections_per_node` was set (else Serverless takes its own default).
    connections_set: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ClientBuilder");
        s.field("nodes", &self.source)
            .field("distribution", &self.distribution)
            .field("node_identity", &self.node_identity)
            .field("node_weights", &self.node_weights)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("discovery_timeout", &self.discovery_timeout)
            .field("max_value_size", &self.max_value_size)
            .field("connections_per_node", &self.connections_per_node)
            .field("queue_depth", &self.queue_depth)
            .field("reconnect_backoff", &self.backoff)
            .field("load_lease", &self.load_lease)
            .field("failure_mode", &self.failure_mode)
            .field("stand_in_ttl", &self.stand_in_ttl)
            .field("max_nodes", &self.max_nodes)
            .field("warm_handoff", &self.warm_handoff)
            .field("near_cache", &self.near_cache)
            .field("custom_dialer", &self.dialer.is_some())
            .field("serverless", &self.serverless);
        // TlsConfig's Debug shows counts and names only, never key material.
        #[cfg(feature = "tls")]
        s.field("tls", &self.tls);
        s.finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            source: None,
            distribution: Distribution::default(),
            node_identity: NodeIdentity::default(),
            node_weights: None,
            poll_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            discovery_timeout: Duration::from_secs(2),
            max_value_size: 1 << 20,
            connections_per_node: 1,
            queue_depth: 4096,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            load_lease: Duration::from_secs(5),
            failure_mode: FailureMode::FailFast,
            stand_in_ttl: Duration::from_secs(5),
            max_nodes: DEFAULT_MAX_NODES,
            warm_handoff: None,
            near_cache: None,
            dialer: None,
            #[cfg(feature = "tls")]
            tls: None,
            serverless: false,
            connections_set: false,
        }
    }
}

impl ClientBuilder {
    /// Discover the nodes from a configuration endpoint, `host:port` (ElastiCache: the
    /// cluster's `.cfg.` address; Memorystore: the discovery endpoint). The port defaults to
    /// 11211. Replaces any earlier `nodes(...)`.
    pub fn config_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.source = Some(Nodes::Endpoint(endpoint.into()));
        self.serverless = false;
        self
    }

    /// Use a fixed list of nodes, `host:port` each (IPv6 as `[addr]:port`), with no discovery:
    /// for plain memcached. Replaces any earlier `config_endpoint(...)`.
    pub fn nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.source = Some(Nodes::Static(nodes.into_iter().map(Into::into).collect()));
        self.serverless = false;
        self
    }

    /// How keys are placed on nodes. Defaults to [`Distribution::Ring`]. To share a cache with
    /// another client, pick the mode that reproduces it (see [`Distribution`]) and the
    /// [`node_identity`](ClientBuilder::node_identity) it hashes.
    pub fn distribution(mut self, distribution: Distribution) -> Self {
        self.distribution = distribution;
        self
    }

    /// Which name of a discovered node the placement hashes: its hostname (the default), its IP
    /// or Java's `hostname/ip`. Peers differ; see [`NodeIdentity`]. Connections and logs always
    /// use `hostname:port`.
    pub fn node_identity(mut self, identity: NodeIdentity) -> Self {
        self.node_identity = identity;
        self
    }

    /// Node weights, as `("host:port", weight)` with the node written as in
    /// [`nodes`](ClientBuilder::nodes) (for a discovered node: its hostname and port). Nodes
    /// not listed weigh 1. Only modes with weights use them
    /// ([`Distribution::honours_weights`]); a weight of 0 counts as 1. Giving weights, even all
    /// 1, is what spymemcached's weights map is to its modes (see [`Locator::weighted`]).
    ///
    /// [`Locator::weighted`]: crate::distribution::Locator::weighted
    pub fn node_weights<I, S>(mut self, weights: I) -> Self
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        self.node_weights = Some(weights.into_iter().map(|(n, w)| (n.into(), w)).collect());
        self
    }

    /// How often the configuration endpoint is polled (with ±10 % jitter). A request that finds
    /// the last poll older than this (after a Lambda freeze) also starts one refresh in the
    /// background. Defaults to 60 s, the cadence of AWS's own clients. Clamped to 10 ms ..= 24 h.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = clamp(interval, Duration::from_millis(10));
        self
    }

    /// Longest wait for one request's reply, queueing included, also while the connection is
    /// still being opened (`connect_timeout` may be longer). A request still queued when it
    /// runs out is never sent; a node that does not answer within it has its connection reset.
    /// Defaults to 1 s. Clamped to 1 ms ..= 24 h.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = clamp(timeout, Duration::from_millis(1));
        self
    }

    /// Longest wait for a connect to a node (TCP, and the TLS handshake with `tls`). Defaults to
    /// 1 s. Clamped to 1 ms ..= 24 h.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = clamp(timeout, Duration::from_millis(1));
        self
    }

    /// Longest wait for one discovery (DNS, connect, both commands). Bounds `build()`.
    /// Defaults to 2 s. Clamped to 1 ms ..= 24 h.
    pub fn discovery_timeout(mut self, timeout: Duration) -> Self {
        self.discovery_timeout = clamp(timeout, Duration::from_millis(1));
        self
    }

    /// Largest value sent or accepted, in bytes. Defaults to 1 MiB (memcached's default item
    /// size). Clamped to 1 B ..= 1 GiB. Raise it together with memcached's `-I`.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes.clamp(1, MAX_VALUE_CEILING);
        self
    }

    /// Connections per node. Defaults to 1: requests are pipelined, so one connection serves
    /// any number of concurrent callers. Clamped to 1 ..= 64.
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.connections_per_node = n.clamp(1, MAX_CONNECTIONS_PER_NODE);
        self.connections_set = true;
        self
    }

    /// Requests that may wait for a connection's writer before callers are held back
    /// (backpressure). Defaults to 4096. Clamped to 1 ..= 1,048,576.
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n.clamp(1, MAX_QUEUE_DEPTH);
        self
    }

    /// How long a failing node is left alone before the next connect: `min` after the first
    /// failure, doubling (with ±20 % jitter) up to `max`, and back to `min` after a good reply.
    /// Callers of a node in backoff fail at once with [`Error::NodeDown`]. Defaults to 100 ms and
    /// 5 s. Each is clamped to 1 ms ..= 24 h, and `max` to at least `min`.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        let min = clamp(min, Duration::from_millis(1));
        self.backoff = (min, clamp(max, min));
        self
    }

    /// How long a [`Client::get_or_load`] caller that won a key's load holds it: the lifetime of
    /// the server's placeholder, so the longest a crashed loader can hold up the others (a
    /// failing or cancelled one, or one whose value is not stored, gives the key back at once).
    /// Waiters give up after twice this. Make it longer than the loader usually takes. Defaults
    /// to 5 s. Clamped to 1 s ..= 1 h (whole seconds, rounded down).
    pub fn load_lease(mut self, lease: Duration) -> Self {
        let secs = lease.as_secs().clamp(1, 3600);
        self.load_lease = Duration::from_secs(secs);
        self
    }

    /// What happens to the keys of a node marked down: fail fast (the default) or go to the next
    /// live node until it is back. See [`FailureMode`] for the trade-off.
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// With [`FailureMode::Redistribute`], the longest time to live of a value written to a
    /// stand-in (the node a down node's keys go to): a write there carries the smaller of its
    /// own time to live (zero: never expires) and this, so that the stand-in's copy cannot
    /// outlive the failure by long (the client also deletes the copies it knows of once the
    /// node is back; see [`FailureMode`]). Defaults to 5 s. Clamped to 1 s ..= 24 h (whole
    /// seconds, rounded up).
    pub fn stand_in_ttl(mut self, ttl: Duration) -> Self {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        self.stand_in_ttl = clamp(Duration::from_secs(secs), Duration::from_secs(1));
        self
    }

    /// The most nodes a configuration may list (distinct `host:port`). A larger configuration
    /// is refused with [`Error::Discovery`] naming this setting, and the last good topology is
    /// kept (at `build()`, the build fails). Defaults to [`DEFAULT_MAX_NODES`] (300); clamped to
    /// 1 ..= 100,000. Building a topology costs about 1 ms per 100 nodes with the default
    /// distribution (see docs/performance/core.md).
    pub fn max_nodes(mut self, n: usize) -> Self {
        self.max_nodes = n.clamp(1, 100_000);
        self
    }

    /// After a topology change, for `window`, a miss on a key whose owner changed is looked up
    /// on its previous owner and, when found there, returned and copied to the new owner (with
    /// `add`, keeping the remaining TTL: memcached 1.6's meta protocol tells it). Meanwhile a
    /// `delete` reaches both owners and a write to a moved key removes the previous owner's
    /// copy, so no deleted or overwritten value comes back. Off by default; a zero window turns
    /// it off. Costs one extra round trip per miss on a moved key during the window, and two
    /// per write or delete of a moved key. Clamped to 24 h.
    pub fn warm_handoff(mut self, window: Duration) -> Self {
        self.warm_handoff = (!window.is_zero()).then(|| window.min(MAX_DURATION));
        self
    }

    /// Keeps the values of often-read keys in this process's memory, each for at most
    /// `max_age`, in at most `max_bytes`: a hot key is read from memory instead of from its
    /// node. Off by default; a zero budget or age leaves it off. docs/near-cache.md says what
    /// the staleness bound promises.
    ///
    /// * Writes by other processes (and expiry on the node) are seen within `max_age`, not
    ///   sooner. This client's own writes (every store, `cas`, `delete`, `touch`, `incr`,
    ///   `decr`, `invalidate`, `flush_all`, a `get_or_load`'s store) are seen at once.
    /// * Served: `get`, `get_decoded`/`get_json`, `get_many`/`get_many_partial` (the rest from
    ///   the nodes) and `get_or_load`; `gets` and `gat` always ask the node.
    /// * S3-FIFO admission keeps keys that are read again, so a scan does not push out hot
    ///   ones. The budget counts each entry's key, value and 400 bytes of bookkeeping
    ///   (measured); an entry over a sixteenth of `max_bytes` (or 1 MiB) is never kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = memcached_autodiscovery::Client::builder()
    ///     .nodes(["127.0.0.1:11211"])
    ///     .near_cache(16 << 20, Duration::from_secs(1));
    /// # let _ = builder;
    /// ```
    pub fn near_cache(mut self, max_bytes: usize, max_age: Duration) -> Self {
        self.near_cache = crate::near_cache::NearCacheSettings::new(max_bytes, max_age);
        self
    }

    /// Opens every connection (to the nodes and to the configuration endpoint) through `dialer`
    /// instead of TCP: see [`Dial`]. The connect timeout still applies. Cannot be combined with
    /// `tls(...)` (cargo feature `tls`): `build()` returns [`Error::Settings`].
    pub fn dialer(mut self, dialer: impl Dial) -> Self {
        self.dialer = Some(Arc::new(dialer));
        self
    }

    /// Uses TLS (in-transit encryption, ElastiCache for Memcached 1.6.12+) for every connection:
    /// to the configuration endpoint and to the nodes. The handshake counts in the connect
    /// timeout (for discovery: in the discovery timeout). A TLS cluster accepts only TLS
    /// connections, and a plaintext one only plaintext; either mismatch fails with an
    /// [`Error::Tls`] that says so. Needs the cargo feature `tls`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), memcached_autodiscovery::Error> {
    /// use memcached_autodiscovery::{Client, TlsConfig};
    /// let client = Client::builder()
    ///     .config_endpoint("mycluster.xxxxxx.cfg.use1.cache.amazonaws.com:11211")
    ///     .tls(TlsConfig::webpki_roots())
    ///     .build()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: crate::tls::TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects to an ElastiCache Serverless cache: `endpoint` is the cache's endpoint,
    /// `host:port` (`<name>-<id>.serverless.<region>.cache.amazonaws.com:11211`). There is no
    /// discovery: the endpoint is the single node (version 0), reached over 4 pipelined
    /// connections unless [`connections_per_node`](ClientBuilder::connections_per_node) says
    /// otherwise, since Serverless scales with connections. TLS is required: without
    /// [`tls`](ClientBuilder::tls) the client uses [`TlsConfig::webpki_roots`](crate::TlsConfig::webpki_roots).
    /// `stats <group>` and a delayed flush, which Serverless refuses, fail before sending with an
    /// [`Error::Server`] that says so. Replaces any earlier `config_endpoint(...)` or
    /// `nodes(...)`. Needs the cargo feature `tls`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), memcached_autodiscovery::Error> {
    /// let client = memcached_autodiscovery::Client::builder()
    ///     .serverless("mycache-abc123.serverless.use1.cache.amazonaws.com:11211")
    ///     .build()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn serverless(mut self, endpoint: impl Into<String>) -> Self {
        self.source = Some(Nodes::Static(vec![endpoint.into()]));
        self.serverless = true;
        if !self.connections_set {
            self.connections_per_node = crate::serverless::CONNECTIONS;
        }
        if self.tls.is_none() {
            self.tls = Some(crate::tls::TlsConfig::webpki_roots());
        }
        self
    }

    /// One discovery from the configuration endpoint, with this builder's transport settings
    /// (TLS, dialer, connect and discovery timeouts): the cluster's
    /// configuration as the endpoint serves it now. Starts no client, no poller and no node
    /// connection. With a static node list, returns that list as version 0.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), memcached_autodiscovery::Error> {
    /// let config = memcached_autodiscovery::Client::builder()
    ///     .config_endpoint("mycluster.abc123.cfg.use1.cache.amazonaws.com:11211")
    ///     .discover()
    ///     .await?;
    /// println!("version {}: {} nodes", config.version(), config.nodes().len());
    /// # Ok(()) }
    /// ```
    pub async fn discover(self) -> Result<ClusterConfig, Error> {
        let (settings, _) = self.settings()?;
        match self.source {
            None => Err(no_nodes()),
            Some(Nodes::Static(list)) => static_config(&list),
            Some(Nodes::Endpoint(endpoint)) => {
                crate::serverless::refuse_discovery(&endpoint)?;
                fetch(&endpoint, &settings, self.discovery_timeout).await
            }
        }
    }

    /// Builds the client. With a configuration endpoint, the first discovery happens here,
    /// bounded by the discovery timeout; an endpoint without auto-discovery (plain memcached)
    /// gives [`Error::DiscoveryUnsupported`]. Connections open lazily, on first use.
    /// Must be called within a tokio runtime.
    pub async fn build(self) -> Result<Client, Error> {
        let (settings, placement) = self.settings()?;
        let source = match self.source {
            None => return Err(no_nodes()),
            Some(Nodes::Static(list)) => Source::Static(static_config(&list)?),
            Some(Nodes::Endpoint(endpoint)) => {
                split_host_port(&endpoint, "config_endpoint")?;
                crate::serverless::refuse_discovery(&endpoint)?;
                Source::Endpoint {
                    endpoint,
                    poll_interval: self.poll_interval,
                    discovery_timeout: self.discovery_timeout,
                }
            }
        };
        let options = TopologyOptions {
            connections_per_node: self.connections_per_node,
            max_nodes: self.max_nodes,
            warm_handoff: self.warm_handoff,
        };
        let topology = Topology::start(source, placement, settings, options).await?;
        let near = self.near_cache.map(crate::near_cache::NearCache::new);
        Ok(Client::new(topology, self.load_lease, near))
    }

    /// The connection settings and the placement, checked.
    fn settings(&self) -> Result<(Arc<ConnectionSettings>, Placement), Error> {
        #[allow(unused_mut)]
        let mut transport = Transport::new(self.connect_timeout, self.dialer.clone());
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            if self.dialer.is_some() {
                return Err(Error::settings(
                    "dialer",
                    "a custom dialer cannot be combined with tls: TLS runs over TCP only",
                ));
            }
            transport = transport.with_tls(tls.context()?);
        }
        let settings = Arc::new(ConnectionSettings {
            request_timeout: self.request_timeout,
            limits: Limits::with_max_value_size(self.max_value_size),
            queue_depth: self.queue_depth,
            backoff_min: self.backoff.0,
            backoff_max: self.backoff.1,
            transport: Arc::new(transport),
            probe_down_nodes: self.failure_mode == FailureMode::Redistribute,
            serverless: self.serverless,
            tasks: Arc::default(),
        });
        let placement = Placement {
            distribution: self.distribution,
            identity: self.node_identity,
            weights: match &self.node_weights {
                None => None,
                Some(list) => Some(Arc::new(weight_map(list)?)),
            },
            failure_mode: self.failure_mode,
            stand_in_ttl: u32::try_from(self.stand_in_ttl.as_secs()).unwrap_or(u32::MAX),
        };
        Ok((settings, placement))
    }
}

fn no_nodes() -> Error {
    Error::settings(
        "config_endpoint",
        "no nodes: call config_endpoint(\"host:port\") or nodes([...])",
    )
}

/// Node weights keyed by node id (`hostname:port`, IPv6 without brackets).
fn weight_map(list: &[(String, u32)]) -> Result<HashMap<String, u32>, Error> {
    list.iter()
        .map(|(address, weight)| {
            let (host, port) = split_host_port(address, "node_weights")?;
            Ok((Node::new(host, None, port).id(), *weight))
        })
        .collect()
}

/// The configuration of a static node list (version 0).
fn static_config(list: &[String]) -> Result<ClusterConfig, Error> {
    if list.is_empty() {
        return Err(Error::settings("nodes", "the node list is empty"));
    }
    let nodes = list
        .iter()
        .map(|address| {
            let (host, port) = split_host_port(address, "nodes")?;
            Ok(Node::new(host.clone(), host.parse().ok(), port))
        })
        .collect::<Result<Vec<Node>, Error>>()?;
    Ok(ClusterConfig::new(0, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each floor on its own: zero for one setting clamps that setting to its floor and leaves
    /// the others at their defaults. (tests/settings.rs gives three of the four working values
    /// in its smallest-values client, so it cannot see their floors.)
    #[test]
    fn each_duration_floor_holds_on_its_own() {
        type Set = fn(ClientBuilder) -> ClientBuilder;
        const ZERO: Duration = Duration::ZERO;
        let durations = |b: &ClientBuilder| {
            [
                b.poll_interval,
                b.connect_timeout,
                b.request_timeout,
                b.discovery_timeout,
            ]
        };
        let ms = Duration::from_millis;
        let zero_one: [(&str, Set, Duration); 4] = [
            ("poll_interval", |b| b.poll_interval(ZERO), ms(10)),
            ("connect_timeout", |b| b.connect_timeout(ZERO), ms(1)),
            ("request_timeout", |b| b.request_timeout(ZERO), ms(1)),
            ("discovery_timeout", |b| b.discovery_timeout(ZERO), ms(1)),
        ];
        for (i, (name, set, floor)) in zero_one.into_iter().enumerate() {
            let mut expected = durations(&ClientBuilder::default());
            expected[i] = floor;
            assert_eq!(
                durations(&set(ClientBuilder::default())),
                expected,
                "{name}(0)"
            );
        }
    }
}

/// Without the `tls` feature, [`ClientBuilder::serverless`] is a compile error that names the
/// feature (rather than rustc's "field, not a method").
#[cfg(not(feature = "tls"))]
#[diagnostic::on_unimplemented(
    message = "`ClientBuilder::serverless` needs the cargo feature `tls` (ElastiCache Serverless is reached over TLS only)",
    label = "needs the `tls` feature",
    note = "enable it: memcached-autodiscovery = {{ version = \"...\", features = [\"tls\"] }}"
)]
trait NeedsTheTlsFeature {}

#[cfg(not(feature = "tls"))]
impl ClientBuilder {
    /// ElastiCache Serverless needs the cargo feature `tls`: without it, calling this does
    /// not compile, and the error names the feature.
    #[allow(private_bounds)]
    pub fn serverless<E: NeedsTheTlsFeature>(self, _endpoint: E) -> Self {
        self
    }
}
