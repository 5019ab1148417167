//! One client connection: the handshake (A.4), the inbound loop (incremental framing, dispatch,
//! client timeout), and the writer (bounded outbound queue, keep-alive pings, Close messages).
//!
//! Spawned by `listener` per WebSocket. Errors end this connection only. Ownership: the reader
//! owns the stream half and runs invocations one at a time (ASP.NET Core's default of one
//! parallel invocation per client); the writer owns the sink half and is the only task that
//! writes to the socket, so everything (broadcasts, completions, pings, the final Close) goes
//! through the queue or the writer's own close path.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::poll_fn;
use tracing::Instrument;

use super::NodeShared;
use super::dispatch::{self, Caller, HubError};
use super::registry::{CloseReason, Outbox, OutboxReceiver, Wake, WsFrame, frame_of, text_bytes};
use super::stats::Stats;
use crate::protocol::{
    CompletionResult, FrameError, FrameKind, Framer, HubMessage, MAX_PROTOCOL_VERSION, Protocol, handshake,
};

/// Most frames written before one flush: batching writes under load without starving pings (and
/// what the writer moves out of the queue at once).
const WRITE_BATCH: usize = 64;

/// How long the final Close may take to write before the socket is simply dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the writer checks whether a keep-alive ping is due (ASP.NET Core: every 1 s).
const KEEP_ALIVE_TICK: Duration = Duration::from_secs(1);

fn to_message(frame: WsFrame) -> Message {
    match frame {
        WsFrame::Text(text) => Message::Text(text),
        WsFrame::Binary(bin) => Message::Binary(bin),
    }
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

enum HandshakeEnd {
    Done(Protocol),
    /// Reply with this error text and close.
    Reply(String),
    /// The client went away.
    Gone,
}

/// Runs a connection to its end. `id` is the public connection id; `user` the demo identity.
///
/// Memory: this future is what every idle connection holds, so it stays small. It is a plain
/// function (an `async fn` would keep the 368-byte `WebSocket` argument in its state for the whole
/// connection); the socket is split here and only the halves move into the task; and the futures
/// that run rarely (handshake, hub methods, connect and disconnect bookkeeping, the goodbye) are
/// boxed, so their state is allocated while they run instead of widening every connection's task.
pub fn serve(
    socket: WebSocket,
    node: Arc<NodeShared>,
    id: Arc<str>,
    user: Option<String>,
) -> impl Future<Output = ()> + Send {
    let span = tracing::debug_span!("connection", id = %id, user = user.as_deref().unwrap_or(""));
    let (sink, stream) = socket.split();
    run(sink, stream, node, id, user).instrument(span)
}

async fn run(mut sink: Sink, mut stream: Stream, node: Arc<NodeShared>, id: Arc<str>, user: Option<String>) {
    let mut framer = Framer::new(FrameKind::Text, node.config.max_message_size);

    let end = Box::pin(async {
        tokio::select! {
            end = tokio::time::timeout(node.config.handshake_timeout, read_handshake(&mut stream, &mut framer)) => {
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
            let _ = sink.send(Message::Text(text_bytes(reply))).await;
            let _ = sink.send(close_frame()).await;
            return;
        }
        HandshakeEnd::Gone => return,
    };

    let (outbox, rx) = Outbox::new(node.config.outbound_queue, &node.shutdown);
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

    // The success reply goes in the negotiated format's frame type (A.3).
    let ok = match protocol {
        Protocol::Json => Message::Text(Utf8Bytes::from_static("{}\u{1e}")),
        Protocol::MessagePack => Message::Binary(Bytes::from_static(handshake::RESPONSE_OK)),
    };
    if sink.send(ok).await.is_ok() {
        framer.set_kind(protocol.frame_kind());
        let writer = tokio::spawn(
            write_loop(sink, rx, outbox.clone(), protocol, node.config.keep_alive).in_current_span(),
        );
        let end = read_loop(
            &mut stream,
            &mut framer,
            &node,
            &id,
            user.as_deref(),
            protocol,
            &outbox,
        )
        .await;
        match end {
            ReadEnd::ClientClosed => outbox.close(CloseReason {
                error: None,
                allow_reconnect: false,
                flush: true,
            }),
            ReadEnd::Error(text) => {
                Stats::inc(&node.stats.protocol_errors);
                tracing::debug!(error = %text, "closing the connection with an error");
                outbox.close(CloseReason::error());
            }
            ReadEnd::TransportGone => outbox.close(CloseReason {
                error: None,
                allow_reconnect: true,
                flush: false,
            }),
            // The node is shutting down (or a close already told the writer): make sure it stops.
            ReadEnd::Killed => outbox.stop_writer(),
        }
        let _ = writer.await;
    }
    Box::pin(node.lifetime.on_disconnected(&id)).await;
    Stats::dec(gauge);
    tracing::debug!("disconnected");
}

fn close_frame() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1000,
        reason: Utf8Bytes::from_static(""),
    }))
}

async fn read_handshake(stream: &mut Stream, framer: &mut Framer) -> HandshakeEnd {
    loop {
        match framer.next_frame() {
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
        match stream.next().await {
            Some(Ok(Message::Text(text))) => framer.push(text.as_bytes()),
            Some(Ok(Message::Binary(bin))) => framer.push(&bin),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return HandshakeEnd::Gone,
        }
    }
}

enum ReadEnd {
    /// The client sent a Close message (graceful).
    ClientClosed,
    /// A protocol error (bad frame, too large, client timeout): Close with an error.
    Error(String),
    /// The WebSocket ended.
    TransportGone,
    /// The writer or the node ended the connection.
    Killed,
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    stream: &mut Stream,
    framer: &mut Framer,
    node: &Arc<NodeShared>,
    id: &Arc<str>,
    user: Option<&str>,
    protocol: Protocol,
    outbox: &Outbox,
) -> ReadEnd {
    // ASP.NET Core arms the client timeout only after the first Ping from the client (A.6.3).
    let mut timeout_armed = false;
    let caller = Caller {
        connection_id: id,
        user,
    };
    loop {
        loop {
            let body = match framer.next_frame() {
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
                HubMessage::Ping => timeout_armed = true,
                HubMessage::Close { .. } => return ReadEnd::ClientClosed,
                HubMessage::Invocation {
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                    ..
                } => {
                    let result =
                        if stream_ids.as_ref().is_some_and(|s| !s.is_empty()) && dispatch::exists(&target) {
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

        let next = tokio::select! {
            _ = outbox.killed().cancelled() => return ReadEnd::Killed,
            next = next_message(stream, timeout_armed.then_some(node.config.client_timeout)) => next,
        };
        match next {
            Next::Data(bytes) => framer.push(&bytes),
            Next::Text(text) => framer.push(text.as_bytes()),
            Next::Skip => {}
            Next::Closed => return ReadEnd::TransportGone,
            Next::TimedOut => {
                return ReadEnd::Error(
                    "Server timeout elapsed without receiving a message from the client.".into(),
                );
            }
        }
    }
}

enum Next {
    Data(Bytes),
    Text(Utf8Bytes),
    Skip,
    Closed,
    TimedOut,
}

async fn next_message(stream: &mut Stream, timeout: Option<Duration>) -> Next {
    let next = match timeout {
        Some(limit) => match tokio::time::timeout(limit, stream.next()).await {
            Ok(next) => next,
            Err(_) => return Next::TimedOut,
        },
        None => stream.next().await,
    };
    match next {
        Some(Ok(Message::Text(text))) => Next::Text(text),
        Some(Ok(Message::Binary(bin))) => Next::Data(bin),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Skip,
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Next::Closed,
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
        frame_of(protocol, &HubMessage::completion(invocation_id, result)),
        &node.stats,
    );
}

async fn write_loop(
    mut sink: Sink,
    rx: OutboxReceiver,
    outbox: Outbox,
    protocol: Protocol,
    keep_alive: Duration,
) {
    let ping = frame_of(protocol, &HubMessage::Ping);
    // Keep-alive without a clock read per write: a frame sent since the last tick resets the idle
    // time; each tick without one adds a tick to it.
    let mut sent_since_tick = false;
    let mut idle = Duration::ZERO;
    let mut tick = Tick::new();
    let mut batch = VecDeque::new();
    let transport_ok = loop {
        // Biased: queued frames are taken before the tick is even polled (the tick only matters
        // when the queue is empty); the stop wins over frames inside `poll_next`.
        let wake = tokio::select! {
            biased;
            wake = poll_fn(|cx| rx.poll_next(cx, &mut batch, WRITE_BATCH)) => Some(wake),
            _ = poll_fn(|cx| tick.poll_due(cx)) => None,
        };
        let result = match wake {
            Some(Wake::Stop) => break true,
            // Each write races the stop: a client that stopped reading blocks the socket, and must
            // not pin this task once it has been told to go. The write goes first: it usually
            // completes at once, and the stop is seen at the top of the loop anyway.
            Some(Wake::Frames) => tokio::select! {
                biased;
                r = write_batch(&mut sink, &mut batch) => r,
                _ = poll_fn(|cx| rx.poll_stopped(cx)) => break true,
            },
            None => {
                if std::mem::take(&mut sent_since_tick) {
                    idle = Duration::ZERO;
                    continue;
                }
                idle += KEEP_ALIVE_TICK;
                if idle < keep_alive {
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = poll_fn(|cx| rx.poll_stopped(cx)) => break true,
                    r = sink.send(to_message(ping.clone())) => r,
                }
            }
        };
        if result.is_err() {
            break false;
        }
        sent_since_tick = true;
        idle = Duration::ZERO;
    };
    if !transport_ok {
        outbox.close(CloseReason {
            error: None,
            allow_reconnect: true,
            flush: false,
        });
        return;
    }
    // No explicit reason means the node is shutting down: the client may reconnect elsewhere.
    let reason = outbox.close_reason().unwrap_or(CloseReason {
        error: None,
        allow_reconnect: true,
        flush: true,
    });
    // The goodbye is best effort and bounded: a socket nobody reads would otherwise hold it forever.
    // Boxed: it runs once, at the end (see `serve` on memory).
    let _ = Box::pin(tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
        if reason.flush {
            batch.clear();
            rx.drain(&mut batch, usize::MAX);
            for frame in batch.drain(..) {
                sink.feed(to_message(frame)).await?;
            }
        }
        let close = HubMessage::Close {
            error: reason.error,
            allow_reconnect: reason.allow_reconnect,
        };
        sink.feed(to_message(frame_of(protocol, &close))).await?;
        sink.feed(close_frame()).await?;
        sink.flush().await
    }))
    .await;
}

/// The writer's keep-alive tick, cheap to look at while it is not due: once its timer has been
/// polled (and so holds the task's waker, which it keeps until it fires), a clock read tells
/// whether polling it again can be skipped. The writer parks after every write, so this runs once
/// per delivery under load; polling a tokio `Interval` there cost about 6 % of a delivery's
/// instructions (callgrind), a clock read about 1 %.
struct Tick {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The timer has been polled since its last reset: it will wake the task when it fires.
    armed: bool,
}

impl Tick {
    fn new() -> Tick {
        Tick {
            sleep: Box::pin(tokio::time::sleep(KEEP_ALIVE_TICK)),
            armed: false,
        }
    }

    /// Ready once per `KEEP_ALIVE_TICK` (missed ticks are not made up for).
    fn poll_due(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.armed && tokio::time::Instant::now() < self.sleep.deadline() {
            return std::task::Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                self.sleep
                    .as_mut()
                    .reset(tokio::time::Instant::now() + KEEP_ALIVE_TICK);
                self.armed = false;
                std::task::Poll::Ready(())
            }
            std::task::Poll::Pending => {
                self.armed = true;
                std::task::Poll::Pending
            }
        }
    }
}

/// Writes the batch (everything that was queued, up to `WRITE_BATCH`), then flushes once: one
/// syscall for all of them.
async fn write_batch(sink: &mut Sink, batch: &mut VecDeque<WsFrame>) -> Result<(), axum::Error> {
    while let Some(frame) = batch.pop_front() {
        sink.feed(to_message(frame)).await?;
    }
    sink.flush().await
}
