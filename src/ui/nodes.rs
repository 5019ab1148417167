//! The nodes panel: one row per hub node (state, round-trip time, clients, groups, message rates,
//! backplane state, a client-count history), the cluster total, and the connection count Redis
//! itself reveals (PUBSUB), which also counts nodes without a monitor endpoint.

use egui::{RichText, Ui, vec2};

use super::rates::big_number;
use super::{Action, widgets};
use crate::monitor::LinkState;
use crate::monitor::model::Model;

pub fn show(ui: &mut Ui, model: &Model, now: u64, actions: &mut Vec<Action>) {
    let nodes = &model.nodes;
    let redis_total: u64 = model
        .census
        .as_ref()
        .map(|(_, hubs)| hubs.iter().map(|h| h.connections).sum())
        .unwrap_or(0);
    ui.horizontal(|ui| {
        big_number(
            ui,
            "clients on watched nodes",
            &nodes.cluster_total_clients().to_string(),
        );
        big_number(
            ui,
            "connections the backplane sees",
            &if model.census.is_some() {
                redis_total.to_string()
            } else {
                "–".to_string()
            },
        );
        let up = nodes
            .rows()
            .iter()
            .filter(|r| r.state == LinkState::Connected)
            .count();
        big_number(ui, "nodes up", &format!("{up} / {}", nodes.rows().len()));
    });
    ui.separator();

    egui::ScrollArea::both().show(ui, |ui| {
        egui::Grid::new("nodes_table")
            .striped(true)
            .num_columns(11)
            .spacing([14.0, 6.0])
            .show(ui, |ui| {
                for title in [
                    "node",
                    "state",
                    "RTT",
                    "clients",
                    "history",
                    "groups",
                    "in/s",
                    "out/s",
                    "backplane in/s",
                    "backplane out/s",
                    "backplane",
                ] {
                    ui.label(RichText::new(title).strong());
                }
                ui.label("");
                ui.end_row();
                for row in nodes.rows() {
                    ui.label(RichText::new(&row.name).strong()).on_hover_text(format!(
                        "hub {}\nstats {}\nserver {}",
                        row.target.hub_url,
                        row.target.monitor_url.as_deref().unwrap_or("none"),
                        row.stats.as_ref().map(|s| s.server_name.as_str()).unwrap_or("?")
                    ));
                    let (color, words) = widgets::describe(&row.state, now);
                    ui.horizontal(|ui| {
                        widgets::dot(ui, color);
                        let short: String = words.chars().take(40).collect();
                        ui.label(short).on_hover_text(words);
                    });
                    ui.label(
                        row.rtt
                            .map(|d| widgets::millis(d.as_secs_f64() * 1000.0))
                            .unwrap_or_else(|| "–".into()),
                    );
                    match &row.stats {
                        Some(s) => {
                            ui.label(RichText::new(s.connections.total.to_string()).strong())
                                .on_hover_text(format!(
                                    "{} JSON, {} MessagePack; {} accepted, {} rejected since start",
                                    s.connections.json,
                                    s.connections.messagepack,
                                    s.connections.accepted,
                                    s.connections.rejected
                                ));
                        }
                        None => {
                            ui.label("–")
                                .on_hover_text("no monitor endpoint, or not connected");
                        }
                    }
                    let history: Vec<f64> = row.history.iter().map(|(_, c)| *c as f64).collect();
                    widgets::sparkline(ui, &history, vec2(120.0, 22.0), widgets::OK);
                    let stats = row.stats.as_ref();
                    ui.label(stats.map(|s| s.groups.to_string()).unwrap_or_else(|| "–".into()));
                    let rate = |v: f64| {
                        if stats.is_some() {
                            widgets::si(v)
                        } else {
                            "–".into()
                        }
                    };
                    ui.label(rate(row.rates.client_in));
                    ui.label(rate(row.rates.client_out));
                    ui.label(rate(row.rates.backplane_in));
                    ui.label(rate(row.rates.backplane_out));
                    match stats {
                        Some(s) => {
                            let b = &s.backplane;
                            let ok = matches!(b.status.state.as_str(), "connected" | "memory");
                            let text = if b.kind == b.status.state {
                                b.kind.clone()
                            } else {
                                format!("{} {}", b.kind, b.status.state)
                            };
                            let label = ui.label(RichText::new(text).color(if ok {
                                widgets::OK
                            } else {
                                widgets::BAD
                            }));
                            if let Some(e) = &b.status.last_error {
                                label.on_hover_text(format!(
                                    "last error: {e}\n{} forward failures, {} connects",
                                    s.forward_failures, b.status.connects
                                ));
                            }
                        }
                        None => {
                            ui.label("–");
                        }
                    }
                    if ui.small_button("Remove").clicked() {
                        actions.push(Action::RemoveNode(row.target.hub_url.clone()));
                    }
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

        if let Some((at, hubs)) = &model.census {
            ui.add_space(12.0);
            ui.label(
                RichText::new(format!(
                    "What the backplane reveals (PUBSUB CHANNELS, {})",
                    widgets::clock(*at)
                ))
                .strong(),
            );
            egui::Grid::new("census")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for t in ["hub", "connections", "users", "groups", "servers"] {
                        ui.label(RichText::new(t).strong());
                    }
                    ui.end_row();
                    for hub in hubs {
                        ui.label(&hub.hub);
                        ui.label(hub.connections.to_string());
                        ui.label(hub.users.to_string());
                        ui.label(hub.groups.to_string());
                        ui.label(hub.servers.len().to_string())
                            .on_hover_text(hub.servers.join("\n"));
                        ui.end_row();
                    }
                });
        }
    });
}
