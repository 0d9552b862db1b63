//! The one request path of every call: encode, send on a connection, and turn the reply into
//! the call's result. A call lists only its success arms; a server's error answer becomes
//! [`Error::Server`], and any other reply [`Error::Protocol`] (a well-framed reply that does not
//! answer the request: the connection stays open). A `NOT_STORED` a call does not take (a `set`) is
//! [`Error::Server`] of kind [`ServerErrorKind::NotStored`]. A meta read of an item is also checked
//! against the key asked for ([`Connection::read_item`]).

use std::future::Future;

use tokio::time::Instant;

use crate::error::{excerpt, Error, ProtocolError, ServerErrorKind};
use crate::pipeline::Frame;
use crate::protocol::meta::{MetaGet, MetaRequest};
use crate::protocol::{Encode, ErrorReply, Expect, Limits, Response};

use super::Connection;

impl Connection {
    /// Encodes `request` within `limits`, sends it, waits for its reply (at most the request
    /// timeout) and hands the reply to `accept`, which returns the call's result or gives the
    /// reply back as not an answer it takes (see [`accept_reply`]).
    pub(crate) fn request<'a, T: 'a>(
        &'a self,
        request: &impl Encode,
        limits: &Limits,
        accept: impl FnOnce(Response) -> Result<T, Response> + 'a,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        self.request_by(request, limits, self.deadline(), accept)
    }

    /// As [`Connection::request`], answered by `deadline` at the latest (no later than the
    /// request timeout from now).
    ///
    /// Not an `async fn`, as [`Connection::call`]: the request is encoded and queued when this
    /// is called, so the future holds where its reply will arrive and not the request.
    pub(crate) fn request_by<'a, T: 'a>(
        &'a self,
        request: &impl Encode,
        limits: &Limits,
        deadline: Instant,
        accept: impl FnOnce(Response) -> Result<T, Response> + 'a,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        let queued = Frame::encode(|buf| request.encode(buf, limits)).map(|(frame, expect)| {
            let queued = self.queue(frame, expect, request.is_idempotent(), deadline);
            (queued, expect)
        });
        async move {
            let (queued, expect) = queued?;
            let response = self.answer(queued).await?;
            accept_reply(self.node(), expect, response, accept)
        }
    }

    /// Sends `get`, asking for the key back (`k`), and refuses a reply about another key as
    /// [`Error::Protocol`] ([`MetaGet::check_reply`]). Every meta read of an item goes through
    /// here (the lookup of a lease, the warm handoff's reads of a previous owner), so that no
    /// node can hand one key's item to another key's caller, nor have it copied elsewhere. The
    /// reply, once checked, goes to `accept` as on every request path.
    pub(crate) fn read_item<'a, T: 'a>(
        &'a self,
        limits: &Limits,
        get: MetaGet<'a>,
        accept: impl FnOnce(Response) -> Result<T, Response> + 'a,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        let get = get.return_key();
        let response = self.request(&MetaRequest::from(get), limits, Ok);
        async move {
            let response = response.await?;
            if let Response::Meta(reply) = &response {
                get.check_reply(reply).map_err(|source| Error::Protocol {
                    node: self.node().to_string(),
                    source,
                })?;
            }
            accept_reply(self.node(), Expect::Meta, response, accept)
        }
    }
}

/// The result `accept` makes of `response` (from `node`, to a request that expected `expect`),
/// or the error for a reply it gives back: a server's error answer, or a reply that does not
/// answer the request.
pub(crate) fn accept_reply<T>(
    node: &str,
    expect: Expect,
    response: Response,
    accept: impl FnOnce(Response) -> Result<T, Response>,
) -> Result<T, Error> {
    accept(response).map_err(|refused| match refused {
        Response::Error(reply) => server_error(node, &reply),
        Response::NotStored => Error::Server {
            node: node.to_string(),
            kind: ServerErrorKind::NotStored,
            message: "NOT_STORED: the server did not store the value".into(),
        },
        other => unexpected(node, expect.name(), &other),
    })
}

/// The error for a server's error answer from `node`.
fn server_error(node: &str, reply: &ErrorReply) -> Error {
    Error::Server {
        node: node.to_string(),
        kind: reply.kind(),
        message: reply.to_string(),
    }
}

/// The error for a well-framed reply from `node` that does not answer a request expecting
/// `expected`.
fn unexpected(node: &str, expected: &'static str, reply: &Response) -> Error {
    Error::Protocol {
        node: node.to_string(),
        source: ProtocolError::UnexpectedReply {
            expected,
            line: excerpt(format!("{reply:?}").as_bytes()),
        },
    }
}
