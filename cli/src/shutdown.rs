//! Waiting for the user to stop a long-running command (Ctrl-C, or SIGTERM on Unix).

use std::io;

/// Signal handlers, installed when this is created: a signal that arrives before
/// [`Shutdown::wait`] is polled is not lost.
pub struct Shutdown {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub fn install() -> io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Shutdown {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Shutdown {})
        }
    }

    /// Resolves when the user asks the command to stop.
    pub async fn wait(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            // Without a handler the default action would end the process abruptly, so an
            // error here leaves nothing better to do than to stop now.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
