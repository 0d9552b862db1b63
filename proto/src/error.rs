//! The errors of the pure core: a request that cannot be encoded ([`ProtocolError`], with
//! [`KeyError`] for a refused key), bytes that are not a valid reply or configuration
//! ([`ClusterConfigErrorKind`]), and what a server's error answer means ([`ServerErrorKind`]).
//! Every type here is `Clone + PartialEq`, holds no I/O error and no parser-library type.

use std::fmt;

/// Why a key was refused. Keys are checked before anything is encoded, so a refused key never
/// reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    Empty,
    /// The key is longer than memcached's 250-byte limit.
    TooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The key holds a byte memcached's text protocol cannot carry (a space, a control byte or DEL).
    ForbiddenByte {
        /// Position of the byte in the key.
        index: usize,
        /// The byte itself.
        byte: u8,
    },
    /// A binary meta key (sent in base64) is longer than 186 bytes, whose base64 form is the
    /// longest that fits memcached's 250-byte key limit.
    BinaryTooLong {
        /// The key's length in bytes.
        len: usize,
    },
}

impl std::error::Error for KeyError {}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty; keys are 1 to 250 bytes"),
            KeyError::TooLong { len } => write!(
                f,
                "the key is {len} bytes; memcached keys are at most 250 bytes (hash long keys first)"
            ),
            KeyError::ForbiddenByte { index, byte } => write!(
                f,
                "the key has byte 0x{byte:02x} at index {index}; keys may not contain spaces, control \
                 bytes or 0x7f (encode such keys, e.g. as hex or base64)"
            ),
            KeyError::BinaryTooLong { len } => write!(
                f,
                "the binary key is {len} bytes; binary keys are at most 186 bytes (their base64 \
                 form must fit memcached's 250-byte limit)"
            ),
        }
    }
}

/// What was wrong in a cluster configuration data block (`config get cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterConfigErrorKind {
    /// The version line is missing, empty or not a decimal number that fits in a u64.
    BadVersion,
    /// The version is not followed by a line ending (LF or CRLF).
    MissingVersionEnd,
    /// The node list holds no node.
    NoNodes,
    /// A node entry does not have exactly three `|`-separated fields (`host|ip|port`).
    FieldCount {
        /// How many fields the entry had.
        fields: usize,
    },
    /// A node's hostname is empty or holds bytes a hostname cannot have.
    BadHostname,
    /// A node's IP field is neither empty, nor an IP address, nor a hostname.
    BadIp,
    /// A node's port is not a decimal number from 1 to 65535.
    BadPort,
    /// The block is not valid UTF-8 text.
    NotText,
}

impl std::error::Error for ClusterConfigErrorKind {}

impl fmt::Display for ClusterConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterConfigErrorKind::BadVersion => f.write_str("the version is not a decimal u64"),
            ClusterConfigErrorKind::MissingVersionEnd => {
                f.write_str("the version is not followed by a line end")
            }
            ClusterConfigErrorKind::NoNodes => f.write_str("the node list is empty"),
            ClusterConfigErrorKind::FieldCount { fields } => write!(
                f,
                "a node has {fields} `|`-separated fields instead of 3 (host|ip|port)"
            ),
            ClusterConfigErrorKind::BadHostname => {
                f.write_str("a node's hostname is empty or invalid")
            }
            ClusterConfigErrorKind::BadIp => f.write_str("a node's IP field is not an IP address"),
            ClusterConfigErrorKind::BadPort => {
                f.write_str("a node's port is not a number from 1 to 65535")
            }
            ClusterConfigErrorKind::NotText => f.write_str("the block is not UTF-8 text"),
        }
    }
}

/// An error of the pure protocol core: a request that cannot be encoded, or bytes from a server
/// that are not a valid reply. After a decoding error the connection's byte stream can no longer be
/// trusted, and the client resets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A key was refused before encoding.
    #[error("invalid key: {0}")]
    InvalidKey(KeyError),
    /// A value to store is larger than the configured maximum.
    #[error("value of {len} bytes exceeds the maximum of {max} bytes (raise it with max_value_size, and memcached's -I)")]
    ValueTooLarge {
        /// Length of the value.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A time to live ends after the latest expiry memcached can hold (2038-01-19 03:14:07 UTC;
    /// it reads exptime as a signed 32-bit Unix time). Nothing was sent.
    #[error("a time to live of {secs} s ends after 2038-01-19 03:14:07 UTC, the latest expiry memcached can hold (a signed 32-bit Unix time); the longest time to live now is {max} s, and Duration::ZERO means no expiry")]
    TtlTooLong {
        /// The time to live asked for, in seconds.
        secs: u64,
        /// The longest time to live that can be represented now, in seconds.
        max: u64,
    },
    /// A meta request's opaque token (`O`) is empty, longer than 31 bytes, or holds a byte that is
    /// not printable ASCII or is a space.
    #[error("opaque token of {len} bytes refused: it must be 1 to 31 printable ASCII bytes without spaces")]
    InvalidOpaque {
        /// The token's length in bytes.
        len: usize,
    },
    /// A `stats` argument holds a space or a control byte.
    #[error("invalid stats argument: it must be one word of printable bytes")]
    InvalidArgument,
    /// A reply line was longer than the configured maximum without a line end.
    #[error("reply line longer than {max} bytes")]
    LineTooLong {
        /// The configured maximum.
        max: usize,
    },
    /// A reply announced a data block larger than the configured maximum value size.
    #[error("reply announces a {len}-byte block, over the maximum of {max} bytes")]
    ReplyTooLarge {
        /// The announced length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A reply line does not fit the request it answers (or any reply at all).
    #[error("unexpected reply to {expected}: {line:?}")]
    UnexpectedReply {
        /// What kind of reply the request expects.
        expected: &'static str,
        /// The offending line, escaped and cut to 64 bytes.
        line: String,
    },
    /// A reply header (`VALUE`, `CONFIG`, `STAT`, a number) is malformed.
    #[error("malformed {what} line: {line:?}")]
    MalformedLine {
        /// Which kind of line.
        what: &'static str,
        /// The offending line, escaped and cut to 64 bytes.
        line: String,
    },
    /// A data block is not followed by CRLF where its announced length ends.
    #[error("data block of {len} bytes is not followed by CRLF: the announced length is wrong")]
    BadBlockEnd {
        /// The announced length.
        len: usize,
    },
    /// More `VALUE` blocks arrived than keys were requested.
    #[error("server sent more than the {max} values requested")]
    TooManyValues {
        /// Number of keys requested.
        max: usize,
    },
    /// A meta batch got more replies before its `MN` than it holds requests.
    #[error("server sent more than the {max} replies of a meta batch before MN")]
    TooManyReplies {
        /// Number of requests in the batch.
        max: usize,
    },
    /// A cluster configuration block is malformed.
    #[error("invalid cluster config at byte {offset}{}: {kind}", node_label(*.node))]
    ClusterConfig {
        /// Byte offset in the data block where the problem starts.
        offset: usize,
        /// Index of the node entry at fault, if one is.
        node: Option<usize>,
        /// What was wrong.
        kind: ClusterConfigErrorKind,
    },
}

fn node_label(node: Option<usize>) -> String {
    match node {
        Some(i) => format!(" (node {i})"),
        None => String::new(),
    }
}

/// What a server's error answer means (the client's `Error::Server`), read from the answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// `SERVER_ERROR out of memory ...`: the server could not make room for the item. Retrying
    /// later may succeed once memory is freed.
    OutOfMemory,
    /// `SERVER_ERROR object too large for cache`: the value is over the server's item size
    /// (memcached's `-I`). Retrying cannot help.
    TooLarge,
    /// A temporary condition (`SERVER_ERROR busy`, `temporary failure`, ...). Retrying later may
    /// succeed.
    Busy,
    /// `CLIENT_ERROR ...`: the server refused the request as malformed. Retrying cannot help.
    ClientError,
    /// `ERROR`: the server does not know the command.
    UnknownCommand,
    /// `NOT_STORED` in answer to a `set`, which is expected to always store.
    NotStored,
    /// Any other `SERVER_ERROR`. Retrying later may succeed.
    Other,
}

impl ServerErrorKind {
    /// Whether the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ServerErrorKind::OutOfMemory | ServerErrorKind::Busy | ServerErrorKind::Other
        )
    }
}

impl ProtocolError {
    /// What went wrong, without quoting any reply bytes.
    pub fn without_data(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ProtocolError::UnexpectedReply { expected, .. } => {
                format!("unexpected reply to {expected}").into()
            }
            ProtocolError::MalformedLine { what, .. } => format!("malformed {what} line").into(),
            ProtocolError::InvalidKey(_) => "invalid key".into(),
            other => other.to_string().into(),
        }
    }
}

/// Escapes a reply line for an error message and cuts it to 64 bytes.
pub fn excerpt(line: &[u8]) -> String {
    let cut = &line[..line.len().min(64)];
    let mut s = cut.escape_ascii().to_string();
    if line.len() > cut.len() {
        s.push('…');
    }
    s
}
