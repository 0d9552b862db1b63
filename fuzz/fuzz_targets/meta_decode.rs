//! Meta reply decoding against arbitrary server bytes, for every meta `Expect`.
//!
//! Input layout: byte 0 picks the `Expect` (low bit: `Meta` or `MetaBatch`; the next three bits:
//! the batch's `max`); byte 1 picks two cut points; the rest is what the server sent. Decoding
//! must never panic, never consume more than it was given nor anything on "need more" or an
//! error, and the bytes fed in three chunks (decoding after each, as a read loop does) must give
//! exactly the replies of the whole input decoded at once.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use memcached_autodiscovery_proto::protocol::meta::{MetaReply, MetaStatus};
use memcached_autodiscovery_proto::protocol::{decode, Expect, Limits, Response};
use memcached_autodiscovery_proto::error::ProtocolError;

/// Small limits, so inputs of a few KiB reach the size checks.
const LIMITS: Limits = Limits::new(4096, 256);

fn expect_from(selector: u8) -> Expect {
    if selector & 1 == 0 {
        Expect::Meta
    } else {
        Expect::MetaBatch {
            max: usize::from((selector >> 1) & 7),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    replies: Vec<(Response, usize)>,
    error: Option<ProtocolError>,
}

/// Decodes every complete frame at the front of `buf`, checking the buffer bookkeeping of each
/// call. Returns false once decoding failed (the stream is dead).
fn drain(buf: &mut BytesMut, expect: Expect, out: &mut Outcome) -> bool {
    loop {
        let before = buf.clone();
        match decode(buf, expect, &LIMITS) {
            Ok(Some((reply, n))) => {
                assert!(n > 0, "a reply consumed no bytes");
                assert!(n <= before.len(), "consumed {n} of {} bytes", before.len());
                assert_eq!(
                    &buf[..],
                    &before[n..],
                    "not exactly {n} bytes were consumed"
                );
                check_frame(&reply, expect, &before[..n]);
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

fn check_reply(reply: &MetaReply, frame: &[u8]) {
    assert_eq!(reply.value.is_some(), reply.status == MetaStatus::Value);
    if let Some(value) = &reply.value {
        assert!(value.len() <= LIMITS.max_value_size);
    }
    if let Some(key) = &reply.flags.key {
        assert!(!key.is_empty());
        if !reply.flags.binary_key {
            assert!(!key.contains(&b' ') && !key.contains(&b'\n'));
        }
    }
    if let Some(opaque) = &reply.flags.opaque {
        assert!(!opaque.contains(&b' ') && opaque.len() < frame.len());
    }
}

/// Checks a frame's reply against the bytes it was decoded from.
fn check_frame(reply: &Response, expect: Expect, frame: &[u8]) {
    assert!(frame.ends_with(b"\r\n"));
    match (reply, expect) {
        (Response::Meta(r), Expect::Meta) => check_reply(r, frame),
        (Response::MetaBatch(rs), Expect::MetaBatch { max }) => {
            assert!(rs.len() <= max, "{} replies for max {max}", rs.len());
            assert!(frame.ends_with(b"MN\r\n"));
            for r in rs.iter().flatten() {
                check_reply(r, frame);
            }
        }
        (Response::Error(_), _) => {}
        (other, expect) => panic!("{other:?} for {expect:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, cuts, wire @ ..] = data else {
        return;
    };
    let expect = expect_from(*selector);

    let mut whole = Outcome {
        replies: Vec::new(),
        error: None,
    };
    let mut buf = BytesMut::from(wire);
    drain(&mut buf, expect, &mut whole);

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
