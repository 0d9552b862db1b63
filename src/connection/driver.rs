//! Who polls the socket task. The task ([`super::task::run`]) is one future, kept here behind a
//! lock. A spawned shell task polls it, as any spawned task would; and a caller whose request
//! is the only one on the connection may poll it too, from its own task, while it waits for
//! its reply. Its request then goes out at once, and its reply is read and dispatched as soon
//! as the caller's task runs, without first waiting for the shell task's turn on the runtime
//! (and, on a multi-thread runtime, a wake-up of another thread).
//!
//! Whoever polls runs the same code on the same state: the task's future and its pipeline keep
//! every rule (FIFO matching, deadlines, replies of callers that left). A caller that is dropped
//! at any point simply stops polling: the lock is only held during a poll, never across an
//! await, and every waker the task registers wakes the shell task, which carries on. So the
//! fast path adds no way for a reply to reach another caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The socket task's future and who to wake for it.
pub(super) struct Driver {
    task: Mutex<Option<Task>>,
    wakers: Arc<Wakers>,
    /// Callers that queued a request and have not taken their reply yet.
    waiting: AtomicUsize,
}

/// The waker the task is polled with: it wakes the shell task and, while one polls the task
/// too, the caller.
#[derive(Default)]
struct Wakers {
    shell: Mutex<Option<Waker>>,
    caller: Mutex<Option<Waker>>,
    /// The shell task was woken while a caller held the task: the caller wakes it again after.
    missed: AtomicBool,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The caller first: on a current-thread runtime it then runs first, and reads its reply
        // itself; the shell task finds nothing left to do.
        let caller = lock(&self.caller).take();
        let shell = lock(&self.shell).clone();
        if let Some(w) = caller {
            w.wake();
        }
        if let Some(w) = shell {
            w.wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Driver {
    /// Keeps `task` and spawns the shell task that polls it.
    pub(super) fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Arc<Driver> {
        let driver = Arc::new(Driver {
            task: Mutex::new(Some(Box::pin(task))),
            wakers: Arc::default(),
            waiting: AtomicUsize::new(0),
        });
        let shell = driver.clone();
        tokio::spawn(std::future::poll_fn(move |cx| shell.poll_shell(cx)));
        driver
    }

    /// The shell task's poll: `Ready` once the socket task has ended.
    fn poll_shell(&self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut shell = lock(&self.wakers.shell);
            if !shell.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *shell = Some(cx.waker().clone());
            }
        }
        let mut task = match self.task.try_lock() {
            Ok(task) => task,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // A caller is polling the task: it wakes the shell when it is done.
                self.wakers.missed.store(true, Ordering::Release);
                return Poll::Pending;
            }
        };
        let Some(fut) = task.as_mut() else {
            return Poll::Ready(());
        };
        let waker = Waker::from(self.wakers.clone());
        match fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(()) => {
                *task = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A caller whose request is the only one waiting is woken with the task, and once the
    /// task has taken its request (`taken`: nothing is left in the queue) polls the task from
    /// its own task (see the module docs). Does nothing when other callers wait.
    ///
    /// The request itself is always taken off the queue on the task's own turn, never by the
    /// caller's first poll: a caller dropped before that turn still has nothing of its request
    /// written.
    pub(super) fn poll_alone(&self, cx: &mut Context<'_>, taken: bool) {
        if self.waiting.load(Ordering::Acquire) != 1 {
            return;
        }
        {
            let mut caller = lock(&self.wakers.caller);
            if !caller.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *caller = Some(cx.waker().clone());
            }
        }
        if !taken {
            return;
        }
        let Ok(mut task) = self.task.try_lock() else {
            return;
        };
        if let Some(fut) = task.as_mut() {
            let waker = Waker::from(self.wakers.clone());
            if fut
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                *task = None;
            }
        }
        drop(task);
        if self.wakers.missed.swap(false, Ordering::AcqRel) {
            if let Some(shell) = lock(&self.wakers.shell).clone() {
                shell.wake();
            }
        }
    }

    /// Counts a caller waiting for its reply until the returned guard is dropped.
    pub(super) fn waiting(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(self.clone())
    }
}

/// A caller waiting for its reply (see [`Driver::waiting`]).
pub(super) struct Waiting(Arc<Driver>);

impl Waiting {
    pub(super) fn driver(&self) -> &Driver {
        &self.0
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        // A caller that polled the task is done: it is not to be woken for it any more.
        if self.0.waiting.load(Ordering::Acquire) == 0 {
            if let Ok(mut caller) = self.0.wakers.caller.try_lock() {
                *caller = None;
            }
        }
    }
}
