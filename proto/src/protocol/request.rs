//! Requests of the classic memcached text protocol and their encoding.
//!
//! [`Request::encode`] validates first and only then appends the command to a caller's
//! `BytesMut`: a refused request leaves the buffer untouched, so a bad key can never reach a
//! server. `noreply` is never sent: every request gets exactly one reply, which is what keeps
//! pipelined replies matched to their requests.
//!
//! This module owns the classic requests and their wire form; it does not own the replies
//! ([`super::response`]) or the meta commands ([`super::meta`]). Its unit tests (one table row
//! per command) are in `request/tests.rs`.

use bytes::{BufMut, BytesMut};

use super::response::Expect;
use super::{validate_key, Limits};
use crate::error::ProtocolError;

/// What a request does to its key (see [`Request::key_access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// Reads the value (`get`, `gets`, `gat`, `gats`).
    Read,
    /// Replaces the value whatever it was (`set`, `cas`).
    Overwrite,
    /// Changes the value depending on what it is or whether it exists (`add`, `replace`,
    /// `append`, `prepend`, `incr`, `decr`, `touch`).
    Update,
    /// Deletes the value.
    Delete,
}

/// The retrieval commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retrieval {
    /// `get`: values and flags.
    Get,
    /// `gets`: values, flags and CAS tokens.
    Gets,
    /// `gat`: get and touch (new expiration time, in memcached's exptime encoding).
    Gat(u32),
    /// `gats`: get and touch, with CAS tokens.
    Gats(u32),
}

/// The storage commands that take a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreMode {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only if the key is absent.
    Add,
    /// `replace`: store only if the key is present.
    Replace,
    /// `append`: add the value after the existing one.
    Append,
    /// `prepend`: add the value before the existing one.
    Prepend,
}

impl StoreMode {
    /// The command's name: `set`, `add`, `replace`, `append` or `prepend`.
    pub fn name(self) -> &'static str {
        match self {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
        }
    }

    fn verb(self) -> &'static [u8] {
        match self {
            StoreMode::Set => b"set ",
            StoreMode::Add => b"add ",
            StoreMode::Replace => b"replace ",
            StoreMode::Append => b"append ",
            StoreMode::Prepend => b"prepend ",
        }
    }
}

/// One request. Keys and values are borrowed: encoding copies them into the output buffer.
/// `exptime` is memcached's encoding: 0 = never, up to 30 days = seconds from now, larger =
/// a Unix timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request<'a> {
    /// `get`/`gets`/`gat`/`gats` of one or more keys.
    Retrieve {
        /// Which retrieval command.
        kind: Retrieval,
        /// The keys (at least one).
        keys: &'a [&'a [u8]],
    },
    /// `set`/`add`/`replace`/`append`/`prepend`.
    Store {
        /// Which storage command.
        mode: StoreMode,
        /// The key.
        key: &'a [u8],
        /// Opaque client flags stored with the value.
        flags: u32,
        /// Expiration time.
        exptime: u32,
        /// The value.
        value: &'a [u8],
    },
    /// `cas`: store only if the item's CAS token is still `cas`.
    Cas {
        /// The key.
        key: &'a [u8],
        /// Opaque client flags stored with the value.
        flags: u32,
        /// Expiration time.
        exptime: u32,
        /// The value.
        value: &'a [u8],
        /// The CAS token from `gets`.
        cas: u64,
    },
    /// `delete`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
    /// `incr`.
    Incr {
        /// The key.
        key: &'a [u8],
        /// Amount to add (wraps at 2^64 on the server).
        delta: u64,
    },
    /// `decr`.
    Decr {
        /// The key.
        key: &'a [u8],
        /// Amount to subtract (stops at 0 on the server).
        delta: u64,
    },
    /// `touch`: set a new expiration time.
    Touch {
        /// The key.
        key: &'a [u8],
        /// Expiration time.
        exptime: u32,
    },
    /// `flush_all`, optionally delayed by `delay` seconds.
    FlushAll {
        /// Delay in seconds.
        delay: Option<u32>,
    },
    /// `version`.
    Version,
    /// `stats`, optionally with a group argument (`items`, `slabs`, `settings`, ...).
    Stats {
        /// The group, one word.
        arg: Option<&'a [u8]>,
    },
    /// `config get cluster`: ElastiCache / Memorystore auto-discovery (engine >= 1.4.14).
    ConfigGetCluster,
    /// `get AmazonElastiCache:cluster`: auto-discovery on engines older than 1.4.14.
    LegacyConfigGet,
}

/// The reserved key that old ElastiCache engines serve the cluster configuration under.
pub const LEGACY_CONFIG_KEY: &[u8] = b"AmazonElastiCache:cluster";

impl Request<'_> {
    /// The kind of reply this request gets.
    pub fn expect(&self) -> Expect {
        match self {
            Request::Retrieve { keys, .. } => Expect::Values { max: keys.len() },
            Request::Store { .. } | Request::Cas { .. } => Expect::Store,
            Request::Delete { .. } => Expect::Delete,
            Request::Incr { .. } | Request::Decr { .. } => Expect::Arith,
            Request::Touch { .. } => Expect::Touch,
            Request::FlushAll { .. } => Expect::Ok,
            Request::Version => Expect::Version,
            Request::Stats { .. } => Expect::Stats,
            Request::ConfigGetCluster => Expect::Config,
            Request::LegacyConfigGet => Expect::Values { max: 1 },
        }
    }

    /// Whether sending the request twice has the same effect as sending it once, so that it
    /// may be sent again on a fresh connection when the first one broke before its reply came
    /// (reads, `set`, `touch`, `stats`, `version`, discovery). `add`, `replace`, `append`,
    /// `prepend`, `cas`, `incr`, `decr`, `delete` and `flush_all` are not.
    pub fn is_idempotent(&self) -> bool {
        match self {
            Request::Retrieve { .. }
            | Request::Store {
                mode: StoreMode::Set,
                ..
            }
            | Request::Touch { .. }
            | Request::Version
            | Request::Stats { .. }
            | Request::ConfigGetCluster
            | Request::LegacyConfigGet => true,
            Request::Store { .. }
            | Request::Cas { .. }
            | Request::Delete { .. }
            | Request::Incr { .. }
            | Request::Decr { .. }
            | Request::FlushAll { .. } => false,
        }
    }

    /// What the request does to the one key it names, or `None` for a request that names no
    /// single key (a multi-key read, `flush_all`, `stats`, `version`, discovery). A client that
    /// still reads a moved key's previous owner (a warm handoff) decides by it what to do
    /// around the request.
    pub fn key_access(&self) -> Option<KeyAccess> {
        match self {
            Request::Retrieve { keys, .. } if keys.len() == 1 => Some(KeyAccess::Read),
            Request::Store {
                mode: StoreMode::Set,
                ..
            }
            | Request::Cas { .. } => Some(KeyAccess::Overwrite),
            Request::Store { .. }
            | Request::Incr { .. }
            | Request::Decr { .. }
            | Request::Touch { .. } => Some(KeyAccess::Update),
            Request::Delete { .. } => Some(KeyAccess::Delete),
            Request::Retrieve { .. }
            | Request::FlushAll { .. }
            | Request::Version
            | Request::Stats { .. }
            | Request::ConfigGetCluster
            | Request::LegacyConfigGet => None,
        }
    }

    /// Checks the request without encoding it: keys, value size, arguments.
    pub fn validate(&self, limits: &Limits) -> Result<(), ProtocolError> {
        let check_value = |value: &[u8]| {
            if value.len() > limits.max_value_size {
                Err(ProtocolError::ValueTooLarge {
                    len: value.len(),
                    max: limits.max_value_size,
                })
            } else {
                Ok(())
            }
        };
        match *self {
            Request::Retrieve { keys, .. } => {
                if keys.is_empty() {
                    return Err(ProtocolError::InvalidKey(crate::error::KeyError::Empty));
                }
                keys.iter().try_for_each(|k| validate_key(k))
            }
            Request::Store { key, value, .. } | Request::Cas { key, value, .. } => {
                validate_key(key)?;
                check_value(value)
            }
            Request::Delete { key }
            | Request::Incr { key, .. }
            | Request::Decr { key, .. }
            | Request::Touch { key, .. } => validate_key(key),
            Request::Stats { arg: Some(arg) } => {
                if arg.is_empty() || arg.iter().any(|&b| b <= b' ' || b == 0x7f) {
                    Err(ProtocolError::InvalidArgument)
                } else {
                    Ok(())
                }
            }
            Request::Stats { arg: None }
            | Request::FlushAll { .. }
            | Request::Version
            | Request::ConfigGetCluster
            | Request::LegacyConfigGet => Ok(()),
        }
    }

    /// Validates the request, then appends its bytes to `buf` and returns the kind of reply to
    /// expect. On error `buf` is left unchanged.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memcached_autodiscovery_proto::protocol::{Limits, Request, StoreMode};
    /// let mut buf = BytesMut::new();
    /// Request::Store { mode: StoreMode::Set, key: b"k", flags: 0, exptime: 60, value: b"v" }
    ///     .encode(&mut buf, &Limits::default())?;
    /// Request::Delete { key: b"k" }.encode(&mut buf, &Limits::default())?;
    /// assert_eq!(&buf[..], b"set k 0 60 1\r\nv\r\ndelete k\r\n");
    /// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
    /// ```
    pub fn encode(&self, buf: &mut BytesMut, limits: &Limits) -> Result<Expect, ProtocolError> {
        self.validate(limits)?;
        match *self {
            Request::Retrieve { kind, keys } => {
                let verb: &[u8] = match kind {
                    Retrieval::Get => b"get",
                    Retrieval::Gets => b"gets",
                    Retrieval::Gat(_) => b"gat",
                    Retrieval::Gats(_) => b"gats",
                };
                let keys_len: usize = keys.iter().map(|k| k.len() + 1).sum();
                buf.reserve(verb.len() + keys_len + 14);
                buf.put_slice(verb);
                if let Retrieval::Gat(exptime) | Retrieval::Gats(exptime) = kind {
                    buf.put_u8(b' ');
                    put_decimal(buf, u64::from(exptime));
                }
                for key in keys {
                    buf.put_u8(b' ');
                    buf.put_slice(key);
                }
                buf.put_slice(b"\r\n");
            }
            Request::Store {
                mode,
                key,
                flags,
                exptime,
                value,
            } => put_storage(buf, mode.verb(), key, flags, exptime, value, None),
            Request::Cas {
                key,
                flags,
                exptime,
                value,
                cas,
            } => put_storage(buf, b"cas ", key, flags, exptime, value, Some(cas)),
            Request::Delete { key } => put_line(buf, b"delete ", key, None),
            Request::Incr { key, delta } => put_line(buf, b"incr ", key, Some(delta)),
            Request::Decr { key, delta } => put_line(buf, b"decr ", key, Some(delta)),
            Request::Touch { key, exptime } => {
                put_line(buf, b"touch ", key, Some(u64::from(exptime)))
            }
            Request::FlushAll { delay: None } => buf.put_slice(b"flush_all\r\n"),
            Request::FlushAll { delay: Some(d) } => {
                buf.put_slice(b"flush_all ");
                put_decimal(buf, u64::from(d));
                buf.put_slice(b"\r\n");
            }
            Request::Version => buf.put_slice(b"version\r\n"),
            Request::Stats { arg: None } => buf.put_slice(b"stats\r\n"),
            Request::Stats { arg: Some(arg) } => put_line(buf, b"stats ", arg, None),
            Request::ConfigGetCluster => buf.put_slice(b"config get cluster\r\n"),
            Request::LegacyConfigGet => put_line(buf, b"get ", LEGACY_CONFIG_KEY, None),
        }
        Ok(self.expect())
    }
}

fn put_line(buf: &mut BytesMut, verb: &[u8], key: &[u8], arg: Option<u64>) {
    buf.reserve(verb.len() + key.len() + 23);
    buf.put_slice(verb);
    buf.put_slice(key);
    if let Some(arg) = arg {
        buf.put_u8(b' ');
        put_decimal(buf, arg);
    }
    buf.put_slice(b"\r\n");
}

fn put_storage(
    buf: &mut BytesMut,
    verb: &[u8],
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    cas: Option<u64>,
) {
    buf.reserve(verb.len() + key.len() + value.len() + 64);
    buf.put_slice(verb);
    buf.put_slice(key);
    buf.put_u8(b' ');
    put_decimal(buf, u64::from(flags));
    buf.put_u8(b' ');
    put_decimal(buf, u64::from(exptime));
    buf.put_u8(b' ');
    put_decimal(buf, value.len() as u64);
    if let Some(cas) = cas {
        buf.put_u8(b' ');
        put_decimal(buf, cas);
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(crate) fn put_decimal(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests;
