//! What the harness reads from the operating system: its own CPU time, the memcached
//! processes' CPU time and the number of sockets it holds open.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// User plus system CPU time of this process, in microseconds (`getrusage(RUSAGE_SELF)`).
pub fn self_cpu_micros() -> u64 {
    // SAFETY: `getrusage` only writes into the zeroed struct we pass it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// User plus system CPU time of the given processes, in microseconds, from `/proc/PID/stat`.
/// Processes that cannot be read count as zero.
pub fn procs_cpu_micros(pids: &[u32]) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The command name is in parentheses and may hold spaces: fields start after ')'.
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After ')' the fields are numbered from 3 (state); utime is 14, stime 15.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 1_000_000 / ticks)
        })
        .sum()
}

/// Open file descriptors of this process that are sockets.
pub fn socket_count() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Samples [`socket_count`] four times a second on its own thread and keeps the maximum.
pub struct SocketSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl SocketSampler {
    /// Starts sampling now.
    pub fn start() -> SocketSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(socket_count()));
        let handle = {
            let (stop, max) = (stop.clone(), max.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    max.fetch_max(socket_count(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        SocketSampler {
            stop,
            max,
            handle: Some(handle),
        }
    }

    /// Stops sampling (taking one last sample) and returns the largest count seen.
    pub fn finish(mut self) -> usize {
        self.max.fetch_max(socket_count(), Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for SocketSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in KiB; 0 if it cannot be read.
fn status_kib(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process now (`VmRSS`), in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// The highest resident memory of this process since it started or since [`reset_peak_rss`]
/// (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM")
}

/// Resets `VmHWM` to the current resident memory (writes `5` to `/proc/self/clear_refs`);
/// false if the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Gives the allocator's free memory back to the system (glibc `malloc_trim(0)`), so that a
/// reading of [`rss_kib`] taken next holds little that is free; does nothing elsewhere.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
