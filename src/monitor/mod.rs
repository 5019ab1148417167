//! The dashboard's data side, with no egui: it watches a backplane and hub nodes from the outside,
//! as an operator would (a Redis PSUBSCRIBE tap, the nodes' public monitor endpoints, probe client
//! connections), and turns what it sees into [`MonitorEvent`]s for the pure traffic [`model`].
//!
//! Layout:
//! - `model/`: std-only, time passed in: ring buffer, traffic view and filter, rates, node table,
//!   traces, gap markers, capture and workspace files. Folded on the UI thread.
//! - `decode`: (channel, payload) → [`model::TrafficEntry`], with the backplane codecs. Pure.
//! - `detail`: the detail pane's JSON document and hex dump of one entry. Pure.
//! - `tap`: the Redis (or in-memory bus) tap and the heartbeat discovery.
//! - `census`: the PUBSUB census, spaced by its measured cost to Redis, over every cluster node.
//! - `shard_tap`: the sharded pub/sub tap (PUBSUB SHARDCHANNELS discovery, SSUBSCRIBE on the
//!   owning primary), feeding the tap's batcher.
//! - `redis_view`: the Redis view's poller (ROLE, CLIENT LIST TYPE pubsub, the output-buffer
//!   limit on every primary and replica), rate-limited; started and stopped with the tap.
//! - `probe`: one task per hub node: monitor WebSocket, round-trip time, the probe client that
//!   receives test messages, and sending test messages (once or in bursts).
//! - `directory`: which watched node holds a connection id, user or group
//!   (`GET /switchboard/connections`, paged, bounded), and the one monitor GET that carries the
//!   monitor token.
//! - `lookup`: where a test message went (NUMSUB of its channel, which node holds the group, user
//!   or connection), once per send request, rate-limited: what a trace to a client that is not a
//!   probe can show, and Explain's evidence.
//! - `sink`: [`sink::EventSink`], the bounded buffer every task pushes events into, with its drop
//!   counters, and [`sink::MonitorEvents`], the UI's end.
//! - `runtime`: [`MonitorHandle`], the front of all of the above: takes [`MonitorCommand`]s and
//!   emits batches of [`MonitorEvent`]s on one bounded channel, counting what it had to drop.
//!
//! Uses `backplane` (codecs, naming, `MemoryBus` for the demo's tap), `client` and `protocol`;
//! never `hub` internals (only what a node serves on the network) and never `ui`.

mod batcher;
pub mod census;
pub mod census_status;
pub mod decode;
pub mod detail;
pub mod directory;
pub mod lookup;
pub mod model;
pub mod numsub;
pub mod probe;
pub mod redis_view;
pub mod runtime;
mod send;
pub mod shard_tap;
pub mod sink;
pub mod tap;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backplane::memory::MemoryBus;
use crate::redis_conn::RedisSpec;

/// The node documents, declared once in `status_doc` (the hub writes them, the dashboard reads
/// them); re-exported here under the names the dashboard has always used.
pub use crate::status_doc::{
    Announcement, BackplaneStats, BackplaneStatusStats, ConnectionStats, MessageStats, NodeStats,
};
pub use census::{CensusStatus, WaitReason};
pub use model::TrafficEntry;
pub use runtime::{MonitorHandle, MonitorOptions};

/// Unix milliseconds now: the time stamp of every event (the pure model takes it as an argument).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The state of one network link (the tap, a node's monitor connection), as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LinkState {
    /// Not configured, or disconnected on purpose.
    #[default]
    Idle,
    /// First attempt under way.
    Connecting,
    Connected,
    /// Lost (or never made); the next attempt is at `retry_at_ms` (unix ms).
    Reconnecting {
        attempt: u32,
        retry_at_ms: u64,
        error: String,
    },
    /// Will not retry without a change from the user (a malformed URL, say).
    Failed {
        error: String,
    },
}

/// Where the tap listens.
#[derive(Debug, Clone)]
pub enum TapSource {
    /// A Redis backplane (a server, a sentinel set or a cluster): `spec` may carry a password
    /// (never persisted), `prefix` is the backplane's channel prefix (ASP.NET Core's
    /// `ChannelPrefix`), also used for the SignalR 2 event key check.
    Redis { spec: Box<RedisSpec>, prefix: String },
    /// The demo's in-process bus (the tap sees every publish, decoded just the same).
    Memory { bus: MemoryBus, prefix: String },
}

/// A hub node to watch. `hub_url` is the SignalR endpoint (http://host:port/chat); `monitor_url`
/// is the node's stats endpoint (http://host:port/switchboard/stats; the probe derives the
/// `/switchboard/monitor` WebSocket from it), or `None` for a node without one (ASP.NET Core).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeTarget {
    pub hub_url: String,
    #[serde(default)]
    pub monitor_url: Option<String>,
}

/// What a test message is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendTarget {
    All,
    Others,
    Group(String),
    User(String),
    Connection(String),
}

/// What a test message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendBody {
    /// The chat hub's methods (`SendMessage`, `SendToOthers`, `SendToGroup`, ...), chosen by the
    /// target; the probe appends a trace marker to `text`.
    Chat { user: String, text: String },
    /// Any method with JSON arguments (a JSON array), for a foreign hub. String arguments that
    /// contain `{trace}` get the trace marker substituted.
    Custom { method: String, args_json: String },
}

/// A request to send one or more test messages through a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The node's hub URL (a key of the node list).
    pub node: String,
    pub target: SendTarget,
    pub body: SendBody,
    /// How many messages (1 for a single send).
    pub count: u32,
    /// Messages per second for a burst.
    pub rate_per_sec: f64,
    /// For a group target: the probes join the group first, so the trace follows the message to
    /// every node. Off, the message goes to the group as it is (to see what a group nobody is in
    /// looks like, or to leave a real group's membership alone).
    #[serde(default = "probes_join_default")]
    pub probes_join: bool,
}

fn probes_join_default() -> bool {
    true
}

/// What the runtime found out about where a test message went: its trace to a client that is not
/// a probe can say what was observed, and Explain has its evidence. Asked for the first message
/// of each send request, at most once a second.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceLookup {
    /// The Redis channel such a message is published on (from the sending node's hub and prefix).
    pub channel: Option<String>,
    /// Subscribers of that channel when asked (Redis `PUBSUB NUMSUB`; the memory bus's count).
    pub subscribers: Option<u64>,
    /// Hub URLs of the nodes that say they hold the group (a member), user or connection.
    pub holders: Vec<String>,
    /// Hub URLs of the nodes that could not say (no monitor endpoint, an older node, no answer).
    pub unknown: Vec<String>,
    /// What could not be asked, in plain words (rate limit, a Redis error).
    pub note: Option<String>,
}

/// Where a send request (one message or a burst) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BurstState {
    Running,
    /// Every message was handed to the node.
    Done,
    /// Stopped by the user (Stop bursts) or because the node was removed.
    Stopped,
}

/// Progress of one send request, reported a few times a second and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurstProgress {
    /// Unique per request (the trace id of its first message slot).
    pub id: u64,
    /// The sending node's hub URL.
    pub node: String,
    /// Messages handed to the node so far.
    pub sent: u32,
    /// Of these, how many the node or the probe refused.
    pub failed: u32,
    /// Messages asked for (after the stated limits).
    pub total: u32,
    pub state: BurstState,
}

/// UI → runtime.
#[derive(Debug, Clone)]
pub enum MonitorCommand {
    /// Starts (or replaces, or with `None` stops) the tap.
    SetTap(Option<TapSource>),
    /// Starts watching a node (no-op if already watched).
    AddNode(NodeTarget),
    /// Stops watching the node with this hub URL.
    RemoveNode(String),
    /// Sends test messages; each gets a trace id reported by [`MonitorEvent::Sent`].
    Send(SendRequest),
    /// Stops every running burst.
    StopBursts,
    /// The bearer token sent to every watched node's monitor endpoints (`--monitor-token` of the
    /// dashboard); the probes restart with it. Held by the runtime only, never saved.
    SetMonitorToken(Option<crate::monitor_token::MonitorToken>),
    /// Searches the directory (every watched node's connections, and NUMSUB of the channels);
    /// replaces a search still running. Answered by [`MonitorEvent::Directory`].
    Directory(model::directory::DirectorySearch),
    /// The operator trusts this node (the Trust button of a discovered node): it is watched as a
    /// named node and gets the monitor token and the node token from now on.
    TrustNode(NodeTarget),
    /// The `--trust-nodes` globs (see `model::trust`): discovered nodes that match get the
    /// tokens; those that no longer match lose them.
    SetTrustRules(model::trust::TrustRules),
}

/// What the runtime did with heartbeats it would not follow (shown in the Nodes panel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoveryCounts {
    /// Nodes known only from a heartbeat, watched without tokens (at most
    /// [`crate::config::DEFAULT_MAX_DISCOVERED_NODES`]).
    pub untrusted: usize,
    /// Discovered nodes not watched because that many untrusted ones already were.
    pub over_cap: u64,
    /// Heartbeats ignored: a URL not `http(s)://`/`ws(s)://`, or with a user or password.
    pub ignored_heartbeats: u64,
}

/// What Redis itself reveals about the cluster (PUBSUB CHANNELS; SIGNALR-WIRE.md D.1), per hub.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HubCensus {
    pub hub: String,
    /// `{prefix}{hub}:connection:*` channels: one per connected client, on any server.
    pub connections: u64,
    /// `{prefix}{hub}:user:*`: users with at least one connection.
    pub users: u64,
    /// `{prefix}{hub}:group:*`: non-empty groups with a member on some server.
    pub groups: u64,
    /// `{prefix}{hub}:internal:ack:*` suffixes: server names.
    pub servers: Vec<String>,
    /// `{prefix}{hub}:internal:return:*` suffixes: servers listening for invocation results.
    #[serde(default)]
    pub return_servers: Vec<String>,
}

/// `PUBSUB NUMSUB` of one hub's `{prefix}{hub}:all` and `{prefix}{hub}:internal:groups`, summed
/// over every server asked (a cluster's PUBSUB answers per node): the servers that listen for
/// broadcasts and for group commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HubSubscribers {
    pub hub: String,
    pub all: u64,
    pub groups: u64,
    /// Of the servers the last census walk found for this hub, those whose
    /// `:internal:ack:{server}` channel still has a subscriber, counted in the same round as
    /// `all` (so a server that left since the walk is not taken for a deaf one).
    pub ack_servers: Vec<String>,
}

/// The Redis figures the health rules need beyond the census and the Redis view, asked with the
/// census's cheap checks (at most one round every [`crate::config::DEFAULT_CENSUS_INTERVAL`], each
/// command O(1) on Redis): `PUBSUB NUMSUB` of every hub seen, and `GET eventKey` of every SignalR 2
/// backplane seen. `CLIENT LIST` and the output-buffer limit are not asked here: the Redis view's
/// poller already asks them (`redis_view`), and the model reuses its latest round.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthRound {
    /// When the round ended (unix ms).
    pub at_ms: u64,
    pub hubs: Vec<HubSubscribers>,
    /// `GET eventKey` per SignalR 2 event key seen: the counter (`None`: the key does not exist),
    /// or why it could not be read (a missing ACL permission is named).
    pub sr2_counters: Vec<(String, Result<Option<u64>, String>)>,
    /// Why the round failed, when it did (the figures above are then empty).
    pub problem: Option<String>,
}

/// What happened on one node's links.
// Events travel in Vecs (batches) a few times a second: the size of the rare big variant costs
// nothing worth a Box in every match of the UI.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The monitor/probe link changed state.
    State(LinkState),
    /// A stats snapshot arrived (pushed every 500 ms on the monitor WebSocket).
    Stats(NodeStats),
    /// A round-trip time measurement (HTTP request to the node, end to end).
    Rtt(Duration),
    /// The probe client connected, with its connection id (the target for a connection send).
    ProbeConnected { connection_id: String },
    /// The probe client received a test message carrying trace `trace`.
    ProbeReceived { trace: u64, at_ms: u64 },
    /// Whether the node gets the dashboard's tokens: named by the operator or matching
    /// `--trust-nodes` (true), or only discovered from a heartbeat (false). Sent when the runtime
    /// starts watching it and whenever it changes.
    Trusted(bool),
    /// The node's hub answered HTTP 401 to the probe, which sent no token (`true`: withheld
    /// because the node is not trusted, or none configured): the node is up, just closed to us.
    /// `false` once the probe got in.
    NeedsToken(bool),
}

/// Runtime → UI. Times are unix milliseconds taken where the thing happened.
// Events travel in Vecs (batches) a few times a second: the size of the rare big variant costs
// nothing worth a Box in every match of the UI.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorEvent {
    /// Decoded tap messages, oldest first.
    Traffic(Vec<TrafficEntry>),
    /// The tap's link changed state at `at_ms`.
    Tap { state: LinkState, at_ms: u64 },
    /// A node announced itself on the heartbeat channel (the runtime already watches it, or the
    /// user removed it; heartbeats it ignored or left unwatched are only counted, see
    /// [`MonitorEvent::Discovery`]).
    Announced(Announcement),
    /// What a PUBSUB CHANNELS walk revealed (over every node of a cluster), taken at `at_ms`.
    Census { at_ms: u64, hubs: Vec<HubCensus> },
    /// One round of the Redis view's poller (`redis_view`): nodes, roles, slots, pub/sub
    /// clients and output buffers, who is primary of what.
    Redis(Box<model::redis_view::RedisSnapshot>),
    /// The sharded tap's discovery (`shard_tap`): channels subscribed, age of the last round.
    ShardTap(model::redis_view::ShardTapStatus),
    /// How the census is taken: its age, its cost to Redis, when the next walk is due. After
    /// every census round (every couple of seconds), walk or not.
    CensusStatus(CensusStatus),
    /// The health rules' Redis figures (see [`HealthRound`]), after every census round.
    HealthRound(HealthRound),
    /// Something about the node with this hub URL.
    Node { hub_url: String, event: NodeEvent },
    /// A test message was handed to `node` at `at_ms`; `expected` lists the hub URLs of the nodes
    /// whose probe should receive it (empty when the runtime cannot tell, e.g. a foreign user id).
    Sent {
        trace: u64,
        node: String,
        target: SendTarget,
        at_ms: u64,
        expected: Vec<String>,
    },
    /// What the runtime found out about where trace `trace` went (see [`TraceLookup`]).
    TraceLookup { trace: u64, lookup: TraceLookup },
    /// A send request's progress.
    Burst(BurstProgress),
    /// The answer to a directory search (it carries the search it answers).
    Directory(model::directory::DirectoryAnswer),
    /// The discovery counters changed (see [`DiscoveryCounts`]).
    Discovery(DiscoveryCounts),
    /// Sending trace `trace` through `node` failed.
    SendFailed {
        trace: u64,
        node: String,
        error: String,
        at_ms: u64,
    },
}
