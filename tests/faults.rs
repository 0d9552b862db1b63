//! Faults and churn under load. Every scenario runs a checked load (256 callers doing set, get
//! and get_many on keys of their own, every value naming its key and a generation) while a fault
//! is applied to a real local cluster, then counts: operations, errors by kind, wrong values,
//! stale reads, the longest call and the longest stretch without a successful call. Expected:
//! no wrong value ever, no call longer than its timeout plus a small bound, the topology
//! followed, and recovery without a restart of the client.
//!
//! Each scenario applies its fault once (the short form, in `scripts/test`) or
//! `RELIABILITY_ROUNDS` times (the long form: `scripts/reliability N`).

mod support;

use std::time::{Duration, Instant};

use memcached_autodiscovery::Client;
use memcached_autodiscovery::Node;
use memcached_autodiscovery_testkit::{EndpointBehavior, LocalCluster};
use support::load::{Load, Report};
use support::rogue::{Rogue, RogueNode};
use support::{eventually, rounds, stat};

const CALLERS: usize = 256;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(200);
/// Scheduling slack on a shared 2-core machine running a debug build.
const SLACK: Duration = Duration::from_millis(1500);

async fn client(cluster: &LocalCluster) -> Client {
    client_with(cluster, REQUEST_TIMEOUT, Duration::from_millis(500)).await
}

async fn client_with(cluster: &LocalCluster, request: Duration, discovery: Duration) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(POLL)
        .request_timeout(request)
        .connect_timeout(Duration::from_millis(300))
        .discovery_timeout(discovery)
        .build()
        .await
        .unwrap()
}

/// Prints the report (the figures of docs/reliability.md come from these lines) and checks what
/// holds in every scenario.
fn check(name: &str, r: &Report) {
    check_with(name, r, REQUEST_TIMEOUT);
}

fn check_with(name: &str, r: &Report, timeout: Duration) {
    eprintln!(
        "scenario {name}: ops {} errors {:?} wrong {} stale {} misses_after_write {} max_latency {:?} longest_outage {:?}",
        r.ops, r.errors, r.wrong_values, r.stale_reads, r.misses_after_write, r.max_latency, r.longest_outage
    );
    assert!(r.ops > 1000, "{name}: the load ran ({} ops)", r.ops);
    assert_eq!(
        r.wrong_values, 0,
        "{name}: no caller ever read a value of another key"
    );
    assert!(
        r.max_latency <= timeout + SLACK,
        "{name}: no call waited much longer than its timeout ({:?})",
        r.max_latency
    );
}

/// Runs a test-kit call that may block (it waits for processes or sockets to change state)
/// without stalling the load's tasks on this worker thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Time until every node of the client's topology answers again (bounded).
async fn recovery(client: &Client) -> Duration {
    let started = Instant::now();
    let nodes = client.cluster().nodes().to_vec();
    for node in nodes {
        let key = (0..10_000)
            .map(|i| format!("probe-{i}"))
            .find(|k| client.node_for(k).map(|n| n == node).unwrap_or(false))
            .expect("some key routes to each node");
        while client
            .set(&key, "probe", Duration::from_secs(60))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{node:?} never recovered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    started.elapsed()
}

async fn warm(load: &Load) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(load.ops() > 0, "the load started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_restarted_on_the_same_port() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster).await;
    let load = Load::start(&client, CALLERS, "kill");
    warm(&load).await;
    let mut slowest = Duration::ZERO;
    for round in 0..rounds() {
        let node = 1 + round % 2;
        blocking(|| cluster.kill(node));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        cluster.restart(node).await.unwrap();
        let healed = recovery(&client).await;
        assert!(healed < Duration::from_secs(6));
        slowest = slowest.max(healed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = load.finish().await;
    check("kill+restart", &r);
    eprintln!(
        "scenario kill+restart: recovered at most {slowest:?} after a restart ({} rounds)",
        rounds()
    );
    assert!(r.error_count() > 0, "the dead node was noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_thawed() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster).await;
    let load = Load::start(&client, CALLERS, "freeze");
    warm(&load).await;
    let mut slowest = Duration::ZERO;
    for round in 0..rounds() {
        let node = 2 - round % 2;
        blocking(|| cluster.freeze(node));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        blocking(|| cluster.thaw(node));
        slowest = slowest.max(recovery(&client).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = load.finish().await;
    check("freeze+thaw", &r);
    eprintln!(
        "scenario freeze+thaw: recovered at most {slowest:?} after a thaw ({} rounds)",
        rounds()
    );
    assert_eq!(r.stale_reads, 0, "a frozen node loses nothing");
    assert!(
        r.errors.contains_key("timeout"),
        "the frozen node timed out"
    );
}

/// Adds `extra` to the served configuration under a new version.
fn serve_with(cluster: &LocalCluster, extra: Node) {
    let config = cluster.config();
    let mut nodes = config.nodes().to_vec();
    nodes.push(extra);
    cluster.set_nodes_same_version(nodes);
    cluster.set_version(config.version() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_accepts_and_never_answers() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let silent = RogueNode::start(Rogue::Silent).await;
    let client = client(&cluster).await;
    let load = Load::start(&client, CALLERS, "silent");
    warm(&load).await;
    serve_with(
        &cluster,
        Node::new("silent.test", Some(silent.addr.ip()), silent.addr.port()),
    );
    assert!(
        eventually(Duration::from_secs(2), || client.cluster().nodes().len()
            == 4)
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500) * rounds() as u32).await;
    let r = load.finish().await;
    check("silent node", &r);
    assert!(
        r.errors.get("timeout").copied().unwrap_or(0) > 0,
        "calls to it time out"
    );
    assert!(
        r.ops > r.error_count() * 2,
        "the other three quarters keep serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_and_a_node_removed_with_requests_in_flight() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let slow = RogueNode::start(Rogue::Slow(cluster.node_addrs()[0], 80)).await;
    let client = client(&cluster).await;
    serve_with(
        &cluster,
        Node::new("slow.test", Some(slow.addr.ip()), slow.addr.port()),
    );
    client.refresh().await.unwrap();
    let load = Load::start(&client, CALLERS, "slow");
    warm(&load).await;
    tokio::time::sleep(Duration::from_millis(1000) * rounds() as u32).await;
    // Remove the slow node while its replies are held back: in-flight calls still complete.
    let mut nodes = cluster.config().nodes().to_vec();
    nodes.pop();
    cluster.set_nodes_same_version(nodes);
    cluster.set_version(cluster.config().version() + 1);
    assert!(
        eventually(Duration::from_secs(2), || client.cluster().nodes().len()
            == 3)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = load.finish().await;
    check("slow node, then removed", &r);
    assert_eq!(
        r.error_count(),
        0,
        "an 80 ms node is slow, not failed; removal fails nothing"
    );
    assert!(slow.sent.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_replaced_by_one_with_a_new_ip() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster).await;
    let load = Load::start(&client, CALLERS, "replace");
    warm(&load).await;
    let (mut slowest_follow, mut slowest_heal) = (Duration::ZERO, Duration::ZERO);
    // Each round replaces one node under a new version (as ElastiCache does) and another under
    // the same version: a node set that changes without a version bump is followed too.
    for step in 0..2 * rounds() {
        let node = step % 3;
        let bump_version = step % 2 == 0;
        let replacement = cluster.replace_node_with(node, bump_version).await.unwrap();
        let followed = Instant::now();
        assert!(
            eventually(Duration::from_secs(2), || client.cluster().nodes()[node]
                == replacement)
            .await
        );
        let followed = followed.elapsed();
        assert!(
            followed <= POLL * 2 + SLACK,
            "followed within about one poll interval ({followed:?})"
        );
        slowest_follow = slowest_follow.max(followed);
        slowest_heal = slowest_heal.max(recovery(&client).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = load.finish().await;
    check("replace (new IP)", &r);
    eprintln!(
        "scenario replace: followed in at most {slowest_follow:?}, all nodes answer at most {slowest_heal:?} later ({} replacements, half without a version bump)",
        2 * rounds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_grows_and_shrinks_every_second() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster).await;
    let load = Load::start(&client, CALLERS, "churn");
    warm(&load).await;
    let mut worst_follow = Duration::ZERO;
    for step in 0..6 * rounds() {
        if step % 2 == 0 {
            cluster.add_node().await.unwrap();
        } else {
            let last = cluster.len() - 1;
            cluster.remove_node(last).await;
        }
        let want = cluster.config().version();
        let started = Instant::now();
        assert!(
            eventually(Duration::from_secs(3), || client.cluster().version()
                == want)
            .await
        );
        worst_follow = worst_follow.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(1000).saturating_sub(started.elapsed())).await;
    }
    let r = load.finish().await;
    check("grow/shrink every second", &r);
    eprintln!("scenario churn: slowest follow {worst_follow:?} (poll interval {POLL:?})");
    assert!(worst_follow <= POLL * 2 + SLACK);
    // A removed node is stopped at once, so calls in flight to it may fail; nothing else does.
    assert!(
        r.error_count() * 20 < r.ops,
        "errors stay a small share: {:?}",
        r.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_configuration_endpoint_never_disturbs_the_data_path() {
    let cluster = LocalCluster::start(3).await.unwrap();
    // A generous request timeout, so that a starved CPU (a debug build, 256 callers, 2 shared
    // cores) is not mistaken for a failure; a 1 s discovery timeout, so that requests waiting
    // on discovery would show as an outage of a second.
    let client = client_with(&cluster, Duration::from_secs(3), Duration::from_secs(1)).await;
    let good = client.cluster();
    let load = Load::start(&client, CALLERS, "endpoint");
    warm(&load).await;
    for _ in 0..rounds() {
        for behavior in [
            EndpointBehavior::Refuse,
            EndpointBehavior::Hang,
            EndpointBehavior::Error,
            EndpointBehavior::Garbage,
            EndpointBehavior::Truncated,
            EndpointBehavior::Oversized,
            EndpointBehavior::Empty,
        ] {
            blocking(|| cluster.set_endpoint_behavior(behavior));
            tokio::time::sleep(POLL * 3).await;
            assert_eq!(
                client.cluster(),
                good,
                "{behavior:?}: the last good topology is kept"
            );
        }
        blocking(|| cluster.set_endpoint_behavior(EndpointBehavior::Normal));
    }
    // A lower version, then flapping between two versions: the client keeps the higher one.
    cluster.add_node().await.unwrap(); // version 2
    assert!(eventually(Duration::from_secs(2), || client.cluster().version() == 2).await);
    for flap in 0..6 * rounds() {
        cluster.set_version(if flap % 2 == 0 { 1 } else { 2 });
        tokio::time::sleep(POLL).await;
        assert_eq!(client.cluster().version(), 2, "a lower version never wins");
    }

    let r = load.finish().await;
    check_with("endpoint faults", &r, Duration::from_secs(3));
    assert_eq!(
        r.error_count(),
        0,
        "discovery trouble never fails a request"
    );
    assert_eq!(r.stale_reads, 0);
    assert!(
        r.longest_outage < Duration::from_millis(800),
        "no request waits for discovery ({:?})",
        r.longest_outage
    );
}

/// The tasks alive on this test's runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Each node's `curr_connections`.
async fn connections_per_node(addrs: &[std::net::SocketAddr]) -> Vec<u64> {
    let mut counts = Vec::new();
    for a in addrs {
        counts.push(stat(*a, "curr_connections").await);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dropped_mid_load_leaves_no_task_and_no_socket() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let addrs = cluster.node_addrs();
    let baseline = connections_per_node(&addrs).await;
    let tasks_before = alive_tasks();
    let client = client(&cluster).await;
    let load = Load::start(&client, CALLERS, "drop");
    warm(&load).await;
    let tasks_during = alive_tasks();
    let connections_during = connections_per_node(&addrs).await;
    assert!(
        connections_during.iter().zip(&baseline).all(|(d, b)| d > b),
        "the client holds a connection to every node: {connections_during:?} vs {baseline:?}"
    );
    drop(client);
    let r = load.finish().await; // the callers' clones go away with them
    check("client dropped", &r);
    let tasks_gone = eventually(Duration::from_secs(3), || alive_tasks() <= tasks_before).await;
    assert!(tasks_gone, "the poller and the connection tasks ended");
    let mut connections = Vec::new();
    for (a, base) in addrs.iter().zip(&baseline) {
        let mut now = stat(*a, "curr_connections").await;
        for _ in 0..150 {
            if now == *base {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            now = stat(*a, "curr_connections").await;
        }
        assert_eq!(now, *base, "{a}: the client's sockets are closed");
        connections.push(now);
    }
    eprintln!(
        "scenario client dropped: alive tasks {tasks_before} before the client, {tasks_during} under load, {} after the drop; \
         curr_connections per node {baseline:?} before, {connections_during:?} under load, {connections:?} after",
        alive_tasks()
    );
}
