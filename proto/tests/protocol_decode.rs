//! Table-driven tests of the streaming reply decoder: every reply kind under every `Expect`, the
//! streaming contract (prefixes, back-to-back replies, byte-at-a-time feeding), the size limits,
//! the refusals, and that values are slices of the received buffer.

use bytes::{Bytes, BytesMut};
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::protocol::{decode, ErrorReply, Expect, Item, Limits, Response};

struct Valid {
    name: &'static str,
    expect: Expect,
    wire: Vec<u8>,
    response: Response,
}

fn item(key: &str, flags: u32, cas: Option<u64>, value: &[u8]) -> Item {
    Item::new(
        Bytes::copy_from_slice(key.as_bytes()),
        flags,
        cas,
        Bytes::copy_from_slice(value),
    )
}

fn stats(pairs: &[(&str, &str)]) -> Response {
    Response::Stats(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn all_expects() -> Vec<Expect> {
    vec![
        Expect::Values { max: 1 },
        Expect::Values { max: 3 },
        Expect::Store,
        Expect::Delete,
        Expect::Arith,
        Expect::Touch,
        Expect::Ok,
        Expect::Version,
        Expect::Stats,
        Expect::Config,
    ]
}

fn valid_replies() -> Vec<Valid> {
    let v = |name, expect, wire: &[u8], response| Valid {
        name,
        expect,
        wire: wire.to_vec(),
        response,
    };
    let config_block: &[u8] = b"7\nnode-1|10.0.0.1|11211 node-2||11212\n";
    let mut config_wire = format!("CONFIG cluster 0 {}\r\n", config_block.len()).into_bytes();
    config_wire.extend_from_slice(config_block);
    config_wire.extend_from_slice(b"\r\nEND\r\n");
    let big = vec![b'x'; 5000];
    let mut big_wire = b"VALUE big 1 5000\r\n".to_vec();
    big_wire.extend_from_slice(&big);
    big_wire.extend_from_slice(b"\r\nEND\r\n");

    let mut table = vec![
        // Retrievals.
        v(
            "one value without CAS",
            Expect::Values { max: 1 },
            b"VALUE k 5 3\r\nabc\r\nEND\r\n",
            Response::Values(vec![item("k", 5, None, b"abc")]),
        ),
        v(
            "one value with CAS",
            Expect::Values { max: 1 },
            b"VALUE k 0 2 99\r\nhi\r\nEND\r\n",
            Response::Values(vec![item("k", 0, Some(99), b"hi")]),
        ),
        v(
            "CAS and flags at their maximum",
            Expect::Values { max: 1 },
            b"VALUE k 4294967295 1 18446744073709551615\r\nz\r\nEND\r\n",
            Response::Values(vec![item("k", u32::MAX, Some(u64::MAX), b"z")]),
        ),
        v(
            "empty value",
            Expect::Values { max: 1 },
            b"VALUE e 0 0\r\n\r\nEND\r\n",
            Response::Values(vec![item("e", 0, None, b"")]),
        ),
        v(
            "value holding CRLF and END",
            Expect::Values { max: 1 },
            b"VALUE bin 0 9\r\n\r\nEND\r\n\0\xff\r\nEND\r\n",
            Response::Values(vec![item("bin", 0, None, b"\r\nEND\r\n\0\xff")]),
        ),
        v(
            "many values",
            Expect::Values { max: 3 },
            b"VALUE a 1 1\r\n1\r\nVALUE bb 2 2\r\n22\r\nVALUE ccc 3 3\r\n333\r\nEND\r\n",
            Response::Values(vec![
                item("a", 1, None, b"1"),
                item("bb", 2, None, b"22"),
                item("ccc", 3, None, b"333"),
            ]),
        ),
        v(
            "fewer values than keys (misses are absent)",
            Expect::Values { max: 4 },
            b"VALUE b 0 1 7\r\nB\r\nVALUE d 0 1 8\r\nD\r\nEND\r\n",
            Response::Values(vec![item("b", 0, Some(7), b"B"), item("d", 0, Some(8), b"D")]),
        ),
        v(
            "UTF-8 key",
            Expect::Values { max: 1 },
            "VALUE café 0 1\r\nx\r\nEND\r\n".as_bytes(),
            Response::Values(vec![item("café", 0, None, b"x")]),
        ),
        v(
            "END alone (all missed)",
            Expect::Values { max: 2 },
            b"END\r\n",
            Response::Values(vec![]),
        ),
        v(
            "a value then SERVER_ERROR ends the reply",
            Expect::Values { max: 2 },
            b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\n",
            Response::Error(ErrorReply::Server(
                "out of memory writing get response".into(),
            )),
        ),
        // Storage.
        v("STORED", Expect::Store, b"STORED\r\n", Response::Stored),
        v(
            "NOT_STORED",
            Expect::Store,
            b"NOT_STORED\r\n",
            Response::NotStored,
        ),
        v("EXISTS", Expect::Store, b"EXISTS\r\n", Response::Exists),
        v(
            "NOT_FOUND to cas",
            Expect::Store,
            b"NOT_FOUND\r\n",
            Response::NotFound,
        ),
        // Delete, touch, arithmetic.
        v("DELETED", Expect::Delete, b"DELETED\r\n", Response::Deleted),
        v(
            "NOT_FOUND to delete",
            Expect::Delete,
            b"NOT_FOUND\r\n",
            Response::NotFound,
        ),
        v("TOUCHED", Expect::Touch, b"TOUCHED\r\n", Response::Touched),
        v(
            "NOT_FOUND to touch",
            Expect::Touch,
            b"NOT_FOUND\r\n",
            Response::NotFound,
        ),
        v("zero", Expect::Arith, b"0\r\n", Response::Number(0)),
        v("a number", Expect::Arith, b"42\r\n", Response::Number(42)),
        v(
            "u64::MAX",
            Expect::Arith,
            b"18446744073709551615\r\n",
            Response::Number(u64::MAX),
        ),
        v(
            "space-padded number after decr",
            Expect::Arith,
            b"9  \r\n",
            Response::Number(9),
        ),
        v(
            "NOT_FOUND to incr",
            Expect::Arith,
            b"NOT_FOUND\r\n",
            Response::NotFound,
        ),
        // flush_all, version, stats.
        v("OK", Expect::Ok, b"OK\r\n", Response::Ok),
        v(
            "VERSION",
            Expect::Version,
            b"VERSION 1.6.18\r\n",
            Response::Version("1.6.18".into()),
        ),
        v(
            "VERSION with a suffix",
            Expect::Version,
            b"VERSION 1.4.14 (Ubuntu)\r\n",
            Response::Version("1.4.14 (Ubuntu)".into()),
        ),
        v(
            "STAT lines",
            Expect::Stats,
            b"STAT pid 4242\r\nSTAT version 1.6.18\r\nSTAT rusage_user 0.1 0.2\r\nSTAT flag\r\nEND\r\n",
            stats(&[
                ("pid", "4242"),
                ("version", "1.6.18"),
                ("rusage_user", "0.1 0.2"),
                ("flag", ""),
            ]),
        ),
        v("no STAT lines", Expect::Stats, b"END\r\n", stats(&[])),
        // Discovery.
        v(
            "CONFIG block",
            Expect::Config,
            &config_wire,
            Response::Config(Some(Bytes::copy_from_slice(config_block))),
        ),
        v(
            "END alone: no config stored",
            Expect::Config,
            b"END\r\n",
            Response::Config(None),
        ),
        v(
            "5000-byte value",
            Expect::Values { max: 1 },
            &big_wire,
            Response::Values(vec![item("big", 1, None, &big)]),
        ),
    ];
    // The error replies are answers to any request.
    for expect in all_expects() {
        table.push(v(
            "ERROR",
            expect,
            b"ERROR\r\n",
            Response::Error(ErrorReply::Error),
        ));
        table.push(v(
            "CLIENT_ERROR",
            expect,
            b"CLIENT_ERROR bad data chunk\r\n",
            Response::Error(ErrorReply::Client("bad data chunk".into())),
        ));
        table.push(v(
            "SERVER_ERROR",
            expect,
            b"SERVER_ERROR object too large for cache\r\n",
            Response::Error(ErrorReply::Server("object too large for cache".into())),
        ));
    }
    table
}

#[test]
fn every_valid_reply_decodes_whole() {
    for case in valid_replies() {
        let mut buf = BytesMut::from(&case.wire[..]);
        let got = decode(&mut buf, case.expect, &Limits::default());
        assert_eq!(
            got,
            Ok(Some((case.response.clone(), case.wire.len()))),
            "{} ({:?})",
            case.name,
            case.expect
        );
        assert!(buf.is_empty(), "{}: bytes left over", case.name);
    }
}

#[test]
fn every_strict_prefix_needs_more_and_leaves_the_buffer_alone() {
    for case in valid_replies() {
        for cut in 0..case.wire.len() {
            let prefix = &case.wire[..cut];
            let mut buf = BytesMut::from(prefix);
            let got = decode(&mut buf, case.expect, &Limits::default());
            assert_eq!(got, Ok(None), "{} cut at {cut}", case.name);
            assert_eq!(
                &buf[..],
                prefix,
                "{} cut at {cut}: buffer changed",
                case.name
            );
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
            assert_eq!(
                first,
                Ok(Some((a.response.clone(), a.wire.len()))),
                "{ctx}: first"
            );
            assert_eq!(&buf[..], &b.wire[..], "{ctx}: what is left");
            let second = decode(&mut buf, b.expect, &Limits::default());
            assert_eq!(
                second,
                Ok(Some((b.response.clone(), b.wire.len()))),
                "{ctx}: second"
            );
            assert!(buf.is_empty(), "{ctx}");
        }
    }
}

#[test]
fn many_replies_in_one_buffer_decode_in_order() {
    let table = valid_replies();
    let mut buf = BytesMut::new();
    for case in &table {
        buf.extend_from_slice(&case.wire);
    }
    let total = buf.len();
    let mut consumed = 0;
    for case in &table {
        let (response, used) = decode(&mut buf, case.expect, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name))
            .unwrap_or_else(|| panic!("{}: incomplete", case.name));
        assert_eq!(response, case.response, "{}", case.name);
        assert_eq!(used, case.wire.len(), "{}", case.name);
        consumed += used;
        assert_eq!(buf.len(), total - consumed, "{}", case.name);
    }
    assert!(buf.is_empty());
    assert_eq!(
        decode(&mut buf, Expect::Store, &Limits::default()),
        Ok(None)
    );
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

// ---- Limits ----

fn header_only(
    header: &[u8],
    expect: Expect,
    limits: &Limits,
) -> Result<Option<usize>, ProtocolError> {
    let mut buf = BytesMut::from(header);
    let got = decode(&mut buf, expect, limits).map(|r| r.map(|(_, n)| n));
    if got.as_ref().map_or(true, Option::is_none) {
        assert_eq!(&buf[..], header, "buffer changed");
    }
    got
}

#[test]
fn oversized_blocks_are_refused_from_the_header_alone() {
    let default = Limits::default();
    let max = default.max_value_size;
    let four_gib = 4u64 << 30;
    let cases: Vec<(Vec<u8>, Expect, Limits, u64, usize)> = vec![
        (
            format!("VALUE k 0 {four_gib}\r\n").into_bytes(),
            Expect::Values { max: 1 },
            default,
            four_gib,
            max,
        ),
        (
            format!("CONFIG cluster 0 {four_gib}\r\n").into_bytes(),
            Expect::Config,
            default,
            four_gib,
            max,
        ),
        (
            format!("VALUE k 0 {}\r\n", max + 1).into_bytes(),
            Expect::Values { max: 1 },
            default,
            max as u64 + 1,
            max,
        ),
        (
            format!("VALUE k 0 {} 5\r\n", max + 1).into_bytes(),
            Expect::Values { max: 1 },
            default,
            max as u64 + 1,
            max,
        ),
        (
            format!("CONFIG cluster 0 {}\r\n", max + 1).into_bytes(),
            Expect::Config,
            default,
            max as u64 + 1,
            max,
        ),
        (
            b"VALUE k 0 11\r\n".to_vec(),
            Expect::Values { max: 1 },
            Limits::with_max_value_size(10),
            11,
            10,
        ),
        (
            // The largest limit is clamped to memcached's own 1 GiB ceiling.
            format!("VALUE k 0 {}\r\n", (1u64 << 30) + 1).into_bytes(),
            Expect::Values { max: 1 },
            Limits::with_max_value_size(usize::MAX),
            (1 << 30) + 1,
            1 << 30,
        ),
        (
            // A second value over the limit is refused as soon as its header is in.
            format!("VALUE a 0 1\r\nx\r\nVALUE b 0 {four_gib}\r\n").into_bytes(),
            Expect::Values { max: 2 },
            default,
            four_gib,
            max,
        ),
    ];
    for (header, expect, limits, len, max) in cases {
        assert_eq!(
            header_only(&header, expect, &limits),
            Err(ProtocolError::ReplyTooLarge { len, max }),
            "{}",
            header.escape_ascii()
        );
    }
}

#[test]
fn a_block_of_exactly_the_limit_is_accepted() {
    let limits = Limits::with_max_value_size(10);
    assert_eq!(
        header_only(b"VALUE k 0 10\r\n", Expect::Values { max: 1 }, &limits),
        Ok(None)
    );
    let mut buf = BytesMut::from(&b"VALUE k 0 10\r\n0123456789\r\nEND\r\n"[..]);
    let got = decode(&mut buf, Expect::Values { max: 1 }, &limits);
    assert_eq!(
        got,
        Ok(Some((
            Response::Values(vec![item("k", 0, None, b"0123456789")]),
            31
        )))
    );
    assert_eq!(
        header_only(b"CONFIG cluster 0 10\r\n", Expect::Config, &limits),
        Ok(None)
    );
}

#[test]
fn stats_replies_are_bounded_by_the_value_limit() {
    let limits = Limits::with_max_value_size(32);
    let wire = b"STAT aaaa 111111\r\nSTAT bbbb 222222\r\nSTAT cccc 333333\r\nEND\r\n";
    let mut buf = BytesMut::from(&wire[..]);
    assert!(matches!(
        decode(&mut buf, Expect::Stats, &limits),
        Err(ProtocolError::ReplyTooLarge { max: 32, .. })
    ));
    assert_eq!(&buf[..], &wire[..]);
    let mut buf = BytesMut::from(&wire[..]);
    assert!(matches!(
        decode(&mut buf, Expect::Stats, &Limits::default()),
        Ok(Some((Response::Stats(ref s), n))) if s.len() == 3 && n == wire.len()
    ));
}

#[test]
fn lines_longer_than_the_limit_are_refused() {
    let limits = Limits::new(1 << 20, 16);
    let long = [b'A'; 18];
    // Without a terminator: once max_line_size + 2 bytes hold no LF, no valid line can follow.
    for expect in all_expects() {
        let mut buf = BytesMut::from(&long[..]);
        assert_eq!(
            decode(&mut buf, expect, &limits),
            Err(ProtocolError::LineTooLong { max: 16 }),
            "{expect:?}"
        );
        assert_eq!(&buf[..], &long[..]);
    }
    // A line of 17 bytes is one too many even when its CRLF is there.
    let mut buf = BytesMut::from(&b"VERSION 123456789\r\n"[..]);
    assert_eq!(
        decode(&mut buf, Expect::Version, &limits),
        Err(ProtocolError::LineTooLong { max: 16 })
    );
    // 16 bytes is fine.
    let mut buf = BytesMut::from(&b"VERSION 12345678\r\n"[..]);
    assert_eq!(
        decode(&mut buf, Expect::Version, &limits),
        Ok(Some((Response::Version("12345678".into()), 18)))
    );
    // Later lines of a multi-line reply are bounded too.
    let mut buf = BytesMut::from(&b"STAT a 1\r\nSTAT bbbbbbbbbbbbbbbbbbbbbb"[..]);
    assert_eq!(
        decode(&mut buf, Expect::Stats, &limits),
        Err(ProtocolError::LineTooLong { max: 16 })
    );
    let mut buf = BytesMut::from(&b"VALUE k 0 1\r\nx\r\nXXXXXXXXXXXXXXXXXXXXXXXX"[..]);
    assert_eq!(
        decode(&mut buf, Expect::Values { max: 2 }, &limits),
        Err(ProtocolError::LineTooLong { max: 16 })
    );
}

// ---- Refusals ----

#[test]
fn refusals_say_why_and_leave_the_buffer_alone() {
    let unexpected = |expected: &'static str, line: &str| ProtocolError::UnexpectedReply {
        expected,
        line: line.into(),
    };
    let malformed = |what: &'static str, line: &str| ProtocolError::MalformedLine {
        what,
        line: line.into(),
    };
    let bare_lf = |line: &str| malformed("reply (no CR before LF)", line);
    let cases: Vec<(&[u8], Expect, ProtocolError)> = vec![
        // More values than keys.
        (
            b"VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n",
            Expect::Values { max: 1 },
            ProtocolError::TooManyValues { max: 1 },
        ),
        (
            b"VALUE a 0 1\r\n",
            Expect::Values { max: 0 },
            ProtocolError::TooManyValues { max: 0 },
        ),
        (
            b"VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nVALUE c 0 1\r\n",
            Expect::Values { max: 2 },
            ProtocolError::TooManyValues { max: 2 },
        ),
        // Data block not followed by CRLF.
        (
            b"VALUE k 0 2\r\nabc\r\nEND\r\n",
            Expect::Values { max: 1 },
            ProtocolError::BadBlockEnd { len: 2 },
        ),
        (
            b"VALUE k 0 3\r\nab\r\nEND\r\n",
            Expect::Values { max: 1 },
            ProtocolError::BadBlockEnd { len: 3 },
        ),
        (
            b"VALUE k 0 1\r\nx\nEND\r\n",
            Expect::Values { max: 1 },
            ProtocolError::BadBlockEnd { len: 1 },
        ),
        (
            b"CONFIG cluster 0 4\r\n1\nh||1\n\r\nEND\r\n",
            Expect::Config,
            ProtocolError::BadBlockEnd { len: 4 },
        ),
        // Replies that do not fit the request.
        (
            b"DELETED\r\n",
            Expect::Store,
            unexpected("a storage command", "DELETED"),
        ),
        (
            b"TOUCHED\r\n",
            Expect::Store,
            unexpected("a storage command", "TOUCHED"),
        ),
        (
            b"STORED\r\n",
            Expect::Delete,
            unexpected("delete", "STORED"),
        ),
        (
            b"EXISTS\r\n",
            Expect::Delete,
            unexpected("delete", "EXISTS"),
        ),
        (
            b"DELETED\r\n",
            Expect::Touch,
            unexpected("touch", "DELETED"),
        ),
        (
            b"NOT_FOUND\r\n",
            Expect::Ok,
            unexpected("flush_all", "NOT_FOUND"),
        ),
        (
            b"STORED\r\n",
            Expect::Arith,
            unexpected("incr/decr", "STORED"),
        ),
        (b"-1\r\n", Expect::Arith, unexpected("incr/decr", "-1")),
        (b"END\r\n", Expect::Version, unexpected("version", "END")),
        (
            b"VERSION\r\n",
            Expect::Version,
            unexpected("version", "VERSION"),
        ),
        (b"OK\r\n", Expect::Version, unexpected("version", "OK")),
        (
            b"STORED\r\n",
            Expect::Values { max: 1 },
            unexpected("a retrieval", "STORED"),
        ),
        (
            b"CONFIG cluster 0 1\r\n",
            Expect::Values { max: 1 },
            unexpected("a retrieval", "CONFIG cluster 0 1"),
        ),
        (
            b"VALUE AmazonElastiCache:cluster 0 1\r\n",
            Expect::Config,
            unexpected("config get", "VALUE AmazonElastiCache:cluster 0 1"),
        ),
        (
            b"STAT a b\r\n",
            Expect::Config,
            unexpected("config get", "STAT a b"),
        ),
        (
            b"VALUE k 0 1\r\n",
            Expect::Stats,
            unexpected("stats", "VALUE k 0 1"),
        ),
        (
            b"STAT a 1\r\nENDING\r\n",
            Expect::Stats,
            unexpected("stats", "ENDING"),
        ),
        (
            b"CONFIG cluster 0 1\r\nx\r\nEND \r\n",
            Expect::Config,
            unexpected("END after the config block", "END "),
        ),
        (
            b"stored\r\n",
            Expect::Store,
            unexpected("a storage command", "stored"),
        ),
        // Malformed headers and numbers.
        (
            b"18446744073709551616\r\n",
            Expect::Arith,
            malformed("number", "18446744073709551616"),
        ),
        (b"12a\r\n", Expect::Arith, malformed("number", "12a")),
        (
            b"VALUE k abc 1\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k abc 1"),
        ),
        (
            b"VALUE k 4294967296 1\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k 4294967296 1"),
        ),
        (
            b"VALUE k 0 1 2 3\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k 0 1 2 3"),
        ),
        (
            b"VALUE k 0\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k 0"),
        ),
        (
            b"VALUE k  0 1\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k  0 1"),
        ),
        (
            b"VALUE k 0 -1\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k 0 -1"),
        ),
        (
            b"VALUE k 0 1 x\r\n",
            Expect::Values { max: 1 },
            malformed("VALUE", "VALUE k 0 1 x"),
        ),
        (
            b"CONFIG other 0 1\r\n",
            Expect::Config,
            malformed("CONFIG", "CONFIG other 0 1"),
        ),
        (
            b"CONFIG cluster x 1\r\n",
            Expect::Config,
            malformed("CONFIG", "CONFIG cluster x 1"),
        ),
        (
            b"CONFIG cluster 0\r\n",
            Expect::Config,
            malformed("CONFIG", "CONFIG cluster 0"),
        ),
        (
            b"CONFIG cluster 0 1x\r\n",
            Expect::Config,
            malformed("CONFIG", "CONFIG cluster 0 1x"),
        ),
        (b"STAT  1\r\n", Expect::Stats, malformed("STAT", "STAT  1")),
        // Bare LF line ends.
        (b"STORED\n", Expect::Store, bare_lf("STORED")),
        (b"END\n", Expect::Config, bare_lf("END")),
        (b"ERROR\n", Expect::Config, bare_lf("ERROR")),
        (b"\n", Expect::Ok, bare_lf("")),
        (b"VERSION 1.6\n", Expect::Version, bare_lf("VERSION 1.6")),
        (
            b"VALUE k 0 1\nx\r\nEND\r\n",
            Expect::Values { max: 1 },
            bare_lf("VALUE k 0 1"),
        ),
        (
            b"VALUE k 0 1\r\nx\r\nEND\n",
            Expect::Values { max: 1 },
            bare_lf("END"),
        ),
        (b"STAT a 1\nEND\r\n", Expect::Stats, bare_lf("STAT a 1")),
        (
            b"CONFIG cluster 0 1\r\nx\r\nEND\n",
            Expect::Config,
            bare_lf("END"),
        ),
    ];
    for (wire, expect, error) in cases {
        let mut buf = BytesMut::from(wire);
        assert_eq!(
            decode(&mut buf, expect, &Limits::default()),
            Err(error),
            "{} ({expect:?})",
            wire.escape_ascii()
        );
        assert_eq!(&buf[..], wire, "{}: buffer changed", wire.escape_ascii());
    }
}

#[test]
fn long_offending_lines_are_cut_in_errors() {
    let mut wire = vec![b'Q'; 200];
    wire.extend_from_slice(b"\r\n");
    let mut buf = BytesMut::from(&wire[..]);
    match decode(&mut buf, Expect::Store, &Limits::default()) {
        Err(ProtocolError::UnexpectedReply { line, .. }) => {
            assert!(line.starts_with(&"Q".repeat(64)), "{line}");
            assert!(line.chars().filter(|&c| c == 'Q').count() == 64, "{line}");
        }
        other => panic!("{other:?}"),
    }
}

// ---- Zero copy ----

fn points_into(slice: &Bytes, base: *const u8, len: usize) -> bool {
    let start = base as usize;
    let p = slice.as_ptr() as usize;
    p >= start && p + slice.len() <= start + len
}

#[test]
fn values_are_slices_of_the_received_buffer() {
    let wire = b"STORED\r\nVALUE k1 0 5\r\nhello\r\nVALUE k2 0 5 1\r\nworld\r\nEND\r\n";
    let mut buf = BytesMut::with_capacity(wire.len());
    buf.extend_from_slice(wire);
    let (base, len) = (buf.as_ptr(), buf.len());
    let limits = Limits::default();
    assert_eq!(
        decode(&mut buf, Expect::Store, &limits),
        Ok(Some((Response::Stored, 8)))
    );
    let Some((Response::Values(items), _)) =
        decode(&mut buf, Expect::Values { max: 2 }, &limits).unwrap()
    else {
        panic!("expected values");
    };
    assert_eq!(items.len(), 2);
    for (i, item) in items.iter().enumerate() {
        assert!(points_into(&item.value, base, len), "value {i} was copied");
        assert!(points_into(&item.key, base, len), "key {i} was copied");
    }
    // And precisely where the value sits in the frame.
    assert_eq!(items[0].value.as_ptr() as usize - base as usize, 22);
    assert_eq!(&items[1].value[..], b"world");

    let block = b"3\nh||1\n";
    let mut wire = format!("CONFIG cluster 0 {}\r\n", block.len()).into_bytes();
    wire.extend_from_slice(block);
    wire.extend_from_slice(b"\r\nEND\r\n");
    let mut buf = BytesMut::from(&wire[..]);
    let (base, len) = (buf.as_ptr(), buf.len());
    let Some((Response::Config(Some(got)), _)) = decode(&mut buf, Expect::Config, &limits).unwrap()
    else {
        panic!("expected a config block");
    };
    assert_eq!(&got[..], block);
    assert!(points_into(&got, base, len), "config block was copied");
}

#[test]
fn limits_set_by_hand_to_usize_max_do_not_overflow() {
    // `Limits` has public fields; the arithmetic on them must not overflow (it used to panic in
    // debug builds and misframe in release builds).
    let mut huge = Limits::default();
    huge.max_value_size = usize::MAX;
    huge.max_line_size = usize::MAX;
    let mut buf = BytesMut::from(&b"VALUE k 0 18446744073709551615\r\nabc"[..]);
    assert_eq!(decode(&mut buf, Expect::Values { max: 1 }, &huge), Ok(None));
    let mut buf = BytesMut::from(&b"CONFIG cluster 0 18446744073709551615\r\n1\n"[..]);
    assert_eq!(decode(&mut buf, Expect::Config, &huge), Ok(None));
    let mut buf = BytesMut::from(&b"STORED"[..]);
    assert_eq!(decode(&mut buf, Expect::Store, &huge), Ok(None));
    buf.extend_from_slice(b"\r\n");
    assert_eq!(
        decode(&mut buf, Expect::Store, &huge),
        Ok(Some((Response::Stored, 8)))
    );
    let mut buf = BytesMut::from(&b"VALUE k 0 2\r\nhi\r\nEND\r\n"[..]);
    assert_eq!(
        decode(&mut buf, Expect::Values { max: 1 }, &huge),
        Ok(Some((
            Response::Values(vec![item("k", 0, None, b"hi")]),
            22
        )))
    );
}
