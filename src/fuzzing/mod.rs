//! A harness that drives one connection task (the per-socket task behind [`crate::Client`])
//! through a script of bytes, for the fuzz target `connection` and the regression tests made
//! from its findings. Feature `fuzzing`; not a public API and outside semver.
//!
//! The script sends requests of every kind, cancels callers at any await point (tiny timeouts,
//! a racing `select!` branch, a future dropped after sending, a task aborted), moves the clock
//! (tokio's paused clock, so timeouts are exact and runs repeat), and plays the server over an
//! in-memory pipe per connection: it answers some requests, sends part of an answer, closes
//! the connection, refuses the next connects, and, in a lying session, sends bytes of its own
//! choosing. After the script the server behaves and serves everything.
//!
//! What every script must keep true (a violation panics, which the fuzzer reports):
//!
//! * while the server has told no lie, a caller receives exactly the reply to its own request
//!   or an error, never a protocol error;
//! * no caller waits longer than the request timeout;
//! * whatever came before, once the server behaves the connection serves again, and the
//!   client never writes a byte that is not part of a whole, well-formed request;
//! * a request that is not idempotent reaches the server at most once, however often the
//!   connection broke;
//! * when the last handle is dropped, the task closes its connection and ends.
//!
//! The harness owns none of this behaviour; it only watches `crate::connection` from
//! outside, through the same calls the client makes.

mod memory;
mod script;
mod server;

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::connection::{Connection, ConnectionSettings, Target};
use crate::error::Error;
use crate::protocol::Limits;

pub(crate) use memory::MemoryDialer;
use script::Reader;
pub use script::{Cancel, Op, ScriptBuilder, Setup};
pub use server::Kind;
use server::{expected_response, read_request, reply_bytes, Asked};

/// How late a caller may finish after its deadline: tokio's timers round up to the next
/// millisecond.
const TIMER_SLACK: Duration = Duration::from_millis(2);
/// Small limits, so that short scripts reach them.
const LIMITS: Limits = Limits {
    max_value_len: 4096,
    max_line_len: 256,
};
/// Callers a script may start; later call steps are skipped.
const MAX_CALLERS: usize = 256;

/// What one session did, for tests that check a script exercised what it was written for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// Requests started by the script (the final check not included).
    pub calls: usize,
    /// Replies received and found to be the reply to the caller's own request.
    pub checked: usize,
    /// Calls that ended in an error.
    pub errors: usize,
    /// Calls cancelled by the script (timeout, racing branch, dropped future, aborted task).
    pub cancelled: usize,
    /// Connections the client opened.
    pub connections: usize,
    /// Requests the server read, over all connections.
    pub requests_read: usize,
    /// Whether the server lied (sent bytes of the script's choosing).
    pub lied: bool,
}

/// Plays one script (any bytes; see [`Setup`] and [`Op`] for what they mean); panics if the
/// connection broke one of its promises (see the module docs).
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
        let settings = ConnectionSettings {
            connect_timeout: Duration::from_millis(100),
            request_timeout,
            limits: LIMITS,
            queue_depth: usize::from(setup.queue_depth),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(80),
            #[cfg(feature = "tls")]
            tls: None,
        };
        let connection = Connection::spawn(
            Arc::from("memory-node"),
            Target::Memory(dialer.clone()),
            Arc::new(settings),
        );
        let mut session = Session {
            dialer,
            connection: Some(connection),
            request_timeout,
            server: None,
            next_id: 0,
            callers: Vec::new(),
            lied: Arc::new(AtomicBool::new(false)),
            report: SessionReport::default(),
            outcomes: Arc::default(),
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

/// How each caller ended, tallied into the report.
#[derive(Default)]
struct Outcomes {
    checked: usize,
    errors: usize,
    cancelled: usize,
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
    /// The script's handle; taken at the end to see the task go.
    connection: Option<Connection>,
    request_timeout: Duration,
    server: Option<ServerEnd>,
    next_id: u64,
    callers: Vec<JoinHandle<()>>,
    lied: Arc<AtomicBool>,
    report: SessionReport,
    outcomes: Arc<std::sync::Mutex<Outcomes>>,
    /// Ids of the requests read that are not idempotent.
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
                        self.lock_outcomes().cancelled += 1;
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

    fn lock_outcomes(&self) -> std::sync::MutexGuard<'_, Outcomes> {
        self.outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a caller for a request of `kind` on `keys` fresh keys.
    fn call(&mut self, kind: Kind, keys: u8, cancel: Cancel) {
        let Some(connection) = &self.connection else {
            return;
        };
        if self.callers.len() >= MAX_CALLERS {
            return;
        }
        let ids: Vec<u64> = (self.next_id..self.next_id + u64::from(keys)).collect();
        self.next_id += u64::from(keys) + 1;
        self.report.calls += 1;
        let caller = Caller {
            connection: connection.clone(),
            kind,
            ids,
            cancel,
            request_timeout: self.request_timeout,
            lied: self.lied.clone(),
            outcomes: self.outcomes.clone(),
        };
        self.callers.push(tokio::spawn(caller.run()));
    }

    /// Takes the newest connection the client opened (an older one it has given up on), and
    /// reads every whole request it has written so far.
    /// Returns how many bytes it read.
    fn accept_and_read(&mut self) -> usize {
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
            match read_request(&server.unread) {
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
                    server.asked.push_back(asked);
                    self.report.requests_read += 1;
                }
                Ok(None) => break,
                Err(e) => panic!("the client wrote bytes that are no request: {e}"),
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
    /// connection must serve a new request correctly, and dropping the last handle must end
    /// the task and close its connection.
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

        // The connection serves again: one more request, with the server answering.
        let Some(connection) = self.connection.take() else {
            panic!("the session's connection handle is gone before its end");
        };
        let final_call = Caller {
            connection,
            kind: Kind::Get,
            ids: vec![self.next_id, self.next_id + 1],
            cancel: Cancel::Never,
            request_timeout: self.request_timeout,
            lied: self.lied.clone(),
            outcomes: Arc::default(),
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
                panic!("the connection does not serve again once the server behaves: {e}")
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the final request did not finish: {e}"),
        }

        // The last handle goes: the task must close its connection and end.
        drop(final_call);
        let until = Instant::now() + Duration::from_millis(50);
        loop {
            self.accept_and_read();
            if self.server.as_ref().map_or(true, |s| s.closed) {
                break;
            }
            assert!(
                Instant::now() < until,
                "the connection task outlived its last handle"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let outcomes = self.lock_outcomes();
        SessionReport {
            checked: outcomes.checked,
            errors: outcomes.errors,
            cancelled: outcomes.cancelled,
            ..self.report
        }
    }
}

/// One caller of the script: sends its request, maybe gives up, checks what it got.
#[derive(Clone)]
struct Caller {
    connection: Connection,
    kind: Kind,
    ids: Vec<u64>,
    cancel: Cancel,
    request_timeout: Duration,
    lied: Arc<AtomicBool>,
    outcomes: Arc<std::sync::Mutex<Outcomes>>,
}

impl Caller {
    async fn run(self) {
        let _ = self.run_once().await;
    }

    /// `Err` when the call failed (its error already judged).
    async fn run_once(self) -> Result<(), Error> {
        let (frame, expect, idempotent) = server::encode(self.kind, &self.ids, &LIMITS);
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        let connection = &self.connection;
        let whole = |frame| async move {
            let reply = connection.send(frame, expect, idempotent, deadline).await?;
            connection.reply(reply).await
        };
        let outcome = match self.cancel {
            Cancel::Never => Some(whole(frame).await),
            Cancel::AfterSend => {
                let _ = connection.send(frame, expect, idempotent, deadline).await;
                None
            }
            Cancel::Timeout(ms) => {
                let after = Duration::from_millis(u64::from(ms));
                tokio::time::timeout(after, whole(frame)).await.ok()
            }
            Cancel::Race(turns) => {
                tokio::select! {
                    biased;
                    () = yield_times(turns) => None,
                    result = whole(frame) => Some(result),
                }
            }
        };
        let waited = started.elapsed();
        assert!(
            waited <= self.request_timeout + TIMER_SLACK,
            "{:?} {:?} waited {waited:?}; the request timeout is {:?}",
            self.kind,
            self.ids,
            self.request_timeout
        );
        let mut outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(result) = outcome else {
            outcomes.cancelled += 1;
            return Ok(());
        };
        let honest = !self.lied.load(Ordering::SeqCst);
        match result {
            Ok(response) => {
                if honest {
                    let expected = expected_response(self.kind, &self.ids);
                    assert_eq!(
                        response, expected,
                        "{:?} {:?} received a reply that is not its own",
                        self.kind, self.ids
                    );
                    outcomes.checked += 1;
                }
                Ok(())
            }
            Err(e) => {
                outcomes.errors += 1;
                match &e {
                    Error::Invalid(_) => panic!("a valid request was refused: {e}"),
                    Error::Protocol { .. } if honest => {
                        panic!("a protocol error while the server told no lie: {e}")
                    }
                    _ => {}
                }
                Err(e)
            }
        }
    }
}

async fn yield_times(turns: u8) {
    for _ in 0..turns {
        tokio::task::yield_now().await;
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
