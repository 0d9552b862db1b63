//! The default placement, pinned: a golden file fixes where 1,000 keys go on a fixed node list,
//! so any change of hash, vnode count or ring crate behaviour that would move keys between
//! releases (and make a fleet of mixed versions miss) fails here.

use std::collections::HashMap;

use bytes::Bytes;
use memcached_autodiscovery::Client;
use memcached_autodiscovery_proto::distribution::{Distribution, Locator};

const GOLDEN: &str = "tests/data/ring_golden.tsv";
const NODES: [&str; 5] = [
    "mycluster.abc123.0001.use1.cache.amazonaws.com:11211",
    "mycluster.abc123.0002.use1.cache.amazonaws.com:11211",
    "mycluster.abc123.0003.use1.cache.amazonaws.com:11211",
    "10.0.0.4:11211",
    "[2001:db8::5]:11212",
];

fn golden_keys() -> Vec<String> {
    (0..1000)
        .map(|i| match i % 4 {
            0 => format!("user:{i}"),
            1 => format!("session-{i:08x}"),
            2 => format!("clé-ünïcode-{i}"),
            _ => format!("photo/{i}/thumbnail"),
        })
        .collect()
}

#[test]
fn placement_matches_the_golden_file() {
    let locator = Locator::new(Distribution::Ring, &NODES);
    let actual: Vec<String> = golden_keys()
        .iter()
        .map(|k| format!("{k}\t{}", NODES[locator.locate(k.as_bytes()).unwrap()]))
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, actual.join("\n") + "\n").unwrap();
    }
    let expected = std::fs::read_to_string(GOLDEN).expect("golden file present");
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), 1000);
    let differing: Vec<_> = actual
        .iter()
        .zip(&expected)
        .filter(|(a, e)| a != e)
        .collect();
    assert!(
        differing.is_empty(),
        "{} keys moved, first: {:?}",
        differing.len(),
        differing.first()
    );
    // The pinned placement uses every node.
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for line in &expected {
        *per_node
            .entry(line.split('\t').nth(1).unwrap())
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), NODES.len());
}

fn ids(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("node-{i:04}.cluster.use1.cache.amazonaws.com:11211"))
        .collect()
}

#[test]
fn adding_one_node_to_n_moves_about_one_in_n_plus_one_keys_all_to_the_new_node() {
    let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
    for n in [2, 3, 5, 10, 30] {
        let before_ids = ids(n);
        let after_ids = ids(n + 1);
        let before = Locator::new(Distribution::Ring, &before_ids);
        let after = Locator::new(Distribution::Ring, &after_ids);
        let mut moved = 0;
        for key in &keys {
            let (a, b) = (
                before.locate(key.as_bytes()).unwrap(),
                after.locate(key.as_bytes()).unwrap(),
            );
            if before_ids[a] != after_ids[b] {
                moved += 1;
                assert_eq!(
                    b, n,
                    "a moved key goes to the new node, never between old ones"
                );
            }
        }
        let share = moved as f64 / keys.len() as f64;
        let ideal = 1.0 / (n as f64 + 1.0);
        assert!(
            share > ideal * 0.6 && share < ideal * 1.4,
            "{n} -> {}: moved {share:.3}, ideal {ideal:.3}",
            n + 1
        );
    }
}

#[test]
fn removing_a_node_moves_only_its_keys() {
    let all = ids(6);
    let remaining: Vec<String> = all
        .iter()
        .filter(|id| !id.contains("0003"))
        .cloned()
        .collect();
    let before = Locator::new(Distribution::Ring, &all);
    let after = Locator::new(Distribution::Ring, &remaining);
    for i in 0..10_000 {
        let key = format!("k{i}");
        let a = &all[before.locate(key.as_bytes()).unwrap()];
        let b = &remaining[after.locate(key.as_bytes()).unwrap()];
        if !a.contains("0003") {
            assert_eq!(a, b, "{key} stayed on its node");
        }
    }
}

#[test]
fn keys_spread_evenly() {
    let nodes = ids(10);
    let locator = Locator::new(Distribution::Ring, &nodes);
    let mut counts = vec![0usize; nodes.len()];
    for i in 0..100_000 {
        counts[locator.locate(format!("spread-{i}").as_bytes()).unwrap()] += 1;
    }
    for c in counts {
        assert!(
            (7_000..13_000).contains(&c),
            "each of 10 nodes holds 10% ± 30%: {c}"
        );
    }
}

/// Virtual nodes per node, as documented.
const RING_VNODES: usize = 160;

/// The documented hash of the ring, written out here independently of the library: 64-bit
/// FNV-1a over the bytes, finished with MurmurHash3's fmix64.
fn ring_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Where the ring places keys, worked out here from the published hash alone: node `i` has
/// [`RING_VNODES`] points, the first `ring_hash(id)` and each next one the `ring_hash` of the
/// previous point's 8 little-endian bytes; a key goes to the node of the first point at or after
/// `ring_hash(key)`, wrapping around to the lowest point.
fn reference_ring<S: AsRef<str>>(ids: &[S]) -> impl Fn(&[u8]) -> usize {
    let mut points: Vec<(u64, usize)> = Vec::with_capacity(ids.len() * RING_VNODES);
    for (index, id) in ids.iter().enumerate() {
        let mut point = ring_hash(id.as_ref().as_bytes());
        for _ in 0..RING_VNODES {
            points.push((point, index));
            point = ring_hash(&point.to_le_bytes());
        }
    }
    points.sort_unstable();
    move |key: &[u8]| {
        let h = ring_hash(key);
        let at = points.partition_point(|&(p, _)| p < h);
        points.get(at).unwrap_or(&points[0]).1
    }
}

#[test]
fn the_ring_is_the_documented_construction_over_ring_hash() {
    // The golden placement, rebuilt from `ring_hash` without the ring crate.
    let reference = reference_ring(&NODES);
    let expected = std::fs::read_to_string(GOLDEN).expect("golden file present");
    for line in expected.lines() {
        let (key, node) = line.split_once('\t').unwrap();
        assert_eq!(NODES[reference(key.as_bytes())], node, "{key}");
    }
}

#[tokio::test]
async fn the_same_key_as_str_or_bytes_goes_to_the_same_node() {
    let nodes = ids(7);
    // A fixed node list: nothing is connected until a request is made, and `node_for` makes none.
    let client = Client::builder()
        .nodes(nodes.clone())
        .build()
        .await
        .unwrap();
    let locator = Locator::new(Distribution::Ring, &nodes);
    let reference = reference_ring(&nodes);
    let mut keys: Vec<String> = golden_keys();
    keys.push("k".into());
    keys.push("é".repeat(125)); // 250 bytes, the longest key
    for key in &keys {
        // The key's bytes copied out one by one: none of the byte forms below is the str itself.
        let raw: Vec<u8> = key.bytes().collect();
        let expected = reference(&raw);
        let routed = [
            ("&str", client.node_for(key.as_str())),
            ("&String", client.node_for(key)),
            ("String", client.node_for(key.clone())),
            ("&[u8]", client.node_for(raw.as_slice())),
            ("&Vec<u8>", client.node_for(&raw)),
            ("Vec<u8>", client.node_for(raw.clone())),
            ("Bytes", client.node_for(Bytes::from(raw.clone()))),
        ];
        for (form, node) in routed {
            assert_eq!(
                node.unwrap().id(),
                nodes[expected],
                "{key:?} given to Client::node_for as {form}"
            );
        }
        let bytes = Bytes::copy_from_slice(&raw);
        for (form, located) in [
            ("str bytes", locator.locate(key.as_bytes())),
            ("Vec<u8>", locator.locate(&raw)),
            ("Bytes", locator.locate(&bytes)),
        ] {
            assert_eq!(
                located,
                Some(expected),
                "{key:?} given to Locator::locate as {form}"
            );
        }
    }
    // Keys that are bytes and no str at all are placed by the same rule.
    for raw in [&b"\xff\xfe-latin1-caf\xe9"[..], b"\x80", b"\xc3("] {
        assert!(std::str::from_utf8(raw).is_err());
        let expected = &nodes[reference(raw)];
        assert_eq!(&client.node_for(raw).unwrap().id(), expected);
        let owned: Vec<u8> = raw.to_vec();
        assert_eq!(&client.node_for(owned).unwrap().id(), expected);
        assert_eq!(
            &client.node_for(Bytes::copy_from_slice(raw)).unwrap().id(),
            expected
        );
        assert_eq!(locator.locate(raw), Some(reference(raw)));
    }
    let empty: [&str; 0] = [];
    assert_eq!(Locator::new(Distribution::Ring, &empty).locate(b"k"), None);
}
