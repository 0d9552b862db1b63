//! Tests of the test kit itself, against real memcached processes.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use memcached_autodiscovery::ProtocolError;
use memcached_autodiscovery::{ClusterConfig, Node};
use memcached_autodiscovery_proto::protocol::{decode, Expect, Limits, Response};
use memcached_autodiscovery_testkit::{encode_reply, EndpointBehavior, LocalCluster, ReplyKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

const PATIENCE: Duration = Duration::from_secs(5);

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Reads one reply of kind `expect` from `stream`, keeping what follows it in `buf`.
async fn read_reply(stream: &mut TcpStream, buf: &mut BytesMut, expect: Expect) -> Response {
    let limits = Limits::with_max_value_size(4 << 20);
    let read = async {
        loop {
            if let Some((reply, _)) = decode(buf, expect, &limits).expect("a valid reply") {
                return reply;
            }
            let n = stream.read_buf(buf).await.expect("read");
            assert_ne!(n, 0, "closed before a whole reply; got {buf:?}");
        }
    };
    timeout(PATIENCE, read).await.expect("no reply in time")
}

/// Sends `request` on a new connection and returns the reply.
async fn exchange(addr: SocketAddr, request: &[u8], expect: Expect) -> Response {
    let mut stream = connect(addr).await;
    stream.write_all(request).await.unwrap();
    read_reply(&mut stream, &mut BytesMut::new(), expect).await
}

/// Sends `request` and reads everything until the server closes.
async fn until_closed(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr).await;
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the endpoint did not close")
        .expect("read");
    out
}

async fn set_get(addr: SocketAddr, key: &str, value: &str) {
    let set = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
    assert_eq!(
        exchange(addr, set.as_bytes(), Expect::Store).await,
        Response::Stored
    );
    let got = exchange(
        addr,
        format!("get {key}\r\n").as_bytes(),
        Expect::Values { max: 1 },
    )
    .await;
    assert!(matches!(&got, Response::Values(items) if items.len() == 1 && items[0].value == value));
}

async fn assert_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            other => assert!(Instant::now() < deadline, "{addr} still accepts: {other:?}"),
        }
        sleep(Duration::from_millis(20)).await;
    }
}

fn config_of(reply: Response) -> ClusterConfig {
    match reply {
        Response::Config(Some(block)) => ClusterConfig::parse(&block).expect("a valid block"),
        other => panic!("not a config: {other:?}"),
    }
}

#[tokio::test]
async fn nodes_store_and_the_config_lists_them_by_ip() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let addrs = cluster.node_addrs();
    let config = cluster.config();
    assert_eq!(config.version(), 1);
    assert_eq!(config.nodes().len(), 3);
    for (i, (node, addr)) in config.nodes().iter().zip(&addrs).enumerate() {
        assert_eq!(node.ip(), Some(addr.ip()));
        assert_eq!(node.port(), addr.port());
        assert_eq!(
            node.hostname(),
            format!("node-{}.local-cluster.test", i + 1)
        );
        assert!(addr.ip().is_loopback() && addr.ip().to_string() != "127.0.0.1");
        set_get(*addr, &format!("key-{i}"), "hello").await;
    }
    let ips: std::collections::HashSet<_> = addrs.iter().map(SocketAddr::ip).collect();
    assert_eq!(ips.len(), 3, "distinct IPs: {addrs:?}");
}

#[tokio::test]
async fn endpoint_speaks_the_elasticache_wire_format() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let mut stream = connect(cluster.config_endpoint()).await;
    stream
        .write_all(b"config get cluster\r\nconfig get cluster \r\nconfig get cluster\nversion\r\nget AmazonElastiCache:cluster\r\nstats\r\n")
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    for _ in 0..3 {
        let reply = read_reply(&mut stream, &mut buf, Expect::Config).await;
        assert_eq!(config_of(reply), cluster.config());
    }
    let version = read_reply(&mut stream, &mut buf, Expect::Version).await;
    assert_eq!(version, Response::Version("1.6.18".into()));
    match read_reply(&mut stream, &mut buf, Expect::Values { max: 1 }).await {
        Response::Values(items) => {
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].key, "AmazonElastiCache:cluster");
            assert_eq!(
                ClusterConfig::parse(&items[0].value).unwrap(),
                cluster.config()
            );
        }
        other => panic!("{other:?}"),
    }
    let unknown = read_reply(&mut stream, &mut buf, Expect::Stats).await;
    assert!(matches!(unknown, Response::Error(_)), "{unknown:?}");
    assert_eq!(cluster.endpoint_requests(), 4);

    // Byte for byte what ElastiCache sends.
    let mut exact = connect(cluster.config_endpoint()).await;
    exact.write_all(b"config get cluster\r\n").await.unwrap();
    let want = encode_reply(&cluster.config(), ReplyKind::ConfigGet);
    let mut got = vec![0; want.len()];
    timeout(PATIENCE, exact.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);
}

#[tokio::test]
async fn add_and_remove_bump_the_version() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let added = cluster.add_node().await.unwrap();
    let config = cluster.config();
    assert_eq!(config.version(), 2);
    assert_eq!(config.nodes().len(), 3);
    assert_eq!(config.nodes()[2], added);
    assert_eq!(added.hostname(), "node-3.local-cluster.test");
    set_get(cluster.node_addrs()[2], "new", "node").await;
    let served = exchange(
        cluster.config_endpoint(),
        b"config get cluster\r\n",
        Expect::Config,
    );
    assert_eq!(config_of(served.await), config);

    let gone_addr = cluster.node_addrs()[0];
    let removed = cluster.remove_node(0).await;
    let config = cluster.config();
    assert_eq!(config.version(), 3);
    assert_eq!(config.nodes().len(), 2);
    assert!(!config.nodes().contains(&removed));
    assert_eq!(cluster.len(), 2);
    assert_refused(gone_addr).await;
}

#[tokio::test]
async fn replace_moves_the_ip_and_keeps_hostname_and_port() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let before = cluster.config();
    let old_addr = cluster.node_addrs()[0];
    let replaced = cluster.replace_node(0).await.unwrap();
    assert_eq!(replaced.hostname(), before.nodes()[0].hostname());
    assert_eq!(replaced.port(), before.nodes()[0].port());
    assert_ne!(replaced.ip(), before.nodes()[0].ip());
    let after = cluster.config();
    assert_eq!(after.version(), 2);
    assert_eq!(after.nodes()[0], replaced);
    assert_eq!(after.nodes()[1], before.nodes()[1]);
    let new_addr = cluster.node_addrs()[0];
    assert_eq!(
        new_addr,
        SocketAddr::new(replaced.ip().unwrap(), replaced.port())
    );
    set_get(new_addr, "k", "v").await;
    assert_refused(old_addr).await;

    let quiet = cluster.replace_node_with(1, false).await.unwrap();
    assert_eq!(cluster.config().version(), 2);
    assert_ne!(quiet.ip(), before.nodes()[1].ip());
    assert_eq!(cluster.config().nodes()[1], quiet);
}

#[tokio::test]
async fn kill_then_restart_serves_again_on_the_same_address() {
    let cluster = LocalCluster::start(2).await.unwrap();
    let addr = cluster.node_addrs()[0];
    set_get(addr, "k", "before").await;
    let pid = cluster.pid(0).unwrap();
    cluster.kill(0);
    assert_eq!(cluster.pid(0), None);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_refused(addr).await;
    assert_eq!(
        cluster.config().nodes().len(),
        2,
        "a killed node stays listed"
    );
    assert_eq!(cluster.config().version(), 1);

    cluster.restart(0).await.unwrap();
    assert_eq!(cluster.node_addrs()[0], addr);
    let miss = exchange(addr, b"get k\r\n", Expect::Values { max: 1 }).await;
    assert_eq!(
        miss,
        Response::Values(Vec::new()),
        "a restarted node is empty"
    );
    set_get(addr, "k", "after").await;
}

#[tokio::test]
async fn a_frozen_node_answers_nothing_until_thawed() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let mut stream = connect(cluster.node_addrs()[0]).await;
    cluster.freeze(0);
    stream.write_all(b"version\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
    assert!(early.is_err(), "a frozen node answered: {early:?}");
    cluster.thaw(0);
    let mut buf = BytesMut::new();
    let reply = read_reply(&mut stream, &mut buf, Expect::Version).await;
    assert!(matches!(reply, Response::Version(_)), "{reply:?}");
}

#[tokio::test]
async fn endpoint_behaviors_do_what_they_say() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let endpoint = cluster.config_endpoint();
    let config_get = &b"config get cluster\r\n"[..];
    let legacy_get = &b"get AmazonElastiCache:cluster\r\n"[..];

    cluster.set_endpoint_behavior(EndpointBehavior::Error);
    for (request, expect) in [
        (config_get, Expect::Config),
        (legacy_get, Expect::Values { max: 1 }),
    ] {
        let mut stream = connect(endpoint).await;
        stream.write_all(request).await.unwrap();
        let mut line = [0u8; 7];
        timeout(PATIENCE, stream.read_exact(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&line, b"ERROR\r\n");
        let mut buf = BytesMut::from(&line[..]);
        let decoded = decode(&mut buf, expect, &Limits::default());
        assert!(matches!(decoded, Ok(Some((Response::Error(_), 7)))));
    }

    cluster.set_endpoint_behavior(EndpointBehavior::Empty);
    let empty = exchange(endpoint, config_get, Expect::Config).await;
    assert_eq!(empty, Response::Config(None));
    let empty = exchange(endpoint, legacy_get, Expect::Values { max: 1 }).await;
    assert_eq!(empty, Response::Values(Vec::new()));

    cluster.set_endpoint_behavior(EndpointBehavior::Oversized);
    let mut stream = connect(endpoint).await;
    stream.write_all(config_get).await.unwrap();
    let header = b"CONFIG cluster 0 2147483648\r\n";
    let mut got = vec![0u8; header.len()];
    timeout(PATIENCE, stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, header);
    let refused = decode(
        &mut BytesMut::from(&got[..]),
        Expect::Config,
        &Limits::default(),
    );
    assert!(matches!(
        refused,
        Err(ProtocolError::ReplyTooLarge {
            len: 2147483648,
            ..
        })
    ));
    let more = timeout(Duration::from_millis(200), stream.read(&mut got)).await;
    assert!(more.is_err(), "nothing follows the header: {more:?}");

    cluster.set_endpoint_behavior(EndpointBehavior::Garbage);
    let garbage = until_closed(endpoint, config_get).await;
    assert!(garbage.len() >= 64 && garbage[0] >= 0x80, "{garbage:?}");
    assert!(decode(
        &mut BytesMut::from(&garbage[..]),
        Expect::Config,
        &Limits::default()
    )
    .is_err());

    cluster.set_endpoint_behavior(EndpointBehavior::Truncated);
    let half = until_closed(endpoint, config_get).await;
    let full = encode_reply(&cluster.config(), ReplyKind::ConfigGet);
    assert_eq!(half, full[..full.len() / 2]);

    cluster.set_endpoint_behavior(EndpointBehavior::Hang);
    let mut stream = connect(endpoint).await;
    stream.write_all(config_get).await.unwrap();
    let hung = timeout(Duration::from_millis(300), stream.read(&mut got)).await;
    assert!(hung.is_err(), "a hanging endpoint answered: {hung:?}");

    // A connection the endpoint has accepted before it starts refusing.
    cluster.set_endpoint_behavior(EndpointBehavior::Normal);
    let mut open = connect(endpoint).await;
    open.write_all(b"version\r\n").await.unwrap();
    let version = read_reply(&mut open, &mut BytesMut::new(), Expect::Version).await;
    assert!(matches!(version, Response::Version(_)), "{version:?}");
    cluster.set_endpoint_behavior(EndpointBehavior::Refuse);
    let refused = TcpStream::connect(endpoint).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    open.write_all(config_get).await.unwrap();
    let mut rest = Vec::new();
    timeout(PATIENCE, open.read_to_end(&mut rest))
        .await
        .unwrap()
        .ok();
    assert!(rest.is_empty(), "a refusing endpoint answered {rest:?}");

    cluster.set_endpoint_behavior(EndpointBehavior::Normal);
    assert_eq!(cluster.config_endpoint(), endpoint);
    let back = exchange(endpoint, config_get, Expect::Config).await;
    assert_eq!(config_of(back), cluster.config());
    // Error x2, Empty x2, Oversized, Garbage, Truncated, Hang, Refuse (received, then closed), Normal.
    assert_eq!(cluster.endpoint_requests(), 10);
}

#[tokio::test]
async fn builder_options_reach_memcached_and_the_endpoint() {
    let cluster = LocalCluster::builder()
        .nodes(2)
        .distinct_ips(false)
        .threads(2)
        .memory_mb(32)
        .max_item_size(Some("2m".into()))
        .legacy_only(true)
        .start()
        .await
        .unwrap();
    let addrs = cluster.node_addrs();
    assert!(addrs.iter().all(|a| a.ip().to_string() == "127.0.0.1"));
    assert_ne!(addrs[0].port(), addrs[1].port());
    match exchange(addrs[0], b"stats settings\r\n", Expect::Stats).await {
        Response::Stats(pairs) => {
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(get("num_threads").as_deref(), Some("2"));
            assert_eq!(get("maxbytes").as_deref(), Some("33554432"));
            assert_eq!(get("item_size_max").as_deref(), Some("2097152"));
        }
        other => panic!("{other:?}"),
    }
    set_get(addrs[1], "big", &"x".repeat(1_500_000)).await;

    let endpoint = cluster.config_endpoint();
    let refused = exchange(endpoint, b"config get cluster\r\n", Expect::Config).await;
    assert!(matches!(refused, Response::Error(_)), "{refused:?}");
    match exchange(
        endpoint,
        b"get AmazonElastiCache:cluster\r\n",
        Expect::Values { max: 1 },
    )
    .await
    {
        Response::Values(items) => {
            assert_eq!(
                ClusterConfig::parse(&items[0].value).unwrap(),
                cluster.config()
            )
        }
        other => panic!("{other:?}"),
    }

    let replaced = cluster.replace_node(0).await.unwrap();
    assert_ne!(replaced.ip().unwrap().to_string(), "127.0.0.1");
    set_get(cluster.node_addrs()[0], "k", "v").await;
}

#[tokio::test]
async fn version_and_node_list_can_be_set_directly() {
    let cluster = LocalCluster::start(2).await.unwrap();
    cluster.add_node().await.unwrap();
    cluster.set_version(1);
    assert_eq!(cluster.config().version(), 1);
    assert_eq!(cluster.config().nodes().len(), 3);
    let fewer: Vec<Node> = cluster.config().nodes()[..2].to_vec();
    cluster.set_nodes_same_version(fewer.clone());
    let served = exchange(
        cluster.config_endpoint(),
        b"config get cluster\r\n",
        Expect::Config,
    );
    assert_eq!(config_of(served.await), ClusterConfig::new(1, fewer));
    assert_eq!(cluster.len(), 3, "the processes are untouched");
    cluster.add_node().await.unwrap();
    assert_eq!(cluster.config().version(), 2);
    assert_eq!(cluster.config().nodes().len(), 4);
}

#[tokio::test]
async fn dropping_the_cluster_stops_every_process_and_the_endpoint() {
    let cluster = LocalCluster::start(2).await.unwrap();
    cluster.freeze(1);
    let pids: Vec<u32> = (0..2).map(|i| cluster.pid(i).unwrap()).collect();
    let endpoint = cluster.config_endpoint();
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    drop(cluster);
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "memcached {pid} outlived its cluster"
        );
    }
    let refused = TcpStream::connect(endpoint).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_missing_binary_says_how_to_install_it() {
    let err = LocalCluster::builder()
        .nodes(1)
        .memcached_binary("/nonexistent/memcached")
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("apt-get install memcached"),
        "{err}"
    );
}
