//! A memcached client for AWS ElastiCache for Memcached and Google Memorystore for Memcached
//! that finds the cluster's nodes by auto-discovery and follows them as they change.
//!
//! ```no_run
//! # async fn demo() -> Result<(), memcached_autodiscovery::Error> {
//! use std::time::Duration;
//! use memcached_autodiscovery::Client;
//!
//! let client = Client::builder()
//!     .config_endpoint("mycluster.abc123.cfg.use1.cache.amazonaws.com:11211")
//!     .build()
//!     .await?;
//! client.set("user:42", r#"{"name":"Ada"}"#, Duration::from_secs(300)).await?;
//! let value = client.get("user:42").await?;          // Option<Bytes>
//! println!("{} nodes, version {}", client.cluster().nodes.len(), client.cluster().version);
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! ```text
//!  caller ─ key ─▶ validate ─▶ load snapshot (lock-free) ─▶ distribution: key ─▶ node ─▶ connection
//!                                                                                         │ channel
//!  one task per socket, driving a pipeline:  queued requests ─▶ ONE write;
//!                        reads ─▶ protocol::decode ─▶ FIFO ─▶ caller
//!
//!  poller (weak ref) ─ every interval ± jitter, or when a request finds the last poll stale:
//!      resolve endpoint ─▶ `config get cluster` (legacy key as fallback) ─▶ config::parse
//!      ─▶ apply rules ─▶ next snapshot (reusing live connections) ─▶ atomic swap
//! ```
//!
//! * [`protocol`], [`config`], [`distribution`] and [`pipeline`] are pure: bytes in, values
//!   out, no I/O. They are fuzzed and benchmarked on their own.
//! * One task owns each socket: it drives a [`pipeline::Pipeline`] (the connection's rules) over
//!   a stream opened by the transport (TCP, TLS, or a [`transport::Dial`] of your own).
//!   Requests queued together go out in one write; replies are matched in order.
//! * [`topology`] owns the snapshot, the apply rules ([`topology::decide`]) and the poller.
//! * The topology is an immutable snapshot swapped atomically: a request sees the old topology or
//!   the new one, never a mix, and never waits for a refresh.
//!
//! # Cancellation safety
//!
//! Every call may be dropped at any await point (a timeout, `select!`). A request that was
//! already queued keeps its place and its reply is read and discarded; a request whose caller
//! left before its connection took it for writing is not sent. A later call can never receive
//! another call's reply. A node that stops answering has its connection reset after the request
//! timeout.
//!
//! # One load per key: `get_or_load`
//!
//! [`Client::get_or_load`] fills a missing key with at most one `load` at a time across every
//! client of the cluster, through memcached 1.6's meta-protocol leases (one caller wins the load,
//! the others wait for its value); [`Client::invalidate`] marks a key stale so that one reader
//! refreshes it while the others are still served. On servers without the meta protocol both
//! fall back to the text protocol (one load per key per client). The meta protocol itself is in
//! [`protocol::meta`], pure like the rest of [`protocol`].
//!
//! # Refresh rules
//!
//! A fetched configuration is applied when its version is higher, or when the version is equal
//! but the node set differs; a lower version is ignored; a failed or malformed poll keeps the
//! last good topology (and logs at most one warning per interval). Keys are placed by
//! `hostname:port`, so a node whose IP changes is reconnected without moving keys. Timers do not
//! run while a Lambda environment is frozen: every request checks, for the cost of a clock read,
//! whether the last poll is older than the interval, and if so wakes the poller once.
//!
//! # Tracing
//!
//! | name | kind, level | fields |
//! |---|---|---|
//! | `memcached.request` | span, debug | `op`, and `node` (a one-key call), `keys` (a multi-get: how many keys) or `nodes` (a call to every node: how many nodes) |
//! | `memcached.discovery` | span, info | `endpoint` |
//! | `memcached.topology.initial` | event, info | `version`, `nodes`, `endpoint` |
//! | `memcached.topology.changed` | event, info | `old_version`, `new_version`, `added`, `removed`, `readdressed`, `moved_share` |
//! | `memcached.discovery.failed` | event, warn (at most one per poll interval) | `error` |
//! | `memcached.discovery.stale` | event, debug | `age_ms` |
//! | `memcached.discovery.stale_version_ignored` | event, debug | `current`, `received` |
//! | `memcached.connect_failed` | event, warn | `node`, `error`, `backoff_ms` |
//! | `memcached.connection_lost` | event, warn | `node`, `error` (without the bytes of the reply), `resent`, `node_down` |
//! | `memcached.connected` | event, debug | `node` |
//!
//! Key bytes and values are never logged. The library never installs a subscriber.
//!
//! # In-transit encryption (TLS)
//!
//! With the cargo feature `tls`, `ClientBuilder::tls(TlsConfig)` makes every connection (to the
//! configuration endpoint and to the nodes) use TLS 1.2/1.3 through rustls with the ring
//! provider, as ElastiCache for Memcached 1.6.12+ requires when in-transit encryption is on.
//! Each server's certificate is checked against its own name (a node: the hostname in the
//! cluster configuration, even when the client connects to the IP listed beside it), or against
//! one configured name or wildcard. A mismatch in either direction (plaintext client, TLS
//! server; or the reverse) gives an error that says so, within the usual timeouts. Without the
//! feature no TLS code is compiled and connections are plain TCP.
//!
//! # Typed and compressed values
//!
//! The [`codec`] module stores values with a meaning in memcached's `flags`: with the `zstd`
//! feature values over a threshold are stored zstd-compressed (flags bit 24), with `gzip` the
//! values the AWS Java client gzipped (flags `0x2`) are read, and with `serde`
//! `Client::set_json`/`Client::get_json` store and read JSON. Flags it does not know are an
//! error, never read as bytes; decompression stops at the codec's size limit.
//!
//! # Errors
//!
//! [`Error`] names the node involved, says in each variant's docs what state the connection is
//! left in, and answers [`Error::is_timeout`] and [`Error::is_retryable`]; a server's error
//! answer carries a [`ServerErrorKind`]. [`ProtocolError`] is what the pure core returns.
//!
//! # Settings
//!
//! Every [`ClientBuilder`] setter is total: durations are clamped to 1 ms ..= 24 h
//! ([`MAX_DURATION`]; the poll interval to at least 10 ms), counts to their documented ranges;
//! nothing panics, whatever the value.
//!
//! # Testing
//!
//! The crate `memcached-autodiscovery-testkit` (a dev-dependency) runs a local emulated cluster:
//! real memcached processes behind an emulated configuration endpoint.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod client;
mod cluster;
pub mod codec;
pub mod config;
mod connection;
mod discovery;
pub mod distribution;
pub mod error;
mod flight;
mod jitter;
mod lease;
pub mod pipeline;
pub mod protocol;
#[cfg(feature = "tls")]
mod tls;
pub mod topology;
pub mod transport;

pub use builder::{ClientBuilder, MAX_CONNECTIONS_PER_NODE, MAX_DURATION, MAX_QUEUE_DEPTH};
pub use client::{CasOutcome, Client};
pub use codec::{Codec, CodecError};
pub use config::{ClusterConfig, Node};
pub use distribution::{Distribution, NodeIdentity};
pub use error::{Error, ProtocolError, ServerErrorKind, TlsErrorKind};
pub use protocol::{Item, StoreMode};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
