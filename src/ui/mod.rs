//! The dashboard's egui side: the app, its persisted settings, one file per panel, small widgets.
//! egui only: this module never names tokio, redis or sockets (a test greps for them); everything
//! that does I/O is behind [`crate::link::Link`], which it calls without ever waiting.
//!
//! Each frame: drain the link's events within a budget and fold them into the pure
//! [`Model`](crate::monitor::model::Model); draw the panels, which take what they need and return
//! [`Action`]s; run the actions at the end of the frame; ask for the next repaint on a throttle.

mod app;
mod connections;
mod demo;
mod directory;
mod files;
mod health;
mod nodes;
mod presenter;
mod rates;
mod redis_view;
mod send;
mod settings;
mod topology;
mod traffic;
mod widgets;

pub use app::{DashboardApp, Startup, Tab};
pub use files::{Format, read_capture, read_workspace, write_capture};
pub use settings::{STORAGE_KEY, Settings, parse_node};

use crate::demo::DemoCommand;
use crate::monitor::MonitorCommand;

/// What a panel asks for; run once at the end of the frame by [`DashboardApp`].
#[derive(Debug, Clone)]
pub enum Action {
    Monitor(MonitorCommand),
    Demo(DemoCommand),
    /// Connect the tap to the Redis URL and prefix in the settings (with the password typed).
    ConnectRedis,
    DisconnectRedis,
    /// Forget a node (stop watching it and drop its row).
    RemoveNode(String),
    /// Export the captured traffic (opens a save dialog).
    Export(files::Format),
    /// Open a capture file for offline browsing (opens a dialog).
    OpenCapture,
    /// Back to the live stream after browsing a capture.
    CloseCapture,
    SaveWorkspace,
    OpenWorkspace,
    /// Pick a PEM file for a Redis TLS field (opens a dialog).
    PickPem(files::PemField),
    /// Search the directory (the answer lands in `model.directory`).
    DirectorySearch {
        text: String,
        kind: crate::monitor::model::directory::DirectoryKind,
    },
    /// Fill the Send form's target with this and show the Send view.
    PickTarget(crate::monitor::SendTarget),
    /// Open the Health view, on the findings about this node or server when given (a badge).
    ShowHealth(Option<String>),
    /// Acknowledge a health finding with a note (until its evidence changes).
    Acknowledge {
        finding: Box<crate::monitor::model::health::Finding>,
        note: String,
    },
    /// Withdraw the acknowledgement of a finding.
    Unacknowledge(Box<crate::monitor::model::health::Finding>),
    /// Enter (true) or leave presenter mode.
    Presenter(bool),
}
