//! The dashboard's pure model: everything the panels show, folded from [`MonitorEvent`]s on the UI
//! thread. Std (plus serde) only, no I/O, no clocks: every function that needs the time takes
//! `now_ms` (unix milliseconds), so tests use synthetic time.
//!
//! - `entry`: [`TrafficEntry`], one decoded backplane message (or a gap marker).
//! - `ring`: a bounded ring buffer that counts its evictions.
//! - `traffic`: the captured stream: ring, filter, pause, the filtered newest-first view.
//! - `rates`: messages and bytes per second per channel kind and per hub, over the last minutes.
//! - `nodes`: the node table: state, RTT, stats, client-count history, per-node message rates.
//! - `health`: findings (severity, evidence, what to do) from plain inputs, and the refresh gate;
//!   `outage` (past outages merged into timed incidents with a culprit) and `ack` (the operator's
//!   acknowledgements) beside it.
//! - `chat`: the chat story in the traffic (chat messages, their words, sender, rate).
//! - `traces`: test messages followed from the sender through Redis to every probe.
//! - `explain`: why a test message did not arrive (verdict, evidence, what to do), and the link
//!   history and tap sightings it weighs.
//! - `directory`: the Directory view's searches and answers (stale answers ignored).
//! - `capture`: JSON Lines and CSV export, JSON Lines import (offline browsing).
//! - `trust`: which nodes get the dashboard's tokens (named, or matching `--trust-nodes`), and
//!   which heartbeat URLs are acceptable at all.
//! - `workspace`: the saved Redis and node list (never a password).
//! - `redis_view`: the Redis view: nodes, roles, slots, pub/sub clients and their output buffers,
//!   failovers (which become markers in the traffic stream).

pub mod capture;
pub mod chat;
pub mod directory;
pub mod entry;
pub mod explain;
pub mod health;
pub mod history;
pub mod nodes;
pub mod rates;
pub mod redis_view;
pub mod ring;
pub mod traces;
pub mod traffic;
pub mod trust;
pub mod wake;
pub mod workspace;

pub use entry::{EntryKind, TrafficEntry};

use super::{CensusStatus, HealthRound, HubCensus, LinkState, MonitorEvent, NodeEvent};

/// The status bar's rate is read over this many complete seconds.
pub const STATUS_RATE_SECS: u64 = 5;

/// How often the status bar's rate is brought up to date when only time passes (a rate over 5 s,
/// read at most 2 s late).
pub const RATE_SLIDE: std::time::Duration = std::time::Duration::from_secs(2);

/// Size limits of the model (the ring buffer is what bounds memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries kept in the traffic ring.
    pub ring_entries: usize,
    /// Payload bytes kept in the traffic ring (entries are evicted past either limit).
    pub ring_bytes: usize,
    /// Traces kept.
    pub traces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_entries: crate::config::DEFAULT_RING_ENTRIES,
            ring_bytes: crate::config::DEFAULT_RING_BYTES,
            traces: 200,
        }
    }
}

/// The tap's link as the UI shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TapStatus {
    pub state: LinkState,
    /// When `state` was entered (unix ms).
    pub since_ms: u64,
    /// When the current outage began, while there is one (becomes a gap marker on recovery).
    pub down_since_ms: Option<u64>,
}

impl TapStatus {
    /// Folds a tap state change in. Leaving `Connected` for `Connecting`, `Reconnecting` or
    /// `Failed` starts an outage; the next `Connected` ends it and returns it as (from, to) unix ms,
    /// for a gap marker. `Idle` (stopped on purpose) is not an outage. Shared by the dashboard's
    /// model and `switchboard tap`, so both see the same gaps.
    pub fn apply(&mut self, state: LinkState, at_ms: u64) -> Option<(u64, u64)> {
        let mut gap = None;
        match &state {
            LinkState::Connected => {
                if let Some(from) = self.down_since_ms.take() {
                    gap = Some((from, at_ms.max(from)));
                }
            }
            LinkState::Idle => self.down_since_ms = None,
            LinkState::Connecting | LinkState::Reconnecting { .. } | LinkState::Failed { .. } => {
                if self.state == LinkState::Connected {
                    self.down_since_ms = Some(at_ms);
                }
            }
        }
        // Another reconnect attempt is the same state, still entered when the first began.
        if std::mem::discriminant(&state) != std::mem::discriminant(&self.state) {
            self.since_ms = at_ms;
        }
        self.state = state;
        gap
    }
}

/// Which link a [`DownSpan`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownKind {
    /// The dashboard's tap on Redis.
    Tap,
    /// The dashboard's link to a node (the node did not answer).
    Node,
    /// A node's own link to Redis.
    Backplane,
}

/// A window in which a link was down (unix ms), for shading the history charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownSpan {
    pub kind: DownKind,
    pub from_ms: u64,
    pub to_ms: u64,
}

/// Everything the dashboard shows.
#[derive(Debug)]
pub struct Model {
    pub traffic: traffic::Traffic,
    pub rates: rates::Rates,
    pub nodes: nodes::Nodes,
    pub traces: traces::Traces,
    pub tap: TapStatus,
    /// The latest PUBSUB census and when it was taken.
    pub census: Option<(u64, Vec<HubCensus>)>,
    /// What the Redis view shows (the poller's rounds, the sharded tap's discovery).
    pub redis: redis_view::RedisView,
    /// How the census is taken: its age, cost and next walk (see `monitor::census`).
    pub census_status: Option<CensusStatus>,
    /// Up/down transitions of the tap, the probes and the nodes' backplane links (for Explain).
    pub history: explain::LinkHistory,
    /// On which channel the tap saw each trace (for Explain).
    pub sightings: explain::Sightings,
    /// The Directory view's latest search and its answer.
    pub directory: directory::Directory,
    /// The latest health round's Redis figures (NUMSUB per hub, SignalR 2 counters).
    pub health_round: Option<HealthRound>,
    /// The latest health evaluation and its refresh gate (see [`Model::refresh_health`]).
    pub health: health::HealthState,
    /// Discovered nodes not trusted, over the cap, and heartbeats ignored (the Nodes panel).
    pub discovery: super::DiscoveryCounts,
    /// How long a past outage stays a Health finding ([`crate::config::DEFAULT_OUTAGE_MEMORY`];
    /// tests shorten it).
    pub outage_memory: std::time::Duration,
}

impl Model {
    pub fn new(limits: Limits) -> Self {
        Self {
            traffic: traffic::Traffic::new(limits.ring_entries, limits.ring_bytes),
            rates: rates::Rates::new(),
            nodes: nodes::Nodes::default(),
            traces: traces::Traces::new(limits.traces),
            tap: TapStatus::default(),
            census: None,
            redis: redis_view::RedisView::default(),
            census_status: None,
            history: explain::LinkHistory::default(),
            sightings: explain::Sightings::default(),
            directory: directory::Directory::default(),
            health_round: None,
            health: health::HealthState::default(),
            discovery: super::DiscoveryCounts::default(),
            outage_memory: crate::config::DEFAULT_OUTAGE_MEMORY,
        }
    }

    /// The node with this hub URL was stopped on purpose at `now_ms` (the Demo panel's Stop): it
    /// reads `stopped`, not down, and its links' down period is not an outage.
    pub fn node_stopped(&mut self, hub_url: &str, now_ms: u64) {
        if self.nodes.mark_stopped(hub_url, now_ms) {
            for link in [
                explain::Link::Probe(hub_url.to_string()),
                explain::Link::Backplane(hub_url.to_string()),
            ] {
                self.history.record_stop(link, now_ms, "stopped on purpose");
            }
        }
    }

    /// When a link was down between `since_ms` and `now_ms` (outages only, not deliberate
    /// stops), clipped to that window, oldest first: for the history charts' shading. `hub_url`
    /// `None` is the tap; a node's spans are its own link's and its backplane link's.
    pub fn down_spans(&self, hub_url: Option<&str>, since_ms: u64, now_ms: u64) -> Vec<DownSpan> {
        let links: Vec<(explain::Link, DownKind)> = match hub_url {
            None => vec![(explain::Link::Tap, DownKind::Tap)],
            Some(url) => vec![
                (explain::Link::Probe(url.to_string()), DownKind::Node),
                (explain::Link::Backplane(url.to_string()), DownKind::Backplane),
            ],
        };
        let mut out = Vec::new();
        for (link, kind) in links {
            for o in self.history.outages(&link) {
                let to = o.to_ms.unwrap_or(now_ms).min(now_ms);
                if to < since_ms || o.from_ms > now_ms {
                    continue;
                }
                out.push(DownSpan {
                    kind,
                    from_ms: o.from_ms.max(since_ms),
                    to_ms: to,
                });
            }
        }
        out.sort_by_key(|s| s.from_ms);
        out
    }

    /// Forgets a node the operator removed: its row and its links' history (so its outages are
    /// not findings any more).
    pub fn remove_node(&mut self, hub_url: &str) -> bool {
        self.history.forget(&explain::Link::Probe(hub_url.to_string()));
        self.history
            .forget(&explain::Link::Backplane(hub_url.to_string()));
        self.nodes.remove(hub_url)
    }

    /// Re-evaluates the health rules when the refresh gate lets it (at most every
    /// [`health::MIN_REFRESH`]); returns whether it did. `prefix` is the watched channel prefix.
    /// The cost is one pass over the last [`health::MODEL_WINDOW_MS`] of the traffic ring (newest
    /// first, stopping at the window's start) and the rules themselves: a few milliseconds at
    /// most, every 2 s, never per frame.
    pub fn refresh_health(&mut self, prefix: &str, now_ms: u64) -> bool {
        if !self.health.gate.ready(now_ms) {
            return false;
        }
        let inputs = health::inputs_from_model(self, prefix, health::MODEL_WINDOW_MS, now_ms);
        let mut evaluation = health::Evaluation::of(&inputs, self.health_round.as_ref());
        evaluation.apply_acks(&self.health.acks);
        self.health.latest = Some(evaluation);
        true
    }

    /// Folds one event in; `now_ms` is the UI's time (gap markers are stamped with it).
    ///
    /// Traffic goes to the ring, the rates and (for entries carrying a trace) the traces. The tap
    /// leaving `Connected` for `Connecting`, `Reconnecting` or `Failed` starts an outage; its
    /// next `Connected` ends it with a gap marker. A tap set `Idle` on purpose is not an outage.
    pub fn apply(&mut self, event: MonitorEvent, now_ms: u64) {
        match event {
            MonitorEvent::Traffic(entries) => {
                for entry in entries {
                    self.rates.record(&entry);
                    if let Some(trace) = entry.trace {
                        self.traces.on_tap(trace, &entry.channel, entry.at_ms);
                        self.sightings.record(trace, &entry.channel, entry.at_ms);
                    }
                    self.traffic.push(entry);
                }
            }
            MonitorEvent::Tap { state, at_ms } => self.apply_tap(state, at_ms, now_ms),
            MonitorEvent::Announced(a) => self.nodes.announce(&a, now_ms),
            MonitorEvent::Census { at_ms, hubs } => self.census = Some((at_ms, hubs)),
            MonitorEvent::Redis(snapshot) => {
                for f in self.redis.apply(*snapshot) {
                    self.traffic
                        .push_failover(f.since_ms, f.at_ms, f.summary(), now_ms);
                }
            }
            MonitorEvent::ShardTap(status) => self.redis.shard_tap = Some(status),
            MonitorEvent::CensusStatus(status) => self.census_status = Some(status),
            MonitorEvent::HealthRound(round) => self.health_round = Some(round),
            MonitorEvent::Node { hub_url, event } => {
                if let NodeEvent::ProbeReceived { trace, at_ms } = &event {
                    self.traces.on_received(&hub_url, *trace, *at_ms);
                }
                self.record_link(&hub_url, &event, now_ms);
                self.nodes.apply(&hub_url, &event, now_ms);
            }
            MonitorEvent::Sent {
                trace,
                node,
                target,
                at_ms,
                expected,
            } => {
                self.traces.on_sent(trace, node, target, at_ms, expected);
            }
            MonitorEvent::TraceLookup { trace, lookup } => self.traces.on_lookup(trace, lookup),
            MonitorEvent::Burst(progress) => self.traces.on_burst(progress, now_ms),
            MonitorEvent::Directory(answer) => self.directory.on_answer(answer),
            MonitorEvent::Discovery(counts) => self.discovery = counts,
            MonitorEvent::SendFailed {
                trace,
                node,
                error,
                at_ms,
            } => {
                self.traces.on_send_failed(trace, node, error, at_ms);
            }
        }
    }

    fn apply_tap(&mut self, state: LinkState, at_ms: u64, now_ms: u64) {
        let up = state == LinkState::Connected;
        if state == LinkState::Idle {
            // Stopped on purpose (disconnected, another Redis chosen): not an outage.
            self.history
                .record_stop(explain::Link::Tap, at_ms, &link_words(&state));
        } else {
            self.history
                .record(explain::Link::Tap, at_ms, up, &link_words(&state));
        }
        // A stopped tap stops the Redis view's poller too: its last round is no longer current.
        if state == LinkState::Idle {
            self.redis.clear();
        }
        if let Some((from, to)) = self.tap.apply(state, at_ms) {
            self.traffic.push_gap(from, to, now_ms);
        }
    }

    /// Folds a node's probe-link change or backplane state (from its stats) into the history.
    fn record_link(&mut self, hub_url: &str, event: &NodeEvent, now_ms: u64) {
        match event {
            NodeEvent::State(state) => self.history.record(
                explain::Link::Probe(hub_url.to_string()),
                now_ms,
                *state == LinkState::Connected,
                &link_words(state),
            ),
            NodeEvent::Stats(stats) => {
                let status = &stats.backplane.status;
                let up = matches!(status.state.as_str(), "connected" | "memory");
                let detail = match &status.last_error {
                    Some(e) if !up => format!("{}: {e}", status.state),
                    _ => status.state.clone(),
                };
                self.history
                    .record(explain::Link::Backplane(hub_url.to_string()), now_ms, up, &detail);
            }
            _ => {}
        }
    }

    /// Why trace `trace` is missing something (see [`explain::explain`]); `tap_prefix` is the
    /// prefix the tap listens under, when a tap is set. `None` for an unknown trace.
    pub fn explain(&self, trace: u64, tap_prefix: Option<&str>, now_ms: u64) -> Option<Vec<explain::Cause>> {
        // The rest of a burst already holds the lookup of its first message (see `traces`).
        let t = self.traces.get(trace)?;
        let nodes: Vec<explain::NodeFacts> = self
            .nodes
            .rows()
            .iter()
            .map(|r| {
                let s = r.stats.as_ref();
                explain::NodeFacts {
                    hub_url: r.target.hub_url.clone(),
                    name: r.name.clone(),
                    prefix: s.map(|s| s.channel_prefix.clone()),
                    hub: s.map(|s| s.hub.clone()).filter(|h| !h.is_empty()),
                    probe_connection_id: r.probe_connection_id.clone(),
                    forward_failures: s.map_or(0, |s| s.forward_failures),
                    backplane_dropped: s.map_or(0, |s| s.messages.backplane_dropped),
                    backplane_gaps: s.map_or(0, |s| s.messages.backplane_gaps),
                    slow_client_disconnects: s.map_or(0, |s| s.slow_client_disconnects),
                }
            })
            .collect();
        let sightings = self.sightings.of(trace);
        Some(explain::explain(explain::ExplainInput {
            trace: t,
            now_ms,
            sightings: &sightings,
            nodes: &nodes,
            history: &self.history,
            tap_prefix,
        }))
    }

    /// Every (channel prefix, hub name) the dashboard knows: each node's own (from its stats),
    /// else the tap's prefix with the hubs the census or the traffic revealed (ASP.NET Core
    /// nodes tell nothing themselves). Without repeats, in node order.
    pub fn hub_namings(&self, tap_prefix: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |prefix: &str, hub: &str| {
            let pair = (prefix.to_string(), hub.to_string());
            if !hub.is_empty() && !out.contains(&pair) {
                out.push(pair);
            }
        };
        for row in self.nodes.rows() {
            if let Some(s) = &row.stats {
                add(&s.channel_prefix, &s.hub);
            }
        }
        if let Some((_, hubs)) = &self.census {
            for h in hubs {
                add(tap_prefix, &h.hub);
            }
        }
        for hub in self.rates.hubs() {
            add(tap_prefix, &hub);
        }
        out
    }

    /// Time passes: trace timeouts. Call once per frame.
    pub fn tick(&mut self, now_ms: u64) {
        self.traces.tick(now_ms);
    }

    /// The next moment (unix ms) something on screen changes with time alone, when no event
    /// arrives: a "reconnecting in N s" countdown ticks, a trace times out, or a rate slides (the status bar's rate over the last complete seconds, the Rates
    /// view's "seconds ago" axis). `None` when nothing would change: the window then draws no
    /// frame until an event or the user wakes it (see [`wake`]). A node going stale is not here:
    /// it would cost a frame every 1.5 s while stats arrive unseen; the link wakes the window
    /// when a node's stats stop ([`wake::WakePolicy::stale_due`]).
    pub fn next_change(&self, now_ms: u64, showing: wake::Showing) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        let next_second = (now_ms / 1000 + 1) * 1000;
        let countdown = |state: &LinkState| matches!(state, LinkState::Reconnecting { .. });
        if countdown(&self.tap.state) || self.nodes.rows().iter().any(|r| countdown(&r.state)) {
            at(next_second);
        }
        let timeout = crate::config::DEFAULT_TRACE_TIMEOUT.as_millis() as u64;
        for trace in self.traces.recent() {
            if trace.status(now_ms) == traces::TraceStatus::Pending {
                at((trace.sent_at_ms + timeout).max(now_ms + 1));
            }
        }
        // Rates are counted in whole seconds: they move when a second completes, for as long as
        // the window they are read over still holds traffic. The Rates view's charts follow every
        // second; the status bar's rate (over the last 5 s) every [`RATE_SLIDE`] after this
        // frame, which is when a quiet backplane's next heartbeat draws one anyway (traffic wakes
        // the window on the same half-second grid: see `wake::TABLE`).
        if let Some(newest) = self.rates.newest_ms() {
            if showing.view == wake::View::Rates {
                let last_change = newest + crate::config::DEFAULT_RATE_WINDOW.as_millis() as u64;
                if now_ms < last_change {
                    at(next_second);
                }
            } else {
                let last_change = newest + (STATUS_RATE_SECS + 1) * 1000;
                if now_ms < last_change {
                    at((now_ms + RATE_SLIDE.as_millis() as u64).min(last_change));
                }
            }
        }
        next
    }

    /// Connections over the cluster as Redis sees them (the latest census: one
    /// `{hub}:connection:*` channel per client, any server, any hub); `None` before any census.
    pub fn cluster_connections_redis(&self) -> Option<u64> {
        self.census
            .as_ref()
            .map(|(_, hubs)| hubs.iter().map(|h| h.connections).sum())
    }

    /// Whether the latest census is too old to show as current (no walk yet, a failed round, or
    /// rounds overdue): its figures are then drawn as stale wherever they appear.
    pub fn census_stale(&self, now_ms: u64) -> bool {
        self.census_status.as_ref().is_none_or(|s| s.is_stale(now_ms))
    }
}

/// A link state in a few words, for the history's evidence lines.
fn link_words(state: &LinkState) -> String {
    match state {
        LinkState::Idle => "not set".to_string(),
        LinkState::Connecting => "connecting".to_string(),
        LinkState::Connected => "connected".to_string(),
        LinkState::Reconnecting { error, .. } => format!("reconnecting: {error}"),
        LinkState::Failed { error } => format!("failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{NodeTarget, SendTarget};

    fn model() -> Model {
        Model::new(Limits {
            ring_entries: 100,
            ring_bytes: 10_000,
            traces: 10,
        })
    }

    #[test]
    fn the_rest_of_a_burst_borrows_the_first_messages_lookup_and_sightings_are_kept() {
        let mut m = model();
        let group = SendTarget::Group("ghosts".into());
        for (trace, at) in [(1, 1_000), (2, 1_100)] {
            m.apply(
                MonitorEvent::Sent {
                    trace,
                    node: "a".into(),
                    target: group.clone(),
                    at_ms: at,
                    expected: Vec::new(),
                },
                at,
            );
            let text = format!("hi {}", traces::marker(trace));
            let e = crate::monitor::decode::decode("", "p:H:group:ghosts", text.as_bytes(), at + 2);
            m.apply(MonitorEvent::Traffic(vec![e]), at + 2);
        }
        m.apply(
            MonitorEvent::TraceLookup {
                trace: 1,
                lookup: crate::monitor::TraceLookup {
                    channel: Some("p:H:group:ghosts".into()),
                    subscribers: Some(0),
                    ..Default::default()
                },
            },
            1_200,
        );
        m.tick(10_000);
        assert_eq!(m.sightings.of(2), vec![("p:H:group:ghosts".to_string(), 1_102)]);
        let causes = m.explain(2, Some("p:"), 10_000).expect("known trace");
        assert!(
            causes[0]
                .headline
                .starts_with("Nobody was subscribed to p:H:group:ghosts"),
            "{causes:?}"
        );
        assert!(
            causes[0]
                .evidence
                .contains(&"NUMSUB and holders asked for trace 1, the first of its send".to_string()),
            "{causes:?}"
        );
        // Too late to borrow from: no NUMSUB, so no verdict on subscribers.
        m.apply(
            MonitorEvent::Sent {
                trace: 3,
                node: "a".into(),
                target: group,
                at_ms: 1_000 + traces::BORROW_LOOKUP_MS + 1,
                expected: Vec::new(),
            },
            40_000,
        );
        m.tick(100_000);
        let causes = m.explain(3, Some("p:"), 100_000).expect("known trace");
        assert!(!causes[0].headline.starts_with("Nobody"), "{causes:?}");
    }

    #[test]
    fn traffic_feeds_ring_rates_and_traces() {
        let mut m = model();
        m.apply(
            MonitorEvent::Sent {
                trace: 7,
                node: "a".into(),
                target: SendTarget::All,
                at_ms: 1000,
                expected: vec!["a".into()],
            },
            1000,
        );
        let e = crate::monitor::decode::decode("", "x", format!("hi {}", traces::marker(7)).as_bytes(), 1004);
        assert_eq!(e.trace, Some(7));
        m.apply(MonitorEvent::Traffic(vec![e]), 1005);
        assert_eq!(m.traffic.len(), 1);
        assert_eq!(m.rates.totals_by_kind(), vec![(EntryKind::Other, 1, e_size())]);
        assert_eq!(m.traces.get(7).and_then(|t| t.redis_at_ms), Some(1004));
        m.nodes.upsert(NodeTarget {
            hub_url: "a".into(),
            monitor_url: None,
        });
        m.apply(
            MonitorEvent::Node {
                hub_url: "a".into(),
                event: NodeEvent::ProbeReceived {
                    trace: 7,
                    at_ms: 1006,
                },
            },
            1006,
        );
        m.tick(1007);
        assert_eq!(
            m.traces.get(7).map(|t| t.status(1007)),
            Some(traces::TraceStatus::Delivered)
        );
        m.apply(
            MonitorEvent::SendFailed {
                trace: 8,
                node: "a".into(),
                error: "no".into(),
                at_ms: 1,
            },
            1,
        );
        assert_eq!(m.traces.len(), 2);
    }

    fn e_size() -> u64 {
        format!("hi {}", traces::marker(7)).len() as u64
    }

    #[test]
    fn next_change_names_only_what_time_alone_changes() {
        let traffic_view = wake::Showing::default();
        let rates_view = wake::Showing {
            view: wake::View::Rates,
            ..Default::default()
        };
        let mut m = model();
        assert_eq!(
            m.next_change(10_300, traffic_view),
            None,
            "nothing to change: no frame"
        );
        // A countdown ticks on the whole second.
        m.apply(
            MonitorEvent::Tap {
                state: LinkState::Reconnecting {
                    attempt: 1,
                    retry_at_ms: 14_000,
                    error: "refused".into(),
                },
                at_ms: 10_000,
            },
            10_000,
        );
        assert_eq!(m.next_change(10_300, traffic_view), Some(11_000));
        m.apply(
            MonitorEvent::Tap {
                state: LinkState::Connected,
                at_ms: 10_400,
            },
            10_400,
        );
        // A trace waits for its timeout.
        m.apply(
            MonitorEvent::Sent {
                trace: 1,
                node: "a".into(),
                target: SendTarget::All,
                at_ms: 10_500,
                expected: vec!["a".into()],
            },
            10_500,
        );
        let timeout = crate::config::DEFAULT_TRACE_TIMEOUT.as_millis() as u64;
        assert_eq!(m.next_change(10_600, traffic_view), Some(10_500 + timeout));
        m.tick(10_500 + timeout);
        assert_eq!(m.next_change(10_500 + timeout, traffic_view), None);
        // Rates slide: the status bar's every RATE_SLIDE until the window is past the traffic,
        // the Rates view's every second.
        let mut m = model();
        let e = crate::monitor::decode::decode("", "x", b"hi", 20_200);
        m.apply(MonitorEvent::Traffic(vec![e]), 20_200);
        let slide = RATE_SLIDE.as_millis() as u64;
        assert_eq!(m.next_change(20_300, traffic_view), Some(20_300 + slide));
        assert_eq!(
            m.next_change(25_500, traffic_view),
            Some(26_000),
            "never past its last change"
        );
        assert_eq!(m.next_change(26_000, traffic_view), None);
        assert_eq!(m.next_change(26_000, rates_view), Some(27_000));
    }

    #[test]
    fn tap_outage_becomes_a_gap_but_idle_does_not() {
        let mut m = model();
        let tap = |m: &mut Model, state: LinkState, at_ms: u64| {
            m.apply(MonitorEvent::Tap { state, at_ms }, at_ms + 1)
        };
        tap(&mut m, LinkState::Connecting, 0);
        tap(&mut m, LinkState::Connected, 10);
        assert_eq!(m.traffic.len(), 0, "first connect is not a recovery");
        tap(
            &mut m,
            LinkState::Reconnecting {
                attempt: 1,
                retry_at_ms: 2000,
                error: "x".into(),
            },
            1000,
        );
        assert_eq!(m.tap.down_since_ms, Some(1000));
        tap(
            &mut m,
            LinkState::Reconnecting {
                attempt: 2,
                retry_at_ms: 4000,
                error: "x".into(),
            },
            2000,
        );
        assert_eq!((m.tap.down_since_ms, m.tap.since_ms), (Some(1000), 1000));
        tap(&mut m, LinkState::Connected, 5000);
        assert_eq!(m.tap.down_since_ms, None);
        let gap = m.traffic.latest(0).expect("gap");
        assert_eq!(
            (gap.kind, gap.gap, gap.at_ms),
            (EntryKind::Gap, Some((1000, 5000)), 5001)
        );
        tap(&mut m, LinkState::Failed { error: "bad".into() }, 6000);
        tap(&mut m, LinkState::Idle, 7000);
        tap(&mut m, LinkState::Connected, 8000);
        assert_eq!(m.traffic.len(), 1, "stopping the tap on purpose is not a gap");
        assert_eq!(m.rates.totals_by_kind(), vec![], "gaps are not counted");
    }

    #[test]
    fn announcements_census_and_node_events() {
        let mut m = model();
        assert_eq!(m.cluster_connections_redis(), None);
        let hub = |n: u64| HubCensus {
            hub: "H".into(),
            connections: n,
            ..HubCensus::default()
        };
        m.apply(
            MonitorEvent::Census {
                at_ms: 5,
                hubs: vec![hub(3), hub(4)],
            },
            5,
        );
        assert_eq!(m.cluster_connections_redis(), Some(7));
        let a = crate::monitor::Announcement {
            hub_url: "http://n/chat".into(),
            node_name: "n".into(),
            ..Default::default()
        };
        m.apply(MonitorEvent::Announced(a), 6);
        m.apply(
            MonitorEvent::Node {
                hub_url: "http://n/chat".into(),
                event: NodeEvent::State(LinkState::Connected),
            },
            7,
        );
        let row = m.nodes.get("http://n/chat").expect("row");
        assert_eq!(
            (row.name.as_str(), row.announced, &row.state, row.since_ms),
            ("n", true, &LinkState::Connected, 7)
        );
    }
}
