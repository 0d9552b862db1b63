//! Every call (one key or many) ends by its deadline (the request timeout), also where the connection's socket task
//! is the only one watching it: while the connection is still being opened, and for a request
//! whose deadline passed before the task could take it (which must then never be written).
//!
//! The node is a stream the test holds ([`ClientBuilder::dialer`]), opened when the test says
//! so; no memcached is needed to show what the client writes and when it gives up.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memcached_autodiscovery::transport::{Dial, DialFuture, Io, Target};
use memcached_autodiscovery::{Client, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

/// A dialer whose connects complete only when the test releases them, each with a fresh
/// in-memory stream whose other end goes to the test.
struct HeldDialer {
    release: Mutex<Option<oneshot::Receiver<()>>>,
    ends: mpsc::UnboundedSender<DuplexStream>,
}

impl Dial for HeldDialer {
    fn dial<'a>(&'a self, _target: &'a Target) -> DialFuture<'a> {
        let release = self.release.lock().unwrap().take();
        Box::pin(async move {
            if let Some(release) = release {
                // Never released: a connect that hangs (until the connect timeout).
                let _ = release.await;
            }
            let (client_end, server_end) = tokio::io::duplex(1 << 16);
            let _ = self.ends.send(server_end);
            Ok(Box::new(client_end) as Box<dyn Io>)
        })
    }
}

async fn client(
    connect_timeout: Duration,
) -> (
    Client,
    oneshot::Sender<()>,
    mpsc::UnboundedReceiver<DuplexStream>,
) {
    let (release_tx, release_rx) = oneshot::channel();
    let (ends_tx, ends_rx) = mpsc::unbounded_channel();
    let client = Client::builder()
        .nodes(["node-a.test:11211"])
        .dialer(HeldDialer {
            release: Mutex::new(Some(release_rx)),
            ends: ends_tx,
        })
        .request_timeout(REQUEST_TIMEOUT)
        .connect_timeout(connect_timeout)
        .build()
        .await
        .expect("a client with a static node list");
    (client, release_tx, ends_rx)
}

fn assert_timed_out(result: Result<Option<bytes::Bytes>, Error>, started: Instant) {
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout { .. })),
        "a timeout, got {result:?}"
    );
    assert!(
        waited >= REQUEST_TIMEOUT - Duration::from_millis(5),
        "not before the request timeout: {waited:?}"
    );
    assert!(
        waited < REQUEST_TIMEOUT * 4,
        "at the request timeout, not at the connect timeout: {waited:?}"
    );
}

#[tokio::test]
async fn a_call_ends_at_its_deadline_while_the_connection_is_being_opened() {
    let (client, _hold, _ends) = client(Duration::from_secs(10)).await;
    let started = Instant::now();
    let (first, second) = tokio::join!(client.get("k1"), async {
        // Queued while the task is already connecting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (Instant::now(), client.get("k2").await)
    });
    assert_timed_out(first, started);
    assert_timed_out(second.1, second.0);
}

#[tokio::test]
async fn a_request_whose_deadline_passed_while_queued_is_never_written() {
    let (client, release, mut ends) = client(Duration::from_secs(10)).await;
    let client = Arc::new(client);
    let started = Instant::now();
    assert_timed_out(client.get("expired-key").await, started);

    // The connect completes after the deadline; a new request then goes out alone.
    release.send(()).unwrap();
    let caller = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.get("fresh-key").await })
    };
    let mut server = tokio::time::timeout(Duration::from_secs(5), ends.recv())
        .await
        .expect("the connect completed")
        .expect("a stream");
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut byte))
            .await
            .expect("the client writes its request")
            .unwrap();
        assert!(n == 1, "the stream stays open");
        line.push(byte[0]);
    }
    assert_eq!(
        line, b"get fresh-key\r\n",
        "the first bytes written are the live request's: the expired one was dropped unsent"
    );
    server
        .write_all(b"VALUE fresh-key 0 2\r\nok\r\nEND\r\n")
        .await
        .unwrap();
    let value = caller.await.unwrap().expect("the live request is answered");
    assert_eq!(value.as_deref(), Some(&b"ok"[..]));
}

#[tokio::test]
async fn a_multi_get_ends_at_its_deadline_while_the_connection_is_being_opened() {
    let (client, _hold, _ends) = client(Duration::from_secs(10)).await;
    let started = Instant::now();
    let result = client.get_many(["k1", "k2", "k3"]).await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout { .. })),
        "a timeout, got {result:?}"
    );
    assert!(
        waited >= REQUEST_TIMEOUT - Duration::from_millis(5) && waited < REQUEST_TIMEOUT * 4,
        "at the request timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_callers_waiting_for_a_connect_all_end_at_their_deadline() {
    let (client, _hold, _ends) = client(Duration::from_secs(10)).await;
    let client = Arc::new(client);
    let started = Instant::now();
    let callers: Vec<_> = (0..2_000)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let began = Instant::now();
                (began, client.get(format!("key-{i}")).await)
            })
        })
        .collect();
    for caller in callers {
        let (began, result) = caller.await.unwrap();
        assert_timed_out(result, began);
    }
    assert!(
        started.elapsed() < REQUEST_TIMEOUT * 4,
        "all within about one request timeout: {:?}",
        started.elapsed()
    );
}
