//! `GET /metrics`: the node's counters in the Prometheus text exposition format (version 0.0.4),
//! named by the Prometheus conventions: a `switchboard_` prefix, `_total` on counters, base units
//! (seconds), `# HELP` and `# TYPE` on every family, and labels for the dimensions of one quantity
//! (connections by protocol, the backplane link by state).
//!
//! The same numbers as `/switchboard/stats` (`status::document`), read straight from the atomic
//! counters and the registry's three map sizes: a scrape takes the registry's read lock for three
//! `len()`s, walks no connection, and writes into one preallocated `String`. Nothing here is per
//! connection, so a scrape costs the same on an idle node and on one holding 19,000 clients.
//!
//! Guarded like every monitor endpoint (`access`). Used by `listener` (the route table) only.

use std::fmt::Write;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::NodeShared;
use super::stats::Stats;
use crate::backplane::BackplaneState;

/// The exposition format's content type (Prometheus' text format 0.0.4).
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Room for the whole exposition (~5 KiB today), so a scrape allocates once.
const INITIAL_CAPACITY: usize = 8 * 1024;

/// Every backplane state, in the order they are exposed (one `switchboard_backplane_state` series
/// each, so an alert can match `state="reconnecting"` without knowing the others).
const STATES: [&str; 5] = ["memory", "connecting", "connected", "reconnecting", "stopped"];

pub(crate) async fn handler(State(node): State<Arc<NodeShared>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&node)).into_response()
}

/// The whole exposition for one scrape.
pub(crate) fn render(node: &NodeShared) -> String {
    let s = &node.stats;
    let (_, groups, users) = node.registry.counts();
    let backplane = node.lifetime.backplane();
    let status_rx = backplane.status();
    let status = status_rx.borrow();
    let state = match status.state {
        BackplaneState::Memory => "memory",
        BackplaneState::Connecting => "connecting",
        BackplaneState::Connected => "connected",
        BackplaneState::Reconnecting { .. } => "reconnecting",
        BackplaneState::Stopped => "stopped",
    };
    let mut m = Exposition(String::with_capacity(INITIAL_CAPACITY));

    m.family(
        "switchboard_node_info",
        "gauge",
        "Always 1; the labels name this node.",
    );
    m.0.push_str("switchboard_node_info{node=\"");
    escape_label(&mut m.0, &node.config.node_name);
    m.0.push_str("\",server=\"");
    escape_label(&mut m.0, &node.server_name);
    m.0.push_str("\",hub=\"");
    escape_label(&mut m.0, &node.config.hub_name);
    m.0.push_str("\",channel_prefix=\"");
    escape_label(&mut m.0, &node.config.channel_prefix);
    m.0.push_str("\",backplane=\"");
    escape_label(&mut m.0, backplane.kind());
    m.0.push_str("\",version=\"");
    escape_label(&mut m.0, env!("CARGO_PKG_VERSION"));
    m.0.push_str("\"} 1\n");
    let started = node
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    m.family(
        "switchboard_start_time_seconds",
        "gauge",
        "When the node started, in seconds since the Unix epoch.",
    );
    let _ = writeln!(m.0, "switchboard_start_time_seconds {started:.3}");

    m.family(
        "switchboard_connections",
        "gauge",
        "Live client connections (handshake done), by hub protocol.",
    );
    m.labelled(
        "switchboard_connections",
        "protocol",
        "json",
        Stats::get(&s.connections_json),
    );
    m.labelled(
        "switchboard_connections",
        "protocol",
        "messagepack",
        Stats::get(&s.connections_messagepack),
    );
    m.counter(
        "switchboard_connections_accepted_total",
        "WebSocket upgrades accepted since start.",
        Stats::get(&s.connections_accepted),
    );
    m.counter(
        "switchboard_connections_refused_total",
        "TCP connections closed at once because the node was at its connection cap.",
        Stats::get(&s.refused_connections),
    );
    let leaks = super::uring::leaks();
    m.counter(
        "switchboard_io_uring_abandoned_rings_total",
        "io_uring rings abandoned (with their buffers, deliberately leaked) because a batch could not be proven finished; after 4 the node stops using io_uring.",
        leaks.rings,
    );
    m.counter(
        "switchboard_io_uring_leaked_bytes_total",
        "Bytes of frames and write descriptors leaked with abandoned io_uring rings, so the kernel never reads freed memory.",
        leaks.bytes,
    );
    m.counter(
        "switchboard_connections_refused_per_ip_total",
        "TCP connections closed at once because their IP address was at the per-IP cap (--max-connections-per-ip).",
        Stats::get(&s.refused_per_ip),
    );
    m.counter(
        "switchboard_invocations_rate_limited_total",
        "Invocations refused with a HubException because their connection was past --max-invocations-per-second.",
        Stats::get(&s.invocations_limited),
    );
    m.counter(
        "switchboard_connections_rejected_total",
        "Negotiate requests refused with 503 (too many pending negotiations).",
        Stats::get(&s.rejected_connections),
    );
    m.gauge(
        "switchboard_open_sockets",
        "Open TCP connections (HTTP, WebSocket, idle), the number the connection cap applies to.",
        node.live.load(std::sync::atomic::Ordering::Relaxed) as u64,
    );
    m.gauge(
        "switchboard_max_connections",
        "The connection cap (--max-connections).",
        node.config.max_connections as u64,
    );
    m.gauge(
        "switchboard_groups",
        "Groups with at least one local member.",
        groups as u64,
    );
    m.gauge(
        "switchboard_users",
        "Users with at least one local connection.",
        users as u64,
    );

    m.counter(
        "switchboard_client_messages_received_total",
        "Hub messages received from clients (invocations, pings, ...).",
        Stats::get(&s.client_in),
    );
    m.counter(
        "switchboard_client_messages_sent_total",
        "Hub messages queued for clients.",
        Stats::get(&s.client_out),
    );
    m.counter(
        "switchboard_client_write_syscalls_total",
        "System calls that wrote to plain-TCP client sockets (one io_uring submission covers many sockets).",
        Stats::get(&s.client_writes),
    );
    m.counter(
        "switchboard_backplane_messages_received_total",
        "Messages received from the backplane and handled.",
        Stats::get(&s.backplane_in),
    );
    m.counter(
        "switchboard_backplane_messages_published_total",
        "Messages published to the backplane.",
        Stats::get(&s.backplane_out),
    );
    m.counter(
        "switchboard_backplane_messages_shed_total",
        "Backplane messages dropped because the node's bounded inbox was full: local clients missed them.",
        backplane.inbox_dropped(),
    );
    m.counter(
        "switchboard_backplane_control_dropped_total",
        "Group commands, acks and client results dropped because the node's control inbox was full (only a flood from other nodes fills it).",
        node.lifetime.control_dropped(),
    );
    m.counter(
        "switchboard_backplane_subscription_gaps_total",
        "Sharded subscriptions lost while the link stayed up (a slot moved) and taken again: messages in between were missed.",
        backplane.subscription_gaps(),
    );
    m.counter(
        "switchboard_backplane_decode_errors_total",
        "Backplane payloads that could not be decoded (dropped).",
        Stats::get(&s.backplane_decode_errors),
    );
    m.gauge(
        "switchboard_backplane_up",
        "1 when the backplane link is up (connected, or the in-memory bus), else 0.",
        u64::from(status.state.is_up()),
    );
    m.family(
        "switchboard_backplane_state",
        "gauge",
        "1 for the backplane link's current state, 0 for the others.",
    );
    for name in STATES {
        m.labelled(
            "switchboard_backplane_state",
            "state",
            name,
            u64::from(name == state),
        );
    }
    m.counter(
        "switchboard_backplane_connects_total",
        "How many times the backplane link was (re)established.",
        status.connects,
    );
    m.counter(
        "switchboard_forward_failures_total",
        "Publishes that failed (backplane down or an error): other nodes missed these messages.",
        Stats::get(&s.forward_failures),
    );
    m.counter(
        "switchboard_forward_unreached_total",
        "Messages for one remote connection that Redis accepted but no node had subscribed.",
        Stats::get(&s.forward_unreached),
    );
    m.counter(
        "switchboard_slow_client_disconnects_total",
        "Clients disconnected because their outbound queue was full.",
        Stats::get(&s.slow_client_disconnects),
    );
    m.counter(
        "switchboard_protocol_errors_total",
        "Connections closed for a protocol error (bad frame, too large, bad handshake).",
        Stats::get(&s.protocol_errors),
    );
    m.counter(
        "switchboard_group_ack_timeouts_total",
        "Remote group operations no server acknowledged in time.",
        Stats::get(&s.group_ack_timeouts),
    );
    m.counter(
        "switchboard_remote_group_refusals_total",
        "Remote AddToGroup commands refused because the connection was in too many groups (not acknowledged).",
        Stats::get(&s.remote_group_refusals),
    );
    m.0
}

/// One exposition under construction. Writing into a `String` cannot fail, so `write!`'s result
/// is ignored.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One series with one label (the value is one of our own constants: nothing to escape).
    fn labelled(&mut self, name: &str, label: &str, value_of_label: &str, value: u64) {
        let _ = writeln!(self.0, "{name}{{{label}=\"{value_of_label}\"}} {value}");
    }
}

/// Appends a label value escaped as the text format requires (`\`, `"` and line feeds).
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label(&mut out, "a\"b\\c\nd é");
        assert_eq!(out, "a\\\"b\\\\c\\nd é");
    }

    #[test]
    fn families_carry_help_and_type_and_counters_end_in_total() {
        let mut m = Exposition(String::new());
        m.counter("x_total", "Things.", 3);
        m.gauge("y", "Level.", 1);
        assert_eq!(
            m.0,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
             # HELP y Level.\n# TYPE y gauge\ny 1\n"
        );
    }
}
