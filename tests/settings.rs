//! Every setting is total: extreme values in any builder setter clamp (as documented) or make
//! `build()` return a configuration error, never a panic — in the builder, the poller or a
//! connection task. And a time to live memcached cannot represent is refused, not stored and lost.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memcached_autodiscovery::{Client, ClientBuilder, Error, ProtocolError, ServerErrorKind};
use memcached_autodiscovery_testkit::LocalCluster;

/// Counts panics on any thread of this test binary (a panic in a spawned task does not fail a
/// test by itself).
fn count_panics() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    count
}

/// The builder with every duration set to `d` and every count to `n`.
fn extreme(endpoint: &str, d: Duration, n: usize) -> ClientBuilder {
    Client::builder()
        .config_endpoint(endpoint)
        .poll_interval(d)
        .request_timeout(d)
        .connect_timeout(d)
        .discovery_timeout(d)
        .reconnect_backoff(d, d)
        .max_value_size(n)
        .connections_per_node(n)
        .queue_depth(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_settings_clamp_and_never_panic() {
    let panics = count_panics();
    let cluster = LocalCluster::start(2).await.unwrap();
    let endpoint = cluster.config_endpoint().to_string();
    let key = "settings:k";

    // The largest values: durations clamp to 24 h, counts to their documented maximums.
    let client = extreme(&endpoint, Duration::MAX, usize::MAX)
        .build()
        .await
        .expect("Duration::MAX and usize::MAX build");
    client
        .set(key, "v", Duration::MAX)
        .await
        .expect_err("a TTL of Duration::MAX is refused");
    client.set(key, "v", Duration::ZERO).await.unwrap();
    assert_eq!(client.get(key).await.unwrap().as_deref(), Some(&b"v"[..]));
    let got = client.get_many([key, "settings:absent"]).await.unwrap();
    assert_eq!(got.len(), 1);
    client.refresh().await.unwrap();
    // The poller's sleep (the interval with jitter) must not overflow either: let it start.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(client);

    // The smallest values: durations clamp to 1 ms (10 ms for the poll interval), counts to 1.
    let client = extreme(&endpoint, Duration::ZERO, 0)
        .discovery_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("zero durations and counts build");
    let err = client
        .set(key, "too big", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid(ProtocolError::ValueTooLarge { max: 1, .. })
        ),
        "max_value_size(0) clamps to 1 byte: {err}"
    );
    client.set(key, "1", Duration::ZERO).await.unwrap();
    assert_eq!(client.get(key).await.unwrap().as_deref(), Some(&b"1"[..]));
    // A 10 ms poll interval: the poller runs many times meanwhile.
    let before = cluster.endpoint_requests();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        cluster.endpoint_requests() > before + 3,
        "the poller runs at the clamped 10 ms interval"
    );
    drop(client);

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(panics.load(Ordering::SeqCst), 0, "no task panicked");
}

#[tokio::test]
async fn a_ttl_memcached_cannot_represent_is_refused_and_long_ones_are_kept() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = support::client_for(&cluster, Duration::from_secs(60)).await;

    // 400,000,000 s from now is after 2038-01-19: memcached would store it already expired.
    let err = client
        .set("ttl:far", "v", Duration::from_secs(400_000_000))
        .await
        .unwrap_err();
    match &err {
        Error::Invalid(ProtocolError::TtlTooLong { secs, max }) => {
            assert_eq!(*secs, 400_000_000);
            assert!(*max < 400_000_000 && *max > 30 * 24 * 3600, "{max}");
        }
        other => panic!("expected TtlTooLong, got {other}"),
    }
    assert!(err.to_string().contains("2038"), "{err}");
    assert!(!err.is_retryable());
    assert!(
        client.get("ttl:far").await.unwrap().is_none(),
        "nothing was stored"
    );
    for call in [
        client
            .touch("ttl:far", Duration::from_secs(400_000_000))
            .await
            .map(|_| ()),
        client
            .gat("ttl:far", Duration::from_secs(400_000_000))
            .await
            .map(|_| ()),
        client
            .add("ttl:far", "v", Duration::from_secs(400_000_000))
            .await
            .map(|_| ()),
    ] {
        assert!(matches!(
            call,
            Err(Error::Invalid(ProtocolError::TtlTooLong { .. }))
        ));
    }

    // 40 days is sent as an absolute time and kept.
    client
        .set("ttl:long", "kept", Duration::from_secs(40 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(
        client.get("ttl:long").await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
}

#[test]
fn server_error_kinds_decide_retries() {
    for (kind, retryable) in [
        (ServerErrorKind::OutOfMemory, true),
        (ServerErrorKind::Busy, true),
        (ServerErrorKind::Other, true),
        (ServerErrorKind::TooLarge, false),
        (ServerErrorKind::ClientError, false),
        (ServerErrorKind::UnknownCommand, false),
        (ServerErrorKind::NotStored, false),
    ] {
        let error = Error::Server {
            node: "n:1".into(),
            kind,
            message: String::new(),
        };
        assert_eq!(error.is_retryable(), retryable, "{kind:?}");
    }
}

/// A builder is a template: a clone with one setting changed builds a client of its own, and
/// the original builds with its own settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloned_builder_is_an_independent_template() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let template: ClientBuilder = Client::builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .max_value_size(1024);
    let roomy = template.clone().max_value_size(4096).build().await.unwrap();
    let strict = template.build().await.unwrap();
    let value = vec![b'x'; 2048];
    roomy.set("cloned", &value, Duration::ZERO).await.unwrap();
    assert!(matches!(
        strict.set("cloned", &value, Duration::ZERO).await,
        Err(Error::Invalid(ProtocolError::ValueTooLarge { .. }))
    ));
}
