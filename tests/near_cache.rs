//! The near cache (`ClientBuilder::near_cache`) against real memcached nodes: what it serves
//! from memory and for how long, that this client's own writes are seen at once, what it keeps
//! (admission, size limit, budget) and what a topology change does to it.
//!
//! A value served from memory is told from one read from its node by changing the value on the
//! node with a second client, without a near cache, "behind the back" of the first.

mod support;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use memcached_autodiscovery::{CasOutcome, Client, ClientBuilder, NearCacheStats};
use memcached_autodiscovery_testkit::LocalCluster;

const AGE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(300);

/// A builder for `cluster` with a near cache; [`near_client`] builds it as it is.
fn near_builder(cluster: &LocalCluster, max_bytes: usize, max_age: Duration) -> ClientBuilder {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .near_cache(max_bytes, max_age)
}

async fn near_client(cluster: &LocalCluster, max_bytes: usize, max_age: Duration) -> Client {
    near_builder(cluster, max_bytes, max_age)
        .build()
        .await
        .unwrap()
}

async fn plain_client(cluster: &LocalCluster) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .build()
        .await
        .unwrap()
}

fn stats(client: &Client) -> NearCacheStats {
    client.near_cache_stats().expect("built with a near cache")
}

/// Polls `future` once (so that its request is queued), leaving it pending.
async fn start<F: Future>(future: std::pin::Pin<&mut F>) {
    let mut future = future;
    poll_fn(|cx| {
        assert!(
            future.as_mut().poll(cx).is_pending(),
            "answered on its first poll"
        );
        Poll::Ready(())
    })
    .await;
}

#[tokio::test]
async fn off_by_default_and_with_a_zero_budget_or_age() {
    let cluster = LocalCluster::start(1).await.unwrap();
    assert!(plain_client(&cluster).await.near_cache_stats().is_none());
    assert!(near_client(&cluster, 0, AGE)
        .await
        .near_cache_stats()
        .is_none());
    assert!(near_client(&cluster, 1 << 20, Duration::ZERO)
        .await
        .near_cache_stats()
        .is_none());
}

#[tokio::test]
async fn a_read_is_served_from_memory_until_max_age() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let age = Duration::from_millis(600);
    let near = near_client(&cluster, 1 << 20, age).await;
    let other = plain_client(&cluster).await;
    other.set("hot", "v1", TTL).await.unwrap();
    assert_eq!(near.get("hot").await.unwrap().unwrap(), "v1");
    let read_at = tokio::time::Instant::now();
    other.set("hot", "v2", TTL).await.unwrap();
    // Another process's write is not seen before max age...
    assert_eq!(near.get("hot").await.unwrap().unwrap(), "v1");
    let s = stats(&near);
    assert_eq!((s.hits, s.misses, s.admissions, s.entries), (1, 1, 1, 1));
    // ... and is seen once the value is older than max age.
    tokio::time::sleep_until(read_at + age).await;
    assert_eq!(near.get("hot").await.unwrap().unwrap(), "v2");
    assert_eq!(stats(&near).misses, 2);
    // A miss on the node is not kept: the next read asks again.
    assert_eq!(near.get("absent").await.unwrap(), None);
    other.set("absent", "now", TTL).await.unwrap();
    assert_eq!(near.get("absent").await.unwrap().unwrap(), "now");
}

/// Every write of this client drops (or replaces) the key's entry: the next read never returns
/// the value from before the write.
#[tokio::test]
async fn this_clients_writes_are_read_at_once() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let near = near_client(&cluster, 1 << 20, AGE).await;
    // Each write, and the value a read returns after it.
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("set", Some("new")),
        ("add-after-delete", Some("added")),
        ("replace", Some("replaced")),
        ("append", Some("old+")),
        ("prepend", Some("+old")),
        ("cas", Some("swapped")),
        ("delete", None),
        ("touch", Some("old")),
        ("invalidate", Some("old")),
        ("flush_all", None),
    ];
    for (write, expected) in cases {
        let key = format!("ryw:{write}");
        near.set(&key, "old", TTL).await.unwrap();
        // Cached: read twice, the second from memory.
        near.get(&key).await.unwrap();
        let hits = stats(&near).hits;
        assert_eq!(near.get(&key).await.unwrap().unwrap(), "old", "{write}");
        assert_eq!(
            stats(&near).hits,
            hits + 1,
            "{write}: not served from memory"
        );
        match write {
            "set" => near.set(&key, "new", TTL).await.unwrap(),
            "add-after-delete" => {
                assert!(near.delete(&key).await.unwrap());
                assert!(near.add(&key, "added", TTL).await.unwrap());
            }
            "replace" => assert!(near.replace(&key, "replaced", TTL).await.unwrap()),
            "append" => assert!(near.append(&key, "+").await.unwrap()),
            "prepend" => assert!(near.prepend(&key, "+").await.unwrap()),
            "cas" => {
                let cas = near.gets(&key).await.unwrap().unwrap().cas.unwrap();
                let swapped = near.cas(&key, "swapped", TTL, cas).await.unwrap();
                assert_eq!(swapped, CasOutcome::Stored);
            }
            "delete" => assert!(near.delete(&key).await.unwrap()),
            // The value stays; the entry goes (the node's TTL changed).
            "touch" => assert!(near.touch(&key, Duration::from_secs(100)).await.unwrap()),
            // Marked stale on the node: a plain get still returns it, but from the node.
            "invalidate" => assert!(near.invalidate(&key, Duration::from_secs(5)).await.unwrap()),
            "flush_all" => near.flush_all().await.unwrap(),
            _ => unreachable!(),
        }
        let misses = stats(&near).misses;
        let read = near.get(&key).await.unwrap();
        assert_eq!(read.as_deref(), expected.map(str::as_bytes), "{write}");
        assert_eq!(
            stats(&near).misses,
            misses + 1,
            "{write}: served from memory"
        );
    }
    // incr/decr: the number read after them is the new one.
    near.set("ryw:counter", "10", TTL).await.unwrap();
    near.get("ryw:counter").await.unwrap();
    assert_eq!(near.incr("ryw:counter", 5).await.unwrap(), Some(15));
    assert_eq!(near.get("ryw:counter").await.unwrap().unwrap(), "15");
    assert_eq!(near.decr("ryw:counter", 3).await.unwrap(), Some(12));
    assert_eq!(near.get("ryw:counter").await.unwrap().unwrap(), "12");
}

/// A read sent before a write of its key and finished after it keeps nothing: otherwise the
/// value from before the write would be served after it.
#[tokio::test]
async fn a_read_that_overlaps_a_write_keeps_nothing() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let near = near_client(&cluster, 1 << 20, AGE).await;
    near.set("race", "before", TTL).await.unwrap();
    let mut read = pin!(near.get("race"));
    start(read.as_mut()).await;
    // Queued after the read on the same connection: the node answers the read first.
    near.set("race", "after", TTL).await.unwrap();
    assert_eq!(read.await.unwrap().unwrap(), "before");
    assert_eq!(near.get("race").await.unwrap().unwrap(), "after");
    assert_eq!(
        stats(&near).admissions,
        1,
        "only the read after the write kept"
    );
}

/// A write whose caller left before its reply still ends as a write: a read sent after the
/// write began and answered after its caller left keeps nothing (the node may apply the write
/// or not: a request not yet written when its caller leaves is not sent), and the next read
/// asks the node.
#[tokio::test]
async fn a_cancelled_write_still_ends_as_a_write() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let near = near_client(&cluster, 1 << 20, AGE).await;
    let other = plain_client(&cluster).await;
    near.set("gone", "before", TTL).await.unwrap();
    let mut read = pin!(near.get("gone"));
    {
        let mut write = pin!(near.set("gone", "after", TTL));
        start(write.as_mut()).await;
        start(read.as_mut()).await;
    }
    let value = read.await.unwrap();
    assert_eq!(value, other.get("gone").await.unwrap());
    assert_eq!(
        stats(&near).admissions,
        0,
        "a read that overlapped the write kept its value"
    );
    let misses = stats(&near).misses;
    assert_eq!(near.get("gone").await.unwrap(), value);
    assert_eq!(stats(&near).misses, misses + 1, "served from memory");
}

#[tokio::test]
async fn get_many_takes_what_it_can_from_memory() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let near = near_client(&cluster, 1 << 20, AGE).await;
    let other = plain_client(&cluster).await;
    for key in ["m:1", "m:2", "m:3"] {
        other.set(key, "old", TTL).await.unwrap();
    }
    near.get("m:1").await.unwrap();
    near.get("m:2").await.unwrap();
    for key in ["m:1", "m:2", "m:3"] {
        other.set(key, "new", TTL).await.unwrap();
    }
    let before = stats(&near);
    let found = near.get_many(["m:1", "m:2", "m:3", "m:4"]).await.unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[&b"m:1"[..]], "old");
    assert_eq!(found[&b"m:2"[..]], "old");
    assert_eq!(found[&b"m:3"[..]], "new");
    let after = stats(&near);
    assert_eq!(after.hits - before.hits, 2);
    assert_eq!(after.misses - before.misses, 2);
    // What the nodes answered is kept: m:3 is now served from memory.
    other.set("m:3", "newer", TTL).await.unwrap();
    assert_eq!(near.get("m:3").await.unwrap().unwrap(), "new");
    // Every key from memory: no node is asked.
    let all = near.get_many(["m:1", "m:2"]).await.unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn get_or_load_is_served_from_memory_and_its_store_is_kept() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let near = near_client(&cluster, 1 << 20, AGE).await;
    let other = plain_client(&cluster).await;
    let loaded = near
        .get_or_load("gol", TTL, || async {
            Ok::<_, std::io::Error>(Bytes::from("loaded"))
        })
        .await
        .unwrap();
    assert_eq!(loaded, "loaded");
    other.set("gol", "changed", TTL).await.unwrap();
    // Its own store was kept: served from memory, the loader not called.
    let again = near
        .get_or_load("gol", TTL, || async {
            Err::<Bytes, _>(std::io::Error::other("must not load"))
        })
        .await
        .unwrap();
    assert_eq!(again, "loaded");
    assert_eq!(near.get("gol").await.unwrap().unwrap(), "loaded");
    // A value kept without its flags does not serve a decoding read: it asks the node.
    let decoded = near
        .get_decoded(&memcached_autodiscovery::Codec::default(), "gol")
        .await
        .unwrap();
    assert_eq!(decoded.unwrap(), "changed");
}

#[tokio::test]
async fn a_value_over_the_size_limit_is_never_kept() {
    let cluster = LocalCluster::start(1).await.unwrap();
    // A 64 KiB budget keeps entries up to 4 KiB: key, value and 400 bytes of bookkeeping.
    let near = near_client(&cluster, 64 << 10, AGE).await;
    let fits = (4 << 10) - 400 - "small".len();
    near.set("small", vec![b's'; fits], TTL).await.unwrap();
    near.set("large", vec![b'l'; fits + 1], TTL).await.unwrap();
    near.get("small").await.unwrap();
    near.get("large").await.unwrap();
    let s = stats(&near);
    assert_eq!((s.admissions, s.entries), (1, 1));
}

/// The budget holds under a scan of many distinct keys, and the hot keys read again and again
/// stay in memory through it (admission: a key read once does not push out a key read often).
#[tokio::test]
async fn the_budget_holds_and_hot_keys_survive_a_scan() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let budget = 256 << 10;
    let near = near_client(&cluster, budget, AGE).await;
    let other = plain_client(&cluster).await;
    let value = vec![b'v'; 100];
    let hot: Vec<String> = (0..20).map(|i| format!("hot:{i}")).collect();
    for key in &hot {
        other.set(key, &value, TTL).await.unwrap();
    }
    for _ in 0..4 {
        for key in &hot {
            near.get(key).await.unwrap();
        }
    }
    let cold: Vec<String> = (0..5000).map(|i| format!("cold:{i}")).collect();
    for chunk in cold.chunks(100) {
        for key in chunk {
            other.set(key, &value, TTL).await.unwrap();
        }
        near.get_many(chunk).await.unwrap();
        for key in hot.iter().take(5) {
            near.get(key).await.unwrap();
        }
        assert!(stats(&near).bytes <= budget as u64, "{:?}", stats(&near));
    }
    let s = stats(&near);
    assert!(s.evictions > 0, "the scan did not fill the budget: {s:?}");
    // After the scan, the hot keys are still served from memory.
    let hits = s.hits;
    for key in &hot {
        near.get(key).await.unwrap();
    }
    let survived = stats(&near).hits - hits;
    assert!(
        survived >= 18,
        "only {survived} of 20 hot keys survived the scan"
    );
}

/// A topology change keeps the entries: the values did not change.
#[tokio::test]
async fn a_topology_change_keeps_the_entries() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let near = near_client(&cluster, 1 << 20, AGE).await;
    let keys: Vec<String> = (0..50).map(|i| format!("topo:{i}")).collect();
    for key in &keys {
        near.set(key, "v", TTL).await.unwrap();
        near.get(key).await.unwrap();
    }
    let version = near.cluster().version();
    cluster.add_node().await.unwrap();
    assert!(near.refresh().await.unwrap());
    assert!(near.cluster().version() > version);
    let hits = stats(&near).hits;
    for key in &keys {
        assert_eq!(near.get(key).await.unwrap().unwrap(), "v");
    }
    assert_eq!(stats(&near).hits - hits, 50);
}

/// A value held in memory is served while its node is down (within max age); a read the near
/// cache cannot serve fails as it would without one (the default failure mode: fail fast).
#[tokio::test]
async fn a_held_value_is_served_while_its_node_is_down_and_misses_fail_as_without() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let near = near_builder(&cluster, 1 << 20, AGE)
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    // Two keys of the node that will be killed.
    let port = cluster.node_addrs()[0].port();
    let mut on_node = (0..)
        .map(|i| format!("down:{i}"))
        .filter(|k| near.node_for(k).unwrap().port() == port);
    let (held, other) = (on_node.next().unwrap(), on_node.next().unwrap());
    near.set(&held, "kept", TTL).await.unwrap();
    near.set(&other, "not kept", TTL).await.unwrap();
    near.get(&held).await.unwrap();
    cluster.kill(0);
    assert_eq!(near.get(&held).await.unwrap().unwrap(), "kept");
    let error = near.get(&other).await.unwrap_err();
    assert!(error.is_retryable(), "a node error: {error}");
}

/// Inside a warm-handoff window a miss on a moved key goes through the handoff as without a
/// near cache: found on its previous owner, and then kept.
#[tokio::test]
async fn a_miss_on_a_moved_key_goes_through_the_warm_handoff() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let near = near_builder(&cluster, 1 << 20, AGE)
        .warm_handoff(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("moved:{i}")).collect();
    let mut owners = Vec::new();
    for key in &keys {
        near.set(key, key, TTL).await.unwrap();
        owners.push(near.node_for(key).unwrap().id());
    }
    cluster.add_node().await.unwrap();
    assert!(near.refresh().await.unwrap());
    let moved: Vec<&String> = keys
        .iter()
        .zip(&owners)
        .filter(|(k, owner)| near.node_for(k).unwrap().id() != **owner)
        .map(|(k, _)| k)
        .collect();
    assert!(!moved.is_empty(), "no key moved");
    for key in &moved {
        // Not in memory (never read): from the previous owner, through the handoff.
        assert_eq!(near.get(key).await.unwrap().unwrap(), key.as_bytes());
    }
    let hits = stats(&near).hits;
    for key in &moved {
        assert_eq!(near.get(key).await.unwrap().unwrap(), key.as_bytes());
    }
    assert_eq!(
        stats(&near).hits - hits,
        moved.len() as u64,
        "kept after the handoff"
    );
}
