//! What the dashboard reads from a node: the JSON snapshot (`GET /switchboard/stats`, and pushed
//! every 500 ms on the `/switchboard/monitor` WebSocket), and the heartbeat each node publishes on
//! `{prefix}switchboard:nodes` so a dashboard can discover nodes from Redis alone. Both documents
//! are the types of `status_doc`, which the dashboard reads with the same declarations.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::NodeShared;
use super::stats::Stats;
use crate::backplane::BackplaneState;
use crate::status_doc::{
    ANNOUNCEMENT_TYPE, Announcement, BackplaneStats, BackplaneStatusStats, ConnectionStats, Limits,
    MessageStats, NodeStats,
};
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The node's statistics.
pub(crate) fn document(node: &NodeShared) -> NodeStats {
    let s = &node.stats;
    let (connections, groups, users) = node.registry.counts();
    let backplane = node.lifetime.backplane();
    let status = backplane.status().borrow().clone();
    let (retry_in_ms, attempt) = match &status.state {
        BackplaneState::Reconnecting { attempt, retry_in } => {
            (Some(retry_in.as_millis() as u64), Some(*attempt))
        }
        _ => (None, None),
    };
    NodeStats {
        node_name: node.config.node_name.clone(),
        server_name: node.server_name.clone(),
        hub: node.config.hub_name.clone(),
        channel_prefix: node.config.channel_prefix.clone(),
        hub_path: node.config.path.clone(),
        url: node.public_url(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: unix_ms(node.started_at),
        uptime_s: node.started.elapsed().as_secs_f64(),
        now_ms: unix_ms(SystemTime::now()),
        connections: ConnectionStats {
            total: connections as u64,
            json: Stats::get(&s.connections_json),
            messagepack: Stats::get(&s.connections_messagepack),
            accepted: Stats::get(&s.connections_accepted),
            rejected: Stats::get(&s.rejected_connections),
            refused: Stats::get(&s.refused_connections),
        },
        groups: groups as u64,
        users: users as u64,
        messages: MessageStats {
            client_in: Stats::get(&s.client_in),
            client_out: Stats::get(&s.client_out),
            backplane_in: Stats::get(&s.backplane_in),
            backplane_out: Stats::get(&s.backplane_out),
            backplane_dropped: backplane.inbox_dropped(),
        },
        backplane: BackplaneStats {
            kind: backplane.kind().to_string(),
            status: BackplaneStatusStats {
                state: state_name(&status.state).to_string(),
                last_error: status.last_error.clone(),
                connects: status.connects,
                retry_in_ms,
                attempt,
            },
            last_error_at_ms: status.last_error_at.map(unix_ms),
        },
        forward_failures: Stats::get(&s.forward_failures),
        forward_unreached: Stats::get(&s.forward_unreached),
        slow_client_disconnects: Stats::get(&s.slow_client_disconnects),
        protocol_errors: Stats::get(&s.protocol_errors),
        backplane_decode_errors: Stats::get(&s.backplane_decode_errors),
        group_ack_timeouts: Stats::get(&s.group_ack_timeouts),
        limits: Limits {
            max_connections: node.config.max_connections as u64,
            max_message_size: node.config.max_message_size as u64,
            outbound_queue: node.config.outbound_queue as u64,
            max_groups_per_connection: node.registry.max_groups() as u64,
        },
    }
}

/// The wire name of a backplane state (as `BackplaneState` serializes its tag).
fn state_name(state: &BackplaneState) -> &'static str {
    match state {
        BackplaneState::Memory => "memory",
        BackplaneState::Connecting => "connecting",
        BackplaneState::Connected => "connected",
        BackplaneState::Reconnecting { .. } => "reconnecting",
        BackplaneState::Stopped => "stopped",
    }
}

/// The node's statistics as one JSON document (what `/switchboard/stats` serves).
pub(crate) fn snapshot(node: &NodeShared) -> serde_json::Value {
    serde_json::to_value(document(node)).unwrap_or_default()
}

pub(crate) async fn stats_handler(State(node): State<Arc<NodeShared>>) -> Json<NodeStats> {
    Json(document(&node))
}

pub(crate) async fn monitor_handler(State(node): State<Arc<NodeShared>>, ws: WebSocketUpgrade) -> Response {
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
                        let text = serde_json::to_string(&document(&node)).unwrap_or_default();
                        let text = Utf8Bytes::from(text);
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
pub(crate) fn heartbeat(node: &NodeShared) -> Announcement {
    let (connections, _, _) = node.registry.counts();
    let url = node.public_url();
    Announcement {
        kind: ANNOUNCEMENT_TYPE.to_string(),
        server_name: node.server_name.clone(),
        node_name: node.config.node_name.clone(),
        hub_url: format!("{url}{}", node.config.path),
        monitor_url: format!("{}/switchboard/monitor", url.replacen("http", "ws", 1)),
        url,
        hub: node.config.hub_name.clone(),
        connections: connections as u64,
        version: env!("CARGO_PKG_VERSION").to_string(),
        ts_ms: unix_ms(SystemTime::now()),
    }
}

/// Publishes the heartbeat every interval while the backplane is up, until shutdown.
pub(crate) async fn heartbeat_loop(node: Arc<NodeShared>) {
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
        let payload = bytes::Bytes::from(serde_json::to_vec(&heartbeat(&node)).unwrap_or_default());
        if let Err(e) = backplane.publish(&channel, payload).await {
            tracing::debug!(error = %e, "heartbeat not published");
        }
    }
}
