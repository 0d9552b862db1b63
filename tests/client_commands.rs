//! Every command of the client against a real 3-node local cluster.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use memcached_autodiscovery::{CasOutcome, Client, Error, ProtocolError, StoreMode};
use memcached_autodiscovery_testkit::LocalCluster;
use support::{client_for, stat_sum};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_command_behaves_as_memcached_documents() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;

    assert_eq!(client.get("absent").await.unwrap(), None);
    client.set("k", "v1", MINUTE).await.unwrap();
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));

    assert!(
        !client.add("k", "v2", MINUTE).await.unwrap(),
        "add of a present key"
    );
    assert!(client.add("fresh", "a", MINUTE).await.unwrap());
    assert!(client.replace("k", "v3", MINUTE).await.unwrap());
    assert!(!client.replace("nope", "x", MINUTE).await.unwrap());
    assert!(client.append("k", "-end").await.unwrap());
    assert!(client.prepend("k", "start-").await.unwrap());
    assert!(!client.append("nope", "x").await.unwrap());
    assert_eq!(
        client.get("k").await.unwrap().as_deref(),
        Some(&b"start-v3-end"[..])
    );

    let item = client.gets("k").await.unwrap().expect("gets finds k");
    let token = item.cas.expect("gets returns a CAS token");
    assert_eq!(
        client.cas("k", "cas1", MINUTE, token).await.unwrap(),
        CasOutcome::Stored
    );
    assert_eq!(
        client.cas("k", "cas2", MINUTE, token).await.unwrap(),
        CasOutcome::Exists
    );
    assert_eq!(
        client.cas("nope", "x", MINUTE, token).await.unwrap(),
        CasOutcome::NotFound
    );
    assert_eq!(
        client.get("k").await.unwrap().as_deref(),
        Some(&b"cas1"[..])
    );

    assert!(client
        .store(StoreMode::Set, "flagged", "f", MINUTE, 42)
        .await
        .unwrap());
    assert_eq!(client.gets("flagged").await.unwrap().unwrap().flags, 42);

    assert_eq!(client.incr("counter", 1).await.unwrap(), None);
    client.set("counter", "10", MINUTE).await.unwrap();
    assert_eq!(client.incr("counter", 5).await.unwrap(), Some(15));
    assert_eq!(
        client.decr("counter", 20).await.unwrap(),
        Some(0),
        "decr stops at 0"
    );
    client
        .set("big", u64::MAX.to_string(), MINUTE)
        .await
        .unwrap();
    assert_eq!(
        client.incr("big", 1).await.unwrap(),
        Some(0),
        "incr wraps at 2^64"
    );
    let err = client.incr("k", 1).await.unwrap_err();
    assert!(
        matches!(err, Error::Server { .. }),
        "incr of text is a server error: {err}"
    );

    assert!(client.touch("k", MINUTE).await.unwrap());
    assert!(!client.touch("nope", MINUTE).await.unwrap());
    assert_eq!(
        client.gat("k", MINUTE).await.unwrap().as_deref(),
        Some(&b"cas1"[..])
    );
    assert_eq!(client.gat("nope", MINUTE).await.unwrap(), None);

    assert!(client.delete("k").await.unwrap());
    assert!(!client.delete("k").await.unwrap());
    assert_eq!(client.get("k").await.unwrap(), None);

    let stats = client.stats(None).await.unwrap();
    assert_eq!(stats.len(), 3);
    assert!(stats
        .iter()
        .all(|(_, pairs)| pairs.iter().any(|(k, _)| k == "version")));

    client.flush_all().await.unwrap();
    assert_eq!(client.get("fresh").await.unwrap(), None);
}

#[tokio::test]
async fn short_ttl_expires() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    client
        .set("ttl", "x", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(client.get("ttl").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client.get("ttl").await.unwrap(), None);
}

#[tokio::test]
async fn keys_reach_every_node_and_get_many_spans_them() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let mut owners = HashSet::new();
    for key in &keys {
        client
            .set(key, format!("value-of-{key}"), MINUTE)
            .await
            .unwrap();
        owners.insert(client.node_for(key).unwrap().id());
    }
    assert_eq!(owners.len(), 3, "300 keys land on all 3 nodes");
    // Each node holds what the client routed to it: the per-node item counts add up.
    assert_eq!(stat_sum(&cluster, "curr_items").await, 300);

    let mut asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    asked.push("missing-1");
    asked.push("key-7"); // duplicate
    let found = client.get_many(&asked).await.unwrap();
    assert_eq!(found.len(), 300);
    for key in &keys {
        assert_eq!(
            found.get(key.as_bytes()).unwrap(),
            format!("value-of-{key}").as_bytes()
        );
    }
    assert!(client
        .get_many(Vec::<&str>::new())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn one_mebibyte_values_and_utf8_keys() {
    let cluster = LocalCluster::builder()
        .nodes(2)
        .max_item_size(Some("2m".into()))
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .max_value_size(1 << 20)
        .build()
        .await
        .unwrap();
    let value: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    client.set("large", &value, MINUTE).await.unwrap();
    assert_eq!(client.get("large").await.unwrap().unwrap(), value);
    let too_big = vec![0u8; (1 << 20) + 1];
    let err = client.set("larger", &too_big, MINUTE).await.unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ProtocolError::ValueTooLarge { .. })),
        "{err}"
    );

    for key in ["café", "ключ", "鍵-キー", "emoji-🦀"] {
        client.set(key, key, MINUTE).await.unwrap();
        assert_eq!(client.get(key).await.unwrap().unwrap(), key.as_bytes());
    }
    let found = client.get_many(["café", "ключ"]).await.unwrap();
    assert_eq!(found.len(), 2);
}

#[tokio::test]
async fn values_over_the_server_item_size_fail_cleanly_and_the_connection_stays_usable() {
    // The server's item size stays at its 1 MiB default; the client allows 4 MiB.
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .max_value_size(4 << 20)
        .build()
        .await
        .unwrap();
    let err = client
        .set("huge", vec![7u8; 2 << 20], MINUTE)
        .await
        .unwrap_err();
    match &err {
        Error::Server { message, .. } => assert!(message.contains("too large"), "{message}"),
        other => panic!("expected a server error, got {other}"),
    }
    assert!(!err.is_retryable());
    client.set("after", "ok", MINUTE).await.unwrap();
    assert_eq!(
        client.get("after").await.unwrap().as_deref(),
        Some(&b"ok"[..])
    );
}

#[tokio::test]
async fn invalid_keys_are_refused_before_anything_is_sent() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let client = client_for(&cluster, MINUTE).await;
    client.set("warm", "x", MINUTE).await.unwrap(); // connections open
    let gets_before = stat_sum(&cluster, "cmd_get").await;
    let sets_before = stat_sum(&cluster, "cmd_set").await;
    let long = "x".repeat(251);
    let bad: [&[u8]; 7] = [
        b"",
        long.as_bytes(),
        b"a b",
        b"a\r\nflush_all",
        b"nul\0",
        b"del\x7f",
        b"tab\t",
    ];
    for key in bad {
        assert!(matches!(
            client.get(key).await,
            Err(Error::Invalid(ProtocolError::InvalidKey(_)))
        ));
        assert!(matches!(
            client.set(key, "v", MINUTE).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(client.delete(key).await, Err(Error::Invalid(_))));
        assert!(client.get_many([&b"good"[..], key]).await.is_err());
        assert!(client.node_for(key).is_err());
    }
    assert_eq!(
        stat_sum(&cluster, "cmd_get").await,
        gets_before,
        "no get reached a server"
    );
    assert_eq!(
        stat_sum(&cluster, "cmd_set").await,
        sets_before,
        "no set reached a server"
    );
    assert_eq!(
        stat_sum(&cluster, "curr_items").await,
        1,
        "flush_all never ran"
    );
    let ok = "k".repeat(250);
    client.set(&ok, "v", MINUTE).await.unwrap();
}

#[tokio::test]
async fn a_static_node_list_needs_no_discovery() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let nodes: Vec<String> = cluster
        .node_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let client = Client::builder().nodes(nodes).build().await.unwrap();
    client.set("static", "yes", MINUTE).await.unwrap();
    assert_eq!(
        client.get("static").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(client.cluster().version(), 0);
    assert!(!client.refresh().await.unwrap());
    assert!(matches!(
        Client::builder().build().await,
        Err(Error::Settings {
            setting: "config_endpoint",
            ..
        })
    ));
    assert!(matches!(
        Client::builder().nodes(["not a host:port:x"]).build().await,
        Err(Error::Settings {
            setting: "nodes",
            ..
        })
    ));
}
