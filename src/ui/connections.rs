//! The connections panel: the Redis URL (password typed separately and never saved), the channel
//! prefix, the node list (added by hand or announced by heartbeat), and each link's state.
//!
//! Every Redis term has words beside it, the raw name on hover ("count of nodes and clients",
//! hover: "PUBSUB CHANNELS …"); secondary lines are weak but body-sized (never under 12 px).

use egui::{RichText, Ui};

use super::files::PemField;
use super::settings::{Settings, parse_node};
use super::{Action, widgets};
use crate::demo::DemoStatus;
use crate::monitor::model::Model;
use crate::monitor::model::nodes::Nodes;
use crate::monitor::{LinkState, MonitorCommand};
use crate::redis_conn::{RedisOptions, RedisSpec};

/// The panel's own state between frames.
#[derive(Debug, Default)]
pub struct ConnectionsUi {
    /// The "add a node" field.
    pub new_node: String,
    /// Why the last node typed was refused.
    pub node_error: Option<String>,
}

/// The passwords typed into the panel: held by the app for this run, never saved.
pub struct Secrets<'a> {
    pub password: &'a mut String,
    pub sentinel_password: &'a mut String,
}

#[allow(clippy::too_many_arguments)]
pub fn show(
    ui: &mut Ui,
    settings: &mut Settings,
    secrets: Secrets<'_>,
    state: &mut ConnectionsUi,
    model: &Model,
    demo: Option<&DemoStatus>,
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
                    *secrets.password = p;
                }
                settings.set_redis_url(&typed);
            }
            ui.end_row();
            let label = ui.label("Password");
            ui.add(
                egui::TextEdit::singleline(secrets.password)
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
    tls_and_topology(ui, settings, secrets.sentinel_password, actions);
    // What the form says, in words, before connecting: TLS verified or not, user, topology.
    let options = settings.redis_options.options(secrets.sentinel_password);
    if !settings.redis_url.trim().is_empty() {
        match RedisSpec::parse(&settings.redis_url, &options) {
            Ok(mut spec) => {
                if spec.password().is_none() {
                    spec.set_password(Some(secrets.password.clone()));
                }
                let insecure = spec.tls.as_ref().is_some_and(|t| t.insecure);
                let text = RichText::new(spec.describe());
                ui.label(if insecure {
                    text.color(widgets::WARN)
                } else {
                    text.weak()
                });
            }
            Err(e) => {
                ui.add(egui::Label::new(RichText::new(e.reason).color(widgets::BAD)).wrap());
            }
        }
    }
    ui.horizontal(|ui| {
        if ui.button("Connect").clicked() {
            actions.push(Action::ConnectRedis);
        }
        if ui.button("Disconnect").clicked() {
            actions.push(Action::DisconnectRedis);
        }
        ui.checkbox(&mut settings.auto_connect, "at start")
            .on_hover_text("Connect at the next start to the last URL that worked");
    });
    widgets::link_state(ui, "Tap", &model.tap.state, now);
    // What the spec reaches now (a single server, the sentinel primary, the cluster's shards), from
    // the Redis view's last round.
    if let Some(snapshot) = model.redis.latest() {
        ui.add(
            egui::Label::new(RichText::new(format!("Reaches: {}", snapshot.connection.reached)).weak())
                .wrap(),
        )
        .on_hover_text("From the Redis view's last round (the Redis tab has every node)");
    }
    if let Some((at, hubs)) = &model.census {
        // A stale census is greyed and says so: its counts may be old.
        let stale = model.census_stale(now);
        for hub in hubs {
            let text = format!(
                "{}: {} connections, {} users, {} groups on {} server{}",
                hub.hub,
                hub.connections,
                hub.users,
                hub.groups,
                hub.servers.len(),
                if hub.servers.len() == 1 { "" } else { "s" }
            );
            let text = if stale {
                widgets::greyed(text)
            } else {
                RichText::new(text)
            };
            ui.label(text).on_hover_text(format!(
                "Counted from the channels Redis lists (PUBSUB CHANNELS) at {}\nServers:\n{}",
                widgets::clock(*at),
                hub.servers.join("\n")
            ));
        }
    }
    if let Some(status) = &model.census_status {
        let (color, line) = widgets::census_line(status, now);
        let color = color.unwrap_or_else(|| ui.visuals().weak_text_color());
        ui.add(egui::Label::new(RichText::new(line).color(color)).truncate())
            .on_hover_text(format!(
                "The census: counts of nodes and clients read from the channels Redis lists \
                 (PUBSUB CHANNELS), at a pace that costs Redis little.\n{}\n\
                 Servers asked: {}\nChannels now (INFO stats, all prefixes): {}\nWalks so far: {}",
                status.summary(now),
                status.nodes.join(", "),
                status.channels_now.map_or("?".to_string(), |n| n.to_string()),
                status.scans
            ));
    }
    if let Some(status) = demo {
        let (color, line) = demo_backplane_line(status, &model.tap.state, now);
        ui.add(egui::Label::new(RichText::new(line).color(color)).wrap());
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
                ui.label(RichText::new("announced").weak())
                    .on_hover_text("Found by its heartbeat on the backplane");
            }
            if !row.trusted {
                ui.label(RichText::new("not trusted").color(widgets::WARN))
                    .on_hover_text("Known only from its heartbeat: no tokens are sent to it");
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
            ui.add(egui::Label::new(RichText::new(words).color(color)).wrap());
        }
        // On a line of its own (the row is full); its own label: the Nodes view's row has a
        // "Trust" button too.
        if !row.trusted
            && ui
                .small_button("Trust node")
                .on_hover_text("Send this node the tokens from now on, and remember it as a named node")
                .clicked()
        {
            actions.push(Action::Monitor(MonitorCommand::TrustNode(row.target.clone())));
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

/// TLS files (picked with a dialog), SNI, insecure, the sentinels' credentials and cluster mode.
fn tls_and_topology(
    ui: &mut Ui,
    settings: &mut Settings,
    sentinel_password: &mut String,
    actions: &mut Vec<Action>,
) {
    let options = &mut settings.redis_options;
    egui::CollapsingHeader::new("TLS, sentinel, cluster")
        .default_open(!options.ca.is_empty() || options.insecure || options.cluster)
        .show(ui, |ui| {
            egui::Grid::new("redis_tls_form")
                .num_columns(2)
                .spacing([6.0, 4.0])
                .show(ui, |ui| {
                    for (name, field, value, hint) in [
                        ("CA file", PemField::Ca, &mut options.ca, "system roots only"),
                        ("Client cert", PemField::Cert, &mut options.cert, "mutual TLS only"),
                        ("Client key", PemField::Key, &mut options.key, "mutual TLS only"),
                    ] {
                        let label = ui.label(name);
                        ui.horizontal(|ui| {
                            ui.add(egui::TextEdit::singleline(value).hint_text(hint).desired_width(112.0))
                                .labelled_by(label.id)
                                .on_hover_text(value.as_str());
                            if ui.small_button("…").on_hover_text(format!("Pick the {name} (PEM)")).clicked() {
                                actions.push(Action::PickPem(field));
                            }
                        });
                        ui.end_row();
                    }
                    for (name, value, hint, secret) in [
                        ("TLS name", &mut options.sni, "the URL's host", false),
                        ("Sentinel user", &mut options.sentinel_user, "if sentinels need one", false),
                        ("Sentinel pw", sentinel_password, "not saved", true),
                    ] {
                        let label = ui.label(name);
                        ui.add(
                            egui::TextEdit::singleline(value)
                                .password(secret)
                                .hint_text(hint)
                                .desired_width(138.0),
                        )
                        .labelled_by(label.id);
                        ui.end_row();
                    }
                });
            ui.checkbox(&mut options.insecure, "Skip certificate verification (insecure)")
                .on_hover_text("Accept any certificate: for test servers only. The connection is shown as insecure.");
            ui.checkbox(&mut options.cluster, "Require a cluster")
                .on_hover_text("Refuse a seed that is not in cluster mode (a cluster is detected by itself otherwise)");
            ui.label(
                RichText::new("rediss:// for TLS · user:password@ for ACL · redis+sentinel://s1,s2/master · seeds h1:p1,h2:p2")
                    .weak(),
            );
        });
}

/// The demo's backplane in words, from what is true now: the demo's own state (running, or
/// stopped from the Demo panel) and the tap's link to it.
pub fn demo_backplane_line(status: &DemoStatus, tap: &LinkState, now: u64) -> (egui::Color32, String) {
    let stopped_here = !status.backplane_running && status.backplane_kind != "external";
    match tap {
        LinkState::Connected if !stopped_here => (
            widgets::OK,
            "The demo's backplane: connected for you.".to_string(),
        ),
        _ if stopped_here => {
            let (_, tap) = widgets::short_state(tap, now);
            (
                widgets::WARN,
                format!("The demo's backplane: stopped by you (Demo panel); the tap is {tap}."),
            )
        }
        LinkState::Idle => (widgets::IDLE, "The demo's backplane: not connected.".to_string()),
        _ => {
            let (color, tap) = widgets::short_state(tap, now);
            (color, format!("The demo's backplane: {tap}."))
        }
    }
}

/// The password in a typed Redis URL, if it has one.
fn password_in(url: &str) -> Option<String> {
    let spec = RedisSpec::parse(url, &RedisOptions::default()).ok()?;
    spec.password().map(str::to_string)
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
        assert_eq!(password_in("rediss://:p%40ss@h").as_deref(), Some("p@ss"));
    }
}
