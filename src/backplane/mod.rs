//! The backplane: how hub nodes reach connections that live on other nodes.
//!
//! Delivery semantics (the same as ASP.NET Core's Redis backplane, which this is wire-compatible with):
//! * **At most once.** A message published while the backplane is down is not queued or replayed;
//!   the failure is returned to the caller (who counts it) and nothing else is affected.
//! * **Publishers receive their own messages** when they are subscribed to the channel: a node
//!   delivers `:all`, `:group:` and `:user:` traffic to its local clients *from its subscription*,
//!   never directly, so that nothing is delivered twice (B.9.6). When a publish fails the caller
//!   delivers locally itself, so local clients never lose messages to a backplane outage.
//! * **Per-channel order** is the order of publishes from one node (Redis and the memory bus both
//!   keep it); nothing is promised across channels or across nodes.
//! * **Subscriptions are reference-counted.** Each `subscribe` takes one reference on a channel
//!   and each `unsubscribe` releases one; the channel is subscribed while it has any. Callers take
//!   one per member (a connection, each of a user's connections, each group member), so the
//!   final state never depends on the order in which concurrent callers got there. `subscribe`
//!   returns once the server confirmed the channel (or at once while disconnected); `unsubscribe`
//!   returns at once. After a reconnect every referenced channel is subscribed again before the
//!   state goes back to `Connected`.
//!
//! **The inbox is bounded and never waits.** Incoming messages are handed to the
//! `mpsc::Sender<BackplaneMessage>` given at construction with `try_send`. When the node cannot
//! keep up and the inbox is full, the message is dropped and counted (`inbox_dropped`, shown as
//! `messages.backplane_dropped` in the node's stats and on the dashboard's node row). Waiting
//! instead would push back on nothing: redis-rs reads pub/sub into an unbounded queue of its own,
//! so a waiting reader only moves the backlog there, without limit; and on the memory bus a
//! waiting publisher could deadlock two nodes that publish to each other while handling.
//!
//! **A node that keeps up skips the inbox.** The Redis subscriber hands a chat message straight to
//! the node's [`DirectReceiver`] on its own reader task, borrowed from its read buffer (no copy,
//! no task hop), when nothing waits in the inbox (no message queued or still being handled) and
//! the message is the last one its read brought. Otherwise it goes through the inbox as above, so
//! order holds (a message never overtakes one queued before it) and a node that falls behind
//! still sheds and counts instead of pushing back on Redis. Control traffic always takes its own
//! queue.
//!
//! `naming` is the only place that builds channel names; `wire` is the payload codec, shared with the
//! dashboard's decoder; `reconnect` is the one reconnect loop (with its typed failure) of every
//! long-lived link, the dashboard's tap and probes included. This module never sees `hub`,
//! `monitor` or `ui`.

mod cursor;
pub mod memory;
pub mod naming;
pub mod reconnect;
pub mod redis;
pub mod sr2;
pub mod wire;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

/// One message received from the backplane: its wire channel name (prefix included) and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackplaneMessage {
    pub channel: String,
    pub payload: Bytes,
}

/// The health of a backplane link, as shown by the monitor endpoint and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BackplaneState {
    /// The in-process bus: always up.
    Memory,
    /// First connection attempt under way.
    Connecting,
    /// Connected and every desired channel subscribed.
    Connected,
    /// The link was lost (or never made); the next attempt is in `retry_in`.
    Reconnecting {
        attempt: u32,
        #[serde(serialize_with = "ser_duration_ms", rename = "retry_in_ms")]
        retry_in: Duration,
    },
    /// Shut down on purpose.
    Stopped,
}

fn ser_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl BackplaneState {
    /// True when a publish now can be expected to reach subscribers.
    pub fn is_up(&self) -> bool {
        matches!(self, BackplaneState::Memory | BackplaneState::Connected)
    }
}

/// The state plus what the operator needs to judge it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackplaneStatus {
    #[serde(flatten)]
    pub state: BackplaneState,
    /// The last error seen on the link (kept after recovery, with its time, so a blip is visible).
    pub last_error: Option<String>,
    #[serde(skip)]
    pub last_error_at: Option<SystemTime>,
    /// How many times the link was (re)established.
    pub connects: u64,
}

impl BackplaneStatus {
    pub fn new(state: BackplaneState) -> Self {
        BackplaneStatus {
            state,
            last_error: None,
            last_error_at: None,
            connects: 0,
        }
    }
}

/// Why a backplane operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    #[error("the backplane is not connected ({0})")]
    Down(String),
    #[error("redis error: {0}")]
    Redis(String),
    #[error("the backplane has stopped")]
    Stopped,
}

/// How many subscribers one publish reached, and whether that count covers the whole backplane.
///
/// Redis answers PUBLISH with the number of clients that received the message *on the server
/// that took the command*. On a single server (or a sentinel set's primary) that is everyone. On
/// a Redis Cluster the message is relayed to every node over the cluster bus, but the count only
/// covers the publishing node's own clients (checked with real processes in
/// tests/redis_cluster_hub.rs): 0 there proves nothing about the other nodes. Callers may treat a
/// count as "nobody else listens" only when it is [`Receivers::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receivers {
    /// Every subscriber of the channel on the backplane (a single Redis, a sentinel primary,
    /// the memory bus).
    All(usize),
    /// Only the subscribers of the server that took the publish (a Redis Cluster node, or the
    /// shard of a sharded channel); others may have received it too.
    Local(usize),
}

impl Receivers {
    /// The count when it covers the whole backplane, `None` when it is a lower bound only.
    pub fn global(self) -> Option<usize> {
        match self {
            Receivers::All(n) => Some(n),
            Receivers::Local(_) => None,
        }
    }

    /// The count as reported (a lower bound for [`Receivers::Local`]).
    pub fn at_least(self) -> usize {
        match self {
            Receivers::All(n) | Receivers::Local(n) => n,
        }
    }
}

/// A pub/sub transport between hub nodes. See the module docs for the delivery guarantees.
/// What became of one counted publish (`Backplane::publish_counted`): sent and answered, or
/// why not.
pub type PublishOutcome = std::sync::Arc<dyn Fn(Result<(), BackplaneError>) + Send + Sync>;

/// What `Backplane::publish_counted` did.
#[derive(Debug)]
pub enum Counted {
    /// Queued: its outcome comes later.
    Queued,
    /// Not sent, and why.
    Failed(BackplaneError),
    /// Use `publish` for this one.
    Unsupported,
}

pub trait Backplane: Send + Sync + 'static {
    /// Publishes `payload` on the wire channel `channel` and returns how many subscribers got it,
    /// saying whether that count is global (see [`Receivers`]). Fails fast (without waiting for a
    /// reconnect) when the link is down.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<Receivers, BackplaneError>>;

    /// Publishes `payload` on `channel` without waiting for the server's answer: `Queued` means
    /// its outcome reaches the [`PublishOutcome`] set with `set_publish_outcome`, exactly once,
    /// later; `Failed` that it was not sent (nothing hears of it again); `Unsupported` that this
    /// backplane (or this channel on it) only publishes with `publish`.
    fn publish_counted(&self, _channel: &str, _payload: &[u8]) -> Counted {
        Counted::Unsupported
    }

    /// Who hears the outcome of each `publish_counted` that was queued: set once (a later call
    /// is ignored); until it is set, `publish_counted` answers `Unsupported`.
    fn set_publish_outcome(&self, _outcome: PublishOutcome) {}

    /// Takes one reference on `channel` and, when connected, waits for the server to confirm the
    /// subscription (callers that arrive during one round trip share the next).
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Releases one reference on `channel`; the last one unsubscribes it (in the background).
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// The live status of the link.
    fn status(&self) -> watch::Receiver<BackplaneStatus>;

    /// "memory" or "redis", for the monitor endpoint.
    fn kind(&self) -> &'static str;

    /// Messages dropped because the inbox was full (see the module docs).
    fn inbox_dropped(&self) -> u64;

    /// How many times a subscription was lost while the link stayed up and was then taken again
    /// (a sharded channel whose slot moved to another shard): messages published in between
    /// were not received. 0 for backplanes that cannot lose a subscription that way.
    fn subscription_gaps(&self) -> u64 {
        0
    }
}

/// The sending end of a node's bounded inbox, with the count of what it had to drop.
///
/// Two queues: chat traffic (`:all`, `:group:`, `:user:`, `:connection:`), which may be shed when
/// the node cannot keep up, and **control traffic** (the node's own `:internal:groups`,
/// `:internal:ack:{server}` and `:internal:return:{server}` channels, named exactly at
/// construction), which has a queue of its own that a chat flood cannot fill and that the node
/// drains first. A group command, an ack or a client result is a few hundred bytes that a node
/// handles in microseconds, so its queue only fills if another node floods it; should that happen
/// the loss is counted apart (`control_dropped`) and [`control_lost`](Self::control_lost) is
/// notified, so a node waiting for an ack fails its call at once with the reason instead of
/// waiting out its timeout for an ack that was thrown away.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<BackplaneMessage>,
    control: Option<Control>,
    dropped: Arc<AtomicU64>,
    /// A node's inbox: where a chat message may skip the queue (see the module docs).
    direct: Option<Arc<Direct>>,
}

/// Handles a chat message at once, on the backplane's reader task (see the module docs): the
/// node's receive side, when it keeps up.
pub trait DirectReceiver: Send + Sync {
    /// Handles one chat message, read from `channel` (its wire name), without waiting.
    fn receive(&self, channel: &str, payload: &[u8]);
}

/// The direct path of a node's inbox.
struct Direct {
    receiver: OnceLock<Weak<dyn DirectReceiver>>,
    /// Chat messages queued and not yet reported handled (`InboxReceiver::handled`).
    waiting: AtomicUsize,
}

#[derive(Clone)]
struct Control {
    tx: mpsc::Sender<BackplaneMessage>,
    channels: Arc<[String]>,
    dropped: Arc<AtomicU64>,
    lost: Arc<tokio::sync::Notify>,
}

impl From<mpsc::Sender<BackplaneMessage>> for Inbox {
    fn from(tx: mpsc::Sender<BackplaneMessage>) -> Self {
        Inbox::new(tx)
    }
}

/// The receiving ends of an [`Inbox`] with a control queue: drain `control` first.
pub struct InboxReceiver {
    pub chat: mpsc::Receiver<BackplaneMessage>,
    pub control: mpsc::Receiver<BackplaneMessage>,
    direct: Arc<Direct>,
}

impl InboxReceiver {
    /// Reports `n` chat messages from `chat` handled, and their deliveries written or queued:
    /// once every queued one is, the next message may skip the queue again.
    pub fn handled(&self, n: usize) {
        self.direct.waiting.fetch_sub(n, Ordering::Release);
    }
}

impl Inbox {
    /// One queue for everything, all of it sheddable: for taps and observers.
    pub fn new(tx: mpsc::Sender<BackplaneMessage>) -> Self {
        Inbox {
            tx,
            control: None,
            dropped: Arc::new(AtomicU64::new(0)),
            direct: None,
        }
    }

    /// A node's inbox: `capacity` chat messages, and `control_capacity` messages on the exact
    /// wire channels `control_channels` in a queue of their own.
    pub fn with_control(
        capacity: usize,
        control_capacity: usize,
        control_channels: Vec<String>,
    ) -> (Self, InboxReceiver) {
        let (tx, chat) = mpsc::channel(capacity.max(1));
        let (control_tx, control) = mpsc::channel(control_capacity.max(1));
        let direct = Arc::new(Direct {
            receiver: OnceLock::new(),
            waiting: AtomicUsize::new(0),
        });
        let inbox = Inbox {
            tx,
            control: Some(Control {
                tx: control_tx,
                channels: control_channels.into(),
                dropped: Arc::new(AtomicU64::new(0)),
                lost: Arc::new(tokio::sync::Notify::new()),
            }),
            dropped: Arc::new(AtomicU64::new(0)),
            direct: Some(direct.clone()),
        };
        (
            inbox,
            InboxReceiver {
                chat,
                control,
                direct,
            },
        )
    }

    /// Sets where chat messages may skip the queue (once; a node's inbox only). Held weakly: once
    /// the receiver is gone every message takes the queue.
    pub fn set_direct_receiver(&self, receiver: Weak<dyn DirectReceiver>) {
        if let Some(direct) = &self.direct {
            let _ = direct.receiver.set(receiver);
        }
    }

    /// Hands a chat message to the direct receiver at once, when nothing waits in the queue
    /// (see the module docs). False (nothing done) for control traffic, a channel name that is
    /// not UTF-8, an inbox without a direct receiver, or while messages wait: then the caller
    /// `offer`s it.
    pub(crate) fn try_direct(&self, channel: &[u8], payload: &[u8]) -> bool {
        let Some(direct) = &self.direct else {
            return false;
        };
        if direct.waiting.load(Ordering::Acquire) != 0 {
            return false;
        }
        let Ok(channel) = std::str::from_utf8(channel) else {
            return false;
        };
        if self.control_for(channel).is_some() {
            return false;
        }
        let Some(receiver) = direct.receiver.get().and_then(Weak::upgrade) else {
            return false;
        };
        receiver.receive(channel, payload);
        true
    }

    /// Hands `message` on without waiting. Returns false when it was dropped (a full inbox,
    /// counted) or nobody receives any more (the node stopped).
    pub(crate) fn offer(&self, message: BackplaneMessage) -> bool {
        if let Some(control) = self.control_for(&message.channel) {
            return match control.tx.try_send(message) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(message)) => {
                    control.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        channel = %message.channel,
                        "the node's control inbox is full: a group command, ack or client result was dropped (counted); calls waiting for an ack fail now"
                    );
                    control.lost.notify_waiters();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
        }
        // Counted before it is queued: the receiver can only report it handled after that.
        if let Some(direct) = &self.direct {
            direct.waiting.fetch_add(1, Ordering::AcqRel);
        }
        let sent = self.tx.try_send(message);
        if sent.is_err()
            && let Some(direct) = &self.direct
        {
            direct.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        match sent {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(message)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(
                        channel = %message.channel,
                        "the node cannot keep up with the backplane: its inbox is full, dropping messages (counted)"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// The control queue, when `channel` is one of its channels (control traffic).
    fn control_for(&self, channel: &str) -> Option<&Control> {
        self.control
            .as_ref()
            .filter(|control| control.channels.iter().any(|c| c == channel))
    }

    /// Chat messages dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Control messages dropped so far (0 without a control queue).
    pub fn control_dropped(&self) -> u64 {
        self.control
            .as_ref()
            .map_or(0, |c| c.dropped.load(Ordering::Relaxed))
    }

    /// Notified each time a control message is dropped; `None` without a control queue.
    pub fn control_lost(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.control.as_ref().map(|c| c.lost.clone())
    }

    /// Whether nobody receives any more.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The reconnect delay after `attempt` consecutive failures: doubling from `base`, capped at `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, base, max), Duration::from_millis(100));
        assert_eq!(backoff(1, base, max), Duration::from_millis(200));
        assert_eq!(backoff(5, base, max), Duration::from_millis(3200));
        assert_eq!(backoff(6, base, max), max);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }

    #[test]
    fn a_refused_connection_is_retried_within_the_short_cap() {
        let base = crate::config::DEFAULT_RECONNECT_BASE;
        let refused = crate::config::DEFAULT_RECONNECT_MAX_REFUSED;
        let worst: Duration = (0..20)
            .map(|a| backoff(a, base, refused))
            .max()
            .unwrap_or_default();
        assert_eq!(worst, refused);
        assert!(
            refused <= Duration::from_millis(250),
            "a dead port costs nothing to try"
        );
        assert_eq!(
            backoff(20, base, crate::config::DEFAULT_RECONNECT_MAX),
            crate::config::DEFAULT_RECONNECT_MAX
        );
    }

    #[test]
    fn a_full_inbox_drops_and_counts_without_waiting() {
        let (tx, mut rx) = mpsc::channel(2);
        let inbox = Inbox::new(tx);
        let message = || BackplaneMessage {
            channel: "c".into(),
            payload: Bytes::from_static(b"x"),
        };
        assert!(inbox.offer(message()));
        assert!(inbox.offer(message()));
        assert!(!inbox.offer(message()));
        assert!(!inbox.offer(message()));
        assert_eq!(inbox.dropped(), 2);
        assert!(rx.try_recv().is_ok());
        assert!(inbox.offer(message()), "room again once the node caught up");
        drop(rx);
        assert!(!inbox.offer(message()) && inbox.is_closed());
        assert_eq!(inbox.dropped(), 2, "a closed inbox is not a drop");
    }

    #[test]
    fn control_traffic_has_its_own_queue_that_chat_cannot_fill() {
        let control_channel = "p.Hub:internal:ack:srv_1".to_string();
        let (inbox, mut rx) = Inbox::with_control(2, 2, vec![control_channel.clone()]);
        let chat = || BackplaneMessage {
            channel: "p.Hub:all".into(),
            payload: Bytes::from_static(b"x"),
        };
        let ack = || BackplaneMessage {
            channel: control_channel.clone(),
            payload: Bytes::from_static(b"a"),
        };
        // A chat flood fills the chat queue and is shed...
        for _ in 0..10 {
            inbox.offer(chat());
        }
        assert_eq!(inbox.dropped(), 8);
        // ...while control messages still get through, into their own queue.
        assert!(inbox.offer(ack()));
        assert!(inbox.offer(ack()));
        assert_eq!(inbox.control_dropped(), 0);
        assert_eq!(rx.control.try_recv().unwrap().channel, control_channel);
        // A channel that merely contains the control name's words is chat.
        let lookalike = BackplaneMessage {
            channel: "p.Hub:group:p.Hub:internal:ack:srv_1".into(),
            payload: Bytes::from_static(b"x"),
        };
        assert!(!inbox.offer(lookalike), "the chat queue is still full");
        assert_eq!(rx.chat.try_recv().unwrap().channel, "p.Hub:all");
    }

    #[tokio::test]
    async fn a_dropped_control_message_is_counted_and_wakes_the_waiters() {
        let channel = "p.Hub:internal:groups".to_string();
        let (inbox, _rx) = Inbox::with_control(1, 1, vec![channel.clone()]);
        let lost = inbox.control_lost().unwrap();
        let waiting = lost.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();
        let command = || BackplaneMessage {
            channel: channel.clone(),
            payload: Bytes::from_static(b"g"),
        };
        assert!(inbox.offer(command()));
        assert!(!inbox.offer(command()), "the control queue holds one");
        assert_eq!(inbox.control_dropped(), 1);
        assert_eq!(inbox.dropped(), 0, "not counted as chat");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter was woken");
    }

    /// The direct path: a chat message skips the queue only while nothing waits in it (queued, or
    /// handled but not yet reported), never for control traffic, and not once the receiver is
    /// gone.
    #[test]
    fn a_chat_message_skips_the_queue_only_when_nothing_waits() {
        use std::sync::Mutex;
        struct Seen(Mutex<Vec<(String, Vec<u8>)>>);
        impl DirectReceiver for Seen {
            fn receive(&self, channel: &str, payload: &[u8]) {
                self.0
                    .lock()
                    .unwrap()
                    .push((channel.to_string(), payload.to_vec()));
            }
        }
        let control = "p.Hub:internal:groups".to_string();
        let (inbox, mut rx) = Inbox::with_control(4, 4, vec![control.clone()]);
        assert!(!inbox.try_direct(b"p.Hub:all", b"x"), "no receiver yet");
        let seen = Arc::new(Seen(Mutex::new(Vec::new())));
        let receiver: Arc<dyn DirectReceiver> = seen.clone();
        inbox.set_direct_receiver(Arc::downgrade(&receiver));
        assert!(inbox.try_direct(b"p.Hub:all", b"1"));
        assert!(
            !inbox.try_direct(control.as_bytes(), b"g"),
            "control takes its queue"
        );
        assert!(!inbox.try_direct(&[0xff], b"x"), "not UTF-8");
        // One message queued: every later one queues behind it until it is reported handled.
        let chat = || BackplaneMessage {
            channel: "p.Hub:all".into(),
            payload: Bytes::from_static(b"2"),
        };
        assert!(inbox.offer(chat()));
        assert!(!inbox.try_direct(b"p.Hub:all", b"3"));
        assert!(rx.chat.try_recv().is_ok());
        assert!(
            !inbox.try_direct(b"p.Hub:all", b"3"),
            "received is not handled: its deliveries may not be written yet"
        );
        rx.handled(1);
        assert!(inbox.try_direct(b"p.Hub:all", b"3"));
        // A message the full queue dropped does not wait.
        for _ in 0..5 {
            inbox.offer(chat());
        }
        assert_eq!(inbox.dropped(), 1);
        for _ in 0..4 {
            assert!(rx.chat.try_recv().is_ok());
        }
        rx.handled(4);
        assert!(inbox.try_direct(b"p.Hub:all", b"4"));
        assert_eq!(
            seen.0
                .lock()
                .unwrap()
                .iter()
                .map(|(_, p)| p.clone())
                .collect::<Vec<_>>(),
            [b"1".to_vec(), b"3".to_vec(), b"4".to_vec()]
        );
        drop((receiver, seen));
        assert!(!inbox.try_direct(b"p.Hub:all", b"5"), "the receiver is gone");
    }
}
