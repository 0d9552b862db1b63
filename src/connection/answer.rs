//! The caller's side of one request once it is queued: where its reply arrives ([`Reply`]) and
//! the one future that waits for it ([`Answer`]): the rest of its sending when the queue was
//! full, then the reply, by the request's deadline.
//!
//! [`Answer`] is a state machine of its own rather than nested `async fn`s, so that a call's
//! future holds one [`Reply`] at a time (every concurrent caller holds one;
//! `examples/future_sizes.rs` prints their sizes).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::drive::Ticket;
use super::{slot, Connection, Waiting};
use crate::error::Error;
use crate::protocol::Response;

/// Where the reply of a queued request arrives, and until when it is awaited. As a future, the
/// reply (`Err` when the task dropped the request unanswered); while its caller claims the
/// connection ([`super::drive`]), polling it polls the socket task.
pub(crate) struct Reply {
    pub(super) rx: slot::Receiver,
    /// A deadline of the caller's own, shorter than the connection's (the request timeout from
    /// when it was queued); `None` for the connection's own, which the socket task watches: the
    /// caller then needs no timer.
    pub(super) deadline: Option<Instant>,
    pub(super) ticket: Ticket,
}

impl Future for Reply {
    type Output = Result<Result<Response, Error>, slot::Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The caller polls the task itself: the task answering its slot need not wake it (it
        // takes the reply below), but anybody else answering it must.
        if this.ticket.claims() {
            this.rx.quiet();
            this.ticket.drive(cx);
        }
        Pin::new(&mut this.rx).poll(cx)
    }
}

/// The reply of one request on `conn`: see the module docs.
pub(crate) struct Answer<'a> {
    conn: &'a Connection,
    state: State,
}

enum State {
    /// Waiting for room in a full queue (or the error that refused the request).
    Sending(Waiting),
    /// Waiting for the reply; the connection's task watches the deadline.
    Replying(Reply),
    /// Waiting for the reply under a deadline of the caller's own (not the hot path): its
    /// timer lives on the heap.
    Timed(Pin<Box<tokio::time::Timeout<Reply>>>),
    Done,
}

impl State {
    fn of(reply: Reply) -> State {
        match reply.deadline {
            None => State::Replying(reply),
            Some(deadline) => State::Timed(Box::pin(tokio::time::timeout_at(deadline, reply))),
        }
    }
}

impl<'a> Answer<'a> {
    pub(super) fn new(conn: &'a Connection, queued: Result<Reply, Waiting>) -> Answer<'a> {
        let state = match queued {
            Ok(reply) => State::of(reply),
            Err(waiting) => State::Sending(waiting),
        };
        Answer { conn, state }
    }
}

impl Future for Answer<'_> {
    type Output = Result<Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outcome = match &mut this.state {
            State::Sending(waiting) => match waiting.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(reply)) => {
                    this.state = State::of(reply);
                    return Pin::new(this).poll(cx);
                }
                Poll::Ready(Err(error)) => Err(error),
            },
            State::Replying(reply) => match Pin::new(reply).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => outcome.unwrap_or_else(|_| Err(this.conn.closed())),
            },
            State::Timed(timed) => match timed.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(outcome)) => outcome.unwrap_or_else(|_| Err(this.conn.closed())),
                Poll::Ready(Err(_)) => Err(this.conn.timeout()),
            },
            // Polled again after its outcome: nothing more will come.
            State::Done => Err(this.conn.closed()),
        };
        this.state = State::Done;
        Poll::Ready(outcome)
    }
}
