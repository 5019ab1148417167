//! The Directory tab and the Send view's Explain, on the real dashboard app driven by its labels
//! with egui_kittest, against a real redis-server and two real hub nodes: a search finds a user on
//! the right node, picking its connection id (or user) fills the Send form's target, a search for
//! nothing says so plainly, and a test message to a group nobody is in is explained with
//! "0 servers subscribed".
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::kittest::{click, frames_until, has_label, type_into};

use std::time::Duration;

use common::redis::RedisServer;
use common::{connect, s, start_node, unique_prefix};
use egui_kittest::Harness;
use switchboard::hub::BackplaneChoice;
use switchboard::link::Link;
use switchboard::monitor::SendTarget;
use switchboard::protocol::Protocol;
use switchboard::ui::{DashboardApp, Settings, Startup, Tab};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn directory_search_pick_and_explain_through_the_ui() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let (redis, a, b) = rt.block_on(async {
        let redis = RedisServer::start().await;
        let a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
        let b = start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
        (redis, a, b)
    });
    let dora = rt.block_on(async {
        let dora = connect(&b, Protocol::Json, Some("dora")).await;
        dora.invoke("JoinGroup", vec![s("Lobby")]).await.unwrap();
        dora
    });
    let dora_id = dora.connection_id().unwrap().to_string();

    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.clone(),
        auto_connect: false,
        ..Settings::default()
    };
    let startup = Startup::new(settings);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(
            |ui, app: &mut DashboardApp| app.show(ui),
            DashboardApp::new(link, startup),
        );

    type_into(&mut h, "Redis URL", &redis.url());
    click(&mut h, "Connect");
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

    // Directory: dora is a user on node-b, in Lobby; her user channel has one subscriber.
    click(&mut h, "Directory");
    assert_eq!(h.state().tab, Tab::Directory);
    type_into(&mut h, "Search", "dora");
    click(&mut h, "Search directory");
    frames_until(&mut h, DEADLINE, "dora found on node-b", |h| {
        has_label(h, "user \"dora\": 1 connection on 1 node: node-b 1")
    });
    let hub = switchboard::config::DEFAULT_HUB_NAME;
    assert!(has_label(&h, &format!("{prefix}{hub}:user:dora")));
    assert!(has_label(&h, "Lobby"), "her groups are listed");

    // Picking her connection id fills the Send form's target and shows the Send view.
    click(&mut h, &dora_id);
    assert_eq!(h.state().tab, Tab::Send);
    assert_eq!(
        h.state().send_ui.request("me").map(|r| r.target).ok(),
        None,
        "no node chosen yet: the form says so"
    );
    h.state_mut().send_ui.node = a.hub_url();
    assert_eq!(
        h.state().send_ui.request("me").unwrap().target,
        SendTarget::Connection(dora_id.clone())
    );
    // Her user, from the same answer.
    click(&mut h, "Directory");
    click(&mut h, "dora");
    assert_eq!(
        h.state().send_ui.request("me").unwrap().target,
        SendTarget::User("dora".into())
    );

    // Nothing found: said plainly, with the Redis side.
    click(&mut h, "Directory");
    h.state_mut().directory_ui.text.clear();
    type_into(&mut h, "Search", "ghost");
    click(&mut h, "Search directory");
    frames_until(&mut h, DEADLINE, "ghost not found", |h| {
        has_label(h, "no connection, user or group \"ghost\" on 2 nodes; channel")
    });
    assert!(has_label(
        &h,
        &format!("{prefix}{hub}:group:ghost has 0 subscribers")
    ));

    // Explain: a group nobody is in, the probes left out of it.
    click(&mut h, "Send");
    click(&mut h, "group");
    h.state_mut().send_ui.group = "empty-room".into();
    click(&mut h, "probes join the group");
    assert!(!h.state().send_ui.probes_join);
    click(&mut h, "Send message");
    // NUMSUB of its channel was 0: failed, in the row as in Explain (one rule decides).
    frames_until(&mut h, DEADLINE, "the trace failed: nobody subscribed", |h| {
        has_label(h, "failed: nobody subscribed (NUMSUB 0)")
    });
    // The status column widens with its new text on the next frame: click once it has.
    for _ in 0..3 {
        h.step();
    }
    click(&mut h, "Explain");
    let channel = format!("{prefix}{hub}:group:empty-room");
    frames_until(&mut h, DEADLINE, "the explanation", |h| {
        has_label(h, &format!("Nobody was subscribed to {channel}"))
    });
    assert!(has_label(
        &h,
        &format!("PUBSUB NUMSUB {channel} = 0 when it was sent")
    ));
    assert!(has_label(&h, "no watched node holds group \"empty-room\""));
    assert!(has_label(&h, "What to do: Add the clients to \"empty-room\""));
    click(&mut h, "Hide");
    assert!(!has_label(&h, "Nobody was subscribed"));

    drop(h);
    rt.block_on(async {
        a.shutdown().await;
        b.shutdown().await;
    });
}
