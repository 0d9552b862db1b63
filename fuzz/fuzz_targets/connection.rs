//! The client, built as any user builds it but dialing in-memory pipes, against a scripted
//! server: calls of every kind, callers cancelled at any await point, replies cut anywhere,
//! connections closed and refused, the clock moved, and (in lying sessions) bytes of the
//! fuzzer's choosing from the server. The script format and the properties checked are those of
//! `memcached_autodiscovery_harness` (`harness/`): a caller never receives another
//! call's result, never waits past its timeout, the client writes only whole requests of the
//! calls made and a request that is not idempotent at most once, serves again once the server
//! behaves, and closes its connection with its last clone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: &[u8]| {
    // Long scripts add nothing a sequence of short ones does not, and slow every run.
    if script.len() <= 4096 {
        memcached_autodiscovery_harness::connection_session(script);
    }
});
