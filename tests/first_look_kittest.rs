//! A first look a newcomer understands, and the smaller wrongs of issue 18 (point 5, and part of
//! point 6), on the real dashboard app driven by egui_kittest at a projector's 1024×768: the
//! demo's left panel in words (Redis terms with words beside them, the raw names in brackets or
//! on hover; a unit on the groups figure), a stopped node's row ("–" for its live values, Remove
//! on screen), the demo's backplane line that follows the backplane, a refused Redis URL never
//! saved, a capture browsed offline without any connection, and a reconnect countdown that counts
//! (against a real redis-server killed by the test).
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::kittest::{click, frames_until, harness_sized, has_label, labels_with_rects};
use common::redis::RedisServer;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::demo::{DemoBackplane, DemoOptions, SimSettings};
use switchboard::link::{DemoWiring, Link};
use switchboard::monitor::model::nodes::Nodes;
use switchboard::monitor::{LinkState, TrafficEntry, now_ms};
use switchboard::ui::{DashboardApp, Settings, Startup};

const DEADLINE: Duration = Duration::from_secs(20);

/// A start with these settings, the demo's wiring if any, a capture if any, saved if `persist`.
fn startup(
    settings: Settings,
    demo: Option<DemoWiring>,
    capture: Option<(String, Vec<TrafficEntry>)>,
    persist: bool,
) -> Startup {
    Startup {
        demo,
        persist,
        capture,
        ..Startup::new(settings)
    }
}

/// Settings that connect to this Redis at start.
fn connecting_to(redis: &RedisServer) -> Settings {
    Settings {
        redis_url: redis.url(),
        auto_connect: true,
        ..Settings::default()
    }
}

/// The dashboard connecting to this Redis at start, at this size, not saving its settings.
fn connected_harness(redis: &RedisServer, width: f32, height: f32) -> Harness<'static, DashboardApp> {
    let (link, _) = Link::start(None).expect("the link starts");
    harness_sized(
        DashboardApp::new(link, Startup::new(connecting_to(redis))),
        width,
        height,
    )
}

/// A memory-bus demo with `nodes` nodes of 2 simulated clients each, 40 % of them in groups.
fn demo_app(nodes: usize) -> DashboardApp {
    let options = DemoOptions {
        nodes,
        backplane: DemoBackplane::Memory,
        sim: SimSettings {
            clients_per_node: 2,
            messages_per_sec: 4.0,
            group_share: 0.4,
        },
        ..DemoOptions::default()
    };
    let (link, wiring) = Link::start(Some(options)).expect("the demo starts");
    DashboardApp::new(link, startup(Settings::default(), wiring, None, false))
}

/// A label's text outside its brackets: "Output buffer (omem)" → "Output buffer ".
fn outside_brackets(text: &str) -> String {
    let mut depth = 0usize;
    text.chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

#[test]
fn the_demo_left_panel_says_things_in_words_with_units() {
    let mut h = harness_sized(demo_app(2), 1024.0, 768.0);
    frames_until(&mut h, DEADLINE, "both nodes live and a census line", |h| {
        h.state().model.nodes.live_count(now_ms()) == 2
            && has_label(h, "Count of nodes and clients")
            && h.state().model.census.is_some()
    });
    for tab in ["Nodes", "Redis", "Traffic"] {
        click(&mut h, tab);
        for (label, _) in labels_with_rects(&h) {
            let bare = outside_brackets(&label);
            for raw in ["PUBSUB", "NUMSUB", "omem", "tot-mem"] {
                assert!(
                    !bare.contains(raw),
                    "{tab}: {raw:?} without words beside it (outside brackets) in {label:?}"
                );
            }
        }
    }
    // The census: one short plain line (its timing on hover).
    let census = labels_with_rects(&h)
        .into_iter()
        .map(|(l, _)| l)
        .find(|l| l.starts_with("Count of nodes and clients"))
        .unwrap();
    assert!(census.len() < 48, "one short line: {census:?}");
    assert!(!has_label(&h, "Census walked"), "no timing details on the panel");
    // The groups figure is a percentage (40, shown "40 %"), not a bare 0.40.
    let groups = h.get_by_role_and_label(egui::accesskit::Role::Slider, "of clients in groups");
    assert_eq!(
        egui_kittest::kittest::NodeT::accesskit_node(&groups).numeric_value(),
        Some(40.0),
        "{groups:?}"
    );
}

/// The Redis tab against a real redis-server (the dashboard's own tap is a pub/sub client it
/// lists): its columns in words, the raw CLIENT LIST names only in brackets or on hover.
#[test]
fn the_redis_tab_names_redis_terms_in_words() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = rt.block_on(RedisServer::start());
    let mut h = connected_harness(&redis, 1024.0, 768.0);
    click(&mut h, "Redis");
    frames_until(&mut h, DEADLINE, "the Redis view with its pub/sub clients", |h| {
        has_label(h, "Output buffer limit of pub/sub connections") && has_label(h, "switchboard-dashboard")
    });
    assert!(has_label(&h, "Output buffer") && has_label(&h, "Total memory"));
    for (label, _) in labels_with_rects(&h) {
        let bare = outside_brackets(&label);
        for raw in ["PUBSUB", "NUMSUB", "omem", "tot-mem", "pubsub limit"] {
            assert!(!bare.contains(raw), "{raw:?} without words in {label:?}");
        }
        assert!(
            !bare.contains(" pat ") && !bare.contains(" ch "),
            "abbreviations in {label:?}"
        );
    }
    drop(h);
    drop(redis);
}

#[test]
fn a_stopped_node_shows_dashes_and_its_remove_button_stays_on_screen() {
    let mut h = harness_sized(demo_app(2), 1024.0, 768.0);
    click(&mut h, "Nodes");
    frames_until(&mut h, DEADLINE, "both nodes live with 2 clients each", |h| {
        let now = now_ms();
        let nodes = &h.state().model.nodes;
        nodes.live_count(now) == 2 && nodes.cluster_total_clients(now) == 4
    });
    assert_eq!(h.query_all_by_label("2 + 1 probe").count(), 2, "both rows live");

    h.get_all_by_label("Stop")
        .next()
        .expect("a Stop button per node")
        .click();
    h.step();
    frames_until(&mut h, DEADLINE, "node-a stopped on purpose", |h| {
        let now = now_ms();
        h.state()
            .model
            .nodes
            .rows()
            .iter()
            .any(|r| r.name == "node-a" && !Nodes::liveness(r, now).is_live())
            && has_label(h, "stopped on purpose at")
    });
    // node-a's row: "–" for its clients (its last count on hover only), node-b's still live.
    assert_eq!(
        h.query_all_by_label("2 + 1 probe").count(),
        1,
        "only the live node shows its clients: {:?}",
        labels_with_rects(&h).iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
    assert!(
        h.query_all_by_label("–").count() >= 6,
        "dashes for the stopped node's live values"
    );
    // Every Remove button (the table's and the left panel's) inside the window.
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1024.0, 768.0));
    let removes: Vec<egui::Rect> = h.query_all_by_label("Remove").map(|n| n.rect()).collect();
    assert!(removes.len() >= 2, "a Remove per row: {removes:?}");
    for rect in &removes {
        assert!(
            window.contains_rect(*rect),
            "Remove at {rect:?} is off a 1024×768 window"
        );
    }
}

#[test]
fn the_demo_backplane_line_follows_the_backplane() {
    let mut h = harness_sized(demo_app(1), 1024.0, 768.0);
    frames_until(&mut h, DEADLINE, "the backplane connected", |h| {
        has_label(h, "The demo's backplane: connected for you.")
    });
    click(&mut h, "Stop backplane");
    frames_until(&mut h, DEADLINE, "the line says it was stopped", |h| {
        has_label(h, "The demo's backplane: stopped by you")
    });
    assert!(!has_label(&h, "connected for you"));
    click(&mut h, "Start backplane");
    frames_until(&mut h, DEADLINE, "connected again", |h| {
        has_label(h, "The demo's backplane: connected for you.")
    });
}

#[test]
fn a_refused_redis_url_is_never_saved() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = rt.block_on(RedisServer::start());
    let (link, _) = Link::start(None).expect("the link starts");
    // As the last run left them: a URL that worked, connected to at start.
    let settings = connecting_to(&redis).loaded();
    let mut h = harness_sized(
        DashboardApp::new(link, startup(settings, None, None, true)),
        1024.0,
        768.0,
    );
    frames_until(&mut h, DEADLINE, "connected to the real Redis", |h| {
        h.state().model.tap.state == LinkState::Connected
    });

    // A URL nothing listens on, typed and connected to: refused.
    let refused = format!("redis://127.0.0.1:{}", common::free_port());
    h.state_mut().settings.redis_url = refused.clone();
    h.step(); // laid out with the new URL before the click
    click(&mut h, "Connect");
    frames_until(&mut h, DEADLINE, "the new URL refused", |h| {
        matches!(h.state().model.tap.state, LinkState::Reconnecting { .. })
    });
    assert_eq!(
        h.state().settings.redis_url,
        refused,
        "the form keeps what was typed"
    );
    let saved = h.state().settings_to_save().unwrap();
    assert_eq!(
        saved.redis_url,
        redis.url(),
        "the next start connects to the one that worked"
    );
    drop(h);
    drop(redis);
}

#[test]
fn a_capture_is_browsed_offline_without_connecting() {
    let (link, _) = Link::start(None).expect("the link starts");
    // Remembered from a run whose Redis is gone, and a node nothing listens on: its link's
    // failures are the positive marker that the monitor took the start's commands.
    let dead = format!("http://127.0.0.1:{}/chat", common::free_port());
    let settings = Settings {
        redis_url: format!("redis://127.0.0.1:{}", common::free_port()),
        auto_connect: true,
        nodes: vec![switchboard::ui::parse_node(&dead).unwrap()],
        ..Settings::default()
    }
    .loaded();
    let capture = vec![TrafficEntry::new(
        now_ms(),
        "chat:all",
        switchboard::monitor::model::EntryKind::All,
        b"x".to_vec(),
    )];
    let mut h = harness_sized(
        DashboardApp::new(
            link,
            startup(settings, None, Some(("old.jsonl".into(), capture)), true),
        ),
        1024.0,
        768.0,
    );
    frames_until(
        &mut h,
        DEADLINE,
        "the capture open and the node tried twice",
        |h| {
            has_label(h, "Browsing capture old.jsonl")
                && h.state()
                    .model
                    .nodes
                    .rows()
                    .iter()
                    .any(|r| matches!(r.state, LinkState::Reconnecting { attempt, .. } if attempt >= 2))
        },
    );
    assert_eq!(
        h.state().model.tap.state,
        LinkState::Idle,
        "no connection to Redis at all"
    );
    assert!(!has_label(&h, "Backplane: failed") && !has_label(&h, "Backplane: reconnecting"));
}

#[test]
fn the_reconnect_countdown_counts_and_its_caption_fits() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut redis = rt.block_on(RedisServer::start());
    let mut h = connected_harness(&redis, 1280.0, 720.0);
    frames_until(&mut h, DEADLINE, "connected", |h| {
        h.state().model.tap.state == LinkState::Connected
    });
    redis.kill();

    // Watch the tap for 6 s of outage: (when, attempt, when the next attempt is due).
    let mut seen: Vec<(u64, u32, u64)> = Vec::new();
    let mut since: Option<Instant> = None;
    frames_until(&mut h, DEADLINE, "6 s of reconnecting watched", |h| {
        if let LinkState::Reconnecting {
            attempt, retry_at_ms, ..
        } = h.state().model.tap.state
        {
            since.get_or_insert_with(Instant::now);
            if seen.last().is_none_or(|s| s.1 != attempt) {
                seen.push((now_ms(), attempt, retry_at_ms));
            }
        }
        since.is_some_and(|s| s.elapsed() >= Duration::from_secs(6))
    });
    // The backoff grows to whole seconds (capped), so the attempts climb at the pace the
    // countdown shows: in 6 s, a handful, not the 25 of a 250 ms pace.
    let first = seen.first().unwrap().1;
    let last = seen.last().unwrap().1;
    assert!(last - first <= 10, "{} attempts in 6 s: {seen:?}", last - first);
    let longest = seen.iter().map(|s| s.2.saturating_sub(s.0)).max().unwrap();
    assert!(longest >= 1500, "the backoff grows past a second: {seen:?}");
    // No attempt before the countdown of the one before it ran out (100 ms for the frames).
    for pair in seen.windows(2) {
        assert!(
            pair[1].0 + 100 >= pair[0].2,
            "an attempt before its time: {pair:?}"
        );
    }

    // The caption: a few words that fit at 1280×720, the error on hover.
    let (caption, rect) = labels_with_rects(&h)
        .into_iter()
        .find(|(l, _)| l.starts_with("Backplane: reconnecting"))
        .unwrap_or_else(|| panic!("no caption: {:?}", labels_with_rects(&h)));
    assert!(
        caption.len() <= "Backplane: reconnecting in 3 s".len(),
        "{caption:?}"
    );
    assert!(
        !caption.contains("attempt") && !caption.contains("127.0.0.1"),
        "{caption:?}"
    );
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 720.0));
    assert!(window.contains_rect(rect), "{caption:?} at {rect:?}");
}
