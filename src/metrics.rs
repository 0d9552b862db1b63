//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade, with the cargo feature
//! `metrics`: the names, the labels, and one small recording helper per event. The exporter
//! (Prometheus, StatsD, OpenTelemetry, ...) is the application's: install its recorder before
//! building the client, since a connection registers its handles when it starts.
//!
//! Call sites elsewhere are one line each. Without the feature every helper here is an empty
//! inline function or a zero-sized type, and [`timed`] hands back the very future it was given:
//! nothing is compiled in.
//!
//! No label holds a key or a value: labels are the operation name, the outcome and the node
//! (`host:port`). The table of names and labels is in the crate docs (`# Metrics`) and in
//! README.md, and `tests/metrics.rs` checks that the two agree with what is emitted.

#[cfg(feature = "metrics")]
use crate::error::Error;

/// The names, as the tables in the crate docs and README.md list them.
#[cfg(feature = "metrics")]
mod names {
    /// Requests that finished, by `op` and `outcome` (counter).
    pub(crate) const REQUESTS: &str = "memcached.requests";
    /// How long requests took, by `op` and `outcome` (histogram, seconds).
    pub(crate) const REQUEST_DURATION: &str = "memcached.request.duration";
    /// Bytes written to a node's sockets, by `node` (counter).
    pub(crate) const BYTES_SENT: &str = "memcached.bytes.sent";
    /// Bytes read from a node's sockets, by `node` (counter).
    pub(crate) const BYTES_RECEIVED: &str = "memcached.bytes.received";
    /// Connections open now, by `node` (gauge).
    pub(crate) const CONNECTIONS_OPEN: &str = "memcached.connections.open";
    /// Connections opened, by `node` (counter).
    pub(crate) const CONNECTIONS_OPENED: &str = "memcached.connections.opened";
    /// Connects that failed, by `node` (counter).
    pub(crate) const CONNECTIONS_FAILED: &str = "memcached.connections.failed";
    /// Times a node was marked down (left alone for a backoff), by `node` (counter).
    pub(crate) const NODES_MARKED_DOWN: &str = "memcached.nodes.marked_down";
    /// The version of the topology in use (gauge).
    pub(crate) const TOPOLOGY_VERSION: &str = "memcached.topology.version";
    /// Topology changes applied (counter).
    pub(crate) const TOPOLOGY_CHANGES: &str = "memcached.topology.changes";
    /// Polls of the configuration endpoint that failed (counter).
    pub(crate) const DISCOVERY_FAILURES: &str = "memcached.discovery.failures";
    /// Requests waiting in a node connection's queue when one was queued, by `node` (gauge).
    pub(crate) const QUEUE_DEPTH: &str = "memcached.queue.depth";
    /// Reads served from the near cache (counter).
    pub(crate) const NEAR_CACHE_HITS: &str = "memcached.near_cache.hits";
    /// Reads the near cache could not serve, which asked a node (counter).
    pub(crate) const NEAR_CACHE_MISSES: &str = "memcached.near_cache.misses";
    /// Values the near cache kept (counter).
    pub(crate) const NEAR_CACHE_ADMISSIONS: &str = "memcached.near_cache.admissions";
    /// Values the near cache dropped to stay within its budget (counter).
    pub(crate) const NEAR_CACHE_EVICTIONS: &str = "memcached.near_cache.evictions";
    /// Bytes the near cache counts against its budget (gauge).
    pub(crate) const NEAR_CACHE_BYTES: &str = "memcached.near_cache.bytes";
}

#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// What a finished request counts as, for the `outcome` label.
#[cfg(feature = "metrics")]
pub(crate) trait Outcome {
    /// `hit`, `miss`, `ok`, or the kind of failure (see [`failure`]).
    fn outcome(&self) -> &'static str;
}

/// The `outcome` of a failed request.
#[cfg(feature = "metrics")]
pub(crate) fn failure(error: &Error) -> &'static str {
    match error {
        Error::Server { .. } => "server_error",
        Error::NodeDown { .. } => "node_down",
        e if e.is_timeout() => "timeout",
        _ => "error",
    }
}

/// What a call's success counts as: `hit` or `miss` for a call that returns an `Option` (a
/// read; `incr`/`decr` of an absent key is a miss), `ok` for any other. Without the feature,
/// every type is one and nothing asks.
pub(crate) trait Success {
    /// The `outcome` of this result of a call that succeeded.
    #[cfg(feature = "metrics")]
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

#[cfg(not(feature = "metrics"))]
impl<T> Success for T {}

#[cfg(feature = "metrics")]
mod successes {
    use super::Success;

    impl<T> Success for Option<T> {
        fn outcome(&self) -> &'static str {
            if self.is_some() {
                "hit"
            } else {
                "miss"
            }
        }
    }

    impl Success for () {}
    impl Success for bool {}
    impl Success for bytes::Bytes {}
    impl<T> Success for Vec<T> {}
    impl<K, V, S> Success for std::collections::HashMap<K, V, S> {}
}

#[cfg(feature = "metrics")]
impl<T: Success> Outcome for Result<T, Error> {
    fn outcome(&self) -> &'static str {
        match self {
            Ok(success) => success.outcome(),
            Err(e) => failure(e),
        }
    }
}

#[cfg(feature = "metrics")]
mod on {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{ready, Context, Poll};
    use std::time::Instant;

    use ::metrics::{counter, gauge, histogram, Counter, Gauge};

    use super::names::*;
    use super::*;

    pin_project_lite::pin_project! {
        /// A request of `op`, recorded when it finishes (its outcome) or is dropped first
        /// (`cancelled`): one count and one duration. A future of its own rather than an
        /// `async fn`, which would hold the request twice (as its argument and as the future
        /// it awaits).
        pub(crate) struct Timed<F> {
            #[pin]
            request: F,
            timer: Timer,
        }
    }

    /// Records `request` as a call of `op` (see [`Timed`]).
    pub(crate) fn timed<F>(op: &'static str, request: F) -> Timed<F>
    where
        F: Future,
        F::Output: Outcome,
    {
        Timed {
            request,
            timer: Timer {
                op,
                started: None,
                outcome: "cancelled",
            },
        }
    }

    impl<F> Future for Timed<F>
    where
        F: Future,
        F::Output: Outcome,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let this = self.project();
            // The clock starts when the call is first polled, as an `async fn`'s would.
            this.timer.started.get_or_insert_with(Instant::now);
            let output = ready!(this.request.poll(cx));
            this.timer.outcome = output.outcome();
            Poll::Ready(output)
        }
    }

    struct Timer {
        op: &'static str,
        /// When the call was first polled; `None` for one dropped unpolled (not recorded).
        started: Option<Instant>,
        outcome: &'static str,
    }

    impl Drop for Timer {
        fn drop(&mut self) {
            let Some(started) = self.started else { return };
            let labels = [("op", self.op), ("outcome", self.outcome)];
            counter!(REQUESTS, &labels).increment(1);
            histogram!(REQUEST_DURATION, &labels).record(started.elapsed());
        }
    }

    /// The handles of one node connection, registered once when its task starts.
    pub(crate) struct ConnectionMeter {
        sent: Counter,
        received: Counter,
        open: Gauge,
        opened: Counter,
        failed: Counter,
        /// Whether this connection counts in `open` now.
        is_open: AtomicBool,
    }

    impl ConnectionMeter {
        pub(crate) fn new(node: &str) -> ConnectionMeter {
            let node = node.to_string();
            ConnectionMeter {
                sent: counter!(BYTES_SENT, "node" => node.clone()),
                received: counter!(BYTES_RECEIVED, "node" => node.clone()),
                open: gauge!(CONNECTIONS_OPEN, "node" => node.clone()),
                opened: counter!(CONNECTIONS_OPENED, "node" => node.clone()),
                failed: counter!(CONNECTIONS_FAILED, "node" => node),
                is_open: AtomicBool::new(false),
            }
        }

        /// A meter that records nothing: for a connection that is not a node's (discovery's
        /// connection to the configuration endpoint).
        pub(crate) fn detached() -> ConnectionMeter {
            ConnectionMeter {
                sent: Counter::noop(),
                received: Counter::noop(),
                open: Gauge::noop(),
                opened: Counter::noop(),
                failed: Counter::noop(),
                is_open: AtomicBool::new(false),
            }
        }

        pub(crate) fn sent(&self, bytes: usize) {
            self.sent.increment(bytes as u64);
        }

        pub(crate) fn received(&self, bytes: usize) {
            self.received.increment(bytes as u64);
        }

        pub(crate) fn opened(&self) {
            self.opened.increment(1);
            if !self.is_open.swap(true, Ordering::Relaxed) {
                self.open.increment(1.0);
            }
        }

        pub(crate) fn closed(&self) {
            if self.is_open.swap(false, Ordering::Relaxed) {
                self.open.decrement(1.0);
            }
        }

        pub(crate) fn connect_failed(&self) {
            self.failed.increment(1);
        }
    }

    impl Drop for ConnectionMeter {
        fn drop(&mut self) {
            self.closed();
        }
    }

    /// The queue-depth gauge of one node connection.
    #[derive(Clone)]
    pub(crate) struct QueueMeter(Gauge);

    impl QueueMeter {
        /// Also registers the node's count of being marked down at zero, so that it is
        /// listed before the node is first marked down (a queue is made with its connection,
        /// before the connection's task first runs).
        pub(crate) fn new(node: &str) -> QueueMeter {
            counter!(NODES_MARKED_DOWN, "node" => node.to_string()).increment(0);
            QueueMeter(gauge!(QUEUE_DEPTH, "node" => node.to_string()))
        }

        /// A queue meter that records nothing (see [`ConnectionMeter::detached`]).
        pub(crate) fn detached() -> QueueMeter {
            QueueMeter(Gauge::noop())
        }

        pub(crate) fn depth(&self, waiting: usize) {
            self.0.set(waiting as f64);
        }
    }

    /// The near cache's handles, registered (at zero) when a client with a near cache is
    /// built.
    #[derive(Clone)]
    pub(crate) struct NearCacheMeter {
        hits: Counter,
        misses: Counter,
        admissions: Counter,
        evictions: Counter,
        bytes: Gauge,
    }

    impl NearCacheMeter {
        pub(crate) fn new() -> NearCacheMeter {
            use ::metrics::{describe_counter, describe_gauge, Unit};
            describe_counter!(
                NEAR_CACHE_HITS,
                Unit::Count,
                "Reads served from the near cache"
            );
            describe_counter!(
                NEAR_CACHE_MISSES,
                Unit::Count,
                "Reads the near cache could not serve (absent, or older than its maximum age)"
            );
            describe_counter!(
                NEAR_CACHE_ADMISSIONS,
                Unit::Count,
                "Values the near cache kept"
            );
            describe_counter!(
                NEAR_CACHE_EVICTIONS,
                Unit::Count,
                "Values the near cache dropped to stay within its budget"
            );
            describe_gauge!(
                NEAR_CACHE_BYTES,
                Unit::Bytes,
                "Bytes the near cache counts against its budget (keys, values, bookkeeping)"
            );
            let meter = NearCacheMeter {
                hits: counter!(NEAR_CACHE_HITS),
                misses: counter!(NEAR_CACHE_MISSES),
                admissions: counter!(NEAR_CACHE_ADMISSIONS),
                evictions: counter!(NEAR_CACHE_EVICTIONS),
                bytes: gauge!(NEAR_CACHE_BYTES),
            };
            for counter in [
                &meter.hits,
                &meter.misses,
                &meter.admissions,
                &meter.evictions,
            ] {
                counter.increment(0);
            }
            meter.bytes.set(0.0);
            meter
        }

        pub(crate) fn hit(&self) {
            self.hits.increment(1);
        }

        pub(crate) fn miss(&self) {
            self.misses.increment(1);
        }

        /// A value kept; `bytes`: what the cache counts now (asked only with the feature).
        pub(crate) fn admitted(&self, bytes: impl FnOnce() -> u64) {
            self.admissions.increment(1);
            self.bytes.set(bytes() as f64);
        }

        pub(crate) fn evicted(&self) {
            self.evictions.increment(1);
        }

        /// What the cache counts now, after entries were dropped (asked only with the
        /// feature).
        pub(crate) fn bytes(&self, bytes: impl FnOnce() -> u64) {
            self.bytes.set(bytes() as f64);
        }
    }

    /// Describes every metric (unit and meaning, for exporters that show them) and registers
    /// the client's own counters at zero, so that an exporter lists them before their first
    /// event; each node's are registered when its connection is made ([`QueueMeter::new`]).
    pub(crate) fn describe(version: u64) {
        use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!(REQUESTS, Unit::Count, "Calls finished, by op and outcome");
        describe_histogram!(
            REQUEST_DURATION,
            Unit::Seconds,
            "How long each call took, queueing included, by op and outcome"
        );
        describe_counter!(
            BYTES_SENT,
            Unit::Bytes,
            "Bytes written to the node's sockets"
        );
        describe_counter!(
            BYTES_RECEIVED,
            Unit::Bytes,
            "Bytes read from the node's sockets"
        );
        describe_gauge!(
            CONNECTIONS_OPEN,
            Unit::Count,
            "Connections to the node open now"
        );
        describe_counter!(
            CONNECTIONS_OPENED,
            Unit::Count,
            "Connections opened to the node"
        );
        describe_counter!(
            CONNECTIONS_FAILED,
            Unit::Count,
            "Connects to the node that failed"
        );
        describe_counter!(
            NODES_MARKED_DOWN,
            Unit::Count,
            "Times the node was marked down (left alone for a backoff)"
        );
        describe_gauge!(TOPOLOGY_VERSION, "The version of the topology in use");
        describe_counter!(TOPOLOGY_CHANGES, Unit::Count, "Topology changes applied");
        describe_counter!(
            DISCOVERY_FAILURES,
            Unit::Count,
            "Polls of the configuration endpoint that failed"
        );
        describe_gauge!(
            QUEUE_DEPTH,
            Unit::Count,
            "Requests waiting in a node connection's queue when the last one was queued"
        );
        counter!(TOPOLOGY_CHANGES).increment(0);
        counter!(DISCOVERY_FAILURES).increment(0);
        topology_version(version);
    }

    pub(crate) fn node_marked_down(node: &str) {
        counter!(NODES_MARKED_DOWN, "node" => node.to_string()).increment(1);
    }

    pub(crate) fn topology_version(version: u64) {
        gauge!(TOPOLOGY_VERSION).set(version as f64);
    }

    pub(crate) fn topology_changed(version: u64) {
        counter!(TOPOLOGY_CHANGES).increment(1);
        topology_version(version);
    }

    pub(crate) fn discovery_failed() {
        counter!(DISCOVERY_FAILURES).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    /// Without the feature: the request itself, untouched.
    #[inline(always)]
    pub(crate) fn timed<F>(_op: &'static str, request: F) -> F {
        request
    }

    pub(crate) struct ConnectionMeter;

    impl ConnectionMeter {
        #[inline(always)]
        pub(crate) fn new(_node: &str) -> ConnectionMeter {
            ConnectionMeter
        }

        pub(crate) fn detached() -> ConnectionMeter {
            ConnectionMeter
        }
        #[inline(always)]
        pub(crate) fn sent(&self, _bytes: usize) {}
        #[inline(always)]
        pub(crate) fn received(&self, _bytes: usize) {}
        #[inline(always)]
        pub(crate) fn opened(&self) {}
        #[inline(always)]
        pub(crate) fn closed(&self) {}
        #[inline(always)]
        pub(crate) fn connect_failed(&self) {}
    }

    #[derive(Clone)]
    pub(crate) struct QueueMeter;

    impl QueueMeter {
        #[inline(always)]
        pub(crate) fn new(_node: &str) -> QueueMeter {
            QueueMeter
        }

        pub(crate) fn detached() -> QueueMeter {
            QueueMeter
        }
        #[inline(always)]
        pub(crate) fn depth(&self, _waiting: usize) {}
    }

    #[derive(Clone)]
    pub(crate) struct NearCacheMeter;

    impl NearCacheMeter {
        pub(crate) fn new() -> NearCacheMeter {
            NearCacheMeter
        }
        #[inline(always)]
        pub(crate) fn hit(&self) {}
        #[inline(always)]
        pub(crate) fn miss(&self) {}
        #[inline(always)]
        pub(crate) fn admitted(&self, _bytes: impl FnOnce() -> u64) {}
        #[inline(always)]
        pub(crate) fn evicted(&self) {}
        #[inline(always)]
        pub(crate) fn bytes(&self, _bytes: impl FnOnce() -> u64) {}
    }

    #[inline(always)]
    pub(crate) fn describe(_version: u64) {}
    #[inline(always)]
    pub(crate) fn node_marked_down(_node: &str) {}
    #[inline(always)]
    pub(crate) fn topology_changed(_version: u64) {}
    #[inline(always)]
    pub(crate) fn discovery_failed() {}
}

#[cfg(test)]
mod tests {
    #[cfg(not(feature = "metrics"))]
    use super::*;

    /// Without the feature (`cargo test --lib`, no features), the handles a connection carries
    /// take no space and `timed` is the identity on futures.
    #[test]
    #[cfg(not(feature = "metrics"))]
    fn without_the_feature_nothing_is_carried() {
        assert_eq!(std::mem::size_of::<ConnectionMeter>(), 0);
        assert_eq!(std::mem::size_of::<QueueMeter>(), 0);
        let future = std::future::ready(1u8);
        assert_eq!(
            std::mem::size_of_val(&timed("get", future)),
            std::mem::size_of::<std::future::Ready<u8>>()
        );
    }
}
