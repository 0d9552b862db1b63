//! The reads the near cache may serve, on a [`Client`] built with one
//! ([`ClientBuilder::near_cache`](crate::ClientBuilder::near_cache)): one key's value (`get`,
//! `get_decoded`, `get_json`) and the first step of `get_or_load`; `get_many` asks it key by
//! key in [`crate::multi_get`]. Each asks [`NearCache::get`] first, takes a
//! [`Ticket`](crate::near_cache::Ticket) before its request is sent, and offers what the node
//! answered. Without a near cache each is the plain read. The cache's own rules are
//! [`crate::near_cache`]'s; the writes that drop entries are in [`crate::exchange`] (one-key
//! writes) and [`crate::client`] (`invalidate`, `flush_all`).

use bytes::Bytes;
use tokio::time::Instant;

use crate::error::Error;
use crate::near_cache::{Kept, NearCache, Ticket};
use crate::protocol::Retrieval;
use crate::Client;

/// A read the near cache could not serve, on its way to a node.
pub(crate) struct Pending<'a> {
    near: &'a NearCache,
    ticket: Ticket,
    sent: Instant,
}

impl Pending<'_> {
    /// Offers what the node answered for `key` (`flags`: `None` when the read did not say).
    pub(crate) fn offer(&self, key: &[u8], value: &Bytes, flags: Option<u32>) {
        self.near.offer(self.ticket, self.sent, key, value, flags);
    }
}

/// What the near cache said of a key.
pub(crate) enum Lookup<'a> {
    /// Served from memory.
    Hit(Kept),
    /// Not served: read it from its node (`None`: the client has no near cache).
    Miss(Option<Pending<'a>>),
}

impl Client {
    /// Asks the near cache for `key` (for `op`, named in the trace when it serves it); a read
    /// that `needs_flags` is not served a value kept without them.
    pub(crate) fn near_lookup(
        &self,
        op: &'static str,
        key: &[u8],
        needs_flags: bool,
    ) -> Lookup<'_> {
        let Some(near) = self.near() else {
            return Lookup::Miss(None);
        };
        if let Some(kept) = near.get(key, needs_flags) {
            tracing::debug!(op, "memcached.near_cache.hit");
            return Lookup::Hit(kept);
        }
        Lookup::Miss(Some(Pending {
            near,
            ticket: near.ticket(key),
            sent: Instant::now(),
        }))
    }

    /// The value of `key` and, if `needs_flags`, its flags (`get`; `op` names its span), from
    /// the near cache when it holds them. Not counted in the metrics: the public call is.
    pub(crate) async fn read_value(
        &self,
        op: &'static str,
        key: &[u8],
        needs_flags: bool,
    ) -> Result<Option<(Bytes, u32)>, Error> {
        let pending = match self.near_lookup(op, key, needs_flags) {
            Lookup::Hit(Kept { value, flags }) => return Ok(Some((value, flags.unwrap_or(0)))),
            Lookup::Miss(pending) => pending,
        };
        let item = self.retrieve_one(op, Ok(Retrieval::Get), key).await?;
        if let (Some(pending), Some(item)) = (&pending, &item) {
            pending.offer(key, &item.value, Some(item.flags));
        }
        Ok(item.map(|item| (item.value, item.flags)))
    }
}

/// The keys of a multi-get that the near cache could not serve, with what their reads need to
/// offer what the nodes answer.
pub(crate) struct PendingMany<'a> {
    near: &'a NearCache,
    sent: Instant,
    /// One per key sent to the nodes, in their order.
    tickets: Vec<Ticket>,
}

impl PendingMany<'_> {
    /// Offers the values found for `keys` (the keys the tickets were taken for, in order).
    pub(crate) fn offer(&self, keys: &[&[u8]], hits: &std::collections::HashMap<Bytes, Bytes>) {
        for (key, ticket) in keys.iter().zip(&self.tickets) {
            if let Some(value) = hits.get(*key) {
                // A multi-get's reply is read into a map without flags: kept for `get`.
                self.near.offer(*ticket, self.sent, key, value, None);
            }
        }
    }
}

impl Client {
    /// Serves what it can of `keys` (distinct) from the near cache into `hits`; returns the
    /// keys left for the nodes, and what their reads need to offer what the nodes answer.
    pub(crate) fn near_split<'k>(
        &self,
        keys: Vec<&'k [u8]>,
        hits: &mut std::collections::HashMap<Bytes, Bytes>,
    ) -> (Vec<&'k [u8]>, Option<PendingMany<'_>>) {
        let Some(near) = self.near() else {
            return (keys, None);
        };
        let mut left = Vec::with_capacity(keys.len());
        let mut tickets = Vec::with_capacity(keys.len());
        for key in keys {
            match near.get(key, false) {
                Some(kept) => {
                    hits.insert(Bytes::copy_from_slice(key), kept.value);
                }
                None => {
                    tickets.push(near.ticket(key));
                    left.push(key);
                }
            }
        }
        if !hits.is_empty() {
            tracing::debug!(
                op = "get_many",
                keys = hits.len(),
                "memcached.near_cache.hit"
            );
        }
        let pending = PendingMany {
            near,
            sent: Instant::now(),
            tickets,
        };
        (left, Some(pending))
    }
}
