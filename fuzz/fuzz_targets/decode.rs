//! Streaming reply decoder against arbitrary server bytes.
//!
//! Input layout: byte 0 picks the `Expect` (low nibble) and the `max` of `Expect::Values` (high
//! nibble); byte 1 picks two cut points; the rest is what the server sent. The bytes are fed in
//! three chunks, decoding after each one as a connection's read loop does, and the replies must
//! be exactly those of decoding the whole input at once (a strict prefix of a reply is always
//! "need more", never a different answer).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use memcached_autodiscovery_proto::protocol::{decode, Expect, Limits, Response};
use memcached_autodiscovery_proto::error::ProtocolError;

/// Small limits, so inputs of a few KiB reach the size checks.
const LIMITS: Limits = Limits::new(4096, 256);

fn expect_from(selector: u8) -> Expect {
    match selector & 0x0f {
        0 => Expect::Values {
            max: usize::from(selector >> 4),
        },
        1 => Expect::Store,
        2 => Expect::Delete,
        3 => Expect::Arith,
        4 => Expect::Touch,
        5 => Expect::Ok,
        6 => Expect::Version,
        7 => Expect::Stats,
        8 => Expect::Config,
        // The other nibbles repeat the most complex variants.
        9..=11 => Expect::Values {
            max: usize::from(selector >> 4),
        },
        12 | 13 => Expect::Stats,
        _ => Expect::Config,
    }
}

/// What decoding produced: the replies in order, then how it stopped.
#[derive(Debug, PartialEq)]
struct Outcome {
    replies: Vec<(Response, usize)>,
    error: Option<ProtocolError>,
}

/// Decodes every complete reply at the front of `buf`, checking the buffer bookkeeping of each
/// call. Returns false once decoding failed (the stream is dead).
fn drain(buf: &mut BytesMut, expect: Expect, out: &mut Outcome) -> bool {
    loop {
        let before = buf.clone();
        match decode(buf, expect, &LIMITS) {
            Ok(Some((reply, n))) => {
                assert!(n > 0, "a reply consumed no bytes");
                assert!(n <= before.len(), "consumed {n} of {} bytes", before.len());
                assert_eq!(buf.len(), before.len() - n, "buffer did not shrink by {n}");
                assert_eq!(&buf[..], &before[n..], "the bytes after the reply changed");
                check_reply(&reply, expect, &before[..n]);
                out.replies.push((reply, n));
            }
            Ok(None) => {
                assert_eq!(&buf[..], &before[..], "need-more changed the buffer");
                return true;
            }
            Err(e) => {
                assert_eq!(&buf[..], &before[..], "an error changed the buffer");
                out.error = Some(e);
                return false;
            }
        }
    }
}

/// Checks a reply against the bytes it was decoded from.
fn check_reply(reply: &Response, expect: Expect, frame: &[u8]) {
    match reply {
        Response::Values(items) => {
            let Expect::Values { max } = expect else {
                panic!("values for {expect:?}");
            };
            assert!(items.len() <= max, "{} values for max {max}", items.len());
            for item in items {
                assert!(item.value.len() <= LIMITS.max_value_size);
                assert!(!item.key.is_empty());
                assert!(!item.key.contains(&b' '));
            }
            assert!(frame.ends_with(b"END\r\n"));
        }
        Response::Config(Some(block)) => {
            assert_eq!(expect, Expect::Config);
            assert!(block.len() <= LIMITS.max_value_size);
            assert!(frame.ends_with(b"\r\nEND\r\n"));
        }
        Response::Stats(_) | Response::Config(None) => assert!(frame.ends_with(b"END\r\n")),
        _ => assert!(frame.ends_with(b"\r\n")),
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, cuts, wire @ ..] = data else {
        return;
    };
    let expect = expect_from(*selector);

    // The whole input in one buffer.
    let mut whole = Outcome {
        replies: Vec::new(),
        error: None,
    };
    let mut buf = BytesMut::from(wire);
    drain(&mut buf, expect, &mut whole);

    // The same bytes arriving in three chunks.
    let first = wire.len() * usize::from(cuts & 0x0f) / 15;
    let second = first + (wire.len() - first) * usize::from(cuts >> 4) / 15;
    let mut streamed = Outcome {
        replies: Vec::new(),
        error: None,
    };
    let mut buf = BytesMut::new();
    for chunk in [&wire[..first], &wire[first..second], &wire[second..]] {
        buf.extend_from_slice(chunk);
        if !drain(&mut buf, expect, &mut streamed) {
            break;
        }
    }

    assert_eq!(whole, streamed, "chunking changed the outcome");
});
