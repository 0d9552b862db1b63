//! Cluster configuration data blocks (the bytes inside the `CONFIG` envelope).
//!
//! Any input: parsing never panics. A block that parses must survive the trip through
//! `encode_block` and through both server reply envelopes and the reply decoder.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use memcached_autodiscovery_proto::config::ClusterConfig;
use memcached_autodiscovery_proto::protocol::{decode, Expect, Limits, Response};
use memcached_autodiscovery_proto::error::ProtocolError;

/// The whole server reply around `block`, as an ElastiCache endpoint frames it.
fn framed(header: &str, block: &[u8]) -> Vec<u8> {
    let mut out = format!("{header} 0 {}\r\n", block.len()).into_bytes();
    out.extend_from_slice(block);
    out.extend_from_slice(b"\r\nEND\r\n");
    out
}

fuzz_target!(|data: &[u8]| {
    let config = match ClusterConfig::parse(data) {
        Ok(config) => config,
        Err(ProtocolError::ClusterConfig { offset, .. }) => {
            assert!(offset <= data.len(), "error offset {offset} past the end");
            return;
        }
        Err(other) => panic!("parse returned a non-config error: {other:?}"),
    };
    assert!(!config.nodes().is_empty());
    for node in config.nodes() {
        assert!(!node.hostname().is_empty());
        assert_ne!(node.port(), 0);
    }

    let block = config.encode_block();
    assert_eq!(
        ClusterConfig::parse(&block),
        Ok(config.clone()),
        "round trip"
    );

    let limits = Limits::with_max_value_size(block.len());

    let reply = framed("CONFIG cluster", &block);
    let mut buf = BytesMut::from(&reply[..]);
    match decode(&mut buf, Expect::Config, &limits) {
        Ok(Some((Response::Config(Some(got)), n))) => {
            assert_eq!(&got[..], &block[..]);
            assert_eq!(n, reply.len());
            assert!(buf.is_empty());
        }
        other => panic!("config reply decoded as {other:?}"),
    }

    let reply = framed("VALUE AmazonElastiCache:cluster", &block);
    let mut buf = BytesMut::from(&reply[..]);
    match decode(&mut buf, Expect::Values { max: 1 }, &limits) {
        Ok(Some((Response::Values(items), n))) => {
            assert_eq!(items.len(), 1);
            assert_eq!(&items[0].key[..], b"AmazonElastiCache:cluster");
            assert_eq!(&items[0].value[..], &block[..]);
            assert_eq!(n, reply.len());
            assert!(buf.is_empty());
        }
        other => panic!("legacy reply decoded as {other:?}"),
    }
});
