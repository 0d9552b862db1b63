use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// `printf 'hello from java' | gzip -n`: the format of the Java client's `COMPRESSED` values
/// (java.util.zip.GZIPOutputStream writes the same gzip member format).
const GZIP_HELLO: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57,
    0x48, 0x2b, 0xca, 0xcf, 0x55, 0xc8, 0x4a, 0x2c, 0x4b, 0x04, 0x00, 0x44, 0x10, 0x7d, 0xf0, 0x0f,
    0x00, 0x00, 0x00,
];

fn json_like(n: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for i in 0..n {
        out.extend_from_slice(
            format!(
                r#"{{"id":"p-{i:03}","title":"Harbour #{i}","width":{}}},"#,
                4000 + i
            )
            .as_bytes(),
        );
    }
    out.push(b']');
    out
}

#[test]
fn short_values_are_stored_as_given_with_flags_zero() {
    let codec = Codec::default();
    let (flags, stored) = codec.encode(b"short").unwrap();
    assert_eq!((flags, &stored[..]), (0, &b"short"[..]));
    assert_eq!(codec.decode(0, stored).unwrap(), &b"short"[..]);
}

#[test]
fn an_uncompressed_codec_never_compresses() {
    let value = json_like(200);
    let (flags, stored) = Codec::uncompressed().encode(&value).unwrap();
    assert_eq!(flags, 0);
    assert_eq!(stored, value);
}

#[cfg(feature = "zstd")]
#[test]
fn values_over_the_threshold_are_zstd_frames_with_bit_24() {
    let value = json_like(200);
    let codec = Codec::default();
    let (flags, stored) = codec.encode(&value).unwrap();
    assert_eq!(flags, FLAG_ZSTD);
    assert!(stored.len() * 4 < value.len(), "{} bytes", stored.len());
    assert_eq!(
        &stored[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "a standard zstd frame"
    );
    assert_eq!(codec.decode(flags, stored).unwrap(), value);
    // At the threshold: as given.
    let exact = vec![b'a'; DEFAULT_COMPRESS_ABOVE];
    assert_eq!(codec.encode(&exact).unwrap().0, 0);
}

#[cfg(feature = "zstd")]
#[test]
fn a_value_that_does_not_shrink_is_stored_as_given() {
    // Bytes of a xorshift generator: zstd cannot shrink them.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (flags, stored) = Codec::default().encode(&noise).unwrap();
    assert_eq!(flags, 0);
    assert_eq!(stored, noise);
}

#[test]
fn a_value_over_max_size_is_refused_to_store() {
    let codec = Codec::default().max_size(10);
    assert_eq!(
        codec.encode(&[0u8; 11]),
        Err(CodecError::TooLarge { limit: 10 })
    );
    assert!(codec.encode(&[0u8; 10]).is_ok());
    assert_eq!(Codec::default().max_size(0).limit(), 1);
}

#[test]
fn java_byte_arrays_and_strings_read_as_their_bytes() {
    let codec = Codec::default();
    let b = Bytes::from_static(b"\x00\x01raw");
    assert_eq!(codec.decode(FLAG_JAVA_BYTE_ARRAY, b.clone()).unwrap(), b);
    assert_eq!(codec.decode(0, b.clone()).unwrap(), b);
}

#[cfg(feature = "gzip")]
#[test]
fn java_gzip_values_are_read_with_the_gzip_feature() {
    let codec = Codec::default();
    let stored = Bytes::from_static(GZIP_HELLO);
    assert_eq!(
        codec.decode(FLAG_GZIP, stored.clone()).unwrap(),
        &b"hello from java"[..]
    );
    assert_eq!(
        codec
            .decode(FLAG_JAVA_BYTE_ARRAY | FLAG_GZIP, stored)
            .unwrap(),
        &b"hello from java"[..]
    );
}

#[cfg(not(feature = "gzip"))]
#[test]
fn java_gzip_values_without_the_feature_say_which_feature() {
    let err = Codec::default()
        .decode(FLAG_GZIP, Bytes::from_static(GZIP_HELLO))
        .unwrap_err();
    assert_eq!(
        err,
        CodecError::FeatureDisabled {
            flags: FLAG_GZIP,
            codec: "gzip"
        }
    );
}

#[cfg(not(feature = "zstd"))]
#[test]
fn zstd_values_without_the_feature_say_which_feature() {
    let err = Codec::default()
        .decode(FLAG_ZSTD, Bytes::from_static(b"\x28\xb5\x2f\xfd"))
        .unwrap_err();
    assert!(matches!(
        err,
        CodecError::FeatureDisabled { codec: "zstd", .. }
    ));
}

#[test]
fn every_other_flag_bit_is_unknown_and_never_read() {
    let codec = Codec::default();
    let known = [
        0,
        FLAG_ZSTD,
        FLAG_GZIP,
        FLAG_JAVA_BYTE_ARRAY,
        FLAG_JAVA_BYTE_ARRAY | FLAG_GZIP,
    ];
    for bit in 0..32 {
        for base in known {
            let flags = base | (1 << bit);
            if known.contains(&flags) {
                continue;
            }
            assert_eq!(
                codec.decode(flags, Bytes::from_static(b"x")),
                Err(CodecError::UnknownFlags { flags }),
                "flags 0x{flags:x}"
            );
        }
    }
}

#[test]
fn java_typed_values_are_named_in_the_error() {
    let codec = Codec::default();
    let serialized = codec.decode(0x1, Bytes::new()).unwrap_err().to_string();
    assert!(
        serialized.contains("Java-serialized object"),
        "{serialized}"
    );
    let long = codec.decode(3 << 8, Bytes::new()).unwrap_err().to_string();
    assert!(long.contains("typed value of the Java client"), "{long}");
}

#[cfg(feature = "zstd")]
#[test]
fn a_zstd_bomb_stops_at_max_size() {
    let zeros = vec![0u8; 64 << 20];
    // With the content size in the frame: refused before inflating.
    let declared = zstd::bulk::compress(&zeros, 1).unwrap();
    assert!(declared.len() < 64 << 10, "{} bytes", declared.len());
    let codec = Codec::default();
    assert_eq!(
        codec.decode(FLAG_ZSTD, declared.into()),
        Err(CodecError::TooLarge {
            limit: DEFAULT_MAX_SIZE
        })
    );
    // A streamed frame does not declare its size: inflation stops after the limit.
    let mut streamed = Vec::new();
    {
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 1).unwrap();
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
        enc.finish().unwrap();
    }
    assert!(matches!(
        zstd::zstd_safe::get_frame_content_size(&streamed),
        Ok(None)
    ));
    assert_eq!(
        codec.decode(FLAG_ZSTD, streamed.into()),
        Err(CodecError::TooLarge {
            limit: DEFAULT_MAX_SIZE
        })
    );
}

#[cfg(feature = "gzip")]
#[test]
fn a_gzip_bomb_stops_at_max_size() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 16 << 20]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    assert_eq!(
        Codec::default()
            .max_size(1000)
            .decode(FLAG_GZIP, bomb.into()),
        Err(CodecError::TooLarge { limit: 1000 })
    );
}

#[cfg(all(feature = "zstd", feature = "gzip"))]
#[test]
fn corrupt_compressed_values_are_errors() {
    let codec = Codec::default();
    for (flags, codec_name) in [(FLAG_ZSTD, "zstd"), (FLAG_GZIP, "gzip")] {
        match codec.decode(flags, Bytes::from_static(b"not compressed at all")) {
            Err(CodecError::Corrupt { codec, .. }) => assert_eq!(codec, codec_name),
            other => panic!("{codec_name}: {other:?}"),
        }
    }
    // A truncated frame too.
    let (_, stored) = codec.encode(&json_like(200)).unwrap();
    let cut = stored.slice(..stored.len() / 2);
    assert!(matches!(
        codec.decode(FLAG_ZSTD, cut),
        Err(CodecError::Corrupt { .. })
    ));
}

proptest! {
    #[test]
    fn decode_never_panics(flags in prop_oneof![Just(0u32), Just(FLAG_ZSTD), Just(FLAG_GZIP), Just(0x802u32), any::<u32>()],
                           bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Codec::default().max_size(4096).decode(flags, bytes.into());
    }

    #[test]
    fn what_is_encoded_decodes_to_itself(value in proptest::collection::vec(prop_oneof![Just(b'a'), any::<u8>()], 0..4096),
                                         threshold in 0usize..2048) {
        let codec = Codec::default().compress_above(threshold);
        let (flags, stored) = codec.encode(&value).unwrap();
        prop_assert_eq!(codec.decode(flags, stored).unwrap(), value);
    }
}
