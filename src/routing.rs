//! Where a one-key call goes: the one place that picks a key's node.
//!
//! A [`Route`] is the key's node in the current snapshot (its owner, or with
//! [`FailureMode::Redistribute`](crate::FailureMode::Redistribute) the next usable node) and,
//! inside a warm-handoff window when the key's owner changed, the two owners
//! ([`Owners`]: what happens around the call on them is [`crate::handoff`]'s). It does not send
//! anything.

use std::sync::Arc;

use crate::connection::Connection;
use crate::error::Error;
use crate::handoff::Owners;
use crate::snapshot::Snapshot;
use crate::topology::Topology;

/// Where a one-key call goes. Holds the snapshot of the call rather than a clone of the
/// connection's handle: one reference count instead of four, on counters every caller shares.
pub(crate) struct Route {
    snapshot: Arc<Snapshot>,
    index: usize,
    moved: Option<Owners>,
}

impl Route {
    /// Routes `key` in `topology`'s current snapshot.
    pub(crate) fn of(topology: &Topology, key: &[u8]) -> Result<Route, Error> {
        let snapshot = arc_swap::Guard::into_inner(topology.snapshot());
        let index = snapshot.route_index(key).ok_or(Error::NoNodes)?;
        let moved = moved(topology, &snapshot, key);
        Ok(Route {
            snapshot,
            index,
            moved,
        })
    }

    /// One of the node's connections (round robin when it has several).
    pub(crate) fn connection(&self) -> &Connection {
        self.snapshot.nodes[self.index].connection()
    }

    /// The key's previous and current owner, inside a warm-handoff window when its owner
    /// changed.
    pub(crate) fn moved(&self) -> Option<&Owners> {
        self.moved.as_ref()
    }
}

/// During the warm handoff window, the previous and the current owner of `key` when its owner
/// changed; `None` otherwise (one atomic load when the window is closed).
fn moved(topology: &Topology, snapshot: &Snapshot, key: &[u8]) -> Option<Owners> {
    let handoff = topology.handoff()?;
    let current = snapshot.route(key)?;
    let previous = handoff.previous.owner(key)?;
    (previous.id != current.id).then(|| Owners {
        previous: previous.connection().clone(),
        current: current.connection().clone(),
        limits: topology.settings().limits,
    })
}
