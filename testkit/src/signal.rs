//! Stopping and continuing a process from Rust (SIGSTOP and SIGCONT through `kill(2)`, no
//! `kill` program needed), and reading whether its threads are stopped. Used by
//! [`MemcachedProcess::freeze`](crate::MemcachedProcess::freeze) and `thaw`; it owns no
//! process.

use std::io;

/// The signals [`MemcachedProcess::freeze`](crate::MemcachedProcess::freeze) and
/// [`MemcachedProcess::thaw`](crate::MemcachedProcess::thaw) send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Continue,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Stop => "SIGSTOP",
            Signal::Continue => "SIGCONT",
        }
    }
}

/// A signal the OS refused to deliver: which one, to whom, and the OS error (its `source`).
#[derive(Debug)]
struct SignalError {
    signal: Signal,
    pid: u32,
    os: io::Error,
}

impl std::fmt::Display for SignalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot send {} to memcached {}: {}",
            self.signal.name(),
            self.pid,
            self.os
        )
    }
}

impl std::error::Error for SignalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.os)
    }
}

/// Sends `signal` to the one process `pid`. A pid that is not a positive `i32` is refused
/// (`InvalidInput`) before any call: `kill(2)` reads 0 and negative numbers as process groups
/// (-1: every process it may signal).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    let target = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pid {pid} names no single process"),
            )
        })?;
    let number = match signal {
        Signal::Stop => libc::SIGSTOP,
        Signal::Continue => libc::SIGCONT,
    };
    // SAFETY: kill(2) takes two integers and touches no memory of this process; `target` is
    // positive, so exactly one process (the child this handle owns, not yet reaped) is signalled.
    if unsafe { libc::kill(target, number) } == 0 {
        return Ok(());
    }
    let os = io::Error::last_os_error();
    Err(io::Error::new(os.kind(), SignalError { signal, pid, os }))
}

#[cfg(not(unix))]
pub(crate) fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "cannot send {} to memcached {pid}: no signals here",
            signal.name()
        ),
    ))
}

/// The scheduler state letter of each thread of `pid`, or `None` without a readable procfs.
pub(crate) fn thread_states(pid: u32) -> Option<Vec<char>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut states = Vec::new();
    for task in tasks.flatten() {
        // `<tid> (<comm>) <state> ...`: the name may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread just exited
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        states.extend(state);
    }
    Some(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn pids_that_name_a_group_are_refused_before_any_signal() {
        // 0 is this process's group; as i32, u32::MAX is -1 (every process it may signal) and
        // 1 << 31 a group id. SIGCONT, so that a broken guard here harms nothing.
        for pid in [0, u32::MAX, 1 << 31] {
            let e = send_signal(pid, Signal::Continue).expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{pid}: {e}");
            assert!(e.raw_os_error().is_none(), "{pid}: refused before the call");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_refused_signal_is_a_typed_error_with_its_errno() {
        // The largest pid there can be is far below i32::MAX (pid_max is at most 2^22): no such
        // process.
        let e = send_signal(i32::MAX as u32, Signal::Continue).expect_err("no such process");
        assert_eq!(
            e.to_string(),
            format!(
                "cannot send SIGCONT to memcached {}: {}",
                i32::MAX,
                io::Error::from_raw_os_error(libc::ESRCH)
            )
        );
        let os = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .expect("the OS error as source");
        assert_eq!(os.raw_os_error(), Some(libc::ESRCH));
        assert_eq!(e.kind(), os.kind());
    }
}
