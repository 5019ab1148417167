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
//!
//! For the monitor's directory (`GET /switchboard/connections`) the connection ids are also kept
//! in order (`State::order`, a `BTreeSet` of the same `Arc<str>`s: by the B-tree's node layout
//! about 30 bytes a connection, not measured, and an O(log n) insert at register): a page resumes after a cursor id and examines at most
//! [`SCAN_BUDGET`] connections, so listing a node of 19,000 clients never holds the read lock for
//! a walk of all of them. A user or group filter starts from that user's or group's own set when
//! it is small enough to sort within the same budget.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use crate::config;
use crate::protocol::{HubMessage, Protocol};
use crate::status_doc::{CONNECTIONS_MAX_LISTED_GROUPS, ConnectionEntry};

/// Most connections one directory page examines under the read lock, so a connect, disconnect or
/// group change (they take the write lock) never waits behind a walk of every connection. Not
/// timed on its own; a whole 1,000-entry page over HTTP took ~7 ms end to end on a debug build with
/// 5,000 connections.
pub(crate) const SCAN_BUDGET: usize = 4096;

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
    /// When it registered (handshake done), for the directory.
    connected_at: SystemTime,
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
    /// The keys of `connections`, in order: where a directory page resumes (see the module docs).
    order: BTreeSet<Arc<str>>,
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
        state.order.insert(id.clone());
        state.connections.insert(
            id.clone(),
            LocalConnection {
                id,
                protocol,
                user,
                outbox,
                groups: HashMap::new(),
                connected_at: SystemTime::now(),
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
        state.order.remove(id);
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

/// What a directory page asks for (`GET /switchboard/connections`); every filter given must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionQuery<'a> {
    /// Exactly this connection id.
    pub id: Option<&'a str>,
    /// Connections of this user.
    pub user: Option<&'a str>,
    /// Members of this group, spelled as on the wire (case-sensitive, like the group's channel).
    pub group: Option<&'a str>,
    /// Resume after this connection id (the previous page's `next`).
    pub after: Option<&'a str>,
    /// Most entries to return (at least 1).
    pub limit: usize,
}

/// One directory page, in connection id order.
#[derive(Debug, Default)]
pub(crate) struct ConnectionPage {
    pub entries: Vec<ConnectionEntry>,
    /// Where the next page starts (`after=`); `None` when nothing is left.
    pub next: Option<String>,
    /// Connections examined (at most [`SCAN_BUDGET`], or the size of one user's or group's set).
    pub scanned: usize,
}

impl Registry {
    /// One page of local connections matching `q` (see the module docs for its bounds). Allocates
    /// the page's entries only; the read lock is held for at most one bounded scan.
    pub fn list(&self, q: &ConnectionQuery<'_>) -> ConnectionPage {
        let limit = q.limit.max(1);
        let state = self.read();
        let group_key = q.group.map(str::to_lowercase);
        let matches = |conn: &LocalConnection| {
            q.user.is_none_or(|u| conn.user.as_deref() == Some(u))
                && match (q.group, &group_key) {
                    (Some(group), Some(key)) => conn.groups.get(key).is_some_and(|g| g == group),
                    _ => true,
                }
        };
        let after = |id: &str| q.after.is_none_or(|a| id > a);
        let mut page = ConnectionPage::default();

        if let Some(id) = q.id {
            page.scanned = 1;
            if let Some(conn) = state.connections.get(id).filter(|c| after(id) && matches(c)) {
                page.entries.push(entry(conn));
            }
            return page;
        }

        // A user's or group's own set, when a filter names one (the smaller, if both do).
        let user_set = q.user.map(|u| state.users.get(u));
        let group_set = q.group.map(|g| state.groups.get(g));
        let candidates = match (user_set, group_set) {
            (Some(None), _) | (_, Some(None)) => return page,
            (Some(Some(u)), Some(Some(g))) => Some(if u.len() <= g.len() { u } else { g }),
            (Some(Some(set)), None) | (None, Some(Some(set))) => Some(set),
            (None, None) => None,
        };
        if let Some(set) = candidates.filter(|set| set.len() <= SCAN_BUDGET) {
            let mut ids: Vec<&Arc<str>> = set.iter().filter(|id| after(id)).collect();
            ids.sort_unstable();
            page.scanned = set.len();
            let mut ids = ids.into_iter().peekable();
            while let Some(id) = ids.next() {
                if let Some(conn) = state.connections.get(id).filter(|c| matches(c)) {
                    page.entries.push(entry(conn));
                    if page.entries.len() == limit {
                        if ids.peek().is_some() {
                            page.next = Some(id.to_string());
                        }
                        break;
                    }
                }
            }
            return page;
        }

        // Everything (or a set too large to sort): walk the ordered ids from the cursor.
        let start = q.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut ids = state.order.range::<str, _>((start, Bound::Unbounded)).peekable();
        while let Some(id) = ids.next() {
            page.scanned += 1;
            if let Some(conn) = state.connections.get(id).filter(|c| matches(c)) {
                page.entries.push(entry(conn));
            }
            if page.entries.len() == limit || page.scanned >= SCAN_BUDGET {
                if ids.peek().is_some() {
                    page.next = Some(id.to_string());
                }
                break;
            }
        }
        page
    }
}

/// A connection as the directory lists it.
fn entry(conn: &LocalConnection) -> ConnectionEntry {
    let mut groups: Vec<String> = conn.groups.values().cloned().collect();
    groups.sort_unstable();
    let groups_total = groups.len() as u64;
    groups.truncate(CONNECTIONS_MAX_LISTED_GROUPS);
    ConnectionEntry {
        id: conn.id.to_string(),
        user: conn.user.clone(),
        protocol: conn.protocol.name().to_string(),
        groups,
        groups_total,
        connected_at_ms: conn
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
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

    fn query(limit: usize) -> ConnectionQuery<'static> {
        ConnectionQuery {
            id: None,
            user: None,
            group: None,
            after: None,
            limit,
        }
    }

    fn ids(page: &ConnectionPage) -> Vec<&str> {
        page.entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn a_listing_pages_in_id_order_and_ends_without_a_cursor() {
        let r = Registry::default();
        for id in ["c", "a", "e", "b", "d"] {
            r.register(id.into(), Protocol::Json, None, outbox());
        }
        let first = r.list(&query(2));
        assert_eq!((ids(&first), first.next.as_deref()), (vec!["a", "b"], Some("b")));
        let second = r.list(&ConnectionQuery {
            after: Some("b"),
            ..query(2)
        });
        assert_eq!(
            (ids(&second), second.next.as_deref()),
            (vec!["c", "d"], Some("d"))
        );
        let last = r.list(&ConnectionQuery {
            after: Some("d"),
            ..query(2)
        });
        assert_eq!((ids(&last), last.next.as_deref()), (vec!["e"], None));
        let exact = r.list(&ConnectionQuery {
            after: Some("c"),
            ..query(2)
        });
        assert_eq!(ids(&exact), ["d", "e"]);
        assert_eq!(exact.next, None, "nothing after the last entry: no cursor");
        r.unregister("a");
        assert_eq!(
            ids(&r.list(&query(10))),
            ["b", "c", "d", "e"],
            "gone from the order too"
        );
    }

    #[test]
    fn filters_by_id_user_and_group_with_the_wire_spelling() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, Some("ann".into()), outbox());
        r.register("b".into(), Protocol::MessagePack, Some("bob".into()), outbox());
        r.register("c".into(), Protocol::Json, Some("ann".into()), outbox());
        r.join("a", "Room");
        r.join("b", "Room");
        r.join("c", "other");
        let by = |q: ConnectionQuery<'static>| ids(&r.list(&q)).join(",");
        assert_eq!(
            by(ConnectionQuery {
                user: Some("ann"),
                ..query(10)
            }),
            "a,c"
        );
        assert_eq!(
            by(ConnectionQuery {
                group: Some("Room"),
                ..query(10)
            }),
            "a,b"
        );
        assert_eq!(
            by(ConnectionQuery {
                group: Some("room"),
                ..query(10)
            }),
            "",
            "case-sensitive"
        );
        assert_eq!(
            by(ConnectionQuery {
                user: Some("ann"),
                group: Some("Room"),
                ..query(10)
            }),
            "a"
        );
        assert_eq!(
            by(ConnectionQuery {
                id: Some("b"),
                ..query(10)
            }),
            "b"
        );
        assert_eq!(
            by(ConnectionQuery {
                id: Some("b"),
                user: Some("ann"),
                ..query(10)
            }),
            ""
        );
        assert_eq!(
            by(ConnectionQuery {
                id: Some("zz"),
                ..query(10)
            }),
            ""
        );
        assert_eq!(
            by(ConnectionQuery {
                user: Some("nobody"),
                ..query(10)
            }),
            ""
        );
        let page = r.list(&ConnectionQuery {
            id: Some("b"),
            ..query(10)
        });
        let b = &page.entries[0];
        assert_eq!(
            (
                b.user.as_deref(),
                b.protocol.as_str(),
                b.groups.clone(),
                b.groups_total
            ),
            (Some("bob"), "messagepack", vec!["Room".to_string()], 1)
        );
        assert!(b.connected_at_ms > 0);
    }

    #[test]
    fn one_page_examines_at_most_the_scan_budget() {
        let r = Registry::default();
        let n = SCAN_BUDGET + 10;
        // Group "g": c000000.. and z-last. User "many": d000000.. and z-last. Both sets are too
        // large to sort within the budget, and they share one connection, at the end of the order.
        for i in 0..n {
            let c = format!("c{i:06}");
            r.register(c.as_str().into(), Protocol::Json, None, outbox());
            r.join(&c, "g");
            r.register(
                format!("d{i:06}").into(),
                Protocol::Json,
                Some("many".into()),
                outbox(),
            );
        }
        r.register("z-last".into(), Protocol::Json, Some("many".into()), outbox());
        r.join("z-last", "g");
        let rare = ConnectionQuery {
            user: Some("many"),
            group: Some("g"),
            ..query(10)
        };
        let first = r.list(&rare);
        assert_eq!(first.scanned, SCAN_BUDGET);
        assert!(first.entries.is_empty());
        let mut after = first.next.clone();
        let mut found = Vec::new();
        let mut pages = 1;
        while let Some(cursor) = after.take() {
            let page = r.list(&ConnectionQuery {
                after: Some(&cursor),
                ..rare
            });
            assert!(page.scanned <= SCAN_BUDGET);
            found.extend(page.entries.iter().map(|e| e.id.clone()));
            after = page.next;
            pages += 1;
        }
        assert_eq!(found, ["z-last"]);
        assert_eq!(pages, (2 * n + 1).div_ceil(SCAN_BUDGET));
        // A user's own small set is served without a walk.
        r.register("solo".into(), Protocol::Json, Some("rare".into()), outbox());
        let small = r.list(&ConnectionQuery {
            user: Some("rare"),
            ..query(10)
        });
        assert_eq!((ids(&small), small.scanned), (vec!["solo"], 1));
        // Unfiltered pages of the maximum size cover everything once.
        let mut after: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = r.list(&ConnectionQuery {
                after: after.as_deref(),
                ..query(1000)
            });
            for e in &page.entries {
                assert!(seen.insert(e.id.clone()), "listed twice: {}", e.id);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 2 * n + 2);
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
