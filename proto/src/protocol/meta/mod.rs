//! The memcached meta protocol (`mg`, `ms`, `md`, `ma`, `mn`), pure: typed requests encoded into
//! a caller's buffer, replies decoded from a stream buffer through the crate's one
//! [`decode`](crate::protocol::decode).
//!
//! Meta commands share one line format: a two-letter command, the key, then single-letter flags,
//! some carrying a token (`T30`, `O55`). Replies are `VA <len> <flags>` followed by a data block,
//! or a status with flags: `HD` (success), `EN` (miss), `NF` (not found), `NS` (not stored),
//! `EX` (exists: CAS mismatch), and `MN`, the answer to the no-op that closes a batch of quiet
//! requests. The return flags come back typed in [`ReturnFlags`]: CAS, TTL, client flags, key,
//! opaque, size, and the lease flags `W` (this caller won), `X` (stale) and `Z` (a win was already
//! handed out).
//!
//! Requests are values built with one type per command ([`MetaGet`], [`MetaSet`], [`MetaDelete`],
//! [`MetaArithmetic`]), gathered in [`MetaRequest`]. Each flag is a builder method, so a flag is
//! sent at most once and only on a command that takes it. Tokens and keys are checked when the
//! request is encoded, before anything is written.
//!
//! The pipeline matches one frame with one reply, so the quiet flag `q` is not a per-request
//! option: a request on its own always gets exactly one reply ([`Expect::Meta`]), and quiet
//! requests only go out through [`encode_batch`], which closes them with `mn`
//! ([`Expect::MetaBatch`]).
//!
//! [`Expect::Meta`]: crate::protocol::Expect::Meta
//! [`Expect::MetaBatch`]: crate::protocol::Expect::MetaBatch
//!
//! A lease (the first caller to miss loads the value, the others wait):
//!
//! ```
//! use bytes::BytesMut;
//! use memcached_autodiscovery_proto::protocol::meta::{MetaGet, MetaRequest, MetaStatus};
//! use memcached_autodiscovery_proto::protocol::{decode, Limits, Response};
//!
//! let limits = Limits::default();
//! let mut out = BytesMut::new();
//! let expect = MetaRequest::from(MetaGet::new("user:42").value().cas().ttl().vivify(30))
//!     .encode(&mut out, &limits)?;
//! assert_eq!(&out[..], b"mg user:42 N30 v c t\r\n");
//!
//! // memcached's answer to the first caller on a miss: an empty placeholder, and the win.
//! let mut input = BytesMut::from(&b"VA 0 c1 t30 W\r\n\r\n"[..]);
//! let Some((Response::Meta(reply), _)) = decode(&mut input, expect, &limits)? else { panic!() };
//! assert_eq!(reply.status, MetaStatus::Value);
//! assert!(reply.flags.win && !reply.flags.win_taken);
//! assert_eq!(reply.flags.cas, Some(1));
//! # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
//! ```
//!
//! Facts about the wire format were checked against memcached 1.6.18; where that server differs
//! from the protocol's documentation (the `E` flag, `ms` auto-vivify), the method says so. That
//! server reads a request's flags in order, and a return flag reports the item as it is when the
//! flag is read: `mg k t N30` gives the winner `t-1` (before the placeholder exists), `mg k N30 t`
//! gives `t30`. The encoder writes the flags that change the item first.

mod arithmetic;
pub mod base64;
mod delete;
mod get;
mod request;
mod response;
mod set;

pub use arithmetic::{ArithMode, MetaArithmetic};
pub use delete::MetaDelete;
pub use get::MetaGet;
pub use request::{encode_batch, MetaKey, MetaRequest};
pub use response::{MetaReply, MetaStatus, ReturnFlags, Ttl};
pub use set::{MetaSet, SetMode};

pub(crate) use response::{decode_one, scan_batch, MetaShape};

/// The longest binary key: its base64 form (`4 * ceil(n / 3)` bytes) must fit memcached's
/// 250-byte key limit, and 186 bytes encode to 248 (187 would take 252, which memcached refuses).
pub const MAX_BINARY_KEY_LEN: usize = 186;

/// The longest opaque token (`O`) memcached accepts: its limit of 32 bytes counts the letter `O`
/// (memcached 1.6.18 answers `CLIENT_ERROR opaque token too long` to 32 bytes after the `O`).
pub const MAX_OPAQUE_LEN: usize = 31;
