//! The node's local connections, groups and users.
//!
//! Owned by `NodeShared`; written by `connection` (register / unregister) and `lifetime` (group
//! changes), read by `lifetime` for every delivery. One `RwLock`: deliveries take the read lock and
//! only `try_send` under it (never await), so it is never held across I/O.
//!
//! Groups and users are removed when their last local member leaves: no map grows forever. The
//! caller (`lifetime`) takes one backplane subscription reference per member and releases it when
//! the member goes, so the registry reports every membership change, not only first and last. A
//! connection's own group set is case-insensitive while group names on the wire are
//! case-sensitive, as in ASP.NET Core (B.4); its size is capped (`max_groups`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use crate::config;
use crate::protocol::{HubMessage, Protocol};

/// One frame for one client's socket, shared between recipients (cloning is a refcount).
#[derive(Debug, Clone)]
pub(crate) enum WsFrame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl WsFrame {
    /// A text frame from serializer output (always UTF-8; lossy if it ever were not).
    pub fn text(bytes: Vec<u8>) -> WsFrame {
        WsFrame::Text(text_bytes(bytes))
    }
}

/// Serializes one message for one protocol as a WebSocket frame.
pub(crate) fn frame_of(protocol: Protocol, message: &HubMessage) -> WsFrame {
    let bytes = protocol.encode(message);
    match protocol {
        Protocol::Json => WsFrame::text(bytes),
        Protocol::MessagePack => WsFrame::Binary(Bytes::from(bytes)),
    }
}

/// `Utf8Bytes` from bytes our own JSON writer produced.
pub(crate) fn text_bytes(bytes: Vec<u8>) -> Utf8Bytes {
    match String::from_utf8(bytes) {
        Ok(text) => Utf8Bytes::from(text),
        Err(e) => Utf8Bytes::from(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Why the server is ending a connection; turned into a SignalR Close message by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseReason {
    pub error: Option<String>,
    pub allow_reconnect: bool,
    /// Whether frames already queued are still sent before the Close (not for slow clients).
    pub flush: bool,
}

impl CloseReason {
    pub const ERROR_TEXT: &'static str = "Connection closed with an error.";

    /// A protocol or transport error: the client may reconnect.
    pub fn error() -> Self {
        CloseReason {
            error: Some(Self::ERROR_TEXT.to_string()),
            allow_reconnect: true,
            flush: true,
        }
    }
}

/// The sending side of one connection: its bounded queue, its writer's wake-up and its kill switch.
///
/// The queue is a `VecDeque` under a `std` mutex and the writer's waker an `AtomicWaker`, instead
/// of a tokio `mpsc` channel and a `CancellationToken` future in every `select!`: a delivery is the
/// node's hottest path (one per recipient), and these cost what it needs and no more. Measured
/// with callgrind on the issue-8 load (`benches/fanout.rs`): the channel's semaphore and the kill
/// token's `Notify` (a mutex and a waiter list per poll) were a quarter of a delivery's
/// instructions. The mutex is held for a push or a drain only, never across an await. A delivery
/// wakes the writer only when it is parked (the waker is taken by the first wake), so frames that
/// arrive while it writes are picked up by its next drain: several frames, one flush, one syscall.
#[derive(Clone)]
pub(crate) struct Outbox {
    shared: Arc<OutboxShared>,
}

struct OutboxShared {
    queue: Mutex<VecDeque<WsFrame>>,
    capacity: usize,
    /// The writer task, parked until a frame or a stop arrives.
    writer: AtomicWaker,
    /// The writer should end: set by `close` and by `stop_writer` (node shutdown).
    stop: AtomicBool,
    /// The writer is gone: frames are refused.
    receiver_gone: AtomicBool,
    kill: CancellationToken,
    reason: OnceLock<CloseReason>,
    slow: AtomicBool,
}

/// The writer's end of an `Outbox`. Dropping it refuses further frames.
pub(crate) struct OutboxReceiver {
    shared: Arc<OutboxShared>,
}

/// Queued frames kept in an idle connection's queue after a burst: more is given back.
const IDLE_QUEUE_CAPACITY: usize = 32;

impl Outbox {
    /// A new outbox; `parent` is the node's shutdown token (cancelling it ends the connection).
    pub fn new(capacity: usize, parent: &CancellationToken) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(OutboxShared {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            writer: AtomicWaker::new(),
            stop: AtomicBool::new(false),
            receiver_gone: AtomicBool::new(false),
            kill: parent.child_token(),
            reason: OnceLock::new(),
            slow: AtomicBool::new(false),
        });
        (
            Outbox {
                shared: shared.clone(),
            },
            OutboxReceiver { shared },
        )
    }

    /// Queues a frame without waiting. A full queue means the client does not read: it is closed
    /// (once) and counted. Returns whether the frame was queued.
    pub fn deliver(&self, frame: WsFrame, stats: &Stats) -> bool {
        let shared = &*self.shared;
        if shared.receiver_gone.load(Ordering::Acquire) {
            return false;
        }
        let queued = {
            let mut queue = shared.lock_queue();
            if queue.len() < shared.capacity {
                queue.push_back(frame);
                true
            } else {
                false
            }
        };
        if queued {
            Stats::inc(&stats.client_out);
            shared.writer.wake();
            return true;
        }
        if !shared.slow.swap(true, Ordering::Relaxed) {
            Stats::inc(&stats.slow_client_disconnects);
            tracing::warn!("client does not read fast enough: outbound queue full, closing it");
            self.close(CloseReason {
                error: Some(CloseReason::ERROR_TEXT.to_string()),
                allow_reconnect: true,
                flush: false,
            });
        }
        false
    }

    /// Asks the writer to send a Close with `reason` and end the connection. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.shared.reason.set(reason);
        self.stop_writer();
        self.shared.kill.cancel();
    }

    /// Asks the writer to end without a reason of its own (the node is shutting down): called by
    /// the reader when it sees the kill switch, which the writer does not watch.
    pub fn stop_writer(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.writer.wake();
    }

    /// Resolves when the connection is asked to end (by `close` or node shutdown).
    pub fn killed(&self) -> &CancellationToken {
        &self.shared.kill
    }

    /// The reason given to `close`, or `None` when the node is shutting down.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().cloned()
    }
}

impl OutboxShared {
    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<WsFrame>> {
        // A push or a drain cannot leave the queue half-updated: a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the writer is woken for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Frames were moved into the batch.
    Frames,
    /// The connection is to end (`close`, or the node is shutting down).
    Stop,
}

impl OutboxReceiver {
    /// Waits for frames (moving up to `max` of them into `batch`) or for the stop; the stop wins.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: &mut VecDeque<WsFrame>, max: usize) -> Poll<Wake> {
        let shared = &*self.shared;
        // Look first: with frames waiting there is no need to register (a registration clones
        // the waker, and a delivery's wake consumes it).
        if shared.stop.load(Ordering::Acquire) {
            return Poll::Ready(Wake::Stop);
        }
        if self.drain(batch, max) > 0 {
            return Poll::Ready(Wake::Frames);
        }
        // Register, then look again, so a frame or a stop that came in between still wakes us.
        shared.writer.register(cx.waker());
        if shared.stop.load(Ordering::Acquire) {
            return Poll::Ready(Wake::Stop);
        }
        if self.drain(batch, max) > 0 {
            Poll::Ready(Wake::Frames)
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the connection is to end (to race a write that the client does not read).
    pub fn poll_stopped(&self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &*self.shared;
        shared.writer.register(cx.waker());
        if shared.stop.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Moves up to `max` queued frames to the end of `batch`; returns how many. When they all fit
    /// in an empty batch the two buffers are swapped (no copy, no allocation: they take turns).
    pub fn drain(&self, batch: &mut VecDeque<WsFrame>, max: usize) -> usize {
        let mut queue = self.shared.lock_queue();
        if queue.is_empty() {
            return 0;
        }
        let n = queue.len().min(max);
        if batch.is_empty() && n == queue.len() {
            std::mem::swap(&mut *queue, batch);
        } else {
            batch.extend(queue.drain(..n));
        }
        if queue.is_empty() && queue.capacity() > IDLE_QUEUE_CAPACITY {
            queue.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        n
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        self.shared.lock_queue().clear();
    }
}

/// What the registry knows of one local connection.
pub(crate) struct LocalConnection {
    pub id: Arc<str>,
    pub protocol: Protocol,
    pub user: Option<String>,
    pub outbox: Outbox,
    /// Lowercased group name → the name as first added (the channel uses that spelling).
    groups: HashMap<String, String>,
}

/// The outcome of adding a connection to (or removing it from) a group.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GroupChange {
    /// Done: take (or release) one subscription reference on the group's channel.
    Changed,
    /// Already a member (or not a member, for a remove): nothing to do.
    Unchanged,
    /// No such local connection.
    NotLocal,
    /// The connection is already in `max` groups: refused.
    LimitReached { max: usize },
}

#[derive(Default)]
struct State {
    connections: HashMap<Arc<str>, LocalConnection>,
    groups: HashMap<String, HashSet<Arc<str>>>,
    users: HashMap<String, HashSet<Arc<str>>>,
}

/// Local connections, groups and users.
pub(crate) struct Registry {
    state: RwLock<State>,
    /// Groups one connection may be in.
    max_groups: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_max_groups(config::DEFAULT_MAX_GROUPS_PER_CONNECTION)
    }
}

/// What a connection was a member of when it left (one subscription reference each).
#[derive(Debug, Default)]
pub(crate) struct Departure {
    /// Every group it was in, as spelled on the wire.
    pub groups: Vec<String>,
    pub user: Option<String>,
}

impl Registry {
    /// A registry whose connections may each join at most `max_groups` groups.
    pub fn with_max_groups(max_groups: usize) -> Self {
        Registry {
            state: RwLock::default(),
            max_groups,
        }
    }

    /// Groups one connection may be in.
    pub fn max_groups(&self) -> usize {
        self.max_groups
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every update is a few map operations that cannot panic halfway in a way that breaks
        // an invariant we rely on, so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection (and to its user's set, if it has one).
    pub fn register(&self, id: Arc<str>, protocol: Protocol, user: Option<String>, outbox: Outbox) {
        let mut state = self.write();
        if let Some(user) = &user {
            state.users.entry(user.clone()).or_default().insert(id.clone());
        }
        state.connections.insert(
            id.clone(),
            LocalConnection {
                id,
                protocol,
                user,
                outbox,
                groups: HashMap::new(),
            },
        );
    }

    /// Removes a connection from everything; reports what it was a member of.
    pub fn unregister(&self, id: &str) -> Departure {
        let mut state = self.write();
        let mut departure = Departure::default();
        let Some(conn) = state.connections.remove(id) else {
            return departure;
        };
        for group in conn.groups.into_values() {
            if let Some(members) = state.groups.get_mut(&group) {
                members.remove(id);
                if members.is_empty() {
                    state.groups.remove(&group);
                }
            }
            departure.groups.push(group);
        }
        if let Some(user) = conn.user {
            if let Some(members) = state.users.get_mut(&user) {
                members.remove(id);
                if members.is_empty() {
                    state.users.remove(&user);
                }
            }
            departure.user = Some(user);
        }
        departure
    }

    /// Adds a local connection to a group.
    pub fn join(&self, id: &str, group: &str) -> GroupChange {
        let mut state = self.write();
        let Some(conn) = state.connections.get_mut(id) else {
            return GroupChange::NotLocal;
        };
        let key = group.to_lowercase();
        if conn.groups.contains_key(&key) {
            return GroupChange::Unchanged;
        }
        if conn.groups.len() >= self.max_groups {
            return GroupChange::LimitReached { max: self.max_groups };
        }
        conn.groups.insert(key, group.to_string());
        let conn_id = conn.id.clone();
        state.groups.entry(group.to_string()).or_default().insert(conn_id);
        GroupChange::Changed
    }

    /// Removes a local connection from a group (matched case-insensitively, as added).
    pub fn leave(&self, id: &str, group: &str) -> (GroupChange, Option<String>) {
        let mut state = self.write();
        let Some(conn) = state.connections.get_mut(id) else {
            return (GroupChange::NotLocal, None);
        };
        let Some(name) = conn.groups.remove(&group.to_lowercase()) else {
            return (GroupChange::Unchanged, None);
        };
        if let Some(members) = state.groups.get_mut(&name) {
            members.remove(id);
            if members.is_empty() {
                state.groups.remove(&name);
            }
        }
        (GroupChange::Changed, Some(name))
    }

    pub fn is_local(&self, id: &str) -> bool {
        self.read().connections.contains_key(id)
    }

    /// Calls `f` for every local connection not in `excluded`, under the read lock.
    pub fn for_all(&self, excluded: &[impl AsRef<str>], mut f: impl FnMut(&LocalConnection)) {
        let state = self.read();
        for conn in state.connections.values() {
            if !excluded.iter().any(|e| e.as_ref() == &*conn.id) {
                f(conn);
            }
        }
    }

    /// Calls `f` for every local member of `group` not in `excluded`.
    pub fn for_group(&self, group: &str, excluded: &[impl AsRef<str>], mut f: impl FnMut(&LocalConnection)) {
        let state = self.read();
        if let Some(members) = state.groups.get(group) {
            for id in members {
                if excluded.iter().any(|e| e.as_ref() == &**id) {
                    continue;
                }
                if let Some(conn) = state.connections.get(id) {
                    f(conn);
                }
            }
        }
    }

    /// Calls `f` for every local connection of `user`.
    pub fn for_user(&self, user: &str, mut f: impl FnMut(&LocalConnection)) {
        let state = self.read();
        if let Some(members) = state.users.get(user) {
            for id in members {
                if let Some(conn) = state.connections.get(id) {
                    f(conn);
                }
            }
        }
    }

    /// Calls `f` for one local connection; returns false when it is not local.
    pub fn with_connection(&self, id: &str, f: impl FnOnce(&LocalConnection)) -> bool {
        match self.read().connections.get(id) {
            Some(conn) => {
                f(conn);
                true
            }
            None => false,
        }
    }

    /// (connections, groups, users) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.read();
        (state.connections.len(), state.groups.len(), state.users.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox {
        Outbox::new(4, &CancellationToken::new()).0
    }

    #[test]
    fn groups_and_users_are_removed_with_their_last_member() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, Some("u".into()), outbox());
        r.register("b".into(), Protocol::Json, Some("u".into()), outbox());
        assert_eq!(r.join("a", "Room"), GroupChange::Changed);
        assert_eq!(r.join("b", "Room"), GroupChange::Changed);
        assert_eq!(
            r.join("a", "room"),
            GroupChange::Unchanged,
            "group set is case-insensitive"
        );
        assert_eq!(r.join("zz", "Room"), GroupChange::NotLocal);
        assert_eq!(r.counts(), (2, 1, 1));
        let d = r.unregister("a");
        assert_eq!(
            (d.groups, d.user.as_deref()),
            (vec!["Room".to_string()], Some("u"))
        );
        assert_eq!(r.counts(), (1, 1, 1));
        let (change, name) = r.leave("b", "ROOM");
        assert_eq!(change, GroupChange::Changed);
        assert_eq!(name.as_deref(), Some("Room"));
        let d = r.unregister("b");
        assert!(d.groups.is_empty());
        assert_eq!(d.user.as_deref(), Some("u"));
        assert_eq!(r.counts(), (0, 0, 0));
    }

    #[test]
    fn a_connection_joins_at_most_max_groups() {
        let r = Registry::with_max_groups(2);
        r.register("a".into(), Protocol::Json, None, outbox());
        assert_eq!(r.join("a", "g1"), GroupChange::Changed);
        assert_eq!(r.join("a", "g2"), GroupChange::Changed);
        assert_eq!(r.join("a", "g3"), GroupChange::LimitReached { max: 2 });
        assert_eq!(
            r.join("a", "G1"),
            GroupChange::Unchanged,
            "a group it is in is no new join"
        );
        assert_eq!(r.leave("a", "g2").0, GroupChange::Changed);
        assert_eq!(
            r.join("a", "g3"),
            GroupChange::Changed,
            "room again after a leave"
        );
        assert_eq!(r.counts(), (1, 2, 0));
    }

    #[test]
    fn exclusions_are_honoured() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, None, outbox());
        r.register("b".into(), Protocol::Json, None, outbox());
        r.join("a", "g");
        r.join("b", "g");
        let mut seen = Vec::new();
        r.for_all(&["a"], |c| seen.push(c.id.to_string()));
        assert_eq!(seen, ["b"]);
        seen.clear();
        r.for_group("g", &["b"], |c| seen.push(c.id.to_string()));
        assert_eq!(seen, ["a"]);
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[test]
    fn the_writer_takes_everything_queued_in_one_wake_up_to_the_batch() {
        let stats = Stats::default();
        let (out, rx) = Outbox::new(16, &CancellationToken::new());
        let mut batch = VecDeque::new();
        assert_eq!(rx.poll_next(&mut noop_cx(), &mut batch, 4), Poll::Pending);
        for i in 0..6u8 {
            assert!(out.deliver(WsFrame::Binary(Bytes::from(vec![i])), &stats));
        }
        assert_eq!(
            rx.poll_next(&mut noop_cx(), &mut batch, 4),
            Poll::Ready(Wake::Frames)
        );
        assert_eq!(batch.len(), 4, "at most one batch at once");
        assert_eq!(
            rx.poll_next(&mut noop_cx(), &mut batch, 4),
            Poll::Ready(Wake::Frames)
        );
        let order: Vec<u8> = batch
            .iter()
            .map(|f| match f {
                WsFrame::Binary(b) => b[0],
                WsFrame::Text(_) => u8::MAX,
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5], "frames keep their order");
        assert_eq!(Stats::get(&stats.client_out), 6);
        assert_eq!(rx.poll_next(&mut noop_cx(), &mut batch, 4), Poll::Pending);
    }

    #[test]
    fn a_delivery_wakes_a_parked_writer_and_the_stop_wins_over_frames() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let wakes = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let stats = Stats::default();
        let (out, rx) = Outbox::new(16, &CancellationToken::new());
        let mut batch = VecDeque::new();
        assert_eq!(rx.poll_next(&mut cx, &mut batch, 64), Poll::Pending);
        out.deliver(WsFrame::Binary(Bytes::new()), &stats);
        out.deliver(WsFrame::Binary(Bytes::new()), &stats);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "one wake for frames queued while parked"
        );
        assert_eq!(rx.poll_stopped(&mut cx), Poll::Pending);
        out.close(CloseReason::error());
        assert_eq!(rx.poll_stopped(&mut cx), Poll::Ready(()));
        assert_eq!(rx.poll_next(&mut cx, &mut batch, 64), Poll::Ready(Wake::Stop));
        assert!(batch.is_empty());
        assert!(out.killed().is_cancelled(), "the reader sees the close too");
        assert_eq!(
            rx.drain(&mut batch, usize::MAX),
            2,
            "still there for a flushing goodbye"
        );
    }

    #[test]
    fn node_shutdown_stops_the_writer_through_the_reader() {
        let parent = CancellationToken::new();
        let (out, rx) = Outbox::new(4, &parent);
        let mut batch = VecDeque::new();
        parent.cancel();
        assert!(out.killed().is_cancelled());
        out.stop_writer();
        assert_eq!(
            rx.poll_next(&mut noop_cx(), &mut batch, 64),
            Poll::Ready(Wake::Stop)
        );
        assert_eq!(out.close_reason(), None, "no reason: the node is shutting down");
    }

    #[test]
    fn frames_are_refused_once_the_writer_is_gone() {
        let stats = Stats::default();
        let (out, rx) = Outbox::new(4, &CancellationToken::new());
        drop(rx);
        assert!(!out.deliver(WsFrame::Binary(Bytes::new()), &stats));
        assert_eq!(Stats::get(&stats.client_out), 0);
        assert_eq!(Stats::get(&stats.slow_client_disconnects), 0);
    }

    #[test]
    fn a_full_queue_closes_the_client_once_and_counts_it() {
        let stats = Stats::default();
        let (out, _rx) = Outbox::new(1, &CancellationToken::new());
        assert!(out.deliver(WsFrame::Binary(Bytes::new()), &stats));
        assert!(!out.deliver(WsFrame::Binary(Bytes::new()), &stats));
        assert!(!out.deliver(WsFrame::Binary(Bytes::new()), &stats));
        assert_eq!(Stats::get(&stats.slow_client_disconnects), 1);
        assert!(out.killed().is_cancelled());
        assert!(!out.close_reason().unwrap().flush);
    }
}
