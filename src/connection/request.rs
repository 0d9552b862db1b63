//! The one request path of every call: encode, send on a connection, and turn the reply into
//! the call's result. A call lists only its success arms; a server's error answer becomes
//! [`Error::Server`], and any other reply [`Error::Protocol`] (a well-framed reply that does not
//! answer the request: the connection stays open). A meta read of an item is also checked
//! against the key asked for ([`Connection::read_item`]).

use tokio::time::Instant;

use crate::error::{excerpt, Error, ProtocolError};
use crate::pipeline::Frame;
use crate::protocol::meta::{MetaGet, MetaRequest};
use crate::protocol::{Encode, ErrorReply, Expect, Limits, Response};

use super::Connection;

impl Connection {
    /// Encodes `request` within `limits`, sends it, waits for its reply (at most the request
    /// timeout) and hands the reply to `accept`, which returns the call's result or gives the
    /// reply back as not an answer it takes (see [`accept_reply`]).
    pub(crate) async fn request<T>(
        &self,
        request: &impl Encode,
        limits: &Limits,
        accept: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, Error> {
        self.request_by(request, limits, self.deadline(), accept)
            .await
    }

    /// As [`Connection::request`], answered by `deadline` at the latest (no later than the
    /// request timeout from now).
    pub(crate) async fn request_by<T>(
        &self,
        request: &impl Encode,
        limits: &Limits,
        deadline: Instant,
        accept: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, Error> {
        let (frame, expect) = Frame::encode(|buf| request.encode(buf, limits))?;
        let sent = self.send(frame, expect, request.is_idempotent(), deadline);
        let response = self.reply(sent.await?).await?;
        accept_reply(self.node(), expect, response, accept)
    }

    /// Sends `get`, asking for the key back (`k`), and refuses a reply about another key as
    /// [`Error::Protocol`] ([`MetaGet::check_reply`]). Every meta read of an item goes through
    /// here (the lookup of a lease, the warm handoff's reads of a previous owner), so that no
    /// node can hand one key's item to another key's caller, nor have it copied elsewhere. The
    /// reply, once checked, goes to `accept` as on every request path.
    pub(crate) async fn read_item<T>(
        &self,
        limits: &Limits,
        get: MetaGet<'_>,
        accept: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, Error> {
        let get = get.return_key();
        let response = self.request(&MetaRequest::from(get), limits, Ok).await?;
        if let Response::Meta(reply) = &response {
            get.check_reply(reply).map_err(|source| Error::Protocol {
                node: self.node().to_string(),
                source,
            })?;
        }
        accept_reply(self.node(), Expect::Meta, response, accept)
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
