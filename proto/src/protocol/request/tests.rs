//! Unit tests of the classic request encoder: one table row per command with its exact wire
//! form, refused requests and decimal edges.

use super::*;

fn enc(r: Request<'_>) -> Result<Vec<u8>, ProtocolError> {
    let mut buf = BytesMut::new();
    r.encode(&mut buf, &Limits::default())?;
    Ok(buf.to_vec())
}

#[test]
fn every_command_encodes_to_its_wire_form() {
    let keys: &[&[u8]] = &[b"a", b"b"];
    let table: Vec<(Request<'_>, &[u8])> = vec![
        (
            Request::Retrieve {
                kind: Retrieval::Get,
                keys: &keys[..1],
            },
            b"get a\r\n",
        ),
        (
            Request::Retrieve {
                kind: Retrieval::Get,
                keys,
            },
            b"get a b\r\n",
        ),
        (
            Request::Retrieve {
                kind: Retrieval::Gets,
                keys,
            },
            b"gets a b\r\n",
        ),
        (
            Request::Retrieve {
                kind: Retrieval::Gat(30),
                keys,
            },
            b"gat 30 a b\r\n",
        ),
        (
            Request::Retrieve {
                kind: Retrieval::Gats(0),
                keys: &keys[1..],
            },
            b"gats 0 b\r\n",
        ),
        (
            Request::Store {
                mode: StoreMode::Set,
                key: b"k",
                flags: 7,
                exptime: 0,
                value: b"hello",
            },
            b"set k 7 0 5\r\nhello\r\n",
        ),
        (
            Request::Store {
                mode: StoreMode::Add,
                key: b"k",
                flags: 0,
                exptime: 1,
                value: b"",
            },
            b"add k 0 1 0\r\n\r\n",
        ),
        (
            Request::Store {
                mode: StoreMode::Replace,
                key: b"k",
                flags: u32::MAX,
                exptime: 2,
                value: b"x",
            },
            b"replace k 4294967295 2 1\r\nx\r\n",
        ),
        (
            Request::Store {
                mode: StoreMode::Append,
                key: b"k",
                flags: 0,
                exptime: 0,
                value: b"\r\n",
            },
            b"append k 0 0 2\r\n\r\n\r\n",
        ),
        (
            Request::Store {
                mode: StoreMode::Prepend,
                key: b"k",
                flags: 0,
                exptime: 0,
                value: b"p",
            },
            b"prepend k 0 0 1\r\np\r\n",
        ),
        (
            Request::Cas {
                key: b"k",
                flags: 1,
                exptime: 2,
                value: b"v",
                cas: u64::MAX,
            },
            b"cas k 1 2 1 18446744073709551615\r\nv\r\n",
        ),
        (Request::Delete { key: b"k" }, b"delete k\r\n"),
        (
            Request::Incr {
                key: b"n",
                delta: 5,
            },
            b"incr n 5\r\n",
        ),
        (
            Request::Decr {
                key: b"n",
                delta: 0,
            },
            b"decr n 0\r\n",
        ),
        (
            Request::Touch {
                key: b"k",
                exptime: 10,
            },
            b"touch k 10\r\n",
        ),
        (Request::FlushAll { delay: None }, b"flush_all\r\n"),
        (Request::FlushAll { delay: Some(5) }, b"flush_all 5\r\n"),
        (Request::Version, b"version\r\n"),
        (Request::Stats { arg: None }, b"stats\r\n"),
        (
            Request::Stats {
                arg: Some(b"settings"),
            },
            b"stats settings\r\n",
        ),
        (Request::ConfigGetCluster, b"config get cluster\r\n"),
        (
            Request::LegacyConfigGet,
            b"get AmazonElastiCache:cluster\r\n",
        ),
    ];
    for (req, wire) in table {
        assert_eq!(enc(req).unwrap(), wire, "{req:?}");
    }
}

#[test]
fn refused_requests_leave_the_buffer_untouched() {
    let mut buf = BytesMut::from(&b"get ok\r\n"[..]);
    let bad: &[&[u8]] = &[b"ok", b"a\r\nflush_all"];
    let limits = Limits::with_max_value_size(4);
    for req in [
        Request::Retrieve {
            kind: Retrieval::Get,
            keys: bad,
        },
        Request::Retrieve {
            kind: Retrieval::Get,
            keys: &[],
        },
        Request::Delete { key: b"" },
        Request::Delete { key: &[b'x'; 251] },
        Request::Touch {
            key: b"a b",
            exptime: 0,
        },
        Request::Incr {
            key: b"a\0",
            delta: 1,
        },
        Request::Decr {
            key: b"\x7f",
            delta: 1,
        },
        Request::Store {
            mode: StoreMode::Set,
            key: b"k",
            flags: 0,
            exptime: 0,
            value: b"12345",
        },
        Request::Cas {
            key: b"k\t",
            flags: 0,
            exptime: 0,
            value: b"1",
            cas: 1,
        },
        Request::Stats {
            arg: Some(b"items\r\nflush_all"),
        },
        Request::Stats { arg: Some(b"") },
    ] {
        assert!(req.encode(&mut buf, &limits).is_err(), "{req:?}");
    }
    assert_eq!(&buf[..], b"get ok\r\n");
}

#[test]
fn decimal_covers_edges() {
    for n in [0u64, 9, 10, 99, 100, u64::from(u32::MAX), u64::MAX] {
        let mut b = BytesMut::new();
        put_decimal(&mut b, n);
        assert_eq!(b, n.to_string().as_bytes());
    }
}
