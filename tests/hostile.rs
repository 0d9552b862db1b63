//! Hostile and broken nodes: typed errors within the timeout, memory bounded by the configured
//! limits, the connection reset, and the other nodes unaffected.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, Error, ProtocolError};
use memcached_autodiscovery_testkit::LocalCluster;
use support::rogue::{rss_kib, Rogue, RogueNode};

const TIMEOUT: Duration = Duration::from_millis(400);

/// A client over two real nodes and one rogue node, with a key routed to each kind.
struct Setup {
    _cluster: LocalCluster,
    rogue: RogueNode,
    client: Client,
    rogue_key: String,
    good_keys: Vec<String>,
}

async fn setup(kind: Rogue) -> Setup {
    let cluster = LocalCluster::start(2).await.unwrap();
    let rogue = RogueNode::start(kind).await;
    let mut nodes: Vec<String> = cluster
        .node_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    nodes.push(rogue.addr.to_string());
    let client = Client::builder()
        .nodes(nodes)
        .request_timeout(TIMEOUT)
        .max_value_size(1 << 20)
        .build()
        .await
        .unwrap();
    let rogue_id = format!("{}:{}", rogue.addr.ip(), rogue.addr.port());
    let keys: Vec<String> = (0..300).map(|i| format!("hostile-{i}")).collect();
    let rogue_key = keys
        .iter()
        .find(|k| client.node_for(k).unwrap().id() == rogue_id)
        .unwrap()
        .clone();
    let good_keys = keys
        .into_iter()
        .filter(|k| client.node_for(k).unwrap().id() != rogue_id)
        .take(20)
        .collect();
    Setup {
        _cluster: cluster,
        rogue,
        client,
        rogue_key,
        good_keys,
    }
}

/// Gets from the rogue node until `n` calls have reached it; returns their errors, each within
/// the timeout. Calls refused at once with `NodeDown` (the node's backoff after each failure)
/// are retried a little later and not returned.
async fn hit(s: &Setup, n: usize) -> Vec<Error> {
    let mut errors = Vec::new();
    let started_all = Instant::now();
    while errors.len() < n {
        assert!(
            started_all.elapsed() < Duration::from_secs(20),
            "{errors:?}"
        );
        let started = Instant::now();
        let result = s.client.get(&s.rogue_key).await;
        assert!(
            started.elapsed() < TIMEOUT + Duration::from_millis(700),
            "bounded: {:?}",
            started.elapsed()
        );
        match result {
            Err(Error::NodeDown { .. }) => {}
            Err(e) => errors.push(e),
            Ok(v) => panic!("a hostile node produced a value: {v:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    errors
}

async fn others_unaffected(s: &Setup) {
    for key in &s.good_keys {
        s.client
            .set(key, key, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(s.client.get(key).await.unwrap().unwrap(), key.as_bytes());
    }
}

fn is_protocol(e: &Error) -> bool {
    matches!(e, Error::Protocol { .. })
}

#[tokio::test]
async fn garbage_is_a_protocol_error_and_the_connection_is_reset() {
    let s = setup(Rogue::Garbage).await;
    let errors = hit(&s, 3).await;
    assert!(errors.iter().all(is_protocol), "{errors:?}");
    assert!(errors
        .iter()
        .all(|e| e.is_retryable() && e.node().is_some()));
    assert!(
        s.rogue.accepted.load(Ordering::Relaxed) >= 3,
        "a fresh connection after each reset"
    );
    others_unaffected(&s).await;
}

#[tokio::test]
async fn a_header_announcing_four_gib_is_refused_without_buffering() {
    let s = setup(Rogue::Huge).await;
    let before = rss_kib();
    let errors = hit(&s, 3).await;
    for e in &errors {
        assert!(
            matches!(
                e,
                Error::Protocol {
                    source: ProtocolError::ReplyTooLarge {
                        len: 4294967296,
                        ..
                    },
                    ..
                }
            ),
            "{e}"
        );
    }
    assert!(rss_kib() < before + 32 * 1024, "no large allocation");
    others_unaffected(&s).await;
}

#[tokio::test]
async fn an_endless_line_is_cut_at_the_line_limit() {
    let s = setup(Rogue::NoTerminator).await;
    let before = rss_kib();
    let errors = hit(&s, 2).await;
    for e in &errors {
        assert!(
            matches!(
                e,
                Error::Protocol {
                    source: ProtocolError::LineTooLong { .. }
                        | ProtocolError::UnexpectedReply { .. },
                    ..
                }
            ),
            "{e}"
        );
    }
    assert!(rss_kib() < before + 32 * 1024, "memory bounded");
    others_unaffected(&s).await;
}

#[tokio::test]
async fn a_reply_drip_fed_slower_than_the_timeout_times_out() {
    let s = setup(Rogue::Drip).await;
    let errors = hit(&s, 2).await;
    assert!(
        errors
            .iter()
            .all(|e| e.is_timeout() || matches!(e, Error::NodeDown { .. })),
        "{errors:?}"
    );
    assert!(errors[0].is_timeout());
    others_unaffected(&s).await;
}

#[tokio::test]
async fn a_reply_to_a_request_never_sent_resets_the_connection() {
    let s = setup(Rogue::Unsolicited).await;
    let errors = hit(&s, 2).await;
    assert!(
        errors.iter().all(|e| is_protocol(e) || e.is_retryable()),
        "{errors:?}"
    );
    others_unaffected(&s).await;
}

#[tokio::test]
async fn a_silent_node_times_out_then_fails_fast() {
    let s = setup(Rogue::Silent).await;
    let errors = hit(&s, 1).await;
    assert!(errors[0].is_timeout(), "{}", errors[0]);
    let started = Instant::now();
    let again = s.client.get(&s.rogue_key).await.unwrap_err();
    if matches!(again, Error::NodeDown { .. }) {
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "fails fast while down"
        );
    }
    others_unaffected(&s).await;
}

/// 64 callers hammering a node whose every connection fails: how many connections it sees.
async fn storm(s: &Setup, length: Duration) -> (u64, u64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let client = s.client.clone();
            let key = s.rogue_key.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                while started.elapsed() < length {
                    assert!(client.get(&key).await.is_err(), "a failing node failed");
                    calls += 1;
                    tokio::task::yield_now().await;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    (calls, s.rogue.accepted.load(Ordering::Relaxed))
}

/// A storm of failing requests does not open a storm of connections: a connection that fails
/// before giving one good reply leaves the node alone for a backoff (100 ms doubling to 5 s),
/// during which calls fail at once. In 2 s that is about five attempts (each may send its
/// unsent requests once more on a second connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_failing_requests_opens_few_connections() {
    for kind in [Rogue::Garbage, Rogue::Hangup] {
        let s = setup(kind).await;
        let (calls, connections) = storm(&s, Duration::from_secs(2)).await;
        eprintln!("storm on {kind:?}: {calls} failed calls, {connections} connections");
        assert!(calls > 1000, "{kind:?}: the storm ran ({calls} calls)");
        assert!(
            connections <= 16,
            "{kind:?}: {connections} connections for {calls} failed calls"
        );
        others_unaffected(&s).await;
    }
}
