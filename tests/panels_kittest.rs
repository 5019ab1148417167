//! The Send, Traffic and Directory panels' smaller wrongs, each driven through the real dashboard
//! app at 1024×768 by its labels with egui_kittest: a field per target kind in Send; a trace
//! table whose Explain button stays inside the window and whose explanations open under their
//! rows; no burst lines for single sends and "Stop bursts" only while one runs; in Traffic, "N new
//! rows above" while scrolled away, the detail pane of a row the filter hides, "Hide <kind> rows" from
//! the row menu and its undo; and the Directory listing everything, paged, with nothing typed
//! (against a real redis-server, a real hub node and real clients).
//!
//! Most panels are fed by putting events into the app's model (what the link would deliver);
//! the Directory asks a real node through the link's own runtime.
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::kittest::{click, click_at, frames_until, has_label, is_disabled, type_into};

use std::time::Duration;

use common::redis::RedisServer;
use common::{connect, s, start_node, unique_prefix};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::hub::BackplaneChoice;
use switchboard::link::Link;
use switchboard::monitor::model::EntryKind;
use switchboard::monitor::{
    BurstProgress, BurstState, MonitorEvent, NodeTarget, SendTarget, TrafficEntry, now_ms,
};
use switchboard::protocol::Protocol;
use switchboard::ui::{DashboardApp, Settings, Startup, Tab};

const DEADLINE: Duration = Duration::from_secs(20);
/// A projector's resolution: the left panel takes 300 points, the panels get ~700.
const WIDTH: f32 = 1024.0;
const HEIGHT: f32 = 768.0;
const NODE: &str = "http://127.0.0.1:1/chat";

fn app(tab: Tab, prefix: &str) -> Harness<'static, DashboardApp> {
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.to_string(),
        auto_connect: false,
        ..Settings::default()
    };
    let startup = Startup {
        tab: Some(tab),
        ..Startup::new(settings)
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(WIDTH, HEIGHT))
        .build_ui_state(
            |ui, app: &mut DashboardApp| app.show(ui),
            DashboardApp::new(link, startup),
        );
    h.step();
    h
}

/// The Send view with one (unreachable) node to send through.
fn send_app() -> Harness<'static, DashboardApp> {
    let mut h = app(Tab::Send, "p:");
    h.state_mut().model.nodes.upsert(NodeTarget {
        hub_url: NODE.to_string(),
        monitor_url: None,
    });
    h.state_mut().send_ui.node = NODE.to_string();
    h.step();
    h
}

/// A settled trace to `target` that failed, so it has something to explain.
fn failed_trace(h: &mut Harness<'_, DashboardApp>, id: u64, target: SendTarget) {
    let at = now_ms().saturating_sub(10_000);
    let traces = &mut h.state_mut().model.traces;
    traces.on_sent(id, NODE.to_string(), target, at, Vec::new());
    traces.on_send_failed(id, NODE.to_string(), "the node refused it".to_string(), at);
}

#[test]
fn send_keeps_a_field_per_target_kind() {
    let mut h = send_app();
    assert_eq!(h.state().tab, Tab::Send);
    click(&mut h, "group");
    h.state_mut().send_ui.group.clear();
    type_into(&mut h, "group name", "room-9");
    assert_eq!(h.state().send_ui.group, "room-9");

    // Another kind: its own field, empty; the group name is not carried over.
    click(&mut h, "user");
    assert!(h.query_by_label("group name").is_none());
    assert_eq!(h.get_by_label("user id").value().unwrap_or_default(), "");
    click(&mut h, "Send message");
    assert!(has_label(&h, "enter the user id to send to"));
    assert_ne!(
        h.state().send_ui.request("me").map(|r| r.target),
        Ok(SendTarget::User("room-9".into()))
    );
    type_into(&mut h, "user id", "ann");
    assert_eq!(
        h.state().send_ui.request("me").unwrap().target,
        SendTarget::User("ann".into())
    );

    // Each field keeps its text: back to group, the group name is there (and what the user kind
    // missed is no longer said).
    h.state_mut().send_ui.user.clear();
    click(&mut h, "Send message");
    assert!(has_label(&h, "enter the user id to send to"));
    click(&mut h, "group");
    assert!(!has_label(&h, "enter the user id"));
    h.state_mut().send_ui.user = "ann".into();
    assert_eq!(h.get_by_label("group name").value().unwrap_or_default(), "room-9");
    assert_eq!(
        h.state().send_ui.request("me").unwrap().target,
        SendTarget::Group("room-9".into())
    );

    // A pick elsewhere (the Directory, a probe) fills its kind's own field.
    h.state_mut()
        .send_ui
        .set_target(&SendTarget::Connection("conn-7".into()));
    h.step();
    assert_eq!(h.state().send_ui.connection, "conn-7");
    assert_eq!(h.state().send_ui.group, "room-9");
    assert_eq!(h.state().send_ui.user, "ann");
}

#[test]
fn the_trace_table_keeps_its_explain_button_inside_a_1024_window() {
    let mut h = send_app();
    let long = format!("connection-{}", "x".repeat(120));
    failed_trace(&mut h, 0xabc, SendTarget::Connection(long.clone()));
    for _ in 0..3 {
        h.step();
    }
    let explain = h.get_by_label("Explain").rect();
    assert!(
        explain.right() <= WIDTH && explain.left() >= 300.0,
        "the Explain button is at {explain:?}, outside the 1024-point window"
    );
    let status = h.get_by_label_contains("failed: the node refused it").rect();
    assert!(status.right() <= WIDTH, "the status is at {status:?}");
    // The long target is cut, not lost: the cell is a label holding the whole text (on hover).
    let route = h.get_by_label_contains("connection-xxxx").rect();
    assert!(
        route.right() <= explain.left(),
        "the route cell {route:?} runs under the button"
    );
}

#[test]
fn explanations_open_under_their_own_rows() {
    let mut h = send_app();
    failed_trace(&mut h, 0xa1, SendTarget::Group("room-a".into()));
    failed_trace(&mut h, 0xb2, SendTarget::Group("room-b".into()));
    for _ in 0..3 {
        h.step();
    }
    let header = h.get_by_label("via -> to").rect().top();
    let newest = h.get_by_label("b2").rect();
    let older = h.get_by_label("a1").rect();
    assert!(newest.top() < older.top(), "newest first");

    // Open both: the newest row's explanation sits between it and the older row, the older's
    // under the older row; the table does not move down.
    let buttons: Vec<egui::Rect> = h.query_all_by_label("Explain").map(|n| n.rect()).collect();
    assert_eq!(buttons.len(), 2);
    h.query_all_by_label("Explain").next().unwrap().click();
    h.step();
    h.step();
    h.get_by_label("Explain").click();
    h.step();
    h.step();
    assert_eq!(h.query_all_by_label("Hide").count(), 2, "both open");
    let header_after = h.get_by_label("via -> to").rect().top();
    assert!(
        (header_after - header).abs() < 1.0,
        "the table moved from y {header} to {header_after}"
    );
    let newest = h.get_by_label("b2").rect();
    let older = h.get_by_label("a1").rect();
    let why_newest = h.get_by_label_contains("Why: trace b2").rect();
    let why_older = h.get_by_label_contains("Why: trace a1").rect();
    assert!(
        why_newest.top() > newest.bottom() && why_newest.bottom() < older.top(),
        "b2's explanation {why_newest:?} is not between its row {newest:?} and the next {older:?}"
    );
    assert!(
        why_older.top() > older.bottom(),
        "a1's explanation is under its row"
    );
    // Its own close button closes it.
    h.query_all_by_label("close").next().unwrap().click();
    h.step();
    h.step();
    assert!(!has_label(&h, "Why: trace b2") && has_label(&h, "Why: trace a1"));
}

fn burst(id: u64, total: u32, sent: u32, state: BurstState) -> MonitorEvent {
    MonitorEvent::Burst(BurstProgress {
        id,
        node: NODE.to_string(),
        sent,
        failed: 0,
        total,
        state,
    })
}

#[test]
fn single_sends_get_no_burst_line_and_stop_bursts_needs_a_running_one() {
    let mut h = send_app();
    let now = now_ms();
    for id in 1..=3 {
        h.state_mut().model.apply(burst(id, 1, 1, BurstState::Done), now);
    }
    // A burst that finished long ago.
    h.state_mut()
        .model
        .apply(burst(4, 20, 20, BurstState::Done), now - 60_000);
    h.step();
    h.step();
    assert!(!has_label(&h, "sent 1 of 1"), "single sends have no line");
    assert!(!has_label(&h, "sent 20 of 20"), "an old finished burst is gone");
    assert!(is_disabled(&h, "Stop bursts"), "nothing to stop");

    h.state_mut()
        .model
        .apply(burst(5, 100, 37, BurstState::Running), now_ms());
    h.step();
    h.step();
    assert!(has_label(&h, "sent 37 of 100…"));
    assert!(!is_disabled(&h, "Stop bursts"));

    h.state_mut()
        .model
        .apply(burst(5, 100, 100, BurstState::Done), now_ms());
    h.step();
    h.step();
    assert!(
        has_label(&h, "sent 100 of 100, done"),
        "just finished: still said"
    );
    assert!(is_disabled(&h, "Stop bursts"));
}

/// `n` chat rows (`line {first}` …) and, when `heartbeats`, a heartbeat after each.
fn rows(first: u64, n: u64, heartbeats: bool) -> Vec<TrafficEntry> {
    let mut out = Vec::new();
    for i in first..first + n {
        let mut e = TrafficEntry::new(1_000 + i, "p:Chat:all", EntryKind::All, vec![0; 10]);
        e.hub = Some("Chat".into());
        e.summary = format!("ReceiveMessage(\"ann\", \"line {i}\")");
        out.push(e);
        if heartbeats {
            let mut b = TrafficEntry::new(
                1_000 + i,
                "p:switchboard:nodes",
                EntryKind::Heartbeat,
                vec![0; 10],
            );
            b.summary = format!("node-a beat {i}");
            out.push(b);
        }
    }
    out
}

#[test]
fn new_rows_above_are_counted_and_a_click_jumps_to_them() {
    let mut h = app(Tab::Traffic, "p:");
    h.state_mut()
        .model
        .apply(MonitorEvent::Traffic(rows(0, 40, false)), 2_000);
    h.step();
    h.step();
    assert!(!has_label(&h, "new row"), "at the top: nothing is new");
    // Select a row: it keeps its place as rows arrive above it, out of view.
    let row = h.get_by_label_contains("\"line 35\"").rect();
    click_at(&mut h, egui::pos2(row.left() + 40.0, row.center().y));
    assert!(h.state().traffic_ui.selected.is_some());
    h.state_mut()
        .model
        .apply(MonitorEvent::Traffic(rows(40, 12, false)), 3_000);
    for _ in 0..4 {
        h.step();
    }
    assert!(
        h.query_by_label_contains("\"line 51\"").is_none(),
        "the new rows are above"
    );
    assert!(has_label(&h, "12 new rows above — jump to newest"));

    click(&mut h, "12 new rows above — jump to newest");
    h.step();
    assert!(has_label(&h, "\"line 51\""), "the newest row is on screen");
    assert!(!has_label(&h, "new rows above"), "nothing new above any more");

    // Paused: the rows that arrive are held back, counted, and one click resumes and shows them.
    click(&mut h, "Pause");
    h.state_mut()
        .model
        .apply(MonitorEvent::Traffic(rows(52, 3, false)), 4_000);
    h.step();
    h.step();
    assert!(h.query_by_label_contains("\"line 54\"").is_none());
    click(&mut h, "3 new rows above — resume and jump to newest");
    h.step();
    assert!(!h.state().model.traffic.paused());
    assert!(has_label(&h, "\"line 54\""));
    assert!(!has_label(&h, "new rows above"));
}

#[test]
fn the_detail_pane_says_when_the_filter_hides_its_row() {
    let mut h = app(Tab::Traffic, "p:");
    h.state_mut()
        .model
        .apply(MonitorEvent::Traffic(rows(0, 5, false)), 2_000);
    h.step();
    h.step();
    let row = h.get_by_label_contains("\"line 2\"").rect();
    click_at(&mut h, egui::pos2(row.left() + 40.0, row.center().y));
    let seq = h.state().traffic_ui.selected.expect("a selected row");
    let header = format!("#{seq} p:Chat:all");
    assert!(has_label(&h, &header), "the detail pane shows the row");

    type_into(&mut h, "Filter", "line 4");
    h.step();
    assert_eq!(h.state().model.traffic.visible_len(), 1);
    assert!(!has_label(&h, &header), "the hidden row's detail is gone");
    assert!(has_label(
        &h,
        &format!("The selected row (#{seq}) is hidden by the filter.")
    ));
}

#[test]
fn hide_a_kind_from_the_row_menu_and_show_it_again() {
    let mut h = app(Tab::Traffic, "p:");
    h.state_mut()
        .model
        .apply(MonitorEvent::Traffic(rows(0, 6, true)), 2_000);
    h.step();
    h.step();
    let heartbeats = |h: &Harness<'_, DashboardApp>| {
        let t = &h.state().model.traffic;
        (0..t.visible_len())
            .filter_map(|i| t.visible(i))
            .filter(|e| e.kind == EntryKind::Heartbeat)
            .count()
    };
    assert_eq!(heartbeats(&h), 6);

    // Right-click a heartbeat row, choose "Hide heartbeat rows".
    h.get_by_label_contains("node-a beat 3").click_secondary();
    h.step();
    h.step();
    click(&mut h, "Hide heartbeat rows");
    assert_eq!(heartbeats(&h), 0, "no heartbeat row remains");
    assert_eq!(h.state().model.traffic.visible_len(), 6);
    assert!(!has_label(&h, "node-a beat"));
    // The filter bar says so, and undoes it.
    assert!(has_label(&h, "Hidden: heartbeat rows"));
    click(&mut h, "Show heartbeat rows");
    assert_eq!(heartbeats(&h), 6);
    assert!(!has_label(&h, "Hidden: heartbeat rows"));

    // × clears a hidden kind with the rest of the filter.
    h.get_by_label_contains("node-a beat 2").click_secondary();
    h.step();
    h.step();
    click(&mut h, "Hide heartbeat rows");
    assert_eq!(heartbeats(&h), 0);
    click(&mut h, "×");
    assert_eq!(heartbeats(&h), 6);
}

#[test]
fn the_directory_lists_everything_paged_with_nothing_typed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let (redis, node) = rt.block_on(async {
        let redis = RedisServer::start().await;
        let node = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
        (redis, node)
    });
    // Seven clients: five users, two of them in "lobby", one in "kitchen".
    let clients = rt.block_on(async {
        let mut clients = Vec::new();
        for (i, user) in ["ann", "bob", "cat", "dan", "eve", "ann", "bob"]
            .iter()
            .enumerate()
        {
            let c = connect(&node, Protocol::Json, Some(user)).await;
            let group = if i < 2 {
                "lobby"
            } else if i == 2 {
                "kitchen"
            } else {
                ""
            };
            if !group.is_empty() {
                c.invoke("JoinGroup", vec![s(group)]).await.unwrap();
            }
            clients.push(c);
        }
        clients
    });

    let mut h = app(Tab::Directory, &prefix);
    type_into(&mut h, "Redis URL", &redis.url());
    click(&mut h, "Connect");
    frames_until(&mut h, DEADLINE, "the node with stats", |h| {
        h.state().model.nodes.rows().iter().any(|r| r.stats.is_some())
    });
    h.state_mut().directory_ui.page_size = 3;

    // Nothing typed, kind connection: every connection (the seven and the dashboard's probe).
    click(&mut h, "connection");
    click(&mut h, "Search directory");
    frames_until(&mut h, DEADLINE, "the listing", |h| {
        has_label(h, "8 connections on 1 node")
    });
    assert!(has_label(&h, "Showing 1–3 of 8"));
    assert!(is_disabled(&h, "previous page"));
    click(&mut h, "next page");
    assert!(has_label(&h, "Showing 4–6 of 8"));
    click(&mut h, "next page");
    assert!(has_label(&h, "Showing 7–8 of 8"));
    assert!(is_disabled(&h, "next page"));

    // The same answer by user and by group, from the first page.
    click(&mut h, "user");
    assert!(has_label(&h, "6 users on 1 node"), "five and the probes' user");
    assert!(has_label(&h, "Showing 1–3 of 6"));
    assert!(has_label(&h, "ann") && has_label(&h, "bob"));
    click(&mut h, "group");
    assert!(has_label(&h, "2 groups on 1 node"));
    assert!(has_label(&h, "kitchen") && has_label(&h, "lobby"));
    // A group picked fills the Send form's group.
    click(&mut h, "lobby");
    assert_eq!(h.state().tab, Tab::Send);
    assert_eq!(h.state().send_ui.group, "lobby");

    drop(h);
    drop(clients);
    rt.block_on(node.shutdown());
}
