//! Who polls a connection's task: the task's own tokio task (the *shell*), or a lone caller.
//!
//! A request normally crosses two tasks: the caller queues it and waits for its reply slot, and
//! the socket task writes it, reads the reply and answers the slot — two extra task polls per
//! request and, on a multi-thread runtime, a wake of another thread each way. When a caller is
//! the only one with a request on the connection, it *claims* the connection and polls the
//! socket task's future itself, from its own task: the request is written during the caller's
//! own poll, and the reply's arrival wakes the caller, which reads it and takes it from its slot
//! in the same poll. Nothing else changes: the socket task's future is the same state machine
//! (pipeline, deadlines, replays, reconnects), only polled by another task.
//!
//! How the two share one future:
//!
//! * **One poller at a time.** The future sits behind a lock and a three-state flag (idle,
//!   polling, polled again): whoever finds it being polled leaves a note, and the poller wakes
//!   the connection's waker after its poll, so no wake is lost and the future's own yields
//!   still yield.
//! * **One waker, routed.** The future is always polled with the connection's waker, which
//!   wakes the claiming caller while there is one, else the shell. Nothing the future waits for
//!   (the socket, its timer, the queue) needs registering again when the poller changes.
//! * **A claim ends** when its caller has its reply or is dropped, and as soon as a second
//!   request is queued (the claiming caller may be a future polled once and then held without
//!   being polled: it must never stall anyone else). A wake meant for a claim that ended before
//!   the claiming caller polled goes to the shell.
//!
//! This module does not know what the future does; [`super::task`] does not know who polls it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use super::slot::keep_waker;

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Nobody polls the task.
const IDLE: u8 = 0;
/// Somebody polls the task.
const POLLING: u8 = 1;
/// Somebody polls the task, and it was woken meanwhile: wake it again after this poll.
const REPOLL: u8 = 2;

/// A connection's task and who is woken for it.
pub(super) struct Driver {
    /// The socket task's future; `None` once it ended (or its shell was dropped).
    task: Mutex<Option<TaskFuture>>,
    state: AtomicU8,
    /// A wake went to a claiming caller since the task's last poll.
    missed: AtomicBool,
    /// The task's future completed.
    ended: AtomicBool,
    /// Requests queued through [`Driver::enter`] whose callers still wait.
    waiting: AtomicUsize,
    /// Whether a caller claims the connection (set under the `route` lock, read without it).
    claimed: AtomicBool,
    /// The task was polled at least once. Until then it has registered no waker: a request
    /// queued for it wakes nobody, and whoever will not poll it must have the shell do it.
    polled: AtomicBool,
    route: Mutex<Route>,
    /// The runtime the connection lives in: its task's sockets and timers belong to it, whoever
    /// polls.
    runtime: tokio::runtime::Handle,
    /// Held while the task runs (see [`super::Tasks`]); the shell takes it when it starts.
    running: Mutex<Option<Running>>,
}

type Running = tokio::sync::watch::Receiver<()>;

#[derive(Default)]
struct Route {
    /// The shell's waker, from its last poll.
    shell: Option<Waker>,
    /// Whether the shell was spawned. It is spawned by the first wake that has nobody else to
    /// go to: a lone caller's request (a cold start's) needs no other task, nor the wake of an
    /// idle worker thread that spawning one costs.
    shell_spawned: bool,
    /// The caller that polls the task while it has the only request queued.
    claim: Option<Claim>,
    next_claim: u64,
}

struct Claim {
    id: u64,
    /// `None` until the claiming caller first polls.
    waker: Option<Waker>,
}

/// A caller's place among those waiting for a reply on one connection: its claim, if it has one.
/// Dropping it (the reply taken, or the caller gone) ends the wait and the claim.
pub(crate) struct Ticket {
    driver: Arc<Driver>,
    claim: Option<u64>,
}

impl Driver {
    /// A driver for `task`, to be polled by a claiming caller or by the shell, which is
    /// spawned when first needed. Must be called within a tokio runtime. `running` is dropped
    /// when the task ends (or, if it never ran, when the driver is dropped).
    pub(super) fn new(task: impl Future<Output = ()> + Send + 'static, running: Running) -> Driver {
        Driver {
            task: Mutex::new(Some(Box::pin(task))),
            state: AtomicU8::new(IDLE),
            missed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            polled: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
            route: Mutex::default(),
            runtime: tokio::runtime::Handle::current(),
            running: Mutex::new(Some(running)),
        }
    }

    fn route(&self) -> MutexGuard<'_, Route> {
        self.route.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a caller about to queue a request. It claims the connection (if it `wants` to)
    /// when nobody else waits; a second caller ends any claim. Callers that find others waiting
    /// and no claim (a busy connection) take no lock.
    pub(super) fn enter(self: &Arc<Self>, wants: bool) -> Ticket {
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let claim = if before == 0 && wants {
            self.try_claim()
        } else {
            if self.claimed.load(Ordering::SeqCst) {
                self.end_claim_of_another();
            }
            None
        };
        if claim.is_none() {
            self.hand_to_shell();
        }
        Ticket {
            driver: self.clone(),
            claim,
        }
    }

    /// Claims the connection for the one caller waiting, unless another arrived meanwhile.
    /// `claimed` is set before `waiting` is read again, and a caller arriving reads `claimed`
    /// after counting itself in `waiting`: of the two, at least one sees the other.
    fn try_claim(&self) -> Option<u64> {
        let mut route = self.route();
        if route.claim.is_some() {
            return None;
        }
        self.claimed.store(true, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) != 1 {
            self.claimed.store(false, Ordering::SeqCst);
            return None;
        }
        route.next_claim += 1;
        let id = route.next_claim;
        route.claim = Some(Claim { id, waker: None });
        Some(id)
    }

    /// Ends the claim of the caller that was alone until now: it learns it on its next poll
    /// and waits for its slot instead.
    fn end_claim_of_another(self: &Arc<Self>) {
        let mut route = self.route();
        let ended = route.claim.take();
        self.claimed.store(false, Ordering::SeqCst);
        drop(route);
        if let Some(Claim {
            waker: Some(waker), ..
        }) = ended
        {
            waker.wake();
        }
    }

    /// Ends the claim `id` if it still holds; a wake it missed goes to the shell.
    fn end_claim(self: &Arc<Self>, id: u64) {
        let mut route = self.route();
        let holds = route.claim.as_ref().is_some_and(|c| c.id == id);
        if holds {
            route.claim = None;
            self.claimed.store(false, Ordering::SeqCst);
        }
        drop(route);
        if holds {
            self.hand_to_shell();
        }
    }

    /// Polls the task once with the connection's waker, unless somebody else is polling it
    /// (they then poll again, or wake whoever polls next).
    fn drive(self: &Arc<Self>) {
        while self
            .state
            .compare_exchange(IDLE, POLLING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            if self.note_wake_during_poll() {
                return;
            }
        }
        self.missed.store(false, Ordering::SeqCst);
        self.polled.store(true, Ordering::SeqCst);
        let ended = {
            let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
            match task.as_mut() {
                Some(future) => {
                    let _runtime = self.runtime.enter();
                    let waker = Waker::from(self.clone());
                    let done = future.as_mut().poll(&mut Context::from_waker(&waker));
                    if done.is_ready() {
                        *task = None;
                        self.ended.store(true, Ordering::SeqCst);
                    }
                    done.is_ready()
                }
                None => false,
            }
        };
        let again = self
            .state
            .compare_exchange(POLLING, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err();
        if again {
            self.state.store(IDLE, Ordering::SeqCst);
            self.wake_poller();
        }
        if ended {
            self.wake_shell();
        }
    }

    /// When somebody is polling the task, has them wake it again after their poll, and returns
    /// `true`; returns `false` when nobody is.
    fn note_wake_during_poll(&self) -> bool {
        loop {
            match self.state.load(Ordering::SeqCst) {
                IDLE => return false,
                REPOLL => return true,
                _ => {
                    if self
                        .state
                        .compare_exchange(POLLING, REPOLL, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        return true;
                    }
                }
            }
        }
    }

    /// Wakes whoever polls the task now: the claiming caller, or else the shell.
    fn wake_poller(self: &Arc<Self>) {
        let route = self.route();
        match &route.claim {
            Some(claim) => {
                self.missed.store(true, Ordering::SeqCst);
                let waker = claim.waker.clone();
                drop(route);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            None => self.wake_shell_in(route),
        }
    }

    fn wake_shell(self: &Arc<Self>) {
        self.wake_shell_in(self.route());
    }

    /// Called when a caller with a request queued will not poll the task (it does not claim
    /// it, or no longer does): the shell polls it if the claiming caller missed a wake, or if
    /// the task was never polled (so nothing queued wakes it).
    fn hand_to_shell(self: &Arc<Self>) {
        let missed = self.missed.swap(false, Ordering::SeqCst);
        if missed || !self.polled.load(Ordering::SeqCst) {
            self.wake_shell();
        }
    }

    /// Wakes the shell, or spawns it (it polls the task when it first runs) if that was not
    /// done yet.
    fn wake_shell_in(self: &Arc<Self>, mut route: MutexGuard<'_, Route>) {
        let spawn = !std::mem::replace(&mut route.shell_spawned, true);
        let waker = route.shell.clone();
        drop(route);
        if spawn {
            let running = self
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            // On a runtime shutting down the shell is dropped unpolled, and drops the task.
            drop(self.runtime.spawn(Shell {
                driver: self.clone(),
                _running: running,
            }));
        } else if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Wake for Driver {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.note_wake_during_poll() {
            self.wake_poller();
        }
    }
}

impl Ticket {
    /// Whether this caller claimed the connection (and has not learnt yet that the claim ended).
    pub(super) fn claims(&self) -> bool {
        self.claim.is_some()
    }

    /// Polls the connection's task when this caller holds the claim, and makes `cx` the one
    /// woken for the task.
    pub(super) fn drive(&mut self, cx: &Context<'_>) {
        let Some(id) = self.claim else {
            return;
        };
        {
            let mut route = self.driver.route();
            match &mut route.claim {
                Some(claim) if claim.id == id => keep_waker(&mut claim.waker, cx),
                _ => {
                    self.claim = None;
                    return;
                }
            }
        }
        self.driver.drive();
    }

    /// Gives up the claim (the caller waits for its slot from now on).
    pub(super) fn unclaim(&mut self) {
        if let Some(id) = self.claim.take() {
            self.driver.end_claim(id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(id) = self.claim {
            self.driver.end_claim(id);
        }
        self.driver.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The tokio task that polls the connection's task whenever no caller claims it.
struct Shell<R> {
    driver: Arc<Driver>,
    _running: R,
}

impl<R> Future for Shell<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let driver = &self.driver;
        keep_waker(&mut driver.route().shell, cx);
        driver.drive();
        if driver.ended.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<R> Drop for Shell<R> {
    fn drop(&mut self) {
        // The runtime is shutting down (or the task ended): drop the task's future here, so that
        // its sockets close and the wakers it registered (which hold the driver) go with it.
        let task = self
            .driver
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(task);
    }
}
