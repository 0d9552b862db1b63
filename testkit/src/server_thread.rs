//! What the emulated servers (the configuration endpoint, the node fronts) share: each serves
//! its listener on a thread of its own with a current-thread tokio runtime, so that it keeps
//! answering whatever runtime, or none, the test using it has; and their state's mutexes are
//! read through poisoning (a panicking test thread must not wedge a server).

use std::future::Future;
use std::io;
use std::net::TcpListener as StdListener;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::net::TcpListener;

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
