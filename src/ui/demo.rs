//! The demo panel (only in `switchboard demo`): the backplane and the nodes with their addresses
//! (the chat page opens in a browser), buttons to add or stop a node and to stop or restart the
//! backplane, and the simulated clients' settings.

use egui::{RichText, Ui};

use super::{Action, widgets};
use crate::demo::{DemoCommand, DemoStatus, SimSettings};

/// The panel's state: the simulation settings as edited (applied with a button, so dragging a
/// slider does not reconnect hundreds of clients on every step).
#[derive(Debug, Default)]
pub struct DemoUi {
    pub sim: Option<SimSettings>,
}

pub fn show(ui: &mut Ui, status: &DemoStatus, state: &mut DemoUi, actions: &mut Vec<Action>) {
    ui.heading("Demo");
    ui.horizontal(|ui| {
        let (color, words) = if status.backplane_running {
            (widgets::OK, "running")
        } else {
            (widgets::BAD, "stopped")
        };
        widgets::dot(ui, color);
        let external = status.backplane_kind == "external";
        let what = match &status.redis_url {
            Some(url) if external => format!("your Redis {url}"),
            Some(url) => format!("redis-server {url}"),
            None => "in-memory backplane".to_string(),
        };
        ui.add(egui::Label::new(format!("{what}: {words}")).truncate());
    });
    ui.horizontal(|ui| {
        if status.backplane_kind == "external" {
            // The demo never stops a Redis it did not start.
        } else if status.backplane_running {
            if ui.button("Stop backplane").clicked() {
                actions.push(Action::Demo(DemoCommand::StopBackplane));
            }
        } else if ui.button("Start backplane").clicked() {
            actions.push(Action::Demo(DemoCommand::StartBackplane));
        }
        if ui
            .button("Start another node")
            .on_hover_text("A new hub node on a free port, with its simulated clients")
            .clicked()
        {
            actions.push(Action::Demo(DemoCommand::AddNode));
        }
    });
    for node in &status.nodes {
        ui.horizontal(|ui| {
            widgets::dot(ui, if node.running { widgets::OK } else { widgets::IDLE });
            ui.label(RichText::new(&node.name).strong());
            if node.running {
                ui.hyperlink_to(&node.base_url, &node.page_url)
                    .on_hover_text("The chat page of this node");
                if ui
                    .small_button("Stop")
                    .on_hover_text(format!("Stop {}", node.name))
                    .clicked()
                {
                    actions.push(Action::Demo(DemoCommand::StopNode(node.name.clone())));
                }
            } else {
                ui.label(RichText::new("stopped").weak());
                if ui
                    .small_button("Start")
                    .on_hover_text(format!("Start {} again, on its old port when free", node.name))
                    .clicked()
                {
                    actions.push(Action::Demo(DemoCommand::StartNode(node.name.clone())));
                }
            }
        });
    }

    ui.add_space(4.0);
    ui.label(RichText::new("Simulated clients").strong());
    let sim = state.sim.get_or_insert_with(|| status.sim.clone());
    // Every figure with its unit: clients, messages/s, a percentage.
    ui.add(
        egui::Slider::new(&mut sim.clients_per_node, 0..=200)
            .suffix(" clients")
            .text("per node"),
    );
    ui.add(
        egui::Slider::new(&mut sim.messages_per_sec, 0.0..=2000.0)
            .logarithmic(true)
            .suffix(" msg/s")
            .text("in all"),
    );
    let mut percent = (sim.group_share * 100.0).round();
    if ui
        .add(
            egui::Slider::new(&mut percent, 0.0..=100.0)
                .step_by(5.0)
                .suffix(" %")
                .text("of clients in groups"),
        )
        .on_hover_text("The share of simulated clients that join a group and send to it")
        .changed()
    {
        sim.group_share = percent / 100.0;
    }
    ui.horizontal(|ui| {
        let changed = *sim != status.sim;
        if ui.add_enabled(changed, egui::Button::new("Apply")).clicked() {
            actions.push(Action::Demo(DemoCommand::SetSimulation(sim.clone())));
        }
    });
    ui.add(
        egui::Label::new(format!(
            "{} clients connected · {} messages sent · {} received",
            status.sim_clients, status.sim_sent, status.sim_received
        ))
        .wrap(),
    );
    if let Some(e) = &status.last_error {
        ui.add(egui::Label::new(RichText::new(e).color(widgets::BAD)).wrap());
    }
}
