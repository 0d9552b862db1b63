//! A model of one pipelined connection and its successors, run against
//! `memcached_autodiscovery_proto::pipeline::Pipeline` one operation at a time.
//!
//! Shared by the property tests (`tests/pipeline.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/pipeline.rs`, which includes this file by path). Every operation is
//! applied to the pipeline and to the model, and the two are compared after each step:
//!
//! * every caller is answered exactly once, except a caller whose request `push` refused
//!   because it had left: that one is dropped unanswered, and nothing of its request is written;
//! * the bytes written are exactly the frames of the taken requests, in order;
//! * replies are handed out oldest first, and while the server told no lie each caller gets the
//!   reply to its own request (keys, values, numbers and versions carry the request's id);
//! * the oldest request's deadline is the connection's;
//! * `close` replays exactly the requests the rule allows and fails all others with its error.
//!
//! When the connection breaks, a new one takes its replayed requests first, as the socket task
//! does, on the next operation that needs a connection (so a caller may leave meanwhile).
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::pipeline::{
    Break, Caller, Pending, Pipeline, MAX_IN_FLIGHT, MAX_WRITE_BATCH,
};
use memcached_autodiscovery_proto::protocol::{
    ErrorReply, Expect, Item, Limits, Request, Response, Retrieval, StoreMode,
};

// ---- Callers ----

/// What the callers of one run were told, in the order they were told it.
#[derive(Default)]
pub struct Board {
    /// Every answer: the caller's id and its outcome.
    pub answers: RefCell<Vec<(usize, Result<Response, Error>)>>,
    /// Callers dropped without an answer.
    pub dropped: RefCell<Vec<usize>>,
}

impl Board {
    /// The answers given from index `from` on.
    pub fn answers_since(&self, from: usize) -> Vec<(usize, Result<Response, Error>)> {
        self.answers.borrow()[from..].to_vec()
    }

    /// How many answers were given so far.
    pub fn answer_count(&self) -> usize {
        self.answers.borrow().len()
    }

    /// How many answers caller `id` got.
    pub fn answers_of(&self, id: usize) -> usize {
        self.answers
            .borrow()
            .iter()
            .filter(|(i, _)| *i == id)
            .count()
    }

    /// How many times caller `id` was dropped unanswered (0 or 1).
    pub fn drops_of(&self, id: usize) -> usize {
        self.dropped.borrow().iter().filter(|i| **i == id).count()
    }
}

/// A caller that writes what it is told on a [`Board`], and notes there when it is dropped
/// without an answer.
pub struct Probe {
    /// The request's id.
    pub id: usize,
    gone: Rc<Cell<bool>>,
    board: Rc<Board>,
    answered: bool,
}

impl Probe {
    /// A caller for request `id`, and the switch that makes it leave.
    pub fn new(id: usize, board: &Rc<Board>) -> (Probe, Rc<Cell<bool>>) {
        let gone = Rc::new(Cell::new(false));
        let probe = Probe {
            id,
            gone: Rc::clone(&gone),
            board: Rc::clone(board),
            answered: false,
        };
        (probe, gone)
    }
}

impl Caller for Probe {
    type Error = Error;

    fn is_gone(&self) -> bool {
        self.gone.get()
    }

    fn answer(mut self, outcome: Result<Response, Error>) {
        self.answered = true;
        self.board.answers.borrow_mut().push((self.id, outcome));
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.answered {
            self.board.dropped.borrow_mut().push(self.id);
        }
    }
}

// ---- Requests and their honest replies ----

/// The kinds of request the model sends. Each reply carries the request's id where the
/// protocol allows it (keys, values, flags, CAS tokens, numbers, versions, stats); status replies
/// alternate with the id, so that a reply shifted by one place is visible too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    GetMulti,
    Gets,
    Set,
    Add,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Version,
    Stats,
    FlushAll,
}

/// Every kind, for choosing one from a number.
pub const KINDS: [Kind; 13] = [
    Kind::Get,
    Kind::GetMulti,
    Kind::Gets,
    Kind::Set,
    Kind::Add,
    Kind::Cas,
    Kind::Delete,
    Kind::Incr,
    Kind::Decr,
    Kind::Touch,
    Kind::Version,
    Kind::Stats,
    Kind::FlushAll,
];

impl Kind {
    /// The encoded request `id` of this kind (through [`Request::encode`]) and the reply kind
    /// it expects.
    pub fn frame(self, id: usize) -> (Bytes, Expect) {
        let key = format!("k{id}");
        let key2 = format!("k{id}b");
        let value = format!("v{id}");
        let keys: [&[u8]; 2] = [key.as_bytes(), key2.as_bytes()];
        let (key, value) = (key.as_bytes(), value.as_bytes());
        let store = |mode| Request::Store {
            mode,
            key,
            flags: id as u32,
            exptime: 60,
            value,
        };
        let request = match self {
            Kind::Get => Request::Retrieve {
                kind: Retrieval::Get,
                keys: &keys[..1],
            },
            Kind::GetMulti => Request::Retrieve {
                kind: Retrieval::Get,
                keys: &keys[..],
            },
            Kind::Gets => Request::Retrieve {
                kind: Retrieval::Gets,
                keys: &keys[..1],
            },
            Kind::Set => store(StoreMode::Set),
            Kind::Add => store(StoreMode::Add),
            Kind::Cas => Request::Cas {
                key,
                flags: 0,
                exptime: 0,
                value,
                cas: id as u64,
            },
            Kind::Delete => Request::Delete { key },
            Kind::Incr => Request::Incr { key, delta: 1 },
            Kind::Decr => Request::Decr { key, delta: 1 },
            Kind::Touch => Request::Touch { key, exptime: 60 },
            Kind::Version => Request::Version,
            Kind::Stats => Request::Stats { arg: None },
            Kind::FlushAll => Request::FlushAll { delay: None },
        };
        let mut buf = BytesMut::new();
        let expect = request
            .encode(&mut buf, &Limits::default())
            .expect("the model's requests are valid");
        (buf.freeze(), expect)
    }

    /// The honest server's reply to request `id` of this kind (an error reply if `error`): its
    /// bytes, and what it decodes to.
    pub fn reply(self, id: usize, error: bool) -> (Vec<u8>, Response) {
        if error {
            return if id % 2 == 0 {
                (
                    format!("SERVER_ERROR e{id}\r\n").into_bytes(),
                    Response::Error(ErrorReply::Server(format!("e{id}"))),
                )
            } else {
                (
                    format!("CLIENT_ERROR e{id}\r\n").into_bytes(),
                    Response::Error(ErrorReply::Client(format!("e{id}"))),
                )
            };
        }
        let item = |key: String, flags: u32, cas: Option<u64>| {
            let value = format!("v{id}");
            let header = match cas {
                Some(cas) => format!("VALUE {key} {flags} {} {cas}\r\n", value.len()),
                None => format!("VALUE {key} {flags} {}\r\n", value.len()),
            };
            let bytes = format!("{header}{value}\r\n").into_bytes();
            let item = Item::new(Bytes::from(key), flags, cas, Bytes::from(value));
            (bytes, item)
        };
        let status =
            |line: &str, response: Response| (format!("{line}\r\n").into_bytes(), response);
        let stores = [
            ("STORED", Response::Stored),
            ("NOT_STORED", Response::NotStored),
            ("EXISTS", Response::Exists),
            ("NOT_FOUND", Response::NotFound),
        ];
        match self {
            Kind::Get | Kind::Gets | Kind::GetMulti => {
                let cas = (self == Kind::Gets).then_some(id as u64 + 1000);
                let mut items = vec![item(format!("k{id}"), id as u32, cas)];
                if self == Kind::GetMulti {
                    items.push(item(format!("k{id}b"), 7, None));
                }
                let mut bytes = Vec::new();
                let mut values = Vec::new();
                for (b, i) in items {
                    bytes.extend_from_slice(&b);
                    values.push(i);
                }
                bytes.extend_from_slice(b"END\r\n");
                (bytes, Response::Values(values))
            }
            Kind::Set | Kind::Add | Kind::Cas => {
                let (line, response) = stores[id % stores.len()].clone();
                status(line, response)
            }
            Kind::Delete if id % 2 == 0 => status("DELETED", Response::Deleted),
            Kind::Touch if id % 2 == 0 => status("TOUCHED", Response::Touched),
            Kind::Delete | Kind::Touch => status("NOT_FOUND", Response::NotFound),
            Kind::Incr | Kind::Decr => status(&id.to_string(), Response::Number(id as u64)),
            Kind::Version => status(
                &format!("VERSION 1.6.{id}"),
                Response::Version(format!("1.6.{id}")),
            ),
            Kind::Stats => (
                format!("STAT id {id}\r\nSTAT pid 1\r\nEND\r\n").into_bytes(),
                Response::Stats(vec![
                    ("id".into(), id.to_string()),
                    ("pid".into(), "1".into()),
                ]),
            ),
            Kind::FlushAll => status("OK", Response::Ok),
        }
    }
}

/// What a failed request is answered with in the model: the break that failed it (a driver's
/// own error type stands here; the pipeline only clones it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub Break);

/// The error [`Pipeline::close`] is given for `why`.
pub fn error_for(why: Break) -> Error {
    Error(why)
}

/// Whether `outcome` is the error `expected`.
pub fn is_error(outcome: &Result<Response, Error>, expected: &Error) -> bool {
    matches!(outcome, Err(e) if e == expected)
}

// ---- Operations ----

/// One step of a run.
#[derive(Debug, Clone)]
pub enum Op {
    /// A caller sends a request of `kind` with this idempotent flag (given to `Pending::new` as
    /// is, whatever the kind), having already left if `left`; the honest server answers it with
    /// an error reply if `error_reply`. Its deadline is `timeout_ms` after the run's start.
    Push {
        kind: Kind,
        idempotent: bool,
        left: bool,
        error_reply: bool,
        timeout_ms: u16,
    },
    /// The socket accepts up to this many of the unwritten bytes.
    Write(usize),
    /// The honest server's next bytes, at most this many, arrive (only replies to requests it
    /// has wholly received).
    Feed(usize),
    /// These bytes arrive from the server, whatever they are.
    Lie(Vec<u8>),
    /// The caller of the request with this index (modulo the number of requests) leaves.
    Leave(usize),
    /// The connection breaks.
    Close(Break),
}

/// Reads an operation sequence from arbitrary bytes (the fuzz target's input format).
///
/// Each operation starts with a byte whose low 3 bits choose it; the following bytes are its
/// arguments (missing bytes read as 0).
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    let mut bytes = data.iter().copied();
    let mut ops = Vec::new();
    while let Some(head) = bytes.next() {
        let mut next = || bytes.next().unwrap_or(0);
        let op = match head & 7 {
            0 | 1 => {
                let a = next();
                let b = next();
                Op::Push {
                    kind: KINDS[usize::from(a) % KINDS.len()],
                    idempotent: head & 0x08 != 0,
                    left: head & 0x30 == 0x30,
                    error_reply: b & 0xc0 == 0xc0,
                    timeout_ms: u16::from(b & 0x3f) * 16 + u16::from(a >> 4),
                }
            }
            2 => Op::Write(if head & 0x08 != 0 {
                usize::MAX
            } else {
                usize::from(next())
            }),
            3 => Op::Feed(if head & 0x08 != 0 {
                usize::MAX
            } else {
                usize::from(next()) % 64 + 1
            }),
            4 => {
                let len = usize::from(head >> 3);
                Op::Lie((0..len).map(|_| next()).collect())
            }
            5 => Op::Leave(usize::from(next())),
            6 => Op::Close(match (head >> 3) % 3 {
                0 => Break::Socket,
                1 => Break::Timeout,
                _ => Break::Protocol,
            }),
            _ => {
                // Lines a server sends, for the fuzzer to splice in whole.
                let lines: [&[u8]; 8] = [
                    b"STORED\r\n",
                    b"END\r\n",
                    b"ERROR\r\n",
                    b"SERVER_ERROR busy\r\n",
                    b"DELETED\r\n",
                    b"VALUE k0 0 2\r\nv0\r\nEND\r\n",
                    b"7\r\n",
                    b"NOT_FOUND\r\n",
                ];
                Op::Lie(lines[usize::from(head >> 3) % lines.len()].to_vec())
            }
        };
        ops.push(op);
    }
    ops
}

// ---- The model ----

/// One request of a run.
struct Req {
    kind: Kind,
    frame: Bytes,
    expect: Expect,
    idempotent: bool,
    deadline: Instant,
    gone: Rc<Cell<bool>>,
    reply: Vec<u8>,
    response: Response,
    /// Taken on some connection (`push` said yes at least once).
    taken: bool,
    /// Refused by `push` (its caller had left): it must be dropped unanswered.
    refused: bool,
    /// Given back by `close` for a replay.
    replayed: bool,
}

/// One connection: what was taken, written, read and decoded on it.
struct Conn {
    pipeline: Pipeline<Probe>,
    /// Ids of the requests taken, in order.
    taken: Vec<usize>,
    /// Where each taken request's frame starts in `stream`.
    starts: Vec<usize>,
    /// The frames of the taken requests, in order: what must be written.
    stream: Vec<u8>,
    /// What was written.
    wire: Vec<u8>,
    /// How many taken requests were answered by `dispatch`.
    popped: usize,
    /// How many bytes the server sent.
    fed: usize,
    /// How many bytes of the honest server's replies were sent.
    honest_fed: usize,
    /// Whether every byte the server sent was the honest one.
    honest: bool,
    /// Whether a good (non-error) reply was handed out.
    good: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            pipeline: Pipeline::new(Limits::default()),
            taken: Vec::new(),
            starts: Vec::new(),
            stream: Vec::new(),
            wire: Vec::new(),
            popped: 0,
            fed: 0,
            honest_fed: 0,
            honest: true,
            good: false,
        }
    }
}

/// A run: the requests, their callers' board, the live connection and the requests waiting to
/// be replayed on the next one.
pub struct Model {
    base: Instant,
    board: Rc<Board>,
    reqs: Vec<Req>,
    conn: Conn,
    waiting: Vec<Pending<Probe>>,
    /// Statistics, for the tests to check that runs reach the interesting states.
    pub stats: Stats,
}

/// What happened during a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub pushed: usize,
    pub refused: usize,
    pub ok_answers: usize,
    pub replayed: usize,
    pub replayed_refused: usize,
    pub closes: usize,
    pub protocol_errors: usize,
    pub half_written_at_close: usize,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty run.
    pub fn new() -> Model {
        Model {
            base: Instant::now(),
            board: Rc::new(Board::default()),
            reqs: Vec::new(),
            conn: Conn::new(),
            waiting: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Applies `ops`, then breaks the last connection and checks that every caller was dealt
    /// with. Panics on any difference between the pipeline and the model.
    pub fn run(ops: &[Op]) -> Stats {
        let mut model = Model::new();
        for op in ops {
            model.apply(op);
        }
        model.finish()
    }

    /// Applies one operation and checks the pipeline against the model.
    pub fn apply(&mut self, op: &Op) {
        if !matches!(op, Op::Leave(_)) {
            self.connect();
        }
        match op {
            Op::Push {
                kind,
                idempotent,
                left,
                error_reply,
                timeout_ms,
            } => self.push(*kind, *idempotent, *left, *error_reply, *timeout_ms),
            Op::Write(n) => self.write(*n),
            Op::Feed(n) => self.feed_honest(*n),
            Op::Lie(bytes) => self.lie(bytes),
            Op::Leave(i) => {
                if !self.reqs.is_empty() {
                    let i = i % self.reqs.len();
                    self.reqs[i].gone.set(true);
                }
            }
            Op::Close(why) => self.close(*why),
        }
        self.check();
    }

    /// Breaks the connection for good (a protocol error: nothing is replayed), fails what
    /// waited for a replay, and checks every caller's fate.
    pub fn finish(mut self) -> Stats {
        self.connect();
        self.close(Break::Protocol);
        assert!(self.waiting.is_empty(), "Break::Protocol replays nothing");
        for (id, req) in self.reqs.iter().enumerate() {
            let answers = self.board.answers_of(id);
            let drops = self.board.drops_of(id);
            if req.refused {
                assert_eq!(
                    (answers, drops),
                    (0, 1),
                    "request {id}, refused by push, must be dropped unanswered"
                );
            } else {
                assert!(req.taken, "request {id} neither taken nor refused");
                assert_eq!(
                    (answers, drops),
                    (1, 0),
                    "request {id} must be answered exactly once"
                );
            }
        }
        self.stats
    }

    /// The connection after a break takes the replayed requests first, in order.
    fn connect(&mut self) {
        for p in std::mem::take(&mut self.waiting) {
            let id = p.caller().id;
            let gone = self.reqs[id].gone.get();
            let drops = self.board.drops_of(id);
            assert!(p.is_replay());
            let taken = self.conn.pipeline.push(p);
            self.record_push(id, taken, gone, drops);
            if !taken {
                self.stats.replayed_refused += 1;
            }
        }
    }

    fn push(
        &mut self,
        kind: Kind,
        idempotent: bool,
        left: bool,
        error_reply: bool,
        timeout_ms: u16,
    ) {
        let id = self.reqs.len();
        let (frame, expect) = kind.frame(id);
        let (reply, response) = kind.reply(id, error_reply);
        let (probe, gone) = Probe::new(id, &self.board);
        gone.set(left);
        let deadline = self.base + Duration::from_millis(u64::from(timeout_ms));
        self.reqs.push(Req {
            kind,
            frame: frame.clone(),
            expect,
            idempotent,
            deadline,
            gone,
            reply,
            response,
            taken: false,
            refused: false,
            replayed: false,
        });
        self.stats.pushed += 1;
        let drops = self.board.drops_of(id);
        let pending = Pending::new(frame, expect, deadline, idempotent, probe);
        assert!(!pending.is_replay());
        let taken = self.conn.pipeline.push(pending);
        self.record_push(id, taken, left, drops);
    }

    fn record_push(&mut self, id: usize, taken: bool, gone: bool, drops_before: usize) {
        assert_eq!(
            taken, !gone,
            "push takes a request iff its caller is there (request {id})"
        );
        if taken {
            let req = &mut self.reqs[id];
            req.taken = true;
            self.conn.taken.push(id);
            self.conn.starts.push(self.conn.stream.len());
            self.conn.stream.extend_from_slice(&req.frame);
        } else {
            self.reqs[id].refused = true;
            self.stats.refused += 1;
            assert_eq!(
                self.board.drops_of(id),
                drops_before + 1,
                "a request refused by push is dropped unanswered (request {id})"
            );
        }
    }

    fn write(&mut self, n: usize) {
        let conn = &mut self.conn;
        let unwritten = conn.pipeline.unwritten();
        let n = n.min(unwritten.len());
        conn.wire.extend_from_slice(&unwritten[..n]);
        conn.pipeline.written(n);
        assert_eq!(
            conn.wire[..],
            conn.stream[..conn.wire.len()],
            "bytes written are the frames of the taken requests, in order"
        );
    }

    /// The honest server's replies so far: to every request it has wholly received, in order.
    fn honest_replies(&self) -> Vec<u8> {
        let conn = &self.conn;
        let mut out = Vec::new();
        for (k, &id) in conn.taken.iter().enumerate() {
            if conn.starts[k] + self.reqs[id].frame.len() > conn.wire.len() {
                break;
            }
            out.extend_from_slice(&self.reqs[id].reply);
        }
        out
    }

    fn feed_honest(&mut self, n: usize) {
        let replies = self.honest_replies();
        let from = self.conn.honest_fed;
        let to = from.saturating_add(n).min(replies.len());
        if from == to {
            return;
        }
        let bytes = replies[from..to].to_vec();
        self.conn.honest_fed = to;
        self.feed(&bytes);
    }

    fn lie(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let replies = self.honest_replies();
        let from = self.conn.honest_fed;
        if self.conn.honest && replies.get(from..from + bytes.len()) == Some(bytes) {
            // The "lie" is the truth: what the honest server would have sent next.
            self.conn.honest_fed += bytes.len();
        } else {
            self.conn.honest = false;
        }
        self.feed(bytes);
    }

    /// `bytes` arrive: read them into the pipeline, dispatch, and check who got what.
    fn feed(&mut self, bytes: &[u8]) {
        let before = self.board.answer_count();
        let idle_before = self.conn.pipeline.is_idle();
        let undecoded_before = self.conn.pipeline.undecoded().len();
        self.conn.pipeline.read_buffer().extend_from_slice(bytes);
        self.conn.fed += bytes.len();
        let result = self.conn.pipeline.dispatch();
        assert!(self.conn.pipeline.received_any());
        let answers = self.board.answers_since(before);
        let conn = &mut self.conn;
        for (k, (id, outcome)) in answers.iter().enumerate() {
            let front = conn.popped + k;
            assert!(
                front < conn.taken.len(),
                "an answer ({id}) with no request in flight"
            );
            assert_eq!(
                *id, conn.taken[front],
                "a reply goes to the oldest request in flight"
            );
            let response = match outcome {
                Ok(r) => r,
                Err(e) => panic!("dispatch answered request {id} with an error: {e:?}"),
            };
            if conn.honest {
                assert_eq!(
                    response, &self.reqs[*id].response,
                    "request {id} got another request's reply"
                );
            }
            conn.good |= !matches!(response, Response::Error(_));
            self.stats.ok_answers += 1;
        }
        conn.popped += answers.len();
        match result {
            Ok(()) => {
                assert!(
                    !idle_before,
                    "bytes with no request in flight must be a protocol error"
                );
                if conn.honest {
                    // Exactly the complete replies were handed out; the rest waits.
                    let mut end = 0;
                    let mut complete = 0;
                    let replies = {
                        let mut all = Vec::new();
                        for &id in &conn.taken {
                            all.extend_from_slice(&self.reqs[id].reply);
                            let len = self.reqs[id].reply.len();
                            if end + len <= conn.honest_fed {
                                end += len;
                                complete += 1;
                            } else {
                                break;
                            }
                        }
                        all
                    };
                    assert_eq!(conn.popped, complete, "every complete reply is dispatched");
                    assert_eq!(
                        conn.pipeline.undecoded(),
                        &replies[end..conn.honest_fed],
                        "the partial reply waits for more bytes"
                    );
                }
                if conn.pipeline.is_idle() {
                    assert!(
                        conn.pipeline.undecoded().is_empty(),
                        "bytes with no request in flight must be a protocol error"
                    );
                }
            }
            Err(e) => {
                assert!(
                    !conn.honest,
                    "the honest server's replies gave a protocol error: {e}"
                );
                assert!(
                    !conn.pipeline.undecoded().is_empty(),
                    "a protocol error leaves the offending bytes undecoded"
                );
                if idle_before && undecoded_before == 0 {
                    assert!(
                        matches!(e, ProtocolError::UnexpectedReply { .. }),
                        "bytes with nothing in flight: {e}"
                    );
                }
                self.stats.protocol_errors += 1;
                // The driver closes the connection on a protocol error.
                self.check();
                self.close(Break::Protocol);
            }
        }
    }

    /// The connection breaks for `why`: checks what is replayed and what is failed, then opens
    /// the next connection.
    fn close(&mut self, why: Break) {
        self.stats.closes += 1;
        let error = error_for(why);
        let conn = std::mem::replace(&mut self.conn, Conn::new());
        let written = conn.wire.len();
        let in_flight: Vec<(usize, bool)> = (conn.popped..conn.taken.len())
            .map(|k| {
                let id = conn.taken[k];
                let never_written = written <= conn.starts[k];
                if !never_written && written < conn.starts[k] + self.reqs[id].frame.len() {
                    self.stats.half_written_at_close += 1;
                }
                (id, never_written)
            })
            .collect();
        let replays = why == Break::Socket && conn.good;
        let expected_replay: Vec<usize> = in_flight
            .iter()
            .filter(|&&(id, never_written)| {
                let req = &self.reqs[id];
                replays && !req.gone.get() && !req.replayed && (req.idempotent || never_written)
            })
            .map(|&(id, _)| id)
            .collect();
        let expected_failed: Vec<usize> = in_flight
            .iter()
            .map(|&(id, _)| id)
            .filter(|id| !expected_replay.contains(id))
            .collect();

        let before = self.board.answer_count();
        let closed = conn.pipeline.close(why, &error);
        assert_eq!(closed.answered, conn.good, "answered: a good reply came");
        assert_eq!(
            closed.node_down,
            why == Break::Timeout || !conn.good,
            "node_down for {why:?} (good reply: {})",
            conn.good
        );
        let replay: Vec<usize> = closed.replay.iter().map(|p| p.caller().id).collect();
        assert_eq!(replay, expected_replay, "replayed on {why:?}");
        for p in &closed.replay {
            let req = &self.reqs[p.caller().id];
            assert!(p.is_replay());
            assert_eq!(p.deadline(), req.deadline);
        }
        let failed = self.board.answers_since(before);
        let failed_ids: Vec<usize> = failed.iter().map(|(id, _)| *id).collect();
        assert_eq!(failed_ids, expected_failed, "failed on {why:?}, in order");
        for (id, outcome) in &failed {
            assert!(
                is_error(outcome, &error),
                "request {id} must fail with the close error, got {outcome:?}"
            );
        }
        for &id in &replay {
            self.reqs[id].replayed = true;
        }
        self.stats.replayed += replay.len();
        self.waiting = closed.replay;
    }

    /// The pipeline's state against the model's.
    fn check(&self) {
        let conn = &self.conn;
        let p = &conn.pipeline;
        let in_flight = conn.taken.len() - conn.popped;
        assert_eq!(p.in_flight(), in_flight, "requests in flight");
        assert_eq!(p.is_idle(), in_flight == 0);
        assert_eq!(
            p.unwritten(),
            &conn.stream[conn.wire.len()..],
            "the unwritten bytes are the rest of the taken frames"
        );
        assert_eq!(p.received_any(), conn.fed > 0);
        assert_eq!(
            p.has_room(),
            p.unwritten().len() < MAX_WRITE_BATCH && in_flight < MAX_IN_FLIGHT
        );
        match conn.taken.get(conn.popped) {
            Some(&front) => {
                let deadline = self.reqs[front].deadline;
                assert_eq!(
                    p.deadline(),
                    Some(deadline),
                    "the oldest request's deadline"
                );
                assert!(p.expired(deadline));
                assert!(p.expired(deadline + Duration::from_millis(1)));
                if let Some(before) = deadline.checked_sub(Duration::from_nanos(1)) {
                    assert!(!p.expired(before));
                }
            }
            None => {
                assert_eq!(p.deadline(), None);
                assert!(!p.expired(self.base + Duration::from_secs(3600)));
            }
        }
    }
}
