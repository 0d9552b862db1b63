//! The rules of one pipelined connection (`memcached_autodiscovery_proto::pipeline`), through its
//! public API only: tables, one per rule, then property tests of random operation sequences
//! against the model in `tests/pipeline/model.rs` (the fuzz target `pipeline` runs the same
//! model on arbitrary bytes).
//!
//! Requests are encoded with `Request::encode`; the server's replies are written by hand, and
//! keys, values and numbers carry the request's id, so that a reply handed to the wrong caller
//! shows.

#[path = "pipeline/model.rs"]
mod model;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::pipeline::{
    Break, Closed, Pending, Pipeline, MAX_IN_FLIGHT, MAX_WRITE_BATCH,
};
use memcached_autodiscovery_proto::protocol::{
    decode, ErrorReply, Expect, Limits, Request, Response, StoreMode,
};
use model::{
    error_for, is_error, ops_from_bytes, Board, Error, Kind, Model, Op, Probe, Stats, KINDS,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

// ---- A pipeline and its callers ----

/// A pipeline, the board its callers write on, and the switches that make them leave. Request
/// `id` is the `id`-th pushed, refused or not.
struct Bench {
    pipeline: Pipeline<Probe>,
    board: Rc<Board>,
    gone: Vec<Rc<Cell<bool>>>,
    kinds: Vec<(Kind, bool)>,
    base: Instant,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            pipeline: Pipeline::new(Limits::default()),
            board: Rc::new(Board::default()),
            gone: Vec::new(),
            kinds: Vec::new(),
            base: Instant::now(),
        }
    }

    /// Pushes request `id` (the next one) of `kind`, due `id + 1` seconds after the start, and
    /// checks that it was taken.
    fn push(&mut self, kind: Kind, idempotent: bool) -> usize {
        let id = self.gone.len();
        let deadline = self.base + Duration::from_secs(id as u64 + 1);
        assert!(self.push_with(kind, idempotent, deadline, false));
        id
    }

    /// Pushes the next request; `left`: its caller left before.
    fn push_with(&mut self, kind: Kind, idempotent: bool, deadline: Instant, left: bool) -> bool {
        let id = self.gone.len();
        let (frame, expect) = kind.frame(id);
        let (probe, gone) = Probe::new(id, &self.board);
        gone.set(left);
        self.gone.push(gone);
        self.kinds.push((kind, false));
        self.pipeline
            .push(Pending::new(frame, expect, deadline, idempotent, probe))
    }

    fn leave(&self, id: usize) {
        self.gone[id].set(true);
    }

    /// The frame of request `id`.
    fn frame(&self, id: usize) -> Bytes {
        self.kinds[id].0.frame(id).0
    }

    /// The honest reply of request `id`, and what it decodes to.
    fn reply(&self, id: usize) -> (Vec<u8>, Response) {
        self.kinds[id].0.reply(id, self.kinds[id].1)
    }

    /// The honest reply of request `id`, as bytes.
    fn reply_bytes(&self, id: usize) -> Vec<u8> {
        self.reply(id).0
    }

    /// Makes the server answer request `id` with an error reply.
    fn error_reply(&mut self, id: usize) {
        self.kinds[id].1 = true;
    }

    fn write(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.pipeline.unwritten().len());
        let out = self.pipeline.unwritten()[..n].to_vec();
        self.pipeline.written(n);
        out
    }

    fn write_all(&mut self) -> Vec<u8> {
        self.write(usize::MAX)
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.pipeline.read_buffer().extend_from_slice(bytes);
        self.pipeline.dispatch()
    }

    /// Feeds the honest replies of `ids`, in one read.
    fn feed_replies(&mut self, ids: &[usize]) -> Result<(), ProtocolError> {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.reply_bytes(id)).collect();
        self.feed(&bytes)
    }

    /// Every answer so far: caller and outcome.
    fn answers(&self) -> Vec<(usize, Result<Response, Error>)> {
        self.board.answers_since(0)
    }

    /// The callers answered so far, in order.
    fn answered_ids(&self) -> Vec<usize> {
        self.answers().into_iter().map(|(id, _)| id).collect()
    }

    /// Checks that the answers given so far are exactly the honest replies of `ids`, in order.
    fn assert_answered_with_replies(&self, ids: &[usize]) {
        let expected: Vec<(usize, Response)> =
            ids.iter().map(|&id| (id, self.reply(id).1)).collect();
        let got: Vec<(usize, Response)> = self
            .answers()
            .into_iter()
            .map(|(id, outcome)| (id, outcome.expect("dispatch answers with a reply")))
            .collect();
        assert_eq!(got, expected);
    }

    fn close(self, why: Break) -> (Closed<Probe>, Rc<Board>, Vec<Rc<Cell<bool>>>) {
        let closed = self.pipeline.close(why, &error_for(why));
        (closed, self.board, self.gone)
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---- What is written ----

#[test]
fn push_appends_each_frame_and_written_consumes_them_in_order() {
    let mut b = Bench::new();
    let ids = [
        b.push(Kind::Get, true),
        b.push(Kind::Set, true),
        b.push(Kind::Incr, false),
    ];
    let all = cat(&[&b.frame(0), &b.frame(1), &b.frame(2)]);
    assert_eq!(&b.frame(0)[..], b"get k0\r\n");
    assert_eq!(&b.frame(1)[..], b"set k1 1 60 2\r\nv1\r\n");
    assert_eq!(&b.frame(2)[..], b"incr k2 1\r\n");
    assert_eq!(b.pipeline.unwritten(), &all[..]);
    assert_eq!(b.pipeline.in_flight(), ids.len());
    assert_eq!(b.write(5), &all[..5]);
    assert_eq!(b.pipeline.unwritten(), &all[5..]);
    assert_eq!(b.write(0), b"");
    assert_eq!(b.write_all(), &all[5..]);
    assert!(b.pipeline.unwritten().is_empty());
    // Writing is not answering.
    assert_eq!(b.pipeline.in_flight(), 3);
    assert!(b.answers().is_empty());
    // More than is left is clamped.
    b.pipeline.written(100);
    assert!(b.pipeline.unwritten().is_empty());
}

#[test]
fn push_refuses_a_caller_that_left_and_writes_nothing_of_it() {
    let mut b = Bench::new();
    let far = b.base + Duration::from_secs(60);
    assert!(b.push_with(Kind::Get, true, far, false));
    // Request 1's caller left before it was taken: in the middle of the FIFO.
    assert!(!b.push_with(Kind::Get, true, far, true));
    assert_eq!(*b.board.dropped.borrow(), vec![1], "dropped unanswered");
    assert!(b.push_with(Kind::Get, true, far, false));
    assert_eq!(b.pipeline.in_flight(), 2);
    assert_eq!(b.write_all(), b"get k0\r\nget k2\r\n");
    b.feed_replies(&[0, 2]).unwrap();
    b.assert_answered_with_replies(&[0, 2]);
    assert!(b.pipeline.is_idle());
    assert_eq!(b.board.answers_of(1), 0);
}

#[test]
fn a_caller_that_leaves_after_being_taken_is_still_written_and_its_reply_read() {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.push(Kind::Get, true);
    // Taken, not yet written: its bytes are already in the write batch.
    b.leave(0);
    assert_eq!(b.write_all(), b"get k0\r\nget k1\r\n");
    // The reply to request 0 reaches request 0's (departed) caller, not request 1's.
    b.feed_replies(&[0]).unwrap();
    b.assert_answered_with_replies(&[0]);
    assert_eq!(b.pipeline.in_flight(), 1);
    b.feed_replies(&[1]).unwrap();
    b.assert_answered_with_replies(&[0, 1]);
}

// ---- Dispatch ----

#[test]
fn replies_go_to_the_oldest_request_first() {
    let mut b = Bench::new();
    for kind in KINDS {
        b.push(kind, false);
    }
    b.write_all();
    let ids: Vec<usize> = (0..KINDS.len()).collect();
    b.feed_replies(&ids).unwrap();
    b.assert_answered_with_replies(&ids);
    assert!(b.pipeline.is_idle());
    assert!(b.pipeline.undecoded().is_empty());
    assert!(b.pipeline.received_any());
}

#[test]
fn a_reply_fed_one_byte_at_a_time_is_dispatched_when_complete() {
    let mut b = Bench::new();
    let ids = [
        b.push(Kind::GetMulti, true),
        b.push(Kind::Stats, true),
        b.push(Kind::Incr, false),
        b.push(Kind::Gets, true),
    ];
    b.write_all();
    let replies: Vec<Vec<u8>> = ids.iter().map(|&id| b.reply_bytes(id)).collect();
    let stream = replies.concat();
    let ends: Vec<usize> = replies
        .iter()
        .scan(0, |end, r| {
            *end += r.len();
            Some(*end)
        })
        .collect();
    assert!(!b.pipeline.received_any());
    for (i, byte) in stream.iter().enumerate() {
        b.feed(std::slice::from_ref(byte)).unwrap();
        let complete = ends.iter().filter(|&&end| end <= i + 1).count();
        b.assert_answered_with_replies(&ids[..complete]);
        let done = if complete == 0 { 0 } else { ends[complete - 1] };
        assert_eq!(b.pipeline.undecoded(), &stream[done..=i]);
        assert_eq!(b.pipeline.in_flight(), ids.len() - complete);
        assert!(b.pipeline.received_any());
    }
    assert!(b.pipeline.is_idle());
}

#[test]
fn a_reply_split_at_any_point_across_two_reads() {
    let kinds = [Kind::Gets, Kind::Version, Kind::Stats];
    let stream: Vec<u8> = kinds
        .iter()
        .enumerate()
        .flat_map(|(id, k)| k.reply(id, false).0)
        .collect();
    let first_end = kinds[0].reply(0, false).0.len();
    for split in 0..=stream.len() {
        let mut b = Bench::new();
        for kind in kinds {
            b.push(kind, true);
        }
        b.write_all();
        b.feed(&stream[..split]).unwrap();
        let got = b.answered_ids();
        assert_eq!(got.is_empty(), split < first_end, "split at {split}");
        b.feed(&stream[split..]).unwrap();
        b.assert_answered_with_replies(&[0, 1, 2]);
        assert!(b.pipeline.undecoded().is_empty());
    }
}

#[test]
fn a_gone_caller_in_the_middle_of_the_fifo_keeps_its_place() {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.push(Kind::Get, true);
    b.push(Kind::Get, true);
    b.write_all();
    // Request 1 was written and its caller left: its reply is still read, in its turn.
    b.leave(1);
    b.feed_replies(&[0]).unwrap();
    b.assert_answered_with_replies(&[0]);
    // Request 1's reply alone: request 2 must not get it.
    b.feed_replies(&[1]).unwrap();
    b.assert_answered_with_replies(&[0, 1]);
    assert_eq!(b.pipeline.in_flight(), 1);
    b.feed_replies(&[2]).unwrap();
    b.assert_answered_with_replies(&[0, 1, 2]);
}

#[test]
fn replies_of_callers_that_left_never_reach_another_caller() {
    // Same kinds, so that a misdelivered reply would decode without complaint.
    for gone in [
        vec![0],
        vec![1],
        vec![0, 1],
        vec![0, 2],
        vec![1, 2],
        vec![0, 1, 2],
    ] {
        let mut b = Bench::new();
        for _ in 0..4 {
            b.push(Kind::Incr, false);
        }
        b.write_all();
        for &id in &gone {
            b.leave(id);
        }
        for id in 0..4 {
            b.feed_replies(&[id]).unwrap();
            b.assert_answered_with_replies(&(0..=id).collect::<Vec<_>>());
        }
        for (id, outcome) in b.answers() {
            assert_eq!(
                outcome.unwrap(),
                Response::Number(id as u64),
                "gone: {gone:?}"
            );
        }
    }
}

#[test]
fn an_error_reply_is_an_answer_and_the_stream_stays_in_step() {
    let mut b = Bench::new();
    b.push(Kind::Set, true);
    b.push(Kind::Get, true);
    b.push(Kind::Delete, false);
    b.error_reply(1);
    b.write_all();
    b.feed_replies(&[0, 1, 2]).unwrap();
    b.assert_answered_with_replies(&[0, 1, 2]);
    assert!(matches!(
        b.answers()[1].1,
        Ok(Response::Error(ErrorReply::Client(ref m))) if m == "e1"
    ));
}

#[test]
fn bytes_with_no_request_in_flight_are_a_protocol_error() {
    // Before any request.
    let mut b = Bench::new();
    let err = b.feed(b"STORED\r\n").unwrap_err();
    assert!(
        matches!(err, ProtocolError::UnexpectedReply { expected, ref line }
            if expected == "nothing (no request in flight)" && line == "STORED\\r\\n"),
        "{err:?}"
    );
    assert_eq!(b.pipeline.undecoded(), b"STORED\r\n");
    assert!(b.pipeline.received_any());

    // After the last reply, in the same read.
    let mut b = Bench::new();
    b.push(Kind::Delete, false);
    b.write_all();
    let bytes = cat(&[&b.reply_bytes(0), b"DELETED\r\n"]);
    let err = b.feed(&bytes).unwrap_err();
    assert!(matches!(err, ProtocolError::UnexpectedReply { .. }));
    b.assert_answered_with_replies(&[0]);
    assert_eq!(b.pipeline.undecoded(), b"DELETED\r\n");

    // Even a lone partial byte.
    let mut b = Bench::new();
    assert!(b.feed(b"S").is_err());
    assert_eq!(b.pipeline.undecoded(), b"S");
}

#[test]
fn a_protocol_error_leaves_the_bytes_undecoded_and_the_request_in_flight() {
    let mut b = Bench::new();
    b.push(Kind::Delete, false);
    b.push(Kind::Incr, false);
    b.write_all();
    let bytes = cat(&[&b.reply_bytes(0), b"STORED\r\n"]);
    let err = b.feed(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::UnexpectedReply {
                expected: "incr/decr",
                ..
            }
        ),
        "{err:?}"
    );
    b.assert_answered_with_replies(&[0]);
    assert_eq!(b.pipeline.undecoded(), b"STORED\r\n");
    assert_eq!(b.pipeline.in_flight(), 1);
    // The same bytes again are refused again: nothing was consumed.
    assert!(b.pipeline.dispatch().is_err());
    assert_eq!(b.pipeline.undecoded(), b"STORED\r\n");
    let (closed, board, _) = b.close(Break::Protocol);
    assert!(closed.replay.is_empty());
    let answers = board.answers_since(0);
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1].0, 1);
    assert!(is_error(&answers[1].1, &error_for(Break::Protocol)));
}

#[test]
fn decode_and_dispatch_agree_on_a_reply() {
    // The pipeline decodes exactly as `protocol::decode` does.
    let mut b = Bench::new();
    b.push(Kind::GetMulti, true);
    b.write_all();
    let bytes = b.reply_bytes(0);
    let mut buf = BytesMut::from(&bytes[..]);
    let (expected, used) = decode(&mut buf, Expect::Values { max: 2 }, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(used, bytes.len());
    b.feed(&bytes).unwrap();
    assert_eq!(b.answers()[0].1.as_ref().unwrap(), &expected);
}

// ---- Deadlines ----

#[test]
fn the_deadline_is_the_oldest_requests() {
    let mut b = Bench::new();
    let base = b.base;
    let t = |s: u64| base + Duration::from_secs(s);
    let (t1, t3, t5) = (t(1), t(3), t(5));
    assert_eq!(b.pipeline.deadline(), None);
    assert!(!b.pipeline.expired(t(1000)));
    assert!(b.push_with(Kind::Get, true, t5, false));
    assert!(b.push_with(Kind::Get, true, t1, false));
    assert!(b.push_with(Kind::Get, true, t3, false));
    // The oldest request's, not the earliest.
    assert_eq!(b.pipeline.deadline(), Some(t5));
    assert!(!b.pipeline.expired(t1));
    assert!(!b.pipeline.expired(t5 - Duration::from_nanos(1)));
    assert!(b.pipeline.expired(t5));
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    assert_eq!(b.pipeline.deadline(), Some(t1));
    assert!(b.pipeline.expired(t1));
    assert!(!b.pipeline.expired(t1 - Duration::from_nanos(1)));
    // A caller that left still holds the connection's deadline: its reply is awaited.
    b.leave(1);
    assert_eq!(b.pipeline.deadline(), Some(t1));
    b.feed_replies(&[1]).unwrap();
    assert_eq!(b.pipeline.deadline(), Some(t3));
    b.feed_replies(&[2]).unwrap();
    assert_eq!(b.pipeline.deadline(), None);
    assert!(!b.pipeline.expired(t(1000)));
}

// ---- Room ----

/// A `set` whose frame is exactly `len` bytes.
fn set_frame(len: usize) -> Bytes {
    for value_len in (len.saturating_sub(40)..len).rev() {
        let value = vec![b'x'; value_len];
        let mut buf = BytesMut::new();
        Request::Store {
            mode: StoreMode::Set,
            key: b"big",
            flags: 0,
            exptime: 0,
            value: &value,
        }
        .encode(&mut buf, &Limits::default())
        .unwrap();
        if buf.len() == len {
            return buf.freeze();
        }
    }
    panic!("no set frame of {len} bytes");
}

#[test]
fn has_room_until_the_write_batch_is_full() {
    let board = Rc::new(Board::default());
    let mut pipeline = Pipeline::new(Limits::default());
    let deadline = Instant::now() + Duration::from_secs(1);
    let push = |pipeline: &mut Pipeline<Probe>, id: usize, frame: Bytes| {
        let (probe, _) = Probe::new(id, &board);
        assert!(pipeline.push(Pending::new(frame, Expect::Store, deadline, true, probe)));
    };
    assert!(pipeline.has_room());
    push(&mut pipeline, 0, set_frame(MAX_WRITE_BATCH - 1));
    assert_eq!(pipeline.unwritten().len(), MAX_WRITE_BATCH - 1);
    assert!(pipeline.has_room());
    push(&mut pipeline, 1, Kind::Delete.frame(1).0);
    assert!(!pipeline.has_room());
    // A write that leaves the batch at the bound still leaves no room...
    let over = pipeline.unwritten().len() - MAX_WRITE_BATCH;
    pipeline.written(over);
    assert_eq!(pipeline.unwritten().len(), MAX_WRITE_BATCH);
    assert!(!pipeline.has_room());
    // ...one byte fewer does.
    pipeline.written(1);
    assert!(pipeline.has_room());
    pipeline.written(usize::MAX);
    assert!(pipeline.has_room());
    assert_eq!(pipeline.in_flight(), 2);
}

#[test]
fn has_room_until_the_requests_in_flight_are_at_the_bound() {
    let mut b = Bench::new();
    for _ in 0..MAX_IN_FLIGHT - 1 {
        b.push(Kind::Delete, false);
    }
    assert!(b.pipeline.has_room());
    b.push(Kind::Delete, false);
    assert_eq!(b.pipeline.in_flight(), MAX_IN_FLIGHT);
    assert!(!b.pipeline.has_room());
    b.write_all();
    // Written is not answered: still no room.
    assert!(!b.pipeline.has_room());
    b.feed_replies(&[0]).unwrap();
    assert!(b.pipeline.has_room());
}

// ---- Close ----

/// The break table's connection. In FIFO order:
///
/// | id | kind   | idempotent          | written      | caller |
/// |----|--------|---------------------|--------------|--------|
/// | 0  | get    | yes                 | wholly       | answered by `first` (or not) |
/// | 1  | add    | no                  | wholly       | here   |
/// | 2  | set    | yes                 | wholly       | here   |
/// | 3  | get    | yes                 | wholly       | left   |
/// | 4  | incr   | `half_idempotent`   | half         | here   |
/// | 5  | delete | no                  | not at all   | here   |
/// | 6  | get    | yes                 | not at all   | left   |
/// | 7  | touch  | yes                 | not at all   | here   |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    /// No reply at all.
    None,
    /// A good reply to request 0.
    Good,
    /// An error reply (`SERVER_ERROR`) to request 0: not a good reply.
    ServerError,
}

fn broken_connection(first: First, half_idempotent: bool) -> Bench {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.push(Kind::Add, false);
    b.push(Kind::Set, true);
    b.push(Kind::Get, true);
    b.push(Kind::Incr, half_idempotent);
    let whole: usize = (0..4).map(|id| b.frame(id).len()).sum();
    b.write(whole + b.frame(4).len() / 2);
    b.push(Kind::Delete, false);
    b.push(Kind::Get, true);
    b.push(Kind::Touch, true);
    b.leave(3);
    b.leave(6);
    match first {
        First::None => {}
        First::Good => b.feed_replies(&[0]).unwrap(),
        First::ServerError => {
            b.error_reply(0);
            b.feed_replies(&[0]).unwrap();
        }
    }
    b
}

#[test]
fn close_replays_by_break_reply_and_written_bytes() {
    use Break::*;
    // (why, first reply, request 4 idempotent) => (replayed, node_down, answered)
    type Row = (Break, First, bool, &'static [usize], bool, bool);
    #[rustfmt::skip]
    let table: &[Row] = &[
        (Socket,   First::Good,        false, &[2, 5, 7],    false, true),
        (Socket,   First::Good,        true,  &[2, 4, 5, 7], false, true),
        (Socket,   First::ServerError, false, &[],           true,  false),
        (Socket,   First::ServerError, true,  &[],           true,  false),
        (Socket,   First::None,        true,  &[],           true,  false),
        (Timeout,  First::Good,        true,  &[],           true,  true),
        (Timeout,  First::None,        true,  &[],           true,  false),
        (Protocol, First::Good,        true,  &[],           false, true),
        (Protocol, First::ServerError, true,  &[],           true,  false),
        (Protocol, First::None,        true,  &[],           true,  false),
    ];
    for &(why, first, half_idempotent, replayed, node_down, answered) in table {
        let row = format!("{why:?} after {first:?}, half-written idempotent: {half_idempotent}");
        let b = broken_connection(first, half_idempotent);
        let before = b.answered_ids();
        assert_eq!(
            before,
            if first == First::None {
                vec![]
            } else {
                vec![0]
            },
            "{row}"
        );
        let (closed, board, _) = b.close(why);
        let got: Vec<usize> = closed.replay.iter().map(|p| p.caller().id).collect();
        assert_eq!(got, replayed, "{row}: replayed");
        assert_eq!(closed.node_down, node_down, "{row}: node_down");
        assert_eq!(closed.answered, answered, "{row}: answered");
        assert!(closed.replay.iter().all(Pending::is_replay), "{row}");
        // Everything else in flight got the error, once, oldest first.
        let failed: Vec<usize> = (if first == First::None { 0 } else { 1 }..8)
            .filter(|id| !replayed.contains(id))
            .collect();
        let answers = board.answers_since(before.len());
        assert_eq!(
            answers.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            failed,
            "{row}: failed"
        );
        for (id, outcome) in &answers {
            assert!(
                is_error(outcome, &error_for(why)),
                "{row}: request {id}: {outcome:?}"
            );
        }
        drop(closed);
        // Replayed requests dropped here, unanswered: nothing else was.
        assert_eq!(*board.dropped.borrow(), replayed.to_vec(), "{row}");
    }
}

/// A connection that gave a good reply, then request 1 of `idempotent` with `written` of its
/// bytes written, broken at the socket: is request 1 replayed?
fn replayed_after_writing(written: usize, idempotent: bool) -> bool {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    b.push(Kind::Cas, idempotent);
    b.write(written);
    let (closed, board, _) = b.close(Break::Socket);
    let replayed = closed.replay.len() == 1;
    assert_eq!(board.answers_of(1), usize::from(!replayed));
    replayed
}

#[test]
fn a_request_half_written_is_replayed_only_if_idempotent() {
    let len = Kind::Cas.frame(1).0.len();
    for written in [0, 1, len / 2, len - 1, len] {
        assert_eq!(
            replayed_after_writing(written, false),
            written == 0,
            "not idempotent, {written} of {len} bytes written"
        );
        assert!(
            replayed_after_writing(written, true),
            "idempotent, {written} of {len} bytes written"
        );
    }
}

#[test]
fn a_request_wholly_unwritten_is_replayed_after_one_partly_written() {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    b.push(Kind::Add, false);
    b.push(Kind::Incr, false);
    b.push(Kind::Decr, false);
    // All of 1, then exactly nothing of 2 and 3.
    b.write(b.frame(1).len());
    let (closed, _, _) = b.close(Break::Socket);
    let ids: Vec<usize> = closed.replay.iter().map(|p| p.caller().id).collect();
    assert_eq!(ids, vec![2, 3]);

    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    b.push(Kind::Add, false);
    b.push(Kind::Incr, false);
    b.push(Kind::Decr, false);
    // All of 1 and one byte of 2.
    b.write(b.frame(1).len() + 1);
    let (closed, _, _) = b.close(Break::Socket);
    let ids: Vec<usize> = closed.replay.iter().map(|p| p.caller().id).collect();
    assert_eq!(ids, vec![3]);
}

#[test]
fn a_request_answered_early_does_not_hide_what_was_written() {
    // A server may refuse a storage command from its header line, before the value is written
    // (`SERVER_ERROR object too large for cache`). The unwritten rest of that frame must not make
    // a later, wholly written request look unsent.
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    b.push(Kind::Add, false); // 1: refused early
    b.push(Kind::Incr, false); // 2
    b.error_reply(1);
    let one = b.frame(1).len();
    b.write(one - 3);
    b.feed_replies(&[1]).unwrap();
    assert_eq!(b.pipeline.in_flight(), 1);
    // 2 not written at all: replayed.
    let (closed, _, _) = b.close(Break::Socket);
    assert_eq!(
        closed
            .replay
            .iter()
            .map(|p| p.caller().id)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn a_replayed_request_is_replayed_once_only() {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.push(Kind::Get, true);
    b.push(Kind::Set, true);
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    let (closed, board, _) = b.close(Break::Socket);
    assert_eq!(closed.replay.len(), 2);

    // The next connection takes the replays first, then a new request.
    let mut pipeline = Pipeline::new(Limits::default());
    for p in closed.replay {
        assert!(p.is_replay());
        assert!(pipeline.push(p));
    }
    let (probe, _) = Probe::new(3, &board);
    let (frame, expect) = Kind::Get.frame(3);
    let fresh = Pending::new(frame.clone(), expect, Instant::now(), true, probe);
    assert!(!fresh.is_replay());
    assert!(pipeline.push(fresh));
    let expected = cat(&[&Kind::Get.frame(1).0, &Kind::Set.frame(2).0, &frame]);
    assert_eq!(
        pipeline.unwritten(),
        &expected[..],
        "replays are written again, first"
    );
    let n = pipeline.unwritten().len();
    pipeline.written(n);
    // A good reply to request 1, then the socket breaks again.
    pipeline
        .read_buffer()
        .extend_from_slice(&Kind::Get.reply(1, false).0);
    pipeline.dispatch().unwrap();
    let closed = pipeline.close(Break::Socket, &error_for(Break::Socket));
    assert!(closed.answered && !closed.node_down);
    // Request 2 was replayed once already: failed. Request 3 is replayed for the first time.
    let ids: Vec<usize> = closed.replay.iter().map(|p| p.caller().id).collect();
    assert_eq!(ids, vec![3]);
    let answers = board.answers_since(0);
    let order: Vec<usize> = answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(order, vec![0, 1, 2]);
    assert_eq!(answers[1].1.as_ref().unwrap(), &Kind::Get.reply(1, false).1);
    assert!(is_error(&answers[2].1, &error_for(Break::Socket)));
}

#[test]
fn a_replayed_request_whose_caller_left_meanwhile_is_not_written_again() {
    let mut b = Bench::new();
    b.push(Kind::Get, true);
    b.push(Kind::Set, true);
    b.write_all();
    b.feed_replies(&[0]).unwrap();
    let (closed, board, gone) = b.close(Break::Socket);
    assert_eq!(closed.replay.len(), 1);
    gone[1].set(true);
    let mut pipeline = Pipeline::new(Limits::default());
    for p in closed.replay {
        assert!(!pipeline.push(p));
    }
    assert!(pipeline.unwritten().is_empty());
    assert_eq!(*board.dropped.borrow(), vec![1]);
}

#[test]
fn close_of_an_idle_connection() {
    for why in [Break::Socket, Break::Timeout, Break::Protocol] {
        let mut b = Bench::new();
        b.push(Kind::Version, true);
        b.write_all();
        b.feed_replies(&[0]).unwrap();
        let (closed, board, _) = b.close(why);
        assert!(closed.replay.is_empty());
        assert!(closed.answered);
        assert_eq!(closed.node_down, why == Break::Timeout);
        assert_eq!(board.answers_since(0).len(), 1);

        let closed = Bench::new().close(why).0;
        assert!(closed.replay.is_empty() && !closed.answered && closed.node_down);
    }
}

// ---- The model ----

#[test]
fn the_model_requests_match_the_protocol() {
    for (id, kind) in KINDS.into_iter().enumerate() {
        let (frame, expect) = kind.frame(id);
        // The honest reply decodes, whole and to the model's value, with the request's Expect.
        for error in [false, true] {
            let (reply, response) = kind.reply(id, error);
            let mut buf = BytesMut::from(&reply[..]);
            let decoded = decode(&mut buf, expect, &Limits::default())
                .unwrap()
                .unwrap();
            assert_eq!(decoded, (response, reply.len()), "{kind:?}");
        }
        assert!(frame.ends_with(b"\r\n"));
    }
}

fn a_break() -> impl Strategy<Value = Break> {
    prop_oneof![
        3 => Just(Break::Socket),
        1 => Just(Break::Timeout),
        1 => Just(Break::Protocol),
    ]
}

fn an_amount() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 1usize..48, 1 => Just(usize::MAX)]
}

/// Operations with an honest server.
fn an_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            0..KINDS.len(),
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.15),
            0u16..3000,
        )
            .prop_map(|(kind, idempotent, left, error_reply, timeout_ms)| Op::Push {
                kind: KINDS[kind],
                idempotent,
                left,
                error_reply,
                timeout_ms,
            }),
        3 => an_amount().prop_map(Op::Write),
        3 => an_amount().prop_map(Op::Feed),
        2 => any::<usize>().prop_map(Op::Leave),
        1 => a_break().prop_map(Op::Close),
    ]
}

fn honest_run() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(an_op(), 0..80)
}

fn any_bytes_run() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Random operations against an honest server: every caller answered exactly once, with
    /// its own reply or the close error; written bytes are the taken frames; replays obey the
    /// rule.
    #[test]
    fn pipeline_matches_the_model_with_an_honest_server(ops in honest_run()) {
        Model::run(&ops);
    }

    /// Any bytes read as operations, lies of the server included (the fuzz target's input).
    #[test]
    fn pipeline_matches_the_model_on_any_operation_bytes(data in any_bytes_run()) {
        Model::run(&ops_from_bytes(&data));
    }
}

/// The generated runs reach the states the rules are about (otherwise the properties above
/// would pass vacuously).
#[test]
fn the_property_runs_reach_every_rule() {
    fn total(runs: Vec<Stats>) -> Stats {
        runs.into_iter().fold(Stats::default(), |a, s| Stats {
            pushed: a.pushed + s.pushed,
            refused: a.refused + s.refused,
            ok_answers: a.ok_answers + s.ok_answers,
            replayed: a.replayed + s.replayed,
            replayed_refused: a.replayed_refused + s.replayed_refused,
            closes: a.closes + s.closes,
            protocol_errors: a.protocol_errors + s.protocol_errors,
            half_written_at_close: a.half_written_at_close + s.half_written_at_close,
        })
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let honest = total(
        (0..300)
            .map(|_| Model::run(&honest_run().new_tree(&mut runner).unwrap().current()))
            .collect(),
    );
    assert!(honest.refused > 0, "{honest:?}");
    assert!(honest.ok_answers > 500, "{honest:?}");
    assert!(honest.replayed > 50, "{honest:?}");
    assert!(honest.replayed_refused > 0, "{honest:?}");
    assert!(honest.half_written_at_close > 20, "{honest:?}");
    assert_eq!(honest.protocol_errors, 0, "{honest:?}");
    let lying = total(
        (0..300)
            .map(|_| {
                Model::run(&ops_from_bytes(
                    &any_bytes_run().new_tree(&mut runner).unwrap().current(),
                ))
            })
            .collect(),
    );
    assert!(lying.protocol_errors > 50, "{lying:?}");
    assert!(lying.ok_answers > 0, "{lying:?}");
}

/// The fuzz target's committed corpus runs clean through the model (the same check as
/// `cargo fuzz run pipeline` on each input, without libFuzzer).
#[test]
fn the_fuzz_corpus_of_pipeline_runs_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/pipeline");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/pipeline") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let stats = Model::run(&ops_from_bytes(&data));
        assert!(stats.pushed > 0, "{}: no request", path.display());
        inputs += 1;
    }
    assert!(inputs >= 8, "{inputs} inputs in {}", dir.display());
}
