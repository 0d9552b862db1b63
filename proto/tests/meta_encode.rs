//! Table tests of meta request encoding through the public API: every command with every flag,
//! binary keys, batches, and the refusals (with the buffer left as it was).

use bytes::BytesMut;
use memcached_autodiscovery_proto::error::KeyError;
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::protocol::meta::{
    base64, encode_batch, ArithMode, MetaArithmetic, MetaDelete, MetaGet, MetaKey, MetaRequest,
    MetaSet, SetMode, MAX_BINARY_KEY_LEN, MAX_OPAQUE_LEN,
};
use memcached_autodiscovery_proto::protocol::{Expect, Limits};

fn enc(request: impl Into<MetaRequest<'static>>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let expect = request.into().encode(&mut buf, &Limits::default()).unwrap();
    assert_eq!(expect, Expect::Meta);
    buf.to_vec()
}

#[test]
fn every_command_and_flag_encodes_to_its_wire_form() {
    let table: Vec<(MetaRequest<'static>, &[u8])> = vec![
        // mg, one flag at a time.
        (MetaGet::new("k").into(), b"mg k\r\n"),
        (MetaGet::new("k").value().into(), b"mg k v\r\n"),
        (MetaGet::new("k").cas().into(), b"mg k c\r\n"),
        (MetaGet::new("k").client_flags().into(), b"mg k f\r\n"),
        (MetaGet::new("k").hit_before().into(), b"mg k h\r\n"),
        (MetaGet::new("k").return_key().into(), b"mg k k\r\n"),
        (MetaGet::new("k").last_access().into(), b"mg k l\r\n"),
        (MetaGet::new("k").size().into(), b"mg k s\r\n"),
        (MetaGet::new("k").ttl().into(), b"mg k t\r\n"),
        (MetaGet::new("k").opaque(b"55").into(), b"mg k O55\r\n"),
        (MetaGet::new("k").no_lru_bump().into(), b"mg k u\r\n"),
        (MetaGet::new("k").new_cas(77).into(), b"mg k E77\r\n"),
        (MetaGet::new("k").vivify(30).into(), b"mg k N30\r\n"),
        (MetaGet::new("k").recache(90).into(), b"mg k R90\r\n"),
        (MetaGet::new("k").touch(0).into(), b"mg k T0\r\n"),
        // The spec's lease requests.
        (
            MetaGet::new("k1")
                .value()
                .cas()
                .ttl()
                .vivify(30)
                .size()
                .into(),
            b"mg k1 N30 v c s t\r\n",
        ),
        (
            MetaGet::new("k1")
                .value()
                .cas()
                .ttl()
                .recache(90)
                .return_key()
                .opaque(b"55")
                .into(),
            b"mg k1 R90 v c k t O55\r\n",
        ),
        (
            MetaGet::new(MetaKey::Binary(b"missing"))
                .value()
                .return_key()
                .into(),
            b"mg bWlzc2luZw== b v k\r\n",
        ),
        // ms
        (
            MetaSet::new("k1", b"abc").ttl(60).into(),
            b"ms k1 3 T60\r\nabc\r\n",
        ),
        (MetaSet::new("k", b"").into(), b"ms k 0\r\n\r\n"),
        (MetaSet::new("k", b"\r\n").into(), b"ms k 2\r\n\r\n\r\n"),
        (
            MetaSet::new("k", b"v").mode(SetMode::Set).into(),
            b"ms k 1\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").mode(SetMode::Add).into(),
            b"ms k 1 ME\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").mode(SetMode::Replace).into(),
            b"ms k 1 MR\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").mode(SetMode::Append).into(),
            b"ms k 1 MA\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").mode(SetMode::Prepend).into(),
            b"ms k 1 MP\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").client_flags(u32::MAX).into(),
            b"ms k 1 F4294967295\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").compare_cas(u64::MAX).into(),
            b"ms k 1 C18446744073709551615\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").new_cas(3).into(),
            b"ms k 1 E3\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").compare_cas(1).invalidate().into(),
            b"ms k 1 C1 I\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v")
                .mode(SetMode::Append)
                .vivify(30)
                .into(),
            b"ms k 1 MA N30\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").return_cas().into(),
            b"ms k 1 c\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").return_key().into(),
            b"ms k 1 k\r\nv\r\n",
        ),
        (
            MetaSet::new("k", b"v").opaque(b"x").into(),
            b"ms k 1 Ox\r\nv\r\n",
        ),
        (
            MetaSet::new(MetaKey::Binary(b"bin\0ry"), b"\0\x01\x02")
                .return_key()
                .return_cas()
                .into(),
            b"ms YmluAHJ5 3 b c k\r\n\0\x01\x02\r\n",
        ),
        // md
        (MetaDelete::new("k").into(), b"md k\r\n"),
        (
            MetaDelete::new("k1").invalidate_with_ttl(30).into(),
            b"md k1 I T30\r\n",
        ),
        (MetaDelete::new("k").invalidate().into(), b"md k I\r\n"),
        (MetaDelete::new("k").compare_cas(5).into(), b"md k C5\r\n"),
        (MetaDelete::new("k").new_cas(6).into(), b"md k E6\r\n"),
        (
            MetaDelete::new("k").return_key().opaque(b"o").into(),
            b"md k k Oo\r\n",
        ),
        (
            MetaDelete::new(MetaKey::Binary(b"\xff")).into(),
            b"md /w== b\r\n",
        ),
        // ma
        (MetaArithmetic::new("n").into(), b"ma n\r\n"),
        (
            MetaArithmetic::new("n").mode(ArithMode::Incr).into(),
            b"ma n\r\n",
        ),
        (
            MetaArithmetic::new("n").mode(ArithMode::Decr).into(),
            b"ma n MD\r\n",
        ),
        (MetaArithmetic::new("n").delta(10).into(), b"ma n D10\r\n"),
        (
            MetaArithmetic::new("cnt")
                .create_on_miss(0, 13)
                .return_value()
                .into(),
            b"ma cnt v N0 J13\r\n",
        ),
        (MetaArithmetic::new("n").ttl(60).into(), b"ma n T60\r\n"),
        (
            MetaArithmetic::new("n").compare_cas(4).into(),
            b"ma n C4\r\n",
        ),
        (MetaArithmetic::new("n").new_cas(5).into(), b"ma n E5\r\n"),
        (
            MetaArithmetic::new("n").return_cas().return_ttl().into(),
            b"ma n c t\r\n",
        ),
        (
            MetaArithmetic::new("n").return_key().opaque(b"3").into(),
            b"ma n k O3\r\n",
        ),
    ];
    for (request, wire) in table {
        assert_eq!(enc(request), wire, "{request:?}");
    }
}

#[test]
fn binary_keys_take_any_bytes_up_to_186() {
    let every_byte: Vec<u8> = (0..=255).collect();
    for key in [
        &every_byte[..1],
        &every_byte[..3],
        &every_byte[..MAX_BINARY_KEY_LEN],
        b" \r\n\0",
    ] {
        let mut buf = BytesMut::new();
        MetaRequest::from(MetaGet::new(MetaKey::Binary(key)))
            .encode(&mut buf, &Limits::default())
            .unwrap();
        let line = &buf[3..buf.len() - 2];
        let coded = &line[..line.len() - 2];
        assert_eq!(&line[line.len() - 2..], b" b");
        assert!(coded.len() <= 250);
        assert_eq!(base64::decode(coded).as_deref(), Some(key));
    }
}

#[test]
fn bad_keys_and_tokens_are_refused_and_nothing_is_written() {
    let limits = Limits::with_max_value_size(8);
    let long_text = [b'k'; 251];
    let long_binary = [0u8; MAX_BINARY_KEY_LEN + 1];
    let long_opaque = [b'o'; MAX_OPAQUE_LEN + 1];
    let table: Vec<(MetaRequest<'_>, ProtocolError)> = vec![
        (
            MetaGet::new("").into(),
            ProtocolError::InvalidKey(KeyError::Empty),
        ),
        (
            MetaGet::new(&long_text).into(),
            ProtocolError::InvalidKey(KeyError::TooLong { len: 251 }),
        ),
        (
            MetaDelete::new("a b").into(),
            ProtocolError::InvalidKey(KeyError::ForbiddenByte {
                index: 1,
                byte: b' ',
            }),
        ),
        (
            MetaSet::new("a\r\nmn", b"v").into(),
            ProtocolError::InvalidKey(KeyError::ForbiddenByte {
                index: 1,
                byte: b'\r',
            }),
        ),
        (
            MetaArithmetic::new(MetaKey::Binary(b"")).into(),
            ProtocolError::InvalidKey(KeyError::Empty),
        ),
        (
            MetaGet::new(MetaKey::Binary(&long_binary)).into(),
            ProtocolError::InvalidKey(KeyError::BinaryTooLong { len: 187 }),
        ),
        (
            MetaGet::new("k").opaque(b"").into(),
            ProtocolError::InvalidOpaque { len: 0 },
        ),
        (
            MetaGet::new("k").opaque(&long_opaque).into(),
            ProtocolError::InvalidOpaque { len: 32 },
        ),
        (
            MetaSet::new("k", b"v").opaque(b"a b").into(),
            ProtocolError::InvalidOpaque { len: 3 },
        ),
        (
            MetaDelete::new("k").opaque(b"\t").into(),
            ProtocolError::InvalidOpaque { len: 1 },
        ),
        (
            MetaArithmetic::new("k").opaque(b"\x80").into(),
            ProtocolError::InvalidOpaque { len: 1 },
        ),
        (
            MetaSet::new("k", b"123456789").into(),
            ProtocolError::ValueTooLarge { len: 9, max: 8 },
        ),
    ];
    let mut buf = BytesMut::from(&b"mn\r\n"[..]);
    for (request, error) in table {
        assert_eq!(
            request.encode(&mut buf, &limits),
            Err(error.clone()),
            "{request:?}"
        );
        assert_eq!(request.validate(&limits), Err(error.clone()));
        // In a batch, one bad request refuses the whole batch.
        let batch = [MetaGet::new("ok").into(), request];
        assert_eq!(encode_batch(&batch, &mut buf, &limits), Err(error));
    }
    assert_eq!(&buf[..], b"mn\r\n");
}

#[test]
fn batches_are_quiet_and_end_with_mn() {
    let mut buf = BytesMut::new();
    let batch: Vec<MetaRequest<'_>> = vec![
        MetaGet::new("k1").value().return_key().into(),
        MetaGet::new("k2").value().return_key().into(),
        MetaSet::new("k3", b"x").into(),
        MetaDelete::new("k4").into(),
        MetaArithmetic::new("k5").into(),
    ];
    assert_eq!(
        encode_batch(&batch, &mut buf, &Limits::default()),
        Ok(Expect::MetaBatch { max: 5 })
    );
    assert_eq!(
        &buf[..],
        &b"mg k1 v k q\r\nmg k2 v k q\r\nms k3 1 q\r\nx\r\nmd k4 q\r\nma k5 q\r\nmn\r\n"[..]
    );
    // The spec's batch.
    buf.clear();
    let batch = [MetaRequest::from(
        MetaGet::new("missing").value().opaque(b"7"),
    )];
    encode_batch(&batch, &mut buf, &Limits::default()).unwrap();
    assert_eq!(&buf[..], b"mg missing v O7 q\r\nmn\r\n");
}

#[test]
fn requests_report_their_key() {
    let r = MetaRequest::from(MetaSet::new(MetaKey::Binary(b"\0"), b"v"));
    assert_eq!(r.key(), MetaKey::Binary(b"\0"));
    assert_eq!(r.key().bytes(), b"\0");
    assert_eq!(MetaRequest::from(MetaGet::new("a")).key().bytes(), b"a");
    assert_eq!(MetaRequest::from(MetaGet::new("a")).expect(), Expect::Meta);
}
