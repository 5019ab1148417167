//! Sharded pub/sub (`--sharded-pubsub`, Redis 7+): the channels the hub marks as sharded
//! (connection, group and user channels) use SSUBSCRIBE / SPUBLISH on the shard that owns their
//! slot, so the backplane's traffic is spread over the shards instead of being broadcast to
//! every node of the cluster. Not understood by ASP.NET Core servers (dotnet/aspnetcore#54344).
//!
//! One subscriber connection and one command connection per shard primary. redis-rs 1.8 has no
//! SSUBSCRIBE on a plain connection, so the subscriber connections are raw (authenticated by
//! `redis_conn`, spoken with the small RESP reader in `resp`).
//!
//! One task (the shard manager) owns the subscriber connections' write halves and their
//! bookkeeping; one reader task per connection hands `smessage`s straight to the node's inbox
//! (bounded, never waiting: a full inbox drops and counts, as on the classic link) and everything
//! else to the manager. References are counted like the classic link's (`subscribe` /
//! `unsubscribe` under a short std mutex, never held across an await).
//!
//! Slot migrations are followed: when a shard drops a channel by itself (its server-sent
//! SUNSUBSCRIBE after the slot moved) or answers MOVED, the manager reads `CLUSTER SHARDS` again
//! and subscribes the channel on its new owner. Messages published to the new owner before that
//! SSUBSCRIBE lands are not received: every such gap is counted (`gaps`, logged at warn) so a loss
//! is never silent. A publisher's MOVED is retried once on the named node when it is known, and
//! otherwise fails (counted by the hub as a forward failure).
//!
//! Any subscriber connection lost (a primary died) restarts the whole sharded link: reach the
//! cluster again, reconnect every shard, subscribe every referenced channel, then report up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pipeline::{READ_CHUNK, read_more};
use super::resp::{self, Resp};
use super::slot::{SlotMap, key_slot};
use super::{COMMAND_TIMEOUT, Finder, Part, RefCounts, Shared as LinkShared};
use crate::backplane::reconnect::{self, Failure, Link, LinkFailure, Report};
use crate::backplane::{BackplaneError, BackplaneMessage, BackplaneState, Receivers};
use crate::config;
use crate::redis_conn::{Addr, Reached, describe, describe_text};
use crate::tls::BoxedIo;

/// Control replies buffered between the readers and the manager. Only confirmations and errors
/// travel here (a few per subscribe), never messages; a reader waits when it is full.
const CONTROL_QUEUE: usize = 1024;

/// The shortest time between two reads of the shard map: a map with a hole (a slot owned by
/// nobody during a failover) must not turn into a loop of CLUSTER SHARDS.
const REFRESH_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Which channels are sharded (decided by the hub, which knows the channel names).
pub type IsSharded = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The sharded half of a node's Redis link.
pub(super) struct ShardedLink {
    shared: Arc<State>,
}

struct State {
    table: Mutex<Table>,
    changed: Notify,
    /// Channels a shard dropped by itself (slot migrated) before the node subscribed them on the
    /// new owner: messages in between may be lost.
    gaps: AtomicU64,
}

#[derive(Default)]
struct Table {
    /// Who wants which channel; dirty also when a channel's owner must be looked at again.
    refs: RefCounts,
    /// Confirmed on their owner's connection.
    confirmed: HashSet<String>,
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// The slot map and each shard's primary and command connection (empty while down).
    map: SlotMap,
    primaries: Vec<Addr>,
    publishers: Vec<MultiplexedConnection>,
    /// Connected and every referenced channel subscribed once.
    live: bool,
    /// A publisher saw MOVED: the manager reads the shard map again.
    stale_map: bool,
}

impl Table {
    fn add(&mut self, channel: &str, delta: i64) -> bool {
        self.refs.add(channel, delta)
    }

    fn wake(&mut self, channel: &str) {
        for waiter in self.waiters.remove(channel).unwrap_or_default() {
            let _ = waiter.send(());
        }
    }

    fn lost(&mut self) {
        self.live = false;
        self.confirmed.clear();
        self.publishers.clear();
        self.primaries.clear();
        self.map = SlotMap::default();
        self.refs.touch_all();
        for (_, waiters) in self.waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }
}

impl State {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Map operations only: a poisoned lock holds consistent data.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShardedLink {
    /// Starts the shard supervisor next to the classic link (`link` combines both states).
    pub(super) fn start(finder: Finder, link: Arc<LinkShared>, cancel: CancellationToken) -> Self {
        let shared = Arc::new(State {
            table: Mutex::new(Table::default()),
            changed: Notify::new(),
            gaps: AtomicU64::new(0),
        });
        tokio::spawn(supervise(
            ShardSupervisor {
                finder,
                state: shared.clone(),
                link,
            },
            cancel,
        ));
        ShardedLink { shared }
    }

    /// How many times a shard dropped a channel by itself (see the module docs).
    pub(super) fn gaps(&self) -> u64 {
        self.shared.gaps.load(Ordering::Relaxed)
    }

    pub(super) async fn publish(&self, channel: &str, payload: Bytes) -> Result<Receivers, BackplaneError> {
        let slot = key_slot(channel.as_bytes());
        let connection = {
            let table = self.shared.table();
            table
                .map
                .owner(slot)
                .and_then(|shard| table.publishers.get(shard).cloned())
        };
        let Some(connection) = connection else {
            return Err(BackplaneError::Down("the sharded link is not connected".into()));
        };
        match spublish(connection, channel, &payload).await {
            Err(PublishError::Moved(addr)) => {
                // The slot moved: read the map again, and try the named node once if we know it.
                let retry = {
                    let mut table = self.shared.table();
                    table.stale_map = true;
                    table
                        .primaries
                        .iter()
                        .position(|p| p.to_string() == addr)
                        .and_then(|i| table.publishers.get(i).cloned())
                };
                self.shared.changed.notify_one();
                match retry {
                    Some(connection) => spublish(connection, channel, &payload)
                        .await
                        .map_err(PublishError::into_backplane),
                    None => Err(BackplaneError::Redis(format!(
                        "SPUBLISH {channel}: slot {slot} moved to {addr}, not connected yet"
                    ))),
                }
            }
            other => other.map_err(PublishError::into_backplane),
        }
    }

    pub(super) fn subscribe(&self, channel: &str) -> Option<oneshot::Receiver<()>> {
        let waiting = {
            let mut table = self.shared.table();
            let wanted = table.add(channel, 1);
            if !wanted || !table.live || table.confirmed.contains(channel) {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                table.waiters.entry(channel.to_string()).or_default().push(tx);
                Some(rx)
            }
        };
        self.shared.changed.notify_one();
        waiting
    }

    pub(super) fn unsubscribe(&self, channel: &str) {
        self.shared.table().add(channel, -1);
        self.shared.changed.notify_one();
    }
}

enum PublishError {
    Moved(String),
    Other(String),
}

impl PublishError {
    fn into_backplane(self) -> BackplaneError {
        match self {
            PublishError::Moved(addr) => BackplaneError::Redis(format!("SPUBLISH: MOVED to {addr}")),
            PublishError::Other(e) => BackplaneError::Redis(e),
        }
    }
}

async fn spublish(
    mut connection: MultiplexedConnection,
    channel: &str,
    payload: &[u8],
) -> Result<Receivers, PublishError> {
    let mut command = redis::cmd("SPUBLISH");
    command.arg(channel).arg(payload);
    match tokio::time::timeout(COMMAND_TIMEOUT, command.query_async::<i64>(&mut connection)).await {
        // The owner counts the subscribers of its own shard only.
        Ok(Ok(n)) => Ok(Receivers::Local(n.max(0) as usize)),
        Ok(Err(e)) => match e.redirect_node() {
            Some((addr, _)) => Err(PublishError::Moved(addr.to_string())),
            None => Err(PublishError::Other(describe(&e))),
        },
        Err(_) => Err(PublishError::Other("SPUBLISH timed out".into())),
    }
}

/// What a reader tells the manager.
enum Control {
    Reply { shard: usize, value: Resp },
    Closed { shard: usize, failure: Failure },
}

/// What is pending on one subscriber connection, in the order the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Subscribe(String),
    Unsubscribe(String),
}

/// The manager's view of one shard's subscriber connection.
struct ShardConn {
    addr: Addr,
    writer: WriteHalf<BoxedIo>,
    /// Channels asked for on this connection (pending or confirmed).
    asked: HashSet<String>,
    pending: VecDeque<Op>,
    reader: JoinHandle<()>,
}

impl Drop for ShardConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The sharded half as the reconnect loop drives it.
struct ShardSupervisor {
    finder: Finder,
    state: Arc<State>,
    link: Arc<LinkShared>,
}

async fn supervise(mut supervisor: ShardSupervisor, cancel: CancellationToken) {
    reconnect::run(&mut supervisor, &cancel).await;
    supervisor.state.table().lost();
}

/// One connected life of the sharded link: every shard's subscriber connection and the queue
/// their readers answer on.
struct Shards {
    conns: Vec<ShardConn>,
    control_tx: mpsc::Sender<Control>,
    control_rx: mpsc::Receiver<Control>,
    last_refresh: tokio::time::Instant,
}

impl Link for ShardSupervisor {
    type Conn = Shards;

    /// Reaches the cluster, connects every shard and subscribes every referenced channel: ready
    /// once nothing is pending.
    async fn connect(&mut self) -> Result<Shards, Failure> {
        let reached = match tokio::time::timeout(
            config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2,
            self.finder.reach(),
        )
        .await
        {
            Ok(Ok(reached)) => reached,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(Failure::new(LinkFailure::Timeout, "timed out reaching Redis")),
        };
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let mut shards = Shards {
            conns: Vec::new(),
            control_tx,
            control_rx,
            last_refresh: tokio::time::Instant::now(),
        };
        connect_shards(
            &self.finder,
            &self.state,
            &self.link,
            &reached,
            &mut shards.conns,
            &shards.control_tx,
        )
        .await?;
        tracing::info!(shards = shards.conns.len(), "sharded pub/sub connected");
        while !self.round(&mut shards, true).await? {}
        self.state.table().live = true;
        Ok(shards)
    }

    async fn serve(&mut self, mut shards: Shards) -> Result<(), Failure> {
        loop {
            self.round(&mut shards, false).await?;
        }
    }

    fn report(&mut self, state: Report<'_>) {
        match state {
            // The sharded part starts as Connecting.
            Report::Connecting => {}
            Report::Connected => self.link.set_part(Part::Sharded, BackplaneState::Connected),
            Report::Reconnecting {
                attempt,
                retry_in,
                error,
            } => {
                self.state.table().lost();
                self.link.record_error(format!("sharded pub/sub: {error}"));
                self.link
                    .set_part(Part::Sharded, BackplaneState::Reconnecting { attempt, retry_in });
            }
        }
    }
}

impl ShardSupervisor {
    /// One round: sends what changed, reads the shard map again if it is stale, and waits for a
    /// change or a reply. With `until_ready`, returns true instead of waiting once every shard
    /// confirmed everything asked and nothing is left to send.
    async fn round(&mut self, shards: &mut Shards, until_ready: bool) -> Result<bool, Failure> {
        let state = &self.state;
        sync(state, &mut shards.conns).await?;
        if until_ready && shards.conns.iter().all(|c| c.pending.is_empty()) && state.table().refs.is_clean() {
            return Ok(true);
        }
        let stale = std::mem::take(&mut state.table().stale_map);
        if stale {
            let wait = REFRESH_MIN_INTERVAL.saturating_sub(shards.last_refresh.elapsed());
            tokio::time::sleep(wait).await;
            shards.last_refresh = tokio::time::Instant::now();
            refresh(
                &mut self.finder,
                state,
                &self.link,
                &mut shards.conns,
                &shards.control_tx,
            )
            .await?;
        }
        tokio::select! {
            _ = state.changed.notified() => {}
            control = shards.control_rx.recv() => match control {
                None => return Err(Failure::new(LinkFailure::Other, "the shard readers ended")),
                Some(Control::Closed { shard, failure }) => {
                    let addr = shards.conns.get(shard).map(|c| c.addr.to_string()).unwrap_or_default();
                    return Err(failure.context(format_args!("shard {addr}")));
                }
                Some(Control::Reply { shard, value }) => {
                    if let Some(failure) = on_reply(state, &self.link, &mut shards.conns, shard, value) {
                        return Err(failure);
                    }
                }
            },
        }
        Ok(false)
    }
}

/// The shards (primary address, slot ranges) that `reached` describes; a single server or a
/// sentinel primary is one shard with every slot.
fn shards_of(reached: &Reached) -> Vec<(Addr, Vec<(u16, u16)>)> {
    match reached {
        Reached::Cluster { shards, .. } => shards
            .iter()
            .filter_map(|s| s.primary().map(|p| (p.addr.clone(), s.slots.clone())))
            .filter(|(_, slots)| !slots.is_empty())
            .collect(),
        other => vec![(other.entry().clone(), vec![(0, super::slot::SLOTS - 1)])],
    }
}

/// Opens the subscriber and command connections of every shard not connected yet, and installs
/// the slot map.
async fn connect_shards(
    finder: &Finder,
    state: &Arc<State>,
    link: &Arc<LinkShared>,
    reached: &Reached,
    conns: &mut Vec<ShardConn>,
    control_tx: &mpsc::Sender<Control>,
) -> Result<(), Failure> {
    let shards = shards_of(reached);
    let mut ranges = Vec::new();
    let mut publishers = Vec::new();
    for (addr, slots) in shards {
        // Computed before any await: a write half is Send but not Sync.
        let existing = conns.iter().position(|c| c.addr == addr);
        let index = match existing {
            Some(i) => i,
            None => {
                let opened = async {
                    let publisher = finder.connector.multiplexed(&addr).await?;
                    let raw = finder.connector.raw(&addr).await?;
                    Ok::<_, crate::redis_conn::ConnectError>((publisher, raw))
                };
                let (publisher, raw) =
                    match tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2, opened).await {
                        Ok(Ok(pair)) => pair,
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => {
                            return Err(Failure::new(
                                LinkFailure::Timeout,
                                format!("{addr}: timed out connecting"),
                            ));
                        }
                    };
                check_sharded_support(publisher.clone(), &addr).await?;
                let (read, writer) = tokio::io::split(raw);
                let shard = conns.len();
                let reader = tokio::spawn(read_shard(shard, read, link.clone(), control_tx.clone()));
                conns.push(ShardConn {
                    addr: addr.clone(),
                    writer,
                    asked: HashSet::new(),
                    pending: VecDeque::new(),
                    reader,
                });
                publishers.push((shard, publisher));
                shard
            }
        };
        for (start, end) in slots {
            ranges.push((start, end, index));
        }
    }
    let mut table = state.table();
    // Publishers and primaries share the connections' indexes: connections are only appended
    // while the link lives (a shard that lost its slots keeps its index and owns nothing).
    table.primaries = conns.iter().map(|c| c.addr.clone()).collect();
    for (shard, publisher) in publishers {
        debug_assert_eq!(table.publishers.len(), shard);
        table.publishers.push(publisher);
    }
    table.map = SlotMap::new(ranges);
    // Every channel's owner may have changed.
    table.refs.touch_all();
    Ok(())
}

/// A Redis older than 7 has no sharded pub/sub: say so in words instead of failing later.
async fn check_sharded_support(mut publisher: MultiplexedConnection, addr: &Addr) -> Result<(), Failure> {
    let mut command = redis::cmd("PUBSUB");
    command.arg("SHARDNUMSUB");
    match tokio::time::timeout(
        COMMAND_TIMEOUT,
        command.query_async::<redis::Value>(&mut publisher),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failure::new(
            LinkFailure::Protocol,
            format!(
                "{addr}: --sharded-pubsub needs Redis 7 or later (SSUBSCRIBE, SPUBLISH): {}",
                describe(&e)
            ),
        )),
        Err(_) => Err(Failure::new(
            LinkFailure::Timeout,
            format!("{addr}: PUBSUB SHARDNUMSUB timed out"),
        )),
    }
}

/// Reads the shard map again (after MOVED or a server-sent SUNSUBSCRIBE), connects new primaries
/// and marks every channel for a second look.
async fn refresh(
    finder: &mut Finder,
    state: &Arc<State>,
    link: &Arc<LinkShared>,
    conns: &mut Vec<ShardConn>,
    control_tx: &mpsc::Sender<Control>,
) -> Result<(), Failure> {
    let reached = match tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2, finder.reach()).await
    {
        Ok(Ok(reached)) => reached,
        Ok(Err(e)) => return Err(Failure::from(e).context("reading the shard map again")),
        Err(_) => {
            return Err(Failure::new(
                LinkFailure::Timeout,
                "timed out reading the shard map again",
            ));
        }
    };
    tracing::info!(reached = %reached.describe(), "sharded pub/sub: shard map read again");
    connect_shards(finder, state, link, &reached, conns, control_tx).await?;
    sync(state, conns).await
}

/// Sends what changed: for each dirty channel, SUNSUBSCRIBE where it no longer belongs and
/// SSUBSCRIBE on its owner. One command per channel (channels of one SSUBSCRIBE must share a
/// slot), all written in one go per connection.
async fn sync(state: &Arc<State>, conns: &mut [ShardConn]) -> Result<(), Failure> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
    let mut unowned = false;
    {
        let mut table = state.table();
        for channel in table.refs.take_dirty() {
            let wanted = table.refs.wanted(&channel);
            let owner = table.map.owner(key_slot(channel.as_bytes()));
            for (i, conn) in conns.iter_mut().enumerate() {
                let belongs = wanted && owner == Some(i);
                if conn.asked.contains(&channel) && !belongs {
                    conn.asked.remove(&channel);
                    table.confirmed.remove(&channel);
                    out[i].extend(resp::command(&[b"SUNSUBSCRIBE", channel.as_bytes()]));
                    conn.pending.push_back(Op::Unsubscribe(channel.clone()));
                } else if belongs && !conn.asked.contains(&channel) {
                    conn.asked.insert(channel.clone());
                    out[i].extend(resp::command(&[b"SSUBSCRIBE", channel.as_bytes()]));
                    conn.pending.push_back(Op::Subscribe(channel.clone()));
                }
            }
            if wanted && owner.is_none() {
                unowned = true;
                table.wake(&channel);
            }
            if !wanted {
                table.wake(&channel);
            }
        }
        if unowned {
            table.stale_map = true;
        }
    }
    for (conn, bytes) in conns.iter_mut().zip(out) {
        if bytes.is_empty() {
            continue;
        }
        let write = async {
            conn.writer.write_all(&bytes).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            // A write that fails means the connection is gone.
            Ok(Err(e)) => {
                return Err(Failure::new(
                    LinkFailure::Lost,
                    format!("shard {}: writing: {e}", conn.addr),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    LinkFailure::Timeout,
                    format!("shard {}: writing timed out", conn.addr),
                ));
            }
        }
    }
    if unowned {
        state.changed.notify_one();
    }
    Ok(())
}

/// Handles one confirmation or error from shard `shard`; returns a failure that ends the link.
fn on_reply(
    state: &Arc<State>,
    link: &LinkShared,
    conns: &mut [ShardConn],
    shard: usize,
    value: Resp,
) -> Option<Failure> {
    let conn = conns.get_mut(shard)?;
    match value {
        Resp::Array(Some(items)) if items.len() == 3 => {
            let kind = items[0].bytes().unwrap_or_default().to_ascii_lowercase();
            let channel = String::from_utf8_lossy(items[1].bytes().unwrap_or_default()).into_owned();
            match kind.as_slice() {
                b"ssubscribe" => {
                    if conn.pending.front() == Some(&Op::Subscribe(channel.clone())) {
                        conn.pending.pop_front();
                    }
                    let mut table = state.table();
                    if conn.asked.contains(&channel) {
                        table.confirmed.insert(channel.clone());
                    }
                    table.wake(&channel);
                }
                b"sunsubscribe" => {
                    if conn.pending.front() == Some(&Op::Unsubscribe(channel.clone())) {
                        conn.pending.pop_front();
                    } else if conn.asked.remove(&channel) {
                        // Sent by the server: the slot moved away from this shard.
                        let gaps = state.gaps.fetch_add(1, Ordering::Relaxed) + 1;
                        // Shown as the link's last error (and logged at warn) so a possible
                        // loss is visible on the node's status and the dashboard.
                        link.record_error(format!(
                            "shard {} dropped sharded channel {channel} (its slot moved): subscribing it on the new owner; messages in between may be lost ({gaps} such gaps so far)",
                            conn.addr
                        ));
                        let mut table = state.table();
                        table.confirmed.remove(&channel);
                        table.refs.touch(channel);
                        table.stale_map = true;
                        drop(table);
                        state.changed.notify_one();
                    }
                }
                _ => {
                    tracing::debug!(shard = %conn.addr, "unexpected reply on a sharded subscriber connection")
                }
            }
            None
        }
        Resp::Error(text) => {
            let op = conn.pending.pop_front();
            let channel = match &op {
                Some(Op::Subscribe(c)) | Some(Op::Unsubscribe(c)) => c.clone(),
                None => String::new(),
            };
            if text.starts_with("MOVED") || text.starts_with("ASK") {
                conn.asked.remove(&channel);
                let mut table = state.table();
                table.confirmed.remove(&channel);
                table.refs.touch(channel);
                table.stale_map = true;
                drop(table);
                state.changed.notify_one();
                return None;
            }
            // An error reply to SSUBSCRIBE or SUNSUBSCRIBE (NOPERM, say).
            Some(Failure::new(
                LinkFailure::Protocol,
                format!("shard {}: {}", conn.addr, describe_text(&text)),
            ))
        }
        other => {
            tracing::debug!(shard = %conn.addr, reply = ?other, "unexpected reply on a sharded subscriber connection");
            None
        }
    }
}

/// Reads one shard's subscriber connection: `smessage`s go to the node's inbox (never waiting),
/// anything else to the manager.
async fn read_shard(
    shard: usize,
    mut read: ReadHalf<BoxedIo>,
    link: Arc<LinkShared>,
    control_tx: mpsc::Sender<Control>,
) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let failure = loop {
        loop {
            match resp::parse(&buffer) {
                Ok(None) => break,
                Ok(Some((value, used))) => {
                    buffer.advance(used);
                    if let Some(message) = as_message(&value) {
                        // Never waits: a full inbox drops and counts (see the backplane docs).
                        if !link.inbox.offer(message) && link.inbox.is_closed() {
                            return;
                        }
                    } else if control_tx.send(Control::Reply { shard, value }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let failure = Failure::new(LinkFailure::Protocol, e.to_string());
                    let _ = control_tx.send(Control::Closed { shard, failure }).await;
                    return;
                }
            }
        }
        if let Err(why) = read_more(&mut read, &mut buffer).await {
            break Failure::new(LinkFailure::Lost, why);
        }
    };
    let _ = control_tx.send(Control::Closed { shard, failure }).await;
}

/// An `smessage` push as a backplane message.
fn as_message(value: &Resp) -> Option<BackplaneMessage> {
    let Resp::Array(Some(items)) = value else {
        return None;
    };
    let [kind, channel, payload] = items.as_slice() else {
        return None;
    };
    if !kind.bytes()?.eq_ignore_ascii_case(b"smessage") {
        return None;
    }
    Some(BackplaneMessage {
        channel: String::from_utf8_lossy(channel.bytes()?).into_owned(),
        payload: Bytes::copy_from_slice(payload.bytes()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smessages_become_backplane_messages_and_nothing_else_does() {
        let bulk = |s: &[u8]| Resp::Bulk(Some(Bytes::copy_from_slice(s)));
        let message = Resp::Array(Some(vec![
            bulk(b"smessage"),
            bulk(b"p:H:group:g"),
            bulk(b"\x00\x01"),
        ]));
        let got = as_message(&message).unwrap();
        assert_eq!(got.channel, "p:H:group:g");
        assert_eq!(&got.payload[..], b"\x00\x01");
        let confirm = Resp::Array(Some(vec![bulk(b"ssubscribe"), bulk(b"c"), Resp::Int(1)]));
        assert!(as_message(&confirm).is_none());
        assert!(as_message(&Resp::Error("MOVED 1 a:1".into())).is_none());
    }

    #[test]
    fn a_lost_link_forgets_the_map_and_marks_every_channel() {
        let mut t = Table::default();
        t.add("a", 1);
        t.add("b", 1);
        t.refs.take_dirty();
        t.confirmed.insert("a".into());
        t.live = true;
        t.map = SlotMap::new(vec![(0, 16383, 0)]);
        t.lost();
        assert!(!t.live && t.confirmed.is_empty());
        assert_eq!(t.map.owner(5), None);
        assert_eq!(t.refs.dirty_len(), 2);
    }
}
