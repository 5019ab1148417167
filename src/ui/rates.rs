//! The rates panel: messages and bytes per second per channel kind and per hub over the last
//! minutes (from the tap: Redis keeps no per-channel counters), and totals since the start.

use egui::{RichText, Ui};
use egui_plot::{Legend, Line, Plot};

use super::traffic::kind_color;
use super::widgets;
use crate::monitor::model::Model;
use crate::monitor::model::rates::RateKey;

pub fn show(ui: &mut Ui, model: &Model, now: u64) {
    let rates = &model.rates;
    ui.horizontal(|ui| {
        big_number(
            ui,
            "messages/s (5 s)",
            &widgets::si(rates.messages_per_sec(now, 5)),
        );
        big_number(
            ui,
            "bytes/s (5 s)",
            &widgets::bytes(rates.bytes_per_sec(now, 5) as u64),
        );
        big_number(
            ui,
            "messages/s (1 min)",
            &widgets::si(rates.messages_per_sec(now, 60)),
        );
    });
    ui.separator();
    let height = ((ui.available_height() - 180.0) / 2.0).max(120.0);

    let by_kind: Vec<_> = rates
        .kinds()
        .into_iter()
        .map(|k| (k.label().to_string(), Some(kind_color(k)), RateKey::Kind(k)))
        .collect();
    rate_plot(
        ui,
        "Messages per second by kind",
        "rates_by_kind",
        height,
        &by_kind,
        rates,
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

/// One plot of message rates, a line per (name, color, key).
fn rate_plot(
    ui: &mut Ui,
    title: &str,
    id: &str,
    height: f32,
    lines: &[(String, Option<egui::Color32>, RateKey)],
    rates: &crate::monitor::model::rates::Rates,
    now: u64,
) {
    ui.label(RichText::new(title).strong());
    Plot::new(id)
        .height(height)
        .legend(Legend::default())
        .include_y(0.0)
        .x_axis_label("seconds ago")
        .allow_scroll(false)
        .show(ui, |plot| {
            for (name, color, key) in lines {
                let mut line = Line::new(name.as_str(), rates.series(key, now)).width(1.5);
                if let Some(color) = color {
                    line = line.color(*color);
                }
                plot.line(line);
            }
        });
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

/// A large number with a small caption under it.
pub fn big_number(ui: &mut Ui, caption: &str, value: &str) {
    ui.group(|ui| {
        ui.vertical(|ui| {
            ui.label(RichText::new(value).size(26.0).strong());
            ui.label(RichText::new(caption).small().weak());
        });
    });
}
