//! Presenter mode in the real app, driven with egui_kittest at 1024×768 (a projector) against a
//! real demo (three hub nodes, the in-memory bus, simulated clients): every visible label is
//! whole and on screen, the story is told without internals, and the keys work in front of the
//! audience (T sends a test message, B stops the backplane, which becomes one plain sentence and
//! a marker among the messages; Esc leaves presenter mode).
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::kittest::{frames_until, harness_sized, has_label, labels_with_rects};
use egui_kittest::Harness;
use switchboard::demo::{DemoBackplane, DemoOptions};
use switchboard::link::Link;
use switchboard::ui::{DashboardApp, Settings, Startup};

const DEADLINE: Duration = Duration::from_secs(30);
const SIZE: egui::Vec2 = egui::vec2(1024.0, 768.0);

fn presenter_demo() -> Harness<'static, DashboardApp> {
    let options = DemoOptions {
        nodes: 3,
        backplane: DemoBackplane::Memory,
        ..DemoOptions::default()
    };
    let (link, wiring) = Link::start(Some(options)).expect("the demo starts");
    let settings = Settings {
        presenter: true,
        ..Settings::default()
    };
    let app = DashboardApp::new(
        link,
        Startup {
            demo: wiring,
            ..Startup::new(settings)
        },
    );
    harness_sized(app, SIZE.x, SIZE.y)
}

/// No label is cut (no "…"), none reaches past the window, none shows an internal.
fn whole_and_on_screen(h: &Harness<'_, DashboardApp>, when: &str) {
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, SIZE);
    let all = labels_with_rects(h);
    assert!(all.len() > 10, "{when}: the presenter shows its labels: {all:?}");
    for (label, rect) in &all {
        assert!(!label.contains('…'), "{when}: {label:?} is cut");
        assert!(
            screen.expand(0.5).contains_rect(*rect),
            "{when}: {label:?} at {rect:?} reaches past the 1024×768 window"
        );
        for internal in [
            "probe", "sb-trace", "PUBSUB", "NUMSUB", "dropped", "evicted", "frames/s",
        ] {
            assert!(!label.contains(internal), "{when}: the audience sees {label:?}");
        }
    }
}

#[test]
fn presenter_at_1024x768_shows_whole_labels_and_the_keys_work() {
    let mut h = presenter_demo();
    frames_until(&mut h, DEADLINE, "chat lines in the latest messages", |h| {
        has_label(h, "Latest messages") && has_label(h, " on node-") && has_label(h, "chat clients")
    });
    whole_and_on_screen(&h, "first look");
    // One client figure: no "+ 1 probe" anywhere, and the heartbeat-free chat rate's caption.
    assert!(has_label(&h, "chat messages/s"));

    h.key_press(egui::Key::T);
    frames_until(&mut h, DEADLINE, "the test message among the latest", |h| {
        has_label(h, "hello, audience!") && has_label(h, "test message from the dashboard")
    });
    whole_and_on_screen(&h, "after a test message");

    h.key_press(egui::Key::B);
    frames_until(&mut h, DEADLINE, "the outage sentence and its marker", |h| {
        has_label(h, "is down: each node now delivers only to its own clients") && has_label(h, "went down")
    });
    whole_and_on_screen(&h, "backplane stopped");

    h.key_press(egui::Key::B);
    frames_until(&mut h, DEADLINE, "the backplane back", |h| {
        has_label(h, "is back: messages cross servers again")
            && !has_label(h, "delivers only to its own clients")
    });

    h.key_press(egui::Key::Escape);
    frames_until(&mut h, DEADLINE, "the full dashboard again", |h| {
        has_label(h, "Traffic") && has_label(h, "Presenter") && !has_label(h, "Exit presenter")
    });
}
