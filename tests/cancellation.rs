//! Cancellation safety over real pipelined connections: callers that time out or are dropped at
//! random points never make another caller read their reply.

mod support;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use memcached_autodiscovery::{Client, Error};
use memcached_autodiscovery_testkit::LocalCluster;
use support::rogue::{Rogue, RogueNode};

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
    /// Calls that returned with the server's reply (their request was sent and answered).
    answered: AtomicU64,
    ok: AtomicU64,
    /// Of the answered reads, the `get_many` calls.
    multi_gets: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

/// `callers` tasks, each doing `rounds` of set-then-get on its own keys, with random timeouts
/// and random drops; every value names its key, so a reply meant for another caller is seen.
/// With `mix_get_many`, every fourth read is a `get_many` of the caller's three keys.
async fn storm(client: Client, callers: u64, rounds: u64, mix_get_many: bool) -> Arc<Tally> {
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
                    Ok(Ok(())) => {
                        tally.answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tally.issued.fetch_add(1, Ordering::Relaxed);
                let many = mix_get_many && round % 4 == 3;
                let read = async {
                    tokio::select! {
                        r = read(&client, caller, &key, many, &tally) => Some(r),
                        () = tokio::time::sleep(deadline()) => None,
                    }
                };
                let read = read.await;
                if read.is_some() {
                    // The server looks up each key of a multi-get on its own.
                    let keys = if many { 3 } else { 1 };
                    tally.answered.fetch_add(keys, Ordering::Relaxed);
                    tally
                        .multi_gets
                        .fetch_add(u64::from(many), Ordering::Relaxed);
                }
                match read {
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

/// The caller's read of `key`: a `get`, or (`many`) a `get_many` of all three of the caller's
/// keys (one `get` per node they are on). The other two keys' last sets may have been cut, so
/// their values are only checked to name their own key; one that does not counts as wrong.
async fn read(
    client: &Client,
    caller: u64,
    key: &str,
    many: bool,
    tally: &Tally,
) -> Result<Option<Bytes>, Error> {
    if !many {
        return client.get(key).await;
    }
    let keys: Vec<String> = (0..3).map(|i| format!("caller-{caller}-key-{i}")).collect();
    let mut found = client.get_many(&keys).await?;
    for (k, v) in &found {
        let names_its_key = keys.iter().any(|ours| ours.as_bytes() == &k[..])
            && v.starts_with(format!("{}|gen=", String::from_utf8_lossy(k)).as_bytes());
        if !names_its_key {
            eprintln!("caller {caller}: get_many gave {k:?} = {v:?}");
            tally.wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(found.remove(key.as_bytes()))
}

/// The gets and sets the cluster's servers have processed so far.
async fn served(cluster: &LocalCluster) -> u64 {
    support::stat_sum(cluster, "cmd_get").await + support::stat_sum(cluster, "cmd_set").await
}

/// How many of a storm's cancelled calls had their request processed by a server (the rest
/// were dropped before their request was written): requests served since `served_before`,
/// less the calls that returned with a reply. Counted as memcached's `cmd_get` counts: each key
/// of a `get_many` once.
async fn cancelled_after_sent(cluster: &LocalCluster, served_before: u64, tally: &Tally) -> u64 {
    // Requests written just before their caller left may still be on their way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = served(cluster).await - served_before;
    let answered = tally.answered.load(Ordering::Relaxed);
    served
        .checked_sub(answered)
        .unwrap_or_else(|| panic!("{answered} calls answered, only {served} requests served"))
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
    let served_before = served(&cluster).await;
    let tally = storm(client.clone(), 10_000, 6, false).await;
    let (ok, cancelled, errors, wrong) = (
        tally.ok.load(Ordering::Relaxed),
        tally.cancelled.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
    );
    let after_sent = cancelled_after_sent(&cluster, served_before, &tally).await;
    eprintln!(
        "ok {ok}, cancelled {cancelled} ({after_sent} after the server got the request), \
         errors {errors}, wrong {wrong}"
    );
    assert_eq!(wrong, 0, "no caller ever reads another caller's value");
    assert!(
        cancelled > 1000,
        "the storm really cancels requests ({cancelled})"
    );
    assert!(ok > 1000, "and many requests complete ({ok})");
    assert!(
        after_sent > 1000,
        "many calls are cancelled after the server got their request ({after_sent})"
    );
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

/// One memcached node and a client discovering it, with `k` set to `v`.
async fn one_node_holding_k() -> (LocalCluster, Client) {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .build()
        .await
        .unwrap();
    client.set("k", "v", Duration::from_secs(60)).await.unwrap();
    (cluster, client)
}

/// Polls `fut` once, in the caller's task: far enough to queue its request if there is room.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

#[tokio::test]
async fn a_request_dropped_after_it_was_queued_but_before_it_was_written_is_not_sent() {
    let (cluster, client) = one_node_holding_k().await;
    let before = support::stat(cluster.node_addrs()[0], "cmd_set").await;
    // A caller alone on its connection writes its request in its first poll (it polls the
    // connection's task itself). With another caller waiting (this get, polled once and held),
    // requests go through the task's queue.
    let mut waiting = Box::pin(client.get("k"));
    assert!(poll_once(waiting.as_mut()).await.is_pending());
    // On this single-threaded runtime the connection task runs only when this task yields: each
    // set below is queued by its first poll and dropped before the task can write it.
    for i in 0..100 {
        tokio::task::yield_now().await; // the task takes the previous one off the queue
        let mut set = Box::pin(client.set("k", format!("dropped-{i}"), Duration::from_secs(60)));
        assert!(poll_once(set.as_mut()).await.is_pending());
        drop(set);
    }
    // The same steps without the drop: the request goes out.
    let mut kept = Box::pin(client.set("k", "kept", Duration::from_secs(60)));
    assert!(poll_once(kept.as_mut()).await.is_pending());
    kept.await.unwrap();
    assert_eq!(waiting.await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        client.get("k").await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        support::stat(cluster.node_addrs()[0], "cmd_set").await,
        before + 1,
        "only the set that was not dropped reached the server"
    );
}

/// The value stored under `key` by the test below.
fn value_for(key: &str) -> String {
    format!("value of {key}")
}

#[tokio::test]
async fn requests_dropped_after_they_were_sent_leave_every_later_caller_its_own_reply() {
    const DROPPED: usize = 50;
    const LATER: usize = 50;
    let cluster = LocalCluster::start(1).await.unwrap();
    let server = cluster.node_addrs()[0];
    // Every reply is held back for a second on its way to the client: a request can be
    // written, answered by the server, and its caller gone before the reply arrives.
    let slow = RogueNode::start(Rogue::Slow(server, 1000)).await;
    let direct = Client::builder()
        .nodes([server.to_string()])
        .build()
        .await
        .unwrap();
    let dropped_keys: Vec<String> = (0..DROPPED).map(|i| format!("dropped-{i}")).collect();
    let later_keys: Vec<String> = (0..LATER).map(|i| format!("later-{i}")).collect();
    for key in dropped_keys.iter().chain(&later_keys) {
        direct
            .set(key, value_for(key), Duration::from_secs(60))
            .await
            .unwrap();
    }
    let client = Client::builder()
        .nodes([slow.addr.to_string()])
        .request_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    assert_eq!(
        client.get("later-0").await.unwrap().as_deref(),
        Some(value_for("later-0").as_bytes())
    );

    let gets_before = support::stat(server, "cmd_get").await;
    let mut calls: Vec<_> = dropped_keys
        .iter()
        .map(|key| Box::pin(client.get(key)))
        .collect();
    for call in &mut calls {
        assert!(poll_once(call.as_mut()).await.is_pending());
    }
    // Wait until the server has answered all of them; their replies are then on their way.
    let start = std::time::Instant::now();
    while support::stat(server, "cmd_get").await < gets_before + DROPPED as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the queued gets reach the server"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cancelled_after_sent = 0;
    for call in &mut calls {
        if poll_once(call.as_mut()).await.is_pending() {
            cancelled_after_sent += 1;
        }
    }
    drop(calls);
    eprintln!("{cancelled_after_sent} gets cancelled after the server answered them");
    assert_eq!(
        cancelled_after_sent, DROPPED,
        "every dropped get was sent and still waiting for its reply"
    );

    // Later callers, queued behind the replies nobody waits for any more.
    let mut later = tokio::task::JoinSet::new();
    for key in later_keys.clone() {
        let client = client.clone();
        later.spawn(async move {
            let got = client.get(&key).await;
            (key, got)
        });
    }
    while let Some(joined) = later.join_next().await {
        let (key, got) = joined.unwrap();
        let got = got.map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()));
        assert!(
            matches!(&got, Ok(Some(v)) if *v == value_for(&key)),
            "{key} reads its own value, not another caller's reply: {got:?}"
        );
    }
    client
        .set("after", value_for("after"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        client.get("after").await.unwrap().as_deref(),
        Some(value_for("after").as_bytes())
    );
    assert_eq!(
        slow.accepted.load(Ordering::Relaxed),
        1,
        "all of it on one connection"
    );
    assert_eq!(
        support::stat(server, "cmd_get").await,
        gets_before + (DROPPED + LATER + 1) as u64
    );
}

/// At least a million requests (`RELIABILITY_ROUNDS` million in the long form) over the
/// pipelined connections, a random half of them cancelled at random points, with a `get_many` of
/// the caller's three keys as every fourth read: no wrong value, and the connections keep
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_requests_with_random_cancellations() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = patient_client(&cluster).await;
    let callers = 500u64;
    // One or two requests a round (a cancelled set skips its get); RELIABILITY_ROUNDS times
    // as many in the long form.
    let rounds = 1300 * support::rounds() as u64;
    let served_before = served(&cluster).await;
    let tally = storm(client.clone(), callers, rounds, true).await;
    let after_sent = cancelled_after_sent(&cluster, served_before, &tally).await;
    let issued = tally.issued.load(Ordering::Relaxed);
    assert!(issued >= 1_000_000, "{issued} requests issued");
    let (ok, cancelled, errors, wrong) = (
        tally.ok.load(Ordering::Relaxed),
        tally.cancelled.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
    );
    let multi_gets = tally.multi_gets.load(Ordering::Relaxed);
    eprintln!(
        "million: issued {issued}, ok {ok} ({multi_gets} get_many answered), cancelled \
         {cancelled} ({after_sent} after the server got the request), errors {errors}, \
         wrong {wrong}"
    );
    assert_eq!(wrong, 0);
    assert!(multi_gets > 10_000, "get_many is in the mix ({multi_gets})");
    assert_eq!(errors, 0);
    assert!(
        ok > 100_000 && cancelled > 100_000,
        "both outcomes are common"
    );
    assert!(
        after_sent > 10_000,
        "many calls are cancelled after the server got their request ({after_sent})"
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

/// A caller alone on its connection polls the connection's task itself: its request is written
/// in its first poll. Dropped then, the request has reached the server, and its reply is read
/// and discarded: the next call on the connection gets its own.
#[tokio::test]
async fn a_lone_callers_request_is_written_in_its_first_poll_and_its_reply_discarded() {
    let (_cluster, client) = one_node_holding_k().await;
    for i in 0..100 {
        let value = format!("lone-{i}");
        let mut set = Box::pin(client.set("k", &value, Duration::from_secs(60)));
        assert!(poll_once(set.as_mut()).await.is_pending());
        drop(set);
        assert_eq!(
            client.get("k").await.unwrap().as_deref(),
            Some(value.as_bytes())
        );
    }
}

/// A lone caller polled once and then held without being polled must not stall the callers
/// after it: the connection's own task serves them (and the held caller's reply waits for it).
async fn held_lone_caller_does_not_stall_the_next_ones() {
    let (_cluster, client) = one_node_holding_k().await;
    // On two workers the node may answer within the first poll (then nothing is held): go on
    // until 50 callers were held.
    let mut held_callers = 0;
    for i in 0..5_000 {
        if held_callers == 50 {
            break;
        }
        let mut held = Box::pin(client.get("k"));
        if let Poll::Ready(value) = poll_once(held.as_mut()).await {
            assert_eq!(value.unwrap().as_deref(), Some(&b"v"[..]));
            continue;
        }
        held_callers += 1;
        let key = format!("next-{i}");
        tokio::time::timeout(
            Duration::from_secs(5),
            client.set(&key, "x", Duration::from_secs(60)),
        )
        .await
        .expect("the next caller is served while the first is held")
        .unwrap();
        assert_eq!(client.get(&key).await.unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(held.await.unwrap().as_deref(), Some(&b"v"[..]));
    }
    assert_eq!(held_callers, 50, "callers were held after their first poll");
}

#[tokio::test]
async fn a_held_lone_caller_does_not_stall_the_next_ones() {
    held_lone_caller_does_not_stall_the_next_ones().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lone_caller_does_not_stall_the_next_ones_on_two_workers() {
    held_lone_caller_does_not_stall_the_next_ones().await;
}
