//! The node table: one row per watched hub node (keyed by hub URL, in the order added) with its
//! link state, round-trip time, latest stats, client-count history and message rates derived
//! from the stats counters over a window. Pure, std only; time is passed in.
//!
//! The rules that keep the table honest live here, not in the panels:
//! - [`Nodes::liveness`]: a node is `Live` only while its link is connected and (when it has a
//!   monitor endpoint) its stats are younger than [`DEFAULT_STATS_STALE`]; otherwise it is
//!   `Stale` or `Down`, with when it was last heard from. Only live nodes count in the totals
//!   ([`Nodes::cluster_total_clients`], [`Nodes::probes`], [`Nodes::live_count`]).
//! - The dashboard keeps one probe client connected to each node; the node counts it among its
//!   connections. [`NodeRow::clients`] leaves it out and [`NodeRow::probes`] says whether there
//!   is one, so every panel shows "6 clients + 1 probe" the same way.
//! - A node stopped on purpose (from the Demo panel: [`Nodes::mark_stopped`]) is `Stopped`, not
//!   down, until its link is back; a node whose hub answers 401 to a probe that sent no token
//!   (it is not trusted, so the token is withheld) is `NeedsToken`: up, just closed to us. Both
//!   count apart from failures ([`Nodes::up_count`], [`Nodes::expected_count`]).
//! - [`MsgRates`] come from a [`CounterRates`] over [`DEFAULT_NODE_RATE_WINDOW`], never from one
//!   500 ms delta.

use std::collections::VecDeque;
use std::time::Duration;

use super::rates::CounterRates;
use crate::config::{DEFAULT_NODE_RATE_WINDOW, DEFAULT_RATE_WINDOW, DEFAULT_STATS_STALE};
use crate::monitor::{Announcement, LinkState, MessageStats, NodeEvent, NodeStats, NodeTarget};

/// Client-count samples are kept at most this often.
const HISTORY_STEP_MS: u64 = 1000;

/// Messages per second through a node, from its counters over [`DEFAULT_NODE_RATE_WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MsgRates {
    pub client_in: f64,
    pub client_out: f64,
    pub backplane_in: f64,
    pub backplane_out: f64,
}

/// Whether a node's readings are current. See the module doc for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Connected, with fresh stats (or connected without a monitor endpoint to have stats).
    Live,
    /// Connected, but no stats for longer than [`DEFAULT_STATS_STALE`]: the node stopped
    /// answering. `last_seen_ms` is when the latest stats arrived (or the link came up).
    Stale { last_seen_ms: u64 },
    /// The link is not connected. `last_seen_ms` is when the latest stats arrived, if ever.
    Down { last_seen_ms: Option<u64> },
    /// Stopped on purpose at `since_ms` (from the Demo panel), and not back yet.
    Stopped { since_ms: u64 },
    /// Up, but its hub requires a token the probe did not send (withheld: not trusted, or none
    /// configured).
    NeedsToken,
}

impl Liveness {
    pub fn is_live(self) -> bool {
        self == Liveness::Live
    }

    /// Up as far as "N/M nodes up" goes: live, or answering but closed to us without a token.
    pub fn is_up(self) -> bool {
        matches!(self, Liveness::Live | Liveness::NeedsToken)
    }

    /// When the node was last heard from, unless it is live.
    pub fn last_seen_ms(self) -> Option<u64> {
        match self {
            Liveness::Live | Liveness::NeedsToken => None,
            Liveness::Stopped { since_ms } => Some(since_ms),
            Liveness::Stale { last_seen_ms } => Some(last_seen_ms),
            Liveness::Down { last_seen_ms } => last_seen_ms,
        }
    }
}

/// One node of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub target: NodeTarget,
    /// From the stats, else the announcement, else the URL's host:port.
    pub name: String,
    /// Discovered through its heartbeat rather than added by hand.
    pub announced: bool,
    /// Gets the dashboard's tokens: named by the operator, or matching `--trust-nodes` (the
    /// runtime's [`NodeEvent::Trusted`]). A row that only announced itself starts untrusted.
    pub trusted: bool,
    /// When its latest heartbeat arrived (unix ms), however the node was added.
    pub heartbeat_at_ms: Option<u64>,
    /// When it was stopped on purpose (from the Demo panel), until its link is back.
    pub stopped_since_ms: Option<u64>,
    /// Its hub answered 401 to the probe, which sent no token (see [`NodeEvent::NeedsToken`]).
    pub needs_token: bool,
    pub state: LinkState,
    /// When `state` was entered (unix ms).
    pub since_ms: u64,
    pub rtt: Option<Duration>,
    pub stats: Option<NodeStats>,
    /// When the latest stats arrived (unix ms, our clock; 0 = never).
    pub stats_at_ms: u64,
    /// The connection id of the dashboard's own probe client on this node, while connected.
    pub probe_connection_id: Option<String>,
    /// Whether the probe was connected when the latest stats arrived (so they count it), kept
    /// after the link drops so the last values still read "5 + 1 probe".
    probe_in_stats: bool,
    /// (unix ms, clients without the probe) at most one a second, over the last
    /// [`DEFAULT_RATE_WINDOW`].
    pub history: VecDeque<(u64, u64)>,
    pub rates: MsgRates,
    /// The counters the rates come from: client in/out, backplane in/out, on the node's clock.
    counters: CounterRates<4>,
}

impl NodeRow {
    fn new(target: NodeTarget, now_ms: u64) -> Self {
        Self {
            name: host_port(&target.hub_url),
            target,
            announced: false,
            trusted: true,
            heartbeat_at_ms: None,
            stopped_since_ms: None,
            needs_token: false,
            state: LinkState::Idle,
            since_ms: now_ms,
            rtt: None,
            stats: None,
            stats_at_ms: 0,
            probe_connection_id: None,
            probe_in_stats: false,
            history: VecDeque::new(),
            rates: MsgRates::default(),
            counters: CounterRates::new(DEFAULT_NODE_RATE_WINDOW),
        }
    }

    /// Every connection the node reports, the dashboard's probe included.
    pub fn connections(&self) -> Option<u64> {
        self.stats.as_ref().map(|s| s.connections.total)
    }

    /// The dashboard's probe clients among [`connections`](Self::connections): 1 while the probe
    /// is connected (or was, when the latest stats were taken), else 0.
    pub fn probes(&self) -> u64 {
        let probe = self.probe_connection_id.is_some() || self.probe_in_stats;
        match self.connections() {
            Some(n) if n > 0 && probe => 1,
            _ => 0,
        }
    }

    /// Clients connected to the node from its latest stats, the dashboard's probe left out.
    pub fn clients(&self) -> Option<u64> {
        self.connections().map(|n| n - self.probes())
    }

    /// "6 clients + 1 probe" (or "6 clients"), or `None` without stats.
    pub fn clients_text(&self) -> Option<String> {
        let clients = self.clients()?;
        let noun = if clients == 1 { "client" } else { "clients" };
        Some(match self.probes() {
            0 => format!("{clients} {noun}"),
            p => format!("{clients} {noun} + {p} probe"),
        })
    }

    fn apply_stats(&mut self, stats: NodeStats, now_ms: u64) {
        if !stats.node_name.is_empty() {
            self.name = stats.node_name.clone();
        }
        // The node's own clock times its counters best; ours if it did not say.
        let at = if stats.now_ms > 0 { stats.now_ms } else { now_ms };
        let MessageStats {
            client_in,
            client_out,
            backplane_in,
            backplane_out,
            ..
        } = stats.messages;
        self.counters
            .push(at, [client_in, client_out, backplane_in, backplane_out]);
        // Before two samples span any time there is no rate to show: keep zeros.
        let [client_in, client_out, backplane_in, backplane_out] = self.counters.rates().unwrap_or_default();
        self.rates = MsgRates {
            client_in,
            client_out,
            backplane_in,
            backplane_out,
        };
        self.stats = Some(stats);
        self.stats_at_ms = now_ms;
        self.probe_in_stats = self.probe_connection_id.is_some();
        let clients = self.clients().unwrap_or(0);
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
                if matches!(state, LinkState::Connected) {
                    row.stopped_since_ms = None;
                    row.needs_token = false;
                } else {
                    row.probe_connection_id = None;
                }
            }
            NodeEvent::Stats(stats) => row.apply_stats(stats.clone(), now_ms),
            NodeEvent::Rtt(rtt) => row.rtt = Some(*rtt),
            NodeEvent::ProbeConnected { connection_id } => {
                row.probe_connection_id = Some(connection_id.clone());
                row.needs_token = false;
            }
            NodeEvent::ProbeReceived { .. } => {}
            NodeEvent::Trusted(trusted) => row.trusted = *trusted,
            NodeEvent::NeedsToken(needs) => row.needs_token = *needs,
        }
    }

    /// The node with this hub URL was stopped on purpose at `now_ms` (the Demo panel's Stop): it
    /// reads `Stopped` until its link is connected again. Whether there is such a row.
    pub fn mark_stopped(&mut self, hub_url: &str, now_ms: u64) -> bool {
        match self.rows.iter_mut().find(|r| r.target.hub_url == hub_url) {
            Some(row) => {
                if row.stopped_since_ms.is_none() {
                    row.stopped_since_ms = Some(now_ms);
                }
                true
            }
            None => false,
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
                row.trusted = false;
                self.rows.push(row);
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        row.heartbeat_at_ms = Some(now_ms);
        if row.stats.is_none() && !a.node_name.is_empty() {
            row.name = a.node_name.clone();
        }
    }

    /// Every row, in the order added.
    pub fn rows(&self) -> &[NodeRow] {
        &self.rows
    }

    /// The node's name for display, or its URL when it is not watched.
    pub fn name_or_url(&self, hub_url: &str) -> String {
        self.get(hub_url)
            .map_or_else(|| hub_url.to_string(), |r| r.name.clone())
    }

    /// The row with this hub URL.
    pub fn get(&self, hub_url: &str) -> Option<&NodeRow> {
        self.rows.iter().find(|r| r.target.hub_url == hub_url)
    }

    /// Whether the node's readings are current at `now_ms`. See the module doc.
    pub fn liveness(row: &NodeRow, now_ms: u64) -> Liveness {
        let last_stats = (row.stats_at_ms > 0).then_some(row.stats_at_ms);
        if !matches!(row.state, LinkState::Connected) {
            if let Some(since_ms) = row.stopped_since_ms {
                return Liveness::Stopped { since_ms };
            }
            if row.needs_token {
                return Liveness::NeedsToken;
            }
            return Liveness::Down {
                last_seen_ms: last_stats,
            };
        }
        if row.target.monitor_url.is_none() {
            return Liveness::Live;
        }
        let heard = row.stats_at_ms.max(row.since_ms);
        if now_ms.saturating_sub(heard) > DEFAULT_STATS_STALE.as_millis() as u64 {
            Liveness::Stale { last_seen_ms: heard }
        } else {
            Liveness::Live
        }
    }

    /// Whether `row` is connected but has had no stats for more than [`DEFAULT_STATS_STALE`]
    /// (counted from the later of the last stats and the connection).
    pub fn is_stale(row: &NodeRow, now_ms: u64) -> bool {
        matches!(Self::liveness(row, now_ms), Liveness::Stale { .. })
    }

    /// The live rows, in the order added.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &NodeRow> {
        self.rows
            .iter()
            .filter(move |r| Self::liveness(r, now_ms).is_live())
    }

    /// How many nodes are live.
    pub fn live_count(&self, now_ms: u64) -> usize {
        self.live(now_ms).count()
    }

    /// How many nodes are up ([`Liveness::is_up`]): the "N" of "N/M nodes up".
    pub fn up_count(&self, now_ms: u64) -> usize {
        self.rows
            .iter()
            .filter(|r| Self::liveness(r, now_ms).is_up())
            .count()
    }

    /// How many nodes should be up: every row but those stopped on purpose (the "M").
    pub fn expected_count(&self, now_ms: u64) -> usize {
        self.rows
            .iter()
            .filter(|r| !matches!(Self::liveness(r, now_ms), Liveness::Stopped { .. }))
            .count()
    }

    /// Clients over every live node with stats, the dashboard's probes left out.
    pub fn cluster_total_clients(&self, now_ms: u64) -> u64 {
        self.live(now_ms).filter_map(NodeRow::clients).sum()
    }

    /// The dashboard's probe clients on live nodes (connected, counted by their nodes).
    pub fn probes(&self, now_ms: u64) -> u64 {
        self.live(now_ms).map(NodeRow::probes).sum()
    }

    /// The probe connections the dashboard holds on any node (for the count Redis reveals, which
    /// includes them whatever the node table thinks of the node).
    pub fn probe_connections(&self) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.probe_connection_id.is_some())
            .count() as u64
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
        // A counter went down: the node restarted, no rate until two new samples.
        n.apply(URL, &NodeEvent::Stats(stats(11_000, 5, 5, 30)), 2000);
        let row = n.get(URL).expect("row");
        assert_eq!(row.rates, MsgRates::default());
        assert_eq!(row.history.len(), 2);
        assert_eq!(n.cluster_total_clients(2000), 5);
        n.apply(URL, &NodeEvent::Stats(stats(12_000, 5, 25, 40)), 3000);
        let row = n.get(URL).expect("row");
        assert_eq!((row.rates.client_in, row.rates.backplane_out), (20.0, 10.0));
        // History older than the window is dropped.
        n.apply(URL, &NodeEvent::Stats(stats(400_000, 1, 5, 30)), 400_000);
        assert_eq!(n.get(URL).map(|r| r.history.len()), Some(1));
    }

    fn monitored(url: &str) -> NodeTarget {
        NodeTarget {
            hub_url: url.into(),
            monitor_url: Some(format!("{url}/stats")),
        }
    }

    #[test]
    fn staleness_state_and_probe() {
        let mut n = Nodes::default();
        n.upsert(monitored(URL));
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
        assert!(!Nodes::is_stale(&row, 2500));
        assert!(Nodes::is_stale(&row, 2501));
        n.apply(URL, &NodeEvent::Stats(stats(1, 0, 0, 0)), 6500);
        assert!(!Nodes::is_stale(n.get(URL).expect("row"), 7000));
        n.apply(
            URL,
            &NodeEvent::State(LinkState::Failed { error: "x".into() }),
            8000,
        );
        let row = n.get(URL).expect("row");
        assert!(!Nodes::is_stale(row, 60_000));
        assert_eq!(
            Nodes::liveness(row, 60_000),
            Liveness::Down {
                last_seen_ms: Some(6500)
            }
        );
        assert_eq!(row.probe_connection_id, None);
    }

    /// Two monitored nodes with 6 clients each plus the dashboard's probe, stats every 500 ms.
    fn two_live_nodes(until_ms: u64) -> Nodes {
        let mut n = Nodes::default();
        for url in [URL, "http://b:2/chat"] {
            n.upsert(monitored(url));
            n.apply(url, &NodeEvent::State(LinkState::Connected), 0);
            n.apply(
                url,
                &NodeEvent::ProbeConnected {
                    connection_id: format!("probe-{url}"),
                },
                0,
            );
        }
        for t in (0..=until_ms).step_by(500) {
            for url in [URL, "http://b:2/chat"] {
                n.apply(url, &NodeEvent::Stats(stats(t, 7, t / 100, t / 50)), t);
            }
        }
        n
    }

    #[test]
    fn a_silent_node_goes_stale_within_two_seconds_and_leaves_the_totals() {
        let mut n = two_live_nodes(10_000);
        assert_eq!(n.live_count(10_000), 2);
        assert_eq!(n.cluster_total_clients(10_000), 12, "probes left out");
        assert_eq!(n.probes(10_000), 2);
        assert_eq!(
            n.get(URL).and_then(NodeRow::clients_text).as_deref(),
            Some("6 clients + 1 probe")
        );
        // Node b hangs after its 10 000 ms stats; node a keeps talking.
        for t in (10_500..=12_000).step_by(500) {
            n.apply(URL, &NodeEvent::Stats(stats(t, 7, t / 100, t / 50)), t);
        }
        let b = n.get("http://b:2/chat").expect("row");
        assert_eq!(Nodes::liveness(b, 11_500), Liveness::Live);
        assert_eq!(
            Nodes::liveness(b, 11_501),
            Liveness::Stale { last_seen_ms: 10_000 }
        );
        assert_eq!(Nodes::liveness(b, 12_000).last_seen_ms(), Some(10_000));
        assert_eq!(n.live_count(12_000), 1);
        assert_eq!(n.cluster_total_clients(12_000), 6);
        assert_eq!(n.probes(12_000), 1);
        assert_eq!(n.probe_connections(), 2, "Redis still counts both probes");
        // Its stats come back: live again.
        n.apply(
            "http://b:2/chat",
            &NodeEvent::Stats(stats(12_500, 7, 125, 250)),
            12_500,
        );
        assert_eq!(n.cluster_total_clients(12_500), 12);
    }

    #[test]
    fn a_node_whose_link_drops_is_down_at_once() {
        let mut n = two_live_nodes(5_000);
        n.apply(
            "http://b:2/chat",
            &NodeEvent::State(LinkState::Reconnecting {
                attempt: 1,
                retry_at_ms: 6_000,
                error: "connection refused".into(),
            }),
            5_100,
        );
        let b = n.get("http://b:2/chat").expect("row");
        assert_eq!(
            Nodes::liveness(b, 5_100),
            Liveness::Down {
                last_seen_ms: Some(5_000)
            }
        );
        assert_eq!(
            b.clients_text().as_deref(),
            Some("6 clients + 1 probe"),
            "its last values still leave the probe out"
        );
        assert_eq!(n.probes(5_100), 1, "only the live node's probe counts");
        assert_eq!(n.cluster_total_clients(5_100), 6);
        assert_eq!(n.live_count(5_100), 1);
        // A node without a monitor endpoint is live while connected (nothing to go stale).
        n.upsert(target("http://c:3/chat"));
        n.apply("http://c:3/chat", &NodeEvent::State(LinkState::Connected), 0);
        assert!(Nodes::liveness(n.get("http://c:3/chat").expect("row"), 99_000).is_live());
    }

    #[test]
    fn node_rates_are_windowed() {
        // 20 client messages/s in, arriving in uneven lumps per 500 ms snapshot.
        let mut n = Nodes::default();
        n.upsert(monitored(URL));
        n.apply(URL, &NodeEvent::State(LinkState::Connected), 0);
        let lumps = [20u64, 0, 0, 20, 10, 0, 10, 20, 0, 20];
        let mut total = 0;
        for i in 0..40u64 {
            total += lumps[(i % 10) as usize];
            n.apply(URL, &NodeEvent::Stats(stats(i * 500, 1, total, 0)), i * 500);
            if i >= 10 {
                let r = n.get(URL).expect("row").rates.client_in;
                assert!((r - 20.0).abs() <= 2.0, "snapshot {i}: {r}");
            }
        }
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
