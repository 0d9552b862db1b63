//! `get_or_load` and `invalidate` on one node: at most one load per key across every client of a
//! cluster, through memcached's meta-protocol leases.
//!
//! A lookup is `mg <key> N<lease> R<early> v c k t`; a reply that names another key than the one
//! asked for is refused as a protocol error ([`Connection::read_item`]). On a miss the server creates an empty
//! placeholder that lives for the lease and hands exactly one caller a win (`W`): that caller
//! runs the loader and stores its value with `ms ... C<cas>`, so a newer value is never
//! overwritten. Every other caller sees the placeholder with `Z` (a win is out) and asks again
//! after a short pause (2 ms, doubling up to 20 ms), until the value is there; once the lease
//! runs out a waiter wins itself, so a winner that died holds nobody up for longer than the
//! lease. An item close to its end of life (less than a tenth of its TTL left, for TTLs of 10 s
//! and more) hands one caller a recache win while everyone else keeps being served; an item
//! marked stale by [`invalidate`] does the same, but an empty one (a placeholder invalidated
//! during its load looks just like it) is waited for, never served. A caller that waited for
//! another's load takes the value it finds, even when offered an early refresh of it. A loader
//! that fails gives its error to its caller and deletes its placeholder at once
//! (`md ... C<cas>`), and so does a winner that is cancelled, from a task of its own. So does a
//! winner whose value is not stored: any answer to its `ms` but `HD` (`NS`, `EX`, `NF`, an
//! error answer such as `SERVER_ERROR object too large for cache`), no answer, or a value over
//! the client's `max_value_size` that is never sent; the caller still gets the value it loaded.
//! The delete compares the CAS of the win, so it never removes an item written since.
//!
//! A node that answers the meta protocol with `ERROR` (memcached before 1.6) is remembered, and
//! served by `get`, the loader and `set` instead: one load per key per client (the in-process
//! single flight of [`crate::flight`]), not per cluster.
//!
//! This module owns the lease dance on one connection. It does not route keys, nor share
//! flights between callers of one client: that is the client's.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::connection::Connection;
use crate::error::Error;
use crate::handoff::Owners;
use crate::protocol::meta::{MetaDelete, MetaGet, MetaReply, MetaRequest, MetaSet, MetaStatus};
use crate::protocol::{
    ErrorReply, Limits, Request, Response, Retrieval, StoreMode, MAX_RELATIVE_TTL,
};

/// The first pause of a caller waiting for another's load; it doubles up to [`MAX_PAUSE`], so a
/// waiter sees the value at most 20 ms after it is stored.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(20);
/// TTLs shorter than this get no early refresh: a tenth of them is under the server's 1 s clock.
const MIN_EARLY_REFRESH_TTL: u32 = 10;

/// What one node said about a key.
enum Lookup {
    /// The value to return: a hit.
    Value(Bytes),
    /// A stale value to return while another caller refreshes it.
    Stale(Bytes),
    /// This caller loads; `cas` guards the store. `current` is the value the item still holds
    /// when the win is an early refresh (not a miss, not a stale item).
    Win {
        cas: Option<u64>,
        current: Option<Bytes>,
    },
    /// Another caller is loading: ask again soon.
    Wait,
    /// The node does not speak the meta protocol.
    NoMeta,
}

/// What a `get_or_load` on one node needs to know.
pub(crate) struct Lease<'a> {
    pub connection: &'a Connection,
    /// Inside a warm-handoff window, when the key's owner changed: its two owners. A miss on
    /// the new owner is then filled from the previous one before anything is loaded, and a
    /// stored value deletes the previous owner's copy (see [`crate::handoff`]).
    pub moved: Option<&'a Owners>,
    pub limits: &'a Limits,
    pub key: &'a [u8],
    /// memcached's exptime for the value.
    pub exptime: u32,
    /// How long a win holds the key (the placeholder's TTL).
    pub lease: Duration,
}

/// What a `get_or_load` returns: the value, and whether it is the node's current one (a
/// value found, loaded and stored, or stored by another caller), not a stale value served
/// while another caller refreshes it nor a loaded value the node did not keep. Only a current
/// value may be kept in the near cache.
#[derive(Clone)]
pub(crate) struct Fetched {
    pub value: Bytes,
    pub current: bool,
}

impl Fetched {
    fn current(value: Bytes) -> Fetched {
        Fetched {
            value,
            current: true,
        }
    }
}

/// The error of a failed loader, as the caller's [`Error::Load`].
fn load_error<E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>>(e: E) -> Error {
    Error::Load {
        source: std::sync::Arc::from(e.into()),
    }
}

impl Lease<'_> {
    fn lease_secs(&self) -> u32 {
        u32::try_from(self.lease.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    /// Seconds of remaining TTL below which one caller refreshes early; none for items that do
    /// not expire or expire at an absolute time.
    fn early_secs(&self) -> Option<u32> {
        let relative = self.exptime >= MIN_EARLY_REFRESH_TTL
            && u64::from(self.exptime) <= MAX_RELATIVE_TTL.as_secs();
        relative.then_some(self.exptime / 10)
    }

    async fn lookup(&self) -> Result<Lookup, Error> {
        let mut get = MetaGet::new(self.key)
            .vivify(self.lease_secs())
            .value()
            .cas()
            .ttl();
        if let Some(early) = self.early_secs() {
            get = get.recache(early);
        }
        self.connection
            .read_item(self.limits, get, |response| match response {
                Response::Meta(reply) => Ok(classify(*reply)),
                Response::Error(ErrorReply::Error) => Ok(Lookup::NoMeta),
                other => Err(other),
            })
            .await
    }

    /// Stores the loaded value, unless the item changed since the win; a value not stored gives
    /// the key back ([`Lease::release`]). Returns whether it was stored.
    async fn store(&self, value: &[u8], cas: Option<u64>) -> bool {
        let mut set = MetaSet::new(self.key, value).ttl(self.exptime);
        if let Some(cas) = cas {
            set = set.compare_cas(cas);
        }
        // The caller gets its value whether or not it could be kept.
        let stored = self.send(set.into()).await;
        if !stored {
            self.release(cas).await;
        }
        if let Some(owners) = self.moved {
            owners.forget_previous(self.key).await;
        }
        stored
    }

    /// Inside a warm-handoff window, a moved key's value on its previous owner (a failure of
    /// that node is a miss).
    async fn previous_owners_value(&self) -> Option<Bytes> {
        let owners = self.moved?;
        owners.previous_value(self.key).await
    }

    /// Runs the load protocol: see the module docs.
    pub(crate) async fn get_or_load<F, Fut, E>(&self, load: F) -> Result<Fetched, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        // The rare paths (no meta protocol, waiting for another's load, a key moved inside a
        // warm-handoff window, giving a key back) run on the heap, out of every call's future.
        if self.connection.speaks_meta() == Some(false) {
            return Box::pin(self.without_meta(load)).await;
        }
        let mut pause = FIRST_PAUSE;
        // Whether this caller already waited for another's load: it then takes a value it
        // finds, even one it is offered to refresh early.
        let mut waited = false;
        // A waiter wins itself once the lease runs out; twice the lease bounds the wait even
        // for a node that keeps no placeholder.
        let give_up = tokio::time::Instant::now() + self.lease * 2;
        loop {
            if tokio::time::Instant::now() >= give_up {
                return Err(Error::Timeout {
                    node: self.connection.node().to_string(),
                    timeout: self.lease * 2,
                });
            }
            match self.lookup().await? {
                Lookup::Value(value) => return Ok(Fetched::current(value)),
                Lookup::Stale(value) => {
                    return Ok(Fetched {
                        value,
                        current: false,
                    })
                }
                Lookup::NoMeta => {
                    self.connection.set_speaks_meta(false);
                    return Box::pin(self.without_meta(load)).await;
                }
                Lookup::Wait => {
                    waited = true;
                    Box::pin(tokio::time::sleep(pause)).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Lookup::Win {
                    current: Some(value),
                    ..
                } if waited => return Ok(Fetched::current(value)),
                Lookup::Win { cas, current } => {
                    self.connection.set_speaks_meta(true);
                    let release = Release {
                        connection: self.connection.clone(),
                        key: Bytes::copy_from_slice(self.key),
                        cas,
                        limits: *self.limits,
                        armed: true,
                    };
                    if current.is_none() && self.moved.is_some() {
                        if let Some(value) = Box::pin(self.previous_owners_value()).await {
                            let current = Box::pin(self.store(&value, cas)).await;
                            release.disarm();
                            return Ok(Fetched { value, current });
                        }
                    }
                    return match load().await {
                        Ok(value) => {
                            // Armed until the store is done: a winner cancelled before it gives
                            // the key back too (after it, the CAS has moved on).
                            let current = Box::pin(self.store(&value, cas)).await;
                            release.disarm();
                            Ok(Fetched { value, current })
                        }
                        Err(e) => {
                            release.disarm();
                            Box::pin(self.release(cas)).await;
                            Err(load_error(e))
                        }
                    };
                }
            }
        }
    }

    /// Deletes this caller's placeholder (or the item it won the refresh of), if still the one
    /// it won, so that the next caller loads at once.
    async fn release(&self, cas: Option<u64>) {
        if let Some(cas) = cas {
            let _ = self
                .send(MetaDelete::new(self.key).compare_cas(cas).into())
                .await;
        }
    }

    /// Sends a meta request whose outcome is not the caller's (a store after a load, a
    /// release) and returns whether the node answered `HD` (stored, deleted): any other answer,
    /// an error answer, or none, is a `false`.
    async fn send(&self, request: MetaRequest<'_>) -> bool {
        let answer = self
            .connection
            .request(&request, self.limits, |response| {
                Ok(matches!(response, Response::Meta(reply) if reply.status == MetaStatus::Success))
            })
            .await;
        matches!(answer, Ok(true))
    }

    /// `get`, then on a miss the loader and `set`: for nodes without the meta protocol.
    async fn without_meta<F, Fut, E>(&self, load: F) -> Result<Fetched, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let keys = [self.key];
        let get = Request::Retrieve {
            kind: Retrieval::Get,
            keys: &keys,
        };
        let found = self
            .connection
            .request(&get, self.limits, |response| match response {
                Response::Values(mut items) => Ok(items.pop().filter(|i| i.key == self.key)),
                other => Err(other),
            })
            .await?;
        if let Some(item) = found {
            return Ok(Fetched::current(item.value));
        }
        // Not copied to the new owner here: not the node's value yet.
        if let Some(value) = self.previous_owners_value().await {
            return Ok(Fetched {
                value,
                current: false,
            });
        }
        let value = load().await.map_err(load_error)?;
        let set = Request::Store {
            mode: StoreMode::Set,
            key: self.key,
            flags: 0,
            exptime: self.exptime,
            value: &value,
        };
        // As above: the value is the caller's whether or not it could be kept.
        let stored = self.connection.request(&set, self.limits, Ok).await;
        let current = matches!(stored, Ok(Response::Stored));
        Ok(Fetched { value, current })
    }
}

/// What a lookup's reply means. A win (`W`) is this caller's to load, with or without a current
/// value (a miss's placeholder, a stale item, an item close to its end). Otherwise a value is
/// served, even stale (`X`) while another caller refreshes it, except an empty item that a win
/// is out for (`Z`) or that is stale, which means: wait.
///
/// An empty item may be the placeholder of a load in progress (`Z`), or that placeholder
/// invalidated during the load: memcached 1.6.18 marks it stale and answers the next reader
/// `VA 0 ... X W`, the others `VA 0 ... Z X`. Nothing in such a reply (CAS, TTL, client flags,
/// size, `h`, `l`) tells it from an empty value once stored and then invalidated, and a
/// placeholder must never be served; so neither is an empty stale item, nor an empty value of
/// one's own whose early refresh is under way: their readers wait for the load.
fn classify(reply: MetaReply) -> Lookup {
    let flags = &reply.flags;
    if flags.win {
        let current = match (&reply.value, flags.stale) {
            (Some(value), false) if !value.is_empty() => Some(value.clone()),
            _ => None,
        };
        return Lookup::Win {
            cas: flags.cas,
            current,
        };
    }
    match reply.status {
        MetaStatus::Value => {
            let value = reply.value.unwrap_or_default();
            if value.is_empty() && (flags.win_taken || flags.stale) {
                Lookup::Wait
            } else if flags.stale {
                Lookup::Stale(value)
            } else {
                Lookup::Value(value)
            }
        }
        // Without `N` taking effect (the item vanished between two commands): ask again.
        _ => Lookup::Wait,
    }
}

/// Deletes a won placeholder when the winner is cancelled before its load ends: from a task of
/// its own, since a drop cannot wait.
struct Release {
    connection: Connection,
    key: Bytes,
    cas: Option<u64>,
    limits: Limits,
    armed: bool,
}

impl Release {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let (true, Some(cas)) = (self.armed, self.cas) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let connection = self.connection.clone();
        let (key, limits) = (self.key.clone(), self.limits);
        runtime.spawn(async move {
            let release = MetaRequest::from(MetaDelete::new(&key[..]).compare_cas(cas));
            let _ = connection.request(&release, &limits, Ok).await;
        });
    }
}

/// Marks `key` stale on one node (`md <key> I T<ttl>`): the next reader refreshes it while the
/// others are still served. On a node without the meta protocol, deletes it. Returns whether the
/// item existed.
pub(crate) async fn invalidate(
    connection: &Connection,
    limits: &Limits,
    key: &[u8],
    stale_ttl: u32,
) -> Result<bool, Error> {
    if connection.speaks_meta() != Some(false) {
        let request = MetaRequest::from(MetaDelete::new(key).invalidate_with_ttl(stale_ttl));
        let existed = connection
            .request(&request, limits, |response| match response {
                Response::Meta(reply) => match reply.status {
                    MetaStatus::Success => Ok(Some(true)),
                    MetaStatus::NotFound => Ok(Some(false)),
                    _ => Err(Response::Meta(reply)),
                },
                Response::Error(ErrorReply::Error) => Ok(None),
                other => Err(other),
            })
            .await?;
        connection.set_speaks_meta(existed.is_some());
        if let Some(existed) = existed {
            return Ok(existed);
        }
    }
    let delete = Request::Delete { key };
    connection
        .request(&delete, limits, |response| match response {
            Response::Deleted => Ok(true),
            Response::NotFound => Ok(false),
            other => Err(other),
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::meta::ReturnFlags;

    fn reply(
        status: MetaStatus,
        value: Option<&'static [u8]>,
        set: impl Fn(&mut ReturnFlags),
    ) -> MetaReply {
        let mut flags = ReturnFlags::default();
        set(&mut flags);
        MetaReply::new(status, flags, value.map(Bytes::from_static))
    }

    #[test]
    fn replies_are_read_as_the_spec_says() {
        // A miss's win: load, nothing current.
        let won = classify(reply(MetaStatus::Value, Some(b""), |f| {
            f.win = true;
            f.cas = Some(1);
        }));
        assert!(matches!(
            won,
            Lookup::Win {
                cas: Some(1),
                current: None
            }
        ));
        // The placeholder of another's load: wait.
        let pending = classify(reply(MetaStatus::Value, Some(b""), |f| f.win_taken = true));
        assert!(matches!(pending, Lookup::Wait));
        // That placeholder invalidated during the load, another caller reloading: wait too.
        let invalidated = classify(reply(MetaStatus::Value, Some(b""), |f| {
            f.win_taken = true;
            f.stale = true;
        }));
        assert!(matches!(invalidated, Lookup::Wait));
        // An empty value stored without a lease: served.
        let empty = classify(reply(MetaStatus::Value, Some(b""), |_| {}));
        assert!(matches!(empty, Lookup::Value(v) if v.is_empty()));
        // A stale value another caller refreshes: served.
        let stale = classify(reply(MetaStatus::Value, Some(b"old"), |f| {
            f.win_taken = true;
            f.stale = true;
        }));
        assert!(matches!(stale, Lookup::Stale(v) if v == "old"));
        // A stale value this caller won: refresh, nothing current to offer.
        let refresh = classify(reply(MetaStatus::Value, Some(b"old"), |f| {
            f.win = true;
            f.stale = true;
        }));
        assert!(matches!(refresh, Lookup::Win { current: None, .. }));
        // An early refresh: the current value comes with the win.
        let early = classify(reply(MetaStatus::Value, Some(b"cur"), |f| f.win = true));
        assert!(matches!(early, Lookup::Win { current: Some(v), .. } if v == "cur"));
        // A plain hit.
        let hit = classify(reply(MetaStatus::Value, Some(b"v"), |_| {}));
        assert!(matches!(hit, Lookup::Value(v) if v == "v"));
    }
}
