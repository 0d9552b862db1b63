//! Where a one-key call goes: the one place that picks a key's node.
//!
//! A [`Route`] is the key's node in the current snapshot (its owner, or with
//! [`FailureMode::Redistribute`](crate::FailureMode::Redistribute) the next usable node) and,
//! inside a warm-handoff window when the key's owner changed, the two owners
//! ([`Owners`]: what happens around the call on them is [`crate::handoff`]'s). It does not send
//! anything.
//!
//! A write routed to a stand-in (its owner is down) is first noted on the owner's connections,
//! which make the owner forget the key before it is marked up again ([`Route::of_write`]), and
//! carries a time to live no longer than the stand-in cap ([`Route::capped`]), so that the
//! stand-in's copy cannot outlive the failure by long.

use std::sync::Arc;

use crate::connection::Connection;
use crate::error::Error;
use crate::handoff::Owners;
use crate::protocol::{Request, Retrieval, MAX_RELATIVE_TTL};
use crate::snapshot::{NodeHandle, Snapshot};
use crate::topology::Topology;

/// Where a one-key call goes. Holds the snapshot of the call rather than a clone of the
/// connection's handle: one reference count instead of four, on counters every caller shares.
pub(crate) struct Route {
    snapshot: Arc<Snapshot>,
    index: usize,
    /// Which of the node's connections (picked once, round robin: a call uses one).
    connection: usize,
    /// The key's owner, when it is down and the key goes to a stand-in.
    away: Option<usize>,
    /// Boxed: present only inside a warm-handoff window, and every call's future holds a
    /// `Route`.
    moved: Option<Box<Owners>>,
}

impl Route {
    /// Routes `key` in `topology`'s current snapshot.
    pub(crate) fn of(topology: &Topology, key: &[u8]) -> Result<Route, Error> {
        let snapshot = arc_swap::Guard::into_inner(topology.snapshot());
        let (index, owner) = snapshot
            .route_and_owner(key)
            .ok_or_else(|| topology.no_nodes())?;
        let moved = moved(topology, &snapshot, key);
        let connection = snapshot.nodes[index].pick();
        Ok(Route {
            snapshot,
            index,
            connection,
            away: (index != owner).then_some(owner),
            moved,
        })
    }

    /// Routes a write of `key` (a request that changes or deletes its value): as
    /// [`Route::of`], and when the key goes to a stand-in, the key is first noted on its owner's
    /// connections, so that the owner deletes it before it is marked up again and no value it
    /// held before is served over this write. An owner that came back meanwhile is routed to.
    pub(crate) fn of_write(topology: &Topology, key: &[u8]) -> Result<Route, Error> {
        loop {
            let route = Route::of(topology, key)?;
            match route.owner_away() {
                None => return Ok(route),
                Some(owner) if owner.note_written_elsewhere(key, route.connection()) => {
                    return Ok(route)
                }
                // Marked up between the routing and the note (each turn takes the owner's
                // return): route again, to it.
                Some(_) => {}
            }
        }
    }

    /// The key's owner, when it is down and the key goes to a stand-in.
    fn owner_away(&self) -> Option<&NodeHandle> {
        self.away.and_then(|i| self.snapshot.nodes.get(i))
    }

    /// For a key routed to a stand-in, `exptime` capped at the stand-in cap (see
    /// [`ClientBuilder::stand_in_ttl`](crate::ClientBuilder::stand_in_ttl)): `exptime` itself
    /// otherwise.
    pub(crate) fn cap_exptime(&self, exptime: u32) -> u32 {
        if self.away.is_none() {
            return exptime;
        }
        let cap = self.snapshot.placement.stand_in_ttl.max(1);
        // 0 never expires; above 30 days memcached reads a Unix time, which the client sends
        // only for times to live over 30 days.
        if exptime == 0 || u64::from(exptime) > MAX_RELATIVE_TTL.as_secs() {
            cap
        } else {
            exptime.min(cap)
        }
    }

    /// `request` with its time to live capped (see [`Route::cap_exptime`]), when the key goes
    /// to a stand-in and the request sets one; `None` when nothing changes.
    pub(crate) fn capped<'a>(&self, request: &Request<'a>) -> Option<Request<'a>> {
        self.away?;
        let mut capped = *request;
        match &mut capped {
            Request::Store { exptime, .. }
            | Request::Cas { exptime, .. }
            | Request::Touch { exptime, .. }
            | Request::Retrieve {
                kind: Retrieval::Gat(exptime) | Retrieval::Gats(exptime),
                ..
            } => *exptime = self.cap_exptime(*exptime),
            _ => return None,
        }
        (capped != *request).then_some(capped)
    }

    /// The connection the call goes on: one of the node's (round robin when it has several),
    /// the same every time it is asked.
    pub(crate) fn connection(&self) -> &Connection {
        self.snapshot.nodes[self.index].connection_at(self.connection)
    }

    /// The key's previous and current owner, inside a warm-handoff window when its owner
    /// changed.
    pub(crate) fn moved(&self) -> Option<&Owners> {
        self.moved.as_deref()
    }
}

/// During the warm handoff window, the previous and the current owner of `key` when its owner
/// changed; `None` otherwise (one atomic load when the window is closed).
fn moved(topology: &Topology, snapshot: &Snapshot, key: &[u8]) -> Option<Box<Owners>> {
    let handoff = topology.handoff()?;
    let current = snapshot.route(key)?;
    let previous = handoff.previous.owner(key)?;
    (previous.id != current.id).then(|| {
        Box::new(Owners {
            previous: previous.connection().clone(),
            current: current.connection().clone(),
            limits: topology.settings().limits,
        })
    })
}
