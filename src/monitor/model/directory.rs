//! The Directory view's data: a search (a connection id, a user or a group, or any of the three),
//! the channels whose subscribers are asked about, and the answer the runtime sends back. Every
//! search has an id and every answer carries the search it answers, so an answer to an older
//! search (the user typed on) is ignored, and counted.
//!
//! Pure, std only. The runtime side (pages from the nodes, `PUBSUB NUMSUB`) is
//! `monitor::directory::run_search`; the panel is `ui::directory`.

use crate::status_doc::ConnectionEntry;

/// Channels asked about per search at most (3 kinds × a few hub namings): one NUMSUB command.
pub const MAX_CHANNELS: usize = 12;

/// What the search text is taken as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum DirectoryKind {
    /// A connection id, a user or a group: each is asked.
    #[default]
    Any,
    Connection,
    User,
    Group,
}

impl DirectoryKind {
    pub const ALL: [DirectoryKind; 4] = [
        DirectoryKind::Any,
        DirectoryKind::Connection,
        DirectoryKind::User,
        DirectoryKind::Group,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DirectoryKind::Any => "any",
            DirectoryKind::Connection => "connection",
            DirectoryKind::User => "user",
            DirectoryKind::Group => "group",
        }
    }

    /// The concrete kinds this one asks about.
    pub fn kinds(self) -> &'static [DirectoryKind] {
        match self {
            DirectoryKind::Any => &[
                DirectoryKind::Connection,
                DirectoryKind::User,
                DirectoryKind::Group,
            ],
            DirectoryKind::Connection => &[DirectoryKind::Connection],
            DirectoryKind::User => &[DirectoryKind::User],
            DirectoryKind::Group => &[DirectoryKind::Group],
        }
    }

    /// How "not found" names what was looked for.
    fn words(self) -> &'static str {
        match self {
            DirectoryKind::Any => "connection, user or group",
            DirectoryKind::Connection => "connection",
            DirectoryKind::User => "user",
            DirectoryKind::Group => "group",
        }
    }
}

/// UI → runtime: one search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectorySearch {
    /// Unique per dashboard run; the answer carries it.
    pub id: u64,
    pub text: String,
    pub kind: DirectoryKind,
    /// The Redis channels to ask `PUBSUB NUMSUB` about (see [`channels_for`]).
    pub channels: Vec<String>,
}

/// A connection a node listed, and what it matched as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryHit {
    pub matched: DirectoryKind,
    pub entry: ConnectionEntry,
}

/// What one node said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHits {
    pub hub_url: String,
    /// Its matching connections (one per id), or why it could not say.
    pub hits: Result<Vec<DirectoryHit>, String>,
    /// It has no monitor endpoint (an ASP.NET Core node): only Redis can answer for it.
    pub no_monitor: bool,
    /// More matches were left unread (bounded search).
    pub truncated: bool,
}

/// Runtime → UI: the answer to one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryAnswer {
    pub search: DirectorySearch,
    pub nodes: Vec<NodeHits>,
    /// (channel, its subscriber count, or why it was not answered).
    pub channels: Vec<(String, Result<u64, String>)>,
    /// When the answer was complete (unix ms).
    pub at_ms: u64,
}

impl DirectorySearch {
    /// A search with nothing typed: it lists what the nodes hold (bounded, see
    /// `monitor::directory::SEARCH_MAX_ENTRIES`) instead of looking one name up.
    pub fn is_listing(&self) -> bool {
        self.text.is_empty()
    }
}

impl DirectoryAnswer {
    /// Connections found over every node.
    pub fn found(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.hits.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// The view's state: the search asked last and the answer to it.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    next_id: u64,
    asked: Option<DirectorySearch>,
    answer: Option<DirectoryAnswer>,
    /// Answers to older searches, ignored.
    pub stale_ignored: u64,
}

impl Directory {
    /// A new search (the runtime is to be given it); later answers to older ones are ignored.
    pub fn ask(&mut self, text: &str, kind: DirectoryKind, namings: &[(String, String)]) -> DirectorySearch {
        self.next_id += 1;
        let search = DirectorySearch {
            id: self.next_id,
            text: text.trim().to_string(),
            kind,
            channels: channels_for(text.trim(), kind, namings),
        };
        self.asked = Some(search.clone());
        search
    }

    /// The runtime's answer: kept when it answers the latest search, otherwise counted.
    pub fn on_answer(&mut self, answer: DirectoryAnswer) {
        if self.asked.as_ref().is_some_and(|a| a.id == answer.search.id) {
            self.answer = Some(answer);
        } else {
            self.stale_ignored += 1;
        }
    }

    /// The latest search was never handed to the runtime (its queue was full): back to the
    /// previous answer, nothing pending.
    pub fn withdraw(&mut self) {
        self.asked = self.answer.as_ref().map(|a| a.search.clone());
    }

    /// The latest search, while its answer has not come.
    pub fn pending(&self) -> Option<&DirectorySearch> {
        let asked = self.asked.as_ref()?;
        match &self.answer {
            Some(a) if a.search.id == asked.id => None,
            _ => Some(asked),
        }
    }

    /// The answer to the latest search.
    pub fn answer(&self) -> Option<&DirectoryAnswer> {
        let asked = self.asked.as_ref()?;
        self.answer.as_ref().filter(|a| a.search.id == asked.id)
    }
}

/// The channels a search asks about: for every (prefix, hub) the dashboard knows, the
/// connection, user and group channel of `text` (for the kinds asked), without repeats, at most
/// [`MAX_CHANNELS`].
pub fn channels_for(text: &str, kind: DirectoryKind, namings: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if text.is_empty() {
        return out;
    }
    for (prefix, hub) in namings {
        let c = crate::backplane::naming::Channels::new(prefix.as_str(), hub.as_str());
        for k in kind.kinds() {
            let channel = match k {
                DirectoryKind::Connection => c.connection(text),
                DirectoryKind::User => c.user(text),
                _ => c.group(text),
            };
            if !out.contains(&channel) && out.len() < MAX_CHANNELS {
                out.push(channel);
            }
        }
    }
    out
}

/// One row of a listing (a search with nothing typed): a connection with the node that holds it,
/// or a user or a group with its connections and nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListRow {
    Connection {
        hub_url: String,
        entry: ConnectionEntry,
    },
    /// A user id and its connections on the listed nodes.
    User {
        user: String,
        connections: u64,
        hub_urls: Vec<String>,
    },
    /// A group and its members among the listed connections.
    Group {
        group: String,
        members: u64,
        hub_urls: Vec<String>,
    },
}

/// Everything of one kind the nodes listed, in name order, and whether it is all there is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    pub rows: Vec<ListRow>,
    /// Nothing was left unread: every node answered in full and no connection's groups were cut.
    pub complete: bool,
}

/// The rows of `kind` in a listing's answer ([`DirectoryKind::Any`] and `Connection` list
/// connections; `User` and `Group` are gathered from the connections' users and groups).
pub fn listing(answer: &DirectoryAnswer, kind: DirectoryKind) -> Listing {
    use std::collections::BTreeMap;
    let mut complete = answer.nodes.iter().all(|n| n.hits.is_ok() && !n.truncated);
    let mut connections = Vec::new();
    let mut users: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
    let mut groups: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
    for node in &answer.nodes {
        let Ok(hits) = &node.hits else { continue };
        for hit in hits {
            let e = &hit.entry;
            match kind {
                DirectoryKind::Any | DirectoryKind::Connection => connections.push(ListRow::Connection {
                    hub_url: node.hub_url.clone(),
                    entry: e.clone(),
                }),
                DirectoryKind::User => {
                    if let Some(user) = e.user.as_deref() {
                        count(users.entry(user).or_default(), &node.hub_url);
                    }
                }
                DirectoryKind::Group => {
                    complete &= e.groups_total <= e.groups.len() as u64;
                    for g in &e.groups {
                        count(groups.entry(g.as_str()).or_default(), &node.hub_url);
                    }
                }
            }
        }
    }
    let rows = match kind {
        DirectoryKind::Any | DirectoryKind::Connection => {
            connections.sort_by(|a, b| match (a, b) {
                (ListRow::Connection { entry: x, .. }, ListRow::Connection { entry: y, .. }) => {
                    x.id.cmp(&y.id)
                }
                _ => std::cmp::Ordering::Equal,
            });
            connections
        }
        DirectoryKind::User => users
            .into_iter()
            .map(|(user, (connections, hub_urls))| ListRow::User {
                user: user.to_string(),
                connections,
                hub_urls,
            })
            .collect(),
        DirectoryKind::Group => groups
            .into_iter()
            .map(|(group, (members, hub_urls))| ListRow::Group {
                group: group.to_string(),
                members,
                hub_urls,
            })
            .collect(),
    };
    Listing { rows, complete }
}

/// One more connection of a user or group on `hub_url`.
fn count(slot: &mut (u64, Vec<String>), hub_url: &str) {
    slot.0 += 1;
    if !slot.1.iter().any(|h| h == hub_url) {
        slot.1.push(hub_url.to_string());
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The answer in words: a headline (where it was found, or plainly that it was not, with the
/// Redis side), the Redis side alone, and one note per node that could not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub headline: String,
    pub redis: String,
    pub notes: Vec<String>,
}

/// See [`Summary`]; `name` turns a hub URL into the node's name.
pub fn summarize(answer: &DirectoryAnswer, name: &dyn Fn(&str) -> String) -> Summary {
    let s = &answer.search;
    let asked = answer.nodes.iter().filter(|n| n.hits.is_ok()).count() as u64;
    let channels: Vec<String> = answer
        .channels
        .iter()
        .map(|(c, n)| match n {
            Ok(n) => format!("{c} has {}", plural(*n, "subscriber", "subscribers")),
            Err(e) => format!("{c}: not answered ({e})"),
        })
        .collect();
    let redis = if channels.is_empty() {
        "no channel known to ask Redis about (no node told its prefix and hub)".to_string()
    } else {
        format!("channel {}", channels.join(", "))
    };
    let found = answer.found() as u64;
    let subscribed: Vec<String> = answer
        .channels
        .iter()
        .filter_map(|(c, n)| match n {
            Ok(n) if *n > 0 => Some(format!("{c} has {}", plural(*n, "subscriber", "subscribers"))),
            _ => None,
        })
        .collect();
    let silent: Vec<String> = answer
        .nodes
        .iter()
        .filter(|n| n.hits.is_err())
        .map(|n| name(&n.hub_url))
        .collect();
    let headline = if found == 0 && !subscribed.is_empty() {
        // Redis knows it and the nodes that list do not: a node that cannot list holds it, or a
        // server that is not watched.
        let holder = if silent.is_empty() {
            "a server that is not watched".to_string()
        } else {
            format!(
                "a node that cannot list its connections ({}) or by a server that is not watched",
                silent.join(", ")
            )
        };
        format!(
            "no {} {:?} on the {} that can list connections, but {}: it is held by {holder}",
            s.kind.words(),
            s.text,
            plural(asked, "node", "nodes"),
            subscribed.join(", ")
        )
    } else if found == 0 {
        format!(
            "no {} {:?} on {}; {redis}",
            s.kind.words(),
            s.text,
            plural(asked, "node", "nodes")
        )
    } else {
        let mut kinds: Vec<&str> = Vec::new();
        let mut per_node = Vec::new();
        let mut truncated = false;
        for n in &answer.nodes {
            if let Ok(hits) = &n.hits
                && !hits.is_empty()
            {
                for h in hits {
                    if !kinds.contains(&h.matched.words()) {
                        kinds.push(h.matched.words());
                    }
                }
                truncated |= n.truncated;
                per_node.push(format!("{} {}", name(&n.hub_url), hits.len()));
            }
        }
        format!(
            "{} {:?}: {} on {}: {}{}",
            kinds.join(" and "),
            s.text,
            plural(found, "connection", "connections"),
            plural(per_node.len() as u64, "node", "nodes"),
            per_node.join(", "),
            if truncated { " (more not read)" } else { "" }
        )
    };
    let mut notes = Vec::new();
    for n in &answer.nodes {
        if n.no_monitor {
            notes.push(format!(
                "{} has no monitor endpoint (ASP.NET Core?): it cannot list its connections; the \
                 subscriber counts include its subscriptions",
                name(&n.hub_url)
            ));
        } else if let Err(e) = &n.hits {
            notes.push(format!("{}: could not ask: {e}", name(&n.hub_url)));
        }
    }
    Summary {
        headline,
        redis,
        notes,
    }
}

/// [`summarize`] as lines: the headline, the Redis side when something was found (it is in the
/// headline otherwise), the notes.
pub fn summary(answer: &DirectoryAnswer, name: &dyn Fn(&str) -> String) -> Vec<String> {
    let s = summarize(answer, name);
    let mut lines = vec![s.headline];
    if answer.found() > 0 {
        lines.push(s.redis);
    }
    lines.extend(s.notes);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Vec<(String, String)> {
        vec![("p:".into(), "Chat".into()), ("p:".into(), "Chat".into())]
    }

    fn hit(id: &str, user: &str) -> DirectoryHit {
        DirectoryHit {
            matched: DirectoryKind::User,
            entry: ConnectionEntry {
                id: id.into(),
                user: Some(user.into()),
                ..ConnectionEntry::default()
            },
        }
    }

    #[test]
    fn channels_per_kind_without_repeats_and_bounded() {
        assert_eq!(
            channels_for("x", DirectoryKind::Any, &naming()),
            vec!["p:Chat:connection:x", "p:Chat:user:x", "p:Chat:group:x"]
        );
        assert_eq!(
            channels_for("x", DirectoryKind::User, &naming()),
            vec!["p:Chat:user:x"]
        );
        assert!(channels_for("", DirectoryKind::Any, &naming()).is_empty());
        let many: Vec<(String, String)> = (0..10).map(|i| ("p:".to_string(), format!("H{i}"))).collect();
        assert_eq!(channels_for("x", DirectoryKind::Any, &many).len(), MAX_CHANNELS);
    }

    #[test]
    fn answers_to_older_searches_are_ignored_and_counted() {
        let mut d = Directory::default();
        let first = d.ask("ann", DirectoryKind::User, &naming());
        let second = d.ask(" bob ", DirectoryKind::User, &naming());
        assert_eq!(second.text, "bob");
        assert_eq!(d.pending().map(|s| s.id), Some(second.id));
        let answer = |search: DirectorySearch| DirectoryAnswer {
            search,
            nodes: Vec::new(),
            channels: Vec::new(),
            at_ms: 1,
        };
        d.on_answer(answer(first));
        assert_eq!(d.stale_ignored, 1);
        assert!(d.answer().is_none());
        d.on_answer(answer(second.clone()));
        assert_eq!(d.answer().map(|a| a.search.id), Some(second.id));
        assert!(d.pending().is_none());
        // A search the runtime never took: nothing pending, the last answer still shown.
        d.ask("carl", DirectoryKind::User, &naming());
        assert!(d.pending().is_some() && d.answer().is_none());
        d.withdraw();
        assert!(d.pending().is_none());
        assert_eq!(d.answer().map(|a| a.search.id), Some(second.id));
    }

    #[test]
    fn not_found_is_said_plainly_with_the_redis_side() {
        let answer = DirectoryAnswer {
            search: DirectorySearch {
                id: 1,
                text: "x".into(),
                kind: DirectoryKind::Any,
                channels: Vec::new(),
            },
            nodes: vec![
                NodeHits {
                    hub_url: "http://a/chat".into(),
                    hits: Ok(Vec::new()),
                    no_monitor: false,
                    truncated: false,
                },
                NodeHits {
                    hub_url: "http://b/chat".into(),
                    hits: Ok(Vec::new()),
                    no_monitor: false,
                    truncated: false,
                },
                NodeHits {
                    hub_url: "http://c/chat".into(),
                    hits: Err("no monitor endpoint".into()),
                    no_monitor: true,
                    truncated: false,
                },
            ],
            channels: vec![
                ("p:Chat:user:x".into(), Ok(0)),
                ("p:Chat:group:x".into(), Err("timed out".into())),
            ],
            at_ms: 1,
        };
        let name = |u: &str| {
            u.trim_start_matches("http://")
                .trim_end_matches("/chat")
                .to_string()
        };
        let mut held = answer.clone();
        held.channels[0].1 = Ok(1);
        assert_eq!(
            summary(&held, &name)[0],
            "no connection, user or group \"x\" on the 2 nodes that can list connections, but \
             p:Chat:user:x has 1 subscriber: it is held by a node that cannot list its connections (c) \
             or by a server that is not watched"
        );
        let lines = summary(&answer, &name);
        assert_eq!(
            lines[0],
            "no connection, user or group \"x\" on 2 nodes; channel p:Chat:user:x has 0 subscribers, \
             p:Chat:group:x: not answered (timed out)"
        );
        assert!(lines[1].starts_with("c has no monitor endpoint"), "{lines:?}");
    }

    #[test]
    fn a_listing_gathers_connections_users_and_groups_in_name_order() {
        let entry = |id: &str, user: Option<&str>, groups: &[&str], total: u64| DirectoryHit {
            matched: DirectoryKind::Connection,
            entry: ConnectionEntry {
                id: id.into(),
                user: user.map(str::to_string),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                groups_total: total,
                ..ConnectionEntry::default()
            },
        };
        let answer = DirectoryAnswer {
            search: DirectorySearch::default(),
            nodes: vec![
                NodeHits {
                    hub_url: "a".into(),
                    hits: Ok(vec![
                        entry("c3", Some("ann"), &["room"], 1),
                        entry("c1", None, &[], 0),
                    ]),
                    no_monitor: false,
                    truncated: false,
                },
                NodeHits {
                    hub_url: "b".into(),
                    hits: Ok(vec![entry("c2", Some("ann"), &["room", "lobby"], 2)]),
                    no_monitor: false,
                    truncated: false,
                },
            ],
            channels: Vec::new(),
            at_ms: 1,
        };
        assert!(answer.search.is_listing());
        let ids: Vec<String> = listing(&answer, DirectoryKind::Connection)
            .rows
            .iter()
            .filter_map(|r| match r {
                ListRow::Connection { entry, .. } => Some(entry.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec!["c1", "c2", "c3"]);
        let users = listing(&answer, DirectoryKind::User);
        assert!(users.complete);
        assert_eq!(
            users.rows,
            vec![ListRow::User {
                user: "ann".into(),
                connections: 2,
                hub_urls: vec!["a".into(), "b".into()]
            }]
        );
        let groups = listing(&answer, DirectoryKind::Group);
        assert_eq!(
            groups.rows,
            vec![
                ListRow::Group {
                    group: "lobby".into(),
                    members: 1,
                    hub_urls: vec!["b".into()]
                },
                ListRow::Group {
                    group: "room".into(),
                    members: 2,
                    hub_urls: vec!["a".into(), "b".into()]
                },
            ]
        );
        let mut cut = answer.clone();
        cut.nodes[1].truncated = true;
        assert!(!listing(&cut, DirectoryKind::User).complete);
    }

    #[test]
    fn found_names_the_nodes() {
        let answer = DirectoryAnswer {
            search: DirectorySearch {
                id: 1,
                text: "ann".into(),
                kind: DirectoryKind::User,
                channels: Vec::new(),
            },
            nodes: vec![NodeHits {
                hub_url: "a".into(),
                hits: Ok(vec![hit("c1", "ann"), hit("c2", "ann")]),
                no_monitor: false,
                truncated: true,
            }],
            channels: vec![("p:Chat:user:ann".into(), Ok(1))],
            at_ms: 1,
        };
        assert_eq!(answer.found(), 2);
        assert_eq!(
            summary(&answer, &|u: &str| u.to_string()),
            vec![
                "user \"ann\": 2 connections on 1 node: a 2 (more not read)".to_string(),
                "channel p:Chat:user:ann has 1 subscriber".to_string()
            ]
        );
    }
}
