//! The result of a `load` run: one serde document (what `--json` prints, and what the benchmarks
//! and tests read back) and its human-readable form. A figure that was not measured is `None`:
//! `null` in JSON and `–` (U+2013) in the text, never a zero that looks like a result; what the
//! run could not measure is listed in [`LoadReport::shortfalls`] (and makes the exit code 1).

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;

/// Latency percentiles of one class of deliveries, in milliseconds; `None` without a sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Deliveries measured.
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    /// Percentiles of `h` (all `None` when it is empty).
    pub fn of(h: &Histogram) -> Latency {
        let count = h.count();
        let ms = |us: Option<u64>| us.filter(|_| count > 0).map(|us| us as f64 / 1000.0);
        Latency {
            count,
            p50_ms: ms(h.quantile(0.5)),
            p99_ms: ms(h.quantile(0.99)),
            p999_ms: ms(h.quantile(0.999)),
            max_ms: ms(Some(h.max())),
        }
    }
}

/// A figure in milliseconds with `decimals`, or `–` when it was not measured.
pub fn millis(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "\u{2013}".to_string(),
    }
}

/// Everything a run measured. Counts are exact; rates are per second of the phase they belong to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The hub URLs, as given.
    pub nodes: Vec<String>,
    /// `json` or `messagepack`.
    pub protocol: String,
    /// Whether clients negotiated before opening the WebSocket.
    pub negotiate: bool,
    /// Clients asked for.
    pub clients: usize,
    /// Clients that completed the handshake.
    pub connected: usize,
    /// Clients that could not connect (see `first_connect_error`).
    pub connect_failures: usize,
    /// The first connect error, for the operator.
    pub first_connect_error: Option<String>,
    /// Wall time of the connect phase.
    pub connect_seconds: f64,
    /// Handshakes completed per second of the connect phase.
    pub connects_per_s: f64,
    /// Clients sending (each broadcasts to every client).
    pub senders: usize,
    /// The target, in deliveries per second (one broadcast = one delivery per connected client).
    pub target_deliveries_per_s: f64,
    /// Length of the sending phase.
    pub duration_s: f64,
    /// Broadcasts sent (written to the socket).
    pub sent: u64,
    /// `sent` × connected clients: every client, the sender included, should get every broadcast.
    pub expected_deliveries: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Expected deliveries that never arrived (by the end of the drain).
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Deliveries that arrived after a later message of the same sender (per receiver).
    pub order_violations: u64,
    /// Messages of the receive method that this run did not send (other runs, other users).
    pub foreign: u64,
    /// Clients whose connection ended before the run did.
    pub disconnected_early: u64,
    /// Broadcasts per second of the sending phase.
    pub achieved_sends_per_s: f64,
    /// Deliveries per second, from the start of sending to the end of the drain.
    pub achieved_deliveries_per_s: f64,
    /// Receiver on another node than the sender.
    pub cross_node: Latency,
    /// Receiver on the sender's node (the sender itself included).
    pub same_node: Latency,
    /// What the run was asked to measure and could not (a client that did not connect, a path
    /// with no sample); empty when it measured everything. Not empty: exit code 1.
    #[serde(default)]
    pub shortfalls: Vec<String>,
}

impl LoadReport {
    /// The summary printed without `--json`.
    pub fn text(&self) -> String {
        let mut out = format!(
            "switchboard load: {} node(s), {} clients ({}, {}), {} sender(s), target {:.0} deliveries/s for {:.1} s\n",
            self.nodes.len(),
            self.clients,
            self.protocol,
            if self.negotiate {
                "negotiate"
            } else {
                "no negotiate"
            },
            self.senders,
            self.target_deliveries_per_s,
            self.duration_s,
        );
        out += &format!(
            "connect:  {}/{} in {:.2} s -> {:.0} connects/s ({} failed{})\n",
            self.connected,
            self.clients,
            self.connect_seconds,
            self.connects_per_s,
            self.connect_failures,
            self.first_connect_error
                .as_deref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default(),
        );
        out += &format!(
            "sent:     {} broadcasts -> {:.1}/s; delivered {}/{} -> {:.0} deliveries/s\n",
            self.sent,
            self.achieved_sends_per_s,
            self.delivered,
            self.expected_deliveries,
            self.achieved_deliveries_per_s,
        );
        out += &format!(
            "errors:   lost {} · duplicates {} · order violations {} · foreign {} · disconnected early {}\n",
            self.lost, self.duplicates, self.order_violations, self.foreign, self.disconnected_early,
        );
        out += "latency (ms)      count      p50      p99    p99.9      max\n";
        for (name, l) in [("cross-node", &self.cross_node), ("same-node", &self.same_node)] {
            out += &format!(
                "  {name:<12} {:>9} {:>8} {:>8} {:>8} {:>8}\n",
                l.count,
                millis(l.p50_ms, 3),
                millis(l.p99_ms, 3),
                millis(l.p999_ms, 3),
                millis(l.max_ms, 3)
            );
        }
        for s in &self.shortfalls {
            out += &format!("NOT MEASURED: {s}\n");
        }
        out
    }

    /// What a run with these figures was asked to measure and could not: every client connected
    /// and stayed; with broadcasts asked for (a rate, a sender), a same-node sample, and with two
    /// or more nodes a cross-node one.
    pub fn find_shortfalls(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.connect_failures > 0 {
            out.push(format!(
                "{} of {} client(s) could not connect{}",
                self.connect_failures,
                self.clients,
                self.first_connect_error
                    .as_deref()
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            ));
        }
        if self.disconnected_early > 0 {
            out.push(format!(
                "{} client(s) disconnected before the end of the run",
                self.disconnected_early
            ));
        }
        let sending = self.target_deliveries_per_s > 0.0 && self.senders > 0;
        if sending && self.same_node.count == 0 {
            out.push("no same-node delivery was measured".to_string());
        }
        if sending && self.nodes.len() >= 2 && self.cross_node.count == 0 {
            out.push(
                "no cross-node delivery was measured (is every node up and on the same backplane?)"
                    .to_string(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_figures_are_a_dash_and_null_and_a_shortfall() {
        let mut report = LoadReport {
            nodes: vec!["http://a/chat".into(), "http://b/chat".into()],
            clients: 4,
            connected: 2,
            connect_failures: 2,
            first_connect_error: Some("refused".into()),
            senders: 1,
            target_deliveries_per_s: 100.0,
            same_node: Latency::of(&Histogram::default()),
            cross_node: Latency::of(&Histogram::default()),
            ..LoadReport::default()
        };
        report.shortfalls = report.find_shortfalls();
        assert_eq!(report.shortfalls.len(), 3, "{:?}", report.shortfalls);
        let text = report.text();
        assert!(text.contains("\u{2013}"), "{text}");
        assert!(!text.contains("0.000"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["cross_node"]["p50_ms"].is_null());
        assert!(json["same_node"]["max_ms"].is_null());
        // Idle clients are asked for connections only.
        report.target_deliveries_per_s = 0.0;
        report.connect_failures = 0;
        assert!(report.find_shortfalls().is_empty());
    }
}
