//! The Redis backplane: PUBLISH on a multiplexed connection, SUBSCRIBE on a dedicated pub/sub
//! connection, both owned by one supervisor task that reconnects with a capped backoff.
//!
//! Transport failure is a state, not an error: `status()` moves Connecting → Connected →
//! Reconnecting{attempt, retry_in} → Connected ..., and keeps the last error. While the link is
//! down, publishes fail at once (the hub counts them and delivers locally) and subscriptions are
//! only recorded; on reconnect every recorded channel is subscribed again, in one command, before
//! the state returns to Connected. Nothing is replayed (at most once, as ASP.NET Core).
//!
//! This is the only module that names the `redis` crate on the node side.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Backplane, BackplaneError, BackplaneMessage, BackplaneState, BackplaneStatus, backoff};
use crate::config;

/// How long one PUBLISH or SUBSCRIBE may take before the link is considered unhealthy for it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's link to Redis. Cloning shares the link.
#[derive(Clone)]
pub struct RedisBackplane {
    shared: Arc<Shared>,
}

struct Shared {
    /// The desired subscriptions and the live sink, under one async lock so a subscribe racing a
    /// reconnect is never lost: either the reconnect sees it in `desired`, or it sees the sink.
    link: tokio::sync::Mutex<Link>,
    publisher: Mutex<Option<MultiplexedConnection>>,
    status_tx: watch::Sender<BackplaneStatus>,
}

#[derive(Default)]
struct Link {
    desired: BTreeSet<String>,
    sink: Option<PubSubSink>,
}

impl Shared {
    fn publisher(&self) -> MutexGuard<'_, Option<MultiplexedConnection>> {
        // Holds an Option only: always consistent.
        self.publisher.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: BackplaneState) {
        self.status_tx.send_modify(|s| {
            if state == BackplaneState::Connected {
                s.connects += 1;
            }
            s.state = state;
        });
    }

    fn record_error(&self, error: String) {
        tracing::warn!(%error, "redis backplane link problem");
        self.status_tx.send_modify(|s| {
            s.last_error = Some(error);
            s.last_error_at = Some(SystemTime::now());
        });
    }
}

impl RedisBackplane {
    /// Validates `url` and starts the supervisor; returns at once (the first connection is made in
    /// the background). Messages received go to `inbox`. `cancel` stops the link.
    pub fn start(
        url: &str,
        inbox: mpsc::Sender<BackplaneMessage>,
        cancel: CancellationToken,
    ) -> Result<Self, String> {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info().map_err(|e| e.to_string())?;
        // Small PUBLISH commands must not wait for Nagle's algorithm (redis-rs leaves it on).
        let nodelay = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(nodelay)).map_err(|e| e.to_string())?;
        let (status_tx, _) = watch::channel(BackplaneStatus::new(BackplaneState::Connecting));
        let shared = Arc::new(Shared {
            link: tokio::sync::Mutex::new(Link::default()),
            publisher: Mutex::new(None),
            status_tx,
        });
        tokio::spawn(supervise(client, shared.clone(), inbox, cancel));
        Ok(RedisBackplane { shared })
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<(redis::aio::PubSub, MultiplexedConnection)> {
    let pubsub = client.get_async_pubsub().await?;
    let publisher = client.get_multiplexed_async_connection().await?;
    Ok((pubsub, publisher))
}

async fn supervise(
    client: redis::Client,
    shared: Arc<Shared>,
    inbox: mpsc::Sender<BackplaneMessage>,
    cancel: CancellationToken,
) {
    let mut attempt: u32 = 0;
    loop {
        let connected = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT, connect(&client)) => r,
        };
        match connected {
            Ok(Ok((pubsub, publisher))) => {
                let (sink, mut stream) = pubsub.split();
                let resubscribed = {
                    let mut link = shared.link.lock().await;
                    let channels: Vec<String> = link.desired.iter().cloned().collect();
                    let result = if channels.is_empty() {
                        Ok(())
                    } else {
                        let mut sink = sink.clone();
                        match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channels)).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err("timed out resubscribing".to_string()),
                        }
                    };
                    if result.is_ok() {
                        link.sink = Some(sink);
                        tracing::info!(
                            channels = channels.len(),
                            "redis backplane connected and subscribed"
                        );
                    }
                    result
                };
                match resubscribed {
                    Err(e) => shared.record_error(format!("subscribing after connect: {e}")),
                    Ok(()) => {
                        *shared.publisher() = Some(publisher);
                        attempt = 0;
                        shared.set_state(BackplaneState::Connected);
                        let lost = loop {
                            tokio::select! {
                                _ = cancel.cancelled() => break None,
                                message = stream.next() => match message {
                                    Some(message) => {
                                        let message = BackplaneMessage {
                                            channel: message.get_channel_name().to_string(),
                                            payload: Bytes::copy_from_slice(message.get_payload_bytes()),
                                        };
                                        // Waiting here pushes back on the socket: Redis buffers
                                        // for us rather than this node dropping messages.
                                        if inbox.send(message).await.is_err() {
                                            break None;
                                        }
                                    }
                                    None => break Some("connection to Redis lost"),
                                },
                            }
                        };
                        shared.link.lock().await.sink = None;
                        *shared.publisher() = None;
                        match lost {
                            Some(reason) => shared.record_error(reason.to_string()),
                            None => break,
                        }
                    }
                }
            }
            Ok(Err(e)) => shared.record_error(describe(&e)),
            Err(_) => shared.record_error("timed out connecting to Redis".to_string()),
        }
        let delay = backoff(
            attempt,
            config::DEFAULT_RECONNECT_BASE,
            config::DEFAULT_RECONNECT_MAX,
        );
        attempt = attempt.saturating_add(1);
        shared.set_state(BackplaneState::Reconnecting {
            attempt,
            retry_in: delay,
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    shared.link.lock().await.sink = None;
    *shared.publisher() = None;
    shared.set_state(BackplaneState::Stopped);
}

/// A readable one-line description of a Redis error (wrong password, refused, ...).
fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains("NOAUTH") || text.contains("WRONGPASS") || text.contains("invalid password") {
        format!("authentication failed: {text}")
    } else {
        text
    }
}

impl Backplane for RedisBackplane {
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, Result<usize, BackplaneError>> {
        let connection = self.shared.publisher().clone();
        let channel = channel.to_string();
        Box::pin(async move {
            let Some(mut connection) = connection else {
                let state = self.shared.status_tx.borrow().state.clone();
                return Err(BackplaneError::Down(format!("{state:?}")));
            };
            let mut command = redis::cmd("PUBLISH");
            command.arg(&channel).arg(&payload[..]);
            let publish = command.query_async::<i64>(&mut connection);
            match tokio::time::timeout(COMMAND_TIMEOUT, publish).await {
                Ok(Ok(receivers)) => Ok(receivers.max(0) as usize),
                Ok(Err(e)) => Err(BackplaneError::Redis(describe(&e))),
                Err(_) => Err(BackplaneError::Redis("PUBLISH timed out".into())),
            }
        })
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let channel = channel.to_string();
        Box::pin(async move {
            let mut link = self.shared.link.lock().await;
            if !link.desired.insert(channel.clone()) {
                return Ok(());
            }
            let Some(mut sink) = link.sink.clone() else {
                return Ok(()); // subscribed on reconnect
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channel)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(BackplaneError::Redis(describe(&e))),
                Err(_) => Err(BackplaneError::Redis("SUBSCRIBE timed out".into())),
            }
        })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>> {
        let channel = channel.to_string();
        Box::pin(async move {
            let mut link = self.shared.link.lock().await;
            if !link.desired.remove(&channel) {
                return Ok(());
            }
            let Some(mut sink) = link.sink.clone() else {
                return Ok(());
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&channel)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(BackplaneError::Redis(describe(&e))),
                Err(_) => Err(BackplaneError::Redis("UNSUBSCRIBE timed out".into())),
            }
        })
    }

    fn status(&self) -> watch::Receiver<BackplaneStatus> {
        self.shared.status_tx.subscribe()
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
