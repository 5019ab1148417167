//! The Redis view: what the dashboard is connected to (TLS verified or insecure, the user, the
//! cluster's shards or the sentinel primary), then every primary and replica with its role, slot
//! ranges and pub/sub clients (names, subscriptions, output buffers against
//! `client-output-buffer-limit pubsub`), subscribers Redis is about to cut in plain words, the
//! sharded tap's discovery age, and the failovers seen.
//!
//! Every Redis term is in words with the raw name on hover ("Output buffer", hover "omem: …").
//!
//! Draws `monitor::model::redis` only; the poller (`monitor::redis_view`) fills it.

use egui::{Grid, RichText, ScrollArea, Ui};

use super::widgets;
use crate::monitor::model::Model;
use crate::monitor::model::redis_view::{
    LimitKnowledge, NodeRole, NodeSnapshot, Severity, buffer_warning, bytes, slot_ranges,
};

pub fn show(ui: &mut Ui, model: &Model, now: u64) {
    let view = &model.redis;
    let Some(snapshot) = view.latest() else {
        ui.heading("Redis servers");
        ui.label(widgets::greyed(
            "No Redis poll yet. Connect to a Redis backplane (left panel); the first round comes within a few seconds.",
        ));
        return;
    };
    ui.heading("Redis servers");
    Grid::new("redis_connection").num_columns(2).show(ui, |ui| {
        ui.label("Connected to");
        ui.label(&snapshot.connection.url);
        ui.end_row();
        ui.label("Connection");
        ui.label(&snapshot.connection.spec);
        ui.end_row();
        ui.label("Reaches");
        ui.label(&snapshot.connection.reached);
        ui.end_row();
        ui.label("Last poll");
        let cost = snapshot.cost_micros as f64 / 1000.0;
        // Short (a 1024-wide window), the cost on hover.
        ui.label(format!(
            "{} ({} s ago) · next in {} s",
            widgets::clock(snapshot.at_ms),
            now.saturating_sub(snapshot.at_ms) / 1000,
            snapshot.next_at_ms.saturating_sub(now).div_ceil(1000),
        ))
        .on_hover_text(format!(
            "The client list (CLIENT LIST) took {} here, round trip included; rounds are spaced \
             100× that, at least 5 s",
            widgets::millis(cost)
        ));
        ui.end_row();
        if let Some(st) = &view.shard_tap {
            ui.label("Sharded tap");
            let mut line = format!(
                "{} shard channel{} subscribed on {} primar{}; discovery {} s old (channels created since are not tapped yet)",
                st.subscribed,
                if st.subscribed == 1 { "" } else { "s" },
                st.primaries,
                if st.primaries == 1 { "y" } else { "ies" },
                now.saturating_sub(st.discovered_at_ms) / 1000,
            );
            if let Some(e) = &st.error {
                line.push_str(&format!(" · {e}"));
            }
            ui.label(line);
            ui.end_row();
        }
    });
    if let Some(error) = &snapshot.error {
        ui.colored_label(widgets::BAD, format!("Cannot reach Redis: {error}"));
    }

    let warnings = view.warnings();
    if !warnings.is_empty() {
        ui.add_space(6.0);
        ui.label(RichText::new("Subscribers about to be cut").strong());
        for (addr, client, w) in &warnings {
            let color = match w.severity {
                Severity::Critical => widgets::BAD,
                Severity::Warn => widgets::WARN,
            };
            let who = if client.name.is_empty() {
                format!("client {} ({})", client.id, client.addr)
            } else {
                format!("{} ({})", client.name, client.addr)
            };
            ui.colored_label(color, format!("{addr} · {who}: {}", w.words));
        }
    }

    let failovers = view.failovers();
    if !failovers.is_empty() {
        ui.add_space(6.0);
        ui.label(RichText::new("Failovers seen").strong());
        for f in failovers.iter().rev() {
            ui.colored_label(widgets::WARN, f.summary());
        }
    }

    ui.add_space(6.0);
    ui.separator();
    ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        for (i, node) in snapshot.nodes.iter().enumerate() {
            node_section(ui, i, node);
        }
    });
}

fn node_section(ui: &mut Ui, i: usize, node: &NodeSnapshot) {
    let (color, role) = match (&node.role, node.error.is_some()) {
        (_, true) => (
            widgets::BAD,
            format!("not answering (last known: {})", node.role.label()),
        ),
        (NodeRole::Primary, false) => (widgets::OK, "primary".to_string()),
        (NodeRole::Replica { of: Some(of) }, false) => (widgets::IDLE, format!("replica of {of}")),
        (r, false) => (widgets::IDLE, r.label().to_string()),
    };
    // Wrapped: the limit's words do not fit beside the rest in a 1024-wide window.
    ui.horizontal_wrapped(|ui| {
        widgets::dot(ui, color);
        ui.label(RichText::new(&node.addr).strong().monospace());
        ui.label(role);
        if !node.slots.is_empty() {
            ui.label(format!("slots {}", slot_ranges(&node.slots)));
        }
        if !node.health.is_empty() && node.health != "online" {
            // `loading`: a replica syncing; `fail`: the cluster counts it down.
            let color = if node.health.starts_with("fail") {
                widgets::BAD
            } else {
                widgets::WARN
            };
            ui.colored_label(color, format!("cluster says: {}", node.health));
        }
        ui.label(widgets::greyed(format!(
            "{} pub/sub connection{}",
            node.clients_total,
            if node.clients_total == 1 { "" } else { "s" }
        )))
        .on_hover_text("Connections in subscriber mode (CLIENT LIST TYPE pubsub)");
        match &node.limit {
            LimitKnowledge::Known(l) => {
                let hard = if l.hard == 0 {
                    "none".to_string()
                } else {
                    bytes(l.hard)
                };
                let soft = if l.soft == 0 {
                    "no soft limit".to_string()
                } else {
                    format!("soft {} for {} s", bytes(l.soft), l.soft_secs)
                };
                ui.add(
                    egui::Label::new(widgets::greyed(format!(
                        "Output buffer limit of pub/sub connections: hard {hard}, {soft}"
                    )))
                    .wrap(),
                )
                .on_hover_text(
                    "client-output-buffer-limit pubsub: Redis cuts a subscriber whose output buffer \
                     passes the hard limit, or stays over the soft one for that long",
                );
            }
            LimitKnowledge::Unknown(why) => {
                ui.colored_label(widgets::WARN, format!("output buffer limit unknown: {why}"));
            }
        }
    });
    if let Some(error) = &node.error {
        ui.colored_label(widgets::BAD, error);
    }
    if node.clients.is_empty() {
        ui.add_space(4.0);
        return;
    }
    ui.indent(("redis_node", i), |ui| {
        Grid::new(("redis_clients", i))
            .striped(true)
            .num_columns(7)
            .show(ui, |ui| {
                for (h, hover) in [
                    ("id", "The client's id in Redis (CLIENT LIST id)"),
                    ("name", "The name it gave itself (CLIENT SETNAME)"),
                    ("address", "Its address as Redis sees it"),
                    (
                        "subscriptions",
                        "channels (ch, SUBSCRIBE), pattern subscriptions (pat, PSUBSCRIBE) and \
                         shard channels (shard, SSUBSCRIBE)",
                    ),
                    (
                        "Output buffer",
                        "omem: the client's output buffer memory, what Redis holds for it until it reads",
                    ),
                    (
                        "Total memory",
                        "tot-mem: all the memory the client uses in Redis, its buffers included",
                    ),
                    ("", ""),
                ] {
                    let label = ui.label(RichText::new(h).strong());
                    if !hover.is_empty() {
                        label.on_hover_text(hover);
                    }
                }
                ui.end_row();
                for c in &node.clients {
                    ui.label(c.id.to_string());
                    if c.name.is_empty() {
                        ui.label(widgets::greyed("(no name)"));
                    } else {
                        ui.label(&c.name);
                    }
                    ui.label(RichText::new(&c.addr).monospace());
                    ui.label(format!(
                        "{} channel{} · {} pattern{} · {} shard",
                        c.channels,
                        if c.channels == 1 { "" } else { "s" },
                        c.patterns,
                        if c.patterns == 1 { "" } else { "s" },
                        c.shard_channels
                    ))
                    .on_hover_text("ch · pat · shard: SUBSCRIBE channels, PSUBSCRIBE patterns, SSUBSCRIBE shard channels");
                    ui.label(bytes(c.omem));
                    ui.label(bytes(c.tot_mem));
                    let warning = match &node.limit {
                        LimitKnowledge::Known(l) => buffer_warning(c, l),
                        LimitKnowledge::Unknown(_) => None,
                    };
                    match warning {
                        Some(w) => {
                            let color = match w.severity {
                                Severity::Critical => widgets::BAD,
                                Severity::Warn => widgets::WARN,
                            };
                            ui.colored_label(color, w.words);
                        }
                        None => {
                            ui.label("");
                        }
                    }
                    ui.end_row();
                }
            });
        if node.clients_total > node.clients.len() {
            ui.label(widgets::greyed(format!(
                "showing the {} fullest output buffers of {}",
                node.clients.len(),
                node.clients_total
            )));
        }
    });
    ui.add_space(4.0);
}
