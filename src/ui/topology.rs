//! The topology view: Redis in the middle, the nodes around it, each node's clients around the
//! node, and pulses along the edges as messages cross (node → Redis when its backplane-out counter
//! moves, Redis → every node for each message the tap sees). In presenter mode it adds large
//! counters and the latest chat lines, for a projector.

use std::collections::HashMap;
use std::f32::consts::TAU;

use egui::{Align2, Color32, FontId, Pos2, RichText, Sense, Stroke, Ui, vec2};

use super::rates::big_number;
use super::widgets;
use crate::monitor::LinkState;
use crate::monitor::model::{EntryKind, Model, TrafficEntry};

/// How long a pulse takes along one edge.
const PULSE_MS: f64 = 700.0;

/// At most this many pulses start per edge per frame, and this many live at once: at 50k msg/s
/// the picture shows "busy", not 50k dots.
const PULSES_PER_FRAME: u64 = 3;
const MAX_PULSES: usize = 400;

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
}

/// `bus` names the backplane in the middle ("Redis", "Memory bus").
pub fn show(ui: &mut Ui, model: &Model, state: &mut TopologyUi, presenter: bool, bus: &str, now: u64) {
    let now_f = now as f64;
    spawn_pulses(model, state, now_f);
    state.pulses.retain(|(_, t0)| now_f - t0 < PULSE_MS);
    if !state.pulses.is_empty() {
        ui.ctx().request_repaint();
    }

    if presenter {
        ui.horizontal(|ui| {
            big_number(ui, "clients", &model.nodes.cluster_total_clients().to_string());
            big_number(
                ui,
                "messages/s",
                &widgets::si(model.rates.messages_per_sec(now, 5)),
            );
            let up = model
                .nodes
                .rows()
                .iter()
                .filter(|r| r.state == LinkState::Connected)
                .count();
            big_number(ui, "nodes up", &format!("{up}/{}", model.nodes.rows().len()));
            let (color, text) = widgets::describe(&model.tap.state, now);
            ui.label(RichText::new(format!("{bus} {text}")).size(22.0).color(color));
        });
    }

    let available = ui.available_size();
    let chat_height = if presenter { 150.0 } else { 0.0 };
    let (rect, _) = ui.allocate_exact_size(
        vec2(available.x, (available.y - chat_height).max(200.0)),
        Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    let center = rect.center();
    // An ellipse that fills a wide window: two nodes sit left and right of Redis.
    let radius = vec2(rect.width() * 0.34, rect.height() * 0.32);
    let scale = if presenter { 1.4 } else { 1.0 };
    let text_color = ui.visuals().strong_text_color();

    let rows = model.nodes.rows();
    let positions: Vec<(String, Pos2)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let angle = TAU / 2.0 + TAU * i as f32 / rows.len().max(1) as f32;
            (
                row.target.hub_url.clone(),
                center + vec2(angle.cos(), angle.sin()) * radius,
            )
        })
        .collect();

    // Edges, then pulses on them.
    for (row, (_, pos)) in rows.iter().zip(&positions) {
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
        let Some((_, pos)) = positions.iter().find(|(u, _)| u == url) else {
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

    // Redis in the middle.
    let (tap_color, _) = widgets::describe(&model.tap.state, now);
    painter.circle(
        center,
        38.0 * scale,
        Color32::from_rgb(160, 40, 40),
        Stroke::new(3.0, tap_color),
    );
    painter.text(
        center,
        Align2::CENTER_CENTER,
        bus,
        FontId::proportional(18.0 * scale),
        Color32::WHITE,
    );
    if let Some((_, hubs)) = &model.census {
        let total: u64 = hubs.iter().map(|h| h.connections).sum();
        painter.text(
            center + vec2(0.0, 52.0 * scale),
            Align2::CENTER_CENTER,
            format!("{total} connections (PUBSUB)"),
            FontId::proportional(13.0 * scale),
            text_color,
        );
    }

    // Nodes and their clients.
    for (row, (_, pos)) in rows.iter().zip(&positions) {
        let (color, _) = widgets::describe(&row.state, now);
        let clients = row.stats.as_ref().map(|s| s.connections.total);
        let outward = (*pos - center).normalized();
        if let Some(n) = clients {
            let shown = n.min(40) as usize;
            for k in 0..shown {
                let spread = TAU * 0.45;
                let a = outward.angle() - spread / 2.0 + spread * (k as f32 + 0.5) / shown as f32;
                let ring = 70.0 * scale + (k % 2) as f32 * 14.0 * scale;
                let c = *pos + vec2(a.cos(), a.sin()) * ring;
                painter.line_segment([*pos, c], Stroke::new(0.5, Color32::from_gray(90)));
                painter.circle_filled(c, 5.0 * scale, Color32::from_rgb(90, 160, 110));
            }
        }
        painter.rect_filled(
            egui::Rect::from_center_size(*pos, vec2(130.0, 56.0) * scale),
            8.0,
            ui.visuals().widgets.inactive.bg_fill,
        );
        painter.rect_stroke(
            egui::Rect::from_center_size(*pos, vec2(130.0, 56.0) * scale),
            8.0,
            Stroke::new(2.0, color),
            egui::StrokeKind::Outside,
        );
        painter.text(
            *pos - vec2(0.0, 12.0 * scale),
            Align2::CENTER_CENTER,
            &row.name,
            FontId::proportional(16.0 * scale),
            text_color,
        );
        painter.text(
            *pos + vec2(0.0, 12.0 * scale),
            Align2::CENTER_CENTER,
            match clients {
                Some(n) => format!("{n} clients"),
                None => "no stats".to_string(),
            },
            FontId::proportional(13.0 * scale),
            text_color,
        );
    }
    if rows.is_empty() {
        painter.text(
            center + vec2(0.0, radius.y),
            Align2::CENTER_CENTER,
            "no nodes yet",
            FontId::proportional(16.0),
            Color32::GRAY,
        );
    }

    if presenter {
        ui.label(RichText::new("Latest messages").strong());
        for e in latest_chat(model, 5) {
            let text = format!("{}  {}  {}", widgets::clock(e.at_ms), e.kind.label(), e.summary);
            ui.label(RichText::new(text).size(18.0));
        }
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

fn spawn_pulses(model: &Model, state: &mut TopologyUi, now: f64) {
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
