//! What `check` asks the nodes: the heartbeats (discovery), each node's stats twice (their
//! counters' movement), and the canary's clients, one per node, each sending a test message
//! that every other must receive within the deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::client::{ClientEvent, ClientOptions, HubClient};
use crate::monitor::directory;
use crate::monitor::model::health::{Delivery, NodeSnapshot};
use crate::protocol::Value;
use crate::redis_conn::{Addr, RedisConnector};
use crate::status_doc::{Announcement, NodeStats};

use super::*;

pub(super) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Subscribes to the heartbeat channel for `listen_for` and hands on every announcement.
pub(super) async fn listen_heartbeats(
    connector: RedisConnector,
    addr: Addr,
    channel: String,
    listen_for: Duration,
    tx: tokio::sync::mpsc::Sender<Announcement>,
) {
    let work = async {
        let Ok(mut pubsub) = connector.pubsub(&addr).await else {
            return;
        };
        if pubsub.subscribe(&channel).await.is_err() {
            return;
        }
        let mut stream = pubsub.on_message();
        while let Some(message) = stream.next().await {
            if let Ok(a) = serde_json::from_slice::<Announcement>(message.get_payload_bytes()) {
                let _ = tx.try_send(a);
            }
        }
    };
    let _ = tokio::time::timeout(listen_for, work).await;
}

pub(super) enum StatsResult {
    Stats(Box<NodeStats>),
    NoMonitor,
    /// Did not answer (the hub client's error says why, or it connected: a wrong stats URL).
    Unreachable,
}

pub(super) async fn node_stats(node: &CheckNode, options: &CheckOptions, deadline: Instant) -> StatsResult {
    let Some(url) = &node.stats_url else {
        return StatsResult::NoMonitor;
    };
    let limit = remaining(deadline).min(directory::PAGE_TIMEOUT);
    let token = options.token.as_ref().filter(|_| node.trusted);
    match directory::get(url, token, options.node_tls.as_ref(), limit).await {
        Ok(response) if response.status == 200 => match response.json::<NodeStats>() {
            Ok(stats) => StatsResult::Stats(Box::new(stats)),
            Err(_) => StatsResult::NoMonitor,
        },
        // 404 (no monitor endpoint: ASP.NET Core) or 401/403: the canary still tells.
        Ok(_) => StatsResult::NoMonitor,
        Err(_) => StatsResult::Unreachable,
    }
}

pub(super) fn snapshot(after: &NodeStats, before: Option<&NodeStats>) -> NodeSnapshot {
    NodeSnapshot {
        server_name: after.server_name.clone(),
        hub: after.hub.clone(),
        backplane_kind: after.backplane.kind.clone(),
        backplane_state: after.backplane.status.state.clone(),
        backplane_error: after.backplane.status.last_error.clone(),
        connections: after.connections.total,
        client_out_delta: before.map(|b| after.messages.client_out.saturating_sub(b.messages.client_out)),
        backplane_in_delta: before.map(|b| {
            after
                .messages
                .backplane_in
                .saturating_sub(b.messages.backplane_in)
        }),
    }
}

pub(super) async fn connect(
    node: &CheckNode,
    options: &CheckOptions,
    deadline: Instant,
) -> Result<HubClient, String> {
    let opts = ClientOptions {
        user: Some(CHECK_USER.to_string()),
        connect_timeout: remaining(deadline).max(Duration::from_millis(100)),
        tls: options.node_tls.clone(),
        token: if node.trusted {
            options.node_credentials.bearer_for(CHECK_USER)
        } else {
            None
        },
        ..ClientOptions::default()
    };
    HubClient::connect(&node.hub_url, opts)
        .await
        .map_err(|e| e.to_string())
}

/// Sends one text through each connected node and waits on every other node's client for the
/// texts it should receive. Returns the deliveries, why each node's client could not connect,
/// and the clients (to close them).
pub(super) async fn canary(
    nodes: &[CheckNode],
    clients: Vec<Result<HubClient, String>>,
    options: &CheckOptions,
    deadline: Instant,
) -> (Vec<Delivery>, Vec<Option<String>>, Vec<Option<HubClient>>) {
    let stamp = now_ms();
    let texts: Vec<String> = (0..nodes.len())
        .map(|i| format!("switchboard check {}-{stamp}-{i}", std::process::id()))
        .collect();
    let mut unreachable: Vec<Option<String>> = Vec::new();
    let mut clients: Vec<Option<HubClient>> = clients
        .into_iter()
        .map(|c| match c {
            Ok(c) => {
                unreachable.push(None);
                Some(c)
            }
            Err(e) => {
                unreachable.push(Some(e));
                None
            }
        })
        .collect();
    let live: Vec<usize> = (0..nodes.len()).filter(|&i| clients[i].is_some()).collect();
    let sent_at = Instant::now();
    let mut sent = vec![false; nodes.len()];
    for &i in &live {
        if let Some(c) = &clients[i] {
            let args = vec![Value::from(CHECK_USER), Value::from(texts[i].as_str())];
            sent[i] = c.send(&options.send_method, args).await.is_ok();
        }
    }
    // Who expects what: every other live node; a lone node expects its own.
    let expect = |j: usize| -> Vec<usize> {
        if live.len() == 1 {
            live.clone()
        } else {
            live.iter().copied().filter(|&i| i != j && sent[i]).collect()
        }
    };
    let waits = clients.iter_mut().enumerate().filter_map(|(j, c)| {
        let c = c.as_mut()?;
        let wanted: Vec<(usize, String)> = expect(j).into_iter().map(|i| (i, texts[i].clone())).collect();
        let receive = options.receive_method.clone();
        Some(async move {
            let mut got: BTreeMap<usize, u64> = BTreeMap::new();
            while got.len() < wanted.len() {
                let left = remaining(deadline);
                if left.is_zero() {
                    break;
                }
                match c.recv_timeout(left).await {
                    Some(ClientEvent::Invocation { target, arguments }) if target == receive => {
                        for (i, text) in &wanted {
                            if arguments.iter().any(|a| a.as_str() == Some(text.as_str())) {
                                got.entry(*i).or_insert(sent_at.elapsed().as_millis() as u64);
                            }
                        }
                    }
                    Some(ClientEvent::Invocation { .. }) => {}
                    Some(_) | None => break,
                }
            }
            (j, wanted, got)
        })
    });
    let results = futures_util::future::join_all(waits).await;
    let mut deliveries = Vec::new();
    for (j, wanted, got) in results {
        for (i, _) in wanted {
            deliveries.push(Delivery {
                from: nodes[i].hub_url.clone(),
                to: nodes[j].hub_url.clone(),
                received_after_ms: got.get(&i).copied(),
            });
        }
    }
    (deliveries, unreachable, clients)
}
