//! The Redis backplane: PUBLISH on a multiplexed connection, SUBSCRIBE on a dedicated pub/sub
//! connection spoken with our own RESP reader (`subscriber`), both owned by one supervisor task
//! that reconnects with a capped backoff.
//!
//! Transport failure is a state, not an error: `status()` moves Connecting → Connected →
//! Reconnecting{attempt, retry_in} → Connected ..., and keeps the last error. While the link is
//! down, publishes fail at once (the hub counts them and delivers locally) and subscriptions are
//! only counted; on reconnect every channel with a reference is subscribed again before the state
//! returns to Connected. Nothing is replayed (at most once, as ASP.NET Core).
//!
//! Subscriptions: callers take and release references (`subscribe` / `unsubscribe`) under a
//! short std mutex that is never held across an await. One task per pub/sub connection, the
//! subscription manager, owns SUBSCRIBE and UNSUBSCRIBE: it compares the referenced channels with
//! what it has asked Redis for and sends the whole difference as one UNSUBSCRIBE and SUBSCRIBEs in
//! batches, so every handshake that arrived during a round trip shares the next one. A `subscribe`
//! caller waits for its own channel's confirmation, never for a lock. The receive path (the
//! subscriber's reader) never waits on a subscription round trip. A SUBSCRIBE that takes longer
//! than its limit means a slow Redis, not a lost one: those channels alone are retried with
//! backoff while the link and every channel already subscribed keep working (a reconnect under the
//! same limit would resubscribe everything and, on a struggling Redis, loop).
//!
//! Inbox: the subscriber connection's reader task cuts each message out of what it read and hands
//! it to the node's bounded inbox with `try_send`, never waiting. A full inbox drops the message
//! and counts it (`inbox_dropped`): the node sheds instead of growing.
//!
//! Topologies (`topology`): on every (re)connect the link asks the spec where to go
//! (`RedisConnector::reach`): a single server, the primary the sentinels name, or any node of a
//! cluster (classic pub/sub reaches every shard from any node). A cluster's nodes are remembered
//! as extra seeds, so a node whose seed died reconnects through the others. On a sentinel set the
//! node leaves a primary that was failed over even while it stays up (`+switch-master`, ROLE).
//! On a cluster a PUBLISH count covers the publishing node's subscribers only, so publishes
//! answer [`Receivers::Local`] there.
//!
//! `--sharded-pubsub` (`sharded`, with `slot` and `resp`): the channels the hub marks as sharded
//! use SSUBSCRIBE / SPUBLISH on their slot's owner; the status is Connected only when both the
//! classic and the sharded half are.
//!
//! With `redis_conn` (which opens and authenticates the connections and finds the primary or the
//! cluster), this is the only module that names the `redis` crate on the node side.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

mod pipeline;
mod publisher;
pub mod resp;
mod sharded;
mod slot;
mod subscriber;
mod topology;

use publisher::{Publisher, PublisherTasks};
pub use sharded::IsSharded;
use sharded::ShardedLink;
use subscriber::{SubSink, Subscriber};
use topology::{Finder, watch_primary};

use super::reconnect::{self, Failure, Link, LinkFailure, Report};
use super::{
    Backplane, BackplaneError, BackplaneState, BackplaneStatus, Counted, Inbox, PublishOutcome, Receivers,
    backoff,
};
use crate::config;
use crate::redis_conn::{ConnectError, Reached, RedisConnector, RedisSpec};
use crate::tls::BoxedIo;
use pipeline::CommandError;
use resp::Resp;

/// How long one PUBLISH or SUBSCRIBE may take before the link is considered unhealthy for it
/// (the publisher's connection is failed when it answers nothing for this long).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's link to Redis. Cloning shares the link.
#[derive(Clone)]
pub struct RedisBackplane {
    shared: Arc<Shared>,
    /// With `--sharded-pubsub`: the sharded half and which channels it carries.
    sharded: Option<(Arc<ShardedLink>, IsSharded)>,
}

struct Shared {
    /// References and the link's view of them. A std mutex: held for a few map operations only,
    /// never across an await (the manager copies what it needs, then sends without it).
    table: Mutex<Table>,
    /// Wakes the subscription manager after `table.counts` changed (a stored permit is never lost).
    changed: Notify,
    /// The command connection of the live link (PUBLISH), `None` while it is down.
    publisher: Mutex<Option<Publisher>>,
    /// Hears counted publishes' outcomes (`Backplane::set_publish_outcome`). Looked up when an
    /// outcome comes, not when a connection is made: the node may set it after the link is up.
    publish_outcome: Arc<std::sync::OnceLock<PublishOutcome>>,
    status_tx: watch::Sender<BackplaneStatus>,
    inbox: Inbox,
    /// The classic link's and the sharded link's states; `status_tx` shows them combined.
    parts: Mutex<Parts>,
    /// Whether the current server is a Redis Cluster node: then a PUBLISH count covers that
    /// node's own subscribers only ([`Receivers::Local`]).
    cluster: AtomicBool,
}

/// Which half of the link reports a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Classic,
    Sharded,
}

struct Parts {
    classic: BackplaneState,
    /// `None` without `--sharded-pubsub`.
    sharded: Option<BackplaneState>,
}

impl Parts {
    /// Up only when both halves are; otherwise the classic half's trouble first.
    fn combined(&self) -> BackplaneState {
        let Some(sharded) = &self.sharded else {
            return self.classic.clone();
        };
        match (&self.classic, sharded) {
            (BackplaneState::Stopped, _) => BackplaneState::Stopped,
            (c @ BackplaneState::Reconnecting { .. }, _) => c.clone(),
            (_, s @ BackplaneState::Reconnecting { .. }) => s.clone(),
            (BackplaneState::Connected, BackplaneState::Connected) => BackplaneState::Connected,
            _ => BackplaneState::Connecting,
        }
    }
}

/// Where one channel stands on the current pub/sub connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// SUBSCRIBE sent, not confirmed yet.
    Pending,
    Confirmed,
}

#[derive(Default)]
struct Table {
    /// Who wants which channel, and what changed.
    refs: RefCounts,
    /// What the current pub/sub connection was asked for (empty while down).
    link: HashMap<String, Sub>,
    /// `subscribe` callers waiting for their channel's confirmation.
    waiters: HashMap<String, Vec<oneshot::Sender<Result<(), BackplaneError>>>>,
    /// True once a pub/sub connection is up and its first resubscribe is done: before that,
    /// `subscribe` only counts (the reconnect subscribes everything).
    live: bool,
    /// Channels whose SUBSCRIBE timed out: still `Pending` in `link` (Redis may confirm them late,
    /// and a release meanwhile must still send UNSUBSCRIBE), sent again once the backoff is over.
    retry: HashSet<String>,
}

/// Reference counts per channel, and the channels whose count changed: the part of a subscription
/// table that the single-connection backplane and the sharded one (`sharded.rs`) share.
#[derive(Default)]
pub(super) struct RefCounts {
    /// channel → references. A channel is wanted while its count is positive. Signed, so that a
    /// release that overtakes its take (two tasks racing) still nets out to zero.
    counts: HashMap<String, i64>,
    /// Channels whose count changed since the manager last looked (or that the link lost): it
    /// looks at these only, so a round costs the changes, not every channel of the node.
    dirty: HashSet<String>,
}

impl RefCounts {
    /// Adds `delta` references to `channel`; returns whether it is wanted now.
    pub(super) fn add(&mut self, channel: &str, delta: i64) -> bool {
        self.dirty.insert(channel.to_string());
        let count = self.counts.entry(channel.to_string()).or_default();
        *count += delta;
        let wanted = *count > 0;
        if *count == 0 {
            self.counts.remove(channel);
        }
        wanted
    }

    pub(super) fn wanted(&self, channel: &str) -> bool {
        self.counts.get(channel).is_some_and(|c| *c > 0)
    }

    /// Marks `channel` to be looked at again.
    pub(super) fn touch(&mut self, channel: String) {
        self.dirty.insert(channel);
    }

    /// Marks every referenced channel (a new connection, a new shard map).
    pub(super) fn touch_all(&mut self) {
        self.dirty.extend(self.counts.keys().cloned());
    }

    /// The channels to look at, forgotten here.
    pub(super) fn take_dirty(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.dirty)
    }

    pub(super) fn is_clean(&self) -> bool {
        self.dirty.is_empty()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    #[cfg(test)]
    pub(super) fn dirty_len(&self) -> usize {
        self.dirty.len()
    }
}

impl Table {
    /// Adds `delta` references to `channel`; returns whether it is wanted now.
    fn add(&mut self, channel: &str, delta: i64) -> bool {
        self.refs.add(channel, delta)
    }

    fn wanted(&self, channel: &str) -> bool {
        self.refs.wanted(channel)
    }

    /// The changes to send: (to subscribe, marked Pending; to unsubscribe, forgotten).
    fn diff(&mut self) -> (Vec<String>, Vec<String>) {
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        for channel in self.refs.take_dirty() {
            match (self.wanted(&channel), self.link.contains_key(&channel)) {
                (true, false) => {
                    self.link.insert(channel.clone(), Sub::Pending);
                    subscribe.push(channel);
                }
                (false, true) => {
                    self.link.remove(&channel);
                    unsubscribe.push(channel);
                }
                _ => {}
            }
        }
        (subscribe, unsubscribe)
    }

    /// Redis confirmed `channels`: mark them and release their waiters.
    fn confirmed(&mut self, channels: &[String]) {
        for channel in channels {
            self.retry.remove(channel);
            if let Some(state) = self.link.get_mut(channel) {
                *state = Sub::Confirmed;
            }
            for waiter in self.waiters.remove(channel).unwrap_or_default() {
                let _ = waiter.send(Ok(()));
            }
        }
    }

    /// SUBSCRIBE for `channels` timed out: Redis is slow, not gone. They stay `Pending` and wait
    /// for [`retry_now`](Self::retry_now); their waiters hear the timeout now.
    fn deferred(&mut self, channels: &[String], error: &BackplaneError) {
        for channel in channels {
            self.retry.insert(channel.clone());
            for waiter in self.waiters.remove(channel).unwrap_or_default() {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }

    /// The retry backoff is over: the deferred channels that are still pending are changes again
    /// (the next diff sends them), those released meanwhile were unsubscribed by the diff already.
    fn retry_now(&mut self) {
        for channel in std::mem::take(&mut self.retry) {
            if self.link.get(&channel) == Some(&Sub::Pending) {
                self.link.remove(&channel);
                self.refs.touch(channel);
            }
        }
    }

    /// SUBSCRIBE for `channels` failed: forget them (the next connection retries) and tell waiters.
    fn failed(&mut self, channels: &[String], error: &BackplaneError) {
        for channel in channels {
            self.link.remove(channel);
            self.refs.touch(channel.clone());
            for waiter in self.waiters.remove(channel).unwrap_or_default() {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }

    /// The pub/sub connection is gone: nothing is subscribed any more. Waiters are released (their
    /// channels keep their references and are subscribed again on reconnect).
    fn lost(&mut self) {
        self.live = false;
        self.link.clear();
        self.retry.clear();
        // The next connection starts from nothing: every referenced channel is a change.
        self.refs.touch_all();
        for (_, waiters) in self.waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
        }
    }
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Map operations only, none of which can panic halfway: a poisoned lock is consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why nothing can be published now: the link has no command connection (its state says
    /// why).
    fn down(&self) -> BackplaneError {
        let state = self.status_tx.borrow().state.clone();
        BackplaneError::Down(format!("{state:?}"))
    }

    fn publisher(&self) -> MutexGuard<'_, Option<Publisher>> {
        // Holds an Option only: always consistent.
        self.publisher.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: BackplaneState) {
        self.set_part(Part::Classic, state);
    }

    /// Records one half's state and publishes the combined one (a (re)connect is counted when
    /// the combination becomes Connected).
    fn set_part(&self, part: Part, state: BackplaneState) {
        let combined = {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            match part {
                Part::Classic => parts.classic = state,
                Part::Sharded => parts.sharded = Some(state),
            }
            parts.combined()
        };
        self.status_tx.send_modify(|s| {
            if combined == BackplaneState::Connected && s.state != BackplaneState::Connected {
                s.connects += 1;
            }
            s.state = combined;
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
    /// Reads the spec's TLS files and starts the supervisor; returns at once (the first
    /// connection is made in the background). Every connection is named `client_name` in Redis's
    /// `CLIENT LIST`. Messages received go to `inbox` (without waiting: see the module docs).
    /// `cancel` stops the link.
    pub fn start(
        spec: RedisSpec,
        client_name: &str,
        inbox: impl Into<Inbox>,
        cancel: CancellationToken,
    ) -> Result<Self, String> {
        Self::start_with(spec, client_name, inbox, cancel, None)
    }

    /// Like [`start`](Self::start); with `sharded`, the channels it accepts use sharded pub/sub
    /// (SSUBSCRIBE / SPUBLISH on the shard that owns their slot, Redis 7+; see `sharded`) and
    /// the rest stay classic.
    pub fn start_with(
        spec: RedisSpec,
        client_name: &str,
        inbox: impl Into<Inbox>,
        cancel: CancellationToken,
        sharded: Option<IsSharded>,
    ) -> Result<Self, String> {
        let connector = RedisConnector::new(spec)
            .map_err(|e| e.to_string())?
            .with_name(client_name);
        let (status_tx, _) = watch::channel(BackplaneStatus::new(BackplaneState::Connecting));
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            changed: Notify::new(),
            publisher: Mutex::new(None),
            publish_outcome: Arc::default(),
            status_tx,
            inbox: inbox.into(),
            cluster: AtomicBool::new(false),
            parts: Mutex::new(Parts {
                classic: BackplaneState::Connecting,
                sharded: sharded.as_ref().map(|_| BackplaneState::Connecting),
            }),
        });
        let finder = Finder {
            connector,
            client_name: client_name.to_string(),
            known: Vec::new(),
        };
        let sharded = sharded.map(|is_sharded| {
            let link = ShardedLink::start(finder.clone(), shared.clone(), cancel.clone());
            (Arc::new(link), is_sharded)
        });
        tokio::spawn(supervise(finder, shared.clone(), cancel));
        Ok(RedisBackplane { shared, sharded })
    }
}

/// Finds the server to use now (the primary a sentinel names, or any node of a cluster: classic
/// pub/sub reaches every shard from any node) and opens both connections to it.
/// The command connection comes with its plain socket's second handle (`raw_with_socket`).
async fn connect(
    finder: &mut Finder,
) -> Result<(BoxedIo, (BoxedIo, Option<std::net::TcpStream>), Reached), Failure> {
    let attempt = async {
        let reached = finder.reach().await?;
        let entry = reached.entry().clone();
        let pubsub = finder.connector.raw(&entry).await?;
        let publisher = finder.connector.raw_with_socket(&entry).await?;
        tracing::debug!(server = %entry, reached = %reached.describe(), "redis backplane reached");
        Ok::<_, ConnectError>((pubsub, publisher, reached))
    };
    match tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2, attempt).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(Failure::new(
            LinkFailure::Timeout,
            "timed out connecting to Redis",
        )),
    }
}

/// Sends what changed in the table until nothing is left to send: one UNSUBSCRIBE and the
/// SUBSCRIBEs per round trip, covering every change made since the previous one. SUBSCRIBEs go in
/// batches of [`config::DEFAULT_SUBSCRIBE_BATCH`] channels, one after the other, so a reconnect
/// that resubscribes thousands of channels on a slow Redis gets each batch confirmed within the
/// limit. A batch that times out is deferred (retried alone with backoff by the manager) while the
/// link and the channels already subscribed keep working; only a failed connection is an error.
async fn sync_subscriptions(sink: &SubSink, shared: &Shared) -> Result<(), Failure> {
    loop {
        let (subscribe, unsubscribe) = shared.table().diff();
        if subscribe.is_empty() && unsubscribe.is_empty() {
            return Ok(());
        }
        let unsubscribed = async {
            if unsubscribe.is_empty() {
                return Ok(());
            }
            match tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&unsubscribe)).await {
                Ok(r) => r.map_err(|e| e.failure()),
                // Already forgotten by the table; Redis drops them when the command gets through.
                Err(_) => {
                    shared.record_error(format!(
                        "UNSUBSCRIBE of {} channel(s) took over {COMMAND_TIMEOUT:?}: Redis is slow",
                        unsubscribe.len()
                    ));
                    Ok(())
                }
            }
        };
        let subscribed = async {
            for batch in subscribe.chunks(config::DEFAULT_SUBSCRIBE_BATCH.max(1)) {
                match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(batch)).await {
                    Ok(Ok(())) => shared.table().confirmed(batch),
                    Ok(Err(e)) => {
                        let failure = e.failure();
                        let e = BackplaneError::Redis(failure.message.clone());
                        shared.table().failed(batch, &e);
                        return Err(Failure::new(failure.kind, e.to_string()));
                    }
                    Err(_) => {
                        let e = BackplaneError::Redis(format!(
                            "SUBSCRIBE took over {COMMAND_TIMEOUT:?}; retrying those channels"
                        ));
                        tracing::warn!(
                            channels = batch.len(),
                            "a SUBSCRIBE timed out: Redis is slow; retrying those channels alone with backoff"
                        );
                        shared.record_error(format!(
                            "SUBSCRIBE of {} channel(s) took over {COMMAND_TIMEOUT:?} (Redis is slow); retrying them",
                            batch.len()
                        ));
                        shared.table().deferred(batch, &e);
                    }
                }
            }
            Ok(())
        };
        // Both commands are queued on the one connection in this order, so a channel released
        // and taken again across two rounds is always unsubscribed before it is subscribed.
        let (unsubscribed, subscribed) = futures_util::future::join(unsubscribed, subscribed).await;
        tracing::trace!(
            subscribed = subscribe.len(),
            unsubscribed = unsubscribe.len(),
            "subscriptions synced"
        );
        subscribed.map_err(|f| f.context("subscribing"))?;
        unsubscribed.map_err(|f| f.context("unsubscribing"))?;
    }
}

/// The subscription manager of one pub/sub connection: syncs after every change until the
/// connection fails (its error is returned). Channels whose SUBSCRIBE timed out are sent again
/// at one deadline per round of retries (doubling from `DEFAULT_SUBSCRIBE_RETRY_BASE` up to
/// `DEFAULT_SUBSCRIBE_RETRY_MAX`), which other changes do not push back.
async fn manage_subscriptions(sink: SubSink, shared: Arc<Shared>) -> Failure {
    let mut attempt: u32 = 0;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        if let Err(e) = sync_subscriptions(&sink, &shared).await {
            return e;
        }
        if shared.table().retry.is_empty() {
            attempt = 0;
            retry_at = None;
            shared.changed.notified().await;
            continue;
        }
        let deadline = *retry_at.get_or_insert_with(|| {
            let delay = backoff(
                attempt,
                config::DEFAULT_SUBSCRIBE_RETRY_BASE,
                config::DEFAULT_SUBSCRIBE_RETRY_MAX,
            );
            attempt = attempt.saturating_add(1);
            tokio::time::Instant::now() + delay
        });
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {
                retry_at = None;
                shared.table().retry_now();
            }
        }
    }
}

/// The classic half of the link as the reconnect loop drives it: one pub/sub and one command
/// connection to the server the spec reaches now.
struct ClassicLink {
    finder: Finder,
    shared: Arc<Shared>,
}

/// A connection that is up and subscribed: the subscriber connection's tasks and the primary
/// watcher.
struct Live {
    subscriber: Subscriber,
    publisher: PublisherTasks,
    watcher: AbortOnDropHandle<String>,
}

impl Link for ClassicLink {
    type Conn = Live;

    async fn connect(&mut self) -> Result<Live, Failure> {
        let (pubsub, (publisher, socket), reached) = connect(&mut self.finder).await?;
        let counted = counted_outcome(self.shared.publish_outcome.clone());
        let (publisher, publisher_tasks) = Publisher::start(publisher, socket, Some(counted));
        let shared = &self.shared;
        shared
            .cluster
            .store(matches!(reached, Reached::Cluster { .. }), Ordering::Relaxed);
        // Aborted with the connection (a failed resubscribe, a lost link, a cancel).
        let watcher = AbortOnDropHandle::new(tokio::spawn(watch_primary(
            self.finder.connector.clone(),
            reached,
            publisher.clone(),
        )));
        let subscriber = Subscriber::start(pubsub, shared.inbox.clone());
        sync_subscriptions(&subscriber.sink, shared)
            .await
            .map_err(|f| f.context("subscribing after connect"))?;
        let channels = {
            let mut table = shared.table();
            table.live = true;
            table.link.len()
        };
        tracing::info!(channels, "redis backplane connected and subscribed");
        *shared.publisher() = Some(publisher);
        Ok(Live {
            subscriber,
            publisher: publisher_tasks,
            watcher,
        })
    }

    async fn serve(&mut self, live: Live) -> Result<(), Failure> {
        let Live {
            mut subscriber,
            mut publisher,
            mut watcher,
        } = live;
        let shared = &self.shared;
        let sink = subscriber.sink.clone();
        let mut manager = AbortOnDropHandle::new(tokio::spawn(manage_subscriptions(sink, shared.clone())));
        // A lost link is retried soon (Lost): Redis may be back, or the primary moved.
        let lost = |reason: String| Failure::new(LinkFailure::Lost, reason);
        // Whichever part ends first ends the link.
        let ended = tokio::select! {
            moved = &mut watcher => {
                Err(lost(moved.unwrap_or_else(|e| format!("primary watcher ended: {e}"))))
            }
            failed = &mut manager => {
                Err(failed.unwrap_or_else(|e| lost(format!("subscription manager ended: {e}"))))
            }
            // The reader hands messages to the inbox itself (never waiting: a full inbox drops
            // and counts, module docs) and ends with the connection.
            read = &mut subscriber.reader => match read {
                Ok(None) => Ok(()), // the node stopped
                Ok(Some(failure)) => Err(failure),
                Err(e) => Err(lost(format!("subscriber reader ended: {e}"))),
            },
            _ = &mut publisher.reader => Err(lost("command connection to Redis lost".to_string())),
            written = &mut publisher.writer => {
                Err(written.unwrap_or_else(|e| lost(format!("publisher writer ended: {e}"))))
            }
            written = &mut subscriber.writer => {
                Err(written.unwrap_or_else(|e| lost(format!("subscriber writer ended: {e}"))))
            }
        };
        drop((manager, watcher, subscriber, publisher));
        shared.table().lost();
        *shared.publisher() = None;
        ended
    }

    fn report(&mut self, state: Report<'_>) {
        match state {
            // The status starts as Connecting.
            Report::Connecting => {}
            Report::Connected => self.shared.set_state(BackplaneState::Connected),
            Report::Reconnecting {
                attempt,
                retry_in,
                error,
            } => {
                self.shared.table().lost();
                *self.shared.publisher() = None;
                self.shared.record_error(error.message.clone());
                self.shared
                    .set_state(BackplaneState::Reconnecting { attempt, retry_in });
            }
        }
    }
}

async fn supervise(finder: Finder, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut link = ClassicLink {
        finder,
        shared: shared.clone(),
    };
    reconnect::run(&mut link, &cancel).await;
    shared.table().lost();
    *shared.publisher() = None;
    shared.set_state(BackplaneState::Stopped);
}

/// A counted PUBLISH's reply as the hub hears it (through the outcome set on the backplane,
/// looked up now): an integer reply is success (a count of receivers); an error reply or a lost
/// connection is a failure, said in words.
fn counted_outcome(slot: Arc<std::sync::OnceLock<PublishOutcome>>) -> pipeline::Counter {
    Arc::new(move |reply: Result<Resp, CommandError>| {
        if let Some(outcome) = slot.get() {
            outcome(
                publisher::publish_reply(reply)
                    .map(|_| ())
                    .map_err(|e| BackplaneError::Redis(e.to_string())),
            );
        }
    })
}

impl Backplane for RedisBackplane {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<Receivers, BackplaneError>> {
        if let Some((link, is_sharded)) = &self.sharded
            && is_sharded(channel)
        {
            return Box::pin(link.publish(channel, payload));
        }
        let connection = self.shared.publisher().clone();
        Box::pin(async move {
            let Some(connection) = connection else {
                return Err(self.shared.down());
            };
            // No timer per publish: the publisher's connection fails as a whole when Redis
            // answers nothing for COMMAND_TIMEOUT while commands wait, which fails this publish
            // too.
            match connection.publish(channel, &payload).await {
                Ok(receivers) => {
                    let receivers = receivers.max(0) as usize;
                    // A cluster node counts only its own subscribers (see `Receivers`).
                    Ok(if self.shared.cluster.load(Ordering::Relaxed) {
                        Receivers::Local(receivers)
                    } else {
                        Receivers::All(receivers)
                    })
                }
                Err(e) => Err(BackplaneError::Redis(e.to_string())),
            }
        })
    }

    fn publish_counted(&self, channel: &str, payload: &[u8]) -> Counted {
        if let Some((_, is_sharded)) = &self.sharded
            && is_sharded(channel)
        {
            return Counted::Unsupported;
        }
        // Nobody would hear the outcome: the caller waits for it instead.
        if self.shared.publish_outcome.get().is_none() {
            return Counted::Unsupported;
        }
        let publisher = self.shared.publisher();
        let Some(connection) = publisher.as_ref() else {
            return Counted::Failed(self.shared.down());
        };
        match connection.publish_counted(channel, payload) {
            Ok(()) => Counted::Queued,
            Err(e) => Counted::Failed(BackplaneError::Redis(e.to_string())),
        }
    }

    fn set_publish_outcome(&self, outcome: PublishOutcome) {
        if self.shared.publish_outcome.set(outcome).is_err() {
            tracing::warn!("the backplane's publish outcome was set before: the first one stays");
        }
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>> {
        if let Some((link, is_sharded)) = &self.sharded
            && is_sharded(channel)
        {
            let waiting = link.subscribe(channel);
            return Box::pin(async move {
                let Some(rx) = waiting else {
                    return Ok(());
                };
                match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
                    // Confirmed, or the link went away (subscribed again on reconnect).
                    Ok(_) => Ok(()),
                    Err(_) => Err(BackplaneError::Redis("SSUBSCRIBE timed out".into())),
                }
            });
        }
        let waiting = {
            let mut table = self.shared.table();
            let wanted = table.add(channel, 1);
            if !wanted || !table.live || table.link.get(channel) == Some(&Sub::Confirmed) {
                None // already subscribed, or counted for the reconnect
            } else {
                let (tx, rx) = oneshot::channel();
                table.waiters.entry(channel.to_string()).or_default().push(tx);
                Some(rx)
            }
        };
        Box::pin(async move {
            let Some(rx) = waiting else {
                return Ok(());
            };
            self.shared.changed.notify_one();
            match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
                Ok(Ok(result)) => result,
                // The manager went away with the connection: subscribed again on reconnect.
                Ok(Err(_)) => Ok(()),
                Err(_) => Err(BackplaneError::Redis("SUBSCRIBE timed out".into())),
            }
        })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>> {
        if let Some((link, is_sharded)) = &self.sharded
            && is_sharded(channel)
        {
            link.unsubscribe(channel);
            return Box::pin(async { Ok(()) });
        }
        self.shared.table().add(channel, -1);
        self.shared.changed.notify_one();
        Box::pin(async { Ok(()) })
    }

    fn status(&self) -> watch::Receiver<BackplaneStatus> {
        self.shared.status_tx.subscribe()
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn inbox_dropped(&self) -> u64 {
        self.shared.inbox.dropped()
    }

    /// With `--sharded-pubsub`: how many times a shard dropped a sharded channel by itself (its
    /// slot moved) before the node subscribed it on the new owner. 0 otherwise.
    fn subscription_gaps(&self) -> u64 {
        self.sharded.as_ref().map_or(0, |(link, _)| link.gaps())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_up_only_when_both_halves_are() {
        let retry = BackplaneState::Reconnecting {
            attempt: 1,
            retry_in: Duration::from_millis(50),
        };
        let parts =
            |classic: BackplaneState, sharded: Option<BackplaneState>| Parts { classic, sharded }.combined();
        use BackplaneState::{Connected, Connecting, Stopped};
        assert_eq!(parts(Connected, None), Connected, "classic only");
        assert_eq!(parts(retry.clone(), None), retry);
        assert_eq!(parts(Connected, Some(Connecting)), Connecting);
        assert_eq!(parts(Connected, Some(Connected)), Connected);
        assert_eq!(
            parts(Connected, Some(retry.clone())),
            retry,
            "a sharded outage shows"
        );
        assert_eq!(parts(retry.clone(), Some(Connected)), retry);
        assert_eq!(parts(Stopped, Some(Connected)), Stopped);
    }

    fn names(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn the_diff_sends_each_change_once_and_a_release_before_a_retake() {
        let mut t = Table::default();
        t.add("a", 2);
        t.add("b", 1);
        let (sub, unsub) = t.diff();
        assert_eq!(sorted(sub), names(&["a", "b"]));
        assert!(unsub.is_empty());
        assert_eq!(t.diff(), (vec![], vec![]), "pending channels are not sent twice");
        t.confirmed(&names(&["a", "b"]));
        assert_eq!(t.link.get("a"), Some(&Sub::Confirmed));
        t.add("b", -1);
        t.add("c", 1);
        let (sub, unsub) = t.diff();
        assert_eq!((sub, unsub), (names(&["c"]), names(&["b"])));
        // Released and taken again before the manager ran: nothing to send.
        t.add("a", -2);
        t.add("a", 1);
        assert_eq!(t.diff(), (vec![], vec![]));
    }

    #[test]
    fn a_release_that_overtakes_its_take_nets_out() {
        let mut t = Table::default();
        assert!(!t.add("g", -1), "released before taken: not wanted");
        assert_eq!(t.diff(), (vec![], vec![]));
        assert!(!t.add("g", 1), "the late take balances it");
        assert!(t.refs.is_empty());
        assert_eq!(t.diff(), (vec![], vec![]));
    }

    #[test]
    fn waiters_hear_the_confirmation_or_the_loss_of_the_link() {
        let mut t = Table::default();
        let (tx, mut rx) = oneshot::channel();
        t.waiters.entry("a".into()).or_default().push(tx);
        t.confirmed(&names(&["a"]));
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
        let (tx, mut rx) = oneshot::channel();
        t.waiters.entry("b".into()).or_default().push(tx);
        t.live = true;
        t.link.insert("b".into(), Sub::Pending);
        t.lost();
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
        assert!(!t.live && t.link.is_empty());
    }

    #[test]
    fn after_a_lost_link_every_referenced_channel_is_sent_again() {
        let mut t = Table::default();
        t.add("a", 1);
        t.add("b", 2);
        let (sub, _) = t.diff();
        t.confirmed(&sub);
        assert_eq!(t.diff(), (vec![], vec![]));
        t.lost();
        let (sub, unsub) = t.diff();
        assert_eq!((sorted(sub), unsub), (names(&["a", "b"]), vec![]));
        t.failed(&names(&["a"]), &BackplaneError::Redis("x".into()));
        assert_eq!(
            t.diff(),
            (names(&["a"]), vec![]),
            "a failed SUBSCRIBE is tried again"
        );
    }

    #[test]
    fn a_timed_out_subscribe_is_retried_alone_and_a_release_meanwhile_unsubscribes() {
        let mut t = Table::default();
        t.add("old", 1);
        let (sub, _) = t.diff();
        t.confirmed(&sub);
        t.add("slow", 1);
        t.add("gone", 1);
        let (sub, _) = t.diff();
        let (tx, mut rx) = oneshot::channel();
        t.waiters.entry("slow".into()).or_default().push(tx);
        t.deferred(&sub, &BackplaneError::Redis("timed out".into()));
        assert!(
            matches!(rx.try_recv(), Ok(Err(_))),
            "the waiter hears the timeout"
        );
        assert_eq!(
            t.link.get("old"),
            Some(&Sub::Confirmed),
            "the others are untouched"
        );
        assert_eq!(
            t.diff(),
            (vec![], vec![]),
            "nothing is re-sent before the backoff is over"
        );
        // Released while deferred: Redis may have subscribed it late, so it is unsubscribed.
        t.add("gone", -1);
        assert_eq!(t.diff(), (vec![], names(&["gone"])));
        t.retry_now();
        assert_eq!(
            t.diff(),
            (names(&["slow"]), vec![]),
            "only the deferred channel is sent again"
        );
        t.confirmed(&names(&["slow"]));
        assert!(t.retry.is_empty());
        assert_eq!(t.link.get("slow"), Some(&Sub::Confirmed));
    }
}
