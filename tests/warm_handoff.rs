//! Warm handoff after a scale-out, with real memcached: 3 nodes, 2,000 keys, a 4th node added.
//! Right after the change, reads hit their moved keys on the previous owner (and copy them to
//! the new one, with their remaining TTL); deleted or overwritten moved keys never come back.
//!
//! Prints `scenario warm_handoff/...` lines; docs/reliability.md quotes them.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memcached_autodiscovery::Client;
use memcached_autodiscovery::Node;
use memcached_autodiscovery_testkit::LocalCluster;
use support::rogue::{Rogue, RogueNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEYS: usize = 2000;
const TTL: Duration = Duration::from_secs(600);

async fn client(cluster: &LocalCluster, handoff: Option<Duration>) -> Client {
    let mut builder = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(Duration::from_secs(3600))
        .request_timeout(Duration::from_secs(1));
    if let Some(window) = handoff {
        builder = builder.warm_handoff(window);
    }
    builder.build().await.unwrap()
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("handoff-{i}")).collect()
}

/// Sets every key, adds a node, refreshes; returns the keys whose owner changed.
async fn scale_out(cluster: &LocalCluster, client: &Client, keys: &[String]) -> Vec<String> {
    for key in keys {
        client.set(key, key, TTL).await.unwrap();
    }
    let before: Vec<String> = keys
        .iter()
        .map(|k| client.node_for(k).unwrap().id())
        .collect();
    cluster.add_node().await.unwrap();
    assert!(client.refresh().await.unwrap());
    keys.iter()
        .zip(before)
        .filter(|(k, owner)| client.node_for(k).unwrap().id() != *owner)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Reads every key once; returns the hit ratio.
async fn hit_ratio(client: &Client, keys: &[String]) -> f64 {
    let mut hits = 0;
    for key in keys {
        if let Some(value) = client.get(key).await.unwrap() {
            assert_eq!(&value[..], key.as_bytes(), "a value names its key");
            hits += 1;
        }
    }
    hits as f64 / keys.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_right_after_a_scale_out_hit_with_warm_handoff() {
    let keys = keys();
    let mut ratios = Vec::new();
    for handoff in [None, Some(Duration::from_secs(60))] {
        let cluster = LocalCluster::start(3).await.unwrap();
        let client = client(&cluster, handoff).await;
        let moved = scale_out(&cluster, &client, &keys).await;
        let ratio = hit_ratio(&client, &keys).await;
        // A second pass: with handoff the moved keys now live on their new owner.
        let again = hit_ratio(&client, &keys).await;
        eprintln!(
            "scenario warm_handoff/{}: {} of {KEYS} keys moved; hit ratio right after the change {:.2} %, second read {:.2} %",
            if handoff.is_some() { "on" } else { "off" },
            moved.len(),
            ratio * 100.0,
            again * 100.0
        );
        ratios.push(ratio);
        if handoff.is_some() {
            // The copies are on the new owner now: found there with the handoff window closed.
            let plain = self::client(&cluster, None).await;
            assert!(
                hit_ratio(&plain, &moved).await >= 0.995,
                "moved keys were copied"
            );
            // With their remaining TTL, not a fresh or endless one.
            let owner = cluster
                .node_addrs()
                .into_iter()
                .find(|a| {
                    plain
                        .node_for(&moved[0])
                        .unwrap()
                        .id()
                        .ends_with(&format!(":{}", a.port()))
                })
                .unwrap();
            let ttl = remaining_ttl(owner, &moved[0]).await;
            assert!(
                ttl > 0 && ttl <= TTL.as_secs() as i64,
                "remaining TTL {ttl}"
            );
        }
    }
    assert!(
        ratios[0] < 0.9,
        "without handoff the moved keys miss ({})",
        ratios[0]
    );
    assert!(ratios[1] >= 0.995, "with handoff ({})", ratios[1]);
}

/// `mg <key> t` on a node: the remaining TTL (-1: none).
async fn remaining_ttl(addr: std::net::SocketAddr, key: &str) -> i64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("mg {key} t\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split_whitespace()
        .find_map(|t| t.strip_prefix('t'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("mg answered {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_or_overwritten_moved_keys_never_return_their_old_value() {
    let keys = keys();
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, Some(Duration::from_secs(60))).await;
    let moved = scale_out(&cluster, &client, &keys).await;
    assert!(moved.len() > 200, "{} keys moved", moved.len());

    // Readers keep reading the moved keys while a writer deletes half of them and overwrites the
    // other half, each once. A read that starts after a key's delete or overwrite was
    // acknowledged must not see the old value.
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..moved.len()).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let violations = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..8 {
        let (client, moved, done, stop, violations, reads) = (
            client.clone(),
            moved.clone(),
            done.clone(),
            stop.clone(),
            violations.clone(),
            reads.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let k = i % moved.len();
                i += 7;
                let begun = started.elapsed().as_micros() as u64 + 1;
                let value = client.get(&moved[k]).await.unwrap();
                reads.fetch_add(1, Ordering::Relaxed);
                let finished_at = done[k].load(Ordering::Acquire);
                let old = value.as_deref() == Some(moved[k].as_bytes());
                if finished_at != 0 && begun > finished_at && old {
                    violations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for (k, key) in moved.iter().enumerate() {
        if k % 2 == 0 {
            client.delete(key).await.unwrap();
        } else {
            client.set(key, format!("{key}-new"), TTL).await.unwrap();
        }
        done[k].store(started.elapsed().as_micros() as u64 + 1, Ordering::Release);
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    eprintln!(
        "scenario warm_handoff/writes: {} moved keys deleted or overwritten under {} concurrent reads; old values seen after the write: {}",
        moved.len(),
        reads.load(Ordering::Relaxed),
        violations.load(Ordering::Relaxed)
    );
    assert_eq!(violations.load(Ordering::Relaxed), 0);
    // And at the end, from a client without handoff as from this one.
    let plain = self::client(&cluster, None).await;
    for (k, key) in moved.iter().enumerate() {
        let expected = (k % 2 == 1).then(|| format!("{key}-new"));
        for c in [&client, &plain] {
            let value = c.get(key).await.unwrap();
            assert_eq!(
                value.as_deref(),
                expected.as_deref().map(str::as_bytes),
                "{key}"
            );
        }
    }
}

/// A previous owner that answers the handoff's read with another key's item (a relay before
/// memcached that asks it for `decoy` instead): that item is neither served for the moved key
/// nor copied to the key's new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_owner_answering_for_another_key_is_neither_served_nor_copied() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let addrs = cluster.node_addrs();
    let direct = |addr: std::net::SocketAddr| {
        Client::builder()
            .nodes([addr.to_string()])
            .request_timeout(Duration::from_secs(1))
            .build()
    };
    let previous_node = direct(addrs[0]).await.unwrap();
    previous_node
        .set("decoy", "decoy's value", TTL)
        .await
        .unwrap();
    let rogue = RogueNode::start(Rogue::OtherKey(addrs[0], "decoy")).await;
    // The cluster is the relay alone, then the relay and the second node.
    let relay = Node::new(
        "relay.local-cluster.test",
        Some(rogue.addr.ip()),
        rogue.addr.port(),
    );
    let new_owner = cluster.nodes()[1].clone();
    let version = cluster.config().version();
    cluster.set_nodes_same_version(vec![relay.clone()]);
    cluster.set_version(version + 1);
    let client = client(&cluster, Some(Duration::from_secs(60))).await;
    cluster.set_nodes_same_version(vec![relay, new_owner.clone()]);
    cluster.set_version(version + 2);
    assert!(client.refresh().await.unwrap());
    let key = (0..1000)
        .map(|i| format!("moved-{i}"))
        .find(|k| client.node_for(k).unwrap().id() == new_owner.id())
        .expect("a key moved to the new node");

    let served = client.get(&key).await.unwrap();
    let copied = direct(addrs[1]).await.unwrap().get(&key).await.unwrap();
    assert_eq!(
        (served, copied),
        (None, None),
        "the decoy's item for {key}: (served, copied to the new owner)"
    );
    // The decoy itself is untouched.
    assert_eq!(
        previous_node.get("decoy").await.unwrap().unwrap(),
        "decoy's value"
    );
}

/// A moved key overwritten with a short TTL: once the new value expires (the window still
/// open), a read must not bring back the value the previous owner held before the write. The
/// write deletes the previous owner's copy; without that, the miss on the new owner is looked
/// up on the previous owner and finds the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwritten_moved_key_that_expires_does_not_return_its_old_value() {
    let keys: Vec<String> = keys().into_iter().take(300).collect();
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, Some(Duration::from_secs(60))).await;
    let moved = scale_out(&cluster, &client, &keys).await;
    assert!(moved.len() > 20, "{} keys moved", moved.len());

    for key in &moved {
        client
            .set(key, format!("{key}-new"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    // memcached's clock ticks once a second: a 1 s TTL is gone within 2 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut old = 0;
    for key in &moved {
        match client.get(key).await.unwrap() {
            None => {}
            Some(value) if value == key.as_bytes() => old += 1,
            Some(value) => panic!("{key}: {value:?} after its TTL"),
        }
    }
    eprintln!(
        "scenario warm_handoff/expired-overwrite: {} moved keys overwritten with a 1 s TTL; old values back after it expired: {old}",
        moved.len()
    );
    assert_eq!(old, 0, "the previous owner's copy was deleted by the write");
}

/// Every read goes through the handoff, not only `get`: inside the window, moved keys are
/// found on their previous owner by `gets` (with a CAS token that works on the new owner),
/// `gat`, `get_or_load` (its loader never runs) and `get_many`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_finds_moved_keys_inside_the_window() {
    let keys: Vec<String> = keys().into_iter().take(600).collect();
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, Some(Duration::from_secs(60))).await;
    let moved = scale_out(&cluster, &client, &keys).await;
    assert!(moved.len() > 40, "{} keys moved", moved.len());
    let quarter = moved.len() / 4;
    let (by_gets, rest) = moved.split_at(quarter);
    let (by_gat, rest) = rest.split_at(quarter);
    let (by_load, by_many) = rest.split_at(quarter);
    let mut cas_stored = 0;
    for key in by_gets {
        let item = client
            .gets(key)
            .await
            .unwrap()
            .expect("gets finds a moved key");
        assert_eq!(&item.value[..], key.as_bytes());
        let cas = item.cas.expect("gets returns a CAS token");
        let stored = client.cas(key, "swapped", TTL, cas).await.unwrap();
        cas_stored += usize::from(stored == memcached_autodiscovery::CasOutcome::Stored);
    }
    for key in by_gat {
        let value = client.gat(key, TTL).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_bytes()), "gat finds {key}");
    }
    let loads = Arc::new(AtomicU64::new(0));
    for key in by_load {
        let loads = loads.clone();
        let value = client
            .get_or_load(key, TTL, || async move {
                loads.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"from the database"))
            })
            .await
            .unwrap();
        assert_eq!(&value[..], key.as_bytes(), "get_or_load finds {key}");
    }
    let many = client.get_many(by_many.iter()).await.unwrap();
    eprintln!(
        "scenario warm_handoff/every-read: {} moved keys; gets {}/{} (cas stored {cas_stored}), \
         gat {}, get_or_load {} with {} loads, get_many {} of {}",
        moved.len(),
        by_gets.len(),
        by_gets.len(),
        by_gat.len(),
        by_load.len(),
        loads.load(Ordering::Relaxed),
        many.len(),
        by_many.len()
    );
    assert_eq!(
        cas_stored,
        by_gets.len(),
        "the CAS token is the new owner's copy's"
    );
    assert_eq!(loads.load(Ordering::Relaxed), 0, "no load for a moved key");
    assert_eq!(many.len(), by_many.len());
}
