//! `ms`: the meta set, with its modes.

use bytes::{BufMut, BytesMut};

use super::request::{Line, MetaKey};
use crate::protocol::request::put_decimal;

/// How `ms` stores its value (the `M<mode>` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SetMode {
    /// `MS` (the default, not written): store unconditionally.
    #[default]
    Set,
    /// `ME`: store only if the key is absent ("add").
    Add,
    /// `MR`: store only if the key is present.
    Replace,
    /// `MA`: add the value after the existing one.
    Append,
    /// `MP`: add the value before the existing one.
    Prepend,
}

impl SetMode {
    fn token(self) -> Option<&'static [u8]> {
        match self {
            SetMode::Set => None,
            SetMode::Add => Some(b"E"),
            SetMode::Replace => Some(b"R"),
            SetMode::Append => Some(b"A"),
            SetMode::Prepend => Some(b"P"),
        }
    }
}

/// `ms`: store a value. Answers `HD` when stored, `NS` when the mode's condition failed, `EX`
/// when the compared CAS is out of date, `NF` when a compared item is absent.
///
/// ```
/// use bytes::BytesMut;
/// use memcached_autodiscovery_proto::protocol::meta::{MetaRequest, MetaSet, SetMode};
/// use memcached_autodiscovery_proto::protocol::Limits;
/// let mut out = BytesMut::new();
/// let set = MetaSet::new("k1", b"abc").ttl(60).client_flags(7).compare_cas(5).return_cas();
/// MetaRequest::from(set).encode(&mut out, &Limits::default())?;
/// MetaRequest::from(MetaSet::new("k1", b"!").mode(SetMode::Append))
///     .encode(&mut out, &Limits::default())?;
/// assert_eq!(&out[..], b"ms k1 3 c F7 T60 C5\r\nabc\r\nms k1 1 MA\r\n!\r\n");
/// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct MetaSet<'a> {
    pub(super) key: MetaKey<'a>,
    pub(super) value: &'a [u8],
    pub(super) mode: SetMode,
    pub(super) client_flags: Option<u32>,
    pub(super) ttl: Option<u32>,
    pub(super) compare_cas: Option<u64>,
    pub(super) new_cas: Option<u64>,
    pub(super) invalidate: bool,
    pub(super) vivify: Option<u32>,
    pub(super) return_cas: bool,
    pub(super) return_key: bool,
    pub(super) opaque: Option<&'a [u8]>,
}

impl<'a> MetaSet<'a> {
    /// A set of `value` under `key`, with no TTL (never expires) and client flags 0.
    pub fn new(key: impl Into<MetaKey<'a>>, value: &'a [u8]) -> Self {
        MetaSet {
            key: key.into(),
            value,
            mode: SetMode::Set,
            client_flags: None,
            ttl: None,
            compare_cas: None,
            new_cas: None,
            invalidate: false,
            vivify: None,
            return_cas: false,
            return_key: false,
            opaque: None,
        }
    }

    /// `M<mode>`: add, replace, append or prepend instead of set.
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }

    /// `F<flags>`: the client flags stored with the value.
    pub fn client_flags(mut self, flags: u32) -> Self {
        self.client_flags = Some(flags);
        self
    }

    /// `T<ttl>`: the TTL (memcached exptime: 0 never, up to 30 days seconds, else Unix time).
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// `C<cas>`: store only if the item's CAS is still `cas` (`EX` if not, `NF` if absent). A
    /// lease winner passes the CAS it saw with its win.
    pub fn compare_cas(mut self, cas: u64) -> Self {
        self.compare_cas = Some(cas);
        self
    }

    /// `E<cas>`: the CAS value to give the stored item. memcached 1.6.18 does not know this flag
    /// (it answers `CLIENT_ERROR invalid flag`); later versions do.
    pub fn new_cas(mut self, cas: u64) -> Self {
        self.new_cas = Some(cas);
        self
    }

    /// `I`: with [`compare_cas`](MetaSet::compare_cas), if the given CAS is older than the
    /// item's, store the value marked stale instead of failing.
    pub fn invalidate(mut self) -> Self {
        self.invalidate = true;
        self
    }

    /// `N<ttl>`: in append or prepend mode, create the item on a miss with this TTL. memcached
    /// 1.6.18 answers `NS` instead (checked live).
    pub fn vivify(mut self, ttl: u32) -> Self {
        self.vivify = Some(ttl);
        self
    }

    /// `c`: return the item's CAS value after the store.
    pub fn return_cas(mut self) -> Self {
        self.return_cas = true;
        self
    }

    /// `k`: return the key.
    pub fn return_key(mut self) -> Self {
        self.return_key = true;
        self
    }

    /// `O<token>`: an opaque token echoed in the reply (1 to 31 printable bytes, no space).
    pub fn opaque(mut self, token: &'a [u8]) -> Self {
        self.opaque = Some(token);
        self
    }

    pub(super) fn wire_len(&self) -> usize {
        self.key.wire_len() + self.value.len() + self.opaque.map_or(0, <[u8]>::len) + 112
    }

    pub(super) fn put(&self, buf: &mut BytesMut, quiet: bool) {
        buf.put_slice(b"ms ");
        self.key.put(buf);
        buf.put_u8(b' ');
        put_decimal(buf, self.value.len() as u64);
        let mut line = Line(buf);
        line.flag(self.key.is_binary(), b'b');
        line.flag(self.return_cas, b'c');
        line.flag(self.return_key, b'k');
        line.token(self.opaque, b'O');
        line.flag(quiet, b'q');
        line.token(self.mode.token(), b'M');
        line.number(self.client_flags.map(u64::from), b'F');
        line.number(self.ttl.map(u64::from), b'T');
        line.number(self.compare_cas, b'C');
        line.number(self.new_cas, b'E');
        line.flag(self.invalidate, b'I');
        line.number(self.vivify.map(u64::from), b'N');
        buf.put_slice(b"\r\n");
        buf.put_slice(self.value);
        buf.put_slice(b"\r\n");
    }
}
