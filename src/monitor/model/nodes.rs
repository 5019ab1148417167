//! The node table: one row per watched hub node (keyed by hub URL, in the order added) with its
//! link state, round-trip time, latest stats, client-count history and message rates derived
//! from the stats counters. Pure, std only; time is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{DEFAULT_RATE_WINDOW, DEFAULT_STATS_STALE};
use crate::monitor::{Announcement, LinkState, MessageStats, NodeEvent, NodeStats, NodeTarget};

/// Client-count samples are kept at most this often.
const HISTORY_STEP_MS: u64 = 1000;

/// Messages per second through a node, from the deltas of its counters between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MsgRates {
    pub client_in: f64,
    pub client_out: f64,
    pub backplane_in: f64,
    pub backplane_out: f64,
}

/// One node of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub target: NodeTarget,
    /// From the stats, else the announcement, else the URL's host:port.
    pub name: String,
    /// Discovered through its heartbeat rather than added by hand.
    pub announced: bool,
    pub state: LinkState,
    /// When `state` was entered (unix ms).
    pub since_ms: u64,
    pub rtt: Option<Duration>,
    pub stats: Option<NodeStats>,
    /// When the latest stats arrived (unix ms, our clock).
    pub stats_at_ms: u64,
    pub probe_connection_id: Option<String>,
    /// (unix ms, clients) at most one a second, over the last [`DEFAULT_RATE_WINDOW`].
    pub history: VecDeque<(u64, u64)>,
    pub rates: MsgRates,
    /// The counters the rates were last derived from, and their time.
    prev_counters: Option<(u64, MessageStats)>,
}

impl NodeRow {
    fn new(target: NodeTarget, now_ms: u64) -> Self {
        Self {
            name: host_port(&target.hub_url),
            target,
            announced: false,
            state: LinkState::Idle,
            since_ms: now_ms,
            rtt: None,
            stats: None,
            stats_at_ms: 0,
            probe_connection_id: None,
            history: VecDeque::new(),
            rates: MsgRates::default(),
            prev_counters: None,
        }
    }

    /// Clients connected to the node, from its latest stats.
    pub fn clients(&self) -> Option<u64> {
        self.stats.as_ref().map(|s| s.connections.total)
    }

    fn apply_stats(&mut self, stats: NodeStats, now_ms: u64) {
        if !stats.node_name.is_empty() {
            self.name = stats.node_name.clone();
        }
        // The node's own clock times its counters best; ours if it did not say.
        let at = if stats.now_ms > 0 { stats.now_ms } else { now_ms };
        let cur = stats.messages.clone();
        if let Some((prev_at, prev)) = &self.prev_counters
            && at > *prev_at
        {
            let secs = (at - prev_at) as f64 / 1000.0;
            // A counter that went down means the node restarted: no rate from that pair.
            let rate = |c: u64, p: u64| if c >= p { (c - p) as f64 / secs } else { 0.0 };
            self.rates = MsgRates {
                client_in: rate(cur.client_in, prev.client_in),
                client_out: rate(cur.client_out, prev.client_out),
                backplane_in: rate(cur.backplane_in, prev.backplane_in),
                backplane_out: rate(cur.backplane_out, prev.backplane_out),
            };
        }
        if self
            .prev_counters
            .as_ref()
            .is_none_or(|(prev_at, _)| at != *prev_at)
        {
            self.prev_counters = Some((at, cur));
        }
        let clients = stats.connections.total;
        if self
            .history
            .back()
            .is_none_or(|(t, _)| now_ms >= t + HISTORY_STEP_MS)
        {
            self.history.push_back((now_ms, clients));
        }
        let window = DEFAULT_RATE_WINDOW.as_millis() as u64;
        while self.history.front().is_some_and(|(t, _)| t + window < now_ms) {
            self.history.pop_front();
        }
        self.stats = Some(stats);
        self.stats_at_ms = now_ms;
    }
}

/// `host:port` of a URL (whatever sits between `://` and the next `/`), or the URL itself.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/')
        .next()
        .filter(|h| !h.is_empty())
        .unwrap_or(url)
        .to_string()
}

/// The node table, insertion-ordered.
#[derive(Debug, Default, Clone)]
pub struct Nodes {
    rows: Vec<NodeRow>,
}

impl Nodes {
    fn position(&self, hub_url: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.target.hub_url == hub_url)
    }

    /// Adds a node (at the end, `Idle` until its first state event), or replaces the monitor URL
    /// of the row with that hub URL.
    pub fn upsert(&mut self, target: NodeTarget) {
        match self.position(&target.hub_url) {
            Some(i) => self.rows[i].target = target,
            None => self.rows.push(NodeRow::new(target, 0)),
        }
    }

    /// Removes the row with this hub URL; whether there was one.
    pub fn remove(&mut self, hub_url: &str) -> bool {
        let before = self.rows.len();
        self.rows.retain(|r| r.target.hub_url != hub_url);
        self.rows.len() != before
    }

    /// Folds in an event about the node with this hub URL. Events for a node not in the table
    /// (late ones after a removal) are ignored.
    pub fn apply(&mut self, hub_url: &str, event: &NodeEvent, now_ms: u64) {
        let Some(row) = self.rows.iter_mut().find(|r| r.target.hub_url == hub_url) else {
            return;
        };
        match event {
            NodeEvent::State(state) => {
                if *state != row.state {
                    row.state = state.clone();
                    row.since_ms = now_ms;
                }
                if !matches!(state, LinkState::Connected) {
                    row.probe_connection_id = None;
                }
            }
            NodeEvent::Stats(stats) => row.apply_stats(stats.clone(), now_ms),
            NodeEvent::Rtt(rtt) => row.rtt = Some(*rtt),
            NodeEvent::ProbeConnected { connection_id } => {
                row.probe_connection_id = Some(connection_id.clone());
            }
            NodeEvent::ProbeReceived { .. } => {}
        }
    }

    /// A node announced itself: adds a row marked announced (its monitor URL is the stats
    /// endpoint next to the announced URL), or names an existing row that has no stats yet.
    pub fn announce(&mut self, a: &Announcement, now_ms: u64) {
        if a.hub_url.is_empty() {
            return;
        }
        let i = match self.position(&a.hub_url) {
            Some(i) => i,
            None => {
                let monitor_url = (!a.url.is_empty()).then(|| format!("{}/switchboard/stats", a.url));
                let mut row = NodeRow::new(
                    NodeTarget {
                        hub_url: a.hub_url.clone(),
                        monitor_url,
                    },
                    now_ms,
                );
                row.announced = true;
                self.rows.push(row);
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        if row.stats.is_none() && !a.node_name.is_empty() {
            row.name = a.node_name.clone();
        }
    }

    /// Every row, in the order added.
    pub fn rows(&self) -> &[NodeRow] {
        &self.rows
    }

    /// The row with this hub URL.
    pub fn get(&self, hub_url: &str) -> Option<&NodeRow> {
        self.rows.iter().find(|r| r.target.hub_url == hub_url)
    }

    /// Clients over every node with stats.
    pub fn cluster_total_clients(&self) -> u64 {
        self.rows.iter().filter_map(NodeRow::clients).sum()
    }

    /// Whether `row` is connected but has had no stats for more than [`DEFAULT_STATS_STALE`]
    /// (counted from the later of the last stats and the connection).
    pub fn is_stale(row: &NodeRow, now_ms: u64) -> bool {
        matches!(row.state, LinkState::Connected)
            && now_ms.saturating_sub(row.stats_at_ms.max(row.since_ms))
                > DEFAULT_STATS_STALE.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::ConnectionStats;

    const URL: &str = "http://127.0.0.1:5001/chat";

    fn target(url: &str) -> NodeTarget {
        NodeTarget {
            hub_url: url.into(),
            monitor_url: None,
        }
    }

    fn stats(now_ms: u64, clients: u64, client_in: u64, backplane_out: u64) -> NodeStats {
        NodeStats {
            node_name: "node-a".into(),
            now_ms,
            connections: ConnectionStats {
                total: clients,
                ..ConnectionStats::default()
            },
            messages: MessageStats {
                client_in,
                backplane_out,
                ..MessageStats::default()
            },
            ..NodeStats::default()
        }
    }

    #[test]
    fn upsert_remove_and_order() {
        let mut n = Nodes::default();
        n.upsert(target(URL));
        n.upsert(target("http://b:2/chat"));
        n.upsert(NodeTarget {
            hub_url: URL.into(),
            monitor_url: Some("m".into()),
        });
        assert_eq!(n.rows().len(), 2);
        assert_eq!(n.rows()[0].name, "127.0.0.1:5001");
        assert_eq!(n.rows()[0].target.monitor_url.as_deref(), Some("m"));
        assert!(n.remove(URL));
        assert!(!n.remove(URL));
        assert_eq!(n.rows()[0].target.hub_url, "http://b:2/chat");
        n.apply(URL, &NodeEvent::Rtt(Duration::from_millis(3)), 5);
        assert!(n.get(URL).is_none(), "events for removed nodes are ignored");
    }

    #[test]
    fn stats_rates_history_and_counter_reset() {
        let mut n = Nodes::default();
        n.upsert(target(URL));
        n.apply(URL, &NodeEvent::State(LinkState::Connected), 1000);
        n.apply(URL, &NodeEvent::Stats(stats(10_000, 3, 100, 10)), 1000);
        n.apply(URL, &NodeEvent::Stats(stats(10_500, 4, 150, 20)), 1500);
        let row = n.get(URL).expect("row");
        assert_eq!(row.name, "node-a");
        assert_eq!((row.rates.client_in, row.rates.backplane_out), (100.0, 20.0));
        assert_eq!(row.history.iter().copied().collect::<Vec<_>>(), vec![(1000, 3)]);
        n.apply(URL, &NodeEvent::Stats(stats(11_000, 5, 5, 30)), 2000);
        let row = n.get(URL).expect("row");
        assert_eq!((row.rates.client_in, row.rates.backplane_out), (0.0, 20.0));
        assert_eq!(row.history.len(), 2);
        assert_eq!(n.cluster_total_clients(), 5);
        // History older than the window is dropped.
        n.apply(URL, &NodeEvent::Stats(stats(400_000, 1, 5, 30)), 400_000);
        assert_eq!(n.get(URL).map(|r| r.history.len()), Some(1));
    }

    #[test]
    fn staleness_state_and_probe() {
        let mut n = Nodes::default();
        n.upsert(target(URL));
        n.apply(URL, &NodeEvent::State(LinkState::Connected), 1000);
        n.apply(
            URL,
            &NodeEvent::ProbeConnected {
                connection_id: "p1".into(),
            },
            1000,
        );
        let row = n.get(URL).expect("row").clone();
        assert_eq!(
            (row.since_ms, row.probe_connection_id.as_deref()),
            (1000, Some("p1"))
        );
        assert!(!Nodes::is_stale(&row, 5000));
        assert!(Nodes::is_stale(&row, 7000));
        n.apply(URL, &NodeEvent::Stats(stats(1, 0, 0, 0)), 6500);
        assert!(!Nodes::is_stale(n.get(URL).expect("row"), 7000));
        n.apply(
            URL,
            &NodeEvent::State(LinkState::Failed { error: "x".into() }),
            8000,
        );
        let row = n.get(URL).expect("row");
        assert!(!Nodes::is_stale(row, 60_000));
        assert_eq!(row.probe_connection_id, None);
    }

    #[test]
    fn announcements_add_or_name_rows() {
        let mut n = Nodes::default();
        let a = Announcement {
            node_name: "node-b".into(),
            url: "http://h:7".into(),
            hub_url: "http://h:7/chat".into(),
            ..Announcement::default()
        };
        n.announce(&a, 10);
        let row = n.get("http://h:7/chat").expect("row");
        assert!(row.announced);
        assert_eq!(row.name, "node-b");
        assert_eq!(
            row.target.monitor_url.as_deref(),
            Some("http://h:7/switchboard/stats")
        );
        n.upsert(target(URL));
        n.announce(
            &Announcement {
                node_name: "node-a2".into(),
                hub_url: URL.into(),
                ..Announcement::default()
            },
            11,
        );
        assert_eq!(
            n.get(URL).map(|r| (r.name.as_str(), r.announced)),
            Some(("node-a2", false))
        );
        assert_eq!(n.rows().len(), 2);
    }
}
