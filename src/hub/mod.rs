//! The hub node: a chat hub speaking the ASP.NET Core SignalR client protocol over WebSockets,
//! scaled out through a `Backplane` in the ASP.NET Core Redis format.
//!
//! - `listener`: the accept loop (TCP connection cap, header read timeout) and the HTTP routes
//!   (negotiate, WebSocket upgrade, chat page, monitor).
//! - `connection`: one task per client: handshake, inbound frames, bounded outbound queue, keep-alive.
//! - `registry`: local connections, groups and users, with reference-counted subscriptions.
//! - `lifetime`: routing of sends (local or via the backplane) and the backplane receive side.
//! - `dispatch`: the chat hub's methods.
//! - `threads`: where each accepted connection is served (`--threads`).
//! - `ws`: the WebSocket wire format: server frames encoded once per message, the client frame reader.
//! - `stats`: counters and the monitor snapshot; `status`: the monitor endpoints and heartbeat;
//!   `metrics`: the same counters in the Prometheus text format (`GET /metrics`); `access`: who may
//!   look at the monitor endpoints (`--monitor-token`, loopback clients).
//!
//! Uses `protocol`, `config` and the `Backplane` trait; never the Redis client directly.

mod access;
pub mod auth;
mod connection;
mod cork;
mod directory;
pub(crate) mod dispatch;
pub(crate) mod lifetime;
pub mod limits;
mod listener;
mod metrics;
mod outbox;
mod page;
pub(crate) mod registry;

/// Most backplane messages handled under one cork before the touched connections are written: a
/// bound on how long the first frame of a backlog batch waits (64 fan-outs of a hot room take well
/// under a millisecond of CPU) and on the cork's list, while already merging a hot room's frames
/// into one write per connection.
const CORK_BATCH: usize = 64;
pub(crate) mod stats;
mod status;
mod syscalls;
mod threads;
mod uring;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backplane::memory::MemoryBus;
use crate::backplane::naming::{ChannelKind, Channels};
use crate::backplane::redis::RedisBackplane;
use crate::backplane::{Backplane, BackplaneStatus, DirectReceiver, Inbox};
use crate::config;
use crate::monitor_token::MonitorToken;
use crate::redis_conn::{RedisOptions, RedisSpec};
use lifetime::Lifetime;
use registry::Registry;
use stats::Stats;

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
    /// Maximum open TCP connections (HTTP and WebSocket); past it new ones are closed at once.
    pub max_connections: usize,
    /// A connection that has not sent complete request headers within this time is closed.
    pub header_read_timeout: Duration,
    /// Maximum size of one hub message in bytes.
    pub max_message_size: usize,
    /// Groups one connection may be in (each first member of a group costs a SUBSCRIBE).
    pub max_groups_per_connection: usize,
    /// Submit a fan-out's socket writes together through io_uring where the kernel allows it
    /// (`hub::uring`); off, every delivery is its own `send`.
    pub io_uring: bool,
    /// Threads that serve connections (`threads::Threads`): 1 keeps every connection on the
    /// runtime that starts the node; N adds N - 1 current-thread runtimes, and accepted
    /// connections are dealt to the N in turn.
    pub threads: usize,
    /// Server ping interval when nothing else was sent.
    pub keep_alive: Duration,
    /// Silence after which a client is dropped, counted from its handshake and then from its last
    /// message (ASP.NET Core's ClientTimeoutInterval).
    pub client_timeout: Duration,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// Frames queued per client before it is disconnected as slow.
    pub outbound_queue: usize,
    /// Time a remote group add/remove waits for the owner's ack.
    pub group_ack_timeout: Duration,
    /// Per-client limits: invocation rate, user id and group name lengths.
    pub limits: limits::ClientLimits,
    /// Open connections per client IP address: `None` for the default (off on a loopback
    /// listener, `config::DEFAULT_MAX_CONNECTIONS_PER_IP` elsewhere), `Some(0)` for off.
    pub max_connections_per_ip: Option<usize>,
    /// Chat messages from the backplane waiting to be fanned out (control traffic has its own
    /// queue of `config::DEFAULT_CONTROL_INBOX`).
    pub backplane_inbox: usize,
    /// How often the monitor WebSocket pushes a snapshot.
    pub monitor_interval: Duration,
    /// How often the node announces itself on `{prefix}switchboard:nodes`.
    pub heartbeat_interval: Duration,
    /// How long a negotiated token waits for its WebSocket.
    pub negotiate_ttl: Duration,
    /// How long shutdown waits for clients to receive their Close.
    pub shutdown_grace: Duration,
    /// The URL announced in heartbeats (defaults to `http://{bound address}`).
    pub public_url: Option<String>,
    /// Browser origins allowed to call negotiate and the stats endpoint from another origin
    /// (exact `scheme://host:port`, or `*` for any). Empty: same-origin only.
    pub cors_origins: Vec<String>,
    /// Serve HTTPS/WSS with this certificate and key (`--tls-cert`, `--tls-key`); `None`: plain.
    pub tls: Option<ServerTls>,
    /// The bearer token the monitor endpoints (`/switchboard/*`, `/metrics`) require. Without one
    /// they answer loopback clients only (see `access`). Its `Debug` prints `***`.
    pub monitor_token: Option<MonitorToken>,
    /// `--auth jwt`: every negotiate and WebSocket request must carry a valid JWT, whose claim
    /// names the user (see `auth`). `None`: no authentication (the `?user=` demo identity).
    pub auth: Option<Arc<auth::Verifier>>,
    /// Without `auth`, take `?user=` as the user id even on a listener beyond loopback
    /// (`--trust-user-param`); loopback listeners always do.
    pub trust_user_param: bool,
}

/// A node's own certificate chain and private key (PEM files), for serving HTTPS/WSS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
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
            header_read_timeout: config::DEFAULT_HEADER_READ_TIMEOUT,
            max_message_size: config::DEFAULT_MAX_MESSAGE_SIZE,
            max_groups_per_connection: config::DEFAULT_MAX_GROUPS_PER_CONNECTION,
            io_uring: true,
            threads: 1,
            keep_alive: config::DEFAULT_KEEP_ALIVE,
            client_timeout: config::DEFAULT_CLIENT_TIMEOUT,
            handshake_timeout: config::DEFAULT_HANDSHAKE_TIMEOUT,
            outbound_queue: config::DEFAULT_OUTBOUND_QUEUE,
            group_ack_timeout: config::DEFAULT_GROUP_ACK_TIMEOUT,
            backplane_inbox: config::DEFAULT_BACKPLANE_INBOX,
            limits: limits::ClientLimits::default(),
            max_connections_per_ip: None,
            monitor_interval: config::DEFAULT_MONITOR_INTERVAL,
            heartbeat_interval: config::DEFAULT_HEARTBEAT_INTERVAL,
            negotiate_ttl: config::DEFAULT_NEGOTIATE_TTL,
            shutdown_grace: config::DEFAULT_SHUTDOWN_GRACE,
            public_url: None,
            cors_origins: Vec::new(),
            tls: None,
            monitor_token: None,
            auth: None,
            trust_user_param: false,
        }
    }
}

/// Which backplane a node uses.
#[derive(Debug, Clone)]
// Made once per node or tap, never in a hot path: the spec's size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum BackplaneChoice {
    /// No other node: an in-process bus of its own.
    Alone,
    /// An in-process bus shared with other nodes of this process.
    Memory(MemoryBus),
    /// A Redis backplane: a server, a sentinel set's primary or a cluster, with TLS and ACL
    /// options (`redis_conn::RedisSpec`).
    Redis(RedisSpec),
    /// The same from a URL alone (no TLS files or sentinel password), checked at start.
    RedisUrl(String),
    /// `--sharded-pubsub` (Redis 7+): connection, group and user channels use SSUBSCRIBE /
    /// SPUBLISH on the shard that owns their slot; `:all` and the `:internal:` channels stay
    /// classic (every node must hear them). Does NOT interoperate with ASP.NET Core servers on
    /// the same backplane (they use classic pub/sub only: dotnet/aspnetcore#54344).
    ShardedRedis(RedisSpec),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("binding the hub listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the connection threads: {0}")]
    Threads(std::io::Error),
    #[error("invalid Redis URL {url:?}: {reason}")]
    RedisUrl { url: String, reason: String },
    #[error("invalid hub path {0:?}: it must start with '/' and not end with '/'")]
    Path(String),
    #[error("the hub's TLS certificate: {0}")]
    Tls(String),
}

/// State shared by every task of a node.
pub(crate) struct NodeShared {
    pub config: NodeConfig,
    pub server_name: String,
    pub local_addr: SocketAddr,
    pub lifetime: Lifetime,
    pub registry: Arc<Registry>,
    pub stats: Arc<Stats>,
    /// Cancelled by `shutdown`; every connection's kill switch is a child of it.
    pub shutdown: CancellationToken,
    /// Every connection and monitor task, awaited (with a grace period) on shutdown.
    pub tracker: TaskTracker,
    /// Negotiated connection tokens: token → pending connection.
    tokens: Mutex<HashMap<String, PendingToken>>,
    /// Open TCP connections (HTTP requests, WebSockets, idle sockets), for the cap.
    pub live: AtomicUsize,
    /// Open TCP connections per client address, and the cap in force (`None`: off).
    pub per_ip: limits::PerIp,
    pub per_ip_cap: Option<usize>,
    /// The TLS acceptor when the node serves HTTPS (built once from `config.tls`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where each accepted connection is served.
    pub threads: threads::Threads,
    pub started: Instant,
    pub started_at: SystemTime,
}

/// A negotiated connection waiting for (or using) its WebSocket.
pub(crate) struct PendingToken {
    pub connection_id: String,
    pub created: Instant,
    pub active: bool,
}

impl NodeShared {
    pub fn lock_tokens(&self) -> MutexGuard<'_, HashMap<String, PendingToken>> {
        // Inserts and removes only: a poisoned map is still consistent.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn public_url(&self) -> String {
        self.config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{}://{}", self.scheme(), self.local_addr))
    }

    /// `https` when the node serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// A running node. Dropping it does not stop the node; call `shutdown`.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<NodeShared>,
    stopped: watch::Receiver<bool>,
}

/// Starts nodes.
pub struct Node;

/// `{hostname}_{32 lowercase hex}`, as ASP.NET Core names its servers (B.3).
pub fn new_server_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "switchboard".to_string()
    } else {
        host
    };
    let guid: u128 = rand::random();
    format!("{host}_{guid:032x}")
}

/// Starts the Redis link; its connections are named after the node in Redis's `CLIENT LIST`.
fn redis_backplane(
    spec: RedisSpec,
    config: &NodeConfig,
    inbox_tx: Inbox,
    shutdown: &CancellationToken,
    sharded: bool,
) -> Result<Arc<dyn Backplane>, NodeError> {
    let url = spec.redacted();
    let client_name = format!("switchboard-hub:{}", config.node_name);
    // Sharded: the channels that reach one connection, user or group. `:all` and the
    // `:internal:` channels (group commands, acks, client results) must reach every node, which
    // is what classic pub/sub does on a cluster.
    let is_sharded = sharded.then(|| {
        let channels = Channels::new(config.channel_prefix.clone(), config.hub_name.clone());
        let is_sharded: crate::backplane::redis::IsSharded = Arc::new(move |wire: &str| {
            matches!(
                channels.classify(wire),
                Some(ChannelKind::Connection(_) | ChannelKind::Group(_) | ChannelKind::User(_))
            )
        });
        is_sharded
    });
    let link = RedisBackplane::start_with(spec, &client_name, inbox_tx, shutdown.child_token(), is_sharded)
        .map_err(|reason| NodeError::RedisUrl { url, reason })?;
    Ok(Arc::new(link))
}

impl Node {
    /// Binds the listener, connects the backplane (in the background: a node with Redis down still
    /// serves its own clients) and starts serving. Returns once the listener is bound.
    pub async fn start(config: NodeConfig, backplane: BackplaneChoice) -> Result<NodeHandle, NodeError> {
        if !config.path.starts_with('/') || config.path.len() < 2 || config.path.ends_with('/') {
            return Err(NodeError::Path(config.path));
        }
        // Read the certificate before anything starts, so a bad file fails the start in words.
        let tls = match &config.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::server_config(&files.cert, &files.key)
                    .map_err(|e| NodeError::Tls(e.to_string()))?,
            )),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let server_name = new_server_name();
        let channels = Channels::new(config.channel_prefix.clone(), config.hub_name.clone());
        // Group commands, acks and client results have a queue of their own that a chat flood
        // cannot fill, drained first (`backplane::Inbox`).
        let (inbox_tx, mut inbox_rx) = Inbox::with_control(
            config.backplane_inbox,
            config::DEFAULT_CONTROL_INBOX,
            vec![
                channels.internal_groups(),
                channels.ack(&server_name),
                channels.return_channel(&server_name),
            ],
        );
        let backplane: Arc<dyn Backplane> = match backplane {
            BackplaneChoice::Alone => Arc::new(MemoryBus::new().connect(inbox_tx.clone())),
            BackplaneChoice::Memory(bus) => Arc::new(bus.connect(inbox_tx.clone())),
            BackplaneChoice::Redis(spec) => {
                redis_backplane(spec, &config, inbox_tx.clone(), &shutdown, false)?
            }
            BackplaneChoice::ShardedRedis(spec) => {
                redis_backplane(spec, &config, inbox_tx.clone(), &shutdown, true)?
            }
            // A bare URL is a spec without flag options.
            BackplaneChoice::RedisUrl(url) => {
                let spec =
                    RedisSpec::parse(&url, &RedisOptions::default()).map_err(|e| NodeError::RedisUrl {
                        url: e.url,
                        reason: e.reason,
                    })?;
                redis_backplane(spec, &config, inbox_tx.clone(), &shutdown, false)?
            }
        };
        let listener = bind_listener(config.listen).map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;

        let threads =
            threads::Threads::start(config.threads, "switchboard-conn").map_err(NodeError::Threads)?;
        let registry = Arc::new(Registry::with_max_groups(config.max_groups_per_connection.max(1)));
        let stats = Arc::new(Stats::default());
        let per_ip_cap = limits::per_ip_cap(
            config.max_connections_per_ip,
            !access::listens_beyond_loopback(local_addr),
        );
        let lifetime = Lifetime::new(
            channels,
            server_name.clone(),
            backplane,
            registry.clone(),
            stats.clone(),
            config.group_ack_timeout,
            inbox_tx,
        );
        let shared = Arc::new(NodeShared {
            config,
            server_name,
            local_addr,
            lifetime,
            registry,
            stats,
            shutdown: shutdown.clone(),
            tracker: TaskTracker::new(),
            tokens: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            per_ip: limits::PerIp::default(),
            per_ip_cap,
            tls,
            threads,
            started: Instant::now(),
            started_at: SystemTime::now(),
        });
        for channel in shared.lifetime.base_channels() {
            if let Err(e) = shared.lifetime.backplane().subscribe(&channel).await {
                tracing::warn!(%channel, error = %e, "initial subscribe failed; retried on reconnect");
            }
        }
        let batched = shared.config.io_uring && uring::available();
        tracing::info!(
            node = %shared.config.node_name,
            server = %shared.server_name,
            addr = %local_addr,
            scheme = shared.scheme(),
            backplane = shared.lifetime.backplane().kind(),
            writes = if batched { "io_uring" } else { "send" },
            threads = shared.threads.count(),
            "hub node listening"
        );
        match &shared.config.auth {
            Some(verifier) => tracing::info!(
                settings = ?verifier.settings(),
                "clients must present a JWT bearer token (--auth jwt); ?user= is ignored"
            ),
            None if !access::listens_beyond_loopback(local_addr) => {}
            None if shared.config.trust_user_param => tracing::warn!(
                addr = %local_addr,
                "listening beyond loopback with --trust-user-param: anyone may claim any user id with ?user="
            ),
            None => tracing::info!(
                addr = %local_addr,
                "listening beyond loopback without --auth: ?user= is ignored and connections are \
                 anonymous (use --auth jwt, or --trust-user-param for the demo identity)"
            ),
        }
        if shared.config.monitor_token.is_none() && access::listens_beyond_loopback(local_addr) {
            tracing::warn!(
                addr = %local_addr,
                "listening beyond loopback without --monitor-token: the monitor endpoints \
                 (/switchboard/*, /metrics) answer loopback clients only; set --monitor-token to \
                 let a remote dashboard or Prometheus look"
            );
        }

        // The backplane receive side: one task, in order, as messages arrive. When more messages
        // already wait in the inbox, up to CORK_BATCH of them are handled under a cork: their
        // deliveries are queued and each touched connection is written once at the batch's end
        // (`registry::Cork`). An empty inbox means no cork, unless io_uring batches the writes:
        // then each message's fan-out is corked, and written with one system call. A chat
        // message that finds nothing waiting skips this task: the subscriber's reader hands it
        // to `DirectDelivery` (see `backplane::Inbox`), and this task reports each message it
        // handled once its deliveries are written or queued, so none overtakes another.
        let receiver = shared.clone();
        let direct: Arc<dyn DirectReceiver> = Arc::new(DirectDelivery {
            node: shared.clone(),
            cork: Mutex::new(registry::Cork::new(batched)),
        });
        shared
            .lifetime
            .inbox()
            .set_direct_receiver(Arc::downgrade(&direct));
        tokio::spawn(async move {
            // The direct path lives as long as this loop: once it ends, every message queues.
            let _direct = direct;
            let mut cork = registry::Cork::new(batched);
            // Waited on across the loop's turns: registered with the token once, not per message.
            let shutdown = receiver.shutdown.cancelled();
            tokio::pin!(shutdown);
            let lifetime = &receiver.lifetime;
            loop {
                tokio::select! {
                    // Control first: a group command, ack or client result never waits behind a
                    // chat backlog.
                    biased;
                    () = &mut shutdown => break,
                    Some(message) = inbox_rx.control.recv() => {
                        lifetime.on_backplane_message(&message.channel, &message.payload, &mut cork);
                        cork.flush();
                    }
                    message = inbox_rx.chat.recv() => match message {
                        Some(message) => {
                            let backlog = !inbox_rx.chat.is_empty();
                            cork.set_active(cork.batched() || backlog);
                            // One message with io_uring: its fan-out is written without
                            // queueing (see `Cork`), and flushed before the next message.
                            cork.set_direct(!backlog);
                            let direct = cork.is_direct();
                            lifetime.on_backplane_message(&message.channel, &message.payload, &mut cork);
                            let mut handled = 1;
                            while !direct
                                && handled < CORK_BATCH
                                && let Ok(message) = inbox_rx.chat.try_recv()
                            {
                                while let Ok(control) = inbox_rx.control.try_recv() {
                                    lifetime.on_backplane_message(&control.channel, &control.payload, &mut cork);
                                }
                                if !inbox_rx.chat.is_empty() {
                                    cork.set_active(true);
                                }
                                lifetime.on_backplane_message(&message.channel, &message.payload, &mut cork);
                                handled += 1;
                            }
                            cork.flush();
                            inbox_rx.handled(handled);
                        }
                        None => break,
                    },
                }
            }
        });
        tokio::spawn(status::heartbeat_loop(shared.clone()));
        tokio::spawn(reap_tokens(shared.clone()));
        tokio::spawn(connection::keep_alive_loop(shared.clone()));

        let (stopped_tx, stopped) = watch::channel(false);
        let node = shared.clone();
        tokio::spawn(async move {
            // TCP_NODELAY on every accepted socket: without it Nagle's algorithm and the client's
            // delayed ACK hold a small frame written right after another for ~40 ms.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            listener::serve(listener, node).await;
            let _ = stopped_tx.send(true);
        });
        Ok(NodeHandle { shared, stopped })
    }
}

/// The node's receive side for a chat message that skips the inbox (see `backplane::Inbox`): runs
/// on the subscriber's reader task, one message at a time, with a cork of its own (the receive
/// loop's stays with the loop).
struct DirectDelivery {
    node: Arc<NodeShared>,
    cork: Mutex<registry::Cork>,
}

impl DirectReceiver for DirectDelivery {
    fn receive(&self, channel: &str, payload: &[u8]) {
        let mut cork = self
            .cork
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // As the receive loop with an empty inbox: one message, corked only under io_uring,
        // and then written without queueing.
        let batched = cork.batched();
        cork.set_active(batched);
        cork.set_direct(true);
        self.node
            .lifetime
            .on_backplane_message(channel, payload, &mut cork);
        cork.flush();
    }
}

/// Drops negotiated tokens whose WebSocket never came.
async fn reap_tokens(node: Arc<NodeShared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ttl = node.config.negotiate_ttl;
        node.lock_tokens()
            .retain(|_, t| t.active || t.created.elapsed() < ttl);
    }
}

pub use crate::redis_conn::redact;

impl NodeHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// `http://{addr}{path}` (`https://` when the node serves TLS): what a SignalR client
    /// connects to.
    pub fn hub_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.config.path)
    }

    /// `http://{addr}` (`https://` when the node serves TLS).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.shared.scheme(), self.shared.local_addr)
    }

    /// Whether the node serves HTTPS/WSS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// TLS handshakes that failed (untrusted certificate, plain HTTP on the TLS port, timeout).
    pub fn tls_handshake_failures(&self) -> u64 {
        Stats::get(&self.shared.stats.tls_handshake_failures)
    }

    /// The backplane server name, `{hostname}_{32 hex}`.
    pub fn server_name(&self) -> &str {
        &self.shared.server_name
    }

    /// The node name from the config.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// A snapshot of the node's statistics, as `/switchboard/stats` serves it.
    pub fn stats(&self) -> serde_json::Value {
        status::snapshot(&self.shared)
    }

    /// The backplane link's live status.
    pub fn backplane_status(&self) -> watch::Receiver<BackplaneStatus> {
        self.shared.lifetime.backplane().status()
    }

    /// Re-reads the `--jwt-jwks` file (on SIGHUP): `Ok(Some(keys))`, or `Ok(None)` when the node
    /// has no JWKS to re-read. On an error the keys in use stay.
    pub fn reload_auth_keys(&self) -> Result<Option<usize>, auth::AuthSetupError> {
        match &self.shared.config.auth {
            Some(verifier) => verifier.reload(),
            None => Ok(None),
        }
    }

    /// Sends every client a Close with allowReconnect, waits up to the grace period for the
    /// connections to end, and stops the listener and the backplane.
    pub async fn shutdown(&self) {
        let node = &self.shared;
        if node.shutdown.is_cancelled() {
            self.stopped().await;
            return;
        }
        tracing::info!(node = %node.config.node_name, clients = node.registry.counts().0, "shutting down");
        // Cancelling the node token kills every connection; each writer sends a Close with
        // allowReconnect (no explicit reason = shutdown) and ends.
        node.shutdown.cancel();
        node.tracker.close();
        if tokio::time::timeout(node.config.shutdown_grace, node.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the shutdown grace period");
        }
        // Leave the backplane: a node stopped inside a process that goes on (the demo, tests)
        // must not stay subscribed. (The connections released their own channels as they ended.)
        for channel in node.lifetime.base_channels() {
            let _ = node.lifetime.backplane().unsubscribe(&channel).await;
        }
        self.stopped().await;
        node.threads.stop();
    }

    /// Resolves when the node has stopped (after `shutdown`).
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// Binds the node's listener with a deep accept queue ([`config::LISTEN_BACKLOG`]); otherwise as
/// `TcpListener::bind` (SO_REUSEADDR off Windows).
fn bind_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(config::LISTEN_BACKLOG)
}
