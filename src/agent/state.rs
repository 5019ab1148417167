//! What the agent's loop holds: the dashboard's [`Model`] folded from the same
//! [`MonitorEvent`]s, the canary's bookkeeping, the tap counters the contract asks for, and the
//! latest health evaluation, made exactly as the dashboard's Health tab makes it
//! (`health::inputs_from_model` + `Evaluation::of`, every [`health::MIN_REFRESH`]) with the
//! agent's own canary results added as deliveries. From these, [`AgentState::snapshot`] gives
//! `/metrics` its figures and [`AgentState::findings_json`] gives `/findings` its document.
//!
//! Logs one line per state change (tap up/down, node up/down, a finding appears or clears),
//! never per reconnect attempt. Every map is bounded: the model's by its limits, the canary's by
//! its caps, the tap counters by [`config::DEFAULT_AGENT_MAX_SERIES`] hubs, the nodes by the
//! runtime's node cap. No I/O and no clock here (`now_ms` comes in); called by `agent::run`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::canary::Canaries;
use super::exposition::{CensusFigures, NodeFigures, Snapshot, TapFigures};
use crate::config;
use crate::monitor::model::health::{self, Evaluation, Severity};
use crate::monitor::model::{EntryKind, Limits, Model};
use crate::monitor::{LinkState, MonitorEvent, NodeEvent};

/// The label tap traffic of hubs past the cap is summed under.
const OTHER: &str = "(other)";

/// The model's limits in the agent: the health rules read at most
/// [`health::MAX_SCAN_ENTRIES`] entries of the ring, so a larger ring (the dashboard keeps
/// 100,000 for browsing) would only cost memory.
fn limits() -> Limits {
    Limits {
        ring_entries: health::MAX_SCAN_ENTRIES,
        ring_bytes: 16 * 1024 * 1024,
        traces: 200,
    }
}

/// Messages and bytes per kind (indexed like `EntryKind::ALL`).
type KindCounts = [(u64, u64); EntryKind::ALL.len()];

/// The agent's state (see the module docs).
#[derive(Debug)]
pub struct AgentState {
    pub model: Model,
    prefix: String,
    canaries: Canaries,
    /// How far back a pair's latest canary result still counts for the health rules.
    canary_window_ms: u64,
    /// Nodes whose probe has been connected at least once: the canary's senders and receivers.
    /// A node that never came up is reported by `switchboard_node_up` and `node-unreachable`.
    participants: BTreeSet<String>,
    tap: HashMap<String, KindCounts>,
    tap_gaps: u64,
    failovers: u64,
    last_redis_at_ms: u64,
    evaluation: Option<Evaluation>,
    next_evaluation_ms: u64,
    /// The active findings' keys, for the appear/clear log lines.
    active: BTreeSet<(String, String, String)>,
    tap_up: Option<bool>,
    node_up: BTreeMap<String, bool>,
}

impl AgentState {
    pub fn new(prefix: &str, interval: std::time::Duration, timeout: std::time::Duration) -> Self {
        let interval_ms = interval.as_millis() as u64;
        let timeout_ms = timeout.as_millis() as u64;
        AgentState {
            model: Model::new(limits()),
            prefix: prefix.to_string(),
            canaries: Canaries::new(
                interval_ms,
                timeout_ms,
                config::DEFAULT_AGENT_MAX_CANARY_PAIRS,
                config::DEFAULT_AGENT_MAX_PENDING_CANARIES,
            ),
            canary_window_ms: 2 * interval_ms + timeout_ms,
            participants: BTreeSet::new(),
            tap: HashMap::new(),
            tap_gaps: 0,
            failovers: 0,
            last_redis_at_ms: 0,
            evaluation: None,
            next_evaluation_ms: 0,
            active: BTreeSet::new(),
            tap_up: None,
            node_up: BTreeMap::new(),
        }
    }

    /// Adds a row for a node named on the command line (the dashboard adds the rows of the nodes
    /// it asks the runtime to watch the same way; discovered nodes get theirs from their
    /// announcement). Without it the node's link states would find no row.
    pub fn watch(&mut self, target: crate::monitor::NodeTarget) {
        self.model.nodes.upsert(target);
    }

    /// Folds one event in: the agent's counters first, then the model.
    pub fn apply(&mut self, event: MonitorEvent, now_ms: u64) {
        match &event {
            MonitorEvent::Traffic(entries) => {
                for e in entries {
                    if e.kind == EntryKind::Gap {
                        self.tap_gaps += 1;
                        continue;
                    }
                    self.count_tap(e.hub.as_deref().unwrap_or(""), e.kind, e.size as u64);
                }
            }
            MonitorEvent::Tap { state, .. } => {
                if *state == LinkState::Connected && self.model.tap.down_since_ms.is_some() {
                    self.tap_gaps += 1;
                }
                if let Some(up) = up_or_down(state)
                    && self.tap_up != Some(up)
                {
                    match (up, state) {
                        (true, _) => tracing::info!("agent: the tap is connected to Redis"),
                        (false, LinkState::Reconnecting { error, .. } | LinkState::Failed { error }) => {
                            tracing::warn!(%error, "agent: the tap lost Redis")
                        }
                        (false, _) => tracing::warn!("agent: the tap lost Redis"),
                    }
                    self.tap_up = Some(up);
                }
            }
            MonitorEvent::Node { hub_url, event } => match event {
                NodeEvent::State(state) => {
                    if *state == LinkState::Connected {
                        self.participants.insert(hub_url.clone());
                    }
                    if let Some(up) = up_or_down(state)
                        && self.node_up.get(hub_url) != Some(&up)
                    {
                        match (up, state) {
                            (true, _) => tracing::info!(node = %hub_url, "agent: node up"),
                            (false, LinkState::Reconnecting { error, .. } | LinkState::Failed { error }) => {
                                tracing::warn!(node = %hub_url, %error, "agent: node down")
                            }
                            (false, _) => tracing::warn!(node = %hub_url, "agent: node down"),
                        }
                        self.node_up.insert(hub_url.clone(), up);
                    }
                }
                NodeEvent::ProbeReceived { trace, at_ms } => {
                    self.canaries.on_received(*trace, hub_url, *at_ms);
                }
                _ => {}
            },
            MonitorEvent::Sent {
                trace, node, at_ms, ..
            } => {
                let to: Vec<String> = self.participants.iter().cloned().collect();
                self.canaries.on_sent(*trace, node, &to, *at_ms);
            }
            MonitorEvent::SendFailed { trace, node, .. } => {
                let to: Vec<String> = self.participants.iter().cloned().collect();
                self.canaries.on_send_failed(*trace, node, &to);
            }
            _ => {}
        }
        let redis_at = match &event {
            MonitorEvent::Redis(snapshot) => Some(snapshot.at_ms),
            _ => None,
        };
        self.model.apply(event, now_ms);
        if let Some(at) = redis_at
            && at > self.last_redis_at_ms
        {
            self.last_redis_at_ms = at;
            self.failovers += self
                .model
                .redis
                .failovers()
                .iter()
                .filter(|f| f.at_ms == at)
                .count() as u64;
        }
    }

    fn count_tap(&mut self, hub: &str, kind: EntryKind, bytes: u64) {
        let slot = EntryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let counts = match self.tap.get_mut(hub) {
            Some(counts) => counts,
            None => {
                let key = if self.tap.len() < config::DEFAULT_AGENT_MAX_SERIES {
                    hub
                } else {
                    OTHER
                };
                self.tap
                    .entry(key.to_string())
                    .or_insert([(0, 0); EntryKind::ALL.len()])
            }
        };
        counts[slot].0 += 1;
        counts[slot].1 += bytes;
    }

    /// Time passes: canaries past their timeout are decided, the model's traces too.
    pub fn tick(&mut self, now_ms: u64) {
        self.canaries.expire(now_ms);
        self.model.tick(now_ms);
    }

    /// The hub URLs to send a canary through now (empty when no round is due).
    pub fn canary_round(&mut self, now_ms: u64) -> Vec<String> {
        if self.participants.is_empty() || !self.canaries.round_due(now_ms) {
            return Vec::new();
        }
        self.participants.iter().cloned().collect()
    }

    /// Re-evaluates the health rules when due (every [`health::MIN_REFRESH`]) and logs the
    /// findings that appeared and cleared.
    pub fn evaluate_if_due(&mut self, now_ms: u64) {
        if now_ms < self.next_evaluation_ms {
            return;
        }
        self.next_evaluation_ms = now_ms + health::MIN_REFRESH.as_millis() as u64;
        let names = self.names();
        let name = |url: &str| names.get(url).cloned().unwrap_or_else(|| url.to_string());
        let mut inputs =
            health::inputs_from_model(&self.model, &self.prefix, health::MODEL_WINDOW_MS, now_ms);
        inputs.deliveries = self
            .canaries
            .recent(now_ms, self.canary_window_ms)
            .into_iter()
            .map(|d| health::Delivery {
                from: name(&d.from),
                to: name(&d.to),
                received_after_ms: d.received_after_ms,
            })
            .collect();
        let evaluation = Evaluation::of(&inputs, self.model.health_round.as_ref());
        let mut now_active = BTreeSet::new();
        for f in &evaluation.findings {
            let key = finding_key(f);
            if !self.active.contains(&key) && !now_active.contains(&key) {
                match f.severity {
                    Severity::Info => tracing::info!(finding = %f.line(), "agent: finding appears"),
                    _ => tracing::warn!(finding = %f.line(), "agent: finding appears"),
                }
            }
            now_active.insert(key);
        }
        for (rule, severity, subject) in self.active.difference(&now_active) {
            tracing::info!(%rule, %severity, %subject, "agent: finding clears");
        }
        self.active = now_active;
        self.evaluation = Some(evaluation);
    }

    /// The name each hub URL is shown under: the model's (server name, else host:port); a name
    /// two nodes share is kept by the first and the other shows its hub URL, so no two series
    /// collide.
    fn names(&self) -> HashMap<String, String> {
        let mut taken = BTreeSet::new();
        self.model
            .nodes
            .rows()
            .iter()
            .map(|r| {
                let url = r.target.hub_url.clone();
                let name = if taken.insert(r.name.clone()) {
                    r.name.clone()
                } else {
                    url.clone()
                };
                (url, name)
            })
            .collect()
    }

    /// The figures of one scrape.
    pub fn snapshot(&self) -> Snapshot {
        let names = self.names();
        let name = |url: &str| names.get(url).cloned().unwrap_or_else(|| url.to_string());
        let mut s = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Snapshot::default()
        };
        s.canary = self
            .canaries
            .pairs()
            .iter()
            .map(|((from, to), p)| (name(from), name(to), p.clone()))
            .collect();
        if let Some(e) = &self.evaluation {
            let keys: BTreeSet<(String, String, String)> = e.findings.iter().map(finding_key).collect();
            s.findings = keys.into_iter().collect();
            let n = |sev: Severity| e.findings.iter().filter(|f| f.severity == sev).count();
            s.finding_counts = (n(Severity::Critical), n(Severity::Warning), n(Severity::Info));
        }
        s.nodes = self
            .model
            .nodes
            .rows()
            .iter()
            .map(|r| {
                let up = r.state == LinkState::Connected;
                NodeFigures {
                    name: name(&r.target.hub_url),
                    up,
                    backplane_up: r
                        .stats
                        .as_ref()
                        .filter(|_| up)
                        .map(|st| matches!(st.backplane.status.state.as_str(), "connected" | "memory")),
                }
            })
            .collect();
        s.redis_up = self.model.tap.state == LinkState::Connected;
        let mut tap: Vec<TapFigures> = Vec::new();
        for (hub, counts) in &self.tap {
            for (i, (messages, bytes)) in counts.iter().enumerate() {
                if *messages > 0 {
                    tap.push(TapFigures {
                        hub: hub.clone(),
                        kind: EntryKind::ALL[i].label().to_string(),
                        messages: *messages,
                        bytes: *bytes,
                    });
                }
            }
        }
        tap.sort_by(|a, b| (&a.hub, &a.kind).cmp(&(&b.hub, &b.kind)));
        s.tap = tap;
        s.tap_gaps = self.tap_gaps;
        if let Some((_, hubs)) = &self.model.census {
            let mut seen = BTreeSet::new();
            s.census = hubs
                .iter()
                .filter(|h| seen.insert(h.hub.clone()))
                .take(config::DEFAULT_AGENT_MAX_SERIES)
                .map(|h| CensusFigures {
                    hub: h.hub.clone(),
                    connections: h.connections,
                    users: h.users,
                    groups: h.groups,
                    servers: h.servers.len() as u64,
                })
                .collect();
        }
        if let Some(view) = self.model.redis.latest() {
            use crate::monitor::model::redis_view::LimitKnowledge;
            let mut buffers: BTreeMap<String, u64> = BTreeMap::new();
            for node in &view.nodes {
                for c in &node.clients {
                    let label = if c.name.is_empty() { &c.addr } else { &c.name };
                    let key =
                        if buffers.len() < config::DEFAULT_AGENT_MAX_SERIES || buffers.contains_key(label) {
                            label.clone()
                        } else {
                            OTHER.to_string()
                        };
                    let slot = buffers.entry(key).or_insert(0);
                    *slot = (*slot).max(c.omem);
                }
                if s.buffer_limit.is_none()
                    && let LimitKnowledge::Known(limit) = &node.limit
                {
                    s.buffer_limit = Some(limit.hard);
                }
            }
            s.buffers = buffers.into_iter().collect();
        }
        s.failovers = self.failovers;
        s
    }

    /// `/findings`: the latest evaluation as JSON (findings with evidence and what to do, the
    /// verdict, when it was made, what it could not check), `null` figures before the first.
    pub fn findings_json(&self, now_ms: u64) -> String {
        let doc = match &self.evaluation {
            Some(e) => serde_json::json!({
                "evaluated_at_ms": e.at_ms,
                "verdict": e.verdict,
                "findings": e.findings,
                "skipped": e.skipped,
                "stale": e.stale_reasons(now_ms),
            }),
            None => serde_json::json!({
                "evaluated_at_ms": null,
                "verdict": null,
                "findings": [],
                "skipped": [],
                "stale": ["not evaluated yet"],
            }),
        };
        doc.to_string()
    }
}

/// `Some(true)` connected, `Some(false)` lost (reconnecting, failed), `None` neither yet.
fn up_or_down(state: &LinkState) -> Option<bool> {
    match state {
        LinkState::Connected => Some(true),
        LinkState::Reconnecting { .. } | LinkState::Failed { .. } => Some(false),
        LinkState::Idle | LinkState::Connecting => None,
    }
}

/// A finding's series labels: rule, severity, and its subject (else its hub, else "").
fn finding_key(f: &health::Finding) -> (String, String, String) {
    (
        f.rule.to_string(),
        f.severity.label().to_string(),
        f.subject.clone().or_else(|| f.hub.clone()).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{NodeTarget, SendTarget};
    use std::time::Duration;

    fn state() -> AgentState {
        AgentState::new("p:", Duration::from_secs(1), Duration::from_secs(5))
    }

    fn node(s: &mut AgentState, url: &str, state: LinkState, at: u64) {
        s.model.nodes.upsert(NodeTarget {
            hub_url: url.into(),
            monitor_url: None,
        });
        s.apply(
            MonitorEvent::Node {
                hub_url: url.into(),
                event: NodeEvent::State(state),
            },
            at,
        );
    }

    #[test]
    fn tap_traffic_is_counted_by_hub_and_kind_and_outages_are_gaps() {
        let mut s = state();
        let e = crate::monitor::decode::decode("p:", "p:H:all", b"hello", 10);
        s.apply(MonitorEvent::Traffic(vec![e.clone(), e]), 10);
        let snap = s.snapshot();
        assert_eq!(snap.tap.len(), 1, "{:?}", snap.tap);
        assert_eq!((snap.tap[0].hub.as_str(), snap.tap[0].messages), ("H", 2));
        for (state, at) in [
            (LinkState::Connected, 20),
            (
                LinkState::Reconnecting {
                    attempt: 1,
                    retry_at_ms: 40,
                    error: "refused".into(),
                },
                30,
            ),
            (LinkState::Connected, 50),
        ] {
            s.apply(MonitorEvent::Tap { state, at_ms: at }, at);
        }
        let snap = s.snapshot();
        assert_eq!((snap.tap_gaps, snap.redis_up), (1, true));
    }

    #[test]
    fn a_dead_participant_is_a_critical_finding_and_its_canaries_are_lost() {
        let mut s = state();
        node(&mut s, "http://a/chat", LinkState::Connected, 1_000);
        node(&mut s, "http://b/chat", LinkState::Connected, 1_000);
        assert_eq!(s.canary_round(1_000).len(), 2);
        s.apply(
            MonitorEvent::Sent {
                trace: 1,
                node: "http://a/chat".into(),
                target: SendTarget::Group("g".into()),
                at_ms: 1_000,
                expected: Vec::new(),
            },
            1_000,
        );
        s.apply(
            MonitorEvent::Node {
                hub_url: "http://a/chat".into(),
                event: NodeEvent::ProbeReceived {
                    trace: 1,
                    at_ms: 1_004,
                },
            },
            1_004,
        );
        node(
            &mut s,
            "http://b/chat",
            LinkState::Reconnecting {
                attempt: 1,
                retry_at_ms: 3_000,
                error: "refused".into(),
            },
            1_500,
        );
        s.tick(7_000);
        s.evaluate_if_due(7_000);
        let snap = s.snapshot();
        let pair = |from: &str, to: &str| {
            snap.canary
                .iter()
                .find(|(f, t, _)| f.contains(from) && t.contains(to))
                .map(|(_, _, p)| (p.count, p.lost))
        };
        assert_eq!(pair("a", "a"), Some((1, 0)));
        assert_eq!(pair("a", "b"), Some((0, 1)));
        assert!(
            snap.findings
                .iter()
                .any(|(rule, sev, _)| rule == "node-unreachable" && sev == "critical"),
            "{:?}",
            snap.findings
        );
        assert!(snap.nodes.iter().any(|n| !n.up));
        let json: serde_json::Value = serde_json::from_str(&s.findings_json(7_000)).expect("findings JSON");
        assert_eq!(json["verdict"], "broken");
    }
}
