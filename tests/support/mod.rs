//! Helpers shared by the integration tests: a client on a local emulated cluster, and a raw
//! connection to one node to look at the server side.
#![allow(dead_code)]

pub mod load;
pub mod proxy;
pub mod rogue;

use std::net::SocketAddr;
use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client discovering `cluster`, polling every `poll`.
pub async fn client_for(cluster: &LocalCluster, poll: Duration) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(poll)
        .request_timeout(Duration::from_millis(800))
        .connect_timeout(Duration::from_millis(500))
        .discovery_timeout(Duration::from_millis(800))
        .build()
        .await
        .expect("client builds on the local cluster")
}

/// How many times the reliability suite repeats each fault (`RELIABILITY_ROUNDS`, default 1:
/// the short form `scripts/test` runs). `scripts/reliability N` runs the long form.
pub fn rounds() -> usize {
    match std::env::var("RELIABILITY_ROUNDS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("RELIABILITY_ROUNDS={v:?}: a positive number")),
        Err(_) => 1,
    }
}

/// Waits (at most `limit`) until `done` holds, checking every 20 ms.
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// One `stats` counter of the node at `addr`, read over a fresh raw connection.
pub async fn stat(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).await.expect("connect for stats");
    s.write_all(b"stats\r\n").await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "stats reply cut short");
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stat {name}"))
}

/// Sum of a `stats` counter over every node.
pub async fn stat_sum(cluster: &LocalCluster, name: &str) -> u64 {
    let mut total = 0;
    for addr in cluster.node_addrs() {
        total += stat(addr, name).await;
    }
    total
}
