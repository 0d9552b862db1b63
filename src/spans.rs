//! The `memcached.request` span of every call, with OpenTelemetry's semantic-convention fields
//! for database client spans, so that `tracing-opentelemetry` exports standard client spans:
//! `otel.kind = "client"`, `db.system.name = "memcached"`, `db.operation.name` (the call), and
//! for a call to one node `server.address` and `server.port`. The crate's own fields (`op`, and
//! `node`, `keys` or `nodes`) stay beside them. No field holds a key or a value.

use tracing::Span;

/// The `db.system.name` of every request span.
const DB_SYSTEM: &str = "memcached";

/// The span of a call to one node, `host:port`.
pub(crate) fn one_node(op: &'static str, node: &str) -> Span {
    let (address, port) = match node.rsplit_once(':') {
        Some((address, port)) => (address, port.parse::<u16>().ok()),
        None => (node, None),
    };
    tracing::debug_span!(
        "memcached.request",
        op,
        node,
        otel.kind = "client",
        db.system.name = DB_SYSTEM,
        db.operation.name = op,
        server.address = address,
        server.port = port,
    )
}

/// The span of a multi-get of `keys` keys (the nodes they go to are not one server).
pub(crate) fn multi_get(op: &'static str, keys: usize) -> Span {
    tracing::debug_span!(
        "memcached.request",
        op,
        keys,
        otel.kind = "client",
        db.system.name = DB_SYSTEM,
        db.operation.name = op,
    )
}

/// The span of a call sent to every one of `nodes` nodes.
pub(crate) fn every_node(op: &'static str, nodes: usize) -> Span {
    tracing::debug_span!(
        "memcached.request",
        op,
        nodes,
        otel.kind = "client",
        db.system.name = DB_SYSTEM,
        db.operation.name = op,
    )
}
