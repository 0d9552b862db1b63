//! A local stand-in for an ElastiCache Serverless for Memcached endpoint (feature `tls`): a TLS
//! listener in front of one real memcached process that enforces Serverless's documented rules.
//!
//! * **TLS only.** A client that does not complete a TLS handshake is dropped
//!   ([`ServerlessStandIn::handshakes_failed`] counts them).
//! * **16 KB `get`/`gets` lines.** A `get`, `gets`, `gat` or `gats` line longer than
//!   [`MAX_GET_LINE`] bytes (counted with its `\r\n`) is refused with `CLIENT_ERROR`.
//! * **Refused commands.** A delayed `flush_all` is refused with `CLIENT_ERROR`; `stats` with an
//!   argument other than `reset`, and `config`, `lru`, `lru_crawler`, `watch`, `verbosity` and
//!   `me`, with `ERROR`. ([`ServerlessStandIn::refused`] counts refusals.)
//! * No `config get cluster`: the endpoint is all there is.
//!
//! Everything else goes to memcached unchanged, and its replies come back unchanged. Replies stay
//! in request order under pipelining because a refused request is not answered by the stand-in
//! itself: it is replaced by a request memcached answers with the same kind of error (an unknown
//! command for `ERROR`, an `incr` by a delta that is not a number for
//! `CLIENT_ERROR invalid numeric delta argument`). A key over 250 bytes would not do: memcached
//! 1.6.18 then drops the replies it had not yet written for the same read.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::memcached::{MemcachedOptions, MemcachedProcess};
use crate::tls::server_config;

/// The longest `get`/`gets` line the stand-in accepts, with its `\r\n`: 16 KB.
pub const MAX_GET_LINE: usize = 16 * 1024;
/// Longest request line read at all; a longer one closes the connection.
const MAX_LINE: u64 = 1 << 20;
/// What memcached answers with `ERROR`: a command it does not know.
const REFUSE_WITH_ERROR: &[u8] = b"serverless_refused\r\n";
/// What memcached answers with `CLIENT_ERROR`, touching nothing: an `incr` by a delta that is
/// not a number.
const REFUSE_WITH_CLIENT_ERROR: &[u8] = b"incr serverless_refused refused\r\n";

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    handshakes_failed: AtomicU64,
    refused: AtomicU64,
    longest_get_line: AtomicUsize,
}

/// A Serverless endpoint stand-in on `127.0.0.1`: see the module docs. Dropping it stops the
/// listener and kills memcached (which ends every connection).
#[derive(Debug)]
pub struct ServerlessStandIn {
    endpoint: SocketAddr,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
    _memcached: MemcachedProcess,
}

impl Drop for ServerlessStandIn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ServerlessStandIn {
    /// Starts memcached on a free loopback port and the TLS endpoint in front of it, presenting
    /// `cert_chain_pem` and `key_pem` (the certificate should name `127.0.0.1` or `localhost`).
    pub async fn start(
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> io::Result<ServerlessStandIn> {
        let tls = server_config(&cert_chain_pem.into(), &key_pem.into(), None)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let memcached = MemcachedProcess::start(loopback, &MemcachedOptions::default()).await?;
        let upstream = memcached.addr();
        let listener = TcpListener::bind((loopback, 0)).await?;
        let endpoint = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, counters) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    match acceptor.accept(socket).await {
                        Ok(tls) => {
                            counters.connections.fetch_add(1, Ordering::Relaxed);
                            let _ = serve(tls, upstream, &counters).await;
                        }
                        Err(_) => {
                            counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        Ok(ServerlessStandIn {
            endpoint,
            counters,
            accept,
            _memcached: memcached,
        })
    }

    /// The endpoint, `127.0.0.1:port`: give it to `ClientBuilder::serverless`.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Connections dropped because their TLS handshake failed (a plaintext client, say).
    pub fn handshakes_failed(&self) -> u64 {
        self.counters.handshakes_failed.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }

    /// The longest retrieval (`get`, `gets`, `gat`, `gats`) line seen, with its `\r\n`.
    pub fn longest_get_line(&self) -> usize {
        self.counters.longest_get_line.load(Ordering::Relaxed)
    }
}

/// What becomes of one request line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Forward,
    Error,
    ClientError,
}

/// Serverless's rules for one request line (with its line end).
fn verdict(line: &[u8], counters: &Counters) -> Verdict {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace();
    let command = words.next().unwrap_or_default();
    let first = words.next();
    match command {
        "get" | "gets" | "gat" | "gats" => {
            counters
                .longest_get_line
                .fetch_max(line.len(), Ordering::Relaxed);
            if line.len() > MAX_GET_LINE {
                Verdict::ClientError
            } else {
                Verdict::Forward
            }
        }
        "flush_all" => match first.and_then(|w| w.parse::<u64>().ok()) {
            Some(delay) if delay > 0 => Verdict::ClientError,
            _ => Verdict::Forward,
        },
        "stats" => match first {
            None | Some("reset") => Verdict::Forward,
            Some(_) => Verdict::Error,
        },
        "config" | "lru" | "lru_crawler" | "watch" | "verbosity" | "me" => Verdict::Error,
        _ => Verdict::Forward,
    }
}

/// The length of the data block that follows a storage request line, if any: `<bytes>` of
/// `set`/`add`/`replace`/`append`/`prepend`/`cas`, `<datalen>` of `ms`.
fn data_block(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let at = match *words.first()? {
        "set" | "add" | "replace" | "append" | "prepend" | "cas" => 4,
        "ms" => 2,
        _ => return None,
    };
    words.get(at)?.parse().ok()
}

/// Relays one client connection to memcached, applying the rules to each request line.
async fn serve<S>(client: S, upstream: SocketAddr, counters: &Counters) -> io::Result<()>
where
    S: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (to_memcached_read, mut to_memcached) = TcpStream::connect(upstream).await?.into_split();
    let (from_client, mut to_client) = tokio::io::split(client);
    let replies = tokio::spawn(async move {
        let mut from_memcached = to_memcached_read;
        let _ = tokio::io::copy(&mut from_memcached, &mut to_client).await;
        let _ = to_client.shutdown().await;
    });
    let mut requests = BufReader::new(from_client);
    let result = async {
        loop {
            let mut line = Vec::new();
            let read = (&mut requests)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await?;
            if read == 0 || !line.ends_with(b"\n") {
                return Ok(());
            }
            match verdict(&line, counters) {
                Verdict::Forward => to_memcached.write_all(&line).await?,
                Verdict::Error => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    to_memcached.write_all(REFUSE_WITH_ERROR).await?;
                }
                Verdict::ClientError => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    to_memcached.write_all(REFUSE_WITH_CLIENT_ERROR).await?;
                }
            }
            if let Some(bytes) = data_block(&line) {
                let block = bytes.saturating_add(2);
                let copied =
                    tokio::io::copy(&mut (&mut requests).take(block), &mut to_memcached).await?;
                if copied < block {
                    return Ok(());
                }
            }
        }
    }
    .await;
    let _ = to_memcached.shutdown().await;
    let _ = replies.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_of_serverless() {
        let counters = Counters::default();
        let v = |line: &[u8]| verdict(line, &counters);
        assert_eq!(v(b"get a b c\r\n"), Verdict::Forward);
        let mut long = b"gets".to_vec();
        while long.len() < MAX_GET_LINE - 2 {
            long.extend_from_slice(b" k");
        }
        long.truncate(MAX_GET_LINE - 2);
        long.extend_from_slice(b"\r\n");
        assert_eq!(v(&long), Verdict::Forward, "exactly 16 KB");
        long.insert(5, b'k');
        assert_eq!(v(&long), Verdict::ClientError, "one byte more");
        assert_eq!(
            counters.longest_get_line.load(Ordering::Relaxed),
            MAX_GET_LINE + 1
        );
        assert_eq!(v(b"flush_all\r\n"), Verdict::Forward);
        assert_eq!(v(b"flush_all 0\r\n"), Verdict::Forward);
        assert_eq!(v(b"flush_all noreply\r\n"), Verdict::Forward);
        assert_eq!(v(b"flush_all 10\r\n"), Verdict::ClientError);
        assert_eq!(v(b"stats\r\n"), Verdict::Forward);
        assert_eq!(v(b"stats reset\r\n"), Verdict::Forward);
        assert_eq!(v(b"stats settings\r\n"), Verdict::Error);
        assert_eq!(v(b"config get cluster\r\n"), Verdict::Error);
        for refused in [
            "verbosity 1",
            "lru mode flat",
            "lru_crawler metadump all",
            "watch",
            "me k",
        ] {
            assert_eq!(
                v(format!("{refused}\r\n").as_bytes()),
                Verdict::Error,
                "{refused}"
            );
        }
        assert_eq!(v(b"set k 0 0 5\r\n"), Verdict::Forward);
    }

    #[test]
    fn storage_requests_carry_their_data_blocks() {
        assert_eq!(data_block(b"set k 0 0 5\r\n"), Some(5));
        assert_eq!(data_block(b"cas k 0 0 7 99 noreply\r\n"), Some(7));
        assert_eq!(data_block(b"ms k 3 T0\r\n"), Some(3));
        assert_eq!(data_block(b"get k\r\n"), None);
        assert_eq!(data_block(b"set k 0 0 x\r\n"), None);
        assert_eq!(data_block(b"\r\n"), None);
    }
}
