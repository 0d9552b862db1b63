//! [`LocalCluster`]: memcached processes plus the emulated configuration endpoint that lists them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use memcached_autodiscovery::{ClusterConfig, Node};

use crate::endpoint::{ConfigEndpoint, EndpointBehavior};
use crate::memcached::{MemcachedOptions, MemcachedProcess};
use crate::node_front::NodeFront;

/// How many fresh loopback IPs a replacement node tries before giving up.
const IP_ATTEMPTS: usize = 5;

/// A local stand-in for an ElastiCache memcached cluster: N real memcached processes on loopback
/// addresses and a configuration endpoint that answers `config get cluster` (and the legacy key)
/// with their list, in the exact ElastiCache wire format.
///
/// Nodes are named `node-<k>.local-cluster.test` (k = 1, 2, ... in order of creation). These
/// names do not resolve, so every node in the served configuration carries its IP, and clients
/// connect by IP. By default node k listens on `127.0.0.(k+1)`, so that nodes differ by IP as on
/// ElastiCache (this needs the whole 127.0.0.0/8 range on loopback, as on Linux).
///
/// Nodes are addressed by their index among the managed nodes, which is also their position in
/// the served configuration (unless [`LocalCluster::set_nodes_same_version`] replaced the served
/// list). Methods taking an index panic when it is out of range.
///
/// With [`LocalClusterBuilder::nodes_answer_config`], every node also answers
/// `config get cluster` as an ElastiCache node does: a [`NodeFront`] listens on the node's
/// address and relays to a real memcached on another port of the same IP. [`kill`] then closes
/// the front's port and connections too, and [`restart`] binds the same port again.
///
/// Dropping the cluster kills every process (also frozen ones) and stops the endpoint.
///
/// [`kill`]: LocalCluster::kill
/// [`restart`]: LocalCluster::restart
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use memcached_autodiscovery_testkit::LocalCluster;
/// let cluster = LocalCluster::start(3).await?;
/// println!("discover from {}", cluster.config_endpoint());
/// cluster.add_node().await?; // version 2, four nodes
/// cluster.kill(0); // node 0 stays listed but refuses connections
/// cluster.restart(0).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalCluster {
    /// The nodes; dropped first, so that no front outlives the endpoint it reads.
    state: Mutex<State>,
    endpoint: Arc<ConfigEndpoint>,
    options: MemcachedOptions,
    distinct_ips: bool,
    /// Whether every node has a [`NodeFront`] that answers `config get cluster`.
    fronts: bool,
    /// Whether new fronts answer `config get cluster` (not when the endpoint is legacy only).
    fronts_answer: bool,
    /// The certificate files the nodes read; removed after the processes (declared last).
    #[cfg(feature = "tls")]
    _tls_files: Option<super::tls::TlsFiles>,
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    /// The k of the next node's hostname.
    next_name: usize,
    /// Offset from 127.0.0.0 of the next loopback IP to hand out.
    next_ip: u32,
    /// Identity of the next slot (indexes move when nodes are removed).
    next_id: u64,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    node: Node,
    /// The front on the node's address, with `nodes_answer_config`; closed before the process
    /// is killed (declared first).
    front: Option<NodeFront>,
    process: MemcachedProcess,
}

impl Slot {
    /// Where clients reach the node: its front, else memcached itself.
    fn addr(&self) -> SocketAddr {
        match &self.front {
            Some(front) => front.addr(),
            None => self.process.addr(),
        }
    }

    /// Makes the node look dead: the front stops listening and drops its connections, and the
    /// process is killed.
    fn kill(&mut self) {
        if let Some(front) = &self.front {
            front.close();
        }
        self.process.kill();
    }
}

/// Options of a [`LocalCluster`]; see [`LocalCluster::builder`].
#[derive(Debug, Clone)]
pub struct LocalClusterBuilder {
    nodes: usize,
    options: MemcachedOptions,
    distinct_ips: bool,
    legacy_only: bool,
    nodes_answer_config: bool,
    #[cfg(feature = "tls")]
    tls: Option<super::tls::ServerIdentity>,
}

impl Default for LocalClusterBuilder {
    fn default() -> Self {
        LocalClusterBuilder {
            nodes: 3,
            options: MemcachedOptions::default(),
            distinct_ips: true,
            legacy_only: false,
            nodes_answer_config: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl LocalClusterBuilder {
    /// Number of nodes to start with. Defaults to 3.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Cache memory of each node in MiB (memcached `-m`). Defaults to 64.
    pub fn memory_mb(mut self, memory_mb: u32) -> Self {
        self.options.memory_mb = memory_mb;
        self
    }

    /// Largest item size of each node (memcached `-I`), e.g. `Some("2m".into())`. Defaults to
    /// `None`: memcached's own 1 MiB.
    pub fn max_item_size(mut self, size: Option<String>) -> Self {
        self.options.max_item_size = size;
        self
    }

    /// Whether each node gets its own loopback IP (node k on `127.0.0.(k+1)`). When `false`,
    /// all nodes share `127.0.0.1` and differ by port. Defaults to `true`.
    pub fn distinct_ips(mut self, distinct_ips: bool) -> Self {
        self.distinct_ips = distinct_ips;
        self
    }

    /// Worker threads of each node (memcached `-t`). Defaults to 1.
    pub fn threads(mut self, threads: u32) -> Self {
        self.options.threads = threads;
        self
    }

    /// When `true`, the endpoint answers `ERROR` to `config get cluster` and serves the
    /// configuration only under the legacy key `AmazonElastiCache:cluster`, like an engine
    /// older than 1.4.14. Defaults to `false`.
    pub fn legacy_only(mut self, legacy_only: bool) -> Self {
        self.legacy_only = legacy_only;
        self
    }

    /// When `true`, every node answers `config get cluster` with the configuration the endpoint
    /// serves, as ElastiCache nodes do, and everything else as memcached does: a [`NodeFront`]
    /// listens on the node's address (the one in the configuration) and relays to a real
    /// memcached on another free port of the same IP. Defaults to `false`: the nodes are plain
    /// memcached and answer `ERROR`.
    ///
    /// With [`legacy_only`](LocalClusterBuilder::legacy_only) the fronts start out answering
    /// `ERROR` too (an engine older than 1.4.14);
    /// [`LocalCluster::set_node_answers_config`] changes that per node. Not available with TLS:
    /// [`start`](LocalClusterBuilder::start) fails.
    pub fn nodes_answer_config(mut self, nodes_answer_config: bool) -> Self {
        self.nodes_answer_config = nodes_answer_config;
        self
    }

    /// The memcached binary to run. Defaults to `$MEMCACHED_BIN` when set, else `memcached` on
    /// `PATH`.
    pub fn memcached_binary(mut self, binary: impl Into<std::path::PathBuf>) -> Self {
        self.options.binary = binary.into();
        self
    }

    /// Serves TLS only, on every node and on the configuration endpoint, as an ElastiCache
    /// cluster with in-transit encryption does (feature `tls`). Every server presents
    /// `cert_chain_pem` (the certificate first, then any intermediates) with `key_pem`.
    /// Node k is named `node-k.local-cluster.test` and listed with its IP; the endpoint listens
    /// on `127.0.0.1`: give the certificate those names (or a `*.local-cluster.test` wildcard,
    /// checked with `TlsConfig::server_name`). The files memcached reads are kept in a private
    /// temporary directory, readable by `nobody`, removed with the cluster.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, cert_chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        let client_auth = self.tls.take().and_then(|t| t.client_auth);
        self.tls = Some(super::tls::ServerIdentity {
            chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
            client_auth,
        });
        self
    }

    /// With [`tls`](LocalClusterBuilder::tls): every node (memcached `ssl_verify_mode=2`) and
    /// the endpoint require a client certificate issued by a CA in `ca_pem`. The kit's own
    /// readiness probes present `probe_chain_pem` and `probe_key_pem`, a client certificate
    /// that CA issued. Without `tls`, [`start`](LocalClusterBuilder::start) fails.
    #[cfg(feature = "tls")]
    pub fn tls_client_auth(
        mut self,
        ca_pem: impl Into<Vec<u8>>,
        probe_chain_pem: impl Into<Vec<u8>>,
        probe_key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        let auth = super::tls::ClientAuth {
            ca_pem: ca_pem.into(),
            probe_chain_pem: probe_chain_pem.into(),
            probe_key_pem: probe_key_pem.into(),
        };
        match &mut self.tls {
            Some(identity) => identity.client_auth = Some(auth),
            None => {
                self.tls = Some(super::tls::ServerIdentity {
                    chain_pem: Vec::new(),
                    key_pem: Vec::new(),
                    client_auth: Some(auth),
                })
            }
        }
        self
    }

    /// Starts the nodes, each ready to answer, and the endpoint serving configuration version 1.
    pub async fn start(self) -> io::Result<LocalCluster> {
        #[cfg(feature = "tls")]
        if self.nodes_answer_config && self.tls.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nodes_answer_config does not work with tls: the node fronts speak plaintext",
            ));
        }
        let config = ClusterConfig::new(1, Vec::new());
        #[cfg(feature = "tls")]
        let (endpoint, options, tls_files) = match &self.tls {
            None => (ConfigEndpoint::start(config)?, self.options, None),
            Some(identity) => {
                if identity.chain_pem.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "tls_client_auth needs tls(cert_chain_pem, key_pem) too",
                    ));
                }
                let files = super::tls::TlsFiles::write(identity)?;
                let endpoint = ConfigEndpoint::start_tls(
                    config,
                    &identity.chain_pem,
                    &identity.key_pem,
                    identity.client_auth.as_ref().map(|a| a.ca_pem.as_slice()),
                )?;
                let mut options = self.options;
                options.tls = Some(files.memcached());
                (endpoint, options, Some(files))
            }
        };
        #[cfg(not(feature = "tls"))]
        let (endpoint, options) = (ConfigEndpoint::start(config)?, self.options);
        endpoint.set_legacy_only(self.legacy_only);
        let cluster = LocalCluster {
            state: Mutex::new(State {
                slots: Vec::new(),
                next_name: 1,
                next_ip: 2,
                next_id: 0,
            }),
            endpoint: Arc::new(endpoint),
            options,
            distinct_ips: self.distinct_ips,
            fronts: self.nodes_answer_config,
            fronts_answer: !self.legacy_only,
            #[cfg(feature = "tls")]
            _tls_files: tls_files,
        };
        for _ in 0..self.nodes {
            cluster.start_node().await?;
        }
        cluster.publish(&cluster.lock(), false);
        Ok(cluster)
    }
}

impl LocalCluster {
    /// Starts a cluster of `nodes` nodes with the default options
    /// (`LocalCluster::builder().nodes(nodes).start()`).
    pub async fn start(nodes: usize) -> io::Result<LocalCluster> {
        LocalCluster::builder().nodes(nodes).start().await
    }

    /// A builder with the default options: 3 nodes, 64 MiB each, distinct loopback IPs.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder::default()
    }

    /// Where the configuration endpoint listens (on `127.0.0.1`).
    pub fn config_endpoint(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// The configuration the endpoint serves now.
    pub fn config(&self) -> ClusterConfig {
        self.endpoint.config()
    }

    /// The managed nodes, in index order.
    pub fn nodes(&self) -> Vec<Node> {
        self.lock().slots.iter().map(|s| s.node.clone()).collect()
    }

    /// The `ip:port` of every managed node, in index (= configuration) order. Killed and frozen
    /// nodes are included: they stay in the configuration.
    pub fn node_addrs(&self) -> Vec<SocketAddr> {
        self.lock().slots.iter().map(Slot::addr).collect()
    }

    /// Number of managed nodes.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether the cluster has no managed node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the memcached process of node `index` listens: the node's address, or with
    /// [`nodes_answer_config`](LocalClusterBuilder::nodes_answer_config) the port behind its
    /// front.
    pub fn node_memcached_addr(&self, index: usize) -> SocketAddr {
        slot(&mut self.lock(), index).process.addr()
    }

    /// Whether the nodes answer `config get cluster` through a front
    /// ([`LocalClusterBuilder::nodes_answer_config`]).
    pub fn nodes_answer_config(&self) -> bool {
        self.fronts
    }

    /// How many `config get cluster` requests node `index` has received, whether it answered
    /// them with the configuration or with `ERROR`. Always 0 without
    /// [`nodes_answer_config`](LocalClusterBuilder::nodes_answer_config) (plain memcached
    /// counts nothing); a replaced node starts again from 0.
    pub fn node_config_requests(&self, index: usize) -> u64 {
        slot(&mut self.lock(), index)
            .front
            .as_ref()
            .map_or(0, NodeFront::config_requests)
    }

    /// With [`nodes_answer_config`](LocalClusterBuilder::nodes_answer_config): whether node
    /// `index` answers `config get cluster` with the configuration (`true`, as ElastiCache) or
    /// with `ERROR` (`false`, as plain memcached or Memorystore), from the next request on.
    /// Added and replaced nodes start out answering (unless the endpoint is
    /// [`legacy_only`](LocalClusterBuilder::legacy_only)). Without fronts the nodes always
    /// answer `ERROR`, and this does nothing.
    pub fn set_node_answers_config(&self, index: usize, answers: bool) {
        if let Some(front) = &slot(&mut self.lock(), index).front {
            front.set_answers_config(answers);
        }
    }

    /// With [`nodes_answer_config`](LocalClusterBuilder::nodes_answer_config): node `index`
    /// answers `config get cluster` with `config` instead of the endpoint's configuration (a
    /// node that lags behind the endpoint, or is ahead of it), from the next request on; `None`
    /// serves the endpoint's again. Added and replaced nodes start out serving the endpoint's.
    /// Without fronts this does nothing. See [`NodeFront::set_config_override`].
    pub fn set_node_config(&self, index: usize, config: Option<ClusterConfig>) {
        if let Some(front) = &slot(&mut self.lock(), index).front {
            front.set_config_override(config);
        }
    }

    /// The process id of node `index`, or `None` while it is killed.
    pub fn pid(&self, index: usize) -> Option<u32> {
        slot(&mut self.lock(), index).process.pid()
    }

    /// The configuration endpoint itself, for what the cluster methods do not cover.
    pub fn endpoint(&self) -> &ConfigEndpoint {
        &self.endpoint
    }

    /// Starts a new node, appends it to the configuration and bumps the version.
    pub async fn add_node(&self) -> io::Result<Node> {
        let node = self.start_node().await?;
        self.publish(&self.lock(), true);
        Ok(node)
    }

    /// Removes node `index` from the configuration (bumping the version), then stops its
    /// process. Returns the node removed.
    pub async fn remove_node(&self, index: usize) -> Node {
        let removed = {
            let mut state = self.lock();
            slot(&mut state, index);
            let removed = state.slots.remove(index);
            self.publish(&state, true);
            removed
        };
        let node = removed.node.clone();
        // Dropping the slot kills the process, after the configuration stopped listing it.
        drop(removed);
        node
    }

    /// Replaces node `index` as a failed ElastiCache node is replaced: a new, empty process on a
    /// new loopback IP, with the same hostname and port. The configuration then lists the new IP
    /// under a bumped version, and the old process is stopped.
    pub async fn replace_node(&self, index: usize) -> io::Result<Node> {
        self.replace_node_with(index, true).await
    }

    /// Like [`replace_node`](LocalCluster::replace_node); with `bump_version == false` the
    /// configuration changes under the same version (an in-place replacement some engines are
    /// reported to make).
    pub async fn replace_node_with(&self, index: usize, bump_version: bool) -> io::Result<Node> {
        let (id, port) = {
            let mut state = self.lock();
            let slot = slot(&mut state, index);
            (slot.id, slot.node.port())
        };
        let mut last = None;
        let mut started = None;
        for _ in 0..IP_ATTEMPTS {
            let ip = next_loopback(&mut self.lock());
            match self.start_process(SocketAddr::new(ip, port)).await {
                Ok(process) => {
                    started = Some(process);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        let Some((front, process)) = started else {
            return Err(last.unwrap_or_else(|| io::Error::other("no loopback IP left")));
        };
        let (node, old) = {
            let mut state = self.lock();
            let slot = find(&mut state, id)?;
            let old_front = std::mem::replace(&mut slot.front, front);
            let old_process = std::mem::replace(&mut slot.process, process);
            slot.node = Node::new(
                slot.node.hostname(),
                Some(slot.addr().ip()),
                slot.node.port(),
            );
            let node = slot.node.clone();
            self.publish(&state, bump_version);
            (node, (old_front, old_process))
        };
        drop(old);
        Ok(node)
    }

    /// Kills node `index` (SIGKILL). It stays in the configuration; connects to it are refused
    /// until [`restart`](LocalCluster::restart). With
    /// [`nodes_answer_config`](LocalClusterBuilder::nodes_answer_config), the front first
    /// closes its port and every connection, as the node's death closes them, then the process
    /// is killed; this returns once both are done.
    pub fn kill(&self, index: usize) {
        slot(&mut self.lock(), index).kill();
    }

    /// Starts node `index` again, empty, on the same `ip:port` (killing it first if it still
    /// runs), and waits until it answers. With
    /// [`nodes_answer_config`](LocalClusterBuilder::nodes_answer_config), memcached starts on a
    /// fresh port behind the front, and the front binds the node's port again.
    pub async fn restart(&self, index: usize) -> io::Result<()> {
        let (id, addr) = {
            let mut state = self.lock();
            let slot = slot(&mut state, index);
            slot.kill();
            (slot.id, slot.process.addr())
        };
        if !self.fronts {
            let process = MemcachedProcess::start_on(addr, &self.options).await?;
            find(&mut self.lock(), id)?.process = process;
            return Ok(());
        }
        let process = MemcachedProcess::start(addr.ip(), &self.options).await?;
        let mut state = self.lock();
        let slot = find(&mut state, id)?;
        let upstream = process.addr();
        slot.process = process;
        match &slot.front {
            Some(front) => {
                front.set_upstream(upstream);
                front.reopen()
            }
            None => Ok(()),
        }
    }

    /// Suspends node `index` (SIGSTOP): connections stay open but requests get no reply.
    pub fn freeze(&self, index: usize) {
        let mut state = self.lock();
        let slot = slot(&mut state, index);
        if let Err(e) = slot.process.freeze() {
            panic!("cannot freeze node {index}: {e}");
        }
    }

    /// Resumes node `index` after [`freeze`](LocalCluster::freeze) (SIGCONT).
    pub fn thaw(&self, index: usize) {
        let mut state = self.lock();
        let slot = slot(&mut state, index);
        if let Err(e) = slot.process.thaw() {
            panic!("cannot thaw node {index}: {e}");
        }
    }

    /// Serves the same nodes under `version` (lower it to emulate a stale endpoint, or raise it
    /// without a membership change).
    pub fn set_version(&self, version: u64) {
        self.endpoint
            .update_config(|c| *c = ClusterConfig::new(version, c.nodes().to_vec()));
    }

    /// Serves `nodes` under the current version. The managed processes are not touched; the next
    /// membership change (add, remove, replace) lists the managed nodes again.
    pub fn set_nodes_same_version(&self, nodes: Vec<Node>) {
        self.endpoint
            .update_config(|c| *c = ClusterConfig::new(c.version(), nodes));
    }

    /// Changes how the endpoint answers; see [`EndpointBehavior`].
    pub fn set_endpoint_behavior(&self, behavior: EndpointBehavior) {
        self.endpoint.set_behavior(behavior);
    }

    /// How many discovery commands (`config get cluster` and the legacy get) the endpoint has
    /// received.
    pub fn endpoint_requests(&self) -> u64 {
        self.endpoint.requests()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a process for a new node and appends it to the managed nodes (not yet served).
    async fn start_node(&self) -> io::Result<Node> {
        let (k, ip) = {
            let mut state = self.lock();
            let k = state.next_name;
            state.next_name += 1;
            let ip = if self.distinct_ips {
                next_loopback(&mut state)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            (k, ip)
        };
        let (front, process) = self.start_process(SocketAddr::new(ip, 0)).await?;
        let mut slot = Slot {
            id: 0,
            node: Node::new(format!("node-{k}.local-cluster.test"), Some(ip), 0),
            front,
            process,
        };
        slot.node = Node::new(slot.node.hostname(), slot.node.ip(), slot.addr().port());
        let node = slot.node.clone();
        let mut state = self.lock();
        slot.id = state.next_id;
        state.next_id += 1;
        state.slots.push(slot);
        Ok(node)
    }

    /// Starts what serves a node at `addr` (port 0: a free port): memcached there, or with
    /// fronts, the front there and memcached on a free port of the same IP. A port in use fails
    /// at once with `AddrInUse`.
    async fn start_process(
        &self,
        addr: SocketAddr,
    ) -> io::Result<(Option<NodeFront>, MemcachedProcess)> {
        if !self.fronts {
            let process = if addr.port() == 0 {
                MemcachedProcess::start(addr.ip(), &self.options).await?
            } else {
                MemcachedProcess::start_once(addr, &self.options).await?
            };
            return Ok((None, process));
        }
        // The front first: its port is the node's, and binding it is what may fail.
        let endpoint = Arc::downgrade(&self.endpoint);
        let front = NodeFront::start(addr, addr, move || endpoint.upgrade().map(|e| e.config()))?;
        front.set_answers_config(self.fronts_answer);
        let process = MemcachedProcess::start(addr.ip(), &self.options).await?;
        front.set_upstream(process.addr());
        Ok((Some(front), process))
    }

    /// Serves the managed nodes, under a bumped version if `bump`.
    fn publish(&self, state: &State, bump: bool) {
        let nodes: Vec<Node> = state.slots.iter().map(|s| s.node.clone()).collect();
        self.endpoint.update_config(|c| {
            let version = if bump { c.version() + 1 } else { c.version() };
            *c = ClusterConfig::new(version, nodes);
        });
    }
}

fn slot(state: &mut State, index: usize) -> &mut Slot {
    let len = state.slots.len();
    match state.slots.get_mut(index) {
        Some(slot) => slot,
        None => panic!("node index {index} out of range: the cluster has {len} nodes"),
    }
}

fn find(state: &mut State, id: u64) -> io::Result<&mut Slot> {
    state.slots.iter_mut().find(|s| s.id == id).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "the node was removed from the cluster meanwhile",
        )
    })
}

/// The next unused loopback IP: 127.0.0.2, 127.0.0.3, ..., skipping addresses ending in 0 or 255.
fn next_loopback(state: &mut State) -> IpAddr {
    loop {
        if state.next_ip >= 0x00ff_ff00 {
            state.next_ip = 2;
        }
        let offset = state.next_ip;
        state.next_ip += 1;
        if !matches!(offset & 0xff, 0 | 255) {
            return IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | offset));
        }
    }
}
