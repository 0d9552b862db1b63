//! Ratio and speed of zstd, lz4 and gzip on the JSON the Photo demo caches: a list of photos as
//! examples/lambda-photo/seed.py writes them, turned into plain JSON as the function does.
//! Prints one table row per (payload, codec).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PLACES: [&str; 5] = ["harbour", "old town", "forest", "beach", "market"];
const CAMERAS: [(&str, &str); 3] = [("Fujifilm", "X100V"), ("Canon", "EOS R6"), ("Nikon", "Z6 II")];

/// Photo `i` of seed.py, as the function's item_to_json renders it.
fn photo(i: usize) -> Value {
    let place = PLACES[i % PLACES.len()];
    let mut title = place.to_string();
    title[..1].make_ascii_uppercase();
    let (make, model) = CAMERAS[i % CAMERAS.len()];
    let mut item = json!({
        "id": format!("p-{i:03}"),
        "title": format!("{title} #{i}"),
        "width": 4000 + 16 * i,
        "height": 3000 + 12 * i,
        "rating": 3.0 + (i % 5) as f64 / 2.0,
        "public": i % 3 != 0,
        "tags": [place, "demo", i % 7],
        "camera": {"make": make, "model": model},
    });
    if i % 4 == 0 {
        item["location"] = Value::Null;
    }
    item
}

fn photos(n: usize) -> Vec<u8> {
    serde_json::to_vec(&Value::Array((1..=n).map(photo).collect())).expect("json")
}

/// Runs `f` for at least 300 ms; MB/s of `bytes` per call.
fn speed(bytes: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < Duration::from_millis(300) {
        f();
        runs += 1;
    }
    (bytes as f64 * runs as f64) / start.elapsed().as_secs_f64() / 1e6
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).expect("gzip");
    e.finish().expect("gzip")
}

fn gunzip(packed: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(packed)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn main() {
    println!("| payload | raw bytes | codec | stored bytes | ratio | compress MB/s | decompress MB/s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, n) in [
        ("1 photo", 1),
        ("5 photos", 5),
        ("20 photos (the demo's cached value)", 20),
        ("1,000 photos", 1000),
    ] {
        let raw = photos(n);
        type Pack = Box<dyn Fn(&[u8]) -> Vec<u8>>;
        let codecs: Vec<(&str, Pack, Pack)> = vec![
            (
                "zstd level 1",
                Box::new(|r| zstd::bulk::compress(r, 1).expect("zstd")),
                Box::new(|p| zstd::stream::decode_all(p).expect("unzstd")),
            ),
            (
                "zstd level 3",
                Box::new(|r| zstd::bulk::compress(r, 3).expect("zstd")),
                Box::new(|p| zstd::stream::decode_all(p).expect("unzstd")),
            ),
            (
                "lz4 (lz4_flex, size-prepended block)",
                Box::new(lz4_flex::compress_prepend_size),
                Box::new(|p| lz4_flex::decompress_size_prepended(p).expect("unlz4")),
            ),
            ("gzip level 6 (flate2, pure Rust)", Box::new(gzip), Box::new(gunzip)),
        ];
        for (codec, pack, unpack) in &codecs {
            let packed = pack(&raw);
            assert_eq!(unpack(&packed), raw, "{codec} round trip");
            let c = speed(raw.len(), || {
                black_box(pack(black_box(&raw)));
            });
            let d = speed(raw.len(), || {
                black_box(unpack(black_box(&packed)));
            });
            println!(
                "| {name} | {} | {codec} | {} | {:.2} | {c:.0} | {d:.0} |",
                raw.len(),
                packed.len(),
                raw.len() as f64 / packed.len() as f64
            );
        }
    }
}
