//! When the window must be redrawn because of what arrived: the repaint policy of the dashboard,
//! pure and unit-tested. Std only; time is passed in.
//!
//! Under software OpenGL one full frame costs about 20 ms of CPU, and egui has no cheaper pass: a
//! frame that only looks for news costs as much as one that shows it. So the window never polls.
//! The monitor calls [`WakePolicy::wake_for`] with every batch it hands over (on its own thread,
//! before the UI sees the batch), and the link turns the answer into
//! `request_repaint_after`: a batch that changes nothing on screen wakes nobody, and one that does
//! wakes the window within the period the view needs (a table of new rows 5 times a second, a
//! node's counters twice, a number in the status bar once). Several batches inside one period make
//! one frame. What changes with time alone (a countdown, a node going stale, a trace timing out) is
//! the frame's own business: the UI asks for a frame at that moment ([`super::Model::next_change`]).

use std::collections::HashMap;
use std::time::Duration;

use crate::config::DEFAULT_STATS_STALE;
use crate::monitor::{MonitorEvent, NodeEvent, NodeStats};

/// A state change (a link lost or back, a test message sent or received): as soon as possible.
pub const NOW: Duration = Duration::from_millis(16);

/// New rows in the traffic table, trace updates on the Send view: on the next half second (two
/// frames a second at most, a twentieth of a core under software OpenGL). On a grid rather than
/// a delay, so the frame that shows a row also shows the rates that moved on the whole second,
/// and a quiet backplane's heartbeat and its rate share one frame.
pub const TABLE: Duration = Duration::from_millis(500);

/// New pulses on the topology: they start within 100 ms of the message (the topology animates
/// them at its own frame rate once started).
pub const PULSES: Duration = Duration::from_millis(100);

/// A node's counters and rates on the Nodes view (its stats arrive every 500 ms; its rates are
/// read over 5 s, so once a second follows them smoothly).
pub const COUNTERS: Duration = Duration::from_secs(1);

/// Numbers outside the current view (the status bar's totals, the left panel's counts): every
/// 2 s, the period of the nodes' heartbeats, so a quiet backplane costs one frame per heartbeat.
pub const GLANCE: Duration = Duration::from_secs(2);

/// How long a node's rates keep changing after its counters stop (the windowed rate falls to 0
/// over this long), so the Nodes view keeps being woken that long.
pub const RATE_SETTLE: Duration = Duration::from_secs(6);

/// The central view, as far as repainting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Traffic,
    Rates,
    Nodes,
    Send,
    Topology,
    Redis,
    Directory,
    Health,
}

/// What the window shows now (published by the UI every frame, read by the monitor's thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Showing {
    pub view: View,
    /// The traffic table does not move (paused, or browsing a capture).
    pub table_frozen: bool,
    /// Presenter mode (no left panel; large counters and the latest messages).
    pub presenter: bool,
}

impl Showing {
    /// Packs into a byte, for an atomic shared between the UI and the monitor's thread.
    pub fn to_bits(self) -> u8 {
        let view = match self.view {
            View::Traffic => 0,
            View::Rates => 1,
            View::Nodes => 2,
            View::Send => 3,
            View::Topology => 4,
            View::Redis => 5,
            View::Directory => 7,
            View::Health => 6,
        };
        view | (self.table_frozen as u8) << 3 | (self.presenter as u8) << 4
    }

    pub fn from_bits(bits: u8) -> Showing {
        let view = match bits & 0b111 {
            1 => View::Rates,
            2 => View::Nodes,
            3 => View::Send,
            4 => View::Topology,
            5 => View::Redis,
            7 => View::Directory,
            6 => View::Health,
            _ => View::Traffic,
        };
        Showing {
            view,
            table_frozen: bits & 1 << 3 != 0,
            presenter: bits & 1 << 4 != 0,
        }
    }
}

/// What of a node's stats is drawn anywhere (counts, counters, backplane state): uptime and the
/// node's clock are left out, so a snapshot that only moved those changes nothing on screen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Drawn {
    clients: u64,
    groups: u64,
    users: u64,
    counters: [u64; 4],
    failures: [u64; 5],
    backplane: String,
}

impl Drawn {
    fn of(stats: &NodeStats) -> Drawn {
        let m = &stats.messages;
        Drawn {
            clients: stats.connections.total,
            groups: stats.groups,
            users: stats.users,
            counters: [m.client_in, m.client_out, m.backplane_in, m.backplane_out],
            failures: [
                stats.forward_failures,
                stats.slow_client_disconnects,
                stats.protocol_errors,
                stats.backplane_decode_errors,
                stats.group_ack_timeouts,
            ],
            backplane: stats.backplane.status.state.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct NodeSeen {
    drawn: Drawn,
    /// When the counters last moved (the node's rates settle for [`RATE_SETTLE`] after).
    counters_moved_ms: u64,
    /// The kind of its link's last state (see [`WakePolicy::tap_state`]).
    state: Option<std::mem::Discriminant<crate::monitor::LinkState>>,
    /// When its latest stats were handed over (unix ms), while its link is up.
    stats_seen_ms: Option<u64>,
    /// Whether the window was already woken for this node going stale.
    stale_told: bool,
    /// The round-trip time at the precision it is shown with (0.1 ms below 10 ms, else 1 ms).
    rtt_shown: Option<u128>,
}

/// Remembers what was last drawn of each node and of the census, to tell news from repeats.
#[derive(Debug, Default)]
pub struct WakePolicy {
    nodes: HashMap<String, NodeSeen>,
    /// The client count each announced node last gave in its heartbeat.
    announced: HashMap<String, u64>,
    /// The kind of the tap's last state (a link that goes down wakes at once; another attempt
    /// of the same outage, every 250 ms against a refused port, only at a glance).
    tap_state: Option<std::mem::Discriminant<crate::monitor::LinkState>>,
    census: Option<Vec<crate::monitor::HubCensus>>,
    /// What the census line shows of the latest status: (walk time, next walk, a problem).
    census_status: Option<(u64, u64, bool)>,
}

/// The time from `now_ms` to the next multiple of `grid` (at least 20 ms away).
pub fn on_grid(now_ms: u64, grid: Duration) -> Duration {
    let grid = grid.as_millis().max(1) as u64;
    let left = grid - now_ms % grid;
    Duration::from_millis(if left < 20 { left + grid } else { left })
}

fn sooner(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl WakePolicy {
    /// How soon the window must be redrawn for `events`, given what it shows; `None` when nothing
    /// visible changed.
    pub fn wake_for(&mut self, showing: Showing, events: &[MonitorEvent], now_ms: u64) -> Option<Duration> {
        let mut wake = None;
        for event in events {
            if let Some(d) = self.one(showing, event, now_ms) {
                wake = sooner(wake, d);
            }
        }
        wake
    }

    fn one(&mut self, showing: Showing, event: &MonitorEvent, now_ms: u64) -> Option<Duration> {
        let view = showing.view;
        match event {
            MonitorEvent::Traffic(entries) if entries.is_empty() => None,
            MonitorEvent::Traffic(_) => Some(match view {
                View::Traffic if !showing.table_frozen => on_grid(now_ms, TABLE),
                View::Topology => PULSES,
                // The presenter's latest messages are throttled to twice a second.
                _ if showing.presenter => COUNTERS,
                _ => GLANCE,
            }),
            MonitorEvent::Tap { state, .. } => {
                let kind = std::mem::discriminant(state);
                let before = self.tap_state.replace(kind);
                Some(if before == Some(kind) { GLANCE } else { NOW })
            }
            // A node's heartbeat (every 2 s): news only for a node not seen before; what it
            // carries besides is its client count, shown on the Nodes view and the topology.
            MonitorEvent::Announced(a) => {
                let known = self.announced.insert(a.hub_url.clone(), a.connections);
                match known {
                    None => Some(NOW),
                    Some(before) if before != a.connections => Some(GLANCE),
                    Some(_) => None,
                }
            }
            MonitorEvent::Census { hubs, .. } => {
                if self.census.as_ref() == Some(hubs) {
                    return None;
                }
                self.census = Some(hubs.clone());
                (!showing.presenter).then_some(GLANCE)
            }
            // A poll round (every few seconds): drawn on the Redis view; elsewhere only its
            // failover markers show, in the traffic table.
            MonitorEvent::Redis(_) | MonitorEvent::ShardTap(_) => Some(match view {
                View::Redis => NOW,
                _ => GLANCE,
            }),
            // Every round (2 s): news only when a walk happened, the next one moved or a
            // problem came or went; the age it shows moves with the other repaints.
            MonitorEvent::CensusStatus(status) => {
                let shown = (
                    status.scanned_at_ms,
                    status.next_scan_at_ms / 1000,
                    status.problem.is_some(),
                );
                if self.census_status.replace(shown) == Some(shown) {
                    return None;
                }
                (!showing.presenter).then_some(GLANCE)
            }
            // Every census round (2 s): the Health view re-evaluates with it; elsewhere the
            // badges follow with the frames other news draws.
            MonitorEvent::HealthRound(_) => (view == View::Health).then_some(GLANCE),
            MonitorEvent::Sent { .. } | MonitorEvent::SendFailed { .. } => Some(NOW),
            // Traces' findings and a burst's progress are drawn on the Send view only.
            MonitorEvent::TraceLookup { .. } => (view == View::Send).then_some(NOW),
            MonitorEvent::Burst(_) => (view == View::Send).then_some(TABLE),
            // A directory answer is drawn on the Directory view only (the user is waiting for it).
            MonitorEvent::Directory(_) => (view == View::Directory).then_some(NOW),
            // Drawn on the Nodes view (the counts under the table).
            MonitorEvent::Discovery(_) => (view == View::Nodes).then_some(GLANCE),
            MonitorEvent::Node { hub_url, event } => self.node(view, hub_url, event, now_ms),
        }
    }

    fn node(&mut self, view: View, hub_url: &str, event: &NodeEvent, now_ms: u64) -> Option<Duration> {
        let seen = self.nodes.entry(hub_url.to_string()).or_default();
        match event {
            NodeEvent::State(state) => {
                // Down (or back, with stats to come): either way no longer silent-but-connected.
                seen.stats_seen_ms = None;
                let kind = std::mem::discriminant(state);
                let before = seen.state.replace(kind);
                Some(if before == Some(kind) { GLANCE } else { NOW })
            }
            NodeEvent::ProbeConnected { .. } | NodeEvent::Trusted(_) | NodeEvent::NeedsToken(_) => Some(NOW),
            NodeEvent::ProbeReceived { .. } => Some(if view == View::Send { NOW } else { TABLE }),
            NodeEvent::Rtt(rtt) => {
                // Shown on the Nodes view only, to 0.1 ms below 10 ms and to 1 ms above.
                let us = rtt.as_micros();
                let shown = if us < 10_000 { us / 100 } else { us / 1000 * 10 };
                let changed = seen.rtt_shown != Some(shown);
                seen.rtt_shown = Some(shown);
                (changed && view == View::Nodes).then_some(COUNTERS)
            }
            NodeEvent::Stats(stats) => {
                seen.stats_seen_ms = Some(now_ms);
                seen.stale_told = false;
                let drawn = Drawn::of(stats);
                let before = std::mem::replace(&mut seen.drawn, drawn);
                let now = &seen.drawn;
                if before.counters != now.counters {
                    seen.counters_moved_ms = now_ms;
                }
                let settling = now_ms < seen.counters_moved_ms + RATE_SETTLE.as_millis() as u64;
                match view {
                    View::Nodes if before != *now || settling => Some(COUNTERS),
                    // Elsewhere a node shows its clients and its backplane state.
                    _ if before.clients != now.clients || before.backplane != now.backplane => Some(GLANCE),
                    _ => None,
                }
            }
        }
    }

    /// Whether a node's stats have stopped for longer than [`DEFAULT_STATS_STALE`] since the
    /// window was last told: true once per silence, so the window is woken to show it stale.
    pub fn stale_due(&mut self, now_ms: u64) -> bool {
        let limit = DEFAULT_STATS_STALE.as_millis() as u64;
        let mut due = false;
        for seen in self.nodes.values_mut() {
            if let Some(at) = seen.stats_seen_ms
                && !seen.stale_told
                && now_ms > at + limit
            {
                seen.stale_told = true;
                due = true;
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::model::TrafficEntry;

    fn stats(clients: u64, client_out: u64, uptime: f64) -> MonitorEvent {
        let mut s = NodeStats::default();
        s.connections.total = clients;
        s.messages.client_out = client_out;
        s.uptime_s = uptime;
        s.now_ms = (uptime * 1000.0) as u64;
        MonitorEvent::Node {
            hub_url: "http://a/chat".into(),
            event: NodeEvent::Stats(s),
        }
    }

    fn showing(view: View) -> Showing {
        Showing {
            view,
            ..Showing::default()
        }
    }

    #[test]
    fn a_health_round_wakes_only_the_health_view() {
        let mut p = WakePolicy::default();
        let round = MonitorEvent::HealthRound(crate::monitor::HealthRound::default());
        assert_eq!(
            p.wake_for(showing(View::Health), std::slice::from_ref(&round), 1_000),
            Some(GLANCE)
        );
        assert_eq!(p.wake_for(showing(View::Traffic), &[round], 1_000), None);
    }

    #[test]
    fn showing_survives_its_bits() {
        for view in [
            View::Traffic,
            View::Rates,
            View::Nodes,
            View::Send,
            View::Topology,
            View::Redis,
            View::Health,
        ] {
            for frozen in [false, true] {
                for presenter in [false, true] {
                    let s = Showing {
                        view,
                        table_frozen: frozen,
                        presenter,
                    };
                    assert_eq!(Showing::from_bits(s.to_bits()), s);
                }
            }
        }
    }

    #[test]
    fn a_stats_snapshot_that_only_moved_the_clock_wakes_nobody() {
        let mut p = WakePolicy::default();
        assert_eq!(
            p.wake_for(showing(View::Nodes), &[stats(3, 10, 1.0)], 1_000),
            Some(COUNTERS)
        );
        // Counters settle for a while after they last moved: the windowed rate is still falling.
        assert_eq!(
            p.wake_for(showing(View::Nodes), &[stats(3, 10, 1.5)], 1_500),
            Some(COUNTERS)
        );
        let settled = 1_000 + RATE_SETTLE.as_millis() as u64;
        assert_eq!(
            p.wake_for(showing(View::Nodes), &[stats(3, 10, 9.0)], settled),
            None
        );
        assert_eq!(
            p.wake_for(showing(View::Traffic), &[stats(3, 10, 9.5)], settled + 500),
            None
        );
    }

    #[test]
    fn outside_the_nodes_view_only_clients_and_backplane_state_matter() {
        let mut p = WakePolicy::default();
        p.wake_for(showing(View::Traffic), &[stats(3, 10, 1.0)], 1_000);
        assert_eq!(
            p.wake_for(showing(View::Traffic), &[stats(3, 99, 1.5)], 1_500),
            None
        );
        assert_eq!(
            p.wake_for(showing(View::Traffic), &[stats(4, 99, 2.0)], 2_000),
            Some(GLANCE)
        );
        assert_eq!(
            p.wake_for(showing(View::Nodes), &[stats(4, 120, 2.5)], 2_500),
            Some(COUNTERS)
        );
    }

    #[test]
    fn traffic_wakes_the_table_fast_and_the_rest_at_a_glance() {
        let mut p = WakePolicy::default();
        let traffic = [MonitorEvent::Traffic(vec![TrafficEntry::new(
            0,
            "c",
            crate::monitor::model::EntryKind::All,
            vec![],
        )])];
        assert_eq!(
            p.wake_for(showing(View::Traffic), &traffic, 1_200),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            p.wake_for(showing(View::Traffic), &traffic, 1_490),
            Some(Duration::from_millis(510))
        );
        assert_eq!(p.wake_for(showing(View::Topology), &traffic, 0), Some(PULSES));
        assert_eq!(p.wake_for(showing(View::Rates), &traffic, 0), Some(GLANCE));
        let frozen = Showing {
            table_frozen: true,
            ..showing(View::Traffic)
        };
        assert_eq!(p.wake_for(frozen, &traffic, 0), Some(GLANCE));
        assert_eq!(
            p.wake_for(showing(View::Traffic), &[MonitorEvent::Traffic(vec![])], 0),
            None
        );
    }

    #[test]
    fn state_changes_wake_at_once_and_the_soonest_wins() {
        let mut p = WakePolicy::default();
        let events = [
            MonitorEvent::Traffic(vec![TrafficEntry::new(
                0,
                "c",
                crate::monitor::model::EntryKind::All,
                vec![],
            )]),
            MonitorEvent::Node {
                hub_url: "http://a/chat".into(),
                event: NodeEvent::State(crate::monitor::LinkState::Connected),
            },
        ];
        assert_eq!(p.wake_for(showing(View::Rates), &events, 0), Some(NOW));
    }

    #[test]
    fn a_heartbeat_is_news_only_from_a_new_node_or_with_a_new_client_count() {
        let mut p = WakePolicy::default();
        let beat = |n: u64| {
            MonitorEvent::Announced(crate::monitor::Announcement {
                hub_url: "http://a/chat".into(),
                connections: n,
                ..Default::default()
            })
        };
        assert_eq!(p.wake_for(showing(View::Nodes), &[beat(2)], 0), Some(NOW));
        assert_eq!(p.wake_for(showing(View::Nodes), &[beat(2)], 2_000), None);
        assert_eq!(p.wake_for(showing(View::Nodes), &[beat(3)], 4_000), Some(GLANCE));
    }

    #[test]
    fn a_node_whose_stats_stop_is_due_once_and_a_down_node_not_at_all() {
        let mut p = WakePolicy::default();
        let limit = DEFAULT_STATS_STALE.as_millis() as u64;
        p.wake_for(showing(View::Traffic), &[stats(1, 1, 1.0)], 1_000);
        assert!(!p.stale_due(1_000 + limit));
        assert!(p.stale_due(1_001 + limit));
        assert!(!p.stale_due(9_000), "told once per silence");
        p.wake_for(showing(View::Traffic), &[stats(1, 1, 9.0)], 9_000);
        assert!(p.stale_due(9_001 + limit), "a new silence is told again");
        p.wake_for(showing(View::Traffic), &[stats(1, 1, 20.0)], 20_000);
        let down = MonitorEvent::Node {
            hub_url: "http://a/chat".into(),
            event: NodeEvent::State(crate::monitor::LinkState::Connecting),
        };
        p.wake_for(showing(View::Traffic), &[down], 20_100);
        assert!(!p.stale_due(30_000), "a node that is down is not stale");
    }

    #[test]
    fn a_link_going_down_wakes_at_once_and_its_next_attempts_at_a_glance() {
        use crate::monitor::LinkState;
        let mut p = WakePolicy::default();
        let attempt = |n: u32| LinkState::Reconnecting {
            attempt: n,
            retry_at_ms: 0,
            error: "refused".into(),
        };
        let tap = |state: LinkState| MonitorEvent::Tap { state, at_ms: 0 };
        let node = |state: LinkState| MonitorEvent::Node {
            hub_url: "http://a/chat".into(),
            event: NodeEvent::State(state),
        };
        let v = showing(View::Traffic);
        assert_eq!(p.wake_for(v, &[tap(LinkState::Connected)], 0), Some(NOW));
        assert_eq!(p.wake_for(v, &[tap(attempt(1))], 0), Some(NOW));
        assert_eq!(p.wake_for(v, &[tap(attempt(2))], 0), Some(GLANCE));
        assert_eq!(p.wake_for(v, &[tap(LinkState::Connected)], 0), Some(NOW));
        assert_eq!(p.wake_for(v, &[node(attempt(1))], 0), Some(NOW));
        assert_eq!(p.wake_for(v, &[node(attempt(2))], 0), Some(GLANCE));
    }

    #[test]
    fn an_unchanged_census_wakes_nobody() {
        let mut p = WakePolicy::default();
        let census = MonitorEvent::Census {
            at_ms: 1,
            hubs: vec![],
        };
        assert_eq!(
            p.wake_for(showing(View::Traffic), std::slice::from_ref(&census), 0),
            Some(GLANCE)
        );
        let again = MonitorEvent::Census {
            at_ms: 2,
            hubs: vec![],
        };
        assert_eq!(p.wake_for(showing(View::Traffic), &[again], 0), None);
    }

    #[test]
    fn rtt_wakes_only_the_nodes_view_and_only_when_what_is_shown_changes() {
        let mut p = WakePolicy::default();
        let rtt = |us: u64| MonitorEvent::Node {
            hub_url: "http://a/chat".into(),
            event: NodeEvent::Rtt(Duration::from_micros(us)),
        };
        assert_eq!(p.wake_for(showing(View::Nodes), &[rtt(1_200)], 0), Some(COUNTERS));
        assert_eq!(p.wake_for(showing(View::Nodes), &[rtt(1_240)], 0), None);
        assert_eq!(p.wake_for(showing(View::Nodes), &[rtt(1_700)], 0), Some(COUNTERS));
        assert_eq!(
            p.wake_for(showing(View::Nodes), &[rtt(25_200)], 0),
            Some(COUNTERS)
        );
        assert_eq!(p.wake_for(showing(View::Nodes), &[rtt(25_700)], 0), None);
        assert_eq!(p.wake_for(showing(View::Traffic), &[rtt(2_100)], 0), None);
    }
}
