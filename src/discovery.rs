//! I/O policy. One discovery: asking a node of the cluster for its configuration, or the
//! configuration endpoint.
//!
//! Both go through the connection machinery every request uses ([`Connection::request`]): a
//! node is asked on its existing connection (no new handshake; every ElastiCache node answers
//! `config get cluster` as the endpoint does, plain memcached answers `ERROR`), the endpoint on
//! a short-lived connection opened for the poll, its name resolved again, through the client's
//! transport (TLS, timeouts and "this server wants TLS" hints as for nodes).
//!
//! This module owns the policy — `config get cluster`, then the legacy key
//! `AmazonElastiCache:cluster` on engines that do not know the command — and the one
//! interpretation of a reply to either ([`answer`]). Whether a configuration is applied, and
//! when to poll (nodes first, then the endpoint), is [`crate::topology`]'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::ClusterConfig;
use crate::connection::{Connection, ConnectionSettings, Role};
use crate::error::{DiscoveryErrorKind, Error};
use crate::protocol::request::LEGACY_CONFIG_KEY;
use crate::protocol::{ErrorReply, Limits, Request, Response};
use crate::transport::{split_host_port, Target};

/// What a reply to a discovery command says.
#[derive(Debug)]
enum Answer {
    /// A configuration data block (not parsed yet).
    Block(Bytes),
    /// No configuration stored: an empty `config get cluster`, no legacy key.
    Empty,
    /// `ERROR`: the server does not know the command.
    UnknownCommand,
}

/// The one interpretation of a reply to `config get cluster` or to the legacy `get`; a reply
/// that is neither is given back (an error for the request path).
fn answer(response: Response) -> Result<Answer, Response> {
    match response {
        Response::Config(Some(block)) => Ok(Answer::Block(block)),
        Response::Config(None) => Ok(Answer::Empty),
        Response::Values(mut items) => match items.pop() {
            None => Ok(Answer::Empty),
            Some(item) if item.key == LEGACY_CONFIG_KEY && items.is_empty() => {
                Ok(Answer::Block(item.value))
            }
            Some(item) => {
                items.push(item);
                Err(Response::Values(items))
            }
        },
        Response::Error(ErrorReply::Error) => Ok(Answer::UnknownCommand),
        other => Err(other),
    }
}

/// Sends a discovery `command` to `peer` on `connection` and interprets the reply, answered by
/// `deadline` at the latest. A failure is a discovery error (a TLS failure stays one: its
/// message says what to change).
async fn ask(
    connection: &Connection,
    peer: &str,
    command: Request<'_>,
    limits: &Limits,
    deadline: Instant,
) -> Result<Answer, Error> {
    let reply = connection.request_by(&command, limits, deadline, answer);
    reply.await.map_err(|error| {
        let kind = match &error {
            Error::Tls { .. } | Error::Discovery { .. } => return error,
            Error::Timeout { .. } => DiscoveryErrorKind::Timeout,
            Error::Server { .. } => DiscoveryErrorKind::ServerError,
            Error::Protocol { .. } | Error::Invalid(_) => DiscoveryErrorKind::Malformed,
            _ => DiscoveryErrorKind::Unreachable,
        };
        let detail = error.without_data().to_string();
        Error::discovery(peer, kind, Some(detail), Some(Arc::new(error)))
    })
}

/// The configuration a data block holds, or the error naming `peer`.
fn parse(block: &[u8], peer: &str) -> Result<ClusterConfig, Error> {
    ClusterConfig::parse(block).map_err(|e| {
        Error::discovery(
            peer,
            DiscoveryErrorKind::Malformed,
            Some(e.to_string()),
            Some(Arc::new(e)),
        )
    })
}

/// One discovery from `endpoint` (`host:port`), bounded by `timeout` as a whole (DNS, connect,
/// TLS handshake, both commands), on a connection of its own made with the client's `settings`.
/// The reply is read within the default [`Limits`] (a 1 MiB block, some 15,000 nodes), whatever
/// the client's own value size.
pub(crate) async fn fetch(
    endpoint: &str,
    settings: &ConnectionSettings,
    timeout: Duration,
) -> Result<ClusterConfig, Error> {
    let (host, port) = split_host_port(endpoint, "config_endpoint")?;
    let deadline = Instant::now() + timeout;
    let limits = Limits::default();
    let settings = Arc::new(ConnectionSettings {
        request_timeout: timeout,
        limits,
        queue_depth: 2,
        probe_down_nodes: false,
        serverless: false,
        ..settings.clone()
    });
    let target = Target::new(host, port, None);
    let connection = Connection::spawn(Role::Endpoint, Arc::from(endpoint), target, settings);
    let discovery = from_endpoint(&connection, endpoint, &limits, deadline);
    match tokio::time::timeout_at(deadline, discovery).await {
        Ok(result) => result,
        Err(_) => Err(Error::discovery(
            endpoint,
            DiscoveryErrorKind::Timeout,
            Some(format!("no complete answer within {timeout:?}")),
            None,
        )),
    }
}

/// The endpoint's policy: `config get cluster`, then the legacy key.
async fn from_endpoint(
    connection: &Connection,
    endpoint: &str,
    limits: &Limits,
    deadline: Instant,
) -> Result<ClusterConfig, Error> {
    let ask = |command| ask(connection, endpoint, command, limits, deadline);
    let unknown_command = match ask(Request::ConfigGetCluster).await? {
        Answer::Block(block) => return parse(&block, endpoint),
        Answer::Empty => false,
        Answer::UnknownCommand => true,
    };
    match ask(Request::LegacyConfigGet).await? {
        Answer::Block(block) => parse(&block, endpoint),
        Answer::Empty | Answer::UnknownCommand if unknown_command => {
            Err(Error::DiscoveryUnsupported {
                endpoint: endpoint.to_string(),
            })
        }
        Answer::Empty => Err(Error::discovery(
            endpoint,
            DiscoveryErrorKind::NoConfiguration,
            None,
            None,
        )),
        Answer::UnknownCommand => Err(Error::discovery(
            endpoint,
            DiscoveryErrorKind::ServerError,
            Some("the legacy `get AmazonElastiCache:cluster` answered ERROR".into()),
            None,
        )),
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
    match ask(
        connection,
        node,
        Request::ConfigGetCluster,
        limits,
        deadline,
    )
    .await
    {
        Ok(Answer::Block(block)) => match parse(&block, node) {
            Ok(config) => NodeAnswer::Config(config),
            Err(e) => NodeAnswer::Failed(e),
        },
        Ok(Answer::Empty) => NodeAnswer::Failed(Error::discovery(
            node,
            DiscoveryErrorKind::NoConfiguration,
            None,
            None,
        )),
        Ok(Answer::UnknownCommand) => NodeAnswer::Unsupported,
        Err(e) => NodeAnswer::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Item;

    #[test]
    fn one_interpretation_of_both_commands() {
        let block = Bytes::from_static(b"1\na|10.0.0.1|11211\n");
        assert!(matches!(
            answer(Response::Config(Some(block.clone()))),
            Ok(Answer::Block(b)) if b == block
        ));
        assert!(matches!(answer(Response::Config(None)), Ok(Answer::Empty)));
        let legacy = Item::new(LEGACY_CONFIG_KEY, 0, None, block.clone());
        assert!(matches!(
            answer(Response::Values(vec![legacy])),
            Ok(Answer::Block(b)) if b == block
        ));
        assert!(matches!(
            answer(Response::Values(vec![])),
            Ok(Answer::Empty)
        ));
        let other = Item::new(&b"another"[..], 0, None, block);
        assert!(answer(Response::Values(vec![other])).is_err());
        assert!(matches!(
            answer(Response::Error(ErrorReply::Error)),
            Ok(Answer::UnknownCommand)
        ));
        assert!(answer(Response::Error(ErrorReply::Server("busy".into()))).is_err());
        assert!(answer(Response::Stored).is_err());
    }
}
