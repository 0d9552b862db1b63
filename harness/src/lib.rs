//! A harness that drives the real [`Client`] through a script of bytes, for the fuzz target
//! `connection` (`fuzz/fuzz_targets/connection.rs`) and the regression tests made from its
//! findings (`tests/connection_script.rs`). The client is built as any user builds it, with one
//! node (`memory-node:11211`) and a [`Dial`] that opens in-memory pipes
//! ([`tokio::io::duplex`]) instead of sockets, so the whole request path runs: key validation,
//! encoding, routing, the node's connection task, decoding and the mapping of each reply to the
//! call's typed result.
//!
//! It is a workspace crate of its own, not published and not part of the test kit
//! (`memcached-autodiscovery-testkit`): it runs the client on tokio's paused clock, which needs
//! tokio's `test-util` feature, and a published dev-dependency must not turn that on for the
//! tests of everyone who uses it.
//!
//! The script makes calls of every kind (`get`, `gets`, `gat`, `get_many`, the stores, `cas`,
//! `delete`, `incr`/`decr`, `touch`, `flush_all`, `stats`, and calls the client must refuse),
//! each from a task of its own; it cancels callers at any await point (tiny timeouts, a racing
//! `select!` branch, a future dropped after a number of polls, a task aborted); it moves the
//! clock (tokio's paused clock, so timeouts are exact and runs repeat); and it plays the server
//! over a pipe per connection: it answers some requests, sends part of an answer, closes the
//! connection, refuses the next connects, and, in a lying session, sends bytes of its own
//! choosing. After the script the server behaves and serves everything.
//!
//! What every script must keep true (a violation panics, which the fuzzer reports):
//!
//! * while the server has told no lie, a caller receives exactly the typed result of its own
//!   call (a miss is `None`, `NOT_STORED` to a `set` is [`Error::Server`] of kind
//!   [`NotStored`](memcached_autodiscovery::ServerErrorKind::NotStored), a `SERVER_ERROR` is
//!   [`Error::Server`] of its kind), or a timeout, I/O or node-down error; never a protocol
//!   error, never an error no connection gives;
//! * a call the client must refuse (a key with a space, a value over the maximum size) returns
//!   [`Error::Invalid`] and sends nothing; a valid call is never refused;
//! * no caller waits longer than the request timeout (plus 2 ms of timer rounding);
//! * the client writes nothing but the whole requests of the calls made, byte for byte as the
//!   harness writes them itself, and dials no other target than its node;
//! * a request that is not idempotent reaches the server at most once, however often the
//!   connection broke (by key for keyed requests; `flush_all` no more often than it was called);
//! * whatever came before, once the server behaves the client serves again;
//! * when the last clone of the client is dropped, its connection is closed, after whole
//!   requests only.
//!
//! The harness owns none of this behaviour; it only watches the client from outside, through
//! its public API and the [`Dial`] seam.
//!
//! ```
//! use memcached_autodiscovery_harness::{
//!     connection_session, Cancel, Kind, Op, ScriptBuilder, Setup,
//! };
//!
//! let setup = Setup { lies: false, queue_depth: 8, timeout_ms: 101, pipe_capacity: 1021 };
//! let script = ScriptBuilder::new(setup)
//!     .then(Op::Call { kind: Kind::Gets, keys: 1, cancel: Cancel::Never })
//!     .then(Op::Call { kind: Kind::Get, keys: 1, cancel: Cancel::AfterPolls(1) })
//!     .then(Op::Yield(7))
//!     .then(Op::ServeAll)
//!     .build();
//! let report = connection_session(&script);
//! assert_eq!((report.calls, report.checked, report.cancelled), (2, 1, 1));
//! ```
//!
//! The file is just over 500 lines: the session's steps and its final checks belong together.
//!
//! [`Dial`]: memcached_autodiscovery::transport::Dial
//! [`Error::Server`]: memcached_autodiscovery::Error::Server
//! [`Error::Invalid`]: memcached_autodiscovery::Error::Invalid

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod caller;
mod memory;
mod script;
mod server;

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use memcached_autodiscovery::Client;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use caller::{lock, yield_times, Caller, Tally, TIMER_SLACK};
use memory::MemoryDialer;
use script::Reader;
pub use script::{Cancel, Op, ScriptBuilder, Setup};
pub use server::Kind;
use server::{read_request, reply_bytes, Asked, MAX_VALUE, NODE};

/// Callers a script may start; later call steps are skipped.
const MAX_CALLERS: usize = 256;

/// What one session did, for tests that check a script exercised what it was written for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// Calls started by the script (the final check not included).
    pub calls: usize,
    /// Calls that returned their own modelled result (a server error or a refusal among them).
    pub checked: usize,
    /// Calls that ended in an error other than their modelled answer (timeout, I/O, node down,
    /// or a protocol error after a lie).
    pub errors: usize,
    /// Calls cancelled by the script (timeout, racing branch, dropped future, aborted task).
    pub cancelled: usize,
    /// Calls the client refused before sending anything, as it must ([`Kind::Invalid`]).
    pub refused: usize,
    /// Connections the client opened.
    pub connections: usize,
    /// Requests the server read, over all connections.
    pub requests_read: usize,
    /// Whether the server lied (sent bytes of the script's choosing).
    pub lied: bool,
}

/// Plays one script (any bytes; see [`Setup`] and [`Op`] for what they mean); panics if the
/// client broke one of its promises (see the module docs).
pub fn connection_session(script: &[u8]) -> SessionReport {
    let (mut script, setup) = Reader::new(script);
    let request_timeout = setup.request_timeout();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async move {
        let dialer = MemoryDialer::new(usize::from(setup.pipe_capacity));
        let client = Client::builder()
            .nodes([NODE])
            .dialer(dialer.clone())
            .connect_timeout(Duration::from_millis(100))
            .request_timeout(request_timeout)
            .queue_depth(usize::from(setup.queue_depth))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(80))
            .max_value_size(MAX_VALUE)
            .build()
            .await
            .expect("a client over one static node");
        let mut session = Session {
            dialer,
            client: Some(client),
            request_timeout,
            server: None,
            next_id: 0,
            issued: HashMap::new(),
            flushes: (0, 0),
            callers: Vec::new(),
            lied: Arc::new(AtomicBool::new(false)),
            report: SessionReport::default(),
            outcomes: Tally::default(),
            read_once: HashSet::new(),
        };
        while !script.is_empty() {
            session.accept_and_read();
            let op = Op::read(&mut script, &setup);
            session.step(op).await;
        }
        session.finish().await
    })
}

/// The server end of the connection the client has open, as the harness plays it.
struct ServerEnd {
    pipe: DuplexStream,
    /// Bytes read and not yet a whole request.
    unread: BytesMut,
    /// Requests read and not yet answered, oldest first.
    asked: VecDeque<Asked>,
    /// Answer bytes not yet written.
    out: Vec<u8>,
    /// The client closed its end.
    closed: bool,
    /// The server lied on this connection.
    tainted: bool,
}

struct Session {
    dialer: MemoryDialer,
    /// The script's clone of the client; taken at the end to see the connection go.
    client: Option<Client>,
    request_timeout: Duration,
    server: Option<ServerEnd>,
    next_id: u64,
    /// Every call made, by the id of its first key.
    issued: HashMap<u64, Asked>,
    /// `flush_all` calls made, and `flush_all` requests read.
    flushes: (usize, usize),
    callers: Vec<JoinHandle<()>>,
    lied: Arc<AtomicBool>,
    report: SessionReport,
    outcomes: Tally,
    /// Ids of the keys of requests read that are not idempotent.
    read_once: HashSet<u64>,
}

impl Session {
    /// One step of the script.
    async fn step(&mut self, op: Op) {
        match op {
            Op::Call { kind, keys, cancel } => self.call(kind, keys, cancel),
            Op::Answer(count) => self.answer(usize::from(count)),
            Op::Flush(limit) => {
                self.flush(limit.map_or(usize::MAX, usize::from)).await;
            }
            Op::Sleep(ms) => tokio::time::sleep(Duration::from_millis(u64::from(ms))).await,
            Op::Yield(turns) => yield_times(turns).await,
            Op::Close => self.server = None,
            Op::Refuse(count) => self.dialer.refuse(u32::from(count)),
            Op::Abort(i) => {
                if let Some(caller) = self.callers.get(usize::from(i) % self.callers.len().max(1)) {
                    if !caller.is_finished() {
                        caller.abort();
                        lock(&self.outcomes).cancelled += 1;
                    }
                }
            }
            Op::Lie(bytes) => {
                if let Some(server) = &mut self.server {
                    server.tainted = true;
                    self.lied.store(true, Ordering::SeqCst);
                    self.report.lied = true;
                    server.out.extend_from_slice(&bytes);
                }
                self.flush(usize::MAX).await;
            }
            Op::ServeAll => self.serve_all().await,
        }
    }

    /// A caller for a call of `kind` on `keys` fresh keys.
    fn caller(&mut self, kind: Kind, keys: u8, cancel: Cancel) -> Option<Caller> {
        let client = self.client.as_ref()?.clone();
        let ids: Vec<u64> = (self.next_id..self.next_id + u64::from(keys)).collect();
        self.next_id += u64::from(keys) + 1;
        if kind == Kind::FlushAll {
            self.flushes.0 += 1;
        }
        if let Some(&first) = ids.first() {
            self.issued.insert(
                first,
                Asked {
                    kind,
                    ids: ids.clone(),
                },
            );
        }
        Some(Caller {
            client,
            kind,
            ids,
            cancel,
            request_timeout: self.request_timeout,
            lied: self.lied.clone(),
            outcomes: self.outcomes.clone(),
        })
    }

    /// Starts a caller task.
    fn call(&mut self, kind: Kind, keys: u8, cancel: Cancel) {
        if self.callers.len() >= MAX_CALLERS {
            return;
        }
        let Some(caller) = self.caller(kind, keys, cancel) else {
            return;
        };
        self.report.calls += 1;
        self.callers.push(tokio::spawn(caller.run()));
    }

    /// Takes the newest connection the client opened (an older one it has given up on), and
    /// reads every whole request it has written so far.
    /// Returns how many bytes it read.
    fn accept_and_read(&mut self) -> usize {
        if let Some(stray) = self.dialer.stray() {
            panic!("the client dialed {stray}, not its one node {NODE}");
        }
        while let Some(pipe) = self.dialer.accept() {
            self.report.connections += 1;
            self.server = Some(ServerEnd {
                pipe,
                unread: BytesMut::new(),
                asked: VecDeque::new(),
                out: Vec::new(),
                closed: false,
                tainted: false,
            });
        }
        let Some(server) = &mut self.server else {
            return 0;
        };
        let mut chunk = [0u8; 4096];
        let mut read = 0;
        while !server.closed {
            match poll_once_read(&mut server.pipe, &mut chunk) {
                Some(Ok(0)) | Some(Err(_)) => server.closed = true,
                Some(Ok(n)) => {
                    server.unread.extend_from_slice(&chunk[..n]);
                    read += n;
                }
                None => break,
            }
        }
        loop {
            match read_request(&server.unread, &self.issued) {
                Ok(Some((asked, used))) => {
                    let _ = server.unread.split_to(used);
                    if !asked.kind.is_idempotent() {
                        for &id in &asked.ids {
                            assert!(
                                self.read_once.insert(id),
                                "{:?} k{id} reached the server twice; it is not idempotent",
                                asked.kind
                            );
                        }
                    }
                    if asked.kind == Kind::FlushAll {
                        self.flushes.1 += 1;
                        assert!(
                            self.flushes.1 <= self.flushes.0,
                            "flush_all reached the server {} times; it was called {} times",
                            self.flushes.1,
                            self.flushes.0
                        );
                    }
                    server.asked.push_back(asked);
                    self.report.requests_read += 1;
                }
                Ok(None) => break,
                Err(e) => panic!("the client wrote bytes that are no request of a call: {e}"),
            }
        }
        read
    }

    /// Queues the answers to the next `count` requests read.
    fn answer(&mut self, count: usize) {
        if let Some(server) = &mut self.server {
            for _ in 0..count {
                let Some(asked) = server.asked.pop_front() else {
                    break;
                };
                server.out.extend(reply_bytes(asked.kind, &asked.ids));
            }
        }
    }

    /// Writes up to `limit` bytes of the queued answers, as much as the pipe takes now;
    /// returns how many it wrote.
    async fn flush(&mut self, limit: usize) -> usize {
        let Some(server) = &mut self.server else {
            return 0;
        };
        let mut left = limit;
        while left > 0 && !server.out.is_empty() {
            let end = left.min(server.out.len());
            match poll_once_write(&mut server.pipe, &server.out[..end]) {
                Some(Ok(n)) if n > 0 => {
                    server.out.drain(..n);
                    left -= n;
                }
                Some(_) => {
                    server.closed = true;
                    server.out.clear();
                }
                None => {
                    // The pipe is full: let the client read.
                    tokio::task::yield_now().await;
                    break;
                }
            }
        }
        limit - left
    }

    /// Reads, answers and writes everything there is, without moving the clock, until the
    /// client has nothing more to say (a small pipe takes many turns).
    async fn serve_all(&mut self) {
        let mut idle_turns = 0;
        for _ in 0..100_000 {
            let read = self.accept_and_read();
            self.answer(usize::MAX);
            let written = self.flush(usize::MAX).await;
            tokio::task::yield_now().await;
            if read == 0 && written == 0 {
                idle_turns += 1;
                if idle_turns == 3 {
                    return;
                }
            } else {
                idle_turns = 0;
            }
        }
    }

    /// After the script: the server behaves. Every caller must be done by its deadline, the
    /// client must serve a new call correctly, and dropping its last clone must close the
    /// connection.
    async fn finish(mut self) -> SessionReport {
        self.dialer.refuse(0);
        if self.server.as_ref().is_some_and(|s| s.tainted) {
            self.server = None; // the only way past a lie: drop the connection it was told on
        }
        // Serve for longer than any deadline and any backoff, so every caller has ended and
        // the node is not left marked down. Once every caller is done, the rest is a wait.
        let quiet = self.request_timeout * 2 + Duration::from_millis(200);
        let until = Instant::now() + quiet;
        while Instant::now() < until {
            self.serve_all().await;
            if self.callers.iter().all(JoinHandle::is_finished) {
                tokio::time::sleep_until(until).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for caller in std::mem::take(&mut self.callers) {
            assert!(
                caller.is_finished(),
                "a caller is still waiting {quiet:?} after the script ended (request timeout {:?})",
                self.request_timeout
            );
            if let Err(e) = caller.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        self.lied.store(false, Ordering::SeqCst);

        // The client serves again: one more call, with the server answering.
        let Some(final_call) = self.caller(Kind::GetMany, 2, Cancel::Never) else {
            panic!("the session's client is gone before its end");
        };
        let Some(client) = self.client.take() else {
            panic!("the session's client is gone before its end");
        };
        drop(client);
        let final_call = Caller {
            outcomes: Tally::default(),
            ..final_call
        };
        let handle = tokio::spawn(final_call.clone().run_once());
        let until = Instant::now() + self.request_timeout + TIMER_SLACK;
        while !handle.is_finished() && Instant::now() < until {
            self.serve_all().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                panic!("the client does not serve again once the server behaves: {e}")
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the final call did not finish: {e}"),
        }

        // The last clone goes: the client must close its connection, after whole requests.
        drop(final_call);
        let until = Instant::now() + Duration::from_millis(50);
        loop {
            self.accept_and_read();
            if let Some(server) = self.server.as_ref().filter(|s| s.closed) {
                assert!(
                    server.unread.is_empty(),
                    "the client closed its connection with part of a request written: {:?}",
                    server.unread
                );
            }
            if self.server.as_ref().map_or(true, |s| s.closed) {
                break;
            }
            assert!(
                Instant::now() < until,
                "the connection outlived the last clone of its client"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let outcomes = lock(&self.outcomes);
        SessionReport {
            checked: outcomes.checked,
            errors: outcomes.errors,
            cancelled: outcomes.cancelled,
            refused: outcomes.refused,
            ..self.report
        }
    }
}

/// Reads what the pipe holds now, without waiting: `None` when it holds nothing yet.
fn poll_once_read(pipe: &mut DuplexStream, chunk: &mut [u8]) -> Option<std::io::Result<usize>> {
    let waker = no_wake();
    let mut cx = Context::from_waker(&waker);
    let mut buf = ReadBuf::new(chunk);
    match Pin::new(pipe).poll_read(&mut cx, &mut buf) {
        Poll::Ready(Ok(())) => Some(Ok(buf.filled().len())),
        Poll::Ready(Err(e)) => Some(Err(e)),
        Poll::Pending => None,
    }
}

/// Writes what the pipe takes now, without waiting: `None` when it is full.
fn poll_once_write(pipe: &mut DuplexStream, bytes: &[u8]) -> Option<std::io::Result<usize>> {
    let waker = no_wake();
    let mut cx = Context::from_waker(&waker);
    match Pin::new(pipe).poll_write(&mut cx, bytes) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}

/// A waker for polls the harness repeats on its own schedule.
fn no_wake() -> Waker {
    struct NoWake;
    impl Wake for NoWake {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(NoWake))
}
