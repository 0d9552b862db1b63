//! Every placement mode against ground truth: `tests/data/vectors/<mode>/*.tsv` record where the
//! real peer clients (php-memcached over libmemcached, libmemcached itself, twemproxy,
//! pymemcache, upstream spymemcached and the AWS ElastiCache Cluster Client for Java) stored
//! 2,000 keys on 3- and 5-node lists of real memcached servers (see the folder's README.md).
//! Each mode must put every key of every file of its folder on the node the peer chose.
//!
//! The Java clients cannot be installed on a test machine here (no Maven registry), so
//! `ketama-spymemcached`, `ketama-aws-java` and `modula-java` are proven by these recorded
//! placements only; the other peers are also driven live in `tests/interop_live.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use memcached_autodiscovery_proto::distribution::{Distribution, Locator};

const VECTORS: &str = "tests/data/vectors";

/// One recorded run.
struct Vector {
    path: PathBuf,
    distribution: String,
    peer: String,
    servers: Vec<String>,
    weights: Option<Vec<u32>>,
    placements: Vec<(String, String)>,
}

/// The JSON string value of `"field": "…"` in a flat header (no escapes in these headers).
fn json_string(header: &str, field: &str) -> Option<String> {
    let start = header.find(&format!("\"{field}\": \""))? + field.len() + 5;
    let len = header[start..].find('"')?;
    Some(header[start..start + len].to_string())
}

/// The items of `"field": [ … ]` in a flat header, quotes removed.
fn json_list(header: &str, field: &str) -> Option<Vec<String>> {
    let start = header.find(&format!("\"{field}\": ["))? + field.len() + 5;
    let len = header[start..].find(']')?;
    Some(
        header[start..start + len]
            .split(',')
            .map(|item| item.trim().trim_matches('"').to_string())
            .filter(|item| !item.is_empty())
            .collect(),
    )
}

fn read_vector(path: &Path) -> Vector {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    let field = |name: &str| {
        json_string(header, name)
            .unwrap_or_else(|| panic!("{}: no {name:?} in the header", path.display()))
    };
    let servers = json_list(header, "servers").expect("a server list");
    let weights = json_list(header, "weights").map(|ws| {
        ws.iter()
            .map(|w| w.parse().expect("integer weight"))
            .collect()
    });
    let placements = lines
        .map(|line| {
            let (key, server) = line
                .rsplit_once('\t')
                .unwrap_or_else(|| panic!("{}: bad line {line:?}", path.display()));
            (key.to_string(), server.to_string())
        })
        .collect();
    Vector {
        path: path.to_path_buf(),
        distribution: field("distribution"),
        peer: field("peer"),
        servers,
        weights,
        placements,
    }
}

fn all_vectors() -> Vec<Vector> {
    let mut files = Vec::new();
    for folder in fs::read_dir(VECTORS).expect("tests/data/vectors exists") {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        for file in fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "tsv") {
                files.push(file);
            }
        }
    }
    files.sort();
    files.iter().map(|f| read_vector(f)).collect()
}

#[test]
fn every_mode_reproduces_every_recorded_placement_of_its_peers() {
    let vectors = all_vectors();
    assert_eq!(vectors.len(), 29, "the 29 recorded runs are all present");
    let mut report: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for v in &vectors {
        let folder = v
            .path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            folder,
            v.distribution,
            "{}: filed under the mode it proves",
            v.path.display()
        );
        let distribution = Distribution::from_name(&v.distribution)
            .unwrap_or_else(|| panic!("{}: unknown mode {}", v.path.display(), v.distribution));
        let locator = match &v.weights {
            None => Locator::new(distribution, &v.servers),
            Some(weights) => {
                let nodes: Vec<(&str, u32)> = v
                    .servers
                    .iter()
                    .map(String::as_str)
                    .zip(weights.iter().copied())
                    .collect();
                Locator::weighted(distribution, &nodes)
            }
        };
        assert!(v.placements.len() >= 1000, "{}", v.path.display());
        let mut wrong = 0;
        for (key, expected) in &v.placements {
            let index = locator.locate(key.as_bytes()).expect("nodes to place on");
            if &v.servers[index] != expected {
                if wrong < 3 {
                    failures.push(format!(
                        "{}: {key:?} -> {} but {} chose {expected}",
                        v.path.display(),
                        v.servers[index],
                        v.peer
                    ));
                }
                wrong += 1;
            }
        }
        if wrong > 0 {
            failures.push(format!(
                "{}: {wrong} of {} keys misplaced",
                v.path.display(),
                v.placements.len()
            ));
        }
        let entry = report.entry(v.distribution.clone()).or_default();
        entry.0 += 1;
        entry.1 += v.placements.len() - wrong;
    }
    for (mode, (files, keys)) in &report {
        eprintln!("{mode}: {files} files, {keys} keys placed as the peer placed them");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every shared mode is covered by at least one recorded run.
    for d in Distribution::ALL {
        if *d != Distribution::Ring {
            assert!(report.contains_key(d.name()), "no vectors for {d}");
        }
    }
}

#[test]
fn recorded_runs_use_both_ascii_and_utf8_keys() {
    let vectors = all_vectors();
    let ketama = vectors
        .iter()
        .find(|v| v.path.ends_with("ketama/php-memcached__ketama__s3-ip.tsv"))
        .expect("php ketama vector");
    let non_ascii = ketama
        .placements
        .iter()
        .filter(|(k, _)| !k.is_ascii())
        .count();
    assert_eq!(ketama.placements.len(), 2000);
    assert_eq!(non_ascii, 522);
}

/// Modes that share a peer must agree where the spec says they do: php-memcached ketama and
/// twemproxy md5 are one ring; on IP literals with ports other than 11211, spymemcached's
/// default node key gives the same ring too.
#[test]
fn equivalent_peers_agree_with_each_other() {
    let vectors = all_vectors();
    let find = |suffix: &str| {
        vectors
            .iter()
            .find(|v| v.path.to_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix}"))
    };
    for size in ["s3", "s5"] {
        let php = find(&format!("ketama/php-memcached__ketama__{size}-ip.tsv"));
        let nut = find(&format!("ketama/twemproxy__ketama-md5__{size}-ip.tsv"));
        let spy = find(&format!(
            "ketama-spymemcached/java-spymemcached__ketama-spy__{size}-ip.tsv"
        ));
        assert!(php.placements == nut.placements && php.placements == spy.placements);
    }
}
