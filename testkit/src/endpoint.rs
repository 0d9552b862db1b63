//! The emulated configuration endpoint: a loopback TCP server that answers the discovery commands
//! of an ElastiCache cluster byte for byte, and can be told to misbehave.
//!
//! It runs on its own thread with its own single-threaded tokio runtime, so that it keeps
//! serving whatever the caller's runtime does, and so that [`ConfigEndpoint::set_behavior`] can
//! return only once a switch to or from [`EndpointBehavior::Refuse`] has taken effect.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use memcached_autodiscovery::ClusterConfig;

use crate::server_thread::{accept_while_open, lock, spawn_server, Listening, Switch};

use crate::reply::{encode_reply, ReplyKind};

/// The version the endpoint reports to `version`.
const SERVER_VERSION: &[u8] = b"VERSION 1.6.18\r\n";
/// The size [`EndpointBehavior::Oversized`] announces: 2 GiB.
const OVERSIZED_LEN: u64 = 1 << 31;
/// Longest request line accepted.
const MAX_LINE: usize = 8 << 10;
/// How long `set_behavior` waits for the listener to close or reopen.
const SWITCH_WAIT: Duration = Duration::from_secs(3);
/// Longest TLS handshake the endpoint waits for.
#[cfg(feature = "tls")]
const HANDSHAKE_WAIT: Duration = Duration::from_secs(3);

/// How the endpoint answers the discovery commands (`config get cluster` and
/// `get AmazonElastiCache:cluster`). `version` is answered in every mode but `Hang` and `Refuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EndpointBehavior {
    /// Serve the current configuration, as ElastiCache does.
    #[default]
    Normal,
    /// Answer `ERROR` to both discovery commands, as plain memcached does.
    Error,
    /// Send random bytes that are no valid reply, then close the connection.
    Garbage,
    /// Send the first half of the reply, then close the connection.
    Truncated,
    /// Accept connections and read requests, but never answer.
    Hang,
    /// Stop listening: connects are refused (the port is bound again when the behavior changes;
    /// open connections are closed at their next request).
    Refuse,
    /// Announce a 2 GiB block (`CONFIG cluster 0 2147483648`) and send nothing more.
    Oversized,
    /// Answer `END` alone: no configuration stored.
    Empty,
}

/// An emulated ElastiCache configuration endpoint on `127.0.0.1` and a port the OS chose.
///
/// Dropping it stops the server and closes its port and connections.
///
/// ```no_run
/// use memcached_autodiscovery::{ClusterConfig, Node};
/// use memcached_autodiscovery_testkit::ConfigEndpoint;
/// let endpoint = ConfigEndpoint::start(ClusterConfig::new(
///     1,
///     vec![Node::new("node-1.example", None, 11211)],
/// ))?;
/// println!("discover from {}", endpoint.addr());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ConfigEndpoint {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    config: Mutex<ClusterConfig>,
    legacy_only: AtomicBool,
    requests: AtomicU64,
    control: watch::Sender<Control>,
    /// Whether the listener is bound, with a condition variable signalled when that changes.
    listening: Mutex<bool>,
    listening_changed: Condvar,
    /// TLS for every connection, when started with `start_tls`.
    tls: Option<Acceptor>,
}

/// Accepts TLS connections (feature `tls`).
#[cfg(feature = "tls")]
#[derive(Clone)]
struct Acceptor(tokio_rustls::TlsAcceptor);

#[cfg(feature = "tls")]
impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

#[cfg(feature = "tls")]
impl Acceptor {
    /// Runs the handshake, then serves the connection. A client that is not TLS (or does not
    /// finish) is dropped; rustls first sends it an alert when it can.
    async fn serve(self, shared: Arc<Shared>, stream: TcpStream) {
        if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_WAIT, self.0.accept(stream)).await {
            connection(shared, stream).await;
        }
    }
}

/// Without the `tls` feature there is no acceptor.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
enum Acceptor {}

#[cfg(not(feature = "tls"))]
impl Acceptor {
    async fn serve(self, _shared: Arc<Shared>, _stream: TcpStream) {
        match self {}
    }
}

#[derive(Debug, Clone, Copy)]
struct Control {
    behavior: EndpointBehavior,
    shutdown: bool,
}

impl ConfigEndpoint {
    /// Binds `127.0.0.1:0` and starts serving `config`.
    pub fn start(config: ClusterConfig) -> io::Result<ConfigEndpoint> {
        ConfigEndpoint::launch(config, None)
    }

    /// Like [`start`](ConfigEndpoint::start), over TLS only (feature `tls`): the
    /// endpoint presents `chain_pem` (its certificate first) with `key_pem`, and with
    /// `client_ca_pem` requires a client certificate issued by one of those CAs. Plaintext
    /// clients are sent a TLS alert and dropped, as a TLS ElastiCache endpoint drops them.
    #[cfg(feature = "tls")]
    pub fn start_tls(
        config: ClusterConfig,
        chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> io::Result<ConfigEndpoint> {
        let server = super::tls::server_config(chain_pem, key_pem, client_ca_pem)?;
        let acceptor = Acceptor(tokio_rustls::TlsAcceptor::from(server));
        ConfigEndpoint::launch(config, Some(acceptor))
    }

    fn launch(config: ClusterConfig, tls: Option<Acceptor>) -> io::Result<ConfigEndpoint> {
        let listener = StdListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let (control, _) = watch::channel(Control {
            behavior: EndpointBehavior::Normal,
            shutdown: false,
        });
        let shared = Arc::new(Shared {
            addr: listener.local_addr()?,
            config: Mutex::new(config),
            legacy_only: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            control,
            listening: Mutex::new(true),
            listening_changed: Condvar::new(),
            tls,
        });
        let task_shared = Arc::clone(&shared);
        let thread = spawn_server("config-endpoint", listener, move |listener| {
            serve(task_shared, listener)
        })?;
        Ok(ConfigEndpoint {
            shared,
            thread: Some(thread),
        })
    }

    /// Where the endpoint listens.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The configuration served now.
    pub fn config(&self) -> ClusterConfig {
        lock(&self.shared.config).clone()
    }

    /// Replaces the configuration served from the next request on.
    pub fn set_config(&self, config: ClusterConfig) {
        *lock(&self.shared.config) = config;
    }

    /// Changes the configuration served in place, atomically with respect to requests.
    pub fn update_config<R>(&self, change: impl FnOnce(&mut ClusterConfig) -> R) -> R {
        change(&mut lock(&self.shared.config))
    }

    /// The current behavior.
    pub fn behavior(&self) -> EndpointBehavior {
        self.shared.control.borrow().behavior
    }

    /// Changes how the endpoint answers, from the next request on. Switching to
    /// [`EndpointBehavior::Refuse`] returns once the port is closed, and switching away from it
    /// once the same port is bound again (waiting at most a few seconds).
    pub fn set_behavior(&self, behavior: EndpointBehavior) {
        self.shared.control.send_modify(|c| c.behavior = behavior);
        let want = behavior != EndpointBehavior::Refuse;
        let listening = lock(&self.shared.listening);
        let (listening, wait) = self
            .shared
            .listening_changed
            .wait_timeout_while(listening, SWITCH_WAIT, |now| *now != want)
            .unwrap_or_else(|p| p.into_inner());
        if wait.timed_out() {
            tracing::warn!(
                listening = *listening,
                ?behavior,
                "config endpoint did not switch in time"
            );
        }
    }

    /// When `true`, `config get cluster` is answered `ERROR` (an engine older than 1.4.14) and
    /// only the legacy key `AmazonElastiCache:cluster` serves the configuration.
    pub fn set_legacy_only(&self, legacy_only: bool) {
        self.shared.legacy_only.store(legacy_only, Ordering::SeqCst);
    }

    /// How many discovery commands (`config get cluster` and the legacy get) the endpoint has
    /// received, whatever it did with them.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ConfigEndpoint {
    fn drop(&mut self) {
        self.shared.control.send_modify(|c| c.shutdown = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn set_listening(shared: &Shared, now: bool) {
    *lock(&shared.listening) = now;
    shared.listening_changed.notify_all();
}

/// The accept loop: one task per connection; drops the listener while refusing.
async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let addr = shared.addr;
    accept_while_open(
        addr,
        listener,
        shared.control.subscribe(),
        |now: &Control| Switch {
            shutdown: now.shutdown,
            open: now.behavior != EndpointBehavior::Refuse,
        },
        |listening| match listening {
            Listening::Started => set_listening(&shared, true),
            Listening::Stopped => set_listening(&shared, false),
            Listening::BindFailed(e) => tracing::warn!(
                %addr,
                error = %e,
                "config endpoint cannot bind its port again; retrying"
            ),
        },
        |stream, _| {
            let _ = stream.set_nodelay(true);
            match shared.tls.clone() {
                None => tokio::spawn(connection(Arc::clone(&shared), stream)),
                Some(tls) => tokio::spawn(tls.serve(Arc::clone(&shared), stream)),
            };
        },
    )
    .await;
}

/// What to do after a request.
enum Next {
    Continue,
    Close,
    /// Answer nothing more, but keep reading until the client leaves.
    Silence,
}

/// Serves one connection: request lines in, replies out, until the client closes.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(shared: Arc<Shared>, mut stream: S) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut silent = false;
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if silent {
                continue;
            }
            let (reply, next) = answer(&shared, request_text(&line));
            if !reply.is_empty()
                && (stream.write_all(&reply).await.is_err() || stream.flush().await.is_err())
            {
                return;
            }
            match next {
                Next::Continue => {}
                Next::Close => return,
                Next::Silence => silent = true,
            }
        }
        if buf.len() > MAX_LINE {
            if !silent {
                let _ = stream.write_all(b"CLIENT_ERROR line too long\r\n").await;
                let _ = stream.flush().await;
            }
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The request line without its line end (CRLF or LF) and trailing spaces.
fn request_text(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// The reply to one request line under the current behavior.
fn answer(shared: &Shared, request: &[u8]) -> (Vec<u8>, Next) {
    let behavior = shared.control.borrow().behavior;
    let kind = match request {
        b"config get cluster" => Some(ReplyKind::ConfigGet),
        b"get AmazonElastiCache:cluster" => Some(ReplyKind::LegacyGet),
        _ => None,
    };
    if kind.is_some() {
        shared.requests.fetch_add(1, Ordering::SeqCst);
    }
    match behavior {
        EndpointBehavior::Hang => return (Vec::new(), Next::Silence),
        EndpointBehavior::Refuse => return (Vec::new(), Next::Close),
        _ => {}
    }
    let Some(kind) = kind else {
        return match request {
            b"version" => (SERVER_VERSION.to_vec(), Next::Continue),
            b"quit" => (Vec::new(), Next::Close),
            _ => (b"ERROR\r\n".to_vec(), Next::Continue),
        };
    };
    if kind == ReplyKind::ConfigGet && shared.legacy_only.load(Ordering::SeqCst) {
        return (b"ERROR\r\n".to_vec(), Next::Continue);
    }
    match behavior {
        EndpointBehavior::Error => (b"ERROR\r\n".to_vec(), Next::Continue),
        EndpointBehavior::Empty => (b"END\r\n".to_vec(), Next::Continue),
        EndpointBehavior::Garbage => (garbage(), Next::Close),
        EndpointBehavior::Truncated => {
            let mut reply = encode_reply(&lock(&shared.config), kind);
            reply.truncate(reply.len() / 2);
            (reply, Next::Close)
        }
        EndpointBehavior::Oversized => {
            let reply = format!("{} 0 {OVERSIZED_LEN}\r\n", kind.header()).into_bytes();
            (reply, Next::Silence)
        }
        _ => (encode_reply(&lock(&shared.config), kind), Next::Continue),
    }
}

/// 64 to 127 pseudo-random bytes that start with a non-ASCII byte, so that they cannot be read
/// as any reply, and end with CRLF, so that a line reader sees a whole (bad) line.
fn garbage() -> Vec<u8> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = (nanos ^ SEQUENCE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let len = 64 + (next() % 64) as usize;
    let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    bytes[0] |= 0x80;
    bytes.extend_from_slice(b"\r\n");
    bytes
}
