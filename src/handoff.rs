//! Warm handoff: for a while after a topology change, a key whose owner changed is still looked
//! up on its previous owner, copied to the new one, and kept from coming back once deleted or
//! overwritten. See [`ClientBuilder::warm_handoff`](crate::ClientBuilder::warm_handoff).
//!
//! This module owns what happens around a one-key call on a moved key ([`Owners::before`] and
//! [`Owners::after`], by what the request does to its key: [`KeyAccess`]) and the per-key
//! exchanges with the two owners. When the window is open and which snapshot was the previous
//! one is [`crate::topology`]'s; which key moved is [`crate::routing`]'s. Every one-key call of
//! the client goes through routing, so no command can skip the handoff.
//!
//! The rules, and why no deleted or overwritten value can come back:
//!
//! * A miss on the new owner reads the previous owner with `mg <key> v t f c k` (value, remaining
//!   TTL, client flags, CAS, key: a reply naming another key is refused, and nothing is served
//!   or copied) and copies a hit to the new owner with `ms ... ME` (add: never over a value
//!   written meanwhile), with the remaining TTL. It then reads the previous owner's CAS again
//!   (`mg <key> c k`): if the item is gone or changed there, or the reply names another key, a
//!   delete may have run between the read and the copy, so the copy is deleted again
//!   (`md <key> C<cas of the copy>`: only if still ours).
//! * A delete of a moved key deletes on the previous owner first, then on the new one. Any copy
//!   made from a read before the first delete is either deleted by the second, or found out by
//!   its re-check and deleted by its maker.
//! * A write of a moved key goes to the new owner, then deletes the previous owner's copy; a
//!   copy made meanwhile loses to the written value, since `add` does not overwrite. A write
//!   that depends on the value (`add`, `append`, `incr`, `touch`, ...) first brings the value
//!   over, so that it sees it.
//! * A read that misses on the new owner is answered with the previous owner's item (its CAS is
//!   the copy's on the new owner, or none when nothing was copied).
//!
//! Nodes without the meta protocol are read with `get` and nothing is copied (the remaining TTL
//! cannot be known): the value is served, and served again from the previous owner until the
//! window closes.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::connection::Connection;
use crate::error::Error;
use crate::protocol::meta::{
    MetaDelete, MetaGet, MetaReply, MetaRequest, MetaSet, MetaStatus, SetMode, Ttl,
};
use crate::protocol::{ErrorReply, Item, KeyAccess, Limits, Request, Response, Retrieval};

/// A moved key's two owners during the window (connection handles are cheap clones).
pub(crate) struct Owners {
    pub previous: Connection,
    pub current: Connection,
    pub limits: Limits,
}

/// What the previous owner holds.
struct Found {
    value: Bytes,
    flags: u32,
    ttl: Option<Ttl>,
    cas: Option<u64>,
}

impl Owners {
    /// Before a call that does `access` to `key` on the new owner: an update first brings a
    /// moved value over; a delete first deletes the previous owner's copy. Returns whether a
    /// copy was deleted there (for [`Owners::after`]).
    pub(crate) async fn before(&self, access: KeyAccess, key: &[u8]) -> bool {
        match access {
            KeyAccess::Update => {
                let _ = self.recover(key).await;
                false
            }
            KeyAccess::Delete => self.forget_previous(key).await,
            KeyAccess::Read | KeyAccess::Overwrite => false,
        }
    }

    /// After the new owner answered `response` to a call that does `access` to `key`: a read's
    /// miss is answered with the previous owner's item; after a write the previous owner's
    /// copy is deleted; a delete that found nothing on the new owner but deleted the previous
    /// owner's copy (`deleted_before`) deleted the key.
    pub(crate) async fn after(
        &self,
        access: KeyAccess,
        key: &[u8],
        deleted_before: bool,
        response: Response,
    ) -> Response {
        match (access, response) {
            (KeyAccess::Read, Response::Values(items)) if items.is_empty() => {
                match self.recover(key).await {
                    Ok(Some(item)) => Response::Values(vec![item]),
                    _ => Response::Values(items), // a failure of either node is a miss
                }
            }
            (KeyAccess::Overwrite | KeyAccess::Update, response) => {
                self.forget_previous(key).await;
                response
            }
            (KeyAccess::Delete, Response::NotFound) if deleted_before => Response::Deleted,
            (_, response) => response,
        }
    }

    /// Sends a meta request on `on` and returns its meta reply.
    async fn meta(&self, on: &Connection, request: MetaRequest<'_>) -> Result<MetaReply, Error> {
        on.request(&request, &self.limits, |response| match response {
            Response::Meta(reply) => Ok(*reply),
            other => Err(other),
        })
        .await
    }

    /// The previous owner's item, by the meta protocol or, without it, by `get`.
    async fn read_previous(&self, key: &[u8]) -> Result<Option<Found>, Error> {
        if self.previous.speaks_meta() != Some(false) {
            let get = MetaGet::new(key).value().ttl().client_flags().cas();
            let reply = self
                .previous
                .read_item(&self.limits, get, |response| match response {
                    Response::Meta(reply) => Ok(Some(reply)),
                    Response::Error(ErrorReply::Error) => Ok(None),
                    other => Err(other),
                })
                .await?;
            self.previous.set_speaks_meta(reply.is_some());
            if let Some(reply) = reply {
                let placeholder = reply.flags.win_taken || reply.flags.stale;
                return Ok(match (reply.status, reply.value) {
                    (MetaStatus::Value, Some(value)) if !placeholder => Some(Found {
                        value,
                        flags: reply.flags.client_flags.unwrap_or(0),
                        ttl: reply.flags.ttl,
                        cas: reply.flags.cas,
                    }),
                    _ => None,
                });
            }
        }
        let keys: &[&[u8]] = &[key];
        let request = Request::Retrieve {
            kind: Retrieval::Get,
            keys,
        };
        self.previous
            .request(&request, &self.limits, |response| match response {
                Response::Values(mut items) => {
                    Ok(items.pop().filter(|i| i.key == key).map(|i| Found {
                        value: i.value,
                        flags: i.flags,
                        ttl: None,
                        cas: None,
                    }))
                }
                other => Err(other),
            })
            .await
    }

    /// A miss on the new owner: the previous owner's item, copied to the new owner when its
    /// remaining TTL is known (the item's CAS is then the copy's). See the module docs.
    pub(crate) async fn recover(&self, key: &[u8]) -> Result<Option<Item>, Error> {
        let Some(found) = self.read_previous(key).await? else {
            return Ok(None);
        };
        let item = |cas| {
            Some(Item::new(
                Bytes::copy_from_slice(key),
                found.flags,
                cas,
                found.value.clone(),
            ))
        };
        let (Some(ttl), Some(cas)) = (found.ttl, found.cas) else {
            return Ok(item(None)); // no meta protocol: served, not copied
        };
        let exptime = match ttl {
            Ttl::Never => 0,
            Ttl::Seconds(0) => return Ok(item(None)), // expiring now: not worth a copy
            Ttl::Seconds(secs) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                crate::protocol::exptime(std::time::Duration::from_secs(secs.into()), now)?
            }
        };
        let copy = MetaSet::new(key, &found.value)
            .mode(SetMode::Add)
            .client_flags(found.flags)
            .ttl(exptime)
            .return_cas();
        let copied = match self.meta(&self.current, copy.into()).await {
            Ok(reply) if reply.status == MetaStatus::Success => reply.flags.cas,
            _ => None, // not stored (written meanwhile) or failed: the read still stands
        };
        if let Some(copy_cas) = copied {
            let again = MetaGet::new(key).cas();
            let again = self
                .previous
                .read_item(&self.limits, again, |response| match response {
                    Response::Meta(reply) => Ok(reply.flags.cas),
                    other => Err(other),
                });
            if again.await.ok().flatten() != Some(cas) {
                let undo = MetaDelete::new(key).compare_cas(copy_cas);
                let _ = self.meta(&self.current, undo.into()).await;
                return Ok(item(None));
            }
        }
        Ok(item(copied))
    }

    /// The previous owner's value of `key`, not copied: for a caller that stores it on the new
    /// owner itself (a `get_or_load` holding the key's lease). A failure is a miss.
    pub(crate) async fn previous_value(&self, key: &[u8]) -> Option<Bytes> {
        let found = self.read_previous(key).await.ok()??;
        Some(found.value)
    }

    /// Deletes the previous owner's copy (before a delete on the new owner, or after a write
    /// there). Returns whether it existed; a failure of that node is not the caller's: the
    /// caller's own request decides.
    pub(crate) async fn forget_previous(&self, key: &[u8]) -> bool {
        let delete = Request::Delete { key };
        let deleted = self
            .previous
            .request(&delete, &self.limits, |response| match response {
                Response::Deleted => Ok(true),
                other => Err(other),
            });
        deleted.await.unwrap_or(false)
    }
}
