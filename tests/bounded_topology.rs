//! Topology work is bounded: `build()` and every refresh end within the discovery timeout for
//! any configuration the parser accepts, or fail with an error that names what to change, and a
//! refused configuration keeps the last good topology. The configurations list loopback nodes
//! that nothing connects to (connections open lazily).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, DiscoveryErrorKind, Error, DEFAULT_MAX_NODES};
use memcached_autodiscovery::{ClusterConfig, Node};
use memcached_autodiscovery_testkit::{ConfigEndpoint, LocalCluster};

/// Scheduling slack on a shared 2-core machine running a debug build.
const SLACK: Duration = Duration::from_millis(1500);

fn huge(version: u64, nodes: usize) -> ClusterConfig {
    ClusterConfig::new(
        version,
        (0..nodes)
            .map(|i| {
                Node::new(
                    format!("node-{i}.huge.test"),
                    Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    1024 + (i % 60_000) as u16,
                )
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_over_max_nodes_is_refused_at_once_naming_the_setting() {
    let endpoint = ConfigEndpoint::start(huge(1, 10_000)).unwrap();
    let started = Instant::now();
    let built = Client::builder()
        .config_endpoint(endpoint.addr().to_string())
        .discovery_timeout(Duration::from_secs(2))
        .build()
        .await;
    let took = started.elapsed();
    eprintln!("build() against 10,000 nodes with the default max_nodes: {took:?}");
    let Err(error @ Error::Discovery { kind, .. }) = built else {
        panic!("refused: {built:?}");
    };
    assert_eq!(
        kind,
        DiscoveryErrorKind::TooManyNodes {
            nodes: 10_000,
            max: 300
        }
    );
    assert!(
        !error.is_retryable(),
        "the same configuration is refused again: {error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("10000 nodes") && message.contains("max_nodes (300)"),
        "{message}"
    );
    assert_eq!(DEFAULT_MAX_NODES, 300);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_allowed_configuration_is_built_or_refused_within_the_discovery_timeout() {
    let timeout = Duration::from_secs(1);
    for nodes in [1_000, 10_000] {
        let endpoint = ConfigEndpoint::start(huge(1, nodes)).unwrap();
        let started = Instant::now();
        let built = Client::builder()
            .config_endpoint(endpoint.addr().to_string())
            .max_nodes(20_000)
            .discovery_timeout(timeout)
            .build()
            .await;
        let took = started.elapsed();
        eprintln!(
            "build() against {nodes} nodes, max_nodes 20,000, discovery_timeout {timeout:?}: {took:?}, {}",
            match &built {
                Ok(c) => format!("built ({} nodes)", c.cluster().nodes().len()),
                Err(e) => format!("refused: {e}"),
            }
        );
        assert!(took < timeout + SLACK, "{nodes} nodes: {took:?}");
        match built {
            Ok(client) => assert_eq!(client.cluster().nodes().len(), nodes),
            Err(error @ Error::Discovery { kind, .. }) => {
                assert_eq!(kind, DiscoveryErrorKind::Timeout, "{error}");
                assert!(error.is_retryable());
            }
            Err(other) => panic!("{other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_keeps_the_last_good_topology() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(Duration::from_secs(60))
        .discovery_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    client.set("kept", "yes", Duration::ZERO).await.unwrap();
    let good = client.cluster();
    cluster
        .endpoint()
        .set_config(huge(good.version() + 1, DEFAULT_MAX_NODES + 1));
    let started = Instant::now();
    let refreshed = client.refresh().await;
    assert!(started.elapsed() < Duration::from_secs(1) + SLACK);
    let Err(Error::Discovery { kind, .. }) = refreshed else {
        panic!("refused: {refreshed:?}");
    };
    assert!(
        matches!(kind, DiscoveryErrorKind::TooManyNodes { .. }),
        "{kind:?}"
    );
    assert_eq!(client.cluster(), good, "the last good topology is kept");
    assert_eq!(
        client.get("kept").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
}
