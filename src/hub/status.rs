//! What the dashboard reads from a node: the JSON snapshot (`GET /switchboard/stats`, and pushed
//! every 500 ms on the `/switchboard/monitor` WebSocket), and the heartbeat each node publishes on
//! `{prefix}switchboard:nodes` so a dashboard can discover nodes from Redis alone.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use super::NodeShared;
use super::stats::Stats;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The node's statistics as one JSON document.
pub fn snapshot(node: &NodeShared) -> serde_json::Value {
    let s = &node.stats;
    let (connections, groups, users) = node.registry.counts();
    let backplane = node.lifetime.backplane();
    let status = backplane.status().borrow().clone();
    json!({
        "node_name": node.config.node_name,
        "server_name": node.server_name,
        "hub": node.config.hub_name,
        "channel_prefix": node.config.channel_prefix,
        "hub_path": node.config.path,
        "url": node.public_url(),
        "version": env!("CARGO_PKG_VERSION"),
        "started_at_ms": unix_ms(node.started_at),
        "uptime_s": node.started.elapsed().as_secs_f64(),
        "now_ms": unix_ms(SystemTime::now()),
        "connections": {
            "total": connections,
            "json": Stats::get(&s.connections_json),
            "messagepack": Stats::get(&s.connections_messagepack),
            "accepted": Stats::get(&s.connections_accepted),
            "rejected": Stats::get(&s.rejected_connections),
            "refused": Stats::get(&s.refused_connections),
        },
        "groups": groups,
        "users": users,
        "messages": {
            "client_in": Stats::get(&s.client_in),
            "client_out": Stats::get(&s.client_out),
            "backplane_in": Stats::get(&s.backplane_in),
            "backplane_out": Stats::get(&s.backplane_out),
        },
        "backplane": {
            "kind": backplane.kind(),
            "status": status,
            "last_error_at_ms": status.last_error_at.map(unix_ms),
        },
        "forward_failures": Stats::get(&s.forward_failures),
        "slow_client_disconnects": Stats::get(&s.slow_client_disconnects),
        "protocol_errors": Stats::get(&s.protocol_errors),
        "backplane_decode_errors": Stats::get(&s.backplane_decode_errors),
        "group_ack_timeouts": Stats::get(&s.group_ack_timeouts),
        "limits": {
            "max_connections": node.config.max_connections,
            "max_message_size": node.config.max_message_size,
            "outbound_queue": node.config.outbound_queue,
        },
    })
}

pub async fn stats_handler(State(node): State<Arc<NodeShared>>) -> Json<serde_json::Value> {
    Json(snapshot(&node))
}

pub async fn monitor_handler(State(node): State<Arc<NodeShared>>, ws: WebSocketUpgrade) -> Response {
    let tracker = node.tracker.clone();
    ws.on_upgrade(move |socket| {
        tracker.track_future(async move {
            let (mut sink, mut stream) = socket.split();
            let mut tick = tokio::time::interval(node.config.monitor_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = node.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let text = Utf8Bytes::from(snapshot(&node).to_string());
                        if sink.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    incoming = stream.next() => match incoming {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = sink.send(Message::Close(None)).await;
        })
    })
}

/// The heartbeat document (see the module docs).
pub fn heartbeat(node: &NodeShared) -> serde_json::Value {
    let (connections, _, _) = node.registry.counts();
    let url = node.public_url();
    json!({
        "type": "switchboard.node",
        "server_name": node.server_name,
        "node_name": node.config.node_name,
        "url": url,
        "hub_url": format!("{url}{}", node.config.path),
        "monitor_url": format!("{}/switchboard/monitor", url.replacen("http", "ws", 1)),
        "hub": node.config.hub_name,
        "connections": connections,
        "version": env!("CARGO_PKG_VERSION"),
        "ts_ms": unix_ms(SystemTime::now()),
    })
}

/// Publishes the heartbeat every interval while the backplane is up, until shutdown.
pub async fn heartbeat_loop(node: Arc<NodeShared>) {
    let channel = node.lifetime.channels().nodes();
    let mut tick = tokio::time::interval(node.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let backplane = node.lifetime.backplane();
        if !backplane.status().borrow().state.is_up() {
            continue;
        }
        let payload = bytes::Bytes::from(heartbeat(&node).to_string());
        if let Err(e) = backplane.publish(&channel, payload).await {
            tracing::debug!(error = %e, "heartbeat not published");
        }
    }
}
