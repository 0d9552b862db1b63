//! One pipelined connection to one node: a handle for callers and the task that owns the socket.
//!
//! Callers send an encoded request with a oneshot for its reply through a bounded channel. The
//! task writes everything queued in one write, reads replies into one buffer, and hands them out
//! in FIFO order. A caller that gives up (timeout, dropped future) only drops its oneshot: its
//! request keeps its place in the queue and its reply is read and discarded, so no later caller
//! can ever receive it. A request whose caller left before it was written is not sent at all.
//!
//! The task connects lazily, on the first request. When a connect fails, when the oldest
//! request outlives its deadline (a node that stopped answering), or when a connection breaks
//! before giving a single good reply (a node that answers garbage, or hangs up as memcached
//! does over its connection limit), the connection is dropped,
//! everything in flight fails, and the node is marked down for a backoff period (exponential
//! with jitter, started over by the next good reply) during which callers fail fast with
//! [`Error::NodeDown`] instead of piling up or opening a connection each. This module does not
//! know about keys, routing or the cluster.
//!
//! The task serves any byte stream through [`ReadSide`] and [`WriteSide`]: a TCP socket split
//! in two, or (feature `tls`) a TLS session over one. Which one is decided once per connection,
//! at connect time; each is a separate monomorphic copy of [`serve`], so the plaintext path has
//! no TLS branch and no extra work per request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{looks_like_tls, tls_required, Error, ProtocolError, TLS_REQUIRED_HINT};
use crate::jitter::jitter;
use crate::protocol::{decode, Expect, Limits, Response};

/// Stop taking new requests into one write once this many bytes are queued.
const MAX_WRITE_BATCH: usize = 256 << 10;
/// Most requests in flight on one connection.
const MAX_IN_FLIGHT: usize = 8192;
/// A connection quiet for longer than this is checked for a close by the server before the next
/// write, so that requests are not written into a socket that died meanwhile (e.g. while a Lambda
/// environment was frozen) and can go out on a fresh connection instead.
const IDLE_PROBE_AFTER: Duration = Duration::from_millis(250);
/// Longest wait for a broken connection's orderly shutdown (a TLS close_notify can wait for a
/// socket that no longer drains).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// Settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub limits: Limits,
    pub queue_depth: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// TLS for every connection, when the client was built with `ClientBuilder::tls`.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<crate::tls::TlsContext>>,
}

/// Where a node is reached: an IP address, or a hostname resolved at each connect. With TLS, an
/// address keeps the node's hostname, which the certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Addr(SocketAddr, #[cfg(feature = "tls")] Arc<str>),
    Host(String, u16),
    /// An in-memory pipe per connect, whose other end a test harness plays the server on.
    #[cfg(feature = "fuzzing")]
    Memory(crate::fuzzing::MemoryDialer),
}

impl Target {
    /// The node `hostname` reached at `addr`.
    pub(crate) fn addr(addr: SocketAddr, hostname: &str) -> Target {
        #[cfg(feature = "tls")]
        return Target::Addr(addr, Arc::from(hostname));
        #[cfg(not(feature = "tls"))]
        {
            let _ = hostname;
            Target::Addr(addr)
        }
    }

    /// The node's hostname, which TLS checks the certificate against.
    #[cfg(feature = "tls")]
    fn hostname(&self) -> &str {
        match self {
            Target::Addr(_, host) => host,
            Target::Host(host, _) => host,
            #[cfg(feature = "fuzzing")]
            Target::Memory(_) => "memory",
        }
    }
}

/// A request on its way: queued, written, or waiting for its reply. Its frame is kept until the
/// reply comes, so that it can be sent again if the connection breaks first (see [`Broken`]).
struct Pending {
    frame: Bytes,
    expect: Expect,
    reply: oneshot::Sender<Result<Response, Error>>,
    deadline: Instant,
    idempotent: bool,
    replayed: bool,
}

/// State the task shares with the handles: whether the node is down, and why. Times are read
/// from tokio's clock, the one request deadlines use.
struct Health {
    node: Arc<str>,
    /// When the connection was made; `down_until` counts from here.
    epoch: Instant,
    /// Nanoseconds since `epoch` until which the node counts as down; 0 when up.
    down_until: AtomicU64,
    reason: Mutex<Arc<str>>,
}

impl Health {
    fn now_nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn down_error(&self) -> Option<Error> {
        let until = self.down_until.load(Ordering::Relaxed);
        if until == 0 || self.now_nanos() >= until {
            return None;
        }
        let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
        Some(Error::NodeDown {
            node: self.node.to_string(),
            reason,
        })
    }

    fn mark_down(&self, backoff: Duration, reason: &Error) {
        if let Ok(mut r) = self.reason.lock() {
            *r = Arc::from(reason.to_string());
        }
        let until = self
            .now_nanos()
            .saturating_add(jitter(backoff, 0.2).as_nanos() as u64);
        self.down_until.store(until.max(1), Ordering::Relaxed);
    }

    fn mark_up(&self) {
        self.down_until.store(0, Ordering::Relaxed);
    }
}

/// Where the reply of a queued request arrives, and until when it is awaited.
pub(crate) struct Reply {
    rx: oneshot::Receiver<Result<Response, Error>>,
    deadline: Instant,
}

/// A cheap, cloneable handle to one connection task. The task ends when the last handle is
/// dropped and the requests already in flight have been answered (or have timed out).
#[derive(Clone)]
pub(crate) struct Connection {
    tx: mpsc::Sender<Pending>,
    health: Arc<Health>,
    request_timeout: Duration,
}

impl Connection {
    /// Starts the task for `node` (named `node_id` in errors). Nothing is connected until the
    /// first request. Must be called within a tokio runtime.
    pub(crate) fn spawn(
        node_id: Arc<str>,
        target: Target,
        settings: Arc<ConnectionSettings>,
    ) -> Connection {
        let (tx, rx) = mpsc::channel(settings.queue_depth.max(1));
        let health = Arc::new(Health {
            node: node_id,
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            reason: Mutex::new(Arc::from("")),
        });
        let request_timeout = settings.request_timeout;
        tokio::spawn(run(rx, target, settings, health.clone()));
        Connection {
            tx,
            health,
            request_timeout,
        }
    }

    /// The node's name, `host:port`.
    pub(crate) fn node(&self) -> &str {
        &self.health.node
    }

    /// The deadline of a request sent now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// Queues one encoded request (waiting for room in the queue, at most until `deadline`) and
    /// returns where its reply will arrive; [`Connection::reply`] waits for it. Several requests
    /// can be queued before any reply is awaited, so that they travel together. `idempotent`
    /// requests may be sent a second time on a fresh connection if the connection breaks
    /// before their reply (see [`Request::is_idempotent`](crate::protocol::Request::is_idempotent)).
    /// Cancel-safe: a dropped future or receiver never affects another request.
    pub(crate) async fn send(
        &self,
        frame: Bytes,
        expect: Expect,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<Reply, Error> {
        if let Some(down) = self.health.down_error() {
            return Err(down);
        }
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            frame,
            expect,
            reply,
            deadline,
            idempotent,
            replayed: false,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(pending)).await {
            Ok(Ok(())) => Ok(Reply { rx, deadline }),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Waits for the reply of a request queued by [`Connection::send`], at most until its
    /// deadline.
    pub(crate) async fn reply(&self, reply: Reply) -> Result<Response, Error> {
        match tokio::time::timeout_at(reply.deadline, reply.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Sends one encoded request and waits for its reply, at most the request timeout.
    pub(crate) async fn call(
        &self,
        frame: Bytes,
        expect: Expect,
        idempotent: bool,
    ) -> Result<Response, Error> {
        let reply = self
            .send(frame, expect, idempotent, self.deadline())
            .await?;
        self.reply(reply).await
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            node: self.health.node.to_string(),
            timeout: self.request_timeout,
        }
    }

    fn closed(&self) -> Error {
        Error::Io {
            node: self.health.node.to_string(),
            kind: std::io::ErrorKind::ConnectionAborted,
            message: Arc::from("connection task ended"),
        }
    }
}

pub(crate) fn io_error(node: &str, e: &std::io::Error) -> Error {
    Error::Io {
        node: node.to_string(),
        kind: e.kind(),
        message: Arc::from(e.to_string()),
    }
}

/// The task: wait for work, connect, serve until the connection breaks, repeat.
async fn run(
    mut rx: mpsc::Receiver<Pending>,
    target: Target,
    settings: Arc<ConnectionSettings>,
    health: Arc<Health>,
) {
    let node = health.node.clone();
    let mut backoff = settings.backoff_min;
    let mut replay: Vec<Pending> = Vec::new();
    loop {
        if replay.is_empty() {
            let first = loop {
                match rx.recv().await {
                    None => return,
                    Some(p) if p.reply.is_closed() => continue,
                    Some(p) => break p,
                }
            };
            replay.push(first);
        }
        // Requests queued before the node was marked down: no connect during the backoff,
        // they fail as the callers arriving now do.
        if let Some(down) = health.down_error() {
            fail_queued(&mut replay, &mut rx, &down);
            continue;
        }
        let stream = match connect(&target, &settings, &node).await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(node = %node, error = %err, backoff_ms = backoff.as_millis() as u64, "memcached.connect_failed");
                health.mark_down(backoff, &err);
                backoff = (backoff * 2).min(settings.backoff_max);
                fail_queued(&mut replay, &mut rx, &err);
                continue;
            }
        };
        health.mark_up();
        tracing::debug!(node = %node, "memcached.connected");
        let first = std::mem::take(&mut replay);
        let served = match stream {
            Stream::Plain(tcp) => {
                let (reader, writer) = tcp.into_split();
                serve(reader, writer, first, &mut rx, &settings, &node).await
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                let (reader, writer) = tls.split();
                serve(reader, writer, first, &mut rx, &settings, &node).await
            }
            #[cfg(feature = "fuzzing")]
            Stream::Memory(pipe) => {
                let (reader, writer) = tokio::io::split(pipe);
                serve(reader, writer, first, &mut rx, &settings, &node).await
            }
        };
        match served {
            Ok(()) => return,
            Err(Broken {
                error,
                node_down,
                answered,
                replay: again,
            }) => {
                tracing::warn!(node = %node, error = %error, resent = again.len(), node_down, "memcached.connection_lost");
                replay = again;
                if answered {
                    backoff = settings.backoff_min;
                }
                if node_down {
                    health.mark_down(backoff, &error);
                    backoff = (backoff * 2).min(settings.backoff_max);
                }
            }
        }
    }
}

/// Fails `batch` and everything waiting in the queue with `error`.
fn fail_queued(batch: &mut Vec<Pending>, rx: &mut mpsc::Receiver<Pending>, error: &Error) {
    for p in batch.drain(..) {
        let _ = p.reply.send(Err(error.clone()));
    }
    while let Ok(p) = rx.try_recv() {
        let _ = p.reply.send(Err(error.clone()));
    }
}

/// An established connection: chosen once, at connect time.
enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsSocket>),
    #[cfg(feature = "fuzzing")]
    Memory(tokio::io::DuplexStream),
}

/// Connects to the node and, with TLS, runs the handshake; both within the connect timeout.
async fn connect(
    target: &Target,
    settings: &ConnectionSettings,
    node: &str,
) -> Result<Stream, Error> {
    #[cfg(feature = "fuzzing")]
    if let Target::Memory(dialer) = target {
        return dialer
            .dial()
            .map(Stream::Memory)
            .map_err(|e| io_error(node, &e));
    }
    let timeout = settings.connect_timeout;
    let deadline = Instant::now() + timeout;
    let attempt = async {
        let stream = match target {
            Target::Addr(addr, ..) => TcpStream::connect(addr).await,
            Target::Host(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            #[cfg(feature = "fuzzing")]
            Target::Memory(_) => Err(std::io::ErrorKind::Unsupported.into()), // dialed above
        }
        .map_err(|e| io_error(node, &e))?;
        stream.set_nodelay(true).map_err(|e| io_error(node, &e))?;
        Ok(stream)
    };
    let tcp = tokio::time::timeout_at(deadline, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout {
                node: node.to_string(),
                timeout,
            })
        })?;
    #[cfg(feature = "tls")]
    if let Some(tls) = &settings.tls {
        let peer = crate::tls::Peer::Node(node);
        let socket = tls
            .handshake(tcp, target.hostname(), peer, deadline)
            .await?;
        return Ok(Stream::Tls(Box::new(socket)));
    }
    Ok(Stream::Plain(tcp))
}

/// The read side of an established connection.
pub(crate) trait ReadSide: AsyncRead + Unpin {
    /// Whether the connection is plaintext (so that a server that drops it before answering
    /// may be one that requires TLS).
    const PLAINTEXT: bool;

    /// Whether the server has closed (or reset) the connection, found without reading.
    fn peer_closed(&self) -> bool;

    /// The error for a failed read or write of this connection.
    fn failure(&self, e: &std::io::Error, node: &str) -> Error;
}

/// The write side of an established connection.
pub(crate) trait WriteSide: AsyncWrite + Unpin {
    /// Whether bytes accepted by `write` may wait in a buffer until `flush` (TLS records).
    const NEEDS_FLUSH: bool;
}

impl ReadSide for OwnedReadHalf {
    const PLAINTEXT: bool = true;

    fn peer_closed(&self) -> bool {
        socket_closed(&socket2::SockRef::from(self.as_ref()))
    }

    fn failure(&self, e: &std::io::Error, node: &str) -> Error {
        io_error(node, e)
    }
}

impl WriteSide for OwnedWriteHalf {
    const NEEDS_FLUSH: bool = false;
}

#[cfg(feature = "tls")]
impl ReadSide for crate::tls::TlsReadHalf {
    const PLAINTEXT: bool = false;

    /// Peeks at the TCP socket under the TLS session. A server that sent a TLS close_notify
    /// before closing looks open here; the next read then finds the close.
    fn peer_closed(&self) -> bool {
        socket_closed(self.socket())
    }

    fn failure(&self, e: &std::io::Error, node: &str) -> Error {
        crate::tls::TlsReadHalf::failure(self, e, node)
    }
}

#[cfg(feature = "tls")]
impl WriteSide for crate::tls::TlsWriteHalf {
    const NEEDS_FLUSH: bool = true;
}

/// Why a connection was dropped; `node_down` when the node should be left alone for a while,
/// `answered` when the connection gave at least one good reply (so the backoff starts over).
/// `replay` holds the requests to send again on a fresh connection: when a connection that had
/// served failed at the socket level (closed, reset — typical of a socket that died while a
/// Lambda was frozen), each request not yet sent again that was either never fully written, or is
/// idempotent, gets one more try. Their callers never see the broken socket.
struct Broken {
    error: Error,
    node_down: bool,
    answered: bool,
    replay: Vec<Pending>,
}

/// Serves one established connection. Returns `Ok` when every handle is gone and nothing is
/// left in flight; `Err` when the connection broke (everything in flight has then been failed).
async fn serve<R: ReadSide, W: WriteSide>(
    mut reader: R,
    mut writer: W,
    first: Vec<Pending>,
    rx: &mut mpsc::Receiver<Pending>,
    settings: &ConnectionSettings,
    node: &Arc<str>,
) -> Result<(), Broken> {
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let mut wbuf = BytesMut::with_capacity(16 << 10);
    let mut rbuf = BytesMut::with_capacity(16 << 10);
    let mut open = true;
    let sleep = tokio::time::sleep_until(Instant::now() + Duration::from_secs(86_400 * 365));
    tokio::pin!(sleep);
    let mut armed_for: Option<Instant> = None;
    let mut last_io = Instant::now();
    // Whether this write already waited one scheduler turn for more requests (see below).
    let mut coalesced = false;
    // Nothing read yet on this connection (for the hint that a server may require TLS).
    let mut fresh = true;
    // Bytes accepted by a buffered writer (TLS) and not yet flushed to the socket.
    let mut unflushed = false;
    // A good reply (not an error reply) was read on this connection.
    let mut answered = false;

    let queue = |p: Pending, wbuf: &mut BytesMut, in_flight: &mut VecDeque<Pending>| {
        if p.reply.is_closed() {
            return; // its caller is gone and nothing was written: skip it entirely
        }
        wbuf.extend_from_slice(&p.frame);
        in_flight.push_back(p);
    };
    for p in first {
        queue(p, &mut wbuf, &mut in_flight);
    }

    let result = loop {
        while open && wbuf.len() < MAX_WRITE_BATCH && in_flight.len() < MAX_IN_FLIGHT {
            match rx.try_recv() {
                Ok(p) => queue(p, &mut wbuf, &mut in_flight),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && in_flight.is_empty() {
            return Ok(());
        }
        if !wbuf.is_empty() && last_io.elapsed() > IDLE_PROBE_AFTER {
            if reader.peer_closed() {
                break (
                    io_error(
                        node,
                        &std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the server closed the idle connection",
                        ),
                    ),
                    false,
                );
            }
            last_io = Instant::now();
        }
        // Write coalescing: the callers woken by the last replies usually have not run yet, so
        // writing now would send one or two requests per syscall. When others are in flight
        // (a lone caller never waits), give them one scheduler turn to queue theirs first.
        if !wbuf.is_empty() && !coalesced && wbuf.len() < MAX_WRITE_BATCH && in_flight.len() > 1 {
            coalesced = true;
            tokio::task::yield_now().await;
            continue;
        }
        // The timer watches the oldest request. Deadlines grow in FIFO order, so a timer armed
        // for an earlier request stays valid (it fires early at worst and is re-armed then):
        // it is reset about once per timeout period, not once per reply.
        let front_deadline = in_flight.front().map(|f| f.deadline);
        if let Some(front) = front_deadline {
            if armed_for.map_or(true, |armed| armed > front) {
                sleep.as_mut().reset(front);
                armed_for = Some(front);
            }
        }
        let can_take = open && wbuf.len() < MAX_WRITE_BATCH && in_flight.len() < MAX_IN_FLIGHT;
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(32 << 10);
        }
        tokio::select! {
            biased;
            read = reader.read_buf(&mut rbuf) => {
                match read {
                    Ok(0) => break (dropped::<R>(
                            io_error(node, &std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed by the server")),
                            fresh,
                            &rbuf,
                            node,
                        ), false),
                    Ok(_) => {
                        last_io = Instant::now();
                        fresh = false;
                        if let Err(error) = dispatch(&mut rbuf, &mut in_flight, &settings.limits, node, &mut answered) {
                            let error = dropped::<R>(error, false, &rbuf, node);
                            break (error, false);
                        }
                    }
                    Err(e) => break (dropped::<R>(reader.failure(&e, node), fresh, &rbuf, node), false),
                }
            }
            written = write_some(&mut writer, &wbuf), if !wbuf.is_empty() || (W::NEEDS_FLUSH && unflushed) => {
                match written {
                    Ok(Some(0)) => break (io_error(node, &std::io::Error::new(std::io::ErrorKind::WriteZero, "socket accepted no bytes")), false),
                    Ok(Some(n)) => {
                        last_io = Instant::now();
                        coalesced = false;
                        if W::NEEDS_FLUSH {
                            unflushed = true;
                        }
                        let _ = wbuf.split_to(n);
                        if wbuf.is_empty() && wbuf.capacity() > (1 << 20) {
                            wbuf = BytesMut::with_capacity(16 << 10);
                        }
                    }
                    Ok(None) => unflushed = false,
                    Err(e) => break (dropped::<R>(reader.failure(&e, node), fresh, &rbuf, node), false),
                }
            }
            pending = rx.recv(), if can_take => {
                match pending {
                    Some(p) => queue(p, &mut wbuf, &mut in_flight),
                    None => open = false,
                }
            }
            () = &mut sleep, if front_deadline.is_some() => {
                let front = front_deadline.unwrap_or_else(Instant::now);
                if Instant::now() < front {
                    sleep.as_mut().reset(front); // armed for a request already answered
                    armed_for = Some(front);
                    continue;
                }
                break (Error::Timeout { node: node.to_string(), timeout: settings.request_timeout }, true);
            }
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer.shutdown()).await;
    let (error, node_down) = result;
    let mut result = Broken {
        error,
        // Not one good reply: the node is failing (not merely closing a connection that has
        // served); leave it alone for a while rather than reconnect at once.
        node_down: node_down || !answered,
        answered,
        replay: Vec::new(),
    };
    // Only a connection that has served is worth a second try: one that broke before any
    // good reply is a failing node, and a second connection would fail the same way.
    let socket_failure = matches!(result.error, Error::Io { .. }) && !result.node_down;
    // Requests at the back whose frames are still wholly in the write buffer were never sent.
    let mut unsent_bytes = wbuf.len();
    let mut first_unsent = in_flight.len();
    for p in in_flight.iter().rev() {
        if p.frame.len() > unsent_bytes {
            break;
        }
        unsent_bytes -= p.frame.len();
        first_unsent -= 1;
    }
    for (i, mut p) in in_flight.into_iter().enumerate() {
        let safe = i >= first_unsent || p.idempotent;
        if socket_failure && safe && !p.replayed && !p.reply.is_closed() {
            p.replayed = true;
            result.replay.push(p);
        } else {
            let _ = p.reply.send(Err(result.error.clone()));
        }
    }
    Err(result)
}

/// Writes from `wbuf`: `Some(bytes written)`. A buffered writer (TLS) with nothing left to write
/// is flushed instead: `None`. For a plaintext socket the flush branch is compiled out.
async fn write_some<W: WriteSide>(writer: &mut W, wbuf: &[u8]) -> std::io::Result<Option<usize>> {
    if W::NEEDS_FLUSH && wbuf.is_empty() {
        return writer.flush().await.map(|()| None);
    }
    writer.write(wbuf).await.map(Some)
}

/// The error for a connection that broke: on a plaintext connection, a server that answered
/// with a TLS record, or dropped the connection before sending anything, may require TLS.
/// Only on the way out of a broken connection, never per request.
fn dropped<R: ReadSide>(error: Error, fresh: bool, rbuf: &[u8], node: &str) -> Error {
    if !R::PLAINTEXT {
        return error;
    }
    if looks_like_tls(rbuf) {
        return tls_required(node, "node");
    }
    match error {
        Error::Io {
            node,
            kind,
            message,
        } if fresh => Error::Io {
            node,
            kind,
            message: Arc::from(format!("{message}; {TLS_REQUIRED_HINT}")),
        },
        other => other,
    }
}

/// Whether the server has closed (or reset) an idle connection: one non-blocking peek, which
/// looks at the socket itself rather than at readiness the runtime may not have collected yet.
fn socket_closed(socket: &socket2::Socket) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::Interrupted
        }
    }
}

/// Decodes every complete reply in `rbuf` and hands each to the oldest request in flight;
/// sets `answered` once one of them is a good reply (not an error reply).
fn dispatch(
    rbuf: &mut BytesMut,
    in_flight: &mut VecDeque<Pending>,
    limits: &Limits,
    node: &str,
    answered: &mut bool,
) -> Result<(), Error> {
    while !rbuf.is_empty() {
        let Some(front) = in_flight.front() else {
            return Err(Error::Protocol {
                node: node.to_string(),
                source: ProtocolError::UnexpectedReply {
                    expected: "nothing (no request in flight)",
                    line: crate::error::excerpt(rbuf),
                },
            });
        };
        match decode(rbuf, front.expect, limits) {
            Ok(Some((response, _))) => {
                *answered |= !matches!(response, Response::Error(_));
                if let Some(f) = in_flight.pop_front() {
                    let _ = f.reply.send(Ok(response));
                }
            }
            Ok(None) => break,
            Err(source) => {
                return Err(Error::Protocol {
                    node: node.to_string(),
                    source,
                })
            }
        }
    }
    if rbuf.is_empty() && rbuf.capacity() > (4 << 20) {
        *rbuf = BytesMut::with_capacity(16 << 10);
    }
    Ok(())
}
