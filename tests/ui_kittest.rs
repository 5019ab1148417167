//! The real dashboard app, driven by its labels with egui_kittest (no GPU: kittest runs the egui
//! frames and reads the accessibility tree), against a real redis-server and two real hub nodes:
//! connect, the nodes table, filter, pause, send with a trace, and bad input shown as text.
//!
//! The app's data comes from real sockets on the link's own runtime, so each step runs frames
//! until what it waits for shows up, within a deadline.
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::kittest::{click, click_at, frames_until, has_label, type_into};

use std::time::Duration;

use common::redis::RedisServer;
use common::{connect, s, start_node, unique_prefix};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::link::Link;
use switchboard::monitor::LinkState;
use switchboard::protocol::Protocol;
use switchboard::ui::{DashboardApp, Settings, Startup};

const DEADLINE: Duration = Duration::from_secs(20);

fn app(prefix: &str) -> DashboardApp {
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.to_string(),
        auto_connect: false,
        ..Settings::default()
    };
    DashboardApp::new(link, startup(settings, None, None))
}

/// How a test starts the app: nothing saved, no exit timer, the first tab.
fn startup(
    settings: Settings,
    demo: Option<switchboard::link::DemoWiring>,
    capture: Option<(String, Vec<switchboard::monitor::TrafficEntry>)>,
) -> Startup {
    Startup {
        demo,
        capture,
        ..Startup::new(settings)
    }
}

fn harness(app: DashboardApp) -> Harness<'static, DashboardApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app)
}

struct Cluster {
    rt: tokio::runtime::Runtime,
    redis: RedisServer,
    prefix: String,
    a: NodeHandle,
    b: NodeHandle,
}

fn cluster() -> Cluster {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let (redis, a, b) = rt.block_on(async {
        let redis = RedisServer::start().await;
        let a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
        let b = start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
        (redis, a, b)
    });
    Cluster {
        rt,
        redis,
        prefix,
        a,
        b,
    }
}

#[test]
fn connect_nodes_filter_pause_and_send_through_the_ui() {
    let c = cluster();
    let mut h = harness(app(&c.prefix));

    // Connect: type the URL, press Connect; the tap state reads "connected".
    type_into(&mut h, "Redis URL", &c.redis.url());
    click(&mut h, "Connect");
    frames_until(&mut h, DEADLINE, "Tap: connected", |h| {
        has_label(h, "Tap: connected")
    });
    assert_eq!(h.state().settings.redis_url, c.redis.url());

    // The nodes announce themselves by heartbeat; the Nodes table shows them with client counts.
    click(&mut h, "Nodes");
    frames_until(&mut h, DEADLINE, "both nodes with stats", |h| {
        h.state()
            .model
            .nodes
            .rows()
            .iter()
            .filter(|r| r.stats.is_some())
            .count()
            == 2
    });
    assert!(has_label(&h, "node-a") && has_label(&h, "node-b"));
    let client = c.rt.block_on(connect(&c.a, Protocol::Json, Some("ann")));
    let client_b = c.rt.block_on(connect(&c.b, Protocol::Json, Some("bob")));
    // Two probes (one per node) plus these two clients: each node counts its own.
    frames_until(&mut h, DEADLINE, "client counts include ann and bob", |h| {
        h.state()
            .model
            .nodes
            .rows()
            .iter()
            .all(|r| r.stats.as_ref().is_some_and(|s| s.connections.total == 2))
    });
    frames_until(&mut h, DEADLINE, "the cluster total and the PUBSUB count", |h| {
        has_label(h, "clients on watched nodes")
            && h.state()
                .model
                .census
                .as_ref()
                .is_some_and(|(_, hubs)| hubs.iter().map(|x| x.connections).sum::<u64>() == 4)
    });

    // Traffic: a chat message crosses the backplane and is decoded; the filter finds it.
    click(&mut h, "Traffic");
    c.rt.block_on(client.invoke("SendMessage", vec![s("ann"), s("hello kittest")]))
        .unwrap();
    type_into(&mut h, "Filter", "kittest");
    frames_until(&mut h, DEADLINE, "the filtered row", |h| {
        has_label(h, "hello kittest")
    });
    frames_until(&mut h, DEADLINE, "one row shown", |h| has_label(h, "1 shown of"));
    assert_eq!(h.state().model.traffic.visible_len(), 1);
    let row = h.state().model.traffic.visible(0).unwrap().clone();
    assert_eq!(row.method.as_deref(), Some("ReceiveMessage"));
    assert!(row.args.as_deref().unwrap().contains("hello kittest"));

    // Pause: the view stops, the counting does not.
    click(&mut h, "Pause");
    h.step();
    assert!(has_label(&h, "Resume"));
    let seen = h.state().model.traffic.totals().messages;
    c.rt.block_on(client.invoke("SendMessage", vec![s("ann"), s("kittest while paused")]))
        .unwrap();
    frames_until(&mut h, DEADLINE, "counting goes on while paused", |h| {
        h.state().model.traffic.totals().messages > seen
    });
    frames_until(&mut h, DEADLINE, "the paused message is counted", |h| {
        h.state()
            .model
            .traffic
            .iter()
            .any(|e| e.args.as_deref().is_some_and(|a| a.contains("while paused")))
    });
    assert!(
        !has_label(&h, "kittest while paused"),
        "the paused view does not move"
    );
    click(&mut h, "Resume");
    frames_until(&mut h, DEADLINE, "resumed view shows it", |h| {
        has_label(h, "kittest while paused")
    });

    // Send: through node-a to all; the trace shows Redis and both probes.
    click(&mut h, "Send");
    h.step();
    h.state_mut().send_ui.node = c.a.hub_url();
    click(&mut h, "Send message");
    frames_until(&mut h, DEADLINE, "a delivered trace", |h| {
        h.query_by_label("delivered").is_some()
    });
    // The tap's sighting comes in its own batch (flushed every 50 ms), maybe after the receipts.
    frames_until(&mut h, DEADLINE, "the tap's sighting of the test message", |h| {
        h.state()
            .model
            .traces
            .recent()
            .next()
            .is_some_and(|t| t.redis_at_ms.is_some())
    });
    let trace = h.state().model.traces.recent().next().unwrap().clone();
    assert!(
        trace.redis_at_ms.unwrap() >= trace.sent_at_ms,
        "Redis saw it after it was sent: {trace:?}"
    );
    assert_eq!(trace.receipts.len(), 2, "both probes received it: {trace:?}");

    drop(h);
    c.rt.block_on(async {
        client.close().await;
        client_b.close().await;
        c.a.shutdown().await;
        c.b.shutdown().await;
    });
}

#[test]
fn bad_input_is_a_readable_message() {
    let c = cluster();
    let mut h = harness(app(&c.prefix));

    // Not a URL at all: failed, with the reason.
    type_into(&mut h, "Redis URL", "not a url");
    click(&mut h, "Connect");
    frames_until(&mut h, DEADLINE, "a failed tap", |h| {
        matches!(h.state().model.tap.state, LinkState::Failed { .. })
    });
    assert!(has_label(&h, "Tap: failed"));

    // Nothing listens there: reconnecting, with the reason.
    let closed = common::free_port();
    h.state_mut().settings.redis_url = format!("redis://127.0.0.1:{closed}");
    // A frame with the new URL first: its description line is shorter than the error before
    // it, so the Connect button moves up, and a click lands where the last frame put it.
    h.step();
    click(&mut h, "Connect");
    frames_until(&mut h, DEADLINE, "reconnecting", |h| {
        has_label(h, "Tap: reconnecting")
    });

    // A node URL that is not a hub (Redis speaks no HTTP): a readable state on its row.
    let text = format!("http://127.0.0.1:{}/chat", c.redis.port());
    h.state_mut().connections_ui.new_node = text.clone();
    click(&mut h, "Add node");
    frames_until(&mut h, DEADLINE, "the bad node's error", |h| {
        h.state().model.nodes.rows().iter().any(|r| matches!(&r.state, LinkState::Reconnecting { error, .. } | LinkState::Failed { error } if !error.is_empty()))
    });

    // A node URL that is not a URL: refused in the form, nothing added.
    h.state_mut().connections_ui.new_node = "localhost:5001".into();
    click(&mut h, "Add node");
    h.step();
    assert!(has_label(&h, "not an http"));
}

#[test]
fn an_exported_capture_is_browsed_offline_and_live_comes_back() {
    // Export what a real tap decoded (here: built with the same decoder), then open it offline.
    let entries: Vec<_> = (0..5u64)
        .map(|i| {
            let json = format!(
                "{{\"type\":1,\"target\":\"ReceiveMessage\",\"arguments\":[\"ann\",\"offline {i}\"]}}\u{1e}"
            );
            let payload =
                switchboard::backplane::wire::encode_invocation(&[], &[("json", json.as_bytes())], None);
            switchboard::monitor::decode::decode("", "Chat.Hub:all", &payload, 1_000 + i)
        })
        .collect();
    let path = std::env::temp_dir().join(format!("kittest-capture-{}.jsonl", std::process::id()));
    switchboard::ui::write_capture(&path, switchboard::ui::Format::JsonLines, &entries).unwrap();
    let (read, _) = switchboard::ui::read_capture(&path).unwrap();
    let _ = std::fs::remove_file(&path);

    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        auto_connect: false,
        ..Settings::default()
    };
    let startup = startup(settings, None, Some(("saved.jsonl".into(), read)));
    let mut h = harness(DashboardApp::new(link, startup));
    h.step();
    assert!(has_label(&h, "Browsing capture saved.jsonl (offline)"));
    assert!(
        has_label(&h, "offline 4"),
        "the newest message of the capture is shown"
    );
    type_into(&mut h, "Filter", "offline 2");
    assert_eq!(h.state().model.traffic.visible_len(), 1);
    assert_eq!(
        h.state().model.traffic.visible(0).unwrap().method.as_deref(),
        Some("ReceiveMessage")
    );
    click(&mut h, "Back to live");
    assert!(!has_label(&h, "Browsing capture"));
    assert_eq!(h.state().model.traffic.visible_len(), 0, "nothing live yet");
}

#[test]
fn the_demo_panel_adds_and_stops_nodes_and_stops_and_restarts_the_backplane() {
    use switchboard::demo::{DemoBackplane, DemoOptions, SimSettings};
    use switchboard::monitor::model::EntryKind;

    let options = DemoOptions {
        backplane: DemoBackplane::Memory,
        sim: SimSettings {
            clients_per_node: 2,
            messages_per_sec: 5.0,
            group_share: 0.5,
        },
        ..DemoOptions::default()
    };
    let (link, wiring) = Link::start(Some(options)).expect("the demo starts");
    let startup = startup(Settings::default(), wiring, None);
    let mut h = harness(DashboardApp::new(link, startup));
    frames_until(&mut h, DEADLINE, "both demo nodes watched, with stats", |h| {
        h.state()
            .model
            .nodes
            .rows()
            .iter()
            .filter(|r| r.stats.is_some())
            .count()
            == 2
    });
    assert!(has_label(&h, "in-memory backplane: running"));

    click(&mut h, "Start another node");
    frames_until(&mut h, DEADLINE, "node-c running and watched", |h| {
        h.state()
            .link
            .demo_status()
            .is_some_and(|s| s.nodes.iter().any(|n| n.name == "node-c" && n.running))
            && h.state()
                .model
                .nodes
                .rows()
                .iter()
                .any(|r| r.name == "node-c" && r.stats.is_some())
    });

    // The first node's Stop button.
    h.get_all_by_label("Stop")
        .next()
        .expect("a Stop button per node")
        .click();
    h.step();
    frames_until(&mut h, DEADLINE, "node-a stopped and seen down", |h| {
        let stopped = h
            .state()
            .link
            .demo_status()
            .is_some_and(|s| s.nodes.iter().any(|n| n.name == "node-a" && !n.running));
        let down = h
            .state()
            .model
            .nodes
            .rows()
            .iter()
            .any(|r| r.name == "node-a" && r.state != LinkState::Connected);
        stopped && down
    });

    click(&mut h, "Stop backplane");
    frames_until(&mut h, DEADLINE, "the tap sees the bus down", |h| {
        matches!(h.state().model.tap.state, LinkState::Reconnecting { .. }) && has_label(h, "Start backplane")
    });
    click(&mut h, "Start backplane");
    frames_until(&mut h, DEADLINE, "the bus back, with a gap marker", |h| {
        h.state().model.tap.state == LinkState::Connected
            && h.state().model.traffic.iter().any(|e| e.kind == EntryKind::Gap)
    });

    // More simulated clients, applied from the panel: 2 running nodes × 4.
    h.state_mut().demo_ui.sim = Some(SimSettings {
        clients_per_node: 4,
        messages_per_sec: 5.0,
        group_share: 0.5,
    });
    click(&mut h, "Apply");
    frames_until(&mut h, DEADLINE, "8 simulated clients", |h| {
        h.state().link.demo_status().is_some_and(|s| s.sim_clients == 8)
    });
}

/// A capture of chat traffic on one hub: `groups` messages to group room-1, then `alls` to all.
fn chat_capture(groups: u64, alls: u64) -> Vec<switchboard::monitor::TrafficEntry> {
    (0..groups + alls)
        .map(|i| {
            let json = format!(
                "{{\"type\":1,\"target\":\"ReceiveMessage\",\"arguments\":[\"ann\",\"line {i}\"]}}\u{1e}"
            );
            let payload =
                switchboard::backplane::wire::encode_invocation(&[], &[("json", json.as_bytes())], None);
            let channel = if i < groups {
                "Chat.Hub:group:room-1"
            } else {
                "Chat.Hub:all"
            };
            let mut e = switchboard::monitor::decode::decode("", channel, &payload, 1_000 + i);
            e.seq = i;
            e
        })
        .collect()
}

fn capture_app(entries: Vec<switchboard::monitor::TrafficEntry>) -> Harness<'static, DashboardApp> {
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        auto_connect: false,
        ..Settings::default()
    };
    let startup = startup(settings, None, Some(("chat.jsonl".into(), entries)));
    let mut h = harness(DashboardApp::new(link, startup));
    h.step();
    h
}

#[test]
fn traffic_values_filter_on_click_ctrl_f_focuses_and_x_clears() {
    use switchboard::monitor::model::EntryKind;

    let mut h = capture_app(chat_capture(3, 2));
    assert_eq!(h.state().model.traffic.visible_len(), 5);

    // Clicking the kind of a group row filters by kind group. The row is painted: click its kind
    // cell (the kind column starts after the 124-point time column).
    let row = h.get_by_label_contains("line 1").rect();
    click_at(&mut h, egui::pos2(row.left() + 124.0 + 12.0, row.center().y));
    assert_eq!(h.state().traffic_ui.filter.kind, Some(EntryKind::Group));
    assert_eq!(h.state().model.traffic.visible_len(), 3);
    assert_eq!(
        h.state().traffic_ui.selected,
        None,
        "a value click filters, it does not select"
    );

    // Clicking elsewhere in a row selects it.
    let row = h.get_by_label_contains("line 2").rect();
    click_at(&mut h, egui::pos2(row.left() + 40.0, row.center().y));
    let line_2 = h
        .state()
        .model
        .traffic
        .iter()
        .find(|e| e.args.as_deref().is_some_and(|a| a.contains("line 2")))
        .map(|e| e.seq);
    assert_eq!(h.state().traffic_ui.selected, line_2);

    // × clears the whole filter.
    click(&mut h, "×");
    assert!(h.state().traffic_ui.filter.is_empty());
    assert_eq!(h.state().model.traffic.visible_len(), 5);

    // Ctrl+F puts the typing into the filter, without a click.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    h.step();
    h.step();
    assert!(h.get_by_label("Filter").is_focused(), "Ctrl+F focuses the filter");
    h.event(egui::Event::Text("line 4".into()));
    h.step();
    h.step();
    assert_eq!(h.state().traffic_ui.filter.text, "line 4");
    assert_eq!(h.state().model.traffic.visible_len(), 1);
    click(&mut h, "×");
    assert!(h.state().traffic_ui.filter.text.is_empty());
}

#[test]
fn traffic_columns_menu_hides_columns_and_the_row_menu_copies() {
    let mut h = capture_app(chat_capture(2, 2));

    // Columns: one hub seen, so the hub column is collapsed by itself; "size" can be hidden.
    let one_hub = h.state().traffic_ui.columns.layout(1000.0, true);
    assert!(one_hub.iter().all(|(c, _, _)| c.title() != "hub"));
    click(&mut h, "Columns");
    assert!(has_label(&h, "message (always)"));
    click(&mut h, "size");
    assert!(!h.state().traffic_ui.columns.shown[6], "size hidden");
    let cells = h.state().traffic_ui.columns.layout(1000.0, true);
    assert!(cells.iter().all(|(c, _, _)| c.title() != "size"));
    if !has_label(&h, "message (always)") {
        click(&mut h, "Columns");
    }
    click(&mut h, "size");
    assert!(h.state().traffic_ui.columns.shown[6], "size shown again");
    h.key_press(egui::Key::Escape);
    h.step();

    // Right click on a row: copy its channel, its JSON, its hex.
    h.get_by_label_contains("line 0").click_secondary();
    h.step();
    h.step();
    click(&mut h, "Copy channel");
    let copied = h.state().traffic_ui.copied.clone().unwrap_or_default();
    assert!(copied.starts_with("copied the channel of #"), "{copied}");
    assert!(copied.contains(&format!("({} characters)", "Chat.Hub:group:room-1".len())));

    h.get_by_label_contains("line 3").click_secondary();
    h.step();
    h.step();
    click(&mut h, "Copy hex");
    let copied = h.state().traffic_ui.copied.clone().unwrap_or_default();
    assert!(copied.starts_with("copied the hex of #"), "{copied}");

    h.get_by_label_contains("line 3").click_secondary();
    h.step();
    h.step();
    click(&mut h, "Copy JSON");
    assert!(
        h.state()
            .traffic_ui
            .copied
            .as_deref()
            .is_some_and(|c| c.starts_with("copied the JSON of #"))
    );

    // The row menu also filters by its values.
    h.get_by_label_contains("line 0").click_secondary();
    h.step();
    h.step();
    click(&mut h, "Filter by method ReceiveMessage");
    assert_eq!(h.state().traffic_ui.filter.text, "ReceiveMessage");
}

#[test]
fn a_demo_node_stopped_on_purpose_is_shown_stopped_not_down_and_starts_again() {
    use switchboard::demo::{DemoBackplane, DemoOptions, SimSettings};
    use switchboard::monitor::model::nodes::Nodes;
    use switchboard::monitor::now_ms;

    let options = DemoOptions {
        backplane: DemoBackplane::Memory,
        sim: SimSettings {
            clients_per_node: 2,
            messages_per_sec: 5.0,
            group_share: 0.5,
        },
        ..DemoOptions::default()
    };
    let (link, wiring) = Link::start(Some(options)).expect("the demo starts");
    let startup = startup(Settings::default(), wiring, None);
    let mut h = harness(DashboardApp::new(link, startup));
    click(&mut h, "Nodes");
    frames_until(&mut h, DEADLINE, "both nodes live with 2 clients each", |h| {
        let now = now_ms();
        let nodes = &h.state().model.nodes;
        nodes.live_count(now) == 2 && nodes.cluster_total_clients(now) == 4
    });
    assert!(has_label(&h, "2 + 1 probe"), "the probe is shown apart");
    let hub_url = h.state().model.nodes.rows()[0].target.hub_url.clone();

    h.get_all_by_label("Stop")
        .next()
        .expect("a Stop button per node")
        .click();
    h.step();
    frames_until(
        &mut h,
        DEADLINE,
        "node-a stopped on purpose, out of the totals, not a failure",
        |h| {
            let now = now_ms();
            let nodes = &h.state().model.nodes;
            nodes.get(&hub_url).is_some_and(|r| {
                matches!(
                    Nodes::liveness(r, now),
                    switchboard::monitor::model::nodes::Liveness::Stopped { .. }
                )
            }) && nodes.cluster_total_clients(now) == 2
                && has_label(h, "stopped on purpose at")
                && has_label(h, "1 / 1 · 1 stopped")
        },
    );
    assert!(!has_label(&h, "down, last seen"), "not down");
    // Health: an info finding, never a critical one, about the stopped node.
    h.state_mut().model.health.gate = Default::default();
    h.step();
    let e = h.state().model.health.latest.clone().expect("evaluated");
    assert!(
        e.findings.iter().any(|f| f.rule == "stopped"),
        "{:#?}",
        e.findings
    );
    assert!(
        e.findings.iter().all(|f| f.rule != "node-unreachable"),
        "{:#?}",
        e.findings
    );

    click(&mut h, "Start");
    frames_until(
        &mut h,
        DEADLINE,
        "node-a running again, on its old address, live",
        |h| {
            let now = now_ms();
            let running = h.state().link.demo_status().is_some_and(|s| {
                s.nodes
                    .iter()
                    .any(|n| n.name == "node-a" && n.running && n.hub_url == hub_url)
            });
            let nodes = &h.state().model.nodes;
            running
                && nodes
                    .get(&hub_url)
                    .is_some_and(|r| Nodes::liveness(r, now).is_live())
                && nodes.cluster_total_clients(now) == 4
        },
    );
}

#[test]
fn the_selected_row_keeps_its_place_as_rows_arrive_above_it() {
    use switchboard::monitor::MonitorEvent;
    // The row's own name (the detail pane's JSON also holds "line 30").
    const ROW_30: &str = r#"ReceiveMessage("ann", "line 30")"#;

    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        auto_connect: false,
        ..Settings::default()
    };
    let mut h = harness(DashboardApp::new(link, startup(settings, None, None)));
    let mut entries = chat_capture(0, 60);
    let later = entries.split_off(40);
    h.state_mut().model.apply(MonitorEvent::Traffic(entries), 2_000);
    h.step();
    h.step();
    // Select a row in the middle of the screen (line 30: the 10th newest).
    let row = h.get_by_label_contains(ROW_30).rect();
    click_at(&mut h, egui::pos2(row.left() + 40.0, row.center().y));
    let selected = h.state().traffic_ui.selected.expect("a selected row");
    let before = h.get_by_label_contains(ROW_30).rect().top();

    // Twenty newer rows arrive: newest first, they go above it.
    h.state_mut().model.apply(MonitorEvent::Traffic(later), 3_000);
    // Several frames: the place is kept, not reached and then lost (no spring-back).
    for _ in 0..4 {
        h.step();
    }
    assert_eq!(h.state().traffic_ui.selected, Some(selected));
    let after = h
        .query_by_label_contains(ROW_30)
        .expect("the selected row is still on screen")
        .rect()
        .top();
    assert!(
        (after - before).abs() < 1.0,
        "the selected row moved from y {before} to {after}"
    );
    assert!(
        h.query_by_label_contains(r#"ReceiveMessage("ann", "line 59")"#)
            .is_none(),
        "the new rows are above, out of view"
    );
}
