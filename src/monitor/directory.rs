//! The directory's data side: which watched node holds a connection id, a user or a group's
//! members. Asks each Switchboard node's `GET /switchboard/connections?user=&group=&id=&limit=&after=`
//! (one page at a time, following `next`), with the dashboard's monitor token when it has one.
//!
//! Bounded: a search reads at most [`MAX_PAGES`] pages and keeps at most `max_entries` entries per
//! node; each request has a deadline. A node that cannot answer (down, refused, not a Switchboard
//! node) is a finding with its reason, never an error of the whole search.
//!
//! [`run_search`] answers the Directory view: each kind asked (id, user, group) on every node,
//! or, with nothing typed, one bounded listing of every node's connections (the view pages it and
//! gathers its users and groups), and `PUBSUB NUMSUB` of the matching channels (at most once a second, waiting its turn), in one
//! [`DirectoryAnswer`] that carries the search it answers.
//!
//! Also home of [`get`], the one GET every monitor request goes through (stats probes, trace
//! lookups, directory pages), so the token is attached in one place.
//!
//! Uses `client::http` and the `status_doc` types; never `hub` (only what a node serves).

use std::time::Duration;

use super::NodeTarget;
use super::model::directory::{DirectoryAnswer, DirectoryHit, DirectoryKind, DirectorySearch, NodeHits};
use crate::client::{ClientError, NodeTls, encode_component, http};
use crate::monitor_token::MonitorToken;
use crate::status_doc::{CONNECTIONS_MAX_LIMIT, ConnectionEntry, ConnectionsPage};

/// Deadline of one page request: a node slower than this is reported, not waited for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most pages one search reads from one node (each examines at most a few thousand connections on
/// the node), so a search on a huge node ends.
pub const MAX_PAGES: usize = 32;

/// `GET url` with `Authorization: Bearer …` when a token is given, within `timeout`.
pub async fn get(
    url: &str,
    token: Option<&MonitorToken>,
    tls: Option<&NodeTls>,
    timeout: Duration,
) -> Result<http::HttpResponse, ClientError> {
    let value = token.map(MonitorToken::header_value);
    let authorization = value.as_deref().map(|v| [("Authorization", v)]);
    let options = http::RequestOptions {
        headers: authorization.as_ref().map_or(&[][..], |h| &h[..]),
        timeout: Some(timeout),
        tls,
    };
    http::request_with("GET", url, b"", options).await
}

/// What to look for; every field given must match (a connection id, a user, a group as spelled on
/// the wire). All empty lists every connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryQuery {
    pub id: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

impl DirectoryQuery {
    /// The query string of one page (without `?`).
    pub fn query_string(&self, limit: usize, after: Option<&str>) -> String {
        let mut parts = vec![format!("limit={}", limit.clamp(1, CONNECTIONS_MAX_LIMIT))];
        let fields = [
            ("id", self.id.as_deref()),
            ("user", self.user.as_deref()),
            ("group", self.group.as_deref()),
            ("after", after),
        ];
        for (key, value) in fields {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                parts.push(format!("{key}={}", encode_component(value)));
            }
        }
        parts.join("&")
    }

    /// In words, for "… not found" lines.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(id) = self.id.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("connection {id:?}"));
        }
        if let Some(user) = self.user.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("user {user:?}"));
        }
        if let Some(group) = self.group.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("group {group:?}"));
        }
        if parts.is_empty() {
            "any connection".to_string()
        } else {
            parts.join(" in ")
        }
    }
}

/// Why a node did not give a page.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0} has no monitor endpoint (not a Switchboard node), so it cannot list connections")]
    NoMonitor(String),
    #[error("{url} refused the request (HTTP {status}): {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("{url} does not list connections (HTTP {status}); an older Switchboard node, or not one")]
    NotSupported { url: String, status: u16 },
    #[error("{url} answered HTTP {status}: {reason}")]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("{url} sent something that is not a connections page: {reason}")]
    BadPage { url: String, reason: String },
    #[error(transparent)]
    Request(#[from] ClientError),
}

/// The `/switchboard/connections` URL next to a node's stats URL (`…/switchboard/stats`).
pub fn connections_url(stats_url: &str) -> String {
    let base = stats_url
        .strip_suffix("/stats")
        .unwrap_or(stats_url.trim_end_matches('/'));
    format!("{base}/connections")
}

/// The first line of a refusal's body, cut to a readable length.
fn reason_of(response: &http::HttpResponse) -> String {
    let text = response.text();
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

/// One page from the node whose stats URL is `stats_url`.
pub async fn fetch_page(
    stats_url: &str,
    query: &DirectoryQuery,
    limit: usize,
    after: Option<&str>,
    token: Option<&MonitorToken>,
    tls: Option<&NodeTls>,
) -> Result<ConnectionsPage, DirectoryError> {
    let url = format!(
        "{}?{}",
        connections_url(stats_url),
        query.query_string(limit, after)
    );
    let response = get(&url, token, tls, PAGE_TIMEOUT).await?;
    match response.status {
        200 => response
            .json::<ConnectionsPage>()
            .map_err(|e| DirectoryError::BadPage {
                url,
                reason: e.to_string(),
            }),
        status @ (401 | 403) => Err(DirectoryError::Refused {
            url,
            status,
            reason: reason_of(&response),
        }),
        status @ (404 | 405) => Err(DirectoryError::NotSupported { url, status }),
        status => Err(DirectoryError::Status {
            url,
            status,
            reason: reason_of(&response),
        }),
    }
}

/// What one node said about a search.
#[derive(Debug)]
pub struct NodeAnswer {
    /// The node's hub URL.
    pub hub_url: String,
    /// Its matching connections, in id order; or why it could not say.
    pub result: Result<Vec<ConnectionEntry>, DirectoryError>,
    /// More matches were left unread (the entry or page bound was reached).
    pub truncated: bool,
}

/// Asks every node in `nodes` at once, following pages until the last one, `max_entries` entries
/// or [`MAX_PAGES`] pages per node.
pub async fn search(
    nodes: &[NodeTarget],
    query: &DirectoryQuery,
    token: Option<&MonitorToken>,
    tls: Option<&NodeTls>,
    max_entries: usize,
) -> Vec<NodeAnswer> {
    let asks = nodes.iter().map(|node| async move {
        let Some(stats_url) = node.monitor_url.as_deref() else {
            return NodeAnswer {
                hub_url: node.hub_url.clone(),
                result: Err(DirectoryError::NoMonitor(node.hub_url.clone())),
                truncated: false,
            };
        };
        let (result, truncated) = collect(stats_url, query, token, tls, max_entries).await;
        NodeAnswer {
            hub_url: node.hub_url.clone(),
            result,
            truncated,
        }
    });
    futures_util::future::join_all(asks).await
}

/// Every page of one node, within the bounds of [`search`].
async fn collect(
    stats_url: &str,
    query: &DirectoryQuery,
    token: Option<&MonitorToken>,
    tls: Option<&NodeTls>,
    max_entries: usize,
) -> (Result<Vec<ConnectionEntry>, DirectoryError>, bool) {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let room = max_entries.saturating_sub(entries.len());
        if room == 0 {
            return (Ok(entries), true);
        }
        let limit = room.min(CONNECTIONS_MAX_LIMIT);
        let page = match fetch_page(stats_url, query, limit, after.as_deref(), token, tls).await {
            Ok(page) => page,
            Err(e) => return (Err(e), false),
        };
        entries.extend(page.connections);
        match page.next {
            None => return (Ok(entries), false),
            Some(next) => after = Some(next),
        }
    }
    (Ok(entries), true)
}

/// One line per node in plain words: where the query was found, and a plain "not found" when no
/// node holds it.
pub fn summary(query: &DirectoryQuery, answers: &[NodeAnswer]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut found = false;
    for answer in answers {
        match &answer.result {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                found = true;
                let more = if answer.truncated { " (more not read)" } else { "" };
                lines.push(format!(
                    "{}: {} connection(s){more}",
                    answer.hub_url,
                    entries.len()
                ));
            }
            Err(e) => lines.push(format!("{}: could not ask: {e}", answer.hub_url)),
        }
    }
    if !found {
        let asked = answers.iter().filter(|a| a.result.is_ok()).count();
        lines.insert(
            0,
            format!(
                "{} was not found on any of the {asked} node(s) that answered",
                query.describe()
            ),
        );
    }
    lines
}

/// Entries read per node and kind in a Directory search: enough for a person to read, bounded
/// for a node with thousands of members in a group.
pub const SEARCH_MAX_ENTRIES: usize = 200;

/// Answers one Directory search (see the module docs); `None` when cancelled (a newer search
/// replaced it).
// The runtime's state, handed over as it is; a struct for one caller would only rename it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_search(
    search: DirectorySearch,
    nodes: Vec<NodeTarget>,
    trusted: std::collections::HashSet<String>,
    token: Option<MonitorToken>,
    tls: Option<NodeTls>,
    tap: Option<super::TapSource>,
    limiter: super::numsub::Limiter,
    cancel: tokio_util::sync::CancellationToken,
) -> Option<DirectoryAnswer> {
    let work = async {
        // Nothing typed: one listing of every connection (users and groups are read from it).
        let kinds = if search.is_listing() {
            &[DirectoryKind::Connection][..]
        } else {
            search.kind.kinds()
        };
        let asks = kinds.iter().map(|kind| {
            let text = Some(search.text.clone());
            let query = match kind {
                DirectoryKind::Connection => DirectoryQuery {
                    id: text,
                    ..Default::default()
                },
                DirectoryKind::User => DirectoryQuery {
                    user: text,
                    ..Default::default()
                },
                _ => DirectoryQuery {
                    group: text,
                    ..Default::default()
                },
            };
            let (token, tls) = (token.as_ref(), tls.as_ref());
            // The monitor token goes to trusted nodes only.
            let (with_token, without): (Vec<NodeTarget>, Vec<NodeTarget>) =
                nodes.iter().cloned().partition(|n| trusted.contains(&n.hub_url));
            async move {
                let (mut answers, others) = futures_util::future::join(
                    super::directory::search(&with_token, &query, token, tls, SEARCH_MAX_ENTRIES),
                    super::directory::search(&without, &query, None, tls, SEARCH_MAX_ENTRIES),
                )
                .await;
                answers.extend(others);
                (*kind, answers)
            }
        });
        let per_kind = futures_util::future::join_all(asks).await;
        let channels = subscribers(&search.channels, tap.as_ref(), &limiter).await;
        let nodes = nodes.iter().map(|node| merge(&node.hub_url, &per_kind)).collect();
        DirectoryAnswer {
            search: search.clone(),
            nodes,
            channels,
            at_ms: super::now_ms(),
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => None,
        answer = work => Some(answer),
    }
}

/// One node's hits over the kinds asked, one per connection id (the first kind it matched).
fn merge(hub_url: &str, per_kind: &[(DirectoryKind, Vec<NodeAnswer>)]) -> NodeHits {
    let mut hits: Vec<DirectoryHit> = Vec::new();
    let mut error: Option<String> = None;
    let mut no_monitor = false;
    let mut truncated = false;
    for (kind, answers) in per_kind {
        let Some(answer) = answers.iter().find(|a| a.hub_url == hub_url) else {
            continue;
        };
        truncated |= answer.truncated;
        match &answer.result {
            Ok(entries) => {
                for entry in entries {
                    if !hits.iter().any(|h| h.entry.id == entry.id) {
                        hits.push(DirectoryHit {
                            matched: *kind,
                            entry: entry.clone(),
                        });
                    }
                }
            }
            Err(e) => {
                no_monitor |= matches!(e, DirectoryError::NoMonitor(_));
                error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    NodeHits {
        hub_url: hub_url.to_string(),
        hits: match error {
            Some(e) if hits.is_empty() => Err(e),
            _ => Ok(hits),
        },
        no_monitor,
        truncated,
    }
}

/// `PUBSUB NUMSUB` of `channels` on the tap's Redis (the memory bus's counts in the demo), after
/// waiting for the limiter's turn.
async fn subscribers(
    channels: &[String],
    tap: Option<&super::TapSource>,
    limiter: &super::numsub::Limiter,
) -> Vec<(String, Result<u64, String>)> {
    if channels.is_empty() {
        return Vec::new();
    }
    let all = |r: Result<Vec<u64>, String>| -> Vec<(String, Result<u64, String>)> {
        channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let n = match &r {
                    Ok(counts) => counts.get(i).copied().ok_or_else(|| "no count".to_string()),
                    Err(e) => Err(e.clone()),
                };
                (c.clone(), n)
            })
            .collect()
    };
    match tap {
        Some(super::TapSource::Memory { bus, .. }) => {
            all(Ok(channels.iter().map(|c| bus.subscribers(c) as u64).collect()))
        }
        Some(super::TapSource::Redis { spec, .. }) => {
            tokio::time::sleep(limiter.book(std::time::Instant::now())).await;
            all(super::numsub::numsub(spec, channels).await)
        }
        None => all(Err("no Redis connection".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connections_url_sits_next_to_the_stats_url() {
        assert_eq!(
            connections_url("http://h:1/switchboard/stats"),
            "http://h:1/switchboard/connections"
        );
        assert_eq!(
            connections_url("http://h:1/switchboard/"),
            "http://h:1/switchboard/connections"
        );
    }

    #[test]
    fn the_query_string_encodes_and_skips_empty_fields() {
        let q = DirectoryQuery {
            id: None,
            user: Some("a b&c".into()),
            group: Some(String::new()),
        };
        assert_eq!(
            q.query_string(50, Some("k/1")),
            "limit=50&user=a%20b%26c&after=k%2F1"
        );
        assert_eq!(DirectoryQuery::default().query_string(0, None), "limit=1");
        assert_eq!(DirectoryQuery::default().query_string(5000, None), "limit=1000");
    }

    #[test]
    fn a_search_that_finds_nothing_says_so() {
        let q = DirectoryQuery {
            user: Some("ghost".into()),
            ..Default::default()
        };
        let answers = vec![
            NodeAnswer {
                hub_url: "http://a/chat".into(),
                result: Ok(Vec::new()),
                truncated: false,
            },
            NodeAnswer {
                hub_url: "http://b/chat".into(),
                result: Err(DirectoryError::NoMonitor("http://b/chat".into())),
                truncated: false,
            },
        ];
        let lines = summary(&q, &answers);
        assert_eq!(
            lines[0],
            "user \"ghost\" was not found on any of the 1 node(s) that answered"
        );
        assert!(lines[1].starts_with("http://b/chat: could not ask:"), "{lines:?}");
    }
}
