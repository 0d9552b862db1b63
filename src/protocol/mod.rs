//! The memcached text protocol, pure: bytes in, typed values out. No sockets, no clocks, no tasks.
//!
//! This module owns key validation and the size [`Limits`]; [`request`] encodes commands into a
//! caller's buffer (so many can be batched into one write) and [`response`] decodes replies from
//! a stream buffer, one at a time, saying "need more bytes" until a reply is complete. It does not
//! own connections, routing or the cluster configuration format (see [`crate::config`]).

pub mod request;
pub mod response;

pub use request::{Request, Retrieval, StoreMode};
pub use response::{decode, ErrorReply, Expect, Item, Response};

use crate::error::{KeyError, ProtocolError};

/// The longest key memcached accepts, in bytes.
pub const MAX_KEY_LEN: usize = 250;

/// memcached's own ceiling on an item size (`-I 1g`).
pub const MAX_VALUE_CEILING: usize = 1 << 30;

/// Checks that `key` can be sent as a memcached key: 1 to 250 bytes, no byte <= 0x20, no 0x7f.
/// Bytes >= 0x80 (UTF-8) are allowed.
///
/// ```
/// use memcached_autodiscovery::protocol::validate_key;
/// assert!(validate_key(b"user:42").is_ok());
/// assert!(validate_key("café".as_bytes()).is_ok());
/// assert!(validate_key(b"a\r\nflush_all").is_err());
/// ```
#[inline]
pub fn validate_key(key: &[u8]) -> Result<(), ProtocolError> {
    if key.is_empty() {
        return Err(ProtocolError::InvalidKey(KeyError::Empty));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ProtocolError::InvalidKey(KeyError::TooLong {
            len: key.len(),
        }));
    }
    match key.iter().position(|&b| b <= b' ' || b == 0x7f) {
        Some(index) => Err(ProtocolError::InvalidKey(KeyError::ForbiddenByte {
            index,
            byte: key[index],
        })),
        None => Ok(()),
    }
}

/// Size limits that protect the caller from a misbehaving server (and from its own mistakes).
/// A reply that breaks a limit is refused from its header alone, before its body is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest value accepted in a reply or sent in a request. Defaults to 1 MiB, memcached's
    /// default item size; at most 1 GiB.
    pub max_value_len: usize,
    /// Longest reply line (header) accepted. Defaults to 8 KiB.
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_len: 1 << 20,
            max_line_len: 8 << 10,
        }
    }
}

impl Limits {
    /// Limits with the given maximum value size, clamped to 1 GiB.
    pub fn with_max_value_len(max_value_len: usize) -> Self {
        Limits {
            max_value_len: max_value_len.min(MAX_VALUE_CEILING),
            ..Limits::default()
        }
    }
}
