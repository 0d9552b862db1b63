//! `mg`: the meta get.

use bytes::{BufMut, BytesMut};

use super::request::{Line, MetaKey};
use super::{MetaReply, MetaStatus};
use crate::error::{excerpt, ProtocolError};

/// What a reply naming another key was expected to name: the same words as the text `get`'s
/// check, so that both paths report such a reply alike.
const REQUESTED_KEY: &str = "the requested key";

/// `mg`: read an item, and optionally its metadata, a lease, or a TTL update.
///
/// Without [`value`](MetaGet::value) a hit is `HD` (with the flags asked for) and carries no
/// data. A miss is `EN`.
///
/// ```
/// use bytes::BytesMut;
/// use memcached_autodiscovery_proto::protocol::meta::{MetaGet, MetaKey, MetaRequest};
/// use memcached_autodiscovery_proto::protocol::Limits;
/// let mut out = BytesMut::new();
/// let get = MetaGet::new("k1").value().cas().ttl().recache(90).return_key().opaque(b"55");
/// MetaRequest::from(get).encode(&mut out, &Limits::default())?;
/// MetaRequest::from(MetaGet::new(MetaKey::Binary(b"missing")).value().return_key())
///     .encode(&mut out, &Limits::default())?;
/// assert_eq!(&out[..], b"mg k1 R90 v c k t O55\r\nmg bWlzc2luZw== b v k\r\n");
/// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct MetaGet<'a> {
    pub(super) key: MetaKey<'a>,
    pub(super) value: bool,
    pub(super) cas: bool,
    pub(super) client_flags: bool,
    pub(super) hit_before: bool,
    pub(super) return_key: bool,
    pub(super) last_access: bool,
    pub(super) size: bool,
    pub(super) ttl: bool,
    pub(super) opaque: Option<&'a [u8]>,
    pub(super) no_bump: bool,
    pub(super) new_cas: Option<u64>,
    pub(super) vivify: Option<u32>,
    pub(super) recache: Option<u32>,
    pub(super) touch: Option<u32>,
}

impl<'a> MetaGet<'a> {
    /// A get of `key` that asks for nothing yet: a hit answers `HD`, a miss `EN`.
    pub fn new(key: impl Into<MetaKey<'a>>) -> Self {
        MetaGet {
            key: key.into(),
            value: false,
            cas: false,
            client_flags: false,
            hit_before: false,
            return_key: false,
            last_access: false,
            size: false,
            ttl: false,
            opaque: None,
            no_bump: false,
            new_cas: None,
            vivify: None,
            recache: None,
            touch: None,
        }
    }

    /// `v`: return the value (a hit is then `VA <len>` and a data block).
    pub fn value(mut self) -> Self {
        self.value = true;
        self
    }

    /// `c`: return the item's CAS value.
    pub fn cas(mut self) -> Self {
        self.cas = true;
        self
    }

    /// `f`: return the client flags.
    pub fn client_flags(mut self) -> Self {
        self.client_flags = true;
        self
    }

    /// `h`: return whether the item was read before (`h0` / `h1`).
    pub fn hit_before(mut self) -> Self {
        self.hit_before = true;
        self
    }

    /// `k`: return the key (base64 for a binary key, which the decoder decodes).
    pub fn return_key(mut self) -> Self {
        self.return_key = true;
        self
    }

    /// `l`: return the seconds since the item was last read.
    pub fn last_access(mut self) -> Self {
        self.last_access = true;
        self
    }

    /// `s`: return the item's size.
    pub fn size(mut self) -> Self {
        self.size = true;
        self
    }

    /// `t`: return the remaining TTL ([`Ttl::Never`](super::Ttl::Never) for no expiry).
    pub fn ttl(mut self) -> Self {
        self.ttl = true;
        self
    }

    /// `O<token>`: an opaque token (1 to 31 printable bytes, no space) echoed in the reply, to
    /// tie replies to requests.
    pub fn opaque(mut self, token: &'a [u8]) -> Self {
        self.opaque = Some(token);
        self
    }

    /// `u`: do not bump the item in the LRU.
    pub fn no_lru_bump(mut self) -> Self {
        self.no_bump = true;
        self
    }

    /// `E<cas>`: the CAS value to give the item if this request modifies it. memcached 1.6.18
    /// does not know this flag (it answers `CLIENT_ERROR invalid flag`); later versions do.
    pub fn new_cas(mut self, cas: u64) -> Self {
        self.new_cas = Some(cas);
        self
    }

    /// `N<ttl>`: on a miss, create an empty placeholder that lives `ttl` (memcached exptime) and
    /// hand this caller the win (`W`); later callers see `Z` until the value is stored. The
    /// winner's `t` reports the placeholder's TTL (the flag is written before the return flags).
    pub fn vivify(mut self, ttl: u32) -> Self {
        self.vivify = Some(ttl);
        self
    }

    /// `R<seconds>`: if the item's remaining TTL is below `seconds`, hand one caller the win
    /// (`W`) to refresh it while everyone keeps being served the current value.
    pub fn recache(mut self, seconds: u32) -> Self {
        self.recache = Some(seconds);
        self
    }

    /// `T<ttl>`: set a new TTL (memcached exptime) on a hit; `t` then reports the new TTL, and
    /// [`recache`](MetaGet::recache) compares the TTL from before it.
    pub fn touch(mut self, ttl: u32) -> Self {
        self.touch = Some(ttl);
        self
    }

    /// Checks that `reply`, the answer to this request, is about this request's key. A key the
    /// reply names (`k`) must be this one, and when the request asked for it
    /// ([`return_key`](MetaGet::return_key)), a hit (`VA`, `HD`) must name one: a node cannot
    /// then hand another key's item to this key's caller unseen. A reply naming another key, or
    /// none, is [`ProtocolError::UnexpectedReply`] expecting `"the requested key"`, as a text
    /// `get` answered with another key's `VALUE` is.
    ///
    /// The key's bytes are compared, not its form: memcached 1.6.18 names the key as the item
    /// holds it, in base64 with `b` for an item stored under a binary key (which the decoder
    /// decodes) and as it is for the others, a placeholder created by `N` for a binary key
    /// included, whichever form the request used.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use memcached_autodiscovery_proto::protocol::meta::{MetaGet, MetaReply, MetaStatus, ReturnFlags};
    /// let get = MetaGet::new("user:42").value().return_key();
    /// let mut flags = ReturnFlags::default();
    /// flags.key = Some(Bytes::from_static(b"user:42"));
    /// let value = Some(Bytes::from_static(b"v"));
    /// assert!(get.check_reply(&MetaReply::new(MetaStatus::Value, flags.clone(), value.clone())).is_ok());
    /// flags.key = Some(Bytes::from_static(b"user:43"));
    /// assert!(get.check_reply(&MetaReply::new(MetaStatus::Value, flags, value)).is_err());
    /// ```
    pub fn check_reply(&self, reply: &MetaReply) -> Result<(), ProtocolError> {
        let hit = matches!(reply.status, MetaStatus::Value | MetaStatus::Success);
        match reply.flags.key.as_deref() {
            Some(key) if key == self.key.bytes() => Ok(()),
            None if !(hit && self.return_key) => Ok(()),
            named => Err(ProtocolError::UnexpectedReply {
                expected: REQUESTED_KEY,
                line: named
                    .map_or_else(|| format!("{} without a key", reply.status.code()), excerpt),
            }),
        }
    }

    pub(super) fn wire_len(&self) -> usize {
        self.key.wire_len() + self.opaque.map_or(0, <[u8]>::len) + 96
    }

    pub(super) fn put(&self, buf: &mut BytesMut, quiet: bool) {
        buf.put_slice(b"mg ");
        self.key.put(buf);
        let mut line = Line(buf);
        line.flag(self.key.is_binary(), b'b');
        // memcached reads the flags in order, and a return flag reports the item as it is at
        // that point: the flags that change the item go first, so that `t` and `c` describe
        // it after this request (a placeholder's TTL, a touched TTL). `R` is weighed before `T`
        // changes the TTL.
        line.number(self.new_cas, b'E');
        line.number(self.vivify.map(u64::from), b'N');
        line.number(self.recache.map(u64::from), b'R');
        line.number(self.touch.map(u64::from), b'T');
        line.flag(self.value, b'v');
        line.flag(self.cas, b'c');
        line.flag(self.client_flags, b'f');
        line.flag(self.hit_before, b'h');
        line.flag(self.return_key, b'k');
        line.flag(self.last_access, b'l');
        line.flag(self.size, b's');
        line.flag(self.ttl, b't');
        line.token(self.opaque, b'O');
        line.flag(quiet, b'q');
        line.flag(self.no_bump, b'u');
        buf.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, Expect, Limits, Response};

    /// The reply `wire` decoded, as the connection would hand it over.
    fn reply(wire: &[u8]) -> MetaReply {
        let mut buf = BytesMut::from(wire);
        match decode(&mut buf, Expect::Meta, &Limits::default()) {
            Ok(Some((Response::Meta(reply), _))) => *reply,
            other => panic!("{wire:?} decoded as {other:?}"),
        }
    }

    fn refused(get: &MetaGet<'_>, wire: &[u8]) -> bool {
        matches!(
            get.check_reply(&reply(wire)),
            Err(ProtocolError::UnexpectedReply {
                expected: REQUESTED_KEY,
                ..
            })
        )
    }

    #[test]
    fn replies_for_the_key_asked_for_pass() {
        let get = MetaGet::new("k1").value().return_key();
        assert!(!refused(&get, b"VA 1 c3 kk1\r\nv\r\n"));
        assert!(!refused(&get, b"VA 0 c1 t30 kk1 W\r\n\r\n"));
        assert!(!refused(&get, b"EN kk1\r\n"));
        // A miss need not name its key: nothing of it is served.
        assert!(!refused(&get, b"EN\r\n"));
        // Without `k` asked for, a hit that names no key cannot be checked.
        assert!(!refused(&MetaGet::new("k1").cas(), b"HD c3\r\n"));
    }

    #[test]
    fn replies_for_another_key_or_none_are_refused() {
        let get = MetaGet::new("k1").value().return_key();
        assert!(refused(&get, b"VA 5 c3 kother\r\nwrong\r\n"));
        assert!(refused(&get, b"VA 1 c3\r\nv\r\n"));
        assert!(refused(
            &MetaGet::new("k1").cas().return_key(),
            b"HD c3\r\n"
        ));
        assert!(refused(&get, b"EN kk2\r\n"));
        // A key the reply names is checked even when it was not asked for.
        assert!(refused(&MetaGet::new("k1").value(), b"VA 1 kk2\r\nv\r\n"));
        // A prefix is another key.
        assert!(refused(&get, b"VA 1 kk\r\nv\r\n"));
    }

    #[test]
    fn base64_keys_are_compared_by_their_bytes() {
        // memcached 1.6.18's replies: an item stored under the binary key `bin:2` is named in
        // base64 whichever form the request used; a placeholder created for a binary key and an
        // item stored under a text key are named as they are.
        let binary = MetaGet::new(MetaKey::Binary(b"bin:2")).value().return_key();
        let text = MetaGet::new("bin:2").value().return_key();
        for get in [&binary, &text] {
            assert!(!refused(get, b"VA 2 kYmluOjI= b\r\nhi\r\n"));
            assert!(!refused(get, b"VA 0 c9 t30 kbin:2 W\r\n\r\n"));
            // `bin:3` in base64, and the base64 form taken for the key itself.
            assert!(refused(get, b"VA 2 kYmluOjM= b\r\nhi\r\n"));
            assert!(refused(get, b"VA 2 kYmluOjI=\r\nhi\r\n"));
        }
    }
}
