//! The Nodes view in the real dashboard app, driven with egui_kittest against a real redis-server:
//! a node known only from a (forged) heartbeat shows "discovered, not trusted" in its row, with a
//! Trust button; clicking it sends the trust command, after which the runtime reports the node
//! trusted (the words go), the node's requests carry the node token, and the settings remember it
//! as a named node.
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::kittest::{frames_until, has_label};
use common::listener::{NOT_FOUND, Recorder, header, request_line};
use common::redis::{RedisServer, publish};
use common::unique_prefix;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::link::Link;
use switchboard::monitor::MonitorOptions;
use switchboard::node_token::NodeCredentials;
use switchboard::redis_conn::RedisSpec;
use switchboard::ui::{DashboardApp, Settings, Startup, Tab};

const DEADLINE: Duration = Duration::from_secs(30);
const NODE_TOKEN: &str = "kittest-n0de-t0ken";

#[test]
fn a_discovered_node_row_says_not_trusted_and_its_trust_button_trusts_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let redis = rt.block_on(RedisServer::start());
    let mut node = rt.block_on(Recorder::start(NOT_FOUND));
    let base = node.base();
    let hub_url = format!("{base}/chat");
    let beat = serde_json::to_vec(&switchboard::status_doc::Announcement {
        kind: "switchboard.node".to_string(),
        server_name: "forged_1".to_string(),
        node_name: "forged-node".to_string(),
        url: base.clone(),
        hub_url: hub_url.clone(),
        monitor_url: String::new(),
        hub: "ChatHub".to_string(),
        connections: 0,
        version: "x".to_string(),
        ts_ms: 1,
    })
    .unwrap();
    let options = MonitorOptions {
        node_credentials: NodeCredentials::from_token(NODE_TOKEN).unwrap(),
        ..MonitorOptions::default()
    };
    let (link, _) = Link::start_with(None, options).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.clone(),
        auto_connect: true,
        ..Settings::default()
    };
    let app = DashboardApp::new(
        link,
        Startup {
            settings,
            redis: Some(RedisSpec::parse(&redis.url(), &Default::default()).unwrap()),
            demo: None,
            tab: Some(Tab::Nodes),
            persist: true,
            exit_after: None,
            capture: None,
        },
    );
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);

    // The heartbeat, repeated as a live node does (the first may come before the tap subscribes).
    let channel = format!("{prefix}switchboard:nodes");
    let mut frames = 0u32;
    frames_until(&mut h, DEADLINE, "the discovered node's row, not trusted", |h| {
        if frames.is_multiple_of(20) {
            rt.block_on(publish(&redis.url(), &channel, &beat));
        }
        frames += 1;
        has_label(h, "forged-node") && has_label(h, "discovered, not trusted")
    });
    assert!(h.query_by_label("Trust").is_some(), "a Trust button in the row");
    // Positive marker, then no token: the probe came without one.
    rt.block_on(node.wait_for(0, DEADLINE, "the probe's negotiate", |head| {
        request_line(head).starts_with("POST /chat/negotiate")
    }));
    node.drain();
    let before = node.seen.len();
    assert!(
        node.seen
            .iter()
            .all(|head| header(head, "authorization").is_none()),
        "no token before the Trust click: {:#?}",
        node.seen
    );

    h.get_by_label("Trust").click();
    h.step();
    h.step();
    frames_until(&mut h, DEADLINE, "the node trusted", |h| {
        !has_label(h, "discovered, not trusted")
    });
    assert!(h.query_by_label("Trust").is_none());
    let saved = h.state().settings_to_save().unwrap();
    assert!(
        saved.nodes.iter().any(|n| n.hub_url == hub_url),
        "remembered as a named node: {:?}",
        saved.nodes
    );
    rt.block_on(
        node.wait_for(before, DEADLINE, "the node token after Trust", |head| {
            request_line(head).starts_with("POST /chat/negotiate")
                && header(head, "authorization") == Some(&format!("Bearer {NODE_TOKEN}"))
        }),
    );
}
