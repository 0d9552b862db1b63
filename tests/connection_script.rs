//! The client under scripted faults, through its `Dial` seam: named scripts for the cases the
//! fuzz target `connection` is built to find, each checking that the script did exercise its
//! case, then every input of the fuzz corpus replayed. The promises themselves (own typed
//! result or an error, no wait past the timeout, only whole requests of the calls made, at most
//! once for a request that is not idempotent, serves again, closes with its last clone) are
//! checked inside `connection_session` for every script; see
//! `harness/src/lib.rs` (the crate `memcached-autodiscovery-harness`).

use std::path::Path;

use memcached_autodiscovery_harness::{
    connection_session, Cancel, Kind, Op, ScriptBuilder, SessionReport, Setup,
};

const HONEST: Setup = Setup {
    lies: false,
    queue_depth: 8,
    timeout_ms: 101,
    pipe_capacity: 1021,
};

fn call(kind: Kind, keys: u8, cancel: Cancel) -> Op {
    Op::Call { kind, keys, cancel }
}

fn get(cancel: Cancel) -> Op {
    call(Kind::Get, 1, cancel)
}

#[test]
fn cancelled_callers_never_take_a_later_callers_reply() {
    // Eight gets in flight; every other caller gives up in a different way while the replies
    // trickle in three bytes at a time.
    let cancels = [
        Cancel::Never,
        Cancel::AfterPolls(1),
        Cancel::Never,
        Cancel::Race(2),
        Cancel::Never,
        Cancel::Timeout(0),
        Cancel::Never,
        Cancel::Race(9),
    ];
    let script = cancels
        .iter()
        .fold(ScriptBuilder::new(HONEST), |s, &c| s.then(get(c)))
        .then(Op::Yield(7))
        .then(Op::ServeAll)
        .then(Op::Answer(4))
        .then(Op::Answer(4))
        .repeat(200, Op::Flush(Some(3)))
        .build();
    let report = connection_session(&script);
    assert_eq!(report.calls, 8);
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.checked + report.cancelled, 8, "{report:?}");
    // The four that never give up are checked; a racing branch of 9 turns may lose to its
    // reply, the others always cancel.
    assert!(report.cancelled >= 3 && report.checked >= 4, "{report:?}");
    // Callers that left before their request was written (dropped right after queueing it)
    // were skipped: fewer than 8 requests (plus the final check) reached the server.
    assert!(report.requests_read < 8 + 1, "{report:?}");
}

#[test]
fn a_reply_cut_at_every_byte_is_read_whole() {
    let script = ScriptBuilder::new(HONEST)
        .then(call(Kind::GetMany, 4, Cancel::Never))
        .then(call(Kind::Gets, 1, Cancel::Never))
        .then(call(Kind::Stats, 0, Cancel::Never))
        .then(call(Kind::Incr, 1, Cancel::Never))
        .then(Op::ServeAll)
        .then(Op::Answer(4))
        .repeat(400, Op::Flush(Some(1)))
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (4, 0), "{report:?}");
}

#[test]
fn a_one_byte_pipe_cuts_every_request_and_every_reply() {
    let setup = Setup {
        pipe_capacity: 1,
        timeout_ms: 501,
        ..HONEST
    };
    let kinds = [Kind::Set, Kind::Cas, Kind::Gat, Kind::Append, Kind::Touch];
    let script = kinds
        .iter()
        .fold(ScriptBuilder::new(setup), |s, &k| {
            s.then(call(k, 1, Cancel::Never))
        })
        .repeat(40, Op::ServeAll)
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (5, 0), "{report:?}");
}

/// Four requests, two that may be sent twice (get, set) and two that may not (incr, delete);
/// the server reads them, writes five bytes of the first reply and closes the connection;
/// then it behaves.
fn mid_reply_close(script: ScriptBuilder) -> ScriptBuilder {
    script
        .then(get(Cancel::Never))
        .then(call(Kind::Set, 1, Cancel::Never))
        .then(call(Kind::Incr, 1, Cancel::Never))
        .then(call(Kind::Delete, 1, Cancel::Never))
        .then(Op::Yield(7))
        .then(Op::Answer(4))
        .then(Op::Flush(Some(5)))
        .then(Op::Yield(7))
        .then(Op::Close)
        .repeat(5, Op::ServeAll)
}

#[test]
fn a_connection_that_served_and_breaks_mid_reply_sends_again_only_what_may_be_sent_twice() {
    // One good reply first: the connection has served, so a break is a broken socket (as
    // after a Lambda freeze), not a failing node. get and set go out again on a new
    // connection; incr and delete fail rather than risk running twice.
    let served = ScriptBuilder::new(HONEST)
        .then(get(Cancel::Never))
        .then(Op::Yield(7))
        .then(Op::ServeAll);
    let report = connection_session(&mid_reply_close(served).build());
    assert_eq!(report.connections, 2, "{report:?}");
    assert_eq!((report.checked, report.errors), (1 + 2, 2), "{report:?}");
    // 1 + 4 on the first connection, get and set again on the second, then the final check.
    assert_eq!(report.requests_read, 1 + 4 + 2 + 1, "{report:?}");
}

#[test]
fn a_new_connection_that_breaks_before_any_reply_fails_its_requests_without_retry() {
    // No good reply yet: a failing node (it may hang up on every connection). Everything fails
    // at once and the node is left alone for a backoff, instead of a second connection.
    let report = connection_session(&mid_reply_close(ScriptBuilder::new(HONEST)).build());
    assert_eq!((report.checked, report.errors), (0, 4), "{report:?}");
    // The four, then (after the backoff) only the final check on a second connection.
    assert_eq!(report.requests_read, 4 + 1, "{report:?}");
}

#[test]
fn a_silent_server_times_out_every_caller_then_a_new_connection_serves() {
    let script = ScriptBuilder::new(HONEST)
        .repeat(6, get(Cancel::Never))
        .then(call(Kind::Decr, 1, Cancel::Never))
        .then(Op::Sleep(250))
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (0, 7), "{report:?}");
    assert_eq!(report.connections, 2, "{report:?}");
}

#[test]
fn refused_connects_fail_the_callers_and_the_node_is_tried_again_later() {
    // One refusal: the first three callers fail with it; three more, during the backoff, fail
    // at once without a connect (one would have succeeded); after the backoff it connects.
    let script = ScriptBuilder::new(HONEST)
        .then(Op::Refuse(1))
        .repeat(3, get(Cancel::Never))
        .then(Op::Yield(7))
        .repeat(3, get(Cancel::Never))
        .then(Op::Yield(7))
        .then(Op::Sleep(150))
        .repeat(3, get(Cancel::Never))
        .then(Op::Yield(7))
        .repeat(3, Op::ServeAll)
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (3, 6), "{report:?}");
    assert_eq!(report.connections, 1, "{report:?}");
}

#[test]
fn requests_queued_when_the_node_fails_do_not_open_a_connection_during_its_backoff() {
    // Three gets are written; three more are queued just as the server hangs up before any
    // reply. The node is then down: the queued three fail with it instead of reconnecting.
    let script = ScriptBuilder::new(HONEST)
        .repeat(3, get(Cancel::Never))
        .then(Op::Yield(7))
        .repeat(3, get(Cancel::Never))
        .then(Op::Close)
        .then(Op::Yield(7))
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (0, 6), "{report:?}");
    // The first connection, then (after the backoff) the final check's.
    assert_eq!(report.connections, 2, "{report:?}");
}

#[test]
fn callers_waiting_for_room_in_a_full_queue_keep_their_deadline() {
    let setup = Setup {
        queue_depth: 1,
        timeout_ms: 21,
        ..HONEST
    };
    let script = ScriptBuilder::new(setup)
        .repeat(30, get(Cancel::Never))
        .then(Op::Sleep(100))
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (0, 30), "{report:?}");
}

#[test]
fn aborted_callers_leave_the_connection_in_sync() {
    let script = ScriptBuilder::new(HONEST)
        .repeat(6, call(Kind::Gets, 1, Cancel::Never))
        .then(Op::Yield(3))
        .then(Op::Abort(1))
        .then(Op::Abort(4))
        .repeat(3, Op::ServeAll)
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.cancelled), (4, 2), "{report:?}");
    // The aborted callers' requests were written; their replies were read and discarded.
    assert_eq!(report.requests_read, 6 + 1, "{report:?}");
}

/// Rounds of three gets answered, then two gets read and left unanswered while the server
/// lies.
fn lying(lies: &[&[u8]]) -> SessionReport {
    let setup = Setup {
        lies: true,
        ..HONEST
    };
    let script = lies
        .iter()
        .fold(ScriptBuilder::new(setup), |s, lie| {
            s.repeat(3, get(Cancel::Never))
                .then(Op::Yield(7))
                .then(Op::ServeAll)
                .repeat(2, get(Cancel::Never))
                .then(Op::Yield(7))
                .then(Op::Lie(lie.to_vec()))
                .then(Op::Sleep(20))
        })
        .build();
    let report = connection_session(&script);
    assert!(report.lied, "{report:?}");
    // The gets answered before the first lie got their own values, and the final call was
    // served on a connection opened after the lie.
    assert_eq!(report.checked, 3, "{report:?}");
    assert!(report.connections > lies.len(), "{report:?}");
    report
}

#[test]
fn a_lying_server_gets_a_protocol_error_and_the_next_connection_serves() {
    // A reply that cannot be one: both waiting gets fail (a protocol error, or for a TLS
    // record the error that says the server requires TLS), and nothing is sent again.
    for lie in [
        &b"garbage\r\n"[..],
        b"VALUE k1 0 4294967296\r\n",
        b"VALUE k1 0 5\r\nabcdefgh\r\nEND\r\n",
        b"\x16\x03\x01\x00\x05hello\r\n",
    ] {
        let report = lying(&[lie]);
        assert_eq!(report.errors, 2, "{:?}: {report:?}", lie.escape_ascii());
        assert_eq!(report.requests_read, 3 + 2 + 1, "{report:?}");
    }
    // The start of a reply that never ends (no line end, far below the 8 KiB line limit):
    // the gets wait; when the server hangs up they go out again on a new connection, as
    // gets may.
    for lie in [&[b'x'; 47][..], b"\x16\x03\x01\x00"] {
        let report = lying(&[lie]);
        assert_eq!(report.errors, 0, "{:?}: {report:?}", lie.escape_ascii());
        assert_eq!(report.requests_read, 3 + 2 + 2 + 1, "{report:?}");
    }
    let report = lying(&[b"STORED\r\n", b"END\r\n", b"\x16\x03\x01\x00"]);
    assert!(report.errors >= 2, "{report:?}");
}

/// Every kind of call, four rounds, all answered: each caller gets its own typed result,
/// server errors, misses and `NOT_STORED` among them.
#[test]
fn every_call_of_the_client_gets_its_own_typed_result() {
    let script = (0..4)
        .fold(ScriptBuilder::new(HONEST), |s, round| {
            Kind::ALL.iter().fold(s, |s, &kind| {
                s.then(call(kind, 1 + round, Cancel::Never))
                    .then(Op::ServeAll)
            })
        })
        .build();
    let report = connection_session(&script);
    let calls = 4 * Kind::ALL.len();
    assert_eq!(report.calls, calls, "{report:?}");
    assert_eq!((report.checked, report.errors), (calls, 0), "{report:?}");
    // Four refused, never sent; every other call read once, then the final check.
    assert_eq!(report.refused, 4, "{report:?}");
    assert_eq!(report.requests_read, calls - 4 + 1, "{report:?}");
}

#[test]
fn calls_the_client_must_refuse_send_nothing_and_disturb_no_one() {
    // Refused calls between pipelined gets, with the replies fed a few bytes at a time.
    let script = (0..6)
        .fold(ScriptBuilder::new(HONEST), |s, _| {
            s.then(get(Cancel::Never))
                .then(call(Kind::Invalid, 1, Cancel::Never))
        })
        .then(Op::Yield(7))
        .then(Op::ServeAll)
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (12, 0), "{report:?}");
    assert_eq!(report.refused, 6, "{report:?}");
    assert_eq!(report.requests_read, 6 + 1, "{report:?}");
}

#[test]
fn callers_dropped_after_a_few_polls_leave_the_connection_in_sync() {
    // Queue depth 1: a caller may wait for room before its request is queued, so a future
    // dropped after its second or third poll is dropped at another await point than after
    // its first.
    let setup = Setup {
        queue_depth: 1,
        ..HONEST
    };
    // A get first, unanswered until the server serves: the callers below are never alone on
    // the connection, so none of them polls the connection's task itself (a lone caller writes
    // its request in its first poll) and each waits for the task's queue as described.
    let script = (1..=4)
        .fold(
            ScriptBuilder::new(setup).then(get(Cancel::Never)),
            |s, polls| {
                s.then(call(Kind::GetMany, 2, Cancel::AfterPolls(polls)))
                    .then(get(Cancel::Never))
            },
        )
        .then(Op::Yield(7))
        .then(Op::ServeAll)
        .then(Op::Answer(4))
        .repeat(200, Op::Flush(Some(5)))
        .build();
    let report = connection_session(&script);
    assert_eq!(report.errors, 0, "{report:?}");
    // Dropped after one poll (waiting for room) and after two (queued, waiting for the
    // reply); after three the reply had come. The first get is checked too.
    assert_eq!((report.checked, report.cancelled), (1 + 6, 2), "{report:?}");
    // Both dropped callers left before the connection took their requests: nothing of them
    // was written.
    assert_eq!(report.requests_read, 1 + 6 + 1, "{report:?}");
}

/// A caller alone on the connection polls the connection's task itself: its request is written
/// during its first poll. Dropped right after, its request was sent and its reply is read and
/// discarded; the next caller gets its own.
#[test]
fn a_lone_caller_dropped_between_write_and_read_leaves_the_connection_in_sync() {
    let script = ScriptBuilder::new(HONEST)
        .then(get(Cancel::AfterPolls(1)))
        .then(Op::Yield(3))
        .then(get(Cancel::Never))
        .then(Op::ServeAll)
        .build();
    let report = connection_session(&script);
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!((report.checked, report.cancelled), (1, 1), "{report:?}");
    // The dropped get reached the server (written in its first poll), then the second get and
    // the final check.
    assert_eq!(report.requests_read, 3, "{report:?}");
}

/// A second caller arrives while the lone caller has read part of its reply: the connection's
/// own task takes over (the lone caller may be held unpolled), and each gets its own reply.
#[test]
fn a_second_caller_arriving_mid_read_is_served_with_the_first() {
    // Waiting for its reply, or dropped after its second poll (which read the first bytes).
    for first in [Cancel::Never, Cancel::AfterPolls(2)] {
        let script = ScriptBuilder::new(HONEST)
            .then(get(first))
            .then(Op::Answer(1))
            .then(Op::Flush(Some(3)))
            .then(Op::Yield(3))
            .then(call(Kind::GetMany, 3, Cancel::Never))
            .then(Op::Yield(2))
            .then(Op::Flush(Some(4)))
            .then(Op::Yield(2))
            .then(Op::ServeAll)
            .build();
        let report = connection_session(&script);
        let cancelled = usize::from(first != Cancel::Never);
        assert_eq!(report.errors, 0, "{first:?}: {report:?}");
        assert_eq!(
            (report.checked, report.cancelled),
            (2 - cancelled, cancelled),
            "{first:?}: {report:?}"
        );
        assert_eq!(report.requests_read, 3, "{first:?}: {report:?}");
    }
}

/// The connection breaks while the lone caller reads its reply: the connection's task handles
/// the break as it does any other (the caller gets an error, as the connection gave no good
/// reply yet), and the next caller is served on a fresh connection.
#[test]
fn a_break_while_the_lone_caller_reads_is_handled_by_the_connection() {
    let script = ScriptBuilder::new(HONEST)
        .then(get(Cancel::Never))
        .then(Op::Answer(1))
        .then(Op::Flush(Some(3)))
        .then(Op::Yield(3))
        .then(Op::Close)
        .then(Op::Yield(3))
        .then(Op::Sleep(255))
        .then(get(Cancel::Never))
        .then(Op::ServeAll)
        .build();
    let report = connection_session(&script);
    assert_eq!((report.checked, report.errors), (1, 1), "{report:?}");
    assert_eq!(report.connections, 2, "{report:?}");
}

/// Every input the fuzzer kept for `connection` (the findings, once fixed, among them) is
/// replayed: each must keep every promise.
#[test]
fn every_input_of_the_fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection");
    let mut replayed = 0;
    let mut totals = SessionReport::default();
    for entry in std::fs::read_dir(&dir).expect("the committed corpus of fuzz target `connection`")
    {
        let path = entry.expect("a corpus entry").path();
        let script = std::fs::read(&path).expect("a corpus file");
        let report = std::panic::catch_unwind(|| connection_session(&script))
            .unwrap_or_else(|_| panic!("corpus input {} broke a promise", path.display()));
        totals.calls += report.calls;
        totals.checked += report.checked;
        totals.errors += report.errors;
        totals.cancelled += report.cancelled;
        totals.refused += report.refused;
        totals.connections += report.connections;
        totals.requests_read += report.requests_read;
        totals.lied |= report.lied;
        replayed += 1;
    }
    println!("{replayed} corpus inputs replayed: {totals:?}");
    assert!(
        replayed >= 100,
        "only {replayed} corpus inputs in {}",
        dir.display()
    );
    assert!(
        totals.checked > 0 && totals.cancelled > 0 && totals.errors > 0 && totals.refused > 0,
        "{totals:?}"
    );
}
