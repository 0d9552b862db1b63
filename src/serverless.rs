//! ElastiCache Serverless for Memcached: what the client does differently for it, in one place.
//!
//! A Serverless cache is one endpoint (`<name>-<id>.serverless.<region>.cache.amazonaws.com`)
//! that scales behind itself: there is no `config get cluster` and no node list, TLS is
//! required, and a few commands are refused. With
//! `ClientBuilder::serverless` the client uses the endpoint
//! as its single node, over [`CONNECTIONS`] pipelined TLS connections by default, and refuses
//! here, before sending, what Serverless would refuse, with an error that says why.
//! Multi-gets are cut into lines of at most 16 KB for every cluster, in
//! [`crate::protocol::retrieval_batches`].

use crate::error::{Error, ServerErrorKind};
use crate::topology::Topology;

/// Connections to a Serverless endpoint unless `connections_per_node` says otherwise: the
/// service scales with connections, and requests are spread over them round robin.
#[cfg(feature = "tls")]
pub(crate) const CONNECTIONS: usize = 4;

/// Whether `endpoint` (`host:port`) is a Serverless endpoint: its host has a `serverless` label.
pub(crate) fn is_serverless_endpoint(endpoint: &str) -> bool {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host);
    host.split('.')
        .any(|label| label.eq_ignore_ascii_case("serverless"))
}

/// A Serverless endpoint given as a configuration endpoint: it cannot be discovered.
pub(crate) fn refuse_discovery(endpoint: &str) -> Result<(), Error> {
    if is_serverless_endpoint(endpoint) {
        return Err(Error::settings(
            "config_endpoint",
            format!(
                "{endpoint} is an ElastiCache Serverless endpoint, which has no `config get \
                 cluster`: use ClientBuilder::serverless(\"{endpoint}\") instead"
            ),
        ));
    }
    Ok(())
}

/// The endpoint's `host:port` when `topology` is a Serverless cache's.
fn serverless_node(topology: &Topology) -> Option<String> {
    if !topology.settings().serverless {
        return None;
    }
    let config = topology.current().config.clone();
    Some(config.nodes().first().map(|n| n.id()).unwrap_or_default())
}

/// `stats <group>` on a Serverless cache: see [`stats_refusal`].
pub(crate) fn check_stats(topology: &Topology, group: Option<&str>) -> Result<(), Error> {
    match serverless_node(topology) {
        Some(node) => stats_refusal(true, &node, group),
        None => Ok(()),
    }
}

/// A delayed `flush_all` on a Serverless cache: see [`flush_refusal`].
pub(crate) fn check_flush_delay(topology: &Topology, delay: u32) -> Result<(), Error> {
    match serverless_node(topology) {
        Some(node) => flush_refusal(true, &node, delay),
        None => Ok(()),
    }
}

/// `stats <group>`, which Serverless answers with `ERROR` (it takes `stats` and `stats reset`
/// only): refused before sending when `serverless`.
fn stats_refusal(serverless: bool, node: &str, group: Option<&str>) -> Result<(), Error> {
    match group {
        Some(group) if serverless && group != "reset" => Err(Error::Server {
            node: node.to_string(),
            kind: ServerErrorKind::UnknownCommand,
            message: format!(
                "not sent: ElastiCache Serverless answers ERROR to `stats {group}`; it supports \
                 only `stats` and `stats reset`"
            ),
        }),
        _ => Ok(()),
    }
}

/// A delayed `flush_all`, which Serverless refuses with `CLIENT_ERROR`: refused before sending
/// when `serverless`.
fn flush_refusal(serverless: bool, node: &str, delay: u32) -> Result<(), Error> {
    if serverless && delay > 0 {
        return Err(Error::Server {
            node: node.to_string(),
            kind: ServerErrorKind::ClientError,
            message: "not sent: ElastiCache Serverless refuses a delayed flush_all with \
                      CLIENT_ERROR; use flush_all() to flush at once"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serverless_endpoints_are_told_by_their_host() {
        assert!(is_serverless_endpoint(
            "mycache-abc123.serverless.use1.cache.amazonaws.com:11211"
        ));
        assert!(is_serverless_endpoint("X.SERVERLESS.example"));
        assert!(!is_serverless_endpoint(
            "mycluster.abc123.cfg.use1.cache.amazonaws.com:11211"
        ));
        assert!(!is_serverless_endpoint("serverless-cache.local:11211"));
        assert!(!is_serverless_endpoint(""));
    }

    #[test]
    fn refusals_apply_only_to_serverless() {
        assert!(stats_refusal(true, "n", Some("settings")).is_err());
        assert!(stats_refusal(true, "n", Some("reset")).is_ok());
        assert!(stats_refusal(true, "n", None).is_ok());
        assert!(stats_refusal(false, "n", Some("settings")).is_ok());
        assert!(flush_refusal(true, "n", 5).is_err());
        assert!(flush_refusal(true, "n", 0).is_ok());
        assert!(flush_refusal(false, "n", 5).is_ok());
    }
}
