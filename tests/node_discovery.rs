//! Discovery through the nodes: polls ask the cluster's nodes for `config get cluster` (as every
//! ElastiCache node answers it; here the test kit's node fronts, with real memcached behind
//! them), so the client follows the cluster while the configuration endpoint is unreachable.

mod support;

use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, ClusterConfig};
use memcached_autodiscovery_testkit::{EndpointBehavior, LocalCluster};
use support::load::Load;

const POLL: Duration = Duration::from_millis(1000);
/// Scheduling slack on a shared 2-core machine running a debug build.
const SLACK: Duration = Duration::from_millis(300);

async fn cluster(nodes: usize) -> LocalCluster {
    LocalCluster::builder()
        .nodes(nodes)
        .nodes_answer_config(true)
        .start()
        .await
        .unwrap()
}

async fn client(cluster: &LocalCluster) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(POLL)
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
        .discovery_timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap()
}

/// Waits until the client's version is `version`; returns how long that took.
async fn reached(client: &Client, version: u64, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if client.cluster().version() == version {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_endpoint_unreachable_the_client_follows_the_nodes() {
    let cluster = cluster(3).await;
    let client = client(&cluster).await;
    let load = Load::start(&client, 16, "nodes");
    cluster.set_endpoint_behavior(EndpointBehavior::Refuse);
    let endpoint_requests = cluster.endpoint_requests();

    // A new version with the same nodes, then a node added: both only from the nodes.
    let version = cluster.config().version() + 1;
    cluster.set_version(version);
    let took = reached(&client, version, 2 * POLL + SLACK).await;
    eprintln!(
        "endpoint refused: version {version} followed after {took:?} (poll interval {POLL:?})"
    );
    assert!(took.is_some(), "followed within two poll intervals");

    cluster.add_node().await.unwrap();
    let version = cluster.config().version();
    let took = reached(&client, version, 2 * POLL + SLACK).await;
    eprintln!("endpoint refused: node added (version {version}) followed after {took:?}");
    assert!(
        took.is_some(),
        "a new node followed within two poll intervals"
    );
    assert_eq!(client.cluster().nodes().len(), 4);
    assert_eq!(
        cluster.endpoint_requests(),
        endpoint_requests,
        "the endpoint was not reached"
    );
    let asked: u64 = (0..cluster.len())
        .map(|i| cluster.node_config_requests(i))
        .sum();
    assert!(asked >= 2, "the nodes were asked ({asked})");

    let report = load.finish().await;
    assert_eq!(report.wrong_values, 0);
    assert_eq!(report.error_count(), 0, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_ask_the_nodes_in_turn_on_their_connections_and_not_the_endpoint() {
    let cluster = cluster(3).await;
    let client = client(&cluster).await;
    let endpoint_requests = cluster.endpoint_requests();
    for _ in 0..6 {
        client.refresh().await.unwrap();
    }
    let asked: Vec<u64> = (0..3).map(|i| cluster.node_config_requests(i)).collect();
    assert_eq!(asked.iter().sum::<u64>(), 6, "one node per poll: {asked:?}");
    assert!(asked.iter().all(|&n| n == 2), "in turn: {asked:?}");
    assert_eq!(cluster.endpoint_requests(), endpoint_requests);
    // On the existing connections: no connection was opened for the polls.
    for addr in cluster.node_addrs() {
        let opened = support::stat(memcached_behind(&cluster, addr), "total_connections").await;
        assert!(opened <= 4, "{addr}: {opened} connections opened");
    }
}

/// The memcached process behind the node front at `addr`.
fn memcached_behind(cluster: &LocalCluster, addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let index = cluster
        .node_addrs()
        .iter()
        .position(|a| *a == addr)
        .unwrap();
    cluster.node_memcached_addr(index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_answers_error_is_not_asked_again_and_the_endpoint_answers() {
    let cluster = cluster(3).await;
    for i in 0..3 {
        cluster.set_node_answers_config(i, false); // plain memcached: ERROR
    }
    let client = client(&cluster).await;
    let before = cluster.endpoint_requests();
    for _ in 0..8 {
        client.refresh().await.unwrap();
    }
    let asked: Vec<u64> = (0..3).map(|i| cluster.node_config_requests(i)).collect();
    assert!(
        asked.iter().all(|&n| n == 1),
        "each node asked once: {asked:?}"
    );
    assert_eq!(
        cluster.endpoint_requests() - before,
        8,
        "every poll reached the endpoint"
    );
    let version = cluster.config().version() + 1;
    cluster.set_version(version);
    client.refresh().await.unwrap();
    assert_eq!(client.cluster().version(), version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_node_answers_the_endpoint_is_asked() {
    let cluster = cluster(2).await;
    let client = client(&cluster).await;
    cluster.kill(0);
    cluster.kill(1);
    let version = cluster.config().version() + 1;
    cluster.set_version(version);
    let before = cluster.endpoint_requests();
    // The first poll may find the nodes alive until their connections break; the next ones
    // skip them.
    let mut followed = false;
    for _ in 0..3 {
        let _ = client.refresh().await;
        if client.cluster().version() == version {
            followed = true;
            break;
        }
    }
    assert!(followed, "followed from the endpoint");
    assert!(cluster.endpoint_requests() > before);
}

/// Nodes that lag do not hide the endpoint: a node answering a version older than the client's
/// sends that poll on to the endpoint, which serves the newer version; nodes answering the
/// client's own version keep the polls off the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answer_older_than_the_client_s_sends_the_poll_to_the_endpoint() {
    let cluster = cluster(3).await;
    // No background poll in the way of the request counts: every poll here is a refresh.
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(Duration::from_secs(3600))
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
        .discovery_timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let nodes_asked = |cluster: &LocalCluster| -> u64 {
        (0..cluster.len())
            .map(|i| cluster.node_config_requests(i))
            .sum()
    };

    // Version N, from the nodes: the endpoint is not asked.
    let current = cluster.config().version() + 1;
    cluster.set_version(current);
    let before = cluster.endpoint_requests();
    client.refresh().await.unwrap();
    assert_eq!(client.cluster().version(), current);
    for _ in 0..3 {
        client.refresh().await.unwrap();
    }
    assert_eq!(nodes_asked(&cluster), 4);
    assert_eq!(
        cluster.endpoint_requests(),
        before,
        "nodes answering the client's version keep the polls off the endpoint"
    );

    // The nodes lag at N-1 while the endpoint serves N+1.
    let lagging = ClusterConfig::new(current - 1, cluster.config().nodes().to_vec());
    for i in 0..cluster.len() {
        cluster.set_node_config(i, Some(lagging.clone()));
    }
    let newer = current + 1;
    cluster.set_version(newer);
    client.refresh().await.unwrap();
    assert_eq!(
        client.cluster().version(),
        newer,
        "one poll: the lagging node's answer, then the endpoint"
    );
    assert_eq!(nodes_asked(&cluster), 5, "one node was asked");
    assert_eq!(cluster.endpoint_requests(), before + 1, "then the endpoint");

    // The nodes catch up: the polls stay off the endpoint again.
    for i in 0..cluster.len() {
        cluster.set_node_config(i, None);
    }
    for _ in 0..3 {
        client.refresh().await.unwrap();
    }
    assert_eq!(client.cluster().version(), newer);
    assert_eq!(nodes_asked(&cluster), 8);
    assert_eq!(cluster.endpoint_requests(), before + 1);
}
