//! The reply slot of one request: where the socket task puts the outcome and the caller waits
//! for it. A one-shot channel whose storage is reused: a slot that its caller got the outcome
//! from, and that nothing else refers to any more, goes to a small free list of the thread
//! instead of back to the allocator, so that a caller in steady state allocates no slot.
//!
//! A slot is reused only when its receiving end holds the last reference (the sending end, and
//! with it the pipeline's request, is gone): no late outcome can ever land in a slot that
//! serves another request.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::protocol::Response;

type Outcome = Result<Response, Error>;

/// Free slots kept per thread.
const FREE_PER_THREAD: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Arc<Slot>>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct Slot {
    /// Set when the receiver is dropped: the outcome is not wanted.
    gone: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    outcome: Option<Outcome>,
    /// The sender was dropped (with or without sending).
    closed: bool,
    waker: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A slot and its two ends: a reused one when the thread has one free, else a new one.
pub(crate) fn slot() -> (Sender, Receiver) {
    let reused = FREE
        .try_with(|free| free.try_borrow_mut().ok().and_then(|mut f| f.pop()))
        .ok()
        .flatten();
    let slot = reused.unwrap_or_default();
    (
        Sender(Some(slot.clone())),
        Receiver {
            slot: Some(slot),
            done: false,
        },
    )
}

/// The socket task's end: answers once.
pub(crate) struct Sender(Option<Arc<Slot>>);

impl Sender {
    /// Whether the receiver is gone.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.0
            .as_ref()
            .map_or(true, |s| s.gone.load(Ordering::Acquire))
    }

    /// Hands over the outcome (dropped if the receiver is gone).
    pub(crate) fn send(mut self, outcome: Outcome) {
        if let Some(slot) = self.0.take() {
            let waker = {
                let mut state = slot.lock();
                state.closed = true;
                if slot.gone.load(Ordering::Acquire) {
                    None
                } else {
                    state.outcome = Some(outcome);
                    state.waker.take()
                }
            };
            drop(slot);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let waker = {
                let mut state = slot.lock();
                state.closed = true;
                state.waker.take()
            };
            drop(slot);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// The caller's end: a future of the outcome, `Err(Closed)` if the sender left without one.
pub(crate) struct Receiver {
    slot: Option<Arc<Slot>>,
    /// The outcome (or the close) was taken.
    done: bool,
}

/// The sending end was dropped without an outcome.
#[derive(Debug)]
pub(crate) struct Closed;

/// Keeps `cx`'s waker in `kept`, unless the one kept already wakes the same task.
pub(super) fn keep_waker(kept: &mut Option<Waker>, cx: &Context<'_>) {
    match kept {
        Some(w) if w.will_wake(cx.waker()) => {}
        w => *w = Some(cx.waker().clone()),
    }
}

impl Receiver {
    /// Forgets the waker of the last poll: an outcome sent from now on wakes nobody until the
    /// next poll (which finds it).
    pub(crate) fn quiet(&self) {
        if let Some(slot) = self.slot.as_ref() {
            slot.lock().waker = None;
        }
    }
}

impl Future for Receiver {
    type Output = Result<Outcome, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(slot) = this.slot.as_ref() else {
            return Poll::Ready(Err(Closed));
        };
        let mut state = slot.lock();
        if let Some(outcome) = state.outcome.take() {
            this.done = true;
            return Poll::Ready(Ok(outcome));
        }
        if state.closed {
            this.done = true;
            return Poll::Ready(Err(Closed));
        }
        keep_waker(&mut state.waker, cx);
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        if !self.done {
            slot.gone.store(true, Ordering::Release);
        }
        // The last reference: no sender can reach this slot any more, so it may serve another
        // request once cleared.
        let Some(only) = Arc::get_mut(&mut slot) else {
            return;
        };
        let state = only.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let stale = state.outcome.take();
        state.closed = false;
        state.waker = None;
        *only.gone.get_mut() = false;
        drop(stale);
        let _ = FREE.try_with(|free| {
            if let Ok(mut free) = free.try_borrow_mut() {
                if free.len() < FREE_PER_THREAD {
                    free.push(slot);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll(rx: &mut Receiver, flag: &Arc<Flag>) -> Poll<Result<Outcome, Closed>> {
        let waker = Waker::from(flag.clone());
        Pin::new(rx).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn outcome_reaches_the_receiver_and_wakes_it() {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let (tx, mut rx) = slot();
        assert!(poll(&mut rx, &flag).is_pending());
        assert!(!tx.is_closed());
        tx.send(Ok(Response::Stored));
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(matches!(
            poll(&mut rx, &flag),
            Poll::Ready(Ok(Ok(Response::Stored)))
        ));
    }

    #[test]
    fn a_dropped_sender_closes_and_a_dropped_receiver_is_seen() {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let (tx, mut rx) = slot();
        drop(tx);
        assert!(matches!(poll(&mut rx, &flag), Poll::Ready(Err(Closed))));
        let (tx, rx) = slot();
        drop(rx);
        assert!(tx.is_closed());
        tx.send(Ok(Response::Stored));
    }

    #[test]
    fn a_reused_slot_never_holds_an_earlier_outcome() {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        // A receiver that left before the outcome: its slot is not reused while the sender lives.
        let (late, gone) = slot();
        drop(gone);
        for _ in 0..(2 * FREE_PER_THREAD) {
            let (tx, mut rx) = slot();
            assert!(poll(&mut rx, &flag).is_pending());
            assert!(!tx.is_closed());
            tx.send(Ok(Response::Deleted));
            assert!(matches!(
                poll(&mut rx, &flag),
                Poll::Ready(Ok(Ok(Response::Deleted)))
            ));
        }
        late.send(Ok(Response::Stored));
        let (tx, mut rx) = slot();
        assert!(poll(&mut rx, &flag).is_pending());
        drop(tx);
        assert!(matches!(poll(&mut rx, &flag), Poll::Ready(Err(Closed))));
    }
}
