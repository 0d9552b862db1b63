//! What a Lambda environment sees after a freeze: timers did not run, and sockets may have died
//! while the process was stopped. The freeze is reproduced by blocking the client's only runtime
//! thread while the cluster changes underneath it.

mod support;

use std::time::Duration;

use memcached_autodiscovery_testkit::LocalCluster;
use support::client_for;

const MINUTE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `change` on its own thread and runtime while the caller's runtime is blocked, for at
/// least half a second (a short freeze by Lambda's standards).
fn while_frozen<F: std::future::Future<Output = ()> + Send>(change: F) {
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(change)).join().unwrap();
    });
    std::thread::sleep(Duration::from_millis(500).saturating_sub(started.elapsed()));
}

#[test]
fn the_first_request_after_a_thaw_survives_a_socket_that_died_meanwhile() {
    runtime().block_on(async {
        let cluster = LocalCluster::start(1).await.unwrap();
        let client = client_for(&cluster, MINUTE).await;
        client.set("before", "v", MINUTE).await.unwrap(); // the connection is open and idle
        while_frozen(async {
            cluster.kill(0); // the server side of the idle socket goes away ...
            cluster.restart(0).await.unwrap(); // ... and the node comes back on the same address
        });
        // The connection task learns that its socket is closed only now, with a get queued.
        assert_eq!(
            client.get("before").await.unwrap(),
            None,
            "served by the fresh process"
        );
        client.set("after", "v", MINUTE).await.unwrap();
        assert!(client.get("after").await.unwrap().is_some());
    });
}

#[test]
fn a_non_idempotent_request_is_not_sent_twice_but_an_unsent_one_is_sent_once() {
    runtime().block_on(async {
        let cluster = LocalCluster::start(1).await.unwrap();
        let client = client_for(&cluster, MINUTE).await;
        client.set("n", "1", MINUTE).await.unwrap();
        while_frozen(async {
            cluster.kill(0);
            cluster.restart(0).await.unwrap();
        });
        // incr was queued but never written to the dead socket: it is sent once, on the new
        // connection, where the key does not exist any more.
        assert_eq!(client.incr("n", 1).await.unwrap(), None);
    });
}

#[test]
fn the_first_request_after_a_long_freeze_triggers_a_refresh() {
    runtime().block_on(async {
        let cluster = LocalCluster::start(2).await.unwrap();
        let client = client_for(&cluster, Duration::from_millis(300)).await;
        let polls_before = cluster.endpoint_requests();
        while_frozen(async {
            cluster.add_node().await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await; // longer than the interval
        });
        // The request is answered from the current topology without waiting for discovery ...
        client.set("thawed", "v", MINUTE).await.unwrap();
        // ... and the refresh it started (or the late timer) brings the new node in.
        let followed =
            support::eventually(Duration::from_secs(2), || client.cluster().nodes.len() == 3).await;
        assert!(followed, "the topology followed after the thaw");
        assert!(cluster.endpoint_requests() > polls_before);
    });
}
