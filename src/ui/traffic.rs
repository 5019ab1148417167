//! The live traffic panel: filter (text, kind, hub, channel), pause, clear, a virtualized table
//! newest first (only the visible rows are laid out), and a detail pane with the decoded payload
//! as pretty JSON and a hex dump. Gap markers show where the tap could not see.

use egui::{Align2, Color32, FontId, RichText, Sense, Ui, vec2};

use super::{Action, widgets};
use crate::monitor::decode;
use crate::monitor::model::traffic::Filter;
use crate::monitor::model::{EntryKind, Model, TrafficEntry};

/// The panel's state between frames.
#[derive(Debug, Default)]
pub struct TrafficUi {
    /// The filter as edited (applied to the model when it changes).
    pub filter: Filter,
    /// The selected row's sequence number.
    pub selected: Option<u64>,
    /// Cached detail of the selected row: (seq, pretty JSON, hex).
    detail: Option<(u64, String, String)>,
}

/// Column x offsets (points) and titles.
const COLUMNS: [(f32, &str); 7] = [
    (0.0, "time"),
    (124.0, "kind"),
    (204.0, "hub"),
    (380.0, "to"),
    (500.0, "message"),
    (-120.0, "excl"),
    (-64.0, "size"),
];

pub fn show(ui: &mut Ui, model: &mut Model, state: &mut TrafficUi, actions: &mut Vec<Action>) {
    filter_bar(ui, model, state, actions);
    ui.separator();

    if let Some(name) = model.traffic.offline() {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Browsing capture {name} (offline)")).color(widgets::WARN));
            if ui.button("Back to live").clicked() {
                actions.push(Action::CloseCapture);
            }
        });
    }

    let detail_height = if state.selected.is_some() {
        ui.available_height() * 0.38
    } else {
        0.0
    };
    if let Some(seq) = state.selected {
        egui::Panel::bottom("traffic_detail")
            .resizable(true)
            .default_size(detail_height)
            .show(ui, |ui| detail_pane(ui, model, state, seq));
    }

    table(ui, model, state);
}

fn filter_bar(ui: &mut Ui, model: &mut Model, state: &mut TrafficUi, actions: &mut Vec<Action>) {
    let before = state.filter.clone();
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Filter");
        ui.add(
            egui::TextEdit::singleline(&mut state.filter.text)
                .hint_text("text in method, args, group, user…")
                .desired_width(200.0),
        )
        .labelled_by(label.id)
        .on_hover_text(
            "Case-insensitive: matched against the summary, method, arguments, target and channel",
        );
        let kind_label = ui.label("kind");
        egui::ComboBox::from_id_salt("filter_kind")
            .selected_text(state.filter.kind.map(EntryKind::label).unwrap_or("any"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.filter.kind, None, "any");
                for kind in EntryKind::ALL {
                    ui.selectable_value(&mut state.filter.kind, Some(kind), kind.label());
                }
            })
            .response
            .labelled_by(kind_label.id);
        let hub_label = ui.label("hub");
        egui::ComboBox::from_id_salt("filter_hub")
            .selected_text(state.filter.hub.as_deref().unwrap_or("any"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.filter.hub, None, "any");
                let hubs: Vec<String> = model.traffic.hubs().map(str::to_string).collect();
                for hub in hubs {
                    ui.selectable_value(&mut state.filter.hub, Some(hub.clone()), hub.as_str());
                }
            })
            .response
            .labelled_by(hub_label.id);
        let label = ui.label("channel");
        ui.add(
            egui::TextEdit::singleline(&mut state.filter.channel)
                .hint_text("glob: *room*")
                .desired_width(140.0),
        )
        .labelled_by(label.id);
        ui.separator();
        let paused = model.traffic.paused();
        if ui.button(if paused { "Resume" } else { "Pause" }).clicked() {
            model.traffic.set_paused(!paused);
        }
        if ui.button("Clear").clicked() {
            model.traffic.clear();
            state.selected = None;
            state.detail = None;
        }
        if ui.button("Export…").clicked() {
            actions.push(Action::Export(super::files::Format::JsonLines));
        }
    });
    if state.filter != before {
        model.traffic.set_filter(state.filter.clone());
    }
    let t = &model.traffic;
    ui.horizontal(|ui| {
        ui.label(format!("{} shown of {} kept", t.visible_len(), t.len()));
        let totals = t.totals();
        ui.label(format!(
            "· {} seen · {} evicted from the ring",
            totals.messages, totals.evicted
        ));
        if t.paused() {
            ui.label(RichText::new("· paused: the view is frozen, counting goes on").color(widgets::WARN));
        }
    });
}

fn table(ui: &mut Ui, model: &Model, state: &mut TrafficUi) {
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
    let font = FontId::monospace(row_height - 6.0);
    let width = ui.available_width();
    let x_of = |x: f32| if x < 0.0 { width + x } else { x };

    // Header.
    let (rect, _) = ui.allocate_exact_size(vec2(width, row_height), Sense::hover());
    for (x, title) in COLUMNS {
        ui.painter().text(
            rect.left_center() + vec2(x_of(x) + 4.0, 0.0),
            Align2::LEFT_CENTER,
            title,
            FontId::proportional(row_height - 6.0),
            ui.visuals().strong_text_color(),
        );
    }

    let total = model.traffic.visible_len();
    if total == 0 {
        ui.add_space(20.0);
        ui.vertical_centered(|ui| {
            ui.label(
                RichText::new("No traffic yet. Connect to Redis on the left, or widen the filter.").weak(),
            );
        });
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink(false)
        .show_rows(ui, row_height, total, |ui, range| {
            for i in range {
                let Some(entry) = model.traffic.visible(i) else {
                    continue;
                };
                let (rect, response) = ui.allocate_exact_size(vec2(width, row_height), Sense::click());
                let selected = state.selected == Some(entry.seq);
                let painter = ui.painter_at(rect);
                if selected {
                    painter.rect_filled(rect, 0.0, ui.visuals().selection.bg_fill);
                } else if response.hovered() {
                    painter.rect_filled(rect, 0.0, ui.visuals().widgets.hovered.weak_bg_fill);
                } else if i % 2 == 1 {
                    painter.rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
                }
                let text_color = ui.visuals().text_color();
                if entry.kind == EntryKind::Gap {
                    painter.rect_filled(
                        rect.shrink(1.0),
                        2.0,
                        Color32::from_rgba_unmultiplied(230, 80, 70, 60),
                    );
                    painter.text(
                        rect.left_center() + vec2(8.0, 0.0),
                        Align2::LEFT_CENTER,
                        format!("!! {}", entry.summary),
                        font.clone(),
                        widgets::BAD,
                    );
                } else {
                    let cells: [(f32, String, Color32); 7] = [
                        (COLUMNS[0].0, widgets::clock_ms(entry.at_ms), text_color),
                        (
                            COLUMNS[1].0,
                            entry.kind.label().to_string(),
                            kind_color(entry.kind),
                        ),
                        (
                            COLUMNS[2].0,
                            short(entry.hub.as_deref().unwrap_or(""), 22),
                            text_color,
                        ),
                        (
                            COLUMNS[3].0,
                            short(entry.scope.as_deref().unwrap_or(""), 20),
                            text_color,
                        ),
                        (
                            COLUMNS[4].0,
                            entry.summary.clone(),
                            if entry.error.is_some() {
                                widgets::BAD
                            } else {
                                text_color
                            },
                        ),
                        (COLUMNS[5].0, excluded(entry), text_color),
                        (COLUMNS[6].0, widgets::bytes(entry.size as u64), text_color),
                    ];
                    for (n, (x, text, color)) in cells.into_iter().enumerate() {
                        let left = x_of(x) + 4.0;
                        let right = COLUMNS.get(n + 1).map(|c| x_of(c.0)).unwrap_or(width) - 4.0;
                        let clip = egui::Rect::from_min_max(
                            egui::pos2(rect.left() + left, rect.top()),
                            egui::pos2(rect.left() + right.max(left), rect.bottom()),
                        );
                        ui.painter_at(clip).text(
                            egui::pos2(clip.left(), rect.center().y),
                            Align2::LEFT_CENTER,
                            text,
                            font.clone(),
                            color,
                        );
                    }
                }
                // Rows are painted, not widgets; this gives each visible one an accessible name (screen
                // readers, and the UI tests that find rows by their text).
                let name = format!(
                    "{} {} {}",
                    entry.kind.label(),
                    entry.scope.as_deref().unwrap_or(""),
                    entry.summary
                );
                response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
                if response.clicked() {
                    state.selected = if selected { None } else { Some(entry.seq) };
                }
            }
        });
}

fn detail_pane(ui: &mut Ui, model: &Model, state: &mut TrafficUi, seq: u64) {
    let Some(entry) = model.traffic.get(seq) else {
        ui.label(RichText::new("That message has left the ring buffer.").weak());
        if ui.button("Close").clicked() {
            state.selected = None;
        }
        return;
    };
    if state.detail.as_ref().map(|d| d.0) != Some(seq) {
        let json = serde_json::to_string_pretty(&decode::detail(entry)).unwrap_or_else(|e| e.to_string());
        state.detail = Some((seq, json, decode::hex_dump(&entry.payload, 4096)));
    }
    let Some((_, json, hex)) = &state.detail else {
        return;
    };
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("#{} {}", entry.seq, entry.channel))
                .strong()
                .monospace(),
        );
        ui.label(format!(
            "{} · {} · {}",
            widgets::clock_ms(entry.at_ms),
            entry.kind.label(),
            widgets::bytes(entry.size as u64)
        ));
        if let Some(e) = &entry.error {
            ui.label(RichText::new(e).color(widgets::BAD));
        }
        if ui.button("Close").clicked() {
            state.selected = None;
        }
    });
    ui.columns(2, |cols| {
        // The JSON in a read-only code editor (keeps the indentation, can be selected and
        // copied); the hex dump as one unwrapped monospace label, scrolled sideways if needed.
        egui::ScrollArea::both()
            .id_salt("detail_json")
            .auto_shrink(false)
            .show(&mut cols[0], |ui| {
                ui.add(
                    egui::TextEdit::multiline(&mut json.as_str())
                        .code_editor()
                        .desired_width(f32::INFINITY)
                        .desired_rows(4),
                );
            });
        egui::ScrollArea::both()
            .id_salt("detail_hex")
            .auto_shrink(false)
            .show(&mut cols[1], |ui| {
                ui.add(egui::Label::new(RichText::new(hex.as_str()).monospace()).extend());
            });
    });
}

fn excluded(entry: &TrafficEntry) -> String {
    if entry.excluded.is_empty() {
        String::new()
    } else {
        format!("{}", entry.excluded.len())
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// A stable color per kind, so a glance tells broadcasts from group traffic.
pub fn kind_color(kind: EntryKind) -> Color32 {
    match kind {
        EntryKind::All => Color32::from_rgb(100, 170, 255),
        EntryKind::Group => Color32::from_rgb(120, 210, 140),
        EntryKind::User => Color32::from_rgb(220, 170, 255),
        EntryKind::Connection => Color32::from_rgb(255, 200, 110),
        EntryKind::Groups | EntryKind::Ack => Color32::from_rgb(160, 160, 160),
        EntryKind::Return => Color32::from_rgb(255, 150, 200),
        EntryKind::Sr2 => Color32::from_rgb(90, 210, 210),
        EntryKind::Heartbeat => Color32::from_rgb(120, 120, 120),
        EntryKind::Other => Color32::from_rgb(200, 200, 120),
        EntryKind::Gap => widgets::BAD,
    }
}
