//! One connection task against a scripted server: requests of every kind, callers cancelled at
//! any await point, replies cut anywhere, connections closed and refused, the clock moved, and
//! (in lying sessions) bytes of the fuzzer's choosing from the server. The script format and
//! the properties checked are those of `memcached_autodiscovery::fuzzing`: a caller never
//! receives another request's reply, never waits past its timeout, the connection serves again
//! once the server behaves, and the task ends with its last handle.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: &[u8]| {
    // Long scripts add nothing a sequence of short ones does not, and slow every run.
    if script.len() <= 4096 {
        memcached_autodiscovery::fuzzing::connection_session(script);
    }
});
