//! The rates panel: messages and bytes per second per channel kind and per hub over the last
//! minutes (from the tap: Redis keeps no per-channel counters), and totals since the start.
//!
//! The charts are smoothed over a chosen interval (1 s / 5 s / 30 s; 5 s by default, which is
//! what removes the 0↔2 sawtooth of a low steady rate), can use a log scale, and on a linear
//! scale one burst does not flatten the rest: the y axis stops at twice the 90th percentile and
//! the points above are drawn at the limit with a red marker (`monitor::model::rates`).
//!
//! The x axis starts at the first second with traffic ([`axis_start`]), not at the window's far
//! end: 30 s after the start the chart is 30 s wide, not 300 s of zeros and a line at the end.

use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, Points, Span};

use super::traffic::kind_color;
use super::widgets;
use crate::monitor::model::rates::{
    RateKey, Rates, SMOOTHING_CHOICES, clip_bursts, clip_limit, from_log_y, log_y, smooth,
};
use crate::monitor::model::{DownKind, Model};

/// How the charts are drawn; kept in egui's memory between frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatesView {
    /// Trailing mean over this many seconds (one of [`SMOOTHING_CHOICES`]).
    pub smoothing: u64,
    pub log: bool,
}

impl Default for RatesView {
    fn default() -> Self {
        Self {
            smoothing: 5,
            log: false,
        }
    }
}

fn view_id() -> egui::Id {
    egui::Id::unique("rates_view")
}

pub fn show(ui: &mut Ui, model: &Model, now: u64) {
    let rates = &model.rates;
    let mut view: RatesView = ui.data(|d| d.get_temp(view_id())).unwrap_or_default();
    ui.horizontal(|ui| {
        widgets::big_number(
            ui,
            "messages/s (5 s)",
            &widgets::rate(rates.messages_per_sec(now, 5)),
            26.0,
        );
        widgets::big_number(
            ui,
            "bytes/s (5 s)",
            &format!("{}/s", widgets::bytes(rates.bytes_per_sec(now, 5) as u64)),
            26.0,
        );
        widgets::big_number(
            ui,
            "messages/s (1 min)",
            &widgets::rate(rates.messages_per_sec(now, 60)),
            26.0,
        );
    });
    ui.horizontal(|ui| {
        ui.label("Smoothing");
        for secs in SMOOTHING_CHOICES {
            ui.selectable_value(&mut view.smoothing, secs, format!("{secs} s"))
                .on_hover_text(format!("Each point is the mean of the {secs} s up to it"));
        }
        ui.separator();
        ui.checkbox(&mut view.log, "log scale").on_hover_text(
            "0 to 1 linear, then 1, 10, 100… evenly spaced, so bursts and trickles show together",
        );
    });
    ui.data_mut(|d| d.insert_temp(view_id(), view));
    ui.separator();
    let height = ((ui.available_height() - 200.0) / 2.0).max(120.0);
    let down = down_windows(model, now);
    if !down.is_empty() {
        ui.label(
            RichText::new(format!(
                "Shaded: {} window(s) in which the tap, a node or its backplane link was down",
                down.len()
            ))
            .color(widgets::WARN),
        );
    }

    let by_kind: Vec<_> = rates
        .kinds()
        .into_iter()
        .map(|k| (k.label().to_string(), Some(kind_color(k)), RateKey::Kind(k)))
        .collect();
    let start = axis_start(&rates.series(&RateKey::All, now));
    rate_plot(
        ui,
        "Messages per second by kind",
        "rates_by_kind",
        height,
        &by_kind,
        rates,
        view,
        &down,
        start,
        now,
    );
    let by_hub: Vec<_> = rates
        .hubs()
        .into_iter()
        .map(|h| (h.clone(), None, RateKey::Hub(h)))
        .collect();
    rate_plot(
        ui,
        "Messages per second by hub",
        "rates_by_hub",
        height,
        &by_hub,
        rates,
        view,
        &down,
        start,
        now,
    );

    ui.separator();
    ui.columns(2, |cols| {
        totals(
            &mut cols[0],
            "Totals by kind",
            rates
                .totals_by_kind()
                .into_iter()
                .map(|(k, m, b)| (k.label().to_string(), m, b)),
        );
        totals(&mut cols[1], "Totals by hub", rates.totals_by_hub().into_iter());
    });
}

/// (legend name, from, to) of every down window within the charts' reach: the tap's, each
/// node's and each node's backplane link's.
fn down_windows(model: &Model, now: u64) -> Vec<(String, u64, u64)> {
    let since = now.saturating_sub(crate::config::DEFAULT_RATE_WINDOW.as_millis() as u64);
    let mut out: Vec<(String, u64, u64)> = model
        .down_spans(None, since, now)
        .into_iter()
        .map(|d| ("down: the tap".to_string(), d.from_ms, d.to_ms))
        .collect();
    for row in model.nodes.rows() {
        for d in model.down_spans(Some(&row.target.hub_url), since, now) {
            let what = match d.kind {
                DownKind::Backplane => format!("down: {}'s backplane", row.name),
                _ => format!("down: {}", row.name),
            };
            out.push((what, d.from_ms, d.to_ms));
        }
    }
    out
}

/// One plot of message rates, a line per (name, color, key).
#[allow(clippy::too_many_arguments)]
fn rate_plot(
    ui: &mut Ui,
    title: &str,
    id: &str,
    height: f32,
    lines: &[(String, Option<Color32>, RateKey)],
    rates: &Rates,
    view: RatesView,
    down: &[(String, u64, u64)],
    start: f64,
    now: u64,
) {
    let series: Vec<Vec<[f64; 2]>> = lines
        .iter()
        .map(|(_, _, key)| {
            let mut points = smooth(&rates.series(key, now), view.smoothing);
            points.retain(|p| p[0] >= start);
            points
        })
        .collect();
    let limit = if view.log {
        None
    } else {
        clip_limit(series.iter().map(Vec::as_slice))
    };
    ui.horizontal(|ui| {
        ui.label(RichText::new(title).strong());
        let how = format!("smoothed over {} s", view.smoothing);
        ui.label(RichText::new(how).weak());
        if let Some(limit) = limit {
            ui.label(
                RichText::new(format!(
                    "· y axis clipped at {}/s: points above it are drawn at the limit and marked in red",
                    widgets::rate(limit)
                ))
                .color(widgets::WARN),
            );
        }
    });
    // One plot memory per mode: bounds fixed for a clipped chart must not stick to the others.
    let mode = match (view.log, limit) {
        (true, _) => "log",
        (false, Some(_)) => "clipped",
        (false, None) => "linear",
    };
    let mut plot = Plot::new(format!("{id}_{mode}"))
        .height(height)
        .legend(Legend::default())
        .include_y(0.0)
        .include_x(start)
        .include_x(0.0)
        .x_axis_label("seconds ago")
        .allow_scroll(false);
    if view.log {
        // Whole numbers of the log scale are 0, 1, 10, 100…; the marks between stay unlabelled.
        plot = plot.y_axis_formatter(|mark, _| {
            let whole = mark.value.round();
            if (mark.value - whole).abs() < 1e-9 && whole >= 0.0 {
                widgets::si(from_log_y(whole).round())
            } else {
                String::new()
            }
        });
    } else if let Some(limit) = limit {
        plot = plot.include_y(limit * 1.05).auto_bounds([true, false]);
    }
    plot.show(ui, |plot| {
        if let Some(limit) = limit {
            plot.set_plot_bounds_y(0.0..=limit * 1.08);
        }
        // Behind the lines: when the tap, a node or its backplane link was down (x is seconds
        // before now, negative).
        for (name, from_ms, to_ms) in down {
            let x = |t: u64| (-(now.saturating_sub(t) as f64 / 1000.0)).max(start);
            plot.span(
                Span::new(name.as_str(), x(*from_ms)..=x(*to_ms).max(x(*from_ms) + 0.5))
                    .fill(widgets::DOWN_SHADE)
                    .border_width(0.0),
            );
        }
        for ((name, color, _), points) in lines.iter().zip(series) {
            let color = color.unwrap_or_else(|| auto_color(name));
            let (points, clipped) = match limit {
                Some(limit) => clip_bursts(&points, limit),
                None => (points, Vec::new()),
            };
            let points: Vec<[f64; 2]> = if view.log {
                points.iter().map(|p| [p[0], log_y(p[1])]).collect()
            } else {
                points
            };
            plot.line(Line::new(name.as_str(), points).width(1.5).color(color));
            if !clipped.is_empty() {
                plot.points(
                    Points::new(format!("{name} (clipped)"), clipped)
                        .shape(MarkerShape::Up)
                        .radius(5.0)
                        .color(widgets::BAD),
                );
            }
        }
    });
}

/// Where the charts' x axis starts (seconds before now, negative): the first second with any
/// traffic in `all` (the all-traffic series, oldest first, as [`Rates::series`] gives it), at
/// most the whole window; -1 when nothing was seen yet (a chart a second wide, not 300 s).
pub fn axis_start(all: &[[f64; 2]]) -> f64 {
    all.iter().find(|p| p[1] > 0.0).map_or(-1.0, |p| p[0].min(-1.0))
}

/// A stable colour for a series without its own (hubs), from its name.
fn auto_color(name: &str) -> Color32 {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    egui::ecolor::Hsva::new((h % 360) as f32 / 360.0, 0.55, 0.9, 1.0).into()
}

fn totals(ui: &mut Ui, title: &str, rows: impl Iterator<Item = (String, u64, u64)>) {
    ui.label(RichText::new(title).strong());
    egui::Grid::new(title)
        .striped(true)
        .num_columns(3)
        .show(ui, |ui| {
            ui.label("");
            ui.label("messages");
            ui.label("bytes");
            ui.end_row();
            for (name, messages, bytes) in rows {
                ui.label(name);
                ui.label(widgets::si(messages as f64));
                ui.label(widgets::bytes(bytes));
                ui.end_row();
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::model::entry::{EntryKind, TrafficEntry};

    #[test]
    fn the_axis_starts_at_the_first_sample_not_the_window_end() {
        // 30 s of traffic at the end of a 300 s window.
        let mut rates = Rates::with_window_secs(300);
        let now = 1_000_000_000;
        for ago in 1..=30u64 {
            rates.record(&TrafficEntry::new(
                now - ago * 1000,
                "c:all",
                EntryKind::All,
                vec![0; 10],
            ));
        }
        let all = rates.series(&RateKey::All, now);
        assert_eq!(
            all.first().map(|p| p[0]),
            Some(-300.0),
            "the series spans the window"
        );
        assert_eq!(axis_start(&all), -30.0);
        // Nothing yet: one second, not 300.
        assert_eq!(
            axis_start(&Rates::with_window_secs(300).series(&RateKey::All, now)),
            -1.0
        );
        // Traffic all along: the whole window.
        let full: Vec<[f64; 2]> = (1..=300).rev().map(|a| [-(a as f64), 1.0]).collect();
        assert_eq!(axis_start(&full), -300.0);
    }
}
