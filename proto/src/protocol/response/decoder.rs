//! The streaming decoder of text-protocol replies.
//!
//! [`decode`] looks at the front of a stream buffer and either finds one complete reply (removing
//! exactly its bytes from the buffer), or says it needs more bytes, or refuses the bytes with a
//! [`ProtocolError`]. Sizes are checked from the header line alone, before any body is buffered,
//! so a hostile server cannot make the caller allocate more than [`Limits`] allows. Values are
//! slices of the received buffer (`Bytes`), never copies.
//!
//! This module owns the scanning of every reply kind of the text protocol, each with its own size
//! checks, in one streaming state-free function, and the line and number parsing the meta
//! decoder shares; it does not own the reply types (the parent module) or the meta replies'
//! shapes ([`crate::protocol::meta`]). The decoder's tests are in `tests/protocol_decode.rs`.

use bytes::{Buf, Bytes, BytesMut};

use super::{ErrorReply, Expect, Item, Response};
use crate::error::{excerpt, ProtocolError};
use crate::protocol::meta::{self, MetaShape};
use crate::protocol::Limits;

/// Decodes one reply from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a reply (read more and call again), and
/// `Ok(Some((response, consumed)))` when a reply is complete: its `consumed` bytes have been
/// removed from the front of `buf`. An error means the bytes are not a valid reply to a request
/// expecting `expect`; `buf` is then left as it was and the stream should be dropped.
///
/// ```
/// use bytes::BytesMut;
/// use memcached_autodiscovery_proto::protocol::{decode, Expect, Limits, Response};
/// let mut buf = BytesMut::from(&b"VALUE k 0 2\r\nhi\r\nEND\r\nSTORED\r\n"[..]);
/// let (reply, used) = decode(&mut buf, Expect::Values { max: 1 }, &Limits::default())?.unwrap();
/// assert!(matches!(reply, Response::Values(ref items) if items[0].value == "hi"));
/// assert_eq!(used, 22);
/// assert_eq!(decode(&mut buf, Expect::Store, &Limits::default())?, Some((Response::Stored, 8)));
/// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
/// ```
pub fn decode(
    buf: &mut BytesMut,
    expect: Expect,
    limits: &Limits,
) -> Result<Option<(Response, usize)>, ProtocolError> {
    if expect == Expect::Meta {
        // The reply to one meta command (the hot path of `mg`) is built straight from the
        // split-off bytes, without the intermediate shapes below.
        return meta::decode_one(buf, limits);
    }
    let Some(Scan { len, shape }) = scan(buf, expect, limits)? else {
        return Ok(None);
    };
    let response = if shape.holds_bytes() {
        let frame = buf.split_to(len).freeze();
        shape.build(&frame)
    } else {
        // Nothing of the reply is kept (a status line, a miss): skip its bytes, which is
        // cheaper than splitting them off into shared storage.
        buf.advance(len);
        shape.build(&Bytes::new())
    };
    Ok(Some((response, len)))
}

/// Where the parts of a complete reply sit in the buffer; turned into a [`Response`] once the
/// reply's bytes are split off.
struct Scan {
    len: usize,
    shape: Shape,
}

enum Shape {
    Values(Spans),
    Simple(Response),
    Config(Option<(usize, usize)>),
    Meta(MetaShape),
}

struct ItemSpan {
    key: (usize, usize),
    flags: u32,
    cas: Option<u64>,
    value: (usize, usize),
}

/// The item spans of a retrieval reply. The first one is kept inline, so that the common
/// single-key reply allocates only its `Vec<Item>`, not a second vector of spans.
#[derive(Default)]
struct Spans {
    first: Option<ItemSpan>,
    more: Vec<ItemSpan>,
}

impl Spans {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn push(&mut self, span: ItemSpan) {
        if self.first.is_none() {
            self.first = Some(span);
        } else {
            self.more.push(span);
        }
    }
}

impl Shape {
    /// Whether the response keeps slices of the reply's bytes.
    fn holds_bytes(&self) -> bool {
        match self {
            Shape::Values(spans) => spans.len() > 0,
            Shape::Config(span) => span.is_some(),
            Shape::Meta(shape) => shape.holds_bytes(),
            Shape::Simple(_) => false,
        }
    }

    /// The response, with its byte fields sliced from `frame`, the reply's bytes.
    fn build(self, frame: &Bytes) -> Response {
        match self {
            Shape::Simple(r) => r,
            Shape::Meta(shape) => shape.build(frame),
            Shape::Config(span) => Response::Config(span.map(|(a, b)| frame.slice(a..b))),
            Shape::Values(spans) => {
                let item = |s: ItemSpan| Item {
                    key: frame.slice(s.key.0..s.key.1),
                    flags: s.flags,
                    cas: s.cas,
                    value: frame.slice(s.value.0..s.value.1),
                };
                let mut items = Vec::with_capacity(spans.len());
                if let Some(first) = spans.first {
                    items.push(item(first));
                    items.extend(spans.more.into_iter().map(item));
                }
                Response::Values(items)
            }
        }
    }
}

/// Finds the line that starts at `at`: returns its end (index of `\r`) and the index after
/// `\r\n`, or `None` when the line is not complete yet.
#[inline]
pub(crate) fn line_at(
    buf: &[u8],
    at: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let rest = &buf[at..];
    // Saturating: `Limits` has public fields, so the limit may be as large as usize::MAX.
    let cap = limits.max_line_size.saturating_add(2);
    let window = &rest[..rest.len().min(cap)];
    match find_lf(window) {
        Some(nl) if nl > 0 && window[nl - 1] == b'\r' => Ok(Some((at + nl - 1, at + nl + 1))),
        Some(nl) => Err(ProtocolError::MalformedLine {
            what: "reply (no CR before LF)",
            line: excerpt(&rest[..nl]),
        }),
        None if window.len() >= cap => Err(ProtocolError::LineTooLong {
            max: limits.max_line_size,
        }),
        None => Ok(None),
    }
}

/// Index of the first LF in `bytes`. Tests eight bytes at a time: reply lines are mostly 5 to
/// 60 bytes, and on every reply this search is the decoder's main loop.
#[inline]
fn find_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const LFS: u64 = u64::from_le_bytes([b'\n'; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Bytes equal to LF become zero; the lowest flagged byte is the first zero byte.
        let x = u64::from_le_bytes(word) ^ LFS;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(base + (zeros.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| base + i)
}

/// Parses an error line, if `line` is one.
pub(crate) fn error_reply(line: &[u8]) -> Option<ErrorReply> {
    let text = |m: &[u8]| String::from_utf8_lossy(m).into_owned();
    if line == b"ERROR" {
        Some(ErrorReply::Error)
    } else if let Some(m) = line.strip_prefix(b"ERROR ") {
        // Some servers append a reason; it is still an unknown-command error.
        let _ = m;
        Some(ErrorReply::Error)
    } else if let Some(m) = line.strip_prefix(b"CLIENT_ERROR") {
        Some(ErrorReply::Client(text(m.strip_prefix(b" ").unwrap_or(m))))
    } else {
        line.strip_prefix(b"SERVER_ERROR")
            .map(|m| ErrorReply::Server(text(m.strip_prefix(b" ").unwrap_or(m))))
    }
}

pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    if digits.len() < 20 {
        // Up to 19 digits cannot overflow: no checked arithmetic on the usual short numbers.
        for &d in digits {
            let digit = d.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            n = n * 10 + u64::from(digit);
        }
        return Some(n);
    }
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

pub(crate) fn parse_u32(digits: &[u8]) -> Option<u32> {
    parse_u64(digits).and_then(|n| u32::try_from(n).ok())
}

fn scan(buf: &[u8], expect: Expect, limits: &Limits) -> Result<Option<Scan>, ProtocolError> {
    // These read the first line themselves, error replies included: going straight there saves
    // finding and classifying that line twice. (`Expect::Meta` never comes here: `decode`
    // hands it to `meta::decode_one`.)
    let max = match expect {
        Expect::Values { max } => return scan_values(buf, max, limits),
        Expect::MetaBatch { max } => max,
        _ => return scan_line(buf, expect, limits),
    };
    Ok(
        meta::scan_batch(buf, max, limits)?.map(|(len, shape)| Scan {
            len,
            shape: Shape::Meta(shape),
        }),
    )
}

/// A reply that starts with its status line (everything but retrievals and meta frames).
fn scan_line(buf: &[u8], expect: Expect, limits: &Limits) -> Result<Option<Scan>, ProtocolError> {
    let Some((end, next)) = line_at(buf, 0, limits)? else {
        return Ok(None);
    };
    let line = &buf[..end];
    if let Some(e) = error_reply(line) {
        return Ok(Some(Scan {
            len: next,
            shape: Shape::Simple(Response::Error(e)),
        }));
    }
    let simple = |r: Response| {
        Ok(Some(Scan {
            len: next,
            shape: Shape::Simple(r),
        }))
    };
    let unexpected = || {
        Err(ProtocolError::UnexpectedReply {
            expected: expect.name(),
            line: excerpt(line),
        })
    };
    match (expect, line) {
        (Expect::Values { max }, _) => scan_values(buf, max, limits),
        (Expect::Stats, _) => scan_stats(buf, limits),
        (Expect::Config, _) => scan_config(buf, limits),
        (Expect::Store, b"STORED") => simple(Response::Stored),
        (Expect::Store, b"NOT_STORED") => simple(Response::NotStored),
        (Expect::Store, b"EXISTS") => simple(Response::Exists),
        (Expect::Store | Expect::Delete | Expect::Arith | Expect::Touch, b"NOT_FOUND") => {
            simple(Response::NotFound)
        }
        (Expect::Delete, b"DELETED") => simple(Response::Deleted),
        (Expect::Touch, b"TOUCHED") => simple(Response::Touched),
        (Expect::Ok, b"OK") => simple(Response::Ok),
        (Expect::Arith, _) => {
            let trimmed = line.trim_ascii_end();
            match parse_u64(trimmed) {
                Some(n) => simple(Response::Number(n)),
                None if trimmed.first().is_some_and(u8::is_ascii_digit) => {
                    Err(ProtocolError::MalformedLine {
                        what: "number",
                        line: excerpt(line),
                    })
                }
                None => unexpected(),
            }
        }
        (Expect::Version, _) => match line.strip_prefix(b"VERSION ") {
            Some(v) => simple(Response::Version(String::from_utf8_lossy(v).into_owned())),
            None => unexpected(),
        },
        _ => unexpected(),
    }
}

/// Splits `line` on single spaces into at most `N` fields; `None` if there are more or fewer
/// than `min` fields, or an empty one.
fn fields<const N: usize>(line: &[u8], min: usize) -> Option<([&[u8]; N], usize)> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for part in line.split(|&b| b == b' ') {
        if n == N || part.is_empty() {
            return None;
        }
        out[n] = part;
        n += 1;
    }
    (n >= min).then_some((out, n))
}

/// Checks a block header's length against the limit and returns where the block and its CRLF
/// end, or `None` if they are not all in `buf` yet.
pub(crate) fn block_end(
    buf: &[u8],
    start: usize,
    len_field: &[u8],
    what: &'static str,
    line: &[u8],
    limits: &Limits,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some(len) = parse_u64(len_field) else {
        return Err(ProtocolError::MalformedLine {
            what,
            line: excerpt(line),
        });
    };
    if len > limits.max_value_size as u64 {
        return Err(ProtocolError::ReplyTooLarge {
            len,
            max: limits.max_value_size,
        });
    }
    let len = len as usize;
    // Saturating: a limit set above the 1 GiB ceiling by hand must not overflow here.
    let end = start.saturating_add(len);
    if buf.len() < end.saturating_add(2) {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ProtocolError::BadBlockEnd { len });
    }
    Ok(Some((end, end + 2)))
}

fn scan_values(buf: &[u8], max: usize, limits: &Limits) -> Result<Option<Scan>, ProtocolError> {
    let mut items = Spans::default();
    let mut at = 0;
    loop {
        let Some((end, next)) = line_at(buf, at, limits)? else {
            return Ok(None);
        };
        let line = &buf[at..end];
        if line == b"END" {
            return Ok(Some(Scan {
                len: next,
                shape: Shape::Values(items),
            }));
        }
        if let Some(e) = error_reply(line) {
            // memcached stops a multi-key reply with an error line (no END); the values before
            // it are dropped so the caller sees the failure.
            return Ok(Some(Scan {
                len: next,
                shape: Shape::Simple(Response::Error(e)),
            }));
        }
        let malformed = || ProtocolError::MalformedLine {
            what: "VALUE",
            line: excerpt(line),
        };
        let Some(header) = line.strip_prefix(b"VALUE ") else {
            return Err(ProtocolError::UnexpectedReply {
                expected: "a retrieval",
                line: excerpt(line),
            });
        };
        let ([key, flags, len, cas], n) = fields::<4>(header, 3).ok_or_else(malformed)?;
        let flags = parse_u32(flags).ok_or_else(malformed)?;
        let cas = match n {
            4 => Some(parse_u64(cas).ok_or_else(malformed)?),
            _ => None,
        };
        if items.len() == max {
            return Err(ProtocolError::TooManyValues { max });
        }
        let Some((value_end, after)) = block_end(buf, next, len, "VALUE", line, limits)? else {
            return Ok(None);
        };
        let key_start = at + 6;
        items.push(ItemSpan {
            key: (key_start, key_start + key.len()),
            flags,
            cas,
            value: (next, value_end),
        });
        at = after;
    }
}

fn scan_stats(buf: &[u8], limits: &Limits) -> Result<Option<Scan>, ProtocolError> {
    let mut stats = Vec::new();
    let mut at = 0;
    loop {
        if at > limits.max_value_size {
            return Err(ProtocolError::ReplyTooLarge {
                len: at as u64,
                max: limits.max_value_size,
            });
        }
        let Some((end, next)) = line_at(buf, at, limits)? else {
            return Ok(None);
        };
        let line = &buf[at..end];
        if line == b"END" {
            return Ok(Some(Scan {
                len: next,
                shape: Shape::Simple(Response::Stats(stats)),
            }));
        }
        let Some(stat) = line.strip_prefix(b"STAT ") else {
            return Err(ProtocolError::UnexpectedReply {
                expected: "stats",
                line: excerpt(line),
            });
        };
        let (name, value) = match stat.iter().position(|&b| b == b' ') {
            Some(i) => (&stat[..i], &stat[i + 1..]),
            None => (stat, &b""[..]),
        };
        if name.is_empty() {
            return Err(ProtocolError::MalformedLine {
                what: "STAT",
                line: excerpt(line),
            });
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        stats.push((text(name), text(value)));
        at = next;
    }
}

fn scan_config(buf: &[u8], limits: &Limits) -> Result<Option<Scan>, ProtocolError> {
    let Some((end, next)) = line_at(buf, 0, limits)? else {
        return Ok(None);
    };
    let line = &buf[..end];
    if line == b"END" {
        return Ok(Some(Scan {
            len: next,
            shape: Shape::Config(None),
        }));
    }
    let malformed = || ProtocolError::MalformedLine {
        what: "CONFIG",
        line: excerpt(line),
    };
    let Some(header) = line.strip_prefix(b"CONFIG ") else {
        return Err(ProtocolError::UnexpectedReply {
            expected: "config get",
            line: excerpt(line),
        });
    };
    let ([key, flags, len], _) = fields::<3>(header, 3).ok_or_else(malformed)?;
    if key != b"cluster" || parse_u32(flags).is_none() {
        return Err(malformed());
    }
    let Some((block_end, after)) = block_end(buf, next, len, "CONFIG", line, limits)? else {
        return Ok(None);
    };
    let Some((end_line, done)) = line_at(buf, after, limits)? else {
        return Ok(None);
    };
    if &buf[after..end_line] != b"END" {
        return Err(ProtocolError::UnexpectedReply {
            expected: "END after the config block",
            line: excerpt(&buf[after..end_line]),
        });
    }
    Ok(Some(Scan {
        len: done,
        shape: Shape::Config(Some((next, block_end))),
    }))
}

#[cfg(test)]
mod tests {
    use super::find_lf;

    #[test]
    fn find_lf_agrees_with_a_byte_loop() {
        // Every length up to three words, LF at every position (or none), over backgrounds that
        // stress the word test: bytes next to LF, 0x80 and above, zero.
        for fill in [b'a', b'\t', b'\x0b', b'\r', 0x8a, 0xff, 0x00] {
            for len in 0..=24 {
                for lf in (0..len).map(Some).chain([None]) {
                    let mut bytes = vec![fill; len];
                    if let Some(i) = lf {
                        bytes[i] = b'\n';
                        // A second LF later must not be reported instead.
                        if i + 3 < len {
                            bytes[i + 3] = b'\n';
                        }
                    }
                    let naive = bytes.iter().position(|&b| b == b'\n');
                    assert_eq!(find_lf(&bytes), naive, "{bytes:?}");
                }
            }
        }
    }
}
