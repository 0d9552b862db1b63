//! The clock the criterion benchmarks read around the timed code, and the plain timing loop over it: wall time, or with
//! `BENCH_CLOCK=cpu` the CPU time of the benchmark thread, which other jobs on a shared machine
//! do not inflate. Included by each benchmark with `#[path]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Bencher;

/// The clock read around the timed code.
pub enum Clock {
    Wall(Instant),
    ThreadCpu,
}

impl Clock {
    pub fn from_env() -> Clock {
        match std::env::var("BENCH_CLOCK").as_deref() {
            Ok("cpu") => Clock::ThreadCpu,
            _ => Clock::Wall(Instant::now()),
        }
    }

    /// Nanoseconds since an arbitrary origin.
    pub fn now(&self) -> u64 {
        match self {
            Clock::Wall(origin) => origin.elapsed().as_nanos() as u64,
            Clock::ThreadCpu => thread_cpu_ns(),
        }
    }
}

/// CPU time used by the calling thread, in ns.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: std::ffi::c_long,
        tv_nsec: std::ffi::c_long,
    }
    extern "C" {
        fn clock_gettime(clock: std::ffi::c_int, out: *mut Timespec) -> std::ffi::c_int;
    }
    const CLOCK_THREAD_CPUTIME_ID: std::ffi::c_int = 3;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec (two C longs on Linux) for the call's duration.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> u64 {
    panic!("BENCH_CLOCK=cpu is only implemented on Linux")
}

/// Times `routine` called `iters` times in a row.
pub fn looped<O>(b: &mut Bencher<'_>, mut routine: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let clock = Clock::from_env();
        let start = clock.now();
        for _ in 0..iters {
            black_box(routine());
        }
        Duration::from_nanos(clock.now() - start)
    })
}
