//! The one owner of a client's topology: the current snapshot, the rules that decide whether
//! a fetched configuration replaces it, the background poller, the staleness check made by every
//! request, and the refresh pipeline (fetch → decide → build → swap). Nothing else swaps
//! snapshots.
//!
//! Requests load the snapshot without locking. A refresh runs one at a time: it asks the
//! cluster's nodes for the configuration, in turn, on their existing connections (every
//! ElastiCache node answers `config get cluster`; a node that answers `ERROR` is not asked again),
//! and the configuration endpoint when no node answers, when the nodes are not known yet, or when
//! a node answers a version older than the one held (what the apply rules call `Stale`): nodes
//! that lag would otherwise hide a newer version the endpoint serves. An answer of the version
//! held, its nodes changed or not, is an answer, so the polls of a settled cluster stay off the
//! endpoint. The refresh applies the rules ([`decide`]), builds the next snapshot from the
//! current one (reusing live connections and placement work; for more than 16 nodes on
//! tokio's blocking pool), and stores it whole. A poll, build included, ends within the discovery timeout; a configuration
//! listing more than `max_nodes` nodes is refused before any work. A failed, malformed or
//! refused poll keeps the last good topology (after a stale node answer, an endpoint that fails
//! fails the poll). After a change, the previous snapshot is kept for the warm handoff window,
//! if any.
//!
//! Timers do not run while a Lambda environment is frozen: every request checks, for the cost of
//! a clock read, whether the last poll is older than the interval, and if so wakes the poller
//! once, without waiting for it. The poller holds only a weak reference and ends when the
//! topology (the last client clone) is dropped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{decide, ClusterConfig, Decision};
use crate::connection::ConnectionSettings;
use crate::discovery::{ask_node, fetch, NodeAnswer};
use crate::error::{DiscoveryErrorKind, Error};
use crate::jitter::jitter;
use crate::snapshot::{Placement, Snapshot, TopologyChange};

/// How long building the snapshot of a static node list may take: no discovery timeout applies
/// to it, and this bound (a day) is only there so that every build has one.
const STATIC_BUILD_BOUND: Duration = Duration::from_secs(24 * 3600);

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

/// The topology's own settings (see the `ClientBuilder` methods of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopologyOptions {
    pub connections_per_node: usize,
    pub max_nodes: usize,
    /// How long after a change a miss is looked up on the key's previous owner.
    pub warm_handoff: Option<Duration>,
}

/// The snapshot before the last change, while the warm handoff window is open.
pub(crate) struct Handoff {
    pub previous: Arc<Snapshot>,
    pub until: Instant,
}

/// A client's topology. See the module docs.
pub(crate) struct Topology {
    snapshot: ArcSwap<Snapshot>,
    handoff: ArcSwapOption<Handoff>,
    settings: Arc<ConnectionSettings>,
    options: TopologyOptions,
    endpoint: Option<(String, Duration)>,
    poll: Arc<PollState>,
    /// Which node a poll asks first (in turn), and the nodes that answered `ERROR`.
    nodes_asked: NodePolls,
    /// One refresh at a time (and no refresh while the topology closes).
    refreshing: tokio::sync::Mutex<()>,
    /// Set by [`Topology::close`]: no node, no poll, ever again.
    closed: AtomicBool,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.poll.wake.notify_one(); // the poller finds the topology gone and ends
    }
}

impl Topology {
    /// The first topology: with an endpoint, after one discovery, with the poller started; with
    /// a static list, at once. Bounded by the discovery timeout as a whole (the fetch and the
    /// build). Connections open lazily.
    pub(crate) async fn start(
        source: Source,
        placement: Placement,
        settings: Arc<ConnectionSettings>,
        options: TopologyOptions,
    ) -> Result<Arc<Topology>, Error> {
        let empty = Arc::new(Snapshot::empty(placement));
        let (snapshot, endpoint, interval) = match source {
            Source::Static(config) => {
                let (snapshot, _) = build_bounded(
                    "(static)",
                    empty,
                    config,
                    &settings,
                    &options,
                    Instant::now() + STATIC_BUILD_BOUND,
                )
                .await?;
                (snapshot, None, Duration::MAX)
            }
            Source::Endpoint {
                endpoint,
                poll_interval,
                discovery_timeout,
            } => {
                let deadline = Instant::now() + discovery_timeout;
                let span = tracing::info_span!("memcached.discovery", endpoint = %endpoint);
                let (snapshot, _) = async {
                    let config = fetch(&endpoint, &settings, discovery_timeout).await?;
                    build_bounded(&endpoint, empty, config, &settings, &options, deadline).await
                }
                .instrument(span)
                .await?;
                (snapshot, Some((endpoint, discovery_timeout)), poll_interval)
            }
        };
        tracing::info!(
            version = snapshot.config.version(),
            nodes = snapshot.nodes.len(),
            endpoint = endpoint.as_ref().map_or("(static)", |(e, _)| e.as_str()),
            "memcached.topology.initial"
        );
        crate::metrics::describe(snapshot.config.version());
        let polled = endpoint.is_some();
        let topology = Arc::new(Topology {
            snapshot: ArcSwap::new(snapshot),
            handoff: ArcSwapOption::empty(),
            settings,
            options,
            endpoint,
            poll: Arc::new(PollState::new(interval)),
            nodes_asked: NodePolls::default(),
            refreshing: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
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

    /// Closes the topology and waits for its connections to end: the poller stops, the
    /// snapshot becomes one without nodes (the connections' handles go with the old one, and
    /// each connection's task ends once its requests in flight are answered, or have timed
    /// out), and no refresh brings nodes back. Returns when every connection task has ended.
    pub(crate) async fn close(&self) {
        {
            // Under the refresh lock: a poll in progress finishes first, none starts after.
            let _no_refresh = self.refreshing.lock().await;
            self.closed.store(true, Ordering::Release);
            let placement = self.snapshot.load().placement.clone();
            self.snapshot.store(Arc::new(Snapshot::empty(placement)));
            self.handoff.store(None);
        }
        self.poll.wake.notify_one(); // the poller finds the topology closed and ends
        self.settings.tasks.all_ended().await;
    }

    /// Whether [`Topology::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The error of a call that finds no node to route to: [`Error::Closed`] once the topology
    /// is closed, [`Error::NoNodes`] otherwise.
    pub(crate) fn no_nodes(&self) -> Error {
        if self.is_closed() {
            Error::Closed
        } else {
            Error::NoNodes
        }
    }

    /// The snapshot before the last change, while the warm handoff window is open.
    #[inline]
    pub(crate) fn handoff(&self) -> Option<Arc<Handoff>> {
        let handoff = self.handoff.load();
        match &*handoff {
            None => None,
            Some(h) if Instant::now() < h.until => Some(h.clone()),
            Some(_) => {
                drop(handoff);
                self.handoff.store(None);
                None
            }
        }
    }

    /// One poll, then the apply rules; only one runs at a time. The nodes of the current
    /// snapshot are asked first, in turn, on their connections; the endpoint when none answers
    /// or a node answers a version older than the current one.
    /// The whole of it (asking, building) is bounded by the discovery timeout. With a static
    /// node list it does nothing. Once closed, it fails with [`Error::Closed`].
    pub(crate) async fn refresh(&self) -> Result<TopologyChange, Error> {
        let _single_flight = self.refreshing.lock().await;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let Some((endpoint, timeout)) = &self.endpoint else {
            return Ok(TopologyChange::default());
        };
        self.poll.attempted();
        let deadline = Instant::now() + *timeout;
        let span = tracing::info_span!("memcached.discovery", endpoint = %endpoint);
        let current = self.snapshot.load_full();
        let fetched = async {
            match self.ask_nodes(&current, deadline).await {
                Some(config) => Ok(config),
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    fetch(endpoint, &self.settings, left).await
                }
            }
        }
        .instrument(span.clone())
        .await;
        let config = match fetched {
            Ok(config) => config,
            Err(error) => return Err(self.failed(&span, error)),
        };
        match decide(&current.config, &config) {
            Decision::Unchanged => Ok(TopologyChange::default()),
            Decision::Stale => {
                let _entered = span.enter();
                tracing::debug!(
                    current = current.config.version(),
                    received = config.version(),
                    "memcached.discovery.stale_version_ignored"
                );
                Ok(TopologyChange::default())
            }
            Decision::Apply => {
                let built = build_bounded(
                    endpoint,
                    current.clone(),
                    config,
                    &self.settings,
                    &self.options,
                    deadline,
                )
                .instrument(span.clone())
                .await;
                let (next, change) = match built {
                    Ok(built) => built,
                    Err(error) => return Err(self.failed(&span, error)),
                };
                let _entered = span.enter();
                tracing::info!(
                    old_version = current.config.version(),
                    new_version = next.config.version(),
                    added = ?change.added,
                    removed = ?change.removed,
                    readdressed = ?change.readdressed,
                    moved_share = change.moved_share,
                    "memcached.topology.changed"
                );
                if let Some(window) = self.options.warm_handoff {
                    if change.moved_share > 0.0 {
                        self.handoff.store(Some(Arc::new(Handoff {
                            previous: current.clone(),
                            until: Instant::now() + window,
                        })));
                    }
                }
                crate::metrics::topology_changed(next.config.version());
                self.snapshot.store(next);
                Ok(change)
            }
        }
    }

    /// Logs a failed poll (at most once per interval) and returns its error.
    fn failed(&self, span: &tracing::Span, error: Error) -> Error {
        crate::metrics::discovery_failed();
        if self.poll.may_warn() {
            let _entered = span.enter();
            tracing::warn!(error = %error, "memcached.discovery.failed");
        }
        error
    }

    /// Asks the snapshot's nodes for the configuration, in turn from where the last poll
    /// stopped, skipping nodes marked down and nodes that answered `ERROR` once; the first
    /// answer wins. An answer older than the snapshot's version ([`Decision::Stale`]) ends the
    /// asking with `None`, as no answer does: the nodes lag, so the endpoint is asked (an answer
    /// of the same version, changed or not, is an answer). Gives up after three nodes or half
    /// the time left before `deadline`, so that the endpoint still has time.
    async fn ask_nodes(&self, snapshot: &Snapshot, deadline: Instant) -> Option<ClusterConfig> {
        let n = snapshot.nodes.len();
        if n == 0 {
            return None;
        }
        let now = Instant::now();
        let until = now + deadline.saturating_duration_since(now) / 2;
        let first = self.nodes_asked.next.fetch_add(1, Ordering::Relaxed);
        let stale = |config: &ClusterConfig| decide(&snapshot.config, config) == Decision::Stale;
        let mut asked = 0;
        for k in 0..n {
            let node = &snapshot.nodes[(first + k) % n];
            if asked == 3 || Instant::now() >= until {
                break;
            }
            if node.is_down() || self.nodes_asked.refuses(&node.id) {
                continue;
            }
            asked += 1;
            let answer = ask_node(node.connection(), &self.settings.limits, until).await;
            let (outcome, detail) = match &answer {
                NodeAnswer::Config(config) if stale(config) => (
                    "stale",
                    format!(
                        "version {}, older than the version held ({})",
                        config.version(),
                        snapshot.config.version()
                    ),
                ),
                NodeAnswer::Config(config) => ("config", format!("version {}", config.version())),
                NodeAnswer::Unsupported => ("unsupported", String::new()),
                NodeAnswer::Failed(error) => ("failed", error.without_data().to_string()),
            };
            tracing::debug!(node = %node.id, outcome, detail = %detail, "memcached.discovery.node_asked");
            match answer {
                // Older than the version held: the nodes lag, and the endpoint may know better.
                NodeAnswer::Config(config) if stale(&config) => return None,
                NodeAnswer::Config(config) => return Some(config),
                NodeAnswer::Unsupported => self.nodes_asked.refused(&node.id),
                NodeAnswer::Failed(_) => {}
            }
        }
        None
    }
}

/// Which node a poll asks first, and the nodes that do not know `config get cluster`.
#[derive(Default)]
struct NodePolls {
    next: AtomicUsize,
    refused: Mutex<HashSet<Arc<str>>>,
}

impl NodePolls {
    fn refuses(&self, node: &Arc<str>) -> bool {
        self.refused.lock().is_ok_and(|set| set.contains(node))
    }

    fn refused(&self, node: &Arc<str>) {
        if let Ok(mut set) = self.refused.lock() {
            set.insert(node.clone());
        }
    }
}

/// Configurations of up to this many distinct nodes are built on the async worker that asked
/// (a full build of 30 nodes takes 140 µs with the default distribution: docs/performance/core.md); larger
/// ones on tokio's blocking pool.
const INLINE_BUILD_NODES: usize = 16;

/// Builds the snapshot for `config` from `base` (reusing its connections and placement work)
/// — for more than [`INLINE_BUILD_NODES`] nodes on tokio's blocking pool, off the async
/// workers — and waits for it until `deadline`.
/// Refuses a configuration with more than `max_nodes` distinct nodes before any work.
async fn build_bounded(
    source: &str,
    base: Arc<Snapshot>,
    config: ClusterConfig,
    settings: &Arc<ConnectionSettings>,
    options: &TopologyOptions,
    deadline: Instant,
) -> Result<(Arc<Snapshot>, TopologyChange), Error> {
    let distinct = config
        .nodes()
        .iter()
        .map(|n| (n.hostname(), n.port()))
        .collect::<HashSet<_>>()
        .len();
    if distinct > options.max_nodes {
        return Err(Error::discovery(
            source,
            DiscoveryErrorKind::TooManyNodes {
                nodes: distinct,
                max: options.max_nodes,
            },
            Some(format!("configuration version {}", config.version())),
            None,
        ));
    }
    let (settings, per_node) = (settings.clone(), options.connections_per_node);
    let nodes = config.nodes().len();
    let build = move || {
        let (next, mut change) = base.next(config, &settings, per_node);
        change.moved_share = base.moved_share(&next);
        (Arc::new(next), change)
    };
    // A small cluster's snapshot takes tens of microseconds: built here, where a hop to the
    // blocking pool (a thread to start or wake) would cost more than the work, on the path of
    // `build()` and so of a cold start's first request.
    if distinct <= INLINE_BUILD_NODES {
        return Ok(build());
    }
    let work = tokio::task::spawn_blocking(build);
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(built)) => Ok(built),
        Ok(Err(e)) => Err(Error::discovery(
            source,
            DiscoveryErrorKind::Interrupted,
            Some("building the new topology did not complete".into()),
            Some(Arc::new(e)),
        )),
        Err(_) => Err(Error::discovery(
            source,
            DiscoveryErrorKind::Timeout,
            Some(format!(
                "building the topology for {nodes} nodes did not finish within the discovery \
                 timeout"
            )),
            None,
        )),
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
            let Some(topology) = topology.upgrade().filter(|t| !t.is_closed()) else {
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

    /// Intervals whose milliseconds do not fit a u64 neither panic nor wrap: the interval counts
    /// as u64::MAX ms, so a poll is never stale and one warning is all there is. `interval_ms`
    /// is the line at risk: with `unwrap_or(0)` (or a truncating `as u64`, which turns exactly
    /// 2^64 ms into 0) every check is stale and every warning allowed.
    #[test]
    fn any_interval_is_total() {
        let two_pow_64_ms = Duration::from_millis(u64::MAX) + Duration::from_millis(1);
        for interval in [Duration::MAX, Duration::from_secs(u64::MAX), two_pow_64_ms] {
            let poll = PollState::new(interval);
            poll.attempted();
            assert!(poll.may_warn(), "{interval:?}: the first warning");
            assert!(!poll.may_warn(), "{interval:?}: one warning per interval");
            // Real time passes (more than any interval that wrapped to a few ms).
            std::thread::sleep(Duration::from_millis(20));
            poll.check_stale();
            assert!(
                !poll.refresh_requested.load(Ordering::Acquire),
                "{interval:?}: never stale"
            );
            assert!(!poll.may_warn(), "{interval:?}: still within the interval");
        }
    }
}
