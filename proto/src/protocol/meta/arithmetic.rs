//! `ma`: the meta arithmetic (counters).

use bytes::{BufMut, BytesMut};

use super::request::{Line, MetaKey};

/// Which way `ma` counts (the `M<mode>` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArithMode {
    /// Add the delta (the default, not written; wraps at 2^64).
    #[default]
    Incr,
    /// `MD`: subtract the delta (stops at 0).
    Decr,
}

/// `ma`: add to or subtract from a decimal counter. Answers `HD` (or `VA` with the new value
/// when [`return_value`](MetaArithmetic::return_value) is set), `NF` when absent (unless
/// [`create_on_miss`](MetaArithmetic::create_on_miss)), `EX` when a compared CAS is out of date.
///
/// ```
/// use bytes::BytesMut;
/// use memcached_autodiscovery_proto::protocol::meta::{ArithMode, MetaArithmetic, MetaRequest};
/// use memcached_autodiscovery_proto::protocol::Limits;
/// let mut out = BytesMut::new();
/// let count = MetaArithmetic::new("hits").create_on_miss(0, 13).return_value();
/// MetaRequest::from(count).encode(&mut out, &Limits::default())?;
/// let down = MetaArithmetic::new("hits").mode(ArithMode::Decr).delta(5).return_value();
/// MetaRequest::from(down).encode(&mut out, &Limits::default())?;
/// assert_eq!(&out[..], b"ma hits v N0 J13\r\nma hits v MD D5\r\n");
/// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct MetaArithmetic<'a> {
    pub(super) key: MetaKey<'a>,
    pub(super) mode: ArithMode,
    pub(super) delta: Option<u64>,
    pub(super) create: Option<(u32, u64)>,
    pub(super) ttl: Option<u32>,
    pub(super) compare_cas: Option<u64>,
    pub(super) new_cas: Option<u64>,
    pub(super) return_value: bool,
    pub(super) return_cas: bool,
    pub(super) return_ttl: bool,
    pub(super) return_key: bool,
    pub(super) opaque: Option<&'a [u8]>,
}

impl<'a> MetaArithmetic<'a> {
    /// An increment of `key` by 1.
    pub fn new(key: impl Into<MetaKey<'a>>) -> Self {
        MetaArithmetic {
            key: key.into(),
            mode: ArithMode::Incr,
            delta: None,
            create: None,
            ttl: None,
            compare_cas: None,
            new_cas: None,
            return_value: false,
            return_cas: false,
            return_ttl: false,
            return_key: false,
            opaque: None,
        }
    }

    /// `M<mode>`: increment (the default) or decrement.
    pub fn mode(mut self, mode: ArithMode) -> Self {
        self.mode = mode;
        self
    }

    /// `D<delta>`: the amount (1 when not set).
    pub fn delta(mut self, delta: u64) -> Self {
        self.delta = Some(delta);
        self
    }

    /// `N<ttl> J<initial>`: on a miss, create the counter with the value `initial` (not changed
    /// by this request's delta) and the TTL `ttl` (memcached exptime).
    pub fn create_on_miss(mut self, ttl: u32, initial: u64) -> Self {
        self.create = Some((ttl, initial));
        self
    }

    /// `T<ttl>`: set a new TTL (memcached exptime) when the counter is updated.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// `C<cas>`: update only if the item's CAS is still `cas`.
    pub fn compare_cas(mut self, cas: u64) -> Self {
        self.compare_cas = Some(cas);
        self
    }

    /// `E<cas>`: the CAS value to give the updated item. memcached 1.6.18 does not know this
    /// flag (`CLIENT_ERROR invalid or duplicate flag`).
    pub fn new_cas(mut self, cas: u64) -> Self {
        self.new_cas = Some(cas);
        self
    }

    /// `v`: return the new value (`VA <len>` and the decimal digits).
    pub fn return_value(mut self) -> Self {
        self.return_value = true;
        self
    }

    /// `c`: return the CAS value after the update.
    pub fn return_cas(mut self) -> Self {
        self.return_cas = true;
        self
    }

    /// `t`: return the remaining TTL.
    pub fn return_ttl(mut self) -> Self {
        self.return_ttl = true;
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
        self.key.wire_len() + self.opaque.map_or(0, <[u8]>::len) + 128
    }

    pub(super) fn put(&self, buf: &mut BytesMut, quiet: bool) {
        buf.put_slice(b"ma ");
        self.key.put(buf);
        let mut line = Line(buf);
        line.flag(self.key.is_binary(), b'b');
        line.flag(self.return_value, b'v');
        line.flag(self.return_cas, b'c');
        line.flag(self.return_ttl, b't');
        line.flag(self.return_key, b'k');
        line.token(self.opaque, b'O');
        line.flag(quiet, b'q');
        if self.mode == ArithMode::Decr {
            line.token(Some(b"D"), b'M');
        }
        line.number(self.delta, b'D');
        if let Some((ttl, initial)) = self.create {
            line.number(Some(u64::from(ttl)), b'N');
            line.number(Some(initial), b'J');
        }
        line.number(self.ttl.map(u64::from), b'T');
        line.number(self.compare_cas, b'C');
        line.number(self.new_cas, b'E');
        buf.put_slice(b"\r\n");
    }
}
