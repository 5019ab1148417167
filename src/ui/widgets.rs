//! Small shared widgets and formatters: link-state badges, numbers, clocks, sparklines.

use egui::{Color32, RichText, Stroke, Ui, Vec2};

use crate::monitor::LinkState;
use crate::monitor::census_status::CensusStatus;
use crate::monitor::model::traffic::hms_utc;

pub const OK: Color32 = Color32::from_rgb(80, 190, 110);
pub const WARN: Color32 = Color32::from_rgb(230, 160, 40);
pub const BAD: Color32 = Color32::from_rgb(230, 80, 70);
pub const IDLE: Color32 = Color32::from_rgb(140, 140, 140);

/// Color and words for a link state ("connected", "reconnecting in 3 s (attempt 2): why",
/// "failed: why"): the whole story, for hovers and tables with room.
pub fn describe(state: &LinkState, now_ms: u64) -> (Color32, String) {
    match state {
        LinkState::Reconnecting { attempt, error, .. } => (
            BAD,
            format!("{} (attempt {attempt}): {error}", short_state(state, now_ms).1),
        ),
        LinkState::Failed { error } => (BAD, format!("failed: {error}")),
        _ => short_state(state, now_ms),
    }
}

/// Color and a few words for a link state, without the error ("reconnecting in 3 s",
/// "failed"): for captions that must fit; [`describe`] has the rest.
///
/// The countdown is the time to the next attempt rounded to the second, so it reads 3, 2, 1
/// and then "now" as the attempt is made (a retry due in under half a second is "now").
pub fn short_state(state: &LinkState, now_ms: u64) -> (Color32, String) {
    match state {
        LinkState::Idle => (IDLE, "not connected".to_string()),
        LinkState::Connecting => (WARN, "connecting…".to_string()),
        LinkState::Connected => (OK, "connected".to_string()),
        LinkState::Reconnecting { retry_at_ms, .. } => {
            let secs = countdown_secs(*retry_at_ms, now_ms);
            if secs == 0 {
                (BAD, "reconnecting now".to_string())
            } else {
                (BAD, format!("reconnecting in {secs} s"))
            }
        }
        LinkState::Failed { .. } => (BAD, "failed".to_string()),
    }
}

/// Whole seconds until `at_ms`, rounded (a countdown shown once a second).
pub fn countdown_secs(at_ms: u64, now_ms: u64) -> u64 {
    (at_ms.saturating_sub(now_ms) + 500) / 1000
}

/// The census's one short line ("Count of nodes and clients: 4 s ago"), and its colour when it
/// is not the weak default (stale, or failing); the timing details go in the hover.
pub fn census_line(status: &CensusStatus, now: u64) -> (Option<egui::Color32>, String) {
    const WHAT: &str = "Count of nodes and clients";
    if status.scanned_at_ms == 0 {
        let why = if status.problem.is_some() {
            " (see why on hover)"
        } else {
            ""
        };
        return (Some(WARN), format!("{WHAT}: none yet{why}"));
    }
    let age = duration_words(now.saturating_sub(status.scanned_at_ms) / 1000);
    if status.problem.is_some() || status.is_stale(now) {
        (Some(WARN), format!("{WHAT}: STALE, {age} old"))
    } else {
        (None, format!("{WHAT}: {age} ago"))
    }
}

/// A colored dot and the state's few words, labelled, on one line ("Tap: reconnecting in 3 s"),
/// shortened with "…" to the width there is; the whole story (attempt, error, address) on hover.
pub fn link_state(ui: &mut Ui, label: &str, state: &LinkState, now_ms: u64) {
    let (color, text) = short_state(state, now_ms);
    let (_, full) = describe(state, now_ms);
    ui.horizontal(|ui| {
        dot(ui, color);
        let shown = format!("{label}: {text}");
        ui.add(
            egui::Label::new(RichText::new(shown.as_str()).color(color))
                .truncate()
                .show_tooltip_when_elided(false),
        )
        .on_hover_text(format!("{label}: {full}"));
    });
}

/// A filled circle of the text height.
pub fn dot(ui: &mut Ui, color: Color32) {
    let size = ui.text_style_height(&egui::TextStyle::Body) * 0.6;
    let (rect, _) = ui.allocate_exact_size(Vec2::splat(size), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), size / 2.0, color);
}

/// 1234567 → "1.23M", 950 → "950", 12.5 → "12.5".
pub fn si(value: f64) -> String {
    let a = value.abs();
    if a >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if a >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A rate per second, in the one format every rate on screen uses: one decimal below 10 ("0.0",
/// "2.5"), whole numbers from 10 ("16", "950"), then k / M ("12.3k", "1.23M"). Rates never
/// switch between "2" and "2.0".
pub fn rate(per_sec: f64) -> String {
    let v = if per_sec.is_finite() {
        per_sec.max(0.0)
    } else {
        0.0
    };
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 9.95 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A large number with a small caption under it, in a frame; `size` is the number's text size
/// (the caption follows at a third of it, never below the body text size).
/// Returns the frame's response, for a hover with the details the caption leaves out.
pub fn big_number(ui: &mut Ui, caption: &str, value: &str, size: f32) -> egui::Response {
    ui.group(|ui| {
        ui.vertical(|ui| {
            ui.label(RichText::new(value).size(size).strong());
            let caption_text = RichText::new(caption).weak();
            let body = ui.text_style_height(&egui::TextStyle::Body);
            if size / 3.0 > body {
                ui.label(caption_text.size(size / 3.0));
            } else {
                ui.label(caption_text);
            }
        });
    })
    .response
}

/// The smallest text size anywhere in the window (px): below it, grey text on a projector or a
/// laptop screen is not read. `tests` in this module scan `src/ui/` for anything smaller.
pub const MIN_TEXT_SIZE: f32 = 12.0;

/// Text greyed out: the values of a node that is not live.
pub fn greyed(text: impl Into<String>) -> RichText {
    RichText::new(text.into()).color(IDLE).italics()
}

/// Bytes in B / KiB / MiB / GiB.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{n} B")
    }
}

/// HH:MM:SS.mmm (UTC) of a unix-ms time.
pub fn clock_ms(at_ms: u64) -> String {
    format!("{}.{:03}", hms_utc(at_ms), at_ms % 1000)
}

/// HH:MM:SS (UTC) of a unix-ms time.
pub fn clock(at_ms: u64) -> String {
    hms_utc(at_ms)
}

/// A duration in ms with sensible precision.
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        "<1 ms".to_string()
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// The shade of a window in which something was down, on a chart.
pub const DOWN_SHADE: Color32 = Color32::from_rgba_premultiplied(110, 35, 30, 110);

/// A time sparkline: `points` are (unix ms, value) over the window `[from_ms, to_ms]`, placed by
/// time; `down` windows (unix ms) are shaded behind the line. A scale is drawn in it: the
/// largest value at the top left, the window's length at the bottom right.
pub fn time_sparkline(
    ui: &mut Ui,
    points: &[(u64, f64)],
    window: (u64, u64),
    down: &[(u64, u64)],
    size: Vec2,
    color: Color32,
) -> egui::Response {
    let (from_ms, to_ms) = window;
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    let span = to_ms.saturating_sub(from_ms).max(1) as f32;
    let x = |t: u64| rect.left() + (t.clamp(from_ms, to_ms) - from_ms) as f32 / span * rect.width();
    for (a, b) in down {
        let (left, right) = (x(*a), x(*b).max(x(*a) + 2.0));
        painter.rect_filled(
            egui::Rect::from_x_y_ranges(left..=right, rect.y_range()),
            0.0,
            DOWN_SHADE,
        );
    }
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    if points.len() >= 2 {
        let top = max.max(1.0);
        let line: Vec<egui::Pos2> = points
            .iter()
            .map(|(t, v)| {
                egui::pos2(
                    x(*t),
                    rect.bottom() - 2.0 - (*v / top) as f32 * (rect.height() - 4.0),
                )
            })
            .collect();
        painter.add(egui::Shape::line(line, Stroke::new(1.5, color)));
    }
    let scale = egui::FontId::proportional(MIN_TEXT_SIZE);
    let weak = ui.visuals().weak_text_color();
    painter.text(
        rect.left_top() + egui::vec2(2.0, 0.0),
        egui::Align2::LEFT_TOP,
        format!("max {}", si(max)),
        scale.clone(),
        weak,
    );
    painter.text(
        rect.right_bottom() - egui::vec2(2.0, 0.0),
        egui::Align2::RIGHT_BOTTOM,
        duration_words((to_ms - from_ms) / 1000),
        scale,
        weak,
    );
    response
}

/// "45 s", "5 min", "2 h".
pub fn duration_words(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12.5), "12.5");
        assert_eq!(si(52_340.0), "52.3k");
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(rate(0.0), "0.0");
        assert_eq!(rate(2.0), "2.0");
        assert_eq!(rate(9.96), "10");
        assert_eq!(rate(16.4), "16");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(-1.0), "0.0");
        assert_eq!(rate(f64::NAN), "0.0");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(clock_ms(3_723_045), "01:02:03.045");
    }

    #[test]
    fn states_read_well() {
        let s = LinkState::Reconnecting {
            attempt: 2,
            retry_at_ms: 10_500,
            error: "refused".into(),
        };
        assert_eq!(describe(&s, 8_000).1, "reconnecting in 3 s (attempt 2): refused");
        assert_eq!(short_state(&s, 8_000).1, "reconnecting in 3 s");
        // Second by second down to "now": 2.5 s → 3, 1.4 s → 1, 0.4 s → now.
        assert_eq!(short_state(&s, 8_100).1, "reconnecting in 2 s");
        assert_eq!(short_state(&s, 9_100).1, "reconnecting in 1 s");
        assert_eq!(short_state(&s, 10_100).1, "reconnecting now");
        assert_eq!(short_state(&s, 20_000).1, "reconnecting now");
        assert_eq!(
            describe(
                &LinkState::Failed {
                    error: "bad url".into()
                },
                0
            )
            .1,
            "failed: bad url"
        );
    }

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// No text under [`MIN_TEXT_SIZE`] in the window: no text in the small style (egui's is
    /// 9 px), no small text style, and no literal size under 12 given to `.size(…)` or a `FontId`.
    /// (A size computed at run time is not seen here; those are clamped where they are made.)
    #[test]
    fn no_text_under_twelve_pixels_in_the_ui_sources() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui");
        let mut files = Vec::new();
        sources(&dir, &mut files);
        assert!(files.len() > 5, "the ui sources are found in {}", dir.display());
        // Spelled in pieces so this test does not find itself.
        let small = [".small", "()"].concat();
        let small_style = ["TextStyle::", "Small"].concat();
        let mut found = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let at = format!("{}:{}: {}", file.display(), n + 1, line.trim());
                if line.contains(&small) || line.contains(&small_style) {
                    found.push(at.clone());
                }
                for call in [".size(", "proportional(", "monospace("] {
                    for (i, _) in line.match_indices(call) {
                        let rest = &line[i + call.len()..];
                        let Some(end) = rest.find(')') else { continue };
                        if let Ok(size) = rest[..end].trim().trim_end_matches("_f32").parse::<f32>()
                            && size < MIN_TEXT_SIZE
                        {
                            found.push(at.clone());
                        }
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "text under {MIN_TEXT_SIZE} px:\n{}",
            found.join("\n")
        );
    }
}
