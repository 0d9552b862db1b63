//! Meta requests and their encoding: the key, the request of any command, batches, and the
//! line writer the commands share.
//!
//! Each command has its own builder type (in `get.rs`, `set.rs`, `delete.rs`, `arithmetic.rs`);
//! every method sets one flag, so a flag cannot be sent twice (memcached answers
//! `CLIENT_ERROR duplicate flag`) and a command cannot be given a flag it does not take. [`MetaRequest::encode`] validates first and only then appends the request to
//! the caller's buffer: a refused request leaves the buffer as it was.

use bytes::{BufMut, BytesMut};

use super::{base64, MAX_BINARY_KEY_LEN, MAX_OPAQUE_LEN};
use super::{MetaArithmetic, MetaDelete, MetaGet, MetaSet, SetMode};
use crate::error::{KeyError, ProtocolError};
use crate::protocol::request::put_decimal;
use crate::protocol::{validate_key, Expect, Limits};

/// The key of a meta request.
///
/// Text keys follow the text protocol's rules (1 to 250 bytes, no space, control byte or DEL).
/// Binary keys may hold any 1 to 186 bytes; they are sent in base64 with the `b` flag, and
/// memcached stores the decoded bytes.
///
/// ```
/// use memcached_autodiscovery_proto::protocol::meta::MetaKey;
/// assert_eq!(MetaKey::from("user:42"), MetaKey::Text(b"user:42"));
/// let binary = MetaKey::Binary(&[0, 159, 146, 150]);
/// assert!(binary.validate().is_ok());
/// assert!(MetaKey::Text(b"has space").validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey<'a> {
    /// A key sent as it is.
    Text(&'a [u8]),
    /// A key of any bytes, sent base64-encoded with the `b` flag.
    Binary(&'a [u8]),
}

impl<'a> From<&'a [u8]> for MetaKey<'a> {
    fn from(key: &'a [u8]) -> Self {
        MetaKey::Text(key)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for MetaKey<'a> {
    fn from(key: &'a [u8; N]) -> Self {
        MetaKey::Text(key)
    }
}

impl<'a> From<&'a str> for MetaKey<'a> {
    fn from(key: &'a str) -> Self {
        MetaKey::Text(key.as_bytes())
    }
}

impl<'a> MetaKey<'a> {
    /// The key's bytes (decoded: a binary key's raw bytes, not its base64 form).
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            MetaKey::Text(k) | MetaKey::Binary(k) => k,
        }
    }

    /// Checks that the key can be sent.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match *self {
            MetaKey::Text(key) => validate_key(key),
            MetaKey::Binary([]) => Err(ProtocolError::InvalidKey(KeyError::Empty)),
            MetaKey::Binary(key) if key.len() > MAX_BINARY_KEY_LEN => {
                Err(ProtocolError::InvalidKey(KeyError::BinaryTooLong {
                    len: key.len(),
                }))
            }
            MetaKey::Binary(_) => Ok(()),
        }
    }

    pub(super) fn wire_len(&self) -> usize {
        match *self {
            MetaKey::Text(k) => k.len(),
            MetaKey::Binary(k) => base64::encoded_len(k.len()) + 2,
        }
    }

    /// Writes the key (base64 for a binary key; its ` b` flag is written with the flags).
    pub(super) fn put(&self, buf: &mut BytesMut) {
        match *self {
            MetaKey::Text(key) => buf.put_slice(key),
            MetaKey::Binary(key) => base64::encode(key, buf),
        }
    }

    pub(super) fn is_binary(&self) -> bool {
        matches!(self, MetaKey::Binary(_))
    }
}

/// Checks an opaque token: 1 to 31 printable ASCII bytes without spaces.
fn validate_opaque(opaque: Option<&[u8]>) -> Result<(), ProtocolError> {
    match opaque {
        Some(token)
            if token.is_empty()
                || token.len() > MAX_OPAQUE_LEN
                || !token.iter().all(|b| b.is_ascii_graphic()) =>
        {
            Err(ProtocolError::InvalidOpaque { len: token.len() })
        }
        _ => Ok(()),
    }
}

/// Appends the flags of one request line.
pub(super) struct Line<'b>(pub(super) &'b mut BytesMut);

impl Line<'_> {
    pub(super) fn flag(&mut self, on: bool, letter: u8) {
        if on {
            self.0.put_slice(&[b' ', letter]);
        }
    }

    pub(super) fn number(&mut self, value: Option<u64>, letter: u8) {
        if let Some(n) = value {
            self.0.put_slice(&[b' ', letter]);
            put_decimal(self.0, n);
        }
    }

    pub(super) fn token(&mut self, value: Option<&[u8]>, letter: u8) {
        if let Some(token) = value {
            self.0.put_slice(&[b' ', letter]);
            self.0.put_slice(token);
        }
    }
}

/// One meta request: a get, set, delete or arithmetic. (The no-op `mn` is not a request of its
/// own: it closes a batch, see [`encode_batch`]; an empty batch is a lone `mn`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetaRequest<'a> {
    /// `mg`.
    Get(MetaGet<'a>),
    /// `ms`.
    Set(MetaSet<'a>),
    /// `md`.
    Delete(MetaDelete<'a>),
    /// `ma`.
    Arithmetic(MetaArithmetic<'a>),
}

impl<'a> From<MetaGet<'a>> for MetaRequest<'a> {
    fn from(r: MetaGet<'a>) -> Self {
        MetaRequest::Get(r)
    }
}

impl<'a> From<MetaSet<'a>> for MetaRequest<'a> {
    fn from(r: MetaSet<'a>) -> Self {
        MetaRequest::Set(r)
    }
}

impl<'a> From<MetaDelete<'a>> for MetaRequest<'a> {
    fn from(r: MetaDelete<'a>) -> Self {
        MetaRequest::Delete(r)
    }
}

impl<'a> From<MetaArithmetic<'a>> for MetaRequest<'a> {
    fn from(r: MetaArithmetic<'a>) -> Self {
        MetaRequest::Arithmetic(r)
    }
}

impl<'a> MetaRequest<'a> {
    /// The request's key (to pick the node it goes to).
    pub fn key(&self) -> MetaKey<'a> {
        match self {
            MetaRequest::Get(r) => r.key,
            MetaRequest::Set(r) => r.key,
            MetaRequest::Delete(r) => r.key,
            MetaRequest::Arithmetic(r) => r.key,
        }
    }

    /// The kind of reply the request gets on its own: one meta reply.
    pub fn expect(&self) -> Expect {
        Expect::Meta
    }

    /// Whether sending the request twice has the effect of sending it once: a get that hands
    /// out no win (no `N`, no `R`), and an unconditional set (mode set, no `C`). Wins, deletes,
    /// conditional stores and counters are not.
    pub fn is_idempotent(&self) -> bool {
        match self {
            MetaRequest::Get(r) => r.vivify.is_none() && r.recache.is_none(),
            MetaRequest::Set(r) => r.mode == SetMode::Set && r.compare_cas.is_none(),
            MetaRequest::Delete(_) | MetaRequest::Arithmetic(_) => false,
        }
    }

    /// Checks the request without encoding it: the key, the opaque token, the value size.
    pub fn validate(&self, limits: &Limits) -> Result<(), ProtocolError> {
        self.key().validate()?;
        let opaque = match self {
            MetaRequest::Get(r) => r.opaque,
            MetaRequest::Set(r) => r.opaque,
            MetaRequest::Delete(r) => r.opaque,
            MetaRequest::Arithmetic(r) => r.opaque,
        };
        validate_opaque(opaque)?;
        if let MetaRequest::Set(r) = self {
            if r.value.len() > limits.max_value_size {
                return Err(ProtocolError::ValueTooLarge {
                    len: r.value.len(),
                    max: limits.max_value_size,
                });
            }
        }
        Ok(())
    }

    /// Validates the request, then appends it to `buf` and returns the reply to expect
    /// ([`Expect::Meta`]). On error `buf` is left unchanged.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memcached_autodiscovery_proto::protocol::meta::{MetaGet, MetaRequest};
    /// use memcached_autodiscovery_proto::protocol::{Expect, Limits};
    /// let mut out = BytesMut::new();
    /// let request = MetaRequest::from(MetaGet::new("k").value().opaque(b"7"));
    /// assert_eq!(request.encode(&mut out, &Limits::default())?, Expect::Meta);
    /// assert_eq!(&out[..], b"mg k v O7\r\n");
    /// // Refused: nothing is written.
    /// assert!(MetaRequest::from(MetaGet::new("a b")).encode(&mut out, &Limits::default()).is_err());
    /// assert_eq!(&out[..], b"mg k v O7\r\n");
    /// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
    /// ```
    pub fn encode(&self, buf: &mut BytesMut, limits: &Limits) -> Result<Expect, ProtocolError> {
        self.validate(limits)?;
        buf.reserve(self.wire_len());
        self.put(buf, false);
        Ok(Expect::Meta)
    }

    fn wire_len(&self) -> usize {
        match self {
            MetaRequest::Get(r) => r.wire_len(),
            MetaRequest::Set(r) => r.wire_len(),
            MetaRequest::Delete(r) => r.wire_len(),
            MetaRequest::Arithmetic(r) => r.wire_len(),
        }
    }

    fn put(&self, buf: &mut BytesMut, quiet: bool) {
        match self {
            MetaRequest::Get(r) => r.put(buf, quiet),
            MetaRequest::Set(r) => r.put(buf, quiet),
            MetaRequest::Delete(r) => r.put(buf, quiet),
            MetaRequest::Arithmetic(r) => r.put(buf, quiet),
        }
    }
}

/// Appends `requests`, each with the quiet flag `q`, then `mn`, and returns the reply to expect:
/// [`Expect::MetaBatch`], zero or more replies (those `q` does not silence: hits, `NS`, `EX`,
/// `NF`, errors) and then `MN`. Every request is validated before anything is written; on error
/// `buf` is left unchanged. An empty batch is a lone `mn` (a ping).
///
/// A quiet batch does not say which reply answers which request: ask for the key
/// ([`MetaGet::return_key`]) or pass an opaque token.
///
/// ```
/// use bytes::BytesMut;
/// use memcached_autodiscovery_proto::protocol::meta::{encode_batch, MetaGet, MetaRequest};
/// use memcached_autodiscovery_proto::protocol::{decode, Expect, Limits, Response};
/// let limits = Limits::default();
/// let mut out = BytesMut::new();
/// let gets = [
///     MetaRequest::from(MetaGet::new("k1").value().return_key()),
///     MetaRequest::from(MetaGet::new("k2").value().return_key()),
/// ];
/// let expect = encode_batch(&gets, &mut out, &limits)?;
/// assert_eq!(expect, Expect::MetaBatch { max: 2 });
/// assert_eq!(&out[..], b"mg k1 v k q\r\nmg k2 v k q\r\nmn\r\n");
///
/// // k1 is a miss (silent), k2 a hit.
/// let mut input = BytesMut::from(&b"VA 2 kk2\r\nhi\r\nMN\r\n"[..]);
/// let Some((Response::MetaBatch(replies), _)) = decode(&mut input, expect, &limits)? else { panic!() };
/// let hit = replies[0].as_ref().unwrap();
/// assert_eq!((hit.flags.key.as_deref(), hit.value.as_deref()), (Some(&b"k2"[..]), Some(&b"hi"[..])));
/// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
/// ```
pub fn encode_batch(
    requests: &[MetaRequest<'_>],
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Expect, ProtocolError> {
    let mut len = 4;
    for request in requests {
        request.validate(limits)?;
        len += request.wire_len();
    }
    buf.reserve(len);
    for request in requests {
        request.put(buf, true);
    }
    buf.put_slice(b"mn\r\n");
    Ok(Expect::MetaBatch {
        max: requests.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::meta::ArithMode;

    fn enc(r: impl Into<MetaRequest<'static>>) -> Vec<u8> {
        let mut buf = BytesMut::new();
        r.into().encode(&mut buf, &Limits::default()).unwrap();
        buf.to_vec()
    }

    #[test]
    fn every_flag_has_its_letter() {
        let all_get = MetaGet::new("k")
            .value()
            .cas()
            .client_flags()
            .hit_before()
            .return_key()
            .last_access()
            .size()
            .ttl()
            .opaque(b"op")
            .no_lru_bump()
            .new_cas(9)
            .vivify(30)
            .recache(20)
            .touch(10);
        assert_eq!(
            enc(all_get),
            b"mg k E9 N30 R20 T10 v c f h k l s t Oop u\r\n"
        );
        let all_set = MetaSet::new(MetaKey::Binary(b"\0"), b"xy")
            .mode(SetMode::Prepend)
            .client_flags(u32::MAX)
            .ttl(0)
            .compare_cas(u64::MAX)
            .new_cas(1)
            .invalidate()
            .vivify(5)
            .return_cas()
            .return_key()
            .opaque(b"~");
        assert_eq!(
            enc(all_set),
            &b"ms AA== 2 b c k O~ MP F4294967295 T0 C18446744073709551615 E1 I N5\r\nxy\r\n"[..]
        );
        let all_delete = MetaDelete::new("k")
            .compare_cas(3)
            .new_cas(4)
            .invalidate_with_ttl(30)
            .return_key()
            .opaque(b"1");
        assert_eq!(enc(all_delete), b"md k k O1 C3 E4 I T30\r\n");
        let all_arith = MetaArithmetic::new("n")
            .mode(ArithMode::Decr)
            .delta(2)
            .create_on_miss(60, 7)
            .ttl(90)
            .compare_cas(5)
            .new_cas(6)
            .return_value()
            .return_cas()
            .return_ttl()
            .return_key()
            .opaque(b"z");
        assert_eq!(
            enc(all_arith),
            b"ma n v c t k Oz MD D2 N60 J7 T90 C5 E6\r\n"
        );
    }

    #[test]
    fn set_modes_and_defaults() {
        for (mode, wire) in [
            (SetMode::Set, &b"ms k 1\r\nv\r\n"[..]),
            (SetMode::Add, b"ms k 1 ME\r\nv\r\n"),
            (SetMode::Replace, b"ms k 1 MR\r\nv\r\n"),
            (SetMode::Append, b"ms k 1 MA\r\nv\r\n"),
            (SetMode::Prepend, b"ms k 1 MP\r\nv\r\n"),
        ] {
            assert_eq!(enc(MetaSet::new("k", b"v").mode(mode)), wire);
        }
        assert_eq!(enc(MetaSet::new("k", b"")), b"ms k 0\r\n\r\n");
        assert_eq!(enc(MetaArithmetic::new("n")), b"ma n\r\n");
        assert_eq!(enc(MetaDelete::new("k").invalidate()), b"md k I\r\n");
        assert_eq!(enc(MetaGet::new("k")), b"mg k\r\n");
    }

    #[test]
    fn binary_keys_are_base64_with_b() {
        let key: Vec<u8> = (0..=255).collect();
        let key: &'static [u8] = Box::leak(key[..MAX_BINARY_KEY_LEN].to_vec().into_boxed_slice());
        let wire = enc(MetaGet::new(MetaKey::Binary(key)).value());
        let line = &wire[3..wire.len() - 2];
        let (coded, flags) = line.split_at(line.iter().position(|&b| b == b' ').unwrap());
        assert_eq!(coded.len(), 248);
        assert_eq!(base64::decode(coded).as_deref(), Some(key));
        assert_eq!(flags, b" b v");
    }

    #[test]
    fn refused_requests_leave_the_buffer_untouched() {
        let limits = Limits::with_max_value_size(4);
        let too_long = [0u8; MAX_BINARY_KEY_LEN + 1];
        let bad: Vec<MetaRequest<'_>> = vec![
            MetaGet::new("").into(),
            MetaGet::new(&[b'x'; 251]).into(),
            MetaGet::new("a b").into(),
            MetaGet::new("a\r\nmn").into(),
            MetaGet::new(MetaKey::Binary(b"")).into(),
            MetaGet::new(MetaKey::Binary(&too_long)).into(),
            MetaGet::new("k").opaque(b"").into(),
            MetaGet::new("k").opaque(&[b'7'; 32]).into(),
            MetaGet::new("k").opaque(b"a b").into(),
            MetaGet::new("k").opaque(b"a\r\n").into(),
            MetaGet::new("k").opaque("é".as_bytes()).into(),
            MetaSet::new("k", b"12345").into(),
            MetaDelete::new("k\t").into(),
            MetaArithmetic::new("k").opaque(b"\x7f").into(),
        ];
        let mut buf = BytesMut::from(&b"mg ok\r\n"[..]);
        for request in &bad {
            assert!(request.encode(&mut buf, &limits).is_err(), "{request:?}");
            let batch = [MetaGet::new("fine").into(), *request];
            assert!(encode_batch(&batch, &mut buf, &limits).is_err());
        }
        assert_eq!(&buf[..], b"mg ok\r\n");
        // The limits themselves are accepted.
        let ok: Vec<MetaRequest<'_>> = vec![
            MetaGet::new(&[b'x'; 250]).opaque(&[b'~'; 31]).into(),
            MetaGet::new(MetaKey::Binary(&[0xff; MAX_BINARY_KEY_LEN])).into(),
            MetaSet::new("k", b"1234").into(),
        ];
        for request in &ok {
            request.encode(&mut buf, &limits).unwrap();
        }
    }

    #[test]
    fn batches_are_quiet_and_closed_by_mn() {
        let mut buf = BytesMut::new();
        let batch: [MetaRequest<'_>; 4] = [
            MetaGet::new("a").value().return_key().into(),
            MetaSet::new("b", b"x").into(),
            MetaDelete::new("c").into(),
            MetaArithmetic::new("d").into(),
        ];
        let expect = encode_batch(&batch, &mut buf, &Limits::default()).unwrap();
        assert_eq!(expect, Expect::MetaBatch { max: 4 });
        assert_eq!(
            &buf[..],
            b"mg a v k q\r\nms b 1 q\r\nx\r\nmd c q\r\nma d q\r\nmn\r\n"
        );
        buf.clear();
        assert_eq!(
            encode_batch(&[], &mut buf, &Limits::default()).unwrap(),
            Expect::MetaBatch { max: 0 }
        );
        assert_eq!(&buf[..], b"mn\r\n");
    }

    #[test]
    fn idempotence() {
        let yes: [MetaRequest<'_>; 3] = [
            MetaGet::new("k").value().touch(5).into(),
            MetaSet::new("k", b"v").into(),
            MetaSet::new("k", b"v").ttl(9).into(),
        ];
        let no: [MetaRequest<'_>; 7] = [
            MetaGet::new("k").vivify(5).into(),
            MetaGet::new("k").recache(5).into(),
            MetaSet::new("k", b"v").mode(SetMode::Add).into(),
            MetaSet::new("k", b"v").mode(SetMode::Append).into(),
            MetaSet::new("k", b"v").compare_cas(1).into(),
            MetaDelete::new("k").into(),
            MetaArithmetic::new("k").into(),
        ];
        assert!(yes.iter().all(MetaRequest::is_idempotent));
        assert!(!no.iter().any(MetaRequest::is_idempotent));
    }
}
