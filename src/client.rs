//! [`Client`]: the public calls, and nothing else.
//!
//! Each call validates and encodes its request (a bad key is refused before anything is sent),
//! takes the current snapshot from the [`Topology`] without locking, routes the key to its node,
//! sends the request on that node's connection and maps the reply to a typed result (a one-key
//! call through [`crate::exchange`], the one path they share). Misses,
//! `NOT_STORED` (except for `set`), `EXISTS` and `NOT_FOUND` are values, not errors. Settings are
//! in [`crate::builder`]; discovery and refresh in [`crate::topology`].
//!
//! The file is over 500 lines because it has one documented method per memcached command, which
//! users read together; every rule behind them lives in other modules.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{ClusterConfig, Node};
use crate::connection::accept_reply;
use crate::error::Error;
use crate::flight::Flights;
use crate::lease::{self, Fetched, Lease};
use crate::near_cache::{NearCache, NearCacheStats};
use crate::pipeline::Frame;
use crate::protocol::{validate_key, Item, Request, Response, Retrieval, StoreMode};
use crate::routing::Route;
use crate::topology::Topology;

/// The outcome of [`Client::cas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CasOutcome {
    /// The value was stored.
    Stored,
    /// The item changed since the CAS token was read (`EXISTS`).
    Exists,
    /// The item does not exist (any more).
    NotFound,
}

/// A `cas` that finished counts as `ok`, whatever its outcome.
#[cfg(feature = "metrics")]
impl crate::metrics::Success for CasOutcome {}

/// A memcached client over a discovered (or fixed) set of nodes. Cheap to clone: clones share
/// the topology and the connections. Dropping the last clone stops the poller and, once their
/// in-flight requests finish, the connections.
#[derive(Clone)]
pub struct Client {
    topology: Arc<Topology>,
    /// `get_or_load` flights in progress in this process.
    flights: Arc<Flights<Fetched>>,
    /// How long a `get_or_load` win holds its key.
    load_lease: Duration,
    /// Values of hot keys kept in memory, if built with one.
    near: Option<Arc<NearCache>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.topology.current();
        f.debug_struct("Client")
            .field("version", &snapshot.config.version())
            .field("nodes", &snapshot.config.nodes())
            .finish_non_exhaustive()
    }
}

/// A store of `value` under `key` with `mode`, or why it cannot be made (a time to live out of
/// range).
fn store_request<'a>(
    mode: StoreMode,
    key: &'a [u8],
    value: &'a [u8],
    ttl: Duration,
    flags: u32,
) -> Result<Request<'a>, Error> {
    Ok(Request::Store {
        mode,
        key,
        flags,
        exptime: exptime(ttl)?,
        value,
    })
}

/// memcached's exptime for `ttl` now (see [`crate::protocol::exptime`]).
fn exptime(ttl: Duration) -> Result<u32, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(crate::protocol::exptime(ttl, now)?)
}

impl Client {
    /// A client over `topology`; `get_or_load` wins hold their key for `load_lease`.
    pub(crate) fn new(
        topology: Arc<Topology>,
        load_lease: Duration,
        near: Option<NearCache>,
    ) -> Client {
        Client {
            topology,
            flights: Arc::default(),
            load_lease,
            near: near.map(Arc::new),
        }
    }

    /// The near cache, if built with one.
    pub(crate) fn near(&self) -> Option<&NearCache> {
        self.near.as_deref()
    }

    /// What the near cache has done ([`ClientBuilder::near_cache`](crate::ClientBuilder::near_cache)):
    /// hits, misses, values kept and evicted, bytes held. `None` without a near cache.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.near().map(NearCache::stats)
    }

    /// The topology, for the calls defined in other modules.
    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The current cluster configuration (version and nodes).
    pub fn cluster(&self) -> Arc<ClusterConfig> {
        self.topology.current().config.clone()
    }

    /// The node `key` routes to now.
    pub fn node_for(&self, key: impl AsRef<[u8]>) -> Result<Node, Error> {
        let key = key.as_ref();
        validate_key(key)?;
        let snapshot = self.topology.current();
        snapshot
            .route(key)
            .map(|n| n.node.clone())
            .ok_or_else(|| self.topology.no_nodes())
    }

    /// Polls now (the cluster's nodes in turn, then the configuration endpoint if no node
    /// answers) and applies what it says. Returns whether the topology changed. With a static
    /// node list it does nothing and returns `false`. On a closed client, [`Error::Closed`].
    pub async fn refresh(&self) -> Result<bool, Error> {
        self.topology.refresh().await.map(|c| !c.is_empty())
    }

    /// Closes the client, every clone of it, and waits for its connections to end: for
    /// graceful shutdown, and for tests that must know the sockets are gone.
    ///
    /// The poller stops; calls made from now on, on any clone, fail at once with
    /// [`Error::Closed`]; requests already sent are answered (or time out, at most the request
    /// timeout), then each connection is shut down. Returns when every connection task has
    /// ended. Closing again returns at once. Dropping the last clone without `close` also
    /// ends everything, without waiting.
    ///
    /// ```no_run
    /// # async fn demo(client: memcached_autodiscovery::Client) {
    /// // At shutdown (a SIGTERM handler, the end of a test):
    /// client.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.topology.close().await;
    }

    /// The value of `key`, or `None` on a miss.
    ///
    /// The value's bytes as stored, whatever wrote them: a value written through a [`Codec`](crate::codec::Codec)
    /// (by [`Client::set_json`] or [`Client::set_encoded`]) may be compressed (its flags say
    /// so); read those with [`Client::get_json`] or [`Client::get_decoded`].
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let read = self.read_value("get", key.as_ref(), false);
        let found = crate::metrics::timed("get", read).await?;
        Ok(found.map(|(value, _)| value))
    }

    /// The item of `key` with its flags and CAS token (for [`Client::cas`]), or `None`.
    pub async fn gets(&self, key: impl AsRef<[u8]>) -> Result<Option<Item>, Error> {
        let read = self.retrieve_one("gets", Ok(Retrieval::Gets), key.as_ref(), None);
        crate::metrics::timed("gets", read).await
    }

    /// The value of `key`, also setting its time to live (get-and-touch), or `None`.
    pub async fn gat(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<Option<Bytes>, Error> {
        let kind = exptime(ttl).map(Retrieval::Gat);
        let read = self.retrieve_one("gat", kind, key.as_ref(), None);
        let item = crate::metrics::timed("gat", read).await?;
        Ok(item.map(|i| i.value))
    }

    /// A store of `value` under `key` with `mode`, counted under the mode's name; whether it
    /// was stored.
    fn store_bytes<'a>(
        &'a self,
        mode: StoreMode,
        key: &'a [u8],
        value: &[u8],
        ttl: Duration,
        flags: u32,
    ) -> impl Future<Output = Result<bool, Error>> + 'a {
        let request = store_request(mode, key, value, ttl, flags);
        self.call(mode.name(), key, request, |response| match response {
            Response::Stored => Ok(true),
            Response::NotStored | Response::NotFound | Response::Exists => Ok(false),
            other => Err(other),
        })
    }

    /// Stores `value` under `key` with `mode`, `flags` and a time to live (zero: no expiry).
    /// Returns whether it was stored (`false` for `NOT_STORED`: add of a present key,
    /// replace/append/prepend of an absent one).
    pub async fn store(
        &self,
        mode: StoreMode,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
        flags: u32,
    ) -> Result<bool, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.store_bytes(mode, key, value, ttl, flags).await
    }

    /// Stores `value` under `key` (time to live zero: no expiry). A `NOT_STORED` answer (the
    /// server refused to store it) is [`Error::Server`] of kind
    /// [`ServerErrorKind::NotStored`](crate::ServerErrorKind::NotStored).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<(), Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        crate::metrics::timed("set", self.set_as("set", key, value, ttl, 0)).await
    }

    /// A `set` (`op` names its span): `NOT_STORED` is an error. Not counted in the metrics: the
    /// public call is.
    pub(crate) fn set_as<'a>(
        &'a self,
        op: &'static str,
        key: &'a [u8],
        value: &[u8],
        ttl: Duration,
        flags: u32,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        let request = store_request(StoreMode::Set, key, value, ttl, flags);
        // `NOT_STORED`, refused here, is a server error (see `accept_reply`).
        self.exchange(op, key, request, |response| match response {
            Response::Stored => Ok(()),
            other => Err(other),
        })
    }

    /// Stores only if `key` is absent; returns whether it was stored.
    pub async fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.store_bytes(StoreMode::Add, key, value, ttl, 0).await
    }

    /// Stores only if `key` is present; returns whether it was stored.
    pub async fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.store_bytes(StoreMode::Replace, key, value, ttl, 0)
            .await
    }

    /// Appends to the value of a present `key`; returns whether it was stored.
    pub async fn append(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.store_bytes(StoreMode::Append, key, value, Duration::ZERO, 0)
            .await
    }

    /// Prepends to the value of a present `key`; returns whether it was stored.
    pub async fn prepend(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.store_bytes(StoreMode::Prepend, key, value, Duration::ZERO, 0)
            .await
    }

    /// Stores `value` only if the item's CAS token is still `cas` (from [`Client::gets`]).
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
        cas: u64,
    ) -> Result<CasOutcome, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let request = exptime(ttl).map(|exptime| Request::Cas {
            key,
            flags: 0,
            exptime,
            value,
            cas,
        });
        self.call("cas", key, request, |response| match response {
            Response::Stored => Ok(CasOutcome::Stored),
            Response::Exists => Ok(CasOutcome::Exists),
            Response::NotFound => Ok(CasOutcome::NotFound),
            other => Err(other),
        })
        .await
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        let request = Ok(Request::Delete { key });
        self.call("delete", key, request, |response| match response {
            Response::Deleted => Ok(true),
            Response::NotFound => Ok(false),
            other => Err(other),
        })
        .await
    }

    /// `incr` or `decr` (`request`) of `key`, counted as `op`.
    fn arith<'a>(
        &'a self,
        op: &'static str,
        key: &'a [u8],
        request: Request<'_>,
    ) -> impl Future<Output = Result<Option<u64>, Error>> + 'a {
        self.call(op, key, Ok(request), |response| match response {
            Response::Number(n) => Ok(Some(n)),
            Response::NotFound => Ok(None),
            other => Err(other),
        })
    }

    /// Adds `delta` to the decimal value of `key`; the new value, or `None` if absent.
    pub async fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<Option<u64>, Error> {
        let key = key.as_ref();
        self.arith("incr", key, Request::Incr { key, delta }).await
    }

    /// Subtracts `delta` (stopping at 0); the new value, or `None` if absent.
    pub async fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<Option<u64>, Error> {
        let key = key.as_ref();
        self.arith("decr", key, Request::Decr { key, delta }).await
    }

    /// Sets a new time to live on `key`; returns whether it existed.
    pub async fn touch(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        let key = key.as_ref();
        let request = exptime(ttl).map(|exptime| Request::Touch { key, exptime });
        self.call("touch", key, request, |response| match response {
            Response::Touched => Ok(true),
            Response::NotFound => Ok(false),
            other => Err(other),
        })
        .await
    }

    /// The value of `key`, loaded with `load` and stored for `ttl` when it is missing — with at
    /// most one `load` at a time for the key across every client of the cluster (cache-aside
    /// without a thundering herd on the database behind it).
    ///
    /// * Callers of this client that ask for the same key meanwhile share one flight: one of
    ///   them asks the node, the others wait for its answer.
    /// * Across clients (other processes, other Lambda environments) the node decides, through
    ///   memcached 1.6's meta protocol: on a miss it hands one caller a win and keeps an empty
    ///   placeholder for the lease ([`ClientBuilder::load_lease`](crate::ClientBuilder::load_lease),
    ///   5 s by default); that caller runs `load` and stores the value, the others wait for it,
    ///   asking again every 2 to 20 ms. A value in its last tenth of `ttl` (for TTLs of 10 s and
    ///   more), or marked stale by
    ///   [`Client::invalidate`], is refreshed by one caller while the others are served the
    ///   current value.
    /// * `load`'s error may be any type that converts into
    ///   `Box<dyn std::error::Error + Send + Sync>`: your own error type, `lambda_runtime::Error`,
    ///   `anyhow::Error`, `std::io::Error`, a `String`.
    /// * A failing `load` returns [`Error::Load`] to its caller only, and gives the key back at
    ///   once: a waiter then loads. A cancelled one (its future dropped) gives it back too. A
    ///   winner that dies holds the key for the lease at most; a waiter gives up after twice the
    ///   lease with [`Error::Timeout`].
    /// * A node without the meta protocol (memcached before 1.6; Memorystore's 1.5) is served
    ///   by `get`, `load` and `set`: one load per key per client then, not per cluster.
    ///
    /// A client that reads the key with a plain [`Client::get`] while a load is in progress
    /// sees the placeholder: an empty value.
    ///
    /// ```no_run
    /// # async fn demo(client: memcached_autodiscovery::Client) -> Result<(), memcached_autodiscovery::Error> {
    /// use std::time::Duration;
    /// let photos = client
    ///     .get_or_load("photos:all", Duration::from_secs(300), || async {
    ///         // The expensive read, e.g. a DynamoDB scan.
    ///         Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"[...]"))
    ///     })
    ///     .await?;
    /// # let _ = photos; Ok(()) }
    /// ```
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        load: F,
    ) -> Result<Bytes, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let call = async move {
            let key = key.as_ref();
            validate_key(key)?;
            let exptime = exptime(ttl)?;
            // From the near cache when it holds the key; otherwise the load protocol, whose
            // value is kept when it is the node's current one.
            let fetch = || async {
                // It may store: routed as a write.
                let route = Route::of_write(&self.topology, key)?;
                let exptime = route.cap_exptime(exptime);
                let connection = route.connection();
                let limits = self.topology.settings().limits;
                let wait = self.load_lease * 2;
                let deadline = Instant::now() + wait;
                let span = crate::spans::one_node("get_or_load", connection.node());
                let lease = Lease {
                    connection,
                    moved: route.moved(),
                    limits: &limits,
                    key,
                    exptime,
                    lease: self.load_lease,
                };
                let flight = self.flights.run(
                    Bytes::copy_from_slice(key),
                    deadline,
                    || Error::Timeout {
                        node: connection.node().to_string(),
                        timeout: wait,
                    },
                    // On the heap: the load protocol and the loader's own future (a database
                    // query's can be kilobytes) are not part of every caller's future, and a
                    // follower that shares another caller's flight never allocates them.
                    || Box::pin(lease.get_or_load(load)),
                );
                flight.instrument(span).await
            };
            self.near_or_fetch("get_or_load", key, fetch).await
        };
        crate::metrics::timed("get_or_load", call).await
    }

    /// Marks `key` stale instead of deleting it (`md <key> I`): the next
    /// [`get_or_load`](Client::get_or_load) refreshes it while every other reader is still
    /// served the stale value for up to `grace`, so no herd reaches the database. Returns
    /// whether the item existed. On a node without the meta protocol, deletes the key.
    pub async fn invalidate(&self, key: impl AsRef<[u8]>, grace: Duration) -> Result<bool, Error> {
        let call = async move {
            let key = key.as_ref();
            validate_key(key)?;
            let stale_ttl = exptime(grace.max(Duration::from_secs(1)))?;
            let _write = self.near().map(|near| near.write(key));
            let route = Route::of_write(&self.topology, key)?;
            let stale_ttl = route.cap_exptime(stale_ttl);
            let connection = route.connection();
            let limits = self.topology.settings().limits;
            let span = crate::spans::one_node("invalidate", connection.node());
            let invalidate = async {
                let existed = lease::invalidate(connection, &limits, key, stale_ttl).await?;
                // A moved key's previous copy could be brought back over the invalidation.
                if let Some(owners) = route.moved() {
                    owners.forget_previous(key).await;
                }
                Ok(existed)
            };
            invalidate.instrument(span).await
        };
        crate::metrics::timed("invalidate", call).await
    }

    /// Sends `request` to every node in parallel and hands each reply to `accept`; results in
    /// node order with the node's id. Not counted in the metrics: the public call is.
    async fn broadcast<T>(
        &self,
        op: &'static str,
        request: Request<'_>,
        accept: impl Fn(Response) -> Result<T, Response>,
    ) -> Result<Vec<(String, T)>, Error> {
        let snapshot = self.topology.snapshot();
        if snapshot.nodes.is_empty() {
            return Err(self.topology.no_nodes());
        }
        let settings = self.topology.settings();
        let idempotent = request.is_idempotent();
        let (frame, expect) = Frame::encode(|buf| request.encode(buf, &settings.limits))?;
        let deadline = Instant::now() + settings.request_timeout;
        let span = crate::spans::every_node(op, snapshot.nodes.len());
        let call = async {
            let mut waiting = Vec::with_capacity(snapshot.nodes.len());
            for node in &snapshot.nodes {
                let sent = node
                    .connection()
                    .send(frame.clone(), expect, idempotent, deadline);
                waiting.push((node, sent.await));
            }
            let mut results = Vec::with_capacity(waiting.len());
            for (node, sent) in waiting {
                let result = match sent {
                    Ok(reply) => node.connection().reply(reply).await,
                    Err(e) => Err(e),
                };
                results.push((node.id.to_string(), result));
            }
            results
        }
        .instrument(span);
        call.await
            .into_iter()
            .map(|(node, result)| {
                let value = accept_reply(&node, expect, result?, &accept)?;
                Ok((node, value))
            })
            .collect()
    }

    /// Invalidates every item on every node (`flush_all`).
    pub async fn flush_all(&self) -> Result<(), Error> {
        self.flush_all_after(Duration::ZERO).await
    }

    /// Invalidates every item on every node once `delay` has passed (`flush_all <delay>`,
    /// whole seconds rounded up; over 30 days sent as an absolute time, as for TTLs). memcached
    /// counts whole seconds, so the flush comes up to a second early. A zero delay flushes at
    /// once. ElastiCache Serverless refuses a delayed flush: with
    /// `ClientBuilder::serverless` a non-zero delay fails
    /// before sending, with an [`Error::Server`] that says so.
    pub async fn flush_all_after(&self, delay: Duration) -> Result<(), Error> {
        let call = async {
            let delay = exptime(delay)?;
            crate::serverless::check_flush_delay(&self.topology, delay)?;
            let request = Request::FlushAll {
                delay: (delay > 0).then_some(delay),
            };
            // The near cache is emptied now, delayed or not (see `NearCache::write_all`).
            let _write = self.near().map(NearCache::write_all);
            self.broadcast("flush_all", request, |response| match response {
                Response::Ok => Ok(()),
                other => Err(other),
            })
            .await
            .map(drop)
        };
        crate::metrics::timed("flush_all", call).await
    }

    /// `stats` (or `stats <group>`) of every node, as `(node, pairs)`. ElastiCache Serverless
    /// answers `ERROR` to `stats <group>`: with
    /// `ClientBuilder::serverless` a group fails before
    /// sending, with an [`Error::Server`] that says so.
    pub async fn stats(
        &self,
        group: Option<&str>,
    ) -> Result<Vec<(String, Vec<(String, String)>)>, Error> {
        let call = async {
            crate::serverless::check_stats(&self.topology, group)?;
            let request = Request::Stats {
                arg: group.map(str::as_bytes),
            };
            self.broadcast("stats", request, |response| match response {
                Response::Stats(pairs) => Ok(pairs),
                other => Err(other),
            })
            .await
        };
        crate::metrics::timed("stats", call).await
    }
}
