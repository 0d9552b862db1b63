//! Whether a node is up, and the backoff that decides for how long a failing one is left alone.
//!
//! Shared by a connection's task (which marks the node down or up) and its handles (which fail
//! fast with [`Error::NodeDown`] while it is down, instead of queueing). Times are read from
//! tokio's clock, the one request deadlines use. Owns no socket and no queue.
//!
//! Two ways back up: by default a down node counts as up again once its backoff is over, and
//! the next request tries it. A node whose connection *probes* (the client routes around down
//! nodes, [`FailureMode::Redistribute`](crate::FailureMode::Redistribute)) stays down until its
//! task has connected again, since no request would come to try it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Role;
use crate::error::{Error, Peer};
use crate::jitter::jitter;

/// Whether the node is down, and why.
pub(super) struct Health {
    role: Role,
    node: Arc<str>,
    /// When the connection was made; `down_until` counts from here.
    epoch: Instant,
    /// Nanoseconds since `epoch` until which the node counts as down; 0 when up.
    down_until: AtomicU64,
    reason: Mutex<Arc<str>>,
    /// Down until the task has connected again, not until the backoff is over.
    probes: bool,
}

impl Health {
    pub(super) fn new(role: Role, node: Arc<str>, probes: bool) -> Health {
        Health {
            role,
            node,
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            reason: Mutex::new(Arc::from("")),
            probes,
        }
    }

    /// Whether the node's task reconnects on its own while it is down (see the module docs).
    pub(super) fn probes(&self) -> bool {
        self.probes
    }

    /// Whether the node is down now. Without a clock read while it is up.
    #[inline]
    pub(super) fn is_down(&self) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        until != 0 && self.now_nanos() < until
    }

    /// The node's name, `host:port`.
    pub(super) fn node(&self) -> &str {
        &self.node
    }

    /// What the connection is to.
    pub(super) fn role(&self) -> Role {
        self.role
    }

    /// The peer, for messages: the node, or the configuration endpoint.
    pub(super) fn peer(&self) -> Peer<'_> {
        match self.role {
            Role::Node => Peer::Node(&self.node),
            Role::Endpoint => Peer::Endpoint(&self.node),
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The error for a request while the node is down; `None` when it is up.
    pub(super) fn down_error(&self) -> Option<Error> {
        let until = self.down_until.load(Ordering::Relaxed);
        if until == 0 || self.now_nanos() >= until {
            return None;
        }
        let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
        Some(Error::NodeDown {
            node: self.node.to_string(),
            reason,
        })
    }

    /// Marks the node down for about `backoff` (±20 % jitter) because of `reason`; returns when
    /// the backoff ends. A probing node stays down until [`Health::mark_up`].
    pub(super) fn mark_down(&self, backoff: Duration, reason: &Error) -> Instant {
        if self.role == Role::Node {
            crate::metrics::node_marked_down(&self.node);
        }
        if let Ok(mut r) = self.reason.lock() {
            *r = Arc::from(reason.to_string());
        }
        let delay = jitter(backoff, 0.2);
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let until = if self.probes {
            u64::MAX
        } else {
            self.now_nanos().saturating_add(nanos)
        };
        self.down_until.store(until.max(1), Ordering::Relaxed);
        Instant::now() + delay
    }

    pub(super) fn mark_up(&self) {
        self.down_until.store(0, Ordering::Relaxed);
    }
}

/// Exponential backoff between `min` and `max`: doubled at each failure, started over by the
/// next good reply.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay for this failure; the next one doubles.
    pub(super) fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// A good reply: start over.
    pub(super) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u64> = (0..4).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.failed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_marked_down_is_up_again_after_its_backoff() {
        let health = Health::new(Role::Node, Arc::from("n:1"), false);
        assert!(health.down_error().is_none());
        let reason = Error::NoNodes;
        health.mark_down(Duration::from_millis(100), &reason);
        assert!(matches!(health.down_error(), Some(Error::NodeDown { .. })));
        tokio::time::advance(Duration::from_millis(121)).await;
        assert!(
            health.down_error().is_none(),
            "backoff + 20 % jitter is over"
        );
        health.mark_down(Duration::from_secs(1), &reason);
        health.mark_up();
        assert!(health.down_error().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probing_node_stays_down_until_marked_up() {
        let health = Health::new(Role::Node, Arc::from("n:1"), true);
        let reason = Error::NoNodes;
        let retry = health.mark_down(Duration::from_millis(100), &reason);
        assert!(retry <= Instant::now() + Duration::from_millis(120));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(health.is_down() && health.down_error().is_some());
        health.mark_up();
        assert!(!health.is_down() && health.down_error().is_none());
    }
}
