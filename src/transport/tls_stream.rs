//! TLS stream adapters (feature `tls`): an established TLS session over TCP, with a second
//! handle on the TCP socket so that the connection task can peek for a server close while the
//! session is split into halves. The handshake and its name policy belong to [`crate::tls`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::{io_error, socket_closed, ReadSide, WriteSide};
use crate::error::{Error, Peer, TlsErrorKind};
use crate::tls::{rustls_failure, TlsContext};

/// The write half of a TLS connection.
pub(crate) type TlsWriteHalf = WriteHalf<TlsStream<TcpStream>>;

/// An established TLS connection and a second handle on its TCP socket.
pub(crate) struct TlsSocket {
    stream: TlsStream<TcpStream>,
    probe: socket2::Socket,
    client_certificate: bool,
}

impl TlsSocket {
    /// Runs the handshake of `tls` over `tcp` with the server known as `host`.
    pub(crate) async fn handshake(
        tls: &TlsContext,
        tcp: TcpStream,
        host: &str,
        peer: Peer<'_>,
        deadline: Instant,
    ) -> Result<TlsSocket, Error> {
        // A second handle on the socket, to peek at it while the TLS stream is split.
        let probe = socket2::SockRef::from(&tcp)
            .try_clone()
            .map_err(|e| Error::Tls {
                node: peer.id(),
                kind: TlsErrorKind::Other,
                message: Arc::from(format!("cannot duplicate the socket: {e}")),
            })?;
        let stream = tls.handshake(tcp, host, peer, deadline).await?;
        Ok(TlsSocket {
            stream,
            probe,
            client_certificate: tls.presents_client_certificate(),
        })
    }

    /// Splits the connection into halves the connection task can drive concurrently.
    pub(crate) fn split(self) -> (TlsReadHalf, TlsWriteHalf) {
        let (read, write) = tokio::io::split(self.stream);
        (
            TlsReadHalf {
                read,
                probe: self.probe,
                client_certificate: self.client_certificate,
            },
            write,
        )
    }
}

impl AsyncRead for TlsSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
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

/// The read half of a TLS connection, with the TCP socket underneath for
/// [`ReadSide::peer_closed`].
pub(crate) struct TlsReadHalf {
    read: ReadHalf<TlsStream<TcpStream>>,
    probe: socket2::Socket,
    client_certificate: bool,
}

impl AsyncRead for TlsReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl ReadSide for TlsReadHalf {
    const PLAINTEXT: bool = false;

    /// Peeks at the TCP socket under the TLS session. A server that sent a TLS close_notify
    /// before closing looks open here; the next read then finds the close.
    fn peer_closed(&self) -> bool {
        socket_closed(&self.probe)
    }

    fn failure(&self, e: std::io::Error, peer: Peer<'_>) -> Error {
        match rustls_failure(&e, peer, self.client_certificate, "") {
            Some(error) => error,
            None => io_error(peer, e),
        }
    }
}

impl WriteSide for TlsWriteHalf {
    const NEEDS_FLUSH: bool = true;
}
