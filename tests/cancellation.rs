//! Cancellation safety over real pipelined connections: callers that time out or are dropped at
//! random points never make another caller read their reply.

mod support;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::LocalCluster;

fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u8(1);
    h.finish()
}

/// A tiny random deadline for half of the calls (cancelled at a random point), a generous one
/// for the others (which then complete and check the value).
fn deadline() -> Duration {
    let r = random();
    if r % 2 == 0 {
        Duration::from_micros(r % 3000)
    } else {
        Duration::from_secs(5)
    }
}

fn value_of(key: &str, generation: u64) -> String {
    // Long enough that a reply is often split across reads.
    format!(
        "{key}|gen={generation}|{}",
        "x".repeat((generation % 200) as usize)
    )
}

#[derive(Default)]
struct Tally {
    issued: AtomicU64,
    ok: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

/// `callers` tasks, each doing `rounds` of set-then-get on its own keys, with random timeouts
/// and random drops; every value names its key, so a reply meant for another caller is seen.
async fn storm(client: Client, callers: u64, rounds: u64) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let client = client.clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let key = format!("caller-{caller}-key-{}", round % 3);
                let expected = value_of(&key, round);
                let cut = deadline();
                tally.issued.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(
                    cut,
                    client.set(&key, &expected, Duration::from_secs(60)),
                )
                .await
                {
                    Err(_) => {
                        tally.cancelled.fetch_add(1, Ordering::Relaxed);
                        continue; // the set may or may not have happened: do not check this key
                    }
                    Ok(Err(_)) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(Ok(())) => {}
                }
                tally.issued.fetch_add(1, Ordering::Relaxed);
                let read = async {
                    tokio::select! {
                        r = client.get(&key) => Some(r),
                        () = tokio::time::sleep(deadline()) => None,
                    }
                };
                match read.await {
                    None => {
                        tally.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(Some(v))) if v == expected.as_bytes() => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(other)) => {
                        eprintln!("caller {caller}: expected {expected:?}, got {other:?}");
                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(_)) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tally
}

/// A client whose own timeout never fires during a storm: every cut comes from the storm.
async fn patient_client(cluster: &LocalCluster) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .request_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_with_random_timeouts_get_only_their_own_values() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = patient_client(&cluster).await;
    let tally = storm(client.clone(), 10_000, 6).await;
    let (ok, cancelled, errors, wrong) = (
        tally.ok.load(Ordering::Relaxed),
        tally.cancelled.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
    );
    eprintln!("ok {ok}, cancelled {cancelled}, errors {errors}, wrong {wrong}");
    assert_eq!(wrong, 0, "no caller ever reads another caller's value");
    assert!(
        cancelled > 1000,
        "the storm really cancels requests ({cancelled})"
    );
    assert!(ok > 1000, "and many requests complete ({ok})");
    assert_eq!(errors, 0, "cancellation is not an error of the connection");

    // The connections still serve in order afterwards.
    for i in 0..200 {
        let key = format!("after-{i}");
        client
            .set(&key, &key, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(client.get(&key).await.unwrap().unwrap(), key.as_bytes());
    }
}

#[tokio::test]
async fn a_future_dropped_before_its_first_poll_sends_nothing() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .build()
        .await
        .unwrap();
    client.set("k", "v", Duration::from_secs(60)).await.unwrap();
    let before = support::stat(cluster.node_addrs()[0], "cmd_set").await;
    for _ in 0..100 {
        drop(client.set("k", "other", Duration::from_secs(60)));
    }
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        support::stat(cluster.node_addrs()[0], "cmd_set").await,
        before
    );
}

/// At least a million requests (`RELIABILITY_ROUNDS` million in the long form) over the pipelined connections, a random half of them cancelled
/// at random points, with get_many in the mix: no wrong value, and the connections keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_requests_with_random_cancellations() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = patient_client(&cluster).await;
    let callers = 500u64;
    // One or two requests a round (a cancelled set skips its get); RELIABILITY_ROUNDS times
    // as many in the long form.
    let rounds = 1300 * support::rounds() as u64;
    let tally = storm(client.clone(), callers, rounds).await;
    let issued = tally.issued.load(Ordering::Relaxed);
    assert!(issued >= 1_000_000, "{issued} requests issued");
    let (ok, cancelled, errors, wrong) = (
        tally.ok.load(Ordering::Relaxed),
        tally.cancelled.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
    );
    eprintln!(
        "million: issued {issued}, ok {ok}, cancelled {cancelled}, errors {errors}, wrong {wrong}"
    );
    assert_eq!(wrong, 0);
    assert_eq!(errors, 0);
    assert!(
        ok > 100_000 && cancelled > 100_000,
        "both outcomes are common"
    );
    let keys: Vec<String> = (0..50).map(|i| format!("caller-{i}-key-0")).collect();
    client.get_many(&keys).await.unwrap();
    for i in 0..100 {
        let key = format!("after-million-{i}");
        client
            .set(&key, &key, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(client.get(&key).await.unwrap().unwrap(), key.as_bytes());
    }
}
