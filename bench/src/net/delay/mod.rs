//! The delay line: one TCP forwarding proxy per target (every node, and the configuration
//! endpoint), all on one OS thread of their own, that hold every chunk they read for the
//! one-way delay before writing it on.
//!
//! Each accepted connection gets a connection of its own to its target (TCP_NODELAY on both).
//! In each direction a chunk read at time t is released at t + one-way (a timer heap, ordered by
//! release time; many chunks of many connections are in the line at once, each direction keeps
//! its order), then written. The connection handshake is not delayed by the kernel (the client's
//! `connect` completes on loopback), so the line charges it where the other end would see it:
//! what the client sends before accept + RTT leaves as if sent at accept + RTT, as the first
//! byte of a client that connects over a link of that RTT does (memcached and TLS clients speak
//! first). A direction stops reading while 4 MiB wait in it.
//!
//! The loop is `epoll_pwait2` (a nanosecond timeout, timer slack 1 ns), level-triggered,
//! non-blocking sockets. The thread runs SCHED_FIFO (priority 1; nice −10 if that is refused)
//! so that the line stays on time on a busy machine; how late each release really left is kept
//! ([`Shared::lateness`]). The hold is the one-way delay less the line's own wake-ups, as the
//! harness calibrates it ([`Shared::set_hold_ns`]). Its CPU time is read from
//! `/proc/self/task/TID/schedstat`, so that it can be taken out of the client's.
//!
//! Files: this one (the line's handle, what it shares with the harness), `event_loop.rs` (the
//! loop).
//!
//! Counters for the cold-start count: per target, connections accepted and *turns* (a chunk
//! from the target read after a chunk from the client on the same connection: one request/
//! response exchange); and, while [`Shared::log`] is on, every accept and chunk with its time.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;

use event_loop::Line;

mod event_loop;

/// Listener backlog (pools open hundreds of connections at once).
const BACKLOG: u32 = 4096;

/// CLOCK_MONOTONIC in nanoseconds (the clock of `Instant` on Linux).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the line records while its log is on.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub at_ns: u64,
    pub target: usize,
    pub conn: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Accept,
    /// Bytes read from the client.
    Up(usize),
    /// Bytes read from the target.
    Down(usize),
}

/// Per-target counters.
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub turns: AtomicU64,
}

/// What the line and the harness share.
pub struct Shared {
    /// The one-way delay asked for.
    pub one_way_ns: u64,
    /// What the line holds each chunk: the one-way delay less the line's own wake-up time, as
    /// calibrated ([`Shared::set_hold_ns`]); starts at the one-way delay.
    hold_ns: AtomicU64,
    pub counters: Vec<Counters>,
    /// Client connections open now, and the most open at once since [`Shared::reset_peak`].
    pub open: AtomicUsize,
    pub peak: AtomicUsize,
    /// How late each release left (ns after its release time), since the last take.
    pub lateness: Mutex<Histogram<u64>>,
    pub logging: AtomicBool,
    pub log: Mutex<Vec<Event>>,
    pub(super) tid: AtomicI64,
    /// Whether the line's thread runs SCHED_FIFO (else nice −10).
    pub realtime: AtomicBool,
}

impl Shared {
    /// A record of no line (`targets` counters that stay 0), for the loopback network.
    pub fn idle(targets: usize) -> Shared {
        Shared {
            one_way_ns: 0,
            hold_ns: AtomicU64::new(0),
            counters: (0..targets).map(|_| Counters::default()).collect(),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            lateness: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            ),
            logging: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            tid: AtomicI64::new(0),
            realtime: AtomicBool::new(false),
        }
    }

    pub fn hold_ns(&self) -> u64 {
        self.hold_ns.load(Ordering::Relaxed)
    }

    pub fn set_hold_ns(&self, ns: u64) {
        self.hold_ns.store(ns, Ordering::Relaxed);
    }

    pub fn reset_peak(&self) {
        self.peak
            .store(self.open.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The lateness histogram so far, leaving an empty one.
    pub fn take_lateness(&self) -> Histogram<u64> {
        let mut h = self.lateness.lock().unwrap_or_else(|p| p.into_inner());
        let out = h.clone();
        h.reset();
        out
    }

    /// CPU time of the line's thread, in nanoseconds (0 if it cannot be read).
    pub fn cpu_ns(&self) -> u64 {
        let tid = self.tid.load(Ordering::Relaxed);
        std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// (connections accepted, turns) summed over every target.
    pub fn totals(&self) -> Vec<(u64, u64)> {
        self.counters
            .iter()
            .map(|c| {
                (
                    c.accepted.load(Ordering::Relaxed),
                    c.turns.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// The running line; dropping it stops the thread and closes every connection.
pub struct DelayLine {
    pub shared: Arc<Shared>,
    /// Where clients connect for each target, in the order of the targets given.
    pub fronts: Vec<SocketAddr>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Starts one proxy per `(listen, target)`: `listen` with port 0 takes a free port.
    pub fn start(
        routes: &[(SocketAddr, SocketAddr)],
        one_way: Duration,
    ) -> std::io::Result<DelayLine> {
        let mut listeners = Vec::new();
        let mut fronts = Vec::new();
        for &(listen, _) in routes {
            let listener = listen_on(listen)?;
            fronts.push(listener.local_addr()?);
            listeners.push(listener);
        }
        let shared = Arc::new(Shared {
            one_way_ns: one_way.as_nanos() as u64,
            hold_ns: AtomicU64::new(one_way.as_nanos() as u64),
            ..Shared::idle(routes.len())
        });
        // SAFETY: eventfd has no preconditions; the fd is owned at once.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if stop < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `stop` is a fresh fd that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let targets: Vec<SocketAddr> = routes.iter().map(|r| r.1).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("delay-line".into())
                .spawn(move || {
                    let mut line = match Line::new(listeners, targets, shared, stop_fd) {
                        Ok(line) => line,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    line.run();
                })?
        };
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the delay line did not start"))??;
        Ok(DelayLine {
            shared,
            fronts,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        // SAFETY: writing 8 bytes to our own eventfd.
        unsafe { libc::eventfd_write(self.stop.as_raw_fd(), 1) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // SAFETY: the socket is ours; listen(2) on a bound socket, then handed to std.
    let fd = std::os::fd::IntoRawFd::into_raw_fd(socket);
    if unsafe { libc::listen(fd, BACKLOG as i32) } != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing the fd we own.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    // SAFETY: `fd` is a listening TCP socket we own.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}
