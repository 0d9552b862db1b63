//! The delay line's event loop: epoll, the sockets of every pair, the release heap.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{now_ns, Event, EventKind, Shared};

/// Bytes a direction may hold before it stops reading.
const QUEUE_LIMIT: usize = 4 << 20;
/// Bytes read at once.
const READ_CHUNK: usize = 64 << 10;

const TOKEN_STOP: u64 = 0;
const TOKEN_LISTENER: u64 = 1 << 40;
const TOKEN_SOCKET: u64 = 1 << 41;

/// A chunk waiting in a direction, or the end of the stream.
enum Chunk {
    Data(Vec<u8>),
    Eof,
}

#[derive(Default)]
struct Dir {
    queue: VecDeque<Chunk>,
    queued: usize,
    /// Released, not yet written.
    out: Vec<u8>,
    out_at: usize,
    eof_read: bool,
    eof_released: bool,
    eof_sent: bool,
}

impl Dir {
    fn pending_out(&self) -> bool {
        self.out_at < self.out.len()
    }
}

/// A client connection and its connection to the target. Direction 0: client → target,
/// direction 1: target → client; socket d is read by direction d and written by 1 − d.
struct Pair {
    gen: u64,
    id: u64,
    target: usize,
    socks: [TcpStream; 2],
    dirs: [Dir; 2],
    accepted_ns: u64,
    last_read: Option<usize>,
    interest: [u32; 2],
}

/// A release: (time, sequence, slot, generation, direction), earliest first.
type Release = std::cmp::Reverse<(u64, u64, usize, u64, usize)>;

pub(super) struct Line {
    epoll: OwnedFd,
    stop_fd: RawFd,
    listeners: Vec<TcpListener>,
    targets: Vec<SocketAddr>,
    shared: Arc<Shared>,
    slots: Vec<Option<Pair>>,
    free: Vec<usize>,
    heap: BinaryHeap<Release>,
    seq: u64,
    next_gen: u64,
    scratch: Vec<u8>,
    lateness: Vec<u64>,
}

fn epoll_ctl(epoll: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: a valid epoll fd and an event struct we own.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Line {
    pub(super) fn new(
        listeners: Vec<TcpListener>,
        targets: Vec<SocketAddr>,
        shared: Arc<Shared>,
        stop_fd: RawFd,
    ) -> std::io::Result<Line> {
        // SAFETY: plain syscalls about this thread; failures only lose precision or priority.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid);
            shared.tid.store(tid, Ordering::Relaxed);
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
            let fifo = libc::sched_param { sched_priority: 1 };
            let rt = libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) == 0;
            shared.realtime.store(rt, Ordering::Relaxed);
            if !rt {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10);
            }
        }
        // SAFETY: epoll_create1 has no preconditions; the fd is owned at once.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            stop_fd,
            libc::EPOLLIN as u32,
            TOKEN_STOP,
        )?;
        for (i, l) in listeners.iter().enumerate() {
            epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                l.as_raw_fd(),
                libc::EPOLLIN as u32,
                TOKEN_LISTENER | i as u64,
            )?;
        }
        Ok(Line {
            epoll,
            stop_fd,
            listeners,
            targets,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            next_gen: 0,
            scratch: vec![0; READ_CHUNK],
            lateness: Vec::new(),
        })
    }

    pub(super) fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let timeout = self.heap.peek().map(|r| {
                let wait = r.0 .0.saturating_sub(now_ns());
                libc::timespec {
                    tv_sec: (wait / 1_000_000_000) as libc::time_t,
                    tv_nsec: (wait % 1_000_000_000) as libc::c_long,
                }
            });
            let timeout_ptr = timeout
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `events` has room for its length; the timeout lives across the call.
            let n = unsafe {
                libc::epoll_pwait2(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout_ptr,
                    std::ptr::null(),
                )
            };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            for ev in &events[..n as usize] {
                let (token, flags) = (ev.u64, ev.events);
                if token == TOKEN_STOP {
                    let _ = self.stop_fd;
                    return;
                } else if token & TOKEN_LISTENER != 0 {
                    self.accept_all((token & !TOKEN_LISTENER) as usize);
                } else if token & TOKEN_SOCKET != 0 {
                    let slot = ((token & !TOKEN_SOCKET) >> 1) as usize;
                    let side = (token & 1) as usize;
                    self.socket_event(slot, side, flags);
                }
            }
            self.release_due();
            if !self.lateness.is_empty() {
                let mut h = self
                    .shared
                    .lateness
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for &l in &self.lateness {
                    h.saturating_record(l.max(1));
                }
                self.lateness.clear();
            }
        }
    }

    fn log(&self, target: usize, conn: u64, kind: EventKind, at_ns: u64) {
        if self.shared.logging.load(Ordering::Relaxed) {
            self.shared
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Event {
                    at_ns,
                    target,
                    conn,
                    kind,
                });
        }
    }

    fn accept_all(&mut self, target: usize) {
        loop {
            let client = match self.listeners[target].accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            let now = now_ns();
            let Ok(upstream) = TcpStream::connect(self.targets[target]) else {
                continue;
            };
            if [&client, &upstream]
                .iter()
                .any(|s| s.set_nonblocking(true).is_err() || s.set_nodelay(true).is_err())
            {
                continue;
            }
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            self.next_gen += 1;
            let counters = &self.shared.counters[target];
            let id = counters.accepted.fetch_add(1, Ordering::Relaxed);
            let open = self.shared.open.fetch_add(1, Ordering::Relaxed) + 1;
            self.shared.peak.fetch_max(open, Ordering::Relaxed);
            self.log(target, id, EventKind::Accept, now);
            let pair = Pair {
                gen: self.next_gen,
                id,
                target,
                socks: [client, upstream],
                dirs: [Dir::default(), Dir::default()],
                accepted_ns: now,
                last_read: None,
                interest: [libc::EPOLLIN as u32; 2],
            };
            for side in 0..2 {
                let _ = epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    pair.socks[side].as_raw_fd(),
                    libc::EPOLLIN as u32,
                    TOKEN_SOCKET | (slot as u64) << 1 | side as u64,
                );
            }
            self.slots[slot] = Some(pair);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(pair) = self.slots[slot].take() {
            for (side, s) in pair.socks.iter().enumerate() {
                if pair.interest[side] == 0 {
                    continue;
                }
                let _ = epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    s.as_raw_fd(),
                    0,
                    0,
                );
            }
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.free.push(slot);
        }
    }

    fn socket_event(&mut self, slot: usize, side: usize, flags: u32) {
        if self.slots.get(slot).is_none_or(|p| p.is_none()) {
            return;
        }
        let mut failed = false;
        if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            failed |= !self.read(slot, side);
        }
        if flags & libc::EPOLLOUT as u32 != 0 && !failed {
            // Socket `side` is written by direction 1 − side.
            failed |= !self.flush(slot, 1 - side);
        }
        if failed {
            self.close(slot);
        } else {
            self.settle(slot);
        }
    }

    /// Closes the pair once both directions have delivered their end, else sets what epoll
    /// watches for it.
    fn settle(&mut self, slot: usize) {
        let pair = self.slots[slot].as_ref().expect("live pair");
        if pair.dirs.iter().all(|d| d.eof_sent) {
            self.close(slot);
        } else {
            self.update_interest(slot);
        }
    }

    /// Reads what socket `side` has into direction `side`; false when the pair must close.
    fn read(&mut self, slot: usize, side: usize) -> bool {
        let one_way = self.shared.hold_ns();
        loop {
            let pair = self.slots[slot].as_mut().expect("live pair");
            let dir = &mut pair.dirs[side];
            if dir.eof_read || dir.queued >= QUEUE_LIMIT {
                return true;
            }
            let n = match pair.socks[side].read(&mut self.scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            let now = now_ns();
            // The client's first bytes cannot leave before its handshake would have completed:
            // a full nominal RTT after the accept (the hold then adds the one-way trip; the
            // accept was seen as late as a read is, which the calibrated hold makes up for).
            let start = if side == 0 {
                now.max(pair.accepted_ns + 2 * self.shared.one_way_ns)
            } else {
                now
            };
            let chunk = if n == 0 {
                dir.eof_read = true;
                Chunk::Eof
            } else {
                dir.queued += n;
                Chunk::Data(self.scratch[..n].to_vec())
            };
            dir.queue.push_back(chunk);
            if n > 0 {
                if side == 1 && pair.last_read == Some(0) {
                    self.shared.counters[pair.target]
                        .turns
                        .fetch_add(1, Ordering::Relaxed);
                }
                pair.last_read = Some(side);
            }
            let (gen, target, id) = (pair.gen, pair.target, pair.id);
            self.seq += 1;
            self.heap.push(std::cmp::Reverse((
                start + one_way,
                self.seq,
                slot,
                gen,
                side,
            )));
            if n > 0 {
                let kind = if side == 0 {
                    EventKind::Up(n)
                } else {
                    EventKind::Down(n)
                };
                self.log(target, id, kind, now);
            }
            if n < self.scratch.len() {
                return true;
            }
        }
    }

    /// Moves every chunk whose time has come to its direction's output, and writes it.
    fn release_due(&mut self) {
        let now = now_ns();
        let mut touched = Vec::new();
        while let Some(&std::cmp::Reverse((at, _, slot, gen, dir))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(pair) = self.slots[slot].as_mut().filter(|p| p.gen == gen) else {
                continue;
            };
            self.lateness.push(now - at);
            let d = &mut pair.dirs[dir];
            match d.queue.pop_front() {
                Some(Chunk::Data(bytes)) => {
                    d.queued -= bytes.len();
                    if d.out_at == d.out.len() {
                        d.out.clear();
                        d.out_at = 0;
                    }
                    d.out.extend_from_slice(&bytes);
                }
                Some(Chunk::Eof) => d.eof_released = true,
                None => {}
            }
            if !touched.contains(&(slot, dir)) {
                touched.push((slot, dir));
            }
        }
        for (slot, dir) in touched {
            if self.slots[slot].is_none() {
                continue;
            }
            if self.flush(slot, dir) {
                self.settle(slot);
            } else {
                self.close(slot);
            }
        }
    }

    /// Writes direction `dir`'s released bytes to socket 1 − dir; false when the pair must
    /// close.
    fn flush(&mut self, slot: usize, dir: usize) -> bool {
        let pair = self.slots[slot].as_mut().expect("live pair");
        let (socks, dirs) = (&mut pair.socks, &mut pair.dirs);
        let d = &mut dirs[dir];
        while d.pending_out() {
            match socks[1 - dir].write(&d.out[d.out_at..]) {
                Ok(n) => d.out_at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if d.eof_released && !d.eof_sent {
            d.eof_sent = true;
            let _ = socks[1 - dir].shutdown(Shutdown::Write);
        }
        true
    }

    fn update_interest(&mut self, slot: usize) {
        let epoll = self.epoll.as_raw_fd();
        let pair = self.slots[slot].as_mut().expect("live pair");
        for side in 0..2 {
            let reading = &pair.dirs[side];
            let mut want = 0u32;
            if !reading.eof_read && reading.queued < QUEUE_LIMIT {
                want |= libc::EPOLLIN as u32;
            }
            if pair.dirs[1 - side].pending_out() {
                want |= libc::EPOLLOUT as u32;
            }
            if want != pair.interest[side] {
                // A socket that waits for nothing leaves the epoll set: a hung-up socket would
                // otherwise be reported (EPOLLHUP) on every wait.
                let op = match (pair.interest[side], want) {
                    (0, _) => libc::EPOLL_CTL_ADD,
                    (_, 0) => libc::EPOLL_CTL_DEL,
                    _ => libc::EPOLL_CTL_MOD,
                };
                pair.interest[side] = want;
                let _ = epoll_ctl(
                    epoll,
                    op,
                    pair.socks[side].as_raw_fd(),
                    want,
                    TOKEN_SOCKET | (slot as u64) << 1 | side as u64,
                );
            }
        }
    }
}
