//! The topology view: the backplane in the middle, the nodes around it (`layout`), each node's
//! clients around the node, and each chat message's path (`journey`): from the sending client
//! (marked) to its node, to the backplane, to every live node and on to their clients; a test
//! message from a dashboard in its own colour; a legend for the colours. Outside presenter mode,
//! other traffic (heartbeats, group bookkeeping) shows as small grey dots and the backplane has
//! its connection count; presenter mode (`presenter`) draws the same picture without internals.
//!
//! Only live nodes (see `monitor::model::nodes`) get client dots and paths; a stale or down node
//! is drawn dashed and grey with when it was last seen. The backplane is neutral while the tap is
//! connected and red only when it is down. Paths repaint at most 20 times a second, and only
//! while one is in flight; everything else waits for the app's own repaint throttle.

mod journey;
mod layout;

use std::f32::consts::TAU;
use std::time::Duration;

use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Shape, Stroke, Ui, vec2};

use super::{Action, widgets};
use crate::monitor::LinkState;
use crate::monitor::model::Model;
use crate::monitor::model::health::{Finding, Severity};
use crate::monitor::model::nodes::{Liveness, NodeRow, Nodes};
pub use journey::{CHAT as CHAT_COLOR, TEST as TEST_COLOR};
use journey::{Journeys, Stage};
use layout::{BOX, BUS_RADIUS, box_scale, layout};

/// Frame period while a message moves: 20 frames/s reads as motion for a dot crossing the
/// screen, and keeps the topology within 60 % of a core where a frame costs 25-30 ms of CPU
/// (software OpenGL under Xvfb: `scripts/dashboard-cost.sh`). Nothing is drawn once they landed.
const PULSE_FRAME: Duration = Duration::from_millis(50);

/// The same in presenter mode, whose large type costs more per frame.
const PRESENTER_PULSE_FRAME: Duration = Duration::from_millis(66);

/// Client dots drawn per node at most (the count is written in the node's box).
const MAX_CLIENT_DOTS: u64 = 40;

/// Colour of a client dot, and of the other traffic's dots.
const CLIENT: Color32 = Color32::from_rgb(90, 160, 110);
const UPKEEP: Color32 = Color32::from_gray(120);

/// The view's state between frames.
#[derive(Debug, Default)]
pub struct TopologyUi {
    journeys: Journeys,
}

/// The Topology tab: the whole central area.
pub fn show(
    ui: &mut Ui,
    model: &Model,
    state: &mut TopologyUi,
    bus: &str,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let available = ui.available_size();
    let (rect, _) = ui.allocate_exact_size(vec2(available.x, available.y.max(200.0)), Sense::hover());
    diagram(ui, rect, model, state, false, bus, now, actions);
}

/// One node as drawn: its row, centre and liveness.
struct Placed<'a> {
    row: &'a NodeRow,
    pos: Pos2,
    live: bool,
    liveness: Liveness,
    /// Where its client dots are (at most [`MAX_CLIENT_DOTS`]).
    dots: Vec<Pos2>,
}

/// The picture in `rect`: nodes, backplane, paths, legend. `presenter` leaves out internals
/// (probes, connection counts, other traffic) and draws larger. `bus` names the backplane.
#[allow(clippy::too_many_arguments)]
pub fn diagram(
    ui: &mut Ui,
    rect: Rect,
    model: &Model,
    state: &mut TopologyUi,
    presenter: bool,
    bus: &str,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let now_f = now as f64;
    state.journeys.spawn(model, now_f);
    if state.journeys.moving() {
        let frame = if presenter {
            PRESENTER_PULSE_FRAME
        } else {
            PULSE_FRAME
        };
        ui.ctx().request_repaint_after(frame);
    }
    let painter = ui.painter_at(rect);
    // The legend takes the bottom lines.
    let legend_height = legend_lines(&painter, rect.width(), presenter, bus).1 as f32 * LEGEND_LINE + 4.0;
    let area = Rect::from_min_max(rect.min, rect.max - vec2(0.0, legend_height));
    let center = area.center();
    let rows = model.nodes.rows();
    let (offsets, scale) = layout(area.size(), rows.len(), if presenter { 1.3 } else { 1.0 });
    let text_color = ui.visuals().strong_text_color();

    let placed: Vec<Placed> = rows
        .iter()
        .zip(&offsets)
        .map(|(row, o)| {
            let pos = center + *o;
            let liveness = Nodes::liveness(row, now);
            let live = liveness.is_live();
            let shown = if live {
                row.clients().unwrap_or(0).min(MAX_CLIENT_DOTS) as usize
            } else {
                0
            };
            let outward = if o.length() > 0.0 {
                o.normalized()
            } else {
                vec2(-1.0, 0.0)
            };
            let dots = (0..shown)
                .map(|k| {
                    let spread = TAU * 0.45;
                    let a = outward.angle() - spread / 2.0 + spread * (k as f32 + 0.5) / shown as f32;
                    let ring = 70.0 * scale + (k % 2) as f32 * 14.0 * scale;
                    pos + vec2(a.cos(), a.sin()) * ring
                })
                .collect();
            Placed {
                row,
                pos,
                live,
                liveness,
                dots,
            }
        })
        .collect();

    // Edges.
    for node in &placed {
        if !node.live {
            painter.extend(Shape::dashed_line(
                &[center, node.pos],
                Stroke::new(1.5 * scale, widgets::IDLE),
                8.0,
                6.0,
            ));
            continue;
        }
        let up = node
            .row
            .stats
            .as_ref()
            .is_some_and(|s| matches!(s.backplane.status.state.as_str(), "connected" | "memory"));
        let color = if up { Color32::from_gray(110) } else { widgets::BAD };
        painter.line_segment([center, node.pos], Stroke::new(2.0 * scale, color));
        for dot in &node.dots {
            painter.line_segment([node.pos, *dot], Stroke::new(0.5, Color32::from_gray(90)));
        }
    }

    // Other traffic: small grey dots from the backplane to every live node (not on a projector).
    if !presenter {
        for t0 in &state.journeys.upkeep {
            let f = ((now_f - t0) / journey::UPKEEP_MS) as f32;
            if !(0.0..=1.0).contains(&f) {
                continue;
            }
            for node in placed.iter().filter(|n| n.live) {
                painter.circle_filled(journey::between(center, node.pos, f), 3.0 * scale, UPKEEP);
            }
        }
    }

    // Client dots, then the messages' paths over them.
    for node in &placed {
        for dot in &node.dots {
            painter.circle_filled(*dot, 5.0 * scale, CLIENT);
        }
    }
    let mut sender_labels = Vec::new();
    for j in &state.journeys.list {
        let t = ((now_f - j.t0) / journey::JOURNEY_MS) as f32;
        if !(0.0..=1.0).contains(&t) {
            continue;
        }
        let color = if j.test { journey::TEST } else { journey::CHAT };
        let radius = if j.test { 7.5 } else { 5.5 } * scale.max(0.8);
        let from = j
            .sender
            .as_deref()
            .and_then(|url| placed.iter().find(|n| n.live && n.row.target.hub_url == url));
        // The sender: a ring round its client, with its name, for the whole journey.
        if let Some(node) = from {
            let dot = node
                .dots
                .get(journey::sender_dot(j.seed, node.dots.len()))
                .copied()
                .unwrap_or(node.pos);
            painter.circle_stroke(dot, 9.0 * scale.max(0.8), Stroke::new(2.5, color));
            let name = j.user.clone().unwrap_or_else(|| "sender".to_string());
            let name = if j.test {
                format!("{name} (test message)")
            } else {
                name
            };
            sender_labels.push((dot, name, color));
            match journey::stage(t) {
                Stage::Node(f) => {
                    painter.circle_filled(journey::between(dot, node.pos, f), radius, color);
                }
                Stage::Bus(f) => {
                    painter.line_segment(
                        [node.pos, center],
                        Stroke::new(3.0 * scale, color.gamma_multiply(0.5)),
                    );
                    painter.circle_filled(journey::between(node.pos, center, f), radius, color);
                }
                _ => {}
            }
        }
        match journey::stage(t) {
            Stage::Nodes(f) => {
                for node in placed.iter().filter(|n| n.live) {
                    painter.circle_filled(journey::between(center, node.pos, f), radius, color);
                }
            }
            Stage::Clients(f) => {
                for node in placed.iter().filter(|n| n.live) {
                    let shown = node.dots.len();
                    for (k, dot) in node.dots.iter().enumerate() {
                        if journey::receives(j.everyone, j.seed, k, shown) {
                            painter.circle_filled(journey::between(node.pos, *dot, f), radius * 0.8, color);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // The backplane in the middle: neutral while the tap is connected, red only when it is down.
    let down = matches!(
        model.tap.state,
        LinkState::Reconnecting { .. } | LinkState::Failed { .. }
    );
    let (fill, ring) = match &model.tap.state {
        LinkState::Connected => (Color32::from_rgb(58, 66, 80), Color32::from_gray(150)),
        LinkState::Reconnecting { .. } | LinkState::Failed { .. } => {
            (Color32::from_rgb(150, 36, 36), widgets::BAD)
        }
        LinkState::Idle | LinkState::Connecting => (Color32::from_gray(60), widgets::IDLE),
    };
    let bus_radius = BUS_RADIUS * scale;
    painter.circle(center, bus_radius, fill, Stroke::new(3.0, ring));
    let bus_size = (18.0 * scale).max(14.0);
    painter.text(
        center - vec2(0.0, if down { bus_size * 0.45 } else { 0.0 }),
        Align2::CENTER_CENTER,
        bus,
        FontId::proportional(bus_size),
        Color32::WHITE,
    );
    if down {
        painter.text(
            center + vec2(0.0, bus_size * 0.6),
            Align2::CENTER_CENTER,
            "down",
            FontId::proportional(bus_size * 0.8),
            Color32::WHITE,
        );
    }
    let under = if presenter {
        String::new()
    } else {
        bus_caption(model, now)
    };
    // Health: a marker on the backplane for findings about no watched node (Redis itself, a deaf
    // server nobody watches, a foreign prefix, a full output buffer).
    let evaluation = model.health.latest.as_ref();
    if let Some(evaluation) = evaluation
        && !presenter
    {
        let names: Vec<&str> = rows.iter().flat_map(node_names).collect();
        let findings = evaluation.backplane_findings(&names);
        if let Some(worst) = findings.iter().map(|f| f.severity).max() {
            let at = center + vec2(BUS_RADIUS * 0.75, -BUS_RADIUS * 0.75) * scale;
            health_marker(
                ui,
                &painter,
                at,
                scale,
                worst,
                &findings,
                "backplane",
                None,
                actions,
            );
        }
    }
    if !under.is_empty() {
        let color = if model.tap.state == LinkState::Connected {
            text_color
        } else {
            widgets::BAD
        };
        let edges: Vec<[Pos2; 2]> = placed.iter().map(|n| [center, n.pos]).collect();
        label_off_edges(&painter, center, bus_radius, &under, 13.0, color, &edges);
    }

    // Nodes.
    for node in &placed {
        let row = node.row;
        let node_rect = Rect::from_center_size(node.pos, BOX * box_scale(scale));
        let (first, second, name_color) = if node.live {
            let (color, _) = widgets::describe(&row.state, now);
            painter.rect_filled(node_rect, 8.0, ui.visuals().widgets.inactive.bg_fill);
            painter.rect_stroke(node_rect, 8.0, Stroke::new(2.0, color), egui::StrokeKind::Outside);
            let clients = if presenter {
                row.clients().map(clients_words)
            } else {
                row.clients_text()
            };
            (
                row.name.clone(),
                clients.unwrap_or_else(|| "no figures yet".to_string()),
                text_color,
            )
        } else {
            painter.rect_filled(node_rect, 8.0, ui.visuals().extreme_bg_color);
            let r = node_rect.expand(1.0);
            let corners = [
                r.left_top(),
                r.right_top(),
                r.right_bottom(),
                r.left_bottom(),
                r.left_top(),
            ];
            painter.extend(Shape::dashed_line(
                &corners,
                Stroke::new(2.0, widgets::IDLE),
                6.0,
                4.0,
            ));
            let what = match node.liveness {
                Liveness::Stale { .. } => "not answering",
                Liveness::Stopped { .. } => "stopped",
                Liveness::NeedsToken => "up, needs a token",
                _ => "down",
            };
            let second = match node.liveness.last_seen_ms() {
                Some(t) if !presenter => format!("{what} · seen {}", widgets::clock(t)),
                _ => what.to_string(),
            };
            (row.name.clone(), second, widgets::IDLE)
        };
        if let Some(evaluation) = evaluation
            && !presenter
        {
            let names = node_names(row);
            if let Some(worst) = evaluation.worst_for(&names) {
                let findings = evaluation.concerning(&names);
                health_marker(
                    ui,
                    &painter,
                    node_rect.right_top(),
                    scale,
                    worst,
                    &findings,
                    &row.target.hub_url,
                    Some(row.name.clone()),
                    actions,
                );
            }
        }
        // Text stays readable when a crowded picture is drawn small.
        let name_size = (16.0 * scale).max(14.0);
        let line_size = (13.0 * scale).max(12.0);
        painter.text(
            node.pos - vec2(0.0, name_size * 0.7),
            Align2::CENTER_CENTER,
            first,
            FontId::proportional(name_size),
            name_color,
        );
        painter.text(
            node.pos + vec2(0.0, line_size * 0.9),
            Align2::CENTER_CENTER,
            second,
            FontId::proportional(line_size),
            name_color,
        );
    }
    // The senders' names last, over everything.
    for (dot, name, color) in sender_labels {
        let size = (14.0 * scale).max(13.0);
        let galley = painter.layout_no_wrap(name, FontId::proportional(size), color);
        let at = dot - vec2(galley.size().x / 2.0, 12.0 * scale.max(0.8) + galley.size().y);
        let back = Rect::from_min_size(at, galley.size()).expand(3.0);
        painter.rect_filled(back, 4.0, Color32::from_black_alpha(200));
        painter.galley(at, galley, color);
    }
    if rows.is_empty() {
        painter.text(
            center + vec2(0.0, 90.0),
            Align2::CENTER_CENTER,
            "no nodes yet",
            FontId::proportional(16.0),
            Color32::GRAY,
        );
    }
    legend(&painter, rect, presenter, bus);
}

/// "5 clients", "1 client".
fn clients_words(n: u64) -> String {
    if n == 1 {
        "1 client".to_string()
    } else {
        format!("{n} clients")
    }
}

/// The line under the backplane outside presenter mode: its client connections as Redis counts
/// them, or why the tap is not connected.
fn bus_caption(model: &Model, now: u64) -> String {
    let (_, tap_words) = widgets::describe(&model.tap.state, now);
    match (&model.tap.state, &model.census) {
        (LinkState::Connected, Some((at, hubs))) => {
            let total: u64 = hubs.iter().map(|h| h.connections).sum();
            let stale = if model.census_stale(now) {
                format!(", counted at {}", widgets::clock(*at))
            } else {
                String::new()
            };
            format!(
                // Two short lines rather than one long one: narrow enough to sit between the
                // edges below the backplane.
                "{total} subscriber connections\n(incl. {} of this dashboard{stale})",
                model.nodes.probe_connections()
            )
        }
        (LinkState::Connected, None) => String::new(),
        _ => shorten(&tap_words, 48),
    }
}

/// Draws `text` under (or else over, or beside) the backplane's circle where no edge crosses it,
/// on a dark band so it reads even where one does.
fn label_off_edges(
    painter: &egui::Painter,
    center: Pos2,
    radius: f32,
    text: &str,
    size: f32,
    color: Color32,
    edges: &[[Pos2; 2]],
) {
    let galley = painter.layout_no_wrap(text.to_string(), FontId::proportional(size), color);
    let half = galley.size() / 2.0;
    let gap = radius + 6.0 + half.y;
    let candidates = [
        center + vec2(0.0, gap),
        center - vec2(0.0, gap),
        center + vec2(0.0, gap + 2.0 * half.y + 8.0),
        center - vec2(0.0, gap + 2.0 * half.y + 8.0),
    ];
    let crosses = |c: Pos2| {
        let r = Rect::from_center_size(c, galley.size()).expand(2.0);
        edges.iter().any(|[a, b]| segment_hits_rect(*a, *b, r))
    };
    let chosen = candidates
        .iter()
        .copied()
        .find(|c| !crosses(*c))
        .unwrap_or(candidates[0]);
    let r = Rect::from_center_size(chosen, galley.size());
    painter.rect_filled(r.expand(3.0), 4.0, Color32::from_black_alpha(190));
    painter.galley(r.min, galley, color);
}

/// Whether the segment `a`–`b` passes through `r` (sampled: labels are small, edges straight).
fn segment_hits_rect(a: Pos2, b: Pos2, r: Rect) -> bool {
    (0..=64).any(|i| r.contains(a + (b - a) * (i as f32 / 64.0)))
}

/// The colours' meaning, as (marker, words).
fn legend_items(presenter: bool, bus: &str) -> Vec<(LegendMark, String)> {
    let mut items = vec![
        (
            LegendMark::Dot(journey::CHAT, 5.0),
            format!("chat message, via {bus}"),
        ),
        (
            LegendMark::Dot(journey::TEST, 6.5),
            "test message (this dashboard)".to_string(),
        ),
        (LegendMark::Ring, "its sender".to_string()),
        (LegendMark::Dot(CLIENT, 5.0), "client".to_string()),
    ];
    if !presenter {
        items.push((LegendMark::Dot(UPKEEP, 3.0), "other traffic".to_string()));
    }
    items
}

#[derive(Debug, Clone, Copy)]
enum LegendMark {
    Dot(Color32, f32),
    Ring,
}

/// A legend item placed: x, line, marker, words.
type LegendItem = (f32, usize, LegendMark, std::sync::Arc<egui::Galley>);

const LEGEND_SIZE: f32 = 14.0;
const LEGEND_LINE: f32 = 22.0;

/// The legend's items with their widths, placed in lines of at most `width`: ((x, line), mark,
/// words) and the number of lines.
fn legend_lines(painter: &egui::Painter, width: f32, presenter: bool, bus: &str) -> (Vec<LegendItem>, usize) {
    let mut placed = Vec::new();
    let (mut x, mut line) = (8.0, 0);
    for (mark, words) in legend_items(presenter, bus) {
        let galley =
            painter.layout_no_wrap(words, FontId::proportional(LEGEND_SIZE), Color32::from_gray(210));
        let w = 16.0 + galley.size().x;
        if x + w > width && x > 8.0 {
            x = 8.0;
            line += 1;
        }
        placed.push((x, line, mark, galley));
        x += w + 18.0;
    }
    (placed, line + 1)
}

/// Draws the legend in the bottom lines of `rect`.
fn legend(painter: &egui::Painter, rect: Rect, presenter: bool, bus: &str) {
    let (placed, lines) = legend_lines(painter, rect.width(), presenter, bus);
    let top = rect.bottom() - lines as f32 * LEGEND_LINE;
    for (x, line, mark, galley) in placed {
        let y = top + (line as f32 + 0.5) * LEGEND_LINE;
        let p = Pos2::new(rect.left() + x + 6.0, y);
        match mark {
            LegendMark::Dot(color, r) => {
                painter.circle_filled(p, r, color);
            }
            LegendMark::Ring => {
                painter.circle_stroke(p, 6.0, Stroke::new(2.0, Color32::WHITE));
            }
        }
        let at = Pos2::new(rect.left() + x + 16.0, y - galley.size().y / 2.0);
        painter.galley(at, galley, Color32::from_gray(210));
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).chain(['…']).collect()
    }
}

/// The names a finding may give a node by: its name, hub URL and server name.
fn node_names(row: &crate::monitor::model::nodes::NodeRow) -> Vec<&str> {
    super::health::node_names(row)
}

/// A coloured dot with the count of findings; hover lists them, a click opens the Health view.
#[allow(clippy::too_many_arguments)]
fn health_marker(
    ui: &mut Ui,
    painter: &egui::Painter,
    at: Pos2,
    scale: f32,
    worst: Severity,
    findings: &[&Finding],
    id: &str,
    focus: Option<String>,
    actions: &mut Vec<Action>,
) {
    let radius = 11.0 * scale.max(0.8);
    let color = super::health::color(worst);
    painter.circle(at, radius, color, Stroke::new(2.0, Color32::from_gray(30)));
    painter.text(
        at,
        Align2::CENTER_CENTER,
        findings.len().to_string(),
        FontId::proportional(radius * 1.2),
        Color32::BLACK,
    );
    let rect = egui::Rect::from_center_size(at, vec2(radius, radius) * 2.0);
    let response = ui
        .interact(rect, ui.scope_id().with(("health_marker", id)), Sense::click())
        .on_hover_ui(|ui| {
            for f in findings {
                ui.label(
                    RichText::new(super::health::plain(&f.line())).color(super::health::color(f.severity)),
                );
            }
            ui.label(RichText::new("click: open the Health view").weak());
        });
    if response.clicked() {
        actions.push(Action::ShowHealth(focus));
    }
}
