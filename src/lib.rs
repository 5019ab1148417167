//! Switchboard: SignalR-compatible chat hub nodes that scale out through a Redis backplane in the
//! exact ASP.NET Core wire format, a dashboard to watch them, and a demo that runs both.
//!
//! Crate map, and who may use whom. Layers by data shape: bytes → frames → messages → hub →
//! backplane on the node side; Redis/WebSocket events → a pure model → egui panels on the
//! dashboard side.
//! - `config`: every default as a documented `DEFAULT_*` const. Used by all; uses nothing.
//! - `protocol`: the SignalR client protocol, pure, no I/O. Uses no other module.
//! - `backplane`: the `Backplane` trait, channel naming (`naming`, the ONLY place that names
//!   channels, census patterns included), the ASP.NET Core and SignalR 2 payload codecs, the memory
//!   and Redis implementations, and the one reconnect loop with its typed failure (`reconnect`,
//!   also used by `monitor`'s tap and probes). Uses `protocol` only for protocol names; never
//!   `hub`, `client`, `monitor` or `ui`.
//! - `hub`: the hub node (listener, connections, registry, dispatch, stats, monitor endpoint, chat
//!   page; HTTPS with `tls`). Uses `protocol`, `config`, `tls`, the `Backplane` trait (and the
//!   `redis_conn` spec it hands the backplane), `status_doc`, `monitor_token` and `node_token`; never
//!   the Redis client directly.
//! - `client`: a small SignalR client over WebSockets, and plain HTTP, over TCP or TLS (`https`,
//!   `wss`) (tests, the demo's simulated users, `load`, the dashboard's probes). Uses `protocol`,
//!   `tls` and `node_token` (the bearer it sends).
//! - `monitor`: the dashboard's data side, no egui: the Redis (or memory bus) tap, node probes,
//!   test sends and their lookups, the event sink, the runtime that owns them, and `model/`, the
//!   pure std-only model folded on the UI thread. Uses `backplane`, `client`, `protocol`,
//!   `redis_conn`, `status_doc`, the two token types and `tls` (options); watches nodes only through
//!   what they serve, never `hub` internals; never `ui`.
//! - `demo` (`switchboard demo`): nodes, a private `redis-server` or the memory bus, simulated
//!   clients. Uses `hub`, `backplane`, `client`, and `monitor` only for the types it hands over.
//! - `link` (gui): the only module that knows both tokio and egui: owns the runtime, the monitor,
//!   the demo, and the signal handling; gives the UI non-blocking calls only.
//! - `ui` (gui): egui only: the app, settings, one file per panel. Uses `link`, `monitor` (the
//!   model, the event and command types) and `config`; never names tokio, redis, sockets or
//!   `client` (a test greps for them).
//! - `load`: `switchboard load`, a load generator measuring delivery across nodes from the outside.
//!   Uses `client` and `protocol`; never `hub`.
//! - `tls`: rustls configurations (client: system roots, a CA file, client certificates, SNI,
//!   insecure; server: the hub's certificate) and handshake errors in words. Uses nothing else.
//! - `redis_conn`: the one Redis connection spec (`redis://`, `rediss://`, ACL users, sentinels,
//!   cluster seeds; the one password redaction) and the connector that opens, authenticates and
//!   discovers. Uses `tls` and `config`; used by `backplane`, `monitor`, `demo`, `cli`, and `ui`
//!   (the pure `spec` only).
//! - `status_doc`: the stats snapshot and heartbeat documents a node publishes, declared once:
//!   `hub` writes them, `monitor` reads them. Uses only serde.
//! - `monitor_token`: the bearer token guarding a node's monitor endpoints (`/switchboard/*`,
//!   `/metrics`): redacted `Debug`, constant-time check. `hub` checks it, `monitor` and `cli` send
//!   or parse it. Uses nothing.
//! - `node_token`: the bearer tokens the tools that connect to nodes present (`--node-token`, or
//!   HS256 tokens minted per identity from `--node-jwt-secret-file`): redacted `Debug`, no
//!   `Display`, no serde. `client` sends them; `monitor`, `check`, `load`, `demo` and `cli` build
//!   or pass them. Uses `config` only.
//! - `signals`: waits for SIGINT/SIGTERM (the node in `cli`, the window in `link`). Uses tokio only.
//! - `check` (`switchboard check`): the canary: a test message through every node, one round of
//!   Redis queries and node stats, judged by `monitor::model::health`. Uses `client`,
//!   `redis_conn`, `backplane::naming`, `status_doc` and `monitor`; never `hub`.
//! - `known_nodes`: the nodes seen on one backplane, remembered between runs in a small state
//!   file (load / observe / forget / save), so a node that disappears is missed. Uses `config`
//!   and serde; used by `check` (and `agent`).
//! - `tapcli`: `switchboard tap`, the live decoder in a terminal: runs `monitor`'s tap and prints
//!   what passes the model's filter (table or JSON Lines) and writes a capture. Uses `monitor`,
//!   `redis_conn`, `signals`; used by `cli` only.
//! - `agent` (`switchboard agent`): the monitor without a window: the runtime, the model and the
//!   health rules of the dashboard, a continuous canary, served as Prometheus metrics and JSON
//!   findings. Uses `monitor`, `config`, `monitor_token`, `node_token`, `redis_conn`, `signals`;
//!   never `hub`, `ui` or `link` (it builds without `gui`).
//! - `cli`: the composition root: parses arguments, checks them before any window opens, picks the
//!   backplane, starts nodes, the dashboard or the demo.
//!
//! Who may use whom, exactly: each layer with the layers it uses, no more and no less.
//! `tests/layering.rs` reads every file's `use` paths (and paths in code) with `syn`, fails on an
//! arrow missing here, on a line here that no code needs, and on any import cycle between files.
//! ```text
//! config:
//! protocol:
//! tls:
//! monitor_token:
//! node_token:    config
//! status_doc:
//! signals:
//! known_nodes:   config
//! redis_conn:    config tls
//! backplane:     config protocol tls redis_conn
//! hub:           config protocol tls monitor_token node_token status_doc redis_conn backplane
//! client:        protocol tls node_token
//! monitor:       config protocol tls monitor_token node_token status_doc redis_conn backplane client
//! load:          protocol node_token client
//! check:         protocol monitor_token node_token status_doc redis_conn backplane client monitor known_nodes
//! agent:         config monitor_token signals redis_conn monitor
//! tapcli:        config signals redis_conn backplane monitor
//! demo:          config protocol node_token redis_conn backplane hub client monitor
//! link:          signals monitor demo
//! ui:            config redis_conn monitor demo link
//! cli:           config protocol tls monitor_token node_token signals redis_conn hub client monitor load check tapcli demo link ui known_nodes agent
//! ```

pub mod agent;
pub mod backplane;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod hub;
pub mod known_nodes;
#[cfg(feature = "gui")]
pub mod link;
pub mod load;
pub mod monitor;
pub mod monitor_token;
pub mod node_token;
pub mod protocol;
pub mod redis_conn;
pub mod signals;
pub mod status_doc;
pub mod tapcli;
pub mod tls;
#[cfg(feature = "gui")]
pub mod ui;
