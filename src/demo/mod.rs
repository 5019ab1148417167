//! `switchboard demo`: hub nodes in this process on free loopback ports, a backplane (a private
//! `redis-server` on a free port when one is on PATH, otherwise the in-memory bus), and simulated
//! chat clients on each node. The presenter adds and stops nodes, stops and restarts the
//! backplane, and sets how many simulated clients there are and how fast they talk, from the UI
//! through [`DemoCommand`]s; [`DemoStatus`] says what is running.
//!
//! Uses `hub` (to start nodes), `backplane` (the memory bus), `client` (simulated users) and
//! `monitor` (only for the `TapSource`/`NodeTarget` types it hands the dashboard). Never `ui`.

use serde::{Deserialize, Serialize};

/// How many simulated chat clients, and how they behave. Set from the UI at any time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimSettings {
    /// Simulated clients connected to each running node.
    pub clients_per_node: u32,
    /// Chat messages per second, all simulated clients together.
    pub messages_per_sec: f64,
    /// Share (0..=1) of clients that join a group and send some messages to it.
    pub group_share: f32,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            clients_per_node: 5,
            messages_per_sec: 2.0,
            group_share: 0.4,
        }
    }
}

/// UI → demo.
#[derive(Debug, Clone, PartialEq)]
pub enum DemoCommand {
    /// Starts one more node on a free port.
    AddNode,
    /// Stops the node with this name (it closes its clients with allowReconnect, leaves the bus).
    StopNode(String),
    /// Starts the stopped node with this name again: same name, same port when it is free.
    StartNode(String),
    /// Stops the backplane (kills redis-server, or takes the memory bus down).
    StopBackplane,
    /// Starts it again (same port for Redis, so nodes and the tap reconnect by themselves).
    StartBackplane,
    SetSimulation(SimSettings),
}

/// One node of the demo.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DemoNode {
    pub name: String,
    /// http://127.0.0.1:PORT (the chat page).
    pub base_url: String,
    /// http://127.0.0.1:PORT/chat
    pub hub_url: String,
    /// http://127.0.0.1:PORT/switchboard/stats
    pub stats_url: String,
    /// The chat page to open in a browser: `base_url/`, with `#access_token=…` (valid for the
    /// demo's length, user `audience`) when the nodes require tokens.
    pub page_url: String,
    pub running: bool,
}

/// What the demo is running, for the UI.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DemoStatus {
    /// "redis" or "memory".
    pub backplane_kind: String,
    /// The private Redis URL, for the redis backplane.
    pub redis_url: Option<String>,
    pub backplane_running: bool,
    pub nodes: Vec<DemoNode>,
    pub sim: SimSettings,
    /// Simulated clients connected now.
    pub sim_clients: u32,
    pub sim_sent: u64,
    pub sim_received: u64,
    /// The last thing that went wrong (a node that failed to start, ...), for the UI.
    pub last_error: Option<String>,
}

pub mod redis_server;
mod runner;
mod sim;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::NodeError;
use crate::monitor::{NodeTarget, TapSource};

/// Commands queued for the demo task; the presenter clicks a few per second at most.
const COMMAND_QUEUE: usize = 64;

/// How long [`DemoHandle::shutdown`] waits for nodes, simulations and redis-server.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Which backplane the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DemoBackplane {
    /// A private redis-server when one is on PATH, else the in-memory bus.
    #[default]
    Auto,
    Redis,
    Memory,
}

/// How to start the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Nodes started at once.
    pub nodes: usize,
    pub backplane: DemoBackplane,
    /// The channel prefix of every node (the Redis is private, so "" is fine).
    pub channel_prefix: String,
    /// Run the nodes on this Redis (a cluster, TLS, ACL...) instead of a private redis-server;
    /// the demo then never stops or restarts it.
    pub external_redis: Option<crate::redis_conn::RedisSpec>,
    pub sim: SimSettings,
    /// The HS256 secret the demo's nodes require tokens for (`--auth jwt`, so the demo shows the
    /// real thing): random per run by default; its simulated clients, chat-page links and the
    /// dashboard's probes present tokens minted from it. `None` runs the nodes without auth.
    pub auth_secret: Option<Arc<[u8]>>,
}

impl DemoOptions {
    /// What the dashboard's probes and test sends present to the demo's nodes.
    pub fn node_credentials(&self) -> crate::node_token::NodeCredentials {
        match &self.auth_secret {
            Some(secret) => crate::node_token::NodeCredentials::mint_from_secret(secret)
                .unwrap_or(crate::node_token::NodeCredentials::None),
            None => crate::node_token::NodeCredentials::None,
        }
    }
}

/// A fresh random HS256 secret for one demo run (32 bytes: HS256's full strength). Its last byte
/// is never a line break, which secrets drop (`node_token::secret_bytes`), so all 32 count.
pub fn random_secret() -> Arc<[u8]> {
    let mut bytes: [u8; 32] = rand::random();
    while matches!(bytes[31], b'\n' | b'\r') {
        bytes[31] = rand::random();
    }
    Arc::from(&bytes[..])
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            nodes: 2,
            backplane: DemoBackplane::Auto,
            channel_prefix: String::new(),
            external_redis: None,
            sim: SimSettings::default(),
            auth_secret: Some(random_secret()),
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "redis-server is not on PATH: install it (apt-get install redis-server) or use the in-memory backplane"
    )]
    RedisNotFound,
    #[error("starting the private redis-server: {0}")]
    Redis(String),
    #[error("starting demo node {name}: {source}")]
    Node {
        name: String,
        #[source]
        source: NodeError,
    },
    #[error("setting up the demo's tokens: {0}")]
    Auth(String),
}

/// The front of a running demo. Dropping it cancels the demo (redis-server is killed when the
/// demo task ends); [`shutdown`](Self::shutdown) waits for it.
pub struct DemoHandle {
    cmd_tx: mpsc::Sender<DemoCommand>,
    status: Arc<Mutex<DemoStatus>>,
    counters: Arc<sim::SimCounters>,
    tap_source: TapSource,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DemoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoHandle").finish_non_exhaustive()
    }
}

fn lock(status: &Mutex<DemoStatus>) -> MutexGuard<'_, DemoStatus> {
    // Replaced field by field: a poisoned status is still displayable.
    status.lock().unwrap_or_else(|e| e.into_inner())
}

impl DemoHandle {
    /// Starts the backplane, `opts.nodes` nodes and their simulated clients. Call inside a tokio
    /// runtime; returns once every node listens.
    pub async fn start(opts: DemoOptions) -> Result<DemoHandle, DemoError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let cancel = CancellationToken::new();
        let started = runner::Runner::start(opts, cancel.clone()).await?;
        let status = started.status.clone();
        let counters = started.counters.clone();
        let tap_source = started.tap_source.clone();
        let task = tokio::spawn(started.runner.run(cmd_rx));
        Ok(DemoHandle {
            cmd_tx,
            status,
            counters,
            tap_source,
            cancel,
            task: Some(task),
        })
    }

    /// What is running now; cheap enough for every frame.
    pub fn status(&self) -> DemoStatus {
        let mut status = lock(&self.status).clone();
        status.sim_clients = self.counters.clients.load(Ordering::Relaxed);
        status.sim_sent = self.counters.sent.load(Ordering::Relaxed);
        status.sim_received = self.counters.received.load(Ordering::Relaxed);
        status
    }

    /// Queues a command without waiting; `false` when the queue is full or the demo has ended.
    pub fn command(&self, cmd: DemoCommand) -> bool {
        self.cmd_tx.try_send(cmd).is_ok()
    }

    /// Where the dashboard's tap should listen.
    pub fn tap_source(&self) -> TapSource {
        self.tap_source.clone()
    }

    /// The running nodes, as the dashboard watches them.
    pub fn node_targets(&self) -> Vec<NodeTarget> {
        lock(&self.status)
            .nodes
            .iter()
            .filter(|n| n.running)
            .map(|n| NodeTarget {
                hub_url: n.hub_url.clone(),
                monitor_url: Some(n.stats_url.clone()),
            })
            .collect()
    }

    /// Stops the simulations and the nodes and kills redis-server, within a few seconds.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, task).await.is_err()
        {
            tracing::warn!("the demo did not stop within {SHUTDOWN_TIMEOUT:?}");
        }
    }
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
