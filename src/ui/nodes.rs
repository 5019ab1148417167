//! The nodes panel: one row per hub node (state, round-trip time, clients, groups, message rates,
//! backplane state, a client-count history), the cluster total, and the connection count Redis
//! itself reveals (its channel list, PUBSUB CHANNELS), which also counts nodes without a monitor
//! endpoint.
//!
//! A node that is not live (link down, stopped, or stats older than the stale limit; the rules are
//! in `monitor::model::nodes`) shows "–" for its live values (clients, rates, groups, round trip),
//! its last known ones on hover, and is left out of the totals. The dashboard's own test
//! connection (its probe) is shown apart: "6 + 1 probe". Remove sits beside the node's name, so no
//! width of the other columns pushes it off-screen.

use egui::{RichText, Ui, vec2};

use super::{Action, widgets};
use crate::config::DEFAULT_RATE_WINDOW;
use crate::monitor::MonitorCommand;
use crate::monitor::model::nodes::{Liveness, NodeRow, Nodes};
use crate::monitor::model::{DownKind, Model};

/// Words and colour for a row's state: the link's words while live; "stale" or "down" with when
/// it was last heard from otherwise.
pub fn row_state(row: &NodeRow, now: u64) -> (egui::Color32, String) {
    let (color, words) = widgets::describe(&row.state, now);
    match Nodes::liveness(row, now) {
        Liveness::Live => (color, words),
        Liveness::Stale { last_seen_ms } => (
            widgets::WARN,
            format!("stale: no stats since {}", widgets::clock(last_seen_ms)),
        ),
        Liveness::Down {
            last_seen_ms: Some(t),
        } => (color, format!("down, last seen {} · {words}", widgets::clock(t))),
        Liveness::Down { last_seen_ms: None } => (color, words),
        Liveness::Stopped { since_ms } => (
            widgets::IDLE,
            format!("stopped on purpose at {}", widgets::clock(since_ms)),
        ),
        Liveness::NeedsToken if row.trusted => (
            widgets::WARN,
            "up; needs a token (the dashboard has none)".to_string(),
        ),
        Liveness::NeedsToken => (widgets::OK, "up; needs a token (not trusted)".to_string()),
    }
}

/// "2 / 3", with the nodes stopped on purpose said apart ("1 / 1 · 1 stopped").
pub fn nodes_up_text(nodes: &Nodes, now: u64) -> String {
    let expected = nodes.expected_count(now);
    let stopped = nodes.rows().len() - expected;
    let mut text = format!("{} / {expected}", nodes.up_count(now));
    if stopped > 0 {
        text.push_str(&format!(" · {stopped} stopped"));
    }
    text
}

pub fn show(ui: &mut Ui, model: &Model, now: u64, actions: &mut Vec<Action>) {
    let nodes = &model.nodes;
    ui.horizontal(|ui| {
        let probes = nodes.probes(now);
        // Short captions (a 1024-wide window holds the three), the details on hover.
        widgets::big_number(
            ui,
            "clients on watched nodes",
            &nodes.cluster_total_clients(now).to_string(),
            26.0,
        )
        .on_hover_text(format!(
            "Clients on the watched nodes that answer now, not counting the dashboard's {probes} \
             test connection{} (probe{}) to them",
            if probes == 1 { "" } else { "s" },
            if probes == 1 { "" } else { "s" }
        ));
        let backplane = match model.cluster_connections_redis() {
            Some(n) => n.to_string(),
            None => "–".to_string(),
        };
        // A stale census still shows its last figure, but says so (and when it was taken).
        let stale = match &model.census {
            Some((at, _)) if model.census_stale(now) => format!(" · STALE, from {}", widgets::clock(*at)),
            _ => String::new(),
        };
        widgets::big_number(ui, &format!("connections Redis counts{stale}"), &backplane, 26.0).on_hover_text(
            format!(
                "Every hub connection on the backplane, nodes without a stats endpoint included, \
                 counted from the channels Redis lists (PUBSUB CHANNELS); including the \
                 dashboard's {} test connections (probes)",
                nodes.probe_connections()
            ),
        );
        widgets::big_number(ui, "nodes up", &nodes_up_text(nodes, now), 26.0)
            .on_hover_text("Nodes that answer, of those expected (a node stopped on purpose is said apart)");
    });
    ui.separator();

    egui::ScrollArea::both().show(ui, |ui| {
        egui::Grid::new("nodes_table")
            .striped(true)
            .num_columns(12)
            .spacing([14.0, 6.0])
            .show(ui, |ui| {
                for (title, hover) in [
                    ("node", ""),
                    ("state", ""),
                    ("RTT", "Round-trip time of the dashboard's last request to the node's stats"),
                    (
                        "clients",
                        "Clients connected, without the dashboard's own test connection (its probe, shown as + 1 probe)",
                    ),
                    ("history", ""),
                    ("groups", ""),
                    ("in/s", "Client messages in per second, over the last 5 s"),
                    ("out/s", "Messages out to clients per second, over the last 5 s"),
                    (
                        "backplane in/s",
                        "Messages from the backplane per second, over the last 5 s",
                    ),
                    (
                        "backplane out/s",
                        "Messages to the backplane per second, over the last 5 s",
                    ),
                    ("backplane", "The node's link to Redis (or the in-memory bus), as the node reports it"),
                    (
                        "health",
                        "The worst health finding about this node: hover for them, click for the Health view",
                    ),
                ] {
                    let label = ui.label(RichText::new(title).strong());
                    if !hover.is_empty() {
                        label.on_hover_text(hover);
                    }
                }
                ui.label("");
                ui.end_row();
                for row in nodes.rows() {
                    node_row(ui, model, row, now, actions);
                    ui.end_row();
                }
            });
        if nodes.rows().is_empty() {
            ui.label(
                RichText::new(
                    "No nodes. Add one on the left, or connect Redis: Switchboard nodes announce themselves.",
                )
                .weak(),
            );
        }
        discovery_line(ui, &model.discovery);

        if let Some((at, hubs)) = &model.census {
            ui.add_space(12.0);
            let stale = model.census_stale(now);
            ui.label(
                RichText::new(format!(
                    "Hubs counted from Redis's channel list (PUBSUB CHANNELS), at {}{}",
                    widgets::clock(*at),
                    if stale { ", STALE" } else { "" }
                ))
                .strong()
                .color(if stale {
                    widgets::WARN
                } else {
                    ui.visuals().strong_text_color()
                }),
            );
            if let Some(status) = &model.census_status {
                let (color, line) = widgets::census_line(status, now);
                let color = color.unwrap_or_else(|| ui.visuals().weak_text_color());
                ui.label(RichText::new(line).color(color))
                    .on_hover_text(status.summary(now));
            }
            egui::Grid::new("census")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for t in ["hub", "connections", "users", "groups", "servers"] {
                        ui.label(RichText::new(t).strong());
                    }
                    ui.end_row();
                    let text = |t: String| {
                        if stale {
                            widgets::greyed(t)
                        } else {
                            RichText::new(t)
                        }
                    };
                    for hub in hubs {
                        ui.label(text(hub.hub.clone()));
                        ui.label(text(hub.connections.to_string()));
                        ui.label(text(hub.users.to_string()));
                        ui.label(text(hub.groups.to_string()));
                        ui.label(text(hub.servers.len().to_string()))
                            .on_hover_text(hub.servers.join("\n"));
                        ui.end_row();
                    }
                });
        }
    });
}

/// The client-count history over the last [`DEFAULT_RATE_WINDOW`], with the windows in which
/// the node, its backplane link or the tap was down shaded, and its scale (max, window).
fn client_history(ui: &mut Ui, model: &Model, row: &NodeRow, now: u64, live: bool) {
    let window = DEFAULT_RATE_WINDOW.as_millis() as u64;
    let since = now.saturating_sub(window);
    let mut down = model.down_spans(Some(&row.target.hub_url), since, now);
    down.extend(model.down_spans(None, since, now));
    let points: Vec<(u64, f64)> = row.history.iter().map(|(t, c)| (*t, *c as f64)).collect();
    let spans: Vec<(u64, u64)> = down.iter().map(|d| (d.from_ms, d.to_ms)).collect();
    let response = widgets::time_sparkline(
        ui,
        &points,
        (since, now),
        &spans,
        vec2(140.0, 26.0),
        if live { widgets::OK } else { widgets::IDLE },
    );
    let mut hover = format!(
        "clients, last {} (max {})",
        widgets::duration_words(window / 1000),
        points.iter().map(|p| p.1 as u64).max().unwrap_or(0)
    );
    for d in &down {
        let what = match d.kind {
            DownKind::Tap => "the tap was down",
            DownKind::Node => "the node did not answer",
            DownKind::Backplane => "its backplane link was down",
        };
        hover.push_str(&format!(
            "\nshaded: {what} {}–{}",
            widgets::clock(d.from_ms),
            widgets::clock(d.to_ms)
        ));
    }
    response.on_hover_text(hover);
}

/// The most characters of a row's state shown in the table (the rest on hover): a long error
/// must not push the columns after it off-screen.
pub const STATE_CHARS: usize = 28;

/// `words` cut to `max` characters with "…" (whole when short enough).
pub fn shorten(words: &str, max: usize) -> String {
    if words.chars().count() > max {
        words.chars().take(max.saturating_sub(1)).chain(['…']).collect()
    } else {
        words.to_string()
    }
}

/// A live value, or "–" when the node is not live, with the last known value on hover.
fn live_value(ui: &mut Ui, live: bool, value: String) -> egui::Response {
    if live {
        ui.label(value)
    } else {
        ui.label(RichText::new("–").color(widgets::IDLE))
            .on_hover_text(format!("not live; last known: {value}"))
    }
}

/// One row of the table; the live values of a node that is not live are "–".
fn node_row(ui: &mut Ui, model: &Model, row: &NodeRow, now: u64, actions: &mut Vec<Action>) {
    let evaluation = model.health.latest.as_ref();
    let live = Nodes::liveness(row, now).is_live();
    let text = |t: String| {
        if live {
            RichText::new(t)
        } else {
            widgets::greyed(t)
        }
    };
    // The first column, whose place never moves with the widths of the others: Remove, and the
    // trust words and button, sit here, next to the name.
    ui.horizontal(|ui| {
        ui.label(text(row.name.clone()).strong()).on_hover_text(format!(
            "hub {}\nstats {}\nserver {}\nthe dashboard's test connection (probe) {}",
            row.target.hub_url,
            row.target.monitor_url.as_deref().unwrap_or("none"),
            row.stats.as_ref().map(|s| s.server_name.as_str()).unwrap_or("?"),
            row.probe_connection_id.as_deref().unwrap_or("none"),
        ));
        if ui
            .small_button("Remove")
            .on_hover_text("Stop watching this node")
            .clicked()
        {
            actions.push(Action::RemoveNode(row.target.hub_url.clone()));
        }
        if !row.trusted {
            if ui
                .small_button("Trust")
                .on_hover_text("Send this node the tokens from now on, and remember it as a named node")
                .clicked()
            {
                actions.push(Action::Monitor(MonitorCommand::TrustNode(row.target.clone())));
            }
            ui.label(RichText::new("discovered, not trusted").color(widgets::WARN))
                .on_hover_text(
                    "Known only from its heartbeat, which anyone who can publish on the Redis can \
                     forge: probed without the monitor token or the node token",
                );
        }
    });
    let (color, words) = row_state(row, now);
    ui.horizontal(|ui| {
        widgets::dot(ui, color);
        let shown = RichText::new(shorten(&words, STATE_CHARS)).color(if live {
            ui.visuals().text_color()
        } else {
            color
        });
        ui.label(shown).on_hover_text(&words);
    });
    match row.rtt {
        Some(d) => {
            live_value(ui, live, widgets::millis(d.as_secs_f64() * 1000.0));
        }
        None => {
            ui.label("–");
        }
    }
    match (&row.stats, row.clients()) {
        (Some(s), Some(clients)) => {
            let shown = match row.probes() {
                0 => clients.to_string(),
                p => format!("{clients} + {p} probe"),
            };
            let hover = format!(
                "{} connections on the node: {} JSON, {} MessagePack; {} accepted, {} rejected since start{}",
                s.connections.total,
                s.connections.json,
                s.connections.messagepack,
                s.connections.accepted,
                s.connections.rejected,
                match &row.probe_connection_id {
                    Some(id) => format!("\nthe dashboard's test connection (probe) is connection {id}"),
                    None => String::new(),
                }
            );
            if live {
                ui.label(RichText::new(shown).strong()).on_hover_text(hover);
            } else {
                live_value(ui, false, shown);
            }
        }
        _ => {
            ui.label("–")
                .on_hover_text("no monitor endpoint, or not connected");
        }
    }
    client_history(ui, model, row, now, live);
    let stats = row.stats.as_ref();
    match stats {
        Some(s) => {
            live_value(ui, live, s.groups.to_string());
        }
        None => {
            ui.label("–");
        }
    }
    for value in [
        row.rates.client_in,
        row.rates.client_out,
        row.rates.backplane_in,
        row.rates.backplane_out,
    ] {
        if stats.is_some() {
            // The unit is in the column's title ("in/s").
            live_value(ui, live, widgets::rate(value));
        } else {
            ui.label("–");
        }
    }
    match stats {
        Some(s) => {
            let b = &s.backplane;
            let ok = matches!(b.status.state.as_str(), "connected" | "memory");
            let mut words = if b.kind == b.status.state {
                b.kind.clone()
            } else {
                format!("{} {}", b.kind, b.status.state)
            };
            // Messages the node could not keep up with (its bounded backplane inbox was full):
            // lost for its clients, so said on the row, not only in the hover.
            let shed = s.messages.backplane_dropped;
            if shed > 0 {
                words = format!("{words} · {shed} shed");
            }
            // A sharded subscription lost to a slot move: messages in between were missed.
            let gaps = s.messages.backplane_gaps;
            if gaps > 0 {
                words = format!("{words} · {gaps} gap{}", if gaps == 1 { "" } else { "s" });
            }
            let shed = shed + gaps;
            let shown = if !live {
                RichText::new("–").color(widgets::IDLE)
            } else {
                RichText::new(words.clone()).color(match (ok, shed > 0) {
                    (false, _) => widgets::BAD,
                    (true, true) => widgets::WARN,
                    (true, false) => widgets::OK,
                })
            };
            let mut hover = format!(
                "{} forward failures (Redis unreachable), {} sent to a connection no node held, \
                 {} shed (backplane inbox full), {} connects\n\
                 {} slow clients disconnected, {} protocol errors, {} group ack timeouts, \
                 {} remote group joins refused at the group cap, \
                 {} connections refused at the cap ({})",
                s.forward_failures,
                s.forward_unreached,
                shed,
                b.status.connects,
                s.slow_client_disconnects,
                s.protocol_errors,
                s.group_ack_timeouts,
                s.remote_group_refusals,
                s.connections.refused,
                s.limits.max_connections
            );
            if let Some(e) = &b.status.last_error {
                hover = format!("last error: {e}\n{hover}");
            }
            if !live {
                hover = format!(
                    "not live; the last state the node reported, before it stopped answering: {words}\n{hover}"
                );
            }
            ui.label(shown).on_hover_text(hover);
        }
        None => {
            ui.label("–");
        }
    }
    ui.horizontal(|ui| {
        let names = super::health::node_names(row);
        if evaluation.and_then(|e| e.worst_for(&names)).is_some() {
            super::health::badge(ui, evaluation, &names, actions);
        } else if evaluation.is_some() {
            ui.label(RichText::new("ok").color(widgets::OK));
        } else {
            ui.label("–");
        }
    });
}

/// The line under the table about heartbeats the runtime did not follow (nothing when none).
fn discovery_line(ui: &mut Ui, counts: &crate::monitor::DiscoveryCounts) {
    let mut parts = Vec::new();
    if counts.untrusted > 0 {
        parts.push(format!(
            "{} discovered node{} not trusted (no tokens sent)",
            counts.untrusted,
            if counts.untrusted == 1 { "" } else { "s" }
        ));
    }
    if counts.over_cap > 0 {
        parts.push(format!(
            "{} more discovered node{} not watched (at most {} untrusted are kept)",
            counts.over_cap,
            if counts.over_cap == 1 { "" } else { "s" },
            crate::config::DEFAULT_MAX_DISCOVERED_NODES
        ));
    }
    if counts.ignored_heartbeats > 0 {
        parts.push(format!(
            "{} heartbeat{} ignored (URL not http(s)/ws(s), or with a user or password)",
            counts.ignored_heartbeats,
            if counts.ignored_heartbeats == 1 { "" } else { "s" }
        ));
    }
    if parts.is_empty() {
        return;
    }
    let color = if counts.over_cap > 0 || counts.ignored_heartbeats > 0 {
        widgets::WARN
    } else {
        ui.visuals().weak_text_color()
    };
    ui.add(egui::Label::new(RichText::new(parts.join(" · ")).color(color)).wrap())
        .on_hover_text("Trust a node with its Trust button, or start the dashboard with --trust-nodes GLOB");
}
