//! The dashboard application: owns the settings, the link, the model and the panels' view state;
//! runs one frame (`show`) and the actions the panels return.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use egui::{Color32, RichText};

use super::settings::{STORAGE_KEY, Settings};
use super::{
    Action, connections, demo, directory, files, health, nodes, presenter, rates, redis_view, send, topology,
    traffic, widgets,
};
use crate::demo::DemoCommand;
use crate::link::{DemoWiring, Link};
use crate::monitor::model::wake::{Showing, View};
use crate::monitor::model::workspace::RedisConnSettings;
use crate::monitor::model::{Limits, Model, STATUS_RATE_SECS};
use crate::monitor::{LinkState, MonitorCommand, MonitorEvent, TapSource, now_ms};
use crate::redis_conn::RedisSpec;

/// Traffic entries folded into the model per frame at most: at 20 frames/s this is 500k/s, ten
/// times the rate the dashboard is built for, and it bounds one frame's work when a backlog waits.
const FRAME_BUDGET: usize = 25_000;

/// Time one frame may spend folding events into the model: past it, the rest waits for the next
/// frame, so the window stays at 20+ frames/s even when the CPU is shared with a flood.
const FOLD_TIME: Duration = Duration::from_millis(12);

/// How often the window looks at the demo's status while a demo command is being carried out
/// (the demo's status is read, not pushed), and for how long after the command.
const DEMO_POLL: Duration = Duration::from_millis(250);
const DEMO_SETTLE: Duration = Duration::from_secs(5);

/// Width of the left (connections) panel, in points: room for a URL field and its label.
const LEFT_PANEL_WIDTH: f32 = 300.0;

/// Lines kept in the notice log.
const NOTICES: usize = 50;

/// The panels of the central area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Traffic,
    Rates,
    Nodes,
    Send,
    Topology,
    Redis,
    Directory,
    Health,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Traffic,
        Tab::Rates,
        Tab::Nodes,
        Tab::Send,
        Tab::Topology,
        Tab::Redis,
        Tab::Directory,
        Tab::Health,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Traffic => "Traffic",
            Tab::Rates => "Rates",
            Tab::Nodes => "Nodes",
            Tab::Send => "Send",
            Tab::Topology => "Topology",
            Tab::Redis => "Redis",
            Tab::Directory => "Directory",
            Tab::Health => "Health",
        }
    }

    pub fn from_name(name: &str) -> Option<Tab> {
        Tab::ALL
            .into_iter()
            .find(|t| t.label().eq_ignore_ascii_case(name))
    }
}

/// How the app starts: settings (loaded or fresh), what the command line adds, the demo's wiring.
pub struct Startup {
    pub settings: Settings,
    /// The Redis connection given on the command line or in REDIS_URL, password included (this
    /// run only).
    pub redis: Option<RedisSpec>,
    pub demo: Option<DemoWiring>,
    pub tab: Option<Tab>,
    /// Whether the settings are saved on exit (not in the demo, whose ports change every run).
    pub persist: bool,
    /// Close the window after this long (smoke tests).
    pub exit_after: Option<Duration>,
    /// A capture to browse offline from the start: (file name, entries).
    pub capture: Option<(String, Vec<crate::monitor::TrafficEntry>)>,
}

impl Startup {
    /// A start with these settings and nothing else: no connection from outside, no demo, the
    /// settings' first tab, nothing saved, no exit timer, no capture.
    pub fn new(settings: Settings) -> Startup {
        Startup {
            settings,
            redis: None,
            demo: None,
            tab: None,
            persist: false,
            exit_after: None,
            capture: None,
        }
    }
}

/// The dashboard.
pub struct DashboardApp {
    pub settings: Settings,
    pub model: Model,
    pub tab: Tab,
    pub link: Link,
    /// The password typed in the connection panel (never saved).
    pub redis_password: String,
    /// The sentinels' password typed in the connection panel (never saved).
    pub sentinel_password: String,
    /// The password-free URL and the password given on the command line, REDIS_URL or by the
    /// demo: used while the settings still show that URL.
    session_redis: Option<(String, String)>,
    /// The demo's tap and nodes.
    demo: Option<DemoWiring>,
    persist: bool,
    exit_after: Option<Duration>,
    started: Instant,
    pub traffic_ui: traffic::TrafficUi,
    pub send_ui: send::SendUi,
    pub connections_ui: connections::ConnectionsUi,
    pub demo_ui: demo::DemoUi,
    pub directory_ui: directory::DirectoryUi,
    topology_ui: topology::TopologyUi,
    presenter_ui: presenter::PresenterUi,
    pub health_ui: health::HealthUi,
    files: files::Files,
    /// Recent notices (newest last), with their time.
    pub notices: VecDeque<(u64, String)>,
    /// Until when the demo may still be carrying out a command (its panel is polled until then).
    demo_busy_until: Option<Instant>,
    /// Events taken from the link but not folded yet (at most one drain's worth), with when they
    /// were handed over.
    backlog: VecDeque<(u64, MonitorEvent)>,
    /// When the recent frames started, for the frame rate in the status bar.
    frames: VecDeque<Instant>,
    /// How long the last frames took to build (pump + panels), for the status bar.
    frame_cost: VecDeque<Duration>,
    /// Frames drawn since the window opened, and per whole second since then (kept only when
    /// `exit_after` is set, at most one entry per second of the run): logged at exit for
    /// `scripts/dashboard-cost.sh`, which measures the window's cost per tab.
    frames_drawn: u64,
    frames_per_sec: Vec<u32>,
    /// The longest time one frame took to build (pump + panels) in this run.
    slowest_frame: Duration,
    /// The demo's line saying what is on screen was dismissed.
    intro_dismissed: bool,
    /// Full screen to ask the window for at the next frame: on entering presenter mode (a
    /// projector shows the whole picture, kiosk-like), off on leaving it.
    fullscreen: Option<bool>,
}

impl DashboardApp {
    /// Builds the app and starts watching what the settings and the startup name.
    pub fn new(link: Link, startup: Startup) -> Self {
        let mut app = DashboardApp {
            tab: startup.tab.unwrap_or(if startup.settings.presenter {
                Tab::Topology
            } else {
                Tab::Traffic
            }),
            settings: startup.settings,
            model: Model::new(Limits::default()),
            link,
            redis_password: String::new(),
            sentinel_password: String::new(),
            session_redis: None,
            demo: startup.demo,
            persist: startup.persist,
            exit_after: startup.exit_after,
            started: Instant::now(),
            traffic_ui: traffic::TrafficUi::default(),
            send_ui: send::SendUi::default(),
            connections_ui: connections::ConnectionsUi::default(),
            demo_ui: demo::DemoUi::default(),
            directory_ui: directory::DirectoryUi::default(),
            topology_ui: topology::TopologyUi::default(),
            presenter_ui: presenter::PresenterUi::default(),
            health_ui: health::HealthUi::default(),
            files: files::Files::default(),
            notices: VecDeque::new(),
            demo_busy_until: None,
            backlog: VecDeque::new(),
            frames: VecDeque::new(),
            frame_cost: VecDeque::new(),
            frames_drawn: 0,
            frames_per_sec: Vec::new(),
            slowest_frame: Duration::ZERO,
            fullscreen: None,
            intro_dismissed: false,
        };
        if app.settings.presenter {
            app.fullscreen = Some(true);
        }
        if let Some(spec) = startup.redis {
            app.use_session_redis(&spec);
        }
        if let Some(demo) = app.demo.clone() {
            if let TapSource::Redis { spec, prefix } = &demo.tap {
                app.use_session_redis(&spec.clone());
                app.settings.channel_prefix = prefix.clone();
            }
            for node in demo.nodes.clone() {
                app.settings.add_node(node);
            }
        }
        app.watch_nodes();
        // Browsing a capture is offline: no connection unless asked for (Connect).
        let offline = startup.capture.is_some();
        if app.demo.is_some() || (!offline && app.settings.auto_connect && !app.settings.redis_url.is_empty())
        {
            app.run(Action::ConnectRedis);
        }
        if let Some(node) = app.settings.nodes.first() {
            app.send_ui.node = node.hub_url.clone();
        }
        if let Some((name, entries)) = startup.capture {
            let n = entries.len();
            app.model.traffic.load(entries, name.clone());
            app.notice(format!("opened capture {name}: {n} messages"));
        }
        app
    }

    /// Whether this is `switchboard demo`.
    pub fn is_demo(&self) -> bool {
        self.demo.is_some()
    }

    /// Takes what arrived and folds it into the model, within the per-frame budgets (entries taken,
    /// time spent folding); what is left waits for the next frame.
    pub fn pump(&mut self) {
        let started = Instant::now();
        let now = now_ms();
        if self.backlog.is_empty() {
            self.backlog.extend(self.link.drain(FRAME_BUDGET));
        }
        while started.elapsed() < FOLD_TIME {
            // Folded at the time it arrived, not when this frame came round to it (the window
            // sleeps while nothing visible changes), so a node's last stats are dated right.
            let Some((at_ms, event)) = self.backlog.pop_front() else {
                break;
            };
            if let MonitorEvent::Announced(a) = &event
                && self.model.nodes.get(&a.hub_url).is_none()
            {
                self.notice(format!("node {} announced itself at {}", a.node_name, a.url));
            }
            self.model.apply(event, at_ms.min(now));
        }
        self.model.tick(now);
        self.settings.observe_tap(&self.model.tap.state);
        // At most every 2 s (the model's gate), on what was folded so far.
        self.model.refresh_health(&self.settings.channel_prefix, now);
    }

    /// One frame: fold events, draw every panel, run their actions.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let frame_start = Instant::now();
        self.frames_drawn += 1;
        if self.exit_after.is_some() {
            let second = frame_start.duration_since(self.started).as_secs() as usize;
            if self.frames_per_sec.len() <= second {
                self.frames_per_sec.resize(second + 1, 0);
            }
            self.frames_per_sec[second] += 1;
        }
        self.frames.push_back(frame_start);
        while self
            .frames
            .front()
            .is_some_and(|t| frame_start.duration_since(*t) > Duration::from_secs(2))
        {
            self.frames.pop_front();
        }
        self.pump();
        let now = now_ms();
        let mut actions = Vec::new();
        let presenter = self.settings.presenter;
        if let Some(on) = self.fullscreen.take() {
            let ctx = ui.ctx();
            // The monitor's size as well: without a window manager (a bare X server, a kiosk)
            // nobody carries out "full screen", but a resize is.
            if on && let Some(size) = ctx.input(|i| i.viewport().monitor_size) {
                ctx.send_viewport_cmd(egui::ViewportCommand::OuterPosition(egui::pos2(0.0, 0.0)));
                ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(size));
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(on));
        }
        self.zoom(ui.ctx(), presenter);
        if presenter {
            self.show_presenter(ui, now, &mut actions);
        } else {
            self.show_dashboard(ui, now, &mut actions);
        }

        // What an action or a finished file operation changes is drawn by the next frame.
        let mut changed = !actions.is_empty();
        for action in actions {
            self.run(action);
        }
        let (notices, reconnect) = self.files.poll(&mut self.model, &mut self.settings);
        changed |= !notices.is_empty() || reconnect;
        for notice in notices {
            self.notice(notice);
        }
        if reconnect {
            self.apply_settings();
        }
        self.link.set_showing(self.showing());
        self.schedule(ui.ctx(), changed, now_ms());
        let cost = frame_start.elapsed();
        self.slowest_frame = self.slowest_frame.max(cost);
        self.frame_cost.push_back(cost);
        if self.frame_cost.len() > 40 {
            self.frame_cost.pop_front();
        }
    }

    /// Presenter mode zooms so its layout fits the window (see `presenter::zoom_for`); the
    /// dashboard is drawn at zoom 1. Set only when it changes, so a resize re-lays out once.
    fn zoom(&self, ctx: &egui::Context, presenter: bool) {
        let current = ctx.zoom_factor();
        let wanted = if presenter {
            presenter::zoom_for(ctx.content_rect().size() * current)
        } else {
            1.0
        };
        if (wanted - current).abs() > 0.001 {
            ctx.set_zoom_factor(wanted);
        }
    }

    /// What the backplane is called on screen.
    fn bus_name(&self) -> &'static str {
        match &self.demo {
            Some(DemoWiring {
                tap: TapSource::Memory { .. },
                ..
            }) => "Memory bus",
            _ => "Redis",
        }
    }

    /// Presenter mode: its header and its one view, nothing else (see `presenter`).
    fn show_presenter(&mut self, ui: &mut egui::Ui, now: u64, actions: &mut Vec<Action>) {
        let demo = self.link.demo_status();
        let cx = presenter::Context {
            demo: demo.as_ref(),
            bus: self.bus_name(),
            user: &self.settings.send_user,
        };
        egui::Panel::top("presenter_bar").show(ui, |ui| {
            presenter::top_bar(ui, &self.model, &mut self.presenter_ui, &cx, now, actions);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            presenter::show(ui, &self.model, &mut self.presenter_ui, &cx, now, actions);
        });
    }

    /// The dashboard: menu and tabs, status bar, the connections panel and the chosen view.
    fn show_dashboard(&mut self, ui: &mut egui::Ui, now: u64, actions: &mut Vec<Action>) {
        egui::Panel::top("top_bar").show(ui, |ui| {
            self.top_bar(ui, now, actions);
        });
        egui::Panel::bottom("status_bar").show(ui, |ui| {
            self.status_bar(ui, now);
        });
        // A fixed width: long errors wrap or shorten with "…" (full text on hover) instead of
        // pushing the panel wider.
        egui::Panel::left("connections")
            .resizable(false)
            .exact_size(LEFT_PANEL_WIDTH)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    let demo_status = self.link.demo_status();
                    if let Some(status) = &demo_status {
                        demo::show(ui, status, &mut self.demo_ui, actions);
                        ui.separator();
                    }
                    connections::show(
                        ui,
                        &mut self.settings,
                        connections::Secrets {
                            password: &mut self.redis_password,
                            sentinel_password: &mut self.sentinel_password,
                        },
                        &mut self.connections_ui,
                        &self.model,
                        demo_status.as_ref(),
                        now,
                        actions,
                    );
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            if self.is_demo() && !self.intro_dismissed {
                self.intro_dismissed = demo_intro(ui, self.model.nodes.rows().len(), self.bus_name());
            }
            self.show_tab(ui, now, actions);
        });
    }

    /// The chosen view in the central area.
    fn show_tab(&mut self, ui: &mut egui::Ui, now: u64, actions: &mut Vec<Action>) {
        match self.tab {
            Tab::Traffic => traffic::show(ui, &mut self.model, &mut self.traffic_ui, actions),
            Tab::Rates => rates::show(ui, &self.model, now),
            Tab::Nodes => nodes::show(ui, &self.model, now, actions),
            Tab::Health => health::show(ui, &self.model, &mut self.health_ui, now, actions),
            Tab::Send => send::show(
                ui,
                &self.model,
                &mut self.send_ui,
                &mut self.settings,
                now,
                actions,
            ),
            Tab::Topology => {
                let bus = self.bus_name();
                topology::show(ui, &self.model, &mut self.topology_ui, bus, now, actions)
            }
            Tab::Redis => redis_view::show(ui, &self.model, now),
            Tab::Directory => directory::show(ui, &self.model, &mut self.directory_ui, actions),
        }
    }

    /// What the window shows, for the repaint policy (see `monitor::model::wake`).
    fn showing(&self) -> Showing {
        Showing {
            view: match self.tab {
                Tab::Traffic => View::Traffic,
                Tab::Rates => View::Rates,
                Tab::Nodes => View::Nodes,
                Tab::Send => View::Send,
                Tab::Topology => View::Topology,
                Tab::Redis => View::Redis,
                Tab::Directory => View::Directory,
                Tab::Health => View::Health,
            },
            table_frozen: self.model.traffic.paused() || self.model.traffic.offline().is_some(),
            presenter: self.settings.presenter,
        }
    }

    /// Asks for the next frame, and only when something on screen will change: events arriving
    /// wake the window through the link (by the policy in `monitor::model::wake`); this asks for what changes
    /// with time alone (countdowns, stale nodes, timed-out traces, rates sliding), for what is
    /// still to be folded, and for the demo's and the file dialogs' results. When nothing is due,
    /// no frame is drawn at all.
    fn schedule(&self, ctx: &egui::Context, changed: bool, now: u64) {
        if changed || !self.backlog.is_empty() || self.link.has_events() {
            ctx.request_repaint();
            return;
        }
        let mut next = self
            .model
            .next_change(now, self.showing())
            .map(|at| Duration::from_millis(at.saturating_sub(now)));
        let mut sooner = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        if let Some(limit) = self.exit_after {
            sooner(limit.saturating_sub(self.started.elapsed()));
        }
        if self.demo_busy_until.is_some_and(|t| Instant::now() < t) {
            sooner(DEMO_POLL);
        }
        if let Some(poll) = self.files.poll_in() {
            sooner(poll);
        }
        // The Health view shows its evaluation's age (and goes STALE when rounds stop).
        if self.tab == Tab::Health {
            sooner(crate::monitor::model::health::MIN_REFRESH);
        }
        if let Some(d) = next {
            ctx.request_repaint_after(d);
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui, now: u64, actions: &mut Vec<Action>) {
        // A menu bar: File is a menu at the left, then the title and the tabs.
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                files::menu(ui, self.model.traffic.offline().is_some(), actions)
            });
            ui.separator();
            ui.heading(RichText::new("Switchboard").strong());
            if self.is_demo() {
                ui.label(RichText::new("demo").color(Color32::from_rgb(230, 160, 40)));
            }
            ui.separator();
            for tab in Tab::ALL {
                if tab == Tab::Health {
                    let label = health::tab_label(self.model.health.latest.as_ref());
                    if ui.selectable_label(self.tab == tab, label).clicked() {
                        self.tab = tab;
                        self.health_ui.focus = None;
                    }
                } else {
                    ui.selectable_value(&mut self.tab, tab, tab.label());
                }
            }
            ui.separator();
            if ui
                .button("Presenter")
                .on_hover_text("Full screen, large type and the topology, for a projector (Esc leaves it)")
                .clicked()
            {
                actions.push(Action::Presenter(true));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                widgets::link_state(ui, "Backplane", &self.model.tap.state, now);
            });
        });
    }

    fn status_bar(&self, ui: &mut egui::Ui, now: u64) {
        ui.horizontal_wrapped(|ui| {
            let t = &self.model.traffic;
            ui.label(format!(
                "{} msg/s · {}/s",
                widgets::rate(self.model.rates.messages_per_sec(now, STATUS_RATE_SECS)),
                widgets::bytes(self.model.rates.bytes_per_sec(now, STATUS_RATE_SECS) as u64)
            ));
            ui.separator();
            let totals = t.totals();
            ui.label(format!(
                "{} seen · {} kept · {} evicted",
                totals.messages,
                t.len(),
                totals.evicted
            ));
            let dropped = self.link.dropped_entries();
            ui.separator();
            let text = format!("{dropped} dropped (UI behind)");
            if dropped > 0 {
                ui.label(RichText::new(text).color(widgets::WARN));
            } else {
                ui.label(text);
            }
            ui.separator();
            let fps = self.frames.len() as f64 / 2.0;
            let worst = self.frame_cost.iter().max().copied().unwrap_or_default();
            ui.label(format!(
                "UI {fps:.0} frames/s, slowest {:.0} ms",
                worst.as_secs_f64() * 1000.0
            ))
            .on_hover_text(
                "Frames drawn over the last 2 s, and the longest time one of the last 40 took to build",
            );
            if self.link.refused_commands() > 0 {
                ui.separator();
                ui.label(
                    RichText::new(format!(
                        "{} commands refused (queue full)",
                        self.link.refused_commands()
                    ))
                    .color(widgets::WARN),
                );
            }
            if let Some((at, text)) = self.notices.back() {
                ui.separator();
                ui.label(format!("{} {}", widgets::clock(*at), text))
                    .on_hover_ui(|ui| {
                        for (at, text) in self.notices.iter().rev().take(15) {
                            ui.label(format!("{} {}", widgets::clock(*at), text));
                        }
                    });
            }
        });
    }

    /// Runs one action.
    pub fn run(&mut self, action: Action) {
        match action {
            Action::Monitor(command) => {
                if let MonitorCommand::AddNode(target) | MonitorCommand::TrustNode(target) = &command {
                    self.model.nodes.upsert(target.clone());
                    if self.settings.add_node(target.clone()) && self.send_ui.node.is_empty() {
                        self.send_ui.node = target.hub_url.clone();
                    }
                }
                if !self.link.command(command) {
                    self.notice("the monitor is busy: command refused, try again".to_string());
                }
            }
            Action::Demo(command) => {
                self.demo_busy_until = Some(Instant::now() + DEMO_SETTLE);
                // The model learns the stop was intended before the node's links drop.
                if let DemoCommand::StopNode(name) = &command
                    && let Some(status) = self.link.demo_status()
                    && let Some(node) = status.nodes.iter().find(|n| &n.name == name)
                {
                    self.model.node_stopped(&node.hub_url, now_ms());
                }
                if !self.link.demo_command(command) {
                    self.notice("the demo is busy: command refused, try again".to_string());
                }
            }
            Action::ConnectRedis => {
                let source = self.tap_source();
                match source {
                    Ok(source) => {
                        self.settings.connecting();
                        self.link.command(MonitorCommand::SetTap(Some(source)));
                    }
                    Err(e) => {
                        // A working tap keeps running: the error is shown, its state kept.
                        if self.model.tap.state == LinkState::Idle {
                            self.model.apply(
                                MonitorEvent::Tap {
                                    state: LinkState::Failed { error: e.clone() },
                                    at_ms: now_ms(),
                                },
                                now_ms(),
                            );
                        }
                        self.notice(e);
                    }
                }
            }
            Action::DisconnectRedis => {
                self.link.command(MonitorCommand::SetTap(None));
            }
            Action::RemoveNode(hub_url) => {
                self.settings.nodes.retain(|n| n.hub_url != hub_url);
                self.model.remove_node(&hub_url);
                self.link.command(MonitorCommand::RemoveNode(hub_url));
            }
            Action::Export(format) => self.files.export(format, &self.model),
            Action::OpenCapture => self.files.open_capture(),
            Action::CloseCapture => {
                self.model.traffic.close_offline();
                self.notice("back to the live stream".to_string());
            }
            Action::SaveWorkspace => self.files.save_workspace(self.settings.workspace()),
            Action::OpenWorkspace => self.files.open_workspace(),
            Action::PickPem(field) => self.files.pick_pem(field),
            Action::DirectorySearch { text, kind } => {
                let namings = self.model.hub_namings(&self.settings.channel_prefix);
                let search = self.model.directory.ask(&text, kind, &namings);
                if !self.link.command(MonitorCommand::Directory(search)) {
                    self.model.directory.withdraw();
                    self.notice("the directory search was not taken: the monitor is busy".to_string());
                }
            }
            Action::PickTarget(target) => {
                self.send_ui.set_target(&target);
                self.tab = Tab::Send;
            }
            Action::Acknowledge { finding, note } => {
                self.model.health.acknowledge(&finding, &note, now_ms());
            }
            Action::Unacknowledge(finding) => self.model.health.withdraw(&finding),
            Action::Presenter(on) => {
                self.settings.presenter = on;
                self.fullscreen = Some(on);
                if on {
                    self.tab = Tab::Topology;
                }
            }
            Action::ShowHealth(focus) => {
                self.tab = Tab::Health;
                self.health_ui.focus = focus;
            }
        }
    }

    /// Watches what the settings list (after a workspace was opened): every node, and the tap.
    pub fn apply_settings(&mut self) {
        self.watch_nodes();
        if !self.settings.redis_url.is_empty() {
            self.run(Action::ConnectRedis);
        }
    }

    /// Puts every node of the settings in the table and has the monitor watch it.
    fn watch_nodes(&mut self) {
        // The trust rules first, so no heartbeat is judged without them.
        self.link.command(MonitorCommand::SetTrustRules(
            crate::monitor::model::trust::TrustRules::new(self.settings.trust_nodes.clone()),
        ));
        for node in self.settings.nodes.clone() {
            self.model.nodes.upsert(node.clone());
            self.link.command(MonitorCommand::AddNode(node));
        }
    }

    /// The tap source for the settings: the demo's, or Redis with the typed password.
    fn tap_source(&self) -> Result<TapSource, String> {
        if let Some(demo) = &self.demo
            && matches!(demo.tap, TapSource::Memory { .. })
        {
            return Ok(demo.tap.clone());
        }
        let url = self.settings.redis_url.trim();
        if url.is_empty() {
            return Err("enter a Redis URL first (redis://host:6379/0)".to_string());
        }
        let options = self.settings.redis_options.options(&self.sentinel_password);
        let mut spec = RedisSpec::parse(url, &options).map_err(|e| e.to_string())?;
        if spec.password().is_none() {
            let password = match &self.session_redis {
                Some((session_url, password)) if session_url == url && self.redis_password.is_empty() => {
                    password
                }
                _ => &self.redis_password,
            };
            spec.set_password(Some(password.clone()));
        }
        Ok(TapSource::Redis {
            spec: Box::new(spec),
            prefix: self.settings.channel_prefix.clone(),
        })
    }

    /// Shows a connection given from outside (command line, demo) in the form; its password is
    /// used for this run only.
    fn use_session_redis(&mut self, spec: &RedisSpec) {
        let url = spec.url_without_password();
        self.settings.set_redis_url(&url);
        self.settings.redis_options = RedisConnSettings::from_options(&spec.options());
        if let Some(password) = spec.sentinel_password() {
            self.sentinel_password = password.to_string();
        }
        self.session_redis = Some((url, spec.password().unwrap_or_default().to_string()));
    }

    /// Adds a line to the notice log.
    pub fn notice(&mut self, text: String) {
        tracing::info!("{text}");
        self.notices.push_back((now_ms(), text));
        while self.notices.len() > NOTICES {
            self.notices.pop_front();
        }
    }

    /// The settings to save, if this run saves any.
    /// (Their Redis URL is the last one that worked: [`Settings::to_save`].)
    pub fn settings_to_save(&self) -> Option<Settings> {
        self.persist.then(|| self.settings.to_save())
    }
}

impl eframe::App for DashboardApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
        if let Some(limit) = self.exit_after
            && self.started.elapsed() >= limit
        {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Some(settings) = self.settings_to_save() {
            eframe::set_value(storage, STORAGE_KEY, &settings);
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(
            "window closed: {} frames drawn in {secs:.1} s, slowest built in {:.1} ms; per second: {:?}",
            self.frames_drawn,
            self.slowest_frame.as_secs_f64() * 1000.0,
            self.frames_per_sec
        );
        self.link.shutdown();
    }
}

/// The demo's one line saying what is on screen, with a way to hide it; whether it was hidden.
fn demo_intro(ui: &mut egui::Ui, nodes: usize, bus: &str) -> bool {
    let mut hide = false;
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!(
            "This demo runs {nodes} chat servers (hub nodes) with simulated users; the servers pass every \
             message to each other through {bus}. Traffic lists the messages as {bus} carries them, Topology \
             draws their path, Send sends your own."
        )));
        hide = ui.small_button("Hide").on_hover_text("Hide this line").clicked();
    });
    ui.separator();
    hide
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_have_names() {
        assert_eq!(Tab::from_name("nodes"), Some(Tab::Nodes));
        assert_eq!(Tab::from_name("nope"), None);
    }
}
