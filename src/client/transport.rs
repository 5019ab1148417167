//! The byte stream under every client exchange: plain TCP for `http://`/`ws://`, TLS over TCP
//! for `https://`/`wss://`, and what the client trusts when it speaks TLS ([`NodeTls`]).
//!
//! TLS goes through `crate::tls` (rustls on ring, the system's roots plus an optional CA file,
//! ALPN `http/1.1` because WebSockets need HTTP/1.1). A plain connection stays a bare
//! `TcpStream` inside [`NodeStream`], with no boxing or dynamic dispatch.
//!
//! Used by `client::http` and the WebSocket set-up in `client`; uses `crate::tls` only.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ClientError;
use super::url::Target;
use crate::tls::{self, ClientTls};

/// What a client trusts for `https://` and `wss://` nodes: a ready rustls connector (files read
/// once, when it is built) speaking ALPN `http/1.1`. Cheap to clone.
#[derive(Clone)]
pub struct NodeTls {
    connector: tls::Connector,
    description: String,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeTls").field(&self.description).finish()
    }
}

impl NodeTls {
    /// Builds the connector: the system's roots plus `options.ca`, a client certificate if
    /// given, no verification with `insecure`. A missing or malformed file is an error naming it.
    pub fn new(options: &ClientTls) -> Result<NodeTls, tls::TlsError> {
        Ok(NodeTls {
            connector: tls::Connector::new(options)?.with_alpn(&[b"http/1.1"]),
            description: options.describe(),
        })
    }

    /// The system's roots only (what a client without `--node-ca` trusts), built once per
    /// process on first use.
    pub fn system() -> Result<NodeTls, tls::TlsError> {
        static SYSTEM: OnceLock<Result<NodeTls, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| NodeTls::new(&ClientTls::default()).map_err(|e| e.to_string()))
            .clone()
            .map_err(tls::TlsError::Config)
    }

    /// One line for status panels and logs ("TLS, verified, CA /path/ca.pem").
    pub fn describe(&self) -> &str {
        &self.description
    }
}

/// A connection to a node: plain TCP or TLS over TCP.
pub enum NodeStream {
    Plain(TcpStream),
    Tls(tls::BoxedIo),
}

impl std::fmt::Debug for NodeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeStream::Plain(_) => "NodeStream::Plain",
            NodeStream::Tls(_) => "NodeStream::Tls",
        })
    }
}

impl NodeStream {
    /// Whether this connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, NodeStream::Tls(_))
    }
}

/// Connects to `target` (TCP_NODELAY set: requests and hub messages are small and latency
/// matters more than packet count), then runs the TLS handshake when the URL asked for TLS, with
/// `tls` or else the system's roots. `url` only names the peer in errors. No deadline here: the
/// callers bound the whole exchange.
pub(crate) async fn connect(
    target: &Target,
    tls: Option<&NodeTls>,
    url: &str,
) -> Result<NodeStream, ClientError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| ClientError::Io {
            what: format!("connecting to {url}"),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(NodeStream::Plain(tcp));
    }
    let tls_error = |e: tls::TlsError| ClientError::Tls {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let system;
    let tls = match tls {
        Some(tls) => tls,
        None => {
            system = NodeTls::system().map_err(tls_error)?;
            &system
        }
    };
    let io = tls
        .connector
        .connect(&target.host, tcp)
        .await
        .map_err(tls_error)?;
    Ok(NodeStream::Tls(io))
}

impl AsyncRead for NodeStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NodeStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NodeStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            NodeStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            NodeStream::Plain(s) => s.is_write_vectored(),
            NodeStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NodeStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NodeStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
