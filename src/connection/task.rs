//! The socket task: a thin driver of a [`Pipeline`] over a
//! [`Transport`](crate::transport::Transport) stream.
//!
//! It waits for work, connects, then moves bytes: queued requests into the pipeline and out in
//! one write, reads into the pipeline's buffer and lets it dispatch, arms one timer for the oldest
//! deadline. It keeps the deadlines of the requests it takes (see the module docs of
//! [`super`]): one taken after its deadline, or still waiting for a connect at its deadline,
//! fails unsent. When the connection breaks the pipeline decides what is replayed; this task
//! decides when to connect again (backoff). Which stream kind (TCP, TLS, dialed) is served is
//! decided once per connection; each kind gets its own monomorphic copy of [`serve`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::health::{Backoff, Health};
use super::stale::Stale;
use super::{ConnectionSettings, Role, Waiter};
use crate::error::{Error, Peer};
use crate::pipeline::{Break, Closed, Pending, Pipeline};
use crate::transport::{explain, hint_tls, io_error, ReadSide, Stream, Target, WriteSide};

/// A connection quiet for longer than this is checked for a close by the server before the next
/// write, so that requests are not written into a socket that died meanwhile (e.g. while a Lambda
/// environment was frozen) and can go out on a fresh connection instead.
const IDLE_PROBE_AFTER: Duration = Duration::from_millis(250);
/// Longest wait for a broken connection's orderly shutdown (a TLS close_notify can wait for a
/// socket that no longer drains).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

type Queue = mpsc::Receiver<Pending<Waiter>>;

/// The task: wait for work, connect, serve until the connection breaks, repeat. Ends when every
/// handle is gone and nothing is in flight.
pub(super) async fn run(
    mut rx: Queue,
    target: Target,
    settings: Arc<ConnectionSettings>,
    health: Arc<Health>,
    stale: Arc<Stale>,
) {
    let node = health.peer();
    let meter = match health.role() {
        Role::Node => crate::metrics::ConnectionMeter::new(health.node()),
        Role::Endpoint => crate::metrics::ConnectionMeter::detached(),
    };
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let mut replay: Vec<Pending<Waiter>> = Vec::new();
    // While the node is down: when the backoff ends (a probing node connects again then).
    let mut retry_at: Option<Instant> = None;
    loop {
        if replay.is_empty() {
            let probe_at = retry_at.filter(|_| health.probes());
            let first = loop {
                tokio::select! {
                    pending = rx.recv() => match pending {
                        None => return,
                        Some(p) if p.caller().is_closed() => continue,
                        Some(p) => break Some(p),
                    },
                    () = sleep_until_some(probe_at) => break None,
                }
            };
            replay.extend(first);
        }
        // Requests queued before the node was marked down: no connect during the backoff,
        // they fail as the callers arriving now do.
        if retry_at.is_some_and(|at| Instant::now() < at) {
            if let Some(down) = health.down_error() {
                fail_queued(&mut replay, &mut rx, &down);
                continue;
            }
        }
        let connect = settings.transport.connect(&target, node, None);
        let stream = match watch_while(connect, &mut replay, &mut rx, &settings, node).await {
            Ok(stream) => stream,
            Err(err) => {
                let delay = backoff.failed();
                meter.connect_failed();
                if health.role() == Role::Node {
                    tracing::warn!(parent: None, node = %health.node(), error = %err, backoff_ms = delay.as_millis() as u64, "memcached.connect_failed");
                } else {
                    tracing::debug!(parent: None, endpoint = %health.node(), error = %err, "memcached.discovery.connect_failed");
                }
                retry_at = Some(health.mark_down(delay, &err));
                fail_queued(&mut replay, &mut rx, &err);
                continue;
            }
        };
        retry_at = None;
        meter.opened();
        tracing::debug!(parent: None, node = %health.node(), "memcached.connected");
        let mut first = std::mem::take(&mut replay);
        if health.probes() && health.is_down() {
            // A node that accepts a connection may still not answer (a stopped process: the
            // kernel completes the handshake). It stays down, its keys served elsewhere, until
            // it answers a probe, sent after the deletes of what it must forget.
            first.splice(0..0, stale.round(&health));
        } else {
            health.mark_up();
        }
        let served = match stream {
            Stream::Tcp(tcp) => {
                let (reader, writer) = tcp.into_split();
                serve(reader, writer, first, &mut rx, &settings, node, &meter).await
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                let (reader, writer) = tls.split();
                serve(reader, writer, first, &mut rx, &settings, node, &meter).await
            }
            Stream::Dialed(io) => {
                let (reader, writer) = tokio::io::split(io);
                serve(reader, writer, first, &mut rx, &settings, node, &meter).await
            }
        };
        meter.closed();
        let Some((error, closed)) = served else {
            return;
        };
        // Without reply bytes: they may hold keys and values.
        if health.role() == Role::Node {
            tracing::warn!(
                parent: None,
                node = %health.node(),
                error = %error.without_data(),
                resent = closed.replay.len(),
                node_down = closed.node_down,
                "memcached.connection_lost"
            );
        }
        replay = closed.replay;
        if closed.answered {
            backoff.reset();
        }
        if closed.node_down {
            retry_at = Some(health.mark_down(backoff.failed(), &error));
        } else if health.probes() {
            // Nothing may come to try the node again: reconnect now.
            retry_at = Some(Instant::now());
        }
    }
}

/// Runs `work` (a connect) while answering the requests that wait for it by their deadlines:
/// those arriving meanwhile join `waiting` (up to the queue's depth), and those whose deadline
/// passes fail with a timeout. `waiting` is in arrival order, which is deadline order (a
/// request given a shorter deadline has a timer of its own), so one timer for the first
/// request's deadline watches them all, and the expired ones are always at the front.
async fn watch_while<T>(
    work: impl std::future::Future<Output = T>,
    waiting: &mut Vec<Pending<Waiter>>,
    rx: &mut Queue,
    settings: &ConnectionSettings,
    node: Peer<'_>,
) -> T {
    tokio::pin!(work);
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed = None;
    let mut open = true;
    loop {
        let first = waiting.first().map(Pending::deadline);
        if first != armed {
            if let Some(at) = first {
                timer.as_mut().reset(Instant::from_std(at));
            }
            armed = first;
        }
        let can_take = open && waiting.len() < settings.queue_depth;
        tokio::select! {
            biased;
            done = &mut work => return done,
            () = &mut timer, if armed.is_some() => {
                let now = std::time::Instant::now();
                let expired = waiting.iter().take_while(|p| p.deadline() <= now).count();
                for p in waiting.drain(..expired) {
                    p.fail(timeout(settings, node));
                }
                // Fired early (a reset raced the clock): armed again for the same request.
                armed = None;
            }
            pending = rx.recv(), if can_take => match pending {
                Some(p) if p.caller().is_closed() => {}
                Some(p) => waiting.push(p),
                None => open = false,
            },
        }
    }
}

/// Takes `p` into the pipeline, or fails it unsent when its deadline passed while it was queued.
fn take(
    pipeline: &mut Pipeline<Waiter>,
    p: Pending<Waiter>,
    now: std::time::Instant,
    settings: &ConnectionSettings,
    node: Peer<'_>,
) {
    if p.deadline() <= now {
        p.fail(timeout(settings, node));
    } else {
        pipeline.push(p);
    }
}

/// The error of a request not answered by its deadline.
fn timeout(settings: &ConnectionSettings, node: Peer<'_>) -> Error {
    Error::Timeout {
        node: node.id(),
        timeout: settings.request_timeout,
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Fails `batch` and everything waiting in the queue with `error`.
fn fail_queued(batch: &mut Vec<Pending<Waiter>>, rx: &mut Queue, error: &Error) {
    for p in batch.drain(..) {
        p.fail(error.clone());
    }
    while let Ok(p) = rx.try_recv() {
        p.fail(error.clone());
    }
}

/// Serves one established connection. Returns `None` when every handle is gone and nothing is
/// left in flight; otherwise the connection broke: the error and what the pipeline decided
/// (everything in flight not to be replayed has then been failed).
async fn serve<R: ReadSide, W: WriteSide>(
    mut reader: R,
    mut writer: W,
    first: Vec<Pending<Waiter>>,
    rx: &mut Queue,
    settings: &ConnectionSettings,
    node: Peer<'_>,
    meter: &crate::metrics::ConnectionMeter,
) -> Option<(Error, Closed<Waiter>)> {
    let mut pipeline: Pipeline<Waiter> = Pipeline::new(settings.limits);
    let mut open = true;
    let sleep = tokio::time::sleep_until(Instant::now() + Duration::from_secs(86_400 * 365));
    tokio::pin!(sleep);
    let mut armed_for: Option<Instant> = None;
    let mut last_io = Instant::now();
    // Whether bytes moved since the last turn of the loop (`last_io` is then that turn's time).
    let mut moved = false;
    // Whether this write already waited one scheduler turn for more requests (see below).
    let mut coalesced = false;
    // Bytes accepted by a buffered writer (TLS) and not yet flushed to the socket.
    let mut unflushed = false;

    for p in first {
        take(&mut pipeline, p, last_io.into_std(), settings, node);
    }

    let (why, error) = loop {
        // One clock reading per turn: deadlines are checked against it, and it dates the I/O.
        let now = Instant::now();
        if moved {
            last_io = now;
            moved = false;
        }
        while open && pipeline.has_room() {
            match rx.try_recv() {
                Ok(p) => take(&mut pipeline, p, now.into_std(), settings, node),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && pipeline.is_idle() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer.shutdown()).await;
            return None;
        }
        let pending_write = !pipeline.unwritten().is_empty();
        if pending_write && now.saturating_duration_since(last_io) > IDLE_PROBE_AFTER {
            if reader.peer_closed() {
                let closed = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the idle connection",
                );
                break (Break::Socket, io_error(node, closed));
            }
            last_io = now;
        }
        // Write coalescing: the callers woken by the last replies usually have not run yet, so
        // writing now would send one or two requests per syscall. When others are in flight
        // (a lone caller never waits), give them one scheduler turn to queue theirs first.
        if pending_write && !coalesced && pipeline.has_room() && pipeline.in_flight() > 1 {
            coalesced = true;
            tokio::task::yield_now().await;
            continue;
        }
        // The timer watches the oldest request. Deadlines grow in FIFO order, so a timer armed
        // for an earlier request stays valid (it fires early at worst and is re-armed then):
        // it is reset about once per timeout period, not once per reply.
        let front_deadline = pipeline.deadline().map(Instant::from_std);
        if let Some(front) = front_deadline {
            if armed_for.map_or(true, |armed| armed > front) {
                sleep.as_mut().reset(front);
                armed_for = Some(front);
            }
        }
        let can_take = open && pipeline.has_room();
        let can_write = pending_write || (W::NEEDS_FLUSH && unflushed);
        let (rbuf, unwritten) = pipeline.buffers();
        tokio::select! {
            biased;
            read = reader.read_buf(rbuf) => {
                match read {
                    Ok(0) => {
                        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed by the server");
                        break (Break::Socket, io_error(node, eof));
                    }
                    Ok(n) => {
                        meter.received(n);
                        moved = true;
                        if let Err(source) = pipeline.dispatch() {
                            break (Break::Protocol, Error::Protocol { node: node.id(), source });
                        }
                    }
                    Err(e) => break (Break::Socket, reader.failure(e, node)),
                }
            }
            written = write_some(&mut writer, unwritten), if can_write => {
                match written {
                    Ok(Some(0)) => {
                        let zero = std::io::Error::new(std::io::ErrorKind::WriteZero, "socket accepted no bytes");
                        break (Break::Socket, io_error(node, zero));
                    }
                    Ok(Some(n)) => {
                        meter.sent(n);
                        moved = true;
                        coalesced = false;
                        unflushed = W::NEEDS_FLUSH;
                        pipeline.written(n);
                    }
                    Ok(None) => unflushed = false,
                    Err(e) => break (Break::Socket, reader.failure(e, node)),
                }
            }
            pending = rx.recv(), if can_take => {
                match pending {
                    Some(p) => take(&mut pipeline, p, now.into_std(), settings, node),
                    None => open = false,
                }
            }
            () = &mut sleep, if front_deadline.is_some() => {
                if !pipeline.expired(Instant::now().into_std()) {
                    armed_for = None; // armed for a request already answered: re-arm
                    continue;
                }
                break (Break::Timeout, timeout(settings, node));
            }
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer.shutdown()).await;
    // On a plaintext connection, say when the server seems to require TLS.
    let mut error = explain(error, R::PLAINTEXT, pipeline.undecoded(), node);
    if R::PLAINTEXT && why == Break::Socket && !pipeline.received_any() {
        error = hint_tls(error);
    }
    let closed = pipeline.close(why, &error);
    Some((error, closed))
}

/// Writes from `wbuf`: `Some(bytes written)`. A buffered writer (TLS) with nothing left to write
/// is flushed instead: `None`. For a plaintext socket the flush branch is compiled out.
async fn write_some<W: WriteSide>(writer: &mut W, wbuf: &[u8]) -> std::io::Result<Option<usize>> {
    if W::NEEDS_FLUSH && wbuf.is_empty() {
        return writer.flush().await.map(|()| None);
    }
    writer.write(wbuf).await.map(Some)
}
