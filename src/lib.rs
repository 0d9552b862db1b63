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
//! println!("{} nodes, version {}", client.cluster().nodes().len(), client.cluster().version());
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! No feature is on by default: without one, no TLS, metrics, JSON or compression code is
//! compiled. Each feature-gated item says which feature it needs.
//!
//! | feature | what it adds | dependencies it brings | default |
//! |---|---|---|---|
//! | `tls` | in-transit encryption: `ClientBuilder::tls(TlsConfig)`, ElastiCache Serverless (`ClientBuilder::serverless`) | rustls (ring provider), tokio-rustls, rustls-pki-types, webpki-roots | no |
//! | `metrics` | the counters, gauges and histograms of the Metrics section, through the `metrics` facade | metrics | no |
//! | `serde` | `Client::get_json` / `set_json` (and `_with` a codec) | serde, serde_json | no |
//! | `zstd` | values over the codec's threshold stored zstd-compressed, and read back | zstd | no |
//! | `gzip` | reading values the AWS Java client stored gzip-compressed | flate2 (pure Rust backend) | no |
//!
//! # How it works
//!
//! ```text
//!  caller ─ key ─▶ validate ─▶ load snapshot (lock-free) ─▶ route: key ─▶ node (and, inside a
//!                  warm-handoff window, its previous owner) ─▶ connection ─▶ reply ─▶ result
//!                                                                   │ channel
//!  one task per socket, driving the core's pipeline:  queued requests ─▶ ONE write;
//!                                       reads ─▶ decode ─▶ FIFO ─▶ caller
//!
//!  poller (weak ref) ─ every interval ± jitter, or when a request finds the last poll stale:
//!      ask a node of the cluster `config get cluster` (nodes in turn), else (or when the node
//!      answers a version older than the client's) the configuration endpoint (its name
//!      resolved again, `config get cluster`, then the legacy key)
//!      ─▶ parse ─▶ apply rules ─▶ next snapshot (reusing live connections) ─▶ atomic swap
//! ```
//!
//! * The wire protocol, the configuration parser, key placement and the rules of one pipelined
//!   connection are the sans-IO crate `memcached-autodiscovery-proto`: bytes in, values out,
//!   fuzzed and benchmarked on their own. This crate drives them over sockets.
//! * One task owns each socket. Requests queued together go out in one write; replies are
//!   matched in order. A caller alone on its connection polls that task itself, from its own
//!   task, so a lone call pays no hop between tasks. Streams come from the transport: TCP, TLS,
//!   or a [`transport::Dial`] of your own.
//! * The topology is an immutable snapshot swapped atomically: a request sees the old topology or
//!   the new one, never a mix, and never waits for a refresh.

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
//! fall back to the text protocol (one load per key per client).
//!
//! # Hot keys: the near cache
//!
//! [`ClientBuilder::near_cache`] (off by default) keeps the values of often-read keys in this
//! process's memory, each for at most a maximum age, within a byte budget: a hot key is then
//! read from memory instead of from its one node. Other processes' writes are seen within the
//! maximum age, this client's own writes at once. docs/near-cache.md says exactly what the
//! bound promises.
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
//! | `memcached.request` | span, debug | `op`, and `node` (a one-key call), `keys` (a multi-get: how many keys) or `nodes` (a call to every node: how many nodes); for OpenTelemetry `otel.kind` (client), `db.system.name` (memcached), `db.operation.name` (as `op`), and in a one-key call `server.address` and `server.port` (of `node`) |
//! | `memcached.discovery` | span, info | `endpoint` |
//! | `memcached.topology.initial` | event, info | `version`, `nodes`, `endpoint` |
//! | `memcached.topology.changed` | event, info | `old_version`, `new_version`, `added`, `removed`, `readdressed`, `moved_share` |
//! | `memcached.discovery.node_asked` | event, debug (a poll asked a node for the configuration: `outcome` is `config`, `stale` when its version is older than the client's and the endpoint is asked, `unsupported` when it answered `ERROR` and is not asked again, or `failed`) | `node`, `outcome`, `detail` |
//! | `memcached.discovery.failed` | event, warn (at most one per poll interval) | `error` |
//! | `memcached.discovery.stale` | event, debug | `age_ms` |
//! | `memcached.discovery.stale_version_ignored` | event, debug | `current`, `received` |
//! | `memcached.connect_failed` | event, warn | `node`, `error`, `backoff_ms` |
//! | `memcached.connection_lost` | event, warn | `node`, `error` (without the bytes of the reply), `resent`, `node_down` |
//! | `memcached.connected` | event, debug | `node` |
//! | `memcached.near_cache.hit` | event, debug (a read served from the near cache, without asking a node) | `op`, and `keys` (a multi-get: how many of its keys) |
//!
//! The request span carries the fields of OpenTelemetry's semantic conventions for database
//! client spans, so that `tracing-opentelemetry` exports a standard client span: `db.system.name`
//! is `memcached`, `db.operation.name` is the call (`get`, `set`, `get_many`, …, as `op`), and a
//! call to one node has `server.address` and `server.port`. As everywhere, no key or value.
//!
//! Key bytes and values are never logged. The library never installs a subscriber.
//!
//! # Metrics
//!
//! With the cargo feature `metrics`, the client records the figures below through the
//! [`metrics`](https://docs.rs/metrics) facade; the exporter (Prometheus, StatsD, OpenTelemetry, …)
//! is yours to install. Install its recorder before building the client: each connection
//! registers its handles when it starts. Without the feature, none of this is compiled in. No
//! label holds a key or a value.
//!
//! ```toml
//! memcached-autodiscovery = { git = "https://github.com/memcached-autodiscovery/memcached-autodiscovery", features = ["metrics"] }  # once published: version = "0.1"
//! ```
//!
//! | name | kind | labels | what it counts |
//! |---|---|---|---|
//! | `memcached.requests` | counter | `op`, `outcome` | calls finished |
//! | `memcached.request.duration` | histogram (seconds) | `op`, `outcome` | how long each call took, queueing included |
//! | `memcached.bytes.sent` | counter (bytes) | `node` | bytes written to the node's sockets |
//! | `memcached.bytes.received` | counter (bytes) | `node` | bytes read from the node's sockets |
//! | `memcached.connections.open` | gauge | `node` | connections to the node open now |
//! | `memcached.connections.opened` | counter | `node` | connections opened |
//! | `memcached.connections.failed` | counter | `node` | connects that failed |
//! | `memcached.nodes.marked_down` | counter | `node` | times the node was left alone for a backoff |
//! | `memcached.topology.version` | gauge | | the version of the topology in use (0 for a static node list) |
//! | `memcached.topology.changes` | counter | | topology changes applied |
//! | `memcached.discovery.failures` | counter | | polls and `refresh()` calls that failed (a failed first discovery fails `build()` instead) |
//! | `memcached.queue.depth` | gauge | `node` | requests waiting in a connection's queue when the last one was queued |
//! | `memcached.near_cache.hits` | counter | | reads served from the near cache (a multi-get counts one per key) |
//! | `memcached.near_cache.misses` | counter | | reads the near cache could not serve (absent, or older than its maximum age), which asked a node |
//! | `memcached.near_cache.admissions` | counter | | values the near cache kept |
//! | `memcached.near_cache.evictions` | counter | | values the near cache dropped to stay within its budget |
//! | `memcached.near_cache.bytes` | gauge (bytes) | | bytes the near cache counts against its budget: keys, values and each entry's bookkeeping |
//!
//! | label | values |
//! |---|---|
//! | `op` | the call: `get`, `gets`, `gat`, `set`, `add`, `replace`, `append`, `prepend`, `cas`, `delete`, `incr`, `decr`, `touch`, `get_many`, `get_or_load`, `invalidate`, `flush_all`, `stats`, `get_json`, `set_json`, `get_decoded`, `set_encoded` (each call counted once, under its own name; one refused before anything was sent, e.g. for a bad key, counts as an error) |
//! | `outcome` | `hit` and `miss` (calls that return an Option: one-key reads, and incr or decr, where an absent key is a miss), `ok`, `server_error` (the server answered an error), `timeout`, `node_down` (failed at once: the node is in its backoff), `error` (any other failure), `cancelled` (the caller dropped the call before it finished) |
//! | `node` | the node, `host:port` |
//!
//! `tests/metrics.rs` drives a client through every call and outcome against real memcached and
//! checks that what is recorded is exactly these two tables.
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
//! # ElastiCache Serverless
//!
//! With the cargo feature `tls`, `ClientBuilder::serverless(endpoint)` connects to an
//! ElastiCache Serverless cache: no discovery (Serverless has no `config get cluster`), the
//! endpoint as the single node over 4 pipelined TLS connections by default, and `stats <group>`
//! and a delayed `flush_all`, which Serverless refuses, failing before sending with an error that
//! says why. For every cluster, [`Client::get_many`] keeps each `get` line within Serverless's
//! 16 KB limit.
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
//! answer carries a [`ServerErrorKind`], a failed discovery a [`DiscoveryErrorKind`] (with the
//! underlying error as [`source`](std::error::Error::source)), an unusable setting the name of
//! the method at fault ([`Error::Settings`]). [`ProtocolError`] is what the sans-IO core returns
//! for bytes that are not a valid reply or a request that cannot be encoded.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

// The sans-IO core, under the names the client's modules use for it.
use memcached_autodiscovery_proto::{config, distribution, pipeline, protocol};

mod builder;
mod cached_reads;
mod client;

pub mod codec;
mod connection;
mod discovery;
mod error;
mod exchange;
mod flight;
mod handoff;
mod jitter;
mod lease;
mod metrics;
mod multi_get;
mod near_cache;
mod routing;
mod serverless;
mod snapshot;
mod spans;
#[cfg(feature = "tls")]
mod tls;
mod topology;
pub mod transport;

pub use builder::{
    ClientBuilder, DEFAULT_MAX_NODES, MAX_CONNECTIONS_PER_NODE, MAX_DURATION, MAX_QUEUE_DEPTH,
};
pub use client::{CasOutcome, Client};
pub use codec::{Codec, CodecError};
pub use config::{ClusterConfig, Node};
pub use distribution::{Distribution, NodeIdentity};
pub use error::{
    ClusterConfigErrorKind, DiscoveryErrorKind, Error, KeyError, ProtocolError, ServerErrorKind,
    TlsErrorKind,
};
pub use multi_get::MultiGet;
pub use near_cache::NearCacheStats;
pub use protocol::{Item, StoreMode};
pub use snapshot::FailureMode;
#[cfg(feature = "tls")]
pub use tls::TlsConfig;

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The examples of the pages in docs/, compiled as doctests so that they stay true.
#[cfg(doctest)]
pub mod doc_pages {
    #[doc = include_str!("../docs/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../docs/cluster-changes.md")]
    pub struct ClusterChanges;
    #[doc = include_str!("../docs/errors.md")]
    pub struct Errors;
    #[doc = include_str!("../docs/get-or-load.md")]
    pub struct GetOrLoad;
    #[doc = include_str!("../docs/interop.md")]
    pub struct Interop;
    #[doc = include_str!("../docs/lambda.md")]
    pub struct Lambda;
    #[doc = include_str!("../docs/near-cache.md")]
    pub struct NearCache;
    #[doc = include_str!("../docs/observability.md")]
    pub struct Observability;
    #[doc = include_str!("../docs/performance-summary.md")]
    pub struct PerformanceSummary;
    #[doc = include_str!("../docs/testing.md")]
    pub struct Testing;
    #[doc = include_str!("../docs/tls.md")]
    pub struct Tls;
    #[doc = include_str!("../docs/values.md")]
    pub struct Values;
}
