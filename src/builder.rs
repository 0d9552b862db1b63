//! [`ClientBuilder`]: every setting of a [`Client`], its default, and the first discovery.
//!
//! This module owns configuration and start-up; the calls themselves are in [`crate::client`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::client::{Client, Inner};
use crate::cluster::{Placement, Snapshot};
use crate::config::{ClusterConfig, Node};
use crate::connection::ConnectionSettings;
use crate::discovery::{fetch_with, spawn_poller, split_host_port, PollState};
use crate::distribution::{Distribution, NodeIdentity};
use crate::error::Error;
use crate::protocol::{Limits, MAX_VALUE_CEILING};

enum Source {
    Endpoint(String),
    Nodes(Vec<String>),
}

/// Builds a [`Client`]. Every setting has a default that is safe in AWS Lambda: short timeouts
/// (well under a function's), lazy connections, a refresh on staleness after a freeze.
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
pub struct ClientBuilder {
    source: Option<Source>,
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
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
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
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// Discover the nodes from a configuration endpoint, `host:port` (ElastiCache: the
    /// cluster's `.cfg.` address; Memorystore: the discovery endpoint). The port defaults to
    /// 11211. Replaces any earlier `nodes(...)`.
    pub fn config_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.source = Some(Source::Endpoint(endpoint.into()));
        self
    }

    /// Use a fixed list of nodes, `host:port` each (IPv6 as `[addr]:port`), with no discovery:
    /// for plain memcached. Replaces any earlier `config_endpoint(...)`.
    pub fn nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.source = Some(Source::Nodes(nodes.into_iter().map(Into::into).collect()));
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
    /// background. Defaults to 60 s, the cadence of AWS's own clients.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Longest wait for one request's reply, queueing included. A node that does not answer
    /// within it has its connection reset. Defaults to 1 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Longest wait for a TCP connect to a node. Defaults to 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Longest wait for one discovery (DNS, connect, both commands). Bounds `build()`.
    /// Defaults to 2 s.
    pub fn discovery_timeout(mut self, timeout: Duration) -> Self {
        self.discovery_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Largest value sent or accepted, in bytes. Defaults to 1 MiB (memcached's default item
    /// size); at most 1 GiB. Raise it together with memcached's `-I`.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes.min(MAX_VALUE_CEILING);
        self
    }

    /// Connections per node. Defaults to 1: requests are pipelined, so one connection serves
    /// any number of concurrent callers.
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.connections_per_node = n.max(1);
        self
    }

    /// Requests that may wait for a connection's writer before callers are held back
    /// (backpressure). Defaults to 4096.
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n.max(1);
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
    pub fn tls(mut self, config: crate::tls::TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Builds the client. With a configuration endpoint, the first discovery happens here,
    /// bounded by the discovery timeout; an endpoint without auto-discovery (plain memcached)
    /// gives [`Error::DiscoveryUnsupported`]. Connections open lazily, on first use.
    /// Must be called within a tokio runtime.
    pub async fn build(self) -> Result<Client, Error> {
        let limits = Limits::with_max_value_len(self.max_value_size);
        let settings = Arc::new(ConnectionSettings {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            limits,
            queue_depth: self.queue_depth,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            #[cfg(feature = "tls")]
            tls: match &self.tls {
                Some(tls) => Some(tls.context()?),
                None => None,
            },
        });
        let (endpoint, config) = match self.source {
            None => {
                return Err(Error::Config(
                    "no nodes: call config_endpoint(\"host:port\") or nodes([...])".into(),
                ))
            }
            Some(Source::Nodes(list)) => (None, static_config(&list)?),
            Some(Source::Endpoint(endpoint)) => {
                split_host_port(&endpoint)?;
                let config = fetch_with(&endpoint, self.discovery_timeout, &settings).await?;
                (Some(endpoint), config)
            }
        };
        let placement = Placement {
            distribution: self.distribution,
            identity: self.node_identity,
            weights: match self.node_weights {
                None => None,
                Some(list) => Some(Arc::new(weight_map(&list)?)),
            },
        };
        let (snapshot, _) =
            Snapshot::empty(placement).next(config, &settings, self.connections_per_node);
        tracing::info!(
            version = snapshot.config.version,
            nodes = snapshot.nodes.len(),
            endpoint = endpoint.as_deref().unwrap_or("(static)"),
            "memcached.topology.initial"
        );
        let poll = Arc::new(PollState::new(self.poll_interval));
        poll.attempted();
        let has_endpoint = endpoint.is_some();
        let inner = Arc::new(Inner {
            snapshot: ArcSwap::from_pointee(snapshot),
            settings,
            limits,
            connections_per_node: self.connections_per_node,
            endpoint,
            discovery_timeout: self.discovery_timeout,
            poll: poll.clone(),
        });
        if has_endpoint {
            spawn_poller(Arc::downgrade(&inner), poll);
        }
        Ok(Client { inner })
    }
}

/// Node weights keyed by node id (`hostname:port`, IPv6 without brackets).
fn weight_map(list: &[(String, u32)]) -> Result<HashMap<String, u32>, Error> {
    list.iter()
        .map(|(address, weight)| {
            let (host, port) = split_host_port(address)?;
            Ok((Node::new(host, None, port).id(), *weight))
        })
        .collect()
}

/// The configuration of a static node list (version 0).
fn static_config(list: &[String]) -> Result<ClusterConfig, Error> {
    if list.is_empty() {
        return Err(Error::Config("the node list is empty".into()));
    }
    let nodes = list
        .iter()
        .map(|address| {
            let (host, port) = split_host_port(address)?;
            Ok(Node::new(host.clone(), host.parse().ok(), port))
        })
        .collect::<Result<Vec<Node>, Error>>()?;
    Ok(ClusterConfig { version: 0, nodes })
}
