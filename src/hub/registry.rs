//! The node's local connections, groups and users.
//!
//! Owned by `NodeShared`; written by `connection` (register / unregister) and `lifetime` (group
//! changes), read by `lifetime` for every delivery and by `directory` for the monitor's listing.
//! One `RwLock`: deliveries take the read lock and under it only write non-blocking (see
//! `outbox::Outbox`) or queue, never await, so it is never held across a wait. No I/O of its own
//! and no `unsafe` here.
//!
//! Groups and users are removed when their last local member leaves: no map grows forever. The
//! caller (`lifetime`) takes one backplane subscription reference per member and releases it when
//! the member goes, so the registry reports every membership change, not only first and last. A
//! connection's own group set is case-insensitive while group names on the wire are
//! case-sensitive, as in ASP.NET Core (B.4); its size is capped (`max_groups`).
//!
//! The connections sit side by side in one `Vec` with an index by id (`Connections`): a send to
//! all of them walks memory in order, which made a fan-out to 100 recipients about 2,000
//! instructions cheaper per message than walking a `HashMap` (callgrind, docs/performance.md).
//!
//! For the monitor's directory (`directory`) the connection ids are also kept in order
//! (`State::order`, a `BTreeSet` of the same `Arc<str>`s: by the B-tree's node layout about 30
//! bytes a connection, not measured, and an O(log n) insert at register).
//!
//! The sending side lives beside it: `outbox` (one connection's queue and writes), `cork` (a
//! batch's deliveries written once per connection), `syscalls` and `uring` (the system calls);
//! their types are re-exported here, where the rest of the hub has always found them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use crate::config;
use crate::protocol::Protocol;

pub(crate) use super::cork::Cork;
pub(crate) use super::outbox::{CloseReason, Flush, Outbox, OutboxReceiver, Wake};
pub(crate) use super::ws::{WsFrame, frame_of};

/// What the registry knows of one local connection.
pub(crate) struct LocalConnection {
    pub id: Arc<str>,
    pub protocol: Protocol,
    pub user: Option<String>,
    pub outbox: Outbox,
    /// Lowercased group name → the name as first added (the channel uses that spelling).
    pub(super) groups: HashMap<String, String>,
    /// When it registered (handshake done), for the directory.
    pub(super) connected_at: SystemTime,
}

/// Who a send is for: among this node's connections, those `Registry::with_targets` visits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    All { excluded: &'a [&'a str] },
    Group { group: &'a str, excluded: &'a [&'a str] },
    User(&'a str),
    Connection(&'a str),
}

/// The local connections a `Target` reaches (`Registry::with_targets`), borrowed from the
/// registry under its read lock.
pub(crate) struct Targets<'s> {
    conns: &'s Connections,
    excluded: &'s [&'s str],
    walk: Walk<'s>,
}

/// How `Targets` walks the registry.
enum Walk<'s> {
    All(std::slice::Iter<'s, LocalConnection>),
    /// A group's or a user's members (none when there is no such group or user).
    Members(Option<std::collections::hash_set::Iter<'s, Arc<str>>>),
    One(Option<&'s LocalConnection>),
}

impl<'s> Iterator for Targets<'s> {
    type Item = &'s LocalConnection;

    /// A walk of all is the common case (every chat message): small, so that it inlines into
    /// the fan-out's loop; the others are a call (`next_member`).
    #[inline]
    fn next(&mut self) -> Option<&'s LocalConnection> {
        match &mut self.walk {
            Walk::All(conns) => conns.find(|conn| !self.excluded.contains(&&*conn.id)),
            _ => self.next_member(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let most = match &self.walk {
            Walk::All(conns) => conns.len(),
            Walk::Members(ids) => ids.as_ref().map_or(0, |ids| ids.len()),
            Walk::One(one) => usize::from(one.is_some()),
        };
        (0, Some(most))
    }
}

impl<'s> Targets<'s> {
    /// `next` for a walk of members or of one connection.
    #[inline(never)]
    fn next_member(&mut self) -> Option<&'s LocalConnection> {
        loop {
            let conn = match &mut self.walk {
                Walk::All(conns) => conns.next()?,
                Walk::Members(ids) => match self.conns.get(ids.as_mut()?.next()?) {
                    Some(conn) => conn,
                    None => continue,
                },
                Walk::One(one) => one.take()?,
            };
            if !self.excluded.contains(&&*conn.id) {
                return Some(conn);
            }
        }
    }
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

/// The local connections: side by side in one `Vec`, so that a fan-out to all of them reads
/// memory in order (what the hardware prefetches), with an index by id. A removal moves the last
/// one into the hole, so the order is not kept (`State::order` is the ordered view).
#[derive(Default)]
pub(super) struct Connections {
    all: Vec<LocalConnection>,
    index: HashMap<Arc<str>, usize>,
}

impl Connections {
    pub(super) fn get(&self, id: &str) -> Option<&LocalConnection> {
        self.index.get(id).and_then(|&i| self.all.get(i))
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut LocalConnection> {
        self.index.get(id).and_then(|&i| self.all.get_mut(i))
    }

    fn contains_key(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.all.len()
    }

    fn iter(&self) -> std::slice::Iter<'_, LocalConnection> {
        self.all.iter()
    }

    /// Adds `conn`, or replaces the one with its id.
    fn insert(&mut self, conn: LocalConnection) {
        match self.index.get(&conn.id) {
            Some(&i) => self.all[i] = conn,
            None => {
                self.index.insert(conn.id.clone(), self.all.len());
                self.all.push(conn);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<LocalConnection> {
        let i = self.index.remove(id)?;
        let conn = self.all.swap_remove(i);
        if let Some(moved) = self.all.get(i)
            && let Some(slot) = self.index.get_mut(&*moved.id)
        {
            *slot = i;
        }
        Some(conn)
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) connections: Connections,
    /// The keys of `connections`, in order: where a directory page resumes (see the module docs).
    pub(super) order: BTreeSet<Arc<str>>,
    pub(super) groups: HashMap<String, HashSet<Arc<str>>>,
    pub(super) users: HashMap<String, HashSet<Arc<str>>>,
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

    pub(super) fn read(&self) -> RwLockReadGuard<'_, State> {
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
        state.connections.insert(LocalConnection {
            id,
            protocol,
            user,
            outbox,
            groups: HashMap::new(),
            connected_at: SystemTime::now(),
        });
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

    /// Calls `f` with the local connections `target` reaches, as one iterator under the read
    /// lock, so a fan-out can hold on to them while it writes (`Cork::deliver_all`): every
    /// connection not excluded, a group's members not excluded, a user's connections, or one.
    pub fn with_targets<R>(&self, target: Target<'_>, f: impl FnOnce(Targets<'_>) -> R) -> R {
        let state = self.read();
        let conns = &state.connections;
        let (walk, excluded) = match target {
            Target::All { excluded } => (Walk::All(conns.iter()), excluded),
            Target::Group { group, excluded } => {
                (Walk::Members(state.groups.get(group).map(|m| m.iter())), excluded)
            }
            Target::User(user) => (Walk::Members(state.users.get(user).map(|m| m.iter())), &[][..]),
            Target::Connection(id) => (Walk::One(conns.get(id)), &[][..]),
        };
        f(Targets {
            conns,
            excluded,
            walk,
        })
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
    use crate::hub::outbox::tests::queued;

    fn outbox() -> Outbox {
        queued(4).0
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

    /// The table keeps its index true through removals that move the last connection into
    /// the hole, and a fan-out to all reaches every connection once.
    #[test]
    fn removals_anywhere_keep_every_connection_reachable_by_id_and_by_all() {
        let r = Registry::default();
        let ids: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
        for id in &ids {
            r.register(id.as_str().into(), Protocol::Json, None, outbox());
        }
        let mut left: Vec<&String> = ids.iter().collect();
        for gone in [0, 49, 25, 1, 47, 10] {
            r.unregister(&ids[gone]);
            left.retain(|id| **id != ids[gone]);
            r.unregister(&ids[gone]);
            for id in &ids {
                assert_eq!(r.is_local(id), left.contains(&id), "{id}");
                let reached = r.with_targets(Target::Connection(id), |conns| {
                    conns.map(|c| c.id.to_string()).collect::<Vec<_>>()
                });
                assert_eq!(reached.len(), usize::from(left.contains(&id)), "{id}");
                assert!(reached.iter().all(|c| c == id));
            }
            let mut all: Vec<String> = r.with_targets(Target::All { excluded: &[] }, |conns| {
                conns.map(|c| c.id.to_string()).collect()
            });
            all.sort();
            let mut want: Vec<String> = left.iter().map(|id| id.to_string()).collect();
            want.sort();
            assert_eq!(all, want);
        }
        assert_eq!(r.counts().0, 44);
        r.register("c5".into(), Protocol::MessagePack, None, outbox());
        assert_eq!(r.counts().0, 44, "a second register of an id replaces it");
        assert!(r.with_connection("c5", |c| assert_eq!(c.protocol, Protocol::MessagePack)));
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
    fn every_target_reaches_its_connections_and_exclusions_are_honoured() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, None, outbox());
        r.register("b".into(), Protocol::Json, None, outbox());
        r.register("c".into(), Protocol::Json, Some("u".into()), outbox());
        r.join("a", "g");
        r.join("b", "g");
        r.join("b", "h");
        let seen = |target| {
            let mut ids: Vec<String> =
                r.with_targets(target, |conns| conns.map(|c| c.id.to_string()).collect());
            ids.sort();
            ids
        };
        assert_eq!(seen(Target::All { excluded: &["a"] }), ["b", "c"]);
        assert_eq!(seen(Target::All { excluded: &[] }), ["a", "b", "c"]);
        assert_eq!(
            seen(Target::Group {
                group: "g",
                excluded: &["b"]
            }),
            ["a"]
        );
        assert_eq!(
            seen(Target::Group {
                group: "h",
                excluded: &[]
            }),
            ["b"]
        );
        assert_eq!(
            seen(Target::Group {
                group: "none",
                excluded: &[]
            }),
            [""; 0]
        );
        assert_eq!(seen(Target::User("u")), ["c"]);
        assert_eq!(seen(Target::User("nobody")), [""; 0]);
        assert_eq!(seen(Target::Connection("b")), ["b"]);
        assert_eq!(seen(Target::Connection("gone")), [""; 0]);
    }
}
