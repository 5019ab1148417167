//! Presenter mode: the cross-server story on a projector, kiosk-like. A thin header (what is on
//! screen, the backplane in plain words, Controls, a way out), three counters (chat clients, chat
//! messages per second, nodes up), the topology with each message's path, and the latest chat
//! messages whole (wrapped, never cut). Only the story reaches this screen: no probes, no trace
//! markers, no heartbeats, no internal counts (see `monitor::model::chat`). A backplane outage
//! is one plain sentence and a marker among the messages. The demo's controls are an overlay with
//! keyboard shortcuts, so nobody leaves presenter mode in front of the audience.
//!
//! Everything is sized from the window: the app zooms by [`zoom_for`] so the layout always works
//! on at least 1024 × 720 points, and the counters and the picture share the height.

use std::collections::VecDeque;

use egui::{Align, Color32, FontId, Key, Layout, Rect, RichText, Sense, Ui, vec2};

use super::topology::{self, TopologyUi};
use super::{Action, nodes, widgets};
use crate::config::PRESENTER_LIST_REFRESH;
use crate::demo::{DemoCommand, DemoStatus};
use crate::monitor::model::chat::{self, ChatLine};
use crate::monitor::model::{Model, TrafficEntry};
use crate::monitor::{LinkState, MonitorCommand, SendBody, SendRequest, SendTarget};

/// The smallest area, in points, the presenter's layout is drawn for: the window is zoomed so it
/// shows at least this much (1024 × 720: a 1024 × 768 projector less a title bar).
const DESIGN: egui::Vec2 = vec2(1024.0, 700.0);

/// The most the presenter zooms (a 4K screen still shows a picture, not a poster).
const MAX_ZOOM: f32 = 2.0;

/// Chat messages kept for the list (as many as fit are shown, newest first).
const LINES: usize = 8;

/// Markers (outages) kept among the messages.
const MARKERS: usize = 4;

/// The chat rate's window, in seconds.
const RATE_SECS: u64 = 5;

/// Size of a message's words, and of its header line.
const WORDS_SIZE: f32 = 21.0;
const HEAD_SIZE: f32 = 16.0;

/// What a test message from the presenter says.
const TEST_WORDS: &str = "hello, audience!";

/// The zoom factor for a window of `size` points at zoom 1: the largest that still leaves
/// [`DESIGN`] points, between 1 and [`MAX_ZOOM`], in steps of 0.05 (no jitter while resizing).
pub fn zoom_for(size: egui::Vec2) -> f32 {
    let fit = (size.x / DESIGN.x).min(size.y / DESIGN.y);
    ((fit * 20.0).floor() / 20.0).clamp(1.0, MAX_ZOOM)
}

/// One line of the latest messages: a chat message, or a marker (the backplane went down or
/// came back).
#[derive(Debug, Clone, PartialEq)]
enum Story {
    Chat {
        at: u64,
        line: ChatLine,
        node: Option<String>,
    },
    Marker {
        at: u64,
        words: String,
        bad: bool,
    },
}

impl Story {
    fn at(&self) -> u64 {
        match self {
            Story::Chat { at, .. } | Story::Marker { at, .. } => *at,
        }
    }
}

/// The presenter's state between frames.
#[derive(Debug, Default)]
pub struct PresenterUi {
    pub topology: TopologyUi,
    /// The latest messages as last shown, and when they were taken (unix ms).
    latest: Vec<Story>,
    latest_at: u64,
    /// Backplane down/up markers, newest last.
    markers: VecDeque<Story>,
    /// Whether the backplane was down at the last frame (None before the first connection).
    was_down: Option<bool>,
    /// The controls overlay is open.
    pub controls: bool,
    /// The line saying what is on screen was dismissed.
    intro_dismissed: bool,
    /// Test messages sent from here (the next goes through the next live node).
    tests_sent: usize,
}

/// What presenter mode needs from the app besides the model.
pub struct Context<'a> {
    pub demo: Option<&'a DemoStatus>,
    /// What the backplane is called on screen ("Redis", "Memory bus").
    pub bus: &'a str,
    /// Who test messages are from.
    pub user: &'a str,
}

/// The header: what is on screen, the backplane in words, Controls and the way out.
pub fn top_bar(
    ui: &mut Ui,
    model: &Model,
    state: &mut PresenterUi,
    cx: &Context,
    now: u64,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Switchboard").strong().size(20.0));
        let nodes = model.nodes.rows().len();
        ui.label(
            RichText::new(format!(
                "{nodes} chat server{} sharing messages through {}",
                if nodes == 1 { "" } else { "s" },
                in_sentence(cx.bus)
            ))
            .size(16.0),
        );
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if ui
                .button(RichText::new("Exit presenter (Esc)").size(15.0))
                .on_hover_text("Back to the full dashboard")
                .clicked()
            {
                actions.push(Action::Presenter(false));
            }
            let label = if state.controls {
                "Hide controls (C)"
            } else {
                "Controls (C)"
            };
            if ui.button(RichText::new(label).size(15.0)).clicked() {
                state.controls = !state.controls;
            }
            let (color, words) = backplane_words(model, cx.bus, now);
            ui.label(RichText::new(words).size(16.0).color(color));
            widgets::dot(ui, color);
        });
    });
}

/// The backplane's name inside a sentence: "Redis", "the memory bus".
fn in_sentence(bus: &str) -> String {
    if bus == "Redis" {
        bus.to_string()
    } else {
        format!("the {}", bus.to_lowercase())
    }
}

/// The backplane's state in a few plain words.
fn backplane_words(model: &Model, bus: &str, now: u64) -> (Color32, String) {
    match &model.tap.state {
        LinkState::Connected => (widgets::OK, format!("{bus}: connected")),
        LinkState::Reconnecting { retry_at_ms, .. } => {
            let secs = retry_at_ms.saturating_sub(now).div_ceil(1000);
            (widgets::BAD, format!("{bus} is down: retrying in {secs} s"))
        }
        LinkState::Failed { .. } => (widgets::BAD, format!("{bus} is down")),
        LinkState::Idle | LinkState::Connecting => (widgets::IDLE, format!("{bus}: connecting")),
    }
}

/// The central area: the outage sentence, what is on screen, the counters, the picture and the
/// latest messages; the controls overlay; the keyboard shortcuts.
pub fn show(
    ui: &mut Ui,
    model: &Model,
    state: &mut PresenterUi,
    cx: &Context,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let down = follow_backplane(model, state, cx.bus, now);
    keys(ui, model, state, cx, now, actions);
    if down {
        egui::Frame::new()
            .fill(Color32::from_rgb(96, 14, 14))
            .inner_margin(8.0)
            .corner_radius(6.0)
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.label(
                    RichText::new(format!(
                        "{} is down: each node now delivers only to its own clients",
                        cx.bus
                    ))
                    .size(22.0)
                    .color(Color32::WHITE),
                );
            });
        ui.add_space(4.0);
    } else if !state.intro_dismissed {
        ui.horizontal_wrapped(|ui| {
            ui.add(
                egui::Label::new(
                    RichText::new(format!(
                        "A message sent to one chat server reaches the clients of every server: the servers pass it on through {}.",
                        in_sentence(cx.bus)
                    ))
                    .size(16.0),
                )
                .wrap(),
            );
            if ui.small_button("Hide").on_hover_text("Hide this line").clicked() {
                state.intro_dismissed = true;
            }
        });
    }
    // Counters and the picture share the height: the counters take about a sixth.
    let counter_size = (ui.available_height() * 0.1).clamp(34.0, 72.0);
    ui.horizontal(|ui| {
        counter(
            ui,
            &model.nodes.cluster_total_clients(now).to_string(),
            "chat clients",
            counter_size,
        );
        // While the backplane is down the tap sees nothing: the rate is unknown, not 0.
        let rate = if down {
            "–".to_string()
        } else {
            widgets::rate(chat::rate(model.traffic.iter().rev(), now, RATE_SECS))
        };
        counter(ui, &rate, "chat messages/s", counter_size);
        counter(
            ui,
            &nodes::nodes_up_text(&model.nodes, now),
            "nodes up",
            counter_size,
        );
    });
    ui.add_space(6.0);
    let body = ui.available_rect_before_wrap();
    let list_width = (body.width() * 0.36).max(320.0);
    let picture = Rect::from_min_max(body.min, egui::pos2(body.max.x - list_width - 8.0, body.max.y));
    let list = Rect::from_min_max(egui::pos2(body.max.x - list_width, body.min.y), body.max);
    ui.allocate_rect(body, Sense::hover());
    topology::diagram(
        ui,
        picture,
        model,
        &mut state.topology,
        true,
        cx.bus,
        now,
        actions,
    );
    latest(ui, list, model, state, down.then_some(cx.bus), now);
    if state.controls {
        controls(ui, model, state, cx, now, actions);
    }
}

/// One large figure with its caption under it.
fn counter(ui: &mut Ui, value: &str, caption: &str, size: f32) {
    egui::Frame::group(ui.style())
        .inner_margin(vec2(14.0, 4.0))
        .show(ui, |ui| {
            ui.vertical(|ui| {
                ui.label(RichText::new(value).size(size).strong());
                ui.label(
                    RichText::new(caption)
                        .size((size / 3.2).max(14.0))
                        .color(Color32::from_gray(190)),
                );
            });
        });
}

/// Notes when the backplane goes down or comes back (a marker among the messages); whether it is
/// down now.
fn follow_backplane(model: &Model, state: &mut PresenterUi, bus: &str, now: u64) -> bool {
    let down = match &model.tap.state {
        LinkState::Connected => false,
        LinkState::Reconnecting { .. } | LinkState::Failed { .. } => true,
        // Before the first connection nothing was lost.
        LinkState::Idle | LinkState::Connecting => return state.was_down.unwrap_or(false),
    };
    match state.was_down {
        Some(false) if down => state.markers.push_back(Story::Marker {
            at: now,
            words: format!("{bus} went down: from here on messages stay on their own server"),
            bad: true,
        }),
        Some(true) if !down => state.markers.push_back(Story::Marker {
            at: now,
            words: format!("{bus} is back: messages cross servers again"),
            bad: false,
        }),
        _ => {}
    }
    while state.markers.len() > MARKERS {
        state.markers.pop_front();
    }
    if state.was_down != Some(down) {
        state.latest_at = 0;
    }
    state.was_down = Some(down);
    down
}

/// The chat messages (and markers) to show, newest first.
fn stories(model: &Model, markers: &VecDeque<Story>) -> Vec<Story> {
    let names: Vec<(&str, &str)> = model
        .nodes
        .rows()
        .iter()
        .map(|r| (r.name.as_str(), r.target.hub_url.as_str()))
        .collect();
    let mut list: Vec<Story> = model
        .traffic
        .iter()
        .rev()
        .take(chat::LOOK_BACK)
        .filter(|e| chat::is_chat(e))
        .take(LINES)
        .map(|e: &TrafficEntry| Story::Chat {
            at: e.at_ms,
            line: chat::line(e),
            node: chat::sender_node(e, &model.traces, &names).map(|url| model.nodes.name_or_url(&url)),
        })
        .collect();
    list.extend(markers.iter().cloned());
    list.sort_by_key(|s| std::cmp::Reverse(s.at()));
    list.truncate(LINES);
    list
}

/// The latest messages in `rect`, whole and wrapped, newest first, as many as fit.
/// `down` names the backplane while it is down.
fn latest(ui: &mut Ui, rect: Rect, model: &Model, state: &mut PresenterUi, down: Option<&str>, now: u64) {
    let refresh = PRESENTER_LIST_REFRESH.as_millis() as u64;
    if state.latest_at == 0 || now >= state.latest_at + refresh || now < state.latest_at {
        state.latest = stories(model, &state.markers);
        state.latest_at = now;
    }
    let mut child = ui.new_child(egui::UiBuilder::new().max_rect(rect));
    let ui = &mut child;
    ui.painter().rect_filled(rect, 6.0, Color32::from_gray(16));
    let inner = rect.shrink(10.0);
    ui.scope_builder(egui::UiBuilder::new().max_rect(inner), |ui| {
        ui.set_clip_rect(rect);
        let title = match down {
            Some(bus) => format!("Latest messages (none cross servers while {bus} is down)"),
            None => "Latest messages".to_string(),
        };
        ui.add(
            egui::Label::new(
                RichText::new(title)
                    .size(HEAD_SIZE)
                    .color(Color32::from_gray(200)),
            )
            .wrap(),
        );
        ui.add_space(4.0);
        if state.latest.is_empty() {
            ui.label(
                RichText::new("no chat messages yet")
                    .size(WORDS_SIZE)
                    .color(Color32::from_gray(160)),
            );
        }
        let width = inner.width();
        for story in &state.latest {
            let (head, head_color, words, words_color) = match story {
                Story::Chat { at, line, node } => {
                    let who = match (&line.user, node) {
                        (_, Some(node)) if line.test => format!("test message from the dashboard on {node}"),
                        (_, None) if line.test => "test message from the dashboard".to_string(),
                        (Some(user), Some(node)) => {
                            format!("{} on {node}", user.split('@').next().unwrap_or(user))
                        }
                        (Some(user), None) => user.clone(),
                        (None, Some(node)) => format!("via {node}"),
                        (None, None) => "someone".to_string(),
                    };
                    let color = if line.test {
                        topology::TEST_COLOR
                    } else {
                        topology::CHAT_COLOR
                    };
                    (
                        format!("{} {who} to {}", widgets::clock(*at), line.audience),
                        color,
                        line.text.clone(),
                        Color32::WHITE,
                    )
                }
                Story::Marker { at, words, bad } => (
                    format!("{} ——", widgets::clock(*at)),
                    if *bad { widgets::BAD } else { widgets::OK },
                    words.clone(),
                    if *bad {
                        Color32::from_rgb(255, 170, 170)
                    } else {
                        Color32::from_rgb(170, 230, 170)
                    },
                ),
            };
            let head = ui
                .painter()
                .layout(head, FontId::proportional(HEAD_SIZE), head_color, width);
            let words = ui
                .painter()
                .layout(words, FontId::proportional(WORDS_SIZE), words_color, width);
            // Whole messages only: one that does not fit is left out, never cut.
            if head.size().y + words.size().y + 8.0 > ui.available_height() {
                break;
            }
            ui.add(egui::Label::new(head));
            ui.add(egui::Label::new(words));
            ui.add_space(8.0);
        }
    });
}

/// The demo's actions and a test message, as (key, words, action). Node keys are 1 to 8.
fn control_list(model: &Model, state: &PresenterUi, cx: &Context, now: u64) -> Vec<(Key, String, Action)> {
    let mut list = Vec::new();
    let live: Vec<&str> = model.nodes.live(now).map(|r| r.target.hub_url.as_str()).collect();
    if !live.is_empty() {
        let node = live[state.tests_sent % live.len()].to_string();
        let name = model.nodes.name_or_url(&node);
        list.push((
            Key::T,
            format!("Send a test message through {name}"),
            Action::Monitor(MonitorCommand::Send(SendRequest {
                node,
                target: SendTarget::All,
                body: SendBody::Chat {
                    user: cx.user.to_string(),
                    text: TEST_WORDS.to_string(),
                },
                count: 1,
                rate_per_sec: 1.0,
                probes_join: false,
            })),
        ));
    }
    let Some(demo) = cx.demo else {
        return list;
    };
    if demo.nodes.len() < 8 {
        list.push((
            Key::N,
            "Start another node".to_string(),
            Action::Demo(DemoCommand::AddNode),
        ));
    }
    const NODE_KEYS: [Key; 8] = [
        Key::Num1,
        Key::Num2,
        Key::Num3,
        Key::Num4,
        Key::Num5,
        Key::Num6,
        Key::Num7,
        Key::Num8,
    ];
    for (node, key) in demo.nodes.iter().zip(NODE_KEYS) {
        let (words, command) = if node.running {
            (
                format!("Stop {}", node.name),
                DemoCommand::StopNode(node.name.clone()),
            )
        } else {
            (
                format!("Start {} again", node.name),
                DemoCommand::StartNode(node.name.clone()),
            )
        };
        list.push((key, words, Action::Demo(command)));
    }
    if demo.backplane_kind != "external" {
        let (words, command) = if demo.backplane_running {
            (format!("Stop {}", cx.bus), DemoCommand::StopBackplane)
        } else {
            (format!("Start {} again", cx.bus), DemoCommand::StartBackplane)
        };
        list.push((Key::B, words, Action::Demo(command)));
    }
    list
}

/// The key's name as written on its button.
fn key_name(key: Key) -> &'static str {
    key.symbol_or_name()
}

/// The keyboard shortcuts of presenter mode: Esc leaves, C toggles the controls, and every
/// control's key (with or without the overlay open).
fn keys(
    ui: &mut Ui,
    model: &Model,
    state: &mut PresenterUi,
    cx: &Context,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let list = control_list(model, state, cx, now);
    let pressed = |key: Key| ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, key));
    if pressed(Key::Escape) {
        actions.push(Action::Presenter(false));
    }
    if pressed(Key::C) {
        state.controls = !state.controls;
    }
    for (key, _, action) in list {
        if pressed(key) {
            run_control(state, action, actions);
        }
    }
}

/// Runs a control (a key or a click): the next test message goes through the next node.
fn run_control(state: &mut PresenterUi, action: Action, actions: &mut Vec<Action>) {
    if matches!(action, Action::Monitor(MonitorCommand::Send(_))) {
        state.tests_sent += 1;
    }
    actions.push(action);
}

/// The controls overlay, in the lower right corner over the picture.
fn controls(
    ui: &mut Ui,
    model: &Model,
    state: &mut PresenterUi,
    cx: &Context,
    now: u64,
    actions: &mut Vec<Action>,
) {
    let list = control_list(model, state, cx, now);
    egui::Area::new(egui::Id::unique("presenter_controls"))
        .anchor(egui::Align2::RIGHT_BOTTOM, vec2(-12.0, -12.0))
        .order(egui::Order::Foreground)
        .show(ui.ctx(), |ui| {
            egui::Frame::popup(ui.style()).inner_margin(10.0).show(ui, |ui| {
                ui.label(RichText::new("Controls").strong().size(16.0));
                if list.is_empty() {
                    ui.label("no node to send through yet");
                }
                for (key, words, action) in list {
                    if ui
                        .button(RichText::new(format!("{words}  ({})", key_name(key))).size(15.0))
                        .clicked()
                    {
                        run_control(state, action, actions);
                    }
                }
                ui.label(
                    RichText::new("C hides this · Esc leaves presenter mode")
                        .size(14.0)
                        .weak(),
                );
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zoom_leaves_the_design_area_at_projector_sizes() {
        assert_eq!(zoom_for(vec2(1024.0, 768.0)), 1.0);
        assert_eq!(zoom_for(vec2(1280.0, 720.0)), 1.0);
        assert_eq!(zoom_for(vec2(1440.0, 900.0)), 1.25);
        assert_eq!(zoom_for(vec2(1920.0, 1080.0)), 1.5);
        assert_eq!(zoom_for(vec2(3840.0, 2160.0)), 2.0);
        assert_eq!(zoom_for(vec2(800.0, 600.0)), 1.0);
        for size in [vec2(1440.0, 900.0), vec2(1920.0, 1080.0), vec2(2560.0, 1440.0)] {
            let z = zoom_for(size);
            assert!(
                size.x / z >= DESIGN.x && size.y / z >= DESIGN.y,
                "{size:?} at {z}"
            );
        }
    }
}
