//! A relay in front of a real memcached node that counts the requests it passes on and can break
//! connections at chosen points: all at once ([`Proxy::sever`]), or right after the server has
//! answered a given command, with the answer thrown away ([`Proxy::lose_reply_to`]), so that the
//! client sees a connection close after its request was written and before its reply came.
//!
//! The relay runs on a thread and runtime of its own, so it keeps working while the test blocks
//! the client's runtime (a frozen Lambda environment). It handles one request at a time per
//! connection, in order, as memcached does: it reads a whole request (a storage command with its
//! data block), forwards it, reads the whole reply and passes it back.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

#[derive(Default)]
struct State {
    /// Requests passed on, by command (`get`, `incr`, ...).
    commands: Mutex<HashMap<String, u64>>,
    accepted: AtomicU64,
    open: AtomicU64,
    /// The command whose next reply is thrown away, the connection closed instead.
    lose_reply_to: Mutex<Option<String>>,
}

/// A running relay; stops (closing every connection) when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    sever: watch::Sender<u64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A relay on a free loopback port to the memcached at `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (sever, _) = watch::channel(0u64);
        let (stop, stopped) = oneshot::channel::<()>();
        let (task_state, task_sever) = (state.clone(), sever.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        task_state.accepted.fetch_add(1, Ordering::SeqCst);
                        task_state.open.fetch_add(1, Ordering::SeqCst);
                        let state = task_state.clone();
                        let severed = task_sever.subscribe();
                        tokio::spawn(async move {
                            relay(client, upstream, &state, severed).await;
                            state.open.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Proxy {
            addr,
            state,
            sever,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many `command` requests were passed on to the server.
    pub fn count(&self, command: &str) -> u64 {
        let commands = self.state.commands.lock().unwrap();
        commands.get(command).copied().unwrap_or(0)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The next `command` request is passed on and answered by the server, but its reply is
    /// thrown away and the client's connection closed instead. Once; later connections are
    /// served normally.
    pub fn lose_reply_to(&self, command: &str) {
        *self.state.lose_reply_to.lock().unwrap() = Some(command.to_string());
    }

    /// Closes every open connection (the client sees the server hang up), and waits (at most
    /// two seconds) until they are all closed. Blocks the calling thread.
    pub fn sever(&self) {
        self.sever.send_modify(|generation| *generation += 1);
        let start = Instant::now();
        while self.state.open.load(Ordering::SeqCst) > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the proxy's connections did not close"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One client connection, relayed until either side closes, a reply is to be lost, or the
/// connections are severed.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    state: &State,
    mut severed: watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_r, mut client_w) = client.into_split();
    let (server_r, mut server_w) = server.into_split();
    let (mut client_r, mut server_r) = (BufReader::new(client_r), BufReader::new(server_r));
    let work = async {
        loop {
            let Some((command, request, noreply)) = read_request(&mut client_r).await? else {
                return Ok::<(), io::Error>(());
            };
            *state
                .commands
                .lock()
                .unwrap()
                .entry(command.clone())
                .or_default() += 1;
            server_w.write_all(&request).await?;
            if noreply {
                continue;
            }
            let reply = read_reply(&mut server_r, &command).await?;
            let lose = {
                let mut trap = state.lose_reply_to.lock().unwrap();
                let hit = trap.as_deref() == Some(command.as_str());
                if hit {
                    *trap = None;
                }
                hit
            };
            if lose {
                return Ok(()); // both connections are dropped, the reply with them
            }
            client_w.write_all(&reply).await?;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = severed.changed() => {}
    }
}

/// Reads one line, its line end included; `None` at the end of the stream.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(line))
}

/// Appends `len` bytes of data and their `\r\n`.
async fn read_block<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    len: &[u8],
    into: &mut Vec<u8>,
) -> io::Result<()> {
    let len: usize = std::str::from_utf8(len)
        .ok()
        .and_then(|l| l.parse().ok())
        .ok_or(io::ErrorKind::InvalidData)?;
    let at = into.len();
    into.resize(at + len + 2, 0);
    r.read_exact(&mut into[at..]).await?;
    Ok(())
}

fn words(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect()
}

/// One whole request: (command, bytes, whether it asked for no reply).
async fn read_request<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> io::Result<Option<(String, Vec<u8>, bool)>> {
    let Some(mut request) = read_line(r).await? else {
        return Ok(None);
    };
    let line = request.clone();
    let words = words(&line);
    let command = String::from_utf8_lossy(words.first().copied().unwrap_or_default()).into_owned();
    let noreply = words.last() == Some(&&b"noreply"[..]);
    if matches!(
        command.as_str(),
        "set" | "add" | "replace" | "append" | "prepend" | "cas"
    ) {
        let len = words.get(4).ok_or(io::ErrorKind::InvalidData)?;
        read_block(r, len, &mut request).await?;
    }
    Ok(Some((command, request, noreply)))
}

/// The whole reply to a `command` request.
async fn read_reply<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    command: &str,
) -> io::Result<Vec<u8>> {
    let multi_line = matches!(
        command,
        "get" | "gets" | "gat" | "gats" | "stats" | "config"
    );
    let mut reply = Vec::new();
    loop {
        let line = read_line(r).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        reply.extend_from_slice(&line);
        let words = words(&line);
        let first = words.first().copied().unwrap_or_default();
        if !multi_line || first == b"END" || first.ends_with(b"ERROR") {
            return Ok(reply);
        }
        if first == b"VALUE" || first == b"CONFIG" {
            let len = words.get(3).ok_or(io::ErrorKind::InvalidData)?;
            read_block(r, len, &mut reply).await?;
        }
    }
}
