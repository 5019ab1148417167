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
        Self { clients_per_node: 5, messages_per_sec: 2.0, group_share: 0.4 }
    }
}

/// UI → demo.
#[derive(Debug, Clone, PartialEq)]
pub enum DemoCommand {
    /// Starts one more node on a free port.
    AddNode,
    /// Stops the node with this name (it closes its clients with allowReconnect, leaves the bus).
    StopNode(String),
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
