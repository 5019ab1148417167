//! The connections panel: the Redis URL (password typed separately and never saved), the channel
//! prefix, the node list (added by hand or announced by heartbeat), and each link's state.

use egui::{RichText, Ui};

use super::settings::{Settings, parse_node};
use super::{Action, widgets};
use crate::monitor::MonitorCommand;
use crate::monitor::model::Model;
use crate::monitor::model::nodes::Nodes;

/// The panel's own state between frames.
#[derive(Debug, Default)]
pub struct ConnectionsUi {
    /// The "add a node" field.
    pub new_node: String,
    /// Why the last node typed was refused.
    pub node_error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub fn show(
    ui: &mut Ui,
    settings: &mut Settings,
    password: &mut String,
    state: &mut ConnectionsUi,
    model: &Model,
    demo: bool,
    now: u64,
    actions: &mut Vec<Action>,
) {
    ui.heading("Redis backplane");
    egui::Grid::new("redis_form")
        .num_columns(2)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            let label = ui.label("Redis URL");
            let mut url = settings.redis_url.clone();
            let response = ui
                .add(
                    egui::TextEdit::singleline(&mut url)
                        .hint_text("redis://127.0.0.1:6379/0")
                        .desired_width(190.0),
                )
                .labelled_by(label.id);
            if response.changed() {
                settings.redis_url = url;
            }
            if response.lost_focus() {
                // Typed with a password? Keep it for this run, store the URL without it.
                let typed = settings.redis_url.clone();
                if let Some(p) = password_in(&typed) {
                    *password = p;
                }
                settings.set_redis_url(&typed);
            }
            ui.end_row();
            let label = ui.label("Password");
            ui.add(
                egui::TextEdit::singleline(password)
                    .password(true)
                    .hint_text("not saved")
                    .desired_width(190.0),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Prefix");
            ui.add(
                egui::TextEdit::singleline(&mut settings.channel_prefix)
                    .hint_text("ChannelPrefix (often empty)")
                    .desired_width(190.0),
            )
            .labelled_by(label.id);
            ui.end_row();
        });
    ui.horizontal(|ui| {
        if ui.button("Connect").clicked() {
            actions.push(Action::ConnectRedis);
        }
        if ui.button("Disconnect").clicked() {
            actions.push(Action::DisconnectRedis);
        }
        ui.checkbox(&mut settings.auto_connect, "at start");
    });
    widgets::link_state(ui, "Tap", &model.tap.state, now);
    if let Some((at, hubs)) = &model.census {
        for hub in hubs {
            ui.label(format!(
                "{}: {} connections, {} users, {} groups, {} servers (PUBSUB, {})",
                hub.hub,
                hub.connections,
                hub.users,
                hub.groups,
                hub.servers.len(),
                widgets::clock(*at)
            ))
            .on_hover_text(hub.servers.join("\n"));
        }
    }
    if demo {
        ui.label(RichText::new("The demo's backplane: connected for you.").weak());
    }

    ui.separator();
    ui.heading("Hub nodes");
    for row in model.nodes.rows() {
        let (color, words) = super::nodes::row_state(row, now);
        ui.horizontal(|ui| {
            widgets::dot(ui, color);
            ui.label(RichText::new(&row.name).strong()).on_hover_text(format!(
                "hub {}\nstats {}\n{words}",
                row.target.hub_url,
                row.target.monitor_url.as_deref().unwrap_or("none")
            ));
            if row.announced {
                ui.label(RichText::new("announced").weak().small());
            }
            if ui
                .small_button("Remove")
                .on_hover_text("Stop watching this node")
                .clicked()
            {
                actions.push(Action::RemoveNode(row.target.hub_url.clone()));
            }
        });
        if !Nodes::liveness(row, now).is_live() {
            // Wrapped, never widening the panel: errors can be long.
            ui.add(egui::Label::new(RichText::new(words).color(color).small()).wrap());
        }
    }
    if model.nodes.rows().is_empty() {
        ui.label(RichText::new("No nodes yet: add one, or connect Redis to find them by heartbeat.").weak());
    }
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut state.new_node)
                .hint_text("http://host:5001/chat[,stats URL|none]")
                .desired_width(210.0),
        )
        .on_hover_text(
            "A hub URL; add ,STATS_URL for a custom stats endpoint or ,none for a node without one",
        );
        if ui.button("Add node").clicked() {
            match parse_node(&state.new_node) {
                Ok(target) => {
                    actions.push(Action::Monitor(MonitorCommand::AddNode(target)));
                    state.new_node.clear();
                    state.node_error = None;
                }
                Err(e) => state.node_error = Some(e),
            }
        }
    });
    if let Some(e) = &state.node_error {
        ui.add(egui::Label::new(RichText::new(e).color(widgets::BAD)).wrap());
    }
}

/// The password in a redis:// URL, if it has one.
fn password_in(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| percent_decode(password))
}

/// Undoes %XX escapes (the URL form of a password), leaving malformed escapes as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::password_in;

    #[test]
    fn a_password_typed_in_the_url_is_found() {
        assert_eq!(password_in("redis://:s3cret@h:1/0").as_deref(), Some("s3cret"));
        assert_eq!(password_in("redis://u:pw@h").as_deref(), Some("pw"));
        assert_eq!(password_in("redis://h:1"), None);
        assert_eq!(password_in("redis://u@h"), None);
        assert_eq!(password_in("redis://:p%40ss%2@h").as_deref(), Some("p@ss%2"));
    }
}
