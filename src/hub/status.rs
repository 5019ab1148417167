//! What the dashboard reads from a node: the JSON snapshot (`GET /switchboard/stats`, and pushed
//! every 500 ms on the `/switchboard/monitor` WebSocket), one page of its connections
//! (`GET /switchboard/connections`, the directory), and the heartbeat each node publishes on
//! `{prefix}switchboard:nodes` so a dashboard can discover nodes from Redis alone. Both documents
//! are the types of `status_doc`, which the dashboard reads with the same declarations.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::NodeShared;
use super::directory::ConnectionQuery;
use super::stats::Stats;
use crate::backplane::BackplaneState;
use crate::status_doc::{
    ANNOUNCEMENT_TYPE, Announcement, BackplaneStats, BackplaneStatusStats, CONNECTIONS_DEFAULT_LIMIT,
    CONNECTIONS_MAX_LIMIT, ConnectionStats, ConnectionsPage, Holds, Limits, MessageStats, NodeStats,
};
use axum::Json;
use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
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
            refused_per_ip: Stats::get(&s.refused_per_ip),
        },
        groups: groups as u64,
        users: users as u64,
        messages: MessageStats {
            client_in: Stats::get(&s.client_in),
            client_out: Stats::get(&s.client_out),
            client_writes: Stats::get(&s.client_writes),
            backplane_in: Stats::get(&s.backplane_in),
            backplane_out: Stats::get(&s.backplane_out),
            backplane_dropped: backplane.inbox_dropped(),
            backplane_gaps: backplane.subscription_gaps(),
            control_dropped: node.lifetime.control_dropped(),
            invocations_limited: Stats::get(&s.invocations_limited),
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
        remote_group_refusals: Stats::get(&s.remote_group_refusals),
        limits: Limits {
            max_connections: node.config.max_connections as u64,
            max_message_size: node.config.max_message_size as u64,
            outbound_queue: node.config.outbound_queue as u64,
            max_groups_per_connection: node.registry.max_groups() as u64,
        },
        holds: None,
    }
}

/// `GET /switchboard/stats?user=U&connection=C`: a dashboard asks which node holds the client a
/// test message went to, so its trace can name the node.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct HoldsQuery {
    user: Option<String>,
    connection: Option<String>,
}

/// Whether this node holds the user or connection asked about; bounded: one user's connections.
fn holds(node: &NodeShared, q: &HoldsQuery) -> Holds {
    let mut holds = Holds::default();
    if let Some(user) = &q.user {
        let n = node
            .registry
            .with_targets(super::registry::Target::User(user), |conns| conns.count());
        holds.user = Some(user.clone());
        holds.user_connections = Some(n as u64);
    }
    if let Some(id) = &q.connection {
        holds.connection = Some(id.clone());
        holds.connection_here = Some(node.registry.is_local(id));
    }
    holds
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

pub(crate) async fn stats_handler(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HoldsQuery>,
) -> Json<NodeStats> {
    let mut doc = document(&node);
    if q.user.is_some() || q.connection.is_some() {
        doc.holds = Some(holds(&node, &q));
    }
    Json(doc)
}

/// `GET /switchboard/connections?user=&group=&id=&limit=&after=`. Empty parameters count as
/// absent; unknown ones are ignored.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ConnectionsParams {
    user: Option<String>,
    group: Option<String>,
    id: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// A query parameter, when given and not empty.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The page size asked for, or why it is not one.
fn page_limit(limit: Option<&str>) -> Result<usize, String> {
    match limit.filter(|l| !l.is_empty()) {
        None => Ok(CONNECTIONS_DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=CONNECTIONS_MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit must be a whole number from 1 to {CONNECTIONS_MAX_LIMIT}, not {:?}",
                text.chars().take(40).collect::<String>()
            )),
        },
    }
}

pub(crate) async fn connections_handler(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<ConnectionsParams>,
) -> Response {
    let limit = match page_limit(q.limit.as_deref()) {
        Ok(limit) => limit,
        Err(reason) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{reason}\n"),
            )
                .into_response();
        }
    };
    let page = node.registry.list(&ConnectionQuery {
        id: given(&q.id),
        user: given(&q.user),
        group: given(&q.group),
        after: given(&q.after),
        limit,
    });
    Json(ConnectionsPage {
        node_name: node.config.node_name.clone(),
        server_name: node.server_name.clone(),
        url: node.public_url(),
        connections: page.entries,
        next: page.next,
        scanned: page.scanned as u64,
        limit: limit as u64,
    })
    .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_limit_defaults_and_is_bounded() {
        assert_eq!(page_limit(None), Ok(CONNECTIONS_DEFAULT_LIMIT));
        assert_eq!(page_limit(Some("")), Ok(CONNECTIONS_DEFAULT_LIMIT));
        assert_eq!(page_limit(Some("1")), Ok(1));
        assert_eq!(page_limit(Some("1000")), Ok(CONNECTIONS_MAX_LIMIT));
        for bad in ["0", "1001", "-1", "ten", "1e3"] {
            let error = page_limit(Some(bad)).unwrap_err();
            assert!(error.contains("from 1 to 1000"), "{error}");
        }
    }
}
