//! ElastiCache Serverless against the test kit's stand-in (`ServerlessStandIn`): TLS only, one
//! endpoint in front of real memcached, `get`/`gets` lines capped at 16 KB, and the commands
//! Serverless refuses refused as it documents. Checked: the client's Serverless mode
//! (`ClientBuilder::serverless`) keeps to those rules and explains what it will not send; and
//! the stand-in does enforce them, so that the first check means something.
#![cfg(feature = "tls")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use memcached_autodiscovery::{Client, Error, ServerErrorKind, TlsConfig, TlsErrorKind};
use memcached_autodiscovery_testkit::{LocalCluster, ServerlessStandIn, TestCa, MAX_GET_LINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MINUTE: Duration = Duration::from_secs(60);

/// A CA and a stand-in whose certificate it issued for `localhost` and `127.0.0.1`.
async fn stand_in() -> (String, ServerlessStandIn) {
    let ca = TestCa::new("serverless test CA");
    let (chain, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let server = ServerlessStandIn::start(chain, key)
        .await
        .expect("the stand-in starts (memcached installed?)");
    (ca.pem, server)
}

async fn serverless_client(ca_pem: &str, server: &ServerlessStandIn) -> Client {
    Client::builder()
        .serverless(server.endpoint().to_string())
        .tls(TlsConfig::with_ca_pem(ca_pem.as_bytes()).unwrap())
        // A debug build on a busy 2-core machine: TLS and the stand-in share the cores with
        // every other test; the default 1 s was once exceeded there.
        .request_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_endpoint_is_the_one_node_reached_over_several_tls_connections() {
    let (ca, server) = stand_in().await;
    let client = serverless_client(&ca, &server).await;
    let cluster = client.cluster();
    assert_eq!(cluster.version(), 0);
    assert_eq!(cluster.nodes().len(), 1);
    assert_eq!(cluster.nodes()[0].id(), server.endpoint().to_string());

    let mut tasks = Vec::new();
    for i in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("key-{i}");
            client
                .set(&key, format!("value-{i}"), MINUTE)
                .await
                .unwrap();
            client.get(&key).await.unwrap()
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let value = task.await.unwrap().expect("a hit");
        assert_eq!(value, format!("value-{i}").as_bytes());
    }
    assert_eq!(server.connections(), 4, "4 connections by default");

    // connections_per_node, before or after, decides.
    let (ca, server) = stand_in().await;
    let client = Client::builder()
        .connections_per_node(2)
        .serverless(server.endpoint().to_string())
        .tls(TlsConfig::with_ca_pem(ca.as_bytes()).unwrap())
        .build()
        .await
        .unwrap();
    for i in 0..8 {
        client.get(format!("key-{i}")).await.unwrap();
    }
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn multi_gets_of_long_keys_keep_every_line_within_16_kb() {
    let (ca, server) = stand_in().await;
    let client = serverless_client(&ca, &server).await;
    let keys: Vec<String> = (0..100)
        .map(|i| format!("{i:03}{}", "k".repeat(247)))
        .collect();
    for key in &keys {
        client.set(key, key.as_bytes(), MINUTE).await.unwrap();
    }
    let found = client.get_many(&keys).await.unwrap();
    assert_eq!(found.len(), 100, "every key read back");
    assert_eq!(server.refused(), 0);
    let longest = server.longest_get_line();
    assert!(
        longest <= MAX_GET_LINE && longest > MAX_GET_LINE / 2,
        "lines filled up to the limit: {longest}"
    );
}

#[tokio::test]
async fn commands_serverless_refuses_fail_before_sending_and_say_why() {
    let (ca, server) = stand_in().await;
    let client = serverless_client(&ca, &server).await;
    client.set("k", "v", MINUTE).await.unwrap();

    match client.stats(Some("settings")).await {
        Err(Error::Server { kind, message, .. }) => {
            assert_eq!(kind, ServerErrorKind::UnknownCommand);
            assert!(message.contains("Serverless"), "{message}");
            assert!(message.contains("`stats settings`"), "{message}");
        }
        other => panic!("stats settings: {other:?}"),
    }
    match client.flush_all_after(Duration::from_secs(5)).await {
        Err(Error::Server { kind, message, .. }) => {
            assert_eq!(kind, ServerErrorKind::ClientError);
            assert!(message.contains("delayed flush_all"), "{message}");
        }
        other => panic!("delayed flush_all: {other:?}"),
    }
    assert_eq!(server.refused(), 0, "nothing refused was sent");
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // What Serverless accepts goes through.
    assert_eq!(client.stats(None).await.unwrap().len(), 1);
    client.flush_all().await.unwrap();
    assert_eq!(client.get("k").await.unwrap(), None);

    // The same endpoint as a plain node list: the request is sent, and refused by the server.
    let plain = Client::builder()
        .nodes([server.endpoint().to_string()])
        .tls(TlsConfig::with_ca_pem(ca.as_bytes()).unwrap())
        .build()
        .await
        .unwrap();
    assert!(matches!(
        plain.stats(Some("settings")).await,
        Err(Error::Server {
            kind: ServerErrorKind::UnknownCommand,
            ..
        })
    ));
    assert_eq!(server.refused(), 1);
}

#[tokio::test]
async fn tls_with_the_public_roots_is_the_default() {
    let (_ca, server) = stand_in().await;
    let client = Client::builder()
        .serverless(server.endpoint().to_string())
        .build()
        .await
        .unwrap();
    match client.get("k").await {
        Err(Error::Tls { kind, .. }) => assert_eq!(kind, TlsErrorKind::UntrustedCertificate),
        other => panic!("a private CA is not among the public roots: {other:?}"),
    }
}

#[tokio::test]
async fn a_serverless_endpoint_given_as_a_configuration_endpoint_is_refused() {
    let endpoint = "mycache-abc123.serverless.use1.cache.amazonaws.com:11211";
    for result in [
        Client::builder()
            .config_endpoint(endpoint)
            .build()
            .await
            .map(|_| ()),
        Client::builder()
            .config_endpoint(endpoint)
            .discover()
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(Error::Settings { setting, reason }) => {
                assert_eq!(setting, "config_endpoint");
                assert!(reason.contains("ClientBuilder::serverless"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn flush_all_after_flushes_a_provisioned_cluster_once_the_delay_is_over() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = support::client_for(&cluster, MINUTE).await;
    client.set("k", "v", MINUTE).await.unwrap();
    client
        .flush_all_after(Duration::from_secs(3))
        .await
        .unwrap();
    assert!(client.get("k").await.unwrap().is_some(), "not yet");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(client.get("k").await.unwrap(), None, "flushed");
}

/// A raw TLS connection to the stand-in, trusting `ca_pem`.
async fn raw_tls(
    ca_pem: &str,
    server: &ServerlessStandIn,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.endpoint())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_stand_in_enforces_the_rules_and_keeps_replies_in_order() {
    let (ca, server) = stand_in().await;

    // Plaintext: no answer, the connection is dropped.
    let mut plain = tokio::net::TcpStream::connect(server.endpoint())
        .await
        .unwrap();
    plain.write_all(b"version\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(MINUTE, plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("VERSION"));
    assert!(support::eventually(Duration::from_secs(5), || server.handshakes_failed() == 1).await);

    // Over TLS, pipelined: refusals in place, everything else answered by memcached.
    let mut tls = raw_tls(&ca, &server).await;
    let mut long_get = b"get".to_vec();
    while long_get.len() < MAX_GET_LINE {
        long_get.extend_from_slice(b" some-key");
    }
    long_get.extend_from_slice(b"\r\n");
    let mut requests = b"set k 0 0 1\r\nv\r\n".to_vec();
    requests.extend_from_slice(&long_get);
    requests.extend_from_slice(
        b"stats settings\r\nflush_all 10\r\nget k\r\nconfig get cluster\r\nversion\r\n",
    );
    tls.write_all(&requests).await.unwrap();
    let mut replies = Vec::new();
    while !replies.ends_with(b"\r\n") || !String::from_utf8_lossy(&replies).contains("VERSION") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(MINUTE, tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed early: {:?}",
            String::from_utf8_lossy(&replies)
        );
        replies.extend_from_slice(&buf[..n]);
    }
    let replies = String::from_utf8(replies).unwrap();
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert_eq!(lines[0], "STORED");
    assert!(lines[1].starts_with("CLIENT_ERROR"), "the long get line");
    assert_eq!(lines[2], "ERROR", "stats with an argument");
    assert!(
        lines[3].starts_with("CLIENT_ERROR"),
        "the delayed flush_all"
    );
    assert_eq!(&lines[4..7], ["VALUE k 0 1", "v", "END"], "not flushed");
    assert_eq!(lines[7], "ERROR", "no config get cluster");
    assert!(lines[8].starts_with("VERSION "));
    assert_eq!(server.refused(), 4);
    assert!(server.longest_get_line() > MAX_GET_LINE);
}
