//! The memcached text protocol, pure: bytes in, typed values out. No sockets, no clocks, no tasks.
//!
//! This module owns key validation and the size [`Limits`]; [`request`] encodes commands into a
//! caller's buffer (so many can be batched into one write) and [`response`] decodes replies from
//! a stream buffer, one at a time, saying "need more bytes" until a reply is complete. [`meta`]
//! does both for the meta commands (`mg`, `ms`, `md`, `ma`, `mn`), whose replies go through the
//! same [`decode`]. It does not
//! own connections, routing or the cluster configuration format (see [`crate::config`]).

mod batch;
pub mod meta;
pub mod request;
pub mod response;

pub use batch::{retrieval_batches, MAX_RETRIEVAL_LINE};
pub use request::{KeyAccess, Request, Retrieval, StoreMode};
pub use response::{decode, ErrorReply, Expect, Item, Response};

use std::time::Duration;

use bytes::BytesMut;

use crate::error::{KeyError, ProtocolError};

/// A request a connection can carry: the classic [`Request`] and the meta
/// [`MetaRequest`](meta::MetaRequest) alike. A driver needs only this to send either.
pub trait Encode {
    /// Appends the request's bytes to `buf` (after checking it within `limits`: nothing is
    /// appended to a refused request) and returns the reply it expects.
    fn encode(&self, buf: &mut BytesMut, limits: &Limits) -> Result<Expect, ProtocolError>;
    /// Whether sending the request twice is harmless (it may then be replayed on a fresh
    /// connection after a break).
    fn is_idempotent(&self) -> bool;
}

impl Encode for Request<'_> {
    fn encode(&self, buf: &mut BytesMut, limits: &Limits) -> Result<Expect, ProtocolError> {
        Request::encode(self, buf, limits)
    }
    fn is_idempotent(&self) -> bool {
        Request::is_idempotent(self)
    }
}

impl Encode for meta::MetaRequest<'_> {
    fn encode(&self, buf: &mut BytesMut, limits: &Limits) -> Result<Expect, ProtocolError> {
        meta::MetaRequest::encode(self, buf, limits)
    }
    fn is_idempotent(&self) -> bool {
        meta::MetaRequest::is_idempotent(self)
    }
}

/// The longest key memcached accepts, in bytes.
pub const MAX_KEY_LEN: usize = 250;

/// memcached's own ceiling on an item size (`-I 1g`).
pub const MAX_VALUE_CEILING: usize = 1 << 30;

/// The longest time to live memcached takes as a number of seconds (30 days); longer ones are
/// sent as an absolute Unix time.
pub const MAX_RELATIVE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The latest absolute expiry memcached can hold: it reads exptime as a signed 32-bit number,
/// so 2038-01-19 03:14:07 UTC.
pub const MAX_EXPIRY_UNIX: u64 = i32::MAX as u64;

/// memcached's exptime for a time to live, at Unix time `now_unix`: 0 for no expiry
/// ([`Duration::ZERO`]); up to 30 days, the seconds (a fraction of a second rounds up); beyond,
/// the absolute Unix time `now_unix + ttl`. A TTL that ends after [`MAX_EXPIRY_UNIX`] cannot be
/// represented and is refused ([`ProtocolError::TtlTooLong`]): memcached would store the item as
/// already expired.
///
/// ```
/// use std::time::Duration;
/// use memcached_autodiscovery_proto::protocol::exptime;
/// let now = 1_800_000_000;
/// assert_eq!(exptime(Duration::ZERO, now), Ok(0));
/// assert_eq!(exptime(Duration::from_millis(1500), now), Ok(2));
/// assert_eq!(exptime(Duration::from_secs(40 * 24 * 3600), now), Ok(1_803_456_000));
/// assert!(exptime(Duration::from_secs(400_000_000), now).is_err());
/// ```
pub fn exptime(ttl: Duration, now_unix: u64) -> Result<u32, ProtocolError> {
    if ttl.is_zero() {
        return Ok(0);
    }
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    if secs <= MAX_RELATIVE_TTL.as_secs() {
        return Ok(secs as u32);
    }
    let at = now_unix.saturating_add(secs);
    if at > MAX_EXPIRY_UNIX {
        return Err(ProtocolError::TtlTooLong {
            secs,
            max: MAX_EXPIRY_UNIX.saturating_sub(now_unix),
        });
    }
    Ok(at as u32)
}

/// Checks that `key` can be sent as a memcached key: 1 to 250 bytes, no byte <= 0x20, no 0x7f.
/// Bytes >= 0x80 (UTF-8) are allowed.
///
/// ```
/// use memcached_autodiscovery_proto::protocol::validate_key;
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
#[non_exhaustive]
pub struct Limits {
    /// Largest value accepted in a reply or sent in a request. Defaults to 1 MiB, memcached's
    /// default item size; at most 1 GiB.
    pub max_value_size: usize,
    /// Longest reply line (header) accepted. Defaults to 8 KiB.
    pub max_line_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_size: 1 << 20,
            max_line_size: 8 << 10,
        }
    }
}

impl Limits {
    /// Limits with the given maximum value size (clamped to 1 GiB) and the longest reply line.
    pub const fn new(max_value_size: usize, max_line_size: usize) -> Self {
        Limits {
            max_value_size: if max_value_size < MAX_VALUE_CEILING {
                max_value_size
            } else {
                MAX_VALUE_CEILING
            },
            max_line_size,
        }
    }

    /// Limits with the given maximum value size, clamped to 1 GiB, and the default line size.
    pub const fn with_max_value_size(max_value_size: usize) -> Self {
        Limits::new(max_value_size, 8 << 10)
    }
}
