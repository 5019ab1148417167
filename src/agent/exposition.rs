//! The agent's `/metrics`: a [`Snapshot`] of plain figures (taken from the model, the canary and
//! the latest health evaluation by the agent's loop) written in the Prometheus text exposition
//! format 0.0.4, the way the node writes its own (`hub::metrics`): `# HELP` and `# TYPE` on every
//! family, `_total` on counters, seconds and bytes, label values escaped.
//!
//! The names are a contract (deploy/prometheus/alerts.yml and the Grafana dashboard are written
//! against them): change none without changing those. Pure: std only; called by `agent::run`.

use std::fmt::Write;

use super::canary::{BUCKETS, PairStats};

/// The exposition format's content type (Prometheus' text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `le` label of each of [`BUCKETS`], written once (no float formatting per scrape).
const BUCKET_LABELS: [&str; BUCKETS.len()] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
];

/// One node as the series show it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeFigures {
    /// The name the model shows (server name from stats or heartbeat, else host:port).
    pub name: String,
    /// The probe link is connected.
    pub up: bool,
    /// The node's own stats say its backplane is connected (`None`: unknown, no current stats).
    pub backplane_up: Option<bool>,
}

/// One hub of the latest census.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CensusFigures {
    pub hub: String,
    pub connections: u64,
    pub users: u64,
    pub groups: u64,
    pub servers: u64,
}

/// Tap traffic of one (hub, kind).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TapFigures {
    pub hub: String,
    pub kind: String,
    pub messages: u64,
    pub bytes: u64,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub version: String,
    /// (from name, to name, figures), in a stable order.
    pub canary: Vec<(String, String, PairStats)>,
    /// Active findings as (rule, severity, subject), without repeats.
    pub findings: Vec<(String, String, String)>,
    /// Active findings per severity: (critical, warning, info).
    pub finding_counts: (usize, usize, usize),
    pub nodes: Vec<NodeFigures>,
    /// The agent's tap link to Redis is connected (subscribed).
    pub redis_up: bool,
    pub tap: Vec<TapFigures>,
    pub tap_gaps: u64,
    pub census: Vec<CensusFigures>,
    /// (client name or address, output buffer bytes).
    pub buffers: Vec<(String, u64)>,
    /// The pub/sub hard output-buffer limit, when known (0: no limit).
    pub buffer_limit: Option<u64>,
    pub failovers: u64,
}

/// Room for a typical exposition, so a scrape allocates once or twice.
const INITIAL_CAPACITY: usize = 16 * 1024;

/// The whole exposition for one scrape.
pub fn render(s: &Snapshot) -> String {
    let mut m = Exposition(String::with_capacity(INITIAL_CAPACITY));

    m.family(
        "switchboard_agent_info",
        "gauge",
        "Always 1; the label names the agent's version.",
    );
    m.sample("switchboard_agent_info", &[("version", &s.version)], 1);

    let h = "switchboard_canary_delivery_seconds";
    m.family(
        h,
        "histogram",
        "Time from handing a canary to node `from` to its receipt by the probe client of node `to`.",
    );
    for (from, to, p) in &s.canary {
        let mut cumulative = 0;
        for (i, le) in BUCKET_LABELS.iter().enumerate() {
            cumulative += p.buckets[i];
            m.sample(
                "switchboard_canary_delivery_seconds_bucket",
                &[("from", from), ("to", to), ("le", le)],
                cumulative,
            );
        }
        m.sample(
            "switchboard_canary_delivery_seconds_bucket",
            &[("from", from), ("to", to), ("le", "+Inf")],
            p.count,
        );
        m.start(
            "switchboard_canary_delivery_seconds_sum",
            &[("from", from), ("to", to)],
        );
        let _ = writeln!(m.0, " {}", p.sum_secs);
        m.sample(
            "switchboard_canary_delivery_seconds_count",
            &[("from", from), ("to", to)],
            p.count,
        );
    }
    m.family(
        "switchboard_canary_sent_total",
        "counter",
        "Canaries sent through node `from` that node `to` should receive (a send the node refused counts too).",
    );
    for (from, to, p) in &s.canary {
        m.sample(
            "switchboard_canary_sent_total",
            &[("from", from), ("to", to)],
            p.sent,
        );
    }
    m.family(
        "switchboard_canary_lost_total",
        "counter",
        "Canaries sent through node `from` and not received by node `to` within the canary timeout.",
    );
    for (from, to, p) in &s.canary {
        m.sample(
            "switchboard_canary_lost_total",
            &[("from", from), ("to", to)],
            p.lost,
        );
    }
    m.family(
        "switchboard_canary_last_success_timestamp_seconds",
        "gauge",
        "When node `to` last received a canary sent through node `from`, in seconds since the Unix epoch.",
    );
    for (from, to, p) in &s.canary {
        if let Some(at_ms) = p.last_success_ms {
            m.start(
                "switchboard_canary_last_success_timestamp_seconds",
                &[("from", from), ("to", to)],
            );
            let _ = writeln!(m.0, " {}.{:03}", at_ms / 1000, at_ms % 1000);
        }
    }

    m.family(
        "switchboard_finding",
        "gauge",
        "1 while a health finding is active (the dashboard's Health tab); the series disappears with the finding.",
    );
    for (rule, severity, subject) in &s.findings {
        m.sample(
            "switchboard_finding",
            &[("rule", rule), ("severity", severity), ("subject", subject)],
            1,
        );
    }
    m.family(
        "switchboard_findings",
        "gauge",
        "Active health findings by severity.",
    );
    let (critical, warning, info) = s.finding_counts;
    for (severity, n) in [("critical", critical), ("warning", warning), ("info", info)] {
        m.sample("switchboard_findings", &[("severity", severity)], n as u64);
    }

    m.family(
        "switchboard_node_up",
        "gauge",
        "1 while the agent's probe link to the node is connected.",
    );
    for n in &s.nodes {
        m.sample("switchboard_node_up", &[("node", &n.name)], u64::from(n.up));
    }
    m.family(
        "switchboard_node_backplane_up",
        "gauge",
        "1 while the node's own stats say its backplane link is connected; absent while unknown.",
    );
    for n in &s.nodes {
        if let Some(up) = n.backplane_up {
            m.sample(
                "switchboard_node_backplane_up",
                &[("node", &n.name)],
                u64::from(up),
            );
        }
    }

    m.family(
        "switchboard_redis_up",
        "gauge",
        "1 while the agent's tap link to Redis is connected.",
    );
    m.sample("switchboard_redis_up", &[], u64::from(s.redis_up));
    m.family(
        "switchboard_tap_up",
        "gauge",
        "1 while the agent's tap is subscribed.",
    );
    m.sample("switchboard_tap_up", &[], u64::from(s.redis_up));
    m.family(
        "switchboard_tap_messages_total",
        "counter",
        "Backplane messages the tap saw, by hub and channel kind.",
    );
    for t in &s.tap {
        m.sample(
            "switchboard_tap_messages_total",
            &[("hub", &t.hub), ("kind", &t.kind)],
            t.messages,
        );
    }
    m.family(
        "switchboard_tap_bytes_total",
        "counter",
        "Payload bytes of the backplane messages the tap saw, by hub and channel kind.",
    );
    for t in &s.tap {
        m.sample(
            "switchboard_tap_bytes_total",
            &[("hub", &t.hub), ("kind", &t.kind)],
            t.bytes,
        );
    }
    m.family(
        "switchboard_tap_gaps_total",
        "counter",
        "Windows in which the tap saw nothing (its link was down, or it fell behind and dropped).",
    );
    m.sample("switchboard_tap_gaps_total", &[], s.tap_gaps);

    for (name, help, get) in CENSUS {
        m.family(name, "gauge", help);
        for c in &s.census {
            m.sample(name, &[("hub", &c.hub)], get(c));
        }
    }

    m.family(
        "switchboard_redis_pubsub_output_buffer_bytes",
        "gauge",
        "Output buffer of each pub/sub client of Redis (CLIENT LIST omem), by client name or address.",
    );
    for (client, bytes) in &s.buffers {
        m.sample(
            "switchboard_redis_pubsub_output_buffer_bytes",
            &[("client", client)],
            *bytes,
        );
    }
    m.family(
        "switchboard_redis_pubsub_output_buffer_limit_bytes",
        "gauge",
        "Redis' client-output-buffer-limit pubsub hard limit (0: none); absent while unknown.",
    );
    if let Some(limit) = s.buffer_limit {
        m.sample("switchboard_redis_pubsub_output_buffer_limit_bytes", &[], limit);
    }
    m.family(
        "switchboard_redis_failovers_total",
        "counter",
        "Failovers the agent saw (a part of Redis whose primary changed between two rounds).",
    );
    m.sample("switchboard_redis_failovers_total", &[], s.failovers);
    m.0
}

type CensusGet = fn(&CensusFigures) -> u64;

/// The census families: name, help, figure.
const CENSUS: [(&str, &str, CensusGet); 4] = [
    (
        "switchboard_census_connections",
        "Client connections on the hub as Redis shows them (one connection channel each, any server).",
        |c| c.connections,
    ),
    (
        "switchboard_census_users",
        "Users with at least one connection on the hub (user channels).",
        |c| c.users,
    ),
    (
        "switchboard_census_groups",
        "Non-empty groups on the hub (group channels).",
        |c| c.groups,
    ),
    (
        "switchboard_census_servers",
        "Servers on the hub (ack channels).",
        |c| c.servers,
    ),
];

/// One exposition under construction. Writing into a `String` cannot fail, so `write!`'s result
/// is ignored.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// `name{labels}` without the value.
    fn start(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.0.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.0.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(label);
            self.0.push_str("=\"");
            escape_label(&mut self.0, value);
            self.0.push('"');
        }
        self.0.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.start(name, labels);
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
pub fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A help text as the text format wants it: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label(&mut out, "a\"b\\c\nd é");
        assert_eq!(out, "a\\\"b\\\\c\\nd é");
        let s = Snapshot {
            nodes: vec![NodeFigures {
                name: "we\"ird\\node\n".into(),
                up: true,
                backplane_up: None,
            }],
            ..Snapshot::default()
        };
        assert!(render(&s).contains("switchboard_node_up{node=\"we\\\"ird\\\\node\\n\"} 1\n"));
    }

    #[test]
    fn the_histogram_is_cumulative_with_inf_sum_and_count() {
        let mut p = PairStats {
            sent: 4,
            lost: 1,
            count: 3,
            sum_secs: 0.5,
            last_success_ms: Some(1_700_000_000_123),
            ..PairStats::default()
        };
        p.buckets[0] = 1;
        p.buckets[5] = 2;
        let s = Snapshot {
            canary: vec![("a".into(), "b".into(), p)],
            ..Snapshot::default()
        };
        let text = render(&s);
        let line = |l: &str| assert!(text.contains(&format!("{l}\n")), "no `{l}` in:\n{text}");
        line("# TYPE switchboard_canary_delivery_seconds histogram");
        line("switchboard_canary_delivery_seconds_bucket{from=\"a\",to=\"b\",le=\"0.005\"} 1");
        line("switchboard_canary_delivery_seconds_bucket{from=\"a\",to=\"b\",le=\"0.1\"} 1");
        line("switchboard_canary_delivery_seconds_bucket{from=\"a\",to=\"b\",le=\"0.25\"} 3");
        line("switchboard_canary_delivery_seconds_bucket{from=\"a\",to=\"b\",le=\"5\"} 3");
        line("switchboard_canary_delivery_seconds_bucket{from=\"a\",to=\"b\",le=\"+Inf\"} 3");
        line("switchboard_canary_delivery_seconds_sum{from=\"a\",to=\"b\"} 0.5");
        line("switchboard_canary_delivery_seconds_count{from=\"a\",to=\"b\"} 3");
        line("switchboard_canary_sent_total{from=\"a\",to=\"b\"} 4");
        line("switchboard_canary_lost_total{from=\"a\",to=\"b\"} 1");
        line("switchboard_canary_last_success_timestamp_seconds{from=\"a\",to=\"b\"} 1700000000.123");
    }

    #[test]
    fn every_family_has_help_and_type_and_every_severity_is_counted() {
        let s = Snapshot {
            version: "1.2.3".into(),
            findings: vec![("node-unreachable".into(), "critical".into(), "b".into())],
            finding_counts: (1, 0, 2),
            redis_up: false,
            buffer_limit: Some(33_554_432),
            ..Snapshot::default()
        };
        let text = render(&s);
        for line in [
            "switchboard_agent_info{version=\"1.2.3\"} 1",
            "switchboard_finding{rule=\"node-unreachable\",severity=\"critical\",subject=\"b\"} 1",
            "switchboard_findings{severity=\"critical\"} 1",
            "switchboard_findings{severity=\"warning\"} 0",
            "switchboard_findings{severity=\"info\"} 2",
            "switchboard_redis_up 0",
            "switchboard_tap_up 0",
            "switchboard_tap_gaps_total 0",
            "switchboard_redis_pubsub_output_buffer_limit_bytes 33554432",
            "switchboard_redis_failovers_total 0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "no `{line}` in:\n{text}");
        }
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                assert!(typed.insert(name.to_string()), "{name} typed twice");
                assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                    .unwrap_or(name);
                assert!(typed.contains(family), "{name} before its # TYPE");
            }
        }
        // Absent while unknown.
        assert!(!text.contains("switchboard_canary_last_success_timestamp_seconds{"));
        assert!(!text.contains("switchboard_node_backplane_up{"));
    }
}
