//! The task that owns one client connection's WebSocket after the handshake: the only reader and
//! writer of the socket. It turns inbound bytes into hub messages (the framer treats WebSocket
//! messages as a byte stream, never as message boundaries), completes pending invocations, queues
//! events for `HubClient::recv`, writes queued frames, pings, and ends the connection on a
//! protocol error, a silent server, a stuck write or a Close.
//!
//! Used only by `client`; shares state with the handles through [`Shared`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use super::{ClientError, ClientEvent};
use crate::protocol::{CompletionResult, Framer, HubMessage, Protocol};

/// How long a close waits for the server's Close frame before dropping the socket (ASP.NET Core
/// answers at once; 2 s covers a busy CI machine without making every test teardown slow).
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Deadline for one WebSocket write. A server that stops reading would otherwise block the task
/// (and with it all reading) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the official clients answer to a server invocation that expects a result they have no
/// handler for.
const NO_RESULT: &str = "Client didn't provide a result.";

/// A request from a handle to the socket task.
pub(crate) enum Command {
    /// Write these bytes as one WebSocket message.
    Frame { data: Vec<u8>, binary: bool },
    /// Close the WebSocket, then report through `done`.
    Close { done: oneshot::Sender<()> },
}

/// State shared by the handles and the task.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<SharedState>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    pings: AtomicU64,
}

#[derive(Default)]
struct SharedState {
    /// invocationId → the waiting `invoke`. Bounded by the number of concurrent invokes, each of
    /// which removes its entry when it ends (see `PendingGuard`).
    pending: HashMap<String, oneshot::Sender<CompletionResult>>,
    /// Why the connection ended, once it has.
    ended: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        // Every critical section is a single map operation or assignment: a panic elsewhere cannot
        // leave the state half-updated, so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_invocation_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Registers a pending invocation; fails if the connection already ended.
    pub(crate) fn register(&self, id: &str) -> Result<oneshot::Receiver<CompletionResult>, ClientError> {
        let mut state = self.lock();
        if let Some(reason) = &state.ended {
            return Err(ClientError::Closed(reason.clone()));
        }
        let (tx, rx) = oneshot::channel();
        state.pending.insert(id.to_string(), tx);
        Ok(rx)
    }

    fn complete(&self, id: &str, result: CompletionResult) -> bool {
        match self.lock().pending.remove(id) {
            Some(tx) => tx.send(result).is_ok(),
            None => false,
        }
    }

    /// Marks the connection ended; pending invokes see their sender dropped and fail as Closed.
    fn finish(&self, reason: String) {
        let mut state = self.lock();
        state.ended.get_or_insert(reason);
        state.pending.clear();
    }

    pub(crate) fn end_reason(&self) -> String {
        self.lock()
            .ended
            .clone()
            .unwrap_or_else(|| "the connection task stopped".to_string())
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn pings(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }
}

/// Removes a pending invocation when the `invoke` future ends, whichever way.
pub(crate) struct PendingGuard<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl<'a> PendingGuard<'a> {
    pub(crate) fn new(shared: &'a Shared, id: &'a str) -> Self {
        PendingGuard { shared, id }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(self.id);
    }
}

/// Human text for a WebSocket Close frame.
pub(crate) fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!("close code {}", u16::from(f.code)),
        Some(f) => format!("close code {}: {}", u16::from(f.code), f.reason),
        None => "no close code".to_string(),
    }
}

/// The socket task's state.
pub(crate) struct Driver {
    ws: super::NodeWebSocket,
    framer: Framer,
    protocol: Protocol,
    shared: Arc<Shared>,
    inbox_tx: mpsc::Sender<ClientEvent>,
    keep_alive: Duration,
    server_timeout: Duration,
    last_sent: Instant,
    last_received: Instant,
    /// The Ping frame, encoded once.
    ping: Vec<u8>,
}

impl Driver {
    pub(crate) fn new(
        ws: super::NodeWebSocket,
        framer: Framer,
        protocol: Protocol,
        shared: Arc<Shared>,
        inbox_tx: mpsc::Sender<ClientEvent>,
        keep_alive: Duration,
        server_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        Driver {
            ws,
            framer,
            protocol,
            shared,
            inbox_tx,
            keep_alive,
            server_timeout,
            last_sent: now,
            last_received: now,
            ping: protocol.encode(&HubMessage::Ping),
        }
    }

    /// Runs until the connection ends, then records why (the inbox closes with the task, and
    /// `HubClient::recv` turns that into the final `Disconnected`).
    pub(crate) async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        let reason = self.run_loop(&mut cmd_rx).await;
        tracing::debug!(%reason, "disconnected");
        self.shared.finish(reason);
        // Anyone still waiting to queue a frame learns at once that the connection is gone.
        cmd_rx.close();
        while let Ok(command) = cmd_rx.try_recv() {
            if let Command::Close { done } = command {
                let _ = done.send(());
            }
        }
    }

    async fn run_loop(&mut self, cmd_rx: &mut mpsc::Receiver<Command>) -> String {
        // Hub messages that arrived in the same WebSocket message as the handshake response.
        if let Err(reason) = self.drain_frames().await {
            self.close_ws().await;
            return reason;
        }
        loop {
            let ping_at = self.last_sent + self.keep_alive;
            let silent_at = self.last_received + self.server_timeout;
            tokio::select! {
                inbound = self.ws.next() => {
                    self.last_received = Instant::now();
                    match inbound {
                        Some(Ok(Message::Text(text))) => self.framer.push(text.as_bytes()),
                        Some(Ok(Message::Binary(data))) => self.framer.push(&data),
                        Some(Ok(Message::Close(frame))) => {
                            // Answer the close handshake; tungstenite queued the reply.
                            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.flush()).await;
                            return format!(
                                "the server closed the WebSocket ({})",
                                describe_close(frame.as_ref())
                            );
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return format!("WebSocket error: {e}"),
                        None => return "the connection ended without a WebSocket close".to_string(),
                    }
                    if let Err(reason) = self.drain_frames().await {
                        self.close_ws().await;
                        return reason;
                    }
                }
                command = cmd_rx.recv() => match command {
                    Some(Command::Frame { data, binary }) => {
                        if let Err(reason) = self.write(raw_message(data, binary)).await {
                            return reason;
                        }
                    }
                    Some(Command::Close { done }) => {
                        self.close_ws().await;
                        let _ = done.send(());
                        return "closed by the client".to_string();
                    }
                    None => {
                        self.close_ws().await;
                        return "every client handle was dropped".to_string();
                    }
                },
                _ = tokio::time::sleep_until(ping_at) => {
                    let ping = raw_message(self.ping.clone(), self.protocol.is_binary());
                    if let Err(reason) = self.write(ping).await {
                        return reason;
                    }
                }
                _ = tokio::time::sleep_until(silent_at) => {
                    self.close_ws().await;
                    return format!(
                        "server timeout: nothing received for {:?}",
                        self.server_timeout
                    );
                }
            }
        }
    }

    /// Decodes and handles every complete message in the framer. `Err` ends the connection.
    async fn drain_frames(&mut self) -> Result<(), String> {
        loop {
            let body = match self.framer.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("invalid frame from the server: {e}")),
            };
            match self.protocol.decode(&body) {
                Ok(Some(message)) => self.handle(message).await?,
                Ok(None) => tracing::trace!("ignored a message of an unknown type"),
                Err(e) => return Err(format!("invalid message from the server: {e}")),
            }
        }
    }

    async fn handle(&mut self, message: HubMessage) -> Result<(), String> {
        match message {
            HubMessage::Invocation {
                invocation_id,
                target,
                arguments,
                ..
            } => {
                tracing::trace!(%target, "invocation");
                if let Some(id) = invocation_id.filter(|id| !id.is_empty()) {
                    // The server waits for a client result; this client has no handlers.
                    let reply = HubMessage::completion(id, CompletionResult::Error(NO_RESULT.to_string()));
                    let frame = raw_message(self.protocol.encode(&reply), self.protocol.is_binary());
                    self.write(frame).await?;
                }
                self.push(ClientEvent::Invocation { target, arguments });
            }
            HubMessage::Completion {
                invocation_id,
                result,
                ..
            } => {
                if !self.shared.complete(&invocation_id, result) {
                    tracing::debug!(%invocation_id, "completion for no waiting invocation");
                }
            }
            HubMessage::Ping => {
                self.shared.pings.fetch_add(1, Ordering::Relaxed);
            }
            HubMessage::Close {
                error,
                allow_reconnect,
            } => {
                let reason = match &error {
                    Some(e) => format!("the server sent Close with error {e:?}"),
                    None => "the server sent Close".to_string(),
                };
                self.push(ClientEvent::Close {
                    error,
                    allow_reconnect,
                });
                return Err(reason);
            }
            other => tracing::trace!(type_id = other.type_id(), "ignored a message"),
        }
        Ok(())
    }

    /// Queues an event for `recv`; a full inbox drops it and counts it.
    fn push(&self, event: ClientEvent) {
        match self.inbox_tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Data loss: log the first drop and then every 1000th, not once per message.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::error!(dropped, "client inbox full: dropped a server event");
                }
            }
            // Nobody receives any more (the HubClient was dropped); nothing to keep.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    async fn write(&mut self, message: Message) -> Result<(), String> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.ws.send(message)).await {
            Ok(Ok(())) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(format!("sending failed: {e}")),
            Err(_) => Err(format!("a write did not complete within {WRITE_TIMEOUT:?}")),
        }
    }

    /// Sends a normal Close frame and waits (briefly) for the server's, discarding anything else.
    async fn close_ws(&mut self) {
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if ws.close(Some(close)).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}

/// One WebSocket message carrying exactly `data`. Text that is not UTF-8 (only `send_raw` can
/// produce it) goes out as a raw Text frame, so servers can be tested against it.
pub(crate) fn raw_message(data: Vec<u8>, binary: bool) -> Message {
    if binary {
        return Message::Binary(data.into());
    }
    match String::from_utf8(data) {
        Ok(text) => Message::text(text),
        Err(e) => Message::Frame(Frame::message(e.into_bytes(), OpCode::Data(Data::Text), true)),
    }
}
