//! [`NodeFront`]: a small TCP front before a real memcached process that answers
//! `config get cluster` as an ElastiCache node does, and relays every other byte unchanged.
//!
//! The front runs on its own thread with its own single-threaded tokio runtime, as
//! [`ConfigEndpoint`](crate::ConfigEndpoint) does, so that it serves whatever the caller's
//! runtime does and [`NodeFront::close`] can return once the port is really closed.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use memcached_autodiscovery::ClusterConfig;

use crate::server_thread::{accept_while_open, lock, spawn_server, Listening, Switch};

use crate::reply::{encode_reply, ReplyKind};

/// Longest line looked at; longer ones are relayed as they come.
const MAX_LINE: usize = 64 << 10;
/// Read buffer of each direction of each connection.
const CHUNK: usize = 16 << 10;
/// How long [`NodeFront::close`] and [`NodeFront::reopen`] wait for the front's thread.
const SWITCH_WAIT: Duration = Duration::from_secs(3);
/// How long a new connection waits for its upstream connection to memcached.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);
/// What the front answers to `config get cluster` when it has no configuration to give.
const ERROR_REPLY: &[u8] = b"ERROR\r\n";

/// Where a [`NodeFront`] reads the configuration it serves: `None` makes it answer `ERROR`.
type ConfigSource = dyn Fn() -> Option<ClusterConfig> + Send + Sync;

/// A TCP front on a node's address, before a real memcached process: it answers
/// `config get cluster` with the cluster's configuration as an ElastiCache node does, and relays
/// everything else both ways byte for byte.
///
/// Stock memcached answers `ERROR` to `config get cluster`; every ElastiCache memcached node
/// answers it with the cluster's configuration. The front listens where clients know the node
/// and opens one upstream connection to memcached per client connection. It reads both streams
/// at message boundaries, without buffering values:
///
/// * client to memcached: request lines, skipping the data block of the storage commands
///   (`set`, `add`, `replace`, `append`, `prepend`, `cas`: `<bytes>` is the fifth word) and of
///   the meta `ms` (`<datalen>` is the third word). A whole line `config get cluster` (CRLF or LF,
///   trailing spaces allowed) is replaced by the meta no-op `mn`;
/// * memcached to client: reply lines, skipping the data of `VALUE <key> <flags> <bytes> ...` and
///   `VA <size> ...`. Meta no-ops are answered in request order, so a queue tells which `MN` is
///   the answer to a replaced request: that one is replaced by the configuration reply
///   ([`encode_reply`] with [`ReplyKind::ConfigGet`]), the client's own `MN` pass unchanged.
///
/// So pipelined requests keep their order (`get a`, `config get cluster`, `get b` in one write
/// are answered in that order), and a frozen memcached leaves `config get cluster` unanswered
/// too, as a frozen node would. A connection whose first byte is `0x80` (the binary protocol)
/// is relayed untouched. Lines longer than 64 KiB are relayed without being looked at.
///
/// [`LocalCluster`](crate::LocalCluster) puts one before every node when built with
/// [`nodes_answer_config(true)`](crate::LocalClusterBuilder::nodes_answer_config).
///
/// Dropping it stops the front and closes its port and every connection.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use memcached_autodiscovery::{ClusterConfig, Node};
/// use memcached_autodiscovery_testkit::{MemcachedOptions, MemcachedProcess, NodeFront};
/// let ip = "127.0.0.1".parse().unwrap();
/// let memcached = MemcachedProcess::start(ip, &MemcachedOptions::default()).await?;
/// let front = NodeFront::start((ip, 0).into(), memcached.addr(), || {
///     Some(ClusterConfig::new(1, vec![Node::new("a", None, 11211)]))
/// })?;
/// println!("the node is at {}", front.addr());
/// # Ok(()) }
/// ```
pub struct NodeFront {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NodeFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFront")
            .field("addr", &self.shared.addr)
            .field("upstream", &*lock(&self.shared.upstream))
            .field("answers_config", &self.answers_config())
            .field("config_requests", &self.config_requests())
            .finish_non_exhaustive()
    }
}

struct Shared {
    addr: SocketAddr,
    upstream: Mutex<SocketAddr>,
    config: Box<ConfigSource>,
    /// Served instead of what `config` returns, while set.
    config_override: Mutex<Option<ClusterConfig>>,
    answers: AtomicBool,
    requests: AtomicU64,
    control: watch::Sender<Control>,
    status: Mutex<Status>,
    status_changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct Control {
    /// Whether the front should listen.
    open: bool,
    /// Bumped by every close: connections accepted under another epoch end.
    epoch: u64,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct Status {
    listening: bool,
    connections: usize,
    /// The last failure to bind the port again.
    bind_error: Option<(io::ErrorKind, String)>,
}

impl NodeFront {
    /// Binds `listen` (port 0: a port the OS chooses) and relays its connections to the
    /// memcached at `upstream`, answering `config get cluster` with what `config` returns
    /// (`None`: `ERROR`). `config` is called for each answer, so it always serves the current
    /// configuration.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: impl Fn() -> Option<ClusterConfig> + Send + Sync + 'static,
    ) -> io::Result<NodeFront> {
        let listener = StdListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let (control, _) = watch::channel(Control {
            open: true,
            epoch: 0,
            shutdown: false,
        });
        let shared = Arc::new(Shared {
            addr: listener.local_addr()?,
            upstream: Mutex::new(upstream),
            config: Box::new(config),
            config_override: Mutex::new(None),
            answers: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            control,
            status: Mutex::new(Status {
                listening: true,
                ..Status::default()
            }),
            status_changed: Condvar::new(),
        });
        let task_shared = Arc::clone(&shared);
        let thread = spawn_server("node-front", listener, move |listener| {
            serve(task_shared, listener)
        })?;
        Ok(NodeFront {
            shared,
            thread: Some(thread),
        })
    }

    /// Where the front listens (and listens again after [`reopen`](NodeFront::reopen)).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Where the memcached behind the front listens.
    pub fn upstream(&self) -> SocketAddr {
        *lock(&self.shared.upstream)
    }

    /// Relays new connections to the memcached at `upstream` (open connections keep theirs).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = upstream;
    }

    /// Whether the front answers `config get cluster` itself (the default). When `false`, the
    /// request goes to memcached like any other, which answers `ERROR`.
    pub fn answers_config(&self) -> bool {
        self.shared.answers.load(Ordering::SeqCst)
    }

    /// Sets [`answers_config`](NodeFront::answers_config), from the next request on.
    pub fn set_answers_config(&self, answers: bool) {
        self.shared.answers.store(answers, Ordering::SeqCst);
    }

    /// Serves `config` to `config get cluster` instead of what the source given to
    /// [`start`](NodeFront::start) returns (a node that lags behind the endpoint, or is ahead of
    /// it), from the next answer on; `None` serves the source again (the default).
    pub fn set_config_override(&self, config: Option<ClusterConfig>) {
        *lock(&self.shared.config_override) = config;
    }

    /// The configuration set by [`set_config_override`](NodeFront::set_config_override), if any.
    pub fn config_override(&self) -> Option<ClusterConfig> {
        lock(&self.shared.config_override).clone()
    }

    /// How many `config get cluster` requests the front has received, whoever answered them.
    pub fn config_requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Whether the port is bound now.
    pub fn is_listening(&self) -> bool {
        lock(&self.shared.status).listening
    }

    /// Closes the port and every connection, as the death of the node closes them: connects
    /// are refused from now on. Returns once that is done (waiting at most a few seconds).
    pub fn close(&self) {
        self.shared.control.send_modify(|c| {
            c.open = false;
            c.epoch += 1;
        });
        let status = lock(&self.shared.status);
        let (status, wait) = self
            .shared
            .status_changed
            .wait_timeout_while(status, SWITCH_WAIT, |s| s.listening || s.connections > 0)
            .unwrap_or_else(|p| p.into_inner());
        if wait.timed_out() {
            tracing::warn!(
                addr = %self.shared.addr,
                listening = status.listening,
                connections = status.connections,
                "node front did not close in time"
            );
        }
    }

    /// Binds the same port again after [`close`](NodeFront::close), and returns once it is
    /// bound. While someone else holds the port, retries for a few seconds, then fails (and
    /// keeps retrying in the background).
    pub fn reopen(&self) -> io::Result<()> {
        {
            let mut status = lock(&self.shared.status);
            status.bind_error = None;
        }
        self.shared.control.send_modify(|c| c.open = true);
        let status = lock(&self.shared.status);
        let (status, wait) = self
            .shared
            .status_changed
            .wait_timeout_while(status, SWITCH_WAIT, |s| !s.listening)
            .unwrap_or_else(|p| p.into_inner());
        if !wait.timed_out() {
            return Ok(());
        }
        let (kind, message) = status.bind_error.clone().unwrap_or((
            io::ErrorKind::TimedOut,
            "the front did not bind in time".to_owned(),
        ));
        Err(io::Error::new(
            kind,
            format!(
                "node front cannot bind {} again: {message}",
                self.shared.addr
            ),
        ))
    }
}

impl Drop for NodeFront {
    fn drop(&mut self) {
        self.shared.control.send_modify(|c| c.shutdown = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn update_status(shared: &Shared, change: impl FnOnce(&mut Status)) {
    change(&mut lock(&shared.status));
    shared.status_changed.notify_all();
}

/// Counts a connection as open for as long as it lives.
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: &Arc<Shared>) -> Counted {
        update_status(shared, |s| s.connections += 1);
        Counted(Arc::clone(shared))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        update_status(&self.0, |s| s.connections = s.connections.saturating_sub(1));
    }
}

/// The accept loop: one task per connection; drops the listener while closed.
async fn serve(shared: Arc<Shared>, first: TcpListener) {
    accept_while_open(
        shared.addr,
        first,
        shared.control.subscribe(),
        |now: &Control| Switch {
            shutdown: now.shutdown,
            open: now.open,
        },
        |listening| match listening {
            Listening::Started => update_status(&shared, |s| {
                s.listening = true;
                s.bind_error = None;
            }),
            Listening::Stopped => update_status(&shared, |s| s.listening = false),
            Listening::BindFailed(e) => {
                update_status(&shared, |s| s.bind_error = Some((e.kind(), e.to_string())))
            }
        },
        |stream, now| {
            tokio::spawn(connection(Counted::new(&shared), stream, now.epoch));
        },
    )
    .await;
}

/// Serves one client connection until either side closes it or the front closes.
async fn connection(counted: Counted, client: TcpStream, epoch: u64) {
    let shared = &counted.0;
    let mut control = shared.control.subscribe();
    let closed = control.wait_for(|c| c.shutdown || c.epoch != epoch);
    tokio::select! {
        _ = closed => {}
        _ = relay(shared, client) => {}
    }
}

/// Connects to memcached and relays both ways until memcached closes the connection (or a
/// write to the client fails). When the client closes its side, memcached's side is shut down
/// after the last request, and the replies still due are relayed.
async fn relay(shared: &Shared, mut client: TcpStream) {
    let upstream = *lock(&shared.upstream);
    let mut server =
        match tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(upstream)).await {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => {
                tracing::debug!(%upstream, error = %e, "node front cannot reach memcached");
                return;
            }
            Err(_) => return,
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let marks = Mutex::new(VecDeque::new());
    let up = async {
        let mut scanner = RequestScanner::default();
        pump(&mut client_read, &mut server_write, |input, out| {
            scanner.feed(input, out, shared, &marks)
        })
        .await;
        let _ = server_write.shutdown().await;
        std::future::pending::<()>().await
    };
    let down = async {
        let mut scanner = ReplyScanner::default();
        pump(&mut server_read, &mut client_write, |input, out| {
            scanner.feed(input, out, shared, &marks)
        })
        .await;
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Reads `from` until it ends or fails, passes each chunk through `scan` and writes what it
/// makes of it to `to`.
async fn pump<R, W>(from: &mut R, to: &mut W, mut scan: impl FnMut(&[u8], &mut Vec<u8>))
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK);
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        out.clear();
        scan(&chunk[..n], &mut out);
        if !out.is_empty() && (to.write_all(&out).await.is_err() || to.flush().await.is_err()) {
            return;
        }
    }
}

/// Where a scanner is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Scan {
    /// Nothing seen yet: the first byte tells the text protocol from the binary one.
    #[default]
    Start,
    /// At (or inside) a line, kept in the scanner's buffer.
    Line,
    /// Inside a line too long to look at, relayed as it comes until its end.
    LongLine,
    /// Inside a data block: this many bytes (with its CRLF) are relayed as they come.
    Data(u64),
    /// The binary protocol: everything is relayed.
    Raw,
}

/// Reads the client's requests at their boundaries and replaces `config get cluster`.
#[derive(Debug, Default)]
struct RequestScanner {
    state: Scan,
    line: Vec<u8>,
}

/// Reads memcached's replies at their boundaries and puts the configuration in place of the
/// `MN` that answers a replaced request.
#[derive(Debug, Default)]
struct ReplyScanner {
    state: Scan,
    line: Vec<u8>,
}

/// What one complete line means to a scanner: relay it, or put something else in its place;
/// either way, how many data bytes follow it.
struct Verdict {
    replace: Option<Vec<u8>>,
    data: Option<u64>,
}

impl RequestScanner {
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        shared: &Shared,
        marks: &Mutex<VecDeque<bool>>,
    ) {
        scan(&mut self.state, &mut self.line, 0x80, input, out, |line| {
            request_verdict(line, shared, marks)
        });
    }
}

impl ReplyScanner {
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        shared: &Shared,
        marks: &Mutex<VecDeque<bool>>,
    ) {
        scan(&mut self.state, &mut self.line, 0x81, input, out, |line| {
            reply_verdict(line, shared, marks)
        });
    }
}

/// Moves `input` to `out`, line by line and data block by data block, as `verdict` says.
fn scan(
    state: &mut Scan,
    line: &mut Vec<u8>,
    binary_magic: u8,
    mut input: &[u8],
    out: &mut Vec<u8>,
    mut verdict: impl FnMut(&[u8]) -> Verdict,
) {
    while !input.is_empty() {
        match *state {
            Scan::Start => {
                *state = if input[0] == binary_magic {
                    Scan::Raw
                } else {
                    Scan::Line
                };
            }
            Scan::Raw => {
                out.extend_from_slice(input);
                return;
            }
            Scan::Data(left) => {
                let take = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
                out.extend_from_slice(&input[..take]);
                input = &input[take..];
                let left = left - take as u64;
                *state = if left == 0 {
                    Scan::Line
                } else {
                    Scan::Data(left)
                };
            }
            Scan::LongLine => match input.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    out.extend_from_slice(&input[..=end]);
                    input = &input[end + 1..];
                    *state = Scan::Line;
                }
                None => {
                    out.extend_from_slice(input);
                    return;
                }
            },
            Scan::Line => match input.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    line.extend_from_slice(&input[..=end]);
                    input = &input[end + 1..];
                    let said = verdict(line);
                    match said.replace {
                        Some(replacement) => out.extend_from_slice(&replacement),
                        None => out.extend_from_slice(line),
                    }
                    line.clear();
                    if let Some(data) = said.data {
                        *state = Scan::Data(data.saturating_add(2));
                    }
                }
                None => {
                    line.extend_from_slice(input);
                    if line.len() > MAX_LINE {
                        out.extend_from_slice(line);
                        line.clear();
                        *state = Scan::LongLine;
                    }
                    return;
                }
            },
        }
    }
}

/// The line without its line end (CRLF or LF) and trailing spaces or tabs.
fn trimmed(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// The space-separated words of a line, as memcached splits them.
fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    trimmed(line)
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
}

/// A decimal length word, or `None` when it is none.
fn length(word: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(word?).ok()?.parse().ok()
}

fn request_verdict(line: &[u8], shared: &Shared, marks: &Mutex<VecDeque<bool>>) -> Verdict {
    let keep = |data| Verdict {
        replace: None,
        data,
    };
    if trimmed(line) == b"config get cluster" {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if !shared.answers.load(Ordering::SeqCst) {
            return keep(None);
        }
        // Marked before the no-op is written upstream, so its answer always finds the mark.
        lock(marks).push_back(true);
        return Verdict {
            replace: Some(b"mn\r\n".to_vec()),
            data: None,
        };
    }
    let mut words = words(line);
    match words.next() {
        Some(b"mn") => {
            lock(marks).push_back(false);
            keep(None)
        }
        Some(b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas") => {
            keep(length(words.nth(3)))
        }
        Some(b"ms") => keep(length(words.nth(1))),
        _ => keep(None),
    }
}

fn reply_verdict(line: &[u8], shared: &Shared, marks: &Mutex<VecDeque<bool>>) -> Verdict {
    let keep = |data| Verdict {
        replace: None,
        data,
    };
    let mut words = words(line);
    match words.next() {
        Some(b"MN") if trimmed(line) == b"MN" => {
            if lock(marks).pop_front() != Some(true) {
                return keep(None);
            }
            let overridden = lock(&shared.config_override).clone();
            let reply = match overridden.or_else(|| (shared.config)()) {
                Some(config) => encode_reply(&config, ReplyKind::ConfigGet),
                None => ERROR_REPLY.to_vec(),
            };
            Verdict {
                replace: Some(reply),
                data: None,
            }
        }
        Some(b"VALUE") => keep(length(words.nth(2))),
        Some(b"VA") => keep(length(words.next())),
        _ => keep(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memcached_autodiscovery::Node;

    fn shared() -> Shared {
        let (control, _) = watch::channel(Control {
            open: true,
            epoch: 0,
            shutdown: false,
        });
        Shared {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            upstream: Mutex::new(SocketAddr::from(([127, 0, 0, 1], 2))),
            config: Box::new(|| Some(ClusterConfig::new(7, vec![Node::new("a", None, 1)]))),
            config_override: Mutex::new(None),
            answers: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            control,
            status: Mutex::new(Status::default()),
            status_changed: Condvar::new(),
        }
    }

    /// Feeds `input` to a fresh scanner of each direction in pieces of `piece` bytes.
    fn run(requests: &[u8], replies: &[u8], piece: usize, shared: &Shared) -> (Vec<u8>, Vec<u8>) {
        let marks = Mutex::new(VecDeque::new());
        let mut up = RequestScanner::default();
        let mut sent = Vec::new();
        for part in requests.chunks(piece) {
            up.feed(part, &mut sent, shared, &marks);
        }
        let mut down = ReplyScanner::default();
        let mut got = Vec::new();
        for part in replies.chunks(piece) {
            down.feed(part, &mut got, shared, &marks);
        }
        (sent, got)
    }

    const CONFIG: &[u8] = b"CONFIG cluster 0 7\r\n7\na||1\n\r\nEND\r\n";

    #[test]
    fn config_requests_become_no_ops_and_their_answers_the_configuration() {
        let requests = b"get a\r\nconfig get cluster\r\nmn\r\nconfig get cluster \n\
            set k 0 0 20\r\nconfig get cluster\r\n\r\nms k 4 T0\r\nmn\r\n\r\nget b\r\n";
        let replies = b"VALUE a 0 4\r\nMN\r\n\r\nEND\r\nMN\r\nMN\r\nMN\r\nSTORED\r\nHD\r\n\
            VALUE b 0 2 9\r\nMN\r\nEND\r\n";
        for piece in [1, 2, 3, 7, 1000] {
            let shared = shared();
            let (sent, got) = run(requests, replies, piece, &shared);
            assert_eq!(
                sent,
                &b"get a\r\nmn\r\nmn\r\nmn\r\n\
                set k 0 0 20\r\nconfig get cluster\r\n\r\nms k 4 T0\r\nmn\r\n\r\nget b\r\n"[..],
                "piece {piece}"
            );
            let mut want = b"VALUE a 0 4\r\nMN\r\n\r\nEND\r\n".to_vec();
            want.extend_from_slice(CONFIG);
            want.extend_from_slice(b"MN\r\n");
            want.extend_from_slice(CONFIG);
            want.extend_from_slice(b"STORED\r\nHD\r\nVALUE b 0 2 9\r\nMN\r\nEND\r\n");
            assert_eq!(got, want, "piece {piece}");
            assert_eq!(shared.requests.load(Ordering::SeqCst), 2);
        }
    }

    #[test]
    fn a_node_that_does_not_answer_relays_the_request() {
        let shared = shared();
        shared.answers.store(false, Ordering::SeqCst);
        let (sent, got) = run(b"config get cluster\r\n", b"ERROR\r\n", 4, &shared);
        assert_eq!(sent, b"config get cluster\r\n");
        assert_eq!(got, b"ERROR\r\n");
        assert_eq!(shared.requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn long_lines_binary_and_malformed_input_pass_unchanged() {
        let shared = shared();
        let mut long = b"get ".to_vec();
        long.extend(std::iter::repeat(b'k').take(MAX_LINE + 10));
        long.extend_from_slice(b"\r\nconfig get cluster\r\n");
        let (sent, _) = run(&long, b"", 5000, &shared);
        assert!(sent.ends_with(b"\r\nmn\r\n"));
        assert_eq!(sent.len(), long.len() - b"config get cluster\r\n".len() + 4);

        let binary = [0x80u8, 0, 0, 0, b'\n', b'c'];
        let (sent, got) = run(&binary, &[0x81, b'M', b'N', b'\r', b'\n'], 1, &shared);
        assert_eq!(sent, binary);
        assert_eq!(got, [0x81, b'M', b'N', b'\r', b'\n']);

        let junk = b"set k x y zz\r\nms\r\nVALUE\r\nVA\r\n\xff\xfe\r\n";
        let (sent, got) = run(junk, junk, 3, &shared);
        assert_eq!(sent, junk);
        assert_eq!(got, junk);
    }

    #[test]
    fn an_override_is_served_instead_of_the_source_until_cleared() {
        let shared = shared();
        *lock(&shared.config_override) = Some(ClusterConfig::new(3, vec![Node::new("b", None, 2)]));
        let (_, got) = run(b"config get cluster\r\n", b"MN\r\n", 1, &shared);
        assert_eq!(got, b"CONFIG cluster 0 7\r\n3\nb||2\n\r\nEND\r\n");
        *lock(&shared.config_override) = None;
        let (_, got) = run(b"config get cluster\r\n", b"MN\r\n", 1, &shared);
        assert_eq!(got, CONFIG);
    }

    #[test]
    fn a_stray_no_op_answer_is_relayed() {
        let shared = shared();
        let (_, got) = run(b"", b"MN\r\nMN\r\n", 1, &shared);
        assert_eq!(got, b"MN\r\nMN\r\n");
    }
}
