//! I/O. One pipelined connection to one node: a cheap handle for callers, and the task that owns
//! the socket.
//!
//! Callers send an encoded request with a reply slot ([`slot`]) through a bounded channel; the
//! task ([`task`]) drives a [`Pipeline`](crate::pipeline::Pipeline), which owns the rules (FIFO,
//! deadlines, discarding the replies of callers that left, what to replay after a break), over
//! a stream from the [`Transport`]. A caller that gives up (timeout, dropped future) only drops
//! its end of the slot: its request keeps its place and its reply is read and discarded, so no later
//! caller can ever receive it. The task's future is polled by a tokio task of its own, or, while
//! one caller is alone on the connection, by that caller ([`drive`]): no hop between tasks then.
//!
//! **Deadlines.** Every request carries its deadline into the task, which answers it: a request
//! whose deadline has passed when the task takes it from the queue fails with
//! [`Error::Timeout`] unsent; while the task connects it takes arrivals at once and fails each
//! at its deadline; and the oldest request in flight is watched by the task's one timer (a node
//! that does not answer it is broken off, failing every request behind it). A request's
//! deadline is never later than the connection's request timeout from now, so the oldest
//! request's is the earliest but for requests given a shorter one, whose callers keep a timer
//! of their own ([`Connection::reply`]). Callers with the connection's own deadline (every data
//! call) register no timer.
//!
//! The task connects lazily, on the first request. A node that fails (a connect fails, the
//! oldest request outlives its deadline, or a connection breaks before one good reply) is marked
//! down for a backoff period ([`health`]): callers then fail fast with [`Error::NodeDown`]
//! instead of piling up or opening a connection each. A node that was down, when its
//! connection probes, forgets the keys written elsewhere meanwhile before it is marked up
//! ([`stale`]): the write path names them, this module does not route them. It does not know
//! about routing or the cluster.

mod answer;
mod drive;
mod health;
mod request;
mod slot;
mod stale;
mod task;

pub(crate) use answer::{Answer, Reply};
pub(crate) use request::accept_reply;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::Error;
use crate::pipeline::{Caller, Frame, Pending};
use crate::protocol::{Expect, Limits, Response};
use crate::transport::{Target, Transport};
use drive::Driver;
use health::Health;
use stale::Stale;

/// What a connection is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A node of the cluster: its connection is metered, and its failures are warnings and
    /// mark the node down for a backoff.
    Node,
    /// The configuration endpoint, asked by a discovery on a short-lived connection: errors
    /// name it as the endpoint, it is not metered as a node, and its failures are reported by
    /// the discovery (debug events here).
    Endpoint,
}

/// Settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub request_timeout: Duration,
    pub limits: Limits,
    pub queue_depth: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub transport: Arc<Transport>,
    /// Whether a down node's task reconnects on its own, and the node stays down until it has
    /// (the client routes around down nodes then: nothing else would try it).
    pub probe_down_nodes: bool,
    /// Whether the one node is an ElastiCache Serverless endpoint (see [`crate::serverless`]).
    pub serverless: bool,
    /// The client's connection tasks (its nodes' and discovery's), for
    /// [`Client::close`](crate::Client::close) to wait for.
    pub tasks: Arc<Tasks>,
}

/// The connection tasks of one client: each holds a token while it runs, so that
/// [`Tasks::all_ended`] can wait for the last one.
#[derive(Debug)]
pub(crate) struct Tasks(tokio::sync::watch::Sender<()>);

impl Default for Tasks {
    fn default() -> Tasks {
        Tasks(tokio::sync::watch::channel(()).0)
    }
}

impl Tasks {
    /// Completes once no task holds a token (at once if none does).
    pub(crate) async fn all_ended(&self) {
        self.0.closed().await;
    }
}

/// Who waits for a request in the connection task: a caller (the sending end of its reply
/// slot), or the task's own probe of a node that was down, which marks the node up when the
/// node answers it, and the deletes sent ahead of it ([`stale`]), or no one (a stand-in's copy
/// deleted once its node is back).
enum Waiter {
    Caller(slot::Sender),
    Probe(Box<stale::Probe>),
    /// The delete of a key (the flush: none) that a node that was down must forget.
    Cleanup(Arc<Stale>, Option<bytes::Bytes>),
    Quiet,
}

impl Waiter {
    /// Whether a caller left before its request was taken.
    #[inline]
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Caller(reply) => reply.is_closed(),
            Waiter::Probe(_) | Waiter::Cleanup(..) | Waiter::Quiet => false,
        }
    }
}

impl Caller for Waiter {
    type Error = Error;
    #[inline]
    fn is_gone(&self) -> bool {
        self.is_closed()
    }

    #[inline]
    fn answer(self, outcome: Result<Response, Error>) {
        match self {
            Waiter::Caller(reply) => reply.send(outcome),
            Waiter::Probe(probe) => probe.answer(matches!(outcome, Ok(Response::Version(_)))),
            Waiter::Cleanup(stale, key) => stale.cleaned(key, &outcome),
            Waiter::Quiet => {}
        }
    }
}

/// The rest of [`Connection::queue`] when a request could not be queued at once: the wait for
/// room in a full queue, or the error that refused it.
pub(crate) type Waiting = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;

/// Where the reply of a request [`Connection::queue`] queued will arrive, once the rest of its
/// sending (if any) is done.
async fn sent(queued: Result<Reply, Waiting>) -> Result<Reply, Error> {
    match queued {
        Ok(reply) => Ok(reply),
        Err(waiting) => waiting.await,
    }
}

/// How far below the latest possible deadline a deadline still counts as the connection's own
/// (the time between a caller reading the clock and queueing; tokio's timers have a resolution
/// of 1 ms anyway).
const WATCH_SLACK: Duration = Duration::from_millis(1);

/// A cheap, cloneable handle to one connection task. The task ends when the last handle is
/// dropped and the requests already in flight have been answered (or have timed out).
#[derive(Clone)]
pub(crate) struct Connection {
    tx: mpsc::Sender<Pending<Waiter>>,
    driver: Arc<Driver>,
    health: Arc<Health>,
    /// What the node must forget when it returns, while it is down.
    stale: Arc<Stale>,
    request_timeout: Duration,
    /// Whether the node speaks the meta protocol: 0 not known yet, 1 yes, 2 no.
    meta: Arc<AtomicU8>,
    queue: crate::metrics::QueueMeter,
}

impl Connection {
    /// Starts the task for the node named `node_id` (`host:port`) at `target`. Nothing is
    /// connected until the first request. Must be called within a tokio runtime.
    pub(crate) fn spawn(
        role: Role,
        node_id: Arc<str>,
        target: Target,
        settings: Arc<ConnectionSettings>,
    ) -> Connection {
        let (tx, rx) = mpsc::channel(settings.queue_depth.max(1));
        let queue = match role {
            Role::Node => crate::metrics::QueueMeter::new(&node_id),
            Role::Endpoint => crate::metrics::QueueMeter::detached(),
        };
        let health = Arc::new(Health::new(role, node_id, settings.probe_down_nodes));
        let request_timeout = settings.request_timeout;
        let stale = Arc::new(Stale::new(tx.downgrade(), settings.limits, request_timeout));
        let running = settings.tasks.0.subscribe();
        let task = task::run(rx, target, settings, health.clone(), stale.clone());
        let driver = Arc::new(Driver::new(task, running));
        Connection {
            tx,
            driver,
            health,
            stale,
            request_timeout,
            meta: Arc::new(AtomicU8::new(0)),
            queue,
        }
    }

    /// The node's name, `host:port`.
    pub(crate) fn node(&self) -> &str {
        self.health.node()
    }

    /// Whether the node is marked down (requests fail fast with [`Error::NodeDown`]).
    #[inline]
    pub(crate) fn is_down(&self) -> bool {
        self.health.is_down()
    }

    /// Notes, while the node is down, that `key` was written or deleted on `stand_in` instead:
    /// the node deletes it before it is marked up again, and the stand-in's copy is deleted
    /// once it is (see [`stale`]). Returns `false` when the node is not down (any more).
    pub(crate) fn note_written_elsewhere(&self, key: &[u8], stand_in: &Connection) -> bool {
        self.stale
            .note(&self.health, key, stand_in.tx.downgrade(), &self.tx)
    }

    /// Whether the node speaks the meta protocol, once a meta request has told.
    pub(crate) fn speaks_meta(&self) -> Option<bool> {
        match self.meta.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Records whether the node speaks the meta protocol.
    pub(crate) fn set_speaks_meta(&self, yes: bool) {
        self.meta.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
    }

    /// The deadline of a request sent now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// Queues one encoded request (waiting for room in the queue, at most until `deadline`, which
    /// is capped at the request timeout from now) and returns where its reply will arrive;
    /// [`Connection::reply`] waits for it. Several requests can be queued before any reply is
    /// awaited, so that they travel together. `idempotent`
    /// requests may be sent a second time on a fresh connection if the connection breaks
    /// before their reply (see [`Request::is_idempotent`](crate::protocol::Request::is_idempotent)).
    /// Cancel-safe: a dropped future or receiver never affects another request.
    ///
    /// Not an `async fn`: the request is queued when this is called (see
    /// [`Connection::queue`]); the future only finishes the sending of one that could not be.
    ///
    /// The caller never polls the connection's task itself ([`drive`]): it may have requests
    /// queued on other connections whose replies it awaits first, and those requests must go
    /// out now, not once the earlier replies are in.
    pub(crate) fn send(
        &self,
        frame: Frame,
        expect: Expect,
        idempotent: bool,
        deadline: Instant,
    ) -> impl Future<Output = Result<Reply, Error>> {
        sent(self.enqueue(frame, expect, idempotent, deadline, false))
    }

    /// [`Connection::send`] without a future in the usual case, for a request whose reply is
    /// awaited at once: queues the request now when the queue has room (no timer, no await)
    /// and returns where its reply will arrive. Otherwise — a full queue (backpressure), a node
    /// marked down, a closed connection — the rest is a future on the heap, so that every
    /// call's own future stays small. A caller alone on the connection polls its task itself
    /// while it waits ([`drive`]).
    pub(crate) fn queue(
        &self,
        frame: Frame,
        expect: Expect,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<Reply, Waiting> {
        self.enqueue(frame, expect, idempotent, deadline, true)
    }

    /// [`Connection::queue`], claiming the connection (when alone on it) if `claim`.
    fn enqueue(
        &self,
        frame: Frame,
        expect: Expect,
        idempotent: bool,
        deadline: Instant,
        claim: bool,
    ) -> Result<Reply, Waiting> {
        if let Some(down) = self.health.down_error() {
            return Err(Box::pin(std::future::ready(Err(down))));
        }
        let latest = self.deadline();
        let watched = deadline + WATCH_SLACK >= latest;
        let deadline = deadline.min(latest);
        let ticket = self.driver.enter(claim);
        let (reply, rx) = slot::slot();
        let pending = Pending::new(
            frame,
            expect,
            deadline.into_std(),
            idempotent,
            Waiter::Caller(reply),
        );
        let mut reply = Reply {
            rx,
            deadline: (!watched).then_some(deadline),
            ticket,
        };
        match self.tx.try_send(pending) {
            Ok(()) => {
                self.queue
                    .depth(self.tx.max_capacity() - self.tx.capacity());
                Ok(reply)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(Box::pin(std::future::ready(Err(self.closed()))))
            }
            Err(mpsc::error::TrySendError::Full(pending)) => {
                // Waiting for room is waiting for the task: the caller does not poll it.
                reply.ticket.unclaim();
                let conn = self.clone();
                Err(Box::pin(async move {
                    conn.wait_for_room(pending, deadline).await?;
                    conn.queue
                        .depth(conn.tx.max_capacity() - conn.tx.capacity());
                    Ok(reply)
                }))
            }
        }
    }

    /// Queues `pending` once the queue has room, at most until `deadline`.
    async fn wait_for_room(
        &self,
        pending: Pending<Waiter>,
        deadline: Instant,
    ) -> Result<(), Error> {
        match tokio::time::timeout_at(deadline, self.tx.send(pending)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Waits for the reply of a request queued by [`Connection::send`], at most until its
    /// deadline. A request given the connection's own deadline (the request timeout) is watched
    /// by the socket task, and its caller registers no timer (see the module docs); one given a
    /// shorter deadline waits under a timer of its own.
    pub(crate) fn reply(&self, reply: Reply) -> Answer<'_> {
        self.answer(Ok(reply))
    }

    /// Sends one encoded request and waits for its reply, at most the request timeout.
    ///
    /// Not an `async fn`: the request is queued when this is called (see
    /// [`Connection::queue`]), so the future holds where its reply will arrive and not the
    /// request's bytes.
    pub(crate) fn call(&self, frame: Frame, expect: Expect, idempotent: bool) -> Answer<'_> {
        self.answer(self.queue(frame, expect, idempotent, self.deadline()))
    }

    /// The reply of a request [`Connection::queue`] queued (or, for one it could not queue
    /// at once, the rest of its sending first).
    pub(crate) fn answer(&self, queued: Result<Reply, Waiting>) -> Answer<'_> {
        Answer::new(self, queued)
    }

    pub(super) fn timeout(&self) -> Error {
        Error::Timeout {
            node: self.node().to_string(),
            timeout: self.request_timeout,
        }
    }

    pub(super) fn closed(&self) -> Error {
        Error::Io {
            node: self.node().to_string(),
            source: Arc::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection task ended",
            )),
            hint: None,
        }
    }
}
