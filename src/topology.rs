//! The one owner of a client's topology: the current snapshot, the rules that decide whether
//! a fetched configuration replaces it, the background poller, the staleness check made by every
//! request, and the refresh pipeline (fetch → decide → build → swap). Nothing else swaps
//! snapshots.
//!
//! Requests load the snapshot without locking . A refresh runs one at a
//! time: it fetches the configuration , applies the rules ([`decide`]),
//! builds the next snapshot from the current one (reusing live connections)
//! and stores it whole. A failed or malformed poll keeps the last good topology.
//!
//! Timers do not run while a Lambda environment is frozen: every request checks, for the cost of
//! a clock read, whether the last poll is older than the interval, and if so wakes the poller
//! once, without waiting for it. The poller holds only a weak reference and ends when the
//! topology (the last client clone) is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::cluster::{Placement, Snapshot, TopologyChange};
use crate::config::{ClusterConfig, Node};
use crate::connection::ConnectionSettings;
use crate::discovery::fetch;
use crate::error::Error;
use crate::jitter::jitter;

/// What to do with a freshly fetched configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Newer version, or same version with another node set: build and swap a new snapshot.
    Apply,
    /// Same version, same nodes: nothing to do.
    Unchanged,
    /// Lower version than the current one (an eventually consistent endpoint lagging): ignore.
    Stale,
}

/// The apply rules: a higher version is applied; a lower one is ignored; an equal version is
/// applied only when the node set (hostname, IP, port; order and repeats aside) differs, because
/// in-place node replacement has been seen to change an IP without a version bump.
pub fn decide(current: &ClusterConfig, candidate: &ClusterConfig) -> Decision {
    use std::cmp::Ordering::*;
    match candidate.version.cmp(&current.version) {
        Greater => Decision::Apply,
        Less => Decision::Stale,
        Equal => {
            let set = |c: &ClusterConfig| {
                c.nodes
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<Node>>()
            };
            if set(current) == set(candidate) {
                Decision::Unchanged
            } else {
                Decision::Apply
            }
        }
    }
}

/// Where the nodes come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A configuration endpoint, polled.
    Endpoint {
        endpoint: String,
        poll_interval: Duration,
        discovery_timeout: Duration,
    },
    /// A fixed node list.
    Static(ClusterConfig),
}

/// A client's topology. See the module docs.
pub(crate) struct Topology {
    snapshot: ArcSwap<Snapshot>,
    settings: Arc<ConnectionSettings>,
    connections_per_node: usize,
    endpoint: Option<(String, Duration)>,
    poll: Arc<PollState>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.poll.wake.notify_one(); // the poller finds the topology gone and ends
    }
}

impl Topology {
    /// The first topology: with an endpoint, after one discovery (bounded by the discovery
    /// timeout), with the poller started; with a static list, at once. Connections open lazily.
    pub(crate) async fn start(
        source: Source,
        placement: Placement,
        settings: Arc<ConnectionSettings>,
        connections_per_node: usize,
    ) -> Result<Arc<Topology>, Error> {
        let (config, endpoint, interval) = match source {
            Source::Static(config) => (config, None, Duration::MAX),
            Source::Endpoint {
                endpoint,
                poll_interval,
                discovery_timeout,
            } => {
                let span = tracing::info_span!("memcached.discovery", endpoint = %endpoint);
                let config = fetch(&endpoint, &settings.transport, discovery_timeout)
                    .instrument(span)
                    .await?;
                (config, Some((endpoint, discovery_timeout)), poll_interval)
            }
        };
        let (snapshot, _) =
            Snapshot::empty(placement).next(config, &settings, connections_per_node);
        tracing::info!(
            version = snapshot.config.version,
            nodes = snapshot.nodes.len(),
            endpoint = endpoint.as_ref().map_or("(static)", |(e, _)| e.as_str()),
            "memcached.topology.initial"
        );
        crate::metrics::topology_version(snapshot.config.version);
        let polled = endpoint.is_some();
        let topology = Arc::new(Topology {
            snapshot: ArcSwap::from_pointee(snapshot),
            settings,
            connections_per_node,
            endpoint,
            poll: Arc::new(PollState::new(interval)),
            refreshing: tokio::sync::Mutex::new(()),
        });
        if polled {
            spawn_poller(Arc::downgrade(&topology), topology.poll.clone());
        }
        Ok(topology)
    }

    /// The connection settings every node connection of this topology uses.
    pub(crate) fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    /// The current snapshot, for a request: also wakes the poller if the last poll is stale.
    #[inline]
    pub(crate) fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        if self.endpoint.is_some() {
            self.poll.check_stale();
        }
        self.snapshot.load()
    }

    /// The current snapshot, without the staleness check.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// One poll of the endpoint, then the apply rules; only one runs at a time. With a static
    /// node list it does nothing.
    pub(crate) async fn refresh(&self) -> Result<TopologyChange, Error> {
        let Some((endpoint, timeout)) = &self.endpoint else {
            return Ok(TopologyChange::default());
        };
        let _single_flight = self.refreshing.lock().await;
        self.poll.attempted();
        let span = tracing::info_span!("memcached.discovery", endpoint = %endpoint);
        let fetched = fetch(endpoint, &self.settings.transport, *timeout)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let config = match fetched {
            Ok(config) => config,
            Err(error) => {
                crate::metrics::discovery_failed();
                if self.poll.may_warn() {
                    tracing::warn!(error = %error, "memcached.discovery.failed");
                }
                return Err(error);
            }
        };
        let current = self.snapshot.load_full();
        match decide(&current.config, &config) {
            Decision::Unchanged => Ok(TopologyChange::default()),
            Decision::Stale => {
                tracing::debug!(
                    current = current.config.version,
                    received = config.version,
                    "memcached.discovery.stale_version_ignored"
                );
                Ok(TopologyChange::default())
            }
            Decision::Apply => {
                // Building a placement is CPU work (about 3 ms at 30 nodes, 0.3 s at 300): keep
                // it off the async workers, on tokio's blocking pool.
                let (base, settings, per_node) = (
                    current.clone(),
                    self.settings.clone(),
                    self.connections_per_node,
                );
                let (next, change) =
                    tokio::task::spawn_blocking(move || base.next(config, &settings, per_node))
                        .await
                        .map_err(|e| Error::Discovery {
                            endpoint: endpoint.clone(),
                            reason: format!("building the new topology failed: {e}"),
                        })?;
                tracing::info!(
                    old_version = current.config.version,
                    new_version = next.config.version,
                    added = ?change.added,
                    removed = ?change.removed,
                    readdressed = ?change.readdressed,
                    moved_share = current.moved_share(&next),
                    "memcached.topology.changed"
                );
                crate::metrics::topology_changed(next.config.version);
                self.snapshot.store(Arc::new(next));
                Ok(change)
            }
        }
    }
}

/// Poll timing shared by the poller and the request path.
struct PollState {
    interval: Duration,
    started: Instant,
    /// Milliseconds since `started` of the last poll attempt.
    last_attempt_ms: AtomicU64,
    /// Milliseconds since `started` of the last warning logged (rate limit).
    last_warn_ms: AtomicU64,
    refresh_requested: AtomicBool,
    wake: Notify,
}

impl PollState {
    fn new(interval: Duration) -> PollState {
        PollState {
            interval,
            started: Instant::now(),
            last_attempt_ms: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            refresh_requested: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn interval_ms(&self) -> u64 {
        u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a poll attempt.
    fn attempted(&self) {
        self.last_attempt_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The request-path check: when the last attempt is older than the interval (timers did not
    /// run, e.g. a thawed Lambda), wake the poller once. Never waits.
    #[inline]
    fn check_stale(&self) {
        let age = self
            .now_ms()
            .saturating_sub(self.last_attempt_ms.load(Ordering::Relaxed));
        if age > self.interval_ms() && !self.refresh_requested.swap(true, Ordering::AcqRel) {
            tracing::debug!(age_ms = age, "memcached.discovery.stale");
            self.wake.notify_one();
        }
    }

    /// Whether a warning may be logged now (at most one per interval).
    fn may_warn(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let first = last == 0;
        if first || now.saturating_sub(last) >= self.interval_ms() {
            self.last_warn_ms.store(now.max(1), Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// Spawns the poller: every interval (±10 % jitter) or when woken, refresh. It holds only a weak
/// reference between polls and ends as soon as the topology is gone (whose drop wakes it).
fn spawn_poller(topology: Weak<Topology>, poll: Arc<PollState>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(jitter(poll.interval, 0.1)) => {}
                () = poll.wake.notified() => {}
            }
            let Some(topology) = topology.upgrade() else {
                return;
            };
            poll.refresh_requested.store(false, Ordering::Release);
            let _ = topology.refresh().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(version: u64, nodes: &[(&str, &str)]) -> ClusterConfig {
        ClusterConfig {
            version,
            nodes: nodes
                .iter()
                .map(|(h, ip)| Node::new(*h, ip.parse().ok(), 11211))
                .collect(),
        }
    }

    #[test]
    fn apply_rules() {
        let current = config(5, &[("a", "10.0.0.1"), ("b", "10.0.0.2")]);
        let reordered = config(5, &[("b", "10.0.0.2"), ("a", "10.0.0.1")]);
        assert_eq!(decide(&current, &reordered), Decision::Unchanged);
        let repeated = config(
            5,
            &[("a", "10.0.0.1"), ("b", "10.0.0.2"), ("a", "10.0.0.1")],
        );
        assert_eq!(
            decide(&current, &repeated),
            Decision::Unchanged,
            "a node listed twice is the same set"
        );
        assert_eq!(
            decide(
                &current,
                &config(6, &[("a", "10.0.0.1"), ("b", "10.0.0.2")])
            ),
            Decision::Apply
        );
        assert_eq!(
            decide(&current, &config(4, &[("a", "10.0.0.1")])),
            Decision::Stale
        );
        assert_eq!(
            decide(
                &current,
                &config(5, &[("a", "10.0.0.1"), ("b", "10.0.0.9")])
            ),
            Decision::Apply,
            "same version, new IP"
        );
        assert_eq!(
            decide(&current, &config(5, &[("a", "10.0.0.1")])),
            Decision::Apply,
            "same version, node gone"
        );
    }

    #[tokio::test]
    async fn a_stale_poll_wakes_the_poller_once() {
        let poll = PollState::new(Duration::from_millis(30));
        poll.attempted();
        poll.check_stale();
        assert!(
            !poll.refresh_requested.load(Ordering::Acquire),
            "fresh: no wake-up"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        poll.check_stale();
        assert!(poll.refresh_requested.load(Ordering::Acquire));
        tokio::time::timeout(Duration::from_millis(100), poll.wake.notified())
            .await
            .expect("the poller was woken");
        poll.check_stale(); // already requested: no second wake-up
        assert!(
            tokio::time::timeout(Duration::from_millis(50), poll.wake.notified())
                .await
                .is_err(),
            "single flight: one wake-up per stale period"
        );
    }

    #[test]
    fn warnings_are_rate_limited_per_interval() {
        let poll = PollState::new(Duration::from_secs(60));
        assert!(poll.may_warn());
        assert!(!poll.may_warn());
    }

    #[test]
    fn any_interval_is_total() {
        let poll = PollState::new(Duration::MAX);
        poll.attempted();
        poll.check_stale();
        assert!(!poll.refresh_requested.load(Ordering::Acquire));
        assert!(poll.may_warn());
    }
}
