//! Misbehaving "memcached nodes" of our own on loopback: silent, slow, lying or hostile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How a rogue node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rogue {
    /// Accepts and reads, never answers.
    Silent,
    /// Answers every request with bytes that are no memcached reply.
    Garbage,
    /// Announces a 4 GiB value.
    Huge,
    /// Sends a valid miss (`END\r\n`) one byte every 100 ms.
    Drip,
    /// Sends a value header and then an endless line without a terminator.
    NoTerminator,
    /// Sends a reply before any request was made.
    Unsolicited,
    /// Says `ERROR Too many open connections` and hangs up, as memcached does over its
    /// connection limit.
    Hangup,
    /// Forwards to a real node, holding each reply back by the given milliseconds.
    Slow(SocketAddr, u64),
    /// Forwards to a real node, but every meta get (`mg`) asks for the given key instead of its
    /// own (as a text key: a `b` flag is dropped), so the node answers with that key's item.
    OtherKey(SocketAddr, &'static str),
}

/// A listening rogue node; stops when dropped.
pub struct RogueNode {
    pub addr: SocketAddr,
    /// Bytes sent to clients so far.
    pub sent: Arc<AtomicU64>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RogueNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RogueNode {
    pub async fn start(rogue: Rogue) -> RogueNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (counter, accepts) = (sent.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepts.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream, rogue, counter.clone()));
            }
        });
        RogueNode {
            addr,
            sent,
            accepted,
            task,
        }
    }
}

async fn serve(mut stream: TcpStream, rogue: Rogue, sent: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 << 10];
    let send = |n: usize| {
        sent.fetch_add(n as u64, Ordering::Relaxed);
    };
    match rogue {
        Rogue::Slow(upstream, delay_ms) => {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut up_r, mut up_w) = up.into_split();
            let (mut r, mut w) = stream.into_split();
            let forward = tokio::spawn(async move {
                let mut b = vec![0u8; 64 << 10];
                while let Ok(n) = r.read(&mut b).await {
                    if n == 0 || up_w.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
            while let Ok(n) = up_r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                send(n);
            }
            forward.abort();
        }
        Rogue::OtherKey(upstream, key) => other_key(stream, upstream, key, sent).await,
        Rogue::Hangup => {
            let refusal = b"ERROR Too many open connections\r\n";
            if stream.write_all(refusal).await.is_ok() {
                send(refusal.len());
            }
        }
        Rogue::Unsolicited => {
            let reply = b"VALUE stray 0 5\r\nstray\r\nEND\r\n";
            if stream.write_all(reply).await.is_ok() {
                send(reply.len());
            }
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        _ => loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let ok = match rogue {
                Rogue::Silent => true,
                Rogue::Garbage => {
                    let junk = b"\xff\xfe this is not memcached\r\n";
                    send(junk.len());
                    stream.write_all(junk).await.is_ok()
                }
                Rogue::Huge => {
                    let header = b"VALUE k 0 4294967296\r\n";
                    send(header.len());
                    stream.write_all(header).await.is_ok()
                }
                Rogue::Drip => {
                    let mut ok = true;
                    for b in b"END\r\n" {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        ok &= stream.write_all(&[*b]).await.is_ok();
                        send(1);
                    }
                    ok
                }
                Rogue::NoTerminator => {
                    let mut ok = stream.write_all(b"VALUE k 0 1\r\nx\r\nSTAT ").await.is_ok();
                    let chunk = [b'a'; 4096];
                    for _ in 0..4096 {
                        if !ok {
                            break;
                        }
                        ok = stream.write_all(&chunk).await.is_ok();
                        send(chunk.len());
                    }
                    ok
                }
                Rogue::Slow(..) | Rogue::OtherKey(..) | Rogue::Unsolicited | Rogue::Hangup => {
                    unreachable!()
                }
            };
            if !ok {
                break;
            }
        },
    }
}

/// [`Rogue::OtherKey`]: relays requests line by line (a storage command's data block as it is),
/// each `mg` rewritten to ask for `key`, and the node's replies unchanged.
async fn other_key(stream: TcpStream, upstream: SocketAddr, key: &str, sent: Arc<AtomicU64>) {
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut up_r, mut up_w) = up.into_split();
    let (r, mut w) = stream.into_split();
    let replies = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = up_r.read(&mut buf).await {
            if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        if !matches!(r.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
            break;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let words: Vec<&str> = text.split_whitespace().collect();
        let request = match words.as_slice() {
            ["mg", _, flags @ ..] => {
                let flags: Vec<&str> = flags.iter().copied().filter(|f| *f != "b").collect();
                format!("mg {key} {}\r\n", flags.join(" ")).into_bytes()
            }
            _ => line.clone(),
        };
        // The data block of `ms <key> <len> ...` and of `set|add|... <key> <flags> <exp> <len>`.
        let block = match words.as_slice() {
            ["ms", _, len, ..] => len.parse::<usize>().ok(),
            ["set" | "add" | "replace" | "append" | "prepend" | "cas", _, _, _, len, ..] => {
                len.parse::<usize>().ok()
            }
            _ => None,
        };
        let mut data = vec![0u8; block.map_or(0, |n| n + 2)];
        if r.read_exact(&mut data).await.is_err()
            || up_w.write_all(&request).await.is_err()
            || up_w.write_all(&data).await.is_err()
        {
            break;
        }
    }
    replies.abort();
}

/// Resident memory of this process, in KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
