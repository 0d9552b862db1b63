//! Every error type of the crate.
//!
//! [`ProtocolError`] is what the pure core (`protocol`, `config`) returns: it is `Clone + PartialEq`,
//! holds no I/O error and no parser-library type, and says what was wrong and where.
//! [`Error`] is what the client returns: it wraps a `ProtocolError` or an I/O failure, names the node
//! involved, and answers [`Error::is_timeout`] and [`Error::is_retryable`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use memcached_autodiscovery_proto::error::excerpt;
pub use memcached_autodiscovery_proto::error::{
    ClusterConfigErrorKind, KeyError, ProtocolError, ServerErrorKind,
};

/// What went wrong in a TLS failure ([`Error::Tls`]). Each kind's message says what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate does not chain to a trusted CA: trust its CA with
    /// `TlsConfig::with_ca_pem`.
    UntrustedCertificate,
    /// The server's certificate is not valid for the name checked: set
    /// `TlsConfig::server_name`.
    NameMismatch,
    /// The server's certificate is trusted and names the server, but is unusable (expired, not
    /// yet valid, wrong purpose, ...).
    InvalidCertificate,
    /// The server refused the handshake or ended the session with an alert (a client
    /// certificate required or refused, no common TLS version).
    RejectedByServer,
    /// A plaintext client met a server that speaks TLS: enable `ClientBuilder::tls`.
    ServerRequiresTls,
    /// A TLS client met a server that answered with something else than TLS: the server does not
    /// use TLS.
    ServerNotTls,
    /// The server did not complete the handshake within the connect (or discovery) timeout.
    HandshakeTimeout,
    /// Any other TLS failure.
    Other,
}

/// Why a value could not be encoded or decoded. Nothing is guessed: a value is decoded only
/// when its `flags` say exactly how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The `flags` hold bits this crate does not read (another client's type, say); the value
    /// was left alone.
    #[error("the value's flags 0x{flags:08x} are not ones this client reads{}", describe(*flags))]
    UnknownFlags {
        /// The value's flags.
        flags: u32,
    },
    /// The value is compressed with a codec this build does not include.
    #[error("the value's flags 0x{flags:08x} say it is {codec}-compressed; enable the `{codec}` feature to read it")]
    FeatureDisabled {
        /// The value's flags.
        flags: u32,
        /// The cargo feature that reads it (`zstd` or `gzip`).
        codec: &'static str,
    },
    /// The value (to store, or decompressed) is longer than the codec's `max_size`.
    #[error("the value is longer than the codec's limit of {limit} bytes")]
    TooLarge {
        /// The limit (`Codec::max_size`).
        limit: usize,
    },
    /// The flags say compressed, but the bytes are not a valid stream of that codec.
    #[error("the {codec}-compressed value is corrupt: {message}")]
    Corrupt {
        /// `zstd` or `gzip`.
        codec: &'static str,
        /// What the decompressor said.
        message: String,
    },
    /// The value could not be turned into JSON, or the stored bytes are not JSON of the
    /// requested type.
    #[error("JSON: {message}")]
    Json {
        /// What serde_json said (the position, not the value's bytes).
        message: String,
    },
}

/// What a `flags` value means in another client, for the message.
fn describe(flags: u32) -> &'static str {
    if flags & 0x1 != 0 && flags & !0x3 == 0 {
        " (a Java-serialized object of the Java client)"
    } else if flags & 0xff00 != 0 && flags & !0xff02 == 0 {
        " (a typed value of the Java client: boolean, number or date)"
    } else {
        ""
    }
}

/// Why a discovery failed ([`Error::Discovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryErrorKind {
    /// The endpoint could not be reached or the connection broke: name resolution, connect,
    /// TLS or I/O failure (the [`source`](std::error::Error::source)). Retryable.
    Unreachable,
    /// No complete answer within the discovery timeout. Retryable.
    Timeout,
    /// The endpoint answered but holds no cluster configuration (an empty `config get cluster`
    /// and no legacy key). Retryable: a configuration may be stored later.
    NoConfiguration,
    /// The answer is not a valid configuration reply (the parse error is the source).
    /// Retryable: a truncated or garbled reply may come out right next time.
    Malformed,
    /// The endpoint answered `CLIENT_ERROR` or `SERVER_ERROR`. Retryable.
    ServerError,
    /// The work was interrupted before it completed (the runtime is shutting down). Retryable.
    Interrupted,
    /// The configuration lists more distinct nodes than `ClientBuilder::max_nodes` allows, and
    /// was refused. Not retryable: the same configuration will be refused again until the
    /// setting (or the cluster) changes.
    TooManyNodes {
        /// Distinct nodes listed.
        nodes: usize,
        /// The `max_nodes` setting.
        max: usize,
    },
}

impl DiscoveryErrorKind {
    /// Whether asking again later may succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(self, DiscoveryErrorKind::TooManyNodes { .. })
    }
}

impl fmt::Display for DiscoveryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryErrorKind::Unreachable => f.write_str("the endpoint could not be reached"),
            DiscoveryErrorKind::Timeout => f.write_str("no complete answer in time"),
            DiscoveryErrorKind::NoConfiguration => f.write_str(
                "the endpoint has no cluster configuration stored (empty `config get cluster` \
                 and no legacy key)",
            ),
            DiscoveryErrorKind::Malformed => f.write_str("the answer is not a valid configuration"),
            DiscoveryErrorKind::ServerError => f.write_str("the endpoint answered an error"),
            DiscoveryErrorKind::Interrupted => f.write_str("interrupted before it completed"),
            DiscoveryErrorKind::TooManyNodes { nodes, max } => write!(
                f,
                "the configuration lists {nodes} nodes, more than max_nodes ({max}); raise \
                 ClientBuilder::max_nodes if the cluster really is that large"
            ),
        }
    }
}

/// An error returned by the client. Normal outcomes (a miss; `NOT_STORED` except for `set`;
/// `EXISTS`, `NOT_FOUND`) are values, never errors. Every variant that concerns a node names it,
/// and says in what state the node's connection is left.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request could not be encoded (invalid key, value too large, a TTL past 2038); nothing
    /// was sent and no connection was touched.
    #[error(transparent)]
    Invalid(ProtocolError),
    /// A node's reply is not a valid answer to the request. When the bytes could not be read as
    /// a reply at all (garbage, an unsolicited reply, a size over the limits), the connection
    /// was closed and every request in flight on it failed; the node is left alone for a backoff
    /// if the connection never gave a good reply. When a complete, well-framed reply did not fit
    /// the request (a value for another key, keys out of order), the connection stays open.
    #[error("node {node}: {source}")]
    Protocol {
        /// The node, as `host:port`.
        node: String,
        /// What was wrong.
        source: ProtocolError,
    },
    /// A socket operation failed (connect refused, reset, closed). The connection it happened
    /// on is closed; requests in flight on it failed with this error, except those sent again
    /// on a fresh connection (see the crate docs on replays). [`source`](std::error::Error::source)
    /// is the [`std::io::Error`].
    #[error("node {node}: {source}{}", hint.map(|h| format!("; {h}")).unwrap_or_default())]
    Io {
        /// The node (or configuration endpoint), as `host:port`.
        node: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
        /// What the failure may mean, when the client can tell (e.g. that the server may
        /// require TLS).
        hint: Option<&'static str>,
    },
    /// The request did not complete within its timeout (or a connect within the connect
    /// timeout). When the oldest request of a connection times out, the connection is closed
    /// (the node stopped answering), its other requests fail, and the node is left alone for a
    /// backoff; a caller that times out while queued behind others leaves the connection as it is.
    #[error("node {node}: no reply within {timeout:?}")]
    Timeout {
        /// The node, as `host:port`.
        node: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The node is in its backoff after failures; the request was not sent and no connection was
    /// opened. Calls succeed again once the backoff ends and a connect works.
    #[error("node {node} is unavailable (reconnecting after: {reason}); retry later")]
    NodeDown {
        /// The node, as `host:port`.
        node: String,
        /// The last failure seen on the node.
        reason: Arc<str>,
    },
    /// A TLS connection to a node or to the configuration endpoint could not be set up, or the
    /// client and the server disagree on whether to use TLS. The message says what to change.
    /// The connection concerned is closed (requests in flight on it fail); a node is then left
    /// alone for a backoff.
    #[error("TLS with {node}: {message}")]
    Tls {
        /// The node or the configuration endpoint, as `host:port`.
        node: String,
        /// What went wrong.
        kind: TlsErrorKind,
        /// What went wrong and what to change.
        message: Arc<str>,
    },
    /// The server answered `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR` (or, to a `set`,
    /// `NOT_STORED`). The connection stays open and in step: the server answered this request
    /// and nothing else.
    #[error("node {node}: server error: {message}")]
    Server {
        /// The node, as `host:port`.
        node: String,
        /// What the answer means, for retry decisions.
        kind: ServerErrorKind,
        /// The server's answer (e.g. `SERVER_ERROR object too large for cache`).
        message: String,
    },
    /// The configuration endpoint answered `ERROR` to both discovery commands. Discovery
    /// connections are closed after each poll; the last good topology is kept.
    #[error("{endpoint} does not support auto-discovery (it answered ERROR to `config get cluster` and to the legacy key); for plain memcached use ClientBuilder::nodes([...])")]
    DiscoveryUnsupported {
        /// The endpoint, as given.
        endpoint: String,
    },
    /// Discovery failed for another reason: [`DiscoveryErrorKind`] says which, and
    /// [`source`](std::error::Error::source) is the underlying error when there is one (the
    /// I/O or TLS error, the parse error, the server's answer). The discovery connection is
    /// closed; the last good topology is kept.
    #[error("discovery from {endpoint} failed: {kind}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Discovery {
        /// The configuration endpoint (or the node asked), as `host:port`.
        endpoint: String,
        /// What went wrong.
        kind: DiscoveryErrorKind,
        /// What was seen, in words (never the reply's bytes beyond an excerpt).
        detail: Option<String>,
        /// The underlying error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The loader given to `Client::get_or_load` failed; its error is the
    /// [`source`](std::error::Error::source) (and `source` here). The key's load lease was given
    /// back, so another caller may load at once. No connection is affected.
    ///
    /// The loader's error is kept as the boxed error it converts into: a type of your own
    /// comes back with `source.downcast_ref::<YourError>()`; a `Box<dyn Error + Send + Sync>`
    /// (`lambda_runtime::Error`) is kept as it is; an `anyhow::Error` arrives as the boxed error
    /// anyhow converts it into, with its message and its chain of sources.
    #[error("loading the value failed: {source}")]
    Load {
        /// The loader's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A value could not be encoded or decoded by a [`Codec`](crate::Codec): flags it
    /// does not read, a corrupt or oversized compressed value, JSON of another shape. Nothing
    /// was sent (encoding), or the reply was complete and the connection is unaffected
    /// (decoding).
    #[error("value codec: {0}")]
    Codec(#[from] CodecError),
    /// A setting is unusable (no endpoint or nodes, a malformed address, an unusable TLS
    /// setting, a Serverless endpoint given as a configuration endpoint); returned by `build()`
    /// (or by the [`TlsConfig`](crate::ClientBuilder) method given it) before any connection is
    /// made. Retrying cannot help: the setting must change.
    #[error("invalid setting `{setting}`: {reason}")]
    Settings {
        /// The setting at fault: the `ClientBuilder` or `TlsConfig` method that sets it
        /// (`config_endpoint`, `nodes`, `tls`, `dialer`, ...).
        setting: &'static str,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// The topology holds no node to route to; nothing was sent.
    #[error("the cluster has no nodes")]
    NoNodes,
    /// The client was closed with [`Client::close`](crate::Client::close) (by this clone or
    /// another); nothing was sent. A closed client stays closed: build a new one.
    #[error("the client was closed (Client::close); build a new client to send requests")]
    Closed,
}

impl Error {
    /// Whether the error is a timeout (of a request, a connect or a discovery).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::TimedOut,
            Error::Tls { kind, .. } => *kind == TlsErrorKind::HandshakeTimeout,
            _ => false,
        }
    }

    /// Whether the same call may succeed if retried later (the failure was in the network or a
    /// node, not in the request itself).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. }
            | Error::Io { .. }
            | Error::NodeDown { .. }
            | Error::Protocol { .. }
            | Error::NoNodes => true,
            Error::Discovery { kind, .. } => kind.is_retryable(),
            Error::Server { kind, .. } => kind.is_retryable(),
            Error::Tls { kind, .. } => {
                matches!(kind, TlsErrorKind::HandshakeTimeout | TlsErrorKind::Other)
            }
            Error::Invalid(_)
            | Error::DiscoveryUnsupported { .. }
            | Error::Settings { .. }
            | Error::Closed
            | Error::Load { .. }
            | Error::Codec(_) => false,
        }
    }

    /// The node the error concerns, as `host:port`, when it concerns one (for a TLS failure
    /// during discovery: the configuration endpoint).
    pub fn node(&self) -> Option<&str> {
        match self {
            Error::Protocol { node, .. }
            | Error::Io { node, .. }
            | Error::Timeout { node, .. }
            | Error::NodeDown { node, .. }
            | Error::Server { node, .. }
            | Error::Tls { node, .. } => Some(node),
            _ => None,
        }
    }
}

/// An [`Error`]'s message without any bytes a server sent (see [`Error::without_data`]).
pub(crate) struct WithoutData<'a>(&'a Error);

impl fmt::Display for WithoutData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::Protocol { node, source } => {
                write!(f, "node {node}: {}", source.without_data())
            }
            other => fmt::Display::fmt(other, f),
        }
    }
}

impl Error {
    /// The message for logs: as `Display`, but a protocol error does not quote the reply
    /// (which may hold keys and values).
    pub(crate) fn without_data(&self) -> WithoutData<'_> {
        WithoutData(self)
    }
}

impl Error {
    /// A discovery error of `kind` from `endpoint`, with what was seen and the underlying error.
    pub(crate) fn discovery(
        endpoint: &str,
        kind: DiscoveryErrorKind,
        detail: Option<String>,
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Discovery {
            endpoint: endpoint.to_string(),
            kind,
            detail,
            source,
        }
    }

    /// An unusable `setting`, with what is wrong and what to do.
    pub(crate) fn settings(setting: &'static str, reason: impl Into<String>) -> Error {
        Error::Settings {
            setting,
            reason: reason.into(),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Invalid(e)
    }
}

/// Who a connection failure concerns, for messages: `node host:port` or `configuration endpoint
/// host:port`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer<'a> {
    Node(&'a str),
    Endpoint(&'a str),
}

impl Peer<'_> {
    /// `host:port`.
    pub(crate) fn id(self) -> String {
        match self {
            Peer::Node(id) | Peer::Endpoint(id) => id.to_string(),
        }
    }

    /// What the peer is, in words.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Peer::Node(_) => "node",
            Peer::Endpoint(_) => "configuration endpoint",
        }
    }
}
