//! The send panel: pick a node, a target (all, others, group, user, connection) and a message (the
//! chat hub's methods, or any method with JSON arguments for a foreign hub), once or as a burst of
//! N at R per second; below, the traces: when Redis saw each message, when each node's probe got
//! it (per-hop latency), and which node did not within the timeout.
//!
//! Group, user and connection each have their own field (kept while another kind is picked; only
//! the picked kind's is sent). The trace table has fixed columns for short values and shares the
//! rest, cutting long text with "…" (whole on hover), so its Explain button stays on the panel at
//! 1024 px; an explanation opens under its own row. Burst lines are for bursts of several
//! messages, running or just finished; "Stop bursts" is enabled only while one runs.

use egui::{RichText, Ui};

use super::settings::Settings;
use super::{Action, widgets};
use crate::config::{MAX_BURST_COUNT, MAX_BURST_RATE};
use crate::monitor::model::Model;
use crate::monitor::probe::PROBE_USER;
use crate::monitor::{BurstState, MonitorCommand, SendBody, SendRequest, SendTarget};

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

    /// The name of this kind's own field ("group name"), for the kinds that have one.
    fn field(self) -> Option<&'static str> {
        match self {
            TargetKind::All | TargetKind::Others => None,
            TargetKind::Group => Some("group name"),
            TargetKind::User => Some("user id"),
            TargetKind::Connection => Some("connection id"),
        }
    }
}

/// The form's state between frames.
#[derive(Debug)]
pub struct SendUi {
    /// The sending node's hub URL.
    pub node: String,
    pub target: TargetKind,
    /// Each target kind's own field, kept while another kind is picked; only the picked kind's
    /// is sent (a group name typed never becomes a user id).
    pub group: String,
    pub user: String,
    pub connection: String,
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
            group: "room-1".to_string(),
            user: String::new(),
            connection: String::new(),
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
    /// Points the form at `target` (a pick in the Directory, a probe button): picks its kind and
    /// fills that kind's own field.
    pub fn set_target(&mut self, target: &SendTarget) {
        let (kind, value) = match target {
            SendTarget::All => (TargetKind::All, None),
            SendTarget::Others => (TargetKind::Others, None),
            SendTarget::Group(g) => (TargetKind::Group, Some(g)),
            SendTarget::User(u) => (TargetKind::User, Some(u)),
            SendTarget::Connection(c) => (TargetKind::Connection, Some(c)),
        };
        self.target = kind;
        if let (Some(field), Some(value)) = (self.field_mut(kind), value) {
            *field = value.clone();
        }
    }

    /// The field of a target kind that has one.
    fn field_mut(&mut self, kind: TargetKind) -> Option<&mut String> {
        match kind {
            TargetKind::All | TargetKind::Others => None,
            TargetKind::Group => Some(&mut self.group),
            TargetKind::User => Some(&mut self.user),
            TargetKind::Connection => Some(&mut self.connection),
        }
    }

    /// The request the form describes, or why it cannot be sent.
    pub fn request(&self, user: &str) -> Result<SendRequest, String> {
        if self.node.is_empty() {
            return Err("choose a node to send through".to_string());
        }
        let own = |field: &str| {
            let value = field.trim();
            if value.is_empty() {
                Err(format!(
                    "enter the {} to send to",
                    self.target.field().unwrap_or("target")
                ))
            } else {
                Ok(value.to_string())
            }
        };
        let target = match self.target {
            TargetKind::All => SendTarget::All,
            TargetKind::Others => SendTarget::Others,
            TargetKind::Group => SendTarget::Group(own(&self.group)?),
            TargetKind::User => SendTarget::User(own(&self.user)?),
            TargetKind::Connection => SendTarget::Connection(own(&self.connection)?),
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
    let kind_before = state.target;
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
            ui.horizontal_wrapped(|ui| {
                for kind in TargetKind::ALL {
                    ui.selectable_value(&mut state.target, kind, kind.label());
                }
                let kind = state.target;
                if let (Some(words), Some(field)) = (kind.field(), state.field_mut(kind)) {
                    let label = ui.label(words);
                    ui.add(
                        egui::TextEdit::singleline(field)
                            .id_salt(("send_target", kind.label()))
                            .hint_text(words)
                            .desired_width(180.0),
                    )
                    .labelled_by(label.id);
                }
            });
            ui.end_row();
            if state.target == TargetKind::Group {
                ui.label("");
                ui.checkbox(&mut state.probes_join, "probes join the group").on_hover_text(
                    "On: every probe joins the group first, so the trace follows the message to each node. \
                     Off: the group is left as it is (a group nobody is in gets nothing).",
                );
                ui.end_row();
            }

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
                    state.set_target(&SendTarget::User(PROBE_USER.to_string()));
                }
                for row in model.nodes.rows() {
                    if let Some(id) = &row.probe_connection_id
                        && ui
                            .button(format!("probe on {}", row.name))
                            .on_hover_text(format!("Send to the connection {id}, this node's probe"))
                            .clicked()
                    {
                        state.set_target(&SendTarget::Connection(id.clone()));
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
    if state.target != kind_before {
        // What was missing for the other kind is no news for this one.
        state.error = None;
    }
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
        let running = model.traces.burst_running();
        if ui
            .add_enabled(running, egui::Button::new("Stop bursts"))
            .on_hover_text("Stop every burst still sending")
            .on_disabled_hover_text("No burst is running (a burst is a Count above 1)")
            .clicked()
        {
            actions.push(Action::Monitor(MonitorCommand::StopBursts));
        }
    });
    if let Some(e) = &state.error {
        ui.label(RichText::new(e).color(widgets::BAD));
    }
    bursts(ui, model, now);

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

/// One line per burst running or just finished: "sent 37 of 100", and how many went when it was
/// stopped. A single send has no line (its trace row says it all).
fn bursts(ui: &mut Ui, model: &Model, now: u64) {
    for b in model.traces.bursts_shown(now).take(3) {
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

/// A trace's explanation, under its row: its causes, each with a verdict, the evidence and what
/// to do. Returns whether its "close" was clicked.
fn explanation(
    ui: &mut Ui,
    trace: &crate::monitor::model::traces::Trace,
    causes: &[crate::monitor::model::explain::Cause],
    name: &dyn Fn(&str) -> String,
) -> bool {
    use crate::monitor::model::explain::Verdict;
    let mut close = false;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!(
                    "Why: trace {:x}, via {} -> {}",
                    trace.id,
                    name(&trace.node),
                    target_text(&trace.target)
                ))
                .strong(),
            );
            if ui.button("close").clicked() {
                close = true;
            }
        });
        for cause in causes {
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
                    egui::Label::new(RichText::new(format!("What to do: {}", cause.action)).italics()).wrap(),
                );
            });
        }
    });
    close
}

/// The trace table's column widths for a table `width` wide: fixed columns for the short values
/// and the button, the rest shared by the route, the receipts and the status, so no cell pushes
/// the button off the panel (long text is cut with "…", whole on hover; the status wraps).
fn column_widths(width: f32, gap: f32) -> [f32; 7] {
    const TRACE: f32 = 64.0;
    const SENT: f32 = 92.0;
    const REDIS: f32 = 92.0;
    const BUTTON: f32 = 64.0;
    let rest = (width - TRACE - SENT - REDIS - BUTTON - 6.0 * gap).max(3.0 * MIN_FLEX);
    [
        TRACE,
        SENT,
        (rest * 0.3).max(MIN_FLEX),
        REDIS,
        (rest * 0.25).max(MIN_FLEX),
        (rest * 0.45).max(MIN_FLEX),
        BUTTON,
    ]
}

/// Hex digits of a trace id shown in its row (the last ones; the whole id on hover).
const TRACE_DIGITS: usize = 6;

/// Narrowest a shared column of the trace table gets.
const MIN_FLEX: f32 = 60.0;

/// A table cell exactly `width` wide.
fn cell(ui: &mut Ui, width: f32, add: impl FnOnce(&mut Ui)) {
    ui.allocate_ui_with_layout(
        egui::vec2(width, 0.0),
        egui::Layout::top_down(egui::Align::Min),
        |ui| {
            ui.set_width(width);
            add(ui);
        },
    );
}

/// A one-line cell: cut with "…" when too long, the whole text on hover.
fn short(ui: &mut Ui, width: f32, text: impl Into<egui::WidgetText>) {
    cell(ui, width, |ui| {
        ui.add(egui::Label::new(text).truncate());
    });
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
    ui.horizontal_wrapped(|ui| {
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
    // Explanations of traces no longer kept close by themselves.
    explaining.retain(|id| traces.get(*id).is_some());
    egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
        let gap = 8.0;
        let widths = column_widths(ui.available_width(), gap);
        let row = |ui: &mut Ui, fill: Option<egui::Color32>, add: &mut dyn FnMut(&mut Ui)| {
            egui::Frame::NONE
                .fill(fill.unwrap_or(egui::Color32::TRANSPARENT))
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal_top(|ui| {
                        ui.spacing_mut().item_spacing.x = gap;
                        add(ui);
                    });
                });
        };
        row(ui, None, &mut |ui| {
            for (t, w) in [
                "trace",
                "sent",
                "via -> to",
                "Redis saw it",
                "received by",
                "status",
                "why",
            ]
            .into_iter()
            .zip(widths)
            {
                short(ui, w, RichText::new(t).strong());
            }
        });
        let stripe = ui.visuals().faint_bg_color;
        for (i, trace) in traces.recent().take(200).enumerate() {
            let fill = (i % 2 == 1).then_some(stripe);
            row(ui, fill, &mut |ui| {
                // Ids of one run share their first digits: the last ones tell rows apart.
                let id = format!("{:x}", trace.id);
                let tail = id.len().saturating_sub(TRACE_DIGITS);
                cell(ui, widths[0], |ui| {
                    if tail == 0 {
                        ui.add(egui::Label::new(RichText::new(&id).monospace()).truncate());
                    } else {
                        ui.add(egui::Label::new(RichText::new(format!("…{}", &id[tail..])).monospace()))
                            .on_hover_text(format!("trace {id}"));
                    }
                });
                short(ui, widths[1], widgets::clock_ms(trace.sent_at_ms));
                short(
                    ui,
                    widths[2],
                    format!("{} -> {}", name(&trace.node), target_text(&trace.target)),
                );
                short(
                    ui,
                    widths[3],
                    trace
                        .redis_at_ms
                        .map(|r| format!("+{}", widgets::millis(r.saturating_sub(trace.sent_at_ms) as f64)))
                        .unwrap_or_else(|| "–".into()),
                );
                let hops: Vec<String> = trace
                    .receipts
                    .iter()
                    .map(|(node, at)| {
                        let from = trace.redis_at_ms.unwrap_or(trace.sent_at_ms);
                        format!("{} +{}", name(node), widgets::millis(at.saturating_sub(from) as f64))
                    })
                    .collect();
                short(
                    ui,
                    widths[4],
                    if hops.is_empty() {
                        "–".to_string()
                    } else {
                        hops.join(", ")
                    },
                );
                let (color, text) = status_text(trace, now, &name);
                // Wrapped to its width: a not-observable trace says several things.
                cell(ui, widths[5], |ui| {
                    ui.add(egui::Label::new(RichText::new(text).color(color)).wrap());
                });
                cell(ui, widths[6], |ui| {
                    if crate::monitor::model::explain::worth_explaining(trace, now) {
                        let open = explaining.contains(&trace.id);
                        let label = if open { "Hide" } else { "Explain" };
                        if ui
                            .button(label)
                            .on_hover_text("Why this message is missing something, with the evidence (shown under its row)")
                            .clicked()
                        {
                            if open {
                                explaining.remove(&trace.id);
                            } else {
                                explaining.insert(trace.id);
                            }
                        }
                    }
                });
            });
            if explaining.contains(&trace.id) {
                let close = match model.explain(trace.id, tap_prefix, now) {
                    Some(causes) => explanation(ui, trace, &causes, &name),
                    None => true,
                };
                if close {
                    explaining.remove(&trace.id);
                }
            }
        }
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
        s.group = " ".into();
        assert!(s.request("me").unwrap_err().contains("group"));
        s.group = "room".into();
        let r = s.request("me").unwrap();
        assert_eq!(r.target, SendTarget::Group("room".into()));
        // Each kind has its own field: the group name is not carried to the user.
        s.target = TargetKind::User;
        assert!(s.request("me").unwrap_err().contains("user id"));
        s.set_target(&SendTarget::User("ann".into()));
        assert_eq!(s.request("me").unwrap().target, SendTarget::User("ann".into()));
        s.target = TargetKind::Group;
        assert_eq!(s.request("me").unwrap().target, SendTarget::Group("room".into()));
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
        assert_eq!(h.state().state.user, PROBE_USER);

        h.get_by_label(&format!("probe on {name}")).click();
        h.run();
        assert_eq!(h.state().state.target, TargetKind::Connection);
        assert_eq!(h.state().state.connection, "probe-conn-1");
        h.get_by_label("Send message").click();
        h.run();
        let sent = h.state().actions.iter().any(|a| {
            matches!(a, Action::Monitor(MonitorCommand::Send(r)) if r.target == SendTarget::Connection("probe-conn-1".into()))
        });
        assert!(sent, "a connection send to the probe");
    }
}
