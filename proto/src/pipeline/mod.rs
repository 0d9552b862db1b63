//! PURE. The rules of one pipelined connection, with no I/O: bytes and times in, decisions out.
//!
//! A [`Pipeline`] holds the requests of one connection in FIFO order, from the moment they are
//! taken for writing until their reply is decoded. It owns:
//!
//! * **what to write**: taking a request appends its encoded frame to the write buffer, unless
//!   its caller already left, in which case nothing of it is sent;
//! * **dispatch**: the read buffer is decoded reply by reply ([`crate::protocol::decode`]), each
//!   reply going to the oldest request in flight. A caller that left keeps its place, and its
//!   reply is read and discarded, so that no later caller can receive it;
//! * **deadlines**: the oldest request's deadline is the connection's (a node that stops
//!   answering is found by its oldest request);
//! * **what to replay** when the connection breaks ([`Pipeline::close`]).
//!
//! A driver (the client's socket task, or any other) moves bytes between
//! the pipeline and a socket, reads the clock and gives the pipeline requests. The pipeline has
//! no tokio type, no socket and no clock of its own; it is tested with tables, property tests
//! and the fuzz target `pipeline`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::{Bytes, BytesMut};
//! use memcached_autodiscovery_proto::pipeline::{Caller, Pending, Pipeline};
//! use memcached_autodiscovery_proto::protocol::{Expect, Limits, Response};
//!
//! /// A caller that keeps its outcome in a slot; a failure is a message.
//! struct Slot(std::rc::Rc<std::cell::RefCell<Option<Result<Response, String>>>>);
//! impl Caller for Slot {
//!     type Error = String;
//!     fn is_gone(&self) -> bool { false }
//!     fn answer(self, outcome: Result<Response, String>) { *self.0.borrow_mut() = Some(outcome); }
//! }
//!
//! let slot = std::rc::Rc::default();
//! let mut pipeline = Pipeline::new(Limits::default());
//! let deadline = Instant::now() + Duration::from_secs(1);
//! pipeline.push(Pending::new(Bytes::from_static(b"delete k\r\n"), Expect::Delete, deadline, false, Slot(std::rc::Rc::clone(&slot))));
//! assert_eq!(pipeline.unwritten(), b"delete k\r\n");
//! pipeline.written(10);
//! pipeline.read_buffer().extend_from_slice(b"DELETED\r\n");
//! pipeline.dispatch()?;
//! assert!(matches!(*slot.borrow(), Some(Ok(Response::Deleted))));
//! assert!(pipeline.is_idle());
//! # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use bytes::BytesMut;

mod frame;

pub use frame::Frame;

use crate::error::{excerpt, ProtocolError};
use crate::protocol::{decode, Expect, Limits, Response};

/// Stop taking new requests into one write once this many bytes wait to be written.
pub const MAX_WRITE_BATCH: usize = 256 << 10;
/// Most requests in flight on one connection.
pub const MAX_IN_FLIGHT: usize = 8192;
/// The read buffer always has at least this much room for the next read.
const READ_ROOM: usize = 4096;
/// Read and write buffers of this size are made again.
const BUFFER: usize = 16 << 10;

/// Whoever waits for a request's reply.
pub trait Caller {
    /// What a failed request is answered with (the driver's error type: a broken connection,
    /// a timeout). Cloned once per request failed by [`Pipeline::close`].
    type Error: Clone;
    /// Whether the caller has left (given up, been dropped): its request need not be sent, and
    /// its reply is discarded.
    fn is_gone(&self) -> bool;
    /// Hands the caller the outcome of its request. Called exactly once per request taken by
    /// [`Pipeline::push`]; a request that `push` refuses because its caller left is dropped
    /// without an answer.
    fn answer(self, outcome: Result<Response, Self::Error>);
}

/// A request on its way: waiting to be taken, written, or waiting for its reply. Its frame is
/// kept until the reply comes, so that it can be sent again if the connection breaks first.
#[derive(Debug)]
pub struct Pending<C> {
    frame: Frame,
    expect: Expect,
    deadline: Instant,
    idempotent: bool,
    replayed: bool,
    caller: C,
}

impl<C> Pending<C> {
    /// An encoded request (`frame`), the reply it expects, until when its caller waits, whether
    /// sending it twice is harmless, and who waits.
    pub fn new(
        frame: impl Into<Frame>,
        expect: Expect,
        deadline: Instant,
        idempotent: bool,
        caller: C,
    ) -> Self {
        Pending {
            frame: frame.into(),
            expect,
            deadline,
            idempotent,
            replayed: false,
            caller,
        }
    }

    /// The caller's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the request is being sent a second time.
    pub fn is_replay(&self) -> bool {
        self.replayed
    }

    /// Who waits for the reply.
    pub fn caller(&self) -> &C {
        &self.caller
    }
}

impl<C: Caller> Pending<C> {
    /// Answers the caller with `error`.
    pub fn fail(self, error: C::Error) {
        self.caller.answer(Err(error));
    }
}

/// What [`Pipeline::close`] decided about a broken connection.
#[derive(Debug)]
pub struct Closed<C> {
    /// Whether the node should be left alone for a while (backoff) instead of reconnected at
    /// once: it stopped answering (timeout), or this connection gave no good reply at all.
    pub node_down: bool,
    /// Whether the connection gave at least one good (non-error) reply.
    pub answered: bool,
    /// Requests to send again on a fresh connection, oldest first.
    pub replay: Vec<Pending<C>>,
}

/// Why a connection is being closed, for [`Pipeline::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// The socket failed: closed or reset by the server, a read or write error.
    Socket,
    /// The oldest request outlived its deadline.
    Timeout,
    /// The server sent bytes that are not a valid reply.
    Protocol,
}

/// One connection's requests in flight and its buffers. See the module docs.
#[derive(Debug)]
pub struct Pipeline<C> {
    in_flight: VecDeque<Pending<C>>,
    wbuf: BytesMut,
    rbuf: BytesMut,
    limits: Limits,
    answered: bool,
    received: bool,
}

impl<C: Caller> Pipeline<C> {
    /// An empty pipeline that decodes replies within `limits`.
    pub fn new(limits: Limits) -> Self {
        Pipeline {
            in_flight: VecDeque::new(),
            wbuf: BytesMut::with_capacity(BUFFER),
            rbuf: BytesMut::with_capacity(BUFFER),
            limits,
            answered: false,
            received: false,
        }
    }

    /// Takes `request` for writing. A request whose caller already left is dropped, unanswered:
    /// nothing of it is written. Returns whether it was taken.
    pub fn push(&mut self, request: Pending<C>) -> bool {
        if request.caller.is_gone() {
            return false;
        }
        self.wbuf.extend_from_slice(&request.frame);
        self.in_flight.push_back(request);
        true
    }

    /// Whether more requests may be taken now (the write batch and the in-flight count are
    /// bounded).
    pub fn has_room(&self) -> bool {
        self.wbuf.len() < MAX_WRITE_BATCH && self.in_flight.len() < MAX_IN_FLIGHT
    }

    /// The bytes taken and not yet written.
    pub fn unwritten(&self) -> &[u8] {
        &self.wbuf
    }

    /// Records that the first `n` unwritten bytes were written.
    pub fn written(&mut self, n: usize) {
        let _ = self.wbuf.split_to(n.min(self.wbuf.len()));
        if self.wbuf.is_empty() && self.wbuf.capacity() > (1 << 20) {
            self.wbuf = BytesMut::with_capacity(BUFFER);
        }
    }

    /// Requests taken and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether no request is in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// The deadline of the oldest request in flight: when it passes, the connection is broken.
    pub fn deadline(&self) -> Option<Instant> {
        self.in_flight.front().map(|p| p.deadline)
    }

    /// Whether the oldest request's deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Whether the server has sent anything on this connection.
    pub fn received_any(&self) -> bool {
        self.received
    }

    /// What was read and not yet decoded.
    pub fn undecoded(&self) -> &[u8] {
        &self.rbuf
    }

    /// The buffer to read into, with room for at least 4 KiB. Call [`Pipeline::dispatch`] after
    /// reading.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.rbuf.capacity() - self.rbuf.len() < READ_ROOM {
            self.rbuf.reserve(32 << 10);
        }
        &mut self.rbuf
    }

    /// The read buffer (with room, as [`Pipeline::read_buffer`]) and the unwritten bytes at once,
    /// for a driver that reads and writes concurrently.
    pub fn buffers(&mut self) -> (&mut BytesMut, &[u8]) {
        self.read_buffer();
        (&mut self.rbuf, &self.wbuf)
    }

    /// Decodes every complete reply read so far and hands each to the oldest request in
    /// flight (a reply whose caller left is discarded). An error means the byte stream can no
    /// longer be trusted: close the connection.
    pub fn dispatch(&mut self) -> Result<(), ProtocolError> {
        if !self.rbuf.is_empty() {
            self.received = true;
        }
        while !self.rbuf.is_empty() {
            let Some(front) = self.in_flight.front() else {
                return Err(ProtocolError::UnexpectedReply {
                    expected: "nothing (no request in flight)",
                    line: excerpt(&self.rbuf),
                });
            };
            match decode(&mut self.rbuf, front.expect, &self.limits)? {
                Some((response, _)) => {
                    self.answered |= !matches!(response, Response::Error(_));
                    if let Some(done) = self.in_flight.pop_front() {
                        done.caller.answer(Ok(response));
                    }
                }
                None => break,
            }
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > (4 << 20) {
            self.rbuf = BytesMut::with_capacity(BUFFER);
        }
        Ok(())
    }

    /// Closes the connection for `why`: decides whether the node is down, which requests are
    /// sent again on a fresh connection, and fails every other request in flight with `error`.
    ///
    /// Only a connection that gave at least one good reply and then failed at the socket level
    /// (closed or reset: typical of a socket that died while a Lambda environment was frozen)
    /// replays; one that broke before any good reply is a failing node, and a second connection
    /// would fail the same way. A request is replayed once at most, only if its caller is still
    /// there, and only if it was never wholly written (its frame is still in the write buffer)
    /// or it is idempotent.
    pub fn close(self, why: Break, error: &C::Error) -> Closed<C> {
        let node_down = why == Break::Timeout || !self.answered;
        let replays = why == Break::Socket && !node_down;
        // Requests at the back whose frames are still wholly in the write buffer were never sent.
        let mut unsent_bytes = self.wbuf.len();
        let mut first_unsent = self.in_flight.len();
        for p in self.in_flight.iter().rev() {
            if p.frame.len() > unsent_bytes {
                break;
            }
            unsent_bytes -= p.frame.len();
            first_unsent -= 1;
        }
        let mut replay = Vec::new();
        for (i, mut p) in self.in_flight.into_iter().enumerate() {
            let safe = i >= first_unsent || p.idempotent;
            if replays && safe && !p.replayed && !p.caller.is_gone() {
                p.replayed = true;
                replay.push(p);
            } else {
                p.fail(error.clone());
            }
        }
        Closed {
            node_down,
            answered: self.answered,
            replay,
        }
    }
}
