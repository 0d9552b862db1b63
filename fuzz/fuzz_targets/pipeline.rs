//! The pure core of one pipelined connection (`memcached_autodiscovery_proto::pipeline`) against
//! operation sequences read from the input: requests of every kind pushed (callers present or
//! already gone, any idempotent flag), bytes written, the honest server's replies cut anywhere,
//! bytes of the fuzzer's choosing from the server, callers leaving, connections broken for any
//! reason and the replayed requests taken by the next one.
//!
//! The model and the input format are those of `proto/tests/pipeline/model.rs` (shared with the
//! property tests, which run the same model on random bytes). It panics when the pipeline
//! breaks a rule: a caller not answered exactly once (a caller refused by `push` because it had
//! left is dropped unanswered instead), bytes written that are not the taken frames in order, a
//! reply handed to a caller other than the oldest in flight, a caller given another request's
//! reply while the server told no lie, a replay the rule does not allow or a close error given
//! to the wrong callers.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../proto/tests/pipeline/model.rs"]
mod model;

fuzz_target!(|data: &[u8]| {
    // Long inputs add nothing a sequence of short ones does not, and slow every run.
    if data.len() <= 2048 {
        model::Model::run(&model::ops_from_bytes(data));
    }
});
