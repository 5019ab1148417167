//! Simulated chat users on one demo node: a task that keeps `clients_per_node` clients connected
//! (a share of them in "room-1"/"room-2"), sends the node's share of `messages_per_sec` (mostly
//! `SendMessage`, some `SendToGroup`), and drains every inbox, counting what was sent and received.
//! Settings change live through a `watch`; everything stops with the node's cancel token.
//!
//! Used by the demo runner only; uses `client`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SimSettings;
use crate::client::{ClientEvent, ClientOptions, HubClient, HubSender};
use crate::config;
use crate::node_token::NodeCredentials;
use crate::protocol::Value;

/// How often the simulation adjusts its clients and sends: smooth enough for the rate plots.
const TICK: Duration = Duration::from_millis(100);

/// Clients connected per tick at most, so a jump to 200 clients does not stall sending.
const CONNECTS_PER_TICK: usize = 20;

/// Connect deadline for a simulated client (loopback: milliseconds when the node is healthy).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const NAMES: [&str; 12] = [
    "ann", "bob", "cho", "dev", "eve", "fay", "gus", "hal", "ida", "jon", "kim", "lea",
];
const LINES: [&str; 6] = [
    "hello everyone",
    "anyone seen the build?",
    "lunch at noon",
    "deploying now",
    "looks good to me",
    "brb",
];

/// The simulation's inputs: the settings and how many nodes share the message rate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimPlan {
    pub settings: SimSettings,
    pub running_nodes: usize,
}

/// Totals over every node's simulation.
#[derive(Debug, Default)]
pub struct SimCounters {
    pub clients: AtomicU32,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

struct SimClient {
    user: String,
    group: Option<String>,
    sender: HubSender,
    close: CancellationToken,
    reader: JoinHandle<()>,
}

/// The simulation of one node; stop it with [`SimNode::stop`].
pub struct SimNode {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl SimNode {
    /// Starts simulating users on `hub_url` (node `node_name`); each presents a token minted for
    /// its user from `credentials` (none without).
    pub fn start(
        node_name: String,
        hub_url: String,
        plan: watch::Receiver<SimPlan>,
        counters: Arc<SimCounters>,
        credentials: NodeCredentials,
    ) -> SimNode {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            node_name,
            hub_url,
            plan,
            counters,
            credentials,
            cancel.clone(),
        ));
        SimNode { cancel, task }
    }

    /// Closes its clients and ends the task (bounded).
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn user_name(index: usize, node: &str) -> String {
    let name = NAMES[index % NAMES.len()];
    match index / NAMES.len() {
        0 => format!("{name}@{node}"),
        n => format!("{name}{}@{node}", n + 1),
    }
}

/// Whether client `index` joins a group, spreading members evenly (`share` of every ten).
fn group_of(index: usize, share: f32) -> Option<String> {
    let members_per_ten = (share.clamp(0.0, 1.0) * 10.0).round() as usize;
    (index % 10 < members_per_ten).then(|| format!("room-{}", index % 2 + 1))
}

async fn connect(
    hub_url: &str,
    user: &str,
    group: Option<&str>,
    counters: Arc<SimCounters>,
    credentials: &NodeCredentials,
) -> Option<SimClient> {
    let options = ClientOptions {
        user: Some(user.to_string()),
        token: credentials.bearer_for(user),
        connect_timeout: CONNECT_TIMEOUT,
        ..ClientOptions::default()
    };
    let mut client = HubClient::connect(hub_url, options).await.ok()?;
    if let Some(group) = group {
        client.invoke("JoinGroup", vec![Value::from(group)]).await.ok()?;
    }
    let sender = client.sender();
    let close = CancellationToken::new();
    let stop = close.clone();
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    client.close().await;
                    return;
                }
                event = client.recv() => match event {
                    Some(ClientEvent::Invocation { .. }) => {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(ClientEvent::Close { .. }) => {}
                    Some(ClientEvent::Disconnected { .. }) | None => return,
                },
            }
        }
    });
    Some(SimClient {
        user: user.to_string(),
        group: group.map(str::to_string),
        sender,
        close,
        reader,
    })
}

async fn run(
    node: String,
    hub_url: String,
    plan: watch::Receiver<SimPlan>,
    counters: Arc<SimCounters>,
    credentials: NodeCredentials,
    cancel: CancellationToken,
) {
    let mut clients: Vec<SimClient> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut carry = 0.0f64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let plan = plan.borrow().clone();
        let want = plan
            .settings
            .clients_per_node
            .min(config::DEMO_MAX_CLIENTS_PER_NODE) as usize;

        // Clients whose connection ended (the node stopped or dropped them) go away.
        let before = clients.len();
        clients.retain(|c| !c.reader.is_finished());
        counters
            .clients
            .fetch_sub((before - clients.len()) as u32, Ordering::Relaxed);

        let mut connected = 0;
        while clients.len() < want && connected < CONNECTS_PER_TICK {
            let index = clients.len();
            let user = user_name(index, &node);
            let group = group_of(index, plan.settings.group_share);
            let Some(client) =
                connect(&hub_url, &user, group.as_deref(), counters.clone(), &credentials).await
            else {
                break; // the node is not answering: try again next tick
            };
            counters.clients.fetch_add(1, Ordering::Relaxed);
            clients.push(client);
            connected += 1;
        }
        while clients.len() > want {
            if let Some(client) = clients.pop() {
                client.close.cancel();
                counters.clients.fetch_sub(1, Ordering::Relaxed);
            }
        }

        if clients.is_empty() {
            carry = 0.0;
            continue;
        }
        let total = plan.settings.messages_per_sec;
        let total = if total.is_finite() {
            total.clamp(0.0, config::DEMO_MAX_MESSAGES_PER_SEC)
        } else {
            0.0
        };
        carry += total / plan.running_nodes.max(1) as f64 * TICK.as_secs_f64();
        let due = carry.floor();
        carry -= due;
        for _ in 0..due as usize {
            let (client, to_group, line) = {
                let mut rng = rand::rng();
                let client = &clients[rng.random_range(0..clients.len())];
                (
                    client,
                    rng.random_bool(0.3),
                    LINES[rng.random_range(0..LINES.len())],
                )
            };
            let user = Value::from(client.user.as_str());
            let sent = match (&client.group, to_group) {
                (Some(group), true) => {
                    let text = Value::from(format!("{line} ({group})"));
                    client
                        .sender
                        .send("SendToGroup", vec![Value::from(group.as_str()), user, text])
                        .await
                }
                _ => {
                    client
                        .sender
                        .send("SendMessage", vec![user, Value::from(line)])
                        .await
                }
            };
            if sent.is_ok() {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let count = clients.len() as u32;
    for client in &clients {
        client.close.cancel();
    }
    let readers = clients.into_iter().map(|c| c.reader);
    let _ = tokio::time::timeout(Duration::from_secs(3), futures_util::future::join_all(readers)).await;
    counters.clients.fetch_sub(count, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_groups() {
        assert_eq!(user_name(0, "node-a"), "ann@node-a");
        assert_eq!(user_name(13, "node-b"), "bob2@node-b");
        assert_eq!(group_of(0, 0.4).as_deref(), Some("room-1"));
        assert_eq!(group_of(3, 0.4).as_deref(), Some("room-2"));
        assert_eq!(group_of(4, 0.4), None);
        assert_eq!(group_of(0, 0.0), None);
    }
}
