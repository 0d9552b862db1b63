//! PURE. [`Frame`]: the encoded bytes of one request, kept by the
//! [`Pipeline`](crate::pipeline::Pipeline) until its reply comes (so that it can be sent again on
//! a fresh connection).
//!
//! Most requests are small (a `get` line, a `set` of a short value), and a heap buffer for each
//! would be the largest share of a call's allocations. A frame of up to [`Frame::INLINE`] bytes
//! is therefore kept inline, in the frame itself; a larger one is a [`Bytes`]. [`Frame::encode`]
//! builds either from any encoder that writes into a `BytesMut` (text or meta requests): it
//! encodes into a buffer reused by the thread, then copies a small frame inline, copies a
//! larger one into a single allocation of its size, or takes the buffer's bytes as they are
//! for one over 64 KiB.

use std::cell::RefCell;
use std::fmt;

use bytes::{Bytes, BytesMut};

/// The reused encoding buffer is dropped and made again when it grew past this size.
const SCRATCH_MAX: usize = 64 << 10;

thread_local! {
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The encoded bytes of one request: inline up to [`Frame::INLINE`] bytes, shared beyond.
#[derive(Clone)]
pub struct Frame(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; Frame::INLINE] },
    Shared(Bytes),
}

impl Frame {
    /// The largest frame kept inline, without a heap buffer: a `get` of a key of up to 56
    /// bytes, or a `set` of a few bytes. Larger would make every request that travels through
    /// the queue and the pipeline larger to move: with 190 bytes inline, the profile of `get`
    /// at 256 callers showed about as much time in `memmove` as it saved in `malloc` and `free`.
    pub const INLINE: usize = 62;

    /// The frame of `bytes`: a copy, inline, when it is short enough, else the bytes themselves.
    pub fn new(bytes: Bytes) -> Frame {
        match Frame::inline(&bytes) {
            Some(frame) => frame,
            None => Frame(Repr::Shared(bytes)),
        }
    }

    /// An inline copy of `bytes`, if they fit.
    fn inline(bytes: &[u8]) -> Option<Frame> {
        let len = u8::try_from(bytes.len())
            .ok()
            .filter(|&l| usize::from(l) <= Frame::INLINE)?;
        let mut inline = [0u8; Frame::INLINE];
        inline[..bytes.len()].copy_from_slice(bytes);
        Some(Frame(Repr::Inline { len, bytes: inline }))
    }

    /// Runs `encoder` on an empty buffer and makes a frame of what it wrote. The buffer is
    /// reused by the thread: a frame of up to [`Frame::INLINE`] bytes costs no allocation, one
    /// of up to 64 KiB a single one. On error nothing is kept.
    ///
    /// ```
    /// use memcached_autodiscovery_proto::pipeline::Frame;
    /// use memcached_autodiscovery_proto::protocol::{Limits, Request};
    /// let (frame, _expect) =
    ///     Frame::encode(|buf| Request::Delete { key: b"k" }.encode(buf, &Limits::default()))?;
    /// assert_eq!(&frame[..], b"delete k\r\n");
    /// # Ok::<(), memcached_autodiscovery_proto::error::ProtocolError>(())
    /// ```
    pub fn encode<T, E>(
        encoder: impl FnOnce(&mut BytesMut) -> Result<T, E>,
    ) -> Result<(Frame, T), E> {
        // The thread's buffer is taken out while the encoder runs (an encoder that encodes a
        // frame itself gets a fresh one), and put back afterwards.
        let mut buf = SCRATCH
            .try_with(|s| s.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).ok())
            .ok()
            .flatten()
            .unwrap_or_default();
        buf.clear();
        let result = encoder(&mut buf).map(|out| (Frame::take(&mut buf), out));
        if buf.capacity() <= SCRATCH_MAX {
            buf.clear();
            let _ = SCRATCH.try_with(|s| {
                if let Ok(mut slot) = s.try_borrow_mut() {
                    *slot = buf;
                }
            });
        }
        result
    }

    /// The frame of what `buf` holds: an inline copy when it fits, else a copy in one
    /// allocation of its exact size (`buf` keeps its storage for the next frame); a frame
    /// larger than the buffer kept for reuse takes `buf`'s bytes as they are.
    fn take(buf: &mut BytesMut) -> Frame {
        if let Some(frame) = Frame::inline(buf) {
            return frame;
        }
        if buf.len() <= SCRATCH_MAX {
            return Frame(Repr::Shared(Bytes::copy_from_slice(buf)));
        }
        Frame(Repr::Shared(buf.split().freeze()))
    }

    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(b) => b,
        }
    }

    /// Whether the frame is kept inline (no heap buffer).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Frame {
        Frame::new(bytes)
    }
}

impl From<BytesMut> for Frame {
    fn from(bytes: BytesMut) -> Frame {
        Frame::new(bytes.freeze())
    }
}

impl From<&'static [u8]> for Frame {
    fn from(bytes: &'static [u8]) -> Frame {
        Frame::new(Bytes::from_static(bytes))
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Frame {}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Frame")
            .field(&crate::error::excerpt(self.as_bytes()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_are_inline_and_large_ones_shared() {
        let small = Frame::new(Bytes::from_static(b"get k\r\n"));
        assert!(small.is_inline());
        assert_eq!(&small[..], b"get k\r\n");
        let edge = Frame::new(Bytes::from(vec![b'x'; Frame::INLINE]));
        assert!(edge.is_inline());
        assert_eq!(edge.len(), Frame::INLINE);
        let large = Frame::new(Bytes::from(vec![b'y'; Frame::INLINE + 1]));
        assert!(!large.is_inline());
        assert_eq!(large.len(), Frame::INLINE + 1);
    }

    #[test]
    fn encode_reuses_the_buffer_and_keeps_nothing_on_error() {
        for len in [0, 1, Frame::INLINE, Frame::INLINE + 1, 100_000] {
            let (frame, ()) = Frame::encode(|buf| {
                buf.extend_from_slice(&vec![b'a'; len]);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(frame.len(), len);
            assert!(frame.iter().all(|&b| b == b'a'));
        }
        let failed = Frame::encode(|buf| {
            buf.extend_from_slice(b"partial");
            Err::<(), _>("refused")
        });
        assert_eq!(failed, Err("refused"));
        let (next, ()) = Frame::encode(|buf| {
            buf.extend_from_slice(b"b");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(&next[..], b"b");
    }

    #[test]
    fn nested_encodes_use_a_fresh_buffer() {
        let (outer, inner) = Frame::encode(|buf| {
            buf.extend_from_slice(b"outer");
            Frame::encode(|b| {
                b.extend_from_slice(b"inner");
                Ok::<(), ()>(())
            })
            .map(|(f, ())| f)
        })
        .unwrap();
        assert_eq!(&outer[..], b"outer");
        assert_eq!(&inner[..], b"inner");
    }
}
