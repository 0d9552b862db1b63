//! Typed and compressed values against a real memcached: JSON through `set_json`/`get_json`,
//! zstd above the threshold (seen in the flags memcached keeps), gzip values as the Java client
//! stores them, unknown flags and zip bombs refused.
#![cfg(all(feature = "serde", feature = "zstd", feature = "gzip"))]

mod support;

use std::io::Write;
use std::time::Duration;

use memcached_autodiscovery::codec::{Codec, CodecError, FLAG_GZIP, FLAG_ZSTD};
use memcached_autodiscovery::{Error, StoreMode};
use memcached_autodiscovery_testkit::LocalCluster;
use serde::{Deserialize, Serialize};
use support::client_for;

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Photo {
    id: String,
    title: String,
    width: u32,
    height: u32,
    rating: f64,
    public: bool,
    tags: Vec<serde_json::Value>,
    location: Option<String>,
}

fn photos(n: u32) -> Vec<Photo> {
    (1..=n)
        .map(|i| Photo {
            id: format!("p-{i:03}"),
            title: format!("Harbour #{i}"),
            width: 4000 + 16 * i,
            height: 3000 + 12 * i,
            rating: 3.5,
            public: i % 3 != 0,
            tags: vec!["harbour".into(), "demo".into(), (i % 7).into()],
            location: None,
        })
        .collect()
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn json_values_round_trip_and_large_ones_are_stored_zstd_compressed() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;

    assert_eq!(client.get_json::<Vec<Photo>>("absent").await.unwrap(), None);

    // One photo: under the 1,024-byte threshold, plain JSON with flags 0 (any client reads it).
    let one = photos(1);
    client.set_json("photos:1", &one, MINUTE).await.unwrap();
    let item = client.gets("photos:1").await.unwrap().unwrap();
    assert_eq!(item.flags, 0);
    assert_eq!(item.value, serde_json::to_vec(&one).unwrap());
    assert_eq!(client.get_json("photos:1").await.unwrap(), Some(one));

    // 20 photos: over the threshold, a zstd frame with bit 24 set.
    let twenty = photos(20);
    let json_len = serde_json::to_vec(&twenty).unwrap().len();
    client.set_json("photos:20", &twenty, MINUTE).await.unwrap();
    let item = client.gets("photos:20").await.unwrap().unwrap();
    assert_eq!(item.flags, FLAG_ZSTD);
    assert!(
        item.value.len() * 3 < json_len,
        "{} of {json_len}",
        item.value.len()
    );
    assert_eq!(client.get_json("photos:20").await.unwrap(), Some(twenty));

    // Bytes that are not JSON of the type: a typed error, not a panic or a default.
    client.set("not-json", "{\"id\": 7", MINUTE).await.unwrap();
    match client.get_json::<Vec<Photo>>("not-json").await {
        Err(Error::Codec(CodecError::Json { .. })) => {}
        other => panic!("{other:?}"),
    }
    client.set("other-shape", "[1,2]", MINUTE).await.unwrap();
    assert!(matches!(
        client.get_json::<Vec<Photo>>("other-shape").await,
        Err(Error::Codec(CodecError::Json { .. }))
    ));
}

#[tokio::test]
async fn values_the_java_client_gzipped_are_read_and_its_other_types_refused() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let codec = Codec::default();

    // As the Java client stores a String over 16,384 bytes: gzip, flags 0x2.
    let text = "{\"greeting\":\"hello from java\"}".repeat(600);
    let stored = gzip(text.as_bytes());
    assert!(client
        .store(StoreMode::Set, "java:text", &stored, MINUTE, FLAG_GZIP)
        .await
        .unwrap());
    assert_eq!(
        client
            .get_decoded(&codec, "java:text")
            .await
            .unwrap()
            .unwrap(),
        text.as_bytes()
    );
    // A byte[] (0x800), compressed (0x802).
    assert!(client
        .store(StoreMode::Set, "java:bytes", &stored, MINUTE, 0x802)
        .await
        .unwrap());
    assert_eq!(
        client
            .get_decoded(&codec, "java:bytes")
            .await
            .unwrap()
            .unwrap(),
        text.as_bytes()
    );

    // A Java-serialized object (0x1) and a Java long (0x300) are never read as bytes.
    for flags in [0x1, 0x3 << 8, 0x0200_0000] {
        assert!(client
            .store(
                StoreMode::Set,
                "java:object",
                b"\xac\xed\x00\x05",
                MINUTE,
                flags
            )
            .await
            .unwrap());
        match client.get_decoded(&codec, "java:object").await {
            Err(Error::Codec(CodecError::UnknownFlags { flags: f })) => assert_eq!(f, flags),
            other => panic!("flags 0x{flags:x}: {other:?}"),
        }
        assert!(!client
            .get_decoded(&codec, "java:object")
            .await
            .unwrap_err()
            .is_retryable());
    }
}

#[tokio::test]
async fn a_zip_bomb_stops_at_the_codec_limit_and_oversized_values_are_not_sent() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;

    // 256 MiB of zeros as one zstd frame: a few KB in memcached.
    let bomb = {
        let mut out = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..256 {
            enc.write_all(&chunk).unwrap();
        }
        enc.finish().unwrap();
        out
    };
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    assert!(client
        .store(StoreMode::Set, "bomb", &bomb, MINUTE, FLAG_ZSTD)
        .await
        .unwrap());
    let codec = Codec::default();
    match client.get_decoded(&codec, "bomb").await {
        Err(Error::Codec(CodecError::TooLarge { limit })) => assert_eq!(limit, 1 << 20),
        other => panic!("{other:?}"),
    }

    // A value longer than the codec's limit is refused before anything is sent.
    let small = Codec::default().max_size(100);
    assert!(matches!(
        client
            .set_encoded(&small, "big", vec![b'x'; 101], MINUTE)
            .await,
        Err(Error::Codec(CodecError::TooLarge { limit: 100 }))
    ));
    assert_eq!(client.get("big").await.unwrap(), None);
    client
        .set_encoded(&small, "fits", vec![b'x'; 100], MINUTE)
        .await
        .unwrap();
    assert_eq!(
        client
            .get_decoded(&small, "fits")
            .await
            .unwrap()
            .unwrap()
            .len(),
        100
    );
}
