//! The hub node: a chat hub speaking the ASP.NET Core SignalR client protocol over WebSockets,
//! scaled out through a `Backplane` in the ASP.NET Core Redis format.
//!
//! - `listener`: HTTP routes (negotiate, WebSocket upgrade, connection cap, chat page, monitor).
//! - `connection`: one task per client: handshake, inbound frames, bounded outbound queue, keep-alive.
//! - `registry`: local connections, groups and users, with reference-counted subscriptions.
//! - `lifetime`: routing of sends (local or via the backplane) and the backplane receive side.
//! - `dispatch`: the chat hub's methods.
//! - `stats`: counters and the monitor snapshot; `status`: the monitor endpoints and heartbeat.
//!
//! Uses `protocol`, `config` and the `Backplane` trait; never the Redis client directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::backplane::memory::MemoryBus;
use crate::config;

/// Everything a node needs to start. `NodeConfig::new` fills in the documented defaults.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to bind; port 0 picks a free one.
    pub listen: SocketAddr,
    /// A human name for this node ("node-a"), shown by the chat page and the dashboard.
    pub node_name: String,
    /// The .NET hub type full name used in channel names.
    pub hub_name: String,
    /// Prepended to every Redis channel name, as ASP.NET Core's `ChannelPrefix`.
    pub channel_prefix: String,
    /// The hub path (default `/chat`).
    pub path: String,
    /// Maximum concurrent connections; extra upgrades get 503.
    pub max_connections: usize,
    /// Maximum size of one hub message in bytes.
    pub max_message_size: usize,
    /// Server ping interval when nothing else was sent.
    pub keep_alive: Duration,
    /// Silence after which a client is dropped (armed after its first ping, as ASP.NET Core does).
    pub client_timeout: Duration,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// Frames queued per client before it is disconnected as slow.
    pub outbound_queue: usize,
    /// Time a remote group add/remove waits for the owner's ack.
    pub group_ack_timeout: Duration,
    /// The URL announced in heartbeats (defaults to `http://{bound address}`).
    pub public_url: Option<String>,
}

impl NodeConfig {
    /// A config with every default, listening on `127.0.0.1:0`.
    pub fn new(node_name: impl Into<String>) -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_name: node_name.into(),
            hub_name: config::DEFAULT_HUB_NAME.to_string(),
            channel_prefix: String::new(),
            path: config::DEFAULT_PATH.to_string(),
            max_connections: config::DEFAULT_MAX_CONNECTIONS,
            max_message_size: config::DEFAULT_MAX_MESSAGE_SIZE,
            keep_alive: config::DEFAULT_KEEP_ALIVE,
            client_timeout: config::DEFAULT_CLIENT_TIMEOUT,
            handshake_timeout: config::DEFAULT_HANDSHAKE_TIMEOUT,
            outbound_queue: config::DEFAULT_OUTBOUND_QUEUE,
            group_ack_timeout: config::DEFAULT_GROUP_ACK_TIMEOUT,
            public_url: None,
        }
    }
}

/// Which backplane a node uses.
#[derive(Debug, Clone)]
pub enum BackplaneChoice {
    /// No other node: an in-process bus of its own.
    Alone,
    /// An in-process bus shared with other nodes of this process.
    Memory(MemoryBus),
    /// A Redis server, by URL (`redis://[:password@]host:port[/db]`).
    Redis(String),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("binding the hub listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid Redis URL {url:?}: {reason}")]
    RedisUrl { url: String, reason: String },
    #[error("invalid hub path {0:?}: it must start with '/' and not end with '/'")]
    Path(String),
}

/// A running node. Dropping it does not stop the node; call `shutdown`.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<NodeInner>,
}

struct NodeInner {}

/// Starts nodes.
pub struct Node;

impl Node {
    /// Binds the listener, connects the backplane (in the background: a node with Redis down still
    /// serves its own clients) and starts serving. Returns once the listener is bound.
    pub async fn start(config: NodeConfig, backplane: BackplaneChoice) -> Result<NodeHandle, NodeError> {
        let _ = (config, backplane);
        todo!()
    }
}

impl NodeHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }

    /// `http://{addr}{path}`: what a SignalR client connects to.
    pub fn hub_url(&self) -> String {
        todo!()
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        todo!()
    }

    /// The backplane server name, `{hostname}_{32 hex}`.
    pub fn server_name(&self) -> &str {
        todo!()
    }

    /// The node name from the config.
    pub fn node_name(&self) -> &str {
        todo!()
    }

    /// A snapshot of the node's statistics, as `/switchboard/stats` serves it.
    pub fn stats(&self) -> serde_json::Value {
        todo!()
    }

    /// Sends every client a Close with allowReconnect, waits up to the grace period for the
    /// connections to end, and stops the listener and the backplane.
    pub async fn shutdown(&self) {
        todo!()
    }

    /// Resolves when the node has stopped (after `shutdown`).
    pub async fn stopped(&self) {
        todo!()
    }
}
