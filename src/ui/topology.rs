//! The topology view: Redis in the middle, the nodes around it, each node's clients around the
//! node, and pulses along the edges as messages cross (node → Redis when its backplane-out counter
//! moves, Redis → every live node for each message the tap sees). In presenter mode it adds large
//! counters and the latest chat lines, for a projector.
//!
//! Only live nodes (see `monitor::model::nodes`) get client dots and pulses; a stale or down node
//! is drawn dashed and grey with when it was last seen. The backplane is neutral while the tap is
//! connected and red only when it is down. Pulses repaint at most 30 times a second, and only
//! while one is in flight; everything else waits for the app's own repaint throttle.

use std::collections::HashMap;
use std::f32::consts::TAU;
use std::time::Duration;

use egui::{Align2, Color32, FontId, Pos2, RichText, Sense, Shape, Stroke, Ui, Vec2, vec2};

use super::traffic::kind_color;
use super::{Action, widgets};
use crate::config::PRESENTER_LIST_REFRESH;
use crate::monitor::LinkState;
use crate::monitor::model::health::{Finding, Severity};
use crate::monitor::model::nodes::{Liveness, Nodes};
use crate::monitor::model::{EntryKind, Model, TrafficEntry};

/// How long a pulse takes along one edge.
const PULSE_MS: f64 = 700.0;

/// Frame period while a pulse moves: 20 frames/s reads as motion for a dot crossing the screen,
/// and keeps the topology within 60 % of a core where a frame costs 25-30 ms of CPU (software
/// OpenGL under Xvfb: `scripts/dashboard-cost.sh`). Nothing is drawn once the pulses have landed.
const PULSE_FRAME: Duration = Duration::from_millis(50);

/// The same in presenter mode, whose large type costs more per frame.
const PRESENTER_PULSE_FRAME: Duration = Duration::from_millis(66);

/// At most this many pulses start per edge per frame, and this many live at once: at 50k msg/s
/// the picture shows "busy", not 50k dots.
const PULSES_PER_FRAME: u64 = 3;
const MAX_PULSES: usize = 400;

/// Client dots drawn per node at most (the count is written in the node's box).
const MAX_CLIENT_DOTS: u64 = 40;

/// Outer radius of a node's drawing (box and client dots) at scale 1, in points.
const NODE_REACH: f32 = 92.0;

/// Radius of the backplane's circle at scale 1.
const BUS_RADIUS: f32 = 38.0;

/// Latest messages shown in presenter mode.
const PRESENTER_LINES: usize = 4;

/// Text size of the presenter's counters: three times the panels' 26.
const PRESENTER_COUNTER_SIZE: f32 = 78.0;

/// Text size of the presenter's latest messages.
const PRESENTER_LINE_SIZE: f32 = 20.0;

/// Where a pulse runs.
#[derive(Debug, Clone, PartialEq)]
enum Edge {
    ToRedis(String),
    FromRedis(String),
}

/// The view's state between frames.
#[derive(Debug, Default)]
pub struct TopologyUi {
    pulses: Vec<(Edge, f64)>,
    last_seen: u64,
    last_out: HashMap<String, u64>,
    started: bool,
    /// The presenter's latest messages as last shown, and when they were taken (unix ms).
    latest: Vec<(Color32, String, String)>,
    latest_at: u64,
}

/// Node centres (offsets from the backplane's centre) and the drawing scale for `n` nodes in an
/// area of `size`, so that no node (box and client dots) leaves the area, overlaps another or
/// covers the backplane. Starts at `max_scale` and shrinks until it fits (down to a third).
pub fn layout(size: Vec2, n: usize, max_scale: f32) -> (Vec<Vec2>, f32) {
    let mut scale = max_scale;
    loop {
        let offsets = offsets(size, n, scale);
        if fits(&offsets, size, scale) || scale <= max_scale / 3.0 {
            return (offsets, scale);
        }
        scale *= 0.92;
    }
}

/// A node box's scale: it shrinks with the picture, but not below what its text needs.
fn box_scale(scale: f32) -> f32 {
    scale.max(0.8)
}

/// How far a node's drawing (box and client dots) reaches from its centre.
fn reach(scale: f32) -> f32 {
    (NODE_REACH * scale).max(72.0 * box_scale(scale))
}

fn offsets(size: Vec2, n: usize, scale: f32) -> Vec<Vec2> {
    let reach = reach(scale);
    let rx = (size.x / 2.0 - reach - 6.0).min(size.x * 0.4).max(0.0);
    let ry = (size.y / 2.0 - reach - 6.0).min(size.y * 0.4).max(0.0);
    (0..n)
        .map(|i| {
            // One or two: left (and right). Three or more: spread evenly, symmetric about the
            // vertical axis (three: lower left, top, lower right; four: the corners), which
            // uses a wide area best.
            let start = if n <= 2 {
                TAU / 2.0
            } else {
                TAU / 4.0 + TAU / (2.0 * n as f32)
            };
            let angle = start + TAU * i as f32 / n.max(1) as f32;
            vec2(angle.cos() * rx, angle.sin() * ry)
        })
        .collect()
}

fn fits(offsets: &[Vec2], size: Vec2, scale: f32) -> bool {
    let reach = reach(scale);
    let inside = offsets
        .iter()
        .all(|o| o.x.abs() + reach <= size.x / 2.0 + 0.5 && o.y.abs() + reach <= size.y / 2.0 + 0.5);
    // Boxes (130 × 56 at scale 1) clear the backplane's circle and its label under it.
    let clear_of_bus = offsets.iter().all(|o| {
        (o.x.abs() - 65.0 * box_scale(scale))
            .max(0.0)
            .hypot((o.y.abs() - 28.0 * box_scale(scale)).max(0.0))
            >= (BUS_RADIUS + 30.0) * scale
    });
    let apart = offsets.iter().enumerate().all(|(i, a)| {
        offsets[i + 1..]
            .iter()
            .all(|b| (*a - *b).length() >= 2.0 * reach * 0.75)
    });
    inside && clear_of_bus && apart
}

/// `bus` names the backplane in the middle ("Redis", "Memory bus").
pub fn show(
    ui: &mut Ui,
    model: &Model,
    state: &mut TopologyUi,
    presenter: bool,
    bus: &str,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let now_f = now as f64;
    spawn_pulses(model, state, now_f, now);
    state.pulses.retain(|(_, t0)| now_f - t0 < PULSE_MS);
    if !state.pulses.is_empty() {
        let frame = if presenter {
            PRESENTER_PULSE_FRAME
        } else {
            PULSE_FRAME
        };
        ui.ctx().request_repaint_after(frame);
    }

    if presenter {
        // Counters, then the latest messages beside them, so the picture keeps the height.
        ui.horizontal_top(|ui| {
            let size = PRESENTER_COUNTER_SIZE;
            widgets::big_number(
                ui,
                "clients",
                &model.nodes.cluster_total_clients(now).to_string(),
                size,
            );
            widgets::big_number(
                ui,
                "messages/s",
                &widgets::rate(model.rates.messages_per_sec(now, 5)),
                size,
            );
            widgets::big_number(
                ui,
                "nodes up",
                &super::nodes::nodes_up_text(&model.nodes, now),
                size,
            );
            latest_messages(ui, model, state, now);
        });
    }

    let available = ui.available_size();
    let (rect, _) = ui.allocate_exact_size(vec2(available.x, available.y.max(200.0)), Sense::hover());
    let painter = ui.painter_at(rect);
    let center = rect.center();
    let rows = model.nodes.rows();
    let (offsets, scale) = layout(rect.size(), rows.len(), if presenter { 1.4 } else { 1.0 });
    let text_color = ui.visuals().strong_text_color();

    let positions: Vec<(String, Pos2, Liveness)> = rows
        .iter()
        .zip(&offsets)
        .map(|(row, o)| (row.target.hub_url.clone(), center + *o, Nodes::liveness(row, now)))
        .collect();

    // Edges, then pulses on them.
    for (row, (_, pos, liveness)) in rows.iter().zip(&positions) {
        if !liveness.is_live() {
            painter.extend(Shape::dashed_line(
                &[center, *pos],
                Stroke::new(1.5 * scale, widgets::IDLE),
                8.0,
                6.0,
            ));
            continue;
        }
        let up = row
            .stats
            .as_ref()
            .is_some_and(|s| matches!(s.backplane.status.state.as_str(), "connected" | "memory"));
        let color = if up { Color32::from_gray(110) } else { widgets::BAD };
        painter.line_segment([center, *pos], Stroke::new(2.0 * scale, color));
    }
    for (edge, t0) in &state.pulses {
        let (url, outward) = match edge {
            Edge::ToRedis(u) => (u, false),
            Edge::FromRedis(u) => (u, true),
        };
        let Some((_, pos, _)) = positions.iter().find(|(u, _, l)| u == url && l.is_live()) else {
            continue;
        };
        let t = ((now_f - t0) / PULSE_MS) as f32;
        if !(0.0..=1.0).contains(&t) {
            continue;
        }
        let (from, to) = if outward { (center, *pos) } else { (*pos, center) };
        let p = from + (to - from) * t;
        let color = if outward {
            Color32::from_rgb(100, 170, 255)
        } else {
            Color32::from_rgb(255, 200, 110)
        };
        painter.circle_filled(p, 5.0 * scale, color);
    }

    // The backplane in the middle: neutral while the tap is connected, red only when it is down.
    let (fill, ring) = match &model.tap.state {
        LinkState::Connected => (Color32::from_rgb(58, 66, 80), Color32::from_gray(150)),
        LinkState::Reconnecting { .. } | LinkState::Failed { .. } => {
            (Color32::from_rgb(150, 36, 36), widgets::BAD)
        }
        LinkState::Idle | LinkState::Connecting => (Color32::from_gray(60), widgets::IDLE),
    };
    painter.circle(center, BUS_RADIUS * scale, fill, Stroke::new(3.0, ring));
    painter.text(
        center,
        Align2::CENTER_CENTER,
        bus,
        FontId::proportional(18.0 * scale),
        Color32::WHITE,
    );
    let (_, tap_words) = widgets::describe(&model.tap.state, now);
    let under = match (&model.tap.state, &model.census) {
        (LinkState::Connected, Some((at, hubs))) => {
            let total: u64 = hubs.iter().map(|h| h.connections).sum();
            let stale = if model.census_stale(now) {
                format!(", stale: from {}", widgets::clock(*at))
            } else {
                String::new()
            };
            format!(
                "{total} connections (PUBSUB, incl. {} probes{stale})",
                model.nodes.probe_connections()
            )
        }
        (LinkState::Connected, None) => String::new(),
        _ => shorten(&tap_words, 48),
    };
    // Health: a marker on the backplane for findings about no watched node (Redis itself, a deaf
    // server nobody watches, a foreign prefix, a full output buffer).
    let evaluation = model.health.latest.as_ref();
    if let Some(evaluation) = evaluation {
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
        painter.text(
            center + vec2(0.0, (BUS_RADIUS + 14.0) * scale),
            Align2::CENTER_CENTER,
            under,
            FontId::proportional(13.0 * scale),
            if model.tap.state == LinkState::Connected {
                text_color
            } else {
                widgets::BAD
            },
        );
    }

    // Nodes and their clients.
    for (row, (_, pos, liveness)) in rows.iter().zip(&positions) {
        let live = liveness.is_live();
        let outward = (*pos - center).normalized();
        if live && let Some(n) = row.clients() {
            let shown = n.min(MAX_CLIENT_DOTS) as usize;
            for k in 0..shown {
                let spread = TAU * 0.45;
                let a = outward.angle() - spread / 2.0 + spread * (k as f32 + 0.5) / shown as f32;
                let ring = 70.0 * scale + (k % 2) as f32 * 14.0 * scale;
                let c = *pos + vec2(a.cos(), a.sin()) * ring;
                painter.line_segment([*pos, c], Stroke::new(0.5, Color32::from_gray(90)));
                painter.circle_filled(c, 5.0 * scale, Color32::from_rgb(90, 160, 110));
            }
        }
        let node_rect = egui::Rect::from_center_size(*pos, vec2(130.0, 56.0) * box_scale(scale));
        let (first, second, name_color) = if live {
            let (color, _) = widgets::describe(&row.state, now);
            painter.rect_filled(node_rect, 8.0, ui.visuals().widgets.inactive.bg_fill);
            painter.rect_stroke(node_rect, 8.0, Stroke::new(2.0, color), egui::StrokeKind::Outside);
            let clients = row.clients_text().unwrap_or_else(|| "no stats".to_string());
            (row.name.clone(), clients, text_color)
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
            let what = match liveness {
                Liveness::Stale { .. } => "stale",
                Liveness::Stopped { .. } => "stopped",
                Liveness::NeedsToken => "up, needs a token",
                _ => "down",
            };
            let second = match liveness.last_seen_ms() {
                Some(t) => format!("{what} · seen {}", widgets::clock(t)),
                None => what.to_string(),
            };
            (row.name.clone(), second, widgets::IDLE)
        };
        if let Some(evaluation) = evaluation {
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
        let name_size = (16.0 * scale).max(13.0);
        let line_size = (12.0 * scale).max(10.0);
        painter.text(
            *pos - vec2(0.0, name_size * 0.7),
            Align2::CENTER_CENTER,
            first,
            FontId::proportional(name_size),
            name_color,
        );
        painter.text(
            *pos + vec2(0.0, line_size * 0.9),
            Align2::CENTER_CENTER,
            second,
            FontId::proportional(line_size),
            name_color,
        );
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

/// The presenter's latest messages: taken from the ring at most twice a second (so they can be
/// read at 50 msg/s), in large light type on a dark band.
fn latest_messages(ui: &mut Ui, model: &Model, state: &mut TopologyUi, now: u64) {
    let refresh = PRESENTER_LIST_REFRESH.as_millis() as u64;
    if state.latest_at == 0 || now >= state.latest_at + refresh || now < state.latest_at {
        state.latest = latest_chat(model, PRESENTER_LINES)
            .map(|e| {
                (
                    kind_color(e.kind),
                    format!("{} {}", widgets::clock(e.at_ms), e.kind.label()),
                    // The chat's own words: the arguments of a ReceiveMessage, else the summary.
                    match (&e.method, &e.args) {
                        (Some(m), Some(args)) if m == "ReceiveMessage" => {
                            chat_words(args).unwrap_or_else(|| e.summary.clone())
                        }
                        _ => e.summary.clone(),
                    },
                )
            })
            .collect();
        state.latest_at = now;
    }
    egui::Frame::new()
        .fill(Color32::from_gray(16))
        .inner_margin(8.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            let width = ui.available_width() - 16.0;
            ui.set_width(width);
            ui.set_max_width(width);
            ui.vertical(|ui| latest_lines(ui, state));
        });
}

/// The presenter's latest messages, one per line, shortened with "…" to the width.
fn latest_lines(ui: &mut Ui, state: &TopologyUi) {
    ui.label(
        RichText::new("Latest messages")
            .size(PRESENTER_LINE_SIZE * 0.75)
            .color(Color32::from_gray(200)),
    );
    if state.latest.is_empty() {
        ui.label(
            RichText::new("no chat messages yet")
                .size(PRESENTER_LINE_SIZE)
                .color(Color32::from_gray(160)),
        );
    }
    for (color, head, summary) in &state.latest {
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(head)
                    .size(PRESENTER_LINE_SIZE)
                    .color(*color)
                    .strong(),
            );
            ui.add(
                egui::Label::new(
                    RichText::new(summary)
                        .size(PRESENTER_LINE_SIZE)
                        .color(Color32::WHITE),
                )
                .truncate(),
            );
        });
    }
}

/// `user: text` from a chat message's JSON arguments `["user", "text"]`.
fn chat_words(args: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(args).ok()?;
    match value.as_array()?.as_slice() {
        [user, text] => Some(format!("{}: {}", user.as_str()?, text.as_str()?)),
        _ => None,
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).chain(['…']).collect()
    }
}

/// The `n` newest chat-like entries (invocations, not heartbeats), newest first, looking back at
/// most 500 entries.
fn latest_chat(model: &Model, n: usize) -> impl Iterator<Item = &TrafficEntry> {
    model
        .traffic
        .iter()
        .rev()
        .take(500)
        .filter(|e| e.method.is_some() && !matches!(e.kind, EntryKind::Heartbeat | EntryKind::Gap))
        .take(n)
}

fn spawn_pulses(model: &Model, state: &mut TopologyUi, now: f64, now_ms: u64) {
    let seen = model.traffic.totals().messages;
    let first = !state.started;
    state.started = true;
    let new_messages = seen.saturating_sub(state.last_seen);
    state.last_seen = seen;
    for row in model.nodes.rows() {
        let url = &row.target.hub_url;
        let out = row.stats.as_ref().map(|s| s.messages.backplane_out).unwrap_or(0);
        let before = state.last_out.insert(url.clone(), out).unwrap_or(out);
        if first {
            continue;
        }
        if !Nodes::liveness(row, now_ms).is_live() {
            // Nothing flows into or out of a node that is not answering.
            state
                .pulses
                .retain(|(e, _)| !matches!(e, Edge::ToRedis(u) | Edge::FromRedis(u) if u == url));
            continue;
        }
        for _ in 0..out.saturating_sub(before).min(PULSES_PER_FRAME) {
            state.pulses.push((Edge::ToRedis(url.clone()), now));
        }
        for _ in 0..new_messages.min(PULSES_PER_FRAME) {
            state
                .pulses
                .push((Edge::FromRedis(url.clone()), now + PULSE_MS * 0.3));
        }
    }
    if state.pulses.len() > MAX_PULSES {
        let excess = state.pulses.len() - MAX_PULSES;
        state.pulses.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(size: Vec2, n: usize, max_scale: f32) -> f32 {
        let (offsets, scale) = layout(size, n, max_scale);
        assert_eq!(offsets.len(), n);
        assert!(
            fits(&offsets, size, scale),
            "{n} nodes in {size:?} at {scale}: {offsets:?}"
        );
        scale
    }

    #[test]
    fn chat_lines_read_as_words() {
        assert_eq!(
            chat_words(r#"["ann@node-a","lunch at noon"]"#).as_deref(),
            Some("ann@node-a: lunch at noon")
        );
        assert_eq!(chat_words(r#"["one"]"#), None);
        assert_eq!(chat_words("not json"), None);
    }

    #[test]
    fn three_and_four_nodes_fit_without_overlap() {
        // The presenter's drawing area on a 1600 × 1000 window at zoom 1.5, and the normal tab.
        for size in [vec2(1060.0, 330.0), vec2(1060.0, 420.0), vec2(1280.0, 800.0)] {
            for n in 1..=6 {
                check(size, n, 1.4);
            }
        }
        // Plenty of room: the full scale is kept.
        assert_eq!(check(vec2(1280.0, 800.0), 3, 1.0), 1.0);
    }
}
