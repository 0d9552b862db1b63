//! Stored values with a meaning: compression above a size threshold, values other clients
//! compressed, and (with the `serde` feature) JSON.
//!
//! A [`Codec`] turns the bytes you store into the bytes and `flags` memcached keeps, and back.
//! It is pure (no I/O): [`Codec::encode`] and [`Codec::decode`] work on bytes, and the
//! [`Client`](crate::Client) calls [`get_decoded`](crate::Client::get_decoded),
//! [`set_encoded`](crate::Client::set_encoded), and with `serde` `get_json` and `set_json`,
//! use them.
//!
//! # The `flags` bits
//!
//! memcached stores a 32-bit `flags` number beside each value and never looks at it; clients
//! use it to say how to read the value. A codec writes and reads these:
//!
//! | `flags` | the value is | written | read |
//! |---|---|---|---|
//! | `0` | the bytes as given | values at or under the threshold, or that do not shrink | always |
//! | [`FLAG_ZSTD`] `0x0100_0000` (bit 24) | a zstd frame of the bytes | above the threshold, with the `zstd` feature | with the `zstd` feature |
//! | [`FLAG_GZIP`] `0x2` (bit 1) | a gzip stream of the bytes (the Java client's `COMPRESSED`) | never | with the `gzip` feature |
//! | [`FLAG_JAVA_BYTE_ARRAY`] `0x800`, alone or with `0x2` | a Java `byte[]`: the bytes (gzipped with `0x2`) | never | always (`0x802` with `gzip`) |
//! | anything else | unknown | never | never: [`CodecError::UnknownFlags`] |
//!
//! The AWS ElastiCache Cluster Client for Java (a fork of spymemcached) stores values through
//! spymemcached's `SerializingTranscoder`: a `String` as its UTF-8 bytes with flags `0`, a
//! `byte[]` with `0x800`, other types with their own bits (`0x1` a Java-serialized object,
//! `0x100`..`0x700` booleans, numbers and dates), and anything over 16,384 bytes gzipped, with
//! `0x2` added. Its strings and byte arrays are read here; its other types are refused as
//! unknown, never read as something else. Values this crate stores with flags `0` (short JSON,
//! for one) read as strings in the Java client. Bit 24 is outside every bit that transcoder
//! uses (`0x1`, `0x2`, `0xff00`).
//!
//! # Bounded decompression
//!
//! A value decompresses to at most [`Codec::max_size`] bytes (1 MiB by default, like the
//! client's `max_value_size`); a value that would be longer (a zip bomb among them) fails with
//! [`CodecError::TooLarge`] after at most that many bytes were produced. `encode` refuses a
//! value longer than `max_size` too, so whatever a codec stores it can read back.

mod client;
mod ops;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use crate::error::CodecError;

/// `flags` bit of a value this crate compressed with zstd (bit 24).
pub const FLAG_ZSTD: u32 = 1 << 24;
/// `flags` bit of a gzip-compressed value: `COMPRESSED` of the Java client's
/// `SerializingTranscoder` (bit 1).
pub const FLAG_GZIP: u32 = 0x2;
/// `flags` of a Java `byte[]` stored by the Java client's `SerializingTranscoder`
/// (`SPECIAL_BYTEARRAY`, `8 << 8`).
pub const FLAG_JAVA_BYTE_ARRAY: u32 = 0x800;

/// Values longer than this are compressed by [`Codec::default`] (with the `zstd` feature).
pub const DEFAULT_COMPRESS_ABOVE: usize = 1024;
/// The longest value [`Codec::default`] stores or reads, decompressed: 1 MiB, memcached's
/// default item size and the client's default `max_value_size`.
pub const DEFAULT_MAX_SIZE: usize = 1 << 20;
/// The zstd level the codec compresses with.
const ZSTD_LEVEL: i32 = 1;

/// How values are stored: compressed above a threshold, within a size limit. Cheap to clone.
///
/// ```
/// use memcached_autodiscovery::codec::{Codec, FLAG_ZSTD};
/// let codec = Codec::default().compress_above(64).max_size(4096);
/// let (flags, stored) = codec.encode(&[b'a'; 1000][..]).unwrap();
/// # #[cfg(feature = "zstd")]
/// assert_eq!(flags, FLAG_ZSTD);
/// # #[cfg(feature = "zstd")]
/// assert!(stored.len() < 100);
/// assert_eq!(codec.decode(flags, stored).unwrap(), &[b'a'; 1000][..]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    compress_above: Option<usize>,
    max_size: usize,
}

impl Default for Codec {
    /// Compresses values over [`DEFAULT_COMPRESS_ABOVE`] bytes when the `zstd` feature is on;
    /// stores and reads values up to [`DEFAULT_MAX_SIZE`].
    fn default() -> Self {
        Codec {
            compress_above: cfg!(feature = "zstd").then_some(DEFAULT_COMPRESS_ABOVE),
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

impl Codec {
    /// A codec that never compresses, and reads values up to [`DEFAULT_MAX_SIZE`].
    pub fn uncompressed() -> Self {
        Codec {
            compress_above: None,
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    /// Compresses values longer than `bytes` (with the `zstd` feature; without it values are
    /// stored as they are). A value is stored compressed only if that makes it shorter.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = Some(bytes);
        self
    }

    /// The longest value stored or read, counted decompressed (at least 1). Set it to the
    /// client's `max_value_size` when you raise that.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes.max(1);
        self
    }

    /// The threshold above which values are compressed, if any.
    pub fn compresses_above(&self) -> Option<usize> {
        self.compress_above
    }

    /// The longest value stored or read.
    pub fn limit(&self) -> usize {
        self.max_size
    }

    /// The `flags` and bytes to store for `value`.
    pub fn encode(&self, value: &[u8]) -> Result<(u32, Bytes), CodecError> {
        if value.len() > self.max_size {
            return Err(CodecError::TooLarge {
                limit: self.max_size,
            });
        }
        match self.compress_above {
            Some(threshold) if cfg!(feature = "zstd") && value.len() > threshold => {
                match ops::zstd_compress(value, ZSTD_LEVEL)? {
                    Some(packed) if packed.len() < value.len() => Ok((FLAG_ZSTD, packed.into())),
                    _ => Ok((0, Bytes::copy_from_slice(value))),
                }
            }
            _ => Ok((0, Bytes::copy_from_slice(value))),
        }
    }

    /// The value stored as `stored` with `flags`, decompressed if the flags say so.
    pub fn decode(&self, flags: u32, stored: Bytes) -> Result<Bytes, CodecError> {
        let out = match flags {
            0 | FLAG_JAVA_BYTE_ARRAY => stored,
            FLAG_ZSTD => ops::zstd_decompress(flags, &stored, self.max_size)?,
            FLAG_GZIP | 0x802 => ops::gzip_decompress(flags, &stored, self.max_size)?,
            _ => return Err(CodecError::UnknownFlags { flags }),
        };
        if out.len() > self.max_size {
            return Err(CodecError::TooLarge {
                limit: self.max_size,
            });
        }
        Ok(out)
    }
}
