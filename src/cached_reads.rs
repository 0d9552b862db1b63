//! The reads the near cache may serve, on a [`Client`] built with one
//! ([`ClientBuilder::near_cache`](crate::ClientBuilder::near_cache)): one key's value (`get`,
//! `get_decoded`, `get_json`) and the first step of `get_or_load`; `get_many` asks it key by
//! key in [`crate::multi_get`]. Each asks [`NearCache::get`] first, takes a
//! [`Ticket`](crate::near_cache::Ticket) before its request is sent, and offers what the node
//! answered. Without a near cache each is the plain read. The one-key read itself
//! ([`Client::retrieve_one`], which `gets` and `gat` use without the near cache) is here too.
//! The cache's own rules are
//! [`crate::near_cache`]'s; the writes that drop entries are in [`crate::exchange`] (one-key
//! writes) and [`crate::client`] (`invalidate`, `flush_all`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::time::Instant;

use crate::error::Error;
use crate::lease::Fetched;
use crate::near_cache::{Kept, NearCache, Ticket};
use crate::protocol::{Item, Request, Response, Retrieval};
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

    /// The value of `key` (for `op`, `get_or_load`) from the near cache when it holds it;
    /// otherwise what `fetch` fetches, kept when it is the node's current value.
    pub(crate) async fn near_or_fetch<Fut>(
        &self,
        op: &'static str,
        key: &[u8],
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Bytes, Error>
    where
        Fut: Future<Output = Result<Fetched, Error>>,
    {
        let pending = match self.near_lookup(op, key, false) {
            Lookup::Hit(kept) => return Ok(kept.value),
            Lookup::Miss(pending) => pending,
        };
        let fetched = fetch().await?;
        if let (Some(pending), true) = (&pending, fetched.current) {
            pending.offer(key, &fetched.value, None);
        }
        Ok(fetched.value)
    }

    /// Reads one key with `kind` (or fails with why it cannot: a time to live out of range);
    /// a reply for another key is refused. What it finds is offered to the near cache through
    /// `pending` (a read the near cache could not serve). Not counted in the metrics: the
    /// public call is.
    pub(crate) fn retrieve_one<'a>(
        &'a self,
        op: &'static str,
        kind: Result<Retrieval, Error>,
        key: &'a [u8],
        pending: Option<Pending<'a>>,
    ) -> impl Future<Output = Result<Option<Item>, Error>> + 'a {
        let keys = [key];
        let request = kind.map(|kind| Request::Retrieve { kind, keys: &keys });
        self.exchange(op, key, request, move |response| match response {
            Response::Values(mut items) => match items.pop() {
                None => Ok(None),
                Some(item) if item.key == key && items.is_empty() => {
                    if let Some(pending) = &pending {
                        pending.offer(key, &item.value, Some(item.flags));
                    }
                    Ok(Some(item))
                }
                Some(item) => {
                    items.push(item);
                    Err(Response::Values(items))
                }
            },
            other => Err(other),
        })
    }

    /// The value of `key` and, if `needs_flags`, its flags (`get`; `op` names its span), from
    /// the near cache when it holds them. Not counted in the metrics: the public call is.
    ///
    /// Not an `async fn`: the near cache is asked, and on a miss the request queued, when this
    /// is called; the future holds the hit or the read on its way (see
    /// `examples/future_sizes.rs`).
    pub(crate) fn read_value<'a>(
        &'a self,
        op: &'static str,
        key: &'a [u8],
        needs_flags: bool,
    ) -> ReadValue<impl Future<Output = Result<Option<Item>, Error>> + 'a> {
        match self.near_lookup(op, key, needs_flags) {
            Lookup::Hit(kept) => ReadValue::Hit { kept: Some(kept) },
            Lookup::Miss(pending) => ReadValue::Miss {
                read: self.retrieve_one(op, Ok(Retrieval::Get), key, pending),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Client::read_value`]'s future: a value served from memory, or the read of it from its
    /// node.
    #[project = ReadValueProj]
    pub(crate) enum ReadValue<F> {
        Hit { kept: Option<Kept> },
        Miss { #[pin] read: F },
    }
}

impl<F: Future<Output = Result<Option<Item>, Error>>> Future for ReadValue<F> {
    type Output = Result<Option<(Bytes, u32)>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ReadValueProj::Hit { kept } => {
                let kept = kept.take().expect("a hit is answered once");
                Poll::Ready(Ok(Some((kept.value, kept.flags.unwrap_or(0)))))
            }
            ReadValueProj::Miss { read } => read
                .poll(cx)
                .map(|found| found.map(|item| item.map(|item| (item.value, item.flags)))),
        }
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
