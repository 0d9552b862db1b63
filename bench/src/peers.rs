//! The clients under test, each wired the way the bench README calls fair: this crate as a user
//! would build it (discovery from the configuration endpoint, one pipelined connection per node
//! by default); the peers that hold a connection for each request get a pool per server sized to
//! the concurrency, so no request ever waits for a connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_memcached::AsciiProtocol as _;
use deadpool::managed::{self, Metrics, Object, Pool, RecycleError, RecycleResult};
use tokio::net::TcpStream;

use crate::load::{route, AsyncPeer, Outcome, SyncPeer, MGET_KEYS};

/// How a peer named on the command line is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerKind {
    /// This crate; `connections_per_node` (1 is the default setting).
    Mcad { connections_per_node: usize },
    /// async-memcached 0.9, a deadpool pool per server, harness routing.
    AsyncMemcached,
    /// memcache-async 0.10 over a raw TcpStream, a deadpool pool per server, harness routing.
    MemcacheAsync,
    /// memcache 0.21 `exp::AsyncMemcache` with its own pools and routing.
    MemcacheExp,
    /// memcache 0.21 classic sync client (binary protocol, r2d2 pool per server), OS threads.
    MemcacheSync,
    /// The raw pipelined probe (the machine's ceiling). `routed`: every key goes to the server
    /// the harness routing picks, so a multi-get is one `get` per server its keys route to, as
    /// a client over several nodes must send it (unrouted, a multi-get is one `get` to one
    /// server).
    Raw { routed: bool },
}

impl PeerKind {
    pub fn parse(name: &str) -> Option<PeerKind> {
        Some(match name {
            "mcad" => PeerKind::Mcad {
                connections_per_node: 1,
            },
            "async-memcached" => PeerKind::AsyncMemcached,
            "memcache-async" => PeerKind::MemcacheAsync,
            "memcache-exp" => PeerKind::MemcacheExp,
            "memcache-sync" => PeerKind::MemcacheSync,
            "raw" => PeerKind::Raw { routed: false },
            "raw-routed" => PeerKind::Raw { routed: true },
            other => {
                let n = other.strip_prefix("mcad-cpn")?.parse().ok()?;
                if n == 0 {
                    return None;
                }
                PeerKind::Mcad {
                    connections_per_node: n,
                }
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            PeerKind::Mcad {
                connections_per_node: 1,
            } => "mcad".into(),
            PeerKind::Mcad {
                connections_per_node,
            } => format!("mcad-cpn{connections_per_node}"),
            PeerKind::AsyncMemcached => "async-memcached".into(),
            PeerKind::MemcacheAsync => "memcache-async".into(),
            PeerKind::MemcacheExp => "memcache-exp".into(),
            PeerKind::MemcacheSync => "memcache-sync".into(),
            PeerKind::Raw { routed: false } => "raw".into(),
            PeerKind::Raw { routed: true } => "raw-routed".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            PeerKind::Mcad {
                connections_per_node: 1,
            } => "this crate, default settings (discovery from the configuration endpoint, 1 pipelined connection per node)".into(),
            PeerKind::Mcad {
                connections_per_node,
            } => format!("this crate, `connections_per_node({connections_per_node})`, other settings default"),
            PeerKind::AsyncMemcached => "async-memcached 0.9 (`AsciiProtocol`), deadpool 0.13 pool per server with max_size = C, harness routing (FNV-1a + jump hash)".into(),
            PeerKind::MemcacheAsync => "memcache-async 0.10 (`ascii::Protocol<TcpStream>`, TCP_NODELAY), deadpool 0.13 pool per server with max_size = C, harness routing".into(),
            PeerKind::MemcacheExp => "memcache 0.21 `exp::AsyncMemcache` (meta protocol), its own per-server pools with max_idle = max(C, 8), its own rendezvous routing".into(),
            PeerKind::MemcacheSync => "memcache 0.21 classic `Client` (default binary protocol), r2d2 pool per server with max size C, its own routing, C OS threads".into(),
            PeerKind::Raw { routed: false } => "raw pipelined probe: 2 threads, 1 connection per server each, batches of 100 requests per write".into(),
            PeerKind::Raw { routed: true } => "raw pipelined probe with every key routed to its server (a multi-get split by server): 2 threads, 1 connection per server each, 100 operations per server per round".into(),
        }
    }
}

/// A `get` that reports the length of the value it found (`Ok(None)`: a miss; `Err`: the call
/// failed), for mixes whose values are not all [`VALUE_LEN`](crate::load::VALUE_LEN) bytes
/// (`loadbench --rtt-ms`'s head-of-line mix). The same call as [`AsyncPeer::get`] makes.
pub trait SizedGet: AsyncPeer {
    fn get_len(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Option<usize>, ()>> + Send;
}

// ---------------------------------------------------------------------------------------------
// This crate.

pub struct Mcad(pub memcached_autodiscovery::Client);

impl Mcad {
    pub async fn build(endpoint: SocketAddr, connections_per_node: usize) -> Result<Mcad, String> {
        let mut builder =
            memcached_autodiscovery::Client::builder().config_endpoint(endpoint.to_string());
        if connections_per_node != 1 {
            builder = builder.connections_per_node(connections_per_node);
        }
        builder.build().await.map(Mcad).map_err(|e| e.to_string())
    }
}

impl AsyncPeer for Mcad {
    async fn get(&self, key: &str) -> Outcome {
        match self.0.get(key).await {
            Ok(found) => Outcome::hit(found.map(|v| v.len())),
            Err(_) => Outcome::ERROR,
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Outcome {
        match self.0.set(key, value, Duration::ZERO).await {
            Ok(()) => Outcome::OK,
            Err(_) => Outcome::ERROR,
        }
    }

    async fn mget(&self, keys: &[&str]) -> Outcome {
        match self.0.get_many(keys).await {
            Ok(found) => Outcome::hits(found.len()),
            Err(_) => Outcome::ERROR,
        }
    }
}

impl SizedGet for Mcad {
    async fn get_len(&self, key: &str) -> Result<Option<usize>, ()> {
        self.0
            .get(key)
            .await
            .map(|found| found.map(|v| v.len()))
            .map_err(|_| ())
    }
}

// ---------------------------------------------------------------------------------------------
// Pool per server plus harness routing, for the crates that hold a connection per request.

/// A deadpool manager that opens one connection of type `C` to one server.
pub struct Dialer<C> {
    addr: SocketAddr,
    _kind: std::marker::PhantomData<fn() -> C>,
}

pub trait Dial: Sized + Send + 'static {
    fn dial(addr: SocketAddr) -> impl std::future::Future<Output = Result<Self, String>> + Send;
    /// Whether a pooled connection is known to be unusable (a local check, no I/O).
    fn is_broken(&self) -> bool {
        false
    }
}

impl<C: Dial> managed::Manager for Dialer<C> {
    type Type = C;
    type Error = String;

    async fn create(&self) -> Result<C, String> {
        C::dial(self.addr).await
    }

    async fn recycle(&self, conn: &mut C, _: &Metrics) -> RecycleResult<String> {
        if conn.is_broken() {
            Err(RecycleError::Message("connection closed".into()))
        } else {
            Ok(())
        }
    }
}

/// One pool per server, `max_size` = the concurrency.
pub struct Pools<C: Dial> {
    pools: Vec<Pool<Dialer<C>>>,
}

impl<C: Dial> Pools<C> {
    pub fn new(servers: &[SocketAddr], size: usize) -> Result<Pools<C>, String> {
        let pools = servers
            .iter()
            .map(|&addr| {
                Pool::builder(Dialer {
                    addr,
                    _kind: std::marker::PhantomData,
                })
                .max_size(size.max(1))
                .build()
                .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Pools { pools })
    }

    pub(crate) async fn checkout(&self, key: &str) -> Option<Object<Dialer<C>>> {
        self.pools[route(key, self.pools.len())].get().await.ok()
    }

    /// Groups `keys` by server, as a user of a client without multi-server support would.
    fn group<'k>(&self, keys: &[&'k str]) -> Vec<(usize, Vec<&'k str>)> {
        let mut groups: Vec<(usize, Vec<&str>)> = Vec::new();
        for &key in keys {
            let server = route(key, self.pools.len());
            match groups.iter_mut().find(|(s, _)| *s == server) {
                Some((_, g)) => g.push(key),
                None => groups.push((server, vec![key])),
            }
        }
        groups
    }
}

/// Runs one multi-get sub-request per server concurrently and adds up the hits.
async fn mget_grouped<C, F, Fut>(pools: &Pools<C>, keys: &[&str], call: F) -> Outcome
where
    C: Dial,
    F: Fn(Object<Dialer<C>>, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<usize, ()>> + Send,
{
    let mut futures = Vec::with_capacity(MGET_KEYS);
    for (server, group) in pools.group(keys) {
        let pool = pools.pools[server].clone();
        let owned: Vec<String> = group.iter().map(|k| k.to_string()).collect();
        let call = &call;
        futures.push(async move {
            match pool.get().await {
                Ok(conn) => call(conn, owned).await,
                Err(_) => Err(()),
            }
        });
    }
    let mut found = 0;
    let mut failed = false;
    for result in join_all(futures).await {
        match result {
            Ok(n) => found += n,
            Err(()) => failed = true,
        }
    }
    if failed {
        Outcome::ERROR
    } else {
        Outcome::hits(found)
    }
}

/// Polls all futures to completion concurrently (the harness's small join, in input order).
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

// async-memcached 0.9 -------------------------------------------------------------------------

impl Dial for async_memcached::Client {
    async fn dial(addr: SocketAddr) -> Result<Self, String> {
        async_memcached::Client::new(format!("tcp://{addr}"))
            .await
            .map_err(|e| e.to_string())
    }

    fn is_broken(&self) -> bool {
        self.is_closed()
    }
}

pub type AsyncMemcached = Pools<async_memcached::Client>;

impl AsyncPeer for AsyncMemcached {
    async fn get(&self, key: &str) -> Outcome {
        let Some(mut conn) = self.checkout(key).await else {
            return Outcome::ERROR;
        };
        match conn.get(key).await {
            Ok(value) => Outcome::hit(value.map(|v| v.data.map_or(0, |d| d.len()))),
            Err(_) => {
                let _ = Object::take(conn);
                Outcome::ERROR
            }
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Outcome {
        let Some(mut conn) = self.checkout(key).await else {
            return Outcome::ERROR;
        };
        match conn.set(key, value, None, None).await {
            Ok(()) => Outcome::OK,
            Err(_) => {
                let _ = Object::take(conn);
                Outcome::ERROR
            }
        }
    }

    async fn mget(&self, keys: &[&str]) -> Outcome {
        mget_grouped(self, keys, |mut conn, group| async move {
            match conn.get_multi(&group).await {
                Ok(values) => Ok(values.len()),
                Err(async_memcached::Error::Protocol(async_memcached::Status::NotFound)) => Ok(0),
                Err(_) => {
                    let _ = Object::take(conn);
                    Err(())
                }
            }
        })
        .await
    }
}

impl SizedGet for AsyncMemcached {
    async fn get_len(&self, key: &str) -> Result<Option<usize>, ()> {
        let mut conn = self.checkout(key).await.ok_or(())?;
        match conn.get(key).await {
            Ok(value) => Ok(value.map(|v| v.data.map_or(0, |d| d.len()))),
            Err(_) => {
                let _ = Object::take(conn);
                Err(())
            }
        }
    }
}

// memcache-async 0.10 -------------------------------------------------------------------------

pub struct McAsyncConn(memcache_async::ascii::Protocol<TcpStream>);

impl Dial for McAsyncConn {
    async fn dial(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(McAsyncConn(memcache_async::ascii::Protocol::new(stream)))
    }
}

pub type MemcacheAsync = Pools<McAsyncConn>;

impl AsyncPeer for MemcacheAsync {
    async fn get(&self, key: &str) -> Outcome {
        let Some(mut conn) = self.checkout(key).await else {
            return Outcome::ERROR;
        };
        match conn.0.get(key).await {
            Ok(value) => Outcome::hit(Some(value.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::hit(None),
            Err(_) => {
                let _ = Object::take(conn);
                Outcome::ERROR
            }
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Outcome {
        let Some(mut conn) = self.checkout(key).await else {
            return Outcome::ERROR;
        };
        // The crate sends `noreply` and reads nothing back.
        match conn.0.set(key, value, 0).await {
            Ok(()) => Outcome::OK,
            Err(_) => {
                let _ = Object::take(conn);
                Outcome::ERROR
            }
        }
    }

    async fn mget(&self, keys: &[&str]) -> Outcome {
        mget_grouped(self, keys, |mut conn, group| async move {
            match conn.0.get_multi(&group).await {
                Ok(values) => Ok(values.len()),
                Err(_) => {
                    let _ = Object::take(conn);
                    Err(())
                }
            }
        })
        .await
    }
}

impl SizedGet for MemcacheAsync {
    async fn get_len(&self, key: &str) -> Result<Option<usize>, ()> {
        let mut conn = self.checkout(key).await.ok_or(())?;
        match conn.0.get(key).await {
            Ok(value) => Ok(Some(value.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(_) => {
                let _ = Object::take(conn);
                Err(())
            }
        }
    }
}

// memcache 0.21, exp::AsyncMemcache -----------------------------------------------------------

pub struct MemcacheExp(memcache::exp::AsyncMemcache);

impl MemcacheExp {
    pub async fn build(servers: &[SocketAddr], concurrency: usize) -> Result<MemcacheExp, String> {
        let addrs: Vec<String> = servers.iter().map(|a| a.to_string()).collect();
        memcache::exp::AsyncMemcache::builder()
            .max_idle(concurrency.max(8))
            .connect_async(addrs)
            .await
            .map(MemcacheExp)
            .map_err(|e| e.to_string())
    }
}

impl AsyncPeer for MemcacheExp {
    async fn get(&self, key: &str) -> Outcome {
        match self.0.get::<Vec<u8>>(key).await {
            Ok(found) => Outcome::hit(found.map(|v| v.len())),
            Err(_) => Outcome::ERROR,
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Outcome {
        match self.0.set(key, value, Duration::from_secs(3600)).await {
            Ok(()) => Outcome::OK,
            Err(_) => Outcome::ERROR,
        }
    }

    async fn mget(&self, keys: &[&str]) -> Outcome {
        match self.0.get_many::<Vec<u8>, &str>(keys.iter().copied()).await {
            Ok(found) => Outcome::hits(found.len()),
            Err(_) => Outcome::ERROR,
        }
    }
}

impl SizedGet for MemcacheExp {
    async fn get_len(&self, key: &str) -> Result<Option<usize>, ()> {
        self.0
            .get::<Vec<u8>>(key)
            .await
            .map(|found| found.map(|v| v.len()))
            .map_err(|_| ())
    }
}

// memcache 0.21, classic sync Client ----------------------------------------------------------

pub struct MemcacheSync(memcache::Client);

impl MemcacheSync {
    pub fn build(servers: &[SocketAddr], concurrency: usize) -> Result<MemcacheSync, String> {
        let urls: Vec<String> = servers.iter().map(|a| format!("memcache://{a}")).collect();
        memcache::Client::builder()
            .add_server(urls)
            .map_err(|e| e.to_string())?
            .with_max_pool_size(concurrency.max(1) as u32)
            .build()
            .map(MemcacheSync)
            .map_err(|e| e.to_string())
    }
}

impl SyncPeer for MemcacheSync {
    fn get(&self, key: &str) -> Outcome {
        match self.0.get::<Vec<u8>>(key) {
            Ok(found) => Outcome::hit(found.map(|v| v.len())),
            Err(_) => Outcome::ERROR,
        }
    }

    fn set(&self, key: &str, value: &[u8]) -> Outcome {
        match self.0.set(key, value, 0) {
            Ok(()) => Outcome::OK,
            Err(_) => Outcome::ERROR,
        }
    }

    fn mget(&self, keys: &[&str]) -> Outcome {
        match self.0.gets::<Vec<u8>>(keys) {
            Ok(found) => {
                let found: HashMap<String, Vec<u8>> = found;
                Outcome::hits(found.len())
            }
            Err(_) => Outcome::ERROR,
        }
    }
}
