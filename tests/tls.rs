//! In-transit encryption against real memcached TLS nodes (`-Z`) and the emulated endpoint over
//! TLS, with a CA and certificates made at run time. Every failure must come back within its
//! timeout (plus a margin) with a message that says what to change.
#![cfg(feature = "tls")]

use std::time::{Duration, Instant};

use memcached_autodiscovery::{Client, ClientBuilder, Error, TlsConfig, TlsErrorKind};
use memcached_autodiscovery_testkit::{LocalCluster, TestCa};

const MINUTE: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(800);
const DISCOVERY_TIMEOUT: Duration = Duration::from_millis(800);
/// What a failure may take beyond its timeout (scheduling on a loaded 2-core machine).
const MARGIN: Duration = Duration::from_millis(1000);

/// Names of the first nodes of a local cluster, and the endpoint's IP.
const NODE_NAMES: &[&str] = &[
    "node-1.local-cluster.test",
    "node-2.local-cluster.test",
    "node-3.local-cluster.test",
    "node-4.local-cluster.test",
    "127.0.0.1",
];

async fn tls_cluster(nodes: usize, ca: &TestCa, names: &[&str]) -> LocalCluster {
    let (chain, key) = ca.issue(names);
    LocalCluster::builder()
        .nodes(nodes)
        .tls(chain, key)
        .start()
        .await
        .expect("a TLS cluster starts")
}

fn builder() -> ClientBuilder {
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .request_timeout(REQUEST_TIMEOUT)
        .discovery_timeout(DISCOVERY_TIMEOUT)
        .poll_interval(MINUTE)
}

fn trusting(ca: &TestCa) -> TlsConfig {
    TlsConfig::with_ca_pem(&ca.pem).unwrap()
}

async fn discover(cluster: &LocalCluster, tls: Option<TlsConfig>) -> Result<Client, Error> {
    let mut builder = builder().config_endpoint(cluster.config_endpoint().to_string());
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.build().await
}

/// Runs `call`, checks it fails within `limit` + [`MARGIN`], and returns the error.
async fn fails_within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Error {
    let started = Instant::now();
    let result = tokio::time::timeout(limit + MARGIN * 3, call)
        .await
        .expect("the call returned at all");
    let took = started.elapsed();
    let Err(error) = result else {
        panic!("the call succeeded")
    };
    assert!(
        took <= limit + MARGIN,
        "took {took:?}, over {limit:?} + {MARGIN:?}: {error}"
    );
    error
}

fn tls_kind(error: &Error) -> Option<TlsErrorKind> {
    match error {
        Error::Tls { kind, .. } => Some(*kind),
        _ => None,
    }
}

/// Checks that `error` is a TLS error of `kind`.
#[track_caller]
fn assert_tls(error: &Error, kind: TlsErrorKind) {
    assert_eq!(tls_kind(error), Some(kind), "{error}");
}

#[tokio::test]
async fn get_set_and_discovery_over_tls() {
    let ca = TestCa::new("test CA");
    let cluster = tls_cluster(3, &ca, NODE_NAMES).await;
    let client = discover(&cluster, Some(trusting(&ca)))
        .await
        .expect("discovery over TLS");
    assert_eq!(client.cluster().nodes().len(), 3);

    let keys: Vec<String> = (0..60).map(|i| format!("tls-key-{i}")).collect();
    let mut used = std::collections::HashSet::new();
    for key in &keys {
        client.set(key, key.as_bytes(), MINUTE).await.unwrap();
        used.insert(client.node_for(key).unwrap());
    }
    assert_eq!(used.len(), 3, "the keys reach every node");
    for key in &keys {
        let value = client.get(key).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_bytes()));
    }
    let many = client.get_many(&keys).await.unwrap();
    assert_eq!(many.len(), keys.len());

    // The nodes really are TLS only: a plaintext command gets no memcached answer.
    for addr in cluster.node_addrs() {
        assert!(
            plaintext_version(addr).await.is_none(),
            "{addr} answered plaintext"
        );
    }

    // Refresh over TLS: a new node is discovered and reached over TLS.
    cluster.add_node().await.unwrap();
    assert!(client.refresh().await.unwrap(), "the topology changed");
    assert_eq!(client.cluster().nodes().len(), 4);
    let on_new = (0..10_000)
        .map(|i| format!("new-node-key-{i}"))
        .find(|k| {
            client
                .node_for(k)
                .unwrap()
                .hostname()
                .starts_with("node-4.")
        })
        .expect("some key routes to the new node");
    client.set(&on_new, "v", MINUTE).await.unwrap();
    assert_eq!(
        client.get(&on_new).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

/// What `version` gets over plaintext, or `None` when the server drops the connection.
async fn plaintext_version(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"version\r\n").await.ok()?;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
    match read {
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"VERSION") => {
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_wildcard_server_name_verifies_every_server() {
    let ca = TestCa::new("test CA");
    // Only the wildcard: no node name, no IP.
    let cluster = tls_cluster(2, &ca, &["*.local-cluster.test"]).await;

    let client = discover(
        &cluster,
        Some(trusting(&ca).server_name("*.local-cluster.test")),
    )
    .await
    .expect("the endpoint and the nodes pass as names under the wildcard");
    client.set("w", "1", MINUTE).await.unwrap();
    assert_eq!(client.get("w").await.unwrap().as_deref(), Some(&b"1"[..]));

    // Without server_name the endpoint is checked against its own host, 127.0.0.1.
    let error = fails_within(DISCOVERY_TIMEOUT, discover(&cluster, Some(trusting(&ca)))).await;
    assert_tls(&error, TlsErrorKind::NameMismatch);
    assert!(
        error.to_string().contains("TlsConfig::server_name"),
        "{error}"
    );

    // A wildcard for another domain does not match.
    let error = fails_within(
        DISCOVERY_TIMEOUT,
        discover(
            &cluster,
            Some(trusting(&ca).server_name("*.other-cluster.test")),
        ),
    )
    .await;
    assert_tls(&error, TlsErrorKind::NameMismatch);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let ca = TestCa::new("test CA");
    let cluster = tls_cluster(1, &ca, NODE_NAMES).await;

    // One configured name that the certificate does not carry.
    let error = fails_within(
        DISCOVERY_TIMEOUT,
        discover(
            &cluster,
            Some(trusting(&ca).server_name("cache.elsewhere.test")),
        ),
    )
    .await;
    assert_tls(&error, TlsErrorKind::NameMismatch);
    let message = error.to_string();
    assert!(message.contains("TlsConfig::server_name"), "{message}");
    assert!(message.contains("cache.elsewhere.test"), "{message}");
    assert!(
        message.contains("node-1.local-cluster.test"),
        "lists the names the certificate carries: {message}"
    );

    // Each node is checked, not only the endpoint: named by its IP, which the certificate does
    // not carry, the node is refused.
    let addr = cluster.node_addrs()[0];
    let client = builder()
        .nodes([addr.to_string()])
        .tls(trusting(&ca))
        .build()
        .await
        .unwrap();
    let error = fails_within(CONNECT_TIMEOUT, client.get("k")).await;
    assert_tls(&error, TlsErrorKind::NameMismatch);
    assert_eq!(error.node(), Some(addr.to_string().as_str()));
}

#[tokio::test]
async fn an_untrusted_certificate_authority_is_refused() {
    let ca = TestCa::new("test CA");
    let cluster = tls_cluster(1, &ca, NODE_NAMES).await;
    let other = TestCa::new("another CA");
    for tls in [trusting(&other), TlsConfig::webpki_roots()] {
        let error = fails_within(DISCOVERY_TIMEOUT, discover(&cluster, Some(tls))).await;
        assert_tls(&error, TlsErrorKind::UntrustedCertificate);
        assert!(
            error.to_string().contains("TlsConfig::with_ca_pem"),
            "{error}"
        );
        assert!(!error.is_retryable());
    }
    // The same at a node.
    let node = &cluster.nodes()[0];
    let client = builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .tls(trusting(&other).server_name(node.hostname()))
        .build()
        .await
        .unwrap();
    let error = fails_within(CONNECT_TIMEOUT, client.get("k")).await;
    assert_tls(&error, TlsErrorKind::UntrustedCertificate);
}

#[tokio::test]
async fn a_plaintext_client_is_told_to_enable_tls() {
    let ca = TestCa::new("test CA");
    let cluster = tls_cluster(1, &ca, NODE_NAMES).await;

    // The endpoint answers a plaintext command with a TLS alert.
    let error = fails_within(DISCOVERY_TIMEOUT, discover(&cluster, None)).await;
    assert_tls(&error, TlsErrorKind::ServerRequiresTls);
    assert!(
        error.to_string().contains("enable ClientBuilder::tls"),
        "{error}"
    );

    // memcached resets a plaintext connection without a byte.
    let client = builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .build()
        .await
        .unwrap();
    let error = fails_within(REQUEST_TIMEOUT, client.get("k")).await;
    assert!(
        error.to_string().contains("enable ClientBuilder::tls"),
        "{error}"
    );
}

#[tokio::test]
async fn a_tls_client_is_told_the_server_does_not_use_tls() {
    let ca = TestCa::new("test CA");
    let cluster = LocalCluster::start(1).await.unwrap(); // plaintext

    let error = fails_within(DISCOVERY_TIMEOUT, discover(&cluster, Some(trusting(&ca)))).await;
    assert!(
        matches!(
            tls_kind(&error),
            Some(TlsErrorKind::ServerNotTls | TlsErrorKind::HandshakeTimeout)
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("does not use TLS"), "{error}");

    // A plaintext memcached either answers the handshake with `ERROR` or waits for a line end:
    // both end within the connect timeout.
    let client = builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .tls(trusting(&ca))
        .build()
        .await
        .unwrap();
    let error = fails_within(CONNECT_TIMEOUT, client.get("k")).await;
    assert!(error.to_string().contains("does not use TLS"), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_does_not_hang_the_client() {
    let ca = TestCa::new("test CA");
    // The endpoint accepts, reads, and never answers.
    let cluster = LocalCluster::start(1).await.unwrap();
    cluster.set_endpoint_behavior(memcached_autodiscovery_testkit::EndpointBehavior::Hang);
    let error = fails_within(DISCOVERY_TIMEOUT, discover(&cluster, Some(trusting(&ca)))).await;
    assert_tls(&error, TlsErrorKind::HandshakeTimeout);
    assert!(error.is_timeout() && error.is_retryable(), "{error}");
    assert!(error.to_string().contains("does not use TLS"), "{error}");

    // A node that accepts the connection and says nothing: the handshake ends with the
    // connect timeout, before the request timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let client = builder()
        .nodes([addr.to_string()])
        .tls(trusting(&ca))
        .build()
        .await
        .unwrap();
    let error = fails_within(CONNECT_TIMEOUT, client.get("k")).await;
    assert_tls(&error, TlsErrorKind::HandshakeTimeout);
    held.abort();
}

#[tokio::test]
async fn a_required_client_certificate_is_presented() {
    let ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let (probe_chain, probe_key) = client_ca.issue(&["test-kit-probe"]);
    let (chain, key) = ca.issue(NODE_NAMES);
    let cluster = LocalCluster::builder()
        .nodes(2)
        .tls(chain, key)
        .tls_client_auth(client_ca.pem.clone(), probe_chain, probe_key)
        .start()
        .await
        .expect("memcached starts with ssl_verify_mode=2");

    let (app_chain, app_key) = client_ca.issue(&["app"]);
    let with_cert = trusting(&ca).client_cert_pem(&app_chain, &app_key).unwrap();
    // Debug output of the settings shows no key material.
    let shown = format!("{:?}", builder().tls(with_cert.clone()));
    assert!(shown.contains("client_certificate"), "{shown}");
    let key_text = String::from_utf8_lossy(app_key.as_ref()).to_string();
    let key_body = key_text.lines().nth(1).expect("a PEM body line");
    assert!(
        !shown.contains(key_body) && !shown.contains("PRIVATE"),
        "{shown}"
    );
    let client = discover(&cluster, Some(with_cert.clone()))
        .await
        .expect("discovery with a client certificate");
    for i in 0..20 {
        let key = format!("mtls-{i}");
        client.set(&key, "v", MINUTE).await.unwrap();
        assert!(client.get(&key).await.unwrap().is_some());
    }

    // Without one, the endpoint and each node refuse, and the message says what to give.
    let error = fails_within(DISCOVERY_TIMEOUT, discover(&cluster, Some(trusting(&ca)))).await;
    assert_tls(&error, TlsErrorKind::RejectedByServer);
    assert!(error.to_string().contains("client_cert_pem"), "{error}");
    let node = cluster.nodes()[0].clone();
    let client = builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .tls(trusting(&ca).server_name(node.hostname()))
        .build()
        .await
        .unwrap();
    let error = fails_within(REQUEST_TIMEOUT, client.get("k")).await;
    assert_tls(&error, TlsErrorKind::RejectedByServer);
    assert!(error.to_string().contains("client_cert_pem"), "{error}");

    // A certificate from a CA the nodes do not trust is refused too.
    let (stranger_chain, stranger_key) = TestCa::new("stranger").issue(&["app"]);
    let client = builder()
        .nodes([cluster.node_addrs()[0].to_string()])
        .tls(
            trusting(&ca)
                .server_name(node.hostname())
                .client_cert_pem(stranger_chain, stranger_key)
                .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let error = fails_within(REQUEST_TIMEOUT, client.get("k")).await;
    assert_tls(&error, TlsErrorKind::RejectedByServer);
}

/// The idle-socket check looks at the TCP socket under the TLS session: a non-idempotent
/// request queued while the server side of an idle connection went away is sent once, on a
/// fresh connection, instead of into the dead socket. (A runtime thread blocked while the node
/// restarts stands for a frozen Lambda.)
#[test]
fn an_idle_tls_socket_that_died_is_found_before_writing() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime().block_on(async {
        let ca = TestCa::new("test CA");
        let cluster = tls_cluster(1, &ca, NODE_NAMES).await;
        let client = discover(&cluster, Some(trusting(&ca))).await.unwrap();
        client.set("n", "1", MINUTE).await.unwrap(); // the connection is open and idle
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                runtime().block_on(async {
                    cluster.kill(0);
                    cluster.restart(0).await.unwrap();
                })
            })
            .join()
            .unwrap();
        });
        std::thread::sleep(Duration::from_millis(500).saturating_sub(started.elapsed()));
        // Written into the dead socket, the incr would fail (it is not idempotent, so it is not
        // resent); found closed first, it goes out once on the new connection, where the key no
        // longer exists.
        assert_eq!(client.incr("n", 1).await.unwrap(), None);
    });
}
