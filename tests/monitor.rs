//! What the dashboard reads from a node: `/switchboard/stats`, the `/switchboard/monitor`
//! WebSocket (a snapshot every 500 ms that follows clients connecting and leaving), and the
//! heartbeat on `{prefix}switchboard:nodes`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::redis::{RedisServer, Tap};
use common::{STEP, connect, unique_prefix, within};
use futures_util::StreamExt;
use switchboard::client::connect_raw_ws;
use switchboard::hub::{BackplaneChoice, Node, NodeConfig};
use switchboard::protocol::Protocol;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_monitor_and_heartbeat_describe_the_node() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let mut tap = Tap::start(&redis.url(), &format!("{prefix}switchboard:nodes")).await;
    let mut config = NodeConfig::new("node-m");
    config.channel_prefix = prefix.clone();
    let node = Node::start(config, BackplaneChoice::RedisUrl(redis.url()))
        .await
        .unwrap();

    let stats = common::http::stats(&node.base_url()).await;
    assert_eq!(stats["node_name"], "node-m");
    assert_eq!(stats["server_name"], node.server_name());
    assert_eq!(stats["hub"], "Switchboard.ChatHub");
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["connections"]["total"], 0);
    assert!(stats["uptime_s"].as_f64().unwrap() >= 0.0);
    for key in ["client_in", "client_out", "backplane_in", "backplane_out"] {
        assert!(stats["messages"][key].is_u64(), "{key}");
    }
    for key in ["forward_failures", "slow_client_disconnects"] {
        assert_eq!(stats[key], 0, "{key}");
    }
    assert_eq!(stats["backplane"]["kind"], "redis");

    let (_, beat) = tap
        .wait_for(|_, _| true, Duration::from_secs(5))
        .await
        .expect("a heartbeat within two intervals");
    let beat: serde_json::Value = serde_json::from_slice(&beat).unwrap();
    assert_eq!(beat["server_name"], node.server_name());
    assert_eq!(beat["node_name"], "node-m");
    assert_eq!(beat["url"], node.base_url());
    assert_eq!(beat["hub_url"], node.hub_url());
    assert_eq!(beat["hub"], "Switchboard.ChatHub");

    let mut monitor = connect_raw_ws(&format!("ws://{}/switchboard/monitor", node.local_addr()))
        .await
        .unwrap();
    let mut next_snapshot = async || -> serde_json::Value {
        loop {
            match within("snapshot", monitor.next()).await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("monitor ended: {other:?}"),
            }
        }
    };
    assert_eq!(next_snapshot().await["connections"]["total"], 0);
    let c1 = connect(&node, Protocol::Json, Some("u1")).await;
    let c2 = connect(&node, Protocol::MessagePack, Some("u2")).await;
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let s = next_snapshot().await;
        if s["connections"]["total"] == 2 {
            assert_eq!(s["connections"]["json"], 1);
            assert_eq!(s["connections"]["messagepack"], 1);
            assert_eq!(s["users"], 2);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "count never reached 2: {s}"
        );
    }
    c1.close().await;
    c2.close().await;
    loop {
        let s = next_snapshot().await;
        if s["connections"]["total"] == 0 {
            assert_eq!(s["users"], 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "count never went back to 0: {s}"
        );
    }
    node.shutdown().await;
}
