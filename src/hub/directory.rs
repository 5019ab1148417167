//! The monitor's directory of local connections (`GET /switchboard/connections`): bounded pages
//! in connection id order, filtered by id, user or group.
//!
//! Called by `status` through `Registry::list`; reads the registry's maps under its read lock
//! (`registry::State`). A page resumes after a cursor id and examines at most [`SCAN_BUDGET`]
//! connections, so listing a node of 19,000 clients never holds the read lock for a walk of all
//! of them. A user or group filter starts from that user's or group's own set when it is small
//! enough to sort within the same budget. No I/O and no `unsafe` here.

use std::ops::Bound;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::registry::{LocalConnection, Registry};
use crate::status_doc::{CONNECTIONS_MAX_LISTED_GROUPS, ConnectionEntry};

/// Most connections one directory page examines under the read lock, so a connect, disconnect or
/// group change (they take the write lock) never waits behind a walk of every connection. Not
/// timed on its own; a whole 1,000-entry page over HTTP took ~7 ms end to end on a debug build with
/// 5,000 connections.
pub(crate) const SCAN_BUDGET: usize = 4096;

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
    use crate::hub::outbox::Outbox;
    use crate::hub::outbox::tests::queued;
    use crate::protocol::Protocol;

    fn outbox() -> Outbox {
        queued(4).0
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
}
