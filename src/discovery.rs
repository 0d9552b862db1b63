//! I/O. One discovery: fetching the cluster configuration from a configuration endpoint, or
//! asking a node of the cluster for it.
//!
//! [`ask_node`] sends `config get cluster` on a node's existing connection (every ElastiCache
//! node answers it as the endpoint does; plain memcached answers `ERROR`). [`fetch`] resolves
//! the endpoint anew, connects through the client's [`Transport`] (so TLS,
//! timeouts and "this server wants TLS" hints are the same as for node connections), asks
//! `config get cluster`, falls back to the legacy key `AmazonElastiCache:cluster` on engines that
//! do not know the command, and parses the block. It does not decide whether a configuration is
//! applied, nor when to poll: that is [`crate::topology`].

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::ClusterConfig;
use crate::connection::Connection;
use crate::error::{DiscoveryErrorKind, Error, Peer};
use crate::protocol::request::LEGACY_CONFIG_KEY;
use crate::protocol::{decode, ErrorReply, Limits, Request, Response};
use crate::transport::{explain, hint_tls, split_host_port, Stream, Target, Transport};

/// The discovery commands, as messages name them.
const CONFIG_GET: &str = "`config get cluster`";
const LEGACY_GET: &str = "the legacy `get AmazonElastiCache:cluster`";

/// One discovery from `endpoint` (`host:port`), bounded by `timeout` as a whole (DNS, connect,
/// TLS handshake, both commands). The reply is read within the default [`Limits`] (a 1 MiB
/// block, some 15,000 nodes), whatever the client's own value size.
pub(crate) async fn fetch(
    endpoint: &str,
    transport: &Transport,
    timeout: Duration,
) -> Result<ClusterConfig, Error> {
    let deadline = Instant::now() + timeout;
    let limits = Limits::default();
    match tokio::time::timeout_at(
        deadline,
        fetch_until(endpoint, transport, &limits, deadline),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Error::discovery(
            endpoint,
            DiscoveryErrorKind::Timeout,
            Some(format!("no complete answer within {timeout:?}")),
            None,
        )),
    }
}

async fn fetch_until(
    endpoint: &str,
    transport: &Transport,
    limits: &Limits,
    deadline: Instant,
) -> Result<ClusterConfig, Error> {
    let (host, port) = split_host_port(endpoint, "config_endpoint")?;
    let peer = Peer::Endpoint(endpoint);
    let target = Target::new(host, port, None);
    let mut stream = match transport.connect(&target, peer, Some(deadline)).await {
        Ok(stream) => stream,
        Err(error @ Error::Tls { .. }) => return Err(error),
        Err(error) => return Err(unreachable(endpoint, "connect", error)),
    };
    let mut query = Query {
        stream: &mut stream,
        rbuf: BytesMut::with_capacity(4096),
        endpoint,
        limits,
        plaintext: transport.plaintext(),
    };
    query.run().await
}

/// A discovery error of `kind` from `endpoint`, with what was seen.
fn failed(endpoint: &str, kind: DiscoveryErrorKind, detail: String) -> Error {
    Error::discovery(endpoint, kind, Some(detail), None)
}

/// The endpoint could not be reached: `what` ("connect", "send", "read") failed with `error`,
/// the source.
fn unreachable(endpoint: &str, what: &str, error: impl Into<Error>) -> Error {
    let error = error.into();
    Error::discovery(
        endpoint,
        DiscoveryErrorKind::Unreachable,
        Some(format!("{what}: {error}")),
        Some(std::sync::Arc::new(error)),
    )
}

/// A server's error answer to `command`.
fn server_answer(endpoint: &str, command: &str, answer: &ErrorReply) -> Error {
    failed(
        endpoint,
        DiscoveryErrorKind::ServerError,
        format!("{command} answered {answer}"),
    )
}

/// A reply that is not an answer to `command`.
fn not_an_answer(endpoint: &str, command: &str, reply: &Response) -> Error {
    failed(
        endpoint,
        DiscoveryErrorKind::Malformed,
        format!(
            "unexpected answer to {command}: {}",
            crate::error::excerpt(format!("{reply:?}").as_bytes())
        ),
    )
}

/// The discovery commands over one open connection.
struct Query<'a> {
    stream: &'a mut Stream,
    rbuf: BytesMut,
    endpoint: &'a str,
    limits: &'a Limits,
    plaintext: bool,
}

impl Query<'_> {
    async fn run(&mut self) -> Result<ClusterConfig, Error> {
        let endpoint = self.endpoint;
        let unknown_command = match self.exchange(Request::ConfigGetCluster).await? {
            Response::Config(Some(block)) => return parse_block(&block, endpoint),
            Response::Config(None) => false,
            Response::Error(ErrorReply::Error) => true,
            Response::Error(e) => return Err(server_answer(endpoint, CONFIG_GET, &e)),
            other => return Err(not_an_answer(endpoint, CONFIG_GET, &other)),
        };
        match self.exchange(Request::LegacyConfigGet).await? {
            Response::Values(items) => match items.first() {
                Some(item) if item.key == LEGACY_CONFIG_KEY => parse_block(&item.value, endpoint),
                Some(item) => Err(failed(
                    endpoint,
                    DiscoveryErrorKind::Malformed,
                    format!(
                        "{LEGACY_GET} answered a value for another key ({})",
                        crate::error::excerpt(&item.key)
                    ),
                )),
                None if unknown_command => Err(Error::DiscoveryUnsupported {
                    endpoint: endpoint.to_string(),
                }),
                None => Err(Error::discovery(
                    endpoint,
                    DiscoveryErrorKind::NoConfiguration,
                    None,
                    None,
                )),
            },
            Response::Error(ErrorReply::Error) if unknown_command => {
                Err(Error::DiscoveryUnsupported {
                    endpoint: endpoint.to_string(),
                })
            }
            Response::Error(e) => Err(server_answer(endpoint, LEGACY_GET, &e)),
            other => Err(not_an_answer(endpoint, LEGACY_GET, &other)),
        }
    }

    /// Sends one request and reads its reply. A failure is explained: on a plaintext
    /// connection, a TLS record means the endpoint requires TLS, and a connection dropped before
    /// any byte of the first answer may mean it does.
    async fn exchange(&mut self, request: Request<'_>) -> Result<Response, Error> {
        let first = matches!(request, Request::ConfigGetCluster);
        let peer = Peer::Endpoint(self.endpoint);
        let result = self.exchange_once(request, peer).await;
        result.map_err(|error| {
            let error = match error {
                error @ Error::Tls { .. } => error,
                error @ Error::Discovery { .. } => error,
                other => unreachable(self.endpoint, "request", other),
            };
            let error = explain(error, self.plaintext, &self.rbuf, peer);
            if self.plaintext && first && self.rbuf.is_empty() {
                hint_tls(error)
            } else {
                error
            }
        })
    }

    async fn exchange_once(
        &mut self,
        request: Request<'_>,
        peer: Peer<'_>,
    ) -> Result<Response, Error> {
        let mut out = BytesMut::new();
        let expect = request.encode(&mut out, self.limits)?;
        let sent = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        if let Err(e) = sent.await {
            return Err(self.io_failure("send", e, peer));
        }
        loop {
            match decode(&mut self.rbuf, expect, self.limits) {
                Ok(Some((response, _))) => return Ok(response),
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::discovery(
                        self.endpoint,
                        DiscoveryErrorKind::Malformed,
                        Some(e.without_data().into_owned()),
                        Some(std::sync::Arc::new(e)),
                    ))
                }
            }
            let n = match self.stream.read_buf(&mut self.rbuf).await {
                Ok(n) => n,
                Err(e) => {
                    return Err(self.io_failure("read", e, peer));
                }
            };
            if n == 0 {
                let reason = if self.rbuf.is_empty() {
                    "connection closed without an answer".into()
                } else {
                    format!(
                        "connection closed mid-answer after {} bytes (truncated reply)",
                        self.rbuf.len()
                    )
                };
                return Err(failed(
                    self.endpoint,
                    DiscoveryErrorKind::Unreachable,
                    reason,
                ));
            }
        }
    }

    /// The error for a failed `what` ("send", "read") on the connection: the TLS failure it
    /// carries, or a discovery error quoting the I/O error's own message.
    fn io_failure(&self, what: &str, e: std::io::Error, peer: Peer<'_>) -> Error {
        match self.stream.failure(e, peer) {
            error @ Error::Tls { .. } => error,
            other => unreachable(self.endpoint, what, other),
        }
    }
}

/// What a node said to `config get cluster`.
#[derive(Debug)]
pub(crate) enum NodeAnswer {
    /// Its configuration.
    Config(ClusterConfig),
    /// `ERROR`: it does not know the command (plain memcached, Memorystore); do not ask again.
    Unsupported,
    /// No answer, an empty one, or one that does not parse.
    Failed(Error),
}

/// Asks the node behind `connection` for the cluster configuration, on that connection (no new
/// handshake), waiting at most until `deadline`.
pub(crate) async fn ask_node(
    connection: &Connection,
    limits: &Limits,
    deadline: Instant,
) -> NodeAnswer {
    let node = connection.node();
    let mut frame = BytesMut::new();
    let expect = match Request::ConfigGetCluster.encode(&mut frame, limits) {
        Ok(expect) => expect,
        Err(e) => return NodeAnswer::Failed(e.into()),
    };
    let reply = match connection
        .send(frame.freeze(), expect, true, deadline)
        .await
    {
        Ok(reply) => connection.reply(reply).await,
        Err(e) => Err(e),
    };
    match reply {
        Ok(Response::Config(Some(block))) => match parse_block(&block, node) {
            Ok(config) => NodeAnswer::Config(config),
            Err(e) => NodeAnswer::Failed(e),
        },
        Ok(Response::Config(None)) => NodeAnswer::Failed(Error::discovery(
            node,
            DiscoveryErrorKind::NoConfiguration,
            None,
            None,
        )),
        Ok(Response::Error(ErrorReply::Error)) => NodeAnswer::Unsupported,
        Ok(Response::Error(e)) => NodeAnswer::Failed(server_answer(node, CONFIG_GET, &e)),
        Ok(other) => NodeAnswer::Failed(not_an_answer(node, CONFIG_GET, &other)),
        Err(e) => NodeAnswer::Failed(e),
    }
}

fn parse_block(block: &[u8], endpoint: &str) -> Result<ClusterConfig, Error> {
    ClusterConfig::parse(block).map_err(|e| {
        Error::discovery(
            endpoint,
            DiscoveryErrorKind::Malformed,
            Some(e.to_string()),
            Some(std::sync::Arc::new(e)),
        )
    })
}
