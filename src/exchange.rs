//! The one path of a one-key call: [`Client::call`] (counted in the metrics) and
//! [`Client::exchange`] encode a request, route it by its key, queue it on the key's node and
//! hand the reply to the call's `accept`; inside a warm-handoff window, a moved key's request
//! goes through [`crate::handoff`]'s steps instead. The public calls that use it are in
//! [`crate::client`]; the routing rules are [`crate::routing`]'s, the queue and the reply
//! [`crate::connection`]'s.
//!
//! What the futures hold is kept small (every concurrent caller holds one; see
//! `examples/future_sizes.rs`): the request is encoded and queued when the call is made, from
//! inside the public call's future, and the future holds where the reply will arrive.

use std::future::Future;

use tracing::Instrument;

use crate::connection::{accept_reply, Reply, Waiting};
use crate::error::Error;
use crate::pipeline::Frame;
use crate::protocol::{Expect, KeyAccess, Request, Response};
use crate::routing::Route;
use crate::Client;

/// A one-key request, encoded and routed: what a call's future holds while it waits.
struct Routed {
    route: Route,
    frame: Frame,
    expect: Expect,
    access: Option<KeyAccess>,
    idempotent: bool,
}

impl Routed {
    /// Sends the request: queued on its node's connection now, inside the call's span; or,
    /// for a key that moved inside a warm-handoff window, kept for [`Routed::hand_off`].
    fn send(self, op: &'static str) -> Sent {
        if let (Some(_), Some(_)) = (self.route.moved(), self.access) {
            return Sent::Moved(Some(Box::new(self)));
        }
        let conn = self.route.connection();
        let span = crate::spans::one_node(op, conn.node());
        let deadline = conn.deadline();
        let queued =
            span.in_scope(|| conn.queue(self.frame, self.expect, self.idempotent, deadline));
        Sent::Queued {
            route: self.route,
            expect: self.expect,
            queued: Some(queued),
            span,
        }
    }

    /// Sends the request of a key that moved, with what the warm handoff does around it on
    /// the key's two owners ([`crate::handoff::Owners::before`] and `after`), and hands the
    /// reply to `accept`.
    async fn hand_off<T>(
        self,
        op: &'static str,
        key: &[u8],
        accept: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, Error> {
        let conn = self.route.connection();
        let (Some(owners), Some(access)) = (self.route.moved(), self.access) else {
            unreachable!("`Routed::send` hands off only a moved key's write or read")
        };
        let around = async {
            let deleted_before = owners.before(access, key).await;
            let response = conn.call(self.frame, self.expect, self.idempotent).await?;
            Ok::<_, Error>(owners.after(access, key, deleted_before, response).await)
        };
        let response = around
            .instrument(crate::spans::one_node(op, conn.node()))
            .await?;
        accept_reply(conn.node(), self.expect, response, accept)
    }
}

/// A one-key request on its way.
enum Sent {
    /// Queued on its node's connection (see [`crate::connection::Connection::queue`]).
    Queued {
        route: Route,
        expect: Expect,
        queued: Option<Result<Reply, Waiting>>,
        span: tracing::Span,
    },
    /// A key that moved, inside a warm-handoff window: sent by [`Routed::hand_off`].
    Moved(Option<Box<Routed>>),
}

impl Client {
    /// Encodes `request` and routes it by `key` ([`Route`]; a write with [`Route::of_write`],
    /// and with its time to live capped on a stand-in). Sends nothing.
    fn route(&self, key: &[u8], request: Request<'_>) -> Result<Routed, Error> {
        let limits = &self.topology().settings().limits;
        let (mut frame, expect) = Frame::encode(|buf| request.encode(buf, limits))?;
        let access = request.key_access();
        let route = match access {
            Some(KeyAccess::Overwrite | KeyAccess::Update | KeyAccess::Delete) => {
                Route::of_write(self.topology(), key)?
            }
            Some(KeyAccess::Read) | None => Route::of(self.topology(), key)?,
        };
        if let Some(capped) = route.capped(&request) {
            frame = Frame::encode(|buf| capped.encode(buf, limits))?.0;
        }
        Ok(Routed {
            route,
            frame,
            expect,
            access,
            idempotent: request.is_idempotent(),
        })
    }

    /// The one path of a one-key call, counted in the metrics as `op` (see [`Client::exchange`]).
    pub(crate) fn call<'a, T: crate::metrics::Success + 'a>(
        &'a self,
        op: &'static str,
        key: &'a [u8],
        request: Result<Request<'_>, Error>,
        accept: impl FnOnce(Response) -> Result<T, Response> + 'a,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        crate::metrics::timed(op, self.exchange(op, key, request, accept))
    }

    /// The one path of a one-key call: routes `request` (or fails with why it could not be
    /// made: a time to live out of range), sends it — inside a warm-handoff window, for a moved
    /// key, with what the handoff does around it ([`crate::handoff::Owners::before`] and
    /// `after`) — and hands the reply to `accept`, which lists the call's success arms (see
    /// [`accept_reply`]). Not counted in the metrics: the public call that uses it is.
    ///
    /// Not an `async fn`: the request is encoded and routed when this is called, so the future
    /// holds the encoded frame and its route rather than the request's arguments (every
    /// concurrent caller holds one; `examples/future_sizes.rs` prints their sizes). Called from
    /// inside the public calls' futures, so nothing happens before those are polled.
    pub(crate) fn exchange<'a, T: 'a>(
        &'a self,
        op: &'static str,
        key: &'a [u8],
        request: Result<Request<'_>, Error>,
        accept: impl FnOnce(Response) -> Result<T, Response> + 'a,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        // A write drops the key's near-cache entry before it is sent and again when it ends
        // (the guard lives in the future: answered, failed or cancelled).
        let writes = matches!(
            request.as_ref().map(Request::key_access),
            Ok(Some(
                KeyAccess::Overwrite | KeyAccess::Update | KeyAccess::Delete
            ))
        );
        let write = self.near().filter(|_| writes).map(|near| near.write(key));
        let mut sent = request.and_then(|request| self.route(key, request).map(|r| r.send(op)));
        // `sent` is used in place (through `&mut`), not moved into locals: the future holds the
        // request on its way once.
        async move {
            // Held to the end (answered, failed or cancelled), without a second copy.
            let _write = &write;
            match &mut sent {
                Err(error) => Err(std::mem::replace(error, Error::NoNodes)),
                Ok(Sent::Queued {
                    route,
                    expect,
                    queued,
                    span,
                }) => {
                    let conn = route.connection();
                    let queued = queued.take().expect("a call's future answers once");
                    let response = conn.answer(queued).instrument(span.clone()).await?;
                    accept_reply(conn.node(), *expect, response, accept)
                }
                // Inside a warm-handoff window only: on the heap, out of every call's future.
                Ok(Sent::Moved(routed)) => {
                    let routed = routed.take().expect("a call's future answers once");
                    Box::pin(routed.hand_off(op, key, accept)).await
                }
            }
        }
    }
}
