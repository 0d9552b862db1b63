//! `get_or_load` and `invalidate` against real memcached 1.6 (meta-protocol leases), with several
//! clients in one test as several Lambda environments would be, and against an emulated
//! memcached 1.5 that answers the meta protocol with `ERROR`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use memcached_autodiscovery::{Client, Error, ProtocolError};
use memcached_autodiscovery_testkit::LocalCluster;
use support::rogue::{Rogue, RogueNode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const TTL: Duration = Duration::from_secs(60);

/// Loads per key.
#[derive(Clone, Default)]
struct Loads(Arc<Mutex<HashMap<String, usize>>>);

impl Loads {
    fn count(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// A loader for `key` that takes `delay` and returns `value-of-<key>`.
    async fn load(&self, key: String, delay: Duration) -> Result<Bytes, std::io::Error> {
        *self.0.lock().unwrap().entry(key.clone()).or_default() += 1;
        tokio::time::sleep(delay).await;
        Ok(Bytes::from(format!("value-of-{key}")))
    }
}

async fn clients(cluster: &LocalCluster, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Client::builder()
                .config_endpoint(cluster.config_endpoint().to_string())
                .request_timeout(Duration::from_secs(2))
                .load_lease(Duration::from_secs(3))
                .build()
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_and_callers_on_cold_keys_load_each_key_once() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let clients = clients(&cluster, 4).await;
    let loads = Loads::default();
    let keys: Vec<String> = (0..5).map(|i| format!("herd:{i}")).collect();
    let mut tasks = Vec::new();
    for client in &clients {
        for caller in 0..16 {
            let (client, loads) = (client.clone(), loads.clone());
            let key = keys[caller % keys.len()].clone();
            tasks.push(tokio::spawn(async move {
                let loader_key = key.clone();
                let value = client
                    .get_or_load(&key, TTL, || {
                        loads.load(loader_key, Duration::from_millis(100))
                    })
                    .await;
                (key, value)
            }));
        }
    }
    for task in tasks {
        let (key, value) = task.await.unwrap();
        assert_eq!(
            value.unwrap(),
            format!("value-of-{key}"),
            "every caller gets its key's value"
        );
    }
    for key in &keys {
        assert_eq!(
            loads.count(key),
            1,
            "{key} loaded once across 4 clients × 16 callers"
        );
    }
    // The values are stored: a plain get sees them, and a new caller loads nothing.
    assert_eq!(
        clients[0].get(&keys[0]).await.unwrap().unwrap(),
        format!("value-of-{}", keys[0])
    );
    let again = clients[1]
        .get_or_load(&keys[0], TTL, || {
            loads.load(keys[0].clone(), Duration::ZERO)
        })
        .await
        .unwrap();
    assert_eq!(again, format!("value-of-{}", keys[0]));
    assert_eq!(loads.count(&keys[0]), 1);
}

#[derive(Debug, thiserror::Error)]
#[error("the database is down")]
struct DatabaseDown;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_loader_gets_its_error_and_gives_the_key_back_at_once() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let clients = clients(&cluster, 2).await;
    let key = "fails:once";
    let failing = clients[0].get_or_load(key, TTL, || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err::<Bytes, _>(DatabaseDown)
    });
    let waiting = async {
        // Starts while the failing load holds the key.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let value = clients[1]
            .get_or_load(key, TTL, || async {
                Ok::<_, DatabaseDown>(Bytes::from_static(b"ok"))
            })
            .await;
        (value, started.elapsed())
    };
    let (failed, (value, waited)) = tokio::join!(failing, waiting);
    match failed {
        Err(Error::Load { source }) => assert_eq!(source.to_string(), "the database is down"),
        other => panic!("expected Error::Load, got {other:?}"),
    }
    assert_eq!(value.unwrap(), "ok");
    assert!(
        waited < Duration::from_secs(1),
        "the waiter loaded as soon as the failed load gave the key back, not after the 3 s lease: {waited:?}"
    );
}

/// A winner whose value is not stored gives the key back at once, as a failed load does: a
/// caller of another client, waiting for that load, loads its own value instead of waiting out
/// the lease. Two refusals of a 2 MiB value: by the winner's client (over its default 1 MiB
/// `max_value_size`: never sent), and by memcached (`SERVER_ERROR object too large for cache`
/// over its default 1 MiB item size; memcached 1.6.18 then drops the placeholder itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_too_large_to_store_gives_the_key_back_at_once() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let lease = Duration::from_secs(10);
    let client = |max_value_size: usize| {
        Client::builder()
            .config_endpoint(cluster.config_endpoint().to_string())
            .request_timeout(Duration::from_secs(2))
            .load_lease(lease)
            .max_value_size(max_value_size)
            .build()
    };
    let waiter = client(1 << 20).await.unwrap();
    for (refused_by, max_value_size) in [("the client", 1 << 20), ("memcached", 4 << 20)] {
        let winner = client(max_value_size).await.unwrap();
        let key = format!("too-large:{max_value_size}");
        let (won, loading) = tokio::sync::oneshot::channel::<()>();
        let (give, given) = tokio::sync::oneshot::channel::<()>();
        let winning = {
            let key = key.clone();
            tokio::spawn(async move {
                winner
                    .get_or_load(&key, TTL, || async move {
                        let _ = won.send(());
                        let _ = given.await;
                        Ok::<_, DatabaseDown>(Bytes::from(vec![b'x'; 2 << 20]))
                    })
                    .await
            })
        };
        loading.await.unwrap(); // the winner holds the key
        let started = Instant::now();
        let waiting = {
            let (waiter, key) = (waiter.clone(), key.clone());
            tokio::spawn(async move {
                waiter
                    .get_or_load(&key, TTL, || async {
                        Ok::<_, DatabaseDown>(Bytes::from_static(b"small"))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "{refused_by}: the waiter waits for the load"
        );
        give.send(()).unwrap();
        let loaded = Instant::now();
        let value = winning.await.unwrap().unwrap();
        assert_eq!(
            value.len(),
            2 << 20,
            "{refused_by}: the winner gets its value"
        );
        let value = waiting.await.unwrap().unwrap();
        let waited = started.elapsed();
        eprintln!(
            "refused by {refused_by}: the waiter had its value {waited:?} after it asked, {:?} \
             after the winner's load ended",
            loaded.elapsed()
        );
        assert_eq!(value, "small", "{refused_by}: the waiter loaded itself");
        assert!(
            waited < Duration::from_secs(2),
            "refused by {refused_by}: the key was given back at once, not after the 10 s lease: {waited:?}"
        );
        assert_eq!(waiter.get(&key).await.unwrap().unwrap(), "small");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_winner_gives_the_key_back() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let clients = clients(&cluster, 2).await;
    let key = "cancelled:winner";
    let winner = {
        let client = clients[0].clone();
        tokio::spawn(async move {
            client
                .get_or_load(key, TTL, || async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<_, DatabaseDown>(Bytes::new())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // it has won and is loading
    winner.abort();
    let _ = winner.await;
    let started = Instant::now();
    let value = clients[1]
        .get_or_load(key, TTL, || async {
            Ok::<_, DatabaseDown>(Bytes::from_static(b"mine"))
        })
        .await
        .unwrap();
    assert_eq!(value, "mine");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not held for the 3 s lease: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_serves_the_stale_value_while_one_caller_refreshes() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let clients = clients(&cluster, 3).await;
    let key = "stale:key";
    clients[0].set(key, "old", TTL).await.unwrap();
    assert!(clients[0]
        .invalidate(key, Duration::from_secs(30))
        .await
        .unwrap());
    assert!(!clients[0]
        .invalidate("stale:absent", Duration::from_secs(30))
        .await
        .unwrap());

    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = clients[i % clients.len()].clone();
        let loads = loads.clone();
        tasks.push(tokio::spawn(async move {
            client
                .get_or_load(key, TTL, || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, DatabaseDown>(Bytes::from_static(b"new"))
                })
                .await
                .unwrap()
        }));
    }
    let mut seen = HashMap::new();
    for task in tasks {
        *seen.entry(task.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one refresh for 24 readers: {seen:?}"
    );
    assert!(
        seen.get(&Bytes::from_static(b"old")).copied().unwrap_or(0) > 0,
        "readers were served the stale value meanwhile: {seen:?}"
    );
    assert_eq!(clients[1].get(key).await.unwrap().unwrap(), "new");
}

/// A loader that says when it starts, then takes `delay` and returns `value`.
async fn signalled_load(
    started: tokio::sync::oneshot::Sender<()>,
    delay: Duration,
    value: &'static str,
) -> Result<Bytes, DatabaseDown> {
    let _ = started.send(());
    tokio::time::sleep(delay).await;
    Ok(Bytes::from_static(value.as_bytes()))
}

/// `invalidate` while a load holds the lease marks the empty placeholder stale, and memcached
/// 1.6.18 answers the next reader `VA 0 ... X W` and the others `VA 0 ... Z X`: a stale item that
/// never held a value. No caller is served it: the first reader loads, the others wait for its
/// value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_invalidated_during_its_load_is_never_served() {
    let cluster = LocalCluster::start(1).await.unwrap();
    // One client per reader: each client's own callers share one lookup.
    let clients = clients(&cluster, 4).await;
    let key = "invalidated:while-loading";
    let (started, first_started) = tokio::sync::oneshot::channel();
    let first = {
        let client = clients[0].clone();
        tokio::spawn(async move {
            let load = || signalled_load(started, Duration::from_millis(800), "first");
            client.get_or_load(key, TTL, load).await
        })
    };
    first_started.await.unwrap();
    assert!(
        clients[1]
            .invalidate(key, Duration::from_secs(30))
            .await
            .unwrap(),
        "the placeholder is there to invalidate"
    );
    let (started, reload_started) = tokio::sync::oneshot::channel();
    let reloader = {
        let client = clients[1].clone();
        tokio::spawn(async move {
            let load = || signalled_load(started, Duration::from_millis(300), "reloaded");
            client.get_or_load(key, TTL, load).await
        })
    };
    reload_started.await.unwrap();
    // The lease of the reload is out: these readers find the stale placeholder.
    let readers: Vec<_> = clients[2..]
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .get_or_load(key, TTL, || async {
                        Ok::<_, DatabaseDown>(Bytes::from_static(b"reader loaded"))
                    })
                    .await
            })
        })
        .collect();
    for reader in readers {
        let value = reader.await.unwrap().unwrap();
        assert!(!value.is_empty(), "a reader was served the placeholder");
        assert_eq!(value, "reloaded", "readers wait for the reload");
    }
    assert_eq!(reloader.await.unwrap().unwrap(), "reloaded");
    // The first winner keeps its value; its store lost to the invalidation.
    assert_eq!(first.await.unwrap().unwrap(), "first");
    assert_eq!(clients[0].get(key).await.unwrap().unwrap(), "reloaded");
}

/// A node that answers the lease's read with another key's item (here a relay that asks
/// memcached for `decoy` instead): the caller gets a protocol error, never that item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_reply_for_another_key_is_refused() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let node = cluster.node_addrs()[0];
    let direct = Client::builder()
        .nodes([node.to_string()])
        .build()
        .await
        .unwrap();
    direct.set("decoy", "decoy's value", TTL).await.unwrap();
    let rogue = RogueNode::start(Rogue::OtherKey(node, "decoy")).await;
    let client = Client::builder()
        .nodes([rogue.addr.to_string()])
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = loads.clone();
    let got = client
        .get_or_load("wanted", TTL, || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, DatabaseDown>(Bytes::from_static(b"loaded"))
        })
        .await;
    match got {
        Err(Error::Protocol {
            source:
                ProtocolError::UnexpectedReply {
                    expected: "the requested key",
                    line,
                },
            ..
        }) => assert_eq!(line, "decoy"),
        other => panic!("another key's item was not refused: {other:?}"),
    }
    assert_eq!(loads.load(Ordering::SeqCst), 0, "nothing was loaded");
    // The decoy itself is untouched.
    assert_eq!(direct.get("decoy").await.unwrap().unwrap(), "decoy's value");
}

/// A memcached 1.5 stand-in: `get`, `set` and `delete` of the text protocol over an in-memory
/// map, `ERROR` to any meta command (as memcached before 1.6 answers them).
async fn memcached_15() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let meta_refused = Arc::new(AtomicUsize::new(0));
    let store: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let refused = meta_refused.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (store, refused) = (store.clone(), refused.clone());
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                let mut line = String::new();
                loop {
                    line.clear();
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let reply = match words.as_slice() {
                        [cmd, ..] if cmd.len() == 2 && cmd.starts_with('m') => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            "ERROR\r\n".to_string()
                        }
                        ["get", key] => match store.lock().unwrap().get(*key) {
                            Some(v) => format!(
                                "VALUE {key} 0 {}\r\n{}\r\nEND\r\n",
                                v.len(),
                                String::from_utf8_lossy(v)
                            ),
                            None => "END\r\n".into(),
                        },
                        ["set", key, _, _, len] => {
                            let mut data = vec![0; len.parse::<usize>().unwrap() + 2];
                            read.read_exact(&mut data).await.unwrap();
                            data.truncate(data.len() - 2);
                            store.lock().unwrap().insert(key.to_string(), data);
                            "STORED\r\n".into()
                        }
                        ["delete", key] => match store.lock().unwrap().remove(*key) {
                            Some(_) => "DELETED\r\n".into(),
                            None => "NOT_FOUND\r\n".into(),
                        },
                        _ => "ERROR\r\n".into(),
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, meta_refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_meta_protocol_each_client_loads_once() {
    let (addr, meta_refused) = memcached_15().await;
    let client = Client::builder()
        .nodes([addr.to_string()])
        .build()
        .await
        .unwrap();
    let loads = Loads::default();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, loads) = (client.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            client
                .get_or_load("old:key", TTL, || {
                    loads.load("old:key".into(), Duration::from_millis(50))
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "value-of-old:key");
    }
    assert_eq!(
        loads.count("old:key"),
        1,
        "one load for 16 callers of one client"
    );
    assert_eq!(
        meta_refused.load(Ordering::SeqCst),
        1,
        "the node was asked in meta once, then remembered"
    );
    // Stored with set, read with get.
    assert_eq!(
        client.get("old:key").await.unwrap().unwrap(),
        "value-of-old:key"
    );
    // invalidate falls back to delete.
    assert!(client
        .invalidate("old:key", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(client.get("old:key").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expiring_under_load_are_reloaded_by_one_caller_at_a_time() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let clients = clients(&cluster, 2).await;
    let loads = Loads::default();
    let keys: Vec<String> = (0..3).map(|i| format!("expiring:{i}")).collect();
    let ttl = Duration::from_secs(1);
    let run_for = Duration::from_millis(3500);
    let errors = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for caller in 0..16 {
        let client = clients[caller % 2].clone();
        let (loads, errors, calls) = (loads.clone(), errors.clone(), calls.clone());
        let key = keys[caller % keys.len()].clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < run_for {
                let loader_key = key.clone();
                let got = client
                    .get_or_load(&key, ttl, || {
                        loads.load(loader_key, Duration::from_millis(50))
                    })
                    .await;
                calls.fetch_add(1, Ordering::Relaxed);
                match got {
                    Ok(value) => assert_eq!(value, format!("value-of-{key}")),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let calls = calls.load(Ordering::Relaxed);
    let counts: Vec<usize> = keys.iter().map(|k| loads.count(k)).collect();
    eprintln!("expiring keys: {calls} calls over 3.5 s, loads per key {counts:?}");
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "no errors in {calls} calls"
    );
    for key in &keys {
        // 3.5 s of a 1 s TTL: about one load a second; a herd would be up to 16 per expiry.
        let n = loads.count(key);
        assert!((2..=8).contains(&n), "{key}: {n} loads in {calls} calls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_a_lease_is_held_fails_the_waiters_not_the_winner() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let clients = clients(&cluster, 2).await;
    let key = "killed:lease";
    let winner = {
        let client = clients[0].clone();
        tokio::spawn(async move {
            client
                .get_or_load(key, TTL, || async {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok::<_, DatabaseDown>(Bytes::from_static(b"loaded"))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiter = {
        let client = clients[1].clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = client
                .get_or_load(key, TTL, || async {
                    Ok::<_, DatabaseDown>(Bytes::from_static(b"waiter loaded"))
                })
                .await;
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.kill(0);
    // The winner's value is its own, whether or not it could be stored.
    assert_eq!(winner.await.unwrap().unwrap(), "loaded");
    let (got, waited) = waiter.await.unwrap();
    let error = got.expect_err("the waiter's node is gone");
    assert!(error.is_retryable(), "{error}");
    assert!(
        waited < Duration::from_secs(3),
        "bounded by the request timeout: {waited:?}"
    );

    // Back on the same port (empty): the next caller loads.
    cluster.restart(0).await.unwrap();
    let mut value = None;
    for _ in 0..50 {
        match clients[1]
            .get_or_load(key, TTL, || async {
                Ok::<_, DatabaseDown>(Bytes::from_static(b"again"))
            })
            .await
        {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(value.unwrap(), "again");
}

/// The loader's error type is the caller's: its own type (found again by downcasting the
/// source), a boxed error as `lambda_runtime::Error` is, an `anyhow::Error`, a `String`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaders_fail_with_the_error_types_applications_use() {
    #[derive(Debug)]
    struct TableMissing(&'static str);
    impl std::fmt::Display for TableMissing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "table {} is missing", self.0)
        }
    }
    impl std::error::Error for TableMissing {}
    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    let cluster = LocalCluster::start(1).await.unwrap();
    let client = clients(&cluster, 1).await.remove(0);
    let ttl = Duration::from_secs(60);
    let source = |result: Result<Bytes, Error>| match result {
        Err(Error::Load { source }) => source,
        other => panic!("not a load error: {other:?}"),
    };

    let own = client
        .get_or_load("err-own", ttl, || async { Err(TableMissing("Photo")) })
        .await;
    let own = source(own);
    assert_eq!(
        own.downcast_ref::<TableMissing>().map(|t| t.0),
        Some("Photo"),
        "the loader's own error type comes back"
    );

    let boxed = client
        .get_or_load("err-boxed", ttl, || async {
            Err::<Bytes, BoxError>(Box::new(TableMissing("Boxed")))
        })
        .await;
    assert_eq!(
        source(boxed).downcast_ref::<TableMissing>().map(|t| t.0),
        Some("Boxed"),
        "a boxed error (lambda_runtime::Error) is kept as it is"
    );

    let any = client
        .get_or_load("err-anyhow", ttl, || async {
            Err(anyhow::Error::new(TableMissing("Anyhow")).context("scanning"))
        })
        .await;
    let any = source(any);
    assert_eq!(any.to_string(), "scanning");
    let root = std::iter::successors(Some(&*any as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .last()
    .unwrap();
    assert_eq!(
        root.to_string(),
        "table Anyhow is missing",
        "anyhow's chain is kept"
    );

    let text = client
        .get_or_load("err-string", ttl, || async {
            Err(String::from("plain text"))
        })
        .await;
    assert_eq!(source(text).to_string(), "plain text");

    // Each failure gave its key back: a loader that succeeds now loads it.
    let value = client
        .get_or_load("err-own", ttl, || async {
            Ok::<_, std::io::Error>(Bytes::from("ok"))
        })
        .await
        .unwrap();
    assert_eq!(&value[..], b"ok");
}
