//! The traffic table's columns: their order, widths (resized by dragging a header edge) and
//! visibility (the Columns menu). The message column is always shown and takes the width the
//! others leave; the hub column collapses while only one hub is seen.

use egui::Ui;

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Time,
    Kind,
    Hub,
    To,
    Message,
    Excluded,
    Size,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::Time,
        Column::Kind,
        Column::Hub,
        Column::To,
        Column::Message,
        Column::Excluded,
        Column::Size,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Time => "time",
            Column::Kind => "kind",
            Column::Hub => "hub",
            Column::To => "to",
            Column::Message => "message",
            Column::Excluded => "except",
            Column::Size => "size",
        }
    }

    /// Starting width in points; the message column takes whatever the others leave.
    fn default_width(self) -> f32 {
        match self {
            Column::Time => 124.0,
            Column::Kind => 80.0,
            Column::Hub => 176.0,
            Column::To => 120.0,
            Column::Message => 0.0,
            Column::Excluded => 56.0,
            Column::Size => 64.0,
        }
    }

    pub(super) fn index(self) -> usize {
        Column::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Narrowest a resized column may get, and the message column at least.
pub(super) const MIN_COLUMN: f32 = 28.0;
const MIN_MESSAGE: f32 = 120.0;

/// Width and visibility of the columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub widths: [f32; 7],
    pub shown: [bool; 7],
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            widths: Column::ALL.map(Column::default_width),
            shown: [true; 7],
        }
    }
}

impl Columns {
    /// (column, left x, width) of each column drawn in a table `width` wide; the hub column is
    /// left out when `one_hub`. The message column is never hidden and takes the rest.
    pub fn layout(&self, width: f32, one_hub: bool) -> Vec<(Column, f32, f32)> {
        let visible: Vec<Column> = Column::ALL
            .into_iter()
            .filter(|c| *c == Column::Message || (self.shown[c.index()] && !(one_hub && *c == Column::Hub)))
            .collect();
        let fixed: f32 = visible
            .iter()
            .filter(|c| **c != Column::Message)
            .map(|c| self.widths[c.index()])
            .sum();
        let mut x = 0.0;
        visible
            .into_iter()
            .map(|c| {
                let w = if c == Column::Message {
                    (width - fixed).max(MIN_MESSAGE)
                } else {
                    self.widths[c.index()]
                };
                let cell = (c, x, w);
                x += w;
                cell
            })
            .collect()
    }
}

/// The Columns menu: a checkbox per column (the message column always shows), and a reset.
pub(super) fn menu(ui: &mut Ui, columns: &mut Columns, one_hub: bool) {
    for c in Column::ALL {
        let i = c.index();
        match c {
            Column::Message => {
                ui.add_enabled(false, egui::Checkbox::new(&mut true, "message (always)"));
            }
            Column::Hub if one_hub => {
                ui.checkbox(&mut columns.shown[i], "hub")
                    .on_hover_text("Collapsed while only one hub is seen");
            }
            _ => {
                ui.checkbox(&mut columns.shown[i], c.title());
            }
        }
    }
    ui.separator();
    if ui.button("Reset widths").clicked() {
        columns.widths = Columns::default().widths;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_column_takes_the_rest_and_hub_collapses_with_one_hub() {
        let mut c = Columns::default();
        let cells = c.layout(1200.0, false);
        assert_eq!(cells.len(), 7);
        let message = cells
            .iter()
            .find(|(col, _, _)| *col == Column::Message)
            .map(|(_, x, w)| (*x, *w));
        // time 124 + kind 80 + hub 176 + to 120 before it; except 56 + size 64 after.
        assert_eq!(message, Some((500.0, 1200.0 - 620.0)));
        assert_eq!(
            cells.last().map(|(col, x, _)| (*col, *x)),
            Some((Column::Size, 1136.0))
        );

        let one_hub = c.layout(1200.0, true);
        assert!(one_hub.iter().all(|(col, _, _)| *col != Column::Hub));
        assert_eq!(
            one_hub.iter().find(|(col, _, _)| *col == Column::To).map(|c| c.1),
            Some(204.0)
        );

        c.shown[Column::Size.index()] = false;
        c.shown[Column::Message.index()] = false;
        let cells = c.layout(400.0, false);
        assert!(
            cells.iter().any(|(col, _, _)| *col == Column::Message),
            "never hidden"
        );
        assert!(cells.iter().all(|(col, _, _)| *col != Column::Size));
        // Too narrow: the message keeps its minimum, the table scrolls or clips at the right.
        assert_eq!(
            cells
                .iter()
                .find(|(col, _, _)| *col == Column::Message)
                .map(|c| c.2),
            Some(MIN_MESSAGE)
        );
    }
}
