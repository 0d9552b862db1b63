//! Table-driven tests of the meta reply decoder (through `protocol::decode` with `Expect::Meta`
//! and `Expect::MetaBatch`): every reply kind and return flag, the streaming contract (every
//! strict prefix is "need more", back-to-back replies, byte-at-a-time feeding), the size limits,
//! the refusals, zero-copy slices, and meta frames carried by the pipeline.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::pipeline::{Caller, Pending, Pipeline};
use memcached_autodiscovery_proto::protocol::meta::{MetaReply, MetaStatus, ReturnFlags, Ttl};
use memcached_autodiscovery_proto::protocol::{decode, ErrorReply, Expect, Limits, Response};

struct Valid {
    name: &'static str,
    expect: Expect,
    wire: Vec<u8>,
    response: Response,
}

/// A reply with `status`, `value`, and the flags `set` fills in.
fn reply(
    status: MetaStatus,
    value: Option<&[u8]>,
    set: impl FnOnce(&mut ReturnFlags),
) -> MetaReply {
    let mut flags = ReturnFlags::default();
    set(&mut flags);
    MetaReply::new(status, flags, value.map(Bytes::copy_from_slice))
}

fn one(status: MetaStatus, value: Option<&[u8]>, set: impl FnOnce(&mut ReturnFlags)) -> Response {
    Response::Meta(Box::new(reply(status, value, set)))
}

fn bytes(b: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(b))
}

fn valid_replies() -> Vec<Valid> {
    use MetaStatus::*;
    let v = |name, expect, wire: &[u8], response| Valid {
        name,
        expect,
        wire: wire.to_vec(),
        response,
    };
    let m = Expect::Meta;
    let big = vec![b'x'; 5000];
    let mut big_wire = b"VA 5000 s5000\r\n".to_vec();
    big_wire.extend_from_slice(&big);
    big_wire.extend_from_slice(b"\r\n");
    vec![
        // Values (VA), with the lease flags of the spec's sequence.
        v(
            "hit with ttl, cas and key",
            m,
            b"VA 3 t60 c5 kfoo\r\nabc\r\n",
            one(Value, Some(b"abc"), |f| {
                f.ttl = Some(Ttl::Seconds(60));
                f.cas = Some(5);
                f.key = bytes(b"foo");
            }),
        ),
        v(
            "lease won on a miss: empty placeholder, W",
            m,
            b"VA 0 c1 t-1 s0 W\r\n\r\n",
            one(Value, Some(b""), |f| {
                f.cas = Some(1);
                f.ttl = Some(Ttl::Never);
                f.size = Some(0);
                f.win = true;
            }),
        ),
        v(
            "lease already handed out: Z",
            m,
            b"VA 0 c1 t30 Z\r\n\r\n",
            one(Value, Some(b""), |f| {
                f.cas = Some(1);
                f.ttl = Some(Ttl::Seconds(30));
                f.win_taken = true;
            }),
        ),
        v(
            "stale, and this caller wins the refresh: X W",
            m,
            b"VA 3 c4 t30 X W\r\nabc\r\n",
            one(Value, Some(b"abc"), |f| {
                f.cas = Some(4);
                f.ttl = Some(Ttl::Seconds(30));
                f.stale = true;
                f.win = true;
            }),
        ),
        v(
            "stale, win taken: Z X",
            m,
            b"VA 3 c4 t30 Z X\r\nabc\r\n",
            one(Value, Some(b"abc"), |f| {
                f.cas = Some(4);
                f.ttl = Some(Ttl::Seconds(30));
                f.stale = true;
                f.win_taken = true;
            }),
        ),
        v(
            "recache win with key and opaque",
            m,
            b"VA 3 c5 t59 kk1 O55 W\r\nxyz\r\n",
            one(Value, Some(b"xyz"), |f| {
                f.cas = Some(5);
                f.ttl = Some(Ttl::Seconds(59));
                f.key = bytes(b"k1");
                f.opaque = bytes(b"55");
                f.win = true;
            }),
        ),
        v(
            "every value flag",
            m,
            b"VA 4 f7 c7 t-1 s4 ka h0 l0\r\n<hi!\r\n",
            one(Value, Some(b"<hi!"), |f| {
                f.client_flags = Some(7);
                f.cas = Some(7);
                f.ttl = Some(Ttl::Never);
                f.size = Some(4);
                f.key = bytes(b"a");
                f.hit_before = Some(false);
                f.last_access = Some(0);
            }),
        ),
        v(
            "numbers at their maximum",
            m,
            b"VA 1 c18446744073709551615 f4294967295 t4294967295 s18446744073709551615 l4294967295\r\nz\r\n",
            one(Value, Some(b"z"), |f| {
                f.cas = Some(u64::MAX);
                f.client_flags = Some(u32::MAX);
                f.ttl = Some(Ttl::Seconds(u32::MAX));
                f.size = Some(u64::MAX);
                f.last_access = Some(u32::MAX);
            }),
        ),
        v(
            "a value holding CRLF and the text of replies",
            m,
            b"VA 12\r\nHD\r\nMN\r\nEN\r\n\r\n",
            one(Value, Some(b"HD\r\nMN\r\nEN\r\n"), |_| {}),
        ),
        v(
            "a value without flags",
            m,
            b"VA 2\r\n13\r\n",
            one(Value, Some(b"13"), |_| {}),
        ),
        v("5000-byte value", m, &big_wire, {
            let value = big.clone();
            one(Value, Some(&value), |f| f.size = Some(5000))
        }),
        v(
            "binary key returned in base64, decoded",
            m,
            b"VA 3 kYmluAHJ5 b\r\n\x00\x01\x02\r\n",
            one(Value, Some(b"\x00\x01\x02"), |f| {
                f.key = bytes(b"bin\0ry");
                f.binary_key = true;
            }),
        ),
        // HD
        v("HD", m, b"HD\r\n", one(Success, None, |_| {})),
        v(
            "HD after a set: cas, key, opaque",
            m,
            b"HD c5 ka O1\r\n",
            one(Success, None, |f| {
                f.cas = Some(5);
                f.key = bytes(b"a");
                f.opaque = bytes(b"1");
            }),
        ),
        v(
            "HD of a get without v: hit before, last access, ttl",
            m,
            b"HD h1 l1 t-1\r\n",
            one(Success, None, |f| {
                f.hit_before = Some(true);
                f.last_access = Some(1);
                f.ttl = Some(Ttl::Never);
            }),
        ),
        v(
            "HD with b before k",
            m,
            b"HD b kYQ== c20\r\n",
            one(Success, None, |f| {
                f.binary_key = true;
                f.key = bytes(b"a");
                f.cas = Some(20);
            }),
        ),
        v(
            "flag letters this decoder does not know are skipped",
            m,
            b"HD Q7 c2 z Ax-1\r\n",
            one(Success, None, |f| f.cas = Some(2)),
        ),
        // EN, NF, NS, EX
        v("EN", m, b"EN\r\n", one(Miss, None, |_| {})),
        v(
            "EN with key and opaque",
            m,
            b"EN kmissing O9\r\n",
            one(Miss, None, |f| {
                f.key = bytes(b"missing");
                f.opaque = bytes(b"9");
            }),
        ),
        v(
            "EN with a base64 key",
            m,
            b"EN kbWlzc2luZw== b\r\n",
            one(Miss, None, |f| {
                f.key = bytes(b"missing");
                f.binary_key = true;
            }),
        ),
        v(
            "EN with an empty opaque (memcached echoes O alone)",
            m,
            b"EN O\r\n",
            one(Miss, None, |f| f.opaque = bytes(b"")),
        ),
        v("NF", m, b"NF\r\n", one(NotFound, None, |_| {})),
        v("NS", m, b"NS\r\n", one(NotStored, None, |_| {})),
        v(
            "NS with cas 0",
            m,
            b"NS c0\r\n",
            one(NotStored, None, |f| f.cas = Some(0)),
        ),
        v("EX", m, b"EX\r\n", one(Exists, None, |_| {})),
        v(
            "EX with opaque",
            m,
            b"EX O3\r\n",
            one(Exists, None, |f| f.opaque = bytes(b"3")),
        ),
        // Error lines.
        v("ERROR", m, b"ERROR\r\n", Response::Error(ErrorReply::Error)),
        v(
            "CLIENT_ERROR",
            m,
            b"CLIENT_ERROR invalid flag\r\n",
            Response::Error(ErrorReply::Client("invalid flag".into())),
        ),
        v(
            "SERVER_ERROR",
            m,
            b"SERVER_ERROR out of memory storing object\r\n",
            Response::Error(ErrorReply::Server("out of memory storing object".into())),
        ),
        // Batches.
        v(
            "empty batch (a lone mn)",
            Expect::MetaBatch { max: 0 },
            b"MN\r\n",
            Response::MetaBatch(vec![]),
        ),
        v(
            "batch of misses only",
            Expect::MetaBatch { max: 3 },
            b"MN\r\n",
            Response::MetaBatch(vec![]),
        ),
        v(
            "batch with one hit",
            Expect::MetaBatch { max: 2 },
            b"VA 2 kk2\r\nhi\r\nMN\r\n",
            Response::MetaBatch(vec![Ok(reply(Value, Some(b"hi"), |f| {
                f.key = bytes(b"k2")
            }))]),
        ),
        v(
            "batch filled up to max",
            Expect::MetaBatch { max: 3 },
            b"VA 1 O1\r\na\r\nNS O2\r\nNF O3\r\nMN\r\n",
            Response::MetaBatch(vec![
                Ok(reply(Value, Some(b"a"), |f| f.opaque = bytes(b"1"))),
                Ok(reply(NotStored, None, |f| f.opaque = bytes(b"2"))),
                Ok(reply(NotFound, None, |f| f.opaque = bytes(b"3"))),
            ]),
        ),
        v(
            "batch with an error line among replies",
            Expect::MetaBatch { max: 2 },
            b"CLIENT_ERROR bad data chunk\r\nHD O1\r\nMN\r\n",
            Response::MetaBatch(vec![
                Err(ErrorReply::Client("bad data chunk".into())),
                Ok(reply(Success, None, |f| f.opaque = bytes(b"1"))),
            ]),
        ),
        v(
            "batch to a server without meta commands: ERROR for each line, mn too",
            Expect::MetaBatch { max: 2 },
            b"ERROR\r\nERROR\r\nERROR\r\n",
            Response::Error(ErrorReply::Error),
        ),
        v(
            "lone mn to a server without meta commands",
            Expect::MetaBatch { max: 0 },
            b"ERROR\r\n",
            Response::Error(ErrorReply::Error),
        ),
    ]
}

fn all_meta_expects() -> Vec<Expect> {
    vec![
        Expect::Meta,
        Expect::MetaBatch { max: 0 },
        Expect::MetaBatch { max: 1 },
        Expect::MetaBatch { max: 3 },
    ]
}

#[test]
fn every_valid_reply_decodes_whole() {
    for case in valid_replies() {
        let mut buf = BytesMut::from(&case.wire[..]);
        let got = decode(&mut buf, case.expect, &Limits::default());
        assert_eq!(
            got,
            Ok(Some((case.response, case.wire.len()))),
            "{}",
            case.name
        );
        assert!(buf.is_empty(), "{}", case.name);
    }
}

#[test]
fn every_strict_prefix_needs_more_and_leaves_the_buffer() {
    for case in valid_replies() {
        for cut in 0..case.wire.len() {
            let mut buf = BytesMut::from(&case.wire[..cut]);
            let got = decode(&mut buf, case.expect, &Limits::default());
            assert_eq!(got, Ok(None), "{} cut at {cut}", case.name);
            assert_eq!(&buf[..], &case.wire[..cut], "{} cut at {cut}", case.name);
        }
    }
}

#[test]
fn two_replies_back_to_back_decode_one_by_one() {
    let table = valid_replies();
    for a in &table {
        for b in &table {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&a.wire);
            buf.extend_from_slice(&b.wire);
            let ctx = format!("{} then {}", a.name, b.name);
            let first = decode(&mut buf, a.expect, &Limits::default());
            assert_eq!(first, Ok(Some((a.response.clone(), a.wire.len()))), "{ctx}");
            assert_eq!(&buf[..], &b.wire[..], "{ctx}: what is left");
            let second = decode(&mut buf, b.expect, &Limits::default());
            assert_eq!(
                second,
                Ok(Some((b.response.clone(), b.wire.len()))),
                "{ctx}"
            );
            assert!(buf.is_empty(), "{ctx}");
        }
    }
}

#[test]
fn byte_at_a_time_feeding_gives_the_same_replies() {
    let table = valid_replies();
    let stream: Vec<u8> = table.iter().flat_map(|c| c.wire.clone()).collect();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut next = 0;
    for &byte in &stream {
        buf.extend_from_slice(&[byte]);
        let expect = table[next].expect;
        if let Some((response, used)) = decode(&mut buf, expect, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", table[next].name))
        {
            assert!(buf.is_empty(), "{}: a reply ended early", table[next].name);
            got.push((response, used));
            next += 1;
        }
    }
    let want: Vec<_> = table
        .iter()
        .map(|c| (c.response.clone(), c.wire.len()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn text_and_meta_replies_share_one_stream() {
    let mut buf = BytesMut::from(
        &b"VALUE k 0 1\r\na\r\nEND\r\nVA 1 kk\r\nb\r\nSTORED\r\nHD\r\nVA 1\r\nc\r\nMN\r\nDELETED\r\n"[..],
    );
    let limits = Limits::default();
    let mut expects = [
        Expect::Values { max: 1 },
        Expect::Meta,
        Expect::Store,
        Expect::Meta,
        Expect::MetaBatch { max: 1 },
        Expect::Delete,
    ]
    .into_iter();
    let mut kinds = Vec::new();
    for expect in &mut expects {
        let (response, _) = decode(&mut buf, expect, &limits).unwrap().unwrap();
        kinds.push(match response {
            Response::Values(_) => "values",
            Response::Meta(r) => r.status.code(),
            Response::MetaBatch(r) => {
                assert_eq!(r.len(), 1);
                "batch"
            }
            Response::Stored => "stored",
            Response::Deleted => "deleted",
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(kinds, ["values", "VA", "stored", "HD", "batch", "deleted"]);
    assert!(buf.is_empty());
}

// ---- Zero copy ----

#[test]
fn values_keys_and_opaques_are_slices_of_the_received_buffer() {
    let wire = b"VA 5 kuser:1 O77 c9\r\nhello\r\n";
    let mut buf = BytesMut::from(&wire[..]);
    let received = buf.as_ptr_range();
    let Ok(Some((Response::Meta(r), _))) = decode(&mut buf, Expect::Meta, &Limits::default())
    else {
        panic!("not a meta reply");
    };
    let inside = |b: &Bytes| {
        let r = b.as_ptr_range();
        received.start <= r.start && r.end <= received.end
    };
    let value = r.value.as_ref().unwrap();
    assert_eq!((&value[..], inside(value)), (&b"hello"[..], true));
    let key = r.flags.key.as_ref().unwrap();
    assert_eq!((&key[..], inside(key)), (&b"user:1"[..], true));
    let opaque = r.flags.opaque.as_ref().unwrap();
    assert_eq!((&opaque[..], inside(opaque)), (&b"77"[..], true));
    // The value sits exactly where the wire put it: right after the header line.
    let header = wire.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(value.as_ptr(), received.start.wrapping_add(header));

    // In a batch too.
    let wire = b"VA 2 O1\r\nhi\r\nVA 3 O2\r\nyou\r\nMN\r\n";
    let mut buf = BytesMut::from(&wire[..]);
    let received = buf.as_ptr_range();
    let Ok(Some((Response::MetaBatch(rs), _))) =
        decode(&mut buf, Expect::MetaBatch { max: 2 }, &Limits::default())
    else {
        panic!("not a batch");
    };
    for r in rs {
        let v = r.unwrap().value.unwrap();
        let p = v.as_ptr_range();
        assert!(received.start <= p.start && p.end <= received.end);
    }

    // A base64 key is decoded into its own bytes.
    let mut buf = BytesMut::from(&b"EN kYWJj b\r\n"[..]);
    let received = buf.as_ptr_range();
    let Ok(Some((Response::Meta(r), _))) = decode(&mut buf, Expect::Meta, &Limits::default())
    else {
        panic!();
    };
    let key = r.flags.key.unwrap();
    assert_eq!(&key[..], b"abc");
    assert!(!received.contains(&key.as_ptr()));
}

// ---- Limits ----

#[test]
fn oversized_values_are_refused_from_the_header_alone() {
    let default = Limits::default();
    let max = default.max_value_size;
    let four_gib = 4u64 << 30;
    let cases: Vec<(Vec<u8>, Expect, Limits, u64, usize)> = vec![
        (
            format!("VA {four_gib} c1\r\n").into_bytes(),
            Expect::Meta,
            default,
            four_gib,
            max,
        ),
        (
            format!("VA {}\r\n", max + 1).into_bytes(),
            Expect::Meta,
            default,
            max as u64 + 1,
            max,
        ),
        (
            b"VA 11 t5\r\n".to_vec(),
            Expect::Meta,
            Limits::with_max_value_size(10),
            11,
            10,
        ),
        (
            format!("VA {four_gib}\r\n").into_bytes(),
            Expect::MetaBatch { max: 1 },
            default,
            four_gib,
            max,
        ),
        (
            // A second value over the limit is refused as soon as its header is in.
            format!("VA 1\r\nx\r\nVA {four_gib}\r\n").into_bytes(),
            Expect::MetaBatch { max: 2 },
            default,
            four_gib,
            max,
        ),
    ];
    for (header, expect, limits, len, max) in cases {
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            decode(&mut buf, expect, &limits),
            Err(ProtocolError::ReplyTooLarge { len, max }),
            "{}",
            header.escape_ascii()
        );
        assert_eq!(&buf[..], &header[..]);
    }
    // Exactly the limit is fine.
    let limits = Limits::with_max_value_size(10);
    let mut buf = BytesMut::from(&b"VA 10\r\n"[..]);
    assert_eq!(decode(&mut buf, Expect::Meta, &limits), Ok(None));
    buf.extend_from_slice(b"0123456789\r\n");
    assert!(matches!(
        decode(&mut buf, Expect::Meta, &limits),
        Ok(Some((Response::Meta(_), 19)))
    ));
}

#[test]
fn long_lines_are_refused() {
    let limits = Limits::new(1 << 20, 16);
    for expect in all_meta_expects() {
        let long = b"HD kaaaaaaaaaaaaaaaaaaa";
        let mut buf = BytesMut::from(&long[..]);
        assert_eq!(
            decode(&mut buf, expect, &limits),
            Err(ProtocolError::LineTooLong { max: 16 }),
            "{expect:?}"
        );
    }
    // A later line of a batch is bounded too.
    let mut buf = BytesMut::from(&b"HD\r\nHD kaaaaaaaaaaaaaaaaaaaaa"[..]);
    assert_eq!(
        decode(&mut buf, Expect::MetaBatch { max: 3 }, &limits),
        Err(ProtocolError::LineTooLong { max: 16 })
    );
}

// ---- Refusals ----

#[test]
fn malformed_and_unexpected_replies_are_refused_without_consuming() {
    let malformed = |what: &'static str| move |e: &ProtocolError| matches!(e, ProtocolError::MalformedLine { what: w, .. } if *w == what);
    let unexpected = |e: &ProtocolError| matches!(e, ProtocolError::UnexpectedReply { .. });
    let meta = malformed("meta reply");
    type Check = Box<dyn Fn(&ProtocolError) -> bool>;
    let cases: Vec<(&[u8], Expect, Check)> = vec![
        // Not a meta reply at all.
        (b"MN\r\n", Expect::Meta, Box::new(unexpected)),
        (b"STORED\r\n", Expect::Meta, Box::new(unexpected)),
        (
            b"VALUE k 0 1\r\nx\r\nEND\r\n",
            Expect::Meta,
            Box::new(unexpected),
        ),
        (
            b"END\r\n",
            Expect::MetaBatch { max: 1 },
            Box::new(unexpected),
        ),
        (b"hd\r\n", Expect::Meta, Box::new(unexpected)),
        (b"HDc1\r\n", Expect::Meta, Box::new(unexpected)),
        (b"H\r\n", Expect::Meta, Box::new(unexpected)),
        (b"\r\n", Expect::Meta, Box::new(unexpected)),
        (
            b"MN c1\r\n",
            Expect::MetaBatch { max: 1 },
            Box::new(unexpected),
        ),
        // A VA header without a usable length.
        (b"VA\r\n", Expect::Meta, Box::new(meta)),
        (b"VA \r\n", Expect::Meta, Box::new(meta)),
        (b"VA c1\r\n", Expect::Meta, Box::new(malformed("VA"))),
        (b"VA -1\r\n", Expect::Meta, Box::new(malformed("VA"))),
        (
            b"VA 18446744073709551616\r\n",
            Expect::Meta,
            Box::new(malformed("VA")),
        ),
        // Flags that no server writes.
        (b"HD \r\n", Expect::Meta, Box::new(meta)),
        (b"HD  c1\r\n", Expect::Meta, Box::new(meta)),
        (b"HD c1 \r\n", Expect::Meta, Box::new(meta)),
        (b"HD c\r\n", Expect::Meta, Box::new(meta)),
        (b"HD cx\r\n", Expect::Meta, Box::new(meta)),
        (b"HD c1 c2\r\n", Expect::Meta, Box::new(meta)),
        (b"HD f4294967296\r\n", Expect::Meta, Box::new(meta)),
        (b"HD t-2\r\n", Expect::Meta, Box::new(meta)),
        (b"HD h2\r\n", Expect::Meta, Box::new(meta)),
        (b"HD W1\r\n", Expect::Meta, Box::new(meta)),
        (b"HD W W\r\n", Expect::Meta, Box::new(meta)),
        (b"HD k\r\n", Expect::Meta, Box::new(meta)),
        (b"HD 5\r\n", Expect::Meta, Box::new(meta)),
        (b"HD \xff\r\n", Expect::Meta, Box::new(meta)),
        (b"EN kYQ b\r\n", Expect::Meta, Box::new(meta)),
        (b"EN k!!!! b\r\n", Expect::Meta, Box::new(meta)),
        (b"EN b kYh==\r\n", Expect::Meta, Box::new(meta)),
        (b"VA 1 bb\r\nx\r\n", Expect::Meta, Box::new(meta)),
        (
            b"NF c1 c1\r\n",
            Expect::MetaBatch { max: 1 },
            Box::new(meta),
        ),
        // Lines that end with LF alone.
        (
            b"HD\n",
            Expect::Meta,
            Box::new(malformed("reply (no CR before LF)")),
        ),
        (
            b"HD\r\nHD\n",
            Expect::MetaBatch { max: 2 },
            Box::new(malformed("reply (no CR before LF)")),
        ),
    ];
    for (wire, expect, check) in cases {
        let mut buf = BytesMut::from(wire);
        let got = decode(&mut buf, expect, &Limits::default());
        match &got {
            Err(e) if check(e) => {}
            other => panic!("{}: {other:?}", wire.escape_ascii()),
        }
        assert_eq!(&buf[..], wire, "{}", wire.escape_ascii());
    }
}

#[test]
fn a_value_block_must_end_where_its_header_says() {
    for (wire, len) in [
        (&b"VA 3\r\nabcd\r\n"[..], 3),
        (b"VA 3\r\nab\r\n\r\n", 3),
        (b"VA 3 c1\r\nabc\n\n", 3),
        (b"VA 0\r\nxx", 0),
        (b"VA 2\r\nab\rX", 2),
    ] {
        for expect in [Expect::Meta, Expect::MetaBatch { max: 1 }] {
            let mut buf = BytesMut::from(wire);
            assert_eq!(
                decode(&mut buf, expect, &Limits::default()),
                Err(ProtocolError::BadBlockEnd { len }),
                "{}",
                wire.escape_ascii()
            );
            assert_eq!(&buf[..], wire);
        }
    }
}

#[test]
fn a_batch_with_more_replies_than_requests_is_refused() {
    for (wire, max) in [
        (&b"HD\r\nHD\r\nMN\r\n"[..], 1),
        (b"HD\r\n", 0),
        (b"VA 1\r\na\r\nEN\r\nNF\r\n", 2),
        (b"CLIENT_ERROR x\r\nCLIENT_ERROR y\r\n", 1),
        // ERROR in place of MN ends the batch only once `max` replies came; one more than that
        // is not an old server's answer.
        (b"HD\r\nHD\r\nERROR\r\n", 1),
    ] {
        let mut buf = BytesMut::from(wire);
        assert_eq!(
            decode(&mut buf, Expect::MetaBatch { max }, &Limits::default()),
            Err(ProtocolError::TooManyReplies { max }),
            "{}",
            wire.escape_ascii()
        );
        assert_eq!(&buf[..], wire);
    }
    // Before the count is reached, ERROR is one reply of the batch.
    let mut buf = BytesMut::from(&b"ERROR\r\nHD\r\nMN\r\n"[..]);
    assert_eq!(
        decode(&mut buf, Expect::MetaBatch { max: 2 }, &Limits::default()),
        Ok(Some((
            Response::MetaBatch(vec![
                Err(ErrorReply::Error),
                Ok(reply(MetaStatus::Success, None, |_| {}))
            ]),
            15
        )))
    );
}

// ---- The pipeline carries meta frames as they are ----

/// A failed request, for this test's callers (none fails here).
#[derive(Debug, Clone)]
struct Failed;

struct Slot(Rc<RefCell<Vec<Result<Response, Failed>>>>);

impl Caller for Slot {
    type Error = Failed;

    fn is_gone(&self) -> bool {
        false
    }
    fn answer(self, outcome: Result<Response, Failed>) {
        self.0.borrow_mut().push(outcome);
    }
}

#[test]
fn the_pipeline_matches_meta_frames_with_their_replies() {
    use memcached_autodiscovery_proto::protocol::meta::{
        encode_batch, MetaGet, MetaRequest, MetaSet,
    };
    let limits = Limits::default();
    let answers = Rc::new(RefCell::new(Vec::new()));
    let mut pipeline = Pipeline::new(limits);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut push = |frame: BytesMut, expect| {
        pipeline.push(Pending::new(
            frame.freeze(),
            expect,
            deadline,
            false,
            Slot(Rc::clone(&answers)),
        ));
    };
    let mut frame = BytesMut::new();
    let expect = MetaRequest::from(MetaGet::new("k1").value().vivify(30))
        .encode(&mut frame, &limits)
        .unwrap();
    push(frame, expect);
    let mut frame = BytesMut::new();
    let batch = [
        MetaRequest::from(MetaGet::new("a").value().return_key()),
        MetaRequest::from(MetaSet::new("b", b"v")),
    ];
    let expect = encode_batch(&batch, &mut frame, &limits).unwrap();
    push(frame, expect);
    let mut frame = BytesMut::new();
    let expect = MetaRequest::from(MetaGet::new("k2"))
        .encode(&mut frame, &limits)
        .unwrap();
    push(frame, expect);
    assert_eq!(
        pipeline.unwritten(),
        b"mg k1 N30 v\r\nmg a v k q\r\nms b 1 q\r\nv\r\nmn\r\nmg k2\r\n"
    );
    let n = pipeline.unwritten().len();
    pipeline.written(n);
    // The replies arrive in two reads, cut inside the batch.
    let wire = b"VA 0 W\r\n\r\nVA 1 ka\r\nx\r\nMN\r\nEN\r\n";
    pipeline.read_buffer().extend_from_slice(&wire[..17]);
    pipeline.dispatch().unwrap();
    assert_eq!(answers.borrow().len(), 1);
    pipeline.read_buffer().extend_from_slice(&wire[17..]);
    pipeline.dispatch().unwrap();
    assert!(pipeline.is_idle());
    let answers = answers.borrow();
    let got: Vec<&Response> = answers.iter().map(|a| a.as_ref().unwrap()).collect();
    assert!(
        matches!(got[0], Response::Meta(r) if r.flags.win && r.value.as_deref() == Some(&b""[..]))
    );
    assert!(matches!(got[1], Response::MetaBatch(rs) if rs.len() == 1));
    assert!(matches!(got[2], Response::Meta(r) if r.status == MetaStatus::Miss));
}
