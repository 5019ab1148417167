//! Switchboard: SignalR-compatible chat hub nodes that scale out through a Redis backplane in the
//! exact ASP.NET Core wire format, and (later) a dashboard to watch them.
//!
//! Crate map, and who may use whom (layers by data shape: bytes → frames → messages → hub → backplane):
//! - `config`: every default as a documented `DEFAULT_*` const. Used by all; uses nothing.
//! - `protocol`: the SignalR client protocol, pure, no I/O. Uses no other module.
//! - `backplane`: the `Backplane` trait, channel naming, the ASP.NET Core payload codec, the memory
//!   and Redis implementations. Uses `protocol` only for protocol names; never `hub` or `client`.
//! - `hub`: the hub node (listener, connections, registry, dispatch, stats, monitor endpoint, chat
//!   page). Uses `protocol`, `config` and the `Backplane` trait, never the Redis client directly.
//! - `client`: a small SignalR client over WebSockets (tests, the demo's simulated users, the
//!   dashboard's probes). Uses `protocol` only.
//! - `load`: `switchboard load`, a load generator measuring delivery across nodes from the outside.
//!   Uses `client` and `protocol`; never `hub`.
//! - `status_doc`: the stats snapshot and heartbeat documents a node publishes, declared once:
//!   `hub` writes them, `monitor` reads them. Uses only serde.
//! - `cli`: the composition root: parses arguments, picks the backplane, starts nodes.

pub mod backplane;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod hub;
#[cfg(feature = "gui")]
pub mod link;
pub mod load;
pub mod monitor;
pub mod protocol;
pub mod status_doc;
#[cfg(feature = "gui")]
pub mod ui;
