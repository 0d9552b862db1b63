//! What a Lambda environment sees after a freeze: timers did not run, and sockets may have died
//! while the process was stopped. The freeze is reproduced by blocking the client's only runtime
//! thread while the cluster changes underneath it.

mod support;

use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;
use support::client_for;
use support::proxy::Proxy;

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

/// A client whose only node is `proxy`, with the timeouts of [`client_for`].
async fn client_through(proxy: &Proxy) -> Client {
    Client::builder()
        .nodes([proxy.addr.to_string()])
        .request_timeout(Duration::from_millis(800))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("client builds on the proxy")
}

/// What the cluster's first node holds under `key`, read straight from it.
async fn held(cluster: &LocalCluster, key: &str) -> Option<String> {
    let direct = Client::builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .build()
        .await
        .unwrap();
    let value = direct.get(key).await.unwrap()?;
    Some(String::from_utf8_lossy(&value).into_owned())
}

#[test]
fn a_request_queued_while_the_socket_died_is_sent_once() {
    runtime().block_on(async {
        let cluster = LocalCluster::start(1).await.unwrap();
        let proxy = Proxy::start(cluster.node_addrs()[0]);
        let client = client_through(&proxy).await;
        // The connection is open and idle, and has served.
        client.set("counter", "41", MINUTE).await.unwrap();
        // The server side of the idle socket goes away; the server and its data stay.
        while_frozen(async { proxy.sever() });
        // incr is queued when the connection task has not yet seen the close: it goes out once,
        // on a new connection. Sent twice, it would answer 55 or leave 55 behind.
        assert_eq!(client.incr("counter", 7).await.unwrap(), Some(48));
        assert_eq!(
            held(&cluster, "counter").await.as_deref(),
            Some("48"),
            "the server holds 41 + 7"
        );
        assert_eq!(proxy.count("incr"), 1, "one incr reached the server");
        assert_eq!(support::stat(cluster.node_addrs()[0], "incr_hits").await, 1);
        assert_eq!(proxy.accepted(), 2, "a second connection after the close");
    });
}

#[test]
fn a_written_request_whose_reply_was_lost_is_sent_again_only_if_idempotent() {
    runtime().block_on(async {
        let cluster = LocalCluster::start(1).await.unwrap();
        let proxy = Proxy::start(cluster.node_addrs()[0]);
        let client = client_through(&proxy).await;
        // A good reply first: only a connection that has served gets a second try.
        client.set("counter", "41", MINUTE).await.unwrap();

        // The server applies the incr, then the connection closes before its reply arrives.
        proxy.lose_reply_to("incr");
        let lost = client.incr("counter", 7).await;
        assert!(
            lost.is_err(),
            "the caller of a written incr whose reply was lost gets an error: {lost:?}"
        );
        assert_eq!(proxy.count("incr"), 1, "the incr was not sent again");
        assert_eq!(support::stat(cluster.node_addrs()[0], "incr_hits").await, 1);
        assert_eq!(
            held(&cluster, "counter").await.as_deref(),
            Some("48"),
            "applied once: 41 + 7"
        );

        // The same for a get, on a new connection that has served: it is sent again, once,
        // and its caller never sees the broken socket.
        assert_eq!(
            client.get("counter").await.unwrap().as_deref(),
            Some(&b"48"[..])
        );
        let gets_before = proxy.count("get");
        proxy.lose_reply_to("get");
        assert_eq!(
            client.get("counter").await.unwrap().as_deref(),
            Some(&b"48"[..]),
            "a get whose reply was lost is answered on a fresh connection"
        );
        assert_eq!(proxy.count("get"), gets_before + 2, "sent exactly twice");
        assert_eq!(proxy.accepted(), 3);
        assert_eq!(proxy.count("incr"), 1);
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
        let followed = support::eventually(Duration::from_secs(2), || {
            client.cluster().nodes().len() == 3
        })
        .await;
        assert!(followed, "the topology followed after the thaw");
        assert!(cluster.endpoint_requests() > polls_before);
    });
}
