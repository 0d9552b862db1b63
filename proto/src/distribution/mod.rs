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
//! Its files: `mode` holds the modes and node identities, `locator` the built
//! placement, and `ring`, `ketama`, `rendezvous` and `hash` the algorithms behind it; the unit
//! tests of the modes are in `tests`.

mod hash;
mod ketama;
mod locator;
mod mode;
mod rendezvous;
mod ring;
#[cfg(test)]
mod tests;

pub use locator::Locator;
pub use mode::{Distribution, NodeIdentity};
