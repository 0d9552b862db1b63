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
    let span = tracing::debug_span!(
        "memcached.request",
        op,
        node,
        otel.kind = "client",
        db.system.name = DB_SYSTEM,
        db.operation.name = op,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
    );
    // Split only for a subscriber that wants the span (not on every call).
    if !span.is_disabled() {
        match node.rsplit_once(':') {
            Some((address, port)) => {
                span.record("server.address", address);
                if let Ok(port) = port.parse::<u16>() {
                    span.record("server.port", port);
                }
            }
            None => {
                span.record("server.address", node);
            }
        }
    }
    span
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
