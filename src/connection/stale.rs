//! What a node that was down must forget before its keys come back to it: the keys this client
//! wrote or deleted on a stand-in meanwhile ([`FailureMode::Redistribute`](crate::FailureMode::Redistribute)).
//! A node back from a partition still holds the values it had before; served again, they would
//! hide the writes and deletes made on the stand-in.
//!
//! * While a probing connection is down, the write path notes each key it sends to a stand-in
//!   ([`Connection::note_written_elsewhere`](super::Connection::note_written_elsewhere)), with
//!   the stand-in it went to: at most [`MAX_KEYS`] keys; past that, the record only remembers
//!   that it overflowed.
//! * When the connection is open again, its task takes the record and sends, ahead of the probe
//!   that marks the node up, a `delete` of each key, or one `flush_all` if the record
//!   overflowed (a cache may lose data; it must not serve stale). A node answers in order, so
//!   the probe's answer means they are done.
//! * The probe's answer marks the node up only if nothing went wrong meanwhile: a delete that
//!   failed puts its key back (a flush: the overflow), and another round follows at once,
//!   which flushes. A round whose probe is not answered puts its keys back for the next
//!   connection's. Once the node is up, the stand-ins' copies are deleted too (not waited
//!   for), so that they cannot come back if the node fails again.
//! * A key noted while a round is out (its write was routed before the probe's answer) is
//!   deleted at once on the connection: queued before anything a caller sends once the node is
//!   up.
//!
//! Rounds are queued requests like any other; this module owns no socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::health::Health;
use super::Waiter;
use crate::pipeline::{Frame, Pending};
use crate::protocol::{Expect, Limits, Request, Response};

/// The most keys noted for one down connection; past it, the node is flushed when it returns.
pub(super) const MAX_KEYS: usize = 10_000;
/// How long a node that was down has to answer its probe (at most the request timeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

type Queue = mpsc::WeakSender<Pending<Waiter>>;

/// The keys a down connection's node must forget, and the stand-in each was written to.
pub(super) struct Stale {
    inner: Mutex<Inner>,
    /// This connection's own queue, for a round a probe's answer starts (weak: the task still
    /// ends with the last handle).
    queue: Queue,
    limits: Limits,
    request_timeout: Duration,
}

#[derive(Default)]
struct Inner {
    /// Key → the queue of the stand-in it was last written to (none for a key put back after
    /// a failed delete: its stand-in is known to an earlier entry, or was).
    keys: HashMap<Bytes, Option<Queue>>,
    /// More than [`MAX_KEYS`] keys were noted, or a flush failed: the next round flushes.
    overflowed: bool,
    /// A round is out: its probe is not answered yet.
    out: bool,
    /// Keys noted while a round was out (deleted at once on the node): their stand-in copies.
    late: HashMap<Bytes, Option<Queue>>,
    /// Keys noted since the node was last marked up (in the record, in a round, or late).
    noted: usize,
}

impl Inner {
    /// Whether noting `key` anew would pass [`MAX_KEYS`] keys noted since the node was up.
    fn full_for(&self, key: &[u8]) -> bool {
        self.noted >= MAX_KEYS && !self.keys.contains_key(key) && !self.late.contains_key(key)
    }

    fn note(&mut self, key: Bytes, stand_in: Option<Queue>) {
        if self.full_for(&key) {
            self.overflowed = true;
        } else if let Some(entry) = self.keys.get_mut(&key) {
            if stand_in.is_some() {
                *entry = stand_in;
            }
        } else {
            self.noted += 1;
            self.keys.insert(key, stand_in);
        }
    }

    fn take(&mut self) -> Round {
        self.out = true;
        Round {
            flush: std::mem::take(&mut self.overflowed),
            keys: std::mem::take(&mut self.keys),
        }
    }

    /// Puts a round's keys back (for the next round, and the stand-ins' copies).
    fn restore(&mut self, round: Round) {
        self.overflowed |= round.flush;
        for (key, stand_in) in round.keys {
            self.keys.entry(key).or_insert(stand_in);
        }
    }
}

/// What one round sends ahead of its probe.
pub(super) struct Round {
    flush: bool,
    keys: HashMap<Bytes, Option<Queue>>,
}

/// The probe of a round: its answer decides whether the node is marked up.
pub(super) struct Probe {
    health: Arc<Health>,
    stale: Arc<Stale>,
    round: Round,
}

impl Stale {
    pub(super) fn new(queue: Queue, limits: Limits, request_timeout: Duration) -> Stale {
        Stale {
            inner: Mutex::default(),
            queue,
            limits,
            request_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `key` was written or deleted on the stand-in whose queue is `stand_in`
    /// while this connection's node is down. Returns `false` when the node is not down (any
    /// more): the write must be routed again. `own` is this connection's queue.
    pub(super) fn note(
        self: &Arc<Self>,
        health: &Health,
        key: &[u8],
        stand_in: Queue,
        own: &mpsc::Sender<Pending<Waiter>>,
    ) -> bool {
        let mut inner = self.lock();
        // The probe's answer marks the node up under this lock: a key noted here is either
        // in the record, or deleted before the node is marked up.
        if !health.is_down() {
            return false;
        }
        let key = Bytes::copy_from_slice(key);
        if inner.out && !inner.full_for(&key) {
            let waiter = Waiter::Cleanup(self.clone(), Some(key.clone()));
            if own
                .try_send(self.cleanup(&key, waiter, self.probe_deadline()))
                .is_ok()
            {
                if inner.late.insert(key, Some(stand_in)).is_none() {
                    inner.noted += 1;
                }
                return true;
            }
        }
        inner.note(key, Some(stand_in));
        true
    }

    /// The requests of a node that was down: the deletes (or a flush) of a round and the
    /// probe, `version`, answered within [`PROBE_TIMEOUT`] (or the request timeout, if
    /// shorter) or the connection is broken off and the node stays down for another backoff.
    pub(super) fn round(self: &Arc<Self>, health: &Arc<Health>) -> Vec<Pending<Waiter>> {
        let round = self.lock().take();
        self.requests(health, round)
    }

    fn requests(self: &Arc<Self>, health: &Arc<Health>, round: Round) -> Vec<Pending<Waiter>> {
        let deadline = self.probe_deadline();
        let mut requests = Vec::with_capacity(round.keys.len() + 1);
        if round.flush {
            tracing::warn!(parent: None, node = %health.node(), "memcached.stale.flush");
            let (frame, expect) = self.encode(&Request::FlushAll { delay: None });
            let waiter = Waiter::Cleanup(self.clone(), None);
            requests.push(Pending::new(frame, expect, deadline, false, waiter));
        } else {
            if !round.keys.is_empty() {
                tracing::debug!(parent: None, node = %health.node(), keys = round.keys.len(), "memcached.stale.delete");
            }
            for key in round.keys.keys() {
                let waiter = Waiter::Cleanup(self.clone(), Some(key.clone()));
                requests.push(self.cleanup(key, waiter, deadline));
            }
        }
        let probe = Probe {
            health: health.clone(),
            stale: self.clone(),
            round,
        };
        requests.push(Pending::new(
            Bytes::from_static(b"version\r\n"),
            Expect::Version,
            deadline,
            true,
            Waiter::Probe(Box::new(probe)),
        ));
        requests
    }

    fn probe_deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + self.request_timeout.min(PROBE_TIMEOUT)
    }

    fn encode(&self, request: &Request<'_>) -> (Frame, Expect) {
        Frame::encode(|buf| request.encode(buf, &self.limits))
            .expect("a delete of a key already sent, or flush_all, encodes")
    }

    /// A `delete` of `key` answered to `waiter`.
    fn cleanup(&self, key: &[u8], waiter: Waiter, deadline: std::time::Instant) -> Pending<Waiter> {
        let (frame, expect) = self.encode(&Request::Delete { key });
        Pending::new(frame, expect, deadline, false, waiter)
    }

    /// The answer to the delete of `key` (or to a flush: `None`) of a round: one that did not
    /// happen is noted again, for the next round.
    pub(super) fn cleaned(
        &self,
        key: Option<Bytes>,
        outcome: &Result<Response, crate::error::Error>,
    ) {
        if matches!(
            outcome,
            Ok(Response::Deleted | Response::NotFound | Response::Ok)
        ) {
            return;
        }
        let mut inner = self.lock();
        match key {
            Some(key) => inner.note(key, None),
            None => inner.overflowed = true,
        }
    }
}

impl Probe {
    /// The node answered (`version`) or not. See the module docs.
    pub(super) fn answer(self, answered: bool) {
        let Probe {
            health,
            stale,
            round,
        } = self;
        let mut inner = stale.lock();
        if !answered {
            inner.out = false;
            inner.restore(round);
            return;
        }
        if inner.overflowed || !inner.keys.is_empty() {
            // A delete or a flush failed, or a key noted during the round could not be deleted
            // at once: another round, which flushes, sent now (nothing else would send it).
            inner.restore(round);
            inner.overflowed = true;
            let next = inner.take();
            drop(inner);
            let requests = stale.requests(&health, next);
            let Some(queue) = stale.queue.upgrade() else {
                return;
            };
            for request in requests {
                if let Err(e) = queue.try_send(request) {
                    // A full queue (callers of a down node fail before queueing) or a closed one:
                    // the node stays down until its next connection.
                    e.into_inner().fail(crate::error::Error::NodeDown {
                        node: health.node().to_string(),
                        reason: Arc::from("the cleanup of a returning node could not be queued"),
                    });
                }
            }
            return;
        }
        inner.out = false;
        inner.noted = 0;
        health.mark_up();
        let late = std::mem::take(&mut inner.late);
        drop(inner);
        // The stand-ins' copies: left there, they would be served again if the node failed
        // again before they expire.
        let deadline = std::time::Instant::now() + stale.request_timeout;
        for (key, stand_in) in round.keys.into_iter().chain(late) {
            if let Some(stand_in) = stand_in.and_then(|q| q.upgrade()) {
                let _ = stand_in.try_send(stale.cleanup(&key, Waiter::Quiet, deadline));
            }
        }
    }
}
