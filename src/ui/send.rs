//! The send panel: pick a node, a target (all, others, group, user, connection) and a message (the
//! chat hub's methods, or any method with JSON arguments for a foreign hub), once or as a burst of
//! N at R per second; below, the traces: when Redis saw each message, when each node's probe got
//! it (per-hop latency), and which node did not within the timeout.

use egui::{RichText, Ui};

use super::settings::Settings;
use super::{Action, widgets};
use crate::config::{MAX_BURST_COUNT, MAX_BURST_RATE};
use crate::monitor::model::Model;
use crate::monitor::probe::PROBE_USER;
use crate::monitor::{BurstState, MonitorCommand, SendBody, SendRequest, SendTarget};

/// Width of the traces' status column (its text wraps).
const STATUS_WIDTH: f32 = 380.0;

/// A trace whose receiver cannot be observed: neither good nor bad news.
const NEUTRAL: egui::Color32 = egui::Color32::from_rgb(120, 170, 220);

/// Which kind of target is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetKind {
    #[default]
    All,
    Others,
    Group,
    User,
    Connection,
}

impl TargetKind {
    const ALL: [TargetKind; 5] = [
        TargetKind::All,
        TargetKind::Others,
        TargetKind::Group,
        TargetKind::User,
        TargetKind::Connection,
    ];

    fn label(self) -> &'static str {
        match self {
            TargetKind::All => "all",
            TargetKind::Others => "others",
            TargetKind::Group => "group",
            TargetKind::User => "user",
            TargetKind::Connection => "connection",
        }
    }
}

/// The form's state between frames.
#[derive(Debug)]
pub struct SendUi {
    /// The sending node's hub URL.
    pub node: String,
    pub target: TargetKind,
    /// The group name, user id or connection id.
    pub scope: String,
    /// Any method with JSON args instead of the chat methods.
    pub custom: bool,
    pub text: String,
    pub method: String,
    pub args_json: String,
    pub count: u32,
    pub rate: f64,
    /// For a group target: the probes join the group first (see [`SendRequest::probes_join`]).
    pub probes_join: bool,
    pub error: Option<String>,
    /// The traces whose Explain is open.
    pub explaining: std::collections::BTreeSet<u64>,
}

impl Default for SendUi {
    fn default() -> Self {
        Self {
            node: String::new(),
            target: TargetKind::All,
            scope: "room-1".to_string(),
            custom: false,
            text: "hello from the dashboard".to_string(),
            method: "SendMessage".to_string(),
            args_json: r#"["dashboard", "hello {trace}"]"#.to_string(),
            count: 1,
            rate: 10.0,
            probes_join: true,
            error: None,
            explaining: std::collections::BTreeSet::new(),
        }
    }
}

impl SendUi {
    /// Points the form at `target` (a pick in the Directory).
    pub fn set_target(&mut self, target: &SendTarget) {
        let (kind, scope) = match target {
            SendTarget::All => (TargetKind::All, None),
            SendTarget::Others => (TargetKind::Others, None),
            SendTarget::Group(g) => (TargetKind::Group, Some(g)),
            SendTarget::User(u) => (TargetKind::User, Some(u)),
            SendTarget::Connection(c) => (TargetKind::Connection, Some(c)),
        };
        self.target = kind;
        if let Some(scope) = scope {
            self.scope = scope.clone();
        }
    }

    /// The request the form describes, or why it cannot be sent.
    pub fn request(&self, user: &str) -> Result<SendRequest, String> {
        if self.node.is_empty() {
            return Err("choose a node to send through".to_string());
        }
        let scope = self.scope.trim().to_string();
        let target = match self.target {
            TargetKind::All => SendTarget::All,
            TargetKind::Others => SendTarget::Others,
            TargetKind::Group | TargetKind::User | TargetKind::Connection if scope.is_empty() => {
                return Err(format!("enter the {} to send to", self.target.label()));
            }
            TargetKind::Group => SendTarget::Group(scope),
            TargetKind::User => SendTarget::User(scope),
            TargetKind::Connection => SendTarget::Connection(scope),
        };
        let body = if self.custom {
            let parsed: serde_json::Value = serde_json::from_str(&self.args_json)
                .map_err(|e| format!("arguments are not valid JSON: {e}"))?;
            if !parsed.is_array() {
                return Err("arguments must be a JSON array, like [\"ann\", \"hi\"]".to_string());
            }
            if self.method.trim().is_empty() {
                return Err("enter a method name".to_string());
            }
            SendBody::Custom {
                method: self.method.trim().to_string(),
                args_json: self.args_json.clone(),
            }
        } else {
            SendBody::Chat {
                user: user.to_string(),
                text: self.text.clone(),
            }
        };
        Ok(SendRequest {
            node: self.node.clone(),
            target,
            body,
            count: self.count.max(1),
            rate_per_sec: self.rate.max(0.1),
            probes_join: self.probes_join,
        })
    }
}

pub fn show(
    ui: &mut Ui,
    model: &Model,
    state: &mut SendUi,
    settings: &mut Settings,
    now: u64,
    actions: &mut Vec<Action>,
) {
    ui.heading("Send a test message");
    egui::Grid::new("send_form")
        .num_columns(2)
        .spacing([10.0, 6.0])
        .show(ui, |ui| {
            let node_label = ui.label("Through node");
            let current = model
                .nodes
                .get(&state.node)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| {
                    if state.node.is_empty() {
                        "choose…".to_string()
                    } else {
                        state.node.clone()
                    }
                });
            egui::ComboBox::from_id_salt("send_node")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for row in model.nodes.rows() {
                        ui.selectable_value(&mut state.node, row.target.hub_url.clone(), &row.name);
                    }
                })
                .response
                .labelled_by(node_label.id);
            ui.end_row();

            ui.label("To");
            ui.horizontal(|ui| {
                for kind in TargetKind::ALL {
                    ui.selectable_value(&mut state.target, kind, kind.label());
                }
                if matches!(
                    state.target,
                    TargetKind::Group | TargetKind::User | TargetKind::Connection
                ) {
                    ui.add(
                        egui::TextEdit::singleline(&mut state.scope)
                            .hint_text(state.target.label())
                            .desired_width(160.0),
                    );
                }
                if state.target == TargetKind::Group {
                    ui.checkbox(&mut state.probes_join, "probes join the group").on_hover_text(
                        "On: every probe joins the group first, so the trace follows the message to each node. \
                         Off: the group is left as it is (a group nobody is in gets nothing).",
                    );
                }
            });
            ui.end_row();

            // The probes' own ids: a user or connection send a probe receives is traced end to
            // end; one to any other client can only be followed as far as Redis.
            ui.label("Probe targets");
            ui.horizontal_wrapped(|ui| {
                if ui
                    .button("probes' user")
                    .on_hover_text(format!(
                        "Send to the user {PROBE_USER}: every node's probe receives it, so the trace follows it to each node"
                    ))
                    .clicked()
                {
                    state.target = TargetKind::User;
                    state.scope = PROBE_USER.to_string();
                }
                for row in model.nodes.rows() {
                    if let Some(id) = &row.probe_connection_id
                        && ui
                            .button(format!("probe on {}", row.name))
                            .on_hover_text(format!("Send to the connection {id}, this node's probe"))
                            .clicked()
                    {
                        state.target = TargetKind::Connection;
                        state.scope = id.clone();
                    }
                }
            });
            ui.end_row();

            ui.label("Message");
            ui.horizontal(|ui| {
                ui.selectable_value(&mut state.custom, false, "chat hub");
                ui.selectable_value(&mut state.custom, true, "any method");
            });
            ui.end_row();

            if state.custom {
                let label = ui.label("Method");
                ui.add(egui::TextEdit::singleline(&mut state.method).desired_width(200.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Arguments (JSON)");
                ui.add(egui::TextEdit::singleline(&mut state.args_json).desired_width(360.0))
                    .labelled_by(label.id)
                    .on_hover_text("A JSON array. {trace} inside a string becomes the trace marker.");
                ui.end_row();
            } else {
                let label = ui.label("From user");
                ui.add(egui::TextEdit::singleline(&mut settings.send_user).desired_width(200.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Text");
                ui.add(egui::TextEdit::singleline(&mut state.text).desired_width(360.0))
                    .labelled_by(label.id);
                ui.end_row();
            }

            let count_label = ui.label("Count");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut state.count).range(1..=MAX_BURST_COUNT))
                    .labelled_by(count_label.id);
                ui.label("at");
                let rate = ui.add(
                    egui::DragValue::new(&mut state.rate)
                        .range(0.1..=MAX_BURST_RATE)
                        .speed(1.0),
                );
                let per_second = ui.label("per second");
                rate.labelled_by(per_second.id);
                ui.label(
                    RichText::new(format!(
                        "(at most {} messages, {}/s)",
                        thousands(MAX_BURST_COUNT as u64),
                        thousands(MAX_BURST_RATE as u64)
                    ))
                    .weak(),
                );
            });
            ui.end_row();
        });
    ui.horizontal(|ui| {
        if ui.button(RichText::new("Send message").strong()).clicked() {
            match state.request(&settings.send_user) {
                Ok(request) => {
                    state.error = None;
                    actions.push(Action::Monitor(MonitorCommand::Send(request)));
                }
                Err(e) => state.error = Some(e),
            }
        }
        if ui.button("Stop bursts").clicked() {
            actions.push(Action::Monitor(MonitorCommand::StopBursts));
        }
    });
    if let Some(e) = &state.error {
        ui.label(RichText::new(e).color(widgets::BAD));
    }
    bursts(ui, model);

    ui.separator();
    let tap_prefix =
        (model.tap.state != crate::monitor::LinkState::Idle).then_some(settings.channel_prefix.as_str());
    traces(ui, model, &mut state.explaining, tap_prefix, now);
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line per recent send request: "sent 37 of 100", and how many went when it was stopped.
fn bursts(ui: &mut Ui, model: &Model) {
    for b in model.traces.bursts().take(3) {
        let node = model.nodes.name_or_url(&b.node);
        let refused = if b.failed > 0 {
            format!(" ({} refused)", b.failed)
        } else {
            String::new()
        };
        let (color, text) = match b.state {
            BurstState::Running => (
                widgets::WARN,
                format!("via {node}: sent {} of {}{refused}…", b.sent, b.total),
            ),
            BurstState::Done => (
                widgets::IDLE,
                format!("via {node}: sent {} of {}{refused}, done", b.sent, b.total),
            ),
            BurstState::Stopped => (
                widgets::WARN,
                format!("via {node}: stopped after {} of {}{refused}", b.sent, b.total),
            ),
        };
        ui.label(RichText::new(text).color(color));
    }
}

/// The open explanations, each in a frame with its causes: verdict, evidence, what to do.
fn explanations(
    ui: &mut Ui,
    model: &Model,
    open: &mut std::collections::BTreeSet<u64>,
    tap_prefix: Option<&str>,
    now: u64,
    name: &dyn Fn(&str) -> String,
) {
    use crate::monitor::model::explain::Verdict;
    let mut close = Vec::new();
    // Newest first, as in the table below.
    for &id in open.iter().rev() {
        let (Some(trace), Some(causes)) = (model.traces.get(id), model.explain(id, tap_prefix, now)) else {
            close.push(id);
            continue;
        };
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new(format!(
                        "Why: trace {:x}, via {} -> {}",
                        id,
                        name(&trace.node),
                        target_text(&trace.target)
                    ))
                    .strong(),
                );
                if ui.small_button("close").clicked() {
                    close.push(id);
                }
            });
            for cause in &causes {
                let (color, tag) = match cause.verdict {
                    Verdict::Expected => (widgets::OK, "expected"),
                    Verdict::Fault => (widgets::BAD, "fault"),
                    Verdict::Unknown => (widgets::WARN, "unknown"),
                };
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(format!("[{tag}]")).color(color).monospace());
                    ui.add(egui::Label::new(RichText::new(&cause.headline).color(color).strong()).wrap());
                });
                for line in &cause.evidence {
                    ui.horizontal_wrapped(|ui| {
                        ui.add_space(16.0);
                        ui.add(egui::Label::new(format!("• {line}")).wrap());
                    });
                }
                ui.horizontal_wrapped(|ui| {
                    ui.add_space(16.0);
                    ui.add(
                        egui::Label::new(RichText::new(format!("What to do: {}", cause.action)).italics())
                            .wrap(),
                    );
                });
            }
        });
    }
    for id in close {
        open.remove(&id);
    }
}

fn traces(
    ui: &mut Ui,
    model: &Model,
    explaining: &mut std::collections::BTreeSet<u64>,
    tap_prefix: Option<&str>,
    now: u64,
) {
    let traces = &model.traces;
    let summary = traces.summary();
    ui.horizontal(|ui| {
        ui.label(RichText::new("Traces").strong());
        ui.label(format!(
            "{} sent · {} delivered everywhere · {} partial · {} failed · {} not observable · end to end per message p50 {} p95 {} max {}",
            summary.count,
            summary.delivered,
            summary.partial,
            summary.failed,
            summary.not_observable,
            summary.p50_ms.map(widgets::millis).unwrap_or_else(|| "–".into()),
            summary.p95_ms.map(widgets::millis).unwrap_or_else(|| "–".into()),
            summary.max_ms.map(widgets::millis).unwrap_or_else(|| "–".into()),
        ));
    });
    let name = |url: &str| model.nodes.name_or_url(url);
    egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
        explanations(ui, model, explaining, tap_prefix, now, &name);
        egui::Grid::new("traces")
            .striped(true)
            .num_columns(7)
            .spacing([12.0, 4.0])
            .show(ui, |ui| {
                for t in [
                    "trace",
                    "sent",
                    "via -> to",
                    "Redis saw it",
                    "received by",
                    "status",
                    "why",
                ] {
                    ui.label(RichText::new(t).strong());
                }
                ui.end_row();
                for trace in traces.recent().take(200) {
                    ui.label(RichText::new(format!("{:x}", trace.id)).monospace());
                    ui.label(widgets::clock_ms(trace.sent_at_ms));
                    ui.label(format!("{} -> {}", name(&trace.node), target_text(&trace.target)));
                    ui.label(
                        trace
                            .redis_at_ms
                            .map(|r| {
                                format!("+{}", widgets::millis(r.saturating_sub(trace.sent_at_ms) as f64))
                            })
                            .unwrap_or_else(|| "–".into()),
                    );
                    let hops: Vec<String> = trace
                        .receipts
                        .iter()
                        .map(|(node, at)| {
                            let from = trace.redis_at_ms.unwrap_or(trace.sent_at_ms);
                            format!(
                                "{} +{}",
                                name(node),
                                widgets::millis(at.saturating_sub(from) as f64)
                            )
                        })
                        .collect();
                    ui.label(if hops.is_empty() {
                        "–".to_string()
                    } else {
                        hops.join(", ")
                    });
                    let (color, text) = status_text(trace, now, &name);
                    // Wrapped to a fixed width: a not-observable trace says several things.
                    ui.vertical(|ui| {
                        ui.set_max_width(STATUS_WIDTH);
                        ui.add(egui::Label::new(RichText::new(text).color(color)).wrap());
                    });
                    if crate::monitor::model::explain::worth_explaining(trace, now) {
                        let open = explaining.contains(&trace.id);
                        let label = if open { "Hide" } else { "Explain" };
                        if ui
                            .button(label)
                            .on_hover_text("Why this message is missing something, with the evidence")
                            .clicked()
                        {
                            if open {
                                explaining.remove(&trace.id);
                            } else {
                                explaining.insert(trace.id);
                            }
                        }
                    } else {
                        ui.label("");
                    }
                    ui.end_row();
                }
            });
        if traces.recent().next().is_none() {
            ui.label(RichText::new("Send a message: its trace shows up here.").weak());
        }
    });
}

fn target_text(target: &SendTarget) -> String {
    match target {
        SendTarget::All => "all".into(),
        SendTarget::Others => "others".into(),
        SendTarget::Group(g) => format!("group {g}"),
        SendTarget::User(u) => format!("user {u}"),
        SendTarget::Connection(c) => format!("connection {c}"),
    }
}

fn status_text(
    trace: &crate::monitor::model::traces::Trace,
    now: u64,
    name: &dyn Fn(&str) -> String,
) -> (egui::Color32, String) {
    use crate::monitor::model::traces::TraceStatus;
    match trace.status(now) {
        TraceStatus::Pending => (widgets::WARN, "waiting…".to_string()),
        TraceStatus::Delivered => (widgets::OK, "delivered".to_string()),
        TraceStatus::Partial { missing } if missing.is_empty() => {
            (widgets::WARN, "no probe received it".to_string())
        }
        TraceStatus::Partial { missing } => (
            widgets::BAD,
            format!(
                "not received by {}",
                missing.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
            ),
        ),
        TraceStatus::Failed(e) => (widgets::BAD, format!("failed: {e}")),
        TraceStatus::NotObservable => (NEUTRAL, not_observable_text(trace, name)),
    }
}

/// What was observed of a message to a client that is not a probe, and what cannot be.
fn not_observable_text(
    trace: &crate::monitor::model::traces::Trace,
    name: &dyn Fn(&str) -> String,
) -> String {
    let mut parts = vec![if trace.redis_at_ms.is_some() {
        "Redis saw the publish".to_string()
    } else {
        "the tap did not see it on Redis".to_string()
    }];
    if let Some(lookup) = &trace.lookup {
        if let Some(n) = lookup.subscribers {
            let channel = lookup.channel.as_deref().unwrap_or("its channel");
            parts.push(format!(
                "{n} subscriber{} on {channel}",
                if n == 1 { "" } else { "s" }
            ));
        }
        let names = |urls: &[String]| urls.iter().map(|u| name(u)).collect::<Vec<_>>().join(", ");
        if !lookup.holders.is_empty() {
            parts.push(format!("held by {}", names(&lookup.holders)));
        } else if lookup.unknown.is_empty() {
            parts.push("no watched node holds it".to_string());
        }
        if !lookup.unknown.is_empty() {
            parts.push(format!("{} could not say", names(&lookup.unknown)));
        }
        if let Some(note) = &lookup.note {
            parts.push(note.clone());
        }
    }
    parts.push("delivery to that client is not observable".to_string());
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_says_what_is_missing() {
        let mut s = SendUi::default();
        assert!(s.request("me").unwrap_err().contains("node"));
        s.node = "http://h/chat".into();
        s.target = TargetKind::Group;
        s.scope = " ".into();
        assert!(s.request("me").unwrap_err().contains("group"));
        s.scope = "room".into();
        let r = s.request("me").unwrap();
        assert_eq!(r.target, SendTarget::Group("room".into()));
        s.custom = true;
        s.args_json = "{".into();
        assert!(s.request("me").unwrap_err().contains("not valid JSON"));
        s.args_json = "{}".into();
        assert!(s.request("me").unwrap_err().contains("array"));
    }

    /// The form, the model and the actions a frame produced, for the kittest.
    struct Form {
        model: Model,
        state: SendUi,
        settings: Settings,
        actions: Vec<Action>,
    }

    #[test]
    fn probe_targets_are_one_click_away_and_limits_and_progress_are_stated() {
        use crate::monitor::model::Limits;
        use crate::monitor::{BurstProgress, MonitorEvent, NodeEvent, NodeTarget};
        use egui_kittest::Harness;
        use egui_kittest::kittest::Queryable;

        let mut model = Model::new(Limits::default());
        let hub_url = "http://127.0.0.1:1/chat".to_string();
        model.nodes.upsert(NodeTarget {
            hub_url: hub_url.clone(),
            monitor_url: None,
        });
        let connected = NodeEvent::ProbeConnected {
            connection_id: "probe-conn-1".into(),
        };
        model.apply(
            MonitorEvent::Node {
                hub_url: hub_url.clone(),
                event: connected,
            },
            1,
        );
        model.apply(
            MonitorEvent::Burst(BurstProgress {
                id: 9,
                node: hub_url.clone(),
                sent: 37,
                failed: 0,
                total: 100,
                state: BurstState::Stopped,
            }),
            1,
        );
        let name = model
            .nodes
            .get(&hub_url)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let form = Form {
            model,
            state: SendUi {
                node: hub_url.clone(),
                ..SendUi::default()
            },
            settings: Settings::default(),
            actions: Vec::new(),
        };
        let mut h = Harness::builder()
            .with_size(egui::vec2(1200.0, 700.0))
            .build_ui_state(
                |ui, f: &mut Form| show(ui, &f.model, &mut f.state, &mut f.settings, 2, &mut f.actions),
                form,
            );
        h.run();
        assert!(
            h.query_by_label_contains("at most 100,000 messages, 10,000/s")
                .is_some()
        );
        assert!(h.query_by_label_contains("stopped after 37 of 100").is_some());

        h.get_by_label("probes' user").click();
        h.run();
        assert_eq!(h.state().state.target, TargetKind::User);
        assert_eq!(h.state().state.scope, PROBE_USER);

        h.get_by_label(&format!("probe on {name}")).click();
        h.run();
        assert_eq!(h.state().state.target, TargetKind::Connection);
        assert_eq!(h.state().state.scope, "probe-conn-1");
        h.get_by_label("Send message").click();
        h.run();
        let sent = h.state().actions.iter().any(|a| {
            matches!(a, Action::Monitor(MonitorCommand::Send(r)) if r.target == SendTarget::Connection("probe-conn-1".into()))
        });
        assert!(sent, "a connection send to the probe");
    }
}
