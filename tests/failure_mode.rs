//! `FailureMode` and the partial multi-get, against real memcached processes killed and
//! restarted by PID under a checked load (values name their key; wrong values counted).
//!
//! The kill scenario prints one `scenario failure_mode/...` line per mode; docs/reliability.md
//! quotes them. `RELIABILITY_ROUNDS` repeats it (`scripts/reliability N`).

mod support;

use std::time::Duration;

use memcached_autodiscovery::{Client, Error, FailureMode};
use memcached_autodiscovery_testkit::LocalCluster;
use support::load::{Load, Mix};
use support::{eventually, rounds};

const CALLERS: usize = 32;
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Scheduling slack on a shared 2-core machine running a debug build.
const SLACK: Duration = Duration::from_millis(1500);

async fn client(cluster: &LocalCluster, mode: FailureMode) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .failure_mode(mode)
        .poll_interval(Duration::from_secs(60))
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(100), BACKOFF_MAX)
        .build()
        .await
        .unwrap()
}

/// A key that node `index` owns.
fn key_on(client: &Client, cluster: &LocalCluster, index: usize, tag: &str) -> String {
    let node = cluster.nodes()[index].id();
    (0..10_000)
        .map(|i| format!("{tag}-{i}"))
        .find(|k| client.node_for(k).unwrap().id() == node)
        .expect("some key lands on every node")
}

/// Kills one of 3 nodes under a 90 % get / 10 % set load of 32 callers, keeps the load on for
/// `after`, then restarts the node. Returns the load's report, the time from the kill to the
/// last error, and how long the restarted node took to get its keys back (Redistribute: from
/// the restart until `node_for` names it again).
async fn kill_under_load(
    mode: FailureMode,
    round: usize,
) -> (support::load::Report, Option<Duration>) {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, mode).await;
    let load = Load::start_mix(&client, CALLERS, &format!("fm{round}"), Mix::READ_MOSTLY);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = load.elapsed();
    cluster.kill(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish().await;
    let after_kill = report.last_error.map(|at| at.saturating_sub(killed_at));
    eprintln!(
        "scenario failure_mode/{mode:?}/kill: ops {} errors {:?} wrong {} last_error_after_kill {:?} max_latency {:?}",
        report.ops, report.errors, report.wrong_values, after_kill, report.max_latency
    );
    (report, after_kill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redistribute_routes_around_a_killed_node_and_gives_its_keys_back() {
    for round in 0..rounds() {
        let (report, after_kill) = kill_under_load(FailureMode::Redistribute, round).await;
        assert_eq!(report.wrong_values, 0, "no value of another key, ever");
        assert!(report.ops > 1000, "the load ran ({} ops)", report.ops);
        if let Some(after) = after_kill {
            assert!(
                after <= Duration::from_secs(1),
                "errors only while the kill is noticed: the last came {after:?} after it ({:?})",
                report.errors
            );
        }
    }

    // Back within the backoff ceiling after a restart on the same port.
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, FailureMode::Redistribute).await;
    let key = key_on(&client, &cluster, 1, "back");
    let owner = cluster.nodes()[1].id();
    client.set(&key, "before", Duration::ZERO).await.unwrap();
    cluster.kill(1);
    // The first request notices; later ones go to the stand-in.
    let _ = client.get(&key).await;
    assert!(
        eventually(Duration::from_secs(2), || client
            .node_for(&key)
            .unwrap()
            .id()
            != owner)
        .await,
        "the key moved to a live node"
    );
    assert_eq!(
        client.get(&key).await.unwrap(),
        None,
        "a miss on the stand-in, not an error"
    );
    client.set(&key, "during", Duration::ZERO).await.unwrap();
    cluster.restart(1).await.unwrap();
    let restarted = std::time::Instant::now();
    assert!(
        eventually(BACKOFF_MAX + SLACK, || client.node_for(&key).unwrap().id()
            == owner)
        .await,
        "the key returned to its restarted node within the backoff ceiling"
    );
    eprintln!(
        "scenario failure_mode/Redistribute/restart: keys back after {:?} (backoff ceiling {BACKOFF_MAX:?})",
        restarted.elapsed()
    );
    assert_eq!(
        client.get(&key).await.unwrap(),
        None,
        "the restarted node is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_keeps_failing_a_killed_nodes_keys() {
    let (report, after_kill) = kill_under_load(FailureMode::FailFast, 0).await;
    assert_eq!(report.wrong_values, 0);
    let after = after_kill.expect("the killed node's keys fail");
    assert!(
        after > Duration::from_secs(2),
        "FailFast: errors go on while the node is dead (last {after:?} after the kill)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_multi_get_returns_the_hits_of_the_nodes_that_answered() {
    for mode in [FailureMode::FailFast, FailureMode::Redistribute] {
        let cluster = LocalCluster::start(3).await.unwrap();
        let client = client(&cluster, mode).await;
        let keys: Vec<String> = (0..60).map(|i| format!("partial-{i}")).collect();
        for key in &keys {
            client.set(key, key, Duration::ZERO).await.unwrap();
        }
        let dead = cluster.nodes()[2].id();
        let on_dead: Vec<&String> = keys
            .iter()
            .filter(|k| client.node_for(k).unwrap().id() == dead)
            .collect();
        assert!(!on_dead.is_empty());
        cluster.kill(2);

        let found = client.get_many_partial(&keys).await.unwrap();
        let found = if mode == FailureMode::Redistribute && !found.is_complete() {
            // The kill is noticed by this first read; the next routes around the node.
            client.get_many_partial(&keys).await.unwrap()
        } else {
            found
        };
        for key in &keys {
            let hit = found.hits.get(key.as_bytes());
            if on_dead.contains(&key) {
                assert_eq!(hit, None, "{mode:?}: {key} lived on the killed node");
            } else {
                assert_eq!(hit.map(|v| &v[..]), Some(key.as_bytes()), "{mode:?}: {key}");
            }
        }
        match mode {
            FailureMode::FailFast => {
                let mut failed: Vec<&[u8]> = found.failed.iter().map(|(k, _)| &k[..]).collect();
                failed.sort();
                let mut expected: Vec<&[u8]> = on_dead.iter().map(|k| k.as_bytes()).collect();
                expected.sort();
                assert_eq!(failed, expected, "exactly the killed node's keys failed");
                assert!(found.failed.iter().all(|(_, e)| matches!(
                    e,
                    Error::Io { .. } | Error::NodeDown { .. } | Error::Timeout { .. }
                )));
                assert!(
                    client.get_many(&keys).await.is_err(),
                    "get_many fails whole"
                );
            }
            _ => {
                assert!(found.is_complete(), "{:?}", found.failed);
                assert!(
                    client.get_many(&keys).await.is_ok(),
                    "re-routed, get_many succeeds"
                );
            }
        }
    }
}

/// A stopped node (SIGSTOP: the kernel still completes a TCP handshake, so a reconnect
/// succeeds) under a checked load with `Redistribute`: after the first requests time out it is
/// marked down, and each reconnect must get an answer to a probe before any caller's request
/// goes back to it. Errors end within a second of the stop (the first requests' timeout, 500
/// ms, plus slack), not at every reconnect; after the thaw the node's keys come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_probed_before_traffic_goes_back_to_it() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, FailureMode::Redistribute).await;
    let key = key_on(&client, &cluster, 1, "stopped");
    let owner = cluster.nodes()[1].id();
    let load = Load::start_mix(&client, CALLERS, "stop", Mix::READ_MOSTLY);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopped_at = load.elapsed();
    cluster.freeze(1);
    // Several backoff periods (100 ms .. 1 s): each one ends in a reconnect that succeeds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.finish().await;
    cluster.thaw(1);
    let after_stop = report.last_error.map(|at| at.saturating_sub(stopped_at));
    eprintln!(
        "scenario failure_mode/Redistribute/stop: ops {} errors {:?} wrong {} last_error_after_stop {:?} max_latency {:?}",
        report.ops, report.errors, report.wrong_values, after_stop, report.max_latency
    );
    assert_eq!(report.wrong_values, 0, "no value of another key, ever");
    assert!(report.ops > 1000, "the load ran ({} ops)", report.ops);
    let after_stop = after_stop.expect("the stop was noticed: requests on it timed out");
    assert!(
        after_stop <= Duration::from_millis(1500),
        "errors only while the stop is noticed: the last came {after_stop:?} after it ({:?})",
        report.errors
    );
    let thawed = std::time::Instant::now();
    assert!(
        eventually(BACKOFF_MAX + SLACK, || client.node_for(&key).unwrap().id()
            == owner)
        .await,
        "the thawed node answers its probe and gets its keys back"
    );
    eprintln!(
        "scenario failure_mode/Redistribute/thaw: keys back after {:?}",
        thawed.elapsed()
    );
    client.set(&key, "after", Duration::ZERO).await.unwrap();
    assert_eq!(
        client.get(&key).await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

/// Keys that node `index` owns.
fn keys_on(
    client: &Client,
    cluster: &LocalCluster,
    index: usize,
    tag: &str,
    n: usize,
) -> Vec<String> {
    let node = cluster.nodes()[index].id();
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|k| client.node_for(k).unwrap().id() == node)
        .take(n)
        .collect()
}

/// Freezes node `index` (SIGSTOP: a partition, the process keeps its data) and waits until
/// `key`, one of its keys, is routed to a stand-in (the first request times out and marks the
/// node down).
async fn partition(client: &Client, cluster: &LocalCluster, index: usize, key: &str) {
    let owner = cluster.nodes()[index].id();
    cluster.freeze(index);
    let start = std::time::Instant::now();
    while client.node_for(key).unwrap().id() == owner {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the stop was noticed"
        );
        let _ = client.get(key).await;
    }
}

/// Thaws node `index` and waits until `key`, one of its keys, is routed back to it.
async fn heal(client: &Client, cluster: &LocalCluster, index: usize, key: &str) {
    let owner = cluster.nodes()[index].id();
    cluster.thaw(index);
    assert!(
        eventually(BACKOFF_MAX + SLACK, || client.node_for(key).unwrap().id()
            == owner)
        .await,
        "the healed node got its keys back"
    );
}

/// Reads `key` and counts a stale read: a value other than `acked` (the last acknowledged
/// write, `None` for a delete); a miss is allowed (a cache may lose data).
async fn stale(client: &Client, key: &str, acked: Option<&str>) -> u64 {
    let found = client.get(key).await.unwrap();
    match found.as_deref() {
        None => 0,
        Some(v) if Some(v) == acked.map(str::as_bytes) => 0,
        Some(v) => {
            eprintln!(
                "stale read of {key}: {:?} (acknowledged: {acked:?})",
                String::from_utf8_lossy(v)
            );
            1
        }
    }
}

/// A node partitioned without restarting (SIGSTOP), twice: values written and keys deleted
/// while it was away, and values written on it in between, must never read back older. The
/// first heal checks the node's own copies (deleted when it answers again, before its keys come
/// back); the second partition checks the stand-in's copies of the first one (deleted once the
/// node is back); the second heal checks both again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_serves_no_value_overwritten_or_deleted_meanwhile() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, FailureMode::Redistribute).await;
    let keys = keys_on(&client, &cluster, 1, "heal", 21);
    let (untouched, keys) = keys.split_first().unwrap();
    let (written, deleted) = keys.split_at(10);
    for key in keys.iter().chain([untouched]) {
        client.set(key, "v1", Duration::ZERO).await.unwrap();
    }
    let mut stale_reads = 0;

    partition(&client, &cluster, 1, &keys[0]).await;
    for key in written {
        client.set(key, "v2", Duration::ZERO).await.unwrap();
    }
    for key in deleted {
        client.delete(key).await.unwrap();
    }
    heal(&client, &cluster, 1, &keys[0]).await;
    for key in written {
        stale_reads += stale(&client, key, Some("v2")).await;
    }
    for key in deleted {
        stale_reads += stale(&client, key, None).await;
    }
    let after_first_heal = stale_reads;
    assert_eq!(
        client.get(untouched).await.unwrap().as_deref(),
        Some(&b"v1"[..]),
        "a key not written meanwhile keeps its value: the node was not flushed"
    );

    // The flap: written on the node, then partitioned again.
    for key in written {
        client.set(key, "v3", Duration::ZERO).await.unwrap();
    }
    partition(&client, &cluster, 1, &keys[0]).await;
    for key in written {
        stale_reads += stale(&client, key, Some("v3")).await;
    }
    for key in deleted {
        stale_reads += stale(&client, key, None).await;
    }
    for key in written {
        client.set(key, "v4", Duration::ZERO).await.unwrap();
    }
    heal(&client, &cluster, 1, &keys[0]).await;
    for key in written {
        stale_reads += stale(&client, key, Some("v4")).await;
    }
    for key in deleted {
        stale_reads += stale(&client, key, None).await;
    }
    eprintln!(
        "scenario failure_mode/Redistribute/partition: stale reads {stale_reads} of 60 ({after_first_heal} of 20 after the first heal)"
    );
    assert_eq!(
        stale_reads, 0,
        "no value older than the last acknowledged write"
    );
}

/// A checked load (3 sets in 10) through a node partitioned twice (SIGSTOP for 2 s, thawed
/// for 2 s): no acknowledged write reads back older.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_partition_under_load_reads_back_no_older_value() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, FailureMode::Redistribute).await;
    // 8 callers: the other load tests of this file run alongside on a shared machine.
    let load = Load::start_mix(&client, 8, "flap", Mix::CHURN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        cluster.freeze(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.thaw(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let report = load.finish().await;
    eprintln!(
        "scenario failure_mode/Redistribute/flap: ops {} errors {:?} wrong {} stale {} misses_after_write {}",
        report.ops, report.errors, report.wrong_values, report.stale_reads, report.misses_after_write
    );
    assert_eq!(report.wrong_values, 0, "no value of another key, ever");
    assert!(report.ops > 1000, "the load ran ({} ops)", report.ops);
    assert_eq!(
        report.stale_reads, 0,
        "no acknowledged write read back older"
    );
}

/// Writes to a stand-in carry a capped time to live: with a 1 s cap, values written (never
/// expiring, or for 5 minutes) while their node is stopped are gone 2.5 s later, the node
/// still stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_written_to_a_stand_in_expire_within_the_cap() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .failure_mode(FailureMode::Redistribute)
        .stand_in_ttl(Duration::from_millis(500)) // rounded up to 1 s
        .request_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(100), BACKOFF_MAX)
        .build()
        .await
        .unwrap();
    let keys = keys_on(&client, &cluster, 1, "capped", 2);
    partition(&client, &cluster, 1, &keys[0]).await;
    client.set(&keys[0], "never", Duration::ZERO).await.unwrap();
    client
        .set(&keys[1], "five-minutes", Duration::from_secs(300))
        .await
        .unwrap();
    assert!(
        client.get(&keys[0]).await.unwrap().is_some(),
        "stored on the stand-in"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let owner = cluster.nodes()[1].id();
    for key in &keys {
        assert_ne!(
            client.node_for(key).unwrap().id(),
            owner,
            "still on the stand-in"
        );
        assert_eq!(
            client.get(key).await.unwrap(),
            None,
            "{key} expired on the stand-in"
        );
    }
    cluster.thaw(1);
}

/// Past 10,000 keys written to stand-ins while a node was away, the node is flushed before it
/// is marked up: a key not written meanwhile is gone too, and none reads back older.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_record_s_bound_a_returning_node_is_flushed() {
    const BOUND: usize = 10_000;
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client(&cluster, FailureMode::Redistribute).await;
    let keys = keys_on(&client, &cluster, 1, "over", BOUND + 2);
    let (untouched, written) = keys.split_first().unwrap();
    client.set(untouched, "v1", Duration::ZERO).await.unwrap();
    for key in &written[..100] {
        client.set(key, "v1", Duration::ZERO).await.unwrap();
    }
    partition(&client, &cluster, 1, untouched).await;
    let tasks: Vec<_> = written
        .chunks(written.len() / 16 + 1)
        .map(|chunk| {
            let (client, chunk) = (client.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for key in chunk {
                    client.set(&key, "v2", Duration::ZERO).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    heal(&client, &cluster, 1, untouched).await;
    assert_eq!(
        client.get(untouched).await.unwrap(),
        None,
        "the node was flushed"
    );
    let mut stale_reads = 0;
    for key in &written[..100] {
        stale_reads += stale(&client, key, Some("v2")).await;
    }
    assert_eq!(stale_reads, 0);
}
