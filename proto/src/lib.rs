//! The sans-IO core of [memcached-autodiscovery]: everything about memcached's wire and a
//! cluster's layout that is a pure function over bytes. No tokio type, no socket, no clock
//! reading (times are passed in), no task.
//!
//! * [`protocol`]: the text protocol (classic commands and the meta commands) — key validation,
//!   request encoding, reply decoding with limits, base64 keys, expiry times;
//! * [`config`]: [`config::ClusterConfig`], the reply to `config get cluster`, parsed and
//!   encoded;
//! * [`distribution`]: where a key goes — the consistent-hash ring, the ketama family,
//!   rendezvous and modula placements of other clients, failover order, the share of keys a
//!   change moves;
//! * [`pipeline`]: the rules of one pipelined connection — FIFO dispatch, deadlines, gone
//!   callers, what to replay after a break — and the encoded request [`pipeline::Frame`];
//! * [`error`]: what the core returns when bytes are wrong.
//!
//! The client crate drives this core over sockets; fuzz targets, benchmarks, the command-line
//! tool and the test kit call it directly. Its items are public for them, not for users of the
//! client, whose contract is the client crate's API.
//!
//! [memcached-autodiscovery]: https://docs.rs/memcached-autodiscovery

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod distribution;
pub mod error;
pub mod pipeline;
pub mod protocol;

/// The README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
