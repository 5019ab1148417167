//! A small SignalR client over WebSockets (`http(s)://`, `ws(s)://`), for integration tests, the
//! demo's simulated chat users, `switchboard load` and the dashboard's probe connections.
//!
//! It owns: negotiate (`http`, a raw HTTP/1.1 exchange also used for the stats probe), the WebSocket
//! connection and the SignalR handshake (`connect`), and one background task per connection
//! (`connection`) that owns the socket: it splits inbound bytes into hub messages, routes
//! Completions to waiting [`HubSender::invoke`] calls, queues server→client invocations in a bounded
//! inbox, sends a Ping every keep-alive interval and gives up on a silent server.
//!
//! Every queue is bounded and every wait has a deadline: a full inbox drops the event and counts it
//! ([`HubClient::dropped`]); the command queue applies backpressure to senders with a timeout.
//! Nothing here panics on bad server data: it ends the connection with a
//! [`ClientEvent::Disconnected`] that says why.
//!
//! TLS (`https://`, `wss://`) goes through `crate::tls` ([`NodeTls`] in `transport`): the system's
//! roots, or what the caller passes in [`ClientOptions::tls`] (the dashboard's `--node-ca`).
//!
//! A bearer token ([`ClientOptions::token`], a `node_token::NodeToken`) goes as
//! `Authorization: Bearer …` on negotiate and on the WebSocket upgrade, never in the URL (a header
//! never lands in access logs); a 401 becomes [`ClientError::TokenRefused`] with the node's
//! one-line reason. A negotiate redirect to another origin drops the token (unless the redirect
//! brings its own `accessToken`), so a node cannot send it elsewhere.
//!
//! Uses `protocol`, `tls` and `node_token` only; must never depend on `hub`, `backplane` or `ui`.

mod connection;
pub mod http;
#[cfg(test)]
mod tests;
mod transport;
mod url;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Instrument;

use crate::node_token::NodeToken;
use crate::protocol::negotiate::NegotiateResponse;
use crate::protocol::{CompletionResult, FrameKind, Framer, HubMessage, Protocol, Value, handshake};

use connection::{Command, Driver, Shared};

pub use transport::{NodeStream, NodeTls};
pub use url::encode_component;

/// A WebSocket to a node, plain or over TLS.
pub type NodeWebSocket = WebSocketStream<NodeStream>;

/// How long [`ClientOptions::default`] allows for negotiate + WebSocket + handshake together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Events buffered for [`HubClient::recv`]. 1024 absorbs a burst of broadcasts while a test or a
/// simulated user is busy; beyond that events are dropped and counted rather than stalling the
/// socket (which would make the server count this client as slow).
pub const DEFAULT_INBOX_CAPACITY: usize = 1024;

/// The official clients' keep-alive: the server drops a client silent for 30 s (twice this).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The official clients' server timeout: twice the server's 15 s keep-alive.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an `invoke` waits for its Completion. The chat hub answers in microseconds; 15 s
/// covers a node stalled behind a reconnecting backplane without hanging the caller forever.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest inbound hub message (and WebSocket message) accepted. Servers cap client messages at
/// 32 KiB, but server→client messages carry other users' payloads plus overhead; 4 MiB bounds
/// memory per connection with a wide margin.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Outgoing frames queued for the socket task. Small: senders wait (with a deadline) rather than
/// piling up frames the socket cannot take.
const COMMAND_QUEUE: usize = 256;

/// How many negotiate redirects (`url` in the response) are followed, as the official clients do.
const MAX_REDIRECTS: usize = 5;

/// How a [`HubClient`] connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The hub protocol asked for in the handshake.
    pub protocol: Protocol,
    /// `false` = `skipNegotiation`: connect the WebSocket directly, without an `id` (the server
    /// creates the connection on the fly; the client never learns its connection id).
    pub negotiate: bool,
    /// Sent as the `user` query parameter on the negotiate and WebSocket URLs (URL-encoded).
    pub user: Option<String>,
    /// Deadline for negotiate + WebSocket upgrade + handshake.
    pub connect_timeout: Duration,
    /// Capacity of the event inbox (see [`DEFAULT_INBOX_CAPACITY`]).
    pub inbox_capacity: usize,
    /// Interval of the client's Ping when nothing else was sent.
    pub keep_alive: Duration,
    /// Silence after which the server is considered gone and the connection is ended.
    pub server_timeout: Duration,
    /// Deadline of one [`HubSender::invoke`], from queueing to Completion.
    pub invoke_timeout: Duration,
    /// More query parameters for the negotiate and WebSocket URLs (URL-encoded).
    pub extra_query: Vec<(String, String)>,
    /// What `https://`/`wss://` nodes are verified against; `None` is the system's roots.
    pub tls: Option<NodeTls>,
    /// Sent as `Authorization: Bearer …` on negotiate and the WebSocket upgrade (a hub with
    /// `--auth jwt`); its `Debug` is masked.
    pub token: Option<NodeToken>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            protocol: Protocol::Json,
            negotiate: true,
            user: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            server_timeout: DEFAULT_SERVER_TIMEOUT,
            invoke_timeout: DEFAULT_INVOKE_TIMEOUT,
            extra_query: Vec::new(),
            tls: None,
            token: None,
        }
    }
}

impl ClientOptions {
    /// The defaults with another protocol.
    pub fn with_protocol(protocol: Protocol) -> Self {
        ClientOptions {
            protocol,
            ..Self::default()
        }
    }
}

/// Something the server did, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A server→client invocation (`Clients.X.SendAsync(target, args)`).
    Invocation { target: String, arguments: Vec<Value> },
    /// The server's Close message; the connection ends right after it.
    Close {
        error: Option<String>,
        allow_reconnect: bool,
    },
    /// The connection ended (always the last event; delivered even if the inbox was full).
    Disconnected { reason: String },
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A TLS set-up or handshake failure, in words (`tls::explain_io`): an untrusted or expired
    /// certificate, a plaintext server, a missing CA file.
    #[error("{url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("malformed HTTP response from {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("negotiate at {url} failed with HTTP {status}: {body}")]
    Negotiate { url: String, status: u16, body: String },
    #[error("the server refused the negotiation: {0}")]
    NegotiateRefused(String),
    #[error("invalid negotiate response from {url}: {reason}")]
    NegotiateResponse { url: String, reason: String },
    #[error("WebSocket upgrade to {url} rejected with HTTP {status}: {body}")]
    UpgradeRejected { url: String, status: u16, body: String },
    #[error("WebSocket error while {what}: {source}")]
    WebSocket {
        what: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// HTTP 401 to a request that carried a bearer token: the node's one-line reason (never the
    /// token).
    #[error("{url}: the node refused the token: {reason}")]
    TokenRefused { url: String, reason: String },
    /// HTTP 401 to a request without a token.
    #[error("{url}: the node requires a token (--node-token or --node-jwt-secret-file): {reason}")]
    TokenRequired { url: String, reason: String },
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("timed out {0}")]
    Timeout(String),
    #[error("the connection is closed: {0}")]
    Closed(String),
}

impl ClientError {
    /// The error for a 401: the first line of the node's body, at most 200 characters, with the
    /// token (if the node echoed it) masked.
    fn unauthorized(url: &str, body: &str, token: Option<&NodeToken>) -> Self {
        let mut reason: String = body
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(200)
            .collect();
        if let Some(token) = token
            && !token.expose().is_empty()
        {
            reason = reason.replace(token.expose(), "***");
        }
        if reason.is_empty() {
            reason = "HTTP 401 without a reason".to_string();
        }
        let url = url.to_string();
        match token {
            Some(_) => ClientError::TokenRefused { url, reason },
            None => ClientError::TokenRequired { url, reason },
        }
    }

    fn websocket(what: impl Into<String>, source: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// Checks that `hub_url` is a URL this client can connect to (`http(s)://` or `ws(s)://`, host, port),
/// without connecting: for tools that take URLs on their command line.
pub fn check_hub_url(hub_url: &str) -> Result<(), ClientError> {
    url::parse(&url::websocket_url(hub_url, &[])?).map(|_| ())
}

/// String arguments as hub values: `str_args(&["room", "hello"])`.
pub fn str_args(args: &[&str]) -> Vec<Value> {
    args.iter().map(|a| Value::from(*a)).collect()
}

/// The cloneable sending half of a connection: invoke and send from any task. The connection
/// stays open while the [`HubClient`] or any `HubSender` exists (or until closed).
#[derive(Clone)]
pub struct HubSender {
    protocol: Protocol,
    invoke_timeout: Duration,
    cmd_tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// One SignalR connection: send with [`invoke`](Self::invoke) / [`send`](Self::send), receive
/// server events with [`recv`](Self::recv).
pub struct HubClient {
    sender: HubSender,
    connection_id: Option<String>,
    inbox_rx: mpsc::Receiver<ClientEvent>,
    /// Set once the final `Disconnected` has been handed out.
    finished: bool,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("protocol", &self.sender.protocol)
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// Connects to a hub (`http://127.0.0.1:PORT/chat`, or `https://`): negotiate (unless
    /// skipped), WebSocket, handshake, all within `opts.connect_timeout`.
    pub async fn connect(hub_url: &str, opts: ClientOptions) -> Result<HubClient, ClientError> {
        let span = tracing::debug_span!(
            "hub_client",
            url = %hub_url,
            protocol = opts.protocol.name(),
            connection_id = tracing::field::Empty
        );
        let deadline = opts.connect_timeout;
        let established = tokio::time::timeout(deadline, establish(hub_url, &opts))
            .instrument(span.clone())
            .await
            .map_err(|_| ClientError::Timeout(format!("after {deadline:?} connecting to {hub_url}")))??;
        if let Some(id) = &established.connection_id {
            span.record("connection_id", id.as_str());
        }
        tracing::debug!(parent: &span, "connected");

        let shared = Arc::new(Shared::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbox_tx, inbox_rx) = mpsc::channel(opts.inbox_capacity.max(1));
        let driver = Driver::new(
            established.ws,
            established.framer,
            opts.protocol,
            Arc::clone(&shared),
            inbox_tx,
            opts.keep_alive,
            opts.server_timeout,
        );
        let task = tokio::spawn(driver.run(cmd_rx).instrument(span));
        Ok(HubClient {
            sender: HubSender {
                protocol: opts.protocol,
                invoke_timeout: opts.invoke_timeout,
                cmd_tx,
                shared,
            },
            connection_id: established.connection_id,
            inbox_rx,
            finished: false,
            task,
        })
    }

    /// The connection id from negotiate; `None` with `negotiate: false`.
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    /// The protocol this connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.sender.protocol
    }

    /// A cloneable sending half, for use from other tasks.
    pub fn sender(&self) -> HubSender {
        self.sender.clone()
    }

    /// See [`HubSender::invoke`].
    pub async fn invoke(&self, target: &str, args: Vec<Value>) -> Result<CompletionResult, ClientError> {
        self.sender.invoke(target, args).await
    }

    /// See [`HubSender::send`].
    pub async fn send(&self, target: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.sender.send(target, args).await
    }

    /// See [`HubSender::send_raw`].
    pub async fn send_raw(&self, data: Vec<u8>, binary: bool) -> Result<(), ClientError> {
        self.sender.send_raw(data, binary).await
    }

    /// The next event. After the connection ended, yields one `Disconnected` and then `None`.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        if self.finished {
            return None;
        }
        match self.inbox_rx.recv().await {
            Some(event) => Some(event),
            None => {
                self.finished = true;
                Some(ClientEvent::Disconnected {
                    reason: self.sender.shared.end_reason(),
                })
            }
        }
    }

    /// [`recv`](Self::recv) with a deadline: `None` if nothing arrived within `d`.
    pub async fn recv_timeout(&mut self, d: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(d, self.recv()).await.ok().flatten()
    }

    /// An event that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        if self.finished {
            return None;
        }
        match self.inbox_rx.try_recv() {
            Ok(event) => Some(event),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                self.finished = true;
                Some(ClientEvent::Disconnected {
                    reason: self.sender.shared.end_reason(),
                })
            }
        }
    }

    /// Whether the socket task is still running.
    pub fn is_connected(&self) -> bool {
        !self.task.is_finished()
    }

    /// Events dropped because the inbox was full.
    pub fn dropped(&self) -> u64 {
        self.sender.shared.dropped()
    }

    /// Ping messages received from the server.
    pub fn pings_received(&self) -> u64 {
        self.sender.shared.pings()
    }

    /// Closes the WebSocket (a Close frame, then waits briefly for the server's) and ends the task.
    pub async fn close(self) {
        let (done_tx, done_rx) = oneshot::channel();
        let queued = tokio::time::timeout(
            connection::CLOSE_TIMEOUT,
            self.sender.cmd_tx.send(Command::Close { done: done_tx }),
        )
        .await;
        if matches!(queued, Ok(Ok(()))) {
            let _ = tokio::time::timeout(connection::CLOSE_TIMEOUT * 2, done_rx).await;
        }
        let task = self.task;
        if !task.is_finished() {
            // The task did not get to the close in time (blocked write): cut the socket.
            task.abort();
        }
        let _ = task.await;
    }
}

impl HubSender {
    /// A blocking invocation: sends an Invocation with a fresh id and waits for its Completion
    /// (the hub's error text comes back as `CompletionResult::Error`, not as `Err`).
    pub async fn invoke(&self, target: &str, args: Vec<Value>) -> Result<CompletionResult, ClientError> {
        let id = self.shared.next_invocation_id();
        let rx = self.shared.register(&id)?;
        // Removes the pending entry however this future ends (completion, timeout, cancel).
        let _pending = connection::PendingGuard::new(&self.shared, &id);
        let message = HubMessage::Invocation {
            headers: Vec::new(),
            invocation_id: Some(id.clone()),
            target: target.to_string(),
            arguments: args,
            stream_ids: None,
        };
        let frame = self.protocol.encode(&message);
        let limit = self.invoke_timeout;
        let wait = async {
            self.enqueue(frame, self.protocol.is_binary()).await?;
            rx.await
                .map_err(|_| ClientError::Closed(self.shared.end_reason()))
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(format!(
                "after {limit:?} waiting for the completion of {target:?} (invocation {id})"
            ))),
        }
    }

    /// A non-blocking invocation (no id, no Completion): returns once the frame is queued.
    pub async fn send(&self, target: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let frame = self.protocol.encode(&HubMessage::invocation(target, args));
        self.enqueue_within(frame, self.protocol.is_binary()).await
    }

    /// Sends `data` as-is in one WebSocket message (Binary or Text; Text need not be valid UTF-8),
    /// for tests that feed the server bad input.
    pub async fn send_raw(&self, data: Vec<u8>, binary: bool) -> Result<(), ClientError> {
        self.enqueue_within(data, binary).await
    }

    async fn enqueue_within(&self, data: Vec<u8>, binary: bool) -> Result<(), ClientError> {
        let limit = self.invoke_timeout;
        tokio::time::timeout(limit, self.enqueue(data, binary))
            .await
            .map_err(|_| ClientError::Timeout(format!("after {limit:?} queueing a frame for the socket")))?
    }

    async fn enqueue(&self, data: Vec<u8>, binary: bool) -> Result<(), ClientError> {
        self.cmd_tx
            .send(Command::Frame { data, binary })
            .await
            .map_err(|_| ClientError::Closed(self.shared.end_reason()))
    }
}

/// A connection right after the SignalR handshake, without a background task: for callers that
/// drive thousands of connections from their own tasks (`load`) and must keep per-connection
/// state small. The caller reads and writes `ws` itself (and answers nothing: no keep-alive).
pub struct Established {
    /// The WebSocket (plain or TLS), with the small read buffer of [`READ_BUFFER_SIZE`].
    pub ws: NodeWebSocket,
    /// Holds any bytes that followed the handshake response, set to the protocol's framing.
    pub framer: Framer,
    /// The connection id from negotiate; `None` with `negotiate: false`.
    pub connection_id: Option<String>,
}

/// Negotiate (unless skipped), WebSocket and handshake within `opts.connect_timeout`, and hands
/// the socket over (see [`Established`]). [`HubClient::connect`] does the same and then spawns
/// its socket task.
pub async fn connect_stream(hub_url: &str, opts: &ClientOptions) -> Result<Established, ClientError> {
    let deadline = opts.connect_timeout;
    tokio::time::timeout(deadline, establish(hub_url, opts))
        .await
        .map_err(|_| ClientError::Timeout(format!("after {deadline:?} connecting to {hub_url}")))?
}

async fn establish(hub_url: &str, opts: &ClientOptions) -> Result<Established, ClientError> {
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(user) = &opts.user {
        query.push(("user", user));
    }
    query.extend(opts.extra_query.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let mut hub_url = hub_url.to_string();
    let mut connection_id = None;
    let mut ws_query = query.clone();
    let transport_id;
    let mut token = opts.token.clone();
    if opts.negotiate {
        let negotiated = negotiate(&mut hub_url, &query, opts.tls.as_ref(), &mut token).await?;
        connection_id = Some(negotiated.0);
        transport_id = negotiated.1;
        ws_query.insert(0, ("id", transport_id.as_str()));
    }
    let ws_url = url::websocket_url(&hub_url, &ws_query)?;
    let authorization = token.as_ref().map(NodeToken::header_value);
    let headers = bearer_header(authorization.as_deref());
    let mut ws = match connect_ws(&ws_url, opts.tls.as_ref(), &headers).await {
        Err(ClientError::UpgradeRejected {
            url,
            status: 401,
            body,
        }) => {
            return Err(ClientError::unauthorized(&url, &body, token.as_ref()));
        }
        other => other?,
    };
    let framer = handshake_over(&mut ws, opts.protocol).await?;
    Ok(Established {
        ws,
        framer,
        connection_id,
    })
}

/// The request headers that present `authorization` (an `Authorization` value), if any: the same
/// on negotiate and on the WebSocket upgrade.
fn bearer_header(authorization: Option<&str>) -> Vec<(&'static str, &str)> {
    authorization.map(|a| ("Authorization", a)).into_iter().collect()
}

/// POSTs negotiate (following redirects), returns (connectionId, id for the transport URL) and
/// leaves the final hub URL in `hub_url`.
async fn negotiate(
    hub_url: &mut String,
    query: &[(&str, &str)],
    tls: Option<&NodeTls>,
    token: &mut Option<NodeToken>,
) -> Result<(String, String), ClientError> {
    for _ in 0..=MAX_REDIRECTS {
        let mut pairs = vec![("negotiateVersion", "1")];
        pairs.extend_from_slice(query);
        let url = url::negotiate_url(hub_url, &pairs);
        let authorization = token.as_ref().map(NodeToken::header_value);
        let headers = bearer_header(authorization.as_deref());
        let options = http::RequestOptions {
            tls,
            headers: &headers,
            ..http::RequestOptions::default()
        };
        let response = http::request_with("POST", &url, b"", options).await?;
        if response.status == 401 {
            return Err(ClientError::unauthorized(&url, &response.text(), token.as_ref()));
        }
        if response.status != 200 {
            return Err(ClientError::Negotiate {
                url,
                status: response.status,
                body: response.text(),
            });
        }
        let doc: NegotiateResponse = response.json().map_err(|e| ClientError::NegotiateResponse {
            url: url.clone(),
            reason: format!("{e}: {}", response.text()),
        })?;
        if let Some(error) = doc.error {
            return Err(ClientError::NegotiateRefused(error));
        }
        if let Some(redirect) = doc.url {
            tracing::debug!(%redirect, "negotiate redirect");
            if let Some(given) = doc.access_token.as_deref() {
                *token = NodeToken::new(given).ok();
            } else if !same_origin(hub_url, &redirect) {
                *token = None;
            }
            *hub_url = redirect;
            continue;
        }
        let invalid = |reason: &str| ClientError::NegotiateResponse {
            url: url.clone(),
            reason: reason.to_string(),
        };
        if doc.legacy_protocol_version.is_some() {
            return Err(invalid(
                "this is an ASP.NET SignalR (not ASP.NET Core) server, which this client does not support",
            ));
        }
        let transport_id = doc
            .transport_id()
            .ok_or_else(|| invalid("no connectionToken (v1) or connectionId (v0)"))?
            .to_string();
        let connection_id = doc.connection_id.ok_or_else(|| invalid("no connectionId"))?;
        return Ok((connection_id, transport_id));
    }
    Err(ClientError::NegotiateResponse {
        url: hub_url.clone(),
        reason: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// Whether two URLs share scheme (http/ws alike), host and port; anything unparsable differs.
fn same_origin(a: &str, b: &str) -> bool {
    let origin = |u: &str| {
        url::websocket_url(u, &[])
            .ok()
            .and_then(|ws| url::parse(&ws).ok())
            .map(|t| (t.tls, t.host.to_ascii_lowercase(), t.port))
    };
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// Initial WebSocket read buffer. tungstenite's default (128 KiB) is zero-filled on the first read,
/// so it would cost 128 KiB of RSS per idle connection; chat messages are a few hundred bytes, and a
/// larger frame reserves its full length on demand.
pub const READ_BUFFER_SIZE: usize = 4 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

async fn connect_ws(
    ws_url: &str,
    tls: Option<&NodeTls>,
    headers: &[(&str, &str)],
) -> Result<NodeWebSocket, ClientError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

    let target = url::parse(ws_url)?;
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| ClientError::websocket(format!("building the request for {ws_url}"), e))?;
    for (name, value) in headers {
        // The header's value may be a secret: the error names the header only.
        let invalid = || ClientError::Url {
            url: ws_url.to_string(),
            reason: format!("invalid request header {name:?}"),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        request.headers_mut().insert(name, value);
    }
    let stream = transport::connect(&target, tls, ws_url).await?;
    let is_tls = stream.is_tls();
    match tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config())).await {
        Ok((ws, _response)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(ClientError::UpgradeRejected {
            url: ws_url.to_string(),
            status: response.status().as_u16(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Io(e)) if is_tls => Err(ClientError::Tls {
            url: ws_url.to_string(),
            reason: crate::tls::explain_io(&e),
        }),
        Err(e) => Err(ClientError::websocket(format!("upgrading {ws_url}"), e)),
    }
}

/// Opens a bare WebSocket (no negotiate, no handshake) to an `http(s)://` or `ws(s)://` URL,
/// within [`DEFAULT_CONNECT_TIMEOUT`]: for tests that need to misbehave (bad handshakes, raw
/// frames), and the dashboard's monitor link. `https`/`wss` are verified against the system's
/// roots; see [`connect_raw_ws_with`] to pass a CA and headers.
pub async fn connect_raw_ws(url: &str) -> Result<NodeWebSocket, ClientError> {
    connect_raw_ws_with(url, None, &[]).await
}

/// [`connect_raw_ws`] verifying `https`/`wss` nodes against `tls` (`None`: the system's roots),
/// with extra request headers (the dashboard's monitor link sends `Authorization: Bearer …` to a
/// node with a monitor token).
pub async fn connect_raw_ws_with(
    url: &str,
    tls: Option<&NodeTls>,
    headers: &[(&str, &str)],
) -> Result<NodeWebSocket, ClientError> {
    let ws_url = url::websocket_url(url, &[])?;
    tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, connect_ws(&ws_url, tls, headers))
        .await
        .map_err(|_| {
            ClientError::Timeout(format!(
                "after {DEFAULT_CONNECT_TIMEOUT:?} connecting to {ws_url}"
            ))
        })?
}

/// Sends the handshake request and reads WebSocket messages until the handshake response. Returns
/// the framer, switched to the protocol's framing, holding whatever followed the response.
async fn handshake_over(ws: &mut NodeWebSocket, protocol: Protocol) -> Result<Framer, ClientError> {
    use futures_util::{SinkExt, StreamExt};

    let request = handshake::request(protocol.name(), 1);
    let text = String::from_utf8(request)
        .map_err(|_| ClientError::Handshake("the handshake request is not UTF-8".to_string()))?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| ClientError::websocket("sending the handshake", e))?;

    let mut framer = Framer::new(FrameKind::Text, MAX_MESSAGE_SIZE);
    loop {
        match framer.next_frame() {
            Ok(Some(body)) => {
                return match handshake::parse_response(&body) {
                    Ok(None) => {
                        framer.set_kind(protocol.frame_kind());
                        Ok(framer)
                    }
                    Ok(Some(error)) => Err(ClientError::Handshake(error)),
                    Err(e) => Err(ClientError::Handshake(format!("invalid handshake response: {e}"))),
                };
            }
            Ok(None) => {}
            Err(e) => return Err(ClientError::Handshake(format!("handshake response: {e}"))),
        }
        match ws.next().await {
            Some(Ok(Message::Text(text))) => framer.push(text.as_bytes()),
            Some(Ok(Message::Binary(data))) => framer.push(&data),
            Some(Ok(Message::Close(frame))) => {
                return Err(ClientError::Handshake(format!(
                    "the server closed the WebSocket before the handshake response ({})",
                    connection::describe_close(frame.as_ref())
                )));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ClientError::websocket("reading the handshake response", e)),
            None => {
                return Err(ClientError::Handshake(
                    "the connection ended before the handshake response".to_string(),
                ));
            }
        }
    }
}
