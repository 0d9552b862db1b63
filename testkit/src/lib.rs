#![doc = include_str!("../README.md")]
//!
//! ## Where to start
//!
//! * [`LocalCluster`] (and [`LocalClusterBuilder`]): the nodes and the endpoint together, and
//!   every change and fault above.
//! * [`ConfigEndpoint`] and [`EndpointBehavior`]: the endpoint alone, serving a
//!   [`ClusterConfig`](memcached_autodiscovery::ClusterConfig) of your choosing;
//!   [`encode_reply`] writes the reply it sends.
//! * [`MemcachedProcess`] and [`MemcachedOptions`]: one memcached process, started, killed,
//!   restarted, frozen and thawed.
//! * [`NodeFront`]: a node that answers `config get cluster` as ElastiCache nodes do
//!   ([`LocalClusterBuilder::nodes_answer_config`]).
#![cfg_attr(
    feature = "tls",
    doc = "* With the feature `tls`: [`LocalClusterBuilder::tls`], [`ServerlessStandIn`] (an \
           ElastiCache Serverless endpoint: TLS only, `get` lines capped at 16 KB, the commands \
           Serverless refuses refused) and [`TestCa`]."
)]
#![cfg_attr(
    not(feature = "tls"),
    doc = "* With the feature `tls`: `LocalClusterBuilder::tls`, `ServerlessStandIn` (an \
           ElastiCache Serverless endpoint: TLS only, `get` lines capped at 16 KB, the commands \
           Serverless refuses refused) and `TestCa`."
)]
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
mod signal;
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
