//! I/O. Opening connections: to a node or to the configuration endpoint, over TCP, TLS (feature
//! `tls`) or a caller-supplied [`Dial`], within a deadline; and explaining a failed connection,
//! including "this server wants TLS" on a plaintext one.
//!
//! Node connections and discovery both dial through one `Transport`, so both speak TLS, time out and explain mismatches the same way. This module
//! does not know what is said over a connection: no requests, no replies, no retries.
//!
//! The stream type is decided once per connection, at connect time; the connection
//! task then runs one monomorphic copy of its loop per kind, so the plaintext path has no TLS
//! branch and no dynamic dispatch.

#[cfg(feature = "tls")]
mod tls_stream;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::{Error, Peer, TlsErrorKind};
#[cfg(feature = "tls")]
pub(crate) use tls_stream::TlsSocket;

/// Where a connection goes: a node of the cluster, or the configuration endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Target {
    /// The server's name: a node's hostname from the cluster configuration, or the host of the
    /// configuration endpoint. TLS checks the server's certificate against it.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The address to connect to, when it is known without DNS (a node whose IP the cluster
    /// configuration lists). `None`: resolve `host` at each connect.
    pub addr: Option<SocketAddr>,
}

impl Target {
    /// A server reached by name (resolved at each connect), or at `addr` when given.
    pub fn new(host: impl Into<String>, port: u16, addr: Option<SocketAddr>) -> Target {
        Target {
            host: host.into(),
            port,
            addr,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A byte stream the client can speak memcached over: what a [`Dial`] returns.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// What [`Dial::dial`] returns.
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send + 'a>>;

/// Opens byte streams in place of TCP: given to
/// [`ClientBuilder::dialer`](crate::ClientBuilder::dialer), it is used for every connection of
/// the client, to the nodes and to the configuration endpoint (for example to reach servers
/// through a tunnel, or to play a server in memory in tests). The client still applies its
/// connect timeout around `dial`.
///
/// ```
/// use memcached_autodiscovery::transport::{Dial, DialFuture, Target};
///
/// /// Connects every target to one local port (e.g. an SSH tunnel).
/// struct Tunnel(u16);
///
/// impl Dial for Tunnel {
///     fn dial<'a>(&'a self, _target: &'a Target) -> DialFuture<'a> {
///         Box::pin(async move {
///             let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.0)).await?;
///             Ok(Box::new(stream) as Box<dyn memcached_autodiscovery::transport::Io>)
///         })
///     }
/// }
/// ```
pub trait Dial: Send + Sync + 'static {
    /// Opens a stream to `target`.
    fn dial<'a>(&'a self, target: &'a Target) -> DialFuture<'a>;
}

/// How a client opens connections: built once, shared by every connection and by discovery.
pub(crate) struct Transport {
    connect_timeout: Duration,
    dialer: Option<Arc<dyn Dial>>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<crate::tls::TlsContext>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Transport");
        s.field("connect_timeout", &self.connect_timeout)
            .field("custom_dialer", &self.dialer.is_some());
        #[cfg(feature = "tls")]
        s.field("tls", &self.tls.is_some());
        s.finish()
    }
}

/// An established connection, of one kind decided at connect time.
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsSocket>),
    Dialed(Box<dyn Io>),
}

impl Transport {
    /// Plain TCP (or `dialer`'s streams), each connect bounded by `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration, dialer: Option<Arc<dyn Dial>>) -> Transport {
        Transport {
            connect_timeout,
            dialer,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The same transport with TLS on every connection.
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(self, tls: Arc<crate::tls::TlsContext>) -> Transport {
        Transport {
            tls: Some(tls),
            ..self
        }
    }

    /// Connects to `target` and, with TLS, runs the handshake; all before `deadline` (at most
    /// the connect timeout from now).
    pub(crate) async fn connect(
        &self,
        target: &Target,
        peer: Peer<'_>,
        deadline: Option<Instant>,
    ) -> Result<Stream, Error> {
        let own = Instant::now() + self.connect_timeout;
        let deadline = deadline.map_or(own, |d| d.min(own));
        let attempt = async {
            match &self.dialer {
                Some(dialer) => dialer.dial(target).await.map(Stream::Dialed),
                None => {
                    let stream = match target.addr {
                        Some(addr) => TcpStream::connect(addr).await?,
                        None => TcpStream::connect((target.host.as_str(), target.port)).await?,
                    };
                    stream.set_nodelay(true)?;
                    Ok(Stream::Tcp(stream))
                }
            }
        };
        let stream = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(io_error(peer, e)),
            Err(_) => {
                return Err(Error::Timeout {
                    node: peer.id(),
                    timeout: self.connect_timeout,
                })
            }
        };
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return match stream {
                Stream::Tcp(tcp) => {
                    let socket =
                        TlsSocket::handshake(tls, tcp, &target.host, peer, deadline).await?;
                    Ok(Stream::Tls(Box::new(socket)))
                }
                _ => Err(Error::Tls {
                    node: peer.id(),
                    kind: TlsErrorKind::Other,
                    message: Arc::from("TLS runs over TCP only, not over a custom dialer"),
                }),
            };
        }
        Ok(stream)
    }
}

/// The read side of an established connection.
pub(crate) trait ReadSide: AsyncRead + Unpin {
    /// Whether the connection is plaintext (so that a server that drops it before answering
    /// may be one that requires TLS).
    const PLAINTEXT: bool;

    /// Whether the server has closed (or reset) the connection, found without reading. Streams
    /// that cannot tell say `false`; the next read finds the close.
    fn peer_closed(&self) -> bool;

    /// The error for a failed read or write of this connection.
    fn failure(&self, e: io::Error, peer: Peer<'_>) -> Error;
}

/// The write side of an established connection.
pub(crate) trait WriteSide: AsyncWrite + Unpin {
    /// Whether bytes accepted by `write` may wait in a buffer until `flush` (TLS records).
    const NEEDS_FLUSH: bool;
}

impl ReadSide for OwnedReadHalf {
    const PLAINTEXT: bool = true;

    fn peer_closed(&self) -> bool {
        socket_closed(&socket2::SockRef::from(self.as_ref()))
    }

    fn failure(&self, e: io::Error, peer: Peer<'_>) -> Error {
        io_error(peer, e)
    }
}

impl WriteSide for OwnedWriteHalf {
    const NEEDS_FLUSH: bool = false;
}

impl ReadSide for ReadHalf<Box<dyn Io>> {
    const PLAINTEXT: bool = true;

    fn peer_closed(&self) -> bool {
        false
    }

    fn failure(&self, e: io::Error, peer: Peer<'_>) -> Error {
        io_error(peer, e)
    }
}

impl WriteSide for WriteHalf<Box<dyn Io>> {
    // A dialed stream may buffer: flush after writing.
    const NEEDS_FLUSH: bool = true;
}

/// Whether the server has closed (or reset) an idle connection: one non-blocking peek, which
/// looks at the socket itself rather than at readiness the runtime may not have collected yet.
pub(crate) fn socket_closed(socket: &socket2::Socket) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
    }
}

/// An I/O failure of a connection to `peer`.
pub(crate) fn io_error(peer: Peer<'_>, e: io::Error) -> Error {
    Error::Io {
        node: peer.id(),
        source: Arc::new(e),
        hint: None,
    }
}

/// Whether `bytes` start like a TLS record (content type 20 to 23, then protocol major version
/// 3), which no memcached reply does: what a server that requires TLS may send to a plaintext
/// client before it closes the connection.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [20..=23, 3, ..])
}

/// Added to an I/O error of a plaintext connection that the server closed or reset before
/// sending a single byte, which is what memcached with TLS does to a plaintext client.
pub(crate) const TLS_REQUIRED_HINT: &str = "a server that requires TLS (ElastiCache in-transit \
     encryption) drops plaintext connections this way: if it does, enable ClientBuilder::tls \
     (cargo feature `tls`)";

/// The error for a connection that broke, explained: on a plaintext connection, a server that
/// answered with a TLS record requires TLS, and one that dropped the connection before sending
/// anything may. `read` is what the server had sent (and was not understood). Only on the way out
/// of a broken connection, never per request.
pub(crate) fn explain(error: Error, plaintext: bool, read: &[u8], peer: Peer<'_>) -> Error {
    if !plaintext {
        return error;
    }
    if looks_like_tls(read) {
        return Error::Tls {
            node: peer.id(),
            kind: TlsErrorKind::ServerRequiresTls,
            message: Arc::from(format!(
                "the {} answered with a TLS record: it requires TLS (in-transit encryption); \
                 enable ClientBuilder::tls (cargo feature `tls`)",
                peer.what()
            )),
        };
    }
    error
}

/// `error` with the hint that the server may require TLS: for a failure of a plaintext
/// connection before the server sent a single byte.
pub(crate) fn hint_tls(error: Error) -> Error {
    match error {
        Error::Io { node, source, .. } => Error::Io {
            node,
            source,
            hint: Some(TLS_REQUIRED_HINT),
        },
        Error::Discovery {
            endpoint,
            kind,
            detail,
            source,
        } => Error::Discovery {
            endpoint,
            kind,
            detail: Some(match detail {
                Some(detail) => format!("{detail}; {TLS_REQUIRED_HINT}"),
                None => TLS_REQUIRED_HINT.to_string(),
            }),
            source,
        },
        other => other,
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6; port 11211 when absent), given to `setting`.
pub(crate) fn split_host_port(
    address: &str,
    setting: &'static str,
) -> Result<(String, u16), Error> {
    let bad = || {
        Error::settings(
            setting,
            format!(
                "{address:?} is not host:port (e.g. \
                 mycluster.abc123.cfg.use1.cache.amazonaws.com:11211)"
            ),
        )
    };
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 11211,
            None => return Err(bad()),
        };
        if port == 0 || host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        return Ok((host.to_string(), port));
    }
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    match address.rsplit_once(':') {
        // A bare IPv6 address, without brackets or port.
        Some(_) if address.parse::<std::net::Ipv6Addr>().is_ok() => {
            Ok((address.to_string(), 11211))
        }
        Some((host, port)) if valid_host(host) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(bad());
            }
            Ok((host.to_string(), port))
        }
        None if valid_host(address) => Ok((address.to_string(), 11211)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let ok = |a: &str| split_host_port(a, "nodes").unwrap();
        assert_eq!(
            ok("cfg.example.com:11212"),
            ("cfg.example.com".into(), 11212)
        );
        assert_eq!(ok("cfg.example.com"), ("cfg.example.com".into(), 11211));
        assert_eq!(ok("10.0.0.1:1"), ("10.0.0.1".into(), 1));
        assert_eq!(ok("[2001:db8::1]:11213"), ("2001:db8::1".into(), 11213));
        assert_eq!(ok("[::1]"), ("::1".into(), 11211));
        assert_eq!(ok("::1"), ("::1".into(), 11211));
        for bad in [
            "",
            ":11211",
            "h:0",
            "h:65536",
            "h:x",
            "a b:1",
            "not a host:port:x",
            "[::1]x",
            "[::1]:0",
            "[not v6]:1",
            "h:1:2",
        ] {
            assert!(split_host_port(bad, "nodes").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_tls_record_on_a_plaintext_connection_is_explained() {
        let peer = Peer::Node("n:1");
        let io = io_error(peer, io::ErrorKind::UnexpectedEof.into());
        let explained = explain(io.clone(), true, &[0x15, 0x03, 0x01], peer);
        assert!(
            matches!(
                explained,
                Error::Tls {
                    kind: TlsErrorKind::ServerRequiresTls,
                    ..
                }
            ),
            "{explained:?}"
        );
        assert!(matches!(
            explain(io.clone(), false, &[0x15, 0x03], peer),
            Error::Io { .. }
        ));
        assert!(matches!(
            explain(io, true, b"END\r\n", peer),
            Error::Io { .. }
        ));
    }
}
