//! Routing, as ASP.NET Core's `RedisHubLifetimeManager` does it (SIGNALR-WIRE.md B.4–B.7): which
//! sends go to the backplane and which are written locally, the receive side of every channel,
//! reference-counted subscriptions, remote group operations with acks, and client results.
//!
//! Every message is serialized once per protocol (`Frames`), and the same buffers are handed to
//! every local recipient (a refcount per recipient, never a copy). Broadcasts reach local clients
//! through the node's own subscription; only when a publish fails does the node deliver locally
//! itself, so local clients keep their messages through a backplane outage.
//!
//! Subscriptions: no lock is held across a backplane round trip. The registry changes first
//! (under its own short lock), then one backplane reference per member is taken or released:
//! references commute, so concurrent joins, leaves, handshakes and disconnects end in the right
//! subscriptions whatever their interleaving, and the backplane batches the round trips. A
//! handshake or a local join waits for its own channel's confirmation; a remote group command
//! received from the backplane never does (its subscription and ack run in a spawned task, so
//! the receive path keeps reading).

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

pub(crate) use super::registry::Target;
use super::registry::{Cork, GroupChange, Outbox, Registry, WsFrame, frame_of};
use super::stats::Stats;
use crate::backplane::naming::{ChannelKind, Channels};
use crate::backplane::wire::{self, GroupAction, GroupCommand};
use crate::backplane::{Backplane, BackplaneError, Counted, Inbox, Receivers};
use crate::protocol::{CompletionResult, HubMessage, Protocol};

/// One message serialized for each protocol as a complete WebSocket frame, built once per
/// message and written as-is to every local recipient of that protocol.
///
/// Frames of a message received from the backplane are made on first use: a node whose clients
/// all speak one protocol never frames the other serialization. (A `OnceCell`: a message's frames
/// are made and used on the one thread that handles the message.)
#[derive(Debug, Default)]
pub(crate) struct Frames<'p> {
    json: OnceCell<Option<WsFrame>>,
    msgpack: OnceCell<Option<WsFrame>>,
    /// The serializations not framed yet, each protocol's in the received payload.
    raw: Raw<'p>,
}

/// The serializations of a received message, by protocol, not framed yet.
#[derive(Debug, Default)]
struct Raw<'p> {
    json: Option<&'p [u8]>,
    msgpack: Option<&'p [u8]>,
}

impl<'p> Frames<'p> {
    /// Serializes `message` once per protocol.
    pub fn serialize(message: &HubMessage) -> Frames<'static> {
        Frames {
            json: OnceCell::from(Some(frame_of(Protocol::Json, message))),
            msgpack: OnceCell::from(Some(frame_of(Protocol::MessagePack, message))),
            raw: Raw::default(),
        }
    }

    /// Frames from a backplane invocation payload (B.6.2), read without copying anything; each
    /// protocol's frame is made when a recipient of that protocol first needs it. A JSON
    /// serialization must be UTF-8 (it goes out as a text frame), and protocols this node does
    /// not speak are skipped.
    fn decode(payload: &'p [u8]) -> Result<(Frames<'p>, wire::InvocationHead<'p>), wire::WireError> {
        let mut raw = Raw::default();
        let head = wire::decode_invocation_with(payload, |name, range| {
            let bytes = payload.get(range);
            match Protocol::from_name(name) {
                Some(Protocol::Json) => raw.json = bytes,
                Some(Protocol::MessagePack) => raw.msgpack = bytes,
                None => {}
            }
        })?;
        let frames = Frames {
            raw,
            ..Frames::default()
        };
        Ok((frames, head))
    }

    pub fn for_protocol(&self, protocol: Protocol) -> Option<&WsFrame> {
        match protocol {
            Protocol::Json => self.json.get_or_init(|| {
                let bytes = self.raw.json?;
                std::str::from_utf8(bytes).is_ok().then(|| WsFrame::text(bytes))
            }),
            Protocol::MessagePack => self.msgpack.get_or_init(|| self.raw.msgpack.map(WsFrame::binary)),
        }
        .as_ref()
    }

    /// The serialization map written to the backplane: every protocol we have.
    #[cfg(test)]
    fn serializations(&self) -> Vec<(&'static str, &[u8])> {
        [Protocol::Json, Protocol::MessagePack]
            .into_iter()
            .filter_map(|protocol| Some((protocol.name(), self.for_protocol(protocol)?.payload())))
            .collect()
    }
}

/// The backplane payload of `message` (B.6.2), with a serialization for each protocol: each is
/// written into a buffer this thread keeps, and the payload is the one allocation. (The frames
/// that local clients get are made from the payload by the node's own subscription.)
fn invocation_payload(excluded: &[&str], message: &HubMessage) -> Bytes {
    /// A buffer grown past this by a large message is let go, not kept by the thread.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(json, msgpack)| {
        json.clear();
        crate::protocol::json::encode_into(message, json);
        msgpack.clear();
        let start = crate::protocol::msgpack::encode_prefixed_into(message, msgpack);
        let payload = wire::encode_invocation(
            excluded,
            &[
                (Protocol::Json.name(), json),
                (Protocol::MessagePack.name(), &msgpack[start..]),
            ],
            None,
        );
        for buffer in [json, msgpack] {
            if buffer.capacity() > KEEP {
                *buffer = Vec::new();
            }
        }
        payload
    })
}

/// Why a remote group operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupOpError {
    #[error("A connection may be in at most {max} groups; leave one before joining another.")]
    TooManyGroups { max: usize },
    #[error("the backplane could not forward the group command: {0}")]
    Forward(String),
    #[error("connection {0} is on no server: this node is the only one on the backplane")]
    NoSuchConnection(String),
    #[error("no server acknowledged the group command within {0:?}")]
    Timeout(Duration),
    #[error(
        "the group command's ack may have been lost: this node's control inbox overflowed (counted as control_dropped); try again"
    )]
    AckLost,
}

/// The routing core of a node.
pub(crate) struct Lifetime {
    channels: Channels,
    server_name: String,
    forwarder: Arc<Forwarder>,
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    ack_timeout: Duration,
    next_group_op: AtomicI32,
    pending_acks: Mutex<HashMap<i32, oneshot::Sender<()>>>,
    /// Client results requested by other servers: (connection, invocation id) → return channel.
    pending_results: Mutex<HashMap<(Arc<str>, String), String>>,
    /// The node's inbox: notifies when a control message (an ack, maybe ours) was dropped.
    inbox: Inbox,
    /// `channels.all()`, made once: every broadcast publishes to it.
    all_channel: String,
}

/// The backplane with the node's publish accounting; shared with the tasks that finish remote
/// group commands off the receive path.
struct Forwarder {
    backplane: Arc<dyn Backplane>,
    accounting: Arc<Accounting>,
}

/// A publish's outcome counted: `backplane_out` or `forward_failures`, logged when it changes
/// from one to the other. Shared by awaited publishes and by the backplane's counted ones.
struct Accounting {
    stats: Arc<Stats>,
    /// Whether the last publish failed: failures are logged on the transition, then only counted.
    forwarding_failed: AtomicBool,
}

impl Accounting {
    /// Counts one publish: sent (`error` is `None`), or failed with `error`.
    fn count(&self, channel: Option<&str>, error: Option<&BackplaneError>) {
        match error {
            None => {
                Stats::inc(&self.stats.backplane_out);
                if self.forwarding_failed.swap(false, Ordering::Relaxed) {
                    tracing::info!("backplane publishes succeed again");
                }
            }
            Some(e) => {
                Stats::inc(&self.stats.forward_failures);
                let channel = channel.unwrap_or("(a counted publish)");
                if !self.forwarding_failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(%channel, error = %e, "could not forward a message to other nodes; counting failures until the backplane is back");
                } else {
                    tracing::debug!(%channel, error = %e, "forward failed");
                }
            }
        }
    }
}

impl Forwarder {
    /// The forwarder of `backplane`, which counts its counted publishes' outcomes here too.
    fn new(backplane: Arc<dyn Backplane>, stats: Arc<Stats>) -> Forwarder {
        let accounting = Arc::new(Accounting {
            stats,
            forwarding_failed: AtomicBool::new(false),
        });
        let counter = accounting.clone();
        backplane.set_publish_outcome(Arc::new(move |outcome| {
            counter.count(None, outcome.as_ref().err())
        }));
        Forwarder {
            backplane,
            accounting,
        }
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> Result<Receivers, ()> {
        let published = self.backplane.publish(channel, payload).await;
        self.accounting.count(Some(channel), published.as_ref().err());
        published.map_err(|_| ())
    }

    /// Publishes without waiting for Redis where the backplane can (its outcome is counted when
    /// it comes, see `Accounting`); else as `publish`. `Err` when it surely did not go out.
    async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<(), ()> {
        match self.backplane.publish_counted(channel, &payload) {
            Counted::Queued => Ok(()),
            Counted::Failed(e) => {
                self.accounting.count(Some(channel), Some(&e));
                Err(())
            }
            Counted::Unsupported => self.publish(channel, payload).await.map(|_| ()),
        }
    }

    /// Takes one reference on `channel`, waiting for the backplane to confirm it.
    async fn subscribe(&self, channel: &str) {
        if let Err(e) = self.backplane.subscribe(channel).await {
            tracing::warn!(%channel, error = %e, "subscribe failed; it is retried when the backplane reconnects");
        }
    }

    /// Releases one reference on `channel` (never waits for Redis).
    async fn unsubscribe(&self, channel: &str) {
        if let Err(e) = self.backplane.unsubscribe(channel).await {
            tracing::debug!(%channel, error = %e, "unsubscribe failed");
        }
    }
}

impl Lifetime {
    pub fn new(
        channels: Channels,
        server_name: String,
        backplane: Arc<dyn Backplane>,
        registry: Arc<Registry>,
        stats: Arc<Stats>,
        ack_timeout: Duration,
        inbox: Inbox,
    ) -> Self {
        Lifetime {
            all_channel: channels.all(),
            channels,
            server_name,
            forwarder: Arc::new(Forwarder::new(backplane, stats.clone())),
            registry,
            stats,
            ack_timeout,
            next_group_op: AtomicI32::new(0),
            pending_acks: Mutex::new(HashMap::new()),
            pending_results: Mutex::new(HashMap::new()),
            inbox,
        }
    }

    /// The node's inbox (its direct receiver is set by the node's receive side).
    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Control messages (group commands, acks, client results) this node had to drop.
    pub fn control_dropped(&self) -> u64 {
        self.inbox.control_dropped()
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    pub fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.forwarder.backplane
    }

    /// The channels every node subscribes at start (B.4), in ASP.NET Core's order.
    pub fn base_channels(&self) -> [String; 4] {
        [
            self.channels.all(),
            self.channels.internal_groups(),
            self.channels.ack(&self.server_name),
            self.channels.return_channel(&self.server_name),
        ]
    }

    /// Hands each local connection `target` reaches the frame of its protocol, through `cork`
    /// (`Cork::deliver_all`, under the registry's read lock); returns how many it reached.
    fn fan_out(&self, target: Target<'_>, frames: &Frames<'_>, cork: &mut Cork) -> usize {
        self.registry.with_targets(target, |conns| {
            let mut found = 0;
            {
                let recipients = conns.filter_map(|c| {
                    found += 1;
                    let frame = frames.for_protocol(c.protocol);
                    if frame.is_none() {
                        tracing::warn!(
                            connection = %c.id,
                            "This message was received from another server that did not have the requested protocol available."
                        );
                    }
                    Some((&c.outbox, frame?))
                });
                cork.deliver_all(recipients, &self.stats);
            }
            found
        })
    }

    fn deliver_local(&self, target: Target<'_>, frames: &Frames<'_>) -> bool {
        // A local send has no backlog to batch with: written at once.
        let found = self.fan_out(target, frames, &mut Cork::default());
        found > 0 || !matches!(target, Target::Connection(_))
    }

    /// Sends `message` to `target` (B.5): a local connection is written directly; everything else
    /// is published once, and reaches local clients through this node's own subscription.
    pub async fn send(&self, target: Target<'_>, message: &HubMessage) {
        if let Target::User("") = target {
            return; // ASP.NET Core skips empty user ids
        }
        let (channel, excluded): (Cow<'_, str>, &[&str]) = match target {
            Target::Connection(id) => {
                // A local recipient needs its own protocol only: no backplane payload is built.
                let delivered = self.registry.with_connection(id, |c| {
                    let frame = frame_of(c.protocol, message);
                    c.outbox.deliver(&frame, &self.stats);
                });
                if delivered {
                    return;
                }
                (Cow::Owned(self.channels.connection(id)), &[])
            }
            Target::All { excluded } => (Cow::Borrowed(&self.all_channel), excluded),
            Target::Group { group, excluded } => (Cow::Owned(self.channels.group(group)), excluded),
            Target::User(user) => (Cow::Owned(self.channels.user(user)), &[]),
        };
        let payload = invocation_payload(excluded, message);
        if let Target::Connection(_) = target {
            // Awaited: a remote connection's message is lost when the publish failed (counted
            // as a forward failure) or when no node has that connection's channel subscribed.
            // Only a global count can say so (a cluster node counts its own subscribers only).
            if let Ok(Receivers::All(0)) = self.publish(&channel, payload).await {
                Stats::inc(&self.stats.forward_unreached)
            }
            return;
        }
        // Counted, not awaited: the sender goes on at once, and the reply is counted when it
        // comes (order per sender holds: the commands are written in the order queued).
        if self.forwarder.publish_counted(&channel, payload).await.is_err() {
            // The message never reached Redis, so our own subscription will not bring it back:
            // local clients get it directly.
            self.deliver_local(target, &Frames::serialize(message));
        }
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> Result<Receivers, ()> {
        self.forwarder.publish(channel, payload).await
    }

    /// Registers a connection that finished its handshake and subscribes its channels (before the
    /// handshake response is written, so a client that sees `{}` is already reachable). The two
    /// subscriptions share one round trip with every other handshake under way.
    pub async fn on_connected(&self, id: Arc<str>, protocol: Protocol, user: Option<String>, outbox: Outbox) {
        self.registry.register(id.clone(), protocol, user.clone(), outbox);
        let connection = self.channels.connection(&id);
        let own = self.forwarder.subscribe(&connection);
        match user {
            Some(user) => {
                let user = self.channels.user(&user);
                futures_util::future::join(own, self.forwarder.subscribe(&user)).await;
            }
            None => own.await,
        }
    }

    /// Removes a connection, releases its channels and fails its pending client results.
    pub async fn on_disconnected(&self, id: &str) {
        let departure = self.registry.unregister(id);
        self.forwarder.unsubscribe(&self.channels.connection(id)).await;
        for group in departure.groups {
            self.forwarder.unsubscribe(&self.channels.group(&group)).await;
        }
        if let Some(user) = departure.user {
            self.forwarder.unsubscribe(&self.channels.user(&user)).await;
        }
        let orphaned: Vec<(String, String)> = {
            let mut pending = self.lock_results();
            let keys: Vec<_> = pending.keys().filter(|(c, _)| &**c == id).cloned().collect();
            keys.into_iter()
                .filter_map(|k| pending.remove(&k).map(|channel| (k.1, channel)))
                .collect()
        };
        for (invocation_id, channel) in orphaned {
            let completion = HubMessage::completion(
                invocation_id,
                CompletionResult::Error("Connection disconnected.".into()),
            );
            let bin = Protocol::Json.encode(&completion);
            let payload = wire::encode_completion(Protocol::Json.name(), &bin);
            let _ = self
                .publish(&self.channels.wire_from_logical(&channel), payload)
                .await;
        }
    }

    async fn join_local(&self, id: &str, group: &str) -> GroupChange {
        let change = self.registry.join(id, group);
        if change == GroupChange::Changed {
            self.forwarder.subscribe(&self.channels.group(group)).await;
        }
        change
    }

    async fn leave_local(&self, id: &str, group: &str) -> GroupChange {
        let (change, name) = self.registry.leave(id, group);
        if let (GroupChange::Changed, Some(name)) = (&change, name) {
            self.forwarder.unsubscribe(&self.channels.group(&name)).await;
        }
        change
    }

    /// Adds any connection, local or on another node, to a group (B.5, B.7).
    pub async fn add_to_group(&self, connection_id: &str, group: &str) -> Result<(), GroupOpError> {
        self.group_op(connection_id, group, GroupAction::Add).await
    }

    /// Removes any connection, local or on another node, from a group.
    pub async fn remove_from_group(&self, connection_id: &str, group: &str) -> Result<(), GroupOpError> {
        self.group_op(connection_id, group, GroupAction::Remove).await
    }

    async fn group_op(
        &self,
        connection_id: &str,
        group: &str,
        action: GroupAction,
    ) -> Result<(), GroupOpError> {
        let local = match action {
            GroupAction::Add => self.join_local(connection_id, group).await,
            GroupAction::Remove => self.leave_local(connection_id, group).await,
        };
        match local {
            GroupChange::NotLocal => {}
            GroupChange::LimitReached { max } => return Err(GroupOpError::TooManyGroups { max }),
            GroupChange::Changed | GroupChange::Unchanged => return Ok(()),
        }
        // Ids are per server, start at 1 and wrap like .NET's Interlocked.Increment on an int.
        let id = self.next_group_op.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        self.lock_acks().insert(id, tx);
        let command = GroupCommand {
            id,
            server_name: self.server_name.clone(),
            action,
            group: group.to_string(),
            connection_id: connection_id.to_string(),
        };
        let payload = wire::encode_group_command(&command);
        // Enabled before the publish, so a drop between the publish and the wait still wakes us.
        let lost = self.inbox.control_lost();
        let mut lost_ack = lost.as_ref().map(|n| Box::pin(n.notified()));
        if let Some(notified) = lost_ack.as_mut() {
            notified.as_mut().enable();
        }
        match self.publish(&self.channels.internal_groups(), payload).await {
            Err(()) => {
                self.lock_acks().remove(&id);
                return Err(GroupOpError::Forward("the backplane is down".into()));
            }
            // Every server subscribes this channel; if we are its only subscriber, no one can own
            // the connection, so waiting 30 s for an ack (as ASP.NET Core does) would tell nothing.
            // Only a global count proves that: on a Redis Cluster PUBLISH counts the publishing
            // node's own subscribers, so there we wait for the ack like ASP.NET Core.
            Ok(receivers) if receivers.global().is_some_and(|n| n <= 1) => {
                self.lock_acks().remove(&id);
                return Err(GroupOpError::NoSuchConnection(connection_id.to_string()));
            }
            Ok(_) => {}
        }
        tokio::select! {
            acked = tokio::time::timeout(self.ack_timeout, rx) => match acked {
                Ok(Ok(())) => Ok(()),
                _ => {
                    self.lock_acks().remove(&id);
                    Stats::inc(&self.stats.group_ack_timeouts);
                    Err(GroupOpError::Timeout(self.ack_timeout))
                }
            },
            () = async {
                match lost_ack.as_mut() {
                    Some(notified) => notified.await,
                    None => std::future::pending().await,
                }
            } => {
                self.lock_acks().remove(&id);
                Err(GroupOpError::AckLost)
            }
        }
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<()>>> {
        // Map operations only: a poisoned lock holds consistent data.
        self.pending_acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_results(&self) -> std::sync::MutexGuard<'_, HashMap<(Arc<str>, String), String>> {
        self.pending_results.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A Completion from a local client: if another server asked for this result, forward it.
    /// Returns false when nobody was waiting for it.
    pub async fn on_client_completion(
        &self,
        connection_id: &Arc<str>,
        protocol: Protocol,
        message: &HubMessage,
    ) -> bool {
        let HubMessage::Completion { invocation_id, .. } = message else {
            return false;
        };
        let Some(channel) = self
            .lock_results()
            .remove(&(connection_id.clone(), invocation_id.clone()))
        else {
            return false;
        };
        let bin = protocol.encode(message);
        let payload = wire::encode_completion(protocol.name(), &bin);
        let _ = self
            .publish(&self.channels.wire_from_logical(&channel), payload)
            .await;
        true
    }

    /// Handles one message from the backplane (B.7). Bad payloads are logged, counted and dropped.
    ///
    /// Deliveries go through `cork`: when it is active (the receive loop saw a backlog) they are
    /// queued and written when the loop flushes it.
    /// Never waits: it runs on the backplane's reader task too (`backplane::DirectReceiver`).
    pub fn on_backplane_message(&self, channel: &str, payload: &[u8], cork: &mut Cork) {
        Stats::inc(&self.stats.backplane_in);
        let Some(kind) = self.channels.classify(channel) else {
            tracing::debug!(channel, "message on a channel this hub does not use");
            return;
        };
        if let Err(e) = self.handle(kind, payload, cork) {
            Stats::inc(&self.stats.backplane_decode_errors);
            tracing::warn!(channel, error = %e, "undecodable backplane payload dropped");
        }
    }

    fn handle(&self, kind: ChannelKind, payload: &[u8], cork: &mut Cork) -> Result<(), wire::WireError> {
        match kind {
            ChannelKind::All => {
                let (frames, inv) = Frames::decode(payload)?;
                let excluded = &inv.excluded;
                self.fan_out(Target::All { excluded }, &frames, cork);
            }
            ChannelKind::Group(group) => {
                let (frames, inv) = Frames::decode(payload)?;
                let excluded = &inv.excluded;
                self.fan_out(
                    Target::Group {
                        group: &group,
                        excluded,
                    },
                    &frames,
                    cork,
                );
            }
            ChannelKind::User(user) => {
                // B.7: excluded ids are not checked for user sends.
                let (frames, _) = Frames::decode(payload)?;
                self.fan_out(Target::User(&user), &frames, cork);
            }
            ChannelKind::Connection(id) => {
                let (frames, inv) = Frames::decode(payload)?;
                // A client result is awaited before the request is written: a direct fan-out
                // writes it at once, and the client may answer before `fan_out` returns.
                let awaited = match (inv.invocation_id, inv.return_channel) {
                    (Some(invocation_id), Some(channel)) => {
                        let key = (Arc::<str>::from(&*id), invocation_id.to_owned());
                        self.lock_results().insert(key.clone(), channel.to_owned());
                        Some(key)
                    }
                    _ => None,
                };
                let found = self.fan_out(Target::Connection(&id), &frames, cork);
                if let (0, Some(key)) = (found, awaited) {
                    // Not a connection of this node: nothing to wait for.
                    self.lock_results().remove(&key);
                }
            }
            ChannelKind::InternalGroups => {
                let command = wire::decode_group_command(payload)?;
                if !self.registry.is_local(&command.connection_id) {
                    return Ok(()); // every server gets every command; only the owner acts and acks
                }
                // The membership changes here, in order with the other backplane messages; the
                // subscription round trip and the ack run in their own task.
                let channel = match command.action {
                    GroupAction::Add => match self.registry.join(&command.connection_id, &command.group) {
                        GroupChange::Changed => Some((true, self.channels.group(&command.group))),
                        GroupChange::LimitReached { max } => {
                            // An ack carries no error, so an ack would tell the requester the join
                            // succeeded. No ack: ASP.NET Core's sender (and ours) reports a failure
                            // when its ack timeout expires. Counted and logged here.
                            Stats::inc(&self.stats.remote_group_refusals);
                            tracing::warn!(connection = %command.connection_id, group = %command.group, max, "remote AddToGroup refused and not acknowledged: the connection is in too many groups");
                            return Ok(());
                        }
                        GroupChange::Unchanged | GroupChange::NotLocal => None,
                    },
                    GroupAction::Remove => {
                        match self.registry.leave(&command.connection_id, &command.group) {
                            (GroupChange::Changed, Some(name)) => Some((false, self.channels.group(&name))),
                            _ => None,
                        }
                    }
                };
                let forwarder = self.forwarder.clone();
                let ack_channel = self.channels.ack(&command.server_name);
                tokio::spawn(async move {
                    match channel {
                        Some((true, channel)) => forwarder.subscribe(&channel).await,
                        Some((false, channel)) => forwarder.unsubscribe(&channel).await,
                        None => {}
                    }
                    let _ = forwarder
                        .publish(&ack_channel, wire::encode_ack(command.id))
                        .await;
                });
            }
            ChannelKind::Ack(server) => {
                if server == self.server_name {
                    let id = wire::decode_ack(payload)?;
                    if let Some(tx) = self.lock_acks().remove(&id) {
                        let _ = tx.send(());
                    }
                }
            }
            ChannelKind::Return(_) => {
                // This hub never invokes client results on other servers' connections.
                tracing::debug!("client result for an invocation this node did not make");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload written straight from the thread's buffers is the one the message's frames
    /// give, byte for byte: for a chat message, with exclusions, and for a message whose
    /// MessagePack length prefix takes several bytes (and whose buffers are let go after).
    #[test]
    fn an_invocation_payload_carries_each_protocols_frame_payload() {
        let chat = HubMessage::invocation("ReceiveMessage", vec!["ann".into(), "hi \"there\"\n".into()]);
        let big = HubMessage::invocation("ReceiveMessage", vec!["ann".into(), "x".repeat(100_000).into()]);
        for (excluded, message) in [
            (&[][..], &chat),
            (&["c1", "c2"][..], &chat),
            (&[][..], &big),
            (&[][..], &chat),
        ] {
            let frames = Frames::serialize(message);
            let expected = wire::encode_invocation(excluded, &frames.serializations(), None);
            assert_eq!(invocation_payload(excluded, message), expected);
        }
    }

    /// A received message's frames are made on first use, once, from its own serialization; a
    /// JSON serialization that is not UTF-8 gives no frame.
    #[test]
    fn received_frames_are_made_when_first_needed() {
        let payload = wire::encode_invocation(
            &["a"],
            &[("json", b"{\"type\":1}\x1e"), ("messagepack", &[0x01, 0x90])],
            None,
        );
        let (frames, head) = Frames::decode(&payload).unwrap();
        assert_eq!(head.excluded, ["a"]);
        assert!(frames.json.get().is_none() && frames.msgpack.get().is_none());
        let json = frames.for_protocol(Protocol::Json).unwrap();
        assert_eq!(json.payload(), b"{\"type\":1}\x1e");
        assert!(frames.msgpack.get().is_none(), "the other protocol is not framed");
        assert!(
            std::ptr::eq(json, frames.for_protocol(Protocol::Json).unwrap()),
            "made once"
        );
        assert_eq!(
            frames.for_protocol(Protocol::MessagePack).unwrap().payload(),
            [0x01, 0x90]
        );
        assert_eq!(
            frames.serializations(),
            [
                ("json", &b"{\"type\":1}\x1e"[..]),
                ("messagepack", &[0x01, 0x90][..])
            ]
        );

        let payload = wire::encode_invocation(&[], &[("json", &[0xff, 0x1e])], None);
        let (frames, _) = Frames::decode(&payload).unwrap();
        assert!(frames.for_protocol(Protocol::Json).is_none());
        assert!(frames.for_protocol(Protocol::MessagePack).is_none());
    }
}
