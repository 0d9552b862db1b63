//! What the emulated servers (the configuration endpoint, the node fronts) share: each serves
//! its listener on a thread of its own with a current-thread tokio runtime, so that it keeps
//! answering whatever runtime, or none, the test using it has; their accept loop, whose port can
//! be closed (connects refused) and bound again; and their state's mutexes, read through
//! poisoning (a panicking test thread must not wedge a server).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `serve` over `listener` on a new thread named `name`. Dropping the runtime when `serve`
/// returns cancels every connection task it spawned.
pub(crate) fn spawn_server<F, Fut>(
    name: &str,
    listener: StdListener,
    serve: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let label = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener).await,
                    Err(e) => tracing::error!(error = %e, server = %label, "cannot listen"),
                }
            });
        })
}

/// What a switchable listener's control says now.
pub(crate) struct Switch {
    /// Stop serving for good.
    pub shutdown: bool,
    /// Listen (`false`: drop the listener, so that connects are refused).
    pub open: bool,
}

/// What happened to a switchable listener, for its owner's status.
pub(crate) enum Listening {
    /// Listening now (bound again after a close).
    Started,
    /// The listener was dropped: connects are refused.
    Stopped,
    /// Binding the port again failed; retried every 50 ms or at the next control change.
    BindFailed(io::Error),
}

/// The accept loop of a server whose port can be closed and bound again: reads `control` at
/// every change, drops the listener while `switch` says closed and binds `addr` again when it
/// says open, reports each of these to `status`, and hands every accepted stream to `accept`
/// with the control value it was accepted under. Ends on shutdown or when the control's sender
/// is gone.
pub(crate) async fn accept_while_open<C: Copy>(
    addr: SocketAddr,
    first: TcpListener,
    mut control: watch::Receiver<C>,
    switch: impl Fn(&C) -> Switch,
    status: impl Fn(Listening),
    mut accept: impl FnMut(TcpStream, C),
) {
    let mut listener = Some(first);
    loop {
        let now = *control.borrow_and_update();
        let Switch { shutdown, open } = switch(&now);
        if shutdown {
            return;
        }
        if !open && listener.is_some() {
            listener = None;
            status(Listening::Stopped);
        } else if open && listener.is_none() {
            // tokio sets SO_REUSEADDR: the closed connections' TIME_WAIT does not block this.
            match TcpListener::bind(addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    status(Listening::Started);
                }
                Err(e) => {
                    status(Listening::BindFailed(e));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = control.changed() => {}
                    }
                    continue;
                }
            }
        }
        let Some(bound) = listener.as_ref() else {
            if control.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = bound.accept() => match accepted {
                Ok((stream, _)) => accept(stream, now),
                Err(e) => {
                    tracing::debug!(error = %e, %addr, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            changed = control.changed() => if changed.is_err() { return },
        }
    }
}
