//! What the library records through the `metrics` facade (feature `metrics`), captured by a
//! recording recorder while a client goes through every call and every outcome against real
//! memcached: hits, misses, a server error, a cancelled call, a timeout on a frozen node, a
//! node in its backoff, a refused connect on a killed node, a topology change and a failing
//! endpoint. Checked:
//!
//! * the metrics recorded, with their kind and label names, are exactly the rows of the metrics
//!   tables in docs/observability.md and in the crate docs (src/lib.rs), and every `op` and
//!   `outcome` value the tables list (and no other) was recorded;
//! * no label value holds a byte of a key or a value the caller used.
#![cfg(feature = "metrics")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use memcached_autodiscovery::{Client, Error};
use memcached_autodiscovery_testkit::{EndpointBehavior, LocalCluster};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

/// Keys and values carry this marker; no label may.
const MARKER: &str = "SeCrEt";
const MINUTE: Duration = Duration::from_secs(60);

/// A metric's row: kind and label names.
type Row = (String, BTreeSet<String>);

/// The two tables under `heading` in `text`: metric name → (kind, labels), and label → values.
fn tables(
    text: &str,
    heading: &str,
) -> (BTreeMap<String, Row>, BTreeMap<String, BTreeSet<String>>) {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading:?} present"));
    let ticked = |cell: &str| -> BTreeSet<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let (mut metrics, mut labels) = (BTreeMap::new(), BTreeMap::new());
    for line in text[start..].lines().skip(1) {
        let line = line.trim_start_matches("//!").trim();
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        match cells.len() {
            4 if cells[0] != "name" => {
                let kind = cells[1].split_whitespace().next().unwrap_or_default();
                metrics.insert(
                    cells[0].trim_matches('`').to_string(),
                    (kind.to_string(), ticked(cells[2])),
                );
            }
            2 if cells[0] != "label" => {
                let values = ticked(cells[1]);
                labels.insert(cells[0].trim_matches('`').to_string(), values);
            }
            _ => {}
        }
    }
    (metrics, labels)
}

/// A key of `prefix` that `client` routes to the node listening on `port`.
fn key_on(client: &Client, port: u16, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{MARKER}-{prefix}-{i}"))
        .find(|k| client.node_for(k).unwrap().port() == port)
        .expect("some key lands on every node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_metrics_are_the_documented_ones_and_hold_no_key_or_value() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let cluster = LocalCluster::start(2).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(MINUTE)
        .request_timeout(Duration::from_millis(400))
        .connect_timeout(Duration::from_millis(400))
        .reconnect_backoff(Duration::from_secs(5), Duration::from_secs(5))
        .build()
        .await
        .unwrap();

    // Listed from the start, before their first event: the client's counters, and each
    // node's count of being marked down; every metric is described.
    let at_start: BTreeSet<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| key.key().name().to_string())
        .collect();
    for name in [
        "memcached.topology.changes",
        "memcached.topology.version",
        "memcached.discovery.failures",
        "memcached.nodes.marked_down",
    ] {
        assert!(
            at_start.contains(name),
            "{name} listed at build: {at_start:?}"
        );
    }

    // Every call, with marked keys and values.
    let key = |name: &str| format!("{MARKER}-{name}");
    let value = format!("{MARKER}-value");

    // A client with a near cache, whose budget (16 KiB) holds a few values: hits, misses, values
    // kept and evicted, bytes held. Its metrics are listed when it is built. (Before the other
    // calls: a snapshot drains the counters.)
    let near = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .near_cache(16 << 10, MINUTE)
        .build()
        .await
        .unwrap();
    let listed: BTreeSet<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| key.key().name().to_string())
        .collect();
    assert!(
        listed.contains("memcached.near_cache.evictions"),
        "{listed:?}"
    );
    let scan: Vec<String> = (0..64).map(|i| key(&format!("near-{i}"))).collect();
    for k in &scan {
        client.set(k, &value, MINUTE).await.unwrap();
    }
    for _ in 0..2 {
        for k in &scan {
            near.get(k).await.unwrap();
        }
    }
    let near_stats = near.near_cache_stats().unwrap();
    assert!(
        near_stats.hits > 0 && near_stats.evictions > 0,
        "{near_stats:?}"
    );
    // One snapshot: each drains the counters.
    let counters: BTreeMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, .., value)| (key.key().name().to_string(), value))
        .collect();
    assert_eq!(
        counters.get("memcached.near_cache.hits"),
        Some(&DebugValue::Counter(near_stats.hits))
    );
    assert_eq!(
        counters.get("memcached.near_cache.evictions"),
        Some(&DebugValue::Counter(near_stats.evictions))
    );
    // Counted again after that snapshot, for the checks at the end.
    for _ in 0..2 {
        for k in &scan {
            near.get(k).await.unwrap();
        }
    }
    drop(near);

    client.set(key("a"), &value, MINUTE).await.unwrap();
    assert!(client.get(key("a")).await.unwrap().is_some(), "a hit");
    assert!(client.get(key("absent")).await.unwrap().is_none(), "a miss");
    let token = client.gets(key("a")).await.unwrap().unwrap().cas.unwrap();
    client.cas(key("a"), &value, MINUTE, token).await.unwrap();
    client.gat(key("a"), MINUTE).await.unwrap();
    client.add(key("b"), &value, MINUTE).await.unwrap();
    client.replace(key("b"), &value, MINUTE).await.unwrap();
    client.append(key("b"), &value).await.unwrap();
    client.prepend(key("b"), &value).await.unwrap();
    client.touch(key("b"), MINUTE).await.unwrap();
    client.delete(key("b")).await.unwrap();
    client.set(key("n"), "1", MINUTE).await.unwrap();
    client.incr(key("n"), 2).await.unwrap();
    client.decr(key("n"), 1).await.unwrap();
    let keys: Vec<String> = (0..8).map(|i| key(&format!("many-{i}"))).collect();
    client.get_many(&keys).await.unwrap();
    client
        .get_or_load(key("loaded"), MINUTE, || async {
            Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{MARKER}-loaded")))
        })
        .await
        .unwrap();
    client.invalidate(key("loaded"), MINUTE).await.unwrap();
    client.stats(None).await.unwrap();
    client.flush_all().await.unwrap();

    // The calls through a codec, each counted under its own op (not as the gets or set it
    // makes).
    client
        .set_json(key("json"), &vec![1, 2, 3], MINUTE)
        .await
        .unwrap();
    let back: Option<Vec<u32>> = client.get_json(key("json")).await.unwrap();
    assert_eq!(back, Some(vec![1, 2, 3]));
    let codec = memcached_autodiscovery::codec::Codec::default();
    client
        .set_encoded(&codec, key("encoded"), &value, MINUTE)
        .await
        .unwrap();
    let absent = client.get_decoded(&codec, key("absent")).await.unwrap();
    assert!(absent.is_none());

    // Calls refused before anything is sent count as errors of their op.
    assert!(matches!(
        client.delete("a key with spaces").await,
        Err(Error::Invalid(_))
    ));
    let too_long = Duration::from_secs(u64::from(u32::MAX) * 2);
    assert!(client.set(key("c"), &value, too_long).await.is_err());

    // A server error: incr of a value that is not a number.
    client.set(key("text"), &value, MINUTE).await.unwrap();
    assert!(matches!(
        client.incr(key("text"), 1).await,
        Err(Error::Server { .. })
    ));

    // A topology change, then a failing endpoint.
    cluster.add_node().await.unwrap();
    assert!(client.refresh().await.unwrap());
    cluster.set_endpoint_behavior(EndpointBehavior::Garbage);
    assert!(client.refresh().await.is_err());
    cluster.set_endpoint_behavior(EndpointBehavior::Normal);

    // A frozen node: a cancelled call, a timeout, then the node in its backoff.
    let ports: Vec<u16> = cluster.node_addrs().iter().map(|a| a.port()).collect();
    let frozen = key_on(&client, ports[0], "frozen");
    client.get(&frozen).await.unwrap();
    cluster.freeze(0);
    let cancelled = tokio::time::timeout(Duration::from_millis(50), client.get(&frozen)).await;
    assert!(cancelled.is_err(), "dropped while waiting");
    let timed_out = client.get(&frozen).await.unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");
    let down = client.get(&frozen).await.unwrap_err();
    assert!(matches!(down, Error::NodeDown { .. }), "{down}");
    cluster.thaw(0);

    // A killed node: its connection is lost, the connect that follows is refused.
    let killed = key_on(&client, ports[1], "killed");
    client.get(&killed).await.unwrap();
    cluster.kill(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = client.get(&killed).await.unwrap_err();
    assert!(
        !refused.is_timeout() && !matches!(refused, Error::NodeDown { .. }),
        "{refused}"
    );
    drop(client);

    // What was recorded.
    let mut recorded: BTreeMap<String, Row> = BTreeMap::new();
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut calls: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (key, _unit, description, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        assert!(description.is_some(), "{} described", key.name());
        if let ("memcached.requests", DebugValue::Counter(n)) = (key.name(), &value) {
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            *calls.entry((label("op"), label("outcome"))).or_default() += n;
        }
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let name = key.name().to_string();
        if let DebugValue::Counter(n) = value {
            *counted.entry(name.clone()).or_default() += n;
        }
        let entry = recorded
            .entry(name)
            .or_insert_with(|| (kind.to_string(), BTreeSet::new()));
        for label in key.labels() {
            assert!(
                !label.value().contains(MARKER),
                "a key or value in a label: {label:?}"
            );
            entry.1.insert(label.key().to_string());
            values
                .entry(label.key().to_string())
                .or_default()
                .insert(label.value().to_string());
        }
    }

    for (name, n) in &counted {
        assert!(*n > 0, "{name} registered but never counted");
    }
    let count = |op: &str, outcome: &str| calls.get(&(op.into(), outcome.into())).copied();
    assert_eq!(
        count("delete", "error"),
        Some(1),
        "a refused key: {calls:?}"
    );
    assert_eq!(count("set", "error"), Some(1), "a refused TTL: {calls:?}");
    assert_eq!(count("set_json", "ok"), Some(1), "{calls:?}");
    assert_eq!(count("get_json", "hit"), Some(1), "{calls:?}");
    assert_eq!(count("set_encoded", "ok"), Some(1), "{calls:?}");
    assert_eq!(count("get_decoded", "miss"), Some(1), "{calls:?}");
    let gets: u64 = calls
        .iter()
        .filter(|((op, _), _)| op == "gets")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        gets, 1,
        "only the one gets call is counted as gets: {calls:?}"
    );

    let root = env!("CARGO_MANIFEST_DIR");
    let page = std::fs::read_to_string(format!("{root}/docs/observability.md")).unwrap();
    let lib = std::fs::read_to_string(format!("{root}/src/lib.rs")).unwrap();
    let (documented, labels) = tables(&page, "## Metrics");
    assert_eq!(
        recorded, documented,
        "docs/observability.md's metrics table (right) and what the library records (left) differ"
    );
    assert_eq!(
        tables(&lib, "//! # Metrics"),
        (documented, labels.clone()),
        "the crate docs' metrics tables differ from docs/observability.md's"
    );
    for label in ["op", "outcome"] {
        assert_eq!(
            values[label], labels[label],
            "the `{label}` values recorded (left) and documented (right) differ"
        );
    }
    let nodes: BTreeSet<String> = cluster.nodes().iter().map(|n| n.id()).collect();
    assert!(
        values["node"].is_subset(&nodes),
        "node labels are node ids: {:?}",
        values["node"]
    );
}
