//! One client connection: the handshake (A.4), the inbound loop (incremental framing, dispatch,
//! client timeout), and the writer (bounded outbound queue, keep-alive pings, Close messages).
//!
//! Spawned by `listener` per WebSocket. Errors end this connection only. Ownership: the reader
//! owns the read side (WebSocket frames are read by `ws::WsReader`) and runs invocations one at a
//! time (ASP.NET Core's default of one parallel invocation per client). Everything sent
//! (broadcasts, completions, pongs, pings, the final Close) goes through the connection's
//! `Outbox`: on a plain TCP socket a sender writes it there and then when nothing is queued, else
//! it queues and the writer task writes it; on TLS the writer task writes everything.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::NodeShared;
use super::dispatch::{self, Caller, HubError};
use super::registry::{CloseReason, Flush, Outbox, OutboxReceiver, Target, Wake, WsFrame, frame_of};
use super::stats::Stats;
use super::ws::{self, Inbound, WsReader};
use crate::protocol::{
    CompletionResult, FrameError, FrameKind, Framer, HubMessage, MAX_PROTOCOL_VERSION, Protocol, handshake,
};

/// How long the final Close may take to write before the socket is simply dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the node checks whether a connection's keep-alive ping is due (ASP.NET Core: every
/// 1 s).
const KEEP_ALIVE_TICK: Duration = Duration::from_secs(1);

/// Bytes read from the socket at once. A stack buffer, alive only within one poll (so it is
/// not part of any idle connection's memory); what it holds goes straight into the framer.
const READ_CHUNK: usize = 1024;

/// An upgraded WebSocket, as the listener hands it over.
pub(crate) enum Socket {
    /// A plain TCP connection (the node's own listener): deliveries write it directly (see
    /// `registry::Outbox`). `early` holds bytes the HTTP server read past the upgrade request.
    Tcp { stream: TcpStream, early: Bytes },
    /// Anything else (TLS): read through one half, written by the writer task only.
    Io(TokioIo<Upgraded>),
}

enum ReadSide {
    Tcp(Arc<TcpStream>),
    Io(ReadHalf<TokioIo<Upgraded>>),
}

enum WriteSide {
    Tcp(Arc<TcpStream>),
    Io(WriteHalf<TokioIo<Upgraded>>),
}

/// What authentication (`--auth jwt`) decided about a connection; the default without it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Session {
    /// The token carries the admin role: may add/remove other connections to/from groups.
    pub admin: bool,
    /// When the token expires (plus the leeway): the connection is closed then with a Close
    /// naming the expiry. `None`: never (no auth, or `--no-close-on-token-expiry`).
    pub expires: Option<tokio::time::Instant>,
}

/// The Close error a connection gets when its token expires.
pub(crate) const TOKEN_EXPIRED: &str = "Connection closed: the access token expired (exp).";

enum HandshakeEnd {
    Done(Protocol),
    /// Reply with this error text and close.
    Reply(String),
    /// The client went away.
    Gone,
}

/// Runs a connection to its end. `id` is the public connection id; `user` the demo identity.
///
/// Memory: this future is what every idle connection holds, so it stays small: the socket is
/// split here and only the halves move into the task; no read buffer is kept between reads (see
/// `READ_CHUNK`); and the futures that run rarely (handshake, hub methods, connect and
/// disconnect bookkeeping, the goodbye) are boxed, so their state is allocated while they run
/// instead of widening every connection's task.
pub fn serve(
    socket: Socket,
    node: Arc<NodeShared>,
    id: Arc<str>,
    user: Option<String>,
    session: Session,
) -> impl Future<Output = ()> + Send {
    let span = tracing::debug_span!("connection", id = %id, user = user.as_deref().unwrap_or(""));
    let (read, write, early) = match socket {
        Socket::Tcp { stream, early } => {
            let stream = Arc::new(stream);
            (ReadSide::Tcp(stream.clone()), WriteSide::Tcp(stream), early)
        }
        Socket::Io(io) => {
            let (r, w) = tokio::io::split(io);
            (ReadSide::Io(r), WriteSide::Io(w), Bytes::new())
        }
    };
    run(read, write, early, node, id, user, session).instrument(span)
}

/// The reading side: the socket, the WebSocket frame reader and the SignalR framer.
struct Reader {
    side: ReadSide,
    ws: WsReader,
    framer: Framer,
}

/// What one read brought.
enum ReadStep {
    /// Message data went into the framer; these pings want an answer.
    Data { pings: Vec<Bytes> },
    /// The client started the close handshake.
    Close,
    /// The client broke RFC 6455.
    Violation(ws::Violation),
    /// End of stream or a transport error.
    Gone,
}

impl Reader {
    /// Feeds received bytes through the WebSocket reader into the framer.
    fn feed(ws: &mut WsReader, framer: &mut Framer, mut data: &mut [u8]) -> ReadStep {
        let mut pings = Vec::new();
        loop {
            let (used, event) = ws.feed(data, framer);
            match event {
                None => return ReadStep::Data { pings },
                Some(Inbound::Ping(payload)) => pings.push(payload),
                Some(Inbound::Close(_)) => return ReadStep::Close,
                Some(Inbound::Violation(what)) => return ReadStep::Violation(what),
            }
            data = &mut std::mem::take(&mut data)[used..];
        }
    }

    /// Reads once (waiting for data) and feeds what came.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReadStep> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = match &mut self.side {
            ReadSide::Tcp(stream) => loop {
                if ready!(stream.poll_read_ready(cx)).is_err() {
                    return Poll::Ready(ReadStep::Gone);
                }
                match stream.try_read(&mut chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(_) => return Poll::Ready(ReadStep::Gone),
                }
            },
            ReadSide::Io(half) => {
                let mut buf = ReadBuf::new(&mut chunk);
                if ready!(Pin::new(half).poll_read(cx, &mut buf)).is_err() {
                    return Poll::Ready(ReadStep::Gone);
                }
                buf.filled().len()
            }
        };
        if n == 0 {
            return Poll::Ready(ReadStep::Gone);
        }
        Poll::Ready(Self::feed(&mut self.ws, &mut self.framer, &mut chunk[..n]))
    }

    async fn read(&mut self) -> ReadStep {
        poll_fn(|cx| self.poll_read(cx)).await
    }
}

/// Writes `bytes` completely (before the writer exists: the handshake's answers).
async fn write_now(write: &mut WriteSide, bytes: &[u8]) -> std::io::Result<()> {
    match write {
        WriteSide::Tcp(stream) => {
            let mut at = 0;
            while at < bytes.len() {
                stream.writable().await?;
                match stream.try_write(&bytes[at..]) {
                    Ok(n) => at += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        WriteSide::Io(half) => {
            half.write_all(bytes).await?;
            half.flush().await
        }
    }
}

async fn run(
    read: ReadSide,
    mut write: WriteSide,
    early: Bytes,
    node: Arc<NodeShared>,
    id: Arc<str>,
    user: Option<String>,
    session: Session,
) {
    let mut reader = Reader {
        side: read,
        ws: WsReader::default(),
        framer: Framer::new(FrameKind::Text, node.config.max_message_size),
    };
    let end = Box::pin(async {
        tokio::select! {
            end = tokio::time::timeout(node.config.handshake_timeout, read_handshake(&mut reader, &mut write, early)) => {
                end.unwrap_or_else(|_| HandshakeEnd::Reply(handshake::CANCELED.to_string()))
            }
            _ = node.shutdown.cancelled() => HandshakeEnd::Gone,
        }
    })
    .await;
    let protocol = match end {
        HandshakeEnd::Done(protocol) => protocol,
        HandshakeEnd::Reply(text) => {
            Stats::inc(&node.stats.protocol_errors);
            tracing::debug!(error = %text, "handshake failed");
            let reply = handshake::error_response(&text);
            let _ = Box::pin(tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
                write_now(&mut write, WsFrame::text(&reply).wire()).await?;
                write_now(&mut write, WsFrame::close(ws::CLOSE_NORMAL).wire()).await
            }))
            .await;
            return;
        }
        HandshakeEnd::Gone => return,
    };

    let direct = match &write {
        WriteSide::Tcp(stream) => Some(stream.clone()),
        WriteSide::Io(_) => None,
    };
    let (outbox, rx) = Outbox::new(
        node.config.outbound_queue,
        &node.shutdown,
        direct,
        node.stats.clone(),
    );
    // The success reply goes in the negotiated format's frame type (A.3). It is queued before
    // the connection is registered, so whatever is sent to it meanwhile queues behind it, and
    // written by the writer once the subscriptions are confirmed (a client that sees `{}` is
    // reachable).
    let ok = match protocol {
        Protocol::Json => WsFrame::text(b"{}\x1e"),
        Protocol::MessagePack => WsFrame::binary(handshake::RESPONSE_OK),
    };
    outbox.hold(&ok);
    Box::pin(
        node.lifetime
            .on_connected(id.clone(), protocol, user.clone(), outbox.clone()),
    )
    .await;
    let gauge = match protocol {
        Protocol::Json => &node.stats.connections_json,
        Protocol::MessagePack => &node.stats.connections_messagepack,
    };
    Stats::inc(gauge);
    tracing::debug!(protocol = protocol.name(), "connected");

    reader.framer.set_kind(protocol.frame_kind());
    let writer = tokio::spawn(write_loop(write, rx, outbox.clone(), protocol).in_current_span());
    let end = read_loop(
        &mut reader,
        &node,
        &id,
        user.as_deref(),
        session,
        protocol,
        &outbox,
    )
    .await;
    match end {
        ReadEnd::ClientClosed => outbox.close(CloseReason {
            error: None,
            allow_reconnect: false,
            flush: true,
            goodbye: true,
            ws_code: ws::CLOSE_NORMAL,
        }),
        ReadEnd::Error(text) => {
            Stats::inc(&node.stats.protocol_errors);
            tracing::debug!(error = %text, "closing the connection with an error");
            outbox.close(CloseReason::error());
        }
        ReadEnd::Violation(v) => {
            Stats::inc(&node.stats.protocol_errors);
            tracing::debug!(error = v.what, code = v.code, "WebSocket protocol violation");
            outbox.close(CloseReason::transport(v.code));
        }
        ReadEnd::Expired => {
            tracing::debug!("closing the connection: its token expired");
            outbox.close(CloseReason {
                error: Some(TOKEN_EXPIRED.to_string()),
                allow_reconnect: false,
                flush: true,
                goodbye: true,
                ws_code: ws::CLOSE_NORMAL,
            });
        }
        ReadEnd::WsClosed => outbox.close(CloseReason::transport(ws::CLOSE_NORMAL)),
        ReadEnd::TransportGone => outbox.close(CloseReason::transport(ws::CLOSE_NORMAL)),
        // The node is shutting down (or a close already told the writer): make sure it stops.
        ReadEnd::Killed => outbox.stop_writer(),
    }
    let _ = writer.await;
    Box::pin(node.lifetime.on_disconnected(&id)).await;
    Stats::dec(gauge);
    tracing::debug!("disconnected");
}

async fn read_handshake(reader: &mut Reader, write: &mut WriteSide, early: Bytes) -> HandshakeEnd {
    let mut step = if early.is_empty() {
        None
    } else {
        let mut early = early.to_vec();
        Some(Reader::feed(&mut reader.ws, &mut reader.framer, &mut early))
    };
    loop {
        match step.take() {
            None => {}
            Some(ReadStep::Data { pings }) => {
                for ping in pings {
                    if write_now(write, WsFrame::pong(&ping).wire()).await.is_err() {
                        return HandshakeEnd::Gone;
                    }
                }
            }
            Some(ReadStep::Close | ReadStep::Gone) => return HandshakeEnd::Gone,
            Some(ReadStep::Violation(v)) => {
                tracing::debug!(
                    error = v.what,
                    code = v.code,
                    "WebSocket protocol violation in the handshake"
                );
                let _ = write_now(write, WsFrame::close(v.code).wire()).await;
                return HandshakeEnd::Gone;
            }
        }
        match reader.framer.next_frame() {
            Ok(Some(body)) => {
                let request = match handshake::parse_request(&body) {
                    Ok(request) => request,
                    Err(e) => {
                        tracing::debug!(error = %e, "malformed handshake request");
                        return HandshakeEnd::Reply(handshake::UNEXPECTED_ERROR.to_string());
                    }
                };
                let Some(protocol) = Protocol::from_name(&request.protocol) else {
                    return HandshakeEnd::Reply(handshake::unsupported_protocol(&request.protocol));
                };
                if request.version > MAX_PROTOCOL_VERSION {
                    return HandshakeEnd::Reply(handshake::unsupported_version(
                        &request.protocol,
                        request.version,
                    ));
                }
                return HandshakeEnd::Done(protocol);
            }
            Ok(None) => {}
            Err(_) => return HandshakeEnd::Reply(handshake::CANCELED.to_string()),
        }
        step = Some(reader.read().await);
    }
}

enum ReadEnd {
    /// The client sent a SignalR Close message (graceful).
    ClientClosed,
    /// A protocol error (bad frame, too large, client timeout): Close with an error.
    Error(String),
    /// The client broke the WebSocket protocol: WebSocket Close 1002.
    Violation(ws::Violation),
    /// The client started the WebSocket close handshake.
    WsClosed,
    /// The WebSocket ended.
    TransportGone,
    /// The writer or the node ended the connection.
    Killed,
    /// The client's token expired (`Session::expires`).
    Expired,
}

async fn read_loop(
    reader: &mut Reader,
    node: &Arc<NodeShared>,
    id: &Arc<str>,
    user: Option<&str>,
    session: Session,
    protocol: Protocol,
    outbox: &Outbox,
) -> ReadEnd {
    // The client timeout runs from the handshake: a client that completes it and then sends
    // nothing is closed after `client_timeout` (ASP.NET Core arms it only after the client's
    // first ping), so a silent socket cannot hold a place on the node for ever. Clients ping
    // every 15 s.
    let limits = &node.config.limits;
    let mut bucket = super::limits::TokenBucket::full(limits, std::time::Instant::now());
    let caller = Caller {
        connection_id: id,
        user,
        groups: match &node.config.auth {
            None => dispatch::GroupRights::Any,
            Some(_) if session.admin => dispatch::GroupRights::Any,
            Some(verifier) => dispatch::GroupRights::OwnOnly {
                admin_role: &verifier.settings().admin_role,
            },
        },
        limits,
    };
    // The token's expiry: one timer for the connection's life, armed only under `--auth`, not
    // a new one registered for every read.
    let mut expiry = session.expires.map(|at| Box::pin(tokio::time::sleep_until(at)));
    // The client timeout: one timer for the connection's life, moved on only when it fires
    // early (data came since it was set), instead of a timer registered and cancelled for
    // every read. `heard` is when data last came.
    let client_timeout = node.config.client_timeout;
    let mut heard = tokio::time::Instant::now();
    let silence = tokio::time::sleep_until(heard + client_timeout);
    tokio::pin!(silence);
    // Likewise registered with the token once, not for every read.
    let killed = outbox.killed().cancelled();
    tokio::pin!(killed);
    loop {
        loop {
            let body = match reader.framer.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(e @ FrameError::TooLarge { .. }) | Err(e @ FrameError::InvalidLength) => {
                    return ReadEnd::Error(e.to_string());
                }
            };
            Stats::inc(&node.stats.client_in);
            let message = match protocol.decode(&body) {
                Ok(Some(message)) => message,
                Ok(None) => continue, // unknown message types are ignored
                Err(e) => return ReadEnd::Error(e.to_string()),
            };
            match message {
                HubMessage::Ping => {}
                HubMessage::Close { .. } => return ReadEnd::ClientClosed,
                HubMessage::Invocation {
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                    ..
                } => {
                    let result = if !bucket.take(limits, std::time::Instant::now()) {
                        Stats::inc(&node.stats.invocations_limited);
                        Err(HubError::Hub(super::limits::rate_limited(limits)))
                    } else if stream_ids.as_ref().is_some_and(|s| !s.is_empty()) && dispatch::exists(&target)
                    {
                        let n = stream_ids.as_ref().map_or(0, Vec::len);
                        Err(HubError::Failed(format!(
                            "Client sent {n} stream(s), Hub method expects 0."
                        )))
                    } else {
                        // Boxed: the hub method's future lives only while it runs, instead
                        // of widening every idle connection's task (see `serve`).
                        Box::pin(dispatch::invoke(&node.lifetime, &caller, &target, arguments)).await
                    };
                    complete(protocol, outbox, node, invocation_id, &target, result);
                }
                HubMessage::StreamInvocation {
                    invocation_id,
                    target,
                    ..
                } => {
                    let error = if dispatch::exists(&target) {
                        HubError::NotStreaming
                    } else {
                        HubError::UnknownMethod
                    };
                    complete(protocol, outbox, node, Some(invocation_id), &target, Err(error));
                }
                completion @ HubMessage::Completion { .. } => {
                    if !Box::pin(node.lifetime.on_client_completion(id, protocol, &completion)).await {
                        tracing::debug!("completion for an unknown invocation ignored");
                    }
                }
                // No streams and no stateful reconnect: nothing to do for these.
                HubMessage::StreamItem { .. }
                | HubMessage::CancelInvocation { .. }
                | HubMessage::Ack { .. }
                | HubMessage::Sequence { .. } => {}
            }
        }

        let step = tokio::select! {
            () = &mut killed => return ReadEnd::Killed,
            _ = async {
                match expiry.as_mut() {
                    Some(expiry) => expiry.as_mut().await,
                    None => std::future::pending().await,
                }
            } => return ReadEnd::Expired,
            () = &mut silence => {
                let due = heard + client_timeout;
                if tokio::time::Instant::now() < due {
                    silence.as_mut().reset(due);
                    continue;
                }
                None
            }
            step = reader.read() => {
                heard = tokio::time::Instant::now();
                Some(step)
            }
        };
        match step {
            Some(ReadStep::Data { pings }) => {
                for ping in pings {
                    outbox.send_control(&WsFrame::pong(&ping));
                }
            }
            Some(ReadStep::Close) => return ReadEnd::WsClosed,
            Some(ReadStep::Violation(what)) => return ReadEnd::Violation(what),
            Some(ReadStep::Gone) => return ReadEnd::TransportGone,
            None => {
                return ReadEnd::Error(
                    "Server timeout elapsed without receiving a message from the client.".into(),
                );
            }
        }
    }
}

/// Sends the Completion of a blocking invocation; non-blocking ones get nothing, not even errors.
fn complete(
    protocol: Protocol,
    outbox: &Outbox,
    node: &NodeShared,
    invocation_id: Option<String>,
    target: &str,
    result: Result<Option<crate::protocol::Value>, HubError>,
) {
    let Some(invocation_id) = invocation_id else {
        if let Err(e) = result {
            tracing::debug!(%target, error = %e, "non-blocking invocation failed");
        }
        return;
    };
    let result = match result {
        Ok(Some(value)) => CompletionResult::Value(value),
        Ok(None) => CompletionResult::Void,
        Err(e) => {
            tracing::debug!(%target, error = %e, "invocation failed");
            CompletionResult::Error(e.completion_text(target))
        }
    };
    outbox.deliver(
        &frame_of(protocol, &HubMessage::completion(invocation_id, result)),
        &node.stats,
    );
}

/// The connection's writer: sends what deliveries could not write at once (see
/// `registry::Outbox`), the keep-alive pings (`keep_alive_loop` queues them) and the goodbye. It
/// has no timer of its own: it sleeps until something is queued or the connection is to end.
async fn write_loop(mut write: WriteSide, rx: OutboxReceiver, outbox: Outbox, protocol: Protocol) {
    let mut batch = VecDeque::new();
    let transport_ok = loop {
        match poll_fn(|cx| rx.poll_next(cx)).await {
            Wake::Stop => break true,
            // Each write races the stop: a client that stopped reading blocks the socket, and must
            // not pin this task once it has been told to go.
            Wake::Frames => {
                let written = tokio::select! {
                    biased;
                    r = write_queued(&mut write, &rx, &mut batch) => r,
                    _ = poll_fn(|cx| rx.poll_stopped(cx)) => break true,
                };
                if written.is_err() {
                    break false;
                }
            }
        }
    };
    if !transport_ok {
        outbox.close(CloseReason::transport(ws::CLOSE_NORMAL));
        return;
    }
    // No explicit reason means the node is shutting down: the client may reconnect elsewhere.
    let reason = outbox.close_reason().unwrap_or(CloseReason {
        error: None,
        allow_reconnect: true,
        flush: true,
        goodbye: true,
        ws_code: ws::CLOSE_NORMAL,
    });
    let goodbye = reason.goodbye.then(|| {
        frame_of(
            protocol,
            &HubMessage::Close {
                error: reason.error.clone(),
                allow_reconnect: reason.allow_reconnect,
            },
        )
    });
    let close = WsFrame::close(reason.ws_code);
    let mut last: Vec<&WsFrame> = goodbye.iter().collect();
    last.push(&close);
    rx.finish(reason.flush, &last);
    // The goodbye is best effort and bounded: a socket nobody reads would otherwise hold it forever.
    // Boxed: it runs once, at the end (see `serve` on memory).
    let _ = Box::pin(tokio::time::timeout(
        CLOSE_WRITE_TIMEOUT,
        write_queued(&mut write, &rx, &mut batch),
    ))
    .await;
}

/// Writes everything queued: on the direct socket with vectored writes as it becomes writable;
/// on any other stream frame by frame, then one flush.
async fn write_queued(
    write: &mut WriteSide,
    rx: &OutboxReceiver,
    batch: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    match write {
        WriteSide::Tcp(stream) => loop {
            match rx.flush_direct()? {
                Flush::Done => return Ok(()),
                Flush::Blocked => stream.writable().await?,
            }
        },
        WriteSide::Io(half) => {
            while rx.drain(batch) > 0 {
                while let Some(frame) = batch.pop_front() {
                    half.write_all(&frame).await?;
                }
                half.flush().await?;
            }
            Ok(())
        }
    }
}

/// The node's keep-alive: once per `KEEP_ALIVE_TICK`, every connection nothing was written to for
/// `keep_alive` gets a ping (`Outbox::keep_alive_tick`), until the node shuts down. One timer for
/// the node, not one per connection: a per-writer timer woke every connection's task every tick
/// (19,000 wake-ups a second at 19,000 connections; at 100 recipients a message, 5 task polls per
/// message in `scripts/fanout-profile.sh`'s callgrind run).
pub(super) async fn keep_alive_loop(node: Arc<NodeShared>) {
    let pings = [Protocol::Json, Protocol::MessagePack].map(|protocol| frame_of(protocol, &HubMessage::Ping));
    let mut tick = tokio::time::interval(KEEP_ALIVE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let keep_alive = node.config.keep_alive;
        node.registry
            .with_targets(Target::All { excluded: &[] }, |conns| {
                for conn in conns {
                    let ping = match conn.protocol {
                        Protocol::Json => &pings[0],
                        Protocol::MessagePack => &pings[1],
                    };
                    conn.outbox.keep_alive_tick(KEEP_ALIVE_TICK, keep_alive, ping);
                }
            });
    }
}
