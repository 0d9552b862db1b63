//! The test kit's nodes that answer `config get cluster` as ElastiCache nodes do
//! (`LocalClusterBuilder::nodes_answer_config`): a front before each real memcached, checked over
//! raw TCP and with the library's client.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::{encode_reply, LocalCluster, ReplyKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(5);
const MINUTE: Duration = Duration::from_secs(60);

async fn fronted(nodes: usize) -> LocalCluster {
    LocalCluster::builder()
        .nodes(nodes)
        .nodes_answer_config(true)
        .start()
        .await
        .expect("cluster with fronts starts")
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads exactly `len` bytes.
async fn read_len(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut got = vec![0u8; len];
    timeout(PATIENCE, stream.read_exact(&mut got))
        .await
        .expect("reply in time")
        .expect("whole reply");
    got
}

/// Sends `request` and checks that exactly `want` comes back (and nothing more soon after).
async fn exchange(stream: &mut TcpStream, request: &[u8], want: &[u8]) {
    stream.write_all(request).await.expect("write");
    let got = read_len(stream, want.len()).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "reply to {:?}",
        String::from_utf8_lossy(request)
    );
    let mut extra = [0u8; 64];
    if let Ok(read) = timeout(Duration::from_millis(50), stream.read(&mut extra)).await {
        let n = read.expect("read after the reply");
        assert_eq!(n, 0, "unexpected bytes: {:?}", &extra[..n]);
        panic!("the node closed the connection after {request:?}");
    }
}

fn config_reply(cluster: &LocalCluster) -> Vec<u8> {
    encode_reply(&cluster.config(), ReplyKind::ConfigGet)
}

#[tokio::test]
async fn nodes_answer_config_get_cluster_with_the_current_configuration() {
    let cluster = fronted(3).await;
    assert!(cluster.nodes_answer_config());
    for (i, addr) in cluster.node_addrs().into_iter().enumerate() {
        assert_ne!(addr, cluster.node_memcached_addr(i), "node {i} has a front");
        assert_eq!(Some(addr.ip()), cluster.nodes()[i].ip());
        assert_eq!(addr.port(), cluster.nodes()[i].port());
        let mut node = connect(addr).await;
        exchange(
            &mut node,
            b"config get cluster\r\n",
            &config_reply(&cluster),
        )
        .await;
    }

    cluster.set_version(9);
    let mut node = connect(cluster.node_addrs()[1]).await;
    let want = config_reply(&cluster);
    assert!(want.starts_with(b"CONFIG cluster 0 "));
    assert!(String::from_utf8_lossy(&want).contains("\r\n9\n"));
    exchange(&mut node, b"config get cluster\r\n", &want).await;
    exchange(&mut node, b"config get cluster \r\n", &want).await;

    let added = cluster.add_node().await.expect("add a node");
    assert_eq!(cluster.config().version(), 10);
    let want = config_reply(&cluster);
    assert!(String::from_utf8_lossy(&want).contains(added.hostname()));
    exchange(&mut node, b"config get cluster\r\n", &want).await;
    let mut new_node = connect(cluster.node_addrs()[3]).await;
    exchange(&mut new_node, b"config get cluster\r\n", &want).await;

    let replaced = cluster.replace_node(0).await.expect("replace node 0");
    assert_eq!(cluster.config().version(), 11);
    let mut moved = connect(cluster.node_addrs()[0]).await;
    assert_eq!(cluster.node_addrs()[0].ip(), replaced.ip().expect("an IP"));
    exchange(
        &mut moved,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;

    cluster.remove_node(2).await;
    exchange(
        &mut node,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;

    assert_eq!(cluster.node_config_requests(1), 5);
    assert_eq!(
        cluster.node_config_requests(0),
        1,
        "the replacement counts anew"
    );
    assert_eq!(cluster.endpoint_requests(), 0, "the endpoint was not asked");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let cluster = fronted(1).await;
    let mut node = connect(cluster.node_addrs()[0]).await;
    let config = config_reply(&cluster);

    // Values that look like the requests and replies the front looks for stay data.
    let mut want =
        b"STORED\r\nSTORED\r\nVALUE a 0 20\r\nconfig get cluster\r\n\r\nEND\r\n".to_vec();
    want.extend_from_slice(&config);
    want.extend_from_slice(b"VALUE b 0 4\r\nMN\r\n\r\nEND\r\n");
    exchange(
        &mut node,
        b"set a 0 0 20\r\nconfig get cluster\r\n\r\nset b 0 0 4\r\nMN\r\n\r\n\
          get a\r\nconfig get cluster\r\nget b\r\n",
        &want,
    )
    .await;

    // The client's own meta no-ops pass through, among substituted ones and meta replies.
    let mut want = b"HD\r\nMN\r\n".to_vec();
    want.extend_from_slice(&config);
    want.extend_from_slice(b"VA 2\r\nMN\r\nMN\r\n");
    want.extend_from_slice(&config);
    want.extend_from_slice(&config);
    want.extend_from_slice(b"EN\r\nMN\r\n");
    exchange(
        &mut node,
        b"ms m 2 T0\r\nMN\r\nmn\r\nconfig get cluster\r\nmg m v\r\nmn\r\n\
          config get cluster\r\nconfig get cluster\nmg absent v\r\nmn\r\n",
        &want,
    )
    .await;

    // The same, one byte per write: every boundary falls inside a read somewhere.
    let request = b"get a\r\nconfig get cluster\r\nmn\r\nget b\r\n";
    for byte in request {
        node.write_all(std::slice::from_ref(byte)).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut want = b"VALUE a 0 20\r\nconfig get cluster\r\n\r\nEND\r\n".to_vec();
    want.extend_from_slice(&config);
    want.extend_from_slice(b"MN\r\nVALUE b 0 4\r\nMN\r\n\r\nEND\r\n");
    assert_eq!(read_len(&mut node, want.len()).await, want);

    assert_eq!(cluster.node_config_requests(0), 5);
}

#[tokio::test]
async fn a_one_mebibyte_value_crosses_the_front_unchanged() {
    let cluster = LocalCluster::builder()
        .nodes(1)
        .nodes_answer_config(true)
        .max_item_size(Some("2m".into()))
        .start()
        .await
        .unwrap();
    // Pseudo-random bytes, with what the front looks for planted inside.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut value: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let planted = b"\r\nconfig get cluster\r\nMN\r\nmn\r\nEND\r\nVALUE x 0 9\r\n";
    for at in [0, 4095, 16 << 10, 500_000, (1 << 20) - planted.len()] {
        value[at..at + planted.len()].copy_from_slice(planted);
    }

    let mut node = connect(cluster.node_addrs()[0]).await;
    let mut request = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\nconfig get cluster\r\nget big\r\n");
    let mut want = b"STORED\r\n".to_vec();
    want.extend_from_slice(&config_reply(&cluster));
    want.extend_from_slice(format!("VALUE big 0 {}\r\n", value.len()).as_bytes());
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\nEND\r\n");
    let (mut read, mut write) = node.split();
    let send = async {
        write.write_all(&request).await.expect("send the value");
    };
    let mut got = vec![0u8; want.len()];
    let receive = async {
        timeout(PATIENCE, read.read_exact(&mut got))
            .await
            .expect("reply in time")
            .expect("whole reply");
    };
    tokio::join!(send, receive);
    assert!(got == want, "the value came back changed");
    assert_eq!(cluster.node_config_requests(0), 1);

    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .max_value_size(2 << 20)
        .request_timeout(PATIENCE)
        .build()
        .await
        .expect("client builds");
    client.set("big2", value.clone(), MINUTE).await.unwrap();
    let back = client.get("big2").await.unwrap().expect("big2 is stored");
    assert!(
        back[..] == value[..],
        "the client's value came back changed"
    );
    let back = client.get("big").await.unwrap().expect("big is stored");
    assert!(
        back[..] == value[..],
        "the raw value read by the client is changed"
    );
}

#[tokio::test]
async fn a_killed_node_refuses_connections_until_restarted_on_the_same_port() {
    let cluster = fronted(2).await;
    let addr = cluster.node_addrs()[0];
    let mut open = connect(addr).await;
    exchange(&mut open, b"set k 0 0 1\r\nv\r\n", b"STORED\r\n").await;

    cluster.kill(0);
    assert_eq!(cluster.pid(0), None);
    let mut rest = [0u8; 16];
    let end = timeout(PATIENCE, open.read(&mut rest))
        .await
        .expect("the open connection ends at once");
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "open connection got {end:?} instead of its end"
    );
    let refused = TcpStream::connect(addr).await;
    assert_eq!(
        refused.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::ConnectionRefused),
        "connect to a killed node: {refused:?}"
    );
    // The other node is untouched.
    let mut other = connect(cluster.node_addrs()[1]).await;
    exchange(
        &mut other,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;

    cluster.restart(0).await.expect("restart node 0");
    assert!(cluster.pid(0).is_some());
    assert_eq!(cluster.node_addrs()[0], addr, "same address after restart");
    let mut again = connect(addr).await;
    exchange(&mut again, b"get k\r\n", b"END\r\n").await; // empty after restart
    exchange(
        &mut again,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;
    exchange(&mut again, b"set k 0 0 1\r\nw\r\n", b"STORED\r\n").await;

    // Twice in a row works too.
    cluster.kill(0);
    assert!(TcpStream::connect(addr).await.is_err());
    cluster.restart(0).await.expect("restart node 0 again");
    let mut third = connect(addr).await;
    exchange(&mut third, b"version\r\n", b"VERSION 1.6.18\r\n").await;
}

#[tokio::test]
async fn a_frozen_node_leaves_config_get_cluster_unanswered_until_thawed() {
    let cluster = fronted(1).await;
    let mut node = connect(cluster.node_addrs()[0]).await;
    cluster.freeze(0);
    node.write_all(b"config get cluster\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(300), node.read(&mut byte))
            .await
            .is_err(),
        "a frozen node answered"
    );
    cluster.thaw(0);
    let want = config_reply(&cluster);
    let got = read_len(&mut node, want.len()).await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_node_set_to_answer_error_does_so_as_plain_memcached() {
    let cluster = fronted(2).await;
    let mut node = connect(cluster.node_addrs()[1]).await;
    cluster.set_node_answers_config(1, false);
    exchange(&mut node, b"config get cluster\r\n", b"ERROR\r\n").await;
    exchange(
        &mut node,
        b"get x\r\nconfig get cluster\r\nmn\r\n",
        b"END\r\nERROR\r\nMN\r\n",
    )
    .await;
    let mut other = connect(cluster.node_addrs()[0]).await;
    exchange(
        &mut other,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;
    cluster.set_node_answers_config(1, true);
    exchange(
        &mut node,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;
    assert_eq!(
        cluster.node_config_requests(1),
        3,
        "ERROR answers are counted"
    );
    assert_eq!(cluster.node_config_requests(0), 1);

    // Without fronts the nodes are plain memcached.
    let plain = LocalCluster::start(1).await.unwrap();
    assert!(!plain.nodes_answer_config());
    assert_eq!(plain.node_addrs()[0], plain.node_memcached_addr(0));
    let mut node = connect(plain.node_addrs()[0]).await;
    exchange(&mut node, b"config get cluster\r\n", b"ERROR\r\n").await;
    plain.set_node_answers_config(0, true);
    exchange(&mut node, b"config get cluster\r\n", b"ERROR\r\n").await;
    assert_eq!(plain.node_config_requests(0), 0);
}

#[tokio::test]
async fn a_legacy_only_cluster_has_nodes_that_answer_error() {
    let cluster = LocalCluster::builder()
        .nodes(1)
        .legacy_only(true)
        .nodes_answer_config(true)
        .start()
        .await
        .unwrap();
    let mut node = connect(cluster.node_addrs()[0]).await;
    exchange(&mut node, b"config get cluster\r\n", b"ERROR\r\n").await;
    cluster.set_node_answers_config(0, true);
    exchange(
        &mut node,
        b"config get cluster\r\n",
        &config_reply(&cluster),
    )
    .await;
}

#[tokio::test]
async fn the_client_reads_and_writes_through_the_fronts() {
    let cluster = fronted(3).await;
    let client = support::client_for(&cluster, MINUTE).await;
    for i in 0..200 {
        client
            .set(format!("key-{i}"), format!("value-{i}"), MINUTE)
            .await
            .unwrap();
    }
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let found = client.get_many(&keys).await.unwrap();
    assert_eq!(found.len(), 200);
    for i in 0..200 {
        let key = format!("key-{i}");
        assert_eq!(found[key.as_bytes()], format!("value-{i}").as_bytes());
    }
    // Every node holds some of the keys: the data path is real memcached behind each front.
    for addr in (0..3).map(|i| cluster.node_memcached_addr(i)) {
        assert!(
            support::stat(addr, "curr_items").await > 0,
            "{addr} holds no key"
        );
    }
}
