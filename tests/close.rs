//! `Client::close`: it waits for every connection of the client (nodes and discovery) to end,
//! answers the requests already sent, and from then on every call of every clone fails with
//! `Error::Closed`. The sockets are counted by a dialer that wraps each TCP stream.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use memcached_autodiscovery::transport::{Dial, DialFuture, Io, Target};
use memcached_autodiscovery::{Client, Error};
use memcached_autodiscovery_testkit::LocalCluster;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const MINUTE: Duration = Duration::from_secs(60);

/// Opens TCP streams and counts those still open.
struct Counting(Arc<AtomicUsize>);

/// A TCP stream that counts itself out when dropped.
struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Dial for Counting {
    fn dial<'a>(&'a self, target: &'a Target) -> DialFuture<'a> {
        Box::pin(async move {
            let stream = match target.addr {
                Some(addr) => TcpStream::connect(addr).await?,
                None => TcpStream::connect((target.host.as_str(), target.port)).await?,
            };
            self.0.fetch_add(1, Ordering::SeqCst);
            let open = self.0.clone();
            Ok(Box::new(Counted { stream, open }) as Box<dyn Io>)
        })
    }
}

async fn counted_client(cluster: &LocalCluster, open: &Arc<AtomicUsize>) -> Client {
    Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .dialer(Counting(open.clone()))
        .poll_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("a client of the local cluster")
}

/// The mutations this catches: `close` not waiting for the tasks (sockets still open when it
/// returns), the old snapshot kept (close never returns: the timeout fails), a call or a
/// refresh after close reaching a node or the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_every_connection_then_every_clone_is_closed() {
    let cluster = LocalCluster::start(3).await.unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let client = counted_client(&cluster, &open).await;
    for i in 0..30 {
        client.set(format!("k{i}"), "v", MINUTE).await.unwrap();
    }
    // A poll every 50 ms: one may be under way when the client closes.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        open.load(Ordering::SeqCst) >= 3,
        "a socket per node at least"
    );

    // Calls racing the close: each is answered or refused as closed, never broken.
    let racing: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("k{}", i % 30)).await })
        })
        .collect();
    let closing = client.clone();
    tokio::time::timeout(Duration::from_secs(10), closing.close())
        .await
        .expect("close returns once the connections have ended");
    assert_eq!(open.load(Ordering::SeqCst), 0, "no socket open after close");
    for call in racing {
        match call.await.unwrap() {
            Ok(value) => assert_eq!(value.as_deref(), Some(&b"v"[..])),
            Err(Error::Closed) => {}
            Err(other) => panic!("a call racing close: {other}"),
        }
    }

    // Every clone is closed; nothing reaches a node or the endpoint.
    assert!(matches!(client.get("k1").await, Err(Error::Closed)));
    assert!(matches!(
        client.set("k1", "w", MINUTE).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        client.get_many(["k1", "k2"]).await,
        Err(Error::Closed)
    ));
    assert!(matches!(client.flush_all().await, Err(Error::Closed)));
    assert!(matches!(client.node_for("k1"), Err(Error::Closed)));
    assert!(matches!(client.refresh().await, Err(Error::Closed)));
    tokio::time::sleep(Duration::from_millis(150)).await; // the poller's turn has passed
    assert_eq!(open.load(Ordering::SeqCst), 0, "no poll opened a socket");
    tokio::time::timeout(Duration::from_millis(500), client.close())
        .await
        .expect("closing again returns at once");
}

/// A request already sent when the client closes is answered (not cut off): here it waits on a
/// frozen node, and `close` returns only after the node is thawed and has answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_answers_the_requests_already_sent() {
    let cluster = LocalCluster::start(1).await.unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let client = counted_client(&cluster, &open).await;
    client.set("held", "value", MINUTE).await.unwrap();

    cluster.freeze(0);
    let reader = client.clone();
    let held = tokio::spawn(async move { reader.get("held").await });
    tokio::time::sleep(Duration::from_millis(100)).await; // sent, waiting for the frozen node
    let closing = client.clone();
    let close = tokio::spawn(async move { closing.close().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !close.is_finished(),
        "close waits for the request in flight"
    );
    cluster.thaw(0);

    let value = held.await.unwrap().expect("answered after the thaw");
    assert_eq!(value.as_deref(), Some(&b"value"[..]));
    tokio::time::timeout(Duration::from_secs(5), close)
        .await
        .expect("close returns once the answer is in")
        .unwrap();
    assert_eq!(open.load(Ordering::SeqCst), 0);
}
