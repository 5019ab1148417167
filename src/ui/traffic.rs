//! The live traffic panel: filter (text, kind, hub, channel; Ctrl+F focuses it, × clears it),
//! pause, clear, a virtualized table newest first (only the visible rows are laid out), and a
//! detail pane with the decoded payload as pretty JSON and a hex dump. Gap markers show where the
//! tap could not see.
//!
//! The table's columns can be resized (drag a header edge) and hidden (the Columns menu); the hub
//! column collapses by itself while only one hub is seen. A message too long for its cell ends
//! in "…" with the full text on hover. Clicking a kind, hub, target or method filters by it;
//! clicking elsewhere selects the row, and the selected row (else the row under the pointer)
//! keeps its place on screen as new rows arrive above it; then a "N new rows above — jump to newest"
//! button over the table's top counts the rows above (and those a pause holds back) and scrolls
//! back to them (resuming first). A right click offers copy (JSON, hex, channel), the same
//! filters, and "Hide <kind> rows" (shown in the filter bar, with a button to show them again).
//! The detail pane says so when the filter hides its row.

use egui::text::{LayoutJob, TextWrapping};
use egui::{Align2, Color32, FontId, Key, KeyboardShortcut, Modifiers, RichText, Sense, Ui, vec2};

mod columns;

pub use columns::{Column, Columns};

use super::{Action, widgets};
use crate::monitor::detail;
use crate::monitor::model::traffic::Filter;
use crate::monitor::model::{EntryKind, Model, TrafficEntry};

/// A value in a row that a click filters by.
#[derive(Debug, Clone, PartialEq)]
enum FilterBy {
    Kind(EntryKind),
    Hub(String),
    Channel(String),
    Method(String),
}

impl FilterBy {
    fn describe(&self) -> String {
        match self {
            FilterBy::Kind(k) => format!("kind {}", k.label()),
            FilterBy::Hub(h) => format!("hub {h}"),
            FilterBy::Channel(c) => format!("channel {c}"),
            FilterBy::Method(m) => format!("method {m}"),
        }
    }

    fn apply(self, filter: &mut Filter) {
        match self {
            FilterBy::Kind(k) => filter.kind = Some(k),
            FilterBy::Hub(h) => filter.hub = Some(h),
            FilterBy::Channel(c) => filter.channel = c,
            FilterBy::Method(m) => filter.text = m,
        }
    }
}

/// The panel's state between frames.
#[derive(Debug, Default)]
pub struct TrafficUi {
    /// The filter as edited (applied to the model when it changes).
    pub filter: Filter,
    /// The selected row's sequence number.
    pub selected: Option<u64>,
    /// Cached detail of the selected row: (seq, pretty JSON, hex).
    detail: Option<(u64, String, String)>,
    pub columns: Columns,
    /// The selected row's index in the view and the scroll offset, as of the last frame: when
    /// rows arrive above it, the offset moves by as many rows so it stays where it was.
    anchor: Option<(u64, usize, f32)>,
    /// The row under the pointer in the last frame: anchored like the selection while no row is
    /// selected, so rows do not slide away under the pointer.
    hovered: Option<u64>,
    /// What the last Copy put on the clipboard ("channel of #12"), shown in the panel.
    pub copied: Option<String>,
    /// The newest row seen at the top of the table (the rows newer than it are counted as new
    /// while the table is scrolled away from the top).
    newest_seen: Option<u64>,
    /// "Jump to newest" was clicked: scroll to the top in the next frame.
    jump: bool,
    /// ... and resume first (the new rows were held back by the pause).
    resume: bool,
    /// A row menu asked to hide this kind.
    hide: Option<EntryKind>,
}

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

    let filter_by = table(ui, model, state);
    if std::mem::take(&mut state.resume) {
        model.traffic.set_paused(false);
    }
    if let Some(by) = filter_by {
        by.apply(&mut state.filter);
        model.traffic.set_filter(state.filter.clone());
    }
    if let Some(kind) = state.hide.take() {
        let mut hidden = model.traffic.hidden_kinds().to_vec();
        if !hidden.contains(&kind) {
            hidden.push(kind);
        }
        model.traffic.set_hidden_kinds(hidden);
    }
}

fn filter_bar(ui: &mut Ui, model: &mut Model, state: &mut TrafficUi, actions: &mut Vec<Action>) {
    let before = state.filter.clone();
    let focus = ui.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::F)));
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Filter");
        let text = ui
            .add(
                egui::TextEdit::singleline(&mut state.filter.text)
                    .hint_text("text in method, args, group, user…  (Ctrl+F)")
                    .desired_width(220.0),
            )
            .labelled_by(label.id)
            .on_hover_text(
                "Case-insensitive: matched against the summary, method, arguments, target and channel (Ctrl+F)",
            );
        if focus {
            text.request_focus();
        }
        let hiding = !model.traffic.hidden_kinds().is_empty();
        if ui
            .add_enabled(!state.filter.is_empty() || hiding, egui::Button::new("×"))
            .on_hover_text("Clear the filter (text, kind, hub and channel) and show hidden kinds again")
            .clicked()
        {
            state.filter = Filter::default();
            model.traffic.set_hidden_kinds(Vec::new());
        }
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
        let one_hub = model.traffic.hubs().nth(1).is_none();
        ui.menu_button("Columns", |ui| columns::menu(ui, &mut state.columns, one_hub));
    });
    if state.filter != before {
        model.traffic.set_filter(state.filter.clone());
    }
    let hidden = model.traffic.hidden_kinds().to_vec();
    if !hidden.is_empty() {
        ui.horizontal_wrapped(|ui| {
            let words: Vec<&str> = hidden.iter().map(|k| k.label()).collect();
            ui.label(RichText::new(format!("Hidden: {} rows", words.join(", "))).color(widgets::WARN));
            for kind in &hidden {
                if ui
                    .button(format!("Show {} rows", kind.label()))
                    .on_hover_text("Undo \"Hide\" from the row menu")
                    .clicked()
                {
                    let rest = hidden.iter().copied().filter(|k| k != kind).collect();
                    model.traffic.set_hidden_kinds(rest);
                }
            }
        });
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
        if let Some(copied) = &state.copied {
            ui.label(RichText::new(format!("· {copied}")).weak());
        }
    });
}

/// The index of the row with `seq` in the view (newest first, so seqs descend), if shown.
fn index_of(model: &Model, seq: u64) -> Option<usize> {
    let (mut lo, mut hi) = (0, model.traffic.visible_len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let at = model.traffic.visible(mid)?.seq;
        if at == seq {
            return Some(mid);
        } else if at > seq {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}

/// One cell's text, shortened with "…" to `width`.
fn cell_galley(
    ui: &Ui,
    text: String,
    font: &FontId,
    color: Color32,
    width: f32,
) -> std::sync::Arc<egui::Galley> {
    let mut job = LayoutJob::simple_singleline(text, font.clone(), color);
    job.wrap = TextWrapping {
        max_width: width.max(1.0),
        max_rows: 1,
        break_anywhere: true,
        overflow_character: Some('…'),
    };
    ui.painter().layout_job(job)
}

/// Draws the table; returns a filter the user clicked.
fn table(ui: &mut Ui, model: &Model, state: &mut TrafficUi) -> Option<FilterBy> {
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
    let pitch = row_height + ui.spacing().item_spacing.y;
    let font = FontId::monospace(row_height - 6.0);
    let width = ui.available_width();
    let one_hub = model.traffic.hubs().nth(1).is_none();
    let cells = state.columns.layout(width, one_hub);

    // Header, with a drag handle on the inner edge of every column but the message.
    let (rect, _) = ui.allocate_exact_size(vec2(width, row_height), Sense::hover());
    let message_x = cells
        .iter()
        .find(|(c, _, _)| *c == Column::Message)
        .map_or(0.0, |(_, x, _)| *x);
    for (column, x, w) in &cells {
        ui.painter().text(
            rect.left_center() + vec2(x + 4.0, 0.0),
            Align2::LEFT_CENTER,
            column.title(),
            FontId::proportional(row_height - 6.0),
            ui.visuals().strong_text_color(),
        );
        if *column == Column::Message {
            continue;
        }
        // Left of the message: the handle is the right edge; right of it: the left edge.
        let before_message = *x < message_x;
        let edge = if before_message { x + w } else { *x };
        let handle = egui::Rect::from_center_size(
            egui::pos2(rect.left() + edge, rect.center().y),
            vec2(8.0, row_height),
        );
        let id = ui.scope_id().with(("traffic_column_edge", column.index()));
        let response = ui
            .interact(handle, id, Sense::drag())
            .on_hover_cursor(egui::CursorIcon::ResizeHorizontal);
        let stroke = if response.hovered() || response.dragged() {
            ui.visuals().widgets.hovered.fg_stroke
        } else {
            ui.visuals().widgets.noninteractive.bg_stroke
        };
        ui.painter().vline(rect.left() + edge, rect.y_range(), stroke);
        if response.dragged() {
            let dx = response.drag_delta().x;
            let width = &mut state.columns.widths[column.index()];
            *width = (*width + if before_message { dx } else { -dx }).max(columns::MIN_COLUMN);
        }
    }

    let total = model.traffic.visible_len();
    if total == 0 {
        ui.add_space(20.0);
        ui.vertical_centered(|ui| {
            ui.label(
                RichText::new("No traffic yet. Connect to Redis on the left, or widen the filter.").weak(),
            );
        });
        return None;
    }

    // Keep the selected row (else the row under the pointer, so it can be read and clicked)
    // where it was on screen while rows arrive above it.
    let anchor_seq = state.selected.or(state.hovered);
    let anchor_index = anchor_seq.and_then(|seq| index_of(model, seq));
    let mut area = egui::ScrollArea::vertical().auto_shrink(false);
    if let (Some(seq), Some(now_index), Some((then_seq, then_index, offset))) =
        (anchor_seq, anchor_index, state.anchor)
        && seq == then_seq
        && now_index != then_index
    {
        let moved = (now_index as f32 - then_index as f32) * pitch;
        area = area.vertical_scroll_offset((offset + moved).max(0.0));
    }

    if std::mem::take(&mut state.jump) {
        area = area.vertical_scroll_offset(0.0);
    }

    // Rows arriving grow the content in the same frame as the offset moves; with rubber banding
    // the new offset would look like overscroll (against last frame's size) and spring back.
    ui.spacing_mut().scroll.kinetic.rubber_band = false;
    let mut filter_by = None;
    state.hovered = None;
    let output = area.show_rows(ui, row_height, total, |ui, range| {
        for i in range {
            let Some(entry) = model.traffic.visible(i) else {
                continue;
            };
            if let Some(by) = row(ui, entry, i, width, row_height, &font, &cells, state) {
                filter_by = Some(by);
            }
        }
    });
    state.anchor = match (anchor_seq, anchor_index) {
        (Some(seq), Some(index)) => Some((seq, index, output.state.clamped_offset().y)),
        _ => None,
    };
    // Rows newer than the newest seen at the top: counted while the table is scrolled away (by
    // the user, or by the selected row keeping its place).
    let newest = model.traffic.visible(0).map(|e| e.seq);
    if output.state.clamped_offset().y < pitch * 0.5 || state.newest_seen.is_none() {
        state.newest_seen = newest;
    }
    // Paused, the rows that arrived since wait behind the pause.
    let held = model.traffic.held_back();
    let new_rows = state.newest_seen.map_or(0, |seen| newer_than(model, seen)) + held;
    if new_rows > 0 {
        // Over the table's top, so the rows do not move when it shows up.
        let text = format!(
            "{new_rows} new row{} above — {}jump to newest",
            if new_rows == 1 { "" } else { "s" },
            if held > 0 { "resume and " } else { "" }
        );
        let width = if held > 0 { 340.0_f32 } else { 260.0 };
        let size = vec2(width.min(output.inner_rect.width()), row_height + 6.0);
        let rect = egui::Rect::from_center_size(
            egui::pos2(
                output.inner_rect.center().x,
                output.inner_rect.top() + size.y / 2.0 + 2.0,
            ),
            size,
        );
        let button = egui::Button::new(RichText::new(text).strong()).fill(ui.visuals().selection.bg_fill);
        if ui
            .put(rect, button)
            .on_hover_text("Rows arrived above the ones on screen; click to scroll to the newest")
            .clicked()
        {
            state.jump = true;
            state.resume = held > 0;
            ui.ctx().request_repaint();
        }
    }
    filter_by
}

/// How many rows of the view are newer than `seq` (the view is newest first, so seqs descend).
fn newer_than(model: &Model, seq: u64) -> usize {
    let (mut lo, mut hi) = (0, model.traffic.visible_len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        match model.traffic.visible(mid) {
            Some(e) if e.seq > seq => lo = mid + 1,
            _ => hi = mid,
        }
    }
    lo
}

/// One row of the table; returns a filter the user clicked.
#[allow(clippy::too_many_arguments)]
fn row(
    ui: &mut Ui,
    entry: &TrafficEntry,
    i: usize,
    width: f32,
    row_height: f32,
    font: &FontId,
    cells: &[(Column, f32, f32)],
    state: &mut TrafficUi,
) -> Option<FilterBy> {
    let (rect, _) = ui.allocate_exact_size(vec2(width, row_height), Sense::hover());
    // Keyed by seq, so a context menu stays on its message while rows arrive.
    let response = ui.interact(
        rect,
        ui.scope_id().with(("traffic_row", entry.seq)),
        Sense::click(),
    );
    let selected = state.selected == Some(entry.seq);
    if response.hovered() {
        state.hovered = Some(entry.seq);
    }
    let painter = ui.painter_at(rect);
    if selected {
        painter.rect_filled(rect, 0.0, ui.visuals().selection.bg_fill);
    } else if response.hovered() {
        painter.rect_filled(rect, 0.0, ui.visuals().widgets.hovered.weak_bg_fill);
    } else if i % 2 == 1 {
        painter.rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
    }
    let text_color = ui.visuals().text_color();
    let pointer = response.hover_pos();
    let mut hovered_value: Option<FilterBy> = None;
    let mut elided_message = false;
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
        for (column, x, w) in cells {
            let (text, color, value) = match column {
                Column::Time => (widgets::clock_ms(entry.at_ms), text_color, None),
                Column::Kind => (
                    entry.kind.label().to_string(),
                    kind_color(entry.kind),
                    Some(FilterBy::Kind(entry.kind)),
                ),
                Column::Hub => (
                    entry.hub.clone().unwrap_or_default(),
                    text_color,
                    entry.hub.clone().map(FilterBy::Hub),
                ),
                Column::To => (
                    entry.scope.clone().unwrap_or_default(),
                    text_color,
                    entry
                        .scope
                        .as_ref()
                        .map(|_| FilterBy::Channel(entry.channel.clone())),
                ),
                Column::Message => (
                    entry.summary.clone(),
                    if entry.error.is_some() {
                        widgets::BAD
                    } else {
                        text_color
                    },
                    None,
                ),
                Column::Excluded => (excluded(entry), text_color, None),
                Column::Size => (widgets::bytes(entry.size as u64), text_color, None),
            };
            let left = rect.left() + x + 4.0;
            let galley = cell_galley(ui, text, font, color, w - 8.0);
            let text_rect = egui::Rect::from_min_size(
                egui::pos2(left, rect.center().y - galley.size().y / 2.0),
                galley.size(),
            );
            if *column == Column::Message {
                elided_message = galley.elided;
                // The method at the start of the summary is a value too.
                if let Some(method) = &entry.method
                    && entry.summary.starts_with(method.as_str())
                {
                    let method_width = ui
                        .painter()
                        .layout_no_wrap(method.clone(), font.clone(), color)
                        .size()
                        .x
                        .min(w - 8.0);
                    let method_rect =
                        egui::Rect::from_min_size(text_rect.min, vec2(method_width, text_rect.height()));
                    if pointer.is_some_and(|p| method_rect.contains(p)) {
                        hovered_value = Some(FilterBy::Method(method.clone()));
                        painter.hline(
                            method_rect.x_range(),
                            method_rect.bottom(),
                            egui::Stroke::new(1.0, color),
                        );
                    }
                }
            } else if let Some(value) = value
                && pointer.is_some_and(|p| text_rect.contains(p))
            {
                hovered_value = Some(value);
                painter.hline(
                    text_rect.x_range(),
                    text_rect.bottom(),
                    egui::Stroke::new(1.0, color),
                );
            }
            let clip = egui::Rect::from_min_max(
                egui::pos2(rect.left() + x, rect.top()),
                egui::pos2(rect.left() + x + w, rect.bottom()),
            );
            ui.painter_at(clip).galley(text_rect.min, galley, color);
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
    let mut filter_by = None;
    let response = match &hovered_value {
        Some(value) => response
            .on_hover_cursor(egui::CursorIcon::PointingHand)
            .on_hover_text(format!("Click: filter by {}", value.describe())),
        None if elided_message => response.on_hover_text(entry.summary.as_str()),
        None => response,
    };
    if response.clicked() {
        match hovered_value.clone() {
            Some(value) => filter_by = Some(value),
            None => state.selected = if selected { None } else { Some(entry.seq) },
        }
    }
    response.context_menu(|ui| {
        if let Some(by) = context_menu(ui, entry, state) {
            filter_by = Some(by);
        }
    });
    filter_by
}

/// The right-click menu of a row: copy JSON, hex or the channel; filter by one of its values.
fn context_menu(ui: &mut Ui, entry: &TrafficEntry, state: &mut TrafficUi) -> Option<FilterBy> {
    let mut copy = |ui: &mut Ui, what: &str, text: String| {
        state.copied = Some(format!(
            "copied the {what} of #{} ({} characters)",
            entry.seq,
            text.chars().count()
        ));
        ui.ctx().copy_text(text);
    };
    if ui.button("Copy JSON").clicked() {
        let json = serde_json::to_string_pretty(&detail::detail(entry)).unwrap_or_else(|e| e.to_string());
        copy(ui, "JSON", json);
        ui.close();
    }
    if ui.button("Copy hex").clicked() {
        copy(ui, "hex", hex_string(&entry.payload));
        ui.close();
    }
    if ui.button("Copy channel").clicked() {
        copy(ui, "channel", entry.channel.clone());
        ui.close();
    }
    ui.separator();
    let mut choices = vec![FilterBy::Kind(entry.kind)];
    choices.extend(entry.hub.clone().map(FilterBy::Hub));
    if !entry.channel.is_empty() {
        choices.push(FilterBy::Channel(entry.channel.clone()));
    }
    choices.extend(entry.method.clone().map(FilterBy::Method));
    let mut chosen = None;
    for by in choices {
        if ui.button(format!("Filter by {}", by.describe())).clicked() {
            chosen = Some(by);
            ui.close();
        }
    }
    if entry.kind != EntryKind::Gap {
        ui.separator();
        if ui
            .button(format!("Hide {} rows", entry.kind.label()))
            .on_hover_text(
                "Leave every row of this kind out of the table (the filter bar can show them again)",
            )
            .clicked()
        {
            state.hide = Some(entry.kind);
            ui.close();
        }
    }
    chosen
}

/// The payload as hex pairs separated by spaces ("7b 22 74 …"), the whole of it.
fn hex_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn detail_pane(ui: &mut Ui, model: &Model, state: &mut TrafficUi, seq: u64) {
    let Some(entry) = model.traffic.get(seq) else {
        ui.label(RichText::new("That message has left the ring buffer.").weak());
        if ui.button("Close").clicked() {
            state.selected = None;
        }
        return;
    };
    if index_of(model, seq).is_none() {
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!("The selected row (#{seq}) is hidden by the filter."))
                    .color(widgets::WARN),
            );
            if ui.button("Close").clicked() {
                state.selected = None;
            }
        });
        return;
    }
    if state.detail.as_ref().map(|d| d.0) != Some(seq) {
        let json = serde_json::to_string_pretty(&detail::detail(entry)).unwrap_or_else(|e| e.to_string());
        state.detail = Some((seq, json, detail::hex_dump(&entry.payload, 4096)));
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
    // The hex dump gets the width its longest line needs (its text column is never cut); the
    // JSON the rest. Too narrow for both side by side: the hex goes under the JSON.
    let mono = egui::TextStyle::Monospace.resolve(ui.style());
    let hex_width = ui
        .painter()
        .layout_no_wrap(hex.clone(), mono, Color32::WHITE)
        .size()
        .x
        + ui.spacing().scroll.bar_width
        + 16.0;
    let side_by_side = ui.available_width() >= hex_width + 260.0;
    let json_view = |ui: &mut Ui| {
        // The JSON in a read-only code editor (keeps the indentation, can be selected and copied).
        egui::ScrollArea::both()
            .id_salt("detail_json")
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.add(
                    egui::TextEdit::multiline(&mut json.as_str())
                        .code_editor()
                        .desired_width(f32::INFINITY)
                        .desired_rows(4),
                );
            });
    };
    let hex_view = |ui: &mut Ui| {
        egui::ScrollArea::both()
            .id_salt("detail_hex")
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.add(egui::Label::new(RichText::new(hex.as_str()).monospace()).extend());
            });
    };
    if side_by_side {
        let height = ui.available_height();
        let json_width = ui.available_width() - hex_width - ui.spacing().item_spacing.x;
        ui.horizontal_top(|ui| {
            ui.allocate_ui(vec2(json_width, height), |ui| {
                ui.set_min_size(vec2(json_width, height));
                json_view(ui);
            });
            ui.allocate_ui(vec2(hex_width, height), |ui| {
                ui.set_min_size(vec2(hex_width, height));
                hex_view(ui);
            });
        });
    } else {
        let height = ui.available_height() / 2.0;
        ui.allocate_ui(vec2(ui.available_width(), height), |ui| json_view(ui));
        hex_view(ui);
    }
}

fn excluded(entry: &TrafficEntry) -> String {
    if entry.excluded.is_empty() {
        String::new()
    } else {
        format!("{}", entry.excluded.len())
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
