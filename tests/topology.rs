//! Discovery and refresh against a local emulated cluster: nodes added, removed, replaced;
//! versions bumped, repeated and regressed; an endpoint that fails in every way.

mod support;

use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, Error};
use memcached_autodiscovery_testkit::{EndpointBehavior, LocalCluster};
use support::{client_for, eventually, stat};

const MINUTE: Duration = Duration::from_secs(60);

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("topology-key-{i}")).collect()
}

#[tokio::test]
async fn a_version_bump_adding_a_node_routes_new_keys_to_it() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    assert_eq!(client.cluster().version(), 1);
    assert_eq!(client.cluster().nodes().len(), 3);

    let added = cluster.add_node().await.unwrap();
    assert!(
        client.refresh().await.unwrap(),
        "the new version is applied"
    );
    assert!(
        !client.refresh().await.unwrap(),
        "nothing changes on the next poll"
    );
    assert_eq!(client.cluster().version(), 2);
    assert_eq!(client.cluster().nodes().len(), 4);

    let mine: Vec<String> = keys(400)
        .into_iter()
        .filter(|k| client.node_for(k).unwrap() == added)
        .collect();
    assert!(
        mine.len() > 40,
        "about a quarter of the keys go to the new node, got {}",
        mine.len()
    );
    for key in &mine {
        client.set(key, "new", MINUTE).await.unwrap();
    }
    let new_addr = *cluster.node_addrs().last().unwrap();
    assert_eq!(stat(new_addr, "curr_items").await, mine.len() as u64);
}

#[tokio::test]
async fn the_background_poller_follows_changes_and_stops_with_the_client() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, Duration::from_millis(100)).await;
    cluster.add_node().await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || client.cluster().nodes().len()
            == 3)
        .await,
        "the poller applied the added node"
    );
    cluster.remove_node(0).await;
    assert!(eventually(Duration::from_secs(3), || client.cluster().version() == 3).await);
    assert_eq!(client.cluster().nodes().len(), 2);

    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = cluster.endpoint_requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.endpoint_requests(),
        after_drop,
        "no poll after the client is gone"
    );
}

#[tokio::test]
async fn a_removed_node_takes_no_more_keys() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let removed = cluster.remove_node(1).await;
    assert!(client.refresh().await.unwrap());
    for key in keys(300) {
        assert_ne!(client.node_for(&key).unwrap(), removed);
        client.set(&key, "v", MINUTE).await.unwrap();
        assert!(client.get(&key).await.unwrap().is_some());
    }
}

async fn placements(client: &Client) -> Vec<String> {
    keys(1000)
        .iter()
        .map(|k| client.node_for(k).unwrap().id())
        .collect()
}

#[tokio::test]
async fn a_replaced_node_is_reconnected_without_moving_keys() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let before = placements(&client).await;
    for key in keys(100) {
        client.set(&key, "old", MINUTE).await.unwrap();
    }
    let old_ip = cluster.config().nodes()[1].ip();
    let replacement = cluster.replace_node(1).await.unwrap();
    assert_ne!(replacement.ip(), old_ip);
    assert!(client.refresh().await.unwrap());
    assert_eq!(client.cluster().nodes()[1].ip(), replacement.ip());
    assert_eq!(
        placements(&client).await,
        before,
        "same hostname:port, same keys"
    );
    // Keys of the replaced node are clean misses on the fresh process; the others are intact.
    let mut hits = 0;
    for key in keys(100) {
        let owner = client.node_for(&key).unwrap();
        let value = client.get(&key).await.unwrap();
        if owner == replacement {
            assert_eq!(value, None);
            client.set(&key, "again", MINUTE).await.unwrap();
            assert!(
                client.get(&key).await.unwrap().is_some(),
                "the new process serves it"
            );
        } else {
            assert_eq!(value.as_deref(), Some(&b"old"[..]));
            hits += 1;
        }
    }
    assert!(hits > 30);
}

#[tokio::test]
async fn the_same_version_with_another_node_set_is_applied() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let replacement = cluster.replace_node_with(0, false).await.unwrap();
    assert_eq!(cluster.config().version(), 1, "the version did not move");
    assert!(client.refresh().await.unwrap());
    assert_eq!(client.cluster().nodes()[0], replacement);
    let key = keys(200)
        .into_iter()
        .find(|k| client.node_for(k).unwrap() == replacement)
        .unwrap();
    client
        .set(&key, "served by the replacement", MINUTE)
        .await
        .unwrap();
    assert_eq!(stat(cluster.node_addrs()[0], "curr_items").await, 1);
}

#[tokio::test]
async fn a_lower_version_is_ignored() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    cluster.add_node().await.unwrap();
    assert!(client.refresh().await.unwrap());
    assert_eq!(client.cluster().version(), 2);
    cluster.remove_node(2).await; // version 3 with two nodes ...
    cluster.set_version(1); // ... served as version 1: an endpoint lagging behind
    assert!(!client.refresh().await.unwrap());
    assert_eq!(client.cluster().version(), 2);
    assert_eq!(client.cluster().nodes().len(), 3);
}

#[tokio::test]
async fn a_failing_endpoint_keeps_the_last_good_topology() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let good = client.cluster();
    let behaviors = [
        EndpointBehavior::Garbage,
        EndpointBehavior::Truncated,
        EndpointBehavior::Hang,
        EndpointBehavior::Refuse,
        EndpointBehavior::Error,
        EndpointBehavior::Oversized,
        EndpointBehavior::Empty,
    ];
    for behavior in behaviors {
        cluster.set_endpoint_behavior(behavior);
        let started = Instant::now();
        let result = client.refresh().await;
        assert!(
            result.is_err(),
            "{behavior:?} gives an error, got {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{behavior:?} is bounded in time"
        );
        assert_eq!(client.cluster(), good, "{behavior:?} keeps the topology");
        client.set("still-serving", "yes", MINUTE).await.unwrap();
        assert!(client.get("still-serving").await.unwrap().is_some());
    }
    cluster.set_endpoint_behavior(EndpointBehavior::Normal);
    cluster.add_node().await.unwrap();
    assert!(
        client.refresh().await.unwrap(),
        "recovers once the endpoint is back"
    );
}

#[tokio::test]
async fn plain_memcached_is_not_a_discovery_endpoint() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let plain = cluster.node_addrs()[0].to_string();
    let err = Client::builder()
        .config_endpoint(plain)
        .build()
        .await
        .expect_err("fails");
    assert!(matches!(err, Error::DiscoveryUnsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("nodes("),
        "the message says what to do: {err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn the_legacy_key_is_used_on_old_engines() {
    let cluster = LocalCluster::builder()
        .nodes(2)
        .legacy_only(true)
        .start()
        .await
        .unwrap();
    let client = client_for(&cluster, MINUTE).await;
    assert_eq!(client.cluster().nodes().len(), 2);
    client.set("legacy", "ok", MINUTE).await.unwrap();
}

#[tokio::test]
async fn a_frozen_node_times_out_while_the_others_serve() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .request_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let frozen = client.cluster().nodes()[0].clone();
    let all = keys(60);
    for key in &all {
        client.set(key, "v", MINUTE).await.unwrap();
    }
    cluster.freeze(0);
    for key in &all {
        let started = Instant::now();
        let result = client.get(key).await;
        if client.node_for(key).unwrap() == frozen {
            let err = result.unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert!(err.node().is_some());
            assert!(
                started.elapsed() < Duration::from_millis(600),
                "bounded by the timeout"
            );
        } else {
            assert!(result.unwrap().is_some(), "other nodes keep serving");
        }
    }
    cluster.thaw(0);
    let key = all
        .iter()
        .find(|k| client.node_for(k).unwrap() == frozen)
        .unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if client.get(key).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the thawed node serves again");
}

#[tokio::test]
async fn a_killed_node_fails_fast_and_is_reconnected_after_restart() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let dead = client.cluster().nodes()[0].clone();
    let key = keys(100)
        .into_iter()
        .find(|k| client.node_for(k).unwrap() == dead)
        .unwrap();
    client.set(&key, "before", MINUTE).await.unwrap();
    cluster.kill(0);
    let first = client.get(&key).await.unwrap_err();
    assert!(first.is_retryable(), "{first}");
    let started = Instant::now();
    let second = client.get(&key).await.unwrap_err();
    assert!(
        matches!(second, Error::NodeDown { .. } | Error::Io { .. }),
        "{second}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "fails fast while down"
    );
    cluster.restart(0).await.unwrap();
    let mut back = false;
    for _ in 0..100 {
        if client.set(&key, "after", MINUTE).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "reconnected after the restart");
    assert_eq!(
        client.get(&key).await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

/// Polls `curr_connections` of `addr` until it equals `want` (bounded).
async fn connections_become(addr: std::net::SocketAddr, want: u64) -> bool {
    for _ in 0..100 {
        if stat(addr, "curr_connections").await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn connections_close_when_their_node_is_removed_and_when_the_client_is_dropped() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let addrs = cluster.node_addrs();
    // `stat` holds its own connection while it reads: that is the baseline.
    let baseline = stat(addrs[1], "curr_connections").await;
    let client = client_for(&cluster, MINUTE).await;
    for key in keys(100) {
        client.set(&key, "v", MINUTE).await.unwrap(); // one connection per node
    }
    assert_eq!(stat(addrs[1], "curr_connections").await, baseline + 1);
    assert_eq!(stat(addrs[2], "curr_connections").await, baseline + 1);

    // Node 1 leaves the configuration but its process keeps running.
    let mut nodes = cluster.config().nodes().to_vec();
    nodes.remove(1);
    cluster.set_nodes_same_version(nodes);
    assert!(client.refresh().await.unwrap());
    for key in keys(100) {
        client.get(&key).await.unwrap();
    }
    assert!(
        connections_become(addrs[1], baseline).await,
        "the removed node's connection closed"
    );
    assert_eq!(
        stat(addrs[2], "curr_connections").await,
        baseline + 1,
        "the others are reused"
    );

    drop(client);
    assert!(
        connections_become(addrs[2], baseline).await,
        "dropping the client closes its connections"
    );
}
