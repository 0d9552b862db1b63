//! `md`: the meta delete, and invalidation.

use bytes::{BufMut, BytesMut};

use super::request::{Line, MetaKey};

/// `md`: delete an item, or with [`invalidate`](MetaDelete::invalidate) mark it stale so that one
/// caller wins its refresh (`X W`) while the others keep being served. Answers `HD`, `NF`
/// (absent) or `EX` (compared CAS out of date).
///
/// ```
/// use bytes::BytesMut;
/// use memcached_autodiscovery_proto::protocol::meta::{MetaDelete, MetaRequest};
/// use memcached_autodiscovery_proto::protocol::Limits;
/// let mut out = BytesMut::new();
/// MetaRequest::from(MetaDelete::new("k1").invalidate_with_ttl(30)).encode(&mut out, &Limits::default())?;
/// assert_eq!(&out[..], b"md k1 I T30\r\n");
/// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct MetaDelete<'a> {
    pub(super) key: MetaKey<'a>,
    pub(super) compare_cas: Option<u64>,
    pub(super) new_cas: Option<u64>,
    pub(super) invalidate: bool,
    pub(super) stale_ttl: Option<u32>,
    pub(super) return_key: bool,
    pub(super) opaque: Option<&'a [u8]>,
}

impl<'a> MetaDelete<'a> {
    /// A delete of `key`.
    pub fn new(key: impl Into<MetaKey<'a>>) -> Self {
        MetaDelete {
            key: key.into(),
            compare_cas: None,
            new_cas: None,
            invalidate: false,
            stale_ttl: None,
            return_key: false,
            opaque: None,
        }
    }

    /// `C<cas>`: delete only if the item's CAS is still `cas`.
    pub fn compare_cas(mut self, cas: u64) -> Self {
        self.compare_cas = Some(cas);
        self
    }

    /// `E<cas>`: the CAS value to give the item when it is invalidated. memcached 1.6.18 does
    /// not know this flag (`CLIENT_ERROR invalid or duplicate flag`).
    pub fn new_cas(mut self, cas: u64) -> Self {
        self.new_cas = Some(cas);
        self
    }

    /// `I`: mark the item stale instead of deleting it.
    pub fn invalidate(mut self) -> Self {
        self.invalidate = true;
        self
    }

    /// `I T<ttl>`: mark the item stale and give it a new TTL (memcached exptime). memcached
    /// takes `T` only together with `I` (alone, `md` deletes).
    pub fn invalidate_with_ttl(mut self, ttl: u32) -> Self {
        self.invalidate = true;
        self.stale_ttl = Some(ttl);
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
        self.key.wire_len() + self.opaque.map_or(0, <[u8]>::len) + 64
    }

    pub(super) fn put(&self, buf: &mut BytesMut, quiet: bool) {
        buf.put_slice(b"md ");
        self.key.put(buf);
        let mut line = Line(buf);
        line.flag(self.key.is_binary(), b'b');
        line.flag(self.return_key, b'k');
        line.token(self.opaque, b'O');
        line.flag(quiet, b'q');
        line.number(self.compare_cas, b'C');
        line.number(self.new_cas, b'E');
        line.flag(self.invalidate, b'I');
        line.number(self.stale_ttl.map(u64::from), b'T');
        buf.put_slice(b"\r\n");
    }
}
