//! The whole server replies that carry a cluster configuration, byte for byte as an ElastiCache
//! configuration endpoint sends them: the envelope around
//! [`ClusterConfig::encode_block`](memcached_autodiscovery::ClusterConfig::encode_block).

use memcached_autodiscovery::ClusterConfig;

/// Which discovery command a reply answers, and so which envelope [`encode_reply`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The reply to `config get cluster`: `CONFIG cluster 0 <bytes>`.
    ConfigGet,
    /// The reply to `get AmazonElastiCache:cluster`: `VALUE AmazonElastiCache:cluster 0 <bytes>`.
    LegacyGet,
}

impl ReplyKind {
    /// The header line's words before the flags and the length.
    pub(crate) fn header(self) -> &'static str {
        match self {
            ReplyKind::ConfigGet => "CONFIG cluster",
            ReplyKind::LegacyGet => "VALUE AmazonElastiCache:cluster",
        }
    }
}

/// Encodes the whole reply that carries `config`:
/// `<header> 0 <bytes>\r\n<block>\r\nEND\r\n`, as the emulated endpoint serves it.
///
/// ```
/// use memcached_autodiscovery::{ClusterConfig, Node};
/// use memcached_autodiscovery_testkit::{encode_reply, ReplyKind};
/// let config = ClusterConfig::new(3, vec![Node::new("a", None, 1)]);
/// assert_eq!(
///     encode_reply(&config, ReplyKind::ConfigGet),
///     b"CONFIG cluster 0 7\r\n3\na||1\n\r\nEND\r\n"
/// );
/// ```
pub fn encode_reply(config: &ClusterConfig, kind: ReplyKind) -> Vec<u8> {
    let block = config.encode_block();
    let mut out = format!("{} 0 {}\r\n", kind.header(), block.len()).into_bytes();
    out.extend_from_slice(&block);
    out.extend_from_slice(b"\r\nEND\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use memcached_autodiscovery::Node;

    #[test]
    fn reply_envelopes_count_the_block_exactly() {
        let c = ClusterConfig::new(3, vec![Node::new("a", None, 1)]);
        assert_eq!(
            encode_reply(&c, ReplyKind::ConfigGet),
            b"CONFIG cluster 0 7\r\n3\na||1\n\r\nEND\r\n"
        );
        assert_eq!(
            encode_reply(&c, ReplyKind::LegacyGet),
            b"VALUE AmazonElastiCache:cluster 0 7\r\n3\na||1\n\r\nEND\r\n"
        );
    }
}
