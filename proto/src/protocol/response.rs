//! Replies of the memcached text protocol: what a request expects ([`Expect`]) and what a
//! complete reply holds ([`Response`], [`Item`], [`ErrorReply`]).
//!
//! This module owns the reply types; the streaming decoder that builds them from a stream buffer,
//! [`decode`], is in `response/decoder.rs` and re-exported here. It does not own requests
//! ([`super::request`]) or the meta replies' own types ([`super::meta`]).

mod decoder;

pub use decoder::decode;
pub(crate) use decoder::{block_end, error_reply, line_at, parse_u32, parse_u64};

use bytes::Bytes;

use super::meta::MetaReply;
use crate::error::ServerErrorKind;

/// What kind of reply a request gets; the decoder needs it because the text protocol's replies
/// do not say which command they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// `VALUE` blocks then `END` (get, gets, gat, gats, the legacy config key); at most `max` values.
    Values {
        /// Number of keys requested: more values than this is a protocol error.
        max: usize,
    },
    /// `STORED`, `NOT_STORED`, `EXISTS` or `NOT_FOUND` (storage commands and cas).
    Store,
    /// `DELETED` or `NOT_FOUND`.
    Delete,
    /// A decimal number or `NOT_FOUND` (incr, decr).
    Arith,
    /// `TOUCHED` or `NOT_FOUND`.
    Touch,
    /// `OK` (flush_all).
    Ok,
    /// `VERSION <text>`.
    Version,
    /// `STAT <name> <value>` lines then `END`.
    Stats,
    /// `CONFIG cluster <flags> <bytes>` block then `END`, or `END` alone (no config stored).
    Config,
    /// One meta reply (`mg`, `ms`, `md`, `ma` sent on their own): `VA` and its data block, `HD`,
    /// `EN`, `NF`, `NS` or `EX`, with return flags. See [`crate::protocol::meta`].
    Meta,
    /// A batch of quiet meta requests closed by `mn`: zero or more replies, then `MN`.
    MetaBatch {
        /// Number of requests in the batch: more replies than this before `MN` is a protocol
        /// error.
        max: usize,
    },
}

impl Expect {
    /// What the expected reply answers, in words, for messages (`a retrieval`, `delete`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Expect::Values { .. } => "a retrieval",
            Expect::Store => "a storage command",
            Expect::Delete => "delete",
            Expect::Arith => "incr/decr",
            Expect::Touch => "touch",
            Expect::Ok => "flush_all",
            Expect::Version => "version",
            Expect::Stats => "stats",
            Expect::Config => "config get",
            Expect::Meta => "a meta command",
            Expect::MetaBatch { .. } => "a meta batch",
        }
    }
}

/// One item of a retrieval reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Item {
    /// The key, as the server spelled it.
    pub key: Bytes,
    /// The opaque flags stored with the value.
    pub flags: u32,
    /// The CAS token (`gets`/`gats` only).
    pub cas: Option<u64>,
    /// The value.
    pub value: Bytes,
}

impl Item {
    /// An item (as a server would send it).
    pub fn new(
        key: impl Into<Bytes>,
        flags: u32,
        cas: Option<u64>,
        value: impl Into<Bytes>,
    ) -> Item {
        Item {
            key: key.into(),
            flags,
            cas,
            value: value.into(),
        }
    }
}

/// A server's error reply. These are answers, not broken streams: the connection stays in sync.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorReply {
    /// `ERROR`: the server does not know the command.
    Error,
    /// `CLIENT_ERROR <message>`.
    Client(String),
    /// `SERVER_ERROR <message>`.
    Server(String),
}

impl ErrorReply {
    /// What the answer means, from its text.
    ///
    /// ```
    /// use memcached_autodiscovery_proto::error::ServerErrorKind;
    /// use memcached_autodiscovery_proto::protocol::ErrorReply;
    /// let reply = ErrorReply::Server("object too large for cache".into());
    /// assert_eq!(reply.kind(), ServerErrorKind::TooLarge);
    /// ```
    pub fn kind(&self) -> ServerErrorKind {
        match self {
            ErrorReply::Error => ServerErrorKind::UnknownCommand,
            ErrorReply::Client(_) => ServerErrorKind::ClientError,
            ErrorReply::Server(message) => {
                let message = message.to_ascii_lowercase();
                if message.contains("too large") {
                    ServerErrorKind::TooLarge
                } else if message.contains("out of memory") {
                    ServerErrorKind::OutOfMemory
                } else if message.contains("busy")
                    || message.contains("temporar")
                    || message.contains("try again")
                {
                    ServerErrorKind::Busy
                } else {
                    ServerErrorKind::Other
                }
            }
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorReply::Error => f.write_str("ERROR"),
            ErrorReply::Client(m) => write!(f, "CLIENT_ERROR {m}"),
            ErrorReply::Server(m) => write!(f, "SERVER_ERROR {m}"),
        }
    }
}

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The items found, in the server's order (absent keys are simply missing).
    Values(Vec<Item>),
    /// `STORED`.
    Stored,
    /// `NOT_STORED` (add of a present key, replace/append/prepend of an absent one).
    NotStored,
    /// `EXISTS` (cas token out of date).
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// The new value after incr/decr.
    Number(u64),
    /// `OK`.
    Ok,
    /// The server version text.
    Version(String),
    /// `stats` pairs, in order.
    Stats(Vec<(String, String)>),
    /// The cluster configuration data block, or `None` when the server has none stored.
    Config(Option<Bytes>),
    /// `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR`. To a meta batch: `ERROR` in place of its
    /// `MN`, from a server that does not know meta commands.
    Error(ErrorReply),
    /// The reply to a meta command ([`Expect::Meta`]). Boxed: a meta reply with its return flags
    /// is some 170 bytes, and inline it would make every `Response` that large (the text
    /// decoder's replies measured 4 to 10% slower that way).
    Meta(Box<MetaReply>),
    /// The replies of a meta batch ([`Expect::MetaBatch`]) in the server's order, `MN` excluded:
    /// one per request that quiet mode did not silence, an error line as an `Err`.
    MetaBatch(Vec<Result<MetaReply, ErrorReply>>),
}
