//! Meta replies and their streaming decoder, reached through [`crate::protocol::decode`] with
//! [`Expect::Meta`](crate::protocol::Expect::Meta) or
//! [`Expect::MetaBatch`](crate::protocol::Expect::MetaBatch).
//!
//! The decoder keeps the text decoder's guarantees: a strict prefix of a reply is "need more"
//! and consumes nothing, the size of a `VA` block is checked against [`Limits`] from its header
//! before the block is waited for, values, keys and opaque tokens are slices of the received
//! buffer (a base64 key is decoded into its own bytes), and anything else is a typed
//! [`ProtocolError`] that leaves the buffer as it was.

use bytes::{Buf, Bytes, BytesMut};

use super::base64;
use crate::error::{excerpt, ProtocolError};
use crate::protocol::response::{
    block_end, error_reply, line_at, parse_u32, parse_u64, ErrorReply, Response,
};
use crate::protocol::Limits;

/// What a meta reply says, from its two-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetaStatus {
    /// `VA`: a value follows (in [`MetaReply::value`]).
    Value,
    /// `HD`: success, no value (a hit without `v`, a store, a delete, a count without `v`).
    Success,
    /// `EN`: a miss (`mg`).
    Miss,
    /// `NF`: not found (`md`, `ma`, and `ms` comparing a CAS).
    NotFound,
    /// `NS`: not stored (the set mode's condition failed).
    NotStored,
    /// `EX`: exists: the compared CAS is out of date.
    Exists,
}

impl MetaStatus {
    /// The two-letter code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            MetaStatus::Value => "VA",
            MetaStatus::Success => "HD",
            MetaStatus::Miss => "EN",
            MetaStatus::NotFound => "NF",
            MetaStatus::NotStored => "NS",
            MetaStatus::Exists => "EX",
        }
    }
}

/// A remaining time to live, as the `t` return flag gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// `t-1`: the item does not expire.
    Never,
    /// `t<n>`: the item expires in `n` seconds.
    Seconds(u32),
}

/// The return flags of a meta reply, each `None` (or `false`) when the reply did not carry it.
/// memcached returns them in the order the request asked for them; here order does not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReturnFlags {
    /// `c`: the item's CAS value.
    pub cas: Option<u64>,
    /// `f`: the client flags.
    pub client_flags: Option<u32>,
    /// `t`: the remaining TTL.
    pub ttl: Option<Ttl>,
    /// `s`: the item's size.
    pub size: Option<u64>,
    /// `k`: the key. When the reply also carries `b`, this is the key decoded from base64.
    pub key: Option<Bytes>,
    /// `b`: the key was returned in base64 (the item has a binary key).
    pub binary_key: bool,
    /// `O`: the opaque token of the request.
    pub opaque: Option<Bytes>,
    /// `h`: whether the item had been read before this request.
    pub hit_before: Option<bool>,
    /// `l`: seconds since the item was last read.
    pub last_access: Option<u32>,
    /// `W`: this caller won: it should (re)load the value and store it.
    pub win: bool,
    /// `X`: the item is stale (invalidated, or its CAS older than a store that was refused).
    pub stale: bool,
    /// `Z`: a win was already handed out for this item: do not load, wait and ask again.
    pub win_taken: bool,
}

/// One meta reply: its status, its return flags, and the value of a `VA`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetaReply {
    /// What the reply says.
    pub status: MetaStatus,
    /// The return flags.
    pub flags: ReturnFlags,
    /// The data block of a `VA` reply (a slice of the received buffer); `None` for the others.
    pub value: Option<Bytes>,
}

impl MetaReply {
    /// A reply (as a server would send it).
    pub fn new(status: MetaStatus, flags: ReturnFlags, value: Option<Bytes>) -> MetaReply {
        MetaReply {
            status,
            flags,
            value,
        }
    }
}

/// The return flags of a reply still in the buffer: numbers parsed, byte fields as spans.
#[derive(Default)]
struct FlagSpans {
    cas: Option<u64>,
    client_flags: Option<u32>,
    ttl: Option<Ttl>,
    size: Option<u64>,
    key: Option<(usize, usize)>,
    binary_key: bool,
    opaque: Option<(usize, usize)>,
    hit_before: Option<bool>,
    last_access: Option<u32>,
    win: bool,
    stale: bool,
    win_taken: bool,
}

/// A complete reply found in the buffer.
pub(crate) struct ReplySpan {
    status: MetaStatus,
    flags: FlagSpans,
    value: Option<(usize, usize)>,
}

impl ReplySpan {
    fn holds_bytes(&self) -> bool {
        self.value.is_some() || self.flags.key.is_some() || self.flags.opaque.is_some()
    }

    /// The reply, with its byte fields sliced from `frame`, the reply's bytes.
    fn build(self, frame: &Bytes) -> MetaReply {
        let (key, opaque) = self.byte_flags(frame);
        let value = self.value.map(|(a, b)| frame.slice(a..b));
        self.finish(key, opaque, value)
    }

    /// As [`build`](ReplySpan::build), but the value takes `frame`'s own reference: two
    /// reference count updates fewer per reply.
    #[inline]
    fn build_owned(self, frame: Bytes) -> MetaReply {
        let (key, opaque) = self.byte_flags(&frame);
        let value = self.value.map(|(a, b)| {
            let mut value = frame;
            value.truncate(b);
            value.advance(a);
            value
        });
        self.finish(key, opaque, value)
    }

    /// The key (decoded when it is base64) and the opaque token.
    #[inline(always)]
    fn byte_flags(&self, frame: &Bytes) -> (Option<Bytes>, Option<Bytes>) {
        let f = &self.flags;
        let key = f.key.map(|(a, b)| {
            if f.binary_key {
                // The scan checked that the key is valid base64.
                Bytes::from(base64::decode(&frame[a..b]).unwrap_or_default())
            } else {
                frame.slice(a..b)
            }
        });
        (key, f.opaque.map(|(a, b)| frame.slice(a..b)))
    }

    #[inline]
    fn finish(self, key: Option<Bytes>, opaque: Option<Bytes>, value: Option<Bytes>) -> MetaReply {
        let f = self.flags;
        MetaReply {
            status: self.status,
            flags: ReturnFlags {
                cas: f.cas,
                client_flags: f.client_flags,
                ttl: f.ttl,
                size: f.size,
                key,
                binary_key: f.binary_key,
                opaque,
                hit_before: f.hit_before,
                last_access: f.last_access,
                win: f.win,
                stale: f.stale,
                win_taken: f.win_taken,
            },
            value,
        }
    }
}

/// What a complete batch holds, before its bytes are split off the buffer.
pub(crate) enum MetaShape {
    Batch(Vec<Result<ReplySpan, ErrorReply>>),
    Error(ErrorReply),
}

impl MetaShape {
    /// Whether the response keeps slices of the frame's bytes.
    pub(crate) fn holds_bytes(&self) -> bool {
        match self {
            MetaShape::Batch(spans) => spans
                .iter()
                .any(|s| s.as_ref().is_ok_and(ReplySpan::holds_bytes)),
            MetaShape::Error(_) => false,
        }
    }

    /// The response, with its byte fields sliced from `frame`, the frame's bytes.
    pub(crate) fn build(self, frame: &Bytes) -> Response {
        match self {
            MetaShape::Batch(spans) => Response::MetaBatch(
                spans
                    .into_iter()
                    .map(|s| s.map(|span| span.build(frame)))
                    .collect(),
            ),
            MetaShape::Error(e) => Response::Error(e),
        }
    }
}

/// Decodes the reply to one meta command from the front of `buf` (see
/// [`decode`](crate::protocol::decode)).
pub(crate) fn decode_one(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<(Response, usize)>, ProtocolError> {
    let Some((end, next)) = line_at(buf, 0, limits)? else {
        return Ok(None);
    };
    let Some(code) = meta_code(&buf[..end]) else {
        return match error_reply(&buf[..end]) {
            Some(e) => {
                buf.advance(next);
                Ok(Some((Response::Error(e), next)))
            }
            None => Err(ProtocolError::UnexpectedReply {
                expected: "a meta command",
                line: excerpt(&buf[..end]),
            }),
        };
    };
    let Some((span, len)) = reply_at(buf, code, 0, end, next, limits)? else {
        return Ok(None);
    };
    let reply = if span.holds_bytes() {
        span.build_owned(buf.split_to(len).freeze())
    } else {
        // Nothing of the reply is kept: skip its bytes rather than split them off.
        buf.advance(len);
        span.build(&Bytes::new())
    };
    Ok(Some((Response::Meta(Box::new(reply)), len)))
}

/// Finds a batch of at most `max` replies closed by `MN` at the front of `buf`. Returns the
/// frame's length and shape, or `None` when the frame is not complete yet.
pub(crate) fn scan_batch(
    buf: &[u8],
    max: usize,
    limits: &Limits,
) -> Result<Option<(usize, MetaShape)>, ProtocolError> {
    let mut replies = Vec::new();
    let mut at = 0;
    loop {
        let Some((end, next)) = line_at(buf, at, limits)? else {
            return Ok(None);
        };
        let line = &buf[at..end];
        if line == b"MN" {
            return Ok(Some((next, MetaShape::Batch(replies))));
        }
        let code = meta_code(line);
        let error = if code.is_none() {
            error_reply(line)
        } else {
            None
        };
        if replies.len() == max {
            // A server without meta commands answers every line with ERROR, `mn` too: that
            // ERROR, where MN should be, ends the batch as the server's answer.
            if error == Some(ErrorReply::Error) {
                return Ok(Some((next, MetaShape::Error(ErrorReply::Error))));
            }
            return Err(ProtocolError::TooManyReplies { max });
        }
        let Some(code) = code else {
            match error {
                Some(e) => replies.push(Err(e)),
                None => {
                    return Err(ProtocolError::UnexpectedReply {
                        expected: "a meta batch",
                        line: excerpt(line),
                    })
                }
            }
            at = next;
            continue;
        };
        let Some((span, after)) = reply_at(buf, code, at, end, next, limits)? else {
            return Ok(None);
        };
        replies.push(Ok(span));
        at = after;
    }
}

/// The status of a meta reply line, and whether flags follow its code; `None` if the line is
/// not a meta reply (an error line, or anything else).
fn meta_code(line: &[u8]) -> Option<(MetaStatus, bool)> {
    let (code, has_tokens) = match line {
        [a, b] => ([*a, *b], false),
        [a, b, b' ', ..] => ([*a, *b], true),
        _ => return None,
    };
    let status = match &code {
        b"VA" => MetaStatus::Value,
        b"HD" => MetaStatus::Success,
        b"EN" => MetaStatus::Miss,
        b"NF" => MetaStatus::NotFound,
        b"NS" => MetaStatus::NotStored,
        b"EX" => MetaStatus::Exists,
        _ => return None,
    };
    Some((status, has_tokens))
}

/// Reads the reply whose line is `buf[at..end]`, of status `code` (the line's CRLF ends at
/// `next`), and its data block for a `VA`. Returns the reply and where it ends, or `None` if the
/// block is not all in `buf` yet.
#[inline(always)]
fn reply_at(
    buf: &[u8],
    (status, has_tokens): (MetaStatus, bool),
    at: usize,
    end: usize,
    next: usize,
    limits: &Limits,
) -> Result<Option<(ReplySpan, usize)>, ProtocolError> {
    let line = &buf[at..end];
    let malformed = || ProtocolError::MalformedLine {
        what: "meta reply",
        line: excerpt(line),
    };
    let mut tokens = Tokens {
        buf,
        pos: at + 3,
        end: if has_tokens { end } else { at + 2 },
    };
    // `VA <len>`: the length comes first, and is checked before the block is waited for.
    let len_field = if status == MetaStatus::Value {
        Some(tokens.next().ok_or_else(malformed)?.ok_or_else(malformed)?)
    } else {
        None
    };
    let mut flags = FlagSpans::default();
    for token in tokens {
        let (start, stop) = token.ok_or_else(malformed)?;
        read_flag(&mut flags, buf, start, stop).ok_or_else(malformed)?;
    }
    if flags.binary_key {
        if let Some((a, b)) = flags.key {
            if !matches!(base64::decoded_len(&buf[a..b]), Some(n) if n > 0) {
                return Err(malformed());
            }
        }
    }
    let (value, after) = match len_field {
        None => (None, next),
        Some((a, b)) => match block_end(buf, next, &buf[a..b], "VA", line, limits)? {
            None => return Ok(None),
            Some((value_end, after)) => (Some((next, value_end)), after),
        },
    };
    Ok(Some((
        ReplySpan {
            status,
            flags,
            value,
        },
        after,
    )))
}

/// The space-separated tokens of a reply line, as spans of the buffer; `Some(None)` for an
/// empty token (two spaces, or a space at the end), which no server writes.
struct Tokens<'b> {
    buf: &'b [u8],
    pos: usize,
    end: usize,
}

impl Iterator for Tokens<'_> {
    type Item = Option<(usize, usize)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos > self.end {
            return None;
        }
        let stop = self.buf[self.pos..self.end]
            .iter()
            .position(|&b| b == b' ')
            .map_or(self.end, |i| self.pos + i);
        let start = self.pos;
        self.pos = stop + 1;
        Some((stop > start).then_some((start, stop)))
    }
}

/// Records the flag `buf[start..stop]` (its letter, then its token). `None` if it is malformed
/// or repeated. Letters this decoder does not know are skipped: newer servers may add return
/// flags.
#[inline(always)]
fn read_flag(flags: &mut FlagSpans, buf: &[u8], start: usize, stop: usize) -> Option<()> {
    let arg = &buf[start + 1..stop];
    /// Stores `value` in an empty slot; `None` if the slot is taken or the value malformed.
    #[inline(always)]
    fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
        match (slot.is_none(), value) {
            (true, Some(v)) => {
                *slot = Some(v);
                Some(())
            }
            _ => None,
        }
    }
    /// Sets a flag without a token; `None` if it is set already or carries a token.
    #[inline(always)]
    fn mark(slot: &mut bool, arg: &[u8]) -> Option<()> {
        if *slot || !arg.is_empty() {
            return None;
        }
        *slot = true;
        Some(())
    }
    match buf[start] {
        b'c' => once(&mut flags.cas, parse_u64(arg)),
        b'f' => once(&mut flags.client_flags, parse_u32(arg)),
        b't' if arg == b"-1" => once(&mut flags.ttl, Some(Ttl::Never)),
        b't' => once(&mut flags.ttl, parse_u32(arg).map(Ttl::Seconds)),
        b's' => once(&mut flags.size, parse_u64(arg)),
        b'k' if !arg.is_empty() => once(&mut flags.key, Some((start + 1, stop))),
        b'O' => once(&mut flags.opaque, Some((start + 1, stop))),
        b'h' if matches!(arg, b"0" | b"1") => once(&mut flags.hit_before, Some(arg == b"1")),
        b'l' => once(&mut flags.last_access, parse_u32(arg)),
        b'b' => mark(&mut flags.binary_key, arg),
        b'W' => mark(&mut flags.win, arg),
        b'X' => mark(&mut flags.stale, arg),
        b'Z' => mark(&mut flags.win_taken, arg),
        b'k' | b'h' => None,
        other if other.is_ascii_alphabetic() => Some(()),
        _ => None,
    }
}
