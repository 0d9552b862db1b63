//! Multi-key reads: [`Client::get_many`], which fails whole when a node fails, and
//! [`Client::get_many_partial`], which returns what the nodes that answered found and, apart,
//! the keys whose node failed, with why.
//!
//! Both are one mechanism: the keys are grouped by the node they route to (under
//! [`FailureMode::Redistribute`](crate::FailureMode::Redistribute) a down node's keys route to
//! their stand-in), every node's `get k1 k2 ...` (split every 100 keys or 16 KB) is queued before any
//! reply is awaited, all under one deadline, and each reply is checked against its request. A
//! node refused before anything was sent (marked down meanwhile) has its keys routed again once,
//! when they now go elsewhere. Owns no routing rule and no connection.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::Client;
use crate::connection::accept_reply;
use crate::error::{excerpt, Error, ProtocolError};
use crate::pipeline::Frame;
use crate::protocol::{
    retrieval_batches, validate_key, Item, Request, Response, Retrieval, MAX_RETRIEVAL_LINE,
};
use crate::routing::Route;

/// Keys per `get` line; larger groups, and lines over 16 KB (ElastiCache Serverless's limit),
/// are split into several pipelined requests.
const KEYS_PER_GET: usize = 100;

/// What [`Client::get_many_partial`] found.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct MultiGet {
    /// The values found, by key. Keys that missed are in neither field.
    pub hits: HashMap<Bytes, Bytes>,
    /// The keys that could not be read, each with its node's error (one entry per key; the keys
    /// of one node share its error).
    pub failed: Vec<(Bytes, Error)>,
}

impl MultiGet {
    /// Whether every key was read (hit or miss).
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Client {
    /// The values of many keys: one `get k1 k2 ...` per node (split every 100 keys), all nodes
    /// in parallel. Missing keys are absent from the map. Fails if any node fails; see
    /// [`Client::get_many_partial`] for the hits of the nodes that answered.
    pub async fn get_many<I, K>(&self, keys: I) -> Result<HashMap<Bytes, Bytes>, Error>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let found = self.get_many_partial(keys).await?;
        match found.failed.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(found.hits),
        }
    }

    /// As [`Client::get_many`], but a failing node fails only its own keys: the result holds
    /// the hits from the nodes that answered and, separately, each key that could not be read
    /// with its error. Under [`FailureMode::Redistribute`](crate::FailureMode::Redistribute) the
    /// keys of a node marked down are read from the next live node instead.
    ///
    /// Returns `Err` only for what fails every key: an invalid key (refused before anything is
    /// sent) or a client without nodes.
    ///
    /// ```no_run
    /// # async fn demo(client: memcached_autodiscovery::Client) -> Result<(), memcached_autodiscovery::Error> {
    /// let found = client.get_many_partial(["user:1", "user:2", "user:3"]).await?;
    /// for (key, error) in &found.failed {
    ///     eprintln!("{} unreadable: {error}", String::from_utf8_lossy(key));
    /// }
    /// let user1 = found.hits.get(&b"user:1"[..]);
    /// # let _ = user1; Ok(()) }
    /// ```
    pub async fn get_many_partial<I, K>(&self, keys: I) -> Result<MultiGet, Error>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        let span = crate::spans::multi_get("get_many", keys.len());
        let call = async {
            for key in &keys {
                validate_key(key.as_ref())?;
            }
            let keys = distinct(keys.iter().map(AsRef::as_ref));
            let mut found = MultiGet::default();
            let (keys, near) = self.near_split(keys, &mut found.hits);
            if keys.is_empty() {
                return Ok(found);
            }
            let mut round = self.read_round(&keys, &mut found).await?;
            // Keys whose node was found down before their request went out: once more, if they
            // now route elsewhere.
            if !round.is_empty() {
                let retry: Vec<&[u8]> = round.iter().map(|(k, _)| *k).collect();
                let mut again = MultiGet::default();
                round = self.read_round(&retry, &mut again).await?;
                found.hits.extend(again.hits);
                found.failed.extend(again.failed);
            }
            found.failed.extend(
                round
                    .into_iter()
                    .map(|(key, error)| (Bytes::copy_from_slice(key), error)),
            );
            if self.topology().handoff().is_some() {
                // Inside a warm-handoff window only: on the heap, out of every call's future.
                Box::pin(self.recover_moved(&keys, &mut found)).await;
            }
            if let Some(near) = near {
                near.offer(&keys, &found.hits);
            }
            Ok(found)
        }
        .instrument(span);
        crate::metrics::timed("get_many", call).await
    }

    /// One read of `keys`, grouped by node: hits and failed keys into `found`, except keys
    /// refused as [`Error::NodeDown`] that route elsewhere now, which are returned.
    async fn read_round<'k>(
        &self,
        keys: &[&'k [u8]],
        found: &mut MultiGet,
    ) -> Result<Vec<(&'k [u8], Error)>, Error> {
        let snapshot = self.topology().snapshot();
        // The keys ordered by node in one vector (a stable sort: each node's keys keep their
        // order), rather than one vector per node.
        let mut routed: Vec<(usize, &'k [u8])> = Vec::with_capacity(keys.len());
        for &key in keys {
            let index = snapshot.route_index(key);
            routed.push((index.ok_or_else(|| self.topology().no_nodes())?, key));
        }
        routed.sort_by_key(|&(index, _)| index);
        let ordered: Vec<&'k [u8]> = routed.iter().map(|&(_, key)| key).collect();
        let settings = self.topology().settings();
        let deadline = Instant::now() + settings.request_timeout;
        let mut refused = Vec::new();
        let mut waiting = Vec::with_capacity(snapshot.nodes.len().min(keys.len()));
        let mut start = 0;
        while let Some(&(index, _)) = routed.get(start) {
            let len = routed[start..]
                .iter()
                .take_while(|&&(i, _)| i == index)
                .count();
            let group = &ordered[start..start + len];
            start += len;
            let conn = snapshot.nodes[index].connection();
            for chunk in retrieval_batches(b"get", group, KEYS_PER_GET, MAX_RETRIEVAL_LINE) {
                let request = Request::Retrieve {
                    kind: Retrieval::Get,
                    keys: chunk,
                };
                let (frame, expect) = Frame::encode(|buf| request.encode(buf, &settings.limits))?;
                match conn.send(frame, expect, true, deadline).await {
                    Ok(reply) => waiting.push((conn, chunk, expect, reply)),
                    Err(error) => {
                        for &key in chunk {
                            let elsewhere = matches!(error, Error::NodeDown { .. })
                                && snapshot.route_index(key) != Some(index);
                            if elsewhere {
                                refused.push((key, error.clone()));
                            } else {
                                found
                                    .failed
                                    .push((Bytes::copy_from_slice(key), error.clone()));
                            }
                        }
                    }
                }
            }
        }
        // Every request has the connection's own deadline, watched by its socket task: no
        // timer here.
        found.hits.reserve(keys.len());
        for (conn, chunk, expect, reply) in waiting {
            let items = conn.reply(reply).await.and_then(|response| {
                accept_reply(conn.node(), expect, response, |response| match response {
                    Response::Values(items) => Ok(items),
                    other => Err(other),
                })
            });
            let items = items.and_then(|items| check_order(chunk, items, conn.node()));
            match items {
                Ok(items) => {
                    for item in items {
                        found.hits.insert(item.key, item.value);
                    }
                }
                Err(error) => found.failed.extend(
                    chunk
                        .iter()
                        .map(|key| (Bytes::copy_from_slice(key), error.clone())),
                ),
            }
        }
        Ok(refused)
    }

    /// During the warm handoff window: the misses among `keys` that moved, read from their
    /// previous owner (see [`crate::handoff`]).
    async fn recover_moved(&self, keys: &[&[u8]], found: &mut MultiGet) {
        if self.topology().handoff().is_none() {
            return;
        }
        let failed: std::collections::HashSet<&[u8]> =
            found.failed.iter().map(|(k, _)| &k[..]).collect();
        let misses: Vec<&[u8]> = keys
            .iter()
            .copied()
            .filter(|k| !found.hits.contains_key(*k) && !failed.contains(k))
            .collect();
        for key in misses {
            let Ok(route) = Route::of(self.topology(), key) else {
                continue;
            };
            if let Some(owners) = route.moved() {
                if let Ok(Some(item)) = owners.recover(key).await {
                    found.hits.insert(item.key, item.value);
                }
            }
        }
    }
}

/// The keys in the caller's order, each once (the requests on the wire follow the caller's
/// order).
fn distinct<'k>(keys: impl ExactSizeIterator<Item = &'k [u8]>) -> Vec<&'k [u8]> {
    let mut out: Vec<&[u8]> = Vec::with_capacity(keys.len());
    if keys.len() <= 32 {
        for key in keys {
            if !out.contains(&key) {
                out.push(key);
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        out.extend(keys.filter(|k| seen.insert(*k)));
    }
    out
}

/// Checks that a multi-key reply holds only requested keys, in request order (memcached answers
/// in request order and skips misses); anything else means the stream is out of step.
fn check_order(requested: &[&[u8]], items: Vec<Item>, node: &str) -> Result<Vec<Item>, Error> {
    let mut remaining = requested.iter();
    for item in &items {
        if !remaining.any(|k| *k == item.key) {
            return Err(Error::Protocol {
                node: node.to_string(),
                source: ProtocolError::UnexpectedReply {
                    expected: "only requested keys, in request order",
                    line: excerpt(&item.key),
                },
            });
        }
    }
    Ok(items)
}

/// A multi-get's `outcome`: `ok` when every key was read, else the kind of the first key's
/// failure.
#[cfg(feature = "metrics")]
impl crate::metrics::Success for MultiGet {
    #[cfg(feature = "metrics")]
    fn outcome(&self) -> &'static str {
        self.failed
            .first()
            .map_or("ok", |(_, e)| crate::metrics::failure(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_once_in_the_callers_order() {
        let few: Vec<&[u8]> = vec![b"k10", b"k9", b"k10", b"a"];
        assert_eq!(distinct(few.into_iter()), [&b"k10"[..], b"k9", b"a"]);
        let many: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("k{}", 99 - i % 50).into_bytes())
            .collect();
        let out = distinct(many.iter().map(|k| &k[..]));
        assert_eq!(out.len(), 50);
        assert_eq!(out[0], b"k99");
        assert_eq!(out[49], b"k50");
    }

    #[test]
    fn multi_get_replies_must_follow_request_order() {
        let item = |k: &'static [u8]| Item::new(Bytes::from_static(k), 0, None, Bytes::new());
        let keys: &[&[u8]] = &[b"a", b"b", b"c"];
        assert!(check_order(keys, vec![item(b"a"), item(b"c")], "n").is_ok());
        assert!(check_order(keys, vec![item(b"c"), item(b"a")], "n").is_err());
        assert!(check_order(keys, vec![item(b"x")], "n").is_err());
    }
}
