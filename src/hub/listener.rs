//! The accept loop and the HTTP routes of a node (A.1): negotiate, the WebSocket transport, the
//! browser chat page and the monitor endpoints. Each accepted WebSocket becomes a `connection`
//! task tracked for shutdown; failures of one request or connection affect only that one.
//!
//! The accept loop is ours, not `axum::serve`, for two limits axum does not offer:
//! - the connection cap counts every accepted TCP connection (HTTP, WebSocket, idle): past it a
//!   new socket is closed at once, before anything is read, and counted (`refused`);
//! - a connection that has not sent complete request headers within the header read timeout is
//!   closed (hyper's `header_read_timeout`), so idle and half-sent sockets cannot hold descriptors.
//!
//! A connection's slot under the cap is reference-counted: the HTTP connection task holds it, and
//! a WebSocket upgrade takes a share into the WebSocket task, so the slot is released when the
//! socket really closes.
//!
//! With `--tls-cert`/`--tls-key` each accepted socket first goes through the TLS handshake, in its
//! own connection task and holding its slot, within the header read timeout (a socket that never
//! sends a ClientHello is closed like one that never sends headers; the request headers then get
//! their own header read timeout, so a socket is held at most twice that before a request). A failed handshake closes
//! that connection only, is counted (`tls_handshake_failures`) and logged at debug. A plain HTTP
//! request on the TLS port gets a plaintext `400` that says to use https://, so browsers, curl and
//! our client show the reason instead of a reset.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::task::TaskTracker;

use super::stats::Stats;
use super::{NodeShared, PendingToken, access, auth, connection, metrics, page, status};
use crate::protocol::negotiate;

/// Accepts connections until the node shuts down, then lets the HTTP connections finish (within
/// the shutdown grace period). Upgraded WebSockets are tracked by the node, not here.
pub async fn serve<L>(mut listener: L, node: Arc<NodeShared>)
where
    L: axum::serve::Listener<Io = tokio::net::TcpStream, Addr = SocketAddr>,
{
    let router = router(node.clone());
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = node.shutdown.cancelled() => break,
        };
        // Reserve first, so a burst of accepts cannot overshoot the cap.
        if node.live.fetch_add(1, Ordering::SeqCst) >= node.config.max_connections {
            node.live.fetch_sub(1, Ordering::SeqCst);
            Stats::inc(&node.stats.refused_connections);
            tracing::debug!(
                max = node.config.max_connections,
                "connection refused: at the cap"
            );
            drop(io);
            continue;
        }
        let ip = per_ip_key(peer.ip());
        if let Some(max) = node.per_ip_cap
            && !node.per_ip.try_take(ip, max)
        {
            node.live.fetch_sub(1, Ordering::SeqCst);
            Stats::inc(&node.stats.refused_per_ip);
            tracing::debug!(%ip, max, "connection refused: its address is at the per-IP cap");
            drop(io);
            continue;
        }
        let slot = ConnSlot(Arc::new(LiveSlot {
            node: node.clone(),
            ip: node.per_ip_cap.map(|_| ip),
        }));
        let Some(thread) = node.threads.next() else {
            connections.spawn(serve_any(io, router.clone(), slot, peer, node.clone()));
            continue;
        };
        // Another thread's runtime: the socket leaves this runtime's reactor and joins that one's,
        // so every wake-up of the connection happens on the thread that serves it.
        let io = match io.into_std() {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(error = %e, "an accepted socket could not be moved to its thread");
                continue;
            }
        };
        // The connection's task is made on its thread (only this small hand-over is made here), so
        // what it allocates comes from that thread's heap, and is freed to it.
        let (router, node, tracker) = (router.clone(), node.clone(), connections.clone());
        connections.spawn_on(
            async move {
                match tokio::net::TcpStream::from_std(io) {
                    Ok(io) => drop(tracker.spawn(serve_any(io, router, slot, peer, node))),
                    Err(e) => tracing::debug!(error = %e, "an accepted socket could not join its thread"),
                }
            },
            thread,
        );
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(node.config.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("some HTTP connections did not finish within the shutdown grace period");
    }
}

/// Serves one accepted socket: TLS first when the node serves HTTPS.
async fn serve_any(
    io: tokio::net::TcpStream,
    router: Router,
    slot: ConnSlot,
    peer: SocketAddr,
    node: Arc<NodeShared>,
) {
    match node.tls.clone() {
        Some(acceptor) => serve_tls(io, acceptor, router, slot, peer, node).await,
        None => serve_connection(io, router, slot, peer, node).await,
    }
}

/// Serves one HTTP/1.1 connection (and its upgrade, if any) with the header read timeout.
async fn serve_connection<I>(io: I, router: Router, slot: ConnSlot, peer: SocketAddr, node: Arc<NodeShared>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService { router, slot, peer };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(node.config.header_read_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = node.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests end this connection only.
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// The first byte of a TLS connection: a handshake record (ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How much of a plain HTTP request is read (to find its end) before answering it: the request
/// must be read, or closing the socket with unread bytes resets it and the client never sees the
/// answer. 16 KiB covers any negotiate or upgrade request.
const PLAIN_REQUEST_LIMIT: usize = 16 * 1024;

/// What a plain HTTP client on the TLS port is told.
const PLAIN_ON_TLS_PORT: &str = "This node serves HTTPS: use https:// (and wss:// for WebSockets).\n";

/// Runs the TLS handshake (bounded by the header read timeout and by shutdown), then serves the
/// connection over it. Failures end this connection only.
async fn serve_tls<I>(
    io: I,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    slot: ConnSlot,
    peer: SocketAddr,
    node: Arc<NodeShared>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limit = node.config.header_read_timeout;
    let handshake = tokio::select! {
        r = tokio::time::timeout(limit, handshake(io, acceptor)) => r,
        _ = node.shutdown.cancelled() => return,
    };
    let error = match handshake {
        Ok(Ok(stream)) => return serve_connection(stream, router, slot, peer, node).await,
        Ok(Err(error)) => error,
        Err(_) => format!("no TLS handshake within {limit:?}"),
    };
    // The socket is closed (dropped with the handshake); free its place before counting, so
    // whoever sees the count also finds the place free.
    drop(slot);
    Stats::inc(&node.stats.tls_handshake_failures);
    tracing::debug!(%error, "TLS handshake failed");
}

/// The TLS handshake, or the plaintext answer to a plain HTTP request.
async fn handshake<I>(
    mut io: I,
    acceptor: tokio_rustls::TlsAcceptor,
) -> Result<tokio_rustls::server::TlsStream<Prefixed<I>>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;

    let mut first = [0u8; 1];
    match io.read(&mut first).await {
        Ok(0) => return Err("closed before the handshake".to_string()),
        Ok(_) => {}
        Err(e) => return Err(format!("reading the ClientHello: {e}")),
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        answer_plain(&mut io, first[0]).await;
        return Err("a plaintext request on the TLS port (answered 400: use https://)".to_string());
    }
    acceptor
        .accept(Prefixed {
            first: Some(first[0]),
            inner: io,
        })
        .await
        .map_err(|e| crate::tls::explain_io(&e))
}

/// Reads the rest of a plain request's head (bounded), answers `400` in plain words and closes.
async fn answer_plain<I>(io: &mut I, first: u8)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut head = vec![first];
    let mut buf = [0u8; 2048];
    while head.len() < PLAIN_REQUEST_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{PLAIN_ON_TLS_PORT}",
        PLAIN_ON_TLS_PORT.len()
    );
    if io.write_all(response.as_bytes()).await.is_ok() {
        let _ = io.shutdown().await;
    }
}

/// A stream with the one byte already read (to tell TLS from plain HTTP) put back in front.
struct Prefixed<I> {
    first: Option<u8>,
    inner: I,
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(byte) = this.first.take() {
            if buf.remaining() == 0 {
                this.first = Some(byte);
                return std::task::Poll::Ready(Ok(()));
            }
            buf.put_slice(&[byte]);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router, with this connection's slot (see [`ConnSlot`]) and peer address (for
/// `access`: who may read the monitor endpoints) attached to every request.
struct ConnService {
    router: Router,
    slot: ConnSlot,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.slot.clone());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A Router is always ready (its `poll_ready` returns Ready); cloning it is a refcount.
        tower_service::Service::call(&mut self.router.clone(), request)
    }
}

/// A share of one TCP connection's place under the cap.
#[derive(Clone)]
pub(crate) struct ConnSlot(Arc<LiveSlot>);

pub fn router(node: Arc<NodeShared>) -> Router {
    let path = node.config.path.clone();
    // The monitor endpoints expose user and connection ids: `access` decides who may read them.
    // A route layer, so unknown paths stay plain 404s. Never inside the CORS layer: no page on
    // another origin may read them, whatever `--cors-origin` allows.
    let monitor = Router::new()
        .route("/switchboard/stats", get(status::stats_handler))
        .route("/switchboard/monitor", get(status::monitor_handler))
        .route("/switchboard/connections", get(status::connections_handler))
        .route("/metrics", get(metrics::handler))
        .route_layer(axum::middleware::from_fn_with_state(node.clone(), access::guard));
    // CORS wraps the hub routes only (negotiate and the transport path); a route layer, so it
    // also answers the preflight of a method the route does not serve (OPTIONS).
    let hub = Router::new()
        .route(&format!("{path}/negotiate"), post(negotiate_handler))
        .route(&path, get(hub_get).post(hub_post).delete(hub_delete))
        .route_layer(axum::middleware::from_fn_with_state(node.clone(), cors));
    Router::new()
        .route("/", get(page::index))
        .route("/assets/chat.js", get(page::script))
        .route("/assets/style.css", get(page::style))
        .merge(hub)
        .merge(monitor)
        .with_state(node)
}

/// CORS for browser clients served from another origin (the official JavaScript client sends
/// credentials, so the origin is echoed, never `*`). Preflights of allowed origins are answered
/// here; everything else passes through untouched. WebSocket upgrades are not subject to CORS.
async fn cors(State(node): State<Arc<NodeShared>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| {
            node.config
                .cors_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(o))
        })
        .and_then(|o| HeaderValue::from_str(o).ok());
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let mut response = if request.method() == Method::OPTIONS {
        let requested = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let h = preflight.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(requested) = requested {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        preflight
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// Query keys are matched case-insensitively, as ASP.NET Core does.
fn query<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Under `--auth jwt`: the request's identity, or the `401` it gets. The token comes from
/// `Authorization: Bearer`, else from the `access_token` query parameter (what the official
/// clients send on the WebSocket request, where browsers cannot set headers).
fn authenticate(
    verifier: &auth::Verifier,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<auth::Identity, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| auth::bearer(h.as_bytes()))
        .or_else(|| query(q, "access_token"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let error = match token {
        None => auth::AuthError::Missing,
        Some(token) => match verifier.verify(token, now) {
            Ok(identity) => return Ok(identity),
            Err(error) => error,
        },
    };
    tracing::debug!(reason = %error, "request refused: no valid token");
    let challenge = match error {
        auth::AuthError::Missing => HeaderValue::from_static("Bearer"),
        ref other => HeaderValue::from_str(&format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            other.to_string().replace('"', "'")
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\"")),
    };
    let mut response = text(StatusCode::UNAUTHORIZED, format!("{error}\n"));
    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    Err(Box::new(response))
}

/// The user id a connection gets: the token's under `--auth jwt`; else `?user=` where it is
/// trusted (a loopback listener, or `--trust-user-param`); else none (anonymous).
fn user_of(
    node: &NodeShared,
    identity: Option<&auth::Identity>,
    q: &HashMap<String, String>,
) -> Option<String> {
    if node.config.auth.is_some() {
        return identity.map(|i| i.user.clone());
    }
    if node.config.trust_user_param || !access::listens_beyond_loopback(node.local_addr) {
        return query(q, "user").filter(|u| !u.is_empty()).map(str::to_string);
    }
    None
}

async fn negotiate_handler(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(verifier) = &node.config.auth
        && let Err(refused) = authenticate(verifier, &headers, &q)
    {
        return *refused;
    }
    let version = match negotiate::select_version(query(&q, "negotiateVersion")) {
        Ok(version) => version,
        Err(error) => return json(negotiate::error_response(&error)),
    };
    let connection_id = negotiate::new_id();
    let token = if version >= 1 {
        negotiate::new_id()
    } else {
        connection_id.clone()
    };
    {
        let mut tokens = node.lock_tokens();
        // Tokens expire after the negotiate TTL; this bound keeps a flood of negotiates from
        // growing the map in between.
        if tokens.len() >= node.config.max_connections.saturating_mul(2).max(64) {
            Stats::inc(&node.stats.rejected_connections);
            return text(StatusCode::SERVICE_UNAVAILABLE, "Too many pending connections.");
        }
        tokens.insert(
            token.clone(),
            PendingToken {
                connection_id: connection_id.clone(),
                created: Instant::now(),
                active: false,
            },
        );
    }
    json(negotiate::response(version, &connection_id, &token))
}

async fn hub_get(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    conn_slot: Option<Extension<ConnSlot>>,
    mut request: Request,
) -> Response {
    let identity = match &node.config.auth {
        Some(verifier) => match authenticate(verifier, &headers, &q) {
            Ok(identity) => Some(identity),
            Err(refused) => return *refused,
        },
        None => None,
    };
    let user = user_of(&node, identity.as_ref(), &q);
    if let Some(user) = &user
        && user.len() > node.config.limits.max_user_id_bytes
    {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "The user id is {} bytes long; this node accepts at most {} (--max-user-id-bytes).\n",
                user.len(),
                node.config.limits.max_user_id_bytes
            ),
        );
    }
    let token = query(&q, "id").map(str::to_string);
    let upgrade = websocket_accept(&headers)
        .and_then(|accept| Some((accept, request.extensions_mut().remove::<OnUpgrade>()?)));
    let Some((accept, on_upgrade)) = upgrade else {
        let sse = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        let transport = if sse { "ServerSentEvents" } else { "LongPolling" };
        return text(
            StatusCode::NOT_FOUND,
            format!("{transport} transport not supported by this end point type"),
        );
    };
    if node.shutdown.is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "The node is shutting down.");
    }
    // The TCP connection already holds a slot under the cap (taken by the accept loop); the
    // WebSocket task keeps a share of it so the slot lives as long as the socket.
    let slot = match conn_slot {
        Some(Extension(slot)) => slot,
        // Served without our accept loop (never in this crate): reserve a slot here.
        None => {
            if node.live.fetch_add(1, Ordering::SeqCst) >= node.config.max_connections {
                node.live.fetch_sub(1, Ordering::SeqCst);
                Stats::inc(&node.stats.rejected_connections);
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "The node is at its limit of {} connections.",
                        node.config.max_connections
                    ),
                );
            }
            ConnSlot(Arc::new(LiveSlot {
                node: node.clone(),
                ip: None,
            }))
        }
    };
    let connection_id = match &token {
        None => negotiate::new_id(),
        Some(token) => {
            let mut tokens = node.lock_tokens();
            match tokens.get_mut(token) {
                None => return text(StatusCode::NOT_FOUND, "No Connection with that ID"),
                Some(entry) if entry.active => {
                    return text(
                        StatusCode::CONFLICT,
                        "Connection ID is already in use by another transport.",
                    );
                }
                Some(entry) => {
                    entry.active = true;
                    entry.connection_id.clone()
                }
            }
        }
    };
    let session = connection::Session {
        admin: identity
            .as_ref()
            .zip(node.config.auth.as_ref())
            .is_some_and(|(i, v)| i.has_role(&v.settings().admin_role)),
        expires: identity
            .as_ref()
            .zip(node.config.auth.as_ref())
            .and_then(|(i, v)| {
                let settings = v.settings();
                settings
                    .close_on_expiry
                    .then(|| expiry_instant(i.expires, settings.leeway))
            }),
    };
    Stats::inc(&node.stats.connections_accepted);
    let tracker = node.tracker.clone();
    // The upgrade completes once this response is written: a short task waits for it, then the
    // connection gets a task of its own (so the wait's state does not live as long as it).
    node.tracker.clone().spawn(async move {
        let node = slot.0.node.clone();
        let socket = match on_upgrade.await {
            Ok(upgraded) => match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                Ok(parts) => connection::Socket::Tcp {
                    stream: parts.io.into_inner(),
                    early: parts.read_buf,
                },
                Err(upgraded) => connection::Socket::Io(TokioIo::new(upgraded)),
            },
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                if let Some(token) = token {
                    node.lock_tokens().remove(&token);
                }
                return;
            }
        };
        let connection = connection::serve(socket, node.clone(), connection_id.into(), user, session);
        // `map`, not an `async` block: awaiting a captured future would keep it twice in the
        // task (the capture and the awaited copy), doubling every connection's task.
        tracker.spawn(connection.map(move |()| {
            if let Some(token) = token {
                node.lock_tokens().remove(&token);
            }
            drop(slot);
        }));
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// When a connection whose token expires at `exp` (Unix seconds) is closed: `exp` plus the
/// leeway (the token is accepted that long, so the connection lives as long).
fn expiry_instant(exp: u64, leeway: std::time::Duration) -> tokio::time::Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = std::time::Duration::from_secs(exp).saturating_sub(now_unix) + leeway;
    // Far-future tokens: cap the timer (a year) so the addition cannot overflow.
    tokio::time::Instant::now() + left.min(std::time::Duration::from_secs(365 * 24 * 3600))
}

/// The `Sec-WebSocket-Accept` value for a WebSocket upgrade request (RFC 6455 4.2.1), or `None`
/// when the request is not one.
fn websocket_accept(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// One place under the connection cap (and under its address's cap, when one is in force),
/// released when dropped (the connection ended).
struct LiveSlot {
    node: Arc<NodeShared>,
    ip: Option<std::net::IpAddr>,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.node.live.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = self.ip {
            self.node.per_ip.release(ip);
        }
    }
}

/// The address a per-IP count is kept under: an IPv4-mapped IPv6 address counts as its IPv4
/// address, so a dual-stack listener cannot be used to get two allowances.
fn per_ip_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

async fn hub_post(State(node): State<Arc<NodeShared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    match query(&q, "id") {
        Some(token) if node.lock_tokens().contains_key(token) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST requests are not allowed for WebSocket connections.",
        ),
        _ => text(StatusCode::NOT_FOUND, "No Connection with that ID"),
    }
}

async fn hub_delete(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match query(&q, "id") {
        Some(token) if node.lock_tokens().contains_key(token) => text(
            StatusCode::BAD_REQUEST,
            "Cannot terminate this connection using the DELETE endpoint.",
        ),
        _ => text(StatusCode::NOT_FOUND, "No Connection with that ID"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_peeked_byte_comes_back_first_then_the_stream() {
        let (mut near, far) = tokio::io::duplex(64);
        near.write_all(b"bcd").await.unwrap();
        drop(near);
        let mut prefixed = Prefixed {
            first: Some(b'a'),
            inner: far,
        };
        let mut got = Vec::new();
        prefixed.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abcd");
    }

    #[tokio::test]
    async fn a_plain_request_on_the_tls_port_gets_a_400_that_says_https() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client
            .write_all(b"POST /chat/negotiate HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 1];
        server.read_exact(&mut first).await.unwrap();
        answer_plain(&mut server, first[0]).await;
        drop(server);
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");
        assert!(response.ends_with(PLAIN_ON_TLS_PORT), "{response}");
    }
}
