//! A local emulated ElastiCache memcached cluster, for tests and demos of
//! [`memcached-autodiscovery`](memcached_autodiscovery) and of the code that uses it.
//!
//! This is its own crate, apart from the client library, so that the client carries no test
//! apparatus. Add it as a dev-dependency next to the library:
//!
//! ```toml
//! [dependencies]
//! memcached-autodiscovery = "0.1"
//!
//! [dev-dependencies]
//! memcached-autodiscovery-testkit = "0.1" # or { version = "0.1", features = ["tls"] }
//! ```
//!
//! Stock memcached does not know `config get cluster`, so a real cluster cannot be discovered
//! locally. [`LocalCluster`] puts together what a client sees of an ElastiCache cluster:
//!
//! * N real memcached processes ([`MemcachedProcess`]) on loopback addresses, each on a port the
//!   OS reported free, by default on distinct IPs `127.0.0.2`, `127.0.0.3`, ...;
//! * a configuration endpoint ([`ConfigEndpoint`]) on `127.0.0.1` that answers
//!   `config get cluster` (with or without a trailing space, CRLF or LF) and the legacy
//!   `get AmazonElastiCache:cluster` with the node list in the exact ElastiCache wire format
//!   (`CONFIG cluster 0 <bytes>\r\n<version>\n<host|ip|port ...>\n\r\nEND\r\n`, see
//!   [`encode_reply`]), `version` with `VERSION 1.6.18`, and anything else with `ERROR`.
//!
//! Plain memcached answers `ERROR` to `config get cluster`, where every ElastiCache node answers
//! it with the configuration. With [`LocalClusterBuilder::nodes_answer_config`], each node is a
//! [`NodeFront`] on the node's address before a real memcached on another port: the front answers
//! `config get cluster` with the configuration the endpoint serves (same wire format, same
//! version, updated by every change below) and relays every other byte both ways unchanged, in
//! order, also when requests are pipelined. Killing such a node closes the front's port and
//! connections too (connects are refused, as to a dead node), and restarting binds the same port
//! again. [`LocalCluster::set_node_answers_config`] makes a node answer `ERROR` as plain
//! memcached does, [`LocalCluster::set_node_config`] makes it serve a configuration of its own
//! (a node lagging behind the endpoint), and [`LocalCluster::node_config_requests`] counts what
//! a node was asked.
//!
//! The cluster changes as a real one does: nodes are added, removed and replaced (new IP, same
//! hostname and port) with the version growing by one, and processes can be killed, restarted,
//! frozen (SIGSTOP) and thawed. The endpoint can be told to fail in each way a client must
//! survive ([`EndpointBehavior`]).
//!
//! Node hostnames (`node-<k>.local-cluster.test`) do not resolve: the served configuration
//! always carries each node's IP, and clients connect by IP.
//!
//! With the feature `tls` (which turns on the library's `tls` feature too, for the clients that
//! talk to such a cluster), [`LocalClusterBuilder::tls`] makes every node (memcached's own TLS,
//! `-Z`) and the endpoint (rustls) speak TLS only, as an ElastiCache cluster with in-transit
//! encryption does; [`LocalClusterBuilder::tls_client_auth`] also makes them require a client
//! certificate.
//!
//! Requirements: Linux (for the 127.0.0.0/8 loopback range) and the `memcached` binary
//! (`apt-get install memcached`, or `scripts/test`, which installs what is missing; another
//! binary can be named with `MEMCACHED_BIN`). Every process is killed when its owner is dropped,
//! also when a test panics.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use memcached_autodiscovery_testkit::{EndpointBehavior, LocalCluster};
//! let cluster = LocalCluster::builder().nodes(2).max_item_size(Some("2m".into())).start().await?;
//! let endpoint = cluster.config_endpoint(); // give this to the client
//! assert_eq!(cluster.config().version(), 1);
//! cluster.replace_node(0).await?; // version 2: node 0 has a new IP
//! cluster.set_endpoint_behavior(EndpointBehavior::Hang);
//! # let _ = endpoint; Ok(()) }
//! ```
//!
//! With the feature `tls`, [`ServerlessStandIn`] stands in for an ElastiCache Serverless
//! endpoint: TLS only, one endpoint in front of one real memcached, `get`/`gets` lines capped at
//! 16 KB, and the commands Serverless refuses refused as it documents. [`TestCa`] makes the
//! certificate authority a test trusts and the certificates its servers present.
//!

#![deny(missing_docs)]
// One `unsafe` call, confined to one function: kill(2) for MemcachedProcess::freeze and thaw.
#![deny(unsafe_code)]

mod cluster;
mod endpoint;
mod memcached;
mod node_front;
mod reply;
mod server_thread;
#[cfg(feature = "tls")]
mod serverless;
#[cfg(feature = "tls")]
mod test_ca;
#[cfg(feature = "tls")]
mod tls;

pub use cluster::{LocalCluster, LocalClusterBuilder};
pub use endpoint::{ConfigEndpoint, EndpointBehavior};
#[cfg(feature = "tls")]
pub use memcached::MemcachedTls;
pub use memcached::{MemcachedOptions, MemcachedProcess};
pub use node_front::NodeFront;
pub use reply::{encode_reply, ReplyKind};
#[cfg(feature = "tls")]
pub use serverless::{ServerlessStandIn, MAX_GET_LINE};
#[cfg(feature = "tls")]
pub use test_ca::TestCa;
