//! Driving the real dashboard app with egui_kittest: run frames until something shows (with a
//! deadline and a label), look for a label, click, type. Shared by the `*_kittest` binaries.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::ui::DashboardApp;

/// Runs frames until `done` holds, panicking with `what` once `deadline` has passed.
pub fn frames_until(
    h: &mut Harness<'_, DashboardApp>,
    deadline: Duration,
    what: &str,
    mut done: impl FnMut(&mut Harness<'_, DashboardApp>) -> bool,
) {
    let until = Instant::now() + deadline;
    loop {
        h.step();
        if done(h) {
            return;
        }
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Whether some widget's label contains `text`.
pub fn has_label(h: &Harness<'_, DashboardApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Clicks the widget labelled `label` and runs frames so the click takes effect.
pub fn click(h: &mut Harness<'_, DashboardApp>, label: &str) {
    h.get_by_label(label).click();
    h.step();
    h.step();
}

/// Types into the text field labelled `label` (click to focus, then type).
pub fn type_into(h: &mut Harness<'_, DashboardApp>, label: &str, text: &str) {
    click(h, label);
    h.get_by_label(label).type_text(text);
    h.step();
}

/// Presses and releases the primary button at `pos` (a painted cell, which has no widget of its own).
pub fn click_at(h: &mut Harness<'_, DashboardApp>, pos: egui::Pos2) {
    h.hover_at(pos);
    h.step();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
    }
    h.step();
    h.step();
}

/// Whether the widget labelled `label` is disabled (greyed out, not clickable).
pub fn is_disabled(h: &Harness<'_, DashboardApp>, label: &str) -> bool {
    use egui_kittest::kittest::NodeT;
    h.get_by_label(label).accesskit_node().is_disabled()
}

// ---- first-look helpers (tests/first_look_kittest.rs) ----

/// The app in a window of `width`×`height` points (a projector's 1024×768, say).
pub fn harness_sized(app: DashboardApp, width: f32, height: f32) -> Harness<'static, DashboardApp> {
    Harness::builder()
        .with_size(egui::vec2(width, height))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app)
}

/// Every label in the window now (a text's own, a widget's name), with its rectangle.
pub fn labels_with_rects(h: &Harness<'_, DashboardApp>) -> Vec<(String, egui::Rect)> {
    use egui_kittest::kittest::NodeT as _;
    // AccessKit keeps a plain label's text in its value, a widget's name in its label.
    let text = |node: &egui_kittest::kittest::AccessKitNode<'_>| {
        if node.role() == egui::accesskit::Role::Label {
            node.value()
        } else {
            node.label()
        }
    };
    h.query_all_by(move |node| text(node).is_some_and(|l| !l.is_empty()))
        .map(|node| (text(&node.accesskit_node()).unwrap_or_default(), node.rect()))
        .collect()
}
